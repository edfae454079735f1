//! eBPF test support, built so that a test can never capture the machine:
//! a child cgroup of the cgroup2 mount created per test (named
//! `tproxyctl-test-…`, asserted not to be a root) that only the test's own
//! processes are moved into, each started inside a fresh network namespace;
//! a private bpffs mounted on a temporary directory (never /run/kuma/bpf);
//! and guards that kill the cgroup's processes, remove it and unmount the
//! bpffs on drop, also when the test panics. Programs are only ever attached
//! to that cgroup and to the test's namespaces.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Netns, bin, kernel_ready};

/// True when eBPF kernel tests can run here (root, iproute2, bpftool, a
/// cgroup2 mount). Where build.rs did not find those the tests are reported
/// as ignored (`ebpf_tests`); reaching this without them is a failure.
pub fn ebpf_ready() -> bool {
    let missing = if which::which("bpftool").is_err() {
        Some("bpftool is not installed".to_string())
    } else if cgroup2_mount().is_none() {
        Some("no cgroup2 filesystem is mounted".to_string())
    } else {
        None
    };
    if let Some(reason) = missing {
        panic!(
            "eBPF kernel test cannot run: {reason}. It is compiled in because build.rs found the \
             means (or TPROXYCTL_REQUIRE_KERNEL_TESTS=1); install bpftool (scripts/test.sh does), \
             or rebuild where it cannot run to see it ignored"
        );
    }
    kernel_ready()
}

/// Fails an eBPF kernel test that cannot run here (see [`ebpf_ready`]).
#[macro_export]
macro_rules! require_ebpf {
    () => {
        assert!($crate::ebpf_env::ebpf_ready());
    };
}

/// `program args` inside `ns` but in this process's mount namespace and
/// cgroup (see [`TestCgroup::cmd`] for why not `ip netns exec`).
pub fn nsenter(ns: &Netns, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(program)
        .args(args);
    c
}

/// `tproxyctl args` inside `ns` (see [`nsenter`]).
pub fn tproxyctl(ns: &Netns, args: &[&str]) -> Output {
    nsenter(ns, bin(), args)
        .env_remove("TPROXYCTL_RECEIPT")
        .stdin(Stdio::null())
        .output()
        .expect("tproxyctl runs")
}

/// The cgroup2 mount point, read from /proc/self/mountinfo (independently of
/// the code under test).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A child cgroup of the test's own; removed (its processes killed) on drop.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        let root = cgroup2_mount().expect("cgroup2 mount");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("tproxyctl-test-{tag}-{}-{n}", std::process::id()));
        assert!(path.parent() == Some(root.as_path()) && path != root);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        // Only the root lacks cgroup.type: this is a child.
        assert!(
            path.join("cgroup.type").exists(),
            "{} is a child",
            path.display()
        );
        TestCgroup { path }
    }

    /// The inode number, which is the kernel's cgroup id.
    pub fn id(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&self.path).unwrap())
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().expect("UTF-8 cgroup path")
    }

    /// `program args` inside `ns` and inside this cgroup: a shell moves
    /// itself into the cgroup, then execs nsenter, which execs the program
    /// (so the program and all it starts are in the cgroup from their first
    /// instruction). nsenter, not `ip netns exec`: that one remounts /sys in
    /// a private mount namespace, hiding the cgroup2 mount and any bpffs
    /// mounted from inside.
    pub fn cmd(&self, ns: &Netns, program: &str, args: &[&str]) -> Command {
        let procs = self.path.join("cgroup.procs");
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("echo $$ > \"$0\" && n=\"$1\" && shift && exec nsenter --net=\"$n\" -- \"$@\"")
            .arg(procs)
            .arg(ns.path())
            .arg(program)
            .args(args);
        c
    }

    /// bash's /dev/tcp as `uid` from inside `ns` and this cgroup: sends a
    /// line, returns the first line back (empty when nothing came).
    pub fn tcp_client(&self, ns: &Netns, uid: u32, addr: SocketAddr) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} || exit 3; echo hello >&3; timeout 8 head -n1 <&3",
            addr.ip(),
            addr.port()
        );
        let out = self.as_user(ns, uid, &["timeout", "10", "bash", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `args` as `uid` (setpriv) inside `ns` and this cgroup.
    pub fn as_user(&self, ns: &Netns, uid: u32, args: &[&str]) -> Output {
        let u = uid.to_string();
        let mut full = vec![
            format!("--reuid={u}"),
            format!("--regid={u}"),
            "--clear-groups".to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.cmd(ns, "setpriv", &full)
            .stdin(Stdio::null())
            .output()
            .expect("client runs")
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Every process in here was started by this test.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A bpffs of the test's own on a temporary directory; unmounted on drop
/// (which releases whatever is still pinned in it).
pub struct TestBpffs {
    pub dir: tempfile::TempDir,
}

impl TestBpffs {
    /// Mounted now.
    pub fn mounted() -> TestBpffs {
        let b = TestBpffs::unmounted();
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(b.dir.path())
            .status()
            .expect("mount runs");
        assert!(st.success(), "mount -t bpf");
        b
    }

    /// An empty directory tproxyctl is expected to mount a bpffs on.
    pub fn unmounted() -> TestBpffs {
        TestBpffs {
            dir: tempfile::Builder::new()
                .prefix("tproxyctl-test-bpffs")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(&self) -> &str {
        self.dir.path().to_str().expect("UTF-8 path")
    }

    pub fn is_bpffs(&self) -> bool {
        nix::sys::statfs::statfs(self.dir.path())
            .map(|s| s.filesystem_type().0 == 0xcafe4a11)
            .unwrap_or(false)
    }

    /// Every file under it, relative.
    pub fn files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                    if p.is_dir() {
                        walk(root, &p, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

impl Drop for TestBpffs {
    fn drop(&mut self) {
        for _ in 0..8 {
            let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
            if !self.is_bpffs() {
                break;
            }
        }
    }
}

/// The ids bpftool lists of one kind (`prog`, `link`, `map`).
pub fn bpftool_ids(kind: &str) -> Vec<u32> {
    let out = Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .expect("bpftool runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o.get("id")?.as_u64())
                .map(|i| i as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (5 s) until none of `ids` is listed by bpftool for `kind`; the
/// kernel releases links and their programs from a work item.
pub fn wait_gone(kind: &str, ids: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = bpftool_ids(kind);
        let left: Vec<u32> = ids.iter().copied().filter(|i| live.contains(i)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `bpftool cgroup show <cgroup>`: what is attached to it (JSON).
pub fn cgroup_attachments(cg: &TestCgroup) -> Vec<serde_json::Value> {
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(&cg.path)
        .output()
        .expect("bpftool runs");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// `tproxyctl forwarder` as the exempt user inside `ns` and `cg`, with an
/// access log; killed on drop.
pub struct CgForwarder {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl CgForwarder {
    pub fn start(ns: &Netns, cg: &TestCgroup, args: &[&str]) -> CgForwarder {
        // The forwarder opens its access log as the user, after the drop.
        let dir = crate::fwd_kernel::exempt_user_dir();
        let log = dir.path().join("access.log");
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let receipt = dir.path().join("no-receipt.json");
        let mut full: Vec<String> = [
            "forwarder",
            "--user",
            crate::common::EXEMPT_USER,
            "--kuma-dp-user",
            crate::common::EXEMPT_USER,
            "--access-log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        full.push(log.display().to_string());
        full.push("--receipt".into());
        full.push(receipt.display().to_string());
        full.extend(args.iter().map(|s| s.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let child = cg
            .cmd(ns, bin(), &full)
            .env_remove("TPROXYCTL_RECEIPT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("forwarder starts");
        let f = CgForwarder { child, dir };
        f.wait_ready(ns);
        f
    }

    fn wait_ready(&self, ns: &Netns) {
        let t = Instant::now();
        loop {
            let ready = crate::fwd_kernel::in_ns(ns, || {
                crate::fwd_kernel::http_get("127.0.0.1:9901".parse().unwrap(), "/ready")
            });
            if ready.is_some_and(|b| b.starts_with("HTTP/1.1 200")) {
                return;
            }
            if t.elapsed() > Duration::from_secs(20) {
                panic!("forwarder not ready after 20s; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Waits (10 s) for an access-log line containing every one of `parts`.
    pub fn wait_log(&self, parts: &[&str]) -> String {
        let t = Instant::now();
        loop {
            let log = self.access_log();
            if let Some(l) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return l.to_string();
            }
            if t.elapsed() > Duration::from_secs(10) {
                panic!(
                    "no access-log line with {parts:?}; log:\n{log}\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CgForwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
