//! Diagnostics: a message tied to a span of a source file, with hints, rendered like rustc.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::yaml::Span;

/// A source file kept for rendering diagnostics.
#[derive(Debug)]
pub struct Source {
    /// The path as the user should see it (relative to where they ran teeform when possible).
    pub display: String,
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: &Path, display: String, text: String) -> Arc<Source> {
        Arc::new(Source { display, path: path.to_path_buf(), text })
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
                // Spans come from byte arithmetic; keep them on character boundaries.
                let start = src.text.floor_char_boundary(self.span.start);
                let span = start..src.text.ceil_char_boundary(self.span.end).max(start);
                groups.push(
                    title.element(
                        Snippet::source(&src.text)
                            .path(&src.display)
                            .annotation(AnnotationKind::Primary.span(span).label(&self.label)),
                    ),
                );
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
