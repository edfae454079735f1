//! What the eBPF mode needs from the kernel and the host, checked before
//! anything changes: kernel version, capabilities, the cgroup (cgroup2, not
//! a root unless allowed), the bpffs (or a directory to mount one on), the
//! interface of `--ebpf-tc-attach-iface`, the network namespace cookie, and
//! every program and map type. Each failed check is named in the error;
//! loading the programs (the verifier) is the last, definitive probe, done
//! by the loader before its first attach.

use std::path::{Path, PathBuf};

use aya::maps::MapType;
use aya::programs::ProgramType;
use serde::Serialize;

use super::{cgroup, sys};
use crate::config::ebpf::EbpfConfig;

/// Oldest kernel with every hook, field and helper the programs use: sk_lookup's
/// `ingress_ifindex` and `bpf_loop` are 5.17 (bpf_link cgroup attachment 5.7,
/// sk_lookup 5.9, listening sockets in a sockmap 5.10, `bpf_get_netns_cookie`
/// in sockops and getsockopt programs 5.15).
pub const MIN_KERNEL: (u32, u32) = (5, 17);

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Where the install will go, as found by the checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub cgroup: PathBuf,
    pub bpffs: PathBuf,
    /// The bpffs path is not a bpffs yet: install mounts one.
    pub needs_mount: bool,
    pub netns_cookie: u64,
    /// Index of `--ebpf-tc-attach-iface` (0: not given).
    pub inbound_ifindex: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub found: Option<Found>,
}

impl Report {
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    /// An error naming every failed check, or the findings.
    pub fn into_result(self) -> anyhow::Result<Found> {
        let failed = self.failed();
        if failed.is_empty()
            && let Some(f) = self.found
        {
            return Ok(f);
        }
        let list: Vec<String> = failed
            .iter()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        anyhow::bail!(
            "eBPF preflight failed, nothing on the host was changed:\n  {}",
            list.join("\n  ")
        )
    }
}

/// Parses `6.1.0-13-amd64` into (6, 1).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check(checks: &mut Vec<Check>, name: &'static str, r: Result<String, String>) -> bool {
    let ok = r.is_ok();
    checks.push(Check {
        name,
        ok,
        detail: r.unwrap_or_else(|e| e),
    });
    ok
}

fn kernel() -> Result<String, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|e| format!("reading /proc/sys/kernel/osrelease: {e}"))?
        .trim()
        .to_string();
    match parse_release(&release) {
        Some(v) if v >= MIN_KERNEL => Ok(release),
        Some(_) => Err(format!(
            "kernel {release} is older than {}.{} (sk_lookup's ingress_ifindex, sockops and getsockopt netns cookies)",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        None => Err(format!("cannot read the kernel version from '{release}'")),
    }
}

fn capabilities() -> Result<String, String> {
    let caps = sys::effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(sys::CAP_SYS_ADMIN) || (has(sys::CAP_BPF) && has(sys::CAP_NET_ADMIN)) {
        Ok(format!("CapEff {caps:016x}"))
    } else {
        Err("needs CAP_SYS_ADMIN, or CAP_BPF and CAP_NET_ADMIN (run as root)".to_string())
    }
}

fn cgroup_target(cfg: &EbpfConfig) -> Result<PathBuf, String> {
    let path = match &cfg.cgroup_path {
        Some(p) => p.clone(),
        None => cgroup::cgroup2_mount()
            .ok_or("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)")?,
    };
    match sys::fs_type(&path) {
        Ok(t) if t == sys::CGROUP2_SUPER_MAGIC => {}
        Ok(_) => return Err(format!("{} is not a cgroup2 directory", path.display())),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    if cgroup::is_root(&path) && !cfg.allow_cgroup_root {
        return Err(format!(
            "refusing to attach to the cgroup root {}: every process of the machine would be in scope. \
             Give --ebpf-cgroup-path a child cgroup holding the applications and kuma-dp, \
             or --ebpf-allow-cgroup-root (ebpf.allowCgroupRoot: true) to mean it",
            path.display()
        ));
    }
    Ok(path)
}

/// Is `path` a bpffs, or a place a bpffs can be mounted on?
fn bpffs(path: &Path) -> Result<bool, String> {
    match sys::fs_type(path) {
        Ok(t) if t == sys::BPF_FS_MAGIC => Ok(false),
        Ok(_) if path.is_dir() => Ok(true),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The nearest existing parent must be a directory.
            let parent = path.ancestors().skip(1).find(|p| p.exists());
            match parent {
                Some(p) if p.is_dir() => Ok(true),
                _ => Err(format!("{} cannot be created", path.display())),
            }
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn interface(name: &str) -> Result<u32, String> {
    nix::net::if_::if_nametoindex(name)
        .map_err(|_| format!("no interface {name} in this network namespace"))
}

fn program_types() -> Result<String, String> {
    let mut missing = Vec::new();
    for (t, name) in [
        (ProgramType::CgroupSockAddr, "cgroup_sock_addr"),
        (ProgramType::SockOps, "sock_ops"),
        (ProgramType::CgroupSockopt, "cgroup_sockopt"),
        (ProgramType::SkLookup, "sk_lookup"),
    ] {
        if !aya::sys::is_program_supported(t).unwrap_or(false) {
            missing.push(name);
        }
    }
    for (t, name) in [
        (MapType::LpmTrie, "lpm_trie"),
        (MapType::LruHash, "lru_hash"),
        (MapType::SockMap, "sockmap"),
        (MapType::PerCpuArray, "percpu_array"),
    ] {
        if !aya::sys::is_map_supported(t).unwrap_or(false) {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        Ok("cgroup_sock_addr, sock_ops, cgroup_sockopt, sk_lookup; lpm_trie, lru_hash, sockmap, percpu_array".to_string())
    } else {
        Err(format!(
            "not supported by this kernel: {}",
            missing.join(", ")
        ))
    }
}

/// Runs every check. Reads only.
pub fn run(cfg: &EbpfConfig) -> Report {
    let mut checks = Vec::new();
    check(&mut checks, "kernel", kernel());
    check(&mut checks, "capabilities", capabilities());
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    check(
        &mut checks,
        "BTF",
        Ok(if btf {
            "kernel BTF present".to_string()
        } else {
            "no kernel BTF: not needed (the programs use context types only, no CO-RE relocation)"
                .to_string()
        }),
    );
    let cgroup = cgroup_target(cfg);
    let cg_ok = check(
        &mut checks,
        "cgroup2",
        cgroup
            .as_ref()
            .map(|p| p.display().to_string())
            .map_err(Clone::clone),
    );
    let needs_mount = bpffs(&cfg.bpffs_path);
    let fs_ok = check(
        &mut checks,
        "bpffs",
        needs_mount
            .as_ref()
            .map(|m| {
                if *m {
                    format!(
                        "{} (a bpffs will be mounted there)",
                        cfg.bpffs_path.display()
                    )
                } else {
                    cfg.bpffs_path.display().to_string()
                }
            })
            .map_err(Clone::clone),
    );
    let ifindex = match &cfg.tc_attach_iface {
        Some(name) => interface(name),
        None => Ok(0),
    };
    let if_ok = check(
        &mut checks,
        "interface",
        ifindex
            .as_ref()
            .map(|i| match &cfg.tc_attach_iface {
                Some(n) => format!("{n} (index {i})"),
                None => "every interface but loopback".to_string(),
            })
            .map_err(Clone::clone),
    );
    let cookie = sys::netns_cookie().map_err(|e| format!("SO_NETNS_COOKIE: {e} (Linux 5.14+)"));
    let ck_ok = check(
        &mut checks,
        "network namespace",
        cookie
            .as_ref()
            .map(|c| format!("cookie {c}"))
            .map_err(Clone::clone),
    );
    check(&mut checks, "program types", program_types());
    let found = (cg_ok && fs_ok && if_ok && ck_ok).then(|| Found {
        cgroup: cgroup.expect("checked"),
        bpffs: cfg.bpffs_path.clone(),
        needs_mount: needs_mount.expect("checked"),
        netns_cookie: cookie.expect("checked"),
        inbound_ifindex: ifindex.expect("checked"),
    });
    Report { checks, found }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(parse_release("5.17.0"), Some((5, 17)));
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("garbage"), None);
        assert!(parse_release("5.15.0").unwrap() < MIN_KERNEL);
        assert!(parse_release("6.0.1").unwrap() >= MIN_KERNEL);
    }

    #[test]
    fn failed_checks_are_all_named() {
        let r = Report {
            checks: vec![
                Check {
                    name: "kernel",
                    ok: false,
                    detail: "kernel 5.4 is older".into(),
                },
                Check {
                    name: "bpffs",
                    ok: true,
                    detail: "/run/kuma/bpf".into(),
                },
                Check {
                    name: "cgroup2",
                    ok: false,
                    detail: "refusing".into(),
                },
            ],
            found: None,
        };
        let e = r.into_result().unwrap_err().to_string();
        assert!(e.contains("kernel: kernel 5.4 is older"), "{e}");
        assert!(e.contains("cgroup2: refusing"), "{e}");
        assert!(!e.contains("bpffs"), "{e}");
    }

    #[test]
    fn a_missing_interface_is_named() {
        let e = interface("tpnosuchif0").unwrap_err();
        assert!(e.contains("tpnosuchif0"), "{e}");
    }
}
