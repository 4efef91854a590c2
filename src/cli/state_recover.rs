//! `teeform state recover [--keep-current]`: put back the last whole copy of a damaged
//! local state (or seal the current one again).

use std::time::Duration;

use super::context::Ctx;
use super::error::{CliResult, exit};

/// The state cannot be opened (it is damaged), so this works on its files.
pub async fn run(ctx: &Ctx, keep_current: bool) -> CliResult {
    let opts = ctx.state_options("state recover", Duration::from_secs(5))?;
    let r = crate::state::recover(&opts, keep_current).await?;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut lines = Vec::new();
    match &r.from_backup {
        Some(b) => {
            lines.push(format!(
                "Restored the state from {} (taken {}, serial {}): {}, {}. It is now at serial {}.",
                b.path,
                b.written_at,
                b.serial,
                plural(r.resources, "resource"),
                plural(r.journal, "interrupted operation"),
                r.serial
            ));
            if let Some(aside) = &r.set_aside {
                lines.push(format!("The state it replaced was set aside in {aside}."));
            }
            lines.push(format!(
                "Changes made after that copy was taken are not in it. Run `{}`: a CVM created since is refused by name with an `import` command to take it back, and saved plans from before are stale.",
                ctx.command_line("plan")
            ));
        }
        None => lines.push(format!(
            "Kept the state as it is ({}, {}) and sealed it again at serial {}. Run `{}` to compare it with the cloud.",
            plural(r.resources, "resource"),
            plural(r.journal, "interrupted operation"),
            r.serial,
            ctx.command_line("plan")
        )),
    }
    for l in lines {
        ctx.shell.println(&l)?;
    }
    Ok(exit::OK)
}
