//! What the Debian package ships, tested the way a VM uses it: the systemd
//! units pass `systemd-analyze verify`; the commented conffile is valid
//! configuration whose every setting shows its default; and the boot path
//! without firewalld — a "reboot" is a fresh network namespace with no rules
//! and a stale receipt — is the install unit's `ExecStart` command line taken
//! from the unit file (binary and conffile paths substituted), with the
//! forwarder unit's `ExecStart` run under the unit's capability bounding set
//! and no-new-privileges, proven with real connections on both backends;
//! `install --from-receipt` likewise, and the unit's `ExecStop` removes it all.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::fwd_kernel::{http_get, in_ns};
use crate::require_kernel;
use tproxyctl::cli::man_sections::{FORWARDER_UNIT, INSTALL_UNIT, PACKAGED_CONFIG};

const SYSTEMD_BIN: &str = "/usr/bin/tproxyctl";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn unit_text(name: &str) -> String {
    std::fs::read_to_string(repo("packaging/systemd").join(name)).unwrap()
}

/// The values of `key=` in a unit file (comments and sections ignored).
fn directive(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// A command line of a unit (`ExecStart=` …) as argv, split the way systemd
/// splits one without quotes or variables (the test refuses anything
/// fancier rather than guess), with `from → to` substitutions per word.
fn command(unit: &str, key: &str, subst: &[(&str, &str)]) -> Vec<String> {
    let v = directive(unit, key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    let line = v[0].trim_start_matches(['-', '@', ':', '+', '!']);
    assert!(
        !line.contains(['"', '\'', '$', '\\', ';']),
        "{key}={line}: extend the test's parser"
    );
    line.split_whitespace()
        .map(|w| {
            subst
                .iter()
                .find(|(from, _)| *from == w)
                .map_or(w, |(_, to)| *to)
                .to_string()
        })
        .collect()
}

fn require_tool(tool: &str) -> bool {
    if which::which(tool).is_ok() {
        return true;
    }
    if std::env::var("TPROXYCTL_REQUIRE_KERNEL_TESTS").as_deref() == Ok("1") {
        panic!("{tool} is not installed but TPROXYCTL_REQUIRE_KERNEL_TESTS=1 (CI installs it)");
    }
    eprintln!("SKIPPED: {tool} is not installed");
    false
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !require_tool("systemd-analyze") {
        return;
    }
    // The executable must exist for verify: this build's binary stands in
    // for /usr/bin/tproxyctl; everything else is verified as shipped. (CI
    // verifies the installed units again, man pages included.)
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in [INSTALL_UNIT, FORWARDER_UNIT] {
        let text = unit_text(name);
        assert!(text.contains(SYSTEMD_BIN), "{name}");
        let p = dir.path().join(name);
        std::fs::write(&p, text.replace(SYSTEMD_BIN, bin())).unwrap();
        paths.push(p);
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    // verify only warns (exit 0) about unknown keys and the like: any output fails.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {:?}\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn units_are_wired_as_documented() {
    let install = unit_text(INSTALL_UNIT);
    assert_eq!(directive(&install, "Type"), ["oneshot"]);
    assert_eq!(directive(&install, "RemainAfterExit"), ["yes"]);
    assert_eq!(directive(&install, "DefaultDependencies"), ["no"]);
    let before = directive(&install, "Before").join(" ");
    assert!(before.contains("network-pre.target"), "{before}");
    assert!(
        directive(&install, "Wants")
            .join(" ")
            .contains("network-pre.target")
    );
    let start = command(&install, "ExecStart", &[]);
    assert_eq!(
        start,
        [
            SYSTEMD_BIN,
            "install",
            "transparent-proxy",
            "--config",
            PACKAGED_CONFIG
        ]
    );
    assert_eq!(command(&install, "ExecReload", &[]), start);
    assert_eq!(
        command(&install, "ExecStop", &[]),
        [
            SYSTEMD_BIN,
            "uninstall",
            "transparent-proxy",
            "--config",
            PACKAGED_CONFIG
        ]
    );
    let fwd = unit_text(FORWARDER_UNIT);
    let start = command(&fwd, "ExecStart", &[]);
    assert_eq!(
        start[..4],
        [SYSTEMD_BIN, "forwarder", "--config", PACKAGED_CONFIG]
    );
    assert!(start.windows(2).any(|w| w[0] == "--user"), "{start:?}");
    assert_eq!(directive(&fwd, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(directive(&fwd, "Restart"), ["on-failure"]);
    assert_eq!(directive(&fwd, "NoNewPrivileges"), ["yes"]);
    assert!(
        directive(&fwd, "After")
            .join(" ")
            .contains("tproxyctl-install.service")
    );
}

/// The conffile as shipped is valid and means the defaults; with every
/// setting uncommented it still means the defaults, without a warning, and
/// it shows every key of the schema.
#[test]
fn packaged_config_is_valid_and_shows_every_default() {
    use tproxyctl::config::{Config, Inputs, layers, resolve, schema};
    let text = std::fs::read_to_string(repo("packaging/config.yaml")).unwrap();
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    for (what, doc) in [("as shipped", &text), ("uncommented", &uncommented)] {
        let f = temp_file(doc);
        let tp = tproxyctl::cli::TpFlags {
            config: vec![f.path().display().to_string()],
            ..Default::default()
        };
        let r = resolve(Inputs {
            tp: &tp,
            apply: None,
            env: &[],
            stdin: &mut std::io::empty(),
        })
        .unwrap_or_else(|e| panic!("{what}: {}", e.0));
        assert!(r.warnings.is_empty(), "{what}: {:?}", r.warnings);
        assert_eq!(r.config, Config::default(), "{what}");
    }
    let mut w = Vec::new();
    let leaves = layers::file_layer("config.yaml", &uncommented, &mut w).unwrap();
    for key in schema::KEYS {
        let shown = leaves.iter().any(|(p, _)| p == key.path)
            || (key.kind == schema::Kind::Executables
                && uncommented.contains(&format!("{}: {{}}", key.path)));
        assert!(shown, "{} is not in packaging/config.yaml", key.path);
    }
}

#[test]
fn from_receipt_refuses_configuration_inputs_and_missing_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let missing = missing.to_str().unwrap();
    let run = |args: &[&str]| -> Output {
        std::process::Command::new(bin())
            .args(["install", "transparent-proxy"])
            .args(args)
            .env_remove("TPROXYCTL_RECEIPT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for extra in [
        &["--kuma-dp-user", "1"][..],
        &["--config", "/dev/null"],
        &["--redirect-dns"],
        &["--store-firewalld"],
        &["--iptables-executables", "iptables:/x"],
    ] {
        let mut args = vec!["--from-receipt", missing, "--dry-run"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
    let out = run(&["--from-receipt", missing, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(missing) && stderr(&out).contains("no install receipt"),
        "{}",
        stderr(&out)
    );
    // the default is the --receipt file
    let out = run(&["--receipt", missing, "--from-receipt", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(missing), "{}", stderr(&out));
    let garbage = temp_file("{\"not\": \"a receipt\"}");
    let g = garbage.path().to_str().unwrap();
    let out = run(&["--from-receipt", g, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(g) && stderr(&out).contains("--from-receipt"),
        "{}",
        stderr(&out)
    );
}

/// A unit's command run in a namespace as systemd would (no shell), with the
/// receipt kept in `receipt`, the exempt user and the backend chosen by
/// environment variables, as an operator could in a drop-in.
fn run_unit_command(
    ns: &Netns,
    argv: &[String],
    receipt: &Path,
    backend: Backend,
    wrap: &[String],
) -> std::process::Command {
    let mut full: Vec<String> = wrap.to_vec();
    full.extend(argv.iter().cloned());
    let mut c = ns.cmd(
        &full[0],
        &full[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    c.env("TPROXYCTL_RECEIPT", receipt)
        .env("KUMA_TRANSPARENT_PROXY_KUMA_DP_USER", EXEMPT_USER)
        .env(
            "KUMA_TRANSPARENT_PROXY_IPTABLES_EXECUTABLES",
            backend.executables(),
        )
        .stdin(Stdio::null());
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}{}",
        out.status.code(),
        stderr(&out),
        stdout(&out)
    );
    out
}

/// Our rules only (both families), as iptables-save prints them.
fn our_rules(ns: &Netns, backend: Backend) -> String {
    let mut s = String::new();
    for v6 in [false, true] {
        for l in rules_only(&ns.save(backend, v6)).lines() {
            if l.contains("KUMA_MESH") || l.starts_with('*') {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

/// The forwarder started by its unit's `ExecStart` under the unit's
/// `CapabilityBoundingSet` and `NoNewPrivileges` (setpriv), in `ns`.
struct UnitForwarder(Spawned);

impl UnitForwarder {
    fn start(ns: &Netns, receipt: &Path, backend: Backend, log: &Path) -> UnitForwarder {
        let unit = unit_text(FORWARDER_UNIT);
        let conf = repo("packaging/config.yaml").display().to_string();
        let argv = command(
            &unit,
            "ExecStart",
            &[
                (SYSTEMD_BIN, bin()),
                (PACKAGED_CONFIG, &conf),
                ("kuma-dp", EXEMPT_USER),
            ],
        );
        let caps: Vec<String> = directive(&unit, "CapabilityBoundingSet")
            .join(" ")
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let mut wrap = vec![
            "setpriv".to_string(),
            format!("--bounding-set=-all,{}", caps.join(",")),
        ];
        if directive(&unit, "NoNewPrivileges") == ["yes"] {
            wrap.push("--no-new-privs".to_string());
        }
        let child = run_unit_command(ns, &argv, receipt, backend, &wrap)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("forwarder starts");
        let mut f = UnitForwarder(Spawned(child));
        let t = Instant::now();
        loop {
            let ready = in_ns(ns, || http_get("127.0.0.1:9901".parse().unwrap(), "/ready"));
            if ready.is_some_and(|b| b.starts_with("HTTP/1.1 200")) {
                return f;
            }
            let log_text = || std::fs::read_to_string(log).unwrap_or_default();
            if let Some(status) = f.0.0.try_wait().unwrap() {
                panic!("forwarder exited ({status}); stderr:\n{}", log_text());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "forwarder not ready; stderr:\n{}",
                log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Uid:` and `CapEff:` of the running forwarder.
    fn identity(&self) -> (String, String) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.0.id())).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        (field("Uid:"), field("CapEff:"))
    }
}

/// Applications' outbound TCP reaches the real destination through the
/// forwarder, inbound TCP reaches the application from 127.0.0.6.
fn traffic_flows_through_the_forwarder(t: &Topology) {
    let real = tcp_recorder(&t.b, v4([0, 0, 0, 0].into(), 80), "real");
    let app = tcp_recorder(&t.a, v4([0, 0, 0, 0].into(), 9000), "app");
    assert_eq!(t.a.tcp_client(APP_UID, v4(REMOTE4, 80)), "real none");
    assert_eq!(next(&real).unwrap().peer.ip(), IpAddr::V4(A4));
    // (the application's side has conntrack, so it sees its own address as
    // the "original" destination: nothing was translated)
    assert_eq!(t.b.tcp_client(0, v4(A4, 9000)), "app 10.77.0.1:9000");
    assert_eq!(
        next(&app).unwrap().peer.ip(),
        "127.0.0.6".parse::<IpAddr>().unwrap()
    );
}

/// Outbound and inbound TCP reach the redirect ports with their original
/// destination (listeners stand in for the forwarder).
fn traffic_is_redirected(t: &Topology) {
    let out = tcp_recorder(&t.a, v4([0, 0, 0, 0].into(), 15001), "outbound");
    let inb = tcp_recorder(&t.a, v4([0, 0, 0, 0].into(), 15006), "inbound");
    let _real = tcp_recorder(&t.b, v4([0, 0, 0, 0].into(), 80), "real");
    assert_eq!(
        t.a.tcp_client(APP_UID, v4(REMOTE4, 80)),
        "outbound 192.0.2.1:80"
    );
    assert_eq!(next(&out).unwrap().original, Some(v4(REMOTE4, 80)));
    assert_eq!(t.a.tcp_client(EXEMPT_UID, v4(REMOTE4, 80)), "real none");
    assert_eq!(t.b.tcp_client(0, v4(A4, 9000)), "inbound 10.77.0.1:9000");
    assert_eq!(next(&inb).unwrap().original, Some(v4(A4, 9000)));
}

fn boot_path(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let receipt = dir.path().join("receipt.json");
    let conf = repo("packaging/config.yaml").display().to_string();
    let install_unit = unit_text(INSTALL_UNIT);
    let subst = [(SYSTEMD_BIN, bin()), (PACKAGED_CONFIG, conf.as_str())];
    let start = command(&install_unit, "ExecStart", &subst);
    let stop = command(&install_unit, "ExecStop", &subst);
    let tag = backend.name();

    // First boot: the unit installs the rules and records them.
    let first = Topology::new(&format!("boot1{tag}"));
    ok(
        run_unit_command(&first.a, &start, &receipt, backend, &[])
            .output()
            .unwrap(),
        "ExecStart (first boot)",
    );
    let installed = our_rules(&first.a, backend);
    assert!(installed.contains("KUMA_MESH_OUTBOUND"), "{installed}");
    drop(first);

    // Reboot: a fresh namespace has no rules; the receipt is stale.
    let t = Topology::new(&format!("boot2{tag}"));
    assert!(!our_rules(&t.a, backend).contains("-A"));
    ok(
        run_unit_command(&t.a, &start, &receipt, backend, &[])
            .output()
            .unwrap(),
        "ExecStart (after the reboot)",
    );
    assert_eq!(our_rules(&t.a, backend), installed);
    let log = dir.path().join("forwarder.log");
    let fwd = UnitForwarder::start(&t.a, &receipt, backend, &log);
    let (uid, caps) = fwd.identity();
    assert_eq!(
        uid,
        format!("{EXEMPT_UID} {EXEMPT_UID} {EXEMPT_UID} {EXEMPT_UID}")
    );
    assert_eq!(caps, "0000000000000000", "no capability after --user");
    traffic_flows_through_the_forwarder(&t);
    drop(fwd);
    drop(t);

    // Another reboot, re-applied from the receipt alone.
    let t = Topology::new(&format!("boot3{tag}"));
    let tables = |ns: &Netns| {
        let (v4, v6) = (ns.save(backend, false), ns.save(backend, true));
        rules_only(&v4) + &rules_only(&v6)
    };
    let before = tables(&t.a);
    let receipt_s = receipt.to_str().unwrap();
    // (the new install writes its own receipt: never the host's default one)
    let receipt2 = dir.path().join("receipt-from-receipt.json");
    let from_receipt = |extra: &[&str]| {
        let mut args = vec![
            "install",
            "transparent-proxy",
            "--from-receipt",
            receipt_s,
            "--receipt",
            receipt2.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        t.a.cmd(bin(), &args)
            .env_remove("TPROXYCTL_RECEIPT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = from_receipt(&[]);
    let out = ok(out, "install --from-receipt");
    assert!(stderr(&out).contains("re-applying"), "{}", stderr(&out));
    assert_eq!(our_rules(&t.a, backend), installed);
    traffic_is_redirected(&t);
    // the dry run from the receipt plans what the unit's command plans
    let mut dry = start.clone();
    dry.push("--dry-run".into());
    let unit_plan = ok(
        run_unit_command(&t.a, &dry, &receipt, backend, &[])
            .output()
            .unwrap(),
        "ExecStart --dry-run",
    );
    let receipt_plan = ok(from_receipt(&["--dry-run"]), "--from-receipt --dry-run");
    assert_eq!(stdout(&receipt_plan), stdout(&unit_plan));
    // Stopping the unit removes everything the install added.
    ok(
        run_unit_command(&t.a, &stop, &receipt2, backend, &[])
            .output()
            .unwrap(),
        "ExecStop",
    );
    assert!(!our_rules(&t.a, backend).contains("-A"));
    assert!(!receipt2.exists(), "uninstall removes the receipt");
    assert!(!t.a.run_ok("ip", &["-6", "addr"]).contains("::6/128"));
    // (legacy tables, once used, stay in the kernel, empty)
    if backend == Backend::Nft {
        assert_eq!(tables(&t.a), before);
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn boot_path_restores_redirection_nft() {
    require_kernel!();
    boot_path(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn boot_path_restores_redirection_legacy() {
    require_kernel!();
    boot_path(Backend::Legacy);
}
