//! Loading, attaching, pinning and removing the eBPF mode's objects, as a
//! transaction: every program is verified before the first attach, the maps
//! are filled before the first attach, links and maps are pinned under one
//! directory of the bpffs so they outlive the command, and any failure
//! unpins what was pinned and drops every file descriptor, which detaches
//! what was attached. Nothing else in tproxyctl loads or attaches programs.
//!
//! aya 0.14 loads the object and attaches every program but one: it can
//! attach a cgroup-sockopt program, but cannot hand that link out to be
//! pinned, so the getsockopt link is made with `BPF_LINK_CREATE` and pinned
//! with `BPF_OBJ_PIN` ([`super::sys`]).
//!
//! `TPROXYCTL_EBPF_FAIL_AT=<step>` (`load`, `fill`, `attach:<program>`,
//! `pin:<name>`) makes that step fail, and `abort:<step>` kills the process
//! there: the fault-injection points the kernel tests use to prove that a
//! failure half-way leaves nothing behind and that a killed run is cleaned up
//! by the next one.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, SockMap};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, CgroupSockopt, SkLookup, SockOps};
use serde::{Deserialize, Serialize};

use super::maps::{Contents, Net4, Net6, NetEntry, PortEntry, PortKey, TpConfig, UidRule};
use super::object::{self, Hook, Program};
use super::sys;

/// The directory under the bpffs that holds everything tproxyctl pins.
pub const OURS: &str = "tproxyctl";

/// A pinned link, as recorded in the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedLink {
    pub program: String,
    pub hook: Hook,
    pub path: PathBuf,
    pub link_id: u32,
    pub prog_id: u32,
    /// The kernel's tag of the loaded program.
    pub prog_tag: String,
}

/// A pinned map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinnedMap {
    pub name: String,
    pub path: PathBuf,
    pub id: u32,
}

/// What one install pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pinned {
    pub dir: PathBuf,
    pub links: Vec<PinnedLink>,
    pub maps: Vec<PinnedMap>,
}

pub fn fail_point(step: &str) -> anyhow::Result<()> {
    match std::env::var("TPROXYCTL_EBPF_FAIL_AT") {
        Ok(v) if v == step => bail!("failure injected at {step} (TPROXYCTL_EBPF_FAIL_AT)"),
        // `abort:<step>`: die there as kill -9 would, undoing nothing.
        Ok(v) if v.strip_prefix("abort:") == Some(step) => std::process::abort(),
        _ => Ok(()),
    }
}

/// An attached link not pinned yet: dropping it detaches it.
enum Link {
    Aya(FdLink),
    Raw(OwnedFd),
}

impl Link {
    fn pin(self, path: &Path) -> anyhow::Result<()> {
        match self {
            Link::Aya(l) => l
                .pin(path)
                .map(drop)
                .map_err(|e| anyhow!("pinning {}: {e}", path.display())),
            Link::Raw(fd) => sys::obj_pin(fd.as_fd(), path)
                .with_context(|| format!("pinning {}", path.display())),
        }
    }
}

/// Pins made so far, removed again unless the transaction completes.
struct Undo {
    pins: Vec<PathBuf>,
    dir: Option<PathBuf>,
    done: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for p in self.pins.iter().rev() {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Loads the object with maps sized for `contents` and fills them.
fn load_and_fill(contents: &Contents) -> anyhow::Result<aya::Ebpf> {
    fail_point("load")?;
    let n4 = contents.nets4().count().max(1) as u32;
    let n6 = contents.nets6().count().max(1) as u32;
    let np = contents.ports.len().max(1) as u32;
    let mut bpf = aya::EbpfLoader::new()
        .map_max_entries("tp_ports", np)
        .map_max_entries("tp_nets4", n4)
        .map_max_entries("tp_nets6", n6)
        .load(object::OBJECT)
        .context("loading the BPF object (creating its maps)")?;
    fail_point("fill")?;
    fill(&mut bpf, contents).context("filling the BPF maps")?;
    Ok(bpf)
}

fn map_mut<'a>(bpf: &'a mut aya::Ebpf, name: &str) -> anyhow::Result<&'a mut aya::maps::Map> {
    bpf.map_mut(name)
        .ok_or_else(|| anyhow!("the BPF object has no map {name}"))
}

fn fill(bpf: &mut aya::Ebpf, c: &Contents) -> anyhow::Result<()> {
    let mut cfg: Array<_, TpConfig> = Array::try_from(map_mut(bpf, "tp_config")?)?;
    cfg.set(0, c.config, 0)?;
    let mut ports: HashMap<_, PortKey, u8> = HashMap::try_from(map_mut(bpf, "tp_ports")?)?;
    for p in &c.ports {
        ports.insert(p.key(), 1, 0)?;
    }
    let mut nets4: LpmTrie<_, Net4, u8> = LpmTrie::try_from(map_mut(bpf, "tp_nets4")?)?;
    for k in c.nets4().filter_map(NetEntry::v4_key) {
        nets4.insert(&k, 1, 0)?;
    }
    let mut nets6: LpmTrie<_, Net6, u8> = LpmTrie::try_from(map_mut(bpf, "tp_nets6")?)?;
    for k in c.nets6().filter_map(NetEntry::v6_key) {
        nets6.insert(&k, 1, 0)?;
    }
    let mut rules: Array<_, UidRule> = Array::try_from(map_mut(bpf, "tp_uid_rules")?)?;
    for (i, r) in c.uid_rules.iter().enumerate() {
        rules.set(i as u32, r, 0)?;
    }
    Ok(())
}

fn program_mut<'a>(
    bpf: &'a mut aya::Ebpf,
    name: &str,
) -> anyhow::Result<&'a mut aya::programs::Program> {
    bpf.program_mut(name)
        .ok_or_else(|| anyhow!("the BPF object has no program {name}"))
}

/// Loads (verifies) one program; nothing is attached yet.
fn load_program(bpf: &mut aya::Ebpf, p: &Program) -> anyhow::Result<()> {
    let prog = program_mut(bpf, p.name)?;
    let r = match p.hook {
        Hook::SockOps => <&mut SockOps>::try_from(prog)?.load(),
        Hook::Getsockopt => <&mut CgroupSockopt>::try_from(prog)?.load(),
        Hook::SkLookup => <&mut SkLookup>::try_from(prog)?.load(),
        _ => <&mut CgroupSockAddr>::try_from(prog)?.load(),
    };
    r.map_err(|e| verifier_error(p, e))
}

/// The kernel's refusal, with the last lines of the verifier log.
fn verifier_error(p: &Program, e: aya::programs::ProgramError) -> anyhow::Error {
    let text = match &e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(4).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{io_error}; verifier: {}", tail.join(" | "))
        }
        other => other.to_string(),
    };
    anyhow!(
        "the kernel refuses program {} ({}): {text}",
        p.name,
        p.hook.name()
    )
}

/// Attaches one loaded program and takes its link.
fn attach_one(
    bpf: &mut aya::Ebpf,
    p: &Program,
    cgroup: &File,
    netns: &File,
) -> anyhow::Result<Link> {
    let prog = program_mut(bpf, p.name)?;
    let mode = CgroupAttachMode::Single;
    let link = match p.hook {
        Hook::SockOps => {
            let s = <&mut SockOps>::try_from(prog)?;
            let id = s.attach(cgroup, mode)?;
            Link::Aya(FdLink::try_from(s.take_link(id)?)?)
        }
        Hook::SkLookup => {
            let s = <&mut SkLookup>::try_from(prog)?;
            let id = s.attach(netns)?;
            Link::Aya(FdLink::from(s.take_link(id)?))
        }
        Hook::Getsockopt => {
            // aya's CgroupSockopt link cannot be taken out as an FdLink.
            let s = <&mut CgroupSockopt>::try_from(prog)?;
            let fd = s.fd()?;
            Link::Raw(
                sys::link_create(fd.as_fd(), cgroup.as_fd(), p.hook.attach_type())
                    .context("BPF_LINK_CREATE")?,
            )
        }
        _ => {
            let s = <&mut CgroupSockAddr>::try_from(prog)?;
            let id = s.attach(cgroup, mode)?;
            Link::Aya(FdLink::try_from(s.take_link(id)?)?)
        }
    };
    Ok(link)
}

/// Programs loaded (verified) with their maps filled, nothing attached:
/// dropping this frees them.
pub struct Loaded {
    bpf: aya::Ebpf,
    programs: Vec<&'static Program>,
    inbound_port: u16,
}

/// Programs loaded and attached but not pinned: dropping this detaches
/// them and frees their maps.
pub struct Attached {
    bpf: aya::Ebpf,
    links: Vec<(Program, Link)>,
}

/// Creates the maps holding `contents` and loads every program of
/// `programs` (the verifier's verdict); changes nothing on the host.
pub fn load(contents: &Contents, programs: &[&'static Program]) -> anyhow::Result<Loaded> {
    let mut bpf = load_and_fill(contents)?;
    for p in programs {
        load_program(&mut bpf, p)?;
    }
    Ok(Loaded {
        bpf,
        programs: programs.to_vec(),
        inbound_port: contents.config.inbound_port,
    })
}

impl Loaded {
    /// Attaches the programs to `cgroup` and to the network namespace of the
    /// calling thread. Nothing is pinned.
    pub fn attach(self, cgroup: &Path) -> anyhow::Result<Attached> {
        let Loaded {
            mut bpf,
            programs,
            inbound_port,
        } = self;
        let cgroup_file =
            File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
        // thread-self: a thread may have entered another namespace than its process.
        let netns =
            File::open("/proc/thread-self/ns/net").context("opening this network namespace")?;
        let mut links = Vec::new();
        for p in &programs {
            fail_point(&format!("attach:{}", p.name))?;
            let link = attach_one(&mut bpf, p, &cgroup_file, &netns).with_context(|| {
                format!(
                    "attaching {} to {}",
                    p.name,
                    if p.hook.on_netns() {
                        "this network namespace".to_string()
                    } else {
                        format!("cgroup {}", cgroup.display())
                    }
                )
            })?;
            links.push((**p, link));
        }
        if programs.iter().any(|p| p.hook == Hook::SkLookup)
            && let Err(e) = register_listeners(&mut bpf, inbound_port)
        {
            crate::ui::warn(format!(
                "eBPF: a socket already listening on the inbound port {inbound_port} could not be registered ({e:#}); restart the proxy so that it registers when it listens"
            ));
        }
        Ok(Attached { bpf, links })
    }
}

impl Attached {
    /// Pins links and maps under `dir` (created; must not exist). A failure
    /// unpins what was pinned, and dropping the links detaches them.
    pub fn pin(self, dir: &Path) -> anyhow::Result<Pinned> {
        let Attached { bpf, links } = self;
        pin_all(&bpf, links, dir)
    }
}

/// [`load`], [`Loaded::attach`] and [`Attached::pin`] in one: any failure
/// leaves nothing behind.
pub fn install(
    contents: &Contents,
    programs: &[&'static Program],
    cgroup: &Path,
    dir: &Path,
) -> anyhow::Result<Pinned> {
    load(contents, programs)?.attach(cgroup)?.pin(dir)
}

fn pin_all(bpf: &aya::Ebpf, links: Vec<(Program, Link)>, dir: &Path) -> anyhow::Result<Pinned> {
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut undo = Undo {
        pins: Vec::new(),
        dir: Some(dir.to_path_buf()),
        done: false,
    };
    let mut pinned = Pinned {
        dir: dir.to_path_buf(),
        links: Vec::new(),
        maps: Vec::new(),
    };
    for name in object::MAPS {
        fail_point(&format!("pin:{name}"))?;
        let path = dir.join(format!("map_{name}"));
        let map = bpf
            .map(name)
            .ok_or_else(|| anyhow!("the BPF object has no map {name}"))?;
        map.pin(&path)
            .map_err(|e| anyhow!("pinning {}: {e}", path.display()))?;
        undo.pins.push(path.clone());
        let id = sys::obj_get(&path)
            .and_then(|fd| sys::object_id(fd.as_fd()))
            .with_context(|| format!("reading back {}", path.display()))?;
        pinned.maps.push(PinnedMap {
            name: name.to_string(),
            path,
            id,
        });
    }
    for (p, link) in links {
        fail_point(&format!("pin:{}", p.name))?;
        let path = dir.join(format!("link_{}", p.name));
        link.pin(&path)?;
        undo.pins.push(path.clone());
        let fd = sys::obj_get(&path).with_context(|| format!("reading back {}", path.display()))?;
        let info = sys::link_info(fd.as_fd())?;
        let prog = sys::prog_info_by_id(info.prog_id)?;
        pinned.links.push(PinnedLink {
            program: p.name.to_string(),
            hook: p.hook,
            path,
            link_id: info.id,
            prog_id: info.prog_id,
            prog_tag: prog.tag,
        });
    }
    undo.done = true;
    Ok(pinned)
}

/// Registers sockets already listening on the inbound port in this network
/// namespace (the sockops program registers later listeners itself): finds
/// them in /proc/thread-self/net/tcp{,6}, their owner's descriptor in /proc/*/fd, and a
/// duplicate through pidfd_getfd(2).
fn register_listeners(bpf: &mut aya::Ebpf, port: u16) -> anyhow::Result<()> {
    let wanted: Vec<(u64, u32)> = [
        ("/proc/thread-self/net/tcp", 0u32),
        ("/proc/thread-self/net/tcp6", 1u32),
    ]
    .iter()
    .flat_map(|(file, slot)| {
        listening_inodes(file, port)
            .into_iter()
            .map(move |i| (i, *slot))
    })
    .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut sockmap: SockMap<_> = SockMap::try_from(map_mut(bpf, "tp_listeners")?)?;
    for (inode, slot) in wanted {
        let fd = socket_by_inode(inode)
            .with_context(|| format!("finding the process that owns socket inode {inode}"))?;
        sockmap
            .set(slot, &std::os::fd::AsRawFd::as_raw_fd(&fd), 0)
            .with_context(|| format!("registering listener socket inode {inode}"))?;
    }
    Ok(())
}

/// Inodes of TCP sockets in LISTEN (state 0A) on `port`.
fn listening_inodes(file: &str, port: u16) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

fn socket_by_inode(inode: u64) -> anyhow::Result<OwnedFd> {
    let want = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()) {
                let n: i32 = fd.file_name().to_string_lossy().parse()?;
                return dup_from(pid, n);
            }
        }
    }
    bail!("no process holds it")
}

/// pidfd_open(2) + pidfd_getfd(2): a duplicate of another process's descriptor.
fn dup_from(pid: i32, fd: i32) -> anyhow::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system calls; the results are new descriptors we own.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error()).context("pidfd_open");
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let dup = libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            fd,
            0,
        );
        if dup < 0 {
            return Err(std::io::Error::last_os_error()).context("pidfd_getfd");
        }
        Ok(OwnedFd::from_raw_fd(dup as i32))
    }
}

/// What a pinned link looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkState {
    pub program: String,
    pub hook: Hook,
    pub path: PathBuf,
    /// `None`: the pin is gone.
    pub link_id: Option<u32>,
    pub prog_tag: Option<String>,
    /// What it is attached to: the cgroup's id or the namespace's inode;
    /// 0 when the cgroup or namespace is gone.
    pub target: u64,
}

/// Reads a pinned link back.
pub fn link_state(l: &PinnedLink) -> LinkState {
    let info = sys::obj_get(&l.path).and_then(|fd| sys::link_info(fd.as_fd()));
    match info {
        Ok(i) => LinkState {
            program: l.program.clone(),
            hook: l.hook,
            path: l.path.clone(),
            link_id: Some(i.id),
            prog_tag: sys::prog_info_by_id(i.prog_id).ok().map(|p| p.tag),
            target: i.target,
        },
        Err(_) => LinkState {
            program: l.program.clone(),
            hook: l.hook,
            path: l.path.clone(),
            link_id: None,
            prog_tag: None,
            target: 0,
        },
    }
}

fn open_map(dir: &Path, name: &str) -> anyhow::Result<aya::maps::Map> {
    let path = dir.join(format!("map_{name}"));
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    aya::maps::Map::from_map_data(data).with_context(|| format!("reading {}", path.display()))
}

/// Reads the pinned maps back into the contents they hold.
pub fn read_contents(dir: &Path) -> anyhow::Result<Contents> {
    let m = open_map(dir, "tp_config")?;
    let cfg: Array<_, TpConfig> = Array::try_from(m)?;
    let config = cfg.get(&0, 0)?;
    let m = open_map(dir, "tp_ports")?;
    let ports: HashMap<_, PortKey, u8> = HashMap::try_from(m)?;
    let ports = ports
        .keys()
        .filter_map(|k| k.ok().and_then(|k| PortEntry::from_key(&k)))
        .collect();
    let mut nets = std::collections::BTreeSet::new();
    let m = open_map(dir, "tp_nets4")?;
    let t4: LpmTrie<_, Net4, u8> = LpmTrie::try_from(m)?;
    nets.extend(
        t4.keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| NetEntry::from_v4(k.prefix_len(), &k.data())),
    );
    let m = open_map(dir, "tp_nets6")?;
    let t6: LpmTrie<_, Net6, u8> = LpmTrie::try_from(m)?;
    nets.extend(
        t6.keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| NetEntry::from_v6(k.prefix_len(), &k.data())),
    );
    let m = open_map(dir, "tp_uid_rules")?;
    let rules: Array<_, UidRule> = Array::try_from(m)?;
    let uid_rules = (0..config.uid_rule_count as u32)
        .map(|i| rules.get(&i, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Contents {
        config,
        ports,
        nets,
        uid_rules,
    })
}

/// The per-CPU counters summed (`TP_STAT_*` order).
pub fn read_stats(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let m = open_map(dir, "tp_stats")?;
    let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(m)?;
    let mut out = Vec::new();
    for v in stats.iter() {
        out.push(v?.iter().sum());
    }
    Ok(out)
}

/// Names of the counters of `tp_stats`.
pub const STAT_NAMES: &[&str] = &[
    "outbound connections redirected",
    "kuma-dp connections to a local address sent to the inbound port",
    "DNS datagrams redirected",
    "inbound connections given to the inbound listener",
    "inbound connections refused: nothing listens on the inbound port",
    "original destinations answered",
    "inbound listeners registered",
];

/// Removes a pin directory and everything in it: links detach and maps are
/// freed once nothing else holds them. Waits (up to 2 s) until the kernel
/// has released the links, so that "removed" means removed. Returns the
/// errors met; keeps going after each.
pub fn remove_dir(dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(why) = check_our_pin_dir(dir) {
        return vec![why];
    }
    let mut link_ids = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return errors,
        Err(e) => return vec![format!("reading {}: {e}", dir.display())],
    };
    for e in entries.flatten() {
        let path = e.path();
        if let Ok(fd) = sys::obj_get(&path)
            && let Ok(info) = sys::link_info(fd.as_fd())
            && info.link_type != 0
        {
            link_ids.push(info.id);
        }
        if let Err(err) = std::fs::remove_file(&path) {
            errors.push(format!("removing {}: {err}", path.display()));
        }
    }
    if let Err(err) = std::fs::remove_dir(dir) {
        errors.push(format!("removing {}: {err}", dir.display()));
    }
    // Releasing a link is deferred to a kernel work item.
    let deadline = Instant::now() + Duration::from_secs(2);
    while link_ids.iter().any(|id| link_exists(*id)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for id in link_ids.iter().filter(|id| link_exists(**id)) {
        errors.push(format!(
            "link {id} is still attached after its pin was removed"
        ));
    }
    errors
}

/// Only a directory of ours is emptied, whatever a receipt says: it must be
/// on a bpffs, at `<bpffs>/tproxyctl/net-<cookie>/<name>`.
fn check_our_pin_dir(dir: &Path) -> Result<(), String> {
    let names: Vec<String> = dir
        .components()
        .rev()
        .take(3)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let shaped = names.len() == 3 && names[1].starts_with("net-") && names[2] == OURS;
    let on_bpffs = sys::fs_type(dir).is_ok_and(|t| t == sys::BPF_FS_MAGIC);
    let exists = dir.exists();
    if exists && (!shaped || !on_bpffs) {
        return Err(format!(
            "refusing to remove {}: not a tproxyctl pin directory on a BPF filesystem (<bpffs>/{OURS}/net-<cookie>/<name>)",
            dir.display()
        ));
    }
    Ok(())
}

/// True while a link with this id exists.
pub fn link_exists(id: u32) -> bool {
    sys::link_fd_by_id(id).is_ok()
}

/// The directories directly under `root` (an install's pin directories
/// under `<bpffs>/tproxyctl/net-<cookie>`: every one is ours).
pub fn our_dirs_in(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_pin_directories_are_emptied() {
        // A directory a damaged or hostile receipt could name.
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("tproxyctl/net-1/g1");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("precious"), "keep me").unwrap();
        let errors = remove_dir(&victim);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("not a tproxyctl pin directory")),
            "{errors:?}"
        );
        assert!(victim.join("precious").exists());
        let errors = remove_dir(d.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        // Gone already: nothing to do, no error.
        assert!(remove_dir(&d.path().join("tproxyctl/net-1/gone")).is_empty());
    }
}
