//! Applying and removing rules (SPEC §4): which rules and chains are ours
//! ([`find_owned`]), the restore input that replaces or removes them
//! ([`transaction_input`]), and running `iptables-restore` — `--test` first,
//! then one `--noflush` apply per family, `--wait` for legacy, retries as
//! configured, every process bounded by the run's time budget. Removal
//! deletes our rules one by one (`-D`) and our chains (`-F`, `-X`), so
//! foreign rules keep their order and counters. Reading the result back is
//! [`crate::host::readback`]; undoing a failed run line by line is
//! [`crate::host::rollback`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;

use crate::host::backend::Executables;
use crate::host::exec::{self, Cmd};
use crate::host::receipt::{FamilyReceipt, Mode};
use crate::host::save::{Saved, SavedLine, SavedTable, is_marked, is_our_chain};
use crate::model::{Family, FamilyRules, TableName};
use crate::render::{Style, family_text, rule_line};

/// How restore is run.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Seconds legacy restore waits for the xtables lock (0: no flag).
    pub wait: u32,
    /// Microseconds between lock attempts (legacy, 0: no flag).
    pub wait_interval: u32,
    /// Retries after the first attempt.
    pub retries: u32,
    pub sleep: Duration,
    pub verbose: bool,
}

impl RestoreOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        RestoreOptions {
            wait: cfg.wait,
            wait_interval: cfg.wait_interval,
            retries: cfg.retry.max_retries,
            sleep: cfg.retry.sleep_between_retries,
            verbose: cfg.verbose,
        }
    }
}

/// Rule lines known to be ours although they carry no marker (the receipt's,
/// an unfinished run's, the kernel's form of planned comment-less rules),
/// each with how many copies of it are ours: a foreign rule that happens to
/// read the same is never taken along with ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    counts: HashMap<(TableName, String), usize>,
}

impl Known {
    /// One more copy of `line` in `table` is ours.
    pub fn add(&mut self, table: TableName, line: &str) {
        *self.counts.entry((table, line.to_string())).or_default() += 1;
    }

    /// Adds another source, keeping per line the larger count (two records
    /// of the same rule — installed and being installed — name one rule).
    pub fn merge(&mut self, other: Known) {
        for (k, n) in other.counts {
            let e = self.counts.entry(k).or_default();
            *e = (*e).max(n);
        }
    }

    /// The rules a receipt record lists outside our own chains.
    pub fn from_record(r: &FamilyReceipt) -> Known {
        let mut k = Known::default();
        for t in &r.tables {
            for l in t.rules.iter().filter(|l| !is_our_chain(&l.chain)) {
                k.add(t.table, &l.line);
            }
        }
        k
    }

    /// Every record's rules (see [`Known::merge`]).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a FamilyReceipt>) -> Known {
        let mut k = Known::default();
        for r in records {
            k.merge(Known::from_record(r));
        }
        k
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn contains(&self, table: TableName, line: &str) -> bool {
        self.counts.contains_key(&(table, line.to_string()))
    }
}

/// The rules and chains of ours found in a saved ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// Our rules in chains that are not ours (built-in or foreign), to delete one by one.
    pub rules: Vec<(TableName, SavedLine)>,
    /// Our chains (flushed and deleted as a whole).
    pub chains: Vec<(TableName, String)>,
}

impl Owned {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.chains.is_empty()
    }

    pub fn tables(&self) -> BTreeSet<TableName> {
        self.rules
            .iter()
            .map(|(t, _)| *t)
            .chain(self.chains.iter().map(|(t, _)| *t))
            .collect()
    }

    pub fn owns_chain(&self, table: TableName, chain: &str) -> bool {
        self.chains.iter().any(|(t, c)| *t == table && c == chain)
    }

    /// Number of rules inside our chains plus our rules elsewhere.
    pub fn rule_count(&self, saved: &Saved) -> usize {
        let inside: usize = self
            .chains
            .iter()
            .filter_map(|(t, c)| saved.table(*t).map(|st| st.chain_rules(c).count()))
            .sum();
        inside + self.rules.len()
    }
}

/// Finds what is ours in `saved`: chains named `KUMA_MESH*`, rules that carry
/// our comment prefix or reference our chains, and the rules `known` lists
/// (as many copies as it lists).
pub fn find_owned(saved: &Saved, known: &Known) -> Owned {
    let mut owned = Owned::default();
    let mut budget = known.counts.clone();
    for table in TableName::ALL {
        let Some(st) = saved.table(table) else {
            continue;
        };
        for c in &st.chains {
            if !c.builtin() && is_our_chain(&c.name) {
                owned.chains.push((table, c.name.clone()));
            }
        }
        for r in &st.rules {
            if is_our_chain(&r.chain) {
                continue;
            }
            let listed = match budget.get_mut(&(table, r.spec.clone())) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            if listed || is_marked(&r.spec) {
                owned.rules.push((table, r.clone()));
            }
        }
    }
    owned
}

/// The restore input that removes `owned` (and then writes `plan`, if given):
/// per table, `-D` for our rules in other chains, `-F` for our chains, `-X`
/// for our chains the plan does not keep, `-N` for new chains, then the plan's
/// rules in kumactl's format. With `policies` (legacy), each table starts by
/// declaring its built-in chains with their policy and counters as saved,
/// since legacy restore would otherwise reset those counters; such input is
/// run with `--counters`.
pub fn transaction_input(
    owned: &Owned,
    plan: Option<&FamilyRules>,
    policies: Option<&Saved>,
) -> String {
    let mut out = String::new();
    for table in TableName::ALL {
        let planned = plan.and_then(|p| p.table(table)).filter(|t| !t.is_empty());
        let old_rules: Vec<&SavedLine> = owned
            .rules
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, l)| l)
            .collect();
        let old_chains: Vec<&String> = owned
            .chains
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, c)| c)
            .collect();
        if planned.is_none() && old_rules.is_empty() && old_chains.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n", table.as_str()));
        if let Some(st) = policies.and_then(|p| p.table(table)) {
            out.push_str(&st.policy_lines());
        }
        for l in &old_rules {
            out.push_str(&l.delete_command());
            out.push('\n');
        }
        for c in &old_chains {
            out.push_str(&format!("-F {c}\n"));
        }
        let new_chains: Vec<&str> = planned
            .map(|t| t.custom_chains().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        for c in &old_chains {
            if !new_chains.contains(&c.as_str()) {
                out.push_str(&format!("-X {c}\n"));
            }
        }
        if let Some(t) = planned {
            for c in &new_chains {
                if !old_chains.iter().any(|o| o.as_str() == *c) {
                    out.push_str(&format!("-N {c}\n"));
                }
            }
            let comments = plan.is_some_and(|p| p.comments);
            for chain in &t.chains {
                for rule in &chain.rules {
                    out.push_str(&rule_line(&chain.name, rule, comments, Style::default()));
                    out.push('\n');
                }
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The saved state whose policy counters a restore into `exes` must carry
/// (legacy only; see [`transaction_input`]).
pub fn policies_for<'a>(exes: &Executables, saved: &'a Saved) -> Option<&'a Saved> {
    (exes.mode == Mode::Legacy).then_some(saved)
}

fn restore_cmd(exes: &Executables, opts: &RestoreOptions, flags: &[&str]) -> Cmd {
    let mut cmd = Cmd::new(&exes.restore);
    if exes.mode == Mode::Legacy {
        if opts.wait > 0 {
            cmd = cmd.arg(format!("--wait={}", opts.wait));
            // iptables refuses --wait-interval without --wait
            if opts.wait_interval > 0 {
                cmd = cmd.arg(format!("--wait-interval={}", opts.wait_interval));
            }
        }
        // Policy counters are declared in the input (transaction_input).
        cmd = cmd.arg("--counters");
    }
    if !flags.contains(&"--test") {
        // Applies, rolls back or removes rules: see exec's module comment.
        cmd = cmd.commits();
    }
    cmd.args(flags.iter().copied())
}

/// The input line iptables-restore complained about, if it said which.
pub fn offending_line(stderr: &str, input: &str) -> Option<String> {
    let number = stderr.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("Error occurred at line: ")
            .map(str::trim)
            .or_else(|| {
                l.split_once("line ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .map(|n| n.trim_end_matches(':'))
            })
            .and_then(|n| n.parse::<usize>().ok())
    })?;
    input
        .lines()
        .nth(number.checked_sub(1)?)
        .map(|l| format!("line {number}: {l}"))
}

fn stderr_of(err: &anyhow::Error) -> String {
    err.downcast_ref::<crate::host::exec::CommandError>()
        .map(|c| c.stderr.clone())
        .unwrap_or_default()
}

/// A failed restore, with the line it rejected when it named one.
pub fn restore_error(
    exes: &Executables,
    what: &str,
    err: anyhow::Error,
    input: &str,
) -> anyhow::Error {
    match offending_line(&stderr_of(&err), input) {
        Some(line) => err.context(format!(
            "{} {what} rejected the rules at {line}",
            exes.family.tool()
        )),
        None => err.context(format!("{} {what} failed", exes.family.tool())),
    }
}

/// Runs one restore with the configured retries. `retry` decides whether a
/// failure is worth another attempt; a process killed at its time limit
/// never is, and no attempt starts once the run's deadline has passed.
fn with_retries(
    exes: &Executables,
    opts: &RestoreOptions,
    flags: &[&str],
    input: &str,
    step: &str,
    retry: impl Fn(&anyhow::Error) -> bool,
) -> anyhow::Result<()> {
    let attempts = opts.retries + 1;
    let tool = exes.family.tool();
    let mut last = None;
    for i in 1..=attempts {
        let cmd = restore_cmd(exes, opts, flags).stdin(input);
        let tag = if attempts > 1 {
            format!("[{tool}] [{i}/{attempts}]")
        } else {
            format!("[{tool}]")
        };
        if opts.verbose {
            crate::ui::info(format!("{tag} {}", cmd.display()));
        }
        match cmd.run() {
            Ok(_) => return Ok(()),
            Err(e) => {
                crate::ui::info(format!("{tag} {step} failed: {e:#}"));
                let again = i < attempts
                    && !exec::is_timeout(&e)
                    && retry(&e)
                    && exec::budget().is_none_or(|b| b.remaining() > opts.sleep);
                last = Some(e);
                if !again {
                    break;
                }
                crate::ui::info(format!(
                    "{tag} will try again in {}",
                    humantime::format_duration(opts.sleep)
                ));
                std::thread::sleep(opts.sleep);
            }
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Whether restore exited with status 2, iptables' "parameter problem": a
/// usage error, which no retry changes.
fn parameter_problem(err: &anyhow::Error) -> bool {
    err.downcast_ref::<crate::host::exec::CommandError>()
        .is_some_and(|c| c.status == "exit status 2")
}

/// `restore --test --noflush`: validates the input without changing
/// anything. Retried like the apply (the legacy xtables lock may be held by
/// another program, exit status 4), except when restore rejected a rule or
/// its arguments: that will not change.
pub fn test_input(exes: &Executables, opts: &RestoreOptions, input: &str) -> anyhow::Result<()> {
    with_retries(
        exes,
        opts,
        &["--test", "--noflush"],
        input,
        "checking",
        |e| offending_line(&stderr_of(e), input).is_none() && !parameter_problem(e),
    )
    .map_err(|e| restore_error(exes, "validation (iptables-restore --test)", e, input))
}

/// `restore --noflush` with retries.
pub fn apply_input(exes: &Executables, opts: &RestoreOptions, input: &str) -> anyhow::Result<()> {
    with_retries(exes, opts, &["--noflush"], input, "restoring", |_| true)
        .map_err(|e| restore_error(exes, "iptables-restore", e, input))
}

/// Runs a prepared input once more without retries (rollback, which must
/// not wait long: the run has already failed).
pub fn apply_once(exes: &Executables, opts: &RestoreOptions, input: &str) -> anyhow::Result<()> {
    // Legacy gets --counters from restore_cmd.
    let flags: &[&str] = if exes.mode == Mode::Legacy {
        &["--noflush"]
    } else {
        &["--noflush", "--counters"]
    };
    restore_cmd(exes, opts, flags)
        .stdin(input)
        .run()
        .map(|_| ())
        .map_err(|e| restore_error(exes, "rollback", e, input))
}

/// Removes a table iptables-nft created, when `current` (a fresh save)
/// shows it holds nothing; legacy tables cannot be removed from user space.
/// Returns whether it was removed.
pub fn delete_table_if_pristine(
    exes: &Executables,
    table: TableName,
    current: &Saved,
) -> anyhow::Result<bool> {
    let Some(nft) = nft_program(exes) else {
        return Ok(false);
    };
    if !current.table(table).is_some_and(SavedTable::is_pristine) {
        return Ok(false);
    }
    let family = nft_family(exes.family);
    Cmd::new(nft)
        .args(["delete", "table", family, table.as_str()])
        .run()
        .with_context(|| format!("removing the empty {family} {} table", table.as_str()))?;
    Ok(true)
}

/// The `nft` program, when `exes` is the nft backend and nft is installed:
/// what removing tables and base chains an install created needs.
fn nft_program(exes: &Executables) -> Option<std::path::PathBuf> {
    if exes.mode != Mode::Nft {
        return None;
    }
    which::which("nft").ok()
}

/// The nft family name of an iptables family.
fn nft_family(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    }
}

/// The base chains nft has in `exes`'s family, as (table, chain); `None`
/// when that cannot be known (legacy, where built-in chains always exist,
/// or no `nft` program). `iptables-nft-save` prints every built-in chain of
/// a table whether nft has it or not, so it cannot tell.
pub fn nft_base_chains(
    exes: &Executables,
) -> anyhow::Result<Option<BTreeSet<(TableName, String)>>> {
    let Some(nft) = nft_program(exes) else {
        return Ok(None);
    };
    let out = Cmd::new(nft)
        .args(["-j", "list", "chains", nft_family(exes.family)])
        .run()?;
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).context("reading `nft -j list chains`")?;
    let mut chains = BTreeSet::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        let c = &item["chain"];
        if c["hook"].is_string()
            && let (Some(t), Some(n)) = (c["table"].as_str(), c["name"].as_str())
            && let Some(table) = TableName::parse(t)
        {
            chains.insert((table, n.to_string()));
        }
    }
    Ok(Some(chains))
}

/// Built-in chains `plan` writes rules into that nft does not have yet in
/// tables that exist (the install creates them): what the receipt records as
/// `builtin_created`. Asks nft only when there is such a candidate.
pub fn base_chains_to_create(
    exes: &Executables,
    plan: &FamilyRules,
    before: &Saved,
) -> anyhow::Result<Vec<(TableName, String)>> {
    let candidates: Vec<(TableName, String)> = plan
        .non_empty_tables()
        .filter_map(|t| before.table(t.name).map(|st| (t, st)))
        .flat_map(|(t, st)| {
            t.chains
                .iter()
                .filter(|c| {
                    !c.custom && !c.rules.is_empty() && st.chain_rules(&c.name).next().is_none()
                })
                .map(move |c| (t.name, c.name.clone()))
        })
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let Some(existing) = nft_base_chains(exes)? else {
        return Ok(Vec::new());
    };
    Ok(candidates
        .into_iter()
        .filter(|c| !existing.contains(c))
        .collect())
}

/// Removes a built-in chain an install made nft create, when `current` (a
/// fresh save) shows it empty with policy ACCEPT. Returns whether it went.
pub fn delete_base_chain_if_pristine(
    exes: &Executables,
    table: TableName,
    chain: &str,
    current: &Saved,
) -> anyhow::Result<bool> {
    let Some(nft) = nft_program(exes) else {
        return Ok(false);
    };
    let Some(st) = current.table(table) else {
        return Ok(false);
    };
    let accept = st
        .chains
        .iter()
        .any(|c| c.name == chain && c.policy == "ACCEPT");
    if !accept || st.chain_rules(chain).next().is_some() {
        return Ok(false);
    }
    let family = nft_family(exes.family);
    Cmd::new(nft)
        .args(["delete", "chain", family, table.as_str(), chain])
        .run()
        .with_context(|| {
            format!(
                "removing the empty {family} {} chain {chain}",
                table.as_str()
            )
        })?;
    Ok(true)
}

/// The non-verbose restore text of a plan (what the receipt compares).
pub fn applied_text(plan: &FamilyRules) -> String {
    family_text(plan, Style::default())
}

#[cfg(test)]
mod tests;
