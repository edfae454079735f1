//! The Universal `Dataplane` resource (reference §6.1) as typed values: what
//! `generate dataplane` renders, what `--check` and `status` compare with the
//! installed rules, and what the forwarder reads to learn mesh destinations
//! (name, mesh, address, inbounds and their tags, `transparentProxying` with
//! `reachableServices` / `reachableBackends`).
//!
//! Any Universal Dataplane in YAML or JSON parses: the fields this tool reasons
//! about are typed, everything else (`metrics`, `probes`, `gateway`,
//! `admin`, inbound `health` and `serviceProbe`, …) is kept in order in
//! `extra` maps and written back unchanged; validation reads the parts Kuma
//! checks from there.
//! Missing values (as a template leaves them: `port:` with nothing after it)
//! parse as empty and are reported by [`Dataplane::validate`], which applies
//! Kuma 2.14's rules (see [`validate`]) and names the field, the value and
//! what is allowed. A file may hold several Dataplanes ([`parse_stream`]: a
//! YAML stream, a JSON array, a `kumactl get` list).
//!
//! Not here: text rendering (see [`crate::render::dataplane`]) and templates
//! (see [`crate::render::template`]).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use indexmap::IndexMap;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_yaml::Value;

use crate::config::{Config, IpFamilyMode};

mod validate;

pub use validate::is_identifier;

/// `type` of the resource.
pub const KIND: &str = "Dataplane";
/// The service tag: required on an inbound that has tags, on every outbound
/// without a `backendRef`, and (before Kuma 2.14) on every inbound.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The protocol tag.
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";
/// Values Kuma accepts for `kuma.io/protocol` (compared without case).
pub const SUPPORTED_PROTOCOLS: [&str; 6] = ["http", "http2", "grpc", "tcp", "tls", "kafka"];
/// Kinds a `reachableBackends` ref or an outbound `backendRef` may name.
pub const BACKEND_KINDS: [&str; 3] = ["MeshService", "MeshExternalService", "MeshMultiZoneService"];
/// Removed in Kuma 2.9; a Dataplane that still sets it fails validation (`UPGRADE.md`).
pub const REMOVED_INBOUND_V6_FIELD: &str = "redirectPortInboundV6";

/// Fields this tool does not model, in the order they were written.
pub type Extra = IndexMap<String, Value>;

/// A Universal `Dataplane` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataplane {
    /// `type`; always `Dataplane` for a valid resource.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub mesh: Option<String>,
    #[serde(default, deserialize_with = "scalar_text")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub networking: Networking,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `networking`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// The address other proxies reach this one at (IP address or domain name).
    #[serde(
        default,
        deserialize_with = "scalar_text",
        skip_serializing_if = "String::is_empty"
    )]
    pub address: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub advertised_address: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inbound: Vec<Inbound>,
    /// Explicit outbounds (not used with the transparent proxy).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub outbound: Vec<Outbound>,
    /// A gateway Dataplane's `gateway` section; kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<TransparentProxying>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `networking.inbound[]` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inbound {
    /// The port the proxy listens on for this inbound (1..=65535 when valid).
    #[serde(default, deserialize_with = "inbound_port")]
    pub port: u32,
    /// The port the workload listens on; 0 = same as `port`.
    #[serde(
        default,
        deserialize_with = "service_port",
        skip_serializing_if = "is_zero"
    )]
    pub service_port: u32,
    /// The address the workload listens on (default: `networking.address`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_address: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<String>,
    /// Optional since Kuma 2.14; an inbound without tags is written without `tags`.
    #[serde(
        default,
        deserialize_with = "tag_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub tags: IndexMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `networking.outbound[]` entry: a local `address:port` that reaches
/// a service named by `tags` (or the deprecated `service`) or a `backendRef`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbound {
    #[serde(
        default,
        deserialize_with = "outbound_port",
        skip_serializing_if = "is_zero"
    )]
    pub port: u32,
    /// Default `127.0.0.1`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<String>,
    #[serde(
        default,
        deserialize_with = "tag_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub tags: IndexMap<String, String>,
    /// Deprecated form of `tags: {kuma.io/service: …}`.
    #[serde(
        default,
        deserialize_with = "scalar_text",
        skip_serializing_if = "String::is_empty"
    )]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendRef>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `networking.transparentProxying`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransparentProxying {
    /// 0 (or absent) means inbound transparent proxying is off.
    #[serde(
        default,
        deserialize_with = "redirect_port_inbound",
        skip_serializing_if = "is_zero"
    )]
    pub redirect_port_inbound: u32,
    /// 0 (or absent) means outbound transparent proxying is off.
    #[serde(
        default,
        deserialize_with = "redirect_port_outbound",
        skip_serializing_if = "is_zero"
    )]
    pub redirect_port_outbound: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_mode: Option<DataplaneIpFamily>,
    /// `kuma.io/service` values this proxy may reach (removed at Kuma HEAD,
    /// present through 2.14.x). Empty = not restricted.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reachable_services: Vec<String>,
    /// `None`: every backend is reachable; `Some` with no refs (`{}`): none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_backends: Option<ReachableBackends>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub direct_access_services: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `reachableBackends`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReachableBackends {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub refs: Vec<BackendRef>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One `reachableBackends.refs[]` entry, or an outbound's `backendRef`
/// (which has no `namespace`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BackendRef {
    #[serde(default, deserialize_with = "scalar_text")]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "scalar_text",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "scalar_text",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    #[serde(
        default,
        deserialize_with = "ref_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<u32>,
    #[serde(
        default,
        deserialize_with = "tag_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `transparentProxying.ipFamilyMode` (proto enum; names as Kuma writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataplaneIpFamily {
    UnSpecified,
    DualStack,
    IPv4,
    /// Reserved "for the future"; treated as not-IPv4 (IPv6 listeners are made).
    IPv6,
}

impl DataplaneIpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            DataplaneIpFamily::UnSpecified => "UnSpecified",
            DataplaneIpFamily::DualStack => "DualStack",
            DataplaneIpFamily::IPv4 => "IPv4",
            DataplaneIpFamily::IPv6 => "IPv6",
        }
    }

    /// Proto enum name (any case) or number.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unspecified" | "0" => Some(DataplaneIpFamily::UnSpecified),
            "dualstack" | "1" => Some(DataplaneIpFamily::DualStack),
            "ipv4" | "2" => Some(DataplaneIpFamily::IPv4),
            "ipv6" | "3" => Some(DataplaneIpFamily::IPv6),
            _ => None,
        }
    }

    /// What the control plane does with it: only `IPv4` turns IPv6 listeners off.
    pub fn effective(mode: Option<Self>) -> IpFamilyMode {
        match mode {
            Some(DataplaneIpFamily::IPv4) => IpFamilyMode::Ipv4,
            _ => IpFamilyMode::DualStack,
        }
    }
}

impl fmt::Display for DataplaneIpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DataplaneIpFamily {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DataplaneIpFamily {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let text = match &v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => shown(other),
        };
        DataplaneIpFamily::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid value '{text}' for ipFamilyMode: must be one of DualStack, IPv4, IPv6 or UnSpecified"
            ))
        })
    }
}

impl From<IpFamilyMode> for DataplaneIpFamily {
    fn from(m: IpFamilyMode) -> Self {
        match m {
            IpFamilyMode::DualStack => DataplaneIpFamily::DualStack,
            IpFamilyMode::Ipv4 => DataplaneIpFamily::IPv4,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A value as a person would read it in a message (empty for null).
fn shown(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => crate::config::value_text(other),
    }
}

/// `null` (an empty template variable) reads as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string field that also takes a YAML number or bool as text
/// (`name: 123` is the name "123"), and `null` as empty.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(de::Error::custom(format!(
            "expected a string, found '{}'",
            shown(&other)
        ))),
    }
}

/// A `string → string` map whose values may be written as YAML numbers or
/// bools (`version: 2`), as Kuma's YAML → JSON → proto decoding accepts.
fn tag_map<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    let raw: Option<IndexMap<String, Value>> = Option::deserialize(d)?;
    let mut out = IndexMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let text = match v {
            Value::Null => String::new(),
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(de::Error::custom(format!(
                    "value of '{k}' must be a string, found '{}'",
                    shown(&other)
                )));
            }
        };
        out.insert(k, text);
    }
    Ok(out)
}

fn number_from(field: &str, v: Value) -> Result<Option<u32>, String> {
    let bad = |text: String| {
        format!(
            "invalid value '{text}' for {field}: not a port number (an integer in the range [0, 65535])"
        )
    };
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_u64() {
            Some(u) if u <= u32::MAX as u64 => Ok(Some(u as u32)),
            _ => Err(bad(n.to_string())),
        },
        // protojson accepts uint32 values written as strings.
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s.trim().parse::<u32>().map(Some).map_err(|_| bad(s)),
        other => Err(bad(shown(&other))),
    }
}

/// uint32 fields: an integer or numeric string; `null` (an empty template
/// variable) is 0, which validation then reports for required ports. Each
/// field has its own function so that the error names it (serde_yaml's path
/// stops at the enclosing object because of the `extra` maps).
macro_rules! number_fields {
    ($($fn:ident => $field:literal),* $(,)?) => {$(
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
            number_from($field, Value::deserialize(d)?)
                .map(Option::unwrap_or_default)
                .map_err(de::Error::custom)
        }
    )*};
}

number_fields!(
    inbound_port => "port",
    outbound_port => "port",
    service_port => "servicePort",
    redirect_port_inbound => "redirectPortInbound",
    redirect_port_outbound => "redirectPortOutbound",
);

/// A `UInt32Value` (presence matters): `reachableBackends.refs[].port`.
fn ref_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    number_from("port", Value::deserialize(d)?).map_err(de::Error::custom)
}

impl Dataplane {
    /// Parses a Dataplane from YAML or JSON text. The error names the field
    /// and position serde_yaml found wrong.
    pub fn from_text(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// The effective mesh (`default` when the field is absent).
    pub fn mesh_name(&self) -> &str {
        self.mesh.as_deref().unwrap_or("default")
    }

    /// `networking.address` as an IP address, when it is one.
    pub fn address_ip(&self) -> Option<IpAddr> {
        self.networking.address.trim().parse().ok()
    }

    pub fn transparent_proxying(&self) -> Option<&TransparentProxying> {
        self.networking.transparent_proxying.as_ref()
    }

    /// The mesh services this Dataplane offers: one entry per inbound with a
    /// `kuma.io/service` tag (what `<service>.mesh` resolves to).
    pub fn services(&self) -> impl Iterator<Item = MeshEndpoint<'_>> {
        self.networking.inbound.iter().filter_map(|inbound| {
            Some(MeshEndpoint {
                service: inbound.service()?,
                address: inbound
                    .address
                    .as_deref()
                    .unwrap_or(&self.networking.address),
                port: u16::try_from(inbound.port).ok()?,
                inbound,
            })
        })
    }

    /// Checks the resource as Kuma 2.14's Dataplane validator and
    /// `kuma-dp run` would (reference §6.1, §6.3), as a Universal Dataplane:
    /// every problem is collected.
    pub fn validate(&self) -> Validation {
        self.validate_with(Rules::default())
    }

    /// [`Dataplane::validate`] with other [`Rules`].
    pub fn validate_with(&self, rules: Rules) -> Validation {
        validate::dataplane(self, rules)
    }
}

/// One mesh service offered by a Dataplane inbound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeshEndpoint<'a> {
    pub service: &'a str,
    /// The inbound's own address or the Dataplane's address.
    pub address: &'a str,
    pub port: u16,
    pub inbound: &'a Inbound,
}

impl Inbound {
    /// The `kuma.io/service` tag.
    pub fn service(&self) -> Option<&str> {
        self.tags.get(SERVICE_TAG).map(String::as_str)
    }

    /// The `kuma.io/protocol` tag.
    pub fn protocol(&self) -> Option<&str> {
        self.tags.get(PROTOCOL_TAG).map(String::as_str)
    }

    /// Port the workload listens on: `servicePort`, else `port`.
    pub fn workload_port(&self) -> u32 {
        if self.service_port != 0 {
            self.service_port
        } else {
            self.port
        }
    }
}

impl TransparentProxying {
    /// The section that matches an install configuration: the redirect ports
    /// of the enabled directions (0 = off, left out), and `ipFamilyMode: IPv4`
    /// only in ipv4 mode (absent means dual stack, as in Kuma's examples).
    pub fn from_config(cfg: &Config) -> Self {
        let port = |enabled: bool, port: u16| if enabled { u32::from(port) } else { 0 };
        TransparentProxying {
            redirect_port_inbound: port(cfg.redirect.inbound.enabled, cfg.redirect.inbound.port),
            redirect_port_outbound: port(cfg.redirect.outbound.enabled, cfg.redirect.outbound.port),
            ip_family_mode: match cfg.ip_family_mode {
                IpFamilyMode::Ipv4 => Some(DataplaneIpFamily::IPv4),
                IpFamilyMode::DualStack => None,
            },
            ..TransparentProxying::default()
        }
    }

    /// Replaces the redirect ports and ipFamilyMode with the configuration's,
    /// keeping reachable services/backends and everything else.
    pub fn apply_config(&mut self, cfg: &Config) {
        let from = TransparentProxying::from_config(cfg);
        self.redirect_port_inbound = from.redirect_port_inbound;
        self.redirect_port_outbound = from.redirect_port_outbound;
        self.ip_family_mode = match (self.ip_family_mode, from.ip_family_mode) {
            // Keep an explicit DualStack/UnSpecified/IPv6 when the rules are dual stack.
            (Some(m), None) if DataplaneIpFamily::effective(Some(m)) == IpFamilyMode::DualStack => {
                Some(m)
            }
            (_, want) => want,
        };
    }
}

/// Which rules [`Dataplane::validate_with`] applies; the default is Kuma
/// 2.14's for a Universal Dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    /// Also the rules of control planes before Kuma 2.14: at least one
    /// inbound (or a gateway), and `kuma.io/service` on every inbound and on
    /// every gateway.
    pub require_service_tag: bool,
    /// The reachable-backend refs are for a Kubernetes Pod annotation, where
    /// `namespace` exists. A Universal Dataplane's refs have none.
    pub kubernetes_refs: bool,
}

/// One thing wrong with a Dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path as Kuma writes it: `networking.inbound[0].tags["kuma.io/service"]`.
    pub field: String,
    /// The value found; `None` when the field is missing or empty.
    pub value: Option<String>,
    /// What is wrong and what is allowed.
    pub why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "invalid value '{v}' for {}: {}", self.field, self.why),
            None => write!(f, "{} is required: {}", self.field, self.why),
        }
    }
}

/// The outcome of [`Dataplane::validate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validation {
    pub errors: Vec<Violation>,
    /// Valid but probably not what was meant.
    pub warnings: Vec<String>,
}

impl Validation {
    fn bad(&mut self, field: impl Into<String>, value: impl Into<String>, why: impl Into<String>) {
        self.errors.push(Violation {
            field: field.into(),
            value: Some(value.into()),
            why: why.into(),
        });
    }

    fn missing(&mut self, field: impl Into<String>, why: impl Into<String>) {
        self.errors.push(Violation {
            field: field.into(),
            value: None,
            why: why.into(),
        });
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Where a Dataplane's `transparentProxying` disagrees with the configuration
/// the rules were (or would be) made from: one human-readable line per
/// difference, empty when they agree. Pure; `generate dataplane --check` and
/// `status` use it.
pub fn compare_transparent_proxying(dp: &Dataplane, cfg: &Config) -> Vec<String> {
    let mut out = compare_section(dp.transparent_proxying(), cfg);
    if cfg.ip_family_mode == IpFamilyMode::Ipv4
        && let Some(IpAddr::V6(a)) = dp.address_ip()
    {
        out.push(format!(
            "networking.address {a} is IPv6, but the rules are ipv4 only: the control plane turns \
             transparent proxying off for this Dataplane"
        ));
    }
    out
}

/// [`compare_transparent_proxying`] for the section alone (redirect ports and
/// ipFamilyMode; `None` is a Dataplane without the section).
pub fn compare_section(tp: Option<&TransparentProxying>, cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let want = TransparentProxying::from_config(cfg);
    let Some(tp) = tp else {
        if want.redirect_port_inbound != 0 || want.redirect_port_outbound != 0 {
            out.push(format!(
                "networking.transparentProxying is missing, but the rules redirect {}: kuma-dp will not listen there",
                describe_redirects(&want)
            ));
        }
        return out;
    };
    for (field, dir, have, want) in [
        (
            "redirectPortInbound",
            "inbound",
            tp.redirect_port_inbound,
            want.redirect_port_inbound,
        ),
        (
            "redirectPortOutbound",
            "outbound",
            tp.redirect_port_outbound,
            want.redirect_port_outbound,
        ),
    ] {
        if have == want {
            continue;
        }
        let line = match (have, want) {
            (0, w) => format!(
                "networking.transparentProxying.{field} is not set ({dir} transparent proxying off), \
                 but the rules redirect {dir} TCP to port {w}"
            ),
            (h, 0) => format!(
                "networking.transparentProxying.{field} is {h}, but {dir} redirection is off in the rules \
                 (expected 0 or no {field})"
            ),
            (h, w) => format!(
                "networking.transparentProxying.{field} is {h}, but the rules redirect {dir} TCP to port {w}"
            ),
        };
        out.push(line);
    }
    let have_mode = DataplaneIpFamily::effective(tp.ip_family_mode);
    if have_mode != cfg.ip_family_mode {
        let shown_mode = tp
            .ip_family_mode
            .map(|m| m.to_string())
            .unwrap_or_else(|| "not set (dual stack)".to_string());
        out.push(match cfg.ip_family_mode {
            IpFamilyMode::DualStack => format!(
                "networking.transparentProxying.ipFamilyMode is {shown_mode}, but the rules are dualstack: \
                 IPv6 traffic is redirected to ports no IPv6 listener serves (remove ipFamilyMode or set DualStack)"
            ),
            IpFamilyMode::Ipv4 => format!(
                "networking.transparentProxying.ipFamilyMode is {shown_mode}, but the rules are ipv4 only \
                 (set ipFamilyMode: IPv4)"
            ),
        });
    }
    out
}

fn describe_redirects(tp: &TransparentProxying) -> String {
    let mut parts = Vec::new();
    if tp.redirect_port_inbound != 0 {
        parts.push(format!("inbound TCP to port {}", tp.redirect_port_inbound));
    }
    if tp.redirect_port_outbound != 0 {
        parts.push(format!(
            "outbound TCP to port {}",
            tp.redirect_port_outbound
        ));
    }
    parts.join(" and ")
}

/// Reads a Dataplane file (YAML or JSON; `-` is stdin).
fn read_text(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading the Dataplane from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("reading Dataplane file {}", path.display()))
}

/// Reads and parses a file holding one Dataplane (YAML or JSON; `-` is stdin).
pub fn load(path: &Path) -> anyhow::Result<Dataplane> {
    let text = read_text(path)?;
    Dataplane::from_text(&text)
        .with_context(|| format!("{} is not a Dataplane resource", path.display()))
}

/// Reads and parses a file holding any number of Dataplanes (see
/// [`parse_stream`]; `-` is stdin).
pub fn load_stream(path: &Path) -> anyhow::Result<Vec<Document>> {
    let text = read_text(path)?;
    parse_stream(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// One Dataplane of a stream and where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub dp: Dataplane,
    /// 1-based number of the YAML document.
    pub document: usize,
    /// 1-based line where that document starts.
    pub line: usize,
    /// 1-based position in a list (a JSON array, `items:`), if it was in one.
    pub item: Option<usize>,
}

impl Document {
    /// `document 2 (line 14)`, `document 1, item 3`.
    pub fn position(&self) -> String {
        match self.item {
            Some(i) => format!("document {}, item {i}", self.document),
            None => format!("document {} (line {})", self.document, self.line),
        }
    }
}

/// The text of each YAML document of `text` with its 1-based first line.
/// Documents are separated by a `---` line (a `---` followed by a space may
/// carry content, which starts the next document); empty documents and
/// documents of comments only are left out. Splitting the text, as
/// `kumactl apply` does, lets each template document be rendered on its own
/// and keeps error positions relative to the document.
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let marker = line
            .strip_prefix("---")
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        let Some(rest) = marker else {
            current.push_str(line);
            current.push('\n');
            continue;
        };
        docs.push((start, std::mem::take(&mut current)));
        // The next document starts on the marker line when the marker
        // carries content, else on the line after it (lines are 1-based).
        let rest = rest.trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            start = i + 1;
            current.push_str(rest);
            current.push('\n');
        } else {
            start = i + 2;
        }
    }
    docs.push((start, current));
    docs.retain(|(_, d)| !is_blank_yaml(d));
    docs
}

/// Only blank lines and comments.
fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Every Dataplane of a file: a YAML stream (documents separated by `---`),
/// a JSON array of Dataplanes (what `generate dataplane -o json` prints for
/// several), or a list as `kumactl get dataplanes -o yaml|json` prints it
/// (`items: [...]`). Errors name the document (and item) and the field.
pub fn parse_stream(text: &str) -> Result<Vec<Document>, String> {
    let docs = split_documents(text);
    let several = docs.len() > 1;
    let mut out = Vec::new();
    for (n, (line, doc)) in docs.iter().enumerate() {
        let document = n + 1;
        let at = |e: &dyn fmt::Display| {
            if several {
                format!("document {document} (line {line}): {e}")
            } else {
                e.to_string()
            }
        };
        let value: Value = serde_yaml::from_str(doc).map_err(|e| at(&e))?;
        let items = match &value {
            Value::Sequence(items) => Some(items),
            Value::Mapping(m) if m.get("type").is_none() => match m.get("items") {
                Some(Value::Sequence(items)) => Some(items),
                _ => None,
            },
            _ => None,
        };
        let Some(items) = items else {
            // One Dataplane, from the value already parsed; on an error the
            // text is parsed again so that the message has its position.
            let dp = Dataplane::deserialize(value)
                .or_else(|_| Dataplane::from_text(doc))
                .map_err(|e| at(&e))?;
            out.push(Document {
                dp,
                document,
                line: *line,
                item: None,
            });
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            // On an error, through text, so that the message has the field path.
            let dp = Dataplane::deserialize(item)
                .or_else(|_| serde_yaml::to_string(item).and_then(|t| Dataplane::from_text(&t)))
                .map_err(|e| format!("document {document}, item {}: {e}", i + 1))?;
            out.push(Document {
                dp,
                document,
                line: *line,
                item: Some(i + 1),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_003: &str = "\
type: Dataplane
mesh: default
name: demo-app
networking:
  address: 10.119.249.39
  inbound:
    - port: 15000
      servicePort: 5000
      serviceAddress: 127.0.0.1
      tags:
        kuma.io/service: app
        kuma.io/protocol: http
";

    #[test]
    fn parses_a_universal_dataplane_into_typed_values() {
        let dp = Dataplane::from_text(SEED_003).unwrap();
        assert_eq!(dp.kind.as_deref(), Some("Dataplane"));
        assert_eq!(dp.mesh_name(), "default");
        assert_eq!(dp.name, "demo-app");
        assert_eq!(dp.address_ip(), Some("10.119.249.39".parse().unwrap()));
        let i = &dp.networking.inbound[0];
        assert_eq!(
            (i.port, i.service_port, i.workload_port()),
            (15000, 5000, 5000)
        );
        assert_eq!(i.service_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(i.service(), Some("app"));
        assert_eq!(i.protocol(), Some("http"));
        // Tag order is the author's.
        assert_eq!(
            i.tags.keys().collect::<Vec<_>>(),
            vec!["kuma.io/service", "kuma.io/protocol"]
        );
        let eps: Vec<_> = dp.services().collect();
        assert_eq!(eps.len(), 1);
        assert_eq!(
            (eps[0].service, eps[0].address, eps[0].port),
            ("app", "10.119.249.39", 15000)
        );
        assert!(dp.transparent_proxying().is_none());
        assert!(dp.validate().is_ok(), "{:?}", dp.validate());
    }

    #[test]
    fn unknown_fields_are_kept_in_order() {
        let text = "\
type: Dataplane
mesh: default
name: dp
metrics:
  type: prometheus
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
    health:
      ready: true
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    futureField: x
";
        let dp = Dataplane::from_text(text).unwrap();
        assert!(dp.extra.contains_key("metrics"));
        assert!(dp.networking.inbound[0].extra.contains_key("health"));
        let tp = dp.transparent_proxying().unwrap();
        assert_eq!(tp.extra.get("futureField"), Some(&Value::from("x")));
        let again = Dataplane::from_text(&serde_yaml::to_string(&dp).unwrap()).unwrap();
        assert_eq!(again, dp);
    }

    #[test]
    fn empty_template_values_parse_as_missing_and_fail_validation() {
        let dp = Dataplane::from_text(
            "type: Dataplane\nmesh: default\nname:\nnetworking:\n  address:\n  inbound:\n  - port:\n    tags:\n      kuma.io/service: a\n",
        )
        .unwrap();
        let fields: Vec<_> = dp.validate().errors.into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec!["name", "networking.address", "networking.inbound[0].port"]
        );
    }

    #[test]
    fn numbers_may_be_strings_as_protojson_allows() {
        let dp = Dataplane::from_text(
            "networking:\n  inbound:\n  - port: \"8080\"\n  transparentProxying:\n    redirectPortInbound: '15006'\n",
        )
        .unwrap();
        assert_eq!(dp.networking.inbound[0].port, 8080);
        assert_eq!(
            dp.transparent_proxying().unwrap().redirect_port_inbound,
            15006
        );
        let err = Dataplane::from_text("networking:\n  inbound:\n  - port: eighty\n").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "networking.inbound[0]: invalid value 'eighty' for port: not a port number"
            ),
            "{err}"
        );
    }

    #[test]
    fn ip_family_mode_names_numbers_and_case() {
        for (text, want) in [
            ("DualStack", DataplaneIpFamily::DualStack),
            ("ipv4", DataplaneIpFamily::IPv4),
            ("2", DataplaneIpFamily::IPv4),
            ("IPv6", DataplaneIpFamily::IPv6),
            ("UnSpecified", DataplaneIpFamily::UnSpecified),
        ] {
            let dp = Dataplane::from_text(&format!(
                "networking:\n  transparentProxying:\n    ipFamilyMode: {text}\n"
            ))
            .unwrap();
            assert_eq!(
                dp.transparent_proxying().unwrap().ip_family_mode,
                Some(want)
            );
        }
        let err =
            Dataplane::from_text("networking:\n  transparentProxying:\n    ipFamilyMode: v6\n")
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid value 'v6' for ipFamilyMode"),
            "{err}"
        );
    }

    fn valid() -> Dataplane {
        Dataplane::from_text(SEED_003).unwrap()
    }

    fn errors(dp: &Dataplane) -> Vec<String> {
        dp.validate()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn validation_names_field_value_and_rule() {
        let mut dp = valid();
        dp.networking.address = "::".into();
        assert_eq!(
            errors(&dp),
            vec![
                "invalid value '::' for networking.address: must not be 0.0.0.0 or ::; use the \
                 address other data plane proxies reach this one at"
            ]
        );
        // Kuma 2.14: an inbound with tags needs the service tag among them...
        let mut dp = valid();
        dp.networking.inbound[0].tags.shift_remove(SERVICE_TAG);
        assert_eq!(
            errors(&dp),
            vec![
                "networking.inbound[0].tags[\"kuma.io/service\"] is required: tag has to exist: an \
                 inbound with tags needs kuma.io/service among them (since Kuma 2.14 an inbound \
                 without any tags is valid)"
            ]
        );
        // ... an inbound without tags, or no inbound at all, is valid ...
        dp.networking.inbound[0].tags.clear();
        assert!(dp.validate().is_ok(), "{:?}", dp.validate());
        let mut outbound_only = dp.clone();
        outbound_only.networking.inbound.clear();
        assert!(outbound_only.validate().is_ok());
        // ... but not for control planes before 2.14.
        let before = Rules {
            require_service_tag: true,
            ..Rules::default()
        };
        let fields = |dp: &Dataplane| -> Vec<String> {
            dp.validate_with(before)
                .errors
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(
            fields(&dp),
            vec!["networking.inbound[0].tags[\"kuma.io/service\"]"]
        );
        assert_eq!(fields(&outbound_only), vec!["networking.inbound"]);
        let mut dp = valid();
        dp.networking.inbound[0].port = 70000;
        dp.networking.inbound[0]
            .tags
            .insert(PROTOCOL_TAG.into(), "smtp".into());
        assert_eq!(
            errors(&dp),
            vec![
                "invalid value '70000' for networking.inbound[0].port: port must be in the range [1, 65535]",
                "invalid value 'smtp' for networking.inbound[0].tags[\"kuma.io/protocol\"]: must be one \
                 of http, http2, grpc, tcp, tls, kafka",
            ]
        );
        let mut dp = valid();
        dp.networking.inbound[0].service_address = Some("10.119.249.39".into());
        dp.networking.inbound[0].service_port = 0;
        assert!(errors(&dp)[0].contains("serviceAddress and servicePort have to differ"));
        let mut dp = valid();
        dp.name = "Demo App".into();
        dp.mesh = None;
        assert_eq!(
            errors(&dp),
            vec![
                "mesh is required: kuma-dp needs the mesh the Dataplane belongs to",
                "invalid value 'Demo App' for name: must be lowercase letters, digits, '-', '_' or \
                 '.' (at most 253 characters)",
            ]
        );
    }

    #[test]
    fn removed_inbound_v6_port_is_rejected() {
        let mut dp = valid();
        dp.networking.transparent_proxying = Some(
            serde_yaml::from_str("redirectPortInbound: 15006\nredirectPortInboundV6: 15010\n")
                .unwrap(),
        );
        assert_eq!(
            errors(&dp),
            vec![
                "invalid value '15010' for networking.transparentProxying.redirectPortInboundV6: was \
                 removed in Kuma 2.9 (IPv6 uses redirectPortInbound); delete the field"
            ]
        );
    }

    fn with_refs(refs: &str) -> Dataplane {
        let mut dp = valid();
        dp.networking.transparent_proxying =
            Some(serde_yaml::from_str(&format!("reachableBackends:\n  refs:\n{refs}")).unwrap());
        dp
    }

    #[test]
    fn reachable_backend_refs_follow_kumas_rules() {
        let ok = with_refs(
            "  - kind: MeshService\n    name: redis\n    port: 6379\n  - kind: MeshMultiZoneService\n    labels:\n      kuma.io/display-name: test-server\n",
        );
        assert!(ok.validate().is_ok(), "{:?}", ok.validate());
        let at = "networking.transparentProxying.reachableBackends.refs[0]";
        for (refs, want) in [
            (
                "  - kind: Service\n    name: redis\n",
                format!(
                    "invalid value 'Service' for {at}.kind: must be one of MeshService, MeshExternalService, MeshMultiZoneService"
                ),
            ),
            // Kuma reports a missing name at the leaf.
            (
                "  - kind: MeshService\n",
                format!("{at}.name is required: name or labels are required"),
            ),
            (
                "  - kind: MeshService\n    namespace: ns\n    labels:\n      a: b\n",
                format!("{at}.name is required: name is required when namespace is defined"),
            ),
            (
                "  - kind: MeshService\n    name: redis\n    labels:\n      a: b\n",
                format!(
                    "invalid value 'name=redis' for {at}.labels: labels cannot be defined when name or namespace is specified"
                ),
            ),
            (
                "  - kind: MeshService\n    name: redis_db\n",
                format!(
                    "invalid value 'redis_db' for {at}.name: must be a lowercase RFC 1123 subdomain"
                ),
            ),
            (
                "  - kind: MeshService\n    name: redis\n    port: 0\n",
                format!("invalid value '0' for {at}.port: port must be in the range [1, 65535]"),
            ),
            // Universal Dataplanes have no namespaces (the forwarder relies on this).
            (
                "  - kind: MeshService\n    name: redis\n    namespace: kuma-demo\n",
                format!(
                    "invalid value 'kuma-demo' for {at}.namespace: a Universal Dataplane's refs have no namespace"
                ),
            ),
        ] {
            let got = errors(&with_refs(refs));
            assert!(got.iter().any(|g| g.starts_with(&want)), "{refs}: {got:?}");
        }
        // A Pod annotation may name a namespace.
        let k8s = with_refs("  - kind: MeshService\n    name: redis\n    namespace: kuma-demo\n");
        let rules = Rules {
            kubernetes_refs: true,
            ..Rules::default()
        };
        assert!(k8s.validate_with(rules).is_ok());
    }

    #[test]
    fn empty_reachable_backends_is_kept_apart_from_absent() {
        let dp = Dataplane::from_text(
            "networking:\n  transparentProxying:\n    reachableBackends: {}\n",
        )
        .unwrap();
        let rb = dp
            .transparent_proxying()
            .unwrap()
            .reachable_backends
            .as_ref();
        assert_eq!(rb.map(|r| r.refs.len()), Some(0));
        let text = serde_yaml::to_string(&dp).unwrap();
        assert!(text.contains("reachableBackends: {}"), "{text}");
    }

    fn tp_dp(tp: &str) -> Dataplane {
        let mut dp = valid();
        dp.networking.transparent_proxying = Some(serde_yaml::from_str(tp).unwrap());
        dp
    }

    #[test]
    fn comparison_with_the_configuration() {
        let cfg = Config::default();
        assert!(
            compare_transparent_proxying(
                &tp_dp("redirectPortInbound: 15006\nredirectPortOutbound: 15001\n"),
                &cfg
            )
            .is_empty()
        );
        // An explicit DualStack or UnSpecified is the same as none.
        assert!(
            compare_transparent_proxying(
                &tp_dp("redirectPortInbound: 15006\nredirectPortOutbound: 15001\nipFamilyMode: DualStack\n"),
                &cfg
            )
            .is_empty()
        );
        let diffs = compare_transparent_proxying(
            &tp_dp("redirectPortInbound: 15007\nipFamilyMode: IPv4\n"),
            &cfg,
        );
        assert_eq!(diffs.len(), 3, "{diffs:?}");
        assert!(diffs[0].contains(
            "redirectPortInbound is 15007, but the rules redirect inbound TCP to port 15006"
        ));
        assert!(diffs[1].contains("redirectPortOutbound is not set"));
        assert!(diffs[2].contains("ipFamilyMode is IPv4, but the rules are dualstack"));

        let mut v4 = Config {
            ip_family_mode: IpFamilyMode::Ipv4,
            ..Config::default()
        };
        v4.redirect.inbound.enabled = false;
        let diffs = compare_transparent_proxying(
            &tp_dp("redirectPortInbound: 15006\nredirectPortOutbound: 15001\n"),
            &v4,
        );
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert!(diffs[0].contains("inbound redirection is off in the rules"));
        assert!(diffs[1].contains("not set (dual stack), but the rules are ipv4 only"));

        let diffs = compare_transparent_proxying(&valid(), &cfg);
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].starts_with("networking.transparentProxying is missing"));
    }

    #[test]
    fn documents_split_at_marker_lines() {
        let text =
            "---\n# only a comment\n---\na: 1\n---a: not a marker\n--- # c\n\nb: 2\n--- c: 3\n";
        assert_eq!(
            split_documents(text),
            vec![
                (4, "a: 1\n---a: not a marker\n".to_string()),
                (7, "\nb: 2\n".to_string()),
                (9, "c: 3\n".to_string()),
            ]
        );
        assert!(split_documents("").is_empty());
        assert!(split_documents("# x\n---\n\n").is_empty());
    }

    #[test]
    fn streams_arrays_and_lists_of_dataplanes() {
        let one = |name: &str| {
            format!(
                "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 10.0.0.1\n"
            )
        };
        let stream = format!("{}---\n{}", one("a"), one("b"));
        let docs = parse_stream(&stream).unwrap();
        assert_eq!(
            docs.iter()
                .map(|d| (d.dp.name.as_str(), d.position()))
                .collect::<Vec<_>>(),
            vec![
                ("a", "document 1 (line 1)".to_string()),
                ("b", "document 2 (line 7)".to_string())
            ]
        );
        let array = serde_json::to_string(&[
            Dataplane::from_text(&one("a")).unwrap(),
            Dataplane::from_text(&one("b")).unwrap(),
        ])
        .unwrap();
        let docs = parse_stream(&array).unwrap();
        assert_eq!(docs[1].dp.name, "b");
        assert_eq!(docs[1].position(), "document 1, item 2");
        let list = parse_stream("items:\n- type: Dataplane\n  name: x\ntotal: 1\n").unwrap();
        assert_eq!(list[0].dp.name, "x");
        // Errors name the document and the field.
        let err = parse_stream(&format!(
            "{}---\nnetworking:\n  inbound:\n  - port: eighty\n",
            one("a")
        ))
        .unwrap_err();
        assert!(
            err.starts_with("document 2 (line 7): networking.inbound[0]: invalid value 'eighty'"),
            "{err}"
        );
        assert!(parse_stream("# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn section_from_config() {
        let mut cfg = Config::default();
        let tp = TransparentProxying::from_config(&cfg);
        assert_eq!(
            (tp.redirect_port_inbound, tp.redirect_port_outbound),
            (15006, 15001)
        );
        assert_eq!(tp.ip_family_mode, None);
        cfg.redirect.inbound.enabled = false;
        cfg.ip_family_mode = IpFamilyMode::Ipv4;
        let tp = TransparentProxying::from_config(&cfg);
        assert_eq!(tp.redirect_port_inbound, 0);
        assert_eq!(tp.ip_family_mode, Some(DataplaneIpFamily::IPv4));

        let mut kept = TransparentProxying {
            ip_family_mode: Some(DataplaneIpFamily::DualStack),
            reachable_services: vec!["a".into()],
            ..Default::default()
        };
        kept.apply_config(&Config::default());
        assert_eq!(kept.ip_family_mode, Some(DataplaneIpFamily::DualStack));
        assert_eq!(kept.redirect_port_inbound, 15006);
        assert_eq!(kept.reachable_services, vec!["a".to_string()]);
    }
}
