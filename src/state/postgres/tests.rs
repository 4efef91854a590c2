//! These need a server: `scripts/test-postgres` starts one, sets TEEFORM_PG_CONN and runs them.

use super::*;
use crate::model::{Address, OutputValue};
use crate::state::LockInfo;
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
    let got: bool =
        c.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &workspace_key(ws)]).await.unwrap().get(0);
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
    let versions: i64 =
        admin.query_one(&format!("SELECT count(*) FROM {schema}.teeform_schema_version"), &[]).await.unwrap().get(0);
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
    let ssl: bool = c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
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
        c.execute(&format!("INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, $1::text::jsonb)"), &[row])
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
        admin.execute("INSERT INTO teeform_schema_version (version) VALUES ($1)", &[&(n as i32 + 1)]).await.unwrap();
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
    let version: i32 = admin.query_one("SELECT max(version) FROM teeform_schema_version", &[]).await.unwrap().get(0);
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
