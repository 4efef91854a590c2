//! What the platform offers: nodes (`/teepods/available`, and the whole create-resource graph
//! `/teepods/cvm-create-resources`), instance types, KMSes (nodes, or contracts from API
//! version 2026-06-23 on, with their nodes) and their per-app keys, OS images.

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::edge::ApiVersion;
use crate::sim::error::ApiError;
use crate::sim::requests::PageQuery;
use crate::sim::shapes;
use crate::sim::world::{Kms, World};

pub async fn nodes(State(sim): State<Sim>) -> Res {
    ok(sim.read(shapes::nodes))
}

pub async fn create_resources(State(sim): State<Sim>) -> Res {
    ok(sim.read(shapes::cvm_create_resources))
}

pub async fn instance_types(State(sim): State<Sim>) -> Res {
    let items: Vec<Value> = sim.read(|w| w.instance_types.iter().map(shapes::instance_type).collect());
    ok(json!({"result": [{"name": "tdx", "items": items, "total": items.len()}]}))
}

pub async fn instance_family(State(sim): State<Sim>, Path(family): Path<String>) -> Res {
    let items: Vec<Value> =
        sim.read(|w| w.instance_types.iter().filter(|t| t.family == family).map(shapes::instance_type).collect());
    if items.is_empty() {
        return Err(ApiError::coded(404, "ERR-02-001", format!("Instance type family {family} not found")));
    }
    ok(json!({"items": items, "total": items.len(), "family": family}))
}

/// One page of a catalogue (100 a page unless asked).
fn page_of(items: Vec<Value>, q: &PageQuery) -> Res {
    let (page, size) = q.page(100, 1000);
    let total = items.len() as u64;
    let items = items.into_iter().skip(((page - 1) * size) as usize).take(size as usize).collect();
    ok(shapes::page(items, total, page, size))
}

/// `GET /kms`: KMS nodes, or (2026-06-23 on) KMS contracts; `is_onchain` filters either.
pub async fn kms_list(State(sim): State<Sim>, v: ApiVersion, Query(q): Query<PageQuery>) -> Res {
    let items = sim.read(|w| {
        w.kms
            .iter()
            .filter(|k| q.is_onchain.is_none_or(|on| on == k.chain_id.is_some()))
            .map(|k| shapes::kms_resource(v, k))
            .collect()
    });
    page_of(items, &q)
}

fn kms_not_found() -> ApiError {
    ApiError::coded(404, "ERR-02-011", "KMS not found")
}

/// A KMS by node id or slug, or by its contract's `kc_` id; answered as a node or (2026-06-23
/// on) as a contract.
///
/// UNVERIFIED: the KMS's kind (`phala`, `base`, `ethereum`) is taken too, as teeform names the
/// KMS of a CVM whose KMS id the API does not report (the Phala KMS in a 2026-01-21 CVM).
fn named<'a>(w: &'a World, name: &str) -> Option<&'a Kms> {
    w.kms_named(name)
        .or_else(|| w.kms.iter().find(|k| shapes::kms_contract_id(k) == name))
        .or_else(|| w.kms.iter().find(|k| shapes::kms_type(k) == name))
}

pub async fn kms_get(State(sim): State<Sim>, v: ApiVersion, Path(kms): Path<String>) -> Res {
    ok(sim.read(|w| named(w, &kms).map(|k| shapes::kms_resource(v, k))).ok_or_else(kms_not_found)?)
}

/// `GET /kms/{slug}/nodes`: the nodes of a KMS contract.
pub async fn kms_nodes(State(sim): State<Sim>, Path(kms): Path<String>) -> Res {
    ok(sim.read(|w| named(w, &kms).map(shapes::kms_contract_nodes)).ok_or_else(kms_not_found)?)
}

/// An app's env-encryption key from a KMS, signed by the simulator's test KMS key
/// ([`crate::sim::kms_signer`]) in dstack's legacy form. The answer is exactly
/// `{public_key, signature}`: `@phala/cloud`'s schema for it is strict. (UNVERIFIED: whether
/// the API passes on the timestamped `signature_v1` newer KMS builds make; teeform accepts
/// both.) The knob `kms_bad_signature` signs with another key, as a KMS (or an API in
/// between) that cannot be trusted would.
pub async fn kms_pubkey(State(sim): State<Sim>, Path((kms, app_id)): Path<(String, String)>) -> Res {
    let key = sim.read(|w| {
        named(w, &kms).ok_or_else(kms_not_found)?;
        let app = app_id.trim_start_matches("0x");
        if app.len() != 40 || !app.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::invalid("app_id", "app_id must be 40 hex characters"));
        }
        Ok(w.app_env_pubkey(app))
    })?;
    let secret = if sim.config().kms_bad_signature { crate::sim::WRONG_KMS_SECRET } else { crate::sim::KMS_SECRET };
    let app: [u8; 20] = hex::decode(app_id.trim_start_matches("0x"))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::invalid("app_id", "app_id must be 40 hex characters"))?;
    let pk = hex::decode(&key).unwrap_or_default();
    ok(json!({"public_key": key, "signature": crate::sim::attest::kms_sign(&secret, &pk, &app, None)}))
}

pub async fn os_images(State(sim): State<Sim>, Query(q): Query<PageQuery>) -> Res {
    let items = sim.read(|w| {
        w.os_images.iter().filter(|i| q.is_dev.is_none_or(|d| d == i.is_dev)).map(shapes::os_image).collect()
    });
    page_of(items, &q)
}
