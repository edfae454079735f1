//! Steps install, uninstall, status and verify share: resolving the
//! configuration and reporting its warnings, the root check, and probing the
//! host into the planner's [`Facts`].

use std::net::IpAddr;

use crate::cli::{ApplyFlags, TpFlags};
use crate::config::{self, Config, DEFAULT_UID, IpFamilyMode};
use crate::host::backend::{self, Probed, Selection};
use crate::host::receipt::{Mode, Receipt};
use crate::host::{netif, resolv, users};
use crate::plan::{Facts, FamilyFacts};
use crate::ui;

/// Resolves the configuration and prints its warnings.
pub fn load_config(tp: &TpFlags, apply: Option<&ApplyFlags>) -> anyhow::Result<Config> {
    let resolved = config::resolve_process(tp, apply)?;
    for w in &resolved.warnings {
        ui::warn(w);
    }
    Ok(resolved.config)
}

/// Applying needs root; a dry run only warns (reference §1.5 step 3).
pub fn require_root(dry_run: bool) -> anyhow::Result<()> {
    if crate::host::is_root() {
        return Ok(());
    }
    if dry_run {
        ui::warn(
            "[dry-run]: running this command as a non-root user may lead to unpredictable results",
        );
        Ok(())
    } else {
        anyhow::bail!("you need to have root privileges to run this command")
    }
}

/// The kuma-dp UID: CNI mode without a user means 5678 without a lookup.
pub fn kuma_dp_uid(cfg: &Config, warnings: &mut Vec<String>) -> anyhow::Result<u32> {
    if cfg.cni_mode && cfg.kuma_dp_user.is_none() {
        return Ok(DEFAULT_UID);
    }
    Ok(users::resolve_kuma_dp_user(cfg.kuma_dp_user.as_deref(), warnings)?.uid)
}

/// What was learned about the host.
pub struct Probe {
    pub uid: u32,
    pub loopback: String,
    pub dns_servers: Vec<IpAddr>,
    pub selection: Option<Selection>,
}

impl Probe {
    /// The planner's facts: features of the chosen backends; with no usable
    /// executables (dry run only), no comments, no conntrack split, no
    /// mangle, no IPv6 — what kumactl's unit goldens show.
    pub fn facts(&self) -> Facts {
        let ff = |p: &Probed| FamilyFacts {
            dns_servers: self.dns_servers.clone(),
            docker_output: p.saved.has_docker_output(),
            comments: p.modules.comment,
            conntrack: p.modules.conntrack && p.modules.udp && p.modules.owner,
            mangle: true,
        };
        match &self.selection {
            Some(sel) => Facts {
                uid: self.uid,
                loopback: self.loopback.clone(),
                v4: ff(&sel.v4),
                v6: sel.v6.as_ref().map(ff),
            },
            None => Facts {
                uid: self.uid,
                loopback: self.loopback.clone(),
                v4: FamilyFacts {
                    dns_servers: self.dns_servers.clone(),
                    ..FamilyFacts::default()
                },
                v6: None,
            },
        }
    }
}

/// Probes everything the plan depends on. Reads only.
pub fn probe(
    cfg: &Config,
    receipt: Option<&Receipt>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Probe> {
    let uid = kuma_dp_uid(cfg, warnings)?;
    let loopback = netif::loopback_name();
    let dns = &cfg.redirect.dns;
    let dns_servers = if dns.enabled && !dns.capture_all {
        resolv::nameservers(&dns.resolv_config_path, warnings)?
    } else {
        Vec::new()
    };
    let want_v6 = cfg.ip_family_mode == IpFamilyMode::DualStack && netif::has_ipv6(&loopback);
    if cfg.ip_family_mode == IpFamilyMode::DualStack && !want_v6 && cfg.verbose {
        warnings.push(
            "[ip6tables] IPv6 initialization skipped due to missing or faulty IPv6 support: no local IPv6 addresses detected"
                .to_string(),
        );
    }
    let prefer: Option<Mode> = receipt.and_then(|r| r.families.first().map(|f| f.mode));
    let selection = backend::select(&cfg.iptables_executables, want_v6, prefer, warnings)?;
    Ok(Probe {
        uid,
        loopback,
        dns_servers,
        selection,
    })
}

/// Prints warnings gathered along the way.
pub fn flush_warnings(warnings: &mut Vec<String>) {
    for w in warnings.drain(..) {
        ui::warn(w);
    }
}
