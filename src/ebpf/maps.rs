//! What the BPF maps hold, and how: the Rust mirrors of `bpf/include/tp_maps.h`
//! (`#[repr(C)]`, the same sizes, checked by a test against the object's
//! BTF), and [`Contents`] — the whole configuration as map entries, computed
//! from a [`Config`] and the host facts with no I/O. The loader writes
//! `Contents` into fresh maps; `status`/`verify` read the pinned maps back
//! into a `Contents` and compare.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{Config, IpFamilyMode, Proto};

/// `TP_F_*` flags of `struct tp_config`.
pub mod flag {
    pub const OUTBOUND: u32 = 1 << 0;
    pub const INBOUND: u32 = 1 << 1;
    pub const DNS: u32 = 1 << 2;
    pub const DNS_ALL: u32 = 1 << 3;
    pub const IPV6: u32 = 1 << 4;
    pub const OUT_INCLUDE: u32 = 1 << 5;
    pub const IN_INCLUDE: u32 = 1 << 6;
}

/// `TP_MAX_UID_RULES`: entries of `tp_uid_rules`.
pub const MAX_UID_RULES: usize = 256;

/// `struct tp_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpConfig {
    pub netns_cookie: u64,
    pub exempt_uid: u32,
    pub flags: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
    pub uid_rule_count: u16,
    pub inbound_ifindex: u32,
    #[serde(skip)]
    pub pad: u32,
}

/// `struct tp_port_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortKey {
    pub port: u16,
    pub dir: u8,
    pub pad: u8,
}

/// The data part of `struct tp_net4_key` (after the prefix length).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net4 {
    pub kind: u8,
    pub pad: [u8; 3],
    pub addr: [u8; 4],
}

/// The data part of `struct tp_net6_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net6 {
    pub kind: u8,
    pub pad: [u8; 3],
    pub addr: [u8; 16],
}

/// `struct tp_uid_rule`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UidRule {
    pub uid_first: u32,
    pub uid_last: u32,
    pub port_first: u16,
    pub port_last: u16,
    /// `TP_PROTO_TCP` (1) | `TP_PROTO_UDP` (2)
    pub protocols: u8,
    #[serde(skip)]
    pub pad: [u8; 3],
}

// SAFETY: plain-old-data C layouts without padding holes that carry meaning;
// every bit pattern is a valid value.
unsafe impl aya::Pod for TpConfig {}
unsafe impl aya::Pod for PortKey {}
unsafe impl aya::Pod for Net4 {}
unsafe impl aya::Pod for Net6 {}
unsafe impl aya::Pod for UidRule {}

/// Which traffic a port entry is about (`TP_DIR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Outbound = 0,
    Inbound = 1,
}

/// What an address entry means (`TP_NET_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NetKind {
    /// Outbound destination not redirected (`--exclude-outbound-ips`).
    OutboundExcluded = 1,
    /// Inbound source not redirected (`--exclude-inbound-ips`).
    InboundExcluded = 2,
    /// A resolv.conf name server (DNS to it is redirected).
    DnsServer = 3,
    /// An address of this instance (`--ebpf-instance-ip`), besides loopback.
    Local = 4,
}

impl NetKind {
    pub fn from_u8(v: u8) -> Option<NetKind> {
        Some(match v {
            1 => NetKind::OutboundExcluded,
            2 => NetKind::InboundExcluded,
            3 => NetKind::DnsServer,
            4 => NetKind::Local,
            _ => return None,
        })
    }
}

/// One `tp_nets4`/`tp_nets6` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetEntry {
    pub kind: NetKind,
    pub net: IpNet,
}

impl NetEntry {
    /// The LPM key: 32 bits of kind and padding, then the prefix.
    pub fn v4_key(&self) -> Option<aya::maps::lpm_trie::Key<Net4>> {
        match self.net {
            IpNet::V4(n) => Some(aya::maps::lpm_trie::Key::new(
                32 + n.prefix_len() as u32,
                Net4 {
                    kind: self.kind as u8,
                    pad: [0; 3],
                    addr: n.network().octets(),
                },
            )),
            IpNet::V6(_) => None,
        }
    }

    pub fn v6_key(&self) -> Option<aya::maps::lpm_trie::Key<Net6>> {
        match self.net {
            IpNet::V6(n) => Some(aya::maps::lpm_trie::Key::new(
                32 + n.prefix_len() as u32,
                Net6 {
                    kind: self.kind as u8,
                    pad: [0; 3],
                    addr: n.network().octets(),
                },
            )),
            IpNet::V4(_) => None,
        }
    }

    /// The entry a trie key stands for (`None`: not one of ours).
    pub fn from_v4(prefix_len: u32, data: &Net4) -> Option<NetEntry> {
        let kind = NetKind::from_u8(data.kind)?;
        let len = u8::try_from(prefix_len.checked_sub(32)?).ok()?;
        let net = ipnet::Ipv4Net::new(data.addr.into(), len).ok()?;
        Some(NetEntry {
            kind,
            net: IpNet::V4(net),
        })
    }

    pub fn from_v6(prefix_len: u32, data: &Net6) -> Option<NetEntry> {
        let kind = NetKind::from_u8(data.kind)?;
        let len = u8::try_from(prefix_len.checked_sub(32)?).ok()?;
        let net = ipnet::Ipv6Net::new(data.addr.into(), len).ok()?;
        Some(NetEntry {
            kind,
            net: IpNet::V6(net),
        })
    }
}

/// One `tp_ports` entry: a listed port of a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortEntry {
    pub dir: Dir,
    pub port: u16,
}

impl PortEntry {
    pub fn key(&self) -> PortKey {
        PortKey {
            port: self.port,
            dir: self.dir as u8,
            pad: 0,
        }
    }

    pub fn from_key(k: &PortKey) -> Option<PortEntry> {
        let dir = match k.dir {
            0 => Dir::Outbound,
            1 => Dir::Inbound,
            _ => return None,
        };
        Some(PortEntry { dir, port: k.port })
    }
}

/// Facts the map contents depend on besides the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// The kuma-dp UID, resolved.
    pub uid: u32,
    /// resolv.conf name servers.
    pub dns_servers: Vec<IpAddr>,
    /// The network namespace the install is for.
    pub netns_cookie: u64,
    /// `--ebpf-tc-attach-iface`'s index (0: every interface but loopback).
    pub inbound_ifindex: u32,
}

/// Everything the maps hold for one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contents {
    pub config: TpConfig,
    pub ports: BTreeSet<PortEntry>,
    pub nets: BTreeSet<NetEntry>,
    pub uid_rules: Vec<UidRule>,
}

impl Contents {
    /// The map contents for `cfg` on a host with `facts`. Errors name the
    /// setting that cannot be expressed.
    pub fn build(cfg: &Config, facts: &Facts) -> Result<Contents, String> {
        let r = &cfg.redirect;
        let mut flags = 0;
        if r.outbound.enabled {
            flags |= flag::OUTBOUND;
        }
        if r.inbound.enabled {
            flags |= flag::INBOUND;
        }
        if r.dns.enabled {
            flags |= flag::DNS;
        }
        if r.dns.capture_all {
            flags |= flag::DNS_ALL;
        }
        if cfg.ip_family_mode == IpFamilyMode::DualStack {
            flags |= flag::IPV6;
        }
        if !r.outbound.include_ports.is_empty() {
            flags |= flag::OUT_INCLUDE;
        }
        if !r.inbound.include_ports.is_empty() {
            flags |= flag::IN_INCLUDE;
        }
        let mut ports = BTreeSet::new();
        for (dir, flow) in [(Dir::Outbound, &r.outbound), (Dir::Inbound, &r.inbound)] {
            let listed = if flow.include_ports.is_empty() {
                &flow.exclude_ports
            } else {
                &flow.include_ports
            };
            ports.extend(listed.iter().map(|&port| PortEntry { dir, port }));
        }
        let mut nets = BTreeSet::new();
        let mut add = |kind, net: IpNet| {
            nets.insert(NetEntry {
                kind,
                net: net.trunc(),
            });
        };
        for m in &r.outbound.exclude_ips {
            add(NetKind::OutboundExcluded, m.net);
        }
        for m in &r.inbound.exclude_ips {
            add(NetKind::InboundExcluded, m.net);
        }
        if r.dns.enabled && !r.dns.capture_all {
            for s in &facts.dns_servers {
                add(NetKind::DnsServer, IpNet::from(*s));
            }
        }
        if let Some(ip) = cfg.ebpf.instance_ip {
            add(NetKind::Local, IpNet::from(ip));
        }
        let mut uid_rules = Vec::new();
        for ex in &r.outbound.exclude_uids {
            let protocols = ex.protocols.iter().fold(0u8, |acc, p| {
                acc | match p {
                    Proto::Tcp => 1,
                    Proto::Udp => 2,
                }
            });
            let ranges = if ex.ports.is_empty() {
                vec![crate::config::PortRange::ALL]
            } else {
                ex.ports.clone()
            };
            for p in ranges {
                uid_rules.push(UidRule {
                    uid_first: ex.uids.first,
                    uid_last: ex.uids.last,
                    port_first: p.first,
                    port_last: p.last,
                    protocols,
                    pad: [0; 3],
                });
            }
        }
        if uid_rules.len() > MAX_UID_RULES {
            return Err(format!(
                "redirect.outbound.excludePortsForUIDs makes {} (UID range, port range) pairs; the eBPF mode holds at most {MAX_UID_RULES}",
                uid_rules.len()
            ));
        }
        Ok(Contents {
            config: TpConfig {
                netns_cookie: facts.netns_cookie,
                exempt_uid: facts.uid,
                flags,
                outbound_port: r.outbound.port,
                inbound_port: r.inbound.port,
                dns_port: r.dns.port,
                uid_rule_count: uid_rules.len() as u16,
                inbound_ifindex: facts.inbound_ifindex,
                pad: 0,
            },
            ports,
            nets,
            uid_rules,
        })
    }

    /// Entries of the IPv4 trie.
    pub fn nets4(&self) -> impl Iterator<Item = &NetEntry> {
        self.nets.iter().filter(|n| matches!(n.net, IpNet::V4(_)))
    }

    /// Entries of the IPv6 trie.
    pub fn nets6(&self) -> impl Iterator<Item = &NetEntry> {
        self.nets.iter().filter(|n| matches!(n.net, IpNet::V6(_)))
    }

    /// Flags as camelCase words (the dry run shows them, also in JSON).
    pub fn flag_names(&self) -> Vec<&'static str> {
        let f = self.config.flags;
        [
            (flag::OUTBOUND, "outbound"),
            (flag::INBOUND, "inbound"),
            (flag::DNS, "dns"),
            (flag::DNS_ALL, "dnsAll"),
            (flag::IPV6, "ipv6"),
            (flag::OUT_INCLUDE, "outboundIncludeOnly"),
            (flag::IN_INCLUDE, "inboundIncludeOnly"),
        ]
        .into_iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| n)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IpMatch, UidExclusion};

    fn facts() -> Facts {
        Facts {
            uid: 5678,
            dns_servers: vec!["10.0.0.2".parse().unwrap(), "fd00::53".parse().unwrap()],
            netns_cookie: 4096,
            inbound_ifindex: 0,
        }
    }

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<TpConfig>(), 32);
        assert_eq!(std::mem::size_of::<PortKey>(), 4);
        assert_eq!(std::mem::size_of::<aya::maps::lpm_trie::Key<Net4>>(), 12);
        assert_eq!(std::mem::size_of::<aya::maps::lpm_trie::Key<Net6>>(), 24);
        assert_eq!(std::mem::size_of::<UidRule>(), 16);
    }

    #[test]
    fn defaults_redirect_both_directions_and_both_families() {
        let c = Contents::build(&Config::default(), &facts()).unwrap();
        assert_eq!(c.flag_names(), ["outbound", "inbound", "ipv6"]);
        assert_eq!(c.config.outbound_port, 15001);
        assert_eq!(c.config.inbound_port, 15006);
        assert_eq!(c.config.exempt_uid, 5678);
        assert_eq!(c.config.netns_cookie, 4096);
        assert!(c.ports.is_empty());
        // DNS servers only matter when DNS is redirected
        assert!(c.nets.is_empty());
    }

    #[test]
    fn exclusions_and_servers_become_entries() {
        let mut cfg = Config::default();
        cfg.redirect.outbound.exclude_ports = vec![22, 3306];
        cfg.redirect.inbound.include_ports = vec![8080];
        cfg.redirect.inbound.exclude_ports = vec![22];
        cfg.redirect.outbound.exclude_ips = vec![IpMatch::parse("192.168.1.7/16").unwrap()];
        cfg.redirect.inbound.exclude_ips = vec![IpMatch::parse("fd00::/8").unwrap()];
        cfg.redirect.outbound.exclude_uids = vec![
            UidExclusion::parse("tcp:22,80-90:1000").unwrap(),
            UidExclusion::parse("106-108").unwrap(),
        ];
        cfg.redirect.dns.enabled = true;
        cfg.ebpf.instance_ip = Some("10.0.0.5".parse().unwrap());
        let c = Contents::build(&cfg, &facts()).unwrap();
        assert!(c.flag_names().contains(&"inboundIncludeOnly"));
        assert!(!c.flag_names().contains(&"outboundIncludeOnly"));
        let ports: Vec<_> = c.ports.iter().map(|p| (p.dir, p.port)).collect();
        assert_eq!(
            ports,
            [
                (Dir::Outbound, 22),
                (Dir::Outbound, 3306),
                (Dir::Inbound, 8080)
            ]
        );
        let nets: Vec<_> = c.nets.iter().map(|n| (n.kind, n.net.to_string())).collect();
        assert!(nets.contains(&(NetKind::OutboundExcluded, "192.168.0.0/16".into())));
        assert!(nets.contains(&(NetKind::InboundExcluded, "fd00::/8".into())));
        assert!(nets.contains(&(NetKind::DnsServer, "10.0.0.2/32".into())));
        assert!(nets.contains(&(NetKind::DnsServer, "fd00::53/128".into())));
        assert!(nets.contains(&(NetKind::Local, "10.0.0.5/32".into())));
        assert_eq!(c.uid_rules.len(), 3);
        assert_eq!(c.config.uid_rule_count, 3);
        assert_eq!(
            (c.uid_rules[0].port_first, c.uid_rules[0].port_last),
            (22, 22)
        );
        assert_eq!(c.uid_rules[0].protocols, 1);
        assert_eq!(
            (c.uid_rules[2].port_first, c.uid_rules[2].port_last),
            (1, 65535)
        );
        assert_eq!(c.uid_rules[2].protocols, 3);
    }

    #[test]
    fn trie_keys_round_trip() {
        for text in ["10.1.2.0/24", "0.0.0.0/0", "2001:db8::/32", "::1/128"] {
            let e = NetEntry {
                kind: NetKind::OutboundExcluded,
                net: text.parse().unwrap(),
            };
            let back = if let Some(k) = e.v4_key() {
                NetEntry::from_v4(k.prefix_len(), &k.data())
            } else {
                let k = e.v6_key().unwrap();
                NetEntry::from_v6(k.prefix_len(), &k.data())
            };
            assert_eq!(back, Some(e), "{text}");
        }
    }

    #[test]
    fn too_many_uid_rules_are_refused_by_name() {
        let mut cfg = Config::default();
        cfg.redirect.outbound.exclude_uids = (0..300)
            .map(|i| UidExclusion::parse(&format!("{}", 1000 + i)).unwrap())
            .collect();
        let err = Contents::build(&cfg, &facts()).unwrap_err();
        assert!(err.contains("excludePortsForUIDs"), "{err}");
    }
}
