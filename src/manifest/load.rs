//! Reading a manifest: the spanned YAML tree is walked once, collecting every diagnostic.
//! This file holds the entry points and the [`Loader`] with its walk of the top level
//! ([`Loader::root`]); each job is a file of its own:
//!
//! - `walk.rs`: mappings and keys (duplicates, unknown keys with did-you-mean);
//! - `values.rs`: scalars typed by the field (strings as written, numbers, booleans) and
//!   `${...}` references checked where they are written;
//! - `variables.rs`: `variables:`, `--var`, `TEEFORM_VAR_*`;
//! - `reads.rs`: the files the manifest names, each read once; `allowed_dirs:`;
//! - `settings.rs`: `provider:` (the Phala endpoint) and `backend:`;
//! - `cvm.rs`: `cvms:` (one CVM: [`Loader::cvm`]; its attributes: `Loader::cvm_attribute`),
//!   names across CVMs, implied dependencies; `kms.rs`: a CVM's `kms:`;
//! - `env_file.rs`: a CVM's `env_file:` (docker compose's env files; secret ones as references);
//! - `compose.rs`: each CVM's compose file and env handed to `compose_lint` once all are read;
//! - `moved.rs`: `moved:` (renamed CVM keys);
//! - `outputs.rs`: `outputs:`; `secrets.rs`: `secrets:` (how secret values are digested);
//! - `data.rs`: `data:` and the catalog providers.

mod compose;
mod cvm;
mod data;
mod env_file;
mod kms;
mod moved;
mod outputs;
mod reads;
mod secrets;
mod settings;
mod values;
mod var_files;
mod variables;
mod verify;
mod walk;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compose_lint::Use;
use super::diag::{Diagnostic, Source};
use super::files::{self, FilePolicy, Limit};
use super::yaml::{self, Kind, Node, Span};
use super::{BackendKind, Config, ManifestError};
use cvm::imply_dependencies;
pub use cvm::{cvm_keys, valid_cvm_name};
use kms::kms_env_names;
use reads::FileEntry;
use values::Lit;
pub use var_files::{VarFile, auto_var_files};
use walk::key_spans;

/// Reads an environment variable.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How to read a manifest: variable overrides and where environment variables come from
/// (tests pass a fixed map so they never depend on the machine).
#[derive(Clone)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`, in order.
    pub vars: Vec<(String, String)>,
    /// Variable files (`*.auto.vars.yaml`, then `--var-file`), in order: a later file's value
    /// wins, and `--var` wins over every file.
    pub var_files: Vec<VarFile>,
    /// What `${workspace}` is: the run's state workspace.
    pub workspace: String,
    pub env: EnvLookup,
    /// Paths in diagnostics are shown relative to this directory.
    pub display_base: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            vars: Vec::new(),
            var_files: Vec::new(),
            workspace: "default".into(),
            env: Arc::new(|k| std::env::var(k).ok()),
            display_base: std::env::current_dir().ok(),
        }
    }
}

/// Reads and validates the manifest at `path`: a regular file of at most 16 MiB, UTF-8,
/// a leading byte-order mark ignored.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ManifestError> {
    load_str(path, read_manifest(path)?, opts)
}

fn read_manifest(path: &Path) -> Result<String, ManifestError> {
    files::read_regular(path, Limit::Manifest).map_err(|e| ManifestError {
        diagnostics: vec![
            Diagnostic::bare(format!("cannot read manifest {}: {e}", path.display()))
                .hint("create teeform.yaml, or choose another file with -f FILE"),
        ],
    })
}

pub fn load_str(path: &Path, text: String, opts: &LoadOptions) -> Result<Config, ManifestError> {
    let text = files::strip_bom(text);
    let display = display_path(path, opts.display_base.as_deref());
    let src = Source::new(path, display, text);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = match yaml::parse(&src.text) {
        Ok(n) => n,
        Err(e) => return Err(ManifestError { diagnostics: vec![syntax_error(&src, &e)] }),
    };
    let mut l = Loader::new(src.clone(), dir, opts);
    let cfg = l.root(&root, path);
    if l.diags.iter().any(Diagnostic::is_error) {
        return Err(ManifestError { diagnostics: l.diags });
    }
    let mut cfg = cfg.expect("a config exists when no error was reported");
    cfg.warnings = l.diags;
    Ok(cfg)
}

fn syntax_error(src: &Arc<Source>, e: &yaml::SyntaxError) -> Diagnostic {
    let span = Span::new(e.offset, (e.offset + 1).min(src.text.len()).max(e.offset));
    Diagnostic::error(src, span, format!("invalid YAML: {}", e.message)).label("here")
}

/// Only the manifest's `backend:`, for commands that need the state but not the rest of the
/// manifest (`output`, `state`, `show`, `force-unlock`). `Ok(None)` when there is no manifest
/// or it names no backend. A manifest that is not YAML is an error: a guessed backend could
/// show or change the wrong state.
pub fn load_backend(path: &Path) -> Result<Option<BackendKind>, ManifestError> {
    let text = match files::read_regular(path, Limit::Manifest) {
        Ok(t) => t,
        Err(files::FileError::NotFound) => return Ok(None),
        Err(_) => return read_manifest(path).map(|_| None),
    };
    let opts = LoadOptions::default();
    let src = Source::new(path, display_path(path, opts.display_base.as_deref()), text);
    let root = yaml::parse(&src.text).map_err(|e| ManifestError { diagnostics: vec![syntax_error(&src, &e)] })?;
    let mut l = Loader::new(src, PathBuf::new(), &opts);
    let node = match &root.kind {
        Kind::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "backend"))
            .map(|(_, v)| v),
        _ => None,
    };
    let kind = node.filter(|n| !n.is_null()).and_then(|n| l.backend(n));
    if l.diags.iter().any(Diagnostic::is_error) {
        return Err(ManifestError { diagnostics: l.diags });
    }
    Ok(kind)
}

/// The keys under `cvms:` of the manifest at `path`, read from its YAML alone (no values,
/// files or secrets resolved). `None` when the file is missing or is not a YAML map, for
/// messages that can only guess then.
pub fn declared_cvms(path: &Path) -> Option<BTreeSet<String>> {
    let text = files::read_regular(path, Limit::Manifest).ok()?;
    let root = yaml::parse(&text).ok()?;
    let Kind::Map(pairs) = &root.kind else { return None };
    let cvms = pairs.iter().find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "cvms"));
    let Some((_, cvms)) = cvms else { return Some(BTreeSet::new()) };
    match &cvms.kind {
        Kind::Map(entries) => Some(
            entries
                .iter()
                .filter_map(|(k, _)| match &k.kind {
                    Kind::Scalar { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ if cvms.is_null() => Some(BTreeSet::new()),
        _ => None,
    }
}

pub(super) fn display_path(path: &Path, base: Option<&Path>) -> String {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.map(|b| b.join(path)).unwrap_or_else(|| path.to_path_buf())
    };
    match base.and_then(|b| abs.strip_prefix(b).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.display().to_string(),
    }
}

/// What a string field may reference beyond variables, env and files.
#[derive(Clone, Copy, Default)]
struct Allow {
    cvm: bool,
    data: bool,
    secret: bool,
    /// The string is a file's path: no `${file:}` (a path is written, not read; a path made
    /// of a file's content would print that content in a "cannot read" error).
    path: bool,
}

const STRINGS_ONLY: Allow = Allow { cvm: false, data: false, secret: false, path: false };

struct Loader<'a> {
    src: Arc<Source>,
    dir: PathBuf,
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    /// Variables by name, each with its text as written.
    vars: BTreeMap<String, Lit>,
    /// Variables whose value was reported as invalid: using them reports nothing more.
    failed_vars: BTreeSet<String>,
    /// Values the variable files set, in order.
    file_vars: Vec<var_files::FileValue>,
    /// Keys under `cvms:`, known before any CVM is read so references can be checked where
    /// they are written. A set: every `${cvm.X...}` is looked up here.
    cvm_keys: BTreeSet<String>,
    /// Data sources and catalog providers (`load/data.rs`).
    data: data::DataState,
    /// Where files may be read from, and what was read (each file once).
    policy: FilePolicy,
    allowed_dirs: Vec<PathBuf>,
    files: HashMap<(String, Limit), FileEntry>,
    /// Environment variables `${env:}` must not read: teeform's own credentials.
    credentials: BTreeSet<String>,
    /// Compose files to lint once every CVM is read (`compose_lint`).
    compose_uses: Vec<Use>,
    /// Env files (`env_file:`) read so far, by path, and how each was first named.
    env_file_values: HashMap<String, env_file::EnvFileValues>,
    env_file_uses: HashMap<String, env_file::FirstUse>,
}

/// The keys a manifest's top level may have.
pub const TOP_KEYS: &[&str] =
    &["provider", "backend", "allowed_dirs", "variables", "secrets", "verify", "cvms", "moved", "data", "outputs"];

impl<'a> Loader<'a> {
    fn new(src: Arc<Source>, dir: PathBuf, opts: &'a LoadOptions) -> Loader<'a> {
        Loader {
            src,
            policy: FilePolicy::new(&dir, &[]),
            dir,
            opts,
            diags: Vec::new(),
            vars: BTreeMap::new(),
            failed_vars: BTreeSet::new(),
            file_vars: Vec::new(),
            cvm_keys: BTreeSet::new(),
            data: Default::default(),
            allowed_dirs: Vec::new(),
            files: HashMap::new(),
            credentials: crate::secrets::CREDENTIAL_VARS.iter().map(|s| s.to_string()).collect(),
            compose_uses: Vec::new(),
            env_file_values: HashMap::new(),
            env_file_uses: HashMap::new(),
        }
    }

    fn err(&mut self, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(&self.src, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn root(&mut self, root: &Node, path: &Path) -> Option<Config> {
        if !matches!(root.kind, Kind::Map(_)) {
            self.err(root.span, "a manifest must be a mapping with `cvms:` and friends")
                .set_label("expected a mapping")
                .hints
                .push("see examples/quickstart/teeform.yaml".into());
            return None;
        }
        let top = self.entries(root, "the manifest", Some(TOP_KEYS));
        let get = |k: &str| top.iter().find(|(n, _, _)| *n == k).map(|(_, _, v)| *v);
        let secrets_passphrase_env = get("secrets").and_then(|s| self.secrets_settings(s));
        if let Some(v) = get("allowed_dirs") {
            self.allowed_dirs(v);
        }
        self.file_vars = self.read_var_files();
        if let Some(v) = get("variables") {
            self.variables(v);
        }
        self.check_var_overrides(get("variables"));
        let verify = get("verify").filter(|v| !v.is_null()).map(|v| self.verify_settings(v)).unwrap_or_default();
        let endpoint = self.provider(get("provider"));
        let backend = get("backend").filter(|b| !b.is_null()).and_then(|b| self.backend(b));
        let cvm_node = get("cvms");
        self.cvm_keys = key_spans(cvm_node).keys().map(|k| k.to_string()).collect();
        self.credentials.extend(kms_env_names(cvm_node));
        let data = get("data").map(|d| self.data_sources(d)).unwrap_or_default();
        let mut cvms = BTreeMap::new();
        let mut names = Vec::new();
        if let Some(c) = cvm_node {
            for (key, knode, spec) in self.entries(c, "cvms", None) {
                if let Some((cvm, name_span)) = self.cvm(key, knode, spec) {
                    names.push((cvm.name.clone(), name_span, key.to_string()));
                    cvms.insert(key.to_string(), cvm);
                }
            }
        }
        imply_dependencies(&mut cvms);
        let moved = get("moved").map(|m| self.moved(m)).unwrap_or_default();
        let outputs = match get("outputs") {
            Some(o) => self.outputs(o),
            None => BTreeMap::new(),
        };
        self.check_names(&names);
        self.finish_files();
        self.check_composes(&mut cvms);
        Some(Config {
            path: path.to_path_buf(),
            dir: self.dir.clone(),
            source: self.src.clone(),
            endpoint,
            backend,
            allowed_dirs: self.allowed_dirs.clone(),
            variables: self.vars.iter().map(|(k, v)| (k.clone(), v.json())).collect(),
            cvms,
            moved,
            outputs,
            data,
            providers: self.data.providers.clone(),
            secrets_passphrase_env,
            verify,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;
