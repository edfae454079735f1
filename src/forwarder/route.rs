//! Where a connection goes, decided once per accepted connection from its
//! original destination: a mesh destination to its service's cluster, one of
//! this proxy's inbounds to its workload (`localhost:<servicePort>`), any
//! other destination through a passthrough cluster — unless `Mesh` /
//! `MeshPassthrough` keep non-mesh traffic in, which never affects mesh
//! destinations. One hash lookup keyed by the socket address, no
//! allocation. Also builds the cluster table the routes point into.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::cluster::{ClusterId, ClusterIdx, Clusters};
use super::options::Options;
use super::policy::Passthrough;

/// The decision for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Relay to `to` through `cluster`.
    Relay { cluster: ClusterIdx, to: SocketAddr },
    /// Non-mesh traffic that may not leave; counted in `cluster`.
    Blocked(ClusterIdx),
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Router {
    /// Mesh destinations (reachable services' `address:port`).
    outbound: HashMap<SocketAddr, ClusterIdx>,
    /// This proxy's inbounds: cluster and workload address.
    inbound: HashMap<SocketAddr, (ClusterIdx, SocketAddr)>,
    passthrough: Passthrough,
}

/// The table key: address and port only (an IPv6 original destination may
/// carry a flow label or scope the Dataplane files do not).
fn key(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port())
}

impl Router {
    /// `dst` is the original destination in canonical form (IPv4 never
    /// v4-mapped). Inbound traffic is never blocked.
    pub fn route(&self, dst: SocketAddr, inbound: bool) -> Route {
        if inbound {
            if let Some(&(cluster, to)) = self.inbound.get(&key(dst)) {
                return Route::Relay { cluster, to };
            }
            let cluster = ClusterId::new(true, dst.is_ipv6()).into();
            return Route::Relay { cluster, to: dst };
        }
        if let Some(&cluster) = self.outbound.get(&key(dst)) {
            return Route::Relay { cluster, to: dst };
        }
        let cluster = ClusterId::new(false, dst.is_ipv6()).into();
        if self.passthrough.allows(dst) {
            Route::Relay { cluster, to: dst }
        } else {
            Route::Blocked(cluster)
        }
    }
}

/// The router and the clusters it routes into: the passthrough clusters,
/// then one per reachable mesh service, then one per distinct inbound
/// cluster name of this proxy.
pub fn build(opts: &Options) -> (Router, Clusters) {
    let mesh = &opts.mesh;
    let mut names: Vec<String> = Vec::new();
    let mut slot = |name: String| -> ClusterIdx {
        let i = names.iter().position(|n| *n == name).unwrap_or_else(|| {
            names.push(name);
            names.len() - 1
        });
        ClusterIdx((ClusterId::ALL.len() + i) as u32)
    };
    let mut router = Router {
        passthrough: opts.passthrough.clone(),
        ..Router::default()
    };
    for s in &mesh.services {
        let c = slot(s.name.clone());
        for e in &s.endpoints {
            router.outbound.insert(key(*e), c);
        }
    }
    for i in &mesh.inbounds {
        let c = slot(i.cluster_name());
        router.inbound.insert(key(i.addr), (c, i.workload));
    }
    let clusters = Clusters::new(
        &opts.clusters,
        names.into_iter().map(|n| (n, opts.mesh_settings)),
    );
    (router, clusters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarder::mesh::{LocalInbound, Mesh, Service};
    use crate::forwarder::policy::PassMatch;

    fn opts(passthrough: Passthrough) -> Options {
        let mut o = crate::forwarder::options::tests::defaults();
        o.passthrough = passthrough;
        o.mesh = Mesh {
            name: Some("default".into()),
            services: vec![
                Service {
                    name: "a".into(),
                    endpoints: vec![
                        "10.0.0.1:80".parse().unwrap(),
                        "[fd00::1]:80".parse().unwrap(),
                    ],
                },
                Service {
                    name: "b".into(),
                    endpoints: vec!["10.0.0.2:81".parse().unwrap()],
                },
            ],
            inbounds: vec![
                LocalInbound {
                    addr: "10.0.0.9:8080".parse().unwrap(),
                    workload: "127.0.0.1:5000".parse().unwrap(),
                },
                LocalInbound {
                    addr: "10.0.0.9:8081".parse().unwrap(),
                    workload: "10.0.0.9:8081".parse().unwrap(),
                },
            ],
            ..Mesh::default()
        };
        o
    }

    fn relay(cluster: u32, to: &str) -> Route {
        Route::Relay {
            cluster: ClusterIdx(cluster),
            to: to.parse().unwrap(),
        }
    }

    #[test]
    fn mesh_destinations_go_to_their_service_cluster() {
        let (r, c) = build(&opts(Passthrough::All));
        let names: Vec<&str> = c.iter().map(|c| &*c.name).collect();
        assert_eq!(
            names,
            [
                "outbound:passthrough:ipv4",
                "outbound:passthrough:ipv6",
                "inbound:passthrough:ipv4",
                "inbound:passthrough:ipv6",
                "a",
                "b",
                "localhost:5000",
                "localhost:8081"
            ]
        );
        let out = |d: &str| r.route(d.parse().unwrap(), false);
        assert_eq!(out("10.0.0.1:80"), relay(4, "10.0.0.1:80"));
        assert_eq!(out("[fd00::1]:80"), relay(4, "[fd00::1]:80"));
        assert_eq!(out("10.0.0.2:81"), relay(5, "10.0.0.2:81"));
        // Another port of a mesh address is not a mesh destination.
        assert_eq!(out("10.0.0.2:80"), relay(0, "10.0.0.2:80"));
        assert_eq!(out("[fd00::2]:80"), relay(1, "[fd00::2]:80"));
        // A flow label or scope in the original destination does not matter.
        let v6 = std::net::SocketAddrV6::new("fd00::1".parse().unwrap(), 80, 7, 0).into();
        assert_eq!(
            r.route(v6, false),
            Route::Relay {
                cluster: ClusterIdx(4),
                to: v6
            }
        );
    }

    #[test]
    fn local_inbounds_go_to_the_workload() {
        let (r, _) = build(&opts(Passthrough::All));
        let inb = |d: &str| r.route(d.parse().unwrap(), true);
        assert_eq!(inb("10.0.0.9:8080"), relay(6, "127.0.0.1:5000"));
        assert_eq!(inb("10.0.0.9:8081"), relay(7, "10.0.0.9:8081"));
        assert_eq!(inb("10.0.0.9:22"), relay(2, "10.0.0.9:22"));
        assert_eq!(inb("[fd00::9]:22"), relay(3, "[fd00::9]:22"));
        // An outbound connection to a local inbound address is not mapped.
        assert_eq!(
            r.route("10.0.0.9:8080".parse().unwrap(), false),
            relay(0, "10.0.0.9:8080")
        );
    }

    #[test]
    fn blocking_passthrough_blocks_only_non_mesh_traffic() {
        for p in [
            Passthrough::None,
            Passthrough::Matched(vec![PassMatch {
                net: "192.0.2.0/24".parse().unwrap(),
                port: None,
            }]),
        ] {
            let (r, _) = build(&opts(p.clone()));
            let out = |d: &str| r.route(d.parse().unwrap(), false);
            assert_eq!(out("10.0.0.1:80"), relay(4, "10.0.0.1:80"), "{p:?}");
            assert_eq!(out("[fd00::1]:80"), relay(4, "[fd00::1]:80"), "{p:?}");
            assert_eq!(out("10.0.0.3:80"), Route::Blocked(ClusterIdx(0)), "{p:?}");
            assert_eq!(out("[fd00::3]:80"), Route::Blocked(ClusterIdx(1)), "{p:?}");
            // Inbound traffic always passes.
            assert_eq!(
                r.route("10.0.0.3:80".parse().unwrap(), true),
                relay(2, "10.0.0.3:80")
            );
        }
        let (r, _) = build(&opts(Passthrough::Matched(vec![PassMatch {
            net: "192.0.2.0/24".parse().unwrap(),
            port: None,
        }])));
        assert_eq!(
            r.route("192.0.2.4:443".parse().unwrap(), false),
            relay(0, "192.0.2.4:443")
        );
    }

    #[test]
    fn mesh_clusters_get_the_mesh_settings() {
        let mut o = opts(Passthrough::All);
        o.mesh_settings.limits.max_connections = 9;
        o.clusters[ClusterId::OutboundV4.index()]
            .limits
            .max_connections = 3;
        let (_, c) = build(&o);
        assert_eq!(c.get(ClusterIdx(4)).settings.limits.max_connections, 9);
        assert_eq!(
            c.passthrough(ClusterId::OutboundV4)
                .settings
                .limits
                .max_connections,
            3
        );
    }
}
