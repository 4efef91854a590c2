//! `teeform state list`: resource addresses in state.

use super::context::Ctx;
use super::error::{CliResult, exit};

pub async fn run(ctx: &Ctx) -> CliResult {
    let Some(store) = ctx.open_state_read("state").await? else {
        // No state here yet: it holds nothing.
        return Ok(exit::OK);
    };
    let snap = store.snapshot().await?;
    let mut text = String::new();
    for a in snap.resources.keys() {
        text.push_str(a.as_str());
        text.push('\n');
    }
    store.close().await?;
    ctx.shell.print(&text)?;
    Ok(exit::OK)
}
