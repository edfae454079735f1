//! Shell completions and man pages generated from the clap definitions (and,
//! for the man pages' EXIT STATUS, ENVIRONMENT and FILES sections, from the
//! configuration schema and the default paths: [`super::man_sections`]), so
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

/// Puts EXIT STATUS, ENVIRONMENT and FILES ([`super::man_sections`]) before
/// the VERSION section clap_mangen ends a page with (at the end without one).
fn with_sections(page: Vec<u8>, extra: &str) -> Vec<u8> {
    let text = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    let at = text.find("\n.SH VERSION\n").map_or(text.len(), |i| i + 1);
    let mut out = String::with_capacity(text.len() + extra.len());
    out.push_str(&text[..at]);
    out.push_str(extra);
    out.push_str(&text[at..]);
    out.into_bytes()
}

/// Every man page: one per command and subcommand, as (file name, roff).
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, out);
        }
        let extra = super::man_sections::sections(&cmd);
        let man = clap_mangen::Man::new(cmd);
        let mut buf = Vec::new();
        man.render(&mut buf)
            .expect("rendering into memory cannot fail");
        out.push((man.get_filename(), with_sections(buf, &extra)));
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
