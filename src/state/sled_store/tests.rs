//! The local store's tests: commits, seal, damage, recovery.

use super::*;
use crate::model::CvmAttrs;

fn rec(addr: &str) -> ResourceRecord {
    ResourceRecord {
        surge: false,
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
        unverified: None,
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
