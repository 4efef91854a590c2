//! What `verify` and the apply gate verify with ([`crate::verify::Checker`]): the PCCS from
//! `--pccs-url` or `TEEFORM_PCCS_URL`, the TCB statuses allowed, the verification time
//! (`TEEFORM_VERIFY_TIME`), and the chain of each on-chain-KMS CVM; and the words for what
//! became of the quotes.

use std::collections::{BTreeMap, BTreeSet};

use super::super::QuoteArgs;
use super::super::context::Ctx;
use super::super::error::{CliError, CliResult};
use super::onchain;
use crate::manifest::{Config, VerifySettings};
use crate::model::Address;
use crate::plan::{KmsSpec, Plan};
use crate::providers::pccs::{PccsClient, pccs_base};
use crate::verify::collateral::Collateral;
use crate::verify::{Checker, NOT_VERIFIED, OnChainCheck, QuoteStatus, Verdict};

/// A checker for this run, with the chains in `onchain`: the PCCS of `--pccs-url` (or
/// `TEEFORM_PCCS_URL`), else of the manifest's `verify.pccs_url`; the TCB statuses of both.
pub fn checker(
    ctx: &Ctx,
    args: &QuoteArgs,
    manifest: &VerifySettings,
    onchain: BTreeMap<Address, OnChainCheck>,
) -> CliResult<Checker> {
    let given = args.pccs_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let (url, from) = match given {
        Some(u) => (Some(u), "--pccs-url"),
        None => (manifest.pccs_url.as_deref(), "verify.pccs_url"),
    };
    let collateral = match url {
        None => None,
        Some(url) => {
            let base = pccs_base(url).map_err(|e| CliError::new(format!("{from}: {e}")))?;
            // Shown as host and port only, should it carry a key.
            crate::redact::url(&base);
            let pccs =
                PccsClient::new(base, ctx.settings.http_timeout, ctx.settings.retry.clone()).map_err(CliError::new)?;
            Some(Collateral::new(pccs, Collateral::default_dir(&|k| std::env::var(k).ok())))
        }
    };
    let mut c = Checker::default();
    c.collateral = collateral;
    let also_allowed = args.allow_tcb_status.iter().chain(&manifest.allow_tcb_status).cloned().collect();
    c.tcb = crate::verify::quote::TcbPolicy { also_allowed };
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

/// What became of the quotes, in one line: all verified, or how many were not and why (each
/// reason once, "the TDX quote was not verified" said once).
pub fn quote_summary(verdicts: &[Verdict]) -> String {
    let n = verdicts.len();
    let count = |s: QuoteStatus| verdicts.iter().filter(|v| v.quote.status == s).count();
    let (verified, failed) = (count(QuoteStatus::Verified), count(QuoteStatus::Failed));
    if verified == n {
        return format!("TDX quotes verified against Intel's collateral ({verified} of {n})");
    }
    let not: Vec<&Verdict> = verdicts.iter().filter(|v| v.quote.status == QuoteStatus::NotVerified).collect();
    let why: BTreeSet<&str> =
        not.iter().map(|v| v.quote.detail.strip_prefix(NOT_VERIFIED).unwrap_or(&v.quote.detail)).collect();
    let (reasons, why) = (why.len(), why.into_iter().collect::<Vec<_>>().join("; "));
    match (failed, not.len()) {
        (0, k) if k == n && reasons == 1 => not[0].quote.detail.clone(),
        (0, k) => format!("the TDX quote was not verified for {k} of {n} CVMs: {why}"),
        (f, 0) => format!("TDX quotes verified for {verified} of {n} CVMs, failed for {f}"),
        (f, k) => {
            format!("TDX quotes verified for {verified} of {n} CVMs, failed for {f}; not verified for {k}: {why}")
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{NO_PCCS, QuoteReport};

    fn verdict(i: usize, status: QuoteStatus, detail: &str) -> Verdict {
        Verdict {
            address: Address::cvm(&format!("c{i}")),
            verified: status != QuoteStatus::Failed,
            mismatches: vec![],
            error: None,
            quote: QuoteReport { status, tcb_status: None, advisory_ids: vec![], detail: detail.into() },
        }
    }

    #[test]
    fn the_quote_summary_says_not_verified_once_and_each_reason_once() {
        let none = "the TDX quote was not verified: the API's attestation carries none";
        let all =
            |d: &[&str]| d.iter().enumerate().map(|(i, d)| verdict(i, QuoteStatus::NotVerified, d)).collect::<Vec<_>>();
        assert_eq!(quote_summary(&all(&[NO_PCCS; 4])), NO_PCCS);
        let mixed = quote_summary(&all(&[NO_PCCS, none, NO_PCCS, none]));
        assert_eq!(mixed.matches("the TDX quote was not verified").count(), 1, "{mixed}");
        assert!(mixed.ends_with("TEEFORM_PCCS_URL); the API's attestation carries none"), "{mixed}");
        assert!(mixed.starts_with("the TDX quote was not verified for 4 of 4 CVMs: no PCCS"), "{mixed}");
        let mut v = all(&[none]);
        v.push(verdict(1, QuoteStatus::Verified, "verified"));
        v.push(verdict(2, QuoteStatus::Failed, "the TDX quote could not be verified: no collateral"));
        assert_eq!(
            quote_summary(&v),
            "TDX quotes verified for 1 of 3 CVMs, failed for 1; not verified for 1: the API's attestation carries none"
        );
        assert_eq!(quote_summary(&v[1..]), "TDX quotes verified for 1 of 2 CVMs, failed for 1");
        assert_eq!(quote_summary(&v[1..2]), "TDX quotes verified against Intel's collateral (1 of 1)");
    }
}
