//! The simulator's own routes (no API key): `GET /_sim/stats`, `GET|POST /_sim/config` (the
//! knobs at runtime) and `GET /_sim/cvms/{id}/env` (a CVM's env, decrypted with the test KMS
//! key, so tests check what teeform sent without the simulator ever storing plaintext).

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::{Res, ok};
use crate::sim::edge::Body;
use crate::sim::error::ApiError;
use crate::sim::world::now_ms;
use crate::sim::{Sim, SimConfig};

/// Requests counted (by path and by endpoint), injected faults, and per CVM its restarts, updates, status and ids.
pub async fn stats(State(sim): State<Sim>) -> Res {
    let stats = sim.stats();
    let now = now_ms();
    let (cvms, count): (Map<String, Value>, usize) = sim.read(|w| {
        let cvms = w
            .cvms
            .values()
            .map(|c| {
                let v = json!({"restarts": c.restarts, "updates": c.updates, "status": c.status(now), "vcpu": c.vcpu, "memory": c.memory, "id": c.vm_uuid, "app_id": c.app_id, "compose_hash": c.compose_hash});
                (c.name.clone(), v)
            })
            .collect();
        (cvms, w.cvms.len())
    });
    // Per app: its instances; the most of them not running at once after their first boot, the
    // fewest running at once while one was down, and the most that existed at once (deleted
    // instances included).
    let apps: Map<String, Value> = sim.read(|w| {
        let ids: std::collections::BTreeSet<&str> = w.cvms.values().map(|c| c.app_id.as_str()).collect();
        ids.into_iter()
            .map(|a| {
                let instances: Vec<Value> = w
                    .instances(a)
                    .iter()
                    .map(|c| json!({"vm_uuid": c.vm_uuid, "instance_id": c.instance_id, "node_id": c.node_id, "status": c.status(now), "restarts": c.restarts, "updates": c.updates, "compose_hash": c.compose_hash}))
                    .collect();
                let stats = json!({
                    "instances": instances,
                    "max_unavailable": w.max_unavailable(a, now),
                    "min_running": w.min_running(a, now),
                    "max_instances": w.max_instances(a, now),
                });
                (a.to_string(), stats)
            })
            .collect()
    });
    ok(json!({
        "total_requests": stats.total_requests, "requests": stats.requests, "endpoints": stats.endpoints,
        "injected_errors": stats.injected_errors,
        "injected_hangs": stats.injected_hangs, "cvm_count": count, "cvms": cvms, "apps": apps,
    }))
}

/// A health endpoint for tests' `health:` checks: answers the `health_status` knob.
pub async fn health(State(sim): State<Sim>) -> Res {
    let status = axum::http::StatusCode::from_u16(sim.config().health_status).unwrap_or(axum::http::StatusCode::OK);
    Ok((status, "health").into_response())
}

pub async fn config_get(State(sim): State<Sim>) -> Res {
    ok(serde_json::to_value(sim.config()).unwrap_or_default())
}

/// Changes knobs at runtime: any subset of the [`SimConfig`] fields (the credentials excepted).
pub async fn config_set(State(sim): State<Sim>, Body(patch): Body<Map<String, Value>>) -> Res {
    let mut current = serde_json::to_value(sim.config()).unwrap_or_default();
    for (k, v) in patch {
        current[k] = v;
    }
    let new: SimConfig = serde_json::from_value(current).map_err(|e| ApiError::invalid("config", e.to_string()))?;
    {
        let mut c = sim.inner.config.lock().expect("config lock");
        let (api_key, bearer_token) = (c.api_key.clone(), c.bearer_token.clone());
        *c = SimConfig { api_key, bearer_token, ..new };
    }
    sim.configure_chain();
    config_get(State(sim)).await
}

pub async fn env(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| {
        let c = w.cvm(&id)?;
        let env = match &c.encrypted_env {
            Some(e) => crate::envcrypt::decrypt(e, &w.app_env_key(&c.app_id))
                .map_err(|e| ApiError::plain(500, e.to_string()))?,
            None => vec![],
        };
        let m: Map<String, Value> = env.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        Ok::<_, ApiError>(json!({"env": m, "allowed_envs": c.env_keys()}))
    })?)
}
