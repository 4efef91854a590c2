//! The Phala Cloud HTTP client: paths, headers and JSON shapes as the official SDKs
//! (`@phala/cloud` 0.2.9, `phala-cloud` 0.2.0) and CLI use them (see
//! `shared/reference/phala-cloud.md` and `api-updates-2026.md`).
//!
//! It speaks one API version, [`API_VERSION`], whatever the API's newest is: the shapes it
//! reads are that version's, so a newer default elsewhere never changes what teeform reads.
//! It creates through the API's current flow — the provision posted to `POST /cvms`, whose
//! one-time commit token the commit then carries — and falls back to the deprecated
//! `POST /cvms/provision` only when the API says it has no such flow ([`legacy_only`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

mod answers;
mod attrs;
mod fields;

use answers::{
    Pager, correlation_id, hash_required, legacy_only, list, no_change, page_counts, parse_available, parse_cvm_page,
    parse_statuses,
};
pub use answers::{is_same_cvm, parse_cvm, path_id};
use fields::Fields;

use super::http::{self, Idempotency, RetryObserver, RetryPolicy};
use super::phala_images::{self, OsImage};
use super::{
    ApiError, Available, CommitRequest, CvmPage, ErrorKind, InstanceType, NodeInfo, PatchOutcome, PatchRequest,
    PhalaApi, PowerAction, ProvisionRequest, Provisioned, StatusReport,
};
use crate::model::{CloudIds, RemoteCvm};
use crate::verify::kms_key::SignedKey;

/// The API version teeform speaks (`X-Phala-Version`), pinned: what `@phala/cloud` 0.2.9 and
/// the `phala` CLI send by default. Newer versions exist (`2026-05-22`: string CVM ids;
/// `2026-06-23`: contract-centric KMS, the Python SDK's default); moving to one is a change to
/// the shapes this file reads, checked by the conformance suite, never a silent default.
pub const API_VERSION: &str = "2026-01-21";

#[derive(Clone)]
pub struct PhalaClient {
    http: reqwest::Client,
    prefix: String,
    auth: Auth,
    /// Where the credentials came from, for messages (e.g. `PHALA_CLOUD_API_KEY`).
    key_source: Option<String>,
    policy: RetryPolicy,
    observer: Option<RetryObserver>,
    /// Set once the API has shown it has no same-path create: provisions go to
    /// `POST /cvms/provision` from then on.
    legacy_create: Arc<AtomicBool>,
}

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    None,
    /// `X-API-Key`.
    ApiKey(String),
    /// An OIDC token as `Authorization: Bearer` (keyless CI deploys), with the workspace it
    /// deploys to (`X-Phala-Workspace`) when one is named.
    Oidc {
        token: String,
        workspace: Option<String>,
    },
}

impl std::fmt::Debug for PhalaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key is deliberately left out.
        f.debug_struct("PhalaClient").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl PhalaClient {
    pub fn new(prefix: &str, api_key: Option<String>, timeout: Duration) -> Result<PhalaClient, ApiError> {
        let http = http::client(timeout, prefix)?;
        Ok(PhalaClient {
            http,
            prefix: prefix.trim_end_matches('/').to_string(),
            auth: api_key.map_or(Auth::None, Auth::ApiKey),
            key_source: None,
            policy: RetryPolicy::default(),
            observer: None,
            legacy_create: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Authenticates with an OIDC token (`Authorization: Bearer`) instead of an API key, in
    /// the workspace `workspace` names (`X-Phala-Workspace`) when given. The caller registers
    /// the token with [`crate::redact`]; it is never stored.
    pub fn with_oidc_token(mut self, token: String, workspace: Option<String>) -> Self {
        self.auth = Auth::Oidc { token, workspace };
        self
    }

    /// Names where the API key came from (an environment variable, a file) for the message of
    /// an authentication failure.
    pub fn with_key_source(mut self, source: impl Into<String>) -> Self {
        self.key_source = Some(source.into());
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn with_observer(mut self, observer: RetryObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn req(&self, method: &Method, path: &str) -> RequestBuilder {
        let b =
            self.http.request(method.clone(), format!("{}{path}", self.prefix)).header("X-Phala-Version", API_VERSION);
        match &self.auth {
            Auth::None => b,
            Auth::ApiKey(k) => b.header("X-API-Key", k),
            Auth::Oidc { token, workspace } => {
                let b = b.bearer_auth(token);
                match workspace {
                    Some(w) => b.header("X-Phala-Workspace", w),
                    None => b,
                }
            }
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        idem: Idempotency,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, ApiError> {
        http::send(&self.policy, self.observer.as_ref(), idem, &method, path, || {
            let mut b = self.req(&method, path);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            match body {
                Some(v) => b.json(v),
                None => b,
            }
        })
        .await
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        idem: Idempotency,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        let resp = self.call(method.clone(), path, idem, body, headers).await.map_err(|e| self.explain(e))?;
        let status = resp.status().as_u16();
        let bytes = http::read_body(&method, path, resp, http::MAX_BODY_BYTES).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::invalid(method.as_str(), path, status, format!("the answer is not JSON teeform can read: {e}"))
        })
    }

    /// Adds where the credentials came from to an authentication failure, and the version
    /// teeform speaks to a refusal that names the version.
    fn explain(&self, mut e: ApiError) -> ApiError {
        if e.is_auth() {
            e.hint = Some(match (&self.auth, &self.key_source) {
                (Auth::None, _) => "no API key was found: set PHALA_CLOUD_API_KEY (an API key from the Phala Cloud \
                              dashboard), log in with `phala auth login`, or in CI set PHALA_OIDC_TOKEN"
                    .to_string(),
                (Auth::ApiKey(_), Some(src)) => {
                    format!("the API key came from {src}; check that it is valid and belongs to this workspace")
                }
                (Auth::ApiKey(_), None) => "check the API key".to_string(),
                (Auth::Oidc { workspace, .. }, _) => format!(
                    "the OIDC token came from PHALA_OIDC_TOKEN{}; check that the workspace trusts this repository \
                     and that the token was requested for audience https://cloud.phala.com",
                    workspace.as_ref().map_or(String::new(), |w| format!(" (workspace `{w}`, PHALA_CLOUD_WORKSPACE)"))
                ),
            });
        } else if e.kind == ErrorKind::Validation && e.message.contains("X-Phala-Version") {
            e.hint = Some(format!(
                "teeform speaks Phala Cloud API version {API_VERSION}, which this endpoint does not serve"
            ));
        }
        e
    }
}

#[async_trait::async_trait]
impl PhalaApi for PhalaClient {
    async fn get_cvm(&self, id: &str) -> Result<Option<RemoteCvm>, ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        match self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await {
            Ok(v) => {
                let cvm = parse_cvm(&v).map_err(|m| ApiError::invalid("GET", &path, 200, m))?;
                if !is_same_cvm(&cvm, id) {
                    return Err(ApiError::invalid(
                        "GET",
                        &path,
                        200,
                        format!(
                            "asked for CVM {id}, the API answered with another CVM ({}, id {}); nothing is read from it",
                            cvm.attrs.name, cvm.ids.id
                        ),
                    ));
                }
                Ok(Some(cvm))
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn cvm_page(&self, page: u64) -> Result<CvmPage, ApiError> {
        let path = super::page_path(page);
        let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
        parse_cvm_page(&v).map_err(|m| ApiError::invalid("GET", &path, 200, m))
    }

    async fn provision(&self, r: &ProvisionRequest) -> Result<Provisioned, ApiError> {
        let body = attrs::create_body(r);
        // Provisioning only computes and caches; repeating it is harmless.
        let mut path = "/cvms";
        if self.legacy_create.load(Ordering::Relaxed) {
            path = "/cvms/provision";
        }
        let v = match self.json(Method::POST, path, Idempotency::Safe, Some(&body), &[]).await {
            Err(e) if path == "/cvms" && legacy_only(&e) => {
                tracing::info!("the API has no same-path create ({e}); provisioning with POST /cvms/provision");
                self.legacy_create.store(true, Ordering::Relaxed);
                path = "/cvms/provision";
                self.json(Method::POST, path, Idempotency::Safe, Some(&body), &[]).await?
            }
            other => other?,
        };
        let read = || -> Result<Provisioned, String> {
            let f = Fields::of(&v, "")?;
            f.object("kms_info")?;
            Ok(Provisioned {
                app_id: f.str("app_id")?,
                env_pubkey: f.str("app_env_encrypt_pubkey")?,
                compose_hash: f.req_str("compose_hash")?,
                kms_id: f.str("kms_id")?,
                device_id: f.str("device_id")?,
                kms_info: f.get("kms_info").cloned(),
                commit_token: f.str("token")?,
            })
        };
        read().map_err(|m| ApiError::invalid("POST", path, 200, m))
    }

    async fn commit_provision(&self, r: &CommitRequest) -> Result<CloudIds, ApiError> {
        let mut body = json!({ "app_id": r.app_id, "compose_hash": r.compose_hash, "env_keys": r.env_keys });
        for (k, v) in [
            ("encrypted_env", &r.encrypted_env),
            ("kms_id", &r.kms_id),
            ("contract_address", &r.contract_address),
            ("deployer_address", &r.deployer_address),
            ("token", &r.commit_token),
        ] {
            if let Some(v) = v {
                body[k] = v.clone().into();
            }
        }
        let v = self.json(Method::POST, "/cvms", Idempotency::Unsafe, Some(&body), &[]).await?;
        // The answer names the CVM that now exists; without its id (or with another app's id)
        // nothing can be recorded, and the create is left for the next run to reconcile.
        // UNVERIFIED: that the real API always returns `app_id` here (the SDK's VM shape has it).
        let read = || -> Result<CloudIds, String> {
            let f = Fields::of(&v, "")?;
            let ids = CloudIds {
                id: f.id("id")?,
                app_id: Some(f.req_str("app_id")?),
                vm_uuid: f.str("vm_uuid")?,
                instance_id: f.str("instance_id")?,
            };
            let norm = |a: &str| a.trim().trim_start_matches("0x").to_ascii_lowercase();
            let got = ids.app_id.as_deref().unwrap_or_default();
            if norm(got) != norm(&r.app_id) {
                return Err(format!("`app_id` is {got}, but the create was for app {}", r.app_id));
            }
            Ok(ids)
        };
        read().map_err(|m| {
            ApiError::invalid("POST", "/cvms", 200, format!("{m}; the CVM may exist: the next run checks"))
        })
    }

    async fn app_instances(&self, app_id: &str) -> Result<Vec<RemoteCvm>, ApiError> {
        let bare = app_id.trim_start_matches("app_").trim_start_matches("0x");
        let path = format!("/apps/{bare}/cvms");
        let v = match self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await {
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(vec![]),
            other => other?,
        };
        let read = || -> Result<Vec<RemoteCvm>, String> {
            let items = v.as_array().ok_or("the answer is not a list of CVMs")?;
            items.iter().enumerate().map(|(i, x)| parse_cvm(x).map_err(|m| format!("[{i}]: {m}"))).collect()
        };
        read().map_err(|m| ApiError::invalid("GET", &path, 200, m))
    }

    async fn replicate(&self, id: &str, app_id: &str, node_id: Option<u64>) -> Result<CloudIds, ApiError> {
        let path = format!("/cvms/{}/replicas", path_id(id));
        let body = json!({ "node_id": node_id });
        // Another instance each time: never repeated after an unclear answer (the next run
        // finds the instance by its app id).
        let v = self.json(Method::POST, &path, Idempotency::Unsafe, Some(&body), &[]).await?;
        // The SDKs read a VM here (`@phala/cloud`'s VMSchema; the Python SDK loosely).
        let read = || -> Result<CloudIds, String> {
            let f = Fields::of(&v, "")?;
            let ids = CloudIds {
                id: match f.str("vm_uuid")? {
                    Some(u) => u,
                    None => f.id("id")?,
                },
                app_id: Some(f.req_str("app_id")?),
                vm_uuid: f.str("vm_uuid")?,
                instance_id: f.str("instance_id")?,
            };
            let norm = |a: &str| a.trim().trim_start_matches("0x").to_ascii_lowercase();
            let got = ids.app_id.as_deref().unwrap_or_default();
            if norm(got) != norm(app_id) {
                return Err(format!("`app_id` is {got}, but the replica was of app {app_id}"));
            }
            Ok(ids)
        };
        read().map_err(|m| ApiError::invalid("POST", &path, 200, format!("{m}; the instance may exist")))
    }

    async fn patch(&self, id: &str, req: &PatchRequest, prepare_only: bool) -> Result<PatchOutcome, ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        let body = attrs::patch_body(req).map_err(|m| ApiError::local(ErrorKind::Other, "PATCH", &path, m))?;
        let headers: Vec<(&str, String)> = if prepare_only { vec![("X-Prepare-Only", "true".into())] } else { vec![] };
        match self.json(Method::PATCH, &path, Idempotency::Unsafe, Some(&body), &headers).await {
            Ok(v) if no_change(&v) => Ok(PatchOutcome::Unchanged),
            Ok(v) => Ok(PatchOutcome::Accepted { correlation_id: correlation_id(&v, "PATCH", &path)? }),
            Err(e) if e.kind == ErrorKind::HashRequired => {
                let h = hash_required(&e);
                // The hash is what gets registered on chain: it must be one.
                let hex = h.compose_hash.trim_start_matches("0x");
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(ApiError::invalid(
                        "PATCH",
                        &path,
                        465,
                        "the 465 answer's `compose_hash` detail is missing or not a 32-byte hex hash",
                    ));
                }
                Ok(PatchOutcome::HashRequired(Box::new(h)))
            }
            Err(e) => Err(e),
        }
    }

    async fn confirm_patch(&self, id: &str, compose_hash: &str, tx_hash: &str) -> Result<String, ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        let headers = [("X-Compose-Hash", compose_hash.to_string()), ("X-Transaction-Hash", tx_hash.to_string())];
        let v = self.json(Method::PATCH, &path, Idempotency::Unsafe, Some(&json!({})), &headers).await?;
        correlation_id(&v, "PATCH", &path)
    }

    async fn commit_update(
        &self,
        id: &str,
        token: &str,
        compose_hash: &str,
        tx_hash: &str,
    ) -> Result<String, ApiError> {
        let path = format!("/cvms/{}/commit-update", path_id(id));
        let body = json!({ "token": token, "compose_hash": compose_hash, "transaction_hash": tx_hash });
        let v = self.json(Method::POST, &path, Idempotency::Unsafe, Some(&body), &[]).await?;
        correlation_id(&v, "POST", &path)
    }

    async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        // Deleting twice ends the same way, so a retry is safe; a 404 means it is gone.
        match self.call(Method::DELETE, &path, Idempotency::Safe, None, &[]).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn instance_types(&self) -> Result<Vec<InstanceType>, ApiError> {
        let path = "/instance-types";
        let v = self.json(Method::GET, path, Idempotency::Safe, None, &[]).await?;
        let read = || -> Result<Vec<InstanceType>, String> {
            let mut out = Vec::new();
            let f = Fields::of(&v, "")?;
            for (i, fam) in list(&f, "result")?.iter().enumerate() {
                let fam = Fields::of(fam, &format!("result[{i}]"))?;
                for (j, it) in list(&fam, "items")?.iter().enumerate() {
                    let it = Fields::of(it, &format!("result[{i}].items[{j}]"))?;
                    let id = match it.str("id")? {
                        Some(id) => id,
                        None => it.req_str("name")?,
                    };
                    let need = |k: &str| it.u32(k)?.ok_or_else(|| format!("{} is missing", it.name(k)));
                    out.push(InstanceType { id, vcpu: need("vcpu")?, memory_mb: need("memory_mb")? });
                }
            }
            Ok(out)
        };
        read().map_err(|m| ApiError::invalid("GET", path, 200, m))
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ApiError> {
        let path = "/teepods/available";
        let v = self.json(Method::GET, path, Idempotency::Safe, None, &[]).await?;
        let read = || -> Result<Vec<NodeInfo>, String> {
            let f = Fields::of(&v, "")?;
            list(&f, "nodes")?
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let n = Fields::of(n, &format!("nodes[{i}]"))?;
                    let id = n
                        .get("teepod_id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| format!("{} should be a whole number", n.name("teepod_id")))?;
                    Ok(NodeInfo { id, name: n.req_str("name")? })
                })
                .collect()
        };
        read().map_err(|m| ApiError::invalid("GET", path, 200, m))
    }

    async fn kms_pubkey(&self, kms: &str, app_id: &str) -> Result<SignedKey, ApiError> {
        let path = format!("/kms/{kms}/pubkey/{}", app_id.trim_start_matches("0x"));
        let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
        let read = || -> Result<SignedKey, String> {
            let f = Fields::of(&v, "")?;
            let timestamp = match f.get("timestamp") {
                None => None,
                Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
                Some(Value::String(t)) => {
                    Some(t.parse().map_err(|_| f.wrong("timestamp", "Unix seconds", &v["timestamp"]))?)
                }
                Some(other) => return Err(f.wrong("timestamp", "Unix seconds", other)),
            };
            Ok(SignedKey {
                public_key: f.req_str("public_key")?,
                signature: f.str("signature")?,
                signature_v1: f.str("signature_v1")?,
                timestamp,
            })
        };
        read().map_err(|m| ApiError::invalid("GET", &path, 200, m))
    }

    async fn attestation(&self, id: &str) -> Result<Option<Value>, ApiError> {
        let path = format!("/cvms/{}/attestation", path_id(id));
        match self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn kms_signer(&self, kms: &str) -> Result<Option<String>, ApiError> {
        let path = format!("/kms/{kms}");
        let v = match self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await {
            Ok(v) => v,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Fields::of(&v, "").and_then(|f| f.str("k256_pubkey")).map_err(|m| ApiError::invalid("GET", &path, 200, m))
    }

    async fn available(&self) -> Result<Available, ApiError> {
        let v = self.json(Method::GET, "/teepods/available", Idempotency::Safe, None, &[]).await?;
        parse_available(&v).map_err(|m| ApiError::invalid("GET", "/teepods/available", 200, m))
    }

    async fn power(&self, id: &str, action: PowerAction) -> Result<(), ApiError> {
        let path = format!("/cvms/{}/{}", path_id(id), action.verb());
        // UNVERIFIED: whether repeating a start the server already acted on is harmless; it is
        // not repeated after an unclear answer (the next plan sees the run state).
        self.json(Method::POST, &path, Idempotency::Unsafe, None, &[]).await.map(|_| ())
    }

    async fn statuses(&self, vm_uuids: &[String]) -> Result<BTreeMap<String, StatusReport>, ApiError> {
        let chunks = vm_uuids.chunks(super::STATUS_BATCH_LIMIT).map(|chunk| async move {
            let body = json!({ "vm_uuids": chunk });
            // A read, though a POST: safe to repeat.
            let v = self.json(Method::POST, "/status/batch", Idempotency::Safe, Some(&body), &[]).await?;
            parse_statuses(&v, chunk).map_err(|m| ApiError::invalid("POST", "/status/batch", 200, m))
        });
        let mut out = BTreeMap::new();
        // All chunks at once: the CVMs waited on are at most `--parallelism`, so the requests
        // are at most `--parallelism / 100` rounded up.
        for answer in futures::future::join_all(chunks).await {
            out.extend(answer?);
        }
        Ok(out)
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), ApiError> {
        // The endpoint takes the API's own CVM id (the detail's `id`, `cvm_…`), not a UUID or
        // an app id (terraform-provider-phala's design note; not in the SDKs: UNVERIFIED). A
        // record made by a create holds the UUID until a refresh: the id is looked up then.
        let id = if path_id(id) == id {
            id.to_string()
        } else {
            match self.get_cvm(id).await? {
                Some(c) => c.ids.id,
                None => {
                    let path = format!("/cvms/{}", path_id(id));
                    return Err(ApiError::local(ErrorKind::NotFound, "GET", &path, "the CVM to rename is gone"));
                }
            }
        };
        let path = format!("/cvms/{id}/name");
        // Not repeated once the server may have acted: a second rename could be refused as a
        // duplicate of the name the first gave (the journal and the next refresh settle it).
        self.call(Method::PATCH, &path, Idempotency::Unsafe, Some(&json!({ "name": name })), &[]).await.map(|_| ())
    }

    async fn os_images(&self, cvm: Option<&str>) -> Result<Vec<OsImage>, ApiError> {
        let unreadable = |path: &str, m: String| ApiError::invalid("GET", path, 200, m);
        if let Some(id) = cvm {
            let path = format!("/cvms/{}/available-os-images", path_id(id));
            let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
            return phala_images::parse_available(&v).map_err(|m| unreadable(&path, m));
        }
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pager = Pager::new();
        loop {
            let path = format!("/os-images?page={}&page_size=100", pager.page);
            let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
            let (items, _) = phala_images::parse_catalog_page(&v).map_err(|m| unreadable(&path, m))?;
            let (total, pages) = page_counts(&v).map_err(|m| unreadable(&path, m))?;
            let n = items.len();
            for img in items {
                if !seen.insert((img.slug.clone(), img.dev)) {
                    return Err(unreadable(
                        &path,
                        format!("image {} was already listed; the API's paging does not advance", img.slug),
                    ));
                }
                out.push(img);
            }
            if !pager.next(n, total, pages).map_err(|m| unreadable(&path, m))? {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
