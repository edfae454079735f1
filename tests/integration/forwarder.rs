//! `tproxyctl forwarder` end to end, in fresh network namespaces with the
//! rules install writes: application traffic (IPv4, IPv6) reaches its real
//! destination and is counted, inbound traffic arrives from 127.0.0.6 / ::6,
//! limits, timeouts, half-close, bulk integrity, the loop guard, passthrough
//! policies, mesh destinations from Dataplane files (service clusters,
//! reachable services and backends, local inbounds, `.mesh` names), DNS and
//! SIGTERM draining. Kernel tests skip (visibly) without
//! root and iptables, and fail instead when TPROXYCTL_REQUIRE_KERNEL_TESTS=1.
//! Nothing asserts on timing or throughput.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use crate::common::{A4, A6, B4, B6, EXEMPT_USER, Netns, Topology};
use crate::fwd_kernel::*;
use crate::fwd_mesh::*;
use crate::require_kernel;
use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

const OUT4: &str = "outbound:passthrough:ipv4";
const OUT6: &str = "outbound:passthrough:ipv6";
const IN4: &str = "inbound:passthrough:ipv4";
const IN6: &str = "inbound:passthrough:ipv6";

/// The topology with rules for the exempt user
/// (`install transparent-proxy --kuma-dp-user daemon`), and the directory
/// holding the install's receipt. The forwarders below get no receipt unless
/// a test passes this one.
fn setup(tag: &str) -> (Topology, tempfile::TempDir) {
    let p = Topology::new(tag);
    let dir = tempfile::tempdir().unwrap();
    install_rules(&p.a, &receipt(&dir), &["--kuma-dp-user", EXEMPT_USER]);
    (p, dir)
}

fn receipt(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("receipt.json")
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn outbound_v4_and_v6_reach_the_destination_and_are_counted() {
    require_kernel!();
    let (p, _installed) = setup("out");
    echo_server(&p.b, any(7000));
    let dir = exempt_user_dir();
    let log = dir.path().join("access.log");
    // With the install's own receipt: it exempts the user the forwarder runs as.
    let receipt = receipt(&_installed);
    let f = Forwarder::start(
        &p.a,
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--receipt",
            receipt.to_str().unwrap(),
        ],
    );
    for (ip, cluster) in [(IpAddr::V4(B4), OUT4), (IpAddr::V6(B6), OUT6)] {
        let mut c = connect(&p.a, sock(ip, 7000)).unwrap();
        assert_eq!(echo_roundtrip(&mut c, b"hello mesh"), b"hello mesh");
        drop(c);
        f.wait_stat("cx_active", cluster, |v| v == 0);
        assert_eq!(f.stat("cx_total", cluster), 1, "{cluster}");
        assert_eq!(f.stat("bytes_sent_total", cluster), 10, "{cluster}");
        assert_eq!(f.stat("bytes_received_total", cluster), 10, "{cluster}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(&format!("dst={B4}:7000 cluster={OUT4} sent=10 received=10")),
        "{text}"
    );
    assert!(
        lines[1].contains(&format!(
            "dst=[{B6}]:7000 cluster={OUT6} sent=10 received=10"
        )),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.ends_with("end=closed")), "{text}");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn inbound_traffic_reaches_the_application_from_127_0_0_6_and_6() {
    require_kernel!();
    let (p, _installed) = setup("in");
    let peers = peer_recorder(&p.a, any(8080));
    let f = Forwarder::start(&p.a, &[]);
    for (ip, want, cluster) in [
        (IpAddr::V4(A4), "127.0.0.6", IN4),
        (IpAddr::V6(A6), "::6", IN6),
    ] {
        let mut c = connect(&p.b, sock(ip, 8080)).unwrap();
        let mut line = String::new();
        c.read_to_string(&mut line).unwrap();
        drop(c);
        assert_eq!(line, "hello from the application\n");
        let peer = peers.recv_timeout(Duration::from_secs(5)).unwrap();
        let seen = match peer.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(std::net::IpAddr::V4)
                .unwrap_or(peer.ip()),
            v4 => v4,
        };
        assert_eq!(seen.to_string(), want, "application saw {peer}");
        f.wait_stat("cx_active", cluster, |v| v == 0);
        assert_eq!(f.stat("cx_total", cluster), 1);
        assert_eq!(f.stat("bytes_received_total", cluster), 27);
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn connection_over_the_limit_is_refused_and_counted() {
    require_kernel!();
    raise_nofile();
    let (p, _installed) = setup("ovf");
    let held = hold_server(&p.b, any(7100));
    let f = Forwarder::start(&p.a, &[]);
    let conns: Vec<TcpStream> = in_ns(&p.a, || {
        (0..1024)
            .map(|i| {
                TcpStream::connect(sock(B4, 7100)).unwrap_or_else(|e| panic!("connection {i}: {e}"))
            })
            .collect()
    });
    f.wait_stat("rq_active", OUT4, |v| v == 1024);
    assert_eq!(f.stat("overflow_total", OUT4), 0);
    assert!(
        refused(connect(&p.a, sock(B4, 7100))),
        "the 1025th connection was relayed"
    );
    f.wait_stat("overflow_total", OUT4, |v| v == 1);
    assert_eq!(f.stat("cx_active", OUT4), 1024);
    drop(conns);
    held.lock().unwrap().clear();
    f.wait_stat("cx_active", OUT4, |v| v == 0);
    // Below the limit again: relayed.
    let mut again = connect(&p.a, sock(B4, 7100)).unwrap();
    again
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    let r = again.read(&mut b);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "connection below the limit was closed: {r:?}"
    );
    assert_eq!(f.stat("overflow_total", OUT4), 1);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn connect_timeout_against_a_destination_that_drops_syns() {
    require_kernel!();
    let (p, _installed) = setup("cto");
    p.b.run_ok(
        "iptables",
        &["-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "DROP"],
    );
    let f = Forwarder::start(&p.a, &["--connect-timeout", "500ms"]);
    let mut c = connect(&p.a, sock(B4, 9999)).unwrap();
    let mut b = [0u8; 1];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    f.wait_stat("connect_timeout_total", OUT4, |v| v == 1);
    assert_eq!(f.stat("connect_fail_total", OUT4), 0);
    assert_eq!(f.stat("retries_total", OUT4), 0, "timeouts are not retried");
    f.wait_stat("cx_active", OUT4, |v| v == 0);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn idle_timeout_closes_a_quiet_connection() {
    require_kernel!();
    let (p, _installed) = setup("idle");
    echo_server(&p.b, any(7000));
    let f = Forwarder::start(&p.a, &["--idle-timeout", "300ms"]);
    let mut c = connect(&p.a, sock(B4, 7000)).unwrap();
    assert_eq!(echo_roundtrip(&mut c, b"ping"), b"ping");
    let mut b = [0u8; 1];
    assert_eq!(
        c.read(&mut b).unwrap(),
        0,
        "expected EOF after the idle timeout"
    );
    f.wait_stat("idle_timeout_total", OUT4, |v| v == 1);
    assert_eq!(f.stat("bytes_sent_total", OUT4), 4);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn half_close_keeps_the_other_direction_flowing() {
    require_kernel!();
    let (p, _installed) = setup("half");
    // Reads until EOF, then answers with the byte count, then closes.
    let l = in_ns(&p.b, || TcpListener::bind("0.0.0.0:7200").unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            write!(s, "got {} bytes", all.len()).unwrap();
        }
    });
    let f = Forwarder::start(&p.a, &[]);
    let mut c = connect(&p.a, sock(B4, 7200)).unwrap();
    c.write_all(&[7u8; 100_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 100000 bytes");
    f.wait_stat("cx_active", OUT4, |v| v == 0);
    assert_eq!(f.stat("reset_total", OUT4), 0);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_large_transfer_arrives_intact() {
    require_kernel!();
    let (p, _installed) = setup("bulk");
    echo_server(&p.b, any(7000));
    let f = Forwarder::start(&p.a, &[]);
    const LEN: usize = 48 << 20;
    let data: Vec<u8> = {
        // xorshift: varied bytes, reproducible
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..LEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let sum = |d: &[u8]| {
        use std::hash::{DefaultHasher, Hasher};
        let mut h = DefaultHasher::new();
        h.write(d);
        h.finish()
    };
    let want = sum(&data);
    let c = connect(&p.a, sock(B6, 7000)).unwrap();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(LEN);
    let mut c = c;
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert_eq!(sum(&got), want, "checksum differs");
    f.wait_stat("cx_active", OUT6, |v| v == 0);
    assert_eq!(f.stat("bytes_sent_total", OUT6), LEN as u64);
    assert_eq!(f.stat("bytes_received_total", OUT6), LEN as u64);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn loop_guard_refuses_when_running_as_a_non_exempt_uid() {
    require_kernel!();
    let (p, _installed) = setup("loop");
    echo_server(&p.b, any(7000));
    // The rules exempt daemon; the forwarder runs as nobody.
    let f = Forwarder::start(&p.a, &["--user", "nobody"]);
    assert!(
        f.stderr().contains("loop"),
        "no warning about the UID: {}",
        f.stderr()
    );
    for (ip, cluster) in [(IpAddr::V4(B4), OUT4), (IpAddr::V6(B6), OUT6)] {
        assert!(
            refused(connect(&p.a, sock(ip, 7000))),
            "a looping connection was relayed"
        );
        f.wait_stat("loop_refused_total", cluster, |v| v >= 1);
        f.wait_stat("cx_active", cluster, |v| v == 0);
        // The application's connection, its connect come back (a suspect,
        // relayed) and the suspect's connect come back (the loop, refused):
        // the loop never grows.
        assert_eq!(f.stat("cx_total", cluster), 3, "{cluster}");
        assert_eq!(f.stat("loop_refused_total", cluster), 1, "{cluster}");
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn passthrough_policies_block_and_select_destinations() {
    require_kernel!();
    let (p, _installed) = setup("pass");
    echo_server(&p.b, any(7000));
    let dir = tempfile::tempdir().unwrap();
    let mesh = write_file(
        dir.path(),
        "mesh.yaml",
        include_str!("../../src/forwarder/testdata/mesh-passthrough-off.universal.yaml"),
    );
    let f = Forwarder::start(&p.a, &["--policy", mesh.to_str().unwrap()]);
    assert!(refused(connect(&p.a, sock(B4, 7000))));
    f.wait_stat("blocked_total", OUT4, |v| v == 1);
    drop(f);

    let matched = write_file(
        dir.path(),
        "mp.yaml",
        "type: MeshPassthrough\nname: some\nmesh: default\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    passthroughMode: Matched\n    appendMatch:\n      - type: CIDR\n        value: 10.77.0.0/24\n        port: 7000\n        protocol: tcp\n",
    );
    let f = Forwarder::start(&p.a, &["--policy", matched.to_str().unwrap()]);
    let mut c = connect(&p.a, sock(B4, 7000)).unwrap();
    assert_eq!(echo_roundtrip(&mut c, b"allowed"), b"allowed");
    assert!(refused(connect(&p.a, sock(B6, 7000))));
    f.wait_stat("blocked_total", OUT6, |v| v == 1);
    assert_eq!(f.stat("blocked_total", OUT4), 0);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn policy_thresholds_apply_to_the_cluster() {
    require_kernel!();
    let (p, _installed) = setup("thr");
    let _server = hold_server(&p.b, any(7100));
    let dir = tempfile::tempdir().unwrap();
    // The seed's MeshProxyPatch with a lower limit, so the test stays small.
    let mpp = include_str!("../../src/forwarder/testdata/meshproxypatch-thresholds.yaml")
        .replace("max_connections: 2048", "max_connections: 3");
    let mpp = write_file(dir.path(), "mpp.yaml", &mpp);
    let f = Forwarder::start(&p.a, &["--policy", mpp.to_str().unwrap()]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| connect(&p.a, sock(B4, 7100)).unwrap())
        .collect();
    f.wait_stat("rq_active", OUT4, |v| v == 3);
    assert!(refused(connect(&p.a, sock(B4, 7100))));
    f.wait_stat("overflow_total", OUT4, |v| v == 1);
    drop(held);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn dns_proxy_forwards_to_resolv_conf_and_answers_servfail_when_upstreams_fail() {
    require_kernel!();
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{RData, RecordType, rdata::A};
    let p = Topology::new("dns");
    // A tiny upstream in the peer: answers every A query with 192.0.2.7.
    fake_upstream(&p.b, std::net::Ipv4Addr::new(192, 0, 2, 7));
    let dir = tempfile::tempdir().unwrap();
    let good = write_file(dir.path(), "good.conf", &format!("nameserver {B4}\n"));
    let cfg = write_file(
        dir.path(),
        "tp.yaml",
        &format!(
            "redirect:\n  dns:\n    resolvConfigPath: {}\n",
            good.display()
        ),
    );
    let f = Forwarder::start(&p.a, &["--dns", "--config", cfg.to_str().unwrap()]);
    let dns_port = sock(std::net::Ipv4Addr::LOCALHOST, 15053);
    let answer = dns_query(&p.a, dns_port, "svc.example.", RecordType::A, false);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].data, RData::A(A::new(192, 0, 2, 7)));
    drop(f);

    // Nothing listens on the upstream's TCP port 53: SERVFAIL over TCP.
    let f = Forwarder::start(&p.a, &["--dns", "--config", cfg.to_str().unwrap()]);
    let dns_port6 = sock(std::net::Ipv6Addr::LOCALHOST, 15053);
    let answer = dns_query(&p.a, dns_port6, "svc.example.", RecordType::A, true);
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    let st = f.stats();
    assert_eq!(st["tproxyctl_dns_queries_tcp_total"], 1);
    assert_eq!(st["tproxyctl_dns_servfail_total"], 1);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn sigterm_stops_accepting_and_drains_open_connections() {
    require_kernel!();
    let (p, _installed) = setup("term");
    echo_server(&p.b, any(7000));
    let mut f = Forwarder::start(&p.a, &["--drain-timeout", "20s"]);
    let mut c = connect(&p.a, sock(B4, 7000)).unwrap();
    assert_eq!(echo_roundtrip(&mut c, b"before"), b"before");
    f.signal(nix::sys::signal::Signal::SIGTERM);
    // The listener closes: a new connection is refused...
    let t = std::time::Instant::now();
    loop {
        if refused(connect(&p.a, sock(B4, 7000))) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...while the open one keeps working until it closes.
    assert_eq!(echo_roundtrip(&mut c, b"during drain"), b"during drain");
    assert!(
        f.child.try_wait().unwrap().is_none(),
        "exited with a connection open"
    );
    drop(c);
    let status = f.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(
        f.stderr().contains("all connections closed"),
        "{}",
        f.stderr()
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_taken_port_is_a_clear_error() {
    require_kernel!();
    let ns = Netns::new("busy");
    let _busy = in_ns(&ns, || TcpListener::bind("0.0.0.0:15001").unwrap());
    let mut f = Forwarder::spawn(&ns, &[]);
    let status = f.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", f.stderr());
    let err = f.stderr();
    assert!(err.contains("port 15001") && err.contains("taken"), "{err}");
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_receipt_exempting_another_uid_refuses_to_start() {
    require_kernel!();
    let ns = Netns::new("rcpt");
    let dir = tempfile::tempdir().unwrap();
    let receipt = write_file(
        dir.path(),
        "receipt.json",
        &serde_json::json!({
            "version": 1, "tool": "test", "installedAt": 0,
            "config": tproxyctl::config::Config::default(),
            "uid": 5678, "loopback": "lo", "dnsServers": [], "families": [],
            "ipv6LoopbackAdded": false, "firewalld": null
        })
        .to_string(),
    );
    let mut f = Forwarder::spawn(&ns, &["--receipt", receipt.to_str().unwrap()]);
    let status = f.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", f.stderr());
    let err = f.stderr();
    assert!(
        err.contains("UID 1") && err.contains("exempt UID 5678") && err.contains("loop"),
        "{err}"
    );
}

// ---------------------------------------------------------------- usage errors (no kernel)

fn forwarder() -> Command {
    let mut c = Command::cargo_bin("tproxyctl").unwrap();
    // These run on the host: a value that wrongly passed would start a
    // forwarder, which the timeout stops.
    c.arg("forwarder")
        .env_remove("TPROXYCTL_RECEIPT")
        .timeout(Duration::from_secs(20));
    c
}

#[test]
fn invalid_values_exit_2_naming_the_flag_and_value() {
    forwarder()
        .args(["--max-connections", "lots"])
        .assert()
        .code(2)
        .stderr(contains("--max-connections").and(contains("'lots'")));
    forwarder()
        .args(["--connect-timeout", "soon"])
        .assert()
        .code(2)
        .stderr(contains("--connect-timeout").and(contains("10s")));
    forwarder()
        .args(["--redirect-outbound-port", "70000"])
        .assert()
        .code(2)
        .stderr(contains("70000"));
}

#[test]
fn a_policy_modification_that_cannot_be_honoured_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_file(
        dir.path(),
        "p.yaml",
        &include_str!("../../src/forwarder/testdata/meshproxypatch-timeouts.yaml")
            .replace("path: /connectTimeout", "path: /lbPolicy"),
    );
    forwarder()
        .args(["--policy", p.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(
            contains("custom-mpp-1")
                .and(contains("/lbPolicy"))
                .and(contains("cannot be honoured")),
        );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_refused_connect_is_retried_then_counted_as_failed() {
    require_kernel!();
    let (p, _installed) = setup("ref");
    let f = Forwarder::start(&p.a, &[]);
    // Nothing listens on B's port 9998: each attempt gets a reset.
    assert!(refused(connect(&p.a, sock(B4, 9998))));
    f.wait_stat("connect_fail_total", OUT4, |v| v == 1);
    assert_eq!(
        f.stat("retries_total", OUT4),
        3,
        "max_retries defaults to 3"
    );
    assert_eq!(f.stat("connect_timeout_total", OUT4), 0);
    f.wait_stat("retries_active", OUT4, |v| v == 0);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_reset_on_one_side_resets_the_other() {
    require_kernel!();
    let (p, _installed) = setup("rst");
    // Reads one byte, then closes with SO_LINGER 0: a reset.
    let l = in_ns(&p.b, || TcpListener::bind("0.0.0.0:7300").unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    });
    let f = Forwarder::start(&p.a, &[]);
    let mut c = connect(&p.a, sock(B4, 7300)).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    let r = c.read(&mut b);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a reset, got {r:?}"
    );
    f.wait_stat("reset_total", OUT4, |v| v == 1);
    f.wait_stat("cx_active", OUT4, |v| v == 0);
}

// ---------------------------------------------------------------- mesh destinations

/// The mesh of the topology: service `a` on the peer at 10.77.0.2:7000 and
/// [fd00:77::2]:7000, service `b` behind it at 192.0.2.1:7001; this proxy is
/// `me` at 10.77.0.1 (found by its address unless a test says otherwise).
fn mesh_file(dir: &std::path::Path) -> std::path::PathBuf {
    write_file(
        dir,
        "mesh.yaml",
        &documents(&[
            dataplane("a-1", "10.77.0.2", &[(7000, "a")], ""),
            dataplane("a-2", "fd00:77::2", &[(7000, "a")], ""),
            dataplane("b-1", "192.0.2.1", &[(7001, "b")], ""),
        ]),
    )
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// True when /stats has no sample for `cluster`.
fn no_cluster(f: &Forwarder<'_>, cluster: &str) -> bool {
    let label = format!("{{cluster=\"{cluster}\"}}");
    !f.stats().keys().any(|k| k.ends_with(&label))
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn a_mesh_destination_is_counted_under_its_service_cluster() {
    require_kernel!();
    let (p, _installed) = setup("mesh");
    echo_server(&p.b, any(7000));
    echo_server(&p.b, any(7500));
    let dir = exempt_user_dir();
    let mesh = mesh_file(dir.path());
    let me = write_file(
        dir.path(),
        "me.yaml",
        &dataplane("me", "10.77.0.1", &[(8080, "me")], ""),
    );
    let log = dir.path().join("access.log");
    let f = Forwarder::start(
        &p.a,
        &[
            "--dataplane",
            path(&mesh),
            "--dataplane",
            path(&me),
            "--access-log",
            path(&log),
        ],
    );
    assert!(
        f.stderr().contains("this proxy is dataplane file")
            && f.stderr().contains("a (2), b (1), me (1)"),
        "{}",
        f.stderr()
    );
    for (dst, cluster) in [
        (sock(B4, 7000), "a"),
        (sock(B6, 7000), "a"),
        (sock(B4, 7500), OUT4),
    ] {
        let mut c = connect(&p.a, dst).unwrap();
        assert_eq!(echo_roundtrip(&mut c, b"hello mesh"), b"hello mesh");
        drop(c);
        f.wait_stat("cx_active", cluster, |v| v == 0);
    }
    assert_eq!(f.stat("cx_total", "a"), 2);
    assert_eq!(f.stat("bytes_sent_total", "a"), 20);
    assert_eq!(f.stat("bytes_received_total", "a"), 20);
    assert_eq!(f.stat("cx_total", OUT4), 1, "only the non-mesh connection");
    assert_eq!(f.stat("cx_total", OUT6), 0);
    assert_eq!(f.stat("cx_total", "b"), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains(&format!("dst={B4}:7000 cluster=a sent=10 received=10")),
        "{text}"
    );
    assert!(
        lines[1].contains(&format!("dst=[{B6}]:7000 cluster=a sent=10")),
        "{text}"
    );
    assert!(
        lines[2].contains(&format!("dst={B4}:7500 cluster={OUT4} sent=10")),
        "{text}"
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn unreachable_services_are_non_mesh_and_blocked_when_passthrough_is_off() {
    require_kernel!();
    let (p, _installed) = setup("reach");
    echo_server(&p.b, any(7000));
    echo_server(&p.b, any(7001));
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh_file(dir.path());
    let off = write_file(
        dir.path(),
        "mesh-off.yaml",
        include_str!("../../src/forwarder/testdata/mesh-passthrough-off.universal.yaml"),
    );
    let b = sock(std::net::Ipv4Addr::new(192, 0, 2, 1), 7001);
    for (what, tp) in [
        ("reachableServices", "reachableServices: [a]"),
        (
            "reachableBackends",
            "reachableBackends:\n  refs:\n  - kind: MeshService\n    name: a",
        ),
    ] {
        let me = write_file(
            dir.path(),
            &format!("me-{what}.yaml"),
            &dataplane("me", "10.77.0.1", &[(8080, "me")], tp),
        );
        // Passthrough on: b is reached, through the passthrough cluster.
        let f = Forwarder::start(
            &p.a,
            &["--dataplane", path(&mesh), "--local-dataplane", path(&me)],
        );
        assert!(
            f.stderr().contains("not reachable, so non-mesh: b"),
            "{what}: {}",
            f.stderr()
        );
        let mut c = connect(&p.a, b).unwrap();
        assert_eq!(echo_roundtrip(&mut c, b"to b"), b"to b", "{what}");
        drop(c);
        f.wait_stat("cx_active", OUT4, |v| v == 0);
        assert_eq!(f.stat("cx_total", OUT4), 1, "{what}");
        assert!(no_cluster(&f, "b"), "{what}: b has a cluster");
        drop(f);

        // Passthrough off: a still flows, b is blocked like any non-mesh destination.
        let f = Forwarder::start(
            &p.a,
            &[
                "--dataplane",
                path(&mesh),
                "--local-dataplane",
                path(&me),
                "--policy",
                path(&off),
            ],
        );
        assert!(refused(connect(&p.a, b)), "{what}: b was relayed");
        f.wait_stat("blocked_total", OUT4, |v| v == 1);
        for dst in [sock(B4, 7000), sock(B6, 7000)] {
            let mut c = connect(&p.a, dst).unwrap();
            assert_eq!(echo_roundtrip(&mut c, b"to a"), b"to a", "{what}: {dst}");
        }
        f.wait_stat("cx_total", "a", |v| v == 2);
        assert_eq!(f.stat("blocked_total", "a"), 0, "{what}");
        drop(f);
    }
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn mesh_passthrough_none_blocks_non_mesh_but_not_mesh_traffic() {
    require_kernel!();
    let (p, _installed) = setup("mpn");
    echo_server(&p.b, any(7000));
    echo_server(&p.b, any(7500));
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh_file(dir.path());
    let none = write_file(
        dir.path(),
        "mp.yaml",
        "type: MeshPassthrough\nname: none\nmesh: default\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    passthroughMode: None\n",
    );
    // No local Dataplane (none has an address here): every service is reachable.
    let f = Forwarder::start(&p.a, &["--dataplane", path(&mesh), "--policy", path(&none)]);
    for (ip, cluster) in [(IpAddr::V4(B4), OUT4), (IpAddr::V6(B6), OUT6)] {
        let mut c = connect(&p.a, sock(ip, 7000)).unwrap();
        assert_eq!(echo_roundtrip(&mut c, b"mesh"), b"mesh", "{ip}");
        assert!(
            refused(connect(&p.a, sock(ip, 7500))),
            "{ip}:7500 was relayed"
        );
        f.wait_stat("blocked_total", cluster, |v| v == 1);
    }
    assert_eq!(f.stat("cx_total", "a"), 2);
    assert_eq!(f.stat("blocked_total", "a"), 0);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn an_inbound_of_this_proxy_is_delivered_to_its_service_address_and_port() {
    require_kernel!();
    let (p, _installed) = setup("svcp");
    // The workload listens on 127.0.0.1:5000; the mesh reaches it at 10.77.0.1:15000.
    let peers = peer_recorder(&p.a, sock(std::net::Ipv4Addr::LOCALHOST, 5000));
    let dir = tempfile::tempdir().unwrap();
    let me = write_file(
        dir.path(),
        "me.yaml",
        "type: Dataplane\nmesh: default\nname: me\nnetworking:\n  address: 10.77.0.1\n  inbound:\n  - port: 15000\n    servicePort: 5000\n    serviceAddress: 127.0.0.1\n    tags:\n      kuma.io/service: app\n",
    );
    let f = Forwarder::start(&p.a, &["--local-dataplane", path(&me)]);
    let mut c = connect(&p.b, sock(A4, 15000)).unwrap();
    let mut line = String::new();
    c.read_to_string(&mut line).unwrap();
    drop(c);
    assert_eq!(line, "hello from the application\n");
    let peer = peers.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(peer.ip().to_string(), "127.0.0.6");
    f.wait_stat("cx_active", "localhost:5000", |v| v == 0);
    assert_eq!(f.stat("cx_total", "localhost:5000"), 1);
    assert_eq!(f.stat("bytes_received_total", "localhost:5000"), 27);
    assert_eq!(f.stat("cx_total", IN4), 0);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn dns_answers_mesh_names_from_dataplanes_and_forwards_the_rest() {
    require_kernel!();
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let p = Topology::new("mdns");
    fake_upstream(&p.b, std::net::Ipv4Addr::new(192, 0, 2, 7));
    let dir = tempfile::tempdir().unwrap();
    let resolv = write_file(dir.path(), "resolv.conf", &format!("nameserver {B4}\n"));
    let cfg = write_file(
        dir.path(),
        "tp.yaml",
        &format!(
            "redirect:\n  dns:\n    enabled: true\n    resolvConfigPath: {}\n",
            resolv.display()
        ),
    );
    let installed = tempfile::tempdir().unwrap();
    install_rules(
        &p.a,
        &receipt(&installed),
        &["--kuma-dp-user", EXEMPT_USER, "--config", path(&cfg)],
    );
    let mesh = write_file(
        dir.path(),
        "mesh.yaml",
        &documents(&[
            dataplane("a-1", "10.77.0.2", &[(7000, "a")], ""),
            dataplane("a-2", "10.77.0.3", &[(7000, "a")], ""),
            dataplane("a-3", "fd00:77::2", &[(7000, "a")], ""),
            dataplane("v6-1", "fd00:77::5", &[(7000, "only-v6")], ""),
        ]),
    );
    let f = Forwarder::start(&p.a, &["--config", path(&cfg), "--dataplane", path(&mesh)]);
    // UDP to the resolv.conf server: redirected to the DNS proxy by the rules.
    let server = sock(B4, 53);
    let a = dns_query(&p.a, server, "a.mesh", RecordType::A, false);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer_addrs(&a), ["10.77.0.2", "10.77.0.3"]);
    let a = dns_query(&p.a, server, "A.Mesh.", RecordType::AAAA, false);
    assert_eq!(answer_addrs(&a), ["fd00:77::2"]);
    let a = dns_query(&p.a, server, "only-v6.mesh", RecordType::AAAA, false);
    assert_eq!(answer_addrs(&a), ["fd00:77::5"]);
    let a = dns_query(&p.a, server, "unknown.mesh", RecordType::A, false);
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    // Not a mesh name: forwarded to the upstream.
    let a = dns_query(&p.a, server, "svc.example.", RecordType::A, false);
    assert_eq!(answer_addrs(&a), ["192.0.2.7"]);
    // TCP DNS from applications bypasses the rules (reference §2.4); the
    // proxy answers it on its port, IPv4 and IPv6.
    for tcp_server in [
        sock(std::net::Ipv4Addr::LOCALHOST, 15053),
        sock(std::net::Ipv6Addr::LOCALHOST, 15053),
    ] {
        let a = dns_query(&p.a, tcp_server, "a.MESH", RecordType::A, true);
        assert_eq!(answer_addrs(&a), ["10.77.0.2", "10.77.0.3"], "{tcp_server}");
        let a = dns_query(&p.a, tcp_server, "unknown.mesh.", RecordType::AAAA, true);
        assert_eq!(
            a.metadata.response_code,
            ResponseCode::NXDomain,
            "{tcp_server}"
        );
    }
    let st = f.stats();
    assert_eq!(st["tproxyctl_dns_mesh_answers_total"], 5);
    assert_eq!(st["tproxyctl_dns_mesh_nxdomain_total"], 3);
    assert_eq!(st["tproxyctl_dns_queries_udp_total"], 5);
    assert_eq!(st["tproxyctl_dns_queries_tcp_total"], 4);
}

#[test]
fn invalid_dataplane_files_exit_2_naming_file_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(
        dir.path(),
        "bad.yaml",
        &dataplane("a-1", "10.77.0.2", &[(7000, "a")], "").replace("7000", "70000"),
    );
    forwarder()
        .args(["--dataplane", path(&bad)])
        .assert()
        .code(2)
        .stderr(
            contains(path(&bad))
                .and(contains("Dataplane a-1"))
                .and(contains("networking.inbound[0].port"))
                .and(contains("'70000'")),
        );
    let host = write_file(
        dir.path(),
        "host.yaml",
        &dataplane("a-1", "backend.example.com", &[(80, "a")], ""),
    );
    forwarder()
        .args(["--dataplane", path(&host)])
        .assert()
        .code(2)
        .stderr(contains("networking.address").and(contains("'backend.example.com'")));
    let me = write_file(
        dir.path(),
        "me.yaml",
        &dataplane(
            "me",
            "10.77.0.1",
            &[(8080, "me")],
            "reachableBackends:\n  refs:\n  - kind: MeshService\n    name: a\n  - kind: MeshExternalService\n    name: mes-http",
        ),
    );
    forwarder()
        .args(["--local-dataplane", path(&me)])
        .assert()
        .code(2)
        .stderr(
            contains(path(&me))
                .and(contains("reachableBackends.refs[1].kind"))
                .and(contains("'MeshExternalService'"))
                .and(contains("cannot be honoured")),
        );
    let ns = me.with_file_name("ns.yaml");
    std::fs::write(
        &ns,
        dataplane(
            "me",
            "10.77.0.1",
            &[(8080, "me")],
            "reachableBackends:\n  refs:\n  - kind: MeshService\n    name: a\n    namespace: kuma-demo",
        ),
    )
    .unwrap();
    forwarder()
        .args(["--local-dataplane", path(&ns)])
        .assert()
        .code(2)
        .stderr(contains("refs[0].namespace").and(contains("'kuma-demo'")));
    forwarder()
        .args(["--policy", path(&me)])
        .assert()
        .code(2)
        .stderr(contains("--dataplane"));
}
