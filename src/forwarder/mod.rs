//! The bundled data plane (SPEC §7): listeners on the redirect ports that
//! relay each connection to its original destination — through its mesh
//! service's cluster when the destination is an inbound of the mesh's
//! `Dataplane` files ([`mesh`], [`route`]), through the passthrough clusters
//! otherwise — with the seeds' non-mesh limits and timeouts, the passthrough
//! switch of `Mesh` / `MeshPassthrough` for non-mesh traffic, statistics on
//! an admin address, an access log, and a DNS proxy that also answers
//! `<service>.mesh`. This file owns start-up and shutdown: resolve, check,
//! bind (sockets owned by the user it will run as), drop privileges, open
//! the access log, run, reload on SIGHUP ([`reload`]), drain.

pub mod accesslog;
pub mod admin;
pub mod cluster;
pub mod dns;
pub mod dnsnet;
pub mod guard;
pub mod mesh;
pub mod net;
pub mod options;
pub mod policy;
pub mod privs;
pub mod proxy;
pub mod relay;
pub mod reload;
pub mod route;
pub mod settings;
pub mod stats;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::Exit;
use crate::cli::forwarder::ForwarderArgs;
use crate::ui;
use options::Options;
use settings::Settings;

/// A DNS socket and who may use it.
struct DnsUdp {
    sock: std::net::UdpSocket,
    /// Wildcard socket of virtual-network mode: queries are checked.
    admission: Option<Arc<dnsnet::Admission>>,
}

/// Sockets bound while still privileged.
struct Bound {
    outbound: Option<std::net::TcpListener>,
    inbound: Option<std::net::TcpListener>,
    dns_udp: Vec<DnsUdp>,
    dns_tcp: Vec<std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
    dual_stack: bool,
}

pub fn run(args: &ForwarderArgs) -> anyhow::Result<Exit> {
    let resolved = crate::config::resolve_process(&args.tp, None)?;
    let opts = options::resolve(args, resolved.config, resolved.warnings)?;
    for w in &opts.warnings {
        ui::warn(w);
    }
    let mut warnings = Vec::new();
    if args.fwd.print_config {
        let settings = Settings::build(opts, None, &mut warnings)?;
        warnings.iter().for_each(ui::warn);
        let yaml = serde_yaml::to_string(&settings.effective())
            .context("writing the effective settings")?;
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(yaml.as_bytes())?;
        out.flush()?;
        return Ok(Exit::Success);
    }
    if let Some(s) = opts.mesh.summary() {
        ui::info(s);
    }
    let run_uid = opts
        .user
        .as_ref()
        .map(|u| u.uid)
        .unwrap_or_else(|| nix::unistd::getuid().as_raw());
    check_uid(&opts, run_uid)?;
    let settings = Settings::build(opts, None, &mut warnings)?;
    warnings.iter().for_each(ui::warn);
    net::raise_nofile_limit();
    let opts = &settings.opts;
    let bound = bind_all(opts, opts.user.as_ref().map(|u| u.uid))?;
    if let Some(u) = &opts.user {
        privs::drop_to(u)?;
    }
    // As the user it runs as (see accesslog.rs).
    let access_log = opts
        .access_log
        .as_deref()
        .map(accesslog::AccessLog::open)
        .transpose()?;
    let workers = match opts.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let rt = rt
        .enable_all()
        .build()
        .context("starting the forwarder's runtime")?;
    let exit = rt.block_on(serve(args.clone(), settings, bound, access_log, workers));
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    exit
}

/// Refuses to start as a UID other than the one an install receipt exempts;
/// without a receipt, a mismatch with the configured kuma-dp user is a warning
/// (the rules may come from kumactl).
fn check_uid(opts: &Options, uid: u32) -> anyhow::Result<()> {
    let path = opts.receipt.display().to_string();
    let receipt = match crate::host::receipt::load(&opts.receipt) {
        Ok(r) => r,
        Err(e) => {
            ui::warn(format!(
                "cannot check the installed rules' UID: {}",
                crate::render_error(&e)
            ));
            None
        }
    };
    privs::check_receipt(receipt.as_ref(), &path, uid)?;
    if receipt.is_none() {
        let mut w = Vec::new();
        if let Ok(u) =
            crate::host::users::resolve_kuma_dp_user(opts.config.kuma_dp_user.as_deref(), &mut w)
            && u.uid != uid
        {
            ui::warn(format!(
                "the forwarder runs as UID {uid} but the configured kuma-dp user is UID {}; \
                 unless the rules exempt UID {uid}, its connections will loop (they are refused and counted)",
                u.uid
            ));
        }
    }
    Ok(())
}

fn listen_err(what: &str, port: u16, e: std::io::Error) -> anyhow::Error {
    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
        " (the port is taken: is another forwarder or kuma-dp running?)"
    } else {
        ""
    };
    anyhow::Error::new(e).context(format!("cannot listen on the {what} port {port}{hint}"))
}

/// Binds every socket. Those that answer or connect towards the network
/// are created owned by `uid`, the user the forwarder is about to become
/// (see [`privs::owned_by`]); the exception is the DNS port's wildcard
/// sockets of virtual-network mode (below).
fn bind_all(opts: &Options, uid: Option<u32>) -> anyhow::Result<Bound> {
    let mut b = privs::owned_by(uid, || bind_owned(opts))?;
    if let Some((port, _)) = &opts.dns
        && !opts.config.redirect.vnet.networks.is_empty()
    {
        // Containers' DNS reaches the bridge's address. Their queries are in
        // conntrack zone 0, and the answers must be too: the rules put the
        // DNS port's answers in zone 2 when the exempt UID owns the socket
        // (that zone holds the host's own redirected queries), where these
        // answers would not be mapped back to the server the container
        // asked. So these sockets keep the owner of the process that binds
        // them (root under --user).
        let admission = Arc::new(dnsnet::Admission::new(&opts.config.redirect.vnet.networks));
        let mut any = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
        if b.dual_stack {
            any.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        for ip in any {
            let a = SocketAddr::new(ip, *port);
            let sock = net::udp_socket(a, true).map_err(|e| listen_err("DNS (UDP)", *port, e))?;
            dnsnet::enable_pktinfo(&sock, ip.is_ipv6())
                .map_err(|e| listen_err("DNS (UDP)", *port, e))?;
            b.dns_udp.push(DnsUdp {
                sock,
                admission: Some(admission.clone()),
            });
        }
    }
    Ok(b)
}

fn bind_owned(opts: &Options) -> anyhow::Result<Bound> {
    let mut dual_stack = opts.ipv6;
    let mut tcp = |port: Option<u16>, what: &str| -> anyhow::Result<_> {
        port.map(|p| {
            net::bind_tcp(p, opts.ipv6, 4096, opts.client_keepalive)
                .map(|(l, v6)| {
                    dual_stack &= v6;
                    l
                })
                .map_err(|e| listen_err(what, p, e))
        })
        .transpose()
    };
    let outbound = tcp(opts.outbound_port, "outbound redirect")?;
    let inbound = tcp(opts.inbound_port, "inbound redirect")?;
    let mut dns_udp = Vec::new();
    let mut dns_tcp = Vec::new();
    if let Some((port, _)) = &opts.dns {
        // The rules redirect the host's UDP/53 to the loopback address; TCP
        // DNS is never redirected to this port (applications' TCP/53 goes
        // to the server, containers' to the outbound port), so TCP is for
        // clients on this host only. See dnsnet.rs for virtual networks.
        let vnet = !opts.config.redirect.vnet.networks.is_empty();
        let mut loopback = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        if dual_stack {
            loopback.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
        for ip in loopback {
            let a = SocketAddr::new(ip, *port);
            let sock = net::udp_socket(a, vnet).map_err(|e| listen_err("DNS (UDP)", *port, e))?;
            dns_udp.push(DnsUdp {
                sock,
                admission: None,
            });
            let l = net::tcp_listener(a, 1024).map_err(|e| listen_err("DNS (TCP)", *port, e))?;
            dns_tcp.push(l);
        }
    }
    let admin = opts
        .admin
        .map(|a| net::tcp_listener(a, 128).map_err(|e| listen_err("admin", a.port(), e)))
        .transpose()?;
    Ok(Bound {
        outbound,
        inbound,
        dns_udp,
        dns_tcp,
        admin,
        dual_stack,
    })
}

async fn serve(
    args: ForwarderArgs,
    settings: Settings,
    bound: Bound,
    access_log: Option<accesslog::AccessLog>,
    workers: usize,
) -> anyhow::Result<Exit> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    if settings.opts.inbound_port.is_some() && bound.dual_stack && !net::is_local("::6".parse()?) {
        ui::warn(
            "::6 is not on the loopback interface: inbound IPv6 connections cannot be relayed from ::6 \
             and will fail (install adds it; or: ip -6 addr add ::6/128 dev lo)",
        );
    }
    let sh = Arc::new(proxy::Shared::new(settings, access_log));
    // A short periodic timer keeps the timer driver's next wake-up near, so
    // registering a connection's connect or idle timer (always later) never
    // has to interrupt the driver (one eventfd write per connection otherwise).
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tick.tick().await;
        }
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut summary = Vec::new();
    for (l, inbound, what) in [
        (bound.outbound, false, "outbound"),
        (bound.inbound, true, "inbound"),
    ] {
        if let Some(l) = l {
            summary.push(format!("{what} {}", l.local_addr()?));
            let (sh, stop) = (sh.clone(), stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = proxy::serve(l, inbound, sh, stop).await {
                    ui::warn(format!("the {what} listener stopped: {e}"));
                }
            });
        }
    }
    let d = Arc::new(dns::Dns {
        inflight: tokio::sync::Semaphore::new(1024),
    });
    for s in bound.dns_udp {
        let sock = tokio::net::UdpSocket::from_std(s.sock)?;
        let checked = if s.admission.is_some() {
            " (checked)"
        } else {
            ""
        };
        summary.push(format!("dns udp {}{checked}", sock.local_addr()?));
        tokio::spawn(dns::serve_udp(
            sock,
            s.admission,
            d.clone(),
            sh.clone(),
            stop_rx.clone(),
        ));
    }
    for l in bound.dns_tcp {
        let l = tokio::net::TcpListener::from_std(l)?;
        summary.push(format!("dns tcp {}", l.local_addr()?));
        tokio::spawn(dns::serve_tcp(l, sh.clone(), stop_rx.clone()));
    }
    if let Some(l) = bound.admin {
        let l = tokio::net::TcpListener::from_std(l)?;
        summary.push(format!("admin http://{}", l.local_addr()?));
        tokio::spawn(admin::serve(l, sh.clone()));
    }
    ui::info(format!(
        "forwarder running as UID {} with {workers} worker(s): {}",
        nix::unistd::geteuid(),
        summary.join(", ")
    ));
    let reloader = Arc::new(reload::Reloader::new(args));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reloader.clone().reload(&sh).await,
        }
    }
    drain(&sh, stop_tx).await;
    Ok(Exit::Success)
}

/// Stops accepting, waits for open connections up to the drain timeout,
/// then cuts the rest (each resets both sides and logs `end=drained`).
async fn drain(sh: &proxy::Shared, stop_tx: watch::Sender<bool>) {
    let drain_timeout = sh.settings.load().opts.drain_timeout;
    let open = sh.open.load(Relaxed);
    ui::info(format!(
        "stopping: no new connections; waiting up to {} for {open} open connection(s)",
        humantime::format_duration(drain_timeout)
    ));
    sh.draining.store(true, Relaxed);
    let _ = stop_tx.send(true);
    if proxy::drain(sh, drain_timeout).await {
        ui::info("all connections closed");
        return;
    }
    let left = sh.open.load(Relaxed);
    ui::info(format!(
        "drain deadline passed; resetting {left} connection(s)"
    ));
    sh.cut_all();
    // The cut connections log and count themselves; this is quick.
    if !proxy::drain(sh, Duration::from_secs(2)).await {
        ui::warn(format!(
            "{} connection(s) did not finish after being reset",
            sh.open.load(Relaxed)
        ));
    }
}
