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

/// The plaintext as the SDK writes it: `JSON.stringify({env: [{key, value}, ...]})`.
#[derive(Serialize)]
struct Plain<'a> {
    env: Vec<Pair<'a>>,
}

#[derive(Serialize)]
struct Pair<'a> {
    key: &'a str,
    value: &'a str,
}

/// The plaintext as any client may write it. Values are owned: a JSON string with an escape
/// (`\"`, `\\`, `\n`, or `\u00e9` from an encoder that escapes non-ASCII, as Python's
/// `json.dumps` does by default) cannot be borrowed from the input, so borrowing would refuse
/// exactly those values.
#[derive(Deserialize)]
struct PlainIn {
    env: Vec<PairIn>,
}

#[derive(Deserialize)]
struct PairIn {
    key: String,
    value: String,
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
    let mut json = plaintext(env);
    let sealed = seal(&json, recipient, eph, iv);
    json.iter_mut().for_each(|b| *b = 0);
    sealed
}

/// The exact bytes the SDK's `encryptEnvVars` encrypts for these pairs. serde_json escapes
/// what `JSON.stringify` escapes (`"`, backslash, the control characters below U+0020, with
/// the short forms `\b \f \n \r \t` and lowercase `\u00xx` for the rest) and writes everything
/// else, non-ASCII and U+007F included, as raw UTF-8, so the bytes are the same.
fn plaintext(env: &[(String, String)]) -> Vec<u8> {
    let plain = Plain { env: env.iter().map(|(k, v)| Pair { key: k, value: v }).collect() };
    // serde_json cannot fail on this shape.
    serde_json::to_vec(&plain).expect("env serializes")
}

fn seal(plaintext: &[u8], recipient: &PublicKey, eph: &StaticSecret, iv: [u8; 12]) -> Result<String, CryptError> {
    let shared = eph.diffie_hellman(recipient);
    let cipher = Aes256Gcm::new_from_slice(shared.as_bytes()).expect("32-byte key");
    let sealed = cipher.encrypt(&iv.into(), plaintext).map_err(|_| CryptError::Decrypt)?;
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
    let parsed: Result<PlainIn, _> = serde_json::from_slice(&plain);
    let mut plain = plain;
    plain.iter_mut().for_each(|b| *b = 0);
    let parsed = parsed.map_err(|_| CryptError::Decrypt)?;
    Ok(parsed.env.into_iter().map(|p| (p.key, p.value)).collect())
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

    /// Values a JSON encoder escapes, or that editors and shells mangle.
    const HOSTILE: &[&str] = &[
        "",
        " ",
        "say \"hi\"",
        "C:\\path\\to",
        "\\\"",
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        "a\tb",
        "crlf\r\n",
        "\u{1}\u{1f}\u{7f}\u{8}\u{c}",
        "ünïcödé 日本語 😀 e\u{301}",
        "\u{a0}nbsp \u{200b}zwsp \u{feff}bom",
        "\u{2028}\u{2029}",
        "</script>",
        "$HOME ${X} $$ = ==",
        "1.30",
        "no",
    ];

    fn pairs() -> Vec<(String, String)> {
        HOSTILE.iter().enumerate().map(|(i, v)| (format!("K{i:02}"), v.to_string())).collect()
    }

    #[test]
    fn hostile_values_round_trip_byte_for_byte() {
        let private = [9u8; 32];
        let env = pairs();
        let enc = encrypt(&env, &public_key_hex(&private)).unwrap();
        assert_eq!(decrypt(&enc, &private).unwrap(), env);
        for (k, v) in &env {
            let one = vec![(k.clone(), v.clone())];
            assert_eq!(decrypt(&encrypt(&one, &public_key_hex(&private)).unwrap(), &private).unwrap(), one, "{v:?}");
        }
    }

    #[test]
    fn plaintext_is_what_json_stringify_writes() {
        // Expected bytes: node 20's JSON.stringify({env: [{key, value}]}) for each value.
        let cases = [
            ("say \"hi\"", r#"say \"hi\""#),
            ("a\\b", r#"a\\b"#),
            ("l1\nl2\r\n", r#"l1\nl2\r\n"#),
            ("\t\u{8}\u{c}", r#"\t\b\f"#),
            ("\u{1}\u{1f}\u{7f}", "\\u0001\\u001f\u{7f}"),
            ("é日😀\u{a0}\u{200b}\u{feff}\u{2028}", "é日😀\u{a0}\u{200b}\u{feff}\u{2028}"),
            ("</script>", "</script>"),
        ];
        for (value, escaped) in cases {
            let got = plaintext(&[("K".into(), value.into())]);
            let want = format!(r#"{{"env":[{{"key":"K","value":"{escaped}"}}]}}"#);
            assert_eq!(String::from_utf8(got).unwrap(), want, "{value:?}");
        }
    }

    #[test]
    fn reads_what_other_encoders_write() {
        // Python's `json.dumps` (the dstack Python SDK) writes `", "` and `": "` and escapes
        // every non-ASCII character, astral ones as surrogate pairs.
        let python =
            r#"{"env": [{"key": "A", "value": "\u00fc\u65e5 \ud83d\ude00 \"q\" \\ \n\t"}, {"key": "B", "value": ""}]}"#;
        let private = [5u8; 32];
        let recipient = PublicKey::from(key32(&public_key_hex(&private)).unwrap());
        let enc = seal(python.as_bytes(), &recipient, &StaticSecret::from([3u8; 32]), [2; 12]).unwrap();
        assert_eq!(
            decrypt(&enc, &private).unwrap(),
            vec![("A".to_string(), "ü日 😀 \"q\" \\ \n\t".to_string()), ("B".to_string(), String::new())]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(encrypt(&[], "zz").unwrap_err(), CryptError::BadPublicKey);
        assert_eq!(decrypt("00", &[1; 32]).unwrap_err(), CryptError::BadCiphertext);
        let enc = encrypt(&[("A".into(), "b".into())], &public_key_hex(&[1; 32])).unwrap();
        assert_eq!(decrypt(&enc, &[2; 32]).unwrap_err(), CryptError::Decrypt);
    }
}
