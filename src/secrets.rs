//! Secret values: where they come from and the one-way digest state keeps instead of them
//! (`digests`: the two modes, Argon2id and keyed; `pool`: Argon2id in bounded memory, each
//! digest once per process).
//!
//! Invariant: a secret's value lives only in memory, for as long as it takes to encrypt it
//! for the CVM or to digest it; it is never logged, rendered, serialized or stored.

mod digests;
mod pool;

use std::collections::BTreeMap;
use std::fmt;

pub use digests::{
    BENCH_LEGACY_VAR, Check, Digester, Job, MIN_PASSPHRASE_LEN, Made, PASSPHRASE_VAR, PREVIOUS_PASSPHRASE_VAR,
    PassphraseError, from_env, log_stats, stats,
};
pub use pool::{EngineStats, PoolStats};

use crate::manifest::Ref;
use crate::manifest::files::{FilePolicy, Limit, file_value};

/// The environment variables teeform reads for its own credentials: the Phala Cloud API key
/// and OIDC token, the on-chain signer key and RPC URL (the defaults; a manifest's
/// `private_key_env`/`rpc_url_env` add theirs), the PostgreSQL connection string, the secrets
/// passphrases (this run's and the previous one) and the nscale tokens. A manifest may not copy them into plain values:
/// `${env:NAME}` of one is an error (`${secret:env:NAME}` is allowed, encrypted for the CVM
/// and never shown). The one list; a tidy test keeps every such variable teeform reads in it.
pub const CREDENTIAL_VARS: &[&str] = &[
    "PHALA_CLOUD_API_KEY",
    "PHALA_OIDC_TOKEN",
    "PRIVATE_KEY",
    "ETH_RPC_URL",
    "TEEFORM_PG_CONN",
    "TEEFORM_SECRETS_PASSPHRASE",
    "TEEFORM_PREVIOUS_SECRETS_PASSPHRASE",
    "NSCALE_TOKEN",
    "NSCALE_SERVICE_TOKEN",
];

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
/// `${secret:file:P}` reads P through `files` as the manifest's other files are (allowed
/// directories, a regular file, at most 1 MiB, no byte-order mark) with the same newline rule
/// as `${file:}` ([`file_value`]: one final line break is not part of the value).
pub fn read_all<'a>(
    refs: impl IntoIterator<Item = &'a Ref>,
    files: &FilePolicy,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SecretValues, Vec<String>> {
    let mut out = SecretValues::new();
    let mut errors = Vec::new();
    // Each secret env file read once, its problem reported once.
    let mut env_files: BTreeMap<&str, Option<BTreeMap<String, Secret>>> = BTreeMap::new();
    for r in refs {
        if out.contains_key(r) {
            continue;
        }
        match r {
            Ref::SecretEnvFile { path, key } => {
                let file = env_files.entry(path).or_insert_with(|| match read_env_file(files, path) {
                    Ok(values) => Some(values),
                    Err(e) => {
                        errors.push(format!("secret env file {}: {e}", files.full(path).display()));
                        None
                    }
                });
                match file.as_ref().map(|values| values.get(key)) {
                    Some(Some(v)) => {
                        out.insert(r.clone(), v.clone());
                    }
                    Some(None) => errors.push(format!(
                        "secret env file {}: it no longer sets {key}; run plan again",
                        files.full(path).display()
                    )),
                    None => {}
                }
            }
            Ref::SecretEnv { name } => match env(name) {
                Some(v) => {
                    out.insert(r.clone(), Secret::new(v));
                }
                None => errors.push(format!("secret `{r}`: environment variable {name} is not set")),
            },
            Ref::SecretFile { path } => match files.read(path, Limit::Value) {
                Ok(v) => {
                    out.insert(r.clone(), Secret::new(file_value(v)));
                }
                Err(e) => errors.push(format!("secret `{r}`: cannot read {}: {e}", files.full(path).display())),
            },
            _ => {}
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The values of a secret env file (`env_file: {path: P, secret: true}`), read as the
/// manifest's loader reads it (`manifest::dotenv`); a problem is named by line and column,
/// never with the file's content.
fn read_env_file(files: &FilePolicy, path: &str) -> Result<BTreeMap<String, Secret>, String> {
    let text = zeroize::Zeroizing::new(files.read(path, Limit::Value).map_err(|e| format!("cannot read it: {e}"))?);
    let parsed = crate::manifest::dotenv::parse_secret(&text);
    if let Some(e) = parsed.errors.first() {
        let before = &text[..e.at];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        return Err(format!("line {line}, column {col}: {}", e.message));
    }
    Ok(parsed.entries.into_iter().map(|e| (e.key, Secret::new(e.value))).collect())
}

/// The Argon2id digest of a value as teeform has always made it, computed on its own with
/// fresh working memory: the reference [`Digester`] is checked against, and the path the
/// benchmark suite measures it against ([`BENCH_LEGACY_VAR`]). Runs use a [`Digester`].
pub fn digest(state_salt: &str, address: &str, key: &str, value: &str) -> String {
    let salt = digests::argon2_salt(state_salt, address, key);
    let mut out = [0u8; 32];
    pool::argon2().hash_password_into(value.as_bytes(), &salt, &mut out).expect("argon2 with fixed-size output");
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
        std::fs::write(dir.path().join("pw"), "\u{feff}s3cret\n").unwrap();
        std::fs::write(dir.path().join("pem"), "-----BEGIN-----\nAAAA\n-----END-----\n\n").unwrap();
        let files = FilePolicy::new(dir.path(), &[]);
        let refs = [
            Ref::SecretEnv { name: "X".into() },
            Ref::SecretFile { path: "pw".into() },
            Ref::SecretFile { path: "pem".into() },
        ];
        let got = read_all(&refs, &files, &|k| (k == "X").then(|| "from-env".to_string())).unwrap();
        assert_eq!(got[&refs[0]].expose(), "from-env");
        assert_eq!(got[&refs[1]].expose(), "s3cret");
        // The same rule as `${file:}`: one final line break goes, a second one stays.
        assert_eq!(got[&refs[2]].expose(), "-----BEGIN-----\nAAAA\n-----END-----\n");
        let missing = read_all(&[Ref::SecretEnv { name: "Y".into() }], &files, &|_| None).unwrap_err();
        assert!(missing[0].contains("Y is not set"));
    }

    #[test]
    fn unreadable_secret_files_say_why_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(dir.path().join("outside"), "TOPSECRET").unwrap();
        let files = FilePolicy::new(&project, &[]);
        for (path, want) in [
            ("missing.pass", "no such file"),
            ("../outside", "outside the manifest's directory"),
            (".", "a directory"),
            ("/proc/self/environ", "/proc"),
        ] {
            let errs = read_all(&[Ref::SecretFile { path: path.into() }], &files, &|_| None).unwrap_err();
            assert!(errs[0].contains(want), "{path}: {errs:?}");
            assert!(!errs[0].contains("entity not found") && !errs[0].contains("TOPSECRET"), "{errs:?}");
        }
    }

    /// Every variable teeform reads that looks like a credential is in [`CREDENTIAL_VARS`], so
    /// a manifest cannot copy it with `${env:}`; names that look like one but are not are
    /// listed here with the reason.
    #[test]
    fn every_credential_variable_read_is_listed() {
        const NOT_CREDENTIALS: &[&str] = &[
            // Env keys of CVMs in examples, tests and docs, not variables teeform reads.
            "DB_PASSWORD",
            "POSTGRES_PASSWORD",
            "API_KEY",
            "DSTACK_DOCKER_PASSWORD",
            // A `private_key_env` a test chooses; such names are refused by the loader.
            "DEPLOYER_KEY",
        ];
        let credential = regex::Regex::new(
            r#""([A-Z][A-Z0-9_]*(?:_KEY|_TOKEN|_SECRET|_PASSWORD|_PASSPHRASE|_CONN|_RPC_URL|PRIVATE_KEY))""#,
        )
        .unwrap();
        let mut unlisted = std::collections::BTreeSet::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            // The simulator is another program: its variables are not teeform's.
            if p.extension().is_none_or(|e| e != "rs") || p.components().any(|c| c.as_os_str() == "sim") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for m in credential.captures_iter(&text) {
                let name = &m[1];
                if !CREDENTIAL_VARS.contains(&name) && !NOT_CREDENTIALS.contains(&name) {
                    unlisted.insert(format!("{name} ({})", p.display()));
                }
            }
        }
        assert!(unlisted.is_empty(), "add these to CREDENTIAL_VARS (or NOT_CREDENTIALS with a reason): {unlisted:?}");
    }
}
