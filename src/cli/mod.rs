//! Command-line types (clap derive): every flag of every command, with its
//! help text, and the parse step that explains clap's errors a little more
//! (non-UTF-8 arguments, `--flag false`). No defaults that matter and no
//! validation live here; raw values go to [`crate::config`], which resolves
//! and checks them.

pub mod forwarder;
pub mod generate;
pub mod generated;
pub mod man_sections;
pub mod tp;

use std::ffi::OsString;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub use tp::{ApplyFlags, EbpfFlags, KumactlRootFlags, ReceiptArg, TpFlags};

/// tproxyctl installs a transparent proxy the way `kumactl install transparent-proxy` does.
#[derive(Debug, Parser)]
#[command(
    name = "tproxyctl",
    version,
    about = "Install, check and remove kumactl-compatible transparent-proxy rules, and run the bundled forwarder",
    long_about = None,
    propagate_version = true,
    args_override_self = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Print errors only: no progress, notes or warnings on stderr (data on stdout is unchanged).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(flatten)]
    pub kumactl: KumactlRootFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the transparent proxy rules or the validator.
    #[command(subcommand)]
    Install(InstallCommand),
    /// Remove what an install put on the host.
    #[command(subcommand)]
    Uninstall(UninstallCommand),
    /// Prove, end to end in a throwaway network namespace, that the installed rules redirect what they should.
    #[command(
        long_about = "Prove, end to end in a throwaway network namespace, that the installed rules redirect what they should.\n\n\
The receipt's rules are applied, with the same backend, to a pair of throwaway network namespaces, \
and real connections prove each redirect, exclusion and exemption; the host's own rules and traffic \
are not touched. Needs root and the ip command (package iproute2) to create the namespaces."
    )]
    Verify(VerifyArgs),
    /// Show what is installed, by which backend, rule counters and drift against the receipt.
    Status(StatusArgs),
    /// Generate resources that match the installed rules.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Run the bundled forwarder on the redirect ports.
    Forwarder(forwarder::ForwarderArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
}

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// Install the transparent proxy iptables rules (kumactl-compatible flags).
    #[command(long_about = "Install the transparent proxy iptables rules.\n\n\
The rules redirect inbound TCP to --redirect-inbound-port (15006) and outbound TCP to \
--redirect-outbound-port (15001), except traffic of the kuma-dp user. They are applied with one \
iptables-restore per IP family, as a transaction: if anything fails, every family is put back \
as it was. Inbound TCP to every port, SSH (22) included, is redirected unless excluded with \
--exclude-inbound-ports. With --ebpf-enabled the same redirection is made by eBPF programs \
attached to a cgroup (--ebpf-cgroup-path) instead of iptables rules.")]
    TransparentProxy(Box<InstallArgs>),
    /// Check that the hairpin redirect works (kumactl-compatible validator).
    TransparentProxyValidator(ValidatorArgs),
}

#[derive(Debug, Subcommand)]
pub enum UninstallCommand {
    /// Remove the transparent proxy rules, and only those.
    TransparentProxy(Box<UninstallArgs>),
    /// Detach and unpin the eBPF programs of an eBPF-mode install (kumactl's `uninstall ebpf`).
    Ebpf(Box<UninstallEbpfArgs>),
}

/// kumactl's `uninstall ebpf` flags; the Kubernetes cleanup-job ones are
/// accepted and ignored.
#[derive(Debug, Args)]
pub struct UninstallEbpfArgs {
    /// BPF filesystem the programs were pinned in (used when there is no receipt) [default: /run/kuma/bpf].
    #[arg(
        long = "bpffs-path",
        visible_alias = "ebpf-bpffs-path",
        value_name = "DIR"
    )]
    pub bpffs_path: Option<String>,
    /// Print what would be removed and change nothing.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub dry_run: Option<bool>,
    #[command(flatten)]
    pub receipt: ReceiptArg,
    /// kumactl's Kubernetes cleanup-job settings: accepted, ignored (there is no job on a VM).
    #[arg(long, hide = true)]
    pub timeout: Option<String>,
    #[arg(long, hide = true)]
    pub namespace: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub remove_only: Option<String>,
    #[arg(long, hide = true)]
    pub cleanup_image_registry: Option<String>,
    #[arg(long, hide = true)]
    pub cleanup_image_repository: Option<String>,
    #[arg(long, hide = true)]
    pub cleanup_image_tag: Option<String>,
    #[arg(long, hide = true)]
    pub cleanup_job_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Render the Universal Dataplane resource that matches the rules.
    Dataplane(generate::GenerateDataplaneArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub tp: TpFlags,
    #[command(flatten)]
    pub apply: ApplyFlags,
    #[command(flatten)]
    pub receipt: ReceiptArg,
    /// Re-apply exactly the configuration an install receipt recorded [default: the --receipt file]; no configuration flag, --config file or KUMA_TRANSPARENT_PROXY_* variable is read.
    #[arg(long, value_name = "FILE", num_args = 0..=1, conflicts_with_all = ["TpFlags", "store_firewalld", "iptables_executables"])]
    pub from_receipt: Option<Option<std::path::PathBuf>>,
    /// With --dry-run: the planned rules as text (kumactl's format) or JSON.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub tp: TpFlags,
    #[command(flatten)]
    pub apply: ApplyFlags,
    #[command(flatten)]
    pub receipt: ReceiptArg,
}

#[derive(Debug, Args)]
pub struct ValidatorArgs {
    /// IP family mode: dualstack or ipv4.
    #[arg(long, value_name = "MODE")]
    pub ip_family_mode: Option<String>,
    /// Port the validation server listens on (the inbound redirect port).
    #[arg(long, value_name = "PORT")]
    pub validation_server_port: Option<String>,
    /// kuma-dp style transparent-proxy config (file or -); overrides both flags above. Repeatable.
    #[arg(long, value_name = "FILE|-", action = clap::ArgAction::Append)]
    pub transparent_proxy_config: Vec<String>,
    /// kumactl's root --config-file (its own configuration); accepted and ignored with a warning.
    #[arg(long = "config-file", hide = true)]
    pub config_file: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub receipt: ReceiptArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub receipt: ReceiptArg,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Compare a Dataplane file's transparentProxying section with the installed rules.
    #[arg(long, value_name = "FILE")]
    pub dataplane: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to generate the completion script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Parses the process's arguments as [`Cli`], adding what clap's own
/// message leaves out: which argument is not UTF-8, and that a boolean flag
/// takes its value after `=` (`--redirect-inbound false` would otherwise
/// read as "unexpected argument 'false'"). Exits like clap on an error.
pub fn parse_args() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => explain(err, &args).exit(),
    }
}

/// Adds a `tip:` line to the errors [`parse_args`] explains.
fn explain(mut err: clap::Error, args: &[OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let tip = match err.kind() {
        ErrorKind::InvalidUtf8 => non_utf8_argument(args),
        ErrorKind::UnknownArgument => match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(value)) => bool_value_after_space(value, args),
            _ => None,
        },
        _ => None,
    };
    if let Some(tip) = tip {
        err.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![tip.into()]),
        );
    }
    err
}

/// Names the first argument that is not UTF-8 (and the flag it belongs to).
fn non_utf8_argument(args: &[OsString]) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let i = args.iter().skip(1).position(|a| a.to_str().is_none())? + 1;
    let shown = crate::error::show_bytes(args[i].as_bytes());
    let flag = args[i - 1]
        .to_str()
        .filter(|p| i > 1 && p.starts_with("--") && !p.contains('=') && !shown.starts_with('-'));
    Some(match flag {
        Some(flag) => format!("the value of {flag}, '{shown}', is not UTF-8 text"),
        None => format!("argument {i}, '{shown}', is not UTF-8 text"),
    })
}

/// `--flag false`: the hint to write `--flag=false` when `value` is a
/// boolean and follows a boolean flag.
fn bool_value_after_space(value: &str, args: &[OsString]) -> Option<String> {
    parse_go_bool(value).ok()?;
    let i = args.iter().position(|a| a == value)?;
    let flag = args.get(i.checked_sub(1)?)?.to_str()?;
    let name = flag.strip_prefix("--")?;
    let mut bools = Vec::new();
    boolean_flags(&Cli::command(), &mut bools);
    bools.iter().any(|b| b == name).then(|| {
        format!("a boolean flag takes its value after '=': write {flag}={value} ({flag} alone means true)")
    })
}

/// Long names of every boolean flag (`--flag[=BOOL]`), all commands.
fn boolean_flags(cmd: &clap::Command, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        if arg.is_require_equals_set()
            && let Some(long) = arg.get_long()
        {
            out.push(long.to_string());
        }
    }
    for sub in cmd.get_subcommands() {
        boolean_flags(sub, out);
    }
}

/// Parses a boolean the way Go's strconv.ParseBool (and so kumactl's pflag) does.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "'{s}' is not a boolean (use true or false, as --flag=false)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert!(parse_go_bool("yes").is_err());
    }
}
