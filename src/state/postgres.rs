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
//! The connection string comes from the CLI (`TEEFORM_PG_CONN`) in a [`PgConn`], which never
//! prints; messages name only host, port and database.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient, IsolationLevel};

use super::{Batch, JournalEntry, LockInfo, Meta, OpenOptions, Snapshot, StateError, Store};
use crate::model::{OutputValue, ResourceRecord};

/// First key of the advisory locks on workspaces ("teef"); the second is the workspace's hash.
const LOCK_CLASS: i32 = 0x7465_6566;
/// First key of the transaction-level lock that serializes schema migrations.
const SCHEMA_CLASS: i32 = 0x7465_6567;

/// The schema, one step per version: `MIGRATIONS[n]` takes version `n` to `n + 1`.
/// Append new steps; never edit a released one.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE teeform_meta (
    workspace text PRIMARY KEY,
    lineage text NOT NULL,
    serial bigint NOT NULL,
    salt text NOT NULL
);
CREATE TABLE teeform_resources (
    workspace text NOT NULL,
    address text NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (workspace, address)
);
CREATE TABLE teeform_outputs (
    workspace text PRIMARY KEY,
    outputs jsonb NOT NULL
);
CREATE TABLE teeform_journal (
    workspace text NOT NULL,
    id text NOT NULL,
    entry jsonb NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE TABLE teeform_locks (
    workspace text PRIMARY KEY,
    lock_id text NOT NULL,
    holder jsonb NOT NULL,
    backend_pid integer NOT NULL,
    origin text NOT NULL
);
",
    "
ALTER TABLE teeform_meta ADD COLUMN manifest text;
",
];

/// A libpq connection string (`postgres://user:password@host:5432/db?options=...`). It may
/// hold a password, so it has no `Display` and its `Debug` is redacted.
#[derive(Clone)]
pub struct PgConn(String);

impl PgConn {
    pub fn new(conn: impl Into<String>) -> PgConn {
        PgConn(conn.into())
    }

    fn config(&self) -> Result<tokio_postgres::Config, StateError> {
        self.0.parse::<tokio_postgres::Config>().map_err(|e| {
            StateError::Storage(
                self.redact(&format!("TEEFORM_PG_CONN is not a valid PostgreSQL connection string: {}", chain(&e))),
            )
        })
    }

    /// `host:port/database`: enough to tell which database, nothing secret.
    fn target(&self) -> String {
        let Ok(cfg) = self.0.parse::<tokio_postgres::Config>() else {
            return "(an invalid TEEFORM_PG_CONN)".into();
        };
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let db = cfg.get_dbname().or(cfg.get_user()).unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }

    /// Removes the connection string and its password from a message.
    fn redact(&self, msg: &str) -> String {
        let mut out = msg.replace(&self.0, "(TEEFORM_PG_CONN)");
        if let Ok(cfg) = self.0.parse::<tokio_postgres::Config>()
            && let Some(pw) = cfg.get_password().map(String::from_utf8_lossy)
            && !pw.is_empty()
        {
            out = out.replace(pw.as_ref(), "***");
        }
        out
    }
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgConn(<redacted>)")
    }
}

/// An error and its causes on one line (tokio-postgres keeps the useful part in `source`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}

const LOST: &str = "lost the connection to PostgreSQL, and the state lock with it; nothing more was written. \
                    Run the command again once the database is reachable: operations that were in flight are \
                    checked against the cloud first";

fn pg_err(e: tokio_postgres::Error) -> StateError {
    // Class 08 is "connection exception", 57P01-03 are shutdowns and restarts.
    let lost = e.is_closed()
        || e.code().is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
        || (e.as_db_error().is_none() && e.code().is_none() && chain(&e).contains("communicating with the server"));
    if lost {
        return StateError::Storage(format!("{LOST} ({})", chain(&e)));
    }
    match e.as_db_error() {
        Some(db) => StateError::Storage(format!("PostgreSQL: {db}")),
        None => StateError::Storage(format!("PostgreSQL: {}", chain(&e))),
    }
}

fn corrupt(key: impl Into<String>, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt { key: key.into(), reason: e.to_string() }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StateError> {
    serde_json::to_string(v).map_err(|e| StateError::Storage(e.to_string()))
}

/// The second advisory-lock key of a workspace (non-negative, so it reads the same as an oid).
fn workspace_key(workspace: &str) -> i32 {
    let h = Sha256::digest(workspace.as_bytes());
    i32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x7fff_ffff
}

/// Where a process runs, precisely enough to tell whether a pid is still the same process:
/// kernel boot, pid namespace, and the process's start time. Containers on one kernel share
/// the boot id but not the namespace, so they never judge each other's pids.
fn origin_of(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let start = start_time(pid)?;
    Some(format!("{}|{}|{start}", boot.trim(), ns.display()))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the process named by a lock row is certainly gone: it ran where this process runs
/// (same boot, same pid namespace) and its pid is now free or another process.
fn holder_is_dead(origin: &str, pid: u32) -> bool {
    let Some(ours) = origin_of(std::process::id()) else {
        return false;
    };
    let here = |o: &str| o.rsplit_once('|').map(|(place, _)| place.to_string());
    if here(origin).is_none() || here(origin) != here(&ours) {
        return false;
    }
    match (start_time(pid), origin.rsplit_once('|')) {
        (None, _) => true,
        (Some(now), Some((_, then))) => now != then,
        _ => false,
    }
}

/// The lock row of a workspace and whether its session still holds the advisory lock.
struct Holder {
    lock_id: String,
    info: LockInfo,
    backend_pid: i32,
    origin: String,
    holds: bool,
}

async fn holder(c: &impl GenericClient, workspace: &str) -> Result<Option<Holder>, StateError> {
    let row = c
        .query_opt(
            "SELECT l.lock_id, l.holder::text, l.backend_pid, l.origin,
                    EXISTS (SELECT 1 FROM pg_locks k
                            WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.backend_pid
                              AND k.classid = $2::int4::oid AND k.objid = $3::int4::oid AND k.objsubid = 2)
             FROM teeform_locks l WHERE l.workspace = $1",
            &[&workspace, &LOCK_CLASS, &workspace_key(workspace)],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.get(1);
    Ok(Some(Holder {
        lock_id: row.get(0),
        info: serde_json::from_str(&text).map_err(|e| corrupt(format!("lock of workspace {workspace}"), e))?,
        backend_pid: row.get(2),
        origin: row.get(3),
        holds: row.get(4),
    }))
}

/// TLS as for https: the server's certificate is verified against the system's trust store
/// (or SSL_CERT_FILE). With the default `sslmode=prefer` it is used whenever the server offers
/// it; `sslmode=require` insists on it, `sslmode=disable` turns it off.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StateError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| StateError::Storage(format!("cannot set up TLS for PostgreSQL: {e}")))?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Opens one session, with keepalives on both ends so that a runner that vanished without
/// closing its connection releases its lock within about a minute, not hours.
async fn connect(conn: &PgConn) -> Result<Client, StateError> {
    let mut cfg = conn.config()?;
    cfg.application_name("teeform");
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(15));
    }
    cfg.keepalives(true).keepalives_idle(Duration::from_secs(30)).keepalives_interval(Duration::from_secs(10));
    let (client, connection) = cfg.connect(tls()?).await.map_err(|e| {
        let mut msg = format!("cannot connect to PostgreSQL at {}: {}", conn.target(), chain(&e));
        if chain(&e).contains("TLS") {
            msg.push_str(
                " (the server's certificate must be one this machine trusts, as for https: add its CA to the \
                 system's store or name it in SSL_CERT_FILE; `sslmode=disable` connects without TLS)",
            );
        }
        StateError::Storage(conn.redact(&msg))
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {}", chain(&e));
        }
    });
    // Durable commits even where the server's default says otherwise; server-side keepalives.
    // (Ignored on Unix sockets.)
    client
        .batch_execute(
            "SET synchronous_commit = on; SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; \
             SET tcp_keepalives_count = 3",
        )
        .await
        .map_err(pg_err)?;
    Ok(client)
}

/// Creates or upgrades the tables; concurrent first runs wait for each other.
async fn migrate_schema(client: &mut Client) -> Result<(), StateError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&SCHEMA_CLASS]).await.map_err(pg_err)?;
    let exists: bool =
        tx.query_one("SELECT to_regclass('teeform_schema_version') IS NOT NULL", &[]).await.map_err(pg_err)?.get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE teeform_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg_err)?;
    }
    let current: i32 =
        tx.query_one("SELECT coalesce(max(version), 0) FROM teeform_schema_version", &[]).await.map_err(pg_err)?.get(0);
    let latest = MIGRATIONS.len() as i32;
    if current > latest {
        return Err(StateError::Storage(format!(
            "the PostgreSQL state has schema version {current}, newer than this teeform knows ({latest}); \
             upgrade teeform"
        )));
    }
    for (n, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(step).await.map_err(pg_err)?;
        tx.execute("INSERT INTO teeform_schema_version (version) VALUES ($1)", &[&(n as i32 + 1)])
            .await
            .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)
}

async fn read_meta(c: &impl GenericClient, workspace: &str) -> Result<Meta, StateError> {
    let row = c
        .query_opt("SELECT lineage, serial, salt, manifest FROM teeform_meta WHERE workspace = $1", &[&workspace])
        .await
        .map_err(pg_err)?
        .ok_or_else(|| corrupt("meta", format!("workspace {workspace} has no meta row")))?;
    let serial: i64 = row.get(1);
    Ok(Meta { lineage: row.get(0), serial: serial as u64, salt: row.get(2), manifest: row.get(3) })
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
}

impl PgStore {
    pub async fn open(opts: &OpenOptions, conn: &PgConn) -> Result<PgStore, StateError> {
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
        let fresh = Meta::fresh();
        client
            .execute(
                "INSERT INTO teeform_meta (workspace, lineage, serial, salt) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (workspace) DO NOTHING",
                &[&ws, &fresh.lineage, &fresh.salt],
            )
            .await
            .map_err(pg_err)?;
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
        let meta = read_meta(&client, ws).await?;
        Ok(PgStore {
            client: tokio::sync::Mutex::new(client),
            workspace: ws.to_string(),
            target,
            lock_id: opts.lock.id.clone(),
            serial: std::sync::Mutex::new(meta.serial),
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
}

/// Removes the lock record `id` of a workspace. If its session still holds the lock, that
/// session is ended, unless its process visibly still runs on this machine.
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
        let mut resources = std::collections::BTreeMap::new();
        for row in tx
            .query("SELECT address, record::text FROM teeform_resources WHERE workspace = $1", &[ws])
            .await
            .map_err(pg_err)?
        {
            let (address, text): (String, String) = (row.get(0), row.get(1));
            let rec: ResourceRecord = serde_json::from_str(&text).map_err(|e| corrupt(address.clone(), e))?;
            if rec.address != *address.as_str() {
                return Err(corrupt(address, format!("the record is of {}", rec.address)));
            }
            resources.insert(rec.address.clone(), rec);
        }
        let outputs = match tx
            .query_opt("SELECT outputs::text FROM teeform_outputs WHERE workspace = $1", &[ws])
            .await
            .map_err(pg_err)?
        {
            Some(row) => serde_json::from_str(row.get(0)).map_err(|e| corrupt("outputs", e))?,
            None => Default::default(),
        };
        tx.commit().await.map_err(pg_err)?;
        Ok(Snapshot { meta, resources, outputs })
    }

    async fn meta(&self) -> Result<Meta, StateError> {
        read_meta(&*self.client.lock().await, &self.workspace).await
    }

    async fn commit(&self, batch: Batch) -> Result<Meta, StateError> {
        let ws = &self.workspace;
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(pg_err)?;
        for r in &batch.put {
            tx.execute(
                "INSERT INTO teeform_resources (workspace, address, record) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (workspace, address) DO UPDATE SET record = excluded.record",
                &[ws, &r.address.as_str(), &to_json(r)?],
            )
            .await
            .map_err(pg_err)?;
        }
        for a in &batch.remove {
            tx.execute("DELETE FROM teeform_resources WHERE workspace = $1 AND address = $2", &[ws, &a.as_str()])
                .await
                .map_err(pg_err)?;
        }
        if let Some(o) = &batch.outputs {
            tx.execute(
                "INSERT INTO teeform_outputs (workspace, outputs) VALUES ($1, $2::text::jsonb)
                 ON CONFLICT (workspace) DO UPDATE SET outputs = excluded.outputs",
                &[ws, &to_json::<std::collections::BTreeMap<String, OutputValue>>(o)?],
            )
            .await
            .map_err(pg_err)?;
        }
        for j in &batch.journal_put {
            tx.execute(
                "INSERT INTO teeform_journal (workspace, id, entry) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (workspace, id) DO UPDATE SET entry = excluded.entry",
                &[ws, &j.id, &to_json(j)?],
            )
            .await
            .map_err(pg_err)?;
        }
        for id in &batch.journal_done {
            tx.execute("DELETE FROM teeform_journal WHERE workspace = $1 AND id = $2", &[ws, id])
                .await
                .map_err(pg_err)?;
        }
        if let Some(m) = &batch.bind {
            tx.execute("UPDATE teeform_meta SET manifest = $2 WHERE workspace = $1", &[ws, m]).await.map_err(pg_err)?;
        }
        let expected = self.expected_serial();
        let meta = if batch.changes_state() {
            let row = tx
                .query_opt(
                    "UPDATE teeform_meta SET serial = serial + 1 WHERE workspace = $1 AND serial = $2
                     RETURNING lineage, serial, salt, manifest",
                    &[ws, &(expected as i64)],
                )
                .await
                .map_err(pg_err)?;
            match row {
                Some(row) => {
                    let serial: i64 = row.get(1);
                    Meta { lineage: row.get(0), serial: serial as u64, salt: row.get(2), manifest: row.get(3) }
                }
                None => {
                    let found = read_meta(&tx, ws).await?.serial;
                    // Dropping the transaction rolls it back.
                    return Err(self.conflict(found));
                }
            }
        } else {
            read_meta(&tx, ws).await?
        };
        tx.commit().await.map_err(pg_err)?;
        self.saw_serial(meta.serial);
        Ok(meta)
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT id, entry::text FROM teeform_journal WHERE workspace = $1 ORDER BY id COLLATE \"C\"",
                &[&self.workspace],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|row| {
                let (id, text): (String, String) = (row.get(0), row.get(1));
                serde_json::from_str(&text).map_err(|e| corrupt(format!("journal {id}"), e))
            })
            .collect()
    }

    async fn restore(&self, snapshot: &Snapshot, journal: &[JournalEntry]) -> Result<(), StateError> {
        let ws = &self.workspace;
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(pg_err)?;
        for table in ["teeform_resources", "teeform_outputs", "teeform_journal"] {
            tx.execute(&format!("DELETE FROM {table} WHERE workspace = $1"), &[ws]).await.map_err(pg_err)?;
        }
        let m = &snapshot.meta;
        tx.execute(
            "UPDATE teeform_meta SET lineage = $2, serial = $3, salt = $4, manifest = $5 WHERE workspace = $1",
            &[ws, &m.lineage, &(m.serial as i64), &m.salt, &m.manifest],
        )
        .await
        .map_err(pg_err)?;
        for r in snapshot.resources.values() {
            tx.execute(
                "INSERT INTO teeform_resources (workspace, address, record) VALUES ($1, $2, $3::text::jsonb)",
                &[ws, &r.address.as_str(), &to_json(r)?],
            )
            .await
            .map_err(pg_err)?;
        }
        if !snapshot.outputs.is_empty() {
            tx.execute(
                "INSERT INTO teeform_outputs (workspace, outputs) VALUES ($1, $2::text::jsonb)",
                &[ws, &to_json(&snapshot.outputs)?],
            )
            .await
            .map_err(pg_err)?;
        }
        for j in journal {
            tx.execute(
                "INSERT INTO teeform_journal (workspace, id, entry) VALUES ($1, $2, $3::text::jsonb)",
                &[ws, &j.id, &to_json(j)?],
            )
            .await
            .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)?;
        self.saw_serial(m.serial);
        Ok(())
    }

    async fn close(&self) -> Result<(), StateError> {
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
        Ok(())
    }
}

/// These need a server: `scripts/test-postgres` starts one, sets TEEFORM_PG_CONN and runs them.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::migrate::tests::{entry, fill, rec};
    use crate::state::{Backend, MigrateError, SledStore, migrate};

    fn conn() -> PgConn {
        PgConn::new(std::env::var("TEEFORM_PG_CONN").expect("TEEFORM_PG_CONN (run scripts/test-postgres)"))
    }

    /// Each test works in its own workspace, so tests run in parallel on one database.
    fn opts(workspace: &str, timeout: Duration) -> OpenOptions {
        OpenOptions {
            dir: std::path::PathBuf::from("/nonexistent"),
            lock: LockInfo::for_command("test"),
            lock_timeout: timeout,
            backend: Backend::Postgres(conn()),
            workspace: workspace.into(),
        }
    }

    fn ws() -> String {
        format!("t-{}", uuid::Uuid::new_v4().simple())
    }

    async fn open(ws: &str) -> PgStore {
        PgStore::open(&opts(ws, Duration::ZERO), &conn()).await.unwrap()
    }

    /// A session that takes a workspace's lock and writes a lock row, as another process would.
    async fn foreign_holder(ws: &str, info: &LockInfo, origin: &str) -> Client {
        let mut c = connect(&conn()).await.unwrap();
        migrate_schema(&mut c).await.unwrap();
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &workspace_key(ws)])
            .await
            .unwrap()
            .get(0);
        assert!(got);
        c.execute(
            "INSERT INTO teeform_locks (workspace, lock_id, holder, backend_pid, origin)
             VALUES ($1, $2, $3::text::jsonb, pg_backend_pid(), $4)
             ON CONFLICT (workspace) DO UPDATE SET lock_id = excluded.lock_id, holder = excluded.holder,
                 backend_pid = excluded.backend_pid, origin = excluded.origin",
            &[&ws, &info.id, &serde_json::to_string(info).unwrap(), &origin],
        )
        .await
        .unwrap();
        c
    }

    fn here_with_start(start: &str) -> String {
        let ours = origin_of(std::process::id()).unwrap();
        format!("{}|{start}", ours.rsplit_once('|').unwrap().0)
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn commit_is_atomic_bumps_serial_and_keeps_workspaces_apart() {
        let (w1, w2) = (ws(), ws());
        let s = open(&w1).await;
        let other = open(&w2).await;
        let m0 = s.meta().await.unwrap();
        assert_eq!(m0.serial, 0);
        let m1 = s.commit(Batch { put: vec![rec("cvm.a"), rec("cvm.b")], ..Default::default() }).await.unwrap();
        assert_eq!((m1.serial, &m1.lineage), (1, &m0.lineage));
        let m2 = s.commit(Batch { journal_put: vec![entry("1")], ..Default::default() }).await.unwrap();
        assert_eq!(m2.serial, 1, "journal-only writes keep the serial");
        assert_eq!(s.journal().await.unwrap(), vec![entry("1")]);
        s.commit(Batch { remove: vec!["cvm.a".into()], journal_done: vec!["1".into()], ..Default::default() })
            .await
            .unwrap();
        let snap = s.snapshot().await.unwrap();
        assert_eq!(snap.resources.keys().collect::<Vec<_>>(), ["cvm.b"]);
        assert_eq!(snap.resources["cvm.b"], rec("cvm.b"));
        assert_eq!(snap.meta.serial, 2);
        assert!(s.journal().await.unwrap().is_empty());
        let o = other.snapshot().await.unwrap();
        assert!(o.resources.is_empty() && o.meta.serial == 0 && o.meta.lineage != m0.lineage);
        s.close().await.unwrap();
        other.close().await.unwrap();
        // Reopened, the state is all there.
        let again = open(&w1).await;
        assert_eq!(again.snapshot().await.unwrap(), snap);
        again.close().await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn second_open_is_locked_names_holder_and_waits_with_a_timeout() {
        let w = ws();
        let s = open(&w).await;
        match PgStore::open(&opts(&w, Duration::ZERO), &conn()).await {
            Err(StateError::Locked { holder: Some(h), path }) => {
                assert_eq!(h.command, "test");
                assert!(path.contains(&w), "{path}");
            }
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        let waiter = tokio::spawn({
            let w = w.clone();
            async move { PgStore::open(&opts(&w, Duration::from_secs(30)), &conn()).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "the second open waits for the lock");
        s.close().await.unwrap();
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_row_left_by_a_dead_session_blocks_nobody() {
        let w = ws();
        let s = open(&w).await;
        let old_id = s.lock_id.clone();
        // No close: the connection ends as when a process dies, leaving its lock row behind.
        drop(s);
        let s2 = PgStore::open(&opts(&w, Duration::from_secs(10)), &conn()).await.unwrap();
        let c = connect(&conn()).await.unwrap();
        let h = holder(&c, &w).await.unwrap().unwrap();
        assert!(h.holds);
        assert_eq!(h.lock_id, s2.lock_id);
        assert!(matches!(force_unlock(&conn(), &w, &old_id).await, Err(StateError::NoSuchLock(_))));
        s2.close().await.unwrap();
        assert!(holder(&c, &w).await.unwrap().is_none(), "close removes the row");
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_dead_holder_on_this_machine_has_its_lingering_session_ended() {
        let w = ws();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let info = LockInfo { pid: dead_pid, ..LockInfo::for_command("apply") };
        let lingering = foreign_holder(&w, &info, &here_with_start("1")).await;
        let s = PgStore::open(&opts(&w, Duration::ZERO), &conn()).await.unwrap();
        assert!(lingering.query_one("SELECT 1", &[]).await.is_err(), "the dead holder's session was ended");
        s.close().await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn force_unlock_ends_a_holder_elsewhere_but_not_a_live_one_here() {
        let w = ws();
        let info = LockInfo { host: "runner-7".into(), pid: 1, ..LockInfo::for_command("apply") };
        let elsewhere = foreign_holder(&w, &info, "another-boot|pid:[1]|1").await;
        match PgStore::open(&opts(&w, Duration::ZERO), &conn()).await {
            Err(StateError::Locked { holder: Some(h), .. }) => assert_eq!(h, info),
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        assert!(matches!(force_unlock(&conn(), &w, "not-it").await, Err(StateError::NoSuchLock(_))));
        force_unlock(&conn(), &w, &info.id).await.unwrap();
        assert!(elsewhere.query_one("SELECT 1", &[]).await.is_err());
        let s = open(&w).await;
        s.close().await.unwrap();

        // A holder that visibly runs on this machine (this very process) is not cut off.
        let me = LockInfo::for_command("apply");
        let live = foreign_holder(&w, &me, &origin_of(std::process::id()).unwrap()).await;
        assert!(matches!(force_unlock(&conn(), &w, &me.id).await, Err(StateError::Locked { .. })));
        live.query_one("SELECT 1", &[]).await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_write_without_the_lock_is_detected_by_the_serial() {
        let w = ws();
        let s = open(&w).await;
        s.commit(Batch { put: vec![rec("cvm.a")], ..Default::default() }).await.unwrap();
        let intruder = connect(&conn()).await.unwrap();
        intruder.execute("UPDATE teeform_meta SET serial = serial + 1 WHERE workspace = $1", &[&w]).await.unwrap();
        let err = s.commit(Batch { put: vec![rec("cvm.b")], ..Default::default() }).await.unwrap_err();
        assert!(err.to_string().contains("changed underneath"), "{err}");
        assert_eq!(s.snapshot().await.unwrap().resources.keys().collect::<Vec<_>>(), ["cvm.a"], "rolled back");
        s.close().await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_lost_connection_is_a_clear_error() {
        let w = ws();
        let s = open(&w).await;
        let pid: i32 = s.client.lock().await.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        let admin = connect(&conn()).await.unwrap();
        admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let err = s.commit(Batch { put: vec![rec("cvm.a")], ..Default::default() }).await.unwrap_err();
        assert!(err.to_string().contains("lost the connection to PostgreSQL"), "{err}");
        // The lock went with the session.
        open(&w).await.close().await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn tables_are_created_once_when_first_runs_race() {
        let schema = format!("s_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&conn()).await.unwrap();
        admin.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        let base = std::env::var("TEEFORM_PG_CONN").unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let in_schema = PgConn::new(format!("{base}{sep}options=-csearch_path%3D{schema}"));
        let (oa, ob) = (opts("a", Duration::ZERO), opts("b", Duration::ZERO));
        let (a, b) = tokio::join!(PgStore::open(&oa, &in_schema), PgStore::open(&ob, &in_schema));
        let (a, b) = (a.unwrap(), b.unwrap());
        a.commit(Batch { put: vec![rec("cvm.a")], ..Default::default() }).await.unwrap();
        let versions: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {schema}.teeform_schema_version"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, MIGRATIONS.len() as i64);
        let rows: i64 =
            admin.query_one(&format!("SELECT count(*) FROM {schema}.teeform_resources"), &[]).await.unwrap().get(0);
        assert_eq!(rows, 1, "the tables live in the schema the connection names");
        a.close().await.unwrap();
        b.close().await.unwrap();
        admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn migrate_round_trip_through_postgres_is_lossless() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let local =
            |d: &std::path::Path| OpenOptions::local(d.to_path_buf(), LockInfo::for_command("test"), Duration::ZERO);
        let src = SledStore::open(&local(a.path())).await.unwrap();
        fill(&src).await;
        let pg = open(&ws()).await;
        migrate(&src, &pg).await.unwrap();
        let back = SledStore::open(&local(b.path())).await.unwrap();
        migrate(&pg, &back).await.unwrap();
        assert_eq!(back.snapshot().await.unwrap(), src.snapshot().await.unwrap());
        assert_eq!(back.journal().await.unwrap(), src.journal().await.unwrap());
        assert!(matches!(migrate(&pg, &src).await, Ok(m) if m.replaced == Some(m.meta.serial)));
        let unrelated = open(&ws()).await;
        unrelated.commit(Batch { put: vec![rec("cvm.x")], ..Default::default() }).await.unwrap();
        assert!(matches!(migrate(&src, &unrelated).await, Err(MigrateError::OtherState { .. })));
        pg.close().await.unwrap();
        unrelated.close().await.unwrap();
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn sessions_use_tls_with_a_verified_certificate() {
        let c = connect(&conn()).await.unwrap();
        let ssl: bool =
            c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
        assert!(ssl, "scripts/test-postgres serves TLS and asks for it (sslmode=require)");
        // The certificate names 127.0.0.1 only: under another name the server is not trusted.
        let base = std::env::var("TEEFORM_PG_CONN").unwrap();
        assert!(base.contains("@127.0.0.1:"));
        let other_name = PgConn::new(base.replace("@127.0.0.1:", "@localhost:"));
        let Err(err) = connect(&other_name).await else { panic!("a server under a name its certificate lacks") };
        let err = err.to_string();
        assert!(err.contains("TLS") && err.contains("SSL_CERT_FILE"), "{err}");
    }

    /// No server needed: the connection string never shows in errors or debug output.
    #[tokio::test]
    async fn the_connection_string_never_prints() {
        let secret = "s3cr3t-pw-8d1f";
        let c = PgConn::new(format!("postgres://team:{secret}@127.0.0.1:1/teeform"));
        assert!(!format!("{c:?}").contains(secret));
        let o = OpenOptions { backend: Backend::Postgres(c.clone()), ..opts_local() };
        assert!(!format!("{o:?}").contains(secret));
        let err = PgStore::open(&o, &c).await.err().expect("nothing listens on port 1");
        let msg = err.to_string();
        assert!(msg.contains("cannot connect to PostgreSQL at 127.0.0.1:1/teeform"), "{msg}");
        assert!(!msg.contains(secret), "{msg}");
        let bad = PgConn::new(format!("postgres://team:{secret}@127.0.0.1:notaport/x"));
        let msg = PgStore::open(&o, &bad).await.err().expect("invalid").to_string();
        assert!(msg.contains("not a valid PostgreSQL connection string") && !msg.contains(secret), "{msg}");
    }

    fn opts_local() -> OpenOptions {
        OpenOptions::local("/nonexistent".into(), LockInfo::for_command("test"), Duration::ZERO)
    }

    #[test]
    fn holders_elsewhere_are_never_judged_dead() {
        assert!(!holder_is_dead("another-boot|pid:[1]|1", 1));
        assert!(!holder_is_dead(&origin_of(std::process::id()).unwrap(), std::process::id()));
        assert!(holder_is_dead(&here_with_start("1"), std::process::id()), "same pid, another start time");
        assert!(!holder_is_dead("", 1));
    }
}
