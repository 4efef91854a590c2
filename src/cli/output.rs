//! `teeform output [NAME] [--json] [--raw]`: outputs from state.

use std::collections::BTreeSet;

use super::VarArgs;
use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use super::shared::records::{output_json, output_line, read_snapshot};
use super::shared::session::{digester, read_secrets};
use crate::manifest::Ref;
use crate::manifest::diag::did_you_mean;
use crate::model::OutputValue;
use crate::secrets::{Check, Made};
use crate::state::Snapshot;

pub async fn run(ctx: &Ctx, name: Option<&str>, json: bool, raw: bool, vars: &VarArgs) -> CliResult {
    let snap = read_snapshot(ctx, "output").await?;
    let outputs = &snap.outputs;
    let pick: Vec<(&String, &OutputValue)> = match name {
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
        return raw_value(ctx, &snap, name, vars).await;
    }
    if json {
        let v: serde_json::Map<String, serde_json::Value> =
            pick.iter().map(|(k, o)| ((*k).clone(), output_json(o))).collect();
        let out = match name {
            Some(_) => v.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
            None => serde_json::Value::Object(v),
        };
        ctx.shell.print_json(&out)?;
        return Ok(exit::OK);
    }
    if pick.is_empty() {
        ctx.shell.warn("no outputs in state: declare them under `outputs:` and apply");
    }
    for (k, o) in pick {
        ctx.shell.println(&output_line(k, o))?;
    }
    Ok(exit::OK)
}

/// `output --raw NAME`, as Terraform's `-raw`: one value, nothing around it. State keeps no
/// sensitive value, so a sensitive output is computed again from the manifest (references
/// from state, secrets from their sources) and printed only when it matches the digest of
/// the value last applied.
async fn raw_value(ctx: &Ctx, snap: &Snapshot, name: Option<&str>, vars: &VarArgs) -> CliResult {
    let Some(name) = name else {
        let mut e = CliError::new("--raw prints the value of one output: name it").hint(format!(
            "`{}` lists every output; `{}` prints them all for scripts",
            ctx.command_line("output"),
            ctx.command_line("output --json")
        ));
        if let Some(first) = snap.outputs.keys().next() {
            e = e.hint(format!("e.g. `{}`", ctx.command_line(&format!("output --raw {first}"))));
        }
        return Err(e);
    };
    let o = &snap.outputs[name];
    let value = if o.sensitive {
        sensitive_value(ctx, snap, name, o, vars)?
    } else {
        o.value.clone().ok_or_else(|| {
            CliError::new(format!("output `{name}` has no value yet: what it refers to was not created"))
                .hint(format!("run `{}`, then ask again", ctx.command_line("apply")))
        })?
    };
    ctx.shell.print(&value)?;
    Ok(exit::OK)
}

/// A sensitive output's value, computed again and checked against the applied digest.
fn sensitive_value(ctx: &Ctx, snap: &Snapshot, name: &str, o: &OutputValue, vars: &VarArgs) -> CliResult<String> {
    let cfg = ctx.load_with(vars)?;
    let Some(out) = cfg.outputs.get(name) else {
        return Err(CliError::new(format!(
            "output `{name}` is sensitive, and the manifest no longer declares it, so its value cannot be computed"
        ))
        .hint("teeform keeps no sensitive value in state"));
    };
    let refs: BTreeSet<Ref> = out.value.refs().filter(|r| r.is_secret()).cloned().collect();
    let secrets = read_secrets(&refs, &cfg.file_policy())?;
    let value = crate::apply::resolve(&out.value, &snap.resources, &secrets).map_err(|e| {
        CliError::with_source(format!("output `{name}` cannot be computed"), e)
            .hint(format!("run `{}`, then ask again", ctx.command_line("apply")))
    })?;
    let digests = digester(&snap.meta.salt, cfg.secrets_passphrase_env.as_deref())?;
    match o.digest.as_deref().map(|d| (d, digests.check(d, crate::apply::OUTPUT_DIGEST_SCOPE, name, &value))) {
        Some((_, Check::Same)) => {}
        Some((_, Check::Different)) => {
            return Err(CliError::new(format!(
                "output `{name}` now computes to a value other than the one last applied; nothing was printed"
            ))
            .hint(format!(
                "a secret or variable it uses changed since: run `{}`, or supply the values applied",
                ctx.command_line("apply")
            )));
        }
        Some((d, Check::Unknown)) => {
            return Err(CliError::new(format!(
                "output `{name}` was applied with {}, and this run has {}, so its value cannot be checked; nothing was printed",
                Made::of(d).describe(),
                digests.describe()
            ))
            .hint("set the secrets passphrase it was applied with"));
        }
        None => ctx.shell.warn(&format!(
            "output `{name}`: state has no digest of the applied value (an older teeform wrote it), so this value is not checked against it"
        )),
    }
    Ok(value)
}
