//! The simulator's world: CVMs, pending provisions and updates, and the test KMS.
//!
//! Lifecycle is computed from wall-clock deadlines instead of background tasks, so a world
//! saved to disk and loaded again (the `local` endpoint) resumes where it was.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: u64,
    pub name: String,
    pub region: String,
    pub device_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OsImage {
    pub name: String,
    pub slug: String,
    pub version: Vec<u32>,
    pub is_dev: bool,
    pub os_image_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceType {
    pub id: String,
    pub family: String,
    pub vcpu: u32,
    pub memory_mb: u32,
    pub requires_gpu: bool,
}

/// A KMS the simulator offers: the built-in Phala one and, when a chain is configured,
/// on-chain ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kms {
    pub id: String,
    pub slug: String,
    pub chain_id: Option<u64>,
    pub kms_contract_address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cvm {
    pub seq: u64,
    pub name: String,
    pub app_id: String,
    pub vm_uuid: String,
    pub instance_id: String,
    pub node_id: u64,
    pub vcpu: u32,
    pub memory: u32,
    pub disk_size: u32,
    pub instance_type: Option<String>,
    pub gpus: u32,
    pub image: String,
    /// `phala`, `ethereum` or `base`.
    pub kms_type: String,
    pub kms_id: String,
    pub app_compose: Value,
    pub compose_hash: String,
    pub encrypted_env: Option<String>,
    pub shutdown_timeout: Option<u32>,
    pub allow_force_stop: Option<bool>,
    pub listed: bool,
    pub created_ms: u64,
    pub contract_address: Option<String>,
    pub deployer_address: Option<String>,
    /// `running` or `stopped` once the current transition ends.
    pub target: String,
    /// The transition in progress (`starting`, `restarting`, `stopping`) until `busy_until`.
    pub transition: String,
    pub busy_until: u64,
    /// When the transition in progress began.
    #[serde(default)]
    pub busy_since: u64,
    /// Why its boot fails, for CVMs named in the `fail_boot` knob (reported once it is in
    /// `error`).
    #[serde(default)]
    pub boot_error: Option<String>,
    pub correlation_id: Option<String>,
    pub restarts: u64,
    pub updates: u64,
}

impl Cvm {
    pub fn status(&self, now: u64) -> &str {
        if now < self.busy_until { &self.transition } else { &self.target }
    }

    pub fn busy(&self, now: u64) -> bool {
        now < self.busy_until
    }

    /// The boot error the API reports: only for a CVM whose boot failed.
    pub fn boot_error(&self, now: u64) -> Option<&str> {
        (self.status(now) == "error").then_some(self.boot_error.as_deref()).flatten()
    }

    /// Starts a transition (`starting`, `restarting`, …) to `target`, taking `ms`. A CVM in
    /// the `fail_boot` knob ends a boot in `error` instead of running.
    pub fn transition(&mut self, now: u64, transition: &str, target: &str, ms: u64, fail_boot: &[String]) {
        let fails = target == "running" && fail_boot.contains(&self.name);
        self.target = if fails { "error".into() } else { target.into() };
        self.boot_error = fails.then(|| SIM_BOOT_ERROR.to_string());
        self.transition = transition.into();
        self.busy_since = now;
        self.busy_until = now + ms;
    }

    pub fn env_keys(&self) -> Vec<String> {
        self.app_compose
            .get("allowed_envs")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    pub fn is_onchain(&self) -> bool {
        self.kms_type != "phala"
    }
}

/// The boot error of a CVM the `fail_boot` knob names.
pub const SIM_BOOT_ERROR: &str = "docker compose up failed: container web exited with code 1 (simulated boot failure)";

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
}

/// An update held back until its compose hash is registered on chain (HTTP 465).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingUpdate {
    pub cvm_seq: u64,
    pub compose_hash: String,
    pub body: Value,
    pub token: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct World {
    pub master_key: String,
    pub next_seq: u64,
    pub cvms: BTreeMap<u64, Cvm>,
    pub provisions: BTreeMap<String, Provision>,
    pub pending_updates: BTreeMap<String, PendingUpdate>,
    pub nodes: Vec<Node>,
    pub os_images: Vec<OsImage>,
    pub instance_types: Vec<InstanceType>,
    pub kms: Vec<Kms>,
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl World {
    pub fn new(seed: u64) -> World {
        let master_key = hex_digest(&[b"teeform-sim-master", &seed.to_le_bytes(), &rand::random::<[u8; 16]>()]);
        let images = [
            ("dstack-0.5.3", vec![0, 5, 3], false),
            ("dstack-0.5.4", vec![0, 5, 4], false),
            ("dstack-0.5.5", vec![0, 5, 5], false),
            ("dstack-dev-0.5.5", vec![0, 5, 5], true),
        ];
        World {
            master_key,
            next_seq: 1,
            nodes: vec![
                Node {
                    id: 1,
                    name: "prod5".into(),
                    region: "us-west".into(),
                    device_id: hex_digest(&[b"device", b"1"]),
                },
                Node {
                    id: 2,
                    name: "prod6".into(),
                    region: "eu-central".into(),
                    device_id: hex_digest(&[b"device", b"2"]),
                },
            ],
            os_images: images
                .iter()
                .map(|(name, v, dev)| OsImage {
                    name: name.to_string(),
                    slug: format!("{name}-{}", &hex_digest(&[name.as_bytes()])[..8]),
                    version: v.clone(),
                    is_dev: *dev,
                    os_image_hash: hex_digest(&[b"os", name.as_bytes()]),
                })
                .collect(),
            instance_types: [
                ("tdx.small", 1, 2048),
                ("tdx.medium", 2, 4096),
                ("tdx.large", 4, 8192),
                ("tdx.xlarge", 8, 16384),
            ]
            .iter()
            .map(|(id, vcpu, mem)| InstanceType {
                id: id.to_string(),
                family: "tdx".into(),
                vcpu: *vcpu,
                memory_mb: *mem,
                requires_gpu: false,
            })
            .collect(),
            kms: vec![Kms {
                id: "kms_phala_sim".into(),
                slug: "phala-sim".into(),
                chain_id: None,
                kms_contract_address: None,
            }],
            ..Default::default()
        }
    }

    /// The test KMS's per-app X25519 private key (a real KMS derives it inside a TEE).
    pub fn app_env_key(&self, app_id: &str) -> [u8; 32] {
        let h = Sha256::new()
            .chain_update(self.master_key.as_bytes())
            .chain_update(b"env")
            .chain_update(app_id.to_ascii_lowercase().trim_start_matches("0x"))
            .finalize();
        h.into()
    }

    pub fn app_env_pubkey(&self, app_id: &str) -> String {
        crate::envcrypt::public_key_hex(&self.app_env_key(app_id))
    }

    pub fn new_app_id(&self, name: &str) -> String {
        hex_digest(&[
            b"app",
            self.master_key.as_bytes(),
            name.as_bytes(),
            &self.next_seq.to_le_bytes(),
            &rand::random::<[u8; 8]>(),
        ])[..40]
            .to_string()
    }

    /// Resolves a `/cvms/{id}` path segment the ways the SDK writes it.
    pub fn find(&self, seg: &str) -> Option<u64> {
        let live = || self.cvms.values();
        if let Some(app) = seg.strip_prefix("app_") {
            return live().find(|c| c.app_id.eq_ignore_ascii_case(app.trim_start_matches("0x"))).map(|c| c.seq);
        }
        if let Some(inst) = seg.strip_prefix("instance_") {
            return live().find(|c| c.instance_id.eq_ignore_ascii_case(inst)).map(|c| c.seq);
        }
        let nodash = seg.replace('-', "").to_ascii_lowercase();
        if nodash.len() == 32
            && nodash.chars().all(|c| c.is_ascii_hexdigit())
            && let Some(c) = live().find(|c| c.vm_uuid.replace('-', "") == nodash)
        {
            return Some(c.seq);
        }
        if let Ok(n) = seg.parse::<u64>()
            && self.cvms.contains_key(&n)
        {
            return Some(n);
        }
        live().find(|c| c.name == seg).map(|c| c.seq)
    }

    pub fn kms_for(&self, kms_type: &str) -> Option<&Kms> {
        match kms_type {
            "phala" => self.kms.iter().find(|k| k.chain_id.is_none()),
            "base" => self
                .kms
                .iter()
                .find(|k| k.chain_id == Some(8453))
                .or_else(|| self.kms.iter().find(|k| k.chain_id.is_some())),
            "ethereum" => self
                .kms
                .iter()
                .find(|k| k.chain_id == Some(1))
                .or_else(|| self.kms.iter().find(|k| k.chain_id.is_some())),
            _ => None,
        }
    }

    pub fn kms_info_json(&self, k: &Kms) -> Value {
        json!({
            "id": k.id,
            "slug": k.slug,
            "url": format!("https://{}.kms.sim.invalid", k.slug),
            "version": "v0.5.5",
            "chain_id": k.chain_id,
            "kms_contract_address": k.kms_contract_address,
            "gateway_app_id": Value::Null,
        })
    }
}
