//! The simulator's world and its rules: what exists (CVMs, provisions and held updates, the
//! nodes, OS images, instance types and KMSes on offer) and what may happen to it. The rules
//! are methods that take typed requests ([`super::requests`]) and answer with data or an
//! [`ApiError`]; they do no I/O (the routes ask the chain and save the world) and take the
//! time as an argument.
//!
//! - `cvm.rs`: a CVM, its lifecycle (status from deadlines, power actions, delete);
//! - `create.rs`: provision and commit;
//! - `update.rs`: updates (checked, applied with one restart, or held for the chain: 465) and
//!   their confirmation.
//!
//! Lifecycle is computed from wall-clock deadlines instead of background tasks, so a world
//! saved to disk and loaded again (the `local` endpoint) resumes where it was. Its serialized
//! form is the simulator's data file: field names stay as they are.

mod create;
mod cvm;
mod history;
mod update;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ApiError;

pub use create::{Provision, Provisioned};
pub use cvm::{Cvm, Power, SIM_BOOT_ERROR, hashid};
pub use update::{Applied, ComposePrepared, PendingUpdate};

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
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

impl OsImage {
    /// A Phala OS image as the seeded ones and published ones are made.
    pub fn named(name: &str, version: &[u32], is_dev: bool) -> OsImage {
        OsImage {
            name: name.to_string(),
            slug: format!("{name}-{}", &hex_digest(&[name.as_bytes()])[..8]),
            version: version.to_vec(),
            is_dev,
            os_image_hash: hex_digest(&[b"os", name.as_bytes()]),
        }
    }

    /// `0.5.5`.
    pub fn version_text(&self) -> String {
        self.version.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kms {
    pub id: String,
    pub slug: String,
    pub chain_id: Option<u64>,
    pub kms_contract_address: Option<String>,
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
    /// The CVMs deleted, as `/_sim/stats` needs them (an app's history of instances).
    #[serde(default)]
    pub gone: Vec<history::Gone>,
}

/// SHA-256 over the parts, each followed by a zero byte, in hex.
fn hex_digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl World {
    /// A world with two nodes, four OS images (one dev), four instance types and the Phala KMS.
    pub fn new(seed: u64) -> World {
        let master_key = hex_digest(&[b"teeform-sim-master", &seed.to_le_bytes(), &rand::random::<[u8; 16]>()]);
        let node = |id: u64, name: &str, region: &str| Node {
            id,
            name: name.into(),
            region: region.into(),
            device_id: hex_digest(&[b"device", id.to_string().as_bytes()]),
        };
        let family = |id: &str, vcpu, memory_mb| InstanceType {
            id: id.into(),
            family: "tdx".into(),
            vcpu,
            memory_mb,
            requires_gpu: false,
        };
        World {
            master_key,
            next_seq: 1,
            nodes: vec![node(1, "prod5", "us-west"), node(2, "prod6", "eu-central")],
            os_images: vec![
                OsImage::named("dstack-0.5.3", &[0, 5, 3], false),
                OsImage::named("dstack-0.5.4", &[0, 5, 4], false),
                OsImage::named("dstack-0.5.5", &[0, 5, 5], false),
                OsImage::named("dstack-dev-0.5.5", &[0, 5, 5], true),
            ],
            instance_types: vec![
                family("tdx.small", 1, 2048),
                family("tdx.medium", 2, 4096),
                family("tdx.large", 4, 8192),
                family("tdx.xlarge", 8, 16384),
            ],
            kms: vec![Kms {
                id: "kms_phala_sim".into(),
                slug: "phala-sim".into(),
                chain_id: None,
                kms_contract_address: None,
            }],
            ..Default::default()
        }
    }

    // ----- ids and keys -------------------------------------------------------------------

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

    /// Refuses an encrypted env that does not decrypt with the app's key (the CVM could not
    /// read it).
    fn check_env(&self, app_id: &str, encrypted_env: &str) -> Result<(), ApiError> {
        match crate::envcrypt::decrypt(encrypted_env, &self.app_env_key(app_id)) {
            Ok(_) => Ok(()),
            Err(_) => Err(ApiError::env_does_not_decrypt()),
        }
    }

    /// A new Phala-KMS app id: 40 hex characters, different for every provision.
    fn new_app_id(&self, name: &str) -> String {
        hex_digest(&[
            b"app",
            self.master_key.as_bytes(),
            name.as_bytes(),
            &self.next_seq.to_le_bytes(),
            &rand::random::<[u8; 8]>(),
        ])[..40]
            .to_string()
    }

    // ----- lookups ------------------------------------------------------------------------

    /// Resolves a `/cvms/{id}` path segment the ways the SDKs write it: `app_<app id>`,
    /// `instance_<instance id>`, a bare 40-hex app id or instance id (as the Python SDK sends
    /// them; an app id wins), a hashid (`cvm_…`, API version 2026-05-22 on), a VM UUID (with
    /// or without dashes), the sequence number, or the name.
    pub fn find(&self, seg: &str) -> Option<u64> {
        let live = || self.cvms.values();
        if let Some(app) = seg.strip_prefix("app_") {
            return live().find(|c| c.app_id.eq_ignore_ascii_case(app.trim_start_matches("0x"))).map(|c| c.seq);
        }
        if let Some(inst) = seg.strip_prefix("instance_") {
            return live().find(|c| c.instance_id.eq_ignore_ascii_case(inst)).map(|c| c.seq);
        }
        if seg.starts_with("cvm_") {
            return live().find(|c| c.hashid() == seg).map(|c| c.seq);
        }
        let bare = seg.trim_start_matches("0x");
        if bare.len() == 40 && bare.chars().all(|c| c.is_ascii_hexdigit()) {
            let by_app = live().find(|c| c.app_id.eq_ignore_ascii_case(bare));
            return by_app.or_else(|| live().find(|c| c.instance_id.eq_ignore_ascii_case(bare))).map(|c| c.seq);
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

    /// The CVM a path segment names ([`World::find`]), or 404.
    pub fn cvm(&self, seg: &str) -> Result<&Cvm, ApiError> {
        self.find(seg).map(|seq| &self.cvms[&seq]).ok_or_else(ApiError::cvm_not_found)
    }

    /// The CVM of an app (`app_id` with or without `app_` and `0x`); one CVM per app here.
    pub fn app(&self, app_id: &str) -> Option<&Cvm> {
        let want = app_id.trim_start_matches("app_").trim_start_matches("0x");
        self.cvms.values().find(|c| c.app_id.eq_ignore_ascii_case(want))
    }

    /// The KMS a provision of this kind (`phala`, `base`, `ethereum`) gets.
    pub fn kms_for(&self, kms_type: &str) -> Option<&Kms> {
        let onchain = |chain: u64| {
            self.kms
                .iter()
                .find(|k| k.chain_id == Some(chain))
                .or_else(|| self.kms.iter().find(|k| k.chain_id.is_some()))
        };
        match kms_type {
            "phala" => self.kms.iter().find(|k| k.chain_id.is_none()),
            "base" => onchain(8453),
            "ethereum" => onchain(1),
            _ => None,
        }
    }

    /// A KMS by id or slug.
    pub fn kms_named(&self, name: &str) -> Option<&Kms> {
        self.kms.iter().find(|k| k.id == name || k.slug == name)
    }

    /// The KMS a CVM uses.
    pub fn kms_of(&self, c: &Cvm) -> Option<&Kms> {
        self.kms.iter().find(|k| k.id == c.kms_id)
    }

    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// An OS image by name or slug.
    pub fn os_image(&self, name: &str) -> Option<&OsImage> {
        self.os_images.iter().find(|x| x.name == name || x.slug == name)
    }

    pub fn instance_type(&self, id: &str) -> Option<&InstanceType> {
        self.instance_types.iter().find(|x| x.id == id)
    }
}

#[cfg(test)]
mod tests;
