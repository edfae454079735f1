//! `tproxyctl install transparent-proxy-validator`: kumactl's validator
//! (reference §5). A server listens on 127.0.0.1:<port> (and [::1]); a client
//! bound to 127.0.0.1 dials 127.0.0.6:<random 20000–29999> (and [::6]). Only
//! the hairpin rule `KUMA_MESH_OUTBOUND -o lo ! -d 127.0.0.1 -m owner
//! --uid-owner <kuma-dp> -j KUMA_MESH_INBOUND_REDIRECT` can make that
//! connection reach the server, so it must run as the kuma-dp user and before
//! anything else binds the inbound port. For a complete check use `verify`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::Exit;
use crate::cli::{TpFlags, ValidatorArgs};
use crate::config::{self, IpFamilyMode, types};
use crate::error::UsageError;
use crate::host::netif;
use crate::ui;

const ATTEMPTS: u32 = 10;
const INTERVAL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(50);

/// What the validator checks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub mode: IpFamilyMode,
    pub port: u16,
}

fn settings(args: &ValidatorArgs) -> Result<Settings, UsageError> {
    if args.config_file.is_some() {
        ui::warn(
            "--config-file is kumactl's root flag for its own configuration; the validator ignores it, as kumactl's does",
        );
    }
    if !args.transparent_proxy_config.is_empty() {
        // A kuma-dp style config overrides both flags (reference §5).
        let tp = TpFlags {
            config: args.transparent_proxy_config.clone(),
            ..TpFlags::default()
        };
        let r = config::resolve_process(&tp, None)?;
        for w in &r.warnings {
            ui::warn(w);
        }
        return Ok(Settings {
            mode: r.config.ip_family_mode,
            port: r.config.redirect.inbound.port,
        });
    }
    let mode = match &args.ip_family_mode {
        Some(m) => IpFamilyMode::parse(m).map_err(|why| {
            UsageError::new(format!("invalid value '{m}' for --ip-family-mode: {why}"))
        })?,
        None => IpFamilyMode::DualStack,
    };
    let port = match &args.validation_server_port {
        Some(p) => types::parse_port(p).map_err(|why| {
            UsageError::new(format!(
                "invalid value '{p}' for --validation-server-port: {why}"
            ))
        })?,
        None => 15006,
    };
    Ok(Settings { mode, port })
}

fn random_port() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    20000 + (nanos ^ std::process::id()) as u16 % 10000
}

fn bound_client(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6};
    let fam = if source.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    match source {
        IpAddr::V4(a) => socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(std::net::SocketAddrV4::new(a, 0)),
        )?,
        IpAddr::V6(a) => socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(a, 0, 0, 0)),
        )?,
    }
    let stream = TcpStream::from(fd);
    // std has no connect-with-timeout on an existing socket: a non-blocking
    // connect, then wait for writability.
    stream.set_nonblocking(true)?;
    let sa: nix::sys::socket::SockaddrStorage = target.into();
    match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&stream), &sa) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => {
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&stream),
                nix::poll::PollFlags::POLLOUT,
            )];
            let ms = CONNECT_TIMEOUT.as_millis() as u16;
            let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms))?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ));
            }
            if let Some(e) = stream.take_error()? {
                return Err(e);
            }
        }
        Err(e) => return Err(e.into()),
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Checks one family: Ok(the address the server reported).
pub fn validate_family(server_ip: IpAddr, dial_ip: IpAddr, port: u16) -> anyhow::Result<String> {
    let listener = TcpListener::bind(SocketAddr::new(server_ip, port)).with_context(|| {
        format!(
            "starting the validation server on {}",
            SocketAddr::new(server_ip, port)
        )
    })?;
    let shown = server_ip.to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(shown.as_bytes());
        }
    });
    let target = SocketAddr::new(dial_ip, random_port());
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        match bound_client(server_ip, target) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut got = String::new();
                let _ = s.read_to_string(&mut got);
                return Ok(got);
            }
            Err(e) => {
                last = Some(e);
                if attempt < ATTEMPTS {
                    std::thread::sleep(INTERVAL);
                }
            }
        }
    }
    anyhow::bail!(
        "validation failed: client failed to connect to the verification server after retries - most likely the transparent proxy is not established correctly, please check CNI logs (last error dialling {target}: {})",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
}

pub fn run(args: &ValidatorArgs) -> anyhow::Result<Exit> {
    let s = settings(args)?;
    let got = validate_family(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6)),
        s.port,
    )?;
    ui::info(format!(
        "[IPv4] validation succeeded: the connection to 127.0.0.6 was redirected to the server on {got}:{}",
        s.port
    ));
    let lo = netif::loopback_name();
    if s.mode == IpFamilyMode::DualStack && netif::has_ipv6(&lo) {
        let got = validate_family(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(netif::PASSTHROUGH_V6),
            s.port,
        )?;
        ui::info(format!(
            "[IPv6] validation succeeded: the connection to ::6 was redirected to the server on [{got}]:{}",
            s.port
        ));
    }
    Ok(Exit::Success)
}
