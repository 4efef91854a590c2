//! Apply progress. On a terminal: one redraw region at the bottom (a line per running
//! operation, with a spinner, its status and how long it has run, then an overall bar), with
//! finished steps printed above it; every line fits the terminal's width, and the region
//! never grows taller than the terminal (operations beyond that are counted on the overall
//! bar). While it is drawn, every other stderr line goes above it through
//! [`Shell::err_line`]. Otherwise (CI logs, `TEEFORM_NO_PROGRESS`): plain lines, a status
//! line only when an operation's status changes. With `-q`: nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Shell, Verbosity};
use crate::apply::{Events, StepResult};
use crate::plan::Action;

fn verbs(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating...", "Creation complete"),
        Action::Update => ("Modifying...", "Modifications complete"),
        Action::Replace => ("Replacing...", "Replacement complete"),
        Action::Delete => ("Destroying...", "Destruction complete"),
    }
}

/// The terminal's (rows, columns) on stderr, or a conventional 24x80.
pub(super) fn term_size() -> (usize, usize) {
    let (rows, cols) = console::Term::stderr().size();
    if rows == 0 || cols == 0 { (24, 80) } else { (rows as usize, cols as usize) }
}

/// Columns text may use: one less than the terminal has, so no line of teeform's ever ends
/// in the last column (where terminals differ on when they wrap). The progress templates end
/// in a space for the same reason.
pub(super) fn term_cols() -> usize {
    term_size().1.saturating_sub(1)
}

/// Wraps text to `width` display columns at spaces (a word longer than a line is cut), with
/// continuation lines indented by four. Colour codes take no width.
pub fn wrap(text: &str, width: usize) -> String {
    let width = width.max(20);
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let mut col = 0;
        let mut first = true;
        for word in line.split(' ') {
            let w = console::measure_text_width(word);
            if !first && col + 1 + w > width {
                out.push_str("\n    ");
                col = 4;
            } else if !first {
                out.push(' ');
                col += 1;
            }
            first = false;
            let mut rest = word.to_string();
            let mut rest_w = w;
            while col + rest_w > width && rest_w > 0 {
                // A word longer than the line: cut it (ids and URLs are plain ASCII).
                let room = width.saturating_sub(col).max(1);
                let cut: String = rest.chars().take(room).collect();
                out.push_str(&cut);
                out.push_str("\n    ");
                col = 4;
                rest = rest.chars().skip(room).collect();
                rest_w = console::measure_text_width(&rest);
            }
            out.push_str(&rest);
            col += rest_w;
        }
    }
    out
}

/// One operation while it runs.
struct Op {
    verb: &'static str,
    status: String,
    started: Instant,
    /// Its line in the redraw region; `None` while it waits for room (a short terminal).
    bar: Option<indicatif::ProgressBar>,
}

/// Apply progress (see the module's doc).
pub struct Progress {
    shell: Shell,
    total: usize,
    state: Mutex<ProgressState>,
    multi: Option<indicatif::MultiProgress>,
}

struct ProgressState {
    done: usize,
    ops: BTreeMap<String, Op>,
    /// Running operations without a line yet, oldest first.
    queued: VecDeque<String>,
    overall: Option<indicatif::ProgressBar>,
}

fn op_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("  {spinner:.cyan} {wide_msg} {elapsed:>4} ")
        .expect("valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

impl Progress {
    pub fn new(shell: &Shell, total: usize) -> Progress {
        let fancy = shell.stderr_is_tty()
            && shell.verbosity() > Verbosity::Quiet
            && std::env::var_os("TEEFORM_NO_PROGRESS").is_none();
        let multi = fancy.then(|| indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()));
        let overall = multi.as_ref().map(|m| {
            let bar = m.add(indicatif::ProgressBar::new(total as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>12.bold.green} [{bar:24}] {pos}/{len} {wide_msg} ")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix("Applying");
            bar
        });
        if let Some(m) = &multi {
            shell.begin_region(m.clone());
        }
        Progress {
            shell: shell.clone(),
            total,
            state: Mutex::new(ProgressState { done: 0, ops: BTreeMap::new(), queued: VecDeque::new(), overall }),
            multi,
        }
    }

    /// Lines the region may give to operations: the terminal's height less the overall bar
    /// and a line of margin, so the region always fits and can be redrawn in place.
    fn op_rows(&self) -> usize {
        term_size().0.saturating_sub(2).max(1)
    }

    /// A line above the region (or a plain line); none with `-q`.
    fn line(&self, s: String) {
        if self.shell.verbosity() > Verbosity::Quiet {
            self.shell.err_line(&s);
        }
    }

    fn show(m: &indicatif::MultiProgress, st: &mut ProgressState, address: &str) {
        let Some(op) = st.ops.get_mut(address) else { return };
        let bar = indicatif::ProgressBar::new_spinner().with_style(op_style()).with_elapsed(op.started.elapsed());
        let bar = match &st.overall {
            Some(o) => m.insert_before(o, bar),
            None => m.add(bar),
        };
        bar.set_message(format!("{address}: {} {}", op.verb, op.status));
        bar.enable_steady_tick(Duration::from_millis(120));
        op.bar = Some(bar);
    }

    fn count_queued(st: &ProgressState) {
        if let Some(o) = &st.overall {
            o.set_message(match st.queued.len() {
                0 => String::new(),
                n => format!("(and {n} more running)"),
            });
        }
    }

    pub fn finish(&self) {
        let mut st = self.state.lock().expect("progress lock");
        for (_, op) in std::mem::take(&mut st.ops) {
            if let Some(b) = op.bar {
                b.finish_and_clear();
            }
        }
        if let Some(o) = &st.overall {
            o.finish_and_clear();
        }
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
        self.shell.end_region();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.multi.is_some() {
            self.shell.end_region();
        }
    }
}

impl Events for Progress {
    fn started(&self, address: &str, action: Action) {
        let (verb, _) = verbs(action);
        let mut st = self.state.lock().expect("progress lock");
        st.ops.insert(address.to_string(), Op { verb, status: String::new(), started: Instant::now(), bar: None });
        if let Some(m) = &self.multi {
            let shown = st.ops.values().filter(|o| o.bar.is_some()).count();
            if shown < self.op_rows() {
                Self::show(m, &mut st, address);
            } else {
                st.queued.push_back(address.to_string());
                Self::count_queued(&st);
            }
        }
        drop(st);
        // On a terminal the operation's own line says it; a log gets a line.
        if self.multi.is_none() {
            self.line(format!("{address}: {verb}"));
        }
    }

    fn status(&self, address: &str, message: &str) {
        let mut st = self.state.lock().expect("progress lock");
        let Some(op) = st.ops.get_mut(address) else {
            drop(st);
            self.line(format!("      {address}: {message}"));
            return;
        };
        // Plain output: only when the status changes, so CI logs stay short.
        if op.status == message {
            return;
        }
        op.status = message.to_string();
        if let Some(bar) = &op.bar {
            bar.set_message(format!("{address}: {} {message}", op.verb));
            return;
        }
        if self.multi.is_some() {
            return;
        }
        drop(st);
        self.line(format!("      {address}: {message}"));
    }

    fn finished(&self, address: &str, action: Action, result: &StepResult, elapsed: Duration) {
        let p = self.shell.err_palette();
        let (_, done) = verbs(action);
        let mut st = self.state.lock().expect("progress lock");
        st.done += 1;
        if let Some(op) = st.ops.remove(address)
            && let Some(bar) = op.bar
        {
            bar.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&bar);
            }
        }
        st.queued.retain(|a| a != address);
        if let Some(m) = &self.multi {
            while st.ops.values().filter(|o| o.bar.is_some()).count() < self.op_rows() {
                let Some(next) = st.queued.pop_front() else { break };
                Self::show(m, &mut st, &next);
            }
            Self::count_queued(&st);
        }
        if let Some(o) = &st.overall {
            o.set_position(st.done as u64);
        }
        let n = st.done;
        drop(st);
        let secs = elapsed.as_secs_f64();
        let line = match result {
            StepResult::Done { id } => format!(
                "{} {address}: {done} after {secs:.1}s{}",
                p.green("✓"),
                id.as_ref().map(|i| format!(" [id={i}]")).unwrap_or_default()
            ),
            StepResult::Failed(e) => {
                format!("{} {address}: failed after {secs:.1}s: {}", p.red("✗"), e.one_line())
            }
            StepResult::Skipped(why) => format!("{} {address}: skipped: {why}", p.yellow("-")),
            StepResult::Paused(why) => format!("{} {address}: paused: {why}", p.yellow("‖")),
        };
        self.line(format!("[{n}/{}] {line}", self.total));
    }
}
