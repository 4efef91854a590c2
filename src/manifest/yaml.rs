//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml reports only the first syntax error and forgets positions once a value is
//! deserialized; a manifest diagnostic needs file:line:col for every key and value, so the
//! manifest is read from yaml-rust2's event stream (which carries a marker per event) into
//! this small tree. See ARCHITECTURE.md ("Why not serde_yaml for the manifest").

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A scalar with its text and whether it was written plain (unquoted), which decides
    /// whether `2` is a number or a string.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { text, plain: true } if scalar_bool(text).is_some() => "a boolean",
            Kind::Scalar { text, plain: true } if text.parse::<f64>().is_ok() => "a number",
            Kind::Scalar { .. } => "a string",
        }
    }
}

pub fn scalar_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A syntax error with its byte offset.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
}

/// Parses one YAML document. An empty document yields an empty mapping.
pub fn parse(src: &str) -> Result<Node, SyntaxError> {
    let lines = LineIndex::new(src);
    let mut b = Builder { parser: Parser::new_from_str(src), src, lines, anchors: HashMap::new() };
    b.document()
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// yaml-rust2 markers count characters (line 1-based, column 0-based); spans are bytes.
    fn offset(&self, src: &str, m: &Marker) -> usize {
        let line = m.line().max(1) - 1;
        let Some(&start) = self.starts.get(line) else {
            return src.len();
        };
        let rest = &src[start..];
        rest.char_indices().nth(m.col()).map(|(i, _)| start + i).unwrap_or(src.len())
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    src: &'a str,
    lines: LineIndex,
    anchors: HashMap<usize, Node>,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, usize), SyntaxError> {
        match self.parser.next_token() {
            Ok((ev, mark)) => Ok((ev, self.lines.offset(self.src, &mark))),
            Err(e) => {
                Err(SyntaxError { message: e.info().to_string(), offset: self.lines.offset(self.src, e.marker()) })
            }
        }
    }

    fn document(&mut self) -> Result<Node, SyntaxError> {
        let empty = |at| Node { kind: Kind::Map(vec![]), span: Span::new(at, at) };
        loop {
            let (ev, at) = self.next()?;
            match ev {
                Event::StreamStart | Event::Nothing => {}
                Event::StreamEnd => return Ok(empty(at)),
                Event::DocumentStart => {
                    let (ev, at) = self.next()?;
                    if matches!(ev, Event::DocumentEnd) {
                        return Ok(empty(at));
                    }
                    let node = self.node(ev, at)?;
                    // A second document in the same file is almost always a mistake.
                    let (ev, at) = self.next()?;
                    if let Event::DocumentEnd = ev {
                        let (ev, at) = self.next()?;
                        if !matches!(ev, Event::StreamEnd) {
                            return Err(SyntaxError {
                                message: "a manifest holds exactly one YAML document".into(),
                                offset: at,
                            });
                        }
                    } else {
                        return Err(SyntaxError { message: "unexpected content".into(), offset: at });
                    }
                    return Ok(node);
                }
                _ => {
                    return Err(SyntaxError { message: "unexpected YAML event".into(), offset: at });
                }
            }
        }
    }

    fn node(&mut self, ev: Event, at: usize) -> Result<Node, SyntaxError> {
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                let end = self.scalar_end(at, &text, style);
                let node = Node { kind: Kind::Scalar { text, plain }, span: Span::new(at, end) };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                let end = loop {
                    let (ev, at2) = self.next()?;
                    if let Event::SequenceEnd = ev {
                        break at2;
                    }
                    items.push(self.node(ev, at2)?);
                };
                let end = items.last().map_or(end, |n| n.span.end).max(at);
                let node = Node { kind: Kind::Seq(items), span: Span::new(at, end) };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                let mut pairs = Vec::new();
                let end = loop {
                    let (ev, at2) = self.next()?;
                    if let Event::MappingEnd = ev {
                        break at2;
                    }
                    let key = self.node(ev, at2)?;
                    let (ev, at3) = self.next()?;
                    let value = self.node(ev, at3)?;
                    pairs.push((key, value));
                };
                let end = pairs.last().map_or(end, |(_, v)| v.span.end).max(at);
                let node = Node { kind: Kind::Map(pairs), span: Span::new(at, end) };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => Ok(n.clone()),
                None => Err(SyntaxError { message: "unknown alias".into(), offset: at }),
            },
            _ => Err(SyntaxError { message: "unexpected YAML event".into(), offset: at }),
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    /// Where a scalar ends in the source: to the end of its line for plain and quoted
    /// single-line scalars (minus comments and trailing blanks), else the start plus its text.
    fn scalar_end(&self, at: usize, text: &str, style: TScalarStyle) -> usize {
        let line_end = self.src[at..].find('\n').map_or(self.src.len(), |i| at + i);
        let line = &self.src[at..line_end];
        match style {
            TScalarStyle::Plain if !text.contains('\n') => {
                let cut = line.find(" #").unwrap_or(line.len());
                let trimmed = line[..cut].trim_end();
                // A plain key ends at its colon.
                let n = trimmed.find(": ").or_else(|| trimmed.strip_suffix(':').map(|s| s.len()));
                let n = match n {
                    Some(n) if text.len() <= n => n,
                    _ => trimmed.len(),
                };
                // Flow collections: stop at a separator.
                let n = trimmed[..n].find([',', ']', '}']).filter(|&i| i >= text.len()).unwrap_or(n);
                at + n.max(1).min(line.len().max(1))
            }
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted if !text.contains('\n') => {
                let quote = if matches!(style, TScalarStyle::SingleQuoted) { '\'' } else { '"' };
                match line.get(1..).and_then(|l| l.find(quote)) {
                    Some(i) => at + i + 2,
                    None => line_end,
                }
            }
            _ => (at + text.len().max(1)).min(self.src.len()),
        }
        .min(self.src.len())
        .max(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_at(src: &str, n: &Node) -> String {
        src[n.span.start..n.span.end].to_string()
    }

    #[test]
    fn spans_cover_keys_and_values() {
        let src = "cvms:\n  web:\n    vcpu: 2 # two\n    image: \"dstack-0.5\"\n";
        let root = parse(src).unwrap();
        let Kind::Map(top) = &root.kind else { panic!() };
        let Kind::Map(cvms) = &top[0].1.kind else { panic!() };
        assert_eq!(text_at(src, &cvms[0].0), "web");
        let Kind::Map(web) = &cvms[0].1.kind else { panic!() };
        assert_eq!(text_at(src, &web[0].0), "vcpu");
        assert_eq!(text_at(src, &web[0].1), "2");
        assert_eq!(text_at(src, &web[1].1), "\"dstack-0.5\"");
    }

    #[test]
    fn syntax_error_has_offset() {
        let src = "cvms:\n  x:\n    vcpu: [\n";
        let err = parse(src).unwrap_err();
        assert!(err.offset <= src.len());
        assert!(!err.message.is_empty());
    }

    #[test]
    fn empty_document_is_empty_map() {
        assert!(matches!(parse("").unwrap().kind, Kind::Map(ref m) if m.is_empty()));
        assert!(matches!(parse("# only a comment\n").unwrap().kind, Kind::Map(ref m) if m.is_empty()));
    }

    #[test]
    fn non_ascii_columns_map_to_bytes() {
        let src = "a: \"ü\"\nb: x\n";
        let root = parse(src).unwrap();
        let Kind::Map(m) = &root.kind else { panic!() };
        assert_eq!(text_at(src, &m[1].0), "b");
    }
}
