//! Reading CVMs (`GET /cvms/paginated`, `/cvms/{id}` and its parts, `POST /status/batch`),
//! power actions and delete.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value};

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::edge::{ApiVersion, Body};
use crate::sim::error::ApiError;
use crate::sim::requests::{PageQuery, StatusBatch};
use crate::sim::shapes;
use crate::sim::world::{Power, now_ms};

pub async fn list(State(sim): State<Sim>, v: ApiVersion, Query(q): Query<PageQuery>) -> Res {
    let (page, size) = q.page(50, 1000);
    let now = now_ms();
    ok(sim.read(|w| {
        let items = w
            .cvms
            .values()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .map(|c| shapes::cvm_list_item(v, w, c, now))
            .collect();
        shapes::page(items, w.cvms.len() as u64, page, size)
    }))
}

pub async fn get(State(sim): State<Sim>, v: ApiVersion, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| w.cvm(&id).map(|c| shapes::cvm(v, w, c, now_ms())))?)
}

/// The app compose, as stored.
pub async fn app_compose(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| w.cvm(&id).map(|c| c.app_compose.clone()))?)
}

/// The compose file as YAML text.
pub async fn docker_compose(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let text =
        sim.read(|w| w.cvm(&id).map(|c| c.compose_text("docker_compose_file").unwrap_or_default().to_string()))?;
    Ok(([("content-type", "text/yaml")], text).into_response())
}

/// The pre-launch script as a JSON string (empty when there is none).
pub async fn pre_launch_script(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let text = sim.read(|w| w.cvm(&id).map(|c| c.compose_text("pre_launch_script").unwrap_or_default().to_string()))?;
    ok(Value::String(text))
}

pub async fn available_os_images(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| w.cvm(&id).map(|c| shapes::available_os_images(w, c)))?)
}

pub async fn state(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| w.cvm(&id).map(|c| shapes::cvm_state(c, now_ms())))?)
}

/// The most CVMs one `POST /status/batch` may ask about. UNVERIFIED: the API documents no
/// limit; the `phala` CLI sends at most 100 a request, and so must a client of this simulator
/// (more is a 422), so a client that sends more is caught here.
const STATUS_BATCH_MAX: usize = 100;

/// The status of each CVM asked for, by the id as asked; unknown ones are left out.
pub async fn status_batch(State(sim): State<Sim>, Body(req): Body<StatusBatch>) -> Res {
    if req.vm_uuids.len() > STATUS_BATCH_MAX {
        return Err(ApiError::invalid(
            "vm_uuids",
            format!("at most {STATUS_BATCH_MAX} CVMs a request, not {}", req.vm_uuids.len()),
        ));
    }
    let now = now_ms();
    let out: Map<String, Value> = sim.read(|w| {
        req.vm_uuids.iter().filter_map(|u| Some((u.clone(), shapes::cvm_status(w.cvm(u).ok()?, now)))).collect()
    });
    ok(Value::Object(out))
}

fn power(sim: &Sim, id: &str, action: Power) -> Res {
    let cfg = sim.config();
    let now = now_ms();
    ok(sim.change(|w| {
        let seq = w.cvm(id)?.seq;
        w.power(seq, action, &cfg, now)?;
        Ok(shapes::vm(w, &w.cvms[&seq], now))
    })?)
}

pub async fn start(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, Power::Start)
}

pub async fn stop(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, Power::Stop)
}

pub async fn shutdown(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, Power::Shutdown)
}

pub async fn restart(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, Power::Restart)
}

pub async fn delete(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    sim.change(|w| {
        let seq = w.cvm(&id)?.seq;
        w.delete(seq);
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}
