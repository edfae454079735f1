//! Kernel-test helpers for the forwarder tests: throwaway network namespaces
//! joined by a veth pair, the install rules put in place with ONE function
//! ([`install_rules`]), the forwarder started inside a namespace, and small
//! blocking servers and clients run on threads that entered a namespace.
//! Nothing here touches the host's own network configuration.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Address plan of [`Pair`]: `a` is the host under test, `b` a peer.
pub const A4: &str = "10.77.0.1";
pub const B4: &str = "10.77.0.2";
pub const A6: &str = "fd77::1";
pub const B6: &str = "fd77::2";
/// The exempt (kuma-dp) user of the rules, and the application user.
pub const EXEMPT_USER: &str = "daemon";
pub const EXEMPT_UID: u32 = 1;

/// Returns `Some(reason)` when kernel tests cannot run here.
pub fn kernel_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for tool in ["ip", "iptables-restore", "ip6tables-restore"] {
        if which::which(tool).is_err() {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

/// True when the test must be skipped (said on stderr); panics instead when
/// `TPROXYCTL_REQUIRE_KERNEL_TESTS=1` (CI), so a skip can never hide there.
pub fn skip_without_kernel(test: &str) -> bool {
    let Some(why) = kernel_unavailable() else {
        return false;
    };
    if std::env::var("TPROXYCTL_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1") {
        panic!(
            "{test}: kernel test required (TPROXYCTL_REQUIRE_KERNEL_TESTS=1) but cannot run: {why}"
        );
    }
    // Written to the real stderr, not through eprintln!, which the test
    // harness captures and hides for passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    true
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "tpxf-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args…`
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a command inside the namespace and asserts it succeeded.
    pub fn exec(&self, args: &[&str]) -> String {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    /// Runs `f` on a thread that entered the namespace; sockets it creates
    /// belong to the namespace and may be used from any thread afterwards.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        run_in(&self.name, f)
    }
}

/// Runs `f` on a thread inside the namespace called `name`.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {path}: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `a` (10.77.0.1, fd77::1) runs the
/// rules, the forwarder and the application; `b` (10.77.0.2, fd77::2) is the
/// rest of the world.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    /// Holds the install receipt, when rules were installed.
    pub dir: tempfile::TempDir,
}

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        for (ns, dev, v4, v6) in [(&a, "va", A4, A6), (&b, "vb", B4, B6)] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        Pair {
            a,
            b,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Where [`install_rules`] puts the receipt of `a`.
    pub fn receipt(&self) -> PathBuf {
        self.dir.path().join("receipt.json")
    }
}

/// Runs `tproxyctl install transparent-proxy ARGS` inside `ns` (rules for
/// both families and `::6` on loopback), writing its receipt to `receipt`.
/// The one place the tests put the rules in place.
pub fn install_rules(ns: &Netns, receipt: &Path, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_tproxyctl")])
        .args(["install", "transparent-proxy", "--receipt"])
        .arg(receipt)
        .args(args)
        .env_remove("TPROXYCTL_RECEIPT")
        .output()
        .expect("running tproxyctl install");
    assert!(
        out.status.success(),
        "install failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `tproxyctl forwarder` inside a namespace; killed on drop.
pub struct Forwarder {
    pub child: Child,
    pub dir: tempfile::TempDir,
    ns: String,
}

impl Forwarder {
    /// Starts the forwarder as the exempt user with `args` and waits for /ready.
    pub fn start(ns: &Netns, args: &[&str]) -> Forwarder {
        let f = Self::spawn(ns, args);
        f.wait_ready();
        f
    }

    /// Starts it without waiting.
    pub fn spawn(ns: &Netns, args: &[&str]) -> Forwarder {
        let dir = tempfile::tempdir().unwrap();
        let receipt = dir.path().join("no-receipt.json");
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns.name,
            env!("CARGO_BIN_EXE_tproxyctl"),
            "forwarder",
        ]);
        let has = |flag: &str| args.iter().any(|a| a.starts_with(flag));
        if !has("--user") {
            cmd.args(["--user", EXEMPT_USER]);
        }
        if !has("--kuma-dp-user") {
            cmd.args(["--kuma-dp-user", EXEMPT_USER]);
        }
        if !has("--receipt") {
            cmd.arg("--receipt").arg(&receipt);
        }
        cmd.args(args)
            .env_remove("TPROXYCTL_RECEIPT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("starting the forwarder");
        Forwarder {
            child,
            dir,
            ns: ns.name.clone(),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn admin_get(&self, path: &str) -> Option<String> {
        let path = path.to_string();
        run_in(&self.ns, move || {
            http_get("127.0.0.1:9901".parse().unwrap(), &path)
        })
    }

    pub fn wait_ready(&self) {
        let t = Instant::now();
        loop {
            if let Some(body) = self.admin_get("/ready")
                && body.starts_with("HTTP/1.1 200")
            {
                return;
            }
            if t.elapsed() > Duration::from_secs(20) {
                panic!("forwarder not ready after 20s; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// All samples of /stats, keyed by `name{labels}`.
    pub fn stats(&self) -> HashMap<String, u64> {
        let body = self.admin_get("/stats").expect("GET /stats");
        let body = body.split("\r\n\r\n").nth(1).unwrap_or_default();
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// One cluster counter, e.g. `stat("cx_total", "outbound:passthrough:ipv4")`.
    pub fn stat(&self, name: &str, cluster: &str) -> u64 {
        let key = format!("tproxyctl_cluster_{name}{{cluster=\"{cluster}\"}}");
        *self
            .stats()
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key}"))
    }

    /// Polls until `f(stats)` holds (10s), for counters updated after a close.
    pub fn wait_stat(&self, name: &str, cluster: &str, want: impl Fn(u64) -> bool) -> u64 {
        let t = Instant::now();
        loop {
            let v = self.stat(name, cluster);
            if want(v) {
                return v;
            }
            if t.elapsed() > Duration::from_secs(10) {
                panic!(
                    "{name} of {cluster} stayed at {v}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        // `ip netns exec` execs the forwarder, so the child's pid is the forwarder's.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the exit (up to `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > limit {
                panic!(
                    "forwarder still running after {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0; the whole response, or None when not reachable.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Echo server on `addr` (one thread per connection) inside `ns`.
pub fn echo_server(ns: &Netns, addr: SocketAddr) {
    let l = ns.run(move || TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Server on `addr` that accepts and holds every connection until the
/// returned list is cleared.
pub fn hold_server(
    ns: &Netns,
    addr: SocketAddr,
) -> std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>> {
    let l = ns.run(move || TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")));
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    held
}

/// Server on `addr` that reports each accepted connection's peer address.
pub fn peer_recorder(ns: &Netns, addr: SocketAddr) -> std::sync::mpsc::Receiver<SocketAddr> {
    let l = ns.run(move || {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        if addr.is_ipv6() {
            s.set_only_v6(false).unwrap();
        }
        s.set_reuse_address(true).unwrap();
        s.bind(&addr.into()).unwrap();
        s.listen(64).unwrap();
        TcpListener::from(s)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let peer = s.peer_addr().unwrap();
            let _ = tx.send(peer);
            let mut s = s;
            let _ = s.write_all(b"hello from the application\n");
        }
    });
    rx
}

/// Connects from inside `ns` (as root: an application the rules redirect).
pub fn connect(ns: &Netns, addr: SocketAddr) -> std::io::Result<TcpStream> {
    ns.run(move || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    })
}

pub fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Writes `msg` and reads the same number of bytes back.
pub fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// True when the connection was refused by the forwarder: reset (already
/// while connecting, or on the first read) or closed without data.
pub fn refused(conn: std::io::Result<TcpStream>) -> bool {
    let Ok(mut s) = conn else {
        return true;
    };
    let _ = s.write_all(b"x");
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// Raises this process's open-file limit (the overflow test holds ~3000 sockets).
pub fn raise_nofile() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
