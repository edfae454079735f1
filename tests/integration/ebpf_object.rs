//! The committed BPF object is what `bpf/build.sh` makes of the committed
//! sources: rebuilt and compared byte for byte when the recorded clang is
//! present, in a directory of another name (so a path embedded in the
//! object would show), and the recorded SHA-256 matches the object.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn info_line(key: &str) -> String {
    let info = std::fs::read_to_string(root().join("bpf/tproxy.bpf.o.info")).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("bpf/tproxy.bpf.o.info has no {key} line"))
        .trim()
        .to_string()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_recorded_digest_is_the_committed_objects() {
    assert_eq!(
        sha256(&root().join("bpf/tproxy.bpf.o")),
        info_line("sha256"),
        "bpf/tproxy.bpf.o.info is stale; run bpf/build.sh"
    );
    assert_eq!(tproxyctl::ebpf::object::sha256(), info_line("sha256"));
}

#[test]
#[cfg_attr(
    not(bpf_clang),
    ignore = "needs the clang recorded in bpf/tproxy.bpf.o.info (see build.rs)"
)]
fn the_committed_object_is_fresh() {
    let recorded = info_line("clang");
    let have = Command::new("clang")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        });
    assert_eq!(
        have.as_deref(),
        Some(recorded.as_str()),
        "the object can only be compared with the output of the clang that built it (CI installs it)"
    );
    // A copy of the tree under another directory name: the object must not
    // depend on where it is built.
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("elsewhere");
    copy_tree(&root().join("bpf"), &tree.join("bpf"));
    let out_obj = tmp.path().join("rebuilt.o");
    let st = Command::new("bash")
        .arg(tree.join("bpf/build.sh"))
        .arg(&out_obj)
        .status()
        .unwrap();
    assert!(st.success(), "bpf/build.sh failed");
    let rebuilt = std::fs::read(&out_obj).unwrap();
    let committed = std::fs::read(root().join("bpf/tproxy.bpf.o")).unwrap();
    assert!(
        rebuilt == committed,
        "bpf/tproxy.bpf.o is stale (or not reproducible): run bpf/build.sh and commit bpf/tproxy.bpf.o and bpf/tproxy.bpf.o.info"
    );
}
