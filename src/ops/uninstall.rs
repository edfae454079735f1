//! `tproxyctl uninstall transparent-proxy`: remove exactly what an install
//! (ours or kumactl's) put there — found by the receipt, else by the comment
//! prefix and the `KUMA_MESH` chain names, else (comment-less installs) by
//! the canonical form of the planned rules — with targeted deletes, so other
//! rules keep their order and counters. Also removes `::6` if we added it and
//! the receipt. Keeps going on errors and reports all of them.

use std::collections::HashSet;
use std::io::Write;

use anyhow::Context;

use crate::Exit;
use crate::cli::UninstallArgs;
use crate::config::Config;
use crate::host::apply::{self, Owned, RestoreOptions};
use crate::host::backend::{self, Executables};
use crate::host::receipt::{self, FamilyReceipt, Mode, Receipt};
use crate::host::save::{Saved, SavedLine, is_our_chain};
use crate::host::{canonical, netif};
use crate::model::{Family, TableName};
use crate::ops::common::{self, flush_warnings};
use crate::persist::firewalld;
use crate::plan;
use crate::ui;

/// One backend of one family holding rules of ours.
struct Target {
    exes: Executables,
    before: Saved,
    owned: Owned,
    receipt: Option<FamilyReceipt>,
}

pub fn run(args: &UninstallArgs) -> anyhow::Result<Exit> {
    let cfg = common::load_config(&args.tp, Some(&args.apply))?;
    common::require_root(cfg.dry_run)?;
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let rec = receipt::load(&receipt_path)?;
    let mut warnings = Vec::new();
    let mut errors: Vec<String> = Vec::new();

    let candidates = candidate_backends(&cfg, rec.as_ref(), &mut warnings)?;
    let mut targets: Vec<Target> = Vec::new();
    for (exes, fr) in candidates {
        let before = match exes.save_all() {
            Ok((_, s)) => s,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        let lines = crate::ops::install::receipt_lines(fr.as_ref());
        let mut owned = apply::find_owned(&before, &|t, l: &SavedLine| {
            lines.contains(&(t, l.spec.clone()))
        });
        if fr.is_none() && comment_less(&before, &owned) {
            match comment_less_rules(&cfg, &exes, &before, &mut warnings) {
                Ok(extra) => {
                    let extra: HashSet<(TableName, String)> = extra.into_iter().collect();
                    owned = apply::find_owned(&before, &|t, l: &SavedLine| {
                        extra.contains(&(t, l.spec.clone()))
                    })
                }
                Err(e) => warnings.push(format!(
                    "[{}] rules without comments could not all be identified ({e:#}); only the KUMA_MESH chains and the jumps to them are removed",
                    exes.family.tool()
                )),
            }
        }
        if !owned.is_empty() || fr.is_some() {
            targets.push(Target {
                exes,
                before,
                owned,
                receipt: fr,
            });
        }
    }
    flush_warnings(&mut warnings);

    let fw_path = rec
        .as_ref()
        .and_then(|r| r.firewalld.as_ref().map(|f| f.path.clone()))
        .or_else(|| args.apply.firewalld_direct_file.clone())
        .unwrap_or_else(|| std::path::PathBuf::from(firewalld::DEFAULT_PATH));
    let fw_ours: Vec<String> = std::fs::read_to_string(&fw_path)
        .ok()
        .and_then(|text| firewalld::recognised(&text).ok())
        .unwrap_or_default();
    let nothing = targets.iter().all(|t| t.owned.is_empty())
        && fw_ours.is_empty()
        && rec.as_ref().is_none_or(|r| r.firewalld.is_none());
    if cfg.dry_run {
        if !fw_ours.is_empty() {
            ui::info(format!(
                "[dry-run]: would remove {} entries from {}",
                fw_ours.len(),
                fw_path.display()
            ));
        }
        let mut out = std::io::stdout().lock();
        for t in targets.iter().filter(|t| !t.owned.is_empty()) {
            writeln!(
                out,
                "### {} ({}) ###\n\n{}",
                t.exes.family.title(),
                t.exes.mode,
                apply::transaction_input(&t.owned, None).trim_end()
            )?;
            writeln!(out)?;
        }
        if let Some(r) = &rec
            && r.ipv6_loopback_added
        {
            ui::info(format!(
                "[dry-run]: would remove ::6/128 from {}",
                r.loopback
            ));
        }
        if nothing {
            ui::info("no transparent proxy rules detected. No cleanup necessary");
        }
        return Ok(Exit::Success);
    }
    if nothing && rec.is_none() {
        ui::info("no transparent proxy rules detected. No cleanup necessary");
        return Ok(Exit::Success);
    }

    let opts = RestoreOptions::from_config(&cfg);
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
    for r in results {
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    }
    if let Some(r) = &rec
        && r.ipv6_loopback_added
        && let Err(e) = netif::remove_passthrough_v6(&r.loopback)
    {
        errors.push(format!("{e:#}"));
    }
    match firewalld::unstore(&fw_path, rec.as_ref().and_then(|r| r.firewalld.as_ref())) {
        Ok(u) => {
            if !u.removed.is_empty() {
                ui::info(format!(
                    "[firewalld] removed {} entries from {}{}",
                    u.removed.len(),
                    fw_path.display(),
                    if u.deleted {
                        " (and the file, which we had created)"
                    } else {
                        ""
                    }
                ));
                for n in firewalld::daemon::inspect(&fw_path).uninstall_notices(&fw_path, true) {
                    ui::warn(format!("[firewalld] {n}"));
                }
            }
        }
        Err(e) => errors.push(format!("{e:#}")),
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

/// Removes one target's rules and checks nothing of ours is left and
/// nothing else changed.
fn remove(t: &Target, opts: &RestoreOptions) -> anyhow::Result<()> {
    if t.owned.is_empty() {
        ui::info(format!(
            "[{}] no transparent proxy rules left in the {} backend",
            t.exes.family.tool(),
            t.exes.mode
        ));
        return Ok(());
    }
    let input = apply::transaction_input(&t.owned, None);
    apply::test_input(&t.exes, opts, &input)?;
    apply::apply_input(&t.exes, opts, &input)?;
    let (_, after) = t.exes.save_all()?;
    let lines: HashSet<&str> = t.owned.rules.iter().map(|(_, l)| l.spec.as_str()).collect();
    let left = apply::find_owned(&after, &|_, l: &SavedLine| lines.contains(l.spec.as_str()));
    if !left.is_empty() {
        anyhow::bail!(
            "[{}] {} rule(s) or chain(s) of ours are still present after removal",
            t.exes.family.tool(),
            left.rules.len() + left.chains.len()
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
        anyhow::bail!(
            "[{}] rules that are not ours changed while removing ours; compare {}-save with what you expect",
            t.exes.family.tool(),
            t.exes.save.display()
        );
    }
    if let Some(fr) = &t.receipt {
        for tr in fr.tables.iter().filter(|tr| tr.created) {
            match apply::delete_table_if_pristine(&t.exes, tr.table, &after) {
                Ok(true) => {}
                Ok(false) => {
                    if t.exes.mode == Mode::Legacy && opts.verbose {
                        ui::info(format!(
                            "[{}] the empty legacy {} table stays (legacy tables cannot be removed from user space)",
                            t.exes.family.tool(),
                            tr.table.as_str()
                        ));
                    }
                }
                Err(e) => ui::warn(format!("{e:#}")),
            }
        }
    }
    ui::info(format!(
        "[{}] removed {} rule(s) and {} chain(s) from the {} backend",
        t.exes.family.tool(),
        t.owned.rule_count(&t.before),
        t.owned.chains.len(),
        t.exes.mode
    ));
    Ok(())
}

/// Backends to look at: the receipt's; else the configured executables;
/// else every nft and legacy backend found, both families.
fn candidate_backends(
    cfg: &Config,
    rec: Option<&Receipt>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<(Executables, Option<FamilyReceipt>)>> {
    let mut out: Vec<(Executables, Option<FamilyReceipt>)> = Vec::new();
    if let Some(r) = rec {
        for f in &r.families {
            let exes = Executables {
                family: f.family,
                mode: f.mode,
                iptables: f.executables.iptables.clone(),
                save: f.executables.save.clone(),
                restore: f.executables.restore.clone(),
                version: String::new(),
                custom: true,
            };
            if !exes.save.exists() || !exes.restore.exists() {
                warnings.push(format!(
                    "[{}] the executables recorded in the receipt are gone ({}); looking for others",
                    f.family.tool(),
                    exes.restore.display()
                ));
                continue;
            }
            out.push((exes, Some(f.clone())));
        }
    }
    for family in Family::ALL {
        if out.iter().any(|(e, _)| e.family == family) {
            continue;
        }
        if let Some(exes) = backend::configured(family, &cfg.iptables_executables)? {
            out.push((exes, None));
            continue;
        }
        for mode in [Mode::Nft, Mode::Legacy] {
            if let Some(exes) = backend::find(family, mode) {
                out.push((exes, None));
            }
        }
    }
    Ok(out)
}

/// Our chains are there but some jump to them carries no comment: an
/// install made with comments disabled.
fn comment_less(before: &Saved, owned: &Owned) -> bool {
    !owned.chains.is_empty()
        && owned
            .rules
            .iter()
            .any(|(_, l)| !l.spec.contains(crate::config::COMMENT_PREFIX))
        || TableName::ALL.iter().any(|t| {
            before.table(*t).is_some_and(|st| {
                st.rules.iter().any(|r| {
                    is_our_chain(&r.chain) && !r.spec.contains(crate::config::COMMENT_PREFIX)
                })
            })
        })
}

/// The canonical lines of the plan for the given configuration, with
/// comments off, to find DNS, exclusion and logging rules without comments.
fn comment_less_rules(
    cfg: &Config,
    exes: &Executables,
    before: &Saved,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<(TableName, String)>> {
    let mut no_comments = cfg.clone();
    no_comments.comments.disabled = true;
    let probe_warnings = &mut Vec::new();
    let uid = common::kuma_dp_uid(cfg, probe_warnings)
        .context("the kuma-dp user is needed to recognise rules without comments")?;
    let dns = &cfg.redirect.dns;
    let servers = if dns.enabled && !dns.capture_all {
        crate::host::resolv::nameservers(&dns.resolv_config_path, warnings)?
    } else {
        Vec::new()
    };
    let ff = plan::FamilyFacts {
        dns_servers: servers,
        docker_output: before.has_docker_output(),
        comments: false,
        conntrack: true,
        mangle: true,
    };
    let facts = plan::Facts {
        uid,
        loopback: netif::loopback_name(),
        v4: ff.clone(),
        v6: Some(ff),
    };
    let planned = plan::plan(&no_comments, &facts);
    let fam = match exes.family {
        Family::Ipv4 => &planned.rules.v4,
        Family::Ipv6 => planned.rules.v6.as_ref().expect("planned with IPv6 facts"),
    };
    canonical::canonical_rules(exes, fam)
}
