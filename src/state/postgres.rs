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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient, IsolationLevel};

use super::integrity::{Backup, Seal, Tally};
use super::{BackupInfo, Batch, JournalEntry, LockInfo, Meta, OpenOptions, Recovered, Snapshot, StateError, Store};
use crate::model::{Address, OutputValue, ResourceRecord};

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
    // The seal (see the module docs). Workspaces from before have format 0 and no seal row:
    // each is sealed as it is when it is next opened.
    "
ALTER TABLE teeform_meta ADD COLUMN format integer NOT NULL DEFAULT 0;
CREATE TABLE teeform_seals (
    workspace text PRIMARY KEY,
    seal jsonb NOT NULL
);
CREATE TABLE teeform_backups (
    workspace text PRIMARY KEY,
    seal jsonb NOT NULL,
    sha256 text NOT NULL,
    body text NOT NULL
);
CREATE TABLE teeform_set_aside (
    workspace text NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now(),
    rows jsonb NOT NULL
);
",
];

/// The format of a workspace's rows. 0: before teeform kept a seal (read, and sealed on first
/// open); 1: sealed. A workspace in a newer format is refused, not misread.
pub const FORMAT: u32 = 1;

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
    meta_row(c, workspace).await?.map(|(meta, _)| meta).ok_or_else(|| {
        corrupt("meta", format!("workspace {workspace} has no identity row (lineage and serial) in teeform_meta"))
    })
}

/// The workspace's identity and the format of its rows, if it has an identity row.
async fn meta_row(c: &impl GenericClient, workspace: &str) -> Result<Option<(Meta, u32)>, StateError> {
    let row = c
        .query_opt(
            "SELECT lineage, serial, salt, manifest, format FROM teeform_meta WHERE workspace = $1",
            &[&workspace],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|row| {
        let (serial, format): (i64, i32) = (row.get(1), row.get(4));
        let meta = Meta { lineage: row.get(0), serial: serial as u64, salt: row.get(2), manifest: row.get(3) };
        (meta, format.max(0) as u32)
    }))
}

/// The key the outputs row is counted under (the table has one row per workspace).
const OUTPUTS_KEY: &str = "outputs";

/// A table of records keyed within a workspace, and its key and value (jsonb) columns.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    key: &'static str,
    value: &'static str,
}

const RESOURCES: Table = Table { name: "teeform_resources", key: "address", value: "record" };
const JOURNAL: Table = Table { name: "teeform_journal", key: "id", value: "entry" };

/// `(key, value)` of every row of `t` in the workspace, values as PostgreSQL prints them;
/// ordered by key, bytewise.
async fn rows_of(c: &impl GenericClient, t: Table, ws: &str) -> Result<Vec<(String, String)>, StateError> {
    let sql = format!(
        "SELECT {k}, {v}::text FROM {n} WHERE workspace = $1 ORDER BY {k} COLLATE \"C\"",
        k = t.key,
        v = t.value,
        n = t.name
    );
    let rows = c.query(&sql, &[&ws]).await.map_err(pg_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn outputs_row(c: &impl GenericClient, ws: &str) -> Result<Option<String>, StateError> {
    let row =
        c.query_opt("SELECT outputs::text FROM teeform_outputs WHERE workspace = $1", &[&ws]).await.map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

/// Writes one row of `t`; returns its value as stored and the value it replaced, both as
/// PostgreSQL prints them (what the seal counts). One statement, whatever the table's size.
async fn put_row(
    c: &impl GenericClient,
    t: Table,
    ws: &str,
    key: &str,
    json: &str,
) -> Result<(String, Option<String>), StateError> {
    let sql = format!(
        "WITH old AS (SELECT {v}::text AS v FROM {n} WHERE workspace = $1 AND {k} = $2)
         INSERT INTO {n} (workspace, {k}, {v}) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (workspace, {k}) DO UPDATE SET {v} = excluded.{v}
         RETURNING {v}::text, (SELECT v FROM old)",
        k = t.key,
        v = t.value,
        n = t.name
    );
    let row = c.query_one(&sql, &[&ws, &key, &json]).await.map_err(pg_err)?;
    Ok((row.get(0), row.get(1)))
}

/// Deletes one row of `t`; returns the value it had.
async fn delete_row(c: &impl GenericClient, t: Table, ws: &str, key: &str) -> Result<Option<String>, StateError> {
    let sql = format!(
        "DELETE FROM {n} WHERE workspace = $1 AND {k} = $2 RETURNING {v}::text",
        k = t.key,
        v = t.value,
        n = t.name
    );
    let row = c.query_opt(&sql, &[&ws, &key]).await.map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

async fn put_outputs(c: &impl GenericClient, ws: &str, json: &str) -> Result<(String, Option<String>), StateError> {
    let row = c
        .query_one(
            "WITH old AS (SELECT outputs::text AS v FROM teeform_outputs WHERE workspace = $1)
             INSERT INTO teeform_outputs (workspace, outputs) VALUES ($1, $2::text::jsonb)
             ON CONFLICT (workspace) DO UPDATE SET outputs = excluded.outputs
             RETURNING outputs::text, (SELECT v FROM old)",
            &[&ws, &json],
        )
        .await
        .map_err(pg_err)?;
    Ok((row.get(0), row.get(1)))
}

/// Moves one record in a tally from its old value (if it had one) to its new one (if any).
fn retally(t: &mut Tally, key: &str, old: Option<&str>, new: Option<&str>) {
    if let Some(old) = old {
        t.remove(key.as_bytes(), old.as_bytes());
    }
    if let Some(new) = new {
        t.add(key.as_bytes(), new.as_bytes());
    }
}

fn tally<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>) -> Tally {
    let mut t = Tally::default();
    for (k, v) in rows {
        t.add(k.as_bytes(), v.as_bytes());
    }
    t
}

/// Everything a workspace's state holds, values as PostgreSQL prints them: what the seal is
/// counted over.
struct Rows {
    meta: Option<(Meta, u32)>,
    /// The seal row's value, unparsed (it may be damaged too).
    seal: Option<String>,
    resources: Vec<(String, String)>,
    outputs: Option<String>,
    journal: Vec<(String, String)>,
    /// The backup row's seal, unparsed (whether the copy is whole is checked by
    /// [`read_backup`], before anything is put back from it).
    backup: Option<String>,
}

impl Rows {
    async fn read(c: &impl GenericClient, ws: &str) -> Result<Rows, StateError> {
        let seal_of = |table: &'static str| async move {
            let sql = format!("SELECT seal::text FROM {table} WHERE workspace = $1");
            Ok::<_, StateError>(c.query_opt(&sql, &[&ws]).await.map_err(pg_err)?.map(|r| r.get(0)))
        };
        Ok(Rows {
            meta: meta_row(c, ws).await?,
            seal: seal_of("teeform_seals").await?,
            resources: rows_of(c, RESOURCES, ws).await?,
            outputs: outputs_row(c, ws).await?,
            journal: rows_of(c, JOURNAL, ws).await?,
            backup: seal_of("teeform_backups").await?,
        })
    }

    /// Whether the workspace has no state rows (its backup aside).
    fn is_empty(&self) -> bool {
        self.meta.is_none()
            && self.seal.is_none()
            && self.resources.is_empty()
            && self.outputs.is_none()
            && self.journal.is_empty()
    }

    /// The seal parsed: `None` if there is no seal row, `Err` if it cannot be read.
    fn seal(&self) -> Option<Result<Seal, ()>> {
        self.seal.as_deref().map(|t| serde_json::from_str(t).map_err(|_| ()))
    }

    /// The seal of the backup, if it has a readable one.
    fn backup_seal(&self) -> Option<Seal> {
        self.backup.as_deref().and_then(|t| serde_json::from_str(t).ok())
    }

    /// A format newer than this teeform's, if the identity or seal row names one.
    fn too_new(&self) -> Option<u32> {
        let seal = self.seal().and_then(Result::ok).map(|s| s.format);
        self.meta.iter().map(|(_, f)| *f).chain(seal).max().filter(|f| *f > FORMAT)
    }

    /// The seal these rows would have, with the identity `meta` gives.
    fn count(&self, meta: &Meta, writes: u64) -> Seal {
        let pairs = |rows: &'_ [(String, String)]| tally(rows.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Seal {
            format: FORMAT,
            lineage: meta.lineage.clone(),
            serial: meta.serial,
            writes,
            resources: pairs(&self.resources),
            outputs: tally(self.outputs.as_deref().map(|v| (OUTPUTS_KEY, v))),
            journal: pairs(&self.journal),
        }
    }

    fn snapshot(&self, meta: Meta) -> Result<Snapshot, StateError> {
        Ok(Snapshot {
            meta,
            resources: parse_resources(&self.resources)?,
            outputs: parse_outputs(self.outputs.as_deref())?,
        })
    }

    fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        parse_journal(&self.journal)
    }
}

/// Records by address; a row holding another address's record is corrupt.
fn parse_resources(rows: &[(String, String)]) -> Result<BTreeMap<Address, ResourceRecord>, StateError> {
    rows.iter()
        .map(|(address, text)| {
            let rec: ResourceRecord = serde_json::from_str(text).map_err(|e| corrupt(address.clone(), e))?;
            if rec.address != *address.as_str() {
                return Err(corrupt(address.clone(), format!("the record is of {}", rec.address)));
            }
            Ok((rec.address.clone(), rec))
        })
        .collect()
}

fn parse_outputs(text: Option<&str>) -> Result<BTreeMap<String, OutputValue>, StateError> {
    match text {
        Some(t) => serde_json::from_str(t).map_err(|e| corrupt("outputs", e)),
        None => Ok(BTreeMap::new()),
    }
}

fn parse_journal(rows: &[(String, String)]) -> Result<Vec<JournalEntry>, StateError> {
    rows.iter().map(|(id, text)| serde_json::from_str(text).map_err(|e| corrupt(format!("journal {id}"), e))).collect()
}

/// The copy in `teeform_backups`: `Ok(None)` if there is none; `Err` (a reason) if it is not
/// whole.
async fn read_backup(c: &impl GenericClient, ws: &str) -> Result<Option<Backup>, String> {
    let row = c
        .query_opt("SELECT seal::text, sha256, body FROM teeform_backups WHERE workspace = $1", &[&ws])
        .await
        .map_err(|e| pg_err(e).to_string())?;
    let Some(row) = row else { return Ok(None) };
    let (seal, sha, body): (&str, &str, &str) = (row.get(0), row.get(1), row.get(2));
    let damaged = |why: &str| format!("the copy in teeform_backups is damaged ({why})");
    if hex::encode(Sha256::digest(body.as_bytes())) != sha {
        return Err(damaged("its checksum does not match"));
    }
    let backup: Backup = serde_json::from_str(body).map_err(|e| damaged(&e.to_string()))?;
    let seal: Seal = serde_json::from_str(seal).map_err(|_| damaged("its seal cannot be read"))?;
    if backup.seal != seal {
        return Err(damaged("its seal and contents disagree"));
    }
    if backup.format > FORMAT {
        return Err(format!(
            "the copy in teeform_backups was written by a newer teeform (state format {})",
            backup.format
        ));
    }
    Ok(Some(backup))
}

async fn write_backup(c: &impl GenericClient, ws: &str, backup: &Backup) -> Result<(), StateError> {
    let body = to_json(backup)?;
    c.execute(
        "INSERT INTO teeform_backups (workspace, seal, sha256, body) VALUES ($1, $2::text::jsonb, $3, $4)
         ON CONFLICT (workspace) DO UPDATE SET seal = excluded.seal, sha256 = excluded.sha256, body = excluded.body",
        &[&ws, &to_json(&backup.seal)?, &hex::encode(Sha256::digest(body.as_bytes())), &body],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Where `teeform state recover` finds the copy (named in messages as a backup file is).
const BACKUP_PLACE: &str = "table teeform_backups";

fn backup_info(b: &Backup) -> BackupInfo {
    BackupInfo {
        path: BACKUP_PLACE.into(),
        serial: b.meta.serial,
        written_at: b.written_at.clone(),
        resources: b.resources.len(),
    }
}

async fn write_seal(c: &impl GenericClient, ws: &str, seal: &Seal) -> Result<(), StateError> {
    c.execute(
        "INSERT INTO teeform_seals (workspace, seal) VALUES ($1, $2::text::jsonb)
         ON CONFLICT (workspace) DO UPDATE SET seal = excluded.seal",
        &[&ws, &to_json(seal)?],
    )
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Replaces everything the workspace holds (identity included) with `snapshot` and `journal`,
/// sealed with `writes`, in the caller's transaction.
async fn replace(
    c: &impl GenericClient,
    ws: &str,
    snapshot: &Snapshot,
    journal: &[JournalEntry],
    writes: u64,
) -> Result<Seal, StateError> {
    for table in ["teeform_resources", "teeform_outputs", "teeform_journal"] {
        c.execute(&format!("DELETE FROM {table} WHERE workspace = $1"), &[&ws]).await.map_err(pg_err)?;
    }
    let m = &snapshot.meta;
    c.execute(
        "INSERT INTO teeform_meta (workspace, lineage, serial, salt, manifest, format) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (workspace) DO UPDATE SET lineage = excluded.lineage, serial = excluded.serial,
             salt = excluded.salt, manifest = excluded.manifest, format = excluded.format",
        &[&ws, &m.lineage, &(m.serial as i64), &m.salt, &m.manifest, &(FORMAT as i32)],
    )
    .await
    .map_err(pg_err)?;
    let mut seal = Seal {
        format: FORMAT,
        lineage: m.lineage.clone(),
        serial: m.serial,
        writes,
        resources: Tally::default(),
        outputs: Tally::default(),
        journal: Tally::default(),
    };
    for r in snapshot.resources.values() {
        let (new, _) = put_row(c, RESOURCES, ws, r.address.as_str(), &to_json(r)?).await?;
        retally(&mut seal.resources, r.address.as_str(), None, Some(&new));
    }
    if !snapshot.outputs.is_empty() {
        let (new, _) = put_outputs(c, ws, &to_json(&snapshot.outputs)?).await?;
        retally(&mut seal.outputs, OUTPUTS_KEY, None, Some(&new));
    }
    for j in journal {
        let (new, _) = put_row(c, JOURNAL, ws, &j.id, &to_json(j)?).await?;
        retally(&mut seal.journal, &j.id, None, Some(&new));
    }
    write_seal(c, ws, &seal).await?;
    Ok(seal)
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
                if let Some(problem) = seal.differs(&rows.count(meta, seal.writes)) {
                    return Err(self.damaged(&tx, problem).await);
                }
                // A backup newer than the rows means writes were lost: the tables were put back
                // to an earlier point.
                if let Some(b) = &backup
                    && b.lineage == seal.lineage
                    && b.writes > seal.writes
                {
                    return Err(self
                        .damaged(
                            &tx,
                            format!(
                                "its rows are older than its backup (write {} of {}, serial {} of {}): they were \
                                 put back to an earlier point",
                                seal.writes, b.writes, seal.serial, b.serial
                            ),
                        )
                        .await);
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
        // The intruder's write also broke the seal: the backup is not refreshed from it, and
        // the next open refuses the state.
        let err = s.close().await.unwrap_err().to_string();
        assert!(err.contains("its backup was not") && err.contains("is damaged"), "{err}");
        assert!(matches!(PgStore::open(&opts(&w, Duration::ZERO), &conn()).await, Err(StateError::Damaged { .. })));
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
        let (ws_pg, snap) = (pg.workspace.clone(), pg.snapshot().await.unwrap());
        pg.close().await.unwrap();
        unrelated.close().await.unwrap();
        // The copy is sealed: it opens as whole, and its backup is that copy.
        let again = open(&ws_pg).await;
        assert_eq!(again.snapshot().await.unwrap(), snap);
        let backup = read_backup(&*again.client.lock().await, &ws_pg).await.unwrap().unwrap();
        assert_eq!(backup.snapshot(), snap);
        again.close().await.unwrap();
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

    /// The tables that hold a workspace's state (the lock and the set-aside tables aside).
    const STATE_TABLES: [&str; 6] =
        ["teeform_meta", "teeform_seals", "teeform_resources", "teeform_outputs", "teeform_journal", "teeform_backups"];

    /// Every row a workspace has in `tables`, as (table, row as JSON), in a fixed order.
    async fn rows(c: &Client, ws: &str, tables: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for t in tables {
            let sql = format!("SELECT to_jsonb(x)::text FROM {t} x WHERE workspace = $1 ORDER BY 1");
            for r in c.query(&sql, &[&ws]).await.unwrap() {
                out.push((t.to_string(), r.get(0)));
            }
        }
        out
    }

    /// Puts a workspace's rows in the tables `saved` came from back as they were then (what
    /// restoring those tables from a dump does).
    async fn put_back(c: &Client, ws: &str, tables: &[&str], saved: &[(String, String)]) {
        for t in tables {
            c.execute(&format!("DELETE FROM {t} WHERE workspace = $1"), &[&ws]).await.unwrap();
        }
        for (t, row) in saved {
            c.execute(
                &format!("INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, $1::text::jsonb)"),
                &[row],
            )
            .await
            .unwrap();
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Damage {
        ResourceDeleted,
        ResourceEdited,
        OutputsEdited,
        JournalDeleted,
        SealDeleted,
        SealGarbled,
        MetaDeleted,
        SerialEdited,
        /// The record tables put back to an earlier copy; identity and seal kept.
        RecordsRolledBack,
        /// Every table but the backup put back to an earlier copy.
        TablesRolledBack,
    }

    impl Damage {
        const ALL: [Damage; 10] = [
            Damage::ResourceDeleted,
            Damage::ResourceEdited,
            Damage::OutputsEdited,
            Damage::JournalDeleted,
            Damage::SealDeleted,
            Damage::SealGarbled,
            Damage::MetaDeleted,
            Damage::SerialEdited,
            Damage::RecordsRolledBack,
            Damage::TablesRolledBack,
        ];

        /// Inflicts the damage; returns what the error must say.
        async fn inflict(self, c: &Client, ws: &str, earlier: &[(String, String)]) -> &'static str {
            let run = |sql: &'static str| async move { assert_eq!(c.execute(sql, &[&ws]).await.unwrap(), 1, "{sql}") };
            match self {
                Damage::ResourceDeleted => {
                    run("DELETE FROM teeform_resources WHERE workspace = $1 AND address = 'cvm.b'").await;
                    "it holds 2 resource record(s) where 3 were written"
                }
                Damage::ResourceEdited => {
                    run("UPDATE teeform_resources SET record = jsonb_set(record, '{attrs,vcpu}', '8')
                         WHERE workspace = $1 AND address = 'cvm.a'")
                    .await;
                    "one of its resource records differs from what was written"
                }
                Damage::OutputsEdited => {
                    run("UPDATE teeform_outputs SET outputs = outputs - 's' WHERE workspace = $1").await;
                    "one of its output records differs"
                }
                Damage::JournalDeleted => {
                    run("DELETE FROM teeform_journal WHERE workspace = $1 AND id = 'j0'").await;
                    "it holds 1 journal entry record(s) where 2 were written"
                }
                Damage::SealDeleted => {
                    run("DELETE FROM teeform_seals WHERE workspace = $1").await;
                    "its seal row (in teeform_seals) is missing"
                }
                Damage::SealGarbled => {
                    run("UPDATE teeform_seals SET seal = seal - 'resources' WHERE workspace = $1").await;
                    "its seal row (in teeform_seals) cannot be read"
                }
                Damage::MetaDeleted => {
                    run("DELETE FROM teeform_meta WHERE workspace = $1").await;
                    "its identity row (lineage and serial, in teeform_meta) is missing"
                }
                Damage::SerialEdited => {
                    run("UPDATE teeform_meta SET serial = serial - 1 WHERE workspace = $1").await;
                    "its lineage and serial"
                }
                Damage::RecordsRolledBack => {
                    let tables = ["teeform_resources", "teeform_outputs", "teeform_journal"];
                    let older: Vec<_> = earlier.iter().filter(|(t, _)| tables.contains(&t.as_str())).cloned().collect();
                    put_back(c, ws, &tables, &older).await;
                    "it holds 2 resource record(s) where 3 were written"
                }
                Damage::TablesRolledBack => {
                    put_back(c, ws, &STATE_TABLES[..5], earlier).await;
                    "its rows are older than its backup (write 2 of 3, serial 2 of 3)"
                }
            }
        }
    }

    /// A closed workspace with 3 resources, outputs, 2 journal entries, serial 3 and a backup
    /// of all that; and the rows of its state tables (not the backup) from before the last write.
    async fn sealed_state(w: &str) -> (Snapshot, Vec<JournalEntry>, Vec<(String, String)>) {
        let s = open(w).await;
        fill(&s).await;
        let earlier = rows(&*s.client.lock().await, w, &STATE_TABLES[..5]).await;
        s.commit(Batch { put: vec![rec("cvm.c")], ..Default::default() }).await.unwrap();
        let (snap, journal) = (s.snapshot().await.unwrap(), s.journal().await.unwrap());
        assert_eq!((snap.resources.len(), snap.outputs.len(), journal.len(), snap.meta.serial), (3, 2, 2, 3));
        s.close().await.unwrap();
        (snap, journal, earlier)
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn each_kind_of_damage_is_refused_changes_nothing_and_the_backup_brings_the_state_back() {
        let admin = connect(&conn()).await.unwrap();
        for d in Damage::ALL {
            let w = ws();
            let (want, want_journal, earlier) = sealed_state(&w).await;
            let expected = d.inflict(&admin, &w, &earlier).await;
            let before = rows(&admin, &w, &STATE_TABLES).await;
            for _ in 0..2 {
                match PgStore::open(&opts(&w, Duration::ZERO), &conn()).await.err() {
                    Some(StateError::Damaged { path, problem, backup: Some(b) }) => {
                        assert!(problem.contains(expected), "{d:?}: {problem}");
                        assert!(path.contains(&w), "{d:?}: {path}");
                        assert_eq!((b.path.as_str(), b.serial, b.resources), (BACKUP_PLACE, 3, 3), "{d:?}");
                    }
                    other => panic!("{d:?}: expected Damaged with a backup, got {:?}", other.map(|e| e.to_string())),
                }
                assert_eq!(rows(&admin, &w, &STATE_TABLES).await, before, "{d:?}: nothing was changed");
            }
            let r = PgStore::recover(&opts(&w, Duration::ZERO), &conn(), false).await.unwrap();
            assert_eq!((r.resources, r.journal), (3, 2), "{d:?}");
            assert!(r.from_backup.is_some() && r.set_aside.as_deref().is_some_and(|a| a.contains("teeform_set_aside")));
            assert!(r.serial > want.meta.serial, "{d:?}: saved plans from before are stale");
            let s = open(&w).await;
            let got = s.snapshot().await.unwrap();
            assert_eq!(got.meta.serial, r.serial);
            assert_eq!(Snapshot { meta: want.meta.clone(), ..got }, want, "{d:?}");
            assert_eq!(s.journal().await.unwrap(), want_journal, "{d:?}");
            s.commit(Batch { remove: vec!["cvm.c".into()], ..Default::default() }).await.unwrap();
            s.close().await.unwrap();
            open(&w).await.close().await.unwrap();
            // What the recovery replaced is kept, as it was.
            let aside: Vec<serde_json::Value> = admin
                .query("SELECT rows::text FROM teeform_set_aside WHERE workspace = $1", &[&w])
                .await
                .unwrap()
                .iter()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
                .collect();
            assert_eq!(aside.len(), 1, "{d:?}");
            let kept = aside[0]["resources"].as_object().unwrap().len();
            assert_eq!(
                kept,
                if matches!(d, Damage::ResourceDeleted | Damage::RecordsRolledBack | Damage::TablesRolledBack) {
                    2
                } else {
                    3
                },
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn keep_current_accepts_rows_put_back_on_purpose() {
        let admin = connect(&conn()).await.unwrap();
        let w = ws();
        let (want, _, earlier) = sealed_state(&w).await;
        Damage::TablesRolledBack.inflict(&admin, &w, &earlier).await;
        assert!(matches!(PgStore::open(&opts(&w, Duration::ZERO), &conn()).await, Err(StateError::Damaged { .. })));
        let r = PgStore::recover(&opts(&w, Duration::ZERO), &conn(), true).await.unwrap();
        assert_eq!((r.from_backup, r.set_aside, r.resources, r.journal), (None, None, 2, 2));
        assert_eq!(r.serial, 4, "past the rows' serial (2) and the backup's (3)");
        let s = open(&w).await;
        let snap = s.snapshot().await.unwrap();
        assert_eq!(snap.resources.keys().collect::<Vec<_>>(), ["cvm.a", "cvm.b"]);
        assert_eq!((snap.meta.lineage, snap.meta.serial), (want.meta.lineage, 4));
        s.commit(Batch { put: vec![rec("cvm.d")], ..Default::default() }).await.unwrap();
        s.close().await.unwrap();
        assert_eq!(open(&w).await.snapshot().await.unwrap().resources.len(), 3);

        // Rows without an identity cannot be kept; the backup can still be put back.
        let w = ws();
        let (want, _, earlier) = sealed_state(&w).await;
        Damage::MetaDeleted.inflict(&admin, &w, &earlier).await;
        let err = PgStore::recover(&opts(&w, Duration::ZERO), &conn(), true).await.unwrap_err().to_string();
        assert!(err.contains("identity row") && err.contains("without --keep-current"), "{err}");
        PgStore::recover(&opts(&w, Duration::ZERO), &conn(), false).await.unwrap();
        assert_eq!(open(&w).await.snapshot().await.unwrap().resources, want.resources);

        // Nor rows that do not read back: the error names the record.
        let w = ws();
        sealed_state(&w).await;
        admin
            .execute("UPDATE teeform_resources SET record = '[1]' WHERE workspace = $1 AND address = 'cvm.b'", &[&w])
            .await
            .unwrap();
        let before = rows(&admin, &w, &STATE_TABLES).await;
        let err = PgStore::recover(&opts(&w, Duration::ZERO), &conn(), true).await.unwrap_err().to_string();
        assert!(err.contains("its record cvm.b cannot be read") && err.contains("without --keep-current"), "{err}");
        assert_eq!(rows(&admin, &w, &STATE_TABLES).await, before, "nothing was changed");
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_damaged_backup_is_never_put_back() {
        let admin = connect(&conn()).await.unwrap();
        let w = ws();
        let (_, _, earlier) = sealed_state(&w).await;
        Damage::ResourceDeleted.inflict(&admin, &w, &earlier).await;
        admin
            .execute("UPDATE teeform_backups SET body = replace(body, 'cvm.a', 'cvm.z') WHERE workspace = $1", &[&w])
            .await
            .unwrap();
        let before = rows(&admin, &w, &STATE_TABLES).await;
        match PgStore::open(&opts(&w, Duration::ZERO), &conn()).await.err() {
            Some(StateError::Damaged { backup: None, .. }) => {}
            other => panic!("expected Damaged without a backup, got {:?}", other.map(|e| e.to_string())),
        }
        let err = PgStore::recover(&opts(&w, Duration::ZERO), &conn(), false).await.unwrap_err().to_string();
        assert!(err.contains("checksum does not match"), "{err}");
        assert_eq!(rows(&admin, &w, &STATE_TABLES).await, before, "nothing was changed");

        // Every row gone but an unreadable backup: damage still, never a new empty workspace.
        let w = ws();
        sealed_state(&w).await;
        for t in &STATE_TABLES[..5] {
            admin.execute(&format!("DELETE FROM {t} WHERE workspace = $1"), &[&w]).await.unwrap();
        }
        admin.execute("UPDATE teeform_backups SET seal = '{}' WHERE workspace = $1", &[&w]).await.unwrap();
        let before = rows(&admin, &w, &STATE_TABLES).await;
        match PgStore::open(&opts(&w, Duration::ZERO), &conn()).await.err() {
            Some(StateError::Damaged { problem, backup: None, .. }) => {
                assert!(problem.contains("all of its rows are missing"), "{problem}")
            }
            other => panic!("expected Damaged, got {:?}", other.map(|e| e.to_string())),
        }
        assert_eq!(rows(&admin, &w, &STATE_TABLES).await, before, "nothing was changed");
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_workspace_in_a_newer_format_is_refused() {
        let admin = connect(&conn()).await.unwrap();
        for sql in [
            "UPDATE teeform_meta SET format = 2 WHERE workspace = $1",
            "UPDATE teeform_seals SET seal = jsonb_set(seal, '{format}', '2') WHERE workspace = $1",
        ] {
            let w = ws();
            open(&w).await.close().await.unwrap();
            admin.execute(sql, &[&w]).await.unwrap();
            match PgStore::open(&opts(&w, Duration::ZERO), &conn()).await.err() {
                Some(StateError::TooNew { format: 2, supported: FORMAT, .. }) => {}
                other => panic!("{sql}: expected TooNew, got {:?}", other.map(|e| e.to_string())),
            }
            // Nor is it put back or sealed over by `state recover`.
            for keep_current in [false, true] {
                match PgStore::recover(&opts(&w, Duration::ZERO), &conn(), keep_current).await {
                    Err(StateError::TooNew { format: 2, .. }) => {}
                    other => panic!("{sql} {keep_current}: expected TooNew, got {:?}", other.map(|_| ())),
                }
            }
        }
    }

    /// Random writes of every kind (new, replaced, removed and missing rows): the seal kept up
    /// commit by commit always equals the rows counted again.
    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn the_seal_follows_every_kind_of_write() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(24);
        let w = ws();
        let s = open(&w).await;
        for i in 0..60 {
            let key = |rng: &mut rand::rngs::StdRng| format!("cvm.k{}", rng.random_range(0..6));
            let mut b = Batch::default();
            match rng.random_range(0..5) {
                0 => {
                    let mut r = rec(&key(&mut rng));
                    r.updated_at = format!("t{i}");
                    b.put.push(r);
                }
                1 => b.remove.push(Address::parse(&key(&mut rng)).unwrap()),
                2 => {
                    let n = rng.random_range(0..3);
                    b.outputs = Some(
                        (0..n)
                            .map(|k| {
                                let v = OutputValue { value: Some(format!("v{i}")), sensitive: false, digest: None };
                                (format!("o{k}"), v)
                            })
                            .collect(),
                    );
                }
                3 => b.journal_put.push(entry(&format!("j{}", rng.random_range(0..4)))),
                _ => b.journal_done.push(format!("j{}", rng.random_range(0..4))),
            }
            s.commit(b).await.unwrap();
        }
        let c = s.client.lock().await;
        let found = Rows::read(&*c, &w).await.unwrap();
        let seal: Seal = found.seal().unwrap().unwrap();
        assert_eq!(seal.writes, 60);
        assert_eq!(found.count(&found.meta.as_ref().unwrap().0, 60), seal);
        drop(c);
        s.close().await.unwrap();
        open(&w).await.close().await.unwrap();
    }

    /// A workspace written by teeform before it kept seals (schema version 2) is sealed as it
    /// is on first open by this one, and guarded from then on.
    #[tokio::test]
    #[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
    async fn a_workspace_from_before_seals_is_sealed_on_first_open() {
        let schema = format!("s_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&conn()).await.unwrap();
        admin.batch_execute(&format!("CREATE SCHEMA {schema}; SET search_path = {schema}")).await.unwrap();
        admin
            .batch_execute(
                "CREATE TABLE teeform_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .unwrap();
        for (n, step) in MIGRATIONS[..2].iter().enumerate() {
            admin.batch_execute(step).await.unwrap();
            admin
                .execute("INSERT INTO teeform_schema_version (version) VALUES ($1)", &[&(n as i32 + 1)])
                .await
                .unwrap();
        }
        let old = Meta { serial: 7, manifest: Some("teeform.yaml".into()), ..Meta::fresh() };
        admin
            .execute(
                "INSERT INTO teeform_meta (workspace, lineage, serial, salt, manifest) VALUES ('w', $1, 7, $2, $3)",
                &[&old.lineage, &old.salt, &old.manifest],
            )
            .await
            .unwrap();
        for a in ["cvm.a", "cvm.b"] {
            admin
                .execute(
                    "INSERT INTO teeform_resources (workspace, address, record) VALUES ('w', $1, $2::text::jsonb)",
                    &[&a, &serde_json::to_string(&rec(a)).unwrap()],
                )
                .await
                .unwrap();
        }
        admin
            .execute(
                "INSERT INTO teeform_journal (workspace, id, entry) VALUES ('w', 'j1', $1::text::jsonb)",
                &[&serde_json::to_string(&entry("j1")).unwrap()],
            )
            .await
            .unwrap();
        let base = std::env::var("TEEFORM_PG_CONN").unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let in_schema = PgConn::new(format!("{base}{sep}options=-csearch_path%3D{schema}"));
        let s = PgStore::open(&opts("w", Duration::ZERO), &in_schema).await.unwrap();
        let snap = s.snapshot().await.unwrap();
        assert_eq!(snap.meta, old);
        assert_eq!(snap.resources.keys().collect::<Vec<_>>(), ["cvm.a", "cvm.b"]);
        assert_eq!(s.journal().await.unwrap(), vec![entry("j1")]);
        s.close().await.unwrap();
        let version: i32 =
            admin.query_one("SELECT max(version) FROM teeform_schema_version", &[]).await.unwrap().get(0);
        assert_eq!(version as usize, MIGRATIONS.len());
        let format: i32 = admin.query_one("SELECT format FROM teeform_meta", &[]).await.unwrap().get(0);
        assert_eq!(format as u32, FORMAT);
        assert_eq!(read_backup(&admin, "w").await.unwrap().unwrap().snapshot(), snap);
        // From now on a lost row is damage, not a smaller state.
        admin.execute("DELETE FROM teeform_resources WHERE address = 'cvm.b'", &[]).await.unwrap();
        match PgStore::open(&opts("w", Duration::ZERO), &in_schema).await.err() {
            Some(StateError::Damaged { problem, backup: Some(_), .. }) => {
                assert!(problem.contains("1 resource record(s) where 2 were written"), "{problem}")
            }
            other => panic!("expected Damaged, got {:?}", other.map(|e| e.to_string())),
        }
        // ...and so is a lost seal: the workspace is no longer one from before seals.
        admin.execute("DELETE FROM teeform_seals", &[]).await.unwrap();
        assert!(matches!(PgStore::open(&opts("w", Duration::ZERO), &in_schema).await, Err(StateError::Damaged { .. })));
        admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
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
