//! eBPF redirection mode (SPEC §10): the only Rust code that talks to the
//! BPF system call. [`maps`] turns a configuration into map contents,
//! [`object`] is the embedded object and its programs, [`loader`] loads,
//! fills, attaches and pins them as a transaction and removes exactly what
//! it pinned, [`preflight`] checks the kernel before anything changes,
//! [`cgroup`] finds the cgroup2 hierarchy, [`sys`] holds the raw `bpf(2)`
//! calls aya does not offer.

pub mod cgroup;
pub mod loader;
pub mod maps;
pub mod object;
pub mod preflight;
pub mod sys;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What an eBPF-mode install put on the host, as its receipt records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EbpfReceipt {
    /// SHA-256 of the object the programs were loaded from.
    pub object_sha256: String,
    pub bpffs: PathBuf,
    /// The install mounted the bpffs (uninstall unmounts it once empty).
    pub bpffs_mounted: bool,
    /// Directories made for that mount, removed with it.
    #[serde(default)]
    pub bpffs_dirs_created: Vec<PathBuf>,
    pub cgroup: PathBuf,
    /// The cgroup's id (its directory's inode) when attached.
    pub cgroup_id: u64,
    /// The network namespace the programs act in (cookie and inode).
    pub netns_cookie: u64,
    pub netns_ino: u64,
    /// What the maps hold.
    pub contents: maps::Contents,
    /// Links and maps pinned.
    pub pinned: loader::Pinned,
    /// The copy of the object written for inspection, when it was written.
    pub object_copy: Option<PathBuf>,
    /// The directory of that copy was created by the install.
    #[serde(default)]
    pub object_dir_created: bool,
}
