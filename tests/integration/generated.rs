//! The committed completions and man pages equal what the clap definitions
//! generate (`scripts/regenerate.sh` rewrites them), and `tproxyctl
//! completion <shell>` prints the same scripts.

use std::path::Path;

use assert_cmd::Command;
use tproxyctl::cli::CompletionShell;
use tproxyctl::cli::generated::{completion, completion_file, man_pages};

fn check_or_write(path: &Path, want: &[u8], stale: &mut Vec<String>) {
    if std::env::var("UPDATE_GENERATED").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, want).unwrap();
        return;
    }
    match std::fs::read(path) {
        Ok(have) if have == want => {}
        _ => stale.push(path.display().to_string()),
    }
}

#[test]
fn committed_completions_and_man_pages_are_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for s in [
        CompletionShell::Bash,
        CompletionShell::Zsh,
        CompletionShell::Fish,
    ] {
        check_or_write(
            &root.join("completions").join(completion_file(s)),
            &completion(s),
            &mut stale,
        );
    }
    let pages = man_pages();
    assert!(
        pages
            .iter()
            .any(|(n, _)| n == "tproxyctl-install-transparent-proxy.1"),
        "{:?}",
        pages.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for (name, text) in &pages {
        check_or_write(&root.join("man").join(name), text, &mut stale);
    }
    // no page left over from a command that is gone
    if let Ok(entries) = std::fs::read_dir(root.join("man")) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !pages.iter().any(|(p, _)| *p == n) {
                stale.push(format!("man/{n} (no such command any more)"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale: {stale:?}; run scripts/regenerate.sh"
    );
}

#[test]
fn completion_command_prints_the_scripts() {
    for (name, s) in [
        ("bash", CompletionShell::Bash),
        ("zsh", CompletionShell::Zsh),
        ("fish", CompletionShell::Fish),
    ] {
        let out = Command::cargo_bin("tproxyctl")
            .unwrap()
            .args(["completion", name])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, completion(s), "{name}");
    }
    let out = Command::cargo_bin("tproxyctl")
        .unwrap()
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The text of a page's section (`.SH NAME` up to the next `.SH`).
fn section<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    // roff quotes a heading with a space
    let heading = if name.contains(' ') {
        format!("\"{name}\"")
    } else {
        name.to_string()
    };
    let start = page.find(&format!("\n.SH {heading}\n"))? + 1;
    let body = &page[start..];
    let end = body[1..].find("\n.SH ").map_or(body.len(), |i| i + 2);
    Some(&body[..end])
}

fn pages() -> Vec<(String, String)> {
    man_pages()
        .into_iter()
        .map(|(n, t)| (n, String::from_utf8(t).unwrap()))
        .collect()
}

/// roff escapes `-` as `\-`.
fn roff(s: &str) -> String {
    s.replace('-', "\\-")
}

#[test]
fn every_man_page_has_exit_status_and_the_command_pages_their_environment() {
    let pages = pages();
    for (name, page) in &pages {
        let exit = section(page, "EXIT STATUS").unwrap_or_else(|| panic!("{name}: no EXIT STATUS"));
        for code in ["\\fB0\\fR", "\\fB1\\fR", "\\fB2\\fR"] {
            assert!(exit.contains(code), "{name}: {code} missing in\n{exit}");
        }
        assert!(
            page.find("\n.SH \"EXIT STATUS\"").unwrap() < page.find("\n.SH VERSION").unwrap(),
            "{name}: the added sections go before VERSION"
        );
    }
    let page = |n: &str| {
        &pages
            .iter()
            .find(|(p, _)| p == n)
            .unwrap_or_else(|| panic!("no page {n}"))
            .1
    };
    // Every configuration variable of the schema, on every page of a
    // command that reads the configuration.
    for name in [
        "tproxyctl.1",
        "tproxyctl-install-transparent-proxy.1",
        "tproxyctl-uninstall-transparent-proxy.1",
        "tproxyctl-forwarder.1",
        "tproxyctl-generate-dataplane.1",
    ] {
        let env = section(page(name), "ENVIRONMENT").unwrap_or_else(|| panic!("{name}"));
        for key in tproxyctl::config::schema::KEYS {
            if let Some(var) = key.env {
                let var = roff(&format!("KUMA_TRANSPARENT_PROXY_{var}"));
                assert!(env.contains(&var), "{name}: {var} missing");
                assert!(env.contains(key.path), "{name}: {} missing", key.path);
            }
        }
        let files = section(page(name), "FILES").unwrap_or_else(|| panic!("{name}: no FILES"));
        assert!(
            files.contains(&roff("/etc/tproxyctl/config.yaml")),
            "{name}"
        );
    }
    // status reads no configuration
    assert!(!page("tproxyctl-status.1").contains("KUMA_TRANSPARENT_PROXY"));
    let install = section(page("tproxyctl-install-transparent-proxy.1"), "FILES").unwrap();
    for path in [
        "/var/lib/tproxyctl/receipt.json",
        "/etc/firewalld/direct.xml",
        "/etc/resolv.conf",
        "/usr/lib/systemd/system/tproxyctl-install.service",
    ] {
        assert!(
            install.contains(&roff(path)),
            "{path} missing in\n{install}"
        );
    }
    let verify = page("tproxyctl-verify.1");
    assert!(
        verify.contains("iproute2"),
        "verify documents that it needs iproute2"
    );
}

/// Every `TPROXYCTL_*` variable the code reads is documented on the main
/// page (so a variable added anywhere in src/ cannot stay undocumented).
#[test]
fn every_tproxyctl_variable_in_the_code_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = std::collections::BTreeSet::new();
    let mut dirs = vec![root.join("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut rest = text.as_str();
                while let Some(i) = rest.find("TPROXYCTL_") {
                    let tail = &rest[i..];
                    let end = tail
                        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                        .unwrap_or(tail.len());
                    let name = &tail[..end];
                    if name.len() > "TPROXYCTL_".len() && !name.ends_with('_') {
                        found.insert(name.to_string());
                    }
                    rest = &tail[end..];
                }
            }
        }
    }
    assert!(found.contains("TPROXYCTL_RECEIPT"), "{found:?}");
    let pages = pages();
    let main = &pages.iter().find(|(n, _)| n == "tproxyctl.1").unwrap().1;
    let env = section(main, "ENVIRONMENT").unwrap();
    for var in &found {
        assert!(
            env.contains(&format!("\\fB{}\\fR", roff(var))),
            "{var} is read by the code but not documented: add it to an argument's `env` or to \
             man_sections::PROCESS_ENV, then run scripts/regenerate.sh"
        );
    }
}
