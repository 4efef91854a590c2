//! The compose hash a change would give, previewed at plan time (the API's answer is
//! authoritative at apply): the app compose a create would make, or the CVM's with an
//! update's changes applied.

use super::{HashChange, KmsSpec, OnChainNote, Refresh};
use crate::compose::{self, ComposeFields, ComposePatch};
use crate::model::{Attr, CvmAttrs, ResourceRecord};

/// The app compose a create would produce, from the desired attributes (with the defaults
/// a create sends for what the manifest leaves out).
pub fn app_compose_for_create(a: &CvmAttrs) -> serde_json::Value {
    let a = a.clone().with_create_defaults();
    let keys = a.env_keys();
    let flag = |f: Option<bool>| f.unwrap_or_default();
    compose::build(&ComposeFields {
        name: &a.name,
        docker_compose_file: a.compose.as_deref().unwrap_or_default(),
        pre_launch_script: a.pre_launch_script.as_deref(),
        allowed_envs: &keys,
        kms_enabled: true,
        gateway_enabled: flag(a.gateway),
        public_logs: flag(a.public_logs),
        public_sysinfo: flag(a.public_sysinfo),
        public_tcbinfo: flag(a.public_tcbinfo),
    })
}

pub(super) fn preview_create(after: &CvmAttrs) -> HashChange {
    HashChange { before: None, after: compose::hash(&app_compose_for_create(after)) }
}

/// The compose-affecting part of an update, as the unified PATCH sends it: what the hash
/// preview of an update applies to the CVM's app compose.
fn compose_patch<'a>(before: &CvmAttrs, after: &'a CvmAttrs, env_keys: &'a [String]) -> ComposePatch<'a> {
    let changed = |attr: Attr| before.get(attr) != after.get(attr);
    ComposePatch {
        docker_compose_file: after.compose.as_deref().filter(|_| changed(Attr::Compose)),
        pre_launch_script: changed(Attr::PreLaunchScript).then(|| after.pre_launch_script.as_deref().unwrap_or("")),
        allowed_envs: (before.env.keys().ne(after.env.keys())).then_some(env_keys),
        public_logs: after.public_logs.filter(|_| changed(Attr::PublicLogs)),
        public_sysinfo: after.public_sysinfo.filter(|_| changed(Attr::PublicSysinfo)),
        public_tcbinfo: after.public_tcbinfo.filter(|_| changed(Attr::PublicTcbinfo)),
    }
}

/// Previews the hash after an update: the refreshed app compose (or one rebuilt from state)
/// with the change applied. `None` when the update leaves the app compose as it is.
pub(super) fn preview_update(rec: &ResourceRecord, after: &CvmAttrs, refresh: Option<&Refresh>) -> Option<HashChange> {
    let keys = after.env_keys();
    let patch = compose_patch(&rec.attrs, after, &keys);
    if patch.is_empty() {
        return None;
    }
    let base = match refresh {
        Some(Refresh::Found(r)) if r.app_compose.is_some() => r.app_compose.clone().expect("checked"),
        _ => app_compose_for_create(&rec.attrs),
    };
    Some(HashChange { before: rec.compose_hash.clone(), after: compose::hash(&compose::patch(&base, &patch)) })
}

/// What the chain must allow before an update of an on-chain-KMS CVM commits. Whether it
/// already does is a chain read, filled in by the CLI (`allowed`).
pub(super) fn onchain_note(spec: &KmsSpec, h: &HashChange, rec: &ResourceRecord) -> OnChainNote {
    let contract = rec.app_contract(spec.contract.as_deref());
    OnChainNote { compose_hash: h.after.clone(), chain_id: spec.chain_id, contract, allowed: None }
}
