//! Counters per cluster (passthrough, mesh service, local inbound), for the
//! DNS proxy and for reloads, updated with relaxed atomics on the data path
//! and rendered as Prometheus text for the admin endpoint, with gauges of
//! each cluster's configured limits and timeouts. Owns the metric names; the
//! clusters themselves live in [`Clusters`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::cluster::{ClusterSettings, Clusters};

/// Counters of one cluster.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub cx_total: AtomicU64,
    pub cx_active: AtomicU64,
    /// Connections waiting for their upstream connect.
    pub cx_pending: AtomicU64,
    /// Bytes from the client to the destination.
    pub bytes_sent: AtomicU64,
    /// Bytes from the destination back to the client.
    pub bytes_received: AtomicU64,
    pub connect_fail: AtomicU64,
    pub connect_timeout: AtomicU64,
    pub idle_timeout: AtomicU64,
    pub overflow: AtomicU64,
    pub loop_refused: AtomicU64,
    pub blocked: AtomicU64,
    pub retries: AtomicU64,
    pub reset: AtomicU64,
    /// Cut at the drain deadline.
    pub drained: AtomicU64,
    /// Clients that closed or reset while their upstream connect was pending.
    pub client_gone: AtomicU64,
    /// Relaying upstream connections: what maxRequests counts.
    pub rq_active: AtomicU64,
    pub retries_active: AtomicU64,
}

/// DNS proxy counters.
#[derive(Debug, Default)]
pub struct DnsStats {
    pub queries_udp: AtomicU64,
    pub queries_tcp: AtomicU64,
    pub invalid: AtomicU64,
    pub upstream_fail: AtomicU64,
    pub servfail: AtomicU64,
    pub overflow: AtomicU64,
    /// Queries answered from the Dataplane files (`<service>.mesh`).
    pub mesh_answers: AtomicU64,
    /// `*.mesh` queries for names no reachable service has.
    pub mesh_nxdomain: AtomicU64,
    /// Queries dropped because the redirect rules cannot have sent them
    /// (not from this host, nor from a virtual network's subnet).
    pub refused: AtomicU64,
    /// `.mesh` answers that left out records to fit the client's UDP size.
    pub mesh_fitted: AtomicU64,
}

/// The counters that belong to no cluster (those are in [`Clusters`]).
#[derive(Debug, Default)]
pub struct Stats {
    pub dns: DnsStats,
    /// Connections accepted but not yet given a cluster (original destination lookup failed).
    pub no_original_dst: AtomicU64,
    /// Upstream connects abandoned because the kernel gave them the 4-tuple
    /// of a client we reset, whose conntrack entry would take them over.
    pub stale_conntrack: AtomicU64,
    /// SIGHUP reloads that took effect.
    pub reloads: AtomicU64,
    /// SIGHUP reloads that failed (the settings in force were kept).
    pub reload_failures: AtomicU64,
}

impl Stats {
    /// Prometheus text exposition format (version 0.0.4), every cluster of
    /// `clusters` (settings generation `generation`) in table order.
    pub fn prometheus(&self, clusters: &Clusters, generation: u64) -> String {
        let mut out = String::with_capacity(8192);
        type Get = fn(&ClusterStats) -> &AtomicU64;
        let metrics: [(&str, &str, &str, Get); 17] = [
            (
                "cx_total",
                "counter",
                "Connections accepted for the cluster.",
                |c| &c.cx_total,
            ),
            (
                "cx_active",
                "gauge",
                "Connections open now (connecting or relaying).",
                |c| &c.cx_active,
            ),
            (
                "cx_pending",
                "gauge",
                "Connections waiting for their upstream connect.",
                |c| &c.cx_pending,
            ),
            (
                "rq_active",
                "gauge",
                "Connections relaying now (established upstream).",
                |c| &c.rq_active,
            ),
            (
                "bytes_sent_total",
                "counter",
                "Bytes relayed from the client to the destination.",
                |c| &c.bytes_sent,
            ),
            (
                "bytes_received_total",
                "counter",
                "Bytes relayed from the destination to the client.",
                |c| &c.bytes_received,
            ),
            (
                "connect_fail_total",
                "counter",
                "Upstream connects that failed (after retries).",
                |c| &c.connect_fail,
            ),
            (
                "connect_timeout_total",
                "counter",
                "Upstream connects that timed out.",
                |c| &c.connect_timeout,
            ),
            (
                "idle_timeout_total",
                "counter",
                "Connections closed by the idle timeout.",
                |c| &c.idle_timeout,
            ),
            (
                "overflow_total",
                "counter",
                "Connections refused because a circuit-breaker limit was reached.",
                |c| &c.overflow,
            ),
            (
                "loop_refused_total",
                "counter",
                "Connections refused because they would loop back into the forwarder.",
                |c| &c.loop_refused,
            ),
            (
                "blocked_total",
                "counter",
                "Connections refused because passthrough is off for their destination.",
                |c| &c.blocked,
            ),
            (
                "retries_total",
                "counter",
                "Upstream connect retries.",
                |c| &c.retries,
            ),
            (
                "reset_total",
                "counter",
                "Connections ended by a reset on either side.",
                |c| &c.reset,
            ),
            (
                "retries_active",
                "gauge",
                "Upstream connect retries in flight.",
                |c| &c.retries_active,
            ),
            (
                "drained_total",
                "counter",
                "Connections cut (reset) at the drain deadline.",
                |c| &c.drained,
            ),
            (
                "client_gone_total",
                "counter",
                "Clients that closed or reset while their upstream connect was pending.",
                |c| &c.client_gone,
            ),
        ];
        for (name, kind, help, get) in metrics {
            let _ = writeln!(out, "# HELP tproxyctl_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE tproxyctl_cluster_{name} {kind}");
            // Cluster names are tag values (letters, digits, `.-_:`): no
            // escaping needed in a label.
            for c in clusters.iter() {
                let v = get(&c.stats).load(Relaxed);
                let _ = writeln!(
                    out,
                    "tproxyctl_cluster_{name}{{cluster=\"{}\"}} {v}",
                    c.name
                );
            }
        }
        type Conf = fn(&ClusterSettings) -> f64;
        let configured: [(&str, &str, Conf); 6] = [
            ("max_connections", "Configured maxConnections.", |s| {
                f64::from(s.limits.max_connections)
            }),
            (
                "max_pending_requests",
                "Configured maxPendingRequests.",
                |s| f64::from(s.limits.max_pending_requests),
            ),
            ("max_requests", "Configured maxRequests.", |s| {
                f64::from(s.limits.max_requests)
            }),
            ("max_retries", "Configured maxRetries.", |s| {
                f64::from(s.limits.max_retries)
            }),
            (
                "connect_timeout_seconds",
                "Configured upstream connect timeout.",
                |s| s.connect_timeout.as_secs_f64(),
            ),
            (
                "idle_timeout_seconds",
                "Configured idle timeout (0: none).",
                |s| s.idle_timeout.as_secs_f64(),
            ),
        ];
        for (name, help, get) in configured {
            let _ = writeln!(out, "# HELP tproxyctl_cluster_{name} {help}");
            let _ = writeln!(out, "# TYPE tproxyctl_cluster_{name} gauge");
            for c in clusters.iter() {
                let _ = writeln!(
                    out,
                    "tproxyctl_cluster_{name}{{cluster=\"{}\"}} {}",
                    c.name,
                    get(&c.settings)
                );
            }
        }
        let d = &self.dns;
        let dns: [(&str, &str, &AtomicU64); 10] = [
            (
                "queries_udp_total",
                "DNS queries received over UDP.",
                &d.queries_udp,
            ),
            (
                "queries_tcp_total",
                "DNS queries received over TCP.",
                &d.queries_tcp,
            ),
            (
                "invalid_total",
                "DNS messages that were not valid queries.",
                &d.invalid,
            ),
            (
                "upstream_fail_total",
                "Upstream DNS exchanges that failed or timed out.",
                &d.upstream_fail,
            ),
            (
                "servfail_total",
                "SERVFAIL answers built because every upstream failed.",
                &d.servfail,
            ),
            (
                "overflow_total",
                "DNS queries dropped because too many were in flight.",
                &d.overflow,
            ),
            (
                "mesh_answers_total",
                "DNS queries answered from the Dataplane files (<service>.mesh).",
                &d.mesh_answers,
            ),
            (
                "mesh_nxdomain_total",
                "NXDOMAIN answers for .mesh names no reachable service has.",
                &d.mesh_nxdomain,
            ),
            (
                "refused_total",
                "DNS queries dropped: not from this host nor redirected from a virtual network.",
                &d.refused,
            ),
            (
                "mesh_fitted_total",
                ".mesh answers that left out records to fit the client's UDP size.",
                &d.mesh_fitted,
            ),
        ];
        for (name, help, v) in dns {
            let _ = writeln!(out, "# HELP tproxyctl_dns_{name} {help}");
            let _ = writeln!(out, "# TYPE tproxyctl_dns_{name} counter");
            let _ = writeln!(out, "tproxyctl_dns_{name} {}", v.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP tproxyctl_no_original_dst_total Connections whose original destination could not be read (not redirected?).\n\
             # TYPE tproxyctl_no_original_dst_total counter\n\
             tproxyctl_no_original_dst_total {}",
            self.no_original_dst.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tproxyctl_stale_conntrack_total Upstream connects made again from another port: the first had the addresses and ports of a client the forwarder reset, whose conntrack entry would have sent it back to the forwarder.\n\
             # TYPE tproxyctl_stale_conntrack_total counter\n\
             tproxyctl_stale_conntrack_total {}",
            self.stale_conntrack.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tproxyctl_reloads_total SIGHUP reloads that took effect.\n\
             # TYPE tproxyctl_reloads_total counter\n\
             tproxyctl_reloads_total {}\n\
             # HELP tproxyctl_reload_failures_total SIGHUP reloads that failed; the settings in force were kept.\n\
             # TYPE tproxyctl_reload_failures_total counter\n\
             tproxyctl_reload_failures_total {}\n\
             # HELP tproxyctl_config_generation The settings generation in force (1 at start, +1 per reload).\n\
             # TYPE tproxyctl_config_generation gauge\n\
             tproxyctl_config_generation {generation}",
            self.reloads.load(Relaxed),
            self.reload_failures.load(Relaxed),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::forwarder::cluster::{ClusterId, ClusterIdx, ClusterSettings};

    #[test]
    fn prometheus_lists_every_cluster() {
        let s = Stats::default();
        let clusters = Clusters::new(
            &[ClusterSettings::default(); 4],
            [("backend".to_string(), ClusterSettings::default())],
        );
        clusters
            .passthrough(ClusterId::OutboundV6)
            .stats
            .overflow
            .fetch_add(2, Relaxed);
        clusters
            .get(ClusterIdx(4))
            .stats
            .cx_total
            .fetch_add(3, Relaxed);
        let t = s.prometheus(&clusters, 1);
        assert!(t.contains(
            "tproxyctl_cluster_overflow_total{cluster=\"outbound:passthrough:ipv6\"} 2\n"
        ));
        assert!(t.contains("tproxyctl_cluster_cx_total{cluster=\"backend\"} 3\n"));
        assert!(t.contains("tproxyctl_cluster_cx_total{cluster=\"inbound:passthrough:ipv4\"} 0\n"));
        assert!(t.contains("# TYPE tproxyctl_cluster_cx_active gauge\n"));
        assert!(t.contains("tproxyctl_cluster_max_connections{cluster=\"backend\"} 1024\n"));
        assert!(t.contains(
            "tproxyctl_cluster_idle_timeout_seconds{cluster=\"outbound:passthrough:ipv4\"} 3600\n"
        ));
        assert!(t.contains("tproxyctl_config_generation 1\n"));
        // every sample line is `name{labels} value` or `name value`
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            v.parse::<f64>().unwrap();
        }
    }
}
