//! Verifying what the cloud says: the KMS's signature on an env-encryption key before any
//! secret is encrypted to it ([`kms_key`]), and a CVM's attestation after it boots
//! ([`attest`]: the RTMR3 event log replayed and compared with what teeform deployed).

pub mod attest;
pub mod kms_key;

use serde::Serialize;

use crate::model::{Address, ResourceRecord};
use crate::providers::{ApiError, PhalaApi};

/// What `verify` and the apply gate found for one CVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub address: Address,
    /// Proven to run what state says was applied (as far as the attestation goes: see
    /// `quote`).
    pub verified: bool,
    /// The fields that differ.
    pub mismatches: Vec<attest::Mismatch>,
    /// Why the attestation could not be checked (not running, no TCB info, malformed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was not checked, said plainly.
    pub quote: &'static str,
}

impl Verdict {
    /// Why it is not verified, in one line; `None` when it is.
    pub fn problem(&self) -> Option<String> {
        if self.verified {
            return None;
        }
        Some(match &self.error {
            Some(e) => e.clone(),
            None => self.mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        })
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

/// Fetches the CVM's attestation and checks it against its record. `Err` only when the API
/// could not be asked.
pub async fn verify_record(
    api: &dyn PhalaApi,
    rec: &ResourceRecord,
    reported_os_hash: Option<Option<String>>,
) -> Result<Verdict, ApiError> {
    let mut v = Verdict {
        address: rec.address.clone(),
        verified: false,
        mismatches: vec![],
        error: None,
        quote: attest::QUOTE_NOT_VERIFIED,
    };
    // The OS image's hash, from the CVM's detail (the record does not keep it): as a read made
    // just before reported it, else read now.
    let os_image_hash = match reported_os_hash {
        Some(h) => h,
        None => api.get_cvm(&rec.ids.id).await?.and_then(|c| c.os_image_hash),
    };
    let want = attest::Expected { os_image_hash, ..expected(rec) };
    match api.attestation(&rec.ids.id).await? {
        None => v.error = Some("the CVM does not exist".into()),
        Some(a) => match attest::check(&a, &want) {
            Ok(m) => {
                v.verified = m.is_empty();
                v.mismatches = m;
            }
            Err(e) => v.error = Some(e),
        },
    }
    Ok(v)
}
pub mod quote;
