//! The kumactl-compatible transparent-proxy flags (reference §1.1), shared by
//! install, uninstall, the forwarder and `generate dataplane`, plus the
//! apply-only flags and the receipt path. Every value is kept raw (`Option`,
//! strings for numbers) so that [`crate::config`] can tell "not given" from
//! "given" and report bad values with the flag's name. Like pflag, a flag
//! that takes a value takes the next argument even when it starts with `-`
//! (`--redirect-inbound-port -80` is then refused naming '-80', not read as
//! short flags).

use clap::{ArgAction, Args};

use super::parse_go_bool;

/// Flags that shape the rules and the ports; the same set drives every command
/// that needs to agree with an install.
#[derive(Debug, Default, Clone, Args)]
#[command(next_help_heading = "Transparent proxy configuration")]
pub struct TpFlags {
    /// Configuration file (YAML or JSON), or - for stdin. Repeatable; later files win, lists replace, objects merge.
    #[arg(long, value_name = "FILE|-", action = ArgAction::Append, allow_hyphen_values = true)]
    pub config: Vec<String>,
    /// Deprecated alias of --config.
    #[arg(long = "config-file", value_name = "FILE|-", action = ArgAction::Append, hide = true, allow_hyphen_values = true)]
    pub config_file: Vec<String>,

    /// User name or UID that runs kuma-dp (default: UID 5678, then user kuma-dp).
    #[arg(long, value_name = "USER|UID", allow_hyphen_values = true)]
    pub kuma_dp_user: Option<String>,
    /// Deprecated alias of --kuma-dp-user.
    #[arg(long, value_name = "UID", hide = true, allow_hyphen_values = true)]
    pub kuma_dp_uid: Option<String>,

    /// Redirect inbound TCP (should be disabled for Gateway data plane proxies).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub redirect_inbound: Option<bool>,
    /// Port inbound TCP is redirected to (must match the Dataplane's redirectPortInbound) [default: 15006].
    #[arg(long, value_name = "PORT", allow_hyphen_values = true)]
    pub redirect_inbound_port: Option<String>,
    /// Port outbound TCP is redirected to [default: 15001].
    #[arg(long, value_name = "PORT", allow_hyphen_values = true)]
    pub redirect_outbound_port: Option<String>,
    /// Comma-separated inbound destination ports that are not redirected (each use replaces the list).
    #[arg(long, value_name = "PORTS", allow_hyphen_values = true)]
    pub exclude_inbound_ports: Option<String>,
    /// Comma-separated outbound TCP destination ports that are not redirected (each use replaces the list).
    #[arg(long, value_name = "PORTS", allow_hyphen_values = true)]
    pub exclude_outbound_ports: Option<String>,
    /// Source IPs or CIDRs whose inbound traffic is not redirected (comma lists allowed, repeatable).
    #[arg(long, value_name = "IPS", action = ArgAction::Append, allow_hyphen_values = true)]
    pub exclude_inbound_ips: Vec<String>,
    /// Destination IPs or CIDRs whose outbound traffic is not redirected (comma lists allowed, repeatable).
    #[arg(long, value_name = "IPS", action = ArgAction::Append, allow_hyphen_values = true)]
    pub exclude_outbound_ips: Vec<String>,
    /// Outbound exclusion by owner: <protocol:>?<ports:>?<uids>, e.g. tcp:22,80:1000 or 53:106-108 (repeatable).
    #[arg(long, value_name = "ENTRY", action = ArgAction::Append, allow_hyphen_values = true)]
    pub exclude_outbound_ports_for_uids: Vec<String>,
    /// Insert the PREROUTING jump to KUMA_MESH_INBOUND at the top instead of appending it.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub redirect_inbound_insert_instead_of_append: Option<bool>,
    /// Insert the OUTPUT jump to KUMA_MESH_OUTBOUND at the top instead of appending it.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub redirect_outbound_insert_instead_of_append: Option<bool>,
    /// Redirect UDP/53 sent to the name servers of resolv.conf to the DNS port.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub redirect_dns: Option<bool>,
    /// Redirect all UDP/53 to the DNS port (implies DNS redirection).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub redirect_all_dns_traffic: Option<bool>,
    /// Port of the DNS proxy [default: 15053].
    #[arg(long, value_name = "PORT", allow_hyphen_values = true)]
    pub redirect_dns_port: Option<String>,
    /// Do not write the raw-table conntrack zone rules for DNS.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub skip_dns_conntrack_zone_split: Option<bool>,
    /// Virtual network to capture, ifaceNameOrPrefix+:CIDR (e.g. docker0:172.17.0.0/16); repeatable.
    #[arg(long, value_name = "IFACE:CIDR", action = ArgAction::Append, allow_hyphen_values = true)]
    pub vnet: Vec<String>,
    /// IP family mode: dualstack or ipv4 (case-insensitive) [default: dualstack].
    #[arg(long, value_name = "MODE", allow_hyphen_values = true)]
    pub ip_family_mode: Option<String>,
    /// Add LOG rules to nat PREROUTING and OUTPUT (kernel log, not rate-limited).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub iptables_logs: Option<bool>,
    /// Write rules without -m comment (they are still found by the receipt).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub disable_comments: Option<bool>,
    /// Drop packets in conntrack state INVALID (mangle PREROUTING).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub drop_invalid_packets: Option<bool>,
}

/// Flags that only matter when rules are applied or removed.
#[derive(Debug, Default, Clone, Args)]
#[command(next_help_heading = "Applying")]
pub struct ApplyFlags {
    /// Print what would be done and change nothing on the host.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub dry_run: Option<bool>,
    /// Long option names and section headers in the rules; more messages.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub verbose: Option<bool>,
    /// Persist the rules in /etc/firewalld/direct.xml.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub store_firewalld: Option<bool>,
    /// Seconds to wait for the xtables lock (legacy iptables-restore; 0: no --wait) and for another install/uninstall in this network namespace [default: 5].
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub wait: Option<String>,
    /// Microseconds between xtables lock attempts (legacy only) [default: 0].
    #[arg(long, value_name = "MICROSECONDS", allow_hyphen_values = true)]
    pub wait_interval: Option<String>,
    /// Retries of the apply step [default: 4].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_retries: Option<String>,
    /// Pause between retries, e.g. 2s or 500ms [default: 2s].
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub sleep_between_retries: Option<String>,
    /// Custom iptables binaries: name:path[,name:path...] (iptables, iptables-save, iptables-restore, ip6tables…).
    #[arg(long, value_name = "NAME:PATH,...", allow_hyphen_values = true)]
    pub iptables_executables: Option<String>,
    /// firewalld direct configuration written by --store-firewalld [default: /etc/firewalld/direct.xml].
    #[arg(long, value_name = "FILE", env = "TPROXYCTL_FIREWALLD_DIRECT_FILE")]
    pub firewalld_direct_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub ebpf: EbpfFlags,
}

/// kumactl 2.14's eBPF mode flags (and `--ebpf-allow-cgroup-root`).
#[derive(Debug, Default, Clone, Args)]
#[command(next_help_heading = "eBPF mode")]
pub struct EbpfFlags {
    /// Redirect with eBPF programs (cgroup hooks and sk_lookup) instead of iptables rules.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub ebpf_enabled: Option<bool>,
    /// IP address of this instance (required with --ebpf-enabled).
    #[arg(long, value_name = "IP")]
    pub ebpf_instance_ip: Option<String>,
    /// Where the BPF programs are written for inspection [default: /tmp/kuma-ebpf].
    #[arg(long, value_name = "DIR")]
    pub ebpf_programs_source_path: Option<String>,
    /// BPF filesystem the links and maps are pinned in; mounted if none is there [default: /run/kuma/bpf].
    #[arg(long, value_name = "DIR")]
    pub ebpf_bpffs_path: Option<String>,
    /// cgroup (v2) the programs attach to [default: the cgroup2 mount point, a root: see --ebpf-allow-cgroup-root].
    #[arg(long, value_name = "DIR")]
    pub ebpf_cgroup_path: Option<String>,
    /// Redirect inbound traffic arriving on this interface only [default: every interface but loopback].
    #[arg(long, value_name = "IFACE")]
    pub ebpf_tc_attach_iface: Option<String>,
    /// Allow attaching to a cgroup root (every process of the machine is then in scope).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub ebpf_allow_cgroup_root: Option<bool>,
}

/// kumactl's root-command flags (reference §1.2): kumactl parses them on
/// every command and `transparent-proxy` ignores them. They are accepted
/// here (hidden from help), before or after the subcommand as in kumactl,
/// so that command lines written for kumactl run unchanged, and each one
/// given is reported as ignored. The root's
/// `--config-file` is [`TpFlags::config_file`], the deprecated alias of
/// `--config` it was in kumactl 2.9–2.14.
#[derive(Debug, Default, Clone, Args)]
pub struct KumactlRootFlags {
    /// kumactl's own log level (off, info, debug).
    #[arg(long, value_name = "LEVEL", hide = true, global = true)]
    pub log_level: Option<String>,
    /// kumactl's control-plane context.
    #[arg(long, value_name = "NAME", hide = true, global = true)]
    pub context: Option<String>,
    /// kumactl: do not read its own configuration.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, hide = true, global = true)]
    pub no_config: Option<bool>,
    /// kumactl's control-plane API timeout.
    #[arg(long, value_name = "DURATION", hide = true, global = true)]
    pub api_timeout: Option<String>,
}

/// Where the install receipt lives.
#[derive(Debug, Default, Clone, Args)]
#[command(next_help_heading = "Receipt")]
pub struct ReceiptArg {
    /// Install receipt (JSON), or `none` to keep no state [default: /var/lib/tproxyctl/receipt.json].
    #[arg(long, value_name = "FILE", env = "TPROXYCTL_RECEIPT")]
    pub receipt: Option<std::path::PathBuf>,
}
