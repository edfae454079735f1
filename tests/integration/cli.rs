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
    let quoted_port = dir.path().join("quoted-port.json");
    std::fs::write(
        &quoted_port,
        r#"{"redirect": {"inbound": {"port": "15006"}}}"#,
    )
    .unwrap();
    let huge = dir.path().join("huge.yaml");
    std::fs::write(
        &huge,
        format!(
            "redirect:\n  outbound:\n    excludePorts: [{}]\n",
            vec!["22"; 65536].join(",")
        ),
    )
    .unwrap();
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"# caf\xe9\nredirect: {dns: {port: 53}}\n").unwrap();
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
        // lenient input kumactl refuses too
        (
            s(&["--redirect-inbound-port", " 15006"]),
            vec![],
            "' 15006' for --redirect-inbound-port: not a valid port (an integer in the range [1, 65535]) (without spaces)".into(),
        ),
        // a value starting with '-' is the flag's value (as pflag), refused by name
        (
            s(&["--sleep-between-retries", "-1s"]),
            vec![],
            "'-1s' for --sleep-between-retries".into(),
        ),
        (
            s(&["--redirect-inbound-port", "-80"]),
            vec![],
            "'-80' for --redirect-inbound-port".into(),
        ),
        (
            s(&["--exclude-outbound-ips", "10.0.0.1, 10.0.0.2"]),
            vec![],
            "' 10.0.0.2' for --exclude-outbound-ips".into(),
        ),
        (
            vec!["--config".into(), quoted_port.display().to_string()],
            vec![],
            format!(
                "invalid value '15006' for 'redirect.inbound.port' in {}: a number in a configuration file is written without quotes",
                quoted_port.display()
            ),
        ),
        (
            s(&[]),
            e("KUMA_TRANSPARENT_PROXY_WAIT", " 5"),
            "' 5' for environment variable KUMA_TRANSPARENT_PROXY_WAIT".into(),
        ),
        (
            vec!["--config".into(), huge.display().to_string()],
            vec![],
            format!(
                "'redirect.outbound.excludePorts' in {} has more than 65535 entries",
                huge.display()
            ),
        ),
        (
            vec!["--config".into(), latin1.display().to_string()],
            vec![],
            format!(
                "configuration file {} is not UTF-8 text (byte 0xE9 at offset 5)",
                latin1.display()
            ),
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

/// A `Command` whose argument or variable holds the byte 0xFF.
fn with_ff(args: &[&str]) -> Command {
    let mut cmd = tproxyctl();
    cmd.args(args);
    cmd
}

fn ff(prefix: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut v = prefix.as_bytes().to_vec();
    v.push(0xff);
    std::ffi::OsString::from_vec(v)
}

#[test]
fn non_utf8_environment_never_panics_any_command() {
    let commands: &[&[&str]] = &[
        &[
            "install",
            "transparent-proxy",
            "--dry-run",
            "--kuma-dp-user",
            "root",
        ],
        &[
            "uninstall",
            "transparent-proxy",
            "--dry-run",
            "--receipt",
            "/nonexistent/r.json",
            "--kuma-dp-user",
            "root",
        ],
        &["status", "--receipt", "/nonexistent/r.json"],
        &["verify", "--receipt", "/nonexistent/r.json"],
        &[
            "generate",
            "dataplane",
            "--name",
            "a",
            "--address",
            "10.0.0.1",
            "--port",
            "80",
            "--service",
            "a",
        ],
        &["completion", "bash"],
        &["forwarder", "--help"],
        &["install", "transparent-proxy-validator", "--help"],
        &["--version"],
    ];
    for args in commands {
        let out = with_ff(args)
            .env("FOO", ff(""))
            .env(ff("BAR"), "x")
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "{args:?} with FOO=\\xff exited {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    // the dry run is exactly what it is without the variable
    let plain = with_ff(commands[0]).output().unwrap();
    let with = with_ff(commands[0]).env("FOO", ff("")).output().unwrap();
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(with.stdout, plain.stdout);
}

#[test]
fn non_utf8_input_of_ours_is_a_usage_error_naming_it() {
    let base = [
        "install",
        "transparent-proxy",
        "--dry-run",
        "--kuma-dp-user",
        "root",
    ];
    with_ff(&base)
        .env("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT", ff("53"))
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "invalid value '53\\xFF' for environment variable KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT: not UTF-8 text",
        ));
    let mut cmd = with_ff(&base);
    cmd.arg("--exclude-outbound-ports").arg(ff("22,"));
    cmd.assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "the value of --exclude-outbound-ports, '22,\\xFF', is not UTF-8 text",
        ));
    let mut cmd = with_ff(&base);
    cmd.arg(ff("--exclude-outbound-ports="));
    cmd.assert().code(2).stderr(predicate::str::contains(
        "'--exclude-outbound-ports=\\xFF', is not UTF-8 text",
    ));
    let mut cmd = with_ff(&["generate", "dataplane", "--name"]);
    cmd.arg(ff("web"));
    cmd.assert()
        .code(2)
        .stderr(predicate::str::contains("the value of --name, 'web\\xFF'"));
}

#[test]
fn boolean_flag_with_a_space_gets_the_equals_hint() {
    for (flag, value) in [
        ("--redirect-inbound", "false"),
        ("--dry-run", "0"),
        ("--verbose", "true"),
    ] {
        tproxyctl()
            .args(["install", "transparent-proxy", flag, value])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(format!(
                "tip: a boolean flag takes its value after '=': write {flag}={value}"
            )));
    }
    // a stray word that is not a boolean gets clap's usual message only
    tproxyctl()
        .args([
            "install",
            "transparent-proxy",
            "--redirect-inbound",
            "maybe",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unexpected argument 'maybe'"))
        .stderr(predicate::str::contains("boolean flag").not());
}

#[test]
fn lenient_port_lists_warn_and_fold_as_documented() {
    let out = tproxyctl()
        .args([
            "install",
            "transparent-proxy",
            "--dry-run",
            "--kuma-dp-user",
            "root",
            "--ip-family-mode",
            "ipv4",
            "--exclude-outbound-ports",
            "22,,80,22",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "--exclude-outbound-ports ('22,,80,22') has 1 empty entry; ignored, as kumactl does"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "--exclude-outbound-ports repeats ports 1 time (first: 22); each port gets one rule"
        ),
        "{err}"
    );
    let rules = stdout(&out);
    assert_eq!(rules.matches("--dport 22 ").count(), 1, "{rules}");
    assert_eq!(rules.matches("--dport 80 ").count(), 1, "{rules}");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn non_utf8_input_changes_nothing_on_the_host() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let t = Topology::new("nonutf");
    let receipt = receipt_path(&dir);
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"# caf\xe9\n").unwrap();
    let before = t.a.state();
    let base = [
        "install",
        "transparent-proxy",
        "--receipt",
        &receipt,
        "--kuma-dp-user",
        "root",
    ];
    let mut runs: Vec<std::process::Command> = Vec::new();
    let mut c = t.a.cmd(bin(), &base);
    c.env("KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT", ff("15006"));
    runs.push(c);
    let mut c = t.a.cmd(bin(), &base);
    c.arg("--exclude-inbound-ports").arg(ff("22"));
    runs.push(c);
    let mut c = t.a.cmd(bin(), &base);
    c.args(["--config", &latin1.display().to_string()]);
    runs.push(c);
    for mut c in runs {
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{c:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("not UTF-8 text"), "{}", stderr(&out));
        assert_eq!(t.a.state(), before, "{c:?} changed the host");
        assert!(!std::path::Path::new(&receipt).exists());
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
    let json = crate::json_contract::receipt_document(std::path::Path::new(&receipt));
    assert_eq!(json["kumaDpUid"], 1);
    assert_eq!(json["families"][0]["backend"], "nft");
    ns.tproxyctl_ok(&["uninstall", "transparent-proxy", "--receipt", &receipt]);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
    let json = crate::json_contract::document(crate::json_contract::Doc::Plan, &out.stdout);
    assert_eq!(json["mode"], "iptables");
    let families = json["families"].as_array().unwrap();
    assert_eq!(families.len(), 1, "--ip-family-mode ipv4");
    let fam = &families[0];
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

#[test]
fn kumactl_root_flags_are_accepted_with_a_warning() {
    let plain = tproxyctl()
        .args([
            "install",
            "transparent-proxy",
            "--dry-run",
            "--kuma-dp-user",
            "root",
        ])
        .output()
        .unwrap();
    // after the subcommand, and before it, as kumactl's persistent flags
    for args in [
        &[
            "install",
            "transparent-proxy",
            "--dry-run",
            "--kuma-dp-user",
            "root",
            "--log-level",
            "debug",
            "--no-config",
            "--context",
            "prod",
            "--api-timeout",
            "5s",
        ][..],
        &[
            "--log-level",
            "info",
            "--no-config=true",
            "install",
            "transparent-proxy",
            "--dry-run",
            "--kuma-dp-user",
            "root",
        ][..],
    ] {
        let out = tproxyctl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(out.stdout, plain.stdout, "{args:?} changed the rules");
        let err = stderr(&out);
        for flag in ["--log-level", "--no-config"] {
            assert!(
                err.contains(&format!(
                    "# [WARNING] {flag} is a flag of kumactl's root command"
                )),
                "{args:?}: {err}"
            );
        }
    }
    // the validator's --config-file (kumactl's root flag there) is not silently ignored
    tproxyctl()
        .args([
            "install",
            "transparent-proxy-validator",
            "--config-file",
            "/etc/kumactl/config",
            "--validation-server-port",
            "0",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--config-file is kumactl's root flag for its own configuration; the validator ignores it",
        ));
    // uninstall takes them too; they stay out of the help
    tproxyctl()
        .args([
            "uninstall",
            "transparent-proxy",
            "--dry-run",
            "--receipt",
            "/nonexistent/r.json",
            "--log-level",
            "off",
        ])
        .assert()
        .stderr(predicate::str::contains(
            "--log-level is a flag of kumactl's root command",
        ));
    tproxyctl()
        .args(["install", "transparent-proxy", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--log-level").not());
}

#[test]
fn quiet_prints_errors_only_and_the_same_data() {
    let args = [
        "install",
        "transparent-proxy",
        "--dry-run",
        "--kuma-dp-user",
        "root",
        "--exclude-outbound-ports",
        "22,,22",
        "--log-level",
        "debug",
    ];
    let loud = tproxyctl().args(args).output().unwrap();
    assert!(!loud.stderr.is_empty());
    for quiet in [&["--quiet"][..], &["-q"][..]] {
        let out = tproxyctl().args(quiet).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(stderr(&out), "", "{quiet:?}");
        assert_eq!(out.stdout, loud.stdout);
        let out = tproxyctl().args(args).args(quiet).output().unwrap();
        assert_eq!(stderr(&out), "", "{quiet:?} after the subcommand");
    }
    // errors still are printed, with their exit code
    tproxyctl()
        .args([
            "install",
            "transparent-proxy",
            "--dry-run",
            "--quiet",
            "--redirect-dns-port",
            "0",
        ])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with(
            "Error: invalid value '0' for --redirect-dns-port",
        ));
    // every command has it
    let generate = [
        "generate",
        "dataplane",
        "--name",
        "a",
        "--address",
        "10.0.0.1",
        "--port",
        "80",
        "--service",
        "a",
    ];
    let loud = tproxyctl().args(generate).output().unwrap();
    tproxyctl()
        .args(generate)
        .arg("--quiet")
        .assert()
        .success()
        .stderr("")
        .stdout(predicate::eq(loud.stdout));
    for sub in [
        &["uninstall", "transparent-proxy", "--help"][..],
        &["status", "--help"][..],
        &["verify", "--help"][..],
        &["forwarder", "--help"][..],
        &["completion", "--help"][..],
        &["install", "transparent-proxy-validator", "--help"][..],
    ] {
        tproxyctl()
            .args(sub)
            .assert()
            .success()
            .stdout(predicate::str::contains("--quiet"));
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn ssh_warning_only_when_port_22_is_redirected() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let ssh = "SSH included";
    for (extra, warned) in [
        (&[][..], true),
        (&["--exclude-inbound-ports", "80,22"][..], false),
        (&["--redirect-inbound=false"][..], false),
    ] {
        let ns = Netns::new("ssh");
        let mut args = vec![
            "install",
            "transparent-proxy",
            "--receipt",
            &receipt,
            "--kuma-dp-user",
            "root",
            "--ip-family-mode",
            "ipv4",
        ];
        args.extend_from_slice(extra);
        let out = ns.tproxyctl_ok(&args);
        assert_eq!(
            stderr(&out).contains(ssh),
            warned,
            "{extra:?}: {}",
            stderr(&out)
        );
        ns.tproxyctl_ok(&["uninstall", "transparent-proxy", "--receipt", &receipt]);
    }
}
