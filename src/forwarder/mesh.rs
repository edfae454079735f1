//! The mesh as the forwarder sees it, read from Universal `Dataplane` files
//! (`--dataplane`, `--local-dataplane`; SPEC §7): which services exist, at
//! which addresses and inbound ports (the mesh destinations), which of them
//! this proxy may reach (`reachableServices` / `reachableBackends` of its own
//! Dataplane), and where its own inbounds deliver (`serviceAddress` /
//! `servicePort`). Every file problem is a [`UsageError`] naming the file,
//! the Dataplane, the field and the value. The result is plain values; the
//! routing table and the DNS answers are built from it elsewhere
//! (`route.rs`, `dns.rs`).
//!
//! Kuma gives every service a virtual IP and an outbound listener on it; with
//! no control plane there are no virtual IPs, so a mesh destination here is
//! an instance's own `address:port`, which is also what `<service>.mesh`
//! resolves to.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use indexmap::{IndexMap, IndexSet};
use serde::Deserialize;
use serde_yaml::Value;

use super::cluster::ClusterId;
use crate::error::UsageError;
use crate::model::dataplane::{BackendRef, Dataplane, MeshEndpoint};

/// The only `reachableBackends` kind a Dataplane file can define.
const MESH_SERVICE: &str = "MeshService";
/// The label Kuma puts on every resource with its display name.
const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";
const REFS_AT: &str = "networking.transparentProxying.reachableBackends.refs";

/// One Dataplane read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub dp: Dataplane,
    /// `dataplane file F: Dataplane NAME`, for messages.
    pub what: String,
}

/// A mesh service this proxy may reach, with its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The `kuma.io/service` tag, also the cluster's name (as Kuma names
    /// outbound clusters).
    pub name: String,
    /// `address:port` of every reachable inbound carrying the tag.
    pub endpoints: Vec<SocketAddr>,
}

/// One inbound of this proxy's own Dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInbound {
    /// Where other proxies send it: the inbound's address (or the
    /// Dataplane's) and `port`.
    pub addr: SocketAddr,
    /// Where the workload listens: `serviceAddress` (default: the address
    /// above) and `servicePort` (default: `port`).
    pub workload: SocketAddr,
}

impl LocalInbound {
    /// Kuma's inbound cluster name: `localhost:<servicePort>`.
    pub fn cluster_name(&self) -> String {
        format!("localhost:{}", self.workload.port())
    }
}

/// Everything the forwarder knows about the mesh.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mesh {
    /// The mesh whose Dataplanes are used; `None` without Dataplane files.
    pub name: Option<String>,
    /// This proxy's own Dataplane (`what`), when there is one.
    pub local: Option<String>,
    /// Reachable services in order of first appearance.
    pub services: Vec<Service>,
    /// Services of the mesh left out by `reachableServices` /
    /// `reachableBackends`: their traffic is non-mesh.
    pub unreachable: Vec<String>,
    /// This proxy's inbounds.
    pub inbounds: Vec<LocalInbound>,
    /// Dataplanes of the mesh read (the local one included).
    pub dataplanes: usize,
}

impl Mesh {
    /// One line for the start-up message; `None` without Dataplane files.
    pub fn summary(&self) -> Option<String> {
        let name = self.name.as_deref()?;
        let mut s = format!(
            "mesh {name}: {} Dataplane(s), {} reachable service(s)",
            self.dataplanes,
            self.services.len()
        );
        if !self.services.is_empty() {
            let list: Vec<String> = self
                .services
                .iter()
                .map(|v| format!("{} ({})", v.name, v.endpoints.len()))
                .collect();
            let _ = write!(s, ": {}", list.join(", "));
        }
        if !self.unreachable.is_empty() {
            let _ = write!(
                s,
                "; not reachable, so non-mesh: {}",
                self.unreachable.join(", ")
            );
        }
        match &self.local {
            Some(l) => {
                let _ = write!(s, "; this proxy is {l}");
            }
            None => s.push_str("; no local Dataplane (every service reachable)"),
        }
        Some(s)
    }
}

/// Reads the `--dataplane` files and the `--local-dataplane` file and builds
/// the mesh. Without `local`, this proxy's Dataplane is the one whose
/// `networking.address` is an address of this host, if exactly one is; and
/// when `mesh` (`--mesh-name`) is given, Dataplanes of other meshes are left
/// out first, with a warning.
pub fn load(
    dataplanes: &[impl AsRef<Path>],
    local: Option<&Path>,
    mesh: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Mesh, UsageError> {
    let mut all = Vec::new();
    for p in dataplanes {
        let p = p.as_ref();
        all.extend(parse(&p.display().to_string(), &read(p, "--dataplane")?)?);
    }
    if let (Some(m), None) = (mesh, local) {
        all.retain(|l| {
            let keep = l.dp.mesh_name() == m;
            if !keep {
                warnings.push(format!(
                    "{} is in mesh {}, not {m}: ignored",
                    l.what,
                    l.dp.mesh_name()
                ));
            }
            keep
        });
    }
    let local = match local {
        None => None,
        Some(p) => {
            let file = p.display().to_string();
            let mut docs = parse(&file, &read(p, "--local-dataplane")?)?;
            if docs.len() != 1 {
                return Err(UsageError::new(format!(
                    "--local-dataplane {file} holds {} Dataplanes; it takes this proxy's own one",
                    docs.len()
                )));
            }
            docs.pop()
        }
    };
    build(all, local, &super::net::is_local, warnings)
}

fn read(path: &Path, flag: &str) -> Result<String, UsageError> {
    let r = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map(|_| s)
    } else {
        std::fs::read_to_string(path)
    };
    r.map_err(|e| UsageError::new(format!("cannot read {flag} {}: {e}", path.display())))
}

/// The Dataplanes of one file: YAML or JSON, several documents, and lists as
/// `kumactl get dataplanes -o yaml|json` prints them (`items: [...]`). Each
/// is checked as Kuma's validator would, and its addresses must be IP
/// addresses (destinations are matched by address).
pub fn parse(file: &str, text: &str) -> Result<Vec<Loaded>, UsageError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = format!("dataplane file {file}: document {}", i + 1);
        let value = Value::deserialize(doc)
            .map_err(|e| UsageError::new(format!("{at} is not valid YAML or JSON: {e}")))?;
        if value.is_null() {
            continue;
        }
        let items = match &value {
            Value::Mapping(m) if m.get("type").is_none() && m.get("items").is_some() => {
                match m.get("items") {
                    Some(Value::Sequence(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (format!("{at}, item {}", j + 1), v.clone()))
                        .collect(),
                    _ => Vec::new(),
                }
            }
            _ => vec![(at, value)],
        };
        for (at, v) in items {
            out.push(one(file, &at, v)?);
        }
    }
    if out.is_empty() {
        return Err(UsageError::new(format!(
            "dataplane file {file} holds no Dataplane"
        )));
    }
    Ok(out)
}

fn one(file: &str, at: &str, v: Value) -> Result<Loaded, UsageError> {
    // Through text, so that the model's errors keep their field path.
    let text = serde_yaml::to_string(&v).unwrap_or_default();
    let dp = Dataplane::from_text(&text)
        .map_err(|e| UsageError::new(format!("{at} is not a Dataplane: {e}")))?;
    let what = if dp.name.is_empty() {
        at.to_string()
    } else {
        format!("dataplane file {file}: Dataplane {}", dp.name)
    };
    let v = dp.validate();
    if !v.is_ok() {
        let errors: Vec<String> = v.errors.iter().map(ToString::to_string).collect();
        return Err(UsageError::new(format!(
            "{what} is not valid: {}",
            errors.join("; ")
        )));
    }
    let address = dp.networking.address.trim();
    if address.parse::<IpAddr>().is_err() {
        return Err(UsageError::new(format!(
            "{what}: invalid value '{address}' for networking.address: the forwarder matches \
             destinations by IP address, so it needs the IP address, not a domain name"
        )));
    }
    Ok(Loaded { dp, what })
}

/// Whether this proxy may reach an endpoint: its own Dataplane's
/// `reachableServices` and `reachableBackends`. A field that is absent does
/// not restrict; when both are set, what either admits is reachable (Kuma
/// with MeshServices in `Everywhere` mode makes an outbound for each).
struct Reach<'a> {
    services: Option<HashSet<&'a str>>,
    refs: Option<&'a [BackendRef]>,
}

impl<'a> Reach<'a> {
    fn of(local: Option<&'a Loaded>) -> Result<Self, UsageError> {
        let tp = local.and_then(|l| l.dp.transparent_proxying());
        let services = tp
            .filter(|tp| !tp.reachable_services.is_empty())
            .map(|tp| tp.reachable_services.iter().map(|s| s.trim()).collect());
        let refs = tp
            .and_then(|tp| tp.reachable_backends.as_ref())
            .map(|rb| rb.refs.as_slice());
        if let (Some(l), Some(refs)) = (local, refs) {
            for (i, r) in refs.iter().enumerate() {
                let at = format!("{REFS_AT}[{i}]");
                if r.kind != MESH_SERVICE {
                    return Err(UsageError::new(format!(
                        "{}: {at}.kind '{}' cannot be honoured: the forwarder learns services from \
                         Dataplane files, which define MeshServices (one per kuma.io/service) and \
                         nothing else; MeshExternalService and MeshMultiZoneService need a control plane",
                        l.what, r.kind
                    )));
                }
                // A `namespace` never gets here: `Dataplane::validate` refuses it
                // in a Universal Dataplane (see `one`).
            }
        }
        Ok(Reach { services, refs })
    }

    fn restricted(&self) -> bool {
        self.services.is_some() || self.refs.is_some()
    }

    fn admits(&self, dp: &Dataplane, ep: &MeshEndpoint<'_>) -> bool {
        if !self.restricted() {
            return true;
        }
        self.services
            .as_ref()
            .is_some_and(|s| s.contains(ep.service))
            || self
                .refs
                .is_some_and(|refs| refs.iter().any(|r| ref_matches(r, dp, ep)))
    }
}

/// A `MeshService` ref against one inbound: by name (the `kuma.io/service`
/// tag) or by labels (each label equal to an inbound tag, a label of the
/// Dataplane, or `kuma.io/display-name` = the service), and by `port` (the
/// inbound port) when given.
fn ref_matches(r: &BackendRef, dp: &Dataplane, ep: &MeshEndpoint<'_>) -> bool {
    if r.port.is_some_and(|p| p != u32::from(ep.port)) {
        return false;
    }
    if !r.name.is_empty() {
        return r.name == ep.service;
    }
    r.labels.iter().all(|(k, v)| {
        ep.inbound.tags.get(k) == Some(v)
            || dp.labels.get(k) == Some(v)
            || (k == DISPLAY_NAME_LABEL && v == ep.service)
    })
}

fn ip_of(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

/// Builds the mesh from parsed Dataplanes. `is_local` tells whether an
/// address belongs to this host (to find this proxy's Dataplane when
/// `local` is not given).
pub fn build(
    all: Vec<Loaded>,
    local: Option<Loaded>,
    is_local: &dyn Fn(IpAddr) -> bool,
    warnings: &mut Vec<String>,
) -> Result<Mesh, UsageError> {
    // One entry per (mesh, name); the same Dataplane given twice is fine.
    let mut members: Vec<Loaded> = Vec::new();
    let mut local_idx = None;
    let key = |l: &Loaded| (l.dp.mesh_name().to_string(), l.dp.name.clone());
    let add = |l: Loaded, members: &mut Vec<Loaded>| -> Result<usize, UsageError> {
        if let Some(i) = members.iter().position(|m| key(m) == key(&l)) {
            if members[i].dp != l.dp {
                return Err(UsageError::new(format!(
                    "{} and {} are both Dataplane {} of mesh {} but differ",
                    members[i].what,
                    l.what,
                    l.dp.name,
                    l.dp.mesh_name()
                )));
            }
            return Ok(i);
        }
        members.push(l);
        Ok(members.len() - 1)
    };
    for l in all {
        add(l, &mut members)?;
    }
    if let Some(l) = local {
        local_idx = Some(add(l, &mut members)?);
    } else {
        let here: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].dp.address_ip().is_some_and(is_local))
            .collect();
        match here.as_slice() {
            [] => {}
            [i] => local_idx = Some(*i),
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|&i| {
                        format!(
                            "{} at {}",
                            members[i].what, members[i].dp.networking.address
                        )
                    })
                    .collect();
                return Err(UsageError::new(format!(
                    "several Dataplanes have an address of this host ({}): say which is this \
                     proxy's own with --local-dataplane FILE",
                    list.join(", ")
                )));
            }
        }
    }
    if members.is_empty() {
        return Ok(Mesh::default());
    }
    let mesh_name = match local_idx {
        Some(i) => members[i].dp.mesh_name().to_string(),
        None => {
            let mut meshes: Vec<&str> = members.iter().map(|m| m.dp.mesh_name()).collect();
            meshes.sort_unstable();
            meshes.dedup();
            if meshes.len() > 1 {
                return Err(UsageError::new(format!(
                    "the Dataplane files belong to several meshes ({}): give this proxy's own \
                     Dataplane with --local-dataplane FILE, its mesh is the one used",
                    meshes.join(", ")
                )));
            }
            meshes[0].to_string()
        }
    };
    let local = local_idx.map(|i| &members[i]);
    let reach = Reach::of(local)?;

    let mut services: IndexMap<&str, Vec<SocketAddr>> = IndexMap::new();
    let mut unreachable: IndexSet<&str> = IndexSet::new();
    let mut owner: HashMap<SocketAddr, &str> = HashMap::new();
    // (service, inbound port) of every inbound of the mesh, for the warnings.
    let mut ports: HashSet<(&str, u16)> = HashSet::new();
    let mut dataplanes = 0;
    for m in &members {
        if m.dp.mesh_name() != mesh_name {
            warnings.push(format!(
                "{} is in mesh {}, not {mesh_name}: ignored",
                m.what,
                m.dp.mesh_name()
            ));
            continue;
        }
        dataplanes += 1;
        for ep in m.dp.services() {
            let ip = ip_of(ep.address).ok_or_else(|| {
                UsageError::new(format!(
                    "{}: invalid inbound address '{}': must be an IP address",
                    m.what, ep.address
                ))
            })?;
            let addr = SocketAddr::new(ip, ep.port);
            ports.insert((ep.service, ep.port));
            if let Some(other) = owner.insert(addr, &m.what) {
                return Err(UsageError::new(format!(
                    "{addr} is an inbound of both {other} and {}: one address and port belongs \
                     to one inbound",
                    m.what
                )));
            }
            if ClusterId::by_name(ep.service).is_some() {
                return Err(UsageError::new(format!(
                    "{}: service '{}' has the name of a passthrough cluster; rename the \
                     kuma.io/service tag",
                    m.what, ep.service
                )));
            }
            if reach.admits(&m.dp, &ep) {
                services.entry(ep.service).or_default().push(addr);
            } else {
                unreachable.insert(ep.service);
            }
        }
    }
    unreachable.retain(|s| !services.contains_key(s));

    if let Some(l) = local {
        warn_unmatched(l, &reach, &services, &unreachable, &ports, warnings);
    }
    let inbounds = match local {
        Some(l) => local_inbounds(l)?,
        None => Vec::new(),
    };
    for i in &inbounds {
        let name = i.cluster_name();
        if services.contains_key(name.as_str()) {
            return Err(UsageError::new(format!(
                "service '{name}' has the name of this proxy's inbound cluster for {} (Kuma's \
                 localhost:<servicePort>); rename the kuma.io/service tag",
                i.addr
            )));
        }
    }
    Ok(Mesh {
        name: Some(mesh_name),
        local: local.map(|l| l.what.clone()),
        services: services
            .into_iter()
            .map(|(name, endpoints)| Service {
                name: name.to_string(),
                endpoints,
            })
            .collect(),
        unreachable: unreachable.into_iter().map(str::to_string).collect(),
        inbounds,
        dataplanes,
    })
}

/// A reachable-list entry that matches nothing is most likely a typo.
fn warn_unmatched(
    l: &Loaded,
    reach: &Reach<'_>,
    services: &IndexMap<&str, Vec<SocketAddr>>,
    unreachable: &IndexSet<&str>,
    ports: &HashSet<(&str, u16)>,
    warnings: &mut Vec<String>,
) {
    let known = |s: &str| services.contains_key(s) || unreachable.contains(s);
    if let Some(list) = &reach.services {
        let mut list: Vec<&&str> = list.iter().filter(|s| !known(s)).collect();
        list.sort();
        for s in list {
            warnings.push(format!(
                "{}: reachableServices lists '{s}', which no given Dataplane offers",
                l.what
            ));
        }
    }
    for (i, r) in reach.refs.unwrap_or_default().iter().enumerate() {
        if !r.name.is_empty() && !known(&r.name) {
            warnings.push(format!(
                "{}: {REFS_AT}[{i}] names MeshService '{}', which no given Dataplane offers",
                l.what, r.name
            ));
        } else if !r.name.is_empty()
            && let Some(p) = r.port
            && !u16::try_from(p).is_ok_and(|p| ports.contains(&(r.name.as_str(), p)))
        {
            warnings.push(format!(
                "{}: {REFS_AT}[{i}].port {p} matches no inbound of MeshService '{}', so the ref \
                 makes nothing reachable (the port is an inbound's port, not its servicePort)",
                l.what, r.name
            ));
        }
    }
}

/// This proxy's inbounds and where each delivers.
fn local_inbounds(l: &Loaded) -> Result<Vec<LocalInbound>, UsageError> {
    let n = &l.dp.networking;
    let mut out = Vec::new();
    for (i, inbound) in n.inbound.iter().enumerate() {
        let addr_text = inbound.address.as_deref().unwrap_or(&n.address);
        let workload_text = inbound.service_address.as_deref().unwrap_or(addr_text);
        let bad = |field: &str, v: &str| {
            UsageError::new(format!(
                "{}: invalid value '{v}' for networking.inbound[{i}].{field}: must be an IP address",
                l.what
            ))
        };
        let ip = ip_of(addr_text).ok_or_else(|| bad("address", addr_text))?;
        let wip = ip_of(workload_text).ok_or_else(|| bad("serviceAddress", workload_text))?;
        // Ports were validated (1..=65535).
        let (Ok(port), Ok(wport)) = (
            u16::try_from(inbound.port),
            u16::try_from(inbound.workload_port()),
        ) else {
            continue;
        };
        out.push(LocalInbound {
            addr: SocketAddr::new(ip, port),
            workload: SocketAddr::new(wip, wport),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
