//! `tproxyctl verify`: proves that the installed rules are in place and do
//! what they should, in two parts.
//!
//! 1. **Live rules**: every family's rules on the host, read with the
//!    receipt's executables, equal the receipt's — any missing, unexpected
//!    or moved rule of ours fails, named (the comparison `status` makes,
//!    [`crate::host::readback::drift`]); `::6` is there when IPv6 is.
//! 2. **Behaviour**: the receipt's rules are applied, with the same backend,
//!    to a throwaway pair of network namespaces (the host's own traffic is
//!    never touched), and real connections check each property: outbound TCP
//!    reaches the outbound port with its original destination, inbound
//!    reaches the inbound port, UDP DNS reaches the DNS port, TCP DNS
//!    bypasses the mesh, every exclusion bypasses, the kuma-dp user is not
//!    redirected, and its loopback hairpin goes through the inbound port.
//!
//! The report says which part failed; exit 0 only when both hold.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::Exit;
use crate::cli::{OutputFormat, VerifyArgs};
use crate::config::{Config, IpMatch, PortRange, Proto};
use crate::host::receipt::{self, Receipt};
use crate::host::sandbox::{self, Bench, Seen};
use crate::model::Family;
use crate::render::json::{schema_version, write_document};

/// Which part of the verification a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The live rules against the receipt.
    Live,
    /// The rules' behaviour in a throwaway namespace.
    Behaviour,
}

/// One check (the eBPF mode's verify makes the same).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub part: Part,
    /// `None`: not about one family.
    pub family: Option<Family>,
    pub check: String,
    pub pass: bool,
    pub detail: String,
}

/// `verify --output json`, both modes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    schema_version: u32,
    /// `iptables` or `ebpf`.
    pub mode: &'static str,
    pub receipt: String,
    /// Part 1 held: what is installed (rules; programs and maps) is the receipt's.
    pub live_in_place: bool,
    /// Part 2 held: every behaviour check passed.
    pub behaviour_proven: bool,
    pub checks: Vec<Check>,
    pub passed: usize,
    pub failed: usize,
    pub not_checked: Vec<String>,
}

impl Report {
    pub fn new(mode: &'static str, receipt: &Path, checks: Vec<Check>) -> Report {
        let failed = checks.iter().filter(|c| !c.pass).count();
        let part_ok = |p: Part| checks.iter().filter(|c| c.part == p).all(|c| c.pass);
        Report {
            schema_version: schema_version::VERIFY,
            mode,
            receipt: receipt.display().to_string(),
            live_in_place: part_ok(Part::Live),
            behaviour_proven: part_ok(Part::Behaviour),
            passed: checks.len() - failed,
            failed,
            checks,
            not_checked: Vec::new(),
        }
    }

    /// Writes the report as JSON, or as text with `text`; exit 0 only when
    /// every check passed.
    pub fn finish(
        &self,
        output: OutputFormat,
        text: impl FnOnce(&mut dyn Write, &Report) -> std::io::Result<()>,
    ) -> anyhow::Result<Exit> {
        let mut out = std::io::stdout().lock();
        match output {
            OutputFormat::Json => write_document(&mut out, self)?,
            OutputFormat::Text => text(&mut out, self)?,
        }
        out.flush()?;
        Ok(if self.failed == 0 {
            Exit::Success
        } else {
            Exit::Failure
        })
    }
}

const SUBNETS: [[u8; 3]; 4] = [
    [10, 253, 77],
    [172, 31, 253],
    [192, 168, 253],
    [100, 64, 253],
];
const REMOTES4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 10),
    Ipv4Addr::new(198, 51, 100, 10),
    Ipv4Addr::new(203, 0, 113, 10),
];
const REMOTES6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0x7470, 0, 0, 0, 0, 0x10),
    Ipv6Addr::new(0x2001, 0xdb8, 0x7471, 0, 0, 0, 0, 0x10),
];

/// Every address or network the configuration names.
fn named_networks(cfg: &Config, dns: &[IpAddr]) -> Vec<ipnet::IpNet> {
    let r = &cfg.redirect;
    r.inbound
        .exclude_ips
        .iter()
        .chain(r.outbound.exclude_ips.iter())
        .map(|m| m.net)
        .chain(r.vnet.networks.iter().map(|n| n.cidr.net))
        .chain(dns.iter().map(|ip| ipnet::IpNet::from(*ip)))
        .collect()
}

fn free<T: Copy + Into<IpAddr>>(candidates: &[T], taken: &[ipnet::IpNet]) -> T {
    *candidates
        .iter()
        .find(|c| !taken.iter().any(|n| n.contains(&(**c).into())))
        .unwrap_or(&candidates[0])
}

/// A host address inside an excluded network (its first host).
fn inside(m: &IpMatch) -> IpAddr {
    match m.net {
        ipnet::IpNet::V4(n) if n.prefix_len() < 31 => {
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1))
        }
        ipnet::IpNet::V6(n) if n.prefix_len() < 127 => {
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) + 1))
        }
        n => n.addr(),
    }
}

/// A port neither excluded nor (when a list of included ports exists) left out.
pub(crate) fn pick_port(include: &[u16], exclude: &[u16], from: u16) -> u16 {
    if let Some(p) = include.first() {
        return *p;
    }
    (from..u16::MAX)
        .find(|p| !exclude.contains(p))
        .unwrap_or(from)
}

struct Run<'a> {
    bench: &'a Bench,
    seen: mpsc::Receiver<Seen>,
    checks: Vec<Check>,
}

impl Run<'_> {
    fn record(&mut self, family: Family, check: String, result: Result<String, String>) {
        let (pass, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.checks.push(Check {
            part: Part::Behaviour,
            family: Some(family),
            check,
            pass,
            detail,
        });
    }

    /// What a listener reported about the connection from `client`. A
    /// listener reports after it answered, so the report of an earlier
    /// check can arrive late: reports of other connections are skipped.
    fn seen_from(&self, client: SocketAddr) -> Option<Seen> {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(s) if s.peer == client => return Some(s),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// A TCP probe that must end at `want` (a listener tag), and, when
    /// `original` is given, with that original destination.
    fn tcp(&mut self, family: Family, check: String, p: Tcp) {
        let Tcp {
            from_peer,
            uid,
            source,
            dst,
            want,
            original,
        } = p;
        let ns = if from_peer {
            &self.bench.peer
        } else {
            &self.bench.host
        };
        let result = match sandbox::tcp_probe(ns, uid, source, dst) {
            Err(e) => Err(format!("connection failed: {e:#}")),
            Ok((got, _)) if got != want => {
                Err(format!("reached the {got} listener, expected {want}"))
            }
            Ok((got, client)) => match original {
                None => Ok(format!("reached the {got} listener")),
                Some(o) => match self.seen_from(client) {
                    Some(s) if s.original == Some(o) => Ok(format!(
                        "reached the {got} listener, original destination {o}"
                    )),
                    Some(s) => Err(format!(
                        "original destination {:?}, expected {o}",
                        s.original
                    )),
                    None => Err("the listener reported nothing".to_string()),
                },
            },
        };
        self.record(family, check, result);
    }

    fn udp(&mut self, family: Family, check: String, uid: u32, dst: SocketAddr, want: &str) {
        let result = match sandbox::udp_probe(&self.bench.host, uid, dst) {
            Err(e) => Err(format!("{e:#}")),
            Ok(got) if got == want => Ok(format!("answered by {got}")),
            Ok(got) => Err(format!("answered by {got}, expected {want}")),
        };
        self.record(family, check, result);
    }
}

/// One TCP probe: who connects where, and which listener must answer.
struct Tcp {
    from_peer: bool,
    uid: u32,
    source: Option<IpAddr>,
    dst: SocketAddr,
    want: &'static str,
    original: Option<SocketAddr>,
}

/// From the host under test, as `uid`.
fn from_host(uid: u32, dst: SocketAddr, want: &'static str, original: Option<SocketAddr>) -> Tcp {
    Tcp {
        from_peer: false,
        uid,
        source: None,
        dst,
        want,
        original,
    }
}

/// From the peer (inbound), optionally from a given source address.
fn from_peer(
    source: Option<IpAddr>,
    dst: SocketAddr,
    want: &'static str,
    original: Option<SocketAddr>,
) -> Tcp {
    Tcp {
        from_peer: true,
        uid: 0,
        source,
        dst,
        want,
        original,
    }
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// A UID that no rule exempts: the "application".
fn application_uid(r: &Receipt) -> u32 {
    let excluded = |u: u32| {
        u == r.uid
            || r.config
                .redirect
                .outbound
                .exclude_uids
                .iter()
                .any(|e| e.uids.contains(u))
    };
    (1000..65534u32)
        .rev()
        .chain(std::iter::once(65534))
        .find(|u| !excluded(*u))
        .unwrap_or(65534)
}

fn family_ips(
    bench: &Bench,
    family: Family,
    remote4: Ipv4Addr,
    remote6: Ipv6Addr,
) -> (IpAddr, IpAddr, IpAddr) {
    let a = &bench.addrs;
    match family {
        Family::Ipv4 => (
            IpAddr::V4(a.host4),
            IpAddr::V4(a.peer4),
            IpAddr::V4(remote4),
        ),
        Family::Ipv6 => (
            IpAddr::V6(a.host6),
            IpAddr::V6(a.peer6),
            IpAddr::V6(remote6),
        ),
    }
}

fn any(family: Family, port: u16) -> SocketAddr {
    match family {
        Family::Ipv4 => sa(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        Family::Ipv6 => sa(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    }
}

fn check_family(
    run: &mut Run<'_>,
    r: &Receipt,
    family: Family,
    remote4: Ipv4Addr,
    remote6: Ipv6Addr,
    tx: &mpsc::Sender<Seen>,
) -> anyhow::Result<()> {
    let cfg = &r.config;
    let rd = &cfg.redirect;
    let bench = run.bench;
    let (host_ip, _peer_ip, remote) = family_ips(bench, family, remote4, remote6);
    let app = application_uid(r);
    let uid = r.uid;
    let t = family.title();
    sandbox::add_local(&bench.peer, remote)?;

    // Listeners: ours on the redirect ports, the real destinations in the peer.
    sandbox::tcp_listener(
        &bench.host,
        any(family, rd.outbound.port),
        "outbound",
        tx.clone(),
    )?;
    if rd.inbound.port != rd.outbound.port {
        sandbox::tcp_listener(
            &bench.host,
            any(family, rd.inbound.port),
            "inbound",
            tx.clone(),
        )?;
    }
    let mut peer_ports: Vec<u16> = Vec::new();
    let mut listen_peer = |port: u16| -> anyhow::Result<()> {
        if !peer_ports.contains(&port) {
            sandbox::tcp_listener(&bench.peer, any(family, port), "remote", tx.clone())?;
            peer_ports.push(port);
        }
        Ok(())
    };

    // Outbound.
    let out_port = pick_port(&rd.outbound.include_ports, &rd.outbound.exclude_ports, 80);
    listen_peer(out_port)?;
    let dst = sa(remote, out_port);
    if rd.outbound.enabled {
        run.tcp(
            family,
            format!(
                "{t} outbound TCP to {dst} is redirected to port {}",
                rd.outbound.port
            ),
            from_host(app, dst, "outbound", Some(dst)),
        );
    } else {
        run.tcp(
            family,
            format!("{t} outbound TCP to {dst} is not redirected (outbound redirection is off)"),
            from_host(app, dst, "remote", None),
        );
    }
    run.tcp(
        family,
        format!("{t} the kuma-dp user (UID {uid}) is not redirected"),
        from_host(uid, dst, "remote", None),
    );
    if rd.outbound.enabled && !rd.outbound.include_ports.is_empty() {
        let p = pick_port(&[], &rd.outbound.include_ports, 80);
        listen_peer(p)?;
        let d = sa(remote, p);
        run.tcp(
            family,
            format!("{t} outbound TCP to port {p}, not among the included ports, bypasses"),
            from_host(app, d, "remote", None),
        );
    }
    if rd.outbound.include_ports.is_empty() {
        for p in &rd.outbound.exclude_ports {
            listen_peer(*p)?;
            let d = sa(remote, *p);
            run.tcp(
                family,
                format!("{t} excluded outbound port {p} bypasses"),
                from_host(app, d, "remote", None),
            );
        }
    }
    for m in rd
        .outbound
        .exclude_ips
        .iter()
        .filter(|m| m.is_ipv4() == (family == Family::Ipv4))
    {
        let ip = inside(m);
        sandbox::add_local(&bench.peer, ip)?;
        let d = sa(ip, out_port);
        run.tcp(
            family,
            format!("{t} excluded outbound address {m} ({d}) bypasses"),
            from_host(app, d, "remote", None),
        );
    }
    for ex in &rd.outbound.exclude_uids {
        let port = ex
            .ports
            .first()
            .map(|r: &PortRange| r.first)
            .unwrap_or(out_port);
        if ex.protocols.contains(&Proto::Tcp) {
            listen_peer(port)?;
            let d = sa(remote, port);
            run.tcp(
                family,
                format!(
                    "{t} owner exclusion '{}' (UID {}, TCP port {port}) bypasses",
                    ex.text, ex.uids.first
                ),
                from_host(ex.uids.first, d, "remote", None),
            );
        }
    }

    // Inbound.
    let in_port = pick_port(&rd.inbound.include_ports, &rd.inbound.exclude_ports, 8080);
    sandbox::tcp_listener(&bench.host, any(family, in_port), "application", tx.clone())?;
    let d = sa(host_ip, in_port);
    if rd.inbound.enabled {
        run.tcp(
            family,
            format!(
                "{t} inbound TCP to {d} is redirected to port {}",
                rd.inbound.port
            ),
            from_peer(None, d, "inbound", Some(d)),
        );
    } else {
        run.tcp(
            family,
            format!("{t} inbound TCP to {d} is not redirected (inbound redirection is off)"),
            from_peer(None, d, "application", None),
        );
    }
    if rd.inbound.enabled && !rd.inbound.include_ports.is_empty() {
        let p = pick_port(&[], &rd.inbound.include_ports, 8080);
        sandbox::tcp_listener(&bench.host, any(family, p), "application", tx.clone())?;
        let d = sa(host_ip, p);
        run.tcp(
            family,
            format!("{t} inbound TCP to port {p}, not among the included ports, bypasses"),
            from_peer(None, d, "application", None),
        );
    }
    if rd.inbound.enabled && rd.inbound.include_ports.is_empty() {
        for p in &rd.inbound.exclude_ports {
            sandbox::tcp_listener(&bench.host, any(family, *p), "application", tx.clone())?;
            let d = sa(host_ip, *p);
            run.tcp(
                family,
                format!("{t} excluded inbound port {p} bypasses"),
                from_peer(None, d, "application", None),
            );
        }
    }
    if rd.inbound.enabled {
        for m in rd
            .inbound
            .exclude_ips
            .iter()
            .filter(|m| m.is_ipv4() == (family == Family::Ipv4))
        {
            let src = inside(m);
            match src {
                IpAddr::V4(a) => {
                    bench
                        .peer
                        .ip(&["addr", "add", &format!("{a}/32"), "dev", "tpv1"])?
                }
                IpAddr::V6(a) => bench.peer.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{a}/128"),
                    "dev",
                    "tpv1",
                    "nodad",
                ])?,
            }
            run.tcp(
                family,
                format!("{t} inbound TCP from excluded source {m} ({src}) bypasses"),
                from_peer(Some(src), d, "application", None),
            );
        }
        // The kuma-dp user's hairpin to a local, non-localhost address (what
        // kumactl's validator checks): 127.0.0.6 / ::6 through the inbound port.
        let (from, to) = match family {
            Family::Ipv4 => (
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)),
            ),
            Family::Ipv6 => (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(crate::host::netif::PASSTHROUGH_V6),
            ),
        };
        let d = sa(to, 23456);
        run.tcp(
            family,
            format!("{t} the kuma-dp user's loopback hairpin to {d} goes through the inbound port"),
            Tcp {
                from_peer: false,
                uid,
                source: Some(from),
                dst: d,
                want: "inbound",
                original: Some(d),
            },
        );
    }

    // DNS, when this family's rules redirect it.
    let applied = r
        .family(family)
        .map(|f| f.applied.as_str())
        .unwrap_or_default();
    if applied.contains("--dport 53 -j REDIRECT") {
        let server = if rd.dns.capture_all {
            match family {
                Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
                Family::Ipv6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x7470, 0, 0, 0, 0, 0x53)),
            }
        } else {
            match r
                .dns_servers
                .iter()
                .find(|s| s.is_ipv4() == (family == Family::Ipv4))
            {
                Some(s) => *s,
                None => return Ok(()),
            }
        };
        let real_ns = if server.is_loopback() {
            &bench.host
        } else {
            &bench.peer
        };
        if !server.is_loopback() {
            sandbox::add_local(&bench.peer, server)?;
        } else if server != IpAddr::V4(Ipv4Addr::LOCALHOST) && server.is_ipv6() {
            sandbox::add_local(&bench.host, server)?;
        }
        let local = match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        // The DNS proxy runs as the kuma-dp user: the conntrack zone rules match on it.
        sandbox::udp_responder(&bench.host, uid, sa(local, rd.dns.port), "dns-proxy")?;
        sandbox::udp_responder(real_ns, 0, sa(server, 53), "dns-server")?;
        sandbox::tcp_listener(real_ns, sa(server, 53), "dns-server", tx.clone())?;
        let d = sa(server, 53);
        run.udp(
            family,
            format!("{t} UDP DNS to {d} reaches the DNS port {}", rd.dns.port),
            app,
            d,
            "dns-proxy",
        );
        run.udp(
            family,
            format!("{t} the kuma-dp user's UDP DNS to {d} is not redirected"),
            uid,
            d,
            "dns-server",
        );
        run.tcp(
            family,
            format!("{t} TCP DNS to {d} goes to the server (kumactl's TCP/53 bypass)"),
            from_host(app, d, "dns-server", None),
        );
    }
    Ok(())
}

fn apply_receipt_rules(bench: &Bench, r: &Receipt) -> anyhow::Result<()> {
    for f in &r.families {
        let text = crate::host::canonical::for_empty_namespace(&f.applied);
        bench
            .host
            .cmd(&f.executables.restore.display().to_string())
            .arg("--noflush")
            .stdin(text)
            .run()
            .with_context(|| {
                format!(
                    "applying the installed {} rules in the throwaway namespace",
                    f.family.title()
                )
            })?;
        if f.family == Family::Ipv6 {
            sandbox::add_local(&bench.host, IpAddr::V6(crate::host::netif::PASSTHROUGH_V6))?;
        }
    }
    Ok(())
}

/// Part 1: the live rules of every family against the receipt.
fn live_checks(r: &Receipt, path: &std::path::Path) -> Vec<Check> {
    let mut checks = Vec::new();
    for f in &r.families {
        let exes = crate::host::backend::Executables::from_receipt(f);
        let check = format!(
            "{} live rules ({}, {}) are the receipt's",
            f.family.title(),
            f.mode,
            f.executables.save.display()
        );
        let (pass, detail) = match exes.save_all() {
            Err(e) => (false, format!("cannot read them: {e:#}")),
            Ok((_, saved)) => {
                let st = crate::ops::status::family_status(f, &saved);
                if st.in_place {
                    let n: usize = f.tables.iter().map(|t| t.rules.len()).sum();
                    (
                        true,
                        format!("all {n} rules in place, nothing else of ours"),
                    )
                } else {
                    (false, st.drift.join("; "))
                }
            }
        };
        checks.push(Check {
            part: Part::Live,
            family: Some(f.family),
            check,
            pass,
            detail,
        });
        if f.family == Family::Ipv6 {
            let there = crate::host::netif::has_passthrough_v6(&r.loopback);
            checks.push(Check {
                part: Part::Live,
                family: Some(f.family),
                check: format!("::6 is on {}", r.loopback),
                pass: there,
                detail: if there {
                    "present".to_string()
                } else {
                    "missing: inbound passthrough from ::6 cannot work".to_string()
                },
            });
        }
    }
    if let Some(note) = r.pending_note(path) {
        checks.push(Check {
            part: Part::Live,
            family: None,
            check: "no unfinished install or uninstall".to_string(),
            pass: false,
            detail: format!("{note}; run it again"),
        });
    }
    checks
}

pub fn run(args: &VerifyArgs) -> anyhow::Result<Exit> {
    if !crate::host::is_root() {
        anyhow::bail!("verify builds throwaway network namespaces and needs root privileges");
    }
    let path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let r = match receipt::read(&path)? {
        receipt::Loaded::Found(r) => *r,
        receipt::Loaded::Missing => anyhow::bail!(
            "nothing to verify: no install receipt at {} (install with tproxyctl first, or pass --receipt)",
            path.display()
        ),
        receipt::Loaded::Unreadable(why) => anyhow::bail!(
            "nothing to verify: the receipt {} cannot be used ({why}); `tproxyctl status` shows the rules found by their comments, `tproxyctl install transparent-proxy` writes a new receipt",
            path.display()
        ),
    };
    if r.ebpf.is_some() {
        return crate::ops::ebpf_verify::run(args, &r, &path);
    }
    let live = live_checks(&r, &path);
    let taken = named_networks(&r.config, &r.dns_servers);
    let subnet = SUBNETS
        .iter()
        .copied()
        .find(|s| {
            let ip = IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], 1));
            !taken.iter().any(|n| n.contains(&ip))
        })
        .unwrap_or(SUBNETS[0]);
    let remote4 = free(&REMOTES4, &taken);
    let remote6 = free(&REMOTES6, &taken);
    let bench = Bench::new("verify", subnet)?;
    apply_receipt_rules(&bench, &r)?;
    let (tx, rx) = mpsc::channel();
    let mut run = Run {
        bench: &bench,
        seen: rx,
        checks: live,
    };
    for f in &r.families {
        check_family(&mut run, &r, f.family, remote4, remote6, &tx)
            .with_context(|| format!("setting up the {} checks", f.family.title()))?;
    }
    let mut not_checked = Vec::new();
    if !r.config.redirect.vnet.networks.is_empty() {
        not_checked.push("--vnet rules (they need container bridges)".to_string());
    }
    let mut report = Report::new("iptables", &path, run.checks);
    report.not_checked = not_checked;
    report.finish(args.output, write_text)
}

fn write_text(out: &mut dyn Write, report: &Report) -> std::io::Result<()> {
    let ok = |b: bool| if b { "OK" } else { "FAILED" };
    for (part, title) in [
        (
            Part::Live,
            format!(
                "part 1: the live rules against the receipt {}",
                report.receipt
            ),
        ),
        (
            Part::Behaviour,
            "part 2: the rules' behaviour, in a throwaway network namespace".to_string(),
        ),
    ] {
        writeln!(out, "{title}")?;
        for c in report.checks.iter().filter(|c| c.part == part) {
            writeln!(
                out,
                "{}  {}: {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.check,
                c.detail
            )?;
        }
    }
    for n in &report.not_checked {
        writeln!(out, "SKIP  {n}")?;
    }
    writeln!(
        out,
        "{} checks: {} passed, {} failed (live rules: {}, behaviour: {})",
        report.checks.len(),
        report.passed,
        report.failed,
        ok(report.live_in_place),
        ok(report.behaviour_proven)
    )
}
