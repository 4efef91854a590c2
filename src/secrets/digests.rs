//! The digests state keeps of secret values, and how a run makes and compares them.
//!
//! Two modes, told apart by each digest's prefix, so state records which one made it:
//!
//! - `argon2id:HEX` (the default): Argon2id of the value, salted per state and per (resource,
//!   key). Slow by design — about 19 MiB and tens of milliseconds each — so a stolen state
//!   gives no cheap way to test guesses.
//! - `hmac-sha256:FINGERPRINT:HEX` (keyed, with a passphrase, as Pulumi's passphrase secrets
//!   provider): one Argon2id derivation per run turns the passphrase and the state's salt
//!   into a key; each digest is then an HMAC-SHA256 under that key, microseconds each, and
//!   still useless without the passphrase. `FINGERPRINT` (16 hex digits, an HMAC of a
//!   constant under the key) names the key; neither key nor passphrase is ever stored.
//!
//! A [`Digester`] is one run's way of making digests. It compares a recorded digest in the
//! mode that made it ([`Digester::check`]): an Argon2id digest always can be, a keyed one
//! only when this run has that key (its passphrase, or the previous one during a rotation).
//!
//! Invariants: Argon2id runs only in the process's [`Engine`] (bounded memory, each digest
//! once); a passphrase is registered with [`crate::redact`] as soon as it is read and lives
//! only until its key is derived; keys are zeroed when dropped and never printed.

use std::fmt;
use std::sync::{Arc, LazyLock};

use hmac::{KeyInit, Mac};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::Secret;
use super::pool::{Engine, EngineStats, Pool};

/// The variable holding the secrets passphrase, unless the manifest's
/// `secrets.passphrase_env` names another.
pub const PASSPHRASE_VAR: &str = "TEEFORM_SECRETS_PASSPHRASE";
/// The passphrase state's digests were made with, while changing it (or leaving keyed mode):
/// digests are compared under it and made again under the new one, with no CVM restarted.
pub const PREVIOUS_PASSPHRASE_VAR: &str = "TEEFORM_PREVIOUS_SECRETS_PASSPHRASE";
/// The shortest passphrase accepted, in bytes: keyed digests are as strong as it is.
pub const MIN_PASSPHRASE_LEN: usize = 16;
/// `TEEFORM_BENCH_LEGACY_DIGESTS=1`: digests made as before issue 15 (fresh memory per
/// digest, no cache, no pool), for the benchmark suite's side-by-side figure only.
pub const BENCH_LEGACY_VAR: &str = "TEEFORM_BENCH_LEGACY_DIGESTS";

const ARGON2ID: &str = "argon2id:";
const KEYED: &str = "hmac-sha256:";

/// The process's Argon2id engine: one pool of working buffers, one cache.
static ENGINE: LazyLock<Arc<Engine>> = LazyLock::new(|| Arc::new(Engine::new(Pool::for_machine())));

/// What this process's Argon2id engine did so far (computations, cache hits, buffers).
pub fn stats() -> EngineStats {
    ENGINE.stats()
}

/// Logs (at debug) what this process's Argon2id engine did so far, `after` a step of the run:
/// tests read it to count digests per run.
pub fn log_stats(after: &str) {
    let s = stats();
    tracing::debug!(
        "secret digests after {after}: {} Argon2id computed, {} reused from the cache; at most {} of {} working buffers in use, {} allocated",
        s.computed,
        s.reused,
        s.pool.peak_live,
        s.pool.size,
        s.pool.created
    );
}

/// A key derived from a passphrase for one state. Zeroed when dropped; shows only its
/// fingerprint.
pub struct Key {
    bytes: Zeroizing<[u8; 32]>,
    fingerprint: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fingerprint)
    }
}

impl Key {
    /// One Argon2id of the passphrase, salted by the state's salt.
    fn derive(engine: &Engine, passphrase: &Secret, state_salt: &str) -> Key {
        let salt =
            Sha256::new().chain_update("teeform secrets key").chain_update([0]).chain_update(state_salt).finalize();
        let bytes = engine.derive(salt[..16].try_into().expect("16 bytes"), passphrase.expose().as_bytes());
        let fingerprint = hex::encode(&hmac_parts(bytes.as_slice(), &[b"teeform secrets key fingerprint"])[..8]);
        Key { bytes, fingerprint }
    }

    fn digest(&self, scope: &str, key: &str, value: &str) -> String {
        let mac = hmac_parts(self.bytes.as_slice(), &[scope.as_bytes(), &[0], key.as_bytes(), &[0], value.as_bytes()]);
        format!("{KEYED}{}:{}", self.fingerprint, hex::encode(mac))
    }
}

fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// How a digest was made, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made<'a> {
    Argon2id,
    /// Keyed, under the key with this fingerprint.
    Keyed(&'a str),
    /// Not a digest this version of teeform makes.
    Unknown,
}

impl<'a> Made<'a> {
    pub fn of(digest: &'a str) -> Made<'a> {
        if digest.starts_with(ARGON2ID) {
            Made::Argon2id
        } else if let Some(rest) = digest.strip_prefix(KEYED)
            && let Some((fp, _)) = rest.split_once(':')
        {
            Made::Keyed(fp)
        } else {
            Made::Unknown
        }
    }

    /// For people: `Argon2id (no passphrase)`, `the passphrase of key 0123456789abcdef`.
    pub fn describe(self) -> String {
        match self {
            Made::Argon2id => "Argon2id (no passphrase)".into(),
            Made::Keyed(fp) => format!("the passphrase of key {fp}"),
            Made::Unknown => "an unknown method".into(),
        }
    }
}

/// What comparing a value with a recorded digest found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Same,
    Different,
    /// The digest was made with a key this run does not have: the value cannot be compared.
    Unknown,
}

/// One value a plan will digest: [`Digester::prepare`] makes its digests ahead, in parallel.
pub struct Job<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    /// The digest state has for it, if any (compared in the mode that made it).
    pub recorded: Option<&'a str>,
}

/// One run's way of digesting secrets for one state: the mode, the keys it has, and the
/// process's Argon2id engine.
pub struct Digester {
    engine: Arc<Engine>,
    salt: String,
    key: Option<Key>,
    previous: Option<Key>,
    legacy: bool,
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester").field("key", &self.key).field("previous", &self.previous).finish_non_exhaustive()
    }
}

impl Digester {
    /// The default mode: Argon2id digests of each value, for the state with salt `salt`.
    pub fn argon2id(salt: &str) -> Digester {
        Digester { engine: ENGINE.clone(), salt: salt.to_string(), key: None, previous: None, legacy: false }
    }

    /// Keyed mode when `passphrase` is given (one Argon2id derivation), with the `previous`
    /// passphrase's key to compare digests made before a rotation.
    pub fn new(salt: &str, passphrase: Option<&Secret>, previous: Option<&Secret>) -> Digester {
        Digester::new_in(ENGINE.clone(), salt, passphrase, previous)
    }

    fn new_in(engine: Arc<Engine>, salt: &str, passphrase: Option<&Secret>, previous: Option<&Secret>) -> Digester {
        let key = passphrase.map(|p| Key::derive(&engine, p, salt));
        let previous = previous.map(|p| Key::derive(&engine, p, salt));
        Digester { engine, salt: salt.to_string(), key, previous, legacy: false }
    }

    /// Digests made as before issue 15 (see [`BENCH_LEGACY_VAR`]); Argon2id mode only.
    pub fn legacy(mut self) -> Digester {
        self.legacy = self.key.is_none();
        self
    }

    /// The state salt these digests are for.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// Whether this run has a passphrase (keyed mode).
    pub fn keyed(&self) -> bool {
        self.key.is_some()
    }

    /// This run's mode, for people (as [`Made::describe`]).
    pub fn describe(&self) -> String {
        match &self.key {
            Some(k) => Made::Keyed(&k.fingerprint).describe(),
            None => Made::Argon2id.describe(),
        }
    }

    /// The digest of `value`, the env `key` of `scope` (a CVM address, or the outputs' scope),
    /// in this run's mode. Argon2id digests come from the process's cache when made before.
    pub fn digest(&self, scope: &str, key: &str, value: &str) -> String {
        match &self.key {
            Some(k) => k.digest(scope, key, value),
            None => self.argon2id_digest(scope, key, value),
        }
    }

    fn argon2id_digest(&self, scope: &str, key: &str, value: &str) -> String {
        if self.legacy {
            return super::digest(&self.salt, scope, key, value);
        }
        format!("{ARGON2ID}{}", hex::encode(self.engine.hash(&self.argon2_salt(scope, key), value.as_bytes())))
    }

    /// Whether `recorded` was made in this run's mode (with this run's key).
    pub fn is_current(&self, recorded: &str) -> bool {
        match (Made::of(recorded), &self.key) {
            (Made::Argon2id, None) => true,
            (Made::Keyed(fp), Some(k)) => fp == k.fingerprint,
            _ => false,
        }
    }

    /// Compares `value` with `recorded` in the mode that made it.
    pub fn check(&self, recorded: &str, scope: &str, key: &str, value: &str) -> Check {
        let made = match Made::of(recorded) {
            Made::Argon2id => Some(self.argon2id_digest(scope, key, value)),
            Made::Keyed(fp) => [&self.key, &self.previous]
                .into_iter()
                .flatten()
                .find(|k| k.fingerprint == fp)
                .map(|k| k.digest(scope, key, value)),
            Made::Unknown => None,
        };
        match made {
            Some(d) if d == recorded => Check::Same,
            Some(_) => Check::Different,
            None => Check::Unknown,
        }
    }

    /// Makes ahead, on every core the engine's pool allows, the Argon2id digests that
    /// [`Digester::digest`] and [`Digester::check`] will need for `jobs`, so those answer
    /// from the cache. Nothing to do in keyed mode unless state has Argon2id digests.
    pub fn prepare(&self, jobs: &[Job]) {
        if self.legacy {
            return;
        }
        let needed: Vec<([u8; 16], &[u8])> = jobs
            .iter()
            .filter(|j| self.key.is_none() || j.recorded.is_some_and(|r| Made::of(r) == Made::Argon2id))
            .map(|j| (self.argon2_salt(j.scope, j.key), j.value.as_bytes()))
            .collect();
        self.engine.hash_all(&needed);
    }

    /// Salted per state and per (resource, key), so equal secrets in two places or two states
    /// give unrelated digests.
    fn argon2_salt(&self, scope: &str, key: &str) -> [u8; 16] {
        argon2_salt(&self.salt, scope, key)
    }
}

pub(super) fn argon2_salt(state_salt: &str, scope: &str, key: &str) -> [u8; 16] {
    let h = Sha256::new()
        .chain_update(state_salt)
        .chain_update([0])
        .chain_update(scope)
        .chain_update([0])
        .chain_update(key)
        .finalize();
    h[..16].try_into().expect("16 bytes")
}

/// Why the passphrases in the environment cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassphraseError {
    #[error("the manifest's `secrets.passphrase_env` names {var}, which is not set")]
    Missing { var: String },
    #[error("{var} has {len} bytes; a secrets passphrase needs at least {MIN_PASSPHRASE_LEN}")]
    TooShort { var: String, len: usize },
}

/// The run's [`Digester`] for the state with salt `salt`, from the environment: keyed mode
/// when the passphrase variable (`named` by the manifest, else [`PASSPHRASE_VAR`]) is set,
/// with [`PREVIOUS_PASSPHRASE_VAR`]'s key to compare older digests. Both passphrases are
/// registered with [`crate::redact`] as they are read.
pub fn from_env(
    salt: &str,
    named: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Digester, PassphraseError> {
    let read = |var: &str| -> Result<Option<Secret>, PassphraseError> {
        let Some(v) = env(var) else { return Ok(None) };
        crate::redact::secret(&v);
        let v = Secret::new(v);
        if v.expose().len() < MIN_PASSPHRASE_LEN {
            return Err(PassphraseError::TooShort { var: var.to_string(), len: v.expose().len() });
        }
        Ok(Some(v))
    };
    let var = named.unwrap_or(PASSPHRASE_VAR);
    let passphrase = read(var)?;
    if passphrase.is_none()
        && let Some(var) = named
    {
        return Err(PassphraseError::Missing { var: var.to_string() });
    }
    let previous = read(PREVIOUS_PASSPHRASE_VAR)?;
    let d = Digester::new(salt, passphrase.as_ref(), previous.as_ref());
    Ok(if env(BENCH_LEGACY_VAR).is_some_and(|v| v == "1") { d.legacy() } else { d })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Arc<Engine> {
        Arc::new(Engine::new(Pool::new(2)))
    }

    fn pass(s: &str) -> Secret {
        Secret::new(s.into())
    }

    #[test]
    fn argon2id_digests_are_unchanged_from_before_the_pool() {
        // Made by `secrets::digest` as it was before issue 15 (commit 350f03d, built on its
        // own): state written then keeps comparing equal.
        let salt = "0123456789abcdef0123456789abcdef";
        let before = "argon2id:079879c3297b4dd330c6978b7e632161a99c72908b23fc038d8ead0fcfc1a66a";
        assert_eq!(Digester::argon2id(salt).digest("cvm.web", "DB_PASSWORD", "hunter2"), before);
        assert_eq!(super::super::digest(salt, "cvm.web", "DB_PASSWORD", "hunter2"), before);
        let output = "argon2id:4d5906a2db81c1c6cd299337c6b23814b3979debb622777fcea170c393c6e907";
        assert_eq!(Digester::argon2id("00").digest("output", "dsn", "postgres://app:s3cret@db/app"), output);
        let d = Digester::argon2id("salt");
        assert_eq!(d.digest("cvm.web", "PW", "hunter2"), super::super::digest("salt", "cvm.web", "PW", "hunter2"));
        assert_eq!(d.legacy().digest("cvm.web", "PW", "x"), super::super::digest("salt", "cvm.web", "PW", "x"));
    }

    #[test]
    fn keyed_digests_name_their_key_and_depend_on_passphrase_salt_scope_and_value() {
        let e = engine();
        let a = Digester::new_in(e.clone(), "salt", Some(&pass("correct horse battery")), None);
        let d = a.digest("cvm.web", "PW", "hunter2");
        let fp = a.key.as_ref().unwrap().fingerprint.clone();
        assert_eq!(Made::of(&d), Made::Keyed(&fp));
        assert_eq!(fp.len(), 16);
        assert!(d.starts_with(&format!("hmac-sha256:{fp}:")) && d.len() == "hmac-sha256:".len() + 16 + 1 + 64, "{d}");
        assert_eq!(d, a.digest("cvm.web", "PW", "hunter2"));
        for other in [
            a.digest("cvm.web", "PW", "hunter3"),
            a.digest("cvm.api", "PW", "hunter2"),
            a.digest("cvm.web", "PX", "hunter2"),
            Digester::new_in(e.clone(), "salt2", Some(&pass("correct horse battery")), None)
                .digest("cvm.web", "PW", "hunter2"),
            Digester::new_in(e.clone(), "salt", Some(&pass("correct horse battery!")), None)
                .digest("cvm.web", "PW", "hunter2"),
        ] {
            assert_ne!(other, d);
        }
        // The passphrase and the key show nowhere.
        assert!(!format!("{a:?}").contains("correct") && !d.contains("hunter2"));
        // One derivation per passphrase, none per digest.
        assert_eq!(e.stats().computed, 3);
    }

    #[test]
    fn digests_are_compared_in_the_mode_that_made_them() {
        let e = engine();
        let (old, new) = (pass("the old passphrase!"), pass("the new passphrase!"));
        let plain = Digester::new_in(e.clone(), "s", None, None);
        let by_old = Digester::new_in(e.clone(), "s", Some(&old), None);
        let a2 = plain.digest("cvm.a", "K", "v");
        let k_old = by_old.digest("cvm.a", "K", "v");

        // Keyed, with the previous passphrase: both older kinds compare.
        let rotating = Digester::new_in(e.clone(), "s", Some(&new), Some(&old));
        for recorded in [&a2, &k_old] {
            assert!(!rotating.is_current(recorded));
            assert_eq!(rotating.check(recorded, "cvm.a", "K", "v"), Check::Same);
            assert_eq!(rotating.check(recorded, "cvm.a", "K", "w"), Check::Different);
        }
        assert!(rotating.is_current(&rotating.digest("cvm.a", "K", "v")));
        // Without the old passphrase its digests cannot be compared; Argon2id ones always can.
        let lost = Digester::new_in(e.clone(), "s", Some(&new), None);
        assert_eq!(lost.check(&k_old, "cvm.a", "K", "v"), Check::Unknown);
        assert_eq!(plain.check(&k_old, "cvm.a", "K", "v"), Check::Unknown);
        assert_eq!(lost.check(&a2, "cvm.a", "K", "v"), Check::Same);
        // Leaving keyed mode: the previous key compares, Argon2id is made.
        let leaving = Digester::new_in(e.clone(), "s", None, Some(&old));
        assert_eq!(leaving.check(&k_old, "cvm.a", "K", "v"), Check::Same);
        assert!(leaving.is_current(&a2) && !leaving.is_current(&k_old));
        assert_eq!(plain.check("sha1:abc", "cvm.a", "K", "v"), Check::Unknown);
    }

    #[test]
    fn prepare_makes_each_needed_argon2id_digest_once_in_parallel() {
        let e = engine();
        let d = Digester::new_in(e.clone(), "s", None, None);
        let values: Vec<String> = (0..6).map(|i| format!("v{i}")).collect();
        let jobs: Vec<Job> = values.iter().map(|v| Job { scope: "cvm.a", key: v, value: v, recorded: None }).collect();
        d.prepare(&jobs);
        assert_eq!(e.stats().computed, 6);
        for v in &values {
            d.digest("cvm.a", v, v);
        }
        assert_eq!(e.stats().computed, 6, "the plan's digests came from the cache");
        assert!(e.stats().pool.peak_live <= 2);

        // Keyed mode computes Argon2id only to compare digests state made with it.
        let keyed = Digester::new_in(e.clone(), "s", Some(&pass("a long passphrase here")), None);
        let before = e.stats().computed;
        let recorded = d.digest("cvm.b", "K", "x");
        let jobs = [
            Job { scope: "cvm.b", key: "K", value: "x", recorded: Some(&recorded) },
            Job { scope: "cvm.c", key: "K", value: "y", recorded: None },
        ];
        keyed.prepare(&jobs);
        assert_eq!(e.stats().computed, before + 1);
        assert_eq!(keyed.check(&recorded, "cvm.b", "K", "x"), Check::Same);
        assert_eq!(e.stats().computed, before + 1);
    }

    #[test]
    fn passphrases_come_from_the_environment_checked_and_redacted() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert!(!from_env("s", None, &env(&[])).unwrap().keyed());
        let d = from_env("s", None, &env(&[(PASSPHRASE_VAR, "a-passphrase-of-len-24!!")])).unwrap();
        assert!(d.keyed());
        assert_eq!(crate::redact::text("leak a-passphrase-of-len-24!! here"), "leak <redacted> here");
        let named = env(&[("MY_PASS", "another-long-passphrase"), (PASSPHRASE_VAR, "not-this-one-though")]);
        let d = from_env("s", Some("MY_PASS"), &named).unwrap();
        let want = Digester::new("s", Some(&pass("another-long-passphrase")), None);
        assert_eq!(d.digest("cvm.a", "K", "v"), want.digest("cvm.a", "K", "v"));
        assert_eq!(
            from_env("s", Some("MY_PASS"), &env(&[])).unwrap_err(),
            PassphraseError::Missing { var: "MY_PASS".into() }
        );
        let short = from_env("s", None, &env(&[(PASSPHRASE_VAR, "")])).unwrap_err();
        assert_eq!(short.to_string(), "TEEFORM_SECRETS_PASSPHRASE has 0 bytes; a secrets passphrase needs at least 16");
        assert!(from_env("s", None, &env(&[(PREVIOUS_PASSPHRASE_VAR, "short")])).is_err());
        let leaving = from_env("s", None, &env(&[(PREVIOUS_PASSPHRASE_VAR, "the-old-passphrase-1")])).unwrap();
        assert!(!leaving.keyed() && leaving.previous.is_some());
    }
}
