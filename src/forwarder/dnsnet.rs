//! Which DNS queries the proxy answers, and the UDP I/O that tells.
//!
//! Without virtual networks the DNS port is bound to `127.0.0.1` / `::1`
//! only: the rules redirect applications' UDP/53 there (REDIRECT in OUTPUT
//! rewrites the destination to the loopback address) and no other host can
//! reach it. With `--vnet`, containers' UDP/53 arriving on a bridge is
//! redirected to the bridge's own address, so the port is also bound to the
//! wildcard address — and then it must not become an open resolver (a
//! 29-byte query for a large answer is an amplifier). On those wildcard
//! sockets each datagram's arrival interface and destination are read with
//! `IP_PKTINFO` / `IPV6_RECVPKTINFO`, and a query is answered only when the
//! redirect rules could have delivered it: it came in on a loopback
//! interface (from this host), or on an interface a `--vnet` entry names
//! (`docker0`, or a `br+` prefix) from an address of that entry's subnet.
//! Anything else is dropped and counted. The answer leaves from the address
//! the query was sent to, so conntrack maps it back to the name server the
//! container asked.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage,
    recvmsg, sendmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::config::VnetNetwork;

/// A datagram received on a wildcard socket.
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// The address it was sent to (the reply's source).
    pub to: IpAddr,
    /// The interface it arrived on.
    pub ifindex: u32,
}

/// Asks the kernel to report each datagram's destination and interface.
pub fn enable_pktinfo(sock: &std::net::UdpSocket, v6: bool) -> io::Result<()> {
    let r = if v6 {
        setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(sock, sockopt::Ipv4PacketInfo, &true)
    };
    r.map_err(io::Error::from)
}

/// Receives one datagram with its packet information.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    sock.async_io(Interest::READABLE, || {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let from = msg
            .address
            .and_then(|a| {
                a.as_sockaddr_in()
                    .map(|a| SocketAddr::V4(SocketAddrV4::from(*a)))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|a| SocketAddr::V6(SocketAddrV6::from(*a)))
                    })
            })
            .ok_or_else(|| io::Error::other("datagram without a source address"))?;
        let mut to = None;
        let mut ifindex = 0;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    to = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr))));
                    ifindex = i.ipi_ifindex as u32;
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    to = Some(IpAddr::V6(Ipv6Addr::from(i.ipi6_addr.s6_addr)));
                    ifindex = i.ipi6_ifindex;
                }
                _ => {}
            }
        }
        let to = to.ok_or_else(|| io::Error::other("datagram without packet information"))?;
        Ok(Datagram {
            len: msg.bytes,
            from: super::net::canonical(from),
            to,
            ifindex,
        })
    })
    .await
}

/// Sends `bytes` to `to` from the local address `from` (where the query went).
pub async fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<()> {
    sock.async_io(Interest::WRITABLE, || {
        let iov = [IoSlice::new(bytes)];
        let r = match (to, from) {
            (SocketAddr::V4(to), IpAddr::V4(from)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(from).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                sendmsg(
                    sock.as_raw_fd(),
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&SockaddrIn::from(to)),
                )
            }
            (SocketAddr::V6(to), IpAddr::V6(from)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: from.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                sendmsg(
                    sock.as_raw_fd(),
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&SockaddrIn6::from(to)),
                )
            }
            _ => return Err(io::Error::other("address families differ")),
        };
        r.map(|_| ()).map_err(io::Error::from)
    })
    .await
}

/// One network interface as the admission check needs it.
#[derive(Debug, Clone)]
struct Iface {
    name: String,
    loopback: bool,
    /// When it was looked up.
    at: Instant,
}

/// Decides which datagrams on a wildcard socket are answered.
#[derive(Debug)]
pub struct Admission {
    /// `--vnet` entries: interface name (a trailing `+` is a prefix) and subnet.
    vnets: Vec<(String, IpNet)>,
    /// Interface index → name and flags, looked up again when old.
    cache: Mutex<HashMap<u32, Iface>>,
}

/// How long an interface lookup is trusted (interfaces come and go with
/// containers; an index is not reused at once).
const IFACE_CACHE: Duration = Duration::from_secs(5);

impl Admission {
    pub fn new(vnets: &[VnetNetwork]) -> Self {
        Admission {
            vnets: vnets
                .iter()
                .map(|v| (v.interface.clone(), v.cidr.net))
                .collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// True when the rules could have delivered this datagram.
    pub fn admits(&self, d: &Datagram) -> bool {
        let Some(iface) = self.iface(d.ifindex) else {
            return false;
        };
        iface.loopback || self.in_vnet(&iface.name, d.from.ip())
    }

    fn in_vnet(&self, iface: &str, src: IpAddr) -> bool {
        self.vnets.iter().any(|(pattern, net)| {
            let name_ok = match pattern.strip_suffix('+') {
                Some(prefix) => iface.starts_with(prefix),
                None => iface == pattern,
            };
            name_ok && net.contains(&src)
        })
    }

    fn iface(&self, index: u32) -> Option<Iface> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match c.get(&index) {
            Some(i) if i.at.elapsed() < IFACE_CACHE => Some(i.clone()),
            _ => {
                let i = interface(index)?;
                c.insert(index, i.clone());
                Some(i)
            }
        }
    }
}

/// The name and loopback flag of interface `index`, with two ioctls on an
/// AF_INET socket (`if_indextoname`, `SIOCGIFFLAGS`): no netlink socket,
/// which a unit's `RestrictAddressFamilies=` may forbid.
fn interface(index: u32) -> Option<Iface> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    if unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into the buffer.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).ok()?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_ifru.ifru_flags of
    // the ifreq it is given, which lives for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return None;
    }
    // SAFETY: after SIOCGIFFLAGS the flags member is the one written.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Some(Iface {
        name,
        loopback: i32::from(flags) & libc::IFF_LOOPBACK != 0,
        at: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_interfaces_match_by_name_or_prefix_and_subnet() {
        let a = Admission::new(&[
            VnetNetwork::parse("docker0:172.17.0.0/16").unwrap(),
            VnetNetwork::parse("br+:fd00:18::/64").unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(a.in_vnet("docker0", ip("172.17.0.2")));
        assert!(!a.in_vnet("docker0", ip("10.0.0.2")), "outside the subnet");
        assert!(!a.in_vnet("docker1", ip("172.17.0.2")), "another interface");
        assert!(a.in_vnet("br-1234", ip("fd00:18::5")));
        assert!(!a.in_vnet("br-1234", ip("172.17.0.2")));
        assert!(!a.in_vnet("eth0", ip("fd00:18::5")));
    }

    #[test]
    fn the_loopback_interface_is_found() {
        let lo = nix::net::if_::if_nametoindex("lo").unwrap();
        let i = interface(lo).unwrap();
        assert_eq!(i.name, "lo");
        assert!(i.loopback);
        assert!(interface(u32::MAX).is_none());
    }
}
