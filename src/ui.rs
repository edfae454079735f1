//! Messages for people: kumactl-style `# …` lines on stderr (never stdout),
//! warnings, and a spinner for the phases only when stderr is a terminal.

use std::io::IsTerminal;

/// Prints a `# message` line on stderr.
pub fn info(msg: impl AsRef<str>) {
    eprintln!("# {}", msg.as_ref());
}

/// Prints a `# [WARNING] message` line on stderr.
pub fn warn(msg: impl AsRef<str>) {
    let m = msg.as_ref();
    // Per-family warnings already carry their `[iptables]` prefix.
    if let Some(rest) = m.strip_prefix('[')
        && let Some((tool, text)) = rest.split_once("] ")
    {
        eprintln!("# [{tool}] [WARNING] {text}");
        return;
    }
    eprintln!("# [WARNING] {m}");
}

/// True when progress may be drawn.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
