//! Unit tests of configuration resolution: precedence, merging, environment
//! with and without files, and the error messages of invalid values.

use super::*;
use crate::cli::{ApplyFlags, TpFlags};
use std::io::Write;

fn resolve_with(
    tp: &TpFlags,
    apply: Option<&ApplyFlags>,
    env: &[(&str, &str)],
    stdin: &str,
) -> Result<Resolved, UsageError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut input = stdin.as_bytes();
    resolve(Inputs {
        tp,
        apply,
        env: &env,
        stdin: &mut input,
    })
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_match_kumactl() {
    let r = resolve_with(&TpFlags::default(), None, &[], "").unwrap();
    let c = r.config;
    assert_eq!(c, Config::default());
    assert_eq!(c.redirect.inbound.port, 15006);
    assert_eq!(c.redirect.outbound.port, 15001);
    assert_eq!(c.redirect.dns.port, 15053);
    assert_eq!(c.wait, 5);
    assert_eq!(c.retry.max_retries, 4);
    assert_eq!(c.retry.sleep_between_retries, Duration::from_secs(2));
    assert_eq!(c.ip_family_mode, IpFamilyMode::DualStack);
    assert!(r.warnings.is_empty());
}

#[test]
fn precedence_files_then_env_then_flags() {
    // The multi-source example of reference §1.5.
    let one = file("redirect:\n  dns:\n    enabled: false\n    port: 7777\n");
    let two = file(
        "redirect:\n  dns: {enabled: true, port: 8888}\n  outbound:\n    excludePortsForIPs: [10.11.12.13, 172.14.15.16/32]\n  inbound:\n    excludePorts: [10000, 20000]\n",
    );
    let tp = TpFlags {
        config: vec![
            one.path().display().to_string(),
            two.path().display().to_string(),
            "-".to_string(),
        ],
        ..Default::default()
    };
    let stdin = "redirect:\n  inbound:\n    excludePorts: [4444, 55555]\n  outbound:\n    excludePortsForIPs: [192.168.0.1]\n";
    let c = resolve_with(&tp, None, &[], stdin).unwrap().config;
    assert!(c.redirect.dns.enabled);
    assert_eq!(c.redirect.dns.port, 8888);
    assert_eq!(c.redirect.inbound.exclude_ports, vec![4444, 55555]);
    assert_eq!(c.redirect.outbound.exclude_ips.len(), 1);
    assert_eq!(c.redirect.outbound.exclude_ips[0].text, "192.168.0.1");

    // env beats files, flags beat env
    let c = resolve_with(
        &tp,
        None,
        &[
            ("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT", "9999"),
            (
                "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_EXCLUDE_PORTS",
                "1,2",
            ),
        ],
        stdin,
    )
    .unwrap()
    .config;
    assert_eq!(c.redirect.dns.port, 9999);
    assert_eq!(c.redirect.inbound.exclude_ports, vec![1, 2]);

    let tp2 = TpFlags {
        redirect_dns_port: Some("1234".into()),
        exclude_inbound_ports: Some("7".into()),
        ..tp.clone()
    };
    let c = resolve_with(
        &tp2,
        None,
        &[("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT", "9999")],
        stdin,
    )
    .unwrap()
    .config;
    assert_eq!(c.redirect.dns.port, 1234);
    assert_eq!(c.redirect.inbound.exclude_ports, vec![7]);
}

#[test]
fn env_applies_without_any_config_file() {
    let c = resolve_with(
        &TpFlags::default(),
        None,
        &[
            ("KUMA_TRANSPARENT_PROXY_IP_FAMILY_MODE", "IPv4"),
            ("KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_CAPTURE_ALL", "true"),
            (
                "KUMA_TRANSPARENT_PROXY_RETRY_SLEEP_BETWEEN_RETRIES",
                "500ms",
            ),
        ],
        "",
    )
    .unwrap()
    .config;
    assert_eq!(c.ip_family_mode, IpFamilyMode::Ipv4);
    assert!(c.redirect.dns.capture_all);
    assert!(c.redirect.dns.enabled, "captureAll implies enabled");
    assert_eq!(c.retry.sleep_between_retries, Duration::from_millis(500));
}

#[test]
fn durations_everywhere() {
    let apply = ApplyFlags {
        sleep_between_retries: Some("2s".into()),
        ..Default::default()
    };
    let c = resolve_with(&TpFlags::default(), Some(&apply), &[], "")
        .unwrap()
        .config;
    assert_eq!(c.retry.sleep_between_retries, Duration::from_secs(2));
    let f = file("retry: {sleepBetweenRetries: 1m}\n");
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let c = resolve_with(&tp, None, &[], "").unwrap().config;
    assert_eq!(c.retry.sleep_between_retries, Duration::from_secs(60));
    // a bare number in a file is nanoseconds, as in kumactl
    let f = file("retry: {sleepBetweenRetries: 1500000000}\n");
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let c = resolve_with(&tp, None, &[], "").unwrap().config;
    assert_eq!(c.retry.sleep_between_retries, Duration::from_millis(1500));
}

#[test]
fn unknown_keys_warn_with_key_and_file() {
    let f = file("redirect:\n  inbund: {port: 1}\n");
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let r = resolve_with(&tp, None, &[], "").unwrap();
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("redirect.inbund"));
    assert!(r.warnings[0].contains(&f.path().display().to_string()));
}

#[test]
fn deprecated_aliases_warn_and_work() {
    let f = file("redirect: {inbound: {port: 1111}}\n");
    let tp = TpFlags {
        config_file: vec![f.path().display().to_string()],
        kuma_dp_uid: Some("42".into()),
        ..Default::default()
    };
    let r = resolve_with(&tp, None, &[], "").unwrap();
    assert_eq!(r.config.redirect.inbound.port, 1111);
    assert_eq!(r.config.kuma_dp_user.as_deref(), Some("42"));
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
}

fn err_of(tp: TpFlags) -> String {
    resolve_with(&tp, None, &[], "").unwrap_err().0
}

#[test]
fn invalid_values_name_flag_value_and_rule() {
    let e = err_of(TpFlags {
        redirect_inbound_port: Some("70000".into()),
        ..Default::default()
    });
    assert_eq!(
        e,
        "invalid value '70000' for --redirect-inbound-port: not a valid port (an integer in the range [1, 65535])"
    );
    let e = err_of(TpFlags {
        exclude_outbound_ports: Some("80,0".into()),
        ..Default::default()
    });
    assert!(
        e.contains("'0'") && e.contains("--exclude-outbound-ports"),
        "{e}"
    );
    let e = err_of(TpFlags {
        exclude_inbound_ips: vec!["10.0.0.1,10.0.0.0/33".into()],
        ..Default::default()
    });
    assert!(
        e.contains("'10.0.0.0/33'") && e.contains("--exclude-inbound-ips"),
        "{e}"
    );
    let e = err_of(TpFlags {
        exclude_outbound_ports_for_uids: vec!["tcp:22:*".into()],
        ..Default::default()
    });
    assert!(e.contains("'tcp:22:*'") && e.contains("wildcard"), "{e}");
    let e = err_of(TpFlags {
        ip_family_mode: Some("ipv6".into()),
        ..Default::default()
    });
    assert!(e.contains("'ipv6'") && e.contains("dualstack"), "{e}");
    let e = err_of(TpFlags {
        redirect_dns: Some(true),
        redirect_all_dns_traffic: Some(true),
        ..Default::default()
    });
    assert!(e.contains("only one of"), "{e}");
    let e = err_of(TpFlags {
        vnet: vec!["docker0".into()],
        ..Default::default()
    });
    assert!(e.contains("invalid virtual network"), "{e}");
}

#[test]
fn invalid_values_in_files_and_env_name_their_source() {
    let f = file("redirect:\n  dns:\n    port: 0\n");
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let e = resolve_with(&tp, None, &[], "").unwrap_err().0;
    assert!(
        e.contains("'redirect.dns.port' in") && e.contains(&f.path().display().to_string()),
        "{e}"
    );
    let e = resolve_with(
        &TpFlags::default(),
        None,
        &[("KUMA_TRANSPARENT_PROXY_LOG_ENABLED", "maybe")],
        "",
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains("KUMA_TRANSPARENT_PROXY_LOG_ENABLED") && e.contains("'maybe'"),
        "{e}"
    );
}

#[test]
fn unreadable_and_malformed_files_are_usage_errors() {
    let e = err_of(TpFlags {
        config: vec!["/nonexistent/tp.yaml".into()],
        ..Default::default()
    });
    assert!(
        e.contains("unable to access configuration file '/nonexistent/tp.yaml'"),
        "{e}"
    );
    let f = file("redirect: {inbound: [\n");
    let e = err_of(TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    });
    assert!(e.contains("not valid YAML"), "{e}");
}

#[test]
fn inbound_uid_exclusions_are_rejected() {
    let f = file("redirect:\n  inbound:\n    excludePortsForUIDs: ['1000']\n");
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let e = resolve_with(&tp, None, &[], "").unwrap_err().0;
    assert!(
        e.contains("excludePortsForUIDs") && e.contains("inbound"),
        "{e}"
    );
}

#[test]
fn executables_merge_per_name() {
    let f = file("iptablesExecutables:\n  iptables: /a/iptables\n  iptables-save: /a/save\n");
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let apply = ApplyFlags {
        iptables_executables: Some("iptables-save:/b/save".into()),
        ..Default::default()
    };
    let c = resolve_with(
        &tp,
        Some(&apply),
        &[(
            "KUMA_TRANSPARENT_PROXY_IPTABLES_EXECUTABLES",
            "iptables-restore:/c/restore",
        )],
        "",
    )
    .unwrap()
    .config;
    assert_eq!(c.iptables_executables["iptables"], "/a/iptables");
    assert_eq!(c.iptables_executables["iptables-save"], "/b/save");
    assert_eq!(c.iptables_executables["iptables-restore"], "/c/restore");
}

#[test]
fn ports_accept_lists_numbers_and_comma_strings() {
    let f = file(
        "redirect:\n  inbound:\n    excludePorts: [22, '80', '8080,9090']\n  outbound:\n    excludePorts: '1,2,3'\n    includePorts: 443\n",
    );
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    let c = resolve_with(&tp, None, &[], "").unwrap().config;
    assert_eq!(c.redirect.inbound.exclude_ports, vec![22, 80, 8080, 9090]);
    assert_eq!(c.redirect.outbound.exclude_ports, vec![1, 2, 3]);
    assert_eq!(c.redirect.outbound.include_ports, vec![443]);
}

#[test]
fn config_round_trips_through_json() {
    let tp = TpFlags {
        exclude_outbound_ports_for_uids: vec!["tcp:22,80:1000".into(), "53:106-108".into()],
        exclude_outbound_ips: vec!["10.0.0.0/8,fd00::1".into()],
        vnet: vec!["docker0:172.17.0.0/16".into()],
        ..Default::default()
    };
    let c = resolve_with(&tp, None, &[], "").unwrap().config;
    let json = serde_json::to_string(&c).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
}

fn with_file(text: &str) -> (tempfile::NamedTempFile, TpFlags) {
    let f = file(text);
    let tp = TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    };
    (f, tp)
}

#[test]
fn spaces_and_signs_are_refused_as_kumactl_refuses_them() {
    let e = err_of(TpFlags {
        redirect_inbound_port: Some(" 15006".into()),
        ..Default::default()
    });
    assert_eq!(
        e,
        "invalid value ' 15006' for --redirect-inbound-port: not a valid port (an integer in the range [1, 65535]) (without spaces)"
    );
    let e = err_of(TpFlags {
        redirect_dns_port: Some("+53".into()),
        ..Default::default()
    });
    assert!(
        e.contains("'+53'") && e.contains("--redirect-dns-port"),
        "{e}"
    );
    let e = err_of(TpFlags {
        exclude_outbound_ips: vec!["10.0.0.1, 10.0.0.2".into()],
        ..Default::default()
    });
    assert!(
        e.contains("' 10.0.0.2'") && e.contains("--exclude-outbound-ips"),
        "{e}"
    );
    let e = err_of(TpFlags {
        exclude_outbound_ports_for_uids: vec!["tcp: 22:1000".into()],
        ..Default::default()
    });
    assert!(e.contains("--exclude-outbound-ports-for-uids"), "{e}");
    let apply = ApplyFlags {
        wait: Some(" 5".into()),
        ..Default::default()
    };
    let e = resolve_with(&TpFlags::default(), Some(&apply), &[], "")
        .unwrap_err()
        .0;
    assert!(e.contains("' 5'") && e.contains("--wait"), "{e}");
    for (var, value) in [
        ("KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT", "15006 "),
        ("KUMA_TRANSPARENT_PROXY_LOG_ENABLED", " true"),
        ("KUMA_TRANSPARENT_PROXY_WAIT", "+5"),
        (
            "KUMA_TRANSPARENT_PROXY_REDIRECT_OUTBOUND_EXCLUDE_PORTS_FOR_IPS",
            "10.0.0.1,,10.0.0.2",
        ),
        ("KUMA_TRANSPARENT_PROXY_IP_FAMILY_MODE", " ipv4"),
    ] {
        let e = resolve_with(&TpFlags::default(), None, &[(var, value)], "")
            .unwrap_err()
            .0;
        assert!(e.contains(var), "{var}={value:?}: {e}");
    }
}

#[test]
fn quoted_numbers_and_booleans_in_files_are_refused() {
    for (text, key) in [
        (
            r#"{"redirect": {"inbound": {"port": "15006"}}}"#,
            "redirect.inbound.port",
        ),
        ("redirect: {dns: {port: '53'}}\n", "redirect.dns.port"),
        ("wait: \"5\"\n", "wait"),
        ("log: {level: '4'}\n", "log.level"),
        (
            "redirect: {dns: {enabled: 'true'}}\n",
            "redirect.dns.enabled",
        ),
    ] {
        let (f, tp) = with_file(text);
        let e = resolve_with(&tp, None, &[], "").unwrap_err().0;
        assert!(
            e.contains(&format!("'{key}' in {}", f.path().display()))
                && e.contains("without quotes"),
            "{text}: {e}"
        );
    }
    // the same values unquoted are fine; port lists take strings, as kumactl's Ports
    let (_f, tp) = with_file(
        "redirect: {inbound: {port: 15006, excludePorts: ['22', 80]}, dns: {enabled: true}}\nwait: 5\n",
    );
    let c = resolve_with(&tp, None, &[], "").unwrap().config;
    assert_eq!(c.redirect.inbound.exclude_ports, vec![22, 80]);
    assert!(c.redirect.dns.enabled);
}

#[test]
fn port_lists_skip_empty_pieces_with_a_warning_and_fold_repeats() {
    let tp = TpFlags {
        exclude_outbound_ports: Some("22,,80, 443,".into()),
        exclude_inbound_ports: Some("22,80,22,22".into()),
        ..Default::default()
    };
    let r = resolve_with(&tp, None, &[], "").unwrap();
    assert_eq!(r.config.redirect.outbound.exclude_ports, vec![22, 80, 443]);
    assert_eq!(r.config.redirect.inbound.exclude_ports, vec![22, 80]);
    assert!(
        r.warnings.iter().any(|w| w
            == "--exclude-outbound-ports ('22,,80, 443,') has 2 empty entries; ignored, as kumactl does"),
        "{:?}",
        r.warnings
    );
    assert!(
        r.warnings.iter().any(|w| w
            == "--exclude-inbound-ports repeats ports 2 times (first: 22); each port gets one rule"),
        "{:?}",
        r.warnings
    );
    // an empty value clears the list without a warning
    let tp = TpFlags {
        exclude_outbound_ports: Some(String::new()),
        ..Default::default()
    };
    let r = resolve_with(&tp, None, &[], "").unwrap();
    assert!(r.config.redirect.outbound.exclude_ports.is_empty());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn repeated_addresses_and_uid_entries_are_folded() {
    let tp = TpFlags {
        exclude_outbound_ips: vec![
            "10.0.0.1,10.0.0.1/32".into(),
            "10.1.2.3/8".into(),
            "10.0.0.0/8".into(),
        ],
        exclude_outbound_ports_for_uids: vec!["tcp:22:1000".into(), "tcp:22:1000".into()],
        vnet: vec![
            "docker0:172.17.0.0/16".into(),
            "docker0:172.17.0.0/16".into(),
        ],
        ..Default::default()
    };
    let r = resolve_with(&tp, None, &[], "").unwrap();
    let ips: Vec<_> = r
        .config
        .redirect
        .outbound
        .exclude_ips
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(ips, vec!["10.0.0.1", "10.1.2.3/8"]);
    assert_eq!(r.config.redirect.outbound.exclude_uids.len(), 1);
    assert_eq!(r.config.redirect.vnet.networks.len(), 1);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
}

#[test]
fn absurdly_long_lists_are_refused_naming_the_key() {
    let n = layers::MAX_LIST_ENTRIES + 1;
    let list = vec!["22"; n].join(",");
    let (f, tp) = with_file(&format!(
        "redirect:\n  outbound:\n    excludePorts: [{list}]\n"
    ));
    let e = resolve_with(&tp, None, &[], "").unwrap_err().0;
    assert!(
        e.starts_with(&format!(
            "'redirect.outbound.excludePorts' in {} has more than 65535 entries",
            f.path().display()
        )),
        "{e}"
    );
    let ips = (0..n)
        .map(|i| format!("10.{}.{}.1", i / 256 % 256, i % 256))
        .collect::<Vec<_>>()
        .join(",");
    let e = resolve_with(
        &TpFlags::default(),
        None,
        &[(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_IPS",
            &ips,
        )],
        "",
    )
    .unwrap_err()
    .0;
    assert!(
        e.starts_with("environment variable KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_EXCLUDE_PORTS_FOR_IPS has more than 65535 entries"),
        "{e}"
    );
    // at the bound it is accepted, and folded to the distinct ports
    let list = (1..=65535u32)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (_f, tp) = with_file(&format!(
        "redirect:\n  inbound:\n    excludePorts: '{list}'\n"
    ));
    let c = resolve_with(&tp, None, &[], "").unwrap().config;
    assert_eq!(c.redirect.inbound.exclude_ports.len(), 65535);
}

#[test]
fn durations_take_bare_nanoseconds_everywhere_as_kumactl() {
    let apply = ApplyFlags {
        sleep_between_retries: Some("2000000000".into()),
        ..Default::default()
    };
    let r = resolve_with(&TpFlags::default(), Some(&apply), &[], "").unwrap();
    assert_eq!(r.config.retry.sleep_between_retries, Duration::from_secs(2));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // kumactl's flag form: a JSON string
    let apply = ApplyFlags {
        sleep_between_retries: Some("\"750ms\"".into()),
        ..Default::default()
    };
    let c = resolve_with(&TpFlags::default(), Some(&apply), &[], "")
        .unwrap()
        .config;
    assert_eq!(c.retry.sleep_between_retries, Duration::from_millis(750));
    let c = resolve_with(
        &TpFlags::default(),
        None,
        &[(
            "KUMA_TRANSPARENT_PROXY_RETRY_SLEEP_BETWEEN_RETRIES",
            "1500000000",
        )],
        "",
    )
    .unwrap()
    .config;
    assert_eq!(c.retry.sleep_between_retries, Duration::from_millis(1500));
    // a tiny bare number is what kumactl makes of it, with a warning
    let apply = ApplyFlags {
        sleep_between_retries: Some("5".into()),
        ..Default::default()
    };
    let r = resolve_with(&TpFlags::default(), Some(&apply), &[], "").unwrap();
    assert_eq!(
        r.config.retry.sleep_between_retries,
        Duration::from_nanos(5)
    );
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("nanoseconds") && r.warnings[0].contains("5s"));
    for bad in ["2 s", "-1", "soon", "1.5"] {
        let apply = ApplyFlags {
            sleep_between_retries: Some(bad.into()),
            ..Default::default()
        };
        let e = resolve_with(&TpFlags::default(), Some(&apply), &[], "")
            .unwrap_err()
            .0;
        assert!(
            e.contains("--sleep-between-retries") && e.contains(bad),
            "{e}"
        );
    }
}

#[test]
fn the_environment_is_read_without_decoding_foreign_variables() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
    // a foreign variable that is not UTF-8 is not even looked at
    let vars = vec![
        (bytes(b"FOO"), bytes(b"\xff")),
        (bytes(b"\xffBAR"), bytes(b"x")),
        (
            bytes(b"KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT"),
            bytes(b"5353"),
        ),
    ];
    let env = process_env_from(vars).unwrap();
    assert_eq!(
        env,
        vec![(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT".to_string(),
            "5353".to_string()
        )]
    );
    // one of ours that is not UTF-8: an error naming it
    let e = process_env_from(vec![(
        bytes(b"KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT"),
        bytes(b"53\xff"),
    )])
    .unwrap_err()
    .0;
    assert_eq!(
        e,
        "invalid value '53\\xFF' for environment variable KUMA_TRANSPARENT_PROXY_REDIRECT_DNS_PORT: not UTF-8 text"
    );
    // an unknown name of ours: kept (escaped) for the unknown-variable warning
    let env = process_env_from(vec![(
        bytes(b"KUMA_TRANSPARENT_PROXY_\xff"),
        bytes(b"\xfe"),
    )])
    .unwrap();
    assert_eq!(
        env,
        vec![(
            "KUMA_TRANSPARENT_PROXY_\\xFF".to_string(),
            "\\xFE".to_string()
        )]
    );
}

#[test]
fn config_files_must_be_utf8_and_bounded() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"redirect:\n  dns: {port: 53}\n# caf\xe9\n")
        .unwrap();
    let e = err_of(TpFlags {
        config: vec![f.path().display().to_string()],
        ..Default::default()
    });
    assert_eq!(
        e,
        format!(
            "configuration file {} is not UTF-8 text (byte 0xE9 at offset 33); YAML and JSON files must be UTF-8",
            f.path().display()
        )
    );
    // stdin is read only up to the bound
    let tp = TpFlags {
        config: vec!["-".into()],
        ..Default::default()
    };
    let mut endless = std::io::repeat(b' ');
    let e = resolve(Inputs {
        tp: &tp,
        apply: None,
        env: &[],
        stdin: &mut endless,
    })
    .unwrap_err()
    .0;
    assert!(
        e.starts_with("configuration file stdin is larger than 16 MiB"),
        "{e}"
    );
}

#[test]
fn which_inbound_ports_are_redirected() {
    let ssh = |tp: TpFlags, env: &[(&str, &str)]| {
        resolve_with(&tp, None, env, "")
            .unwrap()
            .config
            .redirects_inbound_port(22)
    };
    assert!(ssh(TpFlags::default(), &[]));
    let excluded = TpFlags {
        exclude_inbound_ports: Some("80,22".into()),
        ..Default::default()
    };
    assert!(!ssh(excluded, &[]));
    let off = TpFlags {
        redirect_inbound: Some(false),
        ..Default::default()
    };
    assert!(!ssh(off, &[]));
    assert!(!ssh(
        TpFlags::default(),
        &[(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_INCLUDE_PORTS",
            "80,443"
        )]
    ));
    assert!(ssh(
        TpFlags::default(),
        &[(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_INCLUDE_PORTS",
            "22"
        )]
    ));
}
