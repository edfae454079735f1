//! `generate dataplane` against Kuma's own test cases: every case of Kuma
//! 2.14's Dataplane validator tests
//! (`pkg/core/resources/apis/mesh/dataplane_validator_test.go`, valid and
//! invalid, with the field paths Kuma reports), run through both
//! `--template FILE` and `--check FILE`; the rules Kuma 2.14 relaxed, with and
//! without `--require-service-tag`; and the template cases of `kumactl apply`
//! (dotted variable names, a multi-document template) compared as parsed
//! YAML with what kumactl prints.
//!
//! Deliberate differences from Kuma, each asserted here: a Universal
//! Dataplane's reachable-backend refs may not carry a `namespace` (issue 8
//! item 8; the forwarder refuses them too); an empty `kuma.io/protocol` is
//! one violation ("cannot be empty"), not two; paths name the real field
//! `transparentProxying` where Kuma writes `transparentProxing`. Kuma's
//! `metrics` cases are left out: that section is kept as written, not
//! checked.

use std::process::Output;

use serde_yaml::Value;

use super::dataplane::{stdout_of, tproxyctl, write_template, yaml};

/// Kuma's test Dataplanes all start like this.
fn dp(body: &str) -> String {
    format!("type: Dataplane\nname: dp-1\nmesh: default\n{body}")
}

/// The violations of an exit-2 error message, one string each.
fn violations(stderr: &str) -> Vec<String> {
    let start = stderr
        .find("Error: ")
        .unwrap_or_else(|| panic!("no error in:\n{stderr}"));
    let mut lines = stderr[start + "Error: ".len()..].lines();
    let first = lines.next().unwrap_or_default();
    if first.ends_with(" is invalid:") {
        return lines
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_string())
            .collect();
    }
    match first.split_once(" is invalid: ") {
        Some((_, v)) => vec![v.to_string()],
        None => vec![first.to_string()],
    }
}

fn names(v: &str, field: &str) -> bool {
    v.contains(&format!(" for {field}: ")) || v.starts_with(&format!("{field} is required: "))
}

/// Runs `--template FILE` and `--check FILE` on the same Dataplane.
fn both(text: &str, extra: &[&str]) -> Vec<(&'static str, Output)> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_template(&dir, text);
    ["--template", "--check"]
        .into_iter()
        .map(|mode| {
            let out = tproxyctl()
                .arg(mode)
                .arg(&file)
                .args(extra)
                .output()
                .unwrap();
            (mode, out)
        })
        .collect()
}

fn assert_valid(name: &str, text: &str, extra: &[&str]) {
    for (mode, out) in both(text, extra) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // --check exits 1 when only the redirect ports differ from the rules.
        assert!(
            matches!(out.status.code(), Some(0 | 1)) && !stderr.contains("Error:"),
            "{name} ({mode}) should be valid, got {:?}:\n{stderr}",
            out.status.code()
        );
    }
}

/// Exit 2 naming exactly these (field, message fragment) violations.
fn assert_invalid(name: &str, text: &str, extra: &[&str], want: &[(&str, &str)]) {
    for (mode, out) in both(text, extra) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} ({mode}):\n{stderr}");
        assert!(out.stdout.is_empty(), "{name} ({mode}) wrote to stdout");
        let got = violations(&stderr);
        for (field, fragment) in want {
            assert!(
                got.iter().any(|v| names(v, field) && v.contains(fragment)),
                "{name} ({mode}): no violation at {field} containing '{fragment}' in {got:#?}"
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{name} ({mode}): expected {want:?}, got {got:#?}"
        );
    }
}

// ---------------------------------------------------------------- valid

#[test]
fn kumas_valid_dataplanes_pass() {
    let cases: [(&str, &str); 14] = [
        (
            "dataplane with inbounds",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with full inbounds and outbounds",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      servicePort: 7777
      address: 127.0.0.1
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      address: 127.0.0.1
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with full inbounds and outbounds ipv6",
            "networking:
  address: 0:0:0:0:0:FFFF:C0A8:0001
  inbound:
    - port: 8080
      servicePort: 7777
      address: ::1
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      address: ::1
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with gateway",
            "networking:
  address: 192.168.0.1
  gateway:
    tags:
      kuma.io/service: backend
      kuam.io/protocol: tcp
      version: \"1\"
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with valid tags",
            "networking:
  address: 192.168.0.1
  gateway:
    tags:
      kuma.io/service: backend
      version: \"1\"
      kuma.io/valid: abc.0123-789.under_score:90
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane domain name in the address",
            "networking:
  address: example.com
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with probes",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
probes:
  port: 9000
  endpoints:
   - inboundPort: 8088
     inboundPath: /healthz
     path: /8080/healthz
",
        ),
        (
            "dataplane with service probes",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      serviceProbe:
        interval: 1s
        unhealthyThreshold: 5
        tcp: {}
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with admin port equal to inbound and outbound but different network interfaces",
            "networking:
  address: 192.168.0.1
  admin:
    port: 8080
  inbound:
    - port: 8080
      servicePort: 7777
      address: 192.168.0.1
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      address: 192.168.0.1
      tags:
        kuma.io/service: redis
",
        ),
        (
            "dataplane with backend ref for MeshService",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      backendRef:
        kind: MeshService
        name: xyz
        port: 80
",
        ),
        (
            "dataplane with backend ref for MeshExternalService (no port needed)",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      backendRef:
        kind: MeshExternalService
        name: xyz
",
        ),
        (
            // Kuma's case also has `namespace: es1` on the MeshExternalService
            // ref; see `universal_refs_have_no_namespace`.
            "dataplane with reachableBackendRefs",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  transparentProxying:
    reachableBackends:
      refs:
      - kind: MeshService
        name: a
        port: 9090
      - kind: MeshExternalService
        name: es
      - kind: MeshService
        labels:
          kuma.io/test: abc
",
        ),
        (
            "dataplane with backend ref with labels",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      backendRef:
        kind: MeshService
        labels:
          kuma.io/display-name: redis
        port: 8080
",
        ),
        (
            "inbound service address on another address and port",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 10001
      serviceAddress: 192.168.0.2
      servicePort: 5050
      address: 1.1.1.1
      tags:
        kuma.io/service: backend
",
        ),
    ];
    for (name, body) in cases {
        assert_valid(name, &dp(body), &[]);
    }
    assert_valid(
        "inbound service address different inbound address and port",
        &dp("networking:
  address: 192.168.0.1
  inbound:
    - port: 10001
      address: 192.168.0.2
      serviceAddress: 192.168.0.2
      servicePort: 10002
      tags:
        kuma.io/service: backend
"),
        &[],
    );
}

// ---------------------------------------------------------------- Kuma 2.14

/// What Kuma 2.14 relaxed (MeshService without inbound tags): valid now,
/// invalid with `--require-service-tag` (control planes before 2.14).
#[test]
fn kuma_2_14_needs_neither_tags_nor_inbounds() {
    let legacy = ["--require-service-tag"];
    // kumahq/kuma#15660: an outbound-only client with the transparent proxy.
    let no_inbound_tp = dp("labels:
  kuma.io/workload: demo-app
networking:
  address: 10.0.100.3
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
");
    assert_valid("no inbound, transparent proxy", &no_inbound_tp, &[]);
    assert_invalid(
        "no inbound, transparent proxy, before 2.14",
        &no_inbound_tp,
        &legacy,
        &[(
            "networking.inbound",
            "has to contain at least one inbound interface or gateway",
        )],
    );
    // Kuma's former "not enough inbound interfaces" case: outbound only.
    let outbound_only = dp("networking:
  address: 192.168.0.1
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
");
    assert_valid("outbound only", &outbound_only, &[]);
    assert_invalid(
        "outbound only, before 2.14",
        &outbound_only,
        &legacy,
        &[("networking.inbound", "at least one inbound interface")],
    );
    // An inbound without tags.
    let tagless = dp("networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
");
    assert_valid("inbound without tags", &tagless, &[]);
    assert_invalid(
        "inbound without tags, before 2.14",
        &tagless,
        &legacy,
        &[(
            "networking.inbound[0].tags[\"kuma.io/service\"]",
            "tag has to exist",
        )],
    );
    // A gateway without tags (2.14 backport of kumahq/kuma#17610).
    let tagless_gateway = dp("networking:
  address: 192.168.0.1
  gateway:
    tags: {}
");
    assert_valid("gateway without tags", &tagless_gateway, &[]);
    assert_invalid(
        "gateway without tags, before 2.14",
        &tagless_gateway,
        &legacy,
        &[(
            "networking.gateway.tags",
            "mandatory tag \"kuma.io/service\" is missing",
        )],
    );
    // "networking empty": 2.14 names only the address.
    assert_invalid(
        "networking empty",
        &dp("networking: {}\n"),
        &[],
        &[("networking.address", "")],
    );
}

// ---------------------------------------------------------------- invalid

/// Every invalid case of Kuma's table (but `metrics`), with Kuma's paths.
#[test]
fn kumas_invalid_dataplanes_name_kumas_fields() {
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "networking.address: can't use 0.0.0.0",
            "networking:
  address: 0.0.0.0
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
",
            &[("networking.address", "must not be 0.0.0.0 or ::")],
        ),
        (
            "networking.address: can't use ::",
            "networking:
  address: \"::\"
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
",
            &[("networking.address", "must not be 0.0.0.0 or ::")],
        ),
        (
            "networking.address: empty",
            "networking:
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
            &[("networking.address", "")],
        ),
        (
            "networking.address: invalid format",
            "networking:
  address: ..>_<..
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
        version: \"1\"
",
            &[(
                "networking.address",
                "must be an IP address or a domain name",
            )],
        ),
        (
            "networking: both inbounds and gateway are defined",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      servicePort: 7777
      tags:
        kuma.io/service: backend
        version: \"1\"
  gateway:
    tags:
      kuma.io/service: kong
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
            &[(
                "networking.inbound",
                "inbound cannot be defined for delegated gateways",
            )],
        ),
        (
            "networking: builtin gateway must not have inbounds",
            "networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: kong
  inbound:
    - port: 3333
      tags:
        kuma.io/service: kong
",
            &[(
                "networking.inbound",
                "inbound cannot be defined for builtin gateways",
            )],
        ),
        (
            "networking: builtin gateway must not have outbounds",
            "networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: kong
  outbound:
    - port: 3333
      tags:
        kuma.io/service: kong
",
            &[(
                "networking.outbound",
                "outbound cannot be defined for builtin gateways",
            )],
        ),
        (
            "networking: builtin gateway must not have probes",
            "networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: kong
probes:
  port: 0
  endpoints:
   - inboundPort: 8088
     inboundPath: /healthz
     path: /8080/healthz
",
            &[(
                "networking.probes",
                "probes cannot be defined for builtin gateways",
            )],
        ),
        (
            "networking: builtin gateway must have a service tag",
            "networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags:
      foo: bar
",
            &[(
                "networking.gateway.tags",
                "mandatory tag \"kuma.io/service\" is missing",
            )],
        ),
        (
            "networking.inbound: port of the range",
            "networking:
  address: 192.168.0.1
  inbound:
    - tags:
        kuma.io/service: backend
        version: \"1\"
    - port: 65536
      tags:
        kuma.io/service: sub-backend
  outbound:
    - port: 3333
      tags:
        kuma.io/service: redis
",
            &[
                ("networking.inbound[0].port", "[1, 65535]"),
                (
                    "networking.inbound[1].port",
                    "port must be in the range [1, 65535]",
                ),
            ],
        ),
        (
            "networking.inbound: servicePort out of the range",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      servicePort: 65536
      tags:
        kuma.io/service: backend
",
            &[(
                "networking.inbound[0].servicePort",
                "port must be in the range [1, 65535]",
            )],
        ),
        (
            "networking.inbound: invalid address",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      address: invalid-address
      tags:
        kuma.io/service: backend
",
            &[("networking.inbound[0].address", "must be an IP address")],
        ),
        (
            "networking.inbound: empty service tag",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        version: \"v1\"
",
            &[(
                "networking.inbound[0].tags[\"kuma.io/service\"]",
                "tag has to exist",
            )],
        ),
        (
            "networking.inbound: empty tag value",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
        version:
",
            &[(
                "networking.inbound[0].tags[\"version\"]",
                "tag values cannot be empty",
            )],
        ),
        (
            // Kuma reports two violations here (invalid and empty); one says it.
            "networking.inbound: `protocol` tag with an empty value",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
        kuma.io/protocol:
",
            &[(
                "networking.inbound[0].tags[\"kuma.io/protocol\"]",
                "cannot be empty",
            )],
        ),
        (
            "networking.inbound: `protocol` tag with unsupported value",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
        kuma.io/protocol: not-yet-supported-protocol
",
            &[(
                "networking.inbound[0].tags[\"kuma.io/protocol\"]",
                "must be one of http, http2, grpc, tcp, tls, kafka",
            )],
        ),
        (
            "networking.gateway: empty service tag",
            "networking:
  address: 192.168.0.1
  gateway:
    tags:
      version: \"v1\"
",
            &[(
                "networking.gateway.tags",
                "mandatory tag \"kuma.io/service\" is missing",
            )],
        ),
        (
            "networking.gateway: empty tag value",
            "networking:
  address: 192.168.0.1
  gateway:
    tags:
      kuma.io/service: backend
      version:
",
            &[(
                "networking.gateway.tags[\"version\"]",
                "tag values cannot be empty",
            )],
        ),
        (
            "networking.gateway: protocol http",
            "networking:
  address: 192.168.0.1
  gateway:
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
",
            &[(
                "networking.gateway.tags[\"kuma.io/protocol\"]",
                "other values than tcp are not allowed",
            )],
        ),
        (
            "networking.outbound: no tags",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
",
            &[(
                "networking.outbound[0].tags",
                "mandatory tag \"kuma.io/service\" is missing",
            )],
        ),
        (
            "networking.outbound: tags without the service tag",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
      tags:
        version: v1
",
            &[(
                "networking.outbound[0].tags",
                "mandatory tag \"kuma.io/service\" is missing",
            )],
        ),
        (
            "networking.outbound: port out of the range",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
  outbound:
    - tags:
        kuma.io/service: redis
    - port: 65536
      tags:
        kuma.io/service: elastic
",
            &[
                ("networking.outbound[0].port", "[1, 65535]"),
                ("networking.outbound[1].port", "[1, 65535]"),
            ],
        ),
        (
            "networking.outbound: invalid address",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
      address: invalid
      tags:
        kuma.io/service: elastic
",
            &[("networking.outbound[0].address", "must be an IP address")],
        ),
        (
            "networking.inbound: tag name with invalid characters",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
        version: \"v1\"
        inv@lidT/gN%me: value
",
            &[(
                "networking.inbound[0].tags[\"inv@lidT/gN%me\"]",
                "tag names must consist of",
            )],
        ),
        (
            "networking.inbound: tag value with invalid characters",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 1234
      tags:
        kuma.io/service: backend
        version: \"v1\"
        invalidTagValue: inv@lid+t@g
",
            &[(
                "networking.inbound[0].tags[\"invalidTagValue\"]",
                "tag values must consist of",
            )],
        ),
        (
            "inbound service address invalid",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 10001
      serviceAddress: INVALID
      tags:
        kuma.io/service: backend
",
            &[(
                "networking.inbound[0].serviceAddress",
                "must be an IP address",
            )],
        ),
        (
            "inbound service address overlap address",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 10001
      serviceAddress: 192.168.0.1
      tags:
        kuma.io/service: backend
",
            &[(
                "networking.inbound[0].serviceAddress",
                "serviceAddress and servicePort have to differ from networking.address and port",
            )],
        ),
        (
            "inbound service address overlap inbound address",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 10001
      address: 192.168.0.2
      serviceAddress: 192.168.0.2
      tags:
        kuma.io/service: backend
",
            &[(
                "networking.inbound[0].serviceAddress",
                "serviceAddress and servicePort have to differ from the inbound's address and port",
            )],
        ),
        (
            "dataplane with virtual probe",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
probes:
  port: 0
  endpoints:
   - inboundPort: 8088
     inboundPath: /healthz
     path: /8080/healthz
   - inboundPort: 99999999
     inboundPath: healthz
     path: 8080/healthz
   - inboundPort: 1000
     inboundPath:
     path:
",
            &[
                ("probes.port", "port must be in the range [1, 65535]"),
                ("probes.endpoints[1].inboundPort", "[1, 65535]"),
                (
                    "probes.endpoints[1].inboundPath",
                    "should be a valid URL Path",
                ),
                ("probes.endpoints[1].path", "should be a valid URL Path"),
                (
                    "probes.endpoints[2].inboundPath",
                    "should be a valid URL Path",
                ),
                ("probes.endpoints[2].path", "should be a valid URL Path"),
            ],
        ),
        (
            "dataplane with service probe",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      serviceProbe:
        timeout: 1s
        interval: \"0\"
        healthyThreshold: 5
        unhealthyThreshold: 0
        tcp: {}
      tags:
        kuma.io/service: backend
",
            &[
                (
                    "networking.inbound[0].serviceProbe.interval",
                    "must have a positive value",
                ),
                (
                    "networking.inbound[0].serviceProbe.unhealthyThreshold",
                    "must have a positive value",
                ),
            ],
        ),
        (
            "dataplane with admin port equal to inbound",
            "networking:
  address: 192.168.0.1
  admin:
    port: 8080
  inbound:
    - port: 8080
      servicePort: 7777
      address: 127.0.0.1
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
      address: 127.0.0.1
      tags:
        kuma.io/service: redis
",
            &[("networking.admin.port", "must differ from inbound")],
        ),
        (
            "dataplane with admin port equal to outbound",
            "networking:
  address: 192.168.0.1
  admin:
    port: 3333
  inbound:
    - port: 8080
      servicePort: 7777
      address: 127.0.0.1
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
      address: 127.0.0.1
      tags:
        kuma.io/service: redis
",
            &[("networking.admin.port", "must differ from outbound")],
        ),
        (
            "dataplane with empty backend ref",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
      backendRef: {}
",
            &[
                (
                    "networking.outbound[0].backendRef.kind",
                    "MeshService, MeshExternalService, MeshMultiZoneService",
                ),
                (
                    "networking.outbound[0].backendRef",
                    "either 'name' or 'labels' should be specified",
                ),
                (
                    "networking.outbound[0].backendRef.port",
                    "port must be in the range [1, 65535]",
                ),
            ],
        ),
        (
            "backend ref clashes with tags or service and missing port",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
  outbound:
    - port: 3333
      tags:
        kuma.io/service: xyz
      backendRef:
        kind: MeshService
        name: xyz
        port: 8080
    - port: 3334
      tags:
        service: xyz
      backendRef:
        kind: MeshService
        name: xyz
",
            &[
                (
                    "networking.outbound[0].backendRef",
                    "both backendRef and tags/service cannot be defined",
                ),
                (
                    "networking.outbound[1].backendRef.port",
                    "port must be in the range [1, 65535]",
                ),
                (
                    "networking.outbound[1].backendRef",
                    "both backendRef and tags/service cannot be defined",
                ),
            ],
        ),
        (
            // Kuma's 7 violations, plus the two namespaces a Universal
            // Dataplane cannot have (refs[1], refs[5]).
            "transparent proxy with reachable backend refs",
            "networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      servicePort: 7777
      address: 192.168.0.1
      tags:
        kuma.io/service: backend
        version: \"1\"
  transparentProxying:
    reachableBackends:
      refs:
      - kind: Something
        name: first
        labels:
          kuma.io/test: test
      - kind: MeshService
        name: second
        namespace: not-valid
        labels:
          kuma.io/test: test
      - kind: MeshService
        name: third
        labels:
          kuma.io/test: test
      - kind: MeshService
        name: first$-.kuma
      - kind: MeshService
      - kind: MeshService
        namespace: xyz
",
            &[
                (
                    "networking.transparentProxying.reachableBackends.refs[0].kind",
                    "must be one of MeshService, MeshExternalService, MeshMultiZoneService",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[0].labels",
                    "labels cannot be defined when name",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[1].labels",
                    "labels cannot be defined when name",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[1].namespace",
                    "a Universal Dataplane's refs have no namespace",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[2].labels",
                    "labels cannot be defined when name",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[3].name",
                    "lowercase RFC 1123 subdomain",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[4].name",
                    "name or labels are required",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[5].name",
                    "name is required when namespace is defined",
                ),
                (
                    "networking.transparentProxying.reachableBackends.refs[5].namespace",
                    "a Universal Dataplane's refs have no namespace",
                ),
            ],
        ),
    ];
    for (name, body, want) in cases {
        assert_invalid(name, &dp(body), &[], want);
    }
}

/// Issue 8 item 8: Kuma's valid "reachableBackendRefs" case names a
/// namespace; a Universal Dataplane cannot (the forwarder refuses it too),
/// a Pod annotation can.
#[test]
fn universal_refs_have_no_namespace() {
    let body = dp("networking:
  address: 192.168.0.1
  inbound:
    - port: 8080
      tags:
        kuma.io/service: backend
  transparentProxying:
    reachableBackends:
      refs:
      - kind: MeshExternalService
        name: es
        namespace: es1
");
    assert_invalid(
        "namespace in a Universal ref",
        &body,
        &[],
        &[(
            "networking.transparentProxying.reachableBackends.refs[0].namespace",
            "a Universal Dataplane's refs have no namespace",
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(&dir, &body);
    let out = stdout_of(
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(["-o", "kubernetes-annotations"]),
    );
    assert!(out.contains("namespace: es1"), "{out}");
}

// ---------------------------------------------------------------- kumactl apply

/// `kumactl apply -f apply-dataplane-template-dots.yaml -v
/// var.with.dots.in.the.name=2.2.2.2`: a dotted variable name.
#[test]
fn kumactl_apply_dotted_variable_names() {
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(
        &dir,
        "name: sample\nmesh: default\ntype: Dataplane\nnetworking:\n  address: \"{{ var.with.dots.in.the.name }}\"\n  inbound:\n    - port: 80\n",
    );
    let out = stdout_of(
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(["-v", "var.with.dots.in.the.name=2.2.2.2"]),
    );
    assert_eq!(
        yaml(&out),
        yaml(
            "type: Dataplane\nmesh: default\nname: sample\nnetworking:\n  address: 2.2.2.2\n  inbound:\n  - port: 80\n"
        )
    );
}

/// What kumactl's dry run prints, without the store's timestamps.
fn kumactl_documents(golden: &str) -> Vec<Value> {
    golden
        .split("---\n")
        .map(|d| {
            let mut v = yaml(d);
            let m = v.as_mapping_mut().unwrap();
            m.remove("creationTime");
            m.remove("modificationTime");
            v
        })
        .collect()
}

fn documents(stream: &str) -> Vec<Value> {
    stream.split("---\n").map(yaml).collect()
}

/// `kumactl apply -f apply-many-dataplane-template.yaml -v address=2.2.2.2
/// --dry-run` and `apply-dataplane-template.yaml`: every document rendered.
#[test]
fn kumactl_apply_multi_document_template() {
    let doc = |name: &str| {
        format!(
            "name: {name}\nmesh: default\ntype: Dataplane\nnetworking:\n  address: \"{{{{ address }}}}\"\n  inbound:\n    - port: 80\n      tags:\n        \"kuma.io/service\": \"web\"\n"
        )
    };
    let many = [doc("sample"), doc("sample-2"), doc("sample-3")].join("---\n");
    let golden = "type: Dataplane\nmesh: default\nname: sample\ncreationTime: \"0001-01-01T00:00:00Z\"\nmodificationTime: \"0001-01-01T00:00:00Z\"\nnetworking:\n  address: 2.2.2.2\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n---\ntype: Dataplane\nmesh: default\nname: sample-2\ncreationTime: \"0001-01-01T00:00:00Z\"\nmodificationTime: \"0001-01-01T00:00:00Z\"\nnetworking:\n  address: 2.2.2.2\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n---\ntype: Dataplane\nmesh: default\nname: sample-3\ncreationTime: \"0001-01-01T00:00:00Z\"\nmodificationTime: \"0001-01-01T00:00:00Z\"\nnetworking:\n  address: 2.2.2.2\n  inbound:\n  - port: 80\n    tags:\n      kuma.io/service: web\n";
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(&dir, &many);
    let out = stdout_of(
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(["-v", "address=2.2.2.2"]),
    );
    assert_eq!(documents(&out), kumactl_documents(golden));

    // The single-document template of kumactl's "resolved variable" test.
    let t = write_template(&dir, &doc("sample"));
    let out = stdout_of(
        tproxyctl()
            .arg("--template")
            .arg(&t)
            .args(["-v", "address=2.2.2.2"]),
    );
    assert_eq!(
        documents(&out),
        kumactl_documents(golden.split("---\n").next().unwrap())
    );
}
