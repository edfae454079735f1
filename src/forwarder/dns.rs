//! The DNS proxy on the DNS port (UDP and TCP, IPv4 and IPv6): each query is
//! checked with hickory-proto; `<service>.mesh` is answered from the
//! Dataplane files ([`MeshNames`]: the addresses of the service's instances,
//! as many as fit the client's UDP size, never with TC — see [`fit`];
//! NXDOMAIN for any other `*.mesh` name); everything else is sent unchanged
//! to the name servers of resolv.conf in order, and when every upstream
//! fails the client gets a SERVFAIL. What it answers with comes from the
//! current settings generation; which queries it answers at all is decided
//! in `dnsnet.rs`. Its own upstream queries bypass the redirect because the
//! forwarder runs as the exempt UID (and its sockets are that UID's).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use super::dnsnet::{self, Admission};
use super::mesh::Mesh;
use super::proxy::Shared;
use super::settings::Settings;
use super::stats::DnsStats;

/// The mesh's DNS zone.
const MESH_ZONE: &[u8] = b"mesh";
/// Time to live of mesh answers: kuma-dp's embedded DNS uses 30 s.
const MESH_TTL: u32 = 30;
/// The UDP payload size we advertise in EDNS answers (the DNS flag day value).
const EDNS_PAYLOAD: u16 = 1232;

/// `<service>.mesh` names of the reachable services. Kuma answers with a
/// virtual IP per service; with no control plane to hand them out, the
/// answer is the addresses of the service's instances (its Dataplanes'
/// `networking.address` or inbound `address`), which are also the mesh
/// destinations the router knows. Without Dataplane files the zone is not
/// ours: `.mesh` queries go upstream as before.
#[derive(Debug, Default)]
pub struct MeshNames {
    /// Lower-case service name → its instances' addresses.
    names: HashMap<String, Addrs>,
    /// Dataplane files were given: the `mesh` zone is answered here.
    authoritative: bool,
}

/// The addresses of one `.mesh` name, each once, in file order; also by
/// family, so that an answer only ever touches the records it can hold.
#[derive(Debug, Default)]
struct Addrs {
    all: Vec<IpAddr>,
    v4: Vec<IpAddr>,
    v6: Vec<IpAddr>,
}

impl MeshNames {
    /// Linear in the number of endpoints: addresses are deduplicated with
    /// a set, not by searching the service's list.
    pub fn new(mesh: &Mesh) -> Self {
        let mut names: HashMap<String, Addrs> = HashMap::with_capacity(mesh.services.len());
        for s in &mesh.services {
            // Services whose names differ only in case share a name.
            let a = names.entry(s.name.to_ascii_lowercase()).or_default();
            a.all.extend(s.endpoints.iter().map(SocketAddr::ip));
        }
        let mut seen = HashSet::new();
        for a in names.values_mut() {
            seen.clear();
            a.all.retain(|ip| seen.insert(*ip));
            (a.v4, a.v6) = a.all.iter().partition(|ip| ip.is_ipv4());
        }
        MeshNames {
            names,
            authoritative: mesh.name.is_some(),
        }
    }

    /// The service a name asks for, lower-cased, when the name is in the
    /// mesh zone (any case, with or without the trailing dot).
    fn service_of(name: &Name) -> Option<String> {
        let labels: Vec<&[u8]> = name.iter().collect();
        let (last, rest) = labels.split_last()?;
        if rest.is_empty() || !last.eq_ignore_ascii_case(MESH_ZONE) {
            return None;
        }
        let mut s = String::new();
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            s.push_str(&String::from_utf8_lossy(l).to_ascii_lowercase());
        }
        Some(s)
    }

    /// The answer to a query for a `*.mesh` name of class IN; `None` sends
    /// the query upstream. A known service gets its A or AAAA records (both
    /// for ANY; none for other types), an unknown one NXDOMAIN. The answer
    /// holds as many records as fit in `limit` bytes (see [`fit`]).
    pub fn answer(&self, query: &Message, limit: usize) -> Option<Fitted> {
        if !self.authoritative {
            return None;
        }
        let q = query.queries.first()?;
        if !matches!(q.query_class(), DNSClass::IN | DNSClass::ANY) {
            return None;
        }
        let service = Self::service_of(q.name())?;
        let mut m = Message::response(query.metadata.id, query.metadata.op_code);
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = query.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.add_query(q.clone());
        if query.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            m.set_edns(e);
        }
        let record = |ip: &IpAddr| {
            let rdata = match ip {
                IpAddr::V4(a) => RData::A(A(*a)),
                IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
            };
            Record::from_rdata(q.name().clone(), MESH_TTL, rdata)
        };
        let id = usize::from(query.metadata.id);
        let Some(addrs) = self.names.get(&service) else {
            m.metadata.response_code = ResponseCode::NXDomain;
            return fit(m, &[], [(0, None), (0, None)], record, id, limit);
        };
        let (v4, v6) = (
            (addrs.v4.len(), addrs.v4.first()),
            (addrs.v6.len(), addrs.v6.first()),
        );
        let (list, families): (&[IpAddr], _) = match q.query_type() {
            RecordType::A => (&addrs.v4, [v4, (0, None)]),
            RecordType::AAAA => (&addrs.v6, [(0, None), v6]),
            RecordType::ANY => (&addrs.all, [v4, v6]),
            _ => (&[], [(0, None), (0, None)]),
        };
        fit(m, list, families, record, id, limit)
    }
}

/// A `.mesh` answer in wire format.
#[derive(Debug)]
pub struct Fitted {
    pub bytes: Vec<u8>,
    pub message: Message,
    /// Records were left out to fit the size limit.
    pub fitted: bool,
}

/// Every answer record takes at least this many bytes: a pointer to the
/// question's name (2), type, class, TTL, length (10) and an IPv4 address.
const MIN_RECORD: usize = 16;

/// `m` with as many records of `list` (`families`: how many of them are
/// IPv4 and IPv6, with one of each) as fit in `limit` bytes (the client's
/// UDP size, or 65535 over TCP), without the TC bit — as Kuma's DNS does. A
/// client that sees TC retries over TCP/53, which the installed rules send
/// to the real name server (kumactl's TCP/53 RETURN), where `.mesh` names do
/// not exist: glibc's `getaddrinfo` then fails. When not all fit, the window
/// of records starts at `start` (the query ID) modulo their number, so that
/// different queries see different instances. At most `limit / 16` records
/// are ever built, so the cost of an answer does not grow with the number
/// of instances.
fn fit(
    mut m: Message,
    list: &[IpAddr],
    families: [(usize, Option<&IpAddr>); 2],
    record: impl Fn(&IpAddr) -> Record,
    start: usize,
    limit: usize,
) -> Option<Fitted> {
    let n = list.len();
    // The wire form, when it fits. hickory-proto itself cuts a message at
    // 64 KiB and sets TC, which we never set: that does not fit either.
    let fits = |m: &Message| -> Option<Option<Vec<u8>>> {
        let b = m.to_vec().ok()?;
        let truncated = b.get(2).is_some_and(|flags| flags & 0x02 != 0);
        Some((b.len() <= limit && !truncated).then_some(b))
    };
    if n <= limit / MIN_RECORD {
        m.answers = list.iter().map(&record).collect();
        match fits(&m)? {
            Some(bytes) => {
                return Some(Fitted {
                    bytes,
                    message: m,
                    fitted: false,
                });
            }
            None if n == 0 => {
                let bytes = m.to_vec().ok()?;
                return Some(Fitted {
                    bytes,
                    message: m,
                    fitted: false,
                });
            }
            None => {}
        }
    }
    // Not all fit: a window from `start`. Records of a family are the same
    // size (until hickory stops compressing names past 16 KiB), so guess from
    // one of each, then look for the largest window that fits below it.
    m.answers.clear();
    let base = m.to_vec().ok()?.len();
    let mut total = 0;
    for (count, sample) in families {
        if let Some(ip) = sample {
            m.answers = vec![record(ip)];
            total += count * (m.to_vec().ok()?.len() - base);
        }
    }
    let per = total.div_ceil(n).max(MIN_RECORD);
    let start = start % n;
    let mut window = |k: usize| {
        m.answers = (0..k).map(|i| record(&list[(start + i) % n])).collect();
        fits(&m)
    };
    // The guess is exact within a family up to 16 KiB, so one try mostly
    // does; otherwise the largest window below it, by halving.
    let guess = (limit.saturating_sub(base) / per).min(n - 1);
    let bytes = match window(guess)? {
        Some(b) => b,
        None => {
            let (mut lo, mut hi) = (0, guess);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if window(mid)?.is_some() {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            match window(lo)? {
                Some(b) => b,
                // Not even the question fits (a tiny EDNS size): as it is.
                None => m.to_vec().ok()?,
            }
        }
    };
    Some(Fitted {
        bytes,
        message: m,
        fitted: true,
    })
}

/// Where queries go.
#[derive(Debug)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    /// Per server and attempt.
    pub timeout: Duration,
}

/// Per upstream server and query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// The name servers of a resolv.conf, read the way install reads them.
pub fn upstreams_from(path: &Path, warnings: &mut Vec<String>) -> anyhow::Result<Upstreams> {
    let servers: Vec<SocketAddr> = crate::host::resolv::nameservers(path, warnings)?
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        anyhow::bail!("{} lists no nameserver", path.display());
    }
    Ok(Upstreams {
        servers,
        timeout: UPSTREAM_TIMEOUT,
    })
}

/// The DNS proxy's own state; what it answers with comes from the current
/// [`Settings`] generation, read per query.
pub struct Dns {
    pub inflight: Semaphore,
}

/// Validates a query; `Err` when it is not one we should answer.
fn parse_query(bytes: &[u8]) -> Result<Message, ()> {
    let m = Message::from_vec(bytes).map_err(|_| ())?;
    if m.metadata.message_type != MessageType::Query || m.queries.is_empty() {
        return Err(());
    }
    Ok(m)
}

/// SERVFAIL for `query`, with its question and flags.
pub fn servfail(query: &Message) -> Vec<u8> {
    let mut m = Message::error_msg(
        query.metadata.id,
        query.metadata.op_code,
        ResponseCode::ServFail,
    );
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.iter().cloned());
    m.to_vec().unwrap_or_default()
}

fn formerr(bytes: &[u8]) -> Option<Vec<u8>> {
    // Answer only when there is a header to answer to.
    if bytes.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// The size a `.mesh` answer may have: over UDP the client's EDNS size
/// (at most the one we advertise) or 512 bytes without EDNS; over TCP a
/// message's maximum.
fn answer_limit(query: &Message, tcp: bool) -> usize {
    if tcp {
        usize::from(u16::MAX)
    } else {
        usize::from(query.max_payload().clamp(512, EDNS_PAYLOAD))
    }
}

/// The answer bytes for one query (never empty unless the input is garbage).
async fn resolve(
    settings: &Settings,
    bytes: &[u8],
    tcp: bool,
    stats: &DnsStats,
) -> Option<Vec<u8>> {
    let Ok(query) = parse_query(bytes) else {
        stats.invalid.fetch_add(1, Relaxed);
        return formerr(bytes);
    };
    if let Some(a) = settings.names.answer(&query, answer_limit(&query, tcp)) {
        if a.message.metadata.response_code == ResponseCode::NXDomain {
            stats.mesh_nxdomain.fetch_add(1, Relaxed);
        } else {
            stats.mesh_answers.fetch_add(1, Relaxed);
        }
        if a.fitted {
            stats.mesh_fitted.fetch_add(1, Relaxed);
        }
        return Some(a.bytes);
    }
    let Some(upstreams) = &settings.upstreams else {
        stats.servfail.fetch_add(1, Relaxed);
        return Some(servfail(&query));
    };
    for server in &upstreams.servers {
        let r = if tcp {
            tokio::time::timeout(upstreams.timeout, exchange_tcp(*server, bytes)).await
        } else {
            tokio::time::timeout(upstreams.timeout, exchange_udp(*server, bytes)).await
        };
        match r {
            Ok(Ok(answer)) if answer.len() >= 2 && answer[..2] == bytes[..2] => {
                return Some(answer);
            }
            _ => {
                stats.upstream_fail.fetch_add(1, Relaxed);
            }
        }
    }
    stats.servfail.fetch_add(1, Relaxed);
    Some(servfail(&query))
}

/// One query to one server over UDP, from a fresh socket (a random source
/// port per query, as resolvers do against spoofed answers). `connect(2)`
/// binds an unbound socket to such a port itself, so there is no `bind(2)`.
async fn exchange_udp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = Socket::new(
        Domain::for_address(server),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    s.connect(&server.into())?;
    let s = UdpSocket::from_std(s.into())?;
    s.send(q).await?;
    loop {
        s.readable().await?;
        match s.try_io(Interest::READABLE, || recv_answer(&s, q)) {
            Ok(Some(answer)) => return Ok(answer),
            // Ignore stray datagrams with another ID.
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads one datagram into a stack buffer and copies it out when it answers
/// `q` (same ID): no zeroed 64 KiB allocation per query (with many queries
/// in flight the heap grew and shrank with them: `brk` calls, page faults).
fn recv_answer(s: &UdpSocket, q: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 65535];
    let n = SockRef::from(s).recv(&mut buf)?;
    // SAFETY: recv initialised the first n bytes.
    let got = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
    Ok((n >= 2 && got[..2] == q[..2]).then(|| got.to_vec()))
}

async fn exchange_tcp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    s.set_nodelay(true)?;
    let len = u16::try_from(q.len()).map_err(|_| std::io::Error::other("query too long"))?;
    let mut out = Vec::with_capacity(q.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(q);
    s.write_all(&out).await?;
    read_frame(&mut s)
        .await?
        .ok_or_else(|| std::io::Error::other("upstream closed"))
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Serves one UDP socket. `admission` is set for the wildcard sockets of
/// virtual-network mode (see `dnsnet.rs`): their datagrams carry packet
/// information, are checked, and are answered from the address they were
/// sent to.
pub async fn serve_udp(
    sock: UdpSocket,
    admission: Option<Arc<Admission>>,
    dns: Arc<Dns>,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from, pktinfo) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = recv(&sock, admission.is_some(), &mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let st = &sh.stats.dns;
        st.queries_udp.fetch_add(1, Relaxed);
        if let (Some(a), Some(d)) = (&admission, &pktinfo)
            && !a.admits(d)
        {
            st.refused.fetch_add(1, Relaxed);
            continue;
        }
        let local = pktinfo.map(|d| d.to);
        let Ok(permit) = dns.inflight.try_acquire() else {
            st.overflow.fetch_add(1, Relaxed);
            continue;
        };
        permit.forget();
        let q = buf[..n].to_vec();
        let (sock, dns, sh) = (sock.clone(), dns.clone(), sh.clone());
        tokio::spawn(async move {
            let settings = sh.settings.load_full();
            if let Some(a) = resolve(&settings, &q, false, &sh.stats.dns).await {
                let _ = match local {
                    Some(local) => dnsnet::send(&sock, &a, from, local).await,
                    None => sock.send_to(&a, from).await.map(|_| ()),
                };
            }
            dns.inflight.add_permits(1);
        });
    }
}

/// One datagram: its length and source, and for wildcard sockets its
/// packet information.
async fn recv(
    sock: &UdpSocket,
    pktinfo: bool,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<dnsnet::Datagram>)> {
    if !pktinfo {
        let (n, from) = sock.recv_from(buf).await?;
        return Ok((n, from, None));
    }
    let d = dnsnet::recv(sock, buf).await?;
    Ok((d.len, d.from, Some(d)))
}

pub async fn serve_tcp(listener: TcpListener, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let s = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let sh = sh.clone();
        tokio::spawn(async move {
            let mut s = s;
            let st = &sh.stats.dns;
            // One connection may carry several queries; 10s idle ends it.
            while let Ok(Ok(Some(q))) =
                tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s)).await
            {
                st.queries_tcp.fetch_add(1, Relaxed);
                let settings = sh.settings.load_full();
                let Some(a) = resolve(&settings, &q, true, st).await else {
                    break;
                };
                let Ok(len) = u16::try_from(a.len()) else {
                    break;
                };
                let mut out = Vec::with_capacity(a.len() + 2);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&a);
                if s.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn servfail_keeps_id_and_question() {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
        ));
        q.metadata.recursion_desired = true;
        let bytes = q.to_vec().unwrap();
        let parsed = parse_query(&bytes).unwrap();
        let a = Message::from_vec(&servfail(&parsed)).unwrap();
        assert_eq!(a.metadata.id, q.metadata.id);
        assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(a.metadata.message_type, MessageType::Response);
        assert_eq!(a.queries, q.queries);
        assert!(
            parse_query(&a.to_vec().unwrap()).is_err(),
            "a response is not a query"
        );
        assert!(parse_query(b"\x01\x02garbage").is_err());
        assert_eq!(formerr(b"short"), None);
    }

    fn mesh_names() -> MeshNames {
        use crate::forwarder::mesh::{Mesh, Service};
        let svc = |name: &str, eps: &[&str]| Service {
            name: name.into(),
            endpoints: eps.iter().map(|e| e.parse().unwrap()).collect(),
        };
        MeshNames::new(&Mesh {
            name: Some("default".into()),
            services: vec![
                svc(
                    "a",
                    &["10.0.0.1:80", "10.0.0.1:81", "10.0.0.2:80", "[fd00::1]:80"],
                ),
                svc("Web_App", &["10.0.0.3:80"]),
            ],
            ..Mesh::default()
        })
    }

    fn ask(names: &MeshNames, name: &str, ty: RecordType, edns: bool) -> Option<Message> {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
        q.metadata.recursion_desired = true;
        if edns {
            q.set_edns(Edns::new());
        }
        // Through the wire format, as the proxy sees it.
        let parsed = parse_query(&q.to_vec().unwrap()).unwrap();
        let a = names.answer(&parsed, answer_limit(&parsed, false))?;
        let a = Message::from_vec(&a.bytes).unwrap();
        assert_eq!(a.metadata.id, q.metadata.id);
        assert_eq!(a.queries, parsed.queries);
        assert!(a.metadata.authoritative && a.metadata.recursion_desired);
        assert_eq!(a.edns.is_some(), edns);
        Some(a)
    }

    fn addrs(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .map(|r| {
                assert_eq!(r.ttl, MESH_TTL);
                match &r.data {
                    RData::A(a) => a.0.to_string(),
                    RData::AAAA(a) => a.0.to_string(),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn mesh_names_answer_a_and_aaaa_with_instance_addresses() {
        let n = mesh_names();
        for name in ["a.mesh", "a.mesh.", "A.MESH.", "a.Mesh"] {
            let a = ask(&n, name, RecordType::A, false).unwrap();
            assert_eq!(a.metadata.response_code, ResponseCode::NoError);
            assert_eq!(addrs(&a), ["10.0.0.1", "10.0.0.2"], "{name}");
        }
        let a = ask(&n, "a.mesh", RecordType::AAAA, true).unwrap();
        assert_eq!(addrs(&a), ["fd00::1"]);
        let a = ask(&n, "a.mesh", RecordType::ANY, false).unwrap();
        assert_eq!(addrs(&a), ["10.0.0.1", "10.0.0.2", "fd00::1"]);
        // The name exists, the type has no data.
        let a = ask(&n, "web_app.mesh", RecordType::AAAA, false).unwrap();
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        let a = ask(&n, "a.mesh", RecordType::MX, false).unwrap();
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        assert_eq!(
            addrs(&ask(&n, "Web_App.mesh", RecordType::A, false).unwrap()),
            ["10.0.0.3"]
        );
    }

    #[test]
    fn unknown_mesh_names_are_nxdomain_and_others_go_upstream() {
        let n = mesh_names();
        for name in ["unknown.mesh.", "x.a.mesh", "b.MESH"] {
            let a = ask(&n, name, RecordType::A, false).unwrap();
            assert_eq!(a.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(a.answers.is_empty());
        }
        for name in ["a.mesh.example.com.", "mesh.", "example.com", "amesh."] {
            assert!(ask(&n, name, RecordType::A, false).is_none(), "{name}");
        }
        // A mesh without reachable services still owns the zone.
        let none = MeshNames::new(&Mesh {
            name: Some("default".into()),
            ..Mesh::default()
        });
        let a = ask(&none, "a.mesh.", RecordType::A, false).unwrap();
        assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
        // Without Dataplane files the zone is not ours: upstream, as before.
        assert!(ask(&MeshNames::default(), "a.mesh.", RecordType::A, false).is_none());
    }

    #[test]
    fn services_differing_in_case_share_a_name_and_addresses_appear_once() {
        use crate::forwarder::mesh::{Mesh, Service};
        let svc = |name: &str, eps: &[&str]| Service {
            name: name.into(),
            endpoints: eps.iter().map(|e| e.parse().unwrap()).collect(),
        };
        let n = MeshNames::new(&Mesh {
            name: Some("default".into()),
            services: vec![
                svc("Web", &["10.0.0.5:80", "10.0.0.5:81", "10.0.0.6:80"]),
                svc("web", &["10.0.0.6:90", "10.0.0.7:80"]),
            ],
            ..Mesh::default()
        });
        let a = ask(&n, "WEB.mesh", RecordType::A, false).unwrap();
        assert_eq!(addrs(&a), ["10.0.0.5", "10.0.0.6", "10.0.0.7"]);
    }

    #[test]
    fn answers_hold_as_many_instances_as_fit_however_many_there_are() {
        use crate::forwarder::mesh::{Mesh, Service};
        // Distinct instances of both families in a mixed order, 1 to 20,000.
        for n in [1u32, 5, 31, 32, 33, 100, 20_000] {
            let eps: Vec<SocketAddr> = (0..n)
                .map(|i| {
                    let [_, a, b, c] = i.to_be_bytes();
                    if i % 3 == 1 {
                        let seg = |x: u8| u16::from(x);
                        SocketAddr::from(([0xfd00, 0, 0, 0, 0, seg(a), seg(b), seg(c)], 80))
                    } else {
                        SocketAddr::from(([10, a, b, c], 80))
                    }
                })
                .collect();
            let names = MeshNames::new(&Mesh {
                name: Some("default".into()),
                services: vec![Service {
                    name: "s".into(),
                    endpoints: eps.clone(),
                }],
                ..Mesh::default()
            });
            for ty in [RecordType::A, RecordType::AAAA, RecordType::ANY] {
                let list: Vec<IpAddr> = eps
                    .iter()
                    .map(SocketAddr::ip)
                    .filter(|ip| match ty {
                        RecordType::A => ip.is_ipv4(),
                        RecordType::AAAA => ip.is_ipv6(),
                        _ => true,
                    })
                    .collect();
                for limit in [512, 1232, 65535] {
                    for id in [0u16, 7, 65_535] {
                        let at = format!("n {n} {ty} limit {limit} id {id}");
                        let mut q = Message::query();
                        q.metadata.id = id;
                        q.add_query(Query::query(Name::from_ascii("s.mesh.").unwrap(), ty));
                        let got = names.answer(&q, limit).unwrap();
                        assert!(got.bytes.len() <= limit, "{at}");
                        let ips: Vec<IpAddr> = Message::from_vec(&got.bytes)
                            .unwrap()
                            .answers
                            .iter()
                            .map(|r| match &r.data {
                                RData::A(a) => IpAddr::V4(a.0),
                                RData::AAAA(a) => IpAddr::V6(a.0),
                                other => panic!("{other:?}"),
                            })
                            .collect();
                        if !got.fitted {
                            assert_eq!(ips, list, "{at}: all of them, in order");
                            continue;
                        }
                        // A window of the list, from the query ID on.
                        let k = ips.len();
                        let start = usize::from(id) % list.len();
                        let window: Vec<IpAddr> =
                            (0..k).map(|i| list[(start + i) % list.len()]).collect();
                        assert_eq!(ips, window, "{at}");
                        // As many as fit: one more would not (for one family;
                        // ANY starts from the average record and may stop short).
                        let header = 12 + 12; // header, question `s.mesh.` A/IN
                        if ty != RecordType::ANY {
                            let mut more = Message::from_vec(&got.bytes).unwrap();
                            let next = list[(start + k) % list.len()];
                            let rdata = match next {
                                IpAddr::V4(a) => RData::A(A(a)),
                                IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                            };
                            more.add_answer(Record::from_rdata(
                                Name::from_ascii("s.mesh.").unwrap(),
                                MESH_TTL,
                                rdata,
                            ));
                            let b = more.to_vec().unwrap();
                            assert!(b.len() > limit || b[2] & 0x02 != 0, "{at}: {k} + 1 fit");
                        } else {
                            // Each record is at most 28 bytes + 6 when hickory
                            // stops compressing the name (past 16 KiB).
                            assert!(k >= (limit - header) / 34, "{at}: {k}");
                        }
                    }
                }
            }
        }
    }

    fn big(n: u8) -> Settings {
        use crate::forwarder::mesh::{Mesh, Service};
        let mut eps: Vec<SocketAddr> = (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 1, i], 80)))
            .collect();
        eps.extend(
            (1..=n).map(|i| SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i)], 80))),
        );
        let mut o = crate::forwarder::options::tests::defaults();
        o.mesh = Mesh {
            name: Some("default".into()),
            services: vec![Service {
                name: "big".into(),
                endpoints: eps,
            }],
            ..Mesh::default()
        };
        Settings::build(o, None, &mut Vec::new()).unwrap()
    }

    async fn ask_big(
        s: &Settings,
        ty: RecordType,
        edns: Option<u16>,
        tcp: bool,
        id: u16,
    ) -> (Message, usize) {
        let mut q = Message::query();
        q.metadata.id = id;
        q.add_query(Query::query(Name::from_ascii("big.mesh.").unwrap(), ty));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            q.set_edns(e);
        }
        let bytes = q.to_vec().unwrap();
        let a = resolve(s, &bytes, tcp, &DnsStats::default()).await.unwrap();
        (Message::from_vec(&a).unwrap(), a.len())
    }

    #[tokio::test]
    async fn a_big_mesh_answer_holds_as_many_records_as_fit_without_tc() {
        let s = big(60);
        // No EDNS: 512 bytes. 16 bytes per A record after a 26-byte start.
        let (a, len) = ask_big(&s, RecordType::A, None, false, 0).await;
        assert!(
            !a.metadata.truncation,
            "TC would send glibc to TCP/53, which bypasses the proxy"
        );
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert!(len <= 512, "{len}");
        assert_eq!(a.answers.len(), 30);
        assert!(512 - len < 16, "room for one more record: {len}");
        let got = addrs(&a);
        assert_eq!(got[0], "10.0.1.1");
        // Another query ID starts elsewhere, so all instances get used.
        let (b, _) = ask_big(&s, RecordType::A, None, false, 45).await;
        assert_eq!(addrs(&b)[0], "10.0.1.46");
        assert_eq!(addrs(&b)[29], "10.0.1.15", "the window wraps around");
        // AAAA records are bigger.
        let (a, len) = ask_big(&s, RecordType::AAAA, None, false, 0).await;
        assert!(
            len <= 512 && a.answers.len() == 17,
            "{len} {}",
            a.answers.len()
        );
        // EDNS: the client's size, at most the 1232 we advertise.
        let (a, len) = ask_big(&s, RecordType::ANY, Some(4096), false, 0).await;
        assert!(len <= 1232 && !a.metadata.truncation, "{len}");
        assert!(
            a.answers.len() > 40 && a.answers.len() < 120,
            "{}",
            a.answers.len()
        );
        let (a, _) = ask_big(&s, RecordType::A, Some(1232), false, 0).await;
        assert_eq!(a.answers.len(), 60, "60 A records fit in 1232 bytes");
        // TCP: everything.
        let (a, _) = ask_big(&s, RecordType::ANY, None, true, 0).await;
        assert_eq!(a.answers.len(), 120);
        // A small service is answered whole, in file order.
        let (a, _) = ask_big(&big(3), RecordType::A, None, false, 7).await;
        assert_eq!(addrs(&a), ["10.0.1.1", "10.0.1.2", "10.0.1.3"]);
    }

    #[test]
    fn resolv_conf_servers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "# c\nnameserver 10.0.0.2\nnameserver fd00::53\n").unwrap();
        let mut w = Vec::new();
        let u = upstreams_from(&p, &mut w).unwrap();
        assert_eq!(
            u.servers,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        std::fs::write(&p, "search x\n").unwrap();
        let e = upstreams_from(&p, &mut w).unwrap_err();
        assert!(e.to_string().contains("no nameserver"), "{e}");
    }
}
