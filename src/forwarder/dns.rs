//! The DNS proxy on the DNS port (UDP and TCP, IPv4 and IPv6): each query is
//! checked with hickory-proto, offered to [`MeshNames`] (the seam where
//! `<service>.mesh` answers from `Dataplane` files will plug in), then sent
//! unchanged to the name servers of resolv.conf in order; when every upstream
//! fails the client gets a SERVFAIL. Its own upstream queries bypass the
//! redirect because the forwarder runs as the exempt UID.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use super::stats::DnsStats;

/// Answers for names the mesh knows; `None` sends the query upstream.
pub trait MeshNames: Send + Sync {
    fn answer(&self, query: &Message) -> Option<Message>;
}

/// No mesh names (until `Dataplane` files are read).
pub struct NoMeshNames;

impl MeshNames for NoMeshNames {
    fn answer(&self, _query: &Message) -> Option<Message> {
        None
    }
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

/// The addresses the DNS proxy binds: loopback only, unless virtual networks
/// are captured (their DNS arrives on other addresses), as kuma-dp does.
pub fn bind_addrs(ipv6: bool, all: bool) -> Vec<IpAddr> {
    let mut v = vec![if all {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }];
    if ipv6 {
        v.push(if all {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        });
    }
    v
}

pub struct Dns {
    pub upstreams: Upstreams,
    pub mesh: Box<dyn MeshNames>,
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

impl Dns {
    /// The answer bytes for one query (never empty unless the input is garbage).
    async fn resolve(&self, bytes: &[u8], tcp: bool, stats: &DnsStats) -> Option<Vec<u8>> {
        let Ok(query) = parse_query(bytes) else {
            stats.invalid.fetch_add(1, Relaxed);
            return formerr(bytes);
        };
        if let Some(a) = self.mesh.answer(&query) {
            return a.to_vec().ok();
        }
        for server in &self.upstreams.servers {
            let r = if tcp {
                tokio::time::timeout(self.upstreams.timeout, exchange_tcp(*server, bytes)).await
            } else {
                tokio::time::timeout(self.upstreams.timeout, exchange_udp(*server, bytes)).await
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
}

async fn exchange_udp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(server).await?;
    s.send(q).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = s.recv(&mut buf).await?;
        // Ignore stray datagrams with another ID.
        if n >= 2 && buf[..2] == q[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
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

pub async fn serve_udp(
    sock: UdpSocket,
    dns: Arc<Dns>,
    stats: Arc<super::proxy::Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let st = &stats.stats.dns;
        st.queries_udp.fetch_add(1, Relaxed);
        let Ok(permit) = dns.inflight.try_acquire() else {
            st.overflow.fetch_add(1, Relaxed);
            continue;
        };
        permit.forget();
        let q = buf[..n].to_vec();
        let (sock, dns, stats) = (sock.clone(), dns.clone(), stats.clone());
        tokio::spawn(async move {
            if let Some(a) = dns.resolve(&q, false, &stats.stats.dns).await {
                let _ = sock.send_to(&a, from).await;
            }
            dns.inflight.add_permits(1);
        });
    }
}

pub async fn serve_tcp(
    listener: TcpListener,
    dns: Arc<Dns>,
    stats: Arc<super::proxy::Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let s = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let (dns, stats) = (dns.clone(), stats.clone());
        tokio::spawn(async move {
            let mut s = s;
            let st = &stats.stats.dns;
            // One connection may carry several queries; 10s idle ends it.
            while let Ok(Ok(Some(q))) =
                tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s)).await
            {
                st.queries_tcp.fetch_add(1, Relaxed);
                let Some(a) = dns.resolve(&q, true, st).await else {
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
