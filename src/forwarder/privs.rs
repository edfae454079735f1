//! Who the forwarder runs as: dropping root for `--user` after the listeners
//! are bound (supplementary groups cleared, then GID, then UID; nothing kept),
//! and the check that this UID is the one the installed rules exempt — any
//! other UID would have its own upstream connections redirected back to it.

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, getegid, geteuid, getgid, getuid, setgid, setgroups, setuid};

use crate::host::receipt::Receipt;
use crate::host::users::ResolvedUser;

/// Becomes `user` for good. Must run before any thread is started.
pub fn drop_to(user: &ResolvedUser) -> anyhow::Result<()> {
    let gid = Gid::from_raw(user.gid.unwrap_or(user.uid));
    let uid = Uid::from_raw(user.uid);
    if geteuid() == uid && getuid() == uid {
        return Ok(());
    }
    setgroups(&[]).context("clearing supplementary groups (is the forwarder started as root?)")?;
    setgid(gid).with_context(|| format!("switching to GID {gid}"))?;
    setuid(uid).with_context(|| format!("switching to UID {uid}"))?;
    if getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid {
        bail!("switching to UID {uid} / GID {gid} did not take effect");
    }
    if !uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        bail!("root privileges could be regained after switching to UID {uid}");
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    Ok(())
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
