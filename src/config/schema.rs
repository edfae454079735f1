//! The configuration schema: every key of the kumactl transparent-proxy config
//! file (reference §1.1, §1.5), its value kind, its `KUMA_TRANSPARENT_PROXY_*`
//! environment variable and its flag. One table drives unknown-key warnings,
//! environment parsing, flag layering and typed extraction, so the three input
//! forms cannot drift apart.

/// How a leaf value is written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// One port, 1..=65535.
    Port,
    /// A list of ports: a YAML list of numbers or strings, or one "1,2,3" string.
    Ports,
    /// Unsigned integer up to the given maximum.
    Uint(u64),
    /// `2s`, `500ms`, `1m`; a bare number in a file means nanoseconds (kumactl).
    Duration,
    Text,
    /// List of strings; in the environment, comma-separated.
    StringList,
    /// Map of iptables executable name to path; `name:path,...` in env and flag.
    Executables,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path in the YAML/JSON config file.
    pub path: &'static str,
    pub kind: Kind,
    /// Suffix after `KUMA_TRANSPARENT_PROXY_`, when the key has a variable.
    pub env: Option<&'static str>,
    /// Long flag (without `--`), when the key has one.
    pub flag: Option<&'static str>,
}

pub const ENV_PREFIX: &str = "KUMA_TRANSPARENT_PROXY_";

/// The names accepted under `iptablesExecutables`.
pub const EXECUTABLE_NAMES: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

const fn key(
    path: &'static str,
    kind: Kind,
    env: Option<&'static str>,
    flag: Option<&'static str>,
) -> Key {
    Key {
        path,
        kind,
        env,
        flag,
    }
}

use Kind::*;

/// Every key, in the order of reference §1.1.
pub const KEYS: &[Key] = &[
    key(
        "kumaDPUser",
        Text,
        Some("KUMA_DP_USER"),
        Some("kuma-dp-user"),
    ),
    key(
        "redirect.inbound.enabled",
        Bool,
        Some("REDIRECT_INBOUND_ENABLED"),
        Some("redirect-inbound"),
    ),
    key(
        "redirect.inbound.port",
        Port,
        Some("REDIRECT_INBOUND_PORT"),
        Some("redirect-inbound-port"),
    ),
    key(
        "redirect.outbound.port",
        Port,
        Some("REDIRECT_OUTBOUND_PORT"),
        Some("redirect-outbound-port"),
    ),
    key(
        "redirect.outbound.enabled",
        Bool,
        Some("REDIRECT_OUTBOUND_ENABLED"),
        None,
    ),
    key(
        "redirect.inbound.excludePorts",
        Ports,
        Some("REDIRECT_INBOUND_EXCLUDE_PORTS"),
        Some("exclude-inbound-ports"),
    ),
    key(
        "redirect.outbound.excludePorts",
        Ports,
        Some("REDIRECT_OUTBOUND_EXCLUDE_PORTS"),
        Some("exclude-outbound-ports"),
    ),
    key(
        "redirect.inbound.excludePortsForIPs",
        StringList,
        Some("REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_IPS"),
        Some("exclude-inbound-ips"),
    ),
    key(
        "redirect.outbound.excludePortsForIPs",
        StringList,
        Some("REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_IPS"),
        Some("exclude-outbound-ips"),
    ),
    key(
        "redirect.outbound.excludePortsForUIDs",
        StringList,
        Some("REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_UIDS"),
        Some("exclude-outbound-ports-for-uids"),
    ),
    key(
        "redirect.inbound.excludePortsForUIDs",
        StringList,
        Some("REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_UIDS"),
        None,
    ),
    key(
        "redirect.inbound.includePorts",
        Ports,
        Some("REDIRECT_INBOUND_INCLUDE_PORTS"),
        None,
    ),
    key(
        "redirect.outbound.includePorts",
        Ports,
        Some("REDIRECT_OUTBOUND_INCLUDE_PORTS"),
        None,
    ),
    key(
        "redirect.inbound.insertRedirectInsteadOfAppend",
        Bool,
        Some("REDIRECT_INBOUND_INSERT_REDIRECT_INSTEAD_OF_APPEND"),
        Some("redirect-inbound-insert-instead-of-append"),
    ),
    key(
        "redirect.outbound.insertRedirectInsteadOfAppend",
        Bool,
        Some("REDIRECT_OUTBOUND_INSERT_REDIRECT_INSTEAD_OF_APPEND"),
        Some("redirect-outbound-insert-instead-of-append"),
    ),
    key(
        "redirect.inbound.chainName",
        Text,
        Some("REDIRECT_INBOUND_CHAIN_NAME"),
        None,
    ),
    key(
        "redirect.inbound.redirectChainName",
        Text,
        Some("REDIRECT_INBOUND_REDIRECT_CHAIN_NAME"),
        None,
    ),
    key(
        "redirect.outbound.chainName",
        Text,
        Some("REDIRECT_OUTBOUND_CHAIN_NAME"),
        None,
    ),
    key(
        "redirect.outbound.redirectChainName",
        Text,
        Some("REDIRECT_OUTBOUND_REDIRECT_CHAIN_NAME"),
        None,
    ),
    key(
        "redirect.dns.enabled",
        Bool,
        Some("REDIRECT_DNS_ENABLED"),
        Some("redirect-dns"),
    ),
    key(
        "redirect.dns.captureAll",
        Bool,
        Some("REDIRECT_DNS_CAPTURE_ALL"),
        Some("redirect-all-dns-traffic"),
    ),
    key(
        "redirect.dns.port",
        Port,
        Some("REDIRECT_DNS_PORT"),
        Some("redirect-dns-port"),
    ),
    key(
        "redirect.dns.skipConntrackZoneSplit",
        Bool,
        Some("REDIRECT_DNS_SKIP_CONNTRACK_ZONE_SPLIT"),
        Some("skip-dns-conntrack-zone-split"),
    ),
    key(
        "redirect.dns.resolvConfigPath",
        Text,
        Some("REDIRECT_DNS_RESOLV_CONFIG_PATH"),
        None,
    ),
    key(
        "redirect.vnet.networks",
        StringList,
        Some("REDIRECT_VNET_NETWORKS"),
        Some("vnet"),
    ),
    key(
        "ipFamilyMode",
        Text,
        Some("IP_FAMILY_MODE"),
        Some("ip-family-mode"),
    ),
    key(
        "log.enabled",
        Bool,
        Some("LOG_ENABLED"),
        Some("iptables-logs"),
    ),
    key("log.level", Uint(7), Some("LOG_LEVEL"), None),
    key(
        "comments.disabled",
        Bool,
        Some("COMMENTS_DISABLED"),
        Some("disable-comments"),
    ),
    key(
        "dropInvalidPackets",
        Bool,
        Some("DROP_INVALID_PACKETS"),
        Some("drop-invalid-packets"),
    ),
    key("wait", Uint(u32::MAX as u64), Some("WAIT"), Some("wait")),
    key(
        "waitInterval",
        Uint(u32::MAX as u64),
        Some("WAIT_INTERVAL"),
        Some("wait-interval"),
    ),
    key(
        "retry.maxRetries",
        Uint(1000),
        Some("RETRY_MAX_RETRIES"),
        Some("max-retries"),
    ),
    key(
        "retry.sleepBetweenRetries",
        Duration,
        Some("RETRY_SLEEP_BETWEEN_RETRIES"),
        Some("sleep-between-retries"),
    ),
    key(
        "iptablesExecutables",
        Executables,
        Some("IPTABLES_EXECUTABLES"),
        Some("iptables-executables"),
    ),
    key(
        "storeFirewalld",
        Bool,
        Some("STORE_FIREWALLD"),
        Some("store-firewalld"),
    ),
    key("dryRun", Bool, Some("DRY_RUN"), Some("dry-run")),
    key("verbose", Bool, Some("VERBOSE"), Some("verbose")),
    key("cniMode", Bool, Some("CNI_MODE"), None),
    // eBPF mode (kumactl 2.14), and tproxyctl's allowCgroupRoot.
    key(
        "ebpf.enabled",
        Bool,
        Some("EBPF_ENABLED"),
        Some("ebpf-enabled"),
    ),
    key(
        "ebpf.instanceIP",
        Text,
        Some("EBPF_INSTANCE_IP"),
        Some("ebpf-instance-ip"),
    ),
    key(
        "ebpf.instanceIPEnvVarName",
        Text,
        Some("EBPF_INSTANCE_IP_ENV_VAR_NAME"),
        None,
    ),
    key(
        "ebpf.bpffsPath",
        Text,
        Some("EBPF_BPFFS_PATH"),
        Some("ebpf-bpffs-path"),
    ),
    key(
        "ebpf.cgroupPath",
        Text,
        Some("EBPF_CGROUP_PATH"),
        Some("ebpf-cgroup-path"),
    ),
    key(
        "ebpf.programsSourcePath",
        Text,
        Some("EBPF_PROGRAMS_SOURCE_PATH"),
        Some("ebpf-programs-source-path"),
    ),
    key(
        "ebpf.tcAttachIface",
        Text,
        Some("EBPF_TC_ATTACH_IFACE"),
        Some("ebpf-tc-attach-iface"),
    ),
    key(
        "ebpf.allowCgroupRoot",
        Bool,
        Some("EBPF_ALLOW_CGROUP_ROOT"),
        Some("ebpf-allow-cgroup-root"),
    ),
];

/// The key at a dotted path.
pub fn key_at(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The key set by a long flag.
pub fn key_for_flag(flag: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.flag == Some(flag))
}

/// True when `path` is an object that contains keys (e.g. `redirect.dns`).
pub fn is_object(path: &str) -> bool {
    KEYS.iter().any(|k| {
        k.path.len() > path.len()
            && k.path.starts_with(path)
            && k.path.as_bytes()[path.len()] == b'.'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_flags_and_env_names_are_unique() {
        let mut paths: Vec<_> = KEYS.iter().map(|k| k.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), KEYS.len());
        let mut envs: Vec<_> = KEYS.iter().filter_map(|k| k.env).collect();
        let n = envs.len();
        envs.sort();
        envs.dedup();
        assert_eq!(envs.len(), n);
        let mut flags: Vec<_> = KEYS.iter().filter_map(|k| k.flag).collect();
        let n = flags.len();
        flags.sort();
        flags.dedup();
        assert_eq!(flags.len(), n);
    }

    #[test]
    fn objects() {
        assert!(is_object("redirect"));
        assert!(is_object("redirect.dns"));
        assert!(!is_object("redirect.dns.port"));
        assert!(!is_object("wait"));
    }
}
