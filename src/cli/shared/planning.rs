//! Making a plan: refreshing state from the API ([`super::refresh`]), the planner, then the
//! checks that need the API: values against its catalogs, names taken outside this state.

use std::collections::{BTreeMap, BTreeSet};

use super::refresh::{self, Refreshed};
use super::session::{Session, same_endpoint};
use crate::cli::PlanArgs;
use crate::cli::context::{Api, Ctx};
use crate::cli::error::{CliError, CliResult, Hint};
use crate::manifest::Config;
use crate::model::{Address, Attr, RemoteCvm};
use crate::plan::{self, Action, Mode, Plan, json, render};
use crate::providers;
use crate::secrets::{self, Digester};
use crate::state::Snapshot;

/// Refreshes (unless `--refresh=false`), plans, and checks the plan against the API.
pub async fn make_plan(ctx: &Ctx, s: &Session, args: &PlanArgs, mode: Mode) -> CliResult<Plan> {
    let snapshot = s.store.snapshot().await?;
    same_endpoint(&s.api, snapshot.resources.values().map(|r| (r.address.as_str(), r.endpoint.as_deref())))?;
    for r in snapshot.resources.values() {
        if let Some(why) = &r.unverified {
            ctx.shell.warn(&format!(
                "{} is unverified: its attestation did not match what was applied ({why}); `teeform verify {}` checks it again",
                r.address, r.address
            ));
        }
    }
    let parallelism = args.run.parallelism;
    let mut refreshed = if args.refresh || args.refresh_only {
        Some(refresh::refresh(ctx, s, &snapshot, parallelism).await?)
    } else {
        None
    };
    let requests = args.requests();
    let planned = |refreshed: Option<&Refreshed>| {
        plan::plan(&plan::Input {
            config: &s.config,
            snapshot: &snapshot,
            refreshed: refreshed.map(|r| &r.found),
            secrets: &s.secrets,
            digests: &s.digests,
            mode,
            requests: &requests,
            unmanaged: refreshed.map_or(&[], |r| &r.unmanaged),
        })
    };
    let mut p = planned(refreshed.as_ref())?;
    // The hash previews of updates start from the CVMs' app compose, which the list lacks.
    if let Some(r) = &mut refreshed
        && refresh::with_details(ctx, s, &p, r, parallelism).await?
    {
        p = planned(refreshed.as_ref())?;
    }
    secrets::log_stats("planning");
    keyed_state_needs_a_passphrase(&s.digests, &p)?;
    if !p.moved.is_empty() {
        let journal = s.store.journal().await?;
        if let Some(m) = p.moved.iter().find(|m| journal.iter().any(|e| e.address == m.from)) {
            return Err(CliError::new(format!(
                "cannot move {} to {}: an operation on {} is unfinished (interrupted, or paused for on-chain registration); nothing was changed",
                m.from, m.to, m.from
            ))
            .hint(Hint::run("finish it first (", "apply --resume", " for a paused update), then apply the move")));
        }
    }
    if args.refresh && mode == Mode::Normal {
        let listing = refreshed.and_then(|r| r.listing);
        names_are_free(ctx, &s.api, &snapshot, &p, listing, parallelism).await?;
    }
    if mode == Mode::Normal {
        check_values(ctx, &s.config, &s.api, &p, args.refresh, !snapshot.resources.is_empty()).await?;
    }
    Ok(p)
}

/// Refuses to send secrets again only because this run has no passphrase while state's
/// digests were made with one: most likely the variable is missing (a renamed CI secret),
/// and sending would restart every CVM with a secret. A different passphrase, set on
/// purpose, plans the resends with their reasons instead.
fn keyed_state_needs_a_passphrase(digests: &Digester, p: &Plan) -> CliResult<()> {
    if digests.keyed() {
        return Ok(());
    }
    let (cvms, made_with) = p
        .changes
        .iter()
        .flat_map(|c| c.reasons.iter())
        .filter_map(|r| match r {
            plan::Reason::SecretsResent { made_with, .. } => Some(made_with),
            _ => None,
        })
        .fold((0, None), |(n, first), m| (n + 1, first.or(Some(m))));
    let Some(made_with) = made_with else { return Ok(()) };
    Err(CliError::new(format!(
        "the secret digests of {cvms} CVM{} in state were made with {made_with}, and no passphrase is set; nothing was changed",
        if cvms == 1 { "" } else { "s" }
    ))
    .hint(format!(
        "set {} (or the variable the manifest's `secrets.passphrase_env` names) to the passphrase used before",
        secrets::PASSPHRASE_VAR
    ))
    .hint(format!(
        "to leave keyed mode, set {} to it instead: the digests are written again with Argon2id, and no CVM restarts",
        secrets::PREVIOUS_PASSPHRASE_VAR
    ))
    .hint("if the passphrase is lost, set a new one: the plan then shows each secret it sends again"))
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

/// The names the plan's changes give CVMs (creates, replacements, renames), with the address
/// of the change. A replica (`POST /cvms/{id}/replicas`) takes its app's name: it needs none.
fn names_taken(p: &Plan) -> BTreeMap<String, &Address> {
    p.changes
        .iter()
        .filter(|c| {
            let replica = c.instance.as_ref().is_some_and(|i| i.source.is_some());
            (matches!(c.action, Action::Create | Action::Replace) && !replica) || c.renames()
        })
        .filter_map(|c| c.after.as_ref().map(|a| (crate::model::name_key(&a.name), &c.address)))
        .collect()
}

/// Refuses creates and renames to a name a CVM outside this state already has: applying one
/// would fail or make a second CVM of that name. Reads the CVM list (`listing`, when the
/// refresh read it already) only when the plan creates or renames something.
async fn names_are_free(
    ctx: &Ctx,
    api: &Api,
    snapshot: &Snapshot,
    p: &Plan,
    listing: Option<Vec<RemoteCvm>>,
    parallelism: usize,
) -> CliResult<()> {
    // Names compared without letter case (`model::name_key`).
    let creating = names_taken(p);
    if creating.is_empty() {
        return Ok(());
    }
    let ours: BTreeSet<&str> = snapshot
        .resources
        .values()
        .flat_map(|r| [Some(r.ids.id.as_str()), r.ids.vm_uuid.as_deref()])
        .flatten()
        .collect();
    let remote = match listing {
        Some(l) => l,
        None => providers::list_cvms(api.client.as_ref(), parallelism).await.map_err(|e| {
            let transient = e.is_transient();
            let err = CliError::from(e)
                .context("cannot list the CVMs")
                .hint("listing CVMs checks that the names to create are free");
            if transient { err.hint("`--refresh=false` skips the check (and the refresh)") } else { err }
        })?,
    };
    let mut clashes: BTreeMap<&Address, Vec<&RemoteCvm>> = BTreeMap::new();
    for r in remote
        .iter()
        .filter(|r| !ours.contains(r.ids.id.as_str()) && !r.ids.vm_uuid.as_deref().is_some_and(|u| ours.contains(u)))
    {
        if let Some(addr) = creating.get(&crate::model::name_key(&r.attrs.name)) {
            clashes.entry(addr).or_default().push(r);
        }
    }
    let taken = import_addresses(p, clashes);
    let Some((first, _, _)) = taken.first() else {
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
    let renaming = |addr: &str| p.changes.iter().any(|c| c.address == addr && c.action == Action::Update);
    for (addr, id, then) in taken.iter().take(SHOWN) {
        e = e.hint(if renaming(addr) {
            format!("{addr} is renamed: give it a `name:` no other CVM has (CVM {id} has this one)")
        } else {
            format!(
                "`{}` manages the existing CVM{then}; or give {addr} another `name:`",
                ctx.command_line(&format!("import {addr} {id}"))
            )
        });
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

/// Each CVM whose name a create of the plan takes, with the address `teeform import` can give
/// it and what to do after (`, then set …`), sorted by address. Several CVMs of one name (the
/// instances of a replicated app) get the instances of their entry, `cvm.e[0]`, `cvm.e[1]`, …
/// in order of app id, then vm_uuid, so each import names a different address.
fn import_addresses(p: &Plan, clashes: BTreeMap<&Address, Vec<&RemoteCvm>>) -> Vec<(String, String, String)> {
    let id = |r: &RemoteCvm| r.ids.vm_uuid.clone().unwrap_or_else(|| r.ids.id.clone());
    let mut out = Vec::new();
    for (addr, mut found) in clashes {
        if let [one] = found[..] {
            out.push((addr.to_string(), id(one), String::new()));
            continue;
        }
        found.sort_by(|a, b| (&a.ids.app_id, id(a)).cmp(&(&b.ids.app_id, id(b))));
        let key = addr.key();
        // The instances the manifest has of the entry: the plan creates each.
        let replicas = p
            .changes
            .iter()
            .filter(|c| c.address.key() == key && !c.instance.as_ref().is_some_and(|i| i.surge))
            .count();
        let apps: BTreeSet<_> = found.iter().map(|r| &r.ids.app_id).collect();
        if apps.len() > 1 {
            // Unrelated CVMs of one name cannot all be instances of one entry: import one.
            let then = format!(" (one of {} CVMs of this name, in {} apps: import one)", found.len(), apps.len());
            out.extend(found.iter().map(|r| (addr.to_string(), id(r), then.clone())));
            continue;
        }
        let then = if found.len() > replicas {
            format!(", then set `replicas: {}` on cvm.{key}", found.len())
        } else {
            String::new()
        };
        for (i, r) in found.iter().enumerate() {
            out.push((Address::instance(key, i as u32).to_string(), id(r), then.clone()));
        }
    }
    out.sort();
    out
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
