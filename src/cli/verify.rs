//! `teeform verify [ADDR…] [--json]`: checks that each CVM in state runs what state says was
//! applied, from its attestation (see [`crate::verify`]). Read-only: it takes no lock and
//! writes nothing (the apply gate is what marks CVMs `unverified`). Exit 0 when every CVM
//! checked is verified, 1 otherwise.

use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use super::shared::session::same_endpoint;
use crate::manifest::diag::did_you_mean;
use crate::model::Address;
use crate::verify::{Verdict, attest::QUOTE_NOT_VERIFIED, verify_record};

pub async fn run(ctx: &Ctx, addresses: &[String], as_json: bool) -> CliResult {
    let cfg = ctx.load(&[])?;
    let Some(store) = ctx.open_state_read("verify").await? else {
        return Err(CliError::new("the state is empty: nothing to verify"));
    };
    let snap = store.snapshot().await?;
    store.close().await?;
    let mut chosen = Vec::new();
    for a in addresses {
        let rec = Address::parse(a).ok().and_then(|addr| snap.resources.get(&addr));
        match rec {
            Some(r) => chosen.push(r),
            None => {
                let mut e = CliError::new(format!("`{a}` is not in state"));
                if let Some(s) = did_you_mean(a, snap.resources.keys().map(Address::as_str)) {
                    e = e.hint(format!("did you mean `{s}`?"));
                }
                return Err(e);
            }
        }
    }
    if addresses.is_empty() {
        chosen.extend(snap.resources.values());
    }
    let api = ctx.api(&cfg.endpoint).await?;
    same_endpoint(&api, chosen.iter().map(|r| (r.address.as_str(), r.endpoint.as_deref())))?;
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(chosen.len());
    for r in chosen {
        verdicts.push(verify_record(api.client.as_ref(), r, None).await?);
    }
    let all = verdicts.iter().all(|v| v.verified);
    if as_json {
        ctx.shell.print_json(&serde_json::json!({
            "format_version": "1",
            "verified": all,
            "quote_verified": false,
            "cvms": verdicts,
        }))?;
    } else {
        let width = verdicts.iter().map(|v| v.address.as_str().len()).max().unwrap_or(0).max(7);
        let mut text = format!("{:<width$}  {:<10}  DETAIL\n", "ADDRESS", "RESULT");
        for v in &verdicts {
            let (result, detail) = match v.problem() {
                None => ("verified", String::new()),
                Some(p) => ("UNVERIFIED", p),
            };
            text.push_str(format!("{:<width$}  {result:<10}  {detail}", v.address.as_str()).trim_end());
            text.push('\n');
        }
        ctx.shell.print(&text)?;
        ctx.shell.note(QUOTE_NOT_VERIFIED);
    }
    if all {
        Ok(exit::OK)
    } else {
        let n = verdicts.iter().filter(|v| !v.verified).count();
        Err(CliError::new(format!("{n} of {} CVMs not verified", verdicts.len())))
    }
}
