//! Text styles for people: one palette of ANSI colours, used by the plan renderers and the
//! CLI's shell alike. Pure: whether to colour is decided by the caller (the CLI's `Shell`
//! looks at the terminal, `--color` and `NO_COLOR`); a `Palette` only applies that choice.

use anstyle::{AnsiColor, Style};

/// Paints text in teeform's colours, or leaves it plain. Green is for what is added or
/// done, yellow for changes and warnings, red for removals and errors, cyan for notes and
/// hints, bold for headings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    color: bool,
}

impl Palette {
    pub fn new(color: bool) -> Palette {
        Palette { color }
    }

    /// No colour: what `NO_COLOR`, a pipe or a log file gets.
    pub fn plain() -> Palette {
        Palette { color: false }
    }

    pub fn is_color(&self) -> bool {
        self.color
    }

    fn paint(&self, style: Style, s: &str) -> String {
        if self.color { format!("{}{s}{}", style.render(), style.render_reset()) } else { s.to_string() }
    }

    pub fn green(&self, s: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint(AnsiColor::Red.on_default(), s)
    }
    pub fn cyan(&self, s: &str) -> String {
        self.paint(AnsiColor::Cyan.on_default(), s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint(Style::new().bold(), s)
    }
    /// A marker for a character that would not show (a plan's text diffs).
    pub fn marker(&self, s: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default().invert(), s)
    }
}

#[cfg(test)]
mod tests {
    use super::Palette;

    #[test]
    fn plain_text_has_no_escapes_and_colour_resets() {
        let plain = Palette::plain();
        assert_eq!(plain.red("error:"), "error:");
        assert_eq!(plain.bold(&plain.green("done")), "done");
        let c = Palette::new(true);
        let s = c.yellow("warning:");
        assert!(s.starts_with('\u{1b}') && s.ends_with("\u{1b}[0m") && s.contains("warning:"), "{s:?}");
    }
}
