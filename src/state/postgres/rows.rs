//! Rows of a workspace: reading, writing one row at a time, the seal's tallies, backups.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::model::{Address, OutputValue, ResourceRecord};
use crate::state::integrity::{Backup, Seal, Tally};
use crate::state::{BackupInfo, JournalEntry, Meta, Snapshot, StateError};

use super::conn::*;
use super::schema::*;

pub(super) async fn read_meta(c: &impl GenericClient, workspace: &str) -> Result<Meta, StateError> {
    meta_row(c, workspace).await?.map(|(meta, _)| meta).ok_or_else(|| {
        corrupt("meta", format!("workspace {workspace} has no identity row (lineage and serial) in teeform_meta"))
    })
}

/// The workspace's identity and the format of its rows, if it has an identity row.
pub(super) async fn meta_row(c: &impl GenericClient, workspace: &str) -> Result<Option<(Meta, u32)>, StateError> {
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
pub(super) const OUTPUTS_KEY: &str = "outputs";

/// A table of records keyed within a workspace, and its key and value (jsonb) columns.
#[derive(Clone, Copy)]
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) key: &'static str,
    pub(super) value: &'static str,
}

pub(super) const RESOURCES: Table = Table { name: "teeform_resources", key: "address", value: "record" };
pub(super) const JOURNAL: Table = Table { name: "teeform_journal", key: "id", value: "entry" };

/// `(key, value)` of every row of `t` in the workspace, values as PostgreSQL prints them;
/// ordered by key, bytewise.
pub(super) async fn rows_of(c: &impl GenericClient, t: Table, ws: &str) -> Result<Vec<(String, String)>, StateError> {
    let sql = format!(
        "SELECT {k}, {v}::text FROM {n} WHERE workspace = $1 ORDER BY {k} COLLATE \"C\"",
        k = t.key,
        v = t.value,
        n = t.name
    );
    let rows = c.query(&sql, &[&ws]).await.map_err(pg_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn outputs_row(c: &impl GenericClient, ws: &str) -> Result<Option<String>, StateError> {
    let row =
        c.query_opt("SELECT outputs::text FROM teeform_outputs WHERE workspace = $1", &[&ws]).await.map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

/// Writes one row of `t`; returns its value as stored and the value it replaced, both as
/// PostgreSQL prints them (what the seal counts). One statement, whatever the table's size.
pub(super) async fn put_row(
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
pub(super) async fn delete_row(
    c: &impl GenericClient,
    t: Table,
    ws: &str,
    key: &str,
) -> Result<Option<String>, StateError> {
    let sql = format!(
        "DELETE FROM {n} WHERE workspace = $1 AND {k} = $2 RETURNING {v}::text",
        k = t.key,
        v = t.value,
        n = t.name
    );
    let row = c.query_opt(&sql, &[&ws, &key]).await.map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

pub(super) async fn put_outputs(
    c: &impl GenericClient,
    ws: &str,
    json: &str,
) -> Result<(String, Option<String>), StateError> {
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
pub(super) fn retally(t: &mut Tally, key: &str, old: Option<&str>, new: Option<&str>) {
    if let Some(old) = old {
        t.remove(key.as_bytes(), old.as_bytes());
    }
    if let Some(new) = new {
        t.add(key.as_bytes(), new.as_bytes());
    }
}

pub(super) fn tally<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>) -> Tally {
    let mut t = Tally::default();
    for (k, v) in rows {
        t.add(k.as_bytes(), v.as_bytes());
    }
    t
}

/// Everything a workspace's state holds, values as PostgreSQL prints them: what the seal is
/// counted over.
pub(super) struct Rows {
    pub(super) meta: Option<(Meta, u32)>,
    /// The seal row's value, unparsed (it may be damaged too).
    pub(super) seal: Option<String>,
    pub(super) resources: Vec<(String, String)>,
    pub(super) outputs: Option<String>,
    pub(super) journal: Vec<(String, String)>,
    /// The backup row's seal, unparsed (whether the copy is whole is checked by
    /// [`read_backup`], before anything is put back from it).
    pub(super) backup: Option<String>,
}

impl Rows {
    pub(super) async fn read(c: &impl GenericClient, ws: &str) -> Result<Rows, StateError> {
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
    pub(super) fn is_empty(&self) -> bool {
        self.meta.is_none()
            && self.seal.is_none()
            && self.resources.is_empty()
            && self.outputs.is_none()
            && self.journal.is_empty()
    }

    /// The seal parsed: `None` if there is no seal row, `Err` if it cannot be read.
    pub(super) fn seal(&self) -> Option<Result<Seal, ()>> {
        self.seal.as_deref().map(|t| serde_json::from_str(t).map_err(|_| ()))
    }

    /// The seal of the backup, if it has a readable one.
    pub(super) fn backup_seal(&self) -> Option<Seal> {
        self.backup.as_deref().and_then(|t| serde_json::from_str(t).ok())
    }

    /// A format newer than this teeform's, if the identity or seal row names one.
    pub(super) fn too_new(&self) -> Option<u32> {
        let seal = self.seal().and_then(Result::ok).map(|s| s.format);
        self.meta.iter().map(|(_, f)| *f).chain(seal).max().filter(|f| *f > FORMAT)
    }

    /// The seal these rows would have, with the identity `meta` gives.
    pub(super) fn count(&self, meta: &Meta, writes: u64) -> Seal {
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

    pub(super) fn snapshot(&self, meta: Meta) -> Result<Snapshot, StateError> {
        Ok(Snapshot {
            meta,
            resources: parse_resources(&self.resources)?,
            outputs: parse_outputs(self.outputs.as_deref())?,
        })
    }

    pub(super) fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        parse_journal(&self.journal)
    }
}

/// Records by address; a row holding another address's record is corrupt.
pub(super) fn parse_resources(rows: &[(String, String)]) -> Result<BTreeMap<Address, ResourceRecord>, StateError> {
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

pub(super) fn parse_outputs(text: Option<&str>) -> Result<BTreeMap<String, OutputValue>, StateError> {
    match text {
        Some(t) => serde_json::from_str(t).map_err(|e| corrupt("outputs", e)),
        None => Ok(BTreeMap::new()),
    }
}

pub(super) fn parse_journal(rows: &[(String, String)]) -> Result<Vec<JournalEntry>, StateError> {
    rows.iter().map(|(id, text)| serde_json::from_str(text).map_err(|e| corrupt(format!("journal {id}"), e))).collect()
}

/// The copy in `teeform_backups`: `Ok(None)` if there is none; `Err` (a reason) if it is not
/// whole.
pub(super) async fn read_backup(c: &impl GenericClient, ws: &str) -> Result<Option<Backup>, String> {
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

pub(super) async fn write_backup(c: &impl GenericClient, ws: &str, backup: &Backup) -> Result<(), StateError> {
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
pub(super) const BACKUP_PLACE: &str = "table teeform_backups";

pub(super) fn backup_info(b: &Backup) -> BackupInfo {
    BackupInfo {
        path: BACKUP_PLACE.into(),
        serial: b.meta.serial,
        written_at: b.written_at.clone(),
        resources: b.resources.len(),
    }
}

pub(super) async fn write_seal(c: &impl GenericClient, ws: &str, seal: &Seal) -> Result<(), StateError> {
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
pub(super) async fn replace(
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
