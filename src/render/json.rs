//! The machine-readable form of a plan (`--output json`): per family, per
//! table and chain, every rule with its position and its restore text.

use serde::Serialize;

use super::restore::{Style, rule_args, rule_line};
use crate::model::{Family, Position, RuleSet};

#[derive(Debug, Serialize)]
pub struct JsonRule {
    pub table: &'static str,
    pub chain: String,
    /// `append`, or `insert` with its 1-based position.
    pub position: String,
    pub comment: Option<String>,
    pub args: String,
    pub line: String,
}

#[derive(Debug, Serialize)]
pub struct JsonFamily {
    pub family: Family,
    pub comments: bool,
    pub chains: Vec<String>,
    pub rules: Vec<JsonRule>,
}

/// Every planned rule of every family, in restore order.
pub fn plan_json(set: &RuleSet) -> Vec<JsonFamily> {
    let style = Style::default();
    set.families()
        .map(|f| {
            let mut rules = Vec::new();
            let mut chains = Vec::new();
            for t in &f.tables {
                for c in &t.chains {
                    if c.custom {
                        chains.push(format!("{}/{}", t.name.as_str(), c.name));
                    }
                    for r in &c.rules {
                        rules.push(JsonRule {
                            table: t.name.as_str(),
                            chain: c.name.clone(),
                            position: match r.position {
                                Position::Append => "append".to_string(),
                                Position::Insert(n) => format!("insert {n}"),
                            },
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
        .collect()
}
