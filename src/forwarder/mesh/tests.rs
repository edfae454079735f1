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
