//! Resolving the kuma-dp user (a name or a UID) to a number, once, in-process,
//! so iptables never has to look a name up (reference §1.1, §1.6).

use nix::unistd::{Uid, User};

use crate::config::{DEFAULT_UID, DEFAULT_USER};
use crate::error::UsageError;

/// A resolved user: the number and how to name it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: Option<u32>,
    pub name: Option<String>,
}

fn by_uid(uid: u32) -> Option<User> {
    User::from_uid(Uid::from_raw(uid)).ok().flatten()
}

fn by_name(name: &str) -> Option<User> {
    User::from_name(name).ok().flatten()
}

fn from_user(u: User) -> ResolvedUser {
    ResolvedUser {
        uid: u.uid.as_raw(),
        gid: Some(u.gid.as_raw()),
        name: Some(u.name),
    }
}

/// Resolves `--kuma-dp-user`: a UID lookup first, then a name lookup; with
/// nothing given, UID 5678, then the user `kuma-dp`. A numeric UID without a
/// passwd entry is accepted (containers often run such UIDs) and reported in
/// `warnings`; an unknown name is an error.
pub fn resolve_kuma_dp_user(
    spec: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<ResolvedUser, UsageError> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => {
            if let Some(u) = by_uid(DEFAULT_UID) {
                return Ok(from_user(u));
            }
            if let Some(u) = by_name(DEFAULT_USER) {
                return Ok(from_user(u));
            }
            Err(UsageError::new(format!(
                "no UID or username provided, and user with the default UID ('{DEFAULT_UID}') or username ('{DEFAULT_USER}') could not be found; \
                 pass --kuma-dp-user with the user that runs kuma-dp"
            )))
        }
        Some(s) => {
            if let Ok(uid) = s.parse::<u64>() {
                if uid > crate::config::types::MAX_UID as u64 {
                    return Err(UsageError::new(format!(
                        "invalid value '{s}' for the kuma-dp user: UIDs go up to {}",
                        crate::config::types::MAX_UID
                    )));
                }
                let uid = uid as u32;
                if let Some(u) = by_uid(uid) {
                    return Ok(from_user(u));
                }
                if let Some(u) = by_name(s) {
                    return Ok(from_user(u));
                }
                warnings.push(format!(
                    "UID {uid} has no entry in the user database; rules use the number as given"
                ));
                return Ok(ResolvedUser {
                    uid,
                    gid: None,
                    name: None,
                });
            }
            by_name(s).map(from_user).ok_or_else(|| {
                UsageError::new(format!(
                    "the specified UID or username ('{s}') does not refer to a valid user on the host"
                ))
            })
        }
    }
}

/// Resolves any user name or UID (for the forwarder's `--user`).
pub fn resolve_user(spec: &str) -> Result<ResolvedUser, UsageError> {
    let mut warnings = Vec::new();
    resolve_kuma_dp_user(Some(spec), &mut warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_uid() {
        let mut w = Vec::new();
        assert_eq!(resolve_kuma_dp_user(Some("root"), &mut w).unwrap().uid, 0);
        assert_eq!(resolve_kuma_dp_user(Some("0"), &mut w).unwrap().uid, 0);
        assert!(w.is_empty());
    }

    #[test]
    fn unknown_names_are_errors_and_unknown_uids_warnings() {
        let mut w = Vec::new();
        let e = resolve_kuma_dp_user(Some("no-such-user-xyz"), &mut w).unwrap_err();
        assert!(e.0.contains("no-such-user-xyz"), "{}", e.0);
        let u = resolve_kuma_dp_user(Some("4000000000"), &mut w).unwrap();
        assert_eq!(u.uid, 4_000_000_000);
        assert_eq!(w.len(), 1);
        assert!(resolve_kuma_dp_user(Some("4294967295"), &mut w).is_err());
    }
}
