//! Why a step did not finish, as data: what failed (the [`Failure`], whose `source()` chain
//! the CLI prints as "caused by"), whether `apply --resume` can retry it, and what to do next
//! ([`Next`]). The executor never words a hint: the CLI turns `resumable` and `next` into
//! hints that name the run's own flags.

use crate::chain::ChainError;
use crate::envcrypt::CryptError;
use crate::model::Address;
use crate::providers::ApiError;
use crate::state::StateError;

use super::wait::WaitError;

/// A step's failure. `Display` is the top line (the context, else the failure); `source()`
/// walks down from there.
#[derive(Debug)]
pub struct StepError {
    /// What the step was doing, when the failure alone does not say it (e.g. "the API no
    /// longer holds this update (expired)"); the failure is then its source.
    pub context: Option<String>,
    pub failure: Failure,
    /// The update stays paused in the journal: `apply --resume` retries it.
    pub resumable: bool,
    /// What the user should do next, beyond what the failure's own kind suggests.
    pub next: Vec<Next>,
}

/// What went wrong in a step, by where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A Phala Cloud API call failed (its kind says whether the API acted).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// State could not record what the step did.
    #[error("cannot write state")]
    StateWrite(#[source] StateError),
    #[error("cannot read state")]
    StateRead(#[source] StateError),
    /// A JSON-RPC call to the chain failed, or a transaction did not do what it had to.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The CVM did not get where the step was taking it.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// The env to send could not be made.
    #[error("env {key}")]
    Env {
        key: String,
        #[source]
        problem: EnvProblem,
    },
    /// A created CVM failed to boot; it is tainted (`again`: a replacement failed too, so it
    /// is not replaced again until the manifest changes it).
    #[error("{}", boot_failed(reason, *again, logs))]
    BootFailed { reason: String, again: bool, logs: String },
    /// The manifest, the plan or the API's answer does not allow the step (an unknown node,
    /// a chain the manifest does not name, a transaction that registers another hash, …);
    /// the message says what. Nothing was sent for the step's next request.
    #[error("{0}")]
    Refused(String),
    /// The CVM runs, but its attestation does not prove it runs what was applied (the
    /// message names the field that differs); it is marked `unverified` in state.
    #[error("the attestation does not match what was applied: {0}")]
    Unverified(String),
    /// The CVM runs, but its `health:` check did not pass (the message says how): a roll
    /// pauses here.
    #[error("{0}")]
    Unhealthy(String),
    /// A bug in teeform (a plan without ids, a task that panicked).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the env to send could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EnvProblem {
    #[error(transparent)]
    Unresolved(#[from] Unresolved),
    #[error("no value")]
    NoValue,
    #[error("the secret changed since the plan was made; run plan again")]
    SecretChanged,
    /// The plan's digest was made with a passphrase this run does not have.
    #[error(
        "the plan's digest was made with {made}, and this run has {now}; apply with the passphrase the plan was made with, or plan again"
    )]
    SecretsKeyChanged { made: String, now: String },
    #[error("cannot encrypt it")]
    Encrypt(#[source] CryptError),
}

/// A template whose references have no value yet (e.g. a CVM not created).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve {}", .refs.join(", "))]
pub struct Unresolved {
    /// The references, as written (`cvm.db.app_id`).
    pub refs: Vec<String>,
}

/// A next step the CLI words as a hint (with the run's flags where it names a command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The CVM was created but state may have lost it: `teeform import ADDRESS ID`.
    Import { address: Address, id: String, name: String },
    /// Whether the CVM runs is not known yet; the next plan shows it.
    PlanShows,
    /// Run `teeform apply` again: it sends the update afresh.
    ApplyAgain,
    /// The CVM's boot log (a `phala` command).
    BootLog(String),
}

fn boot_failed(reason: &str, again: bool, logs: &str) -> String {
    if again {
        format!(
            "its boot failed again ({reason}); teeform does not replace it again until the manifest changes it. Boot log: `{logs}`"
        )
    } else {
        format!(
            "its boot failed ({reason}); the CVM is tainted and the next apply replaces it once. Boot log: `{logs}`"
        )
    }
}

impl StepError {
    pub fn new(failure: impl Into<Failure>) -> StepError {
        StepError { context: None, failure: failure.into(), resumable: false, next: vec![] }
    }

    pub fn refused(message: impl Into<String>) -> StepError {
        StepError::new(Failure::Refused(message.into()))
    }

    pub fn internal(message: impl Into<String>) -> StepError {
        StepError::new(Failure::Internal(message.into()))
    }

    pub fn state_write(e: StateError) -> StepError {
        StepError::new(Failure::StateWrite(e))
    }

    pub fn state_read(e: StateError) -> StepError {
        StepError::new(Failure::StateRead(e))
    }

    pub fn env(key: &str, problem: impl Into<EnvProblem>) -> StepError {
        StepError::new(Failure::Env { key: key.to_string(), problem: problem.into() })
    }

    /// Puts `context` on top: it becomes the message, the failure its cause.
    pub fn context(mut self, context: impl Into<String>) -> StepError {
        self.context = Some(match self.context.take() {
            // Two contexts: the outer one first, as a chain reads.
            Some(inner) => format!("{}: {inner}", context.into()),
            None => context.into(),
        });
        self
    }

    /// Marks the failure as leaving the update paused, for `apply --resume` to retry.
    pub fn resumable(mut self) -> StepError {
        self.resumable = true;
        self
    }

    pub fn then(mut self, next: Next) -> StepError {
        self.next.push(next);
        self
    }

    /// The API error at the bottom of this failure, if it is one.
    pub fn api(&self) -> Option<&ApiError> {
        match &self.failure {
            Failure::Api(e) => Some(e),
            Failure::Wait(WaitError::Api(e)) => Some(e),
            _ => None,
        }
    }

    /// The whole chain on one line (`context: failure: cause …`), for progress lines.
    pub fn one_line(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            out.push_str(": ");
            out.push_str(&e.to_string());
            next = e.source();
        }
        out
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.context {
            Some(c) => f.write_str(c),
            None => self.failure.fmt(f),
        }
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.context {
            Some(_) => Some(&self.failure),
            None => self.failure.source(),
        }
    }
}

macro_rules! step_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StepError {
            fn from(e: $t) -> StepError {
                StepError::new(e)
            }
        }
    )*};
}
step_error_from!(Failure, ApiError, ChainError, WaitError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorKind;

    #[test]
    fn a_step_error_reads_as_a_chain() {
        let api = ApiError::local(ErrorKind::Network, "GET", "/cvms/1", "connection reset");
        let e = StepError::new(api.clone());
        assert_eq!(e.to_string(), api.to_string());
        assert!(std::error::Error::source(&e).is_none());
        assert!(e.api().is_some());

        let e = StepError::new(api.clone()).context("the API no longer holds this update (expired)");
        assert_eq!(e.one_line(), format!("the API no longer holds this update (expired): {api}"));

        let state = StateError::Storage("disk full".into());
        let e = StepError::state_write(state);
        assert_eq!(e.one_line(), "cannot write state: state storage error: disk full");

        let e = StepError::env("DB", EnvProblem::SecretChanged);
        assert_eq!(e.one_line(), "env DB: the secret changed since the plan was made; run plan again");
        let e = StepError::env("DB", Unresolved { refs: vec!["cvm.db.app_id".into()] });
        assert_eq!(e.one_line(), "env DB: cannot resolve cvm.db.app_id");
    }
}
