//! The man page sections clap_mangen does not write — EXIT STATUS,
//! ENVIRONMENT and FILES — built from the definitions they describe: the
//! configuration schema (every `KUMA_TRANSPARENT_PROXY_*` variable with its
//! key and flag), the `env` attributes of the clap arguments (`TPROXYCTL_*`),
//! the default paths the code uses, and the packaged files. Which command a
//! variable or file belongs to follows from the arguments it takes, so a new
//! flag group or command gets the right sections without an edit here.

use clap::Command;
use roff::{Roff, bold, italic, roman};

use crate::config::{self, schema};
use crate::host::receipt;
use crate::persist::firewalld;

/// Where the Debian package installs the configuration the systemd units read.
pub const PACKAGED_CONFIG: &str = "/etc/tproxyctl/config.yaml";
/// Where the Debian package installs the systemd units.
pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
pub const INSTALL_UNIT: &str = "tproxyctl-install.service";
pub const FORWARDER_UNIT: &str = "tproxyctl-forwarder.service";
/// Where install and uninstall keep their lock files.
pub const LOCK_DIR: &str = "/run/tproxyctl/";

/// `TPROXYCTL_*` variables that no argument carries: (name, meaning).
pub const PROCESS_ENV: &[(&str, &str)] = &[
    (
        "TPROXYCTL_TRACE_EXEC",
        "When set, every external command tproxyctl runs (iptables, ip, nft, firewall-cmd) is printed on stderr before it runs.",
    ),
    (
        "TPROXYCTL_EBPF_FAIL_AT",
        "For tests only: makes an eBPF install fail at the named step (load, fill, attach:PROGRAM, pin:NAME), or abort:STEP kill itself there, to prove that it undoes everything it did. Never set it in production.",
    ),
];

/// The sections for one command's page, as roff text to put before VERSION.
pub fn sections(cmd: &Command) -> String {
    let mut r = Roff::new();
    exit_status(&mut r, cmd);
    let env = environment(cmd);
    if !env.is_empty() {
        r.control("SH", ["ENVIRONMENT"]);
        for (name, text) in env {
            r.control("TP", [] as [&str; 0]);
            r.text([bold(name)]);
            r.text([roman(text)]);
        }
    }
    let files = files(cmd);
    if !files.is_empty() {
        r.control("SH", ["FILES"]);
        for (path, text) in files {
            r.control("TP", [] as [&str; 0]);
            r.text([italic(path)]);
            r.text([roman(text)]);
        }
    }
    // Drop the apostrophe preamble: the page clap_mangen rendered has it.
    let text = r.render();
    text.lines()
        .skip_while(|l| l.starts_with(".ie ") || l.starts_with(".el "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The page's command path, e.g. `tproxyctl-install-transparent-proxy`.
fn page_name(cmd: &Command) -> &str {
    cmd.get_display_name().unwrap_or(cmd.get_name())
}

fn is_root(cmd: &Command) -> bool {
    !page_name(cmd).contains('-')
}

fn has_arg(cmd: &Command, id: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_id() == id)
}

/// Takes the shared transparent-proxy configuration (`--config`, `--kuma-dp-user`, …).
fn takes_config(cmd: &Command) -> bool {
    is_root(cmd) || has_arg(cmd, "kuma_dp_user")
}

fn exit_status(r: &mut Roff, cmd: &Command) {
    let name = page_name(cmd);
    r.control("SH", ["EXIT STATUS"]);
    let zero = match name {
        "tproxyctl-install-transparent-proxy" => {
            "Success; also when the same rules were already installed."
        }
        "tproxyctl-uninstall-transparent-proxy" => {
            "Success; also when there was nothing to remove."
        }
        "tproxyctl-verify" => "Every check passed.",
        "tproxyctl-status" => {
            "The rules are installed as the receipt recorded and nothing needs attention."
        }
        "tproxyctl-forwarder" => "Stopped by SIGTERM or SIGINT after draining its connections.",
        "tproxyctl-generate-dataplane" => {
            "Success; with --check, the Dataplane agrees with the rules."
        }
        _ => "Success.",
    };
    let one = match name {
        "tproxyctl-install-transparent-proxy" => {
            "Failure at run time (an iptables executable failed, the read-back did not show the planned rules, …); every IP family was put back as it was."
        }
        "tproxyctl-verify" => "A check failed; the report names it.",
        "tproxyctl-status" => {
            "The rules are not installed, or a problem was found (rules missing or changed, rules without a receipt, resolv.conf changed since the install, …); the report names it."
        }
        "tproxyctl-generate-dataplane" => {
            "Failure at run time; with --check, the differences are printed on stdout."
        }
        "tproxyctl-forwarder" => {
            "It could not start (a port is taken, the receipt exempts another UID, …)."
        }
        _ => "Failure at run time; the message on stderr says what failed.",
    };
    for (code, text) in [
        ("0", zero),
        ("1", one),
        (
            "2",
            "Invalid usage or input: a flag, configuration file key, environment variable or referenced file holds a value that cannot be used. The message names it, the value and what is allowed. Nothing on the host was changed.",
        ),
    ] {
        r.control("TP", [] as [&str; 0]);
        r.text([bold(code)]);
        r.text([roman(text)]);
    }
}

/// (variable, meaning) for one command.
pub fn environment(cmd: &Command) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if takes_config(cmd) {
        for key in schema::KEYS {
            let Some(env) = key.env else { continue };
            let flag = key
                .flag
                .map(|f| format!(" and is overridden by --{f}"))
                .unwrap_or_default();
            out.push((
                format!("{}{env}", schema::ENV_PREFIX),
                format!(
                    "Configuration key {}; overrides --config files{flag}.{}",
                    key.path,
                    kind_text(key.kind)
                ),
            ));
        }
    }
    // Variables carried by arguments, from their clap definitions.
    let mut cmds = vec![cmd.clone()];
    if is_root(cmd) {
        let mut stack: Vec<Command> = cmd.get_subcommands().cloned().collect();
        while let Some(c) = stack.pop() {
            stack.extend(c.get_subcommands().cloned());
            cmds.push(c);
        }
    }
    for c in &cmds {
        for arg in c.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let name = env.to_string_lossy().into_owned();
            if out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            out.push((name, format!("Same as --{long}: {help}")));
        }
    }
    for (name, text) in PROCESS_ENV {
        out.push((name.to_string(), text.to_string()));
    }
    out
}

fn kind_text(kind: schema::Kind) -> &'static str {
    use schema::Kind::*;
    match kind {
        Bool => " A boolean: true or false.",
        Port => " A port, 1 to 65535.",
        Ports => " A comma-separated list of ports.",
        Uint(_) => " A non-negative integer.",
        Duration => " A duration such as 2s, 500ms or 1m.",
        Text => "",
        StringList => " A comma-separated list.",
        Executables => " name:path pairs, comma-separated.",
    }
}

/// (path, meaning) for one command.
pub fn files(cmd: &Command) -> Vec<(String, String)> {
    let name = page_name(cmd);
    let root = is_root(cmd);
    let rules = root || name.ends_with("-transparent-proxy");
    let forwarder = root || name == "tproxyctl-forwarder";
    let mut out = Vec::new();
    if takes_config(cmd) {
        out.push((
            PACKAGED_CONFIG.to_string(),
            format!(
                "The configuration the Debian package installs (a commented conffile of kumactl's config schema, every setting at its default) and the systemd units pass with --config. Other commands read it only when given --config {PACKAGED_CONFIG}."
            ),
        ));
    }
    if root || has_arg(cmd, "receipt") {
        out.push((
            receipt::DEFAULT_PATH.to_string(),
            "The install receipt (JSON, mode 0600, in a directory only root may enter): the configuration, backend, executables and exact rules an install applied. Uninstall, status, verify and the forwarder read it; install --from-receipt re-applies it. --receipt or TPROXYCTL_RECEIPT choose another file.".to_string(),
        ));
    }
    if root || has_arg(cmd, "firewalld_direct_file") {
        out.push((
            firewalld::DEFAULT_PATH.to_string(),
            "firewalld's direct configuration; --store-firewalld adds the rules to it (other entries are kept) and uninstall removes them.".to_string(),
        ));
    }
    if takes_config(cmd) || name == "tproxyctl-status" {
        out.push((
            config::Config::default()
                .redirect
                .dns
                .resolv_config_path
                .display()
                .to_string(),
            "Name servers whose DNS traffic is redirected (redirect.dns.resolvConfigPath); the forwarder's DNS proxy forwards to them; status warns when they changed since the install.".to_string(),
        ));
    }
    if rules {
        out.push((
            LOCK_DIR.to_string(),
            "Lock files (directory 0700, root's) that install and uninstall hold for their whole transaction: one per network namespace, one per receipt; each holder removes its own.".to_string(),
        ));
        out.push((
            format!("{UNIT_DIR}/{INSTALL_UNIT}"),
            format!(
                "systemd unit (installed disabled) that applies the rules at boot, before network-pre.target, with install transparent-proxy --config {PACKAGED_CONFIG}, and removes them when stopped."
            ),
        ));
    }
    if forwarder {
        out.push((
            format!("{UNIT_DIR}/{FORWARDER_UNIT}"),
            "systemd unit (installed disabled) that runs the forwarder as the kuma-dp user (--user), reloads it with SIGHUP and restarts it on failure.".to_string(),
        ));
    }
    out
}
