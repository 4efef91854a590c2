//! Every error the simulated API answers with, as data, and the one place that turns them
//! into bodies ([`ApiError::body`]): FastAPI's 422 (`{"detail": [{loc, msg, type}]}`), plain
//! `{"detail": "..."}`, and the structured errors of the SDKs' catalogue.
//!
//! A structured error is written in the shape both SDK generations read: its fields
//! (`error_code`, `message`, `details`, `suggestions`, `links`) and the `request_id` at the top
//! level, where `phala-cloud` 0.2.0 (Python) reads them, and the same fields again under
//! `detail`, where `@phala/cloud` 0.2.9 reads them. The newer SDK reads nothing under `detail`
//! but its message: with the fields only there it never raised its typed not-found error, took
//! a duplicate name for a retryable conflict and lost a 465's hash and app id (issue 17). The
//! one shape is served at every API version (the older SDK falls back to the top level when
//! `detail` is absent, but the pinned 0.2.9 reads `detail` first).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::limits::Violation;
use super::shapes;
use super::world::Kms;

/// An error answer of the simulated API.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// FastAPI's validation error: 422, `loc` below `body`.
    Invalid { loc: Vec<Value>, msg: String, kind: &'static str },
    /// FastAPI's validation error for a required query parameter that is missing: 422 at
    /// `["query", field]`.
    QueryRequired(&'static str),
    /// A structured error with one of the SDK's error codes (`ERR-03-001`, …).
    Coded { status: u16, code: &'static str, message: String },
    /// `{"detail": message}` with a status.
    Plain { status: u16, message: String },
    /// 465: the update's compose hash must be registered on chain first.
    HashRequired(Box<HashRequired>),
}

/// What a 465 answer carries (its `details`, in the API's order).
#[derive(Debug, Clone, PartialEq)]
pub struct HashRequired {
    pub compose_hash: String,
    pub app_id: String,
    pub device_id: String,
    /// The CVM's KMS, shown as `kms_info` (null when it has none).
    pub kms: Option<Kms>,
    pub commit_token: String,
    /// The CVM's id as the commit URLs name it (its VM UUID without dashes).
    pub vm_id: String,
    /// Whether the chain already allows the hash (`onchain_status`).
    pub allowed: bool,
}

impl ApiError {
    /// A 422 for one field of the body.
    pub fn invalid(field: &str, msg: impl Into<String>) -> ApiError {
        ApiError::Invalid { loc: vec![field.into()], msg: msg.into(), kind: "value_error" }
    }

    /// A 422 for a required field that is missing.
    pub fn required(field: &str) -> ApiError {
        ApiError::invalid(field, "field required")
    }

    /// A request the API's limits refuse ([`super::limits`]): FastAPI's 422 with the field's
    /// `loc`. UNVERIFIED: the real API's status and wording for these; the SDK checks the same
    /// rules before sending, so its users never see the server's answer.
    pub fn refused(v: Violation) -> ApiError {
        ApiError::Invalid { loc: v.loc, msg: v.msg, kind: "value_error" }
    }

    pub fn coded(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Coded { status, code, message: message.into() }
    }

    pub fn plain(status: u16, message: impl Into<String>) -> ApiError {
        ApiError::Plain { status, message: message.into() }
    }

    /// An `X-Phala-Version` the API does not serve. UNVERIFIED: the real API's status and
    /// wording; it is a request error of the catalogue's `INVALID_REQUEST` kind here.
    pub fn unknown_version(v: &str) -> ApiError {
        let known: Vec<&str> = super::edge::ApiVersion::ALL.iter().map(|v| v.as_str()).collect();
        ApiError::coded(
            400,
            "ERR-02-008",
            format!("Unsupported API version '{v}' (X-Phala-Version); supported: {}", known.join(", ")),
        )
    }

    pub fn cvm_not_found() -> ApiError {
        ApiError::coded(404, "ERR-03-001", "CVM not found")
    }

    pub fn invalid_compose() -> ApiError {
        ApiError::coded(400, "ERR-01-003", "Invalid compose file: not valid YAML")
    }

    pub fn env_does_not_decrypt() -> ApiError {
        ApiError::coded(400, "ERR-02-008", "encrypted_env does not decrypt with this app's key (simulator check)")
    }

    /// UNVERIFIED: the real answer to an update of a CVM that is still restarting. The SDK's
    /// error-code catalogue has no code for it, so this is a plain 409 (`isConflictError`).
    pub fn busy() -> ApiError {
        ApiError::plain(409, "Another operation is in progress for this CVM; retry when it is running")
    }

    /// 466: the held update (or provisioned compose) is gone or was never there.
    pub fn expired(message: &str) -> ApiError {
        ApiError::coded(466, "ERR-01-006", message)
    }

    /// 466: a commit token that names no held update of this CVM and hash.
    pub fn expired_token() -> ApiError {
        ApiError::expired("Commit token is invalid, expired or for another hash")
    }

    /// 467: no successful transaction registered the hash.
    pub fn tx_not_verified() -> ApiError {
        ApiError::coded(
            467,
            "ERR-01-007",
            "Transaction verification failed: no successful transaction registering this compose hash",
        )
    }

    /// 468: the app contract does not allow the hash.
    pub fn hash_not_allowed() -> ApiError {
        ApiError::coded(468, "ERR-01-008", "Compose hash not found on-chain: the app contract does not allow it")
    }

    fn status(&self) -> u16 {
        match self {
            ApiError::Invalid { .. } | ApiError::QueryRequired(_) => 422,
            ApiError::Coded { status, .. } | ApiError::Plain { status, .. } => *status,
            ApiError::HashRequired(_) => 465,
        }
    }

    /// The body of the answer.
    fn body(&self) -> Value {
        match self {
            ApiError::Invalid { loc, msg, kind } => {
                let mut at = vec![Value::from("body")];
                at.extend(loc.iter().cloned());
                json!({"detail": [{"loc": at, "msg": msg, "type": kind}]})
            }
            ApiError::QueryRequired(field) => {
                json!({"detail": [{"loc": ["query", field], "msg": "field required", "type": "missing"}]})
            }
            ApiError::Coded { code, message, .. } => structured(code, message, Vec::new()),
            ApiError::Plain { message, .. } => json!({ "detail": message }),
            ApiError::HashRequired(h) => structured(
                "ERR-01-005",
                "On-chain compose hash registration required",
                vec![
                    ("compose_hash", h.compose_hash.clone().into()),
                    ("app_id", h.app_id.clone().into()),
                    ("device_id", h.device_id.clone().into()),
                    ("kms_info", h.kms.as_ref().map_or(Value::Null, shapes::kms)),
                    ("commit_token", h.commit_token.clone().into()),
                    (
                        "commit_url",
                        format!("https://cloud.phala.invalid/cvms/{}/commit?token={}", h.vm_id, h.commit_token).into(),
                    ),
                    ("api_commit_url", format!("/api/v1/cvms/{}/commit-update", h.vm_id).into()),
                    (
                        "onchain_status",
                        json!({"compose_hash_allowed": h.allowed, "device_id_allowed": true, "is_allowed": h.allowed}),
                    ),
                ],
            ),
        }
    }
}

/// A structured error: its fields at the top level (with the request id) and again under
/// `detail` (see the module's doc).
fn structured(code: &str, message: &str, details: Vec<(&str, Value)>) -> Value {
    let details: Vec<Value> = details.into_iter().map(|(f, v)| json!({"field": f, "value": v})).collect();
    let fields = json!({"error_code": code, "message": message, "details": details, "suggestions": [], "links": []});
    let mut top = fields.clone();
    if let Some(id) = request_id() {
        top["request_id"] = id.into();
    }
    top["detail"] = fields;
    top
}

tokio::task_local! {
    /// The id of the request being answered, set by the gate for everything under `/api/v1`.
    pub static REQUEST_ID: String;
}

/// The id of the request being answered (`X-Request-ID`), when the gate gave it one.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(self.body())).into_response()
    }
}
