//! Flags of `tproxyctl generate dataplane`: the Dataplane's own fields for the
//! common case (one inbound), template inputs (`--template`, `--dataplane-var`),
//! the output format, `--check`, plus the shared transparent-proxy
//! configuration and the receipt. Values stay raw; [`crate::ops::generate`]
//! checks them and names the flag in every error.

use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};

use super::{ReceiptArg, TpFlags, parse_go_bool};

/// Flags that describe the Dataplane itself; they cannot be combined with
/// `--template` (`--mesh` can: it fills a template without `mesh`).
const FIELD_FLAGS: [&str; 12] = [
    "name",
    "address",
    "port",
    "service_port",
    "service_address",
    "service",
    "tag",
    "protocol",
    "reachable_service",
    "reachable_backend",
    "reachable_backends",
    "transparent_proxying",
];

#[derive(Debug, Args)]
#[command(
    after_help = "The transparentProxying section (redirect ports, ipFamilyMode) comes from the \
same configuration as `install transparent-proxy`: --config, KUMA_TRANSPARENT_PROXY_* environment and \
flags. Describe the Dataplane with flags (--name, --address, --port, --service, ...) or render a \
kuma-dp template with --template and --dataplane-var (Mustache, as `kuma-dp run` renders it). \
--check FILE compares a Dataplane file with the installed rules (the receipt) or, without one, with \
the configuration, and exits 1 on a difference. A template or file may hold several Dataplanes \
(documents separated by ---). Validation follows Kuma 2.14 (--require-service-tag: older control \
planes).\n\n\
Examples:\n  \
tproxyctl generate dataplane --name web --address 10.0.0.5 --port 8080 --service web\n  \
tproxyctl generate dataplane --template dp.yaml -v name=web -v address=10.0.0.5,port=8080\n  \
tproxyctl generate dataplane --check /etc/kuma/dataplane.yaml"
)]
pub struct GenerateDataplaneArgs {
    #[command(flatten)]
    pub tp: TpFlags,
    #[command(flatten)]
    pub receipt: ReceiptArg,
    /// The Dataplane's fields and the template inputs (boxed: `Command` stays small).
    #[command(flatten)]
    pub dataplane: Box<DataplaneFlags>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = DataplaneOutput::Yaml, help_heading = "Output")]
    pub output: DataplaneOutput,

    /// Compare this Dataplane file's transparentProxying with the installed rules (or the configuration); exit 1 on a difference.
    #[arg(long, value_name = "FILE|-", help_heading = "Output", conflicts_with_all = ["template", "name", "address", "port", "service_port", "service_address", "service", "tag", "protocol", "reachable_service", "reachable_backend", "reachable_backends", "transparent_proxying"])]
    pub check: Option<PathBuf>,

    /// Also apply the rules of Kuma control planes before 2.14: at least one inbound (or a gateway), and a kuma.io/service tag on every inbound.
    #[arg(long, help_heading = "Validation")]
    pub require_service_tag: bool,
}

/// The Dataplane's own fields (flag mode) and the template inputs.
#[derive(Debug, Args)]
pub struct DataplaneFlags {
    /// Dataplane name.
    #[arg(long, value_name = "NAME", help_heading = "Dataplane")]
    pub name: Option<String>,
    /// Mesh the Dataplane belongs to (with --template: used when the template sets none) [default: default].
    #[arg(
        long,
        value_name = "MESH",
        help_heading = "Dataplane",
        conflicts_with = "check"
    )]
    pub mesh: Option<String>,
    /// networking.address: the IP address other data plane proxies reach this one at (not 0.0.0.0 or ::).
    #[arg(long, value_name = "ADDRESS", help_heading = "Dataplane")]
    pub address: Option<String>,
    /// Inbound port the proxy listens on for the service.
    #[arg(long, value_name = "PORT", help_heading = "Dataplane")]
    pub port: Option<String>,
    /// Port the application listens on, when it differs from --port.
    #[arg(long, value_name = "PORT", help_heading = "Dataplane")]
    pub service_port: Option<String>,
    /// Address the application listens on (e.g. 127.0.0.1).
    #[arg(long, value_name = "ADDRESS", help_heading = "Dataplane")]
    pub service_address: Option<String>,
    /// The inbound's kuma.io/service tag.
    #[arg(long, value_name = "NAME", help_heading = "Dataplane")]
    pub service: Option<String>,
    /// Another inbound tag (repeatable).
    #[arg(long, value_name = "KEY=VALUE", action = ArgAction::Append, help_heading = "Dataplane")]
    pub tag: Vec<String>,
    /// The inbound's kuma.io/protocol tag: http, http2, grpc, tcp, tls or kafka.
    #[arg(long, value_name = "PROTOCOL", help_heading = "Dataplane")]
    pub protocol: Option<String>,
    /// A kuma.io/service this proxy may reach (repeatable, comma lists allowed).
    #[arg(long, value_name = "NAME", action = ArgAction::Append, help_heading = "Dataplane")]
    pub reachable_service: Vec<String>,
    /// A backend this proxy may reach: kind=MeshService,name=redis[,namespace=NS][,port=6379] or kind=MeshService,labels=KEY:VALUE[,labels=KEY:VALUE…] (repeatable).
    #[arg(long, value_name = "REF", action = ArgAction::Append, help_heading = "Dataplane", conflicts_with = "reachable_backends")]
    pub reachable_backend: Vec<String>,
    /// `none`: this proxy reaches no backend (renders reachableBackends: {}).
    #[arg(long, value_name = "none", help_heading = "Dataplane")]
    pub reachable_backends: Option<String>,
    /// Write the transparentProxying section (use --transparent-proxying=false for a Dataplane without it).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool, help_heading = "Dataplane")]
    pub transparent_proxying: Option<bool>,

    /// Render this kuma-dp Dataplane template (file, or - for stdin) instead of using the flags above.
    #[arg(long, value_name = "FILE|-", help_heading = "Template", conflicts_with_all = FIELD_FLAGS)]
    pub template: Option<String>,
    /// Template variable (repeatable; a comma list a=1,b=2 is allowed; dotted keys nest: tags.version=v1).
    #[arg(long, short = 'v', value_name = "KEY=VALUE", action = ArgAction::Append, requires = "template", help_heading = "Template")]
    pub dataplane_var: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataplaneOutput {
    /// The Dataplane as YAML, keys in Kuma's order.
    Yaml,
    /// The Dataplane as JSON.
    Json,
    /// The Kubernetes Pod annotations for reachable services and backends.
    KubernetesAnnotations,
}
