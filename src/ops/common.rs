//! Steps install, uninstall, status and verify share: resolving the
//! configuration and reporting its warnings, the root check, the lock and
//! time budget of a run that changes the host, probing the host into the
//! planner's [`Facts`], and recognising the rules of an install made with
//! comments disabled when no receipt lists them.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{ApplyFlags, TpFlags};
use crate::config::{self, Config, DEFAULT_UID, IpFamilyMode};
use crate::host::apply::{Known, find_owned};
use crate::host::backend::{self, Executables, Preference, Probed, Selection};
use crate::host::lock::{HostLock, LockKey};
use crate::host::receipt::{self, Receipt};
use crate::host::save::{Saved, is_our_chain};
use crate::host::{canonical, exec, netif, resolv, users};
use crate::model::{Family, TableName};
use crate::plan::{self, Facts, FamilyFacts};
use crate::ui;

/// Comment-less configurations whose plans hold every DNS rule of either
/// DNS mode (all traffic, or the resolv.conf servers, here documentation
/// addresses), with the servers to plan them for: the DNS rules of an
/// install made without comments are recognised by these rules' shapes.
pub fn dns_shape_configs() -> [(Config, Vec<IpAddr>); 2] {
    let placeholder: Vec<IpAddr> = vec![
        "192.0.2.53".parse().expect("ip"),
        "2001:db8::53".parse().expect("ip"),
    ];
    [(true, Vec::new()), (false, placeholder)].map(|(capture_all, servers)| {
        let mut c = Config::default();
        c.comments.disabled = true;
        c.redirect.dns.enabled = true;
        c.redirect.dns.capture_all = capture_all;
        c.redirect.dns.skip_conntrack_zone_split = false;
        (c, servers)
    })
}

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

/// Starts a run that changes the host: sets its time budget (from `--wait`
/// and the retries) and takes the lock of this network namespace and of the
/// receipt (see [`crate::host::lock`]), waiting at most `--wait`.
pub fn begin_change(cfg: &Config, receipt_path: &Path, what: &str) -> anyhow::Result<HostLock> {
    exec::set_budget(exec::Budget::for_run(
        cfg.wait,
        cfg.retry.max_retries,
        cfg.retry.sleep_between_retries,
    ));
    let mut keys = vec![LockKey::Netns];
    if !receipt::is_none(receipt_path) {
        keys.push(LockKey::Receipt(receipt_path.to_path_buf()));
    }
    HostLock::acquire(&keys, Duration::from_secs(u64::from(cfg.wait)), what)
        .map_err(|e| e.context(format!("cannot {what}; nothing on the host was changed")))
}

/// How long each step of a run took: reported with `--verbose`, and read by
/// `scripts/bench-install.sh` to show what the lock and the kernel's form of
/// the plan cost.
pub struct Timings {
    start: Instant,
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Timings {
    pub fn start() -> Timings {
        let now = Instant::now();
        Timings {
            start: now,
            last: now,
            steps: Vec::new(),
        }
    }

    /// Records the time since the previous step as `name`.
    pub fn step(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.push((name, now - self.last));
        self.last = now;
    }

    /// Records a duration measured elsewhere (it may overlap other steps).
    pub fn add(&mut self, name: &'static str, d: Duration) {
        self.steps.push((name, d));
    }

    /// `timings: lock 0.1 ms, probe 20.3 ms, …, total 85.0 ms`.
    pub fn report(&self) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let mut parts: Vec<String> = self
            .steps
            .iter()
            .map(|(n, d)| format!("{n} {}", ms(*d)))
            .collect();
        parts.push(format!("total {}", ms(self.start.elapsed())));
        format!("timings: {}", parts.join(", "))
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
    let known = receipt
        .map(|r| Known::from_records(r.all_records()))
        .unwrap_or_default();
    let holds_ours = |s: &Saved| !find_owned(s, &known).is_empty();
    let prefer = receipt
        .and_then(|r| r.families.first().map(|f| f.mode))
        .map(|mode| Preference {
            mode,
            holds_ours: &holds_ours,
        });
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

/// Our chains are there but some rule of ours carries no comment: an install
/// made with comments disabled (or without the comment module), whose
/// rules outside our chains only a receipt — or their content — can name.
pub fn comment_less_install(saved: &Saved) -> bool {
    TableName::ALL.iter().any(|t| {
        saved.table(*t).is_some_and(|st| {
            st.rules.iter().any(|r| {
                let ours = is_our_chain(&r.chain) || r.spec.split_whitespace().any(is_our_chain);
                ours && !r.spec.contains(crate::config::COMMENT_PREFIX)
            })
        })
    })
}

/// The UIDs our chains exempt (`--uid-owner` in `KUMA_MESH*` rules): the
/// kuma-dp user of the install that wrote them.
fn uids_in_our_chains(saved: &Saved) -> Vec<String> {
    let mut uids: Vec<String> = Vec::new();
    for st in &saved.tables {
        for r in st.rules.iter().filter(|r| is_our_chain(&r.chain)) {
            for u in canonical::uids_in(&r.spec) {
                if !uids.iter().any(|x| x == u) {
                    uids.push(u.to_string());
                }
            }
        }
    }
    uids
}

/// Rules of a comment-less install found by their content, for when no
/// receipt lists them (`saved` is one backend's rules, `exes` its
/// executables): the kernel's form of what `cfg` plans with comments off
/// (so the install's own flags find everything), plus the DNS and conntrack
/// zone rules of any DNS mode, port, zone and server (so they are found
/// without the original flags), when they exempt the UID our chains exempt.
/// Each costs a throwaway namespace; this runs only when
/// [`comment_less_install`] holds. A dry run refuses where no namespace can
/// be made (the host would be touched).
pub fn comment_less_known(
    cfg: &Config,
    exes: &Executables,
    saved: &Saved,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Known> {
    if cfg.dry_run && !canonical::namespaces_available() {
        // The kernel's form would come from chains made on the host.
        anyhow::bail!(
            "a dry run cannot load rules on the host, and no network namespace can be made here"
        );
    }
    let live_uids = uids_in_our_chains(saved);
    let uid = match kuma_dp_uid(cfg, &mut Vec::new()) {
        Ok(u) => u,
        Err(e) => match live_uids.first().and_then(|u| u.parse().ok()) {
            Some(u) => u,
            None => {
                return Err(
                    e.context("the kuma-dp user is needed to recognise rules without comments")
                );
            }
        },
    };
    let facts = |servers: Vec<IpAddr>| {
        let ff = FamilyFacts {
            dns_servers: servers,
            docker_output: saved.has_docker_output(),
            comments: false,
            conntrack: true,
            mangle: true,
        };
        Facts {
            uid,
            loopback: netif::loopback_name(),
            v4: ff.clone(),
            v6: Some(ff),
        }
    };
    let family_of = |set: &crate::model::RuleSet| match exes.family {
        Family::Ipv4 => set.v4.clone(),
        Family::Ipv6 => set.v6.clone().expect("planned with IPv6 facts"),
    };
    let mut known = Known::default();
    // 1. What this configuration plans.
    let mut own = cfg.clone();
    own.comments.disabled = true;
    let dns = &cfg.redirect.dns;
    let servers = if dns.enabled && !dns.capture_all {
        resolv::nameservers(&dns.resolv_config_path, warnings)?
    } else {
        Vec::new()
    };
    let planned = family_of(&plan::plan(&own, &facts(servers)).rules);
    let canon = canonical::canonicalise(exes, &planned, cfg.wait)?;
    for (t, l) in canon.outside_our_chains() {
        known.add(t, l);
    }
    // 2. DNS rules of either DNS mode, by shape.
    let mut shapes: Vec<(TableName, String)> = Vec::new();
    for (c, servers) in dns_shape_configs() {
        let p = family_of(&plan::plan(&c, &facts(servers)).rules);
        let canon = canonical::canonicalise(exes, &p, cfg.wait)?;
        for (t, l) in canon.outside_our_chains() {
            if !l.split_whitespace().any(is_our_chain) {
                shapes.push((t, canonical::shape(l)));
            }
        }
    }
    let mut uids = live_uids;
    uids.push(uid.to_string());
    for st in &saved.tables {
        let Some(table) = TableName::parse(&st.name) else {
            continue;
        };
        for r in st.rules.iter().filter(|r| !is_our_chain(&r.chain)) {
            let shape = canonical::shape(&r.spec);
            if shapes.iter().any(|(t, s)| *t == table && *s == shape)
                && canonical::uids_in(&r.spec)
                    .iter()
                    .all(|u| uids.iter().any(|x| x == u))
                && !known.contains(table, &r.spec)
            {
                known.add(table, &r.spec);
            }
        }
    }
    Ok(known)
}
