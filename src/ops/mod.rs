//! Orchestration of each command: resolve the configuration, probe the host,
//! plan, render, apply — the one place the steps of `cli → config → plan →
//! render → host` meet. One file per command.

pub mod common;
pub mod completion;
pub mod ebpf;
pub mod ebpf_verify;
pub mod from_receipt;
pub mod generate;
pub mod install;
pub mod status;
pub mod uninstall;
pub mod validator;
pub mod verify;

use crate::Exit;
use crate::cli::{Cli, Command, GenerateCommand, InstallCommand, UninstallCommand};

pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Install(InstallCommand::TransparentProxy(a)) => install::run(&a),
        Command::Install(InstallCommand::TransparentProxyValidator(a)) => validator::run(&a),
        Command::Uninstall(UninstallCommand::TransparentProxy(a)) => uninstall::run(&a),
        Command::Uninstall(UninstallCommand::Ebpf(a)) => uninstall::run(&ebpf::uninstall_args(&a)),
        Command::Verify(a) => verify::run(&a),
        Command::Status(a) => status::run(&a),
        Command::Generate(GenerateCommand::Dataplane(a)) => generate::run(&a),
        Command::Forwarder(a) => crate::forwarder::run(&a),
        Command::Completion(a) => completion::run(&a),
    }
}
