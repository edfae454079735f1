//! `--store-firewalld`: the planned rules as firewalld "direct" entries in
//! `/etc/firewalld/direct.xml` (firewalld.direct(5)), so that firewalld
//! re-creates them when it starts (at boot), and their removal again.
//!
//! What it owns: the translation of a [`RuleSet`] into entries (one `<chain>`
//! per custom chain, one `<rule>` per rule, per family, table and chain); the
//! priority scheme; merging into and removing from a file other tools write
//! too, without touching a byte of theirs; recognising our entries without a
//! receipt; the atomic file update; and what to tell the user when firewalld
//! is running ([`daemon`]). What it does not own: the rule text (the body of a
//! `<rule>` is exactly [`render::rule_args`], the argument text the restore
//! renderer writes — never iptables' output, kumactl's F1), applying rules
//! (iptables-restore, in `host`), and reloading firewalld, which it never does
//! (see docs/firewalld.md, "When firewalld is running during install or
//! uninstall").
//!
//! Priorities. firewalld orders the direct rules of one chain by priority,
//! lower first; rules of equal priority have no guaranteed order, so every
//! rule of ours gets its own. In a chain with `k` inserted rules (`-I`), the
//! inserted rule at final position `i` (0-based) gets `-1000 - (k - 1 - i)`,
//! so the last inserted rule is always `-1000`; the `j`-th appended rule
//! (0-based, creation order) gets `1000 + j`. Sorting by priority gives
//! [`Chain::final_order`], and foreign direct rules with priorities in
//! `(-1000, 1000)` — the usual small numbers — land between our inserted and
//! appended rules, where pre-existing rules land in iptables.

mod args;
pub mod daemon;
mod xml;

#[cfg(test)]
mod tests;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::{CHAIN_PREFIX, COMMENT_PREFIX};
use crate::host::receipt::{FirewalldReceipt, write_atomic};
use crate::model::{Chain, Position, RuleSet};
use crate::render::{self, Style};

pub use args::{same_args, split_args};

/// Where firewalld reads its direct configuration.
pub const DEFAULT_PATH: &str = "/etc/firewalld/direct.xml";

/// Priority of the last inserted rule of a chain; earlier ones count down.
pub const INSERTED_LAST: i32 = -1000;

/// Priority of the first appended rule of a chain; later ones count up.
pub const APPENDED_FIRST: i32 = 1000;

/// Mode of a `direct.xml` we create (firewalld's own files are not
/// world-readable either).
const NEW_FILE_MODE: u32 = 0o600;

/// One child element of `<direct>`. Values are kept as firewalld reads them:
/// attribute values unescaped, the body as text (firewalld splits it with
/// [`split_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `<chain ipv table chain/>`: firewalld creates the chain (`-N`).
    Chain {
        ipv: String,
        table: String,
        chain: String,
    },
    /// `<rule ipv table chain priority>args</rule>`.
    Rule {
        ipv: String,
        table: String,
        chain: String,
        priority: i32,
        args: String,
    },
    /// `<passthrough ipv>args</passthrough>`: a raw iptables command. We
    /// never write one; we keep other people's.
    Passthrough { ipv: String, args: String },
}

impl Entry {
    /// Reads one element as written by [`Entry`]'s `Display` (a receipt
    /// entry), e.g. `<chain ipv="ipv4" table="nat" chain="KUMA_MESH_INBOUND"/>`.
    pub fn parse(element: &str) -> anyhow::Result<Entry> {
        let text = format!("<direct>{element}</direct>");
        let doc = xml::Document::parse(&text)
            .with_context(|| format!("{element:?} is not a direct.xml element"))?;
        match doc.children.as_slice() {
            [xml::Element { entry: Some(e), .. }] => Ok(e.clone()),
            _ => bail!("{element:?} is not exactly one <chain>, <rule> or <passthrough> element"),
        }
    }

    /// The entry firewalld reads from an element, if it reads one.
    fn from_element(name: &str, attrs: &[(String, String)], body: &str) -> Option<Entry> {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match name {
            "chain" => Some(Entry::Chain {
                ipv: get("ipv")?,
                table: get("table")?,
                chain: get("chain")?,
            }),
            // firewalld reads the priority with Python's int(), which
            // accepts surrounding whitespace and a sign.
            "rule" => Some(Entry::Rule {
                ipv: get("ipv")?,
                table: get("table")?,
                chain: get("chain")?,
                priority: get("priority")?.trim().parse().ok()?,
                args: body.to_string(),
            }),
            "passthrough" => Some(Entry::Passthrough {
                ipv: get("ipv")?,
                args: body.to_string(),
            }),
            _ => None,
        }
    }

    /// Whether firewalld treats both as the same entry: equal attributes and
    /// the same argument list (quoting and spacing aside). This is what
    /// "never write duplicates" compares.
    pub fn same_as(&self, other: &Entry) -> bool {
        match (self, other) {
            (Entry::Chain { .. }, Entry::Chain { .. }) => self == other,
            (
                Entry::Rule {
                    ipv,
                    table,
                    chain,
                    priority,
                    args,
                },
                Entry::Rule {
                    ipv: ipv2,
                    table: table2,
                    chain: chain2,
                    priority: priority2,
                    args: args2,
                },
            ) => {
                (ipv, table, chain, priority) == (ipv2, table2, chain2, priority2)
                    && same_args(args, args2)
            }
            (Entry::Passthrough { ipv, args }, Entry::Passthrough { ipv: i2, args: a2 }) => {
                ipv == i2 && same_args(args, a2)
            }
            _ => false,
        }
    }

    /// Whether the entry belongs to a transparent-proxy install (ours or
    /// kumactl's) without a receipt saying so: a chain named `KUMA_MESH_*`, a
    /// rule in such a chain, a rule whose comment starts with
    /// `kuma/mesh/transparent/proxy/`, or a rule that jumps to a `KUMA_MESH_*`
    /// chain (which also finds our comment-less jumps). Passthroughs are never
    /// ours.
    pub fn is_ours(&self) -> bool {
        let our_chain = |c: &str| c.starts_with(&format!("{CHAIN_PREFIX}_"));
        match self {
            Entry::Chain { ipv, chain, .. } => ip_family(ipv) && our_chain(chain),
            Entry::Rule {
                ipv, chain, args, ..
            } => {
                if !ip_family(ipv) {
                    return false;
                }
                if our_chain(chain) {
                    return true;
                }
                match split_args(args) {
                    Some(argv) => argv.windows(2).any(|w| match w[0].as_str() {
                        "--comment" => w[1].starts_with(COMMENT_PREFIX),
                        "-j" | "--jump" | "-g" | "--goto" => our_chain(&w[1]),
                        _ => false,
                    }),
                    None => args.contains(COMMENT_PREFIX),
                }
            }
            Entry::Passthrough { .. } => false,
        }
    }
}

fn ip_family(ipv: &str) -> bool {
    ipv == "ipv4" || ipv == "ipv6"
}

/// Priorities of a chain's rules, in [`Chain::final_order`].
fn priorities(chain: &Chain) -> Vec<i32> {
    let inserted = chain.inserted() as i32;
    let mut appended = 0;
    chain
        .final_order()
        .iter()
        .enumerate()
        .map(|(i, r)| match r.position {
            Position::Insert(_) => INSERTED_LAST - (inserted - 1 - i as i32),
            Position::Append => {
                appended += 1;
                APPENDED_FIRST + appended - 1
            }
        })
        .collect()
}

/// The entries for a rule set: per family (`ipv4`, then `ipv6`), per table
/// (raw, nat, mangle), a `<chain>` per custom chain, then per chain (built-in
/// chains in table order, then ours) one `<rule>` per rule in final order.
pub fn planned_entries(set: &RuleSet) -> Vec<Entry> {
    let mut out = Vec::new();
    for fam in set.families() {
        let ipv = fam.family.firewalld();
        for table in fam.non_empty_tables() {
            let t = table.name.as_str();
            out.extend(table.custom_chains().map(|c| Entry::Chain {
                ipv: ipv.to_string(),
                table: t.to_string(),
                chain: c.name.clone(),
            }));
            for chain in &table.chains {
                for (rule, priority) in chain.final_order().into_iter().zip(priorities(chain)) {
                    out.push(Entry::Rule {
                        ipv: ipv.to_string(),
                        table: t.to_string(),
                        chain: chain.name.clone(),
                        priority,
                        args: render::rule_args(rule, fam.comments, Style::default()),
                    });
                }
            }
        }
    }
    out
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The new file text (the old text, byte for byte, when nothing was added).
    pub xml: String,
    /// The entries actually added, as XML elements (receipt form).
    pub added: Vec<String>,
}

/// Parses an existing file; empty or blank text counts as no file.
fn parse_existing(existing: Option<&str>) -> anyhow::Result<Option<xml::Document<'_>>> {
    match existing {
        Some(t) if !t.trim().is_empty() => Ok(Some(xml::Document::parse(t)?)),
        _ => Ok(None),
    }
}

/// Adds `entries` to an existing `direct.xml` (or a new one): every element
/// already there stays as it is, where it is; an entry equal
/// ([`Entry::same_as`]) to one already there, or to one added before it, is
/// not added again. New elements go before `</direct>`, one per line.
pub fn merge(existing: Option<&str>, entries: &[Entry]) -> anyhow::Result<Merged> {
    let doc = parse_existing(existing)?;
    let present: Vec<&Entry> = doc.iter().flat_map(|d| d.entries()).collect();
    let mut added: Vec<&Entry> = Vec::new();
    for e in entries {
        if !present.iter().chain(added.iter()).any(|p| p.same_as(e)) {
            added.push(e);
        }
    }
    let added: Vec<String> = added.iter().map(|e| e.to_string()).collect();
    let xml = match &doc {
        Some(d) => d.with_added(&added),
        None => xml::new_document(&added),
    };
    Ok(Merged { xml, added })
}

fn parse_all(entries: &[String]) -> anyhow::Result<Vec<Entry>> {
    entries.iter().map(|s| Entry::parse(s)).collect()
}

/// Removes every element equal to one of `ours` (receipt form) and nothing
/// else. An element alone on its line takes the line with it, so removing
/// what [`merge`] added gives back the original text exactly.
pub fn remove(existing: &str, ours: &[String]) -> anyhow::Result<String> {
    let ours = parse_all(ours)?;
    let doc = xml::Document::parse(existing)?;
    Ok(doc.without(&matching(&doc, |e| ours.iter().any(|o| o.same_as(e)))))
}

fn matching(doc: &xml::Document<'_>, pred: impl Fn(&Entry) -> bool) -> Vec<usize> {
    doc.children
        .iter()
        .enumerate()
        .filter(|(_, c)| c.entry.as_ref().is_some_and(&pred))
        .map(|(i, _)| i)
        .collect()
}

/// The receipt form of the children at `indices`.
fn receipt_forms(doc: &xml::Document<'_>, indices: &[usize]) -> Vec<String> {
    indices
        .iter()
        .filter_map(|&i| doc.children[i].entry.as_ref())
        .map(|e| e.to_string())
        .collect()
}

/// Every entry firewalld would read from a `direct.xml` text, in file order.
pub fn entries_in(xml: &str) -> anyhow::Result<Vec<Entry>> {
    Ok(xml::Document::parse(xml)?.entries().cloned().collect())
}

/// The entries of `existing` that [`Entry::is_ours`] recognises, in receipt
/// form: what uninstall removes when there is no receipt.
pub fn recognised(existing: &str) -> anyhow::Result<Vec<String>> {
    let doc = xml::Document::parse(existing)?;
    Ok(doc
        .entries()
        .filter(|e| e.is_ours())
        .map(|e| e.to_string())
        .collect())
}

/// Refuses entries firewalld cannot load. With `IndividualCalls=no` (its
/// default) firewalld feeds direct rules to `iptables-restore`, wrapping each
/// argument that contains whitespace in double quotes without escaping
/// (`ipXtables.py` `set_rules`); an argument holding a `"` then breaks the
/// whole input, and firewalld fails to start and falls back to its stock
/// configuration — at boot, with the host's own firewall rules gone (shown
/// in `tests/integration/firewalld.rs`). The planner cannot produce one (interface names
/// with quotes are rejected in `config`); this keeps it that way for the file.
fn check_loadable(entries: &[Entry]) -> anyhow::Result<()> {
    for e in entries {
        if let Entry::Rule { args, .. } = e {
            let argv = split_args(args)
                .with_context(|| format!("{e}: the rule's arguments have unbalanced quotes"))?;
            if argv.iter().any(|a| a.contains('"')) {
                bail!(
                    "{e}: an argument contains a double quote, which firewalld cannot pass to iptables-restore (it would fail to start and fall back to its stock configuration)"
                );
            }
        }
    }
    Ok(())
}

/// What storing a rule set does to a file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The text to write.
    pub xml: String,
    /// Our stale entries taken out (an earlier install with another
    /// configuration, kumactl's, or those of `previous`), receipt form.
    pub removed: Vec<String>,
    /// Entries added.
    pub added: Vec<String>,
    /// Every planned entry (added now or already there): what the receipt
    /// records and uninstall removes.
    pub entries: Vec<String>,
}

/// Pure core of [`store`]: refuses rules firewalld could not load, takes out
/// our entries that are not planned any more (recognised ones and those
/// listed in `previous`), then merges the planned ones. Foreign entries stay
/// untouched.
pub fn update(
    existing: Option<&str>,
    set: &RuleSet,
    previous: Option<&FirewalldReceipt>,
) -> anyhow::Result<Update> {
    let planned = planned_entries(set);
    check_loadable(&planned)?;
    let before = match previous {
        Some(p) => {
            parse_all(&p.entries).context("reading the previous receipt's firewalld entries")?
        }
        None => Vec::new(),
    };
    let (text, removed) = match parse_existing(existing)? {
        Some(doc) => {
            let stale = matching(&doc, |e| {
                (e.is_ours() || before.iter().any(|b| b.same_as(e)))
                    && !planned.iter().any(|p| p.same_as(e))
            });
            (Some(doc.without(&stale)), receipt_forms(&doc, &stale))
        }
        None => (None, Vec::new()),
    };
    let merged = merge(text.as_deref(), &planned)?;
    Ok(Update {
        xml: merged.xml,
        removed,
        added: merged.added,
        entries: planned.iter().map(|e| e.to_string()).collect(),
    })
}

/// The `direct.xml` text `--store-firewalld` would write for `existing` (for
/// `--dry-run`): the same as [`update`] with no previous receipt.
pub fn render(existing: Option<&str>, set: &RuleSet) -> anyhow::Result<String> {
    Ok(update(existing, set, None)?.xml)
}

/// Reads `path`; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// [`render`] for the file at `path` (read, never written): what
/// `--dry-run --store-firewalld` prints.
pub fn would_write(path: &Path, set: &RuleSet) -> anyhow::Result<String> {
    let existing = read_optional(path)?;
    render(existing.as_deref(), set)
        .with_context(|| format!("firewalld direct configuration {}", path.display()))
}

/// Checks, before anything on the host changes, that storing `set` at
/// `path` will succeed: the directory exists (firewalld creates it when
/// installed), an existing file is a `direct.xml` we can merge into, and
/// firewalld can load every planned rule.
pub fn preflight(path: &Path, set: &RuleSet) -> anyhow::Result<()> {
    let dir = parent(path);
    if !dir.is_dir() {
        bail!(
            "cannot store the rules for firewalld: directory {} does not exist (is firewalld installed?)",
            dir.display()
        );
    }
    would_write(path, set).map(|_| ())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The file a write goes to: the target of a symbolic link, so the link stays.
fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// Replaces the file atomically, keeping the mode and owner of an existing
/// one; a new file gets mode 0600.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let target = write_target(path);
    match std::fs::metadata(&target) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            write_atomic(&target, text.as_bytes(), mode)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("restoring the mode of {}", target.display()))?;
            let now = std::fs::metadata(&target)
                .with_context(|| format!("reading {}", target.display()))?;
            if (now.uid(), now.gid()) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid()))
                    .with_context(|| format!("restoring the owner of {}", target.display()))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomic(&target, text.as_bytes(), NEW_FILE_MODE)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", target.display())),
    }
}

/// Writes the planned rules into the firewalld direct configuration at
/// `path` (see [`update`]) and returns what the receipt records. Same as
/// [`store_replacing`] without a previous receipt.
pub fn store(path: &Path, set: &RuleSet) -> anyhow::Result<FirewalldReceipt> {
    store_replacing(path, set, None)
}

/// [`store`] for a re-install: `previous` (the receipt of the install being
/// replaced) names entries to take out even when they cannot be recognised
/// (comments disabled), and carries over whether the file was ours to create
/// and what it held before the first install. The file is only rewritten
/// when its text changes.
pub fn store_replacing(
    path: &Path,
    set: &RuleSet,
    previous: Option<&FirewalldReceipt>,
) -> anyhow::Result<FirewalldReceipt> {
    let what = || format!("firewalld direct configuration {}", path.display());
    let existing = read_optional(path)?;
    let up = update(existing.as_deref(), set, previous).with_context(what)?;
    if existing.as_deref() != Some(up.xml.as_str()) {
        replace(path, &up.xml).with_context(what)?;
    }
    Ok(receipt_for(path, existing.as_deref(), up.entries, previous))
}

/// What the receipt records for the planned entries of `set` stored at
/// `path` whose text is `existing` now.
fn receipt_for(
    path: &Path,
    existing: Option<&str>,
    entries: Vec<String>,
    previous: Option<&FirewalldReceipt>,
) -> FirewalldReceipt {
    let previous = previous.filter(|p| p.path == path);
    let created = existing.is_none() || previous.is_some_and(|p| p.created);
    let original = match previous {
        Some(p) => p.original.clone(),
        None => existing
            .filter(|t| t.trim().is_empty() || entries_in(t).is_ok_and(|e| e.is_empty()))
            .map(str::to_string),
    };
    FirewalldReceipt {
        path: path.to_path_buf(),
        created,
        entries,
        original,
    }
}

/// What [`store_replacing`] would record, without writing anything: the
/// journal entry an install writes before it changes the file.
pub fn intent(
    path: &Path,
    set: &RuleSet,
    previous: Option<&FirewalldReceipt>,
) -> anyhow::Result<FirewalldReceipt> {
    let existing = read_optional(path)?;
    let up = update(existing.as_deref(), set, previous)
        .with_context(|| format!("firewalld direct configuration {}", path.display()))?;
    Ok(receipt_for(path, existing.as_deref(), up.entries, previous))
}

/// The entries `set` plans, in receipt form (for recognising the entries of
/// an install whose receipt is gone and whose rules carry no comments).
pub fn planned_forms(set: &RuleSet) -> Vec<String> {
    planned_entries(set).iter().map(|e| e.to_string()).collect()
}

/// Puts the file back as it was before a failed install stored into it:
/// `text`, or no file.
pub fn put_back(path: &Path, text: Option<&str>) -> anyhow::Result<()> {
    match text {
        Some(t) => replace(path, t),
        None => {
            let target = write_target(path);
            match std::fs::remove_file(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", target.display()))
                }
                _ => Ok(()),
            }
        }
    }
}

/// What [`unstore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unstored {
    /// The entries taken out, receipt form.
    pub removed: Vec<String>,
    /// The file was deleted: we had created it and nothing else is in it.
    pub deleted: bool,
}

/// Removes our entries from the file at `path`: those the receipt lists and
/// those [`Entry::is_ours`] recognises (so kumactl's, and installs whose
/// receipt is gone, are cleaned too). See [`unstore_all`].
pub fn unstore(path: &Path, receipt: Option<&FirewalldReceipt>) -> anyhow::Result<Unstored> {
    unstore_all(path, receipt.as_slice(), &[])
}

/// Removes from the file at `path` every entry [`Entry::is_ours`]
/// recognises, every entry one of `records` lists (the receipt, an
/// unfinished run), and every entry of `extra` (receipt form: what the
/// configuration plans, for comment-less installs without a receipt).
/// Everything else stays byte for byte. Afterwards, a file a record says we
/// created is deleted when nothing else is in it; a file that held no
/// entries before the first install gets its original text back (an empty
/// file stays empty, `<direct/>` stays `<direct/>`) when nothing else is in
/// it. A missing file is nothing to do.
pub fn unstore_all(
    path: &Path,
    records: &[&FirewalldReceipt],
    extra: &[String],
) -> anyhow::Result<Unstored> {
    let what = || format!("firewalld direct configuration {}", path.display());
    let Some(existing) = read_optional(path)? else {
        return Ok(Unstored::default());
    };
    if existing.trim().is_empty() {
        return Ok(Unstored::default());
    }
    let mut listed = parse_all(extra).context("reading the planned firewalld entries")?;
    for r in records {
        listed.extend(parse_all(&r.entries).context("reading the receipt's firewalld entries")?);
    }
    let doc = xml::Document::parse(&existing).with_context(what)?;
    let ours = matching(&doc, |e| e.is_ours() || listed.iter().any(|l| l.same_as(e)));
    if ours.is_empty() {
        return Ok(Unstored::default());
    }
    let removed = receipt_forms(&doc, &ours);
    let text = doc.without(&ours);
    let empty = xml::Document::parse(&text)
        .with_context(what)?
        .children
        .is_empty();
    let mine = |r: &&&FirewalldReceipt| r.path == path;
    if empty && records.iter().filter(mine).any(|r| r.created) {
        let target = write_target(path);
        std::fs::remove_file(&target).with_context(|| format!("removing {}", target.display()))?;
        return Ok(Unstored {
            removed,
            deleted: true,
        });
    }
    let original = records.iter().filter(mine).find_map(|r| r.original.clone());
    let text = match original {
        Some(o) if empty => o,
        _ => text,
    };
    replace(path, &text).with_context(what)?;
    Ok(Unstored {
        removed,
        deleted: false,
    })
}

/// The `iptables-restore` input that creates what the `ipv` entries say,
/// ignoring firewalld's own `*_direct` indirection: per table (in order of
/// appearance), `-N` per chain, then each chain's rules sorted by priority as
/// `-A chain args`. Lets tests feed our bodies to `iptables-restore --test`
/// and compare the order with the plan.
pub fn restore_equivalent(entries: &[Entry], ipv: &str) -> String {
    let mut tables: Vec<&str> = Vec::new();
    for e in entries {
        if let Entry::Chain { ipv: v, table, .. } | Entry::Rule { ipv: v, table, .. } = e
            && v == ipv
            && !tables.contains(&table.as_str())
        {
            tables.push(table);
        }
    }
    let mut out = String::new();
    for t in tables {
        out.push_str(&format!("*{t}\n"));
        let mut chains: Vec<&str> = Vec::new();
        let mut rules: Vec<(&str, i32, &str)> = Vec::new();
        for e in entries {
            match e {
                Entry::Chain {
                    ipv: v,
                    table,
                    chain,
                } if v == ipv && table == t => out.push_str(&format!("-N {chain}\n")),
                Entry::Rule {
                    ipv: v,
                    table,
                    chain,
                    priority,
                    args,
                } if v == ipv && table == t => {
                    if !chains.contains(&chain.as_str()) {
                        chains.push(chain);
                    }
                    rules.push((chain, *priority, args));
                }
                _ => {}
            }
        }
        rules.sort_by_key(|(c, p, _)| (chains.iter().position(|x| x == c), *p));
        for (c, _, a) in rules {
            out.push_str(&format!("-A {c} {a}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}
