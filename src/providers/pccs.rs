//! A PCCS (Intel's Provisioning Certification Caching Service, or Intel's PCS itself): the
//! DCAP collateral a TDX quote is verified with — Intel's signed TCB info and QE identity, the
//! PCK and root CA CRLs, and their issuer chains.
//!
//! The paths are Intel's PCS v4 API as `dcap-qvl`'s own collateral client asks them (its
//! `collateral.rs`, 0.7.1): `{base}/sgx/certification/v4/pckcrl?ca={processor|platform}&encoding=der`
//! (DER body, issuer chain in `SGX-PCK-CRL-Issuer-Chain`), `{base}/tdx/certification/v4/tcb?
//! fmspc={FMSPC}&update=standard` (`{tcbInfo, signature}`, chain in `SGX-TCB-Info-Issuer-Chain`
//! or `TCB-Info-Issuer-Chain`), `{base}/tdx/certification/v4/qe/identity?update=standard`
//! (`{enclaveIdentity, signature}`, chain in `SGX-Enclave-Identity-Issuer-Chain`), and the root
//! CA's CRL from a PCCS's `{base}/sgx/certification/v4/rootcacrl` (hex), else from the
//! distribution point Intel's root certificate names. Header chains are percent-encoded PEM;
//! the signed JSON bodies are kept byte for byte (the signatures are over those bytes).

use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::http::{self, Idempotency, RetryPolicy};

/// Phala Network's PCCS, as `dcap-qvl` names it (`PHALA_PCCS_URL`); `--pccs-url phala`.
pub const PHALA_PCCS_URL: &str = "https://pccs.phala.network";
/// Intel's PCS; `--pccs-url intel`.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// The CRL distribution point of Intel's SGX root CA certificate (valid to 2049), where the
/// root CA's CRL is read when the PCCS does not serve it (Intel's PCS does not).
pub const INTEL_ROOT_CA_CRL_URL: &str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// The most one collateral answer may hold (Intel's are a few KiB; a PCK CRL tens of KiB).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The PCCS a `--pccs-url` names: `phala`, `intel`, or an `http(s)` URL, at the host's root
/// (`https://host:8081`, as Intel's PCCS serves) or under a path; a trailing `/`, and a
/// trailing `/sgx/certification/v4` or `/tdx/certification/v4` (as `dcap-qvl` does), are
/// dropped. A query or fragment is refused: the requests' paths and queries replace them.
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
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{arg}` has a query or fragment; give the PCCS's base URL, e.g. `https://host:8081`"));
    }
    let mut path = parsed.path().trim_end_matches('/');
    for v4 in ["/sgx/certification/v4", "/tdx/certification/v4"] {
        path = path.strip_suffix(v4).unwrap_or(path).trim_end_matches('/');
    }
    let mut base = parsed.clone();
    base.set_path(path);
    Ok(base.as_str().trim_end_matches('/').to_string())
}

/// The URL of `path` (relative: `sgx/certification/v4/pckcrl?…`) on the PCCS at `base` (a
/// [`pccs_base`]), by the URL standard's join rules: under `base`'s path, whether or not it
/// ends in `/`.
fn endpoint(base: &str, path: &str) -> Result<url::Url, String> {
    let dir = url::Url::parse(&format!("{}/", base.trim_end_matches('/')))
        .map_err(|e| format!("`{base}` is not a URL: {e}"))?;
    dir.join(path).map_err(|e| format!("`{base}` and `{path}` make no URL: {e}"))
}

/// A PCCS client over teeform's one HTTP client (bounded bodies, retries, same-origin
/// redirects).
pub struct PccsClient {
    base: String,
    http: reqwest::Client,
    policy: RetryPolicy,
}

#[derive(Deserialize)]
struct Signed<'a> {
    #[serde(rename = "tcbInfo", alias = "enclaveIdentity", borrow)]
    body: &'a RawValue,
    signature: String,
}

impl PccsClient {
    /// A client of the PCCS at `base` (see [`pccs_base`]).
    pub fn new(base: String, timeout: Duration, policy: RetryPolicy) -> Result<Self, String> {
        let http = http::client(timeout, &base).map_err(|e| e.to_string())?;
        Ok(PccsClient { base, http, policy })
    }

    /// The PCCS's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The collateral for a TD on the platform `fmspc` (12 hex digits) whose PCK certificate
    /// `ca` (`processor` or `platform`) issued; the PCK chain is the quote's own
    /// (`pck_certificate_chain` is `None`). `Err` names the request and why.
    pub async fn collateral(&self, fmspc: &str, ca: &str) -> Result<QuoteCollateralV3, String> {
        let url = |tee: &str, path: &str| endpoint(&self.base, &format!("{tee}/certification/v4/{path}"));
        let (pck_crl, h) = self.get(url("sgx", &format!("pckcrl?ca={ca}&encoding=der"))?).await?;
        let pck_crl_issuer_chain = header(&h, &["SGX-PCK-CRL-Issuer-Chain"])?;
        let (tcb, h) = self.get(url("tdx", &format!("tcb?fmspc={fmspc}&update=standard"))?).await?;
        let tcb_info_issuer_chain = header(&h, &["SGX-TCB-Info-Issuer-Chain", "TCB-Info-Issuer-Chain"])?;
        let (qe, h) = self.get(url("tdx", "qe/identity?update=standard")?).await?;
        let qe_identity_issuer_chain = header(&h, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        // A PCCS serves the root CA's CRL as hex; Intel's PCS does not serve it at all.
        let from_pccs = match self.base != INTEL_PCS_URL {
            true => match url("sgx", "rootcacrl") {
                Ok(u) => self.get(u).await.ok(),
                Err(_) => None,
            }
            .and_then(|(b, _)| hex::decode(String::from_utf8_lossy(&b).trim()).ok()),
            false => None,
        };
        let root_ca_crl = match from_pccs {
            Some(crl) => crl,
            None => self.get(url::Url::parse(INTEL_ROOT_CA_CRL_URL).map_err(|e| e.to_string())?).await?.0,
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

    /// One GET: the body and headers of a 2xx answer; anything else is an error naming the
    /// request (its URL without the query), as teeform's HTTP client words it.
    async fn get(&self, parsed: url::Url) -> Result<(Vec<u8>, reqwest::header::HeaderMap), String> {
        let path = http::shown_url(&parsed);
        let method = Method::GET;
        let resp = http::send(&self.policy, None, Idempotency::Safe, &method, &path, || self.http.get(parsed.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let headers = resp.headers().clone();
        let body = http::read_body(&method, &path, resp, MAX_ANSWER_BYTES).await.map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_and_urls() {
        assert_eq!(pccs_base("phala").unwrap(), PHALA_PCCS_URL);
        assert_eq!(pccs_base("intel").unwrap(), INTEL_PCS_URL);
        assert_eq!(pccs_base("http://127.0.0.1:9/pccs/tdx/certification/v4/").unwrap(), "http://127.0.0.1:9/pccs");
        assert!(pccs_base("pccs.example").unwrap_err().contains("not a URL"));
        assert!(pccs_base("ftp://x").unwrap_err().contains("not an http(s) URL"));
        assert!(pccs_base("https://h/?key=1").unwrap_err().contains("query or fragment"));
    }

    #[test]
    fn requests_join_the_base_at_the_root_or_under_a_path_with_or_without_a_slash() {
        let pck = "sgx/certification/v4/pckcrl?ca=platform&encoding=der";
        let cases = [
            ("http://127.0.0.1:19347", "http://127.0.0.1:19347/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
            ("http://127.0.0.1:19347/", "http://127.0.0.1:19347/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
            ("http://localhost:19347/", "http://localhost:19347/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
            (
                "https://pccs.example:8081/sgx/certification/v4/",
                "https://pccs.example:8081/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            ),
            ("http://127.0.0.1:9/pccs", "http://127.0.0.1:9/pccs/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
            (
                "http://127.0.0.1:9/a/pccs/",
                "http://127.0.0.1:9/a/pccs/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            ),
            ("phala", "https://pccs.phala.network/sgx/certification/v4/pckcrl?ca=platform&encoding=der"),
        ];
        for (arg, want) in cases {
            let base = pccs_base(arg).unwrap();
            assert_eq!(endpoint(&base, pck).unwrap().as_str(), want, "{arg}");
        }
        assert_eq!(pccs_base("http://127.0.0.1:19347/").unwrap(), "http://127.0.0.1:19347");
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

    #[test]
    fn a_header_chain_is_percent_decoded() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("TCB-Info-Issuer-Chain", "-----BEGIN%20CERTIFICATE-----%0AMII%2B".parse().unwrap());
        let got = header(&h, &["SGX-TCB-Info-Issuer-Chain", "TCB-Info-Issuer-Chain"]).unwrap();
        assert_eq!(got, "-----BEGIN CERTIFICATE-----\nMII+");
        assert!(header(&h, &["SGX-PCK-CRL-Issuer-Chain"]).unwrap_err().contains("no `SGX-PCK-CRL-Issuer-Chain`"));
    }
}
