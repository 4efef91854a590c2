//! The OCI SDK/CLI config file (reference image-catalogs.md §2.3): INI, profiles in
//! sections, `DEFAULT` inherited by every other profile (Python `configparser` semantics),
//! required `user`, `tenancy`, `fingerprint`, `key_file`, `region`; `~` expanded in paths.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciConfig {
    pub user: String,
    pub tenancy: String,
    pub fingerprint: String,
    pub key_file: PathBuf,
    pub region: Option<String>,
}

const REQUIRED: [&str; 4] = ["user", "tenancy", "fingerprint", "key_file"];

fn expand(path: &str, home: Option<&Path>, base: &Path) -> PathBuf {
    let p = match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(path),
    };
    if p.is_absolute() { p } else { base.join(p) }
}

/// Reads `profile` from the config text. `home` expands `~`; relative key paths are taken
/// relative to `base` (the config file's directory).
pub fn parse(text: &str, profile: &str, home: Option<&Path>, base: &Path) -> Result<OciConfig, String> {
    let ini = ini::Ini::load_from_str_opt(text, ini::ParseOption { enabled_escape: false, ..Default::default() })
        .map_err(|e| format!("not an INI file: {e}"))?;
    let own = ini.section(Some(profile));
    let default = ini.section(Some("DEFAULT"));
    if own.is_none() && profile != "DEFAULT" {
        let mut names: Vec<&str> = ini.sections().flatten().collect();
        names.sort();
        return Err(format!("there is no profile [{profile}] (profiles: {})", names.join(", ")));
    }
    let get = |k: &str| own.and_then(|s| s.get(k)).or_else(|| default.and_then(|s| s.get(k))).map(str::trim);
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|k| get(k).is_none_or(str::is_empty)).collect();
    if !missing.is_empty() {
        return Err(format!("profile [{profile}] lacks {}", missing.join(", ")));
    }
    let value = |k: &str| get(k).unwrap_or_default().to_string();
    let fingerprint = value("fingerprint");
    let fp_ok = fingerprint.len() == 47
        && fingerprint.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if !fp_ok {
        return Err(format!("fingerprint `{fingerprint}` is not 16 hex bytes separated by `:`"));
    }
    Ok(OciConfig {
        user: value("user"),
        tenancy: value("tenancy"),
        fingerprint: fingerprint.to_ascii_lowercase(),
        key_file: expand(&value("key_file"), home, base),
        region: get("region").filter(|r| !r.is_empty()).map(str::to_string),
    })
}

/// Reads the config file at `path`.
pub fn load(path: &Path, profile: &str, home: Option<&Path>) -> Result<OciConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, profile, home, base).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=20:3B:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34\nkey_file=~/.oci/key.pem\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\n\n[OTHER]\n# a comment\nuser = ocid1.user.oc1..other\nkey_file = keys/other.pem\n";

    #[test]
    fn profiles_inherit_default() {
        let home = Path::new("/home/me");
        let d = parse(TEXT, "DEFAULT", Some(home), Path::new("/cfg")).unwrap();
        assert_eq!(d.key_file, PathBuf::from("/home/me/.oci/key.pem"));
        assert_eq!(d.fingerprint, "20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34");
        let o = parse(TEXT, "OTHER", Some(home), Path::new("/cfg")).unwrap();
        assert_eq!(o.user, "ocid1.user.oc1..other");
        assert_eq!(o.tenancy, "ocid1.tenancy.oc1..t");
        assert_eq!(o.region.as_deref(), Some("us-ashburn-1"));
        assert_eq!(o.key_file, PathBuf::from("/cfg/keys/other.pem"));
    }

    #[test]
    fn reports_what_is_wrong() {
        assert!(parse(TEXT, "NOPE", None, Path::new(".")).unwrap_err().contains("profiles: DEFAULT, OTHER"));
        let e = parse("[DEFAULT]\nuser=u\n", "DEFAULT", None, Path::new(".")).unwrap_err();
        assert_eq!(e, "profile [DEFAULT] lacks tenancy, fingerprint, key_file");
        let bad_fp = TEXT.replace("20:3B", "203B");
        assert!(parse(&bad_fp, "DEFAULT", None, Path::new(".")).unwrap_err().contains("fingerprint"));
    }
}
