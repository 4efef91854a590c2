//! The default backend: an embedded sled database under the state directory.
//!
//! Locking: sled takes an exclusive OS file lock on its database for as long as it is open,
//! so the lock is held exactly while a teeform process has the state open, and is released by
//! the OS if that process dies. `holder.json` beside it only names the holder for messages.
//!
//! Integrity ([`super::integrity`]): every commit updates the seal in the same transaction and
//! then `seal.json`; opening counts and sums the records again and compares. A damaged state
//! is refused with [`StateError::Damaged`]; `backup.json` keeps the last whole state for
//! `teeform state recover`. A commit first checks that the database directory is still the
//! one it opened, so a state directory removed under a running apply fails the run.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::integrity::{self, Backup, FORMAT, Seal, Tally};
use super::{BackupInfo, Batch, JournalEntry, LockInfo, Meta, OpenOptions, Snapshot, StateError, Store, io_reason};
use crate::model::{OutputValue, ResourceRecord};

const META_KEY: &[u8] = b"meta";
const SEAL_KEY: &[u8] = b"seal";
const OUTPUTS_KEY: &[u8] = b"outputs";
const HOLDER_FILE: &str = "holder.json";
/// sled's own directory under the state directory.
const DB_DIR: &str = "sled";

pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    resources: sled::Tree,
    outputs: sled::Tree,
    journal: sled::Tree,
    lock_id: String,
    /// The database directory's (device, inode) when opened.
    identity: (u64, u64),
    /// Whether this process committed anything (the backup is then refreshed at close).
    wrote: AtomicBool,
    /// The `writes` of the newest seal written to `seal.json` by this process; held while
    /// writing it, so concurrent commits never interleave and an older seal never lands last.
    sealed: Arc<Mutex<u64>>,
}

fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
}

/// A sled error in words, naming the database directory; corruption is damage, not a bug.
fn sled_err(dir: &Path, e: sled::Error) -> StateError {
    match e {
        // sled creates what a new database needs; a file missing later was lost.
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            damaged(dir, "a file of its database is missing".into())
        }
        sled::Error::Io(io) => StateError::Storage(format!(
            "cannot use the state database in {}: {}",
            dir.join(DB_DIR).display(),
            io_reason(&io)
        )),
        sled::Error::Corruption { .. } => damaged(dir, "its database holds corrupt data".into()),
        other => StateError::Storage(format!("the state database in {}: {other}", dir.join(DB_DIR).display())),
    }
}

fn tx_err(dir: &Path, e: TransactionError<String>) -> StateError {
    match e {
        TransactionError::Abort(problem) => damaged(dir, problem),
        TransactionError::Storage(e) => sled_err(dir, e),
    }
}

/// A [`StateError::Damaged`] naming the backup to recover from, if there is a whole one.
pub(super) fn damaged(dir: &Path, problem: String) -> StateError {
    let backup = integrity::read_backup(dir).ok().flatten().map(|b| BackupInfo {
        path: dir.join(integrity::BACKUP_FILE).display().to_string(),
        serial: b.meta.serial,
        written_at: b.written_at.clone(),
        resources: b.resources.len(),
    });
    StateError::Damaged { path: dir.display().to_string(), problem, backup }
}

pub(super) fn read_holder(dir: &Path) -> Option<LockInfo> {
    let text = std::fs::read_to_string(dir.join(HOLDER_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn force_unlock(dir: &Path, id: &str) -> Result<(), StateError> {
    match read_holder(dir) {
        Some(h) if h.id == id => {
            // If the holder still runs, the OS lock stays with it and this only forgets its name.
            if SledStore::is_locked(dir) {
                return Err(StateError::Locked { path: dir.display().to_string(), holder: Some(h) });
            }
            std::fs::remove_file(dir.join(HOLDER_FILE)).map_err(|e| {
                StateError::Storage(format!("cannot remove {}: {}", dir.join(HOLDER_FILE).display(), io_reason(&e)))
            })
        }
        _ => Err(StateError::NoSuchLock(id.to_string())),
    }
}

pub(super) fn exists(dir: &Path) -> bool {
    dir.join(DB_DIR).is_dir()
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir.join(DB_DIR)).ok().map(|m| (m.dev(), m.ino()))
}

/// Counts and sums every record (see [`integrity`]), with the identity `meta` gives.
fn count(dir: &Path, trees: [&sled::Tree; 3], meta: &Meta, writes: u64) -> Result<Seal, StateError> {
    let tally = |t: &sled::Tree| -> Result<Tally, StateError> {
        let mut out = Tally::default();
        for kv in t.iter() {
            let (k, v) = kv.map_err(|e| sled_err(dir, e))?;
            out.add(&k, &v);
        }
        Ok(out)
    };
    Ok(Seal {
        format: FORMAT,
        lineage: meta.lineage.clone(),
        serial: meta.serial,
        writes,
        resources: tally(trees[0])?,
        outputs: tally(trees[1])?,
        journal: tally(trees[2])?,
    })
}

/// Whether opening should refresh `backup.json` (not while recovering from it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Backup,
    Nothing,
}

impl SledStore {
    fn config(dir: &Path) -> sled::Config {
        // The cache bounds memory, not data size; state records are small.
        sled::Config::new().path(dir.join(DB_DIR)).cache_capacity(32 * 1024 * 1024)
    }

    fn is_locked(dir: &Path) -> bool {
        if !dir.join(DB_DIR).exists() {
            return false;
        }
        match Self::config(dir).open() {
            Ok(_) => false,
            Err(e) => e.to_string().contains("could not acquire lock"),
        }
    }

    /// Opens sled in `dir`, waiting up to `lock_timeout` for its lock.
    async fn open_db(dir: &Path, lock_timeout: Duration) -> Result<sled::Db, StateError> {
        let deadline = Instant::now() + lock_timeout;
        loop {
            let cfg = Self::config(dir);
            // A damaged database can make sled panic while it recovers; that is damage too.
            match tokio::task::spawn_blocking(move || cfg.open()).await {
                Ok(Ok(db)) => return Ok(db),
                Ok(Err(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StateError::Locked { path: dir.display().to_string(), holder: read_holder(dir) });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(e)) => return Err(sled_err(dir, e)),
                Err(_) => return Err(damaged(dir, "its database cannot be read back".into())),
            }
        }
    }

    /// Opens the state in `opts.dir`, checks it is whole (or creates it), and keeps a backup.
    pub async fn open(opts: &OpenOptions) -> Result<SledStore, StateError> {
        Self::open_with(opts, Refresh::Backup).await
    }

    async fn open_with(opts: &OpenOptions, refresh: Refresh) -> Result<SledStore, StateError> {
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| {
            StateError::Storage(format!("cannot create state directory {}: {}", dir.display(), io_reason(&e)))
        })?;
        restrict(&dir);
        let db = Self::open_db(&dir, opts.lock_timeout).await?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| sled_err(&dir, e));
        let store = SledStore {
            meta: tree("meta")?,
            resources: tree("resources")?,
            outputs: tree("outputs")?,
            journal: tree("journal")?,
            identity: identity(&dir).unwrap_or_default(),
            db,
            dir: dir.clone(),
            lock_id: opts.lock.id.clone(),
            wrote: AtomicBool::new(false),
            sealed: Arc::new(Mutex::new(0)),
        };
        let seal = store.check().await?;
        if refresh == Refresh::Backup {
            store.keep_backup(&seal, false).await?;
        }
        let holder = serde_json::to_vec_pretty(&opts.lock).map_err(storage)?;
        integrity::write_atomic(&dir.join(HOLDER_FILE), &holder).map_err(StateError::Storage)?;
        Ok(store)
    }

    fn trees(&self) -> [&sled::Tree; 3] {
        [&self.resources, &self.outputs, &self.journal]
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, key: &[u8], what: &str) -> Result<Option<T>, StateError> {
        match self.meta.get(key).map_err(|e| sled_err(&self.dir, e))? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|_| damaged(&self.dir, format!("its {what} record cannot be read"))),
        }
    }

    /// Checks that the state is whole against its seal and `seal.json`, sealing a new state or
    /// one written before teeform kept seals. Returns the seal.
    async fn check(&self) -> Result<Seal, StateError> {
        let dir = &self.dir;
        let meta: Option<Meta> = self.get_json(META_KEY, "identity (lineage and serial)")?;
        let seal: Option<Seal> = self.get_json(SEAL_KEY, "seal")?;
        let outside = integrity::read_seal(dir).map_err(|p| damaged(dir, p))?;
        let empty = self.trees().iter().all(|t| t.is_empty());
        let (meta, seal) = match (meta, seal) {
            (None, None) if empty && outside.is_none() => {
                let meta = Meta::fresh();
                let seal = count(dir, self.trees(), &meta, 0)?;
                return self.seal_new(&meta, seal).await;
            }
            (None, _) => return Err(damaged(dir, "its identity record (lineage and serial) is missing".into())),
            (Some(meta), None) => {
                if outside.is_some() {
                    return Err(damaged(dir, "its database has lost its seal: it is older than seal.json".into()));
                }
                // Written before teeform kept seals (state format 0): seal it as it is.
                let seal = count(dir, self.trees(), &meta, 0)?;
                return self.seal_new(&meta, seal).await;
            }
            (Some(meta), Some(seal)) => (meta, seal),
        };
        if seal.format > FORMAT {
            return Err(StateError::TooNew { path: dir.display().to_string(), format: seal.format, supported: FORMAT });
        }
        if let Some(problem) = seal.differs(&count(dir, self.trees(), &meta, seal.writes)?) {
            return Err(damaged(dir, problem));
        }
        match outside {
            None if seal.writes == 0 => self.write_seal(&seal).await?,
            None => {
                return Err(damaged(
                    dir,
                    format!("{} is missing, so it cannot be told whether writes were lost", integrity::SEAL_FILE),
                ));
            }
            Some(o) if o.lineage != seal.lineage => {
                return Err(damaged(
                    dir,
                    format!("{} belongs to another state (lineage {})", integrity::SEAL_FILE, o.lineage),
                ));
            }
            Some(o) if o.writes > seal.writes => {
                return Err(damaged(
                    dir,
                    format!(
                        "its database is older than its last write: {} of {} writes are there (serial {} of {})",
                        seal.writes, o.writes, seal.serial, o.serial
                    ),
                ));
            }
            Some(o) if o.writes == seal.writes && o != seal => {
                return Err(damaged(dir, format!("its database and {} disagree", integrity::SEAL_FILE)));
            }
            // A run stopped between a commit and writing seal.json: the database is the newer.
            Some(o) if o.writes < seal.writes => self.write_seal(&seal).await?,
            Some(_) => {}
        }
        // A backup newer than the database also means writes were lost.
        if let Some(b) = integrity::read_backup_header(dir)
            && b.seal.lineage == seal.lineage
            && b.seal.writes > seal.writes
        {
            return Err(damaged(
                dir,
                format!("its database is older than its backup (write {} of {})", seal.writes, b.seal.writes),
            ));
        }
        Ok(seal)
    }

    /// Writes `meta` (if new) and `seal` into the database and `seal.json`.
    async fn seal_new(&self, meta: &Meta, seal: Seal) -> Result<Seal, StateError> {
        let m = serde_json::to_vec(meta).map_err(storage)?;
        let s = serde_json::to_vec(&seal).map_err(storage)?;
        self.meta.insert(META_KEY, m).map_err(|e| sled_err(&self.dir, e))?;
        self.meta.insert(SEAL_KEY, s).map_err(|e| sled_err(&self.dir, e))?;
        flush(&self.db, &self.dir).await?;
        self.write_seal(&seal).await?;
        Ok(seal)
    }

    /// Writes `seal.json` unless this process already wrote a newer one.
    async fn write_seal(&self, seal: &Seal) -> Result<(), StateError> {
        let (sealed, dir, seal) = (self.sealed.clone(), self.dir.clone(), seal.clone());
        tokio::task::spawn_blocking(move || {
            let mut last = sealed.lock().expect("seal lock");
            if seal.writes < *last {
                return Ok(());
            }
            integrity::write_seal(&dir, &seal).map_err(StateError::Storage)?;
            *last = seal.writes;
            Ok(())
        })
        .await
        .map_err(storage)?
    }

    /// Refreshes `backup.json` from the state as it is now, unless it already holds this write
    /// (`force`: also then, e.g. after a recovery reused the write count).
    async fn keep_backup(&self, seal: &Seal, force: bool) -> Result<(), StateError> {
        if !force && integrity::read_backup_header(&self.dir).is_some_and(|b| b.seal == *seal) {
            return Ok(());
        }
        let backup = Backup::of(seal, &self.snapshot().await?, &self.journal().await?);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || integrity::write_backup(&dir, &backup))
            .await
            .map_err(storage)?
            .map_err(StateError::Storage)
    }

    fn read_meta(&self) -> Result<Meta, StateError> {
        self.get_json(META_KEY, "identity (lineage and serial)")?
            .ok_or_else(|| damaged(&self.dir, "its identity record (lineage and serial) is missing".into()))
    }

    fn read_seal(&self) -> Result<Seal, StateError> {
        self.get_json(SEAL_KEY, "seal")?.ok_or_else(|| damaged(&self.dir, "its seal is missing".into()))
    }

    /// Refuses to write once the database directory is gone or another one is in its place.
    fn still_there(&self) -> Result<(), StateError> {
        match identity(&self.dir) {
            Some(id) if id == self.identity => Ok(()),
            _ => Err(StateError::Vanished { path: self.dir.display().to_string() }),
        }
    }
}

/// What `teeform state recover` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The backup put back (`None`: the database was kept as it is and sealed again).
    pub from_backup: Option<BackupInfo>,
    /// Where what was replaced was kept, in words (a directory, or a PostgreSQL table).
    pub set_aside: Option<String>,
    pub serial: u64,
    pub resources: usize,
    pub journal: usize,
}

impl SledStore {
    /// `teeform state recover`: puts `backup.json` back (the damaged database and seal moved
    /// to `damaged-TIME/`), or with `keep_current` accepts the database as it is and seals it
    /// again. The serial moves past every serial the state had, so saved plans made against
    /// the damaged state are refused.
    pub(super) async fn recover(opts: &OpenOptions, keep_current: bool) -> Result<Recovered, StateError> {
        let dir = opts.dir.clone();
        let cannot = |why: String| StateError::Storage(format!("cannot recover the state at {}: {why}", dir.display()));
        if keep_current {
            return Self::reseal(opts).await.map_err(|e| match e {
                StateError::Damaged { problem, .. } => {
                    cannot(format!("{problem}; `teeform state recover` (without --keep-current) puts back the backup"))
                }
                other => other,
            });
        }
        let backup = integrity::read_backup(&dir)
            .map_err(cannot)?
            .ok_or_else(|| cannot(format!("there is no {} to recover from", integrity::BACKUP_FILE)))?;
        // Whoever holds the lock may be using the state: never pull it from under them.
        if dir.join(DB_DIR).exists() {
            match Self::open_db(&dir, opts.lock_timeout).await {
                Ok(db) => drop(db),
                Err(e @ StateError::Locked { .. }) => return Err(e),
                Err(_) => {}
            }
        }
        let old_serial = integrity::read_seal(&dir).ok().flatten().map_or(0, |s| s.serial);
        let stamp = crate::model::now_rfc3339().replace(':', "");
        let aside = dir.join(format!("damaged-{stamp}"));
        let move_err =
            |from: &Path, e: std::io::Error| cannot(format!("cannot move {}: {}", from.display(), io_reason(&e)));
        std::fs::create_dir_all(&aside).map_err(|e| move_err(&aside, e))?;
        for name in [DB_DIR, integrity::SEAL_FILE] {
            let from = dir.join(name);
            if from.exists() {
                std::fs::rename(&from, aside.join(name)).map_err(|e| move_err(&from, e))?;
            }
        }
        let store = Self::open_with(opts, Refresh::Nothing).await?;
        let mut snapshot = backup.snapshot();
        snapshot.meta.serial = snapshot.meta.serial.max(old_serial) + 1;
        store.restore(&snapshot, &backup.journal).await?;
        store.keep_backup(&store.read_seal()?, true).await?;
        store.close().await?;
        Ok(Recovered {
            from_backup: Some(BackupInfo {
                path: dir.join(integrity::BACKUP_FILE).display().to_string(),
                serial: backup.meta.serial,
                written_at: backup.written_at.clone(),
                resources: backup.resources.len(),
            }),
            set_aside: Some(aside.display().to_string()),
            serial: snapshot.meta.serial,
            resources: snapshot.resources.len(),
            journal: backup.journal.len(),
        })
    }

    /// Seals the database as it is, once every record in it reads back.
    async fn reseal(opts: &OpenOptions) -> Result<Recovered, StateError> {
        let dir = opts.dir.clone();
        let db = Self::open_db(&dir, opts.lock_timeout).await?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| sled_err(&dir, e));
        let store = SledStore {
            meta: tree("meta")?,
            resources: tree("resources")?,
            outputs: tree("outputs")?,
            journal: tree("journal")?,
            identity: identity(&dir).unwrap_or_default(),
            db,
            dir: dir.clone(),
            lock_id: opts.lock.id.clone(),
            wrote: AtomicBool::new(false),
            sealed: Arc::new(Mutex::new(0)),
        };
        let mut meta = store.read_meta()?;
        let snapshot = store.snapshot().await?;
        let journal = store.journal().await?;
        let inside = store.get_json::<Seal>(SEAL_KEY, "seal").ok().flatten();
        let outside = integrity::read_seal(&dir).ok().flatten();
        let serial = [inside.as_ref().map(|s| s.serial), outside.as_ref().map(|s| s.serial)].into_iter().flatten();
        let writes = [inside.map(|s| s.writes), outside.map(|s| s.writes)].into_iter().flatten();
        meta.serial = serial.chain([meta.serial]).max().unwrap_or(0) + 1;
        let seal = count(&dir, store.trees(), &meta, writes.max().unwrap_or(0) + 1)?;
        let seal = store.seal_new(&meta, seal).await?;
        store.keep_backup(&seal, true).await?;
        store.close().await?;
        Ok(Recovered {
            from_backup: None,
            set_aside: None,
            serial: meta.serial,
            resources: snapshot.resources.len(),
            journal: journal.len(),
        })
    }
}

/// Makes everything written so far durable. Not `flush_async`: that runs the flush on sled's
/// own small I/O pool, where concurrent flushes (one per step of a parallel apply) can occupy
/// every thread waiting for a log write that is queued behind them on the same pool, and hang.
/// A blocking flush waits on tokio's blocking pool and leaves sled's pool free to write.
async fn flush(db: &sled::Db, dir: &Path) -> Result<(), StateError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush()).await.map_err(storage)?.map_err(|e| sled_err(dir, e))?;
    Ok(())
}

/// State directories hold no secrets, but ids and configuration are nobody else's business.
fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

fn abort(e: impl std::fmt::Display) -> ConflictableTransactionError<String> {
    ConflictableTransactionError::Abort(e.to_string())
}

#[async_trait::async_trait]
impl Store for SledStore {
    fn describe(&self) -> String {
        format!("local state at {}", self.dir.display())
    }

    async fn snapshot(&self) -> Result<Snapshot, StateError> {
        let meta = self.read_meta()?;
        let mut resources = BTreeMap::new();
        for kv in self.resources.iter() {
            let (k, v) = kv.map_err(|e| sled_err(&self.dir, e))?;
            let key = String::from_utf8_lossy(&k).to_string();
            let rec: ResourceRecord = serde_json::from_slice(&v)
                .map_err(|e| StateError::Corrupt { key: key.clone(), reason: e.to_string() })?;
            if rec.address != *key.as_str() {
                return Err(StateError::Corrupt { reason: format!("the record is of {}", rec.address), key });
            }
            resources.insert(rec.address.clone(), rec);
        }
        let outputs = match self.outputs.get(OUTPUTS_KEY).map_err(|e| sled_err(&self.dir, e))? {
            Some(raw) => serde_json::from_slice(&raw)
                .map_err(|e| StateError::Corrupt { key: "outputs".into(), reason: e.to_string() })?,
            None => BTreeMap::new(),
        };
        Ok(Snapshot { meta, resources, outputs })
    }

    async fn meta(&self) -> Result<Meta, StateError> {
        self.read_meta()
    }

    async fn commit(&self, batch: Batch) -> Result<Meta, StateError> {
        self.still_there()?;
        let bumps = batch.changes_state();
        let puts: Vec<(String, Vec<u8>)> = batch
            .put
            .iter()
            .map(|r| Ok((r.address.to_string(), serde_json::to_vec(r).map_err(storage)?)))
            .collect::<Result<_, StateError>>()?;
        let outputs: Option<Vec<u8>> = batch
            .outputs
            .as_ref()
            .map(|o: &BTreeMap<String, OutputValue>| serde_json::to_vec(o))
            .transpose()
            .map_err(storage)?;
        let journal: Vec<(String, Vec<u8>)> = batch
            .journal_put
            .iter()
            .map(|j| Ok((j.id.clone(), serde_json::to_vec(j).map_err(storage)?)))
            .collect::<Result<_, StateError>>()?;
        let result = (&self.meta, &self.resources, &self.outputs, &self.journal).transaction(|(tm, tr, to, tj)| {
            let raw = tm.get(META_KEY)?.ok_or_else(|| abort("its identity record (lineage and serial) is missing"))?;
            let mut meta: Meta =
                serde_json::from_slice(&raw).map_err(|_| abort("its identity record cannot be read"))?;
            let raw = tm.get(SEAL_KEY)?.ok_or_else(|| abort("its seal is missing"))?;
            let mut seal: Seal = serde_json::from_slice(&raw).map_err(|_| abort("its seal cannot be read"))?;
            for (k, v) in &puts {
                if let Some(old) = tr.insert(k.as_bytes(), v.as_slice())? {
                    seal.resources.remove(k.as_bytes(), &old);
                }
                seal.resources.add(k.as_bytes(), v);
            }
            for k in &batch.remove {
                if let Some(old) = tr.remove(k.as_str().as_bytes())? {
                    seal.resources.remove(k.as_str().as_bytes(), &old);
                }
            }
            if let Some(o) = &outputs {
                if let Some(old) = to.insert(OUTPUTS_KEY, o.as_slice())? {
                    seal.outputs.remove(OUTPUTS_KEY, &old);
                }
                seal.outputs.add(OUTPUTS_KEY, o);
            }
            for (k, v) in &journal {
                if let Some(old) = tj.insert(k.as_bytes(), v.as_slice())? {
                    seal.journal.remove(k.as_bytes(), &old);
                }
                seal.journal.add(k.as_bytes(), v);
            }
            for k in &batch.journal_done {
                if let Some(old) = tj.remove(k.as_bytes())? {
                    seal.journal.remove(k.as_bytes(), &old);
                }
            }
            if bumps || batch.bind.is_some() {
                meta.serial += u64::from(bumps);
                if let Some(m) = &batch.bind {
                    meta.manifest = Some(m.clone());
                }
                tm.insert(META_KEY, serde_json::to_vec(&meta).map_err(abort)?)?;
            }
            seal.serial = meta.serial;
            seal.writes += 1;
            tm.insert(SEAL_KEY, serde_json::to_vec(&seal).map_err(abort)?)?;
            Ok((meta, seal))
        });
        let (meta, seal) = result.map_err(|e| tx_err(&self.dir, e))?;
        self.wrote.store(true, Ordering::Relaxed);
        let durable = async {
            flush(&self.db, &self.dir).await?;
            self.write_seal(&seal).await
        };
        if let Err(e) = durable.await {
            // The directory may have gone between the check above and these writes: say so,
            // rather than "no such file".
            self.still_there()?;
            return Err(e);
        }
        Ok(meta)
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let mut out = Vec::new();
        for kv in self.journal.iter() {
            let (k, v) = kv.map_err(|e| sled_err(&self.dir, e))?;
            out.push(serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                key: format!("journal {}", String::from_utf8_lossy(&k)),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    async fn close(&self) -> Result<(), StateError> {
        flush(&self.db, &self.dir).await?;
        if self.wrote.load(Ordering::Relaxed) {
            self.still_there()?;
            let seal = self.read_seal()?;
            self.keep_backup(&seal, false)
                .await
                .map_err(|e| StateError::Storage(format!("the state was saved, but its backup was not: {}", e)))?;
        }
        if read_holder(&self.dir).is_some_and(|h| h.id == self.lock_id) {
            let _ = std::fs::remove_file(self.dir.join(HOLDER_FILE));
        }
        Ok(())
    }

    async fn restore(&self, snapshot: &Snapshot, journal: &[JournalEntry]) -> Result<(), StateError> {
        self.still_there()?;
        // The lock is held, so the keys read here are all there are.
        let keys = |t: &sled::Tree| t.iter().keys().collect::<Result<Vec<_>, _>>().map_err(|e| sled_err(&self.dir, e));
        let (old_res, old_out, old_jnl) = (keys(&self.resources)?, keys(&self.outputs)?, keys(&self.journal)?);
        let writes = self.read_seal().map(|s| s.writes).unwrap_or(0) + 1;
        let mut seal = Seal {
            format: FORMAT,
            lineage: snapshot.meta.lineage.clone(),
            serial: snapshot.meta.serial,
            writes,
            resources: Tally::default(),
            outputs: Tally::default(),
            journal: Tally::default(),
        };
        let meta = serde_json::to_vec(&snapshot.meta).map_err(storage)?;
        let res: Vec<(String, Vec<u8>)> = snapshot
            .resources
            .iter()
            .map(|(k, r)| Ok((k.to_string(), serde_json::to_vec(r).map_err(storage)?)))
            .collect::<Result<_, StateError>>()?;
        let outputs = serde_json::to_vec(&snapshot.outputs).map_err(storage)?;
        let jnl: Vec<(String, Vec<u8>)> = journal
            .iter()
            .map(|j| Ok((j.id.clone(), serde_json::to_vec(j).map_err(storage)?)))
            .collect::<Result<_, StateError>>()?;
        for (k, v) in &res {
            seal.resources.add(k.as_bytes(), v);
        }
        if !snapshot.outputs.is_empty() {
            seal.outputs.add(OUTPUTS_KEY, &outputs);
        }
        for (k, v) in &jnl {
            seal.journal.add(k.as_bytes(), v);
        }
        let sealed = serde_json::to_vec(&seal).map_err(storage)?;
        (&self.meta, &self.resources, &self.outputs, &self.journal)
            .transaction(|(tm, tr, to, tj)| {
                for (tree, old) in [(tr, &old_res), (to, &old_out), (tj, &old_jnl)] {
                    for k in old {
                        tree.remove(k.clone())?;
                    }
                }
                tm.insert(META_KEY, meta.as_slice())?;
                tm.insert(SEAL_KEY, sealed.as_slice())?;
                for (k, v) in &res {
                    tr.insert(k.as_bytes(), v.as_slice())?;
                }
                if !snapshot.outputs.is_empty() {
                    to.insert(OUTPUTS_KEY, outputs.as_slice())?;
                }
                for (k, v) in &jnl {
                    tj.insert(k.as_bytes(), v.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<String>>(())
            })
            .map_err(|e| tx_err(&self.dir, e))?;
        self.wrote.store(true, Ordering::Relaxed);
        flush(&self.db, &self.dir).await?;
        self.write_seal(&seal).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CvmAttrs;

    fn rec(addr: &str) -> ResourceRecord {
        ResourceRecord {
            address: addr.into(),
            ids: Default::default(),
            attrs: CvmAttrs { name: addr.into(), ..Default::default() },
            compose_hash: None,
            env_pubkey: None,
            kms_info: None,
            status: None,
            tainted: false,
            boot: Default::default(),
            dependencies: vec![],
            updated_at: "now".into(),
            endpoint: None,
            prevent_destroy: false,
            secrets_scope: None,
        }
    }

    fn opts(dir: &Path) -> OpenOptions {
        OpenOptions::local(dir.to_path_buf(), LockInfo::for_command("test"), Duration::ZERO)
    }

    #[tokio::test]
    async fn commit_is_atomic_and_bumps_serial() {
        let tmp = tempfile::tempdir().unwrap();
        let s = SledStore::open(&opts(tmp.path())).await.unwrap();
        let m0 = s.meta().await.unwrap();
        let m1 = s.commit(Batch { put: vec![rec("cvm.a"), rec("cvm.b")], ..Default::default() }).await.unwrap();
        assert_eq!(m1.serial, m0.serial + 1);
        assert_eq!(m1.lineage, m0.lineage);
        let j = JournalEntry {
            id: "1".into(),
            address: "cvm.c".into(),
            op: "create".into(),
            name: "c".into(),
            cloud_id: None,
            started_at: "t".into(),
            detail: Default::default(),
            endpoint: None,
        };
        let m2 = s.commit(Batch { journal_put: vec![j], ..Default::default() }).await.unwrap();
        assert_eq!(m2.serial, m1.serial, "journal-only writes keep the serial");
        assert_eq!(s.journal().await.unwrap().len(), 1);
        s.commit(Batch { remove: vec!["cvm.a".into()], journal_done: vec!["1".into()], ..Default::default() })
            .await
            .unwrap();
        let snap = s.snapshot().await.unwrap();
        assert_eq!(snap.resources.keys().collect::<Vec<_>>(), ["cvm.b"]);
        assert!(s.journal().await.unwrap().is_empty());
    }

    /// A parallel apply commits from many steps at once; every commit must finish. (A hang
    /// blocks the runtime's threads, so the commits run on their own runtime and thread.)
    #[test]
    fn many_concurrent_commits_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let n = rt.block_on(async {
                let s = std::sync::Arc::new(SledStore::open(&opts(&dir)).await.unwrap());
                let commits = (0..64).map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        s.commit(Batch { put: vec![rec(&format!("cvm.c{i}"))], ..Default::default() }).await
                    })
                });
                for r in futures::future::join_all(commits).await {
                    r.unwrap().unwrap();
                }
                s.snapshot().await.unwrap().resources.len()
            });
            let _ = tx.send(n);
        });
        let n = rx.recv_timeout(Duration::from_secs(60)).expect("64 concurrent commits finish (no flush deadlock)");
        assert_eq!(n, 64);
    }

    /// A state as teeform wrote it before it kept a seal (format 0): meta and records only.
    fn write_unsealed(dir: &Path, records: &[ResourceRecord]) -> Meta {
        let db = SledStore::config(dir).open().unwrap();
        let meta = Meta::fresh();
        db.open_tree("meta").unwrap().insert(META_KEY, serde_json::to_vec(&meta).unwrap()).unwrap();
        let res = db.open_tree("resources").unwrap();
        for r in records {
            res.insert(r.address.as_str().as_bytes(), serde_json::to_vec(r).unwrap()).unwrap();
        }
        db.flush().unwrap();
        meta
    }

    #[tokio::test]
    async fn an_unsealed_state_is_sealed_as_it_is_and_then_guarded() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = write_unsealed(tmp.path(), &[rec("cvm.a"), rec("cvm.b")]);
        let s = SledStore::open(&opts(tmp.path())).await.unwrap();
        let snap = s.snapshot().await.unwrap();
        assert_eq!(snap.meta, meta);
        assert_eq!(snap.resources.len(), 2);
        assert_eq!(s.read_seal().unwrap().format, FORMAT);
        assert!(tmp.path().join(integrity::SEAL_FILE).exists());
        s.commit(Batch { put: vec![rec("cvm.c")], ..Default::default() }).await.unwrap();
        s.close().await.unwrap();
        drop(s);
        let backup = integrity::read_backup(tmp.path()).unwrap().expect("a command that wrote leaves a backup");
        assert_eq!(backup.resources.len(), 3);
        // A record lost behind teeform's back is noticed.
        {
            let db = SledStore::config(tmp.path()).open().unwrap();
            db.open_tree("resources").unwrap().remove("cvm.b").unwrap();
            db.flush().unwrap();
        }
        match SledStore::open(&opts(tmp.path())).await.err().expect("damaged") {
            StateError::Damaged { problem, backup: Some(b), .. } => {
                assert!(problem.contains("2 resource record(s) where 3 were written"), "{problem}");
                assert_eq!(b.resources, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        let r = SledStore::recover(&opts(tmp.path()), false).await.unwrap();
        assert_eq!(r.resources, 3);
        let s = SledStore::open(&opts(tmp.path())).await.unwrap();
        assert_eq!(s.snapshot().await.unwrap().resources.len(), 3);
        assert!(s.meta().await.unwrap().serial > backup.meta.serial, "saved plans from before are stale");
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_state_from_a_newer_teeform_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let s = SledStore::open(&opts(tmp.path())).await.unwrap();
        let mut seal = s.read_seal().unwrap();
        seal.format = FORMAT + 1;
        s.meta.insert(SEAL_KEY, serde_json::to_vec(&seal).unwrap()).unwrap();
        s.close().await.unwrap();
        drop(s);
        match SledStore::open(&opts(tmp.path())).await.err().expect("refused") {
            StateError::TooNew { format, .. } => assert_eq!(format, FORMAT + 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn second_open_is_locked_and_names_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let s = SledStore::open(&opts(tmp.path())).await.unwrap();
        let err = SledStore::open(&opts(tmp.path())).await.err().expect("locked");
        match err {
            StateError::Locked { holder: Some(h), .. } => assert_eq!(h.command, "test"),
            other => panic!("unexpected {other:?}"),
        }
        s.close().await.unwrap();
    }
}
