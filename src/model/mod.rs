//! Plain data shared by the planner, the state store, the providers and the executor.
//!
//! Invariant: nothing here holds a secret's value. Sensitive env values appear only as a
//! salted digest plus the template that names where to read them at apply time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::Template;

mod address;
pub mod moves;
pub mod schema;
mod status;

pub use address::{Address, AddressError};
pub use moves::MoveError;
pub use schema::{Attr, SCHEMA, Update};
pub use status::{CvmStatus, Power};

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

/// A CVM's configuration: one field per attribute of [`schema::SCHEMA`], which says what
/// each holds and how teeform treats it. In desired state, `None` means "not managed"
/// (whatever the cloud has is fine) for the attributes the schema does not always manage.
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
    /// The run state. Desired state always sets it (`running` unless the manifest says
    /// `power: stopped`); observed, it is what the API's status means, and unknown (`None`)
    /// for a CVM that failed or is changing in a way that says neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Power>,
}

impl CvmAttrs {
    pub fn env_keys(&self) -> Vec<String> {
        self.env.keys().cloned().collect()
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
    pub status: CvmStatus,
    pub in_progress: bool,
    pub compose_hash: Option<String>,
    /// Observed configuration; env has keys only (values cannot be read back).
    pub attrs: CvmAttrs,
    /// The full app compose, for previewing the hash of a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_compose: Option<serde_json::Value>,
    /// The OS image's hash (`os.os_image_hash`), where the API gives it: what the attestation
    /// gate compares the `os-image-hash` event with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_image_hash: Option<String>,
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
        self.status == CvmStatus::Running && !self.in_progress
    }
}

/// What state keeps for a managed resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub address: Address,
    pub ids: CloudIds,
    /// Configuration as last applied (or refreshed): env values plain or digested.
    pub attrs: CvmAttrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_pubkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_info: Option<serde_json::Value>,
    /// The API's status when last seen (`starting` right after a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CvmStatus>,
    /// A create that did not finish: the next plan replaces it.
    #[serde(default)]
    pub tainted: bool,
    /// What teeform saw of this CVM's boots.
    #[serde(default, skip_serializing_if = "BootHistory::is_empty")]
    pub boot: BootHistory,
    #[serde(default)]
    pub dependencies: Vec<Address>,
    pub updated_at: String,
    /// Why the CVM's attestation did not prove it runs what was applied (the field that
    /// differs), from the last apply or `verify`; `None` once it does, and for records from
    /// before teeform checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
    /// The Phala Cloud API prefix the CVM lives at (`local`: the embedded simulator). Records
    /// from before teeform kept it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The manifest's `lifecycle: {prevent_destroy: true}` as last applied: a plan that would
    /// destroy or replace the CVM is refused, also once the CVM is gone from the manifest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    /// The address its secret env values' digests were made under, when not its own: the CVM
    /// was moved (`moved:`, `state mv`). A digest is salted with an address, so equal secrets
    /// of two CVMs differ; a moved CVM keeps its digests, and so their scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_scope: Option<Address>,
    /// A surge instance (`update_policy.max_surge`): temporary extra capacity a roll made
    /// above `replicas`, deleted when the roll ends. Kept while a roll is paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub surge: bool,
}

impl ResourceRecord {
    /// The address its secret env values' digests are made under ([`Self::secrets_scope`]).
    pub fn digest_scope(&self) -> &Address {
        self.secrets_scope.as_ref().unwrap_or(&self.address)
    }

    /// The same CVM under another address (`moved:`, `state mv`): nothing about it changes
    /// but where state keeps it; its digests keep the scope they were made under.
    pub fn moved_to(&self, to: &Address) -> ResourceRecord {
        let scope = self.digest_scope().clone();
        ResourceRecord { address: to.clone(), secrets_scope: (scope != *to).then_some(scope), ..self.clone() }
    }

    /// The app contract of an on-chain-KMS CVM, as `0x` and lowercase hex: `pinned` (the
    /// manifest's `kms.contract`) when set, else the KMS info's `dstack_app_address`, else the
    /// app id (for on-chain KMS the app id is the app contract's address).
    pub fn app_contract(&self, pinned: Option<&str>) -> Option<String> {
        let from_api = || {
            self.kms_info
                .as_ref()
                .and_then(|k| k.get("dstack_app_address"))
                .and_then(|a| a.as_str())
                .map(str::to_string)
                .or_else(|| self.ids.app_id.clone())
        };
        pinned
            .map(str::to_string)
            .or_else(from_api)
            .map(|a| format!("0x{}", a.trim_start_matches("0x").to_ascii_lowercase()))
    }

    /// The value of `${cvm.NAME.ATTR}` for this CVM: its ids, name and compose hash (the
    /// attributes other resources may reference), when known.
    pub fn reference(&self, attr: &str) -> Option<String> {
        match attr {
            "id" => Some(self.ids.id.clone()),
            "name" => Some(self.attrs.name.clone()),
            "app_id" => self.ids.app_id.clone(),
            "vm_uuid" => self.ids.vm_uuid.clone(),
            "instance_id" => self.ids.instance_id.clone(),
            "compose_hash" => self.compose_hash.clone(),
            _ => None,
        }
    }
}

/// The form CVM names are compared in wherever a name stands for a CVM (two CVMs of one
/// name, a name taken at the endpoint, a name freed for another): without letter case.
/// UNVERIFIED: Phala Cloud names are hostnames, and DNS ignores case; the API's own
/// comparison is not documented, so teeform refuses what either reading would refuse.
pub fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The records after moving each `(from, to)` (`moved:`, `state mv`): a moved record under its
/// new address, and every record's dependencies naming a moved address named by its new one.
/// The caller has checked that each `from` is held and each `to` free (and none is both).
pub fn moved_records(
    records: &BTreeMap<Address, ResourceRecord>,
    moves: &[(Address, Address)],
) -> BTreeMap<Address, ResourceRecord> {
    let to_of: BTreeMap<&Address, &Address> = moves.iter().map(|(f, t)| (f, t)).collect();
    records
        .values()
        .map(|r| {
            let mut r = match to_of.get(&r.address) {
                Some(to) => r.moved_to(to),
                None => r.clone(),
            };
            for d in &mut r.dependencies {
                if let Some(to) = to_of.get(d) {
                    *d = (*to).clone();
                }
            }
            (r.address.clone(), r)
        })
        .collect()
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
