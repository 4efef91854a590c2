//! `teeform.lock`: the image each data source resolved to, pinned so that plan and apply use
//! the same image until `teeform images upgrade` moves the pin. Users commit it.
//!
//! Invariant: a pin is used only while the data source's selector (`query`) is unchanged; the
//! file is rewritten atomically and byte-for-byte the same for the same pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

const HEADER: &str = "# teeform.lock: the image each data source resolved to. Commit this file.\n\
# `teeform plan` and `apply` use these pins; `teeform images upgrade [NAME]` moves them.\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lockfile {
    pub version: u32,
    /// By data source address (`data.KIND.NAME`).
    #[serde(default)]
    pub pins: BTreeMap<String, Pin>,
}

impl Default for Lockfile {
    fn default() -> Self {
        Lockfile { version: FORMAT_VERSION, pins: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// The selector as the manifest wrote it when the pin was made.
    pub query: serde_json::Value,
    /// The image id (OCID, nscale id) or Phala slug.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The OS image hash (Phala).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// When the image was created (nscale, OCI), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When this pin was made, RFC 3339.
    pub pinned_at: String,
    /// Every attribute `${data.KIND.NAME.ATTR}` may use, so planning needs no catalog.
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a teeform lock file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has format version {found}; this teeform reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The lock file beside a manifest: `teeform.yaml` → `teeform.lock`, `prod.yaml` → `prod.lock`.
pub fn path_for(manifest: &Path) -> PathBuf {
    manifest.with_extension("lock")
}

/// Reads the lock file; a missing file is an empty lock.
pub fn read(path: &Path) -> Result<Lockfile, LockError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lockfile::default()),
        Err(e) => return Err(LockError::Read { path: path.into(), source: e }),
    };
    parse(&text).map_err(|e| match e {
        ParseError::Version(found) => LockError::Version { path: path.into(), found },
        ParseError::Syntax(message) => LockError::Parse { path: path.into(), message },
    })
}

enum ParseError {
    Version(u32),
    Syntax(String),
}

fn parse(text: &str) -> Result<Lockfile, ParseError> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    if let Some(found) = v.get("version").and_then(serde_yaml::Value::as_u64)
        && found != u64::from(FORMAT_VERSION)
    {
        return Err(ParseError::Version(found as u32));
    }
    serde_yaml::from_value(v).map_err(|e| ParseError::Syntax(e.to_string()))
}

/// The file's text: a header comment, then the pins in address order.
pub fn render(lock: &Lockfile) -> String {
    let body = serde_yaml::to_string(lock).expect("a lock file is plain data");
    format!("{HEADER}{body}")
}

/// Writes the lock file atomically (a temporary file renamed over it).
pub fn write(path: &Path, lock: &Lockfile) -> Result<(), LockError> {
    let err = |source| LockError::Write { path: path.into(), source };
    let tmp = path.with_extension("lock.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(render(lock).as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(id: &str) -> Pin {
        Pin {
            query: serde_json::json!({"version": "~0.5", "variant": "prod", "select": "most_recent"}),
            id: id.into(),
            name: "dstack-0.5.5".into(),
            version: Some("0.5.5".into()),
            hash: Some("ab12".into()),
            created: None,
            pinned_at: "2026-01-02T03:04:05Z".into(),
            attributes: [("name".to_string(), "dstack-0.5.5".to_string()), ("version".into(), "0.5.5".into())].into(),
        }
    }

    #[test]
    fn round_trips_and_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("teeform.yaml"));
        assert_eq!(path.file_name().unwrap(), "teeform.lock");
        assert_eq!(read(&path).unwrap(), Lockfile::default(), "a missing lock is empty");
        let mut lock = Lockfile::default();
        lock.pins.insert("data.phala_os_image.os".into(), pin("dstack-0.5.5-e18f5407"));
        lock.pins.insert(
            "data.oci_image.base".into(),
            Pin { created: Some("2024-01-01T00:00:00Z".into()), ..pin("ocid1.image.oc1..a") },
        );
        write(&path, &lock).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.starts_with("# teeform.lock"));
        let back = read(&path).unwrap();
        assert_eq!(back, lock);
        write(&path, &back).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "rewriting the same pins changes nothing");
        assert!(first.find("data.oci_image.base").unwrap() < first.find("data.phala_os_image.os").unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("teeform.lock");
        std::fs::write(&path, "version: 9\npins: {}\n").unwrap();
        assert!(matches!(read(&path), Err(LockError::Version { found: 9, .. })));
        std::fs::write(&path, "pins: [\n").unwrap();
        assert!(matches!(read(&path), Err(LockError::Parse { .. })));
        std::fs::write(&path, "version: 1\npins:\n  data.x.y: {id: 1}\n").unwrap();
        assert!(matches!(read(&path), Err(LockError::Parse { .. })));
    }
}
