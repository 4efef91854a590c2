//! `state migrate`: copies a state to another backend, losing nothing (records, outputs,
//! lineage, serial, salt, journal), and proves it by reading the copy back.
//!
//! The destination must be empty, or hold an older copy of the same state (same lineage, a
//! serial not ahead), which is what moving back to a backend used before looks like.

use super::{JournalEntry, Meta, StateError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub meta: Meta,
    pub resources: usize,
    pub outputs: usize,
    pub journal: usize,
    /// The serial of an older copy the destination held and that was replaced.
    pub replaced: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the {to} already holds another state (lineage {lineage}, serial {serial}); nothing was copied")]
    OtherState { to: String, lineage: String, serial: u64 },
    #[error(
        "the {to} holds a newer version of this state (serial {found}, the source is at {serial}); nothing was copied"
    )]
    Newer { to: String, found: u64, serial: u64 },
    #[error("the copy in the {to} differs from the source ({what}); the source was not changed")]
    Mismatch { to: String, what: String },
}

fn sorted(mut j: Vec<JournalEntry>) -> Vec<JournalEntry> {
    j.sort_by(|a, b| a.id.cmp(&b.id));
    j
}

/// Copies `from` into `to` (both open, so both locked) and verifies the copy.
pub async fn migrate(from: &dyn Store, to: &dyn Store) -> Result<Migrated, MigrateError> {
    let src = from.snapshot().await?;
    let src_journal = sorted(from.journal().await?);
    let dst = to.snapshot().await?;
    let dst_journal = to.journal().await?;
    let empty = dst.meta.serial == 0 && dst.resources.is_empty() && dst.outputs.is_empty() && dst_journal.is_empty();
    let replaced = if empty {
        None
    } else if dst.meta.lineage != src.meta.lineage {
        return Err(MigrateError::OtherState { to: to.describe(), lineage: dst.meta.lineage, serial: dst.meta.serial });
    } else if dst.meta.serial > src.meta.serial {
        return Err(MigrateError::Newer { to: to.describe(), found: dst.meta.serial, serial: src.meta.serial });
    } else {
        Some(dst.meta.serial)
    };
    to.restore(&src, &src_journal).await?;
    let copy = to.snapshot().await?;
    let copy_journal = sorted(to.journal().await?);
    let mismatch = |what: &str| MigrateError::Mismatch { to: to.describe(), what: what.to_string() };
    if copy.meta != src.meta {
        return Err(mismatch("lineage, serial or salt"));
    }
    if copy.resources != src.resources {
        return Err(mismatch("resources"));
    }
    if copy.outputs != src.outputs {
        return Err(mismatch("outputs"));
    }
    if copy_journal != src_journal {
        return Err(mismatch("journal"));
    }
    Ok(Migrated {
        meta: src.meta,
        resources: src.resources.len(),
        outputs: src.outputs.len(),
        journal: src_journal.len(),
        replaced,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{CvmAttrs, OutputValue, ResourceRecord};
    use crate::state::{Batch, LockInfo, OpenOptions, SledStore};

    pub(crate) fn rec(addr: &str) -> ResourceRecord {
        ResourceRecord {
            surge: false,
            address: addr.into(),
            ids: crate::model::CloudIds { id: format!("id-{addr}"), ..Default::default() },
            attrs: CvmAttrs { name: addr.replace('.', "-"), vcpu: Some(2), ..Default::default() },
            compose_hash: Some("ab".repeat(32)),
            env_pubkey: None,
            kms_info: None,
            status: Some("running".into()),
            tainted: false,
            boot: Default::default(),
            dependencies: vec![],
            updated_at: "2026-01-01T00:00:00Z".into(),
            unverified: None,
            endpoint: Some("https://cloud-api.phala.com/api/v1".into()),
            prevent_destroy: false,
            secrets_scope: None,
        }
    }

    pub(crate) fn entry(id: &str) -> JournalEntry {
        JournalEntry {
            id: id.into(),
            address: "cvm.c".into(),
            op: "create".into(),
            name: "c-cvm".into(),
            cloud_id: None,
            started_at: "t".into(),
            detail: serde_json::json!({"k": [1, 2.5, "x"]}),
            endpoint: Some("local".into()),
        }
    }

    /// A state with resources, outputs, a journal entry and a serial above zero.
    pub(crate) async fn fill(s: &dyn Store) {
        let mut outputs = std::collections::BTreeMap::new();
        outputs.insert("a".to_string(), OutputValue { value: Some("v".into()), sensitive: false, digest: None });
        outputs.insert("s".to_string(), OutputValue { value: None, sensitive: true, digest: None });
        s.commit(Batch { put: vec![rec("cvm.a"), rec("cvm.b")], ..Default::default() }).await.unwrap();
        s.commit(Batch { outputs: Some(outputs), journal_put: vec![entry("j1"), entry("j0")], ..Default::default() })
            .await
            .unwrap();
    }

    async fn sled(dir: &std::path::Path) -> SledStore {
        SledStore::open(&OpenOptions::local(dir.to_path_buf(), LockInfo::for_command("test"), Duration::ZERO))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn copies_everything_and_refuses_to_overwrite_other_or_newer_states() {
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, dst, other) = (sled(a.path()).await, sled(b.path()).await, sled(c.path()).await);
        fill(&src).await;
        let m = migrate(&src, &dst).await.unwrap();
        assert_eq!((m.resources, m.outputs, m.journal, m.replaced), (2, 2, 2, None));
        assert_eq!(dst.snapshot().await.unwrap(), src.snapshot().await.unwrap());
        assert_eq!(dst.journal().await.unwrap(), src.journal().await.unwrap());

        // Moving back onto the older copy after more work is allowed and replaces it.
        dst.commit(Batch { remove: vec!["cvm.a".into()], journal_done: vec!["j0".into()], ..Default::default() })
            .await
            .unwrap();
        let back = migrate(&dst, &src).await.unwrap();
        assert_eq!(back.replaced, Some(m.meta.serial));
        assert_eq!(src.snapshot().await.unwrap().resources.keys().collect::<Vec<_>>(), ["cvm.b"]);
        assert_eq!(src.journal().await.unwrap().len(), 1);

        // ...but never onto a newer version, nor onto another state.
        dst.commit(Batch { put: vec![rec("cvm.z")], ..Default::default() }).await.unwrap();
        assert!(matches!(migrate(&src, &dst).await, Err(MigrateError::Newer { .. })));
        other.commit(Batch { put: vec![rec("cvm.x")], ..Default::default() }).await.unwrap();
        assert!(matches!(migrate(&src, &other).await, Err(MigrateError::OtherState { .. })));
        assert_eq!(other.snapshot().await.unwrap().resources.keys().collect::<Vec<_>>(), ["cvm.x"]);
    }
}
