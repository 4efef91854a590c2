//! Reading a manifest: the spanned YAML tree is walked once, collecting every diagnostic.
//! `values.rs` says how scalars and variables are read; `data.rs` reads data sources.

mod data;
mod secrets;
mod values;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compose_lint::{self, EnvKey, Use};
use super::diag::{Diagnostic, Source, did_you_mean};
use super::expr::Ref;
use super::files::{self, FilePolicy, Limit};
use super::yaml::{self, Kind, Node, Span};
use super::{
    BackendKind, Config, CvmConfig, DEFAULT_API_PREFIX, Endpoint, FileRef, Kms, ManifestError, OnChainKms, OutputConfig,
};
use crate::model::schema::Type;
use crate::model::{Attr, CvmAttrs};
use values::{FileEntry, Lit, Scalar};

/// Reads an environment variable.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How to read a manifest: variable overrides and where environment variables come from
/// (tests pass a fixed map so they never depend on the machine).
#[derive(Clone)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`, in order.
    pub vars: Vec<(String, String)>,
    pub env: EnvLookup,
    /// Paths in diagnostics are shown relative to this directory.
    pub display_base: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            vars: Vec::new(),
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
}

const STRINGS_ONLY: Allow = Allow { cvm: false, data: false, secret: false };

struct Loader<'a> {
    src: Arc<Source>,
    dir: PathBuf,
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    /// Variables by name, each with its text as written.
    vars: BTreeMap<String, Lit>,
    /// Variables whose value was reported as invalid: using them reports nothing more.
    failed_vars: BTreeSet<String>,
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
}

const TOP_KEYS: &[&str] = &["provider", "backend", "allowed_dirs", "variables", "secrets", "cvms", "data", "outputs"];
/// A CVM's keys: its attributes (the schema's, `crate::model::SCHEMA`), then the rest.
static CVM_KEYS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| crate::model::SCHEMA.iter().map(|s| s.key).chain(["depends_on", "lint"]).collect());

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
            cvm_keys: BTreeSet::new(),
            data: Default::default(),
            allowed_dirs: Vec::new(),
            files: HashMap::new(),
            credentials: crate::secrets::CREDENTIAL_VARS.iter().map(|s| s.to_string()).collect(),
            compose_uses: Vec::new(),
        }
    }

    fn err(&mut self, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(&self.src, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn key_text<'n>(&mut self, key: &'n Node) -> Option<&'n str> {
        match &key.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => {
                self.err(key.span, "mapping keys must be plain strings").set_label("not a string key");
                None
            }
        }
    }

    /// The entries of a mapping, reporting a non-mapping, duplicate keys and (when `allowed`
    /// is given) unknown keys with a did-you-mean hint.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: Option<&[&str]>,
    ) -> Vec<(&'n str, &'n Node, &'n Node)> {
        let pairs = match &node.kind {
            Kind::Map(p) => p,
            _ if node.is_null() => return Vec::new(),
            _ => {
                let found = node.type_name();
                self.err(node.span, format!("{what} must be a mapping, found {found}")).set_label("expected a mapping");
                return Vec::new();
            }
        };
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (k, v) in pairs {
            let Some(name) = self.key_text(k) else {
                continue;
            };
            if !seen.insert(name) {
                self.err(k.span, format!("duplicate key `{name}` in {what}")).set_label("defined again here");
                continue;
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&name)
            {
                let d = self.err(k.span, format!("unknown key `{name}` in {what}")).set_label("unknown key");
                let hint = match did_you_mean(name, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("{what} takes: {}", allowed.join(", ")),
                };
                d.hints.push(hint);
                continue;
            }
            out.push((name, k, v));
        }
        out
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
        if let Some(v) = get("variables") {
            self.variables(v);
        }
        self.check_var_overrides(get("variables"));
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
        let outputs = match get("outputs") {
            Some(o) => self.outputs(o),
            None => BTreeMap::new(),
        };
        self.check_names(&names);
        self.finish_files();
        self.check_composes();
        Some(Config {
            path: path.to_path_buf(),
            dir: self.dir.clone(),
            source: self.src.clone(),
            endpoint,
            backend,
            allowed_dirs: self.allowed_dirs.clone(),
            variables: self.vars.iter().map(|(k, v)| (k.clone(), v.json())).collect(),
            cvms,
            outputs,
            data,
            providers: self.data.providers.clone(),
            secrets_passphrase_env,
            warnings: Vec::new(),
        })
    }

    /// `allowed_dirs:`: directories outside the manifest's own that files may be read from.
    fn allowed_dirs(&mut self, node: &Node) {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => {
                self.err(node.span, "allowed_dirs must be a list of directories").set_label("expected a list");
                return;
            }
        };
        for it in items {
            let Some(d) = self.literal_string(it, "an allowed directory") else { continue };
            let full = self.dir.join(&d);
            if !full.is_dir() {
                let dir = display_dir(&self.dir);
                self.err(it.span, format!("allowed directory `{d}` is not a directory"))
                    .set_label("not a directory")
                    .add_hint(format!("paths are relative to the manifest's directory ({dir})"));
                continue;
            }
            self.allowed_dirs.push(PathBuf::from(d));
        }
        self.policy = FilePolicy::new(&self.dir, &self.allowed_dirs);
    }

    /// Two CVMs may not share a name. UNVERIFIED: Phala Cloud names are hostnames, compared
    /// here without regard to case as DNS does; the API's own comparison is not documented.
    fn check_names(&mut self, names: &[(String, Span, String)]) {
        let mut by_name: BTreeMap<String, Vec<&(String, Span, String)>> = BTreeMap::new();
        for n in names {
            by_name.entry(n.0.to_ascii_lowercase()).or_default().push(n);
        }
        let mut dups: Vec<Vec<&(String, Span, String)>> = by_name.into_values().filter(|v| v.len() > 1).collect();
        dups.sort_by_key(|v| v[1].1.start);
        for group in dups {
            let (first, second) = (group[0], group[1]);
            let same = if first.0 == second.0 { String::new() } else { format!(" (as `{}`)", first.0) };
            let src = self.src.clone();
            let d = self
                .err(second.1, format!("cvm.{} and cvm.{} have the same name `{}`{same}", first.2, second.2, second.0))
                .set_label("same name");
            d.also.push(super::diag::Related {
                source: src.clone(),
                span: first.1,
                label: format!("cvm.{}'s name", first.2),
            });
            for other in group.iter().skip(2).take(2) {
                d.also.push(super::diag::Related {
                    source: src.clone(),
                    span: other.1,
                    label: format!("and cvm.{}'s", other.2),
                });
            }
            if group.len() > 4 {
                d.add_hint(format!("{} CVMs in all have this name", group.len()));
            }
            d.add_hint("CVM names must differ (letter case aside): give each its own `name:`");
        }
    }

    fn plain_str<'n>(&mut self, node: &'n Node) -> Option<&'n str> {
        match &node.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => {
                let t = node.type_name();
                self.err(node.span, format!("expected a string, found {t}")).set_label("expected a string");
                None
            }
        }
    }

    // ----- provider and backend ---------------------------------------------------------

    fn provider(&mut self, node: Option<&Node>) -> Endpoint {
        let env_default =
            || (self.opts.env)("PHALA_CLOUD_API_PREFIX").unwrap_or_else(|| DEFAULT_API_PREFIX.to_string());
        let Some(node) = node else {
            return Endpoint::Url(env_default());
        };
        let mut endpoint = None;
        for (name, _, v) in self.entries(node, "provider", Some(&["phala", "nscale", "oci"])) {
            match name {
                "phala" => {
                    for (k, _, v) in self.entries(v, "provider.phala", Some(&["endpoint"])) {
                        if k == "endpoint" {
                            endpoint = self
                                .opt_string(v, "provider.phala.endpoint", STRINGS_ONLY)
                                .and_then(|t| t.as_literal())
                                .map(|s| (s, v.span));
                        }
                    }
                }
                _ => self.catalog_provider(name, v),
            }
        }
        match endpoint {
            None => Endpoint::Url(env_default()),
            Some((s, _)) if s == "local" => Endpoint::Local,
            Some((s, span)) => match url::Url::parse(&s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Endpoint::Url(s.trim_end_matches('/').to_string()),
                _ => {
                    self.err(span, format!("`{s}` is not an http(s) URL"))
                        .set_label("bad endpoint")
                        .hints
                        .push("use an API prefix such as https://cloud-api.phala.com/api/v1, or `local` for the embedded simulator".into());
                    Endpoint::Local
                }
            },
        }
    }

    fn backend(&mut self, node: &Node) -> Option<BackendKind> {
        match self.plain_str(node)? {
            "local" => Some(BackendKind::Local),
            "postgres" => Some(BackendKind::Postgres),
            other => {
                let hint = did_you_mean(other, ["local", "postgres"])
                    .map_or("backends are `local` (sled) and `postgres`".into(), |s| format!("did you mean `{s}`?"));
                self.err(node.span, format!("unknown backend `{other}`")).hints.push(hint);
                None
            }
        }
    }

    /// A compose file or pre-launch script, read once however many CVMs name it.
    fn file(&mut self, node: &Node, kind: &str, who: &str) -> Option<FileRef> {
        let path = self.literal_string(node, kind)?;
        let content = self.read_file(&path, Limit::Compose, node.span, kind, who)?;
        Some(FileRef { path, content: content.to_string() })
    }

    // ----- cvms -------------------------------------------------------------------------

    /// One CVM, and where its name is written (the key, when `name:` is not).
    fn cvm(&mut self, key: &str, knode: &Node, spec: &Node) -> Option<(CvmConfig, Span)> {
        let what = format!("cvm `{key}`");
        let who = format!("cvm.{key}");
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || key.is_empty() {
            self.err(knode.span, format!("`{key}` is not a valid CVM key"))
                .add_hint("use letters, digits, `-` and `_`");
        }
        let fields = self.entries(spec, &what, Some(&CVM_KEYS));
        if !matches!(spec.kind, Kind::Map(_)) {
            return None;
        }
        let mut c = CvmConfig {
            key: key.to_string(),
            name: key.to_string(),
            span: knode.span,
            compose: FileRef { path: String::new(), content: String::new() },
            pre_launch_script: None,
            attrs: Default::default(),
            kms: Kms::Phala,
            env: BTreeMap::new(),
            stopped: false,
            spans: BTreeMap::new(),
            depends_on: Vec::new(),
            data_fields: BTreeMap::new(),
        };
        let mut name_span = knode.span;
        let mut compose_seen = false;
        // For the compose lint: the compose file (text, span, where its findings go), env.
        let mut compose_at = None;
        let mut env_keys = Vec::new();
        let mut env_span = None;
        let mut ignore = BTreeSet::new();
        for (k, knode2, v) in &fields {
            let w = format!("{what}: `{k}`");
            c.spans.insert(k.to_string(), v.span);
            match *k {
                "name" => {
                    if let Some(n) = self.opt_literal(v, &w) {
                        c.name = n;
                        name_span = v.span;
                    }
                }
                "compose" => {
                    compose_seen = true;
                    let at = self.diags.len();
                    if let Some(f) = self.file(v, "compose file", &who) {
                        compose_at = Some((v.span, at));
                        c.compose = f;
                    }
                }
                "pre_launch_script" if !v.is_null() => {
                    c.pre_launch_script = self.file(v, "pre-launch script", &who);
                }
                "image" if !v.is_null() => self.image_field(&mut c, v, &w),
                "kms" if !v.is_null() => c.kms = self.kms(v).unwrap_or(Kms::Phala),
                "power" => match self.literal_string(v, &w).as_deref() {
                    Some("running") => c.stopped = false,
                    Some("stopped") => c.stopped = true,
                    Some(other) => {
                        let hint = did_you_mean(other, ["running", "stopped"])
                            .map_or("`power` is `running` (the default) or `stopped`".into(), |s| {
                                format!("did you mean `{s}`?")
                            });
                        self.err(v.span, format!("{w} must be `running` or `stopped`, found `{other}`"))
                            .set_label("unknown run state")
                            .hints
                            .push(hint);
                    }
                    None => {}
                },
                "env" => {
                    env_span = Some(knode2.span);
                    for (ek, eknode, ev) in self.entries(v, &format!("{what}: `env`"), None) {
                        if !is_env_name(ek) {
                            self.err(eknode.span, format!("`{ek}` is not a valid environment variable name"))
                                .add_hint("use letters, digits and `_`, not starting with a digit");
                            continue;
                        }
                        let allow = Allow { cvm: true, data: true, secret: true };
                        if let Some(t) = self.string(ev, &format!("env `{ek}`"), allow) {
                            env_keys.push(EnvKey {
                                name: ek.to_string(),
                                key_span: eknode.span,
                                value_span: ev.span,
                                literal: t.as_literal(),
                            });
                            c.env.insert(ek.to_string(), t);
                        }
                    }
                }
                "depends_on" if !v.is_null() => match &v.kind {
                    Kind::Seq(items) => {
                        for it in items {
                            if let Some(s) = self.literal_string(it, "depends_on entry") {
                                if self.cvm_keys.contains(&s) {
                                    c.depends_on.push(s);
                                } else {
                                    self.unknown_cvm(
                                        it.span,
                                        &s,
                                        &format!("{what} depends on `{s}`, which is not declared"),
                                    );
                                }
                            }
                        }
                    }
                    _ => {
                        self.err(v.span, "depends_on must be a list of CVM names").set_label("expected a list");
                    }
                },
                "lint" => ignore = self.lint(v, &what),
                // Every other attribute is a plain value, read as the schema types it.
                k => {
                    if let Some(attr) = Attr::from_key(k) {
                        self.attr_value(&mut c.attrs, attr, v, &w);
                    }
                }
            }
        }
        if !compose_seen {
            self.err(knode.span, format!("{what} has no `compose` file"))
                .set_label("missing `compose`")
                .add_hint("add `compose: docker-compose.yml` (a path relative to the manifest)");
        }
        if let Some((compose_span, at)) = compose_at {
            let full = self.dir.join(&c.compose.path);
            self.compose_uses.push(Use {
                cvm: key.to_string(),
                at,
                compose_full: full,
                compose_path: c.compose.path.clone(),
                compose: self.files[&(c.compose.path.clone(), Limit::Compose)].result.clone().ok()?,
                compose_span,
                script: c.pre_launch_script.as_ref().map(|s| (s.path.clone(), Arc::new(s.content.clone()))),
                env_span,
                env: env_keys,
                ignore,
            });
        }
        if !valid_cvm_name(&c.name) {
            let d = self.err(name_span, format!("`{}` is not a valid CVM name", c.name)).set_label("invalid name");
            d.add_hint(
                "Phala Cloud names are 5-63 characters: a letter first, then letters, digits and single hyphens, not ending in a hyphen",
            );
            if let Some(s) = suggest_name(&c.name) {
                d.add_hint(format!(
                    "e.g. `name: {s}`{}",
                    if c.name == key { " (the key may stay as it is)" } else { "" }
                ));
            }
        }
        if c.attrs.instance_type.is_some() && (c.attrs.vcpu.is_some() || c.attrs.memory.is_some()) {
            self.err(knode.span, format!("{what} sets both `instance_type` and `vcpu`/`memory`"))
                .set_label("conflicting sizes")
                .add_hint("choose an instance type, or size the CVM with vcpu and memory");
        }
        // Returned even after errors, so later checks still run and report all at once.
        Some((c, name_span))
    }

    /// An attribute written as a plain value (a number, a flag, a name), read as the schema
    /// types it: numbers within the schema's range. Attributes of other types have their own
    /// readers above.
    fn attr_value(&mut self, attrs: &mut CvmAttrs, attr: Attr, v: &Node, what: &str) {
        match attr.spec().ty {
            Type::Count { min, max, field, .. } => {
                *(field.get_mut)(attrs) = self.number(v, what, min.into(), max.into())
            }
            Type::Flag(field) => *(field.get_mut)(attrs) = self.boolean(v, what),
            Type::Text(field) => *(field.get_mut)(attrs) = self.opt_literal(v, what),
            Type::Name | Type::File { .. } | Type::Env | Type::Power(_) => {}
        }
    }

    /// `lint: {ignore: [NAME, ...]}`: env keys and compose variables whose warnings are
    /// silenced on purpose.
    fn lint(&mut self, node: &Node, what: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (k, _, v) in self.entries(node, &format!("{what}: `lint`"), Some(&["ignore"])) {
            if k != "ignore" {
                continue;
            }
            let Kind::Seq(items) = &v.kind else {
                self.err(v.span, "lint.ignore must be a list of env keys or compose variables")
                    .set_label("expected a list");
                continue;
            };
            for it in items {
                if let Some(s) = self.literal_string(it, "lint.ignore entry") {
                    if !is_env_name(&s) {
                        self.err(it.span, format!("`{s}` is not an environment variable name")).set_label("not a name");
                    }
                    out.insert(s);
                }
            }
        }
        out
    }

    fn kms(&mut self, node: &Node) -> Option<Kms> {
        if let Kind::Scalar { .. } = node.kind {
            let s = self.literal_string(node, "kms")?;
            return match s.as_str() {
                "phala" => Some(Kms::Phala),
                "base" | "ethereum" => Some(Kms::OnChain(OnChainKms {
                    chain_id: if s == "base" { 8453 } else { 1 },
                    rpc_url: None,
                    contract: None,
                    private_key_env: "PRIVATE_KEY".into(),
                    rpc_url_env: "ETH_RPC_URL".into(),
                    confirmations: 1,
                })),
                other => {
                    let hint = did_you_mean(other, ["phala", "base", "ethereum"])
                        .map_or("kms is `phala`, `base`, `ethereum`, or a mapping with `chain`".into(), |s| {
                            format!("did you mean `{s}`?")
                        });
                    self.err(node.span, format!("unknown kms `{other}`")).hints.push(hint);
                    None
                }
            };
        }
        let fields = self.entries(
            node,
            "kms",
            Some(&["chain", "rpc_url", "contract", "private_key_env", "rpc_url_env", "confirmations"]),
        );
        let mut k = OnChainKms {
            chain_id: 0,
            rpc_url: None,
            contract: None,
            private_key_env: "PRIVATE_KEY".into(),
            rpc_url_env: "ETH_RPC_URL".into(),
            confirmations: 1,
        };
        let mut chain_seen = false;
        for (name, _, v) in fields {
            match name {
                "chain" => {
                    chain_seen = true;
                    // A chain id may be written as a number (`chain: 8453`) or a name.
                    let s = match self.scalar(v, "kms.chain", STRINGS_ONLY)? {
                        Scalar::Lit(Lit { core: yaml::Core::Int | yaml::Core::Str, text }) => text,
                        _ => {
                            let found = v.type_name();
                            self.err(v.span, format!("kms.chain must be a chain name or id, found {found}"))
                                .set_label("expected `base`, `ethereum` or a number");
                            return None;
                        }
                    };
                    k.chain_id = match s.as_str() {
                        "base" => 8453,
                        "ethereum" => 1,
                        n => match parse_u64(n) {
                            Some(id) if id > 0 => id,
                            _ => {
                                self.err(v.span, format!("unknown chain `{n}`"))
                                    .hints
                                    .push("use `base`, `ethereum` or a numeric chain id".into());
                                return None;
                            }
                        },
                    }
                }
                "rpc_url" => k.rpc_url = self.opt_literal(v, "kms.rpc_url"),
                "contract" => {
                    let s = self.literal_string(v, "kms.contract")?;
                    let hex = s.trim_start_matches("0x");
                    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        self.err(v.span, "kms.contract must be a 20-byte hex address").set_label("not an address");
                    }
                    k.contract = Some(format!("0x{}", hex.to_ascii_lowercase()));
                }
                "private_key_env" => k.private_key_env = self.literal_string(v, "kms.private_key_env")?,
                "rpc_url_env" => k.rpc_url_env = self.literal_string(v, "kms.rpc_url_env")?,
                "confirmations" => k.confirmations = u64::from(self.number(v, "kms.confirmations", 0, 1000)?),
                _ => {}
            }
        }
        if !chain_seen {
            self.err(node.span, "an on-chain kms needs `chain:`").hints.push("e.g. `chain: base`".into());
            return None;
        }
        Some(Kms::OnChain(k))
    }

    /// Lints every compose file against the env of each CVM that uses it
    /// (`compose_lint`), putting each finding where an inline check would have.
    fn check_composes(&mut self) {
        let uses = std::mem::take(&mut self.compose_uses);
        let found = compose_lint::check(&self.src, self.opts.display_base.as_deref(), &uses);
        // From the back, so the positions of earlier findings stay valid.
        for (at, d) in found.into_iter().rev() {
            self.diags.insert(at, d);
        }
    }

    // ----- outputs ----------------------------------------------------------------------

    fn outputs(&mut self, node: &Node) -> BTreeMap<String, OutputConfig> {
        let mut out = BTreeMap::new();
        for (name, knode, spec) in self.entries(node, "outputs", None) {
            let allow = Allow { cvm: true, data: true, secret: true };
            let (value, sensitive, description) = match &spec.kind {
                Kind::Map(_) => {
                    let mut value = None;
                    let mut sensitive = false;
                    let mut description = None;
                    let mut value_seen = false;
                    for (k, _, v) in
                        self.entries(spec, &format!("output `{name}`"), Some(&["value", "sensitive", "description"]))
                    {
                        match k {
                            "value" => {
                                value_seen = true;
                                value = self.string(v, &format!("output `{name}`"), allow);
                            }
                            "sensitive" => sensitive = self.boolean(v, "sensitive").unwrap_or(false),
                            "description" => description = self.opt_literal(v, "description"),
                            _ => {}
                        }
                    }
                    if !value_seen {
                        self.err(knode.span, format!("output `{name}` has no `value`")).set_label("missing value");
                    }
                    (value, sensitive, description)
                }
                _ => (self.string(spec, &format!("output `{name}`"), allow), false, None),
            };
            let Some(value) = value else { continue };
            if value.refs().any(Ref::is_secret) && !sensitive {
                self.err(knode.span, format!("output `{name}` shows a secret but is not marked sensitive"))
                    .set_label("secret output")
                    .hints
                    .push("add `sensitive: true` to the output (its value is then never printed or stored)".into());
            }
            out.insert(name.to_string(), OutputConfig { value, sensitive, description });
        }
        out
    }
}

/// Adds the dependencies `${cvm.X...}` references imply to the explicit `depends_on`.
fn imply_dependencies(cvms: &mut BTreeMap<String, CvmConfig>) {
    for c in cvms.values_mut() {
        let implied: Vec<String> = c
            .env
            .values()
            .flat_map(|t| t.refs())
            .filter_map(|r| if let Ref::Cvm { name, .. } = r { Some(name.clone()) } else { None })
            .collect();
        c.depends_on.extend(implied);
        c.depends_on.sort();
        c.depends_on.dedup();
    }
}

fn key_spans(node: Option<&Node>) -> BTreeMap<&str, Span> {
    match node.map(|n| &n.kind) {
        Some(Kind::Map(p)) => p
            .iter()
            .filter_map(
                |(k, _)| {
                    if let Kind::Scalar { text, .. } = &k.kind { Some((text.as_str(), k.span)) } else { None }
                },
            )
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() { ".".into() } else { dir.display().to_string() }
}

/// A chain id as written (`8453`, `0x2105`).
fn parse_u64(n: &str) -> Option<u64> {
    if let Some(h) = n.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok();
    }
    n.parse::<u64>().ok()
}

/// The environment variables on-chain KMS settings name for the signer key and RPC URL
/// (`private_key_env`, `rpc_url_env`): teeform's credentials too.
fn kms_env_names(cvms: Option<&Node>) -> Vec<String> {
    let Some(Kind::Map(cvms)) = cvms.map(|n| &n.kind) else { return Vec::new() };
    let field = |n: &Node, k: &str| match &n.kind {
        Kind::Map(p) => p
            .iter()
            .find(|(key, _)| matches!(&key.kind, Kind::Scalar { text, .. } if text == k))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    cvms.iter()
        .filter_map(|(_, spec)| field(spec, "kms"))
        .flat_map(|kms| [field(&kms, "private_key_env"), field(&kms, "rpc_url_env")])
        .flatten()
        .filter_map(|v| if let Kind::Scalar { text, .. } = v.kind { Some(text) } else { None })
        .collect()
}

/// A valid CVM name close to `name` (for a hint), if one can be made.
fn suggest_name(name: &str) -> Option<String> {
    let mut s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let mut s = s.trim_matches('-').to_string();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert_str(0, "cvm-");
    }
    if s.len() < 5 {
        s.push_str("-app");
    }
    s.truncate(63);
    let s = s.trim_end_matches('-').to_string();
    (valid_cvm_name(&s) && s != name).then_some(s)
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Phala Cloud's hostname rule (reference §2): 5-63 chars, a letter first, no `--`.
pub fn valid_cvm_name(s: &str) -> bool {
    let b = s.as_bytes();
    (5..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests;
