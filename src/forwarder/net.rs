//! Socket-level helpers of the data path: binding the listeners, reading a
//! connection's original destination (`SO_ORIGINAL_DST`, and
//! `IP6T_SO_ORIGINAL_DST` for native IPv6, which HAProxy lacks), resets
//! (`SO_LINGER` 0), registration with the reactor, and splice(2) through
//! pooled pipes.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

/// Turns `::ffff:a.b.c.d` into `a.b.c.d` so that one address has one form.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// TCP keepalive of the clients' connections: a client that vanished
/// without a FIN or a reset reaching us — killed while its data waited
/// behind an upstream that does not read, so its FIN sits unsent behind
/// that data until its kernel gives the orphaned socket up silently; or a
/// host that went away — is found by a probe (the peer's kernel answers it
/// with a reset, or nothing answers), and the relay then resets both sides
/// instead of holding them until the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub time: Duration,
    pub interval: Duration,
    pub probes: u32,
}

impl Default for Keepalive {
    /// 60 s, then every 10 s, 3 probes: a vanished client is found within
    /// about 90 s after its kernel has given up its socket.
    fn default() -> Self {
        Keepalive {
            time: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            probes: 3,
        }
    }
}

/// A TCP listener on every address of the family set: `[::]` dual-stack when
/// `ipv6`, else `0.0.0.0`. Falls back to `0.0.0.0` when the host has no IPv6.
/// Accepted sockets inherit the listener's keepalive settings (and
/// `TCP_NODELAY`): no system call per connection.
pub fn bind_tcp(
    port: u16,
    ipv6: bool,
    backlog: i32,
    keepalive: Option<Keepalive>,
) -> io::Result<(std::net::TcpListener, bool)> {
    let with_keepalive = |l: std::net::TcpListener| -> io::Result<std::net::TcpListener> {
        if let Some(k) = keepalive {
            socket2::SockRef::from(&l).set_tcp_keepalive(
                &socket2::TcpKeepalive::new()
                    .with_time(k.time)
                    .with_interval(k.interval)
                    .with_retries(k.probes),
            )?;
        }
        Ok(l)
    };
    if ipv6 {
        match tcp_listener(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), backlog) {
            Ok(l) => return Ok((with_keepalive(l)?, true)),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
            Err(e) => return Err(e),
        }
    }
    let l = tcp_listener(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), backlog)?;
    Ok((with_keepalive(l)?, false))
}

pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    // Accepted sockets inherit TCP_NODELAY: no system call per connection.
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s.into())
}

/// A UDP socket on `addr` (IPv6 sockets are IPv6-only, so `[::]` and
/// `0.0.0.0` can both be bound). `shared`: `SO_REUSEADDR`, so that a
/// loopback socket and a wildcard one share the port.
pub fn udp_socket(addr: SocketAddr, shared: bool) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(shared)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// The destination the connection had before iptables REDIRECT changed it.
/// `peer` tells the family of the connection (IPv4 arrives v4-mapped on a
/// dual-stack socket, and then `SOL_IP`'s option applies).
pub fn original_dst(fd: BorrowedFd<'_>, peer: SocketAddr) -> io::Result<SocketAddr> {
    crate::host::netif::original_dst(fd, !canonical(peer).is_ipv4())
}

/// Makes the next close send a reset instead of a FIN.
pub fn set_reset_on_close(fd: BorrowedFd<'_>) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(&fd, sockopt::Linger, &l);
}

/// True when `ip` is an address of this host (binding to it works).
pub fn is_local(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let Ok(s) = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::STREAM,
        None,
    ) else {
        return false;
    };
    s.bind(&SocketAddr::new(ip, 0).into()).is_ok()
}

// ---------------------------------------------------------------- splice

/// Bytes a pipe holds; splice moves at most this much per call. Measured
/// with one iperf3 stream on one CPU: 64 KiB ~1550 MB/s, 256 KiB ~1670,
/// 512 KiB ~1950 (1 MiB no better). Pipe capacity counts against the user's
/// `pipe-user-pages-soft` quota (64 MiB), hence the small pool below; past
/// the quota the kernel refuses the resize and the pipe keeps 64 KiB.
pub const PIPE_SIZE: usize = 512 * 1024;
/// Idle pipes kept per thread for reuse (16 x 512 KiB = 1/8 of the quota).
const POOL_MAX: usize = 16;

/// A pipe used to splice between two sockets without copying through user space.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(io::Error::from)?;
        // Larger pipes mean fewer system calls for bulk transfers; the kernel
        // may refuse (per-user pipe quota), and the default size still works.
        let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
        Ok(Pipe { r, w })
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty pipe from this thread's pool, or a new one.
pub fn take_pipe() -> io::Result<Pipe> {
    match POOL.with(|p| p.borrow_mut().pop()) {
        Some(p) => Ok(p),
        None => Pipe::new(),
    }
}

/// Returns an empty pipe to this thread's pool (closes it when the pool is full).
pub fn give_pipe(p: Pipe) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(p);
        }
    });
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are borrowed for the duration of the call; null
    // offsets are required for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves what the socket has (up to the pipe's size) into the empty pipe; 0 is EOF.
pub fn splice_in(sock: BorrowedFd<'_>, pipe: &Pipe) -> io::Result<usize> {
    splice(sock, pipe.w.as_fd(), PIPE_SIZE)
}

/// Moves up to `len` bytes from the pipe into the socket.
pub fn splice_out(pipe: &Pipe, sock: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    splice(pipe.r.as_fd(), sock, len)
}

/// Raises the open-file limit to its hard maximum (every relayed connection
/// needs two sockets; bulk ones two pipe ends more).
pub fn raise_nofile_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// A small back-off between connect attempts.
pub fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis(10u64 << attempt.min(6))
}

/// Registers a socket with the runtime's reactor.
pub fn register(
    s: Socket,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<Socket>> {
    // SAFETY: the `Socket` owns its descriptor, which stays open and the same
    // until the `AsyncFd` (its only owner) is dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(s, interest) }
        .map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_unmaps_v4() {
        let a: SocketAddr = "[::ffff:10.1.2.3]:80".parse().unwrap();
        assert_eq!(canonical(a), "10.1.2.3:80".parse().unwrap());
        let b: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(canonical(b), b);
    }
}
