//! Reading configuration sources — `--config` files (YAML or JSON, `-` for
//! stdin), `KUMA_TRANSPARENT_PROXY_*` variables and flags — into flat layers
//! of `(path, value, source)` leaves, and merging them. Flattening along the
//! schema gives kumactl's semantics for free: objects merge key by key, a list
//! is one leaf and so replaces, and the last layer wins.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use serde_yaml::Value;

use super::schema::{self, EXECUTABLE_NAMES, Kind};
use crate::error::UsageError;

/// Where a value came from; used in every error message about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(String),
    Env(String),
    Flag(String),
}

impl Source {
    /// True for a value read from a configuration file (YAML or JSON), where
    /// kumactl's JSON decoding decides which types a key accepts.
    pub fn is_file(&self) -> bool {
        matches!(self, Source::File(_))
    }

    /// How to name a key set by this source in a message.
    pub fn describe(&self, path: &str) -> String {
        match self {
            Source::File(f) => format!("'{path}' in {f}"),
            Source::Env(v) => format!("environment variable {v}"),
            Source::Flag(f) => format!("--{f}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{p}"),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(n) => write!(f, "--{n}"),
        }
    }
}

/// One set value.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub value: Value,
    pub source: Source,
}

/// The merged view: path → last value set.
#[derive(Debug, Default, Clone)]
pub struct Merged {
    pub leaves: BTreeMap<String, Leaf>,
}

impl Merged {
    pub fn set(&mut self, path: impl Into<String>, value: Value, source: Source) {
        self.leaves.insert(path.into(), Leaf { value, source });
    }

    /// Applies a layer on top.
    pub fn extend(&mut self, layer: Vec<(String, Leaf)>) {
        for (path, leaf) in layer {
            self.leaves.insert(path, leaf);
        }
    }

    pub fn get(&self, path: &str) -> Option<&Leaf> {
        self.leaves.get(path)
    }

    /// All leaves whose path starts with `prefix.`.
    pub fn children<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Leaf)> {
        self.leaves.iter().filter_map(move |(p, l)| {
            p.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|rest| (rest, l))
        })
    }
}

/// The most a configuration source may hold. A full configuration is a few
/// kilobytes, and every list at its [`MAX_LIST_ENTRIES`] bound still fits.
/// The YAML parser holds every event of a document before it builds values
/// (~70 bytes of memory per byte of a list-heavy file, measured), so this
/// bound is what keeps a hostile or runaway file (`--config /dev/zero`)
/// from exhausting memory, while a list over the entry bound (3,000,000
/// ports is ~9 MB) is still parsed far enough to be refused by its key.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The most entries one list key (ports, IPs, UID exclusions, networks) may
/// hold, whichever source sets it: one per port number. Every entry becomes
/// at least one rule; a longer list can only be a mistake (a port list that
/// long repeats ports), and is refused naming the key.
pub const MAX_LIST_ENTRIES: usize = 65535;

/// Reads one `--config` value: a path, or `-` for stdin. The text must be
/// UTF-8 and at most [`MAX_CONFIG_BYTES`].
pub fn read_config_source(name: &str, stdin: &mut dyn Read) -> Result<String, UsageError> {
    let shown = if name == "-" { "stdin" } else { name };
    let mut bytes = Vec::new();
    if name == "-" {
        stdin
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                UsageError::new(format!("unable to read configuration from stdin: {e}"))
            })?;
    } else {
        std::fs::File::open(PathBuf::from(name))
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| {
                UsageError::new(format!("unable to access configuration file '{name}': {e}"))
            })?;
    }
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(UsageError::new(format!(
            "configuration file {shown} is larger than {} MiB; a configuration is a few kilobytes",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        UsageError::new(format!(
            "configuration file {shown} is not UTF-8 text (byte 0x{:02X} at offset {at}); YAML and JSON files must be UTF-8",
            e.as_bytes()[at]
        ))
    })
}

/// Parses a config document (YAML, which includes JSON) and flattens it.
/// Unknown keys become warnings that name the key and the file.
pub fn file_layer(
    name: &str,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Leaf)>, UsageError> {
    let shown = if name == "-" { "stdin" } else { name };
    let source = Source::File(shown.to_string());
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_yaml::from_str(text).map_err(|e| {
        UsageError::new(format!(
            "configuration file {shown} is not valid YAML or JSON: {e}"
        ))
    })?;
    let mut out = Vec::new();
    match value {
        Value::Null => {}
        Value::Mapping(_) => flatten(&value, "", &source, &mut out, warnings)?,
        other => {
            return Err(UsageError::new(format!(
                "configuration file {shown} must hold an object at the top level, found {}",
                kind_name(&other)
            )));
        }
    }
    Ok(out)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "an object",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The child names a path can have, derived from the schema.
fn children_of(prefix: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = schema::KEYS
        .iter()
        .filter_map(|k| {
            let rest = if prefix.is_empty() {
                Some(k.path)
            } else {
                k.path
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('.'))
            }?;
            Some(rest.split('.').next().unwrap_or(rest))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn flatten(
    value: &Value,
    prefix: &str,
    source: &Source,
    out: &mut Vec<(String, Leaf)>,
    warnings: &mut Vec<String>,
) -> Result<(), UsageError> {
    let Value::Mapping(map) = value else {
        return Ok(());
    };
    let known = children_of(prefix);
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            warnings.push(format!(
                "ignoring a non-string key under '{}' in {source}",
                if prefix.is_empty() { "<top>" } else { prefix }
            ));
            continue;
        };
        // encoding/json (behind kumactl's YAML loader) matches field names
        // case-insensitively; so do we, preferring an exact match.
        let matched = known
            .iter()
            .find(|n| **n == name)
            .or_else(|| known.iter().find(|n| n.eq_ignore_ascii_case(name)));
        let Some(canonical) = matched else {
            warnings.push(format!(
                "unknown key '{}' in {source} (ignored)",
                join(prefix, name)
            ));
            continue;
        };
        let path = join(prefix, canonical);
        if let Some(key) = schema::key_at(&path) {
            if key.kind == Kind::Executables {
                executables_leaves(v, &path, source, out, warnings)?;
            } else if !v.is_null() || is_list(key.kind) {
                out.push((
                    path,
                    Leaf {
                        value: v.clone(),
                        source: source.clone(),
                    },
                ));
            }
        } else if schema::is_object(&path) {
            match v {
                Value::Mapping(_) => flatten(v, &path, source, out, warnings)?,
                Value::Null => {}
                other => {
                    return Err(UsageError::new(format!(
                        "invalid value for {}: expected an object, found {}",
                        source.describe(&path),
                        kind_name(other)
                    )));
                }
            }
        }
    }
    Ok(())
}

fn is_list(kind: Kind) -> bool {
    matches!(kind, Kind::Ports | Kind::StringList)
}

fn executables_leaves(
    v: &Value,
    path: &str,
    source: &Source,
    out: &mut Vec<(String, Leaf)>,
    warnings: &mut Vec<String>,
) -> Result<(), UsageError> {
    match v {
        Value::Null => Ok(()),
        Value::Mapping(map) => {
            for (k, val) in map {
                let name = k.as_str().unwrap_or_default();
                let Some(canonical) = EXECUTABLE_NAMES
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(name))
                else {
                    warnings.push(format!(
                        "unknown key '{path}.{name}' in {source} (ignored; expected one of {})",
                        EXECUTABLE_NAMES.join(", ")
                    ));
                    continue;
                };
                let text = match val {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => {
                        return Err(UsageError::new(format!(
                            "invalid value for {}: expected a path, found {}",
                            source.describe(&format!("{path}.{canonical}")),
                            kind_name(other)
                        )));
                    }
                };
                // An empty path means "not configured" (the ConfigMap default).
                if !text.is_empty() {
                    out.push((
                        format!("{path}.{canonical}"),
                        Leaf {
                            value: Value::String(text),
                            source: source.clone(),
                        },
                    ));
                }
            }
            Ok(())
        }
        Value::String(s) => {
            let parsed = parse_executables(s).map_err(|why| {
                UsageError::new(format!(
                    "invalid value '{s}' for {}: {why}",
                    source.describe(path)
                ))
            })?;
            for (name, p) in parsed {
                out.push((
                    format!("{path}.{name}"),
                    Leaf {
                        value: Value::String(p),
                        source: source.clone(),
                    },
                ));
            }
            Ok(())
        }
        other => Err(UsageError::new(format!(
            "invalid value for {}: expected an object of name: path, found {}",
            source.describe(path),
            kind_name(other)
        ))),
    }
}

/// Parses `name:path[,name:path...]`.
pub fn parse_executables(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, path)) = part.split_once(':') else {
            return Err(format!(
                "'{part}' is not name:path (names: {})",
                EXECUTABLE_NAMES.join(", ")
            ));
        };
        let name = name.trim();
        let Some(canonical) = EXECUTABLE_NAMES.iter().find(|n| **n == name) else {
            return Err(format!(
                "unknown executable name '{name}' (expected one of {})",
                EXECUTABLE_NAMES.join(", ")
            ));
        };
        if path.trim().is_empty() {
            return Err(format!("empty path for '{name}'"));
        }
        out.push((canonical.to_string(), path.trim().to_string()));
    }
    Ok(out)
}

/// The `KUMA_TRANSPARENT_PROXY_*` layer. `vars` is the process environment.
pub fn env_layer(
    vars: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Leaf)>, UsageError> {
    let mut out = Vec::new();
    for (name, raw) in vars {
        let Some(suffix) = name.strip_prefix(schema::ENV_PREFIX) else {
            continue;
        };
        let Some(key) = schema::KEYS.iter().find(|k| k.env == Some(suffix)) else {
            warnings.push(format!("unknown environment variable {name} (ignored)"));
            continue;
        };
        let source = Source::Env(name.clone());
        match key.kind {
            Kind::Executables => {
                let parsed = parse_executables(raw).map_err(|why| {
                    UsageError::new(format!("invalid value '{raw}' for {}: {why}", source))
                })?;
                for (n, p) in parsed {
                    out.push((
                        format!("{}.{n}", key.path),
                        Leaf {
                            value: Value::String(p),
                            source: source.clone(),
                        },
                    ));
                }
            }
            Kind::StringList => {
                let items = split_env_list(key.path, raw);
                out.push((
                    key.path.to_string(),
                    Leaf {
                        value: Value::Sequence(items.into_iter().map(Value::String).collect()),
                        source,
                    },
                ));
            }
            _ => out.push((
                key.path.to_string(),
                Leaf {
                    value: Value::String(raw.clone()),
                    source,
                },
            )),
        }
    }
    Ok(out)
}

/// envconfig splits list variables on commas. UID exclusion entries contain
/// commas themselves (`tcp:22,80:1000`), so for that key `;` separates entries
/// when present; without `;` the kumactl splitting applies.
fn split_env_list(path: &str, raw: &str) -> Vec<String> {
    let sep = if path.ends_with("excludePortsForUIDs") && raw.contains(';') {
        ';'
    } else {
        ','
    };
    // Like envconfig: pieces are kept as they are (a space or an empty piece
    // is then refused by the value's parser); an empty variable is an empty
    // list.
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(sep).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_follows_the_schema_and_warns_on_unknown_keys() {
        let mut w = Vec::new();
        let layer = file_layer(
            "/c.yaml",
            "redirect:\n  dns: {enabled: true, port: 7777, bogus: 1}\n  inbound:\n    excludePorts: [1, 2]\nipfamilymode: ipv4\nnope: 1\n",
            &mut w,
        )
        .unwrap();
        let paths: Vec<_> = layer.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "redirect.dns.enabled",
                "redirect.dns.port",
                "redirect.inbound.excludePorts",
                "ipFamilyMode"
            ]
        );
        assert_eq!(
            w,
            vec![
                "unknown key 'redirect.dns.bogus' in /c.yaml (ignored)",
                "unknown key 'nope' in /c.yaml (ignored)"
            ]
        );
    }

    #[test]
    fn json_is_accepted() {
        let mut w = Vec::new();
        let layer = file_layer("-", r#"{"redirect":{"inbound":{"port":1}}}"#, &mut w).unwrap();
        assert_eq!(layer.len(), 1);
        assert_eq!(layer[0].1.source, Source::File("stdin".into()));
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let mut w = Vec::new();
        let err = file_layer("/bad.yaml", "redirect: [\n", &mut w).unwrap_err();
        assert!(err.0.contains("/bad.yaml"), "{}", err.0);
    }

    #[test]
    fn executables_from_string_and_map() {
        let mut w = Vec::new();
        let layer = file_layer(
            "/c.yaml",
            "iptablesExecutables: {iptables: /a, iptables-save: '', foo: /x}\n",
            &mut w,
        )
        .unwrap();
        assert_eq!(layer.len(), 1);
        assert_eq!(layer[0].0, "iptablesExecutables.iptables");
        assert_eq!(w.len(), 1);
        assert!(parse_executables("iptables:/a,bogus:/b").is_err());
        assert_eq!(
            parse_executables("iptables:/a, iptables-save:/b").unwrap(),
            vec![
                ("iptables".to_string(), "/a".to_string()),
                ("iptables-save".to_string(), "/b".to_string())
            ]
        );
    }

    #[test]
    fn env_lists_split_on_commas_and_uid_entries_on_semicolons() {
        let mut w = Vec::new();
        let vars = vec![
            (
                "KUMA_TRANSPARENT_PROXY_REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_UIDS".to_string(),
                "tcp:22,80:1000;udp:53:1001".to_string(),
            ),
            (
                "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_IPS".to_string(),
                "10.0.0.1,10.0.0.2".to_string(),
            ),
            ("KUMA_TRANSPARENT_PROXY_NOPE".to_string(), "1".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let layer = env_layer(&vars, &mut w).unwrap();
        assert_eq!(layer.len(), 2);
        assert_eq!(
            layer[0].1.value,
            Value::Sequence(vec![
                Value::String("tcp:22,80:1000".into()),
                Value::String("udp:53:1001".into())
            ])
        );
        assert_eq!(
            layer[1].1.value,
            Value::Sequence(vec![
                Value::String("10.0.0.1".into()),
                Value::String("10.0.0.2".into())
            ])
        );
        assert_eq!(w.len(), 1);
    }
}
