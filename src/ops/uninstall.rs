//! `tproxyctl uninstall transparent-proxy`: remove exactly what an install
//! (ours or kumactl's) put there, holding the host lock — found by the
//! receipt (and the record of an unfinished run), by the comment prefix and
//! the `KUMA_MESH` chain names, and for installs made with comments off by
//! content: the kernel's form of what the configuration plans, and the DNS
//! and conntrack zone rules by their shape. Deletes are targeted, so other
//! rules keep their order and counters. Also removes `::6` if we added it
//! (only once the IPv6 rules that need it are gone), our firewalld entries,
//! and the receipt. Keeps going on errors, reports all of them, and never
//! reports success while rules of ours remain.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::Exit;
use crate::cli::UninstallArgs;
use crate::config::Config;
use crate::host::apply::{self, Known, Owned, RestoreOptions};
use crate::host::backend::{self, Executables};
use crate::host::receipt::{self, FamilyReceipt, FirewalldReceipt, Loaded, Mode, Receipt};
use crate::host::save::{Saved, is_our_chain};
use crate::host::{canonical, netif};
use crate::model::Family;
use crate::ops::common::{self, flush_warnings};
use crate::persist::firewalld;
use crate::plan;
use crate::ui;

/// One backend of one family that may hold rules of ours.
struct Target {
    exes: Executables,
    before: Saved,
    known: Known,
    owned: Owned,
    /// Tables an install created there (nft removes them once empty).
    created: Vec<crate::model::TableName>,
    /// Built-in chains an install made nft create in existing tables.
    base_created: Vec<(crate::model::TableName, String)>,
}

pub fn run(args: &UninstallArgs) -> anyhow::Result<Exit> {
    let cfg = common::load_config(&args.tp, Some(&args.apply))?;
    common::require_root(cfg.dry_run)?;
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let mut timings = common::Timings::start();
    let _lock = if cfg.dry_run {
        None
    } else {
        Some(common::begin_change(&cfg, &receipt_path, "uninstall")?)
    };
    timings.step("lock");
    let (rec, damaged) = load_receipt(&receipt_path)?;
    let ebpf_rec = rec.as_ref().filter(|r| r.ebpf.is_some());
    if cfg.ebpf.enabled || ebpf_rec.is_some() {
        return crate::ops::ebpf::uninstall(&cfg, &receipt_path, ebpf_rec);
    }
    let mut warnings = Vec::new();
    let phases = crate::ui::Phases::start("looking for transparent proxy rules");
    let (targets, mut errors) = find_targets(&cfg, rec.as_ref(), &mut warnings)?;
    flush_warnings(&mut warnings);

    let fw = FirewalldPlan::new(
        &cfg,
        rec.as_ref(),
        args.apply.firewalld_direct_file.as_deref(),
    );
    let fw_ours = fw.present();
    let nothing = targets.iter().all(|t| t.owned.is_empty()) && fw_ours.is_empty();
    if cfg.dry_run {
        return dry_run(&targets, rec.as_ref(), &fw, &fw_ours, nothing);
    }
    if nothing && rec.is_none() {
        if damaged {
            receipt::remove(&receipt_path)?;
            ui::info(format!(
                "removed the damaged receipt {}",
                receipt_path.display()
            ));
        }
        ui::info("no transparent proxy rules detected. No cleanup necessary");
        return Ok(Exit::Success);
    }

    let opts = RestoreOptions::from_config(&cfg);
    phases.phase("removing the rules");
    let results = remove_all(&targets, &opts);
    let mut v6_ok = true;
    for (t, r) in targets.iter().zip(results) {
        if let Err(e) = r {
            v6_ok &= t.exes.family != Family::Ipv6;
            errors.push(format!("{e:#}"));
        }
    }
    // ::6 goes only when the IPv6 rules that rely on it are gone.
    if let Some(r) = &rec
        && r.ipv6_loopback_ours()
    {
        if v6_ok {
            if let Err(e) = netif::remove_passthrough_v6(&r.loopback) {
                errors.push(format!("{e:#}"));
            }
        } else {
            ui::info(format!(
                "::6 stays on {}: the IPv6 rules that use it could not all be removed",
                r.loopback
            ));
        }
    }
    if let Err(e) = fw.remove() {
        errors.push(format!("{e:#}"));
    }
    if errors.is_empty() {
        receipt::remove(&receipt_path)?;
        timings.step("find, remove, read back");
        if cfg.verbose {
            ui::info(timings.report());
        }
        ui::info("transparent proxy cleanup completed successfully");
        Ok(Exit::Success)
    } else {
        for e in &errors {
            ui::info(format!("error: {e}"));
        }
        anyhow::bail!(
            "uninstall finished with {} error(s); the receipt {} is kept so it can be run again",
            errors.len(),
            receipt_path.display()
        )
    }
}

/// The receipt, if a usable one exists; a damaged one is reported (true)
/// and the rules are found without it.
fn load_receipt(path: &Path) -> anyhow::Result<(Option<Receipt>, bool)> {
    let loaded = receipt::read(path)?;
    let damaged = matches!(loaded, Loaded::Unreadable(_));
    if let Loaded::Unreadable(why) = &loaded {
        ui::warn(format!(
            "the receipt {} cannot be used ({why}); the rules are found by their comments and chain names instead (and by this configuration, for rules without comments)",
            path.display()
        ));
    }
    let rec = loaded.into_receipt();
    if let Some(note) = rec.as_ref().and_then(|r| r.pending_note(path)) {
        ui::warn(note);
    }
    Ok((rec, damaged))
}

fn dry_run(
    targets: &[Target],
    rec: Option<&Receipt>,
    fw: &FirewalldPlan,
    fw_ours: &[String],
    nothing: bool,
) -> anyhow::Result<Exit> {
    if !fw_ours.is_empty() {
        ui::info(format!(
            "[dry-run]: would remove {} entries from {}",
            fw_ours.len(),
            fw.path.display()
        ));
    }
    let mut out = std::io::stdout().lock();
    for t in targets.iter().filter(|t| !t.owned.is_empty()) {
        writeln!(
            out,
            "### {} ({}) ###\n\n{}",
            t.exes.family.title(),
            t.exes.mode,
            apply::transaction_input(&t.owned, None, None).trim_end()
        )?;
        writeln!(out)?;
    }
    if let Some(r) = rec
        && r.ipv6_loopback_ours()
    {
        ui::info(format!(
            "[dry-run]: would remove ::6/128 from {}",
            r.loopback
        ));
    }
    if nothing {
        ui::info("no transparent proxy rules detected. No cleanup necessary");
    }
    Ok(Exit::Success)
}

/// Why a backend is looked at (in order of authority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// The receipt records an install there.
    Installed,
    /// An unfinished run recorded it may add rules there.
    Unfinished,
    /// Configured or found on the host.
    Found,
}

/// Every backend that may hold rules of ours, with those rules: the
/// receipt's backends (and, when one of them holds none of its rules — a
/// stale receipt — the other backends too); else the configured
/// executables; else every nft and legacy backend found, both families.
fn find_targets(
    cfg: &Config,
    rec: Option<&Receipt>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Vec<Target>, Vec<String>)> {
    let mut errors = Vec::new();
    let mut candidates: Vec<(Executables, Source)> = Vec::new();
    if let Some(r) = rec {
        for f in r.all_records() {
            let source = if r.families.contains(f) {
                Source::Installed
            } else {
                Source::Unfinished
            };
            let exes = Executables::from_receipt(f);
            if !exes.save.exists() || !exes.restore.exists() {
                warnings.push(format!(
                    "[{}] the executables recorded in the receipt are gone ({}); looking for others",
                    f.family.tool(),
                    exes.restore.display()
                ));
                continue;
            }
            match candidates.iter_mut().find(|(e, _)| *e == exes) {
                Some((_, s)) => *s = (*s).min(source),
                None => candidates.push((exes, source)),
            }
        }
    }
    for family in Family::ALL {
        if candidates.iter().any(|(e, _)| e.family == family) {
            continue;
        }
        if let Some(exes) = backend::configured(family, &cfg.iptables_executables)? {
            candidates.push((exes, Source::Found));
            continue;
        }
        candidates.extend(all_backends(family).into_iter().map(|e| (e, Source::Found)));
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut i = 0;
    while i < candidates.len() {
        let (exes, source) = candidates[i].clone();
        i += 1;
        let t = match target(cfg, rec, exes, warnings) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        if source == Source::Installed && t.owned.is_empty() {
            // A stale receipt: look where the rules may be instead.
            warnings.push(format!(
                "[{}] the {} backend the receipt names holds none of its rules (were they lost in a reboot, or installed again elsewhere?); looking at the other backends too",
                t.exes.family.tool(),
                t.exes.mode
            ));
            for e in all_backends(t.exes.family) {
                if !candidates
                    .iter()
                    .any(|(c, _)| c.save == e.save && c.family == e.family)
                {
                    candidates.push((e, Source::Found));
                }
            }
        }
        if !t.owned.is_empty() || source != Source::Found {
            targets.push(t);
        }
    }
    Ok((targets, errors))
}

fn all_backends(family: Family) -> Vec<Executables> {
    [Mode::Nft, Mode::Legacy]
        .into_iter()
        .filter_map(|m| backend::find(family, m))
        .collect()
}

/// Reads one backend and finds our rules in it.
fn target(
    cfg: &Config,
    rec: Option<&Receipt>,
    exes: Executables,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Target> {
    let (_, before) = exes.save_all()?;
    let records: Vec<&FamilyReceipt> = rec
        .into_iter()
        .flat_map(|r| r.family_records(exes.family))
        .filter(|r| r.executables.save == exes.save && r.mode == exes.mode)
        .collect();
    let mut known = Known::from_records(records.iter().copied());
    if known.is_empty() && common::comment_less_install(&before) {
        match common::comment_less_known(cfg, &exes, &before, warnings) {
            Ok(k) => known.merge(k),
            Err(e) => warnings.push(format!(
                "[{}] rules without comments could not all be identified ({e:#}); only the KUMA_MESH chains and the jumps to them are removed",
                exes.family.tool()
            )),
        }
    }
    let owned = apply::find_owned(&before, &known);
    let created = records
        .iter()
        .flat_map(|r| r.tables.iter().filter(|t| t.created).map(|t| t.table))
        .collect();
    let mut base_created: Vec<(crate::model::TableName, String)> = Vec::new();
    for t in records.iter().flat_map(|r| r.tables.iter()) {
        for c in &t.builtin_created {
            if !base_created.iter().any(|(tb, x)| *tb == t.table && x == c) {
                base_created.push((t.table, c.clone()));
            }
        }
    }
    Ok(Target {
        exes,
        before,
        known,
        owned,
        created,
        base_created,
    })
}

/// Removes every target's rules. Families and backends are separate tables:
/// side by side, unless legacy without --wait would make them compete for
/// the xtables lock.
fn remove_all(targets: &[Target], opts: &RestoreOptions) -> Vec<anyhow::Result<()>> {
    let sequential = opts.wait == 0 && targets.iter().any(|t| t.exes.mode == Mode::Legacy);
    if sequential {
        return targets.iter().map(|t| remove(t, opts)).collect();
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = targets
            .iter()
            .map(|t| s.spawn(|| remove(t, opts)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
            })
            .collect()
    })
}

/// Removes one target's rules and checks nothing of ours is left and
/// nothing else changed.
fn remove(t: &Target, opts: &RestoreOptions) -> anyhow::Result<()> {
    let tool = t.exes.family.tool();
    if t.owned.is_empty() {
        ui::info(format!(
            "[{tool}] no transparent proxy rules left in the {} backend",
            t.exes.mode
        ));
        return Ok(());
    }
    let input = apply::transaction_input(&t.owned, None, apply::policies_for(&t.exes, &t.before));
    apply::test_input(&t.exes, opts, &input)?;
    apply::apply_input(&t.exes, opts, &input)?;
    let (_, after) = t.exes.save_all()?;
    let left = apply::find_owned(&after, &t.known);
    if !left.is_empty() {
        let names: Vec<String> = left
            .rules
            .iter()
            .map(|(tb, l)| format!("{} {}", tb.as_str(), l.spec))
            .chain(
                left.chains
                    .iter()
                    .map(|(tb, c)| format!("{} chain {c}", tb.as_str())),
            )
            .collect();
        anyhow::bail!(
            "[{tool}] rules or chains of ours are still present after removal: {}",
            names.join("; ")
        );
    }
    // Everything else exactly as before (counters aside, which keep counting).
    let mut expected = t.before.rule_map();
    for (table, chain) in &t.owned.chains {
        expected.remove(&(table.as_str().to_string(), chain.clone()));
    }
    for (table, l) in &t.owned.rules {
        if let Some(v) = expected.get_mut(&(table.as_str().to_string(), l.chain.clone()))
            && let Some(i) = v.iter().position(|s| *s == l.spec)
        {
            v.remove(i);
        }
    }
    if after.rule_map() != expected {
        ui::warn(format!(
            "[{tool}] rules of other tools changed while ours were removed (not by us: only our rules are named in what we ran); compare {}-save with what you expect",
            t.exes.save.display()
        ));
    }
    for (table, chain) in &t.base_created {
        if let Err(e) = apply::delete_base_chain_if_pristine(&t.exes, *table, chain, &after) {
            ui::warn(format!("{e:#}"));
        }
    }
    for table in &t.created {
        match apply::delete_table_if_pristine(&t.exes, *table, &after) {
            Ok(true) => {}
            Ok(false) => {
                if t.exes.mode == Mode::Legacy && opts.verbose {
                    ui::info(format!(
                        "[{tool}] the empty legacy {} table stays (legacy tables cannot be removed from user space)",
                        table.as_str()
                    ));
                }
            }
            Err(e) => ui::warn(format!("{e:#}")),
        }
    }
    ui::info(format!(
        "[{tool}] removed {} rule(s) and {} chain(s) from the {} backend",
        t.owned.rule_count(&t.before),
        t.owned.chains.len(),
        t.exes.mode
    ));
    Ok(())
}

/// Our firewalld entries: where, and how they are recognised.
struct FirewalldPlan {
    path: PathBuf,
    records: Vec<FirewalldReceipt>,
    /// Without a receipt: the entries the configuration plans (comments on
    /// and off) for the kuma-dp UIDs found, for comment-less installs.
    planned: Vec<firewalld::Entry>,
    /// Without a receipt: DNS and conntrack zone entries by shape
    /// (ipv, table, chain, [`canonical::shape`] of the arguments), which
    /// count as ours when every UID they name is one of `uids`.
    dns_shapes: Vec<(String, String, String, String)>,
    uids: Vec<String>,
}

impl FirewalldPlan {
    fn new(cfg: &Config, rec: Option<&Receipt>, flag: Option<&Path>) -> Self {
        let records: Vec<FirewalldReceipt> = rec
            .map(|r| r.firewalld_records().cloned().collect())
            .unwrap_or_default();
        let path = records
            .first()
            .map(|f| f.path.clone())
            .or_else(|| flag.map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from(firewalld::DEFAULT_PATH));
        let mut fw = FirewalldPlan {
            path,
            records,
            planned: Vec::new(),
            dns_shapes: Vec::new(),
            uids: Vec::new(),
        };
        if rec.is_none() {
            fw.recognise_without_receipt(cfg);
        }
        fw
    }

    /// Fills `planned`, `dns_shapes` and `uids` (see the fields).
    fn recognise_without_receipt(&mut self, cfg: &Config) {
        let entries = firewalld::read_optional(&self.path)
            .ok()
            .flatten()
            .and_then(|t| firewalld::entries_in(&t).ok())
            .unwrap_or_default();
        for e in &entries {
            if let firewalld::Entry::Rule { chain, args, .. } = e
                && is_our_chain(chain)
            {
                for u in canonical::uids_in(args) {
                    if !self.uids.iter().any(|x| x == u) {
                        self.uids.push(u.to_string());
                    }
                }
            }
        }
        if let Ok(u) = common::kuma_dp_uid(cfg, &mut Vec::new()) {
            self.uids.push(u.to_string());
        }
        let servers = {
            let dns = &cfg.redirect.dns;
            if dns.enabled && !dns.capture_all {
                crate::host::resolv::nameservers(&dns.resolv_config_path, &mut Vec::new())
                    .unwrap_or_default()
            } else {
                Vec::new()
            }
        };
        for uid in self.uids.iter().filter_map(|u| u.parse::<u32>().ok()) {
            for comments in [true, false] {
                let mut c = cfg.clone();
                c.comments.disabled = !comments;
                self.planned.extend(firewalld::planned_entries(&plan_with(
                    &c,
                    uid,
                    servers.clone(),
                )));
            }
        }
        for (c, servers) in common::dns_shape_configs() {
            for e in firewalld::planned_entries(&plan_with(&c, 0, servers)) {
                if let firewalld::Entry::Rule {
                    ipv,
                    table,
                    chain,
                    args,
                    ..
                } = e
                    && !is_our_chain(&chain)
                    && !args.split_whitespace().any(is_our_chain)
                {
                    self.dns_shapes
                        .push((ipv, table, chain, canonical::shape(&args)));
                }
            }
        }
    }

    /// Whether an entry of the file is ours.
    fn is_ours(&self, e: &firewalld::Entry, listed: &[firewalld::Entry]) -> bool {
        if e.is_ours() || listed.iter().any(|l| l.same_as(e)) {
            return true;
        }
        match e {
            firewalld::Entry::Rule {
                ipv,
                table,
                chain,
                args,
                ..
            } => {
                let shape = canonical::shape(args);
                self.dns_shapes
                    .iter()
                    .any(|(i, t, c, s)| i == ipv && t == table && c == chain && *s == shape)
                    && canonical::uids_in(args)
                        .iter()
                        .all(|u| self.uids.iter().any(|x| x == u))
            }
            _ => false,
        }
    }

    /// Entries of ours in the file now (receipt form).
    fn present(&self) -> Vec<String> {
        let Ok(Some(text)) = firewalld::read_optional(&self.path) else {
            return Vec::new();
        };
        let Ok(entries) = firewalld::entries_in(&text) else {
            return Vec::new();
        };
        let mut listed: Vec<firewalld::Entry> = self.planned.clone();
        for s in self.records.iter().flat_map(|r| r.entries.iter()) {
            if let Ok(e) = firewalld::Entry::parse(s) {
                listed.push(e);
            }
        }
        entries
            .iter()
            .filter(|e| self.is_ours(e, &listed))
            .map(|e| e.to_string())
            .collect()
    }

    /// Removes them and checks none is left.
    fn remove(&self) -> anyhow::Result<()> {
        let records: Vec<&FirewalldReceipt> = self.records.iter().collect();
        let u = firewalld::unstore_all(&self.path, &records, &self.present())?;
        if !u.removed.is_empty() {
            ui::info(format!(
                "[firewalld] removed {} entries from {}{}",
                u.removed.len(),
                self.path.display(),
                if u.deleted {
                    " (and the file, which we had created)"
                } else {
                    ""
                }
            ));
            for n in firewalld::daemon::inspect(&self.path).uninstall_notices(&self.path, true) {
                ui::warn(format!("[firewalld] {n}"));
            }
        }
        let left = self.present();
        if !left.is_empty() {
            anyhow::bail!(
                "[firewalld] entries of ours are still in {}: {}",
                self.path.display(),
                left.join(" ")
            );
        }
        Ok(())
    }
}

/// The rule set `cfg` plans for kuma-dp UID `uid` and DNS `servers`
/// (both families; no host probing: a host being cleaned up may lack the
/// user or the modules).
fn plan_with(cfg: &Config, uid: u32, servers: Vec<IpAddr>) -> crate::model::RuleSet {
    let ff = plan::FamilyFacts {
        dns_servers: servers,
        docker_output: false,
        comments: !cfg.comments.disabled,
        conntrack: true,
        mangle: true,
    };
    let facts = plan::Facts {
        uid,
        loopback: netif::loopback_name(),
        v4: ff.clone(),
        v6: (cfg.ip_family_mode == crate::config::IpFamilyMode::DualStack).then_some(ff),
    };
    plan::plan(cfg, &facts).rules
}
