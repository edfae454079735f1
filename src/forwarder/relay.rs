//! Relaying one established connection both ways in a single task, with no
//! buffer held while the connection is idle. Small messages are read into a
//! stack buffer and written at once (a short read proves the socket is
//! drained, so readiness is cleared without another system call); once a
//! read fills the buffer the direction switches to splice(2) through a pipe
//! taken from a per-thread pool and given back as soon as it is drained, so
//! bulk data is never copied through user space. EOF one way half-closes the
//! other side while the other direction keeps flowing; an error on either
//! side resets both (`SO_LINGER` 0); the idle timeout closes both.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use socket2::Socket;
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
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Reset => "reset",
            End::IdleTimeout => "idle_timeout",
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
                let mut g = ready!(dst.poll_write_ready(cx))?;
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
                let mut g = ready!(dst.poll_write_ready(cx))?;
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
            let mut g = ready!(src.poll_read_ready(cx))?;
            if self.splice {
                if self.pipe.is_none() {
                    self.pipe = Some(take_pipe()?);
                }
                let pipe = self.pipe.as_ref().expect("just set");
                match splice_in(src.get_ref().as_fd(), pipe) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.pending = n,
                    Err(e) if would_block(&e) => {
                        g.clear_ready();
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
                        g.clear_ready();
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
                Err(e) if would_block(&e) => g.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
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

/// Relays until both directions are done, an error, or the idle timeout.
/// `progress` is called with the bytes moved so far whenever data moved, at
/// most once per poll (the caller keeps live byte counters with it).
pub async fn relay(
    client: &Conn,
    upstream: &Conn,
    idle: Duration,
    mut progress: impl FnMut(Moved),
) -> (Moved, End) {
    let mut up = Half::default();
    let mut down = Half::default();
    let mut last = Instant::now();
    let mut sleep = std::pin::pin!(tokio::time::sleep(idle));
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
            last = Instant::now();
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
        // Idle timer: re-armed lazily from the last activity when it fires.
        while sleep.as_mut().poll(cx).is_ready() {
            let since = last.elapsed();
            if since >= idle {
                return Poll::Ready(End::IdleTimeout);
            }
            let at = tokio::time::Instant::now() + (idle - since);
            sleep.as_mut().reset(at);
        }
        Poll::Pending
    })
    .await;
    if end == End::Reset {
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
