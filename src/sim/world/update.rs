//! Updating a CVM. Every update endpoint makes an [`Update`]; it is checked whole
//! ([`World::check_update`]), then applied at once with one restart ([`World::apply_update`]),
//! or, for an on-chain app whose compose hash changes, held until the chain allows the new hash
//! ([`World::hold_update`]: the 465 answer) and applied when the holder confirms it
//! ([`World::pending`], [`World::confirm`]). The compose-file endpoints hold a provisioned
//! compose by its hash the same way.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::create::{unknown_image, unknown_instance_type};
use super::{Cvm, World};
use crate::sim::error::{ApiError, HashRequired};
use crate::sim::requests::{ComposeChange, ComposeCommit, Update, need};
use crate::sim::{SimConfig, app_hash, limits};

/// An update held back until its compose hash is registered on chain (HTTP 465), or a compose
/// provisioned for a CVM (`compose-HASH`) until its commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingUpdate {
    pub cvm_seq: u64,
    pub compose_hash: String,
    pub body: Update,
    pub token: String,
    pub created_ms: u64,
}

/// What `POST /cvms/{id}/compose_file/provision` answers.
#[derive(Debug, Clone)]
pub struct ComposePrepared {
    pub app_id: String,
    pub device_id: Option<String>,
    pub compose_hash: String,
    /// The CVM already runs this compose (`compose_unchanged`).
    pub unchanged: bool,
    /// Whether the CVM is on chain, and then its KMS.
    pub onchain: bool,
    pub onchain_kms: Option<super::Kms>,
}

/// What applying an update did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Started, with one restart (or a boot): the operation's correlation id.
    Started(String),
    /// The CVM already had this configuration: nothing changed and nothing restarts
    /// (`status: no_change`).
    Unchanged,
}

/// A compose commit, checked: the update to apply, its compose hash, and the app id when the
/// CVM is on chain (its contract must then allow the hash, else 468).
#[derive(Debug, Clone)]
pub struct ComposeToCommit {
    pub update: Update,
    pub hash: String,
    pub onchain_app: Option<String>,
}

/// The app compose after `u`: its compose fields replace the CVM's, an empty pre-launch script
/// removes the script.
fn new_compose(c: &Cvm, u: &Update) -> Value {
    let mut a = c.app_compose.clone();
    let Some(m) = a.as_object_mut() else { return a };
    let fields = [
        ("docker_compose_file", u.docker_compose_file.as_ref().map(|s| json!(s))),
        ("pre_launch_script", u.pre_launch_script.as_ref().map(|s| json!(s))),
        ("allowed_envs", u.allowed_envs.as_ref().map(|s| json!(s))),
        ("public_logs", u.public_logs.map(Value::Bool)),
        ("public_sysinfo", u.public_sysinfo.map(Value::Bool)),
        ("public_tcbinfo", u.public_tcbinfo.map(Value::Bool)),
    ];
    for (f, v) in fields {
        match v {
            Some(Value::String(s)) if f == "pre_launch_script" && s.is_empty() => {
                m.remove(f);
            }
            Some(v) => {
                m.insert(f.to_string(), v);
            }
            None => {}
        }
    }
    a
}

impl World {
    /// Checks an update against the CVM it changes and the catalogs; `Ok(Some(hash))` when it
    /// must be held for the chain (an on-chain app whose compose hash changes, or any update
    /// of one sent as prepare-only), with the hash to register.
    pub fn check_update(
        &self,
        seq: u64,
        u: &Update,
        prepare_only: bool,
        cfg: &SimConfig,
    ) -> Result<Option<String>, ApiError> {
        let c = self.cvms.get(&seq).ok_or_else(ApiError::cvm_not_found)?;
        self.validate(c, u)?;
        // UNVERIFIED: the real API's answer to a smaller disk. Phala's Terraform provider
        // refuses it (grow-only disks); this answers as the API does for an incompatible
        // configuration.
        if let Some(d) = u.disk_size.map(|n| n.whole())
            && d < c.disk_size
        {
            return Err(ApiError::coded(
                400,
                "ERR-02-009",
                format!("disk_size cannot shrink ({} GB to {d} GB): disks only grow", c.disk_size),
            ));
        }
        let new_hash = app_hash(cfg, &new_compose(c, u));
        let held = c.is_onchain() && (new_hash != c.compose_hash || prepare_only);
        Ok(held.then_some(new_hash))
    }

    /// The first problem of an update, in the order the API checks: unknown fields, numbers,
    /// the compose file, the catalogs, env keys, the compose payload's size.
    fn validate(&self, c: &Cvm, u: &Update) -> Result<(), ApiError> {
        if let Some(k) = u.unknown.keys().next() {
            return Err(ApiError::invalid(k, "unknown field"));
        }
        for (f, n) in [
            ("vcpu", u.vcpu),
            ("memory", u.memory),
            ("disk_size", u.disk_size),
            ("shutdown_timeout", u.shutdown_timeout),
        ] {
            if n.is_some_and(|n| n.0 < 0.0) {
                return Err(ApiError::invalid(f, "must be a non-negative number"));
            }
        }
        if let Some(y) = &u.docker_compose_file
            && (y.trim().is_empty() || serde_yaml::from_str::<serde_yaml::Value>(y).is_err())
        {
            return Err(ApiError::invalid_compose());
        }
        if let Some(i) = &u.image
            && self.os_image(i).is_none()
        {
            return Err(unknown_image(i));
        }
        if let Some(t) = &u.instance_type
            && self.instance_type(t).is_none()
        {
            return Err(unknown_instance_type(t));
        }
        if let Some(keys) = &u.allowed_envs {
            limits::env_keys(&["allowed_envs"], keys).map_err(ApiError::refused)?;
        }
        // The limit holds for the app compose the update leaves, whichever part it changes.
        let after = new_compose(c, u);
        let text = |f: &str| after.get(f).and_then(Value::as_str);
        let field = if u.docker_compose_file.is_some() { "docker_compose_file" } else { "pre_launch_script" };
        limits::compose_payload(field, text("docker_compose_file").unwrap_or_default(), text("pre_launch_script"))
            .map_err(ApiError::refused)
    }

    /// Whether `u` leaves the CVM as it is: the same app compose (so the same hash), the same
    /// encrypted env (byte for byte: the simulator does not decrypt to compare, as the API
    /// cannot tell two encryptions of one env apart either), sizes, image, GPUs and stop
    /// settings. `user_config`, which is not kept, always counts as a change.
    pub fn leaves_unchanged(&self, c: &Cvm, u: &Update, cfg: &SimConfig) -> bool {
        let same = |want: Option<u32>, have: u32| want.is_none_or(|w| w == have);
        let image = u.image.as_ref().map(|i| self.os_image(i).map_or(i.as_str(), |x| x.name.as_str()));
        let env_same = match u.encrypted_env.as_deref() {
            None => true,
            Some("") => c.encrypted_env.is_none(),
            Some(e) => c.encrypted_env.as_deref() == Some(e),
        };
        let sized = u.instance_type.as_ref().is_none_or(|t| {
            c.instance_type.as_ref() == Some(t)
                || self.instance_type(t).is_some_and(|x| x.vcpu == c.vcpu && x.memory_mb == c.memory)
        });
        app_hash(cfg, &new_compose(c, u)) == c.compose_hash
            && env_same
            && u.user_config.is_none()
            && same(u.vcpu.map(|n| n.whole()), c.vcpu)
            && same(u.memory.map(|n| n.whole()), c.memory)
            && same(u.disk_size.map(|n| n.whole()), c.disk_size)
            && same(u.gpus.as_ref().map(|g| g.count()), c.gpus)
            && sized
            && image.is_none_or(|i| i == c.image)
            && u.shutdown_timeout.is_none_or(|t| Some(t.whole()) == c.shutdown_timeout)
            && u.allow_force_stop.is_none_or(|b| Some(b) == c.allow_force_stop)
    }

    /// Applies a checked update: every field at once, then one restart (a stopped CVM takes
    /// it and stays stopped). An update that leaves the CVM as it is changes nothing and
    /// restarts nothing, even mid-transition ([`Applied::Unchanged`]). Otherwise refused while
    /// the CVM is in a transition (409), and when its encrypted env does not decrypt.
    pub fn apply_update(&mut self, seq: u64, u: &Update, cfg: &SimConfig, now: u64) -> Result<Applied, ApiError> {
        let c = self.cvms.get(&seq).ok_or_else(ApiError::cvm_not_found)?;
        if self.leaves_unchanged(c, u, cfg) {
            return Ok(Applied::Unchanged);
        }
        if c.busy(now) {
            return Err(ApiError::busy());
        }
        if let Some(enc) = u.encrypted_env.as_deref().filter(|e| !e.is_empty()) {
            self.check_env(&c.app_id, enc)?;
        }
        let types = self.instance_types.clone();
        let image = u.image.as_ref().map(|i| self.os_image(i).map_or_else(|| i.clone(), |x| x.name.clone()));
        let c = self.cvms.get_mut(&seq).expect("found above");
        let app_compose = new_compose(c, u);
        c.compose_hash = app_hash(cfg, &app_compose);
        c.app_compose = app_compose;
        if let Some(e) = &u.encrypted_env {
            c.encrypted_env = Some(e.clone()).filter(|e| !e.is_empty());
        }
        if let Some(t) = &u.instance_type
            && let Some(x) = types.iter().find(|x| x.id == *t)
        {
            c.instance_type = Some(t.clone());
            c.vcpu = x.vcpu;
            c.memory = x.memory_mb;
        }
        if u.vcpu.is_some() || u.memory.is_some() {
            c.vcpu = u.vcpu.map_or(c.vcpu, |n| n.whole());
            c.memory = u.memory.map_or(c.memory, |n| n.whole());
            // A custom size no longer matches a named type unless it equals one.
            c.instance_type = types.iter().find(|x| x.vcpu == c.vcpu && x.memory_mb == c.memory).map(|x| x.id.clone());
        }
        if let Some(d) = u.disk_size {
            c.disk_size = d.whole();
        }
        if let Some(i) = image {
            c.image = i;
        }
        if let Some(g) = &u.gpus {
            c.gpus = g.count();
        }
        if let Some(t) = u.shutdown_timeout {
            c.shutdown_timeout = Some(t.whole());
        }
        if let Some(b) = u.allow_force_stop {
            c.allow_force_stop = Some(b);
        }
        let correlation = uuid::Uuid::new_v4().to_string();
        c.correlation_id = Some(correlation.clone());
        c.updates += 1;
        if c.target == "stopped" {
            c.transition(now, "updating", "stopped", cfg.restart_ms, &[]);
        } else {
            // A running one restarts; a failed one boots again (UNVERIFIED for the real API).
            c.restarts += 1;
            c.transition(now, "restarting", "running", cfg.restart_ms, &cfg.fail_boot);
        }
        Ok(Applied::Started(correlation))
    }

    /// Holds an update for the chain under a new commit token; returns the 465 answer's data.
    /// `allowed`: whether the chain already allows the hash (unknown without a chain).
    pub fn hold_update(
        &mut self,
        seq: u64,
        u: Update,
        hash: &str,
        allowed: Option<bool>,
        now: u64,
    ) -> Result<HashRequired, ApiError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let c = self.cvms.get(&seq).ok_or_else(ApiError::cvm_not_found)?;
        let out = HashRequired {
            compose_hash: hash.to_string(),
            app_id: c.app_id.clone(),
            device_id: self.node(c.node_id).map(|n| n.device_id.clone()).unwrap_or_default(),
            kms: self.kms_of(c).cloned(),
            commit_token: token.clone(),
            vm_id: c.vm_uuid.replace('-', ""),
            allowed: allowed.unwrap_or(false),
        };
        self.pending_updates.insert(
            token.clone(),
            PendingUpdate { cvm_seq: seq, compose_hash: hash.to_string(), body: u, token, created_ms: now },
        );
        Ok(out)
    }

    /// The held update a confirmation names: by its token, or by its hash (and CVM, when
    /// given); the newest held for a hash wins (an update sent again replaces older ones).
    pub fn pending(&self, token: &str, hash: Option<&str>, seq: Option<u64>) -> Option<&PendingUpdate> {
        self.pending_updates
            .values()
            .filter(|p| {
                (p.token == token || Some(p.compose_hash.as_str()) == hash && (seq.is_none() || Some(p.cvm_seq) == seq))
                    && (hash.is_none() || Some(p.compose_hash.as_str()) == hash)
            })
            .max_by_key(|p| p.created_ms)
    }

    /// Applies a held update once the chain allows its hash, and forgets it.
    pub fn confirm(&mut self, token: &str, cfg: &SimConfig, now: u64) -> Result<Applied, ApiError> {
        let p = self.pending_updates.get(token).cloned().ok_or_else(expired_update)?;
        let id = self.apply_update(p.cvm_seq, &p.body, cfg, now)?;
        self.pending_updates.remove(token);
        Ok(id)
    }

    /// `POST /cvms/{id}/compose_file/provision`: checks a compose change and keeps it by its
    /// hash for [`World::commit_compose`].
    pub fn prepare_compose(
        &mut self,
        seq: u64,
        change: ComposeChange,
        cfg: &SimConfig,
        now: u64,
    ) -> Result<ComposePrepared, ApiError> {
        let u = Update::from(change);
        let c = self.cvms.get(&seq).ok_or_else(ApiError::cvm_not_found)?;
        self.validate(c, &u)?;
        let hash = app_hash(cfg, &new_compose(c, &u));
        let out = ComposePrepared {
            app_id: c.app_id.clone(),
            device_id: self.node(c.node_id).map(|n| n.device_id.clone()),
            unchanged: hash == c.compose_hash,
            compose_hash: hash.clone(),
            onchain: c.is_onchain(),
            onchain_kms: if c.is_onchain() { self.kms_of(c).cloned() } else { None },
        };
        let token = compose_token(&hash);
        self.pending_updates
            .insert(token.clone(), PendingUpdate { cvm_seq: seq, compose_hash: hash, body: u, token, created_ms: now });
        Ok(out)
    }

    /// The compose provisioned for this CVM with this hash, or 466.
    pub fn prepared_compose(&self, seq: u64, hash: &str) -> Result<&PendingUpdate, ApiError> {
        self.pending_updates
            .get(&compose_token(hash))
            .filter(|p| p.cvm_seq == seq)
            .ok_or_else(|| ApiError::expired("Compose hash expired or unknown: provision again"))
    }

    /// What a compose commit applies: the provisioned compose with the env the commit adds.
    pub fn compose_commit(&self, id: &str, req: ComposeCommit) -> Result<ComposeToCommit, ApiError> {
        let hash = need(req.compose_hash, "compose_hash")?;
        let seq = self.cvm(id)?.seq;
        let mut u = self.prepared_compose(seq, &hash)?.body.clone();
        if let Some(enc) = req.encrypted_env {
            u.encrypted_env = Some(enc);
        }
        if let Some(keys) = req.env_keys {
            limits::env_keys(&["env_keys"], &keys).map_err(ApiError::refused)?;
            u.allowed_envs = Some(keys);
        }
        let c = &self.cvms[&seq];
        let onchain_app = c.is_onchain().then(|| c.app_id.clone());
        Ok(ComposeToCommit { update: u, hash, onchain_app })
    }

    /// Applies a provisioned compose (with the env the commit adds) and forgets it.
    pub fn commit_compose(&mut self, hash: &str, u: &Update, cfg: &SimConfig, now: u64) -> Result<Applied, ApiError> {
        let token = compose_token(hash);
        let seq = self.pending_updates.get(&token).map(|p| p.cvm_seq).ok_or_else(expired_update)?;
        let applied = self.apply_update(seq, u, cfg, now)?;
        self.pending_updates.remove(&token);
        Ok(applied)
    }
}

fn compose_token(hash: &str) -> String {
    format!("compose-{hash}")
}

fn expired_update() -> ApiError {
    ApiError::expired("Compose hash expired or unknown: send the update again")
}
