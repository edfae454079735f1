//! Unit tests of the transaction pieces that need no kernel: ownership,
//! restore input composition, read-back verification, error line mapping.

use super::*;
use crate::config::{Config, IpFamilyMode};
use crate::host::canonical::{CanonicalChain, CanonicalPlan};
use crate::host::readback::{matches_receipt, read_back};
use crate::model::{Position, RuleSet};
use crate::plan::{Facts, FamilyFacts, plan};
use crate::render::rule_args;

fn default_plan() -> RuleSet {
    let cfg = Config {
        ip_family_mode: IpFamilyMode::Ipv4,
        ..Config::default()
    };
    let facts = Facts {
        uid: 5678,
        loopback: "lo".into(),
        v4: FamilyFacts::full(),
        v6: None,
    };
    plan(&cfg, &facts).rules
}

/// A save text where the plan's rules sit around the given foreign lines the
/// way the kernel would put them (inserted on top, appended at the end).
fn simulated_after(plan: &FamilyRules, foreign_nat: &str) -> String {
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CUSTOM - [0:0]\n",
    );
    let nat = plan.table(TableName::Nat).unwrap();
    for c in nat.custom_chains() {
        out.push_str(&format!(":{} - [0:0]\n", c.name));
    }
    for c in &nat.chains {
        for r in c
            .final_order()
            .iter()
            .filter(|r| matches!(r.position, Position::Insert(_)))
        {
            out.push_str(&format!(
                "-A {} {}\n",
                c.name,
                rule_args(r, true, Style::default())
            ));
        }
        for l in foreign_nat
            .lines()
            .filter(|l| l.starts_with(&format!("-A {} ", c.name)))
        {
            out.push_str(l);
            out.push('\n');
        }
        for r in c.rules.iter().filter(|r| r.position == Position::Append) {
            out.push_str(&format!(
                "-A {} {}\n",
                c.name,
                rule_args(r, true, Style::default())
            ));
        }
    }
    for l in foreign_nat.lines().filter(|l| l.starts_with("-A CUSTOM ")) {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("COMMIT\n");
    out
}

/// The plan "as the kernel prints it", the way [`simulated_after`] writes it.
fn simulated_canon(plan: &FamilyRules) -> CanonicalPlan {
    CanonicalPlan {
        family: plan.family,
        chains: plan
            .non_empty_tables()
            .flat_map(|t| {
                t.chains
                    .iter()
                    .filter(|c| !c.rules.is_empty())
                    .map(|c| CanonicalChain {
                        table: t.name,
                        chain: c.name.clone(),
                        lines: c
                            .final_order()
                            .iter()
                            .map(|r| {
                                format!("-A {} {}", c.name, rule_args(r, true, Style::default()))
                            })
                            .collect(),
                    })
            })
            .collect(),
    }
}

fn verify(
    plan: &FamilyRules,
    before: &Saved,
    owned: &Owned,
    after: &Saved,
) -> Result<Vec<crate::host::receipt::TableReceipt>, Vec<String>> {
    read_back(plan, &simulated_canon(plan), before, owned, after).map(|r| {
        assert!(r.foreign_changes.is_empty(), "{:?}", r.foreign_changes);
        r.tables
    })
}

const FOREIGN: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CUSTOM - [0:0]\n-A PREROUTING -p udp -j CUSTOM\n-A OUTPUT -p icmp -j CUSTOM\n-A CUSTOM -j RETURN\nCOMMIT\n";

#[test]
fn fresh_install_input_creates_chains_and_rules_only() {
    let set = default_plan();
    let before = Saved::parse(FOREIGN);
    let owned = find_owned(&before, &Known::default());
    assert!(owned.is_empty());
    let input = transaction_input(&owned, Some(&set.v4), None);
    assert!(
        input.starts_with("*nat\n-N KUMA_MESH_INBOUND\n-N KUMA_MESH_OUTBOUND\n"),
        "{input}"
    );
    assert!(!input.contains("-D "));
    assert!(!input.contains("-X "));
    assert!(input.ends_with("COMMIT\n"));
}

#[test]
fn reinstall_input_removes_old_rules_first_and_keeps_chains() {
    let set = default_plan();
    let after = Saved::parse(&simulated_after(&set.v4, FOREIGN));
    let owned = find_owned(&after, &Known::default());
    assert_eq!(owned.rules.len(), 2, "{:?}", owned.rules);
    assert_eq!(owned.chains.len(), 4);
    let input = transaction_input(&owned, Some(&set.v4), None);
    let lines: Vec<&str> = input.lines().collect();
    assert!(lines[1].starts_with("-D PREROUTING"), "{input}");
    assert!(lines[2].starts_with("-D OUTPUT"), "{input}");
    assert_eq!(lines[3], "-F KUMA_MESH_INBOUND");
    assert!(
        !input.contains("-X "),
        "chains that stay are only flushed: {input}"
    );
    assert!(!input.contains("-N "), "{input}");
    assert!(
        !input.contains("CUSTOM"),
        "foreign rules are never named: {input}"
    );
}

#[test]
fn uninstall_input_deletes_chains() {
    let set = default_plan();
    let after = Saved::parse(&simulated_after(&set.v4, FOREIGN));
    let owned = find_owned(&after, &Known::default());
    let input = transaction_input(&owned, None, None);
    assert!(
        input.contains("-X KUMA_MESH_OUTBOUND_REDIRECT\n"),
        "{input}"
    );
    let flushes = input.find("-F ").unwrap();
    let deletes = input.find("-X ").unwrap();
    assert!(flushes < deletes, "all flushes come before deletions");
}

#[test]
fn verification_accepts_the_planned_layout() {
    let set = default_plan();
    let before = Saved::parse(FOREIGN);
    let after = Saved::parse(&simulated_after(&set.v4, FOREIGN));
    let rec = verify(&set.v4, &before, &Owned::default(), &after).expect("verifies");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].chains.len(), 4);
    assert_eq!(rec[0].rules.len(), set.v4.rule_count());
    assert!(!rec[0].created);
    assert!(matches_receipt(&rec, &after));
}

#[test]
fn verification_rejects_missing_moved_or_foreign_changes() {
    let set = default_plan();
    let before = Saved::parse(FOREIGN);
    let good = simulated_after(&set.v4, FOREIGN);

    // one of our rules missing
    let missing: String = good
        .lines()
        .filter(|l| !l.contains("return outbound traffic owned by UID"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = verify(&set.v4, &before, &Owned::default(), &Saved::parse(&missing)).unwrap_err();
    assert!(e.iter().any(|p| p.contains("KUMA_MESH_OUTBOUND")), "{e:?}");

    // a foreign rule lost meanwhile: reported, not ours to judge
    let lost: String = good
        .lines()
        .filter(|l| *l != "-A OUTPUT -p icmp -j CUSTOM")
        .map(|l| format!("{l}\n"))
        .collect();
    let rb = read_back(
        &set.v4,
        &simulated_canon(&set.v4),
        &before,
        &Owned::default(),
        &Saved::parse(&lost),
    )
    .expect("our rules are in place");
    assert!(
        rb.foreign_changes.iter().any(|p| p.contains("nat/OUTPUT")),
        "{:?}",
        rb.foreign_changes
    );

    // a foreign rule appended after our appended jump: reported, accepted
    let mut lines: Vec<&str> = good.lines().collect();
    let jump = lines
        .iter()
        .position(|l| l.starts_with("-A OUTPUT") && l.contains("KUMA_MESH_OUTBOUND"))
        .unwrap();
    let icmp = lines
        .iter()
        .position(|l| *l == "-A OUTPUT -p icmp -j CUSTOM")
        .unwrap();
    lines.swap(jump, icmp);
    let moved = lines.join("\n") + "\n";
    let rb = read_back(
        &set.v4,
        &simulated_canon(&set.v4),
        &before,
        &Owned::default(),
        &Saved::parse(&moved),
    )
    .unwrap();
    assert!(
        rb.foreign_changes[0].contains("appended rules after ours"),
        "{:?}",
        rb.foreign_changes
    );

    // two of our own rules swapped: not what was planned
    let mut lines: Vec<&str> = good.lines().collect();
    let ours: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("-A KUMA_MESH_OUTBOUND "))
        .map(|(i, _)| i)
        .collect();
    lines.swap(ours[0], ours[1]);
    let swapped = lines.join("\n") + "\n";
    let e = verify(&set.v4, &before, &Owned::default(), &Saved::parse(&swapped)).unwrap_err();
    assert!(e[0].contains("KUMA_MESH_OUTBOUND: position 1"), "{e:?}");
}

#[test]
fn receipt_match_detects_drift() {
    let set = default_plan();
    let before = Saved::parse(FOREIGN);
    let good = simulated_after(&set.v4, FOREIGN);
    let rec = verify(&set.v4, &before, &Owned::default(), &Saved::parse(&good)).unwrap();
    let drifted: String = good
        .lines()
        .filter(|l| !l.contains("redirect TCP traffic to envoy (port 15001)"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!matches_receipt(&rec, &Saved::parse(&drifted)));
}

#[test]
fn offending_lines_are_found_in_both_error_styles() {
    let input = "*nat\n-N A\n-A A -j NOPE\nCOMMIT\n";
    assert_eq!(
        offending_line("iptables-restore: line 3 failed\n", input).as_deref(),
        Some("line 3: -A A -j NOPE")
    );
    assert_eq!(
        offending_line("iptables-restore v1.8.9 (legacy): Couldn't load target `NOPE'\n\nError occurred at line: 3\n", input).as_deref(),
        Some("line 3: -A A -j NOPE")
    );
    assert_eq!(offending_line("something else", input), None);
}

#[test]
fn receipt_lines_are_ours_only_as_often_as_listed() {
    let saved = Saved::parse(
        "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 10.0.0.0/8 -j RETURN\n-A OUTPUT -d 10.0.0.0/8 -j RETURN\nCOMMIT\n",
    );
    let mut known = Known::default();
    known.add(TableName::Nat, "-A OUTPUT -d 10.0.0.0/8 -j RETURN");
    let owned = find_owned(&saved, &known);
    assert_eq!(owned.rules.len(), 1, "the foreign twin is not taken along");
    let mut twice = known.clone();
    twice.merge(known.clone());
    assert_eq!(
        find_owned(&saved, &twice).rules.len(),
        1,
        "two records of one rule name one rule"
    );
}

#[test]
fn legacy_input_declares_policy_counters() {
    let set = default_plan();
    let before = Saved::parse(
        FOREIGN
            .replace(":OUTPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [5:201]")
            .as_str(),
    );
    let owned = find_owned(&before, &Known::default());
    let input = transaction_input(&owned, Some(&set.v4), Some(&before));
    assert!(
        input.contains(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [5:201]\n"
        ),
        "{input}"
    );
    assert!(!input.contains(":CUSTOM"), "{input}");
}

#[test]
fn drift_names_every_difference() {
    let set = default_plan();
    let before = Saved::parse(FOREIGN);
    let good = simulated_after(&set.v4, FOREIGN);
    let rec = verify(&set.v4, &before, &Owned::default(), &Saved::parse(&good)).unwrap();
    let missing: String = good
        .lines()
        .filter(|l| !l.contains("redirect TCP traffic to envoy (port 15001)"))
        .map(|l| format!("{l}\n"))
        .collect();
    let d = crate::host::readback::drift(&rec, &Saved::parse(&missing));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("missing rule: nat -A KUMA_MESH_OUTBOUND_REDIRECT"),
        "{d:?}"
    );
    let doubled = good.replace(
        "COMMIT",
        "-A OUTPUT -p tcp -m comment --comment \"kuma/mesh/transparent/proxy/x\" -j RETURN\nCOMMIT",
    );
    let d = crate::host::readback::drift(&rec, &Saved::parse(&doubled));
    assert!(
        d.iter()
            .any(|x| x.starts_with("unexpected rule: nat -A OUTPUT")),
        "{d:?}"
    );
}

#[test]
fn wait_interval_goes_only_with_wait() {
    let exes = Executables {
        family: Family::Ipv4,
        mode: Mode::Legacy,
        iptables: "/usr/sbin/iptables-legacy".into(),
        save: "/usr/sbin/iptables-legacy-save".into(),
        restore: "/usr/sbin/iptables-legacy-restore".into(),
        version: String::new(),
        custom: true,
    };
    let mut opts = RestoreOptions {
        wait: 0,
        wait_interval: 21,
        retries: 0,
        sleep: Duration::ZERO,
        verbose: false,
    };
    let line = restore_cmd(&exes, &opts, &["--test"]).display();
    assert!(!line.contains("--wait"), "{line}");
    opts.wait = 5;
    let line = restore_cmd(&exes, &opts, &["--test"]).display();
    assert!(line.contains("--wait=5 --wait-interval=21"), "{line}");
}
