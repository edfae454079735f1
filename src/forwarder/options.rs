//! The forwarder's resolved options: the shared transparent-proxy
//! configuration (ports, DNS, IP family, kuma-dp user) plus its own settings,
//! layered defaults < `--forwarder-config` < `--policy` files < flags, and the
//! mesh read from the Dataplane files. Every bad value is a [`UsageError`]
//! naming the flag or key (or file and field), the value and what is allowed,
//! raised before anything is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::cluster::{ClusterId, ClusterPatch, ClusterSettings};
use super::mesh::{self, Mesh};
use super::net::Keepalive;
use super::policy::{self, Passthrough, envoy_duration};
use crate::cli::forwarder::{ForwarderArgs, ForwarderFlags};
use crate::config::{Config, IpFamilyMode};
use crate::error::UsageError;
use crate::host::users::{ResolvedUser, resolve_user};

/// Everything the forwarder runs with.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// Port of the outbound listener, when outbound redirection is on.
    pub outbound_port: Option<u16>,
    /// Port of the inbound listener, when inbound redirection is on.
    pub inbound_port: Option<u16>,
    /// DNS proxy port and the resolv.conf its upstreams come from.
    pub dns: Option<(u16, PathBuf)>,
    pub ipv6: bool,
    /// Per passthrough cluster, indexed by [`ClusterId::index`].
    pub clusters: [ClusterSettings; 4],
    /// Every mesh service cluster and local inbound cluster.
    pub mesh_settings: ClusterSettings,
    /// This proxy's mesh: its Dataplane's, else `--mesh-name`, else `default`.
    /// Policies of other meshes are ignored.
    pub mesh_name: String,
    /// Non-mesh outbound traffic that may pass.
    pub passthrough: Passthrough,
    /// Services, their instances and this proxy's inbounds.
    pub mesh: Mesh,
    pub drain_timeout: Duration,
    /// Keepalive of the clients' connections (`None`: off).
    pub client_keepalive: Option<Keepalive>,
    pub admin: Option<SocketAddr>,
    pub access_log: Option<String>,
    pub user: Option<ResolvedUser>,
    /// 0: as many as the CPUs this process may use.
    pub workers: usize,
    pub receipt: PathBuf,
    pub warnings: Vec<String>,
}

impl Options {
    pub fn cluster(&self, id: ClusterId) -> &ClusterSettings {
        &self.clusters[id.index()]
    }

    /// For a reload: keeps what the `running` forwarder cannot change
    /// without a restart (its sockets are bound, its privileges dropped),
    /// with a warning for each difference.
    pub fn keep_fixed(&mut self, running: &Options) -> Vec<String> {
        let mut w = Vec::new();
        let mut note = |what: &str| {
            w.push(format!(
                "{what} changed; that takes a restart: the running forwarder keeps its own"
            ));
        };
        macro_rules! keep {
            ($($field:ident => $what:literal),*) => { $(
                if self.$field != running.$field {
                    note($what);
                    self.$field = running.$field.clone();
                }
            )* };
        }
        keep!(
            outbound_port => "the outbound port",
            inbound_port => "the inbound port",
            ipv6 => "the IP family mode",
            admin => "the admin address",
            workers => "workers",
            client_keepalive => "clientKeepalive"
        );
        // The DNS port and whether it runs; resolv.conf may change.
        let port = |o: &Options| o.dns.as_ref().map(|(p, _)| *p);
        if port(self) != port(running) {
            note("the DNS proxy (on/off or port)");
            self.dns.clone_from(&running.dns);
        }
        if self.user.as_ref().map(|u| u.uid) != running.user.as_ref().map(|u| u.uid) {
            note("--user");
            self.user.clone_from(&running.user);
        }
        let vnet = |o: &Options| o.config.redirect.vnet.networks.clone();
        if vnet(self) != vnet(running) {
            note("the virtual networks (--vnet)");
            self.config.redirect.vnet.networks = vnet(running);
        }
        w
    }
}

/// The forwarder's own settings before defaults are filled in.
#[derive(Debug, Default, Clone)]
struct Own {
    patch: ClusterPatch,
    drain_timeout: Option<Duration>,
    client_keepalive: Option<Option<Keepalive>>,
    admin: Option<Option<SocketAddr>>,
    access_log: Option<String>,
    dns: Option<bool>,
    workers: Option<usize>,
    user: Option<String>,
    /// A list from a later layer replaces an earlier one.
    dataplanes: Option<Vec<PathBuf>>,
    local_dataplane: Option<PathBuf>,
    mesh_name: Option<String>,
}

impl Own {
    fn merge(&mut self, later: Own) {
        self.patch.merge(&later.patch);
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            drain_timeout,
            client_keepalive,
            admin,
            access_log,
            dns,
            workers,
            user,
            dataplanes,
            local_dataplane,
            mesh_name
        );
    }
}

/// This proxy's mesh: the one its Dataplane files decided, else `--mesh-name`,
/// else `default`. A `--mesh-name` that disagrees with the local Dataplane
/// is an error.
fn proxy_mesh(mesh: &Mesh, flag: Option<&str>) -> Result<String, UsageError> {
    match (mesh.name.as_deref(), flag) {
        (Some(m), Some(f)) if m != f => Err(UsageError::new(format!(
            "invalid value '{f}' for --mesh-name: this proxy's Dataplane ({}) is in mesh {m}",
            mesh.local.as_deref().unwrap_or("the --dataplane files")
        ))),
        (Some(m), _) => Ok(m.to_string()),
        (None, Some(f)) => Ok(f.to_string()),
        (None, None) => Ok("default".to_string()),
    }
}

/// Resolves the options; `config` is the shared configuration already resolved.
pub fn resolve(
    args: &ForwarderArgs,
    config: Config,
    mut warnings: Vec<String>,
) -> Result<Options, UsageError> {
    let mut own = Own::default();
    if let Some(path) = &args.fwd.forwarder_config {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError::new(format!(
                "cannot read --forwarder-config {}: {e}",
                path.display()
            ))
        })?;
        own = file_layer(&path.display().to_string(), &text, &mut warnings)?;
    }
    let flags = flag_layer(&args.fwd)?;
    let mut merged = own.clone();
    merged.merge(flags.clone());
    let mesh = mesh::load(
        merged.dataplanes.as_deref().unwrap_or_default(),
        merged.local_dataplane.as_deref(),
        merged.mesh_name.as_deref(),
        &mut warnings,
    )?;
    let mesh_name = proxy_mesh(&mesh, merged.mesh_name.as_deref())?;
    let effect = policy::load_files(&args.fwd.policy, &mesh_name)?;
    warnings.extend(effect.warnings.iter().cloned());

    let mut clusters = [ClusterSettings::default(); 4];
    for c in ClusterId::ALL {
        let s = &mut clusters[c.index()];
        own.patch.apply(s);
        effect.clusters[c.index()].apply(s);
        flags.patch.apply(s);
    }
    let mut mesh_settings = ClusterSettings::default();
    own.patch.apply(&mut mesh_settings);
    effect.all.apply(&mut mesh_settings);
    flags.patch.apply(&mut mesh_settings);
    let own = merged;
    let passthrough = effect.passthrough().unwrap_or_default();
    if passthrough.blocks_everything() && mesh.services.is_empty() {
        warnings.push(
            "passthrough is off and no --dataplane file gives a mesh destination: every outbound connection will be blocked"
                .to_string(),
        );
    }

    let r = &config.redirect;
    let dns_on = own.dns.unwrap_or(r.dns.enabled);
    let user = own.user.as_deref().map(resolve_user).transpose()?;
    Ok(Options {
        outbound_port: r.outbound.enabled.then_some(r.outbound.port),
        inbound_port: r.inbound.enabled.then_some(r.inbound.port),
        dns: dns_on.then(|| (r.dns.port, r.dns.resolv_config_path.clone())),
        ipv6: config.ip_family_mode == IpFamilyMode::DualStack,
        clusters,
        mesh_settings,
        passthrough,
        mesh,
        mesh_name,
        drain_timeout: own.drain_timeout.unwrap_or(Duration::from_secs(5)),
        client_keepalive: own.client_keepalive.unwrap_or(Some(Keepalive::default())),
        admin: own
            .admin
            .unwrap_or(Some(SocketAddr::from(([127, 0, 0, 1], 9901)))),
        access_log: own.access_log,
        user,
        workers: own.workers.unwrap_or(0),
        receipt: crate::host::receipt::path_or_default(args.receipt.receipt.as_deref()),
        config,
        warnings,
    })
}

fn bad(what: &str, value: &str, allowed: &str) -> UsageError {
    UsageError::new(format!("invalid value '{value}' for {what}: {allowed}"))
}

const COUNT: &str = "expected an integer in [0, 4294967295]";
const DURATION: &str = "expected a duration such as 10s, 500ms, 1m or 1h";

fn count(what: &str, v: &str) -> Result<u32, UsageError> {
    v.trim().parse::<u32>().map_err(|_| bad(what, v, COUNT))
}

/// A connection limit: 0 would refuse every connection of the cluster.
fn limit(what: &str, v: &str) -> Result<u32, UsageError> {
    match count(what, v)? {
        0 => Err(bad(
            what,
            v,
            "expected an integer in [1, 4294967295] (0 would refuse every connection; \
             to block non-mesh traffic use a MeshPassthrough with passthroughMode: None)",
        )),
        n => Ok(n),
    }
}

fn duration(what: &str, v: &str) -> Result<Duration, UsageError> {
    envoy_duration(v.trim().trim_matches('"')).map_err(|_| bad(what, v, DURATION))
}

/// A connect timeout: 0 would fail every connect.
fn connect_timeout(what: &str, v: &str) -> Result<Duration, UsageError> {
    match duration(what, v)? {
        d if d.is_zero() => Err(bad(
            what,
            v,
            "expected a duration above 0 such as 10s or 500ms (0 would fail every connect)",
        )),
        d => Ok(d),
    }
}

fn admin(what: &str, v: &str) -> Result<Option<SocketAddr>, UsageError> {
    let t = v.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse::<SocketAddr>().map(Some).map_err(|_| {
        bad(
            what,
            v,
            "expected ADDRESS:PORT such as 127.0.0.1:9901 or [::1]:9901, or off",
        )
    })
}

/// A mesh name, as Kuma names resources.
fn mesh_name(what: &str, v: &str) -> Result<String, UsageError> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !v.starts_with(['-', '.'])
        && !v.ends_with(['-', '.']);
    if ok {
        Ok(v.to_string())
    } else {
        Err(bad(
            what,
            v,
            "expected a mesh name (lower-case letters, digits, '-' and '.')",
        ))
    }
}

fn workers(what: &str, v: &str) -> Result<usize, UsageError> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(bad(what, v, "expected an integer in [1, 1024]")),
    }
}

fn flag_layer(f: &ForwarderFlags) -> Result<Own, UsageError> {
    type Check<T> = fn(&str, &str) -> Result<T, UsageError>;
    fn flag<T>(check: Check<T>, name: &str, v: &Option<String>) -> Result<Option<T>, UsageError> {
        v.as_deref()
            .map(|v| check(&format!("--{name}"), v))
            .transpose()
    }
    let d = |name: &str, v: &Option<String>| flag(duration, name, v);
    Ok(Own {
        patch: ClusterPatch {
            max_connections: flag(limit, "max-connections", &f.max_connections)?,
            max_pending_requests: flag(limit, "max-pending-requests", &f.max_pending_requests)?,
            max_requests: flag(limit, "max-requests", &f.max_requests)?,
            max_retries: flag(count, "max-retries", &f.max_retries)?,
            connect_timeout: flag(connect_timeout, "connect-timeout", &f.connect_timeout)?,
            idle_timeout: d("idle-timeout", &f.idle_timeout)?,
        },
        drain_timeout: d("drain-timeout", &f.drain_timeout)?,
        client_keepalive: None,
        admin: f
            .admin_address
            .as_deref()
            .map(|v| admin("--admin-address", v))
            .transpose()?,
        access_log: f.access_log.clone().filter(|s| !s.is_empty()),
        dns: f.dns,
        workers: f
            .workers
            .as_deref()
            .map(|v| workers("--workers", v))
            .transpose()?,
        user: f.user.clone().filter(|s| !s.trim().is_empty()),
        dataplanes: (!f.dataplane.is_empty()).then(|| f.dataplane.clone()),
        local_dataplane: f.local_dataplane.clone(),
        mesh_name: f
            .mesh_name
            .as_deref()
            .map(|v| mesh_name("--mesh-name", v))
            .transpose()?,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `clientKeepalive:` — `off`, or `{time, interval, probes}` (each
/// optional, defaults 60s, 10s, 3).
fn keepalive(what: &str, v: &Value) -> Result<Option<Keepalive>, UsageError> {
    if let Some(t) = scalar(v) {
        return match t.trim() {
            "off" | "false" => Ok(None),
            _ => Err(bad(
                what,
                &t,
                "expected off, or a mapping of time, interval and probes",
            )),
        };
    }
    let Some(m) = v.as_mapping() else {
        return Err(UsageError::new(format!(
            "invalid value for {what}: expected off, or a mapping of time, interval and probes"
        )));
    };
    let mut k = Keepalive::default();
    for (key, v) in m {
        let key = scalar(key).unwrap_or_default();
        let at = format!("{what}, field {key}");
        let t = scalar(v).unwrap_or_default();
        let positive = |d: Duration| {
            if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
                Err(bad(&at, &t, "expected whole seconds, at least 1s"))
            } else {
                Ok(d)
            }
        };
        match key.as_str() {
            "time" => k.time = positive(duration(&at, &t)?)?,
            "interval" => k.interval = positive(duration(&at, &t)?)?,
            "probes" => {
                k.probes = match count(&at, &t)? {
                    n @ 1..=127 => n,
                    _ => return Err(bad(&at, &t, "expected an integer in [1, 127]")),
                }
            }
            _ => {
                return Err(UsageError::new(format!(
                    "unknown field {key} in {what}: expected time, interval, probes"
                )));
            }
        }
    }
    Ok(Some(k))
}

/// `dataplanes:` — one path or a list of paths.
fn path_list(what: &str, v: &Value) -> Result<Vec<PathBuf>, UsageError> {
    let items: Vec<&Value> = match v {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|i| match i {
            Value::String(s) if !s.is_empty() => Ok(PathBuf::from(s)),
            other => Err(bad(
                what,
                &scalar(other).unwrap_or_else(|| format!("{other:?}")),
                "expected a file path or a list of file paths",
            )),
        })
        .collect()
}

/// The `--forwarder-config` file: the seeds' default blocks
/// (`maxConnections: 1024`, `connectTimeout: 10s`, `tcp: {idleTimeout: 1h}`)
/// are valid files as they stand.
fn file_layer(file: &str, text: &str, warnings: &mut Vec<String>) -> Result<Own, UsageError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| {
        UsageError::new(format!(
            "--forwarder-config {file} is not valid YAML or JSON: {e}"
        ))
    })?;
    let mut own = Own::default();
    let Some(map) = value.as_mapping() else {
        if value.is_null() {
            return Ok(own);
        }
        return Err(UsageError::new(format!(
            "--forwarder-config {file}: expected a mapping of settings"
        )));
    };
    let mut entries: Vec<(String, &Value)> = Vec::new();
    for (k, v) in map {
        let k = scalar(k).unwrap_or_default();
        if k == "tcp"
            && let Some(tcp) = v.as_mapping()
        {
            for (k2, v2) in tcp {
                entries.push((format!("tcp.{}", scalar(k2).unwrap_or_default()), v2));
            }
        } else {
            entries.push((k, v));
        }
    }
    for (key, v) in entries {
        let what = format!("key {key} in {file}");
        if key == "dataplanes" {
            own.dataplanes = Some(path_list(&what, v)?);
            continue;
        }
        if key == "clientKeepalive" {
            own.client_keepalive = Some(keepalive(&what, v)?);
            continue;
        }
        let Some(t) = scalar(v) else {
            return Err(UsageError::new(format!(
                "invalid value for {what}: expected a single value"
            )));
        };
        match key.as_str() {
            "maxConnections" => own.patch.max_connections = Some(limit(&what, &t)?),
            "maxPendingRequests" => own.patch.max_pending_requests = Some(limit(&what, &t)?),
            "maxRequests" => own.patch.max_requests = Some(limit(&what, &t)?),
            "maxRetries" => own.patch.max_retries = Some(count(&what, &t)?),
            "connectTimeout" => own.patch.connect_timeout = Some(connect_timeout(&what, &t)?),
            "meshName" => own.mesh_name = Some(mesh_name(&what, &t)?),
            "idleTimeout" | "tcp.idleTimeout" => {
                own.patch.idle_timeout = Some(duration(&what, &t)?)
            }
            "drainTimeout" => own.drain_timeout = Some(duration(&what, &t)?),
            "adminAddress" => own.admin = Some(admin(&what, &t)?),
            "accessLog" => own.access_log = Some(t).filter(|s| !s.is_empty()),
            "dns" => {
                own.dns = Some(
                    crate::cli::parse_go_bool(&t)
                        .map_err(|_| bad(&what, &t, "expected true or false"))?,
                )
            }
            "workers" => own.workers = Some(workers(&what, &t)?),
            "user" => own.user = Some(t).filter(|s| !s.trim().is_empty()),
            "localDataplane" => {
                own.local_dataplane = Some(t).filter(|s| !s.is_empty()).map(PathBuf::from)
            }
            _ => warnings.push(format!(
                "unknown key {key} in --forwarder-config {file} is ignored"
            )),
        }
    }
    Ok(own)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Options as the defaults resolve them, for tests of other modules.
    pub(crate) fn defaults() -> Options {
        let args = ForwarderArgs {
            tp: Default::default(),
            receipt: Default::default(),
            fwd: Box::default(),
        };
        resolve(&args, Config::default(), Vec::new()).unwrap()
    }

    #[test]
    fn seed_default_blocks_are_valid_settings_files() {
        let mut w = Vec::new();
        let cb = file_layer(
            "cb.yaml",
            include_str!("testdata/defaults-circuit-breaker.yaml"),
            &mut w,
        )
        .unwrap();
        assert_eq!(cb.patch.max_connections, Some(1024));
        assert_eq!(cb.patch.max_retries, Some(3));
        let t = file_layer(
            "t.yaml",
            include_str!("testdata/defaults-timeouts.yaml"),
            &mut w,
        )
        .unwrap();
        assert_eq!(t.patch.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(t.patch.idle_timeout, Some(Duration::from_secs(3600)));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn bad_values_name_the_key_or_flag() {
        let mut w = Vec::new();
        let e = file_layer("f.yaml", "maxConnections: lots\n", &mut w).unwrap_err();
        assert!(
            e.0.contains("'lots'") && e.0.contains("maxConnections in f.yaml"),
            "{e}"
        );
        let e = file_layer("f.yaml", "connectTimeout: soon\n", &mut w).unwrap_err();
        assert!(e.0.contains("connectTimeout") && e.0.contains("10s"), "{e}");
        file_layer("f.yaml", "colour: blue\n", &mut w).unwrap();
        assert!(w[0].contains("colour"), "{w:?}");

        let flags = ForwarderFlags {
            idle_timeout: Some("forever".into()),
            ..Default::default()
        };
        let e = flag_layer(&flags).unwrap_err();
        assert!(
            e.0.contains("--idle-timeout") && e.0.contains("'forever'"),
            "{e}"
        );
        let flags = ForwarderFlags {
            admin_address: Some("9901".into()),
            ..Default::default()
        };
        assert!(
            flag_layer(&flags)
                .unwrap_err()
                .0
                .contains("--admin-address")
        );
        let flags = ForwarderFlags {
            admin_address: Some("off".into()),
            connect_timeout: Some("500ms".into()),
            ..Default::default()
        };
        let own = flag_layer(&flags).unwrap();
        assert_eq!(own.admin, Some(None));
        assert_eq!(own.patch.connect_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn client_keepalive_settings() {
        let mut w = Vec::new();
        let own = file_layer("f.yaml", "clientKeepalive: {time: 2s, probes: 1}\n", &mut w).unwrap();
        assert_eq!(
            own.client_keepalive,
            Some(Some(Keepalive {
                time: Duration::from_secs(2),
                interval: Duration::from_secs(10),
                probes: 1
            }))
        );
        let off = file_layer("f.yaml", "clientKeepalive: off\n", &mut w).unwrap();
        assert_eq!(off.client_keepalive, Some(None));
        let e = file_layer("f.yaml", "clientKeepalive: {time: 500ms}\n", &mut w).unwrap_err();
        assert!(
            e.0.contains("clientKeepalive in f.yaml, field time") && e.0.contains("'500ms'"),
            "{e}"
        );
        let e = file_layer("f.yaml", "clientKeepalive: {probes: 0}\n", &mut w).unwrap_err();
        assert!(e.0.contains("[1, 127]"), "{e}");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(defaults().client_keepalive, Some(Keepalive::default()));
    }

    #[test]
    fn limits_of_zero_and_a_zero_connect_timeout_are_refused() {
        let mut w = Vec::new();
        for key in ["maxConnections", "maxPendingRequests", "maxRequests"] {
            let e = file_layer("f.yaml", &format!("{key}: 0\n"), &mut w).unwrap_err();
            assert!(e.0.contains(key) && e.0.contains("every connection"), "{e}");
        }
        file_layer("f.yaml", "maxRetries: 0\nidleTimeout: 0s\n", &mut w).unwrap();
        let e = file_layer("f.yaml", "connectTimeout: 0s\n", &mut w).unwrap_err();
        assert!(
            e.0.contains("connectTimeout") && e.0.contains("every connect"),
            "{e}"
        );
        for (flags, name) in [
            (
                ForwarderFlags {
                    max_connections: Some("0".into()),
                    ..Default::default()
                },
                "--max-connections",
            ),
            (
                ForwarderFlags {
                    connect_timeout: Some("0".into()),
                    ..Default::default()
                },
                "--connect-timeout",
            ),
            (
                ForwarderFlags {
                    mesh_name: Some("Not_A_Mesh".into()),
                    ..Default::default()
                },
                "--mesh-name",
            ),
        ] {
            let e = flag_layer(&flags).unwrap_err();
            assert!(e.0.contains(name), "{e}");
        }
    }

    #[test]
    fn dataplane_files_from_the_settings_file_and_flags() {
        let mut w = Vec::new();
        let own = file_layer(
            "f.yaml",
            "dataplanes: [mesh.yaml, more.json]\nlocalDataplane: me.yaml\n",
            &mut w,
        )
        .unwrap();
        assert_eq!(
            own.dataplanes,
            Some(vec![PathBuf::from("mesh.yaml"), PathBuf::from("more.json")])
        );
        assert_eq!(own.local_dataplane, Some(PathBuf::from("me.yaml")));
        let one = file_layer("f.yaml", "dataplanes: mesh.yaml\n", &mut w).unwrap();
        assert_eq!(one.dataplanes, Some(vec![PathBuf::from("mesh.yaml")]));
        let e = file_layer("f.yaml", "dataplanes: [{a: b}]\n", &mut w).unwrap_err();
        assert!(e.0.contains("key dataplanes in f.yaml"), "{e}");
        assert!(w.is_empty(), "{w:?}");
        // A list from the flags replaces the file's.
        let mut own = own;
        own.merge(
            flag_layer(&ForwarderFlags {
                dataplane: vec![PathBuf::from("flag.yaml")],
                ..Default::default()
            })
            .unwrap(),
        );
        assert_eq!(own.dataplanes, Some(vec![PathBuf::from("flag.yaml")]));
        assert_eq!(own.local_dataplane, Some(PathBuf::from("me.yaml")));
    }

    #[test]
    fn unnamed_policy_patches_reach_the_mesh_clusters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(
            &p,
            "type: MeshProxyPatch\nname: all\nspec:\n  targetRef:\n    kind: Mesh\n  default:\n    appendModifications:\n      - cluster:\n          operation: Patch\n          value: |\n            connect_timeout: 2s\n      - cluster:\n          operation: Patch\n          match:\n            name: outbound:passthrough:ipv4\n          value: |\n            connect_timeout: 3s\n",
        )
        .unwrap();
        let args = ForwarderArgs {
            tp: Default::default(),
            receipt: Default::default(),
            fwd: Box::new(ForwarderFlags {
                policy: vec![p],
                max_connections: Some("5".into()),
                ..Default::default()
            }),
        };
        let o = resolve(&args, Config::default(), Vec::new()).unwrap();
        assert_eq!(o.mesh_settings.connect_timeout, Duration::from_secs(2));
        assert_eq!(o.mesh_settings.limits.max_connections, 5);
        let v4 = o.cluster(ClusterId::OutboundV4);
        assert_eq!(v4.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            o.cluster(ClusterId::InboundV6).connect_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(o.mesh, Mesh::default());
    }
}
