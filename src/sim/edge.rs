//! The edge of the simulated API: reading a request into typed values (the body as a
//! [`super::requests`] struct, the API version, headers) before any rule runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

/// A JSON object body read as `T`. As FastAPI reads bodies: no body is `{}`, anything but an
/// object is a 422 at `body`, a field of the wrong type a 422 at the field's `loc`. The
/// `Content-Type` is not checked.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        // A body over axum's limit keeps axum's answer (413).
        let bytes = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(not_an_object().into_response()),
            }
        };
        parse(value).map(Body).map_err(IntoResponse::into_response)
    }
}

/// A JSON object read as `T`, as [`Body`] reads one: a field of the wrong type is a 422 at the
/// field's `loc`. For a route that looks at a body before it knows which request it is.
pub fn parse<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    // UNVERIFIED: pydantic names the error `type` by kind (`int_parsing`, `string_type`, …);
    // the simulator says `type_error` for them all, with serde's message.
    serde_path_to_error::deserialize(value).map_err(|e| {
        let loc = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(Value::from(key.as_str())),
                serde_path_to_error::Segment::Seq { index } => Some(Value::from(*index)),
                _ => None,
            })
            .collect();
        ApiError::Invalid { loc, msg: e.inner().to_string(), kind: "type_error" }
    })
}

fn not_an_object() -> ApiError {
    ApiError::Invalid { loc: Vec::new(), msg: "JSON object expected".into(), kind: "json_invalid" }
}

/// A text body (`PATCH /cvms/{id}/docker-compose`, `/pre-launch-script`): `Err(())` when it
/// is not UTF-8, for the route to refuse at its field.
pub struct Text(pub Result<String, ()>);

impl<S: Send + Sync> FromRequest<S> for Text {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        Ok(Text(String::from_utf8(bytes.to_vec()).map_err(|_| ())))
    }
}

/// The API version a request asks for (`X-Phala-Version`). The responses whose shape differs
/// by version take it ([`super::shapes`]); a new version is a new variant here and an arm in
/// those shape functions. Versions are ordered by date, so `v >= ApiVersion::V20260522` reads
/// as "from 2026-05-22 on".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiVersion {
    /// `2025-10-28`: the legacy shapes (`phala deploy` speaks it).
    V20251028,
    /// `2026-01-21`: the CVM as `CvmInfoV20260121`; what `@phala/cloud` 0.2.9 and teeform send.
    V20260121,
    /// `2026-05-22`: every CVM id a string (a hashid, `cvm_…`), `user_id` a string.
    V20260522,
    /// `2026-06-23`: the contract-centric KMS (`GET /kms`, `/kms/{slug}`, `/kms/{slug}/nodes`);
    /// what the Python SDK (`phala-cloud` 0.2.0) sends by default.
    V20260623,
}

impl ApiVersion {
    /// Every version served, oldest first.
    pub const ALL: [ApiVersion; 4] =
        [ApiVersion::V20251028, ApiVersion::V20260121, ApiVersion::V20260522, ApiVersion::V20260623];

    /// The version of a request that names none. UNVERIFIED: what the real API assumes then
    /// (the official SDKs always send the header).
    pub const DEFAULT: ApiVersion = ApiVersion::V20260121;

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V20251028 => "2025-10-28",
            ApiVersion::V20260121 => "2026-01-21",
            ApiVersion::V20260522 => "2026-05-22",
            ApiVersion::V20260623 => "2026-06-23",
        }
    }

    /// The version a request asks for: [`ApiVersion::DEFAULT`] without the header, `Err` with
    /// the text of a version the API does not know (the gate refuses those).
    pub fn of(headers: &HeaderMap) -> Result<ApiVersion, String> {
        match header(headers, "x-phala-version").map(str::trim) {
            None => Ok(ApiVersion::DEFAULT),
            Some(v) => ApiVersion::ALL.into_iter().find(|x| x.as_str() == v).ok_or_else(|| v.to_string()),
        }
    }

    /// Whether CVM ids (and `user_id`) are strings in this version's answers.
    pub fn string_ids(self) -> bool {
        self >= ApiVersion::V20260522
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        ApiVersion::of(&parts.headers).map_err(|v| super::error::ApiError::unknown_version(&v).into_response())
    }
}

/// A header's value, when it is text.
pub fn header<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

/// The on-chain confirmation an update request may carry instead of a body
/// (`X-Compose-Hash` and `X-Transaction-Hash`).
pub fn confirmation(h: &HeaderMap) -> Option<(&str, &str)> {
    Some((header(h, "x-compose-hash")?, header(h, "x-transaction-hash")?))
}
