//! Relaying one established connection both ways in a single task: bytes go
//! socket → pipe → socket with splice(2), so nothing is copied through user
//! space and an idle connection holds no buffer at all (a pipe is taken from
//! a per-thread pool when data arrives and given back once it is drained).
//! EOF one way half-closes the other side while the other direction keeps
//! flowing; an error on either side resets both (`SO_LINGER` 0); the idle
//! timeout closes both.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::net::{Pipe, give_pipe, set_reset_on_close, splice_in, splice_out, take_pipe};

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

/// One direction.
#[derive(Default)]
struct Half {
    pipe: Option<Pipe>,
    /// Bytes in the pipe not yet written out.
    pending: usize,
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
        src: &TcpStream,
        dst: &TcpStream,
        moved: &mut bool,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pending > 0 {
                ready!(dst.poll_write_ready(cx))?;
                let pipe = self.pipe.as_ref().expect("pending bytes live in a pipe");
                match dst.try_io(Interest::WRITABLE, || {
                    splice_out(pipe, dst.as_fd(), self.pending)
                }) {
                    Ok(n) => {
                        self.pending -= n;
                        self.bytes += n as u64;
                        *moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
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
                    // The other side may already be gone; the other direction reports that.
                    let _ = nix::sys::socket::shutdown(
                        std::os::fd::AsRawFd::as_raw_fd(dst),
                        nix::sys::socket::Shutdown::Write,
                    );
                }
                return Poll::Ready(Ok(()));
            }
            ready!(src.poll_read_ready(cx))?;
            if self.pipe.is_none() {
                self.pipe = Some(take_pipe()?);
            }
            let pipe = self.pipe.as_ref().expect("just set");
            match src.try_io(Interest::READABLE, || splice_in(src.as_fd(), pipe)) {
                Ok(0) => self.eof = true,
                Ok(n) => self.pending = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing to move: an idle connection keeps no pipe.
                    if let Some(p) = self.pipe.take() {
                        give_pipe(p);
                    }
                }
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
    client: &TcpStream,
    upstream: &TcpStream,
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
                up.poll(cx, client, upstream, &mut moved)
            };
            if let Poll::Ready(Err(e)) = a {
                return Poll::Ready(Err(e));
            }
            let b = if down.done {
                Poll::Ready(Ok(()))
            } else {
                down.poll(cx, upstream, client, &mut moved)
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
        set_reset_on_close(client.as_fd());
        set_reset_on_close(upstream.as_fd());
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
