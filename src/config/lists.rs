//! Lists in the configuration (ports, addresses, UID entries, networks):
//! the size bound, kumactl's port-list rules (trimmed pieces, empty pieces
//! skipped), and folding repeated entries into their first occurrence.
//! Everything here is one pass over the entries.

use std::collections::HashSet;
use std::fmt;

use super::layers::{self, Leaf};
use super::{invalid, types, value_text};
use crate::error::UsageError;

/// The error for a list over [`layers::MAX_LIST_ENTRIES`], naming its key.
pub(super) fn too_many_entries(leaf: &Leaf, path: &str) -> UsageError {
    UsageError::new(format!(
        "{} has more than {} entries; a list names each port, address or network once, and each becomes a rule",
        leaf.source.describe(path),
        layers::MAX_LIST_ENTRIES
    ))
}

/// Builds one port list in a single pass: pieces are trimmed and empty ones
/// skipped (kumactl's `Ports.Set`), each port is checked, a port seen before
/// is folded into its first occurrence (one rule per port), and more than
/// [`layers::MAX_LIST_ENTRIES`] pieces are refused as soon as they are
/// counted. A 65,536-entry table makes the repeat check O(1) per piece.
pub(super) struct PortList<'a> {
    leaf: &'a Leaf,
    path: &'a str,
    ports: Vec<u16>,
    seen: Vec<bool>,
    pieces: usize,
    empty: usize,
    repeated: usize,
    first_repeated: Option<u16>,
}

impl<'a> PortList<'a> {
    pub(super) fn new(leaf: &'a Leaf, path: &'a str) -> Self {
        PortList {
            leaf,
            path,
            ports: Vec::new(),
            seen: vec![false; 1 << 16],
            pieces: 0,
            empty: 0,
            repeated: 0,
            first_repeated: None,
        }
    }

    fn count(&mut self) -> Result<(), UsageError> {
        self.pieces += 1;
        if self.pieces > layers::MAX_LIST_ENTRIES {
            return Err(too_many_entries(self.leaf, self.path));
        }
        Ok(())
    }

    fn add(&mut self, port: u16) {
        if std::mem::replace(&mut self.seen[port as usize], true) {
            self.repeated += 1;
            self.first_repeated.get_or_insert(port);
        } else {
            self.ports.push(port);
        }
    }

    pub(super) fn number(&mut self, n: &serde_yaml::Number) -> Result<(), UsageError> {
        self.count()?;
        let port = n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(self.leaf, self.path, &n.to_string(), types::PORT_RANGE))?;
        self.add(port);
        Ok(())
    }

    pub(super) fn text(&mut self, text: &str) -> Result<(), UsageError> {
        for piece in text.split(',').map(str::trim) {
            if piece.is_empty() {
                self.empty += 1;
                continue;
            }
            self.count()?;
            let port = types::parse_port(piece)
                .map_err(|why| invalid(self.leaf, self.path, piece, &why))?;
            self.add(port);
        }
        Ok(())
    }

    pub(super) fn finish(self, warnings: &mut Vec<String>) -> Vec<u16> {
        let shown = self.leaf.source.describe(self.path);
        if self.empty > 0 {
            let value = value_text(&self.leaf.value);
            let value = if value.len() <= 60 {
                format!(" ('{value}')")
            } else {
                String::new()
            };
            warnings.push(format!(
                "{shown}{value} has {} empty entr{}; ignored, as kumactl does",
                self.empty,
                if self.empty == 1 { "y" } else { "ies" }
            ));
        }
        if let Some(first) = self.first_repeated {
            warnings.push(format!(
                "{shown} repeats ports {} time{} (first: {first}); each port gets one rule",
                self.repeated,
                if self.repeated == 1 { "" } else { "s" }
            ));
        }
        self.ports
    }
}

/// Keeps the first of entries with equal keys, in order, and says in a
/// warning how many repeats were folded: they would only write the same rule
/// again. Linear (one hash lookup per entry).
pub(super) fn fold_repeats<T: fmt::Display, K: Eq + std::hash::Hash>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    shown: &str,
    warnings: &mut Vec<String>,
) -> Vec<T> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    let mut repeated = 0usize;
    let mut first = None;
    for item in items {
        if seen.insert(key(&item)) {
            out.push(item);
        } else {
            repeated += 1;
            first.get_or_insert_with(|| item.to_string());
        }
    }
    if let Some(first) = first {
        warnings.push(format!(
            "{shown} repeats entries {repeated} time{} (first: {first}); each gets one rule",
            if repeated == 1 { "" } else { "s" }
        ));
    }
    out
}
