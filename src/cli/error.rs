//! The one error type commands return, and how it is shown.
//!
//! A [`CliError`] has a [`Kind`] (which picks the exit code and the heading), a message, the
//! causes below it (walked from `source()`, printed as numbered "caused by" lines), hints,
//! and, for manifest problems, diagnostics with snippets. Every `From<ModuleError>` lives in
//! this file: it decides whether an error is the user's to fix or teeform's, and which hints
//! go with it. A hint that names a command to run is a [`Hint::run`]: it is written with the
//! run's own global flags (`-C`, `-f`, `--state`, `--backend`, `--workspace`) when shown.
//!
//! ```text
//! error: cannot refresh cvm.web
//! caused by:
//!   1: cannot reach the Phala Cloud API
//!   2: GET /cvms/…: no response: cannot connect to …
//! hint: check the provider's endpoint and your network
//! ```
//!
//! Every rendered error passes through [`crate::redact`].

use std::error::Error as StdError;

use crate::apply::{ApplyError, Next, ReconcileError, StepError};
use crate::chain::ChainError;
use crate::datasources::{self, CatalogError, select::SelectError};
use crate::graph::CycleError;
use crate::lockfile::LockError;
use crate::manifest::data::DataKind;
use crate::manifest::{Diagnostic, ManifestError};
use crate::model::{Address, MoveError};
use crate::plan::PlanError;
use crate::providers::{ApiError, ErrorKind};
use crate::state::{MigrateError, StateError};
use crate::style::Palette;

use super::context::CommandLine;

/// Exit codes of commands that succeed (the CLI contract): 0 ok / no changes, 2 changes
/// present (with `--detailed-exitcode`), 3 paused awaiting on-chain registration. An error's
/// code comes from its [`Kind`].
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const CHANGES: u8 = 2;
    pub const PAUSED: u8 = 3;
    /// 128 + SIGINT.
    pub const SIGINT: u8 = 130;
    /// 128 + SIGPIPE: what a shell reports for a process a closed pipe ended.
    pub const SIGPIPE: u8 = 141;
    /// 128 + SIGTERM.
    pub const SIGTERM: u8 = 143;
}

/// What kind of failure ended the command: it picks the exit code and the heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something the user can fix: the manifest, the environment, the state, the cloud's
    /// answer. Exit 1, `error:`.
    User,
    /// A bug in teeform. Exit 1, `internal error:`, and a hint to report it.
    Internal,
    /// stdout was closed by its reader (`teeform show --json | head -1`): nothing more can be
    /// said. Exit 141 (as for a process SIGPIPE ended), and nothing is printed.
    BrokenPipe,
    /// SIGINT or SIGTERM ended the run: 130 or 143. The message is printed without heading.
    Interrupted(Signal),
}

/// The signals that end teeform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::User | Kind::Internal => exit::ERROR,
            Kind::BrokenPipe => exit::SIGPIPE,
            Kind::Interrupted(Signal::Int) => exit::SIGINT,
            Kind::Interrupted(Signal::Term) => exit::SIGTERM,
        }
    }
}

/// What the user can do next. A hint naming a teeform command is written with the run's
/// global flags when shown, so the command works on the same manifest, state and workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    Text(String),
    /// `{before}`teeform … {command}`{after}`.
    Run {
        before: String,
        command: String,
        after: String,
    },
}

impl Hint {
    /// A hint around a command: `Hint::run("run ", "force-unlock ID", " once it is gone")`.
    pub fn run(before: impl Into<String>, command: impl Into<String>, after: impl Into<String>) -> Hint {
        Hint::Run { before: before.into(), command: command.into(), after: after.into() }
    }

    pub fn render(&self, cmd: &CommandLine) -> String {
        match self {
            Hint::Text(t) => t.clone(),
            Hint::Run { before, command, after } => format!("{before}`{}`{after}", cmd.command(command)),
        }
    }
}

impl From<String> for Hint {
    fn from(s: String) -> Hint {
        Hint::Text(s)
    }
}

impl From<&str> for Hint {
    fn from(s: &str) -> Hint {
        Hint::Text(s.to_string())
    }
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
    /// Messages this error had before [`CliError::context`] put another on top, newest
    /// first: the first causes shown.
    below: Vec<String>,
    /// The module error, whose `source()` chain gives the remaining causes.
    source: Option<Source>,
    pub hints: Vec<Hint>,
    /// Manifest diagnostics, rendered with snippets before the message.
    pub diagnostics: Vec<Diagnostic>,
}

impl CliError {
    /// An error the user can fix, with nothing below it.
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            kind: Kind::User,
            message: message.into(),
            below: vec![],
            source: None,
            hints: vec![],
            diagnostics: vec![],
        }
    }

    /// An error the user can fix, caused by `source` (shown as "caused by").
    pub fn with_source(message: impl Into<String>, source: impl Into<Source>) -> CliError {
        CliError { source: Some(source.into()), ..CliError::new(message) }
    }

    /// A bug in teeform.
    pub fn internal(message: impl Into<String>) -> CliError {
        CliError { kind: Kind::Internal, ..CliError::new(message) }
    }

    pub fn broken_pipe() -> CliError {
        CliError { kind: Kind::BrokenPipe, ..CliError::new("") }
    }

    pub fn interrupted(signal: Signal, message: impl Into<String>) -> CliError {
        CliError { kind: Kind::Interrupted(signal), ..CliError::new(message) }
    }

    pub fn hint(mut self, h: impl Into<Hint>) -> CliError {
        self.hints.push(h.into());
        self
    }

    /// Puts `message` on top: what the command was doing. The message so far becomes the
    /// first cause.
    pub fn context(mut self, message: impl Into<String>) -> CliError {
        let old = std::mem::replace(&mut self.message, message.into());
        if !old.is_empty() {
            self.below.insert(0, old);
        }
        self
    }

    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// The causes under the message, top down.
    pub fn causes(&self) -> Vec<String> {
        let mut out = self.below.clone();
        let mut next: Option<&(dyn StdError + 'static)> = self.source.as_deref().map(|s| s as _);
        while let Some(e) = next {
            let text = e.to_string();
            // A wrapper that shows its source's text adds nothing to the chain.
            if out.last() != Some(&text) && text != self.message {
                out.push(text);
            }
            next = e.source();
        }
        out
    }

    /// The error as shown on stderr: diagnostics, `error: message`, numbered causes, hints;
    /// with no registered credential anywhere in it.
    pub fn render(&self, p: &Palette, cmd: &CommandLine) -> String {
        let mut out = String::new();
        if self.kind == Kind::BrokenPipe {
            return out;
        }
        for d in &self.diagnostics {
            out.push_str(&d.render(p.is_color()));
            out.push_str("\n\n");
        }
        if !self.message.is_empty() {
            let heading = match self.kind {
                Kind::User => Some(p.red("error:")),
                Kind::Internal => Some(p.red("internal error:")),
                Kind::Interrupted(_) | Kind::BrokenPipe => None,
            };
            match heading {
                Some(h) => out.push_str(&format!("{h} {}\n", self.message)),
                None => out.push_str(&format!("{}\n", self.message)),
            }
        }
        let causes = self.causes();
        if !causes.is_empty() {
            out.push_str("caused by:\n");
            for (i, c) in causes.iter().enumerate() {
                // Continuation lines of a cause line up under its text.
                let text = c.replace('\n', "\n     ");
                out.push_str(&format!("  {}: {text}\n", i + 1));
            }
        }
        for h in &self.hints {
            out.push_str(&format!("{} {}\n", p.cyan("hint:"), h.render(cmd)));
        }
        if self.kind == Kind::Internal {
            out.push_str(&format!(
                "{} this is a bug in teeform; please report it with the command you ran\n",
                p.cyan("hint:")
            ));
        }
        // Whatever a message quotes (a server's error body, a library's error text), no
        // registered credential is shown.
        crate::redact::text(&out).into_owned()
    }
}

pub type CliResult<T = u8> = Result<T, CliError>;

// ----- module errors -----------------------------------------------------------------------

impl From<ManifestError> for CliError {
    fn from(e: ManifestError) -> Self {
        let n = e.diagnostics.iter().filter(|d| d.is_error()).count();
        let mut c =
            CliError::new(format!("the manifest has {n} error{}; nothing was changed", if n == 1 { "" } else { "s" }));
        c.diagnostics = e.diagnostics;
        c
    }
}

impl From<StateError> for CliError {
    fn from(e: StateError) -> Self {
        let mut c = CliError::new(e.to_string());
        match &e {
            StateError::Locked { holder, .. } => {
                c.hints.push(
                    "another teeform command is using this state; wait for it, or pass --lock-timeout 60s to wait"
                        .into(),
                );
                if let Some(h) = holder {
                    c.hints.push(Hint::run(
                        "if that process is gone for good, run ",
                        format!("force-unlock {}", h.id),
                        "",
                    ));
                }
            }
            StateError::Corrupt { .. } => {
                c.hints.push("the state was not changed; report this with the state directory attached".into())
            }
            StateError::Damaged { backup, .. } => {
                c.hints
                    .push("nothing was changed; teeform will not work on a state that lost or changed records".into());
                match backup {
                    Some(b) => c.hints.push(Hint::run(
                        "",
                        "state recover",
                        format!(
                            " puts back the last whole copy, {} (taken {}, serial {}, {} resource(s)), and sets the damaged records aside; CVMs created after it are then offered for `teeform import` by the next plan",
                            b.path, b.written_at, b.serial, b.resources
                        ),
                    )),
                    None => c.hints.push(
                        "there is no whole backup to recover from; `teeform import` adds CVMs a kept state lacks".into(),
                    ),
                }
                c.hints.push(Hint::run(
                    "if you restored the state yourself (its directory, or its PostgreSQL tables) and know it is complete: ",
                    "state recover --keep-current",
                    "",
                ));
            }
            StateError::Vanished { .. } => c.hints.push(Hint::run(
                "restore the state directory (or its backup.json with `teeform state recover`), then run ",
                "plan",
                ": CVMs this run created are offered for `teeform import`",
            )),
            StateError::TooNew { .. } => {
                c.hints.push("upgrade teeform to work on this state; nothing was changed".into())
            }
            StateError::Storage(_) | StateError::NoSuchLock(_) => {}
        }
        c
    }
}

/// The headline of a Phala Cloud API failure, by its kind; the request and the API's own
/// words are the cause below it.
fn api_headline(e: &ApiError) -> &'static str {
    match e.kind {
        ErrorKind::Unauthenticated => "the Phala Cloud API did not accept the credentials",
        ErrorKind::Forbidden => "the Phala Cloud API refused access",
        ErrorKind::Network | ErrorKind::Timeout => "cannot reach the Phala Cloud API",
        ErrorKind::Server => "the Phala Cloud API failed",
        ErrorKind::RateLimited => "the Phala Cloud API is throttling requests",
        ErrorKind::InvalidResponse => "the Phala Cloud API answered with something teeform cannot use",
        ErrorKind::NotFound
        | ErrorKind::Validation
        | ErrorKind::Conflict
        | ErrorKind::HashRequired
        | ErrorKind::HashExpired
        | ErrorKind::TxVerificationFailed
        | ErrorKind::HashNotOnChain => "the Phala Cloud API refused the request",
        ErrorKind::Other => "a Phala Cloud API request failed",
    }
}

/// The API's own suggestions and what the client knows (e.g. where the key came from).
fn api_hints(e: &ApiError) -> Vec<Hint> {
    let mut out: Vec<Hint> = e.suggestions.iter().cloned().map(Hint::Text).collect();
    out.extend(e.advice().map(Hint::from));
    out
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        let hints = api_hints(&e);
        let mut c = CliError::with_source(api_headline(&e), e);
        c.hints = hints;
        c
    }
}

impl From<CycleError> for CliError {
    fn from(e: CycleError) -> Self {
        CliError::new(e.to_string())
            .hint("each arrow reads \"depends on\"; remove one `depends_on` or reference to break the cycle")
    }
}

/// A `moved:` entry or a `state mv` that cannot be carried out as written.
impl From<MoveError> for CliError {
    fn from(e: MoveError) -> Self {
        let c = CliError::new(format!("{e}; nothing was changed"));
        match e {
            MoveError::Taken { from, held, .. } => c.hint(Hint::run(
                format!("if {held} is the CVM that was at {from}, drop the move; otherwise "),
                format!("state rm {held}"),
                " forgets the CVM state holds there (the CVM itself is left alone)",
            )),
            MoveError::Ambiguous { to, instances, .. } => c.hint(format!(
                "move the whole CVM to {} (each instance keeps its index), or one instance at a time ({} to {to})",
                to.entry(),
                instances[0]
            )),
            MoveError::NotAnInstance { to, replicas, .. } if replicas <= 1 => {
                c.hint(format!("move it to `{}`, the one CVM it is", to.entry()))
            }
            MoveError::NotAnInstance { to, replicas, .. } => c.hint(format!(
                "its instances are {} through {}",
                Address::instance(to.key(), 0),
                Address::instance(to.key(), replicas - 1),
            )),
            MoveError::Collision { .. } => {
                c.hint("each CVM in state moves to an address of its own: name the instances one by one")
            }
        }
    }
}

impl From<PlanError> for CliError {
    fn from(e: PlanError) -> Self {
        let message = format!("{e}; nothing was changed");
        match e {
            PlanError::Cycle(c) => c.into(),
            PlanError::UnknownAddress { address, known, .. } => {
                let hint = match crate::manifest::diag::did_you_mean(address.as_str(), known.iter().map(Address::as_str)) {
                    Some(s) => Hint::Text(format!("did you mean `{s}`?")),
                    None => Hint::run("", "state list", " lists the CVMs in state; the manifest declares the rest"),
                };
                CliError::new(message).hint(hint)
            }
            PlanError::NotReplaceable { .. } => CliError::new(message),
            PlanError::Move(m) => m.into(),
            PlanError::PreventDestroy { blocked } => {
                let mut c = CliError::new(message);
                for (address, action) in blocked.iter().skip(1) {
                    let what = if *action == crate::plan::Action::Replace { "replace" } else { "destroy" };
                    c = c.hint(format!("the plan would also {what} {address}, which is protected too"));
                }
                c.hint("a replacement gives a CVM a new app id, new keys and an empty disk; `prevent_destroy` refuses that")
                    .hint("to go ahead, set `lifecycle: {prevent_destroy: false}` on the CVM in the manifest and apply that first (for a CVM gone from the manifest, put it back that way)")
                    .hint(Hint::run("", "state rm ADDRESS", " forgets a CVM without destroying it"))
            }
            PlanError::NameCycle { .. } => CliError::new(message)
                .hint("CVM names must differ at every moment: rename one of them to a free name first and apply, then give it the name it should have"),
        }
    }
}

impl From<ApplyError> for CliError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::State(s) => s.into(),
        }
    }
}

impl From<ReconcileError> for CliError {
    fn from(e: ReconcileError) -> Self {
        let mut c = match e {
            ReconcileError::State(s) => s.into(),
            ReconcileError::Api { address, source } => {
                let hints = api_hints(&source);
                let mut c = CliError::with_source(api_headline(&source), source)
                    .context(format!("cannot check an interrupted operation on {address}"));
                c.hints = hints;
                c
            }
        };
        c.hints.push("interrupted operations are checked before anything else; nothing was changed".into());
        c
    }
}

impl From<MigrateError> for CliError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::State(s) => s.into(),
            other => CliError::new(other.to_string()).hint(Hint::run(
                "",
                "--backend KIND show",
                " shows what a backend holds; the source was not changed",
            )),
        }
    }
}

impl From<LockError> for CliError {
    fn from(e: LockError) -> Self {
        let hint = match &e {
            LockError::Read { .. } | LockError::Parse { .. } | LockError::Version { .. } => {
                Some(Hint::run("fix or delete the lock file; ", "images upgrade", " writes a new one"))
            }
            LockError::Write { .. } => None,
        };
        let c = CliError::new(e.to_string());
        match hint {
            Some(h) => c.hint(h),
            None => c,
        }
    }
}

/// A catalog of `kind` that could not be listed (`images list`): the client's setup, or the
/// API's answer, with what to check for that catalog.
pub fn catalog(kind: DataKind, e: CatalogError) -> CliError {
    let what = format!("cannot list {} images", kind.service());
    let (mut c, hints) = match e {
        CatalogError::Setup { message, hints } => (CliError::new(format!("{what}: {message}")), hints),
        CatalogError::Api(a) => {
            let hints = datasources::api_hints(kind, &a);
            (CliError::with_source(what, a), hints)
        }
    };
    c.hints = hints.into_iter().map(Hint::Text).collect();
    c
}

/// `images list --exactly-one` found none, or several.
impl From<SelectError> for CliError {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::NoMatch => CliError::new("no image matches"),
            SelectError::Ambiguous(c) | SelectError::Tie(c) => {
                let mut err = CliError::new(format!("{} images match, --exactly-one needs one", c.len()));
                err.hints.extend(c.iter().map(|c| Hint::Text(format!("candidate: {}", c.describe()))));
                err
            }
        }
    }
}

/// A signing key or RPC URL from the environment that cannot be used.
impl From<ChainError> for CliError {
    fn from(e: ChainError) -> Self {
        let hint = match &e {
            ChainError::BadKey(var) => Some(format!("unset {var} to pause for registration outside teeform")),
            _ => None,
        };
        let c = CliError::new(e.to_string());
        match hint {
            Some(h) => c.hint(h),
            None => c,
        }
    }
}

/// An I/O error the caller gave no context. (A closed stdout is not one of these: only
/// [`super::shell::Shell`] knows a write went to stdout, and says so with
/// [`CliError::broken_pipe`]; a broken pipe anywhere else is an error like any other.)
impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(crate::state::io_reason(&e))
    }
}

impl From<tokio::task::JoinError> for CliError {
    fn from(e: tokio::task::JoinError) -> Self {
        CliError::internal(format!("a task ended abnormally: {e}"))
    }
}

impl From<serde_json::Error> for CliError {
    /// Only teeform's own values are encoded through here: failing is a bug.
    fn from(e: serde_json::Error) -> Self {
        CliError::internal(format!("cannot encode JSON: {e}"))
    }
}

// ----- apply steps -------------------------------------------------------------------------

/// What to do about a failed apply step: the API's own suggestions, whether the update
/// stays paused, and the step's next steps.
pub fn step_hints(e: &StepError) -> Vec<Hint> {
    let mut hints = e.api().map(api_hints).unwrap_or_default();
    if e.resumable {
        hints.push(Hint::run("the update stays paused: ", "apply --resume", " retries"));
    }
    for n in &e.next {
        hints.push(match n {
            Next::Import { address, id, name } => Hint::run(
                format!("CVM {id} (`{name}`) was created; if state lost it, "),
                format!("import {address} {id}"),
                " takes it back",
            ),
            Next::PlanShows => "the next plan shows whether it runs".into(),
            Next::ApplyAgain => Hint::run("", "apply", " sends it again"),
            Next::BootLog(cmd) => format!("its boot log: `{cmd}`").into(),
        });
    }
    hints
}

/// "… did not finish": one line per failed step under the message, and each step's hints
/// prefixed with its address.
pub fn steps_failed<'a>(message: String, failed: impl IntoIterator<Item = (&'a Address, &'a StepError)>) -> CliError {
    let mut lines = vec![message];
    let mut hints = Vec::new();
    for (address, e) in failed {
        lines.push(format!("  {address}: {}", e.one_line()));
        hints.extend(step_hints(e).into_iter().map(|h| match h {
            Hint::Text(t) => Hint::Text(format!("{address}: {t}")),
            Hint::Run { before, command, after } => {
                Hint::Run { before: format!("{address}: {before}"), command, after }
            }
        }));
    }
    let mut c = CliError::new(lines.join("\n"));
    c.hints = hints;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LockInfo;

    fn shown(e: &CliError) -> String {
        e.render(&Palette::plain(), &CommandLine::default())
    }

    #[test]
    fn message_then_numbered_causes_then_hints() {
        let api = ApiError::local(ErrorKind::Network, "GET", "/cvms/1", "connection reset");
        let e = CliError::from(api).context("cannot refresh cvm.web").hint("refreshing cvm.web failed");
        assert_eq!(
            shown(&e),
            "error: cannot refresh cvm.web\ncaused by:\n  1: cannot reach the Phala Cloud API\n  2: GET /cvms/1: no response: connection reset\nhint: check the provider's endpoint and your network\nhint: refreshing cvm.web failed\n"
        );
        assert_eq!(e.exit_code(), exit::ERROR);
    }

    #[test]
    fn a_chain_is_walked_from_source_without_repeating_a_transparent_wrapper() {
        let e = CliError::from(ReconcileError::Api {
            address: "cvm.a".into(),
            source: ApiError::local(ErrorKind::Timeout, "GET", "/cvms/app_1", "timed out"),
        });
        let text = shown(&e);
        assert!(text.starts_with("error: cannot check an interrupted operation on cvm.a\ncaused by:\n  1: cannot reach the Phala Cloud API\n  2: GET /cvms/app_1: no response: timed out\n"), "{text}");
        assert!(text.ends_with("hint: interrupted operations are checked before anything else; nothing was changed\n"));
    }

    #[test]
    fn the_kind_picks_the_exit_code_and_the_heading() {
        let cases = [
            (CliError::new("x"), exit::ERROR, "error: x\n"),
            (CliError::internal("x"), exit::ERROR, "internal error: x\n"),
            (CliError::broken_pipe(), exit::SIGPIPE, ""),
            (CliError::interrupted(Signal::Int, "interrupt received"), exit::SIGINT, "interrupt received\n"),
            (CliError::interrupted(Signal::Term, "termination requested"), exit::SIGTERM, "termination requested\n"),
        ];
        for (e, code, starts) in cases {
            assert_eq!(e.exit_code(), code, "{e:?}");
            assert!(shown(&e).starts_with(starts), "{:?}", shown(&e));
        }
        // Only the shell knows a write went to stdout: a broken pipe elsewhere is an error.
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(CliError::from(pipe).kind, Kind::User);
    }

    #[test]
    fn hints_name_the_runs_flags() {
        let e = CliError::from(StateError::Locked {
            path: "st".into(),
            holder: Some(LockInfo { id: "L1".into(), ..LockInfo::for_command("apply") }),
        });
        let cmd = CommandLine { flags: vec!["-f".into(), "staging.yaml".into()] };
        let text = e.render(&Palette::plain(), &cmd);
        assert!(
            text.contains("hint: if that process is gone for good, run `teeform -f staging.yaml force-unlock L1`"),
            "{text}"
        );
    }

    #[test]
    fn step_failures_are_listed_with_their_hints() {
        let resumable = StepError::new(ApiError::local(ErrorKind::Network, "PATCH", "/cvms/1", "reset")).resumable();
        let created = StepError::state_write(StateError::Storage("disk full".into())).then(Next::Import {
            address: "cvm.b".into(),
            id: "u2".into(),
            name: "bee".into(),
        });
        let (a, b) = (Address::cvm("a"), Address::cvm("b"));
        let e = steps_failed("apply did not finish".into(), [(&a, &resumable), (&b, &created)]);
        let text = shown(&e);
        assert!(text.starts_with("error: apply did not finish\n  cvm.a: PATCH /cvms/1: no response: reset\n  cvm.b: cannot write state: state storage error: disk full\n"), "{text}");
        assert!(text.contains("hint: cvm.a: the update stays paused: `teeform apply --resume` retries\n"), "{text}");
        assert!(
            text.contains(
                "hint: cvm.b: CVM u2 (`bee`) was created; if state lost it, `teeform import cvm.b u2` takes it back\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn registered_credentials_never_show() {
        crate::redact::secret("sk-cli-error-canary-0123456789");
        let e =
            CliError::new("the server said sk-cli-error-canary-0123456789").hint("key sk-cli-error-canary-0123456789");
        let text = shown(&e);
        assert!(!text.contains("sk-cli-error-canary-0123456789"), "{text}");
    }
}
