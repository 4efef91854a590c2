//! Making a plan: refreshing state from the API (and the boot errors of CVMs that failed),
//! the planner, then the checks that need the API: values against its catalogs, names
//! taken outside this state.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use super::session::{Session, same_endpoint};
use crate::cli::PlanArgs;
use crate::cli::context::{Api, Ctx};
use crate::cli::error::{CliError, CliResult};
use crate::manifest::Config;
use crate::model::{Address, Attr};
use crate::plan::{self, Action, Mode, Plan, Refresh, json, render};
use crate::state::Snapshot;

async fn refresh(
    ctx: &Ctx,
    s: &Session,
    snapshot: &Snapshot,
    parallelism: usize,
) -> CliResult<BTreeMap<Address, Refresh>> {
    let api = &s.api;
    if snapshot.resources.is_empty() {
        return Ok(BTreeMap::new());
    }
    ctx.shell.status(
        "Refreshing",
        &format!(
            "{} CVM{} from {}",
            snapshot.resources.len(),
            if snapshot.resources.len() == 1 { "" } else { "s" },
            api.endpoint
        ),
    );
    let client = api.client.clone();
    let results: Vec<(Address, Result<Option<crate::model::RemoteCvm>, crate::providers::ApiError>)> =
        futures::stream::iter(snapshot.resources.values().map(|r| {
            let client = client.clone();
            let (addr, id) = (r.address.clone(), r.ids.id.clone());
            async move { (addr, client.get_cvm(&id).await) }
        }))
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut out = BTreeMap::new();
    let stuck_after = super::execute::wait_options(ctx).timeout;
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
                let err = CliError::from(e).context(format!("cannot refresh {addr}"));
                return Err(if offer {
                    err.hint(format!("`{}` plans from cached state", ctx.command_line("plan --refresh=false")))
                } else {
                    err.hint("nothing was changed")
                });
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
async fn boot_errors(ctx: &Ctx, api: &Api, refreshed: &mut BTreeMap<Address, Refresh>) {
    let unwell = |r: &crate::model::RemoteCvm| r.status.is_failed() || r.boot.stuck;
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
        Err(e) => ctx.shell.warn(&format!("cannot read the boot errors of CVMs that failed: {e}")),
    }
}

/// Refreshes (unless `--refresh=false`), plans, and checks the plan against the API.
pub async fn make_plan(ctx: &Ctx, s: &Session, args: &PlanArgs, mode: Mode) -> CliResult<Plan> {
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
            let what: Vec<String> = sent.iter().map(|s| format!("{} of {}", s.attr, Address::cvm(s.key))).collect();
            unchecked.push(format!("{} against the API's catalogs (the API checks at apply)", what.join(", ")));
        }
        ctx.shell.warn(&format!(
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

/// The catalogs `needed` (attributes) calls for, one request each.
async fn catalogs(api: &Api, needed: &BTreeSet<Attr>) -> CliResult<plan::checks::Catalogs> {
    let why = |e: crate::providers::ApiError| {
        CliError::from(e)
            .context("cannot read the API's catalogs")
            .hint("the API's catalogs check the plan's values before apply; `--refresh=false` skips it")
    };
    let mut c = plan::checks::Catalogs::default();
    if needed.contains(&Attr::InstanceType) {
        c.instance_types = Some(api.client.instance_types().await.map_err(why)?.into_iter().map(|t| t.id).collect());
    }
    if needed.contains(&Attr::Node) || needed.contains(&Attr::Kms) {
        let av = api.client.available().await.map_err(why)?;
        c.nodes = Some(av.nodes.into_iter().map(|n| (n.id, n.name)).collect());
        c.kms = Some(av.kms.into_iter().map(|k| (k.slug.unwrap_or(k.id), k.chain_id)).collect());
    }
    if needed.contains(&Attr::Image) {
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
        let err = CliError::from(e)
            .context("cannot list the CVMs")
            .hint("listing CVMs checks that the names to create are free");
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
            "and {} more CVMs the same way (`{}` lists every create)",
            taken.len() - SHOWN,
            ctx.command_line("plan --json")
        ));
    }
    Err(e)
}

/// The planner's mode for `--refresh-only` / `--destroy`.
pub fn mode(args: &PlanArgs) -> Mode {
    if args.refresh_only {
        Mode::RefreshOnly
    } else if args.destroy {
        Mode::Destroy
    } else {
        Mode::Normal
    }
}

/// The plan on stdout, for people or (`as_json`) machines.
/// Prints `p` as `view` says.
pub fn show_plan(ctx: &Ctx, p: &Plan, view: crate::cli::View) -> CliResult<()> {
    match view {
        crate::cli::View::Markdown => {
            ctx.shell.print(&crate::plan::markdown::markdown(p, crate::plan::markdown::GITHUB_COMMENT_LIMIT))
        }
        v => print_plan(ctx, p, v == crate::cli::View::Json),
    }
}

/// Prints `p` for people, or as one JSON document; into the event stream when the command
/// writes one.
pub fn print_plan(ctx: &Ctx, p: &Plan, as_json: bool) -> CliResult<()> {
    if let Some(s) = &ctx.stream {
        return s.plan(p);
    }
    if as_json {
        ctx.shell.print_json(&json::to_json(p))
    } else {
        ctx.shell.print(&render::render(p, &ctx.shell.out_palette()))
    }
}
