//! The one error type commands return, and how it is shown. This file decides which module
//! errors are the user's to fix and which hints go with them.

use crate::manifest::{Diagnostic, ManifestError};
use crate::providers::ApiError;
use crate::state::StateError;

/// Exit codes (the CLI contract): 0 ok / no changes, 1 error, 2 changes present (with
/// `--detailed-exitcode`), 3 paused awaiting on-chain registration.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const CHANGES: u8 = 2;
    pub const PAUSED: u8 = 3;
}

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hints: Vec<String>,
    /// Manifest diagnostics, rendered with snippets.
    pub diagnostics: Vec<Diagnostic>,
    pub code: u8,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), hints: vec![], diagnostics: vec![], code: exit::ERROR }
    }

    pub fn hint(mut self, h: impl Into<String>) -> CliError {
        self.hints.push(h.into());
        self
    }

    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render(color));
            out.push_str("\n\n");
        }
        let p = crate::plan::render::Palette::new(color);
        if !self.message.is_empty() {
            out.push_str(&format!("{} {}\n", p.red("error:"), self.message));
        }
        for h in &self.hints {
            out.push_str(&format!("{} {h}\n", p.cyan("hint:")));
        }
        // Whatever a message quotes (a server's error body, a library's error text), no
        // registered credential is shown.
        crate::redact::text(&out).into_owned()
    }
}

impl From<ManifestError> for CliError {
    fn from(e: ManifestError) -> Self {
        let n = e.diagnostics.iter().filter(|d| d.is_error()).count();
        CliError {
            message: format!("the manifest has {n} error{}; nothing was changed", if n == 1 { "" } else { "s" }),
            hints: vec![],
            diagnostics: e.diagnostics,
            code: exit::ERROR,
        }
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
                    c.hints.push(format!("if that process is gone for good, run `teeform force-unlock {}`", h.id));
                }
            }
            StateError::Corrupt { .. } => {
                c.hints.push("the state was not changed; report this with the state directory attached".into())
            }
            StateError::Damaged { backup, .. } => {
                c.hints.push("nothing was changed; teeform will not work on a state that lost or changed records".into());
                match backup {
                    Some(b) => c.hints.push(format!(
                        "`teeform state recover` puts back the last whole copy, {} (taken {}, serial {}, {} resource(s)), and sets the damaged records aside; CVMs created after it are then offered for `teeform import` by the next plan",
                        b.path, b.written_at, b.serial, b.resources
                    )),
                    None => c.hints.push(
                        "there is no whole backup to recover from; `teeform import` adds CVMs a kept state lacks".into(),
                    ),
                }
                c.hints.push("if you restored the state yourself (its directory, or its PostgreSQL tables) and know it is complete: `teeform state recover --keep-current`".into());
            }
            StateError::Vanished { .. } => c.hints.push(
                "restore the state directory (or its backup.json with `teeform state recover`), then run `teeform plan`: CVMs this run created are offered for `teeform import`".into(),
            ),
            StateError::TooNew { .. } => c.hints.push("upgrade teeform to work on this state; nothing was changed".into()),
            _ => {}
        }
        c
    }
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        let mut c = CliError::new(format!("Phala Cloud API error: {e}"));
        c.hints.extend(e.suggestions.iter().cloned());
        c.hints.extend(e.advice().map(str::to_string));
        c
    }
}

impl From<crate::graph::CycleError> for CliError {
    fn from(e: crate::graph::CycleError) -> Self {
        CliError::new(e.to_string())
            .hint("each arrow reads \"depends on\"; remove one `depends_on` or reference to break the cycle")
    }
}

impl From<crate::plan::PlanError> for CliError {
    fn from(e: crate::plan::PlanError) -> Self {
        match e {
            crate::plan::PlanError::Cycle(c) => c.into(),
        }
    }
}

impl From<crate::apply::ApplyError> for CliError {
    fn from(e: crate::apply::ApplyError) -> Self {
        match e {
            crate::apply::ApplyError::State(s) => s.into(),
        }
    }
}

impl From<crate::apply::ReconcileError> for CliError {
    fn from(e: crate::apply::ReconcileError) -> Self {
        CliError::new(e.to_string())
            .hint("interrupted operations are checked before anything else; nothing was changed")
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(e.to_string())
    }
}

pub type CliResult<T = u8> = Result<T, CliError>;
