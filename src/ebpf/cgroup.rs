//! Where the cgroup programs attach: the cgroup2 hierarchy's mount point,
//! found in `/proc/self/mountinfo` (it is not always `/sys/fs/cgroup`:
//! hybrid hosts mount it at `/sys/fs/cgroup/unified`), and whether a path is
//! a cgroup root — attaching there redirects every process of the machine,
//! which tproxyctl refuses unless the configuration says so explicitly.

use std::path::{Path, PathBuf};

/// Mount points of the cgroup2 filesystem, in mountinfo order.
pub fn cgroup2_mounts_in(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mountpoint options... - fstype source opts`
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup2" {
                return None;
            }
            let mount = left.split_whitespace().nth(4)?;
            Some(PathBuf::from(unescape(mount)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host's cgroup2 mount point (the first one mounted).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup2_mounts_in(&text).into_iter().next()
}

/// True when `path` is the root of a cgroup2 hierarchy: a cgroup2 mount
/// point, or a cgroup without `cgroup.type` (only the root lacks it).
pub fn is_root(path: &Path) -> bool {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| cgroup2_mounts_in(&t))
        .unwrap_or_default();
    mounts.contains(&canon) || !canon.join("cgroup.type").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_wherever_it_is_mounted() {
        let hybrid = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        assert_eq!(
            cgroup2_mounts_in(hybrid),
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        );
        let unified = "31 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mounts_in(unified),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
        assert!(cgroup2_mounts_in("garbage\n\n1 2 3\n").is_empty());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        let line = "40 25 0:30 / /mnt/my\\040cgroup rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mounts_in(line),
            vec![PathBuf::from("/mnt/my cgroup")]
        );
    }

    #[test]
    fn the_mount_point_is_a_root() {
        if let Some(m) = cgroup2_mount() {
            assert!(is_root(&m));
        }
    }
}
