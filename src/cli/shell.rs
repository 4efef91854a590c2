//! The one owner of the terminal: stdout, stderr, colour, verbosity.
//!
//! stdout carries only a command's primary output (plans, JSON, outputs, tables); everything
//! else goes to stderr: cargo-style status lines (a bold verb right-aligned in 12 columns),
//! `warning:` and `note:` lines, errors, and the apply progress region (see [`progress`]).
//! Colour is `--color auto|always|never`: `auto` colours a stream that is a terminal, unless
//! `NO_COLOR` is set (non-empty); `CLICOLOR_FORCE` (not `0`) colours it even when it is not.
//! `-q` hides status lines, notes, warnings and progress; `-v` turns on debug logging (every
//! API request and chain call, through [`crate::redact`]).
//!
//! A write to stdout that fails because its reader went away (`teeform show --json | head
//! -1`) ends the command quietly ([`CliError::broken_pipe`]); nothing in teeform prints with
//! `print!` (which would panic there). A failed write to stderr is ignored: there is nowhere
//! left to say anything.
//!
//! Everything written to stderr passes through [`crate::redact`] (stdout is not redacted:
//! `output --raw` prints a sensitive value on purpose, and nothing else there holds a
//! credential). Tests capture a shell in-process with [`Shell::capture`].

pub mod progress;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use super::error::{CliError, CliResult};
use crate::manifest::Diagnostic;
use crate::style::Palette;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour a stream that is a terminal (unless NO_COLOR is set).
    #[default]
    Auto,
    Always,
    Never,
}

/// How much the shell says on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// `-q`: errors and the primary output only.
    Quiet,
    #[default]
    Normal,
    /// `-v`.
    Verbose,
}

/// Where a stream's bytes go.
enum Sink {
    Stdout,
    Stderr,
    /// A test's buffer, or a writer standing in for a closed pipe.
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(bytes)?;
                err.flush()
            }
            Sink::Writer(w) => {
                w.write_all(bytes)?;
                w.flush()
            }
        }
    }
}

struct Inner {
    out: Mutex<Sink>,
    err: Mutex<Sink>,
    out_color: bool,
    err_color: bool,
    err_tty: bool,
    in_tty: bool,
    verbosity: Verbosity,
    /// The apply progress region while one is drawn: stderr lines go above it.
    region: Mutex<Option<indicatif::MultiProgress>>,
    /// stdout carries JSON events only (`apply --json`): everything else printed for it goes
    /// to stderr.
    events_only: std::sync::atomic::AtomicBool,
    /// A JSON document went to stdout ([`Shell::print_json`]).
    printed_json: std::sync::atomic::AtomicBool,
}

/// The terminal, shared by everything that prints (commands, the progress display, the
/// retry observer, the signal handler). Cloning is cheap and shares the streams.
#[derive(Clone)]
pub struct Shell(Arc<Inner>);

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("out_color", &self.0.out_color)
            .field("err_color", &self.0.err_color)
            .field("verbosity", &self.0.verbosity)
            .finish()
    }
}

/// Whether to colour a stream: the choice, then `NO_COLOR`, then `CLICOLOR_FORCE`, then
/// whether it is a terminal.
fn colors(choice: ColorChoice, is_tty: bool, env: &dyn Fn(&str) -> Option<String>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                false
            } else if env("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                true
            } else {
                is_tty
            }
        }
    }
}

impl Shell {
    /// The process's own stdout and stderr.
    pub fn new(color: ColorChoice, verbosity: Verbosity) -> Shell {
        let env = |k: &str| std::env::var(k).ok();
        let out_color = colors(color, std::io::stdout().is_terminal(), &env);
        let err_color = colors(color, std::io::stderr().is_terminal(), &env);
        // The progress display (indicatif, through console) colours by the same choice.
        console::set_colors_enabled_stderr(err_color);
        Shell(Arc::new(Inner {
            out: Mutex::new(Sink::Stdout),
            err: Mutex::new(Sink::Stderr),
            out_color,
            err_color,
            err_tty: std::io::stderr().is_terminal(),
            in_tty: std::io::stdin().is_terminal(),
            verbosity,
            region: Mutex::new(None),
            events_only: std::sync::atomic::AtomicBool::new(false),
            printed_json: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// A shell writing into buffers (no terminal, so no progress region), for tests.
    pub fn capture(color: bool, verbosity: Verbosity) -> (Shell, Captured) {
        let c = Captured::default();
        let shell = Shell::with_writers(Box::new(c.out.clone()), Box::new(c.err.clone()), color, verbosity);
        (shell, c)
    }

    /// A shell over any writers (no terminal).
    pub fn with_writers(
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
        color: bool,
        verbosity: Verbosity,
    ) -> Shell {
        Shell(Arc::new(Inner {
            out: Mutex::new(Sink::Writer(out)),
            err: Mutex::new(Sink::Writer(err)),
            out_color: color,
            err_color: color,
            err_tty: false,
            in_tty: false,
            verbosity,
            region: Mutex::new(None),
            events_only: std::sync::atomic::AtomicBool::new(false),
            printed_json: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub fn verbosity(&self) -> Verbosity {
        self.0.verbosity
    }

    /// The palette for stdout (plans).
    pub fn out_palette(&self) -> Palette {
        Palette::new(self.0.out_color)
    }

    /// The palette for stderr (status lines, errors, diagnostics).
    pub fn err_palette(&self) -> Palette {
        Palette::new(self.0.err_color)
    }

    pub fn stderr_is_tty(&self) -> bool {
        self.0.err_tty
    }

    pub fn stdin_is_tty(&self) -> bool {
        self.0.in_tty
    }

    // ----- stdout ------------------------------------------------------------------------

    /// Writes `text` to stdout as it is. A reader that went away ends the command quietly.
    pub fn print(&self, text: &str) -> CliResult<()> {
        if self.0.events_only.load(std::sync::atomic::Ordering::Relaxed) {
            self.err_text(text);
            return Ok(());
        }
        self.write_out(text)
    }

    /// From now on stdout carries only [`Shell::event_line`]s; what else is printed for
    /// stdout goes to stderr (`apply --json`).
    pub fn reserve_stdout_for_events(&self) {
        self.0.events_only.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// One line of the JSON event stream, on stdout.
    pub fn event_line(&self, line: &str) -> CliResult<()> {
        self.write_out(&format!("{line}\n"))
    }

    fn write_out(&self, text: &str) -> CliResult<()> {
        let mut out = self.0.out.lock().expect("stdout lock");
        out.write_all(text.as_bytes()).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::broken_pipe(),
            _ => CliError::new(format!("cannot write to stdout: {e}")),
        })
    }

    /// Writes `text` and a line break to stdout.
    pub fn println(&self, text: &str) -> CliResult<()> {
        self.print(&format!("{text}\n"))
    }

    /// Writes `value` to stdout as pretty JSON and a line break.
    pub fn print_json(&self, value: &impl serde::Serialize) -> CliResult<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.0.printed_json.store(true, std::sync::atomic::Ordering::Relaxed);
        self.println(&text)
    }

    /// Whether [`Shell::print_json`] wrote a document (a command that failed after it owes
    /// stdout no error document).
    pub fn printed_json(&self) -> bool {
        self.0.printed_json.load(std::sync::atomic::Ordering::Relaxed)
    }

    // ----- stderr ------------------------------------------------------------------------

    /// Writes `text` (one or more lines, without the final line break) to stderr: above the
    /// progress region while one is drawn, wrapped to the terminal's width there, so nothing
    /// is left behind or torn when it redraws. Always shown.
    pub fn err_line(&self, text: &str) {
        let text = crate::redact::text(text);
        let region = self.0.region.lock().expect("region lock").clone();
        match region {
            Some(m) => {
                let _ = m.println(progress::wrap(&text, progress::term_cols()));
            }
            None => {
                let _ = self.0.err.lock().expect("stderr lock").write_all(format!("{text}\n").as_bytes());
            }
        }
    }

    /// Writes `text` to stderr as it is (a prompt: no line break). Always shown.
    pub fn err_text(&self, text: &str) {
        let text = crate::redact::text(text);
        let _ = self.0.err.lock().expect("stderr lock").write_all(text.as_bytes());
    }

    fn chatty(&self) -> bool {
        self.0.verbosity > Verbosity::Quiet
    }

    /// A status line: `verb` bold and green, right-aligned in 12 columns, then `message`.
    pub fn status(&self, verb: &str, message: &str) {
        if self.chatty() {
            let p = self.err_palette();
            self.err_line(&format!("{} {message}", p.bold(&p.green(&format!("{verb:>12}")))));
        }
    }

    /// A status line for something going wrong on its own way to succeeding (a retry):
    /// the verb in yellow.
    pub fn status_warn(&self, verb: &str, message: &str) {
        if self.chatty() {
            let p = self.err_palette();
            self.err_line(&format!("{} {message}", p.yellow(&format!("{verb:>12}"))));
        }
    }

    pub fn warn(&self, message: &str) {
        if self.chatty() {
            self.err_line(&format!("{} {message}", self.err_palette().yellow("warning:")));
        }
    }

    pub fn note(&self, message: &str) {
        if self.chatty() {
            self.err_line(&format!("{} {message}", self.err_palette().cyan("note:")));
        }
    }

    /// A manifest warning, with its snippet.
    pub fn diagnostic(&self, d: &Diagnostic) {
        if self.chatty() {
            self.err_line(&format!("{}\n", d.render(self.0.err_color)));
        }
    }

    /// Shows an error (nothing for a broken pipe). Always shown.
    pub fn error(&self, e: &CliError, cmd: &super::context::CommandLine) {
        let text = e.render(&self.err_palette(), cmd);
        if !text.is_empty() {
            self.err_text(&text);
        }
    }

    /// Runs `f` only with `-v`.
    pub fn verbose(&self, f: impl FnOnce(&Shell)) {
        if self.0.verbosity == Verbosity::Verbose {
            f(self)
        }
    }

    /// Makes `region` the place other stderr lines are printed above, until
    /// [`Shell::end_region`].
    fn begin_region(&self, region: indicatif::MultiProgress) {
        *self.0.region.lock().expect("region lock") = Some(region);
    }

    fn end_region(&self) {
        *self.0.region.lock().expect("region lock") = None;
    }
}

/// What a captured shell wrote.
#[derive(Clone, Default)]
pub struct Captured {
    out: Buffer,
    err: Buffer,
}

impl Captured {
    pub fn stdout(&self) -> String {
        self.out.text()
    }
    pub fn stderr(&self) -> String {
        self.err.text()
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer lock")).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::error::Kind;

    #[test]
    fn status_verbs_are_right_aligned_and_quiet_hides_them() {
        let (sh, c) = Shell::capture(false, Verbosity::Normal);
        sh.status("Refreshing", "2 CVMs");
        sh.warn("careful");
        sh.note("by the way");
        sh.println("primary").unwrap();
        assert_eq!(c.stderr(), "  Refreshing 2 CVMs\nwarning: careful\nnote: by the way\n");
        assert_eq!(c.stdout(), "primary\n");

        let (sh, c) = Shell::capture(false, Verbosity::Quiet);
        sh.status("Refreshing", "2 CVMs");
        sh.warn("careful");
        sh.note("by the way");
        sh.err_line("Apply complete!");
        sh.println("primary").unwrap();
        assert_eq!(c.stderr(), "Apply complete!\n", "quiet keeps results, drops chatter");
        assert_eq!(c.stdout(), "primary\n");
    }

    #[test]
    fn colour_follows_the_choice_then_no_color_then_clicolor_force_then_the_terminal() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        type Vars = &'static [(&'static str, &'static str)];
        let cases: &[(ColorChoice, bool, Vars, bool)] = &[
            (ColorChoice::Auto, true, &[], true),
            (ColorChoice::Auto, false, &[], false),
            (ColorChoice::Auto, true, &[("NO_COLOR", "1")], false),
            // An empty NO_COLOR is unset, as the convention says.
            (ColorChoice::Auto, true, &[("NO_COLOR", "")], true),
            (ColorChoice::Auto, false, &[("CLICOLOR_FORCE", "1")], true),
            (ColorChoice::Auto, false, &[("CLICOLOR_FORCE", "0")], false),
            (ColorChoice::Auto, false, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], false),
            // The command line beats the environment.
            (ColorChoice::Always, false, &[("NO_COLOR", "1")], true),
            (ColorChoice::Never, true, &[("CLICOLOR_FORCE", "1")], false),
        ];
        for (choice, tty, vars, want) in cases {
            assert_eq!(colors(*choice, *tty, &env(vars)), *want, "{choice:?} tty={tty} {vars:?}");
        }
        let (sh, c) = Shell::capture(true, Verbosity::Normal);
        sh.warn("w");
        assert!(c.stderr().contains('\u{1b}'), "{:?}", c.stderr());
    }

    #[test]
    fn nothing_on_stderr_shows_a_registered_credential() {
        crate::redact::secret("sk-shell-canary-0123456789");
        let (sh, c) = Shell::capture(false, Verbosity::Normal);
        sh.warn("the key sk-shell-canary-0123456789 was refused");
        sh.status("Retrying", "GET /x?key=sk-shell-canary-0123456789");
        sh.err_text("sk-shell-canary-0123456789");
        assert!(!c.stderr().contains("sk-shell-canary-0123456789"), "{}", c.stderr());
        assert!(c.stderr().contains("<redacted>"));
    }

    #[test]
    fn print_json_is_pretty_with_a_final_line_break() {
        let (sh, c) = Shell::capture(false, Verbosity::Quiet);
        sh.print_json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(c.stdout(), "{\n  \"a\": 1\n}\n");
    }

    /// A reader that went away: every write fails as a closed pipe does.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_ends_the_command_quietly() {
        let sh = Shell::with_writers(Box::new(Closed), Box::new(Closed), false, Verbosity::Normal);
        let e = sh.println("x").unwrap_err();
        assert_eq!(e.kind, Kind::BrokenPipe);
        assert_eq!(e.exit_code(), crate::cli::error::exit::SIGPIPE);
        // stderr closed too: nothing to say, and no panic.
        sh.warn("w");
        sh.error(&e, &Default::default());
    }
}
