//! DCAP collateral for a TDX quote's platform, from a PCCS ([`crate::providers::pccs`]),
//! cached by the platform it is for.
//!
//! Collateral is public and signed by Intel, so a cache cannot forge it (a stale or altered
//! entry fails verification, never passes it). It is kept in memory for the run and on disk
//! under `$XDG_CACHE_HOME/teeform/dcap` (else `~/.cache/teeform/dcap`), one file per PCCS,
//! TEE, FMSPC and CA, until the earliest `nextUpdate` of its TCB info and QE identity or a
//! day after it was fetched, whichever is first, so revocations reach the next day's runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use dcap_qvl::QuoteCollateralV3;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::providers::pccs::PccsClient;

/// How long a cached entry is used at most, whatever its `nextUpdate` says.
const MAX_AGE_SECS: u64 = 86_400;

/// A platform's collateral from one PCCS: fetched once per run and platform, cached on disk
/// until it expires.
pub struct Collateral {
    pccs: PccsClient,
    /// Where entries are kept; `None`: memory only.
    dir: Option<PathBuf>,
    memory: Mutex<BTreeMap<String, Entry>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    /// Unix seconds after which it is fetched again.
    expires: u64,
    collateral: QuoteCollateralV3,
}

impl Collateral {
    /// Collateral from `pccs`, cached under `dir`.
    pub fn new(pccs: PccsClient, dir: Option<PathBuf>) -> Self {
        Collateral { pccs, dir, memory: Mutex::default() }
    }

    /// The default cache directory: `$XDG_CACHE_HOME/teeform/dcap`, else `~/.cache/teeform/dcap`.
    pub fn default_dir(get: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        match nonempty("XDG_CACHE_HOME") {
            Some(x) => Some(PathBuf::from(x)),
            None => nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")),
        }
        .map(|d| d.join("teeform").join("dcap"))
    }

    /// The PCCS, as shown to people.
    pub fn base(&self) -> &str {
        self.pccs.base()
    }

    /// The collateral for a TD on the platform `fmspc` whose PCK certificate `ca` issued,
    /// current at `now` (Unix seconds): from memory, the disk cache, or the PCCS.
    pub async fn get(&self, fmspc: &str, ca: &str, now: u64) -> Result<QuoteCollateralV3, String> {
        let key = format!("{}-tdx-{fmspc}-{ca}", hex::encode(&Sha256::digest(self.base().as_bytes())[..8]));
        if let Some(e) = self.memory.lock().expect("collateral lock").get(&key).filter(|e| e.expires > now) {
            return Ok(e.collateral.clone());
        }
        let file = self.dir.as_ref().map(|d| d.join(format!("{key}.json")));
        let cached = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            .filter(|e| e.expires > now);
        let entry = match cached {
            Some(e) => e,
            None => {
                let collateral = self.pccs.collateral(fmspc, ca).await?;
                let entry = Entry { expires: expiry(&collateral, now), collateral };
                if let Some(f) = &file
                    && let Err(e) = write_atomic(f, &serde_json::to_vec(&entry).unwrap_or_default())
                {
                    tracing::debug!(path = %f.display(), error = %e, "cannot cache DCAP collateral");
                }
                entry
            }
        };
        let out = entry.collateral.clone();
        self.memory.lock().expect("collateral lock").insert(key, entry);
        Ok(out)
    }
}

/// When collateral fetched at `now` stops being used: its first `nextUpdate`, at most a day on.
fn expiry(c: &QuoteCollateralV3, now: u64) -> u64 {
    let next = |doc: &str| -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(doc).ok()?;
        let t: jiff::Timestamp = v.get("nextUpdate")?.as_str()?.parse().ok()?;
        u64::try_from(t.as_second()).ok()
    };
    [next(&c.tcb_info), next(&c.qe_identity), Some(now.saturating_add(MAX_AGE_SECS))]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now)
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLATERAL: &str = include_str!("../../tests/fixtures/dcap/tdx_quote_collateral.json");

    #[test]
    fn an_entry_expires_at_its_first_next_update_or_a_day_on() {
        let c: QuoteCollateralV3 = serde_json::from_str(COLLATERAL).unwrap();
        // TCB info's nextUpdate 2025-07-19T10:16:03Z comes before the QE identity's (10:32:27).
        let next_update = 1_752_920_163;
        assert_eq!(expiry(&c, next_update - 10 * 86_400), next_update - 9 * 86_400);
        assert_eq!(expiry(&c, next_update - 3600), next_update);
    }

    #[test]
    fn the_cache_directory_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let d = Collateral::default_dir(&env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]));
        assert_eq!(d, Some(PathBuf::from("/x/teeform/dcap")));
        assert_eq!(Collateral::default_dir(&env(&[("HOME", "/h")])), Some(PathBuf::from("/h/.cache/teeform/dcap")));
        assert_eq!(Collateral::default_dir(&env(&[("XDG_CACHE_HOME", " ")])), None);
    }
}
