//! Pure renderers for the Universal `Dataplane`: YAML in Kuma's canonical key
//! order (the field order of [`crate::model::dataplane`]: `type, mesh, name,
//! networking{address, inbound[{port, servicePort, serviceAddress, tags}],
//! transparentProxying{redirectPortInbound, redirectPortOutbound,
//! ipFamilyMode, reachableServices, reachableBackends}}`, fields we do not
//! model after those, as written), JSON with the same structure, and the
//! Kubernetes Pod annotations that carry reachable services and backends
//! (seed 004); several Dataplanes as a YAML stream or a JSON array. No I/O,
//! no validation.

use anyhow::Context;
use indexmap::IndexMap;

use crate::model::dataplane::{Dataplane, ReachableBackends};

/// Pod annotation listing reachable `kuma.io/service` values, comma-separated.
pub const REACHABLE_SERVICES_ANNOTATION: &str = "kuma.io/transparent-proxying-reachable-services";
/// Pod annotation holding the `reachableBackends` refs as YAML (`""`: none).
pub const REACHABLE_BACKENDS_ANNOTATION: &str = "kuma.io/reachable-backends";

/// The Dataplane as YAML (canonical key order, tags in the order given).
pub fn yaml(dp: &Dataplane) -> anyhow::Result<String> {
    serde_yaml::to_string(dp).with_context(|| format!("rendering Dataplane '{}' as YAML", dp.name))
}

/// The Dataplane as pretty JSON with a trailing newline.
pub fn json(dp: &Dataplane) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(dp)
        .with_context(|| format!("rendering Dataplane '{}' as JSON", dp.name))?;
    s.push('\n');
    Ok(s)
}

/// Several Dataplanes as one YAML stream (documents separated by `---`, as
/// `kumactl apply --dry-run` prints them); one Dataplane is [`yaml`].
pub fn yaml_stream(dps: &[Dataplane]) -> anyhow::Result<String> {
    let docs = dps.iter().map(yaml).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(docs.join("---\n"))
}

/// Several Dataplanes as a JSON array; one Dataplane is [`json`] (an object).
pub fn json_stream(dps: &[Dataplane]) -> anyhow::Result<String> {
    if let [one] = dps {
        return json(one);
    }
    let mut s = serde_json::to_string_pretty(dps).context("rendering the Dataplanes as JSON")?;
    s.push('\n');
    Ok(s)
}

/// The annotations a Kubernetes Pod uses for what this Dataplane's
/// `transparentProxying` restricts: reachable services (comma list) and
/// reachable backends (the refs as YAML; an empty string for `{}`, i.e. none).
/// Empty when neither is set.
pub fn kubernetes_annotations(dp: &Dataplane) -> anyhow::Result<IndexMap<String, String>> {
    let mut out = IndexMap::new();
    let Some(tp) = dp.transparent_proxying() else {
        return Ok(out);
    };
    if !tp.reachable_services.is_empty() {
        out.insert(
            REACHABLE_SERVICES_ANNOTATION.to_string(),
            tp.reachable_services.join(","),
        );
    }
    if let Some(rb) = &tp.reachable_backends {
        let value = if rb.refs.is_empty() {
            String::new()
        } else {
            let refs_only = ReachableBackends {
                refs: rb.refs.clone(),
                extra: Default::default(),
            };
            serde_yaml::to_string(&refs_only).context("rendering reachableBackends refs as YAML")?
        };
        out.insert(REACHABLE_BACKENDS_ANNOTATION.to_string(), value);
    }
    Ok(out)
}

/// [`kubernetes_annotations`] as a YAML mapping (`{}` when there are none).
pub fn kubernetes_annotations_yaml(dp: &Dataplane) -> anyhow::Result<String> {
    let ann = kubernetes_annotations(dp)?;
    serde_yaml::to_string(&ann).context("rendering Pod annotations as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DP: &str = "\
name: demo-client
mesh: default
type: Dataplane
networking:
  transparentProxying:
    reachableBackends:
      refs:
      - port: 6379
        name: redis
        kind: MeshService
    redirectPortOutbound: 15001
    redirectPortInbound: 15006
  inbound:
  - tags:
      kuma.io/service: demo-client
    port: 8080
  address: 10.0.0.1
";

    #[test]
    fn yaml_uses_kumas_key_order_whatever_the_input_order() {
        let dp = Dataplane::from_text(DP).unwrap();
        assert_eq!(
            yaml(&dp).unwrap(),
            "\
type: Dataplane
mesh: default
name: demo-client
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags:
      kuma.io/service: demo-client
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    reachableBackends:
      refs:
      - kind: MeshService
        name: redis
        port: 6379
"
        );
    }

    #[test]
    fn json_has_the_same_structure_as_yaml() {
        let dp = Dataplane::from_text(DP).unwrap();
        let from_json: serde_json::Value = serde_json::from_str(&json(&dp).unwrap()).unwrap();
        let from_yaml: serde_json::Value = serde_yaml::from_str(&yaml(&dp).unwrap()).unwrap();
        assert_eq!(from_json, from_yaml);
        assert_eq!(from_json["networking"]["inbound"][0]["port"], 8080);
    }

    #[test]
    fn annotations_for_services_backends_and_none() {
        let mut dp = Dataplane::from_text(DP).unwrap();
        let ann = kubernetes_annotations(&dp).unwrap();
        assert_eq!(
            ann.get(REACHABLE_BACKENDS_ANNOTATION).unwrap(),
            "refs:\n- kind: MeshService\n  name: redis\n  port: 6379\n"
        );
        let tp = dp.networking.transparent_proxying.as_mut().unwrap();
        tp.reachable_backends = Some(ReachableBackends::default());
        tp.reachable_services = vec!["a_ns_svc_1".into(), "b_ns_svc_2".into()];
        let ann = kubernetes_annotations(&dp).unwrap();
        assert_eq!(
            ann.get(REACHABLE_SERVICES_ANNOTATION).unwrap(),
            "a_ns_svc_1,b_ns_svc_2"
        );
        assert_eq!(ann.get(REACHABLE_BACKENDS_ANNOTATION).unwrap(), "");
        dp.networking.transparent_proxying = None;
        assert_eq!(kubernetes_annotations_yaml(&dp).unwrap(), "{}\n");
    }
}
