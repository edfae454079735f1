//! Dry-run goldens: every `tests/golden/dryrun/<case>.case` is run as
//! `tproxyctl install transparent-proxy --dry-run --kuma-dp-user daemon …`
//! in a fresh network namespace (so the host's interfaces and rules cannot
//! leak in) and its stdout compared with `<case>.txt`. `UPDATE_GOLDEN=1`
//! rewrites the expected files; nothing else does.
//!
//! Case file lines: `# comment`, `ipv6` (give the namespace IPv6 so the
//! plan is dual-stack), `setup <command>` (run in the namespace first),
//! `env KEY=VALUE`, `arg <argument>`; `{dir}` is the golden directory.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::require_kernel;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/dryrun")
}

pub(crate) struct Case {
    pub name: String,
    pub ipv6: bool,
    pub setup: Vec<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

fn parse(name: &str, text: &str) -> Case {
    let d = dir().display().to_string();
    let mut c = Case {
        name: name.to_string(),
        ipv6: false,
        setup: Vec::new(),
        env: Vec::new(),
        args: Vec::new(),
    };
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let line = line.replace("{dir}", &d);
        match line.split_once(' ') {
            _ if line == "ipv6" => c.ipv6 = true,
            Some(("setup", rest)) => c.setup.push(rest.to_string()),
            Some(("env", rest)) => {
                let (k, v) = rest.split_once('=').expect("env KEY=VALUE");
                c.env.push((k.to_string(), v.to_string()));
            }
            Some(("arg", rest)) => c.args.push(rest.to_string()),
            _ => panic!("{name}: cannot read case line '{line}'"),
        }
    }
    c
}

/// Every golden case, sorted by name.
pub(crate) fn cases() -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("golden dir")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "case")
                .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))?
        })
        .collect();
    names.sort();
    assert!(names.len() >= 15, "golden cases missing: {names:?}");
    names
        .iter()
        .map(|name| parse(name, &read_to_string(&dir().join(format!("{name}.case")))))
        .collect()
}

fn run_case(c: &Case) -> String {
    // the peer of a topology holds the other end of the veth: keep it alive
    let topology;
    let plain;
    let ns = if c.ipv6 {
        topology = Topology::new("gold");
        &topology.a
    } else {
        plain = Netns::new("gold");
        &plain
    };
    for s in &c.setup {
        ns.sh(s);
    }
    let mut args: Vec<&str> = vec![
        "install",
        "transparent-proxy",
        "--dry-run",
        "--kuma-dp-user",
        EXEMPT_USER,
    ];
    args.extend(c.args.iter().map(String::as_str));
    let mut cmd = ns.cmd(bin(), &args);
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("tproxyctl runs");
    assert!(
        out.status.success(),
        "{}: exit {:?}\n{}",
        c.name,
        out.status.code(),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn dry_run_goldens() {
    require_kernel!();
    let update = std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1");
    let mut failures = Vec::new();
    for case in cases() {
        let name = &case.name;
        let got = run_case(&case);
        let expected_path = dir().join(format!("{name}.txt"));
        if update {
            std::fs::write(&expected_path, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "--- {name}: expected ({})\n{want}\n+++ got\n{got}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden(s) differ (UPDATE_GOLDEN=1 cargo test --test integration golden:: rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The verbose and plain outputs are accepted by iptables-restore --test of
/// both backends, as kumactl's are (reference §3.7).
#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn dry_run_output_is_valid_restore_input() {
    require_kernel!();
    let ns = Netns::new("valid");
    for name in [
        "exclusions",
        "verbose",
        "dns-capture-all",
        "vnet",
        "logging",
        "insert-flags",
    ] {
        let text = read_to_string(&dir().join(format!("{name}.txt")));
        let families: Vec<&str> = text.split("### IPv6 ###").collect();
        for (i, part) in families.iter().enumerate() {
            let body = part.trim_start_matches("### IPv4 ###").trim();
            for b in Backend::ALL {
                let tool = b.restore(i == 1);
                let mut c = ns.cmd(&tool, &["--test", "--noflush"]);
                c.stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                let mut child = c.spawn().unwrap();
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{body}\n").as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{name} family {i} rejected by {tool}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
