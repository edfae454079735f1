//! The configuration of `install transparent-proxy --from-receipt`: what an
//! install receipt recorded, re-validated exactly as a `--config` file is
//! (it is turned back into one document of the config schema, named after the
//! receipt in messages), with the recorded kuma-dp UID as a number — so
//! re-applying needs no user lookup and exempts the same UID — and only the
//! apply-mechanics flags (`--dry-run`, `--verbose`, `--wait`,
//! `--wait-interval`, `--max-retries`, `--sleep-between-retries`) on top.
//! Configuration flags are refused by the command line; configuration files
//! and `KUMA_TRANSPARENT_PROXY_*` variables are not read (a warning names any
//! that are set). Reading the receipt itself is the caller's job.

use serde_yaml::{Mapping, Value};

use super::layers::{self, Merged};
use super::{Config, Resolved, build, flag_layer};
use crate::cli::{ApplyFlags, TpFlags};
use crate::error::UsageError;

/// Resolves the configuration recorded in a receipt. `shown` names the
/// receipt in messages, `uid` is the kuma-dp UID it recorded, `env` the
/// process's `KUMA_TRANSPARENT_PROXY_*` variables (only reported).
pub fn resolve(
    recorded: &Config,
    uid: u32,
    shown: &str,
    apply: &ApplyFlags,
    env: &[(String, String)],
) -> Result<Resolved, UsageError> {
    let mut warnings = Vec::new();
    if !env.is_empty() {
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        warnings.push(format!(
            "--from-receipt re-applies the recorded configuration; {} ignored",
            names.join(", ")
        ));
    }
    let text = serde_yaml::to_string(&document(recorded, uid)).map_err(|e| {
        UsageError::new(format!(
            "the configuration in {shown} cannot be re-read: {e}"
        ))
    })?;
    let mut merged = Merged::default();
    merged.extend(layers::file_layer(shown, &text, &mut warnings)?);
    merged.extend(flag_layer(&TpFlags::default(), Some(apply), &mut warnings)?);
    let config = build(&merged, &mut warnings)?;
    Ok(Resolved { config, warnings })
}

/// The recorded configuration as a config-file document. The serialized
/// [`Config`] uses the schema's key paths except for the kuma-dp user, which
/// becomes the recorded UID; a dry run is never recorded; the retry pause is
/// written in nanoseconds (a bare number in a file, as kumactl reads it) so
/// that no duration text has to round-trip.
fn document(recorded: &Config, uid: u32) -> Value {
    let mut doc = match serde_yaml::to_value(recorded) {
        Ok(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    doc.remove("kumaDpUser");
    doc.remove("dryRun");
    doc.insert("kumaDPUser".into(), Value::String(uid.to_string()));
    if let Some(Value::Mapping(retry)) = doc.get_mut("retry") {
        let nanos = recorded
            .retry
            .sleep_between_retries
            .as_nanos()
            .min(u64::MAX as u128) as u64;
        retry.insert("sleepBetweenRetries".into(), Value::Number(nanos.into()));
    }
    Value::Mapping(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Inputs;

    fn from_flags(args: &[&str]) -> Config {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            tp: TpFlags,
            #[command(flatten)]
            apply: ApplyFlags,
        }
        let t = T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        let mut stdin = std::io::empty();
        super::super::resolve(Inputs {
            tp: &t.tp,
            apply: Some(&t.apply),
            env: &[],
            stdin: &mut stdin,
        })
        .unwrap()
        .config
    }

    /// Every setting that reaches the rules survives the trip through a
    /// receipt, and re-reading it warns about nothing (no key drifted away
    /// from the schema).
    #[test]
    fn the_recorded_configuration_round_trips() {
        let cases: &[&[&str]] = &[
            &[],
            &[
                "--kuma-dp-user",
                "1",
                "--redirect-inbound-port",
                "16006",
                "--redirect-outbound-port",
                "16001",
                "--exclude-inbound-ports",
                "22,8080",
                "--exclude-outbound-ports",
                "9000",
                "--exclude-inbound-ips",
                "10.0.0.0/8,fd00::/8",
                "--exclude-outbound-ips",
                "192.168.1.1",
                "--exclude-outbound-ports-for-uids",
                "tcp:22,80:1000",
                "--exclude-outbound-ports-for-uids",
                "53:106-108",
                "--redirect-all-dns-traffic",
                "--redirect-dns-port",
                "15054",
                "--skip-dns-conntrack-zone-split",
                "--vnet",
                "docker0:172.17.0.0/16",
                "--vnet",
                "br+:fd00:1::/64",
                "--ip-family-mode",
                "IPv4",
                "--iptables-logs",
                "--disable-comments",
                "--drop-invalid-packets",
                "--redirect-inbound-insert-instead-of-append",
                "--redirect-outbound-insert-instead-of-append",
                "--wait",
                "9",
                "--wait-interval",
                "100",
                "--max-retries",
                "2",
                "--sleep-between-retries",
                "1500ms",
                "--iptables-executables",
                "iptables:/usr/sbin/iptables-legacy",
                "--store-firewalld",
                "--verbose",
            ],
            &["--redirect-inbound=false", "--redirect-dns"],
        ];
        for args in cases {
            let c = from_flags(args);
            let r = resolve(&c, 1, "r.json", &ApplyFlags::default(), &[]).unwrap();
            assert!(r.warnings.is_empty(), "{args:?}: {:?}", r.warnings);
            let mut want = c.clone();
            want.kuma_dp_user = Some("1".to_string());
            assert_eq!(r.config, want, "{args:?}");
        }
    }

    #[test]
    fn apply_flags_go_on_top_and_environment_is_reported() {
        let c = from_flags(&["--max-retries", "7"]);
        let apply = ApplyFlags {
            dry_run: Some(true),
            max_retries: Some("1".into()),
            ..ApplyFlags::default()
        };
        let env = [(
            "KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT".to_string(),
            "1".to_string(),
        )];
        let r = resolve(&c, 5678, "r.json", &apply, &env).unwrap();
        assert!(r.config.dry_run);
        assert_eq!(r.config.retry.max_retries, 1);
        assert_eq!(r.config.redirect.inbound.port, 15006);
        assert_eq!(r.config.kuma_dp_user.as_deref(), Some("5678"));
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT"));
    }

    /// A receipt edited by hand is checked like a config file: the message
    /// names the key, the receipt and the value.
    #[test]
    fn a_bad_recorded_value_names_the_receipt_and_key() {
        let mut c = Config::default();
        c.redirect.inbound.port = 0;
        let e = resolve(&c, 1, "/x/receipt.json", &ApplyFlags::default(), &[]).unwrap_err();
        assert!(
            e.0.contains("'0'")
                && e.0.contains("redirect.inbound.port")
                && e.0.contains("/x/receipt.json"),
            "{}",
            e.0
        );
        let mut c = Config::default();
        c.redirect.outbound.chain_name = "X Y".into();
        let e = resolve(&c, 1, "/x/receipt.json", &ApplyFlags::default(), &[]).unwrap_err();
        assert!(e.0.contains("redirect.outbound.chainName"), "{}", e.0);
    }
}
