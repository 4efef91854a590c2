//! A PCCS beside the simulated API, under `/pccs`: Intel's PCS v4 paths, answering with the
//! real collateral of `dcap-qvl`'s sample TDX quote (TCB info issued 2025-06-19, FMSPC
//! `B0C06F000000`, valid until 2025-07-19) as Intel's PCS and a PCCS serve it: the signed
//! JSON bodies exactly as signed, the issuer chains percent-encoded in headers, the PCK CRL as
//! DER and the root CA's CRL as hex. Any other FMSPC is a 404. Requests are counted in
//! `GET /_sim/stats` as `GET /pccs/...`.
//!
//! The simulator cannot sign a quote as Intel would, so it serves that one sample quote
//! (knobs `sample_quote`, `tampered_quote`); a client verifying it must fix its clock inside
//! the collateral's validity (teeform: `TEEFORM_VERIFY_TIME`).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::Sim;

/// dcap-qvl 0.7.1's sample TDX quote (`sample/tdx_quote`; MIT, Phala Network).
pub const SAMPLE_QUOTE: &[u8] = include_bytes!("../../tests/fixtures/dcap/tdx_quote");
/// Its collateral as `dcap-qvl` stores it (`sample/tdx_quote_collateral.json`).
const SAMPLE_COLLATERAL: &str = include_str!("../../tests/fixtures/dcap/tdx_quote_collateral.json");
/// A time inside the sample collateral's validity: 2025-06-20T00:00:00Z.
pub const SAMPLE_TIME: u64 = 1_750_377_600;

/// The sample quote with one byte of its RTMR3 flipped: its signature no longer covers it.
pub fn tampered_quote() -> Vec<u8> {
    let mut q = SAMPLE_QUOTE.to_vec();
    // The TD report follows the 48-byte header; RTMR3 is at 376..424 of it.
    q[48 + 376] ^= 1;
    q
}

pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/pccs/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/pccs/sgx/certification/v4/rootcacrl", get(root_ca_crl))
        .route("/pccs/tdx/certification/v4/tcb", get(tcb))
        .route("/pccs/tdx/certification/v4/qe/identity", get(qe_identity))
        .with_state(sim)
}

fn field(name: &str) -> String {
    let v: Value = serde_json::from_str(SAMPLE_COLLATERAL).expect("the sample collateral is JSON");
    v[name].as_str().expect("the sample collateral's fields are strings").to_string()
}

fn encoded(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn answer(sim: &Sim, path: &str, header: Option<(&'static str, String)>, body: Vec<u8>) -> Response {
    sim.count(&format!("GET {path}"), &format!("GET {path}"));
    let mut r = body.into_response();
    if let Some((name, value)) = header {
        r.headers_mut().insert(name, value.parse().expect("percent-encoded text is a header value"));
    }
    r
}

async fn pck_crl(State(sim): State<Sim>) -> Response {
    let der = hex::decode(field("pck_crl")).expect("hex");
    answer(
        &sim,
        "/pccs/sgx/certification/v4/pckcrl",
        Some(("SGX-PCK-CRL-Issuer-Chain", encoded(&field("pck_crl_issuer_chain")))),
        der,
    )
}

async fn root_ca_crl(State(sim): State<Sim>) -> Response {
    answer(&sim, "/pccs/sgx/certification/v4/rootcacrl", None, field("root_ca_crl").into_bytes())
}

async fn tcb(State(sim): State<Sim>, Query(q): Query<std::collections::BTreeMap<String, String>>) -> Response {
    if q.get("fmspc").is_none_or(|f| !f.eq_ignore_ascii_case("B0C06F000000")) {
        sim.count("GET /pccs/tdx/certification/v4/tcb", "GET /pccs/tdx/certification/v4/tcb");
        return (StatusCode::NOT_FOUND, "no TCB info for this FMSPC").into_response();
    }
    let body = format!(r#"{{"tcbInfo":{},"signature":"{}"}}"#, field("tcb_info"), field("tcb_info_signature"));
    let chain = encoded(&field("tcb_info_issuer_chain"));
    answer(&sim, "/pccs/tdx/certification/v4/tcb", Some(("TCB-Info-Issuer-Chain", chain)), body.into_bytes())
}

async fn qe_identity(State(sim): State<Sim>) -> Response {
    let body =
        format!(r#"{{"enclaveIdentity":{},"signature":"{}"}}"#, field("qe_identity"), field("qe_identity_signature"));
    let chain = encoded(&field("qe_identity_issuer_chain"));
    answer(
        &sim,
        "/pccs/tdx/certification/v4/qe/identity",
        Some(("SGX-Enclave-Identity-Issuer-Chain", chain)),
        body.into_bytes(),
    )
}
