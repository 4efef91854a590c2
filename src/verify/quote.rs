//! The TDX quote: verified with `dcap-qvl` (Phala's pure-Rust port of Intel's DCAP quote
//! verification) against Intel's collateral (PCK certificate chain and CRLs, TCB info, QE
//! identity) at a given time, then bound to the RTMR3 the event log replays to.
//!
//! Where the quote comes from: the attestation's `app_certificates[].quote` (both official
//! SDKs type it `string | null`; that it is the TD quote as hex, like `/apps/{id}/attestations`
//! gives it, is UNVERIFIED). Collateral comes from a PCCS ([`super::collateral`]).

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::Report;

/// What a verified quote proves: the TD's measurements, signed by genuine TDX hardware whose
/// TCB Intel rates `tcb_status` (`UpToDate`, `OutOfDate`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    pub tcb_status: String,
    pub advisory_ids: Vec<String>,
    pub mrtd: [u8; 48],
    /// RTMR0..3.
    pub rtmrs: [[u8; 48]; 4],
    pub report_data: [u8; 64],
}

/// Verifies `raw_quote` with `collateral` (the JSON `dcap-qvl` and Phala's PCCS give) at
/// `now` (Unix seconds). `Err` says why it does not verify.
pub fn verify(raw_quote: &[u8], collateral: &str, now: u64) -> Result<VerifiedQuote, String> {
    let collateral: QuoteCollateralV3 =
        serde_json::from_str(collateral).map_err(|e| format!("the collateral is malformed: {e}"))?;
    let r = dcap_qvl::verify::QuoteVerifier::new_prod()
        .verify(raw_quote, &collateral, now)
        .map_err(|e| format!("the quote does not verify: {}", words(e.downcast_ref(), format!("{e:#}"))))?;
    let td = match &r.report {
        Report::SgxEnclave(_) => return Err("the quote is an SGX enclave's, not a TD's".into()),
        other => other.as_td10().ok_or("the quote carries no TD report")?,
    };
    Ok(VerifiedQuote {
        tcb_status: r.status.clone(),
        advisory_ids: r.advisory_ids.clone(),
        mrtd: td.mr_td,
        rtmrs: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
        report_data: td.report_data,
    })
}

/// Why `dcap-qvl` refused, in words. Its own messages are words, but the certificate and CRL
/// checks it runs (its fork of `webpki`) print their errors in Rust's debug form
/// (`CrlExpired { time: UnixTime(…), … }`): those are worded here, times as RFC 3339.
/// `shown` is the error as `dcap-qvl` words it, used when `pki` is `None`.
fn words(pki: Option<&webpki::Error>, shown: String) -> String {
    use webpki::Error as Pki;
    let Some(pki) = pki else { return shown };
    let at = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map_or_else(|| format!("{secs} (Unix seconds)"), |t| t.to_string())
    };
    match pki {
        Pki::CrlExpired { time, next_update } => format!(
            "a certificate revocation list in Intel's collateral is out of date (next update was due {}, verified at {}); current collateral is needed",
            at(next_update.as_secs()),
            at(time.as_secs())
        ),
        Pki::CertExpired { time, not_after } => {
            format!(
                "a certificate of the quote's chain expired at {} (verified at {})",
                at(not_after.as_secs()),
                at(time.as_secs())
            )
        }
        Pki::CertNotValidYet { time, not_before } => {
            format!(
                "a certificate of the quote's chain is valid only from {} (verified at {})",
                at(not_before.as_secs()),
                at(time.as_secs())
            )
        }
        Pki::CertRevoked => "a certificate of the quote's chain is revoked".into(),
        Pki::UnknownIssuer => "a certificate of the quote's chain was not issued under Intel's SGX root CA".into(),
        Pki::UnknownRevocationStatus => "a certificate's revocation status is not in Intel's CRLs".into(),
        Pki::InvalidSignatureForPublicKey | Pki::InvalidCrlSignatureForPublicKey => {
            "a signature in the quote's certificate chain or Intel's CRLs does not verify".into()
        }
        other => {
            // The variant's name as words: `UnsupportedCrlVersion` → "unsupported crl version".
            let debug = format!("{other:?}");
            let name: String = debug.chars().take_while(char::is_ascii_alphanumeric).collect();
            let mut out = String::from("certificate check failed: ");
            for (i, c) in name.char_indices() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase());
            }
            out
        }
    }
}

/// Whether the quote's RTMR3 is `rtmr3` (hex): what binds a replayed event log to hardware.
pub fn binds_rtmr3(q: &VerifiedQuote, rtmr3: &str) -> bool {
    hex::decode(rtmr3.trim_start_matches("0x")).is_ok_and(|b| b[..] == q.rtmrs[3][..])
}

/// The TD quote an attestation carries: the first `app_certificates[].quote` that is a
/// non-empty string, hex with or without `0x`. `Ok(None)`: the API gave none. `Err`: one is
/// there but is not hex.
pub fn quote_of(attestation: &serde_json::Value) -> Result<Option<Vec<u8>>, String> {
    let certs = attestation.get("app_certificates").and_then(serde_json::Value::as_array);
    let Some((i, text)) = certs.into_iter().flatten().enumerate().find_map(|(i, c)| {
        c.get("quote").and_then(serde_json::Value::as_str).filter(|q| !q.trim().is_empty()).map(|q| (i, q))
    }) else {
        return Ok(None);
    };
    hex::decode(text.trim().trim_start_matches("0x"))
        .map(Some)
        .map_err(|_| format!("`app_certificates[{i}].quote` is not hex"))
}

/// Where the quote's collateral is looked up: its platform's FMSPC (12 hex digits, upper
/// case, as Intel's PCS writes it) and the CA that issued its PCK certificate (`processor` or
/// `platform`), from the PCK chain the quote carries.
pub fn platform_of(raw_quote: &[u8]) -> Result<(String, &'static str), String> {
    let q = dcap_qvl::quote::Quote::parse(raw_quote).map_err(|e| format!("the quote cannot be read: {e}"))?;
    if q.header.is_sgx() {
        return Err("the quote is an SGX enclave's, not a TD's".into());
    }
    let fmspc =
        dcap_qvl::intel::quote_fmspc(&q).map_err(|e| format!("the quote's PCK certificate names no FMSPC: {e}"))?;
    let ca = dcap_qvl::intel::quote_ca(&q).map_err(|e| format!("the quote's PCK certificate names no CA: {e}"))?;
    Ok((hex::encode_upper(fmspc), ca.as_id_str()))
}

/// Which TCB statuses pass. `UpToDate` always does; `SWHardeningNeeded`,
/// `ConfigurationNeeded` and `ConfigurationAndSWHardeningNeeded` pass with a warning (the
/// platform is patched; what remains is the TD's software or the host's BIOS configuration, the
/// relying party's call, and common on cloud hosts); every other status (`OutOfDate…`,
/// `Revoked`, `TDRelaunchAdvised…`, what Intel adds) fails unless allowed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcbPolicy {
    /// Statuses allowed besides the default ones (`--allow-tcb-status`).
    pub also_allowed: Vec<String>,
}

/// What the policy makes of a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbVerdict {
    Pass,
    /// Passes, with a warning.
    Warn,
    Fail,
}

/// Every TCB status Intel's collateral defines (Intel's PCS v4 TCB info, `tcbStatus`).
pub const TCB_STATUSES: &[&str] = &[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
];

/// The statuses that pass with a warning by default.
pub const WARN_STATUSES: &[&str] = &["SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"];

impl TcbPolicy {
    pub fn judge(&self, status: &str) -> TcbVerdict {
        if status == "UpToDate" {
            TcbVerdict::Pass
        } else if WARN_STATUSES.contains(&status) || self.also_allowed.iter().any(|s| s == status) {
            TcbVerdict::Warn
        } else {
            TcbVerdict::Fail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real TDX quote and its collateral from Intel's PCS, as `dcap-qvl` 0.7.1 ships them
    // (`sample/tdx_quote`, `sample/tdx_quote_collateral.json`; MIT, Phala Network).
    const QUOTE: &[u8] = include_bytes!("../../tests/fixtures/dcap/tdx_quote");
    const COLLATERAL: &str = include_str!("../../tests/fixtures/dcap/tdx_quote_collateral.json");
    /// 2025-06-20T00:00:00Z: inside the collateral's validity (TCB info issued 2025-06-19).
    const AT: u64 = 1_750_377_600;

    #[test]
    fn the_sample_quote_verifies_and_binds_its_rtmr3() {
        let q = verify(QUOTE, COLLATERAL, AT).unwrap();
        // What the sample is (as `dcap-qvl`'s own tests find it): an up-to-date TD.
        assert_eq!((q.tcb_status.as_str(), q.advisory_ids.len()), ("UpToDate", 0));
        assert!(hex::encode(q.mrtd).starts_with("91eb2b44d141d4ec"));
        assert!(binds_rtmr3(&q, &hex::encode(q.rtmrs[3])));
        assert!(!binds_rtmr3(&q, &"11".repeat(48)));
        assert!(!binds_rtmr3(&q, "not hex"));
    }

    #[test]
    fn a_tampered_quote_or_stale_collateral_fails() {
        // RTMR3 sits in the TD report (header 48 bytes, then RTMR3 at 376..424 of the body).
        let mut tampered = QUOTE.to_vec();
        tampered[48 + 376] ^= 1;
        assert!(verify(&tampered, COLLATERAL, AT).unwrap_err().contains("does not verify"));
        // Years later the collateral has expired: not verified, never a silent pass, and said
        // in words (not `CrlExpired { time: UnixTime(…) }`).
        let stale = verify(QUOTE, COLLATERAL, AT + 3 * 365 * 86_400).unwrap_err();
        assert!(stale.contains("revocation list in Intel's collateral is out of date"), "{stale}");
        assert!(stale.contains("verified at 2028-06-19T00:00:00Z"), "{stale}");
        assert!(!stale.contains("UnixTime") && !stale.contains('{'), "{stale}");
        // dcap-qvl's own messages stay as they are.
        assert!(verify(QUOTE, COLLATERAL, AT + 40 * 86_400).unwrap_err().ends_with("TCBInfo expired"));
        assert!(verify(QUOTE, "{}", AT).unwrap_err().contains("malformed"));
        assert!(verify(&QUOTE[..100], COLLATERAL, AT).is_err());
    }

    #[test]
    fn the_quote_is_read_from_the_app_certificates_and_names_its_platform() {
        let json = |q: serde_json::Value| serde_json::json!({"app_certificates": [{"quote": null}, {"quote": q}]});
        assert_eq!(quote_of(&json(hex::encode(QUOTE).into())).unwrap().as_deref(), Some(QUOTE));
        assert_eq!(quote_of(&json(format!("0x{}", hex::encode(&QUOTE[..4])).into())).unwrap().unwrap(), &QUOTE[..4]);
        assert_eq!(quote_of(&json("".into())).unwrap(), None);
        assert_eq!(quote_of(&serde_json::json!({"app_certificates": null})).unwrap(), None);
        assert_eq!(quote_of(&json("zz".into())).unwrap_err(), "`app_certificates[1].quote` is not hex");
        // The sample's platform, as its collateral names it.
        assert_eq!(platform_of(QUOTE).unwrap(), ("B0C06F000000".to_string(), "platform"));
        assert!(platform_of(&QUOTE[..10]).is_err());
    }

    #[test]
    fn up_to_date_passes_hardening_warns_out_of_date_fails_unless_allowed() {
        let p = TcbPolicy::default();
        assert_eq!(p.judge("UpToDate"), TcbVerdict::Pass);
        assert_eq!(p.judge("SWHardeningNeeded"), TcbVerdict::Warn);
        assert_eq!(p.judge("OutOfDate"), TcbVerdict::Fail);
        assert_eq!(p.judge("Revoked"), TcbVerdict::Fail);
        let p = TcbPolicy { also_allowed: vec!["OutOfDate".into()] };
        assert_eq!(p.judge("OutOfDate"), TcbVerdict::Warn);
        assert_eq!(p.judge("OutOfDateConfigurationNeeded"), TcbVerdict::Fail);
    }
}
