//! Messages for people: kumactl-style `# …` lines on stderr (never stdout),
//! warnings, and a spinner naming the current phase — only when stderr is a
//! terminal, so scripts and CI logs see plain lines — and `--quiet`, which
//! silences all of them (errors are printed by `main`).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static SPINNER: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// `--quiet`: no notes, warnings or spinner; errors are printed by `main`
/// whatever this says, and data on stdout never goes through here.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns `--quiet` on or off for the rest of the process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// True under `--quiet`.
pub fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints a line on stderr without tearing an active spinner (nothing under
/// `--quiet`).
fn line(text: String) {
    if is_quiet() {
        return;
    }
    let guard = SPINNER.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(pb) => pb.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    }
}

/// Prints a `# message` line on stderr.
pub fn info(msg: impl AsRef<str>) {
    line(format!("# {}", msg.as_ref()));
}

/// Prints a `# [WARNING] message` line on stderr.
pub fn warn(msg: impl AsRef<str>) {
    let m = msg.as_ref();
    // Per-family warnings already carry their `[iptables]` prefix.
    if let Some(rest) = m.strip_prefix('[')
        && let Some((tool, text)) = rest.split_once("] ")
    {
        line(format!("# [{tool}] [WARNING] {text}"));
        return;
    }
    line(format!("# [WARNING] {m}"));
}

/// True when progress may be drawn: stderr is a terminal and not `--quiet`.
pub fn stderr_is_terminal() -> bool {
    !is_quiet() && std::io::stderr().is_terminal()
}

/// Shows (on a terminal) which phase a long operation is in; cleared when
/// dropped.
pub struct Phases;

impl Phases {
    pub fn start(first: &str) -> Phases {
        if stderr_is_terminal() {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            pb.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(100));
            pb.set_message(first.to_string());
            *SPINNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb);
        }
        Phases
    }

    /// Names the next phase.
    pub fn phase(&self, msg: &str) {
        if let Some(pb) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            pb.set_message(msg.to_string());
        }
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        if let Some(pb) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pb.finish_and_clear();
        }
    }
}
