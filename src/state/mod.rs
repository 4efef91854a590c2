//! State: the resources teeform manages, lineage + serial, outputs, the lock and the journal of
//! in-flight operations, behind one small interface ([`Store`]).
//!
//! Invariants: this module is the only one that touches sled (and PostgreSQL); a [`Batch`] is
//! applied atomically and is durable (flushed) before [`Store::commit`] returns; writing one
//! resource costs the same whatever the number of resources; secrets are never handed to it.

mod sled_store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{OutputValue, ResourceRecord};

pub use sled_store::SledStore;

/// Identity and version of a state: a saved plan is stale once `serial` moved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub lineage: String,
    pub serial: u64,
    /// Salt for secret digests (not secret itself; it makes digests per-state).
    pub salt: String,
}

impl Meta {
    pub fn fresh() -> Meta {
        Meta { lineage: uuid::Uuid::new_v4().to_string(), serial: 0, salt: hex::encode(rand::random::<[u8; 16]>()) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub meta: Meta,
    pub resources: BTreeMap<String, ResourceRecord>,
    pub outputs: BTreeMap<String, OutputValue>,
}

/// The intent of one cloud operation, written before the call and removed after its result
/// is recorded. Whatever is left after a crash is reconciled on the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    pub address: String,
    /// `create`, `update` or `delete`.
    pub op: String,
    /// The CVM's name in the cloud (how a create that may have happened is found again).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
    pub started_at: String,
    /// Operation-specific facts (e.g. a pending on-chain registration). Never secrets.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// Who holds the state lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub since: String,
}

impl LockInfo {
    pub fn for_command(command: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            user: std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            since: crate::model::now_rfc3339(),
        }
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` by {}@{} (pid {}) since {}, lock id {}",
            self.command, self.user, self.host, self.pid, self.since, self.id
        )
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Changes applied atomically by [`Store::commit`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub put: Vec<ResourceRecord>,
    pub remove: Vec<String>,
    pub outputs: Option<BTreeMap<String, OutputValue>>,
    pub journal_put: Vec<JournalEntry>,
    pub journal_done: Vec<String>,
}

impl Batch {
    /// Whether the batch changes resources or outputs (and so bumps the serial).
    pub fn changes_state(&self) -> bool {
        !self.put.is_empty() || !self.remove.is_empty() || self.outputs.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state at {path} is locked{}", holder.as_ref().map(|h| format!(": held by {h}")).unwrap_or_default())]
    Locked { path: String, holder: Option<LockInfo> },
    #[error("state storage error: {0}")]
    Storage(String),
    #[error("the state holds a record that cannot be read ({key}): {reason}")]
    Corrupt { key: String, reason: String },
    #[error("no lock with id {0} is held")]
    NoSuchLock(String),
}

/// The one interface every backend implements.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Human description, e.g. `local state at state/`.
    fn describe(&self) -> String;
    async fn snapshot(&self) -> Result<Snapshot, StateError>;
    async fn meta(&self) -> Result<Meta, StateError>;
    /// Applies the batch atomically and durably; bumps the serial when it changes state.
    async fn commit(&self, batch: Batch) -> Result<Meta, StateError>;
    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError>;
    /// Releases the lock. Also happens when the store is dropped or the process dies.
    async fn close(&self) -> Result<(), StateError>;
}

/// Where the state lives and how long to wait for its lock.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub dir: PathBuf,
    pub lock: LockInfo,
    pub lock_timeout: Duration,
}

pub async fn open(opts: &OpenOptions) -> Result<Arc<dyn Store>, StateError> {
    Ok(Arc::new(SledStore::open(opts).await?))
}

/// The current holder of the lock on a state directory, if it is held.
pub fn lock_holder(dir: &std::path::Path) -> Option<LockInfo> {
    sled_store::read_holder(dir)
}

/// Removes a lock record left behind. With sled the operating system releases the lock when
/// its holder exits, so only a stale holder record can remain.
pub fn force_unlock(dir: &std::path::Path, id: &str) -> Result<(), StateError> {
    sled_store::force_unlock(dir, id)
}
