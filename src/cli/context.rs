//! What every command gets ([`Ctx`]): the global flags, the [`Shell`], the checked
//! settings; where the manifest and state are (opening the state, and the moves and owner
//! checks that go with it), and how to reach the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{CliError, CliResult};
use super::settings::Settings;
use super::shell::Shell;
use super::{BackendArg, Global};
use crate::manifest::{BackendKind, Config, Endpoint, LoadOptions};
use crate::providers::PhalaApi;
use crate::providers::phala::PhalaClient;
use crate::sim::{Sim, SimConfig, SimHandle};
use crate::state::{Backend, Batch, DEFAULT_WORKSPACE, LockInfo, OpenOptions, PgConn, Store, check_workspace};

pub struct Ctx {
    pub global: Global,
    pub shell: Shell,
    /// Numbers from the environment, checked before the command does anything.
    pub settings: Settings,
    pub cmdline: CommandLine,
    /// The JSON event stream, when the command writes one (`apply --json`): the plan and
    /// every step go there instead of to people.
    pub stream: Option<std::sync::Arc<super::shared::stream::Stream>>,
}

/// The global flags of this run that say which manifest, state and workspace it works on,
/// as shell words: what a hint repeats so the command it names works on the same ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub flags: Vec<String>,
}

impl CommandLine {
    /// `-C`, `-f` (unless the default), `--state`, `--backend`, `--workspace`, as given.
    pub fn new(g: &Global) -> CommandLine {
        let mut flags = Vec::new();
        let mut flag = |f: &str, v: &std::ffi::OsStr| {
            flags.push(f.to_string());
            flags.push(shell_quote(&v.to_string_lossy()));
        };
        if let Some(d) = &g.chdir {
            flag("-C", d.as_os_str());
        }
        if g.file != Path::new("teeform.yaml") {
            flag("-f", g.file.as_os_str());
        }
        if let Some(d) = &g.state {
            flag("--state", d.as_os_str());
        }
        if let Some(b) = g.backend {
            flag("--backend", std::ffi::OsStr::new(if b == BackendArg::Postgres { "postgres" } else { "local" }));
        }
        if let Some(w) = &g.workspace {
            flag("--workspace", std::ffi::OsStr::new(w));
        }
        CommandLine { flags }
    }

    /// `teeform`, the flags, then `rest` (a command and its arguments).
    pub fn command(&self, rest: &str) -> String {
        let mut out = vec!["teeform"];
        out.extend(self.flags.iter().map(String::as_str));
        out.push(rest);
        out.join(" ")
    }
}

/// `s` as one shell word: as is when it is plainly safe, else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', "'\\''")) }
}

/// A connection to the API, keeping the embedded simulator alive while it is used.
pub struct Api {
    pub client: Arc<dyn PhalaApi>,
    pub endpoint: String,
    _sim: Option<SimHandle>,
}

impl Ctx {
    pub fn new(global: Global, shell: Shell) -> CliResult<Ctx> {
        let cmdline = CommandLine::new(&global);
        Ok(Ctx { global, shell, settings: Settings::from_env()?, cmdline, stream: None })
    }

    /// `teeform` with the global flags this run was given (`-C`, `-f`, `--state`,
    /// `--backend`, `--workspace`) and then `rest`: a command a hint can tell the user to run
    /// that works on the same manifest, state and workspace.
    pub fn command_line(&self, rest: &str) -> String {
        self.cmdline.command(rest)
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

    /// `--state`, else where the manifest keeps its state ([`default_state_dir`]).
    pub fn state_dir(&self) -> PathBuf {
        self.global.state.clone().unwrap_or_else(|| default_state_dir(&self.global.file))
    }

    /// The manifest's file name, as a state records which manifest it belongs to.
    pub fn manifest_name(&self) -> String {
        self.global.file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
    }

    /// Retries are shown as they happen: a slow run should say why it is slow.
    fn retry_observer(&self) -> crate::providers::http::RetryObserver {
        let shell = self.shell.clone();
        Arc::new(move |ev| {
            shell.status_warn(
                "Retrying",
                &format!(
                    "{} {}: {}; attempt {} in {:.1}s",
                    ev.method,
                    ev.path,
                    crate::redact::text(&ev.reason),
                    ev.attempt + 1,
                    ev.delay.as_secs_f64()
                ),
            );
        })
    }

    /// Loads the manifest with `--var` values only (and the `*.auto.vars.yaml` files beside it).
    pub fn load(&self, vars: &[(String, String)]) -> CliResult<Config> {
        self.load_with(&super::VarArgs { vars: vars.to_vec(), var_files: Vec::new() })
    }

    /// How the manifest is read with these variables: `*.auto.vars.yaml` beside it, then each
    /// `--var-file`, then `--var`.
    pub fn load_options(&self, vars: &super::VarArgs) -> LoadOptions {
        let mut var_files = crate::manifest::auto_var_files(&self.base_dir());
        var_files.extend(vars.var_files.iter().map(|p| crate::manifest::VarFile { path: p.clone(), auto: false }));
        // The credentials profile's `api_prefix` stands in for PHALA_CLOUD_API_PREFIX when
        // that is unset (read only then; a broken credentials file shows when the key is read).
        let profile = self.global.profile.clone();
        let env: crate::manifest::EnvLookup = Arc::new(move |k| match std::env::var(k) {
            Ok(v) => Some(v),
            Err(_) if k == "PHALA_CLOUD_API_PREFIX" => profile_api_prefix(profile.as_deref()).ok().flatten(),
            Err(_) => None,
        });
        let workspace = self.global.workspace.clone().unwrap_or_else(|| DEFAULT_WORKSPACE.into());
        LoadOptions { vars: vars.vars.clone(), var_files, workspace, env, ..Default::default() }
    }

    /// Loads the manifest with `--var`, `--var-file` and the `*.auto.vars.yaml` files.
    pub fn load_with(&self, vars: &super::VarArgs) -> CliResult<Config> {
        let opts = self.load_options(vars);
        let cfg = crate::manifest::load(self.manifest_path(), &opts)?;
        // RPC URLs in the manifest may carry a key: from here on nothing shows them whole.
        for c in cfg.cvms.values() {
            if let crate::manifest::Kms::OnChain(k) = &c.kms
                && let Some(u) = &k.rpc_url
            {
                crate::redact::url(u);
            }
        }
        for w in &cfg.warnings {
            self.shell.diagnostic(w);
        }
        Ok(cfg)
    }

    pub async fn open_state(&self, command: &str, lock_timeout: Duration) -> CliResult<Arc<dyn Store>> {
        self.open_store(&self.state_options(command, lock_timeout)?).await
    }

    /// Opens the store `opts` names.
    async fn open_store(&self, opts: &crate::state::OpenOptions) -> CliResult<Arc<dyn Store>> {
        Ok(crate::state::open(opts).await?)
    }

    /// Opens the state a command pairs with the manifest (`cfg`, when loaded): first moves a
    /// state an earlier teeform kept in the folder's shared `state/` to where this manifest
    /// keeps its own, if it is this manifest's; then makes sure the state belongs to this
    /// manifest, recording it on first use. Never opens another manifest's state.
    pub async fn open_state_for(
        &self,
        cfg: Option<&Config>,
        command: &str,
        lock_timeout: Duration,
    ) -> CliResult<Arc<dyn Store>> {
        let opts = self.state_options(command, lock_timeout)?;
        if let Some(cfg) = cfg {
            self.move_shared_state(&opts, cfg).await?;
        }
        let store = self.open_store(&opts).await?;
        if let Err(e) = self.bind(store.as_ref(), cfg).await {
            store.close().await?;
            return Err(e);
        }
        Ok(store)
    }

    /// Opens the state for a command that only reads it. `None` when there is no local state
    /// yet: nothing is created. With neither a manifest nor a state here, an error.
    pub async fn open_state_read(&self, command: &str) -> CliResult<Option<Arc<dyn Store>>> {
        let opts = self.state_options(command, Duration::from_secs(5))?;
        if matches!(opts.backend, Backend::Local) && !crate::state::exists(&opts.local_dir()) {
            if !self.manifest_path().exists() {
                return Err(self.no_project());
            }
            return Ok(None);
        }
        Ok(Some(self.open_store(&opts).await?))
    }

    /// "Nothing here": no manifest and no state where this command looked.
    pub fn no_project(&self) -> CliError {
        let mut e = if self.manifest_path().exists() {
            CliError::new(format!("there is no state in {} yet (nothing was created)", self.state_dir().display()))
                .hint(format!("`teeform -f {} plan` starts one", self.manifest_path().display()))
        } else {
            CliError::new(format!(
                "no teeform manifest ({}) and no state ({}) here; nothing was created",
                self.manifest_path().display(),
                self.state_dir().display()
            ))
            .hint("run teeform in the folder of your teeform.yaml, or name it: `-C DIR`, `-f FILE`, `--state DIR`")
        };
        let shared = self.base_dir().join("state");
        if self.global.state.is_none() && shared != self.state_dir() && crate::state::exists(&shared) {
            e = e.hint(format!(
                "{} holds a state an earlier teeform kept for every manifest in this folder; `teeform -f {} plan` moves it to {} if it is this manifest's",
                shared.display(),
                self.manifest_path().display(),
                self.state_dir().display()
            ));
        }
        e
    }

    /// A state in the folder's shared `state/` (where teeform before 0.2 kept the state of
    /// every manifest in a folder) moves to this manifest's own state directory when its
    /// records are this manifest's CVMs.
    async fn move_shared_state(&self, opts: &OpenOptions, cfg: &Config) -> CliResult<()> {
        let shared = self.base_dir().join("state");
        let own = self.state_dir();
        if self.global.state.is_some()
            || !matches!(opts.backend, Backend::Local)
            || shared == own
            || own.exists()
            || !crate::state::exists(&OpenOptions { dir: shared.clone(), ..opts.clone() }.local_dir())
        {
            return Ok(());
        }
        let legacy = OpenOptions { dir: shared.clone(), lock_timeout: Duration::ZERO, ..opts.clone() };
        let store = match crate::state::open(&legacy).await {
            Ok(s) => s,
            // In use: another manifest's run (a run of this one would not be using it).
            Err(crate::state::StateError::Locked { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let fit = owner_fit(store.as_ref(), cfg).await;
        store.close().await?;
        drop(store);
        let (meta, fit) = fit?;
        let me = self.manifest_name();
        match (meta.manifest, fit) {
            (Some(m), _) if m == me => {}
            (Some(_), _) | (None, Fit::Empty | Fit::Foreign) => {
                self.shell.status(
                    "Note",
                    &format!(
                        "{} is another manifest's state; {} keeps its own in {}",
                        shared.display(),
                        me,
                        own.display()
                    ),
                );
                return Ok(());
            }
            (None, Fit::Unclear(why)) => return Err(self.unclear(&shared, &why)),
            (None, Fit::Ours) => {}
        }
        std::fs::rename(&shared, &own).map_err(|e| {
            CliError::new(format!(
                "cannot move {} to {}: {}",
                shared.display(),
                own.display(),
                crate::state::io_reason(&e)
            ))
        })?;
        self.shell.status(
            "Moved",
            &format!(
                "{} to {}: each manifest now keeps its own state ({} → {})",
                shared.display(),
                own.display(),
                me,
                own.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
            ),
        );
        Ok(())
    }

    /// Makes sure `store` belongs to this manifest; records it when the state has no owner
    /// yet and holds nothing, or only this manifest's CVMs.
    async fn bind(&self, store: &dyn Store, cfg: Option<&Config>) -> CliResult<()> {
        let me = self.manifest_name();
        let meta = store.meta().await?;
        match &meta.manifest {
            Some(m) if *m == me => return Ok(()),
            Some(m) => {
                return Err(CliError::new(format!(
                    "{} belongs to the manifest {m}, not {me}; nothing was changed",
                    store.describe()
                ))
                .hint(format!("to work on that state, name its manifest: `-f {m}`"))
                .hint(format!(
                    "{me} keeps its own state in {} unless --state or --workspace says otherwise",
                    default_state_dir(&self.global.file).display()
                ))
                .hint(format!("if you renamed {m} to {me}: `teeform -f {me} state bind` records the new name")));
            }
            None => {}
        }
        let Some(cfg) = cfg else {
            // A saved plan was made against this very state (lineage and serial); no guessing.
            return Ok(());
        };
        match owner_fit(store, cfg).await?.1 {
            Fit::Empty | Fit::Ours => {}
            Fit::Foreign => {
                return Err(self.unclear(
                    &self.state_dir(),
                    "none of its CVMs is in this manifest, so it is probably another manifest's",
                ));
            }
            Fit::Unclear(why) => return Err(self.unclear(&self.state_dir(), &why)),
        }
        store.commit(Batch { bind: Some(me), ..Default::default() }).await?;
        Ok(())
    }

    fn unclear(&self, dir: &Path, why: &str) -> CliError {
        let me = self.manifest_name();
        CliError::new(format!(
            "the state in {} was made by an earlier teeform, which did not record which manifest it belongs to, and {why}; teeform will not guess, and nothing was changed",
            dir.display()
        ))
        .hint("each manifest now keeps its own state, `teeform.yaml` in `state/` and `NAME.yaml` in `NAME.state/`: if this one is another manifest's, run that manifest once (`teeform -f NAME.yaml plan` moves it to its place)")
        .hint(format!(
            "if it is {me}'s (you renamed or removed CVMs since): `teeform -f {me}{} state bind`",
            if dir == self.state_dir() { String::new() } else { format!(" --state {}", dir.display()) }
        ))
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
        let timeout = self.settings.http_timeout;
        match endpoint {
            Endpoint::Local => {
                let key = uuid::Uuid::new_v4().simple().to_string();
                let cfg = SimConfig {
                    api_key: Some(key.clone()),
                    restart_ms: self.settings.local_restart_ms,
                    boot_ms: self.settings.local_boot_ms,
                    ..Default::default()
                };
                let dir = self.state_dir();
                let failed = |e: std::io::Error| CliError::with_source("cannot start the embedded simulator", e);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| CliError::with_source(format!("cannot create {}", dir.display()), e))?;
                let sim = Sim::new(cfg, Some(dir.join("local-sim.json"))).map_err(failed)?;
                let handle = sim.spawn(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await.map_err(failed)?;
                let prefix = handle.api_prefix();
                let client = PhalaClient::new(&prefix, Some(key), timeout)?
                    .with_key_source("the embedded simulator")
                    .with_observer(self.retry_observer())
                    .with_policy(self.settings.retry.clone());
                Ok(Api { client: Arc::new(client), endpoint: "local".into(), _sim: Some(handle) })
            }
            Endpoint::Url(prefix) => {
                let (key, source) = match api_key(self.global.profile.as_deref())? {
                    Some((k, src)) => (Some(k), Some(src)),
                    None => (None, None),
                };
                let oidc = if key.is_none() { oidc_token() } else { None };
                let mut client = PhalaClient::new(prefix, key, timeout)?
                    .with_observer(self.retry_observer())
                    .with_policy(self.settings.retry.clone());
                if let Some(src) = source {
                    client = client.with_key_source(src);
                }
                if let Some((token, workspace)) = oidc {
                    client = client.with_oidc_token(token, workspace);
                }
                Ok(Api { client: Arc::new(client), endpoint: prefix.clone(), _sim: None })
            }
        }
    }
}

/// Where a manifest keeps its local state by default: `state/` beside `teeform.yaml` (any
/// `teeform.*`), `NAME.state/` beside `NAME.yaml`, so manifests side by side (`prod.yaml`,
/// `staging.yaml`) never share one, as their lock files do not (`prod.lock`).
pub fn default_state_dir(manifest: &Path) -> PathBuf {
    let dir = manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match manifest.file_stem().map(|s| s.to_string_lossy().to_string()) {
        Some(stem) if stem != "teeform" && !stem.is_empty() => dir.join(format!("{stem}.state")),
        _ => dir.join("state"),
    }
}

/// How a state made before teeform recorded its manifest fits a manifest.
enum Fit {
    /// No records and nothing in flight.
    Empty,
    /// Some of its CVMs are the manifest's (same address and name) and none is another's.
    Ours,
    /// None of its CVMs is in the manifest.
    Foreign,
    /// Some match and some conflict (an address the manifest gives another name): why.
    Unclear(String),
}

async fn owner_fit(store: &dyn Store, cfg: &Config) -> CliResult<(crate::state::Meta, Fit)> {
    let snap = store.snapshot().await?;
    let journal = store.journal().await?;
    let held = snap
        .resources
        .values()
        .map(|r| (r.address.clone(), r.attrs.name.clone()))
        .chain(journal.iter().filter(|e| !e.name.is_empty()).map(|e| (e.address.clone(), e.name.clone())));
    let (mut ours, mut theirs, mut conflict) = (0, 0, None);
    for (address, name) in held {
        let want = cfg.cvms.get(address.key()).map(|c| c.name.as_str());
        match want {
            Some(w) if w == name => ours += 1,
            Some(w) => {
                conflict.get_or_insert(format!("it holds {address} named `{name}` where this manifest names it `{w}`"));
            }
            None => theirs += 1,
        }
    }
    let fit = match (ours, theirs, conflict) {
        (_, _, Some(why)) => Fit::Unclear(why),
        (0, 0, None) => Fit::Empty,
        (0, _, None) => Fit::Foreign,
        _ => Fit::Ours,
    };
    Ok((snap.meta, fit))
}

/// Keyless CI auth, used only when no API key is found (as the `phala` CLI prefers a key): an
/// OIDC token from `PHALA_OIDC_TOKEN` (sent as `Authorization: Bearer`), and the workspace
/// `PHALA_CLOUD_WORKSPACE` names (`X-Phala-Workspace`; needed when the repository is trusted
/// by several). The token is never written anywhere and is registered with [`crate::redact`].
fn oidc_token() -> Option<(String, Option<String>)> {
    let token = std::env::var("PHALA_OIDC_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())?;
    crate::redact::secret(&token);
    let workspace = std::env::var("PHALA_CLOUD_WORKSPACE").ok().map(|w| w.trim().to_string()).filter(|w| !w.is_empty());
    Some((token, workspace))
}

/// A profile of the phala CLI's credentials file.
struct Profile {
    name: String,
    token: Option<String>,
    api_prefix: Option<String>,
    path: PathBuf,
}

/// The profile `wanted` (else the file's `current_profile`, else `default`) of the phala
/// CLI's `credentials.json` (`$PHALA_CLOUD_DIR`, else `~/.phala-cloud`), whose shape is
/// `{current_profile, profiles: {NAME: {token, api_prefix, …}}}`. `None` when there is no
/// file and no profile was asked for. A file others can read is refused; a profile asked for
/// that the file lacks is an error listing those it has.
fn credentials_profile(wanted: Option<&str>) -> CliResult<Option<Profile>> {
    let dir = std::env::var_os("PHALA_CLOUD_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".phala-cloud")));
    let path = dir.map(|d| d.join("credentials.json"));
    let meta = path.as_ref().and_then(|p| std::fs::metadata(p).ok());
    let (Some(path), Some(meta)) = (path, meta) else {
        return match wanted {
            None => Ok(None),
            Some(w) => Err(CliError::new(format!("--profile {w}: there is no phala CLI credentials file"))
                .hint("log in with the phala CLI (`phala auth login`), or set PHALA_CLOUD_DIR to where its credentials.json is")),
        };
    };
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(CliError::new(format!("{} is readable by other users; refusing to use it", path.display()))
            .hint(format!("chmod 600 {}", path.display())));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::with_source(format!("cannot read {}", path.display()), e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CliError::new(format!("{} is not valid JSON: {e}", path.display())))?;
    let name = wanted.or_else(|| v.get("current_profile").and_then(|p| p.as_str())).unwrap_or("default").to_string();
    let Some(p) = v.get("profiles").and_then(|p| p.get(&name)) else {
        if wanted.is_none() {
            return Ok(None);
        }
        let have: Vec<&str> = v
            .get("profiles")
            .and_then(|p| p.as_object())
            .map(|m| m.keys().map(|k| k.as_str()).collect())
            .unwrap_or_default();
        return Err(CliError::new(format!("{} has no profile `{name}`", path.display())).hint(if have.is_empty() {
            "it has no profiles: log in with the phala CLI".to_string()
        } else {
            format!("its profiles: {}", have.join(", "))
        }));
    };
    let field = |k: &str| p.get(k).and_then(|t| t.as_str()).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    Ok(Some(Profile { token: field("token"), api_prefix: field("api_prefix"), name, path }))
}

/// The API prefix of the credentials profile in use, for a manifest that names no endpoint
/// while PHALA_CLOUD_API_PREFIX is unset. UNVERIFIED: that the phala CLI lets a profile's
/// `api_prefix` stand in for the default in the same way.
pub fn profile_api_prefix(wanted: Option<&str>) -> CliResult<Option<String>> {
    Ok(credentials_profile(wanted)?.and_then(|p| p.api_prefix))
}

/// The API key and where it came from: the credentials file's profile named with
/// `--profile`; else `PHALA_CLOUD_API_KEY`; else the file's current profile (a file others can
/// read is refused). Never a literal in the manifest, never written anywhere; registered with
/// [`crate::redact`] so no message or log line shows it.
fn api_key(wanted_profile: Option<&str>) -> CliResult<Option<(String, String)>> {
    if wanted_profile.is_none()
        && let Ok(k) = std::env::var("PHALA_CLOUD_API_KEY")
        && !k.trim().is_empty()
    {
        crate::redact::secret(&k);
        return Ok(Some((k.trim().to_string(), "PHALA_CLOUD_API_KEY".into())));
    }
    let Some(p) = credentials_profile(wanted_profile)? else {
        return Ok(None);
    };
    Ok(p.token.map(|k| {
        crate::redact::secret(&k);
        (k, format!("{} (profile `{}`)", p.path.display(), p.name))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_repeat_the_global_flags_of_the_run() {
        use clap::Parser;
        let ctx = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(args).unwrap();
            let (shell, _) = Shell::capture(false, Default::default());
            Ctx::new(cli.global, shell).unwrap()
        };
        assert_eq!(ctx(&["teeform", "plan"]).command_line("apply --resume"), "teeform apply --resume");
        let c = ctx(&["teeform", "-C", "my dir", "-f", "staging.yaml", "--workspace", "prod", "--state", "st", "plan"]);
        assert_eq!(
            c.command_line("apply --resume"),
            "teeform -C 'my dir' -f staging.yaml --state st --workspace prod apply --resume"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
