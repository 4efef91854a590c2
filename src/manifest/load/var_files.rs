//! Variable files (`--var-file FILE`, and `*.auto.vars.yaml` beside the manifest): values for
//! `variables:`, as Terraform's `.tfvars` files hold them.
//!
//! Two formats, by the file's name: `.yaml`, `.yml` and `.json` files are a YAML mapping of
//! names to scalars (each value's text as written, as everywhere in the manifest); any other
//! file is `NAME = VALUE` lines as `.tfvars` files write them (`#` and `//` comments, a value
//! a number, `true`/`false`, a `"quoted string"` with HCL's escapes, or bare text to the end
//! of the line or an inline ` #` comment). Lists, maps and expressions are refused at their
//! line and column: teeform's variables are strings, numbers and booleans.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::diag::{Diagnostic, Source};
use super::super::files::{self, Limit};
use super::super::yaml::{self, Kind, Span};
use super::{Loader, display_path};

/// A variable file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarFile {
    pub path: PathBuf,
    /// Found beside the manifest rather than named with `--var-file`: a value for a variable
    /// the manifest does not declare is then no warning (the file may serve several
    /// manifests).
    pub auto: bool,
}

/// One value a variable file sets.
#[derive(Debug, Clone)]
pub(super) struct FileValue {
    pub name: String,
    pub text: String,
    pub source: Arc<Source>,
    pub span: Span,
    pub auto: bool,
}

impl FileValue {
    /// Where it is written, for messages: `prod.tfvars:3`.
    pub fn origin(&self) -> String {
        let (line, _) = self.source.line_col(self.span.start);
        format!("{}:{line}", self.source.display)
    }
}

/// The `*.auto.vars.yaml` (and `.yml`) files in `dir`, in name order: read before any
/// `--var-file`, so a named file wins.
pub fn auto_var_files(dir: &Path) -> Vec<VarFile> {
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".auto.vars.yaml") || n.ends_with(".auto.vars.yml"))
        })
        .collect();
    found.sort();
    found.into_iter().map(|path| VarFile { path, auto: true }).collect()
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

impl Loader<'_> {
    /// Reads every variable file, in order (a later file's value wins); problems are
    /// diagnostics at their file, line and column.
    pub(super) fn read_var_files(&mut self) -> Vec<FileValue> {
        let mut out = Vec::new();
        for f in self.opts.var_files.clone() {
            let display = display_path(&f.path, self.opts.display_base.as_deref());
            let text = match files::read_regular(&f.path, Limit::Value) {
                Ok(t) => files::strip_bom(t),
                Err(e) => {
                    self.diags.push(
                        Diagnostic::bare(format!("cannot read the variable file {display}: {e}"))
                            .hint("--var-file names a file of variable values (YAML, or NAME = VALUE lines)"),
                    );
                    continue;
                }
            };
            let src = Source::with_quote(&f.path, display, text, true);
            let values = if is_yaml(&f.path) { self.yaml_values(&src) } else { self.line_values(&src) };
            out.extend(values.into_iter().map(|(name, text, span)| FileValue {
                name,
                text,
                source: src.clone(),
                span,
                auto: f.auto,
            }));
        }
        out
    }

    fn yaml_values(&mut self, src: &Arc<Source>) -> Vec<(String, String, Span)> {
        let root = match yaml::parse(&src.text) {
            Ok(r) => r,
            Err(e) => {
                let span = Span::new(e.offset, (e.offset + 1).min(src.text.len()).max(e.offset));
                self.diags.push(Diagnostic::error(src, span, format!("invalid YAML: {}", e.message)).label("here"));
                return Vec::new();
            }
        };
        let pairs = match &root.kind {
            Kind::Map(p) => p,
            _ if root.is_null() => return Vec::new(),
            _ => {
                self.diags.push(
                    Diagnostic::error(src, root.span, "a variable file must be a mapping of variable names to values")
                        .label("expected a mapping")
                        .hint("e.g. `web_vcpu: 4`"),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (k, v) in pairs {
            let Kind::Scalar { text: name, .. } = &k.kind else {
                self.diags.push(Diagnostic::error(src, k.span, "a variable name must be a plain string").label("here"));
                continue;
            };
            match &v.kind {
                Kind::Scalar { text, .. } if !v.is_null() => out.push((name.clone(), text.clone(), v.span)),
                _ => self.diags.push(
                    Diagnostic::error(
                        src,
                        v.span,
                        format!("the value of `{name}` must be a string, number or boolean"),
                    )
                    .label(format!("found {}", v.type_name()))
                    .hint("write \"\" for an empty string; remove the line to use the default"),
                ),
            }
        }
        out
    }

    fn line_values(&mut self, src: &Arc<Source>) -> Vec<(String, String, Span)> {
        let mut out = Vec::new();
        let mut offset = 0;
        for line in src.text.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            let body = line.trim_end_matches(['\n', '\r']);
            let trimmed = body.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("//") {
                continue;
            }
            let at = start + (body.len() - trimmed.len());
            match parse_line(trimmed) {
                Ok((name, value, written)) => {
                    out.push((name.to_string(), value, Span::new(at + written.start, at + written.end)));
                }
                Err((msg, col, hint)) => {
                    let here = (at + col).min(start + body.len());
                    self.diags.push(
                        Diagnostic::error(src, Span::new(here, (here + 1).min(start + body.len()).max(here)), msg)
                            .label("here")
                            .hint(hint),
                    );
                }
            }
        }
        out
    }
}

type LineError = (String, usize, &'static str);

/// `NAME = VALUE` (see the module docs): the name, the value's text, and where the value is
/// written in `line` (quotes included, a comment not).
fn parse_line(line: &str) -> Result<(&str, String, Range<usize>), LineError> {
    let form = "write NAME = VALUE (a number, true/false, \"text\" or bare text)";
    let Some((name, rest)) = line.split_once('=') else {
        return Err(("expected NAME = VALUE".into(), 0, form));
    };
    let raw_name = name;
    let name = name.trim_end();
    let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err((format!("`{name}` is not a variable name"), 0, form));
    }
    let col = raw_name.len() + 1 + (rest.len() - rest.trim_start().len());
    let value = rest.trim();
    if let Some(quoted) = value.strip_prefix('"') {
        return quoted_value(quoted)
            .map(|(v, len)| (name, v, col..col + 1 + len))
            .map_err(|(m, c, h)| (m, col + 1 + c, h));
    }
    if value.starts_with(['[', '{']) || value.starts_with("<<") {
        return Err((
            "lists, maps and heredocs are not variable values in teeform".into(),
            col,
            "teeform's variables are strings, numbers and booleans",
        ));
    }
    // Bare text: up to an inline comment (` #` or ` //`), as in HCL and dotenv files.
    let cut = [" #", "\t#", " //", "\t//"].iter().filter_map(|c| value.find(c)).min().unwrap_or(value.len());
    let bare = value[..cut].trim_end();
    Ok((name, bare.to_string(), col..col + bare.len()))
}

/// The rest of a `"…"` value after its opening quote: HCL's escapes (`\n`, `\r`, `\t`, `\"`,
/// `\\`, `\uNNNN`, `\UNNNNNNNN`), `$${` for a literal `${`; then only a comment may follow.
/// The value, and how many bytes of `s` it took (the closing quote included).
fn quoted_value(s: &str) -> Result<(String, usize), LineError> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let tail = s[i + 1..].trim();
                if !(tail.is_empty() || tail.starts_with('#') || tail.starts_with("//")) {
                    return Err(("unexpected text after the closing quote".into(), i + 1, "only a comment may follow"));
                }
                return Ok((out, i + 1));
            }
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let hex: String = (0..n).filter_map(|_| chars.next().map(|(_, h)| h)).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(ch) if hex.len() == n => out.push(ch),
                            _ => return Err(("invalid \\u escape".into(), i, "write \\u followed by 4 hex digits")),
                        }
                    }
                    _ => {
                        return Err((
                            format!("unknown escape `\\{e}`"),
                            i,
                            "escapes are \\n \\r \\t \\\" \\\\ \\uNNNN",
                        ));
                    }
                }
            }
            '$' if s[i..].starts_with("$${") => {
                out.push_str("${");
                chars.next();
                chars.next();
            }
            '$' if s[i..].starts_with("${") => {
                return Err(("a variable file holds values, not expressions".into(), i, "write $${ for a literal ${"));
            }
            c => out.push(c),
        }
    }
    Err(("the quoted value does not end on its line".into(), s.len(), "close it with \""))
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn tfvars_lines_read_as_terraform_writes_them() {
        let ok = |l: &str| parse_line(l).map(|(n, v, _)| (n.to_string(), v)).unwrap_or_else(|e| panic!("{l}: {e:?}"));
        assert_eq!(ok("web_vcpu = 4"), ("web_vcpu".into(), "4".into()));
        assert_eq!(ok("web_vcpu=4"), ("web_vcpu".into(), "4".into()));
        assert_eq!(ok(r#"name = "shop # not a comment""#), ("name".into(), "shop # not a comment".into()));
        assert_eq!(ok(r#"name = "a\tb\n\"c\" \u00e9 $${x}" # comment"#), ("name".into(), "a\tb\n\"c\" é ${x}".into()));
        assert_eq!(ok("region = eu-west # where"), ("region".into(), "eu-west".into()));
        assert_eq!(ok("url = http://x/#frag"), ("url".into(), "http://x/#frag".into()));
        assert_eq!(ok("empty ="), ("empty".into(), "".into()));
        assert_eq!(ok("v = 1.20"), ("v".into(), "1.20".into()));
        // Where the value is written: quotes in, comments out.
        let at = |l: &str| parse_line(l).unwrap().2;
        assert_eq!(at("web_vcpu = four # x"), 11..15);
        assert_eq!(at(r#"n="a\"b" // c"#), 2..8);
    }

    #[test]
    fn what_is_not_a_value_is_refused_at_its_column() {
        let err = |l: &str| parse_line(l).unwrap_err();
        assert_eq!(err("no equals sign").1, 0);
        assert!(err("2x = 1").0.contains("not a variable name"));
        let (m, col, _) = err("tags = [\"a\"]");
        assert!(m.contains("lists"), "{m}");
        assert_eq!(col, 7);
        let (m, col, _) = err(r#"n = "a ${var.x}""#);
        assert!(m.contains("not expressions"), "{m}");
        assert_eq!(col, 7);
        assert!(err(r#"n = "open"#).0.contains("does not end"));
        assert!(err(r#"n = "a" b"#).0.contains("after the closing quote"));
        assert!(err(r#"n = "\q""#).0.contains("unknown escape"));
    }
}
