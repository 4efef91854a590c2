//! Every error the simulated API answers with, as data, and the one place that turns them
//! into bodies: FastAPI's 422 (`{"detail": [{loc, msg, type}]}`), the structured errors of the
//! SDK's catalogue (`{"detail": {error_code, message, details, suggestions, links}}`), and plain
//! `{"detail": "..."}`.
//!
//! A version switch of the error shape (issue 17: newer SDKs read the structured fields at the
//! top level) lands in [`ApiError::body`].

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
            ApiError::Invalid { .. } => 422,
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

fn structured(code: &str, message: &str, details: Vec<(&str, Value)>) -> Value {
    let details: Vec<Value> = details.into_iter().map(|(f, v)| json!({"field": f, "value": v})).collect();
    json!({"detail": {"error_code": code, "message": message, "details": details, "suggestions": [], "links": []}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(self.body())).into_response()
    }
}
