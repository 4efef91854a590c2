//! The Phala Cloud HTTP client: paths, headers and JSON shapes as the official SDK
//! (`@phala/cloud` 0.2.9) and CLI use them (see `shared/reference/phala-cloud.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

mod attrs;

use super::http::{self, Idempotency, RetryObserver, RetryPolicy};
use super::phala_images::{self, OsImage};
use super::{
    ApiError, Available, CommitRequest, ErrorKind, HashRequired, InstanceType, KmsEntry, NodeInfo, PatchOutcome,
    PatchRequest, PhalaApi, PowerAction, ProvisionRequest, Provisioned,
};
use crate::model::{BootFacts, CloudIds, CvmStatus, RemoteCvm};

/// The API version the JS SDK and CLI send by default.
pub const API_VERSION: &str = "2026-01-21";

#[derive(Clone)]
pub struct PhalaClient {
    http: reqwest::Client,
    prefix: String,
    api_key: Option<String>,
    /// Where the key came from, for messages (e.g. `PHALA_CLOUD_API_KEY`).
    key_source: Option<String>,
    policy: RetryPolicy,
    observer: Option<RetryObserver>,
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
            api_key,
            key_source: None,
            policy: RetryPolicy::default(),
            observer: None,
        })
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
        let mut b =
            self.http.request(method.clone(), format!("{}{path}", self.prefix)).header("X-Phala-Version", API_VERSION);
        if let Some(k) = &self.api_key {
            b = b.header("X-API-Key", k);
        }
        b
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

    /// Adds where the API key came from to an authentication failure.
    fn explain(&self, mut e: ApiError) -> ApiError {
        if e.is_auth() {
            e.hint = Some(match (&self.api_key, &self.key_source) {
                (None, _) => "no API key was found: set PHALA_CLOUD_API_KEY (an API key from the Phala Cloud \
                              dashboard), or log in with `phala auth login`"
                    .to_string(),
                (Some(_), Some(src)) => {
                    format!("the API key came from {src}; check that it is valid and belongs to this workspace")
                }
                (Some(_), None) => "check the API key".to_string(),
            });
        }
        e
    }
}

/// Reads an answer's fields, failing on a field of the wrong type (a wrong type is never read
/// as "absent"). `null` counts as absent. Errors name the field (`resource.vcpu: …`).
struct Fields<'a> {
    v: &'a serde_json::Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    fn of(v: &'a Value, at: &str) -> Result<Fields<'a>, String> {
        match v {
            Value::Object(m) => Ok(Fields { v: m, at: at.to_string() }),
            other => Err(format!("{}expected an object, got {}", prefix(at), kind_of(other))),
        }
    }

    fn name(&self, k: &str) -> String {
        if self.at.is_empty() { format!("`{k}`") } else { format!("`{}.{k}`", self.at) }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.v.get(k).filter(|x| !x.is_null())
    }

    fn wrong(&self, k: &str, want: &str, got: &Value) -> String {
        format!("{} should be {want}, got {}", self.name(k), shown(got))
    }

    fn str(&self, k: &str) -> Result<Option<String>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(x)) => Ok(Some(x.clone())),
            Some(other) => Err(self.wrong(k, "a string", other)),
        }
    }

    fn req_str(&self, k: &str) -> Result<String, String> {
        self.str(k)?.filter(|x| !x.is_empty()).ok_or_else(|| format!("{} is missing", self.name(k)))
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(k, "true or false", other)),
        }
    }

    /// A whole number that fits in `u32` (`2.0` is accepted; `2.5`, `-1` and `1e300` are not).
    fn u32(&self, k: &str) -> Result<Option<u32>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(x) => whole_u32(x).map(Some).ok_or_else(|| self.wrong(k, "a whole number from 0 to 4294967295", x)),
        }
    }

    /// A number of GiB turned into MiB, fitting in `u32`.
    fn gib_as_mib(&self, k: &str) -> Result<Option<u32>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_f64()
                .map(|gb| gb * 1024.0)
                .filter(|mb| mb.is_finite() && *mb >= 0.0 && *mb <= u32::MAX as f64)
                .map(|mb| Some(mb.round() as u32))
                .ok_or_else(|| self.wrong(k, "a number of GiB", x)),
        }
    }

    /// An id: a non-empty string or a whole number (the API's integer ids), as a string.
    fn id(&self, k: &str) -> Result<String, String> {
        match self.get(k) {
            Some(Value::String(x)) if !x.trim().is_empty() => Ok(x.clone()),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
            None => Err(format!("{} is missing", self.name(k))),
            Some(other) => Err(self.wrong(k, "a string or a whole number", other)),
        }
    }

    fn object(&self, k: &str) -> Result<Option<Fields<'a>>, String> {
        let at = if self.at.is_empty() { k.to_string() } else { format!("{}.{k}", self.at) };
        self.get(k).map(|x| Fields::of(x, &at)).transpose()
    }

    fn strings(&self, k: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| self.wrong(k, "a list of strings", x)))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(self.wrong(k, "a list of strings", other)),
        }
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() { String::new() } else { format!("`{at}`: ") }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as a message may quote it: short, and only its kind when it is large.
fn shown(v: &Value) -> String {
    let t = v.to_string();
    if t.chars().count() <= 40 { t } else { kind_of(v).to_string() }
}

fn whole_u32(v: &Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u32)
}

/// The path segment for a CVM id, as the SDK rewrites identifiers: a UUID loses its dashes,
/// a bare 40-hex app id becomes `app_<hex>`, anything else is used as is.
pub fn path_id(id: &str) -> String {
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let nodash = id.replace('-', "");
    if id.len() == 36 && nodash.len() == 32 && hex(&nodash) {
        nodash
    } else if id.len() == 40 && hex(id) {
        format!("app_{id}")
    } else {
        id.to_string()
    }
}

/// Reads a v2026-01-21 CVM detail (or list item). An answer of the wrong shape is an error
/// naming the field: a field that cannot be read is never taken as "not set", since that
/// would plan changes (or restarts) from a broken answer.
pub fn parse_cvm(v: &Value) -> Result<RemoteCvm, String> {
    let f = Fields::of(v, "")?;
    let id = f.id("id")?;
    let compose = match f.get("compose_file") {
        None => None,
        Some(c @ Value::Object(_)) => Some(c.clone()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(c @ Value::Object(_)) => Some(c),
            _ => return Err("`compose_file` is a string, but not an app-compose JSON object".into()),
        },
        Some(other) => return Err(f.wrong("compose_file", "an object", other)),
    };
    let cf = compose.as_ref().map(|c| Fields::of(c, "compose_file")).transpose()?;
    let attrs = attrs::read(&f, cf.as_ref())?;
    let kms = f.object("kms_info")?;
    let env_pubkey = match kms.as_ref().map(|k| k.str("encrypted_env_pubkey")).transpose()?.flatten() {
        Some(k) => Some(k),
        None => f.str("encrypted_env_pubkey")?,
    };
    let in_progress = f.get("progress").is_some() || f.bool("in_progress")?.unwrap_or(false);
    Ok(RemoteCvm {
        ids: CloudIds { id, app_id: f.str("app_id")?, vm_uuid: f.str("vm_uuid")?, instance_id: f.str("instance_id")? },
        status: f.str("status")?.map_or_else(CvmStatus::default, |s| CvmStatus::parse(&s)),
        in_progress,
        compose_hash: f.str("compose_hash")?,
        // In the API's normal form, as the planner compares attributes.
        attrs: attrs.normalized(),
        app_compose: compose,
        env_pubkey,
        kms_info: f.get("kms_info").cloned(),
        boot: boot_facts(&f)?,
    })
}

/// Whether `cvm` is the CVM `asked` names (its id, UUID, app id, instance id or name), as the
/// API resolves identifiers: a detail answer for another CVM must never be taken for this one.
pub fn is_same_cvm(cvm: &RemoteCvm, asked: &str) -> bool {
    let norm = |x: &str| {
        let x = x.trim().to_ascii_lowercase().replace('-', "");
        x.strip_prefix("app_").or_else(|| x.strip_prefix("0x")).map(str::to_string).unwrap_or(x)
    };
    let want = norm(asked);
    let ids = &cvm.ids;
    [Some(&ids.id), ids.app_id.as_ref(), ids.vm_uuid.as_ref(), ids.instance_id.as_ref()]
        .into_iter()
        .flatten()
        .any(|x| norm(x) == want)
        || cvm.attrs.name == asked.trim()
}

/// The largest listing teeform reads: 1,000 pages of 100. An API claiming more is refused.
const MAX_PAGES: u64 = 1000;

/// The paging fields of a `{items, total, page, page_size, pages}` answer: `(total, pages)`,
/// each a whole number when present.
fn page_counts(v: &Value) -> Result<(Option<u64>, Option<u64>), String> {
    let f = Fields::of(v, "")?;
    let count = |k: &str| match f.get(k) {
        None => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| f.wrong(k, "a whole number", x)),
    };
    Ok((count("total")?, count("pages")?))
}

/// Decides, after a page, whether a paginated listing goes on. It ends at an empty page, at
/// the last page the answer names, or once `total` items were listed (whichever comes first:
/// a claim of 10^9 pages is bounded by the total seen); past [`MAX_PAGES`] it is an error.
struct Pager {
    page: u64,
    listed: u64,
}

impl Pager {
    fn new() -> Pager {
        Pager { page: 1, listed: 0 }
    }

    /// Counts one page of `n` items; `Ok(true)` when another page should be read.
    fn next(&mut self, n: usize, total: Option<u64>, pages: Option<u64>) -> Result<bool, String> {
        self.listed += n as u64;
        let done = n == 0 || self.page >= pages.unwrap_or(1) || total.is_some_and(|t| self.listed >= t);
        if done {
            return Ok(false);
        }
        if self.page >= MAX_PAGES {
            return Err(format!(
                "the listing claims more than {MAX_PAGES} pages ({} items so far); teeform stops here",
                self.listed
            ));
        }
        self.page += 1;
        Ok(true)
    }
}

/// When the operation in progress began (`progress.started_at` of a v2026 CVM). The boot
/// error is not in a CVM's detail: [`PhalaApi::boot_errors`] reads it for those that need it.
fn boot_facts(f: &Fields) -> Result<BootFacts, String> {
    let busy_since = f.object("progress")?.map(|p| p.str("started_at")).transpose()?.flatten();
    Ok(BootFacts { busy_since, ..Default::default() })
}

/// The objects of list `k`, each read as [`Fields`] (`k[i]` in errors).
fn objects<'a>(f: &Fields<'a>, k: &str) -> Result<Vec<Fields<'a>>, String> {
    match f.get(k) {
        None => Ok(vec![]),
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, x)| Fields::of(x, &format!("{k}[{i}]"))).collect()
        }
        Some(other) => Err(f.wrong(k, "a list", other)),
    }
}

/// Nodes and KMS instances of `GET /teepods/available`.
fn parse_available(v: &Value) -> Result<Available, String> {
    let f = Fields::of(v, "")?;
    let nodes = objects(&f, "nodes")?
        .iter()
        .map(|n| {
            let id = n
                .get("teepod_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{} is missing or not a whole number", n.name("teepod_id")))?;
            Ok(NodeInfo { id, name: n.req_str("name")? })
        })
        .collect::<Result<_, String>>()?;
    let kms = objects(&f, "kms_list")?
        .iter()
        .map(|k| {
            let chain_id = match k.get("chain_id") {
                None => None,
                Some(c) => Some(c.as_u64().ok_or_else(|| k.wrong("chain_id", "a whole number", c))?),
            };
            Ok(KmsEntry { id: k.id("id")?, slug: k.str("slug")?, chain_id })
        })
        .collect::<Result<_, String>>()?;
    Ok(Available { nodes, kms })
}

fn hash_required(e: &ApiError) -> HashRequired {
    let ds = |k: &str| e.detail(k).and_then(|v| v.as_str()).map(str::to_string);
    HashRequired {
        compose_hash: ds("compose_hash").unwrap_or_default(),
        app_id: ds("app_id"),
        device_id: ds("device_id"),
        kms_info: e.detail("kms_info").cloned(),
        commit_token: ds("commit_token"),
        commit_url: ds("commit_url"),
        onchain_status: e.detail("onchain_status").cloned(),
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

    async fn list_cvms(&self) -> Result<Vec<RemoteCvm>, ApiError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pager = Pager::new();
        loop {
            let path = format!("/cvms/paginated?page={}&page_size=100", pager.page);
            let invalid = |m: String| ApiError::invalid("GET", &path, 200, m);
            let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
            let items = match v.get("items") {
                Some(Value::Array(items)) => items,
                Some(other) => return Err(invalid(format!("`items` should be a list, got {}", kind_of(other)))),
                None => return Err(invalid("`items` is missing".into())),
            };
            for (i, item) in items.iter().enumerate() {
                let cvm = parse_cvm(item).map_err(|m| invalid(format!("`items[{i}]`: {m}")))?;
                if !seen.insert(cvm.ids.id.clone()) {
                    return Err(invalid(format!(
                        "`items[{i}]`: CVM {} was already listed; the API's paging does not advance",
                        cvm.ids.id
                    )));
                }
                out.push(cvm);
            }
            let (total, pages) = page_counts(&v).map_err(invalid)?;
            if !pager.next(items.len(), total, pages).map_err(invalid)? {
                return Ok(out);
            }
        }
    }

    async fn provision(&self, r: &ProvisionRequest) -> Result<Provisioned, ApiError> {
        let body = attrs::create_body(r);
        // Provisioning only computes and caches; repeating it is harmless.
        let v = self.json(Method::POST, "/cvms/provision", Idempotency::Safe, Some(&body), &[]).await?;
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
            })
        };
        read().map_err(|m| ApiError::invalid("POST", "/cvms/provision", 200, m))
    }

    async fn commit_provision(&self, r: &CommitRequest) -> Result<CloudIds, ApiError> {
        let mut body = json!({ "app_id": r.app_id, "compose_hash": r.compose_hash, "env_keys": r.env_keys });
        for (k, v) in [
            ("encrypted_env", &r.encrypted_env),
            ("kms_id", &r.kms_id),
            ("contract_address", &r.contract_address),
            ("deployer_address", &r.deployer_address),
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

    async fn patch(&self, id: &str, req: &PatchRequest, prepare_only: bool) -> Result<PatchOutcome, ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        let body = attrs::patch_body(req).map_err(|m| ApiError::local(ErrorKind::Other, "PATCH", &path, m))?;
        let headers: Vec<(&str, String)> = if prepare_only { vec![("X-Prepare-Only", "true".into())] } else { vec![] };
        match self.json(Method::PATCH, &path, Idempotency::Unsafe, Some(&body), &headers).await {
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

    async fn kms_pubkey(&self, kms: &str, app_id: &str) -> Result<String, ApiError> {
        let path = format!("/kms/{kms}/pubkey/{}", app_id.trim_start_matches("0x"));
        let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
        Fields::of(&v, "").and_then(|f| f.req_str("public_key")).map_err(|m| ApiError::invalid("GET", &path, 200, m))
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

    async fn boot_errors(&self, vm_uuids: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
        if vm_uuids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let body = json!({ "vm_uuids": vm_uuids });
        // A read, though a POST: safe to repeat.
        let v = self.json(Method::POST, "/status/batch", Idempotency::Safe, Some(&body), &[]).await?;
        let invalid = |m: String| ApiError::invalid("POST", "/status/batch", 200, m);
        let f = Fields::of(&v, "").map_err(invalid)?;
        let mut errors = BTreeMap::new();
        for uuid in f.v.keys() {
            let st = f.object(uuid).map_err(invalid)?;
            if let Some(e) = st.map(|st| st.str("boot_error")).transpose().map_err(invalid)?.flatten()
                && !e.trim().is_empty()
            {
                errors.insert(uuid.clone(), e);
            }
        }
        Ok(errors)
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

/// A list field that must be there.
fn list<'a>(f: &Fields<'a>, k: &str) -> Result<&'a Vec<Value>, String> {
    match f.get(k) {
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(f.wrong(k, "a list", other)),
        None => Err(format!("{} is missing", f.name(k))),
    }
}

/// The `correlation_id` of an accepted update (a string when present).
fn correlation_id(v: &Value, method: &str, path: &str) -> Result<String, ApiError> {
    let read = || -> Result<String, String> {
        if v.is_null() {
            return Ok(String::new());
        }
        Ok(Fields::of(v, "")?.str("correlation_id")?.unwrap_or_default())
    };
    read().map_err(|m| ApiError::invalid(method, path, 200, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_ids_like_the_sdk() {
        let cases = [
            ("550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "app_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("my-app", "my-app"),
            ("instance_0123", "instance_0123"),
        ];
        for (input, want) in cases {
            assert_eq!(path_id(input), want);
        }
    }

    #[test]
    fn parses_a_minimal_and_a_full_detail() {
        let min = json!({"id":"abc","name":"my-app","status":"running","resource":{},"gateway":{}});
        let cvm = parse_cvm(&min).unwrap();
        assert_eq!(cvm.ids.id, "abc");
        assert!(cvm.is_ready());
        let full = json!({
            "id":"c1","name":"web-app","status":"running","app_id":"ab","vm_uuid":"u",
            "resource":{"vcpu":2,"memory_in_gb":2.0,"disk_in_gb":20,"instance_type":"tdx.small"},
            "os":{"name":"dstack-0.5.5"},"kms_type":"phala","public_logs":true,"gateway":{},
            "progress":{"target":"running"},
            "compose_file":{"docker_compose_file":"services: {}\n","allowed_envs":["A","B"],"pre_launch_script":""},
            "kms_info":{"encrypted_env_pubkey":"00ff"}
        });
        let cvm = parse_cvm(&full).unwrap();
        assert_eq!(cvm.attrs.memory, Some(2048));
        assert_eq!(cvm.attrs.env.keys().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(cvm.attrs.pre_launch_script, None);
        assert_eq!(cvm.env_pubkey.as_deref(), Some("00ff"));
        assert!(!cvm.is_ready(), "an operation is in progress");
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_an_error_naming_the_field() {
        let base = json!({"id":"c1","name":"web-app","status":"running","resource":{"vcpu":2},"gateway":{}});
        let with = |k: &str, v: Value| {
            let mut x = base.clone();
            let mut at = &mut x;
            let parts: Vec<&str> = k.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                at = &mut at[*p];
            }
            at[parts[parts.len() - 1]] = v;
            x
        };
        let cases: &[(Value, &str)] = &[
            (with("resource", json!("2 vCPU")), "`resource`: expected an object, got a string"),
            (with("resource.vcpu", json!(1e300)), "`resource.vcpu` should be a whole number"),
            (with("resource.vcpu", json!(-1)), "`resource.vcpu` should be a whole number"),
            (with("resource.vcpu", json!(2.5)), "`resource.vcpu` should be a whole number"),
            (with("resource.vcpu", json!("2")), "`resource.vcpu` should be a whole number"),
            (with("resource.memory_in_gb", json!(1e300)), "`resource.memory_in_gb` should be a number of GiB"),
            (with("name", json!(null)), "`name` is missing"),
            (with("name", json!(7)), "`name` should be a string"),
            (with("id", json!(1.5)), "`id` should be a string or a whole number"),
            (with("public_logs", json!("yes")), "`public_logs` should be true or false"),
            (with("compose_file", json!("services: {}")), "`compose_file` is a string, but not an app-compose"),
            (with("compose_file", json!({"allowed_envs": "A,B"})), "`compose_file.allowed_envs` should be a list"),
            (with("kms_info", json!([])), "`kms_info`: expected an object, got a list"),
            (json!("a string"), "expected an object, got a string"),
            (json!(null), "expected an object, got nothing"),
        ];
        for (v, want) in cases {
            let e = parse_cvm(v).expect_err(&v.to_string());
            assert!(e.contains(want), "{v}: got `{e}`, want `{want}`");
        }
        // Whole numbers written as floats, integer ids and nulls are fine.
        let ok =
            json!({"id": 42, "name": "web-app", "resource": {"vcpu": 2.0, "memory_in_gb": 1.5, "disk_in_gb": null}});
        let cvm = parse_cvm(&ok).unwrap();
        assert_eq!(
            (cvm.ids.id.as_str(), cvm.attrs.vcpu, cvm.attrs.memory, cvm.attrs.disk_size),
            ("42", Some(2), Some(1536), None)
        );
    }

    #[test]
    fn another_cvms_answer_is_not_this_cvm() {
        let cvm = parse_cvm(&json!({
            "id": "7", "name": "web-app", "app_id": "ab12", "vm_uuid": "550e8400-e29b-41d4-a716-446655440000",
            "instance_id": "inst1", "resource": {}
        }))
        .unwrap();
        for asked in [
            "7",
            "web-app",
            "ab12",
            "0xAB12",
            "app_ab12",
            "550e8400e29b41d4a716446655440000",
            "550E8400-E29B-41D4-A716-446655440000",
            "inst1",
        ] {
            assert!(is_same_cvm(&cvm, asked), "{asked}");
        }
        for asked in ["8", "web-app2", "ab1", "550e8400e29b41d4a716446655440001", ""] {
            assert!(!is_same_cvm(&cvm, asked), "{asked}");
        }
    }

    #[test]
    fn paging_ends_by_the_totals_seen_and_is_bounded() {
        // 10^9 pages claimed, 250 items in total: three pages.
        let mut p = Pager::new();
        let mut calls = 1;
        while p.next(if calls < 3 { 100 } else { 50 }, Some(250), Some(1_000_000_000)).unwrap() {
            calls += 1;
        }
        assert_eq!(calls, 3);
        // No totals: an empty page ends; the claimed page count ends.
        let mut p = Pager::new();
        assert!(p.next(100, None, Some(2)).unwrap());
        assert!(!p.next(100, None, Some(2)).unwrap());
        let mut p = Pager::new();
        assert!(!p.next(0, None, Some(5)).unwrap());
        // Endless full pages with no total: an error at MAX_PAGES.
        let mut p = Pager::new();
        let mut n = 0;
        let e = loop {
            match p.next(100, None, Some(u64::MAX)) {
                Ok(true) => n += 1,
                Ok(false) => panic!("ended"),
                Err(e) => break e,
            }
        };
        assert_eq!(n + 1, MAX_PAGES);
        assert!(e.contains("more than 1000 pages"), "{e}");
    }
}
