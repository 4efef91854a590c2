//! output, state list/show/rm, import, force-unlock, show (state).

use std::time::Duration;

use super::StateCommand;
use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use crate::manifest::diag::did_you_mean;
use crate::model::{EnvVal, ResourceRecord, now_rfc3339};
use std::collections::BTreeMap;

use crate::state::{Batch, Meta, Snapshot};

/// A record as shown to people and machines: sensitive env values hidden.
fn record_json(r: &ResourceRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("records serialize");
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
    v
}

/// The state as it is now, for commands that only read it (empty if there is none yet).
async fn read_snapshot(ctx: &Ctx, command: &str) -> CliResult<Snapshot> {
    match ctx.open_state_read(command).await? {
        Some(store) => {
            let snap = store.snapshot().await?;
            store.close().await?;
            Ok(snap)
        }
        None => Ok(Snapshot { meta: Meta::fresh(), resources: BTreeMap::new(), outputs: BTreeMap::new() }),
    }
}

pub async fn output(ctx: &Ctx, name: Option<&str>, json: bool, raw: bool, vars: &super::VarArgs) -> CliResult {
    let snap = read_snapshot(ctx, "output").await?;
    let outputs = &snap.outputs;
    let pick: Vec<(&String, &crate::model::OutputValue)> = match name {
        Some(n) => match outputs.get_key_value(n) {
            Some(kv) => vec![kv],
            None => {
                let mut e = CliError::new(format!("no output named `{n}` in state"));
                if let Some(s) = did_you_mean(n, outputs.keys().map(String::as_str)) {
                    e = e.hint(format!("did you mean `{s}`?"));
                }
                return Err(e);
            }
        },
        None => outputs.iter().collect(),
    };
    if raw {
        return output_raw(ctx, &snap, name, vars).await;
    }
    if json {
        let v: serde_json::Map<String, serde_json::Value> = pick.iter().map(|(k, o)| ((*k).clone(), serde_json::json!({"value": if o.sensitive { serde_json::Value::Null } else { o.value.clone().into() }, "sensitive": o.sensitive}))).collect();
        let out = match name {
            Some(_) => v.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
            None => serde_json::Value::Object(v),
        };
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(exit::OK);
    }
    if pick.is_empty() {
        ctx.ui.warn("no outputs in state: declare them under `outputs:` and apply");
    }
    for (k, o) in pick {
        match (o.sensitive, &o.value) {
            (true, _) => println!("{k} = (sensitive value)"),
            (false, Some(v)) => println!("{k} = {v:?}"),
            (false, None) => println!("{k} = (unknown)"),
        }
    }
    Ok(exit::OK)
}

/// `output --raw NAME`, as Terraform's `-raw`: one value, nothing around it. State keeps no
/// sensitive value, so a sensitive output is computed again from the manifest (references
/// from state, secrets from their sources) and printed only when it matches the digest of
/// the value last applied.
async fn output_raw(ctx: &Ctx, snap: &crate::state::Snapshot, name: Option<&str>, vars: &super::VarArgs) -> CliResult {
    let Some(name) = name else {
        let mut e = CliError::new("--raw prints the value of one output: name it")
            .hint("`teeform output` lists every output; `teeform output --json` prints them all for scripts");
        if let Some(first) = snap.outputs.keys().next() {
            e = e.hint(format!("e.g. `teeform output --raw {first}`"));
        }
        return Err(e);
    };
    let o = &snap.outputs[name];
    let value = if !o.sensitive {
        o.value.clone().ok_or_else(|| {
            CliError::new(format!("output `{name}` has no value yet: what it refers to was not created"))
                .hint("run `teeform apply`, then ask again")
        })?
    } else {
        let cfg = ctx.load(&vars.vars)?;
        let Some(out) = cfg.outputs.get(name) else {
            return Err(CliError::new(format!(
                "output `{name}` is sensitive, and the manifest no longer declares it, so its value cannot be computed"
            ))
            .hint("teeform keeps no sensitive value in state"));
        };
        let refs: std::collections::BTreeSet<crate::manifest::Ref> =
            out.value.refs().filter(|r| r.is_secret()).cloned().collect();
        let secrets = super::commands::read_secrets(&refs, &cfg.file_policy())?;
        let value = crate::apply::resolve(&out.value, &snap.resources, &secrets).map_err(|e| {
            CliError::new(format!("output `{name}` cannot be computed: {e}"))
                .hint("run `teeform apply`, then ask again")
        })?;
        let digest = crate::secrets::digest(&snap.meta.salt, crate::apply::OUTPUT_DIGEST_SCOPE, name, &value);
        match &o.digest {
            Some(d) if *d == digest => {}
            Some(_) => {
                return Err(CliError::new(format!(
                    "output `{name}` now computes to a value other than the one last applied; nothing was printed"
                ))
                .hint("a secret or variable it uses changed since: run `teeform apply`, or supply the values applied"));
            }
            None => ctx.ui.warn(&format!(
                "output `{name}`: state has no digest of the applied value (an older teeform wrote it), so this value is not checked against it"
            )),
        }
        value
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(value.as_bytes())?;
    out.flush()?;
    Ok(exit::OK)
}

pub async fn state(ctx: &Ctx, cmd: StateCommand) -> CliResult {
    match cmd {
        StateCommand::Recover { keep_current } => return recover(ctx, keep_current).await,
        StateCommand::Bind => return bind(ctx).await,
        StateCommand::Migrate { to } => return super::migrate_cmd::migrate(ctx, to).await,
        _ => {}
    }
    let Some(store) = ctx.open_state_read("state").await? else {
        // No state here yet: it holds nothing.
        return match cmd {
            StateCommand::Show { address, .. } => Err(not_in_state(&address, std::iter::empty())),
            StateCommand::Rm { addresses } => Err(not_in_state(&addresses[0], std::iter::empty())),
            _ => Ok(exit::OK),
        };
    };
    let snap = store.snapshot().await?;
    let code = match cmd {
        StateCommand::List => {
            for a in snap.resources.keys() {
                println!("{a}");
            }
            exit::OK
        }
        StateCommand::Show { address, json } => {
            let Some(r) = snap.resources.get(&address) else {
                return Err(not_in_state(&address, snap.resources.keys()));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&record_json(r)).expect("json"));
            } else {
                print_record(r);
            }
            exit::OK
        }
        StateCommand::Rm { addresses } => {
            for a in &addresses {
                if !snap.resources.contains_key(a) {
                    return Err(not_in_state(a, snap.resources.keys()));
                }
            }
            store.commit(Batch { remove: addresses.clone(), ..Default::default() }).await?;
            for a in &addresses {
                println!("Removed {a} from state (the CVM itself was not touched).");
            }
            exit::OK
        }
        StateCommand::Recover { .. } | StateCommand::Bind | StateCommand::Migrate { .. } => {
            unreachable!("handled before the state is opened")
        }
    };
    store.close().await?;
    Ok(code)
}

/// `state bind`: records that the state belongs to the manifest named with `-f`.
async fn bind(ctx: &Ctx) -> CliResult {
    let opts = ctx.state_options("state bind", Duration::from_secs(5))?;
    if matches!(opts.backend, crate::state::Backend::Local) && !crate::state::exists(&opts.local_dir()) {
        return Err(ctx.no_project());
    }
    let store = crate::state::open(&opts).await?;
    let before = store.meta().await?.manifest;
    let me = ctx.manifest_name();
    store.commit(Batch { bind: Some(me.clone()), ..Default::default() }).await?;
    store.close().await?;
    match before {
        Some(old) if old != me => println!("The {} now belongs to {me} (it belonged to {old}).", store.describe()),
        _ => println!("The {} belongs to {me}.", store.describe()),
    }
    Ok(exit::OK)
}

/// `state recover`: the state cannot be opened (it is damaged), so this works on its files.
async fn recover(ctx: &Ctx, keep_current: bool) -> CliResult {
    let opts = ctx.state_options("state recover", Duration::from_secs(5))?;
    let r = crate::state::recover(&opts, keep_current).await?;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    match &r.from_backup {
        Some(b) => {
            println!(
                "Restored the state from {} (taken {}, serial {}): {}, {}. It is now at serial {}.",
                b.path,
                b.written_at,
                b.serial,
                plural(r.resources, "resource"),
                plural(r.journal, "interrupted operation"),
                r.serial
            );
            if let Some(aside) = &r.set_aside {
                println!("The state it replaced was set aside in {aside}.");
            }
            println!(
                "Changes made after that copy was taken are not in it. Run `teeform plan`: a CVM created since is refused by name with an `import` command to take it back, and saved plans from before are stale."
            );
        }
        None => println!(
            "Kept the state as it is ({}, {}) and sealed it again at serial {}. Run `teeform plan` to compare it with the cloud.",
            plural(r.resources, "resource"),
            plural(r.journal, "interrupted operation"),
            r.serial
        ),
    }
    Ok(exit::OK)
}

fn not_in_state<'a>(address: &str, known: impl Iterator<Item = &'a String>) -> CliError {
    let known: Vec<&String> = known.collect();
    let mut e = CliError::new(format!("`{address}` is not in state"));
    if let Some(s) = did_you_mean(address, known.iter().map(|s| s.as_str())) {
        e = e.hint(format!("did you mean `{s}`?"));
    } else {
        e = e.hint("`teeform state list` shows what state holds");
    }
    e
}

fn print_record(r: &ResourceRecord) {
    println!("# {}", r.address);
    println!("id           = {:?}", r.ids.id);
    for (k, v) in [
        ("app_id", &r.ids.app_id),
        ("vm_uuid", &r.ids.vm_uuid),
        ("instance_id", &r.ids.instance_id),
        ("compose_hash", &r.compose_hash),
        ("status", &r.status),
        ("endpoint", &r.endpoint),
    ] {
        if let Some(v) = v {
            println!("{k:<12} = {v:?}");
        }
    }
    if r.tainted {
        println!("tainted      = true");
    }
    for (name, _) in crate::model::ATTRS {
        let v = r.attrs.get(name);
        if v.is_null() || *name == "env" {
            continue;
        }
        match v.as_str() {
            Some(s) if s.contains('\n') => println!("{name:<12} = <<EOT\n{s}EOT"),
            _ => println!("{name:<12} = {v}"),
        }
    }
    if !r.attrs.env.is_empty() {
        println!("env = {{");
        for (k, e) in &r.attrs.env {
            let shown = match (e.is_sensitive(), &e.value) {
                (true, _) => "(sensitive value)".to_string(),
                (false, Some(v)) => format!("{v:?}"),
                (false, None) => "(unknown)".to_string(),
            };
            println!("  {k} = {shown}");
        }
        println!("}}");
    }
}

pub async fn show_state(ctx: &Ctx, json: bool) -> CliResult {
    let snap = read_snapshot(ctx, "show").await?;
    if json {
        let v = serde_json::json!({
            "format_version": "1",
            "lineage": snap.meta.lineage,
            "serial": snap.meta.serial,
            "resources": snap.resources.values().map(record_json).collect::<Vec<_>>(),
            "outputs": snap.outputs.iter().map(|(k, o)| (k.clone(), serde_json::json!({"value": if o.sensitive { serde_json::Value::Null } else { o.value.clone().into() }, "sensitive": o.sensitive}))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(exit::OK);
    }
    if snap.resources.is_empty() {
        println!("The state is empty.");
    }
    for r in snap.resources.values() {
        print_record(r);
        println!();
    }
    Ok(exit::OK)
}

pub async fn import(ctx: &Ctx, address: &str, id: &str, lock_timeout: Duration) -> CliResult {
    let cfg = ctx.load(&[])?;
    let key = address.strip_prefix("cvm.").ok_or_else(|| {
        CliError::new(format!("`{address}` is not a CVM address")).hint("addresses look like `cvm.web`")
    })?;
    let Some(cvm) = cfg.cvms.get(key) else {
        let mut e = CliError::new(format!("the manifest has no `cvms.{key}`"))
            .hint("declare the CVM in the manifest first, so the next plan compares it with what you want");
        if let Some(s) = did_you_mean(key, cfg.cvms.keys().map(String::as_str)) {
            e = e.hint(format!("did you mean `cvm.{s}`?"));
        }
        return Err(e);
    };
    let store = ctx.open_state_for(Some(&cfg), "import", lock_timeout).await?;
    let snap = store.snapshot().await?;
    if snap.resources.contains_key(address) {
        return Err(CliError::new(format!("{address} is already in state"))
            .hint(format!("`teeform state rm {address}` first to import a different CVM")));
    }
    let api = ctx.api(&cfg.endpoint).await?;
    super::commands::same_endpoint(&api, snap.resources.values().map(|r| (r.address.as_str(), r.endpoint.as_deref())))?;
    let remote = api
        .client
        .get_cvm(id)
        .await?
        .ok_or_else(|| CliError::new(format!("no CVM `{id}` exists at {}", api.endpoint)))?;
    if let Some((other, _)) = snap.resources.iter().find(|(_, r)| {
        r.ids.app_id.is_some() && r.ids.app_id == remote.ids.app_id && r.ids.vm_uuid == remote.ids.vm_uuid
    }) {
        return Err(CliError::new(format!("that CVM is already managed as {other}")));
    }
    let mut attrs = remote.attrs.clone();
    // Env values cannot be read back; keys are known, values are not.
    for v in attrs.env.values_mut() {
        *v = EnvVal::default();
    }
    // Node and settings the API does not report stay as the manifest has them.
    attrs.node = cvm.node.clone();
    attrs.shutdown_timeout = cvm.shutdown_timeout;
    attrs.allow_force_stop = cvm.allow_force_stop;
    let rec = ResourceRecord {
        address: address.to_string(),
        ids: crate::model::CloudIds {
            id: remote.ids.vm_uuid.clone().unwrap_or_else(|| remote.ids.id.clone()),
            ..remote.ids.clone()
        },
        attrs,
        compose_hash: remote.compose_hash.clone(),
        env_pubkey: remote.env_pubkey.clone(),
        kms_info: remote.kms_info.clone(),
        status: Some(remote.status.clone()),
        tainted: false,
        boot: Default::default(),
        dependencies: cvm.depends_on.iter().map(|d| format!("cvm.{d}")).collect(),
        updated_at: now_rfc3339(),
        endpoint: Some(api.endpoint.clone()),
    };
    store.commit(Batch { put: vec![rec.clone()], ..Default::default() }).await?;
    store.close().await?;
    println!("Imported {address} (CVM {} \"{}\").", rec.ids.id, rec.attrs.name);
    if !remote.attrs.env.is_empty() {
        println!("Its env values cannot be read back, so the next apply sends the manifest's env once.");
    }
    println!("Run `teeform plan` to compare it with the manifest.");
    Ok(exit::OK)
}

pub async fn force_unlock(ctx: &Ctx, id: &str) -> CliResult {
    let opts = ctx.state_options("force-unlock", Duration::ZERO)?;
    crate::state::unlock(&opts, id).await?;
    println!("Removed the lock record {id}.");
    Ok(exit::OK)
}
