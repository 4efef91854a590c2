//! The connection: the connection string that never prints, TLS, keepalives, error text,
//! and who holds a workspace's lock.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient};

use crate::state::{LockInfo, StateError};

use super::schema::*;

/// A libpq connection string (`postgres://user:password@host:5432/db?options=...`). It may
/// hold a password, so it has no `Display` and its `Debug` is redacted.
#[derive(Clone)]
pub struct PgConn(String);

impl PgConn {
    /// The connection string, its password registered with [`crate::redact`] so that no
    /// message or log line shows either.
    pub fn new(conn: impl Into<String>) -> PgConn {
        let conn = PgConn(conn.into());
        crate::redact::secret(&conn.0);
        if let Some(pw) =
            conn.0.parse::<tokio_postgres::Config>().ok().and_then(|c| c.get_password().map(<[u8]>::to_vec))
        {
            crate::redact::secret(&String::from_utf8_lossy(&pw));
        }
        conn
    }

    pub(super) fn config(&self) -> Result<tokio_postgres::Config, StateError> {
        self.0.parse::<tokio_postgres::Config>().map_err(|e| {
            StateError::Storage(
                self.redact(&format!("TEEFORM_PG_CONN is not a valid PostgreSQL connection string: {}", chain(&e))),
            )
        })
    }

    /// `host:port/database`: enough to tell which database, nothing secret.
    pub(super) fn target(&self) -> String {
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
    pub(super) fn redact(&self, msg: &str) -> String {
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
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}

pub(super) const LOST: &str = "lost the connection to PostgreSQL, and the state lock with it; nothing more was written. \
                    Run the command again once the database is reachable: operations that were in flight are \
                    checked against the cloud first";

pub(super) fn pg_err(e: tokio_postgres::Error) -> StateError {
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

pub(super) fn corrupt(key: impl Into<String>, e: impl std::fmt::Display) -> StateError {
    StateError::Corrupt { key: key.into(), reason: e.to_string() }
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StateError> {
    serde_json::to_string(v).map_err(|e| StateError::Storage(e.to_string()))
}

/// The second advisory-lock key of a workspace (non-negative, so it reads the same as an oid).
pub(super) fn workspace_key(workspace: &str) -> i32 {
    let h = Sha256::digest(workspace.as_bytes());
    i32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x7fff_ffff
}

/// Where a process runs, precisely enough to tell whether a pid is still the same process:
/// kernel boot, pid namespace, and the process's start time. Containers on one kernel share
/// the boot id but not the namespace, so they never judge each other's pids.
pub(super) fn origin_of(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let start = start_time(pid)?;
    Some(format!("{}|{}|{start}", boot.trim(), ns.display()))
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot).
pub(super) fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the process named by a lock row is certainly gone: it ran where this process runs
/// (same boot, same pid namespace) and its pid is now free or another process.
pub(super) fn holder_is_dead(origin: &str, pid: u32) -> bool {
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
pub(super) struct Holder {
    pub(super) lock_id: String,
    pub(super) info: LockInfo,
    pub(super) backend_pid: i32,
    pub(super) origin: String,
    pub(super) holds: bool,
}

pub(super) async fn holder(c: &impl GenericClient, workspace: &str) -> Result<Option<Holder>, StateError> {
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
pub(super) fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StateError> {
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
pub(super) async fn connect(conn: &PgConn) -> Result<Client, StateError> {
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
