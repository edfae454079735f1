//! `tproxyctl install transparent-proxy`: resolve, probe, plan; then either
//! print the plan (`--dry-run`, nothing on the host changes) or apply it as a
//! transaction across both families: check everything first, apply, read
//! back, record the receipt — and put every family back as it was if any
//! step fails.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::Exit;
use crate::cli::{InstallArgs, OutputFormat};
use crate::config::Config;
use crate::host::apply::{self, Owned, RestoreOptions};
use crate::host::backend::Executables;
use crate::host::receipt::{self, FamilyReceipt, Receipt, TableReceipt};
use crate::host::save::{Saved, SavedLine};
use crate::host::{exec, netif};
use crate::model::{Family, FamilyRules, TableName};
use crate::ops::common::{self, flush_warnings};
use crate::persist::firewalld;
use crate::plan;
use crate::render::{Style, dry_run_text};
use crate::ui;

/// One family's part of the transaction.
struct Part {
    exes: Executables,
    before: Saved,
    owned: Owned,
    /// `None`: only removes rules (a family or backend no longer planned).
    plan: Option<FamilyRules>,
    input: String,
    tables: BTreeSet<TableName>,
}

impl Part {
    fn new(exes: Executables, before: Saved, owned: Owned, plan: Option<FamilyRules>) -> Self {
        let input = apply::transaction_input(&owned, plan.as_ref());
        let mut tables = owned.tables();
        if let Some(p) = &plan {
            tables.extend(p.non_empty_tables().map(|t| t.name));
        }
        Part {
            exes,
            before,
            owned,
            plan,
            input,
            tables,
        }
    }
}

/// Lines a receipt recorded for one family and backend, as an ownership test.
pub fn receipt_lines(r: Option<&FamilyReceipt>) -> HashSet<(TableName, String)> {
    r.map(|f| {
        f.tables
            .iter()
            .flat_map(|t| t.rules.iter().map(move |l| (t.table, l.line.clone())))
            .collect()
    })
    .unwrap_or_default()
}

fn same_backend(r: &FamilyReceipt, exes: &Executables) -> bool {
    r.mode == exes.mode && r.executables.restore == exes.restore && r.executables.save == exes.save
}

pub fn run(args: &InstallArgs) -> anyhow::Result<Exit> {
    let (cfg, recorded_fw) = match &args.from_receipt {
        Some(file) => {
            let r = crate::ops::from_receipt::load(file.as_deref(), args)?;
            (r.config, r.firewalld_direct_file)
        }
        None => (common::load_config(&args.tp, Some(&args.apply))?, None),
    };
    if args.output == OutputFormat::Json && !cfg.dry_run {
        return Err(crate::error::UsageError::new(
            "--output json prints the planned rules and needs --dry-run",
        )
        .into());
    }
    common::require_root(cfg.dry_run)?;
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let old = if cfg.dry_run {
        receipt::load(&receipt_path).unwrap_or(None)
    } else {
        receipt::load(&receipt_path)?
    };
    let mut warnings = Vec::new();
    let phases = ui::Phases::start("probing the host and the iptables backends");
    let probe = common::probe(&cfg, old.as_ref(), &mut warnings)?;
    if probe.selection.is_none() {
        if cfg.dry_run {
            warnings.push("[iptables] [dry-run]: no valid iptables executables found; the generated iptables rules may differ from those generated in an environment with valid iptables executables".to_string());
        } else {
            flush_warnings(&mut warnings);
            anyhow::bail!(
                "failed to find valid nft or legacy executables (install the iptables package, or point --iptables-executables at them)"
            );
        }
    }
    let planned = plan::plan(&cfg, &probe.facts());
    warnings.extend(planned.warnings.iter().cloned());
    flush_warnings(&mut warnings);
    if let Some(sel) = &probe.selection {
        for p in std::iter::once(&sel.v4).chain(sel.v6.iter()) {
            ui::info(format!(
                "[{}] using {}",
                p.exes.family.tool(),
                p.exes.describe()
            ));
        }
    }

    let fw_path = args
        .apply
        .firewalld_direct_file
        .clone()
        .or(recorded_fw)
        .unwrap_or_else(|| PathBuf::from(firewalld::DEFAULT_PATH));
    if cfg.dry_run {
        if args.output == OutputFormat::Json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(
                &mut out,
                &crate::render::json::plan_json(&planned.rules),
            )?;
            writeln!(out)?;
            return Ok(Exit::Success);
        }
        let mut text = dry_run_text(
            &planned.rules,
            Style {
                verbose: cfg.verbose,
            },
        );
        if cfg.store_firewalld {
            // What direct.xml would hold; without read access, as a new file.
            let xml = firewalld::would_write(&fw_path, &planned.rules)
                .or_else(|_| firewalld::render(None, &planned.rules))?;
            text.push_str(&format!(
                "\n### firewalld: {} ###\n\n{xml}",
                fw_path.display()
            ));
        }
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(Exit::Success);
    }
    if cfg.store_firewalld {
        firewalld::preflight(&fw_path, &planned.rules)
            .context("--store-firewalld cannot be honoured; nothing on the host was changed")?;
    }
    let sel = probe.selection.as_ref().expect("checked above");
    let opts = RestoreOptions::from_config(&cfg);

    // Prepare every part; nothing changes yet.
    let mut parts: Vec<Part> = Vec::new();
    for fam in planned.rules.families() {
        let probed = match fam.family {
            Family::Ipv4 => &sel.v4,
            Family::Ipv6 => sel
                .v6
                .as_ref()
                .expect("IPv6 is planned only with executables"),
        };
        let prev = old
            .as_ref()
            .and_then(|r| r.family(fam.family))
            .filter(|r| same_backend(r, &probed.exes));
        let lines = receipt_lines(prev);
        let owned = apply::find_owned(&probed.saved, &|t, l: &SavedLine| {
            lines.contains(&(t, l.spec.clone()))
        });
        parts.push(Part::new(
            probed.exes.clone(),
            probed.saved.clone(),
            owned,
            Some(fam.clone()),
        ));
    }
    // Rules a previous install left in a family or backend not planned now.
    if let Some(r) = &old {
        for f in &r.families {
            let covered = parts
                .iter()
                .any(|p| p.exes.family == f.family && same_backend(f, &p.exes));
            if covered {
                continue;
            }
            let exes = Executables::from_receipt(f);
            let (_, before) = exes.save_all()?;
            let lines = receipt_lines(Some(f));
            let owned = apply::find_owned(&before, &|t, l: &SavedLine| {
                lines.contains(&(t, l.spec.clone()))
            });
            if !owned.is_empty() {
                parts.push(Part::new(exes, before, owned, None));
            }
        }
    }

    let wants_v6 = planned.rules.v6.is_some();
    if let Some(r) = &old
        && already_installed(r, &parts, &cfg, &probe.loopback, wants_v6)
    {
        ui::info(
            "transparent proxy rules with this configuration are already installed; nothing changed",
        );
        return Ok(Exit::Success);
    }

    phases.phase("checking the rules with iptables-restore --test");
    for r in each(&parts, &opts, |p| {
        apply::test_input(&p.exes, &opts, &p.input)
    }) {
        r.context("nothing on the host was changed")?;
    }
    if cfg.redirect.inbound.enabled && !crate::host::tcp_listening(cfg.redirect.inbound.port) {
        ui::warn(format!(
            "nothing listens on the inbound redirect port {}: once the rules are in place every inbound TCP connection, SSH included, is sent there and refused until kuma-dp (or `tproxyctl forwarder`) listens; exclude ports with --exclude-inbound-ports",
            cfg.redirect.inbound.port
        ));
    }
    ui::info(
        "tproxyctl is about to apply the iptables rules that will enable transparent proxying on the machine. The SSH connection may drop. If that happens, just reconnect again",
    );

    let before_procs = exec::processes_started();
    let mut added_v6 = false;
    if wants_v6 && !netif::has_passthrough_v6(&probe.loopback) {
        added_v6 = netif::add_passthrough_v6(&probe.loopback)
            .context("nothing on the host was changed")?;
    }
    let undo_v6 = |added: bool| {
        if added && let Err(e) = netif::remove_passthrough_v6(&probe.loopback) {
            ui::warn(format!(
                "could not remove ::6 from {}: {e:#}",
                probe.loopback
            ));
        }
    };

    phases.phase("applying the rules");
    let applied = each(&parts, &opts, |p| {
        apply::apply_input(&p.exes, &opts, &p.input)
    });
    if let Some(e) = applied.into_iter().find_map(Result::err) {
        let problems = rollback(&parts, &opts);
        undo_v6(added_v6);
        return Err(rolled_back(e, problems));
    }

    // Read back: every planned rule where the plan put it, nothing else moved.
    let mut families: Vec<FamilyReceipt> = Vec::new();
    let mut problems = Vec::new();
    let mut dropped_tables = Vec::new();
    phases.phase("reading the rules back");
    let saved = each(&parts, &opts, |p| p.exes.save_all());
    for (p, s) in parts.iter().zip(saved) {
        let (_, after) = match s {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
        };
        match &p.plan {
            Some(plan) => match apply::verify(plan, &p.before, &p.owned, &after) {
                Ok(mut tables) => {
                    // A table an earlier install created is still ours to drop.
                    let prev = old
                        .as_ref()
                        .and_then(|r| r.family(plan.family))
                        .filter(|r| same_backend(r, &p.exes));
                    for t in &mut tables {
                        t.created |= prev.is_some_and(|r| {
                            r.tables.iter().any(|o| o.table == t.table && o.created)
                        });
                    }
                    families.push(FamilyReceipt {
                        family: plan.family,
                        mode: p.exes.mode,
                        executables: p.exes.paths(),
                        applied: apply::applied_text(plan),
                        tables,
                    })
                }
                Err(mut pr) => problems.append(&mut pr),
            },
            None => {
                let left = apply::find_owned(&after, &|_, _| false);
                if !left.is_empty() {
                    problems.push(format!(
                        "[{}] old rules are still present in the {} backend",
                        p.exes.family.tool(),
                        p.exes.mode
                    ));
                }
                dropped_tables.push((p, after));
            }
        }
    }
    if !problems.is_empty() {
        let rb = rollback(&parts, &opts);
        undo_v6(added_v6);
        return Err(rolled_back(
            anyhow::anyhow!(
                "the rules read back after applying differ from the plan:\n  {}",
                problems.join("\n  ")
            ),
            rb,
        ));
    }

    // Persistence: the same planned rules into direct.xml; stale entries of a
    // previous install go whether or not this one persists.
    let old_fw = old.as_ref().and_then(|r| r.firewalld.as_ref());
    let fw_receipt = if cfg.store_firewalld {
        match firewalld::store_replacing(&fw_path, &planned.rules, old_fw) {
            Ok(r) => Some(r),
            Err(e) => {
                let rb = rollback(&parts, &opts);
                undo_v6(added_v6);
                return Err(rolled_back(e, rb));
            }
        }
    } else {
        if let Some(prev) = old_fw
            && let Err(e) = firewalld::unstore(&prev.path, Some(prev))
        {
            ui::warn(format!(
                "could not remove the previous firewalld entries: {e:#}"
            ));
        }
        None
    };

    let kept_v6 = old.as_ref().is_some_and(|r| r.ipv6_loopback_added) && wants_v6;
    let new_receipt = Receipt {
        version: receipt::VERSION,
        tool: format!("tproxyctl {}", env!("CARGO_PKG_VERSION")),
        installed_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        config: cfg.clone(),
        uid: probe.uid,
        loopback: probe.loopback.clone(),
        dns_servers: probe.dns_servers.clone(),
        families,
        ipv6_loopback_added: added_v6 || kept_v6,
        firewalld: fw_receipt.clone(),
    };
    if let Err(e) = receipt::store(&receipt_path, &new_receipt) {
        let rb = rollback(&parts, &opts);
        undo_v6(added_v6);
        if let Some(fw) = &fw_receipt {
            let _ = firewalld::unstore(&fw.path, Some(fw));
        }
        return Err(rolled_back(e, rb));
    }
    if let Some(fw) = &fw_receipt {
        let modes: Vec<crate::host::Mode> = parts.iter().map(|p| p.exes.mode).collect();
        ui::info(format!("[firewalld] rules stored in {}", fw.path.display()));
        for n in firewalld::daemon::inspect(&fw.path).install_notices(&fw.path, &modes, wants_v6) {
            ui::warn(format!("[firewalld] {n}"));
        }
    }
    // Tables an earlier install created in a family or backend no longer used.
    for (p, after) in dropped_tables {
        let created = old
            .as_ref()
            .and_then(|r| r.family(p.exes.family))
            .filter(|r| same_backend(r, &p.exes))
            .map(|r| {
                r.tables
                    .iter()
                    .filter(|t| t.created)
                    .map(|t| t.table)
                    .collect()
            })
            .unwrap_or_else(Vec::new);
        for t in created {
            if let Err(e) = apply::delete_table_if_pristine(&p.exes, t, &after) {
                ui::warn(format!("{e:#}"));
            }
        }
    }
    // ::6 we added earlier and no longer need.
    if !wants_v6 && old.as_ref().is_some_and(|r| r.ipv6_loopback_added) {
        undo_v6(true);
    }
    if cfg.verbose {
        ui::info(format!(
            "applied {} rules in {} families with {} processes",
            parts
                .iter()
                .filter_map(|p| p.plan.as_ref())
                .map(FamilyRules::rule_count)
                .sum::<usize>(),
            parts.len(),
            exec::processes_started() - before_procs
        ));
    }
    ui::info(format!("receipt written to {}", receipt_path.display()));
    ui::info(
        "transparent proxy setup completed successfully. You can now run kuma-dp (or `tproxyctl forwarder`) with the transparent-proxy feature enabled",
    );
    Ok(Exit::Success)
}

/// Runs `f` for every part, the families side by side (they are separate
/// kernel tables), results in part order. Legacy without `--wait` stays
/// sequential: both families would compete for the one xtables lock.
fn each<T: Send>(
    parts: &[Part],
    opts: &RestoreOptions,
    f: impl Fn(&Part) -> anyhow::Result<T> + Sync,
) -> Vec<anyhow::Result<T>> {
    let sequential = parts.len() < 2
        || (opts.wait == 0
            && parts
                .iter()
                .any(|p| p.exes.mode == crate::host::Mode::Legacy));
    if sequential {
        return parts.iter().map(&f).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = parts.iter().map(|p| s.spawn(|| f(p))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
            })
            .collect()
    })
}

/// Same plan, same backend, rules still in place: a re-run changes nothing.
fn already_installed(
    old: &Receipt,
    parts: &[Part],
    cfg: &Config,
    loopback: &str,
    wants_v6: bool,
) -> bool {
    if parts.iter().any(|p| p.plan.is_none()) {
        return false;
    }
    if parts.len() != old.families.len() {
        return false;
    }
    if old.firewalld.is_some() != cfg.store_firewalld {
        return false;
    }
    if wants_v6 && !netif::has_passthrough_v6(loopback) {
        return false;
    }
    parts.iter().all(|p| {
        let plan = p.plan.as_ref().expect("checked");
        old.family(plan.family).is_some_and(|r| {
            same_backend(r, &p.exes)
                && r.applied == apply::applied_text(plan)
                && apply::matches_receipt(&r.tables, &p.before)
                && owned_is_exactly_receipt(&p.owned, &r.tables)
        })
    })
}

/// No rule of ours beyond what the receipt lists (e.g. a second copy).
fn owned_is_exactly_receipt(owned: &Owned, tables: &[TableReceipt]) -> bool {
    owned.rules.iter().all(|(t, l)| {
        tables
            .iter()
            .any(|tr| tr.table == *t && tr.rules.iter().any(|r| r.line == l.spec))
    }) && owned.rules.len()
        == tables
            .iter()
            .flat_map(|t| t.rules.iter())
            .filter(|r| !crate::host::save::is_our_chain(&r.chain))
            .count()
}

fn rollback(parts: &[Part], opts: &RestoreOptions) -> Vec<String> {
    let mut problems = Vec::new();
    for p in parts.iter().rev() {
        if let Err(e) = apply::restore_snapshot(&p.exes, opts, &p.before, &p.tables) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

fn rolled_back(err: anyhow::Error, rollback_problems: Vec<String>) -> anyhow::Error {
    if rollback_problems.is_empty() {
        err.context("install failed; every family was restored to its state before the install")
    } else {
        err.context(format!(
            "install failed and the ROLLBACK IS INCOMPLETE, check the rules by hand: {}",
            rollback_problems.join("; ")
        ))
    }
}
