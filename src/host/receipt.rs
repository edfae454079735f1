//! The install receipt: a JSON file (mode 0600, default
//! `/var/lib/tproxyctl/receipt.json`) recording what an install put on the
//! host — configuration, kuma-dp UID, backend and executables per family, the
//! exact rules as iptables-save prints them, tables and chains we created,
//! whether `::6` was added to loopback, and the firewalld entries written — so
//! that uninstall, status, verify and the forwarder agree on one truth.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::{Family, TableName};

pub const DEFAULT_PATH: &str = "/var/lib/tproxyctl/receipt.json";
pub const VERSION: u32 = 1;

/// iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Nft,
    Legacy,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Nft => "nft",
            Mode::Legacy => "legacy",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three executables of one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutablePaths {
    pub iptables: PathBuf,
    pub save: PathBuf,
    pub restore: PathBuf,
}

/// One rule as iptables-save prints it (`-A CHAIN …`, no counters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRule {
    pub chain: String,
    pub line: String,
    /// Inserted at the top of its chain (`-I`) rather than appended.
    #[serde(default)]
    pub inserted: bool,
}

/// What we own in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableReceipt {
    pub table: TableName,
    /// The table did not exist before the install.
    pub created: bool,
    /// Custom chains we created.
    pub chains: Vec<String>,
    /// Our rules in built-in or foreign chains and in our chains, in chain order.
    pub rules: Vec<SavedRule>,
}

/// What we own in one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyReceipt {
    pub family: Family,
    pub mode: Mode,
    pub executables: ExecutablePaths,
    /// The restore input that was applied (kumactl format, non-verbose);
    /// equal text means equal plan.
    pub applied: String,
    pub tables: Vec<TableReceipt>,
}

/// A firewalld direct.xml entry we wrote, as its XML element text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewalldReceipt {
    pub path: PathBuf,
    /// The file did not exist before the install.
    pub created: bool,
    pub entries: Vec<String>,
}

/// The whole receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub version: u32,
    pub tool: String,
    /// Seconds since the epoch.
    pub installed_at: u64,
    pub config: Config,
    /// The kuma-dp UID the rules exempt.
    pub uid: u32,
    pub loopback: String,
    /// DNS servers read from resolv.conf at install time (Q6).
    pub dns_servers: Vec<IpAddr>,
    pub families: Vec<FamilyReceipt>,
    /// We added `::6/128` to the loopback interface (it was not there).
    pub ipv6_loopback_added: bool,
    pub firewalld: Option<FirewalldReceipt>,
}

impl Receipt {
    pub fn family(&self, f: Family) -> Option<&FamilyReceipt> {
        self.families.iter().find(|r| r.family == f)
    }
}

/// The receipt path: flag or `TPROXYCTL_RECEIPT`, else the default.
pub fn path_or_default(p: Option<&Path>) -> PathBuf {
    p.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Reads the receipt; `Ok(None)` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<Receipt>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading receipt {}", path.display())),
    };
    let r: Receipt = serde_json::from_str(&text)
        .with_context(|| format!("receipt {} is not a tproxyctl receipt", path.display()))?;
    if r.version != VERSION {
        anyhow::bail!(
            "receipt {} has version {}, this tproxyctl reads version {VERSION}",
            path.display(),
            r.version
        );
    }
    Ok(Some(r))
}

/// Writes the receipt atomically (temp file in the same directory, 0600, rename).
pub fn store(path: &Path, receipt: &Receipt) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(receipt)?;
    write_atomic(path, text.as_bytes(), 0o600)
}

/// Replaces `path` with `data` atomically: a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("replacing {}", path.display())
    })?;
    Ok(())
}

/// Removes the receipt; absent is fine.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing receipt {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn store_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/receipt.json");
        assert!(load(&path).unwrap().is_none());
        let r = Receipt {
            version: VERSION,
            tool: "tproxyctl test".into(),
            installed_at: 1,
            config: Config::default(),
            uid: 5678,
            loopback: "lo".into(),
            dns_servers: vec!["10.0.0.2".parse().unwrap()],
            families: vec![FamilyReceipt {
                family: Family::Ipv4,
                mode: Mode::Nft,
                executables: ExecutablePaths {
                    iptables: "/usr/sbin/iptables-nft".into(),
                    save: "/usr/sbin/iptables-nft-save".into(),
                    restore: "/usr/sbin/iptables-nft-restore".into(),
                },
                applied: "* nat\nCOMMIT\n".into(),
                tables: vec![TableReceipt {
                    table: TableName::Nat,
                    created: true,
                    chains: vec!["KUMA_MESH_INBOUND".into()],
                    rules: vec![SavedRule {
                        chain: "PREROUTING".into(),
                        line: "-A PREROUTING -p tcp -j KUMA_MESH_INBOUND".into(),
                        inserted: false,
                    }],
                }],
            }],
            ipv6_loopback_added: false,
            firewalld: None,
        };
        store(&path, &r).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().unwrap(), r);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(load(&path).unwrap().is_none());
    }
}
