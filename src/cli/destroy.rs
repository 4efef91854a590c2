//! `teeform destroy [--target ADDRESS] [--exclude ADDRESS] [--auto-approve]`: destroy every
//! CVM in state, or those targeting picks.

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::execute::{confirm, execute};
use super::shared::planning::{make_plan, print_plan};
use super::shared::session;
use super::{PlanArgs, RunArgs, TargetArgs};
use crate::plan::Mode;

pub async fn run(ctx: &Ctx, run: &RunArgs, targets: &TargetArgs, auto_approve: bool) -> CliResult {
    let s = session::open(ctx, run, "destroy").await?;
    let args = PlanArgs {
        run: run.clone(),
        refresh: true,
        refresh_only: false,
        destroy: true,
        locked: false,
        targets: targets.clone(),
        replace: vec![],
        allow_replace: false,
    };
    let p = make_plan(ctx, &s, &args, Mode::Destroy).await?;
    print_plan(ctx, &p, false)?;
    if p.changes.is_empty() {
        s.store.close().await?;
        return Ok(exit::OK);
    }
    let question = if targets.target.is_empty() && targets.exclude.is_empty() {
        "Do you really want to destroy every CVM in this state? There is no undo."
    } else {
        "Do you really want to destroy the CVMs above? There is no undo."
    };
    confirm(ctx, auto_approve, question)?;
    let code = execute(ctx, &s.store, &s.api, &p, s.secrets, s.digests, run.parallelism, None, None).await?;
    s.store.close().await?;
    Ok(code)
}
