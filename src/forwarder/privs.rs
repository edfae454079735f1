//! Who the forwarder runs as: dropping root for `--user` after the listeners
//! are bound (capability bounding and ambient sets cleared while still root,
//! then supplementary groups, GID, UID; then the inheritable set and
//! `no_new_privs`; the result is checked in `/proc/self/status`), the socket
//! ownership of what is created before the drop ([`owned_by`]), and the check
//! that this UID is the one the installed rules exempt — any other UID would
//! have its own upstream connections redirected back to it.

use anyhow::{Context, bail};
use caps::CapSet;
use nix::unistd::{
    Gid, Uid, getegid, geteuid, getgid, getuid, setfsuid, setgid, setgroups, setuid,
};

use crate::host::receipt::Receipt;
use crate::host::users::ResolvedUser;

/// Runs `f` with the file-system UID set to `uid`, so that every socket it
/// creates is owned by `uid`.
///
/// The kernel records a socket's owner (`sk_uid`, what iptables' `-m owner
/// --uid-owner` and the conntrack zone rules match) once, when the socket is
/// created: it is the file-system UID of the creating thread
/// (`sock_alloc()` sets the socket inode's `i_uid` from `current_fsuid()`,
/// `sock_init_data()` copies it to `sk_uid`). A socket created as root keeps
/// UID 0 after the process drops root, so the DNS port's answers would leave
/// as root's and miss the zone-2 rule of `install --redirect-dns`. Changing
/// only the file-system UID keeps the capabilities binding needs
/// (`CAP_NET_BIND_SERVICE` for ports below 1024). Must run before any other
/// thread exists (the file-system UID is per thread).
pub fn owned_by<T>(uid: Option<u32>, f: impl FnOnce() -> T) -> T {
    let Some(uid) = uid.filter(|_| geteuid().is_root()) else {
        return f();
    };
    let before = setfsuid(Uid::from_raw(uid));
    let out = f();
    setfsuid(before);
    out
}

/// Becomes `user` for good. Must run before any thread is started.
pub fn drop_to(user: &ResolvedUser) -> anyhow::Result<()> {
    let gid = Gid::from_raw(user.gid.unwrap_or(user.uid));
    let uid = Uid::from_raw(user.uid);
    if geteuid() == uid && getuid() == uid {
        return Ok(());
    }
    // Dropping bounding-set capabilities needs CAP_SETPCAP: before setuid.
    // A supervisor may start us with a bounding set that lacks it (a
    // systemd unit's CapabilityBoundingSet=); what is left then is said
    // below, and it is harmless: nothing is permitted after setuid, and
    // no_new_privs keeps exec from granting it.
    let bounding = if uid.is_root() {
        Ok(())
    } else {
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| anyhow::anyhow!("clearing the ambient capabilities: {e}"))?;
        caps::clear(None, CapSet::Bounding)
    };
    setgroups(&[]).context("clearing supplementary groups (is the forwarder started as root?)")?;
    setgid(gid).with_context(|| format!("switching to GID {gid}"))?;
    setuid(uid).with_context(|| format!("switching to UID {uid}"))?;
    if getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid {
        bail!("switching to UID {uid} / GID {gid} did not take effect");
    }
    if uid.is_root() {
        return Ok(());
    }
    // setuid cleared the permitted, effective and ambient sets; the
    // inheritable set survives it.
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| anyhow::anyhow!("clearing the inheritable capabilities: {e}"))?;
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("root privileges could be regained after switching to UID {uid}");
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("setting no_new_privs: {}", std::io::Error::last_os_error());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(left) = capabilities_left(&status) {
        match (
            &bounding,
            left.split(", ").all(|c| c.starts_with("CapBnd ")),
        ) {
            (Err(e), true) => crate::ui::warn(format!(
                "the capability bounding set could not be cleared ({e}; give the forwarder \
                 CAP_SETPCAP in its bounding set to clear it): {left} stays, unusable \
                 (no capability is permitted and no_new_privs is set)"
            )),
            _ => bail!("capabilities are left after switching to UID {uid}: {left}"),
        }
    }
    Ok(())
}

/// The capability sets of a `/proc/PID/status` text that are not empty,
/// e.g. `CapBnd 000001ffffffffff`; `None` when all are.
pub fn capabilities_left(status: &str) -> Option<String> {
    let left: Vec<String> = status
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let v = v.trim();
            (k.starts_with("Cap") && u64::from_str_radix(v, 16).is_ok_and(|n| n != 0))
                .then(|| format!("{k} {v}"))
        })
        .collect();
    (!left.is_empty()).then(|| left.join(", "))
}

/// Refuses to start when an install receipt exempts another UID.
pub fn check_receipt(receipt: Option<&Receipt>, path: &str, uid: u32) -> anyhow::Result<()> {
    if let Some(r) = receipt
        && r.uid != uid
    {
        bail!(
            "the forwarder would run as UID {uid}, but the installed rules (receipt {path}) exempt UID {}: \
             its own upstream connections would be redirected back to it and loop. \
             Run it as that user (--user {}) or reinstall the rules with --kuma-dp-user {uid}",
            r.uid,
            r.uid,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets_are_read_from_proc_status() {
        let clean = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        assert_eq!(capabilities_left(clean), None);
        let root = clean.replace("CapBnd:\t0000000000000000", "CapBnd:\t000001ffffffffff");
        assert_eq!(
            capabilities_left(&root).as_deref(),
            Some("CapBnd 000001ffffffffff")
        );
    }

    #[test]
    fn receipt_with_another_uid_refuses() {
        let r: Receipt = serde_json::from_value(serde_json::json!({
            "version": 1, "tool": "t", "installedAt": 0,
            "config": crate::config::Config::default(),
            "uid": 5678, "loopback": "lo", "dnsServers": [], "families": [],
            "ipv6LoopbackAdded": false, "firewalld": null
        }))
        .unwrap();
        check_receipt(Some(&r), "/r.json", 5678).unwrap();
        check_receipt(None, "/r.json", 1).unwrap();
        let e = check_receipt(Some(&r), "/r.json", 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("UID 1") && e.contains("exempt UID 5678") && e.contains("loop"),
            "{e}"
        );
    }
}
