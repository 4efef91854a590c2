//! Knowing that a local state is whole: the seal, and the backup kept beside it.
//!
//! The **seal** records, for the records of each kind (resources, outputs, journal entries),
//! how many there are and the sum of their digests, plus the state's lineage, serial, a count
//! of every write, and the state's format version. It is updated in the same transaction as the
//! records (adding and subtracting one record's digest costs the same at any state size), and
//! copied after every commit to `seal.json` beside the database. On open the records are
//! counted and summed again and compared with both: fewer records, a changed record, or a
//! database older than its last write (which is what a damaged log recovering to an earlier
//! point looks like) is [`StateError::Damaged`](super::StateError::Damaged), never a smaller
//! state read without a word.
//!
//! The **backup** (`backup.json`) is a copy of the last state found whole: written when a
//! state is opened and found whole while the copy is older, and when a command that wrote closes.
//! `teeform state recover` puts it back. Its first line names the SHA-256 of the rest, so a
//! damaged copy is never restored.
//!
//! The PostgreSQL backend keeps the same [`Seal`] and [`Backup`] in rows of its own (see
//! `postgres.rs`), counted over the rows as PostgreSQL prints them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{JournalEntry, Meta, Snapshot};
use crate::model::{OutputValue, ResourceRecord};

/// The format the local state's records are written in. 0: before teeform kept a seal (read,
/// and sealed on first open); 1: sealed. A state in a newer format is refused, not misread.
pub const FORMAT: u32 = 1;

pub const SEAL_FILE: &str = "seal.json";
pub const BACKUP_FILE: &str = "backup.json";

/// Count and digest sum of a set of (key, value) records. Order-independent, so one record
/// can be added or taken out without reading the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    #[serde(with = "hex_lanes")]
    pub sum: [u64; 4],
}

fn digest(key: &[u8], value: &[u8]) -> [u64; 4] {
    let h =
        Sha256::new().chain_update((key.len() as u64).to_le_bytes()).chain_update(key).chain_update(value).finalize();
    let mut lanes = [0u64; 4];
    for (i, lane) in lanes.iter_mut().enumerate() {
        *lane = u64::from_le_bytes(h[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    }
    lanes
}

impl Tally {
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let d = digest(key, value);
        self.count = self.count.wrapping_add(1);
        for (s, x) in self.sum.iter_mut().zip(d) {
            *s = s.wrapping_add(x);
        }
    }

    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        let d = digest(key, value);
        self.count = self.count.wrapping_sub(1);
        for (s, x) in self.sum.iter_mut().zip(d) {
            *s = s.wrapping_sub(x);
        }
    }
}

mod hex_lanes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u64; 4], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.iter().map(|x| format!("{x:016x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; 4], D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("expected 64 hex digits");
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u64; 4];
        for (i, lane) in out.iter_mut().enumerate() {
            *lane = u64::from_str_radix(&s[i * 16..i * 16 + 16], 16).map_err(|_| bad())?;
        }
        Ok(out)
    }
}

/// What a whole local state holds, in counts and digests (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub format: u32,
    pub lineage: String,
    pub serial: u64,
    /// Every commit counts, journal-only ones too.
    pub writes: u64,
    pub resources: Tally,
    pub outputs: Tally,
    pub journal: Tally,
}

impl Seal {
    /// How `found` (counted from the records) differs from this seal, in words; `None` if not.
    pub fn differs(&self, found: &Seal) -> Option<String> {
        let kinds = [
            ("resource", self.resources, found.resources),
            ("output", self.outputs, found.outputs),
            ("journal entry", self.journal, found.journal),
        ];
        for (what, want, got) in kinds {
            if want.count != got.count {
                return Some(format!("it holds {} {what} record(s) where {} were written", got.count, want.count));
            }
            if want.sum != got.sum {
                return Some(format!("one of its {what} records differs from what was written"));
            }
        }
        if self.lineage != found.lineage || self.serial != found.serial {
            return Some(format!(
                "its lineage and serial ({} #{}) differ from what was written ({} #{})",
                found.lineage, found.serial, self.lineage, self.serial
            ));
        }
        None
    }
}

/// Reads `seal.json`: `Ok(None)` if absent, `Err` (a reason) if it cannot be read.
pub fn read_seal(dir: &Path) -> Result<Option<Seal>, String> {
    let path = dir.join(SEAL_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{} is unreadable ({e})", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {}", path.display(), super::io_reason(&e))),
    }
}

pub fn write_seal(dir: &Path, seal: &Seal) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(seal).map_err(|e| e.to_string())?;
    write_atomic(&dir.join(SEAL_FILE), &bytes)
}

/// Writes `bytes` to `path` through a temporary file renamed over it, both synced: the file is
/// either the old or the new one after a crash. Errors name the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let fail = |p: &Path, e: std::io::Error| format!("cannot write {}: {}", p.display(), super::io_reason(&e));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(&tmp, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| fail(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(path, e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The copy of a whole state that `backup.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub format: u32,
    /// When the copy was taken (RFC 3339).
    pub written_at: String,
    /// The seal of the state copied (its `writes` says how recent the copy is).
    pub seal: Seal,
    pub meta: Meta,
    pub resources: BTreeMap<crate::model::Address, ResourceRecord>,
    pub outputs: BTreeMap<String, OutputValue>,
    pub journal: Vec<JournalEntry>,
}

/// The first line of `backup.json`: enough to tell whether the copy is current without
/// reading (or trusting) the rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    teeform_state_backup: u32,
    /// SHA-256 of everything after the first line.
    sha256: String,
    /// The seal of the state copied.
    pub seal: Seal,
}

impl Backup {
    pub fn of(seal: &Seal, snapshot: &Snapshot, journal: &[JournalEntry]) -> Backup {
        Backup {
            format: FORMAT,
            written_at: crate::model::now_rfc3339(),
            seal: seal.clone(),
            meta: snapshot.meta.clone(),
            resources: snapshot.resources.clone(),
            outputs: snapshot.outputs.clone(),
            journal: journal.to_vec(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { meta: self.meta.clone(), resources: self.resources.clone(), outputs: self.outputs.clone() }
    }
}

pub fn write_backup(dir: &Path, backup: &Backup) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(backup).map_err(|e| e.to_string())?;
    let header =
        BackupHeader { teeform_state_backup: 1, sha256: hex::encode(Sha256::digest(&body)), seal: backup.seal.clone() };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    write_atomic(&dir.join(BACKUP_FILE), &bytes)
}

/// The header of `backup.json` (its first line only), if there is a readable one. Whether the
/// rest is whole is checked by [`read_backup`], before anything is restored from it.
pub fn read_backup_header(dir: &Path) -> Option<BackupHeader> {
    use std::io::BufRead;
    let f = std::fs::File::open(dir.join(BACKUP_FILE)).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f).take(64 * 1024).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// Reads `backup.json`: `Ok(None)` if there is none; `Err` (a reason) if it is damaged.
pub fn read_backup(dir: &Path) -> Result<Option<Backup>, String> {
    let path = dir.join(BACKUP_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), super::io_reason(&e))),
    };
    let damaged = |why: &str| format!("{} is damaged ({why})", path.display());
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| damaged("no header line"))?;
    let header: BackupHeader = serde_json::from_slice(&bytes[..nl]).map_err(|_| damaged("unreadable header"))?;
    let body = &bytes[nl + 1..];
    if hex::encode(Sha256::digest(body)) != header.sha256 {
        return Err(damaged("its checksum does not match"));
    }
    let backup: Backup = serde_json::from_slice(body).map_err(|e| damaged(&e.to_string()))?;
    if backup.seal != header.seal {
        return Err(damaged("its header and contents disagree"));
    }
    if backup.format > FORMAT {
        return Err(format!("{} was written by a newer teeform (state format {})", path.display(), backup.format));
    }
    Ok(Some(backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_the_same_whatever_the_order_and_forgets_what_is_removed() {
        let mut a = Tally::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = Tally::default();
        b.add(b"k2", b"v2");
        b.add(b"k3", b"v3");
        b.add(b"k1", b"v1");
        b.remove(b"k3", b"v3");
        assert_eq!(a, b);
        let mut c = a;
        c.remove(b"k1", b"v1");
        c.add(b"k1", b"v1 changed");
        assert_eq!(c.count, a.count);
        assert_ne!(c.sum, a.sum, "a changed value changes the sum");
        // Key and value are not confused: ("ab", "c") is not ("a", "bc").
        let (mut x, mut y) = (Tally::default(), Tally::default());
        x.add(b"ab", b"c");
        y.add(b"a", b"bc");
        assert_ne!(x, y);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Tally>(&json).unwrap(), a);
    }

    #[test]
    fn a_damaged_backup_is_never_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_backup(dir.path()).unwrap(), None);
        let seal = Seal {
            format: FORMAT,
            lineage: "l".into(),
            serial: 3,
            writes: 9,
            resources: Tally::default(),
            outputs: Tally::default(),
            journal: Tally::default(),
        };
        let snap = Snapshot { meta: Meta::fresh(), resources: BTreeMap::new(), outputs: BTreeMap::new() };
        let b = Backup::of(&seal, &snap, &[]);
        write_backup(dir.path(), &b).unwrap();
        assert_eq!(read_backup(dir.path()).unwrap(), Some(b));
        let path = dir.path().join(BACKUP_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 5;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_backup(dir.path()).unwrap_err().contains("checksum does not match"));
        std::fs::write(&path, b"").unwrap();
        assert!(read_backup(dir.path()).is_err());
    }
}
