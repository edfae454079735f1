//! Plan tests against the reference's verbatim kumactl goldens (§2.2, §2.4)
//! and the deliberate fixes (Q4, Q5).

use super::*;
use crate::config::{Config, IpFamilyMode, UidExclusion, VnetNetwork};
use crate::render::{Style, dry_run_text, family_text};

fn facts(uid: u32, comments: bool) -> Facts {
    Facts {
        uid,
        loopback: "ifPlaceholder".to_string(),
        v4: FamilyFacts {
            comments,
            conntrack: false,
            ..FamilyFacts::full()
        },
        v6: None,
    }
}

fn ipv4_config() -> Config {
    Config {
        ip_family_mode: IpFamilyMode::Ipv4,
        ..Config::default()
    }
}

/// `install-transparent-proxy.defaults.golden.txt` (reference §2.2), verbatim.
const DEFAULTS_GOLDEN: &str = "### IPv4 ###

* nat
-N KUMA_MESH_INBOUND
-N KUMA_MESH_OUTBOUND
-N KUMA_MESH_INBOUND_REDIRECT
-N KUMA_MESH_OUTBOUND_REDIRECT
-A PREROUTING -p tcp -j KUMA_MESH_INBOUND
-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND
-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -s 127.0.0.6/32 -o ifPlaceholder -j RETURN
-A KUMA_MESH_OUTBOUND -p tcp -o ifPlaceholder ! -d 127.0.0.1/32 -m owner --uid-owner 0 -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -p tcp -o ifPlaceholder -m owner ! --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -m owner --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN
-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT
-A KUMA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
";

#[test]
fn defaults_equal_kumactl_golden() {
    let p = plan(&ipv4_config(), &facts(0, false));
    assert_eq!(dry_run_text(&p.rules, Style::default()), DEFAULTS_GOLDEN);
}

/// `install-transparent-proxy.dns.no-conntrack.golden.txt` (reference §2.4),
/// with the test's `dnsJumpTargetPlaceholder` put back to RETURN.
const DNS_NO_CONNTRACK_GOLDEN: &str = "### IPv4 ###

* nat
-N KUMA_MESH_INBOUND
-N KUMA_MESH_OUTBOUND
-N KUMA_MESH_INBOUND_REDIRECT
-N KUMA_MESH_OUTBOUND_REDIRECT
-A PREROUTING -p tcp -j KUMA_MESH_INBOUND
-I OUTPUT 1 -p udp --dport 53 -m owner --uid-owner 0 -j RETURN
-A OUTPUT -p tcp --dport 53 -m owner ! --uid-owner 0 -j RETURN
-I OUTPUT 2 -p udp --dport 53 -j REDIRECT --to-ports 12345
-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND
-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -s 127.0.0.6/32 -o ifPlaceholder -j RETURN
-A KUMA_MESH_OUTBOUND -p tcp -o ifPlaceholder ! -d 127.0.0.1/32 -m owner --uid-owner 0 -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -p tcp -o ifPlaceholder -m owner ! --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -m owner --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN
-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT
-A KUMA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
";

#[test]
fn capture_all_dns_without_conntrack_equals_kumactl_golden() {
    let mut cfg = ipv4_config();
    cfg.redirect.dns.enabled = true;
    cfg.redirect.dns.capture_all = true;
    cfg.redirect.dns.port = 12345;
    let p = plan(&cfg, &facts(0, false));
    assert_eq!(
        dry_run_text(&p.rules, Style::default()),
        DNS_NO_CONNTRACK_GOLDEN
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("conntrack zone splitting is disabled")),
        "{:?}",
        p.warnings
    );
}

/// The derived restore input of reference §2.4 (`--redirect-dns`, one IPv4
/// server 10.0.0.2, UID 5678, comments and conntrack available).
#[test]
fn redirect_dns_with_zone_split_matches_reference_derivation() {
    let mut cfg = ipv4_config();
    cfg.redirect.dns.enabled = true;
    let mut f = facts(5678, true);
    f.loopback = "lo".to_string();
    f.v4.conntrack = true;
    f.v4.dns_servers = vec!["10.0.0.2".parse().unwrap()];
    let text = family_text(&plan(&cfg, &f).rules.v4, Style::default());
    let expected_head = r#"* raw
-A PREROUTING -m comment --comment "kuma/mesh/transparent/proxy/assign connection tracking zone 1 to DNS responses from 10.0.0.2" -s 10.0.0.2 -p udp --sport 53 -j CT --zone 1
-A OUTPUT -m comment --comment "kuma/mesh/transparent/proxy/assign connection tracking zone 1 to DNS traffic from the kuma-dp user (UID 5678)" -p udp --dport 53 -m owner --uid-owner 5678 -j CT --zone 1
-A OUTPUT -m comment --comment "kuma/mesh/transparent/proxy/assign connection tracking zone 2 to DNS responses from the kuma-dp DNS proxy" -p udp --sport 15053 -m owner --uid-owner 5678 -j CT --zone 2
-A OUTPUT -m comment --comment "kuma/mesh/transparent/proxy/assign connection tracking zone 2 to DNS requests destined for 10.0.0.2" -d 10.0.0.2 -p udp --dport 53 -j CT --zone 2
COMMIT
* nat
-N KUMA_MESH_INBOUND
-N KUMA_MESH_OUTBOUND
-N KUMA_MESH_INBOUND_REDIRECT
-N KUMA_MESH_OUTBOUND_REDIRECT
-A PREROUTING -m comment --comment "kuma/mesh/transparent/proxy/redirect inbound TCP traffic to our custom chain for processing" -p tcp -j KUMA_MESH_INBOUND
-I OUTPUT 1 -m comment --comment "kuma/mesh/transparent/proxy/return early for DNS traffic from kuma-dp" -p udp --dport 53 -m owner --uid-owner 5678 -j RETURN
-A OUTPUT -m comment --comment "kuma/mesh/transparent/proxy/allow applications to perform DNS queries over TCP to port 53 without mesh redirection (only traffic not owned by UID 5678 (kuma-dp user))" -p tcp --dport 53 -m owner ! --uid-owner 5678 -j RETURN
-I OUTPUT 2 -m comment --comment "kuma/mesh/transparent/proxy/redirect DNS requests to 10.0.0.2 to the kuma-dp DNS proxy (listening on port 15053)" -d 10.0.0.2 -p udp --dport 53 -j REDIRECT --to-ports 15053
-A OUTPUT -m comment --comment "kuma/mesh/transparent/proxy/redirect outbound TCP traffic to our custom chain for processing" -p tcp -j KUMA_MESH_OUTBOUND
"#;
    assert!(
        text.starts_with(expected_head),
        "got:\n{text}\nexpected head:\n{expected_head}"
    );
}

/// The golden `ubuntu-24-04-default.iptables.golden` comments (reference §2.2).
#[test]
fn default_comments_match_the_installed_golden() {
    let mut f = facts(5678, true);
    f.loopback = "lo".to_string();
    let text = family_text(&plan(&ipv4_config(), &f).rules.v4, Style::default());
    for comment in [
        "redirect inbound TCP traffic to our custom chain for processing",
        "redirect outbound TCP traffic to our custom chain for processing",
        "redirect all inbound traffic to the custom chain for processing",
        "redirect TCP traffic to envoy (port 15006)",
        "prevent traffic loops by ensuring traffic from the sidecar proxy (using 127.0.0.6/32) to loopback interface is not redirected again",
        "redirect outbound TCP traffic destined for loopback interface, but not targeting address 127.0.0.1/32, and owned by UID 5678 (kuma-dp user) to KUMA_MESH_INBOUND_REDIRECT chain for proper handling",
        "return outbound TCP traffic destined for loopback interface, owned by any UID other than 5678 (kuma-dp user)",
        "return outbound traffic owned by UID 5678 (kuma-dp user)",
        "return traffic destined for localhost (127.0.0.1/32) to avoid redirection",
        "redirect all other outbound traffic to our custom chain for further processing",
        "redirect TCP traffic to envoy (port 15001)",
    ] {
        assert!(
            text.contains(&format!("\"kuma/mesh/transparent/proxy/{comment}\"")),
            "missing comment {comment:?} in\n{text}"
        );
    }
}

#[test]
fn ipv6_uses_its_own_addresses_and_servers() {
    let mut cfg = Config::default();
    cfg.redirect.dns.enabled = true;
    let mut f = facts(5678, true);
    f.v6 = Some(FamilyFacts {
        dns_servers: vec!["10.0.0.2".parse().unwrap(), "fd00::53".parse().unwrap()],
        ..FamilyFacts::full()
    });
    f.v4.dns_servers = f.v6.as_ref().unwrap().dns_servers.clone();
    let p = plan(&cfg, &f);
    let v6 = family_text(p.rules.v6.as_ref().unwrap(), Style::default());
    assert!(v6.contains("-s ::6/128 -o ifPlaceholder -j RETURN"), "{v6}");
    assert!(v6.contains("! -d ::1/128"), "{v6}");
    assert!(v6.contains("-d fd00::53 -p udp --dport 53 -j REDIRECT --to-ports 15053"));
    assert!(!v6.contains("10.0.0.2"));
    let v4 = family_text(&p.rules.v4, Style::default());
    assert!(!v4.contains("fd00::53"));
}

#[test]
fn no_servers_for_a_family_turns_its_dns_off_with_a_warning() {
    let mut cfg = Config::default();
    cfg.redirect.dns.enabled = true;
    let mut f = facts(5678, true);
    f.v4.dns_servers = vec!["10.0.0.2".parse().unwrap()];
    f.v6 = Some(FamilyFacts::full());
    let p = plan(&cfg, &f);
    let v6 = family_text(p.rules.v6.as_ref().unwrap(), Style::default());
    assert!(!v6.contains("--dport 53"), "{v6}");
    assert!(p.warnings.iter().any(|w| w.contains("no IPv6 DNS servers")));
}

#[test]
fn uid_exclusions_one_rule_per_protocol_in_input_order() {
    let mut cfg = ipv4_config();
    cfg.redirect.outbound.exclude_uids = vec![
        UidExclusion::parse("*:*:0").unwrap(),
        UidExclusion::parse("tcp:22,80:1000-1002").unwrap(),
    ];
    cfg.redirect.outbound.exclude_ips = vec![crate::config::IpMatch::parse("10.0.0.0/8").unwrap()];
    let text = family_text(&plan(&cfg, &facts(5678, false)).rules.v4, Style::default());
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("-I OUTPUT"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "-I OUTPUT 1 -m multiport -p tcp --dport 1:65535 -m owner --uid-owner 0 -j RETURN",
            "-I OUTPUT 2 -m multiport -p udp --dport 1:65535 -m owner --uid-owner 0 -j RETURN",
            "-I OUTPUT 3 -m multiport -p tcp --dport 22,80 -m owner --uid-owner 1000:1002 -j RETURN",
            "-I OUTPUT 4 -d 10.0.0.0/8 -j RETURN",
        ]
    );
}

#[test]
fn vnet_dns_rules_only_with_dns_on_q4() {
    let mut cfg = ipv4_config();
    cfg.redirect.vnet.networks = vec![
        VnetNetwork::parse("docker0:172.17.0.0/16").unwrap(),
        VnetNetwork::parse("br+:172.18.0.0/16").unwrap(),
    ];
    let text = family_text(&plan(&cfg, &facts(5678, false)).rules.v4, Style::default());
    let pre: Vec<&str> = text.lines().filter(|l| l.contains("PREROUTING")).collect();
    assert_eq!(
        pre,
        vec![
            "-I PREROUTING 1 ! -d 172.18.0.0/16 -i br+ -p tcp -j REDIRECT --to-ports 15001",
            "-I PREROUTING 2 ! -d 172.17.0.0/16 -i docker0 -p tcp -j REDIRECT --to-ports 15001",
            "-I PREROUTING 3 -p tcp -j KUMA_MESH_INBOUND",
        ]
    );
    cfg.redirect.dns.enabled = true;
    cfg.redirect.dns.capture_all = true;
    let text = family_text(&plan(&cfg, &facts(5678, false)).rules.v4, Style::default());
    assert!(
        text.contains(
            "-I PREROUTING 1 -i br+ -m udp -p udp --dport 53 -j REDIRECT --to-ports 15053"
        )
    );
}

#[test]
fn outbound_insert_keeps_tcp53_return_above_the_jump_q5() {
    let mut cfg = ipv4_config();
    cfg.redirect.dns.enabled = true;
    cfg.redirect.dns.capture_all = true;
    cfg.redirect.outbound.insert_redirect_instead_of_append = true;
    let p = plan(&cfg, &facts(5678, false));
    let nat = p.rules.v4.table(crate::model::TableName::Nat).unwrap();
    let output = nat.chains.iter().find(|c| c.name == "OUTPUT").unwrap();
    let order: Vec<String> = output
        .final_order()
        .iter()
        .map(|r| crate::render::rule_args(r, false, Style::default()))
        .collect();
    let tcp53 = order
        .iter()
        .position(|a| a.contains("-p tcp --dport 53"))
        .unwrap();
    let jump = order
        .iter()
        .position(|a| a.contains("KUMA_MESH_OUTBOUND"))
        .unwrap();
    assert!(tcp53 < jump, "{order:?}");
    assert_eq!(output.inserted(), 4);
}

#[test]
fn disabled_directions_and_include_ports() {
    let mut cfg = ipv4_config();
    cfg.redirect.inbound.enabled = false;
    cfg.redirect.outbound.include_ports = vec![80, 443];
    cfg.redirect.outbound.exclude_ports = vec![22];
    let text = family_text(&plan(&cfg, &facts(5678, false)).rules.v4, Style::default());
    assert!(text.contains("-A KUMA_MESH_INBOUND -p tcp -j RETURN\n"));
    assert!(
        text.contains("-A KUMA_MESH_OUTBOUND -p tcp --dport 80 -j KUMA_MESH_OUTBOUND_REDIRECT\n")
    );
    assert!(!text.contains("--dport 22"));
    assert!(!text.contains("-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT"));
}

#[test]
fn verbose_uses_long_options_and_headers() {
    let mut cfg = ipv4_config();
    cfg.redirect.outbound.exclude_uids = vec![UidExclusion::parse("0").unwrap()];
    let text = dry_run_text(&plan(&cfg, &facts(0, true)).rules, Style { verbose: true });
    assert!(
        text.starts_with(
            "### IPv4 ###\n\n* nat\n\n# Custom Chains:\n--new-chain KUMA_MESH_INBOUND\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n\n# Rules:\n--append PREROUTING --match comment --comment \"kuma/mesh/transparent/proxy/redirect inbound TCP traffic to our custom chain for processing\" --protocol tcp --jump KUMA_MESH_INBOUND\n"));
    assert!(text.contains("--insert OUTPUT 1 --match comment --comment \"kuma/mesh/transparent/proxy/skip further processing for configured IP addresses, ports and UIDs\" --match multiport --protocol tcp --destination-port 1:65535 --match owner --uid-owner 0 --jump RETURN"), "{text}");
    assert!(text.ends_with("\n\nCOMMIT\n"));
}
