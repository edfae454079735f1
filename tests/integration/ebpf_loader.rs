//! Kernel tests of the eBPF loader driven directly (no command line): it
//! pins what it attached, reads back what it wrote, redirects for real, and
//! its removal leaves no link, program or map behind. Everything attaches to
//! a child cgroup and the namespaces of the test (see `ebpf_env`).

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use tproxyctl::config::Config;
use tproxyctl::ebpf::maps::{Contents, Facts};
use tproxyctl::ebpf::{loader, object, sys};

use crate::common::{A4, APP_UID, EXEMPT_UID, REMOTE4, Topology, tcp_recorder, v4};
use crate::ebpf_env::{
    CgForwarder, TestBpffs, TestCgroup, bpftool_ids, cgroup_attachments, wait_gone,
};
use crate::fwd_kernel::in_ns;
use crate::require_ebpf;

/// Installs `cfg` with the loader from inside `ns`, exempting UID 1.
fn install_in(
    ns: &crate::common::Netns,
    cfg: Config,
    cgroup: PathBuf,
    dir: PathBuf,
) -> (Contents, loader::Pinned) {
    in_ns(ns, move || {
        let facts = Facts {
            uid: EXEMPT_UID,
            dns_servers: vec![IpAddr::from([10, 77, 0, 2])],
            netns_cookie: sys::netns_cookie().expect("SO_NETNS_COOKIE"),
            inbound_ifindex: 0,
        };
        let c = Contents::build(&cfg, &facts).expect("contents");
        let progs = object::programs_for(&c);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        let pinned = loader::install(&c, &progs, &cgroup, &dir).expect("install");
        (c, pinned)
    })
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn loader_pins_reads_back_and_removes_everything() {
    require_ebpf!();
    let topo = Topology::new("el");
    let cg = TestCgroup::new("loader");
    let fs = TestBpffs::mounted();
    let mut cfg = Config::default();
    cfg.redirect.dns.enabled = true;
    cfg.redirect.outbound.exclude_ports = vec![3306];
    cfg.ebpf.instance_ip = Some(IpAddr::V4(A4));
    let dir = fs.path().join("tproxyctl/net-test/one");
    let (contents, pinned) = install_in(&topo.a, cfg, cg.path.clone(), dir.clone());

    assert_eq!(loader::read_contents(&dir).unwrap(), contents);
    assert_eq!(pinned.links.len(), object::PROGRAMS.len());
    let netns_ino = std::fs::metadata(topo.a.path()).unwrap().ino();
    for l in &pinned.links {
        let st = loader::link_state(l);
        assert_eq!(st.link_id, Some(l.link_id), "{}", l.program);
        assert_eq!(st.prog_tag.as_deref(), Some(l.prog_tag.as_str()));
        let want = if l.hook.on_netns() {
            netns_ino
        } else {
            cg.id()
        };
        assert_eq!(
            st.target, want,
            "{} is attached to the test's own",
            l.program
        );
    }
    // bpftool agrees: every cgroup program on the test's cgroup, nothing else.
    assert_eq!(
        cgroup_attachments(&cg).len(),
        object::PROGRAMS.len() - 1,
        "{:?}",
        cgroup_attachments(&cg)
    );
    let links: Vec<u32> = pinned.links.iter().map(|l| l.link_id).collect();
    let progs: Vec<u32> = pinned.links.iter().map(|l| l.prog_id).collect();
    let maps: Vec<u32> = pinned.maps.iter().map(|m| m.id).collect();
    assert!(links.iter().all(|i| bpftool_ids("link").contains(i)));

    let errors = loader::remove_dir(&dir);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!dir.exists());
    assert_eq!(wait_gone("link", &links), Vec::<u32>::new());
    assert_eq!(wait_gone("prog", &progs), Vec::<u32>::new());
    assert_eq!(wait_gone("map", &maps), Vec::<u32>::new());
    assert!(cgroup_attachments(&cg).is_empty());
}

#[test]
#[cfg_attr(
    not(ebpf_tests),
    ignore = "eBPF kernel test: needs root, bpftool and cgroup2 (see build.rs)"
)]
fn loader_redirects_outbound_to_the_forwarder_with_the_original_destination() {
    require_ebpf!();
    let topo = Topology::new("er");
    let cg = TestCgroup::new("redirect");
    let fs = TestBpffs::mounted();
    let server = tcp_recorder(&topo.b, v4(REMOTE4, 80), "remote");
    let mut cfg = Config::default();
    cfg.ebpf.instance_ip = Some(IpAddr::V4(A4));
    let dir = fs.path().join("tproxyctl/net-test/one");
    let (_, _pinned) = install_in(&topo.a, cfg, cg.path.clone(), dir.clone());
    let fwd = CgForwarder::start(&topo.a, &cg, &[]);

    // An application in the cgroup: through the forwarder, which saw where
    // it was going.
    let got = cg.tcp_client(&topo.a, APP_UID, v4(REMOTE4, 80));
    assert!(got.starts_with("remote "), "{got:?}; {}", fwd.stderr());
    assert!(
        server
            .recv_timeout(std::time::Duration::from_secs(5))
            .is_ok()
    );
    let line = fwd.wait_log(&["dst=192.0.2.1:80"]);
    assert!(line.contains("cluster=outbound:passthrough:ipv4"), "{line}");
    let stats = loader::read_stats(&dir).unwrap();
    assert!(stats[0] >= 1 && stats[5] >= 1, "{stats:?}");

    assert!(loader::remove_dir(&dir).is_empty());
}
