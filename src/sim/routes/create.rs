//! Creating a CVM: the legacy flow (`POST /cvms/provision`, then `POST /cvms`) and the
//! same-path flow of the newer SDKs (`POST /cvms` with the provision body, answered with a
//! one-time `token`, then `POST /cvms` with the commit body). The legacy provision endpoint
//! stays, deprecated, as it does on the real API.

use axum::extract::State;
use serde_json::{Map, Value};

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::chain::Chain;
use crate::sim::edge::{ApiVersion, Body, parse};
use crate::sim::error::ApiError;
use crate::sim::requests::{CommitRequest, ProvisionRequest};
use crate::sim::shapes;
use crate::sim::world::now_ms;

/// `POST /cvms/provision` (deprecated): a provision without a commit token.
pub async fn provision(State(sim): State<Sim>, Body(req): Body<ProvisionRequest>) -> Res {
    let cfg = sim.config();
    ok(shapes::provisioned(&sim.change(|w| w.provision(req, &cfg, now_ms(), false))?, None))
}

/// `POST /cvms`: a provision when the body is one (it has `compose_file` or `name` and no
/// `compose_hash`), answered with a one-time commit token; else a commit. UNVERIFIED: how the
/// real API tells the two phases apart on one path.
pub async fn post(State(sim): State<Sim>, v: ApiVersion, Body(body): Body<Map<String, Value>>) -> Res {
    let is_provision =
        (body.contains_key("compose_file") || body.contains_key("name")) && !body.contains_key("compose_hash");
    if is_provision && !sim.config().legacy_create {
        let req: ProvisionRequest = parse(Value::Object(body))?;
        let cfg = sim.config();
        let p = sim.change(|w| w.provision(req, &cfg, now_ms(), true))?;
        return ok(shapes::provisioned(&p, p.token.as_deref()));
    }
    commit(sim, v, parse(Value::Object(body))?).await
}

/// Commits a provision; an on-chain app's contract must allow the compose hash first (468).
async fn commit(sim: Sim, v: ApiVersion, req: CommitRequest) -> Res {
    let cfg = sim.config();
    if let Some((app_id, hash)) = sim.read(|w| w.check_commit(&req))?
        && !Chain::at(cfg.chain_rpc.as_deref()).allows(&app_id, &hash).await?
    {
        return Err(ApiError::hash_not_allowed());
    }
    let now = now_ms();
    ok(sim.change(|w| {
        let seq = w.commit(req, &cfg, now)?;
        Ok(shapes::vm(v, w, &w.cvms[&seq], now))
    })?)
}
