//! The form the kernel gives a planned rule set: the plan is applied in a
//! throwaway network namespace with the same backend and saved there, so
//! every planned rule is known exactly as `iptables-save` prints it on the
//! host (options reordered, `-m tcp` added, `/32` appended, `::1/64` stored
//! as `::/64`, `172.32.16.8/16` as `172.32.0.0/16`, the apostrophe of a
//! comment escaped as `\'` …). Read-back after an install, ownership of rules
//! without comments, and uninstall matching compare these lines, never our
//! own text.
//!
//! The namespace lives as long as one thread: the thread unshares its network
//! namespace and starts `iptables-restore` and `iptables-save` from there, so
//! both see the same empty namespace and no helper shell is needed. Legacy
//! restores there use a lock file of their own (`XTABLES_LOCKFILE`), so they
//! never wait for, or hold up, the host's xtables lock.
//!
//! Where no namespace can be made (no `CAP_SYS_ADMIN`: a container with
//! only `NET_ADMIN`), the plan is loaded on the host instead, into chains of
//! its own (`KUMA_MESH_CANON_<pid>_<n>`, one per planned chain, jumps between
//! them renamed to match) that nothing jumps to — so no packet meets them —
//! saved, and removed again; chain names are printed as they are, so the
//! lines are mapped back exactly. A run killed meanwhile leaves chains with
//! our prefix, which the next run removes with its own.

use std::sync::OnceLock;

use anyhow::{Context, bail};

use crate::host::backend::Executables;
use crate::host::exec::Cmd;
use crate::host::receipt::Mode;
use crate::host::save::{Saved, is_our_chain};
use crate::model::{Family, FamilyRules, TableName, Target};
use crate::render::{Style, family_text, rule_args};

/// Restore input made for a host, made loadable in an empty namespace: the
/// `DOCKER_OUTPUT` chain that DNS rules may jump to exists only where Docker
/// runs, so it is created too.
pub fn for_empty_namespace(text: &str) -> String {
    if text.contains("-j DOCKER_OUTPUT") {
        text.replacen("* nat\n", "* nat\n-N DOCKER_OUTPUT\n", 1)
    } else {
        text.to_string()
    }
}

/// One planned chain in the kernel's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalChain {
    pub table: TableName,
    pub chain: String,
    /// Its planned rules in their final order, as `-A CHAIN …` lines.
    pub lines: Vec<String>,
}

/// A planned family in the kernel's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPlan {
    pub family: Family,
    /// Every planned chain with rules, in table order.
    pub chains: Vec<CanonicalChain>,
}

impl CanonicalPlan {
    /// The canonical lines planned for one chain (empty when none are).
    pub fn chain(&self, table: TableName, chain: &str) -> &[String] {
        self.chains
            .iter()
            .find(|c| c.table == table && c.chain == chain)
            .map(|c| c.lines.as_slice())
            .unwrap_or_default()
    }

    /// Planned lines outside our own chains (in built-in chains).
    pub fn outside_our_chains(&self) -> impl Iterator<Item = (TableName, &str)> {
        self.chains
            .iter()
            .filter(|c| !is_our_chain(&c.chain))
            .flat_map(|c| c.lines.iter().map(move |l| (c.table, l.as_str())))
    }
}

/// Runs `f` on a thread of its own inside a new, empty network namespace;
/// every process it starts runs there too. The namespace goes when the
/// thread ends.
pub fn in_empty_netns<T: Send>(f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("creating a throwaway network namespace")?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the namespace thread panicked")))
    })
}

/// Whether this process may create network namespaces (asked once).
pub fn namespaces_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| in_empty_netns(|| Ok(())).is_ok())
}

/// The restore command used in a throwaway namespace: legacy waits for, and
/// takes, a lock file of its own instead of the host's `/run/xtables.lock`.
fn sandbox_restore(exes: &Executables, wait: u32) -> Cmd {
    let mut cmd = Cmd::new(&exes.restore);
    if exes.mode == Mode::Legacy {
        let dir = std::path::Path::new(crate::host::lock::LOCK_DIR);
        if dir.is_dir() {
            cmd = cmd.env(
                "XTABLES_LOCKFILE",
                &dir.join("xtables-sandbox.lock").display().to_string(),
            );
        }
        cmd = cmd.arg(format!("--wait={}", wait.max(1)));
    }
    cmd.arg("--noflush")
}

/// Loads `text` (restore input) into an empty namespace with `exes` and
/// returns what `iptables-save` prints there.
pub fn load_and_save(exes: &Executables, text: &str, wait: u32) -> anyhow::Result<Saved> {
    let text = for_empty_namespace(text);
    in_empty_netns(|| {
        sandbox_restore(exes, wait)
            .stdin(text.clone())
            .run()
            .map_err(|e| {
                crate::host::apply::restore_error(exes, "(throwaway namespace)", e, &text)
            })?;
        let out = Cmd::new(&exes.save).run()?;
        Saved::parse_checked(&out.stdout)
    })
}

/// The plan of one family as the kernel prints it (see the module comment):
/// from a throwaway namespace, or, where none can be made, from chains of
/// its own on the host.
pub fn canonicalise(
    exes: &Executables,
    plan: &FamilyRules,
    wait: u32,
) -> anyhow::Result<CanonicalPlan> {
    if !namespaces_available() {
        return on_host(exes, plan, wait).with_context(|| {
            format!(
                "computing the kernel's form of the planned {} rules in chains of our own (no network namespace can be created here)",
                plan.family.title()
            )
        });
    }
    let saved = load_and_save(exes, &family_text(plan, Style::default()), wait).with_context(
        || {
            format!(
                "computing the kernel's form of the planned {} rules in a throwaway network namespace",
                plan.family.title()
            )
        },
    )?;
    collect(plan, &saved)
}

/// The planned chains' lines in `saved`, checked against the plan's counts.
fn collect(plan: &FamilyRules, saved: &Saved) -> anyhow::Result<CanonicalPlan> {
    let mut chains = Vec::new();
    for table in plan.non_empty_tables() {
        for c in &table.chains {
            if c.rules.is_empty() {
                continue;
            }
            let lines: Vec<String> = saved
                .table(table.name)
                .map(|st| st.chain_rules(&c.name).map(|r| r.spec.clone()).collect())
                .unwrap_or_default();
            if lines.len() != c.rules.len() {
                bail!(
                    "the throwaway namespace shows {} rules in {}/{}, {} were planned",
                    lines.len(),
                    table.name.as_str(),
                    c.name,
                    c.rules.len()
                );
            }
            chains.push(CanonicalChain {
                table: table.name,
                chain: c.name.clone(),
                lines,
            });
        }
    }
    Ok(CanonicalPlan {
        family: plan.family,
        chains,
    })
}

/// Prefix of the chains [`on_host`] makes.
const HOST_PREFIX: &str = "KUMA_MESH_CANON_";

/// The kernel's form of `plan` from chains of our own on the host (see the
/// module comment).
fn on_host(exes: &Executables, plan: &FamilyRules, wait: u32) -> anyhow::Result<CanonicalPlan> {
    let pid = std::process::id();
    // A name per planned chain (built-in ones included), per table.
    let mut names: Vec<(TableName, String, String)> = Vec::new();
    for t in plan.non_empty_tables() {
        for c in t.chains.iter().filter(|c| c.custom || !c.rules.is_empty()) {
            let n = names.len();
            names.push((t.name, c.name.clone(), format!("{HOST_PREFIX}{pid}_{n:02}")));
        }
    }
    let temp = |table: TableName, chain: &str| {
        names
            .iter()
            .find(|(t, c, _)| *t == table && c == chain)
            .map(|(_, _, n)| n.clone())
    };
    let mut load = String::new();
    let mut unload = String::new();
    for t in plan.non_empty_tables() {
        let ours: Vec<&(TableName, String, String)> =
            names.iter().filter(|(tn, _, _)| *tn == t.name).collect();
        load.push_str(&format!("*{}\n", t.name.as_str()));
        unload.push_str(&format!("*{}\n", t.name.as_str()));
        for (_, _, n) in &ours {
            load.push_str(&format!("-N {n}\n"));
            unload.push_str(&format!("-F {n}\n"));
        }
        for (_, _, n) in &ours {
            unload.push_str(&format!("-X {n}\n"));
        }
        for c in t.chains.iter().filter(|c| !c.rules.is_empty()) {
            let into = temp(t.name, &c.name).expect("named above");
            for r in c.final_order() {
                let mut r = r.clone();
                if let Target::Chain(to) = &r.target
                    && let Some(n) = temp(t.name, to)
                {
                    r.target = Target::Chain(n);
                }
                load.push_str(&format!(
                    "-A {into} {}\n",
                    rule_args(&r, plan.comments, Style::default())
                ));
            }
        }
        load.push_str("COMMIT\n");
        unload.push_str("COMMIT\n");
    }
    let restore = |input: &str| {
        let mut cmd = Cmd::new(&exes.restore);
        if exes.mode == Mode::Legacy {
            cmd = cmd.arg(format!("--wait={}", wait.max(1)));
        }
        cmd.arg("--noflush")
            .stdin(input.to_string())
            .run()
            .map_err(|e| crate::host::apply::restore_error(exes, "(chains of our own)", e, input))
    };
    let loaded = restore(&load).and_then(|_| Cmd::new(&exes.save).run());
    // Always try to take them away again, whatever happened.
    let removed = restore(&unload);
    let out = loaded?;
    removed.context("removing the chains made to read the kernel's form")?;
    let saved = Saved::parse_checked(&out.stdout)?;
    // Back to the planned chains' names: longest temporary name first, so
    // `…_1` never eats into `…_10`.
    let mut by_len: Vec<&(TableName, String, String)> = names.iter().collect();
    by_len.sort_by_key(|(_, _, n)| std::cmp::Reverse(n.len()));
    let mut renamed = Saved::default();
    for st in &saved.tables {
        let mut t = crate::host::save::SavedTable {
            name: st.name.clone(),
            ..Default::default()
        };
        for r in &st.rules {
            let Some((_, real, _)) = names
                .iter()
                .find(|(tn, _, n)| tn.as_str() == st.name && *n == r.chain)
            else {
                continue;
            };
            let mut spec = r.spec.clone();
            for (_, real, n) in &by_len {
                spec = spec.replace(n.as_str(), real);
            }
            t.rules.push(crate::host::save::SavedLine {
                chain: real.clone(),
                spec,
                counters: None,
            });
        }
        renamed.tables.push(t);
    }
    collect(plan, &renamed)
}

/// Options whose value differs from one install to the next and is left out
/// of a [`shape`]: the exempt UID, the port a rule redirects to, the
/// conntrack zone, addresses, and a source port other than 53 (the DNS
/// proxy's).
const VARIABLE: [&str; 5] = ["--uid-owner", "--to-ports", "--zone", "-d", "-s"];

/// A canonical rule line with its install-specific values replaced by `*`:
/// rules of one kind (say, "redirect UDP/53 to the DNS proxy") have one
/// shape whatever the DNS port, zone, UID or server address.
pub fn shape(spec: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut words = spec.split_whitespace().peekable();
    while let Some(w) = words.next() {
        out.push(w);
        let variable =
            VARIABLE.contains(&w) || (w == "--sport" && words.peek().is_some_and(|v| *v != "53"));
        if variable && words.next().is_some() {
            out.push("*");
        }
    }
    out.join(" ")
}

/// The values of `--uid-owner` in a line.
pub fn uids_in(spec: &str) -> Vec<&str> {
    spec.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--uid-owner")
        .map(|w| w[1])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_leave_out_what_differs_between_installs() {
        assert_eq!(
            shape("-A OUTPUT -p udp -m udp --sport 15053 -m owner --uid-owner 5678 -j CT --zone 2"),
            shape("-A OUTPUT -p udp -m udp --sport 5353 -m owner --uid-owner 1 -j CT --zone 7"),
        );
        assert_eq!(
            shape("-A PREROUTING -s 10.0.0.2/32 -p udp -m udp --sport 53 -j CT --zone 1"),
            "-A PREROUTING -s * -p udp -m udp --sport 53 -j CT --zone *"
        );
        assert_ne!(
            shape("-A OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053"),
            shape("-A OUTPUT -p udp -m udp --dport 54 -j REDIRECT --to-ports 15053"),
        );
        assert_eq!(
            uids_in("-A OUTPUT -p tcp -m owner ! --uid-owner 1 -j RETURN"),
            vec!["1"]
        );
    }
}
