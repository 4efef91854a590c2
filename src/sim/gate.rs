//! What every request under `/api/v1` passes first: it is counted (`GET /_sim/stats`), its API
//! key checked, and the fault-injection knobs applied (latency, errors before or after the
//! request is carried out, hung requests).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use serde_json::json;

use super::Sim;
use super::error::ApiError;

/// Auth, stats and fault injection for everything under `/api/v1`.
pub(crate) async fn gate(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    // Inside `nest`, the URI has lost its `/api/v1` prefix; count the path as requested.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    // The route it matched (`/api/v1/cvms/{id}`), so requests count per endpoint too.
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("(no route)", |m| m.as_str());
    sim.count(&format!("{} {path}", req.method()), &format!("{} {route}", req.method()));
    let cfg = sim.config();
    match req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        None => return ApiError::plain(401, "Not authenticated: send the X-API-Key header").into_response(),
        Some(k) if cfg.api_key.as_deref().is_some_and(|want| want != k) => {
            return ApiError::plain(401, "Invalid API key").into_response();
        }
        Some(_) => {}
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

/// One of the transient failures a busy API answers with: 429 (with `Retry-After` and the
/// structured rate-limit error), 500, 502 or 503 (with `Retry-After`).
fn injected_error(which: u8) -> Response {
    match which {
        0 => {
            let body = json!({"detail": {"error_code": "ERR-05-002", "message": "Rate limit exceeded", "details": [], "suggestions": ["retry later"], "links": []}});
            (axum::http::StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], axum::Json(body)).into_response()
        }
        1 => ApiError::plain(500, "Internal server error (simulated)").into_response(),
        2 => ApiError::plain(502, "Bad gateway (simulated)").into_response(),
        _ => {
            let body = json!({"detail": "Service unavailable (simulated)"});
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], axum::Json(body)).into_response()
        }
    }
}
