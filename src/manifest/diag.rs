//! Diagnostics: a message tied to a span of a source file, with hints, rendered like rustc.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

use super::yaml::Span;

/// A source file kept for rendering diagnostics.
#[derive(Debug)]
pub struct Source {
    /// The path as the user should see it (relative to where they ran teeform when possible).
    pub display: String,
    pub path: PathBuf,
    pub text: String,
    /// Whether diagnostics may print lines of this file. False for a file that is not known to
    /// be the user's YAML (e.g. a `compose:` naming some other file): then only
    /// `file:line:col` is shown, never its content.
    pub quote: bool,
}

impl Source {
    pub fn new(path: &Path, display: String, text: String) -> Arc<Source> {
        Self::with_quote(path, display, text, true)
    }

    pub fn with_quote(path: &Path, display: String, text: String, quote: bool) -> Arc<Source> {
        Arc::new(Source { display, path: path.to_path_buf(), text, quote })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.text.floor_char_boundary(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub source: Option<Arc<Source>>,
    pub span: Span,
    /// Text under the caret.
    pub label: String,
    pub hints: Vec<String>,
    /// Other places the problem involves (the first definition of a duplicate, the manifest
    /// line that names a broken compose file), shown with the primary one.
    pub also: Vec<Related>,
}

/// A place to annotate: span, label, and whether it is the primary one.
type Place<'a> = (Span, &'a str, bool);

/// A secondary place of a diagnostic.
#[derive(Debug, Clone)]
pub struct Related {
    pub source: Arc<Source>,
    pub span: Span,
    pub label: String,
}

impl Diagnostic {
    pub fn error(source: &Arc<Source>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            source: Some(source.clone()),
            span,
            label: String::new(),
            hints: Vec::new(),
            also: Vec::new(),
        }
    }

    pub fn warning(source: &Arc<Source>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(source, span, message) }
    }

    /// A diagnostic with no place in a file (e.g. an unreadable manifest).
    pub fn bare(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            source: None,
            span: Span::default(),
            label: String::new(),
            hints: Vec::new(),
            also: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Adds a secondary place, shown with its own label.
    pub fn also(mut self, source: &Arc<Source>, span: Span, label: impl Into<String>) -> Self {
        self.also.push(Related { source: source.clone(), span, label: label.into() });
        self
    }

    /// In-place forms of [`Diagnostic::label`] and [`Diagnostic::hint`], for diagnostics
    /// already pushed onto a list.
    pub fn set_label(&mut self, label: impl Into<String>) -> &mut Self {
        self.label = label.into();
        self
    }

    pub fn add_hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hints.push(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col`, or nothing for a bare diagnostic.
    pub fn location(&self) -> Option<String> {
        self.source.as_ref().map(|s| {
            let (l, c) = s.line_col(self.span.start);
            format!("{}:{l}:{c}", s.display)
        })
    }

    /// Renders the diagnostic with a snippet of the source, like rustc.
    pub fn render(&self, color: bool) -> String {
        let level = match self.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        let title = level.primary_title(&self.message);
        let mut groups = Vec::new();
        match &self.source {
            Some(src) => {
                let mut group = Group::with_title(title);
                // The primary place first, then each other file in order of appearance; places
                // in one file share its snippet.
                let mut files: Vec<(&Arc<Source>, Vec<Place>)> =
                    vec![(src, vec![(self.span, self.label.as_str(), true)])];
                for r in &self.also {
                    match files.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &r.source)) {
                        Some((_, spans)) => spans.push((r.span, r.label.as_str(), false)),
                        None => files.push((&r.source, vec![(r.span, r.label.as_str(), false)])),
                    }
                }
                for (file, spans) in files {
                    if !file.quote {
                        for (span, _, _) in spans {
                            let (l, c) = file.line_col(span.start);
                            group = group.element(Origin::path(&file.display).line(l).char_column(c));
                        }
                        continue;
                    }
                    let annotations = spans.into_iter().map(|(span, label, primary)| {
                        // Spans come from byte arithmetic; keep them on character boundaries.
                        let start = file.text.floor_char_boundary(span.start);
                        let range = start..file.text.ceil_char_boundary(span.end).max(start);
                        let kind = if primary { AnnotationKind::Primary } else { AnnotationKind::Context };
                        kind.span(range).label(label)
                    });
                    group = group.element(Snippet::source(&file.text).path(&file.display).annotations(annotations));
                }
                groups.push(group);
            }
            None => {
                // Without a snippet, hints read as `= help: ...` notes under the title, not as
                // groups of their own (which would draw an empty gutter between them).
                let group = self.hints.iter().fold(Group::with_title(title), |g, h| g.element(Level::HELP.message(h)));
                return renderer.render(&[group]);
            }
        }
        for h in &self.hints {
            groups.push(Group::with_title(Level::HELP.secondary_title(h)));
        }
        renderer.render(&groups)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// The closest candidate to `word`, for did-you-mean hints.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(did_you_mean("vcpus", ["vcpu", "memory"]), Some("vcpu"));
        assert_eq!(did_you_mean("zzz", ["vcpu", "memory"]), None);
    }

    #[test]
    fn line_col_counts_characters() {
        let s = Source::new(Path::new("x"), "x".into(), "ab\nüc: 1\n".into());
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(5), (2, 2));
    }
}
