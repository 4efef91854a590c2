//! Saved plan files (`plan --out`): the plan plus where it applies. No secrets: sensitive env
//! values are digests plus the reference to read them again at apply time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::error::{CliError, CliResult, Hint};
use crate::plan::Plan;

const FORMAT: &str = "teeform-plan";

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub teeform_version: String,
    pub created_at: String,
    /// `local` or the API prefix the plan was made against.
    pub endpoint: String,
    /// The manifest's directory, against which secret files are read again.
    pub base_dir: PathBuf,
    /// The manifest's `allowed_dirs:`, absolute: secret files may be read there too.
    #[serde(default)]
    pub allowed_dirs: Vec<PathBuf>,
    /// The manifest's `secrets.passphrase_env` (a variable's name), read again at apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// The manifest's `verify:`, for the apply gate (flags given at apply still win).
    #[serde(default, skip_serializing_if = "is_default")]
    pub verify: crate::manifest::VerifySettings,
    pub plan: Plan,
}

impl SavedPlan {
    pub fn new(
        plan: Plan,
        endpoint: String,
        base_dir: PathBuf,
        allowed_dirs: Vec<PathBuf>,
        passphrase_env: Option<String>,
    ) -> SavedPlan {
        SavedPlan {
            format: FORMAT.into(),
            teeform_version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::model::now_rfc3339(),
            endpoint,
            base_dir,
            allowed_dirs,
            passphrase_env,
            verify: Default::default(),
            plan,
        }
    }

    pub fn write(&self, path: &Path) -> CliResult<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| CliError::internal(format!("cannot encode the plan: {e}")))?;
        let tmp = path.with_extension("tmp-teeform");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| CliError::new(format!("cannot write the plan to {}: {e}", path.display())))
    }

    pub fn read(path: &Path) -> CliResult<SavedPlan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::new(format!("cannot read plan file {}: {e}", path.display())))?;
        let v: SavedPlan = serde_json::from_str(&text).map_err(|e| {
            CliError::new(format!("{} is not a teeform plan file: {e}", path.display())).hint(Hint::run(
                "create one with ",
                "plan --out FILE",
                "",
            ))
        })?;
        if v.format != FORMAT || v.plan.format_version != crate::plan::FORMAT_VERSION {
            return Err(CliError::new(format!("{} is a plan file of another format or version", path.display()))
                .hint(Hint::run("run ", "plan --out FILE", " again with this teeform")));
        }
        Ok(v)
    }
}

fn is_default(v: &crate::manifest::VerifySettings) -> bool {
    *v == crate::manifest::VerifySettings::default()
}
