//! State as people and machines see it (`show`, `state show`, `output`): records with
//! sensitive values hidden, and outputs.

use std::collections::BTreeMap;

use crate::cli::context::Ctx;
use crate::cli::error::CliResult;
use crate::model::{Address, OutputValue, ResourceRecord};
use crate::state::{Meta, Snapshot};

/// The state as it is now, for commands that only read it (empty if there is none yet).
pub async fn read_snapshot(ctx: &Ctx, command: &str) -> CliResult<Snapshot> {
    match ctx.open_state_read(command).await? {
        Some(store) => {
            let snap = store.snapshot().await?;
            store.close().await?;
            Ok(snap)
        }
        None => Ok(Snapshot { meta: Meta::fresh(), resources: BTreeMap::new(), outputs: BTreeMap::new() }),
    }
}

/// A record as JSON: sensitive env values hidden.
pub fn record_json(r: &ResourceRecord) -> CliResult<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    if let Some(env) = v.pointer_mut("/attrs/env").and_then(|e| e.as_object_mut()) {
        for (k, val) in env.iter_mut() {
            let e = r.attrs.env.get(k).cloned().unwrap_or_default();
            *val = match (e.is_sensitive(), e.value) {
                (true, _) => "(sensitive value)".into(),
                (false, Some(s)) => s.into(),
                (false, None) => serde_json::Value::Null,
            };
        }
    }
    Ok(v)
}

/// An output as JSON: `{"value", "sensitive"}`, the value null when sensitive.
pub fn output_json(o: &OutputValue) -> serde_json::Value {
    let value = if o.sensitive { serde_json::Value::Null } else { o.value.clone().into() };
    serde_json::json!({"value": value, "sensitive": o.sensitive})
}

/// `NAME = "value"` (or `(sensitive value)`, `(unknown)`).
pub fn output_line(name: &str, o: &OutputValue) -> String {
    match (o.sensitive, &o.value) {
        (true, _) => format!("{name} = (sensitive value)"),
        (false, Some(v)) => format!("{name} = {v:?}"),
        (false, None) => format!("{name} = (unknown)"),
    }
}

/// A record for people: ids, status, every attribute set, env with sensitive values hidden.
pub fn record_text(r: &ResourceRecord) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "# {}", r.address);
    let _ = writeln!(out, "id           = {:?}", r.ids.id);
    for (k, v) in [
        ("app_id", &r.ids.app_id),
        ("vm_uuid", &r.ids.vm_uuid),
        ("instance_id", &r.ids.instance_id),
        ("compose_hash", &r.compose_hash),
        ("status", &r.status.as_ref().map(ToString::to_string)),
        ("endpoint", &r.endpoint),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "{k:<12} = {v:?}");
        }
    }
    if r.tainted {
        out.push_str("tainted      = true\n");
    }
    if r.prevent_destroy {
        out.push_str("lifecycle    = { prevent_destroy = true }\n");
    }
    if let Some(why) = &r.unverified {
        let _ = writeln!(out, "unverified   = {why:?}");
    }
    for spec in crate::model::SCHEMA {
        let (name, v) = (spec.key, r.attrs.get(spec.attr));
        if v.is_null() || matches!(spec.ty, crate::model::schema::Type::Env) {
            continue;
        }
        match v.as_str() {
            Some(s) if s.contains('\n') => {
                let _ = writeln!(out, "{name:<12} = <<EOT\n{s}EOT");
            }
            _ => {
                let _ = writeln!(out, "{name:<12} = {v}");
            }
        }
    }
    if !r.attrs.env.is_empty() {
        out.push_str("env = {\n");
        for (k, e) in &r.attrs.env {
            let shown = match (e.is_sensitive(), &e.value) {
                (true, _) => "(sensitive value)".to_string(),
                (false, Some(v)) => format!("{v:?}"),
                (false, None) => "(unknown)".to_string(),
            };
            let _ = writeln!(out, "  {k} = {shown}");
        }
        out.push_str("}\n");
    }
    out
}

/// "`ADDRESS` is not in state", with a did-you-mean among `known`.
pub fn not_in_state<'a>(address: &str, known: impl Iterator<Item = &'a Address>) -> crate::cli::error::CliError {
    let known: Vec<&Address> = known.collect();
    let e = crate::cli::error::CliError::new(format!("`{address}` is not in state"));
    let instances: Vec<&str> = match Address::parse(address) {
        Ok(a) if a.index().is_none() => {
            known.iter().filter(|k| k.key() == a.key() && k.index().is_some()).map(|k| k.as_str()).collect()
        }
        _ => vec![],
    };
    if !instances.is_empty() {
        return e.hint(format!("its instances are in state: {}; name one of them", instances.join(", ")));
    }
    match crate::manifest::diag::did_you_mean(address, known.iter().map(|s| s.as_str())) {
        Some(s) => e.hint(format!("did you mean `{s}`?")),
        None => e.hint(crate::cli::error::Hint::run("", "state list", " shows what state holds")),
    }
}
