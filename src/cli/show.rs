//! `teeform show [PLAN_FILE] [--json|--markdown]`: a saved plan, or the state.

use std::path::Path;

use super::View;
use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::planning::show_plan;
use super::shared::records::{output_json, read_snapshot, record_json, record_text};
use super::shared::saved::SavedPlan;

pub async fn run(ctx: &Ctx, file: Option<&Path>, view: View) -> CliResult {
    if let Some(f) = file {
        let saved = SavedPlan::read(f)?;
        show_plan(ctx, &saved.plan, view)?;
        return Ok(exit::OK);
    }
    let snap = read_snapshot(ctx, "show").await?;
    if view == View::Json {
        let resources = snap.resources.values().map(record_json).collect::<CliResult<Vec<_>>>()?;
        let outputs: serde_json::Map<String, serde_json::Value> =
            snap.outputs.iter().map(|(k, o)| (k.clone(), output_json(o))).collect();
        ctx.shell.print_json(&serde_json::json!({
            "format_version": "1",
            "lineage": snap.meta.lineage,
            "serial": snap.meta.serial,
            "resources": resources,
            "outputs": outputs,
        }))?;
        return Ok(exit::OK);
    }
    if snap.resources.is_empty() {
        ctx.shell.println("The state is empty.")?;
    }
    for r in snap.resources.values() {
        ctx.shell.println(&record_text(r))?;
    }
    Ok(exit::OK)
}
