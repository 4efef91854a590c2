//! Plain data shared by the planner, the state store, the providers and the executor.
//!
//! Invariant: nothing here holds a secret's value. Sensitive env values appear only as a
//! salted digest plus the template that names where to read them at apply time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::Template;

/// One environment variable's value as the planner and the state see it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnvVal {
    /// The value, when known and not sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A salted one-way digest, when sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How to produce the value at apply time (secrets, or references to CVMs not yet
    /// created). Never stored in state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
}

impl EnvVal {
    pub fn plain(v: impl Into<String>) -> Self {
        EnvVal { value: Some(v.into()), ..Default::default() }
    }

    pub fn is_sensitive(&self) -> bool {
        self.digest.is_some()
    }

    /// Neither value nor digest is known yet ("known after apply").
    pub fn is_unknown(&self) -> bool {
        self.value.is_none() && self.digest.is_none()
    }

    /// Same value, as far as can be told without secrets.
    pub fn same_as(&self, other: &EnvVal) -> bool {
        !self.is_unknown() && self.value == other.value && self.digest == other.digest
    }

    /// The form kept in state: value or digest, no template.
    pub fn for_state(&self) -> EnvVal {
        EnvVal { value: self.value.clone(), digest: self.digest.clone(), template: None }
    }
}

/// A CVM's configuration. In desired state, `None` means "not managed" (whatever the cloud
/// has is fine); `name`, `compose`, `pre_launch_script` and `env` are always managed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CvmAttrs {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_launch_script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_logs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_sysinfo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_tcbinfo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_force_stop: Option<bool>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvVal>,
    /// The run state: `running` or `stopped`. Desired state always sets it (`running` unless
    /// the manifest says `power: stopped`); observed, it is what the API's status means, and
    /// unknown (`None`) for a CVM that failed or is changing in a way that says neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<String>,
}

/// How a change to an attribute is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Part of the one unified `PATCH /cvms/{id}`; restarts the CVM.
    InPlace,
    /// The API cannot change it on a running CVM: destroy and create again.
    Replace,
    /// Started or stopped with the API's `POST /cvms/{id}/start` or `/stop`: stopping comes
    /// before an update of the same CVM, starting after it, so it boots once.
    Power,
}

/// Every attribute in display order, with how it is changed.
pub const ATTRS: &[(&str, Update)] = &[
    ("name", Update::Replace),
    ("kms", Update::Replace),
    ("node", Update::Replace),
    ("gateway", Update::Replace),
    ("instance_type", Update::InPlace),
    ("vcpu", Update::InPlace),
    ("memory", Update::InPlace),
    ("disk_size", Update::InPlace),
    ("gpus", Update::InPlace),
    ("image", Update::InPlace),
    ("public_logs", Update::InPlace),
    ("public_sysinfo", Update::InPlace),
    ("public_tcbinfo", Update::InPlace),
    ("shutdown_timeout", Update::InPlace),
    ("allow_force_stop", Update::InPlace),
    ("pre_launch_script", Update::InPlace),
    ("compose", Update::InPlace),
    ("env", Update::InPlace),
    ("power", Update::Power),
];

/// The values of `power`.
pub const RUNNING: &str = "running";
pub const STOPPED: &str = "stopped";

impl CvmAttrs {
    /// The attribute as JSON (null when unset), for generic diffs and rendering.
    pub fn get(&self, name: &str) -> serde_json::Value {
        use serde_json::Value;
        fn o<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
            v.clone().map_or(Value::Null, Into::into)
        }
        match name {
            "name" => self.name.clone().into(),
            "compose" => o(&self.compose),
            "pre_launch_script" => o(&self.pre_launch_script),
            "vcpu" => o(&self.vcpu),
            "memory" => o(&self.memory),
            "disk_size" => o(&self.disk_size),
            "instance_type" => o(&self.instance_type),
            "node" => o(&self.node),
            "image" => o(&self.image),
            "kms" => o(&self.kms),
            "public_logs" => o(&self.public_logs),
            "public_sysinfo" => o(&self.public_sysinfo),
            "public_tcbinfo" => o(&self.public_tcbinfo),
            "gateway" => o(&self.gateway),
            "gpus" => o(&self.gpus),
            "shutdown_timeout" => o(&self.shutdown_timeout),
            "allow_force_stop" => o(&self.allow_force_stop),
            "env" => serde_json::to_value(&self.env).unwrap_or(Value::Null),
            "power" => o(&self.power),
            _ => Value::Null,
        }
    }

    pub fn env_keys(&self) -> Vec<String> {
        self.env.keys().cloned().collect()
    }

    /// The attributes in the API's normal form: what the API reports back after being sent
    /// these. Desired attributes, the API's reports and state records are compared in this
    /// form, so a value the API stores differently from how it was written never shows as a
    /// change (nor restarts a CVM to "fix" it, forever).
    ///
    /// The API does not keep these exactly as written:
    /// - `pre_launch_script`: an empty script is no script. `@phala/dstack-sdk` and
    ///   `@phala/cloud` drop a falsy one before hashing (`preprocessAppCompose`), the
    ///   simulator drops it when stored, and `PATCH` with `""` removes it. Only the empty
    ///   string is falsy: a script of whitespace stays (UNVERIFIED for the real backend,
    ///   taken to follow the SDK's rule).
    /// - `instance_type`, `node`, `image`: empty is absent (UNVERIFIED: the API reports none
    ///   rather than an empty string).
    /// - `kms`: sent as `PHALA`/`ETHEREUM`/`BASE` (the SDK's enum), reported in lower case.
    /// - `env`: no keys and an absent or empty `allowed_envs` are the same (both an empty map
    ///   here already, so nothing to rewrite).
    ///
    /// Everything else (name, compose, numbers, booleans, env values) is kept byte for byte:
    /// a whitespace-only script, CRLF line ends or a byte-order mark reach the CVM as they
    /// are, so they are compared as they are.
    pub fn normalized(mut self) -> CvmAttrs {
        for v in [&mut self.pre_launch_script, &mut self.instance_type, &mut self.node, &mut self.image] {
            if v.as_deref() == Some("") {
                *v = None;
            }
        }
        if let Some(k) = &mut self.kms {
            k.make_ascii_lowercase();
        }
        self
    }
}

/// Identifiers the cloud gave a CVM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CloudIds {
    /// The identifier teeform uses in `/cvms/{id}` paths.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// A CVM as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteCvm {
    pub ids: CloudIds,
    pub status: String,
    pub in_progress: bool,
    pub compose_hash: Option<String>,
    /// Observed configuration; env has keys only (values cannot be read back).
    pub attrs: CvmAttrs,
    /// The full app compose, for previewing the hash of a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_compose: Option<serde_json::Value>,
    pub env_pubkey: Option<String>,
    /// On-chain KMS facts (chain id, app contract), when the CVM uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_info: Option<serde_json::Value>,
    /// What the API says about its boot, beyond the status.
    #[serde(default)]
    pub boot: BootFacts,
}

/// What the API says about a CVM's boot, beyond its status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootFacts {
    /// The API's `boot_error` (read with one `POST /status/batch` for the CVMs that need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the operation in progress began (the API's `progress.started_at`, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_since: Option<String>,
    /// Busy for longer than teeform waits for a CVM to run. Set by the refresh, which has a
    /// clock; the planner has none.
    #[serde(default)]
    pub stuck: bool,
}

impl RemoteCvm {
    pub fn is_ready(&self) -> bool {
        self.status == "running" && !self.in_progress
    }
}

/// What state keeps for a managed resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub address: String,
    pub ids: CloudIds,
    /// Configuration as last applied (or refreshed): env values plain or digested.
    pub attrs: CvmAttrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_pubkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// A create that did not finish: the next plan replaces it.
    #[serde(default)]
    pub tainted: bool,
    /// What teeform saw of this CVM's boots.
    #[serde(default, skip_serializing_if = "BootHistory::is_empty")]
    pub boot: BootHistory,
    #[serde(default)]
    pub dependencies: Vec<String>,
    pub updated_at: String,
    /// The Phala Cloud API prefix the CVM lives at (`local`: the embedded simulator). Records
    /// from before teeform kept it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// What teeform saw of a CVM's boots: enough to tell a failed create from a CVM that broke
/// later, and to stop replacing a CVM that fails the same way every time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootHistory {
    /// Created by teeform and not yet seen running: if its boot fails, the create failed.
    #[serde(default)]
    pub pending: bool,
    /// Why each boot of the recorded configuration failed (the API's `boot_error`, or the
    /// status), oldest first. A replacement of the same configuration adds to it; after two,
    /// teeform stops replacing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl BootHistory {
    pub fn is_empty(&self) -> bool {
        !self.pending && self.failures.is_empty()
    }
}

/// A command that shows a CVM's boot log (serial console: boot, kernel, docker compose).
pub fn boot_log_command(ids: &CloudIds) -> String {
    let id = match &ids.app_id {
        Some(a) => format!("app_{}", a.trim_start_matches("0x")),
        None => ids.vm_uuid.clone().unwrap_or_else(|| ids.id.clone()),
    };
    format!("phala cvms serial-logs {id}")
}

/// An output as stored: sensitive outputs keep no value, only a salted digest of the value
/// last applied, so `output --raw NAME` can recompute the value and check it is that one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
