//! Environment encryption as the Phala SDK / dstack do it (reference §5):
//! `hex(ephemeral_x25519_pub(32) || iv(12) || AES-256-GCM(shared secret, iv, json) || tag(16))`,
//! where the AES key is the raw X25519 shared secret (no KDF) and there is no AAD.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptError {
    #[error("the env encryption public key is not 32 hex-encoded bytes")]
    BadPublicKey,
    #[error("the encrypted env is not valid hex or is too short")]
    BadCiphertext,
    #[error("the encrypted env does not decrypt with this key")]
    Decrypt,
}

#[derive(Serialize, Deserialize)]
struct Plain<'a> {
    #[serde(borrow)]
    env: Vec<Pair<'a>>,
}

#[derive(Serialize, Deserialize)]
struct Pair<'a> {
    key: &'a str,
    value: &'a str,
}

fn key32(hex_str: &str) -> Result<[u8; 32], CryptError> {
    let bytes = hex::decode(hex_str.trim().trim_start_matches("0x")).map_err(|_| CryptError::BadPublicKey)?;
    bytes.try_into().map_err(|_| CryptError::BadPublicKey)
}

/// Encrypts `env` (in the given order) to the recipient's X25519 public key (hex, 0x optional).
pub fn encrypt(env: &[(String, String)], recipient_pub_hex: &str) -> Result<String, CryptError> {
    let recipient = PublicKey::from(key32(recipient_pub_hex)?);
    let eph = StaticSecret::from(rand::random::<[u8; 32]>());
    let iv: [u8; 12] = rand::random();
    encrypt_with(env, &recipient, &eph, iv)
}

fn encrypt_with(
    env: &[(String, String)],
    recipient: &PublicKey,
    eph: &StaticSecret,
    iv: [u8; 12],
) -> Result<String, CryptError> {
    let plain = Plain { env: env.iter().map(|(k, v)| Pair { key: k, value: v }).collect() };
    // serde_json cannot fail on this shape; the plaintext is zeroed below once sealed.
    let mut json = serde_json::to_vec(&plain).expect("env serializes");
    let shared = eph.diffie_hellman(recipient);
    let cipher = Aes256Gcm::new_from_slice(shared.as_bytes()).expect("32-byte key");
    let sealed = cipher.encrypt(&iv.into(), json.as_slice()).map_err(|_| CryptError::Decrypt);
    json.iter_mut().for_each(|b| *b = 0);
    let sealed = sealed?;
    let mut out = Vec::with_capacity(32 + 12 + sealed.len());
    out.extend_from_slice(PublicKey::from(eph).as_bytes());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&sealed);
    Ok(hex::encode(out))
}

/// Decrypts what [`encrypt`] (or the SDK) produced; used by the simulator's test KMS.
pub fn decrypt(encrypted_hex: &str, recipient_priv: &[u8; 32]) -> Result<Vec<(String, String)>, CryptError> {
    let blob = hex::decode(encrypted_hex.trim().trim_start_matches("0x")).map_err(|_| CryptError::BadCiphertext)?;
    if blob.len() < 32 + 12 + 16 {
        return Err(CryptError::BadCiphertext);
    }
    let eph: [u8; 32] = blob[..32].try_into().expect("sliced 32");
    let iv: [u8; 12] = blob[32..44].try_into().expect("sliced 12");
    let shared = StaticSecret::from(*recipient_priv).diffie_hellman(&PublicKey::from(eph));
    let cipher = Aes256Gcm::new_from_slice(shared.as_bytes()).expect("32-byte key");
    let plain = cipher.decrypt(&iv.into(), &blob[44..]).map_err(|_| CryptError::Decrypt)?;
    let parsed: Plain = serde_json::from_slice(&plain).map_err(|_| CryptError::Decrypt)?;
    Ok(parsed.env.into_iter().map(|p| (p.key.to_string(), p.value.to_string())).collect())
}

/// The public key (hex) of a private key, for the simulator's KMS.
pub fn public_key_hex(private: &[u8; 32]) -> String {
    hex::encode(PublicKey::from(&StaticSecret::from(*private)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = include_str!("../tests/fixtures/encrypt-env-vector.json");

    fn vector() -> serde_json::Value {
        serde_json::from_str(VECTOR).unwrap()
    }

    fn priv_key(v: &serde_json::Value) -> [u8; 32] {
        hex::decode(v["recipient_private_key_hex"].as_str().unwrap()).unwrap().try_into().unwrap()
    }

    #[test]
    fn decrypts_the_sdk_vector() {
        let v = vector();
        let env = decrypt(v["encrypted_env_hex"].as_str().unwrap(), &priv_key(&v)).unwrap();
        let want: Vec<(String, String)> = v["envs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["key"].as_str().unwrap().into(), e["value"].as_str().unwrap().into()))
            .collect();
        assert_eq!(env, want);
        assert_eq!(public_key_hex(&priv_key(&v)), v["recipient_public_key_hex"].as_str().unwrap());
    }

    #[test]
    fn round_trips_and_matches_sdk_plaintext_layout() {
        let v = vector();
        let env: Vec<(String, String)> =
            vec![("API_KEY".into(), "sk-test-123".into()), ("DB_URL".into(), "postgres://u:p@db:5432/x".into())];
        let enc = encrypt(&env, v["recipient_public_key_hex"].as_str().unwrap()).unwrap();
        assert_eq!(decrypt(&enc, &priv_key(&v)).unwrap(), env);
        // Deterministic pieces give the SDK's exact plaintext bytes.
        let eph = StaticSecret::from([7u8; 32]);
        let recipient = PublicKey::from(key32(v["recipient_public_key_hex"].as_str().unwrap()).unwrap());
        let enc = encrypt_with(&env, &recipient, &eph, [1; 12]).unwrap();
        let blob = hex::decode(&enc).unwrap();
        assert_eq!(&blob[..32], PublicKey::from(&eph).as_bytes());
        assert_eq!(blob.len(), 32 + 12 + v["expected_plaintext"].as_str().unwrap().len() + 16);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(encrypt(&[], "zz").unwrap_err(), CryptError::BadPublicKey);
        assert_eq!(decrypt("00", &[1; 32]).unwrap_err(), CryptError::BadCiphertext);
        let enc = encrypt(&[("A".into(), "b".into())], &public_key_hex(&[1; 32])).unwrap();
        assert_eq!(decrypt(&enc, &[2; 32]).unwrap_err(), CryptError::Decrypt);
    }
}
