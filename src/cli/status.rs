//! `teeform status [--json]`: a table of the CVMs — the manifest's and those in state — with
//! their status as the API reports it now, app id, compose hash and what apply would do to
//! them (as `phala cvms list` shows a table, plus the plan's view), then the instances of
//! their apps that teeform does not manage, with the `import` that would. Reads the API and
//! state; changes nothing.

use std::collections::BTreeSet;

use super::PlanArgs;
use super::context::Ctx;
use super::error::{CliResult, exit};
use super::shared::planning::{make_plan, mode};
use super::shared::{datasources, session};
use crate::model::Address;
use crate::plan::{Action, Plan};

/// One row of the table.
struct Row {
    address: String,
    name: String,
    status: String,
    app_id: String,
    compose_hash: String,
    pending: String,
}

fn pending(p: &Plan, address: &str) -> String {
    let mut parts = Vec::new();
    if let Some(c) = p.changes.iter().find(|c| c.address.as_str() == address) {
        let what = match c.action {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "destroy",
        };
        parts.push(if c.restarts() { format!("{what} (restarts)") } else { what.to_string() });
    }
    if p.attention.iter().any(|a| a.address.as_str() == address) {
        parts.push("needs attention".to_string());
    }
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

pub async fn run(ctx: &Ctx, args: &PlanArgs, as_json: bool) -> CliResult {
    let mut s = session::open(ctx, &args.run, "status").await?;
    datasources::resolve_for_run(ctx, &mut s.config, s.store.as_ref(), &s.api, args).await?;
    let p = make_plan(ctx, &s, args, mode(args)).await?;
    let snap = s.store.snapshot().await?;
    s.store.close().await?;
    let addresses: BTreeSet<String> = s
        .config
        .cvms
        .values()
        .flat_map(|c| c.instances())
        .map(|a| a.as_str().to_string())
        .chain(snap.resources.keys().map(|a| a.as_str().to_string()))
        .collect();
    let rows: Vec<Row> = addresses
        .into_iter()
        .map(|address| {
            // What the refresh saw, else what state last recorded.
            let rec = p
                .refreshed
                .iter()
                .find(|r| r.address.as_str() == address)
                .or_else(|| snap.resources.get(address.as_str()));
            let key = Address::parse(&address).map(|a| a.key().to_string()).unwrap_or_default();
            let name = rec
                .map(|r| r.attrs.name.clone())
                .or_else(|| s.config.cvms.get(&key).map(|c| c.name.clone()))
                .unwrap_or_default();
            let status = match rec {
                Some(r) => r.status.as_ref().map_or("unknown".into(), |st| st.to_string()),
                None => "not created".into(),
            };
            Row {
                pending: pending(&p, &address),
                name,
                status,
                app_id: rec.and_then(|r| r.ids.app_id.clone()).unwrap_or_else(|| "-".into()),
                compose_hash: rec.and_then(|r| r.compose_hash.clone()).unwrap_or_else(|| "-".into()),
                address,
            }
        })
        .collect();
    let rows: Vec<Row> = rows.into_iter().chain(p.unmanaged.iter().map(outside)).collect();
    if as_json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "address": (r.address != "-").then_some(&r.address), "name": r.name, "status": r.status,
                    "app_id": (r.app_id != "-").then_some(&r.app_id),
                    "compose_hash": (r.compose_hash != "-").then_some(&r.compose_hash),
                    "pending": r.pending,
                })
            })
            .collect();
        ctx.shell.print_json(&v)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        ctx.shell.println("The manifest declares no CVM and the state holds none.")?;
        return Ok(exit::OK);
    }
    ctx.shell.print(&table(&rows))?;
    Ok(exit::OK)
}

/// The row of an instance of a managed app that no record holds (made outside teeform): no
/// address, and how to manage it.
fn outside(u: &crate::plan::Unmanaged) -> Row {
    let pending = match &u.import_as {
        Some(a) => format!("not managed: teeform import {a} {}", u.id),
        None if !u.after_roll.is_empty() => format!("not managed: import it once the roll of {} ends", u.entry),
        None => "not managed".into(),
    };
    Row {
        address: "-".into(),
        name: u.name.clone(),
        status: u.status.to_string(),
        app_id: u.app_id.clone(),
        compose_hash: u.compose_hash.clone().unwrap_or_else(|| "-".into()),
        pending,
    }
}

/// The rows as a table: columns padded to their widest cell, a heading line first.
fn table(rows: &[Row]) -> String {
    let head = ["ADDRESS", "NAME", "STATUS", "APP ID", "COMPOSE HASH", "PENDING"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let hash =
                if r.compose_hash == "-" { "-".into() } else { crate::plan::render::short_hash(&r.compose_hash) };
            [r.address.clone(), r.name.clone(), r.status.clone(), r.app_id.clone(), hash, r.pending.clone()]
        })
        .collect();
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..6).map(width).collect();
    let line = |c: &[&str]| {
        let mut l = String::new();
        for (i, cell) in c.iter().enumerate() {
            if i == 5 {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut text = line(&head);
    for c in &cells {
        text.push_str(&line(&c.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    text
}
