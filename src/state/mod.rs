//! State: the resources teeform manages, lineage + serial, outputs, the lock and the journal of
//! in-flight operations, behind one small interface ([`Store`]).
//!
//! Invariants: this module is the only one that touches sled (and PostgreSQL); a [`Batch`] is
//! applied atomically and is durable (flushed) before [`Store::commit`] returns; writing one
//! resource costs the same whatever the number of resources; secrets are never handed to it.

pub mod integrity;
mod migrate;
mod postgres;
mod sled_store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Address, OutputValue, ResourceRecord};

pub use migrate::{MigrateError, Migrated, migrate};
pub use postgres::{PgConn, PgStore};
pub use sled_store::{Recovered, SledStore};

/// Identity and version of a state: a saved plan is stale once `serial` moved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub lineage: String,
    pub serial: u64,
    /// Salt for secret digests (not secret itself; it makes digests per-state).
    pub salt: String,
    /// The file name of the manifest this state belongs to (e.g. `prod.yaml`); commands that
    /// pair a manifest with a state refuse another one. `None`: made before teeform recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

impl Meta {
    pub fn fresh() -> Meta {
        Meta {
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            salt: hex::encode(rand::random::<[u8; 16]>()),
            manifest: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub meta: Meta,
    pub resources: BTreeMap<Address, ResourceRecord>,
    pub outputs: BTreeMap<String, OutputValue>,
}

/// The intent of one cloud operation, written before the call and removed after its result
/// is recorded. Whatever is left after a crash is reconciled on the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    pub address: Address,
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
    /// The Phala Cloud API prefix the operation went to (see [`ResourceRecord::endpoint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
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
    pub remove: Vec<Address>,
    pub outputs: Option<BTreeMap<String, OutputValue>>,
    pub journal_put: Vec<JournalEntry>,
    pub journal_done: Vec<String>,
    /// Records the manifest the state belongs to ([`Meta::manifest`]); the serial stays.
    pub bind: Option<String>,
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
    /// Records lost, changed or rolled back (see [`integrity`]). Nothing was changed.
    #[error("the state at {path} is damaged: {problem}")]
    Damaged { path: String, problem: String, backup: Option<BackupInfo> },
    /// The state directory went away (or was replaced) under a running command: what the
    /// command did since cannot be recorded there.
    #[error(
        "the state directory {path} was removed or replaced while teeform was using it, so this change could not be recorded"
    )]
    Vanished { path: String },
    #[error(
        "the state at {path} was written by a newer teeform (state format {format}; this one reads up to {supported})"
    )]
    TooNew { path: String, format: u32, supported: u32 },
}

/// The backup a damaged state can be recovered from (`teeform state recover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub path: String,
    pub serial: u64,
    pub written_at: String,
    pub resources: usize,
}

/// An I/O error in words, without Rust's debug text: what a person can act on.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    // Libraries (sled) wrap an OS error in another; the inner one says what happened.
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>()) {
        return io_reason(inner);
    }
    match e.kind() {
        K::FileTooLarge => "the file would grow past the size this process may write (ulimit -f)".into(),
        K::StorageFull => "no space left on the device".into(),
        K::QuotaExceeded => "the disk quota is exceeded".into(),
        K::PermissionDenied => "permission denied".into(),
        K::ReadOnlyFilesystem => "the file system is read-only".into(),
        K::NotFound => "no such file or directory".into(),
        _ => {
            // `Display` of an OS error appends "(os error N)"; the words before it suffice.
            // A wrapped error may show Rust's debug form (`Os { .. message: "…" }`): keep the words.
            let s = e.to_string();
            let s = match s.split_once("message: \"") {
                Some((_, rest)) => rest.split('"').next().unwrap_or_default().to_string(),
                None => s,
            };
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
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
    /// Replaces everything in this state (meta included) with a copy, atomically. Only
    /// `state migrate` uses it, after checking that nothing would be lost.
    async fn restore(&self, snapshot: &Snapshot, journal: &[JournalEntry]) -> Result<(), StateError>;
    /// Releases the lock. Also happens when the store is dropped or the process dies.
    async fn close(&self) -> Result<(), StateError>;
}

/// Which store keeps the state.
#[derive(Debug, Clone)]
pub enum Backend {
    /// sled under the state directory (the default).
    Local,
    /// A PostgreSQL database shared by a team and its CI runners.
    Postgres(PgConn),
}

/// The workspace every state has; other names keep more environments apart in one store.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Where the state lives and how long to wait for its lock.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The state directory (sled's home; also where `endpoint: local` keeps its simulator).
    pub dir: PathBuf,
    pub lock: LockInfo,
    pub lock_timeout: Duration,
    pub backend: Backend,
    /// A key in PostgreSQL; for sled, `workspaces/NAME` under `dir` (`default` is `dir`).
    pub workspace: String,
}

impl OpenOptions {
    /// Options for sled in `dir`, default workspace.
    pub fn local(dir: PathBuf, lock: LockInfo, lock_timeout: Duration) -> OpenOptions {
        OpenOptions { dir, lock, lock_timeout, backend: Backend::Local, workspace: DEFAULT_WORKSPACE.into() }
    }

    /// The directory sled uses for this workspace.
    pub fn local_dir(&self) -> PathBuf {
        if self.workspace == DEFAULT_WORKSPACE {
            self.dir.clone()
        } else {
            self.dir.join("workspaces").join(&self.workspace)
        }
    }
}

/// Workspace names become directory names and table keys: letters, digits, `-`, `_`, `.`.
pub fn check_workspace(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(format!("`{name}` is not a workspace name (1-64 letters, digits, `-`, `_`, `.`)")) }
}

pub async fn open(opts: &OpenOptions) -> Result<Arc<dyn Store>, StateError> {
    match &opts.backend {
        Backend::Local => {
            let sled = OpenOptions { dir: opts.local_dir(), ..opts.clone() };
            Ok(Arc::new(SledStore::open(&sled).await?))
        }
        Backend::Postgres(conn) => Ok(Arc::new(PgStore::open(opts, conn).await?)),
    }
}

/// `force-unlock`: removes the lock record `id` from whichever backend `opts` names.
pub async fn unlock(opts: &OpenOptions, id: &str) -> Result<(), StateError> {
    match &opts.backend {
        Backend::Local => force_unlock(&opts.local_dir(), id),
        Backend::Postgres(conn) => postgres::force_unlock(conn, &opts.workspace, id).await,
    }
}

/// `teeform state recover`: puts back the last whole copy of a damaged state, or with
/// `keep_current` accepts the state as it is and seals it again (see [`SledStore::recover`]
/// and [`PgStore::recover`]).
pub async fn recover(opts: &OpenOptions, keep_current: bool) -> Result<Recovered, StateError> {
    match &opts.backend {
        Backend::Local => {
            let sled = OpenOptions { dir: opts.local_dir(), ..opts.clone() };
            SledStore::recover(&sled, keep_current).await
        }
        Backend::Postgres(conn) => PgStore::recover(opts, conn, keep_current).await,
    }
}

/// The workspaces that hold a state in the backend `opts` names, sorted: for a local state,
/// `default` (the state directory itself) and each `workspaces/NAME` in it; for PostgreSQL,
/// each workspace with an identity row. Creates nothing but PostgreSQL's tables.
pub async fn workspaces(opts: &OpenOptions) -> Result<Vec<String>, StateError> {
    match &opts.backend {
        Backend::Local => {
            let mut out = Vec::new();
            if exists(&opts.dir) {
                out.push(DEFAULT_WORKSPACE.to_string());
            }
            if let Ok(entries) = std::fs::read_dir(opts.dir.join("workspaces")) {
                for e in entries.flatten() {
                    if let Some(name) = e.file_name().to_str()
                        && check_workspace(name).is_ok()
                        && exists(&e.path())
                    {
                        out.push(name.to_string());
                    }
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
        Backend::Postgres(conn) => postgres::workspaces(conn).await,
    }
}

/// Whether a local state exists in `dir` (without creating anything).
pub fn exists(dir: &std::path::Path) -> bool {
    sled_store::exists(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_words_never_as_rust_debug_text() {
        use std::io::Error;
        let full = Error::from_raw_os_error(28);
        assert_eq!(io_reason(&full), "no space left on the device");
        assert_eq!(io_reason(&Error::other(Error::from_raw_os_error(27))), io_reason(&Error::from_raw_os_error(27)));
        assert_eq!(io_reason(&Error::from_raw_os_error(13)), "permission denied");
        let debug = Error::other(format!("{:?}", Error::from_raw_os_error(5)));
        let words = io_reason(&debug);
        assert_eq!(words, "input/output error");
        assert!(!words.contains('{'), "{words}");
        assert_eq!(io_reason(&Error::other("it broke")), "it broke");
    }

    #[test]
    fn workspace_names_are_safe_as_directories_and_keys() {
        for ok in ["default", "prod", "staging-eu_2", "v1.2"] {
            assert_eq!(check_workspace(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(65);
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ünï", long.as_str()] {
            assert!(check_workspace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_workspaces_are_directories_beside_the_default_state() {
        let at = |ws: &str| {
            let o = OpenOptions::local("state".into(), LockInfo::for_command("t"), Duration::ZERO);
            OpenOptions { workspace: ws.into(), ..o }.local_dir()
        };
        assert_eq!(at(DEFAULT_WORKSPACE), PathBuf::from("state"));
        assert_eq!(at("prod"), PathBuf::from("state/workspaces/prod"));
    }
}
