//! Applying and removing rules as a transaction (SPEC §4). Per family: the
//! current rules are saved (with counters), the complete restore input —
//! removal of our previous rules, then the new plan — is checked with
//! `iptables-restore --test`, applied with one `iptables-restore --noflush`
//! (`--wait` for legacy, retries as configured), and read back. If any family
//! fails, or the read-back does not show every planned rule where the plan
//! put it with everybody else's rules untouched, every family is restored
//! from its snapshot. Removal deletes our rules one by one (`-D`) and our
//! chains (`-F`, `-X`), so foreign rules keep their order and counters.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use anyhow::Context;

use crate::host::backend::Executables;
use crate::host::exec::Cmd;
use crate::host::receipt::{Mode, SavedRule, TableReceipt};
use crate::host::save::{Saved, SavedLine, SavedTable, is_marked, is_our_chain};
use crate::model::{Family, FamilyRules, Position, Rule, TableName, Target};
use crate::render::restore::{comment_text, go_quote};
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

    fn owns_chain(&self, table: TableName, chain: &str) -> bool {
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
/// our comment prefix or reference our chains, and rules `extra` recognises
/// (the receipt's lines, or the canonical form of planned comment-less rules).
pub fn find_owned(saved: &Saved, extra: &dyn Fn(TableName, &SavedLine) -> bool) -> Owned {
    let mut owned = Owned::default();
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
            if is_marked(&r.spec) || extra(table, r) {
                owned.rules.push((table, r.clone()));
            }
        }
    }
    owned
}

/// The restore input that removes `owned` (and then writes `plan`, if given):
/// per table, `-D` for our rules in other chains, `-F` for our chains, `-X`
/// for our chains the plan does not keep, `-N` for new chains, then the plan's
/// rules in kumactl's format.
pub fn transaction_input(owned: &Owned, plan: Option<&FamilyRules>) -> String {
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

fn restore_cmd(exes: &Executables, opts: &RestoreOptions, flags: &[&str]) -> Cmd {
    let mut cmd = Cmd::new(&exes.restore);
    if exes.mode == Mode::Legacy {
        if opts.wait > 0 {
            cmd = cmd.arg(format!("--wait={}", opts.wait));
        }
        if opts.wait_interval > 0 {
            cmd = cmd.arg(format!("--wait-interval={}", opts.wait_interval));
        }
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

fn restore_error(exes: &Executables, what: &str, err: anyhow::Error, input: &str) -> anyhow::Error {
    let stderr = err
        .downcast_ref::<crate::host::exec::CommandError>()
        .map(|c| c.stderr.clone())
        .unwrap_or_default();
    match offending_line(&stderr, input) {
        Some(line) => err.context(format!(
            "{} {what} rejected the rules at {line}",
            exes.family.tool()
        )),
        None => err.context(format!("{} {what} failed", exes.family.tool())),
    }
}

/// `restore --test --noflush`: validates the input without changing anything.
pub fn test_input(exes: &Executables, opts: &RestoreOptions, input: &str) -> anyhow::Result<()> {
    restore_cmd(exes, opts, &["--test", "--noflush"])
        .stdin(input)
        .run()
        .map(|_| ())
        .map_err(|e| restore_error(exes, "validation (iptables-restore --test)", e, input))
}

/// `restore --noflush` with retries.
pub fn apply_input(exes: &Executables, opts: &RestoreOptions, input: &str) -> anyhow::Result<()> {
    let attempts = opts.retries + 1;
    let tool = exes.family.tool();
    let mut last = None;
    for i in 1..=attempts {
        let cmd = restore_cmd(exes, opts, &["--noflush"]).stdin(input);
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
                crate::ui::info(format!("{tag} restoring failed: {e}"));
                last = Some(e);
                if i < attempts {
                    crate::ui::info(format!(
                        "{tag} will try again in {}",
                        humantime::format_duration(opts.sleep)
                    ));
                    std::thread::sleep(opts.sleep);
                }
            }
        }
    }
    Err(restore_error(
        exes,
        "iptables-restore",
        last.expect("at least one attempt"),
        input,
    ))
}

/// Puts the touched tables back as they were in `before` (counters too). A
/// table that did not exist is emptied, and removed where the backend allows.
pub fn restore_snapshot(
    exes: &Executables,
    opts: &RestoreOptions,
    before: &Saved,
    tables: &BTreeSet<TableName>,
) -> anyhow::Result<()> {
    let mut input = String::new();
    let mut absent = Vec::new();
    for t in tables {
        match before.table(*t) {
            Some(st) => input.push_str(&st.restore_block()),
            None => {
                input.push_str(&format!("*{}\n", t.as_str()));
                for c in t.builtin_chains() {
                    input.push_str(&format!(":{c} ACCEPT [0:0]\n"));
                }
                input.push_str("COMMIT\n");
                absent.push(*t);
            }
        }
    }
    if input.is_empty() {
        return Ok(());
    }
    restore_cmd(exes, opts, &["--counters"])
        .stdin(input.clone())
        .run()
        .map_err(|e| restore_error(exes, "rollback", e, &input))?;
    if !absent.is_empty() && exes.mode == Mode::Nft {
        let (_, now) = exes.save_all()?;
        for t in absent {
            let _ = delete_table_if_pristine(exes, t, &now);
        }
    }
    Ok(())
}

/// Removes a table iptables-nft created, when `current` (a fresh save)
/// shows it holds nothing; legacy tables cannot be removed from user space.
/// Returns whether it was removed.
pub fn delete_table_if_pristine(
    exes: &Executables,
    table: TableName,
    current: &Saved,
) -> anyhow::Result<bool> {
    if exes.mode != Mode::Nft {
        return Ok(false);
    }
    let Ok(nft) = which::which("nft") else {
        return Ok(false);
    };
    if !current.table(table).is_some_and(SavedTable::is_pristine) {
        return Ok(false);
    }
    let family = match exes.family {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    };
    Cmd::new(nft)
        .args(["delete", "table", family, table.as_str()])
        .run()
        .with_context(|| format!("removing the empty {family} {} table", table.as_str()))?;
    Ok(true)
}

/// Whether an iptables-save line is the planned rule.
pub fn line_matches(rule: &Rule, spec: &str, comments: bool) -> bool {
    let target_ok = match &rule.target {
        Target::Return => spec.ends_with("-j RETURN"),
        Target::Drop => spec.ends_with("-j DROP"),
        Target::Chain(c) => spec.ends_with(&format!("-j {c}")),
        Target::Redirect(p) => spec.ends_with(&format!("-j REDIRECT --to-ports {p}")),
        Target::CtZone(z) => spec.ends_with(&format!("-j CT --zone {z}")),
        Target::Log { level, .. } => {
            spec.contains("-j LOG") && spec.ends_with(&format!("--log-level {level}"))
        }
    };
    if !target_ok {
        return false;
    }
    if comments && !rule.comment.is_empty() {
        spec.contains(&format!(
            "--comment {}",
            go_quote(&comment_text(&rule.comment))
        ))
    } else {
        true
    }
}

/// Checks the state after applying `plan` on top of `before` (our old rules
/// `owned` removed): our rules where the plan put them, every other rule and
/// chain as before. Returns what the receipt records, or every difference.
pub fn verify(
    plan: &FamilyRules,
    before: &Saved,
    owned: &Owned,
    after: &Saved,
) -> Result<Vec<TableReceipt>, Vec<String>> {
    let mut problems = Vec::new();
    let mut receipts = Vec::new();
    let tool = plan.family.tool();
    let owned_specs: HashSet<(TableName, &str)> = owned
        .rules
        .iter()
        .map(|(t, l)| (*t, l.spec.as_str()))
        .collect();
    for table in TableName::ALL {
        let planned = plan.table(table).filter(|t| !t.is_empty());
        let b = before.table(table);
        let a = after.table(table);
        let mut rec = TableReceipt {
            table,
            created: b.is_none() && a.is_some(),
            chains: Vec::new(),
            rules: Vec::new(),
        };
        // Chains: foreign ones unchanged (a new table brings its built-in
        // chains), ours as planned.
        let foreign = |st: Option<&SavedTable>| -> BTreeSet<String> {
            st.map(|t| {
                t.chains
                    .iter()
                    .filter(|c| {
                        !owned.owns_chain(table, &c.name) && !is_planned_chain(planned, &c.name)
                    })
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default()
        };
        let (fb, fa) = (foreign(b), foreign(a));
        let vanished: Vec<&String> = fb.difference(&fa).collect();
        let appeared: Vec<&String> = fa
            .difference(&fb)
            .filter(|c| b.is_some() || !table.builtin_chains().contains(&c.as_str()))
            .collect();
        if !vanished.is_empty() || !appeared.is_empty() {
            problems.push(format!(
                "[{tool}] {}: other chains changed (gone: {vanished:?}, new: {appeared:?})",
                table.as_str()
            ));
        }
        if let Some(t) = planned {
            for c in t.custom_chains() {
                if !a.is_some_and(|st| st.has_chain(&c.name)) {
                    problems.push(format!(
                        "[{tool}] {}: chain {} is missing after apply",
                        table.as_str(),
                        c.name
                    ));
                }
                rec.chains.push(c.name.clone());
            }
        }
        for (t, c) in &owned.chains {
            if *t == table && !is_planned_chain(planned, c) && a.is_some_and(|st| st.has_chain(c)) {
                problems.push(format!(
                    "[{tool}] {}: old chain {c} is still there",
                    table.as_str()
                ));
            }
        }
        // Rules, chain by chain.
        let mut chain_names: Vec<String> = Vec::new();
        for st in [b, a].into_iter().flatten() {
            for c in &st.chains {
                if !chain_names.contains(&c.name) {
                    chain_names.push(c.name.clone());
                }
            }
        }
        if let Some(t) = planned {
            for c in &t.chains {
                if !c.rules.is_empty() && !chain_names.contains(&c.name) {
                    chain_names.push(c.name.clone());
                }
            }
        }
        for name in chain_names {
            let before_foreign: Vec<&str> = b
                .map(|st| {
                    st.chain_rules(&name)
                        .filter(|r| {
                            !owned.owns_chain(table, &name)
                                && !owned_specs.contains(&(table, r.spec.as_str()))
                        })
                        .map(|r| r.spec.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let after_lines: Vec<&str> = a
                .map(|st| st.chain_rules(&name).map(|r| r.spec.as_str()).collect())
                .unwrap_or_default();
            let planned_chain = planned.and_then(|t| t.chains.iter().find(|c| c.name == name));
            let ours = planned_chain.map(|c| c.final_order()).unwrap_or_default();
            let inserted = planned_chain.map(|c| c.inserted()).unwrap_or(0);
            let appended = ours.len() - inserted;
            let expected_len = before_foreign.len() + ours.len();
            if after_lines.len() != expected_len {
                problems.push(format!(
                    "[{tool}] {}/{name}: {} rules after apply, expected {} ({} of ours, {} others)",
                    table.as_str(),
                    after_lines.len(),
                    expected_len,
                    ours.len(),
                    before_foreign.len()
                ));
                continue;
            }
            let middle = &after_lines[inserted..after_lines.len() - appended];
            if middle != before_foreign.as_slice() {
                problems.push(format!(
                    "[{tool}] {}/{name}: other rules changed or moved",
                    table.as_str()
                ));
            }
            for (i, rule) in ours.iter().enumerate() {
                let idx = if i < inserted {
                    i
                } else {
                    after_lines.len() - appended + (i - inserted)
                };
                let line = after_lines[idx];
                if !line_matches(rule, line, plan.comments) {
                    problems.push(format!(
                        "[{tool}] {}/{name}: position {} holds '{line}', expected the rule '{}'",
                        table.as_str(),
                        idx + 1,
                        rule_line(&name, rule, plan.comments, Style::default())
                    ));
                    continue;
                }
                rec.rules.push(SavedRule {
                    chain: name.clone(),
                    line: line.to_string(),
                    inserted: matches!(rule.position, Position::Insert(_)),
                });
            }
        }
        if rec.created || !rec.chains.is_empty() || !rec.rules.is_empty() {
            receipts.push(rec);
        }
    }
    if problems.is_empty() {
        Ok(receipts)
    } else {
        Err(problems)
    }
}

fn is_planned_chain(planned: Option<&crate::model::Table>, name: &str) -> bool {
    planned.is_some_and(|t| t.custom_chains().any(|c| c.name == name))
}

/// True when the current rules still hold exactly what the receipt recorded:
/// our lines in each chain, inserted ones at the top, and our chains.
pub fn matches_receipt(tables: &[TableReceipt], current: &Saved) -> bool {
    for tr in tables {
        let Some(st) = current.table(tr.table) else {
            return false;
        };
        for c in &tr.chains {
            if !st.has_chain(c) {
                return false;
            }
        }
        let mut chains: Vec<&str> = tr.rules.iter().map(|r| r.chain.as_str()).collect();
        chains.dedup();
        for chain in chains {
            let want: Vec<&SavedRule> = tr.rules.iter().filter(|r| r.chain == chain).collect();
            let lines: Vec<&str> = st.chain_rules(chain).map(|r| r.spec.as_str()).collect();
            let ours_now: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| {
                    want.iter().any(|w| w.line == *l) || is_marked(l) || is_our_chain(chain)
                })
                .collect();
            let want_lines: Vec<&str> = want.iter().map(|w| w.line.as_str()).collect();
            if ours_now != want_lines {
                return false;
            }
            let top = want.iter().filter(|w| w.inserted).count();
            if lines.len() < top || lines[..top] != want_lines[..top] {
                return false;
            }
        }
    }
    true
}

/// The non-verbose restore text of a plan (what the receipt compares).
pub fn applied_text(plan: &FamilyRules) -> String {
    family_text(plan, Style::default())
}

#[cfg(test)]
mod tests;
