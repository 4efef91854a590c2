//! validate, plan, apply, destroy, show.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::context::{Api, Ctx};
use super::error::{CliError, CliResult, exit};
use super::onchain;
use super::saved::SavedPlan;
use super::ui::Progress;
use super::{ApplyArgs, PlanArgs, RunArgs, VarArgs};
use crate::apply::onchain::{Pending, PendingKind, Registrar};
use crate::apply::{self, Executor, StepResult, WaitOptions};
use crate::manifest::files::FilePolicy;
use crate::manifest::{Config, Diagnostic, Endpoint, Ref};
use crate::plan::{self, Action, Mode, Plan, Refresh, json, render};
use crate::secrets::{self, SecretValues};
use crate::state::{Snapshot, Store};

/// Reports a dependency cycle as a diagnostic on the first CVM in it.
fn check_graph(cfg: &Config) -> CliResult<()> {
    let empty = Snapshot { meta: crate::state::Meta::fresh(), resources: BTreeMap::new(), outputs: BTreeMap::new() };
    if let Err(e) = plan::graph(cfg, &empty) {
        let first = e.cycle.first().and_then(|a| a.strip_prefix("cvm.")).and_then(|k| cfg.cvms.get(k));
        let mut err: CliError = e.clone().into();
        if let Some(c) = first {
            err.diagnostics.push(
                Diagnostic::error(&cfg.source, c.span, e.to_string())
                    .label("part of the cycle")
                    .hint("each arrow reads \"depends on\""),
            );
            err.message = "the manifest has 1 error; nothing was changed".into();
            err.hints.clear();
        }
        return Err(err);
    }
    Ok(())
}

pub fn validate(ctx: &Ctx, vars: &VarArgs, json: bool) -> CliResult {
    let loaded = crate::manifest::load(
        ctx.manifest_path(),
        &crate::manifest::LoadOptions { vars: vars.vars.clone(), ..Default::default() },
    );
    let result = loaded.map_err(CliError::from).and_then(|cfg| check_graph(&cfg).map(|_| cfg));
    match (result, json) {
        (Ok(cfg), false) => {
            for w in &cfg.warnings {
                eprint!("{}\n\n", w.render(ctx.ui.stderr_color));
            }
            println!(
                "The manifest is valid: {} CVM{}, {} output{}.",
                cfg.cvms.len(),
                if cfg.cvms.len() == 1 { "" } else { "s" },
                cfg.outputs.len(),
                if cfg.outputs.len() == 1 { "" } else { "s" }
            );
            Ok(exit::OK)
        }
        (Ok(cfg), true) => {
            let out = serde_json::json!({"valid": true, "error_count": 0, "warning_count": cfg.warnings.len(), "diagnostics": cfg.warnings.iter().map(diag_json).collect::<Vec<_>>()});
            println!("{}", serde_json::to_string_pretty(&out).expect("json"));
            Ok(exit::OK)
        }
        (Err(e), false) => Err(e),
        (Err(e), true) => {
            let mut diags: Vec<serde_json::Value> = e.diagnostics.iter().map(diag_json).collect();
            if e.diagnostics.is_empty() {
                diags.push(serde_json::json!({"severity": "error", "message": e.message}));
            }
            let errors = diags.iter().filter(|d| d["severity"] == "error").count();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"valid": false, "error_count": errors, "diagnostics": diags})
                )
                .expect("json")
            );
            Ok(exit::ERROR)
        }
    }
}

fn diag_json(d: &Diagnostic) -> serde_json::Value {
    let (file, line, col) = match &d.source {
        Some(s) => {
            let (l, c) = s.line_col(d.span.start);
            (Some(s.display.clone()), Some(l), Some(c))
        }
        None => (None, None, None),
    };
    let related: Vec<serde_json::Value> = d
        .also
        .iter()
        .map(|r| {
            let (l, c) = r.source.line_col(r.span.start);
            serde_json::json!({"file": r.source.display, "line": l, "column": c, "label": r.label})
        })
        .collect();
    serde_json::json!({"severity": d.severity, "message": d.message, "file": file, "line": line, "column": col, "label": d.label, "hints": d.hints, "related": related})
}

/// Everything a run works with: the manifest, the locked state, the API and secrets.
struct Session {
    /// The command running (`plan`, `apply`, `destroy`), for hints.
    command: &'static str,
    config: Config,
    store: Arc<dyn Store>,
    api: Api,
    secrets: SecretValues,
}

fn secret_refs(cfg: &Config) -> BTreeSet<Ref> {
    let env = cfg.cvms.values().flat_map(|c| c.env.values());
    let outs = cfg.outputs.values().map(|o| &o.value);
    env.chain(outs).flat_map(|t| t.refs()).filter(|r| r.is_secret()).cloned().collect()
}

pub(super) fn read_secrets<'a>(refs: impl IntoIterator<Item = &'a Ref>, files: &FilePolicy) -> CliResult<SecretValues> {
    secrets::read_all(refs, files, &|k| std::env::var(k).ok()).map_err(|errs| {
        let mut e = CliError::new(format!(
            "{} secret{} cannot be read; nothing was changed",
            errs.len(),
            if errs.len() == 1 { "" } else { "s" }
        ));
        e.hints = errs;
        e
    })
}

async fn session(ctx: &Ctx, run: &RunArgs, command: &'static str) -> CliResult<Session> {
    let config = ctx.load(&run.vars.vars)?;
    check_graph(&config)?;
    let secrets = read_secrets(&secret_refs(&config), &config.file_policy())?;
    let store = ctx.open_state_for(Some(&config), command, run.lock_timeout).await?;
    let api = ctx.api(&config.endpoint).await?;
    reconcile(ctx, store.as_ref(), &api).await?;
    Ok(Session { command, config, store, api, secrets })
}

/// Refuses to go on when state (records or journal) was made at another endpoint.
pub(super) fn same_endpoint<'a>(
    api: &Api,
    owners: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> CliResult<()> {
    match apply::elsewhere(&api.endpoint, owners) {
        None => Ok(()),
        Some((addr, there)) => Err(CliError::new(format!(
            "{addr} lives at {there}, but the manifest now points at {}; nothing was changed",
            api.endpoint
        ))
        .hint("against the wrong endpoint its CVMs would look deleted, and apply would create them again")
        .hint(format!(
            "point `provider.phala.endpoint` (or PHALA_CLOUD_API_PREFIX) back at {there}, or keep the new endpoint's state apart with --state DIR or --workspace NAME"
        ))),
    }
}

/// Settles operations a previous run left in flight before anything else looks at state.
async fn reconcile(ctx: &Ctx, store: &dyn Store, api: &Api) -> CliResult<()> {
    let journal = store.journal().await?;
    same_endpoint(api, journal.iter().map(|e| (e.address.as_str(), e.endpoint.as_deref())))?;
    let r = apply::reconcile(store, api.client.as_ref()).await?;
    for a in &r.adopted {
        ctx.ui.warn(&format!("{a}: a create interrupted earlier had succeeded; the CVM is now in state"));
    }
    for (a, name) in &r.unproven {
        ctx.ui.warn(&format!(
            "{a}: a create interrupted under an older teeform cannot be proven to have made a CVM, so none was adopted; if CVM `{name}` exists and is yours, `teeform import {a} {name}` manages it"
        ));
    }
    for (a, id) in &r.displaced {
        ctx.ui.warn(&format!(
            "{a}: a create interrupted earlier made CVM {id}, but state already holds another CVM at {a}; it was left out of state (`teeform import cvm.NAME {id}` under another address manages it)"
        ));
    }
    if r.kept > 0 {
        ctx.ui.warn(&format!(
            "{} update(s) are paused awaiting on-chain registration; `{}` finishes them",
            r.kept,
            ctx.command_line("apply --resume")
        ));
    }
    Ok(())
}

async fn refresh(
    ctx: &Ctx,
    s: &Session,
    snapshot: &Snapshot,
    parallelism: usize,
) -> CliResult<BTreeMap<String, Refresh>> {
    let api = &s.api;
    if snapshot.resources.is_empty() {
        return Ok(BTreeMap::new());
    }
    ctx.ui.status(
        "Refreshing",
        &format!(
            "{} CVM{} from {}",
            snapshot.resources.len(),
            if snapshot.resources.len() == 1 { "" } else { "s" },
            api.endpoint
        ),
    );
    let client = api.client.clone();
    let results: Vec<(String, Result<Option<crate::model::RemoteCvm>, crate::providers::ApiError>)> =
        futures::stream::iter(snapshot.resources.values().map(|r| {
            let client = client.clone();
            let (addr, id) = (r.address.clone(), r.ids.id.clone());
            async move { (addr, client.get_cvm(&id).await) }
        }))
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut out = BTreeMap::new();
    let stuck_after = wait_options(ctx).timeout;
    for (addr, r) in results {
        match r {
            Ok(Some(mut remote)) => {
                remote.boot.stuck = remote.in_progress
                    && remote.boot.busy_since.as_deref().and_then(busy_for).is_some_and(|d| d > stuck_after);
                out.insert(addr, Refresh::Found(Box::new(remote)));
            }
            Ok(None) => {
                out.insert(addr, Refresh::Gone);
            }
            Err(e) => {
                // Planning from cached state helps only while the API is out of reach; it
                // cannot fix a key, a request or an answer that is wrong.
                let offer = s.command == "plan" && e.is_transient();
                let mut err = CliError::from(e);
                err.hints.push(if offer {
                    format!(
                        "refreshing {addr} failed; `{}` plans from cached state",
                        ctx.command_line("plan --refresh=false")
                    )
                } else {
                    format!("refreshing {addr} failed; nothing was changed")
                });
                return Err(err);
            }
        }
    }
    boot_errors(ctx, api, &mut out).await;
    Ok(out)
}

/// How long ago the API says an operation began (`progress.started_at`), by this machine's
/// clock. UNVERIFIED: the timestamp's exact format; RFC 3339 with or without an offset is read.
fn busy_for(since: &str) -> Option<std::time::Duration> {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as i64);
    let then = since
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
        .or_else(|| humantime::parse_rfc3339_weak(since).ok().and_then(ms))?;
    let now = ms(SystemTime::now())?;
    (now >= then).then(|| Duration::from_millis((now - then) as u64))
}

/// Reads the API's boot errors of the CVMs that failed or are stuck, in one request (none
/// when every CVM is fine). A failure to read them costs the message, not the plan.
async fn boot_errors(ctx: &Ctx, api: &Api, refreshed: &mut BTreeMap<String, Refresh>) {
    let unwell = |r: &crate::model::RemoteCvm| plan::health::failed(&r.status) || r.boot.stuck;
    let uuid = |r: &crate::model::RemoteCvm| r.ids.vm_uuid.clone().unwrap_or_else(|| r.ids.id.clone());
    let wanted: Vec<String> = refreshed
        .values()
        .filter_map(|r| match r {
            Refresh::Found(r) if unwell(r) => Some(uuid(r)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    match api.client.boot_errors(&wanted).await {
        Ok(errors) => {
            for r in refreshed.values_mut() {
                if let Refresh::Found(r) = r
                    && let Some(e) = errors.get(&uuid(r))
                {
                    r.boot.error = Some(e.clone());
                }
            }
        }
        Err(e) => ctx.ui.warn(&format!("cannot read the boot errors of CVMs that failed: {e}")),
    }
}

async fn make_plan(ctx: &Ctx, s: &Session, args: &PlanArgs, mode: Mode) -> CliResult<Plan> {
    let snapshot = s.store.snapshot().await?;
    same_endpoint(&s.api, snapshot.resources.values().map(|r| (r.address.as_str(), r.endpoint.as_deref())))?;
    let refreshed = if args.refresh || args.refresh_only {
        Some(refresh(ctx, s, &snapshot, args.run.parallelism).await?)
    } else {
        None
    };
    let p = plan::plan(&plan::Input {
        config: &s.config,
        snapshot: &snapshot,
        refreshed: refreshed.as_ref(),
        secrets: &s.secrets,
        mode,
    })?;
    if args.refresh && mode == Mode::Normal {
        names_are_free(ctx, &s.api, &snapshot, &p).await?;
    }
    if mode == Mode::Normal {
        check_values(ctx, &s.config, &s.api, &p, args.refresh, !snapshot.resources.is_empty()).await?;
    }
    Ok(p)
}

/// Refuses a plan that would send values the API does not offer (instance types, nodes, OS
/// images, KMS) or refuses (a smaller disk), each pointed at in the manifest. One request
/// per catalog a value needs, none when nothing is sent; `--refresh=false` makes none and
/// says what it did not check.
async fn check_values(ctx: &Ctx, cfg: &Config, api: &Api, p: &Plan, refresh: bool, has_state: bool) -> CliResult<()> {
    use plan::checks;
    let mut diags = checks::disk_shrinks(cfg, p);
    let sent = checks::sent(cfg, p);
    let needed = checks::needed(&sent);
    if refresh {
        diags.extend(checks::check(cfg, &sent, &catalogs(api, &needed).await?));
    } else if has_state || !needed.is_empty() {
        let mut unchecked = Vec::new();
        if has_state {
            unchecked.push("whether the CVMs run".to_string());
        }
        if !sent.is_empty() {
            let what: Vec<String> = sent.iter().map(|s| format!("{} of cvm.{}", s.attr, s.key)).collect();
            unchecked.push(format!("{} against the API's catalogs (the API checks at apply)", what.join(", ")));
        }
        ctx.ui.warn(&format!(
            "--refresh=false: no API call was made, so teeform did not check {}",
            unchecked.join(", nor ")
        ));
    }
    if diags.is_empty() {
        return Ok(());
    }
    let n = diags.len();
    let mut e = CliError::new(format!(
        "the plan would send {n} value{} the API refuses; nothing was changed",
        if n == 1 { "" } else { "s" }
    ));
    e.diagnostics = diags;
    Err(e)
}

/// The catalogs `needed` (attribute names) calls for, one request each.
async fn catalogs(api: &Api, needed: &BTreeSet<&str>) -> CliResult<plan::checks::Catalogs> {
    let why = |e: crate::providers::ApiError| {
        CliError::from(e).hint("the API's catalogs check the plan's values before apply; `--refresh=false` skips it")
    };
    let mut c = plan::checks::Catalogs::default();
    if needed.contains("instance_type") {
        c.instance_types = Some(api.client.instance_types().await.map_err(why)?.into_iter().map(|t| t.id).collect());
    }
    if needed.contains("node") || needed.contains("kms") {
        let av = api.client.available().await.map_err(why)?;
        c.nodes = Some(av.nodes.into_iter().map(|n| (n.id, n.name)).collect());
        c.kms = Some(av.kms.into_iter().map(|k| (k.slug.unwrap_or(k.id), k.chain_id)).collect());
    }
    if needed.contains("image") {
        c.images = Some(api.client.os_images(None).await.map_err(why)?.into_iter().map(|i| (i.name, i.slug)).collect());
    }
    Ok(c)
}

/// Refuses creates whose name a CVM outside this state already has: applying one would fail
/// or make a second CVM of that name. One list call, made only when the plan creates something.
async fn names_are_free(ctx: &Ctx, api: &Api, snapshot: &Snapshot, p: &Plan) -> CliResult<()> {
    let creating: BTreeMap<&str, &str> = p
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Replace))
        .filter_map(|c| c.after.as_ref().map(|a| (a.name.as_str(), c.address.as_str())))
        .collect();
    if creating.is_empty() {
        return Ok(());
    }
    let ours: BTreeSet<&str> = snapshot
        .resources
        .values()
        .flat_map(|r| [Some(r.ids.id.as_str()), r.ids.vm_uuid.as_deref()])
        .flatten()
        .collect();
    let remote = api.client.list_cvms().await.map_err(|e| {
        let transient = e.is_transient();
        let err = CliError::from(e).hint("listing CVMs checks that the names to create are free");
        if transient { err.hint("`--refresh=false` skips the check (and the refresh)") } else { err }
    })?;
    let mut taken: Vec<(&str, String)> = remote
        .iter()
        .filter(|r| !ours.contains(r.ids.id.as_str()) && !r.ids.vm_uuid.as_deref().is_some_and(|u| ours.contains(u)))
        .filter_map(|r| {
            creating
                .get(r.attrs.name.as_str())
                .map(|addr| (*addr, r.ids.vm_uuid.clone().unwrap_or_else(|| r.ids.id.clone())))
        })
        .collect();
    taken.sort();
    let Some((first, _)) = taken.first() else {
        return Ok(());
    };
    let mut e = CliError::new(format!(
        "{first}{}: a CVM with that name already exists at {} and is not in this state; nothing was changed",
        if taken.len() > 1 { format!(" (and {} more)", taken.len() - 1) } else { String::new() },
        api.endpoint
    ));
    // A few commands to copy, not one per CVM: a first apply over a thousand existing names
    // must stay readable.
    const SHOWN: usize = 5;
    for (addr, id) in taken.iter().take(SHOWN) {
        e = e.hint(format!(
            "`{}` manages the existing CVM; or give {addr} another `name:`",
            ctx.command_line(&format!("import {addr} {id}"))
        ));
    }
    if taken.len() > SHOWN {
        e = e.hint(format!(
            "and {} more CVMs the same way (`teeform plan --json` lists every create)",
            taken.len() - SHOWN
        ));
    }
    Err(e)
}

fn mode(args: &PlanArgs) -> Mode {
    if args.refresh_only {
        Mode::RefreshOnly
    } else if args.destroy {
        Mode::Destroy
    } else {
        Mode::Normal
    }
}

fn print_plan(ctx: &Ctx, p: &Plan, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json::to_json(p)).expect("json"));
    } else {
        print!("{}", render::render(p, ctx.ui.stdout_color));
    }
}

pub async fn plan(ctx: &Ctx, args: &PlanArgs, out: Option<&Path>, detailed: bool, as_json: bool) -> CliResult {
    let mut s = session(ctx, &args.run, "plan").await?;
    super::images_cmd::resolve_for_run(ctx, &mut s.config, s.store.as_ref(), &s.api, args).await?;
    let mut p = make_plan(ctx, &s, args, mode(args)).await?;
    let pending = onchain::pending(s.store.as_ref()).await?;
    let env = onchain::read_env(&onchain::env_names(Some(&p), &pending), false)?;
    onchain::annotate(&mut p, &env).await;
    print_plan(ctx, &p, as_json);
    if let Some(path) = out {
        let allowed = s.config.allowed_dirs.iter().map(|d| abs(&s.config.dir.join(d))).collect();
        SavedPlan::new(p.clone(), s.api.endpoint.clone(), abs(&s.config.dir), allowed).write(path)?;
        if !as_json {
            println!(
                "\nSaved the plan to {}. To apply exactly these actions, run:\n    {}",
                path.display(),
                ctx.command_line(&format!("apply {}", path.display()))
            );
        }
    }
    s.store.close().await?;
    Ok(if detailed && !p.converged() { exit::CHANGES } else { exit::OK })
}

fn abs(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn confirm(ctx: &Ctx, auto_approve: bool, question: &str) -> CliResult<()> {
    if auto_approve {
        return Ok(());
    }
    if !ctx.ui.stdin_tty {
        return Err(CliError::new("confirmation is needed, but stdin is not a terminal; nothing was changed")
            .hint("pass --auto-approve to proceed without asking (as CI does)"));
    }
    eprint!("\n{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() == "yes" { Ok(()) } else { Err(CliError::new("cancelled; nothing was changed")) }
}

pub async fn apply(ctx: &Ctx, args: &ApplyArgs) -> CliResult {
    if args.resume && (args.plan_file.is_some() || args.prepare_only) {
        return Err(CliError::new("--resume takes neither a plan file nor --prepare-only")
            .hint(format!("`{}` finishes the updates a previous apply paused", ctx.command_line("apply --resume"))));
    }
    if let Some(file) = &args.plan_file {
        return apply_saved(ctx, file, args).await;
    }
    let tx_hash = args.tx_hash.as_deref().map(onchain::check_tx_hash).transpose()?;
    let mut s = session(ctx, &args.plan.run, "apply").await?;
    super::images_cmd::resolve_for_run(ctx, &mut s.config, s.store.as_ref(), &s.api, &args.plan).await?;
    let pending = onchain::forget_gone(ctx, s.store.as_ref(), onchain::pending(s.store.as_ref()).await?).await?;
    let mut p = make_plan(ctx, &s, &args.plan, mode(&args.plan)).await?;
    let pending = if args.plan.refresh && p.mode == Mode::Normal {
        onchain::forget_in_effect(ctx, s.store.as_ref(), pending, &p).await?
    } else {
        pending
    };
    if args.resume {
        let paused: BTreeSet<&str> =
            pending.iter().filter(|(_, x)| x.kind == PendingKind::Update).map(|(e, _)| e.address.as_str()).collect();
        if paused.is_empty() {
            println!("Nothing to resume: no update is awaiting on-chain registration.");
            s.store.close().await?;
            return Ok(exit::OK);
        }
        // Only the paused updates themselves: resuming never starts anything new.
        p.changes.retain(|c| c.action == Action::Update && paused.contains(c.address.as_str()));
        for a in paused.iter().filter(|a| !p.changes.iter().any(|c| c.address == **a)) {
            ctx.ui.warn(&format!(
                "{a}: the manifest no longer asks for the paused update; run `{}` to settle it",
                ctx.command_line("apply")
            ));
        }
        if p.changes.is_empty() {
            return Err(CliError::new("nothing to resume: the manifest no longer asks for the paused updates")
                .hint(format!("run `{}` to see what apply would do instead", ctx.command_line("plan"))));
        }
        ctx.ui.status("Resuming", &format!("{} paused update(s)", p.changes.len()));
    }
    only_onchain_updates(ctx, &mut p, args.prepare_only);
    let registrar = registrar(&p, &pending, args.prepare_only, args.resume.then_some(args.timeout), tx_hash)?;
    onchain::annotate(&mut p, &registrar.env).await;
    print_plan(ctx, &p, false);
    if !p.has_changes() {
        // What the refresh learned (a status, a failed boot) is kept, as Terraform's apply does.
        if !p.refreshed.is_empty() {
            s.store.commit(crate::state::Batch { put: p.refreshed.clone(), ..Default::default() }).await?;
        }
        s.store.close().await?;
        return match unresolved(&p) {
            Some(e) => Err(e),
            None => Ok(exit::OK),
        };
    }
    // A paused update was approved when it was first applied.
    if !args.resume {
        confirm(ctx, args.auto_approve, "Do you want to perform these actions?")?;
    }
    let code =
        execute(ctx, &s.store, &s.api, &p, s.secrets, args.plan.run.parallelism, Some(Arc::new(registrar))).await?;
    s.store.close().await?;
    Ok(code)
}

/// The error for CVMs needing attention that applying left as they were.
fn unresolved(p: &Plan) -> Option<CliError> {
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

/// `--prepare-only` prepares on-chain updates and nothing else.
fn only_onchain_updates(ctx: &Ctx, p: &mut Plan, prepare_only: bool) {
    if !prepare_only {
        return;
    }
    let before = p.changes.len();
    p.changes.retain(|c| c.action == Action::Update && c.kms.is_some());
    let skipped = before - p.changes.len();
    if skipped > 0 {
        ctx.ui.warn(&format!(
            "--prepare-only: {skipped} change(s) other than on-chain updates are left for a later `{}`",
            ctx.command_line("apply")
        ));
    }
}

fn registrar(
    p: &Plan,
    pending: &[(crate::state::JournalEntry, Pending)],
    prepare_only: bool,
    resume: Option<std::time::Duration>,
    tx_hash: Option<String>,
) -> CliResult<Registrar> {
    let env = onchain::read_env(&onchain::env_names(Some(p), pending), !prepare_only)?;
    Ok(Registrar { env, prepare_only, resume, tx_hash })
}

async fn apply_saved(ctx: &Ctx, file: &Path, args: &ApplyArgs) -> CliResult {
    let saved = SavedPlan::read(file)?;
    let store = ctx.open_state_for(None, "apply", args.plan.run.lock_timeout).await?;
    let endpoint = if saved.endpoint == "local" { Endpoint::Local } else { Endpoint::Url(saved.endpoint.clone()) };
    let api = ctx.api(&endpoint).await?;
    reconcile(ctx, store.as_ref(), &api).await?;
    let meta = store.meta().await?;
    let p = &saved.plan;
    if meta.lineage != p.state.lineage {
        return Err(CliError::new(format!(
            "the saved plan {} was made for another state (lineage {}, this state is {})",
            file.display(),
            p.state.lineage,
            meta.lineage
        ))
        .hint(format!("run `{}` against this state", ctx.command_line("plan --out FILE"))));
    }
    if meta.serial != p.state.serial {
        return Err(CliError::new(format!("the saved plan {} is stale: the state changed since it was made (serial {} then, {} now); nothing was changed", file.display(), p.state.serial, meta.serial)).hint(format!("run `{}` again and review the new plan", ctx.command_line("plan --out FILE"))));
    }
    let refs: BTreeSet<Ref> = p
        .changes
        .iter()
        .filter_map(|c| c.after.as_ref())
        .flat_map(|a| a.env.values())
        .filter_map(|v| v.template.as_ref())
        .chain(p.outputs.values().map(|o| &o.value))
        .flat_map(|t| t.refs())
        .filter(|r| r.is_secret())
        .cloned()
        .collect();
    let secrets = read_secrets(&refs, &FilePolicy::new(&saved.base_dir, &saved.allowed_dirs))?;
    let mut p = p.clone();
    restore_rpc_urls(ctx, &mut p, &args.plan.run.vars.vars)?;
    only_onchain_updates(ctx, &mut p, args.prepare_only);
    if !p.has_changes() {
        println!("No changes. The saved plan has nothing to apply.");
        store.close().await?;
        return Ok(exit::OK);
    }
    let pending = onchain::pending(store.as_ref()).await?;
    let registrar = registrar(&p, &pending, args.prepare_only, None, None)?;
    let code = execute(ctx, &store, &api, &p, secrets, args.plan.run.parallelism, Some(Arc::new(registrar))).await?;
    store.close().await?;
    Ok(code)
}

/// A saved plan holds no RPC URL (it may carry a key), only its fingerprint: the URL is read
/// from the manifest again, and a plan whose URL changed since is refused.
fn restore_rpc_urls(ctx: &Ctx, p: &mut Plan, vars: &[(String, String)]) -> CliResult<()> {
    let needed = |c: &plan::Change| c.kms.as_ref().is_some_and(|k| k.rpc_url_fingerprint.is_some());
    if !p.changes.iter().any(needed) {
        return Ok(());
    }
    let cfg = ctx
        .load(vars)
        .map_err(|e| e.hint("the saved plan's on-chain CVMs read `kms.rpc_url` from the manifest, which must load"))?;
    for c in p.changes.iter_mut().filter(|c| needed(c)) {
        let key = c.address.strip_prefix("cvm.").unwrap_or(&c.address);
        let url = cfg.cvms.get(key).and_then(|m| match &m.kms {
            crate::manifest::Kms::OnChain(k) => k.rpc_url.clone(),
            crate::manifest::Kms::Phala => None,
        });
        let Some(spec) = c.kms.as_mut() else { continue };
        match url {
            Some(u) if spec.rpc_url_fingerprint.as_deref() == Some(crate::redact::fingerprint(&u).as_str()) => {
                spec.rpc_url = Some(u)
            }
            _ => {
                return Err(CliError::new(format!(
                    "{}: `kms.rpc_url` in the manifest changed since the plan was made; nothing was changed",
                    c.address
                ))
                .hint(format!("run `{}` again and review the new plan", ctx.command_line("plan --out FILE"))));
            }
        }
    }
    Ok(())
}

pub async fn destroy(ctx: &Ctx, run: &RunArgs, auto_approve: bool) -> CliResult {
    let s = session(ctx, run, "destroy").await?;
    let args = PlanArgs { run: run.clone(), refresh: true, refresh_only: false, destroy: true, locked: false };
    let p = make_plan(ctx, &s, &args, Mode::Destroy).await?;
    print_plan(ctx, &p, false);
    if p.changes.is_empty() {
        s.store.close().await?;
        return Ok(exit::OK);
    }
    confirm(ctx, auto_approve, "Do you really want to destroy every CVM in this state? There is no undo.")?;
    let code = execute(ctx, &s.store, &s.api, &p, s.secrets, run.parallelism, None).await?;
    s.store.close().await?;
    Ok(code)
}

/// Runs the executor with progress output and Ctrl-C handling, then reports.
async fn execute(
    ctx: &Ctx,
    store: &Arc<dyn Store>,
    api: &Api,
    p: &Plan,
    secrets: SecretValues,
    parallelism: usize,
    onchain: Option<Arc<dyn apply::OnChain>>,
) -> CliResult {
    let cancel = CancellationToken::new();
    // SIGINT / SIGTERM now stop scheduling instead of the process (see `signals`).
    let graceful = super::signals::Graceful::new(&cancel);
    let progress = Arc::new(Progress::new(ctx.ui, p.changes.len()));
    let exec = Executor {
        api: api.client.clone(),
        store: store.clone(),
        parallelism,
        events: progress.clone(),
        cancel: cancel.clone(),
        wait: wait_options(ctx),
        secrets,
        onchain,
        endpoint: api.endpoint.clone(),
    };
    let report = exec.run(p).await;
    progress.finish();
    drop(graceful);
    let report = report?;
    // What happened in the cloud, finished or not: a replacement whose new CVM failed to boot
    // still destroyed one CVM and added another.
    let (added, changed, destroyed) = report.counts();
    let pal = ctx.ui.err_palette();
    let failed: Vec<(&String, &apply::StepError)> = report.failed().collect();
    let paused: Vec<(&String, &String)> = report.paused().collect();
    let (summary, done) = if p.mode == Mode::Destroy {
        (format!("Resources: {destroyed} destroyed."), "Destroy complete!")
    } else {
        (format!("Resources: {added} added, {changed} changed, {destroyed} destroyed."), "Apply complete!")
    };
    let attention = if p.mode == Mode::Destroy { None } else { unresolved(p) };
    // An interrupt that came once every step had finished stopped nothing.
    let interrupted = cancel.is_cancelled() && !report.all_done();
    if failed.is_empty() && paused.is_empty() && !interrupted && attention.is_none() {
        eprintln!("\n{} {summary}", pal.bold(&pal.green(done)));
        print_outputs(store.as_ref()).await?;
        return Ok(exit::OK);
    }
    if !paused.is_empty() {
        print!(
            "{}",
            onchain::instructions(&onchain::pending(store.as_ref()).await?, &ctx.command_line("apply --resume"))
        );
    }
    let skipped = report.results.values().any(|(_, r)| matches!(r, StepResult::Skipped(_)));
    // Paused (also when Ctrl-C stopped the wait for the chain): exit 3, resumable.
    if failed.is_empty()
        && paused.is_empty()
        && !interrupted
        && let Some(mut e) = attention
    {
        e.message = format!("{summary} But {}", e.message);
        return Err(e);
    }
    let attention_hints = attention.map(|a| a.hints).unwrap_or_default();
    if !paused.is_empty() && failed.is_empty() && !skipped {
        eprintln!("\n{} {summary}", pal.bold(&pal.yellow("Apply paused:")));
        for (a, why) in &paused {
            eprintln!("  {a}: {why}");
        }
        eprintln!(
            "paused: awaiting on-chain registration; run `{}` once it is registered",
            ctx.command_line("apply --resume")
        );
        return Ok(exit::PAUSED);
    }
    let mut e = CliError::new(format!(
        "apply did not finish: {} failed, {} skipped. {summary} {}",
        failed.len(),
        report.results.values().filter(|(_, r)| matches!(r, StepResult::Skipped(_))).count(),
        if report.state_failed {
            "State could not record every step: the failures below say what it lacks."
        } else {
            "State records every completed step."
        }
    ));
    for (a, why) in failed {
        e.hints.push(format!("{a}: {}", why.one_line()));
        e.hints.extend(super::error::step_hints(ctx, why).into_iter().map(|h| format!("{a}: {h}")));
    }
    e.hints.extend(attention_hints);
    if interrupted {
        e.hints.push("the run was interrupted; run apply again to continue".into());
    }
    Err(e)
}

fn wait_options(ctx: &Ctx) -> WaitOptions {
    let mut w = WaitOptions::default();
    if let Some(t) = ctx.settings.wait_timeout {
        w.timeout = t;
    }
    w
}

async fn print_outputs(store: &dyn Store) -> CliResult<()> {
    let outputs = store.snapshot().await?.outputs;
    if outputs.is_empty() {
        return Ok(());
    }
    println!("\nOutputs:\n");
    for (k, v) in outputs {
        match (v.sensitive, v.value) {
            (true, _) => println!("{k} = (sensitive value)"),
            (false, Some(val)) => println!("{k} = {val:?}"),
            (false, None) => println!("{k} = (unknown)"),
        }
    }
    Ok(())
}

pub async fn show(ctx: &Ctx, file: Option<&Path>, as_json: bool) -> CliResult {
    if let Some(f) = file {
        let saved = SavedPlan::read(f)?;
        print_plan(ctx, &saved.plan, as_json);
        return Ok(exit::OK);
    }
    super::state_cmds::show_state(ctx, as_json).await
}
