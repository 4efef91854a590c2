//! What every request under `/api/v1` passes first: it is counted (`GET /_sim/stats`) and given
//! a request id (`X-Request-ID`, and `request_id` in structured errors), its credentials checked
//! (an API key, or an OIDC bearer token with the workspace it names), its API version checked,
//! and the fault-injection knobs applied (latency, errors before or after the request is carried
//! out, hung requests).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use serde_json::json;

use super::edge::{ApiVersion, header};
use super::error::{ApiError, REQUEST_ID};
use super::{Sim, SimConfig};

/// The workspace the simulator has (`GET /auth/me`, `/workspaces`).
pub const WORKSPACE_SLUG: &str = "sim";
pub const WORKSPACE_ID: &str = "ws_sim";

/// Auth, stats, the API version and fault injection for everything under `/api/v1`.
pub(crate) async fn gate(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    // Inside `nest`, the URI has lost its `/api/v1` prefix; count the path as requested.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    // The route it matched (`/api/v1/cvms/{id}`), so requests count per endpoint too.
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("(no route)", |m| m.as_str());
    let n = sim.count(&format!("{} {path}", req.method()), &format!("{} {route}", req.method()));
    let request_id = format!("req_{n:08}");
    let mut resp = REQUEST_ID.scope(request_id.clone(), checked(sim, req, next)).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The largest request body the simulator reads (far above any the API takes).
const MAX_BODY: usize = 16 << 20;

async fn checked(sim: Sim, req: Request, next: Next) -> Response {
    // Every request's body is read whole first, whatever its route does with it: hyper closes
    // a connection whose request body was left unread once it has answered, and a client that
    // already sent its next request on that connection sees the server hang up (the Python
    // SDK's power calls send a body the power routes do not read).
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::plain(413, "Request body too large").into_response();
    };
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let cfg = sim.config();
    if let Err(e) = authenticate(&cfg, req.headers()) {
        return e.into_response();
    }
    if let Err(v) = ApiVersion::of(req.headers()) {
        return ApiError::unknown_version(&v).into_response();
    }
    if cfg.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(cfg.latency_ms)).await;
    }
    let (err_roll, hang_roll, after_roll, which) = {
        let mut rng = sim.inner.rng.lock().expect("rng lock");
        (rng.random::<f64>(), rng.random::<f64>(), rng.random::<f64>(), rng.random_range(0..4u8))
    };
    if err_roll < cfg.error_rate {
        sim.inner.stats.lock().expect("stats lock").injected_errors += 1;
        return injected_error(which);
    }
    if hang_roll < cfg.hang_rate {
        sim.inner.stats.lock().expect("stats lock").injected_hangs += 1;
        tokio::time::sleep(Duration::from_millis(cfg.hang_ms)).await;
        return ApiError::plain(504, "hung (simulated)").into_response();
    }
    let resp = next.run(req).await;
    if after_roll < cfg.error_after_rate {
        sim.inner.stats.lock().expect("stats lock").injected_errors += 1;
        return ApiError::plain(502, "Bad gateway (simulated, after the request was carried out)").into_response();
    }
    resp
}

/// Checks a request's credentials: `X-API-Key` (any key, or the configured one), else
/// `Authorization: Bearer` (an OIDC token: the configured one, or any when the simulator has
/// neither an API key nor a token configured) with `X-Phala-Workspace`, when sent, naming the
/// simulator's workspace. A key wins when both are sent, as the `phala` CLI prefers it.
/// UNVERIFIED: the real API's answers to a bad token or an unknown workspace.
fn authenticate(cfg: &SimConfig, h: &HeaderMap) -> Result<(), ApiError> {
    if let Some(k) = header(h, "x-api-key") {
        return match &cfg.api_key {
            Some(want) if want != k => Err(ApiError::plain(401, "Invalid API key")),
            _ => Ok(()),
        };
    }
    let Some(auth) = header(h, "authorization") else {
        return Err(ApiError::plain(401, "Not authenticated: send the X-API-Key header"));
    };
    let token = auth.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty());
    let open = cfg.api_key.is_none() && cfg.bearer_token.is_none();
    match (token, &cfg.bearer_token) {
        (Some(t), Some(want)) if t == want => {}
        (Some(_), None) if open => {}
        _ => return Err(ApiError::plain(401, "Invalid bearer token")),
    }
    match header(h, "x-phala-workspace") {
        Some(w) if w != WORKSPACE_SLUG && w != WORKSPACE_ID => Err(ApiError::coded(
            403,
            "ERR-06-006",
            format!("Workspace '{w}' does not exist or does not trust this token"),
        )),
        _ => Ok(()),
    }
}

/// One of the transient failures a busy API answers with: 429 (with `Retry-After` and the
/// structured rate-limit error), 500, 502 or 503 (with `Retry-After`).
fn injected_error(which: u8) -> Response {
    match which {
        0 => {
            let e = ApiError::coded(429, "ERR-05-002", "Rate limit exceeded");
            let mut resp = e.into_response();
            resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            resp
        }
        1 => ApiError::plain(500, "Internal server error (simulated)").into_response(),
        2 => ApiError::plain(502, "Bad gateway (simulated)").into_response(),
        _ => {
            let body = json!({"detail": "Service unavailable (simulated)"});
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], axum::Json(body)).into_response()
        }
    }
}
