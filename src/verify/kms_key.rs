//! The KMS's signature on an app's env-encryption public key, checked before any secret is
//! encrypted to that key.
//!
//! The message and the recovery follow the official dstack SDK's `verifyEnvEncryptPublicKey`
//! (`@phala/dstack-sdk`, Python `dstack-sdk` 0.5.4): the KMS signs
//! `keccak256("dstack-env-encrypt-pubkey" ‖ ":" ‖ app_id (20 bytes) ‖ [timestamp, u64 big
//! endian] ‖ public_key (32 bytes))` with its secp256k1 key, as 65 bytes `r ‖ s ‖ recovery
//! id`. `GET /kms/{kms}/pubkey/{app_id}` answers `{public_key, signature}` and, from newer
//! KMS builds, `signature_v1` and `timestamp` (the timestamped form, which bounds replay). As
//! the SDK's README does, the timestamped form is tried first and the legacy one after it.
//! The signer recovered must be the KMS's known signing key ([`Signer`]).

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};
use std::fmt;

/// Keccak-256, as Ethereum and dstack use it.
fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The Ethereum address of a public key: the last 20 bytes of the keccak of its point.
fn address_of(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    keccak256(&point.as_bytes()[1..])[12..].try_into().expect("20 bytes")
}

/// The signed message's prefix.
const PREFIX: &[u8] = b"dstack-env-encrypt-pubkey";
/// The oldest timestamped signature accepted, in seconds (the SDK's default).
pub const MAX_AGE_SECS: u64 = 300;
/// How far in the future a timestamp may be, in seconds (clock skew; the SDK's value).
pub const FUTURE_SKEW_SECS: u64 = 60;

/// The answer of `GET /kms/{kms}/pubkey/{app_id}`: hex strings, with or without `0x`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedKey {
    /// The X25519 public key (32 bytes, hex).
    pub public_key: String,
    /// The legacy signature (65 bytes, hex), over the message without a timestamp.
    pub signature: Option<String>,
    /// The timestamped signature (65 bytes, hex).
    pub signature_v1: Option<String>,
    /// Unix seconds, signed into `signature_v1`.
    pub timestamp: Option<u64>,
}

/// The KMS's signing key as it is known: its compressed secp256k1 public key (33 bytes, what
/// the SDK's verifier returns and the KMS info's `k256_pubkey` holds) or its Ethereum
/// address (20 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    PublicKey([u8; 33]),
    Address([u8; 20]),
}

impl Signer {
    /// Parses `0x` + 66 hex digits (a compressed public key), 130 hex digits (an
    /// uncompressed one, `04…`), or 40 hex digits (an address). `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Signer, String> {
        let hex = text.trim().trim_start_matches("0x").trim_start_matches("0X");
        let bytes = hex::decode(hex).map_err(|_| format!("`{text}` is not hex"))?;
        match bytes.len() {
            20 => Ok(Signer::Address(bytes.try_into().expect("20 bytes"))),
            33 | 65 => {
                let key = VerifyingKey::from_sec1_bytes(&bytes)
                    .map_err(|_| format!("`{text}` is not a secp256k1 public key"))?;
                Ok(Signer::PublicKey(compressed(&key)))
            }
            n => Err(format!(
                "`{text}` is {n} bytes; a KMS signer is a secp256k1 public key (33 bytes) or an address (20 bytes)"
            )),
        }
    }

    /// Whether `key` is this signer.
    pub fn is(&self, key: &VerifyingKey) -> bool {
        match self {
            Signer::PublicKey(p) => &compressed(key) == p,
            Signer::Address(a) => address_of(key) == *a,
        }
    }
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signer::PublicKey(p) => write!(f, "0x{}", hex::encode(p)),
            Signer::Address(a) => write!(f, "0x{}", hex::encode(a)),
        }
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the KMS gave no signature for the key")]
    Unsigned,
    #[error("the KMS's answer is malformed: {0}")]
    Malformed(String),
    #[error("the key is signed by {recovered}, not by the KMS's signing key {expected}")]
    WrongSigner { expected: String, recovered: String },
    #[error("the key's signature does not verify")]
    BadSignature,
    #[error("the key's signature is {age_secs} s old (at most {MAX_AGE_SECS} s is accepted)")]
    Stale { age_secs: u64 },
    #[error("the key's signature is dated {ahead_secs} s in the future")]
    Future { ahead_secs: u64 },
}

/// The signed message's hash: with `timestamp`, the timestamped form.
pub fn message_hash(public_key: &[u8], app_id: &[u8; 20], timestamp: Option<u64>) -> [u8; 32] {
    let mut m = Vec::with_capacity(PREFIX.len() + 1 + 20 + 8 + public_key.len());
    m.extend_from_slice(PREFIX);
    m.push(b':');
    m.extend_from_slice(app_id);
    if let Some(t) = timestamp {
        m.extend_from_slice(&t.to_be_bytes());
    }
    m.extend_from_slice(public_key);
    keccak256(&m)
}

/// Checks `key` for the app `app_id` (40 hex digits, `0x` optional) against `signer` at
/// `now` (Unix seconds). Returns the public key's hex (without `0x`) to encrypt to.
pub fn check(key: &SignedKey, app_id: &str, signer: &Signer, now: u64) -> Result<String, KeyError> {
    let public_key = decode(&key.public_key, "public_key")?;
    if public_key.len() != 32 {
        return Err(KeyError::Malformed(format!("public_key is {} bytes, not 32", public_key.len())));
    }
    let app: [u8; 20] = decode(app_id, "app_id")?
        .try_into()
        .map_err(|_| KeyError::Malformed(format!("app id `{app_id}` is not 20 bytes")))?;
    let mut first_error = None;
    if let (Some(sig), Some(ts)) = (&key.signature_v1, key.timestamp) {
        let r = fresh(ts, now).and_then(|()| recover(sig, &message_hash(&public_key, &app, Some(ts)), signer));
        match r {
            Ok(()) => return Ok(hex::encode(&public_key)),
            Err(e) => first_error = Some(e),
        }
    }
    if let Some(sig) = &key.signature {
        match recover(sig, &message_hash(&public_key, &app, None), signer) {
            Ok(()) => return Ok(hex::encode(&public_key)),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    Err(first_error.unwrap_or(KeyError::Unsigned))
}

fn fresh(ts: u64, now: u64) -> Result<(), KeyError> {
    if ts > now + FUTURE_SKEW_SECS {
        return Err(KeyError::Future { ahead_secs: ts - now });
    }
    match now.saturating_sub(ts) {
        age if age > MAX_AGE_SECS => Err(KeyError::Stale { age_secs: age }),
        _ => Ok(()),
    }
}

/// Recovers the signer of `hash` from `r ‖ s ‖ v` (`v` 0/1, or 27/28 as Ethereum writes it).
/// A high `s` is taken as its low twin, as the SDK's recovery takes either.
fn recover_key(bytes: &[u8], hash: &[u8; 32]) -> Option<VerifyingKey> {
    let v = match bytes[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return None,
    };
    let mut sig = Signature::from_slice(&bytes[..64]).ok()?;
    let mut recid = RecoveryId::from_byte(v)?;
    if let Some(low) = sig.normalize_s() {
        sig = low;
        recid = RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced());
    }
    VerifyingKey::recover_from_prehash(hash, &sig, recid).ok()
}

fn recover(sig_hex: &str, hash: &[u8; 32], signer: &Signer) -> Result<(), KeyError> {
    let bytes = decode(sig_hex, "signature")?;
    if bytes.len() != 65 {
        return Err(KeyError::Malformed(format!("a signature is {} bytes, not 65", bytes.len())));
    }
    let key = recover_key(&bytes, hash).ok_or(KeyError::BadSignature)?;
    if signer.is(&key) {
        Ok(())
    } else {
        let recovered = match signer {
            Signer::PublicKey(_) => Signer::PublicKey(compressed(&key)),
            Signer::Address(_) => Signer::Address(address_of(&key)),
        };
        Err(KeyError::WrongSigner { expected: signer.to_string(), recovered: recovered.to_string() })
    }
}

fn decode(text: &str, what: &str) -> Result<Vec<u8>, KeyError> {
    hex::decode(text.trim_start_matches("0x")).map_err(|_| KeyError::Malformed(format!("{what} is not hex")))
}

fn compressed(key: &VerifyingKey) -> [u8; 33] {
    key.to_encoded_point(true).as_bytes().try_into().expect("a compressed point is 33 bytes")
}

/// Signs as a KMS does (the simulator's test KMS): `r ‖ s ‖ recovery id (0 or 1)`, hex.
pub fn sign(secret: &[u8; 32], public_key: &[u8], app_id: &[u8; 20], timestamp: Option<u64>) -> String {
    let key = SigningKey::from_slice(secret).expect("a valid secp256k1 secret");
    let (sig, recid) =
        key.sign_prehash_recoverable(&message_hash(public_key, app_id, timestamp)).expect("signing a 32-byte hash");
    let mut out = sig.to_bytes().to_vec();
    out.push(recid.to_byte());
    hex::encode(out)
}

/// The compressed public key (hex, `0x`) of a secp256k1 secret.
pub fn signer_of(secret: &[u8; 32]) -> String {
    let key = SigningKey::from_slice(secret).expect("a valid secp256k1 secret");
    format!("0x{}", hex::encode(compressed(key.verifying_key())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the dstack SDK's `verifyEnvEncryptPublicKey` docs (legacy form).
    #[test]
    fn the_sdk_example_recovers_its_signer() {
        let key = SignedKey {
            public_key: "e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a".into(),
            signature: Some("8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed7a5e7111652004aef37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00".into()),
            ..Default::default()
        };
        let signer = Signer::parse("0x0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f").unwrap();
        let app = "00".repeat(20);
        assert_eq!(check(&key, &app, &signer, 0).unwrap(), key.public_key);
        // Another signer, another app, or a flipped bit: refused.
        let other = Signer::parse(&signer_of(&[7; 32])).unwrap();
        assert!(matches!(check(&key, &app, &other, 0), Err(KeyError::WrongSigner { .. })));
        assert!(check(&key, &"11".repeat(20), &signer, 0).is_err());
        let mut flipped = key.clone();
        flipped.public_key.replace_range(0..2, "e2");
        assert!(check(&flipped, &app, &signer, 0).is_err());
    }

    /// Signed with `eth_keys` (what the Python `dstack-sdk` 0.5.4 verifies with): secret
    /// `09…09`, public key `03…03`, app `ab…ab`, timestamp 1000. Both RFC 6979, so teeform's
    /// signing gives the same bytes.
    #[test]
    fn signatures_made_by_the_python_sdks_library_verify() {
        let v1 = "8e7c66db4fab77880b89f66d5bb31bcd86d914dfefaae2386dbb26e8e59831000f2cad9a3ee8e7f05da6253317e209be64e5e0a80bd811f3453cc4286ca53e7e00";
        let legacy = "d73f90e5cbb3584ee399b3d47a2ed08074bf5b8de3e91c2e718e6ea0456de41051173b91079631d9397c38dc97881ef206b06c10fd7e699f3b96176f1ba9387701";
        let signer = "0x0256b328b30c8bf5839e24058747879408bdb36241dc9c2e7c619faa12b2920967";
        assert_eq!(signer_of(&[9; 32]), signer);
        let (pk, app) = ([3u8; 32], [0xab; 20]);
        assert_eq!(sign(&[9; 32], &pk, &app, Some(1000)), v1);
        assert_eq!(sign(&[9; 32], &pk, &app, None), legacy);
        let signer = Signer::parse(signer).unwrap();
        let key = |sig: &str, v1: bool| SignedKey {
            public_key: hex::encode(pk),
            signature: (!v1).then(|| sig.to_string()),
            signature_v1: v1.then(|| sig.to_string()),
            timestamp: v1.then_some(1000),
        };
        assert!(check(&key(v1, true), &hex::encode(app), &signer, 1000).is_ok());
        assert!(check(&key(legacy, false), &hex::encode(app), &signer, 1000).is_ok());
        // Each form's signature does not pass for the other.
        assert!(check(&key(legacy, true), &hex::encode(app), &signer, 1000).is_err());
        assert!(check(&key(v1, false), &hex::encode(app), &signer, 1000).is_err());
    }

    #[test]
    fn timestamped_signatures_are_checked_for_age_and_fall_back_to_legacy() {
        let secret = [9u8; 32];
        let signer = Signer::parse(&signer_of(&secret)).unwrap();
        let pk = [3u8; 32];
        let app = [0xab; 20];
        let app_hex = hex::encode(app);
        let v1 = |ts| SignedKey {
            public_key: hex::encode(pk),
            signature_v1: Some(sign(&secret, &pk, &app, Some(ts))),
            timestamp: Some(ts),
            ..Default::default()
        };
        assert!(check(&v1(1000), &app_hex, &signer, 1000 + MAX_AGE_SECS).is_ok());
        assert_eq!(check(&v1(1000), &app_hex, &signer, 1001 + MAX_AGE_SECS), Err(KeyError::Stale { age_secs: 301 }));
        assert!(matches!(check(&v1(2000), &app_hex, &signer, 1000), Err(KeyError::Future { .. })));
        // The timestamp is signed: another one does not verify.
        let mut moved = v1(1000);
        moved.timestamp = Some(1001);
        assert!(check(&moved, &app_hex, &signer, 1001).is_err());
        // A stale v1 with a good legacy signature passes, as the SDK's README does it.
        let mut both = v1(1000);
        both.signature = Some(sign(&secret, &pk, &app, None));
        assert!(check(&both, &app_hex, &signer, 100_000).is_ok());
        // By address too.
        let addr = address_of(SigningKey::from_slice(&secret).unwrap().verifying_key());
        let by_addr = Signer::parse(&hex::encode(addr)).unwrap();
        // A known address: the first Hardhat/anvil account's key.
        let anvil = hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80").unwrap();
        let anvil_key = SigningKey::from_slice(&anvil).unwrap();
        assert_eq!(hex::encode(address_of(anvil_key.verifying_key())), "f39fd6e51aad88f6f4ce6ab8827279cfffb92266");
        assert!(check(&v1(1000), &app_hex, &by_addr, 1000).is_ok());
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let signer = Signer::parse(&signer_of(&[9; 32])).unwrap();
        let app = "ab".repeat(20);
        let none = SignedKey { public_key: "00".repeat(32), ..Default::default() };
        assert_eq!(check(&none, &app, &signer, 0), Err(KeyError::Unsigned));
        for (pk, sig) in
            [("zz", "00"), (&*"00".repeat(31), "00"), (&*"00".repeat(32), "00"), (&*"00".repeat(32), &*"00".repeat(65))]
        {
            let k = SignedKey { public_key: pk.into(), signature: Some(sig.into()), ..Default::default() };
            assert!(check(&k, &app, &signer, 0).is_err(), "{pk} {sig}");
        }
        assert!(Signer::parse("0x1234").is_err());
        assert!(Signer::parse(&format!("0x{}", "00".repeat(33))).is_err());
    }
}
