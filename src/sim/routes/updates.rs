//! Every update endpoint: the unified `PATCH /cvms/{id}`, the per-field ones (`/envs`,
//! `/docker-compose`, `/pre-launch-script`, `/resources`, `/visibility`, `/os-image`), the
//! compose-file pair (`/compose_file/provision`, `PATCH /compose_file`), and the on-chain
//! confirmations (`X-Compose-Hash` + `X-Transaction-Hash`, `/commit-update`).
//!
//! Each makes an [`Update`] and goes through [`update`]; a held update is confirmed through
//! [`confirm`]. These two interleave the world's rules with the chain's answers, never holding
//! the world across a chain call. An update that leaves the CVM as it is restarts nothing and
//! is answered `status: no_change` ([`Applied::Unchanged`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::chain::Chain;
use crate::sim::edge::{ApiVersion, Body, Text, confirmation, header};
use crate::sim::error::ApiError;
use crate::sim::requests::{
    CommitUpdate, ComposeChange, ComposeCommit, EnvsRequest, OsImageRequest, ResourcesRequest, Update,
    VisibilityRequest, need,
};
use crate::sim::shapes;
use crate::sim::world::{Applied, now_ms};

/// The shared path of every update: checked whole, then held for the chain (465) when it
/// changes an on-chain app's compose hash (or is prepare-only), else applied with one
/// restart (or found to change nothing).
async fn update(sim: &Sim, id: &str, u: Update, prepare_only: bool) -> Result<Applied, ApiError> {
    let cfg = sim.config();
    let (seq, app_id, held) = sim.read(|w| {
        let c = w.cvm(id)?;
        Ok::<_, ApiError>((c.seq, c.app_id.clone(), w.check_update(c.seq, &u, prepare_only, &cfg)?))
    })?;
    if let Some(hash) = held {
        let allowed = match cfg.chain_rpc.as_deref() {
            Some(rpc) => Chain::at(Some(rpc)).allows(&app_id, &hash).await.ok(),
            None => None,
        };
        let h = sim.change(|w| w.hold_update(seq, u, &hash, allowed, now_ms()))?;
        return Err(ApiError::HashRequired(Box::new(h)));
    }
    sim.change(|w| w.apply_update(seq, &u, &cfg, now_ms()))
}

/// Applies a held update, named by its token or by its hash (and CVM), once the chain shows
/// it: the transaction registered the hash (else 467; not asked when the hash was registered
/// before, `already-registered`) and the app contract allows it (else 468).
async fn confirm(sim: &Sim, token: &str, hash: Option<&str>, seq: Option<u64>, tx: &str) -> Result<Applied, ApiError> {
    let cfg = sim.config();
    let (token, hash, app_id) = sim.read(|w| {
        let p = w
            .pending(token, hash, seq)
            .ok_or_else(|| ApiError::expired("Compose hash expired or unknown: send the update again"))?;
        let c = w.cvms.get(&p.cvm_seq).ok_or_else(ApiError::cvm_not_found)?;
        Ok::<_, ApiError>((p.token.clone(), p.compose_hash.clone(), c.app_id.clone()))
    })?;
    let chain = Chain::at(cfg.chain_rpc.as_deref());
    if tx != "already-registered" && !chain.registers(tx, &app_id, &hash).await? {
        return Err(ApiError::tx_not_verified());
    }
    if !chain.allows(&app_id, &hash).await? {
        return Err(ApiError::hash_not_allowed());
    }
    sim.change(|w| w.confirm(&token, &cfg, now_ms()))
}

/// [`confirm`] by the confirmation headers of an update request.
async fn confirm_by_headers(sim: &Sim, id: &str, hash: &str, tx: &str) -> Result<Applied, ApiError> {
    let seq = sim.read(|w| w.cvm(id).map(|c| c.seq))?;
    confirm(sim, "", Some(hash), Some(seq), tx).await
}

fn accepted(v: Value) -> Res {
    Ok((StatusCode::ACCEPTED, axum::Json(v)).into_response())
}

/// A per-field endpoint's answer: 202 with the operation started, or 200 `no_change`.
fn started(applied: Applied) -> Res {
    match applied {
        Applied::Started(corr) => accepted(shapes::update_started(&corr)),
        Applied::Unchanged => ok(shapes::unchanged(None)),
    }
}

/// The unified PATCH's answer: 202 with the operation started, or 200 `no_change` with the
/// correlation id of an operation that is already over.
fn patched(applied: Applied) -> Res {
    match applied {
        Applied::Started(corr) => accepted(shapes::accepted(&corr)),
        Applied::Unchanged => ok(shapes::unchanged(Some(&uuid::Uuid::new_v4().to_string()))),
    }
}

fn nothing_to_update() -> ApiError {
    ApiError::invalid("body", "nothing to update")
}

/// `PATCH /cvms/{id}`: any fields at once (unknown ones refused); `X-Prepare-Only: true` holds
/// an on-chain app's update without applying it.
pub async fn patch(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, Body(u): Body<Update>) -> Res {
    if let Some((hash, tx)) = confirmation(&headers) {
        return patched(confirm_by_headers(&sim, &id, hash, tx).await?);
    }
    if u.is_empty() {
        return Err(nothing_to_update());
    }
    let prepare = header(&headers, "x-prepare-only") == Some("true");
    patched(update(&sim, &id, u, prepare).await?)
}

/// `POST /cvms/{id}/commit-update`: applies the update held under a 465's commit token.
pub async fn commit_update(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<CommitUpdate>) -> Res {
    let token = need(req.token, "token")?;
    let hash = need(req.compose_hash, "compose_hash")?;
    let tx = req.transaction_hash.unwrap_or_else(|| "already-registered".into());
    let seq = sim.read(|w| {
        let seq = w.cvm(&id)?.seq;
        match w.pending_updates.get(&token) {
            Some(p) if p.cvm_seq == seq && p.compose_hash == hash => Ok(seq),
            _ => Err(ApiError::expired_token()),
        }
    })?;
    match confirm(&sim, &token, Some(&hash), Some(seq), &tx).await? {
        Applied::Started(corr) => ok(json!({"correlation_id": corr, "status": "in_progress"})),
        Applied::Unchanged => ok(shapes::unchanged(Some(&uuid::Uuid::new_v4().to_string()))),
    }
}

/// `PATCH /cvms/{id}/envs`: the encrypted env, and the env keys when they change (phase 2 of
/// an on-chain change carries `compose_hash` and `transaction_hash`).
pub async fn envs(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<EnvsRequest>) -> Res {
    let enc = need(req.encrypted_env, "encrypted_env")?;
    let before = sim.read(|w| w.cvm(&id).map(|c| c.env_keys()))?;
    let changed = req.env_keys.as_ref().is_some_and(|k| *k != before);
    let u = Update { encrypted_env: Some(enc), allowed_envs: req.env_keys, ..Update::default() };
    let applied = match (req.compose_hash, req.transaction_hash) {
        (Some(hash), Some(tx)) => confirm_by_headers(&sim, &id, &hash, &tx).await?,
        _ => update(&sim, &id, u, false).await?,
    };
    match applied {
        Applied::Started(corr) => accepted(shapes::envs_updated(&corr, changed)),
        Applied::Unchanged => ok(shapes::unchanged(None)),
    }
}

/// The text-bodied updates (`/docker-compose`, `/pre-launch-script`).
async fn text_update(sim: Sim, headers: HeaderMap, id: String, field: &str, body: Text) -> Res {
    let text = body.0.map_err(|()| ApiError::invalid(field, "body must be UTF-8 text"))?;
    if let Some((hash, tx)) = confirmation(&headers) {
        return started(confirm_by_headers(&sim, &id, hash, tx).await?);
    }
    let u = match field {
        "docker_compose_file" => Update { docker_compose_file: Some(text), ..Update::default() },
        _ => Update { pre_launch_script: Some(text), ..Update::default() },
    };
    started(update(&sim, &id, u, false).await?)
}

pub async fn docker_compose(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, body: Text) -> Res {
    text_update(sim, headers, id, "docker_compose_file", body).await
}

pub async fn pre_launch_script(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, body: Text) -> Res {
    text_update(sim, headers, id, "pre_launch_script", body).await
}

pub async fn resources(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<ResourcesRequest>) -> Res {
    let u = Update {
        vcpu: req.vcpu,
        memory: req.memory,
        disk_size: req.disk_size,
        instance_type: req.instance_type,
        ..Update::default()
    };
    if u.is_empty() {
        return Err(nothing_to_update());
    }
    update(&sim, &id, u, false).await?;
    ok(Value::Null)
}

/// `PATCH /cvms/{id}/visibility`: answers with the CVM's 2025-10-28 detail (the SDK's schema
/// for this route, whatever version was asked for).
pub async fn visibility(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<VisibilityRequest>) -> Res {
    let u = Update {
        public_sysinfo: req.public_sysinfo,
        public_logs: req.public_logs,
        public_tcbinfo: req.public_tcbinfo,
        ..Update::default()
    };
    if u.is_empty() && req.listed.is_none() {
        return Err(nothing_to_update());
    }
    if !u.is_empty() {
        update(&sim, &id, u, false).await?;
    }
    ok(sim.change(|w| {
        let seq = w.cvm(&id)?.seq;
        if let Some(l) = req.listed {
            w.cvms.get_mut(&seq).expect("found").listed = l;
        }
        Ok::<_, ApiError>(shapes::cvm(ApiVersion::V20251028, w, &w.cvms[&seq], now_ms()))
    })?)
}

pub async fn os_image(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<OsImageRequest>) -> Res {
    let name = need(req.os_image_name.or(req.image), "os_image_name")?;
    update(&sim, &id, Update { image: Some(name), ..Update::default() }, false).await?;
    ok(Value::Null)
}

/// `POST /cvms/{id}/compose_file/provision`: the hash a compose change would give, kept for
/// its commit; says whether an on-chain app's contract already allows it.
pub async fn provision_compose(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Body(change): Body<ComposeChange>,
) -> Res {
    let cfg = sim.config();
    let p = sim.change(|w| {
        let seq = w.cvm(&id)?.seq;
        w.prepare_compose(seq, change, &cfg, now_ms())
    })?;
    let registered =
        p.onchain && Chain::at(cfg.chain_rpc.as_deref()).allows(&p.app_id, &p.compose_hash).await.unwrap_or(false);
    ok(shapes::compose_prepared(&p, registered))
}

/// `PATCH /cvms/{id}/compose_file`: applies a provisioned compose (468 when an on-chain app's
/// contract does not allow its hash).
pub async fn commit_compose(State(sim): State<Sim>, Path(id): Path<String>, Body(req): Body<ComposeCommit>) -> Res {
    let cfg = sim.config();
    let commit = sim.read(|w| w.compose_commit(&id, req))?;
    if let Some(app_id) = &commit.onchain_app
        && !Chain::at(cfg.chain_rpc.as_deref()).allows(app_id, &commit.hash).await?
    {
        return Err(ApiError::hash_not_allowed());
    }
    sim.change(|w| w.commit_compose(&commit.hash, &commit.update, &cfg, now_ms()))?;
    ok(Value::Null)
}
