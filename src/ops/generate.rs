//! `tproxyctl generate dataplane`: build the Universal Dataplane from flags or
//! render a kuma-dp template, take `transparentProxying` (redirect ports,
//! ipFamilyMode) from the install configuration, validate, and print YAML,
//! JSON or Pod annotations; or, with `--check FILE`, compare a Dataplane
//! file with the installed rules (receipt) or the configuration.
//!
//! Template mode: the template's own `transparentProxying` section is kept
//! (reachable services and backends, other fields), but its redirect ports and
//! ipFamilyMode are replaced by the configuration's, with a warning for each
//! difference, so the output always matches the rules. A template without the
//! section stays without it (a Dataplane that does not use the transparent
//! proxy, as in seed 003), with a warning when the rules redirect traffic.
//!
//! A template or `--check` file may hold several Dataplanes: a template is
//! split at its `---` lines and each document rendered on its own, as
//! `kumactl apply` does; every Dataplane is validated, and problems of all of
//! them are reported together, each named by document and line.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;

use crate::Exit;
use crate::cli::generate::{DataplaneFlags, DataplaneOutput, GenerateDataplaneArgs};
use crate::config::{self, Config};
use crate::error::UsageError;
use crate::host::receipt;
use crate::model::dataplane::{
    self as dpm, BackendRef, Dataplane, Inbound, Networking, PROTOCOL_TAG, ReachableBackends,
    Rules, SERVICE_TAG, TransparentProxying, Violation,
};
use crate::render::{dataplane as render, template};
use crate::ui;

/// A Dataplane and where it came from (`template T, document 2 (line 9)`), for messages.
type Sourced = (String, Dataplane);

pub fn run(args: &GenerateDataplaneArgs) -> anyhow::Result<Exit> {
    let stdin_users = [
        args.dataplane.template.as_deref() == Some("-"),
        args.check.as_deref() == Some(Path::new("-")),
        args.tp
            .config
            .iter()
            .chain(&args.tp.config_file)
            .any(|c| c == "-"),
    ];
    if stdin_users.iter().filter(|b| **b).count() > 1 {
        return Err(UsageError::new(
            "stdin can be read only once: use '-' for at most one of --template, --check and --config",
        )
        .into());
    }
    // A --check file is a Universal Dataplane whatever --output says.
    let rules = Rules {
        require_service_tag: args.require_service_tag,
        kubernetes_refs: args.check.is_none()
            && args.output == DataplaneOutput::KubernetesAnnotations,
    };
    if let Some(path) = &args.check {
        return check(args, path, rules);
    }

    let resolved = config::resolve_process(&args.tp, None)?;
    for w in &resolved.warnings {
        ui::warn(w);
    }
    let cfg = &resolved.config;

    let dps: Vec<Sourced> = match &args.dataplane.template {
        Some(source) => from_template(&args.dataplane, source, cfg, rules)?,
        None => vec![(
            "flags".to_string(),
            from_flags(&args.dataplane, cfg, rules)?,
        )],
    };

    let several = dps.len() > 1;
    let without_tp_on_purpose = args.dataplane.transparent_proxying == Some(false);
    for (from, dp) in &dps {
        for d in dpm::compare_transparent_proxying(dp, cfg) {
            if !(without_tp_on_purpose && dp.transparent_proxying().is_none()) {
                ui::warn(if several { format!("{from}: {d}") } else { d });
            }
        }
    }

    let only: Vec<Dataplane> = dps.into_iter().map(|(_, dp)| dp).collect();
    let text = match args.output {
        DataplaneOutput::Yaml => render::yaml_stream(&only)?,
        DataplaneOutput::Json => render::json_stream(&only)?,
        DataplaneOutput::KubernetesAnnotations => {
            let mut docs = Vec::new();
            for dp in &only {
                if render::kubernetes_annotations(dp)?.is_empty() {
                    ui::warn(format!(
                        "{} has no reachableServices or reachableBackends, so there is no Pod \
                         annotation to write (on Kubernetes, ports, tags and redirect ports come from \
                         the Pod and the injector)",
                        if several {
                            format!("Dataplane {}", dp.name)
                        } else {
                            "the Dataplane".to_string()
                        }
                    ));
                }
                docs.push(render::kubernetes_annotations_yaml(dp)?);
            }
            docs.join("---\n")
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the Dataplane to stdout")?;
    Ok(Exit::Success)
}

/// `--check FILE`: every Dataplane of the file (a YAML stream, a JSON array)
/// is validated, then compared with the rules; exit 0 when all agree, 1
/// otherwise, each difference on its own stdout line (named by Dataplane
/// and document when the file holds several).
fn check(args: &GenerateDataplaneArgs, path: &Path, rules: Rules) -> anyhow::Result<Exit> {
    let shown = path.display().to_string();
    let dps = load_checked(path, &shown, rules)?;
    let several = dps.len() > 1;
    let (cfg, against) = rules_to_compare_with(args)?;
    let mut lines = Vec::new();
    let mut differing = 0;
    for (label, dp) in &dps {
        let diffs = dpm::compare_transparent_proxying(dp, &cfg);
        differing += usize::from(!diffs.is_empty());
        lines.extend(
            diffs
                .into_iter()
                .map(|d| if several { format!("{label}: {d}") } else { d }),
        );
    }
    if lines.is_empty() {
        ui::info(if several {
            format!(
                "the {} Dataplanes in {shown} agree with {against}",
                dps.len()
            )
        } else {
            format!("{shown} agrees with {against}")
        });
        return Ok(Exit::Success);
    }
    let mut out = std::io::stdout().lock();
    for l in &lines {
        writeln!(out, "{l}").context("writing the differences to stdout")?;
    }
    out.flush().context("writing the differences to stdout")?;
    let count = format!(
        "{} difference{}",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" }
    );
    ui::info(if several {
        format!(
            "{differing} of {} Dataplanes in {shown} differ from {against} ({count})",
            dps.len()
        )
    } else {
        format!("{count} between {shown} and {against}")
    });
    Ok(Exit::Failure)
}

/// The Dataplanes of a `--check` file, each completed (`type`, `mesh`) and
/// validated; problems of every Dataplane make one usage error. Each comes
/// with its label for difference lines (empty when the file holds one).
fn load_checked(path: &Path, shown: &str, rules: Rules) -> anyhow::Result<Vec<Sourced>> {
    let docs = dpm::load_stream(path).map_err(|e| UsageError::new(format!("{e:#}")))?;
    if docs.is_empty() {
        return Err(UsageError::new(format!(
            "{shown} holds no Dataplane (it is empty or only comments)"
        ))
        .into());
    }
    let several = docs.len() > 1;
    let mut dps = Vec::new();
    let mut errors = Vec::new();
    for d in docs {
        let (from, label) = if several {
            (
                format!("{shown}, {}", d.position()),
                format!("Dataplane {} in {}", d.dp.name, d.position()),
            )
        } else {
            (shown.to_string(), String::new())
        };
        let mut dp = d.dp;
        fill_type_and_mesh(&mut dp, &from, None);
        if let Err(e) = validated(&dp, &Origin::File(from), rules) {
            errors.push(e);
        }
        dps.push((label, dp));
    }
    if !errors.is_empty() {
        return Err(UsageError::new(errors.join("\n")).into());
    }
    Ok(dps)
}

/// What `--check` compares with: the installed rules (the receipt) or, without
/// a receipt, the configuration; and how to name it in messages.
fn rules_to_compare_with(args: &GenerateDataplaneArgs) -> anyhow::Result<(Config, String)> {
    let receipt_path = receipt::path_or_default(args.receipt.receipt.as_deref());
    Ok(match receipt::load(&receipt_path)? {
        Some(r) => (
            r.config,
            format!("the installed rules (receipt {})", receipt_path.display()),
        ),
        None => {
            let resolved = config::resolve_process(&args.tp, None)?;
            for w in &resolved.warnings {
                ui::warn(w);
            }
            (
                resolved.config,
                format!(
                    "the configuration (no receipt at {}; defaults, --config, environment and flags)",
                    receipt_path.display()
                ),
            )
        }
    })
}

/// Where a Dataplane came from, for messages: the flags, a template (and
/// document), a file (and document).
enum Origin {
    Flags,
    Template(String),
    File(String),
}

/// The flag that sets a field in flag mode.
fn flag_for(field: &str) -> Option<&'static str> {
    let inbound = "networking.inbound[0].";
    let tp = "networking.transparentProxying.";
    Some(match field {
        "name" => "--name",
        "mesh" => "--mesh",
        "networking.address" => "--address",
        "networking.inbound" => "--port",
        f if f == format!("{inbound}port") => "--port",
        f if f == format!("{inbound}servicePort") => "--service-port",
        f if f == format!("{inbound}serviceAddress") => "--service-address",
        f if f == format!("{inbound}tags[\"{SERVICE_TAG}\"]") => "--service",
        f if f == format!("{inbound}tags[\"{PROTOCOL_TAG}\"]") => "--protocol",
        f if f.starts_with(&format!("{inbound}tags[")) => "--tag",
        f if f.starts_with(&format!("{tp}reachableServices")) => "--reachable-service",
        f if f.starts_with(&format!("{tp}reachableBackends")) => "--reachable-backend",
        f if f == format!("{tp}redirectPortInbound") => "--redirect-inbound-port",
        f if f == format!("{tp}redirectPortOutbound") => "--redirect-outbound-port",
        _ => return None,
    })
}

fn describe(v: &Violation, origin: &Origin) -> String {
    let field = match (origin, flag_for(&v.field)) {
        (Origin::Flags, Some(flag)) => format!("{flag} ({})", v.field),
        _ => v.field.clone(),
    };
    match &v.value {
        Some(value) => format!("invalid value '{value}' for {field}: {}", v.why),
        None => format!("{field} is required: {}", v.why),
    }
}

/// Runs validation: warnings are printed, errors become one message naming
/// every bad field (and where the Dataplane came from).
fn validated(dp: &Dataplane, origin: &Origin, rules: Rules) -> Result<(), String> {
    let v = dp.validate_with(rules);
    for w in &v.warnings {
        ui::warn(match origin {
            Origin::Flags => w.clone(),
            Origin::Template(from) | Origin::File(from) => format!("{from}: {w}"),
        });
    }
    if v.errors.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = v.errors.iter().map(|e| describe(e, origin)).collect();
    let head = match origin {
        Origin::Flags => "the Dataplane is invalid".to_string(),
        Origin::Template(from) => format!("the Dataplane rendered from {from} is invalid"),
        Origin::File(from) => format!("the Dataplane in {from} is invalid"),
    };
    Err(if lines.len() == 1 {
        match origin {
            Origin::Flags => lines[0].clone(),
            _ => format!("{head}: {}", lines[0]),
        }
    } else {
        format!("{head}:\n  {}", lines.join("\n  "))
    })
}

/// kuma-dp needs `type` and `mesh`; some documented examples leave them out.
fn fill_type_and_mesh(dp: &mut Dataplane, from: &str, mesh_flag: Option<&str>) {
    if dp.kind.is_none() {
        ui::warn(format!(
            "{from} has no 'type'; writing 'type: {}' (kuma-dp needs it)",
            dpm::KIND
        ));
        dp.kind = Some(dpm::KIND.to_string());
    }
    match (&dp.mesh, mesh_flag) {
        (None, flag) => {
            let mesh = flag.unwrap_or("default");
            ui::warn(format!(
                "{from} has no 'mesh'; writing 'mesh: {mesh}' (kuma-dp needs it)"
            ));
            dp.mesh = Some(mesh.to_string());
        }
        (Some(m), Some(flag)) if m != flag => {
            ui::warn(format!("--mesh {flag} is ignored: {from} sets 'mesh: {m}'"))
        }
        _ => {}
    }
}

fn read_source(name: &str, what: &str) -> Result<String, UsageError> {
    if name == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| UsageError::new(format!("reading the {what} from stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(name)
        .map_err(|e| UsageError::new(format!("reading the {what} {name}: {e}")))
}

/// The `--dataplane-var` values as template variables.
fn template_vars(args: &DataplaneFlags) -> Result<template::Vars, UsageError> {
    let mut vars = template::Vars::new();
    for raw in &args.dataplane_var {
        let bad = |why: String| {
            UsageError::new(format!("invalid value '{raw}' for --dataplane-var: {why}"))
        };
        for (k, v) in template::parse_var_flag(raw).map_err(bad)? {
            vars.insert(&k, &v).map_err(bad)?;
        }
    }
    Ok(vars)
}

/// Renders every document of the template on its own (as `kumactl apply -f
/// TEMPLATE -v …` does: split at `---` lines first, then rendered), parses
/// and validates each Dataplane; errors of every document are reported
/// together.
fn from_template(
    args: &DataplaneFlags,
    source: &str,
    cfg: &Config,
    rules: Rules,
) -> anyhow::Result<Vec<Sourced>> {
    let shown = if source == "-" { "(stdin)" } else { source };
    let text = read_source(source, "template")?;
    let vars = template_vars(args)?;
    let documents = dpm::split_documents(&text);
    let several = documents.len() > 1;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (k, (line, doc)) in documents.iter().enumerate() {
        let from = if several {
            format!("template {shown}, document {} (line {line})", k + 1)
        } else {
            format!("template {shown}")
        };
        let rendered = template::render(doc, &vars)
            .map_err(|why| UsageError::new(format!("{from}: {why}")))?;
        let parsed = dpm::parse_stream(&rendered).map_err(|e| {
            UsageError::new(format!("{from} does not render a Dataplane resource: {e}"))
        })?;
        let items = parsed.len() > 1;
        for d in parsed {
            let from = match d.item.filter(|_| items) {
                Some(i) => format!("{from}, item {i}"),
                None => from.clone(),
            };
            let mut dp = d.dp;
            prepare_rendered(&mut dp, &from, args, cfg);
            if let Err(e) = validated(&dp, &Origin::Template(from.clone()), rules) {
                errors.push(e);
            }
            out.push((from, dp));
        }
    }
    if !errors.is_empty() {
        return Err(UsageError::new(errors.join("\n")).into());
    }
    if out.is_empty() {
        return Err(UsageError::new(format!(
            "template {shown} renders no Dataplane (it is empty or only comments)"
        ))
        .into());
    }
    Ok(out)
}

/// A rendered Dataplane gets `type` and `mesh` when it lacks them, and the
/// install configuration's redirect ports and ipFamilyMode in its
/// `transparentProxying` section (a warning for each difference). A
/// Dataplane without the section stays without it; `run` warns when the
/// rules redirect traffic all the same.
fn prepare_rendered(dp: &mut Dataplane, from: &str, args: &DataplaneFlags, cfg: &Config) {
    fill_type_and_mesh(dp, from, args.mesh.as_deref());
    if let Some(tp) = dp.networking.transparent_proxying.as_mut() {
        let diffs = dpm::compare_section(Some(tp), cfg);
        for d in &diffs {
            ui::warn(format!("{from}: {d}"));
        }
        if !diffs.is_empty() {
            ui::warn(
                "the redirect ports and ipFamilyMode are taken from the install configuration, \
                 so the Dataplane matches the rules",
            );
        }
        tp.apply_config(cfg);
    }
}

/// Parses a port flag; range checks happen in validation (naming the field).
fn port_flag(flag: &str, field: &str, raw: Option<&String>) -> Result<u32, UsageError> {
    let Some(raw) = raw else { return Ok(0) };
    raw.trim().parse::<u32>().map_err(|_| {
        UsageError::new(format!(
            "invalid value '{raw}' for {flag} ({field}): not a port number (an integer in the range [1, 65535])"
        ))
    })
}

/// Flag mode: one Dataplane, with one inbound when any inbound flag is given
/// (none is an outbound-only Dataplane, valid since Kuma 2.14).
fn from_flags(args: &DataplaneFlags, cfg: &Config, rules: Rules) -> anyhow::Result<Dataplane> {
    let inbound = inbound_from_flags(args)?;
    let transparent_proxying = transparent_proxying_from_flags(args, cfg)?;
    let dp = Dataplane {
        kind: Some(dpm::KIND.to_string()),
        mesh: Some(args.mesh.clone().unwrap_or_else(|| "default".to_string())),
        name: args.name.clone().unwrap_or_default(),
        networking: Networking {
            address: args.address.clone().unwrap_or_default(),
            inbound: inbound.into_iter().collect(),
            transparent_proxying,
            ..Networking::default()
        },
        ..Dataplane::default()
    };
    validated(&dp, &Origin::Flags, rules).map_err(UsageError::new)?;
    Ok(dp)
}

/// `--port`, `--service-port`, `--service-address`, `--service`,
/// `--protocol`, `--tag`; `None` when none of them is given.
fn inbound_from_flags(args: &DataplaneFlags) -> Result<Option<Inbound>, UsageError> {
    let given = args.port.is_some()
        || args.service_port.is_some()
        || args.service_address.is_some()
        || args.service.is_some()
        || args.protocol.is_some()
        || !args.tag.is_empty();
    if !given {
        return Ok(None);
    }
    let mut tags = indexmap::IndexMap::new();
    if let Some(s) = &args.service {
        tags.insert(SERVICE_TAG.to_string(), s.clone());
    }
    if let Some(p) = &args.protocol {
        tags.insert(PROTOCOL_TAG.to_string(), p.clone());
    }
    for raw in &args.tag {
        let Some((k, v)) = raw.split_once('=') else {
            return Err(UsageError::new(format!(
                "invalid value '{raw}' for --tag: expected KEY=VALUE, e.g. version=v1"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        let owner = match k {
            SERVICE_TAG => Some(("--service", args.service.as_ref())),
            PROTOCOL_TAG => Some(("--protocol", args.protocol.as_ref())),
            _ => None,
        };
        if let Some((flag, Some(given))) = owner
            && given != v
        {
            return Err(UsageError::new(format!(
                "invalid value '{raw}' for --tag: {flag} already sets {k} to '{given}'"
            )));
        }
        tags.insert(k.to_string(), v.to_string());
    }
    Ok(Some(Inbound {
        port: port_flag("--port", "networking.inbound[0].port", args.port.as_ref())?,
        service_port: port_flag(
            "--service-port",
            "networking.inbound[0].servicePort",
            args.service_port.as_ref(),
        )?,
        service_address: args.service_address.clone(),
        tags,
        ..Inbound::default()
    }))
}

/// The section from the configuration, with `--reachable-service`,
/// `--reachable-backend` and `--reachable-backends none`;
/// `--transparent-proxying=false` leaves it out.
fn transparent_proxying_from_flags(
    args: &DataplaneFlags,
    cfg: &Config,
) -> Result<Option<TransparentProxying>, UsageError> {
    let reachable_services: Vec<String> = args
        .reachable_service
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .collect();
    let reachable_backends = match &args.reachable_backends {
        Some(v) if v.eq_ignore_ascii_case("none") => Some(ReachableBackends::default()),
        Some(v) => {
            return Err(UsageError::new(format!(
                "invalid value '{v}' for --reachable-backends: the only value is 'none' (reaches no \
                 backend); list backends with --reachable-backend"
            )));
        }
        None if args.reachable_backend.is_empty() => None,
        None => Some(ReachableBackends {
            refs: args
                .reachable_backend
                .iter()
                .map(|s| parse_backend_ref(s))
                .collect::<Result<_, _>>()?,
            extra: Default::default(),
        }),
    };
    if args.transparent_proxying == Some(false) {
        if !reachable_services.is_empty() || reachable_backends.is_some() {
            return Err(UsageError::new(
                "--reachable-service, --reachable-backend and --reachable-backends need the \
                 transparentProxying section; drop --transparent-proxying=false",
            ));
        }
        return Ok(None);
    }
    Ok(Some(TransparentProxying {
        reachable_services,
        reachable_backends,
        ..TransparentProxying::from_config(cfg)
    }))
}

/// `kind=MeshService,name=redis,namespace=ns,port=6379` or
/// `kind=MeshService,labels=KEY:VALUE[,labels=KEY:VALUE…]`.
fn parse_backend_ref(raw: &str) -> Result<BackendRef, UsageError> {
    let bad = |why: String| {
        UsageError::new(format!(
            "invalid value '{raw}' for --reachable-backend: {why}"
        ))
    };
    let mut r = BackendRef::default();
    let mut seen: Vec<&str> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(bad(format!(
                "'{part}' is not KEY=VALUE (keys: kind, name, namespace, port, labels)"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if key != "labels" && key != "label" {
            if seen.contains(&key) {
                return Err(bad(format!("'{key}' is given twice")));
            }
            seen.push(key);
        }
        match key {
            "kind" => r.kind = value.to_string(),
            "name" => r.name = value.to_string(),
            "namespace" => r.namespace = value.to_string(),
            "port" => {
                r.port = Some(value.parse::<u32>().map_err(|_| {
                    bad(format!(
                        "port '{value}' is not a port number (an integer in the range [1, 65535])"
                    ))
                })?)
            }
            "labels" | "label" => {
                let Some((lk, lv)) = value.split_once(':') else {
                    return Err(bad(format!(
                        "label '{value}' is not KEY:VALUE, e.g. labels=k8s.kuma.io/namespace:kuma-demo"
                    )));
                };
                r.labels
                    .insert(lk.trim().to_string(), lv.trim().to_string());
            }
            other => {
                return Err(bad(format!(
                    "unknown key '{other}' (keys: kind, name, namespace, port, labels)"
                )));
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_refs_from_flag_text() {
        let r = parse_backend_ref("kind=MeshService,name=redis,port=6379").unwrap();
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.port),
            ("MeshService", "redis", Some(6379))
        );
        let r =
            parse_backend_ref("kind=MeshService,labels=k8s.kuma.io/namespace:kuma-demo,labels=a:b")
                .unwrap();
        assert_eq!(
            r.labels.get("k8s.kuma.io/namespace").map(String::as_str),
            Some("kuma-demo")
        );
        assert_eq!(r.labels.len(), 2);
        for (raw, want) in [
            ("kind=MeshService,nam=redis", "unknown key 'nam'"),
            ("kind=MeshService,name", "'name' is not KEY=VALUE"),
            (
                "kind=MeshService,port=http",
                "port 'http' is not a port number",
            ),
            (
                "kind=MeshService,labels=nocolon",
                "label 'nocolon' is not KEY:VALUE",
            ),
            ("kind=A,kind=B,name=x", "'kind' is given twice"),
        ] {
            let err = parse_backend_ref(raw).unwrap_err().to_string();
            assert!(err.contains(want), "{raw}: {err}");
            assert!(err.starts_with(&format!("invalid value '{raw}' for --reachable-backend")));
        }
    }

    #[test]
    fn violations_name_the_flag_in_flag_mode_and_the_field_otherwise() {
        let v = Violation {
            field: "networking.inbound[0].tags[\"kuma.io/service\"]".into(),
            value: None,
            why: "x".into(),
        };
        assert_eq!(
            describe(&v, &Origin::Flags),
            "--service (networking.inbound[0].tags[\"kuma.io/service\"]) is required: x"
        );
        assert_eq!(
            describe(&v, &Origin::Template("t".into())),
            "networking.inbound[0].tags[\"kuma.io/service\"] is required: x"
        );
        assert_eq!(
            flag_for("networking.inbound[0].tags[\"version\"]"),
            Some("--tag")
        );
        assert_eq!(
            flag_for("networking.transparentProxying.reachableBackends.refs[0].kind"),
            Some("--reachable-backend")
        );
    }
}
