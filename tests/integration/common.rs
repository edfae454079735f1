//! Test support: the kernel-test gate, throwaway network namespaces with a
//! veth pair to a peer namespace, listeners that report the original
//! destination (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST), clients running as
//! another UID, and normalised iptables-save output.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket,
};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tproxyctl")
}

/// UID of the kuma-dp user in kernel tests: `daemon` exists on every Debian.
pub const EXEMPT_USER: &str = "daemon";
pub const EXEMPT_UID: u32 = 1;
/// An application UID: `nobody`.
pub const APP_UID: u32 = 65534;

fn have(cmd: &str) -> bool {
    which::which(cmd).is_ok()
}

/// Checks that a kernel test can really run here, and fails it with the
/// reason when it cannot. A kernel test is compiled in only where build.rs
/// found root and the tools (`cfg(kernel_tests)`) or where
/// `TPROXYCTL_REQUIRE_KERNEL_TESTS=1` demands it; everywhere else it is
/// reported as ignored, with why, by cargo test and nextest alike. So
/// reaching this without the means to run is a failure, never a silent pass
/// (e.g. a test binary built as root and run as another user, or
/// `--include-ignored` without root).
pub fn kernel_ready() -> bool {
    let missing: Option<String> = if !nix::unistd::geteuid().is_root() {
        Some("not running as root".to_string())
    } else {
        [
            "ip",
            "iptables-nft",
            "iptables-legacy",
            "ip6tables-nft",
            "ip6tables-legacy",
            "setpriv",
            "bash",
        ]
        .iter()
        .find(|c| !have(c))
        .map(|c| format!("{c} is not installed"))
    };
    if let Some(reason) = missing {
        panic!(
            "kernel test cannot run: {reason}. It is compiled in because build.rs found the means \
             (or TPROXYCTL_REQUIRE_KERNEL_TESTS=1); run it as root with the tools installed \
             (scripts/test.sh installs them), or rebuild where it cannot run to see it ignored"
        );
    }
    true
}

/// Fails a kernel test that cannot run here (see [`kernel_ready`]).
#[macro_export]
macro_rules! require_kernel {
    () => {
        assert!($crate::common::kernel_ready());
    };
}

/// The two backends every kernel test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Nft, Backend::Legacy];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    /// `--iptables-executables` value selecting this backend for both families.
    pub fn executables(self) -> String {
        let m = self.name();
        ["iptables", "ip6tables"]
            .iter()
            .map(|p| {
                format!("{p}:/usr/sbin/{p}-{m},{p}-save:/usr/sbin/{p}-{m}-save,{p}-restore:/usr/sbin/{p}-{m}-restore")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn save(self, v6: bool) -> String {
        format!(
            "{}-{}-save",
            if v6 { "ip6tables" } else { "iptables" },
            self.name()
        )
    }

    pub fn tool(self, v6: bool) -> String {
        format!(
            "{}-{}",
            if v6 { "ip6tables" } else { "iptables" },
            self.name()
        )
    }

    pub fn restore(self, v6: bool) -> String {
        format!(
            "{}-{}-restore",
            if v6 { "ip6tables" } else { "iptables" },
            self.name()
        )
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted (with its processes) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tpt-{tag}-{}-{n}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NS …`, must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_ok("ip", &full);
    }

    /// Runs a program inside the namespace.
    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// Runs and returns the output (any exit status).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.cmd(program, args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec runs")
    }

    /// Runs and requires success; returns stdout.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sh -c script` inside the namespace, must succeed.
    pub fn sh(&self, script: &str) -> String {
        self.run_ok("sh", &["-c", script])
    }

    /// Runs tproxyctl inside the namespace.
    pub fn tproxyctl(&self, args: &[&str]) -> Output {
        self.cmd(bin(), args)
            .stdin(Stdio::null())
            .output()
            .expect("tproxyctl runs")
    }

    /// Runs tproxyctl and requires exit 0.
    pub fn tproxyctl_ok(&self, args: &[&str]) -> Output {
        let out = self.tproxyctl(args);
        assert!(
            out.status.success(),
            "tproxyctl {args:?} failed ({:?}):\nstderr:\n{}\nstdout:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    /// Runs tproxyctl with the DNS servers read from `resolv` (any exit status).
    pub fn tproxyctl_resolv(&self, args: &[&str], resolv: impl AsRef<Path>) -> Output {
        self.cmd(bin(), args)
            .env(
                "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH",
                resolv.as_ref(),
            )
            .stdin(Stdio::null())
            .output()
            .expect("tproxyctl runs")
    }

    /// `*-save -c` of one backend and family, header comments dropped.
    pub fn save(&self, backend: Backend, v6: bool) -> String {
        normalise_save(&self.run_ok(&backend.save(v6), &["-c"]))
    }

    /// Everything the dry-run and uninstall tests compare: both backends,
    /// both families, counters included, and the IPv6 addresses.
    pub fn state(&self) -> String {
        let mut s = String::new();
        for b in Backend::ALL {
            for v6 in [false, true] {
                s.push_str(&format!("## {}\n{}", b.save(v6), self.save(b, v6)));
            }
        }
        s.push_str("## ip -6 addr\n");
        // A link-local address loses `tentative` when duplicate address
        // detection ends, whatever the command under test did.
        s.push_str(
            &self
                .run_ok("ip", &["-6", "-o", "addr"])
                .replace(" tentative", ""),
        );
        s
    }

    /// Runs a closure on a thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            let fd = File::open(&path).expect("open netns");
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// Connects to `addr` as `uid`, sends a line, returns what came back
    /// (empty when nothing did).
    pub fn tcp_client(&self, uid: u32, addr: SocketAddr) -> String {
        self.bash_client(uid, "tcp", addr, "echo hello")
    }

    /// Sends one UDP datagram to `addr` as `uid` and returns the answer.
    pub fn udp_client(&self, uid: u32, addr: SocketAddr) -> String {
        self.bash_client(uid, "udp", addr, "printf 'query\\n'")
    }

    /// bash's /dev/tcp or /dev/udp as `uid`: send, then the first line back.
    fn bash_client(&self, uid: u32, proto: &str, addr: SocketAddr, send: &str) -> String {
        let script = format!(
            "exec 3<>/dev/{proto}/{}/{} || exit 3; {send} >&3; timeout 8 head -n1 <&3",
            addr.ip(),
            addr.port()
        );
        let u = uid.to_string();
        let out = self
            .cmd(
                "setpriv",
                &[
                    &format!("--reuid={u}"),
                    &format!("--regid={u}"),
                    "--clear-groups",
                    "timeout",
                    "10",
                    "bash",
                    "-c",
                    &script,
                ],
            )
            .stdin(Stdio::null())
            .output()
            .expect("client runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a host command that must succeed.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// iptables-save output without the `#` lines (they carry timestamps).
pub fn normalise_save(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Rules only, counters dropped, `# …` dropped: for comparing with goldens.
pub fn rules_only(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            if l.starts_with('[') {
                l.split_once(' ').map(|(_, r)| r).unwrap_or(l)
            } else {
                l
            }
        })
        .map(|l| {
            // chain declarations lose their counters too
            if l.starts_with(':') {
                let mut p = l.split_whitespace();
                format!("{} {}\n", p.next().unwrap_or(""), p.next().unwrap_or(""))
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The host under test (`a`) joined to a peer (`b`) by a veth pair:
/// a = 10.77.0.1/24, fd00:77::1/64, routes everything via b;
/// b = 10.77.0.2/24, fd00:77::2/64, and the "remote" addresses
/// 192.0.2.1 and 2001:db8::1 on its loopback.
pub struct Topology {
    pub a: Netns,
    pub b: Netns,
}

pub const A4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const B4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const REMOTE4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
pub const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
pub const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

impl Topology {
    pub fn new(tag: &str) -> Topology {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        // No duplicate address detection: the link-local addresses the veth
        // ends get would otherwise show as "tentative" for a moment, and
        // state comparisons (`ip -6 addr`) would depend on timing.
        for ns in [&a, &b] {
            ns.run_ok(
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
        }
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        a.ip(&["addr", "add", "10.77.0.1/24", "dev", "va"]);
        a.ip(&["-6", "addr", "add", "fd00:77::1/64", "dev", "va", "nodad"]);
        a.ip(&["link", "set", "va", "up"]);
        b.ip(&["addr", "add", "10.77.0.2/24", "dev", "vb"]);
        b.ip(&["-6", "addr", "add", "fd00:77::2/64", "dev", "vb", "nodad"]);
        b.ip(&["link", "set", "vb", "up"]);
        b.ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"]);
        b.ip(&["-6", "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"]);
        a.ip(&["route", "add", "default", "via", "10.77.0.2"]);
        a.ip(&["-6", "route", "add", "default", "via", "fd00:77::2"]);
        b.ip(&["route", "add", "default", "via", "10.77.0.1"]);
        b.ip(&["-6", "route", "add", "default", "via", "fd00:77::1"]);
        Topology { a, b }
    }
}

/// What a listener saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub peer: SocketAddr,
    /// SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST for IPv6); `None` if not NATed.
    pub original: Option<SocketAddr>,
}

fn bound_listener(addr: SocketAddr) -> TcpListener {
    let fam = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd =
        socket::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).expect("reuseaddr");
    match addr {
        SocketAddr::V4(a) => {
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(a))
                .expect("bind v4")
        }
        SocketAddr::V6(a) => {
            socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true).expect("v6only");
            socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a))
                .expect("bind v6")
        }
    }
    socket::listen(&fd, socket::Backlog::new(128).expect("backlog")).expect("listen");
    TcpListener::from(fd)
}

fn original_dst(stream: &std::net::TcpStream, v6: bool) -> Option<SocketAddr> {
    if v6 {
        let sa = socket::getsockopt(stream, sockopt::Ip6tOriginalDst).ok()?;
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(sa.sin6_addr.s6_addr),
            u16::from_be(sa.sin6_port),
            0,
            0,
        )))
    } else {
        let sa = socket::getsockopt(stream, sockopt::OriginalDst).ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
            u16::from_be(sa.sin_port),
        )))
    }
}

/// A TCP listener in `ns` on `addr` that answers each connection with
/// `<tag> <original destination or none>` and reports what it saw. It runs
/// until the namespace goes away.
pub fn tcp_recorder(ns: &Netns, addr: SocketAddr, tag: &'static str) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let v6 = addr.is_ipv6();
    ns.spawn(move || {
        let l = bound_listener(addr);
        ready_tx.send(()).ok();
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let peer = s.peer_addr().expect("peer");
            let original = original_dst(&s, v6);
            let shown = original
                .map(|o| o.to_string())
                .unwrap_or_else(|| "none".into());
            let mut line = String::new();
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = BufReader::new(&s).read_line(&mut line);
            let _ = writeln!(s, "{tag} {shown}");
            if tx.send(Seen { peer, original }).is_err() {
                return;
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("listener ready");
    rx
}

/// A UDP responder in `ns` on `addr`, running as `uid` (the DNS proxy runs as
/// the kuma-dp user, which the conntrack zone rules rely on): answers `tag`.
pub fn udp_responder(ns: &Netns, uid: u32, addr: SocketAddr, tag: &str) -> Spawned {
    let listen = match addr {
        SocketAddr::V4(a) => format!("UDP4-RECVFROM:{},bind={},reuseaddr,fork", a.port(), a.ip()),
        SocketAddr::V6(a) => format!(
            "UDP6-RECVFROM:{},bind=[{}],reuseaddr,fork",
            a.port(),
            a.ip()
        ),
    };
    let child = ns
        .cmd(
            "setpriv",
            &[
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "socat",
                &listen,
                &format!("SYSTEM:read q; echo {tag}"),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat starts");
    // wait until bound (generously: CI machines can be busy)
    let shown = match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    for _ in 0..400 {
        let out = ns.run("ss", &["-Hlun"]);
        if String::from_utf8_lossy(&out.stdout).contains(&shown) {
            return Spawned(child);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("socat did not bind {shown} within 10s");
}

/// A child process killed and reaped when dropped.
pub struct Spawned(pub std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain UDP socket echo in `ns` (no uid change), for bypass checks.
pub fn udp_echo(ns: &Netns, addr: SocketAddr, tag: &'static str) {
    let (ready_tx, ready_rx) = mpsc::channel();
    ns.spawn(move || {
        let s = UdpSocket::bind(addr).expect("bind udp");
        ready_tx.send(()).ok();
        let mut buf = [0u8; 512];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(format!("{tag}\n").as_bytes(), from);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("udp ready");
}

/// Waits for the next connection a recorder saw.
pub fn next(rx: &mpsc::Receiver<Seen>) -> Option<Seen> {
    rx.recv_timeout(Duration::from_secs(5)).ok()
}

/// A temporary file with the given text.
pub fn temp_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write temp");
    f
}

/// A fresh path for a receipt.
pub fn receipt_path(dir: &tempfile::TempDir) -> String {
    dir.path().join("receipt.json").display().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn read_to_string(p: &Path) -> String {
    let mut s = String::new();
    File::open(p)
        .and_then(|mut f| f.read_to_string(&mut s))
        .expect("read");
    s
}

pub fn v4(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

pub fn v6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ip), port)
}
