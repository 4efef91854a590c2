//! The TDX quote: verified with `dcap-qvl` (Phala's pure-Rust port of Intel's DCAP quote
//! verification) against Intel's collateral (PCK certificate chain and CRLs, TCB info, QE
//! identity) at a given time, then bound to the RTMR3 the event log replays to.
//!
//! Not yet wired into `verify` or the apply gate: the API's attestation gives teeform no
//! quote it reads (UNVERIFIED: whether `app_certificates[].quote` carries one) and teeform has
//! no collateral source (a PCCS URL). Until both are, every verdict says the quote was not
//! verified ([`super::attest::QUOTE_NOT_VERIFIED`]).

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
        .map_err(|e| format!("the quote does not verify: {e}"))?;
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

/// Whether the quote's RTMR3 is `rtmr3` (hex): what binds a replayed event log to hardware.
pub fn binds_rtmr3(q: &VerifiedQuote, rtmr3: &str) -> bool {
    hex::decode(rtmr3.trim_start_matches("0x")).is_ok_and(|b| b[..] == q.rtmrs[3][..])
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
        // Years later the collateral has expired: not verified, never a silent pass.
        assert!(verify(QUOTE, COLLATERAL, AT + 3 * 365 * 86_400).is_err());
        assert!(verify(QUOTE, "{}", AT).unwrap_err().contains("malformed"));
        assert!(verify(&QUOTE[..100], COLLATERAL, AT).is_err());
    }
}
