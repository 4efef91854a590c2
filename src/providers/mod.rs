//! Cloud APIs behind small traits. Only this module (and `sim`) knows wire formats: the rest
//! of teeform sees [`crate::model`] types.

pub mod http;
pub mod nscale;
pub mod oci;
pub mod phala;
pub mod phala_images;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{Attr, CloudIds, CvmAttrs, RemoteCvm};

/// What kind of failure an API call had, which decides retries, journal handling and
/// messages. Every HTTP status teeform acts on has its kind here: code matches on kinds, never
/// on status numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 401: no credentials, or ones the API does not know (a wrong or expired key or token).
    Unauthenticated,
    /// 403: known credentials without access to what was asked.
    Forbidden,
    /// 404 (or Phala's `ERR-03-001`).
    NotFound,
    /// 400, 422: the request is wrong.
    Validation,
    /// 409: another operation on the resource is in progress.
    Conflict,
    /// 429.
    RateLimited,
    /// 5xx.
    Server,
    Network,
    Timeout,
    /// 465: the compose hash must be registered on chain first.
    HashRequired,
    /// 466: the update the API prepared is gone (its compose hash expired); it must be sent
    /// again.
    HashExpired,
    /// 467: the API could not verify the registration transaction.
    TxVerificationFailed,
    /// 468: the API does not find the compose hash registered on chain.
    HashNotOnChain,
    /// The server answered, but not with something teeform can trust: a body of the wrong
    /// shape, too large, or a redirect to another origin. Never retried.
    InvalidResponse,
    Other,
}

/// An API error with everything a user needs to act on it.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    /// e.g. `ERR-03-001`.
    pub code: Option<String>,
    pub message: String,
    pub suggestions: Vec<String>,
    /// Request id from the response headers, if any.
    pub request_id: Option<String>,
    pub method: String,
    pub path: String,
    /// The structured `details` of the error body (`[{field, value}]`).
    pub details: Vec<(String, serde_json::Value)>,
    /// What to check, from the client that made the request (e.g. where its credentials came
    /// from, for an authentication failure).
    pub hint: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: ", self.method, self.path)?;
        match (self.status, self.kind) {
            (Some(s), _) => write!(f, "HTTP {s}")?,
            (None, ErrorKind::Network | ErrorKind::Timeout) => write!(f, "no response")?,
            // A refused redirect, or a request that was never sent: the message says which.
            (None, _) => {}
        }
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        if self.status.is_some() || matches!(self.kind, ErrorKind::Network | ErrorKind::Timeout) {
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(r) = &self.request_id {
            write!(f, " (request id {r})")?;
        }
        Ok(())
    }
}

impl ApiError {
    /// An error without an HTTP status: the request failed before an answer, or was refused
    /// by teeform (set `status` when there was one).
    pub fn local(kind: ErrorKind, method: &str, path: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            status: None,
            code: None,
            message: message.into(),
            suggestions: vec![],
            request_id: None,
            method: method.into(),
            path: path.into(),
            details: vec![],
            hint: None,
        }
    }

    /// An answer with status `status` that teeform cannot trust; `message` names the field.
    pub fn invalid(method: &str, path: &str, status: u16, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::local(ErrorKind::InvalidResponse, method, path, message);
        e.status = Some(status);
        e
    }

    /// What the user can do about this failure, when there is something to say.
    pub fn advice(&self) -> Option<&str> {
        if let Some(h) = &self.hint {
            return Some(h);
        }
        match self.kind {
            ErrorKind::Network | ErrorKind::Timeout => Some("check the provider's endpoint and your network"),
            _ => None,
        }
    }

    /// Whether the API refused the request before acting on it, so nothing changed in the
    /// cloud: a journal entry written for it can be cleared at once. Every other failure
    /// (a 5xx, a lost connection, an answer teeform cannot read) may have come after the
    /// server acted, so its entry stays for the next run to reconcile. UNVERIFIED for
    /// 466-468: the `phala` CLI treats them as refusals of the confirmation (nothing applied).
    pub fn changed_nothing(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unauthenticated
                | ErrorKind::Forbidden
                | ErrorKind::NotFound
                | ErrorKind::Validation
                | ErrorKind::Conflict
                | ErrorKind::RateLimited
                | ErrorKind::HashRequired
                | ErrorKind::HashExpired
                | ErrorKind::TxVerificationFailed
                | ErrorKind::HashNotOnChain
        )
    }

    /// Whether the credentials were refused (401 or 403).
    pub fn is_auth(&self) -> bool {
        matches!(self.kind, ErrorKind::Unauthenticated | ErrorKind::Forbidden)
    }

    /// Whether running the same request later may well succeed (the server or the network
    /// was in the way), as opposed to a request or an answer that is wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Network | ErrorKind::Timeout | ErrorKind::Server | ErrorKind::RateLimited)
    }

    pub fn detail(&self, field: &str) -> Option<&serde_json::Value> {
        self.details.iter().find(|(k, _)| k == field).map(|(_, v)| v)
    }
}

/// The create request (`POST /cvms/provision`), in teeform's terms: the attributes a create
/// sends, as the schema says ([`crate::model::schema::Create`]); the provider knows where
/// each goes on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProvisionRequest {
    /// The new CVM's attributes, with the defaults a create sends for what the manifest leaves
    /// out ([`CvmAttrs::with_create_defaults`]). Env: keys only (values go in the commit).
    pub attrs: CvmAttrs,
    /// The id of the node `attrs.node` names, when it names one.
    pub node_id: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provisioned {
    /// `None` for on-chain KMS: the app contract must be deployed first.
    pub app_id: Option<String>,
    pub env_pubkey: Option<String>,
    pub compose_hash: String,
    pub kms_id: Option<String>,
    pub device_id: Option<String>,
    pub kms_info: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommitRequest {
    pub app_id: String,
    pub compose_hash: String,
    pub encrypted_env: Option<String>,
    pub env_keys: Vec<String>,
    pub kms_id: Option<String>,
    pub contract_address: Option<String>,
    pub deployer_address: Option<String>,
}

/// The unified `PATCH /cvms/{id}` in teeform's terms: which attributes to send, with their
/// values; the provider knows where each goes on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchRequest {
    /// The attributes to send ([`crate::model::schema::Patch::Value`] ones); `env` here sends
    /// its keys (`allowed_envs`), which are sent when they change.
    pub send: BTreeSet<Attr>,
    /// The values to send: the desired attributes (an instance type as its sizes). Env: keys
    /// only.
    pub attrs: CvmAttrs,
    /// Every env value, encrypted to the CVM's env key (sent whenever env changes).
    pub encrypted_env: Option<String>,
}

/// The API's answer when an update needs an on-chain compose-hash registration (HTTP 465).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HashRequired {
    pub compose_hash: String,
    pub app_id: Option<String>,
    pub device_id: Option<String>,
    pub kms_info: Option<serde_json::Value>,
    pub commit_token: Option<String>,
    pub commit_url: Option<String>,
    pub onchain_status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PatchOutcome {
    Accepted { correlation_id: String },
    HashRequired(Box<HashRequired>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    pub id: String,
    pub vcpu: u32,
    pub memory_mb: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    pub name: String,
}

/// What a create can choose from: the nodes the account may use and the KMS instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Available {
    pub nodes: Vec<NodeInfo>,
    /// Empty when the API lists none (then nothing is checked against it).
    pub kms: Vec<KmsEntry>,
}

/// One KMS the API offers: the Phala one (no chain) or an on-chain one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KmsEntry {
    pub id: String,
    pub slug: Option<String>,
    pub chain_id: Option<u64>,
}

/// Starting or stopping a CVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Start,
    Stop,
}

impl PowerAction {
    /// The path segment: `start` or `stop`.
    pub fn verb(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
        }
    }
}

/// The Phala Cloud operations teeform uses.
#[async_trait::async_trait]
pub trait PhalaApi: Send + Sync {
    /// `Ok(None)` when the CVM does not exist.
    async fn get_cvm(&self, id: &str) -> Result<Option<RemoteCvm>, ApiError>;
    async fn list_cvms(&self) -> Result<Vec<RemoteCvm>, ApiError>;
    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ApiError>;
    async fn commit_provision(&self, req: &CommitRequest) -> Result<CloudIds, ApiError>;
    async fn patch(&self, id: &str, req: &PatchRequest, prepare_only: bool) -> Result<PatchOutcome, ApiError>;
    async fn confirm_patch(&self, id: &str, compose_hash: &str, tx_hash: &str) -> Result<String, ApiError>;
    async fn commit_update(&self, id: &str, token: &str, compose_hash: &str, tx_hash: &str)
    -> Result<String, ApiError>;
    async fn delete(&self, id: &str) -> Result<(), ApiError>;
    async fn instance_types(&self) -> Result<Vec<InstanceType>, ApiError>;
    async fn nodes(&self) -> Result<Vec<NodeInfo>, ApiError>;
    async fn kms_pubkey(&self, kms: &str, app_id: &str) -> Result<String, ApiError>;
    /// What a create can choose from (`GET /teepods/available`): nodes and KMS instances.
    async fn available(&self) -> Result<Available, ApiError> {
        Ok(Available { nodes: self.nodes().await?, kms: vec![] })
    }
    /// Starts (`POST /cvms/{id}/start`) or stops (`/stop`, a hard stop) a CVM; the API
    /// answers at once and the CVM gets there in its own time.
    async fn power(&self, id: &str, action: PowerAction) -> Result<(), ApiError> {
        let _ = (id, action);
        Err(ApiError::local(ErrorKind::Other, "POST", "/cvms/{id}/start", "this client cannot start or stop CVMs"))
    }
    /// Renames a CVM in place (`PATCH /cvms/{id}/name`, answered 204): its app id, keys and
    /// disk stay. A name another CVM of the workspace has is refused (400, `Validation`).
    async fn rename(&self, id: &str, name: &str) -> Result<(), ApiError> {
        let _ = (id, name);
        Err(ApiError::local(ErrorKind::Other, "PATCH", "/cvms/{id}/name", "this client cannot rename CVMs"))
    }
    /// The API's `boot_error` of each CVM (by vm_uuid) that has one, in one request
    /// (`POST /status/batch`).
    async fn boot_errors(&self, vm_uuids: &[String]) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
        let _ = vm_uuids;
        Ok(Default::default())
    }
    /// OS images: those the CVM `cvm` (an id or name) can move to, else the whole catalog.
    async fn os_images(&self, cvm: Option<&str>) -> Result<Vec<phala_images::OsImage>, ApiError> {
        let _ = cvm;
        Err(ApiError::local(ErrorKind::Other, "GET", "/os-images", "this client cannot list OS images"))
    }
}
