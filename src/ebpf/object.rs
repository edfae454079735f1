//! The BPF object tproxyctl embeds (`bpf/tproxy.bpf.o`, built by
//! `bpf/build.sh` and committed, so a plain `cargo build` needs no clang),
//! its identity (SHA-256 recorded beside it), and the table of its programs:
//! what each hooks, where it attaches, and which configurations need it.

use serde::{Deserialize, Serialize};

use super::maps::{Contents, flag};

/// The object's bytes, 4-byte aligned as aya's loader wants them.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../../bpf/tproxy.bpf.o");

/// `bpf/tproxy.bpf.o.info`: `sha256 <hex>` and `clang <version>` lines.
pub const INFO: &str = include_str!("../../bpf/tproxy.bpf.o.info");

/// The file name the object is written under for inspection.
pub const FILE_NAME: &str = "tproxy.bpf.o";

/// The embedded object's SHA-256, as recorded when it was built.
pub fn sha256() -> &'static str {
    INFO.lines()
        .find_map(|l| l.strip_prefix("sha256 "))
        .unwrap_or("")
        .trim()
}

/// Where a program runs. In JSON a camelCase value (`sockOps`); receipts
/// of tproxyctl 0.1.0 wrote kebab-case (`sock-ops`), still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Hook {
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    Recvmsg4,
    Recvmsg6,
    Getpeername4,
    Getpeername6,
    #[serde(alias = "sock-ops")]
    SockOps,
    Getsockopt,
    #[serde(alias = "sk-lookup")]
    SkLookup,
}

impl Hook {
    /// The kernel's `enum bpf_attach_type`.
    pub fn attach_type(self) -> u32 {
        match self {
            Hook::SockOps => 3,
            Hook::Connect4 => 10,
            Hook::Connect6 => 11,
            Hook::Sendmsg4 => 14,
            Hook::Sendmsg6 => 15,
            Hook::Recvmsg4 => 19,
            Hook::Recvmsg6 => 20,
            Hook::Getsockopt => 21,
            Hook::Getpeername4 => 29,
            Hook::Getpeername6 => 30,
            Hook::SkLookup => 36,
        }
    }

    /// True for a hook of the network namespace rather than the cgroup.
    pub fn on_netns(self) -> bool {
        self == Hook::SkLookup
    }

    /// As bpftool names it (`bpftool cgroup tree`, `bpftool net`).
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect4 => "cgroup/connect4",
            Hook::Connect6 => "cgroup/connect6",
            Hook::Sendmsg4 => "cgroup/sendmsg4",
            Hook::Sendmsg6 => "cgroup/sendmsg6",
            Hook::Recvmsg4 => "cgroup/recvmsg4",
            Hook::Recvmsg6 => "cgroup/recvmsg6",
            Hook::Getpeername4 => "cgroup/getpeername4",
            Hook::Getpeername6 => "cgroup/getpeername6",
            Hook::SockOps => "cgroup/sock_ops",
            Hook::Getsockopt => "cgroup/getsockopt",
            Hook::SkLookup => "netns/sk_lookup",
        }
    }
}

/// One program of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// The function name in `bpf/tproxy.bpf.c` (and the kernel's name for it).
    pub name: &'static str,
    pub hook: Hook,
    /// What it does, for `--dry-run` and `status`.
    pub role: &'static str,
    /// Which configurations need it.
    pub needed: Need,
}

/// When a program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Always,
    Inbound,
    Dns,
}

pub const PROGRAMS: &[Program] = &[
    Program {
        name: "tp_connect4",
        hook: Hook::Connect4,
        role: "outbound TCP and DNS over connected UDP (IPv4) to the redirect ports",
        needed: Need::Always,
    },
    Program {
        name: "tp_connect6",
        hook: Hook::Connect6,
        role: "outbound TCP and DNS over connected UDP (IPv6, IPv4-mapped) to the redirect ports",
        needed: Need::Always,
    },
    Program {
        name: "tp_sockops",
        hook: Hook::SockOps,
        role: "files each redirected connection's original destination; registers the inbound listener",
        needed: Need::Always,
    },
    Program {
        name: "tp_getsockopt",
        hook: Hook::Getsockopt,
        role: "answers SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST on the proxy's accepted sockets",
        needed: Need::Always,
    },
    Program {
        name: "tp_sk_lookup",
        hook: Hook::SkLookup,
        role: "gives inbound TCP for non-excluded ports to the inbound listener",
        needed: Need::Inbound,
    },
    Program {
        name: "tp_sendmsg4",
        hook: Hook::Sendmsg4,
        role: "UDP/53 (IPv4) to the DNS port",
        needed: Need::Dns,
    },
    Program {
        name: "tp_sendmsg6",
        hook: Hook::Sendmsg6,
        role: "UDP/53 (IPv6) to the DNS port",
        needed: Need::Dns,
    },
    Program {
        name: "tp_recvmsg4",
        hook: Hook::Recvmsg4,
        role: "DNS answers (IPv4) come from the server the application asked",
        needed: Need::Dns,
    },
    Program {
        name: "tp_recvmsg6",
        hook: Hook::Recvmsg6,
        role: "DNS answers (IPv6) come from the server the application asked",
        needed: Need::Dns,
    },
    Program {
        name: "tp_getpeername4",
        hook: Hook::Getpeername4,
        role: "a connected DNS socket's peer (IPv4) is the server it asked",
        needed: Need::Dns,
    },
    Program {
        name: "tp_getpeername6",
        hook: Hook::Getpeername6,
        role: "a connected DNS socket's peer (IPv6) is the server it asked",
        needed: Need::Dns,
    },
];

/// Every map of the object; all are pinned.
pub const MAPS: &[&str] = &[
    "tp_config",
    "tp_ports",
    "tp_nets4",
    "tp_nets6",
    "tp_uid_rules",
    "tp_cookie_orig",
    "tp_pair_orig",
    "tp_listeners",
    "tp_stats",
];

/// The program with this name.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// The programs a configuration attaches, in attach order.
pub fn programs_for(contents: &Contents) -> Vec<&'static Program> {
    let f = contents.config.flags;
    PROGRAMS
        .iter()
        .filter(|p| match p.needed {
            Need::Always => true,
            Need::Inbound => f & flag::INBOUND != 0,
            Need::Dns => f & flag::DNS != 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_is_embedded_with_its_digest() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        assert_eq!(sha256().len(), 64, "{INFO}");
    }

    #[test]
    fn names_fit_the_kernel_and_are_unique() {
        // BPF_OBJ_NAME_LEN is 16 with the NUL.
        for p in PROGRAMS {
            assert!(p.name.len() < 16, "{}", p.name);
        }
        for m in MAPS {
            assert!(m.len() < 16, "{m}");
        }
        let mut names: Vec<_> = PROGRAMS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len());
    }

    #[test]
    fn the_configuration_chooses_the_hooks() {
        let mut c = Contents::default();
        let names =
            |c: &Contents| -> Vec<&str> { programs_for(c).iter().map(|p| p.name).collect() };
        assert_eq!(
            names(&c),
            ["tp_connect4", "tp_connect6", "tp_sockops", "tp_getsockopt"]
        );
        c.config.flags = flag::INBOUND | flag::DNS;
        assert_eq!(names(&c).len(), PROGRAMS.len());
    }
}
