//! The one place a typed [`Rule`] becomes iptables text: rule arguments
//! (shared with the firewalld renderer), `-A`/`-I` lines, per-table blocks and
//! whole `iptables-restore` inputs, in kumactl's format (reference §2.1, §3.6,
//! §3.7): short options, or long options with section headers when verbose.

use crate::config::COMMENT_PREFIX;
use crate::model::{
    Extension, FamilyRules, Param, PortMatch, Position, Rule, RuleSet, Table, Target,
};

/// Rendering switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Long option names and section headers (`--verbose`).
    pub verbose: bool,
}

/// iptables keeps at most 255 bytes of comment; kumactl cuts at 254.
const COMMENT_MAX: usize = 254;

fn opt(style: Style, short: &'static str, long: &'static str) -> &'static str {
    if style.verbose { long } else { short }
}

/// Quotes like Go's `%q`, which is what kumactl writes and iptables-restore reads.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The full comment text (prefix included), cut to what iptables keeps.
pub fn comment_text(comment: &str) -> String {
    let mut full = format!("{COMMENT_PREFIX}{comment}");
    if full.len() > COMMENT_MAX {
        let mut cut = COMMENT_MAX;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        full.truncate(cut);
    }
    full
}

fn push_ports(out: &mut Vec<String>, style: Style, ports: &[PortMatch]) {
    for p in ports {
        match p {
            PortMatch::Dport { port, negated } => {
                if *negated {
                    out.push("!".to_string());
                }
                out.push(opt(style, "--dport", "--destination-port").to_string());
                out.push(port.to_string());
            }
            PortMatch::Dports(ranges) => {
                out.push(opt(style, "--dport", "--destination-port").to_string());
                out.push(
                    ranges
                        .iter()
                        .map(|r| r.iptables())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            PortMatch::Sport(port) => {
                out.push(opt(style, "--sport", "--source-port").to_string());
                out.push(port.to_string());
            }
        }
    }
}

fn push_param(out: &mut Vec<String>, style: Style, param: &Param) {
    let m = opt(style, "-m", "--match");
    match param {
        Param::Protocol { proto, ports } => {
            out.push(opt(style, "-p", "--protocol").to_string());
            out.push(proto.as_str().to_string());
            push_ports(out, style, ports);
        }
        Param::Source { addr, negated } | Param::Destination { addr, negated } => {
            if *negated {
                out.push("!".to_string());
            }
            let flag = if matches!(param, Param::Source { .. }) {
                opt(style, "-s", "--source")
            } else {
                opt(style, "-d", "--destination")
            };
            out.push(flag.to_string());
            out.push(addr.text.clone());
        }
        Param::InInterface(i) => {
            out.push(opt(style, "-i", "--in-interface").to_string());
            out.push(i.clone());
        }
        Param::OutInterface(i) => {
            out.push(opt(style, "-o", "--out-interface").to_string());
            out.push(i.clone());
        }
        Param::Match(ext) => {
            out.push(m.to_string());
            match ext {
                Extension::Owner { uids, negated } => {
                    out.push("owner".to_string());
                    if *negated {
                        out.push("!".to_string());
                    }
                    out.push("--uid-owner".to_string());
                    out.push(uids.iptables());
                }
                Extension::Multiport => out.push("multiport".to_string()),
                Extension::Udp => out.push("udp".to_string()),
                Extension::Conntrack { states } => {
                    out.push("conntrack".to_string());
                    out.push("--ctstate".to_string());
                    out.push(states.to_string());
                }
            }
        }
    }
}

fn push_target(out: &mut Vec<String>, style: Style, target: &Target) {
    out.push(opt(style, "-j", "--jump").to_string());
    match target {
        Target::Return => out.push("RETURN".to_string()),
        Target::Chain(c) => out.push(c.clone()),
        Target::Redirect(p) => out.extend([
            "REDIRECT".to_string(),
            "--to-ports".to_string(),
            p.to_string(),
        ]),
        Target::CtZone(z) => out.extend(["CT".to_string(), "--zone".to_string(), z.to_string()]),
        Target::Log { prefix, level } => out.extend([
            "LOG".to_string(),
            "--log-prefix".to_string(),
            prefix.clone(),
            "--log-level".to_string(),
            level.to_string(),
        ]),
        Target::Drop => out.push("DROP".to_string()),
    }
}

/// The rule's arguments after `-A CHAIN` / `-I CHAIN n`: comment first, then
/// the parameters in plan order, then the target. Also the body of a
/// firewalld `<rule>`.
pub fn rule_args(rule: &Rule, comments: bool, style: Style) -> String {
    let mut out: Vec<String> = Vec::with_capacity(12);
    if comments && !rule.comment.is_empty() {
        out.push(opt(style, "-m", "--match").to_string());
        out.push("comment".to_string());
        out.push("--comment".to_string());
        out.push(go_quote(&comment_text(&rule.comment)));
    }
    for p in &rule.params {
        push_param(&mut out, style, p);
    }
    push_target(&mut out, style, &rule.target);
    out.join(" ")
}

/// One `-A CHAIN …` or `-I CHAIN n …` line.
pub fn rule_line(chain: &str, rule: &Rule, comments: bool, style: Style) -> String {
    let head = match rule.position {
        Position::Append => format!("{} {chain}", opt(style, "-A", "--append")),
        Position::Insert(n) => format!("{} {chain} {n}", opt(style, "-I", "--insert")),
    };
    format!("{head} {}", rule_args(rule, comments, style))
}

/// One table block (`* nat` … `COMMIT`), or `None` when it has no rules.
pub fn table_block(table: &Table, comments: bool, style: Style) -> Option<String> {
    let rules: Vec<String> = table
        .chains
        .iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .map(|r| rule_line(&c.name, r, comments, style))
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    let chains: Vec<String> = table
        .custom_chains()
        .map(|c| format!("{} {}", opt(style, "-N", "--new-chain"), c.name))
        .collect();
    let mut parts = vec![format!("* {}", table.name.as_str())];
    if style.verbose {
        if !chains.is_empty() {
            parts.push(format!("# Custom Chains:\n{}", chains.join("\n")));
        }
        parts.push(format!("# Rules:\n{}", rules.join("\n")));
        parts.push("COMMIT".to_string());
        Some(parts.join("\n\n"))
    } else {
        if !chains.is_empty() {
            parts.push(chains.join("\n"));
        }
        parts.push(rules.join("\n"));
        parts.push("COMMIT".to_string());
        Some(parts.join("\n"))
    }
}

/// The `iptables-restore` input of one family (tables raw, nat, mangle; empty
/// ones left out), ending with a newline.
pub fn family_text(rules: &FamilyRules, style: Style) -> String {
    let blocks: Vec<String> = rules
        .tables
        .iter()
        .filter_map(|t| table_block(t, rules.comments, style))
        .collect();
    let sep = if style.verbose { "\n\n" } else { "\n" };
    format!("{}\n", blocks.join(sep))
}

/// The dry-run output (reference §3.6): `### IPv4 ###`, a blank line, the
/// rules; the same for IPv6 when it is planned.
pub fn dry_run_text(set: &RuleSet, style: Style) -> String {
    let sections: Vec<String> = set
        .families()
        .map(|f| {
            format!(
                "### {} ###\n\n{}",
                f.family.title(),
                family_text(f, style).trim_end()
            )
        })
        .collect();
    format!("{}\n", sections.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(go_quote("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn comments_are_cut_to_what_iptables_keeps() {
        let long = "x".repeat(400);
        assert_eq!(comment_text(&long).len(), 254);
        assert!(comment_text("short").starts_with(COMMENT_PREFIX));
    }
}
