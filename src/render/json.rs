//! tproxyctl's JSON output contract (docs/json-output.md): the
//! `schemaVersion` of each document it prints or writes, the one writer of
//! those documents, and the dry run's plan document (`install --dry-run
//! --output json`: per family, every rule with its table, chain, position
//! and restore text).
//!
//! Every document is an object whose keys are camelCase at every depth and
//! whose first key is `schemaVersion`; enum values are camelCase strings
//! too. Kuma's own resources (`generate dataplane -o json`) keep Kuma's
//! field names and are not documents of this contract.

use std::io::Write;

use serde::Serialize;

use super::restore::{Style, rule_args, rule_line};
use crate::model::{Family, Position, RuleSet};

/// The `schemaVersion` of each document. An additive change (a new field,
/// a new enum value) keeps it; renaming, removing or retyping a field bumps
/// it (docs/json-output.md, "Compatibility").
pub mod schema_version {
    /// `install --dry-run --output json`, both modes.
    pub const PLAN: u32 = 1;
    /// `status --output json`, both modes.
    pub const STATUS: u32 = 1;
    /// `verify --output json`, both modes.
    pub const VERIFY: u32 = 1;
    /// The install receipt. Receipts without `schemaVersion` (tproxyctl
    /// 0.1.0, which wrote `version: 1`) are read as well.
    pub const RECEIPT: u32 = 1;
    /// The forwarder's `GET /config` and `--print-config`.
    pub const FORWARDER_CONFIG: u32 = 1;
}

/// Writes `doc` as one pretty-printed JSON document and a newline.
pub fn write_document(out: &mut impl Write, doc: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc)?;
    writeln!(out)?;
    Ok(())
}

/// The dry run's plan (`mode: iptables`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument {
    pub schema_version: u32,
    /// `iptables` (the eBPF mode's dry run has `ebpf` and its own fields).
    pub mode: &'static str,
    pub families: Vec<JsonFamily>,
}

/// Where a rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum JsonPosition {
    /// `-A`: after the chain's rules.
    Append,
    /// `-I CHAIN n`: at `insertAt`.
    Insert,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonRule {
    pub table: &'static str,
    pub chain: String,
    pub position: JsonPosition,
    /// The 1-based place of an inserted rule; `null` when appended.
    pub insert_at: Option<u32>,
    pub comment: Option<String>,
    pub args: String,
    pub line: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonFamily {
    pub family: Family,
    pub comments: bool,
    pub chains: Vec<String>,
    pub rules: Vec<JsonRule>,
}

/// Every planned rule of every family, in restore order.
pub fn plan_json(set: &RuleSet) -> PlanDocument {
    let style = Style::default();
    let families = set
        .families()
        .map(|f| {
            let mut rules = Vec::new();
            let mut chains = Vec::new();
            for t in &f.tables {
                for c in &t.chains {
                    if c.custom {
                        chains.push(format!("{}/{}", t.name.as_str(), c.name));
                    }
                    for r in &c.rules {
                        let (position, insert_at) = match r.position {
                            Position::Append => (JsonPosition::Append, None),
                            Position::Insert(n) => (JsonPosition::Insert, Some(n)),
                        };
                        rules.push(JsonRule {
                            table: t.name.as_str(),
                            chain: c.name.clone(),
                            position,
                            insert_at,
                            comment: (f.comments && !r.comment.is_empty())
                                .then(|| super::restore::comment_text(&r.comment)),
                            args: rule_args(r, f.comments, style),
                            line: rule_line(&c.name, r, f.comments, style),
                        });
                    }
                }
            }
            JsonFamily {
                family: f.family,
                comments: f.comments,
                chains,
                rules,
            }
        })
        .collect();
    PlanDocument {
        schema_version: schema_version::PLAN,
        mode: "iptables",
        families,
    }
}
