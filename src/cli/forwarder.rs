//! Flags of `tproxyctl forwarder`: the shared transparent-proxy configuration
//! plus the forwarder's own limits, addresses, logging and the Dataplane
//! files of the mesh. Values stay raw strings and paths;
//! `crate::forwarder::options` checks them and names the flag.

use std::path::PathBuf;

use clap::{ArgAction, Args};

use super::{ReceiptArg, TpFlags};

#[derive(Debug, Clone, Args)]
pub struct ForwarderArgs {
    #[command(flatten)]
    pub tp: TpFlags,
    #[command(flatten)]
    pub receipt: ReceiptArg,
    #[command(flatten)]
    pub fwd: Box<ForwarderFlags>,
}

/// The forwarder's own settings.
#[derive(Debug, Default, Clone, Args)]
#[command(next_help_heading = "Forwarder")]
pub struct ForwarderFlags {
    /// Run as this user (name or UID) after binding the listeners; must be the UID the rules exempt.
    #[arg(long, value_name = "USER|UID")]
    pub user: Option<String>,
    /// Print the effective settings (per-cluster limits and timeouts, passthrough, mesh services and their addresses) as YAML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Forwarder settings file (YAML or JSON: maxConnections, maxPendingRequests, maxRequests, maxRetries, connectTimeout, idleTimeout, drainTimeout, adminAddress, accessLog, dns, workers, user, dataplanes, localDataplane, meshName, clientKeepalive).
    #[arg(long, value_name = "FILE")]
    pub forwarder_config: Option<PathBuf>,
    /// Policy file (ProxyTemplate, MeshProxyPatch, Mesh, MeshPassthrough; YAML, several documents allowed). Repeatable.
    #[arg(long, value_name = "FILE", action = ArgAction::Append)]
    pub policy: Vec<PathBuf>,
    /// Universal Dataplane file of the mesh (YAML or JSON, several documents or a kumactl list allowed), or a directory whose *.yaml, *.yml and *.json files are read in name order: its inbounds' address:port are mesh destinations and answer <service>.mesh. Repeatable.
    #[arg(long, value_name = "FILE|DIR", action = ArgAction::Append)]
    pub dataplane: Vec<PathBuf>,
    /// This proxy's mesh when no Dataplane file decides it: policies of other meshes are ignored [default: default].
    #[arg(long, value_name = "MESH")]
    pub mesh_name: Option<String>,
    /// This proxy's own Dataplane: its mesh, reachableServices / reachableBackends and inbounds apply [default: the --dataplane whose networking.address is an address of this host].
    #[arg(long, value_name = "FILE")]
    pub local_dataplane: Option<PathBuf>,
    /// Most concurrent connections per cluster [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    /// Most connections per cluster waiting for their upstream connect [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_pending_requests: Option<String>,
    /// Most concurrent relayed streams per cluster (one per TCP connection) [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_requests: Option<String>,
    /// Most upstream connect retries per connection, and in flight per cluster [default: 3].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<String>,
    /// Upstream connect timeout, e.g. 10s or 500ms [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Close a connection after this long without data either way, e.g. 1h; 0 disables it [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// On SIGTERM, how long open connections may go on before the forwarder exits [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// Admin address serving GET /stats (Prometheus text), GET /config (JSON) and GET /ready; "off" disables it [default: 127.0.0.1:9901].
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub admin_address: Option<String>,
    /// Write one line per finished connection to this file, or - for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<String>,
    /// Run the DNS proxy on the DNS port even when DNS redirection is not configured.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = super::parse_go_bool)]
    pub dns: Option<bool>,
    /// Worker threads (1 runs everything on one thread) [default: the CPUs this process may use].
    #[arg(long, value_name = "N")]
    pub workers: Option<String>,
}
