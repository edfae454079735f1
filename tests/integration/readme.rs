//! The README documents every configuration key, environment variable and
//! flag of the install command (taken from the schema and the clap
//! definitions), so documentation cannot silently fall behind the code.

use clap::CommandFactory;
use tproxyctl::cli::Cli;
use tproxyctl::config::schema::{self, KEYS};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn readme_documents_every_setting() {
    let text = readme();
    let mut missing = Vec::new();
    for k in KEYS {
        let leaf = k.path.rsplit('.').next().unwrap();
        if !text.contains(leaf) {
            missing.push(format!("config key {}", k.path));
        }
        if let Some(e) = k.env
            && !text.contains(e)
        {
            missing.push(format!("environment {}{e}", schema::ENV_PREFIX));
        }
    }
    let cmd = Cli::command();
    for path in [
        ["install", "transparent-proxy"],
        ["uninstall", "transparent-proxy"],
    ] {
        let sub = cmd
            .find_subcommand(path[0])
            .and_then(|c| c.find_subcommand(path[1]))
            .unwrap();
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long()
                && !["help", "version"].contains(&long)
                && !text.contains(&format!("--{long}"))
            {
                missing.push(format!("flag --{long}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md does not mention: {missing:?}"
    );
}

#[test]
fn readme_starts_with_the_demo_and_test_commands() {
    let text = readme();
    let head: String = text.lines().take(40).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("scripts/demo.sh"),
        "the demo command is near the top"
    );
    assert!(
        head.contains("scripts/test.sh"),
        "the test command is near the top"
    );
    for script in ["scripts/demo.sh", "scripts/test.sh"] {
        assert!(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(script)
                .exists(),
            "{script} exists"
        );
    }
}
