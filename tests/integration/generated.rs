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
