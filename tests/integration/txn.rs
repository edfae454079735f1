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
use crate::kernel::{install_args as install, uninstall_args as uninstall};
use crate::require_kernel;

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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn vnet_and_normalised_addresses_install_nft() {
    require_kernel!();
    vnet_round_trip(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_rule_added_meanwhile_survives_rollback_nft() {
    require_kernel!();
    foreign_rule_survives_rollback(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_rule_added_meanwhile_survives_rollback_legacy() {
    require_kernel!();
    foreign_rule_survives_rollback(Backend::Legacy);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn an_empty_snapshot_never_flushes_foreign_rules_nft() {
    require_kernel!();
    bad_snapshot_never_flushes(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn an_empty_snapshot_never_flushes_foreign_rules_legacy() {
    require_kernel!();
    bad_snapshot_never_flushes(Backend::Legacy);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
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

/// Waits (bounded) until `path` exists.
fn wait_for_file(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded by `limit`) until process `pid` is gone.
fn wait_gone(pid: &str, limit: Duration) {
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            t0.elapsed() < limit,
            "process {pid} outlived tproxyctl by more than {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn has_v6_passthrough(ns: &Netns) -> bool {
    ns.run_ok("ip", &["-6", "addr", "show", "dev", "lo"])
        .contains("::6/128")
}

/// Kills install at a chosen point: `during_apply` — while its IPv4
/// iptables-restore is about to apply (nothing applied); otherwise while it
/// reads the rules back (everything applied, `::6` added, no receipt yet).
/// Then `recover` (install or uninstall) must bring the host to a clean,
/// known state, and the killed run's children must be gone for good: the
/// save at once (it dies with tproxyctl), the hung restore — which commits,
/// so it is not killed with tproxyctl and holds the lock — at its own time
/// limit (`--wait` 5 s + 10 s), after which the lock is free.
fn killed_install_is_recovered(backend: Backend, during_apply: bool, recover: &str) {
    killed_install_is_recovered_with(backend, during_apply, recover, false)
}

fn killed_install_is_recovered_with(
    backend: Backend,
    during_apply: bool,
    recover: &str,
    comments: bool,
) {
    let t = Topology::new(&format!("k{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let m = backend.name();
    let d = dir.path().display().to_string();
    // The host apply: records its PID, and either waits to be killed or
    // applies and tells the save wrapper to wait at the read-back.
    let restore = apply_wrapper(
        dir.path(),
        "iptables-restore",
        &format!("/usr/sbin/iptables-{m}-restore"),
        &if during_apply {
            format!(
                "[ -e {d}/done ] && exec /usr/sbin/iptables-{m}-restore \"$@\"\necho $$ > {d}/child; exec sleep 600"
            )
        } else {
            format!(
                "/usr/sbin/iptables-{m}-restore \"$@\" || exit $?\n[ -e {d}/done ] || touch {d}/applied"
            )
        },
    );
    let save = script(
        dir.path(),
        "iptables-save",
        &format!(
            "if [ -e {d}/applied ] && [ ! -e {d}/done ] && grep -q '^ *va:' /proc/net/dev; then echo $$ > {d}/child; exec sleep 600; fi\nexec /usr/sbin/iptables-{m}-save \"$@\""
        ),
    );
    let exes = executables_with(
        backend,
        &[("iptables-restore", &restore), ("iptables-save", &save)],
    );
    restore_foreign(&t.a, backend);
    let before = rules_of(&t.a, backend);
    let extra: &[&str] = if comments {
        &["--redirect-dns"]
    } else {
        &["--disable-comments", "--redirect-dns"]
    };
    let args = install(&exes, &receipt, extra);
    let resolv = temp_file("nameserver 10.77.0.2\nnameserver fd00:77::2\n");
    let mut run = t.a.cmd(bin(), &args);
    run.env(
        "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH",
        resolv.path(),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = run.spawn().unwrap();
    let marker = dir.path().join("child");
    wait_for_file(&marker);
    // `ip netns exec` runs tproxyctl as its own process (exec): kill it.
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(50));
    let orphan = std::fs::read_to_string(&marker).unwrap();
    if during_apply {
        // The restore holds the run's lock: a recovery now waits for it.
        let out = t.a.tproxyctl(&uninstall(&receipt, &["--wait", "0"]));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("finishing its commit"),
            "{}",
            stderr(&out)
        );
        wait_gone(orphan.trim(), Duration::from_secs(40));
    } else {
        wait_gone(orphan.trim(), Duration::from_secs(10));
    }
    std::fs::write(dir.path().join("done"), "").unwrap();
    if !during_apply {
        assert!(has_v6_passthrough(&t.a), "::6 was added before the kill");
        assert!(
            t.a.save(backend, false).contains("KUMA_MESH"),
            "applied before the kill"
        );
    }
    let text = std::fs::read_to_string(&receipt).expect("the journal is there");
    assert!(text.contains("\"pending\""), "{text}");
    let rec_args = if recover == "install" {
        args.clone()
    } else {
        uninstall(&receipt, &[])
    };
    let out = t.a.tproxyctl_resolv(&rec_args, resolv.path());
    assert!(out.status.success(), "{recover}: {}", stderr(&out));
    assert!(stderr(&out).contains("did not finish"), "{}", stderr(&out));
    if recover == "install" {
        let status = t.a.tproxyctl(&["status", "--receipt", &receipt]);
        assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
        assert!(has_v6_passthrough(&t.a));
        t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    }
    assert_eq!(rules_of(&t.a, backend), before, "back to the state before");
    assert!(!has_v6_passthrough(&t.a), "::6 does not leak");
    assert!(!Path::new(&receipt).exists());
}

/// Foreign rules in both families (nat, raw) for "only ours changed" checks.
fn restore_foreign(ns: &Netns, backend: Backend) {
    for v6 in [false, true] {
        restore(
            ns,
            backend,
            v6,
            "*nat\n:CUSTOM - [0:0]\n-A CUSTOM -j RETURN\n-A OUTPUT -p udp --dport 9997 -j CUSTOM\nCOMMIT\n*raw\n-A OUTPUT -p udp --dport 9996 -j ACCEPT\nCOMMIT\n",
        );
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn install_killed_while_applying_is_undone_by_uninstall_nft() {
    require_kernel!();
    killed_install_is_recovered(Backend::Nft, true, "uninstall");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn install_killed_after_applying_is_undone_by_uninstall_legacy() {
    require_kernel!();
    killed_install_is_recovered(Backend::Legacy, false, "uninstall");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn install_killed_after_applying_is_finished_by_install_nft() {
    require_kernel!();
    killed_install_is_recovered(Backend::Nft, false, "install");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn install_with_comments_killed_after_applying_is_undone_by_uninstall_nft() {
    require_kernel!();
    killed_install_is_recovered_with(Backend::Nft, false, "uninstall", true);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn install_killed_while_applying_is_finished_by_install_legacy() {
    require_kernel!();
    killed_install_is_recovered(Backend::Legacy, true, "install");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_hung_restore_times_out_naming_the_command_and_changes_nothing() {
    require_kernel!();
    let t = Topology::new("hung");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let hung = apply_wrapper(
        dir.path(),
        "iptables-restore",
        "/usr/sbin/iptables-nft-restore",
        "exec sleep 600",
    );
    let exes = executables_with(Backend::Nft, &[("iptables-restore", &hung)]);
    let before = t.a.state();
    let t0 = Instant::now();
    let out = t.a.tproxyctl(&install(
        &exes,
        &receipt,
        &[
            "--wait",
            "1",
            "--max-retries",
            "3",
            "--sleep-between-retries",
            "10ms",
        ],
    ));
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("timed out"), "{err}");
    assert!(
        err.contains(&format!("{hung} --noflush")),
        "the command line: {err}"
    );
    assert!(
        !err.contains("[2/4]"),
        "a hung program is not retried: {err}"
    );
    // --wait 1 + 10 s for the one process, not 4 × 120 s
    assert!(took < Duration::from_secs(40), "{took:?}");
    assert_eq!(t.a.state(), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn checking_is_retried_while_the_xtables_lock_is_held() {
    require_kernel!();
    let t = Topology::new("xtl");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = Backend::Legacy.executables();
    // an install to replace (a fresh install needs no --test: loading the
    // plan into a throwaway namespace checks every rule)
    t.a.tproxyctl_ok(&install(
        &exes,
        &receipt,
        &["--ip-family-mode", "ipv4", "--exclude-outbound-ports", "22"],
    ));
    // a private xtables lock file, so only this test's iptables wait for it
    let lockfile = dir.path().join("xtables.lock");
    let file = std::fs::File::create(&lockfile).unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    });
    let args = install(
        &exes,
        &receipt,
        &[
            "--ip-family-mode",
            "ipv4",
            "--wait",
            "1",
            "--max-retries",
            "5",
            "--sleep-between-retries",
            "1s",
        ],
    );
    let out =
        t.a.cmd(bin(), &args)
            .env("XTABLES_LOCKFILE", &lockfile)
            .output()
            .unwrap();
    release.join().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("checking failed"),
        "the first check met the lock: {err}"
    );
    assert!(err.contains("will try again"), "{err}");
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
}

fn comment_less_reinstall_without_receipt(backend: Backend) {
    let t = Topology::new(&format!("cl{}", backend.name()));
    let resolv = temp_file("nameserver 10.77.0.2\nnameserver fd00:77::2\n");
    let exes = backend.executables();
    restore_foreign(&t.a, backend);
    let before = rules_of(&t.a, backend);
    let args = install(
        &exes,
        "none",
        &[
            "--disable-comments",
            "--redirect-dns",
            "--exclude-outbound-ips",
            "10.0.0.0/8",
        ],
    );
    let out = t.a.tproxyctl_resolv(&args, resolv.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no receipt kept"), "{}", stderr(&out));
    let once = rules_of(&t.a, backend);
    let out = t.a.tproxyctl_resolv(&args, resolv.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        rules_of(&t.a, backend).lines().count(),
        once.lines().count(),
        "a re-install without receipt does not duplicate comment-less rules"
    );
    assert!(!Path::new("none").exists(), "--receipt none writes no file");
    // the DNS, conntrack zone and exclusion rules carry no mark: uninstall
    // without the original flags still finds the DNS and zone rules by
    // shape; the exclusion needs the flag that made it
    let out = t.a.tproxyctl(&[
        "uninstall",
        "transparent-proxy",
        "--receipt",
        "none",
        "--exclude-outbound-ips",
        "10.0.0.0/8",
        "--iptables-executables",
        &exes,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rules_of(&t.a, backend), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn comment_less_reinstall_and_uninstall_without_receipt_nft() {
    require_kernel!();
    comment_less_reinstall_without_receipt(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn comment_less_reinstall_and_uninstall_without_receipt_legacy() {
    require_kernel!();
    comment_less_reinstall_without_receipt(Backend::Legacy);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn legacy_policy_counters_survive_install_and_uninstall() {
    require_kernel!();
    let t = Topology::new("pc");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let mut c = t.a.cmd("iptables-legacy-restore", &["-c", "--noflush"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"*nat\n:OUTPUT ACCEPT [5:201]\n:PREROUTING ACCEPT [7:420]\nCOMMIT\n*raw\n:OUTPUT ACCEPT [3:99]\nCOMMIT\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let policies = |ns: &Netns| -> Vec<String> {
        ns.save(Backend::Legacy, false)
            .lines()
            .filter(|l| l.starts_with(":OUTPUT") || l.starts_with(":PREROUTING ACCEPT [7"))
            .map(str::to_string)
            .collect()
    };
    let before = policies(&t.a);
    assert!(
        before.contains(&":OUTPUT ACCEPT [5:201]".to_string()),
        "{before:?}"
    );
    let exes = Backend::Legacy.executables();
    t.a.tproxyctl_ok(&install(
        &exes,
        &receipt,
        &["--ip-family-mode", "ipv4", "--redirect-all-dns-traffic"],
    ));
    assert_eq!(policies(&t.a), before, "install keeps the policy counters");
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert_eq!(
        policies(&t.a),
        before,
        "uninstall keeps the policy counters"
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_failed_ipv6_uninstall_keeps_the_address_the_ipv6_rules_need() {
    require_kernel!();
    let t = Topology::new("u6");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let fail = dir.path().join("fail");
    let restore6 = script(
        dir.path(),
        "ip6tables-restore",
        &format!(
            "[ -e {} ] && grep -q '^ *va:' /proc/net/dev && ! echo \"$*\" | grep -q -- --version && {{ echo 'ip6tables-restore: line 2 failed' >&2; exit 1; }}\nexec /usr/sbin/ip6tables-nft-restore \"$@\"",
            fail.display()
        ),
    );
    let exes = executables_with(Backend::Nft, &[("ip6tables-restore", &restore6)]);
    t.a.tproxyctl_ok(&install(&exes, &receipt, &[]));
    assert!(has_v6_passthrough(&t.a));
    std::fs::write(&fail, "").unwrap();
    let out = t.a.tproxyctl(&uninstall(&receipt, &["--max-retries", "0"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        has_v6_passthrough(&t.a),
        "::6 stays while IPv6 rules need it"
    );
    assert!(t.a.save(Backend::Nft, true).contains("KUMA_MESH"));
    assert!(
        !t.a.save(Backend::Nft, false).contains("KUMA_MESH"),
        "IPv4 went"
    );
    assert!(Path::new(&receipt).exists(), "kept for another try");
    std::fs::remove_file(&fail).unwrap();
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert!(!has_v6_passthrough(&t.a));
    assert!(!t.a.save(Backend::Nft, true).contains("KUMA_MESH"));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_damaged_receipt_is_set_aside_not_a_dead_end() {
    require_kernel!();
    let t = Topology::new("dmg");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = Backend::Nft.executables();
    let before = t.a.state();
    t.a.tproxyctl_ok(&install(&exes, &receipt, &[]));
    let text = std::fs::read_to_string(&receipt).unwrap();
    std::fs::write(&receipt, &text[..text.len() / 2]).unwrap();
    // status explains and shows what it finds by the marks
    let out = t.a.tproxyctl(&["status", "--receipt", &receipt]);
    assert_eq!(out.status.code(), Some(1));
    let s = stdout(&out);
    assert!(s.contains("cannot be used") && s.contains("found: "), "{s}");
    // install replaces it
    let out = t.a.tproxyctl_ok(&install(&exes, &receipt, &[]));
    assert!(stderr(&out).contains("cannot be used"), "{}", stderr(&out));
    assert_eq!(
        t.a.tproxyctl(&["status", "--receipt", &receipt])
            .status
            .code(),
        Some(0)
    );
    // uninstall finds the rules by their comments and chain names
    std::fs::write(&receipt, "{not json").unwrap();
    let out = t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert!(
        stderr(&out).contains("found by their comments"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        strip_empty(&t.a.state()).replace("::6/128", ""),
        strip_empty(&before),
        "every rule went"
    );
    assert!(!Path::new(&receipt).exists());
}

/// A state with the tables that hold nothing dropped, and `::6` lines.
fn strip_empty(state: &str) -> String {
    let mut out = String::new();
    let mut block: Vec<&str> = Vec::new();
    for l in state.lines() {
        if l.starts_with('*') {
            block = vec![l];
        } else if l == "COMMIT" {
            block.push(l);
            if block
                .iter()
                .any(|b| b.starts_with("-A") || b.contains("-A ") || b.contains(" - "))
            {
                for b in &block {
                    out.push_str(b);
                    out.push('\n');
                }
            }
            block.clear();
        } else if !block.is_empty() {
            block.push(l);
        } else if !l.contains("::6/128") {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_stale_receipt_does_not_decide_the_backend() {
    require_kernel!();
    let t = Topology::new("stl");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let base = [
        "install",
        "transparent-proxy",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--ip-family-mode",
        "ipv4",
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--receipt", &receipt]);
    // installed with nft; then the nft rules are lost (a reboot), and
    // legacy holds rules (another tool's)
    let out = t.a.tproxyctl_ok(&args);
    assert!(stderr(&out).contains("(nft)"), "{}", stderr(&out));
    t.a.run_ok("nft", &["flush", "ruleset"]);
    t.a.run_ok("iptables-legacy", &["-t", "nat", "-N", "SOMEONE_ELSES"]);
    let out = t.a.tproxyctl_ok(&args);
    let err = stderr(&out);
    assert!(err.contains("holds none of its rules"), "{err}");
    assert!(err.contains("(legacy)"), "detected again: {err}");
    // and uninstall with a receipt naming the empty backend finds the rules
    // where they are
    let nft_receipt = dir.path().join("nft.json").display().to_string();
    let mut nft_args: Vec<&str> = base.to_vec();
    let exes = Backend::Nft.executables();
    nft_args.extend(["--receipt", &nft_receipt, "--iptables-executables", &exes]);
    t.a.tproxyctl_ok(&nft_args);
    t.a.run_ok("nft", &["flush", "ruleset"]);
    let out = t.a.tproxyctl_ok(&uninstall(&nft_receipt, &[]));
    assert!(
        stderr(&out).contains("holds none of its rules"),
        "{}",
        stderr(&out)
    );
    assert!(!t.a.save(Backend::Legacy, false).contains("KUMA_MESH"));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn an_unwritable_receipt_is_found_before_any_rule_changes() {
    require_kernel!();
    let t = Topology::new("unw");
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let receipt = not_a_dir.join("receipt.json").display().to_string();
    let before = t.a.state();
    let out =
        t.a.tproxyctl(&install(&Backend::Nft.executables(), &receipt, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nothing on the host was changed") && err.contains("--receipt none"),
        "{err}"
    );
    assert_eq!(t.a.state(), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_full_disk_leaves_no_temporary_receipt_behind() {
    require_kernel!();
    let t = Topology::new("enospc");
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let receipt = mnt.join("receipt.json").display().to_string();
    let before = t.a.state();
    // a tiny file system of its own, in a mount namespace of its own, filled up
    let script = format!(
        "mount -t tmpfs -o size=16k,mode=0700 tmpfs {m} && (head -c 1M /dev/zero > {m}/fill 2>/dev/null; true) && {bin} install transparent-proxy --kuma-dp-user {u} --receipt {r}; echo rc=$?; ls -A {m}",
        m = mnt.display(),
        bin = bin(),
        u = EXEMPT_USER,
        r = receipt
    );
    let out = t.a.run(
        "unshare",
        &["-m", "--propagation", "private", "sh", "-c", &script],
    );
    let text = stdout(&out);
    assert!(text.contains("rc=1"), "{text}{}", stderr(&out));
    assert_eq!(
        text.lines().skip(1).collect::<Vec<_>>(),
        vec!["fill"],
        "only the filler is left: {text}"
    );
    assert!(
        stderr(&out).contains("nothing on the host was changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.a.state(), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn receipts_other_users_could_write_are_refused() {
    require_kernel!();
    let t = Topology::new("sec");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = Backend::Nft.executables();
    t.a.tproxyctl_ok(&install(&exes, &receipt, &["--ip-family-mode", "ipv4"]));
    let installed = t.a.state();
    for (mode, owner) in [(0o666, 0), (0o600, 65534)] {
        std::fs::set_permissions(&receipt, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&receipt, Some(owner), None).unwrap();
        let out = t.a.tproxyctl(&uninstall(&receipt, &[]));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("refusing to use"), "{}", stderr(&out));
        assert_eq!(t.a.state(), installed, "nothing ran");
    }
    std::os::unix::fs::chown(&receipt, Some(0), None).unwrap();
    std::fs::set_permissions(&receipt, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = t.a.tproxyctl(&uninstall(&receipt, &[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    // new state directories are made 0700
    let nested = dir.path().join("a/b/receipt.json").display().to_string();
    t.a.tproxyctl_ok(&install(&exes, &nested, &["--ip-family-mode", "ipv4"]));
    let mode = std::fs::metadata(dir.path().join("a/b"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    t.a.tproxyctl_ok(&uninstall(&nested, &[]));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn direct_xml_without_entries_comes_back_byte_for_byte() {
    require_kernel!();
    let ns = Netns::new("dxb");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let direct = dir.path().join("direct.xml");
    let direct_s = direct.display().to_string();
    let exes = Backend::Nft.executables();
    for original in [
        "",
        "<direct/>",
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct/>\n",
    ] {
        std::fs::write(&direct, original).unwrap();
        let extra = [
            "--store-firewalld",
            "--firewalld-direct-file",
            &direct_s,
            "--ip-family-mode",
            "ipv4",
        ];
        ns.tproxyctl_ok(&install(&exes, &receipt, &extra));
        assert!(
            std::fs::read_to_string(&direct)
                .unwrap()
                .contains("KUMA_MESH")
        );
        ns.tproxyctl_ok(&uninstall(&receipt, &[]));
        assert_eq!(std::fs::read_to_string(&direct).unwrap(), original);
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn dry_run_store_firewalld_fails_on_a_malformed_direct_xml_like_the_install() {
    require_kernel!();
    let ns = Netns::new("dxm");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let direct = dir.path().join("direct.xml");
    std::fs::write(&direct, "<direct><rule ipv=\"ipv4\"").unwrap();
    let direct_s = direct.display().to_string();
    let extra = [
        "--store-firewalld",
        "--firewalld-direct-file",
        &direct_s,
        "--ip-family-mode",
        "ipv4",
    ];
    let exes = Backend::Nft.executables();
    let mut dry = install(&exes, &receipt, &extra);
    dry.push("--dry-run");
    let out = ns.tproxyctl(&dry);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("direct.xml"), "{}", stderr(&out));
    let real = ns.tproxyctl(&install(&exes, &receipt, &extra));
    assert_eq!(real.status.code(), Some(1));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn comment_less_firewalld_entries_without_receipt_are_removed() {
    require_kernel!();
    let ns = Netns::new("dxn");
    let dir = tempfile::tempdir().unwrap();
    let direct = dir.path().join("direct.xml");
    let foreign = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <passthrough ipv=\"ipv4\">-t filter -A OUTPUT -j ACCEPT</passthrough>\n</direct>\n";
    std::fs::write(&direct, foreign).unwrap();
    let direct_s = direct.display().to_string();
    let flags = [
        "--store-firewalld",
        "--firewalld-direct-file",
        &direct_s,
        "--disable-comments",
        "--redirect-all-dns-traffic",
    ];
    let exes = Backend::Nft.executables();
    ns.tproxyctl_ok(&install(&exes, "none", &flags));
    let xml = std::fs::read_to_string(&direct).unwrap();
    assert!(
        xml.contains("--dport 53") && !xml.contains("kuma/mesh"),
        "{xml}"
    );
    let mut args = uninstall("none", &flags[..4]);
    args.extend([
        "--redirect-all-dns-traffic",
        "--iptables-executables",
        &exes,
    ]);
    let out = ns.tproxyctl_ok(&args);
    assert!(
        stderr(&out).contains("[firewalld] removed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&direct).unwrap(), foreign);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn verify_fails_when_the_live_rules_are_not_the_receipts() {
    require_kernel!();
    let t = Topology::new("vlive");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    t.a.tproxyctl_ok(&install(&Backend::Nft.executables(), &receipt, &[]));
    let out = t.a.tproxyctl_ok(&["verify", "--receipt", &receipt]);
    let text = stdout(&out);
    assert!(text.contains("PASS  IPv4 live rules (nft"), "{text}");
    assert!(text.contains("PASS  ::6 is on lo"), "{text}");
    assert!(text.contains("(live rules: OK, behaviour: OK)"), "{text}");
    // the host's rules broken, the receipt's fine: part 1 fails, naming the rule
    t.a.run_ok(
        "iptables-nft",
        &["-t", "nat", "-F", "KUMA_MESH_OUTBOUND_REDIRECT"],
    );
    let out = t.a.tproxyctl(&["verify", "--receipt", &receipt]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("FAIL  IPv4 live rules (nft"), "{text}");
    assert!(
        text.contains("missing rule: nat -A KUMA_MESH_OUTBOUND_REDIRECT -p tcp"),
        "{text}"
    );
    assert!(text.contains("PASS  IPv6 live rules"), "{text}");
    assert!(
        text.contains("(live rules: FAILED, behaviour: OK)"),
        "{text}"
    );
    let json =
        t.a.tproxyctl(&["verify", "--receipt", &receipt, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["liveInPlace"], false);
    assert_eq!(v["behaviourProven"], true);
    // an extra rule of ours is named too
    t.a.run_ok(
        "ip6tables-nft",
        &["-t", "nat", "-A", "KUMA_MESH_OUTBOUND", "-j", "RETURN"],
    );
    let text = stdout(&t.a.tproxyctl(&["verify", "--receipt", &receipt]));
    assert!(
        text.contains("unexpected rule: nat -A KUMA_MESH_OUTBOUND -j RETURN"),
        "{text}"
    );
}

/// Without CAP_SYS_ADMIN (a container with only NET_ADMIN) no throwaway
/// namespace can be made: the kernel's form of the plan then comes from
/// chains of our own on the host, removed again.
fn without_namespaces(backend: Backend) {
    let t = Topology::new(&format!("ns{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = backend.executables();
    let before = rules_of(&t.a, backend);
    let args = install(
        &exes,
        &receipt,
        &[
            "--vnet",
            "docker0:172.17.0.0/16",
            "--exclude-outbound-ips",
            "172.32.16.8/16",
        ],
    );
    let mut full = vec!["--bounding-set", "-sys_admin", bin()];
    full.extend(args.iter());
    let out = t.a.run("setpriv", &full);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let saved = t.a.save(backend, false) + &t.a.save(backend, true);
    assert!(!saved.contains("KUMA_MESH_CANON"), "{saved}");
    assert!(saved.contains("envoy\\'s"), "{saved}");
    let status = t.a.tproxyctl(&["status", "--receipt", &receipt]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert_eq!(rules_of(&t.a, backend), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn without_a_throwaway_namespace_the_host_gives_the_kernels_form_nft() {
    require_kernel!();
    without_namespaces(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn without_a_throwaway_namespace_the_host_gives_the_kernels_form_legacy() {
    require_kernel!();
    without_namespaces(Backend::Legacy);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn nft_base_chains_an_install_created_go_with_it() {
    require_kernel!();
    let t = Topology::new("bch");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    // a nat table with a user chain only: no base chains yet
    t.a.run_ok("iptables-nft", &["-t", "nat", "-N", "DOCKER_OUTPUT"]);
    let ruleset = || t.a.run_ok("nft", &["list", "ruleset"]);
    let before = ruleset();
    assert!(!before.contains("hook output"), "{before}");
    let exes = Backend::Nft.executables();
    t.a.tproxyctl_ok(&install(&exes, &receipt, &["--ip-family-mode", "ipv4"]));
    assert!(ruleset().contains("hook output"));
    t.a.tproxyctl_ok(&uninstall(&receipt, &[]));
    assert_eq!(ruleset(), before, "uninstall");
    // and a failed install takes them away again too
    let once = dir.path().join("failed-once");
    let failing = apply_wrapper(
        dir.path(),
        "iptables-restore",
        "/usr/sbin/iptables-nft-restore",
        &format!(
            "[ -e {o} ] && exec /usr/sbin/iptables-nft-restore \"$@\"\ntouch {o}\n/usr/sbin/iptables-nft-restore \"$@\"; echo 'iptables-restore: line 9 failed' >&2; exit 1",
            o = once.display()
        ),
    );
    let exes = executables_with(Backend::Nft, &[("iptables-restore", &failing)]);
    let out = t.a.tproxyctl(&install(
        &exes,
        &receipt,
        &["--ip-family-mode", "ipv4", "--max-retries", "0"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(ruleset(), before, "rollback");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_dry_run_uninstall_without_namespaces_changes_nothing() {
    require_kernel!();
    let t = Topology::new("dun");
    let exes = Backend::Nft.executables();
    t.a.tproxyctl_ok(&install(
        &exes,
        "none",
        &["--disable-comments", "--ip-family-mode", "ipv4"],
    ));
    let before = t.a.state();
    let out = t.a.run(
        "setpriv",
        &[
            "--bounding-set",
            "-sys_admin",
            bin(),
            "uninstall",
            "transparent-proxy",
            "--receipt",
            "none",
            "--dry-run",
            "--iptables-executables",
            &exes,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not all be identified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.a.state(), before, "no chains of ours made on the host");
}
