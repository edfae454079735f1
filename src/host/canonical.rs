//! The form iptables itself prints a planned rule in (`iptables-save`
//! canonical order, `-m tcp` added, `/32` appended …), obtained by applying
//! the plan in a throwaway network namespace with the same backend and saving
//! it there. Used to recognise our rules on hosts where they carry no comment
//! and no receipt lists them (an install made with `--disable-comments`).

use anyhow::Context;

use crate::host::backend::Executables;
use crate::host::exec::Cmd;
use crate::host::save::{Saved, is_our_chain};
use crate::model::{FamilyRules, TableName};
use crate::render::{Style, family_text};

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

/// Every planned rule outside our own chains, as iptables-save prints it.
pub fn canonical_rules(
    exes: &Executables,
    plan: &FamilyRules,
) -> anyhow::Result<Vec<(TableName, String)>> {
    let text = for_empty_namespace(&family_text(plan, Style::default()));
    // $0 is restore, $1 is save: apply, then print, in a namespace of their own.
    let out = Cmd::new("/bin/sh")
        .args([
            "-c",
            "\"$0\" --noflush && exec \"$1\"",
            &exes.restore.display().to_string(),
            &exes.save.display().to_string(),
        ])
        .stdin(text)
        .in_new_netns()
        .run()
        .context(
            "computing the canonical form of the planned rules in a throwaway network namespace",
        )?;
    let saved = Saved::parse(&out.stdout);
    let mut rules = Vec::new();
    for t in TableName::ALL {
        if let Some(st) = saved.table(t) {
            for r in &st.rules {
                if !is_our_chain(&r.chain) && r.chain != "DOCKER_OUTPUT" {
                    rules.push((t, r.spec.clone()));
                }
            }
        }
    }
    Ok(rules)
}
