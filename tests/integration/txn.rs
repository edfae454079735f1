//! Kernel tests of the install/uninstall transaction on a real host's terms,
//! each in fresh network namespaces, on nft and legacy where the backend
//! matters: read-back by the kernel's form of the plan (`--vnet`, addresses
//! the kernel normalises), the lock, rollback at rule granularity (rules
//! other tools add meanwhile survive; a bad snapshot never flushes anything),
//! crash windows, hung executables, receipts (damaged, stale, unsafe,
//! unwritable, none), policy counters, and `verify` of the live rules.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::require_kernel;

fn install<'a>(exes: &'a str, receipt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "install",
        "transparent-proxy",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--iptables-executables",
        exes,
        "--receipt",
        receipt,
    ];
    v.extend_from_slice(extra);
    v
}

fn uninstall<'a>(receipt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["uninstall", "transparent-proxy", "--receipt", receipt];
    v.extend_from_slice(extra);
    v
}

/// Both families of one backend, rule counters kept, chain policy counters
/// and tables without content left out (legacy tables cannot be removed).
fn rules_of(ns: &Netns, backend: Backend) -> String {
    let mut s = String::new();
    for v6 in [false, true] {
        let mut table = String::new();
        let mut body = String::new();
        for l in ns.save(backend, v6).lines() {
            if l.starts_with('*') {
                table = l.to_string();
                body.clear();
            } else if l == "COMMIT" {
                if body
                    .lines()
                    .any(|b| !b.starts_with(':') || b.contains(" - "))
                {
                    s.push_str(&format!("{table}\n{body}COMMIT\n"));
                }
            } else if l.starts_with(':') {
                let mut p = l.split_whitespace();
                body.push_str(&format!("{} {}\n", p.next().unwrap(), p.next().unwrap()));
            } else {
                body.push_str(&format!("{l}\n"));
            }
        }
    }
    s
}

/// Feeds restore input to `iptables-<backend>-restore --noflush` in `ns`.
fn restore(ns: &Netns, backend: Backend, v6: bool, input: &str) {
    let mut c = ns.cmd(&backend.restore(v6), &["--noflush"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "restore of {input}");
}

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// `--iptables-executables` for `backend` with some programs replaced.
fn executables_with(backend: Backend, replace: &[(&str, &str)]) -> String {
    backend
        .executables()
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once(':').unwrap();
            match replace.iter().find(|(name, _)| *name == k) {
                Some((_, path)) => format!("{k}:{path}"),
                None => format!("{k}:{v}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A restore wrapper that runs `on_host_apply` instead of the real program
/// for the apply on the host (not `--test`, not `--version`, not in the
/// throwaway namespace, which has no `va` interface).
fn apply_wrapper(dir: &Path, name: &str, real: &str, on_host_apply: &str) -> String {
    script(
        dir,
        name,
        &format!(
            "for a in \"$@\"; do case \"$a\" in --test|--version) exec {real} \"$@\";; esac; done\ngrep -q '^ *va:' /proc/net/dev || exec {real} \"$@\"\n{on_host_apply}"
        ),
    )
}

fn vnet_round_trip(backend: Backend) {
    let t = Topology::new(&format!("vn{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = backend.executables();
    let before = rules_of(&t.a, backend);
    // "envoy's" in the vnet comments is printed as envoy\'s by iptables-save;
    // the kernel stores 172.32.16.8/16 as 172.32.0.0/16 and fd00:77::5/64
    // as fd00:77::/64.
    let args = install(
        &exes,
        &receipt,
        &[
            "--vnet",
            "docker0:172.17.0.0/16",
            "--exclude-outbound-ips",
            "172.32.16.8/16,fd00:77::5/64",
            "--exclude-inbound-ips",
            "::1/64",
        ],
    );
    let out = t.a.tproxyctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let installed = t.a.save(backend, false);
    assert!(installed.contains("envoy\\'s"), "{installed}");
    assert!(installed.contains("-d 172.32.0.0/16"), "{installed}");
    let status = t.a.tproxyctl(&["status", "--receipt", &receipt]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    let again = t.a.tproxyctl_ok(&args);
    assert!(
        stderr(&again).contains("already installed"),
        "{}",
        stderr(&again)
    );
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert_eq!(rules_of(&t.a, backend), before);
}

#[test]
fn vnet_and_normalised_addresses_install_nft() {
    require_kernel!();
    vnet_round_trip(Backend::Nft);
}

#[test]
fn vnet_and_normalised_addresses_install_legacy() {
    require_kernel!();
    vnet_round_trip(Backend::Legacy);
}

/// Number of rules of ours (by comment) in both families of a backend.
fn our_rule_count(ns: &Netns, backend: Backend) -> usize {
    [false, true]
        .iter()
        .map(|v6| {
            ns.save(backend, *v6)
                .lines()
                .filter(|l| l.contains("kuma/mesh/transparent/proxy"))
                .count()
        })
        .sum()
}

#[test]
fn parallel_installs_in_one_namespace_end_with_one_complete_rule_set() {
    require_kernel!();
    let t = Topology::new("par");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = Backend::Nft.executables();
    let alone = {
        let out = t.a.tproxyctl(&install(
            &exes,
            &receipt,
            &["--exclude-outbound-ports", "22"],
        ));
        assert!(out.status.success(), "{}", stderr(&out));
        let n = our_rule_count(&t.a, Backend::Nft);
        t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
        n
    };
    // two configurations, four runs at once; every run must see the others'
    // completed work (the lock), none may undo another's rules
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let ports = if i % 2 == 0 { "22" } else { "2222" };
            let mut c = t.a.cmd(
                bin(),
                &install(
                    &exes,
                    &receipt,
                    &["--exclude-outbound-ports", ports, "--wait", "30"],
                ),
            );
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        our_rule_count(&t.a, Backend::Nft),
        alone,
        "exactly one rule set"
    );
    let status = t.a.tproxyctl(&["status", "--receipt", &receipt]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert_eq!(our_rule_count(&t.a, Backend::Nft), 0);
}

#[test]
fn a_held_lock_makes_install_wait_then_fail_clearly() {
    require_kernel!();
    let t = Topology::new("lck");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let id = t.a.sh("stat -L -c '%d-%i' /proc/self/ns/net");
    std::fs::create_dir_all("/run/tproxyctl").unwrap();
    let lock = format!("/run/tproxyctl/netns-{}.lock", id.trim());
    // another run holding the lock: the same kind of lock (flock), taken here
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let before = t.a.state();
    let t0 = Instant::now();
    let out = t.a.tproxyctl(&install(
        &Backend::Nft.executables(),
        &receipt,
        &["--wait", "1"],
    ));
    let took = t0.elapsed();
    let _ = std::fs::remove_file(&lock);
    drop(held);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("network namespace") && err.contains("in use by another tproxyctl run"),
        "{err}"
    );
    assert!(err.contains("waited 1s (--wait)"), "{err}");
    assert!(err.contains("nothing on the host was changed"), "{err}");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(t.a.state(), before);
    assert!(!Path::new(&receipt).exists());
}

fn foreign_rule_survives_rollback(backend: Backend) {
    let t = Topology::new(&format!("fg{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let m = backend.name();
    // another tool adds a nat rule while our IPv4 apply runs; the apply then
    // fails (once: the rollback that follows goes through the same program)
    let once = dir.path().join("failed-once");
    let failing = apply_wrapper(
        dir.path(),
        "iptables-restore",
        &format!("/usr/sbin/iptables-{m}-restore"),
        &format!(
            "[ -e {once} ] && exec /usr/sbin/iptables-{m}-restore \"$@\"\ntouch {once}\n/usr/sbin/iptables-{m} -w -t nat -A OUTPUT -p tcp --dport 4444 -j RETURN\n/usr/sbin/iptables-{m}-restore \"$@\"\necho 'iptables-restore: line 9 failed' >&2; exit 1",
            once = once.display()
        ),
    );
    let exes = executables_with(backend, &[("iptables-restore", &failing)]);
    restore(
        &t.a,
        backend,
        false,
        "*nat\n-A OUTPUT -p udp --dport 9997 -j RETURN\nCOMMIT\n",
    );
    let before = rules_of(&t.a, backend);
    let out =
        t.a.tproxyctl(&install(&exes, &receipt, &["--max-retries", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every change it made was undone"),
        "{}",
        stderr(&out)
    );
    let after = rules_of(&t.a, backend);
    let expected = before.replace(
        "-A OUTPUT -p udp -m udp --dport 9997 -j RETURN\n",
        "-A OUTPUT -p udp -m udp --dport 9997 -j RETURN\n[0:0] -A OUTPUT -p tcp -m tcp --dport 4444 -j RETURN\n",
    );
    assert_eq!(after, expected, "only our rules were undone");
    assert!(!Path::new(&receipt).exists());
}

#[test]
fn a_rule_added_meanwhile_survives_rollback_nft() {
    require_kernel!();
    foreign_rule_survives_rollback(Backend::Nft);
}

#[test]
fn a_rule_added_meanwhile_survives_rollback_legacy() {
    require_kernel!();
    foreign_rule_survives_rollback(Backend::Legacy);
}

#[test]
fn garbage_from_iptables_save_stops_the_install_before_any_change() {
    require_kernel!();
    let t = Topology::new("gsv");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let save = script(
        dir.path(),
        "iptables-save",
        "case \"$*\" in *--version*) exec /usr/sbin/iptables-nft-save \"$@\";; esac\necho 'Segmentation fault (core dumped)'",
    );
    let exes = executables_with(Backend::Nft, &[("iptables-save", &save)]);
    restore(
        &t.a,
        Backend::Nft,
        false,
        "*nat\n-A OUTPUT -p udp --dport 9997 -j RETURN\nCOMMIT\n",
    );
    let before = t.a.state();
    let out = t.a.tproxyctl(&install(&exes, &receipt, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unexpected iptables-save output"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.a.state(), before);
}

fn bad_snapshot_never_flushes(backend: Backend) {
    let t = Topology::new(&format!("es{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let m = backend.name();
    let count = dir.path().join("calls");
    // the first save (the snapshot) prints nothing, later ones the truth
    let save = script(
        dir.path(),
        "iptables-save",
        &format!(
            "case \"$*\" in *--version*) exec /usr/sbin/iptables-{m}-save \"$@\";; esac\nn=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}\n[ \"$n\" = 0 ] && exit 0\nexec /usr/sbin/iptables-{m}-save \"$@\"",
            c = count.display()
        ),
    );
    let failing6 = apply_wrapper(
        dir.path(),
        "ip6tables-restore",
        &format!("/usr/sbin/ip6tables-{m}-restore"),
        "echo 'ip6tables-restore: line 2 failed' >&2; exit 1",
    );
    let exes = executables_with(
        backend,
        &[("iptables-save", &save), ("ip6tables-restore", &failing6)],
    );
    for v6 in [false, true] {
        restore(
            &t.a,
            backend,
            v6,
            "*nat\n:CUSTOM - [0:0]\n-A CUSTOM -j RETURN\n-A OUTPUT -p udp --dport 9997 -j CUSTOM\nCOMMIT\n",
        );
    }
    let before = rules_of(&t.a, backend);
    let out =
        t.a.tproxyctl(&install(&exes, &receipt, &["--max-retries", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        rules_of(&t.a, backend),
        before,
        "foreign rules of both families stay"
    );
}

#[test]
fn an_empty_snapshot_never_flushes_foreign_rules_nft() {
    require_kernel!();
    bad_snapshot_never_flushes(Backend::Nft);
}

#[test]
fn an_empty_snapshot_never_flushes_foreign_rules_legacy() {
    require_kernel!();
    bad_snapshot_never_flushes(Backend::Legacy);
}

#[test]
fn nft_native_foreign_rules_are_never_rewritten() {
    require_kernel!();
    let t = Topology::new("nat");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let failing6 = apply_wrapper(
        dir.path(),
        "ip6tables-restore",
        "/usr/sbin/ip6tables-nft-restore",
        "echo 'ip6tables-restore: line 2 failed' >&2; exit 1",
    );
    let exes = executables_with(Backend::Nft, &[("ip6tables-restore", &failing6)]);
    // a rule iptables-nft-save can only print lossily (as a plain RETURN),
    // in the chain iptables-nft made
    t.a.run_ok(
        "iptables-nft",
        &[
            "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "RETURN",
        ],
    );
    t.a.run_ok(
        "nft",
        &["add rule ip nat OUTPUT ip daddr { 192.0.2.7, 192.0.2.8 } return"],
    );
    let native = || t.a.run_ok("nft", &["list", "chain", "ip", "nat", "OUTPUT"]);
    let before = native();
    assert!(
        before.contains("ip daddr { 192.0.2.7, 192.0.2.8 } return"),
        "{before}"
    );
    let out =
        t.a.tproxyctl(&install(&exes, &receipt, &["--max-retries", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        native(),
        before,
        "rolled back without rewriting the native rule"
    );
    // and an install and uninstall that work leave it alone too
    let exes = Backend::Nft.executables();
    t.a.tproxyctl_ok(&install(&exes, &receipt, &[]));
    assert!(native().contains("ip daddr { 192.0.2.7, 192.0.2.8 } return"));
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert_eq!(native(), before);
}
