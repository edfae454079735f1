//! `direct.xml` as text with positions: the parser finds the `<direct>` root
//! and the byte span of every child element, so entries can be added before
//! `</direct>` and removed line by line while every other byte of the file —
//! foreign rules, chains, passthroughs, comments, attribute spelling, order,
//! indentation — stays as it was. Also the one place an [`Entry`] becomes XML.

use std::fmt;
use std::ops::Range;

use anyhow::{Context, bail};
use quick_xml::escape::{escape, partial_escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::Entry;

/// The XML declaration firewalld itself writes.
pub const DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// Indentation of child elements when the file gives no example.
const DEFAULT_INDENT: &str = "  ";

/// One child element of `<direct>`.
#[derive(Debug, Clone)]
pub struct Element {
    /// Bytes from `<` of the start tag to `>` of the end tag.
    pub span: Range<usize>,
    /// The entry it describes; `None` for elements firewalld would not read
    /// as one (unknown name, missing attribute), which we never touch.
    pub entry: Option<Entry>,
}

/// How the root element ends.
#[derive(Debug, Clone)]
enum Root {
    /// `<direct>…</direct>`: byte offset of `</direct>`.
    Open { end_tag: usize },
    /// `<direct/>`: its span.
    Empty { span: Range<usize> },
}

/// A parsed `direct.xml`.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    pub text: &'a str,
    root: Root,
    pub children: Vec<Element>,
}

/// A child element while its end tag is still to come.
struct Open {
    start: usize,
    name: String,
    attrs: Vec<(String, String)>,
    body: String,
}

fn attributes(e: &BytesStart<'_>) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a?;
        let key = a.key.as_ref().to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

fn name_of(e: &BytesStart<'_>) -> String {
    e.name().as_ref().to_string()
}

impl<'a> Document<'a> {
    /// Parses `text`; an error says what is wrong and at which byte.
    pub fn parse(text: &'a str) -> anyhow::Result<Self> {
        let mut reader = Reader::from_str(text);
        let mut depth = 0usize;
        let mut root: Option<Root> = None;
        let mut seen_root = false;
        let mut open: Option<Open> = None;
        let mut children = Vec::new();
        loop {
            let start = reader.buffer_position() as usize;
            let event = reader.read_event().with_context(|| {
                format!("not well-formed XML at byte {}", reader.error_position())
            })?;
            let end = reader.buffer_position() as usize;
            let empty = matches!(event, Event::Empty(_));
            match event {
                Event::Start(e) | Event::Empty(e) if depth == 0 => {
                    let name = name_of(&e);
                    if seen_root {
                        bail!("second root element <{name}> at byte {start}");
                    }
                    if name != "direct" {
                        bail!("root element is <{name}>, not <direct>");
                    }
                    seen_root = true;
                    if empty {
                        root = Some(Root::Empty { span: start..end });
                    } else {
                        depth = 1;
                    }
                }
                Event::Start(e) => {
                    if depth == 1 {
                        open = Some(Open {
                            start,
                            name: name_of(&e),
                            attrs: attributes(&e)?,
                            body: String::new(),
                        });
                    }
                    depth += 1;
                }
                Event::Empty(e) if depth == 1 => {
                    let entry = Entry::from_element(&name_of(&e), &attributes(&e)?, "");
                    children.push(Element {
                        span: start..end,
                        entry,
                    });
                }
                Event::End(_) => {
                    depth -= 1;
                    if depth == 1 {
                        if let Some(o) = open.take() {
                            children.push(Element {
                                span: o.start..end,
                                entry: Entry::from_element(&o.name, &o.attrs, &o.body),
                            });
                        }
                    } else if depth == 0 {
                        root = Some(Root::Open { end_tag: start });
                    }
                }
                Event::Text(t) if depth >= 2 => {
                    if let Some(o) = open.as_mut() {
                        o.body.push_str(&t.xml10_content());
                    }
                }
                Event::CData(c) if depth >= 2 => {
                    if let Some(o) = open.as_mut() {
                        o.body.push_str(&c.xml10_content());
                    }
                }
                Event::GeneralRef(r) if depth >= 2 => {
                    let resolved = match r.resolve_char_ref()? {
                        Some(c) => c.to_string(),
                        None => resolve_predefined_entity(&r)
                            .with_context(|| format!("unknown entity &{};", &*r))?
                            .to_string(),
                    };
                    if let Some(o) = open.as_mut() {
                        o.body.push_str(&resolved);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let Some(root) = root else {
            bail!("no <direct> root element");
        };
        Ok(Document {
            text,
            root,
            children,
        })
    }

    /// The entries of the children firewalld would read.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.children.iter().filter_map(|c| c.entry.as_ref())
    }

    /// Indentation of the first child that sits on its own line.
    fn indent(&self) -> &'a str {
        self.children
            .iter()
            .find_map(|c| {
                let line = line_start(self.text, c.span.start);
                let lead = &self.text[line..c.span.start];
                is_blank(lead).then_some(lead)
            })
            .unwrap_or(DEFAULT_INDENT)
    }

    /// The text with `elements` added as the last children, one per line.
    pub fn with_added(&self, elements: &[String]) -> String {
        if elements.is_empty() {
            return self.text.to_string();
        }
        let indent = self.indent();
        let lines: String = elements.iter().map(|e| format!("{indent}{e}\n")).collect();
        let t = self.text;
        match &self.root {
            Root::Open { end_tag } => {
                let line = line_start(t, *end_tag);
                if is_blank(&t[line..*end_tag]) {
                    format!("{}{lines}{}", &t[..line], &t[line..])
                } else {
                    format!("{}\n{lines}{}", &t[..*end_tag], &t[*end_tag..])
                }
            }
            Root::Empty { span } => format!(
                "{}<direct>\n{lines}</direct>{}",
                &t[..span.start],
                &t[span.end..]
            ),
        }
    }

    /// The text without the children whose index is in `remove`; an element
    /// alone on its line takes its line with it.
    pub fn without(&self, remove: &[usize]) -> String {
        let t = self.text;
        let mut cuts: Vec<Range<usize>> = remove
            .iter()
            .map(|&i| {
                let span = &self.children[i].span;
                let line = line_start(t, span.start);
                let eol = t[span.end..].find('\n').map(|p| span.end + p);
                let rest_blank = is_blank(&t[span.end..eol.unwrap_or(t.len())]);
                if is_blank(&t[line..span.start]) && rest_blank {
                    line..eol.map_or(t.len(), |p| p + 1)
                } else {
                    span.clone()
                }
            })
            .collect();
        cuts.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(t.len());
        let mut at = 0;
        for c in cuts {
            if c.start >= at {
                out.push_str(&t[at..c.start]);
                at = c.end;
            }
        }
        out.push_str(&t[at..]);
        out
    }
}

/// A new file holding `elements`, in firewalld's own layout.
pub fn new_document(elements: &[String]) -> String {
    let mut out = format!("{DECLARATION}\n<direct>\n");
    for e in elements {
        out.push_str(DEFAULT_INDENT);
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("</direct>\n");
    out
}

fn line_start(t: &str, at: usize) -> usize {
    t[..at].rfind('\n').map_or(0, |p| p + 1)
}

fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c == ' ' || c == '\t' || c == '\r')
}

/// The XML element, as written to the file and kept in the receipt:
/// attributes fully escaped, the body with only `&`, `<` and `>` escaped so
/// comment quotes stay readable (kumactl wrote them as `&#34;`, F6).
impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Chain { ipv, table, chain } => write!(
                f,
                r#"<chain ipv="{}" table="{}" chain="{}"/>"#,
                escape(ipv.as_str()),
                escape(table.as_str()),
                escape(chain.as_str())
            ),
            Entry::Rule {
                ipv,
                table,
                chain,
                priority,
                args,
            } => write!(
                f,
                r#"<rule ipv="{}" table="{}" chain="{}" priority="{priority}">{}</rule>"#,
                escape(ipv.as_str()),
                escape(table.as_str()),
                escape(chain.as_str()),
                partial_escape(args.as_str())
            ),
            Entry::Passthrough { ipv, args } => write!(
                f,
                r#"<passthrough ipv="{}">{}</passthrough>"#,
                escape(ipv.as_str()),
                partial_escape(args.as_str())
            ),
        }
    }
}
