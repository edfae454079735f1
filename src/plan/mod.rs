//! The rule plan: a pure function from the resolved [`Config`] and the facts
//! probed from the host ([`Facts`]) to a typed [`RuleSet`] per IP family —
//! kumactl's rule layout (reference §2), rule for rule and in the same order,
//! with the deliberate fixes of SPEC §3 (Q1 is rejected in config; Q4 and Q5
//! are fixed here). No I/O: that is what makes `--dry-run` honest and the
//! plan testable with golden files.

use std::net::IpAddr;

use crate::config::{
    Config, INBOUND_PASSTHROUGH_V4, INBOUND_PASSTHROUGH_V6, IpMatch, PortRange, Proto, UidRange,
};
use crate::model::{
    Chain, Extension, Family, FamilyRules, Param, PortMatch, RuleSet, Table, TableName, Target,
};

/// What the planner needs to know about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The kuma-dp UID, already resolved to a number.
    pub uid: u32,
    /// Name of the loopback interface (the first with the LOOPBACK flag).
    pub loopback: String,
    pub v4: FamilyFacts,
    /// `None` when IPv6 rules are not written (mode ipv4, or no IPv6 on the host).
    pub v6: Option<FamilyFacts>,
}

/// Per-family facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FamilyFacts {
    /// Name servers of this family from resolv.conf, in file order.
    pub dns_servers: Vec<IpAddr>,
    /// nat already has a `DOCKER_OUTPUT` chain.
    pub docker_output: bool,
    /// The `comment` match is available.
    pub comments: bool,
    /// The raw table and the `conntrack` match are available (zone split possible).
    pub conntrack: bool,
    /// The mangle table is available.
    pub mangle: bool,
}

impl FamilyFacts {
    /// Facts for a host where every feature is available.
    pub fn full() -> Self {
        FamilyFacts {
            dns_servers: Vec::new(),
            docker_output: false,
            comments: true,
            conntrack: true,
            mangle: true,
        }
    }
}

/// The plan and the warnings met while making it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rules: RuleSet,
    pub warnings: Vec<String>,
}

const DNS_PORT: u16 = 53;

/// Plans every family.
pub fn plan(cfg: &Config, facts: &Facts) -> Plan {
    let mut warnings = Vec::new();
    let v4 = plan_family(cfg, facts, Family::Ipv4, &facts.v4, &mut warnings);
    let v6 = facts
        .v6
        .as_ref()
        .map(|f6| plan_family(cfg, facts, Family::Ipv6, f6, &mut warnings));
    Plan {
        rules: RuleSet { v4, v6 },
        warnings,
    }
}

/// Per-family values the rules use.
struct Ctx<'a> {
    cfg: &'a Config,
    family: Family,
    uid: u32,
    loopback: &'a str,
    localhost: IpMatch,
    passthrough: IpMatch,
    dns: bool,
    capture_all: bool,
    servers: Vec<IpAddr>,
    docker_output: bool,
}

fn host_match(text: &str) -> IpMatch {
    IpMatch::parse(text).expect("constant address parses")
}

fn tcp() -> Param {
    Param::Protocol {
        proto: Proto::Tcp,
        ports: Vec::new(),
    }
}

fn proto(proto: Proto, ports: Vec<PortMatch>) -> Param {
    Param::Protocol { proto, ports }
}

fn dport(port: u16) -> PortMatch {
    PortMatch::Dport {
        port,
        negated: false,
    }
}

fn owner(uid: u32, negated: bool) -> Param {
    Param::Match(Extension::Owner {
        uids: UidRange {
            first: uid,
            last: uid,
        },
        negated,
    })
}

fn dst(addr: &IpMatch) -> Param {
    Param::Destination {
        addr: addr.clone(),
        negated: false,
    }
}

fn not_dst(addr: &IpMatch) -> Param {
    Param::Destination {
        addr: addr.clone(),
        negated: true,
    }
}

fn src(addr: &IpMatch) -> Param {
    Param::Source {
        addr: addr.clone(),
        negated: false,
    }
}

fn server_match(ip: &IpAddr) -> IpMatch {
    IpMatch {
        net: ipnet::IpNet::from(*ip),
        text: ip.to_string(),
    }
}

fn family_of(ip: &IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

fn matches_family(m: &IpMatch, family: Family) -> bool {
    m.is_ipv4() == (family == Family::Ipv4)
}

fn plan_family(
    cfg: &Config,
    facts: &Facts,
    family: Family,
    ff: &FamilyFacts,
    warnings: &mut Vec<String>,
) -> FamilyRules {
    let dns_cfg = &cfg.redirect.dns;
    let servers: Vec<IpAddr> = ff
        .dns_servers
        .iter()
        .filter(|s| family_of(s) == family)
        .copied()
        .collect();
    let mut dns = dns_cfg.enabled;
    if dns && !dns_cfg.capture_all && servers.is_empty() {
        warnings.push(format!(
            "[{}] no {} DNS servers found in {}. DNS traffic capture for {} will be disabled",
            family.tool(),
            family.title(),
            dns_cfg.resolv_config_path.display(),
            family.title()
        ));
        dns = false;
    }
    let (localhost, passthrough) = match family {
        Family::Ipv4 => (
            host_match("127.0.0.1/32"),
            host_match(&format!("{INBOUND_PASSTHROUGH_V4}/32")),
        ),
        Family::Ipv6 => (
            host_match("::1/128"),
            host_match(&format!("{INBOUND_PASSTHROUGH_V6}/128")),
        ),
    };
    let ctx = Ctx {
        cfg,
        family,
        uid: facts.uid,
        loopback: &facts.loopback,
        localhost,
        passthrough,
        dns,
        capture_all: dns_cfg.capture_all,
        servers,
        docker_output: ff.docker_output,
    };

    let comments = !cfg.comments.disabled && ff.comments;
    if !cfg.comments.disabled && !ff.comments {
        warnings.push(format!(
            "[{}] the 'comment' match is not available: rules are written without comments (the receipt still identifies them)",
            family.tool()
        ));
    }

    let mut zone_split = ctx.dns && !dns_cfg.skip_conntrack_zone_split;
    if zone_split && !ff.conntrack {
        warnings.push(format!(
            "[{}] conntrack zone splitting is disabled. This requires the 'conntrack' iptables module",
            family.tool()
        ));
        zone_split = false;
    }
    if zone_split && ctx.capture_all && ff.docker_output {
        warnings.push(format!(
            "[{}] conntrack zone splitting is unsupported when capturing all DNS traffic inside Docker containers with custom networks",
            family.tool()
        ));
        zone_split = false;
    }

    let mut raw = Table::new(TableName::Raw);
    if zone_split {
        raw_rules(&ctx, &mut raw);
    }
    let nat = nat_table(&ctx);
    let mut mangle = Table::new(TableName::Mangle);
    if cfg.drop_invalid_packets {
        if ff.mangle {
            mangle.chain("PREROUTING").append(
                "drop packets in the INVALID state to prevent potential issues with malformed or out-of-order packets",
                vec![Param::Match(Extension::Conntrack { states: "INVALID" })],
                Target::Drop,
            );
        } else {
            warnings.push(format!(
                "[{}] the mangle table is not available: --drop-invalid-packets is skipped",
                family.tool()
            ));
        }
    }

    FamilyRules {
        family,
        tables: vec![raw, nat, mangle],
        comments,
    }
}

fn raw_rules(ctx: &Ctx<'_>, raw: &mut Table) {
    let dns_port = ctx.cfg.redirect.dns.port;
    let uid = ctx.uid;
    let out = raw.chain("OUTPUT");
    out.append(
        format!(
            "assign connection tracking zone 1 to DNS traffic from the kuma-dp user (UID {uid})"
        ),
        vec![proto(Proto::Udp, vec![dport(DNS_PORT)]), owner(uid, false)],
        Target::CtZone(1),
    );
    out.append(
        "assign connection tracking zone 2 to DNS responses from the kuma-dp DNS proxy",
        vec![
            proto(Proto::Udp, vec![PortMatch::Sport(dns_port)]),
            owner(uid, false),
        ],
        Target::CtZone(2),
    );
    if ctx.capture_all {
        raw.chain("OUTPUT").append(
            "assign connection tracking zone 2 to all DNS requests",
            vec![proto(Proto::Udp, vec![dport(DNS_PORT)])],
            Target::CtZone(2),
        );
        raw.chain("PREROUTING").append(
            "assign connection tracking zone 1 to all DNS responses",
            vec![proto(Proto::Udp, vec![PortMatch::Sport(DNS_PORT)])],
            Target::CtZone(1),
        );
        return;
    }
    for server in &ctx.servers {
        let m = server_match(server);
        raw.chain("OUTPUT").append(
            format!("assign connection tracking zone 2 to DNS requests destined for {server}"),
            vec![dst(&m), proto(Proto::Udp, vec![dport(DNS_PORT)])],
            Target::CtZone(2),
        );
        // A local resolver (Docker's 127.0.0.11, systemd-resolved's
        // 127.0.0.53) may be DNATed to another port; its answers to localhost
        // then need zone 1 explicitly (kuma PR #11684).
        if server.is_loopback() {
            raw.chain("OUTPUT").append(
                "assign conntrack zone 1 to DNS responses from the local DNS server to localhost, needed when the DNS query port is altered by a DNAT iptables rule, such as with Docker containers in a custom network",
                vec![src(&m), dst(&ctx.localhost), proto(Proto::Udp, vec![])],
                Target::CtZone(1),
            );
        }
        raw.chain("PREROUTING").append(
            format!("assign connection tracking zone 1 to DNS responses from {server}"),
            vec![src(&m), proto(Proto::Udp, vec![PortMatch::Sport(DNS_PORT)])],
            Target::CtZone(1),
        );
    }
}

fn nat_table(ctx: &Ctx<'_>) -> Table {
    let cfg = ctx.cfg;
    let mut nat = Table::new(TableName::Nat);
    output_rules(ctx, nat.chain("OUTPUT"));
    prerouting_rules(ctx, nat.chain("PREROUTING"));
    nat.add_custom(mesh_inbound(ctx));
    nat.add_custom(mesh_outbound(ctx));
    nat.add_custom(mesh_redirect(
        &cfg.inbound_redirect_chain(),
        cfg.redirect.inbound.port,
    ));
    nat.add_custom(mesh_redirect(
        &cfg.outbound_redirect_chain(),
        cfg.redirect.outbound.port,
    ));
    nat
}

fn output_rules(ctx: &Ctx<'_>, output: &mut Chain) {
    let cfg = ctx.cfg;
    let uid = ctx.uid;
    let insert_jump = cfg.redirect.outbound.insert_redirect_instead_of_append;
    if cfg.log.enabled {
        output.insert(
            "log matching packets using kernel logging",
            vec![],
            Target::Log {
                prefix: "OUTPUT:".to_string(),
                level: cfg.log.level,
            },
        );
    }
    for ex in &cfg.redirect.outbound.exclude_uids {
        let ports: Vec<PortRange> = if ex.ports.is_empty() {
            vec![PortRange::ALL]
        } else {
            ex.ports.clone()
        };
        for p in &ex.protocols {
            output.insert(
                "skip further processing for configured IP addresses, ports and UIDs",
                vec![
                    Param::Match(Extension::Multiport),
                    proto(*p, vec![PortMatch::Dports(ports.clone())]),
                    Param::Match(Extension::Owner {
                        uids: ex.uids,
                        negated: false,
                    }),
                ],
                Target::Return,
            );
        }
    }
    for ip in cfg
        .redirect
        .outbound
        .exclude_ips
        .iter()
        .filter(|m| matches_family(m, ctx.family))
    {
        output.insert(
            "skip further processing for configured IP addresses, ports and UIDs",
            vec![dst(ip)],
            Target::Return,
        );
    }
    if ctx.dns {
        let (target, comment) = if ctx.docker_output {
            (
                Target::Chain("DOCKER_OUTPUT".to_string()),
                "redirect DNS traffic from kuma-dp to the DOCKER_OUTPUT chain",
            )
        } else {
            (Target::Return, "return early for DNS traffic from kuma-dp")
        };
        output.insert(
            comment,
            vec![proto(Proto::Udp, vec![dport(DNS_PORT)]), owner(uid, false)],
            target,
        );
        // Q5: with the outbound insert flag the jump is inserted, so this
        // RETURN is inserted too, which keeps it above the jump.
        output.add(
            insert_jump,
            format!(
                "allow applications to perform DNS queries over TCP to port 53 without mesh redirection (only traffic not owned by UID {uid} (kuma-dp user))"
            ),
            vec![proto(Proto::Tcp, vec![dport(DNS_PORT)]), owner(uid, true)],
            Target::Return,
        );
        let dns_port = cfg.redirect.dns.port;
        if ctx.capture_all {
            output.insert(
                format!(
                    "redirect all DNS requests to the kuma-dp DNS proxy (listening on port {dns_port})"
                ),
                vec![proto(Proto::Udp, vec![dport(DNS_PORT)])],
                Target::Redirect(dns_port),
            );
        } else {
            for server in &ctx.servers {
                output.insert(
                    format!(
                        "redirect DNS requests to {server} to the kuma-dp DNS proxy (listening on port {dns_port})"
                    ),
                    vec![
                        dst(&server_match(server)),
                        proto(Proto::Udp, vec![dport(DNS_PORT)]),
                    ],
                    Target::Redirect(dns_port),
                );
            }
        }
    }
    output.add(
        insert_jump,
        "redirect outbound TCP traffic to our custom chain for processing",
        vec![tcp()],
        Target::Chain(cfg.outbound_chain()),
    );
}

fn prerouting_rules(ctx: &Ctx<'_>, prerouting: &mut Chain) {
    let cfg = ctx.cfg;
    if cfg.log.enabled {
        prerouting.append(
            "log matching packets using kernel logging",
            vec![],
            Target::Log {
                prefix: "PREROUTING:".to_string(),
                level: cfg.log.level,
            },
        );
    }
    let mut vnets: Vec<_> = cfg
        .redirect
        .vnet
        .networks
        .iter()
        .filter(|n| matches_family(&n.cidr, ctx.family))
        .collect();
    vnets.sort_by(|a, b| a.interface.cmp(&b.interface));
    if vnets.is_empty() && !cfg.redirect.inbound.insert_redirect_instead_of_append {
        prerouting.append(
            "redirect inbound TCP traffic to our custom chain for processing",
            vec![tcp()],
            Target::Chain(cfg.inbound_chain()),
        );
        return;
    }
    for net in vnets {
        let iface = &net.interface;
        // Q4: the DNS redirect is written only when DNS redirection is on.
        if cfg.redirect.dns.enabled {
            let dns_port = cfg.redirect.dns.port;
            prerouting.insert(
                format!(
                    "redirect DNS requests on interface {iface} to the kuma-dp DNS proxy (listening on port {dns_port})"
                ),
                vec![
                    Param::InInterface(iface.clone()),
                    Param::Match(Extension::Udp),
                    proto(Proto::Udp, vec![dport(DNS_PORT)]),
                ],
                Target::Redirect(dns_port),
            );
        }
        let out_port = cfg.redirect.outbound.port;
        prerouting.insert(
            format!(
                "redirect TCP traffic on interface {iface}, excluding destination {}, to the envoy's outbound passthrough port {out_port}",
                net.cidr
            ),
            vec![
                not_dst(&net.cidr),
                Param::InInterface(iface.clone()),
                tcp(),
            ],
            Target::Redirect(out_port),
        );
    }
    prerouting.insert(
        "redirect remaining TCP traffic to our custom chain for processing",
        vec![tcp()],
        Target::Chain(cfg.inbound_chain()),
    );
}

fn mesh_inbound(ctx: &Ctx<'_>) -> Chain {
    let cfg = ctx.cfg;
    let flow = &cfg.redirect.inbound;
    let mut chain = Chain::custom(&cfg.inbound_chain());
    if !flow.enabled {
        chain.append(
            "inbound traffic redirection is disabled",
            vec![tcp()],
            Target::Return,
        );
        return chain;
    }
    for ip in flow
        .exclude_ips
        .iter()
        .filter(|m| matches_family(m, ctx.family))
    {
        chain.append(
            "skip further processing for configured IP address",
            vec![src(ip)],
            Target::Return,
        );
    }
    let redirect = cfg.inbound_redirect_chain();
    for port in &flow.include_ports {
        chain.append(
            format!("redirect inbound traffic from port {port} to the custom chain for processing"),
            vec![proto(Proto::Tcp, vec![dport(*port)])],
            Target::Chain(redirect.clone()),
        );
    }
    if flow.include_ports.is_empty() {
        for port in &flow.exclude_ports {
            chain.append(
                format!("exclude inbound traffic from port {port} from redirection"),
                vec![proto(Proto::Tcp, vec![dport(*port)])],
                Target::Return,
            );
        }
        chain.append(
            "redirect all inbound traffic to the custom chain for processing",
            vec![tcp()],
            Target::Chain(redirect),
        );
    }
    chain
}

fn mesh_outbound(ctx: &Ctx<'_>) -> Chain {
    let cfg = ctx.cfg;
    let flow = &cfg.redirect.outbound;
    let uid = ctx.uid;
    let mut chain = Chain::custom(&cfg.outbound_chain());
    if !flow.enabled {
        chain.append(
            "outbound traffic redirection is disabled",
            vec![tcp()],
            Target::Return,
        );
        return chain;
    }
    if flow.include_ports.is_empty() {
        for port in &flow.exclude_ports {
            chain.append(
                format!("exclude outbound traffic from port {port} from redirection"),
                vec![proto(Proto::Tcp, vec![dport(*port)])],
                Target::Return,
            );
        }
    }
    let lo = ctx.loopback.to_string();
    // Envoy's inbound passthrough cluster connects to the application from
    // 127.0.0.6 / ::6; those hops must not be captured again.
    chain.append(
        format!(
            "prevent traffic loops by ensuring traffic from the sidecar proxy (using {}) to loopback interface is not redirected again",
            ctx.passthrough
        ),
        vec![src(&ctx.passthrough), Param::OutInterface(lo.clone())],
        Target::Return,
    );
    chain.append(
        format!(
            "redirect outbound TCP traffic destined for loopback interface, but not targeting address {}, and owned by UID {uid} (kuma-dp user) to {} chain for proper handling",
            ctx.localhost,
            cfg.inbound_redirect_chain()
        ),
        vec![
            tcp(),
            Param::OutInterface(lo.clone()),
            not_dst(&ctx.localhost),
            owner(uid, false),
        ],
        Target::Chain(cfg.inbound_redirect_chain()),
    );
    chain.append(
        format!(
            "return outbound TCP traffic destined for loopback interface, owned by any UID other than {uid} (kuma-dp user)"
        ),
        vec![tcp(), Param::OutInterface(lo), owner(uid, true)],
        Target::Return,
    );
    chain.append(
        format!("return outbound traffic owned by UID {uid} (kuma-dp user)"),
        vec![owner(uid, false)],
        Target::Return,
    );
    chain.append(
        format!(
            "return traffic destined for localhost ({}) to avoid redirection",
            ctx.localhost
        ),
        vec![dst(&ctx.localhost)],
        Target::Return,
    );
    let redirect = cfg.outbound_redirect_chain();
    for port in &flow.include_ports {
        chain.append(
            format!(
                "redirect outbound TCP traffic to port {port} to our custom chain for further processing"
            ),
            vec![proto(Proto::Tcp, vec![dport(*port)])],
            Target::Chain(redirect.clone()),
        );
    }
    if flow.include_ports.is_empty() {
        chain.append(
            "redirect all other outbound traffic to our custom chain for further processing",
            vec![],
            Target::Chain(redirect),
        );
    }
    chain
}

fn mesh_redirect(name: &str, port: u16) -> Chain {
    let mut chain = Chain::custom(name);
    chain.append(
        format!("redirect TCP traffic to envoy (port {port})"),
        vec![tcp()],
        Target::Redirect(port),
    );
    chain
}

#[cfg(test)]
mod tests;
