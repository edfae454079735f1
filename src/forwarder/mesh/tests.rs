//! Reading Dataplane files into the mesh: documents and lists, validation
//! errors that name the file, field and value, finding this proxy's own
//! Dataplane, reachable services and backends, and local inbounds.

use super::*;

fn dp(name: &str, address: &str, inbounds: &[(u16, &str)]) -> String {
    let mut s = format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: {address}\n  inbound:\n"
    );
    for (port, service) in inbounds {
        s += &format!("  - port: {port}\n    tags:\n      kuma.io/service: {service}\n");
    }
    s
}

fn with_tp(base: String, tp: &str) -> String {
    format!(
        "{base}  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n{tp}"
    )
}

fn loaded(file: &str, text: &str) -> Vec<Loaded> {
    parse(file, text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The mesh of B (two instances of `b`, one of `c`) and A (this proxy,
/// 10.0.0.1), with A's transparentProxying section `tp`.
fn mesh_with(tp: &str) -> Result<(Mesh, Vec<String>), UsageError> {
    let mut all = loaded(
        "mesh.yaml",
        &[
            dp("b-1", "10.0.0.2", &[(7000, "b")]),
            dp("b-2", "fd00::2", &[(7000, "b")]),
            dp("c-1", "10.0.0.3", &[(7100, "c"), (7101, "c")]),
        ]
        .join("---\n"),
    );
    all.extend(loaded(
        "a.yaml",
        &with_tp(dp("a-1", "10.0.0.1", &[(8080, "a")]), tp),
    ));
    let mut w = Vec::new();
    let here = |ip: IpAddr| ip == IpAddr::from([10, 0, 0, 1]);
    build(all, None, &here, &mut w).map(|m| (m, w))
}

fn names(m: &Mesh) -> Vec<&str> {
    m.services.iter().map(|s| s.name.as_str()).collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn documents_json_and_kumactl_lists_parse() {
    let two = format!(
        "{}---\n{}",
        dp("x", "10.0.0.2", &[(80, "x")]),
        dp("y", "10.0.0.3", &[(80, "y")])
    );
    assert_eq!(loaded("two.yaml", &two).len(), 2);
    let json = r#"{"type":"Dataplane","mesh":"default","name":"j","networking":{"address":"10.0.0.4","inbound":[{"port":81,"tags":{"kuma.io/service":"j"}}]}}"#;
    let j = loaded("j.json", json);
    assert_eq!(j[0].what, "dataplane file j.json: Dataplane j");
    let list = format!(
        "items:\n{}total: 2\nnext: null\n",
        two.split("---\n")
            .map(|d| {
                let mut lines = d.lines();
                let first = lines.next().unwrap();
                let rest: String = lines.map(|l| format!("  {l}\n")).collect();
                format!("- {first}\n{rest}")
            })
            .collect::<String>()
    );
    let l = loaded("list.yaml", &list);
    assert_eq!(
        l.iter().map(|l| l.dp.name.as_str()).collect::<Vec<_>>(),
        ["x", "y"]
    );
    assert!(
        parse("empty.yaml", "---\n")
            .unwrap_err()
            .0
            .contains("empty.yaml holds no Dataplane")
    );
}

#[test]
fn invalid_dataplanes_name_the_file_field_and_value() {
    let e = parse(
        "bad.yaml",
        &dp("x", "10.0.0.2", &[(80, "x")]).replace("port: 80", "port: 70000"),
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains("dataplane file bad.yaml: Dataplane x")
            && e.contains("'70000'")
            && e.contains("networking.inbound[0].port"),
        "{e}"
    );
    let e = parse(
        "bad.yaml",
        "type: Dataplane\nname: x\nnetworking:\n  inbound:\n  - port: eighty\n",
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains("bad.yaml: document 1") && e.contains("'eighty'"),
        "{e}"
    );
    let e = parse("bad.yaml", &dp("x", "db.example.com", &[(80, "x")]))
        .unwrap_err()
        .0;
    assert!(
        e.contains("'db.example.com'")
            && e.contains("networking.address")
            && e.contains("IP address"),
        "{e}"
    );
    let e = parse("bad.yaml", "type: Mesh\nname: default\n")
        .unwrap_err()
        .0;
    assert!(
        e.contains("bad.yaml") && e.contains("'Mesh' for type"),
        "{e}"
    );
    let e = parse("bad.yaml", "- a\n- b\n").unwrap_err().0;
    assert!(e.contains("document 1 is not a Dataplane"), "{e}");
}

#[test]
fn services_endpoints_and_the_local_dataplane_found_by_address() {
    let (m, w) = mesh_with("").unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(m.name.as_deref(), Some("default"));
    assert_eq!(
        m.local.as_deref(),
        Some("dataplane file a.yaml: Dataplane a-1")
    );
    assert_eq!(m.dataplanes, 4);
    assert_eq!(
        m.services,
        vec![
            Service {
                name: "b".into(),
                endpoints: vec![sa("10.0.0.2:7000"), sa("[fd00::2]:7000")]
            },
            Service {
                name: "c".into(),
                endpoints: vec![sa("10.0.0.3:7100"), sa("10.0.0.3:7101")]
            },
            Service {
                name: "a".into(),
                endpoints: vec![sa("10.0.0.1:8080")]
            },
        ]
    );
    assert!(m.unreachable.is_empty());
    assert_eq!(
        m.inbounds,
        vec![LocalInbound {
            addr: sa("10.0.0.1:8080"),
            workload: sa("10.0.0.1:8080")
        }]
    );
    let s = m.summary().unwrap();
    assert!(
        s.contains("b (2), c (2), a (1)") && s.contains("this proxy is dataplane file a.yaml"),
        "{s}"
    );
}

#[test]
fn reachable_services_leave_the_others_to_passthrough() {
    let (m, w) = mesh_with("    reachableServices:\n      - c\n      - cc\n").unwrap();
    assert_eq!(names(&m), ["c"]);
    assert_eq!(m.unreachable, ["b", "a"]);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("reachableServices lists 'cc'"), "{w:?}");
    assert!(
        m.summary()
            .unwrap()
            .contains("not reachable, so non-mesh: b, a")
    );
}

#[test]
fn reachable_backends_by_name_port_and_labels() {
    let refs = |r: &str| mesh_with(&format!("    reachableBackends:\n      refs:\n{r}"));
    let (m, _) = refs("      - kind: MeshService\n        name: c\n").unwrap();
    assert_eq!(names(&m), ["c"]);
    let (m, _) = refs("      - kind: MeshService\n        name: c\n        port: 7101\n").unwrap();
    assert_eq!(m.services[0].endpoints, [sa("10.0.0.3:7101")]);
    assert_eq!(m.unreachable, ["b", "a"], "c is partly reachable");
    let (m, _) =
        refs("      - kind: MeshService\n        labels:\n          kuma.io/service: b\n").unwrap();
    assert_eq!(names(&m), ["b"]);
    let (m, _) =
        refs("      - kind: MeshService\n        labels:\n          kuma.io/display-name: a\n")
            .unwrap();
    assert_eq!(names(&m), ["a"]);
    let (m, w) = refs("      - kind: MeshService\n        name: redis\n").unwrap();
    assert!(m.services.is_empty());
    assert!(w[0].contains("MeshService 'redis'"), "{w:?}");
    // `reachableBackends: {}`: nothing is reachable.
    let (m, _) = mesh_with("    reachableBackends: {}\n").unwrap();
    assert!(m.services.is_empty());
    assert_eq!(m.unreachable, ["b", "c", "a"]);
    // Both lists: what either admits.
    let (m, _) = mesh_with(
        "    reachableServices: [a]\n    reachableBackends:\n      refs:\n      - kind: MeshService\n        name: b\n",
    )
    .unwrap();
    assert_eq!(names(&m), ["b", "a"]);
}

#[test]
fn unsupported_backend_refs_are_errors_naming_field_and_value() {
    let e = mesh_with(
        "    reachableBackends:\n      refs:\n      - kind: MeshService\n        name: b\n      - kind: MeshExternalService\n        name: mes-http\n",
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains("a.yaml: Dataplane a-1")
            && e.contains(
                "reachableBackends.refs[1].kind 'MeshExternalService' cannot be honoured"
            ),
        "{e}"
    );
    // A namespace: refused in any Universal Dataplane by the model's validation.
    let e = parse(
        "a.yaml",
        &with_tp(
            dp("a-1", "10.0.0.1", &[(8080, "a")]),
            "    reachableBackends:\n      refs:\n      - kind: MeshService\n        name: b\n        namespace: kuma-demo\n",
        ),
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains(
            "invalid value 'kuma-demo' for networking.transparentProxying.reachableBackends.refs[0].namespace: \
             a Universal Dataplane's refs have no namespace"
        ),
        "{e}"
    );
    // Another Dataplane's refs are not this proxy's business.
    let mut all = loaded(
        "b.yaml",
        &with_tp(
            dp("b-1", "10.0.0.2", &[(7000, "b")]),
            "    reachableBackends:\n      refs:\n      - kind: MeshMultiZoneService\n        labels:\n          x: y\n",
        ),
    );
    all.extend(loaded("a.yaml", &dp("a-1", "10.0.0.1", &[(8080, "a")])));
    let here = |ip: IpAddr| ip == IpAddr::from([10, 0, 0, 1]);
    build(all, None, &here, &mut Vec::new()).unwrap();
}

#[test]
fn finding_this_proxys_dataplane() {
    let all = || {
        let mut v = loaded("b.yaml", &dp("b-1", "10.0.0.2", &[(7000, "b")]));
        v.extend(loaded(
            "a.yaml",
            &with_tp(
                dp("a-1", "10.0.0.1", &[(8080, "a")]),
                "    reachableServices: [a]\n",
            ),
        ));
        v
    };
    let nowhere = |_: IpAddr| false;
    let m = build(all(), None, &nowhere, &mut Vec::new()).unwrap();
    assert_eq!(m.local, None);
    assert_eq!(names(&m), ["b", "a"], "no local Dataplane: all reachable");
    assert!(m.summary().unwrap().contains("no local Dataplane"));
    // Given explicitly (and also among --dataplane: the same one twice is fine).
    let local = all().pop();
    let m = build(all(), local, &nowhere, &mut Vec::new()).unwrap();
    assert_eq!(
        m.local.as_deref(),
        Some("dataplane file a.yaml: Dataplane a-1")
    );
    assert_eq!(names(&m), ["a"]);
    // Two with an address of this host.
    let everywhere = |_: IpAddr| true;
    let e = build(all(), None, &everywhere, &mut Vec::new())
        .unwrap_err()
        .0;
    assert!(
        e.contains("--local-dataplane") && e.contains("b-1 at 10.0.0.2"),
        "{e}"
    );
    // The same name with different contents.
    let mut v = all();
    v.extend(loaded("other.yaml", &dp("b-1", "10.0.0.9", &[(7000, "b")])));
    let e = build(v, None, &nowhere, &mut Vec::new()).unwrap_err().0;
    assert!(
        e.contains("b.yaml: Dataplane b-1 and dataplane file other.yaml"),
        "{e}"
    );
}

#[test]
fn meshes_endpoint_clashes_and_cluster_names() {
    let nowhere = |_: IpAddr| false;
    let mut v = loaded("b.yaml", &dp("b-1", "10.0.0.2", &[(7000, "b")]));
    v.extend(loaded(
        "o.yaml",
        &dp("o-1", "10.0.0.5", &[(7000, "o")]).replace("mesh: default", "mesh: other"),
    ));
    let e = build(v.clone(), None, &nowhere, &mut Vec::new())
        .unwrap_err()
        .0;
    assert!(e.contains("several meshes (default, other)"), "{e}");
    let here = |ip: IpAddr| ip == IpAddr::from([10, 0, 0, 2]);
    let mut w = Vec::new();
    let m = build(v, None, &here, &mut w).unwrap();
    assert_eq!(names(&m), ["b"]);
    assert!(
        w[0].contains("o-1 is in mesh other, not default: ignored"),
        "{w:?}"
    );

    let mut v = loaded("b.yaml", &dp("b-1", "10.0.0.2", &[(7000, "b")]));
    v.extend(loaded("c.yaml", &dp("c-1", "10.0.0.2", &[(7000, "c")])));
    let e = build(v, None, &nowhere, &mut Vec::new()).unwrap_err().0;
    assert!(e.contains("10.0.0.2:7000 is an inbound of both"), "{e}");

    let v = loaded(
        "p.yaml",
        &dp("p-1", "10.0.0.2", &[(7000, "outbound:passthrough:ipv4")]),
    );
    let e = build(v, None, &nowhere, &mut Vec::new()).unwrap_err().0;
    assert!(
        e.contains("'outbound:passthrough:ipv4' has the name of a passthrough cluster"),
        "{e}"
    );
}

#[test]
fn local_inbounds_deliver_to_service_address_and_port() {
    let text = "type: Dataplane\nmesh: default\nname: a-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 15000\n    servicePort: 5000\n    serviceAddress: 127.0.0.1\n    tags:\n      kuma.io/service: a\n  - port: 8081\n    address: 10.0.0.7\n    tags:\n      kuma.io/service: a-admin\n";
    let local = loaded("a.yaml", text).pop();
    let m = build(Vec::new(), local, &|_| false, &mut Vec::new()).unwrap();
    assert_eq!(
        m.inbounds,
        vec![
            LocalInbound {
                addr: sa("10.0.0.1:15000"),
                workload: sa("127.0.0.1:5000")
            },
            LocalInbound {
                addr: sa("10.0.0.7:8081"),
                workload: sa("10.0.0.7:8081")
            },
        ]
    );
    assert_eq!(m.inbounds[0].cluster_name(), "localhost:5000");
    // Other proxies reach the service at address:port, not the workload's.
    assert_eq!(m.services[0].endpoints, [sa("10.0.0.1:15000")]);
    assert_eq!(m.services[1].endpoints, [sa("10.0.0.7:8081")]);

    let clash = text.replace(
        "kuma.io/service: a-admin",
        "kuma.io/service: localhost:5000",
    );
    let e = build(
        Vec::new(),
        loaded("a.yaml", &clash).pop(),
        &|_| false,
        &mut Vec::new(),
    )
    .unwrap_err()
    .0;
    assert!(e.contains("'localhost:5000'"), "{e}");
}

#[test]
fn a_backend_ref_port_that_matches_no_inbound_is_a_warning() {
    let refs = |r: &str| mesh_with(&format!("    reachableBackends:\n      refs:\n{r}"));
    let (m, w) = refs("      - kind: MeshService\n        name: c\n        port: 7101\n").unwrap();
    assert_eq!(names(&m), ["c"]);
    assert!(w.is_empty(), "{w:?}");
    // 9999 is nobody's inbound port (servicePort would not count either).
    let (m, w) = refs("      - kind: MeshService\n        name: c\n        port: 9999\n").unwrap();
    assert!(m.services.is_empty());
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("refs[0].port 9999 matches no inbound of MeshService 'c'"),
        "{w:?}"
    );
}

/// Dataplane `i` of a generated mesh: one inbound on `10.x.y.z:8080` of
/// service `svc-<i % 500>`, built without YAML (the parser has its own tests).
fn generated(i: u32) -> Loaded {
    use crate::model::dataplane::{Inbound, Networking};
    let name = format!("dp-{i}");
    let [_, a, b, c] = (0x0a00_0000 + i).to_be_bytes();
    let inbound = Inbound {
        port: 8080,
        tags: [("kuma.io/service".to_string(), format!("svc-{}", i % 500))]
            .into_iter()
            .collect(),
        ..Inbound::default()
    };
    Loaded {
        what: format!("dataplane file big.yaml: Dataplane {name}"),
        dp: Box::new(Dataplane {
            kind: Some("Dataplane".into()),
            mesh: Some("default".into()),
            name,
            networking: Networking {
                address: format!("10.{a}.{b}.{c}"),
                inbound: vec![inbound],
                ..Networking::default()
            },
            ..Dataplane::default()
        }),
    }
}

#[test]
fn a_mesh_of_50k_dataplanes_still_finds_duplicates_and_conflicts() {
    const N: u32 = 50_000;
    let all = || (0..N).map(generated).collect::<Vec<_>>();
    let nowhere = |_: IpAddr| false;

    // The same Dataplane twice (first and last) is one member.
    let mut v = all();
    v.push(generated(0));
    let m = build(v, None, &nowhere, &mut Vec::new()).unwrap();
    assert_eq!(m.dataplanes, N as usize);
    assert_eq!(m.services.len(), 500);
    assert!(m.services.iter().all(|s| s.endpoints.len() == 100));
    // svc-7's last instance is Dataplane 7 + 99 * 500 = 49507.
    assert_eq!(m.services[7].endpoints[99], sa("10.0.193.99:8080"));

    // The same name with other contents, far apart.
    let mut v = all();
    let mut other = generated(12_345);
    other.what = "dataplane file late.yaml: Dataplane dp-12345".into();
    other.dp.networking.address = "192.0.2.1".into();
    v.push(other);
    let e = build(v, None, &nowhere, &mut Vec::new()).unwrap_err().0;
    assert!(
        e.contains(
            "big.yaml: Dataplane dp-12345 and dataplane file late.yaml: Dataplane dp-12345 are both"
        ),
        "{e}"
    );

    // Another Dataplane on an inbound address:port already taken.
    let mut v = all();
    let mut clash = generated(N + 1);
    clash.dp.networking.address = "10.0.144.33".into();
    v.push(clash);
    let e = build(v, None, &nowhere, &mut Vec::new()).unwrap_err().0;
    assert!(
        e.contains("10.0.144.33:8080 is an inbound of both dataplane file big.yaml: Dataplane dp-36897 and dataplane file big.yaml: Dataplane dp-50001"),
        "{e}"
    );
}

#[test]
fn a_directory_is_read_file_by_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("b.yaml", &dp("b-1", "10.0.0.2", &[(7000, "b")]));
    write("a.yml", &dp("a-1", "10.0.0.3", &[(7000, "a")]));
    write(
        "c.json",
        r#"{"type":"Dataplane","mesh":"default","name":"c-1","networking":{"address":"10.0.0.4","inbound":[{"port":81,"tags":{"kuma.io/service":"c"}}]}}"#,
    );
    write("README.md", "not a Dataplane");
    write(".hidden.yaml", "not: [valid");
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let all = read_files(dir.path(), "--dataplane").unwrap();
    let names: Vec<&str> = all.iter().map(|l| l.dp.name.as_str()).collect();
    assert_eq!(names, ["a-1", "b-1", "c-1"]);
    assert!(
        all[1].what.ends_with("b.yaml: Dataplane b-1"),
        "{}",
        all[1].what
    );
    let m = load(&[dir.path()], None, None, &mut Vec::new()).unwrap();
    assert_eq!(m.dataplanes, 3);

    write("d.yaml", "type: Dataplane\nname: d\n");
    let e = read_files(dir.path(), "--dataplane").unwrap_err().0;
    assert!(e.contains("d.yaml: Dataplane d is not valid"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = read_files(empty.path(), "--dataplane").unwrap_err().0;
    assert!(e.contains("is a directory without *.yaml"), "{e}");
}

#[test]
fn label_refs_match_whatever_label_they_are_filed_under() {
    // Many endpoints carry `zone: z1`, few `version: v2`: a ref with both is
    // filed under the rarer one and must still see every label.
    let mut docs = Vec::new();
    for i in 0..40u16 {
        let version = if i % 10 == 0 { "v2" } else { "v1" };
        docs.push(format!(
            "type: Dataplane\nmesh: default\nname: s-{i}\nlabels:\n  zone: z1\nnetworking:\n  address: 10.0.1.{i}\n  inbound:\n  - port: 7000\n    tags:\n      kuma.io/service: s{}\n      version: {version}\n",
            i % 4
        ));
    }
    let refs = "    reachableBackends:\n      refs:\n      - kind: MeshService\n        labels:\n          zone: z1\n          version: v2\n      - kind: MeshService\n        labels:\n          kuma.io/display-name: s3\n          zone: z1\n      - kind: MeshService\n        labels:\n          zone: nowhere\n";
    let mut all = loaded("mesh.yaml", &docs.join("---\n"));
    all.extend(loaded(
        "a.yaml",
        &with_tp(dp("a-1", "10.0.0.1", &[(8080, "a")]), refs),
    ));
    let here = |ip: IpAddr| ip == IpAddr::from([10, 0, 0, 1]);
    let m = build(all, None, &here, &mut Vec::new()).unwrap();
    let got: Vec<(&str, Vec<SocketAddr>)> = m
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.endpoints.clone()))
        .collect();
    let at = |i: u8| sa(&format!("10.0.1.{i}:7000"));
    // version v2: s-0, s-10, s-20, s-30 (services s0, s2, s0, s2); display-name
    // s3: every fourth. In order of first appearance.
    assert_eq!(
        got,
        vec![
            ("s0", vec![at(0), at(20)]),
            ("s3", (0..10).map(|k| at(4 * k + 3)).collect()),
            ("s2", vec![at(10), at(30)]),
        ]
    );
    assert_eq!(m.unreachable, ["s1", "a"]);
}

#[test]
fn this_hosts_addresses_are_read_once() {
    let here = LocalAddrs::of_this_host();
    assert!(here.contains(IpAddr::from([127, 0, 0, 1])));
    assert!(here.contains("::1".parse().unwrap()));
    assert!(!here.contains(IpAddr::from([192, 0, 2, 213])));
}

#[test]
fn the_summary_of_a_large_mesh_stays_one_short_line() {
    let m = build(
        (0..5_000).map(generated).collect(),
        None,
        &|_| false,
        &mut Vec::new(),
    )
    .unwrap();
    let s = m.summary().unwrap();
    assert!(
        s.starts_with(
            "mesh default: 5000 Dataplane(s), 500 reachable service(s): svc-0 (10), svc-1 (10),"
        ) && s.contains("svc-19 (10) and 480 more; no local Dataplane"),
        "{s}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    // serde_yaml would let a struct's map take the last value silently; the
    // generic value every document goes through refuses the file instead.
    let base = dp("x", "10.0.0.2", &[(80, "x")]);
    for (extra, key) in [
        ("labels: {a: b, a: c}\n", "a"),
        ("probes: 1\nprobes: 2\n", "probes"),
    ] {
        let e = parse("d.yaml", &format!("{base}{extra}")).unwrap_err().0;
        assert!(
            e.contains("document 1 is not valid YAML or JSON")
                && e.contains(&format!("duplicate entry with key \"{key}\"")),
            "{e}"
        );
    }
}

#[test]
fn a_dataplane_read_from_its_value_equals_one_read_from_text() {
    // Lenient and unusual forms: the direct path must give what the text
    // path gives, or fail and leave it to the text path.
    let docs = [
        dp("plain", "10.0.0.1", &[(7000, "b")]),
        "type: Dataplane\nmesh: default\nname: lenient\nlabels: {team: a, n: 1}\nnetworking:\n  address: \"10.0.0.2\"\n  inbound:\n  - port: \"7001\"\n    servicePort: 7100\n    serviceAddress: 127.0.0.1\n    tags: &t\n      kuma.io/service: c\n      version: 2\n      canary: true\n  - port: 7002\n    tags: *t\n".into(),
        "type: Dataplane\nmesh: 123\nname: 456\nnetworking:\n  address: 10.0.0.3\n  inbound:\n  - port: 7003\n    tags:\n      kuma.io/service: d\n".into(),
        "type: Dataplane\nmesh: default\nname: nulls\nlabels:\nnetworking:\n  address: 10.0.0.4\n  advertisedAddress: ~\n  inbound:\n  - port:\n    servicePort:\n    tags:\n      kuma.io/service: e\n".into(),
        "type: Dataplane\nmesh: default\nname: tp\nnetworking:\n  address: fd00::5\n  inbound:\n  - port: 80\n    address: fd00::6\n    tags:\n      kuma.io/service: f\n  transparentProxying:\n    redirectPortInbound: \"15006\"\n    redirectPortOutbound: 15001\n    ipFamilyMode: ipv4\n    reachableServices: [a, b]\n    reachableBackends:\n      refs:\n      - kind: MeshService\n        name: a\n        port: \"80\"\n      - kind: MeshService\n        labels: {kuma.io/zone: z, n: 2}\n    unknownKnob: {deep: [1, {x: y}]}\n".into(),
        "type: Dataplane\nmesh: default\nname: extras\nmetrics:\n  enabledForProxy: true\n  conf: {port: 5670, path: /metrics}\nprobes: {port: 9000, endpoints: [{inboundPort: 80, path: /x}]}\nnetworking:\n  address: 10.0.0.7\n  gateway: {type: BUILTIN, tags: {kuma.io/service: gw}}\n  outbound: [{port: 1, tags: {kuma.io/service: q}}]\n".into(),
        "type: Dataplane\nmesh: default\nname: strange\nnetworking:\n  address: !!str 10.0.0.8\n  inbound:\n  - port: 80.0\n    tags:\n      kuma.io/service: !custom g\n".into(),
        "type: Dataplane\nmesh: default\nname: big\nnetworking:\n  address: 10.0.0.9\n  inbound:\n  - port: 4294967296\n    tags: {kuma.io/service: h}\n".into(),
        r#"{"type":"Dataplane","mesh":"default","name":"json","networking":{"address":"10.0.0.10","inbound":[{"port":81,"tags":{"kuma.io/service":"j","weight":1.5}}]}}"#.into(),
    ];
    let mut direct = 0;
    for doc in docs {
        let v: Value = serde_yaml::from_str(&doc).unwrap();
        let text = Dataplane::from_text(&serde_yaml::to_string(&v).unwrap());
        if let Ok(d) = Dataplane::deserialize(&v) {
            direct += 1;
            assert_eq!(Some(&d), text.as_ref().ok(), "{doc}");
        }
        assert_eq!(
            from_value(&v).map_err(|e| e.to_string()),
            text.map_err(|e| e.to_string()),
            "{doc}"
        );
    }
    assert!(direct >= 5, "the direct path was taken {direct} times");
}
