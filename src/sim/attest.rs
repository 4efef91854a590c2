//! The simulator's KMS signing and attestation, its own code (the simulator is a referee of
//! the client, so it shares nothing with `crate::verify`): the KMS signs env-encryption keys
//! as dstack's KMS does (`keccak256("dstack-env-encrypt-pubkey" ‖ ":" ‖ app_id ‖ [timestamp,
//! u64 big endian] ‖ public_key)`, secp256k1, `r ‖ s ‖ recovery id`), and a CVM's RTMR3 event
//! log is dstack's (`cc-eventlog`: each runtime event's digest `SHA-384(0x08000001 as 4
//! little-endian bytes ‖ ":" ‖ event ‖ ":" ‖ payload)`, RTMR3 extended from 48 zero bytes as
//! `SHA-384(RTMR3 ‖ digest)`).

use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha384};
use sha3::Keccak256;

/// dstack's event type for runtime events.
const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;

/// The KMS's signature over `public_key` for `app_id`, hex.
pub fn kms_sign(secret: &[u8; 32], public_key: &[u8], app_id: &[u8; 20], timestamp: Option<u64>) -> String {
    let mut m = b"dstack-env-encrypt-pubkey:".to_vec();
    m.extend_from_slice(app_id);
    if let Some(t) = timestamp {
        m.extend_from_slice(&t.to_be_bytes());
    }
    m.extend_from_slice(public_key);
    let hash: [u8; 32] = Keccak256::digest(&m).into();
    let key = SigningKey::from_slice(secret).expect("the test KMS key is a valid secret");
    let (sig, recid) = key.sign_prehash_recoverable(&hash).expect("signing a 32-byte hash");
    let mut out = sig.to_bytes().to_vec();
    out.push(recid.to_byte());
    hex::encode(out)
}

/// The compressed public key of a KMS secret, `0x` hex.
pub fn kms_public_key(secret: &[u8; 32]) -> String {
    let key = SigningKey::from_slice(secret).expect("the test KMS key is a valid secret");
    format!("0x{}", hex::encode(key.verifying_key().to_encoded_point(true).as_bytes()))
}

/// One runtime event of RTMR3.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: &'static str,
    pub payload: Vec<u8>,
}

impl Event {
    pub fn new(name: &'static str, payload: &[u8]) -> Event {
        Event { name, payload: payload.to_vec() }
    }

    fn digest(&self) -> [u8; 48] {
        Sha384::new()
            .chain_update(RUNTIME_EVENT_TYPE.to_le_bytes())
            .chain_update(b":")
            .chain_update(self.name.as_bytes())
            .chain_update(b":")
            .chain_update(&self.payload)
            .finalize()
            .into()
    }

    /// As the API writes an event-log entry.
    pub fn to_json(&self) -> Value {
        json!({
            "imr": 3, "event_type": RUNTIME_EVENT_TYPE, "digest": hex::encode(self.digest()),
            "event": self.name, "event_payload": hex::encode(&self.payload),
        })
    }
}

/// RTMR3 after `events`.
pub fn rtmr3(events: &[Event]) -> [u8; 48] {
    events.iter().fold([0u8; 48], |mr, e| Sha384::new().chain_update(mr).chain_update(e.digest()).finalize().into())
}
