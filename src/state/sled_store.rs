//! The default backend: an embedded sled database under the state directory.
//!
//! Locking: sled takes an exclusive OS file lock on its database for as long as it is open,
//! so the lock is held exactly while a teeform process has the state open, and is released by
//! the OS if that process dies. `holder.json` beside it only names the holder for messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Batch, JournalEntry, LockInfo, Meta, OpenOptions, Snapshot, StateError, Store};
use crate::model::{OutputValue, ResourceRecord};

const META_KEY: &[u8] = b"meta";
const OUTPUTS_KEY: &[u8] = b"outputs";
const HOLDER_FILE: &str = "holder.json";

pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    resources: sled::Tree,
    outputs: sled::Tree,
    journal: sled::Tree,
    lock_id: String,
}

fn storage(e: impl std::fmt::Display) -> StateError {
    StateError::Storage(e.to_string())
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
            std::fs::remove_file(dir.join(HOLDER_FILE)).map_err(storage)
        }
        _ => Err(StateError::NoSuchLock(id.to_string())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl SledStore {
    fn config(dir: &Path) -> sled::Config {
        // The cache bounds memory, not data size; state records are small.
        sled::Config::new().path(dir.join("sled")).cache_capacity(32 * 1024 * 1024)
    }

    fn is_locked(dir: &Path) -> bool {
        if !dir.join("sled").exists() {
            return false;
        }
        match Self::config(dir).open() {
            Ok(_) => false,
            Err(e) => e.to_string().contains("could not acquire lock"),
        }
    }

    pub async fn open(opts: &OpenOptions) -> Result<SledStore, StateError> {
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StateError::Storage(format!("cannot create state directory {}: {e}", dir.display())))?;
        restrict(&dir);
        let deadline = Instant::now() + opts.lock_timeout;
        let db = loop {
            let cfg = Self::config(&dir);
            match tokio::task::spawn_blocking(move || cfg.open()).await.map_err(storage)? {
                Ok(db) => break db,
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StateError::Locked { path: dir.display().to_string(), holder: read_holder(&dir) });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(storage(e)),
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let store = SledStore {
            meta: tree("meta")?,
            resources: tree("resources")?,
            outputs: tree("outputs")?,
            journal: tree("journal")?,
            db,
            dir: dir.clone(),
            lock_id: opts.lock.id.clone(),
        };
        if store.meta.get(META_KEY).map_err(storage)?.is_none() {
            let fresh = serde_json::to_vec(&Meta::fresh()).map_err(storage)?;
            let _ = store.meta.compare_and_swap(META_KEY, None as Option<&[u8]>, Some(fresh)).map_err(storage)?;
            flush(&store.db).await?;
        }
        let holder = serde_json::to_vec_pretty(&opts.lock).map_err(storage)?;
        write_private(&dir.join(HOLDER_FILE), &holder).map_err(storage)?;
        Ok(store)
    }

    fn read_meta(&self) -> Result<Meta, StateError> {
        let raw = self
            .meta
            .get(META_KEY)
            .map_err(storage)?
            .ok_or_else(|| StateError::Corrupt { key: "meta".into(), reason: "missing".into() })?;
        serde_json::from_slice(&raw).map_err(|e| StateError::Corrupt { key: "meta".into(), reason: e.to_string() })
    }
}

/// Makes everything written so far durable. Not `flush_async`: that runs the flush on sled's
/// own small I/O pool, where concurrent flushes (one per step of a parallel apply) can occupy
/// every thread waiting for a log write that is queued behind them on the same pool, and hang.
/// A blocking flush waits on tokio's blocking pool and leaves sled's pool free to write.
async fn flush(db: &sled::Db) -> Result<(), StateError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush()).await.map_err(storage)?.map_err(storage)?;
    Ok(())
}

/// State directories hold no secrets, but ids and configuration are nobody else's business.
fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
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
            let (k, v) = kv.map_err(storage)?;
            let key = String::from_utf8_lossy(&k).to_string();
            let rec: ResourceRecord = serde_json::from_slice(&v)
                .map_err(|e| StateError::Corrupt { key: key.clone(), reason: e.to_string() })?;
            resources.insert(key, rec);
        }
        let outputs = match self.outputs.get(OUTPUTS_KEY).map_err(storage)? {
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
        let bumps = batch.changes_state();
        let puts: Vec<(String, Vec<u8>)> = batch
            .put
            .iter()
            .map(|r| Ok((r.address.clone(), serde_json::to_vec(r).map_err(storage)?)))
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
            let raw = tm.get(META_KEY)?.ok_or(ConflictableTransactionError::Abort("missing meta".to_string()))?;
            let mut meta: Meta =
                serde_json::from_slice(&raw).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
            for (k, v) in &puts {
                tr.insert(k.as_bytes(), v.as_slice())?;
            }
            for k in &batch.remove {
                tr.remove(k.as_bytes())?;
            }
            if let Some(o) = &outputs {
                to.insert(OUTPUTS_KEY, o.as_slice())?;
            }
            for (k, v) in &journal {
                tj.insert(k.as_bytes(), v.as_slice())?;
            }
            for k in &batch.journal_done {
                tj.remove(k.as_bytes())?;
            }
            if bumps {
                meta.serial += 1;
                tm.insert(
                    META_KEY,
                    serde_json::to_vec(&meta).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?,
                )?;
            }
            Ok(meta)
        });
        let meta = match result {
            Ok(m) => m,
            Err(TransactionError::Abort(reason)) => {
                return Err(StateError::Corrupt { key: "meta".into(), reason });
            }
            Err(TransactionError::Storage(e)) => return Err(storage(e)),
        };
        flush(&self.db).await?;
        Ok(meta)
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let mut out = Vec::new();
        for kv in self.journal.iter() {
            let (k, v) = kv.map_err(storage)?;
            out.push(serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                key: format!("journal {}", String::from_utf8_lossy(&k)),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    async fn close(&self) -> Result<(), StateError> {
        flush(&self.db).await?;
        if read_holder(&self.dir).is_some_and(|h| h.id == self.lock_id) {
            let _ = std::fs::remove_file(self.dir.join(HOLDER_FILE));
        }
        Ok(())
    }

    async fn restore(&self, snapshot: &Snapshot, journal: &[JournalEntry]) -> Result<(), StateError> {
        // The lock is held, so the keys read here are all there are.
        let keys = |t: &sled::Tree| t.iter().keys().collect::<Result<Vec<_>, _>>().map_err(storage);
        let (old_res, old_out, old_jnl) = (keys(&self.resources)?, keys(&self.outputs)?, keys(&self.journal)?);
        let meta = serde_json::to_vec(&snapshot.meta).map_err(storage)?;
        let res: Vec<(String, Vec<u8>)> = snapshot
            .resources
            .iter()
            .map(|(k, r)| Ok((k.clone(), serde_json::to_vec(r).map_err(storage)?)))
            .collect::<Result<_, StateError>>()?;
        let outputs = serde_json::to_vec(&snapshot.outputs).map_err(storage)?;
        let jnl: Vec<(String, Vec<u8>)> = journal
            .iter()
            .map(|j| Ok((j.id.clone(), serde_json::to_vec(j).map_err(storage)?)))
            .collect::<Result<_, StateError>>()?;
        (&self.meta, &self.resources, &self.outputs, &self.journal)
            .transaction(|(tm, tr, to, tj)| {
                for (tree, old) in [(tr, &old_res), (to, &old_out), (tj, &old_jnl)] {
                    for k in old {
                        tree.remove(k.clone())?;
                    }
                }
                tm.insert(META_KEY, meta.as_slice())?;
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
            .map_err(|e: TransactionError<String>| storage(format!("{e:?}")))?;
        self.db.flush_async().await.map_err(storage)?;
        Ok(())
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
