//! One generation of the forwarder's settings: the resolved [`Options`]
//! with everything built from them — the routing table, the cluster table,
//! the `.mesh` names and the DNS upstreams — as one immutable value. The
//! forwarder holds the current generation behind an atomic pointer; a reload
//! builds a complete new one from the files and swaps it in (or keeps the old
//! one when a file is bad), and each connection keeps the cluster it was
//! accepted with. Also the effective-settings view that `--print-config`
//! prints as YAML and `GET /config` serves as JSON.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::cluster::{ClusterSettings, Clusters};
use super::dns::{MeshNames, Upstreams};
use super::options::Options;
use super::policy::Passthrough;
use super::route::Router;

/// Everything a connection or a query is decided with.
pub struct Settings {
    pub opts: Options,
    pub router: Router,
    pub clusters: Clusters,
    pub names: MeshNames,
    /// The DNS proxy's upstream servers (resolv.conf), when it runs.
    pub upstreams: Option<Upstreams>,
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
}

impl Settings {
    /// Builds a generation from resolved options, reading resolv.conf when
    /// the DNS proxy runs. Clusters that `previous` also has keep their
    /// counters. Warnings are added to `warnings`.
    pub fn build(
        opts: Options,
        previous: Option<&Settings>,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Settings> {
        let upstreams = match &opts.dns {
            Some((_, path)) => Some(
                super::dns::upstreams_from(path, warnings)
                    .map_err(|e| e.context("DNS proxy upstreams"))?,
            ),
            None => None,
        };
        let (router, mut clusters) = super::route::build(&opts);
        if let Some(p) = previous {
            clusters.adopt_stats(&p.clusters);
        }
        Ok(Settings {
            names: MeshNames::new(&opts.mesh),
            router,
            clusters,
            upstreams,
            generation: previous.map_or(1, |p| p.generation + 1),
            opts,
        })
    }

    /// The effective settings, for `--print-config` and `GET /config`.
    pub fn effective(&self) -> Effective<'_> {
        let o = &self.opts;
        let passthrough = match &o.passthrough {
            Passthrough::All => PassthroughView {
                mode: "All",
                matches: Vec::new(),
            },
            Passthrough::None => PassthroughView {
                mode: "None",
                matches: Vec::new(),
            },
            Passthrough::Matched(m) => PassthroughView {
                mode: "Matched",
                matches: m
                    .iter()
                    .map(|m| MatchView {
                        cidr: m.net.to_string(),
                        port: m.port,
                    })
                    .collect(),
            },
        };
        Effective {
            schema_version: crate::render::json::schema_version::FORWARDER_CONFIG,
            generation: self.generation,
            mesh: &o.mesh_name,
            local_dataplane: o.mesh.local.as_deref(),
            listeners: Listeners {
                outbound: o.outbound_port,
                inbound: o.inbound_port,
                dns: o.dns.as_ref().map(|(p, _)| *p),
                admin: o.admin,
                ipv6: o.ipv6,
                client_keepalive: o.client_keepalive.map(|k| KeepaliveView {
                    time: duration_text(k.time),
                    interval: duration_text(k.interval),
                    probes: k.probes,
                }),
            },
            drain_timeout: duration_text(o.drain_timeout),
            passthrough,
            clusters: self
                .clusters
                .iter()
                .map(|c| ClusterView::new(&c.name, &c.settings))
                .collect(),
            services: o
                .mesh
                .services
                .iter()
                .map(|s| ServiceView {
                    name: &s.name,
                    addresses: &s.endpoints,
                })
                .collect(),
            unreachable_services: o.mesh.unreachable.iter().map(String::as_str).collect(),
            inbounds: o
                .mesh
                .inbounds
                .iter()
                .map(|i| InboundView {
                    address: i.addr,
                    deliver_to: i.workload,
                    cluster: i.cluster_name(),
                })
                .collect(),
            dns: self.upstreams.as_ref().map(|u| DnsView {
                upstreams: &u.servers,
                mesh_zone: o.mesh.name.is_some(),
            }),
        }
    }
}

/// A duration as the settings files write it: `3h`, `99s`, `500ms`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if d.subsec_nanos() == 0 {
        match s {
            0 => "0s".to_string(),
            s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
            s if s.is_multiple_of(60) => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// What `--print-config` (YAML) and `GET /config` (JSON) show: a document
/// of the JSON contract (docs/json-output.md). Passthrough modes and
/// cluster names are Kuma's own values (`All`, `outbound:passthrough:ipv4`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effective<'a> {
    pub schema_version: u32,
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
    pub mesh: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_dataplane: Option<&'a str>,
    pub listeners: Listeners,
    pub drain_timeout: String,
    pub passthrough: PassthroughView,
    pub clusters: Vec<ClusterView<'a>>,
    pub services: Vec<ServiceView<'a>>,
    pub unreachable_services: Vec<&'a str>,
    pub inbounds: Vec<InboundView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsView<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    pub outbound: Option<u16>,
    pub inbound: Option<u16>,
    pub dns: Option<u16>,
    pub admin: Option<SocketAddr>,
    pub ipv6: bool,
    /// `null`: off.
    pub client_keepalive: Option<KeepaliveView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeepaliveView {
    pub time: String,
    pub interval: String,
    pub probes: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassthroughView {
    /// All, None or Matched.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<MatchView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchView {
    pub cidr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView<'a> {
    pub name: &'a str,
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    pub connect_timeout: String,
    /// `0s`: no idle timeout.
    pub idle_timeout: String,
}

impl<'a> ClusterView<'a> {
    fn new(name: &'a str, s: &ClusterSettings) -> Self {
        ClusterView {
            name,
            max_connections: s.limits.max_connections,
            max_pending_requests: s.limits.max_pending_requests,
            max_requests: s.limits.max_requests,
            max_retries: s.limits.max_retries,
            connect_timeout: duration_text(s.connect_timeout),
            idle_timeout: duration_text(s.idle_timeout),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView<'a> {
    pub name: &'a str,
    pub addresses: &'a [SocketAddr],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundView {
    pub address: SocketAddr,
    pub deliver_to: SocketAddr,
    pub cluster: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsView<'a> {
    pub upstreams: &'a [SocketAddr],
    /// `.mesh` names are answered here (Dataplane files were given).
    pub mesh_zone: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarder::cluster::ClusterId;

    #[test]
    fn durations_read_as_the_files_write_them() {
        let t = |ms: u64| duration_text(Duration::from_millis(ms));
        assert_eq!(t(99_000), "99s");
        assert_eq!(t(3 * 3600 * 1000), "3h");
        assert_eq!(t(120_000), "2m");
        assert_eq!(t(90_000), "90s");
        assert_eq!(t(500), "500ms");
        assert_eq!(t(0), "0s");
        assert_eq!(duration_text(Duration::from_micros(1500)), "0.0015s");
    }

    #[test]
    fn the_effective_view_lists_every_cluster_with_its_settings() {
        let mut o = crate::forwarder::options::tests::defaults();
        o.clusters[ClusterId::OutboundV4.index()]
            .limits
            .max_connections = 2048;
        o.passthrough = Passthrough::None;
        let mut w = Vec::new();
        let s = Settings::build(o, None, &mut w).unwrap();
        let v = serde_json::to_value(s.effective()).unwrap();
        assert_eq!(v["schemaVersion"], 1);
        assert_eq!(v["generation"], 1);
        assert_eq!(v["mesh"], "default");
        assert_eq!(v["passthrough"]["mode"], "None");
        assert_eq!(v["clusters"][0]["name"], "outbound:passthrough:ipv4");
        assert_eq!(v["clusters"][0]["maxConnections"], 2048);
        assert_eq!(v["clusters"][1]["maxConnections"], 1024);
        assert_eq!(v["clusters"][0]["connectTimeout"], "10s");
        assert_eq!(v["clusters"][0]["idleTimeout"], "1h");
        assert_eq!(v["listeners"]["outbound"], 15001);
        // A second generation keeps the counters.
        let again = Settings::build(s.opts.clone(), Some(&s), &mut w).unwrap();
        assert_eq!(again.generation, 2);
        assert!(std::sync::Arc::ptr_eq(
            &again.clusters.passthrough(ClusterId::InboundV4).stats,
            &s.clusters.passthrough(ClusterId::InboundV4).stats
        ));
    }
}
