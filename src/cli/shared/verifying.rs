//! What `verify` and the apply gate verify with ([`crate::verify::Checker`]): the PCCS from
//! `--pccs-url` or `TEEFORM_PCCS_URL`, the TCB statuses allowed, the verification time
//! (`TEEFORM_VERIFY_TIME`), and the chain of each on-chain-KMS CVM; and the words for what
//! became of the quotes.

use std::collections::{BTreeMap, BTreeSet};

use super::super::QuoteArgs;
use super::super::context::Ctx;
use super::super::error::{CliError, CliResult};
use super::onchain;
use crate::manifest::Config;
use crate::model::Address;
use crate::plan::{KmsSpec, Plan};
use crate::providers::pccs::{PccsClient, pccs_base};
use crate::verify::collateral::Collateral;
use crate::verify::{Checker, OnChainCheck, QuoteStatus, Verdict};

/// A checker for this run, with the chains in `onchain`.
pub fn checker(ctx: &Ctx, args: &QuoteArgs, onchain: BTreeMap<Address, OnChainCheck>) -> CliResult<Checker> {
    let collateral = match args.pccs_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            let base = pccs_base(url).map_err(|e| CliError::new(format!("--pccs-url: {e}")))?;
            // Shown as host and port only, should it carry a key.
            crate::redact::url(&base);
            let pccs =
                PccsClient::new(base, ctx.settings.http_timeout, ctx.settings.retry.clone()).map_err(CliError::new)?;
            Some(Collateral::new(pccs, Collateral::default_dir(&|k| std::env::var(k).ok())))
        }
    };
    let mut c = Checker::default();
    c.collateral = collateral;
    c.tcb = crate::verify::quote::TcbPolicy { also_allowed: args.allow_tcb_status.clone() };
    c.at = ctx.settings.verify_time;
    c.onchain = onchain;
    Ok(c)
}

fn check_of(spec: &KmsSpec, rpc_urls: &BTreeMap<String, String>) -> OnChainCheck {
    OnChainCheck {
        chain_id: spec.chain_id,
        rpc_url: spec.rpc_url.clone().or_else(|| rpc_urls.get(&spec.rpc_url_env).cloned()),
        rpc_url_env: spec.rpc_url_env.clone(),
        contract: spec.contract.clone(),
    }
}

/// The on-chain-KMS CVMs a plan changes, with RPC URLs from the manifest or `rpc_urls`.
pub fn onchain_of_plan(p: &Plan, rpc_urls: &BTreeMap<String, String>) -> BTreeMap<Address, OnChainCheck> {
    p.changes.iter().filter_map(|c| c.kms.as_ref().map(|k| (c.address.clone(), check_of(k, rpc_urls)))).collect()
}

/// The manifest's on-chain-KMS CVMs, with RPC URLs from the manifest or the environment.
pub fn onchain_of_config(cfg: &Config) -> CliResult<BTreeMap<Address, OnChainCheck>> {
    let specs: Vec<(Address, KmsSpec)> =
        cfg.cvms.iter().filter_map(|(key, c)| crate::plan::kms_spec(&c.kms).map(|k| (Address::cvm(key), k))).collect();
    let names: BTreeSet<(String, String)> =
        specs.iter().map(|(_, k)| (k.private_key_env.clone(), k.rpc_url_env.clone())).collect();
    let env = onchain::read_env(&names, false)?;
    Ok(specs.into_iter().map(|(a, k)| (a, check_of(&k, &env.rpc_urls))).collect())
}

/// What became of the quotes, in one line: all verified, or why not.
pub fn quote_summary(verdicts: &[Verdict]) -> String {
    let n = verdicts.len();
    let verified = verdicts.iter().filter(|v| v.quote.status == QuoteStatus::Verified).count();
    if verified == n {
        return format!("TDX quotes verified against Intel's collateral ({verified} of {n})");
    }
    let mut why: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.quote.status == QuoteStatus::NotVerified)
        .map(|v| v.quote.detail.as_str())
        .collect();
    why.dedup();
    match why.as_slice() {
        [] => format!("TDX quotes verified for {verified} of {n} CVMs"),
        [one] if verified == 0 => one.to_string(),
        _ => format!("the TDX quote was not verified for {} of {n} CVMs: {}", n - verified, why.join("; ")),
    }
}

/// Warnings for quotes that passed with a TCB status other than `UpToDate`.
pub fn tcb_warnings(ctx: &Ctx, verdicts: &[Verdict]) {
    for v in verdicts {
        if let Some(status) = v.quote.tcb_status.as_deref().filter(|s| *s != "UpToDate") {
            let advisories = match v.quote.advisory_ids.as_slice() {
                [] => String::new(),
                ids => format!(" (advisories {})", ids.join(", ")),
            };
            ctx.shell.warn(&format!("{}: the platform's TCB status is {status}{advisories}", v.address));
        }
    }
}
