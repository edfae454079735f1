//! Error classification shared by every command: which failures are the
//! user's input (exit 2) and which happened at run time (exit 1), and how an
//! error chain is printed. Owns no messages of its own.

use std::fmt;

/// Invalid usage or input: the command line, a config file, an environment
/// variable or a referenced file holds a value that cannot be used. Always
/// raised before anything on the host changes; maps to exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit code for an error returned by [`crate::run`]: 2 for usage errors
/// anywhere in the chain, 1 for everything else.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<UsageError>().is_some())
    {
        2
    } else {
        1
    }
}

/// True when the error is a broken pipe on stdout (`tproxyctl … | head`),
/// which is not a failure (as ripgrep treats it).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// Bytes as a person reads them in a message: UTF-8 text as it is, every
/// byte that is not part of valid UTF-8 as `\xNN`. Used wherever a
/// non-UTF-8 argument, variable or file is named, so no such input can
/// panic or be shown as replacement characters.
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// One line per cause, outermost first, joined with ": ".
pub fn render_error(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if parts.last().is_some_and(|last| last.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_map_to_2_even_when_wrapped() {
        let err = Err::<(), _>(UsageError::new("bad port"))
            .context("loading config")
            .unwrap_err();
        assert_eq!(exit_code_for(&err), 2);
        assert_eq!(render_error(&err), "loading config: bad port");
    }

    #[test]
    fn bytes_are_shown_with_invalid_ones_escaped() {
        assert_eq!(show_bytes(b"abc"), "abc");
        assert_eq!(show_bytes(b"a\xffb\xc3"), "a\\xFFb\\xC3");
        assert_eq!(show_bytes("é".as_bytes()), "é");
    }

    #[test]
    fn other_errors_map_to_1() {
        let err = anyhow::anyhow!("iptables-restore failed");
        assert_eq!(exit_code_for(&err), 1);
    }
}
