//! A throwaway test bench for `verify`: a pair of network namespaces (the
//! host under test and a peer holding the "remote" destinations) joined by a
//! veth pair, listeners that report the original destination of redirected
//! connections, and clients whose sockets belong to a chosen UID. Sockets are
//! made on threads that entered a namespace with setns(2), and a socket's
//! owner (what `-m owner` matches) is the thread's filesystem UID when it is
//! created, set per thread with setfsuid(2) — so no helper process is needed.
//! The namespaces and everything in them are removed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, sockopt,
};

use crate::host::exec::Cmd;

const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A named network namespace (`ip netns`), deleted with its processes on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        Cmd::new("ip").args(["netns", "add", name]).run()?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS …`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        Cmd::new("ip")
            .args(["-n", &self.name])
            .args(args.iter().copied())
            .run()?;
        Ok(())
    }

    /// A program run inside the namespace.
    pub fn cmd(&self, program: &str) -> Cmd {
        Cmd::new("ip").args(["netns", "exec", &self.name, program])
    }

    /// Runs `f` on a new thread inside the namespace, with filesystem UID
    /// `fsuid` (the owner of sockets it creates).
    pub fn spawn<T: Send + 'static>(
        &self,
        fsuid: u32,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<anyhow::Result<T>> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).with_context(|| format!("opening {path}"))?;
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
            // The filesystem UID is per thread (no glibc set*id broadcast).
            nix::unistd::setfsuid(nix::unistd::Uid::from_raw(fsuid));
            Ok(f())
        })
    }

    /// Runs `f` inside the namespace as `fsuid` and waits for it.
    pub fn run_as<T: Send + 'static>(
        &self,
        fsuid: u32,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        self.spawn(fsuid, f)
            .join()
            .map_err(|_| anyhow::anyhow!("a probe thread panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Cmd::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in out.stdout.split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Cmd::new("ip").args(["netns", "del", &self.name]).run();
    }
}

/// Addresses of a bench.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub host4: Ipv4Addr,
    pub peer4: Ipv4Addr,
    pub host6: Ipv6Addr,
    pub peer6: Ipv6Addr,
}

/// The host under test and its peer.
pub struct Bench {
    pub host: Netns,
    pub peer: Netns,
    pub addrs: Addrs,
}

impl Bench {
    /// Two namespaces and a veth pair; `subnet4` is a /24 the configuration
    /// does not mention. The host routes everything to the peer and back.
    pub fn new(tag: &str, subnet4: [u8; 3]) -> anyhow::Result<Bench> {
        let id = std::process::id();
        let host = Netns::create(&format!("tproxyctl-{tag}-{id}-h"))?;
        let peer = Netns::create(&format!("tproxyctl-{tag}-{id}-p"))?;
        let [a, b, c] = subnet4;
        let addrs = Addrs {
            host4: Ipv4Addr::new(a, b, c, 1),
            peer4: Ipv4Addr::new(a, b, c, 2),
            host6: Ipv6Addr::new(0xfd00, 0x7470, 0, c as u16, 0, 0, 0, 1),
            peer6: Ipv6Addr::new(0xfd00, 0x7470, 0, c as u16, 0, 0, 0, 2),
        };
        host.ip(&[
            "link", "add", "tpv0", "type", "veth", "peer", "name", "tpv1", "netns", &peer.name,
        ])?;
        host.ip(&["addr", "add", &format!("{}/24", addrs.host4), "dev", "tpv0"])?;
        host.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", addrs.host6),
            "dev",
            "tpv0",
            "nodad",
        ])?;
        host.ip(&["link", "set", "tpv0", "up"])?;
        peer.ip(&["addr", "add", &format!("{}/24", addrs.peer4), "dev", "tpv1"])?;
        peer.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", addrs.peer6),
            "dev",
            "tpv1",
            "nodad",
        ])?;
        peer.ip(&["link", "set", "tpv1", "up"])?;
        host.ip(&["route", "add", "default", "via", &addrs.peer4.to_string()])?;
        host.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &addrs.peer6.to_string(),
        ])?;
        peer.ip(&["route", "add", "default", "via", &addrs.host4.to_string()])?;
        peer.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &addrs.host6.to_string(),
        ])?;
        Ok(Bench { host, peer, addrs })
    }
}

/// Adds `ip` to the loopback of `ns` (a "remote" destination that answers).
pub fn add_local(ns: &Netns, ip: IpAddr) -> anyhow::Result<()> {
    match ip {
        IpAddr::V4(a) => ns.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]),
        IpAddr::V6(a) => ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{a}/128"),
            "dev",
            "lo",
            "nodad",
        ]),
    }
}

fn raw_socket(addr: &SocketAddr, ty: SockType) -> std::io::Result<OwnedFd> {
    let fam = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(fam, ty, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    Ok(fd)
}

fn bind(fd: &OwnedFd, addr: SocketAddr) -> std::io::Result<()> {
    match addr {
        SocketAddr::V4(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(())
}

/// What a listener saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub original: Option<SocketAddr>,
}

/// A TCP listener in `ns` that answers `<tag>\n` and reports each connection.
pub fn tcp_listener(
    ns: &Netns,
    addr: SocketAddr,
    tag: &'static str,
    report: mpsc::Sender<Seen>,
) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    ns.spawn(0, move || {
        let l = raw_socket(&addr, SockType::Stream)
            .and_then(|fd| {
                bind(&fd, addr)?;
                socket::listen(&fd, socket::Backlog::new(64).expect("backlog"))?;
                Ok(TcpListener::from(fd))
            })
            .with_context(|| format!("listening on {addr}"));
        let l = match l {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let Ok(peer) = s.peer_addr() else { continue };
            let original = crate::host::netif::original_dst(s.as_fd(), addr.is_ipv6()).ok();
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
            let _ = writeln!(s, "{tag}");
            if report
                .send(Seen {
                    listener: tag,
                    peer,
                    original,
                })
                .is_err()
            {
                return;
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("listener did not start")?
}

/// A UDP responder in `ns` whose socket belongs to `fsuid`: answers `<tag>\n`.
pub fn udp_responder(
    ns: &Netns,
    fsuid: u32,
    addr: SocketAddr,
    tag: &'static str,
) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    ns.spawn(fsuid, move || {
        let s = raw_socket(&addr, SockType::Datagram)
            .and_then(|fd| {
                bind(&fd, addr)?;
                Ok(UdpSocket::from(fd))
            })
            .with_context(|| format!("binding UDP {addr}"));
        let s = match s {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(format!("{tag}\n").as_bytes(), from);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("UDP responder did not start")?
}

/// Connects from `ns` as `uid` (optionally from `source`) and returns the
/// line the server answered and the client's own address (what the
/// listener's report names as the peer).
pub fn tcp_probe(
    ns: &Netns,
    uid: u32,
    source: Option<IpAddr>,
    dst: SocketAddr,
) -> anyhow::Result<(String, SocketAddr)> {
    ns.run_as(uid, move || -> anyhow::Result<(String, SocketAddr)> {
        let fd = raw_socket(&dst, SockType::Stream)?;
        if let Some(src) = source {
            bind(&fd, SocketAddr::new(src, 0))?;
        }
        let sa: SockaddrStorage = dst.into();
        socket::setsockopt(
            &fd,
            sockopt::SendTimeout,
            &nix::sys::time::TimeVal::new(3, 0),
        )?;
        socket::connect(fd.as_raw_fd(), &sa).with_context(|| format!("connecting to {dst}"))?;
        let mut s = TcpStream::from(fd);
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let local = s.local_addr()?;
        writeln!(s, "probe")?;
        let mut answer = String::new();
        BufReader::new(&s)
            .read_line(&mut answer)
            .with_context(|| format!("reading from {dst}"))?;
        Ok((answer.trim().to_string(), local))
    })?
}

/// Sends one datagram from `ns` as `uid` and returns the answer.
pub fn udp_probe(ns: &Netns, uid: u32, dst: SocketAddr) -> anyhow::Result<String> {
    ns.run_as(uid, move || -> anyhow::Result<String> {
        let any: SocketAddr = if dst.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(any)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.connect(dst)?;
        s.send(b"probe\n")?;
        let mut buf = [0u8; 512];
        let n = s
            .recv(&mut buf)
            .with_context(|| format!("no answer from {dst}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    })?
}
