//! Command-line behaviour: help and version, exit codes, every class of
//! invalid input rejected with exit 2 and a message naming the value — with
//! the host unchanged — and the root check.

use assert_cmd::Command;
use predicates::prelude::*;

use crate::common::*;
use crate::require_kernel;

fn tproxyctl() -> Command {
    Command::cargo_bin("tproxyctl").unwrap()
}

#[test]
fn help_and_version() {
    tproxyctl()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("install"))
        .stdout(predicate::str::contains("uninstall"));
    tproxyctl()
        .args(["install", "transparent-proxy", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--redirect-inbound-port"))
        .stdout(predicate::str::contains(
            "--exclude-outbound-ports-for-uids",
        ))
        .stdout(predicate::str::contains("--store-firewalld"))
        .stdout(predicate::str::contains("--iptables-executables"));
    tproxyctl()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("tproxyctl "));
}

#[test]
fn unknown_flags_are_usage_errors() {
    tproxyctl()
        .args(["install", "transparent-proxy", "--no-such-flag"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-such-flag"));
}

/// Arguments, environment, and text the message must contain.
type InvalidCase = (Vec<String>, Vec<(String, String)>, String);

fn invalid_inputs(dir: &tempfile::TempDir) -> Vec<InvalidCase> {
    let malformed = dir.path().join("bad.yaml");
    std::fs::write(&malformed, "redirect: {inbound: [\n").unwrap();
    let bad_value = dir.path().join("port0.yaml");
    std::fs::write(&bad_value, "redirect:\n  dns:\n    port: 0\n").unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let e = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    vec![
        (
            s(&["--redirect-inbound-port", "0"]),
            vec![],
            "'0' for --redirect-inbound-port".into(),
        ),
        (
            s(&["--redirect-outbound-port", "70000"]),
            vec![],
            "'70000' for --redirect-outbound-port".into(),
        ),
        (
            s(&["--redirect-dns-port", "http"]),
            vec![],
            "'http' for --redirect-dns-port".into(),
        ),
        (
            s(&["--exclude-inbound-ports", "22,0"]),
            vec![],
            "'0' for --exclude-inbound-ports".into(),
        ),
        (
            s(&["--exclude-outbound-ips", "10.0.0.0/33"]),
            vec![],
            "'10.0.0.0/33' for --exclude-outbound-ips".into(),
        ),
        (
            s(&["--exclude-inbound-ips", "10.0.0.1,nonsense"]),
            vec![],
            "'nonsense' for --exclude-inbound-ips".into(),
        ),
        (
            s(&["--exclude-outbound-ports-for-uids", "sctp:22:1000"]),
            vec![],
            "sctp".into(),
        ),
        (
            s(&["--exclude-outbound-ports-for-uids", "22:*"]),
            vec![],
            "'22:*'".into(),
        ),
        (
            s(&["--exclude-outbound-ports-for-uids", "1,2,3"]),
            vec![],
            "'1,2,3'".into(),
        ),
        (
            s(&["--exclude-outbound-ports-for-uids", "tcp:80:4294967295"]),
            vec![],
            "4294967295".into(),
        ),
        (
            s(&["--redirect-dns", "--redirect-all-dns-traffic"]),
            vec![],
            "only one of '--redirect-dns' or '--redirect-all-dns-traffic'".into(),
        ),
        (
            s(&["--ip-family-mode", "ipv6"]),
            vec![],
            "'ipv6' for --ip-family-mode".into(),
        ),
        (
            s(&["--vnet", "docker0"]),
            vec![],
            "invalid virtual network definition: docker0".into(),
        ),
        (
            s(&["--vnet", "docker0:300.0.0.0/8"]),
            vec![],
            "invalid CIDR definition".into(),
        ),
        (
            s(&["--sleep-between-retries", "soon"]),
            vec![],
            "'soon' for --sleep-between-retries".into(),
        ),
        (s(&["--redirect-inbound=maybe"]), vec![], "maybe".into()),
        (
            s(&["--config", "/nonexistent/tp.yaml"]),
            vec![],
            "unable to access configuration file '/nonexistent/tp.yaml'".into(),
        ),
        (
            vec!["--config".into(), malformed.display().to_string()],
            vec![],
            format!("{} is not valid YAML", malformed.display()),
        ),
        (
            vec!["--config".into(), bad_value.display().to_string()],
            vec![],
            format!("'redirect.dns.port' in {}", bad_value.display()),
        ),
        (
            s(&[]),
            e("KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT", "99999"),
            "'99999' for environment variable KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT".into(),
        ),
        (
            s(&["--kuma-dp-user", "no-such-user-here"]),
            vec![],
            "'no-such-user-here'".into(),
        ),
        (
            s(&["--iptables-executables", "iptables:/usr/sbin/iptables-nft"]),
            vec![],
            "must be given together".into(),
        ),
        (
            s(&["--iptables-executables", "iptable:/x"]),
            vec![],
            "unknown executable name 'iptable'".into(),
        ),
        (
            s(&["--redirect-dns"]),
            e(
                "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH",
                "/nonexistent/resolv.conf",
            ),
            "/nonexistent/resolv.conf".into(),
        ),
    ]
}

#[test]
fn invalid_values_exit_2_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env, needle) in invalid_inputs(&dir) {
        // --kuma-dp-user keeps the default-user lookup from failing first
        let mut full = vec!["install", "transparent-proxy", "--dry-run"];
        let has_user = args.iter().any(|a| a == "--kuma-dp-user");
        if !has_user {
            full.extend(["--kuma-dp-user", "root"]);
        }
        full.extend(args.iter().map(String::as_str));
        let mut cmd = tproxyctl();
        cmd.args(&full);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {err}");
        assert!(
            err.contains(&needle),
            "{full:?}: expected '{needle}' in:\n{err}"
        );
        assert!(out.stdout.is_empty(), "{full:?} printed data on an error");
    }
}

#[test]
fn invalid_values_change_nothing_on_the_host() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::new("inv");
    let receipt = receipt_path(&dir);
    let before = t.a.state();
    for (args, env, _) in invalid_inputs(&dir) {
        // the real thing, not a dry run
        let mut full = vec!["install", "transparent-proxy", "--receipt", &receipt];
        if !args.iter().any(|a| a == "--kuma-dp-user") {
            full.extend(["--kuma-dp-user", "root"]);
        }
        full.extend(args.iter().map(String::as_str));
        let mut cmd = t.a.cmd(bin(), &full);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{full:?}: {}", stderr(&out));
        assert_eq!(t.a.state(), before, "{full:?} changed the host");
        assert!(!std::path::Path::new(&receipt).exists());
    }
}

#[test]
fn non_root_needs_dry_run() {
    require_kernel!();
    let ns = Netns::new("nonroot");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin(),
            "install",
            "transparent-proxy",
            "--kuma-dp-user",
            "root",
            "--ip-family-mode",
            "ipv4",
        ];
        args.extend_from_slice(extra);
        ns.run("setpriv", &args)
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("root privileges"), "{}", stderr(&out));
    let out = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("non-root user"));
    assert!(stdout(&out).starts_with("### IPv4 ###"));
}

#[test]
fn data_on_stdout_messages_on_stderr() {
    require_kernel!();
    let ns = Netns::new("streams");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let install = || {
        ns.tproxyctl_ok(&[
            "install",
            "transparent-proxy",
            "--kuma-dp-user",
            EXEMPT_USER,
            "--receipt",
            &receipt,
        ])
    };
    let out = install();
    assert!(
        out.stdout.is_empty(),
        "install printed data: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("completed successfully"));
    assert!(
        !stderr(&out).contains('\x1b'),
        "no spinner or escape codes off a terminal"
    );
    let out = ns.tproxyctl_ok(&["uninstall", "transparent-proxy", "--receipt", &receipt]);
    assert!(out.stdout.is_empty());
    // the receipt is JSON, 0600
    install();
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&receipt).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(json["uid"], 1);
    assert_eq!(json["families"][0]["mode"], "nft");
    ns.tproxyctl_ok(&["uninstall", "transparent-proxy", "--receipt", &receipt]);
}

#[test]
fn dry_run_plan_as_json() {
    require_kernel!();
    let ns = Netns::new("json");
    let out = ns.tproxyctl_ok(&[
        "install",
        "transparent-proxy",
        "--dry-run",
        "--output",
        "json",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--ip-family-mode",
        "ipv4",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fam = &json[0];
    assert_eq!(fam["family"], "ipv4");
    assert_eq!(fam["chains"].as_array().unwrap().len(), 4);
    let rules = fam["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 11);
    assert_eq!(
        rules[0]["line"].as_str().unwrap(),
        text_plan_first_rule(&ns)
    );
    // without --dry-run it is a usage error and nothing happens
    let out = ns.tproxyctl(&[
        "install",
        "transparent-proxy",
        "--output",
        "json",
        "--kuma-dp-user",
        EXEMPT_USER,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs --dry-run"));
}

/// The first rule line of the text dry run, for comparison with the JSON.
fn text_plan_first_rule(ns: &Netns) -> String {
    let out = ns.tproxyctl_ok(&[
        "install",
        "transparent-proxy",
        "--dry-run",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--ip-family-mode",
        "ipv4",
    ]);
    stdout(&out)
        .lines()
        .find(|l| l.starts_with("-A ") || l.starts_with("-I "))
        .unwrap()
        .to_string()
}
