//! Typed rule values: families, tables, chains, rules, matches and targets.
//! Ports are `u16`, addresses are typed, UIDs are numbers; there is no rule
//! text here. [`crate::render`] is the only code that turns these into text.

pub mod dataplane;

use serde::{Deserialize, Serialize};

use crate::config::{IpMatch, PortRange, Proto, UidRange};

/// IP family of a rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// `IPv4` / `IPv6`, as in the dry-run headers.
    pub fn title(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }

    /// `iptables` / `ip6tables`, as in kumactl's message prefixes.
    pub fn tool(self) -> &'static str {
        match self {
            Family::Ipv4 => "iptables",
            Family::Ipv6 => "ip6tables",
        }
    }

    /// The firewalld `ipv` attribute.
    pub fn firewalld(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// The tables rules go into, in kumactl's output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableName {
    Raw,
    Nat,
    Mangle,
}

impl TableName {
    pub const ALL: [TableName; 3] = [TableName::Raw, TableName::Nat, TableName::Mangle];

    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Raw => "raw",
            TableName::Nat => "nat",
            TableName::Mangle => "mangle",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        TableName::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Built-in chains in the order kumactl emits them (reference §2.1).
    pub fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            TableName::Raw => &["PREROUTING", "OUTPUT"],
            TableName::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            TableName::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        }
    }
}

/// Where a rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    /// `-A`: after every rule already there.
    Append,
    /// `-I <n>`: numbered per chain in creation order, so inserted rules end
    /// up at the top in that order, ahead of rules already there.
    Insert(u32),
}

/// A port condition inside a protocol match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// `--dport <p>` (`! --dport` when negated).
    Dport { port: u16, negated: bool },
    /// `--dport <a:b,c>` after `-m multiport`.
    Dports(Vec<PortRange>),
    /// `--sport <p>`.
    Sport(u16),
}

/// A match extension loaded with `-m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// `-m owner [!] --uid-owner <uid|a:b>`.
    Owner { uids: UidRange, negated: bool },
    /// `-m multiport` (its ports are given in the protocol match).
    Multiport,
    /// `-m udp` given explicitly (kumactl's vnet DNS rule).
    Udp,
    /// `-m conntrack --ctstate <states>`.
    Conntrack { states: &'static str },
}

/// A rule parameter, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `-p tcp|udp` with its port conditions.
    Protocol { proto: Proto, ports: Vec<PortMatch> },
    /// `[!] -s <addr>`.
    Source { addr: IpMatch, negated: bool },
    /// `[!] -d <addr>`.
    Destination { addr: IpMatch, negated: bool },
    /// `-i <iface>`.
    InInterface(String),
    /// `-o <iface>`.
    OutInterface(String),
    /// `-m <ext> …`.
    Match(Extension),
}

/// What a matching packet does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Return,
    /// Jump to a chain (ours or `DOCKER_OUTPUT`).
    Chain(String),
    /// `REDIRECT --to-ports <p>`.
    Redirect(u16),
    /// `CT --zone <z>`.
    CtZone(u16),
    /// `LOG --log-prefix <p> --log-level <l>`.
    Log {
        prefix: String,
        level: u16,
    },
    Drop,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub position: Position,
    /// Text after the comment prefix; rendered only when comments are on.
    pub comment: String,
    pub params: Vec<Param>,
    pub target: Target,
}

/// A chain and the rules we add to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// True for a chain we create (`-N`), false for a built-in chain.
    pub custom: bool,
    pub rules: Vec<Rule>,
    next_insert: u32,
}

impl Chain {
    pub fn builtin(name: &str) -> Self {
        Chain {
            name: name.to_string(),
            custom: false,
            rules: Vec::new(),
            next_insert: 1,
        }
    }

    pub fn custom(name: &str) -> Self {
        Chain {
            custom: true,
            ..Chain::builtin(name)
        }
    }

    /// Adds a rule at the end of the chain (`-A`).
    pub fn append(&mut self, comment: impl Into<String>, params: Vec<Param>, target: Target) {
        self.rules.push(Rule {
            position: Position::Append,
            comment: comment.into(),
            params,
            target,
        });
    }

    /// Adds a rule above existing rules, after earlier inserted ones (`-I n`).
    pub fn insert(&mut self, comment: impl Into<String>, params: Vec<Param>, target: Target) {
        let n = self.next_insert;
        self.next_insert += 1;
        self.rules.push(Rule {
            position: Position::Insert(n),
            comment: comment.into(),
            params,
            target,
        });
    }

    /// Appends or inserts.
    pub fn add(
        &mut self,
        insert: bool,
        comment: impl Into<String>,
        params: Vec<Param>,
        target: Target,
    ) {
        if insert {
            self.insert(comment, params, target)
        } else {
            self.append(comment, params, target)
        }
    }

    /// The rules in the order they end up in the chain: inserted rules in
    /// creation order, then (where other rules would be) appended rules.
    pub fn final_order(&self) -> Vec<&Rule> {
        let mut inserted: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| matches!(r.position, Position::Insert(_)))
            .collect();
        inserted.sort_by_key(|r| match r.position {
            Position::Insert(n) => n,
            Position::Append => u32::MAX,
        });
        inserted.extend(self.rules.iter().filter(|r| r.position == Position::Append));
        inserted
    }

    /// Number of inserted rules.
    pub fn inserted(&self) -> usize {
        self.rules
            .iter()
            .filter(|r| matches!(r.position, Position::Insert(_)))
            .count()
    }
}

/// A table and its chains: built-in chains in table order, then custom ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: TableName,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(name: TableName) -> Self {
        Table {
            name,
            chains: name
                .builtin_chains()
                .iter()
                .map(|c| Chain::builtin(c))
                .collect(),
        }
    }

    /// The built-in or custom chain with this name; panics when absent
    /// (a programming error in the planner).
    pub fn chain(&mut self, name: &str) -> &mut Chain {
        self.chains
            .iter_mut()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("chain {name} is not in table"))
    }

    pub fn add_custom(&mut self, chain: Chain) {
        self.chains.push(chain);
    }

    pub fn custom_chains(&self) -> impl Iterator<Item = &Chain> {
        self.chains.iter().filter(|c| c.custom)
    }

    pub fn is_empty(&self) -> bool {
        self.chains.iter().all(|c| c.rules.is_empty() && !c.custom)
    }

    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }
}

/// Everything planned for one family: tables in order raw, nat, mangle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRules {
    pub family: Family,
    pub tables: Vec<Table>,
    /// Whether rules carry `-m comment` (config and the module probe).
    pub comments: bool,
}

impl FamilyRules {
    pub fn table(&self, name: TableName) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Tables that have anything to write.
    pub fn non_empty_tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().filter(|t| !t.is_empty())
    }

    pub fn rule_count(&self) -> usize {
        self.tables.iter().map(Table::rule_count).sum()
    }
}

/// The plan for every family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub v4: FamilyRules,
    /// `None` when IPv6 is off (mode ipv4, or the host has no IPv6).
    pub v6: Option<FamilyRules>,
}

impl RuleSet {
    pub fn families(&self) -> impl Iterator<Item = &FamilyRules> {
        std::iter::once(&self.v4).chain(self.v6.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_rules_are_numbered_per_chain_and_ordered_first() {
        let mut c = Chain::builtin("OUTPUT");
        c.append("a1", vec![], Target::Return);
        c.insert("i1", vec![], Target::Return);
        c.append("a2", vec![], Target::Return);
        c.insert("i2", vec![], Target::Return);
        assert_eq!(c.rules[1].position, Position::Insert(1));
        assert_eq!(c.rules[3].position, Position::Insert(2));
        let order: Vec<_> = c.final_order().iter().map(|r| r.comment.as_str()).collect();
        assert_eq!(order, vec!["i1", "i2", "a1", "a2"]);
        assert_eq!(c.inserted(), 2);
    }

    #[test]
    fn tables_have_builtin_chains_in_kumactl_order() {
        let t = Table::new(TableName::Nat);
        let names: Vec<_> = t.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]);
        assert!(t.is_empty());
    }
}
