//! Reading a manifest: the spanned YAML tree is walked once, collecting every diagnostic.

mod data;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use super::diag::{Diagnostic, Source, did_you_mean};
use super::expr::{self, Ref, Template};
use super::yaml::{self, Kind, Node, Span};
use super::{
    BackendKind, Config, CvmConfig, DEFAULT_API_PREFIX, Endpoint, FileRef, Kms, ManifestError, OnChainKms, OutputConfig,
};

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

pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        diagnostics: vec![
            Diagnostic::bare(format!("cannot read manifest {}: {e}", path.display()))
                .hint("create teeform.yaml, or choose another file with -f FILE"),
        ],
    })?;
    load_str(path, text, opts)
}

pub fn load_str(path: &Path, text: String, opts: &LoadOptions) -> Result<Config, ManifestError> {
    let display = display_path(path, opts.display_base.as_deref());
    let src = Source::new(path, display, text);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = match yaml::parse(&src.text) {
        Ok(n) => n,
        Err(e) => {
            let span = Span::new(e.offset, (e.offset + 1).min(src.text.len()).max(e.offset));
            let d = Diagnostic::error(&src, span, format!("invalid YAML: {}", e.message)).label("here");
            return Err(ManifestError { diagnostics: vec![d] });
        }
    };
    let mut l = Loader {
        src: src.clone(),
        dir,
        opts,
        diags: Vec::new(),
        vars: BTreeMap::new(),
        cvm_keys: BTreeSet::new(),
        data: Default::default(),
        compose_checks: Vec::new(),
    };
    let cfg = l.root(&root, path);
    if l.diags.iter().any(Diagnostic::is_error) {
        return Err(ManifestError { diagnostics: l.diags });
    }
    let mut cfg = cfg.expect("a config exists when no error was reported");
    cfg.warnings = l.diags;
    Ok(cfg)
}

/// Only the manifest's `backend:`, for commands that need the state but not the rest of the
/// manifest (`output`, `state`, `show`, `force-unlock`). `Ok(None)` when there is no manifest
/// or it names no backend. A manifest that is not YAML is an error: a guessed backend could
/// show or change the wrong state.
pub fn load_backend(path: &Path) -> Result<Option<BackendKind>, ManifestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return load(path, &LoadOptions::default()).map(|c| c.backend),
    };
    let opts = LoadOptions::default();
    let Ok(root) = yaml::parse(&text) else {
        return load_str(path, text, &opts).map(|c| c.backend);
    };
    let src = Source::new(path, display_path(path, opts.display_base.as_deref()), text);
    let mut l = Loader {
        src,
        dir: PathBuf::new(),
        opts: &opts,
        diags: Vec::new(),
        vars: BTreeMap::new(),
        cvm_keys: BTreeSet::new(),
        data: Default::default(),
        compose_checks: Vec::new(),
    };
    let node = match &root.kind {
        Kind::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "backend"))
            .map(|(_, v)| v),
        _ => None,
    };
    let kind = node.and_then(|n| l.backend(n));
    if l.diags.iter().any(Diagnostic::is_error) {
        return Err(ManifestError { diagnostics: l.diags });
    }
    Ok(kind)
}

fn display_path(path: &Path, base: Option<&Path>) -> String {
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

/// A scalar after variables and environment have been substituted.
enum Scalar {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(Template),
}

impl Scalar {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Num(_) => "a number",
            Scalar::Str(_) => "a string",
        }
    }
}

struct Loader<'a> {
    src: Arc<Source>,
    dir: PathBuf,
    opts: &'a LoadOptions,
    diags: Vec<Diagnostic>,
    vars: BTreeMap<String, Json>,
    /// Keys under `cvms:`, known before any CVM is read so references can be checked where
    /// they are written. A set: every `${cvm.X...}` is looked up here.
    cvm_keys: BTreeSet<String>,
    /// Data sources and catalog providers (`load/data.rs`).
    data: data::DataState,
    /// Compose files to check once every CVM is read (see [`Loader::check_composes`]).
    compose_checks: Vec<ComposeCheck>,
}

/// A compose file waiting for its check, and where in `diags` its findings belong.
struct ComposeCheck {
    file: FileRef,
    span: Span,
    at: usize,
}

const TOP_KEYS: &[&str] = &["provider", "backend", "variables", "cvms", "data", "outputs"];
const CVM_KEYS: &[&str] = &[
    "name",
    "compose",
    "pre_launch_script",
    "vcpu",
    "memory",
    "disk_size",
    "instance_type",
    "node",
    "image",
    "kms",
    "public_logs",
    "public_sysinfo",
    "public_tcbinfo",
    "gateway",
    "env",
    "gpus",
    "shutdown_timeout",
    "allow_force_stop",
    "power",
    "depends_on",
];

impl Loader<'_> {
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
        if let Some(v) = get("variables") {
            self.variables(v);
        }
        self.check_var_overrides(get("variables"));
        let endpoint = self.provider(get("provider"));
        let backend = get("backend").and_then(|b| self.backend(b));
        let cvm_node = get("cvms");
        self.cvm_keys = key_spans(cvm_node).keys().map(|k| k.to_string()).collect();
        let data = get("data").map(|d| self.data_sources(d)).unwrap_or_default();
        let mut cvms = BTreeMap::new();
        if let Some(c) = cvm_node {
            for (key, knode, spec) in self.entries(c, "cvms", None) {
                if let Some(cvm) = self.cvm(key, knode, spec) {
                    cvms.insert(key.to_string(), cvm);
                }
            }
        }
        self.check_composes();
        imply_dependencies(&mut cvms);
        let outputs = match get("outputs") {
            Some(o) => self.outputs(o),
            None => BTreeMap::new(),
        };
        Some(Config {
            path: path.to_path_buf(),
            dir: self.dir.clone(),
            source: self.src.clone(),
            endpoint,
            backend,
            variables: self.vars.clone(),
            cvms,
            outputs,
            data,
            providers: self.data.providers.clone(),
            warnings: Vec::new(),
        })
    }

    // ----- variables -------------------------------------------------------------------

    fn variables(&mut self, node: &Node) {
        for (name, _k, spec) in self.entries(node, "variables", None) {
            let (default, ty) = match &spec.kind {
                Kind::Map(_) => {
                    let e = self.entries(
                        spec,
                        &format!("variable `{name}`"),
                        Some(&["default", "description", "type", "sensitive"]),
                    );
                    let mut default = None;
                    let mut ty = None;
                    for (k, _, v) in e {
                        match k {
                            "default" => default = self.literal_json(v),
                            "type" => match self.plain_str(v) {
                                Some(t @ ("string" | "number" | "bool")) => ty = Some(t.to_string()),
                                Some(t) => {
                                    self.err(v.span, format!("unknown variable type `{t}`"))
                                        .hints
                                        .push("types are string, number and bool".into());
                                }
                                None => {}
                            },
                            _ => {}
                        }
                    }
                    (default, ty)
                }
                _ => (self.literal_json(spec), None),
            };
            let from_cli = self.opts.vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let from_env = (self.opts.env)(&format!("TEEFORM_VAR_{name}"));
            let ty = ty.or_else(|| default.as_ref().map(json_type).map(str::to_string));
            let value = match from_cli.or(from_env) {
                Some(raw) => match coerce(&raw, ty.as_deref()) {
                    Some(v) => Some(v),
                    None => {
                        self.diags.push(Diagnostic::bare(format!(
                            "--var {name}={raw}: expected a {}",
                            ty.as_deref().unwrap_or("string")
                        )));
                        None
                    }
                },
                None => default,
            };
            match value {
                Some(v) => {
                    self.vars.insert(name.to_string(), v);
                }
                None => {
                    self.err(_k.span, format!("variable `{name}` has no value"))
                        .set_label("no default")
                        .hints
                        .push(format!("give it a `default:`, or pass --var {name}=VALUE"));
                }
            }
        }
    }

    fn check_var_overrides(&mut self, vars_node: Option<&Node>) {
        let declared: Vec<String> = self.vars.keys().cloned().collect();
        let declared_all: BTreeSet<String> = match vars_node.map(|n| &n.kind) {
            Some(Kind::Map(p)) => p
                .iter()
                .filter_map(|(k, _)| if let Kind::Scalar { text, .. } = &k.kind { Some(text.clone()) } else { None })
                .collect(),
            _ => BTreeSet::new(),
        };
        for (k, _) in &self.opts.vars {
            if !declared_all.contains(k) {
                let mut d = Diagnostic::bare(format!("--var {k}: the manifest declares no variable `{k}`"));
                if let Some(s) = did_you_mean(k, declared.iter().map(String::as_str)) {
                    d = d.hint(format!("did you mean `{s}`?"));
                } else {
                    d = d.hint("declare it under `variables:`");
                }
                self.diags.push(d);
            }
        }
    }

    /// A literal scalar as JSON (no interpolation), for variable defaults.
    fn literal_json(&mut self, node: &Node) -> Option<Json> {
        match &node.kind {
            Kind::Scalar { text, plain } => Some(scalar_json(text, *plain)),
            _ => {
                self.err(node.span, "a variable default must be a string, number or boolean").set_label("not a scalar");
                None
            }
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
                                .string(v, "provider.phala.endpoint", STRINGS_ONLY)
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

    // ----- scalars ----------------------------------------------------------------------

    /// Evaluates a scalar: parses `${...}`, substitutes variables, environment and files.
    fn scalar(&mut self, node: &Node, what: &str, allow: Allow) -> Option<Scalar> {
        let (text, plain) = match &node.kind {
            Kind::Scalar { text, plain } => (text, *plain),
            _ => {
                let t = node.type_name();
                self.err(node.span, format!("{what} must be a single value, found {t}")).set_label("expected a value");
                return None;
            }
        };
        if !text.contains("${") {
            return Some(match scalar_json(text, plain) {
                Json::Null => Scalar::Null,
                Json::Bool(b) => Scalar::Bool(b),
                Json::Number(n) => Scalar::Num(n),
                Json::String(s) => Scalar::Str(Template::literal(s)),
                _ => unreachable!("scalar_json returns scalars"),
            });
        }
        let quote = usize::from(!plain && matches!(self.src.text.as_bytes().get(node.span.start), Some(b'"' | b'\'')));
        let tpl = match expr::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let start = node.span.start + quote + e.at.start;
                let span = Span::new(start, (node.span.start + quote + e.at.end).min(self.src.text.len()));
                let d = self.err(span, e.message).set_label("here");
                d.hints.extend(e.hint);
                return None;
            }
        };
        // A string that is exactly one variable keeps the variable's type.
        if let Some(Ref::Var { name }) = tpl.sole_ref() {
            return self.var(name, node.span).map(|v| match v {
                Json::Bool(b) => Scalar::Bool(b),
                Json::Number(n) => Scalar::Num(n),
                Json::Null => Scalar::Null,
                other => Scalar::Str(Template::literal(json_to_string(&other))),
            });
        }
        let mut ok = true;
        for r in tpl.refs() {
            let (allowed, place) = match r {
                Ref::Cvm { .. } => (allow.cvm, "CVM references are allowed in `env` values and outputs only"),
                Ref::Data { .. } => (allow.data, "data source references are not allowed here"),
                Ref::SecretEnv { .. } | Ref::SecretFile { .. } => {
                    (allow.secret, "secrets are allowed in `env` values and outputs only")
                }
                _ => (true, ""),
            };
            if !allowed {
                self.err(node.span, format!("{what} cannot use `{r}`"))
                    .set_label("not allowed here")
                    .hints
                    .push(place.into());
                ok = false;
            }
        }
        for r in tpl.refs() {
            if let Ref::Cvm { name, .. } = r
                && allow.cvm
                && !self.cvm_keys.contains(name)
            {
                self.unknown_cvm(node.span, name, &format!("{what} references `cvm.{name}`, which is not declared"));
                ok = false;
            }
        }
        for r in tpl.refs() {
            if allow.data && !self.check_data_ref(r, node.span) {
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let mut failed = false;
        let tpl = tpl.substitute(|r| match r {
            Ref::Var { name } => match self.vars.get(name) {
                Some(v) => Some(json_to_string(v)),
                None => {
                    failed = true;
                    None
                }
            },
            Ref::Env { name } => match (self.opts.env)(name) {
                Some(v) => Some(v),
                None => {
                    failed = true;
                    None
                }
            },
            Ref::File { path } => match std::fs::read_to_string(self.dir.join(path)) {
                Ok(s) => Some(s),
                Err(_) => {
                    failed = true;
                    None
                }
            },
            _ => None,
        });
        if failed {
            for r in tpl.refs() {
                match r {
                    Ref::Var { name } => {
                        self.var(name, node.span);
                    }
                    Ref::Env { name } => {
                        self.err(node.span, format!("environment variable `{name}` is not set"))
                            .set_label("used here")
                            .hints
                            .push(format!("export {name}=... before running teeform"));
                    }
                    Ref::File { path } => {
                        let p = self.dir.join(path);
                        self.err(node.span, format!("cannot read file `{}`", p.display())).set_label("referenced here");
                    }
                    _ => {}
                }
            }
            return None;
        }
        Some(Scalar::Str(tpl))
    }

    fn unknown_cvm(&mut self, span: Span, name: &str, msg: &str) {
        let hint = match did_you_mean(name, self.cvm_keys.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if self.cvm_keys.is_empty() => "declare the CVM under `cvms:`".to_string(),
            None => {
                format!("declared CVMs: {}", self.cvm_keys.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
            }
        };
        self.err(span, msg).set_label("not declared").add_hint(hint);
    }

    fn var(&mut self, name: &str, span: Span) -> Option<Json> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        let hint = match did_you_mean(name, self.vars.keys().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "declare it under `variables:`".to_string(),
        };
        self.err(span, format!("unknown variable `{name}`")).set_label("used here").hints.push(hint);
        None
    }

    fn string(&mut self, node: &Node, what: &str, allow: Allow) -> Option<Template> {
        match self.scalar(node, what, allow)? {
            Scalar::Str(t) => Some(t),
            Scalar::Num(n) => Some(Template::literal(n.to_string())),
            Scalar::Bool(b) => Some(Template::literal(b.to_string())),
            Scalar::Null => {
                self.err(node.span, format!("{what} must be a string, found null")).set_label("expected a string");
                None
            }
        }
    }

    fn literal_string(&mut self, node: &Node, what: &str) -> Option<String> {
        self.string(node, what, STRINGS_ONLY).and_then(|t| t.as_literal())
    }

    fn number(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u32> {
        let s = self.scalar(node, what, STRINGS_ONLY)?;
        let n = match &s {
            Scalar::Num(n) => n.as_u64(),
            Scalar::Str(t) => t.as_literal().and_then(|s| s.trim().parse::<u64>().ok()),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n as u32),
            Some(n) => {
                self.err(node.span, format!("{what} must be between {min} and {max}, found {n}"))
                    .set_label("out of range");
                None
            }
            None => {
                let found = match &s {
                    Scalar::Num(n) => n.to_string(),
                    other => other.type_name().to_string(),
                };
                self.err(node.span, format!("{what} must be a whole number from {min} to {max}, found {found}"))
                    .set_label("expected a whole number");
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match self.scalar(node, what, STRINGS_ONLY)? {
            Scalar::Bool(b) => Some(b),
            Scalar::Str(t) if matches!(t.as_literal().as_deref(), Some("true" | "false")) => {
                Some(t.as_literal().as_deref() == Some("true"))
            }
            s => {
                let t = s.type_name();
                self.err(node.span, format!("{what} must be true or false, found {t}")).set_label("expected a boolean");
                None
            }
        }
    }

    fn file(&mut self, node: &Node, what: &str) -> Option<FileRef> {
        let path = self.literal_string(node, what)?;
        let full = self.dir.join(&path);
        match std::fs::read_to_string(&full) {
            Ok(content) => Some(FileRef { path, content }),
            Err(e) => {
                let reason =
                    if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_string() } else { e.to_string() };
                let dir = display_dir(&self.dir);
                self.err(node.span, format!("cannot read {what} `{path}`: {reason}"))
                    .set_label("file not found")
                    .hints
                    .push(format!("paths are relative to the manifest's directory ({dir})"));
                None
            }
        }
    }

    // ----- cvms -------------------------------------------------------------------------

    fn cvm(&mut self, key: &str, knode: &Node, spec: &Node) -> Option<CvmConfig> {
        let what = format!("cvm `{key}`");
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || key.is_empty() {
            self.err(knode.span, format!("`{key}` is not a valid CVM key"))
                .hints
                .push("use letters, digits, `-` and `_`".into());
        }
        let fields = self.entries(spec, &what, Some(CVM_KEYS));
        if !matches!(spec.kind, Kind::Map(_)) {
            return None;
        }
        let mut c = CvmConfig {
            key: key.to_string(),
            name: key.to_string(),
            span: knode.span,
            compose: FileRef { path: String::new(), content: String::new() },
            pre_launch_script: None,
            vcpu: None,
            memory: None,
            disk_size: None,
            instance_type: None,
            node: None,
            image: None,
            kms: Kms::Phala,
            public_logs: None,
            public_sysinfo: None,
            public_tcbinfo: None,
            gateway: None,
            env: BTreeMap::new(),
            gpus: None,
            shutdown_timeout: None,
            allow_force_stop: None,
            stopped: false,
            spans: BTreeMap::new(),
            depends_on: Vec::new(),
            data_fields: BTreeMap::new(),
        };
        let mut name_span = knode.span;
        let mut compose_seen = false;
        for (k, _knode, v) in &fields {
            let w = format!("{what}: `{k}`");
            c.spans.insert(k.to_string(), v.span);
            match *k {
                "name" => {
                    if let Some(n) = self.literal_string(v, &w) {
                        c.name = n;
                        name_span = v.span;
                    }
                }
                "compose" => {
                    compose_seen = true;
                    if let Some(f) = self.file(v, "compose file") {
                        self.compose_checks.push(ComposeCheck { file: f.clone(), span: v.span, at: self.diags.len() });
                        c.compose = f;
                    }
                }
                "pre_launch_script" => c.pre_launch_script = self.file(v, "pre-launch script"),
                "vcpu" => c.vcpu = self.number(v, &w, 1, 256),
                "memory" => c.memory = self.number(v, &w, 256, 4 * 1024 * 1024),
                "disk_size" => c.disk_size = self.number(v, &w, 1, 64 * 1024),
                "instance_type" => c.instance_type = self.literal_string(v, &w),
                "node" => c.node = self.literal_string(v, &w),
                "image" => self.image_field(&mut c, v, &w),
                "kms" => c.kms = self.kms(v).unwrap_or(Kms::Phala),
                "public_logs" => c.public_logs = self.boolean(v, &w),
                "public_sysinfo" => c.public_sysinfo = self.boolean(v, &w),
                "public_tcbinfo" => c.public_tcbinfo = self.boolean(v, &w),
                "gateway" => c.gateway = self.boolean(v, &w),
                "allow_force_stop" => c.allow_force_stop = self.boolean(v, &w),
                "gpus" => c.gpus = self.number(v, &w, 0, 64),
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
                "shutdown_timeout" => c.shutdown_timeout = self.number(v, &w, 0, 24 * 3600),
                "env" => {
                    for (ek, eknode, ev) in self.entries(v, &format!("{what}: `env`"), None) {
                        if !is_env_name(ek) {
                            self.err(eknode.span, format!("`{ek}` is not a valid environment variable name"))
                                .hints
                                .push("use letters, digits and `_`, not starting with a digit".into());
                            continue;
                        }
                        let allow = Allow { cvm: true, data: true, secret: true };
                        if let Some(t) = self.string(ev, &format!("env `{ek}`"), allow) {
                            c.env.insert(ek.to_string(), t);
                        }
                    }
                }
                "depends_on" => match &v.kind {
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
                _ => {}
            }
        }
        if !compose_seen {
            self.err(knode.span, format!("{what} has no `compose` file"))
                .set_label("missing `compose`")
                .hints
                .push("add `compose: docker-compose.yml` (a path relative to the manifest)".into());
        }
        if !valid_cvm_name(&c.name) {
            let d = self.err(name_span, format!("`{}` is not a valid CVM name", c.name)).set_label("invalid name");
            d.hints.push(
                "Phala Cloud names are 5-63 characters: a letter first, then letters, digits and single hyphens".into(),
            );
            if c.name == key {
                d.hints.push(format!("keep the key and set `name:` to a longer name, e.g. `name: {key}-app`"));
            }
        }
        if c.instance_type.is_some() && (c.vcpu.is_some() || c.memory.is_some()) {
            self.err(knode.span, format!("{what} sets both `instance_type` and `vcpu`/`memory`"))
                .set_label("conflicting sizes")
                .hints
                .push("choose an instance type, or size the CVM with vcpu and memory".into());
        }
        // Returned even after errors, so later checks still run and report all at once.
        Some(c)
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
                        Scalar::Num(n) => n.to_string(),
                        Scalar::Str(t) => t.as_literal()?,
                        other => {
                            self.err(
                                v.span,
                                format!("kms.chain must be a chain name or id, found {}", other.type_name()),
                            )
                            .set_label("expected `base`, `ethereum` or a number");
                            return None;
                        }
                    };
                    k.chain_id = match s.as_str() {
                        "base" => 8453,
                        "ethereum" => 1,
                        n => match n.parse::<u64>() {
                            Ok(id) if id > 0 => id,
                            _ => {
                                self.err(v.span, format!("unknown chain `{n}`"))
                                    .hints
                                    .push("use `base`, `ethereum` or a numeric chain id".into());
                                return None;
                            }
                        },
                    }
                }
                "rpc_url" => k.rpc_url = self.literal_string(v, "kms.rpc_url"),
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

    /// The compose file must be YAML with `services`; `${VAR}`s without an env key are warned
    /// about, since they would expand to nothing inside the CVM.
    /// Checks every compose file read, putting each finding where an inline check would have.
    /// Parsing them is most of the work of loading a large manifest, so it is spread over the
    /// cores; the result does not depend on how.
    fn check_composes(&mut self) {
        let checks = std::mem::take(&mut self.compose_checks);
        let (src, dir, base) = (&self.src, &self.dir, self.opts.display_base.as_deref());
        let check = |c: &ComposeCheck| compose_diagnostics(src, dir, base, &c.file, c.span);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        let found: Vec<Vec<Diagnostic>> = if threads < 2 || checks.len() < 64 {
            checks.iter().map(check).collect()
        } else {
            std::thread::scope(|s| {
                let parts: Vec<_> = checks
                    .chunks(checks.len().div_ceil(threads))
                    .map(|part| s.spawn(move || part.iter().map(check).collect::<Vec<_>>()))
                    .collect();
                parts.into_iter().flat_map(|p| p.join().expect("checking compose files does not panic")).collect()
            })
        };
        // From the back, so the positions of earlier checks stay valid.
        for (c, diags) in checks.iter().zip(found).rev() {
            self.diags.splice(c.at..c.at, diags);
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
                            "description" => description = self.literal_string(v, "description"),
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
/// What is wrong with a compose file: it must be YAML with a `services:` mapping.
fn compose_diagnostics(src: &Arc<Source>, dir: &Path, base: Option<&Path>, f: &FileRef, span: Span) -> Vec<Diagnostic> {
    let problem = match serde_yaml::from_str::<serde_yaml::Value>(&f.content) {
        Ok(v) if v.get("services").and_then(|s| s.as_mapping()).is_some() => return Vec::new(),
        Ok(_) => None,
        Err(e) => Some(e),
    };
    let full = dir.join(&f.path);
    let csrc = Source::new(&full, display_path(&full, base), f.content.clone());
    let first = match problem {
        None => Diagnostic::error(&csrc, Span::new(0, 0), "a docker-compose file needs a `services:` mapping")
            .label("no services"),
        Some(e) => {
            let off = e.location().map_or(0, |l| l.index());
            Diagnostic::error(
                &csrc,
                Span::new(off, (off + 1).min(csrc.text.len())),
                format!("invalid compose YAML: {e}"),
            )
            .label("here")
        }
    };
    vec![first, Diagnostic::error(src, span, "the compose file above is referenced here").label("compose file")]
}

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

fn scalar_json(text: &str, plain: bool) -> Json {
    if !plain {
        return Json::String(text.to_string());
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Json::Null;
    }
    if let Some(b) = yaml::scalar_bool(text) {
        return Json::Bool(b);
    }
    if let Ok(i) = text.parse::<i64>() {
        return Json::from(i);
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return Json::from(f);
    }
    Json::String(text.to_string())
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        _ => "string",
    }
}

fn coerce(raw: &str, ty: Option<&str>) -> Option<Json> {
    match ty {
        Some("number") => raw
            .parse::<i64>()
            .map(Json::from)
            .ok()
            .or_else(|| raw.parse::<f64>().ok().filter(|f| f.is_finite()).map(Json::from)),
        Some("bool") => yaml::scalar_bool(raw).map(Json::Bool),
        _ => Some(Json::String(raw.to_string())),
    }
}

pub(crate) fn json_to_string(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
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
mod tests {
    use super::*;

    /// Messages from a manifest of `n` CVMs where the second has invalid compose YAML and a bad
    /// vcpu, and the second-to-last a compose file without services and a bad memory size.
    fn messages(n: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        w("good.yml", "services:\n  web:\n    image: nginx\n");
        w("broken.yml", "services:\n  web: [unclosed\n");
        w("empty.yml", "volumes: {}\n");
        let mut m = String::from("cvms:\n");
        for i in 0..n {
            let (compose, extra) = match i {
                1 => ("broken.yml", "    vcpu: 0\n"),
                i if i == n - 2 => ("empty.yml", "    memory: 1\n"),
                _ => ("good.yml", ""),
            };
            m.push_str(&format!("  cvm-{i:03}:\n    name: cvm-{i:03}-app\n    compose: {compose}\n{extra}"));
        }
        let opts = LoadOptions { env: Arc::new(|_| None), ..Default::default() };
        let err = load_str(&dir.path().join("teeform.yaml"), m, &opts).expect_err("errors");
        err.diagnostics.iter().map(|d| d.message.clone()).collect()
    }

    #[test]
    fn compose_findings_stay_in_manifest_order_however_they_are_checked() {
        // 4 CVMs are checked inline; 70 are spread over threads.
        for n in [4, 70] {
            let got = messages(n);
            assert_eq!(got.len(), 6, "{got:#?}");
            assert!(got[0].starts_with("invalid compose YAML"), "{got:#?}");
            assert_eq!(got[1], "the compose file above is referenced here");
            assert!(got[2].contains("vcpu") && got[2].contains("between 1 and 256"), "{got:#?}");
            assert_eq!(got[3], "a docker-compose file needs a `services:` mapping");
            assert_eq!(got[4], "the compose file above is referenced here");
            assert!(got[5].contains("memory"), "{got:#?}");
        }
    }
}
