//! The DNS proxy as an operator runs it: rules written by `tproxyctl install
//! transparent-proxy --redirect-dns` (conntrack zone split on and off), the
//! forwarder started with `--user` as docs/forwarder.md says, and glibc's resolver
//! (`getent hosts`: connected UDP, no EDNS, TCP after a truncated answer) as
//! an application user. Also `--vnet` in dual-stack mode: containers on the
//! bridge get answers, nobody else does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::Duration;

use crate::common::{APP_UID, B4, EXEMPT_USER, Netns, Topology, stdout};
use crate::fwd_kernel::*;
use crate::fwd_mesh::*;
use crate::require_kernel;

/// A configuration file whose DNS servers come from `resolv`.
fn dns_config(dir: &std::path::Path, resolv: &std::path::Path) -> std::path::PathBuf {
    write_file(
        dir,
        "tp.yaml",
        &format!(
            "redirect:\n  dns:\n    enabled: true\n    resolvConfigPath: {}\n",
            resolv.display()
        ),
    )
}

/// `big` with `n` instances (10.77.1.1 …) and `small` with one.
fn big_mesh(dir: &std::path::Path, n: u8) -> std::path::PathBuf {
    let mut docs: Vec<String> = (1..=n)
        .map(|i| {
            dataplane(
                &format!("big-{i}"),
                &format!("10.77.1.{i}"),
                &[(80, "big")],
                "",
            )
        })
        .collect();
    docs.push(dataplane("small-1", "10.77.2.1", &[(80, "small")], ""));
    write_file(dir, "mesh.yaml", &documents(&docs))
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn glibc_lookups_get_their_answers_from_a_forwarder_started_with_user() {
    require_kernel!();
    for split in [true, false] {
        let p = Topology::new(if split { "gz" } else { "gn" });
        fake_upstream(&p.b, Ipv4Addr::new(192, 0, 2, 7));
        let dir = tempfile::tempdir().unwrap();
        let resolv = write_file(dir.path(), "resolv.conf", &format!("nameserver {B4}\n"));
        let cfg = dns_config(dir.path(), &resolv);
        let mut args = vec![
            "--kuma-dp-user",
            EXEMPT_USER,
            "--config",
            cfg.to_str().unwrap(),
        ];
        if !split {
            args.push("--skip-dns-conntrack-zone-split");
        }
        install_rules(&p.a, &dir.path().join("receipt.json"), &args);
        let rules = p.a.run_ok("iptables-save", &["-t", "raw"]);
        assert_eq!(rules.contains("--zone 2"), split, "{rules}");
        let mesh = big_mesh(dir.path(), 40);
        let f = Forwarder::start(
            &p.a,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--dataplane",
                mesh.to_str().unwrap(),
            ],
        );
        let look = |name: &str| {
            let out = getent_hosts(&p.a, APP_UID, &resolv, name);
            assert!(
                out.status.success(),
                "zone split {split}: getent hosts {name} failed ({:?}): {}\nforwarder:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                f.stderr()
            );
            stdout(&out)
        };
        // Forwarded to the upstream.
        assert!(
            look("svc.example").starts_with("192.0.2.7 "),
            "zone split {split}"
        );
        // From the Dataplane files.
        assert!(
            look("small.mesh").starts_with("10.77.2.1 "),
            "zone split {split}"
        );
        // 40 addresses do not fit in 512 bytes: as many as fit, no TC (which
        // would send glibc to TCP/53, and the rules send that to the real server).
        let big = look("big.mesh");
        let n = big.lines().count();
        assert!((1..=40).contains(&n), "zone split {split}: {big}");
        assert!(big.lines().all(|l| l.starts_with("10.77.1.")), "{big}");
        let st = f.stats();
        assert!(st["tproxyctl_dns_mesh_fitted_total"] >= 1, "{st:?}");
        assert_eq!(st["tproxyctl_dns_servfail_total"], 0);
    }
}

/// A container namespace `c` on bridge-side interface `vnet0` of `a`:
/// a = 10.88.0.1/24, fd00:88::1/64; c = 10.88.0.2, fd00:88::2, routed via a.
fn container(p: &Topology) -> Netns {
    let c = Netns::new("vc");
    p.a.ip(&[
        "link", "add", "vnet0", "type", "veth", "peer", "name", "eth0", "netns", &c.name,
    ]);
    p.a.ip(&["addr", "add", "10.88.0.1/24", "dev", "vnet0"]);
    p.a.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:88::1/64",
        "dev",
        "vnet0",
        "nodad",
    ]);
    p.a.ip(&["link", "set", "vnet0", "up"]);
    c.ip(&["addr", "add", "10.88.0.2/24", "dev", "eth0"]);
    c.ip(&["-6", "addr", "add", "fd00:88::2/64", "dev", "eth0", "nodad"]);
    c.ip(&["link", "set", "eth0", "up"]);
    c.ip(&["route", "add", "default", "via", "10.88.0.1"]);
    c.ip(&["-6", "route", "add", "default", "via", "fd00:88::1"]);
    c
}

/// Sends one query from inside `ns` and waits up to 1 s: the answer's size,
/// or `None`.
fn udp_query_size(ns: &Netns, to: std::net::SocketAddr, edns: bool) -> Option<usize> {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_ascii("big.mesh.").unwrap(),
        RecordType::ANY,
    ));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        q.set_edns(e);
    }
    let bytes = q.to_vec().unwrap();
    in_ns(ns, move || {
        let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(local).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.send_to(&bytes, to).unwrap();
        let mut buf = [0u8; 4096];
        s.recv(&mut buf).ok()
    })
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn vnet_dns_starts_dual_stack_and_answers_only_what_the_rules_redirect() {
    require_kernel!();
    let p = Topology::new("vd");
    let c = container(&p);
    fake_upstream(&p.b, Ipv4Addr::new(192, 0, 2, 7));
    let dir = tempfile::tempdir().unwrap();
    let resolv = write_file(dir.path(), "resolv.conf", &format!("nameserver {B4}\n"));
    let cfg = dns_config(dir.path(), &resolv);
    let vnet = [
        "--vnet",
        "vnet0:10.88.0.0/24",
        "--vnet",
        "vnet0:fd00:88::/64",
    ];
    // Comments off: with them, install's read-back of the vnet rule fails
    // today (its comment's apostrophe; reported to the install owner).
    let mut args = vec![
        "--kuma-dp-user",
        EXEMPT_USER,
        "--config",
        cfg.to_str().unwrap(),
        "--disable-comments",
    ];
    args.extend(vnet);
    install_rules(&p.a, &dir.path().join("receipt.json"), &args);
    let mesh = big_mesh(dir.path(), 40);
    let mut fargs = vec![
        "--config",
        cfg.to_str().unwrap(),
        "--dataplane",
        mesh.to_str().unwrap(),
    ];
    fargs.extend(vnet);
    // Dual-stack is the default: it starts (no v4/v6 port collision).
    let f = Forwarder::start(&p.a, &fargs);
    // A container's lookup, redirected on vnet0, is answered (as if by the
    // server it asked: conntrack maps the answer back).
    for name in ["svc.example", "small.mesh", "big.mesh"] {
        let out = getent_hosts(&c, APP_UID, &resolv, name);
        assert!(
            out.status.success(),
            "container: getent hosts {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            f.stderr()
        );
    }
    // So is the host's own application.
    assert!(
        getent_hosts(&p.a, APP_UID, &resolv, "small.mesh")
            .status
            .success()
    );
    let answered = f.stats()["tproxyctl_dns_queries_udp_total"];
    // Another host, no redirect involved, sending to the DNS port itself:
    // no answer, over UDP (either family, with or without EDNS) or TCP.
    for to in [
        sock(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)), 15053),
        sock(IpAddr::V6("fd00:77::1".parse::<Ipv6Addr>().unwrap()), 15053),
    ] {
        for edns in [false, true] {
            assert_eq!(
                udp_query_size(&p.b, to, edns),
                None,
                "{to} answered (EDNS {edns})"
            );
        }
        // TCP to it is inbound traffic like any other: the inbound port
        // relays it to where it was sent, and nothing listens there.
        assert!(refused(connect(&p.b, to)), "TCP {to} answered");
    }
    let st = f.stats();
    assert_eq!(st["tproxyctl_dns_refused_total"], 4, "{st:?}");
    assert_eq!(st["tproxyctl_dns_queries_udp_total"], answered + 4);
    // The container may ask the bridge address directly (the rules would
    // deliver its port-53 queries there anyway).
    assert!(
        udp_query_size(
            &c,
            sock(IpAddr::V4(Ipv4Addr::new(10, 88, 0, 1)), 15053),
            false
        )
        .is_some()
    );
}
