//! `tproxyctl verify` of an eBPF-mode install: the pinned links are checked
//! against the receipt (attached to the recorded cgroup and namespace, the
//! recorded programs, maps holding the configuration), then the same object
//! with the same configuration is attached to a throwaway cgroup and a
//! throwaway pair of network namespaces, and real connections prove each
//! property: outbound TCP (both families) reaches the outbound port with its
//! original destination, the exempt UID and every kind of exclusion bypass,
//! kuma-dp's connection to the instance address reaches the inbound port,
//! inbound TCP reaches the inbound port with its original destination (and
//! an excluded port does not), and DNS over UDP reaches the DNS port and is
//! answered from the server asked. The host's own traffic is never touched.
//!
//! The probes run on threads of this process, each in the namespace and as
//! the UID it needs (a per-thread `setresuid`, as the programs look at the
//! caller's UID); this process moves into the throwaway cgroup for the
//! checks and back afterwards. The programs act only in the throwaway host
//! namespace (they check its cookie), so nothing else this process does is
//! redirected meanwhile.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use crate::Exit;
use crate::cli::VerifyArgs;
use crate::config::{Config, Proto};
use crate::ebpf::maps::{Contents, Facts, flag};
use crate::ebpf::{cgroup, loader, object, sys};
use crate::host::receipt::Receipt;
use crate::host::sandbox::{self, Bench, Seen};
use crate::model::Family;
use crate::ops::verify::{Check, Part, Report, pick_port};

const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// The family a probe to `dst` is about.
fn family_of(dst: SocketAddr) -> Family {
    match crate::forwarder::net::canonical(dst) {
        SocketAddr::V4(_) => Family::Ipv4,
        SocketAddr::V6(_) => Family::Ipv6,
    }
}

/// A cgroup of our own under the cgroup2 mount, with this process in it;
/// on drop the process goes back where it was and the cgroup is removed.
struct OwnCgroup {
    path: PathBuf,
    home: PathBuf,
}

impl OwnCgroup {
    fn enter() -> anyhow::Result<OwnCgroup> {
        let mount = cgroup::cgroup2_mount().context("no cgroup2 filesystem is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .context("this process has no cgroup2 membership")?;
        let home = mount.join(rel.trim_start_matches('/'));
        let path = mount.join(format!("tproxyctl-verify-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let c = OwnCgroup { path, home };
        std::fs::write(c.path.join("cgroup.procs"), b"0")
            .with_context(|| format!("moving into {}", c.path.display()))?;
        Ok(c)
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.home.join("cgroup.procs"),
            std::process::id().to_string(),
        );
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns` with real, effective
/// and saved UID `uid` (that thread only) and waits for it.
fn on_thread<T: Send + 'static>(
    ns: &sandbox::Netns,
    uid: u32,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let fd = File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .context("entering the namespace")?;
        if uid != 0 {
            // The raw system call changes this thread only (glibc's wrapper
            // would change every thread of the process).
            // SAFETY: plain system call with integer arguments.
            let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
            if r != 0 {
                return Err(std::io::Error::last_os_error()).context("setresuid");
            }
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a probe thread panicked"))?
}

/// Connects from `ns` as `uid` and returns the line the server answered.
fn tcp_probe(ns: &sandbox::Netns, uid: u32, dst: SocketAddr) -> anyhow::Result<String> {
    on_thread(ns, uid, move || {
        let mut s = TcpStream::connect_timeout(&dst, IO_TIMEOUT)
            .with_context(|| format!("connecting to {dst}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        writeln!(s, "probe")?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line)?;
        Ok(line.trim().to_string())
    })
}

/// Sends a datagram to `dst` on a connected socket from `ns` as `uid`;
/// returns the answer and the address it came from.
fn udp_probe(
    ns: &sandbox::Netns,
    uid: u32,
    dst: SocketAddr,
) -> anyhow::Result<(String, SocketAddr)> {
    on_thread(ns, uid, move || {
        let any: SocketAddr = if dst.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = UdpSocket::bind(any)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.connect(dst)?;
        s.send(b"probe\n")?;
        let mut buf = [0u8; 512];
        let (n, from) = s
            .recv_from(&mut buf)
            .with_context(|| format!("no answer from {dst}"))?;
        Ok((String::from_utf8_lossy(&buf[..n]).trim().to_string(), from))
    })
}

struct Run<'a> {
    bench: &'a Bench,
    seen: mpsc::Receiver<Seen>,
    checks: Vec<Check>,
}

impl Run<'_> {
    fn record(&mut self, dst: SocketAddr, check: String, result: Result<String, String>) {
        let (pass, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.checks.push(Check {
            part: Part::Behaviour,
            family: Some(family_of(dst)),
            check,
            pass,
            detail,
        });
    }

    /// The next report of listener `tag` (others are skipped): listeners
    /// report just after they answer.
    fn seen_from(&self, tag: &str) -> Option<Seen> {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(s) if s.listener == tag => return Some(s),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// A connection as `uid` to `dst` must reach `listener` with `dst` as
    /// its original destination.
    fn redirected(&mut self, check: &str, uid: u32, dst: SocketAddr, listener: &'static str) {
        let r = match tcp_probe(&self.bench.host, uid, dst) {
            Ok(tag) if tag == listener => match self.seen_from(listener) {
                Some(s) if s.original.map(crate::forwarder::net::canonical) == Some(dst) => Ok(
                    format!("reached the {listener} port with original destination {dst}"),
                ),
                Some(s) => Err(format!(
                    "reached the {listener} port, but the original destination was {:?}, not {dst}",
                    s.original
                )),
                None => Err("the listener saw nothing".to_string()),
            },
            Ok(tag) => Err(format!("answered by '{tag}', not the {listener} port")),
            Err(e) => Err(format!("{e:#}")),
        };
        self.record(dst, check.to_string(), r);
    }

    /// A connection as `uid` to `dst` must reach the server itself.
    fn bypasses(&mut self, check: &str, uid: u32, dst: SocketAddr, server: &'static str) {
        let r = match tcp_probe(&self.bench.host, uid, dst) {
            Ok(tag) if tag == server => {
                let _ = self.seen_from(server);
                Ok(format!("reached {dst} directly"))
            }
            Ok(tag) => Err(format!("answered by '{tag}', not {server} at {dst}")),
            Err(e) => Err(format!("{e:#}")),
        };
        self.record(dst, check.to_string(), r);
    }

    fn inbound(&mut self, check: &str, dst: SocketAddr, want: &'static str) {
        let r = on_thread(&self.bench.peer, 0, move || {
            let mut s = TcpStream::connect_timeout(&dst, IO_TIMEOUT)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            writeln!(s, "probe")?;
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line)?;
            Ok(line.trim().to_string())
        });
        let r = match r {
            Ok(tag) if tag == want && want == "inbound" => match self.seen_from(want) {
                Some(s) if s.original.map(crate::forwarder::net::canonical) == Some(dst) => Ok(
                    format!("reached the inbound port with original destination {dst}"),
                ),
                other => Err(format!(
                    "reached the inbound port, original destination {:?}",
                    other.and_then(|s| s.original)
                )),
            },
            Ok(tag) if tag == want => {
                let _ = self.seen_from(want);
                Ok(format!("reached the application at {dst} directly"))
            }
            Ok(tag) => Err(format!("answered by '{tag}', not {want}")),
            Err(e) => Err(format!("{e:#}")),
        };
        self.record(dst, check.to_string(), r);
    }

    fn dns(&mut self, check: &str, uid: u32, server: SocketAddr) {
        let r = match udp_probe(&self.bench.host, uid, server) {
            Ok((tag, from)) if tag == "dns" && crate::forwarder::net::canonical(from) == server => {
                Ok(format!(
                    "reached the DNS port; the answer came from {server}"
                ))
            }
            Ok((tag, from)) if tag == "dns" => Err(format!(
                "reached the DNS port, but the answer came from {from}, not {server}"
            )),
            Ok((tag, _)) => Err(format!("answered by '{tag}', not the DNS port")),
            Err(e) => Err(format!("{e:#}")),
        };
        self.record(server, check.to_string(), r);
    }
}

/// A UID the configuration neither exempts nor excludes for TCP.
fn app_uid(cfg: &Config, exempt: u32) -> u32 {
    (60000..=65534u32)
        .rev()
        .find(|u| {
            *u != exempt
                && !cfg
                    .redirect
                    .outbound
                    .exclude_uids
                    .iter()
                    .any(|x| x.uids.contains(*u) && x.protocols.contains(&Proto::Tcp))
        })
        .unwrap_or(65534)
}

/// The throwaway bench's map contents: the receipt's configuration with the
/// bench's namespace and address.
fn bench_contents(r: &Receipt, bench: &Bench) -> anyhow::Result<Contents> {
    let mut cfg = r.config.clone();
    cfg.ebpf.instance_ip = Some(IpAddr::V4(bench.addrs.host4));
    let cookie = on_thread(&bench.host, 0, || Ok(sys::netns_cookie()?))?;
    let facts = Facts {
        uid: r.uid,
        dns_servers: r.dns_servers.clone(),
        netns_cookie: cookie,
        inbound_ifindex: 0,
    };
    Contents::build(&cfg, &facts).map_err(anyhow::Error::msg)
}

/// Listeners: the redirect ports on the bench host (this process's threads,
/// so inside the throwaway cgroup), servers on the peer.
fn listeners(
    bench: &Bench,
    cfg: &Config,
    out_port: u16,
    in_port: u16,
    app_ports: &[u16],
    tx: &mpsc::Sender<Seen>,
) -> anyhow::Result<()> {
    let any4 = |p| SocketAddr::from((Ipv4Addr::UNSPECIFIED, p));
    let any6 = |p| SocketAddr::from((Ipv6Addr::UNSPECIFIED, p));
    let r = &cfg.redirect;
    for (port, tag) in [(r.outbound.port, "outbound"), (r.inbound.port, "inbound")] {
        sandbox::tcp_listener(&bench.host, any4(port), tag, tx.clone())?;
        sandbox::tcp_listener(&bench.host, any6(port), tag, tx.clone())?;
    }
    for port in app_ports {
        sandbox::tcp_listener(&bench.host, any4(*port), "application", tx.clone())?;
    }
    if r.dns.enabled {
        sandbox::udp_responder(
            &bench.host,
            0,
            (Ipv4Addr::LOCALHOST, r.dns.port).into(),
            "dns",
        )?;
        sandbox::udp_responder(
            &bench.host,
            0,
            (Ipv6Addr::LOCALHOST, r.dns.port).into(),
            "dns",
        )?;
    }
    let mut remote_ports = vec![out_port, in_port];
    remote_ports.extend(r.outbound.exclude_ports.iter().take(1));
    remote_ports.extend(
        r.outbound
            .exclude_uids
            .iter()
            .filter_map(|x| x.ports.first().map(|p| p.first))
            .take(1),
    );
    remote_ports.sort_unstable();
    remote_ports.dedup();
    for port in remote_ports {
        sandbox::tcp_listener(&bench.peer, any4(port), "remote", tx.clone())?;
        sandbox::tcp_listener(&bench.peer, any6(port), "remote", tx.clone())?;
    }
    Ok(())
}

/// The real-connection checks, with the programs attached to the bench.
fn connection_checks(run: &mut Run<'_>, r: &Receipt, c: &Contents, out_port: u16, in_port: u16) {
    let cfg = &r.config;
    let a = run.bench.addrs;
    let exempt = r.uid;
    let app = app_uid(cfg, exempt);
    let f = c.config.flags;
    let v6 = f & flag::IPV6 != 0;
    let remote4 = SocketAddr::from((a.peer4, out_port));
    let remote6 = SocketAddr::from((a.peer6, out_port));
    if f & flag::OUTBOUND != 0 {
        run.redirected(
            "outbound TCP (IPv4) is redirected",
            app,
            remote4,
            "outbound",
        );
        if v6 {
            run.redirected(
                "outbound TCP (IPv6) is redirected",
                app,
                remote6,
                "outbound",
            );
        }
        run.bypasses(
            "the kuma-dp UID is not redirected",
            exempt,
            remote4,
            "remote",
        );
        run.redirected(
            "kuma-dp's connection to the instance address goes to the inbound port",
            exempt,
            SocketAddr::from((a.host4, in_port)),
            "inbound",
        );
        if let Some(p) = cfg.redirect.outbound.exclude_ports.first()
            && cfg.redirect.outbound.include_ports.is_empty()
        {
            let dst = SocketAddr::from((a.peer4, *p));
            run.bypasses(
                &format!("excluded outbound port {p} bypasses"),
                app,
                dst,
                "remote",
            );
        }
        if let Some(x) = cfg
            .redirect
            .outbound
            .exclude_uids
            .iter()
            .find(|x| x.protocols.contains(&Proto::Tcp))
        {
            let port = x.ports.first().map(|p| p.first).unwrap_or(out_port);
            let dst = SocketAddr::from((a.peer4, port));
            run.bypasses(
                &format!("UID {} excluded for TCP port {port} bypasses", x.uids.first),
                x.uids.first,
                dst,
                "remote",
            );
        }
        if let Some(m) = cfg
            .redirect
            .outbound
            .exclude_ips
            .iter()
            .find(|m| m.is_ipv4())
        {
            let ip = m.net.hosts().next().unwrap_or(m.net.addr());
            let added = sandbox::add_local(&run.bench.peer, ip);
            let dst = SocketAddr::new(ip, out_port);
            match added {
                Ok(()) => run.bypasses(
                    &format!("excluded outbound address {m} bypasses"),
                    app,
                    dst,
                    "remote",
                ),
                Err(e) => run.record(
                    dst,
                    format!("excluded outbound address {m} bypasses"),
                    Err(format!("{e:#}")),
                ),
            }
        }
    }
    if f & flag::INBOUND != 0 {
        run.inbound(
            "inbound TCP (IPv4) is redirected",
            SocketAddr::from((a.host4, in_port)),
            "inbound",
        );
        if v6 {
            run.inbound(
                "inbound TCP (IPv6) is redirected",
                SocketAddr::from((a.host6, in_port)),
                "inbound",
            );
        }
        if cfg.redirect.inbound.include_ports.is_empty()
            && let Some(p) = cfg.redirect.inbound.exclude_ports.first()
        {
            run.inbound(
                &format!("excluded inbound port {p} bypasses"),
                SocketAddr::from((a.host4, *p)),
                "application",
            );
        }
    }
    if f & flag::DNS != 0 {
        let servers: Vec<IpAddr> = if f & flag::DNS_ALL != 0 {
            vec![IpAddr::V4(a.peer4), IpAddr::V6(a.peer6)]
        } else {
            r.dns_servers.clone()
        };
        for family_v4 in [true, false] {
            if !family_v4 && !v6 {
                continue;
            }
            if let Some(s) = servers.iter().find(|s| s.is_ipv4() == family_v4) {
                run.dns(
                    &format!("DNS over UDP to {s} is redirected"),
                    app,
                    SocketAddr::new(*s, 53),
                );
            }
        }
    }
}

/// `verify` of an eBPF install (exit 0 only when every check passes).
pub fn run(args: &VerifyArgs, r: &Receipt, path: &Path) -> anyhow::Result<Exit> {
    let e = r.ebpf.as_ref().expect("an eBPF receipt");
    let mut checks = Vec::new();
    let drift = super::ebpf::drift(e);
    checks.push(Check {
        part: Part::Live,
        family: None,
        check: "the installed programs are attached and the maps hold the configuration".into(),
        pass: drift.is_empty(),
        detail: if drift.is_empty() {
            format!(
                "{} links in {}",
                e.pinned.links.len(),
                e.pinned.dir.display()
            )
        } else {
            drift.join("; ")
        },
    });
    checks.push(Check {
        part: Part::Live,
        family: None,
        check: "the installed object is this tproxyctl's".into(),
        pass: e.object_sha256 == object::sha256(),
        detail: format!("sha256 {}", e.object_sha256),
    });

    let cfg = &r.config;
    let out_port = pick_port(
        &cfg.redirect.outbound.include_ports,
        &cfg.redirect.outbound.exclude_ports,
        8080,
    );
    let in_port = pick_port(
        &cfg.redirect.inbound.include_ports,
        &cfg.redirect.inbound.exclude_ports,
        8081,
    );
    let app_ports: Vec<u16> = cfg
        .redirect
        .inbound
        .exclude_ports
        .iter()
        .take(1)
        .copied()
        .collect();
    let bench = Bench::new("verify-ebpf", [10, 253, 78])?;
    let contents = bench_contents(r, &bench)?;
    let programs = object::programs_for(&contents);
    let own = OwnCgroup::enter().context("making a throwaway cgroup for the checks")?;
    let cg = own.path.clone();
    let c2 = contents.clone();
    let attached = on_thread(&bench.host, 0, move || {
        loader::load(&c2, &programs)?.attach(&cg)
    })
    .context("attaching the programs to the throwaway namespace and cgroup")?;
    let (tx, rx) = mpsc::channel();
    listeners(&bench, cfg, out_port, in_port, &app_ports, &tx)?;
    let mut run = Run {
        bench: &bench,
        seen: rx,
        checks: Vec::new(),
    };
    connection_checks(&mut run, r, &contents, out_port, in_port);
    drop(attached);
    drop(own);
    checks.extend(run.checks);
    report(args, path, checks)
}

fn report(args: &VerifyArgs, path: &Path, checks: Vec<Check>) -> anyhow::Result<Exit> {
    Report::new("ebpf", path, checks).finish(args.output, |out, rep| {
        writeln!(
            out,
            "verifying the eBPF install of {} (and its programs in a throwaway cgroup and network namespace)",
            rep.receipt
        )?;
        for c in &rep.checks {
            writeln!(
                out,
                "{}  {}: {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.check,
                c.detail
            )?;
        }
        writeln!(
            out,
            "{} checks: {} passed, {} failed",
            rep.checks.len(),
            rep.passed,
            rep.failed
        )
    })
}
