//! Data sources before a plan: pins from the lock file, catalogs asked only for what is
//! not pinned (or to note newer images), new pins written, values substituted into the
//! `Config` so the planner stays pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::catalogs::CliCatalogs;
use crate::cli::PlanArgs;
use crate::cli::context::{Api, Ctx};
use crate::cli::error::{CliError, CliResult};
use crate::datasources::{self, DataError, Event, Options, Upgrade, select};
use crate::lockfile::{self, Pin};
use crate::manifest::Config;
use crate::manifest::data::DataKind;
use crate::state::Store;

/// Data sources that cannot be resolved, as diagnostics at each one.
pub fn data_errors(cfg: &Config, errs: Vec<DataError>) -> CliError {
    let n = errs.len();
    let mut e = CliError::new(format!(
        "{n} data source{} cannot be resolved; nothing was changed",
        if n == 1 { "" } else { "s" }
    ));
    e.diagnostics = errs.iter().map(|d| d.diagnostic(&cfg.source)).collect();
    e
}

/// The kinds of data source the manifest declares.
pub fn kinds(cfg: &Config) -> BTreeSet<DataKind> {
    cfg.data.values().map(|d| d.kind).collect()
}

/// A pin as people read it: name (id), version.
pub fn pin_label(p: &Pin) -> String {
    let mut s = if p.name == p.id { p.id.clone() } else { format!("{} ({})", p.name, p.id) };
    if let Some(v) = p.version.as_deref().filter(|v| !p.name.contains(*v)) {
        s.push_str(&format!(", version {v}"));
    }
    s
}

fn candidate_label(c: &select::Candidate) -> String {
    let mut s = if c.name == c.id { c.id.clone() } else { format!("{} ({})", c.name, c.id) };
    if let Some(t) = c.created {
        s.push_str(&format!(", created {t}"));
    }
    s
}

/// The manifest's lock file (`teeform.lock` beside `teeform.yaml`).
pub fn lock_path(ctx: &Ctx) -> PathBuf {
    lockfile::path_for(ctx.manifest_path())
}

/// The ids state holds for the manifest's CVMs (a Phala data source's `cvm:`).
pub async fn cvm_ids(cfg: &Config, store: &dyn Store) -> CliResult<BTreeMap<String, String>> {
    let snap = store.snapshot().await?;
    Ok(cfg
        .cvms
        .keys()
        .filter_map(|k| snap.resources.get(&crate::model::Address::cvm(k)).map(|r| (k.clone(), r.ids.id.clone())))
        .collect())
}

/// Resolves the manifest's data sources for plan or apply (pins first) and substitutes their
/// values into `cfg`. New pins are written to the lock file; newer images are only noted.
pub async fn resolve_for_run(
    ctx: &Ctx,
    cfg: &mut Config,
    store: &dyn Store,
    api: &Api,
    args: &PlanArgs,
) -> CliResult<()> {
    if cfg.data.is_empty() || args.destroy {
        return Ok(());
    }
    let path = lock_path(ctx);
    let lock = lockfile::read(&path)?;
    let ids = cvm_ids(cfg, store).await?;
    let catalogs = CliCatalogs::new(&kinds(cfg), Some(api.client.clone()), &cfg.providers, &cfg.dir, None, None);
    let opts = Options {
        upgrade: Upgrade::None,
        check_newer: args.refresh,
        locked: args.locked,
        now: crate::model::now_rfc3339(),
    };
    let out = datasources::resolve(cfg, &lock, &catalogs, &ids, &opts).await.map_err(|e| data_errors(cfg, e))?;
    let lock_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    for ev in &out.events {
        match ev {
            Event::Pinned { address, pin, previous: None } => {
                ctx.shell.status("Pinned", &format!("{address} to {} in {lock_name}", pin_label(pin)))
            }
            Event::Pinned { address, pin, previous: Some(old) } => ctx.shell.status(
                "Pinned",
                &format!("{address} to {} (its selector changed; was {})", pin_label(pin), pin_label(old)),
            ),
            Event::Newer { address, pinned, available, newer } => {
                let what = if *newer { "newer image available" } else { "the selector now picks another image" };
                let name = address.rsplit('.').next().unwrap_or(address);
                ctx.shell.note(&format!(
                    "{address}: {what}: {}; pinned: {}. `teeform images upgrade {name}` moves the pin",
                    candidate_label(available),
                    pin_label(pinned)
                ));
            }
            Event::CheckFailed { address, message } => {
                ctx.shell.warn(&format!("{address}: cannot check for a newer image ({message}); the pin is used"))
            }
            Event::CatalogFallback { address, cvm } => ctx.shell.note(&format!(
                "{address}: cvm.{cvm} does not exist yet, so the image was chosen from the whole OS image catalog"
            )),
            Event::Unchanged { .. } => {}
        }
    }
    if out.lock != lock {
        lockfile::write(&path, &out.lock)?;
    }
    datasources::substitute(cfg, &out.values).map_err(|e| data_errors(cfg, e))
}
