//! The JSON output contract (docs/json-output.md): [`assert_document`]
//! checks a document printed or written by the real command — every key at
//! every depth camelCase, `schemaVersion` first and current, valid against
//! its published schema in docs/schemas/. The tests that run the commands
//! (cli, kernel, ebpf, fwd_ops) call it on what they get. Here: the schemas
//! and the document page themselves, and receipts written by tproxyctl 0.1.0
//! (before the contract: `version: 1`, `uid`, `mode`, `builtin_created`,
//! kebab-case hooks), which must still be read and uninstalled.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use crate::require_kernel;

/// The documents of the contract, by their schema file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// `install --dry-run --output json`
    Plan,
    /// `status --output json`
    Status,
    /// `verify --output json`
    Verify,
    /// the install receipt
    Receipt,
    /// the forwarder's `GET /config`
    ForwarderConfig,
}

impl Doc {
    const ALL: [Doc; 5] = [
        Doc::Plan,
        Doc::Status,
        Doc::Verify,
        Doc::Receipt,
        Doc::ForwarderConfig,
    ];

    fn name(self) -> &'static str {
        match self {
            Doc::Plan => "plan",
            Doc::Status => "status",
            Doc::Verify => "verify",
            Doc::Receipt => "receipt",
            Doc::ForwarderConfig => "forwarder-config",
        }
    }

    fn schema_path(self) -> PathBuf {
        repo()
            .join("docs/schemas")
            .join(format!("{}.schema.json", self.name()))
    }

    fn schema(self) -> Value {
        let p = self.schema_path();
        serde_json::from_str(&read_to_string(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Objects whose keys are data, not field names: the tool names of the
/// configuration's `iptablesExecutables` (kumactl's `iptables-save`, …).
const DATA_KEYS: &[&str] = &["/config/iptablesExecutables"];

fn is_camel_case(k: &str) -> bool {
    k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Every key under `v` that is not camelCase, as `path: key`.
fn non_camel_keys(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let data = DATA_KEYS.contains(&path);
            for (k, x) in m {
                if !data && !is_camel_case(k) {
                    out.push(format!("{path}/{k}"));
                }
                non_camel_keys(x, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for x in a {
                non_camel_keys(x, &format!("{path}/[]"), out);
            }
        }
        _ => {}
    }
}

/// What is wrong with a document by the contract (see the module doc).
fn contract_errors(doc: Doc, v: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if v.get("schemaVersion") != Some(&1.into()) {
        errors.push("schemaVersion is not 1".to_string());
    }
    let mut bad = Vec::new();
    non_camel_keys(v, "", &mut bad);
    errors.extend(bad.into_iter().map(|k| format!("{k}: not camelCase")));
    let schema = doc.schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    errors.extend(
        validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path())),
    );
    errors
}

/// Checks one document as the contract promises it.
pub fn assert_document(doc: Doc, v: &Value) {
    let errors = contract_errors(doc, v);
    assert!(
        errors.is_empty(),
        "{doc:?} breaks the contract ({}):\n{}\n{v:#}",
        doc.schema_path().display(),
        errors.join("\n")
    );
}

/// Parses a printed or written document and checks it, and that its text
/// begins with `schemaVersion` (a reader sees the version first).
pub fn document(doc: Doc, stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    assert!(
        text.trim_start()
            .trim_start_matches('{')
            .trim_start()
            .starts_with("\"schemaVersion\""),
        "{doc:?}: schemaVersion comes first:\n{text}"
    );
    let v: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "{doc:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    assert_document(doc, &v);
    v
}

/// Reads a receipt file and checks it.
pub fn receipt_document(path: &Path) -> Value {
    document(Doc::Receipt, read_to_string(path).as_bytes())
}

fn property_names(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(p)) = m.get("properties") {
                out.extend(p.keys().cloned());
            }
            m.values().for_each(|x| property_names(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| property_names(x, out)),
        _ => {}
    }
}

#[test]
fn the_schemas_are_valid_closed_and_documented() {
    let page = read_to_string(&repo().join("docs/json-output.md"));
    let mut defs: std::collections::BTreeMap<String, (Doc, Value)> = Default::default();
    for doc in Doc::ALL {
        let schema = doc.schema();
        jsonschema::meta::validate(&schema)
            .unwrap_or_else(|e| panic!("{}: {e}", doc.schema_path().display()));
        // The page names every field of every document (`name` or `x[].name`).
        let mut names = Default::default();
        property_names(&schema, &mut names);
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !page.contains(&format!("`{n}`")) && !page.contains(&format!(".{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/json-output.md does not describe these fields of {}: {missing:?}",
            doc.schema_path().display()
        );
        assert!(
            page.contains(&format!("schemas/{}.schema.json", doc.name())),
            "docs/json-output.md links the {} schema",
            doc.name()
        );
        // A definition shared by several schemas (each file stands alone)
        // is the same everywhere.
        for (name, def) in schema["$defs"].as_object().into_iter().flatten() {
            if let Some((other, d)) = defs.get(name) {
                assert_eq!(
                    d, def,
                    "$defs/{name} differs between the {other:?} and {doc:?} schemas"
                );
            } else {
                defs.insert(name.clone(), (doc, def.clone()));
            }
        }
    }
}

#[test]
fn the_checker_rejects_what_the_contract_forbids() {
    let mut bad = Vec::new();
    non_camel_keys(
        &serde_json::json!({"schemaVersion": 1, "a": [{"in_place": true}], "config": {"iptablesExecutables": {"iptables-save": "x"}}, "B": 1}),
        "",
        &mut bad,
    );
    assert_eq!(bad, ["/B", "/a/[]/in_place"]);
    let plan = |v: Value| contract_errors(Doc::Plan, &v);
    assert!(
        plan(serde_json::json!({"schemaVersion": 1, "mode": "iptables", "families": []}))
            .is_empty()
    );
    // an undocumented field, a missing version, a wrong enum value
    for v in [
        serde_json::json!({"schemaVersion": 1, "mode": "iptables", "families": [], "extra": 1}),
        serde_json::json!({"mode": "iptables", "families": []}),
        serde_json::json!({"schemaVersion": 1, "mode": "iptables", "families": [{"family": "IPv4", "comments": true, "chains": [], "rules": []}]}),
    ] {
        assert!(!plan(v.clone()).is_empty(), "{v}");
    }
}

// ---- receipts written by tproxyctl 0.1.0 --------------------------------

/// Receipts written by tproxyctl 0.1.0 (tests/fixtures/receipts-0.1.0/).
fn old_receipt(name: &str) -> PathBuf {
    repo().join("tests/fixtures/receipts-0.1.0").join(name)
}

/// A copy of an old receipt, trusted as a receipt must be (0600 in a
/// directory of ours).
fn place(name: &str, dir: &tempfile::TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.path().join("receipt.json");
    std::fs::copy(old_receipt(name), &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn receipts_of_0_1_0_are_read_and_rewritten_in_the_current_format() {
    use tproxyctl::host::receipt;
    for name in ["iptables-nft.json", "pending-legacy.json", "ebpf.json"] {
        let old: Value = serde_json::from_str(&read_to_string(&old_receipt(name))).unwrap();
        assert_eq!(old["version"], 1, "{name} is a receipt of 0.1.0");
        assert!(old.get("schemaVersion").is_none(), "{name}");
        let dir = tempfile::tempdir().unwrap();
        let path = place(name, &dir);
        let r = receipt::load(&path)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
            .unwrap_or_else(|| panic!("{name}: found"));
        assert_eq!(r.uid, old["uid"].as_u64().unwrap() as u32, "{name}");
        for (f, of) in r.families.iter().zip(old["families"].as_array().unwrap()) {
            assert_eq!(f.mode.as_str(), of["mode"], "{name}");
            for (t, ot) in f.tables.iter().zip(of["tables"].as_array().unwrap()) {
                let was: Vec<&str> = ot["builtin_created"]
                    .as_array()
                    .map(|a| a.iter().map(|c| c.as_str().unwrap()).collect())
                    .unwrap_or_default();
                assert_eq!(t.builtin_created, was, "{name}");
            }
        }
        // Written again, it is a document of the contract, and reads back
        // to the same receipt.
        let again = dir.path().join("again.json");
        receipt::store(&again, &r).unwrap();
        let v = receipt_document(&again);
        assert_eq!(receipt::load(&again).unwrap().unwrap(), r, "{name}");
        if name == "ebpf.json" {
            let hooks: Vec<&str> = v["ebpf"]["pinned"]["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["hook"].as_str().unwrap())
                .collect();
            assert!(hooks.contains(&"sockOps") && hooks.contains(&"skLookup"));
        }
    }
    // The fixtures cover every name 0.1.0 wrote differently.
    let all = ["iptables-nft.json", "pending-legacy.json", "ebpf.json"]
        .map(|n| read_to_string(&old_receipt(n)))
        .join("\n");
    for old_name in [
        "\"builtin_created\"",
        "\"uid\"",
        "\"mode\": \"nft\"",
        "\"mode\": \"legacy\"",
        "\"sock-ops\"",
        "\"sk-lookup\"",
        "\"pending\"",
    ] {
        assert!(all.contains(old_name), "no {old_name} in the fixtures");
    }
}

#[test]
fn receipts_of_an_unknown_format_are_refused_by_name() {
    use tproxyctl::host::receipt::{self, Loaded};
    let dir = tempfile::tempdir().unwrap();
    let path = place("iptables-nft.json", &dir);
    let mut v: Value = serde_json::from_str(&read_to_string(&path)).unwrap();
    let m = v.as_object_mut().unwrap();
    m.remove("version");
    m.insert("schemaVersion".into(), 2.into());
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    match receipt::read(&path).unwrap() {
        Loaded::Unreadable(why) => assert!(
            why.contains("schemaVersion 2") && why.contains("newer tproxyctl"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

/// Runs `exe --noflush` in `ns` with `input` (what an install applies).
fn restore(ns: &Netns, exe: &str, input: &str) {
    use std::io::Write;
    let mut c = ns
        .cmd(exe, &["--noflush"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "{exe} --noflush");
}

/// A namespace shaped as the one the fixtures were recorded in: IPv6 on a
/// veth (so installs are dual-stack) and, when `nat_prerouting`, an nft
/// `ip nat` table holding only PREROUTING (so the install created OUTPUT:
/// `builtin_created`).
fn recorded_host(tag: &str, nat_prerouting: bool) -> Netns {
    let ns = Netns::new(tag);
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    ns.ip(&["addr", "add", "2001:db8::1/64", "dev", "v0", "nodad"]);
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "v0"]);
    if nat_prerouting {
        ns.run_ok("nft", &["add", "table", "ip", "nat"]);
        ns.run_ok(
            "nft",
            &["add chain ip nat PREROUTING { type nat hook prerouting priority -100; }"],
        );
    }
    ns
}

fn loopback_v6(ns: &Netns) -> String {
    ns.run_ok("ip", &["-6", "addr", "show", "dev", "lo"])
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn an_install_recorded_by_0_1_0_is_shown_and_uninstalled() {
    require_kernel!();
    let ns = recorded_host("old", true);
    let before = ns.run_ok("nft", &["list", "ruleset"]);
    // What 0.1.0's install put there: each family's applied input, `::6`.
    let old: Value =
        serde_json::from_str(&read_to_string(&old_receipt("iptables-nft.json"))).unwrap();
    for f in old["families"].as_array().unwrap() {
        restore(
            &ns,
            f["executables"]["restore"].as_str().unwrap(),
            f["applied"].as_str().unwrap(),
        );
    }
    ns.ip(&["-6", "addr", "add", "::6/128", "dev", "lo"]);
    let dir = tempfile::tempdir().unwrap();
    let path = place("iptables-nft.json", &dir);
    let receipt = path.to_str().unwrap();

    let out = ns.tproxyctl(&["status", "--receipt", receipt, "--output", "json"]);
    let st = document(Doc::Status, &out.stdout);
    assert_eq!(st["installed"], true, "{st:#}");
    assert_eq!(st["kumaDpUid"], 1);
    let fams = st["families"].as_array().unwrap();
    assert_eq!(fams.len(), 2, "{st:#}");
    for f in fams {
        assert_eq!(f["backend"], "nft");
        assert_eq!(f["inPlace"], true, "{f:#}");
    }

    let out = ns.tproxyctl_ok(&["uninstall", "transparent-proxy", "--receipt", receipt]);
    assert!(
        stderr(&out).contains("removed 18 rule(s)"),
        "{}",
        stderr(&out)
    );
    assert!(!path.exists(), "the receipt is removed");
    // Back as before: the nat table with its PREROUTING only (OUTPUT was
    // builtin_created), raw and the IPv6 tables gone, ::6 gone.
    assert_eq!(ns.run_ok("nft", &["list", "ruleset"]), before);
    assert!(!loopback_v6(&ns).contains("::6/128"));
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn an_unfinished_run_recorded_by_0_1_0_is_undone() {
    require_kernel!();
    let ns = recorded_host("oldpend", false);
    // The install 0.1.0 was killed in (legacy): it had added `::6` and its
    // chains; its journal (`pending`) says so.
    let old: Value =
        serde_json::from_str(&read_to_string(&old_receipt("pending-legacy.json"))).unwrap();
    assert_eq!(old["pending"]["ipv6Loopback"], true);
    ns.ip(&["-6", "addr", "add", "::6/128", "dev", "lo"]);
    for f in old["pending"]["families"].as_array().unwrap() {
        let mut input = String::new();
        for t in f["tables"].as_array().unwrap() {
            input.push_str(&format!("*{}\n", t["table"].as_str().unwrap()));
            for c in t["chains"].as_array().unwrap() {
                input.push_str(&format!(":{} - [0:0]\n", c.as_str().unwrap()));
            }
            input.push_str("COMMIT\n");
        }
        restore(&ns, f["executables"]["restore"].as_str().unwrap(), &input);
    }
    assert!(
        ns.run_ok("iptables-legacy-save", &[])
            .contains("KUMA_MESH_OUTBOUND")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = place("pending-legacy.json", &dir);
    let out = ns.tproxyctl_ok(&[
        "uninstall",
        "transparent-proxy",
        "--receipt",
        path.to_str().unwrap(),
    ]);
    assert!(!path.exists(), "{}", stderr(&out));
    for save in ["iptables-legacy-save", "ip6tables-legacy-save"] {
        let text = ns.run_ok(save, &[]);
        assert!(!text.contains("KUMA_MESH"), "{save}:\n{text}");
    }
    assert!(
        !loopback_v6(&ns).contains("::6/128"),
        "the journal's ::6 is removed"
    );
}
