//! The clusters and their settings: the four passthrough clusters (legacy and
//! new Envoy names, reference §6.4), circuit-breaker limits and timeouts with
//! the non-mesh defaults of the seeds' "Non-mesh traffic" page, and the
//! forwarder's cluster table — passthrough clusters first, then one per mesh
//! service and per local inbound — holding each cluster's name, settings and
//! counters. A reload builds a new table; a cluster that keeps its name
//! keeps its counters ([`Clusters::adopt_stats`]), and connections hold the
//! cluster they were accepted with. Plain values, no I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::stats::ClusterStats;

/// One of the four passthrough clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterId {
    OutboundV4,
    OutboundV6,
    InboundV4,
    InboundV6,
}

impl ClusterId {
    pub const ALL: [ClusterId; 4] = [
        ClusterId::OutboundV4,
        ClusterId::OutboundV6,
        ClusterId::InboundV4,
        ClusterId::InboundV6,
    ];

    pub fn new(inbound: bool, ipv6: bool) -> Self {
        match (inbound, ipv6) {
            (false, false) => ClusterId::OutboundV4,
            (false, true) => ClusterId::OutboundV6,
            (true, false) => ClusterId::InboundV4,
            (true, true) => ClusterId::InboundV6,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_inbound(self) -> bool {
        matches!(self, ClusterId::InboundV4 | ClusterId::InboundV6)
    }

    /// The legacy Envoy name (`outbound:passthrough:ipv4`), used in stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            ClusterId::OutboundV4 => "outbound:passthrough:ipv4",
            ClusterId::OutboundV6 => "outbound:passthrough:ipv6",
            ClusterId::InboundV4 => "inbound:passthrough:ipv4",
            ClusterId::InboundV6 => "inbound:passthrough:ipv6",
        }
    }

    /// The newer Envoy name (`self_transparentproxy_passthrough_outbound_ipv4`).
    pub fn new_name(self) -> &'static str {
        match self {
            ClusterId::OutboundV4 => "self_transparentproxy_passthrough_outbound_ipv4",
            ClusterId::OutboundV6 => "self_transparentproxy_passthrough_outbound_ipv6",
            ClusterId::InboundV4 => "self_transparentproxy_passthrough_inbound_ipv4",
            ClusterId::InboundV6 => "self_transparentproxy_passthrough_inbound_ipv6",
        }
    }

    /// Finds a cluster (or listener: they share names) by either name.
    pub fn by_name(name: &str) -> Option<ClusterId> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name || c.new_name() == name)
    }
}

/// A cluster's place in the [`Clusters`] table: the passthrough clusters are
/// at [`ClusterId::index`], mesh clusters after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterIdx(pub u32);

impl From<ClusterId> for ClusterIdx {
    fn from(c: ClusterId) -> Self {
        ClusterIdx(c as u32)
    }
}

/// One cluster of the table.
#[derive(Debug)]
pub struct Cluster {
    /// What stats and the access log call it.
    pub name: Box<str>,
    pub settings: ClusterSettings,
    /// Shared by every generation of the table that has a cluster of this name.
    pub stats: Arc<ClusterStats>,
}

/// Every cluster the forwarder relays through, fixed for one generation of
/// the settings (start-up, then each reload).
#[derive(Debug)]
pub struct Clusters(Box<[Arc<Cluster>]>);

impl Clusters {
    /// The passthrough clusters with their settings, then `more` in order.
    pub fn new(
        passthrough: &[ClusterSettings; 4],
        more: impl IntoIterator<Item = (String, ClusterSettings)>,
    ) -> Self {
        let first = ClusterId::ALL.map(|c| (c.name().to_string(), passthrough[c.index()]));
        Clusters(
            first
                .into_iter()
                .chain(more)
                .map(|(name, settings)| {
                    Arc::new(Cluster {
                        name: name.into_boxed_str(),
                        settings,
                        stats: Arc::default(),
                    })
                })
                .collect(),
        )
    }

    pub fn get(&self, idx: ClusterIdx) -> &Arc<Cluster> {
        &self.0[idx.0 as usize]
    }

    pub fn passthrough(&self, id: ClusterId) -> &Cluster {
        self.get(id.into())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Cluster> {
        self.0.iter().map(|c| &**c)
    }

    /// Takes over the counters of the clusters of `old` that have a cluster
    /// of the same name here, so that a reload neither resets counters nor
    /// loses the gauges of connections still open. Call on a new table.
    pub fn adopt_stats(&mut self, old: &Clusters) {
        let by_name: HashMap<&str, &Arc<ClusterStats>> =
            old.0.iter().map(|c| (&*c.name, &c.stats)).collect();
        for c in self.0.iter_mut() {
            if let Some(stats) = by_name.get(&*c.name)
                && let Some(c) = Arc::get_mut(c)
            {
                c.stats = Arc::clone(stats);
            }
        }
    }
}

/// Circuit-breaker thresholds of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections (connecting or relaying) at once.
    pub max_connections: u32,
    /// Connections waiting for their upstream connect.
    pub max_pending_requests: u32,
    /// Relayed streams at once; a TCP connection is one stream.
    pub max_requests: u32,
    /// Connect retries per connection, and retries in flight in the cluster.
    pub max_retries: u32,
}

/// Everything one cluster is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSettings {
    pub limits: Limits,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ClusterSettings {
    /// The seeds' non-mesh defaults: 1024/1024/1024/3, connect 10s, idle 1h.
    fn default() -> Self {
        ClusterSettings {
            limits: Limits {
                max_connections: 1024,
                max_pending_requests: 1024,
                max_requests: 1024,
                max_retries: 3,
            },
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// A partial change of cluster settings (from a settings file, a policy or flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterPatch {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl ClusterPatch {
    /// Fields set in `later` replace ours.
    pub fn merge(&mut self, later: &ClusterPatch) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            max_connections,
            max_pending_requests,
            max_requests,
            max_retries,
            connect_timeout,
            idle_timeout
        );
    }

    pub fn apply(&self, s: &mut ClusterSettings) {
        let l = &mut s.limits;
        l.max_connections = self.max_connections.unwrap_or(l.max_connections);
        l.max_pending_requests = self.max_pending_requests.unwrap_or(l.max_pending_requests);
        l.max_requests = self.max_requests.unwrap_or(l.max_requests);
        l.max_retries = self.max_retries.unwrap_or(l.max_retries);
        s.connect_timeout = self.connect_timeout.unwrap_or(s.connect_timeout);
        s.idle_timeout = self.idle_timeout.unwrap_or(s.idle_timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in ClusterId::ALL {
            assert_eq!(ClusterId::by_name(c.name()), Some(c));
            assert_eq!(ClusterId::by_name(c.new_name()), Some(c));
        }
        assert_eq!(ClusterId::by_name("outbound:backend"), None);
    }

    #[test]
    fn the_table_starts_with_the_passthrough_clusters() {
        let mut pass = [ClusterSettings::default(); 4];
        pass[ClusterId::InboundV6.index()].limits.max_connections = 7;
        let mesh = ClusterSettings {
            connect_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let t = Clusters::new(&pass, [("backend".to_string(), mesh)]);
        assert_eq!(t.iter().count(), 5);
        for c in ClusterId::ALL {
            assert_eq!(&*t.passthrough(c).name, c.name());
        }
        assert_eq!(
            t.passthrough(ClusterId::InboundV6)
                .settings
                .limits
                .max_connections,
            7
        );
        let b = t.get(ClusterIdx(4));
        assert_eq!((&*b.name, b.settings), ("backend", mesh));
    }

    #[test]
    fn a_new_table_keeps_the_counters_of_clusters_that_keep_their_name() {
        let pass = [ClusterSettings::default(); 4];
        let s = ClusterSettings::default();
        let old = Clusters::new(&pass, [("a".to_string(), s), ("gone".to_string(), s)]);
        old.get(ClusterIdx(4))
            .stats
            .cx_active
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let mut new = Clusters::new(&pass, [("new".to_string(), s), ("a".to_string(), s)]);
        new.adopt_stats(&old);
        assert!(Arc::ptr_eq(
            &new.get(ClusterIdx(5)).stats,
            &old.get(ClusterIdx(4)).stats
        ));
        assert!(Arc::ptr_eq(
            &new.passthrough(ClusterId::OutboundV6).stats,
            &old.passthrough(ClusterId::OutboundV6).stats
        ));
        assert_eq!(
            new.get(ClusterIdx(4))
                .stats
                .cx_active
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn patches_merge_and_apply() {
        let mut a = ClusterPatch {
            max_connections: Some(5),
            ..Default::default()
        };
        a.merge(&ClusterPatch {
            max_retries: Some(1),
            ..Default::default()
        });
        let mut s = ClusterSettings::default();
        a.apply(&mut s);
        assert_eq!(s.limits.max_connections, 5);
        assert_eq!(s.limits.max_retries, 1);
        assert_eq!(s.limits.max_requests, 1024);
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
    }
}
