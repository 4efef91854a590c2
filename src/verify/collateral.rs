//! DCAP collateral (Intel's signed TCB info, QE identity, CRLs and their issuer chains) from a
//! PCCS, cached by the platform it is for.
//!
//! The paths are Intel's PCS v4 API as `dcap-qvl`'s own collateral client asks them (its
//! `collateral.rs`, 0.7.1): `{base}/sgx/certification/v4/pckcrl?ca={processor|platform}&encoding=der`
//! (DER body, issuer chain in `SGX-PCK-CRL-Issuer-Chain`), `{base}/tdx/certification/v4/tcb?
//! fmspc={FMSPC}&update=standard` (`{tcbInfo, signature}`, chain in `SGX-TCB-Info-Issuer-Chain`
//! or `TCB-Info-Issuer-Chain`), `{base}/tdx/certification/v4/qe/identity?update=standard`
//! (`{enclaveIdentity, signature}`, chain in `SGX-Enclave-Identity-Issuer-Chain`), and the root
//! CA's CRL from a PCCS's `{base}/sgx/certification/v4/rootcacrl` (hex), else from the
//! distribution point Intel's root certificate names. Header chains are percent-encoded PEM.
//! Fetched with teeform's one HTTP client (bounded bodies, retries, same-origin redirects).
//!
//! Collateral is public and signed by Intel, so a cache cannot forge it (a stale or altered
//! entry fails verification, never passes it). It is kept in memory for the run and on disk
//! under `$XDG_CACHE_HOME/teeform/dcap` (else `~/.cache/teeform/dcap`), one file per PCCS,
//! TEE, FMSPC and CA, until the earliest `nextUpdate` of its TCB info and QE identity or a
//! day after it was fetched, whichever is first, so revocations reach the next day's runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::providers::http::{self, Idempotency, RetryPolicy};

/// Phala Network's PCCS, as `dcap-qvl` names it (`PHALA_PCCS_URL`); `--pccs-url phala`.
pub const PHALA_PCCS_URL: &str = "https://pccs.phala.network";
/// Intel's PCS; `--pccs-url intel`.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// The CRL distribution point of Intel's SGX root CA certificate (valid to 2049), where the
/// root CA's CRL is read when the PCCS does not serve it (Intel's PCS does not).
pub const INTEL_ROOT_CA_CRL_URL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// The most one collateral answer may hold (Intel's are a few KiB; a PCK CRL tens of KiB).
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// How long a cached entry is used at most, whatever its `nextUpdate` says.
const MAX_AGE_SECS: u64 = 86_400;

/// The PCCS a `--pccs-url` names: `phala`, `intel`, or an `http(s)` URL (a trailing
/// `/sgx/certification/v4` or `/tdx/certification/v4` is dropped, as `dcap-qvl` does).
pub fn pccs_base(arg: &str) -> Result<String, String> {
    let url = match arg.trim() {
        "phala" => PHALA_PCCS_URL,
        "intel" => INTEL_PCS_URL,
        other => other,
    };
    let parsed =
        url::Url::parse(url).map_err(|e| format!("`{arg}` is not a URL ({e}); give a URL, `phala` or `intel`"))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.cannot_be_a_base() {
        return Err(format!("`{arg}` is not an http(s) URL; give a URL, `phala` or `intel`"));
    }
    Ok(url
        .trim_end_matches('/')
        .trim_end_matches("/sgx/certification/v4")
        .trim_end_matches("/tdx/certification/v4")
        .to_string())
}

/// A platform's collateral from one PCCS: fetched once per run and platform, cached on disk
/// until it expires.
pub struct Collateral {
    base: String,
    http: reqwest::Client,
    policy: RetryPolicy,
    /// Where entries are kept; `None`: memory only.
    dir: Option<PathBuf>,
    memory: Mutex<BTreeMap<String, Entry>>,
    /// Fetches made (a test counts them).
    fetches: std::sync::atomic::AtomicUsize,
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    /// Unix seconds after which it is fetched again.
    expires: u64,
    collateral: QuoteCollateralV3,
}

#[derive(Deserialize)]
struct Signed<'a> {
    #[serde(rename = "tcbInfo", alias = "enclaveIdentity", borrow)]
    body: &'a RawValue,
    signature: String,
}

impl Collateral {
    /// A source at `base` (see [`pccs_base`]), cached under `dir`.
    pub fn new(base: String, timeout: Duration, policy: RetryPolicy, dir: Option<PathBuf>) -> Result<Self, String> {
        let http = http::client(timeout, &base).map_err(|e| e.to_string())?;
        Ok(Collateral { base, http, policy, dir, memory: Mutex::default(), fetches: Default::default() })
    }

    /// The default cache directory: `$XDG_CACHE_HOME/teeform/dcap`, else `~/.cache/teeform/dcap`.
    pub fn default_dir(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        match nonempty("XDG_CACHE_HOME") {
            Some(x) => Some(PathBuf::from(x)),
            None => nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")),
        }
        .map(|d| d.join("teeform").join("dcap"))
    }

    /// The PCCS, as shown to people.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How many times collateral was fetched from the PCCS.
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The collateral for a TD on the platform `fmspc` whose PCK certificate `ca` issued,
    /// current at `now` (Unix seconds): from memory, the disk cache, or the PCCS.
    pub async fn get(&self, fmspc: &str, ca: &str, now: u64) -> Result<QuoteCollateralV3, String> {
        let key = format!("{}-tdx-{fmspc}-{ca}", hex::encode(&Sha256::digest(self.base.as_bytes())[..8]));
        if let Some(e) = self.memory.lock().expect("collateral lock").get(&key).filter(|e| e.expires > now) {
            return Ok(e.collateral.clone());
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{key}.json")));
        let cached = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            .filter(|e| e.expires > now);
        let entry = match cached {
            Some(e) => e,
            None => {
                self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let collateral = self.fetch(fmspc, ca).await?;
                let entry = Entry { expires: expiry(&collateral, now), collateral };
                if let Some(f) = &file
                    && let Err(e) = write_atomic(f, &serde_json::to_vec(&entry).unwrap_or_default())
                {
                    tracing::debug!(path = %f.display(), error = %e, "cannot cache DCAP collateral");
                }
                entry
            }
        };
        let out = entry.collateral.clone();
        self.memory.lock().expect("collateral lock").insert(key, entry);
        Ok(out)
    }

    async fn fetch(&self, fmspc: &str, ca: &str) -> Result<QuoteCollateralV3, String> {
        let url = |tee: &str, path: &str| format!("{}/{tee}/certification/v4/{path}", self.base);
        let (pck_crl, h) = self.get_url(&url("sgx", &format!("pckcrl?ca={ca}&encoding=der"))).await?;
        let pck_crl_issuer_chain = header(&h, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let (tcb, h) = self.get_url(&url("tdx", &format!("tcb?fmspc={fmspc}&update=standard"))).await?;
        let tcb_info_issuer_chain = header(&h, &["SGX-TCB-Info-Issuer-Chain", "TCB-Info-Issuer-Chain"])?;
        let (qe, h) = self.get_url(&url("tdx", "qe/identity?update=standard")).await?;
        let qe_identity_issuer_chain = header(&h, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        // A PCCS serves the root CA's CRL as hex; Intel's PCS does not serve it at all.
        let from_pccs = match self.base != INTEL_PCS_URL {
            true => self
                .get_url(&url("sgx", "rootcacrl"))
                .await
                .ok()
                .and_then(|(b, _)| hex::decode(String::from_utf8_lossy(&b).trim()).ok()),
            false => None,
        };
        let root_ca_crl = match from_pccs {
            Some(crl) => crl,
            None => self.get_url(INTEL_ROOT_CA_CRL_URL).await?.0,
        };
        let (tcb_info, tcb_info_signature) = signed(&tcb, "TCB info")?;
        let (qe_identity, qe_identity_signature) = signed(&qe, "QE identity")?;
        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }

    /// One GET: the body and headers of a 2xx answer; anything else is an error naming the URL
    /// (without its query).
    async fn get_url(&self, url: &str) -> Result<(Vec<u8>, reqwest::header::HeaderMap), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let path = http::shown_url(&parsed);
        let method = Method::GET;
        let resp = http::send(&self.policy, None, Idempotency::Safe, &method, &path, || self.http.get(parsed.clone()))
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let headers = resp.headers().clone();
        let body = http::read_body(&method, &path, resp, MAX_ANSWER_BYTES).await.map_err(|e| format!("{path}: {e}"))?;
        Ok((body, headers))
    }
}

/// A header's value, percent-decoded (the PCS encodes PEM chains so).
fn header(h: &reqwest::header::HeaderMap, names: &[&str]) -> Result<String, String> {
    let v =
        names.iter().find_map(|n| h.get(*n)).ok_or_else(|| format!("the PCCS answer has no `{}` header", names[0]))?;
    let text = v.to_str().map_err(|_| format!("the `{}` header is not text", names[0]))?;
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("the `{}` header is not UTF-8 once decoded", names[0]))
}

/// The signed body exactly as served (the signature is over its bytes) and the signature.
fn signed(body: &[u8], what: &str) -> Result<(String, Vec<u8>), String> {
    let s: Signed =
        serde_json::from_slice(body).map_err(|e| format!("the PCCS's {what} is not what Intel serves: {e}"))?;
    let sig = hex::decode(s.signature.trim()).map_err(|_| format!("the PCCS's {what} signature is not hex"))?;
    Ok((s.body.get().to_string(), sig))
}

/// When collateral fetched at `now` stops being used: its first `nextUpdate`, at most a day on.
fn expiry(c: &QuoteCollateralV3, now: u64) -> u64 {
    let next = |doc: &str| -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(doc).ok()?;
        let t: jiff::Timestamp = v.get("nextUpdate")?.as_str()?.parse().ok()?;
        u64::try_from(t.as_second()).ok()
    };
    [next(&c.tcb_info), next(&c.qe_identity), Some(now.saturating_add(MAX_AGE_SECS))]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now)
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLATERAL: &str = include_str!("../../tests/fixtures/dcap/tdx_quote_collateral.json");

    #[test]
    fn shorthands_and_urls() {
        assert_eq!(pccs_base("phala").unwrap(), PHALA_PCCS_URL);
        assert_eq!(pccs_base("intel").unwrap(), INTEL_PCS_URL);
        assert_eq!(pccs_base("http://127.0.0.1:9/pccs/tdx/certification/v4/").unwrap(), "http://127.0.0.1:9/pccs");
        assert!(pccs_base("pccs.example").unwrap_err().contains("not a URL"));
        assert!(pccs_base("ftp://x").unwrap_err().contains("not an http(s) URL"));
    }

    #[test]
    fn an_entry_expires_at_its_first_next_update_or_a_day_on() {
        let c: QuoteCollateralV3 = serde_json::from_str(COLLATERAL).unwrap();
        // TCB info's nextUpdate 2025-07-19T10:16:03Z comes before the QE identity's (10:32:27).
        let next_update = 1_752_920_163;
        assert_eq!(expiry(&c, next_update - 10 * 86_400), next_update - 9 * 86_400);
        assert_eq!(expiry(&c, next_update - 3600), next_update);
    }

    #[test]
    fn a_signed_body_keeps_its_bytes() {
        let body = br#"{"tcbInfo":{"b":1, "a":[2]},"signature":"0aff"}"#;
        assert_eq!(signed(body, "TCB info").unwrap(), (r#"{"b":1, "a":[2]}"#.to_string(), vec![0x0a, 0xff]));
        let qe = br#"{"enclaveIdentity":{"id":"TD_QE"},"signature":"00"}"#;
        assert_eq!(signed(qe, "QE identity").unwrap().0, r#"{"id":"TD_QE"}"#);
        assert!(signed(br#"{"signature":"00"}"#, "TCB info").is_err());
        assert!(signed(br#"{"tcbInfo":{},"signature":"zz"}"#, "TCB info").unwrap_err().contains("not hex"));
    }
}
