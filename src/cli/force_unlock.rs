//! `teeform force-unlock ID`: remove a lock left behind by a process that is gone.

use std::time::Duration;

use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use crate::state::StateError;

pub async fn run(ctx: &Ctx, id: &str) -> CliResult {
    let opts = ctx.state_options("force-unlock", Duration::ZERO)?;
    match crate::state::unlock(&opts, id).await {
        Ok(()) => {}
        // The holder still runs: the usual hint (`force-unlock ID`) would name this very
        // command again. Say who holds it and what to do instead.
        Err(StateError::Locked { path, holder: Some(h) }) => {
            return Err(CliError::new(format!(
                "the state at {path} is locked by a process that is still running: {h}; force-unlock removes only a lock whose holder is gone, so nothing was removed"
            ))
            .hint(format!("wait for it to finish, or stop that process (pid {} on {}) and run this again", h.pid, h.host)));
        }
        Err(e) => return Err(e.into()),
    }
    ctx.shell.println(&format!("Removed the lock record {id}."))?;
    Ok(exit::OK)
}
