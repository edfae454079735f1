//! Where a connection goes, decided once per accepted connection from its
//! original destination: a mesh destination to its service's cluster, one of
//! this proxy's inbounds to its workload (`localhost:<servicePort>`), any
//! other destination through a passthrough cluster — unless `Mesh` /
//! `MeshPassthrough` keep non-mesh traffic in, which never affects mesh
//! destinations. One hash lookup keyed by the socket address, no
//! allocation; `MeshPassthrough` matches are a table too (one lookup per
//! prefix length in use, however many matches). Also builds the cluster
//! table the routes point into. Everything here is linear to build and
//! independent of the mesh's size to query.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

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
    passthrough: PassTable,
}

/// Which non-mesh destinations may pass ([`Passthrough`]) as a lookup
/// table: the `MeshPassthrough` matches by network, tried once per prefix
/// length in use (at most 33 for IPv4, 129 for IPv6) instead of one by one.
#[derive(Debug, Default)]
enum PassTable {
    #[default]
    All,
    None,
    Matched {
        /// Prefix lengths in use, per family.
        v4: Vec<u8>,
        v6: Vec<u8>,
        /// Network (address with its host bits cleared) → ports.
        nets: HashMap<IpNet, Ports>,
    },
}

/// The ports a network passes for.
#[derive(Debug)]
enum Ports {
    Any,
    /// Sorted, distinct.
    Some(Vec<u16>),
}

impl PassTable {
    fn new(p: &Passthrough) -> Self {
        let matches = match p {
            Passthrough::All => return PassTable::All,
            Passthrough::None => return PassTable::None,
            Passthrough::Matched(m) => m,
        };
        let mut nets: HashMap<IpNet, Ports> = HashMap::with_capacity(matches.len());
        for m in matches {
            let ports = nets.entry(m.net.trunc()).or_insert(Ports::Some(Vec::new()));
            match (m.port, &mut *ports) {
                (None, _) => *ports = Ports::Any,
                (Some(_), Ports::Any) => {}
                (Some(p), Ports::Some(list)) => list.push(p),
            }
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (net, ports) in &mut nets {
            if let Ports::Some(list) = ports {
                list.sort_unstable();
                list.dedup();
            }
            match net {
                IpNet::V4(n) => v4.push(n.prefix_len()),
                IpNet::V6(n) => v6.push(n.prefix_len()),
            }
        }
        for lens in [&mut v4, &mut v6] {
            lens.sort_unstable();
            lens.dedup();
        }
        PassTable::Matched { v4, v6, nets }
    }

    fn allows(&self, dst: SocketAddr) -> bool {
        let (lens, nets) = match self {
            PassTable::All => return true,
            PassTable::None => return false,
            PassTable::Matched { v4, v6, nets } => (if dst.is_ipv4() { v4 } else { v6 }, nets),
        };
        lens.iter().any(|&len| {
            let net = match dst.ip() {
                IpAddr::V4(a) => ipnet::Ipv4Net::new(a, len).map(|n| IpNet::V4(n.trunc())),
                IpAddr::V6(a) => ipnet::Ipv6Net::new(a, len).map(|n| IpNet::V6(n.trunc())),
            };
            match net.ok().and_then(|n| nets.get(&n)) {
                Some(Ports::Any) => true,
                Some(Ports::Some(list)) => list.binary_search(&dst.port()).is_ok(),
                None => false,
            }
        })
    }
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
/// cluster name of this proxy. Linear in the number of endpoints.
pub fn build(opts: &Options) -> (Router, Clusters) {
    let mesh = &opts.mesh;
    let first = ClusterId::ALL.len();
    let idx = |i: usize| ClusterIdx((first + i) as u32);
    // Service names are distinct (the mesh is built by name); inbounds of
    // this proxy may share a cluster (`localhost:<servicePort>`).
    let mut names: Vec<String> = Vec::with_capacity(mesh.services.len() + mesh.inbounds.len());
    let endpoints = mesh.services.iter().map(|s| s.endpoints.len()).sum();
    let mut router = Router {
        outbound: HashMap::with_capacity(endpoints),
        inbound: HashMap::with_capacity(mesh.inbounds.len()),
        passthrough: PassTable::new(&opts.passthrough),
    };
    for s in &mesh.services {
        let c = idx(names.len());
        names.push(s.name.clone());
        for e in &s.endpoints {
            router.outbound.insert(key(*e), c);
        }
    }
    let mut inbound_clusters: HashMap<String, ClusterIdx> = HashMap::new();
    for i in &mesh.inbounds {
        let c = *inbound_clusters
            .entry(i.cluster_name())
            .or_insert_with_key(|name| {
                names.push(name.clone());
                idx(names.len() - 1)
            });
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

    #[test]
    fn the_passthrough_table_agrees_with_the_matches_one_by_one() {
        // Overlapping networks of several lengths, hosts, ports, both families.
        let m = |net: &str, port: Option<u16>| PassMatch {
            net: net.parse().unwrap(),
            port,
        };
        let p = Passthrough::Matched(vec![
            m("10.0.0.0/8", Some(443)),
            m("10.1.0.0/16", None),
            m("10.1.2.3/32", Some(22)),
            m("10.9.9.9/24", Some(80)),
            m("10.9.9.0/24", Some(81)),
            m("192.0.2.7/32", None),
            m("0.0.0.0/0", Some(53)),
            m("fd00::/8", Some(443)),
            m("fd00:1::/32", None),
            m("2001:db8::1/128", Some(8080)),
        ]);
        let t = PassTable::new(&p);
        // A small LCG picks addresses near the networks above and ports
        // among the ones named (and others).
        let mut x: u64 = 7;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let ports = [22, 53, 80, 81, 443, 8080, 9, 65535];
        let mut passed = 0;
        for _ in 0..20_000 {
            let r = next();
            let port = ports[(r % 8) as usize];
            let ip: IpAddr = match (r >> 3) % 4 {
                0 => [
                    10,
                    (r >> 5) as u8 % 12,
                    (r >> 9) as u8 % 12,
                    (r >> 13) as u8,
                ]
                .into(),
                1 => [192, 0, 2, (r >> 5) as u8 % 9].into(),
                2 => [(r >> 5) as u8, (r >> 13) as u8, 2, 3].into(),
                _ => {
                    let hi = [0xfd00u16, 0x2001, 0xfe80][(r >> 5) as usize % 3];
                    let seg = [0u16, 1, 0xdb8][(r >> 7) as usize % 3];
                    std::net::Ipv6Addr::new(hi, seg, 0, 0, 0, 0, 0, (r >> 9) as u16 % 3).into()
                }
            };
            let dst = SocketAddr::new(ip, port);
            assert_eq!(t.allows(dst), p.allows(dst), "{dst}");
            passed += usize::from(p.allows(dst));
        }
        // Both answers were asked for, many times.
        assert!((2_000..18_000).contains(&passed), "{passed}");
        assert!(PassTable::new(&Passthrough::All).allows("10.0.0.1:1".parse().unwrap()));
        assert!(!PassTable::new(&Passthrough::None).allows("10.0.0.1:1".parse().unwrap()));
        let empty = PassTable::new(&Passthrough::Matched(Vec::new()));
        assert!(!empty.allows("10.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn inbounds_delivering_to_one_port_share_its_cluster() {
        let mut o = opts(Passthrough::All);
        o.mesh.inbounds.push(LocalInbound {
            addr: "[fd00::9]:8080".parse().unwrap(),
            workload: "[::1]:5000".parse().unwrap(),
        });
        let (r, c) = build(&o);
        assert_eq!(c.iter().count(), 8, "no cluster added");
        assert_eq!(
            r.route("[fd00::9]:8080".parse().unwrap(), true),
            relay(6, "[::1]:5000")
        );
    }
}
