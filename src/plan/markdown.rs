//! The plan as GitHub-flavoured markdown, for a pull-request comment or a job summary.
//!
//! Shape: a heading, the summary line (with its restart and on-chain counts), warnings, then
//! one collapsible `<details>` section per changed CVM (and one each for drift, outputs and
//! CVMs that need attention) holding the human rendering of that part in a `diff` code block,
//! its `+`/`-`/`~` markers moved to the first column so GitHub colours them (`~` becomes `!`).
//! Secrets are masked as in the human rendering: the plan holds none.
//!
//! The whole text is at most `max_chars` characters (GitHub refuses a comment over 65,536):
//! sections that do not fit are cut, then left out, and a note at the end says so and where
//! the full plan is.
//!
//! Invariant: like `render`, this reads only the [`Plan`].

use std::fmt::Write as _;

use super::render;
use super::{Mode, Plan};
use crate::style::Palette;

/// GitHub's limit on a comment's body and a job summary step's size, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// Room kept for the closing note, in characters.
const NOTE_ROOM: usize = 600;

/// Renders `plan` as markdown of at most `max_chars` characters (at least 1,000 are needed
/// for anything but the summary; a smaller limit gives the heading and summary alone).
pub fn markdown(plan: &Plan, max_chars: usize) -> String {
    let plain = Palette::plain();
    let mut out = String::from("### teeform plan\n\n");
    if plan.mode == Mode::RefreshOnly || !plan.has_changes() {
        // The human rendering's closing line says it all (no changes, or what a refresh-only
        // plan would record); drift and attention follow as sections.
        let text = render::render(
            &Plan { changes: vec![], drift: vec![], attention: vec![], unmanaged: vec![], ..plan.clone() },
            &plain,
        );
        let _ = writeln!(out, "{}\n", bold_first_words(text.lines().last().unwrap_or_default()));
    } else {
        let _ = writeln!(out, "{}\n", bold_first_words(&render::summary_line(plan, &plain)));
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "> **warning:** {}", escape(w).replace('\n', " "));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    fit(&mut out, &sections(plan), max_chars);
    out
}

/// Each part of the plan as a titled section: attention, drift, a change per CVM, outputs.
fn sections(plan: &Plan) -> Vec<(String, String)> {
    let plain = Palette::plain();
    let mut sections: Vec<(String, String)> = Vec::new();
    if !plan.attention.is_empty() {
        let mut body = String::new();
        render::attention(&mut body, &plain, plan);
        sections.push((format!("{} CVM(s) need attention", plan.attention.len()), body));
    }
    if !plan.drift.is_empty() {
        let mut body = String::new();
        for d in &plan.drift {
            render::drift(&mut body, &plain, d);
        }
        sections.push(("Objects have changed outside of teeform".into(), body));
    }
    if !plan.unmanaged.is_empty() {
        let mut body = String::new();
        for u in &plan.unmanaged {
            render::unmanaged(&mut body, &plain, u);
        }
        let n = plan.unmanaged.len();
        sections.push((format!("{n} instance(s) of managed apps that teeform does not manage"), body));
    }
    for c in &plan.changes {
        let mut body = String::new();
        if let Some(heading) = render::shown_change(&mut body, &plain, plan, c) {
            sections.push((heading.trim_start_matches("# ").to_string(), body));
        }
    }
    if plan.outputs_changed {
        let mut body = String::new();
        render::outputs(&mut body, &plain, plan);
        sections.push(("Changes to outputs".into(), body));
    }
    sections
}

/// Appends as many whole sections to `out` as fit in `max_chars` (then one cut at a line, if
/// enough room is left), and a note naming what was cut or left out.
fn fit(out: &mut String, sections: &[(String, String)], max_chars: usize) {
    let budget = max_chars.saturating_sub(NOTE_ROOM);
    let mut used = chars(out);
    let mut left_out: Vec<String> = Vec::new();
    let mut cut = false;
    for (title, body) in sections {
        if !left_out.is_empty() {
            left_out.push(title.clone());
            continue;
        }
        let whole = section(title, body, None);
        if used + chars(&whole) <= budget {
            used += chars(&whole);
            out.push_str(&whole);
            continue;
        }
        // Cut this one to the room left, if enough is left to be worth reading.
        let room = budget.saturating_sub(used);
        if room >= 1_000 {
            let shell = chars(&section(title, "", Some(usize::MAX)));
            let part = section(title, body, Some(room.saturating_sub(shell + 100)));
            if used + chars(&part) <= budget {
                used += chars(&part);
                out.push_str(&part);
                cut = true;
                continue;
            }
        }
        left_out.push(title.clone());
    }
    if cut || !left_out.is_empty() {
        let mut note = String::from("**The plan is too long for a comment")
            + if left_out.is_empty() { ", so a section above is cut" } else { "" }
            + ".**";
        if !left_out.is_empty() {
            let _ = write!(note, " {} more section(s) are not shown", left_out.len());
            let mut names = String::new();
            for t in &left_out {
                if chars(&names) + chars(t) > 200 {
                    names.push_str(", …");
                    break;
                }
                if !names.is_empty() {
                    names.push_str(", ");
                }
                names.push_str(&escape(t));
            }
            let _ = write!(note, " ({names}).");
        }
        note.push_str(" The full plan is in the saved plan file: `teeform show PLAN_FILE`.\n");
        out.push_str(&note);
    }
}

/// One collapsible section; `limit` cuts the body to about that many characters, at a line.
fn section(title: &str, body: &str, limit: Option<usize>) -> String {
    let mut text = diff_markers(body);
    let mut dropped = 0;
    if let Some(limit) = limit
        && chars(&text) > limit
    {
        let mut kept = String::new();
        let mut lines = text.lines();
        for line in lines.by_ref() {
            if chars(&kept) + chars(line) + 1 > limit {
                dropped += 1;
                break;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        dropped += lines.count();
        text = kept;
    }
    let fence = "`".repeat(longest_backtick_run(&text).max(2) + 1);
    let mut s = format!("<details><summary>{}</summary>\n\n{fence}diff\n", html_escape(title));
    s.push_str(&text);
    if !text.ends_with('\n') && !text.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(s, "{fence}");
    if dropped > 0 {
        let _ = writeln!(s, "\n*… {dropped} more line(s) cut.*");
    }
    s.push_str("\n</details>\n\n");
    s
}

/// Moves each line's `+`, `-`, `~` or `-/+` marker to the first column, as GitHub's `diff`
/// highlighting wants (`~`, changed, becomes `!`), keeping every other column where it was.
/// Markers stand only where the human rendering puts them: a resource at column 2, an
/// attribute at 6, an env key or a text diff's sign at 10; a heredoc's content (column 12 on)
/// is never mistaken for one (`- item` in a created compose file stays context).
fn diff_markers(body: &str) -> String {
    let mut out = String::new();
    for line in body.trim_matches('\n').lines() {
        let found = [2usize, 6, 10].iter().find_map(|&col| {
            let (indent, rest) = (line.get(..col)?, line.get(col..)?);
            if !indent.bytes().all(|b| b == b' ') {
                return None;
            }
            let words = [("-/+ ", "!"), ("+ ", "+"), ("- ", "-"), ("~ ", "!")];
            if let Some((m, to)) = words.iter().find(|(m, _)| rest.starts_with(m)) {
                return Some((col, m.len() - 1, *to));
            }
            // A text diff's line: its sign, then the line as it is.
            let header = rest.starts_with("+++ ") || rest.starts_with("--- ");
            (col == 10 && !header && rest.starts_with(['+', '-'])).then(|| (col, 1, &rest[..1]))
        });
        match found {
            Some((col, len, to)) => {
                out.push_str(to);
                out.push_str(&line[1..col]);
                out.push_str(&" ".repeat(len));
                out.push_str(&line[col + len..]);
            }
            None => {
                out.push(' ');
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// `Plan:` / `No changes.` in bold, the rest as it is (escaped).
fn bold_first_words(line: &str) -> String {
    for lead in ["Plan:", "No changes.", "No changes to apply,"] {
        if let Some(rest) = line.strip_prefix(lead) {
            return format!("**{lead}**{}", escape(rest));
        }
    }
    escape(line)
}

/// Text outside code blocks: HTML and markdown's active characters escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside an HTML element (`<summary>`).
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_move_to_the_first_column() {
        let body = "  # cvm.web will be updated\n  ~ cvm \"web\" {\n      ~ vcpu = 1 -> 2\n      + a\n      - b\n  -/+ cvm \"x\" {\n    }\n";
        let d = diff_markers(body);
        assert_eq!(
            d,
            "   # cvm.web will be updated\n!   cvm \"web\" {\n!       vcpu = 1 -> 2\n+       a\n-       b\n!     cvm \"x\" {\n     }\n"
        );
        // A text diff's signs move; its headers, and a created file's `- item`, do not.
        let body = "          --- a/c.yml\n          +++ b/c.yml\n          -  image: a\n          +x\n            - \"80:80\"\n";
        assert_eq!(
            diff_markers(body),
            "           --- a/c.yml\n           +++ b/c.yml\n-            image: a\n+          x\n             - \"80:80\"\n"
        );
    }

    #[test]
    fn a_fence_is_longer_than_any_backticks_inside() {
        let s = section("t", "  + x = \"````\"\n", None);
        assert!(s.contains("\n`````diff\n"), "{s}");
        assert!(s.trim_end().ends_with("</details>"));
    }

    #[test]
    fn text_outside_code_is_escaped() {
        assert_eq!(escape("<b>a_b</b> & `x`"), "&lt;b&gt;a\\_b&lt;/b&gt; &amp; \\`x\\`");
    }

    #[test]
    fn a_cut_section_stays_under_its_limit_and_says_so() {
        let body: String = (0..500).map(|i| format!("  + line {i}\n")).collect();
        let s = section("cvm.web will be created", &body, Some(1_000));
        assert!(chars(&s) < 1_300, "{}", chars(&s));
        assert!(s.contains("more line(s) cut"), "{s}");
        assert!(s.contains("</details>"));
    }
}
