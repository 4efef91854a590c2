//! Carrying out a plan (apply and destroy): confirmation, the executor with progress and
//! Ctrl-C handling, and the report of what happened in the cloud.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{onchain, verifying};
use crate::apply::{self, Executor, Report, StepResult, WaitOptions};
use crate::cli::context::{Api, Ctx};
use crate::cli::error::{CliError, CliResult, Hint, exit, steps_failed};
use crate::cli::shell::progress::Progress;
use crate::plan::{self, Mode, Plan};
use crate::secrets::{Digester, SecretValues};
use crate::state::Store;

/// Asks the question on the terminal; only `yes` goes on. Without a terminal (CI) an
/// error says to pass `--auto-approve`.
pub fn confirm(ctx: &Ctx, auto_approve: bool, question: &str) -> CliResult<()> {
    if auto_approve {
        return Ok(());
    }
    if ctx.stream.is_some() {
        return Err(CliError::new("--json does not ask for confirmation; nothing was changed")
            .hint("pass --auto-approve, or apply a plan saved with `plan --out FILE`"));
    }
    if !ctx.shell.stdin_is_tty() {
        return Err(CliError::new("confirmation is needed, but stdin is not a terminal; nothing was changed")
            .hint("pass --auto-approve to proceed without asking (as CI does)"));
    }
    ctx.shell.err_text(&format!("\n{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "));
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() == "yes" { Ok(()) } else { Err(CliError::new("cancelled; nothing was changed")) }
}

/// Refuses, before any cloud call, a plan that replaces CVMs nobody asked to replace (with
/// `--replace`) unless `--allow-replace` consented: each would get a new app id, new keys and
/// an empty disk. The message names the cause and the consequence.
pub fn consent(p: &Plan) -> CliResult<()> {
    let unasked: Vec<&plan::Change> = p.needs_consent().collect();
    let Some(first) = unasked.first() else {
        return Ok(());
    };
    let n = unasked.len();
    let more = if n > 1 { format!(" (and {} more)", n - 1) } else { String::new() };
    let mut e = CliError::new(format!(
        "this plan replaces {}{more}, which nobody asked to replace: {}, and {}; nothing was changed",
        first.address,
        plan::render::replacement_cause(first),
        plan::render::replacement_consequence(first)
    ));
    let all: Vec<&str> = unasked.iter().map(|c| c.address.as_str()).collect();
    let flags: Vec<String> = all.iter().map(|a| format!("--replace {a}")).collect();
    e = e
        .hint(Hint::run("to replace it anyway, name it: ", format!("apply {}", flags.join(" ")), ""))
        .hint("or pass --allow-replace to consent to every replacement in this plan")
        .hint("or change the manifest back so the CVM can be updated in place");
    Err(e)
}

/// How long to wait for a CVM to get where a step takes it (`TEEFORM_WAIT_TIMEOUT`), and how
/// (batch status polls unless `TEEFORM_PER_CVM_READS=1`).
pub fn wait_options(ctx: &Ctx) -> WaitOptions {
    let mut w = WaitOptions { batch: !ctx.settings.per_cvm_reads, ..WaitOptions::default() };
    if let Some(t) = ctx.settings.wait_timeout {
        w.timeout = t;
    }
    w
}

/// The error for CVMs needing attention that applying left as they were.
pub fn unresolved(p: &Plan) -> Option<CliError> {
    let left: Vec<&plan::Attention> = p.unresolved().collect();
    if left.is_empty() {
        return None;
    }
    let mut e = CliError::new(format!(
        "{} CVM{} need{} attention that applying cannot give (see the plan above)",
        left.len(),
        if left.len() == 1 { "" } else { "s" },
        if left.len() == 1 { "s" } else { "" }
    ));
    for a in left {
        let last = a.boot_errors.last().map(|b| format!(": {b}")).unwrap_or_default();
        e = e.hint(format!("{} (status {}){last}; its boot log: `{}`", a.address, a.status, a.logs));
    }
    Some(e)
}

/// Runs the executor with progress output and Ctrl-C handling, then reports.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    ctx: &Ctx,
    store: &Arc<dyn Store>,
    api: &Api,
    p: &Plan,
    secrets: SecretValues,
    digests: Arc<Digester>,
    parallelism: usize,
    onchain: Option<Arc<dyn apply::OnChain>>,
    verify: Option<Arc<crate::verify::Checker>>,
) -> CliResult {
    let cancel = CancellationToken::new();
    // SIGINT / SIGTERM now stop scheduling instead of the process (see `signals`).
    let graceful = crate::cli::signals::Graceful::new(&cancel);
    // The event stream when there is one, else the progress display for people.
    let (events, progress): (Arc<dyn apply::Events>, _) = match &ctx.stream {
        Some(s) => (s.clone(), None),
        None => {
            let progress = Arc::new(Progress::new(&ctx.shell, p.steps()));
            (progress.clone(), Some(progress))
        }
    };
    let exec = Executor {
        api: api.client.clone(),
        store: store.clone(),
        parallelism,
        events,
        cancel: cancel.clone(),
        wait: wait_options(ctx),
        secrets: Arc::new(secrets),
        digests,
        onchain,
        endpoint: api.endpoint.clone(),
        verify: verify.clone(),
    };
    let report = exec.run(p).await;
    crate::secrets::log_stats("applying");
    if let Some(progress) = &progress {
        progress.finish();
    }
    drop(graceful);
    let report = report?;
    // An interrupt that came once every step had finished stopped nothing.
    let interrupted = cancel.is_cancelled() && !report.all_done();
    let result = summarize(ctx, store.as_ref(), p, &report, interrupted, verify.as_deref()).await;
    if let Some(s) = &ctx.stream {
        let outcome = match &result {
            Ok(c) if *c == exit::OK => "complete",
            Ok(c) if *c == exit::PAUSED => "paused",
            _ if interrupted => "interrupted",
            _ if report.failed().next().is_some() || report.state_failed => "failed",
            _ => "attention",
        };
        let operation = if p.mode == Mode::Destroy { "destroy" } else { "apply" };
        s.applied(operation, report.counts(), outcome)?;
        if outcome == "complete" && p.mode != Mode::Destroy {
            let outputs = store.snapshot().await?.outputs;
            s.outputs(outputs.iter().map(|(k, o)| (k.clone(), super::records::output_json(o))).collect())?;
        }
    }
    result
}

/// What the run did, and its exit: 0 when everything is done, 3 when the only things left
/// are updates paused for on-chain registration, else an error listing what failed.
async fn summarize(
    ctx: &Ctx,
    store: &dyn Store,
    p: &Plan,
    report: &Report,
    interrupted: bool,
    verify: Option<&crate::verify::Checker>,
) -> CliResult {
    // What happened in the cloud, finished or not: a replacement whose new CVM failed to boot
    // still destroyed one CVM and added another.
    let (added, changed, destroyed) = report.counts();
    let pal = ctx.shell.err_palette();
    let failed: Vec<(&crate::model::Address, &apply::StepError)> = report.failed().collect();
    let paused: Vec<(&crate::model::Address, &String)> = report.paused().collect();
    let (summary, done) = if p.mode == Mode::Destroy {
        (format!("Resources: {destroyed} destroyed."), "Destroy complete!")
    } else {
        let verdicts = verify.map(crate::verify::Checker::verdicts).unwrap_or_default();
        let gate = if added + changed == 0 || !p.changes.iter().any(plan::Change::boots) {
            String::new()
        } else if verify.is_none() {
            " Attestations not verified (--no-verify).".into()
        } else if verdicts.is_empty() || verdicts.iter().any(|v| !v.verified) {
            String::new()
        } else {
            verifying::tcb_warnings(ctx, &verdicts);
            format!(" Attestations verified (event log and RTMR3; {}).", verifying::quote_summary(&verdicts))
        };
        (format!("Resources: {added} added, {changed} changed, {destroyed} destroyed.{gate}"), "Apply complete!")
    };
    let attention = if p.mode == Mode::Destroy { None } else { unresolved(p) };
    if failed.is_empty() && paused.is_empty() && !interrupted && attention.is_none() {
        ctx.shell.err_line(&format!("\n{} {summary}", pal.bold(&pal.green(done))));
        print_outputs(ctx, store).await?;
        return Ok(exit::OK);
    }
    if !paused.is_empty() {
        let pending = onchain::pending(store).await?;
        ctx.shell.print(&onchain::instructions(&pending, &ctx.command_line("apply --resume")))?;
    }
    let skipped = report.results.values().filter(|(_, r)| matches!(r, StepResult::Skipped(_))).count();
    if failed.is_empty()
        && paused.is_empty()
        && !interrupted
        && let Some(mut e) = attention
    {
        e.message = format!("{summary} But {}", e.message);
        return Err(e);
    }
    let attention_hints = attention.map(|a| a.hints).unwrap_or_default();
    // Paused (also when Ctrl-C stopped the wait for the chain): exit 3, resumable.
    if !paused.is_empty() && failed.is_empty() && skipped == 0 {
        ctx.shell.err_line(&format!("\n{} {summary}", pal.bold(&pal.yellow("Apply paused:"))));
        for (a, why) in &paused {
            ctx.shell.err_line(&format!("  {a}: {why}"));
        }
        ctx.shell.err_line(&format!(
            "paused: awaiting on-chain registration; run `{}` once it is registered",
            ctx.command_line("apply --resume")
        ));
        return Ok(exit::PAUSED);
    }
    let message = format!(
        "apply did not finish: {} failed, {skipped} skipped. {summary} {}",
        failed.len(),
        if report.state_failed {
            "State could not record every step: the failures below say what it lacks."
        } else {
            "State records every completed step."
        }
    );
    let mut e = steps_failed(message, failed);
    e.hints.extend(attention_hints);
    if interrupted {
        e = e.hint("the run was interrupted; run apply again to continue");
    }
    Err(e)
}

/// The outputs state holds after an apply, on stdout.
async fn print_outputs(ctx: &Ctx, store: &dyn Store) -> CliResult<()> {
    let outputs = store.snapshot().await?.outputs;
    if outputs.is_empty() {
        return Ok(());
    }
    let mut text = String::from("\nOutputs:\n\n");
    for (k, v) in outputs {
        text.push_str(&super::records::output_line(&k, &v));
        text.push('\n');
    }
    ctx.shell.print(&text)
}
