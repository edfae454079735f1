//! Policy parsing against the seeds' own examples (copied verbatim into
//! `testdata/`), and the errors for modifications the forwarder cannot honour.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        ($name, include_str!(concat!("../testdata/", $name)))
    };
}

fn parse(files: &[(&str, &str)]) -> Result<PolicyEffect, UsageError> {
    let mut e = PolicyEffect::default();
    for (name, text) in files {
        parse_into(name, text, "default", &mut e)?;
    }
    Ok(e)
}

fn thresholds_2048() -> ClusterPatch {
    ClusterPatch {
        max_connections: Some(2048),
        max_pending_requests: Some(2048),
        max_requests: Some(2048),
        max_retries: Some(4),
        ..Default::default()
    }
}

#[test]
fn seed_threshold_examples_patch_the_ipv4_outbound_cluster() {
    for f in [
        fixture!("proxytemplate-thresholds.k8s.yaml"),
        fixture!("proxytemplate-thresholds.universal.yaml"),
        fixture!("meshproxypatch-thresholds.yaml"),
    ] {
        let e = parse(&[f]).unwrap_or_else(|e| panic!("{}: {e}", f.0));
        assert_eq!(
            e.clusters[ClusterId::OutboundV4.index()],
            thresholds_2048(),
            "{}",
            f.0
        );
        assert_eq!(
            e.clusters[ClusterId::OutboundV6.index()],
            ClusterPatch::default()
        );
        assert_eq!(e.passthrough(), None);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    }
}

#[test]
fn seed_timeout_examples_set_connect_and_idle_timeouts() {
    for f in [
        fixture!("proxytemplate-timeouts.k8s.yaml"),
        fixture!("proxytemplate-timeouts.universal.yaml"),
        fixture!("meshproxypatch-timeouts.yaml"),
    ] {
        let e = parse(&[f]).unwrap_or_else(|e| panic!("{}: {e}", f.0));
        let c = e.clusters[ClusterId::OutboundV4.index()];
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(99)), "{}", f.0);
        assert_eq!(
            c.idle_timeout,
            Some(Duration::from_secs(3 * 3600)),
            "{}",
            f.0
        );
        assert_eq!(c.max_connections, None);
    }
}

#[test]
fn seed_mesh_examples_block_passthrough() {
    for f in [
        fixture!("mesh-passthrough-off.k8s.yaml"),
        fixture!("mesh-passthrough-off.universal.yaml"),
    ] {
        let e = parse(&[f]).unwrap_or_else(|e| panic!("{}: {e}", f.0));
        assert_eq!(e.passthrough(), Some(Passthrough::None), "{}", f.0);
    }
}

#[test]
fn several_documents_in_one_file_apply_in_order() {
    let (_, a) = fixture!("proxytemplate-thresholds.universal.yaml");
    let (_, b) = fixture!("meshproxypatch-timeouts.yaml");
    let (_, c) = fixture!("mesh-passthrough-off.universal.yaml");
    let text = format!("{a}---\n{b}---\n{c}");
    let e = parse(&[("multi.yaml", &text)]).unwrap();
    let v4 = e.clusters[ClusterId::OutboundV4.index()];
    assert_eq!(v4.max_connections, Some(2048));
    assert_eq!(v4.connect_timeout, Some(Duration::from_secs(99)));
    assert_eq!(e.passthrough(), Some(Passthrough::None));
}

const MESH_PASSTHROUGH: &str = r#"
type: MeshPassthrough
name: allow-some
mesh: default
spec:
  targetRef:
    kind: Mesh
  default:
    passthroughMode: Matched
    appendMatch:
      - type: IP
        value: 192.168.19.1
        port: 10000
        protocol: tcp
      - type: CIDR
        value: 10.1.0.0/16
      - type: CIDR
        value: fd00:1::/64
        port: 443
"#;

#[test]
fn mesh_passthrough_matched_selects_by_ip_cidr_and_port() {
    let e = parse(&[("mp.yaml", MESH_PASSTHROUGH)]).unwrap();
    let p = e.passthrough().unwrap();
    let ok = |s: &str| p.allows(s.parse().unwrap());
    assert!(ok("192.168.19.1:10000"));
    assert!(!ok("192.168.19.1:10001"));
    assert!(ok("10.1.200.3:80"));
    assert!(!ok("10.2.0.1:80"));
    assert!(ok("[fd00:1::9]:443"));
    assert!(!ok("[fd00:1::9]:80"));
}

#[test]
fn mesh_passthrough_kubernetes_form_and_modes() {
    let k8s = r#"
apiVersion: kuma.io/v1alpha1
kind: MeshPassthrough
metadata:
  name: none
  namespace: kuma-system
spec:
  targetRef:
    kind: Mesh
  default:
    passthroughMode: None
"#;
    let e = parse(&[("k.yaml", k8s)]).unwrap();
    assert_eq!(e.passthrough(), Some(Passthrough::None));
    let all = k8s.replace("None", "All");
    assert_eq!(
        parse(&[("k.yaml", &all)]).unwrap().passthrough(),
        Some(Passthrough::All)
    );
}

fn err(text: &str) -> String {
    parse(&[("bad.yaml", text)]).unwrap_err().0
}

#[test]
fn modifications_that_cannot_be_honoured_are_errors_naming_them() {
    let (_, t) = fixture!("meshproxypatch-thresholds.yaml");
    let e = err(&t.replace("max_retries: 4", "max_retries: 4, track_remaining: true"));
    assert!(
        e.contains("custom-mpp-1") && e.contains("track_remaining"),
        "{e}"
    );

    let e = err(&t.replace("outbound:passthrough:ipv4", "outbound:backend"));
    assert!(
        e.contains("'outbound:backend' is not a passthrough cluster"),
        "{e}"
    );

    let e = err(&t.replace("operation: Patch", "operation: Remove"));
    assert!(
        e.contains("modification 1 (cluster Remove") && e.contains("cannot be honoured"),
        "{e}"
    );

    let (_, t) = fixture!("meshproxypatch-timeouts.yaml");
    let e = err(&t.replace("path: /connectTimeout", "path: /lbPolicy"));
    assert!(
        e.contains("lbPolicy") && e.contains("cannot be honoured"),
        "{e}"
    );
    let e = err(&t.replace("idleTimeout: \"3h\"", "statPrefix: x"));
    assert!(e.contains("statPrefix"), "{e}");
    let e = err(&t.replace("tcp_proxy\"\n", "http_connection_manager\"\n"));
    assert!(e.contains("modification 2 (networkFilter"), "{e}");

    let e = err(
        "type: MeshPassthrough\nname: d\nspec:\n  default:\n    appendMatch:\n      - type: Domain\n        value: api.example.com\n        port: 443\n        protocol: tls\n",
    );
    assert!(
        e.contains("api.example.com") && e.contains("cannot be honoured"),
        "{e}"
    );
    let e = err(
        "type: MeshPassthrough\nname: d\nspec:\n  default:\n    appendMatch:\n      - type: IP\n        value: 10.0.0.1\n        protocol: http\n",
    );
    assert!(e.contains("protocol 'http'"), "{e}");
    let e = err("type: MeshPassthrough\nname: d\nspec:\n  default:\n    passthroughMode: Some\n");
    assert!(e.contains("'Some'"), "{e}");

    let e = err(
        "type: MeshProxyPatch\nname: x\nspec:\n  default:\n    appendModifications:\n      - listener:\n          operation: Patch\n          match:\n            name: outbound:passthrough:ipv4\n",
    );
    assert!(e.contains("listener"), "{e}");
    assert!(err("type: Dataplane\nname: dp\n").contains("Dataplane"));
    assert!(err("type: TrafficRoute\nname: r\n").contains("TrafficRoute"));
    assert!(err("just text").contains("not a mapping"));
}

#[test]
fn envoy_durations() {
    assert_eq!(envoy_duration("99s"), Ok(Duration::from_secs(99)));
    assert_eq!(envoy_duration("0.5s"), Ok(Duration::from_millis(500)));
    assert_eq!(envoy_duration("3h"), Ok(Duration::from_secs(10800)));
    assert!(envoy_duration("soon").is_err());
}

#[test]
fn resources_of_another_mesh_are_ignored_with_a_warning() {
    let (_, t) = fixture!("meshproxypatch-thresholds.yaml");
    let other = t.replace("mesh: default", "mesh: other");
    let e = parse(&[("o.yaml", &other)]).unwrap();
    assert_eq!(
        e.clusters[ClusterId::OutboundV4.index()],
        ClusterPatch::default()
    );
    assert!(
        e.warnings[0].contains(
            "MeshProxyPatch custom-mpp-1 is in mesh other, not this proxy's mesh default: ignored"
        ),
        "{:?}",
        e.warnings
    );
    // A Mesh resource belongs to the mesh it names; Kubernetes policies say
    // it with the kuma.io/mesh label; no mesh at all means default.
    let (_, m) = fixture!("mesh-passthrough-off.k8s.yaml");
    let e = parse(&[("m.yaml", &m.replace("name: default", "name: other"))]).unwrap();
    assert_eq!(e.passthrough(), None);
    let k8s = "apiVersion: kuma.io/v1alpha1\nkind: MeshPassthrough\nmetadata:\n  name: p\n  labels:\n    kuma.io/mesh: other\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    passthroughMode: None\n";
    assert_eq!(parse(&[("k.yaml", k8s)]).unwrap().passthrough(), None);
    let e = parse(&[("k.yaml", &k8s.replace("other", "default"))]).unwrap();
    assert_eq!(e.passthrough(), Some(Passthrough::None));
    let bare = "type: MeshPassthrough\nname: p\nspec:\n  default:\n    passthroughMode: None\n";
    assert_eq!(
        parse(&[("b.yaml", bare)]).unwrap().passthrough(),
        Some(Passthrough::None)
    );
    // An invalid resource of another mesh is still an error.
    let bad = other.replace("max_retries: 4", "max_retries: many");
    assert!(parse(&[("o.yaml", &bad)]).is_err());
}

#[test]
fn mesh_passthrough_wins_over_the_mesh_switch_in_either_order() {
    let (_, off) = fixture!("mesh-passthrough-off.universal.yaml");
    let on = off.replace("passthrough: false", "passthrough: true");
    let e = load(&[("mp.yaml", MESH_PASSTHROUGH), ("m.yaml", off)]);
    let f = load(&[("m.yaml", off), ("mp.yaml", MESH_PASSTHROUGH)]);
    for e in [&e, &f] {
        let p = e.passthrough().unwrap();
        assert!(p.allows("10.1.200.3:80".parse().unwrap()));
        assert!(!p.allows("10.2.0.1:80".parse().unwrap()));
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains("Mesh networking.outbound.passthrough is ignored")),
            "{:?}",
            e.warnings
        );
    }
    let none = "type: MeshPassthrough\nname: n\nmesh: default\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    passthroughMode: None\n";
    for files in [
        [("n.yaml", none), ("m.yaml", on.as_str())],
        [("m.yaml", on.as_str()), ("n.yaml", none)],
    ] {
        assert_eq!(load(&files).passthrough(), Some(Passthrough::None));
    }
}

/// Through the files, as the forwarder reads them.
fn load(files: &[(&str, &str)]) -> PolicyEffect {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<std::path::PathBuf> = files
        .iter()
        .map(|(n, t)| {
            let p = dir.path().join(n);
            std::fs::write(&p, t).unwrap();
            p
        })
        .collect();
    load_files(&paths, "default").unwrap()
}

#[test]
fn thresholds_and_timeouts_that_refuse_everything_are_errors() {
    let (_, t) = fixture!("meshproxypatch-thresholds.yaml");
    let e = err(&t.replace("max_pending_requests: 2048", "max_pending_requests: 0"));
    assert!(
        e.contains("'0' for max_pending_requests") && e.contains("every connection"),
        "{e}"
    );
    parse(&[("r.yaml", &t.replace("max_retries: 4", "max_retries: 0"))]).unwrap();
    let (_, t) = fixture!("meshproxypatch-timeouts.yaml");
    let e = err(&t.replace("value: 99s", "value: 0s"));
    assert!(
        e.contains("'0s' for /connectTimeout") || e.contains("'0s'"),
        "{e}"
    );
}
