//! Relaying one established connection both ways in a single task, with no
//! buffer held while the connection is idle. Small messages are read into a
//! stack buffer and written at once (a short read proves the socket is
//! drained, so readiness is cleared without another system call); once a
//! read fills the buffer the direction switches to splice(2) through a pipe
//! taken from a per-thread pool and given back as soon as it is drained, so
//! bulk data is never copied through user space. EOF one way half-closes the
//! other side while the other direction keeps flowing; an error on either
//! side resets both (`SO_LINGER` 0) — also while that side is not being read
//! or written, e.g. a client that resets while its data waits for an
//! upstream that does not read — the idle timeout closes both, and the
//! drain deadline resets both.

use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use socket2::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::net::{Pipe, give_pipe, set_reset_on_close, splice_in, splice_out, take_pipe};

/// A registered, non-blocking TCP socket.
pub type Conn = AsyncFd<Socket>;

/// Reads smaller than this are copied; a full one switches to splice.
const SMALL: usize = 16 * 1024;

/// How a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (FIN both ways).
    Closed,
    /// One side reset or failed; the other was reset.
    Reset,
    /// No data either way for the idle timeout.
    IdleTimeout,
    /// Cut at the drain deadline; both sides were reset.
    Drained,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Reset => "reset",
            End::IdleTimeout => "idle_timeout",
            End::Drained => "drained",
        }
    }
}

/// Bytes moved so far each way.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// client → upstream
    pub sent: u64,
    /// upstream → client
    pub received: u64,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// One direction.
#[derive(Default)]
struct Half {
    /// Bulk mode: splice through `pipe`.
    splice: bool,
    pipe: Option<Pipe>,
    /// Bytes in the pipe not yet written out.
    pending: usize,
    /// Bytes read but not yet written (the destination was full); usually empty.
    left: Vec<u8>,
    eof: bool,
    done: bool,
    bytes: u64,
    /// Data is known to be waiting in `src` (its readiness was consumed
    /// while the upstream connect was pending): read before waiting.
    try_read: bool,
    /// Last Pending came from `dst` (full), not from `src`: this direction
    /// does not look at its source now.
    waits_on_dst: bool,
}

impl Half {
    /// Moves what it can from `src` to `dst`. Ready(Ok) when this direction
    /// is finished (EOF passed on), Pending when waiting for either socket.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &Conn,
        dst: &Conn,
        other_done: bool,
        moved: &mut bool,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pending > 0 {
                let mut g = ready!(self.wait_dst(cx, dst))?;
                let pipe = self.pipe.as_ref().expect("pending bytes live in a pipe");
                match splice_out(pipe, dst.get_ref().as_fd(), self.pending) {
                    Ok(n) => {
                        self.pending -= n;
                        self.bytes += n as u64;
                        *moved = true;
                    }
                    Err(e) if would_block(&e) => g.clear_ready(),
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if !self.left.is_empty() {
                let mut g = ready!(self.wait_dst(cx, dst))?;
                match dst.get_ref().send(&self.left) {
                    Ok(n) => {
                        self.left.drain(..n);
                        self.bytes += n as u64;
                        *moved = true;
                        if self.left.is_empty() {
                            self.left = Vec::new();
                        }
                    }
                    Err(e) if would_block(&e) => g.clear_ready(),
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if self.eof {
                if !self.done {
                    self.done = true;
                    if let Some(p) = self.pipe.take() {
                        give_pipe(p);
                    }
                    // When the other direction is finished too, the close
                    // that follows sends this FIN (both receive queues are
                    // empty, so it is not a reset). The other side may
                    // already be gone; the other direction reports that.
                    if !other_done {
                        let _ = dst.get_ref().shutdown(std::net::Shutdown::Write);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            let mut g = if std::mem::take(&mut self.try_read) {
                None
            } else {
                self.waits_on_dst = false;
                Some(ready!(src.poll_read_ready(cx))?)
            };
            if self.splice {
                if self.pipe.is_none() {
                    self.pipe = Some(take_pipe()?);
                }
                let pipe = self.pipe.as_ref().expect("just set");
                match splice_in(src.get_ref().as_fd(), pipe) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.pending = n,
                    Err(e) if would_block(&e) => {
                        if let Some(g) = g.as_mut() {
                            g.clear_ready();
                        }
                        // Nothing to move: an idle connection keeps no pipe.
                        if let Some(p) = self.pipe.take() {
                            give_pipe(p);
                        }
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); SMALL];
            match src.get_ref().recv(&mut raw) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    // SAFETY: recv initialised the first n bytes.
                    let buf = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), n) };
                    if n < SMALL {
                        // recv returns all that is queued (up to the buffer):
                        // the socket is drained, a new edge will come with new data.
                        if let Some(g) = g.as_mut() {
                            g.clear_ready();
                        }
                    } else {
                        self.splice = true;
                    }
                    let sent = match dst.get_ref().send(buf) {
                        Ok(m) => m,
                        Err(e) if would_block(&e) => 0,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    self.bytes += sent as u64;
                    *moved = true;
                    if sent < n {
                        self.left = buf[sent..n].to_vec();
                    }
                }
                Err(e) if would_block(&e) => {
                    if let Some(g) = g.as_mut() {
                        g.clear_ready();
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Write readiness of `dst`, noting that this direction waits on it.
    fn wait_dst<'a>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &'a Conn,
    ) -> Poll<io::Result<tokio::io::unix::AsyncFdReadyGuard<'a, Socket>>> {
        self.waits_on_dst = true;
        dst.poll_write_ready(cx)
    }

    /// Whether this direction is waiting for `src` to become readable (so
    /// a reset of `src` wakes it).
    fn watches_src(&self) -> bool {
        !self.done && !self.waits_on_dst
    }

    /// Whether this direction is waiting for `dst` to become writable (so
    /// a reset of `dst` wakes it).
    fn watches_dst(&self) -> bool {
        !self.done && self.waits_on_dst
    }

    /// A pipe still holding bytes is closed with the connection, not reused.
    fn discard(&mut self) {
        if self.pending == 0
            && let Some(p) = self.pipe.take()
        {
            give_pipe(p);
        }
        self.pipe = None;
    }
}

/// The coarse monotonic clock: the time of the kernel's last tick, read
/// from the vDSO without touching the clock source (in a VM the full clock
/// is a paravirtual read). Every message is stamped with it for the idle
/// timeout, which needs milliseconds at most.
fn coarse_now() -> Duration {
    coarse(libc::clock_gettime)
}

/// The coarse clock's resolution (one tick), read once.
fn coarse_resolution() -> Duration {
    static RES: OnceLock<Duration> = OnceLock::new();
    *RES.get_or_init(|| coarse(libc::clock_getres))
}

fn coarse(
    f: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC_COARSE exists since Linux 2.6.32.
    if unsafe { f(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Time since `last` (a [`coarse_now`] reading), never more than has really
/// passed: two readings can each lag the true time by up to one tick.
fn coarse_since(last: Duration) -> Duration {
    coarse_now()
        .saturating_sub(last)
        .saturating_sub(coarse_resolution())
}

/// How long "no idle timeout" (a configured 0) waits: a century.
const NO_IDLE_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Relays until both directions are done, an error on either socket, the
/// idle timeout (0: none) or `stop` (the drain deadline). `stop` is polled
/// first, then again only once `stopping()` says it fired (it keeps the
/// waker of its first poll): a stop is rare, messages are not.
/// `progress` is called with the bytes moved so far whenever data moved,
/// at most once per poll (the caller keeps live byte counters with it).
/// `client_data` says that data from the client is already waiting.
pub async fn relay(
    client: &Conn,
    upstream: &Conn,
    idle: Duration,
    client_data: bool,
    (stop, stopping): (
        std::pin::Pin<&mut impl Future<Output = ()>>,
        impl Fn() -> bool,
    ),
    mut progress: impl FnMut(Moved),
) -> (Moved, End) {
    let idle = if idle.is_zero() {
        NO_IDLE_TIMEOUT
    } else {
        idle
    };
    let mut stop = stop;
    let mut up = Half {
        try_read: client_data,
        ..Half::default()
    };
    let mut down = Half::default();
    let mut last = coarse_now();
    let mut sleep = std::pin::pin!(tokio::time::sleep(idle));
    // An error (a reset) on a socket that is not being read or written: a
    // direction blocked on its destination does not look at its source.
    // Polled only while no direction waits on that socket (a reset makes a
    // socket readable and writable, which wakes a direction that does).
    let mut client_err = std::pin::pin!(client.ready(Interest::ERROR));
    let mut upstream_err = std::pin::pin!(upstream.ready(Interest::ERROR));
    let mut first = true;
    let end = poll_fn(|cx| {
        let mut moved = false;
        let r = (|| -> Poll<io::Result<()>> {
            let a = if up.done {
                Poll::Ready(Ok(()))
            } else {
                up.poll(cx, client, upstream, down.done, &mut moved)
            };
            if let Poll::Ready(Err(e)) = a {
                return Poll::Ready(Err(e));
            }
            let b = if down.done {
                Poll::Ready(Ok(()))
            } else {
                down.poll(cx, upstream, client, up.done, &mut moved)
            };
            if let Poll::Ready(Err(e)) = b {
                return Poll::Ready(Err(e));
            }
            if a.is_ready() && b.is_ready() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })();
        if moved {
            last = coarse_now();
            progress(Moved {
                sent: up.bytes,
                received: down.bytes,
            });
        }
        match r {
            Poll::Ready(Ok(())) => return Poll::Ready(End::Closed),
            Poll::Ready(Err(_)) => return Poll::Ready(End::Reset),
            Poll::Pending => {}
        }
        let client_watched = up.watches_src() || down.watches_dst();
        let upstream_watched = down.watches_src() || up.watches_dst();
        if (!client_watched && client_err.as_mut().poll(cx).is_ready())
            || (!upstream_watched && upstream_err.as_mut().poll(cx).is_ready())
        {
            return Poll::Ready(End::Reset);
        }
        if (std::mem::take(&mut first) || stopping()) && stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Drained);
        }
        // Idle timer: re-armed lazily from the last activity when it fires.
        while sleep.as_mut().poll(cx).is_ready() {
            let since = coarse_since(last);
            if since >= idle {
                return Poll::Ready(End::IdleTimeout);
            }
            let at = tokio::time::Instant::now() + (idle - since);
            sleep.as_mut().reset(at);
        }
        Poll::Pending
    })
    .await;
    if matches!(end, End::Reset | End::Drained) {
        set_reset_on_close(client.get_ref().as_fd());
        set_reset_on_close(upstream.get_ref().as_fd());
    }
    up.discard();
    down.discard();
    (
        Moved {
            sent: up.bytes,
            received: down.bytes,
        },
        end,
    )
}
