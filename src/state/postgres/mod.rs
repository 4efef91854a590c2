//! The shared backend: PostgreSQL, for a team and its CI runners applying the same manifests.
//!
//! One database keeps any number of workspaces apart. Tables (`teeform_*`, in the connection's
//! default schema) are created on first use and migrated through `teeform_schema_version`.
//! Every commit is one small transaction touching only the rows it changes.
//!
//! Locking: a session-level advisory lock per workspace, taken when the store opens and held
//! by this process's single connection, so the server drops it when the process or its
//! connection dies. `teeform_locks` only names the holder (for messages and `force-unlock`);
//! a row is believed only while its session still holds the advisory lock, so a row left by a
//! dead process blocks nobody. A lost connection means a lost lock, so nothing reconnects: the
//! run stops with a clear error, and the journal tells the next run what was in flight.
//!
//! Integrity: each workspace has a **seal** row (`teeform_seals`, a [`Seal`](super::integrity::Seal)): for
//! the resource, output and journal rows, how many there are and the sum of the digests of
//! their key and value (the jsonb as PostgreSQL prints it), plus lineage, serial, a count of
//! every write and the format version. Each commit updates it in its own transaction from the
//! rows it replaces and writes (`RETURNING` the old and new values: no scans, the same cost at
//! any size). Opening counts and sums the rows again: a row deleted or edited by hand, rows
//! or tables put back from an older dump, a lost seal or identity row are
//! [`StateError::Damaged`], and nothing is written. `teeform_backups` keeps a checksummed copy
//! of the last state found whole (written when a command that wrote closes, and when an open
//! finds it older); `state recover` puts it back, keeping what it replaces in
//! `teeform_set_aside`, or with `--keep-current` seals the rows as they are. Limits: a whole
//! database put back to an earlier point (backups table included) is a consistent older state
//! and reads as one; the seal is not keyed, so it catches accidents and restores, not someone
//! with write access to the tables who recomputes it.
//!
//! The connection string comes from the CLI (`TEEFORM_PG_CONN`) in a [`PgConn`], which never
//! prints; messages name only host, port and database.

mod conn;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, GenericClient, IsolationLevel};

use super::integrity::{Backup, Seal};
use super::{Batch, JournalEntry, Meta, OpenOptions, Recovered, Snapshot, StateError, Store};

pub use conn::PgConn;
use conn::*;
use rows::*;
pub use schema::FORMAT;
use schema::*;

/// What is wrong with rows sealed with `seal`: rows that differ from it, or rows older than
/// their backup (writes were lost: the tables were put back to an earlier point).
fn seal_problem(rows: &Rows, meta: &Meta, seal: &Seal, backup: Option<&Seal>) -> Option<String> {
    if let Some(problem) = seal.differs(&rows.count(meta, seal.writes)) {
        return Some(problem);
    }
    let b = backup.filter(|b| b.lineage == seal.lineage && b.writes > seal.writes)?;
    Some(format!(
        "its rows are older than its backup (write {} of {}, serial {} of {}): they were put back to an earlier point",
        seal.writes, b.writes, seal.serial, b.serial
    ))
}

pub struct PgStore {
    /// The one session: it holds the advisory lock, and transactions on it run one at a time.
    client: tokio::sync::Mutex<Client>,
    workspace: String,
    target: String,
    lock_id: String,
    /// The serial this process last saw or wrote. A state-changing commit that finds another
    /// one is refused: someone wrote without the lock.
    serial: std::sync::Mutex<u64>,
    /// Whether this process wrote (the backup is then refreshed at close).
    wrote: AtomicBool,
}

impl PgStore {
    /// Opens a workspace's state: takes its lock, checks it against its seal (or seals a new
    /// workspace, or one from before teeform kept seals) and keeps its backup current.
    /// Errors: [`StateError::Locked`], [`StateError::Damaged`] (nothing was changed),
    /// [`StateError::TooNew`], [`StateError::Storage`].
    pub async fn open(opts: &OpenOptions, conn: &PgConn) -> Result<PgStore, StateError> {
        let store = Self::lock(opts, conn).await?;
        match store.check().await {
            Ok(meta) => {
                store.saw_serial(meta.serial);
                Ok(store)
            }
            Err(e) => {
                let _ = store.close().await;
                Err(e)
            }
        }
    }

    /// Connects and takes the workspace's lock, without reading its state.
    async fn lock(opts: &OpenOptions, conn: &PgConn) -> Result<PgStore, StateError> {
        let ws = opts.workspace.as_str();
        let target = conn.target();
        let mut client = connect(conn).await?;
        migrate_schema(&mut client).await?;
        let key = workspace_key(ws);
        let deadline = Instant::now() + opts.lock_timeout;
        // A holder known to be dead gets a few seconds for its session to be ended, even
        // when the caller would not wait at all.
        let grace = deadline + Duration::from_secs(5);
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
                .await
                .map_err(pg_err)?
                .get(0);
            if got {
                break;
            }
            let h = holder(&client, ws).await?.filter(|h| h.holds);
            if let Some(h) = &h
                && holder_is_dead(&h.origin, h.info.pid)
                && Instant::now() < grace
            {
                // Its process is gone but its session lingers: end it. Failing to (no right
                // to) leaves the normal wait and message.
                tracing::debug!("ending the session of dead lock holder {}", h.info);
                let _ = client.execute("SELECT pg_terminate_backend($1)", &[&h.backend_pid]).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if Instant::now() >= deadline {
                return Err(StateError::Locked {
                    path: format!("PostgreSQL {target} (workspace {ws})"),
                    holder: h.map(|h| h.info),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let origin = origin_of(std::process::id()).unwrap_or_default();
        client
            .execute(
                "INSERT INTO teeform_locks (workspace, lock_id, holder, backend_pid, origin)
                 VALUES ($1, $2, $3::text::jsonb, pg_backend_pid(), $4)
                 ON CONFLICT (workspace) DO UPDATE SET lock_id = excluded.lock_id, holder = excluded.holder,
                     backend_pid = excluded.backend_pid, origin = excluded.origin",
                &[&ws, &opts.lock.id, &to_json(&opts.lock)?, &origin],
            )
            .await
            .map_err(pg_err)?;
        Ok(PgStore {
            client: tokio::sync::Mutex::new(client),
            workspace: ws.to_string(),
            target,
            lock_id: opts.lock.id.clone(),
            serial: std::sync::Mutex::new(0),
            wrote: AtomicBool::new(false),
        })
    }

    fn expected_serial(&self) -> u64 {
        *self.serial.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn saw_serial(&self, serial: u64) {
        *self.serial.lock().unwrap_or_else(|p| p.into_inner()) = serial;
    }

    fn conflict(&self, found: u64) -> StateError {
        StateError::Storage(format!(
            "the PostgreSQL state (workspace {}) changed underneath this run: serial {} expected, {found} found; \
             nothing was written. Another process wrote without holding the lock",
            self.workspace,
            self.expected_serial()
        ))
    }

    /// How messages name this state.
    fn path(&self) -> String {
        format!("PostgreSQL {} (workspace {})", self.target, self.workspace)
    }

    /// A [`StateError::Damaged`] naming the copy to recover from, if there is a whole one.
    async fn damaged(&self, c: &impl GenericClient, problem: impl Into<String>) -> StateError {
        let backup = read_backup(c, &self.workspace).await.ok().flatten().map(|b| backup_info(&b));
        StateError::Damaged { path: self.path(), problem: problem.into(), backup }
    }

    /// Checks the rows against the seal (see the module docs), sealing a new workspace or one
    /// from before teeform kept seals, and refreshes the backup when it is not of this state as
    /// it is. One transaction: when the state is damaged, nothing is written.
    async fn check(&self) -> Result<Meta, StateError> {
        let ws = self.workspace.as_str();
        let mut client = self.client.lock().await;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.map_err(pg_err)?;
        let rows = Rows::read(&tx, ws).await?;
        let backup = rows.backup_seal();
        if let Some(format) = rows.too_new() {
            return Err(StateError::TooNew { path: self.path(), format, supported: FORMAT });
        }
        let (meta, seal) = match (&rows.meta, rows.seal()) {
            (None, None) if rows.is_empty() && rows.backup.is_none() => {
                // A new workspace.
                let meta = Meta::fresh();
                let seal = rows.count(&meta, 0);
                tx.execute(
                    "INSERT INTO teeform_meta (workspace, lineage, serial, salt, format) VALUES ($1, $2, 0, $3, $4)",
                    &[&ws, &meta.lineage, &meta.salt, &(FORMAT as i32)],
                )
                .await
                .map_err(pg_err)?;
                write_seal(&tx, ws, &seal).await?;
                (meta, seal)
            }
            (None, _) if rows.is_empty() => {
                return Err(self.damaged(&tx, "all of its rows are missing; only its backup is left").await);
            }
            (None, _) => {
                return Err(self
                    .damaged(&tx, "its identity row (lineage and serial, in teeform_meta) is missing")
                    .await);
            }
            (Some((meta, 0)), None) => {
                // Written before teeform kept seals (format 0): seal it as it is.
                let seal = rows.count(meta, 0);
                write_seal(&tx, ws, &seal).await?;
                tx.execute("UPDATE teeform_meta SET format = $2 WHERE workspace = $1", &[&ws, &(FORMAT as i32)])
                    .await
                    .map_err(pg_err)?;
                (meta.clone(), seal)
            }
            (Some(_), None) => {
                return Err(self.damaged(&tx, "its seal row (in teeform_seals) is missing").await);
            }
            (Some(_), Some(Err(()))) => {
                return Err(self.damaged(&tx, "its seal row (in teeform_seals) cannot be read").await);
            }
            (Some((meta, _)), Some(Ok(seal))) => {
                if let Some(problem) = seal_problem(&rows, meta, &seal, backup.as_ref()) {
                    return Err(self.damaged(&tx, problem).await);
                }
                (meta.clone(), seal)
            }
        };
        if backup.as_ref() != Some(&seal) {
            let copy = Backup { format: FORMAT, ..Backup::of(&seal, &rows.snapshot(meta.clone())?, &rows.journal()?) };
            write_backup(&tx, ws, &copy).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(meta)
    }

    /// Refreshes the backup from the state as it is now, once it is found whole.
    async fn keep_backup(&self) -> Result<(), StateError> {
        let ws = self.workspace.as_str();
        let mut client = self.client.lock().await;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.map_err(pg_err)?;
        let rows = Rows::read(&tx, ws).await?;
        let (Some((meta, _)), Some(Ok(seal))) = (&rows.meta, rows.seal()) else {
            return Err(self.damaged(&tx, "its identity or seal row is missing or cannot be read").await);
        };
        if let Some(problem) = seal.differs(&rows.count(meta, seal.writes)) {
            return Err(self.damaged(&tx, problem).await);
        }
        if rows.backup_seal().as_ref() != Some(&seal) {
            let copy = Backup { format: FORMAT, ..Backup::of(&seal, &rows.snapshot(meta.clone())?, &rows.journal()?) };
            write_backup(&tx, ws, &copy).await?;
        }
        tx.commit().await.map_err(pg_err)
    }

    /// `teeform state recover` for a workspace: puts back the copy in `teeform_backups` (the
    /// rows it replaces are kept in `teeform_set_aside`), or with `keep_current` accepts the
    /// rows as they are (each must read back) and seals them again, as after a deliberate
    /// restore. Either way the serial moves past every serial the state had, so saved plans
    /// made before are refused. Takes the workspace's lock.
    pub(super) async fn recover(
        opts: &OpenOptions,
        conn: &PgConn,
        keep_current: bool,
    ) -> Result<Recovered, StateError> {
        let store = Self::lock(opts, conn).await?;
        let done = if keep_current { store.reseal().await } else { store.put_back().await };
        // Closing refreshes the backup from the state just sealed.
        let closed = store.close().await;
        let done = done.map_err(|e| match e {
            StateError::Corrupt { key, reason } => StateError::Storage(format!(
                "cannot keep the {} as it is: its record {key} cannot be read ({reason}); `teeform state recover` \
                 (without --keep-current) puts back the backup",
                store.path()
            )),
            other => other,
        })?;
        closed?;
        Ok(done)
    }

    async fn reseal(&self) -> Result<Recovered, StateError> {
        let ws = self.workspace.as_str();
        let mut client = self.client.lock().await;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.map_err(pg_err)?;
        let rows = Rows::read(&tx, ws).await?;
        if let Some(format) = rows.too_new() {
            return Err(StateError::TooNew { path: self.path(), format, supported: FORMAT });
        }
        let Some((mut meta, _)) = rows.meta.clone() else {
            return Err(StateError::Storage(format!(
                "cannot keep the {} as it is: its identity row (lineage and serial, in teeform_meta) is missing; \
                 `teeform state recover` (without --keep-current) puts back the backup",
                self.path()
            )));
        };
        // Every record must read back before the rows are accepted.
        let snapshot = rows.snapshot(meta.clone())?;
        let journal = rows.journal()?;
        let old = rows.seal().and_then(Result::ok);
        let backup = rows.backup_seal();
        let seals = || old.iter().chain(backup.iter());
        meta.serial = seals().map(|s| s.serial).chain([meta.serial]).max().unwrap_or(0) + 1;
        let writes = seals().map(|s| s.writes).max().unwrap_or(0) + 1;
        tx.execute(
            "UPDATE teeform_meta SET serial = $2, format = $3 WHERE workspace = $1",
            &[&ws, &(meta.serial as i64), &(FORMAT as i32)],
        )
        .await
        .map_err(pg_err)?;
        write_seal(&tx, ws, &rows.count(&meta, writes)).await?;
        tx.commit().await.map_err(pg_err)?;
        self.saw_serial(meta.serial);
        self.wrote.store(true, Ordering::Relaxed);
        Ok(Recovered {
            from_backup: None,
            set_aside: None,
            serial: meta.serial,
            resources: snapshot.resources.len(),
            journal: journal.len(),
        })
    }

    async fn put_back(&self) -> Result<Recovered, StateError> {
        let ws = self.workspace.as_str();
        let mut client = self.client.lock().await;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.map_err(pg_err)?;
        let cannot = |why: String| StateError::Storage(format!("cannot recover the {}: {why}", self.path()));
        let backup = read_backup(&tx, ws)
            .await
            .map_err(cannot)?
            .ok_or_else(|| cannot(format!("there is no copy in {BACKUP_PLACE} to recover from")))?;
        let rows = Rows::read(&tx, ws).await?;
        if let Some(format) = rows.too_new() {
            return Err(StateError::TooNew { path: self.path(), format, supported: FORMAT });
        }
        let old = rows.seal().and_then(Result::ok);
        // What is there now is kept, as it is, for whoever wants to look at it.
        let aside: String = tx
            .query_one(
                "INSERT INTO teeform_set_aside (workspace, rows)
                 SELECT $1, jsonb_build_object(
                     'meta', (SELECT to_jsonb(m) - 'workspace' FROM teeform_meta m WHERE m.workspace = $1),
                     'seal', (SELECT seal FROM teeform_seals WHERE workspace = $1),
                     'resources', (SELECT coalesce(jsonb_object_agg(address, record), '{}')
                                   FROM teeform_resources WHERE workspace = $1),
                     'outputs', (SELECT outputs FROM teeform_outputs WHERE workspace = $1),
                     'journal', (SELECT coalesce(jsonb_object_agg(id, entry), '{}')
                                 FROM teeform_journal WHERE workspace = $1))
                 RETURNING set_aside_at::text",
                &[&ws],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        let serials = rows.meta.iter().map(|(m, _)| m.serial).chain(old.iter().map(|s| s.serial));
        let mut snapshot = backup.snapshot();
        snapshot.meta.serial = serials.chain([snapshot.meta.serial]).max().unwrap_or(0) + 1;
        let writes = old.iter().map(|s| s.writes).chain([backup.seal.writes]).max().unwrap_or(0) + 1;
        replace(&tx, ws, &snapshot, &backup.journal, writes).await?;
        tx.commit().await.map_err(pg_err)?;
        self.saw_serial(snapshot.meta.serial);
        self.wrote.store(true, Ordering::Relaxed);
        Ok(Recovered {
            from_backup: Some(backup_info(&backup)),
            set_aside: Some(format!("table teeform_set_aside (workspace {ws}, set_aside_at {aside})")),
            serial: snapshot.meta.serial,
            resources: snapshot.resources.len(),
            journal: backup.journal.len(),
        })
    }
}

/// Removes the lock record `id` of a workspace. If its session still holds the lock, that
/// session is ended, unless its process visibly still runs on this machine.
/// The workspaces with a state (an identity row), sorted.
pub async fn workspaces(conn: &PgConn) -> Result<Vec<String>, StateError> {
    let mut client = connect(conn).await?;
    migrate_schema(&mut client).await?;
    let rows = client.query("SELECT workspace FROM teeform_meta ORDER BY workspace", &[]).await.map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn force_unlock(conn: &PgConn, workspace: &str, id: &str) -> Result<(), StateError> {
    let mut client = connect(conn).await?;
    migrate_schema(&mut client).await?;
    let Some(h) = holder(&client, workspace).await?.filter(|h| h.lock_id == id) else {
        return Err(StateError::NoSuchLock(id.to_string()));
    };
    if h.holds {
        if !holder_is_dead(&h.origin, h.info.pid) && origin_of(h.info.pid).is_some_and(|o| o == h.origin) {
            return Err(StateError::Locked {
                path: format!("PostgreSQL {} (workspace {workspace})", conn.target()),
                holder: Some(h.info),
            });
        }
        let ended: bool = client
            .query_one("SELECT pg_terminate_backend($1)", &[&h.backend_pid])
            .await
            .map_err(|e| match e.code() {
                Some(c) if c.code() == "42501" => StateError::Storage(format!(
                    "not allowed to end the PostgreSQL session {} that holds the lock; a database administrator can \
                     run `SELECT pg_terminate_backend({})`",
                    h.backend_pid, h.backend_pid
                )),
                _ => pg_err(e),
            })?
            .get(0);
        let until = Instant::now() + Duration::from_secs(10);
        while ended && Instant::now() < until {
            if !holder(&client, workspace).await?.is_some_and(|h| h.holds) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    client
        .execute("DELETE FROM teeform_locks WHERE workspace = $1 AND lock_id = $2", &[&workspace, &id])
        .await
        .map_err(pg_err)?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn describe(&self) -> String {
        format!("PostgreSQL state at {} (workspace {})", self.target, self.workspace)
    }

    async fn snapshot(&self) -> Result<Snapshot, StateError> {
        let mut client = self.client.lock().await;
        // One consistent view of meta, resources and outputs.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg_err)?;
        let ws = &self.workspace;
        let meta = read_meta(&tx, ws).await?;
        let resources = parse_resources(&rows_of(&tx, RESOURCES, ws).await?)?;
        let outputs = parse_outputs(outputs_row(&tx, ws).await?.as_deref())?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Snapshot { meta, resources, outputs })
    }

    async fn meta(&self) -> Result<Meta, StateError> {
        read_meta(&*self.client.lock().await, &self.workspace).await
    }

    /// One transaction: the rows the batch changes, the identity row, and the seal, which
    /// takes out each replaced row's digest and adds the new one (see the module docs).
    async fn commit(&self, batch: Batch) -> Result<Meta, StateError> {
        let ws = self.workspace.as_str();
        let mut client = self.client.lock().await;
        // Dropping the transaction on an error rolls it back.
        let tx = client.transaction().await.map_err(pg_err)?;
        let Some((mut meta, _)) = meta_row(&tx, ws).await? else {
            return Err(self.damaged(&tx, "its identity row (lineage and serial, in teeform_meta) is missing").await);
        };
        let bumps = batch.changes_state();
        if bumps && meta.serial != self.expected_serial() {
            return Err(self.conflict(meta.serial));
        }
        let seal_text: Option<String> = tx
            .query_opt("SELECT seal::text FROM teeform_seals WHERE workspace = $1", &[&ws])
            .await
            .map_err(pg_err)?
            .map(|r| r.get(0));
        let mut seal: Seal = match seal_text.map(|t| serde_json::from_str(&t)) {
            Some(Ok(seal)) => seal,
            Some(Err(_)) => return Err(self.damaged(&tx, "its seal row (in teeform_seals) cannot be read").await),
            None => return Err(self.damaged(&tx, "its seal row (in teeform_seals) is missing").await),
        };
        if seal.lineage != meta.lineage || seal.serial != meta.serial {
            return Err(self
                .damaged(
                    &tx,
                    format!(
                        "its identity row ({} #{}) differs from its seal ({} #{})",
                        meta.lineage, meta.serial, seal.lineage, seal.serial
                    ),
                )
                .await);
        }
        for r in &batch.put {
            let (new, old) = put_row(&tx, RESOURCES, ws, r.address.as_str(), &to_json(r)?).await?;
            retally(&mut seal.resources, r.address.as_str(), old.as_deref(), Some(&new));
        }
        for a in &batch.remove {
            let old = delete_row(&tx, RESOURCES, ws, a.as_str()).await?;
            retally(&mut seal.resources, a.as_str(), old.as_deref(), None);
        }
        if let Some(o) = &batch.outputs {
            let (new, old) = put_outputs(&tx, ws, &to_json(o)?).await?;
            retally(&mut seal.outputs, OUTPUTS_KEY, old.as_deref(), Some(&new));
        }
        for j in &batch.journal_put {
            let (new, old) = put_row(&tx, JOURNAL, ws, &j.id, &to_json(j)?).await?;
            retally(&mut seal.journal, &j.id, old.as_deref(), Some(&new));
        }
        for id in &batch.journal_done {
            let old = delete_row(&tx, JOURNAL, ws, id).await?;
            retally(&mut seal.journal, id, old.as_deref(), None);
        }
        if bumps || batch.bind.is_some() {
            meta.serial += u64::from(bumps);
            if let Some(m) = &batch.bind {
                meta.manifest = Some(m.clone());
            }
            tx.execute(
                "UPDATE teeform_meta SET serial = $2, manifest = $3 WHERE workspace = $1",
                &[&ws, &(meta.serial as i64), &meta.manifest],
            )
            .await
            .map_err(pg_err)?;
        }
        seal.serial = meta.serial;
        seal.writes += 1;
        write_seal(&tx, ws, &seal).await?;
        tx.commit().await.map_err(pg_err)?;
        self.saw_serial(meta.serial);
        self.wrote.store(true, Ordering::Relaxed);
        Ok(meta)
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let client = self.client.lock().await;
        parse_journal(&rows_of(&*client, JOURNAL, &self.workspace).await?)
    }

    async fn restore(&self, snapshot: &Snapshot, journal: &[JournalEntry]) -> Result<(), StateError> {
        let ws = self.workspace.as_str();
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(pg_err)?;
        let writes: u64 = tx
            .query_opt("SELECT seal::text FROM teeform_seals WHERE workspace = $1", &[&ws])
            .await
            .map_err(pg_err)?
            .and_then(|r| serde_json::from_str::<Seal>(r.get::<_, &str>(0)).ok())
            .map_or(0, |s| s.writes);
        replace(&tx, ws, snapshot, journal, writes + 1).await?;
        tx.commit().await.map_err(pg_err)?;
        self.saw_serial(snapshot.meta.serial);
        self.wrote.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Refreshes the backup if this process wrote, then releases the lock (also when the
    /// backup could not be refreshed).
    async fn close(&self) -> Result<(), StateError> {
        let backup = if self.wrote.load(Ordering::Relaxed) {
            self.keep_backup()
                .await
                .map_err(|e| StateError::Storage(format!("the state was saved, but its backup was not: {e}")))
        } else {
            Ok(())
        };
        let client = self.client.lock().await;
        client
            .execute(
                "DELETE FROM teeform_locks WHERE workspace = $1 AND lock_id = $2",
                &[&self.workspace, &self.lock_id],
            )
            .await
            .map_err(pg_err)?;
        client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &workspace_key(&self.workspace)])
            .await
            .map_err(pg_err)?;
        backup
    }
}
