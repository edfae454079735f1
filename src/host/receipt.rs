//! The install receipt: a JSON file (mode 0600, default
//! `/var/lib/tproxyctl/receipt.json`) recording what an install put on the
//! host — configuration, kuma-dp UID, backend and executables per family, the
//! exact rules as iptables-save prints them, tables and chains we created,
//! whether `::6` was added to loopback, and the firewalld entries written — so
//! that uninstall, status, verify and the forwarder agree on one truth.
//!
//! It is also the run's journal: before an install changes anything, the
//! receipt is rewritten with a [`Pending`] record of everything the run may
//! add (rules, `::6`, firewalld entries). A run killed at any point leaves
//! that record, and the next install or uninstall treats what it lists as
//! ours — so it is finished or undone, never leaked. Writing it first also
//! proves the receipt can be written before any rule changes.
//!
//! Safety: the receipt names the executables uninstall runs as root, so it is
//! trusted only when root (or the user running tproxyctl) owns it and its
//! directory and nobody else can write them ([`check_trusted`]); new
//! directories are made 0700; files are replaced through a temporary file
//! created exclusively (`O_EXCL`, which also refuses to follow a planted
//! symlink) that is removed again whatever goes wrong ([`write_atomic`]).
//!
//! Format: the JSON contract of docs/json-output.md (camelCase keys,
//! `schemaVersion`). Receipts of tproxyctl 0.1.0 — `version: 1` instead of
//! `schemaVersion`, `uid`, `mode` and `builtin_created` for `kumaDpUid`,
//! `backend` and `builtinCreated`, kebab-case hook names — are read through
//! serde aliases, so uninstall keeps working after an upgrade; the next
//! write stores the current format.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::{Family, TableName};

pub const DEFAULT_PATH: &str = "/var/lib/tproxyctl/receipt.json";
/// The receipt's `schemaVersion` (see [`Receipt::version`]).
pub const VERSION: u32 = crate::render::json::schema_version::RECEIPT;

/// `--receipt none`: keep no state on the host (a read-only root, an init
/// container). Uninstall then finds the rules by the comment prefix and the
/// chain names, or by the configuration when comments are off.
pub const NONE: &str = "none";

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
#[serde(rename_all = "camelCase")]
pub struct SavedRule {
    pub chain: String,
    pub line: String,
    /// Inserted at the top of its chain (`-I`) rather than appended.
    #[serde(default)]
    pub inserted: bool,
}

/// What we own in one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableReceipt {
    pub table: TableName,
    /// The table did not exist before the install.
    pub created: bool,
    /// Custom chains we created.
    pub chains: Vec<String>,
    /// Built-in chains the install made exist in a table that existed
    /// without them (nft creates base chains on demand); uninstall removes
    /// them once they are empty again.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        alias = "builtin_created"
    )]
    pub builtin_created: Vec<String>,
    /// Our rules in built-in or foreign chains and in our chains, in chain order.
    pub rules: Vec<SavedRule>,
}

/// What we own in one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyReceipt {
    pub family: Family,
    /// The iptables backend (`backend`; `mode` in tproxyctl 0.1.0).
    #[serde(rename = "backend", alias = "mode")]
    pub mode: Mode,
    pub executables: ExecutablePaths,
    /// The restore input that was applied (kumactl format, non-verbose);
    /// equal text means equal plan.
    pub applied: String,
    pub tables: Vec<TableReceipt>,
}

/// A firewalld direct.xml entry we wrote, as its XML element text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewalldReceipt {
    pub path: PathBuf,
    /// The file did not exist before the install.
    pub created: bool,
    pub entries: Vec<String>,
    /// The file's text before the first install, when it held no entries
    /// (empty, blank, `<direct/>`): what uninstall puts back byte for byte
    /// once our entries are gone and nobody added others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

/// What a run that has not finished may have put on the host (the journal;
/// see the module comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// `install`.
    pub operation: String,
    pub pid: u32,
    /// Seconds since the epoch.
    pub started_at: u64,
    /// Per family, the tables and chains it creates and the rules it adds
    /// that carry no mark of ours (no comment, no jump to our chains), as
    /// the kernel prints them; marked rules are recognised without a list.
    pub families: Vec<FamilyReceipt>,
    /// It adds `::6` to loopback (which was not there).
    pub ipv6_loopback: bool,
    /// The firewalld entries it writes.
    pub firewalld: Option<FirewalldReceipt>,
}

/// The whole receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// `schemaVersion` ([`VERSION`]); tproxyctl 0.1.0 wrote `version: 1`,
    /// whose format this one reads through aliases.
    #[serde(rename = "schemaVersion", alias = "version")]
    pub version: u32,
    pub tool: String,
    /// Seconds since the epoch.
    pub installed_at: u64,
    pub config: Config,
    /// The kuma-dp UID the rules exempt (`kumaDpUid`; `uid` in 0.1.0).
    #[serde(rename = "kumaDpUid", alias = "uid")]
    pub uid: u32,
    pub loopback: String,
    /// DNS servers read from resolv.conf at install time (Q6).
    pub dns_servers: Vec<IpAddr>,
    pub families: Vec<FamilyReceipt>,
    /// We added `::6/128` to the loopback interface (it was not there).
    pub ipv6_loopback_added: bool,
    pub firewalld: Option<FirewalldReceipt>,
    /// A run that started from this receipt and has not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// An eBPF-mode install (then `families` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebpf: Option<crate::ebpf::EbpfReceipt>,
}

impl Receipt {
    pub fn family(&self, f: Family) -> Option<&FamilyReceipt> {
        self.families.iter().find(|r| r.family == f)
    }

    /// Every record of `f` that may name rules of ours on the host: the
    /// installed one and the one of an unfinished run.
    pub fn family_records(&self, f: Family) -> impl Iterator<Item = &FamilyReceipt> {
        self.families
            .iter()
            .chain(self.pending.iter().flat_map(|p| p.families.iter()))
            .filter(move |r| r.family == f)
    }

    /// Every family record, installed and unfinished.
    pub fn all_records(&self) -> impl Iterator<Item = &FamilyReceipt> {
        self.families
            .iter()
            .chain(self.pending.iter().flat_map(|p| p.families.iter()))
    }

    /// `::6` may be ours: recorded as added, or an unfinished run was adding it.
    pub fn ipv6_loopback_ours(&self) -> bool {
        self.ipv6_loopback_added || self.pending.as_ref().is_some_and(|p| p.ipv6_loopback)
    }

    /// The firewalld entries that may be ours, installed and unfinished.
    pub fn firewalld_records(&self) -> impl Iterator<Item = &FirewalldReceipt> {
        self.firewalld
            .iter()
            .chain(self.pending.iter().flat_map(|p| p.firewalld.iter()))
    }

    /// A warning about an unfinished run, if there was one.
    pub fn pending_note(&self, path: &Path) -> Option<String> {
        self.pending.as_ref().map(|p| {
            format!(
                "the receipt {} records an {} (PID {}) that did not finish; the rules, ::6 and firewalld entries it may have added are treated as ours",
                path.display(),
                p.operation,
                p.pid
            )
        })
    }
}

/// The receipt path: flag or `TPROXYCTL_RECEIPT`, else the default.
pub fn path_or_default(p: Option<&Path>) -> PathBuf {
    p.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// `--receipt none`: no receipt is read or written.
pub fn is_none(path: &Path) -> bool {
    path.as_os_str() == NONE
}

/// What was found at the receipt path.
#[derive(Debug)]
pub enum Loaded {
    /// No receipt (or `--receipt none`).
    Missing,
    Found(Box<Receipt>),
    /// A file that cannot be read as a receipt: why.
    Unreadable(String),
}

impl Loaded {
    pub fn receipt(&self) -> Option<&Receipt> {
        match self {
            Loaded::Found(r) => Some(r),
            _ => None,
        }
    }

    pub fn into_receipt(self) -> Option<Receipt> {
        match self {
            Loaded::Found(r) => Some(*r),
            _ => None,
        }
    }
}

/// Reads the receipt, telling a missing file from a damaged one. A receipt
/// that is not safe to trust ([`check_trusted`]) is an error.
pub fn read(path: &Path) -> anyhow::Result<Loaded> {
    if is_none(path) {
        return Ok(Loaded::Missing);
    }
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        // No file there (a path that cannot hold one is found out when the
        // receipt is written, before any rule changes).
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(Loaded::Missing);
        }
        Err(e) => return Err(e).with_context(|| format!("reading receipt {}", path.display())),
    };
    check_trusted(path)?;
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|e| format!("not UTF-8 ({e})"))
        .and_then(|t| serde_json::from_str::<Receipt>(t).map_err(|e| e.to_string()));
    Ok(match parsed {
        Ok(r) if r.version != VERSION => Loaded::Unreadable(format!(
            "it has schemaVersion {}, this tproxyctl reads schemaVersion {VERSION}{}",
            r.version,
            if r.version > VERSION {
                " (it was written by a newer tproxyctl: uninstall with that one)"
            } else {
                ""
            }
        )),
        Ok(r) => Loaded::Found(Box::new(r)),
        Err(why) => Loaded::Unreadable(format!("it is not a tproxyctl receipt ({why})")),
    })
}

/// Reads the receipt; `Ok(None)` when there is none, an error when it is
/// damaged or not safe to trust.
pub fn load(path: &Path) -> anyhow::Result<Option<Receipt>> {
    match read(path)? {
        Loaded::Missing => Ok(None),
        Loaded::Found(r) => Ok(Some(*r)),
        Loaded::Unreadable(why) => bail!("receipt {} cannot be used: {why}", path.display()),
    }
}

/// Owners a state file may have: root, or the user running tproxyctl.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// The directory a file lives in.
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Refuses a state file another user could have written: the file (not
/// followed if it is a symlink) and its directory must be owned by root (or
/// the user running tproxyctl) and not writable by group or others. A
/// world-writable directory with the sticky bit (`/tmp`) is accepted: there
/// only a file's owner can replace or remove it.
pub fn check_trusted(path: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "refusing to use {}: it is a symbolic link; point --receipt at the file itself",
            path.display()
        );
    }
    let mode = meta.permissions().mode();
    if !trusted_owner(meta.uid()) || mode & 0o022 != 0 {
        bail!(
            "refusing to use {}: it is owned by UID {} with mode {:o}; only root may own or write it (it names programs uninstall runs as root). Check who changed it, then fix it with: chown root {0} && chmod 600 {0}",
            path.display(),
            meta.uid(),
            mode & 0o7777
        );
    }
    check_trusted_dir(parent_dir(path))
}

/// The directory half of [`check_trusted`].
pub fn check_trusted_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mode = meta.permissions().mode();
    let sticky = mode & 0o1000 != 0;
    if !trusted_owner(meta.uid()) || (mode & 0o022 != 0 && !sticky) {
        bail!(
            "refusing to use a state file in {}: the directory is owned by UID {} with mode {:o}, so another user could replace the file; use a directory only root can write",
            dir.display(),
            meta.uid(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Creates the receipt's directory (0700, parents too) if needed and checks
/// it can hold a trusted receipt.
pub fn prepare_dir(path: &Path) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    check_trusted_dir(dir)
}

/// Writes the receipt atomically (0600), creating its directory (0700).
///
/// It is synced to disk when it records firewalld entries, the one change
/// of ours that survives a reboot. Rules and `::6` do not: after a power
/// loss they are gone whatever the receipt says (and a receipt that did not
/// make it to disk is handled as missing, damaged or stale). Against a
/// killed process — the crash the journal is for — a written file is
/// already durable: the page cache outlives the process. Syncing costs
/// tens of milliseconds on a busy disk, which the default install's budget
/// (well under 100 ms) has no room for.
pub fn store(path: &Path, receipt: &Receipt) -> anyhow::Result<()> {
    prepare_dir(path)?;
    if std::fs::symlink_metadata(path).is_ok() {
        check_trusted(path)?;
    }
    let text = serde_json::to_string_pretty(receipt)?;
    let sync = receipt.firewalld_records().next().is_some();
    write_atomic_with(path, text.as_bytes(), 0o600, sync)
        .with_context(|| format!("writing the receipt {}", path.display()))
}

/// Replaces `path` with `data` atomically and durably (see
/// [`write_atomic_with`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    write_atomic_with(path, data, mode, true)
}

/// Replaces `path` with `data` atomically: a temporary file beside it,
/// created exclusively with `mode` (never an existing file or a planted
/// symlink), written (and with `sync` synced), renamed over `path` (and with
/// `sync` the directory synced). On any failure (a full disk included) the
/// temporary file is removed and `path` is as it was.
pub fn write_atomic_with(path: &Path, data: &[u8], mode: u32, sync: bool) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // The umask may have taken bits away.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|_| tmp.write_all(data))
        .and_then(|_| {
            if sync {
                tmp.as_file().sync_all()
            } else {
                Ok(())
            }
        })
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    if sync && let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the receipt; absent is fine.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    if is_none(path) {
        return Ok(());
    }
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
                    builtin_created: vec![],
                    rules: vec![SavedRule {
                        chain: "PREROUTING".into(),
                        line: "-A PREROUTING -p tcp -j KUMA_MESH_INBOUND".into(),
                        inserted: false,
                    }],
                }],
            }],
            ipv6_loopback_added: false,
            firewalld: None,
            pending: None,
            ebpf: None,
        };
        store(&path, &r).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().unwrap(), r);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(load(&path).unwrap().is_none());
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700, "new state directories are 0700");
        assert!(matches!(read(Path::new(NONE)).unwrap(), Loaded::Missing));
    }

    #[test]
    fn damaged_receipts_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipt.json");
        std::fs::write(&path, "{\"version\": 1, \"tool\": \"tpr").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        match read(&path).unwrap() {
            Loaded::Unreadable(why) => assert!(why.contains("not a tproxyctl receipt"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(load(&path).is_err());
    }

    #[test]
    fn receipts_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receipt.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.contains("refusing") && e.contains("666"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.contains("directory"), "{e}");
        // a sticky world-writable directory (/tmp) is fine
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        read(&path).unwrap();
        // a symlink is not followed
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = format!("{:#}", read(&link).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn atomic_writes_never_follow_planted_links_or_leave_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // whatever name a temporary file could get, a link planted there is
        // not followed: the file is created exclusively under a fresh name
        for i in 0..50 {
            let _ =
                std::os::unix::fs::symlink(&victim, dir.path().join(format!(".r.json.{i}.tmp")));
        }
        let path = dir.path().join("r.json");
        write_atomic(&path, b"{}", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
