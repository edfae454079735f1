//! The lock that serialises runs which change the host (install and
//! uninstall): `flock(2)` on files in `/run/tproxyctl/` (a root-only 0700
//! directory), held from before the first read of the rules and the receipt
//! until the run has written its receipt or rolled back.
//!
//! What it protects, and so what it is keyed by:
//! - the rules, which the kernel keeps per **network namespace**: one lock
//!   per namespace, named after the namespace's identity (the device and
//!   inode of `/proc/self/ns/net`), so runs in unrelated namespaces — the
//!   test suite's, or containers' — never wait for each other, and two runs
//!   in one namespace always do, whatever receipts they name;
//! - the **receipt**, a file that two namespaces could share: one lock per
//!   receipt path.
//!
//! Locks are taken in name order (no deadlock between two runs that need
//! the same two), with a bounded wait (`--wait`), and `flock` is released by
//! the kernel when a run dies, so kill -9 never leaves a stale lock. A lock
//! file is removed by its holder before it unlocks; a waiter that then gets
//! the lock on the removed file notices (the path no longer names its file)
//! and tries again, so the directory does not fill up with one file per
//! namespace ever used.
//!
//! Nothing here knows about iptables: another mode that changes per-host or
//! per-namespace state (eBPF) takes the same [`HostLock`], adding its own
//! [`LockKey::Named`] keys if it guards more (a cgroup, a pin directory).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

/// Where the lock files live.
pub const LOCK_DIR: &str = "/run/tproxyctl";

/// One thing a run must have to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockKey {
    /// The network namespace this process runs in.
    Netns,
    /// A receipt file (by absolute path).
    Receipt(PathBuf),
    /// Anything else another mode guards; the name must be a file name.
    Named(String),
}

impl LockKey {
    /// The lock file's name, and how a person would call the thing.
    fn file_and_label(&self) -> anyhow::Result<(String, String)> {
        Ok(match self {
            LockKey::Netns => {
                let m = std::fs::metadata("/proc/self/ns/net")
                    .context("reading the network namespace of this process")?;
                (
                    format!("netns-{}-{}.lock", m.dev(), m.ino()),
                    format!("the network namespace net:[{}]", m.ino()),
                )
            }
            LockKey::Receipt(p) => {
                let abs = absolute(p);
                (
                    format!(
                        "receipt-{:016x}.lock",
                        fnv1a(abs.as_os_str().as_encoded_bytes())
                    ),
                    format!("the receipt {}", abs.display()),
                )
            }
            LockKey::Named(n) => {
                if n.is_empty() || n.contains('/') || n.starts_with('.') {
                    bail!("invalid lock name {n:?}");
                }
                (format!("{n}.lock"), n.clone())
            }
        })
    }
}

/// A path made absolute against the working directory (no symlinks resolved:
/// the file may not exist yet).
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// FNV-1a, 64 bits: a stable name for a path (the same in every build).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Locks held until dropped.
#[derive(Debug)]
pub struct HostLock {
    held: Vec<Held>,
}

#[derive(Debug)]
struct Held {
    path: PathBuf,
    lock: Flock<File>,
}

impl Drop for HostLock {
    fn drop(&mut self) {
        crate::host::exec::release_locks_in_committing_children(&self.fds());
        // Remove while still locked (see the module comment), then unlock.
        for h in self.held.drain(..).rev() {
            let _ = std::fs::remove_file(&h.path);
            drop(h.lock);
        }
    }
}

/// Creates the lock directory (0700) or checks an existing one: a directory
/// that root (or the user running tproxyctl) owns and nobody else may write.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !m.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let owner_ok = m.uid() == 0 || m.uid() == nix::unistd::geteuid().as_raw();
    if !owner_ok || m.permissions().mode() & 0o022 != 0 {
        bail!(
            "{} is not safe to use: it must be a directory owned by root that only root can write (owner UID {}, mode {:o})",
            dir.display(),
            m.uid(),
            m.permissions().mode() & 0o7777
        );
    }
    Ok(())
}

impl HostLock {
    /// The descriptors of the lock files held.
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.held.iter().map(|h| h.lock.as_raw_fd()).collect()
    }

    /// Takes every lock of `keys`, waiting at most `wait` in all (zero: one
    /// attempt). `what` names the run in the lock file ("install").
    pub fn acquire(keys: &[LockKey], wait: Duration, what: &str) -> anyhow::Result<HostLock> {
        Self::acquire_in(Path::new(LOCK_DIR), keys, wait, what)
    }

    /// [`HostLock::acquire`] with the lock files in `dir`.
    pub fn acquire_in(
        dir: &Path,
        keys: &[LockKey],
        wait: Duration,
        what: &str,
    ) -> anyhow::Result<HostLock> {
        ensure_private_dir(dir)?;
        let mut named: Vec<(String, String)> = keys
            .iter()
            .map(LockKey::file_and_label)
            .collect::<anyhow::Result<_>>()?;
        named.sort();
        named.dedup();
        let deadline = Instant::now() + wait;
        let mut lock = HostLock { held: Vec::new() };
        for (file, label) in named {
            let path = dir.join(&file);
            let held = take(&path, deadline, what).with_context(|| {
                format!(
                    "{label} is in use by another tproxyctl run that changes it; waited {} (--wait) for its lock {}",
                    humantime::format_duration(wait),
                    path.display()
                )
            })?;
            lock.held.push(held);
        }
        crate::host::exec::hold_locks_in_committing_children(&lock.fds());
        Ok(lock)
    }
}

/// Takes one lock file, polling until `deadline`.
fn take(path: &Path, deadline: Instant, what: &str) -> anyhow::Result<Held> {
    let mut pause = Duration::from_millis(2);
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                // The holder before us may have removed the file after we
                // opened it: then this lock guards nothing; start over.
                let ours = lock.metadata()?;
                match std::fs::symlink_metadata(path) {
                    Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                        let note = format!("{} {what}\n", std::process::id());
                        let _ = lock.set_len(0);
                        let _ = lock.write_all(note.as_bytes());
                        return Ok(Held {
                            path: path.to_path_buf(),
                            lock,
                        });
                    }
                    _ => continue,
                }
            }
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                if Instant::now() >= deadline {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    if holder.is_empty() {
                        bail!("timed out waiting for the lock");
                    }
                    bail!(
                        "timed out waiting for the lock held by PID/run {holder:?} (or by an iptables-restore it started, finishing its commit)"
                    );
                }
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err((_, errno)) => {
                return Err(std::io::Error::from(errno))
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn a_second_run_waits_then_gives_up_naming_the_holder() {
        let d = dir();
        let keys = [LockKey::Netns];
        let first = HostLock::acquire_in(d.path(), &keys, Duration::ZERO, "install").unwrap();
        let t0 = Instant::now();
        let err = HostLock::acquire_in(d.path(), &keys, Duration::from_millis(200), "uninstall")
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(t0.elapsed() >= Duration::from_millis(200), "waited");
        assert!(msg.contains("network namespace"), "{msg}");
        assert!(msg.contains("timed out"), "{msg}");
        assert!(
            msg.contains(&format!("{} install", std::process::id())),
            "{msg}"
        );
        drop(first);
        // released: taken at once, and the file was removed by its holder
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let again = HostLock::acquire_in(d.path(), &keys, Duration::ZERO, "uninstall").unwrap();
        drop(again);
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_ends() {
        let d = dir();
        let keys = [LockKey::Receipt("/var/lib/tproxyctl/receipt.json".into())];
        let first = HostLock::acquire_in(d.path(), &keys, Duration::ZERO, "install").unwrap();
        let path = d.path().to_path_buf();
        let k2 = keys.clone();
        let waiter = std::thread::spawn(move || {
            HostLock::acquire_in(&path, &k2, Duration::from_secs(10), "install").map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn an_unsafe_lock_directory_is_refused() {
        let d = dir();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = HostLock::acquire_in(d.path(), &[LockKey::Netns], Duration::ZERO, "install")
            .unwrap_err();
        assert!(format!("{err:#}").contains("not safe"), "{err:#}");
    }

    #[test]
    fn keys_name_distinct_files() {
        let a = LockKey::Receipt("/a/receipt.json".into())
            .file_and_label()
            .unwrap();
        let b = LockKey::Receipt("/b/receipt.json".into())
            .file_and_label()
            .unwrap();
        assert_ne!(a.0, b.0);
        assert!(LockKey::Named("../x".into()).file_and_label().is_err());
    }
}
