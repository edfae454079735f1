//! `tproxyctl install transparent-proxy`: resolve, probe, plan; then either
//! print the plan (`--dry-run`, nothing on the host changes) or apply it as a
//! transaction across both families, holding the host lock throughout:
//! check everything first (`iptables-restore --test`, and the kernel's form
//! of the plan from a throwaway namespace, side by side), record the intent
//! in the receipt (the journal), apply, read back, persist, record the
//! receipt — and undo exactly what this run changed, line by line, if any
//! step fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::Exit;
use crate::cli::{InstallArgs, OutputFormat};
use crate::config::Config;
use crate::host::apply::{self, Known, Owned, RestoreOptions};
use crate::host::backend::Executables;
use crate::host::canonical::{self, CanonicalPlan};
use crate::host::readback;
use crate::host::receipt::{
    self, FamilyReceipt, FirewalldReceipt, Loaded, Pending, Receipt, SavedRule, TableReceipt,
};
use crate::host::rollback::{self, Change};
use crate::host::save::Saved;
use crate::host::{exec, netif};
use crate::model::{Family, FamilyRules, RuleSet, TableName};
use crate::ops::common::{self, Probe, flush_warnings};
use crate::persist::firewalld;
use crate::plan;
use crate::render::{Style, dry_run_text};
use crate::ui;

/// One family's (and backend's) part of the transaction.
struct Part {
    exes: Executables,
    before: Saved,
    owned: Owned,
    /// `None`: only removes rules (a family or backend no longer planned).
    plan: Option<FamilyRules>,
    input: String,
    /// The plan as the kernel prints it (after the checks).
    canon: Option<CanonicalPlan>,
    /// Built-in chains nft will create in tables that exist without them.
    base_created: Vec<(TableName, String)>,
}

impl Part {
    fn new(exes: Executables, before: Saved, owned: Owned, plan: Option<FamilyRules>) -> Self {
        let policies = apply::policies_for(&exes, &before);
        let input = apply::transaction_input(&owned, plan.as_ref(), policies);
        Part {
            exes,
            before,
            owned,
            plan,
            input,
            canon: None,
            base_created: Vec::new(),
        }
    }

    /// Tables the transaction touches.
    fn tables(&self) -> BTreeSet<TableName> {
        let mut tables = self.owned.tables();
        if let Some(p) = &self.plan {
            tables.extend(p.non_empty_tables().map(|t| t.name));
        }
        tables
    }
}

fn same_backend(r: &FamilyReceipt, exes: &Executables) -> bool {
    r.mode == exes.mode && r.executables.restore == exes.restore && r.executables.save == exes.save
}

/// Records of `family` in `old` (installed and unfinished) for this backend.
fn records_for<'a>(
    old: Option<&'a Receipt>,
    family: Family,
    exes: &'a Executables,
) -> impl Iterator<Item = &'a FamilyReceipt> {
    old.into_iter()
        .flat_map(move |r| r.family_records(family))
        .filter(move |r| same_backend(r, exes))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
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
    if cfg.ebpf.enabled {
        return crate::ops::ebpf::install(args, &cfg);
    }
    common::require_root(cfg.dry_run)?;
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let fw_path = args
        .apply
        .firewalld_direct_file
        .clone()
        .or(recorded_fw)
        .unwrap_or_else(|| PathBuf::from(firewalld::DEFAULT_PATH));
    if cfg.dry_run {
        return dry_run(args, &cfg, &receipt_path, &fw_path);
    }
    let mut timings = common::Timings::start();
    let _lock = common::begin_change(&cfg, &receipt_path, "install")?;
    timings.step("lock");
    let old = previous_receipt(&receipt_path)?;
    if old.as_ref().is_some_and(|r| r.ebpf.is_some()) {
        anyhow::bail!(
            "the receipt {} records an eBPF-mode install; run `tproxyctl uninstall transparent-proxy` before installing iptables rules; nothing on the host was changed",
            receipt_path.display()
        );
    }
    let mut warnings = Vec::new();
    let phases = ui::Phases::start("probing the host and the iptables backends");
    let probe = common::probe(&cfg, old.as_ref(), &mut warnings)?;
    let Some(sel) = probe.selection.as_ref() else {
        flush_warnings(&mut warnings);
        anyhow::bail!(
            "failed to find valid nft or legacy executables (install the iptables package, or point --iptables-executables at them)"
        );
    };
    let planned = plan::plan(&cfg, &probe.facts());
    warnings.extend(planned.warnings.iter().cloned());

    if cfg.store_firewalld {
        firewalld::preflight(&fw_path, &planned.rules)
            .context("--store-firewalld cannot be honoured; nothing on the host was changed")?;
    }
    let mut parts = prepare(&cfg, &probe, &planned.rules, old.as_ref(), &mut warnings)?;
    flush_warnings(&mut warnings);
    for p in std::iter::once(&sel.v4).chain(sel.v6.iter()) {
        ui::info(format!(
            "[{}] using {}",
            p.exes.family.tool(),
            p.exes.describe()
        ));
    }
    timings.step("probe and plan");

    let wants_v6 = planned.rules.v6.is_some();
    if let Some(r) = &old
        && already_installed(r, &parts, &cfg, &probe.loopback, wants_v6)
    {
        ui::info(
            "transparent proxy rules with this configuration are already installed; nothing changed",
        );
        return Ok(Exit::Success);
    }

    let opts = RestoreOptions::from_config(&cfg);
    phases.phase("checking the rules with iptables-restore --test");
    let canonical =
        check(&mut parts, &opts, cfg.wait).context("nothing on the host was changed")?;
    timings.step("check");
    timings.add("(of which kernel's form)", canonical);
    if cfg.redirects_inbound_port(22) && !crate::host::tcp_listening(cfg.redirect.inbound.port) {
        ui::warn(format!(
            "nothing listens on the inbound redirect port {}: once the rules are in place every inbound TCP connection, SSH included, is sent there and refused until kuma-dp (or `tproxyctl forwarder`) listens; exclude ports with --exclude-inbound-ports",
            cfg.redirect.inbound.port
        ));
    }

    let txn = Txn {
        cfg: &cfg,
        probe: &probe,
        planned: &planned.rules,
        old: old.as_ref(),
        receipt_path: &receipt_path,
        fw_path: &fw_path,
        opts,
        phases: &phases,
    };
    txn.apply(&parts, &mut timings)
}

/// The receipt of an earlier install, if a usable one exists; a damaged
/// one is reported and set aside (the rules are then found by their marks).
fn previous_receipt(path: &Path) -> anyhow::Result<Option<Receipt>> {
    let loaded = receipt::read(path)?;
    if let Loaded::Unreadable(why) = &loaded {
        ui::warn(format!(
            "the receipt {} cannot be used ({why}); the previous rules are found by their comments and chain names instead, and the receipt is replaced",
            path.display()
        ));
    }
    let old = loaded.into_receipt();
    if let Some(note) = old.as_ref().and_then(|r| r.pending_note(path)) {
        ui::warn(note);
    }
    Ok(old)
}

/// `--dry-run`: the plan, and with `--store-firewalld` the file it would
/// write. Reads only.
fn dry_run(
    args: &InstallArgs,
    cfg: &Config,
    receipt_path: &Path,
    fw_path: &Path,
) -> anyhow::Result<Exit> {
    let old = receipt::read(receipt_path)
        .ok()
        .and_then(Loaded::into_receipt);
    let mut warnings = Vec::new();
    let probe = common::probe(cfg, old.as_ref(), &mut warnings)?;
    if probe.selection.is_none() {
        warnings.push("[iptables] [dry-run]: no valid iptables executables found; the generated iptables rules may differ from those generated in an environment with valid iptables executables".to_string());
    }
    let planned = plan::plan(cfg, &probe.facts());
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
    let mut out = std::io::stdout().lock();
    if args.output == OutputFormat::Json {
        crate::render::json::write_document(
            &mut out,
            &crate::render::json::plan_json(&planned.rules),
        )?;
        return Ok(Exit::Success);
    }
    let mut text = dry_run_text(
        &planned.rules,
        Style {
            verbose: cfg.verbose,
        },
    );
    if cfg.store_firewalld {
        // What direct.xml would hold: the same checks as the real install;
        // only a file we may not read (a dry run as another user) is shown
        // as a new file.
        let xml = match firewalld::would_write(fw_path, &planned.rules) {
            Ok(x) => x,
            Err(e) if unreadable(&e) => firewalld::render(None, &planned.rules)?,
            Err(e) => {
                return Err(e.context("--store-firewalld cannot be honoured"));
            }
        };
        text.push_str(&format!(
            "\n### firewalld: {} ###\n\n{xml}",
            fw_path.display()
        ));
    }
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(Exit::Success)
}

/// A file that exists but may not be read by us.
fn unreadable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// Every part of the transaction; nothing changes yet. Rules of ours are
/// those with our marks, those the receipt (or an unfinished run) lists,
/// and, without a receipt, those of a comment-less install found by content.
fn prepare(
    cfg: &Config,
    probe: &Probe,
    rules: &RuleSet,
    old: Option<&Receipt>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<Part>> {
    let sel = probe.selection.as_ref().expect("checked by the caller");
    let mut parts: Vec<Part> = Vec::new();
    for fam in rules.families() {
        let probed = match fam.family {
            Family::Ipv4 => &sel.v4,
            Family::Ipv6 => sel
                .v6
                .as_ref()
                .expect("IPv6 is planned only with executables"),
        };
        let mut known = Known::from_records(records_for(old, fam.family, &probed.exes));
        if known.is_empty() && common::comment_less_install(&probed.saved) {
            match common::comment_less_known(cfg, &probed.exes, &probed.saved, warnings) {
                Ok(k) => known.merge(k),
                Err(e) => warnings.push(format!(
                    "[{}] rules without comments could not all be identified ({e:#}); a copy of them may stay next to the new ones",
                    fam.family.tool()
                )),
            }
        }
        let owned = apply::find_owned(&probed.saved, &known);
        let mut part = Part::new(
            probed.exes.clone(),
            probed.saved.clone(),
            owned,
            Some(fam.clone()),
        );
        part.base_created = apply::base_chains_to_create(&probed.exes, fam, &probed.saved)
            .unwrap_or_else(|e| {
                warnings.push(format!(
                    "[{}] cannot tell which nft base chains exist ({e:#}); built-in chains the install creates stay after uninstall",
                    fam.family.tool()
                ));
                Vec::new()
            });
        parts.push(part);
    }
    // Rules a previous install left in a family or backend not planned now.
    if let Some(r) = old {
        for f in r.all_records() {
            let covered = parts
                .iter()
                .any(|p| p.exes.family == f.family && same_backend(f, &p.exes));
            if covered {
                continue;
            }
            let exes = Executables::from_receipt(f);
            let (_, before) = exes.save_all()?;
            let owned = apply::find_owned(
                &before,
                &Known::from_records(records_for(old, f.family, &exes)),
            );
            if !owned.is_empty() && !parts.iter().any(|p| p.exes == exes) {
                parts.push(Part::new(exes, before, owned, None));
            }
        }
    }
    Ok(parts)
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

/// `iptables-restore --test` of every part's input and, side by side, the
/// kernel's form of every planned family (a throwaway namespace each).
/// Returns how long the slowest of the latter took.
///
/// A fresh install (nothing of ours to remove) skips `--test`: loading the
/// whole plan into an empty namespace of the same kernel and backend checks
/// every rule as well (a rejected rule is named the same way), and `--test`
/// would only add checking removals that do not exist. Where no namespace
/// can be made, `--test` runs first and the kernel's form comes from chains
/// of our own on the host afterwards (see [`canonical`]).
fn check(
    parts: &mut [Part],
    opts: &RestoreOptions,
    wait: u32,
) -> anyhow::Result<std::time::Duration> {
    let sandbox = canonical::namespaces_available();
    let fresh = parts.iter().all(|p| p.owned.is_empty() && p.plan.is_some());
    let slowest = std::sync::Mutex::new(std::time::Duration::ZERO);
    let canonicalise = |p: &Part| {
        let t0 = std::time::Instant::now();
        let c = p
            .plan
            .as_ref()
            .map(|plan| canonical::canonicalise(&p.exes, plan, wait))
            .transpose();
        let mut m = slowest.lock().unwrap_or_else(|e| e.into_inner());
        *m = (*m).max(t0.elapsed());
        c
    };
    let test = |p: &Part| apply::test_input(&p.exes, opts, &p.input);
    let canons: Vec<anyhow::Result<Option<CanonicalPlan>>> = if sandbox {
        std::thread::scope(|s| {
            let handles: Vec<_> = parts.iter().map(|p| s.spawn(|| canonicalise(p))).collect();
            let tests = if fresh {
                Vec::new()
            } else {
                each(parts, opts, test)
            };
            let canons = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
                })
                .collect();
            tests
                .into_iter()
                .collect::<anyhow::Result<Vec<()>>>()
                .map(|_| canons)
        })?
    } else {
        for r in each(parts, opts, test) {
            r?;
        }
        parts.iter().map(canonicalise).collect()
    };
    for (p, c) in parts.iter_mut().zip(canons) {
        p.canon = c?;
    }
    Ok(slowest.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Same plan, same backend, nothing unfinished, rules still in place: a
/// re-run changes nothing.
fn already_installed(
    old: &Receipt,
    parts: &[Part],
    cfg: &Config,
    loopback: &str,
    wants_v6: bool,
) -> bool {
    if old.pending.is_some() || parts.iter().any(|p| p.plan.is_none()) {
        return false;
    }
    if parts.len() != old.families.len() || old.firewalld.is_some() != cfg.store_firewalld {
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
                && readback::matches_receipt(&r.tables, &p.before)
                && owned_is_exactly_receipt(&p.owned, &r.tables)
        })
    })
}

/// No rule of ours beyond what the receipt lists (e.g. a second copy).
fn owned_is_exactly_receipt(owned: &Owned, tables: &[TableReceipt]) -> bool {
    let listed = tables
        .iter()
        .flat_map(|t| t.rules.iter())
        .filter(|r| !crate::host::save::is_our_chain(&r.chain))
        .count();
    owned.rules.len() == listed
        && owned.rules.iter().all(|(t, l)| {
            tables
                .iter()
                .any(|tr| tr.table == *t && tr.rules.iter().any(|r| r.line == l.spec))
        })
}

/// Names of the built-in chains of `table` in `list`.
fn chains_of(list: &[(TableName, String)], table: TableName) -> Vec<String> {
    list.iter()
        .filter(|(t, _)| *t == table)
        .map(|(_, c)| c.clone())
        .collect()
}

/// What the receipt records for a planned family, from the kernel's form of
/// the plan (before the apply: the journal; after: checked by the read-back).
fn intended_tables(p: &Part, plan: &FamilyRules, canon: &CanonicalPlan) -> Vec<TableReceipt> {
    plan.non_empty_tables()
        .map(|t| TableReceipt {
            table: t.name,
            created: p.before.table(t.name).is_none(),
            chains: t.custom_chains().map(|c| c.name.clone()).collect(),
            builtin_created: chains_of(&p.base_created, t.name),
            rules: t
                .chains
                .iter()
                .flat_map(|c| {
                    let k = c.inserted();
                    let custom = c.custom;
                    canon
                        .chain(t.name, &c.name)
                        .iter()
                        .enumerate()
                        .map(move |(i, l)| SavedRule {
                            chain: c.name.clone(),
                            line: l.clone(),
                            inserted: i < k && !custom,
                        })
                })
                .collect(),
        })
        .collect()
}

/// The steps that change the host, with what they need.
struct Txn<'a> {
    cfg: &'a Config,
    probe: &'a Probe,
    planned: &'a RuleSet,
    old: Option<&'a Receipt>,
    receipt_path: &'a Path,
    fw_path: &'a Path,
    opts: RestoreOptions,
    phases: &'a ui::Phases,
}

/// Parts that only removed rules, with the state after: their tables may
/// now be empty.
type Dropped<'p> = Vec<(&'p Part, Saved)>;

/// What has been changed so far (for undoing it).
#[derive(Default)]
struct Done {
    journal: bool,
    added_v6: bool,
    /// The entries stored, and the file's text before (`None`: no file).
    firewalld: Option<(FirewalldReceipt, Option<String>)>,
}

impl Txn<'_> {
    fn wants_v6(&self) -> bool {
        self.planned.v6.is_some()
    }

    fn skeleton(&self) -> Receipt {
        Receipt {
            version: receipt::VERSION,
            tool: format!("tproxyctl {}", env!("CARGO_PKG_VERSION")),
            installed_at: now_secs(),
            config: self.cfg.clone(),
            uid: self.probe.uid,
            loopback: self.probe.loopback.clone(),
            dns_servers: self.probe.dns_servers.clone(),
            families: Vec::new(),
            ipv6_loopback_added: false,
            firewalld: None,
            pending: None,
            ebpf: None,
        }
    }

    /// The journal: the previous receipt (or a skeleton) with a record of
    /// everything this run may add, written before anything changes.
    ///
    /// It lists only what a later run could not recognise by itself: rules
    /// outside our chains without our comment or a jump to our chains (our
    /// chains, and marked rules, are ours by name), plus the tables and
    /// chains the run creates. With comments on that is next to nothing, so
    /// writing it costs little even for tens of thousands of rules.
    fn journal(&self, parts: &[Part], adds_v6: bool) -> anyhow::Result<Receipt> {
        let mut families = Vec::new();
        for p in parts {
            if let (Some(plan), Some(canon)) = (&p.plan, &p.canon) {
                let mut tables = intended_tables(p, plan, canon);
                for t in &mut tables {
                    t.rules.retain(|r| {
                        !crate::host::save::is_our_chain(&r.chain)
                            && !crate::host::save::is_marked(&r.line)
                    });
                }
                families.push(FamilyReceipt {
                    family: plan.family,
                    mode: p.exes.mode,
                    executables: p.exes.paths(),
                    applied: String::new(),
                    tables,
                });
            }
        }
        let old_fw = self.old.and_then(|r| r.firewalld.as_ref());
        let firewalld = if self.cfg.store_firewalld {
            Some(firewalld::intent(self.fw_path, self.planned, old_fw)?)
        } else {
            None
        };
        let mut r = self.old.cloned().unwrap_or_else(|| self.skeleton());
        r.pending = Some(Pending {
            operation: "install".to_string(),
            pid: std::process::id(),
            started_at: now_secs(),
            families,
            ipv6_loopback: adds_v6,
            firewalld,
        });
        Ok(r)
    }

    fn apply(&self, parts: &[Part], timings: &mut common::Timings) -> anyhow::Result<Exit> {
        let before_procs = exec::processes_started();
        let adds_v6 = self.wants_v6() && !netif::has_passthrough_v6(&self.probe.loopback);
        let mut done = Done::default();
        if !receipt::is_none(self.receipt_path) {
            let journal = self.journal(parts, adds_v6)?;
            receipt::store(self.receipt_path, &journal).context(
                "the receipt cannot be written, so the install is not recorded; nothing on the host was changed (use --receipt PATH elsewhere, or --receipt none to keep no state)",
            )?;
            done.journal = true;
        }
        timings.step("journal");
        ui::info(
            "tproxyctl is about to apply the iptables rules that will enable transparent proxying on the machine. The SSH connection may drop. If that happens, just reconnect again",
        );
        if adds_v6 {
            match netif::add_passthrough_v6(&self.probe.loopback) {
                Ok(added) => done.added_v6 = added,
                Err(e) => return Err(self.undo(parts, &done, e)),
            }
        }
        self.phases.phase("applying the rules");
        let applied = each(parts, &self.opts, |p| {
            apply::apply_input(&p.exes, &self.opts, &p.input)
        });
        if let Some(e) = applied.into_iter().find_map(Result::err) {
            return Err(self.undo(parts, &done, e));
        }
        timings.step("apply");
        self.phases.phase("reading the rules back");
        let (families, dropped) = match self.read_back(parts) {
            Ok(x) => x,
            Err(e) => return Err(self.undo(parts, &done, e)),
        };
        timings.step("read-back");
        // Persistence: the same planned rules into direct.xml; stale entries
        // of a previous install go whether or not this one persists.
        let old_fw = self.old.and_then(|r| r.firewalld.as_ref());
        if self.cfg.store_firewalld {
            let stored = firewalld::read_optional(self.fw_path).and_then(|text| {
                firewalld::store_replacing(self.fw_path, self.planned, old_fw).map(|r| (r, text))
            });
            match stored {
                Ok(x) => done.firewalld = Some(x),
                Err(e) => return Err(self.undo(parts, &done, e)),
            }
        } else if let Some(r) = self.old {
            let prev: Vec<&FirewalldReceipt> = r.firewalld_records().collect();
            for p in &prev {
                if let Err(e) = firewalld::unstore_all(&p.path, &prev, &[]) {
                    ui::warn(format!(
                        "could not remove the previous firewalld entries: {e:#}"
                    ));
                }
            }
        }
        let kept_v6 = self.old.is_some_and(|r| r.ipv6_loopback_ours()) && self.wants_v6();
        let mut new_receipt = self.skeleton();
        new_receipt.families = families;
        new_receipt.ipv6_loopback_added = done.added_v6 || kept_v6;
        new_receipt.firewalld = done.firewalld.as_ref().map(|(r, _)| r.clone());
        if !receipt::is_none(self.receipt_path)
            && let Err(e) = receipt::store(self.receipt_path, &new_receipt)
        {
            return Err(self.undo(parts, &done, e));
        }
        timings.step("persist and receipt");
        self.finish(parts, dropped, &done, before_procs);
        if self.cfg.verbose {
            ui::info(timings.report());
        }
        Ok(Exit::Success)
    }

    /// Reads every family back: each planned rule where the plan put it,
    /// old rules of a backend no longer planned gone. Returns the receipt's
    /// families and the parts whose tables may now be empty.
    fn read_back<'p>(
        &self,
        parts: &'p [Part],
    ) -> anyhow::Result<(Vec<FamilyReceipt>, Dropped<'p>)> {
        let mut families = Vec::new();
        let mut problems = Vec::new();
        let mut dropped = Vec::new();
        let saved = each(parts, &self.opts, |p| p.exes.save_all());
        for (p, s) in parts.iter().zip(saved) {
            let after = match s {
                Ok((_, after)) => after,
                Err(e) => {
                    problems.push(format!("{e:#}"));
                    continue;
                }
            };
            let (Some(plan), Some(canon)) = (&p.plan, &p.canon) else {
                let left = apply::find_owned(&after, &Known::default());
                if !left.is_empty() {
                    problems.push(format!(
                        "[{}] old rules are still present in the {} backend",
                        p.exes.family.tool(),
                        p.exes.mode
                    ));
                }
                dropped.push((p, after));
                continue;
            };
            match readback::read_back(plan, canon, &p.before, &p.owned, &after) {
                Ok(rb) => {
                    for c in rb.foreign_changes {
                        ui::warn(c);
                    }
                    let mut tables = rb.tables;
                    // A table (or base chain) an earlier install created is
                    // still ours to drop.
                    for t in &mut tables {
                        let old: Vec<&TableReceipt> = records_for(self.old, plan.family, &p.exes)
                            .flat_map(|r| r.tables.iter().filter(|o| o.table == t.table))
                            .collect();
                        t.created |= old.iter().any(|o| o.created);
                        t.builtin_created = chains_of(&p.base_created, t.table);
                        for c in old.iter().flat_map(|o| o.builtin_created.iter()) {
                            if !t.builtin_created.contains(c) {
                                t.builtin_created.push(c.clone());
                            }
                        }
                    }
                    families.push(FamilyReceipt {
                        family: plan.family,
                        mode: p.exes.mode,
                        executables: p.exes.paths(),
                        applied: apply::applied_text(plan),
                        tables,
                    });
                }
                Err(mut pr) => problems.append(&mut pr),
            }
        }
        if problems.is_empty() {
            Ok((families, dropped))
        } else {
            anyhow::bail!(
                "the rules read back after applying differ from the plan:\n  {}",
                problems.join("\n  ")
            )
        }
    }

    /// After success: tables an earlier install created in a family or
    /// backend no longer used, `::6` no longer needed, and the report.
    fn finish(&self, parts: &[Part], dropped: Dropped<'_>, done: &Done, before_procs: usize) {
        for (p, after) in dropped {
            let records: Vec<&FamilyReceipt> =
                records_for(self.old, p.exes.family, &p.exes).collect();
            for (t, c) in records
                .iter()
                .flat_map(|r| r.tables.iter())
                .flat_map(|t| t.builtin_created.iter().map(move |c| (t.table, c)))
            {
                if let Err(e) = apply::delete_base_chain_if_pristine(&p.exes, t, c, &after) {
                    ui::warn(format!("{e:#}"));
                }
            }
            let created: BTreeSet<TableName> = records
                .iter()
                .flat_map(|r| r.tables.iter().filter(|t| t.created).map(|t| t.table))
                .collect();
            for t in created {
                if let Err(e) = apply::delete_table_if_pristine(&p.exes, t, &after) {
                    ui::warn(format!("{e:#}"));
                }
            }
        }
        if !self.wants_v6()
            && self.old.is_some_and(|r| r.ipv6_loopback_ours())
            && let Err(e) = netif::remove_passthrough_v6(&self.probe.loopback)
        {
            ui::warn(format!(
                "could not remove ::6 from {}: {e:#}",
                self.probe.loopback
            ));
        }
        if let Some((fw, _)) = &done.firewalld {
            let modes: Vec<crate::host::Mode> = parts.iter().map(|p| p.exes.mode).collect();
            ui::info(format!("[firewalld] rules stored in {}", fw.path.display()));
            for n in firewalld::daemon::inspect(&fw.path).install_notices(
                &fw.path,
                &modes,
                self.wants_v6(),
            ) {
                ui::warn(format!("[firewalld] {n}"));
            }
        }
        if self.cfg.verbose {
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
        if receipt::is_none(self.receipt_path) {
            ui::info(
                "no receipt kept (--receipt none): uninstall finds the rules by their comments and chain names, or by the same configuration",
            );
        } else {
            ui::info(format!(
                "receipt written to {}",
                self.receipt_path.display()
            ));
        }
        ui::info(
            "transparent proxy setup completed successfully. You can now run kuma-dp (or `tproxyctl forwarder`) with the transparent-proxy feature enabled",
        );
    }

    /// Undoes what this run changed — rules line by line, firewalld entries,
    /// `::6`, the journal — and returns the error with what was undone.
    fn undo(&self, parts: &[Part], done: &Done, err: anyhow::Error) -> anyhow::Error {
        let mut problems = rollback_rules(parts, &self.opts);
        if let Some((fw, text)) = &done.firewalld
            && let Err(e) = firewalld::put_back(&fw.path, text.as_deref())
        {
            problems.push(format!("firewalld: {e:#}"));
        }
        if done.added_v6
            && let Err(e) = netif::remove_passthrough_v6(&self.probe.loopback)
        {
            problems.push(format!(
                "could not remove ::6 from {}: {e:#}",
                self.probe.loopback
            ));
        }
        // The journal goes only when everything was undone: otherwise it
        // tells the next run what may still be there.
        if done.journal && problems.is_empty() {
            let restored = match self.old {
                Some(r) => receipt::store(self.receipt_path, r),
                None => receipt::remove(self.receipt_path),
            };
            if let Err(e) = restored {
                problems.push(format!("{e:#}"));
            }
        }
        if problems.is_empty() {
            err.context(
                "install failed; every change it made was undone (other rules were not touched)",
            )
        } else {
            err.context(format!(
                "install failed and the ROLLBACK IS INCOMPLETE, check the rules by hand (the receipt {} lists what may be left; `tproxyctl uninstall transparent-proxy` removes it): {}",
                self.receipt_path.display(),
                problems.join("; ")
            ))
        }
    }
}

/// Undoes every part's rule changes from a fresh save (see
/// [`crate::host::rollback`]); returns what could not be undone.
fn rollback_rules(parts: &[Part], opts: &RestoreOptions) -> Vec<String> {
    let mut problems = Vec::new();
    for p in parts.iter().rev() {
        let result = (|| -> anyhow::Result<()> {
            let (_, now) = p.exes.save_all()?;
            let change = Change {
                before: &p.before,
                owned: &p.owned,
                added: p.canon.as_ref(),
            };
            let legacy = p.exes.mode == crate::host::Mode::Legacy;
            let input = rollback::rollback_input(&change, &now, legacy);
            if !input.is_empty() {
                apply::apply_once(&p.exes, opts, &input)?;
            }
            if p.exes.mode == crate::host::Mode::Nft {
                let (_, after) = p.exes.save_all()?;
                for (t, c) in &p.base_created {
                    apply::delete_base_chain_if_pristine(&p.exes, *t, c, &after)?;
                }
                for t in p.tables() {
                    if p.before.table(t).is_none() {
                        apply::delete_table_if_pristine(&p.exes, t, &after)?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}
