//! The README and the pages under docs/ are the documentation an operator
//! navigates, so these tests keep them from silently falling behind the code
//! or falling apart: every configuration key, environment variable and
//! command-line flag (taken from the schema and the clap definitions) is
//! documented on the page that owns it; every relative link and `#anchor`
//! resolves (headings slugged as GitHub does); every page is reachable from
//! the README; and the README stays a short front door with the demo and
//! test commands at the top. Markdown is parsed with pulldown-cmark, so code
//! blocks, inline code and tables are read as a renderer reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use clap::{Command, CommandFactory};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use tproxyctl::cli::Cli;
use tproxyctl::cli::man_sections::PROCESS_ENV;
use tproxyctl::config::schema::{self, KEYS};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The README may not grow past this: the reference belongs in docs/.
const README_MAX_LINES: usize = 250;

/// One Markdown file: its path relative to the repository, the GitHub
/// anchors of its headings and the destinations of its links.
struct Doc {
    path: PathBuf,
    anchors: BTreeSet<String>,
    links: Vec<String>,
}

/// README.md and every docs/*.md, parsed.
fn docs() -> Vec<Doc> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| p.strip_prefix(ROOT).unwrap().to_path_buf())
        .collect();
    pages.sort();
    paths.extend(pages);
    paths.into_iter().map(|p| parse(&p)).collect()
}

fn parse(path: &Path) -> Doc {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (anchors, links) = anchors_and_links(&text);
    Doc {
        path: path.to_path_buf(),
        anchors,
        links,
    }
}

/// The anchors GitHub gives the headings of `text` (a repeated heading gets
/// `-1`, `-2`, …) and every link destination.
fn anchors_and_links(text: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(text, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let slug = slug(&heading.take().unwrap());
                let n = seen.entry(slug.clone()).or_insert(0);
                anchors.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
                *n += 1;
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => links.push(dest_url.to_string()),
            _ => {}
        }
    }
    (anchors, links)
}

/// GitHub's heading anchor (github-slugger): lower case, punctuation other
/// than `-` and `_` dropped, each space a `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The problems with one link of `from`, if any.
fn check_link(from: &Doc, dest: &str, all: &BTreeMap<PathBuf, &Doc>) -> Option<String> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return None;
    }
    let (file, anchor) = dest.split_once('#').unwrap_or((dest, ""));
    let target = if file.is_empty() {
        from.path.clone()
    } else {
        normalize(&from.path.parent().unwrap().join(file))
    };
    if file.starts_with('/') || !Path::new(ROOT).join(&target).exists() {
        return Some(format!(
            "{}: link ({dest}) points to {}, which does not exist",
            from.path.display(),
            target.display()
        ));
    }
    if anchor.is_empty() {
        return None;
    }
    match all.get(&target) {
        Some(doc) if doc.anchors.contains(anchor) => None,
        Some(_) => Some(format!(
            "{}: link ({dest}): {} has no heading with the anchor #{anchor}",
            from.path.display(),
            target.display()
        )),
        None => Some(format!(
            "{}: link ({dest}): an #anchor into {}, which is not a checked Markdown page",
            from.path.display(),
            target.display()
        )),
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let docs = docs();
    let all: BTreeMap<PathBuf, &Doc> = docs.iter().map(|d| (d.path.clone(), d)).collect();
    let broken: Vec<String> = docs
        .iter()
        .flat_map(|d| d.links.iter().map(move |l| (d, l)))
        .filter_map(|(d, l)| check_link(d, l, &all))
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_slugs_are_githubs() {
    for (heading, anchor) in [
        (
            "# Keeping the rules across reboots with firewalld (`--store-firewalld`)",
            "keeping-the-rules-across-reboots-with-firewalld---store-firewalld",
        ),
        ("## Validation (Kuma 2.14)", "validation-kuma-214"),
        (
            "### Effective settings (`--print-config`, `GET /config`)",
            "effective-settings---print-config-get-config",
        ),
        (
            "## tproxyctl's own environment variables",
            "tproxyctls-own-environment-variables",
        ),
        ("## `status`", "status"),
    ] {
        let (anchors, _) = anchors_and_links(heading);
        assert_eq!(anchors.into_iter().collect::<Vec<_>>(), [anchor]);
    }
    let (anchors, _) = anchors_and_links("## A\n\n## A\n\n```sh\n# not a heading\n```\n");
    assert_eq!(anchors.into_iter().collect::<Vec<_>>(), ["a", "a-1"]);
}

#[test]
fn every_docs_page_is_linked_from_the_readme() {
    let docs = docs();
    let readme = &docs[0];
    let linked: BTreeSet<PathBuf> = readme
        .links
        .iter()
        .map(|l| normalize(Path::new(l.split('#').next().unwrap())))
        .collect();
    let orphans: Vec<_> = docs[1..]
        .iter()
        .filter(|d| !linked.contains(&d.path))
        .map(|d| d.path.display().to_string())
        .collect();
    assert!(
        orphans.is_empty(),
        "README.md links to none of: {orphans:?} (add them to its Documentation table)"
    );
}

fn page(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(name))
        .unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// The page that documents a configuration key (and its flag and variable).
fn key_page(path: &str) -> &'static str {
    if path.starts_with("ebpf.") {
        "docs/ebpf.md"
    } else {
        "docs/configuration.md"
    }
}

#[test]
fn every_setting_is_documented_on_the_page_that_owns_it() {
    let mut missing = Vec::new();
    let mut need = |page_name: &str, text: &str, what: String| {
        if !text.contains(&what) {
            missing.push(format!("{page_name}: {what}"));
        }
    };
    for k in KEYS {
        let owner = key_page(k.path);
        let text = page(owner);
        need(owner, &text, format!("`{}`", k.path));
        if let Some(env) = k.env {
            // The tables give the part after KUMA_TRANSPARENT_PROXY_.
            need(owner, &text, format!("`{env}`"));
            assert!(!env.starts_with(schema::ENV_PREFIX));
        }
        if let Some(flag) = k.flag {
            need(owner, &text, format!("`--{flag}`"));
        }
    }
    // tproxyctl's own variables: those the arguments read, and the others.
    let config = page("docs/configuration.md");
    let mut own: BTreeSet<String> = PROCESS_ENV.iter().map(|(n, _)| n.to_string()).collect();
    walk(&Cli::command(), &mut Vec::new(), &mut |_, cmd| {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                own.insert(env.to_string_lossy().into_owned());
            }
        }
    });
    assert!(own.contains("TPROXYCTL_RECEIPT"), "{own:?}");
    for env in own {
        need("docs/configuration.md", &config, format!("`{env}`"));
    }
    assert!(
        missing.is_empty(),
        "not documented where it belongs: {missing:#?}"
    );
}

/// The page that documents a command's own flags.
fn command_page(path: &[String]) -> Option<&'static str> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Some(match path.as_slice() {
        [] | ["completion"] => "README.md",
        ["install", "transparent-proxy"] | ["uninstall", "transparent-proxy"] => "docs/install.md",
        ["uninstall", "ebpf"] => "docs/ebpf.md",
        ["status"] | ["verify"] | ["install", "transparent-proxy-validator"] => "docs/checking.md",
        ["generate", "dataplane"] => "docs/dataplane.md",
        ["forwarder"] => "docs/forwarder.md",
        _ => return None,
    })
}

/// Calls `f` with every command that runs (has no subcommands) and the root.
fn walk(cmd: &Command, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &Command)) {
    if path.is_empty() || !cmd.has_subcommands() {
        f(path, cmd);
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        path.push(sub.get_name().to_string());
        walk(sub, path, f);
        path.pop();
    }
}

#[test]
fn every_flag_is_documented_on_the_page_that_owns_it() {
    let mut missing = Vec::new();
    walk(&Cli::command(), &mut Vec::new(), &mut |path, cmd| {
        let Some(own) = command_page(path) else {
            missing.push(format!(
                "`tproxyctl {}` has no page: add it to command_page() and document it",
                path.join(" ")
            ));
            return;
        };
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) || (long == "quiet" && !path.is_empty()) {
                continue; // --quiet is global: documented with the root command
            }
            // The shared flag groups have their own pages.
            let owner = match arg.get_help_heading() {
                Some("Transparent proxy configuration") => "docs/configuration.md",
                Some("eBPF mode") => "docs/ebpf.md",
                _ => own,
            };
            let flag = format!("--{long}");
            if !page(owner).contains(&flag) {
                missing.push(format!(
                    "{owner}: {flag} (of `tproxyctl {}`)",
                    path.join(" ")
                ));
            }
        }
    });
    assert!(
        missing.is_empty(),
        "flags not documented where they belong: {missing:#?}"
    );
}

#[test]
fn readme_is_a_short_front_door() {
    let text = page("README.md");
    let lines = text.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines; keep it under {README_MAX_LINES} and move reference text to docs/"
    );
}

#[test]
fn readme_starts_with_the_demo_and_test_commands() {
    let text = page("README.md");
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
        assert!(Path::new(ROOT).join(script).exists(), "{script} exists");
    }
}
