//! Unit tests of the entry translation, the priority scheme and the
//! text-preserving merge and removal. Golden files and the real firewalld run
//! are in `tests/integration/firewalld.rs`.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::config::{Config, UidExclusion};
use crate::model::{Family, TableName};
use crate::plan::{Facts, FamilyFacts, plan};

fn facts() -> Facts {
    Facts {
        uid: 5678,
        loopback: "lo".to_string(),
        v4: FamilyFacts {
            dns_servers: vec!["10.0.0.2".parse().unwrap()],
            ..FamilyFacts::full()
        },
        v6: Some(FamilyFacts {
            dns_servers: vec!["fd00::53".parse().unwrap()],
            ..FamilyFacts::full()
        }),
    }
}

fn dns_insert_set() -> RuleSet {
    let mut cfg = Config::default();
    cfg.redirect.dns.enabled = true;
    cfg.redirect.inbound.insert_redirect_instead_of_append = true;
    cfg.redirect.outbound.exclude_uids = vec![UidExclusion::parse("tcp:22:1000").unwrap()];
    plan(&cfg, &facts()).rules
}

fn rule(e: &Entry) -> (&str, &str, &str, i32, &str) {
    match e {
        Entry::Rule {
            ipv,
            table,
            chain,
            priority,
            args,
        } => (ipv, table, chain, *priority, args),
        other => panic!("not a rule: {other:?}"),
    }
}

#[test]
fn priorities_reproduce_the_final_order_inserted_first() {
    let set = dns_insert_set();
    let entries = planned_entries(&set);
    let nat = set.v4.table(TableName::Nat).unwrap();
    let output = nat.chains.iter().find(|c| c.name == "OUTPUT").unwrap();
    assert!(
        output.inserted() >= 3 && output.rules.len() > output.inserted(),
        "the case needs inserted and appended rules"
    );
    let mut ours: Vec<(i32, &str)> = entries
        .iter()
        .filter(|e| matches!(e, Entry::Rule { ipv, table, chain, .. } if ipv == "ipv4" && table == "nat" && chain == "OUTPUT"))
        .map(|e| (rule(e).3, rule(e).4))
        .collect();
    ours.sort_by_key(|(p, _)| *p);
    let planned: Vec<String> = output
        .final_order()
        .iter()
        .map(|r| render::rule_args(r, true, Style::default()))
        .collect();
    assert_eq!(
        ours.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>(),
        planned
    );
    let prios: Vec<i32> = ours.iter().map(|(p, _)| *p).collect();
    let k = output.inserted();
    assert_eq!(prios[k - 1], INSERTED_LAST);
    assert_eq!(prios[k], APPENDED_FIRST);
    assert!(prios.windows(2).all(|w| w[0] < w[1]), "{prios:?}");
}

#[test]
fn entries_cover_both_families_with_their_own_labels() {
    let set = dns_insert_set();
    let entries = planned_entries(&set);
    for fam in set.families() {
        let ipv = fam.family.firewalld();
        let chains: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Chain { ipv: v, chain, .. } if v == ipv => Some(chain.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            chains,
            [
                "KUMA_MESH_INBOUND",
                "KUMA_MESH_OUTBOUND",
                "KUMA_MESH_INBOUND_REDIRECT",
                "KUMA_MESH_OUTBOUND_REDIRECT"
            ]
        );
        let rules = entries
            .iter()
            .filter(|e| matches!(e, Entry::Rule { ipv: v, .. } if v == ipv))
            .count();
        assert_eq!(rules, fam.rule_count());
    }
    let v6: Vec<&str> = entries
        .iter()
        .filter(|e| matches!(e, Entry::Rule { ipv, .. } if ipv == "ipv6"))
        .map(|e| rule(e).4)
        .collect();
    assert!(v6.iter().any(|a| a.contains("::6/128")));
    assert!(!v6.iter().any(|a| a.contains("127.0.0.")));
    assert!(set.v6.as_ref().unwrap().family == Family::Ipv6);
}

#[test]
fn elements_round_trip_with_quotes_and_markup() {
    let e = Entry::Rule {
        ipv: "ipv4".into(),
        table: "nat".into(),
        chain: "OUTPUT".into(),
        priority: -1001,
        args: r#"-m comment --comment "kuma/mesh/transparent/proxy/a \"q\" <&> \\ 'x'" -j RETURN"#
            .into(),
    };
    let s = e.to_string();
    assert_eq!(
        s,
        r#"<rule ipv="ipv4" table="nat" chain="OUTPUT" priority="-1001">-m comment --comment "kuma/mesh/transparent/proxy/a \"q\" &lt;&amp;&gt; \\ 'x'" -j RETURN</rule>"#
    );
    assert_eq!(Entry::parse(&s).unwrap(), e);
    let argv = split_args(match &e {
        Entry::Rule { args, .. } => args,
        _ => unreachable!(),
    })
    .unwrap();
    assert_eq!(argv[3], r#"kuma/mesh/transparent/proxy/a "q" <&> \ 'x'"#);
    let c = Entry::Chain {
        ipv: "ipv6".into(),
        table: "nat".into(),
        chain: "A\"B".into(),
    };
    assert_eq!(
        c.to_string(),
        r#"<chain ipv="ipv6" table="nat" chain="A&quot;B"/>"#
    );
    assert_eq!(Entry::parse(&c.to_string()).unwrap(), c);
    // firewalld's own spelling of the same chain: `<chain …></chain>`, char refs.
    assert_eq!(
        Entry::parse(r#"<chain table="nat" ipv="ipv6" chain="A&#34;B"></chain>"#).unwrap(),
        c
    );
    assert!(Entry::parse("<rule ipv=\"ipv4\">x</rule>").is_err());
    assert!(Entry::parse("<chain").is_err());
}

#[test]
fn same_as_is_firewalld_identity() {
    let a = Entry::parse(r#"<rule ipv="ipv4" table="nat" chain="OUTPUT" priority="3">-m comment --comment "a b" -j RETURN</rule>"#).unwrap();
    // firewalld rewrites bodies with shlex.quote; the arguments are the same.
    let b = Entry::parse(r#"<rule ipv="ipv4" table="nat" chain="OUTPUT" priority=" 3">-m comment --comment 'a b' -j RETURN</rule>"#).unwrap();
    assert!(a.same_as(&b));
    let other_prio = Entry::parse(r#"<rule ipv="ipv4" table="nat" chain="OUTPUT" priority="4">-m comment --comment "a b" -j RETURN</rule>"#).unwrap();
    assert!(!a.same_as(&other_prio));
    let v6 = Entry::parse(r#"<rule ipv="ipv6" table="nat" chain="OUTPUT" priority="3">-m comment --comment "a b" -j RETURN</rule>"#).unwrap();
    assert!(!a.same_as(&v6));
}

#[test]
fn ours_is_recognised_by_chain_comment_or_jump() {
    let ours = [
        r#"<chain ipv="ipv4" table="nat" chain="KUMA_MESH_INBOUND"/>"#,
        r#"<rule ipv="ipv6" table="nat" chain="KUMA_MESH_OUTBOUND" priority="3">-j RETURN</rule>"#,
        r#"<rule ipv="ipv4" table="raw" chain="OUTPUT" priority="3">-m comment --comment &#34;kuma/mesh/transparent/proxy/x&#34; -j CT --zone 2</rule>"#,
        r#"<rule ipv="ipv4" table="nat" chain="PREROUTING" priority="3">-p tcp --jump KUMA_MESH_INBOUND</rule>"#,
    ];
    for s in ours {
        assert!(Entry::parse(s).unwrap().is_ours(), "{s}");
    }
    let foreign = [
        r#"<chain ipv="ipv4" table="nat" chain="MYCHAIN"/>"#,
        r#"<chain ipv="eb" table="nat" chain="KUMA_MESH_X"/>"#,
        r#"<rule ipv="ipv4" table="nat" chain="OUTPUT" priority="0">-p tcp -j REDIRECT --to-ports 15001</rule>"#,
        r#"<rule ipv="ipv4" table="filter" chain="INPUT" priority="0">-m comment --comment "see kuma/mesh/transparent/proxy/" -j ACCEPT</rule>"#,
        r#"<passthrough ipv="ipv4">-t nat -A OUTPUT -j KUMA_MESH_OUTBOUND</passthrough>"#,
    ];
    for s in foreign {
        assert!(!Entry::parse(s).unwrap().is_ours(), "{s}");
    }
}

const FOREIGN: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<!-- site rules -->
<direct>
    <chain ipv="ipv4" table="filter" chain="MINE"/>
    <rule priority="0" ipv="ipv4" table="filter" chain="INPUT">-p tcp --dport 22 -j ACCEPT</rule>
    <passthrough ipv="ipv6">-t filter -A INPUT -j ACCEPT</passthrough>
    <unknown/>
</direct>
"#;

#[test]
fn merge_appends_with_the_files_indent_and_remove_restores_it() {
    let entries = planned_entries(&dns_insert_set());
    let m = merge(Some(FOREIGN), &entries).unwrap();
    assert_eq!(m.added.len(), entries.len());
    assert!(
        m.xml
            .starts_with(&FOREIGN[..FOREIGN.find("</direct>").unwrap()])
    );
    assert!(
        m.xml
            .contains("\n    <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>\n")
    );
    assert!(m.xml.ends_with("</direct>\n"));
    let again = merge(Some(&m.xml), &entries).unwrap();
    assert!(again.added.is_empty());
    assert_eq!(again.xml, m.xml);
    assert_eq!(remove(&m.xml, &m.added).unwrap(), FOREIGN);
    assert_eq!(recognised(&m.xml).unwrap(), m.added);
}

#[test]
fn merge_handles_odd_but_valid_roots_and_rejects_others() {
    let e: Vec<Entry> = planned_entries(&dns_insert_set())
        .into_iter()
        .filter(|e| matches!(e, Entry::Chain { .. }))
        .collect();
    let fresh = merge(None, &e[..1]).unwrap();
    assert_eq!(
        fresh.xml,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>\n</direct>\n"
    );
    assert_eq!(merge(Some("  \n"), &e[..1]).unwrap().xml, fresh.xml);
    let m = merge(Some("<direct/>\n"), &e[..1]).unwrap();
    assert_eq!(
        m.xml,
        "<direct>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>\n</direct>\n"
    );
    let m = merge(
        Some("<direct><chain ipv=\"ipv4\" table=\"nat\" chain=\"X\"/></direct>"),
        &e[..1],
    )
    .unwrap();
    assert_eq!(
        m.xml,
        "<direct><chain ipv=\"ipv4\" table=\"nat\" chain=\"X\"/>\n  <chain ipv=\"ipv4\" table=\"nat\" chain=\"KUMA_MESH_INBOUND\"/>\n</direct>"
    );
    assert_eq!(
        remove(&m.xml, &m.added).unwrap(),
        "<direct><chain ipv=\"ipv4\" table=\"nat\" chain=\"X\"/>\n</direct>"
    );
    for bad in [
        "<zone/>",
        "<direct>",
        "<direct></direct><direct/>",
        "<direct><rule>&bogus;</rule></direct>",
    ] {
        assert!(merge(Some(bad), &e).is_err(), "{bad}");
    }
}

#[test]
fn update_replaces_stale_entries_of_ours_only() {
    // kumactl's dry-run file: everything priority 3, all ipv4 (F4, F5).
    let kumactl = r#"<?xml version="1.0" encoding="UTF-8"?>
<direct>
  <chain ipv="ipv4" table="nat" chain="KUMA_MESH_INBOUND"></chain>
  <rule ipv="ipv4" table="nat" chain="PREROUTING" priority="3">-p tcp -j KUMA_MESH_INBOUND</rule>
  <rule ipv="ipv4" table="filter" chain="INPUT" priority="3">-j ACCEPT</rule>
</direct>
"#;
    let set = dns_insert_set();
    let up = update(Some(kumactl), &set, None).unwrap();
    assert_eq!(up.removed.len(), 1, "{:?}", up.removed);
    assert!(up.removed[0].contains("priority=\"3\""));
    assert!(
        up.xml
            .contains(r#"<chain ipv="ipv4" table="nat" chain="KUMA_MESH_INBOUND"></chain>"#)
    );
    assert!(
        up.xml
            .contains(r#"chain="INPUT" priority="3">-j ACCEPT</rule>"#)
    );
    assert_eq!(up.entries.len(), planned_entries(&set).len());
    assert_eq!(up.added.len(), up.entries.len() - 1);
    // A comment-less install is only found through its receipt.
    let mut cfg = Config::default();
    cfg.comments.disabled = true;
    let mut f = facts();
    f.v4.comments = false;
    f.v6 = None;
    let bare = plan(&cfg, &f).rules;
    let first = update(None, &bare, None).unwrap();
    let second = update(Some(&first.xml), &set, None).unwrap();
    assert!(second.xml.contains("-j REDIRECT --to-ports 15001</rule>"));
    let receipt = FirewalldReceipt {
        path: DEFAULT_PATH.into(),
        created: true,
        entries: first.entries.clone(),
        original: None,
    };
    let third = update(Some(&first.xml), &set, Some(&receipt)).unwrap();
    // The chains are planned again and stay; every comment-less rule goes.
    let first_rules = first
        .entries
        .iter()
        .filter(|e| e.starts_with("<rule"))
        .count();
    assert_eq!(third.removed.len(), first_rules);
    let mut now = recognised(&third.xml).unwrap();
    let mut want = third.entries.clone();
    now.sort();
    want.sort();
    assert_eq!(now, want);
}

#[test]
fn restore_equivalent_orders_rules_by_priority() {
    let set = dns_insert_set();
    let text = restore_equivalent(&planned_entries(&set), "ipv4");
    let nat_text = &text[text.find("*nat\n").unwrap()..];
    let nat_text = &nat_text[..nat_text.find("COMMIT").unwrap()];
    let output: Vec<&str> = nat_text
        .lines()
        .filter(|l| l.starts_with("-A OUTPUT "))
        .collect();
    let nat = set.v4.table(TableName::Nat).unwrap();
    let chain = nat.chains.iter().find(|c| c.name == "OUTPUT").unwrap();
    let planned: Vec<String> = chain
        .final_order()
        .iter()
        .map(|r| format!("-A OUTPUT {}", render::rule_args(r, true, Style::default())))
        .collect();
    assert_eq!(output, planned);
    assert!(text.starts_with("*raw\n"));
    assert!(text.contains("*nat\n-N KUMA_MESH_INBOUND\n"));
}

#[test]
fn store_and_unstore_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.xml");
    let set = dns_insert_set();
    let r = store(&path, &set).unwrap();
    assert!(r.created);
    assert_eq!(r.entries.len(), planned_entries(&set).len());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        render(None, &set).unwrap()
    );
    assert_eq!(
        would_write(&path, &set).unwrap(),
        std::fs::read_to_string(&path).unwrap()
    );
    let again = store_replacing(&path, &set, Some(&r)).unwrap();
    assert_eq!(again, r);
    let gone = unstore(&path, Some(&r)).unwrap();
    assert!(gone.deleted);
    assert_eq!(gone.removed.len(), r.entries.len());
    assert!(!path.exists());
    assert_eq!(unstore(&path, Some(&r)).unwrap(), Unstored::default());

    // An existing file keeps its mode, its bytes and, through a link, the link.
    let real = dir.path().join("real.xml");
    std::fs::write(&real, FOREIGN).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink(&real, &path).unwrap();
    preflight(&path, &set).unwrap();
    let r = store(&path, &set).unwrap();
    assert!(!r.created);
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let gone = unstore(&path, None).unwrap();
    assert!(!gone.deleted);
    assert_eq!(std::fs::read_to_string(&real).unwrap(), FOREIGN);

    std::fs::write(&real, "<zone/>").unwrap();
    let err = format!("{:#}", store(&path, &set).unwrap_err());
    assert!(
        err.contains("direct.xml") && err.contains("<zone>"),
        "{err}"
    );
    assert!(preflight(&path, &set).is_err());
    assert!(preflight(&dir.path().join("none/direct.xml"), &set).is_err());
}

#[test]
fn files_without_entries_come_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.xml");
    let set = dns_insert_set();
    for original in [
        "",
        "\n",
        "<direct/>",
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct/>\n",
        "<?xml version=\"1.0\"?>\n<direct>\n  <!-- nothing yet -->\n</direct>\n",
    ] {
        std::fs::write(&path, original).unwrap();
        let intended = intent(&path, &set, None).unwrap();
        let r = store(&path, &set).unwrap();
        assert_eq!(r, intended, "the journal records what the store does");
        assert!(!r.created);
        assert_eq!(r.original.as_deref(), Some(original));
        // a re-install carries the original over
        let again = store_replacing(&path, &set, Some(&r)).unwrap();
        assert_eq!(again.original.as_deref(), Some(original));
        unstore(&path, Some(&again)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            original,
            "{original:?}"
        );
    }
    // an entry someone else added meanwhile keeps the file as it is now
    std::fs::write(&path, "<direct/>").unwrap();
    let r = store(&path, &set).unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "</direct>",
        "  <passthrough ipv=\"ipv4\">-A INPUT -j ACCEPT</passthrough>\n</direct>",
    );
    std::fs::write(&path, &text).unwrap();
    unstore(&path, Some(&r)).unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("<passthrough")
    );
}

#[test]
fn comment_less_rules_still_use_the_restore_text() {
    let mut cfg = Config::default();
    cfg.comments.disabled = true;
    let mut f = facts();
    f.v4.comments = false;
    let set = plan(&cfg, &f).rules;
    let entries = planned_entries(&set);
    assert!(entries.iter().all(|e| !e.to_string().contains("comment")));
    let redirect = entries.iter().find_map(|e| match e {
        Entry::Rule {
            ipv, chain, args, ..
        } if ipv == "ipv4" && chain == "KUMA_MESH_OUTBOUND_REDIRECT" => Some(args.as_str()),
        _ => None,
    });
    assert_eq!(redirect, Some("-p tcp -j REDIRECT --to-ports 15001"));
}
