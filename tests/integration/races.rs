//! Concurrency: several installs, or installs racing an uninstall, run at
//! the same time in one namespace with one receipt path, the way two
//! operators (or a retrying init system) would. Whatever the interleaving,
//! the outcome must be explained by SOME serial order of the runs that
//! succeeded: the host ends with exactly one complete rule set or none, and
//! what each successful run said (set up, already installed, cleaned up,
//! nothing to clean) is what it would have said in that order. So a run that
//! reports success while another run's rollback wipes its rules, or two
//! identical installs that both claim to have set up the rules, fail here.
//! Failed runs (exit 1, e.g. the lock was not obtained in time) must leave
//! no trace. `TPROXYCTL_RACE_ROUNDS` raises the number of rounds.

use std::path::Path;
use std::process::Output;

use crate::common::*;
use crate::cycle::{Foreign, Host, Invocation, Plan, Snapshot, check_installed, failed, oracle};
use crate::require_kernel;

const ROUNDS: usize = 3;

fn rounds() -> usize {
    std::env::var("TPROXYCTL_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}

/// Which rule set the host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Clean,
    Installed(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Install(usize),
    Uninstall,
}

/// What a successful run said it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    SetUp,
    AlreadyInstalled,
    CleanedUp,
    NothingToClean,
}

fn said(op: Op, out: &Output) -> Option<Said> {
    let err = stderr(out);
    match op {
        Op::Install(_) if err.contains("already installed") => Some(Said::AlreadyInstalled),
        Op::Install(_) if err.contains("setup completed successfully") => Some(Said::SetUp),
        Op::Uninstall if err.contains("No cleanup necessary") => Some(Said::NothingToClean),
        Op::Uninstall if err.contains("cleanup completed successfully") => Some(Said::CleanedUp),
        _ => None,
    }
}

/// What `op` says and leaves when it runs alone on `state`.
fn serial(state: State, op: Op) -> (Said, State) {
    match (op, state) {
        (Op::Install(c), State::Installed(i)) if i == c => (Said::AlreadyInstalled, state),
        (Op::Install(c), _) => (Said::SetUp, State::Installed(c)),
        (Op::Uninstall, State::Clean) => (Said::NothingToClean, State::Clean),
        (Op::Uninstall, State::Installed(_)) => (Said::CleanedUp, State::Clean),
    }
}

/// True when some order of `runs` started from `start` says what they said
/// and ends in `end`.
fn explained(start: State, end: State, runs: &[(Op, Said)]) -> bool {
    if runs.is_empty() {
        return start == end;
    }
    (0..runs.len()).any(|i| {
        let (said, next) = serial(start, runs[i].0);
        if said != runs[i].1 {
            return false;
        }
        let mut rest = runs.to_vec();
        rest.remove(i);
        explained(next, end, &rest)
    })
}

/// A host with foreign rules and the configurations that race on it.
struct Arena {
    host: Host,
    before: Snapshot,
    /// Extra install arguments of each configuration, and its oracle.
    configs: Vec<(Vec<String>, [Option<String>; 2])>,
}

impl Arena {
    fn new(tag: &str, backend: Backend, configs: &[&[&str]]) -> Arena {
        let inv = Invocation {
            ipv6_host: true,
            args: vec!["--kuma-dp-user".into(), EXEMPT_USER.into()],
            ..Invocation::default()
        };
        let host = Host::new(tag, &inv, backend, Foreign::All);
        let before = host.snapshot();
        let configs = configs
            .iter()
            .map(|extra| {
                let mut args = host.install_args(extra);
                args.push("--dry-run".into());
                let out = host.run(&args);
                assert!(out.status.success(), "{}", failed("dry run", &out));
                let plan = Plan::parse(&stdout(&out));
                let want = oracle(&inv, backend, Foreign::All, &plan).expect("oracle");
                (extra.iter().map(|s| s.to_string()).collect(), want)
            })
            .collect();
        Arena {
            host,
            before,
            configs,
        }
    }

    fn args(&self, op: Op) -> Vec<String> {
        match op {
            Op::Install(i) => {
                let extra: Vec<&str> = self.configs[i].0.iter().map(String::as_str).collect();
                self.host.install_args(&extra)
            }
            Op::Uninstall => self.host.uninstall_args(),
        }
    }

    /// Which state the host is in, or why it is in none.
    fn state(&self) -> Result<State, String> {
        let now = self.host.snapshot();
        if now == self.before {
            return Ok(State::Clean);
        }
        let mut why = Vec::new();
        for (i, (_, want)) in self.configs.iter().enumerate() {
            let problems = check_installed(&self.host, &self.before, &now, want);
            if problems.is_empty() {
                return Ok(State::Installed(i));
            }
            why.push(format!("not configuration {i}: {}", problems.join("; ")));
        }
        why.extend(now.diff(&self.before, "not clean").err());
        Err(format!(
            "the host holds neither one complete rule set nor none:\n{}",
            why.join("\n")
        ))
    }

    /// The receipt agrees with the state: present and matching the live
    /// rules (`status` exit 0) when installed, absent when clean.
    fn receipt_agrees(&self, state: State) -> Result<(), String> {
        let exists = Path::new(&self.host.receipt()).exists();
        match state {
            State::Clean if exists => Err("the host is clean but a receipt is left".into()),
            State::Clean => Ok(()),
            State::Installed(_) if !exists => Err("rules are installed but no receipt".into()),
            State::Installed(_) => {
                let args: Vec<String> = ["status", "--receipt", &self.host.receipt()]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let out = self.host.run(&args);
                if out.status.success() {
                    Ok(())
                } else {
                    Err(failed("status disagrees with the receipt", &out))
                }
            }
        }
    }

    /// Starts every op at once, waits for all, and checks the outcome.
    fn race(&self, ops: &[Op]) -> Result<(), String> {
        let start = self.state()?;
        let children: Vec<_> = ops
            .iter()
            .map(|&op| {
                let child = self
                    .host
                    .command(&self.args(op))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("tproxyctl starts");
                (op, child)
            })
            .collect();
        let outs: Vec<(Op, Output)> = children
            .into_iter()
            .map(|(op, c)| (op, c.wait_with_output().expect("tproxyctl ends")))
            .collect();
        let report = |why: String| {
            let runs: Vec<String> = outs
                .iter()
                .map(|(op, o)| failed(&self.host.describe(&self.args(*op)), o))
                .collect();
            format!(
                "{} backend, from {start:?}, ran at once:\n{}\n=> {why}",
                self.host.backend.name(),
                runs.join("\n")
            )
        };
        let mut succeeded = Vec::new();
        for (op, out) in &outs {
            match out.status.code() {
                Some(0) => match said(*op, out) {
                    Some(s) => succeeded.push((*op, s)),
                    None => {
                        return Err(report(format!(
                            "{op:?} exited 0 without saying what it did"
                        )));
                    }
                },
                Some(1) => {}
                other => return Err(report(format!("{op:?} exited {other:?}"))),
            }
        }
        let end = self.state().map_err(report)?;
        if !explained(start, end, &succeeded) {
            return Err(report(format!(
                "no serial order of the successful runs {succeeded:?} leads from {start:?} to {end:?} saying that"
            )));
        }
        self.receipt_agrees(end).map_err(report)
    }

    /// Uninstalls and requires the exact state before.
    fn finish(&self) {
        let out = self.host.run(&self.host.uninstall_args());
        assert!(out.status.success(), "{}", failed("final uninstall", &out));
        if let Err(e) = self
            .host
            .snapshot()
            .diff(&self.before, "after the final uninstall")
        {
            panic!("{e}");
        }
    }
}

fn parallel_installs(backend: Backend) {
    let arena = Arena::new("rp", backend, &[&["--redirect-all-dns-traffic"]]);
    let mut failures = Vec::new();
    for round in 0..rounds() {
        if let Err(e) = arena.race(&[Op::Install(0); 4]) {
            failures.push(format!("round {round}: {e}"));
        }
        // the next round starts clean again
        let _ = arena.host.run(&arena.host.uninstall_args());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    arena.finish();
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn parallel_identical_installs_end_with_one_rule_set_nft() {
    require_kernel!();
    parallel_installs(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn parallel_identical_installs_end_with_one_rule_set_legacy() {
    require_kernel!();
    parallel_installs(Backend::Legacy);
}

fn install_vs_uninstall(backend: Backend) {
    let arena = Arena::new(
        "ru",
        backend,
        &[
            &[],
            &[
                "--exclude-inbound-ports",
                "22",
                "--redirect-all-dns-traffic",
            ],
        ],
    );
    let mut failures = Vec::new();
    for round in 0..rounds() {
        // from clean, and from whatever the previous round left
        let ops = if round % 2 == 0 {
            vec![Op::Install(0), Op::Uninstall]
        } else {
            vec![Op::Install(0), Op::Install(1), Op::Uninstall]
        };
        if let Err(e) = arena.race(&ops) {
            failures.push(format!("round {round}: {e}"));
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    arena.finish();
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn installs_racing_uninstall_end_with_one_rule_set_or_none_nft() {
    require_kernel!();
    install_vs_uninstall(Backend::Nft);
}

#[test]
#[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
fn installs_racing_uninstall_end_with_one_rule_set_or_none_legacy() {
    require_kernel!();
    install_vs_uninstall(Backend::Legacy);
}

#[test]
fn serial_orders_explain_only_what_can_happen() {
    use Op::*;
    use Said::*;
    use State::*;
    // two identical installs: one sets up, the other finds it done
    assert!(explained(
        Clean,
        Installed(0),
        &[(Install(0), SetUp), (Install(0), AlreadyInstalled)]
    ));
    // both claiming to set up the same rules cannot be serial
    assert!(!explained(
        Clean,
        Installed(0),
        &[(Install(0), SetUp), (Install(0), SetUp)]
    ));
    // a successful install whose rules are gone without an uninstall
    assert!(!explained(Clean, Clean, &[(Install(0), SetUp)]));
    // install then uninstall, or uninstall then install
    assert!(explained(
        Clean,
        Clean,
        &[(Install(0), SetUp), (Uninstall, CleanedUp)]
    ));
    assert!(explained(
        Clean,
        Installed(0),
        &[(Uninstall, NothingToClean), (Install(0), SetUp)]
    ));
    assert!(!explained(
        Clean,
        Installed(0),
        &[(Uninstall, CleanedUp), (Install(0), SetUp)]
    ));
}
