//! The request bodies the simulated API reads, as typed structs (the shapes of the official
//! SDK's request schemas, reference §2). A body is read by [`super::edge::Body`]: a value of
//! the wrong type is FastAPI's 422 at its `loc`; fields the API does not read are ignored, as
//! the real API ignores them (only the unified PATCH refuses unknown fields).
//!
//! Required fields are `Option`s checked by the rule that needs them, so a missing one is
//! FastAPI's "field required" at its `loc`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;

/// A JSON number as the API reads sizes: any number, taken as the nearest whole number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Num(pub f64);

impl Num {
    /// The nearest whole number (negative ones are 0; checks refuse them first).
    pub fn whole(self) -> u32 {
        self.0.round() as u32
    }
}

/// The value of a required field, or FastAPI's "field required" for it.
pub fn need<T>(v: Option<T>, field: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::required(field))
}

/// `POST /cvms/provision`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProvisionRequest {
    pub name: Option<String>,
    pub compose_file: ComposeFile,
    /// `PHALA`, `ETHEREUM` (or `ETH`) or `BASE`, in any case.
    pub kms: Option<String>,
    /// The node (`teepod_id`, or `node_id` as older clients send it).
    pub teepod_id: Option<u64>,
    pub node_id: Option<u64>,
    pub instance_type: Option<String>,
    pub vcpu: Option<Num>,
    /// MiB.
    pub memory: Option<Num>,
    /// GB.
    pub disk_size: Option<Num>,
    pub gpus: Option<Num>,
    /// An OS image name or slug.
    pub image: Option<String>,
    pub listed: Option<bool>,
    pub env_keys: Option<Vec<String>>,
}

/// The app compose a provision sends (`compose_file`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ComposeFile {
    pub name: Option<String>,
    pub docker_compose_file: Option<String>,
    pub pre_launch_script: Option<String>,
    pub allowed_envs: Option<Vec<String>>,
    pub kms_enabled: Option<bool>,
    pub gateway_enabled: Option<bool>,
    /// The older name of `gateway_enabled`.
    pub tproxy_enabled: Option<bool>,
    pub public_logs: Option<bool>,
    pub public_sysinfo: Option<bool>,
    pub public_tcbinfo: Option<bool>,
}

/// `POST /cvms`: commits a provision.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CommitRequest {
    pub compose_hash: Option<String>,
    /// The app id the provision gave, or an on-chain app's contract address.
    pub app_id: Option<String>,
    pub env_keys: Option<Vec<String>>,
    /// Hex; must decrypt with the app's key.
    pub encrypted_env: Option<String>,
    pub contract_address: Option<String>,
    pub deployer_address: Option<String>,
    /// The one-time token a same-path provision (`POST /cvms`) answered with.
    pub token: Option<String>,
}

/// The fields of one update, whichever endpoint carries them: the unified `PATCH /cvms/{id}`
/// reads it whole, the per-field endpoints build one. A held update (465) keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Update {
    // Fields of the app compose (they change the compose hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_compose_file: Option<String>,
    /// `""` removes the script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_launch_script: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_envs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_logs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_sysinfo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_tcbinfo: Option<bool>,
    // The rest of the CVM's configuration.
    /// Hex; `""` removes the env.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_env: Option<String>,
    /// Accepted and not kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_config: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Gpus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<Num>,
    /// MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Num>,
    /// GB; disks only grow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<Num>,
    /// An OS image name or slug.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_force_stop: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Whether the update may restart the CVM (the SDKs send it with a resize). Accepted and
    /// not acted on: every update that changes something restarts the CVM here. UNVERIFIED:
    /// what the real API does with `false`.
    #[serde(skip_serializing)]
    pub allow_restart: Option<bool>,
    /// Fields the API does not know: the unified PATCH refuses them.
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, Value>,
}

impl Update {
    /// Whether it names nothing to change (`allow_restart` alone is no change).
    pub fn is_empty(&self) -> bool {
        Update { allow_restart: None, ..self.clone() } == Update::default()
    }

    /// Its app-compose fields only.
    pub fn compose_part(&self) -> ComposeChange {
        ComposeChange {
            docker_compose_file: self.docker_compose_file.clone(),
            pre_launch_script: self.pre_launch_script.clone(),
            allowed_envs: self.allowed_envs.clone(),
            public_logs: self.public_logs,
            public_sysinfo: self.public_sysinfo,
            public_tcbinfo: self.public_tcbinfo,
        }
    }
}

/// The fields of an update that change the app compose (`POST /cvms/{id}/compose_file/provision`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ComposeChange {
    pub docker_compose_file: Option<String>,
    pub pre_launch_script: Option<String>,
    pub allowed_envs: Option<Vec<String>>,
    pub public_logs: Option<bool>,
    pub public_sysinfo: Option<bool>,
    pub public_tcbinfo: Option<bool>,
}

impl From<ComposeChange> for Update {
    fn from(c: ComposeChange) -> Update {
        Update {
            docker_compose_file: c.docker_compose_file,
            pre_launch_script: c.pre_launch_script,
            allowed_envs: c.allowed_envs,
            public_logs: c.public_logs,
            public_sysinfo: c.public_sysinfo,
            public_tcbinfo: c.public_tcbinfo,
            ..Update::default()
        }
    }
}

/// GPUs as a count or as the SDK's `{count, product_name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gpus {
    Count(u64),
    Spec {
        #[serde(default)]
        count: Option<u64>,
    },
}

impl Gpus {
    pub fn count(&self) -> u32 {
        match self {
            Gpus::Count(n) | Gpus::Spec { count: Some(n) } => *n as u32,
            Gpus::Spec { count: None } => 0,
        }
    }
}

/// `PATCH /cvms/{id}/envs`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EnvsRequest {
    pub encrypted_env: Option<String>,
    pub env_keys: Option<Vec<String>>,
    /// With `transaction_hash`: confirms an update held for this hash (phase 2).
    pub compose_hash: Option<String>,
    pub transaction_hash: Option<String>,
}

/// `PATCH /cvms/{id}/resources`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResourcesRequest {
    pub vcpu: Option<Num>,
    pub memory: Option<Num>,
    pub disk_size: Option<Num>,
    pub instance_type: Option<String>,
}

/// `PATCH /cvms/{id}/visibility`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VisibilityRequest {
    pub public_sysinfo: Option<bool>,
    pub public_logs: Option<bool>,
    pub public_tcbinfo: Option<bool>,
    pub listed: Option<bool>,
}

/// `PATCH /cvms/{id}/name`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RenameRequest {
    pub name: Option<String>,
}

/// `PATCH /cvms/{id}/os-image`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OsImageRequest {
    pub os_image_name: Option<String>,
    /// The older name of `os_image_name`.
    pub image: Option<String>,
}

/// `PATCH /cvms/{id}/compose_file`: commits a compose provisioned for this CVM.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ComposeCommit {
    pub compose_hash: Option<String>,
    pub encrypted_env: Option<String>,
    pub env_keys: Option<Vec<String>>,
}

/// `POST /cvms/{id}/commit-update`: commits a held update by its token.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CommitUpdate {
    pub token: Option<String>,
    pub compose_hash: Option<String>,
    /// The registering transaction; absent when the hash was registered before.
    pub transaction_hash: Option<String>,
}

/// `POST /status/batch`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatusBatch {
    pub vm_uuids: Vec<String>,
}

/// The query of the SSE form of `GET /cvms/{id}/state`: the status to wait for, and seconds.
#[derive(Debug, Default, Deserialize)]
pub struct WatchQuery {
    pub target: Option<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
}

/// Paging of `GET /cvms/paginated`, `/kms`, `/os-images` and `/apps`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub page: Option<u64>,
    pub page_size: Option<u64>,
    /// `/os-images`: dev images only, or none.
    pub is_dev: Option<bool>,
    /// `/kms`: on-chain KMSes only, or none.
    pub is_onchain: Option<bool>,
    /// `/apps`: part of a name or id, in any case.
    pub search: Option<String>,
}

impl PageQuery {
    /// The page asked for (from 1) and its size, clamped to 1..=`max` (`default` when absent).
    pub fn page(&self, default: u64, max: u64) -> (u64, u64) {
        (self.page.unwrap_or(1).max(1), self.page_size.unwrap_or(default).clamp(1, max))
    }
}

/// `POST /cvms/{id}/replicas`: the node the new instance goes on (the SDKs send `node_id`
/// only; the CLI's `cvms replicate` also `encrypted_env`/`compose_hash`, which the simulator
/// ignores).
#[derive(Debug, Default, Deserialize)]
pub struct ReplicaRequest {
    #[serde(default)]
    pub node_id: Option<u64>,
}
