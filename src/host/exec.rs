//! Running external programs (the iptables family, nft): argv, optional
//! stdin, a time limit, and errors that report the command line, the exit
//! status and the program's stderr. Every process started is counted so that
//! benchmarks and `--verbose` can report how many an operation needed.
//!
//! Time limits. Each process has its own limit, and a command that changes
//! the host (install, uninstall) sets a [`Budget`] first: a limit per process
//! and a deadline for the whole command, both derived from `--wait` and the
//! retry settings. A process still running at its limit is killed and the
//! error says "timed out" with its command line.
//!
//! A killed tproxyctl. Children are started with `PR_SET_PDEATHSIG(SIGKILL)`:
//! a save, a `--test` or an `nft` listing dies with us. A process that
//! *commits* a change ([`Cmd::commits`]: the `iptables-restore` that applies,
//! rolls back or removes rules) is not killed, because killing it can leave
//! half a commit — legacy iptables replaces a table and then, in a second
//! system call, puts its rule and policy counters back; killed between the
//! two, every counter of the table is zero. Instead it inherits the run's
//! locks ([`hold_locks_in_committing_children`]), so it finishes its commit
//! and the next run waits for it: no run ever starts while a restore of a
//! dead run is still applying rules nobody records. Its time limit still
//! holds without us: an `alarm(2)` set before exec (it survives exec; the
//! default action of SIGALRM ends the process) ends a hung orphan, and with
//! it the lock, when its limit is up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// How many processes this process has started so far.
pub fn processes_started() -> usize {
    STARTED.load(Ordering::Relaxed)
}

/// Default limit for one iptables process: a hung binary must not block an
/// install forever (kumactl bounds the whole setup by 5 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// What a process may take beyond the xtables lock wait (`--wait`): reading
/// or writing tens of thousands of rules takes about a second on an idle
/// machine, so this leaves room for a loaded one while bounding a hung binary.
pub const PROCESS_ALLOWANCE: Duration = Duration::from_secs(10);

/// The time limits of the command being run.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Limit of any one process.
    pub per_process: Duration,
    /// When the whole command must be over; no process starts or runs past it.
    pub deadline: Instant,
}

impl Budget {
    /// The budget of an install or uninstall: each process gets `--wait`
    /// plus [`PROCESS_ALLOWANCE`]; the command gets the lock wait, every
    /// attempt of its retried steps (checking and applying) with the pauses
    /// between them, and a few more processes (saving, reading back).
    pub fn for_run(wait_secs: u32, retries: u32, sleep: Duration) -> Budget {
        let per_process = Duration::from_secs(u64::from(wait_secs)) + PROCESS_ALLOWANCE;
        let attempts = retries.saturating_add(1);
        let retried = (per_process + sleep).saturating_mul(attempts.saturating_mul(2));
        let total = Duration::from_secs(u64::from(wait_secs))
            .saturating_add(retried)
            .saturating_add(per_process.saturating_mul(4));
        Budget {
            per_process,
            deadline: Instant::now() + total,
        }
    }

    /// Time left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

static BUDGET: Mutex<Option<Budget>> = Mutex::new(None);

/// Sets the budget every later process of this command is held to.
pub fn set_budget(b: Budget) {
    *BUDGET.lock().unwrap_or_else(|e| e.into_inner()) = Some(b);
}

/// The budget set by [`set_budget`], if any.
pub fn budget() -> Option<Budget> {
    *BUDGET.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an error is a process that was killed at its time limit (such a
/// step is not retried: a hung program does not get better).
pub fn is_timeout(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// The run's lock files (see [`hold_locks_in_committing_children`]).
static LOCK_FDS: Mutex<Vec<std::os::fd::RawFd>> = Mutex::new(Vec::new());

/// Makes the lock files `fds` (open, locked with `flock(2)`) be inherited by
/// every process that commits a change ([`Cmd::commits`]) until
/// [`release_locks_in_committing_children`]: a flock is held while any
/// descriptor of it is open, so if we are killed while such a process runs,
/// the lock stays held until it has finished.
pub fn hold_locks_in_committing_children(fds: &[std::os::fd::RawFd]) {
    LOCK_FDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend_from_slice(fds);
}

/// Stops handing `fds` to committing children (their locks are released).
pub fn release_locks_in_committing_children(fds: &[std::os::fd::RawFd]) {
    LOCK_FDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|fd| !fds.contains(fd));
}

/// Arms the child to be killed when we die or, when it `commits`, to hold
/// the run's locks instead (see the module comment); with `new_netns`, puts
/// it into a new network namespace of its own.
fn die_with_us(cmd: &mut Command, new_netns: bool, commits: bool, limit: Duration) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    let inherit: Vec<std::os::fd::RawFd> = if commits {
        LOCK_FDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
    } else {
        Vec::new()
    };
    let alarm_secs = u32::try_from(limit.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
    // SAFETY: prctl(2), fcntl(2), alarm(2), getppid(2) and unshare(2) are
    // async-signal-safe and touch no memory of the parent (`inherit` is
    // only read); the closure runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if commits {
                // The child's own copies of the lock descriptors stay open
                // across exec (the parent's keep FD_CLOEXEC).
                for &fd in &inherit {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                libc::alarm(alarm_secs);
            } else {
                // Killed with us: the signal is sent when the thread that
                // started the child ends, and that thread waits for it.
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)?;
            }
            if nix::unistd::getppid().as_raw() as u32 != parent {
                // We were killed before the signal was armed.
                return Err(std::io::Error::other("parent exited"));
            }
            if new_netns {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// What a finished process produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// A command that failed: argv, exit status and stderr, all in the message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{command} failed ({status}){detail}")]
pub struct CommandError {
    pub command: String,
    pub status: String,
    pub stderr: String,
    detail: String,
}

impl CommandError {
    fn new(argv: &str, status: String, stderr: &str) -> Self {
        let trimmed = stderr.trim();
        let detail = if trimmed.is_empty() {
            String::new()
        } else {
            format!(": {}", trimmed.lines().collect::<Vec<_>>().join(" | "))
        };
        CommandError {
            command: argv.to_string(),
            status,
            stderr: stderr.to_string(),
            detail,
        }
    }
}

/// One program invocation.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    env: Vec<(String, String)>,
    new_netns: bool,
    commits: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<Path>) -> Self {
        Cmd {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            new_netns: false,
            commits: false,
        }
    }

    /// Marks a process that commits a change to the host: it is not killed
    /// when we are, and holds the run's locks until it ends (module comment).
    pub fn commits(mut self) -> Self {
        self.commits = true;
        self
    }

    /// Runs the program in a new, empty network namespace of its own.
    pub fn in_new_netns(mut self) -> Self {
        self.new_netns = true;
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// The command line as a person would type it.
    pub fn display(&self) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.args.iter().map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.clone()
            }
        }));
        parts.join(" ")
    }

    /// The limit this run gets: its own, the budget's per-process limit and
    /// what is left of the budget's deadline, whichever is smallest.
    fn effective_timeout(&self) -> Duration {
        match budget() {
            Some(b) => self.timeout.min(b.per_process).min(b.remaining()),
            None => self.timeout,
        }
    }

    /// Runs to completion and returns whatever it produced, success or not.
    pub fn output(&self) -> std::io::Result<Output> {
        let timeout = self.effective_timeout();
        if timeout.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "timed out: the command's time is used up (see --wait), {} was not started",
                    self.display()
                ),
            ));
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // iptables messages are parsed; keep them in English.
            .env("LC_ALL", "C");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        die_with_us(&mut cmd, self.new_netns, self.commits, timeout);
        if std::env::var_os("TPROXYCTL_TRACE_EXEC").is_some() {
            eprintln!("# [exec] {}", self.display());
        }
        let mut child = cmd.spawn()?;
        STARTED.fetch_add(1, Ordering::Relaxed);
        // Feed stdin and drain both pipes on threads so a chatty program
        // cannot deadlock against a full pipe.
        let stdin_thread = child.stdin.take().map(|mut w| {
            let data = self.stdin.clone().unwrap_or_default();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            })
        });
        let mut out_pipe = child.stdout.take().expect("stdout is piped");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let out_thread = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out_pipe.read_to_end(&mut s);
            s
        });
        let err_thread = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err_pipe.read_to_end(&mut s);
            s
        });
        let status = match child.wait_timeout(timeout)? {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "timed out: {} did not finish within {} and was killed",
                        self.display(),
                        humantime::format_duration(Duration::from_millis(
                            timeout.as_millis() as u64
                        ))
                    ),
                ));
            }
        };
        if let Some(t) = stdin_thread {
            let _ = t.join();
        }
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        Ok(Output {
            status: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs and requires exit status 0.
    pub fn run(&self) -> Result<Output, anyhow::Error> {
        let out = self.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                // The message names the command already.
                anyhow::Error::new(e)
            } else {
                anyhow::anyhow!("cannot run {}: {e}", self.display())
            }
        })?;
        if out.success() {
            Ok(out)
        } else {
            let status = match out.status {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_string(),
            };
            Err(CommandError::new(&self.display(), status, &out.stderr).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_counts() {
        let before = processes_started();
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo err >&2"])
            .stdin("hello")
            .run()
            .unwrap();
        assert_eq!(out.stdout, "hello");
        assert_eq!(out.stderr.trim(), "err");
        assert!(processes_started() > before);
    }

    #[test]
    fn failures_report_argv_status_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo 'line 3 failed' >&2; exit 4"])
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("exit status 4"), "{msg}");
        assert!(msg.contains("line 3 failed"), "{msg}");
    }

    #[test]
    #[cfg_attr(not(kernel_tests), ignore = "kernel test: needs root (see build.rs)")]
    fn a_new_network_namespace_has_only_loopback() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "creating a network namespace needs root (this test is compiled in where build.rs found root)"
        );
        let out = Cmd::new("cat")
            .arg("/proc/net/dev")
            .in_new_netns()
            .run()
            .unwrap();
        let ifaces: Vec<&str> = out.stdout.lines().skip(2).collect();
        assert_eq!(ifaces.len(), 1, "{ifaces:?}");
        assert!(ifaces[0].trim_start().starts_with("lo:"));
    }

    #[test]
    fn hung_programs_are_killed() {
        let err = Cmd::new("sleep")
            .arg("5")
            .timeout(Duration::from_millis(100))
            .run()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("timed out") && msg.contains("sleep 5"),
            "{msg}"
        );
        assert!(is_timeout(&err), "{msg}");
    }

    #[test]
    fn a_run_budget_bounds_every_process() {
        let b = Budget::for_run(1, 4, Duration::from_secs(2));
        assert_eq!(b.per_process, Duration::from_secs(11));
        // lock wait + 2 retried steps × 5 attempts × (11 s + 2 s) + 4 × 11 s
        assert!(b.remaining() <= Duration::from_secs(1 + 130 + 44));
        assert!(b.remaining() > Duration::from_secs(170));
    }
}
