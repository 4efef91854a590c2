//! The Phala Cloud HTTP client: paths, headers and JSON shapes as the official SDK
//! (`@phala/cloud` 0.2.9) and CLI use them (see `shared/reference/phala-cloud.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use super::http::{self, Idempotency, RetryObserver, RetryPolicy};
use super::phala_images::{self, OsImage};
use super::{
    ApiError, Available, CommitRequest, ErrorKind, HashRequired, InstanceType, KmsEntry, NodeInfo, PatchOutcome,
    PatchRequest, PhalaApi, PowerAction, ProvisionRequest, Provisioned,
};
use crate::model::{BootFacts, CloudIds, CvmAttrs, EnvVal, RemoteCvm};

/// The API version the JS SDK and CLI send by default.
pub const API_VERSION: &str = "2026-01-21";

#[derive(Clone)]
pub struct PhalaClient {
    http: reqwest::Client,
    prefix: String,
    api_key: Option<String>,
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
            policy: RetryPolicy::default(),
            observer: None,
        })
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
        let resp = self.call(method.clone(), path, idem, body, headers).await?;
        let text =
            resp.text().await.map_err(|e| ApiError::local(ErrorKind::Network, method.as_str(), path, e.to_string()))?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            ApiError::local(
                ErrorKind::Other,
                method.as_str(),
                path,
                format!("the API answered with JSON teeform cannot read: {e}"),
            )
        })
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_string)
}
fn u(v: &Value, k: &str) -> Option<u32> {
    v.get(k).and_then(|x| x.as_f64()).map(|f| f.round() as u32)
}
fn b(v: &Value, k: &str) -> Option<bool> {
    v.get(k).and_then(|x| x.as_bool())
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

/// Reads a v2026-01-21 CVM detail (or list item).
pub fn parse_cvm(v: &Value) -> Option<RemoteCvm> {
    let name = s(v, "name")?;
    let id = v.get("id").map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))?;
    let res = v.get("resource").cloned().unwrap_or(Value::Null);
    let compose = match v.get("compose_file") {
        Some(Value::Object(_)) => v.get("compose_file").cloned(),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object),
        _ => None,
    };
    let mut attrs = CvmAttrs {
        name: name.clone(),
        vcpu: u(&res, "vcpu"),
        memory: res.get("memory_in_gb").and_then(|m| m.as_f64()).map(|gb| (gb * 1024.0).round() as u32),
        disk_size: u(&res, "disk_in_gb"),
        instance_type: s(&res, "instance_type"),
        gpus: u(&res, "gpus"),
        image: v.get("os").and_then(|o| s(o, "name")),
        kms: s(v, "kms_type"),
        public_logs: b(v, "public_logs"),
        public_sysinfo: b(v, "public_sysinfo"),
        public_tcbinfo: b(v, "public_tcbinfo"),
        gateway: b(v, "gateway_enabled"),
        ..Default::default()
    };
    if let Some(c) = &compose {
        attrs.compose = s(c, "docker_compose_file");
        attrs.pre_launch_script = s(c, "pre_launch_script").filter(|p| !p.is_empty());
        if let Some(keys) = c.get("allowed_envs").and_then(|a| a.as_array()) {
            attrs.env = keys.iter().filter_map(|k| k.as_str()).map(|k| (k.to_string(), EnvVal::default())).collect();
        }
    }
    let kms_info = v.get("kms_info").filter(|k| k.is_object()).cloned();
    let in_progress = v.get("progress").is_some_and(|p| !p.is_null()) || b(v, "in_progress").unwrap_or(false);
    Some(RemoteCvm {
        ids: CloudIds { id, app_id: s(v, "app_id"), vm_uuid: s(v, "vm_uuid"), instance_id: s(v, "instance_id") },
        status: s(v, "status").unwrap_or_else(|| "unknown".into()),
        in_progress,
        compose_hash: s(v, "compose_hash"),
        attrs,
        app_compose: compose,
        env_pubkey: kms_info
            .as_ref()
            .and_then(|k| s(k, "encrypted_env_pubkey"))
            .or_else(|| s(v, "encrypted_env_pubkey")),
        kms_info,
        boot: boot_facts(v),
    })
}

/// When the operation in progress began (`progress.started_at` of a v2026 CVM). The boot
/// error is not in a CVM's detail: [`PhalaApi::boot_errors`] reads it for those that need it.
fn boot_facts(v: &Value) -> BootFacts {
    BootFacts { busy_since: v.get("progress").and_then(|p| s(p, "started_at")), ..Default::default() }
}

/// Nodes and KMS instances of `GET /teepods/available`.
fn parse_available(v: &Value) -> Available {
    let list = |k: &str| v.get(k).and_then(|n| n.as_array()).cloned().unwrap_or_default();
    Available {
        nodes: list("nodes")
            .iter()
            .filter_map(|n| Some(NodeInfo { id: n.get("teepod_id")?.as_u64()?, name: s(n, "name")? }))
            .collect(),
        kms: list("kms_list")
            .iter()
            .filter_map(|k| {
                Some(KmsEntry {
                    id: s(k, "id")?,
                    slug: s(k, "slug"),
                    chain_id: k.get("chain_id").and_then(|c| c.as_u64()),
                })
            })
            .collect(),
    }
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
            Ok(v) => parse_cvm(&v)
                .map(Some)
                .ok_or_else(|| ApiError::local(ErrorKind::Other, "GET", &path, "the CVM detail lacks `id` or `name`")),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_cvms(&self) -> Result<Vec<RemoteCvm>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let path = format!("/cvms/paginated?page={page}&page_size=100");
            let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
            let items = v.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default();
            out.extend(items.iter().filter_map(parse_cvm));
            let pages = v.get("pages").and_then(|p| p.as_u64()).unwrap_or(1);
            if page >= pages || items.is_empty() {
                return Ok(out);
            }
            page += 1;
        }
    }

    async fn provision(&self, r: &ProvisionRequest) -> Result<Provisioned, ApiError> {
        let mut compose = json!({
            "name": r.name,
            "docker_compose_file": r.docker_compose_file,
            "allowed_envs": r.env_keys,
            "kms_enabled": true,
            "gateway_enabled": r.gateway,
            "public_logs": r.public_logs,
            "public_sysinfo": r.public_sysinfo,
            "public_tcbinfo": r.public_tcbinfo,
        });
        if let Some(p) = &r.pre_launch_script {
            compose["pre_launch_script"] = p.clone().into();
        }
        let mut body = json!({
            "name": r.name,
            "compose_file": compose,
            "kms": r.kms.to_ascii_uppercase(),
            "env_keys": r.env_keys,
            "listed": false,
        });
        for (k, v) in [("vcpu", r.vcpu), ("memory", r.memory), ("disk_size", r.disk_size), ("gpus", r.gpus)] {
            if let Some(v) = v {
                body[k] = v.into();
            }
        }
        if let Some(t) = &r.instance_type {
            body["instance_type"] = t.clone().into();
        }
        if let Some(i) = &r.image {
            body["image"] = i.clone().into();
        }
        // The SDK renames node_id to teepod_id on the wire.
        if let Some(n) = r.node_id {
            body["teepod_id"] = n.into();
        }
        // Provisioning only computes and caches; repeating it is harmless.
        let v = self.json(Method::POST, "/cvms/provision", Idempotency::Safe, Some(&body), &[]).await?;
        Ok(Provisioned {
            app_id: s(&v, "app_id"),
            env_pubkey: s(&v, "app_env_encrypt_pubkey"),
            compose_hash: s(&v, "compose_hash").ok_or_else(|| {
                ApiError::local(ErrorKind::Other, "POST", "/cvms/provision", "the response has no compose_hash")
            })?,
            kms_id: s(&v, "kms_id"),
            device_id: s(&v, "device_id"),
            kms_info: v.get("kms_info").filter(|k| k.is_object()).cloned(),
        })
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
        let id =
            v.get("id").map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).unwrap_or_default();
        Ok(CloudIds { id, app_id: s(&v, "app_id"), vm_uuid: s(&v, "vm_uuid"), instance_id: s(&v, "instance_id") })
    }

    async fn patch(&self, id: &str, req: &PatchRequest, prepare_only: bool) -> Result<PatchOutcome, ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        let body = serde_json::to_value(req).expect("a patch serializes");
        let headers: Vec<(&str, String)> = if prepare_only { vec![("X-Prepare-Only", "true".into())] } else { vec![] };
        match self.json(Method::PATCH, &path, Idempotency::Unsafe, Some(&body), &headers).await {
            Ok(v) => Ok(PatchOutcome::Accepted { correlation_id: s(&v, "correlation_id").unwrap_or_default() }),
            Err(e) if e.kind == ErrorKind::HashRequired => Ok(PatchOutcome::HashRequired(Box::new(hash_required(&e)))),
            Err(e) => Err(e),
        }
    }

    async fn confirm_patch(&self, id: &str, compose_hash: &str, tx_hash: &str) -> Result<String, ApiError> {
        let path = format!("/cvms/{}", path_id(id));
        let headers = [("X-Compose-Hash", compose_hash.to_string()), ("X-Transaction-Hash", tx_hash.to_string())];
        let v = self.json(Method::PATCH, &path, Idempotency::Unsafe, Some(&json!({})), &headers).await?;
        Ok(s(&v, "correlation_id").unwrap_or_default())
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
        Ok(s(&v, "correlation_id").unwrap_or_default())
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
        let v = self.json(Method::GET, "/instance-types", Idempotency::Safe, None, &[]).await?;
        let mut out = Vec::new();
        for fam in v.get("result").and_then(|r| r.as_array()).into_iter().flatten() {
            for it in fam.get("items").and_then(|r| r.as_array()).into_iter().flatten() {
                if let (Some(id), Some(vcpu), Some(mem)) =
                    (s(it, "id").or_else(|| s(it, "name")), u(it, "vcpu"), u(it, "memory_mb"))
                {
                    out.push(InstanceType { id, vcpu, memory_mb: mem });
                }
            }
        }
        Ok(out)
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ApiError> {
        let v = self.json(Method::GET, "/teepods/available", Idempotency::Safe, None, &[]).await?;
        Ok(v.get("nodes")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
            .filter_map(|n| Some(NodeInfo { id: n.get("teepod_id")?.as_u64()?, name: s(n, "name")? }))
            .collect())
    }

    async fn kms_pubkey(&self, kms: &str, app_id: &str) -> Result<String, ApiError> {
        let path = format!("/kms/{kms}/pubkey/{}", app_id.trim_start_matches("0x"));
        let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
        s(&v, "public_key")
            .ok_or_else(|| ApiError::local(ErrorKind::Other, "GET", &path, "the response has no public_key"))
    }

    async fn available(&self) -> Result<Available, ApiError> {
        let v = self.json(Method::GET, "/teepods/available", Idempotency::Safe, None, &[]).await?;
        Ok(parse_available(&v))
    }

    async fn power(&self, id: &str, action: PowerAction) -> Result<(), ApiError> {
        let path = format!("/cvms/{}/{}", path_id(id), action.verb());
        // UNVERIFIED: whether repeating a start the server already acted on is harmless; it is
        // not repeated after an unclear answer (the next plan sees the run state).
        self.json(Method::POST, &path, Idempotency::Unsafe, None, &[]).await.map(|_| ())
    }

    async fn boot_errors(&self, vm_uuids: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
        if vm_uuids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let body = json!({ "vm_uuids": vm_uuids });
        // A read, though a POST: safe to repeat.
        let v = self.json(Method::POST, "/status/batch", Idempotency::Safe, Some(&body), &[]).await?;
        Ok(v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(uuid, st)| Some((uuid.clone(), s(st, "boot_error").filter(|e| !e.trim().is_empty())?)))
            .collect())
    }

    async fn os_images(&self, cvm: Option<&str>) -> Result<Vec<OsImage>, ApiError> {
        let unreadable = |path: &str, m: String| {
            ApiError::local(
                ErrorKind::Other,
                "GET",
                path,
                format!("the API answered with JSON teeform cannot read: {m}"),
            )
        };
        if let Some(id) = cvm {
            let path = format!("/cvms/{}/available-os-images", path_id(id));
            let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
            return phala_images::parse_available(&v).map_err(|m| unreadable(&path, m));
        }
        let mut out = Vec::new();
        for page in 1u64.. {
            let path = format!("/os-images?page={page}&page_size=100");
            let v = self.json(Method::GET, &path, Idempotency::Safe, None, &[]).await?;
            let (items, pages) = phala_images::parse_catalog_page(&v).map_err(|m| unreadable(&path, m))?;
            let empty = items.is_empty();
            out.extend(items);
            if page >= pages || empty {
                break;
            }
        }
        Ok(out)
    }
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
}
