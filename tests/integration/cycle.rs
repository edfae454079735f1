//! The install cycle the combination tests share: a namespace that already
//! holds foreign rules (every table we touch, both families, both backends,
//! non-zero rule and policy counters, an nft-native rule), the oracle of what
//! an install must leave there (the dry-run plan restored with `--noflush` on
//! top of the same foreign rules in an empty namespace, the way kumactl
//! applies it, so the kernel's canonical form of our plan), and the checks of
//! install → read back → re-install → uninstall. Failures are returned as
//! text that starts with the command line, so a property test can shrink on
//! them and print the minimal configuration.

use std::fmt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::*;

/// One configuration as a user would type it.
#[derive(Clone, Default)]
pub struct Invocation {
    /// Give the host an IPv6 address (on a veth that stays down, so no
    /// packet ever moves a counter), which makes a dual-stack plan.
    pub ipv6_host: bool,
    /// Shell commands run in the namespace first; `{iptables}` is the
    /// backend's iptables (`iptables-nft` in a golden case means the same).
    pub setup: Vec<String>,
    /// Environment; `{dir}` is the directory of `files`.
    pub env: Vec<(String, String)>,
    /// Arguments after `install transparent-proxy`; `{dir}` as above.
    pub args: Vec<String>,
    /// Files written to `{dir}` before anything runs: (name, content).
    pub files: Vec<(String, String)>,
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,+@%-".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

impl fmt::Display for Invocation {
    /// The command line to paste into a shell in a fresh namespace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ipv6_host {
            writeln!(
                f,
                "# host with IPv6: ip link add v0 type veth peer name v1; ip -6 addr add fd00:99::1/64 dev v0 nodad"
            )?;
        }
        for s in &self.setup {
            writeln!(f, "{s}")?;
        }
        for (name, content) in &self.files {
            writeln!(f, "cat > {{dir}}/{name} <<'EOF'\n{content}\nEOF")?;
        }
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_word(v)))
            .collect();
        words.push("tproxyctl install transparent-proxy".to_string());
        words.extend(self.args.iter().map(|a| shell_word(a)));
        write!(f, "{}", words.join(" "))
    }
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n{self}\n")
    }
}

/// Which foreign rules the host starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Rules with counters in raw, nat and mangle of both families and both
    /// backends (plus an nft-native set lookup on nft).
    All,
    /// A host without any rules.
    None,
}

// Counters are set by `*-restore -c`; nothing in the namespace sends a
// packet, so they only change if a tool rewrites or resets them.
const FOREIGN_V4: &str = "*raw
:PREROUTING ACCEPT [11:1100]
:OUTPUT ACCEPT [12:1200]
:FOREIGN_RAW - [0:0]
[3:180] -A PREROUTING -p udp --dport 9996 -j ACCEPT
[4:240] -A OUTPUT -p tcp -d 192.0.2.1 --dport 80 -j FOREIGN_RAW
[5:300] -A OUTPUT -p udp --dport 53 -d 192.0.2.53 -j NOTRACK
[1:60] -A FOREIGN_RAW -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [21:2100]
:INPUT ACCEPT [22:2200]
:OUTPUT ACCEPT [23:2300]
:POSTROUTING ACCEPT [24:2400]
:CUSTOM_CHAIN - [0:0]
[5:300] -A PREROUTING -p tcp --dport 9998 -j CUSTOM_CHAIN
[6:360] -A OUTPUT -p tcp -d 192.0.2.1 --dport 80 -j CUSTOM_CHAIN
[7:420] -A OUTPUT -p udp --dport 9997 -j RETURN
[8:480] -A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE
[9:540] -A CUSTOM_CHAIN -p tcp --dport 9999 -j RETURN
[10:600] -A CUSTOM_CHAIN -p tcp --dport 7777 -j REDIRECT --to-ports 7778
COMMIT
*mangle
:PREROUTING ACCEPT [31:3100]
:INPUT ACCEPT [32:3200]
:FORWARD ACCEPT [33:3300]
:OUTPUT ACCEPT [34:3400]
:POSTROUTING ACCEPT [35:3500]
[2:120] -A PREROUTING -p udp --dport 9995 -j ACCEPT
[3:180] -A OUTPUT -p udp --dport 9994 -j MARK --set-mark 7
COMMIT
";

const FOREIGN_V6: &str = "*raw
:PREROUTING ACCEPT [41:4100]
:OUTPUT ACCEPT [42:4200]
[3:180] -A PREROUTING -p udp --dport 9996 -j ACCEPT
[4:240] -A OUTPUT -p tcp -d 2001:db8::1 --dport 80 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [51:5100]
:INPUT ACCEPT [52:5200]
:OUTPUT ACCEPT [53:5300]
:POSTROUTING ACCEPT [54:5400]
:CUSTOM_CHAIN - [0:0]
[5:300] -A PREROUTING -p tcp --dport 9998 -j CUSTOM_CHAIN
[6:360] -A OUTPUT -p tcp -d 2001:db8::1 --dport 80 -j CUSTOM_CHAIN
[7:420] -A OUTPUT -p udp --dport 9997 -j RETURN
[9:540] -A CUSTOM_CHAIN -p tcp --dport 9999 -j RETURN
COMMIT
*mangle
:PREROUTING ACCEPT [61:6100]
:INPUT ACCEPT [62:6200]
:FORWARD ACCEPT [63:6300]
:OUTPUT ACCEPT [64:6400]
:POSTROUTING ACCEPT [65:6500]
[2:120] -A PREROUTING -p udp --dport 9995 -j ACCEPT
COMMIT
";

/// nft-native rules that `iptables-nft-save` can only print lossily (as an
/// unconditional `-j RETURN`): a tool that re-writes what it saved breaks them.
const FOREIGN_NFT_NATIVE: [&str; 2] = [
    "add rule ip nat OUTPUT ip daddr { 192.0.2.7, 192.0.2.8 } counter packets 2 bytes 120 return",
    "add rule ip6 nat OUTPUT ip6 daddr { 2001:db8::7, 2001:db8::8 } counter packets 2 bytes 120 return",
];

/// Feeds `text` to a restore tool of `backend` in `ns`.
pub fn restore(
    ns: &Netns,
    backend: Backend,
    v6: bool,
    flags: &[&str],
    text: &str,
) -> Result<(), String> {
    let tool = backend.restore(v6);
    let out = with_stdin(ns.cmd(&tool, flags), text);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {flags:?} failed: {}\ninput:\n{text}",
            stderr(&out)
        ))
    }
}

/// Runs a command with `input` on its stdin.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("command starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("command ends")
}

/// Loads the foreign rules of `backend` into `ns`.
pub fn load_foreign(ns: &Netns, backend: Backend) {
    for (v6, text) in [(false, FOREIGN_V4), (true, FOREIGN_V6)] {
        restore(ns, backend, v6, &["--counters", "--noflush"], text).expect("foreign rules load");
    }
    if backend == Backend::Nft {
        for rule in FOREIGN_NFT_NATIVE {
            let args: Vec<&str> = rule.split(' ').collect();
            ns.run_ok("nft", &args);
        }
    }
}

/// Everything a cycle compares, section by section: both backends and
/// families with counters, `nft -a list ruleset` (handles show a rule that was
/// deleted and re-added), and the IPv6 addresses.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub sections: Vec<(String, String)>,
}

impl Snapshot {
    pub fn take(ns: &Netns) -> Snapshot {
        let mut sections = Vec::new();
        for b in Backend::ALL {
            for v6 in [false, true] {
                sections.push((format!("{} -c", b.save(v6)), ns.save(b, v6)));
            }
        }
        sections.push((
            "nft -a list ruleset".to_string(),
            ns.run_ok("nft", &["-a", "list", "ruleset"]),
        ));
        sections.push((
            "ip -6 -o addr".to_string(),
            ns.run_ok("ip", &["-6", "-o", "addr"]),
        ));
        Snapshot { sections }
    }

    pub fn get(&self, label: &str) -> &str {
        &self
            .sections
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no section {label}"))
            .1
    }

    /// The same snapshot with legacy tables that hold nothing but built-in
    /// chains with ACCEPT policies and zero counters left out: the kernel
    /// keeps a legacy table once anything used it, and user space cannot
    /// remove it.
    pub fn without_pristine_legacy_tables(&self) -> Snapshot {
        let sections = self
            .sections
            .iter()
            .map(|(l, t)| {
                if l.contains("-legacy-") {
                    (l.clone(), drop_pristine_tables(t))
                } else {
                    (l.clone(), t.clone())
                }
            })
            .collect();
        Snapshot { sections }
    }

    /// `Ok` when equal to `want`; otherwise every differing section with
    /// the lines `self` lacks (-) and the lines it has in addition (+).
    pub fn diff(&self, want: &Snapshot, what: &str) -> Result<(), String> {
        let mut msg = String::new();
        for ((label, a), (_, b)) in self.sections.iter().zip(&want.sections) {
            if a != b {
                msg.push_str(&format!("## {label}\n{}", line_diff(b, a)));
            }
        }
        if msg.is_empty() {
            Ok(())
        } else {
            Err(format!("{what}:\n{msg}"))
        }
    }
}

/// Lines only in `want` (-) and only in `got` (+), in order, or the whole
/// texts when only the order differs.
pub fn line_diff(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for l in &w {
        if !g.contains(l) {
            out.push_str(&format!("- {l}\n"));
        }
    }
    for l in &g {
        if !w.contains(l) {
            out.push_str(&format!("+ {l}\n"));
        }
    }
    if out.is_empty() {
        out = format!("(same lines, different order or count)\n--- want\n{want}+++ got\n{got}");
    }
    out
}

/// Drops the tables of a save that hold only built-in chains with ACCEPT
/// policies and `[0:0]` counters.
pub fn drop_pristine_tables(save: &str) -> String {
    let mut out = String::new();
    let mut block: Vec<&str> = Vec::new();
    for l in save.lines() {
        block.push(l);
        if l == "COMMIT" {
            let pristine = block.iter().all(|b| {
                b.starts_with('*')
                    || *b == "COMMIT"
                    || (b.starts_with(':') && b.ends_with(" ACCEPT [0:0]"))
            });
            if !pristine {
                for b in &block {
                    out.push_str(b);
                    out.push('\n');
                }
            }
            block.clear();
        }
    }
    for b in block {
        out.push_str(b);
        out.push('\n');
    }
    out
}

/// True when every line of `part` occurs in `whole`, in the same order.
pub fn is_ordered_subset(part: &str, whole: &str) -> Result<(), String> {
    let mut rest = whole.lines();
    for l in part.lines() {
        if !rest.any(|w| w == l) {
            return Err(format!(
                "'{l}' is missing, out of order or has other counters in:\n{whole}"
            ));
        }
    }
    Ok(())
}

/// The dry-run output split into its sections: the IPv4 rules, the IPv6
/// rules (when planned) and anything else (firewalld XML).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub v4: Option<String>,
    pub v6: Option<String>,
}

impl Plan {
    pub fn parse(text: &str) -> Plan {
        let mut plan = Plan::default();
        let mut current: Option<&mut Option<String>> = None;
        for l in text.lines() {
            if l.starts_with("### ") {
                current = match l {
                    "### IPv4 ###" => Some(&mut plan.v4),
                    "### IPv6 ###" => Some(&mut plan.v6),
                    _ => None,
                };
                if let Some(c) = current.as_deref_mut() {
                    *c = Some(String::new());
                }
                continue;
            }
            if let Some(Some(buf)) = current.as_deref_mut() {
                buf.push_str(l);
                buf.push('\n');
            }
        }
        plan
    }

    pub fn family(&self, v6: bool) -> Option<&str> {
        if v6 {
            self.v6.as_deref()
        } else {
            self.v4.as_deref()
        }
    }
}

/// A test host: a namespace with the invocation's files, setup and foreign
/// rules, and a receipt and firewalld path of its own.
pub struct Host {
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub inv: Invocation,
}

impl Host {
    pub fn new(tag: &str, inv: &Invocation, backend: Backend, foreign: Foreign) -> Host {
        let ns = Netns::new(tag);
        let dir = tempfile::tempdir().expect("temp dir");
        let host = Host {
            ns,
            dir,
            backend,
            inv: inv.clone(),
        };
        prepare(&host.ns, inv, backend, foreign, host.dir.path());
        host
    }

    pub fn receipt(&self) -> String {
        self.dir.path().join("receipt.json").display().to_string()
    }

    pub fn direct_file(&self) -> String {
        self.dir.path().join("direct.xml").display().to_string()
    }

    fn subst(&self, s: &str) -> String {
        s.replace("{dir}", &self.dir.path().display().to_string())
    }

    /// The install command line of this host (without the program).
    pub fn install_args(&self, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["install".into(), "transparent-proxy".into()];
        v.extend(self.inv.args.iter().map(|a| self.subst(a)));
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend([
            "--iptables-executables".into(),
            self.backend.executables(),
            "--receipt".into(),
            self.receipt(),
        ]);
        v
    }

    pub fn uninstall_args(&self) -> Vec<String> {
        vec![
            "uninstall".into(),
            "transparent-proxy".into(),
            "--receipt".into(),
            self.receipt(),
        ]
    }

    /// A tproxyctl command in the namespace with the invocation's
    /// environment; receipt and direct.xml defaults point into the host's
    /// directory so nothing outside it is ever written.
    pub fn command(&self, args: &[String]) -> Command {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c = self.ns.cmd(bin(), &refs);
        c.env("TPROXYCTL_RECEIPT", self.receipt())
            .env("TPROXYCTL_FIREWALLD_DIRECT_FILE", self.direct_file())
            .stdin(Stdio::null());
        for (k, v) in &self.inv.env {
            c.env(k, self.subst(v));
        }
        c
    }

    pub fn run(&self, args: &[String]) -> Output {
        self.command(args).output().expect("tproxyctl runs")
    }

    /// The shell line for a failure message.
    pub fn describe(&self, args: &[String]) -> String {
        let mut words: Vec<String> = self
            .inv
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_word(&self.subst(v))))
            .collect();
        words.push("tproxyctl".into());
        words.extend(args.iter().map(|a| shell_word(a)));
        words.join(" ")
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.ns)
    }
}

/// The host facts of an invocation: IPv6, files, setup, foreign rules.
fn prepare(ns: &Netns, inv: &Invocation, backend: Backend, foreign: Foreign, dir: &Path) {
    if inv.ipv6_host {
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ns.ip(&["-6", "addr", "add", "fd00:99::1/64", "dev", "v0", "nodad"]);
    }
    for (name, content) in &inv.files {
        std::fs::write(dir.join(name), content).expect("write invocation file");
    }
    for s in &inv.setup {
        let s = s
            .replace("{iptables}", &backend.tool(false))
            .replace("iptables-nft", &backend.tool(false));
        ns.sh(&s);
    }
    if foreign == Foreign::All {
        for b in Backend::ALL {
            load_foreign(ns, b);
        }
    }
}

/// What the kernel makes of `plan` applied on top of the same host facts,
/// per family, as `*-save` prints it without counters: the canonical form
/// the installed rules must equal. `None` for a family the plan leaves out.
pub fn oracle(
    inv: &Invocation,
    backend: Backend,
    foreign: Foreign,
    plan: &Plan,
) -> Result<[Option<String>; 2], String> {
    let ns = Netns::new("orc");
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(&ns, inv, backend, foreign, dir.path());
    let mut out = [None, None];
    for v6 in [false, true] {
        if let Some(text) = plan.family(v6) {
            restore(&ns, backend, v6, &["--noflush"], text)
                .map_err(|e| format!("the plan does not load into an empty namespace: {e}"))?;
            out[v6 as usize] = Some(rules_only(&ns.save(backend, v6)));
        }
    }
    Ok(out)
}

/// "`command` failed" with its exit status and output.
pub fn failed(cmd: &str, out: &Output) -> String {
    format!(
        "{cmd}\n  exited {:?}\n  stderr:\n{}\n  stdout:\n{}",
        out.status,
        stderr(out),
        stdout(out)
    )
}

/// Options of a cycle.
#[derive(Debug, Clone)]
pub struct CycleOpts {
    pub foreign: Foreign,
    /// With `--store-firewalld`: the direct.xml content before the install
    /// (`None`: no file). After uninstall it must be back byte for byte.
    pub direct: Option<Option<String>>,
}

impl Default for CycleOpts {
    fn default() -> Self {
        CycleOpts {
            foreign: Foreign::All,
            direct: None,
        }
    }
}

/// Install, read back, re-install, uninstall: see the module comment.
/// Each step is checked; a failed check does not stop the cycle when the
/// next step can still run, so one run shows every problem of a
/// configuration. `Err` carries the command line and what differed.
pub fn cycle(
    tag: &str,
    inv: &Invocation,
    backend: Backend,
    opts: &CycleOpts,
) -> Result<(), String> {
    let host = Host::new(tag, inv, backend, opts.foreign);
    let mut extra: Vec<String> = Vec::new();
    if let Some(initial) = &opts.direct {
        if let Some(text) = initial {
            std::fs::write(host.direct_file(), text).expect("write direct.xml");
        }
        extra.extend([
            "--store-firewalld".into(),
            "--firewalld-direct-file".into(),
            host.direct_file(),
        ]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut c = Steps {
        install: host.install_args(&extra),
        before: host.snapshot(),
        direct_before: None,
        problems: Vec::new(),
        host: &host,
        opts,
    };
    c.direct_before = c.direct();
    if let Some(want) = c.planned(inv)
        && let Some(mid) = c.install_and_read_back(&want)
    {
        c.reinstall_changes_nothing(&mid);
        c.uninstall_restores_the_host();
    }
    c.report()
}

/// The state of one cycle: what it runs, what the host was, what went wrong.
struct Steps<'a> {
    host: &'a Host,
    opts: &'a CycleOpts,
    install: Vec<String>,
    before: Snapshot,
    direct_before: Option<String>,
    problems: Vec<String>,
}

impl Steps<'_> {
    fn direct(&self) -> Option<String> {
        std::fs::read_to_string(self.host.direct_file()).ok()
    }

    fn report(self) -> Result<(), String> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}\n({} backend, foreign rules: {:?})\n- {}",
            self.host.describe(&self.install),
            self.host.backend.name(),
            self.opts.foreign,
            self.problems.join("\n- ")
        ))
    }

    /// The dry run changes nothing; what the kernel makes of its plan.
    fn planned(&mut self, inv: &Invocation) -> Option<[Option<String>; 2]> {
        let mut dry_args = self.install.clone();
        dry_args.push("--dry-run".into());
        let dry = self.host.run(&dry_args);
        if !dry.status.success() {
            self.problems.push(failed("the dry run failed", &dry));
            return None;
        }
        let changed = self
            .host
            .snapshot()
            .diff(&self.before, "the dry run changed the host");
        self.problems.extend(changed.err());
        let plan = Plan::parse(&stdout(&dry));
        oracle(inv, self.host.backend, self.opts.foreign, &plan)
            .map_err(|e| self.problems.push(e))
            .ok()
    }

    /// Install; the rules read back equal the oracle, a receipt exists,
    /// direct.xml holds our entries. Returns the installed state.
    fn install_and_read_back(&mut self, want: &[Option<String>; 2]) -> Option<Snapshot> {
        let out = self.host.run(&self.install);
        if !out.status.success() {
            self.problems.push(failed("install failed", &out));
            return None;
        }
        let mid = self.host.snapshot();
        self.problems
            .extend(check_installed(self.host, &self.before, &mid, want));
        if !Path::new(&self.host.receipt()).exists() {
            self.problems
                .push("install succeeded but wrote no receipt".into());
        }
        let direct = self.direct();
        if self.opts.direct.is_some() && !direct.as_deref().unwrap_or("").contains("KUMA_MESH_") {
            self.problems.push(format!(
                "--store-firewalld wrote no rules to direct.xml: {direct:?}"
            ));
        }
        Some(mid)
    }

    /// The identical install again: says so, and the saves with counters,
    /// the nft handles and direct.xml stay as they are.
    fn reinstall_changes_nothing(&mut self, mid: &Snapshot) {
        let direct = self.direct();
        let again = self.host.run(&self.install);
        if !again.status.success() {
            self.problems
                .push(failed("the identical re-install failed", &again));
        } else if !stderr(&again).contains("already installed") {
            self.problems.push(failed(
                "the identical re-install did not say 'already installed'",
                &again,
            ));
        }
        let changed = self
            .host
            .snapshot()
            .diff(mid, "the identical re-install changed the host");
        self.problems.extend(changed.err());
        if self.direct() != direct {
            self.problems
                .push("the identical re-install changed direct.xml".into());
        }
    }

    /// Uninstall: exactly the state before (legacy tables the kernel keeps
    /// once used aside, when the host had none), no receipt, direct.xml
    /// back byte for byte.
    fn uninstall_restores_the_host(&mut self) {
        let un = self.host.uninstall_args();
        let out = self.host.run(&un);
        if !out.status.success() {
            self.problems.push(failed(&self.host.describe(&un), &out));
        }
        let after = self.host.snapshot();
        let (a, b) = if self.opts.foreign == Foreign::None && self.host.backend == Backend::Legacy {
            (
                after.without_pristine_legacy_tables(),
                self.before.without_pristine_legacy_tables(),
            )
        } else {
            (after, self.before.clone())
        };
        let differs = a.diff(
            &b,
            "after uninstall the host differs from before the install",
        );
        self.problems.extend(differs.err());
        if Path::new(&self.host.receipt()).exists() {
            self.problems.push("uninstall left the receipt".into());
        }
        if self.direct() != self.direct_before {
            self.problems.push(format!(
                "direct.xml is not back byte for byte:\n--- before\n{:?}\n+++ after\n{:?}",
                self.direct_before,
                self.direct()
            ));
        }
    }
}

/// The installed state equals the oracle for each planned family; every
/// line the host had (foreign rules with their counters, policy counters)
/// is still there in order; nothing else changed. Returns the problems.
pub fn check_installed(
    host: &Host,
    before: &Snapshot,
    mid: &Snapshot,
    want: &[Option<String>; 2],
) -> Vec<String> {
    let mut problems = Vec::new();
    let b = host.backend;
    for v6 in [false, true] {
        let label = format!("{} -c", b.save(v6));
        let live = mid.get(&label);
        match &want[v6 as usize] {
            Some(w) => {
                let got = rules_only(live);
                if &got != w {
                    problems.push(format!(
                        "read back: the {label} rules differ from the kernel's form of the plan:\n{}",
                        line_diff(w, &got)
                    ));
                }
                if let Err(e) = is_ordered_subset(before.get(&label), live) {
                    problems.push(format!(
                        "{label}: a line of the host before the install {e}"
                    ));
                }
            }
            None => {
                if live != before.get(&label) {
                    problems.push(format!(
                        "{label}: the plan has no such family, yet it changed:\n{}",
                        line_diff(before.get(&label), live)
                    ));
                }
            }
        }
    }
    // the other backend, and nft when legacy was used, are untouched
    for (label, text) in &mid.sections {
        let ours = label.starts_with(&b.save(false)) || label.starts_with(&b.save(true));
        let nft_of_ours = b == Backend::Nft && label.starts_with("nft ");
        if ours || nft_of_ours || label.starts_with("ip -6") {
            continue;
        }
        if text != before.get(label) {
            problems.push(format!(
                "{label} belongs to another backend, yet it changed:\n{}",
                line_diff(before.get(label), text)
            ));
        }
    }
    if let Some(native) = before
        .get("nft -a list ruleset")
        .lines()
        .find(|l| l.contains("192.0.2.7, 192.0.2.8"))
        && !mid.get("nft -a list ruleset").contains(native)
    {
        problems.push(format!(
            "the foreign nft-native rule '{}' was rewritten:\n{}",
            native.trim(),
            mid.get("nft -a list ruleset")
        ));
    }
    let has_pt = |s: &Snapshot| s.get("ip -6 -o addr").contains(" ::6/128 ");
    if want[1].is_some() && !has_pt(mid) {
        problems.push(format!(
            "IPv6 rules are installed but ::6 is not on loopback:\n{}",
            mid.get("ip -6 -o addr")
        ));
    }
    problems
}
