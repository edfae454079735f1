//! Policy files given with `--policy`: the seeds' `ProxyTemplate` and
//! `MeshProxyPatch` examples (Kubernetes and Universal forms) that change the
//! passthrough clusters' circuit breakers and timeouts, `Mesh`
//! `networking.outbound.passthrough`, and `MeshPassthrough` (All / None /
//! Matched with IP, CIDR and port matches). Parsing only: the result is a
//! [`PolicyEffect`] of plain values. Any modification this forwarder cannot
//! honour is a [`UsageError`] naming the file, the resource and the
//! modification. `Dataplane` resources (mesh destinations) are not read here
//! but by `mesh.rs`; a `Mesh` / `MeshPassthrough` switch applies to non-mesh
//! traffic only (see `route.rs`).
//!
//! Kuma's selection rules: a resource of another mesh than this proxy's is
//! ignored with a warning (a `Mesh` resource by its name, a policy by its
//! `mesh` field or `kuma.io/mesh` label, `default` when it has neither), and
//! when a `MeshPassthrough` applies, `Mesh` `networking.outbound.passthrough`
//! is ignored, whatever the order of the files.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::value_text;
use ipnet::IpNet;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::cluster::{ClusterId, ClusterPatch};
use crate::error::UsageError;

/// Which non-mesh outbound destinations may pass (mesh destinations always do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Passthrough {
    /// Everything (the default).
    #[default]
    All,
    /// Nothing: `Mesh` passthrough false, or `passthroughMode: None`.
    None,
    /// Only destinations matching one of these.
    Matched(Vec<PassMatch>),
}

impl Passthrough {
    /// True when no non-mesh destination may pass.
    pub fn blocks_everything(&self) -> bool {
        match self {
            Passthrough::All => false,
            Passthrough::None => true,
            Passthrough::Matched(m) => m.is_empty(),
        }
    }

    /// True when a connection to `dst` may pass.
    pub fn allows(&self, dst: SocketAddr) -> bool {
        match self {
            Passthrough::All => true,
            Passthrough::None => false,
            Passthrough::Matched(m) => m.iter().any(|m| m.matches(dst)),
        }
    }
}

/// One `appendMatch` entry of type IP or CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassMatch {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl PassMatch {
    pub fn matches(&self, dst: SocketAddr) -> bool {
        self.net.contains(&dst.ip()) && self.port.is_none_or(|p| p == dst.port())
    }
}

/// What all policy files together change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyEffect {
    /// Per passthrough cluster, indexed by [`ClusterId::index`].
    pub clusters: [ClusterPatch; 4],
    /// The modifications that name no cluster or listener: Envoy applies
    /// them to every cluster, so they also reach the mesh service clusters.
    pub all: ClusterPatch,
    /// `Mesh` `networking.outbound.passthrough` (the last `Mesh` that sets it).
    pub mesh_switch: Option<bool>,
    /// The last `MeshPassthrough`, which takes precedence over `mesh_switch`.
    pub mesh_passthrough: Option<Passthrough>,
    pub warnings: Vec<String>,
}

impl PolicyEffect {
    /// Which non-mesh destinations may pass: `MeshPassthrough` when one
    /// applies (Kuma ignores `Mesh` `networking.outbound.passthrough` then),
    /// else the `Mesh` switch; `None` when no file says anything about it.
    pub fn passthrough(&self) -> Option<Passthrough> {
        match (&self.mesh_passthrough, self.mesh_switch) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(true)) => Some(Passthrough::All),
            (None, Some(false)) => Some(Passthrough::None),
            (None, None) => None,
        }
    }

    /// Applies one modification to the clusters it matched (and to every
    /// cluster when it named none).
    fn merge(&mut self, clusters: &[ClusterId], all: bool, patch: &ClusterPatch) {
        for c in clusters {
            self.clusters[c.index()].merge(patch);
        }
        if all {
            self.all.merge(patch);
        }
    }
}

/// Reads and applies every file in order (later files win), for a proxy of
/// mesh `mesh`.
pub fn load_files(paths: &[impl AsRef<Path>], mesh: &str) -> Result<PolicyEffect, UsageError> {
    let mut effect = PolicyEffect::default();
    for p in paths {
        let p = p.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| {
            UsageError::new(format!("cannot read policy file {}: {e}", p.display()))
        })?;
        parse_into(&p.display().to_string(), &text, mesh, &mut effect)?;
    }
    if effect.mesh_passthrough.is_some() && effect.mesh_switch.is_some() {
        effect.warnings.push(
            "a MeshPassthrough policy applies, so Mesh networking.outbound.passthrough is ignored (as in Kuma)"
                .to_string(),
        );
    }
    Ok(effect)
}

/// Parses one file's text (several YAML documents allowed) into `effect`;
/// resources of another mesh than `mesh` are checked, then left out with a
/// warning.
pub fn parse_into(
    file: &str,
    text: &str,
    mesh: &str,
    effect: &mut PolicyEffect,
) -> Result<(), UsageError> {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| {
            UsageError::new(format!(
                "policy file {file}: document {} is not valid YAML: {e}",
                i + 1
            ))
        })?;
        if value.is_null() {
            continue;
        }
        let Some(map) = value.as_mapping() else {
            return Err(UsageError::new(format!(
                "policy file {file}: document {} is not a mapping (expected a resource with type or kind)",
                i + 1
            )));
        };
        let res = Resource::new(file, i + 1, map)?;
        if res.mesh == mesh {
            res.apply(effect)?;
        } else {
            // Still checked: a file that is wrong stays an error.
            res.apply(&mut PolicyEffect::default())?;
            effect.warnings.push(format!(
                "{} is in mesh {}, not this proxy's mesh {mesh}: ignored",
                res.what, res.mesh
            ));
        }
    }
    Ok(())
}

/// One resource in either form: Universal (`type`, `name`, fields at the top)
/// or Kubernetes (`kind`, `metadata.name`, fields under `spec`).
struct Resource<'a> {
    kind: String,
    /// The mesh it belongs to: a `Mesh`'s own name, else its `mesh` field
    /// or `kuma.io/mesh` label, else `default`.
    mesh: String,
    /// `policy file F: ProxyTemplate custom-template-1`
    what: String,
    /// The fields: the top level (Universal) or `spec` (Kubernetes).
    body: &'a Mapping,
}

fn get<'a>(m: &'a Mapping, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| m.get(*k))
}

impl<'a> Resource<'a> {
    fn new(file: &str, doc: usize, map: &'a Mapping) -> Result<Self, UsageError> {
        let kind = get(map, &["type", "kind"]).map(value_text).ok_or_else(|| {
            UsageError::new(format!(
                "policy file {file}: document {doc} has neither 'type' (Universal) nor 'kind' (Kubernetes)"
            ))
        })?;
        // Kubernetes resources name themselves in metadata; Universal ones at
        // the top. New-style policies keep their fields under `spec` in both
        // forms, so the body is `spec` whenever there is one.
        let name = map
            .get("metadata")
            .and_then(Value::as_mapping)
            .and_then(|m| m.get("name"))
            .or_else(|| map.get("name"))
            .map(value_text)
            .unwrap_or_else(|| format!("(document {doc})"));
        let mesh = if kind == "Mesh" {
            name.clone()
        } else {
            map.get("mesh")
                .or_else(|| {
                    map.get("metadata")
                        .and_then(|m| m.get("labels"))
                        .and_then(|l| l.get("kuma.io/mesh"))
                })
                .map(value_text)
                .unwrap_or_else(|| "default".to_string())
        };
        let body = match map.get("spec") {
            None => map,
            Some(spec) => spec.as_mapping().ok_or_else(|| {
                UsageError::new(format!(
                    "policy file {file}: {kind} {name}: 'spec' must be a mapping"
                ))
            })?,
        };
        Ok(Resource {
            what: format!("policy file {file}: {kind} {name}"),
            kind,
            mesh,
            body,
        })
    }

    fn err(&self, msg: impl std::fmt::Display) -> UsageError {
        UsageError::new(format!("{}: {msg}", self.what))
    }

    fn apply(&self, effect: &mut PolicyEffect) -> Result<(), UsageError> {
        match self.kind.as_str() {
            "ProxyTemplate" => {
                self.check_selectors(effect);
                let conf = self.body.get("conf").and_then(Value::as_mapping);
                let mods = conf.and_then(|c| c.get("modifications"));
                self.modifications(mods, effect)
            }
            "MeshProxyPatch" => {
                self.check_target_ref(effect);
                let default = self.body.get("default").and_then(Value::as_mapping);
                let mods = default.and_then(|d| d.get("appendModifications"));
                self.modifications(mods, effect)
            }
            "Mesh" => {
                let pass = self
                    .body
                    .get("networking")
                    .and_then(|n| n.get("outbound"))
                    .and_then(|o| o.get("passthrough"));
                match pass {
                    None | Some(Value::Null) => Ok(()),
                    Some(Value::Bool(b)) => {
                        effect.mesh_switch = Some(*b);
                        Ok(())
                    }
                    Some(other) => Err(self.err(format!(
                        "invalid value '{}' for networking.outbound.passthrough: expected true or false",
                        value_text(other)
                    ))),
                }
            }
            "MeshPassthrough" => {
                self.check_target_ref(effect);
                let default = self.body.get("default").and_then(Value::as_mapping);
                effect.mesh_passthrough = Some(self.mesh_passthrough(default)?);
                Ok(())
            }
            "Dataplane" => Err(self.err(
                "Dataplane resources are not read by --policy; give them with --dataplane (the mesh's data planes) or --local-dataplane (this proxy's own)",
            )),
            other => Err(self.err(format!(
                "resource type '{other}' is not supported (supported: ProxyTemplate, MeshProxyPatch, Mesh, MeshPassthrough)"
            ))),
        }
    }

    /// ProxyTemplate selectors cannot be evaluated without a Dataplane: the
    /// template is applied to this forwarder; a selector narrower than
    /// `kuma.io/service: "*"` gets a warning.
    fn check_selectors(&self, effect: &mut PolicyEffect) {
        let Some(Value::Sequence(sels)) = self.body.get("selectors") else {
            return;
        };
        for s in sels {
            let m = s.get("match").and_then(Value::as_mapping);
            let all = m.is_some_and(|m| {
                m.len() == 1 && m.get("kuma.io/service").map(value_text).as_deref() == Some("*")
            });
            if !all {
                effect.warnings.push(format!(
                    "{}: selector {} cannot be evaluated by the forwarder; the template is applied",
                    self.what,
                    value_text(s)
                ));
            }
        }
    }

    fn check_target_ref(&self, effect: &mut PolicyEffect) {
        let kind = self
            .body
            .get("targetRef")
            .and_then(|t| t.get("kind"))
            .map(value_text);
        if let Some(k) = kind
            && k != "Mesh"
        {
            effect.warnings.push(format!(
                "{}: targetRef kind {k} cannot be evaluated by the forwarder; the policy is applied",
                self.what
            ));
        }
    }

    fn modifications(
        &self,
        mods: Option<&Value>,
        effect: &mut PolicyEffect,
    ) -> Result<(), UsageError> {
        let items = match mods {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                return Err(self.err(format!(
                    "modifications must be a list, found '{}'",
                    value_text(other)
                )));
            }
        };
        for (i, m) in items.iter().enumerate() {
            let n = i + 1;
            let Some(map) = m.as_mapping().filter(|m| m.len() == 1) else {
                return Err(self.err(format!(
                    "modification {n} must be a mapping with one key (cluster, listener, networkFilter, httpFilter or virtualHost)"
                )));
            };
            let (key, body) = map.iter().next().expect("one entry");
            let key = value_text(key);
            let body = body
                .as_mapping()
                .ok_or_else(|| self.err(format!("modification {n} ({key}) must be a mapping")))?;
            let op = body.get("operation").map(value_text).unwrap_or_default();
            let match_ = body.get("match").and_then(Value::as_mapping);
            let mname = match_.and_then(|m| m.get("name")).map(value_text);
            let label = format!(
                "modification {n} ({key} {} {})",
                if op.is_empty() { "?" } else { &op },
                mname.as_deref().unwrap_or("(no name)")
            );
            if !op.eq_ignore_ascii_case("patch") {
                return Err(self.err(format!(
                    "{label} cannot be honoured: only 'patch' of the passthrough clusters and of the passthrough tcp_proxy is supported"
                )));
            }
            match key.as_str() {
                "cluster" => self.cluster_mod(&label, body, match_, effect)?,
                "networkFilter" => self.filter_mod(&label, body, match_, effect)?,
                _ => {
                    return Err(self.err(format!(
                        "{label} cannot be honoured: the forwarder has no Envoy {key}s; only cluster and networkFilter patches of the passthrough are supported"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The passthrough clusters a modification's match selects: its name, or
    /// all four; true when it names none (every cluster, mesh ones too).
    fn matched_clusters(
        &self,
        label: &str,
        match_: Option<&Mapping>,
        name_key: &str,
    ) -> Result<(Vec<ClusterId>, bool), UsageError> {
        if let Some(m) = match_ {
            for k in m.keys() {
                let k = value_text(k);
                if k != "name" && k != name_key && k != "origin" {
                    return Err(self.err(format!(
                        "{label} cannot be honoured: match key '{k}' is not supported (name{} only)",
                        if name_key == "name" {
                            String::new()
                        } else {
                            format!(", {name_key}")
                        }
                    )));
                }
            }
        }
        let name = match_.and_then(|m| m.get(name_key)).map(value_text);
        match name {
            None => Ok((ClusterId::ALL.to_vec(), true)),
            Some(n) => ClusterId::by_name(&n).map(|c| (vec![c], false)).ok_or_else(|| {
                self.err(format!(
                    "{label} cannot be honoured: '{n}' is not a passthrough cluster or listener (the forwarder has {}; patches of mesh service clusters by name are not supported)",
                    ClusterId::ALL.map(|c| c.name()).join(", ")
                ))
            }),
        }
    }

    fn cluster_mod(
        &self,
        label: &str,
        body: &Mapping,
        match_: Option<&Mapping>,
        effect: &mut PolicyEffect,
    ) -> Result<(), UsageError> {
        let (clusters, all) = self.matched_clusters(label, match_, "name")?;
        let mut patch = ClusterPatch::default();
        if let Some(v) = body.get("value") {
            let value = parse_value(v).map_err(|e| self.err(format!("{label}: value: {e}")))?;
            let map = value.as_mapping().ok_or_else(|| {
                self.err(format!(
                    "{label}: value must be a mapping of cluster fields"
                ))
            })?;
            for (k, v) in map {
                self.cluster_field(label, &value_text(k), v, &mut patch)?;
            }
        }
        self.json_patches(label, body, &mut patch, |me, path, v, patch| {
            let field = path.trim_start_matches('/');
            me.cluster_path(label, field, v, patch)
        })?;
        effect.merge(&clusters, all, &patch);
        Ok(())
    }

    /// A top-level Cluster field in a `value`.
    fn cluster_field(
        &self,
        label: &str,
        key: &str,
        v: &Value,
        patch: &mut ClusterPatch,
    ) -> Result<(), UsageError> {
        match key {
            "connect_timeout" | "connectTimeout" => {
                let d = self.duration(label, key, v)?;
                if d.is_zero() {
                    return Err(self.err(format!(
                        "{label}: invalid value '{}' for {key}: a connect timeout of 0 would fail every connect",
                        value_text(v)
                    )));
                }
                patch.connect_timeout = Some(d);
            }
            "circuit_breakers" | "circuitBreakers" => {
                let th = v
                    .as_mapping()
                    .and_then(|m| get(m, &["thresholds"]))
                    .and_then(Value::as_sequence)
                    .ok_or_else(|| {
                        self.err(format!("{label}: {key} must hold a 'thresholds' list"))
                    })?;
                for t in th {
                    self.thresholds(label, t, patch)?;
                }
            }
            other => {
                return Err(self.err(format!(
                    "{label} cannot be honoured: cluster field '{other}' is not supported (connect_timeout and circuit_breakers thresholds are)"
                )));
            }
        }
        Ok(())
    }

    fn thresholds(
        &self,
        label: &str,
        t: &Value,
        patch: &mut ClusterPatch,
    ) -> Result<(), UsageError> {
        let m = t
            .as_mapping()
            .ok_or_else(|| self.err(format!("{label}: each threshold must be a mapping")))?;
        if let Some(p) = m.get("priority").map(value_text)
            && p != "DEFAULT"
        {
            return Err(self.err(format!(
                "{label} cannot be honoured: threshold priority '{p}' (the forwarder has only DEFAULT priority)"
            )));
        }
        for (k, v) in m {
            let k = value_text(k);
            self.threshold_field(label, &k, v, patch)?;
        }
        Ok(())
    }

    fn threshold_field(
        &self,
        label: &str,
        k: &str,
        v: &Value,
        patch: &mut ClusterPatch,
    ) -> Result<(), UsageError> {
        let slot = match k {
            "priority" => return Ok(()),
            "max_connections" | "maxConnections" => &mut patch.max_connections,
            "max_pending_requests" | "maxPendingRequests" => &mut patch.max_pending_requests,
            "max_requests" | "maxRequests" => &mut patch.max_requests,
            "max_retries" | "maxRetries" => &mut patch.max_retries,
            other => {
                return Err(self.err(format!(
                    "{label} cannot be honoured: threshold '{other}' is not supported (max_connections, max_pending_requests, max_requests, max_retries are)"
                )));
            }
        };
        let n = self.count(label, k, v)?;
        if n == 0 && !matches!(k, "max_retries" | "maxRetries") {
            return Err(self.err(format!(
                "{label}: invalid value '0' for {k}: 0 would refuse every connection of the cluster \
                 (to block non-mesh traffic use MeshPassthrough passthroughMode: None)"
            )));
        }
        *slot = Some(n);
        Ok(())
    }

    /// A JSON-pointer field of the Cluster (jsonPatches).
    fn cluster_path(
        &self,
        label: &str,
        path: &str,
        v: &Value,
        patch: &mut ClusterPatch,
    ) -> Result<(), UsageError> {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [f @ ("connect_timeout" | "connectTimeout" | "circuit_breakers" | "circuitBreakers")] => {
                self.cluster_field(label, f, v, patch)
            }
            [cb, "thresholds"] if matches!(*cb, "circuitBreakers" | "circuit_breakers") => {
                let list = v.as_sequence().ok_or_else(|| {
                    self.err(format!("{label}: /{path} must be a list of thresholds"))
                })?;
                for t in list {
                    self.thresholds(label, t, patch)?;
                }
                Ok(())
            }
            [cb, "thresholds", "0"] if matches!(*cb, "circuitBreakers" | "circuit_breakers") => {
                self.thresholds(label, v, patch)
            }
            [cb, "thresholds", "0", f] if matches!(*cb, "circuitBreakers" | "circuit_breakers") => {
                self.threshold_field(label, f, v, patch)
            }
            _ => Err(self.err(format!(
                "{label} cannot be honoured: jsonPatch path '/{path}' is not supported (/connectTimeout and /circuitBreakers/thresholds/0/... are)"
            ))),
        }
    }

    fn filter_mod(
        &self,
        label: &str,
        body: &Mapping,
        match_: Option<&Mapping>,
        effect: &mut PolicyEffect,
    ) -> Result<(), UsageError> {
        const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
        const TCP_PROXY_TYPE: &str =
            "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
        let fname = match_.and_then(|m| m.get("name")).map(value_text);
        if fname.as_deref() != Some(TCP_PROXY) {
            return Err(self.err(format!(
                "{label} cannot be honoured: only the {TCP_PROXY} filter of a passthrough listener can be patched"
            )));
        }
        let (clusters, all) = self.matched_clusters(label, match_, "listenerName")?;
        let mut patch = ClusterPatch::default();
        if let Some(v) = body.get("value") {
            let value = parse_value(v).map_err(|e| self.err(format!("{label}: value: {e}")))?;
            let map = value
                .as_mapping()
                .ok_or_else(|| self.err(format!("{label}: value must be a mapping")))?;
            for (k, v) in map {
                match value_text(k).as_str() {
                    "name" if value_text(v) == TCP_PROXY => {}
                    "typedConfig" | "typed_config" => {
                        let tc = v.as_mapping().ok_or_else(|| {
                            self.err(format!("{label}: typedConfig must be a mapping"))
                        })?;
                        for (k, v) in tc {
                            let k = value_text(k);
                            match k.as_str() {
                                "@type" if value_text(v) == TCP_PROXY_TYPE => {}
                                "idleTimeout" | "idle_timeout" => {
                                    patch.idle_timeout = Some(self.duration(label, &k, v)?);
                                }
                                _ => {
                                    return Err(self.err(format!(
                                        "{label} cannot be honoured: tcp_proxy field '{k}: {}' is not supported (idleTimeout is)",
                                        value_text(v)
                                    )));
                                }
                            }
                        }
                    }
                    other => {
                        return Err(self.err(format!(
                            "{label} cannot be honoured: filter field '{other}: {}' is not supported",
                            value_text(v)
                        )));
                    }
                }
            }
        }
        self.json_patches(label, body, &mut patch, |me, path, v, patch| {
            match path.trim_start_matches('/') {
                "idleTimeout" | "idle_timeout" | "typedConfig/idleTimeout"
                | "typed_config/idle_timeout" => {
                    patch.idle_timeout = Some(me.duration(label, path, v)?);
                    Ok(())
                }
                other => Err(me.err(format!(
                    "{label} cannot be honoured: jsonPatch path '/{other}' is not supported (/idleTimeout is)"
                ))),
            }
        })?;
        effect.merge(&clusters, all, &patch);
        Ok(())
    }

    /// `jsonPatches: [{op: replace|add, path, value}]`.
    fn json_patches(
        &self,
        label: &str,
        body: &Mapping,
        patch: &mut ClusterPatch,
        mut each: impl FnMut(&Self, &str, &Value, &mut ClusterPatch) -> Result<(), UsageError>,
    ) -> Result<(), UsageError> {
        let Some(list) = body.get("jsonPatches") else {
            return Ok(());
        };
        let list = list
            .as_sequence()
            .ok_or_else(|| self.err(format!("{label}: jsonPatches must be a list")))?;
        for p in list {
            let op = p.get("op").map(value_text).unwrap_or_default();
            let path = p.get("path").map(value_text).unwrap_or_default();
            if op != "replace" && op != "add" {
                return Err(self.err(format!(
                    "{label} cannot be honoured: jsonPatch op '{op}' on '{path}' (replace and add are supported)"
                )));
            }
            let v = p
                .get("value")
                .ok_or_else(|| self.err(format!("{label}: jsonPatch on '{path}' has no value")))?;
            each(self, &path, v, patch)?;
        }
        Ok(())
    }

    fn mesh_passthrough(&self, default: Option<&Mapping>) -> Result<Passthrough, UsageError> {
        let mode = default
            .and_then(|d| d.get("passthroughMode"))
            .map(value_text)
            .unwrap_or_else(|| "Matched".to_string());
        match mode.as_str() {
            "All" => return Ok(Passthrough::All),
            "None" => return Ok(Passthrough::None),
            "Matched" => {}
            other => {
                return Err(self.err(format!(
                    "invalid value '{other}' for default.passthroughMode: expected All, None or Matched"
                )));
            }
        }
        let mut out = Vec::new();
        let items = default
            .and_then(|d| d.get("appendMatch"))
            .and_then(Value::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, m) in items.iter().enumerate() {
            let n = i + 1;
            let ty = m.get("type").map(value_text).unwrap_or_default();
            let value = m.get("value").map(value_text).unwrap_or_default();
            let proto = m
                .get("protocol")
                .map(value_text)
                .unwrap_or_else(|| "tcp".into());
            let what = format!("appendMatch {n} ({ty} {value})");
            if proto != "tcp" {
                return Err(self.err(format!(
                    "{what} cannot be honoured: protocol '{proto}' needs a look into the stream; this forwarder matches tcp by address and port"
                )));
            }
            let port = match m.get("port") {
                None | Some(Value::Null) => None,
                Some(p) => Some(
                    value_text(p)
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            self.err(format!(
                                "{what}: invalid port '{}': expected 1-65535",
                                value_text(p)
                            ))
                        })?,
                ),
            };
            let net = match ty.as_str() {
                "IP" => value
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| self.err(format!("{what}: '{value}' is not an IP address")))?,
                "CIDR" => value
                    .parse::<IpNet>()
                    .map_err(|_| self.err(format!("{what}: '{value}' is not a CIDR")))?,
                "Domain" => {
                    return Err(self.err(format!(
                        "{what} cannot be honoured: Domain matches need the TLS SNI or HTTP Host; use IP or CIDR matches"
                    )));
                }
                other => {
                    return Err(self.err(format!(
                        "{what}: type '{other}' is not supported (IP, CIDR)"
                    )));
                }
            };
            out.push(PassMatch { net, port });
        }
        Ok(Passthrough::Matched(out))
    }

    fn count(&self, label: &str, key: &str, v: &Value) -> Result<u32, UsageError> {
        // Envoy's UInt32Value may be written as {value: N}.
        let v = v.get("value").unwrap_or(v);
        value_text(v).trim().parse::<u32>().map_err(|_| {
            self.err(format!(
                "{label}: invalid value '{}' for {key}: expected an integer in [0, 4294967295]",
                value_text(v)
            ))
        })
    }

    fn duration(&self, label: &str, key: &str, v: &Value) -> Result<Duration, UsageError> {
        let t = value_text(v);
        envoy_duration(&t)
            .map_err(|why| self.err(format!("{label}: invalid value '{t}' for {key}: {why}")))
    }
}

/// A `value:` is YAML text (usually a block string) or an inline mapping.
fn parse_value(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => serde_yaml::from_str(s).map_err(|e| e.to_string()),
        other => Ok(other.clone()),
    }
}

/// Envoy's JSON duration (`"99s"`, `"0.5s"`) or the `2s`/`3h`/`500ms` form.
pub fn envoy_duration(t: &str) -> Result<Duration, String> {
    crate::config::types::proto_duration(t)
}

#[cfg(test)]
mod tests;
