//! Comparing live rules with what should be there, always by the kernel's
//! own text of each rule (see [`crate::host::canonical`]):
//! - [`read_back`]: after an install applied its plan, every planned rule is
//!   where the plan put it (inserted ones on top of their chain in order,
//!   appended ones after everything else in order, our chains exactly as
//!   planned); this gives the receipt's rule list. Rules of other tools that
//!   changed meanwhile are reported, not judged: they are not ours.
//! - [`drift`]: the live rules against a receipt — each missing, unexpected
//!   or moved rule of ours, named. `status` and `verify` share it.

use std::collections::{BTreeSet, HashMap};

use crate::host::apply::Owned;
use crate::host::canonical::CanonicalPlan;
use crate::host::receipt::{SavedRule, TableReceipt};
use crate::host::save::{Saved, SavedTable, is_marked, is_our_chain};
use crate::model::{FamilyRules, TableName};

/// What a successful read-back found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// What the receipt records, per table.
    pub tables: Vec<TableReceipt>,
    /// Rules or chains of other tools that changed while we worked.
    pub foreign_changes: Vec<String>,
}

fn lines<'a>(st: Option<&'a SavedTable>, chain: &'a str) -> Vec<&'a str> {
    st.map(|t| t.chain_rules(chain).map(|r| r.spec.as_str()).collect())
        .unwrap_or_default()
}

/// The chains of a table that are not ours.
fn foreign_chains(st: Option<&SavedTable>) -> BTreeSet<&str> {
    st.map(|s| {
        s.chains
            .iter()
            .filter(|c| !is_our_chain(&c.name))
            .map(|c| c.name.as_str())
            .collect()
    })
    .unwrap_or_default()
}

/// Whether `want` appears in `have` in order (other lines between allowed).
fn is_subsequence(want: &[String], have: &[&str]) -> bool {
    let mut it = have.iter();
    want.iter().all(|w| it.any(|h| *h == w.as_str()))
}

/// How one planned chain looks after the apply.
enum ChainCheck {
    /// Our rules are where the plan put them.
    InPlace,
    /// Ours are in place; rules of other tools changed meanwhile.
    InPlaceForeignChanged(&'static str),
    /// Not what was planned: why.
    Wrong(String),
}

/// Compares one chain after the apply (`live`) with its planned lines in
/// the kernel's form (`want`, `inserted` of them on top) and with the
/// other tools' rules it had before (`before_foreign`).
fn check_chain(
    ours: bool,
    want: &[String],
    inserted: usize,
    live: &[&str],
    before_foreign: &[&str],
) -> ChainCheck {
    if ours {
        return match (0..want.len().max(live.len()))
            .find(|i| want.get(*i).map(String::as_str) != live.get(*i).copied())
        {
            None => ChainCheck::InPlace,
            Some(i) => ChainCheck::Wrong(format!(
                "position {} holds {:?}, expected {:?}",
                i + 1,
                live.get(i).copied().unwrap_or("nothing"),
                want.get(i).map(String::as_str).unwrap_or("nothing")
            )),
        };
    }
    if let Some(i) = (0..inserted).find(|i| live.get(*i).copied() != Some(want[*i].as_str())) {
        return ChainCheck::Wrong(format!(
            "position {} holds {:?}, expected the inserted rule {:?}",
            i + 1,
            live.get(i).copied().unwrap_or("nothing"),
            want[i]
        ));
    }
    let appended = &want[inserted..];
    let rest = live.get(inserted..).unwrap_or_default();
    let at_end = rest.len() >= appended.len()
        && rest[rest.len() - appended.len()..]
            .iter()
            .zip(appended)
            .all(|(l, w)| *l == w.as_str());
    if at_end {
        if rest[..rest.len() - appended.len()] == *before_foreign {
            ChainCheck::InPlace
        } else {
            ChainCheck::InPlaceForeignChanged("rules of other tools changed meanwhile")
        }
    } else if is_subsequence(appended, rest) {
        ChainCheck::InPlaceForeignChanged("other tools appended rules after ours meanwhile")
    } else {
        let missing = appended
            .iter()
            .find(|w| !rest.contains(&w.as_str()))
            .unwrap_or(&appended[0]);
        ChainCheck::Wrong(format!(
            "the appended rule {missing:?} is missing or out of order"
        ))
    }
}

/// Every chain name of a table before and after, then planned ones.
fn chain_names(
    b: Option<&SavedTable>,
    a: Option<&SavedTable>,
    planned: Option<&crate::model::Table>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let known = [b, a]
        .into_iter()
        .flatten()
        .flat_map(|st| st.chains.iter().map(|c| c.name.clone()));
    let planned = planned
        .into_iter()
        .flat_map(|t| t.chains.iter().filter(|c| !c.rules.is_empty()))
        .map(|c| c.name.clone());
    for n in known.chain(planned) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Checks the state after applying `plan` (known to the kernel as `canon`)
/// on top of `before`, whose rules `owned` were ours and removed. Returns
/// what the receipt records, or every problem found.
pub fn read_back(
    plan: &FamilyRules,
    canon: &CanonicalPlan,
    before: &Saved,
    owned: &Owned,
    after: &Saved,
) -> Result<ReadBack, Vec<String>> {
    let tool = plan.family.tool();
    let mut problems = Vec::new();
    let mut foreign_changes = Vec::new();
    let mut tables = Vec::new();
    let mut owned_lines: HashMap<(TableName, &str), usize> = HashMap::new();
    for (t, l) in &owned.rules {
        *owned_lines.entry((*t, l.spec.as_str())).or_default() += 1;
    }
    for table in TableName::ALL {
        let planned = plan.table(table).filter(|t| !t.is_empty());
        let (b, a) = (before.table(table), after.table(table));
        let tn = table.as_str();
        let mut rec = TableReceipt {
            table,
            created: b.is_none() && a.is_some(),
            chains: Vec::new(),
            builtin_created: Vec::new(),
            rules: Vec::new(),
        };
        let planned_chain =
            |name: &str| planned.and_then(|t| t.chains.iter().find(|c| c.name == name));
        // Our chains: the planned ones exist, the old ones not planned are gone.
        for c in planned.into_iter().flat_map(|t| t.custom_chains()) {
            if !a.is_some_and(|st| st.has_chain(&c.name)) {
                problems.push(format!(
                    "[{tool}] {tn}: chain {} is missing after apply",
                    c.name
                ));
            }
            rec.chains.push(c.name.clone());
        }
        for (t, c) in &owned.chains {
            if *t == table && planned_chain(c).is_none() && a.is_some_and(|st| st.has_chain(c)) {
                problems.push(format!("[{tool}] {tn}: old chain {c} is still there"));
            }
        }
        let (fb, fa) = (foreign_chains(b), foreign_chains(a));
        let gone: Vec<&&str> = fb.difference(&fa).collect();
        let new: Vec<&&str> = fa
            .difference(&fb)
            .filter(|c| b.is_some() || !table.builtin_chains().contains(c))
            .collect();
        if !gone.is_empty() || !new.is_empty() {
            foreign_changes.push(format!(
                "[{tool}] {tn}: other chains changed meanwhile (gone: {gone:?}, new: {new:?})"
            ));
        }
        for name in chain_names(b, a, planned) {
            let live = lines(a, &name);
            let mut budget = owned_lines.clone();
            let before_foreign: Vec<&str> = if is_our_chain(&name) {
                Vec::new()
            } else {
                lines(b, &name)
                    .into_iter()
                    .filter(|l| match budget.get_mut(&(table, *l)) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            false
                        }
                        _ => true,
                    })
                    .collect()
            };
            let Some(pc) = planned_chain(&name).filter(|c| !c.rules.is_empty()) else {
                if !is_our_chain(&name) && live != before_foreign {
                    foreign_changes.push(format!(
                        "[{tool}] {tn}/{name}: rules of other tools changed meanwhile"
                    ));
                }
                continue;
            };
            let want = canon.chain(table, &name);
            let k = pc.inserted();
            match check_chain(is_our_chain(&name), want, k, &live, &before_foreign) {
                ChainCheck::InPlace => {}
                ChainCheck::InPlaceForeignChanged(what) => {
                    foreign_changes.push(format!("[{tool}] {tn}/{name}: {what}"));
                }
                ChainCheck::Wrong(why) => {
                    problems.push(format!("[{tool}] {tn}/{name}: {why}"));
                    continue;
                }
            }
            for (i, l) in want.iter().enumerate() {
                rec.rules.push(SavedRule {
                    chain: name.clone(),
                    line: l.clone(),
                    inserted: i < k && !is_our_chain(&name),
                });
            }
        }
        if rec.created || !rec.chains.is_empty() || !rec.rules.is_empty() {
            tables.push(rec);
        }
    }
    if problems.is_empty() {
        Ok(ReadBack {
            tables,
            foreign_changes,
        })
    } else {
        Err(problems)
    }
}

/// Every way the live rules differ from a receipt's: a rule or chain of
/// ours that is missing, one that is there but not recorded (a duplicate
/// included), our rules out of order, inserted rules no longer on top. Each
/// message names the table, chain and rule. Empty: the rules are in place.
pub fn drift(tables: &[TableReceipt], current: &Saved) -> Vec<String> {
    let mut out = Vec::new();
    for tr in tables {
        let tn = tr.table.as_str();
        let st = current.table(tr.table);
        for c in &tr.chains {
            if !st.is_some_and(|s| s.has_chain(c)) {
                out.push(format!("missing chain: {tn} {c}"));
            }
        }
        let mut chains: Vec<&str> = Vec::new();
        for r in &tr.rules {
            if !chains.contains(&r.chain.as_str()) {
                chains.push(&r.chain);
            }
        }
        for chain in chains {
            let want: Vec<&SavedRule> = tr.rules.iter().filter(|r| r.chain == chain).collect();
            let want_lines: Vec<&str> = want.iter().map(|w| w.line.as_str()).collect();
            let live = lines(st, chain);
            let mut counts: HashMap<&str, isize> = HashMap::new();
            for w in &want_lines {
                *counts.entry(w).or_default() += 1;
            }
            let ours_now: Vec<&str> = live
                .iter()
                .copied()
                .filter(|l| is_our_chain(chain) || counts.contains_key(l) || is_marked(l))
                .collect();
            let mut left = counts.clone();
            let mut problems = Vec::new();
            for l in &ours_now {
                match left.get_mut(l) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => problems.push(format!("unexpected rule: {tn} {l}")),
                }
            }
            for w in &want_lines {
                if let Some(n) = left.get_mut(w)
                    && *n > 0
                {
                    *n -= 1;
                    problems.push(format!("missing rule: {tn} {w}"));
                }
            }
            if problems.is_empty() {
                if ours_now != want_lines {
                    problems.push(format!("{tn}/{chain}: our rules are out of order"));
                }
                let top = want.iter().filter(|w| w.inserted).count();
                if live.get(..top) != Some(&want_lines[..top]) {
                    problems.push(format!(
                        "{tn}/{chain}: the rules inserted at the top are no longer there"
                    ));
                }
            }
            out.extend(problems);
        }
    }
    // Rules of ours in chains the receipt does not mention at all.
    for st in &current.tables {
        let Some(table) = TableName::parse(&st.name) else {
            continue;
        };
        let tr = tables.iter().find(|t| t.table == table);
        let covered = |c: &str| {
            tr.is_some_and(|t| {
                t.rules.iter().any(|r| r.chain == c) || t.chains.iter().any(|x| x == c)
            })
        };
        for c in &st.chains {
            if !c.builtin() && is_our_chain(&c.name) && !covered(&c.name) {
                out.push(format!("unexpected chain: {} {}", st.name, c.name));
            }
        }
        for l in &st.rules {
            if !covered(&l.chain) && (is_marked(&l.spec) || is_our_chain(&l.chain)) {
                out.push(format!("unexpected rule: {} {}", st.name, l.spec));
            }
        }
    }
    out
}

/// True when the live rules hold exactly what the receipt recorded.
pub fn matches_receipt(tables: &[TableReceipt], current: &Saved) -> bool {
    drift(tables, current).is_empty()
}
