//! Apps (`GET /apps`, `/apps/{app_id}`, `/apps/{app_id}/cvms`): what `phala cvms list` reads.
//! An app has one CVM per instance (`POST /cvms/{id}/replicas` adds one).

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::edge::ApiVersion;
use crate::sim::error::ApiError;
use crate::sim::requests::PageQuery;
use crate::sim::shapes;
use crate::sim::world::now_ms;

/// UNVERIFIED: the SDK's catalogue has no "app not found" code.
fn app_not_found() -> ApiError {
    ApiError::plain(404, "App not found")
}

/// Apps whose name or ids contain `search` (any case), 50 a page unless asked (at most 100).
pub async fn list(State(sim): State<Sim>, v: ApiVersion, Query(q): Query<PageQuery>) -> Res {
    let (page, size) = q.page(50, 100);
    let needle = q.search.as_deref().unwrap_or("").to_ascii_lowercase();
    let now = now_ms();
    let (apps, total): (Vec<Value>, u64) = sim.read(|w| {
        let hits: Vec<_> = w
            .cvms
            .values()
            .filter(|c| {
                [&c.name, &c.app_id, &c.vm_uuid, &c.instance_id]
                    .iter()
                    .any(|f| f.to_ascii_lowercase().contains(&needle))
            })
            .collect();
        let apps = hits
            .iter()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .map(|c| shapes::app(v, w, c, now))
            .collect();
        (apps, hits.len() as u64)
    });
    ok(
        json!({"dstack_apps": apps, "page": page, "page_size": size, "total": total, "total_pages": total.div_ceil(size).max(1)}),
    )
}

pub async fn get(State(sim): State<Sim>, v: ApiVersion, Path(app_id): Path<String>) -> Res {
    ok(sim.read(|w| w.app(&app_id).map(|c| shapes::app(v, w, c, now_ms()))).ok_or_else(app_not_found)?)
}

/// Every instance of the app (the SDKs' `getAppCvms`: an array of CVM list items).
pub async fn cvms(State(sim): State<Sim>, v: ApiVersion, Path(app_id): Path<String>) -> Res {
    let items: Vec<Value> =
        sim.read(|w| w.instances(&app_id).into_iter().map(|c| shapes::cvm_list_item(v, w, c, now_ms())).collect());
    if items.is_empty() {
        return Err(app_not_found());
    }
    ok(Value::Array(items))
}
