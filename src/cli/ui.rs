//! Terminal output: colour choice, status lines on stderr, and apply progress.
//!
//! stdout carries only the primary output (plans, JSON, outputs); everything else goes to
//! stderr. Colour follows `--no-color`, `NO_COLOR` and whether the stream is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use crate::apply::{Events, StepResult};
use crate::plan::Action;
use crate::plan::render::Palette;

#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub stdout_color: bool,
    pub stderr_color: bool,
    pub stderr_tty: bool,
    pub stdin_tty: bool,
}

impl Ui {
    pub fn detect(no_color: bool) -> Ui {
        let env_off = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let force = std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| v != "0");
        let allow = !no_color && !env_off;
        Ui {
            stdout_color: allow && (force || std::io::stdout().is_terminal()),
            stderr_color: allow && (force || std::io::stderr().is_terminal()),
            stderr_tty: std::io::stderr().is_terminal(),
            stdin_tty: std::io::stdin().is_terminal(),
        }
    }

    pub fn err_palette(&self) -> Palette {
        Palette::new(self.stderr_color)
    }

    /// A cargo-style status line on stderr: a bold verb right-aligned in 12 columns.
    pub fn status(&self, verb: &str, msg: &str) {
        let p = self.err_palette();
        eprintln!("{} {msg}", p.bold(&p.green(&format!("{verb:>12}"))));
    }

    pub fn warn(&self, msg: &str) {
        eprintln!("{} {msg}", self.err_palette().yellow("warning:"));
    }
}

fn verbs(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating...", "Creation complete"),
        Action::Update => ("Modifying...", "Modifications complete"),
        Action::Replace => ("Replacing...", "Replacement complete"),
        Action::Delete => ("Destroying...", "Destruction complete"),
    }
}

/// Apply progress: a bar and a spinner per CVM on a terminal, plain lines otherwise (CI logs).
pub struct Progress {
    ui: Ui,
    total: usize,
    state: Mutex<ProgressState>,
    multi: Option<indicatif::MultiProgress>,
}

struct ProgressState {
    done: usize,
    bars: std::collections::BTreeMap<String, indicatif::ProgressBar>,
    last: std::collections::BTreeMap<String, String>,
    overall: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(ui: Ui, total: usize) -> Progress {
        let fancy = ui.stderr_tty && std::env::var_os("TEEFORM_NO_PROGRESS").is_none();
        let multi = fancy.then(indicatif::MultiProgress::new);
        let overall = multi.as_ref().map(|m| {
            let bar = m.add(indicatif::ProgressBar::new(total as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>12.bold.green} [{bar:30}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix("Applying");
            bar
        });
        Progress {
            ui,
            total,
            state: Mutex::new(ProgressState { done: 0, bars: Default::default(), last: Default::default(), overall }),
            multi,
        }
    }

    fn line(&self, s: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None => {
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{s}");
            }
        }
    }

    pub fn finish(&self) {
        let st = self.state.lock().expect("progress lock");
        if let Some(o) = &st.overall {
            o.finish_and_clear();
        }
    }
}

impl Events for Progress {
    fn started(&self, address: &str, action: Action) {
        let (verb, _) = verbs(action);
        let mut st = self.state.lock().expect("progress lock");
        if let Some(m) = &self.multi {
            let bar = m.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {spinner} {prefix}: {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            bar.set_prefix(address.to_string());
            bar.set_message(verb.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            st.bars.insert(address.to_string(), bar);
        }
        let n = st.done;
        drop(st);
        self.line(format!("[{}/{}] {address}: {verb}", n + 1, self.total));
    }

    fn status(&self, address: &str, message: &str) {
        let mut st = self.state.lock().expect("progress lock");
        if let Some(bar) = st.bars.get(address) {
            bar.set_message(message.to_string());
            return;
        }
        // Plain output: only when the status word changes, so CI logs stay short.
        let word = message.split(" (").next().unwrap_or(message).to_string();
        if st.last.get(address) != Some(&word) {
            st.last.insert(address.to_string(), word);
            drop(st);
            self.line(format!("      {address}: {message}"));
        }
    }

    fn finished(&self, address: &str, action: Action, result: &StepResult, elapsed: Duration) {
        let p = self.ui.err_palette();
        let (_, done) = verbs(action);
        let mut st = self.state.lock().expect("progress lock");
        st.done += 1;
        if let Some(bar) = st.bars.remove(address) {
            bar.finish_and_clear();
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
                format!("{} {address}: failed after {secs:.1}s: {e}", p.red("✗"))
            }
            StepResult::Skipped(why) => format!("{} {address}: skipped: {why}", p.yellow("-")),
            StepResult::Paused(why) => format!("{} {address}: paused: {why}", p.yellow("‖")),
        };
        self.line(format!("[{n}/{}] {line}", self.total));
    }
}
