//! Typed configuration values and their parsers: ports, IP family mode, IP
//! exclusions, owner (UID) exclusions, virtual networks and durations. Each
//! parser returns the reason a value is wrong; the caller adds which flag,
//! variable or key held it.
//!
//! The parsers are as strict as kumactl's (Go's `strconv.ParseUint`,
//! `net.ParseCIDR`): no surrounding spaces, no sign, no empty pieces. The one
//! place kumactl trims is a port list (`Ports.Set`), handled by the caller.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The highest UID the owner match accepts: (uid_t)-1 is "no user".
pub const MAX_UID: u32 = u32::MAX - 1;

/// `value is not a valid port` reason used everywhere.
pub const PORT_RANGE: &str = "not a valid port (an integer in the range [1, 65535])";

/// A decimal number the way Go's `strconv.ParseUint(s, 10, 64)` reads it:
/// ASCII digits only (Rust's own parser would also take a leading `+`).
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `" (without spaces)"` when spaces are what made `s` invalid, else `""`.
pub fn space_hint(s: &str) -> &'static str {
    if s.chars().any(char::is_whitespace) {
        " (without spaces)"
    } else {
        ""
    }
}

/// Parses one port (1..=65535).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match parse_decimal(s) {
        Some(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("{PORT_RANGE}{}", space_hint(s))),
    }
}

/// IP family mode (reference §1.6; case-insensitive, Q2 fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpFamilyMode {
    #[default]
    DualStack,
    Ipv4,
}

impl IpFamilyMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "dualstack" => Ok(IpFamilyMode::DualStack),
            "ipv4" => Ok(IpFamilyMode::Ipv4),
            _ => Err("must be one of 'dualstack' or 'ipv4' (case-insensitive)".to_string()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilyMode::DualStack => "dualstack",
            IpFamilyMode::Ipv4 => "ipv4",
        }
    }
}

impl fmt::Display for IpFamilyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IpFamilyMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IpFamilyMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IpFamilyMode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An address or CIDR, kept as typed (rendered "exactly as typed", reference §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpMatch {
    pub net: IpNet,
    pub text: String,
}

impl IpMatch {
    /// `ParseCIDR`, else `ParseIP` (reference §1.6).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s;
        if t.is_empty() {
            return Err("invalid exclusion rule: the rule cannot be empty".to_string());
        }
        if let Ok(net) = IpNet::from_str(t) {
            return Ok(IpMatch {
                net,
                text: t.to_string(),
            });
        }
        if let Ok(ip) = IpAddr::from_str(t) {
            return Ok(IpMatch {
                net: IpNet::from(ip),
                text: t.to_string(),
            });
        }
        Err(format!(
            "not an IP address or CIDR (expected <ip> or <ip>/<prefix>, e.g. 10.0.0.1 or 10.0.0.0/8 or fd00::/8){}",
            space_hint(t)
        ))
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.net, IpNet::V4(_))
    }

    /// Splits a flag or list value that may itself be a comma list.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, (String, String)> {
        s.split(',')
            .map(|part| IpMatch::parse(part).map_err(|why| (part.to_string(), why)))
            .collect()
    }
}

impl fmt::Display for IpMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for IpMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IpMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IpMatch::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Transport protocol of an owner exclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An inclusive range of ports (`a` or `a-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange {
        first: 1,
        last: 65535,
    };

    /// Rendered for iptables: `a` or `a:b`.
    pub fn iptables(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// An inclusive range of UIDs (`a` or `a-b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UidRange {
    pub first: u32,
    pub last: u32,
}

impl UidRange {
    /// Rendered for iptables: `a` or `a:b`.
    pub fn iptables(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last).contains(&uid)
    }
}

/// One `--exclude-outbound-ports-for-uids` entry: `<protocol:>?<ports:>?<uids>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidExclusion {
    pub protocols: Vec<Proto>,
    /// Empty means every port (`1:65535`).
    pub ports: Vec<PortRange>,
    pub uids: UidRange,
    pub text: String,
}

/// multiport accepts at most 15 ports, a range counting as two.
const MULTIPORT_MAX: usize = 15;

impl UidExclusion {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let text = entry;
        let parts: Vec<&str> = text.split(':').collect();
        let (proto, ports, uids) = match parts.as_slice() {
            [u] => ("", "", *u),
            [p, u] => ("", *p, *u),
            [pr, p, u] => (*pr, *p, *u),
            _ => {
                return Err(
                    "invalid format for excluding ports by UIDs: expected <protocol:>?<ports:>?<uids>"
                        .to_string(),
                );
            }
        };
        let protocols = parse_protocols(proto)?;
        let ports = parse_port_ranges(ports)?;
        let uids = parse_uid_range(uids)?;
        Ok(UidExclusion {
            protocols,
            ports,
            uids,
            text: text.to_string(),
        })
    }

    /// The multiport `--dports` value.
    pub fn ports_iptables(&self) -> String {
        if self.ports.is_empty() {
            PortRange::ALL.iptables()
        } else {
            self.ports
                .iter()
                .map(PortRange::iptables)
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

fn parse_protocols(s: &str) -> Result<Vec<Proto>, String> {
    if s.is_empty() || s == "*" {
        return Ok(vec![Proto::Tcp, Proto::Udp]);
    }
    let mut out = Vec::new();
    for p in s.split(',') {
        let proto = match p.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "*" => {
                out.extend([Proto::Tcp, Proto::Udp]);
                continue;
            }
            _ => {
                return Err(format!(
                    "invalid or unsupported protocol: '{p}' (expected tcp, udp, a comma list of them, or *)"
                ));
            }
        };
        out.push(proto);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn parse_u16_strict(s: &str) -> Result<u16, String> {
    parse_decimal(s)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("invalid uint16 value: '{s}'{}", space_hint(s)))
}

/// `53,3000-5000`; `*` or empty is every port.
pub fn parse_port_ranges(s: &str) -> Result<Vec<PortRange>, String> {
    if s.is_empty() || s == "*" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut weight = 0;
    for piece in s.split(',') {
        let wrap = |why: String| {
            format!("invalid port range: validation failed for value or range '{piece}': {why}")
        };
        let range = match piece.split_once('-') {
            Some((a, b)) => {
                let first = parse_u16_strict(a).map_err(wrap)?;
                let last = parse_u16_strict(b).map_err(wrap)?;
                if first > last {
                    return Err(wrap(format!(
                        "the range starts after it ends ({first} > {last})"
                    )));
                }
                weight += 2;
                PortRange { first, last }
            }
            None => {
                let p = parse_u16_strict(piece).map_err(wrap)?;
                weight += 1;
                PortRange { first: p, last: p }
            }
        };
        if range.first == 0 {
            return Err(wrap("port 0 is not a port".to_string()));
        }
        out.push(range);
    }
    if weight > MULTIPORT_MAX {
        return Err(format!(
            "too many ports in '{s}': the multiport match takes at most {MULTIPORT_MAX} (a range counts as 2); split the entry"
        ));
    }
    Ok(out)
}

fn parse_uid(t: &str) -> Result<u32, String> {
    match parse_decimal(t) {
        Some(n) if n <= MAX_UID as u64 => Ok(n as u32),
        _ => Err(format!(
            "invalid UID: '{t}' (expected an integer in the range [0, {MAX_UID}]){}",
            space_hint(t)
        )),
    }
}

fn parse_uid_range(t: &str) -> Result<UidRange, String> {
    if t == "*" {
        return Err("wildcard '*' is not allowed for UIDs".to_string());
    }
    if t.is_empty() {
        return Err("the UID part cannot be empty".to_string());
    }
    if t.contains(',') {
        return Err(format!(
            "invalid UID entry: '{t}'. It should either be a single item or a range"
        ));
    }
    match t.split_once('-') {
        Some((a, b)) => {
            let first = parse_uid(a)?;
            let last = parse_uid(b)?;
            if first > last {
                return Err(format!("invalid UID range '{t}': it starts after it ends"));
            }
            Ok(UidRange { first, last })
        }
        None => {
            let u = parse_uid(t)?;
            Ok(UidRange { first: u, last: u })
        }
    }
}

impl fmt::Display for UidExclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for UidExclusion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for UidExclusion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UidExclusion::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A `--vnet` network: `ifaceNameOrPrefix+:CIDR`, split at the first `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetNetwork {
    pub interface: String,
    pub cidr: IpMatch,
}

impl VnetNetwork {
    pub fn parse(t: &str) -> Result<Self, String> {
        let Some((iface, cidr)) = t.split_once(':') else {
            return Err(format!(
                "invalid virtual network definition: {t} (expected ifaceNameOrPrefix+:CIDR, e.g. docker0:172.17.0.0/16)"
            ));
        };
        validate_interface(iface)?;
        let net = IpNet::from_str(cidr)
            .map_err(|_| format!("invalid CIDR definition for {cidr}{}", space_hint(cidr)))?;
        if net.prefix_len() == 0 {
            // Its rule redirects what is *not* sent to the network: with /0
            // that is nothing, and iptables-nft refuses `! -d 0.0.0.0/0`.
            return Err(format!(
                "{cidr} in {t} is every address: the network's rule redirects traffic from {iface} that is not sent to the network, so it would redirect nothing (and iptables-nft cannot load it); give the virtual network's own CIDR, e.g. docker0:172.17.0.0/16"
            ));
        }
        Ok(VnetNetwork {
            interface: iface.to_string(),
            cidr: IpMatch {
                net,
                text: cidr.to_string(),
            },
        })
    }
}

/// Interface names as the kernel and iptables' `-i` accept them (a trailing
/// `+` is iptables' prefix wildcard).
fn validate_interface(name: &str) -> Result<(), String> {
    let base = name.strip_suffix('+').unwrap_or(name);
    if name.is_empty() || name == "+" {
        return Err("the interface name cannot be empty".to_string());
    }
    if base.len() > 15 {
        return Err(format!(
            "interface name '{name}' is longer than 15 characters"
        ));
    }
    if base
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '"' || c == '\'' || c == '!')
    {
        return Err(format!(
            "interface name '{name}' contains a character interfaces cannot have"
        ));
    }
    Ok(())
}

impl fmt::Display for VnetNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.interface, self.cidr)
    }
}

impl Serialize for VnetNetwork {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for VnetNetwork {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VnetNetwork::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses a duration: `2s`, `500ms`, `1m30s`, `1h` (Go and humantime forms).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".to_string());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|_| {
        "not a duration (use a number with a unit, e.g. 2s, 500ms, 1m, 1h30m)".to_string()
    })
}

/// A protobuf JSON duration (`"99s"`, `"0.5s"`, as Envoy and Kuma resources
/// write them) or the [`parse_duration`] form (`2s`, `3h`, `500ms`).
pub fn proto_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    if let Some(secs) = t.strip_suffix('s')
        && let Ok(f) = secs.parse::<f64>()
        && f.is_finite()
        && f >= 0.0
    {
        return Duration::try_from_secs_f64(f).map_err(|_| format!("{t} is too long"));
    }
    parse_duration(t)
}

/// Serializes a duration the way it is written (`2s`).
pub mod duration_text {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_go_strict() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "18446744073709551616",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("15006"), Ok(15006));
        assert_eq!(
            parse_port(" 15006"),
            Err(format!("{PORT_RANGE} (without spaces)"))
        );
        assert!(parse_port("+15006").is_err());
        assert!(parse_port("15006 ").is_err());
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").is_err());
        assert!(parse_port("-1").is_err());
        assert!(parse_port("abc").is_err());
    }

    #[test]
    fn family_mode_is_case_insensitive() {
        assert_eq!(IpFamilyMode::parse("IPv4"), Ok(IpFamilyMode::Ipv4));
        assert_eq!(IpFamilyMode::parse(""), Ok(IpFamilyMode::DualStack));
        assert_eq!(
            IpFamilyMode::parse("DualStack"),
            Ok(IpFamilyMode::DualStack)
        );
        assert!(IpFamilyMode::parse("ipv6").is_err());
    }

    #[test]
    fn ip_matches_keep_their_text() {
        let m = IpMatch::parse("10.0.0.1").unwrap();
        assert_eq!(m.text, "10.0.0.1");
        assert_eq!(m.net.prefix_len(), 32);
        // kumactl (net.ParseCIDR) takes no spaces; neither do we, and we say why
        let err = IpMatch::parse(" 10.0.0.1").unwrap_err();
        assert!(err.ends_with("(without spaces)"), "{err}");
        assert!(IpMatch::parse_list("10.0.0.1,,10.0.0.2").is_err());
        let m = IpMatch::parse("fd00::/8").unwrap();
        assert!(!m.is_ipv4());
        assert!(IpMatch::parse("10.0.0.300").is_err());
        assert!(IpMatch::parse("").is_err());
        let err = IpMatch::parse_list("10.0.0.1,bogus").unwrap_err();
        assert_eq!(err.0, "bogus");
    }

    #[test]
    fn uid_exclusion_grammar() {
        let e = UidExclusion::parse("123").unwrap();
        assert_eq!(e.protocols, vec![Proto::Tcp, Proto::Udp]);
        assert_eq!(e.ports_iptables(), "1:65535");
        assert_eq!(e.uids.iptables(), "123");

        let e = UidExclusion::parse("tcp:22,80:1000").unwrap();
        assert_eq!(e.protocols, vec![Proto::Tcp]);
        assert_eq!(e.ports_iptables(), "22,80");

        let e = UidExclusion::parse("*:53,3000-5000:106-108").unwrap();
        assert_eq!(e.ports_iptables(), "53,3000:5000");
        assert_eq!(e.uids.iptables(), "106:108");

        let e = UidExclusion::parse("udp,tcp:*:4294967294").unwrap();
        assert_eq!(e.protocols, vec![Proto::Tcp, Proto::Udp]);
        assert_eq!(e.uids.first, 4294967294);

        assert!(
            UidExclusion::parse("sctp:22:1")
                .unwrap_err()
                .contains("sctp")
        );
        assert!(
            UidExclusion::parse("22:*")
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(
            UidExclusion::parse("1,2,3")
                .unwrap_err()
                .contains("single item")
        );
        assert!(
            UidExclusion::parse("a:b:c:d")
                .unwrap_err()
                .contains("format")
        );
        assert!(
            UidExclusion::parse("70000:1")
                .unwrap_err()
                .contains("70000")
        );
        assert!(UidExclusion::parse("4294967295").is_err());
        assert!(
            UidExclusion::parse("9-3")
                .unwrap_err()
                .contains("starts after")
        );
        assert!(UidExclusion::parse("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16:1").is_err());
        // no spaces anywhere (kumactl's strconv.ParseUint), and no empty port pieces
        for bad in [
            "tcp: 22:1000",
            "tcp:22, 80:1000",
            "22:1000 ",
            " 1000",
            "tcp:22,,80:1000",
        ] {
            assert!(UidExclusion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vnet_definitions() {
        let v = VnetNetwork::parse("docker0:172.17.0.0/16").unwrap();
        assert_eq!(v.interface, "docker0");
        let v = VnetNetwork::parse("iface:::1/64").unwrap();
        assert_eq!(v.cidr.text, "::1/64");
        assert!(
            VnetNetwork::parse("docker0")
                .unwrap_err()
                .contains("invalid virtual network")
        );
        assert!(
            VnetNetwork::parse("docker0:bogus")
                .unwrap_err()
                .contains("invalid CIDR")
        );
        assert!(VnetNetwork::parse("br+:10.0.0.0/8").is_ok());
        for every in ["docker0:0.0.0.2/0", "docker0:::/0"] {
            assert!(
                VnetNetwork::parse(every)
                    .unwrap_err()
                    .contains("is every address"),
                "{every}"
            );
        }
        assert!(VnetNetwork::parse("docker0: 172.17.0.0/16").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}
