//! `teeform state bind`: record that the state belongs to the manifest named with `-f`.

use std::time::Duration;

use super::context::Ctx;
use super::error::{CliResult, exit};
use crate::state::Batch;

/// `state bind`: records that the state belongs to the manifest named with `-f`.
pub async fn run(ctx: &Ctx) -> CliResult {
    let opts = ctx.state_options("state bind", Duration::from_secs(5))?;
    if matches!(opts.backend, crate::state::Backend::Local) && !crate::state::exists(&opts.local_dir()) {
        return Err(ctx.no_project());
    }
    let store = crate::state::open(&opts).await?;
    let before = store.meta().await?.manifest;
    let me = ctx.manifest_name();
    store.commit(Batch { bind: Some(me.clone()), ..Default::default() }).await?;
    store.close().await?;
    ctx.shell.println(&match before {
        Some(old) if old != me => format!("The {} now belongs to {me} (it belonged to {old}).", store.describe()),
        _ => format!("The {} belongs to {me}.", store.describe()),
    })?;
    Ok(exit::OK)
}
