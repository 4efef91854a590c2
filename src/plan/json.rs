//! The machine-readable plan (`show --json`, `plan --json`), modelled on Terraform's JSON plan.
//!
//! Invariant: sensitive values appear as `"(sensitive value)"`; digests and templates that
//! name secret sources are not emitted.

use serde_json::{Map, Value, json};

use super::{Change, Plan};
use crate::model::CvmAttrs;
use crate::model::schema::{SCHEMA, Type};

const SENSITIVE: &str = "(sensitive value)";

fn attrs_json(a: &CvmAttrs) -> (Value, Value, Vec<String>) {
    let mut m = Map::new();
    let mut unknown = Map::new();
    let mut sensitive = Vec::new();
    for spec in SCHEMA {
        if let Type::Env = spec.ty {
            let mut env = Map::new();
            let mut env_unknown = Map::new();
            for (k, v) in &a.env {
                if v.is_sensitive() || v.template.as_ref().is_some_and(|t| t.refs().any(|r| r.is_secret())) {
                    env.insert(k.clone(), SENSITIVE.into());
                    sensitive.push(format!("env.{k}"));
                } else if let Some(val) = &v.value {
                    env.insert(k.clone(), val.clone().into());
                } else {
                    env.insert(k.clone(), Value::Null);
                    env_unknown.insert(k.clone(), true.into());
                }
            }
            m.insert(spec.key.into(), Value::Object(env));
            if !env_unknown.is_empty() {
                unknown.insert(spec.key.into(), Value::Object(env_unknown));
            }
            continue;
        }
        let v = a.get(spec.attr);
        if !v.is_null() {
            m.insert(spec.key.into(), v);
        }
    }
    (Value::Object(m), Value::Object(unknown), sensitive)
}

fn change_json(c: &Change) -> Value {
    let (before, _, before_sensitive) = c.before.as_ref().map(attrs_json).unwrap_or((Value::Null, Value::Null, vec![]));
    let (after, after_unknown, after_sensitive) =
        c.after.as_ref().map(attrs_json).unwrap_or((Value::Null, Value::Null, vec![]));
    let mut out = json!({
        "address": c.address,
        "type": "phala_cvm",
        "name": c.address.key(),
        "actions": c.action.json_actions(),
        "action": c.action,
        "id": c.ids.as_ref().map(|i| i.id.clone()),
        "before": before,
        "after": after,
        "after_unknown": after_unknown,
        "sensitive_paths": before_sensitive.into_iter().chain(after_sensitive).collect::<std::collections::BTreeSet<_>>(),
        "changed_attributes": c.attributes.iter().map(|a| a.name).collect::<Vec<_>>(),
        "replace_paths": c.attributes.iter().filter(|a| a.forces_replacement).map(|a| a.name).collect::<Vec<_>>(),
        "reasons": c.reasons,
        "restarts_cvm": c.restarts(),
        "compose_hash": c.compose_hash,
        "dependencies": c.dependencies,
        "previous_address": c.moved_from,
        "replacement_requested": c.action == super::Action::Replace && c.replacement_requested(),
    });
    // An instance of a replicated CVM: its index, as Terraform's JSON gives a `count` index.
    if let Some(i) = c.address.index() {
        out["index"] = i.into();
    }
    out
}

pub fn to_json(plan: &Plan) -> Value {
    let (add, change, destroy) = plan.summary();
    let drift: Vec<Value> = plan
        .drift
        .iter()
        .map(|d| {
            let attrs: Vec<Value> = d
                .attributes
                .iter()
                .map(|a| {
                    // Env values cannot be observed; drift shows key sets only.
                    let keys = |v: &Value| {
                        v.as_object().map(|m| Value::from(m.keys().cloned().collect::<Vec<_>>())).unwrap_or(Value::Null)
                    };
                    if let Type::Env = a.name.spec().ty {
                        json!({"name": "env_keys", "before": keys(&a.before), "after": keys(&a.after)})
                    } else {
                        json!({"name": a.name, "before": a.before, "after": a.after})
                    }
                })
                .collect();
            json!({"address": d.address, "deleted": d.deleted, "attributes": attrs})
        })
        .collect();
    let mut outputs: Map<String, Value> = plan
        .outputs
        .iter()
        .map(|(k, o)| {
            let after = if o.sensitive { Value::from(SENSITIVE) } else { o.known.clone().map_or(Value::Null, Value::from) };
            let before = if o.sensitive { Value::Null } else { o.before.clone().map_or(Value::Null, Value::from) };
            (k.clone(), json!({"actions": [o.action()], "before": before, "after": after, "after_unknown": !o.sensitive && o.known.is_none(), "sensitive": o.sensitive}))
        })
        .collect();
    for (k, o) in &plan.removed_outputs {
        let before = if o.sensitive { Value::Null } else { o.value.clone().map_or(Value::Null, Value::from) };
        outputs.insert(k.clone(), json!({"actions": ["delete"], "before": before, "after": Value::Null, "after_unknown": false, "sensitive": o.sensitive}));
    }
    let mut out = json!({
        "format_version": super::FORMAT_VERSION.to_string(),
        "teeform_version": env!("CARGO_PKG_VERSION"),
        "mode": plan.mode,
        "state": plan.state,
        "resource_changes": plan.changes.iter().map(change_json).collect::<Vec<_>>(),
        "resource_drift": drift,
        "output_changes": outputs,
        "summary": {
            "add": add,
            "change": change,
            "destroy": destroy,
            "restarts": plan.restarts(),
            "moved": plan.moved.len(),
            "no_changes": !plan.has_changes(),
            "attention": plan.attention.len(),
            "converged": plan.converged(),
        },
        "attention": plan.attention,
        "redigested": plan.redigested,
        "warnings": plan.warnings,
        "notes": plan.notes,
        "moved": plan.moved,
        "protection": plan.protection,
        "requests": plan.requests,
        "replacements_needing_consent": plan.needs_consent().map(|c| &c.address).collect::<Vec<_>>(),
        "applyable": plan.has_changes(),
    });
    // Instances of managed apps that no record holds: shown, never changed; they do not count
    // in `summary` (a plan with nothing else is `no_changes` and `converged`).
    out["unmanaged_instances"] = serde_json::to_value(&plan.unmanaged).unwrap_or_default();
    if !plan.rolls.is_empty() {
        out["rolls"] = serde_json::to_value(&plan.rolls).unwrap_or_default();
    }
    out
}
