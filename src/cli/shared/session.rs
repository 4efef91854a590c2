//! Opening a run: the manifest (with its dependency graph checked), the secrets it reads,
//! the locked state, the API, and the operations an earlier run left in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::apply;
use crate::cli::RunArgs;
use crate::cli::context::{Api, Ctx};
use crate::cli::error::{CliError, CliResult, Hint};
use crate::manifest::files::FilePolicy;
use crate::manifest::{Config, Diagnostic, Ref};
use crate::plan;
use crate::secrets::{self, Digester, SecretValues};
use crate::state::{Snapshot, Store};

/// Everything a run works with: the manifest, the locked state, the API and secrets.
pub struct Session {
    /// The command running (`plan`, `apply`, `destroy`), for hints.
    pub command: &'static str,
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub api: Api,
    pub secrets: SecretValues,
    /// How this run digests secrets for its state (Argon2id, or keyed with a passphrase).
    pub digests: Arc<Digester>,
}

/// Loads the manifest, reads its secrets, opens and locks its state, connects to the API and
/// settles what an earlier run left in flight. Nothing is changed in the cloud.
pub async fn open(ctx: &Ctx, run: &RunArgs, command: &'static str) -> CliResult<Session> {
    let config = ctx.load_with(&run.vars)?;
    check_graph(&config)?;
    let secrets = read_secrets(&secret_refs(&config), &config.file_policy())?;
    required_values_present(&config, &secrets)?;
    let store = ctx.open_state_for(Some(&config), command, run.lock_timeout).await?;
    let digests = Arc::new(digester(&store.meta().await?.salt, config.secrets_passphrase_env.as_deref())?);
    let api = ctx.api(&config.endpoint).await?;
    reconcile(ctx, store.as_ref(), &api).await?;
    Ok(Session { command, config, store, api, secrets, digests })
}

/// This run's way of digesting secrets for the state with salt `salt`: keyed when the
/// passphrase variable (the manifest's `secrets.passphrase_env`, else
/// `TEEFORM_SECRETS_PASSPHRASE`) is set. Passphrases are registered with `redact` as read.
pub fn digester(salt: &str, passphrase_env: Option<&str>) -> CliResult<Digester> {
    secrets::from_env(salt, passphrase_env, &|k| std::env::var(k).ok()).map_err(|e| {
        let hint = match e {
            secrets::PassphraseError::Missing { .. } => {
                "set it to the passphrase of the state's secret digests (README: \"Keyed secret digests\")"
            }
            secrets::PassphraseError::TooShort { .. } => {
                "keyed digests are as strong as the passphrase: use a long random one (e.g. `openssl rand -base64 32`) kept in your CI's secret store"
            }
        };
        CliError::new(format!("{e}; nothing was changed")).hint(hint)
    })
}

/// Refuses an env value that is empty once its secrets are read, when the CVM's compose file
/// requires it non-empty (`${VAR:?…}`): docker compose would refuse to start inside the CVM,
/// where its logs may be private. The lint checks literal values when the manifest loads;
/// secrets are known only now.
pub fn required_values_present(cfg: &Config, secrets: &SecretValues) -> CliResult<()> {
    use crate::manifest::{Diagnostic, Part};
    let mut diags = Vec::new();
    for c in cfg.cvms.values() {
        for (key, span) in &c.required_env {
            let Some(t) = c.env.get(key) else { continue };
            // A reference to another CVM's attribute is never empty; a secret may be.
            let empty = t.parts.iter().all(|p| match p {
                Part::Lit(s) => s.is_empty(),
                Part::Ref { r } => secrets.get(r).is_some_and(|v| v.expose().is_empty()),
            });
            if empty {
                diags.push(
                    Diagnostic::error(
                        &cfg.source,
                        *span,
                        format!("env `{key}` of cvm.{} is empty, but its compose file requires a value", c.key),
                    )
                    .label("empty once its secret is read")
                    .hint(format!("`${{{key}:?…}}` in the compose file stops docker compose when `{key}` is empty")),
                );
            }
        }
    }
    if diags.is_empty() {
        return Ok(());
    }
    let mut e = CliError::new(format!(
        "{} required value{} empty; nothing was changed",
        diags.len(),
        if diags.len() == 1 { " is" } else { "s are" }
    ));
    e.diagnostics = diags;
    Err(e)
}

/// Reports a dependency cycle as a diagnostic on the first CVM in it.
pub fn check_graph(cfg: &Config) -> CliResult<()> {
    let empty = Snapshot { meta: crate::state::Meta::fresh(), resources: BTreeMap::new(), outputs: BTreeMap::new() };
    let Err(e) = plan::graph(cfg, &empty) else {
        return Ok(());
    };
    let first = e.cycle.first().and_then(|a| a.strip_prefix("cvm.")).and_then(|k| cfg.cvms.get(k));
    let Some(c) = first else {
        return Err(e.into());
    };
    let mut err = CliError::new("the manifest has 1 error; nothing was changed");
    err.diagnostics.push(
        Diagnostic::error(&cfg.source, c.span, e.to_string())
            .label("part of the cycle")
            .hint("each arrow reads \"depends on\""),
    );
    Err(err)
}

fn secret_refs(cfg: &Config) -> BTreeSet<Ref> {
    let env = cfg.cvms.values().flat_map(|c| c.env.values());
    let outs = cfg.outputs.values().map(|o| &o.value);
    env.chain(outs).flat_map(|t| t.refs()).filter(|r| r.is_secret()).cloned().collect()
}

/// Reads the secrets `refs` name (files through `files`); every one that cannot be read is
/// a hint of one error.
pub fn read_secrets<'a>(refs: impl IntoIterator<Item = &'a Ref>, files: &FilePolicy) -> CliResult<SecretValues> {
    secrets::read_all(refs, files, &|k| std::env::var(k).ok()).map_err(|errs| {
        let mut e = CliError::new(format!(
            "{} secret{} cannot be read; nothing was changed",
            errs.len(),
            if errs.len() == 1 { "" } else { "s" }
        ));
        e.hints = errs.into_iter().map(Hint::Text).collect();
        e
    })
}

/// Refuses to go on when state (records or journal) was made at another endpoint.
pub fn same_endpoint<'a>(api: &Api, owners: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> CliResult<()> {
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
pub async fn reconcile(ctx: &Ctx, store: &dyn Store, api: &Api) -> CliResult<()> {
    let journal = store.journal().await?;
    same_endpoint(api, journal.iter().map(|e| (e.address.as_str(), e.endpoint.as_deref())))?;
    let r = apply::reconcile(store, api.client.as_ref()).await?;
    let sh = &ctx.shell;
    for a in &r.adopted {
        sh.warn(&format!("{a}: a create interrupted earlier had succeeded; the CVM is now in state"));
    }
    for (a, name) in &r.unproven {
        sh.warn(&format!(
            "{a}: a create interrupted under an older teeform cannot be proven to have made a CVM, so none was adopted; if CVM `{name}` exists and is yours, `{}` manages it",
            ctx.command_line(&format!("import {a} {name}"))
        ));
    }
    for (a, id) in &r.displaced {
        sh.warn(&format!(
            "{a}: a create interrupted earlier made CVM {id}, but state already holds another CVM at {a}; it was left out of state (`{}` under another address manages it)",
            ctx.command_line(&format!("import cvm.NAME {id}"))
        ));
    }
    for (a, ids) in &r.ambiguous {
        let imports: Vec<String> =
            ids.iter().map(|id| format!("`{}`", ctx.command_line(&format!("import {a} {id}")))).collect();
        sh.warn(&format!(
            "{a}: a replicate interrupted earlier made one of {} new instances of its app ({}); the rest were made outside teeform meanwhile and nothing tells which is teeform's, so none was adopted: {} manages the one you choose, and the plan shows them all",
            ids.len(),
            ids.join(", "),
            imports.join(" or ")
        ));
    }
    if r.kept > 0 {
        sh.warn(&format!(
            "{} update(s) are paused awaiting on-chain registration; `{}` finishes them",
            r.kept,
            ctx.command_line("apply --resume")
        ));
    }
    Ok(())
}
