//! `teeform apply [PLAN_FILE] [--resume] [--prepare-only]`: make the CVMs match the
//! manifest, apply a saved plan exactly, or finish updates paused for on-chain registration.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::ApplyArgs;
use super::context::Ctx;
use super::error::{CliError, CliResult, Hint, exit};
use super::shared::execute::{confirm, consent, execute, unresolved};
use super::shared::planning::{make_plan, mode, print_plan};
use super::shared::saved::SavedPlan;
use super::shared::{datasources, onchain, session, verifying};
use crate::apply::onchain::{Pending, PendingKind, Registrar};
use crate::manifest::files::FilePolicy;
use crate::manifest::{Endpoint, Ref};
use crate::plan::{self, Action, Mode, Plan};
use crate::state::JournalEntry;

pub async fn run(ctx: &Ctx, args: &ApplyArgs) -> CliResult {
    if args.resume && (args.plan_file.is_some() || args.prepare_only) {
        return Err(CliError::new("--resume takes neither a plan file nor --prepare-only")
            .hint(format!("`{}` finishes the updates a previous apply paused", ctx.command_line("apply --resume"))));
    }
    if let Some(file) = &args.plan_file {
        return apply_saved(ctx, file, args).await;
    }
    let tx_hash = args.tx_hash.as_deref().map(onchain::check_tx_hash).transpose()?;
    let mut s = session::open(ctx, &args.plan.run, "apply").await?;
    datasources::resolve_for_run(ctx, &mut s.config, s.store.as_ref(), &s.api, &args.plan).await?;
    let pending = onchain::forget_gone(ctx, s.store.as_ref(), onchain::pending(s.store.as_ref()).await?).await?;
    let mut p = make_plan(ctx, &s, &args.plan, mode(&args.plan)).await?;
    let pending = if args.plan.refresh && p.mode == Mode::Normal {
        onchain::forget_in_effect(ctx, s.store.as_ref(), pending, &p).await?
    } else {
        pending
    };
    if args.resume && !only_paused(ctx, &mut p, &pending)? {
        ctx.shell.println("Nothing to resume: no update is awaiting on-chain registration.")?;
        s.store.close().await?;
        return Ok(exit::OK);
    }
    only_onchain_updates(ctx, &mut p, args.prepare_only);
    let registrar = registrar(&p, &pending, args.prepare_only, args.resume.then_some(args.timeout), tx_hash)?;
    onchain::annotate(&mut p, &registrar.env).await;
    let verify = gate(ctx, args, &s.config.verify, &p, &registrar)?;
    print_plan(ctx, &p, false)?;
    consent(&p)?;
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
    let code = execute(
        ctx,
        &s.store,
        &s.api,
        &p,
        s.secrets,
        s.digests,
        args.plan.run.parallelism,
        Some(Arc::new(registrar)),
        verify,
    )
    .await?;
    s.store.close().await?;
    Ok(code)
}

/// The attestation gate's checker, unless `--no-verify`.
fn gate(
    ctx: &Ctx,
    args: &ApplyArgs,
    settings: &crate::manifest::VerifySettings,
    p: &Plan,
    r: &Registrar,
) -> CliResult<Option<Arc<crate::verify::Checker>>> {
    if args.no_verify {
        return Ok(None);
    }
    let onchain = verifying::onchain_of_plan(p, &r.env.rpc_urls);
    Ok(Some(Arc::new(verifying::checker(ctx, &args.quote, settings, onchain)?)))
}

/// `apply --resume`: narrows the plan to the updates paused for on-chain registration
/// (resuming never starts anything new). `false` when none is paused.
fn only_paused(ctx: &Ctx, p: &mut Plan, pending: &[(JournalEntry, Pending)]) -> CliResult<bool> {
    let paused: BTreeSet<&str> =
        pending.iter().filter(|(_, x)| x.kind == PendingKind::Update).map(|(e, _)| e.address.as_str()).collect();
    if paused.is_empty() {
        return Ok(false);
    }
    p.changes.retain(|c| c.action == Action::Update && paused.contains(c.address.as_str()));
    for a in paused.iter().filter(|a| !p.changes.iter().any(|c| c.address == **a)) {
        ctx.shell.warn(&format!(
            "{a}: the manifest no longer asks for the paused update; run `{}` to settle it",
            ctx.command_line("apply")
        ));
    }
    if p.changes.is_empty() {
        return Err(CliError::new("nothing to resume: the manifest no longer asks for the paused updates")
            .hint(format!("run `{}` to see what apply would do instead", ctx.command_line("plan"))));
    }
    ctx.shell.status("Resuming", &format!("{} paused update(s)", p.changes.len()));
    Ok(true)
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
        ctx.shell.warn(&format!(
            "--prepare-only: {skipped} change(s) other than on-chain updates are left for a later `{}`",
            ctx.command_line("apply")
        ));
    }
}

fn registrar(
    p: &Plan,
    pending: &[(JournalEntry, Pending)],
    prepare_only: bool,
    resume: Option<std::time::Duration>,
    tx_hash: Option<String>,
) -> CliResult<Registrar> {
    let env = onchain::read_env(&onchain::env_names(Some(p), pending), !prepare_only)?;
    Ok(Registrar { env, prepare_only, resume, tx_hash, registering: Default::default() })
}

async fn apply_saved(ctx: &Ctx, file: &Path, args: &ApplyArgs) -> CliResult {
    let a = &args.plan;
    if !(a.replace.is_empty() && a.targets.target.is_empty() && a.targets.exclude.is_empty()) {
        return Err(CliError::new(
            "a saved plan is applied exactly as it was made: --replace, --target and --exclude belong to `plan --out`",
        )
        .hint(Hint::run("make the plan with them: ", "plan --out FILE ...", "")));
    }
    let saved = SavedPlan::read(file)?;
    let store = ctx.open_state_for(None, "apply", args.plan.run.lock_timeout).await?;
    let endpoint = if saved.endpoint == "local" { Endpoint::Local } else { Endpoint::Url(saved.endpoint.clone()) };
    let api = ctx.api(&endpoint).await?;
    session::reconcile(ctx, store.as_ref(), &api).await?;
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
    let secrets = session::read_secrets(&refs, &FilePolicy::new(&saved.base_dir, &saved.allowed_dirs))?;
    let digests = Arc::new(session::digester(&meta.salt, saved.passphrase_env.as_deref())?);
    let mut p = p.clone();
    restore_rpc_urls(ctx, &mut p, &args.plan.run.vars)?;
    only_onchain_updates(ctx, &mut p, args.prepare_only);
    // Consent given when the plan was made is kept in it; `--allow-replace` here gives it now.
    p.requests.allow_replace |= args.plan.allow_replace;
    consent(&p)?;
    if !p.has_changes() {
        ctx.shell.println("No changes. The saved plan has nothing to apply.")?;
        store.close().await?;
        return Ok(exit::OK);
    }
    let pending = onchain::pending(store.as_ref()).await?;
    let registrar = registrar(&p, &pending, args.prepare_only, None, None)?;
    let verify = gate(ctx, args, &saved.verify, &p, &registrar)?;
    let code =
        execute(ctx, &store, &api, &p, secrets, digests, args.plan.run.parallelism, Some(Arc::new(registrar)), verify)
            .await?;
    store.close().await?;
    Ok(code)
}

/// A saved plan holds no RPC URL (it may carry a key), only its fingerprint: the URL is read
/// from the manifest again, and a plan whose URL changed since is refused.
fn restore_rpc_urls(ctx: &Ctx, p: &mut Plan, vars: &super::VarArgs) -> CliResult<()> {
    let needed = |c: &plan::Change| c.kms.as_ref().is_some_and(|k| k.rpc_url_fingerprint.is_some());
    if !p.changes.iter().any(needed) {
        return Ok(());
    }
    let cfg = ctx
        .load_with(vars)
        .map_err(|e| e.hint("the saved plan's on-chain CVMs read `kms.rpc_url` from the manifest, which must load"))?;
    for c in p.changes.iter_mut().filter(|c| needed(c)) {
        let url = cfg.cvms.get(c.address.key()).and_then(|m| match &m.kms {
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
