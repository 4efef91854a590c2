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
    /// A scalar: its text (as written for a plain scalar; unescaped for a quoted one), whether
    /// it was written plain (unquoted), and its explicit tag (`!!str 1.30`), if any. Plain,
    /// untagged text is typed by the YAML 1.2 core schema ([`Core`]).
    Scalar {
        text: String,
        plain: bool,
        /// Boxed: most scalars have none, and every node pays for the field.
        tag: Option<Box<Tag>>,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// An explicit tag on a scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// `!!str`, or the non-specific `!`: the text is a string whatever it looks like.
    Str,
    Int,
    Float,
    Bool,
    Null,
    /// Any other tag (`!!binary`, `!!timestamp`, `!local`), as written.
    Other(String),
}

/// What a scalar means under the YAML 1.2 core schema (or its explicit tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Core {
    Null,
    Bool(bool),
    /// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`.
    Int,
    /// `[-+]?(.N|N(.N*)?)([eE][-+]?N)?`, `.inf`, `.nan` (in their three spellings).
    Float,
    Str,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(self.core(), Some(Core::Null))
    }

    /// The scalar's core-schema meaning; `None` for collections.
    pub fn core(&self) -> Option<Core> {
        match &self.kind {
            Kind::Scalar { text, plain, tag } => Some(core(text, *plain, tag.as_deref())),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match (&self.kind, self.core()) {
            (Kind::Seq(_), _) => "a list",
            (Kind::Map(_), _) => "a mapping",
            (_, Some(Core::Null)) => "null",
            (_, Some(Core::Bool(_))) => "a boolean",
            (_, Some(Core::Int | Core::Float)) => "a number",
            _ => "a string",
        }
    }
}

/// The core-schema meaning of a scalar. A quoted scalar is a string; an explicit tag wins
/// over the text (a tag whose text does not fit, like `!!int abc`, is a string here and is
/// reported by the reader that needs the number).
pub fn core(text: &str, plain: bool, tag: Option<&Tag>) -> Core {
    match tag {
        Some(Tag::Str | Tag::Other(_)) => return Core::Str,
        Some(Tag::Null) => return Core::Null,
        Some(Tag::Bool) => return scalar_bool(text).map_or(Core::Str, Core::Bool),
        Some(Tag::Int) => return if is_core_int(text) { Core::Int } else { Core::Str },
        Some(Tag::Float) => {
            return if is_core_float(text) || is_core_int(text) { Core::Float } else { Core::Str };
        }
        None if !plain => return Core::Str,
        None => {}
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        Core::Null
    } else if let Some(b) = scalar_bool(text) {
        Core::Bool(b)
    } else if is_core_int(text) {
        Core::Int
    } else if is_core_float(text) {
        Core::Float
    } else {
        Core::Str
    }
}

pub fn scalar_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// YAML 1.2 core integers: decimal with an optional sign, `0o` octal, `0x` hex.
pub fn is_core_int(t: &str) -> bool {
    let digits = |s: &str, ok: fn(&u8) -> bool| !s.is_empty() && s.as_bytes().iter().all(ok);
    if let Some(h) = t.strip_prefix("0x") {
        return digits(h, u8::is_ascii_hexdigit);
    }
    if let Some(o) = t.strip_prefix("0o") {
        return digits(o, |b| (b'0'..=b'7').contains(b));
    }
    digits(t.strip_prefix(['-', '+']).unwrap_or(t), u8::is_ascii_digit)
}

/// YAML 1.2 core floats (integers are [`is_core_int`]).
pub fn is_core_float(t: &str) -> bool {
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(t, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => all_digits(a) && all_digits(b) && !(a.is_empty() && b.is_empty()),
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exp_ok
}

/// A syntax error with its byte offset.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
}

/// How deeply collections may nest. Deeper input is an error, not a stack overflow.
pub const MAX_DEPTH: usize = 128;

/// Aliases may add at most this many nodes, or ten times the nodes written out, whichever is
/// more: enough for any `<<: *defaults` style, and an alias bomb ("billion laughs") is an
/// error instead of running out of memory.
pub const MIN_ALIAS_BUDGET: usize = 100_000;

/// Parses one YAML document. An empty document yields an empty mapping. Characters YAML
/// does not allow (C0 controls other than tab and line breaks, DEL, C1 controls other than
/// NEL, surrogates, U+FFFE/U+FFFF) are errors at their position, as libyaml and Go's yaml
/// (which docker compose uses) report them.
pub fn parse(src: &str) -> Result<Node, SyntaxError> {
    let mut text = std::borrow::Cow::Borrowed(src);
    for _ in 0..MAX_SEPARATOR_TABS {
        match parse_exact(&text) {
            Err(e) if e.message.contains("must be followed by a valid YAML whitespace") => {
                // yaml-rust2 refuses tabs as the separator after `:` or `-` (`image:\tnginx`),
                // which YAML 1.2 allows and docker compose's parser accepts. A separator is not
                // content: read its tabs as spaces. Same length, so every span stays true. The
                // error points just past the separator.
                let end = e.offset.min(text.len());
                let start = text[..end].trim_end_matches([' ', '\t']).len();
                if !text[start..end].contains('\t') {
                    return Err(e);
                }
                let spaces = " ".repeat(end - start);
                text.to_mut().replace_range(start..end, &spaces);
            }
            r => return r,
        }
    }
    parse_exact(&text)
}

/// How many separator tabs [`parse`] reads as spaces before it reports the next one.
const MAX_SEPARATOR_TABS: usize = 1000;

fn parse_exact(src: &str) -> Result<Node, SyntaxError> {
    if let Some((offset, c)) = src.char_indices().find(|&(_, c)| !yaml_printable(c)) {
        return Err(SyntaxError {
            message: format!("the control character U+{:04X} is not allowed in YAML", u32::from(c)),
            offset,
        });
    }
    let lines = LineIndex::new(src);
    let mut b = Builder {
        parser: Parser::new_from_str(src),
        src,
        lines,
        anchors: HashMap::new(),
        depth: 0,
        written: 0,
        aliased: 0,
    };
    b.document()
}

/// YAML's printable set (YAML 1.2.2 §5.1): what a YAML stream may contain.
fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        || c >= '\u{10000}'
}

/// yaml-rust2 reports a tab where its scanner noticed it, which can be the end of the line
/// before (a plain scalar looks for a continuation line). The tab the user must remove is the
/// first one in a line's indentation from the reported line on.
fn tab_offset(src: &str, reported: usize) -> usize {
    let line_start = src[..reported.min(src.len())].rfind('\n').map_or(0, |i| i + 1);
    let mut at = line_start;
    for line in src[line_start..].split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if let Some(i) = line[..indent].find('\t') {
            return at + i;
        }
        at += line.len();
    }
    src[reported.min(src.len())..].find('\t').map_or(reported, |i| reported + i)
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
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    depth: usize,
    /// Nodes read from events, and nodes added by expanding aliases.
    written: usize,
    aliased: usize,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, usize), SyntaxError> {
        match self.parser.next_token() {
            Ok((ev, mark)) => Ok((ev, self.lines.offset(self.src, &mark))),
            Err(e) => {
                let message = e.info().to_string();
                let mut offset = self.lines.offset(self.src, e.marker());
                if message.contains("tab") {
                    offset = tab_offset(self.src, offset);
                }
                Err(SyntaxError { message, offset })
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
        let before = self.written + self.aliased;
        self.written += 1;
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                let span = self.scalar_span(at, &text, style, tag.is_some());
                let tag = tag
                    .map(|t| match (t.handle.as_str(), t.suffix.as_str()) {
                        ("tag:yaml.org,2002:", "str") | ("!", "") | ("", "!") => Tag::Str,
                        ("tag:yaml.org,2002:", "int") => Tag::Int,
                        ("tag:yaml.org,2002:", "float") => Tag::Float,
                        ("tag:yaml.org,2002:", "bool") => Tag::Bool,
                        ("tag:yaml.org,2002:", "null") => Tag::Null,
                        ("tag:yaml.org,2002:", s) => Tag::Other(format!("!!{s}")),
                        (h, s) => Tag::Other(format!("{h}{s}")),
                    })
                    .map(Box::new);
                let node = Node { kind: Kind::Scalar { text, plain, tag }, span };
                self.remember(anchor, &node, before);
                Ok(node)
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(at)?;
                let mut items = Vec::new();
                let end = loop {
                    let (ev, at2) = self.next()?;
                    if let Event::SequenceEnd = ev {
                        break at2;
                    }
                    items.push(self.node(ev, at2)?);
                };
                self.depth -= 1;
                let end = items.last().map_or(end, |n| n.span.end).max(at);
                let node = Node { kind: Kind::Seq(items), span: Span::new(at, end) };
                self.remember(anchor, &node, before);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                self.enter(at)?;
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
                self.depth -= 1;
                let end = pairs.last().map_or(end, |(_, v)| v.span.end).max(at);
                let node = Node { kind: Kind::Map(pairs), span: Span::new(at, end) };
                self.remember(anchor, &node, before);
                Ok(node)
            }
            Event::Alias(id) => {
                self.written -= 1;
                let Some((n, size)) = self.anchors.get(&id) else {
                    return Err(SyntaxError { message: "unknown alias".into(), offset: at });
                };
                self.aliased += size;
                if self.aliased > MIN_ALIAS_BUDGET.max(10 * self.written) {
                    return Err(SyntaxError {
                        message: format!(
                            "aliases expand this document to more than {} values; \
                             write the repeated parts out, or use fewer levels of aliases",
                            MIN_ALIAS_BUDGET.max(10 * self.written)
                        ),
                        offset: at,
                    });
                }
                Ok(n.clone())
            }
            _ => Err(SyntaxError { message: "unexpected YAML event".into(), offset: at }),
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                message: format!("lists and mappings nest deeper than {MAX_DEPTH} levels"),
                offset: at,
            });
        }
        Ok(())
    }

    /// Remembers an anchored node with its size (the nodes built since `before`).
    fn remember(&mut self, anchor: usize, node: &Node, before: usize) {
        if anchor > 0 {
            let size = self.written + self.aliased - before;
            self.anchors.insert(anchor, (node.clone(), size));
        }
    }

    /// Where a scalar marked at `at` is: [`Builder::empty_at`], else [`Builder::scalar_end`].
    fn scalar_span(&self, at: usize, text: &str, style: TScalarStyle, tagged: bool) -> Span {
        match self.empty_at(at, text, style, tagged) {
            Some(i) => Span::new(i, i + 1),
            None => Span::new(at, self.scalar_end(at, text, style)),
        }
    }

    /// Where a value written as nothing (`key:` or `-` with nothing after it) is: yaml-rust2
    /// marks it at the next token, often lines below, so this finds the `:`, `-`, `,`, `?`,
    /// `[` or `{` before it, over blanks and comments. `None` for any other scalar, or when
    /// no indicator is found.
    fn empty_at(&self, at: usize, text: &str, style: TScalarStyle, tagged: bool) -> Option<usize> {
        if !text.is_empty() || !matches!(style, TScalarStyle::Plain) || tagged {
            return None;
        }
        let mut end = at.min(self.src.len());
        loop {
            let trimmed = self.src[..end].trim_end();
            let line_start = trimmed.rfind('\n').map_or(0, |i| i + 1);
            let line = &trimmed[line_start..];
            let indent = line.len() - line.trim_start().len();
            let comment = if line.trim_start().starts_with('#') { Some(indent) } else { line.find(" #") };
            match comment {
                Some(c) => end = line_start + c,
                None => {
                    let last = trimmed.chars().next_back()?;
                    let i = trimmed.len() - last.len_utf8();
                    // The next item's `-`, on the line of the content it starts: look further.
                    let next_item = last == '-'
                        && !self.src[i..at].contains('\n')
                        && self.src[at..].chars().next().is_some_and(|c| !c.is_whitespace());
                    if next_item {
                        end = i;
                        continue;
                    }
                    return matches!(last, ':' | '-' | ',' | '?' | '[' | '{').then_some(i);
                }
            }
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

    /// A tab separating a key or list dash from its value is YAML (and docker compose reads
    /// it); a tab inside a value stays content; a tab in indentation stays an error.
    #[test]
    fn separator_tabs_are_whitespace() {
        let src = "a:\tnginx:1.27\nb:\n  -\tx\nc: \"t\\tab\"\nd: 'x\ty'\n";
        let root = parse(src).unwrap();
        let Kind::Map(top) = &root.kind else { panic!() };
        let text = |n: &Node| match &n.kind {
            Kind::Scalar { text, .. } => text.clone(),
            Kind::Seq(items) => match &items[0].kind {
                Kind::Scalar { text, .. } => text.clone(),
                _ => panic!(),
            },
            Kind::Map(_) => panic!(),
        };
        assert_eq!(text(&top[0].1), "nginx:1.27");
        assert_eq!(text_at(src, &top[0].1), "nginx:1.27");
        assert_eq!(text(&top[1].1), "x");
        assert_eq!(text(&top[2].1), "t\tab");
        assert_eq!(text(&top[3].1), "x\ty");
        assert!(parse("a:\n\tb: 1\n").is_err());
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
