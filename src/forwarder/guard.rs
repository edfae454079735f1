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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard};

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

/// How many records share a key (it can come back after a close), and
/// whether one was made for a suspect connection.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    count: u32,
    suspect: bool,
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
}

#[derive(Debug, Default)]
struct Registry {
    /// Recorded connects.
    live: HashMap<Key, Entry>,
    /// Finished connects waiting for a drain, with their sequence number.
    retiring: VecDeque<(Key, u64)>,
    /// Sequence number of the next finished connect.
    seq: u64,
}

/// The registries of both listeners.
#[derive(Debug, Default)]
pub struct LoopGuard {
    regs: [Mutex<Registry>; 2],
}

/// A recorded upstream connect; hand it back with [`LoopGuard::done`].
#[derive(Debug)]
pub struct Record {
    key: Key,
    /// Registries it is in.
    sides: &'static [Side],
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LoopGuard {
    /// Judges a connection accepted on `side` from `peer` to `dst`.
    pub fn check(&self, side: Side, peer: SocketAddr, dst: SocketAddr) -> Verdict {
        match lock(&self.regs[side as usize])
            .live
            .get(&(canonical(peer), canonical(dst)))
        {
            None => Verdict::Clear,
            Some(e) if e.suspect => Verdict::Loop,
            Some(_) => Verdict::Suspect,
        }
    }

    /// Starts a non-blocking connect to `dst` for a connection accepted on
    /// `from` (inbound ones from `source`: `127.0.0.6` / `::6`) and records
    /// it, with whether that connection is a suspect.
    pub fn connect(
        &self,
        from: Side,
        dst: SocketAddr,
        source: Option<IpAddr>,
        suspect: bool,
    ) -> io::Result<(Socket, SocketAddr, Record)> {
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
        // before the SYN can come back.
        let mut held: Vec<MutexGuard<'_, Registry>> = sides
            .iter()
            .map(|s| lock(&self.regs[*s as usize]))
            .collect();
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
        for r in &mut held {
            let e = r.live.entry(key).or_default();
            e.count += 1;
            e.suspect |= suspect;
        }
        Ok((s, local, Record { key, sides }))
    }

    /// The connect finished (connected, failed or timed out): its record
    /// retires at the next drain of each of its listeners.
    pub fn done(&self, rec: Record) {
        for side in rec.sides {
            let mut r = lock(&self.regs[*side as usize]);
            let seq = r.seq;
            r.retiring.push_back((rec.key, seq));
            r.seq += 1;
        }
    }

    /// Called by a listener before it starts draining its accept queue.
    pub fn drain_starts(&self, side: Side) -> u64 {
        lock(&self.regs[side as usize]).seq
    }

    /// Called when a drain that started at `start` emptied the accept queue.
    pub fn drained(&self, side: Side, start: u64) {
        let mut r = lock(&self.regs[side as usize]);
        while r.retiring.front().is_some_and(|(_, seq)| *seq < start) {
            let (key, _) = r.retiring.pop_front().expect("front exists");
            if let Some(e) = r.live.get_mut(&key) {
                e.count -= 1;
                if e.count == 0 {
                    r.live.remove(&key);
                }
            }
        }
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
        let (_s, local, rec) = g.connect(Side::Outbound, dst, None, false).unwrap();
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
        let (_s, local, rec) = g.connect(Side::Inbound, dst, None, true).unwrap();
        assert_eq!(g.check(Side::Inbound, local, dst), Verdict::Loop);
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::Loop);
        g.done(rec);
        drain(&g, Side::Outbound);
        drain(&g, Side::Inbound);
        assert_eq!(g.check(Side::Inbound, local, dst), Verdict::Clear);
        assert_eq!(g.check(Side::Outbound, local, dst), Verdict::Clear);
    }
}
