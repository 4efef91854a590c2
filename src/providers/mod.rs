//! Cloud APIs behind small traits. Only this module (and `sim`) knows wire formats: the rest
//! of teeform sees [`crate::model`] types.

pub mod health;
pub mod http;
pub mod nscale;
pub mod oci;
pub mod pccs;
pub mod phala;
pub mod phala_images;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::model::{Attr, CloudIds, CvmAttrs, CvmStatus, RemoteCvm};
pub use crate::verify::kms_key::SignedKey;

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
    /// The fields a validation error (422) names: each `loc` below `body`, dotted
    /// (`compose_file.name`).
    pub invalid_fields: Vec<String>,
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
            invalid_fields: vec![],
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

/// The create request (the provision: `POST /cvms`, or the legacy `POST /cvms/provision`), in
/// teeform's terms: the attributes a create
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
    /// The one-time token the same-path create answers with, for its commit. Never written
    /// anywhere.
    #[serde(skip)]
    pub commit_token: Option<String>,
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
    /// The provision's one-time commit token, when it gave one. Never written anywhere.
    #[serde(skip)]
    pub commit_token: Option<String>,
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
    /// The update started: the CVM restarts.
    Accepted {
        correlation_id: String,
    },
    /// The CVM already had this configuration (`status: no_change`): nothing restarts.
    Unchanged,
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

/// How many CVMs a page of the CVM list holds when teeform asks (`page_size`). The API may
/// answer with smaller pages; its `pages` and `total` say how many there are.
pub const PAGE_SIZE: u64 = 100;

/// The largest listing teeform reads: 1,000 pages. An API claiming more is refused.
pub const MAX_PAGES: u64 = 1000;

/// How many CVMs one `POST /status/batch` asks about. UNVERIFIED: the API's own limit is not
/// documented; the `phala` CLI (npm `phala` 1.1.18, `cvms list`) sends its uuids in chunks of
/// 100, so teeform does the same.
pub const STATUS_BATCH_LIMIT: usize = 100;

/// One page of the CVM list (`GET /cvms/paginated`): list items, which carry everything a
/// CVM's detail does but its app compose (`RemoteCvm::app_compose` is `None`, and so are the
/// attributes read from it: compose file, pre-launch script, env keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CvmPage {
    pub items: Vec<RemoteCvm>,
    /// How many CVMs the whole list holds, when the API says.
    pub total: Option<u64>,
    /// How many pages the whole list has, when the API says.
    pub pages: Option<u64>,
}

impl CvmPage {
    /// The number of the last page, as this page tells with pages of `per_page` CVMs: the
    /// smaller of its `pages` and its `total` over `per_page` (a claim of 10^9 pages is bounded
    /// by the total), either when only one is given; `None` when it gives neither (then pages
    /// are read until an empty one).
    pub fn last_page(&self, per_page: usize) -> Option<u64> {
        let by_total = self.total.map(|t| t.div_ceil(per_page.max(1) as u64));
        match (self.pages, by_total) {
            (Some(p), Some(t)) => Some(p.min(t)),
            (p, t) => p.or(t),
        }
    }
}

/// What `POST /status/batch` reports of one CVM: enough to tell whether a wait is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub status: CvmStatus,
    /// An operation (boot, restart, update) is in progress.
    pub in_progress: bool,
    /// The API's `boot_error`, when it gives a non-empty one.
    pub boot_error: Option<String>,
}

/// The Phala Cloud operations teeform uses.
#[async_trait::async_trait]
pub trait PhalaApi: Send + Sync {
    /// `Ok(None)` when the CVM does not exist.
    async fn get_cvm(&self, id: &str) -> Result<Option<RemoteCvm>, ApiError>;
    /// Page `page` (from 1) of the CVM list, [`PAGE_SIZE`] CVMs a page. A page that cannot
    /// be read whole is an error, never fewer items. [`list_cvms`] reads every page.
    async fn cvm_page(&self, page: u64) -> Result<CvmPage, ApiError>;
    /// The status of each CVM named (by vm_uuid) that the API knows, keyed as asked; CVMs the
    /// API does not know are left out. One `POST /status/batch` per [`STATUS_BATCH_LIMIT`]
    /// uuids (sent together).
    async fn statuses(&self, vm_uuids: &[String]) -> Result<BTreeMap<String, StatusReport>, ApiError> {
        let _ = vm_uuids;
        Err(ApiError::local(ErrorKind::Other, "POST", "/status/batch", "this client cannot read statuses in batches"))
    }
    async fn provision(&self, req: &ProvisionRequest) -> Result<Provisioned, ApiError>;
    async fn commit_provision(&self, req: &CommitRequest) -> Result<CloudIds, ApiError>;
    async fn patch(&self, id: &str, req: &PatchRequest, prepare_only: bool) -> Result<PatchOutcome, ApiError>;
    async fn confirm_patch(&self, id: &str, compose_hash: &str, tx_hash: &str) -> Result<String, ApiError>;
    async fn commit_update(&self, id: &str, token: &str, compose_hash: &str, tx_hash: &str)
    -> Result<String, ApiError>;
    async fn delete(&self, id: &str) -> Result<(), ApiError>;
    async fn instance_types(&self) -> Result<Vec<InstanceType>, ApiError>;
    async fn nodes(&self) -> Result<Vec<NodeInfo>, ApiError>;
    /// An app's env-encryption key as the KMS signed it (`GET /kms/{kms}/pubkey/{app_id}`);
    /// `kms` is the KMS's id or slug. Check it with [`crate::verify::kms_key::check`] before
    /// encrypting to it.
    async fn kms_pubkey(&self, kms: &str, app_id: &str) -> Result<SignedKey, ApiError>;
    /// The KMS's signing key (`GET /kms/{kms}` → `k256_pubkey`, a compressed secp256k1 key in
    /// hex); `None` when the API names none or knows no such KMS.
    async fn kms_signer(&self, kms: &str) -> Result<Option<String>, ApiError>;
    /// A CVM's attestation (`GET /cvms/{id}/attestation`) as the API answers it:
    /// `{is_online, tcb_info: {rtmr0..3, event_log, app_compose} | null, …}`; `Ok(None)` when
    /// the CVM does not exist. Check it with [`crate::verify::attest::check`].
    async fn attestation(&self, id: &str) -> Result<Option<serde_json::Value>, ApiError>;
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
    /// The instances of an app (`GET /apps/{app_id}/cvms`, the SDKs' `getAppCvms`: a list of
    /// CVM list items); none when there is no such app.
    async fn app_instances(&self, app_id: &str) -> Result<Vec<RemoteCvm>, ApiError> {
        let _ = app_id;
        Err(ApiError::local(ErrorKind::Other, "GET", "/apps/{app_id}/cvms", "this client cannot list an app's CVMs"))
    }
    /// Another instance of the app of the CVM `id` (of app `app_id`): `POST /cvms/{id}/replicas`
    /// `{node_id}` (both SDKs' `replicateCvm`), with the source's compose, env and sizes, on
    /// `node_id` (the source's node when `None`); it boots in its own time. Its ids.
    async fn replicate(&self, id: &str, app_id: &str, node_id: Option<u64>) -> Result<CloudIds, ApiError> {
        let _ = (id, app_id, node_id);
        Err(ApiError::local(ErrorKind::Other, "POST", "/cvms/{id}/replicas", "this client cannot replicate CVMs"))
    }
    /// Renames a CVM in place (`PATCH /cvms/{id}/name`, answered 204): its app id, keys and
    /// disk stay. A name another CVM of the workspace has is refused (400, `Validation`).
    async fn rename(&self, id: &str, name: &str) -> Result<(), ApiError> {
        let _ = (id, name);
        Err(ApiError::local(ErrorKind::Other, "PATCH", "/cvms/{id}/name", "this client cannot rename CVMs"))
    }
    /// The API's `boot_error` of each CVM (by vm_uuid) that has one ([`PhalaApi::statuses`]).
    async fn boot_errors(&self, vm_uuids: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
        if vm_uuids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let all = self.statuses(vm_uuids).await?;
        Ok(all.into_iter().filter_map(|(uuid, s)| s.boot_error.map(|e| (uuid, e))).collect())
    }
    /// OS images: those the CVM `cvm` (an id or name) can move to, else the whole catalog.
    async fn os_images(&self, cvm: Option<&str>) -> Result<Vec<phala_images::OsImage>, ApiError> {
        let _ = cvm;
        Err(ApiError::local(ErrorKind::Other, "GET", "/os-images", "this client cannot list OS images"))
    }
}

/// Every CVM of the list: page 1, then the rest ([`list_rest`]).
pub async fn list_cvms(api: &dyn PhalaApi, parallelism: usize) -> Result<Vec<RemoteCvm>, ApiError> {
    let first = api.cvm_page(1).await?;
    list_rest(api, first, parallelism).await
}

/// Every CVM of the list, given its first page: the pages it names read `parallelism` at a
/// time (more, should a later page say the list grew), or, when the API gives no counts, one
/// after another until an empty page. A CVM listed twice (the list moved between pages) is
/// kept once; a page of nothing but CVMs already listed means the API's paging does not
/// advance, an error. Fails on the first page that cannot be read: never a partial list.
pub async fn list_rest(api: &dyn PhalaApi, first: CvmPage, parallelism: usize) -> Result<Vec<RemoteCvm>, ApiError> {
    let mut list = Listing::default();
    // The API's page size, as its first page shows (it may serve fewer than asked for).
    let per_page = first.items.len();
    let mut last = if per_page == 0 { Some(1) } else { first.last_page(per_page) };
    let mut short = per_page == 0;
    list.add(1, first)?;
    let mut read = 1u64;
    loop {
        let upto = match last {
            Some(l) if l > read => l,
            Some(_) => break,
            // No counts: one page at a time until an empty one.
            None if short => break,
            None => read + 1,
        };
        if upto > MAX_PAGES {
            return Err(ApiError::invalid(
                "GET",
                &page_path(read),
                200,
                format!("the CVM list claims more than {MAX_PAGES} pages; teeform stops here"),
            ));
        }
        let pages: Vec<(u64, Result<CvmPage, ApiError>)> =
            futures::stream::iter((read + 1..=upto).map(|n| async move { (n, api.cvm_page(n).await) }))
                .buffered(parallelism.max(1))
                .collect()
                .await;
        for (n, page) in pages {
            let page = page?;
            if last.is_some() {
                last = last.max(page.last_page(per_page));
            }
            short = page.items.is_empty();
            list.add(n, page)?;
        }
        read = upto;
    }
    Ok(list.items)
}

/// The path of page `n` of the CVM list, as [`PhalaApi::cvm_page`] asks for it.
pub fn page_path(n: u64) -> String {
    format!("/cvms/paginated?page={n}&page_size={PAGE_SIZE}")
}

#[derive(Default)]
struct Listing {
    items: Vec<RemoteCvm>,
    seen: HashSet<String>,
}

impl Listing {
    fn add(&mut self, n: u64, page: CvmPage) -> Result<(), ApiError> {
        let count = page.items.len();
        let mut fresh = 0;
        for cvm in page.items {
            if self.seen.insert(cvm.ids.id.clone()) {
                self.items.push(cvm);
                fresh += 1;
            }
        }
        if n > 1 && count > 0 && fresh == 0 {
            return Err(ApiError::invalid(
                "GET",
                &page_path(n),
                200,
                "every CVM on this page was already listed; the API's paging does not advance",
            ));
        }
        Ok(())
    }
}
