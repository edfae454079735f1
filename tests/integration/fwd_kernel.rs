//! Forwarder test support on top of the shared kernel-test helpers
//! (`tests/integration/common.rs`: the gate, namespaces, the veth topology):
//! rules put in place by the real install, the forwarder started inside a
//! namespace with its admin endpoint read from there, and small blocking
//! servers and clients on threads inside a namespace.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{EXEMPT_USER, Netns, bin};

/// Runs `f` on a thread inside `ns` and waits for it.
pub fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    ns.spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Runs `tproxyctl install transparent-proxy ARGS` inside `ns` (rules for
/// both families and `::6` on loopback), writing its receipt to `receipt`.
/// The one place the forwarder tests put the rules in place.
pub fn install_rules(ns: &Netns, receipt: &Path, args: &[&str]) {
    let receipt = receipt.to_str().expect("UTF-8 path");
    let mut full = vec!["install", "transparent-proxy", "--receipt", receipt];
    full.extend_from_slice(args);
    ns.tproxyctl_ok(&full);
}

/// A running `tproxyctl forwarder` inside a namespace; killed on drop.
pub struct Forwarder<'a> {
    pub child: Child,
    pub dir: tempfile::TempDir,
    ns: &'a Netns,
}

impl<'a> Forwarder<'a> {
    /// Starts the forwarder as the exempt user with `args` and waits for /ready.
    pub fn start(ns: &'a Netns, args: &[&str]) -> Forwarder<'a> {
        let f = Self::spawn(ns, args);
        f.wait_ready();
        f
    }

    /// Starts it without waiting. Unless `args` say otherwise it runs as the
    /// exempt user and reads no receipt.
    pub fn spawn(ns: &'a Netns, args: &[&str]) -> Forwarder<'a> {
        let dir = tempfile::tempdir().unwrap();
        let receipt = dir.path().join("no-receipt.json");
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut cmd = ns.cmd(bin(), &["forwarder"]);
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
        Forwarder { child, dir, ns }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn admin_get(&self, path: &str) -> Option<String> {
        self.admin("GET", path)
    }

    /// `METHOD path` on the admin address; the whole response.
    pub fn admin(&self, method: &str, path: &str) -> Option<String> {
        let (method, path) = (method.to_string(), path.to_string());
        in_ns(self.ns, move || {
            http_request("127.0.0.1:9901".parse().unwrap(), &method, &path)
        })
    }

    /// The forwarder's process ID (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the forwarder whose target starts with
    /// `kind` (`pipe:`, `socket:`; "" for all).
    pub fn fds(&self, kind: &str) -> usize {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return 0;
        };
        dir.flatten()
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with(kind))
            })
            .count()
    }

    /// Polls (10s) until stderr contains `text`.
    pub fn wait_stderr(&self, text: &str) -> String {
        let t = Instant::now();
        loop {
            let e = self.stderr();
            if e.contains(text) {
                return e;
            }
            if t.elapsed() > Duration::from_secs(10) {
                panic!("forwarder never said {text:?}; stderr:\n{e}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
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

    /// Polls (10s) until the counter satisfies `want`; counters of a
    /// connection are updated when it ends, a moment after the client sees it.
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

impl Drop for Forwarder<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over HTTP/1.0; the whole response, or None when not reachable.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    http_request(addr, "GET", path)
}

/// `METHOD path` over HTTP/1.0; the whole response, or None when not reachable.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A listener on `addr` inside `ns` (dual-stack when `addr` is `[::]`).
pub fn listen(ns: &Netns, addr: SocketAddr) -> TcpListener {
    in_ns(ns, move || {
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
        s.bind(&addr.into())
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        s.listen(1024).unwrap();
        TcpListener::from(s)
    })
}

/// Echo server on `addr` (one thread per connection) inside `ns`.
pub fn echo_server(ns: &Netns, addr: SocketAddr) {
    let l = listen(ns, addr);
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
pub fn hold_server(ns: &Netns, addr: SocketAddr) -> Arc<Mutex<Vec<TcpStream>>> {
    let l = listen(ns, addr);
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    held
}

/// Server on `addr` that reports each accepted connection's peer address,
/// greets it and closes.
pub fn peer_recorder(ns: &Netns, addr: SocketAddr) -> std::sync::mpsc::Receiver<SocketAddr> {
    let l = listen(ns, addr);
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
    in_ns(ns, move || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    })
}

pub fn sock(ip: impl Into<std::net::IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// `[::]:port`, a dual-stack listener address.
pub fn any(port: u16) -> SocketAddr {
    sock(std::net::Ipv6Addr::UNSPECIFIED, port)
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

/// A temporary directory owned by the exempt user, where the forwarder
/// (which opens its access log after dropping root) may write.
pub fn exempt_user_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let uid = Some(nix::unistd::Uid::from_raw(crate::common::EXEMPT_UID));
    nix::unistd::chown(dir.path(), uid, None).unwrap();
    dir
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
