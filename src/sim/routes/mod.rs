//! The simulated API's routes, by area. Handlers are thin: they take typed requests from the
//! edge, ask the world's rules (and the chain, for on-chain apps), save the world when it
//! changed, and answer with a shape.
//!
//! - `account.rs`: `/auth/me`, workspaces;
//! - `cvms.rs`: reading CVMs (the state also as an event stream), power actions, delete; `rename.rs`: renaming one in place;
//! - `create.rs`: provision and commit, on the legacy and the same-path flow;
//! - `updates.rs`: every update endpoint and the on-chain confirmations (465 → 466/467/468);
//! - `platform.rs`: what the platform offers (nodes and the create-resource graph, instance
//!   types, KMSes — as nodes, or as contracts from 2026-06-23 —, OS images);
//! - `apps.rs`: apps (what the `phala` CLI lists);
//! - `control.rs`: the simulator's own `/_sim` routes (stats, knobs, decrypted env).

mod account;
mod apps;
mod control;
mod create;
mod cvms;
mod platform;
mod rename;
mod updates;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};

use super::Sim;
use super::error::ApiError;
use super::gate::gate;

/// What a handler answers: a shape, or an error.
type Res = Result<axum::response::Response, ApiError>;

pub fn router(sim: Sim) -> Router {
    let api = Router::new()
        .route("/auth/me", get(account::me))
        .route("/workspaces", get(account::workspaces))
        .route("/workspaces/{slug}", get(account::workspace))
        .route("/cvms/paginated", get(cvms::list))
        .route("/cvms/provision", post(create::provision))
        .route("/cvms", post(create::post))
        .route("/cvms/{id}", get(cvms::get).patch(updates::patch).delete(cvms::delete))
        .route("/cvms/{id}/name", patch(rename::rename))
        .route("/cvms/{id}/commit-update", post(updates::commit_update))
        .route("/cvms/{id}/compose_file", get(cvms::app_compose).patch(updates::commit_compose))
        .route("/cvms/{id}/compose_file/provision", post(updates::provision_compose))
        .route("/cvms/{id}/envs", patch(updates::envs))
        .route("/cvms/{id}/docker-compose", patch(updates::docker_compose))
        .route("/cvms/{id}/docker-compose.yml", get(cvms::docker_compose))
        .route("/cvms/{id}/pre-launch-script", get(cvms::pre_launch_script).patch(updates::pre_launch_script))
        .route("/cvms/{id}/resources", patch(updates::resources))
        .route("/cvms/{id}/visibility", patch(updates::visibility))
        .route("/cvms/{id}/os-image", patch(updates::os_image))
        .route("/cvms/{id}/available-os-images", get(cvms::available_os_images))
        .route("/cvms/{id}/start", post(cvms::start))
        .route("/cvms/{id}/stop", post(cvms::stop))
        .route("/cvms/{id}/shutdown", post(cvms::shutdown))
        .route("/cvms/{id}/restart", post(cvms::restart))
        .route("/cvms/{id}/replicas", post(cvms::replicas))
        .route("/cvms/{id}/state", get(cvms::state))
        .route("/cvms/{id}/attestation", get(cvms::attestation))
        .route("/status/batch", post(cvms::status_batch))
        .route("/teepods/available", get(platform::nodes))
        .route("/teepods/cvm-create-resources", get(platform::create_resources))
        .route("/instance-types", get(platform::instance_types))
        .route("/instance-types/{family}", get(platform::instance_family))
        .route("/kms", get(platform::kms_list))
        .route("/kms/{kms}", get(platform::kms_get))
        .route("/kms/{kms}/nodes", get(platform::kms_nodes))
        .route("/kms/{kms}/pubkey/{app_id}", get(platform::kms_pubkey))
        .route("/os-images", get(platform::os_images))
        .route("/apps", get(apps::list))
        .route("/apps/{app_id}", get(apps::get))
        .route("/apps/{app_id}/cvms", get(apps::cvms))
        .fallback(|| async { ApiError::plain(404, "Not Found") })
        .method_not_allowed_fallback(|| async { ApiError::plain(405, "Method Not Allowed") })
        .layer(from_fn_with_state(sim.clone(), gate));
    Router::new()
        .nest("/api/v1", api)
        .route("/_sim/stats", get(control::stats))
        .route("/_sim/config", get(control::config_get).post(control::config_set))
        .route("/_sim/cvms/{id}/env", get(control::env))
        .route("/_sim/health", get(control::health))
        .with_state(sim)
}

/// A JSON answer (200).
fn ok(v: serde_json::Value) -> Res {
    Ok(axum::Json(v).into_response())
}
