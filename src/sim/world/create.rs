//! Creating a CVM: a provision computes the app compose, its hash and (for the Phala KMS) a new
//! app id, and keeps them by hash; a commit names that hash and app id and makes the CVM.
//!
//! Two flows reach these rules: the legacy one (`POST /cvms/provision`, then `POST /cvms`) and
//! the same-path one the newer SDKs use (`POST /cvms` with the provision body, answered with a
//! one-time commit `token`, then `POST /cvms` with the commit body and that token). A commit
//! is idempotent: the same app id and compose hash again answer the CVM they made; another
//! hash for an app id in use is 409 `ERR-03-007`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Cvm, Kms, World};
use crate::compose::{self, ComposeFields};
use crate::sim::error::ApiError;
use crate::sim::limits;
use crate::sim::requests::{CommitRequest, ComposeFile, ProvisionRequest, need};
use crate::sim::{SimConfig, app_hash};

/// A provision waiting for its commit (`POST /cvms`), keyed by compose hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provision {
    pub name: String,
    pub app_id: Option<String>,
    pub app_compose: Value,
    pub compose_hash: String,
    pub node_id: u64,
    pub vcpu: u32,
    pub memory: u32,
    pub disk_size: u32,
    pub instance_type: Option<String>,
    pub gpus: u32,
    pub image: String,
    pub kms_type: String,
    pub kms_id: String,
    pub listed: bool,
    pub created_ms: u64,
    /// The one-time commit token of a same-path provision.
    #[serde(default)]
    pub token: Option<String>,
}

/// What a provision answers.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The new app id (Phala KMS only; an on-chain app's id is its contract, deployed next).
    pub app_id: Option<String>,
    pub env_pubkey: Option<String>,
    pub compose_hash: String,
    pub kms: Kms,
    pub device_id: String,
    pub os_image_hash: Option<String>,
    pub node_id: u64,
    pub instance_type: Option<String>,
    /// The one-time commit token (same-path flow only).
    pub token: Option<String>,
}

/// Where and how big a new CVM is.
struct Placement {
    node_id: u64,
    instance_type: Option<String>,
    vcpu: u32,
    memory: u32,
    image: String,
    kms: Kms,
}

impl World {
    /// A provision: checks the request against the API's limits and the catalogs, and keeps it
    /// until its commit. `same_path`: made by `POST /cvms`, so it gets a one-time commit token.
    pub fn provision(
        &mut self,
        req: ProvisionRequest,
        cfg: &SimConfig,
        now: u64,
        same_path: bool,
    ) -> Result<Provisioned, ApiError> {
        let name = need(req.name.clone(), "name")?;
        limits::name(&name).map_err(ApiError::refused)?;
        let cf = &req.compose_file;
        let dc = cf
            .docker_compose_file
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| ApiError::coded(400, "ERR-01-002", "Compose file is required"))?;
        if serde_yaml::from_str::<serde_yaml::Value>(dc).is_err() {
            return Err(ApiError::invalid_compose());
        }
        let pls = cf.pre_launch_script.as_deref().filter(|p| !p.is_empty());
        limits::compose_payload("compose_file", dc, pls).map_err(ApiError::refused)?;
        for (at, keys) in [(&["compose_file", "allowed_envs"][..], &cf.allowed_envs), (&["env_keys"], &req.env_keys)] {
            if let Some(keys) = keys {
                limits::env_keys(at, keys).map_err(ApiError::refused)?;
            }
        }
        let kms_type = match req.kms.as_deref().unwrap_or("PHALA").to_ascii_uppercase().as_str() {
            "PHALA" => "phala",
            "ETHEREUM" | "ETH" => "ethereum",
            "BASE" => "base",
            _ => return Err(ApiError::invalid("kms", "kms must be PHALA, ETHEREUM or BASE")),
        };
        if self.cvms.values().any(|c| c.name == name) {
            return Err(name_taken(&name));
        }
        let at = self.placement(&req, kms_type)?;
        let allowed_envs = cf.allowed_envs.clone().or_else(|| req.env_keys.clone()).unwrap_or_default();
        let app_compose = app_compose(cf, dc, pls, &allowed_envs);
        let compose_hash = app_hash(cfg, &app_compose);
        // Each provision is a new app with its own id, even for a compose another provision
        // (perhaps another client's) has pending; a commit must name the latest one.
        // UNVERIFIED: how Phala Cloud allocates PHALA-KMS app ids (per provision is what
        // clients rely on to tell their CVM from another's).
        let app_id = (kms_type == "phala").then(|| self.new_app_id(&name));
        let token = same_path.then(|| uuid::Uuid::new_v4().simple().to_string());
        let out = Provisioned {
            env_pubkey: app_id.as_ref().map(|a| self.app_env_pubkey(a)),
            app_id: app_id.clone(),
            compose_hash: compose_hash.clone(),
            kms: at.kms.clone(),
            device_id: self.node(at.node_id).map(|n| n.device_id.clone()).unwrap_or_default(),
            os_image_hash: self.os_image(&at.image).map(|x| x.os_image_hash.clone()),
            node_id: at.node_id,
            instance_type: at.instance_type.clone(),
            token: token.clone(),
        };
        let p = Provision {
            name,
            app_id,
            app_compose,
            compose_hash: compose_hash.clone(),
            node_id: at.node_id,
            vcpu: at.vcpu,
            memory: at.memory,
            disk_size: req.disk_size.map_or(20, |n| n.whole()),
            instance_type: at.instance_type,
            gpus: req.gpus.map_or(0, |n| n.whole()),
            image: at.image,
            kms_type: kms_type.to_string(),
            kms_id: at.kms.id,
            listed: req.listed.unwrap_or(false),
            created_ms: now,
            token,
        };
        self.provisions.insert(compose_hash, p);
        Ok(out)
    }

    /// The node, size, OS image and KMS a provision asks for (defaults: the first node,
    /// `tdx.small`, the newest non-dev image), each checked against the catalogs.
    fn placement(&self, req: &ProvisionRequest, kms_type: &str) -> Result<Placement, ApiError> {
        let node_id = match req.teepod_id.or(req.node_id) {
            Some(n) if self.node(n).is_some() => n,
            Some(n) => return Err(ApiError::coded(400, "ERR-01-001", format!("Node {n} not found"))),
            None => self.nodes[0].id,
        };
        let (instance_type, vcpu, memory) = match (&req.instance_type, req.vcpu, req.memory) {
            (Some(t), _, _) => match self.instance_type(t) {
                Some(x) => (Some(t.clone()), x.vcpu, x.memory_mb),
                None => return Err(unknown_instance_type(t)),
            },
            (None, None, None) => (Some("tdx.small".to_string()), 1, 2048),
            (None, c, m) => (None, c.map_or(1, |n| n.whole()), m.map_or(2048, |n| n.whole())),
        };
        let image = match &req.image {
            Some(i) => self.os_image(i).map(|x| x.name.clone()).ok_or_else(|| unknown_image(i))?,
            None => self
                .os_images
                .iter()
                .filter(|x| !x.is_dev)
                .max_by(|a, b| a.version.cmp(&b.version))
                .map(|x| x.name.clone())
                .unwrap_or_default(),
        };
        let Some(kms) = self.kms_for(kms_type).cloned() else {
            return Err(ApiError::coded(
                400,
                "ERR-02-011",
                format!("No {kms_type} KMS is available in this simulator (start it with a chain)"),
            ));
        };
        Ok(Placement { node_id, instance_type, vcpu, memory, image, kms })
    }

    /// Checks a commit's fields before the chain is asked; `Ok(Some((app_id, hash)))` when the
    /// app is on chain, whose contract must then allow the hash (else 468).
    pub fn check_commit(&self, req: &CommitRequest) -> Result<Option<(String, String)>, ApiError> {
        let hash = need(req.compose_hash.clone(), "compose_hash")?;
        let app_id = commit_app_id(req)?;
        if let Some(keys) = &req.env_keys {
            limits::env_keys(&["env_keys"], keys).map_err(ApiError::refused)?;
        }
        if self.provisions.get(&hash).is_none_or(|p| p.kms_type == "phala") {
            return Ok(None);
        }
        // An on-chain app's contract (its address is the app id) must exist and allow the hash
        // the CVM boots with. UNVERIFIED: the exact check and error Phala Cloud makes here.
        if app_id.len() != 40 || !app_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::invalid("app_id", "app_id must be the app contract address (40 hex characters)"));
        }
        Ok(Some((app_id, hash)))
    }

    /// `POST /cvms`: makes the CVM a provision describes (after [`World::check_commit`] and,
    /// on chain, the contract's allowance) and starts its boot. Returns its sequence number;
    /// a commit repeated for the CVM it made (same app id and compose hash) returns that CVM's.
    pub fn commit(&mut self, req: CommitRequest, cfg: &SimConfig, now: u64) -> Result<u64, ApiError> {
        let hash = need(req.compose_hash.clone(), "compose_hash")?;
        let app_id = commit_app_id(&req)?;
        if let Some(c) = self.cvms.values().find(|c| c.app_id == app_id) {
            // UNVERIFIED: which hash the real API compares (the one the CVM was made with, or
            // its current one); the simulator compares the current one.
            return if c.compose_hash == hash {
                Ok(c.seq)
            } else {
                Err(ApiError::coded(409, "ERR-03-007", "app_id is already in use with another compose hash"))
            };
        }
        let Some(p) = self.provisions.get(&hash).cloned() else {
            return Err(ApiError::coded(400, "ERR-01-006", "Compose hash is invalid or expired: provision again"));
        };
        if p.app_id.as_ref().is_some_and(|a| *a != app_id) {
            return Err(ApiError::coded(400, "ERR-01-006", "app_id does not match the provisioned app"));
        }
        // A same-path provision's token is checked when the commit sends one. UNVERIFIED: the
        // real API's answer to a wrong or reused token.
        if let Some(t) = &req.token
            && p.token.as_ref() != Some(t)
        {
            return Err(ApiError::coded(400, "ERR-01-006", "Commit token is invalid, expired or already used"));
        }
        if self.cvms.values().any(|c| c.name == p.name) {
            return Err(name_taken(&p.name));
        }
        let encrypted_env = req.encrypted_env.filter(|e| !e.is_empty());
        if let Some(enc) = &encrypted_env {
            self.check_env(&app_id, enc)?;
        }
        let cvm = Cvm {
            name: p.name,
            app_id,
            node_id: p.node_id,
            vcpu: p.vcpu,
            memory: p.memory,
            disk_size: p.disk_size,
            instance_type: p.instance_type,
            gpus: p.gpus,
            image: p.image,
            kms_type: p.kms_type,
            kms_id: p.kms_id,
            app_compose: p.app_compose,
            compose_hash: hash.clone(),
            encrypted_env,
            listed: p.listed,
            contract_address: req.contract_address,
            deployer_address: req.deployer_address,
            ..Default::default()
        };
        self.provisions.remove(&hash);
        Ok(self.add(cvm, now, cfg))
    }
}

/// The app compose a provision describes (`@phala/cloud`'s defaults for what it leaves out).
fn app_compose(cf: &ComposeFile, dc: &str, pls: Option<&str>, allowed_envs: &[String]) -> Value {
    compose::build(&ComposeFields {
        name: cf.name.as_deref().unwrap_or(""),
        docker_compose_file: dc,
        pre_launch_script: pls,
        allowed_envs,
        kms_enabled: cf.kms_enabled.unwrap_or(true),
        gateway_enabled: cf.gateway_enabled.or(cf.tproxy_enabled).unwrap_or(true),
        public_logs: cf.public_logs.unwrap_or(true),
        public_sysinfo: cf.public_sysinfo.unwrap_or(true),
        public_tcbinfo: cf.public_tcbinfo.unwrap_or(false),
    })
}

/// A commit's app id, without `0x`, in lower case.
fn commit_app_id(req: &CommitRequest) -> Result<String, ApiError> {
    Ok(need(req.app_id.as_deref(), "app_id")?.trim_start_matches("0x").to_ascii_lowercase())
}

fn name_taken(name: &str) -> ApiError {
    ApiError::coded(409, "ERR-01-004", format!("CVM with name '{name}' already exists"))
}

pub(super) fn unknown_instance_type(t: &str) -> ApiError {
    ApiError::coded(400, "ERR-02-001", format!("Instance type {t} not found"))
}

pub(super) fn unknown_image(i: &str) -> ApiError {
    ApiError::coded(400, "ERR-02-010", format!("OS image {i} not found"))
}
