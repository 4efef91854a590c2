//! `/auth/me`.

use axum::Json;

use crate::sim::edge::ApiVersion;
use crate::sim::shapes;

pub async fn me(v: ApiVersion) -> Json<serde_json::Value> {
    Json(shapes::user(v))
}
