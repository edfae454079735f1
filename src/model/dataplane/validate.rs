//! Kuma 2.14's Dataplane validation over the typed [`Dataplane`]: the rules
//! of `pkg/core/resources/apis/mesh/dataplane_validator.go` (networking,
//! inbounds, outbounds, admin port, service probes, probes, gateways,
//! reachable backends) with the field paths Kuma reports, plus the name and
//! mesh checks kuma-dp makes before it sends the Dataplane. Every problem is
//! collected; nothing stops at the first.
//!
//! Since Kuma 2.14 (MeshService) an inbound without tags is valid (an inbound
//! *with* tags still needs `kuma.io/service` among them) and a Dataplane needs
//! no inbound at all (an outbound-only client); [`Rules::require_service_tag`]
//! brings back the older rules for older control planes.
//!
//! Where this goes beyond Kuma, on purpose: a Universal Dataplane's
//! reachable-backend refs have no `namespace` (namespaces exist on
//! Kubernetes only; the forwarder refuses them for the same reason), a ref's
//! `port` must be a port, the admin port must be a port, and an outbound
//! `backendRef` has no `namespace` (Kuma's proto has no such field). Kuma
//! spells the section `transparentProxing` in its paths (a typo); we name the
//! real field, `transparentProxying`. Not checked: `metrics` (kept as
//! written).

use std::net::{IpAddr, Ipv4Addr};

use indexmap::IndexMap;
use serde_yaml::Value;

use super::{
    BACKEND_KINDS, BackendRef, Dataplane, Inbound, Networking, Outbound, PROTOCOL_TAG,
    REMOVED_INBOUND_V6_FIELD, Rules, SERVICE_TAG, SUPPORTED_PROTOCOLS, TransparentProxying,
    Validation, shown,
};

/// Kind whose port an outbound `backendRef` does not need (it comes from
/// the MeshExternalService's endpoints).
const MESH_EXTERNAL_SERVICE: &str = "MeshExternalService";

const PORT_RULE: &str = "port must be in the range [1, 65535]";

/// Kuma's rule for Universal resource names (the backwards-compatible form
/// kuma-dp and kumactl check): lowercase letters, digits, `-`, `_` and `.`.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

const IDENTIFIER_RULE: &str =
    "must be lowercase letters, digits, '-', '_' or '.' (at most 253 characters)";

/// A lowercase RFC 1123 subdomain (Kuma's `identifierRegexp`, which
/// reachable-backend names must match): dot-separated labels of lowercase
/// letters, digits and `-`, each starting and ending with a letter or digit.
fn is_rfc1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

const RFC1123_RULE: &str = "must be a lowercase RFC 1123 subdomain: lowercase letters, digits, \
     '-' and '.', starting and ending with a letter or digit (at most 253 characters)";

/// Kuma's tag name character set: letters, digits, `.`, `-`, `_`, `:`, `/`.
fn is_tag_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/'))
}

/// Kuma's tag value character set: letters, digits, `.`, `-`, `_`, `:`.
fn is_tag_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// An RFC 1123 host name (labels of letters, digits and `-`).
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_ip(s: &str) -> bool {
    s.trim().parse::<IpAddr>().is_ok()
}

/// Kuma's `overlap`: two addresses meet when either is unspecified
/// (`0.0.0.0`, `::`) or they are equal; a domain name meets nothing.
fn overlaps(a: IpAddr, text: &str) -> bool {
    match text.trim().parse::<IpAddr>() {
        Ok(b) => a.is_unspecified() || b.is_unspecified() || a.to_canonical() == b.to_canonical(),
        Err(_) => false,
    }
}

/// A uint32 written as a number or (protojson) a numeric string.
fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Every rule, in the order Kuma reports them.
pub(super) fn dataplane(dp: &Dataplane, rules: Rules) -> Validation {
    let mut v = Validation::default();
    meta(dp, &mut v);
    let n = &dp.networking;
    admin(n, &mut v);
    let gateway = gateway_kind(n, &mut v);
    match gateway {
        Some(kind) => gateway_rules(dp, kind, rules, &mut v),
        None if rules.require_service_tag && n.inbound.is_empty() => v.missing(
            "networking.inbound",
            "has to contain at least one inbound interface or gateway (control planes before Kuma \
             2.14; 2.14 accepts an outbound-only Dataplane)",
        ),
        None => {}
    }
    networking(n, rules, &mut v);
    if gateway != Some(GatewayKind::Builtin) {
        probes(dp.extra.get("probes"), &mut v);
    }
    if n.inbound.is_empty()
        && n.outbound.is_empty()
        && n.gateway.is_none()
        && n.transparent_proxying.is_none()
    {
        v.warnings.push(
            "the Dataplane has no inbound, outbound, gateway or transparentProxying section: it \
             takes part in no mesh traffic"
                .to_string(),
        );
    }
    v
}

fn meta(dp: &Dataplane, v: &mut Validation) {
    match dp.kind.as_deref() {
        Some(super::KIND) => {}
        None => v.missing("type", "must be 'Dataplane'"),
        Some(other) => v.bad("type", other, "must be 'Dataplane'"),
    }
    match dp.mesh.as_deref() {
        None | Some("") => v.missing("mesh", "kuma-dp needs the mesh the Dataplane belongs to"),
        Some(m) if !is_identifier(m) => v.bad("mesh", m, IDENTIFIER_RULE),
        Some(_) => {}
    }
    if dp.name.is_empty() {
        v.missing("name", "kuma-dp needs the Dataplane's name");
    } else if !is_identifier(&dp.name) {
        v.bad("name", &dp.name, IDENTIFIER_RULE);
    }
}

/// `networking.admin.port` (Envoy's admin listener on 127.0.0.1) must not be
/// a port an inbound or outbound uses on that address.
fn admin(n: &Networking, v: &mut Validation) {
    let at = "networking.admin.port";
    let Some(raw) = n.extra.get("admin").and_then(|a| a.get("port")) else {
        return;
    };
    if raw.is_null() {
        return;
    }
    let port = match uint(raw) {
        Some(0) => return, // 0: the default admin port
        Some(p) if p <= 65535 => p as u32,
        _ => return v.bad(at, shown(raw), PORT_RULE),
    };
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let inbound_clash = n.inbound.iter().any(|i| {
        let dataplane_ip = i.address.as_deref().unwrap_or(&n.address);
        let workload_ip = i.service_address.as_deref().unwrap_or(dataplane_ip);
        (i.port == port && overlaps(lo, dataplane_ip))
            || (i.workload_port() == port && overlaps(lo, workload_ip))
    });
    if inbound_clash {
        v.bad(
            at,
            port.to_string(),
            "must differ from inbound (an inbound uses this port on 127.0.0.1, where the admin \
             listener is)",
        );
    }
    let outbound_clash = n
        .outbound
        .iter()
        .any(|o| o.port == port && overlaps(lo, o.address.as_deref().unwrap_or("127.0.0.1")));
    if outbound_clash {
        v.bad(
            at,
            port.to_string(),
            "must differ from outbound (an outbound listens on this port on 127.0.0.1, where the \
             admin listener is)",
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatewayKind {
    Delegated,
    Builtin,
}

impl GatewayKind {
    fn name(self) -> &'static str {
        match self {
            GatewayKind::Delegated => "delegated",
            GatewayKind::Builtin => "builtin",
        }
    }
}

/// The `networking.gateway.type` (proto enum `DELEGATED` = 0, `BUILTIN` = 1).
fn gateway_kind(n: &Networking, v: &mut Validation) -> Option<GatewayKind> {
    let gw = n.gateway.as_ref().filter(|g| !g.is_null())?;
    Some(match gw.get("type") {
        None | Some(Value::Null) => GatewayKind::Delegated,
        Some(t) => match shown(t).as_str() {
            "DELEGATED" | "0" => GatewayKind::Delegated,
            "BUILTIN" | "1" => GatewayKind::Builtin,
            other => {
                v.bad(
                    "networking.gateway.type",
                    other,
                    "must be DELEGATED or BUILTIN",
                );
                GatewayKind::Delegated
            }
        },
    })
}

fn gateway_rules(dp: &Dataplane, kind: GatewayKind, rules: Rules, v: &mut Validation) {
    let n = &dp.networking;
    if !n.inbound.is_empty() {
        v.bad(
            "networking.inbound",
            format!("{} inbound(s)", n.inbound.len()),
            format!("inbound cannot be defined for {} gateways", kind.name()),
        );
    }
    if kind == GatewayKind::Builtin {
        if !n.outbound.is_empty() {
            v.bad(
                "networking.outbound",
                format!("{} outbound(s)", n.outbound.len()),
                "outbound cannot be defined for builtin gateways",
            );
        }
        if dp.extra.contains_key("probes") {
            v.bad(
                "networking.probes",
                "(set)",
                "probes cannot be defined for builtin gateways",
            );
        }
    }
    let at = "networking.gateway.tags";
    let tags = match n.gateway.as_ref().and_then(|g| g.get("tags")) {
        None | Some(Value::Null) => IndexMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, val)| (shown(k), shown(val)))
            .collect::<IndexMap<_, _>>(),
        Some(other) => return v.bad(at, shown(other), "must be a map of tags"),
    };
    // Kuma 2.14 (since the backport of #17610): only a gateway with tags needs
    // the service tag among them.
    if (rules.require_service_tag || !tags.is_empty()) && !tags.contains_key(SERVICE_TAG) {
        v.missing(at, format!("mandatory tag \"{SERVICE_TAG}\" is missing"));
    }
    tag_set(at, &tags, Protocols::TcpOnly, v);
}

fn networking(n: &Networking, rules: Rules, v: &mut Validation) {
    let address = n.address.trim();
    if address.is_empty() {
        v.missing(
            "networking.address",
            "the IP address (or domain name) other data plane proxies reach this one at",
        );
    } else {
        match address.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => v.bad(
                "networking.address",
                address,
                "must not be 0.0.0.0 or ::; use the address other data plane proxies reach this one at",
            ),
            Ok(_) => {}
            Err(_) if is_hostname(address) => {}
            Err(_) => v.bad(
                "networking.address",
                address,
                "must be an IP address or a domain name",
            ),
        }
    }
    for (i, inbound) in n.inbound.iter().enumerate() {
        self::inbound(i, inbound, address, rules, v);
    }
    for (i, o) in n.outbound.iter().enumerate() {
        outbound(i, o, v);
    }
    if let Some(tp) = &n.transparent_proxying {
        transparent_proxying(tp, rules, v);
        if !n.outbound.is_empty() {
            v.warnings.push(
                "networking.outbound is set although transparentProxying is: with the transparent \
                 proxy the outbound section is left out"
                    .to_string(),
            );
        }
    }
}

fn inbound(i: usize, inbound: &Inbound, dp_address: &str, rules: Rules, v: &mut Validation) {
    let at = |f: &str| format!("networking.inbound[{i}].{f}");
    if inbound.port == 0 {
        v.missing(at("port"), "an integer in the range [1, 65535]");
    } else if inbound.port > 65535 {
        v.bad(at("port"), inbound.port.to_string(), PORT_RULE);
    }
    if inbound.service_port > 65535 {
        v.bad(
            at("servicePort"),
            inbound.service_port.to_string(),
            PORT_RULE,
        );
    }
    // serviceAddress:servicePort is where the proxy delivers; it must not be
    // the inbound's own address:port (the proxy would deliver to itself).
    let same_port = inbound.service_port == 0 || inbound.service_port == inbound.port;
    let service_address = inbound.service_address.as_deref().map(str::trim);
    let address = inbound.address.as_deref().map(str::trim);
    if let Some(sa) = service_address {
        if !is_ip(sa) {
            v.bad(at("serviceAddress"), sa, "must be an IP address");
        } else if sa == dp_address && same_port {
            v.bad(
                at("serviceAddress"),
                sa,
                "serviceAddress and servicePort have to differ from networking.address and port",
            );
        } else if address == Some(sa) && same_port {
            v.bad(
                at("serviceAddress"),
                sa,
                "serviceAddress and servicePort have to differ from the inbound's address and port",
            );
        }
    }
    if let Some(a) = address
        && !is_ip(a)
    {
        v.bad(at("address"), a, "must be an IP address");
    }
    if (rules.require_service_tag || !inbound.tags.is_empty())
        && !inbound.tags.contains_key(SERVICE_TAG)
    {
        let why = if rules.require_service_tag {
            "tag has to exist: every inbound needs the kuma.io/service tag (control planes before \
             Kuma 2.14)"
        } else {
            "tag has to exist: an inbound with tags needs kuma.io/service among them (since Kuma \
             2.14 an inbound without any tags is valid)"
        };
        v.missing(at(&format!("tags[\"{SERVICE_TAG}\"]")), why);
    }
    tag_set(&at("tags"), &inbound.tags, Protocols::Supported, v);
    service_probe(&at("serviceProbe"), inbound.extra.get("serviceProbe"), v);
}

fn outbound(i: usize, o: &Outbound, v: &mut Validation) {
    let at = |f: &str| format!("networking.outbound[{i}].{f}");
    if o.port == 0 {
        v.missing(at("port"), PORT_RULE);
    } else if o.port > 65535 {
        v.bad(at("port"), o.port.to_string(), PORT_RULE);
    }
    if let Some(a) = o.address.as_deref().map(str::trim)
        && !a.is_empty()
        && !is_ip(a)
    {
        v.bad(at("address"), a, "must be an IP address");
    }
    let Some(r) = &o.backend_ref else {
        if o.tags.is_empty() {
            if o.service.is_empty() {
                v.missing(
                    at("tags"),
                    format!(
                        "mandatory tag \"{SERVICE_TAG}\" is missing (an outbound names its service \
                         by tags or a backendRef)"
                    ),
                );
            }
        } else {
            if !o.tags.contains_key(SERVICE_TAG) {
                v.missing(
                    at("tags"),
                    format!("mandatory tag \"{SERVICE_TAG}\" is missing"),
                );
            }
            tag_set(&at("tags"), &o.tags, Protocols::Any, v);
        }
        return;
    };
    let kinds = BACKEND_KINDS.join(", ");
    if r.kind.is_empty() {
        v.missing(at("backendRef.kind"), format!("one of {kinds}"));
    } else if !BACKEND_KINDS.contains(&r.kind.as_str()) {
        v.bad(
            at("backendRef.kind"),
            &r.kind,
            format!("must be one of {kinds}"),
        );
    }
    if r.name.is_empty() && r.labels.is_empty() {
        v.missing(
            at("backendRef"),
            "either 'name' or 'labels' should be specified",
        );
    }
    if r.kind != MESH_EXTERNAL_SERVICE {
        match r.port.unwrap_or(0) {
            0 => v.missing(
                at("backendRef.port"),
                format!(
                    "{PORT_RULE} (every kind but {MESH_EXTERNAL_SERVICE}, whose port comes from its \
                     endpoints, needs one)"
                ),
            ),
            p if p > 65535 => v.bad(at("backendRef.port"), p.to_string(), PORT_RULE),
            _ => {}
        }
    }
    if !r.namespace.is_empty() {
        v.bad(
            at("backendRef.namespace"),
            &r.namespace,
            "an outbound backendRef has no namespace (kind, name, labels and port only)",
        );
    }
    if !o.tags.is_empty() || !o.service.is_empty() {
        v.bad(
            at("backendRef"),
            format!("kind={}", r.kind),
            "both backendRef and tags/service cannot be defined",
        );
    }
}

/// Which `kuma.io/protocol` values a tag set may carry.
#[derive(Clone, Copy)]
enum Protocols {
    /// Inbounds: Kuma's supported protocols.
    Supported,
    /// Gateways: `tcp` only.
    TcpOnly,
    /// Outbounds: not checked.
    Any,
}

/// Tag names and values (Kuma's `ValidateTags`) and the protocol tag.
fn tag_set(at: &str, tags: &IndexMap<String, String>, protocols: Protocols, v: &mut Validation) {
    for (name, value) in tags {
        let field = format!("{at}[\"{name}\"]");
        if name.is_empty() || !is_tag_name(name) {
            v.bad(
                &field,
                name,
                "tag names must consist of letters, digits, '.', '-', '_', ':' and '/'",
            );
        }
        if value.is_empty() {
            v.missing(&field, "tag values cannot be empty");
            continue;
        }
        if !is_tag_value(value) {
            v.bad(
                &field,
                value,
                "tag values must consist of letters, digits, '.', '-', '_' and ':'",
            );
            continue;
        }
        if name != PROTOCOL_TAG {
            continue;
        }
        match protocols {
            Protocols::Supported
                if !SUPPORTED_PROTOCOLS
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(value)) =>
            {
                v.bad(
                    &field,
                    value,
                    format!("must be one of {}", SUPPORTED_PROTOCOLS.join(", ")),
                );
            }
            Protocols::TcpOnly if value != "tcp" => {
                v.bad(&field, value, "other values than tcp are not allowed");
            }
            _ => {}
        }
    }
}

/// `serviceProbe`: durations and thresholds, when given, must be positive.
fn service_probe(at: &str, probe: Option<&Value>, v: &mut Validation) {
    let Some(Value::Mapping(probe)) = probe else {
        return;
    };
    for field in ["interval", "timeout"] {
        let Some(raw) = probe.get(field).filter(|d| !d.is_null()) else {
            continue;
        };
        let text = shown(raw);
        match crate::config::types::proto_duration(&text) {
            Ok(d) if d.is_zero() => {
                v.bad(format!("{at}.{field}"), text, "must have a positive value")
            }
            Ok(_) => {}
            Err(why) => v.bad(
                format!("{at}.{field}"),
                text,
                format!("must have a valid value: {why}"),
            ),
        }
    }
    for field in ["healthyThreshold", "unhealthyThreshold"] {
        let Some(raw) = probe.get(field).filter(|t| !t.is_null()) else {
            continue;
        };
        match uint(raw) {
            Some(t) if t > 0 && t <= u64::from(u32::MAX) => {}
            Some(0) => v.bad(
                format!("{at}.{field}"),
                shown(raw),
                "must have a positive value",
            ),
            _ => v.bad(
                format!("{at}.{field}"),
                shown(raw),
                "must be a positive integer",
            ),
        }
    }
}

/// Top-level `probes` (virtual probes): ports and URL paths.
fn probes(probes: Option<&Value>, v: &mut Validation) {
    let Some(Value::Mapping(p)) = probes else {
        return;
    };
    let port = |at: String, raw: Option<&Value>, v: &mut Validation| {
        let raw = raw.cloned().unwrap_or(Value::Null);
        if !uint(&raw).is_some_and(|p| (1..=65535).contains(&p)) {
            v.bad(at, shown(&raw), PORT_RULE);
        }
    };
    port("probes.port".to_string(), p.get("port"), v);
    let Some(Value::Sequence(endpoints)) = p.get("endpoints") else {
        return;
    };
    for (i, e) in endpoints.iter().enumerate() {
        let at = format!("probes.endpoints[{i}]");
        port(format!("{at}.inboundPort"), e.get("inboundPort"), v);
        for field in ["inboundPath", "path"] {
            let text = e.get(field).map(shown).unwrap_or_default();
            if !is_request_uri(&text) {
                v.bad(
                    format!("{at}.{field}"),
                    text,
                    "should be a valid URL Path (starting with '/')",
                );
            }
        }
    }
}

/// What Go's `url.ParseRequestURI` accepts, roughly: an absolute path or an
/// absolute URL with a scheme.
fn is_request_uri(s: &str) -> bool {
    if s.starts_with('/') {
        return true;
    }
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let mut b = scheme.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

fn transparent_proxying(tp: &TransparentProxying, rules: Rules, v: &mut Validation) {
    let at = |f: &str| format!("networking.transparentProxying.{f}");
    for (field, port) in [
        ("redirectPortInbound", tp.redirect_port_inbound),
        ("redirectPortOutbound", tp.redirect_port_outbound),
    ] {
        if port > 65535 {
            v.bad(
                at(field),
                port.to_string(),
                "must be in the range [0, 65535] (0: off)",
            );
        }
    }
    if let Some(old) = tp.extra.get(REMOVED_INBOUND_V6_FIELD) {
        v.bad(
            at(REMOVED_INBOUND_V6_FIELD),
            shown(old),
            "was removed in Kuma 2.9 (IPv6 uses redirectPortInbound); delete the field",
        );
    }
    if tp.redirect_port_inbound != 0 && tp.redirect_port_inbound == tp.redirect_port_outbound {
        v.warnings.push(format!(
            "networking.transparentProxying.redirectPortInbound and redirectPortOutbound are both {}; \
             one listener cannot tell inbound from outbound traffic",
            tp.redirect_port_inbound
        ));
    }
    for (i, s) in tp.reachable_services.iter().enumerate() {
        if s.trim().is_empty() {
            v.missing(
                at(&format!("reachableServices[{i}]")),
                "a kuma.io/service value",
            );
        } else if !is_tag_value(s) {
            v.bad(
                at(&format!("reachableServices[{i}]")),
                s,
                "kuma.io/service values consist of letters, digits, '.', '-', '_' and ':'",
            );
        }
    }
    if let Some(rb) = &tp.reachable_backends {
        for (i, r) in rb.refs.iter().enumerate() {
            backend_ref(&at(&format!("reachableBackends.refs[{i}]")), r, rules, v);
        }
    }
}

/// One reachable-backend ref. Kuma reports a missing name (a ref with only a
/// kind, or a namespace without a name) at `….name`.
fn backend_ref(at: &str, r: &BackendRef, rules: Rules, v: &mut Validation) {
    let f = |name: &str| format!("{at}.{name}");
    if r.kind.is_empty() {
        v.missing(f("kind"), format!("one of {}", BACKEND_KINDS.join(", ")));
    } else if !BACKEND_KINDS.contains(&r.kind.as_str()) {
        v.bad(
            f("kind"),
            &r.kind,
            format!("must be one of {}", BACKEND_KINDS.join(", ")),
        );
    }
    if !r.name.is_empty() && !is_rfc1123_subdomain(&r.name) {
        v.bad(f("name"), &r.name, RFC1123_RULE);
    }
    if r.name.is_empty() && r.namespace.is_empty() && r.labels.is_empty() {
        v.missing(f("name"), "name or labels are required");
    }
    if r.name.is_empty() && !r.namespace.is_empty() {
        v.missing(f("name"), "name is required when namespace is defined");
    }
    if !r.labels.is_empty() && (!r.name.is_empty() || !r.namespace.is_empty()) {
        let value = if r.name.is_empty() {
            format!("namespace={}", r.namespace)
        } else {
            format!("name={}", r.name)
        };
        v.bad(
            f("labels"),
            value,
            "labels cannot be defined when name or namespace is specified",
        );
    }
    if !r.namespace.is_empty() {
        if !rules.kubernetes_refs {
            v.bad(f("namespace"), &r.namespace, UNIVERSAL_NAMESPACE_RULE);
        } else if !is_rfc1123_subdomain(&r.namespace) {
            v.bad(f("namespace"), &r.namespace, RFC1123_RULE);
        }
    }
    if let Some(p) = r.port
        && !(1..=65535).contains(&p)
    {
        v.bad(f("port"), p.to_string(), PORT_RULE);
    }
    for (k, val) in &r.labels {
        if k.is_empty() || val.is_empty() {
            v.bad(
                f(&format!("labels[\"{k}\"]")),
                val,
                "label keys and values cannot be empty",
            );
        }
    }
}

/// Why a Universal ref cannot carry a namespace (the forwarder, which reads
/// Universal Dataplanes, refuses it through [`Dataplane::validate`] too).
const UNIVERSAL_NAMESPACE_RULE: &str = "a Universal Dataplane's refs have no namespace: \
     namespaces exist on Kubernetes only, and a Universal MeshService is named by its \
     kuma.io/service tag (for a Pod, use -o kubernetes-annotations)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123_names_as_kuma_checks_them() {
        for ok in ["redis", "a.b-c", "x1", "0", "first.kuma"] {
            assert!(is_rfc1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "Redis", "a_b", "first$-.kuma", "-a", "a-", "a..b", "a."] {
            assert!(!is_rfc1123_subdomain(bad), "{bad}");
        }
        assert!(!is_rfc1123_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn addresses_overlap_as_in_kuma() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(overlaps(lo, "127.0.0.1"));
        assert!(overlaps(lo, "0.0.0.0"));
        assert!(overlaps(lo, "::"));
        assert!(overlaps(lo, "::ffff:127.0.0.1"));
        assert!(!overlaps(lo, "192.168.0.1"));
        assert!(!overlaps(lo, "localhost"));
    }

    #[test]
    fn service_probe_values_are_checked_without_panicking() {
        let dp = Dataplane::from_text(
            "type: Dataplane\nmesh: m\nname: n\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    serviceProbe:\n      interval: 1e30s\n      timeout: soon\n      healthyThreshold: -1\n      unhealthyThreshold: \"3\"\n",
        )
        .unwrap();
        let fields: Vec<String> = dp
            .validate()
            .errors
            .into_iter()
            .map(|e| format!("{} {}", e.field, e.value.unwrap_or_default()))
            .collect();
        assert_eq!(
            fields,
            [
                "networking.inbound[0].serviceProbe.interval 1e30s",
                "networking.inbound[0].serviceProbe.timeout soon",
                "networking.inbound[0].serviceProbe.healthyThreshold -1",
            ]
        );
    }

    /// Hostile values in every field the validation reads: errors, never a
    /// panic (parse errors are fine too).
    #[test]
    fn hostile_values_never_panic() {
        let values = [
            "",
            "~",
            "-1",
            "0",
            "1e400",
            "99999999999999999999",
            "[]",
            "{}",
            "[1, {a: b}]",
            "true",
            "\"\"",
            "\"0\"",
            "::",
            "0.0.0.0",
            "\"x:y\"",
            "\"é\"",
            "!!binary aGk=",
        ];
        let templates = [
            "networking:\n  address: V\n",
            "networking:\n  admin: V\n",
            "networking:\n  admin:\n    port: V\n",
            "networking:\n  gateway: V\n",
            "networking:\n  gateway:\n    type: V\n    tags: V\n",
            "networking:\n  inbound:\n  - port: 1\n    address: V\n    serviceAddress: V\n    tags:\n      k: V\n",
            "networking:\n  inbound:\n  - port: 1\n    serviceProbe: V\n",
            "networking:\n  inbound:\n  - port: 1\n    serviceProbe:\n      interval: V\n      timeout: V\n      healthyThreshold: V\n",
            "networking:\n  outbound: V\n",
            "networking:\n  outbound:\n  - port: V\n    address: V\n    backendRef: V\n",
            "networking:\n  outbound:\n  - port: 1\n    backendRef:\n      kind: V\n      port: V\n      labels: V\n",
            "probes: V\n",
            "probes:\n  port: V\n  endpoints: V\n",
            "probes:\n  endpoints:\n  - inboundPort: V\n    inboundPath: V\n    path: V\n",
            "networking:\n  transparentProxying:\n    reachableBackends:\n      refs:\n      - kind: V\n        name: V\n        namespace: V\n        port: V\n",
        ];
        for t in templates {
            for v in values {
                let text = format!("type: Dataplane\nmesh: m\nname: n\n{}", t.replace('V', v));
                if let Ok(dp) = Dataplane::from_text(&text) {
                    let _ = dp.validate();
                    let _ = dp.validate_with(Rules {
                        require_service_tag: true,
                        kubernetes_refs: true,
                    });
                }
            }
        }
    }

    #[test]
    fn request_uris_as_go_parses_them() {
        for ok in ["/healthz", "/", "http://h/x", "a+b:x"] {
            assert!(is_request_uri(ok), "{ok}");
        }
        for bad in ["", "healthz", "8080/healthz", ":x", "1a:x"] {
            assert!(!is_request_uri(bad), "{bad}");
        }
    }
}
