//! Kernel tests of install and uninstall, each in fresh network namespaces,
//! on the nft and the legacy backend: the installed rules equal kumactl's,
//! real connections are redirected or bypassed with their original
//! destination preserved, re-installs change nothing, foreign rules keep
//! order and counters, failures roll every family back, dry runs change
//! nothing, and kumactl's own installs are removable.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::require_kernel;

/// kumactl's installed state (reference §2.2, ubuntu-24-04-default golden),
/// with UID 5678 → 1 (our exempt user) and ifPlaceholder → lo.
const KUMACTL_INSTALLED_V4: &str = include_str!("../golden/installed/kumactl-default.v4.save");
const KUMACTL_INSTALLED_V6: &str = include_str!("../golden/installed/kumactl-default.v6.save");

/// Rule lines per chain of one table of a save text.
fn chains_of(save: &str, table: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_table = false;
    for l in rules_only(save).lines() {
        if let Some(t) = l.strip_prefix('*') {
            in_table = t == table;
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(decl) = l.strip_prefix(':') {
            out.entry(decl.split_whitespace().next().unwrap().to_string())
                .or_default();
        } else if let Some(rest) = l.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap().to_string();
            out.entry(chain).or_default().push(l.to_string());
        }
    }
    out
}

pub(crate) fn install_args<'a>(
    backend: &'a str,
    receipt: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "install",
        "transparent-proxy",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--iptables-executables",
        backend,
        "--receipt",
        receipt,
    ];
    v.extend_from_slice(extra);
    v
}

pub(crate) fn uninstall_args<'a>(receipt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["uninstall", "transparent-proxy", "--receipt", receipt];
    v.extend_from_slice(extra);
    v
}

/// State for "equal to before" checks: rules with counters, chains without
/// (their policy counters count every packet that passes).
fn comparable(ns: &Netns, backend: Backend) -> String {
    let mut s = String::new();
    for v6 in [false, true] {
        let save = ns.save(backend, v6);
        for l in save.lines() {
            if l.starts_with(':') {
                let mut p = l.split_whitespace();
                s.push_str(&format!("{} {}\n", p.next().unwrap(), p.next().unwrap()));
            } else {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

fn installed_equals_kumactl(backend: Backend) {
    let t = Topology::new(&format!("eq{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = backend.executables();
    t.a.tproxyctl_ok(&install_args(&exes, &receipt, &[]));
    for (v6, golden) in [(false, KUMACTL_INSTALLED_V4), (true, KUMACTL_INSTALLED_V6)] {
        let got = chains_of(&t.a.save(backend, v6), "nat");
        let want = chains_of(golden, "nat");
        assert_eq!(got, want, "{} v6={v6}", backend.name());
    }
    // ::6 was added for the IPv6 inbound passthrough
    assert!(
        t.a.run_ok("ip", &["-6", "addr", "show", "dev", "lo"])
            .contains("::6/128")
    );
    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    assert!(
        !t.a.run_ok("ip", &["-6", "addr", "show", "dev", "lo"])
            .contains("::6/128")
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn installed_rules_equal_kumactl_nft() {
    require_kernel!();
    installed_equals_kumactl(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn installed_rules_equal_kumactl_legacy() {
    require_kernel!();
    installed_equals_kumactl(Backend::Legacy);
}

fn traffic(backend: Backend) {
    let t = Topology::new(&format!("tr{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let resolv = temp_file("nameserver 10.77.0.2\nnameserver fd00:77::2\n");
    let resolv_path = resolv.path().display().to_string();
    let exes = backend.executables();
    let before = comparable(&t.a, backend);

    // listeners in the host under test
    let out4 = tcp_recorder(&t.a, v4([0, 0, 0, 0].into(), 15001), "outbound");
    let out6 = tcp_recorder(&t.a, v6(std::net::Ipv6Addr::UNSPECIFIED, 15001), "outbound");
    let in4 = tcp_recorder(&t.a, v4([0, 0, 0, 0].into(), 15006), "inbound");
    let in6 = tcp_recorder(&t.a, v6(std::net::Ipv6Addr::UNSPECIFIED, 15006), "inbound");
    let _dns4 = udp_responder(
        &t.a,
        EXEMPT_UID,
        v4([127, 0, 0, 1].into(), 15053),
        "dns-proxy",
    );
    let _dns6 = udp_responder(
        &t.a,
        EXEMPT_UID,
        v6(std::net::Ipv6Addr::LOCALHOST, 15053),
        "dns-proxy",
    );
    // the real destinations, in the peer
    let real4 = tcp_recorder(&t.b, v4([0, 0, 0, 0].into(), 80), "real");
    let _real4x = tcp_recorder(&t.b, v4([0, 0, 0, 0].into(), 8080), "real");
    let real6 = tcp_recorder(&t.b, v6(std::net::Ipv6Addr::UNSPECIFIED, 80), "real");
    udp_echo(&t.b, v4(B4, 53), "real-dns");
    udp_echo(&t.b, v6(B6, 53), "real-dns");

    let out = t.a.tproxyctl_resolv(
        &install_args(
            &exes,
            &receipt,
            &["--exclude-outbound-ports", "8080", "--redirect-dns"],
        ),
        &resolv_path,
    );
    assert!(out.status.success(), "install failed: {}", stderr(&out));

    // outbound TCP from an application is redirected with its original destination
    assert_eq!(
        t.a.tcp_client(APP_UID, v4(REMOTE4, 80)),
        "outbound 192.0.2.1:80"
    );
    assert_eq!(next(&out4).unwrap().original, Some(v4(REMOTE4, 80)));
    assert_eq!(
        t.a.tcp_client(APP_UID, v6(REMOTE6, 80)),
        "outbound [2001:db8::1]:80"
    );
    assert_eq!(next(&out6).unwrap().original, Some(v6(REMOTE6, 80)));
    // the exempt UID reaches the real destination
    assert_eq!(t.a.tcp_client(EXEMPT_UID, v4(REMOTE4, 80)), "real none");
    assert_eq!(next(&real4).unwrap().peer.ip(), std::net::IpAddr::V4(A4));
    assert_eq!(t.a.tcp_client(EXEMPT_UID, v6(REMOTE6, 80)), "real none");
    assert!(next(&real6).is_some());
    // an excluded port bypasses
    assert_eq!(t.a.tcp_client(APP_UID, v4(REMOTE4, 8080)), "real none");
    // inbound over the veth reaches 15006 with the address that was dialled
    assert_eq!(t.b.tcp_client(0, v4(A4, 9000)), "inbound 10.77.0.1:9000");
    assert_eq!(next(&in4).unwrap().original, Some(v4(A4, 9000)));
    assert_eq!(t.b.tcp_client(0, v6(A6, 9000)), "inbound [fd00:77::1]:9000");
    assert_eq!(next(&in6).unwrap().original, Some(v6(A6, 9000)));
    // DNS to the resolv.conf server reaches the DNS port; kuma-dp's own does not
    assert_eq!(t.a.udp_client(APP_UID, v4(B4, 53)), "dns-proxy");
    assert_eq!(t.a.udp_client(EXEMPT_UID, v4(B4, 53)), "real-dns");
    assert_eq!(t.a.udp_client(APP_UID, v6(B6, 53)), "dns-proxy");
    assert_eq!(t.a.udp_client(EXEMPT_UID, v6(B6, 53)), "real-dns");
    // nothing went where it should not have
    assert!(out4.try_recv().is_err() && in4.try_recv().is_err());

    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    // after uninstall, the application goes to the real destination again
    assert_eq!(t.a.tcp_client(APP_UID, v4(REMOTE4, 80)), "real none");
    let after = comparable(&t.a, backend);
    if backend == Backend::Nft {
        assert_eq!(after, before, "nft state after uninstall equals before");
    } else {
        // legacy tables, once used, stay (empty) in the kernel
        assert_eq!(
            strip_empty_tables(&after),
            strip_empty_tables(&before),
            "legacy state after uninstall equals before, empty tables aside"
        );
    }
}

/// Drops tables that have no rules and no custom chains.
fn strip_empty_tables(save: &str) -> String {
    let mut out = String::new();
    let mut block: Vec<&str> = Vec::new();
    for l in save.lines() {
        block.push(l);
        if l == "COMMIT" {
            let content = block.iter().any(|b| {
                b.starts_with("-A")
                    || b.starts_with('[')
                    || (b.starts_with(':') && b.contains(" - "))
            });
            if content {
                for b in &block {
                    out.push_str(b);
                    out.push('\n');
                }
            }
            block.clear();
        }
    }
    out
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn traffic_is_redirected_and_bypassed_nft() {
    require_kernel!();
    traffic(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn traffic_is_redirected_and_bypassed_legacy() {
    require_kernel!();
    traffic(Backend::Legacy);
}

// A DNAT-style rule makes the kernel track connections (as on any host with
// Docker), so the nat rules count packets before the install too.
const FOREIGN_V4: &str = "*nat
:CUSTOM_CHAIN - [0:0]
-A CUSTOM_CHAIN -p tcp --dport 9999 -j RETURN
-A CUSTOM_CHAIN -p tcp --dport 7777 -j REDIRECT --to-ports 7778
-A PREROUTING -p tcp --dport 9998 -j CUSTOM_CHAIN
-A OUTPUT -p tcp -d 192.0.2.1 --dport 80 -j CUSTOM_CHAIN
-A OUTPUT -p udp --dport 9997 -j RETURN
COMMIT
*raw
-A OUTPUT -p tcp -d 192.0.2.1 --dport 80 -j ACCEPT
-A PREROUTING -p udp --dport 9996 -j ACCEPT
COMMIT
*mangle
-A PREROUTING -p udp --dport 9995 -j ACCEPT
COMMIT
";

const FOREIGN_V6: &str = "*nat
:CUSTOM_CHAIN - [0:0]
-A CUSTOM_CHAIN -p tcp --dport 9999 -j RETURN
-A OUTPUT -p tcp -d 2001:db8::1 --dport 80 -j CUSTOM_CHAIN
-A PREROUTING -p tcp --dport 9998 -j CUSTOM_CHAIN
COMMIT
*raw
-A OUTPUT -p tcp -d 2001:db8::1 --dport 80 -j ACCEPT
COMMIT
*mangle
-A PREROUTING -p udp --dport 9995 -j ACCEPT
COMMIT
";

fn foreign_rules_kept(backend: Backend) {
    let t = Topology::new(&format!("fr{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = backend.executables();
    let resolv = temp_file("nameserver 10.77.0.2\nnameserver fd00:77::2\n");
    for (v6, rules) in [(false, FOREIGN_V4), (true, FOREIGN_V6)] {
        let mut c = t.a.cmd(&backend.restore(v6), &["--noflush"]);
        c.stdin(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    // give the foreign rules non-zero counters
    let _real = tcp_recorder(&t.b, v4([0, 0, 0, 0].into(), 80), "real");
    assert_eq!(t.a.tcp_client(0, v4(REMOTE4, 80)), "real none");
    let before = comparable(&t.a, backend);
    assert!(
        before
            .contains("[1:60] -A OUTPUT -d 192.0.2.1/32 -p tcp -m tcp --dport 80 -j CUSTOM_CHAIN"),
        "the foreign nat rule counted the connection: {before}"
    );

    let install = |extra: &[&str]| {
        let out =
            t.a.tproxyctl_resolv(&install_args(&exes, &receipt, extra), resolv.path());
        assert!(out.status.success(), "install failed: {}", stderr(&out));
        out
    };
    install(&[
        "--redirect-dns",
        "--drop-invalid-packets",
        "--iptables-logs",
    ]);
    let mid = comparable(&t.a, backend);
    // inserted rules went on top, appended ones after the foreign ones
    let output = chains_of(&t.a.save(backend, false), "nat")["OUTPUT"].clone();
    let pos = |needle: &str| {
        output
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {output:#?}"))
    };
    assert_eq!(pos("-j LOG"), 0, "{output:#?}");
    assert!(pos("return early for DNS traffic") < pos("--dport 80 -j CUSTOM_CHAIN"));
    assert!(pos("redirect DNS requests to 10.77.0.2") < pos("--dport 80 -j CUSTOM_CHAIN"));
    assert!(
        pos("--dport 9997 -j RETURN") < pos("allow applications to perform DNS queries over TCP")
    );
    assert_eq!(
        pos("-j KUMA_MESH_OUTBOUND"),
        output.len() - 1,
        "{output:#?}"
    );
    // a second identical install changes nothing and says so
    let again = install(&[
        "--redirect-dns",
        "--drop-invalid-packets",
        "--iptables-logs",
    ]);
    assert!(
        stderr(&again).contains("already installed"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        comparable(&t.a, backend),
        mid,
        "re-install changed the rules"
    );
    // a different configuration replaces ours and only ours
    install(&["--exclude-outbound-ports", "22"]);
    let replaced = comparable(&t.a, backend);
    assert!(replaced.contains("exclude outbound traffic from port 22"));
    assert!(
        !replaced.contains("--ctstate INVALID"),
        "old rules are gone: {replaced}"
    );
    for l in before
        .lines()
        .filter(|l| l.contains("99") || l.contains("CUSTOM_CHAIN"))
    {
        assert!(
            replaced.contains(l),
            "foreign rule '{l}' changed:\n{replaced}"
        );
    }

    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    assert_eq!(
        comparable(&t.a, backend),
        before,
        "state after uninstall equals before"
    );
    assert!(
        !std::path::Path::new(&receipt).exists(),
        "the receipt is removed"
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn foreign_rules_keep_order_and_counters_nft() {
    require_kernel!();
    foreign_rules_kept(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn foreign_rules_keep_order_and_counters_legacy() {
    require_kernel!();
    foreign_rules_kept(Backend::Legacy);
}

/// A restore wrapper: passes `--test` and `--version` through to the real
/// binary, and everything run in a
/// namespace without the test's veth (the throwaway namespace that shows the
/// kernel's form of the plan), and fails, or tampers with the input, on the
/// real apply.
fn wrapper(dir: &tempfile::TempDir, name: &str, real: &str, on_apply: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --test|--version) exec {real} \"$@\";; esac; done\ngrep -q '^ *va:' /proc/net/dev || exec {real} \"$@\"\n{on_apply}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn failing_ipv6_rolls_back(backend: Backend) {
    let t = Topology::new(&format!("rb{}", backend.name()));
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let real6 = format!("/usr/sbin/{}", backend.restore(true));
    let failing = wrapper(
        &dir,
        "ip6tables-restore",
        &real6,
        "echo 'ip6tables-restore: line 2 failed' >&2; exit 1",
    );
    let m = backend.name();
    let exes = format!(
        "iptables:/usr/sbin/iptables-{m},iptables-save:/usr/sbin/iptables-{m}-save,iptables-restore:/usr/sbin/iptables-{m}-restore,ip6tables:/usr/sbin/ip6tables-{m},ip6tables-save:/usr/sbin/ip6tables-{m}-save,ip6tables-restore:{failing}"
    );
    let before = t.a.state();
    let out = t.a.tproxyctl(&install_args(
        &exes,
        &receipt,
        &["--max-retries", "1", "--sleep-between-retries", "10ms"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("every change it made was undone"), "{err}");
    assert!(
        err.contains("[ip6tables] [2/2] restoring failed"),
        "retried: {err}"
    );
    let after = t.a.state();
    if backend == Backend::Nft {
        assert_eq!(after, before, "IPv4 was rolled back and ::6 removed");
    } else {
        assert_eq!(strip_empty_tables(&after), strip_empty_tables(&before));
    }
    assert!(
        !std::path::Path::new(&receipt).exists(),
        "no receipt for a failed install"
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn failing_ipv6_apply_rolls_ipv4_back_nft() {
    require_kernel!();
    failing_ipv6_rolls_back(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn failing_ipv6_apply_rolls_ipv4_back_legacy() {
    require_kernel!();
    failing_ipv6_rolls_back(Backend::Legacy);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn read_back_mismatch_rolls_back() {
    require_kernel!();
    let t = Topology::new("rbm");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    // drops one planned rule on its way to the kernel
    let tamper = wrapper(
        &dir,
        "iptables-restore",
        "/usr/sbin/iptables-nft-restore",
        "grep -v 'redirect TCP traffic to envoy (port 15001)' | exec /usr/sbin/iptables-nft-restore \"$@\"",
    );
    let exes = format!(
        "iptables:/usr/sbin/iptables-nft,iptables-save:/usr/sbin/iptables-nft-save,iptables-restore:{tamper}"
    );
    let before = t.a.state();
    let out = t.a.tproxyctl(&install_args(
        &exes,
        &receipt,
        &["--ip-family-mode", "ipv4"],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("read back") && err.contains("KUMA_MESH_OUTBOUND_REDIRECT"),
        "{err}"
    );
    assert_eq!(t.a.state(), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn rejected_rules_stop_the_install_before_anything_changes() {
    require_kernel!();
    let t = Topology::new("rej");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    // a restore that rejects line 3, as on a kernel without a target (the
    // check is --test, or loading the plan into a throwaway namespace)
    let path = dir.path().join("iptables-restore");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$*\" in *--version*) exec /usr/sbin/iptables-nft-restore --version;; esac\necho 'iptables-restore: line 3 failed' >&2; exit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exes = format!(
        "iptables:/usr/sbin/iptables-nft,iptables-save:/usr/sbin/iptables-nft-save,iptables-restore:{}",
        path.display()
    );
    let before = t.a.state();
    let out = t.a.tproxyctl(&install_args(
        &exes,
        &receipt,
        &["--ip-family-mode", "ipv4"],
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 3: -N KUMA_MESH_OUTBOUND"), "{err}");
    assert!(err.contains("nothing on the host was changed"), "{err}");
    assert_eq!(t.a.state(), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn dry_run_changes_nothing() {
    require_kernel!();
    let t = Topology::new("dry");
    let resolv = temp_file("nameserver 10.77.0.2\nnameserver fd00:77::2\n");
    // legacy has no tables yet: probing must not instantiate them
    assert_eq!(t.a.save(Backend::Legacy, false), "");
    let before = t.a.state();
    let out = t.a.tproxyctl_resolv(
        &[
            "install",
            "transparent-proxy",
            "--dry-run",
            "--kuma-dp-user",
            EXEMPT_USER,
            "--redirect-dns",
            "--drop-invalid-packets",
            "--exclude-outbound-ports-for-uids",
            "udp:53:0",
        ],
        resolv.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("### IPv4 ###\n\n* raw\n"), "{text}");
    assert!(text.contains("\n### IPv6 ###\n"), "dual-stack plan: {text}");
    assert_eq!(t.a.state(), before, "dry run changed the host");
    let out =
        t.a.tproxyctl(&["uninstall", "transparent-proxy", "--dry-run"]);
    assert!(out.status.success());
    assert_eq!(t.a.state(), before, "uninstall dry run changed the host");
}

/// Applies kumactl's own output (our dry-run text is kumactl's format) and
/// removes it with uninstall, without any receipt.
fn kumactl_style_install_is_removable(extra: &[&str]) {
    let t = Topology::new("kum");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let resolv = temp_file("nameserver 10.77.0.2\n");
    let before = t.a.state();
    let mut args = vec![
        "install",
        "transparent-proxy",
        "--dry-run",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--redirect-dns",
    ];
    args.extend_from_slice(extra);
    let out = t.a.tproxyctl_resolv(&args, resolv.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let (v4, v6) = text
        .trim_start_matches("### IPv4 ###\n\n")
        .split_once("\n\n### IPv6 ###\n\n")
        .expect("both families");
    for (is_v6, rules) in [(false, v4), (true, v6)] {
        let mut c = t.a.cmd(
            if is_v6 {
                "ip6tables-nft-restore"
            } else {
                "iptables-nft-restore"
            },
            &["--noflush"],
        );
        c.stdin(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{rules}\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    assert!(t.a.save(Backend::Nft, false).contains("KUMA_MESH_OUTBOUND"));
    let out =
        t.a.cmd(
            bin(),
            &uninstall_args(&receipt, &["--kuma-dp-user", EXEMPT_USER]),
        )
        .env(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH",
            resolv.path(),
        )
        .env("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_ENABLED", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = t.a.state();
    // iptables-nft leaves the tables it created; kumactl's install created them
    assert_eq!(strip_empty_tables(&after), strip_empty_tables(&before));
    assert!(!after.contains("udp"), "DNS rules are gone too: {after}");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn kumactl_style_install_without_receipt_is_removed() {
    require_kernel!();
    kumactl_style_install_is_removable(&[]);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn comment_less_install_without_receipt_is_removed() {
    require_kernel!();
    kumactl_style_install_is_removable(&["--disable-comments"]);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn comment_less_install_with_receipt_round_trips() {
    require_kernel!();
    let t = Topology::new("nocom");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = Backend::Legacy.executables();
    let before = t.a.state();
    t.a.tproxyctl_ok(&install_args(
        &exes,
        &receipt,
        &[
            "--disable-comments",
            "--exclude-outbound-ports-for-uids",
            "tcp:22,80:1000",
        ],
    ));
    let mid = t.a.save(Backend::Legacy, false);
    assert!(!mid.contains("kuma/mesh"), "{mid}");
    assert!(mid.contains("--uid-owner 1000"), "{mid}");
    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    assert_eq!(
        strip_empty_tables(&t.a.state()),
        strip_empty_tables(&before)
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn auto_detection_follows_existing_legacy_rules() {
    require_kernel!();
    let t = Topology::new("auto");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    t.a.run_ok("iptables-legacy", &["-t", "nat", "-N", "SOMEONE_ELSES"]);
    let out = t.a.tproxyctl_ok(&[
        "install",
        "transparent-proxy",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--ip-family-mode",
        "ipv4",
        "--receipt",
        &receipt,
    ]);
    assert!(stderr(&out).contains("(legacy)"), "{}", stderr(&out));
    assert!(
        t.a.save(Backend::Legacy, false)
            .contains("KUMA_MESH_OUTBOUND")
    );
    assert!(!t.a.save(Backend::Nft, false).contains("KUMA_MESH"));
    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    assert!(!t.a.save(Backend::Legacy, false).contains("KUMA_MESH"));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn nothing_to_uninstall_is_success() {
    require_kernel!();
    let ns = Netns::new("none");
    let dir = tempfile::tempdir().unwrap();
    let out = ns.tproxyctl_ok(&uninstall_args(&receipt_path(&dir), &[]));
    assert!(
        stderr(&out).contains("No cleanup necessary"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn status_reports_rules_drift_and_resolv_conf_changes() {
    require_kernel!();
    let ns = Netns::new("status");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.0.0.2\n").unwrap();
    let out = ns.tproxyctl(&["status", "--receipt", &receipt]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("not installed"));
    let out = ns.tproxyctl(&["status", "--receipt", &receipt, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json = crate::json_contract::document(crate::json_contract::Doc::Status, &out.stdout);
    assert_eq!(json["installed"], false);
    assert_eq!(json["mode"], serde_json::Value::Null);
    let out = ns.tproxyctl_resolv(
        &install_args(&Backend::Nft.executables(), &receipt, &["--redirect-dns"]),
        &resolv,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ns.tproxyctl_ok(&["status", "--receipt", &receipt, "--output", "json"]);
    let json = crate::json_contract::document(crate::json_contract::Doc::Status, &out.stdout);
    assert_eq!(json["installed"], true);
    assert_eq!(json["mode"], "iptables");
    assert_eq!(json["families"][0]["inPlace"], true);
    assert_eq!(json["families"][0]["backend"], "nft");
    assert_eq!(
        json["dns"]["serversAtInstall"],
        serde_json::json!(["10.0.0.2"])
    );
    assert_eq!(json["families"][0]["rules"].as_array().unwrap().len(), 18);
    // drift: a rule deleted by hand; resolv.conf changed
    ns.run_ok(
        "iptables-nft",
        &["-t", "nat", "-D", "KUMA_MESH_OUTBOUND_REDIRECT", "1"],
    );
    std::fs::write(&resolv, "nameserver 10.0.0.3\n").unwrap();
    let out = ns.tproxyctl(&["status", "--receipt", &receipt]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("DRIFTED") && text.contains("MISSING"),
        "{text}"
    );
    assert!(text.contains("changed since the install"), "{text}");
    // a second install puts the rule back
    let out = ns.tproxyctl_resolv(
        &install_args(&Backend::Nft.executables(), &receipt, &["--redirect-dns"]),
        &resolv,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("already installed"));
    ns.tproxyctl_ok(&["status", "--receipt", &receipt]);
    // a Dataplane whose redirect ports disagree with the installed rules
    let dp = dir.path().join("dp.yaml");
    std::fs::write(
        &dp,
        "type: Dataplane\nmesh: default\nname: demo\nnetworking:\n  address: 10.0.0.5\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: demo\n  transparentProxying:\n    redirectPortInbound: 16006\n    redirectPortOutbound: 15001\n",
    )
    .unwrap();
    let out = ns.tproxyctl(&[
        "status",
        "--receipt",
        &receipt,
        "--dataplane",
        &dp.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("redirectPortInbound"),
        "{}",
        stdout(&out)
    );
    ns.tproxyctl_ok(&uninstall_args(&receipt, &[]));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn validator_passes_for_the_exempt_user_only() {
    require_kernel!();
    let t = Topology::new("val");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    t.a.tproxyctl_ok(&install_args(
        &Backend::Nft.executables(),
        &receipt,
        &["--redirect-inbound-port", "16006"],
    ));
    let as_user = |uid: u32, extra: &[&str]| {
        let u = uid.to_string();
        let mut args = vec![
            format!("--reuid={u}"),
            format!("--regid={u}"),
            "--clear-groups".to_string(),
            bin().to_string(),
            "install".to_string(),
            "transparent-proxy-validator".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        t.a.run("setpriv", &refs)
    };
    let cfg = temp_file("redirect:\n  inbound:\n    port: 16006\n");
    std::fs::set_permissions(cfg.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg_path = cfg.path().display().to_string();
    // the config file overrides the flag, as in kumactl
    let out = as_user(
        EXEMPT_UID,
        &[
            "--validation-server-port",
            "1",
            "--transparent-proxy-config",
            &cfg_path,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("[IPv4] validation succeeded") && err.contains("[IPv6] validation succeeded"),
        "{err}"
    );
    // any other user's connection to 127.0.0.6 is not redirected
    let out = as_user(
        APP_UID,
        &[
            "--validation-server-port",
            "16006",
            "--ip-family-mode",
            "ipv4",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("validation failed: client failed to connect"),
        "{}",
        stderr(&out)
    );
    let out = as_user(EXEMPT_UID, &["--validation-server-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn store_firewalld_writes_and_uninstall_removes_only_ours() {
    require_kernel!();
    let ns = Netns::new("fwd");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let direct = dir.path().join("direct.xml");
    let foreign = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <rule ipv=\"ipv4\" table=\"filter\" chain=\"INPUT\" priority=\"0\">-p tcp --dport 2222 -j ACCEPT</rule>\n  <passthrough ipv=\"ipv4\">-t filter -A OUTPUT -j ACCEPT</passthrough>\n</direct>\n";
    std::fs::write(&direct, foreign).unwrap();
    let direct_s = direct.display().to_string();
    let extra = [
        "--store-firewalld",
        "--firewalld-direct-file",
        &direct_s,
        "--ip-family-mode",
        "ipv4",
    ];
    // dry run: the XML is printed after the rules, the file is untouched
    let out = ns.tproxyctl_ok(&[
        "install",
        "transparent-proxy",
        "--dry-run",
        "--kuma-dp-user",
        EXEMPT_USER,
        "--store-firewalld",
        "--firewalld-direct-file",
        &direct_s,
        "--ip-family-mode",
        "ipv4",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("### firewalld: ") && text.contains("chain=\"KUMA_MESH_OUTBOUND\""),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&direct).unwrap(), foreign);

    ns.tproxyctl_ok(&install_args(&Backend::Nft.executables(), &receipt, &extra));
    let xml = std::fs::read_to_string(&direct).unwrap();
    assert!(
        xml.contains("--dport 2222") && xml.contains("<passthrough"),
        "foreign entries kept: {xml}"
    );
    assert_eq!(xml.matches("<chain ").count(), 4, "{xml}");
    assert_eq!(
        xml.matches("kuma/mesh/transparent/proxy/").count(),
        11,
        "{xml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(json["firewalld"]["entries"].as_array().unwrap().len(), 15);
    // a second identical install changes nothing, the file included
    let out = ns.tproxyctl_ok(&install_args(&Backend::Nft.executables(), &receipt, &extra));
    assert!(stderr(&out).contains("already installed"));
    assert_eq!(std::fs::read_to_string(&direct).unwrap(), xml);
    ns.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    assert_eq!(
        std::fs::read_to_string(&direct).unwrap(),
        foreign,
        "only our entries are removed"
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn verify_proves_the_installed_rules_and_catches_broken_ones() {
    require_kernel!();
    let t = Topology::new("ver");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let resolv = temp_file("nameserver 10.0.0.2\nnameserver fd00::53\n");
    let out = t.a.tproxyctl_resolv(
        &install_args(
            &Backend::Legacy.executables(),
            &receipt,
            &[
                "--redirect-dns",
                "--exclude-outbound-ports",
                "8443",
                "--exclude-inbound-ports",
                "22",
                "--exclude-outbound-ips",
                "10.10.0.0/16",
                "--exclude-inbound-ips",
                "10.20.0.5",
                "--exclude-outbound-ports-for-uids",
                "tcp:5432:2000",
            ],
        ),
        resolv.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out =
        t.a.tproxyctl_ok(&["verify", "--receipt", &receipt, "--output", "json"]);
    let json = crate::json_contract::document(crate::json_contract::Doc::Verify, &out.stdout);
    assert_eq!(json["failed"], 0, "{json:#}");
    assert_eq!(json["mode"], "iptables");
    assert_eq!(json["liveInPlace"], true);
    assert_eq!(json["behaviourProven"], true);
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.len() >= 20, "{json:#}");
    for needle in [
        "outbound TCP",
        "inbound TCP",
        "UDP DNS",
        "TCP DNS",
        "kuma-dp user (UID 1)",
        "excluded outbound port 8443",
        "excluded inbound port 22",
        "owner exclusion",
        "excluded source",
        "hairpin",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["check"].as_str().unwrap().contains(needle)),
            "no check for {needle}"
        );
    }
    // the verification is of the rules themselves: break them and it fails
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    let applied = rec["families"][0]["applied"].as_str().unwrap().to_string();
    let broken: String = applied
        .lines()
        .filter(|l| !l.contains("redirect TCP traffic to envoy (port 15001)"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(broken, applied);
    rec["families"][0]["applied"] = serde_json::Value::String(broken);
    let broken_receipt = dir.path().join("broken.json");
    std::fs::write(&broken_receipt, serde_json::to_string(&rec).unwrap()).unwrap();
    let out =
        t.a.tproxyctl(&["verify", "--receipt", &broken_receipt.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("FAIL  IPv4 outbound TCP"), "{text}");
    assert!(text.contains("PASS  IPv6 outbound TCP"), "{text}");
    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn switching_to_ipv4_only_removes_our_ipv6_rules_and_address() {
    require_kernel!();
    let t = Topology::new("fam");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let exes = Backend::Nft.executables();
    let before = t.a.state();
    t.a.tproxyctl_ok(&install_args(&exes, &receipt, &[]));
    assert!(t.a.save(Backend::Nft, true).contains("KUMA_MESH_OUTBOUND"));
    assert!(
        t.a.run_ok("ip", &["-6", "addr", "show", "dev", "lo"])
            .contains("::6/128")
    );
    t.a.tproxyctl_ok(&install_args(
        &exes,
        &receipt,
        &["--ip-family-mode", "ipv4"],
    ));
    assert!(
        !t.a.save(Backend::Nft, true).contains("KUMA_MESH"),
        "IPv6 rules are gone"
    );
    assert!(t.a.save(Backend::Nft, false).contains("KUMA_MESH_OUTBOUND"));
    assert!(
        !t.a.run_ok("ip", &["-6", "addr", "show", "dev", "lo"])
            .contains("::6/128")
    );
    t.a.tproxyctl_ok(&uninstall_args(&receipt, &[]));
    assert_eq!(t.a.state(), before);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn verify_checks_include_only_ports_both_ways() {
    require_kernel!();
    let ns = Netns::new("verinc");
    let dir = tempfile::tempdir().unwrap();
    let receipt = receipt_path(&dir);
    let cfg = temp_file(
        "redirect:\n  inbound:\n    includePorts: [80]\n  outbound:\n    includePorts: [443]\n",
    );
    let cfg_path = cfg.path().display().to_string();
    ns.tproxyctl_ok(&install_args(
        &Backend::Nft.executables(),
        &receipt,
        &["--config", &cfg_path, "--ip-family-mode", "ipv4"],
    ));
    let out = ns.tproxyctl_ok(&["verify", "--receipt", &receipt]);
    let text = stdout(&out);
    assert!(
        text.contains("PASS  IPv4 outbound TCP to 192.0.2.10:443 is redirected"),
        "{text}"
    );
    assert!(
        text.contains("PASS  IPv4 outbound TCP to port 80, not among the included ports, bypasses"),
        "{text}"
    );
    assert!(
        text.contains(
            "PASS  IPv4 inbound TCP to port 8080, not among the included ports, bypasses"
        ),
        "{text}"
    );
    ns.tproxyctl_ok(&uninstall_args(&receipt, &[]));
}
