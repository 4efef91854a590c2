//! Texts in a plan: the diff of two files (compose, scripts) that shows what a terminal would
//! hide, and the markers it uses.

use std::fmt::Write as _;

use crate::style::Palette;

/// A unified diff of two texts, indented under the attribute, that shows what a terminal
/// would hide (as `git diff` flags whitespace errors, but in plain text too, so `NO_COLOR`
/// and CI logs keep it):
/// - notes for a changed line-ending style ("line endings changed (LF → CRLF)") and an added
///   or removed byte-order mark. When both texts use one style each, lines are compared with
///   the style set aside, so a converted file shows only its real changes (or none);
/// - in changed lines, markers for carriage returns, trailing spaces and tabs, invisible and
///   unusual characters (no-break and zero-width spaces, BOM, bidi controls, other control
///   characters), and tabs in compose files (YAML forbids them in indentation) or wherever a
///   line changed only in its whitespace;
/// - a legend naming each marker used.
pub(super) fn text_diff(out: &mut String, p: &Palette, before: &str, after: &str, label: &str) {
    let mut notes = Vec::new();
    match (before.starts_with('\u{feff}'), after.starts_with('\u{feff}')) {
        (false, true) => notes.push("a byte-order mark (U+FEFF) was added at the start".to_string()),
        (true, false) => notes.push("the byte-order mark (U+FEFF) at the start was removed".to_string()),
        _ => {}
    }
    let (eb, ea) = (Eol::of(before), Eol::of(after));
    let converted = eb != ea && eb.is_uniform() && ea.is_uniform();
    if eb != ea && eb != Eol::None && ea != Eol::None {
        notes.push(format!("line endings changed ({} → {})", eb.name(), ea.name()));
    }
    let (b, a) = if converted { (crlf_to_lf(before), crlf_to_lf(after)) } else { (before.into(), after.into()) };
    let mut used = Markers::default();
    let diff = similar::TextDiff::from_lines(b.as_ref(), a.as_ref());
    let mut lines = Vec::new();
    if b != a {
        lines.push(p.bold(&format!("--- a/{label}")));
        lines.push(p.bold(&format!("+++ b/{label}")));
    }
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        lines.push(p.cyan(&hunk.header().to_string()));
        let changes: Vec<_> = hunk.iter_changes().collect();
        let squashed = |tag| -> std::collections::BTreeSet<String> {
            changes.iter().filter(|c| c.tag() == tag).map(|c| squash_ws(c.value())).collect()
        };
        let (gone, came) = (squashed(similar::ChangeTag::Delete), squashed(similar::ChangeTag::Insert));
        for c in &changes {
            let text = c.value();
            let content = text.strip_suffix('\n').unwrap_or(text);
            let (sign, other) = match c.tag() {
                similar::ChangeTag::Equal => {
                    lines.push(format!(" {content}"));
                    continue;
                }
                similar::ChangeTag::Delete => ('-', &came),
                similar::ChangeTag::Insert => ('+', &gone),
            };
            let tabs = is_yaml(label) || other.contains(&squash_ws(text));
            let paint = |s: &str| if sign == '+' { p.green(s) } else { p.red(s) };
            lines.push(visible(&format!("{sign}{content}"), tabs, &mut used, &paint, &|s| p.marker(s)));
            if !text.ends_with('\n') {
                lines.push("\\ No newline at end of file".to_string());
            }
        }
    }
    for l in lines {
        let _ = writeln!(out, "          {l}");
    }
    if converted && b == a {
        notes.push("no other change".to_string());
    }
    if let Some(legend) = used.legend() {
        notes.push(legend);
    }
    for n in notes {
        let _ = writeln!(out, "          {} {n}", p.cyan("note:"));
    }
}

/// Whether a file shown under `label` is YAML (compose), where tabs in indentation are errors.
pub(super) fn is_yaml(label: &str) -> bool {
    label.ends_with(".yml")
}

/// The line-ending style of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Eol {
    /// No line ends at all.
    None,
    Lf,
    CrLf,
    Cr,
    Mixed,
}

impl Eol {
    pub(super) fn of(s: &str) -> Eol {
        let crlf = s.matches("\r\n").count();
        let lf = s.matches('\n').count() - crlf;
        let cr = s.matches('\r').count() - crlf;
        match (lf > 0, crlf > 0, cr > 0) {
            (false, false, false) => Eol::None,
            (true, false, false) => Eol::Lf,
            (false, true, false) => Eol::CrLf,
            (false, false, true) => Eol::Cr,
            _ => Eol::Mixed,
        }
    }

    pub(super) fn is_uniform(self) -> bool {
        matches!(self, Eol::Lf | Eol::CrLf)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Eol::None => "none",
            Eol::Lf => "LF",
            Eol::CrLf => "CRLF",
            Eol::Cr => "CR",
            Eol::Mixed => "mixed",
        }
    }
}

pub(super) fn crlf_to_lf(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains("\r\n") { s.replace("\r\n", "\n").into() } else { s.into() }
}

/// A line with every run of whitespace as one space: equal for lines that differ only in
/// their whitespace.
pub(super) fn squash_ws(s: &str) -> String {
    s.split([' ', '\t', '\r', '\n']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The markers a diff used, for its legend.
#[derive(Default)]
pub(super) struct Markers(std::collections::BTreeMap<String, &'static str>);

impl Markers {
    pub(super) fn legend(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            let parts: Vec<String> = self.0.iter().map(|(m, what)| format!("{m} {what}")).collect();
            format!("shown: {}", parts.join(", "))
        })
    }
}

/// How a character a terminal would not show is written in a diff line (`None`: as itself).
pub(super) fn marker(c: char) -> Option<(String, &'static str)> {
    let named = |m: &str, what| Some((format!("<{m}>"), what));
    match c {
        '\r' => named("CR", "carriage return"),
        '\u{a0}' => named("NBSP", "no-break space (U+00A0)"),
        '\u{200b}' => named("ZWSP", "zero-width space (U+200B)"),
        '\u{200c}' => named("ZWNJ", "zero-width non-joiner (U+200C)"),
        '\u{200d}' => named("ZWJ", "zero-width joiner (U+200D)"),
        '\u{2060}' => named("WJ", "word joiner (U+2060)"),
        '\u{feff}' => named("BOM", "byte-order mark (U+FEFF)"),
        '\u{ad}' => named("SHY", "soft hyphen (U+00AD)"),
        '\t' | '\n' => None,
        c if c.is_control()
            || matches!(c, '\u{1680}' | '\u{180e}' | '\u{2000}'..='\u{200a}' | '\u{200e}' | '\u{200f}'
                | '\u{2028}'..='\u{202f}' | '\u{205f}' | '\u{2061}'..='\u{206f}' | '\u{3000}' | '\u{fff9}'..='\u{fffb}') =>
        {
            Some((format!("<U+{:04X}>", c as u32), "a control or invisible character, by its code point"))
        }
        _ => None,
    }
}

/// A changed diff line with markers for what would not show: see [`text_diff`]. `paint`
/// colours the text, `mark` the markers.
pub(super) fn visible(
    line: &str,
    tabs: bool,
    used: &mut Markers,
    paint: &dyn Fn(&str) -> String,
    mark: &dyn Fn(&str) -> String,
) -> String {
    let body_end = line.trim_end_matches([' ', '\t']).len();
    let mut out = String::new();
    let mut text = String::new();
    let flush = |text: &mut String, out: &mut String| {
        if !text.is_empty() {
            out.push_str(&paint(text));
            text.clear();
        }
    };
    for (i, c) in line.char_indices() {
        let trailing = i >= body_end;
        let m = match c {
            ' ' if trailing => Some(("·".to_string(), "trailing space")),
            '\t' if trailing || tabs => Some(("→".to_string(), "tab")),
            c => marker(c),
        };
        match m {
            Some((m, what)) => {
                flush(&mut text, &mut out);
                out.push_str(&mark(&m));
                // Code points share one legend entry.
                let key = if m.starts_with("<U+") { "<U+…>".to_string() } else { m };
                used.0.insert(key, what);
            }
            None => text.push(c),
        }
    }
    flush(&mut text, &mut out);
    out
}
