//! tproxyctl: installs, removes and checks the `KUMA_MESH_*` transparent-proxy
//! iptables rules the way `kumactl install transparent-proxy` does, persists
//! them, renders the matching Universal `Dataplane`, and ships a forwarder that
//! listens on the redirect ports.
//!
//! Data flows one way: [`cli`] (raw arguments) → [`config`] (resolved, validated
//! configuration) → [`plan`] (typed rules, pure) → [`render`] (text, pure) →
//! [`host`] (the only code that touches the machine). [`ops`] wires those steps
//! together for each command; [`forwarder`] is the bundled data plane.

pub mod cli;
pub mod config;
pub mod ebpf;
pub mod error;
pub mod forwarder;
pub mod host;
pub mod model;
pub mod ops;
pub mod persist;
pub mod plan;
pub mod render;
pub mod ui;

pub use error::{UsageError, exit_code_for, is_broken_pipe, render_error};

/// Exit status of a successful or failed command that did not end in an error value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything held (exit 0).
    Success,
    /// The command ran but found a failure it reports itself (exit 1).
    Failure,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Success => std::process::ExitCode::SUCCESS,
            Exit::Failure => std::process::ExitCode::from(1),
        }
    }
}

/// Runs one parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<Exit> {
    ui::set_quiet(cli.quiet);
    for w in config::kumactl_root_flag_warnings(&cli.kumactl) {
        ui::warn(w);
    }
    ops::dispatch(cli)
}
