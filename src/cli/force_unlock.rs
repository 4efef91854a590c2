//! `teeform force-unlock ID`: remove a lock left behind by a process that is gone.

use std::time::Duration;

use super::context::Ctx;
use super::error::{CliResult, exit};

pub async fn run(ctx: &Ctx, id: &str) -> CliResult {
    let opts = ctx.state_options("force-unlock", Duration::ZERO)?;
    crate::state::unlock(&opts, id).await?;
    ctx.shell.println(&format!("Removed the lock record {id}."))?;
    Ok(exit::OK)
}
