//! Attributes compared, by the schema: a record brought up to date by its refresh, and the
//! differences between two sets of attributes.

use std::collections::{BTreeMap, BTreeSet};

use super::AttrChange;
use crate::model::schema::{Managed, Read, SCHEMA, Type};
use crate::model::{CvmAttrs, EnvVal, RemoteCvm, ResourceRecord};

/// The record as it stands after refresh, and what changed outside teeform.
/// Both sides are compared in the API's normal form ([`CvmAttrs::normalized`]); each
/// attribute is taken from the report as its [`Read`] says.
pub fn merge_refresh(rec: &ResourceRecord, remote: &RemoteCvm) -> (ResourceRecord, Vec<AttrChange>) {
    let before = rec.attrs.clone().normalized();
    let mut merged = rec.clone();
    merged.attrs = before.clone();
    let o = &remote.attrs.clone().normalized();
    let a = &mut merged.attrs;
    for spec in SCHEMA {
        match spec.read {
            Read::Reported if o.is_set(spec.attr) => a.copy_from(spec.attr, o),
            // The API reports the pre-launch script only when there is one.
            Read::WithCompose if o.compose.is_some() => a.copy_from(spec.attr, o),
            Read::Keys => {
                // Env values cannot be read back: keep ours for keys still present, learn new keys.
                let keys: BTreeSet<&String> = o.env.keys().collect();
                a.env.retain(|k, _| keys.contains(k));
                for k in keys {
                    a.env.entry(k.clone()).or_default();
                }
            }
            Read::Status => {
                if let Some(p) = remote.status.power() {
                    a.power = Some(p);
                }
            }
            Read::Learned if !a.is_set(spec.attr) && o.is_set(spec.attr) => a.copy_from(spec.attr, o),
            Read::Reported | Read::WithCompose | Read::Learned | Read::NotReported => {}
        }
    }
    merged.ids = remote.ids.clone();
    merged.compose_hash = remote.compose_hash.clone().or(merged.compose_hash);
    merged.env_pubkey = remote.env_pubkey.clone().or(merged.env_pubkey);
    merged.kms_info = remote.kms_info.clone().or(merged.kms_info);
    merged.status = Some(remote.status.clone());
    // Learning a value state did not record (null before) is not drift, except where null
    // is a value (the pre-launch script: no script). The API shows env keys only, so env
    // drifts only when the keys do (values unknown to state are not drift).
    let drift = diff_attrs(&before, &merged.attrs, false)
        .into_iter()
        .filter(|a| !a.before.is_null() || a.name.spec().read == Read::WithCompose)
        .filter(|a| a.name.spec().read != Read::Keys || before.env.keys().ne(merged.attrs.env.keys()))
        .collect();
    (merged, drift)
}

/// Attribute differences, in schema order. With `managed_only`, only attributes `after` sets
/// and those the schema always manages are compared (desired state leaves unmanaged
/// attributes `None`). Both sides are in the API's normal form (the planner normalises
/// desired attributes, reports and records as it reads them).
pub fn diff_attrs(before: &CvmAttrs, after: &CvmAttrs, managed_only: bool) -> Vec<AttrChange> {
    let mut out = Vec::new();
    for spec in SCHEMA {
        let (b, a) = (before.get(spec.attr), after.get(spec.attr));
        if managed_only && a.is_null() && spec.managed != Managed::Always {
            continue;
        }
        // A run state state never recorded (records from before teeform kept it, or a CVM
        // whose status means neither) is not a change: refresh tells.
        if spec.read == Read::Status && b.is_null() {
            continue;
        }
        let changed = match spec.ty {
            Type::Env => !env_same(&before.env, &after.env),
            _ => b != a,
        };
        if changed {
            out.push(AttrChange {
                name: spec.attr,
                before: b,
                after: a,
                forces_replacement: spec.attr.forces_replacement(),
            });
        }
    }
    out
}

fn env_same(a: &BTreeMap<String, EnvVal>, b: &BTreeMap<String, EnvVal>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.same_as(w)))
}

/// The env keys `after` adds to `before`, and those it removes.
pub(super) fn key_changes(
    before: &BTreeMap<String, EnvVal>,
    after: &BTreeMap<String, EnvVal>,
) -> (Vec<String>, Vec<String>) {
    let added = after.keys().filter(|k| !before.contains_key(*k)).cloned().collect();
    let removed = before.keys().filter(|k| !after.contains_key(*k)).cloned().collect();
    (added, removed)
}
