//! Dataplane templates the way `kuma-dp run --dataplane-var` renders them
//! (reference §6.3): Mustache with the variables of `--dataplane-var key=value`
//! (pflag StringToString, so one value may be a comma list `a=1,b=2`), dotted
//! keys nesting (`tags.version` fills `{{ tags.version }}`), `{{ x }}`
//! HTML-escaped exactly as Go's `html/template.HTMLEscape` does it (the escaper
//! hoisie/mustache uses: `&amp; &lt; &gt; &#34; &#39;`), `{{{ x }}}` and
//! `{{& x }}` raw, missing variables empty.
//!
//! Parsing and section/inverted-section evaluation are ramhorns'; this module
//! owns only what kuma-dp decides differently from a generic Mustache engine:
//! the variable tree, dotted-name lookup, Go's escaping and truthiness (every
//! variable is a string, and hoisie treats every string — even `""` or
//! `"false"` — as true).
//!
//! Deliberate differences from kuma-dp, all in the direction of an error
//! instead of a silently different Dataplane: kuma-dp merges dotted keys
//! shallowly (`-v tags.a=1 -v tags.b=2` keeps one of the two at random), we
//! merge them deeply; a key that is both a value and a group (`a=1`, `a.b=2`)
//! or has an empty segment (`a..b`) is rejected; set-delimiter tags and
//! partials (which hoisie loads from files) are rejected. Standalone section
//! lines are not removed (the rendered text is parsed as YAML afterwards, so
//! the blank lines they leave do not matter outside block scalars).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ramhorns::encoding::Encoder;
use ramhorns::traits::ContentSequence;
use ramhorns::{Content, Section, Template};

/// A template variable: a string, or a group made by dotted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    Text(String),
    Group(BTreeMap<String, Var>),
}

/// The variables of one rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    root: BTreeMap<String, Var>,
}

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (dotted keys nest) to `value`; a later value for the same
    /// key wins, as with repeated pflag map entries.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), String> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "key '{key}' has an empty part; use names separated by single dots, e.g. tags.version"
            ));
        }
        let (last, groups) = parts.split_last().expect("split yields at least one part");
        let mut map = &mut self.root;
        for (depth, part) in groups.iter().enumerate() {
            let entry = map
                .entry((*part).to_string())
                .or_insert_with(|| Var::Group(BTreeMap::new()));
            map = match entry {
                Var::Group(m) => m,
                Var::Text(_) => {
                    return Err(format!(
                        "key '{key}' needs '{}' to be a group, but it was set to a value",
                        parts[..=depth].join(".")
                    ));
                }
            };
        }
        match map.get(*last) {
            Some(Var::Group(_)) => Err(format!(
                "key '{key}' is a group of other keys (e.g. {key}.<name>) and cannot also be a value"
            )),
            _ => {
                map.insert((*last).to_string(), Var::Text(value.to_string()));
                Ok(())
            }
        }
    }

    /// Looks a dotted name up from the root (for messages and tests).
    pub fn get(&self, key: &str) -> Option<&Var> {
        lookup(&self.root, key)
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }
}

fn lookup<'a>(map: &'a BTreeMap<String, Var>, name: &str) -> Option<&'a Var> {
    let (head, rest) = match name.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    let v = map.get(head)?;
    match (rest, v) {
        (None, v) => Some(v),
        (Some(r), Var::Group(m)) => lookup(m, r),
        (Some(_), Var::Text(_)) => None,
    }
}

/// Splits one `--dataplane-var` value the way pflag's StringToString does:
/// with a single `=` the whole value is one pair (commas stay in the value,
/// surrounding double quotes are dropped); with more, the value is one CSV
/// record of `key=value` pairs.
pub fn parse_var_flag(raw: &str) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<String> = match raw.matches('=').count() {
        0 => return Err(format!("'{raw}' must be formatted as key=value")),
        1 => vec![raw.trim_matches('"').to_string()],
        _ => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(raw.as_bytes());
            match reader.records().next() {
                Some(Ok(record)) => record.iter().map(str::to_string).collect(),
                Some(Err(e)) => {
                    return Err(format!("'{raw}' is not a comma list of key=value: {e}"));
                }
                None => Vec::new(),
            }
        }
    };
    pairs
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            Some(_) => Err(format!("'{pair}' has an empty key")),
            None => Err(format!("'{pair}' must be formatted as key=value")),
        })
        .collect()
}

/// Go's `html/template.HTMLEscape`, which hoisie/mustache applies to `{{ x }}`.
pub fn go_html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// What Go's `fmt.Sprint` prints for a variable (`map[k:v …]` for a group).
fn go_sprint(v: &Var, out: &mut String) {
    match v {
        Var::Text(s) => out.push_str(s),
        Var::Group(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:");
                go_sprint(v, out);
            }
            out.push(']');
        }
    }
}

impl Var {
    fn text(&self) -> String {
        let mut s = String::new();
        go_sprint(self, &mut s);
        s
    }

    /// Resolves a (dotted) name in this group, as hoisie does: the first part
    /// here, the rest against the result only. `None`: the first part is not
    /// here (the caller tries outer contexts); `Some(None)`: found, but a later
    /// part is missing (renders empty, does not fall back).
    fn resolve(&self, name: &str) -> Option<Option<&Var>> {
        let Var::Group(map) = self else {
            return None;
        };
        let (head, rest) = match name.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (name, None),
        };
        let first = map.get(head)?;
        Some(match rest {
            None => Some(first),
            Some(r) => match first {
                Var::Group(m) => lookup(m, r),
                Var::Text(_) => None,
            },
        })
    }
}

impl Content for Var {
    fn is_truthy(&self) -> bool {
        // hoisie: only false, nil and empty slices are falsey; every string is true.
        true
    }

    fn render_escaped<E: Encoder>(&self, encoder: &mut E) -> Result<(), E::Error> {
        encoder.write_unescaped(&go_html_escape(&self.text()))
    }

    fn render_unescaped<E: Encoder>(&self, encoder: &mut E) -> Result<(), E::Error> {
        encoder.write_unescaped(&self.text())
    }

    fn render_section<C, E>(&self, section: Section<C>, encoder: &mut E) -> Result<(), E::Error>
    where
        C: ContentSequence,
        E: Encoder,
    {
        match self {
            // A group becomes the innermost context; a string renders the body once.
            Var::Group(_) => section.with(self).render(encoder),
            Var::Text(_) => section.render(encoder),
        }
    }

    fn render_field_escaped<E: Encoder>(
        &self,
        _hash: u64,
        name: &str,
        encoder: &mut E,
    ) -> Result<bool, E::Error> {
        match self.resolve(name) {
            None => Ok(false),
            Some(found) => {
                if let Some(v) = found {
                    v.render_escaped(encoder)?;
                }
                Ok(true)
            }
        }
    }

    fn render_field_unescaped<E: Encoder>(
        &self,
        _hash: u64,
        name: &str,
        encoder: &mut E,
    ) -> Result<bool, E::Error> {
        match self.resolve(name) {
            None => Ok(false),
            Some(found) => {
                if let Some(v) = found {
                    v.render_unescaped(encoder)?;
                }
                Ok(true)
            }
        }
    }

    fn render_field_section<C, E>(
        &self,
        _hash: u64,
        name: &str,
        section: Section<C>,
        encoder: &mut E,
    ) -> Result<bool, E::Error>
    where
        C: ContentSequence,
        E: Encoder,
    {
        match self.resolve(name) {
            None => Ok(false),
            Some(found) => {
                if let Some(v) = found {
                    v.render_section(section, encoder)?;
                }
                Ok(true)
            }
        }
    }

    fn render_field_inverse<C, E>(
        &self,
        _hash: u64,
        name: &str,
        section: Section<C>,
        encoder: &mut E,
    ) -> Result<bool, E::Error>
    where
        C: ContentSequence,
        E: Encoder,
    {
        match self.resolve(name) {
            None => Ok(false),
            // Found: every variable is truthy, so the inverted section is skipped.
            Some(Some(_)) => Ok(true),
            // `a.b` with `a` present and `b` missing is empty: render it.
            Some(None) => {
                section.render(encoder)?;
                Ok(true)
            }
        }
    }
}

/// Renders `source` with `vars`. The error says what is wrong with the
/// template (unclosed tags and sections, unsupported tags).
pub fn render(source: &str, vars: &Vars) -> Result<String, String> {
    if let Some(pos) = source.find("{{=") {
        let line = source[..pos].matches('\n').count() + 1;
        return Err(format!(
            "line {line}: set-delimiter tags ({{{{=… …=}}}}) are not supported; keep the {{{{ }}}} delimiters"
        ));
    }
    unclosed_section(source)?;
    let template = Template::new(source).map_err(|e| match e {
        ramhorns::Error::PartialsDisabled => {
            "partials ({{> name}}) are not supported in Dataplane templates".to_string()
        }
        other => other.to_string(),
    })?;
    let root = Var::Group(vars.root.clone());
    Ok(template.render(&root))
}

/// ramhorns reports mismatched and stray closing tags but renders a section
/// still open at the end of the template as if it were text; hoisie reports
/// it ("Section … has no closing tag"), and so do we.
fn unclosed_section(source: &str) -> Result<(), String> {
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut rest = source;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let tag = after[..end].trim();
        let line = source[..offset + start].matches('\n').count() + 1;
        if let Some(names) = tag.strip_prefix('#').or_else(|| tag.strip_prefix('^')) {
            open.extend(names.split_whitespace().map(|n| (n, line)));
        } else if let Some(names) = tag.strip_prefix('/') {
            for _ in names.split_whitespace() {
                open.pop();
            }
        }
        offset += start + 2 + end + 2;
        rest = &source[offset..];
    }
    match open.last() {
        Some((name, line)) => Err(format!(
            "line {line}: section {{{{#{name}}}}} has no closing tag {{{{/{name}}}}}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let mut v = Vars::new();
        for (k, val) in pairs {
            v.insert(k, val).unwrap();
        }
        v
    }

    fn r(src: &str, pairs: &[(&str, &str)]) -> String {
        render(src, &vars(pairs)).unwrap()
    }

    #[test]
    fn variables_with_and_without_spaces() {
        assert_eq!(
            r("a: {{ name }}/{{port}}", &[("name", "dp"), ("port", "80")]),
            "a: dp/80"
        );
    }

    #[test]
    fn escaped_output_matches_go_html_escape() {
        let v = [("x", r#"a&b<c>d"e'f"#)];
        assert_eq!(r("{{ x }}", &v), "a&amp;b&lt;c&gt;d&#34;e&#39;f");
        assert_eq!(r("{{{ x }}}", &v), r#"a&b<c>d"e'f"#);
        assert_eq!(r("{{& x }}", &v), r#"a&b<c>d"e'f"#);
        assert_eq!(go_html_escape("nul\0"), "nul\u{FFFD}");
    }

    #[test]
    fn missing_variables_render_empty() {
        assert_eq!(
            r("[{{ nope }}][{{{ nope }}}][{{ a.b.c }}]", &[("a.x", "1")]),
            "[][][]"
        );
    }

    #[test]
    fn dotted_keys_nest_and_merge_deeply() {
        let v = [("tags.version", "v1"), ("tags.zone", "z1"), ("name", "dp")];
        assert_eq!(r("{{ tags.version }} {{ tags.zone }}", &v), "v1 z1");
        // Sections over a group make it the context; outer names still resolve.
        assert_eq!(r("{{#tags}}{{version}}-{{name}}{{/tags}}", &v), "v1-dp");
        // A group printed as a value is what Go's fmt prints.
        assert_eq!(r("{{ tags }}", &v), "map[version:v1 zone:z1]");
    }

    #[test]
    fn sections_and_inverted_sections_follow_hoisie_truthiness() {
        let v = [("set", ""), ("flag", "false")];
        // Every string is true, even "" and "false".
        assert_eq!(r("{{#set}}yes{{/set}}{{^set}}no{{/set}}", &v), "yes");
        assert_eq!(r("{{#flag}}yes{{/flag}}", &v), "yes");
        assert_eq!(r("{{#nope}}yes{{/nope}}{{^nope}}no{{/nope}}", &v), "no");
        assert_eq!(r("{{^set.x}}empty{{/set.x}}", &[("set.y", "1")]), "empty");
    }

    #[test]
    fn conflicting_and_malformed_keys_are_rejected() {
        let mut v = Vars::new();
        v.insert("a", "1").unwrap();
        assert!(
            v.insert("a.b", "2")
                .unwrap_err()
                .contains("needs 'a' to be a group")
        );
        let mut v = Vars::new();
        v.insert("a.b", "2").unwrap();
        assert!(
            v.insert("a", "1")
                .unwrap_err()
                .contains("cannot also be a value")
        );
        assert!(
            Vars::new()
                .insert("a..b", "1")
                .unwrap_err()
                .contains("empty part")
        );
        // Later values win.
        let mut v = Vars::new();
        v.insert("a", "1").unwrap();
        v.insert("a", "2").unwrap();
        assert_eq!(v.get("a"), Some(&Var::Text("2".into())));
    }

    #[test]
    fn var_flags_split_like_pflag_string_to_string() {
        let p = |s| parse_var_flag(s).unwrap();
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(p("name=dp"), vec![pair("name", "dp")]);
        // One '=': commas belong to the value.
        assert_eq!(p("list=a,b"), vec![pair("list", "a,b")]);
        assert_eq!(p("\"q=x\""), vec![pair("q", "x")]);
        // Several: a CSV record of pairs; quotes protect commas.
        assert_eq!(
            p("a=1,b=2,tags.v=x"),
            vec![pair("a", "1"), pair("b", "2"), pair("tags.v", "x")]
        );
        assert_eq!(p("a=1,\"b=2,3\""), vec![pair("a", "1"), pair("b", "2,3")]);
        assert_eq!(p("url=http://h/?x=1"), vec![pair("url", "http://h/?x=1")]);
        assert!(parse_var_flag("novalue").unwrap_err().contains("key=value"));
        // One '=' keeps the commas: the value of a is "1,b".
        assert_eq!(p("a=1,b"), vec![pair("a", "1,b")]);
        assert!(
            parse_var_flag("a=1,b,c=2")
                .unwrap_err()
                .contains("'b' must be formatted")
        );
        assert!(parse_var_flag("=1").unwrap_err().contains("empty key"));
    }

    #[test]
    fn template_errors_are_reported() {
        assert_eq!(
            render("a\n{{#a}}x", &Vars::new()).unwrap_err(),
            "line 2: section {{#a}} has no closing tag {{/a}}"
        );
        assert!(
            render("{{#a}}x{{/b}}", &Vars::new())
                .unwrap_err()
                .contains("{{/a}}")
        );
        assert!(
            render("x{{/b}}", &Vars::new())
                .unwrap_err()
                .contains("{{/b}}")
        );
        assert!(
            render("{{ a ", &Vars::new())
                .unwrap_err()
                .contains("closing braces")
        );
        assert!(
            render("{{> other}}", &Vars::new())
                .unwrap_err()
                .contains("partials")
        );
        assert!(
            render("x\n{{=<% %>=}}", &Vars::new())
                .unwrap_err()
                .starts_with("line 2: set-delimiter")
        );
    }
}
