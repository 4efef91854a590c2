//! A CVM and its lifecycle: its status is a transition until a deadline, then its target;
//! power actions start transitions; a CVM in the `fail_boot` knob ends a boot in `error`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use super::World;
use crate::sim::error::ApiError;
use crate::sim::{SimConfig, limits};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cvm {
    pub seq: u64,
    pub name: String,
    pub app_id: String,
    pub vm_uuid: String,
    pub instance_id: String,
    pub node_id: u64,
    pub vcpu: u32,
    /// MiB.
    pub memory: u32,
    /// GB.
    pub disk_size: u32,
    pub instance_type: Option<String>,
    pub gpus: u32,
    /// The OS image's name.
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
    /// When it was not running after its first boot, `[from, until)` in ms (`until` is
    /// `u64::MAX` while it lasts): what `/_sim/stats` counts as unavailable during updates.
    #[serde(default)]
    pub down: Vec<[u64; 2]>,
    /// When its first boot ended running, in ms (`u64::MAX`: it failed).
    #[serde(default)]
    pub first_up: u64,
}

/// The boot error of a CVM the `fail_boot` knob names.
pub const SIM_BOOT_ERROR: &str = "docker compose up failed: container web exited with code 1 (simulated boot failure)";

impl Cvm {
    /// Its id from API version 2026-05-22 on: a hashid, `cvm_` and 12 letters and digits,
    /// derived from its sequence number as the API derives hashids from database ids.
    pub fn hashid(&self) -> String {
        hashid("cvm", self.seq.to_string().as_bytes())
    }

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
        // A CVM's first boot is not downtime; every later transition is, until it runs again.
        if self.target.is_empty() {
            self.first_up = if fails { u64::MAX } else { now + ms };
        } else {
            if let Some(last) = self.down.last_mut() {
                last[1] = last[1].min(now);
            }
            let until = if target == "running" && !fails { now + ms } else { u64::MAX };
            self.down.push([now, until]);
        }
        self.target = if fails { "error".into() } else { target.into() };
        self.boot_error = fails.then(|| SIM_BOOT_ERROR.to_string());
        self.transition = transition.into();
        self.busy_since = now;
        self.busy_until = now + ms;
    }

    /// The env keys of its app compose (`allowed_envs`).
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

    /// A field of its app compose, when it is text.
    pub fn compose_text(&self, field: &str) -> Option<&str> {
        self.app_compose.get(field).and_then(Value::as_str)
    }
}

/// `PREFIX_` and 12 lowercase letters and digits derived from `what` (stable across runs, so
/// recorded answers stay the same).
pub fn hashid(prefix: &str, what: &[u8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let h = sha2::Sha256::new().chain_update(b"teeform-sim hashid ").chain_update(prefix).chain_update(what).finalize();
    let id: String = h.iter().take(12).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    format!("{prefix}_{id}")
}

/// A power action (`POST /cvms/{id}/start|stop|shutdown|restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    Stop,
    Shutdown,
    Restart,
}

impl Power {
    /// (target, transition) of the action.
    fn states(self) -> (&'static str, &'static str) {
        match self {
            Power::Start => ("running", "starting"),
            Power::Stop => ("stopped", "stopping"),
            Power::Shutdown => ("stopped", "shutting_down"),
            Power::Restart => ("running", "restarting"),
        }
    }
}

impl World {
    /// Starts a power action. A stop takes half a restart's time; a restart of a running CVM
    /// counts as a restart. Refused (409) while the CVM is in a transition.
    pub fn power(&mut self, seq: u64, action: Power, cfg: &SimConfig, now: u64) -> Result<(), ApiError> {
        let c = self.cvms.get_mut(&seq).ok_or_else(ApiError::cvm_not_found)?;
        if c.busy(now) {
            return Err(ApiError::busy());
        }
        let (target, transition) = action.states();
        if action == Power::Restart && c.target == "running" {
            c.restarts += 1;
        }
        let ms = if target == "stopped" { cfg.restart_ms / 2 } else { cfg.restart_ms };
        c.transition(now, transition, target, ms, &cfg.fail_boot);
        c.correlation_id = Some(uuid::Uuid::new_v4().to_string());
        Ok(())
    }

    /// Renames a CVM in place (`PATCH /cvms/{id}/name`): its app id, app compose (and so its
    /// compose hash) and run state stay; nothing restarts. A name another CVM has is refused
    /// with 400. UNVERIFIED (terraform-provider-phala's design note, not in the SDKs): the
    /// 400's wording is the note's; that the app compose keeps its `name`, that nothing
    /// restarts, and that renaming a CVM to its own name is a 204 are assumptions; names are
    /// compared as written, as on create.
    pub fn rename(&mut self, seq: u64, name: &str) -> Result<(), ApiError> {
        limits::name(name).map_err(ApiError::refused)?;
        let app = self.cvms.get(&seq).map(|c| c.app_id.clone()).unwrap_or_default();
        // Instances of one app share its name.
        if self.cvms.values().any(|c| c.seq != seq && c.name == name && c.app_id != app) {
            return Err(ApiError::plain(400, format!("CVM name \"{name}\" is already in use in this workspace")));
        }
        let c = self.cvms.get_mut(&seq).ok_or_else(ApiError::cvm_not_found)?;
        c.name = name.to_string();
        Ok(())
    }

    /// `POST /cvms/{id}/replicas`: another instance of the CVM's app (same app id, compose,
    /// env and sizes; its own vm_uuid, instance id and node), booting. Returns its sequence
    /// number. UNVERIFIED (the SDKs show the path and `{node_id}` only): the replica keeps the
    /// source's name, and a node id the simulator lacks is refused as a create's is.
    pub fn replicate(&mut self, seq: u64, node_id: Option<u64>, cfg: &SimConfig, now: u64) -> Result<u64, ApiError> {
        let src = self.cvms.get(&seq).ok_or_else(ApiError::cvm_not_found)?;
        let node_id = node_id.unwrap_or(src.node_id);
        if self.node(node_id).is_none() {
            return Err(ApiError::coded(400, "ERR-01-001", format!("Node {node_id} not found")));
        }
        let c = Cvm { node_id, ..src.clone() };
        Ok(self.add(c, now, cfg))
    }

    /// Adds `c` as a new CVM, booting: its sequence number, its own vm_uuid, instance id and
    /// request id, and no runtime history (what a create and a replicate share). Returns the
    /// sequence number.
    pub(super) fn add(&mut self, c: Cvm, now: u64, cfg: &SimConfig) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let instance_id =
            hex::encode(&sha2::Sha256::digest(format!("{}{seq}{}", self.master_key, rand::random::<u64>()))[..20]);
        let mut c = Cvm {
            seq,
            vm_uuid: uuid::Uuid::new_v4().to_string(),
            instance_id,
            created_ms: now,
            target: String::new(),
            transition: String::new(),
            busy_until: 0,
            busy_since: 0,
            boot_error: None,
            correlation_id: Some(uuid::Uuid::new_v4().to_string()),
            restarts: 0,
            updates: 0,
            down: Vec::new(),
            first_up: 0,
            ..c
        };
        c.transition(now, "starting", "running", cfg.boot_ms, &cfg.fail_boot);
        self.cvms.insert(seq, c);
        seq
    }

    /// The instances of an app (`app_id` with or without `app_` and `0x`), oldest first.
    pub fn instances(&self, app_id: &str) -> Vec<&Cvm> {
        let want = app_id.trim_start_matches("app_").trim_start_matches("0x");
        self.cvms.values().filter(|c| c.app_id.eq_ignore_ascii_case(want)).collect()
    }

    /// Deletes a CVM and the updates held for it; its lifetime stays in the app's history.
    pub fn delete(&mut self, seq: u64, now: u64) {
        if let Some(c) = self.cvms.remove(&seq) {
            self.gone.push(super::history::Gone::of(&c, now));
        }
        self.pending_updates.retain(|_, p| p.cvm_seq != seq);
    }
}
