//! The resolved configuration: defaults < `--config` files (in order) <
//! `KUMA_TRANSPARENT_PROXY_*` environment < flags, the same way for every
//! command and whether or not a file is given. Every value is checked here,
//! and every "invalid value" error is born here, naming the flag, variable or
//! file key, the value and what is allowed. Nothing on the host is read except
//! the config files themselves.

pub mod ebpf;
pub mod layers;
mod lists;
pub mod recorded;
pub mod schema;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::cli::{ApplyFlags, TpFlags};
use crate::error::UsageError;
use layers::{Leaf, Merged, Source};
use lists::{PortList, fold_repeats, too_many_entries};
pub use types::{IpFamilyMode, IpMatch, PortRange, Proto, UidExclusion, UidRange, VnetNetwork};

/// Chain names are `KUMA_MESH_` + suffix; the prefix cannot be changed.
pub const CHAIN_PREFIX: &str = "KUMA_MESH";
/// Comment prefix of every rule (reference §2.1).
pub const COMMENT_PREFIX: &str = "kuma/mesh/transparent/proxy/";
/// Default kuma-dp UID and user name (reference §6.4).
pub const DEFAULT_UID: u32 = 5678;
pub const DEFAULT_USER: &str = "kuma-dp";
/// Source address of inbound passthrough connections (reference §2.2).
pub const INBOUND_PASSTHROUGH_V4: &str = "127.0.0.6";
pub const INBOUND_PASSTHROUGH_V6: &str = "::6";

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// User name or UID as given; resolved to a number by the host layer.
    pub kuma_dp_user: Option<String>,
    pub ip_family_mode: IpFamilyMode,
    pub redirect: Redirect,
    pub log: LogConfig,
    pub comments: Comments,
    pub drop_invalid_packets: bool,
    pub wait: u32,
    pub wait_interval: u32,
    pub retry: Retry,
    pub iptables_executables: BTreeMap<String, String>,
    pub store_firewalld: bool,
    pub dry_run: bool,
    pub verbose: bool,
    pub cni_mode: bool,
    /// eBPF redirection mode (SPEC §10).
    #[serde(default)]
    pub ebpf: ebpf::EbpfConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    pub inbound: TrafficFlow,
    pub outbound: TrafficFlow,
    pub dns: Dns,
    pub vnet: Vnet,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficFlow {
    pub enabled: bool,
    pub port: u16,
    pub exclude_ports: Vec<u16>,
    #[serde(rename = "excludePortsForIPs")]
    pub exclude_ips: Vec<IpMatch>,
    /// Outbound only; inbound entries are rejected (Q1).
    #[serde(rename = "excludePortsForUIDs")]
    pub exclude_uids: Vec<UidExclusion>,
    pub include_ports: Vec<u16>,
    pub insert_redirect_instead_of_append: bool,
    /// Suffix after `KUMA_MESH_` (env-only knob, reference §1.1).
    pub chain_name: String,
    pub redirect_chain_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    pub enabled: bool,
    pub capture_all: bool,
    pub port: u16,
    pub resolv_config_path: PathBuf,
    pub skip_conntrack_zone_split: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vnet {
    pub networks: Vec<VnetNetwork>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfig {
    pub enabled: bool,
    pub level: u16,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comments {
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    pub max_retries: u32,
    #[serde(with = "types::duration_text")]
    pub sleep_between_retries: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let flow = |port, chain: &str, redirect: &str| TrafficFlow {
            enabled: true,
            port,
            exclude_ports: Vec::new(),
            exclude_ips: Vec::new(),
            exclude_uids: Vec::new(),
            include_ports: Vec::new(),
            insert_redirect_instead_of_append: false,
            chain_name: chain.to_string(),
            redirect_chain_name: redirect.to_string(),
        };
        Config {
            kuma_dp_user: None,
            ip_family_mode: IpFamilyMode::DualStack,
            redirect: Redirect {
                inbound: flow(15006, "INBOUND", "INBOUND_REDIRECT"),
                outbound: flow(15001, "OUTBOUND", "OUTBOUND_REDIRECT"),
                dns: Dns {
                    enabled: false,
                    capture_all: false,
                    port: 15053,
                    resolv_config_path: PathBuf::from("/etc/resolv.conf"),
                    skip_conntrack_zone_split: false,
                },
                vnet: Vnet::default(),
            },
            log: LogConfig {
                enabled: false,
                level: 7,
            },
            comments: Comments::default(),
            drop_invalid_packets: false,
            wait: 5,
            wait_interval: 0,
            retry: Retry {
                max_retries: 4,
                sleep_between_retries: Duration::from_secs(2),
            },
            iptables_executables: BTreeMap::new(),
            store_firewalld: false,
            dry_run: false,
            verbose: false,
            cni_mode: false,
            ebpf: ebpf::EbpfConfig::default(),
        }
    }
}

impl Config {
    /// `KUMA_MESH_<suffix>`.
    pub fn chain(suffix: &str) -> String {
        format!("{CHAIN_PREFIX}_{suffix}")
    }
    pub fn inbound_chain(&self) -> String {
        Self::chain(&self.redirect.inbound.chain_name)
    }
    pub fn inbound_redirect_chain(&self) -> String {
        Self::chain(&self.redirect.inbound.redirect_chain_name)
    }
    pub fn outbound_chain(&self) -> String {
        Self::chain(&self.redirect.outbound.chain_name)
    }
    pub fn outbound_redirect_chain(&self) -> String {
        Self::chain(&self.redirect.outbound.redirect_chain_name)
    }
    /// True when inbound TCP to `port` is redirected: inbound redirection is
    /// on, and the port is not excluded or, with include-only ports, is
    /// included (reference §2.6; per-source IP exclusions aside). install
    /// asks it for port 22 before warning that SSH would be cut off.
    pub fn redirects_inbound_port(&self, port: u16) -> bool {
        let inbound = &self.redirect.inbound;
        inbound.enabled
            && if inbound.include_ports.is_empty() {
                !inbound.exclude_ports.contains(&port)
            } else {
                inbound.include_ports.contains(&port)
            }
    }

    /// The four custom chains in kumactl's order (reference §2.1).
    pub fn custom_chains(&self) -> [String; 4] {
        [
            self.inbound_chain(),
            self.outbound_chain(),
            self.inbound_redirect_chain(),
            self.outbound_redirect_chain(),
        ]
    }
}

/// Everything configuration is resolved from.
pub struct Inputs<'a> {
    pub tp: &'a TpFlags,
    pub apply: Option<&'a ApplyFlags>,
    /// The process environment (`std::env::vars()` in production).
    pub env: &'a [(String, String)],
    /// Read when a `--config -` is given.
    pub stdin: &'a mut dyn Read,
}

/// The configuration and the warnings met while resolving it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Resolves and validates the configuration. Errors are [`UsageError`]s.
pub fn resolve(inputs: Inputs<'_>) -> Result<Resolved, UsageError> {
    let mut warnings = Vec::new();
    let tp = inputs.tp;

    if tp.redirect_dns == Some(true) && tp.redirect_all_dns_traffic == Some(true) {
        return Err(UsageError::new(
            "only one of '--redirect-dns' or '--redirect-all-dns-traffic' should be specified",
        ));
    }

    let mut merged = Merged::default();
    let mut files: Vec<&String> = tp.config.iter().collect();
    if !tp.config_file.is_empty() {
        warnings.push(
            "--config-file is deprecated and will be removed; use --config (it works the same way)"
                .to_string(),
        );
        files.extend(tp.config_file.iter());
    }
    let mut stdin_used = false;
    for name in files {
        if name.is_empty() {
            continue;
        }
        if name == "-" {
            if stdin_used {
                return Err(UsageError::new(
                    "--config - is given more than once; stdin can be read only once",
                ));
            }
            stdin_used = true;
        }
        let text = layers::read_config_source(name, inputs.stdin)?;
        merged.extend(layers::file_layer(name, &text, &mut warnings)?);
    }
    merged.extend(layers::env_layer(inputs.env, &mut warnings)?);
    merged.extend(flag_layer(tp, inputs.apply, &mut warnings)?);

    let config = build(&merged, &mut warnings)?;
    Ok(Resolved { config, warnings })
}

/// One warning per kumactl root flag given (reference §1.2): accepted so
/// kumactl command lines run unchanged, and ignored, as kumactl's
/// `transparent-proxy` commands ignore them.
pub fn kumactl_root_flag_warnings(flags: &crate::cli::KumactlRootFlags) -> Vec<String> {
    let ignored = |flag: &str, what: &str| {
        format!(
            "{flag} is a flag of kumactl's root command ({what}); tproxyctl accepts it for compatibility and ignores it, as kumactl's transparent-proxy commands do"
        )
    };
    let mut out = Vec::new();
    if flags.log_level.is_some() {
        out.push(format!(
            "{} (--verbose shows more, --quiet less)",
            ignored("--log-level", "kumactl's own logging")
        ));
    }
    if flags.context.is_some() {
        out.push(ignored("--context", "a control-plane context"));
    }
    if flags.no_config.is_some() {
        out.push(ignored("--no-config", "kumactl's own configuration"));
    }
    if flags.api_timeout.is_some() {
        out.push(ignored("--api-timeout", "control-plane API calls"));
    }
    out
}

/// The flag layer: only flags that were given.
fn flag_layer(
    tp: &TpFlags,
    apply: Option<&ApplyFlags>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Leaf)>, UsageError> {
    let mut out: Vec<(String, Leaf)> = Vec::new();
    let mut put = |flag: &str, shown: &str, value: Value| {
        let key = schema::key_for_flag(flag).expect("every flag is in the schema");
        out.push((
            key.path.to_string(),
            Leaf {
                value,
                source: Source::Flag(shown.to_string()),
            },
        ));
    };
    let s = |v: &String| Value::String(v.clone());
    let list =
        |v: &Vec<String>| Value::Sequence(v.iter().map(|x| Value::String(x.clone())).collect());

    match (&tp.kuma_dp_user, &tp.kuma_dp_uid) {
        (Some(u), _) => put("kuma-dp-user", "kuma-dp-user", s(u)),
        (None, Some(u)) => {
            warnings.push("--kuma-dp-uid is deprecated; use --kuma-dp-user".to_string());
            put("kuma-dp-user", "kuma-dp-uid", s(u));
        }
        (None, None) => {}
    }
    let bools: [(&str, Option<bool>); 10] = [
        ("redirect-inbound", tp.redirect_inbound),
        (
            "redirect-inbound-insert-instead-of-append",
            tp.redirect_inbound_insert_instead_of_append,
        ),
        (
            "redirect-outbound-insert-instead-of-append",
            tp.redirect_outbound_insert_instead_of_append,
        ),
        ("redirect-dns", tp.redirect_dns),
        ("redirect-all-dns-traffic", tp.redirect_all_dns_traffic),
        (
            "skip-dns-conntrack-zone-split",
            tp.skip_dns_conntrack_zone_split,
        ),
        ("iptables-logs", tp.iptables_logs),
        ("disable-comments", tp.disable_comments),
        ("drop-invalid-packets", tp.drop_invalid_packets),
        ("dry-run", apply.and_then(|a| a.dry_run)),
    ];
    for (flag, v) in bools {
        if let Some(b) = v {
            put(flag, flag, Value::Bool(b));
        }
    }
    let strings: [(&str, Option<&String>); 5] = [
        ("redirect-inbound-port", tp.redirect_inbound_port.as_ref()),
        ("redirect-outbound-port", tp.redirect_outbound_port.as_ref()),
        ("exclude-inbound-ports", tp.exclude_inbound_ports.as_ref()),
        ("exclude-outbound-ports", tp.exclude_outbound_ports.as_ref()),
        ("redirect-dns-port", tp.redirect_dns_port.as_ref()),
    ];
    for (flag, v) in strings {
        if let Some(v) = v {
            put(flag, flag, s(v));
        }
    }
    if let Some(m) = &tp.ip_family_mode {
        put("ip-family-mode", "ip-family-mode", s(m));
    }
    let lists: [(&str, &Vec<String>); 4] = [
        ("exclude-inbound-ips", &tp.exclude_inbound_ips),
        ("exclude-outbound-ips", &tp.exclude_outbound_ips),
        (
            "exclude-outbound-ports-for-uids",
            &tp.exclude_outbound_ports_for_uids,
        ),
        ("vnet", &tp.vnet),
    ];
    for (flag, v) in lists {
        if !v.is_empty() {
            put(flag, flag, list(v));
        }
    }
    if let Some(a) = apply {
        for (flag, v) in [
            ("verbose", a.verbose),
            ("store-firewalld", a.store_firewalld),
        ] {
            if let Some(b) = v {
                put(flag, flag, Value::Bool(b));
            }
        }
        let strings: [(&str, Option<&String>); 4] = [
            ("wait", a.wait.as_ref()),
            ("wait-interval", a.wait_interval.as_ref()),
            ("max-retries", a.max_retries.as_ref()),
            ("sleep-between-retries", a.sleep_between_retries.as_ref()),
        ];
        for (flag, v) in strings {
            if let Some(v) = v {
                put(flag, flag, s(v));
            }
        }
    }
    // --iptables-executables name:path,... merges per name with files and env.
    if let Some(a) = apply {
        ebpf::flag_layer(&a.ebpf, &mut out);
    }
    if let Some(a) = apply
        && let Some(v) = &a.iptables_executables
    {
        let parsed = layers::parse_executables(v).map_err(|why| {
            UsageError::new(format!(
                "invalid value '{v}' for --iptables-executables: {why}"
            ))
        })?;
        for (name, path) in parsed {
            out.push((
                format!("iptablesExecutables.{name}"),
                Leaf {
                    value: Value::String(path),
                    source: Source::Flag("iptables-executables".to_string()),
                },
            ));
        }
    }
    Ok(out)
}

/// Typed access to merged leaves, with errors that name the source.
struct Extract<'a> {
    merged: &'a Merged,
}

/// A YAML value as a person reads it in a message (`null` for null).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .replace('\n', " "),
    }
}

fn invalid(leaf: &Leaf, path: &str, value: &str, why: &str) -> UsageError {
    UsageError::new(format!(
        "invalid value '{value}' for {}: {why}",
        leaf.source.describe(path)
    ))
}

/// Why a quoted number in a file is refused (kumactl's JSON decoding refuses it too).
const FILE_STRING_FOR_NUMBER: &str = "a number in a configuration file is written without quotes (kumactl refuses the quoted form too)";
/// Why a quoted boolean in a file is refused (kumactl's JSON decoding refuses it too).
const FILE_STRING_FOR_BOOL: &str = "a boolean in a configuration file is true or false without quotes (kumactl refuses the quoted form too)";

impl Extract<'_> {
    fn leaf(&self, path: &str) -> Option<&Leaf> {
        self.merged.get(path)
    }

    fn bool(&self, path: &str, into: &mut bool) -> Result<(), UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(());
        };
        *into = match &leaf.value {
            Value::Bool(b) => *b,
            Value::String(s) if leaf.source.is_file() => {
                return Err(invalid(leaf, path, s, FILE_STRING_FOR_BOOL));
            }
            // Go's strconv.ParseBool, as kumactl's flags and envconfig use it.
            Value::String(s) => crate::cli::parse_go_bool(s)
                .map_err(|_| invalid(leaf, path, s, "not a boolean (true or false)"))?,
            other => {
                return Err(invalid(
                    leaf,
                    path,
                    &value_text(other),
                    "not a boolean (true or false)",
                ));
            }
        };
        Ok(())
    }

    /// One port. In a file it must be a number: kumactl's `Port` decodes the
    /// raw JSON token, so `"15006"` is refused there too.
    fn port(&self, path: &str, into: &mut u16) -> Result<(), UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(());
        };
        *into = match &leaf.value {
            Value::Number(n) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(leaf, path, &n.to_string(), types::PORT_RANGE))?,
            Value::String(s) if leaf.source.is_file() => {
                return Err(invalid(leaf, path, s, FILE_STRING_FOR_NUMBER));
            }
            Value::String(s) => types::parse_port(s).map_err(|why| invalid(leaf, path, s, &why))?,
            other => return Err(invalid(leaf, path, &value_text(other), types::PORT_RANGE)),
        };
        Ok(())
    }

    /// A port list: a YAML list of numbers or strings, or one `"1,2,3"`
    /// string (kumactl's `Ports`). See [`PortList`] for trimming, empty
    /// pieces, repeated ports and the size bound.
    fn ports(
        &self,
        path: &str,
        into: &mut Vec<u16>,
        warnings: &mut Vec<String>,
    ) -> Result<(), UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(());
        };
        let mut list = PortList::new(leaf, path);
        match &leaf.value {
            Value::Null => {}
            Value::Number(n) => list.number(n)?,
            // An empty string clears the list, as kumactl's `Ports.Set("")`.
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => list.text(s)?,
            Value::Sequence(items) => {
                for item in items {
                    match item {
                        Value::Number(n) => list.number(n)?,
                        Value::String(s) => list.text(s)?,
                        other => {
                            return Err(invalid(leaf, path, &value_text(other), types::PORT_RANGE));
                        }
                    }
                }
            }
            other => {
                return Err(invalid(
                    leaf,
                    path,
                    &value_text(other),
                    "expected a list of ports or a comma-separated string",
                ));
            }
        }
        *into = list.finish(warnings);
        Ok(())
    }

    /// An unsigned integer up to `max`: a number in a file, digits only
    /// (`strconv.ParseUint`) in the environment and on the command line.
    fn uint(&self, path: &str, max: u64) -> Result<Option<u64>, UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(None);
        };
        let why = format!("expected an integer in the range [0, {max}]");
        let n = match &leaf.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if leaf.source.is_file() => {
                return Err(invalid(leaf, path, s, FILE_STRING_FOR_NUMBER));
            }
            Value::String(s) => types::parse_decimal(s),
            _ => None,
        };
        match n {
            Some(n) if n <= max => Ok(Some(n)),
            _ => {
                let text = value_text(&leaf.value);
                Err(invalid(
                    leaf,
                    path,
                    &text,
                    &format!("{why}{}", types::space_hint(&text)),
                ))
            }
        }
    }

    /// A duration: `2s`, `500ms`, `1m30s` anywhere, or a bare integer, which
    /// kumactl reads as nanoseconds (`--sleep-between-retries 2000000000`,
    /// in a file, a variable or a flag). kumactl's flag wanted a JSON string
    /// (`'"2s"'`); that form is accepted too. A bare integer under a
    /// millisecond is almost certainly meant in another unit: it works as
    /// kumactl reads it, with a warning.
    fn duration(
        &self,
        path: &str,
        into: &mut Duration,
        warnings: &mut Vec<String>,
    ) -> Result<(), UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(());
        };
        const ALLOWED: &str = "not a duration (a number with a unit, e.g. 2s, 500ms, 1m, or an integer number of nanoseconds)";
        let mut nanos = |text: &str| -> Result<Duration, UsageError> {
            let ns =
                types::parse_decimal(text).ok_or_else(|| invalid(leaf, path, text, ALLOWED))?;
            if ns != 0 && ns < 1_000_000 {
                warnings.push(format!(
                    "{} is {ns}: a bare number is nanoseconds (as in kumactl); write {ns}s or {ns}ms for seconds or milliseconds",
                    leaf.source.describe(path)
                ));
            }
            Ok(Duration::from_nanos(ns))
        };
        *into = match &leaf.value {
            Value::Number(n) => nanos(&n.to_string())?,
            Value::String(s) => {
                let t = s
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .unwrap_or(s);
                if t.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        leaf,
                        path,
                        s,
                        &format!("{ALLOWED} (without spaces)"),
                    ));
                }
                if t.bytes().all(|b| b.is_ascii_digit()) {
                    nanos(t)?
                } else {
                    types::parse_duration(t).map_err(|_| invalid(leaf, path, s, ALLOWED))?
                }
            }
            other => return Err(invalid(leaf, path, &value_text(other), ALLOWED)),
        };
        Ok(())
    }

    fn string(&self, path: &str) -> Result<Option<String>, UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(None);
        };
        match &leaf.value {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Null => Ok(None),
            other => Err(invalid(leaf, path, &value_text(other), "expected a string")),
        }
    }

    /// A list of strings with the leaf it came from.
    fn strings(&self, path: &str) -> Result<Option<(Vec<String>, &Leaf)>, UsageError> {
        let Some(leaf) = self.leaf(path) else {
            return Ok(None);
        };
        let items = match &leaf.value {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s.clone()],
            Value::Sequence(items) => {
                if items.len() > layers::MAX_LIST_ENTRIES {
                    return Err(too_many_entries(leaf, path));
                }
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        Value::Number(n) => out.push(n.to_string()),
                        other => {
                            return Err(invalid(
                                leaf,
                                path,
                                &value_text(other),
                                "expected a string",
                            ));
                        }
                    }
                }
                out
            }
            other => {
                return Err(invalid(
                    leaf,
                    path,
                    &value_text(other),
                    "expected a list of strings",
                ));
            }
        };
        Ok(Some((items, leaf)))
    }
}

/// IP exclusions: each value may be a comma list (no spaces, no empty
/// pieces, as kumactl). Repeats of the same network are folded.
fn ip_list(
    ex: &Extract<'_>,
    path: &str,
    into: &mut Vec<IpMatch>,
    warnings: &mut Vec<String>,
) -> Result<(), UsageError> {
    let Some((items, leaf)) = ex.strings(path)? else {
        return Ok(());
    };
    let mut out = Vec::new();
    for item in &items {
        for part in item.split(',') {
            if out.len() >= layers::MAX_LIST_ENTRIES {
                return Err(too_many_entries(leaf, path));
            }
            let m = IpMatch::parse(part).map_err(|why| {
                if part.is_empty() {
                    invalid(leaf, path, item, &why)
                } else {
                    invalid(leaf, path, part, &why)
                }
            })?;
            out.push(m);
        }
    }
    *into = fold_repeats(
        out,
        |m| m.net.trunc(),
        &leaf.source.describe(path),
        warnings,
    );
    Ok(())
}

fn check_chain_suffix(ex: &Extract<'_>, path: &str, into: &mut String) -> Result<(), UsageError> {
    let Some(v) = ex.string(path)? else {
        return Ok(());
    };
    let leaf = ex.leaf(path).expect("string() found it");
    let full = Config::chain(&v);
    // iptables chain names are at most 28 characters and must not look like options.
    if v.is_empty()
        || full.len() > 28
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            leaf,
            path,
            &v,
            "chain suffix must be letters, digits, '_' or '-', and KUMA_MESH_<suffix> at most 28 characters",
        ));
    }
    *into = v;
    Ok(())
}

/// Builds the typed configuration from merged leaves.
fn build(merged: &Merged, warnings: &mut Vec<String>) -> Result<Config, UsageError> {
    let ex = Extract { merged };
    let mut c = Config {
        kuma_dp_user: ex.string("kumaDPUser")?.filter(|u| !u.trim().is_empty()),
        ..Config::default()
    };
    if let Some(leaf) = ex.leaf("ipFamilyMode") {
        let text = value_text(&leaf.value);
        c.ip_family_mode =
            IpFamilyMode::parse(&text).map_err(|why| invalid(leaf, "ipFamilyMode", &text, &why))?;
    }

    for (dir, flow) in [
        ("inbound", &mut c.redirect.inbound),
        ("outbound", &mut c.redirect.outbound),
    ] {
        let p = |k: &str| format!("redirect.{dir}.{k}");
        ex.bool(&p("enabled"), &mut flow.enabled)?;
        ex.port(&p("port"), &mut flow.port)?;
        ex.ports(&p("excludePorts"), &mut flow.exclude_ports, warnings)?;
        ex.ports(&p("includePorts"), &mut flow.include_ports, warnings)?;
        ip_list(
            &ex,
            &p("excludePortsForIPs"),
            &mut flow.exclude_ips,
            warnings,
        )?;
        ex.bool(
            &p("insertRedirectInsteadOfAppend"),
            &mut flow.insert_redirect_instead_of_append,
        )?;
        check_chain_suffix(&ex, &p("chainName"), &mut flow.chain_name)?;
        check_chain_suffix(&ex, &p("redirectChainName"), &mut flow.redirect_chain_name)?;
        if let Some((items, leaf)) = ex.strings(&p("excludePortsForUIDs"))? {
            if dir == "inbound" {
                if !items.is_empty() {
                    return Err(UsageError::new(format!(
                        "{} is not supported: the owner (UID) match does not work on inbound \
                         traffic (PREROUTING); kumactl renders it as '-A KUMA_MESH_INBOUND -j RETURN', \
                         which turns off all inbound redirection. Use excludePorts or \
                         excludePortsForIPs for inbound exclusions",
                        leaf.source.describe(&p("excludePortsForUIDs"))
                    )));
                }
            } else {
                let mut out = Vec::new();
                for item in &items {
                    out.push(
                        UidExclusion::parse(item)
                            .map_err(|why| invalid(leaf, &p("excludePortsForUIDs"), item, &why))?,
                    );
                }
                flow.exclude_uids = fold_repeats(
                    out,
                    |e| (e.protocols.clone(), e.ports.clone(), e.uids),
                    &leaf.source.describe(&p("excludePortsForUIDs")),
                    warnings,
                );
            }
        }
    }

    let dns = &mut c.redirect.dns;
    ex.bool("redirect.dns.enabled", &mut dns.enabled)?;
    ex.bool("redirect.dns.captureAll", &mut dns.capture_all)?;
    ex.port("redirect.dns.port", &mut dns.port)?;
    ex.bool(
        "redirect.dns.skipConntrackZoneSplit",
        &mut dns.skip_conntrack_zone_split,
    )?;
    if let Some(p) = ex.string("redirect.dns.resolvConfigPath")? {
        if p.trim().is_empty() {
            let leaf = ex.leaf("redirect.dns.resolvConfigPath").expect("present");
            return Err(invalid(
                leaf,
                "redirect.dns.resolvConfigPath",
                &p,
                "expected a file path",
            ));
        }
        dns.resolv_config_path = PathBuf::from(p);
    }
    if dns.capture_all {
        dns.enabled = true;
    }

    if let Some((items, leaf)) = ex.strings("redirect.vnet.networks")? {
        let mut nets: Vec<VnetNetwork> = Vec::new();
        // (interface, IPv4?) -> index in `nets`: one lookup per entry.
        let mut index: HashMap<(String, bool), usize> = HashMap::new();
        for item in &items {
            let net = VnetNetwork::parse(item)
                .map_err(|why| invalid(leaf, "redirect.vnet.networks", item, &why))?;
            let key = (net.interface.clone(), net.cidr.is_ipv4());
            if let Some(&i) = index.get(&key) {
                let prev = &mut nets[i];
                if *prev != net {
                    warnings.push(format!(
                        "virtual network {net} replaces {prev}: one CIDR per interface and IP family is used (as kumactl does)"
                    ));
                }
                *prev = net;
            } else {
                index.insert(key, nets.len());
                nets.push(net);
            }
        }
        c.redirect.vnet.networks = nets;
    }

    ex.bool("log.enabled", &mut c.log.enabled)?;
    if let Some(level) = ex.uint("log.level", 7)? {
        c.log.level = level as u16;
    }
    ex.bool("comments.disabled", &mut c.comments.disabled)?;
    ex.bool("dropInvalidPackets", &mut c.drop_invalid_packets)?;
    if let Some(w) = ex.uint("wait", u32::MAX as u64)? {
        c.wait = w as u32;
    }
    if let Some(w) = ex.uint("waitInterval", u32::MAX as u64)? {
        c.wait_interval = w as u32;
    }
    if let Some(r) = ex.uint("retry.maxRetries", 1000)? {
        c.retry.max_retries = r as u32;
    }
    ex.duration(
        "retry.sleepBetweenRetries",
        &mut c.retry.sleep_between_retries,
        warnings,
    )?;
    for (name, leaf) in merged.children("iptablesExecutables") {
        c.iptables_executables
            .insert(name.to_string(), value_text(&leaf.value));
    }
    ex.bool("storeFirewalld", &mut c.store_firewalld)?;
    ex.bool("dryRun", &mut c.dry_run)?;
    ex.bool("verbose", &mut c.verbose)?;
    ex.bool("cniMode", &mut c.cni_mode)?;
    c.ebpf = ebpf::build(&ex)?;

    cross_checks(&c, warnings)?;
    ebpf::cross_checks(&c, warnings)?;
    Ok(c)
}

fn cross_checks(c: &Config, warnings: &mut Vec<String>) -> Result<(), UsageError> {
    let r = &c.redirect;
    let mut ports = vec![("inbound", r.inbound.port), ("outbound", r.outbound.port)];
    if r.dns.enabled {
        ports.push(("DNS", r.dns.port));
    }
    for i in 0..ports.len() {
        for j in i + 1..ports.len() {
            if ports[i].1 == ports[j].1 {
                warnings.push(format!(
                    "the {} and {} redirect ports are both {}; one listener cannot tell the two kinds of traffic apart",
                    ports[i].0, ports[j].0, ports[i].1
                ));
            }
        }
    }
    for (dir, flow) in [("inbound", &r.inbound), ("outbound", &r.outbound)] {
        if !flow.include_ports.is_empty() && !flow.exclude_ports.is_empty() {
            warnings.push(format!(
                "redirect.{dir}.excludePorts is ignored because redirect.{dir}.includePorts is set"
            ));
        }
    }
    let names = c.custom_chains();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            if names[i] == names[j] {
                return Err(UsageError::new(format!(
                    "two custom chains would share the name {} (check the *_CHAIN_NAME settings)",
                    names[i]
                )));
            }
        }
    }
    Ok(())
}

/// Reads the `KUMA_TRANSPARENT_PROXY_*` variables of this process. Other
/// variables are never decoded, so one that is not UTF-8 (`FOO=$'\xff'`) is
/// simply not looked at. A variable of ours whose value is not UTF-8 is an
/// error naming it; a name of ours that is not UTF-8 cannot be a known key
/// and ends up in the unknown-variable warning, shown with `\xNN` escapes.
pub fn process_env() -> Result<Vec<(String, String)>, UsageError> {
    process_env_from(std::env::vars_os())
}

fn process_env_from(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, UsageError> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for (name, value) in vars {
        if !name.as_bytes().starts_with(schema::ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = crate::error::show_bytes(name.as_bytes());
        let value = match value.into_string() {
            Ok(v) => v,
            Err(raw) => {
                let shown = crate::error::show_bytes(raw.as_bytes());
                let known = name
                    .strip_prefix(schema::ENV_PREFIX)
                    .is_some_and(|suffix| schema::KEYS.iter().any(|k| k.env == Some(suffix)));
                if known {
                    return Err(UsageError::new(format!(
                        "invalid value '{shown}' for environment variable {name}: not UTF-8 text"
                    )));
                }
                shown
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Convenience for commands: resolves from the process's flags, env and stdin.
pub fn resolve_process(tp: &TpFlags, apply: Option<&ApplyFlags>) -> Result<Resolved, UsageError> {
    let env = process_env()?;
    let mut stdin = std::io::stdin();
    resolve(Inputs {
        tp,
        apply,
        env: &env,
        stdin: &mut stdin,
    })
}

#[cfg(test)]
mod tests;
