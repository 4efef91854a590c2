//! Creating a CVM: `POST /cvms/provision`, then `POST /cvms` (commit).

use axum::extract::State;

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::chain::Chain;
use crate::sim::edge::Body;
use crate::sim::error::ApiError;
use crate::sim::requests::{CommitRequest, ProvisionRequest};
use crate::sim::shapes;
use crate::sim::world::now_ms;

pub async fn provision(State(sim): State<Sim>, Body(req): Body<ProvisionRequest>) -> Res {
    let cfg = sim.config();
    ok(shapes::provisioned(&sim.change(|w| w.provision(req, &cfg, now_ms()))?))
}

/// Commits a provision; an on-chain app's contract must allow the compose hash first (468).
pub async fn commit(State(sim): State<Sim>, Body(req): Body<CommitRequest>) -> Res {
    let cfg = sim.config();
    if let Some((app_id, hash)) = sim.read(|w| w.check_commit(&req))?
        && !Chain::at(cfg.chain_rpc.as_deref()).allows(&app_id, &hash).await?
    {
        return Err(ApiError::hash_not_allowed());
    }
    let now = now_ms();
    ok(sim.change(|w| {
        let seq = w.commit(req, &cfg, now)?;
        Ok(shapes::vm(w, &w.cvms[&seq], now))
    })?)
}
