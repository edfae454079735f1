//! Test hygiene, checked on the sources: every test that needs something of
//! the machine (root, kernel tools, firewalld, python3, the shared seeds)
//! carries the `#[cfg_attr(not(<group>), ignore = "…")]` that build.rs
//! drives, so where it cannot run it is reported as ignored with its reason
//! by cargo test and nextest alike — never a silent early return that counts
//! as a pass. And every regeneration hint in a test names a test target
//! that exists.

use std::path::{Path, PathBuf};

/// Calls that mean "this test needs the machine".
const GATES: &[&str] = &[
    "require_kernel!()",
    "kernel_ready()",
    "can_run(",
    "sandbox_possible(",
    "boot(",
    "is_root()",
    "require_ebpf!()",
];

/// The groups build.rs defines.
const GROUPS: &[&str] = &[
    "kernel_tests",
    "firewalld_tests",
    "firewalld_installed",
    "python3_installed",
    "shared_seeds",
    "ebpf_tests",
    "bpf_clang",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The index just past the `}` closing the block that opens at `open`,
/// skipping strings, raw strings, char literals and line comments.
fn block_end(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'/' if s.get(i + 1) == Some(&b'/') => {
                while i < s.len() && s[i] != b'\n' {
                    i += 1;
                }
            }
            b'r' if matches!(s.get(i + 1), Some(b'"') | Some(b'#'))
                && !s[i.saturating_sub(1)].is_ascii_alphanumeric() =>
            {
                let hashes = s[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if s.get(i + 1 + hashes) == Some(&b'"') {
                    let close: Vec<u8> = std::iter::once(b'"')
                        .chain(std::iter::repeat_n(b'#', hashes))
                        .collect();
                    i += 2 + hashes;
                    while i < s.len() && !s[i..].starts_with(&close) {
                        i += 1;
                    }
                    i += close.len() - 1;
                }
            }
            b'"' => {
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if s.get(i + 2) == Some(&b'\'') => i += 2,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    s.len()
}

/// (name, attributes, body) of every `#[test]` function in `text`.
fn tests_in(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("#[test]") {
        let start = from + at;
        let Some(fn_at) = text[start..].find("fn ").map(|i| start + i) else {
            break;
        };
        let name: String = text[fn_at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let open = fn_at + text[fn_at..].find('{').unwrap();
        let end = block_end(text.as_bytes(), open);
        out.push((
            name,
            text[start..fn_at].to_string(),
            text[open..end].to_string(),
        ));
        from = end;
    }
    out
}

#[test]
fn tests_that_need_the_machine_are_ignored_where_it_lacks() {
    let mut files = Vec::new();
    rust_files(&root().join("tests"), &mut files);
    rust_files(&root().join("src"), &mut files);
    let mut bad = Vec::new();
    let mut gated = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (name, attrs, body) in tests_in(&text) {
            if !GATES.iter().any(|g| body.contains(g)) {
                continue;
            }
            gated += 1;
            let ok = GROUPS
                .iter()
                .any(|g| attrs.contains(&format!("cfg_attr(not({g}), ignore")))
                || attrs.contains("cfg_attr(\n") && GROUPS.iter().any(|g| attrs.contains(g));
            if !ok {
                bad.push(format!(
                    "{}: {name}",
                    f.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        gated > 50,
        "found only {gated} gated tests: the scan is broken"
    );
    assert!(
        bad.is_empty(),
        "these tests need the machine but are not marked \
         #[cfg_attr(not(kernel_tests), ignore = \"kernel test: …\")] (or another build.rs \
         group), so where they cannot run they would pass without running:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn no_test_skips_by_returning_early() {
    let mut files = Vec::new();
    rust_files(&root().join("tests"), &mut files);
    rust_files(&root().join("src"), &mut files);
    // (built at run time so that this test does not find itself)
    let needles = [
        ["\"", "skip", "ped"].concat(),
        ["skip", "ped", ":"].concat(),
    ];
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (name, _, body) in tests_in(&text) {
            let lower = body.to_lowercase();
            if needles.iter().any(|n| lower.contains(n.as_str())) {
                bad.push(format!(
                    "{}: {name}",
                    f.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "tests that print a skip and pass (invisible under both runners): {bad:?}"
    );
}

#[test]
fn regeneration_hints_name_test_targets_that_exist() {
    let mut files = Vec::new();
    rust_files(&root().join("tests"), &mut files);
    let hint = "cargo test --test ";
    let mut hints = 0;
    for f in files.iter().filter(|f| !f.ends_with("hygiene.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices(hint) {
            let target: String = text[i + hint.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            hints += 1;
            let exists = root().join("tests").join(&target).join("main.rs").is_file()
                || root().join("tests").join(format!("{target}.rs")).is_file();
            assert!(
                exists,
                "{} tells to run `cargo test --test {target}`, which is no test target",
                f.display()
            );
        }
    }
    assert!(hints >= 3, "found {hints} hints: the scan is broken");
}
