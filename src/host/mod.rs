//! The only code that touches the machine: finding and running the iptables
//! executables, probing features, reading resolv.conf and users, the loopback
//! interface and its `::6` address, and the install receipt.

pub mod apply;
pub mod backend;
pub mod canonical;
pub mod exec;
pub mod lock;
pub mod netif;
pub mod readback;
pub mod receipt;
pub mod resolv;
pub mod rollback;
pub mod sandbox;
pub mod save;
pub mod users;

pub use receipt::Mode;

/// True when running as root (UID 0): applying rules needs it.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when something listens on TCP `port` (IPv4 or IPv6), from
/// /proc/net/tcp{,6} (state 0A is LISTEN).
pub fn tcp_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                let mut f = l.split_whitespace();
                let local = f.nth(1);
                let state = f.nth(1);
                state == Some("0A")
                    && local
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                        == Some(port)
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(tcp_listening(port));
        drop(l);
    }
}
