//! Orchestration of each command: resolve the configuration, probe the host,
//! plan, render, apply — the one place the steps of `cli → config → plan →
//! render → host` meet.

use crate::Exit;
use crate::cli::Cli;

pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    anyhow::bail!("{:?}: not yet available", cli.command)
}
