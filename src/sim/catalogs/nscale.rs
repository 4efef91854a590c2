//! nscale's Region service: `GET /api/v2/regions/{regionID}/images` (seed 002), a bare array
//! sorted by name, bearer-token auth, and nscale's error bodies.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{injected, query_pairs, request_id};
use crate::sim::Sim;

fn nscale_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description, "trace_id": request_id()});
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert("retry-after", "1".parse().expect("header"));
    }
    r
}

fn nscale_status_error(status: u16) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, desc) = match status {
        401 => ("access_denied", "authentication failed"),
        403 => ("forbidden", "user credentials do not have the required privileges"),
        404 => ("not_found", "the requested resource does not exist"),
        // Not in nscale's spec (reference §4.2); shaped like its other errors.
        429 => ("server_error", "too many requests (simulated)"),
        _ => ("server_error", "an unexpected error occurred (simulated)"),
    };
    nscale_error(s, code, desc)
}

pub(super) async fn images(
    State(sim): State<Sim>,
    Path(region): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    sim.count("GET /api/v2/regions/{regionID}/images", "GET /api/v2/regions/{regionID}/images");
    let want = sim.inner.config.lock().expect("config lock").nscale_token.clone();
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (token, want) {
        (None, _) => return nscale_error(StatusCode::UNAUTHORIZED, "access_denied", "authorization header missing"),
        (Some(t), Some(w)) if t != w => {
            return nscale_error(StatusCode::UNAUTHORIZED, "access_denied", "token validation failed");
        }
        _ => {}
    }
    if let Some(status) = injected(&sim) {
        return nscale_status_error(status);
    }
    let data = sim.inner.catalogs.lock().expect("catalogs lock");
    if !data.nscale_regions.contains(&region) {
        return nscale_status_error(404);
    }
    let q = query_pairs(&raw);
    // Organizations the caller may not read are silently dropped, as the real server does.
    let orgs: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "organizationID")
        .map(|(_, v)| v.as_str())
        .filter(|o| data.nscale_orgs.iter().any(|x| x == o))
        .collect();
    let asked_orgs = q.iter().any(|(k, _)| k == "organizationID");
    let scope = q.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.as_str()).unwrap_or("available");
    if !matches!(scope, "owned" | "available") {
        return nscale_error(StatusCode::BAD_REQUEST, "invalid_request", "scope must be owned or available");
    }
    let statuses: Vec<&str> = q.iter().filter(|(k, _)| k == "status").map(|(_, v)| v.as_str()).collect();
    let mut out: Vec<&Value> = data
        .nscale
        .iter()
        .filter(|e| e.region == region)
        .filter(|e| match (&e.organization, asked_orgs) {
            (None, false) => true,
            (None, true) => scope == "available",
            (Some(o), true) => orgs.contains(&o.as_str()),
            (Some(_), false) => false,
        })
        .filter(|e| statuses.is_empty() || statuses.iter().any(|s| e.image["status"]["state"] == *s))
        .map(|e| &e.image)
        .collect();
    out.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
    axum::Json(out).into_response()
}
