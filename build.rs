//! Decides, when the tests are built, which groups of environment-dependent
//! tests can run on this machine, so that a test that cannot run is reported
//! as *ignored, with its reason* by `cargo test` and `cargo nextest` alike
//! (libtest has no runtime skip: a test that returns early is counted as
//! passed, and both runners hide a passing test's output).
//!
//! Each group is a `cfg` the tests use as
//! `#[cfg_attr(not(kernel_tests), ignore = "…")]`:
//!
//! - `kernel_tests`: root, and the iptables (nft and legacy, both families),
//!   iproute2 and util-linux tools the network-namespace tests drive;
//! - `firewalld_tests`: `kernel_tests` plus firewalld, dbus-daemon and an
//!   `/etc/firewalld` to mount over;
//! - `firewalld_installed`: firewalld's own Python code (no root needed);
//! - `python3_installed`: a `python3`;
//! - `ebpf_tests`: `kernel_tests` plus bpftool and a cgroup2 mount (the eBPF
//!   mode's tests attach to a child cgroup of their own);
//! - `bpf_clang`: the clang that built the committed `bpf/tproxy.bpf.o` (its
//!   version is recorded in `bpf/tproxy.bpf.o.info`), so the object can be
//!   rebuilt and compared byte for byte; another clang's output would differ;
//! - `shared_seeds`: the shared documents (`../shared/seeds`) beside the
//!   repository, as in CI, to compare the copied seed examples with.
//!
//! `TPROXYCTL_REQUIRE_KERNEL_TESTS=1` (CI) turns every group on whatever was
//! found, so a test that cannot run fails with its reason instead of being
//! ignored. `TPROXYCTL_SKIP_KERNEL_TESTS=1` turns the two root groups off (a
//! quick run as root without network namespaces); the former wins. A group that was on when built but cannot run when the test runs
//! (a test binary built as root and run as another user) fails too: no test
//! ever passes without having run.
//!
//! The script runs again when the user changes (`USER`, `HOME`, `SUDO_UID`),
//! when those variables change, or when the directories the tools live in
//! change (a package installed or removed).

use std::path::Path;

const KERNEL_TOOLS: &[&str] = &[
    "ip",
    "iptables-nft",
    "iptables-nft-save",
    "iptables-nft-restore",
    "ip6tables-nft",
    "ip6tables-nft-save",
    "ip6tables-nft-restore",
    "iptables-legacy",
    "iptables-legacy-save",
    "iptables-legacy-restore",
    "ip6tables-legacy",
    "ip6tables-legacy-save",
    "ip6tables-legacy-restore",
    "setpriv",
    "unshare",
    "nsenter",
    "bash",
];

const FIREWALLD_TOOLS: &[&str] = &[
    "firewalld",
    "firewall-cmd",
    "dbus-daemon",
    "mount",
    "timeout",
];

const TOOL_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "USER",
        "HOME",
        "SUDO_UID",
        "TPROXYCTL_REQUIRE_KERNEL_TESTS",
        "TPROXYCTL_SKIP_KERNEL_TESTS",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    for dir in TOOL_DIRS {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds");
    if seeds.is_dir() {
        // (watching a path that does not exist would rerun this every build)
        println!("cargo::rerun-if-changed={}", seeds.display());
    }
    let groups = [
        "kernel_tests",
        "firewalld_tests",
        "firewalld_installed",
        "python3_installed",
        "shared_seeds",
        "ebpf_tests",
        "bpf_clang",
    ];
    for g in groups {
        println!("cargo::rustc-check-cfg=cfg({g})");
    }

    let require = std::env::var("TPROXYCTL_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1");
    let kernel = is_root() && KERNEL_TOOLS.iter().all(|t| have(t));
    let firewalld =
        kernel && FIREWALLD_TOOLS.iter().all(|t| have(t)) && Path::new("/etc/firewalld").is_dir();
    let skip = std::env::var("TPROXYCTL_SKIP_KERNEL_TESTS").as_deref() == Ok("1");
    let ebpf = kernel && have("bpftool") && cgroup2_mounted();
    println!("cargo::rerun-if-changed=bpf/tproxy.bpf.o.info");
    let on = [
        ("kernel_tests", kernel && !skip),
        ("firewalld_tests", firewalld && !skip),
        ("firewalld_installed", have("firewalld")),
        ("python3_installed", have("python3")),
        ("shared_seeds", seeds.is_dir()),
        ("ebpf_tests", ebpf && !skip),
        ("bpf_clang", recorded_clang_is_here()),
    ];
    for (group, found) in on {
        if require || found {
            println!("cargo::rustc-cfg={group}");
        }
    }
}

/// Effective UID 0, from /proc (no dependency for one number).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// On the PATH or in the sbin directories a root PATH has.
fn have(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(TOOL_DIRS.iter().map(Into::into))
        .any(|d| d.join(tool).is_file())
}

/// A cgroup2 file system is mounted somewhere (not always /sys/fs/cgroup).
fn cgroup2_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
    })
}

/// `clang --version`'s first line is the one `bpf/tproxy.bpf.o.info` recorded.
fn recorded_clang_is_here() -> bool {
    let info = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf/tproxy.bpf.o.info");
    let Some(recorded) = std::fs::read_to_string(info).ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("clang ").map(|v| v.trim().to_string()))
    }) else {
        return false;
    };
    std::process::Command::new("clang")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .is_some_and(|have| have == recorded)
}
