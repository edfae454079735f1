//! The `ebpf:` part of the configuration (kumactl 2.14's `--ebpf-*` flags,
//! `ebpf.*` keys and `KUMA_TRANSPARENT_PROXY_EBPF_*` variables, plus
//! tproxyctl's `allowCgroupRoot`): typed values, their checks, and the
//! cross-checks against settings the eBPF mode cannot honour. Host facts
//! (does the interface exist, is the path a cgroup) are checked by the
//! eBPF preflight, not here.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::layers::{Leaf, Source};
use super::{Config, Extract, invalid};
use crate::cli::EbpfFlags;
use crate::error::UsageError;

/// kumactl's defaults.
pub const DEFAULT_BPFFS_PATH: &str = "/run/kuma/bpf";
pub const DEFAULT_PROGRAMS_SOURCE_PATH: &str = "/tmp/kuma-ebpf";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EbpfConfig {
    pub enabled: bool,
    /// The address of this instance; required by install in eBPF mode
    /// (directly or through `instance_ip_env_var_name`).
    #[serde(rename = "instanceIP")]
    pub instance_ip: Option<IpAddr>,
    /// The environment variable holding the instance address (kumactl's
    /// Kubernetes knob), read when `instance_ip` is not set.
    #[serde(rename = "instanceIPEnvVarName")]
    pub instance_ip_env_var_name: Option<String>,
    pub bpffs_path: PathBuf,
    /// `None`: the host's cgroup2 mount point, found at install time.
    pub cgroup_path: Option<PathBuf>,
    /// Where install writes a copy of the BPF object it loads.
    pub programs_source_path: PathBuf,
    /// Redirect inbound traffic of this interface only.
    pub tc_attach_iface: Option<String>,
    /// Attaching to a cgroup root is refused unless this is set.
    pub allow_cgroup_root: bool,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            enabled: false,
            instance_ip: None,
            instance_ip_env_var_name: None,
            bpffs_path: PathBuf::from(DEFAULT_BPFFS_PATH),
            cgroup_path: None,
            programs_source_path: PathBuf::from(DEFAULT_PROGRAMS_SOURCE_PATH),
            tc_attach_iface: None,
            allow_cgroup_root: false,
        }
    }
}

/// The flag layer of the `--ebpf-*` flags that were given.
pub(super) fn flag_layer(f: &EbpfFlags, out: &mut Vec<(String, Leaf)>) {
    let mut put = |path: &str, flag: &str, value: Value| {
        out.push((
            path.to_string(),
            Leaf {
                value,
                source: Source::Flag(flag.to_string()),
            },
        ));
    };
    for (path, flag, v) in [
        ("ebpf.enabled", "ebpf-enabled", f.ebpf_enabled),
        (
            "ebpf.allowCgroupRoot",
            "ebpf-allow-cgroup-root",
            f.ebpf_allow_cgroup_root,
        ),
    ] {
        if let Some(b) = v {
            put(path, flag, Value::Bool(b));
        }
    }
    for (path, flag, v) in [
        ("ebpf.instanceIP", "ebpf-instance-ip", &f.ebpf_instance_ip),
        ("ebpf.bpffsPath", "ebpf-bpffs-path", &f.ebpf_bpffs_path),
        ("ebpf.cgroupPath", "ebpf-cgroup-path", &f.ebpf_cgroup_path),
        (
            "ebpf.programsSourcePath",
            "ebpf-programs-source-path",
            &f.ebpf_programs_source_path,
        ),
        (
            "ebpf.tcAttachIface",
            "ebpf-tc-attach-iface",
            &f.ebpf_tc_attach_iface,
        ),
    ] {
        if let Some(s) = v {
            put(path, flag, Value::String(s.clone()));
        }
    }
}

fn absolute_path(ex: &Extract<'_>, path: &str) -> Result<Option<PathBuf>, UsageError> {
    let Some(v) = ex.string(path)? else {
        return Ok(None);
    };
    // Empty means "not set" (the default), as for the other optional keys.
    if v.is_empty() {
        return Ok(None);
    }
    let leaf = ex.leaf(path).expect("string() found it");
    if v.trim().is_empty() || !v.starts_with('/') || v.contains('\0') {
        return Err(invalid(leaf, path, &v, "expected an absolute path"));
    }
    Ok(Some(PathBuf::from(v)))
}

/// Builds the `ebpf:` section from merged leaves.
pub(super) fn build(ex: &Extract<'_>) -> Result<EbpfConfig, UsageError> {
    let mut e = EbpfConfig::default();
    ex.bool("ebpf.enabled", &mut e.enabled)?;
    ex.bool("ebpf.allowCgroupRoot", &mut e.allow_cgroup_root)?;
    if let Some(v) = ex
        .string("ebpf.instanceIP")?
        .filter(|s| !s.trim().is_empty())
    {
        let leaf = ex.leaf("ebpf.instanceIP").expect("present");
        e.instance_ip = Some(v.trim().parse().map_err(|_| {
            invalid(
                leaf,
                "ebpf.instanceIP",
                &v,
                "not an IP address (e.g. 10.0.0.5 or fd00::5)",
            )
        })?);
    }
    if let Some(v) = ex
        .string("ebpf.instanceIPEnvVarName")?
        .filter(|s| !s.trim().is_empty())
    {
        e.instance_ip_env_var_name = Some(v.trim().to_string());
    }
    if let Some(p) = absolute_path(ex, "ebpf.bpffsPath")? {
        e.bpffs_path = p;
    }
    e.cgroup_path = absolute_path(ex, "ebpf.cgroupPath")?;
    if let Some(p) = absolute_path(ex, "ebpf.programsSourcePath")? {
        e.programs_source_path = p;
    }
    if let Some(v) = ex
        .string("ebpf.tcAttachIface")?
        .filter(|s| !s.trim().is_empty())
    {
        let leaf = ex.leaf("ebpf.tcAttachIface").expect("present");
        // IFNAMSIZ is 16 with the NUL; names have no '/', ':' or spaces.
        let ok = v.len() < 16
            && v != "."
            && v != ".."
            && !v.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !ok {
            return Err(invalid(
                leaf,
                "ebpf.tcAttachIface",
                &v,
                "not an interface name (at most 15 characters, no '/', ':' or spaces)",
            ));
        }
        e.tc_attach_iface = Some(v);
    }
    Ok(e)
}

/// Settings the eBPF mode cannot honour: an error when ignoring them would
/// change what is redirected, a warning when they only concern iptables.
pub(super) fn cross_checks(c: &Config, warnings: &mut Vec<String>) -> Result<(), UsageError> {
    if !c.ebpf.enabled {
        return Ok(());
    }
    if !c.redirect.vnet.networks.is_empty() {
        return Err(UsageError::new(
            "--vnet (redirect.vnet.networks) is not supported with --ebpf-enabled: \
             traffic routed from virtual networks is not seen by cgroup hooks; use the iptables mode",
        ));
    }
    for (set, what) in [
        (c.store_firewalld, "--store-firewalld"),
        (
            c.redirect.dns.skip_conntrack_zone_split,
            "--skip-dns-conntrack-zone-split",
        ),
        (c.log.enabled, "--iptables-logs"),
        (c.drop_invalid_packets, "--drop-invalid-packets"),
    ] {
        if set {
            warnings.push(format!(
                "{what} will be ignored when --ebpf-enabled is being used"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Inputs, Resolved, resolve};
    use super::*;
    use crate::cli::{ApplyFlags, TpFlags};

    fn run(
        tp: TpFlags,
        ebpf: EbpfFlags,
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> Result<Resolved, UsageError> {
        let mut tp = tp;
        let f = file.map(|text| {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), text).unwrap();
            f
        });
        if let Some(f) = &f {
            tp.config = vec![f.path().display().to_string()];
        }
        let apply = ApplyFlags {
            ebpf,
            ..ApplyFlags::default()
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(Inputs {
            tp: &tp,
            apply: Some(&apply),
            env: &env,
            stdin: &mut std::io::empty(),
        })
    }

    #[test]
    fn defaults_are_kumactls() {
        let c = run(TpFlags::default(), EbpfFlags::default(), &[], None)
            .unwrap()
            .config
            .ebpf;
        assert_eq!(c, EbpfConfig::default());
        assert!(!c.enabled);
        assert_eq!(c.bpffs_path, PathBuf::from("/run/kuma/bpf"));
        assert_eq!(c.programs_source_path, PathBuf::from("/tmp/kuma-ebpf"));
        assert_eq!(c.cgroup_path, None);
    }

    #[test]
    fn flags_env_and_files_in_kumactls_names() {
        let flags = EbpfFlags {
            ebpf_enabled: Some(true),
            ebpf_instance_ip: Some("10.0.0.5".into()),
            ebpf_bpffs_path: Some("/run/x/bpf".into()),
            ebpf_cgroup_path: Some("/sys/fs/cgroup/kuma.slice".into()),
            ebpf_programs_source_path: Some("/var/tmp/progs".into()),
            ebpf_tc_attach_iface: Some("eth1".into()),
            ebpf_allow_cgroup_root: Some(true),
        };
        let c = run(TpFlags::default(), flags, &[], None)
            .unwrap()
            .config
            .ebpf;
        assert!(c.enabled && c.allow_cgroup_root);
        assert_eq!(c.instance_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(c.bpffs_path, PathBuf::from("/run/x/bpf"));
        assert_eq!(
            c.cgroup_path,
            Some(PathBuf::from("/sys/fs/cgroup/kuma.slice"))
        );
        assert_eq!(c.programs_source_path, PathBuf::from("/var/tmp/progs"));
        assert_eq!(c.tc_attach_iface.as_deref(), Some("eth1"));

        let env = [
            ("KUMA_TRANSPARENT_PROXY_EBPF_ENABLED", "true"),
            ("KUMA_TRANSPARENT_PROXY_EBPF_INSTANCE_IP", "fd00::5"),
            ("KUMA_TRANSPARENT_PROXY_EBPF_TC_ATTACH_IFACE", "eth0"),
        ];
        let c = run(TpFlags::default(), EbpfFlags::default(), &env, None)
            .unwrap()
            .config
            .ebpf;
        assert!(c.enabled);
        assert_eq!(c.instance_ip, Some("fd00::5".parse().unwrap()));
        assert_eq!(c.tc_attach_iface.as_deref(), Some("eth0"));

        let file = "ebpf:\n  enabled: true\n  instanceIPEnvVarName: INSTANCE_IP\n  cgroupPath: /sys/fs/cgroup/unified/x\n";
        let r = run(TpFlags::default(), EbpfFlags::default(), &[], Some(file)).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let c = r.config.ebpf;
        assert!(c.enabled);
        assert_eq!(c.instance_ip_env_var_name.as_deref(), Some("INSTANCE_IP"));
        assert_eq!(
            c.cgroup_path,
            Some(PathBuf::from("/sys/fs/cgroup/unified/x"))
        );
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |flags: EbpfFlags, want: &[&str]| {
            let e = run(TpFlags::default(), flags, &[], None)
                .unwrap_err()
                .to_string();
            for w in want {
                assert!(e.contains(w), "{e} lacks {w}");
            }
        };
        bad(
            EbpfFlags {
                ebpf_instance_ip: Some("10.0.0.300".into()),
                ..EbpfFlags::default()
            },
            &["10.0.0.300", "--ebpf-instance-ip"],
        );
        bad(
            EbpfFlags {
                ebpf_bpffs_path: Some("run/kuma".into()),
                ..EbpfFlags::default()
            },
            &["run/kuma", "--ebpf-bpffs-path", "absolute"],
        );
        bad(
            EbpfFlags {
                ebpf_tc_attach_iface: Some("eth0/../x".into()),
                ..EbpfFlags::default()
            },
            &["eth0/../x", "--ebpf-tc-attach-iface"],
        );
        let e = run(
            TpFlags::default(),
            EbpfFlags::default(),
            &[("KUMA_TRANSPARENT_PROXY_EBPF_CGROUP_PATH", "relative")],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("KUMA_TRANSPARENT_PROXY_EBPF_CGROUP_PATH") && e.contains("relative"),
            "{e}"
        );
    }

    #[test]
    fn iptables_only_settings_are_refused_or_reported() {
        let on = EbpfFlags {
            ebpf_enabled: Some(true),
            ..EbpfFlags::default()
        };
        let tp = TpFlags {
            vnet: vec!["docker0:172.17.0.0/16".into()],
            ..TpFlags::default()
        };
        let e = run(tp, on.clone(), &[], None).unwrap_err().to_string();
        assert!(e.contains("--vnet") && e.contains("--ebpf-enabled"), "{e}");
        let tp = TpFlags {
            skip_dns_conntrack_zone_split: Some(true),
            ..TpFlags::default()
        };
        let r = run(tp, on, &[], None).unwrap();
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("--skip-dns-conntrack-zone-split will be ignored")),
            "{:?}",
            r.warnings
        );
    }
}
