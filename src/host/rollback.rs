//! Undoing a failed run at rule granularity (SPEC §4): from a fresh save,
//! delete exactly the lines this run added that are there, give our own
//! chains back the content they had, and re-insert exactly the lines this
//! run removed that are missing, each next to the rule it followed. A table
//! is never restored from the snapshot as a whole, so rules other tools add
//! or remove meanwhile survive, and foreign rules that `iptables-nft-save`
//! prints lossily (nft-native expressions) are never written back by us.
//!
//! It works from what is there now, whatever part of the run happened: a
//! restore that failed as a whole (nft applies an input atomically), one
//! that committed some tables and not others (legacy commits table by table),
//! or one that did everything before a later step failed.

use std::collections::HashMap;

use crate::host::apply::Owned;
use crate::host::canonical::CanonicalPlan;
use crate::host::save::{Saved, SavedLine, SavedTable, is_our_chain};
use crate::model::TableName;

/// What one run did to one family, as far as undoing it needs.
pub struct Change<'a> {
    /// The state before the run.
    pub before: &'a Saved,
    /// Our rules and chains the run removed (or emptied for reuse).
    pub owned: &'a Owned,
    /// What it added: planned lines in the kernel's form, per chain.
    pub added: Option<&'a CanonicalPlan>,
}

fn counted(line: &SavedLine) -> String {
    match &line.counters {
        Some(c) => format!("{c} {}", line.spec),
        None => line.spec.clone(),
    }
}

fn rest_of(spec: &str) -> &str {
    spec.strip_prefix("-A ").unwrap_or(spec)
}

/// The restore input (run with `--noflush --counters`) that undoes `change`
/// given the current state `now`; empty when there is nothing to undo. With
/// `policies` (legacy), the built-in chains' policy counters are declared as
/// they are now, so the restore does not reset them.
pub fn rollback_input(change: &Change<'_>, now: &Saved, policies: bool) -> String {
    let mut out = String::new();
    for table in TableName::ALL {
        let block = table_rollback(change, table, now);
        if block.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n", table.as_str()));
        if policies && let Some(st) = now.table(table) {
            out.push_str(&st.policy_lines());
        }
        out.push_str(&block);
        out.push_str("COMMIT\n");
    }
    out
}

fn table_rollback(change: &Change<'_>, table: TableName, now: &Saved) -> String {
    let empty = SavedTable::default();
    let cur = now.table(table).unwrap_or(&empty);
    let mut out = String::new();
    let mut simulated = delete_added(change, table, cur, &mut out);
    restore_our_chains(change.before.table(table), cur, &mut out);
    if let Some(b) = change.before.table(table) {
        reinsert_removed(change, table, b, cur, &mut simulated, &mut out);
    }
    out
}

fn chain_lines(st: &SavedTable, c: &str) -> Vec<String> {
    st.chain_rules(c).map(|r| r.spec.clone()).collect()
}

/// Step 1: lines this run added outside our chains — delete the copies
/// beyond what was there before (a foreign twin of a planned line stays).
/// Returns each touched chain's lines as they will be after the deletes.
fn delete_added(
    change: &Change<'_>,
    table: TableName,
    cur: &SavedTable,
    out: &mut String,
) -> HashMap<String, Vec<String>> {
    let mut simulated: HashMap<String, Vec<String>> = HashMap::new();
    let Some(added) = change.added else {
        return simulated;
    };
    let before = change.before.table(table);
    for c in added
        .chains
        .iter()
        .filter(|c| c.table == table && !is_our_chain(&c.chain))
    {
        let mut live = chain_lines(cur, &c.chain);
        let mut planned: HashMap<&str, usize> = HashMap::new();
        for l in &c.lines {
            *planned.entry(l.as_str()).or_default() += 1;
        }
        let before_kept: Vec<String> = before
            .map(|b| chain_lines(b, &c.chain))
            .unwrap_or_default()
            .into_iter()
            .filter(|l| {
                !change
                    .owned
                    .rules
                    .iter()
                    .any(|(t, o)| *t == table && o.spec == *l)
            })
            .collect();
        for (line, n) in planned {
            let there = live.iter().filter(|l| *l == line).count();
            let was = before_kept.iter().filter(|l| *l == line).count();
            for _ in 0..there.saturating_sub(was).min(n) {
                out.push_str(&format!("-D {}\n", rest_of(line)));
                if let Some(i) = live.iter().position(|l| l == line) {
                    live.remove(i);
                }
            }
        }
        simulated.insert(c.chain.clone(), live);
    }
    simulated
}

/// Step 2: our chains — empty those there now, remove those the run
/// created, re-create those it deleted, give the old ones their rules
/// (and counters) back. A chain holding what it held before is left alone.
fn restore_our_chains(before: Option<&SavedTable>, cur: &SavedTable, out: &mut String) {
    let ours = |st: &SavedTable| -> Vec<String> {
        st.chains
            .iter()
            .filter(|c| !c.builtin() && is_our_chain(&c.name))
            .map(|c| c.name.clone())
            .collect()
    };
    let ours_now = ours(cur);
    let ours_before = before.map(ours).unwrap_or_default();
    let untouched = |c: &str| {
        cur.has_chain(c)
            && before.is_some_and(|b| b.has_chain(c) && chain_lines(b, c) == chain_lines(cur, c))
    };
    for c in ours_now.iter().filter(|c| !untouched(c)) {
        out.push_str(&format!("-F {c}\n"));
    }
    for c in ours_before.iter().filter(|c| !ours_now.contains(c)) {
        out.push_str(&format!("-N {c}\n"));
    }
    for c in ours_now.iter().filter(|c| !ours_before.contains(c)) {
        out.push_str(&format!("-X {c}\n"));
    }
    if let Some(b) = before {
        for c in ours_before.iter().filter(|c| !untouched(c)) {
            for r in b.chain_rules(c) {
                out.push_str(&counted(r));
                out.push('\n');
            }
        }
    }
}

/// Step 3: lines the run removed from other chains — put back the missing
/// ones, each after the rule it followed before (if that is still there).
fn reinsert_removed(
    change: &Change<'_>,
    table: TableName,
    b: &SavedTable,
    cur: &SavedTable,
    simulated: &mut HashMap<String, Vec<String>>,
    out: &mut String,
) {
    let mut chains: Vec<&str> = Vec::new();
    for (t, l) in &change.owned.rules {
        if *t == table && !chains.contains(&l.chain.as_str()) {
            chains.push(&l.chain);
        }
    }
    for chain in chains {
        let mut live = simulated
            .remove(chain)
            .unwrap_or_else(|| chain_lines(cur, chain));
        let mut removed: Vec<&SavedLine> = change
            .owned
            .rules
            .iter()
            .filter(|(t, l)| *t == table && l.chain == chain)
            .map(|(_, l)| l)
            .collect();
        let mut pos = 0usize;
        for r in b.chain_rules(chain) {
            let Some(i) = removed.iter().position(|o| o.spec == r.spec) else {
                if let Some(j) = live[pos..].iter().position(|l| *l == r.spec) {
                    pos += j + 1;
                }
                continue;
            };
            removed.remove(i);
            // Already back (or never went): leave it.
            if let Some(j) = live[pos..].iter().position(|l| *l == r.spec) {
                pos += j + 1;
                continue;
            }
            let counters = r
                .counters
                .as_deref()
                .map(|c| format!("{c} "))
                .unwrap_or_default();
            out.push_str(&format!(
                "{counters}-I {chain} {} {}\n",
                pos + 1,
                rest_of(&r.spec)
                    .split_once(' ')
                    .map(|(_, a)| a)
                    .unwrap_or("")
            ));
            live.insert(pos, r.spec.clone());
            pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::apply::{Known, find_owned};
    use crate::host::canonical::CanonicalChain;
    use crate::model::Family;

    const BEFORE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [5:300]
:POSTROUTING ACCEPT [0:0]
:KUMA_MESH_OUTBOUND - [0:0]
[1:60] -A OUTPUT -p udp -m udp --dport 9 -j RETURN
[2:120] -A OUTPUT -p tcp -m comment --comment \"kuma/mesh/transparent/proxy/old\" -j KUMA_MESH_OUTBOUND
[3:180] -A OUTPUT -p udp -m udp --dport 10 -j RETURN
[0:0] -A KUMA_MESH_OUTBOUND -j RETURN
COMMIT
";

    fn plan() -> CanonicalPlan {
        CanonicalPlan {
            family: Family::Ipv4,
            chains: vec![
                CanonicalChain {
                    table: TableName::Nat,
                    chain: "OUTPUT".into(),
                    lines: vec!["-A OUTPUT -p tcp -j KUMA_MESH_NEW".into()],
                },
                CanonicalChain {
                    table: TableName::Nat,
                    chain: "KUMA_MESH_NEW".into(),
                    lines: vec!["-A KUMA_MESH_NEW -j RETURN".into()],
                },
            ],
        }
    }

    #[test]
    fn undoes_only_this_runs_lines_and_keeps_foreign_changes() {
        let before = Saved::parse(BEFORE);
        let owned = find_owned(&before, &Known::default());
        assert_eq!(owned.rules.len(), 1);
        let added = plan();
        // after the run, and a foreign rule added meanwhile
        let now = Saved::parse(
            "*nat
:OUTPUT ACCEPT [9:900]
:KUMA_MESH_NEW - [0:0]
-A OUTPUT -p udp -m udp --dport 9 -j RETURN
-A OUTPUT -p udp -m udp --dport 10 -j RETURN
-A OUTPUT -p icmp -j ACCEPT
-A OUTPUT -p tcp -j KUMA_MESH_NEW
-A KUMA_MESH_NEW -j RETURN
COMMIT
",
        );
        let change = Change {
            before: &before,
            owned: &owned,
            added: Some(&added),
        };
        let input = rollback_input(&change, &now, true);
        assert_eq!(
            input,
            "*nat
:OUTPUT ACCEPT [9:900]
-D OUTPUT -p tcp -j KUMA_MESH_NEW
-F KUMA_MESH_NEW
-N KUMA_MESH_OUTBOUND
-X KUMA_MESH_NEW
[0:0] -A KUMA_MESH_OUTBOUND -j RETURN
[2:120] -I OUTPUT 2 -p tcp -m comment --comment \"kuma/mesh/transparent/proxy/old\" -j KUMA_MESH_OUTBOUND
COMMIT
"
        );
        assert!(!input.contains("icmp"), "the foreign rule is never named");
    }

    #[test]
    fn nothing_happened_means_nothing_to_undo() {
        let before = Saved::parse(BEFORE);
        let owned = find_owned(&before, &Known::default());
        let added = plan();
        let change = Change {
            before: &before,
            owned: &owned,
            added: Some(&added),
        };
        // the restore failed as a whole: the state is still `before`
        assert_eq!(rollback_input(&change, &before, false), "");
    }
}
