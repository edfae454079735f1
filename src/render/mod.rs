//! Pure renderers: typed rules to `iptables-restore` text (and the argument
//! text firewalld reuses), and the JSON form of a plan. No I/O.

pub mod dataplane;
pub mod json;
pub mod restore;
pub mod template;

pub use restore::{Style, dry_run_text, family_text, rule_args, rule_line};
