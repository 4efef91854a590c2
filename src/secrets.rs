//! Secret values: where they come from and the one-way digest state keeps instead of them.
//!
//! Invariant: a secret's value lives only in memory, for as long as it takes to encrypt it
//! for the CVM or to digest it; it is never logged, rendered, serialized or stored.

use std::collections::BTreeMap;
use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::manifest::Ref;

/// A secret value that refuses to be printed and is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(zeroize::Zeroizing::new(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Secret values read for this run, keyed by their reference.
pub type SecretValues = BTreeMap<Ref, Secret>;

/// Reads every secret the references name, reporting those that cannot be read.
pub fn read_all<'a>(
    refs: impl IntoIterator<Item = &'a Ref>,
    base_dir: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretValues, Vec<String>> {
    let mut out = SecretValues::new();
    let mut errors = Vec::new();
    for r in refs {
        if out.contains_key(r) {
            continue;
        }
        match r {
            Ref::SecretEnv { name } => match env(name) {
                Some(v) => {
                    out.insert(r.clone(), Secret::new(v));
                }
                None => errors.push(format!("secret `{r}`: environment variable {name} is not set")),
            },
            Ref::SecretFile { path } => match std::fs::read_to_string(base_dir.join(path)) {
                // A trailing newline in a secret file is almost never part of the secret.
                Ok(v) => {
                    out.insert(
                        r.clone(),
                        Secret::new(
                            v.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&v).to_string(),
                        ),
                    );
                }
                Err(e) => {
                    errors.push(format!("secret `{r}`: cannot read {}: {}", base_dir.join(path).display(), e.kind()))
                }
            },
            _ => {}
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Argon2id over the value, salted per state and per (resource, key), so equal secrets in two
/// places or two states give unrelated digests. Parameters follow OWASP's minimum for Argon2id.
pub fn digest(state_salt: &str, address: &str, key: &str, value: &str) -> String {
    let salt = Sha256::new()
        .chain_update(state_salt)
        .chain_update([0])
        .chain_update(address)
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let params = Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters");
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(value.as_bytes(), &salt[..16], &mut out)
        .expect("argon2 with fixed-size output");
    format!("argon2id:{}", hex::encode(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_deterministic_and_scoped() {
        let a = digest("salt", "cvm.web", "PW", "hunter2");
        assert_eq!(a, digest("salt", "cvm.web", "PW", "hunter2"));
        assert_ne!(a, digest("salt", "cvm.web", "PW", "hunter3"));
        assert_ne!(a, digest("salt", "cvm.api", "PW", "hunter2"));
        assert_ne!(a, digest("other", "cvm.web", "PW", "hunter2"));
        assert!(!a.contains("hunter2"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn reads_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let refs = [Ref::SecretEnv { name: "X".into() }, Ref::SecretFile { path: "pw".into() }];
        let got = read_all(&refs, dir.path(), &|k| (k == "X").then(|| "from-env".to_string())).unwrap();
        assert_eq!(got[&refs[0]].expose(), "from-env");
        assert_eq!(got[&refs[1]].expose(), "s3cret");
        let missing = read_all(&[Ref::SecretEnv { name: "Y".into() }], dir.path(), &|_| None).unwrap_err();
        assert!(missing[0].contains("Y is not set"));
    }
}
