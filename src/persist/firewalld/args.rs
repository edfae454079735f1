//! How firewalld splits a `<rule>` or `<passthrough>` body into arguments:
//! `firewall.functions.splitArgs`, which is Python's `shlex.split(s)` (POSIX
//! mode, no comment handling). We need the exact same split to decide whether
//! two bodies are the same rule for firewalld (its identity of a rule is
//! `(priority, tuple(args))`) and to prove in tests that our bodies reach
//! iptables as the arguments the restore renderer meant. General-purpose shell
//! splitters differ from Python's in corner cases (`#`, `\$` inside double
//! quotes, `\r`), hence this small, test-checked port.

/// Splits `s` the way firewalld does; `None` where Python raises
/// (`No closing quotation`, `No escaped character`).
pub fn split_args(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            // Outside quotes a backslash takes the next character literally.
            '\\' => {
                word.push(chars.next()?);
                in_word = true;
            }
            // Single quotes: everything literal up to the closing quote.
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => word.push(x),
                    }
                }
            }
            // Double quotes: a backslash escapes only `"` and `\`; before
            // anything else it stays.
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let n = chars.next()?;
                            if n != '"' && n != '\\' {
                                word.push('\\');
                            }
                            word.push(n);
                        }
                        x => word.push(x),
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    Some(out)
}

/// Whether two bodies give firewalld the same arguments. Bodies that do not
/// split (unbalanced quotes) are compared with whitespace runs collapsed.
pub fn same_args(a: &str, b: &str) -> bool {
    match (split_args(a), split_args(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.split_whitespace().collect::<Vec<_>>() == b.split_whitespace().collect::<Vec<_>>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_args(s).unwrap_or_else(|| panic!("{s:?} does not split"))
    }

    #[test]
    fn words_quotes_and_escapes_follow_python_posix_shlex() {
        assert_eq!(
            split("  -p tcp\t-j  RETURN\n"),
            ["-p", "tcp", "-j", "RETURN"]
        );
        assert_eq!(
            split(r#"-m comment --comment "a \"b\" \\c \d""#),
            ["-m", "comment", "--comment", r#"a "b" \c \d"#]
        );
        assert_eq!(split(r#"a'b c'"d e" '\x' \ y"#), ["ab cd e", r"\x", " y"]);
        assert_eq!(split(r#"a "" b"#), ["a", "", "b"]);
        assert_eq!(split("#x y"), ["#x", "y"]);
        assert_eq!(split_args(r#"a "b"#), None);
        assert_eq!(split_args("a 'b"), None);
        assert_eq!(split_args("a \\"), None);
    }

    #[test]
    fn same_args_ignores_quoting_and_spacing_only() {
        assert!(same_args(
            r#"-m comment --comment "x y" -j RETURN"#,
            "-m  comment --comment 'x y' -j RETURN"
        ));
        assert!(!same_args("-j RETURN", "-j ACCEPT"));
        assert!(same_args(r#"a "b"#, r#"a  "b"#));
    }
}
