//! `teeform plan [--out FILE] [--detailed-exitcode] [--json|--markdown]`: what apply would do.

use std::path::Path;

use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::planning::{make_plan, mode, show_plan};
use super::shared::saved::SavedPlan;
use super::shared::{datasources, onchain, session};
use super::{PlanArgs, View};

pub async fn run(ctx: &Ctx, args: &PlanArgs, out: Option<&Path>, detailed: bool, view: View) -> CliResult {
    let mut s = session::open(ctx, &args.run, "plan").await?;
    datasources::resolve_for_run(ctx, &mut s.config, s.store.as_ref(), &s.api, args).await?;
    let mut p = make_plan(ctx, &s, args, mode(args)).await?;
    let pending = onchain::pending(s.store.as_ref()).await?;
    let env = onchain::read_env(&onchain::env_names(Some(&p), &pending), false)?;
    onchain::annotate(&mut p, &env).await;
    show_plan(ctx, &p, view)?;
    if let Some(path) = out {
        let allowed = s.config.allowed_dirs.iter().map(|d| abs(&s.config.dir.join(d))).collect();
        let passphrase_env = s.config.secrets_passphrase_env.clone();
        let mut saved = SavedPlan::new(p.clone(), s.api.endpoint.clone(), abs(&s.config.dir), allowed, passphrase_env);
        saved.verify = s.config.verify.clone();
        saved.write(path)?;
        if view == View::Human {
            ctx.shell.println(&format!(
                "\nSaved the plan to {}. To apply exactly these actions, run:\n    {}",
                path.display(),
                ctx.command_line(&format!("apply {}", path.display()))
            ))?;
        }
    }
    s.store.close().await?;
    Ok(if detailed && !p.converged() { exit::CHANGES } else { exit::OK })
}

fn abs(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
