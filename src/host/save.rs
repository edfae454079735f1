//! Reading `iptables-save` output into tables, chains and rule lines, telling
//! our rules from everybody else's, and writing a table back as restore input
//! (with counters) for a rollback. The rule lines are kept exactly as
//! iptables prints them, which is also the form `-D` accepts.

use std::collections::BTreeMap;

use crate::config::{CHAIN_PREFIX, COMMENT_PREFIX};
use crate::model::TableName;

/// One rule as printed: `-A CHAIN …` without counters, plus its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLine {
    pub chain: String,
    /// `-A CHAIN …`.
    pub spec: String,
    /// `[packets:bytes]` when saved with `-c`.
    pub counters: Option<String>,
}

impl SavedLine {
    /// The same rule as a `-D` command.
    pub fn delete_command(&self) -> String {
        match self.spec.strip_prefix("-A ") {
            Some(rest) => format!("-D {rest}"),
            None => self.spec.clone(),
        }
    }
}

/// A chain declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedChain {
    pub name: String,
    /// `ACCEPT`/`DROP` for built-in chains, `-` for custom ones.
    pub policy: String,
    pub counters: Option<String>,
}

impl SavedChain {
    pub fn builtin(&self) -> bool {
        self.policy != "-"
    }
}

/// One table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedTable {
    pub name: String,
    pub chains: Vec<SavedChain>,
    /// Rules in file order (iptables-save groups them by chain).
    pub rules: Vec<SavedLine>,
}

impl SavedTable {
    /// The rules of one chain, in order.
    pub fn chain_rules<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedLine> {
        self.rules.iter().filter(move |r| r.chain == chain)
    }

    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c.name == chain)
    }

    /// Custom chains or rules present (kumactl's "existing rules" heuristic).
    pub fn has_content(&self) -> bool {
        !self.rules.is_empty() || self.chains.iter().any(|c| !c.builtin())
    }

    /// No rules, no custom chains, every policy ACCEPT.
    pub fn is_pristine(&self) -> bool {
        self.rules.is_empty() && self.chains.iter().all(|c| c.policy == "ACCEPT")
    }

    /// Declarations of the built-in chains with their policy and counters:
    /// legacy `iptables-restore --noflush` resets a touched table's policy
    /// counters unless they are declared (and `--counters` is given).
    pub fn policy_lines(&self) -> String {
        self.chains
            .iter()
            .filter(|c| c.builtin())
            .map(|c| {
                format!(
                    ":{} {} {}\n",
                    c.name,
                    c.policy,
                    c.counters.as_deref().unwrap_or("[0:0]")
                )
            })
            .collect()
    }

    /// The table as restore input, counters included when known.
    pub fn restore_block(&self) -> String {
        let mut out = format!("*{}\n", self.name);
        for c in &self.chains {
            out.push_str(&format!(
                ":{} {} {}\n",
                c.name,
                c.policy,
                c.counters.as_deref().unwrap_or("[0:0]")
            ));
        }
        for r in &self.rules {
            match &r.counters {
                Some(c) => out.push_str(&format!("{c} {}\n", r.spec)),
                None => out.push_str(&format!("{}\n", r.spec)),
            }
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// A whole `iptables-save` output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Saved {
    pub tables: Vec<SavedTable>,
}

impl Saved {
    /// [`Saved::parse`] for output the program must have printed in full:
    /// anything that is not a table header, chain declaration, rule or
    /// `COMMIT`, or a table left open, is an error rather than something to
    /// skip — a save that prints garbage must never become a "before" state.
    pub fn parse_checked(text: &str) -> anyhow::Result<Saved> {
        let mut open = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let ok = if line.is_empty() || line.starts_with('#') {
                true
            } else if line.starts_with('*') {
                let was = open;
                open = true;
                !was
            } else if line == "COMMIT" {
                let was = open;
                open = false;
                was
            } else if line.starts_with(':') {
                open && line.split_whitespace().count() >= 2
            } else {
                let spec = if line.starts_with('[') {
                    line.split_once("] ").map(|(_, r)| r).unwrap_or("")
                } else {
                    line
                };
                open && spec.starts_with("-A ") && spec.split_whitespace().count() >= 2
            };
            if !ok {
                anyhow::bail!(
                    "unexpected iptables-save output at line {}: {:?}",
                    n + 1,
                    line.chars().take(200).collect::<String>()
                );
            }
        }
        if open {
            anyhow::bail!("iptables-save output ends inside a table (no COMMIT): it was cut short");
        }
        Ok(Saved::parse(text))
    }

    pub fn parse(text: &str) -> Saved {
        let mut tables = Vec::new();
        let mut current: Option<SavedTable> = None;
        for raw in text.lines() {
            let line = raw.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                if let Some(t) = current.take() {
                    tables.push(t);
                }
                current = Some(SavedTable {
                    name: name.trim().to_string(),
                    ..Default::default()
                });
                continue;
            }
            let Some(table) = current.as_mut() else {
                continue;
            };
            if line == "COMMIT" {
                tables.push(current.take().expect("current table"));
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                let mut parts = decl.split_whitespace();
                let name = parts.next().unwrap_or_default().to_string();
                let policy = parts.next().unwrap_or("-").to_string();
                let counters = parts.next().map(str::to_string);
                table.chains.push(SavedChain {
                    name,
                    policy,
                    counters,
                });
                continue;
            }
            let (counters, spec) = if line.starts_with('[') {
                match line.split_once(' ') {
                    Some((c, rest)) => (Some(c.to_string()), rest.to_string()),
                    None => (None, line.to_string()),
                }
            } else {
                (None, line.to_string())
            };
            let chain = spec
                .strip_prefix("-A ")
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            table.rules.push(SavedLine {
                chain,
                spec,
                counters,
            });
        }
        if let Some(t) = current.take() {
            tables.push(t);
        }
        Saved { tables }
    }

    pub fn table(&self, name: TableName) -> Option<&SavedTable> {
        self.tables.iter().find(|t| t.name == name.as_str())
    }

    /// Any rule or custom chain in nat, raw or mangle (kumactl §3.2).
    pub fn has_existing_rules(&self) -> bool {
        TableName::ALL
            .iter()
            .filter_map(|t| self.table(*t))
            .any(SavedTable::has_content)
    }

    /// nat has a `DOCKER_OUTPUT` chain.
    pub fn has_docker_output(&self) -> bool {
        self.table(TableName::Nat)
            .is_some_and(|t| t.has_chain("DOCKER_OUTPUT"))
    }

    /// Rule lines per (table, chain), counters dropped: a comparable view.
    pub fn rule_map(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for t in &self.tables {
            for c in &t.chains {
                map.entry((t.name.clone(), c.name.clone())).or_default();
            }
            for r in &t.rules {
                map.entry((t.name.clone(), r.chain.clone()))
                    .or_default()
                    .push(r.spec.clone());
            }
        }
        map
    }
}

/// A chain name of ours: everything kumactl's cleanup would treat as Kuma's.
pub fn is_our_chain(name: &str) -> bool {
    name.starts_with(CHAIN_PREFIX)
}

/// A rule line that carries our comment prefix or references one of our chains.
pub fn is_marked(spec: &str) -> bool {
    if spec.contains(COMMENT_PREFIX) {
        return true;
    }
    spec.split_whitespace().any(is_our_chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sun Nov 22 02:47:17 2026
*nat
:PREROUTING ACCEPT [1:60]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CUSTOM_CHAIN - [0:0]
:KUMA_MESH_INBOUND - [0:0]
[3:180] -A PREROUTING -p tcp -m comment --comment "kuma/mesh/transparent/proxy/redirect inbound" -j KUMA_MESH_INBOUND
[0:0] -A OUTPUT -p icmp -j CUSTOM_CHAIN
[0:0] -A KUMA_MESH_INBOUND -p tcp -j RETURN
COMMIT
# Completed on Sun Nov 22 02:47:17 2026
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"#;

    #[test]
    fn parses_tables_chains_rules_and_counters() {
        let s = Saved::parse(SAMPLE);
        assert_eq!(s.tables.len(), 2);
        let nat = s.table(TableName::Nat).unwrap();
        assert_eq!(nat.chains.len(), 6);
        assert_eq!(nat.rules.len(), 3);
        assert_eq!(nat.rules[0].chain, "PREROUTING");
        assert_eq!(nat.rules[0].counters.as_deref(), Some("[3:180]"));
        assert!(nat.rules[0].spec.starts_with("-A PREROUTING -p tcp"));
        assert!(
            nat.rules[0]
                .delete_command()
                .starts_with("-D PREROUTING -p tcp")
        );
        assert!(s.has_existing_rules());
        assert!(!s.has_docker_output());
        assert!(s.table(TableName::Raw).unwrap().is_pristine());
        assert_eq!(
            Saved::parse(&nat.restore_block()).tables[0],
            nat.clone(),
            "restore_block round-trips"
        );
    }

    #[test]
    fn garbage_or_cut_short_save_output_is_an_error() {
        assert!(Saved::parse_checked(SAMPLE).is_ok());
        assert!(
            Saved::parse_checked("").is_ok(),
            "an empty namespace prints nothing"
        );
        assert!(Saved::parse_checked("Segmentation fault\n").is_err());
        assert!(Saved::parse_checked("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j RETURN\n").is_err());
        assert!(Saved::parse_checked("*nat\n-X OUTPUT\nCOMMIT\n").is_err());
        let nat = Saved::parse(SAMPLE).tables[0].clone();
        assert!(
            nat.policy_lines()
                .starts_with(":PREROUTING ACCEPT [1:60]\n")
        );
        assert!(!nat.policy_lines().contains("CUSTOM_CHAIN"));
    }

    #[test]
    fn marks() {
        assert!(is_marked(
            "-A OUTPUT -p tcp -m comment --comment \"kuma/mesh/transparent/proxy/x\" -j RETURN"
        ));
        assert!(is_marked("-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND"));
        assert!(is_marked("-A KUMA_MESH_OUTBOUND -j RETURN"));
        assert!(!is_marked("-A OUTPUT -p tcp -j CUSTOM"));
    }
}
