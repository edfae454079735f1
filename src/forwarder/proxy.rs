//! The TCP side of the forwarder: accept on a redirect port, read the
//! original destination, route it (`route.rs`: a mesh service's cluster, a
//! local inbound's workload, or passthrough), refuse loops, blocked
//! destinations and connections over a circuit-breaker limit at once (a
//! reset, counted), connect upstream with the cluster's timeout and retries,
//! relay, count and log.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};
use tokio::io::Interest;
use tokio::sync::{Notify, watch};

use super::accesslog::{AccessLog, Record};
use super::cluster::{Cluster, ClusterIdx, ClusterSettings, Clusters};
use super::guard::{LoopGuard, Side, Verdict};
use super::net::{self, canonical, set_reset_on_close};
use super::options::Options;
use super::relay::{Conn, End, Moved, relay};
use super::route::{Route, Router};
use super::stats::{ClusterStats, Stats};

/// State every connection shares.
pub struct Shared {
    pub opts: Options,
    pub stats: Stats,
    pub clusters: Clusters,
    pub guard: LoopGuard,
    pub router: Router,
    pub access_log: Option<AccessLog>,
    /// Ports of our own TCP listeners (a destination on one of them is a loop).
    pub own_ports: Vec<u16>,
    /// Connections open (all clusters); the drain waits for 0.
    pub open: AtomicU64,
    pub closed: Notify,
    pub draining: AtomicBool,
    /// The `::6` bind failure is reported once, not per connection.
    source_warned: AtomicBool,
}

impl Shared {
    /// The routing table and the clusters come from `opts` (see `route.rs`).
    pub fn new(opts: Options, access_log: Option<AccessLog>) -> Self {
        let (router, clusters) = super::route::build(&opts);
        let own_ports = [opts.outbound_port, opts.inbound_port]
            .into_iter()
            .flatten()
            .collect();
        Shared {
            opts,
            stats: Stats::default(),
            clusters,
            guard: LoopGuard::default(),
            router,
            access_log,
            own_ports,
            open: AtomicU64::new(0),
            closed: Notify::new(),
            draining: AtomicBool::new(false),
            source_warned: AtomicBool::new(false),
        }
    }

    /// Our own upstream connection come back (see guard.rs), or a
    /// destination that is one of our listeners (the locality test runs only
    /// for our ports).
    fn loop_verdict(&self, side: Side, peer: SocketAddr, dst: SocketAddr) -> Verdict {
        if self.own_ports.contains(&dst.port()) && net::is_local(dst.ip()) {
            return Verdict::Loop;
        }
        self.guard.check(side, peer, dst)
    }

    fn closed_one(&self) {
        if self.open.fetch_sub(1, Relaxed) == 1 && self.draining.load(Relaxed) {
            self.closed.notify_waiters();
        }
    }

    fn log(&self, rec: Record<'_>) {
        if let Some(l) = &self.access_log {
            l.write(&rec);
        }
    }
}

/// Accepts until `stop` turns true; the listener is closed on return.
pub async fn serve(
    listener: std::net::TcpListener,
    inbound: bool,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let side = if inbound {
        Side::Inbound
    } else {
        Side::Outbound
    };
    let listener = net::register(Socket::from(listener), Interest::READABLE)?;
    // An idle listener still drains now and then, so that the loop guard's
    // records retire (see guard.rs).
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut ready = tokio::select! {
            biased;
            _ = stop.changed() => break,
            g = listener.readable() => Some(g?),
            _ = tick.tick() => None,
        };
        let start = sh.guard.drain_starts(side);
        // Take the whole backlog per wake-up.
        loop {
            match listener
                .get_ref()
                .accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            {
                Ok((s, peer)) => on_accept(&sh, s, peer, side),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(g) = ready.as_mut() {
                        g.clear_ready();
                    }
                    sh.guard.drained(side, start);
                    break;
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    crate::ui::warn(format!("accepting on port {port}: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                }
            }
        }
    }
    Ok(())
}

fn refuse(s: Socket) {
    set_reset_on_close(s.as_fd());
    drop(s);
}

/// Claims one unit of `gauge` unless it is already at `max`.
fn claim(gauge: &AtomicU64, max: u32) -> bool {
    if gauge.fetch_add(1, Relaxed) >= u64::from(max) {
        gauge.fetch_sub(1, Relaxed);
        false
    } else {
        true
    }
}

fn on_accept(sh: &Arc<Shared>, s: Socket, peer: SockAddr, side: Side) {
    let inbound = side == Side::Inbound;
    let started = Instant::now();
    let Some(peer) = peer.as_socket().map(canonical) else {
        return refuse(s);
    };
    let dst = match net::original_dst(s.as_fd(), peer) {
        Ok(d) => canonical(d),
        Err(_) => {
            sh.stats.no_original_dst.fetch_add(1, Relaxed);
            refuse(s);
            return;
        }
    };
    let (cluster, to) = match sh.router.route(dst, inbound) {
        Route::Relay { cluster, to } => (cluster, Some(to)),
        Route::Blocked(cluster) => (cluster, None),
    };
    let c = sh.clusters.get(cluster);
    let st = &c.stats;
    st.cx_total.fetch_add(1, Relaxed);
    let refused = |why: &'static str, counter: &AtomicU64, s: Socket| {
        counter.fetch_add(1, Relaxed);
        refuse(s);
        sh.log(Record::refused(peer, dst, &c.name, started, why));
    };
    let verdict = sh.loop_verdict(side, peer, dst);
    if verdict == Verdict::Loop {
        return refused("loop", &st.loop_refused, s);
    }
    let Some(to) = to else {
        return refused("blocked", &st.blocked, s);
    };
    let l = c.settings.limits;
    if u64::from(l.max_requests) <= st.rq_active.load(Relaxed) {
        return refused("overflow", &st.overflow, s);
    }
    if !claim(&st.cx_active, l.max_connections) {
        return refused("overflow", &st.overflow, s);
    }
    if !claim(&st.cx_pending, l.max_pending_requests) {
        st.cx_active.fetch_sub(1, Relaxed);
        return refused("overflow", &st.overflow, s);
    }
    sh.open.fetch_add(1, Relaxed);
    tokio::spawn(handle(
        sh.clone(),
        s,
        Accepted {
            peer,
            dst,
            to,
            side,
            cluster,
            started,
            suspect: verdict == Verdict::Suspect,
        },
    ));
}

enum ConnectError {
    Timeout,
    Failed(std::io::Error),
}

/// What was learnt about a connection when it was accepted.
struct Accepted {
    peer: SocketAddr,
    /// The original destination.
    dst: SocketAddr,
    /// Where to connect: `dst`, or a local inbound's workload address.
    to: SocketAddr,
    side: Side,
    /// Its settings are read from the table, not copied into every task.
    cluster: ClusterIdx,
    started: Instant,
    /// Looked like one of our own connects come back (see guard.rs).
    suspect: bool,
}

async fn handle(sh: Arc<Shared>, client: Socket, a: Accepted) {
    let Accepted {
        peer,
        dst,
        to,
        side,
        cluster,
        started,
        suspect,
    } = a;
    let c: &Cluster = sh.clusters.get(cluster);
    let (st, settings) = (&c.stats, &c.settings);
    let client = match net::register(client, Interest::READABLE | Interest::WRITABLE) {
        Ok(c) => c,
        Err(e) => {
            crate::ui::warn(format!("registering a connection from {peer}: {e}"));
            st.cx_pending.fetch_sub(1, Relaxed);
            st.cx_active.fetch_sub(1, Relaxed);
            sh.closed_one();
            return;
        }
    };
    let source = (side == Side::Inbound).then_some(if to.is_ipv6() {
        IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6))
    } else {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))
    });
    let connected = connect_upstream(&sh, st, (side, suspect), to, source, settings).await;
    st.cx_pending.fetch_sub(1, Relaxed);
    let (moved, end) = match connected {
        Ok(upstream) => {
            st.rq_active.fetch_add(1, Relaxed);
            let mut seen = Moved::default();
            let (moved, end) = relay(&client, &upstream, settings.idle_timeout, |m| {
                st.bytes_sent.fetch_add(m.sent - seen.sent, Relaxed);
                st.bytes_received
                    .fetch_add(m.received - seen.received, Relaxed);
                seen = m;
            })
            .await;
            drop(upstream);
            st.rq_active.fetch_sub(1, Relaxed);
            match end {
                End::IdleTimeout => st.idle_timeout.fetch_add(1, Relaxed),
                End::Reset => st.reset.fetch_add(1, Relaxed),
                End::Closed => 0,
            };
            (moved, end.as_str())
        }
        Err(e) => {
            let why = match e {
                ConnectError::Timeout => {
                    st.connect_timeout.fetch_add(1, Relaxed);
                    "connect_timeout"
                }
                ConnectError::Failed(e) => {
                    st.connect_fail.fetch_add(1, Relaxed);
                    if source.is_some()
                        && e.kind() == std::io::ErrorKind::AddrNotAvailable
                        && !sh.source_warned.swap(true, Relaxed)
                    {
                        crate::ui::warn(format!(
                            "inbound connection to {to} failed: {e}; install adds ::6/128 to the loopback interface for IPv6 inbound traffic"
                        ));
                    }
                    "connect_failed"
                }
            };
            set_reset_on_close(client.get_ref().as_fd());
            (Moved::default(), why)
        }
    };
    drop(client);
    st.cx_active.fetch_sub(1, Relaxed);
    sh.log(Record {
        peer,
        dst,
        cluster: &c.name,
        moved,
        duration: started.elapsed(),
        end,
    });
    sh.closed_one();
}

/// Connects with the cluster's timeout per attempt. A refusal or an
/// unreachable destination reported by the kernel is retried up to
/// `max_retries` times while fewer than `max_retries` retries are in flight
/// in the cluster; our connect timeout and resets are not retried.
async fn connect_upstream(
    sh: &Shared,
    st: &ClusterStats,
    (side, suspect): (Side, bool),
    dst: SocketAddr,
    source: Option<IpAddr>,
    settings: &ClusterSettings,
) -> Result<Conn, ConnectError> {
    let max = settings.limits.max_retries;
    let mut attempt = 0u32;
    loop {
        let (sock, _local, rec) = sh
            .guard
            .connect(side, dst, source, suspect)
            .map_err(ConnectError::Failed)?;
        let r = finish_connect(sock, settings.connect_timeout).await;
        sh.guard.done(rec);
        let err = match r {
            Ok(conn) => return Ok(conn),
            Err(ConnectError::Timeout) => return Err(ConnectError::Timeout),
            Err(ConnectError::Failed(e)) => e,
        };
        // A reset after the handshake (a refused loop, a server that
        // aborted) is an answer, not a transient failure.
        let retryable = matches!(
            err.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::TimedOut
        );
        if !retryable || attempt >= max || !claim(&st.retries_active, max) {
            return Err(ConnectError::Failed(err));
        }
        st.retries.fetch_add(1, Relaxed);
        tokio::time::sleep(net::retry_backoff(attempt)).await;
        st.retries_active.fetch_sub(1, Relaxed);
        attempt += 1;
    }
}

/// Waits for a started connect to complete.
async fn finish_connect(sock: Socket, timeout: Duration) -> Result<Conn, ConnectError> {
    let stream = net::register(sock, Interest::READABLE | Interest::WRITABLE)
        .map_err(ConnectError::Failed)?;
    match tokio::time::timeout(timeout, stream.writable()).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        // Writable without hang-up or error: connected (no SO_ERROR call needed).
        Ok(Ok(g)) if !g.ready().is_write_closed() && !g.ready().is_error() => {
            drop(g);
            Ok(stream)
        }
        Ok(Ok(g)) => {
            drop(g);
            Err(ConnectError::Failed(match stream.get_ref().take_error() {
                Ok(Some(e)) | Err(e) => e,
                Ok(None) => std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            }))
        }
    }
}

/// Waits until every connection has closed or `deadline` passed; true when all closed.
pub async fn drain(sh: &Shared, deadline: Duration) -> bool {
    sh.draining.store(true, Relaxed);
    let wait = async {
        loop {
            let notified = sh.closed.notified();
            if sh.open.load(Relaxed) == 0 {
                return;
            }
            notified.await;
        }
    };
    tokio::time::timeout(deadline, wait).await.is_ok()
}
