//! Kernel tests of the eBPF mode as users run it: `tproxyctl install
//! transparent-proxy --ebpf-enabled …` into a child cgroup and a network
//! namespace of the test's own, `tproxyctl forwarder --user` on the redirect
//! ports (inside that cgroup: the getsockopt hook only answers there), real
//! applications (bash, glibc's getent) as other UIDs, servers in a peer
//! namespace. See `ebpf_env` for what keeps these tests off the host.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    A4, A6, APP_UID, B4, B6, EXEMPT_UID, REMOTE4, REMOTE6, Topology, stderr, stdout, tcp_recorder,
    v4, v6,
};
use crate::ebpf_env::{
    CgForwarder, TestBpffs, TestCgroup, bpftool_ids, cgroup_attachments, nsenter, tproxyctl,
    wait_gone,
};
use crate::fwd_kernel::{in_ns, peer_recorder};
use crate::json_contract::{Doc, document, receipt_document};
use crate::require_ebpf;

/// One test's world: the topology, its cgroup, an (unmounted) bpffs
/// directory, and a directory for the receipt, resolv.conf and the object.
struct World {
    topo: Topology,
    cg: TestCgroup,
    fs: TestBpffs,
    dir: tempfile::TempDir,
}

impl World {
    fn new(tag: &str) -> World {
        let w = World {
            topo: Topology::new(tag),
            cg: TestCgroup::new(tag),
            fs: TestBpffs::unmounted(),
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(w.resolv(), format!("nameserver {B4}\nnameserver {B6}\n")).unwrap();
        w
    }

    fn receipt(&self) -> PathBuf {
        self.dir.path().join("receipt.json")
    }

    fn resolv(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    fn progs(&self) -> PathBuf {
        self.dir.path().join("progs")
    }

    /// The eBPF install flags of this world, then `extra`.
    fn args(&self, cmd: &[&str], extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        for s in [
            "--ebpf-enabled",
            "--ebpf-instance-ip",
            &A4.to_string(),
            "--ebpf-cgroup-path",
            self.cg.arg(),
            "--ebpf-bpffs-path",
            self.fs.arg(),
            "--ebpf-programs-source-path",
            self.progs().to_str().unwrap(),
            "--kuma-dp-user",
            crate::common::EXEMPT_USER,
            "--receipt",
            self.receipt().to_str().unwrap(),
        ] {
            a.push(s.to_string());
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn run(&self, cmd: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Output {
        let args = self.args(cmd, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c = nsenter(&self.topo.a, crate::common::bin(), &args);
        c.env_remove("TPROXYCTL_RECEIPT")
            .env(
                "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_RESOLV_CONFIG_PATH",
                self.resolv(),
            )
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("tproxyctl runs")
    }

    fn install(&self, extra: &[&str]) -> Output {
        let out = self.run(&["install", "transparent-proxy"], extra, &[]);
        assert!(
            out.status.success(),
            "install failed: {}\n{}",
            stderr(&out),
            stdout(&out)
        );
        out
    }

    fn uninstall(&self) -> Output {
        let out = tproxyctl(
            &self.topo.a,
            &[
                "uninstall",
                "transparent-proxy",
                "--receipt",
                self.receipt().to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "uninstall failed: {}", stderr(&out));
        out
    }

    fn receipt_json(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.receipt()).unwrap()).unwrap()
    }

    /// Link, program and map ids of the install.
    fn ids(&self) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
        let r = self.receipt_json();
        let p = &r["ebpf"]["pinned"];
        let get = |list: &Value, key: &str| -> Vec<u32> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|x| x[key].as_u64().unwrap() as u32)
                .collect()
        };
        (
            get(&p["links"], "linkId"),
            get(&p["links"], "progId"),
            get(&p["maps"], "id"),
        )
    }

    fn forwarder(&self) -> CgForwarder {
        CgForwarder::start(
            &self.topo.a,
            &self.cg,
            &[
                "--config",
                &self.forwarder_config(),
                "--redirect-dns",
                "--dns",
            ],
        )
    }

    fn forwarder_config(&self) -> String {
        let p = self.dir.path().join("fwd.yaml");
        std::fs::write(
            &p,
            format!(
                "redirect:\n  dns:\n    resolvConfigPath: {}\n",
                self.resolv().display()
            ),
        )
        .unwrap();
        p.display().to_string()
    }

    /// What is left on the host of an install, for "nothing changed" checks:
    /// attachments to the cgroup, sk_lookup links of the namespace, the
    /// bpffs, the object directory, the receipt, the IPv6 loopback address.
    fn footprint(&self) -> String {
        let ns_ino =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(self.topo.a.path()).unwrap());
        let netns_links = netns_links(ns_ino);
        format!(
            "cgroup: {:?}\nnetns links: {netns_links:?}\nbpffs mounted: {}\nbpffs files: {:?}\nprogs: {}\nreceipt: {}\nlo: {}",
            cgroup_attachments(&self.cg),
            self.fs.is_bpffs(),
            self.fs.files(),
            self.progs().exists(),
            self.receipt().exists(),
            self.topo
                .a
                .run_ok("ip", &["-6", "-o", "addr", "show", "dev", "lo"]),
        )
    }
}

/// Links bpftool lists as attached to the network namespace `ino`.
fn netns_links(ino: u64) -> Vec<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["netns_ino"].as_u64() == Some(ino))
                .filter_map(|l| l["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// A name server in `ns` on UDP port 53 of every address (both families)
/// answering every A query with `answer`.
fn fake_upstream(ns: &crate::common::Netns, answer: Ipv4Addr) {
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let up = in_ns(ns, || {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        s.set_only_v6(false).unwrap();
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 53)).into())
            .unwrap();
        std::net::UdpSocket::from(s)
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = up.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut a = Message::response(q.metadata.id, q.metadata.op_code);
            a.metadata.recursion_desired = q.metadata.recursion_desired;
            a.metadata.recursion_available = true;
            a.add_queries(q.queries.clone());
            if let Some(query) = q.queries.first()
                && query.query_type() == hickory_proto::rr::RecordType::A
            {
                a.add_answer(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A(answer)),
                ));
            }
            let _ = up.send_to(&a.to_vec().unwrap(), from);
        }
    });
}

/// Connects from the peer namespace to `to` (from `from` when given) and
/// returns the first line the application sends.
fn from_peer(w: &World, to: SocketAddr, from: Option<IpAddr>) -> String {
    in_ns(&w.topo.b, move || {
        let s = match from {
            Some(ip) => {
                let s = socket2::Socket::new(
                    socket2::Domain::for_address(to),
                    socket2::Type::STREAM,
                    None,
                )
                .unwrap();
                s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
                s.connect_timeout(&to.into(), Duration::from_secs(5))
                    .map(|()| TcpStream::from(s))
            }
            None => TcpStream::connect_timeout(&to, Duration::from_secs(5)),
        };
        let Ok(s) = s else {
            return String::new();
        };
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&s).read_line(&mut line);
        line.trim().to_string()
    })
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn outbound_v4_and_v6_go_through_the_forwarder_with_their_original_destination() {
    require_ebpf!();
    let w = World::new("eo");
    let s4 = tcp_recorder(&w.topo.b, v4(REMOTE4, 80), "remote4");
    let s6 = tcp_recorder(&w.topo.b, v6(REMOTE6, 80), "remote6");
    w.install(&[]);
    let fwd = w.forwarder();

    let got = w.cg.tcp_client(&w.topo.a, APP_UID, v4(REMOTE4, 80));
    assert!(got.starts_with("remote4 "), "{got:?}; {}", fwd.stderr());
    fwd.wait_log(&["dst=192.0.2.1:80", "cluster=outbound:passthrough:ipv4"]);
    assert!(s4.recv_timeout(Duration::from_secs(5)).is_ok());

    let got = w.cg.tcp_client(&w.topo.a, APP_UID, v6(REMOTE6, 80));
    assert!(got.starts_with("remote6 "), "{got:?}; {}", fwd.stderr());
    fwd.wait_log(&["dst=[2001:db8::1]:80", "cluster=outbound:passthrough:ipv6"]);
    assert!(s6.recv_timeout(Duration::from_secs(5)).is_ok());

    // The counters of the programs say the same (status reads them).
    let st = tproxyctl(
        &w.topo.a,
        &[
            "status",
            "-o",
            "json",
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    );
    assert!(st.status.success(), "{}", stdout(&st));
    let j = document(Doc::Status, &st.stdout);
    assert_eq!(j["mode"], "ebpf");
    assert_eq!(j["problems"], serde_json::json!([]));
    assert_eq!(j["objectMatchesBinary"], true);
    let counter = |name: &str| j["counters"][name].as_u64().unwrap();
    assert!(counter("outboundRedirected") >= 2, "{j}");
    assert!(counter("originalDestinationsAnswered") >= 2, "{j}");
    let listening: Vec<&str> = j["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["listening"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(listening.contains(&"outbound"), "{j}");
    receipt_document(&w.receipt());
    drop(fwd);
    w.uninstall();
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn the_exempt_user_a_process_outside_the_cgroup_and_every_exclusion_bypass() {
    require_ebpf!();
    let w = World::new("ex");
    // A second remote address, excluded by IP.
    w.topo.b.ip(&["addr", "add", "192.0.2.2/32", "dev", "lo"]);
    w.topo
        .a
        .ip(&["route", "add", "192.0.2.2/32", "via", "10.77.0.2"]);
    // (a recorder stops when its receiver is dropped: keep them)
    let _servers: Vec<_> = [80, 7001, 7002]
        .into_iter()
        .map(|port| tcp_recorder(&w.topo.b, v4(REMOTE4, port), "remote"))
        .chain([tcp_recorder(
            &w.topo.b,
            v4(Ipv4Addr::new(192, 0, 2, 2), 80),
            "other",
        )])
        .collect();
    w.install(&[
        "--exclude-outbound-ports",
        "7001",
        "--exclude-outbound-ips",
        "192.0.2.2/32",
        "--exclude-outbound-ports-for-uids",
        &format!("tcp:7002:{APP_UID}"),
    ]);
    let fwd = w.forwarder();
    // The server answers; whether it came through the forwarder is told by
    // the access log, checked at the end.
    let direct = |got: &str, what: &str| {
        assert!(
            got.starts_with("remote ") || got.starts_with("other "),
            "{what}: {got:?}"
        )
    };

    // Bypasses: each reaches the server, none through the forwarder.
    direct(
        &w.cg.tcp_client(&w.topo.a, EXEMPT_UID, v4(REMOTE4, 80)),
        "exempt UID",
    );
    let out = nsenter(
        &w.topo.a,
        "setpriv",
        &[
            &format!("--reuid={APP_UID}"),
            &format!("--regid={APP_UID}"),
            "--clear-groups",
            "timeout",
            "10",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/192.0.2.1/80 || exit 3; echo hi >&3; timeout 8 head -n1 <&3",
        ],
    )
    .output()
    .unwrap();
    direct(&String::from_utf8_lossy(&out.stdout), "outside the cgroup");
    direct(
        &w.cg.tcp_client(&w.topo.a, APP_UID, v4(REMOTE4, 7001)),
        "excluded port",
    );
    direct(
        &w.cg
            .tcp_client(&w.topo.a, APP_UID, v4(Ipv4Addr::new(192, 0, 2, 2), 80)),
        "excluded IP",
    );
    direct(
        &w.cg.tcp_client(&w.topo.a, APP_UID, v4(REMOTE4, 7002)),
        "excluded port for the UID",
    );
    // ... while another UID on that port is redirected, and so is the
    // application elsewhere; the access log then holds those two only.
    let got = w.cg.tcp_client(&w.topo.a, 0, v4(REMOTE4, 7002));
    assert!(got.starts_with("remote "), "{got:?}");
    fwd.wait_log(&["dst=192.0.2.1:7002"]);
    let got = w.cg.tcp_client(&w.topo.a, APP_UID, v4(REMOTE4, 80));
    assert!(got.starts_with("remote "), "{got:?}");
    fwd.wait_log(&["dst=192.0.2.1:80"]);
    let log = fwd.access_log();
    assert_eq!(log.lines().count(), 2, "only the two redirected:\n{log}");
    assert!(
        !log.contains(":7001") && !log.contains("192.0.2.2"),
        "{log}"
    );
    drop(fwd);
    w.uninstall();
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn inbound_reaches_the_application_from_the_passthrough_address_except_exclusions() {
    require_ebpf!();
    let w = World::new("ei");
    let app4 = peer_recorder(&w.topo.a, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)));
    let app22 = peer_recorder(&w.topo.a, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8022)));
    w.install(&[
        "--exclude-inbound-ports",
        "8022",
        "--exclude-inbound-ips",
        "192.0.2.1/32",
    ]);
    let fwd = w.forwarder();

    let got = from_peer(&w, v4(A4, 8080), None);
    assert_eq!(got, "hello from the application", "{}", fwd.stderr());
    let peer = app4.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "::ffff:127.0.0.6",
        "v4 inbound comes from 127.0.0.6"
    );
    fwd.wait_log(&["dst=10.77.0.1:8080", "cluster=inbound"]);

    let got = from_peer(&w, v6(A6, 8080), None);
    assert_eq!(got, "hello from the application", "{}", fwd.stderr());
    let peer = app4.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        peer.ip(),
        IpAddr::V6("::6".parse().unwrap()),
        "v6 inbound comes from ::6"
    );
    fwd.wait_log(&["dst=[fd00:77::1]:8080"]);

    // Excluded port and excluded source: straight to the application.
    let got = from_peer(&w, v4(A4, 8022), None);
    assert_eq!(got, "hello from the application");
    let peer = app22.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(peer.ip().to_string(), "::ffff:10.77.0.2");
    let got = from_peer(&w, v4(A4, 8080), Some(IpAddr::V4(REMOTE4)));
    assert_eq!(got, "hello from the application");
    let peer = app4.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(peer.ip().to_string(), "::ffff:192.0.2.1");
    drop(fwd);
    w.uninstall();
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn dns_over_udp_reaches_the_proxy_and_answers_come_from_the_server_asked() {
    require_ebpf!();
    let w = World::new("ed");
    fake_upstream(&w.topo.b, Ipv4Addr::new(192, 0, 2, 99));
    w.install(&["--redirect-dns"]);
    let fwd = w.forwarder();
    // glibc's resolver (getent) with a connected UDP socket; it drops an
    // answer that does not come from the server it asked. Each family in
    // turn, through a resolv.conf bound over /etc/resolv.conf in a private
    // mount namespace.
    for server in [B4.to_string(), B6.to_string()] {
        let conf = w
            .dir
            .path()
            .join(format!("resolv-{}.conf", server.replace(':', "_")));
        std::fs::write(
            &conf,
            format!("nameserver {server}\noptions timeout:2 attempts:1\n"),
        )
        .unwrap();
        let script = format!(
            "mount --bind {} /etc/resolv.conf && exec setpriv --reuid={APP_UID} --regid={APP_UID} --clear-groups getent ahostsv4 svc.example",
            conf.display()
        );
        let out =
            w.cg.cmd(&w.topo.a, "unshare", &["-m", "sh", "-c", &script])
                .stdin(Stdio::null())
                .output()
                .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("192.0.2.99"),
            "getent via {server}: {text:?} {}; forwarder: {}",
            String::from_utf8_lossy(&out.stderr),
            fwd.stderr()
        );
    }
    let st = tproxyctl(
        &w.topo.a,
        &[
            "status",
            "-o",
            "json",
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    );
    let j = document(Doc::Status, &st.stdout);
    let dns = j["counters"]["dnsRedirected"].as_u64().unwrap();
    assert!(dns >= 2, "{j}");
    drop(fwd);
    w.uninstall();
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn reinstall_is_a_no_op_a_new_configuration_replaces_and_uninstall_leaves_nothing() {
    require_ebpf!();
    let w = World::new("eu");
    let before = w.footprint();
    w.install(&[]);
    assert!(
        w.fs.is_bpffs(),
        "install mounts a bpffs where there is none"
    );
    assert!(w.progs().join("tproxy.bpf.o").exists());
    let first = w.receipt_json();
    let ids = w.ids();
    assert!(ids.0.iter().all(|i| bpftool_ids("link").contains(i)));

    let out = w.install(&[]);
    assert!(
        stderr(&out).contains("already installed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.receipt_json(), first, "a no-op leaves the receipt alone");

    // Another configuration: new links, the old ones gone, one set attached.
    w.install(&["--exclude-outbound-ports", "22"]);
    let second = w.ids();
    assert_ne!(second.0, ids.0);
    assert_eq!(wait_gone("link", &ids.0), Vec::<u32>::new());
    assert_eq!(
        cgroup_attachments(&w.cg).len(),
        4,
        "{:?}",
        cgroup_attachments(&w.cg)
    );
    let st = tproxyctl(
        &w.topo.a,
        &["status", "--receipt", w.receipt().to_str().unwrap()],
    );
    assert!(st.status.success(), "{}", stdout(&st));
    assert!(
        stdout(&st).contains("tp_ports: Outbound port 22 excluded"),
        "{}",
        stdout(&st)
    );

    w.uninstall();
    assert_eq!(wait_gone("link", &second.0), Vec::<u32>::new());
    assert_eq!(wait_gone("prog", &second.1), Vec::<u32>::new());
    assert_eq!(wait_gone("map", &second.2), Vec::<u32>::new());
    assert_eq!(w.footprint(), before);
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn a_failure_half_way_leaves_nothing_behind() {
    require_ebpf!();
    let w = World::new("ef");
    let before = w.footprint();
    for step in [
        "load",
        "fill",
        "attach:tp_connect6",
        "attach:tp_getsockopt",
        "attach:tp_sk_lookup",
        "pin:tp_stats",
        "pin:tp_sk_lookup",
    ] {
        let out = w.run(
            &["install", "transparent-proxy"],
            &[],
            &[("TPROXYCTL_EBPF_FAIL_AT", step)],
        );
        assert_eq!(out.status.code(), Some(1), "{step}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("undone") || err.contains("nothing on the host was changed"),
            "{step}: {err}"
        );
        assert_eq!(w.footprint(), before, "after a failure at {step}");
    }
    // Over an existing install, a failed replacement keeps it as it was.
    w.install(&[]);
    let ids = w.ids();
    let receipt = w.receipt_json();
    let out = w.run(
        &["install", "transparent-proxy"],
        &["--exclude-outbound-ports", "22"],
        &[("TPROXYCTL_EBPF_FAIL_AT", "pin:tp_sk_lookup")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(w.receipt_json(), receipt);
    assert_eq!(w.ids(), ids);
    let st = tproxyctl(
        &w.topo.a,
        &["status", "--receipt", w.receipt().to_str().unwrap()],
    );
    assert!(st.status.success(), "{}", stdout(&st));
    assert_eq!(cgroup_attachments(&w.cg).len(), 4);
    w.uninstall();
    assert_eq!(w.footprint(), before);
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn dry_run_prints_the_plan_and_changes_nothing() {
    require_ebpf!();
    let w = World::new("ey");
    let before = w.footprint();
    let out = w.run(
        &["install", "transparent-proxy"],
        &[
            "--dry-run",
            "--redirect-dns",
            "--exclude-outbound-ports",
            "3306",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "attach tp_connect4 cgroup/connect4 -> ",
        "attach tp_sk_lookup netns/sk_lookup -> this network namespace",
        "attach tp_sendmsg4 cgroup/sendmsg4",
        "mount  bpffs on ",
        "map    tp_ports: Outbound port 3306 excluded",
        "map    tp_nets4: DnsServer 10.77.0.2/32",
        "map    tp_nets6: DnsServer fd00:77::2/128",
        "map    tp_nets4: Local 10.77.0.1/32",
        "pin    ",
        "ok   cgroup2",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let out = w.run(
        &["install", "transparent-proxy"],
        &["--dry-run", "-o", "json"],
        &[],
    );
    let j = document(Doc::Plan, &out.stdout);
    assert_eq!(j["mode"], "ebpf");
    assert_eq!(j["programs"].as_array().unwrap().len(), 5);
    let hooks: Vec<&str> = j["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hook"].as_str().unwrap())
        .collect();
    assert!(
        hooks.contains(&"sockOps") && hooks.contains(&"skLookup"),
        "{j}"
    );
    assert_eq!(w.footprint(), before);
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn refusals_are_clear_and_change_nothing() {
    require_ebpf!();
    let w = World::new("en");
    let before = w.footprint();
    // No instance address: kumactl's rule, exit 2.
    let out = nsenter(
        &w.topo.a,
        crate::common::bin(),
        &[
            "install",
            "transparent-proxy",
            "--ebpf-enabled",
            "--ebpf-cgroup-path",
            w.cg.arg(),
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--ebpf-instance-ip"),
        "{}",
        stderr(&out)
    );
    // A missing interface, a path that is no cgroup: preflight, exit 1.
    let out = w.run(
        &["install", "transparent-proxy"],
        &["--ebpf-tc-attach-iface", "nosuch0"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no interface nosuch0"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing on the host was changed"),
        "{}",
        stderr(&out)
    );
    let out = w.run(
        &["install", "transparent-proxy"],
        &["--ebpf-cgroup-path", w.dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a cgroup2 directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.footprint(), before);

    // A cgroup root is refused unless asked for. Safely: in a cgroup
    // namespace rooted at the test's own cgroup, whose cgroup2 mount shows
    // that cgroup as the root. (Were the refusal broken, the programs would
    // land on the test's cgroup, nowhere else.)
    let mnt = tempfile::tempdir().unwrap();
    let args = w.args(&["install", "transparent-proxy"], &[]);
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a == w.cg.arg() {
                mnt.path().display().to_string()
            } else {
                a
            }
        })
        .collect();
    let script = format!(
        "mount -t cgroup2 none {} && exec nsenter --net={} -- {} \"$@\"",
        mnt.path().display(),
        w.topo.a.path().display(),
        crate::common::bin()
    );
    let mut full = vec![
        "-C".to_string(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
    ];
    full.extend(args);
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let out = w.cg.cmd(&w.topo.a, "unshare", &full).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to attach to the cgroup root"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("--ebpf-allow-cgroup-root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.footprint(), before);
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn status_names_drift_and_uninstall_ebpf_finds_pins_without_a_receipt() {
    require_ebpf!();
    let w = World::new("es");
    w.install(&[]);
    let r = w.receipt_json();
    let dir = PathBuf::from(r["ebpf"]["pinned"]["dir"].as_str().unwrap());
    std::fs::remove_file(dir.join("link_tp_connect6")).unwrap();
    let st = tproxyctl(
        &w.topo.a,
        &["status", "--receipt", w.receipt().to_str().unwrap()],
    );
    assert_eq!(st.status.code(), Some(1), "{}", stdout(&st));
    assert!(stdout(&st).contains("DRIFT link"), "{}", stdout(&st));
    assert!(stdout(&st).contains("tp_connect6"), "{}", stdout(&st));
    let st = tproxyctl(
        &w.topo.a,
        &[
            "status",
            "-o",
            "json",
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    );
    assert_eq!(st.status.code(), Some(1));
    let j = document(Doc::Status, &st.stdout);
    assert!(!j["problems"].as_array().unwrap().is_empty(), "{j:#}");
    let gone = j["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["program"] == "tp_connect6")
        .unwrap();
    assert_eq!(gone["linkId"], Value::Null, "{j:#}");
    // A re-install repairs it.
    w.install(&[]);
    let st = tproxyctl(
        &w.topo.a,
        &["status", "--receipt", w.receipt().to_str().unwrap()],
    );
    assert!(st.status.success(), "{}", stdout(&st));

    // kumactl's `uninstall ebpf`, the receipt gone: the pins are found in
    // this namespace's directory of the bpffs.
    let ids = w.ids();
    std::fs::remove_file(w.receipt()).unwrap();
    let out = tproxyctl(
        &w.topo.a,
        &[
            "uninstall",
            "ebpf",
            "--bpffs-path",
            w.fs.arg(),
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(wait_gone("link", &ids.0), Vec::<u32>::new());
    assert!(cgroup_attachments(&w.cg).is_empty());
    let out = tproxyctl(
        &w.topo.a,
        &[
            "uninstall",
            "ebpf",
            "--bpffs-path",
            w.fs.arg(),
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No cleanup necessary"),
        "{}",
        stderr(&out)
    );
    let _ = std::io::stderr().flush();
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn verify_proves_an_ebpf_install_in_a_throwaway_cgroup_and_namespaces() {
    require_ebpf!();
    let w = World::new("ev");
    w.install(&[
        "--redirect-dns",
        "--exclude-outbound-ports",
        "3306",
        "--exclude-inbound-ports",
        "2222",
        "--exclude-outbound-ips",
        "198.18.0.0/24",
        "--exclude-outbound-ports-for-uids",
        "tcp:7777:1234",
    ]);
    let verify = || {
        tproxyctl(
            &w.topo.a,
            &[
                "verify",
                "-o",
                "json",
                "--receipt",
                w.receipt().to_str().unwrap(),
            ],
        )
    };
    let out = verify();
    let j = document(Doc::Verify, &out.stdout);
    assert!(out.status.success(), "{j:#}\n{}", stderr(&out));
    assert_eq!(j["mode"], "ebpf");
    assert_eq!(j["liveInPlace"], true);
    assert_eq!(j["behaviourProven"], true);
    let names: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "the installed programs are attached",
        "outbound TCP (IPv4) is redirected",
        "outbound TCP (IPv6) is redirected",
        "the kuma-dp UID is not redirected",
        "kuma-dp's connection to the instance address goes to the inbound port",
        "excluded outbound port 3306 bypasses",
        "UID 1234 excluded for TCP port 7777 bypasses",
        "excluded outbound address 198.18.0.0/24 bypasses",
        "inbound TCP (IPv4) is redirected",
        "inbound TCP (IPv6) is redirected",
        "excluded inbound port 2222 bypasses",
        "DNS over UDP to 10.77.0.2 is redirected",
        "DNS over UDP to fd00:77::2 is redirected",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "no {want:?} in {names:?}"
        );
    }
    // verify's own cgroup and namespaces are gone, this install untouched.
    let root = crate::ebpf_env::cgroup2_mount().unwrap();
    let leftover: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("tproxyctl-verify-")
        })
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    assert_eq!(
        cgroup_attachments(&w.cg).len(),
        object_cgroup_programs(true)
    );

    // A link gone: verify fails and says which.
    let dir = PathBuf::from(
        w.receipt_json()["ebpf"]["pinned"]["dir"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    std::fs::remove_file(dir.join("link_tp_getsockopt")).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("tp_getsockopt"), "{}", stdout(&out));
    w.uninstall();
}

/// Every key path of a JSON value (array items as `[]`).
fn key_paths(v: &Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| key_paths(x, &format!("{path}/[]"), out)),
        _ => {}
    }
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn an_ebpf_install_recorded_in_the_format_of_0_1_0_is_uninstalled() {
    require_ebpf!();
    let w = World::new("eo");
    w.install(&[
        "--redirect-dns",
        "--exclude-inbound-ports",
        "22",
        "--exclude-outbound-ips",
        "192.0.2.0/24",
        "--exclude-outbound-ports-for-uids",
        "tcp:443:1000",
    ]);
    let ids = w.ids();
    // This install's receipt, written back with the names 0.1.0 used.
    let mut old = w.receipt_json();
    let m = old.as_object_mut().unwrap();
    let v = m.remove("schemaVersion").unwrap();
    m.insert("version".into(), v);
    let uid = m.remove("kumaDpUid").unwrap();
    m.insert("uid".into(), uid);
    for l in old["ebpf"]["pinned"]["links"].as_array_mut().unwrap() {
        let kebab = match l["hook"].as_str().unwrap() {
            "sockOps" => "sock-ops",
            "skLookup" => "sk-lookup",
            h => h,
        }
        .to_string();
        l["hook"] = kebab.into();
    }
    // ... which is the shape 0.1.0 wrote (its receipt of the same install,
    // config paths and all, is tests/fixtures/receipts-0.1.0/ebpf.json).
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/receipts-0.1.0/ebpf.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (mut a, mut b) = (Default::default(), Default::default());
    key_paths(&old, "", &mut a);
    key_paths(&fixture, "", &mut b);
    assert_eq!(a, b, "the rewritten receipt has the keys of 0.1.0's");
    let hooks = |v: &Value| -> std::collections::BTreeSet<String> {
        v["ebpf"]["pinned"]["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["hook"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hooks(&old), hooks(&fixture));
    std::fs::write(w.receipt(), serde_json::to_string_pretty(&old).unwrap()).unwrap();

    let st = tproxyctl(
        &w.topo.a,
        &[
            "status",
            "-o",
            "json",
            "--receipt",
            w.receipt().to_str().unwrap(),
        ],
    );
    let j = document(Doc::Status, &st.stdout);
    assert!(st.status.success(), "{j:#}");
    assert_eq!(j["kumaDpUid"], 1);
    w.uninstall();
    assert!(!w.receipt().exists());
    assert_eq!(wait_gone("link", &ids.0), Vec::<u32>::new());
    assert!(cgroup_attachments(&w.cg).is_empty());
}

/// How many programs an install attaches to the cgroup (all but sk_lookup).
fn object_cgroup_programs(dns: bool) -> usize {
    if dns { 10 } else { 4 }
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn tc_attach_iface_limits_inbound_redirection_to_that_interface() {
    require_ebpf!();
    let w = World::new("et");
    w.topo
        .a
        .ip(&["link", "add", "dm0", "type", "veth", "peer", "name", "dm1"]);
    let app = peer_recorder(&w.topo.a, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8080)));
    w.install(&["--ebpf-tc-attach-iface", "va"]);
    let fwd = w.forwarder();
    assert_eq!(
        from_peer(&w, v4(A4, 8080), None),
        "hello from the application"
    );
    let peer = app.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "::ffff:127.0.0.6",
        "through the inbound port"
    );
    // Another interface named: what arrives on va is left alone.
    w.install(&["--ebpf-tc-attach-iface", "dm0"]);
    assert_eq!(
        from_peer(&w, v4(A4, 8080), None),
        "hello from the application"
    );
    let peer = app.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "::ffff:10.77.0.2",
        "straight to the application"
    );
    drop(fwd);
    w.uninstall();
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn a_run_killed_half_way_is_cleaned_up_by_the_next_and_runs_take_turns() {
    require_ebpf!();
    let w = World::new("ek");
    let before = w.footprint();
    // Killed (SIGABRT, no rollback) once links are pinned: the journal in
    // the receipt names what the run may have left.
    let out = w.run(
        &["install", "transparent-proxy"],
        &[],
        &[("TPROXYCTL_EBPF_FAIL_AT", "abort:pin:tp_connect6")],
    );
    assert!(!out.status.success());
    assert!(w.fs.is_bpffs(), "the killed run had mounted the bpffs");
    assert!(!cgroup_attachments(&w.cg).is_empty(), "and attached");
    w.uninstall();
    assert_eq!(w.footprint(), before);

    // Killed again; then an install finishes the job and owns everything.
    let out = w.run(
        &["install", "transparent-proxy"],
        &[],
        &[("TPROXYCTL_EBPF_FAIL_AT", "abort:pin:tp_sockops")],
    );
    assert!(!out.status.success());
    w.install(&[]);
    assert_eq!(cgroup_attachments(&w.cg).len(), 4);
    let r = w.receipt_json();
    assert!(r.get("pending").is_none(), "{r}");
    let root = PathBuf::from(r["ebpf"]["pinned"]["dir"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "one pin directory left"
    );

    // Concurrent installs of two configurations: they take turns (the host
    // lock), and one of them is what is installed, whole.
    let a = w.args(
        &["install", "transparent-proxy"],
        &["--exclude-outbound-ports", "1111"],
    );
    let b = w.args(
        &["install", "transparent-proxy"],
        &["--exclude-outbound-ports", "2222"],
    );
    let spawn = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nsenter(&w.topo.a, crate::common::bin(), &args)
            .env_remove("TPROXYCTL_RECEIPT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(a), spawn(b));
    for c in [ca, cb] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let st = tproxyctl(
        &w.topo.a,
        &["status", "--receipt", w.receipt().to_str().unwrap()],
    );
    assert!(st.status.success(), "{}", stdout(&st));
    assert_eq!(cgroup_attachments(&w.cg).len(), 4);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    w.uninstall();
    assert_eq!(w.footprint(), before);
}
