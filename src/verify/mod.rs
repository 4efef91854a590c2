//! Verifying what the cloud says: the KMS's signature on an env-encryption key before any
//! secret is encrypted to it ([`kms_key`]), and a CVM's attestation after it boots
//! ([`attest`]: the RTMR3 event log replayed and compared with what teeform deployed;
//! [`quote`]: the TDX quote verified against Intel's collateral from a PCCS ([`collateral`])
//! and bound to that RTMR3; for on-chain KMS, the compose hash allowed by the app contract).

pub mod attest;
pub mod collateral;
pub mod kms_key;
pub mod quote;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Address, ResourceRecord};
use crate::providers::{ApiError, PhalaApi};

/// What `verify` and the apply gate found for one CVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub address: Address,
    /// Proven to run what state says was applied, as far as the attestation goes (whether
    /// the quote proved the RTMRs are the hardware's: `quote`).
    pub verified: bool,
    /// The fields that differ (`quote`, `quote.rtmr3`, `quote.tcb_status` for the quote).
    pub mismatches: Vec<attest::Mismatch>,
    /// Why the attestation could not be checked (not running, no TCB info, malformed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The TDX quote: verified, not verified (said why), or failed.
    pub quote: QuoteReport,
}

/// What became of the TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteReport {
    pub status: QuoteStatus,
    /// Intel's rating of the platform's TCB, once the quote verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
    /// What was found, in words.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuoteStatus {
    /// Verified against Intel's collateral, its RTMR3 the replayed one, its TCB status accepted.
    Verified,
    /// Not checked, and not asked for: no PCCS was configured (or the attestation itself could
    /// not be read, which fails the verdict by itself). Does not fail the verdict; always said.
    NotVerified,
    /// Refused (a mismatch names why), or asked for with a PCCS and not possible (no quote in
    /// the attestation, no collateral from the PCCS: the verdict's `error` says why). Fails
    /// the verdict.
    Failed,
}

impl QuoteReport {
    fn not_verified(detail: impl Into<String>) -> QuoteReport {
        QuoteReport { status: QuoteStatus::NotVerified, tcb_status: None, advisory_ids: vec![], detail: detail.into() }
    }

    fn failed(detail: String) -> QuoteReport {
        QuoteReport { status: QuoteStatus::Failed, tcb_status: None, advisory_ids: vec![], detail }
    }
}

impl Verdict {
    /// Why it is not verified, in one line (why it could not be checked, then each field that
    /// differs); `None` when it is.
    pub fn problem(&self) -> Option<String> {
        if self.verified {
            return None;
        }
        let why: Vec<String> =
            self.error.iter().cloned().chain(self.mismatches.iter().map(ToString::to_string)).collect();
        Some(why.join("; "))
    }

    /// Adds why the attestation could not be checked fully.
    fn cannot_check(&mut self, why: String) {
        self.error = Some(match self.error.take() {
            Some(e) => format!("{e}; {why}"),
            None => why,
        });
    }
}

/// What a record says the CVM booted (the OS image's hash is not in records).
pub fn expected(rec: &ResourceRecord) -> attest::Expected {
    attest::Expected {
        app_id: rec.ids.app_id.clone(),
        instance_id: rec.ids.instance_id.clone(),
        compose_hash: rec.compose_hash.clone(),
        os_image_hash: None,
    }
}

/// How an on-chain-KMS CVM's compose hash is checked against its app contract.
#[derive(Debug, Clone)]
pub struct OnChainCheck {
    pub chain_id: u64,
    /// `None`: no RPC URL was given (`rpc_url_env` names the variable to set).
    pub rpc_url: Option<String>,
    pub rpc_url_env: String,
    /// The manifest's `kms.contract`, else the API's app contract (or app id).
    pub contract: Option<String>,
}

/// Everything one run verifies with: where the quote's collateral comes from, which TCB
/// statuses pass, the chains of on-chain-KMS CVMs, and the clock.
#[derive(Default)]
pub struct Checker {
    /// `None`: no PCCS was given, so quotes are not verified (and the verdict says so).
    pub collateral: Option<collateral::Collateral>,
    pub tcb: quote::TcbPolicy,
    /// Verification time, Unix seconds (`TEEFORM_VERIFY_TIME`); `None`: now.
    pub at: Option<u64>,
    /// By address: the CVMs whose KMS is on-chain.
    pub onchain: BTreeMap<Address, OnChainCheck>,
    /// The OS image catalog, read once when a verdict first needs it: image name → hash.
    images: tokio::sync::OnceCell<BTreeMap<String, String>>,
    /// Every verdict given, in order (the apply summary words them).
    given: std::sync::Mutex<Vec<Verdict>>,
}

/// How the detail of a quote that was not verified begins (the reason follows).
pub const NOT_VERIFIED: &str = "the TDX quote was not verified: ";

/// Why quotes are not verified when no PCCS is given.
pub const NO_PCCS: &str = "the TDX quote was not verified: no PCCS to fetch Intel's collateral from (give --pccs-url phala|intel|URL or TEEFORM_PCCS_URL)";

impl Checker {
    /// The verdicts given so far.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.given.lock().expect("verdicts lock").clone()
    }

    fn now(&self) -> u64 {
        self.at.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        })
    }

    /// The hash the OS image catalog gives the image `name` (by name or slug), where it gives
    /// one. UNVERIFIED: that the catalog's `os_image_hash` is the one dstack logs in RTMR3's
    /// `os-image-hash` event (both are the image's measurement hash in Phala's docs and SDKs).
    async fn catalog_hash(&self, api: &dyn PhalaApi, name: &str) -> Option<String> {
        let images = self
            .images
            .get_or_init(|| async {
                match api.os_images(None).await {
                    Ok(list) => list
                        .into_iter()
                        .filter_map(|i| i.os_image_hash.clone().map(|h| ([i.name, i.slug], h)))
                        .flat_map(|(names, h)| names.map(|n| (n, h.clone())))
                        .collect(),
                    Err(e) => {
                        tracing::debug!(error = %e, "no OS image catalog; OS image hashes come from each CVM's detail");
                        BTreeMap::new()
                    }
                }
            })
            .await;
        images.get(name).cloned()
    }

    /// Fetches the CVM's attestation and checks it against its record: the event log, the
    /// OS image (the planned image's hash from the catalog, else what the CVM's detail
    /// reports: `reported_os_hash`, or read now), the quote, and for on-chain KMS the app
    /// contract's allow-list. `Err` only when the API could not be asked.
    pub async fn verify_record(
        &self,
        api: &dyn PhalaApi,
        rec: &ResourceRecord,
        reported_os_hash: Option<Option<String>>,
    ) -> Result<Verdict, ApiError> {
        let mut v = Verdict {
            address: rec.address.clone(),
            verified: false,
            mismatches: vec![],
            error: None,
            quote: QuoteReport::not_verified(NO_PCCS),
        };
        let planned = match &rec.attrs.image {
            Some(name) => self.catalog_hash(api, name).await,
            None => None,
        };
        let os_image_hash = match (planned, reported_os_hash) {
            (Some(h), _) => Some(h),
            (None, Some(h)) => h,
            (None, None) => api.get_cvm(&rec.ids.id).await?.and_then(|c| c.os_image_hash),
        };
        let want = attest::Expected { os_image_hash, ..expected(rec) };
        let Some(a) = api.attestation(&rec.ids.id).await? else {
            v.error = Some("the CVM does not exist".into());
            v.quote = QuoteReport::not_verified("the TDX quote was not verified: the CVM does not exist");
            return Ok(v);
        };
        match attest::check(&a, &want) {
            Ok(m) => v.mismatches = m,
            Err(e) => {
                v.error = Some(e);
                v.quote = QuoteReport::not_verified("the TDX quote was not verified: the attestation cannot be read");
                return Ok(v);
            }
        }
        let replayed = attest::parse(&a).map(|(_, events, _)| hex::encode(attest::replay(&events))).unwrap_or_default();
        let (quote, unusable) = self.check_quote(&a, &replayed, &mut v.mismatches).await;
        v.quote = quote;
        if let Some(why) = unusable {
            v.cannot_check(why);
        }
        if let Some(chain) = self.onchain.get(&rec.address)
            && let Some(hash) = &rec.compose_hash
        {
            match allowed_on_chain(chain, rec, hash).await {
                Ok(true) => {}
                Ok(false) => v.mismatches.push(attest::Mismatch {
                    field: "compose-hash (on-chain allow-list)".into(),
                    expected: format!("a hash the app contract {} allows", contract_of(chain, rec).unwrap_or_default()),
                    attested: format!("{} is not allowed", hash.trim_start_matches("0x")),
                }),
                Err(e) => v.cannot_check(format!("cannot check the app contract's allow-list: {e}")),
            }
        }
        v.verified = v.mismatches.is_empty() && v.error.is_none();
        self.given.lock().expect("verdicts lock").push(v.clone());
        Ok(v)
    }

    /// The quote in `a`, verified and bound to `replayed` (RTMR3, hex); a refusal is pushed
    /// onto `mismatches`. With a PCCS, a quote that cannot be verified (none in the
    /// attestation, no collateral) fails too, the reason second: the user asked for it.
    async fn check_quote(
        &self,
        a: &serde_json::Value,
        replayed: &str,
        mismatches: &mut Vec<attest::Mismatch>,
    ) -> (QuoteReport, Option<String>) {
        let mut failed = |field: &str, expected: String, attested: String, detail: String| {
            mismatches.push(attest::Mismatch { field: field.into(), expected, attested });
            (QuoteReport::failed(detail), None)
        };
        let unusable = |why: String| {
            let why = format!("the TDX quote could not be verified: {why}");
            (QuoteReport::failed(why.clone()), Some(why))
        };
        let raw = match (quote::quote_of(a), &self.collateral) {
            (Ok(Some(q)), _) => q,
            (Ok(None), None) => {
                let why =
                    "the TDX quote was not verified: the API's attestation carries none (`app_certificates[].quote`)";
                return (QuoteReport::not_verified(why), None);
            }
            (Ok(None), Some(_)) => {
                return unusable("the API's attestation carries none (`app_certificates[].quote`)".into());
            }
            (Err(e), _) => return failed("quote", "a TDX quote".into(), e.clone(), e),
        };
        let Some(source) = &self.collateral else { return (QuoteReport::not_verified(NO_PCCS), None) };
        let (fmspc, ca) = match quote::platform_of(&raw) {
            Ok(p) => p,
            Err(e) => return failed("quote", "a TDX quote with its PCK certificate chain".into(), e.clone(), e),
        };
        let now = self.now();
        let collateral = match source.get(&fmspc, ca, now).await {
            Ok(c) => c,
            Err(e) => return unusable(format!("no collateral from {} for FMSPC {fmspc}: {e}", source.base())),
        };
        let collateral = serde_json::to_string(&collateral).unwrap_or_default();
        let q = match quote::verify(&raw, &collateral, now) {
            Ok(q) => q,
            Err(e) => {
                return failed("quote", "a quote that verifies against Intel's collateral".into(), e.clone(), e);
            }
        };
        let mut report = QuoteReport {
            status: QuoteStatus::Verified,
            tcb_status: Some(q.tcb_status.clone()),
            advisory_ids: q.advisory_ids.clone(),
            detail: format!("the TDX quote verified against Intel's collateral; TCB status {}", q.tcb_status),
        };
        if !quote::binds_rtmr3(&q, replayed) {
            failed(
                "quote.rtmr3",
                format!("{replayed} (the event log replayed)"),
                hex::encode(q.rtmrs[3]),
                String::new(),
            );
            report.status = QuoteStatus::Failed;
            report.detail = "the TDX quote verified, but its RTMR3 is not the event log's".into();
        }
        if quote::TcbPolicy::judge(&self.tcb, &q.tcb_status) == quote::TcbVerdict::Fail {
            failed(
                "quote.tcb_status",
                "UpToDate (or a status given to --allow-tcb-status)".into(),
                q.tcb_status.clone(),
                String::new(),
            );
            report.status = QuoteStatus::Failed;
        }
        (report, None)
    }
}

fn contract_of(chain: &OnChainCheck, rec: &ResourceRecord) -> Option<String> {
    rec.app_contract(chain.contract.as_deref())
}

async fn allowed_on_chain(chain: &OnChainCheck, rec: &ResourceRecord, hash: &str) -> Result<bool, String> {
    let url =
        chain.rpc_url.as_deref().ok_or_else(|| format!("no RPC URL (set ${} or `kms.rpc_url`)", chain.rpc_url_env))?;
    let contract = contract_of(chain, rec).ok_or("the app contract is not known (set `kms.contract`)")?;
    let rpc = crate::chain::Rpc::new(url).map_err(|e| e.to_string())?;
    rpc.check_chain(chain.chain_id).await.map_err(|e| e.to_string())?;
    rpc.is_allowed(&contract, hash).await.map_err(|e| e.to_string())
}
