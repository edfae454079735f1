//! The loop guard: recognises a connection we accept that is our own
//! upstream connect come back through the redirect (the forwarder runs as a
//! UID the rules do not exempt), so it can be refused instead of relayed
//! again and again.
//!
//! Each listener has a registry of (local address, destination) of the
//! upstream connects that could come back to it: outbound upstreams to the
//! outbound listener (an outbound upstream arriving at the inbound listener
//! is the rules' intended hairpin, reference §2.2), inbound upstreams to
//! both. A connect is recorded under the registry's lock *before* its SYN
//! leaves, so the accept side cannot check a looped connection before it is
//! recorded, whatever thread runs it.
//!
//! A match alone is not proof. Conntrack remaps an application connection's
//! source port when REDIRECT's reply tuple clashes with a lingering entry,
//! and the port it picks can be one of ours towards the same destination
//! (seen in the benchmark: about one connection in a thousand right after a
//! burst of short connections). So a first match only marks the connection
//! as suspect and it is relayed; a real loop comes straight back, and its
//! next round matches the suspect's own upstream: that second match in a row
//! is the loop, refused and counted (one extra hop, never a false reset).
//!
//! A record lives while its loop could still be waiting in the accept queue,
//! and no longer (a long-lived record would only widen the chance of a
//! coincidence). The kernel queues a looped connection before the connect's
//! completion becomes visible to us, so once the connect is done, the first
//! drain of the accept queue that *started* after that retires the record.
//!
//! Our own connects can also come back *although* the rules exempt us: a
//! stale conntrack entry of a client connection we reset takes them over.
//! When the forwarder resets a client (a refusal, a failed connect, a
//! reset or cut relay), the client's entry — NATed to our listener by the
//! REDIRECT rule — ends in state CLOSE after an RST in the reply direction
//! without a FIN, and stays for `nf_conntrack_tcp_timeout_close` (10 s). A
//! new SYN with the same addresses and ports does not reopen such an entry
//! (conntrack reopens only after a FIN, or after an RST from the SYN's own
//! side): it is "ignored" but passes with the old entry's NAT, and the
//! SYN-ACK resynchronises the entry — so the connection lands on our own
//! listener. And the kernel picks our upstream port toward a destination
//! from the same per-destination sequence the applications' connects to it
//! used, so right after an overload (many clients reset) our connects walk
//! into those entries one after another: each loops, is refused, resets its
//! innocent client and leaves one more such entry (seen with `conntrack -L`:
//! `CLOSE src=<host> sport=P dport=7000 src=127.0.0.1 sport=15001`, and an
//! access log full of `end=loop`). So every client we reset is quarantined
//! ([`LoopGuard::quarantine`]) for that timeout; an upstream connect that
//! got one of those 4-tuples is abandoned at once and made again from
//! another port, and its connection, if it reached our listener, is closed
//! with a FIN — which also makes that conntrack entry reopenable.
//!
//! The abandoned connect's socket stays open until its record retires. A
//! record marked taken over makes the listener close, unlogged, whatever
//! arrives from its 4-tuple, so that 4-tuple must stay ours for as long:
//! closed at once, it was free again as soon as our listener had closed
//! its side first (no TIME-WAIT on ours), and the kernel could give it to
//! the application's very next connect to the same destination — which
//! reopened the now FIN-closed conntrack entry, was redirected to us, judged
//! taken over and closed: an innocent client cut (EOF, or a reset when its
//! data had arrived) with no access-log line (seen with `conntrack -E`:
//! `DESTROY … TIME_WAIT` then `NEW … SYN_SENT` for that port right after
//! our abandoned connect; up to one run in ten of the overload test).
//! While our socket holds the 4-tuple no other socket can have it.
//!
//! Once such a connection of ours has been closed at our listener, the
//! 4-tuple leaves the quarantine: when our socket closes in turn, the entry
//! has seen a FIN both ways and the next SYN reopens it. Kept quarantined,
//! and no longer in TIME-WAIT on our side (our listener closed first), it
//! was handed to our connects again and again, each abandoned although it
//! would have reached the real destination.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use super::net::canonical;

/// Which listener: outbound or inbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Outbound = 0,
    Inbound = 1,
}

type Key = (SocketAddr, SocketAddr);

/// The maps of the guard are read or written several times per connection:
/// foldhash (randomly seeded per map) instead of SipHash, which cost about
/// a tenth of the forwarder's user-space instructions per connection
/// (callgrind, see docs/forwarder.md "Performance").
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How many records share a key (it can come back after a close), whether
/// one was made for a suspect connection, and whether it is a connect
/// abandoned because a stale conntrack entry would take it over.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    count: u32,
    suspect: bool,
    taken_over: bool,
}

/// What the guard says about an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not one of ours.
    Clear,
    /// Matches one of our connects: relay it, but as a suspect.
    Suspect,
    /// Matches the connect of a suspect: a loop.
    Loop,
    /// One of our abandoned connects, brought here by a stale conntrack
    /// entry: close it quietly (with a FIN, see the module docs).
    TakenOver,
}

/// Client 4-tuples (peer, original destination) the forwarder reset, until
/// their conntrack entries expire.
#[derive(Debug)]
struct Quarantine {
    until: HashMap<Key, Instant>,
    order: VecDeque<(Key, Instant)>,
    ttl: Duration,
}

/// At most this many quarantined 4-tuples (the oldest go first).
const QUARANTINE_MAX: usize = 1 << 20;

impl Quarantine {
    fn prune(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front().copied() {
            if at > now && self.order.len() <= QUARANTINE_MAX {
                break;
            }
            self.order.pop_front();
            if self.until.get(&key) == Some(&at) {
                self.until.remove(&key);
            }
        }
    }
}

/// How long conntrack keeps a reset connection: the netns's
/// `nf_conntrack_tcp_timeout_close` (10 s by default), plus a second.
pub fn close_timeout() -> Duration {
    let secs = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(10);
    Duration::from_secs(secs.max(10) + 1)
}

/// How a started upstream connect went.
pub enum Started {
    /// Connecting; hand the record back with [`LoopGuard::done`].
    Connecting(Socket, SocketAddr, Record),
    /// The kernel gave it the 4-tuple of a client we reset: abandoned (its
    /// socket stays open in the record until the record retires, see the
    /// module docs); connect again. Hand the record back too.
    TakenOver(Record),
}

#[derive(Debug, Default)]
struct Registry {
    /// Recorded connects.
    live: HashMap<Key, Entry>,
    /// Finished connects waiting for a drain, with their sequence number
    /// and, for an abandoned connect, its socket (closed when the record
    /// has retired from every listener it is in).
    retiring: VecDeque<(Key, u64, Option<Arc<Socket>>)>,
    /// Sequence number of the next finished connect.
    seq: u64,
}

/// The registries of both listeners, and the quarantined client 4-tuples.
#[derive(Debug)]
pub struct LoopGuard {
    regs: [Mutex<Registry>; 2],
    quarantine: Mutex<Quarantine>,
}

impl Default for LoopGuard {
    fn default() -> Self {
        LoopGuard::new(close_timeout())
    }
}

/// A recorded upstream connect; hand it back with [`LoopGuard::done`].
#[derive(Debug)]
pub struct Record {
    key: Key,
    /// Registries it is in.
    sides: &'static [Side],
    /// An abandoned connect's socket, kept open so that its 4-tuple stays
    /// ours while the record says [`Verdict::TakenOver`] for it.
    held: Option<Socket>,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LoopGuard {
    /// Quarantines reset clients for `ttl` (see [`close_timeout`]).
    pub fn new(ttl: Duration) -> Self {
        LoopGuard {
            regs: Default::default(),
            quarantine: Mutex::new(Quarantine {
                until: HashMap::default(),
                order: VecDeque::new(),
                ttl,
            }),
        }
    }

    /// Judges a connection accepted on `side` from `peer` to `dst`.
    ///
    /// [`Verdict::TakenOver`] also ends that 4-tuple's quarantine: the
    /// caller closes the connection with a FIN, and our abandoned socket
    /// holds the 4-tuple until its record retires, so by the time any
    /// connect can get it again the conntrack entry has seen both FINs and
    /// reopens for a new SYN (see the module docs).
    pub fn check(&self, side: Side, peer: SocketAddr, dst: SocketAddr) -> Verdict {
        let key = (canonical(peer), canonical(dst));
        let verdict = match lock(&self.regs[side as usize]).live.get(&key) {
            None => Verdict::Clear,
            Some(e) if e.taken_over => Verdict::TakenOver,
            Some(e) if e.suspect => Verdict::Loop,
            Some(_) => Verdict::Suspect,
        };
        if verdict == Verdict::TakenOver {
            let mut q = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
            q.until.remove(&key);
        }
        verdict
    }

    /// The forwarder reset (or is about to reset) the client connection
    /// `peer` → `dst`: its conntrack entry now points at our listener and
    /// cannot be reopened; no upstream connect may use that 4-tuple until it
    /// expires.
    pub fn quarantine(&self, peer: SocketAddr, dst: SocketAddr) {
        let key = (canonical(peer), canonical(dst));
        let mut q = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        q.prune(now);
        let at = now + q.ttl;
        q.until.insert(key, at);
        q.order.push_back((key, at));
    }

    fn quarantined(&self, key: &Key) -> bool {
        let q = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        q.until.get(key).is_some_and(|at| *at > Instant::now())
    }

    /// Starts a non-blocking connect to `dst` for a connection accepted on
    /// `from` (inbound ones from `source`: `127.0.0.6` / `::6`) and records
    /// it, with whether that connection is a suspect. A connect that got a
    /// quarantined 4-tuple is abandoned ([`Started::TakenOver`]).
    pub fn connect(
        &self,
        from: Side,
        dst: SocketAddr,
        source: Option<IpAddr>,
        suspect: bool,
    ) -> io::Result<Started> {
        let s = Socket::new(
            Domain::for_address(dst),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        s.set_tcp_nodelay(true)?;
        if let Some(ip) = source {
            // Pick the port at connect time (4-tuple unique), not at bind time.
            let _ = setsockopt(&s.as_fd(), sockopt::IpBindAddressNoPort, &true);
            s.bind(&SocketAddr::new(ip, 0).into()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot bind the upstream source address {ip} (is it on the loopback interface?): {e}"),
                )
            })?;
        }
        let sides: &'static [Side] = match from {
            Side::Outbound => &[Side::Outbound],
            Side::Inbound => &[Side::Outbound, Side::Inbound],
        };
        // Locks in index order; held across connect(2) so the record exists
        // before the SYN can come back. (At most two: no allocation.)
        let mut held: [Option<MutexGuard<'_, Registry>>; 2] = [None, None];
        for (slot, side) in held.iter_mut().zip(sides) {
            *slot = Some(lock(&self.regs[*side as usize]));
        }
        match s.connect(&dst.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let local = s
            .local_addr()?
            .as_socket()
            .map(canonical)
            .ok_or_else(|| io::Error::other("upstream socket has no IP address"))?;
        let key = (local, dst);
        // Decided before the locks go: a connection that comes back for this
        // connect is judged by what is recorded here.
        let taken_over = self.quarantined(&key);
        for r in held.iter_mut().flatten() {
            let e = r.live.entry(key).or_default();
            e.count += 1;
            e.suspect |= suspect;
            e.taken_over |= taken_over;
        }
        drop(held);
        if taken_over {
            // Kept open until the record retires (see the module docs), then
            // closed with a FIN if the handshake with our listener is done,
            // answered with a reset otherwise: either way that conntrack
            // entry becomes reopenable.
            let held = Some(s);
            return Ok(Started::TakenOver(Record { key, sides, held }));
        }
        Ok(Started::Connecting(
            s,
            local,
            Record {
                key,
                sides,
                held: None,
            },
        ))
    }

    /// The connect finished (connected, failed or timed out): its record
    /// retires at the next drain of each of its listeners.
    pub fn done(&self, rec: Record) {
        let held = rec.held.map(Arc::new);
        for side in rec.sides {
            let mut r = lock(&self.regs[*side as usize]);
            let seq = r.seq;
            r.retiring.push_back((rec.key, seq, held.clone()));
            r.seq += 1;
        }
    }

    /// Called by a listener before it starts draining its accept queue.
    pub fn drain_starts(&self, side: Side) -> u64 {
        lock(&self.regs[side as usize]).seq
    }

    /// Called when a drain that started at `start` emptied the accept queue.
    pub fn drained(&self, side: Side, start: u64) {
        // Sockets of abandoned connects are closed once the lock is released.
        let mut closing = Vec::new();
        let mut r = lock(&self.regs[side as usize]);
        while r.retiring.front().is_some_and(|(_, seq, _)| *seq < start) {
            let (key, _, held) = r.retiring.pop_front().expect("front exists");
            closing.extend(held);
            if let Some(e) = r.live.get_mut(&key) {
                e.count -= 1;
                if e.count == 0 {
                    r.live.remove(&key);
                }
            }
        }
        drop(r);
        drop(closing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(g: &LoopGuard, side: Side) {
        let s = g.drain_starts(side);
        g.drained(side, s);
    }

    #[test]
    fn records_live_until_a_drain_that_started_after_the_connect_finished() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let g = LoopGuard::default();
        let Started::Connecting(_s, local, rec) =
            g.connect(Side::Outbound, dst, None, false).unwrap()
        else {
            panic!("not quarantined")
        };
        let (_a, peer) = l.accept().unwrap();
        assert_eq!(peer, local);
        assert_eq!(g.check(Side::Outbound, peer, dst), Verdict::Suspect);
        // An outbound upstream at the inbound listener is the hairpin, not a loop.
        assert_eq!(g.check(Side::Inbound, peer, dst), Verdict::Clear);
        // The same local port towards another destination is someone else's.
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(g.check(Side::Outbound, peer, other), Verdict::Clear);
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", peer.port())
            .parse()
            .unwrap();
        assert_eq!(g.check(Side::Outbound, mapped, dst), Verdict::Suspect);

        let early = g.drain_starts(Side::Outbound);
        g.done(rec);
        g.drained(Side::Outbound, early);
        assert_eq!(
            g.check(Side::Outbound, peer, dst),
            Verdict::Suspect,
            "the drain began before the connect finished"
        );
        drain(&g, Side::Outbound);
        assert_eq!(g.check(Side::Outbound, peer, dst), Verdict::Clear);
    }

    #[test]
    fn a_suspects_connect_coming_back_is_a_loop_on_both_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let g = LoopGuard::default();
        let Started::Connecting(_s, local, rec) =
            g.connect(Side::Inbound, dst, None, true).unwrap()
        else {
            panic!("not quarantined")
        };
        assert_eq!(g.check(Side::Inbound, local, dst), Verdict::Loop);
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::Loop);
        g.done(rec);
        drain(&g, Side::Outbound);
        drain(&g, Side::Inbound);
        assert_eq!(g.check(Side::Inbound, local, dst), Verdict::Clear);
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::Clear);
    }

    #[test]
    fn a_connect_that_gets_a_quarantined_4_tuple_is_abandoned() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let g = LoopGuard::new(Duration::from_secs(60));
        // Learn which port the next connect would take: the kernel walks a
        // per-destination sequence, so quarantine a window of ports ahead.
        let Started::Connecting(s, first, rec) =
            g.connect(Side::Outbound, dst, None, false).unwrap()
        else {
            panic!("nothing is quarantined yet")
        };
        drop(s);
        g.done(rec);
        for port in 1..=u16::MAX {
            g.quarantine(SocketAddr::new(first.ip(), port), dst);
        }
        let Started::TakenOver(rec) = g.connect(Side::Outbound, dst, None, false).unwrap() else {
            panic!("every port is quarantined")
        };
        let (local, _) = rec.key;
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::TakenOver);
        g.done(rec);
        drain(&g, Side::Outbound);
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::Clear);
        // Another destination is not affected, and quarantines expire.
        let g = LoopGuard::new(Duration::ZERO);
        g.quarantine(first, dst);
        assert!(!g.quarantined(&(first, dst)));
    }

    /// Reads `c` (non-blocking) until it has something to say: `Some(n)`
    /// bytes (0: the peer closed) or `None` when nothing came for a while.
    fn read_soon(c: &mut std::net::TcpStream, wait: Duration) -> Option<usize> {
        use std::io::Read;
        let t = Instant::now();
        loop {
            match c.read(&mut [0u8; 16]) {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && t.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn an_abandoned_connect_holds_its_4_tuple_until_its_record_retires() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let g = LoopGuard::new(Duration::from_secs(60));
        for port in 1..=u16::MAX {
            g.quarantine(SocketAddr::new(dst.ip(), port), dst);
        }
        let Started::TakenOver(rec) = g.connect(Side::Inbound, dst, None, false).unwrap() else {
            panic!("every port is quarantined")
        };
        let (local, _) = rec.key;
        let (mut c, peer) = l.accept().unwrap();
        assert_eq!(peer, local);
        c.set_nonblocking(true).unwrap();
        // Closed at once, the socket would free its 4-tuple for any other
        // connect while the record still says "taken over" (module docs).
        assert_eq!(read_soon(&mut c, Duration::from_millis(100)), None);
        g.done(rec);
        assert_eq!(read_soon(&mut c, Duration::from_millis(100)), None);
        assert!(g.quarantined(&(local, dst)));
        drain(&g, Side::Inbound);
        assert_eq!(
            g.check(Side::Outbound, local, dst),
            Verdict::TakenOver,
            "still recorded for the outbound listener"
        );
        // Our listener closes it: that 4-tuple is usable again once ours is.
        assert!(!g.quarantined(&(local, dst)));
        let neighbour = SocketAddr::new(local.ip(), local.port() ^ 1);
        assert!(g.quarantined(&(neighbour, dst)), "only that 4-tuple");
        assert_eq!(read_soon(&mut c, Duration::from_millis(100)), None);
        drain(&g, Side::Outbound);
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::Clear);
        // Retired from both listeners: closed with a FIN.
        assert_eq!(read_soon(&mut c, Duration::from_secs(5)), Some(0));
    }
}
