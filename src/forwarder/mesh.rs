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
    /// Boxed: tens of thousands of these are moved between vectors and maps
    /// while the mesh is built.
    pub dp: Box<Dataplane>,
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
            let list = self
                .services
                .iter()
                .map(|v| format!("{} ({})", v.name, v.endpoints.len()));
            let _ = write!(s, ": {}", first_few(list, self.services.len()));
        }
        if !self.unreachable.is_empty() {
            let list = self.unreachable.iter().cloned();
            let _ = write!(
                s,
                "; not reachable, so non-mesh: {}",
                first_few(list, self.unreachable.len())
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

/// Names listed in the start-up summary before "and N more".
const SUMMARY_NAMES: usize = 20;

/// The first [`SUMMARY_NAMES`] of `len` names, comma-separated: a mesh of
/// thousands of services still gets a one-line summary.
fn first_few(names: impl Iterator<Item = String>, len: usize) -> String {
    let mut s = names.take(SUMMARY_NAMES).collect::<Vec<_>>().join(", ");
    if len > SUMMARY_NAMES {
        let _ = write!(s, " and {} more", len - SUMMARY_NAMES);
    }
    s
}

/// Reads the `--dataplane` files and the `--local-dataplane` file and builds
/// the mesh. Without `local`, this proxy's Dataplane is the one whose
/// `networking.address` is an address of this host, if exactly one is; and
/// when `mesh` (`--mesh-name`) is given, Dataplanes of other meshes are left
/// out first, with a warning. Files in, an immutable [`Mesh`] out: start-up
/// and a reload both call it, and its cost is linear in the number of
/// Dataplanes.
pub fn load(
    dataplanes: &[impl AsRef<Path>],
    local: Option<&Path>,
    mesh: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Mesh, UsageError> {
    let mut all = Vec::new();
    for p in dataplanes {
        all.extend(read_files(p.as_ref(), "--dataplane")?);
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
    let here = LocalAddrs::of_this_host();
    let mesh = build(all, local, &|ip| here.contains(ip), warnings);
    give_back_freed_memory();
    mesh
}

/// The Dataplanes read are dropped once the mesh is built, but glibc keeps
/// freed heap for later use; with a large mesh that is most of the peak
/// (kilobytes per Dataplane). Hand it back to the system.
fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it has no
    // preconditions and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// File names a directory given as `--dataplane DIR` is read for (as
/// `kubectl apply -f DIR` does).
const DIR_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The Dataplanes of one `--dataplane` path: a file, `-` (stdin), or a
/// directory, whose `*.yaml`, `*.yml` and `*.json` files are read in name
/// order (not its subdirectories; hidden files are skipped).
pub fn read_files(path: &Path, flag: &str) -> Result<Vec<Loaded>, UsageError> {
    let shown = path.display().to_string();
    if path == Path::new("-") || !path.is_dir() {
        return parse(&shown, &read(path, flag)?);
    }
    let err = |e: std::io::Error| UsageError::new(format!("cannot read {flag} {shown}: {e}"));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(err)? {
        let entry = entry.map_err(err)?;
        let p = entry.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if name.starts_with('.') || !DIR_EXTENSIONS.contains(&ext) {
            continue;
        }
        // The type from the directory listing; a stat only for a symlink.
        let dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => p.is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => p.is_dir(),
        };
        if !dir {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(UsageError::new(format!(
            "{flag} {shown} is a directory without *.yaml, *.yml or *.json files"
        )));
    }
    files.sort_unstable();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.extend(parse(&f.display().to_string(), &read(&f, flag)?)?);
    }
    Ok(out)
}

/// The addresses of this host's interfaces, read once: finding this
/// proxy's Dataplane is then one set lookup per Dataplane instead of a
/// socket and a bind(2) each. When the interfaces cannot be listed, each
/// address is tried with bind(2) as before.
struct LocalAddrs(Option<HashSet<IpAddr>>);

impl LocalAddrs {
    fn of_this_host() -> Self {
        LocalAddrs(nix::ifaddrs::getifaddrs().ok().map(|list| {
            list.filter_map(|a| {
                let a = a.address?;
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .collect()
        }))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() || ip.is_unspecified() {
            return true;
        }
        match &self.0 {
            Some(set) => set.contains(&ip),
            None => super::net::is_local(ip),
        }
    }
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
///
/// One thread: parsing on several would be faster on an idle machine, but
/// glibc keeps what other threads allocated in their own arenas, and
/// `malloc_trim` does not give those back (about 1 KiB per Dataplane for
/// good; measured in `scripts/bench-mesh-scale.sh`).
pub fn parse(file: &str, text: &str) -> Result<Vec<Loaded>, UsageError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = format!("dataplane file {file}: document {}", i + 1);
        let value = Value::deserialize(doc)
            .map_err(|e| UsageError::new(format!("{at} is not valid YAML or JSON: {e}")))?;
        if value.is_null() {
            continue;
        }
        match &value {
            Value::Mapping(m) if m.get("type").is_none() && m.get("items").is_some() => {
                if let Some(Value::Sequence(items)) = m.get("items") {
                    for (j, v) in items.iter().enumerate() {
                        let at = format!("{at}, item {}", j + 1);
                        let dp = from_value(v).map_err(|e| {
                            UsageError::new(format!("{at} is not a Dataplane: {e}"))
                        })?;
                        out.push(checked(file, &at, dp)?);
                    }
                }
            }
            v => {
                let dp = from_value(v)
                    .map_err(|e| UsageError::new(format!("{at} is not a Dataplane: {e}")))?;
                out.push(checked(file, &at, dp)?);
            }
        }
    }
    if out.is_empty() {
        return Err(UsageError::new(format!(
            "dataplane file {file} holds no Dataplane"
        )));
    }
    Ok(out)
}

/// A Dataplane from a generic value: straight from it (with yaml_serde,
/// writing the value back to text and parsing that again took more than
/// half the time a large mesh takes to load), and only when that fails
/// through text, which is how a Dataplane file is read (a plain
/// `mesh: 123` is text there) and keeps the field path in the model's
/// error.
fn from_value(v: &Value) -> Result<Dataplane, serde_yaml::Error> {
    Dataplane::deserialize(v).or_else(|_| {
        let text = serde_yaml::to_string(v).unwrap_or_default();
        Dataplane::from_text(&text)
    })
}

/// Kuma's validation and the forwarder's own requirement (IP addresses);
/// `at` names the document for a Dataplane without a name.
fn checked(file: &str, at: &str, dp: Dataplane) -> Result<Loaded, UsageError> {
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
    Ok(Loaded {
        dp: Box::new(dp),
        what,
    })
}

/// Whether this proxy may reach an endpoint: its own Dataplane's
/// `reachableServices` and `reachableBackends`. A field that is absent does
/// not restrict; when both are set, what either admits is reachable (Kuma
/// with MeshServices in `Everywhere` mode makes an outbound for each).
/// The refs are indexed so that admitting an endpoint costs a few hash
/// lookups however many refs and endpoints there are.
struct Reach<'a> {
    services: Option<HashSet<&'a str>>,
    refs: Option<&'a [BackendRef]>,
    /// Refs that name a service, by that name.
    by_name: HashMap<&'a str, Vec<&'a BackendRef>>,
    /// Refs that select by labels, each under the one of its labels that
    /// the fewest endpoints of the mesh carry: only endpoints carrying it
    /// can match, and only those look at the ref.
    by_label: HashMap<Pair<'a>, Vec<&'a BackendRef>>,
}

/// A label or tag `key: value`.
type Pair<'a> = (&'a str, &'a str);

/// The `key: value` pairs a label ref can match on an endpoint: its
/// inbound's tags, its Dataplane's labels and `kuma.io/display-name` = the
/// service (see [`ref_matches`]).
fn pairs<'a>(dp: &'a Dataplane, ep: &MeshEndpoint<'a>) -> impl Iterator<Item = Pair<'a>> {
    ep.inbound
        .tags
        .iter()
        .chain(&dp.labels)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(std::iter::once((DISPLAY_NAME_LABEL, ep.service)))
}

impl<'a> Reach<'a> {
    fn of(local: Option<&'a Loaded>, members: &'a Members) -> Result<Self, UsageError> {
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
                // in a Universal Dataplane (see `checked`).
            }
        }
        let mut reach = Reach {
            services,
            refs,
            by_name: HashMap::new(),
            by_label: HashMap::new(),
        };
        reach.index(members);
        Ok(reach)
    }

    /// Fills `by_name` and `by_label`; counts, for label refs only, how many
    /// endpoints carry each pair (one pass over the mesh).
    fn index(&mut self, members: &'a Members) {
        let refs = self.refs.unwrap_or_default();
        let (named, labelled): (Vec<&BackendRef>, Vec<&BackendRef>) =
            refs.iter().partition(|r| !r.name.is_empty());
        for r in named {
            self.by_name.entry(r.name.as_str()).or_default().push(r);
        }
        if labelled.is_empty() {
            return;
        }
        let mut carried: HashMap<Pair<'a>, usize> = HashMap::new();
        for m in members.list.values() {
            for ep in m.dp.services() {
                for p in pairs(&m.dp, &ep) {
                    *carried.entry(p).or_default() += 1;
                }
            }
        }
        for r in labelled {
            let rarest = r
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .min_by_key(|p| carried.get(p).copied().unwrap_or(0));
            // A ref without labels (and without a name) matches every
            // endpoint; validation rejects it, but keep the meaning.
            let key = rarest.unwrap_or(("", ""));
            self.by_label.entry(key).or_default().push(r);
        }
    }

    fn restricted(&self) -> bool {
        self.services.is_some() || self.refs.is_some()
    }

    fn admits(&self, dp: &'a Dataplane, ep: &MeshEndpoint<'a>) -> bool {
        if !self.restricted() {
            return true;
        }
        if self
            .services
            .as_ref()
            .is_some_and(|s| s.contains(ep.service))
        {
            return true;
        }
        let any = |refs: Option<&Vec<&BackendRef>>| {
            refs.is_some_and(|refs| refs.iter().any(|r| ref_matches(r, dp, ep)))
        };
        any(self.by_name.get(ep.service))
            || (!self.by_label.is_empty()
                && (any(self.by_label.get(&("", "")))
                    || pairs(dp, ep).any(|p| any(self.by_label.get(&p)))))
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

/// The Dataplanes given, one per (mesh, name), in order of first
/// appearance, and which of them is this proxy's own.
struct Members {
    list: IndexMap<(String, String), Loaded>,
    local: Option<usize>,
}

impl Members {
    /// Adds one Dataplane; the same one given twice is kept once, two
    /// different ones with the same mesh and name are an error. One hash
    /// lookup per Dataplane.
    fn add(&mut self, l: Loaded) -> Result<usize, UsageError> {
        let key = (l.dp.mesh_name().to_string(), l.dp.name.clone());
        match self.list.entry(key) {
            indexmap::map::Entry::Occupied(e) => {
                let m = e.get();
                if m.dp != l.dp {
                    return Err(UsageError::new(format!(
                        "{} and {} are both Dataplane {} of mesh {} but differ",
                        m.what,
                        l.what,
                        l.dp.name,
                        l.dp.mesh_name()
                    )));
                }
                Ok(e.index())
            }
            indexmap::map::Entry::Vacant(e) => {
                let i = e.index();
                e.insert(l);
                Ok(i)
            }
        }
    }

    fn get(&self, i: usize) -> &Loaded {
        &self.list[i]
    }

    /// Every Dataplane given, deduplicated, with this proxy's own: `local`
    /// when given, else the one whose address belongs to this host.
    fn collect(
        all: Vec<Loaded>,
        local: Option<Loaded>,
        is_local: &dyn Fn(IpAddr) -> bool,
    ) -> Result<Members, UsageError> {
        let mut m = Members {
            list: IndexMap::with_capacity(all.len() + 1),
            local: None,
        };
        for l in all {
            m.add(l)?;
        }
        if let Some(l) = local {
            m.local = Some(m.add(l)?);
            return Ok(m);
        }
        let here: Vec<usize> = m
            .list
            .values()
            .enumerate()
            .filter(|(_, l)| l.dp.address_ip().is_some_and(is_local))
            .map(|(i, _)| i)
            .collect();
        match here.as_slice() {
            [] => {}
            [i] => m.local = Some(*i),
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|&i| {
                        let l = m.get(i);
                        format!("{} at {}", l.what, l.dp.networking.address)
                    })
                    .collect();
                return Err(UsageError::new(format!(
                    "several Dataplanes have an address of this host ({}): say which is this \
                     proxy's own with --local-dataplane FILE",
                    list.join(", ")
                )));
            }
        }
        Ok(m)
    }

    /// The mesh used: the local Dataplane's, else the only one given.
    fn mesh_name(&self) -> Result<String, UsageError> {
        if let Some(i) = self.local {
            return Ok(self.get(i).dp.mesh_name().to_string());
        }
        let meshes: std::collections::BTreeSet<&str> =
            self.list.values().map(|m| m.dp.mesh_name()).collect();
        if meshes.len() > 1 {
            let meshes: Vec<&str> = meshes.into_iter().collect();
            return Err(UsageError::new(format!(
                "the Dataplane files belong to several meshes ({}): give this proxy's own \
                 Dataplane with --local-dataplane FILE, its mesh is the one used",
                meshes.join(", ")
            )));
        }
        Ok(meshes.first().copied().unwrap_or("default").to_string())
    }
}

/// The mesh's services, split by what this proxy may reach.
#[derive(Default)]
struct Endpoints<'a> {
    services: IndexMap<&'a str, Vec<SocketAddr>>,
    unreachable: IndexSet<&'a str>,
    /// (service, inbound port) of every inbound of the mesh, for the warnings.
    ports: HashSet<(&'a str, u16)>,
    dataplanes: usize,
}

/// Every inbound of the mesh's Dataplanes, checked (one owner per
/// `address:port`, no passthrough cluster names) and sorted by `reach`.
/// Hash lookups only: linear in the number of inbounds.
fn endpoints<'a>(
    members: &'a Members,
    mesh_name: &str,
    reach: &Reach<'a>,
    warnings: &mut Vec<String>,
) -> Result<Endpoints<'a>, UsageError> {
    let mut out = Endpoints::default();
    let mut owner: HashMap<SocketAddr, &str> = HashMap::with_capacity(members.list.len());
    for m in members.list.values() {
        if m.dp.mesh_name() != mesh_name {
            warnings.push(format!(
                "{} is in mesh {}, not {mesh_name}: ignored",
                m.what,
                m.dp.mesh_name()
            ));
            continue;
        }
        out.dataplanes += 1;
        for ep in m.dp.services() {
            let ip = ip_of(ep.address).ok_or_else(|| {
                UsageError::new(format!(
                    "{}: invalid inbound address '{}': must be an IP address",
                    m.what, ep.address
                ))
            })?;
            let addr = SocketAddr::new(ip, ep.port);
            out.ports.insert((ep.service, ep.port));
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
                out.services.entry(ep.service).or_default().push(addr);
            } else {
                out.unreachable.insert(ep.service);
            }
        }
    }
    out.unreachable.retain(|s| !out.services.contains_key(s));
    Ok(out)
}

/// Builds the mesh from parsed Dataplanes. `is_local` tells whether an
/// address belongs to this host (to find this proxy's Dataplane when
/// `local` is not given). Linear in the number of Dataplanes and inbounds
/// (hash lookups only), so a reload can call it as often as it likes.
pub fn build(
    all: Vec<Loaded>,
    local: Option<Loaded>,
    is_local: &dyn Fn(IpAddr) -> bool,
    warnings: &mut Vec<String>,
) -> Result<Mesh, UsageError> {
    let members = Members::collect(all, local, is_local)?;
    if members.list.is_empty() {
        return Ok(Mesh::default());
    }
    let mesh_name = members.mesh_name()?;
    let local = members.local.map(|i| members.get(i));
    let reach = Reach::of(local, &members)?;
    let eps = endpoints(&members, &mesh_name, &reach, warnings)?;

    if let Some(l) = local {
        warn_unmatched(
            l,
            &reach,
            &eps.services,
            &eps.unreachable,
            &eps.ports,
            warnings,
        );
    }
    let inbounds = match local {
        Some(l) => local_inbounds(l)?,
        None => Vec::new(),
    };
    for i in &inbounds {
        let name = i.cluster_name();
        if eps.services.contains_key(name.as_str()) {
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
        services: eps
            .services
            .into_iter()
            .map(|(name, endpoints)| Service {
                name: name.to_string(),
                endpoints,
            })
            .collect(),
        unreachable: eps.unreachable.into_iter().map(str::to_string).collect(),
        inbounds,
        dataplanes: eps.dataplanes,
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
