//! firewalld as a service on this host: is it installed and running, which
//! backend and iptables it uses, and what install and uninstall tell the user
//! about it. Read-only: nothing here starts, stops or reloads firewalld.
//!
//! Why we never reload (checked against firewalld 1.3.3, `core/fw.py`
//! `flush()`, and with a real firewalld in a namespace, see
//! `tests/integration/firewalld.rs`): every start and every reload first runs
//! `-F`, `-X`, `-Z` on every table of the iptables that firewalld uses
//! (`/usr/sbin/iptables`, whichever backend it points to), with either
//! `FirewallBackend`, and only then applies `direct.xml`. So a reload would
//! wipe the rules of Docker, kube-proxy, libvirt and anyone else, while our
//! live rules need nothing: the same flush replaces them with the identical
//! rules from `direct.xml`, without "chain already exists" errors.
//!
//! One firewalld default does break our rules, whoever applied them:
//! `RFC3964_IPv4=yes` adds `ip6 daddr ::/96 reject` to firewalld's own filter
//! OUTPUT (firewalld issue #578), after an `oifname "lo" accept`. REDIRECT
//! sends locally generated IPv6 to `::1`, which is in `::/96`, and at that
//! hook the packet still has its original output interface, so outbound IPv6
//! (and IPv6 DNS) redirection fails with "No route to host" while firewalld
//! runs. We say so; changing firewalld's settings is the administrator's call.

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
    /// `RFC3964_IPv4` of `firewalld.conf` (default `yes`).
    pub rfc3964_ipv4: bool,
}

/// The settings of `firewalld.conf` we care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    pub backend: String,
    pub individual_calls: bool,
    pub rfc3964_ipv4: bool,
}

/// Reads `firewalld.conf` text with firewalld's defaults for what is unset.
pub fn parse_conf(text: &str) -> Conf {
    let mut conf = Conf {
        backend: "nftables".to_string(),
        individual_calls: false,
        rfc3964_ipv4: true,
    };
    let yes = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true");
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
            "FirewallBackend" if !v.is_empty() => conf.backend = v.to_ascii_lowercase(),
            "IndividualCalls" => conf.individual_calls = yes(v),
            "RFC3964_IPv4" => conf.rfc3964_ipv4 = yes(v),
            _ => {}
        }
    }
    conf
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
    let conf = parse_conf(&std::fs::read_to_string(conf).unwrap_or_default());
    let iptables = run(Path::new(FIREWALLD_IPTABLES), &["--version"])
        .and_then(|(_, out)| mode_of_version(&out));
    Daemon {
        state,
        backend: conf.backend,
        individual_calls: conf.individual_calls,
        iptables,
        rfc3964_ipv4: conf.rfc3964_ipv4,
    }
}

impl Daemon {
    /// Whether this firewalld, when running, rejects redirected outbound
    /// IPv6 (see the module documentation). Worth telling on any install
    /// with IPv6 rules, with or without `--store-firewalld`.
    pub fn blocks_ipv6_redirect(&self) -> bool {
        self.state != State::NotInstalled && self.rfc3964_ipv4
    }

    /// The warning for [`Daemon::blocks_ipv6_redirect`], naming the file to
    /// change (`firewalld.conf` beside `direct_path`).
    pub fn ipv6_redirect_notice(&self, direct_path: &Path) -> Option<String> {
        self.blocks_ipv6_redirect().then(|| {
            format!(
                "firewalld's RFC3964_IPv4=yes (the default) rejects IPv6 packets to ::/96, which includes ::1 where REDIRECT sends locally generated IPv6: outbound IPv6 and IPv6 DNS redirection fail with \"No route to host\" while firewalld runs; set RFC3964_IPv4=no in {} and reload or restart firewalld",
                direct_path.with_file_name("firewalld.conf").display()
            )
        })
    }

    /// What to tell the user after `--store-firewalld` wrote `path`, given
    /// the backends the live rules were applied with and whether IPv6 rules
    /// were planned.
    pub fn install_notices(&self, path: &Path, applied: &[Mode], ipv6: bool) -> Vec<String> {
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
        if ipv6 {
            out.extend(self.ipv6_redirect_notice(path));
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
        let defaults = Conf {
            backend: "nftables".to_string(),
            individual_calls: false,
            rfc3964_ipv4: true,
        };
        assert_eq!(parse_conf(""), defaults);
        let text = "# FirewallBackend=iptables\nFirewallBackend=iptables\nIndividualCalls=yes\nRFC3964_IPv4=no\n";
        assert_eq!(
            parse_conf(text),
            Conf {
                backend: "iptables".to_string(),
                individual_calls: true,
                rfc3964_ipv4: false,
            }
        );
        assert_eq!(
            parse_conf("FirewallBackend = \"nftables\"\nIndividualCalls=no"),
            defaults
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
            rfc3964_ipv4: false,
        }
    }

    #[test]
    fn notices_name_the_situation() {
        let p = Path::new("/etc/firewalld/direct.xml");
        let running = daemon(State::Running, "nftables", Some(Mode::Nft));
        let n = running.install_notices(p, &[Mode::Nft, Mode::Nft], true);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].contains("not reloaded"), "{n:?}");
        let n = running.install_notices(p, &[Mode::Legacy], false);
        assert!(n.iter().any(|m| m.contains("both backends")), "{n:?}");
        let n = daemon(State::NotRunning, "iptables", None).install_notices(p, &[Mode::Nft], false);
        assert!(
            n[0].contains("not running") && n[1].contains("OUTPUT_direct"),
            "{n:?}"
        );
        let n = daemon(State::NotInstalled, "nftables", Some(Mode::Nft)).install_notices(
            p,
            &[Mode::Legacy],
            true,
        );
        assert_eq!(n.len(), 1, "{n:?}");
        let strict = Daemon {
            rfc3964_ipv4: true,
            ..running.clone()
        };
        let n = strict.install_notices(p, &[Mode::Nft], true);
        assert!(
            n.iter()
                .any(|m| m.contains("RFC3964_IPv4=no in /etc/firewalld/firewalld.conf")),
            "{n:?}"
        );
        assert_eq!(strict.install_notices(p, &[Mode::Nft], false).len(), 1);
        assert!(running.uninstall_notices(p, true)[0].contains("--reload"));
        assert!(running.uninstall_notices(p, false).is_empty());
        assert!(
            daemon(State::NotRunning, "nftables", None)
                .uninstall_notices(p, true)
                .is_empty()
        );
    }
}
