//! `teeform destroy [--auto-approve]`: destroy every CVM in state.

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::execute::{confirm, execute};
use super::shared::planning::{make_plan, print_plan};
use super::shared::session;
use super::{PlanArgs, RunArgs};
use crate::plan::Mode;

pub async fn run(ctx: &Ctx, run: &RunArgs, auto_approve: bool) -> CliResult {
    let s = session::open(ctx, run, "destroy").await?;
    let args = PlanArgs { run: run.clone(), refresh: true, refresh_only: false, destroy: true, locked: false };
    let p = make_plan(ctx, &s, &args, Mode::Destroy).await?;
    print_plan(ctx, &p, false)?;
    if p.changes.is_empty() {
        s.store.close().await?;
        return Ok(exit::OK);
    }
    confirm(ctx, auto_approve, "Do you really want to destroy every CVM in this state? There is no undo.")?;
    let code = execute(ctx, &s.store, &s.api, &p, s.secrets, s.digests, run.parallelism, None, false).await?;
    s.store.close().await?;
    Ok(code)
}
