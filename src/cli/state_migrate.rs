//! `state migrate --to KIND`: copy the state from the backend in use to another one.

use std::time::Duration;

use super::BackendArg;
use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use crate::state::{Backend, OpenOptions};

fn kind(b: &Backend) -> BackendArg {
    match b {
        Backend::Local => BackendArg::Local,
        Backend::Postgres(_) => BackendArg::Postgres,
    }
}

fn name(k: BackendArg) -> &'static str {
    match k {
        BackendArg::Local => "local",
        BackendArg::Postgres => "postgres",
    }
}

pub async fn run(ctx: &Ctx, to: BackendArg, to_workspace: Option<&str>) -> CliResult {
    let from = ctx.state_options("state migrate", Duration::from_secs(5))?;
    if kind(&from.backend) == to {
        let mut e = CliError::new(format!("the state in use already is in the `{}` backend", name(to)));
        // The manifest says `backend: postgres` already while the state is still local: name
        // the command that copies it from where it is.
        if to == BackendArg::Postgres && crate::state::exists(&from.local_dir()) {
            e = e.hint(format!(
                "a local state is here: copy it with `{}`",
                ctx.command_line("--backend local state migrate --to postgres")
            ));
        }
        return Err(e.hint("name the backend the state is in now with --backend (or the manifest's `backend:`)"));
    }
    if let Some(w) = to_workspace {
        crate::state::check_workspace(w).map_err(CliError::new)?;
    }
    if matches!(from.backend, Backend::Local) && !crate::state::exists(&from.local_dir()) {
        return Err(ctx.no_project());
    }
    let target = OpenOptions {
        backend: ctx.backend(to)?,
        workspace: to_workspace.map_or_else(|| from.workspace.clone(), str::to_string),
        ..from.clone()
    };
    let src = crate::state::open(&from).await?;
    let dst = crate::state::open(&target).await?;
    let result = crate::state::migrate(src.as_ref(), dst.as_ref()).await;
    // Both ends are released whatever happened; a failed copy leaves the source as it was.
    let closed = (src.close().await, dst.close().await);
    let m = result?;
    closed.0?;
    closed.1?;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let sh = &ctx.shell;
    sh.println(&format!(
        "Copied the state from the {} to the {}: {}, {}, {} (lineage {}, serial {}). Read back and verified identical.",
        src.describe(),
        dst.describe(),
        plural(m.resources, "resource"),
        plural(m.outputs, "output"),
        plural(m.journal, "journal entry").replace("entrys", "entries"),
        m.meta.lineage,
        m.meta.serial
    ))?;
    if let Some(serial) = m.replaced {
        sh.println(&format!("It replaced an older copy of the same state (serial {serial})."))?;
    }
    sh.println(&format!(
        "Next: set `backend: {}` in the manifest (or pass --backend {}). The {} was left as it was: it is now a stale copy.",
        name(to),
        name(to),
        src.describe()
    ))?;
    Ok(exit::OK)
}
