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
use std::path::{Path, PathBuf};

use crate::Exit;
use crate::cli::UninstallArgs;
use crate::config::Config;
use crate::host::apply::{self, Known, Owned, RestoreOptions};
use crate::host::backend::{self, Executables};
use crate::host::netif;
use crate::host::receipt::{self, FamilyReceipt, FirewalldReceipt, Loaded, Mode, Receipt};
use crate::host::save::Saved;
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
    /// The receipt names this backend for this family.
    recorded: bool,
    /// Tables an install created there (nft removes them once empty).
    created: Vec<crate::model::TableName>,
}

pub fn run(args: &UninstallArgs) -> anyhow::Result<Exit> {
    let cfg = common::load_config(&args.tp, Some(&args.apply))?;
    common::require_root(cfg.dry_run)?;
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let _lock = if cfg.dry_run {
        None
    } else {
        Some(common::begin_change(&cfg, &receipt_path, "uninstall")?)
    };
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
    // Families and backends are separate tables: remove side by side, unless
    // legacy without --wait would make them compete for the xtables lock.
    let sequential = opts.wait == 0 && targets.iter().any(|t| t.exes.mode == Mode::Legacy);
    let results: Vec<anyhow::Result<()>> = if sequential {
        targets.iter().map(|t| remove(t, &opts)).collect()
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = targets
                .iter()
                .map(|t| s.spawn(|| remove(t, &opts)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
                })
                .collect()
        })
    };
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
    let mut candidates: Vec<(Executables, bool)> = Vec::new();
    if let Some(r) = rec {
        for f in r.all_records() {
            let exes = Executables::from_receipt(f);
            if !exes.save.exists() || !exes.restore.exists() {
                warnings.push(format!(
                    "[{}] the executables recorded in the receipt are gone ({}); looking for others",
                    f.family.tool(),
                    exes.restore.display()
                ));
                continue;
            }
            if !candidates.iter().any(|(e, _)| *e == exes) {
                candidates.push((exes, true));
            }
        }
    }
    for family in Family::ALL {
        if candidates.iter().any(|(e, _)| e.family == family) {
            continue;
        }
        if let Some(exes) = backend::configured(family, &cfg.iptables_executables)? {
            candidates.push((exes, false));
            continue;
        }
        candidates.extend(all_backends(family).into_iter().map(|e| (e, false)));
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut i = 0;
    while i < candidates.len() {
        let (exes, recorded) = candidates[i].clone();
        i += 1;
        match target(cfg, rec, exes, recorded, warnings) {
            Ok(t) => {
                if t.recorded && t.owned.is_empty() {
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
                            candidates.push((e, false));
                        }
                    }
                }
                if !t.owned.is_empty() || t.recorded {
                    targets.push(t);
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
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
    recorded: bool,
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
    Ok(Target {
        exes,
        before,
        known,
        owned,
        recorded,
        created,
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
    /// Entries the configuration plans (comments on and off): for
    /// comment-less installs whose receipt is gone.
    planned: Vec<String>,
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
        let mut planned = Vec::new();
        if rec.is_none() {
            for comments in [true, false] {
                let mut c = cfg.clone();
                c.comments.disabled = !comments;
                if let Some(set) = planned_for(&c) {
                    planned.extend(firewalld::planned_forms(&set));
                }
            }
        }
        FirewalldPlan {
            path,
            records,
            planned,
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
        let mut listed: Vec<firewalld::Entry> = Vec::new();
        for s in self
            .records
            .iter()
            .flat_map(|r| r.entries.iter())
            .chain(self.planned.iter())
        {
            if let Ok(e) = firewalld::Entry::parse(s) {
                listed.push(e);
            }
        }
        entries
            .iter()
            .filter(|e| e.is_ours() || listed.iter().any(|l| l.same_as(e)))
            .map(|e| e.to_string())
            .collect()
    }

    /// Removes them and checks none is left.
    fn remove(&self) -> anyhow::Result<()> {
        let records: Vec<&FirewalldReceipt> = self.records.iter().collect();
        let u = firewalld::unstore_all(&self.path, &records, &self.planned)?;
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

/// The rule set `cfg` plans on this host, best effort (the kuma-dp user
/// may not exist on a host being cleaned up).
fn planned_for(cfg: &Config) -> Option<crate::model::RuleSet> {
    let uid = common::kuma_dp_uid(cfg, &mut Vec::new()).ok()?;
    let dns = &cfg.redirect.dns;
    let servers = if dns.enabled && !dns.capture_all {
        crate::host::resolv::nameservers(&dns.resolv_config_path, &mut Vec::new()).ok()?
    } else {
        Vec::new()
    };
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
    Some(plan::plan(cfg, &facts).rules)
}
