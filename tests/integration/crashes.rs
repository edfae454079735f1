//! Crash safety: `kill -9` of install at a random moment, on nft and legacy,
//! then the next `install` or `uninstall` (what an operator or a restarted
//! init system runs) must bring the host to a clean known state: our rules
//! complete (exactly the kernel's form of the plan) or absent, foreign rules
//! with their order and counters intact, `::6` not leaked, direct.xml back
//! byte for byte, the receipt present exactly when our rules are. Half the
//! trials go through restore wrappers that sleep before the real
//! `*-restore`, so the kill lands inside the apply. A restore that commits
//! is not killed with tproxyctl (killed half-way, legacy would zero the
//! table's counters): it finishes, holding the run's lock, so the recovery
//! must have waited for it — none may still run when the recovery ends.
//!
//! `TPROXYCTL_CRASH_TRIALS` (per backend) and `TPROXYCTL_CRASH_SEED` make
//! runs longer or repeatable; a failure prints the seed and the kill delay.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::cycle::{Foreign, Host, Invocation, Plan, Snapshot, check_installed, failed, oracle};
use crate::require_kernel;

const TRIALS: u64 = 6;

/// xorshift64*: enough randomness for kill delays, repeatable from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 32) % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Restore wrappers that sleep half a second before the real apply (one
/// process: perl sleeps, then execs the real tool, so what tproxyctl set up
/// for its child — a parent-death signal, inherited locks — applies to
/// whatever runs), and pass `--version` and `--test` straight on.
fn slow_executables(dir: &Path, backend: Backend) -> String {
    let m = backend.name();
    let mut pairs = Vec::new();
    for fam in ["iptables", "ip6tables"] {
        pairs.push(format!("{fam}:/usr/sbin/{fam}-{m}"));
        pairs.push(format!("{fam}-save:/usr/sbin/{fam}-{m}-save"));
        let real = format!("/usr/sbin/{fam}-{m}-restore");
        let wrapper = dir.join(format!("slow-{fam}-restore"));
        std::fs::write(
            &wrapper,
            format!(
                "#!/usr/bin/perl\nselect(undef, undef, undef, {APPLY_SLEEP}) unless grep {{ $_ eq '--version' || $_ eq '--test' }} @ARGV;\nexec {{ '{real}' }} '{real}', @ARGV or die \"exec {real}: $!\";\n"
            ),
        )
        .expect("write wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
        pairs.push(format!("{fam}-restore:{}", wrapper.display()));
    }
    pairs.join(",")
}

/// Seconds the slow wrappers wait before an apply.
const APPLY_SLEEP: &str = "0.5";

/// The configurations the crash trials cycle through.
fn configs() -> Vec<Vec<&'static str>> {
    vec![
        vec![],
        vec!["--disable-comments"],
        vec!["--store-firewalld", "--redirect-all-dns-traffic"],
        vec![
            "--disable-comments",
            "--store-firewalld",
            "--drop-invalid-packets",
        ],
    ]
}

const DIRECT_FOREIGN: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<direct>\n  <rule ipv=\"ipv4\" table=\"filter\" chain=\"INPUT\" priority=\"0\">-p tcp --dport 2222 -j ACCEPT</rule>\n</direct>\n";

/// The processes in the namespace: (pid, command line).
fn processes(host: &Host) -> Vec<(String, String)> {
    run_ok("ip", &["netns", "pids", &host.ns.name])
        .split_whitespace()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            (
                p.to_string(),
                String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .trim()
                    .to_string(),
            )
        })
        .collect()
}

/// Waits (bounded) until no process is left in the namespace; kills what
/// is left after `limit` and says so.
fn wait_for_quiet(host: &Host, limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    loop {
        let left = processes(host);
        if left.is_empty() {
            return None;
        }
        if t0.elapsed() > limit {
            for (p, _) in &left {
                let _ = std::process::Command::new("kill").args(["-9", p]).status();
            }
            return Some(format!(
                "still running {limit:?} after the recovery: {left:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Trial<'a> {
    host: &'a Host,
    before: &'a Snapshot,
    want: &'a [Option<String>; 2],
    install: Vec<String>,
    direct_before: Option<String>,
    /// direct.xml as an undisturbed install leaves it.
    direct_installed: Option<String>,
}

impl Trial<'_> {
    fn direct(&self) -> Option<String> {
        std::fs::read_to_string(self.host.direct_file()).ok()
    }

    /// The host is exactly as before the install.
    fn clean(&self, what: &str) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(self.host.snapshot().diff(self.before, what).err());
        if Path::new(&self.host.receipt()).exists() {
            p.push(format!("{what}: the receipt is left"));
        }
        if self.direct() != self.direct_before {
            p.push(format!(
                "{what}: direct.xml is not back byte for byte: {:?}",
                self.direct()
            ));
        }
        p
    }

    /// Our rules are complete and in the kernel's form of the plan.
    fn installed(&self, what: &str) -> Vec<String> {
        let now = self.host.snapshot();
        let mut p: Vec<String> = check_installed(self.host, self.before, &now, self.want)
            .into_iter()
            .map(|e| format!("{what}: {e}"))
            .collect();
        let status = self
            .host
            .run(&["status".into(), "--receipt".into(), self.host.receipt()]);
        if !status.status.success() {
            p.push(failed(&format!("{what}: status disagrees"), &status));
        }
        if self.direct() != self.direct_installed {
            p.push(format!(
                "{what}: direct.xml differs from an undisturbed install's:\n--- want\n{:?}\n+++ got\n{:?}",
                self.direct_installed,
                self.direct()
            ));
        }
        p
    }

    fn run_ok(&self, args: &[String], what: &str) -> Vec<String> {
        let out = self.host.run(args);
        if out.status.success() {
            Vec::new()
        } else {
            vec![failed(
                &format!("{what}: {}", self.host.describe(args)),
                &out,
            )]
        }
    }

    /// Kill after `delay`, then at once recover with install (or
    /// uninstall), as a restarted unit would.
    fn run(&self, delay: Duration, recover_by_install: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let mut child = self
            .host
            .command(&self.install)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("install starts");
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let recovery = if recover_by_install {
            self.run_ok(&self.install, "install after the crash")
        } else {
            self.run_ok(&self.host.uninstall_args(), "uninstall after the crash")
        };
        problems.extend(recovery);
        let orphans: Vec<_> = processes(self.host)
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("restore"))
            .collect();
        if !orphans.is_empty() {
            problems.push(format!(
                "a restore of the killed install still ran when the recovery ended (the recovery must wait for it: it holds the run's lock): {orphans:?}"
            ));
        }
        problems.extend(wait_for_quiet(self.host, Duration::from_secs(20)));
        if recover_by_install {
            problems.extend(self.installed("after install"));
            problems.extend(self.run_ok(&self.host.uninstall_args(), "uninstall"));
            problems.extend(self.clean("after install and uninstall"));
        } else {
            problems.extend(self.clean("after uninstall"));
        }
        problems
    }
}

fn crash_trials(backend: Backend) {
    let seed = env_u64("TPROXYCTL_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let trials = env_u64("TPROXYCTL_CRASH_TRIALS").unwrap_or(TRIALS);
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    for trial in 0..trials {
        let configs = configs();
        let extra = &configs[trial as usize % configs.len()];
        let slow = rng.below(2) == 0;
        let recover_by_install = rng.below(2) == 0;
        let inv = Invocation {
            ipv6_host: true,
            args: vec!["--kuma-dp-user".into(), EXEMPT_USER.into()],
            ..Invocation::default()
        };
        let host = Host::new("cr", &inv, backend, Foreign::All);
        std::fs::write(host.direct_file(), DIRECT_FOREIGN).expect("direct.xml");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if extra.iter().any(|a| a == "--store-firewalld") {
            extra.extend(["--firewalld-direct-file".into(), host.direct_file()]);
        }
        if slow {
            extra.extend([
                "--iptables-executables".into(),
                slow_executables(host.dir.path(), backend),
            ]);
        }
        // a later --iptables-executables wins over the backend's default one
        let mut install = host.install_args(&[]);
        install.extend(extra.iter().cloned());
        let before = host.snapshot();
        let mut dry = install.clone();
        dry.push("--dry-run".into());
        let out = host.run(&dry);
        assert!(out.status.success(), "{}", failed("dry run", &out));
        let want =
            oracle(&inv, backend, Foreign::All, &Plan::parse(&stdout(&out))).expect("oracle");
        let mut t = Trial {
            host: &host,
            before: &before,
            want: &want,
            install: install.clone(),
            direct_before: Some(DIRECT_FOREIGN.to_string()),
            direct_installed: None,
        };
        // how long an undisturbed install takes here and now (its result is
        // what cycle.rs checks; here it only has to work)
        let t0 = Instant::now();
        let mut problems = t.run_ok(&install, "undisturbed install");
        let span = t0.elapsed();
        t.direct_installed = t.direct();
        problems.extend(t.run_ok(&host.uninstall_args(), "undisturbed uninstall"));
        if !problems.is_empty() {
            failures.push(format!(
                "trial {trial}: {}\n- {}",
                host.describe(&install),
                problems.join("\n- ")
            ));
            continue;
        }
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 + 1));
        let problems = t.run(delay, recover_by_install);
        if !problems.is_empty() {
            failures.push(format!(
                "trial {trial} (seed {seed}): kill -9 after {delay:?} of a {span:?} install, then {}:\n{}\n- {}",
                if recover_by_install { "install" } else { "uninstall" },
                host.describe(&install),
                problems.join("\n- ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {trials} crash trials on {} did not end clean (TPROXYCTL_CRASH_SEED={seed} repeats them):\n{}",
        failures.len(),
        backend.name(),
        failures.join("\n\n")
    );
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn killed_install_is_recovered_by_install_or_uninstall_nft() {
    require_kernel!();
    crash_trials(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn killed_install_is_recovered_by_install_or_uninstall_legacy() {
    require_kernel!();
    crash_trials(Backend::Legacy);
}
