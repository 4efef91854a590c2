//! `teeform workspace list|show`: the workspaces of the backend in use (`--backend`, else
//! the manifest's `backend:`), and the one this run uses (`--workspace`, `TEEFORM_WORKSPACE`,
//! else `default`). Workspaces are made by using them; nothing here changes a state.

use std::time::Duration;

use super::context::Ctx;
use super::error::{CliResult, exit};

/// `list`: one name per line, the one in use marked `*` (as Terraform prints them); the one
/// in use is listed even before it holds a state.
pub async fn list(ctx: &Ctx) -> CliResult {
    let opts = ctx.state_options("workspace list", Duration::ZERO)?;
    let mut names = crate::state::workspaces(&opts).await?;
    if !names.contains(&opts.workspace) {
        names.push(opts.workspace.clone());
        names.sort();
    }
    let mut text = String::new();
    for n in names {
        text.push_str(if n == opts.workspace { "* " } else { "  " });
        text.push_str(&n);
        text.push('\n');
    }
    ctx.shell.print(&text)?;
    Ok(exit::OK)
}

/// `show`: the workspace this run uses.
pub fn show(ctx: &Ctx) -> CliResult {
    let opts = ctx.state_options("workspace show", Duration::ZERO)?;
    ctx.shell.println(&opts.workspace)?;
    Ok(exit::OK)
}
