//! Shell completions and man pages generated from the clap definitions, so
//! they cannot drift from the flags. The committed copies in `completions/`
//! and `man/` are checked against these by a test; `scripts/regenerate.sh`
//! rewrites them.

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, CompletionShell};

fn shell(s: CompletionShell) -> Shell {
    match s {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    }
}

/// The completion script for one shell.
pub fn completion(s: CompletionShell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell(s), &mut Cli::command(), "tproxyctl", &mut out);
    out
}

/// File name of the committed completion script for a shell.
pub fn completion_file(s: CompletionShell) -> &'static str {
    match s {
        CompletionShell::Bash => "tproxyctl.bash",
        CompletionShell::Zsh => "_tproxyctl",
        CompletionShell::Fish => "tproxyctl.fish",
    }
}

/// Every man page: one per command and subcommand, as (file name, roff).
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, out);
        }
        let man = clap_mangen::Man::new(cmd);
        let mut buf = Vec::new();
        man.render(&mut buf)
            .expect("rendering into memory cannot fail");
        out.push((man.get_filename(), buf));
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
