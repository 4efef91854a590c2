//! The tables: one migration step per schema version, run under a transaction-level lock.

use tokio_postgres::Client;

use crate::state::StateError;

use super::conn::*;

/// First key of the advisory locks on workspaces ("teef"); the second is the workspace's hash.
pub(super) const LOCK_CLASS: i32 = 0x7465_6566;
/// First key of the transaction-level lock that serializes schema migrations.
pub(super) const SCHEMA_CLASS: i32 = 0x7465_6567;

/// The schema, one step per version: `MIGRATIONS[n]` takes version `n` to `n + 1`.
/// Append new steps; never edit a released one.
pub(super) const MIGRATIONS: &[&str] = &[
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

/// Creates or upgrades the tables; concurrent first runs wait for each other.
pub(super) async fn migrate_schema(client: &mut Client) -> Result<(), StateError> {
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
