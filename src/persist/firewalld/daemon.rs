//! firewalld as a service on this host: is it installed and running, which
//! backend and iptables it uses, and what install and uninstall tell the user
//! about it. Read-only: nothing here starts, stops or reloads firewalld.
//!
//! Why we never reload (checked against firewalld 1.3.3, `core/fw.py`
//! `flush()`, and with a real firewalld in a namespace, see
//! `tests/firewalld.rs`): every start and every reload first runs
//! `-F`, `-X`, `-Z` on every table of the iptables that firewalld uses
//! (`/usr/sbin/iptables`, whichever backend it points to), with either
//! `FirewallBackend`, and only then applies `direct.xml`. So a reload would
//! wipe the rules of Docker, kube-proxy, libvirt and anyone else, while our
//! live rules need nothing: the same flush replaces them with the identical
//! rules from `direct.xml`, without "chain already exists" errors.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::receipt::Mode;

/// The iptables firewalld applies direct rules with (firewalld's
/// `config.COMMANDS["ipv4"]`).
pub const FIREWALLD_IPTABLES: &str = "/usr/sbin/iptables";

/// How long `firewall-cmd --state` may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether firewalld runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No `firewall-cmd` on the PATH.
    NotInstalled,
    NotRunning,
    Running,
    /// Running, but its start-up failed (`firewall-cmd --state` exit 251).
    Failed,
}

/// What we know about firewalld on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub state: State,
    /// `FirewallBackend` of `firewalld.conf` (firewalld's default `nftables`).
    pub backend: String,
    /// `IndividualCalls` of `firewalld.conf` (default `no`).
    pub individual_calls: bool,
    /// The backend of the iptables firewalld runs, when it can be told.
    pub iptables: Option<Mode>,
}

/// Settings of `firewalld.conf` we care about, from its text.
pub fn parse_conf(text: &str) -> (String, bool) {
    let mut backend = "nftables".to_string();
    let mut individual = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'');
        match k.trim() {
            "FirewallBackend" if !v.is_empty() => backend = v.to_ascii_lowercase(),
            "IndividualCalls" => {
                individual = matches!(v.to_ascii_lowercase().as_str(), "yes" | "true")
            }
            _ => {}
        }
    }
    (backend, individual)
}

/// The backend named by `iptables --version` output.
pub fn mode_of_version(out: &str) -> Option<Mode> {
    let line = out.lines().next()?;
    if !line.contains("tables") {
        return None;
    }
    if line.contains("(nf_tables)") {
        Some(Mode::Nft)
    } else {
        Some(Mode::Legacy)
    }
}

/// Runs a command with a time limit; `None` when it cannot run or hangs.
fn run(program: &Path, args: &[&str]) -> Option<(i32, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return Some((status.code().unwrap_or(-1), out));
            }
            Ok(None) if start.elapsed() < STATE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Looks at firewalld: `firewall-cmd --state`, the `firewalld.conf` beside
/// `direct_path`, and `/usr/sbin/iptables --version`.
pub fn inspect(direct_path: &Path) -> Daemon {
    let state = match which::which("firewall-cmd") {
        Err(_) => State::NotInstalled,
        Ok(cmd) => match run(&cmd, &["--state"]) {
            Some((0, _)) => State::Running,
            Some((251, _)) => State::Failed,
            _ => State::NotRunning,
        },
    };
    let conf: PathBuf = direct_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("firewalld.conf");
    let (backend, individual_calls) =
        parse_conf(&std::fs::read_to_string(conf).unwrap_or_default());
    let iptables = run(Path::new(FIREWALLD_IPTABLES), &["--version"])
        .and_then(|(_, out)| mode_of_version(&out));
    Daemon {
        state,
        backend,
        individual_calls,
        iptables,
    }
}

impl Daemon {
    /// What to tell the user after `--store-firewalld` wrote `path`, given
    /// the backends the live rules were applied with.
    pub fn install_notices(&self, path: &Path, applied: &[Mode]) -> Vec<String> {
        let p = path.display();
        let mut out = Vec::new();
        match self.state {
            State::NotInstalled => out.push(format!(
                "firewalld is not installed (no firewall-cmd): {p} was written, but nothing loads it until firewalld is installed and enabled"
            )),
            State::NotRunning => out.push(format!(
                "firewalld is not running: it loads the rules from {p} when it starts (enable it to have them at boot)"
            )),
            State::Failed => out.push(format!(
                "firewalld is running but its start-up failed (firewall-cmd --state): fix it before relying on {p} at boot"
            )),
            State::Running => out.push(format!(
                "firewalld is running and was not reloaded: the rules are live and {p} holds the same rules, which firewalld loads at its next start or reload (a reload flushes every iptables table, other tools' rules included, so tproxyctl never does it; it is not needed now)"
            )),
        }
        if self.state != State::NotInstalled && self.backend == "iptables" {
            out.push(
                "firewalld uses FirewallBackend=iptables: when it loads the rules it puts those of built-in chains into its own *_direct chains (nat OUTPUT_direct, …), which its built-in chains jump to first"
                    .to_string(),
            );
        }
        if let Some(fw) = self.iptables
            && self.state != State::NotInstalled
            && applied.iter().any(|m| *m != fw)
        {
            out.push(format!(
                "firewalld applies direct rules with {FIREWALLD_IPTABLES} ({fw}), but these rules were applied with the {} backend: after firewalld starts or reloads they are present in both backends; install with --iptables-executables pointing at the {fw} executables to keep one copy",
                applied
                    .iter()
                    .filter(|m| **m != fw)
                    .map(|m| m.as_str())
                    .next()
                    .unwrap_or_default()
            ));
        }
        out
    }

    /// What to tell the user after uninstall removed entries from `path`.
    pub fn uninstall_notices(&self, path: &Path, removed_any: bool) -> Vec<String> {
        if !removed_any || !matches!(self.state, State::Running | State::Failed) {
            return Vec::new();
        }
        vec![format!(
            "firewalld is running: if it loaded the removed entries from {} when it started, its runtime configuration still lists them; `firewall-cmd --reload` makes it forget them, and until then `firewall-cmd --runtime-to-permanent` would write them back",
            path.display()
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_defaults_and_values() {
        assert_eq!(parse_conf(""), ("nftables".to_string(), false));
        let text = "# FirewallBackend=iptables\nFirewallBackend=iptables\nIndividualCalls=yes\n";
        assert_eq!(parse_conf(text), ("iptables".to_string(), true));
        assert_eq!(
            parse_conf("FirewallBackend = \"nftables\"\nIndividualCalls=no"),
            ("nftables".to_string(), false)
        );
    }

    #[test]
    fn iptables_version_names_the_backend() {
        assert_eq!(
            mode_of_version("iptables v1.8.9 (nf_tables)\n"),
            Some(Mode::Nft)
        );
        assert_eq!(
            mode_of_version("iptables v1.8.9 (legacy)\n"),
            Some(Mode::Legacy)
        );
        assert_eq!(mode_of_version("iptables v1.4.21\n"), Some(Mode::Legacy));
        assert_eq!(mode_of_version(""), None);
    }

    fn daemon(state: State, backend: &str, iptables: Option<Mode>) -> Daemon {
        Daemon {
            state,
            backend: backend.to_string(),
            individual_calls: false,
            iptables,
        }
    }

    #[test]
    fn notices_name_the_situation() {
        let p = Path::new("/etc/firewalld/direct.xml");
        let running = daemon(State::Running, "nftables", Some(Mode::Nft));
        let n = running.install_notices(p, &[Mode::Nft, Mode::Nft]);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].contains("not reloaded"), "{n:?}");
        let n = running.install_notices(p, &[Mode::Legacy]);
        assert!(n.iter().any(|m| m.contains("both backends")), "{n:?}");
        let n = daemon(State::NotRunning, "iptables", None).install_notices(p, &[Mode::Nft]);
        assert!(
            n[0].contains("not running") && n[1].contains("OUTPUT_direct"),
            "{n:?}"
        );
        let n = daemon(State::NotInstalled, "nftables", Some(Mode::Nft))
            .install_notices(p, &[Mode::Legacy]);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(running.uninstall_notices(p, true)[0].contains("--reload"));
        assert!(running.uninstall_notices(p, false).is_empty());
        assert!(
            daemon(State::NotRunning, "nftables", None)
                .uninstall_notices(p, true)
                .is_empty()
        );
    }
}
