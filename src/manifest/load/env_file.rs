//! `env_file:` on a CVM: env files in docker compose's dialect (`manifest::dotenv`), one path
//! or a list, each a path or `{path: P, secret: true}`, relative to the manifest and read under
//! the same rules as every file it names. A later file wins over an earlier one; the CVM's own
//! `env:` wins over every file ([`Loader::cvm`] merges them). A secret file's values stay out
//! of the `Config`: each key becomes a reference ([`Ref::SecretEnvFile`]) read when secrets are
//! read, digested like `${secret:…}` values and never shown or stored.
//!
//! Problems inside a file are diagnostics at its line and column that never show its lines
//! (its values may be secrets), with the manifest's `env_file:` entry beside them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::CvmConfig;
use super::super::compose_lint::EnvKey;
use super::super::diag::{Diagnostic, Source};
use super::super::dotenv;
use super::super::expr::{Part, Ref, Template};
use super::super::files::Limit;
use super::super::yaml::{Kind, Node, Span};
use super::compose::LintInput;
use super::{Loader, display_path};

/// A key an env file gives a CVM.
pub(super) struct FromFile {
    pub value: Template,
    /// The manifest's `env_file:` entry that named the file.
    pub span: Span,
    /// The value, when it is not secret.
    pub literal: Option<String>,
    /// The names its interpolation read from keys above it in the file.
    pub uses: Vec<String>,
    /// The file, as written.
    pub path: String,
}

/// An env file read once, however many CVMs name it: its keys, each with its value and the
/// names its interpolation read (the last of a repeated key), or `None` when it has problems
/// (reported once).
pub(super) type EnvFileValues = Option<Arc<BTreeMap<String, (String, Vec<String>)>>>;

/// How an env file was first named: secret or not, where, by which CVM; and the diagnostics
/// its reading made (in `Loader::diags`).
pub(super) struct FirstUse {
    secret: bool,
    span: Span,
    who: String,
    diags: std::ops::Range<usize>,
}

impl Loader<'_> {
    /// `env_file:` of one CVM: each key with its value, a later file winning; and whether
    /// every file was read (when not, the problem is reported and the keys are incomplete).
    pub(super) fn env_files(&mut self, node: &Node, what: &str, who: &str) -> (BTreeMap<String, FromFile>, bool) {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => vec![node],
        };
        let mut out = BTreeMap::new();
        let mut complete = true;
        for it in items {
            let Some((path, secret)) = self.env_file_entry(it, what) else {
                complete = false;
                continue;
            };
            self.same_secrecy(&path, secret, it.span, who);
            let Some(values) = self.env_file(&path, secret, it.span, who) else {
                complete = false;
                continue;
            };
            for (key, (value, uses)) in values.iter() {
                let (value, literal) = if secret {
                    let r = Ref::SecretEnvFile { path: path.clone(), key: key.clone() };
                    (Template { parts: vec![Part::Ref { r }] }, None)
                } else {
                    (Template::literal(value.clone()), Some(value.clone()))
                };
                let (span, uses, path) = (it.span, uses.clone(), path.clone());
                out.insert(key.clone(), FromFile { value, span, literal, uses, path });
            }
        }
        (out, complete)
    }

    /// One entry: a path, or `{path: P, secret: BOOL}`.
    fn env_file_entry(&mut self, node: &Node, what: &str) -> Option<(String, bool)> {
        if !matches!(node.kind, Kind::Map(_)) {
            return self.path_string(node, "env_file path").map(|p| (p, false));
        }
        let mut path = None;
        let mut secret = false;
        let mut written = false;
        for (k, _, v) in self.entries(node, &format!("{what} entry"), Some(&["path", "secret"])) {
            match k {
                "path" => {
                    written = true;
                    path = self.path_string(v, "env_file path");
                }
                _ => secret = self.boolean(v, "env_file secret").unwrap_or(false),
            }
        }
        // A `path:` written but wrong is reported where it is, once.
        if !written {
            self.err(node.span, "an env_file entry needs a `path`")
                .set_label("no path")
                .add_hint("e.g. `{path: secrets.env, secret: true}`");
        }
        path.map(|p| (p, secret))
    }

    /// A file read as secret by one CVM must be secret for all: otherwise its values would be
    /// stored and shown in plain through the other.
    fn same_secrecy(&mut self, path: &str, secret: bool, span: Span, who: &str) {
        let first = self.env_file_uses.entry(path.to_string()).or_insert_with(|| FirstUse {
            secret,
            span,
            who: who.to_string(),
            diags: 0..0,
        });
        if first.secret == secret {
            return;
        }
        // Read in plain first, secret now: its problems are worded again as a secret file's
        // (the same problems, one for one), so no value is shown through the plain reading.
        if secret && !first.diags.is_empty() {
            let (range, first_span, first_who) = (first.diags.clone(), first.span, first.who.clone());
            if let Some(Ok(text)) = self.files.get(&(path.to_string(), Limit::Value)).map(|f| f.result.clone()) {
                let (_, again) = self.env_file_problems(path, &text, true, first_span, &first_who);
                self.diags.splice(range, again);
            }
        }
        let first = &self.env_file_uses[path];
        let (secret_in, plain_in) =
            if first.secret { (first.who.clone(), who.to_string()) } else { (who.to_string(), first.who.clone()) };
        let first_span = first.span;
        let src = self.src.clone();
        let d = self
            .err(span, format!("env file `{path}` is secret for {secret_in} but not for {plain_in}"))
            .set_label(if secret { "secret here" } else { "not secret here" });
        d.also.push(super::super::diag::Related { source: src, span: first_span, label: "and here".into() });
        d.add_hint(format!(
            "write `{{path: {path}, secret: true}}` everywhere: a file read in plain has its values stored in state and shown in plans"
        ));
    }

    /// The keys and values of the env file at `path`, read and checked once.
    fn env_file(&mut self, path: &str, secret: bool, span: Span, who: &str) -> EnvFileValues {
        if let Some(done) = self.env_file_values.get(path) {
            return done.clone();
        }
        let values = self.read_env_file(path, secret, span, who);
        self.env_file_values.insert(path.to_string(), values.clone());
        values
    }

    fn read_env_file(&mut self, path: &str, secret: bool, span: Span, who: &str) -> EnvFileValues {
        let text = self.read_file(path, Limit::Value, span, "env file", who)?;
        let (parsed, problems) = self.env_file_problems(path, &text, secret, span, who);
        let start = self.diags.len();
        let ok = problems.is_empty();
        self.diags.extend(problems);
        if let Some(first) = self.env_file_uses.get_mut(path) {
            first.diags = start..self.diags.len();
        }
        ok.then(|| Arc::new(parsed.entries.into_iter().map(|e| (e.key, (e.value, e.uses))).collect()))
    }

    /// An env file's text read, and its problems as diagnostics at its lines (the manifest's
    /// entry at `span`, read by `who`, beside each).
    fn env_file_problems(
        &self,
        path: &str,
        text: &str,
        secret: bool,
        span: Span,
        who: &str,
    ) -> (dotenv::Parsed, Vec<Diagnostic>) {
        let parsed = if secret { dotenv::parse_secret(text) } else { dotenv::parse(text) };
        let mut out = Vec::new();
        let full = self.dir.join(path);
        let display = display_path(&full, self.opts.display_base.as_deref());
        // Only where things are: a diagnostic never prints a line of an env file.
        let src = Source::with_quote(&full, display, skeleton(text), false);
        for e in &parsed.errors {
            let mut d = Diagnostic::error(&src, Span::new(e.at, e.at), e.message.clone()).also(
                &self.src,
                span,
                format!("read by {who}"),
            );
            d.hints.extend(e.hint.clone());
            out.push(d);
        }
        for e in &parsed.entries {
            if !super::cvm::is_env_name(&e.key) {
                // A secret file's text is never quoted, even where a key should be.
                let message = if secret {
                    "a key that is not a valid environment variable name".to_string()
                } else {
                    format!("`{}` is not a valid environment variable name", e.key)
                };
                out.push(
                    Diagnostic::error(&src, Span::new(e.at, e.at + e.key.len()), message)
                        .also(&self.src, span, format!("read by {who}"))
                        .hint("use letters, digits and `_`, not starting with a digit"),
                );
            }
        }
        (parsed, out)
    }

    /// docker compose interpolates an env file's `${NAME}` with the service's `environment:`
    /// before the file's own keys; teeform reads only the file's. Where the CVM's `env:` sets
    /// Adds the keys read from `env_file:` to a CVM's env: `env:` wins over every env file.
    /// An env file not read (`files_read` false) is reported once: its keys' absence is no
    /// news for the compose file's lint (no "`${KEY}` has no env key" after it).
    pub(super) fn merge_env_files(
        &mut self,
        c: &mut CvmConfig,
        from_files: BTreeMap<String, FromFile>,
        files_read: bool,
        lint: &mut LintInput,
        who: &str,
    ) {
        let env = c.env.clone();
        for (key, f) in from_files {
            if env.contains_key(&key) {
                continue;
            }
            self.env_shadows(&key, &f, &env, who);
            lint.env.push(EnvKey { name: key.clone(), key_span: f.span, value_span: f.span, literal: f.literal });
            c.env.insert(key, f.value);
        }
        if !files_read {
            lint.compose_at = None;
        }
    }

    /// a name a kept value reads, the two would differ: an error, not a silent difference.
    pub(super) fn env_shadows(&mut self, key: &str, f: &FromFile, env: &BTreeMap<String, Template>, who: &str) {
        let mut names = f.uses.iter().filter(|n| env.contains_key(*n)).peekable();
        // A secret value's names are part of it: said once, unnamed.
        if f.literal.is_none() {
            if names.peek().is_some() {
                self.err(f.span, format!("`{key}` in secret env file `{}` reads a name {who}'s `env:` sets too", f.path))
                    .set_label("ambiguous")
                    .add_hint("docker compose would read `env:`'s value there and teeform the file's: write the value out in the file, or rename one of the two");
            }
            return;
        }
        for name in names {
            self.err(f.span, format!("`{key}` in env file `{}` reads `${{{name}}}`, which {who}'s `env:` sets too", f.path))
                .set_label("ambiguous")
                .add_hint(format!(
                    "docker compose would read `env:`'s `{name}` there and teeform the file's: write the value out in the file, or rename one of the two"
                ));
        }
    }
}

/// A stand-in for an env file's text with the same lines, byte offsets and columns and none of
/// its content, for a diagnostic's `file:line:col`.
fn skeleton(text: &str) -> String {
    text.chars()
        .map(|c| match c.len_utf8() {
            _ if c == '\n' => '\n',
            1 => ' ',
            2 => '\u{a0}',
            3 => '\u{3000}',
            _ => '\u{10000}',
        })
        .collect()
}
