//! `tproxyctl status`: what is installed (from the receipt), by which
//! backend, each of our rules with its packet and byte counters, drift of the
//! live rules against the receipt, whether resolv.conf's servers changed
//! since the install (kumactl's Q6), whether something listens on the
//! redirect ports, and optionally whether a Dataplane file agrees. Text or
//! `--output json`. Exit 0 when the installed rules are all in place, 1
//! otherwise (not installed, drift, or a Dataplane mismatch).

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;

use serde::Serialize;

use crate::Exit;
use crate::cli::{OutputFormat, StatusArgs};
use crate::host::backend::{self, Executables};
use crate::host::receipt::{self, FamilyReceipt, Loaded, Mode};
use crate::host::save::{Saved, is_marked, is_our_chain};
use crate::host::{netif, readback, resolv};
use crate::model::{Family, TableName};
use crate::render::json::{schema_version, write_document};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    table: TableName,
    chain: String,
    rule: String,
    present: bool,
    packets: Option<u64>,
    bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyStatus {
    family: Family,
    backend: Mode,
    executables: crate::host::receipt::ExecutablePaths,
    pub in_place: bool,
    rules: Vec<RuleStatus>,
    /// Rules of ours (by comment or chain) the receipt does not list.
    unexpected: Vec<String>,
    /// Every difference from the receipt, named (empty: in place).
    pub drift: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DnsStatus {
    resolv_conf: String,
    servers_at_install: Vec<IpAddr>,
    servers_now: Vec<IpAddr>,
    changed: bool,
}

/// A redirect port and whether something listens on it (TCP).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    /// `outbound`, `inbound` or `dns`.
    pub name: &'static str,
    pub port: u16,
    pub listening: bool,
}

/// `outbound port 15001: listening`, as `status` prints it in either mode.
impl std::fmt::Display for PortStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.listening {
            "listening"
        } else {
            "nothing listens"
        };
        write!(f, "{} port {}: {state}", self.name, self.port)
    }
}

impl PortStatus {
    pub fn probe(name: &'static str, port: u16) -> PortStatus {
        PortStatus {
            name,
            port,
            listening: crate::host::tcp_listening(port),
        }
    }
}

/// `status --output json` of the iptables mode (and of no install).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    schema_version: u32,
    /// `iptables`; `null` when nothing is installed.
    mode: Option<&'static str>,
    installed: bool,
    receipt: String,
    tool: Option<String>,
    installed_at: Option<u64>,
    kuma_dp_uid: Option<u32>,
    families: Vec<FamilyStatus>,
    /// Rules with our markers found without a receipt (an install by kumactl).
    unowned: Vec<String>,
    ipv6_loopback: Option<bool>,
    dns: Option<DnsStatus>,
    ports: Vec<PortStatus>,
    dataplane: Option<Vec<String>>,
    problems: Vec<String>,
}

fn counters(c: Option<&str>) -> (Option<u64>, Option<u64>) {
    let Some(c) = c else { return (None, None) };
    let inner = c.trim_start_matches('[').trim_end_matches(']');
    let mut p = inner.split(':');
    (
        p.next().and_then(|x| x.parse().ok()),
        p.next().and_then(|x| x.parse().ok()),
    )
}

/// How the live rules of one family compare with its receipt: each rule
/// with its counters, and every difference named ([`readback::drift`]).
pub fn family_status(f: &FamilyReceipt, saved: &Saved) -> FamilyStatus {
    let mut rules = Vec::new();
    let mut listed: HashSet<(TableName, &str)> = HashSet::new();
    for t in &f.tables {
        // spec -> saved line, so thousands of rules stay a linear walk
        let live: std::collections::HashMap<&str, &crate::host::save::SavedLine> = saved
            .table(t.table)
            .map(|st| st.rules.iter().map(|l| (l.spec.as_str(), l)).collect())
            .unwrap_or_default();
        for r in &t.rules {
            listed.insert((t.table, r.line.as_str()));
            let found = live.get(r.line.as_str());
            let (packets, bytes) = counters(found.and_then(|l| l.counters.as_deref()));
            rules.push(RuleStatus {
                table: t.table,
                chain: r.chain.clone(),
                rule: r.line.clone(),
                present: found.is_some(),
                packets,
                bytes,
            });
        }
    }
    let mut unexpected = Vec::new();
    for table in TableName::ALL {
        if let Some(st) = saved.table(table) {
            for l in &st.rules {
                if (is_marked(&l.spec) || is_our_chain(&l.chain))
                    && !listed.contains(&(table, l.spec.as_str()))
                {
                    unexpected.push(format!("{} {}", table.as_str(), l.spec));
                }
            }
        }
    }
    let drift = readback::drift(&f.tables, saved);
    FamilyStatus {
        family: f.family,
        backend: f.mode,
        executables: f.executables.clone(),
        in_place: drift.is_empty() && unexpected.is_empty(),
        rules,
        unexpected,
        drift,
    }
}

/// Rules with our markers in any backend, for hosts without a receipt.
fn unowned_rules() -> Vec<String> {
    let mut out = Vec::new();
    for family in Family::ALL {
        for mode in [Mode::Nft, Mode::Legacy] {
            let Some(exes) = backend::find(family, mode) else {
                continue;
            };
            let Ok((_, saved)) = exes.save_all() else {
                continue;
            };
            for t in &saved.tables {
                for l in &t.rules {
                    if is_marked(&l.spec) || is_our_chain(&l.chain) {
                        out.push(format!("{} {mode} {} {}", family.tool(), t.name, l.spec));
                    }
                }
            }
        }
    }
    out
}

fn report(args: &StatusArgs, loaded: &Loaded, path: &std::path::Path) -> anyhow::Result<Report> {
    let mut problems = Vec::new();
    if let Loaded::Unreadable(why) = loaded {
        problems.push(format!(
            "the receipt {} cannot be used ({why}); the rules below were found by their comments and chain names; `tproxyctl uninstall transparent-proxy` removes them, `install` replaces the receipt",
            path.display()
        ));
    }
    if let Some(note) = loaded.receipt().and_then(|r| r.pending_note(path)) {
        problems.push(format!("{note}; run install or uninstall again to finish"));
    }
    let Some(r) = loaded.receipt() else {
        let unowned = unowned_rules();
        if unowned.is_empty() {
            problems.push("transparent proxy rules are not installed".to_string());
        } else if matches!(loaded, Loaded::Missing) {
            problems.push(format!(
                "{} transparent proxy rule(s) are installed without a tproxyctl receipt (kumactl?); `tproxyctl uninstall transparent-proxy` removes them",
                unowned.len()
            ));
        }
        return Ok(Report {
            schema_version: schema_version::STATUS,
            mode: None,
            installed: false,
            receipt: path.display().to_string(),
            tool: None,
            installed_at: None,
            kuma_dp_uid: None,
            families: Vec::new(),
            unowned,
            ipv6_loopback: None,
            dns: None,
            ports: Vec::new(),
            dataplane: None,
            problems,
        });
    };
    let mut families = Vec::new();
    for f in &r.families {
        match Executables::from_receipt(f).save_all() {
            Ok((_, saved)) => {
                let fs = family_status(f, &saved);
                if !fs.in_place {
                    problems.push(format!(
                        "[{}] the live rules drifted from the receipt: {} of {} rules missing, {} unexpected: {}",
                        f.family.tool(),
                        fs.rules.iter().filter(|r| !r.present).count(),
                        fs.rules.len(),
                        fs.unexpected.len(),
                        fs.drift.join("; ")
                    ));
                }
                families.push(fs);
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let has_v6 = r.families.iter().any(|f| f.family == Family::Ipv6);
    let ipv6_loopback = has_v6.then(|| netif::has_passthrough_v6(&r.loopback));
    if ipv6_loopback == Some(false) {
        problems.push(format!(
            "::6 is missing on {}: IPv6 inbound passthrough connections cannot be made",
            r.loopback
        ));
    }
    let d = &r.config.redirect.dns;
    let dns = (d.enabled && !d.capture_all).then(|| {
        let mut w = Vec::new();
        let now = resolv::nameservers(&d.resolv_config_path, &mut w).unwrap_or_default();
        let changed = now != r.dns_servers;
        if changed {
            problems.push(format!(
                "the name servers in {} changed since the install ({:?} → {:?}); DNS to the new ones is not redirected: install again, or use --redirect-all-dns-traffic",
                d.resolv_config_path.display(),
                r.dns_servers,
                now
            ));
        }
        DnsStatus {
            resolv_conf: d.resolv_config_path.display().to_string(),
            servers_at_install: r.dns_servers.clone(),
            servers_now: now,
            changed,
        }
    });
    let mut ports = Vec::new();
    let rd = &r.config.redirect;
    if rd.inbound.enabled {
        ports.push(("inbound", rd.inbound.port));
    }
    if rd.outbound.enabled {
        ports.push(("outbound", rd.outbound.port));
    }
    let ports: Vec<PortStatus> = ports
        .into_iter()
        .map(|(name, port)| PortStatus::probe(name, port))
        .collect();
    let dataplane = match &args.dataplane {
        Some(p) => {
            let dp = crate::model::dataplane::load(p)?;
            let diffs = crate::model::dataplane::compare_transparent_proxying(&dp, &r.config);
            for d in &diffs {
                problems.push(format!("{}: {d}", p.display()));
            }
            Some(diffs)
        }
        None => None,
    };
    Ok(Report {
        schema_version: schema_version::STATUS,
        mode: Some("iptables"),
        installed: true,
        receipt: path.display().to_string(),
        tool: Some(r.tool.clone()),
        installed_at: Some(r.installed_at),
        kuma_dp_uid: Some(r.uid),
        families,
        unowned: Vec::new(),
        ipv6_loopback,
        dns,
        ports,
        dataplane,
        problems,
    })
}

fn text(rep: &Report) -> String {
    let mut s = String::new();
    if !rep.installed {
        s.push_str(&format!(
            "not installed (no usable receipt at {})\n",
            rep.receipt
        ));
        for l in &rep.unowned {
            s.push_str(&format!("  found: {l}\n"));
        }
    } else {
        s.push_str(&format!(
            "installed by {} (receipt {}), kuma-dp UID {}\n",
            rep.tool.as_deref().unwrap_or("?"),
            rep.receipt,
            rep.kuma_dp_uid.unwrap_or_default()
        ));
        for f in &rep.families {
            s.push_str(&format!(
                "{} ({}, {}): {} rules, {}\n",
                f.family.title(),
                f.backend,
                f.executables.restore.display(),
                f.rules.len(),
                if f.in_place {
                    "all in place"
                } else {
                    "DRIFTED"
                }
            ));
            for r in &f.rules {
                let c = match (r.packets, r.bytes) {
                    (Some(p), Some(b)) => format!("{p:>8} pkts {b:>10} bytes"),
                    _ => format!("{:>8}", if r.present { "present" } else { "MISSING" }),
                };
                s.push_str(&format!("  {c}  {} {}\n", r.table.as_str(), r.rule));
            }
            for d in &f.drift {
                s.push_str(&format!("  DRIFT  {d}\n"));
            }
        }
        if let Some(v) = rep.ipv6_loopback {
            s.push_str(&format!(
                "::6 on loopback: {}\n",
                if v { "yes" } else { "MISSING" }
            ));
        }
        if let Some(d) = &rep.dns {
            s.push_str(&format!(
                "DNS servers at install {:?}, now {:?}{}\n",
                d.servers_at_install,
                d.servers_now,
                if d.changed { " (CHANGED)" } else { "" }
            ));
        }
        for p in &rep.ports {
            s.push_str(&format!("{p}\n"));
        }
    }
    for p in &rep.problems {
        s.push_str(&format!("problem: {p}\n"));
    }
    s
}

pub fn run(args: &StatusArgs) -> anyhow::Result<Exit> {
    let path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let loaded = receipt::read(&path)?;
    if let Some(r) = loaded.receipt()
        && r.ebpf.is_some()
    {
        return crate::ops::ebpf::status(r, &path, args.output);
    }
    let rep = report(args, &loaded, &path)?;
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => write_document(&mut out, &rep)?,
        OutputFormat::Text => out.write_all(text(&rep).as_bytes())?,
    }
    out.flush()?;
    Ok(if rep.problems.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}
