//! The machine-readable event stream of `apply --json`, `destroy --json` and
//! `plan --json --stream`: one JSON object per line on stdout, as Terraform's machine-readable
//! UI writes them, so bots and dashboards can follow a run.
//!
//! Every line has `@level` (`info`, `warn`, `error`), `@message` (a sentence for people),
//! `@module` (`teeform.ui`), `@timestamp` (RFC 3339, seconds) and `type`, one of:
//!
//! - `version` — first: `{"teeform": "0.1.0", "ui": "1.0"}`.
//! - `planned_change` — one per step of the apply: `{"change": {"resource": {"addr": "cvm.web",
//!   "resource_key": "web"}, "action": "create|update|replace|delete", "restarts_cvm": bool}}`;
//!   the delete of a surge instance when its roll ends also has `"surge": true`.
//! - `change_summary` — after the planned changes (`"operation": "plan"`) and at the end of an
//!   apply (`"apply"`, `"destroy"`): `{"changes": {"add", "change", "remove", "restarts",
//!   "operation"}}`; an apply's also has `"outcome"`: `complete`, `paused` (exit 3),
//!   `failed`, `interrupted` or `attention` (a CVM needs a person), and counts what happened
//!   in the cloud rather than what was planned.
//! - `apply_start`, `apply_progress` (`"status"`: what the step is waiting for),
//!   `apply_complete` (`"id"`), `apply_errored`, `apply_skipped`, `apply_paused` (awaiting
//!   on-chain registration; `apply --resume` finishes it) — one step's life:
//!   `{"hook": {"resource", "action", "elapsed_seconds", ...}}`, the error or reason in
//!   `@message`.
//! - `outputs` — after a complete apply: `{"outputs": {"NAME": {"sensitive": bool, "value"}}}`
//!   (a sensitive value is `null`).
//! - `diagnostic` — the error that ended the run: `{"diagnostic": {"severity": "error",
//!   "summary", "detail"}}`.
//!
//! Fields are only ever added. Nothing secret is written: the plan holds no secret, and every
//! message passes through `redact`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::apply::{Events, StepResult};
use crate::cli::error::CliResult;
use crate::cli::shell::Shell;
use crate::plan::{Action, Plan};

/// The version of the stream's format.
pub const UI_VERSION: &str = "1.0";

pub struct Stream {
    shell: Shell,
    /// Each step's last status: `apply_progress` is written when it changes, not per poll.
    last_status: Mutex<HashMap<String, String>>,
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "delete",
    }
}

fn resource(address: &str) -> Value {
    let key = address.strip_prefix("cvm.").unwrap_or(address);
    json!({"addr": address, "resource_key": key})
}

impl Stream {
    /// A stream on `shell`'s stdout; everything else printed for stdout goes to stderr from
    /// now on. Writes the `version` line.
    pub fn start(shell: &Shell) -> CliResult<Stream> {
        shell.reserve_stdout_for_events();
        let s = Stream { shell: shell.clone(), last_status: Mutex::default() };
        s.emit(
            "info",
            &format!("teeform {}", env!("CARGO_PKG_VERSION")),
            "version",
            json!({"teeform": env!("CARGO_PKG_VERSION"), "ui": UI_VERSION}),
        )?;
        Ok(s)
    }

    /// Writes one event: `fields` (an object) with the common keys.
    pub fn emit(&self, level: &str, message: &str, kind: &str, fields: Value) -> CliResult<()> {
        let mut line = serde_json::Map::new();
        line.insert("@level".into(), level.into());
        line.insert("@message".into(), crate::redact::text(message).into_owned().into());
        line.insert("@module".into(), "teeform.ui".into());
        line.insert("@timestamp".into(), crate::model::now_rfc3339().into());
        line.insert("type".into(), kind.into());
        if let Value::Object(m) = fields {
            line.extend(m);
        }
        self.shell.event_line(&Value::Object(line).to_string())
    }

    /// `planned_change` for each change, then the plan's `change_summary`.
    pub fn plan(&self, p: &Plan) -> CliResult<()> {
        for c in &p.changes {
            let action = action_name(c.action);
            self.emit(
                "info",
                &format!("{}: Plan to {action}", c.address),
                "planned_change",
                json!({"change": {"resource": resource(c.address.as_str()), "action": action, "restarts_cvm": c.restarts()}}),
            )?;
        }
        for a in p.surge_deletes() {
            self.emit(
                "info",
                &format!("{a}: Plan to delete (a surge instance, when its roll ends)"),
                "planned_change",
                json!({"change": {"resource": resource(a.as_str()), "action": "delete", "restarts_cvm": false, "surge": true}}),
            )?;
        }
        let (add, change, remove) = p.summary();
        let restarts = p.restarts();
        self.emit(
            "info",
            &format!("Plan: {add} to add, {change} to change, {remove} to destroy."),
            "change_summary",
            json!({"changes": {"add": add, "change": change, "remove": remove, "restarts": restarts, "operation": "plan"}}),
        )
    }

    /// The end of an apply: what happened in the cloud, and how the run ended.
    pub fn applied(&self, operation: &str, counts: (usize, usize, usize), outcome: &str) -> CliResult<()> {
        let (add, change, remove) = counts;
        let level = if outcome == "complete" { "info" } else { "warn" };
        let message = if operation == "destroy" {
            format!("Destroy {outcome}! Resources: {remove} destroyed.")
        } else {
            format!("Apply {outcome}! Resources: {add} added, {change} changed, {remove} destroyed.")
        };
        self.emit(
            level,
            &message,
            "change_summary",
            json!({"changes": {"add": add, "change": change, "remove": remove, "operation": operation, "outcome": outcome}}),
        )
    }

    /// The outputs state holds after a complete apply.
    pub fn outputs(&self, outputs: serde_json::Map<String, Value>) -> CliResult<()> {
        self.emit("info", &format!("Outputs: {}", outputs.len()), "outputs", json!({"outputs": outputs}))
    }

    /// The error that ended the run.
    pub fn diagnostic(&self, summary: &str, detail: &str) -> CliResult<()> {
        self.emit(
            "error",
            &format!("Error: {summary}"),
            "diagnostic",
            json!({"diagnostic": {"severity": "error", "summary": crate::redact::text(summary), "detail": crate::redact::text(detail)}}),
        )
    }

    fn hook(&self, level: &str, message: &str, kind: &str, address: &str, action: Action, extra: Value) {
        let mut hook = json!({"resource": resource(address), "action": action_name(action)});
        if let (Value::Object(h), Value::Object(e)) = (&mut hook, extra) {
            h.extend(e);
        }
        // A reader that went away is noticed by the next write of the command itself.
        let _ = self.emit(level, message, kind, json!({"hook": hook}));
    }
}

impl Events for Stream {
    fn started(&self, address: &str, action: Action) {
        let verb = match action {
            Action::Create => "Creating...",
            Action::Update => "Modifying...",
            Action::Replace => "Replacing...",
            Action::Delete => "Destroying...",
        };
        self.hook("info", &format!("{address}: {verb}"), "apply_start", address, action, json!({}));
    }

    fn status(&self, address: &str, message: &str) {
        let mut last = self.last_status.lock().expect("status lock");
        if last.get(address).is_some_and(|m| m == message) {
            return;
        }
        last.insert(address.to_string(), message.to_string());
        drop(last);
        // The action is not known here; Terraform's `apply_progress` carries it, so the
        // stream reads it from the start event: readers match on `resource.addr`.
        let hook = json!({"resource": resource(address), "status": message});
        let _ = self.emit("info", &format!("{address}: {message}"), "apply_progress", json!({"hook": hook}));
    }

    fn finished(&self, address: &str, action: Action, result: &StepResult, elapsed: Duration) {
        let secs = (elapsed.as_secs_f64() * 10.0).round() / 10.0;
        match result {
            StepResult::Done { id } => self.hook(
                "info",
                &format!("{address}: {} complete after {secs}s", action_name(action)),
                "apply_complete",
                address,
                action,
                json!({"id": id, "elapsed_seconds": secs}),
            ),
            StepResult::Failed(e) => self.hook(
                "error",
                &format!("{address}: {e}"),
                "apply_errored",
                address,
                action,
                json!({"elapsed_seconds": secs}),
            ),
            StepResult::Skipped(why) => {
                self.hook("warn", &format!("{address}: {why}"), "apply_skipped", address, action, json!({}))
            }
            StepResult::Paused(why) => self.hook(
                "warn",
                &format!("{address}: {why}"),
                "apply_paused",
                address,
                action,
                json!({"elapsed_seconds": secs}),
            ),
        }
    }
}
