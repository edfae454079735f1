//! The few `bpf(2)` commands aya 0.14 does not offer, and the other kernel
//! facts the eBPF mode reads: `BPF_LINK_CREATE` + `BPF_OBJ_PIN` for a
//! cgroup-sockopt link (aya attaches it but cannot hand the link out to be
//! pinned), `BPF_OBJ_GET` and `BPF_OBJ_GET_INFO_BY_FD` to read pinned links
//! back (aya's `LinkInfo` does not say what a link is attached to), a
//! socket's network namespace cookie, and the bpffs / cgroup2 magic numbers.
//! Nothing here decides anything; `loader` and `preflight` do.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

// enum bpf_cmd (uapi/linux/bpf.h)
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// `BPF_CGROUP_GETSOCKOPT` in enum bpf_attach_type.
pub const ATTACH_CGROUP_GETSOCKOPT: u32 = 21;
/// enum bpf_link_type values `link_info` reports.
pub const LINK_TYPE_CGROUP: u32 = 3;
pub const LINK_TYPE_NETNS: u32 = 5;

/// `statfs.f_type` of a BPF filesystem and of cgroup2.
pub const BPF_FS_MAGIC: i64 = 0xcafe4a11;
pub const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;

/// `SO_NETNS_COOKIE` (asm-generic/socket.h, Linux 5.14).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// `union bpf_attr`, as much of it as these commands use (zero-filled).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn u64_at(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, zero-initialised bpf_attr prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_result(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as libc::c_int) }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `BPF_LINK_CREATE`: attaches `prog` to `target` (a cgroup directory) and
/// returns the link. Closing the last reference detaches it.
pub fn link_create(
    prog: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32_at(0, prog.as_raw_fd() as u32);
    a.u32_at(4, target.as_raw_fd() as u32);
    a.u32_at(8, attach_type);
    bpf(BPF_LINK_CREATE, &mut a).map(fd_result)
}

/// `BPF_OBJ_PIN`: makes `fd`'s object outlive this process at `path`.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    let mut a = Attr::new();
    a.u64_at(0, c.as_ptr() as u64);
    a.u32_at(8, fd.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut a).map(|_| ())
}

/// `BPF_OBJ_GET`: opens a pinned object.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let mut a = Attr::new();
    a.u64_at(0, c.as_ptr() as u64);
    bpf(BPF_OBJ_GET, &mut a).map(fd_result)
}

fn info_by_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut a = Attr::new();
    a.u32_at(0, fd.as_raw_fd() as u32);
    a.u32_at(4, buf.len() as u32);
    a.u64_at(8, buf.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).map(|_| ())
}

fn u32_of(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_of(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// What a link is: its id, its program, and what it is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    pub link_type: u32,
    /// A cgroup link's cgroup id (its directory's inode), or a netns
    /// link's namespace inode; 0 once the target is gone.
    pub target: u64,
    pub attach_type: u32,
}

/// `struct bpf_link_info` of a link.
pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let mut b = [0u8; 48];
    info_by_fd(fd, &mut b)?;
    let link_type = u32_of(&b, 0);
    let (target, attach_type) = match link_type {
        LINK_TYPE_CGROUP => (u64_of(&b, 16), u32_of(&b, 24)),
        LINK_TYPE_NETNS => (u32_of(&b, 16) as u64, u32_of(&b, 20)),
        _ => (0, 0),
    };
    Ok(LinkInfo {
        id: u32_of(&b, 4),
        prog_id: u32_of(&b, 8),
        link_type,
        target,
        attach_type,
    })
}

/// A program's name and tag (the kernel's hash of its instructions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    pub id: u32,
    pub name: String,
    pub tag: String,
}

/// `struct bpf_prog_info` of the program with this id.
pub fn prog_info_by_id(id: u32) -> io::Result<ProgInfo> {
    let mut a = Attr::new();
    a.u32_at(0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut a).map(fd_result)?;
    prog_info(fd.as_fd())
}

/// `BPF_LINK_GET_FD_BY_ID`: fails with ENOENT once the link is released.
pub fn link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32_at(0, id);
    bpf(BPF_LINK_GET_FD_BY_ID, &mut a).map(fd_result)
}

/// `struct bpf_prog_info` of a program fd.
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let mut b = [0u8; 232];
    info_by_fd(fd, &mut b)?;
    let name = &b[64..80];
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    Ok(ProgInfo {
        id: u32_of(&b, 4),
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
        tag: b[8..16].iter().map(|x| format!("{x:02x}")).collect(),
    })
}

/// The id of a map or program object (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn object_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut b = [0u8; 88];
    info_by_fd(fd, &mut b)?;
    Ok(u32_of(&b, 4))
}

/// The cookie of this process's network namespace, the value
/// `bpf_get_netns_cookie()` returns for its sockets.
pub fn netns_cookie() -> io::Result<u64> {
    let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None)?;
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: v and len are valid for the kernel to write.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// `statfs(2)`'s filesystem type of `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let s = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(s.filesystem_type().0 as i64)
}

/// Effective capabilities of this process (`CapEff` of /proc/self/status).
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_BPF: u32 = 39;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_cookie_is_stable_within_a_namespace() {
        // SO_NETNS_COOKIE is Linux 5.14+; older kernels answer ENOPROTOOPT.
        if let (Ok(a), Ok(b)) = (netns_cookie(), netns_cookie()) {
            assert_eq!(a, b);
            assert_ne!(a, 0);
        }
    }

    #[test]
    fn obj_get_of_a_missing_path_is_an_error() {
        assert!(obj_get(Path::new("/nonexistent/tproxyctl-pin")).is_err());
    }
}
