//! What every command needs: where the manifest and state are, how to reach the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{CliError, CliResult};
use super::ui::Ui;
use super::{BackendArg, Global};
use crate::manifest::{BackendKind, Config, Endpoint, LoadOptions};
use crate::providers::PhalaApi;
use crate::providers::phala::PhalaClient;
use crate::sim::{Sim, SimConfig, SimHandle};
use crate::state::{Backend, DEFAULT_WORKSPACE, LockInfo, OpenOptions, PgConn, Store, check_workspace};

pub struct Ctx {
    pub global: Global,
    pub ui: Ui,
}

/// A connection to the API, keeping the embedded simulator alive while it is used.
pub struct Api {
    pub client: Arc<dyn PhalaApi>,
    pub endpoint: String,
    _sim: Option<SimHandle>,
}

impl Ctx {
    pub fn new(global: Global, ui: Ui) -> Ctx {
        Ctx { global, ui }
    }

    pub fn manifest_path(&self) -> &Path {
        &self.global.file
    }

    pub fn base_dir(&self) -> PathBuf {
        self.global
            .file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.global.state.clone().unwrap_or_else(|| self.base_dir().join("state"))
    }

    /// Retry tuning from the environment (`TEEFORM_RETRY_MAX_ATTEMPTS`, `TEEFORM_RETRY_BASE_MS`,
    /// `TEEFORM_RETRY_DEADLINE_SECS`); defaults suit the real API.
    fn retry_policy(&self) -> crate::providers::http::RetryPolicy {
        let mut p = crate::providers::http::RetryPolicy::default();
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = num("TEEFORM_RETRY_MAX_ATTEMPTS") {
            p.max_attempts = n.max(1) as u32;
        }
        if let Some(ms) = num("TEEFORM_RETRY_BASE_MS") {
            p.base_delay = Duration::from_millis(ms);
        }
        if let Some(s) = num("TEEFORM_RETRY_DEADLINE_SECS") {
            p.deadline = Duration::from_secs(s);
        }
        p
    }

    /// Retries are shown as they happen: a slow run should say why it is slow.
    fn retry_observer(&self) -> crate::providers::http::RetryObserver {
        let ui = self.ui;
        Arc::new(move |ev| {
            let p = ui.err_palette();
            super::ui::eprint_line(&format!(
                "{} {} {}: {}; attempt {} in {:.1}s",
                p.yellow(&format!("{:>12}", "Retrying")),
                ev.method,
                ev.path,
                ev.reason,
                ev.attempt + 1,
                ev.delay.as_secs_f64()
            ));
        })
    }

    pub fn load(&self, vars: &[(String, String)]) -> CliResult<Config> {
        let opts = LoadOptions { vars: vars.to_vec(), ..Default::default() };
        let cfg = crate::manifest::load(self.manifest_path(), &opts)?;
        for w in &cfg.warnings {
            eprint!("{}\n\n", w.render(self.ui.stderr_color));
        }
        Ok(cfg)
    }

    pub async fn open_state(&self, command: &str, lock_timeout: Duration) -> CliResult<Arc<dyn Store>> {
        Ok(crate::state::open(&self.state_options(command, lock_timeout)?).await?)
    }

    /// Where the state is: `--backend`, else the manifest's `backend:` (read alone, so commands
    /// that need no manifest still find it), else local; and the workspace.
    pub fn state_options(&self, command: &str, lock_timeout: Duration) -> CliResult<OpenOptions> {
        let kind = match self.global.backend {
            Some(b) => b,
            None => match crate::manifest::load_backend(self.manifest_path())? {
                Some(BackendKind::Postgres) => BackendArg::Postgres,
                Some(BackendKind::Local) | None => BackendArg::Local,
            },
        };
        let workspace = self.global.workspace.clone().unwrap_or_else(|| DEFAULT_WORKSPACE.into());
        check_workspace(&workspace).map_err(CliError::new)?;
        let lock = LockInfo::for_command(command);
        Ok(OpenOptions { dir: self.state_dir(), lock, lock_timeout, backend: self.backend(kind)?, workspace })
    }

    /// The connection for a backend. The PostgreSQL URL comes only from the environment, so its
    /// password never lands in a manifest or in git.
    pub fn backend(&self, kind: BackendArg) -> CliResult<Backend> {
        match kind {
            BackendArg::Local => Ok(Backend::Local),
            BackendArg::Postgres => match std::env::var("TEEFORM_PG_CONN") {
                Ok(c) if !c.trim().is_empty() => Ok(Backend::Postgres(PgConn::new(c.trim()))),
                _ => Err(CliError::new("the postgres backend needs TEEFORM_PG_CONN, and it is not set")
                    .hint("export TEEFORM_PG_CONN='postgres://USER:PASSWORD@HOST:5432/DATABASE' (a libpq URL)")),
            },
        }
    }

    /// Connects to the endpoint; `local` starts the embedded simulator with its data under
    /// the state directory.
    pub async fn api(&self, endpoint: &Endpoint) -> CliResult<Api> {
        let timeout = Duration::from_secs_f64(
            std::env::var("TEEFORM_HTTP_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(30.0),
        );
        match endpoint {
            Endpoint::Local => {
                let ms = |k: &str, d: u64| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
                let key = uuid::Uuid::new_v4().simple().to_string();
                let cfg = SimConfig {
                    api_key: Some(key.clone()),
                    restart_ms: ms("TEEFORM_LOCAL_RESTART_MS", 1500),
                    boot_ms: ms("TEEFORM_LOCAL_BOOT_MS", 1500),
                    ..Default::default()
                };
                let dir = self.state_dir();
                std::fs::create_dir_all(&dir)?;
                let sim = Sim::new(cfg, Some(dir.join("local-sim.json")))
                    .map_err(|e| CliError::new(format!("cannot start the embedded simulator: {e}")))?;
                let handle = sim.spawn("127.0.0.1:0".parse().expect("valid address")).await?;
                let prefix = handle.api_prefix();
                let client = PhalaClient::new(&prefix, Some(key), timeout)?
                    .with_observer(self.retry_observer())
                    .with_policy(self.retry_policy());
                Ok(Api { client: Arc::new(client), endpoint: "local".into(), _sim: Some(handle) })
            }
            Endpoint::Url(prefix) => {
                let key = api_key()?;
                let client = PhalaClient::new(prefix, key, timeout)?
                    .with_observer(self.retry_observer())
                    .with_policy(self.retry_policy());
                Ok(Api { client: Arc::new(client), endpoint: prefix.clone(), _sim: None })
            }
        }
    }
}

/// The API key: `PHALA_CLOUD_API_KEY`, else the `phala` CLI's credentials file (refused when
/// others can read it). Never a literal in the manifest, never written anywhere.
fn api_key() -> CliResult<Option<String>> {
    if let Ok(k) = std::env::var("PHALA_CLOUD_API_KEY")
        && !k.trim().is_empty()
    {
        return Ok(Some(k.trim().to_string()));
    }
    let dir = std::env::var_os("PHALA_CLOUD_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".phala-cloud")));
    let Some(path) = dir.map(|d| d.join("credentials.json")) else {
        return Ok(None);
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        return Ok(None);
    };
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CliError::new(format!("{} is readable by other users; refusing to use it", path.display()))
            .hint(format!("chmod 600 {}", path.display())));
    }
    let text = std::fs::read_to_string(&path)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CliError::new(format!("{} is not valid JSON: {e}", path.display())))?;
    let profile = v.get("current_profile").and_then(|p| p.as_str()).unwrap_or("default");
    Ok(v.get("profiles")
        .and_then(|p| p.get(profile))
        .and_then(|p| p.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_string))
}
