//! Facts about network interfaces and the `::6` loopback address: the
//! loopback interface's name (the first interface with IFF_LOOPBACK), whether
//! the host has IPv6 beyond loopback, and adding/removing `::6/128` on
//! loopback through netlink (what `ip -6 addr add ::6/128 dev lo` does).
//! Envoy-style inbound passthrough connects from `::6`, so the address must
//! exist for IPv6 (reference §2.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use anyhow::Context;
use futures_util::TryStreamExt;

/// `::6`, the IPv6 inbound passthrough source.
pub const PASSTHROUGH_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);

const IFF_LOOPBACK: u32 = 0x8;

/// The name of the loopback interface (lowest ifindex with IFF_LOOPBACK).
pub fn loopback_name() -> String {
    let mut best: Option<(u32, String)> = None;
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let dir = e.path();
            let flags = read_hex(&dir.join("flags"));
            let index = std::fs::read_to_string(dir.join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let (Some(flags), Some(index)) = (flags, index)
                && flags & IFF_LOOPBACK != 0
                && best.as_ref().is_none_or(|(i, _)| index < *i)
            {
                best = Some((index, e.file_name().to_string_lossy().into_owned()));
            }
        }
    }
    best.map(|(_, n)| n).unwrap_or_else(|| "lo".to_string())
}

fn read_hex(p: &Path) -> Option<u32> {
    let s = std::fs::read_to_string(p).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// One line of `/proc/net/if_inet6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6 {
    pub addr: Ipv6Addr,
    pub device: String,
}

/// IPv6 addresses of the host; empty when IPv6 is disabled.
pub fn inet6_addresses() -> Vec<Inet6> {
    let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let hex = f.next()?;
            let device = f.nth(4)?.to_string();
            let n = u128::from_str_radix(hex, 16).ok()?;
            Some(Inet6 {
                addr: Ipv6Addr::from(n),
                device,
            })
        })
        .collect()
}

/// True when some interface other than loopback has an IPv6 address
/// (link-local counts), the condition kumactl uses to write IPv6 rules.
pub fn has_ipv6(loopback: &str) -> bool {
    inet6_addresses().iter().any(|a| a.device != loopback)
}

/// True when `::6` is on the loopback interface.
pub fn has_passthrough_v6(loopback: &str) -> bool {
    inet6_addresses()
        .iter()
        .any(|a| a.device == loopback && a.addr == PASSTHROUGH_V6)
}

/// The destination a connection had before an iptables REDIRECT changed it:
/// `SO_ORIGINAL_DST` for IPv4 (also for IPv4 arriving v4-mapped on a
/// dual-stack socket), `IP6T_SO_ORIGINAL_DST` for IPv6.
pub fn original_dst(fd: std::os::fd::BorrowedFd<'_>, v6: bool) -> std::io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    if v6 {
        let a = getsockopt(&fd, sockopt::Ip6tOriginalDst)?;
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(a.sin6_addr.s6_addr),
            u16::from_be(a.sin6_port),
            a.sin6_flowinfo,
            a.sin6_scope_id,
        )))
    } else {
        let a = getsockopt(&fd, sockopt::OriginalDst)?;
        Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
            u16::from_be(a.sin_port),
        )))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the netlink runtime")
}

fn ifindex(name: &str) -> anyhow::Result<u32> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .with_context(|| format!("reading the index of interface {name}"))?;
    s.trim()
        .parse()
        .with_context(|| format!("parsing the index of interface {name}"))
}

/// Adds `::6/128` to the loopback interface. Returns `false` when it was
/// already there (then it is not ours to remove later).
pub fn add_passthrough_v6(loopback: &str) -> anyhow::Result<bool> {
    let index = ifindex(loopback)?;
    let rt = runtime()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        match handle
            .address()
            .add(index, IpAddr::V6(PASSTHROUGH_V6), 128)
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(false),
            Err(e) => Err(anyhow::anyhow!("adding ::6/128 to {loopback}: {e}")),
        }
    })
}

/// Removes `::6/128` from the loopback interface; absent is fine.
pub fn remove_passthrough_v6(loopback: &str) -> anyhow::Result<()> {
    let index = ifindex(loopback)?;
    let rt = runtime()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        let found: Vec<_> = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V6(PASSTHROUGH_V6))
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("listing the addresses of {loopback}"))?;
        for msg in found {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| anyhow::anyhow!("removing ::6/128 from {loopback}: {e}"))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_loopback_interface() {
        let lo = loopback_name();
        assert!(!lo.is_empty());
        if Path::new("/sys/class/net/lo").exists() {
            assert_eq!(lo, "lo");
        }
    }
}
