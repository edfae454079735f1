//! The eBPF mode of `install`, `uninstall` (and `uninstall ebpf`) and
//! `status`: the iptables commands switch here when the configuration says
//! `--ebpf-enabled` or the receipt records an eBPF install. Install is a
//! transaction like the iptables one — preflight and program verification
//! before any change, the journal in the receipt, the bpffs mounted if
//! needed, links and maps pinned in a new directory, the receipt, and only
//! then the previous install's pins removed; any failure undoes exactly
//! what this run changed. Uninstall removes exactly what was pinned (links
//! detach, maps go), `::6` if we added it, the object copy, and the
//! receipt. The BPF work itself is in [`crate::ebpf`].

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use crate::Exit;
use crate::cli::{InstallArgs, OutputFormat, UninstallArgs, UninstallEbpfArgs};
use crate::config::{Config, IpFamilyMode};
use crate::ebpf::maps::{Contents, Facts};
use crate::ebpf::object::{self, Program};
use crate::ebpf::preflight::{self, Found, Report as Preflight};
use crate::ebpf::{EbpfReceipt, loader, sys};
use crate::error::UsageError;
use crate::host::receipt::{self, Loaded, Pending, Receipt};
use crate::host::{netif, resolv};
use crate::ops::common::{self, flush_warnings};
use crate::ops::status::PortStatus;
use crate::render::json::{schema_version, write_document};
use crate::ui;

fn now() -> (u64, u128) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_nanos())
}

/// The instance address: `--ebpf-instance-ip`, or the variable named by
/// `ebpf.instanceIPEnvVarName` (kumactl requires one).
pub fn instance_ip(cfg: &Config) -> Result<IpAddr, UsageError> {
    if let Some(ip) = cfg.ebpf.instance_ip {
        return Ok(ip);
    }
    if let Some(var) = &cfg.ebpf.instance_ip_env_var_name {
        let v = std::env::var(var).map_err(|_| {
            UsageError::new(format!(
                "ebpf.instanceIPEnvVarName names the variable {var}, which is not set"
            ))
        })?;
        return v.trim().parse().map_err(|_| {
            UsageError::new(format!(
                "invalid value '{v}' for the variable {var} (ebpf.instanceIPEnvVarName): not an IP address"
            ))
        });
    }
    Err(UsageError::new(
        "--ebpf-instance-ip has to be specified when --ebpf-enabled is provided (the address of this instance)",
    ))
}

/// `<bpffs>/tproxyctl/net-<cookie>`: the pins of one network namespace.
fn pin_root(bpffs: &Path, netns_cookie: u64) -> PathBuf {
    bpffs.join(loader::OURS).join(format!("net-{netns_cookie}"))
}

fn netns_ino() -> u64 {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or_default()
}

/// Everything install decides before it changes anything.
struct Prepared {
    cfg: Config,
    uid: u32,
    loopback: String,
    dns_servers: Vec<IpAddr>,
    found: Found,
    contents: Contents,
    programs: Vec<&'static Program>,
}

fn prepare(cfg: &Config, warnings: &mut Vec<String>) -> anyhow::Result<(Prepared, Preflight)> {
    let mut cfg = cfg.clone();
    cfg.ebpf.instance_ip = Some(instance_ip(&cfg)?);
    let uid = common::kuma_dp_uid(&cfg, warnings)?;
    let dns = &cfg.redirect.dns;
    let dns_servers = if dns.enabled && !dns.capture_all {
        resolv::nameservers(&dns.resolv_config_path, warnings)?
    } else {
        Vec::new()
    };
    if dns.enabled && !dns.capture_all && dns_servers.is_empty() {
        warnings.push(format!(
            "[eBPF] no DNS servers found in {}: DNS traffic will not be redirected",
            dns.resolv_config_path.display()
        ));
    }
    let report = preflight::run(&cfg.ebpf);
    let found = report.found.clone().unwrap_or(Found {
        cgroup: cfg.ebpf.cgroup_path.clone().unwrap_or_default(),
        bpffs: cfg.ebpf.bpffs_path.clone(),
        needs_mount: false,
        netns_cookie: sys::netns_cookie().unwrap_or_default(),
        inbound_ifindex: 0,
    });
    let facts = Facts {
        uid,
        dns_servers: dns_servers.clone(),
        netns_cookie: found.netns_cookie,
        inbound_ifindex: found.inbound_ifindex,
    };
    let contents = Contents::build(&cfg, &facts).map_err(UsageError::new)?;
    let programs = object::programs_for(&contents);
    Ok((
        Prepared {
            cfg,
            uid,
            loopback: netif::loopback_name(),
            dns_servers,
            found,
            contents,
            programs,
        },
        report,
    ))
}

/// `install transparent-proxy --ebpf-enabled`.
pub fn install(args: &InstallArgs, cfg: &Config) -> anyhow::Result<Exit> {
    let mut warnings = Vec::new();
    if cfg.dry_run {
        let (p, report) = prepare(cfg, &mut warnings)?;
        flush_warnings(&mut warnings);
        return dry_run(&p, &report, args.output);
    }
    instance_ip(cfg)?;
    common::require_root(false)?;
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    let _lock = common::begin_change(cfg, &receipt_path, "install")?;
    let old = match receipt::read(&receipt_path)? {
        Loaded::Found(r) => Some(*r),
        Loaded::Missing => None,
        Loaded::Unreadable(why) => anyhow::bail!(
            "the receipt {} cannot be used ({why}); remove what it recorded with `tproxyctl uninstall transparent-proxy` first; nothing on the host was changed",
            receipt_path.display()
        ),
    };
    if let Some(r) = &old
        && (!r.families.is_empty() || r.pending.as_ref().is_some_and(|p| !p.families.is_empty()))
    {
        anyhow::bail!(
            "the receipt {} records an iptables-mode install; run `tproxyctl uninstall transparent-proxy` before installing the eBPF mode; nothing on the host was changed",
            receipt_path.display()
        );
    }
    let (p, report) = prepare(cfg, &mut warnings)?;
    flush_warnings(&mut warnings);
    let found = report.into_result()?;
    if let Some(prev) = old.as_ref().and_then(|r| r.ebpf.as_ref())
        && already_installed(prev, &p, &found)
    {
        ui::info(
            "the eBPF programs with this configuration are already installed; nothing changed",
        );
        return Ok(Exit::Success);
    }
    if p.cfg.redirect.inbound.enabled && !crate::host::tcp_listening(p.cfg.redirect.inbound.port) {
        ui::info(format!(
            "nothing listens on the inbound redirect port {} yet: inbound TCP is refused until kuma-dp (or `tproxyctl forwarder`) listens there",
            p.cfg.redirect.inbound.port
        ));
    }
    // Every program through the verifier before anything changes.
    let loaded = loader::load(&p.contents, &p.programs)
        .context("eBPF install failed; nothing on the host was changed")?;
    let txn = Txn {
        p: &p,
        found: &found,
        old: old.as_ref(),
        receipt_path: &receipt_path,
    };
    txn.run(loaded)
}

/// True when the pinned install is this configuration, attached and intact.
fn already_installed(prev: &EbpfReceipt, p: &Prepared, found: &Found) -> bool {
    let names = |v: &[&Program]| v.iter().map(|x| x.name.to_string()).collect::<Vec<_>>();
    let pinned: Vec<String> = prev
        .pinned
        .links
        .iter()
        .map(|l| l.program.clone())
        .collect();
    let cgroup_id = std::fs::metadata(&found.cgroup).map(|m| m.ino()).ok();
    prev.object_sha256 == object::sha256()
        && prev.contents == p.contents
        && pinned == names(&p.programs)
        && Some(prev.cgroup_id) == cgroup_id
        && prev.netns_cookie == found.netns_cookie
        && prev.bpffs == found.bpffs
        && prev.object_copy.as_deref()
            == Some(
                p.cfg
                    .ebpf
                    .programs_source_path
                    .join(object::FILE_NAME)
                    .as_path(),
            )
        && drift(prev).is_empty()
}

/// Differences between what the receipt records and what is pinned now.
pub fn drift(r: &EbpfReceipt) -> Vec<String> {
    let mut out = Vec::new();
    for l in &r.pinned.links {
        let st = loader::link_state(l);
        let want = if l.hook.on_netns() {
            r.netns_ino
        } else {
            r.cgroup_id
        };
        match st.link_id {
            None => out.push(format!("link {} is not pinned any more", l.path.display())),
            Some(id) if id != l.link_id => out.push(format!(
                "{} holds link {id}, not the installed {}",
                l.path.display(),
                l.link_id
            )),
            Some(_) if st.target != want => out.push(format!(
                "{} ({}) is detached: its {} is gone",
                l.program,
                l.hook.name(),
                if l.hook.on_netns() {
                    "network namespace"
                } else {
                    "cgroup"
                }
            )),
            Some(_) if st.prog_tag.as_deref() != Some(l.prog_tag.as_str()) => out.push(format!(
                "{} runs another program than the one installed",
                l.program
            )),
            Some(_) => {}
        }
    }
    match loader::read_contents(&r.pinned.dir) {
        Ok(c) if c == r.contents => {}
        Ok(_) => out.push(format!(
            "the maps in {} no longer hold the installed configuration",
            r.pinned.dir.display()
        )),
        Err(e) => out.push(format!("{e:#}")),
    }
    out
}

/// What this run changed so far, to be undone if it fails.
#[derive(Default)]
struct Done {
    journal: bool,
    mounted: bool,
    /// Directories made for the bpffs mount point.
    mount_dirs: Vec<PathBuf>,
    /// Directories made under the bpffs.
    made_dirs: Vec<PathBuf>,
    object_copy: Option<PathBuf>,
    object_dir_created: bool,
    added_v6: bool,
}

struct Txn<'a> {
    p: &'a Prepared,
    found: &'a Found,
    old: Option<&'a Receipt>,
    receipt_path: &'a Path,
}

impl Txn<'_> {
    /// IPv6 inbound passthrough connects from `::6`, which must then exist.
    fn wants_v6(&self) -> bool {
        self.p.cfg.ip_family_mode == IpFamilyMode::DualStack && netif::has_ipv6(&self.p.loopback)
    }

    /// A previous install added `::6`.
    fn old_v6(&self) -> bool {
        self.old.is_some_and(|o| o.ipv6_loopback_ours())
    }

    fn skeleton(&self) -> Receipt {
        Receipt {
            version: receipt::VERSION,
            tool: format!("tproxyctl {}", env!("CARGO_PKG_VERSION")),
            installed_at: now().0,
            config: self.p.cfg.clone(),
            uid: self.p.uid,
            loopback: self.p.loopback.clone(),
            dns_servers: self.p.dns_servers.clone(),
            families: Vec::new(),
            ipv6_loopback_added: false,
            firewalld: None,
            pending: None,
            ebpf: None,
        }
    }

    fn run(&self, loaded: loader::Loaded) -> anyhow::Result<Exit> {
        let mut done = Done::default();
        match self.apply(loaded, &mut done) {
            Ok(r) => {
                self.finish(&r);
                Ok(Exit::Success)
            }
            Err(e) => {
                let errors = self.undo(&done);
                for err in &errors {
                    ui::warn(format!("rolling back: {err}"));
                }
                let what = if errors.is_empty() {
                    "everything this run changed was undone"
                } else {
                    "rolling back was incomplete (see above)"
                };
                Err(e.context(format!("eBPF install failed; {what}")))
            }
        }
    }

    /// The receipt's eBPF section for pins in `dir` (none yet: the journal's).
    fn record(&self, dir: &Path, mounted: bool, mount_dirs: &[PathBuf]) -> EbpfReceipt {
        // The previous install's facts about the same bpffs carry over.
        let prev = self
            .old
            .and_then(|o| o.ebpf.as_ref())
            .filter(|e| e.bpffs == self.found.bpffs);
        EbpfReceipt {
            object_sha256: object::sha256().to_string(),
            bpffs: self.found.bpffs.clone(),
            bpffs_mounted: mounted || prev.is_some_and(|e| e.bpffs_mounted),
            bpffs_dirs_created: if mounted {
                mount_dirs.to_vec()
            } else {
                prev.map(|e| e.bpffs_dirs_created.clone())
                    .unwrap_or_default()
            },
            cgroup: self.found.cgroup.clone(),
            cgroup_id: std::fs::metadata(&self.found.cgroup)
                .map(|m| m.ino())
                .unwrap_or_default(),
            netns_cookie: self.found.netns_cookie,
            netns_ino: netns_ino(),
            contents: self.p.contents.clone(),
            pinned: loader::Pinned {
                dir: dir.to_path_buf(),
                links: Vec::new(),
                maps: Vec::new(),
            },
            object_copy: Some(self.p.cfg.ebpf.programs_source_path.join(object::FILE_NAME)),
            object_dir_created: prev.is_some_and(|e| e.object_dir_created),
        }
    }

    /// The changes, in order; `done` says how far it got.
    fn apply(&self, loaded: loader::Loaded, done: &mut Done) -> anyhow::Result<Receipt> {
        let adds_v6 = self.wants_v6() && !netif::has_passthrough_v6(&self.p.loopback);
        let bpffs = &self.found.bpffs;
        let root = pin_root(bpffs, self.found.netns_cookie);
        let dir = root.join(format!("g{}", now().1));
        // The journal: what this run may leave if it is killed (uninstall
        // then removes every pin directory of this namespace, the mount and
        // ::6 it names).
        let mut journal = self.old.cloned().unwrap_or_else(|| self.skeleton());
        journal.pending = Some(Pending {
            operation: "install".to_string(),
            pid: std::process::id(),
            started_at: now().0,
            families: Vec::new(),
            ipv6_loopback: adds_v6,
            firewalld: None,
        });
        let mut intent = self.record(&dir, self.found.needs_mount, &[]);
        intent.object_dir_created |= !self.p.cfg.ebpf.programs_source_path.exists();
        journal.ebpf = Some(intent);
        if !receipt::is_none(self.receipt_path) {
            receipt::store(self.receipt_path, &journal)
                .context("writing the journal to the receipt before any change")?;
            done.journal = true;
        }
        if self.found.needs_mount {
            mount_bpffs(bpffs, &mut done.mount_dirs)?;
            done.mounted = true;
        }
        make_private_dirs(&root, &mut done.made_dirs)?;
        let (copy, created) = write_object_copy(&self.p.cfg.ebpf.programs_source_path)?;
        let old_copy = self
            .old
            .and_then(|o| o.ebpf.as_ref())
            .and_then(|e| e.object_copy.as_ref());
        if old_copy != Some(&copy) {
            // (the previous install's copy, rewritten with the same object, stays)
            done.object_copy = Some(copy.clone());
            done.object_dir_created = created;
        }
        if adds_v6 {
            done.added_v6 = netif::add_passthrough_v6(&self.p.loopback)?;
        }
        let pinned = loaded.attach(&self.found.cgroup)?.pin(&dir)?;
        let mut r = self.skeleton();
        r.ipv6_loopback_added = done.added_v6 || (self.wants_v6() && self.old_v6());
        let mut e = self.record(&dir, done.mounted, &done.mount_dirs);
        e.pinned = pinned.clone();
        e.object_dir_created |= done.object_dir_created;
        r.ebpf = Some(e);
        if !receipt::is_none(self.receipt_path)
            && let Err(e) = receipt::store(self.receipt_path, &r)
        {
            // The new pins are not recorded anywhere: take them away again.
            for err in loader::remove_dir(&pinned.dir) {
                ui::warn(format!("rolling back: {err}"));
            }
            return Err(e);
        }
        Ok(r)
    }

    /// After the new receipt is stored: the previous install's pins go
    /// (and any a killed run left in this namespace's directory).
    fn finish(&self, r: &Receipt) {
        let e = r.ebpf.as_ref().expect("an eBPF receipt");
        let mut errors = Vec::new();
        for dir in loader::our_dirs_in(&pin_root(&e.bpffs, e.netns_cookie)) {
            if dir != e.pinned.dir {
                errors.extend(loader::remove_dir(&dir));
            }
        }
        if let Some(prev) = self.old.and_then(|o| o.ebpf.as_ref())
            && prev.pinned.dir != e.pinned.dir
        {
            errors.extend(loader::remove_dir(&prev.pinned.dir));
        }
        if self.old_v6()
            && !self.wants_v6()
            && let Err(err) = netif::remove_passthrough_v6(&r.loopback)
        {
            errors.push(format!("{err:#}"));
        }
        for err in errors {
            ui::warn(format!("removing the previous install: {err}"));
        }
        ui::info(format!(
            "eBPF: {} programs attached to {} and this network namespace, pinned in {}",
            e.pinned.links.len(),
            e.cgroup.display(),
            e.pinned.dir.display()
        ));
    }

    fn undo(&self, done: &Done) -> Vec<String> {
        let mut errors = Vec::new();
        if done.added_v6
            && let Err(e) = netif::remove_passthrough_v6(&self.p.loopback)
        {
            errors.push(format!("{e:#}"));
        }
        if let Some(copy) = &done.object_copy {
            errors.extend(remove_object_copy(copy, done.object_dir_created));
        }
        for d in done.made_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        if done.mounted {
            errors.extend(unmount_bpffs(&self.found.bpffs));
        }
        for d in done.mount_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        if done.journal {
            let r = match self.old {
                Some(o) => receipt::store(self.receipt_path, o),
                None => receipt::remove(self.receipt_path),
            };
            if let Err(e) = r {
                errors.push(format!("restoring the receipt: {e:#}"));
            }
        }
        errors
    }
}

/// Creates `dir` and missing parents with mode 0700, recording what it made.
fn make_private_dirs(dir: &Path, made: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| !a.exists())
        .map(Path::to_path_buf)
        .collect();
    for d in missing.iter().rev() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(d)
            .with_context(|| format!("creating {}", d.display()))?;
        made.push(d.clone());
    }
    Ok(())
}

fn mount_bpffs(path: &Path, made: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    use nix::mount::{MsFlags, mount};
    make_private_dirs(path, made)?;
    mount(
        Some("bpf"),
        path,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .with_context(|| format!("mounting a bpffs on {}", path.display()))
}

/// A bpffs with nothing but the files it shows when mounted
/// (`maps.debug`, `progs.debug`, …) left in it.
fn bpffs_unused(path: &Path) -> bool {
    sys::fs_type(path).is_ok_and(|t| t == sys::BPF_FS_MAGIC)
        && std::fs::read_dir(path).is_ok_and(|d| {
            d.flatten()
                .all(|e| e.file_name().to_string_lossy().ends_with(".debug"))
        })
}

fn unmount_bpffs(path: &Path) -> Vec<String> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("unmounting the bpffs {}: {e}", path.display())],
    }
}

/// Writes the object for inspection into `dir` (made 0755 if missing;
/// refused if another user could write it). Returns the file and whether
/// the directory was created.
fn write_object_copy(dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    let created = !dir.exists();
    if created {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!(
            "--ebpf-programs-source-path {} is not a directory",
            dir.display()
        );
    }
    receipt::check_trusted_dir(dir).context("--ebpf-programs-source-path")?;
    let path = dir.join(object::FILE_NAME);
    // A copy for people to read: replaced atomically (a temporary file made
    // exclusively, renamed over), but not synced — losing it to a crash
    // costs nothing, and syncing it cost a third of the install's time.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tproxy.bpf.o.")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(object::OBJECT)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((path, created))
}

/// True for a regular file called `tproxy.bpf.o` holding a BPF ELF object
/// (what install writes), so that a receipt naming another file never
/// removes it.
fn is_object_copy(path: &Path) -> bool {
    use std::io::Read;
    let named = path.file_name().is_some_and(|n| n == object::FILE_NAME);
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    let mut head = [0u8; 20];
    let elf_bpf = File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        // ELF magic, and e_machine (offset 18, little endian) EM_BPF = 247
        && head[..4] == *b"\x7fELF"
        && u16::from_le_bytes([head[18], head[19]]) == 247;
    named && regular && elf_bpf
}

fn remove_object_copy(path: &Path, dir_created: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if path.exists() && !is_object_copy(path) {
        return vec![format!(
            "refusing to remove {}: not the BPF object install wrote",
            path.display()
        )];
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("removing {}: {e}", path.display())),
    }
    if dir_created && let Some(d) = path.parent() {
        let _ = std::fs::remove_dir(d);
    }
    errors
}

/// Everything a dry run shows, also as JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DryRun<'a> {
    schema_version: u32,
    mode: &'static str,
    object_sha256: &'static str,
    object_copy: PathBuf,
    preflight: &'a [preflight::Check],
    bpffs: &'a Path,
    bpffs_mount: bool,
    pin_directory: PathBuf,
    cgroup: &'a Path,
    programs: Vec<DryRunProgram>,
    maps: &'a Contents,
    flags: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DryRunProgram {
    name: &'static str,
    hook: object::Hook,
    /// The hook as libbpf names its section (`cgroup/connect4`).
    section: &'static str,
    target: String,
    role: &'static str,
}

fn dry_run(p: &Prepared, report: &Preflight, output: OutputFormat) -> anyhow::Result<Exit> {
    let f = &p.found;
    let d = DryRun {
        schema_version: schema_version::PLAN,
        mode: "ebpf",
        object_sha256: object::sha256(),
        object_copy: p.cfg.ebpf.programs_source_path.join(object::FILE_NAME),
        preflight: &report.checks,
        bpffs: &f.bpffs,
        bpffs_mount: f.needs_mount,
        pin_directory: pin_root(&f.bpffs, f.netns_cookie).join("g<install time>"),
        cgroup: &f.cgroup,
        programs: p
            .programs
            .iter()
            .map(|x| DryRunProgram {
                name: x.name,
                hook: x.hook,
                section: x.hook.name(),
                target: if x.hook.on_netns() {
                    "this network namespace".to_string()
                } else {
                    f.cgroup.display().to_string()
                },
                role: x.role,
            })
            .collect(),
        maps: &p.contents,
        flags: p.contents.flag_names(),
    };
    let mut out = std::io::stdout().lock();
    if output == OutputFormat::Json {
        write_document(&mut out, &d)?;
        return Ok(Exit::Success);
    }
    writeln!(out, "### eBPF mode (dry run: nothing is changed) ###")?;
    writeln!(out)?;
    writeln!(out, "# preflight")?;
    for c in d.preflight {
        writeln!(
            out,
            "#   {} {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "write  {} (object sha256 {})",
        d.object_copy.display(),
        d.object_sha256
    )?;
    if d.bpffs_mount {
        writeln!(out, "mount  bpffs on {}", d.bpffs.display())?;
    }
    for x in &d.programs {
        writeln!(
            out,
            "attach {} {} -> {}    # {}",
            x.name, x.section, x.target, x.role
        )?;
    }
    write_maps(&mut out, &p.contents)?;
    for x in &d.programs {
        writeln!(
            out,
            "pin    {}",
            d.pin_directory.join(format!("link_{}", x.name)).display()
        )?;
    }
    for m in object::MAPS {
        writeln!(
            out,
            "pin    {}",
            d.pin_directory.join(format!("map_{m}")).display()
        )?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// The map contents, one line per entry.
fn write_maps(out: &mut impl Write, c: &Contents) -> std::io::Result<()> {
    let k = &c.config;
    writeln!(
        out,
        "map    tp_config: netnsCookie={} exemptUid={} outboundPort={} inboundPort={} dnsPort={} inboundIfindex={} flags={}",
        k.netns_cookie,
        k.exempt_uid,
        k.outbound_port,
        k.inbound_port,
        k.dns_port,
        k.inbound_ifindex,
        c.flag_names().join(",")
    )?;
    for p in &c.ports {
        let what = match (p.dir, c.config.flags) {
            (crate::ebpf::maps::Dir::Outbound, f)
                if f & crate::ebpf::maps::flag::OUT_INCLUDE != 0 =>
            {
                "included"
            }
            (crate::ebpf::maps::Dir::Inbound, f)
                if f & crate::ebpf::maps::flag::IN_INCLUDE != 0 =>
            {
                "included"
            }
            _ => "excluded",
        };
        writeln!(out, "map    tp_ports: {:?} port {} {what}", p.dir, p.port)?;
    }
    for n in &c.nets {
        let map = if n.net.addr().is_ipv4() {
            "tp_nets4"
        } else {
            "tp_nets6"
        };
        writeln!(out, "map    {map}: {:?} {}", n.kind, n.net)?;
    }
    for r in &c.uid_rules {
        writeln!(
            out,
            "map    tp_uid_rules: uids {}-{} ports {}-{} protocols {}",
            r.uid_first,
            r.uid_last,
            r.port_first,
            r.port_last,
            match r.protocols {
                1 => "tcp",
                2 => "udp",
                _ => "tcp,udp",
            }
        )?;
    }
    Ok(())
}

/// `uninstall ebpf` is `uninstall transparent-proxy --ebpf-enabled`.
pub fn uninstall_args(a: &UninstallEbpfArgs) -> UninstallArgs {
    let ignored = [
        ("--timeout", a.timeout.is_some()),
        ("--namespace", a.namespace.is_some()),
        ("--remove-only", a.remove_only.is_some()),
        (
            "--cleanup-image-registry",
            a.cleanup_image_registry.is_some(),
        ),
        (
            "--cleanup-image-repository",
            a.cleanup_image_repository.is_some(),
        ),
        ("--cleanup-image-tag", a.cleanup_image_tag.is_some()),
        ("--cleanup-job-name", a.cleanup_job_name.is_some()),
    ];
    for (flag, given) in ignored {
        if given {
            ui::warn(format!(
                "{flag} configures kumactl's Kubernetes cleanup job and is ignored here"
            ));
        }
    }
    let mut u = UninstallArgs {
        tp: Default::default(),
        apply: Default::default(),
        receipt: a.receipt.clone(),
    };
    u.apply.dry_run = a.dry_run;
    u.apply.ebpf.ebpf_enabled = Some(true);
    u.apply.ebpf.ebpf_bpffs_path = a.bpffs_path.clone();
    u
}

/// `uninstall transparent-proxy` of an eBPF install (`rec`: its receipt),
/// or with `--ebpf-enabled` and no eBPF receipt: everything pinned under
/// this network namespace's directory of the bpffs (a receipt of an
/// iptables-mode install is then left alone).
pub fn uninstall(cfg: &Config, receipt_path: &Path, rec: Option<&Receipt>) -> anyhow::Result<Exit> {
    let e = rec.and_then(|r| r.ebpf.as_ref());
    let root = match e {
        Some(e) => pin_root(&e.bpffs, e.netns_cookie),
        None => pin_root(&cfg.ebpf.bpffs_path, sys::netns_cookie()?),
    };
    let mut dirs = loader::our_dirs_in(&root);
    if let Some(e) = e
        && !dirs.contains(&e.pinned.dir)
        && e.pinned.dir.exists()
    {
        dirs.push(e.pinned.dir.clone());
    }
    if cfg.dry_run {
        let mut out = std::io::stdout().lock();
        for d in &dirs {
            writeln!(out, "unpin  {} (and detach its links)", d.display())?;
        }
        if dirs.is_empty() {
            writeln!(
                out,
                "# no eBPF programs of ours are pinned in {}",
                root.display()
            )?;
        }
        return Ok(Exit::Success);
    }
    let mut errors = Vec::new();
    for d in &dirs {
        errors.extend(loader::remove_dir(d));
    }
    let _ = std::fs::remove_dir(&root);
    if let Some(r) = rec {
        if r.ipv6_loopback_ours()
            && let Err(err) = netif::remove_passthrough_v6(&r.loopback)
        {
            errors.push(format!("{err:#}"));
        }
        if let Some(e) = e {
            if let Some(copy) = &e.object_copy {
                errors.extend(remove_object_copy(copy, e.object_dir_created));
            }
            let ours = e.bpffs.join(loader::OURS);
            let _ = std::fs::remove_dir(&ours);
            if e.bpffs_mounted && bpffs_unused(&e.bpffs) {
                errors.extend(unmount_bpffs(&e.bpffs));
                for d in e.bpffs_dirs_created.iter().rev() {
                    let _ = std::fs::remove_dir(d);
                }
            }
        }
    }
    if !errors.is_empty() {
        for err in &errors {
            ui::warn(err);
        }
        anyhow::bail!(
            "the eBPF uninstall was incomplete; the receipt {} is kept",
            receipt_path.display()
        );
    }
    if rec.is_some() {
        receipt::remove(receipt_path)?;
    }
    if dirs.is_empty() {
        ui::info("no eBPF programs of ours were pinned. No cleanup necessary");
    } else {
        ui::info(format!(
            "eBPF programs detached and unpinned ({})",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Exit::Success)
}

/// `status` of an eBPF install (`status --output json` with `mode: ebpf`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    schema_version: u32,
    mode: &'static str,
    installed: bool,
    receipt: String,
    tool: String,
    installed_at: u64,
    kuma_dp_uid: u32,
    object_sha256: String,
    /// The object is the one this tproxyctl embeds.
    object_matches_binary: bool,
    cgroup: PathBuf,
    pin_directory: PathBuf,
    links: Vec<loader::LinkState>,
    maps: Contents,
    /// `None`: the counters map cannot be read.
    counters: Option<Counters>,
    ports: Vec<PortStatus>,
    /// Every difference from the receipt (exit 1 when there is one).
    problems: Vec<String>,
}

/// The programs' counters (`tp_stats`), named as [`loader::STAT_NAMES`]
/// describes them, in that order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Counters {
    outbound_redirected: u64,
    kuma_dp_local_to_inbound: u64,
    dns_redirected: u64,
    inbound_redirected: u64,
    inbound_refused: u64,
    original_destinations_answered: u64,
    inbound_listeners_registered: u64,
}

impl Counters {
    /// From the map's entries (`TP_STAT_COUNT`, one spare at the end).
    fn from_stats(v: &[u64]) -> Option<Counters> {
        let &[a, b, c, d, e, f, g, ..] = v else {
            return None;
        };
        Some(Counters {
            outbound_redirected: a,
            kuma_dp_local_to_inbound: b,
            dns_redirected: c,
            inbound_redirected: d,
            inbound_refused: e,
            original_destinations_answered: f,
            inbound_listeners_registered: g,
        })
    }

    /// `(description, value)` in map order, for the text output.
    fn described(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let v = [
            self.outbound_redirected,
            self.kuma_dp_local_to_inbound,
            self.dns_redirected,
            self.inbound_redirected,
            self.inbound_refused,
            self.original_destinations_answered,
            self.inbound_listeners_registered,
        ];
        loader::STAT_NAMES.iter().copied().zip(v)
    }
}

/// Prints the status of an eBPF install; exit 1 on drift.
pub fn status(r: &Receipt, path: &Path, output: OutputFormat) -> anyhow::Result<Exit> {
    let e = r.ebpf.as_ref().expect("an eBPF receipt");
    let counters = loader::read_stats(&e.pinned.dir)
        .ok()
        .and_then(|v| Counters::from_stats(&v));
    let c = &r.config.redirect;
    let mut ports = vec![
        PortStatus::probe("outbound", c.outbound.port),
        PortStatus::probe("inbound", c.inbound.port),
    ];
    if c.dns.enabled {
        ports.push(PortStatus::probe("dns", c.dns.port));
    }
    let s = Status {
        schema_version: schema_version::STATUS,
        mode: "ebpf",
        installed: true,
        receipt: path.display().to_string(),
        tool: r.tool.clone(),
        installed_at: r.installed_at,
        kuma_dp_uid: r.uid,
        object_sha256: e.object_sha256.clone(),
        object_matches_binary: e.object_sha256 == object::sha256(),
        cgroup: e.cgroup.clone(),
        pin_directory: e.pinned.dir.clone(),
        links: e.pinned.links.iter().map(loader::link_state).collect(),
        maps: loader::read_contents(&e.pinned.dir).unwrap_or_default(),
        counters,
        ports,
        problems: drift(e),
    };
    let mut out = std::io::stdout().lock();
    if output == OutputFormat::Json {
        write_document(&mut out, &s)?;
    } else {
        write_status(&mut out, &s)?;
    }
    out.flush()?;
    Ok(if s.problems.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn write_status(out: &mut impl Write, s: &Status) -> std::io::Result<()> {
    writeln!(
        out,
        "installed: eBPF mode (receipt {}), kuma-dp UID {}",
        s.receipt, s.kuma_dp_uid
    )?;
    writeln!(
        out,
        "object: sha256 {}{}",
        s.object_sha256,
        if s.object_matches_binary {
            ""
        } else {
            " (not this tproxyctl's: re-install to update)"
        }
    )?;
    writeln!(out, "cgroup: {}", s.cgroup.display())?;
    writeln!(out, "pinned in: {}", s.pin_directory.display())?;
    for l in &s.links {
        writeln!(
            out,
            "  {:<16} {:<20} link {:<6} {}",
            l.program,
            l.hook.name(),
            l.link_id.map(|i| i.to_string()).unwrap_or("-".into()),
            if l.link_id.is_none() {
                "MISSING"
            } else if l.target == 0 {
                "DETACHED"
            } else {
                "attached"
            }
        )?;
    }
    write_maps(out, &s.maps)?;
    for (n, c) in s.counters.iter().flat_map(Counters::described) {
        writeln!(out, "  {c:>10}  {n}")?;
    }
    for p in &s.ports {
        writeln!(out, "{p}")?;
    }
    if s.problems.is_empty() {
        writeln!(out, "in place")?;
    } else {
        for d in &s.problems {
            writeln!(out, "DRIFT {d}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_object_install_wrote_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join(object::FILE_NAME);
        std::fs::write(&fake, "not an object").unwrap();
        assert!(!is_object_copy(&fake));
        let errors = remove_object_copy(&fake, false);
        assert!(errors[0].contains("refusing"), "{errors:?}");
        assert!(fake.exists());
        let other = d.path().join("shadow");
        std::fs::write(&other, object::OBJECT).unwrap();
        assert!(!is_object_copy(&other), "the name matters too");
        std::fs::write(&fake, object::OBJECT).unwrap();
        assert!(is_object_copy(&fake));
        assert!(remove_object_copy(&fake, false).is_empty());
        assert!(!fake.exists());
    }

    #[test]
    fn every_counter_has_a_json_name() {
        let n = loader::STAT_NAMES.len();
        assert!(Counters::from_stats(&vec![0; n - 1]).is_none());
        // The map has a spare entry after the named ones.
        let v: Vec<u64> = (0..=n as u64).collect();
        let c = Counters::from_stats(&v).expect("one field per counter");
        let back: Vec<(&str, u64)> = c.described().collect();
        assert_eq!(back.len(), n);
        for ((name, value), (want_name, want)) in back.iter().zip(loader::STAT_NAMES.iter().zip(v))
        {
            assert_eq!((name, *value), (want_name, want));
        }
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["dnsRedirected"], 2);
    }

    #[test]
    fn the_instance_address_is_required() {
        let mut cfg = Config::default();
        let e = instance_ip(&cfg).unwrap_err().to_string();
        assert!(e.contains("--ebpf-instance-ip"), "{e}");
        cfg.ebpf.instance_ip_env_var_name = Some("NO_SUCH_INSTANCE_IP_VARIABLE_FOR_TESTS".into());
        let e = instance_ip(&cfg).unwrap_err().to_string();
        assert!(e.contains("NO_SUCH_INSTANCE_IP_VARIABLE_FOR_TESTS"), "{e}");
        cfg.ebpf.instance_ip = Some("10.0.0.5".parse().unwrap());
        assert_eq!(
            instance_ip(&cfg).unwrap(),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
    }
}
