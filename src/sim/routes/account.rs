//! The account: `/auth/me` and the workspaces (`/workspaces`, `/workspaces/{slug}`); the
//! simulator has one workspace, `sim`.

use axum::Json;
use axum::extract::Path;

use super::{Res, ok};
use crate::sim::edge::ApiVersion;
use crate::sim::error::ApiError;
use crate::sim::gate::{WORKSPACE_ID, WORKSPACE_SLUG};
use crate::sim::shapes;

pub async fn me(v: ApiVersion) -> Json<serde_json::Value> {
    Json(shapes::user(v))
}

pub async fn workspaces() -> Res {
    ok(shapes::workspaces())
}

/// A workspace by slug or id. UNVERIFIED: the real API's answer for one the caller is not in
/// (the SDKs' catalogue has no code for it; a plain 404 here).
pub async fn workspace(Path(slug): Path<String>) -> Res {
    if slug != WORKSPACE_SLUG && slug != WORKSPACE_ID {
        return Err(ApiError::plain(404, format!("Workspace {slug} not found")));
    }
    ok(shapes::workspace())
}
