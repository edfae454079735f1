//! The TCP side of the forwarder: accept on a redirect port, read the
//! original destination, route it with the current settings generation
//! (`route.rs`: a mesh service's cluster, a local inbound's workload, or
//! passthrough), refuse loops, blocked destinations and connections over a
//! circuit-breaker limit at once (a reset, counted), connect upstream with
//! the cluster's timeout and retries — abandoned at once when the client
//! gives up — relay, count and log. Each connection keeps the cluster (and
//! so the settings) it was accepted with; a reload affects new connections
//! only. At the drain deadline every open connection is cut (reset, logged
//! as `drained`).

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use socket2::{SockAddr, Socket};
use tokio::io::{Interest, Ready};
use tokio::sync::{Notify, watch};

use super::accesslog::{AccessLog, Record};
use super::cluster::{Cluster, ClusterSettings};
use super::guard::{LoopGuard, Side, Started, Verdict};
use super::net::{self, canonical, set_reset_on_close};
use super::relay::{Conn, End, Moved, relay};
use super::route::Route;
use super::settings::Settings;
use super::stats::{ClusterStats, Stats};

/// State every connection shares.
pub struct Shared {
    /// The settings generation in force (swapped by a reload).
    pub settings: ArcSwap<Settings>,
    pub stats: Stats,
    pub guard: LoopGuard,
    /// Reopened by a reload.
    pub access_log: ArcSwapOption<AccessLog>,
    /// Ports of our own TCP listeners (a destination on one of them is a loop).
    pub own_ports: Vec<u16>,
    /// Connections open (all clusters); the drain waits for 0.
    pub open: AtomicU64,
    pub closed: Notify,
    pub draining: AtomicBool,
    /// The drain deadline passed: every open connection is cut.
    cut: Notify,
    cutting: AtomicBool,
    /// The `::6` bind failure is reported once, not per connection.
    source_warned: AtomicBool,
}

impl Shared {
    pub fn new(settings: Settings, access_log: Option<AccessLog>) -> Self {
        let o = &settings.opts;
        let own_ports = [o.outbound_port, o.inbound_port]
            .into_iter()
            .flatten()
            .collect();
        Shared {
            settings: ArcSwap::from_pointee(settings),
            stats: Stats::default(),
            guard: LoopGuard::default(),
            access_log: ArcSwapOption::from(access_log.map(Arc::new)),
            own_ports,
            open: AtomicU64::new(0),
            closed: Notify::new(),
            draining: AtomicBool::new(false),
            cut: Notify::new(),
            cutting: AtomicBool::new(false),
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
        if let Some(l) = &*self.access_log.load() {
            l.write(&rec);
        }
    }

    /// Resolves when the drain deadline has passed.
    async fn cut(&self) {
        let notified = self.cut.notified();
        if self.cutting.load(Relaxed) {
            return;
        }
        notified.await;
    }

    /// Cuts every open connection: each resets both sides and logs `drained`.
    pub fn cut_all(&self) {
        self.cutting.store(true, Relaxed);
        self.cut.notify_waiters();
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
    let verdict = sh.loop_verdict(side, peer, dst);
    if verdict == Verdict::TakenOver {
        // One of our abandoned connects (see guard.rs): a FIN, not a reset,
        // so that its conntrack entry can be reopened. Not a client.
        sh.stats.stale_conntrack.fetch_add(1, Relaxed);
        return drop(s);
    }
    let settings = sh.settings.load();
    let (cluster, to) = match settings.router.route(dst, inbound) {
        Route::Relay { cluster, to } => (cluster, Some(to)),
        Route::Blocked(cluster) => (cluster, None),
    };
    let c = settings.clusters.get(cluster);
    let st = &c.stats;
    st.cx_total.fetch_add(1, Relaxed);
    let refused = |why: &'static str, counter: &AtomicU64, s: Socket| {
        counter.fetch_add(1, Relaxed);
        sh.guard.quarantine(peer, dst);
        refuse(s);
        sh.log(Record::refused(peer, dst, &c.name, started, why));
    };
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
            cluster: Arc::clone(c),
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
    /// Its cluster in the generation it was accepted with.
    cluster: Arc<Cluster>,
    started: Instant,
    /// Looked like one of our own connects come back (see guard.rs).
    suspect: bool,
}

/// How the wait for the upstream connect ended, other than connected.
enum Abandoned {
    Connect(ConnectError),
    /// The client closed or reset its connection first.
    ClientGone,
    /// The drain deadline passed.
    Drained,
}

async fn handle(sh: Arc<Shared>, client: Socket, a: Accepted) {
    let Accepted {
        peer,
        dst,
        to,
        side,
        cluster: c,
        started,
        suspect,
    } = a;
    let (st, settings) = (&*c.stats, &c.settings);
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
    let mut cut = std::pin::pin!(sh.cut());
    let mut client_data = false;
    let connected = tokio::select! {
        biased;
        r = connect_upstream(&sh, st, (side, suspect), to, source, settings) => r.map_err(Abandoned::Connect),
        () = client_gone(&client, &mut client_data) => Err(Abandoned::ClientGone),
        () = cut.as_mut() => Err(Abandoned::Drained),
    };
    st.cx_pending.fetch_sub(1, Relaxed);
    let (moved, end) = match connected {
        Ok(upstream) => {
            st.rq_active.fetch_add(1, Relaxed);
            let mut seen = Moved::default();
            let (moved, end) = relay(
                &client,
                &upstream,
                settings.idle_timeout,
                client_data,
                (cut.as_mut(), || sh.cutting.load(Relaxed)),
                |m| {
                    st.bytes_sent.fetch_add(m.sent - seen.sent, Relaxed);
                    st.bytes_received
                        .fetch_add(m.received - seen.received, Relaxed);
                    seen = m;
                },
            )
            .await;
            drop(upstream);
            st.rq_active.fetch_sub(1, Relaxed);
            if matches!(end, End::Reset | End::Drained) {
                sh.guard.quarantine(peer, dst);
            }
            match end {
                End::IdleTimeout => st.idle_timeout.fetch_add(1, Relaxed),
                End::Reset => st.reset.fetch_add(1, Relaxed),
                End::Drained => st.drained.fetch_add(1, Relaxed),
                End::Closed => 0,
            };
            (moved, end.as_str())
        }
        Err(abandoned) => {
            let why = match abandoned {
                Abandoned::Connect(e) => connect_failed(&sh, st, e, to, source.is_some()),
                Abandoned::ClientGone => {
                    st.client_gone.fetch_add(1, Relaxed);
                    "client_gone"
                }
                Abandoned::Drained => {
                    st.drained.fetch_add(1, Relaxed);
                    "drained"
                }
            };
            sh.guard.quarantine(peer, dst);
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

/// Counts a failed upstream connect; returns the access log's word for it.
fn connect_failed(
    sh: &Shared,
    st: &ClusterStats,
    e: ConnectError,
    to: SocketAddr,
    from_source: bool,
) -> &'static str {
    match e {
        ConnectError::Timeout => {
            st.connect_timeout.fetch_add(1, Relaxed);
            "connect_timeout"
        }
        ConnectError::Failed(e) => {
            st.connect_fail.fetch_add(1, Relaxed);
            if from_source
                && e.kind() == std::io::ErrorKind::AddrNotAvailable
                && !sh.source_warned.swap(true, Relaxed)
            {
                crate::ui::warn(format!(
                    "inbound connection to {to} failed: {e}; install adds ::6/128 to the loopback interface for IPv6 inbound traffic"
                ));
            }
            "connect_failed"
        }
    }
}

/// Resolves when the client gives up while its upstream connect is pending:
/// it closes (FIN, whether or not it sent data first) or resets. Data alone
/// only sets `data` (its readiness is consumed here, so the relay reads
/// before it waits). A client that half-closes on purpose before the
/// upstream answers its connect looks the same as one that gave up; like
/// HAProxy's `abortonclose`, the forwarder takes it as giving up, so that
/// clients that leave never hold a pending slot until the connect timeout.
async fn client_gone(client: &Conn, data: &mut bool) {
    loop {
        let Ok(mut g) = client.ready(Interest::READABLE | Interest::ERROR).await else {
            return;
        };
        let r = g.ready();
        if r.is_read_closed() || r.is_error() {
            return;
        }
        *data = true;
        g.clear_ready_matching(Ready::READABLE);
    }
}

/// Hands a recorded connect back to the loop guard, also when the wait for
/// it is abandoned.
struct Recorded<'a> {
    guard: &'a LoopGuard,
    rec: Option<super::guard::Record>,
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.guard.done(rec);
        }
    }
}

/// A retry slot of the cluster, given back also when the wait is abandoned.
struct RetrySlot<'a>(&'a AtomicU64);

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Connects abandoned in a row because of stale conntrack entries before a
/// connect fails (each one tried makes its entry reopenable).
const MAX_TAKEN_OVER: u32 = 1024;

/// Connects with the cluster's timeout per attempt. A refusal or an
/// unreachable destination reported by the kernel is retried up to
/// `max_retries` times while fewer than `max_retries` retries are in flight
/// in the cluster; our connect timeout and resets are not retried. Dropping
/// the future abandons the connect (the socket is closed).
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
    let mut taken_over = 0u32;
    loop {
        let (sock, rec) = match sh
            .guard
            .connect(side, dst, source, suspect)
            .map_err(ConnectError::Failed)?
        {
            Started::Connecting(sock, _local, rec) => (sock, rec),
            // A stale conntrack entry would take this 4-tuple over (see
            // guard.rs): at once again, from the next port. Each such
            // attempt also makes that entry reopenable, so this ends.
            Started::TakenOver(rec) => {
                sh.guard.done(rec);
                sh.stats.stale_conntrack.fetch_add(1, Relaxed);
                taken_over += 1;
                if taken_over >= MAX_TAKEN_OVER {
                    return Err(ConnectError::Failed(std::io::Error::new(
                        ErrorKind::AddrNotAvailable,
                        "every local port tried is held by a stale conntrack entry",
                    )));
                }
                continue;
            }
        };
        let recorded = Recorded {
            guard: &sh.guard,
            rec: Some(rec),
        };
        let r = finish_connect(sock, settings.connect_timeout).await;
        drop(recorded);
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
        let slot = RetrySlot(&st.retries_active);
        st.retries.fetch_add(1, Relaxed);
        tokio::time::sleep(net::retry_backoff(attempt)).await;
        drop(slot);
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
