//! `tproxyctl generate dataplane` end to end, on the binary: the Universal
//! Dataplane examples of the seeds reproduced by flags and by template
//! (golden files under `tests/golden/dataplane/out`, rewritten only with
//! `UPDATE_GOLDEN=1`), Pod annotations, template edge cases, every validation
//! error (exit 2, naming the field and value), round trip, JSON, and `--check`.
//!
//! The seed examples are copied under `tests/golden/dataplane/{templates,k8s}`
//! (Liquid `{% raw %}` markers removed, dedented); when `../shared/seeds` is
//! beside the repository, `seed_copies_are_verbatim` proves the copies still
//! match the seeds.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_yaml::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/dataplane")
}

fn fixture(rel: &str) -> PathBuf {
    golden_dir().join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// The binary with a clean environment: no `KUMA_TRANSPARENT_PROXY_*`, and a
/// receipt path that does not exist (so the host's receipt never leaks in).
pub(crate) fn tproxyctl() -> Command {
    let mut c = Command::cargo_bin("tproxyctl").unwrap();
    c.env_clear().env(
        "TPROXYCTL_RECEIPT",
        "/nonexistent/tproxyctl-test-receipt.json",
    );
    c.args(["generate", "dataplane"]);
    c
}

/// Compares with `tests/golden/dataplane/out/<name>`; `UPDATE_GOLDEN=1` rewrites it.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join("out").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} is missing ({e}); run UPDATE_GOLDEN=1 cargo test --test integration dataplane::",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (UPDATE_GOLDEN=1 cargo test --test integration dataplane:: rewrites it)",
        path.display()
    );
}

pub(crate) fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

// ---------------------------------------------------------------- seeds

const VARS: [&str; 8] = [
    "-v",
    "name=demo-client",
    "-v",
    "address=10.0.0.5",
    "-v",
    "port=8080",
    // The docs' Liquid values, filled through dotted Mustache keys.
    "-v",
    "tproxy.defaults.redirect.inbound.port=15006,tproxy.defaults.redirect.outbound.port=15001",
];

/// The seed example as the Dataplane it describes, computed without our
/// template engine: variables replaced as text, the fields kuma-dp requires
/// (`type`, `mesh`) added where the snippet leaves them out.
fn seed_expectation(template: &str) -> Value {
    let text = template
        .replace("{{ name }}", "demo-client")
        .replace("{{ address }}", "10.0.0.5")
        .replace("{{ port }}", "8080")
        .replace("{{ tproxy.defaults.redirect.inbound.port }}", "15006")
        .replace("{{ tproxy.defaults.redirect.outbound.port }}", "15001");
    let mut v = yaml(&text);
    let m = v.as_mapping_mut().unwrap();
    m.entry("type".into()).or_insert("Dataplane".into());
    m.entry("mesh".into()).or_insert("default".into());
    v
}

/// Every Universal Dataplane example of seed 004: (name, equivalent flags).
fn seed_004_cases() -> Vec<(&'static str, Vec<&'static str>)> {
    let common = [
        "--name",
        "demo-client",
        "--address",
        "10.0.0.5",
        "--port",
        "8080",
        "--service",
        "demo-client",
    ];
    let with = |extra: &[&'static str]| {
        let mut v = common.to_vec();
        v.extend_from_slice(extra);
        v
    };
    vec![
        ("seed004-simplified", with(&[])),
        (
            "seed004-reachable-services",
            with(&[
                "--reachable-service",
                "redis_kuma-demo_svc_6379",
                "--reachable-service",
                "elastic_kuma-demo_svc_9200",
            ]),
        ),
        (
            "seed004-reachable-backends-model",
            with(&[
                "--reachable-backend",
                "kind=MeshService,name=redis",
                "--reachable-backend",
                "kind=MeshMultiZoneService,labels=kuma.io/display-name:test-server",
                "--reachable-backend",
                "kind=MeshExternalService,name=mes-http",
            ]),
        ),
        (
            "seed004-redis-6379",
            with(&[
                "--reachable-backend",
                "kind=MeshService,name=redis,port=6379",
            ]),
        ),
        (
            "seed004-no-backends",
            with(&["--reachable-backends", "none"]),
        ),
    ]
}

#[test]
fn seed_004_examples_by_template_and_by_flags() {
    for (name, flags) in seed_004_cases() {
        let tpl = format!("templates/{name}.tpl.yaml");
        let by_template = stdout_of(tproxyctl().arg("--template").arg(fixture(&tpl)).args(VARS));
        assert_golden(&format!("{name}.yaml"), &by_template);
        assert_eq!(
            yaml(&by_template),
            seed_expectation(&read(&tpl)),
            "{name}: the rendered Dataplane is not the seed's example"
        );
        let by_flags = stdout_of(tproxyctl().args(&flags));
        assert_eq!(by_flags, by_template, "{name}: flags and template differ");
    }
}

#[test]
fn seed_003_non_transparent_dataplane_by_template_and_by_flags() {
    let tpl = "templates/seed003-demo-app.tpl.yaml";
    let out = tproxyctl()
        .arg("--template")
        .arg(fixture(tpl))
        .output()
        .unwrap();
    assert!(out.status.success());
    // No transparentProxying: said, not silently filled in.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "networking.transparentProxying is missing, but the rules redirect inbound TCP to port \
             15006 and outbound TCP to port 15001"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_template = String::from_utf8(out.stdout).unwrap();
    assert_golden("seed003-demo-app.yaml", &by_template);
    assert_eq!(yaml(&by_template), yaml(&read(tpl)));
    let by_flags = tproxyctl()
        .args([
            "--name",
            "demo-app",
            "--address",
            "10.119.249.39",
            "--port",
            "15000",
            "--service-port",
            "5000",
            "--service-address",
            "127.0.0.1",
            "--service",
            "app",
            "--protocol",
            "http",
            "--transparent-proxying=false",
        ])
        .output()
        .unwrap();
    assert!(by_flags.status.success());
    // Asked for explicitly: no warning.
    assert_eq!(String::from_utf8_lossy(&by_flags.stderr), "");
    assert_eq!(String::from_utf8(by_flags.stdout).unwrap(), by_template);
}

#[test]
fn seed_004_pod_annotations() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "seed004-reachable-services",
            &[
                "--reachable-service",
                "redis_kuma-demo_svc_6379,elastic_kuma-demo_svc_9200",
            ],
        ),
        (
            "seed004-reachable-backends-model",
            &[
                "--reachable-backend",
                "kind=MeshService,name=redis,namespace=kuma-demo,port=8080",
                "--reachable-backend",
                "kind=MeshMultiZoneService,labels=kuma.io/display-name:test-server",
                "--reachable-backend",
                "kind=MeshExternalService,name=mes-http,namespace=kuma-system",
            ],
        ),
        (
            "seed004-redis-6379",
            &[
                "--reachable-backend",
                "kind=MeshService,name=redis,namespace=kuma-demo,port=6379",
            ],
        ),
        ("seed004-no-backends", &["--reachable-backends", "none"]),
        (
            "seed004-namespace-labels",
            &[
                "--reachable-backend",
                "kind=MeshService,labels=k8s.kuma.io/namespace:kuma-demo",
            ],
        ),
    ];
    for (name, flags) in cases {
        let out = stdout_of(
            tproxyctl()
                .args([
                    "--name",
                    "demo-client",
                    "--address",
                    "10.0.0.5",
                    "--port",
                    "8080",
                    "--service",
                    "demo-client",
                    "-o",
                    "kubernetes-annotations",
                ])
                .args(flags),
        );
        assert_golden(&format!("{name}.annotations.yaml"), &out);
        let ours = yaml(&out);
        let seed = yaml(&read(&format!("k8s/{name}.annotations.yaml")));
        assert_eq!(ours, seed, "{name}: annotation values differ from the seed");
        // The reachable-backends value itself is YAML; compare it as such too.
        if let Some(Value::String(refs)) = ours.get("kuma.io/reachable-backends")
            && !refs.is_empty()
        {
            let seed_refs = seed["kuma.io/reachable-backends"].as_str().unwrap();
            assert_eq!(yaml(refs), yaml(seed_refs));
        }
    }
}

/// Lines of `needle` appear consecutively in `hay`, each with the same indent.
fn contains_block(hay: &str, needle: &str) -> bool {
    let hay: Vec<&str> = hay.lines().collect();
    let needle: Vec<&str> = needle.lines().collect();
    (0..hay.len()).any(|start| {
        let first = hay[start];
        let Some(indent) = first.trim_end().strip_suffix(needle[0].trim_end()) else {
            return false;
        };
        indent.chars().all(|c| c == ' ')
            && needle.iter().enumerate().all(|(i, n)| {
                hay.get(start + i).is_some_and(|h| {
                    h.trim_end() == format!("{indent}{n}").trim_end()
                        || (n.is_empty() && h.trim().is_empty())
                })
            })
    })
}

#[test]
#[cfg_attr(not(shared_seeds), ignore = "needs ../shared/seeds (build.rs)")]
fn seed_copies_are_verbatim() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds");
    // Compiled in only where build.rs found ../shared/seeds (cfg(shared_seeds)).
    let entries = std::fs::read_dir(&seeds).unwrap_or_else(|e| {
        panic!(
            "{} is not there to compare the copies with ({e}), although it was when the tests were built",
            seeds.display()
        )
    });
    let mut seed_text = String::new();
    for e in entries {
        let p = e.unwrap().path();
        seed_text.push_str(&std::fs::read_to_string(p).unwrap());
        seed_text.push('\n');
    }
    let seed_text = seed_text
        .replace("{% raw %}", "")
        .replace("{% endraw %}", "");
    for dir in ["templates", "k8s"] {
        for e in std::fs::read_dir(golden_dir().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let copy = std::fs::read_to_string(&p).unwrap();
            assert!(
                contains_block(&seed_text, copy.trim_end()),
                "{} is not a verbatim copy of a seed example",
                p.display()
            );
        }
    }
}

// ---------------------------------------------------------------- configuration

#[test]
fn transparent_proxying_comes_from_the_install_configuration() {
    let base = [
        "--name",
        "dp",
        "--address",
        "10.0.0.5",
        "--port",
        "8080",
        "--service",
        "web",
    ];
    // Flags.
    let out = stdout_of(tproxyctl().args(base).args([
        "--redirect-inbound-port",
        "16006",
        "--redirect-outbound-port",
        "16001",
        "--ip-family-mode",
        "IPv4",
    ]));
    assert_golden("config-flags.yaml", &out);
    // Environment.
    let out = stdout_of(
        tproxyctl()
            .args(base)
            .env("KUMA_TRANSPARENT_PROXY_REDIRECT_INBOUND_PORT", "17006"),
    );
    assert_eq!(
        yaml(&out)["networking"]["transparentProxying"]["redirectPortInbound"],
        17006
    );
    // A config file, and inbound redirection off: no redirectPortInbound.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tp.yaml");
    std::fs::write(
        &cfg,
        "redirect:\n  inbound:\n    enabled: false\n  outbound:\n    port: 18001\n",
    )
    .unwrap();
    let out = stdout_of(tproxyctl().args(base).arg("--config").arg(&cfg));
    let tp = &yaml(&out)["networking"]["transparentProxying"];
    assert_eq!(tp.get("redirectPortInbound"), None);
    assert_eq!(tp["redirectPortOutbound"], 18001);
    let out = stdout_of(tproxyctl().args(base).arg("--redirect-inbound=false"));
    assert_eq!(
        yaml(&out)["networking"]["transparentProxying"].get("redirectPortInbound"),
        None
    );
}

#[test]
fn template_ports_that_disagree_with_the_configuration_are_replaced_with_a_warning() {
    tproxyctl()
        .arg("--template")
        .arg(fixture("templates/seed004-redis-6379.tpl.yaml"))
        .args(VARS)
        .args([
            "--redirect-inbound-port",
            "16006",
            "--ip-family-mode",
            "ipv4",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "redirectPortInbound is 15006, but the rules redirect inbound TCP to port 16006",
        ))
        .stderr(predicate::str::contains(
            "ipFamilyMode is not set (dual stack), but the rules are ipv4 only",
        ))
        .stdout(predicate::str::contains("redirectPortInbound: 16006\n"))
        .stdout(predicate::str::contains("ipFamilyMode: IPv4\n"))
        // The template's own reachableBackends stay.
        .stdout(predicate::str::contains(
            "name: redis\n        port: 6379\n",
        ));
}

// ---------------------------------------------------------------- templates

pub(crate) fn write_template(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("dp.tpl.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

const LABELS_TEMPLATE: &str = "\
type: Dataplane
mesh: default
name: {{ name }}
labels:
  escaped: \"{{ x }}\"
  raw: \"{{{ x }}}\"
  amp: \"{{& x }}\"
  quoted: \"{{ q }}\"
  missing: \"[{{ nope }}]\"
  version: \"{{ tags.version }}\"
  group: \"{{#tags}}{{zone}}/{{name}}{{/tags}}\"
networking:
  address: {{ address }}
  inbound:
  - port: {{ port }}
    tags:
      kuma.io/service: {{ service }}
";

#[test]
fn template_escaping_raw_missing_dotted_and_comma_lists() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(&dir, LABELS_TEMPLATE);
    let out = stdout_of(tproxyctl().arg("--template").arg(&t).args([
        // One --dataplane-var with a comma list.
        "-v",
        "name=dp,address=10.0.0.5,port=8080,service=web",
        "--dataplane-var",
        "x=<a&b>'q'",
        "-v",
        // One "=": the commas stay in the value (pflag StringToString).
        "q=say \"hi\", \"bye",
        "-v",
        "tags.version=v1",
        "-v",
        "tags.zone=z1",
    ]));
    assert_golden("template-edge-cases.yaml", &out);
    let labels = &yaml(&out)["labels"];
    assert_eq!(labels["escaped"], "&lt;a&amp;b&gt;&#39;q&#39;");
    assert_eq!(labels["raw"], "<a&b>'q'");
    assert_eq!(labels["amp"], "<a&b>'q'");
    assert_eq!(labels["quoted"], "say &#34;hi&#34;, &#34;bye");
    assert_eq!(labels["missing"], "[]");
    assert_eq!(labels["version"], "v1");
    assert_eq!(labels["group"], "z1/dp");
}

#[test]
fn template_from_stdin_and_missing_variables() {
    // Missing variables render empty, and validation names what is then missing.
    tproxyctl()
        .args(["--template", "-", "-v", "name=dp"])
        .write_stdin(LABELS_TEMPLATE)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the Dataplane rendered from template (stdin) is invalid:",
        ))
        .stderr(predicate::str::contains("networking.address is required"))
        .stderr(predicate::str::contains(
            "networking.inbound[0].port is required",
        ))
        .stderr(predicate::str::contains(
            "networking.inbound[0].tags[\"kuma.io/service\"] is required",
        ));
}

#[test]
fn template_errors_exit_2_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], &str); 7] = [
        (
            "name: {{#a}}x\n",
            &[],
            "line 1: section {{#a}} has no closing tag {{/a}}",
        ),
        ("name: {{ a\n", &[], "Couldn't find closing braces"),
        (
            "name: x\n",
            &["-v", "novalue"],
            "invalid value 'novalue' for --dataplane-var: 'novalue' must be formatted as key=value",
        ),
        (
            "name: x\n",
            &["-v", "a=1", "-v", "a.b=2"],
            "invalid value 'a.b=2' for --dataplane-var: key 'a.b' needs 'a' to be a group",
        ),
        (
            "name: x\n",
            &["-v", "a..b=1"],
            "key 'a..b' has an empty part",
        ),
        ("name: [x\n", &[], "does not render a Dataplane resource"),
        (
            "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: a\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortInboundV6: 15010\n",
            &[],
            "invalid value '15010' for networking.transparentProxying.redirectPortInboundV6: was removed in Kuma 2.9",
        ),
    ];
    for (text, vars, want) in cases {
        let t = write_template(&dir, text);
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(vars)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(want));
    }
    tproxyctl()
        .args(["--template", "/nonexistent/dp.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "reading the template /nonexistent/dp.yaml",
        ));
    tproxyctl()
        .args(["--template", "-", "--config", "-"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("stdin can be read only once"));
}

#[test]
fn template_without_type_or_mesh_gets_them_with_a_warning() {
    tproxyctl()
        .arg("--template")
        .arg(fixture(
            "templates/seed004-reachable-backends-model.tpl.yaml",
        ))
        .args(VARS)
        .args(["--mesh", "prod"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "has no 'type'; writing 'type: Dataplane'",
        ))
        .stderr(predicate::str::contains(
            "has no 'mesh'; writing 'mesh: prod'",
        ))
        .stdout(predicate::str::starts_with(
            "type: Dataplane\nmesh: prod\nname: demo-client\n",
        ));
}

// ---------------------------------------------------------------- validation (flags)

#[test]
fn every_validation_error_exits_2_naming_flag_field_and_value() {
    let ok = [
        "--name",
        "dp",
        "--address",
        "10.0.0.5",
        "--port",
        "8080",
        "--service",
        "web",
    ];
    // (flag overrides appended to a valid command line, expected message)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--address", "0.0.0.0"],
            "invalid value '0.0.0.0' for --address (networking.address): must not be 0.0.0.0 or ::",
        ),
        (
            vec!["--address", "::"],
            "invalid value '::' for --address (networking.address): must not be 0.0.0.0 or ::",
        ),
        (
            vec!["--address", "not an address!"],
            "invalid value 'not an address!' for --address (networking.address): must be an IP address or a domain name",
        ),
        (
            vec!["--port", "0"],
            "--port (networking.inbound[0].port) is required",
        ),
        (
            vec!["--port", "65536"],
            "invalid value '65536' for --port (networking.inbound[0].port): port must be in the range [1, 65535]",
        ),
        (
            vec!["--port", "http"],
            "invalid value 'http' for --port (networking.inbound[0].port): not a port number",
        ),
        (
            vec!["--service-port", "70000"],
            "invalid value '70000' for --service-port (networking.inbound[0].servicePort): port must be in the range [1, 65535]",
        ),
        (
            vec!["--service-address", "localhost"],
            "invalid value 'localhost' for --service-address (networking.inbound[0].serviceAddress): must be an IP address",
        ),
        (
            vec!["--service-address", "10.0.0.5"],
            "serviceAddress and servicePort have to differ from networking.address and port",
        ),
        (
            vec!["--protocol", "smtp"],
            "invalid value 'smtp' for --protocol (networking.inbound[0].tags[\"kuma.io/protocol\"]): must be one of http, http2, grpc, tcp, tls, kafka",
        ),
        (
            vec!["--tag", "version"],
            "invalid value 'version' for --tag: expected KEY=VALUE",
        ),
        (
            vec!["--tag", "version="],
            "--tag (networking.inbound[0].tags[\"version\"]) is required: tag values cannot be empty",
        ),
        (
            vec!["--tag", "ver sion=1"],
            "invalid value 'ver sion' for --tag (networking.inbound[0].tags[\"ver sion\"])",
        ),
        (
            vec!["--tag", "kuma.io/service=other"],
            "invalid value 'kuma.io/service=other' for --tag: --service already sets kuma.io/service to 'web'",
        ),
        (
            vec!["--name", "Demo"],
            "invalid value 'Demo' for --name (name): must be lowercase letters, digits",
        ),
        (
            vec!["--mesh", "my mesh"],
            "invalid value 'my mesh' for --mesh (mesh)",
        ),
        (
            vec!["--reachable-service", "a,,b"],
            "--reachable-service (networking.transparentProxying.reachableServices[1]) is required",
        ),
        (
            vec!["--reachable-backend", "kind=Service,name=redis"],
            "invalid value 'Service' for --reachable-backend (networking.transparentProxying.reachableBackends.refs[0].kind): must be one of MeshService, MeshExternalService, MeshMultiZoneService",
        ),
        (
            vec!["--reachable-backend", "kind=MeshService"],
            "--reachable-backend (networking.transparentProxying.reachableBackends.refs[0].name) is required: name or labels are required",
        ),
        (
            vec![
                "--reachable-backend",
                "kind=MeshService,namespace=ns,labels=a:b",
            ],
            "--reachable-backend (networking.transparentProxying.reachableBackends.refs[0].name) is required: name is required when namespace is defined",
        ),
        (
            vec![
                "--reachable-backend",
                "kind=MeshService,name=redis,labels=a:b",
            ],
            "invalid value 'name=redis' for --reachable-backend (networking.transparentProxying.reachableBackends.refs[0].labels): labels cannot be defined when name or namespace is specified",
        ),
        (
            vec!["--reachable-backend", "kind=MeshService,name=Redis!"],
            "invalid value 'Redis!' for --reachable-backend (networking.transparentProxying.reachableBackends.refs[0].name): must be a lowercase RFC 1123 subdomain",
        ),
        (
            vec!["--reachable-backend", "kind=MeshService,name=redis,port=0"],
            "invalid value '0' for --reachable-backend (networking.transparentProxying.reachableBackends.refs[0].port): port must be in the range [1, 65535]",
        ),
        // Issue 8 item 8: a Universal Dataplane's refs have no namespace (as in the forwarder).
        (
            vec![
                "--reachable-backend",
                "kind=MeshService,name=redis,namespace=kuma-demo",
            ],
            "invalid value 'kuma-demo' for --reachable-backend (networking.transparentProxying.reachableBackends.refs[0].namespace): a Universal Dataplane's refs have no namespace",
        ),
        (
            vec!["--reachable-backend", "kind=MeshService,nme=redis"],
            "invalid value 'kind=MeshService,nme=redis' for --reachable-backend: unknown key 'nme'",
        ),
        (
            vec!["--reachable-backends", "all"],
            "invalid value 'all' for --reachable-backends: the only value is 'none'",
        ),
        (
            vec!["--reachable-service", "a", "--transparent-proxying=false"],
            "need the transparentProxying section",
        ),
        (
            vec!["--redirect-inbound-port", "70000"],
            "invalid value '70000' for --redirect-inbound-port",
        ),
        (
            vec!["--ip-family-mode", "ipv6"],
            "invalid value 'ipv6' for --ip-family-mode",
        ),
    ];
    for (extra, want) in cases {
        // Later flags win (args_override_self), so the override replaces the valid value.
        tproxyctl()
            .args(ok)
            .args(&extra)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(want).from_utf8());
    }
    // Nothing given: every required field is named at once. Since Kuma 2.14
    // neither an inbound nor the service tag is required...
    tproxyctl()
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--name (name) is required"))
        .stderr(predicate::str::contains(
            "--address (networking.address) is required",
        ))
        .stderr(predicate::str::contains("--port").not());
    // ... but they are for older control planes.
    tproxyctl()
        .args(["--name", "dp", "--address", "10.0.0.5"])
        .arg("--require-service-tag")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--port (networking.inbound) is required: has to contain at least one inbound interface or gateway",
        ));
    tproxyctl()
        .args(["--name", "dp", "--address", "10.0.0.5", "--port", "8080"])
        .arg("--require-service-tag")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--service (networking.inbound[0].tags[\"kuma.io/service\"]) is required: tag has to exist: every inbound needs the kuma.io/service tag",
        ));
    // Field flags and --template are exclusive (clap, exit 2).
    tproxyctl()
        .args(["--template", "x.yaml", "--address", "10.0.0.1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
}

// ---------------------------------------------------------------- formats

#[test]
fn round_trip_is_stable_and_json_matches_yaml() {
    let flags = [
        "--name",
        "demo-client",
        "--address",
        "fd00::5",
        "--port",
        "8080",
        "--service-port",
        "5000",
        "--service-address",
        "::1",
        "--service",
        "demo-client",
        "--protocol",
        "http2",
        "--tag",
        "version=v1",
        "--tag",
        "team=a",
        "--reachable-service",
        "redis_kuma-demo_svc_6379",
        "--reachable-backend",
        "kind=MeshService,name=redis,port=6379",
        "--reachable-backend",
        "kind=MeshMultiZoneService,labels=kuma.io/display-name:test-server",
    ];
    let first = stdout_of(tproxyctl().args(flags));
    assert_golden("full.yaml", &first);
    // The output is itself a template without tags: render → parse → render.
    let again = stdout_of(
        tproxyctl()
            .args(["--template", "-"])
            .write_stdin(first.clone()),
    );
    assert_eq!(
        again, first,
        "render → parse → render changed the Dataplane"
    );
    let json = stdout_of(tproxyctl().args(flags).args(["--output", "json"]));
    assert_golden("full.json", &json);
    let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let from_yaml: serde_json::Value = serde_yaml::from_str(&first).unwrap();
    assert_eq!(from_json, from_yaml);
    // And JSON parses back to the same YAML.
    let from_json_template = stdout_of(
        tproxyctl()
            .args(["--template", "-"])
            .write_stdin(json.clone()),
    );
    assert_eq!(from_json_template, first);
}

#[test]
fn fields_we_do_not_model_survive_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(
        &dir,
        "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n  address: 10.0.0.5\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n    serviceProbe:\n      tcp: {}\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n    directAccessServices:\n    - '*'\nmetrics:\n  type: prometheus\n  conf:\n    port: 5670\n",
    );
    let out = stdout_of(tproxyctl().arg("--template").arg(&t));
    assert_golden("unmodelled-fields.yaml", &out);
    let v = yaml(&out);
    assert_eq!(v["metrics"]["conf"]["port"], 5670);
    assert_eq!(
        v["networking"]["inbound"][0]["serviceProbe"]["tcp"],
        yaml("{}")
    );
    assert_eq!(
        v["networking"]["transparentProxying"]["directAccessServices"][0],
        "*"
    );
}

#[test]
fn annotations_output_without_anything_to_annotate() {
    tproxyctl()
        .args([
            "--name",
            "dp",
            "--address",
            "10.0.0.5",
            "--port",
            "8080",
            "--service",
            "web",
            "-o",
            "kubernetes-annotations",
        ])
        .assert()
        .success()
        .stdout("{}\n")
        .stderr(predicate::str::contains("no Pod annotation to write"));
}

// ---------------------------------------------------------------- --check

fn dp_file(dir: &tempfile::TempDir, name: &str, extra_flags: &[&str]) -> PathBuf {
    let text = stdout_of(
        tproxyctl()
            .args([
                "--name",
                "dp",
                "--address",
                "10.0.0.5",
                "--port",
                "8080",
                "--service",
                "web",
            ])
            .args(extra_flags),
    );
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_against_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let good = dp_file(&dir, "good.yaml", &[]);
    tproxyctl()
        .arg("--check")
        .arg(&good)
        .assert()
        .code(0)
        .stdout("")
        .stderr(predicate::str::contains("agrees with the configuration"));
    // The same file against another configuration: each difference on its own line.
    let out = tproxyctl()
        .arg("--check")
        .arg(&good)
        .args([
            "--redirect-inbound-port",
            "16006",
            "--redirect-outbound-port",
            "16001",
            "--ip-family-mode",
            "ipv4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].contains(
        "redirectPortInbound is 15006, but the rules redirect inbound TCP to port 16006"
    ));
    assert!(lines[1].contains(
        "redirectPortOutbound is 15001, but the rules redirect outbound TCP to port 16001"
    ));
    assert!(lines[2].contains("the rules are ipv4 only"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 differences"));
    // A Dataplane without the section.
    let plain = dp_file(&dir, "plain.yaml", &["--transparent-proxying=false"]);
    tproxyctl()
        .arg("--check")
        .arg(&plain)
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with(
            "networking.transparentProxying is missing",
        ));
    // From stdin.
    tproxyctl()
        .args(["--check", "-"])
        .write_stdin(std::fs::read_to_string(&good).unwrap())
        .assert()
        .code(0);
}

#[test]
fn check_against_the_receipt() {
    use tproxyctl::config::Config;
    use tproxyctl::host::receipt::{Receipt, VERSION, store};
    let dir = tempfile::tempdir().unwrap();
    let receipt_path = dir.path().join("receipt.json");
    let mut config = Config::default();
    config.redirect.inbound.port = 16006;
    store(
        &receipt_path,
        &Receipt {
            version: VERSION,
            tool: "tproxyctl test".into(),
            installed_at: 1,
            config,
            uid: 5678,
            loopback: "lo".into(),
            dns_servers: vec![],
            families: vec![],
            ipv6_loopback_added: false,
            firewalld: None,
            pending: None,
            ebpf: None,
        },
    )
    .unwrap();
    let default_ports = dp_file(&dir, "default.yaml", &[]);
    let installed_ports = dp_file(
        &dir,
        "installed.yaml",
        &["--redirect-inbound-port", "16006"],
    );
    tproxyctl()
        .arg("--check")
        .arg(&default_ports)
        .arg("--receipt")
        .arg(&receipt_path)
        .assert()
        .code(1)
        .stdout(
            "networking.transparentProxying.redirectPortInbound is 15006, but the rules redirect \
             inbound TCP to port 16006\n",
        )
        .stderr(predicate::str::contains("the installed rules (receipt"));
    // TPROXYCTL_RECEIPT works as --receipt does; the receipt wins over flags.
    tproxyctl()
        .env("TPROXYCTL_RECEIPT", &receipt_path)
        .arg("--check")
        .arg(&installed_ports)
        .args(["--redirect-inbound-port", "15006"])
        .assert()
        .code(0)
        .stderr(predicate::str::contains("agrees with the installed rules"));
}

#[test]
fn check_rejects_files_that_are_not_valid_dataplanes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n  address: 0.0.0.0\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: a\n").unwrap();
    tproxyctl()
        .arg("--check")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "the Dataplane in {} is invalid: invalid value '0.0.0.0' for networking.address",
            p.display()
        )));
    tproxyctl()
        .args(["--check", "/nonexistent/dp.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "reading Dataplane file /nonexistent/dp.yaml",
        ));
    std::fs::write(&p, "networking:\n  inbound:\n  - port: eighty\n").unwrap();
    tproxyctl()
        .arg("--check")
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value 'eighty' for port"));
}

// ---------------------------------------------------------------- several Dataplanes

/// Two Dataplanes of one template (with a leading `---` and a document of
/// comments only, which are no Dataplane).
const TWO: &str = "---
# web and its client
---
type: Dataplane
mesh: default
name: {{ name }}-web
networking:
  address: {{ address }}
  inbound:
  - port: 8080
    tags:
      kuma.io/service: web
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
--- # the client: no inbound (Kuma 2.14)
type: Dataplane
mesh: default
name: {{ name }}-client
networking:
  address: {{ address }}
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
";

#[test]
fn multi_document_templates_render_every_document() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(&dir, TWO);
    let vars = ["-v", "name=demo,address=10.0.0.5"];
    let out = stdout_of(tproxyctl().arg("--template").arg(&t).args(vars));
    let docs: Vec<Value> = out.split("---\n").map(yaml).collect();
    assert_eq!(docs.len(), 2, "{out}");
    assert_eq!(docs[0]["name"], "demo-web");
    assert_eq!(docs[1]["name"], "demo-client");
    assert!(docs[1]["networking"].get("inbound").is_none());
    // Each document is what the same template with only that document renders.
    let second = TWO
        .rsplit("--- # the client: no inbound (Kuma 2.14)\n")
        .next()
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let alone = write_template(&other, second);
    assert_eq!(
        yaml(&stdout_of(
            tproxyctl().arg("--template").arg(&alone).args(vars)
        )),
        docs[1]
    );

    // JSON: an array of the same Dataplanes, which renders back to the same stream.
    let json = stdout_of(
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(vars)
            .args(["-o", "json"]),
    );
    let array: serde_json::Value = serde_json::from_str(&json).unwrap();
    let as_json: Vec<serde_json::Value> = docs
        .iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect();
    assert_eq!(array, serde_json::Value::Array(as_json));
    let again = stdout_of(tproxyctl().args(["--template", "-"]).write_stdin(json));
    assert_eq!(again, out);
    // And the YAML stream is itself a template that renders to itself.
    let again = stdout_of(
        tproxyctl()
            .args(["--template", "-"])
            .write_stdin(out.clone()),
    );
    assert_eq!(again, out);
}

#[test]
fn multi_document_errors_name_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(&dir, TWO);
    let path = t.display().to_string();
    // Every document's problems, each named by document and line.
    tproxyctl()
        .arg("--template")
        .arg(&t)
        .args(["-v", "name=Demo,address=10.0.0.5"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "the Dataplane rendered from template {path}, document 1 (line 4) is invalid: invalid value 'Demo-web' for name"
        )))
        .stderr(predicate::str::contains(format!(
            "the Dataplane rendered from template {path}, document 2 (line 17) is invalid: invalid value 'Demo-client' for name"
        )));
    // A section cannot cross a document boundary: documents render on their own.
    let t = write_template(&dir, "{{#a}}\ntype: Dataplane\n---\nname: x\n{{/a}}\n");
    tproxyctl()
        .arg("--template")
        .arg(&t)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "template {}, document 1 (line 1): line 1: section {{{{#a}}}} has no closing tag",
            t.display()
        )));
    // Nothing but comments.
    let t = write_template(&dir, "# nothing\n---\n\n");
    tproxyctl()
        .arg("--template")
        .arg(&t)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("renders no Dataplane"));
}

#[test]
fn flags_without_an_inbound_make_an_outbound_only_dataplane() {
    let out = stdout_of(tproxyctl().args(["--name", "client", "--address", "10.0.0.5"]));
    assert_eq!(
        yaml(&out),
        yaml(
            "type: Dataplane\nmesh: default\nname: client\nnetworking:\n  address: 10.0.0.5\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n"
        )
    );
    // An inbound without tags (no --service) is valid too.
    let out = stdout_of(tproxyctl().args(["--name", "a", "--address", "10.0.0.5", "--port", "80"]));
    assert_eq!(yaml(&out)["networking"]["inbound"], yaml("[{port: 80}]"));
    // With nothing to take part in, it says so.
    tproxyctl()
        .args([
            "--name",
            "a",
            "--address",
            "10.0.0.5",
            "--transparent-proxying=false",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("takes part in no mesh traffic"));
}

#[test]
fn check_takes_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(&dir, TWO);
    let vars = ["-v", "name=demo,address=10.0.0.5"];
    let stream = stdout_of(tproxyctl().arg("--template").arg(&t).args(vars));
    let file = dir.path().join("two.yaml");
    std::fs::write(&file, &stream).unwrap();
    tproxyctl()
        .arg("--check")
        .arg(&file)
        .assert()
        .code(0)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "the 2 Dataplanes in {} agree with the configuration",
            file.display()
        )));
    // One Dataplane of the two disagrees: only its line, named.
    let edited = stream.replacen(
        "redirectPortInbound: 15006",
        "redirectPortInbound: 16006",
        1,
    );
    std::fs::write(&file, &edited).unwrap();
    tproxyctl()
        .arg("--check")
        .arg(&file)
        .assert()
        .code(1)
        .stdout(
            "Dataplane demo-web in document 1 (line 1): networking.transparentProxying.redirectPortInbound \
             is 16006, but the rules redirect inbound TCP to port 15006\n",
        )
        .stderr(predicate::str::contains("1 of 2 Dataplanes in"));
    // The JSON array generate prints for several Dataplanes.
    let json = stdout_of(
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(vars)
            .args(["-o", "json"]),
    );
    tproxyctl()
        .args(["--check", "-"])
        .write_stdin(json)
        .assert()
        .code(0);
    // An invalid document: exit 2 naming it.
    std::fs::write(
        &file,
        stream.replace(
            "address: 10.0.0.5\n  transparentProxying",
            "address: 0.0.0.0\n  transparentProxying",
        ),
    )
    .unwrap();
    tproxyctl()
        .arg("--check")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "the Dataplane in {}, document 2 (line ",
            file.display()
        )))
        .stderr(predicate::str::contains(
            "invalid value '0.0.0.0' for networking.address",
        ));
    // No Dataplane at all.
    std::fs::write(&file, "# empty\n").unwrap();
    tproxyctl()
        .arg("--check")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no Dataplane"));
}
