//! Scalars and variables: what a value means, read exactly as written.
//!
//! The rule: a field's type decides. A string field (env values, names, outputs, variables
//! used inside strings) takes the scalar's text exactly as YAML defines it — a plain scalar as
//! written (`1.30` stays `1.30`, `yes` stays `yes`, `0755` stays `0755`), a quoted one
//! unescaped. A number field takes YAML 1.2 core integers (`2`, `+2`, `0x10`, `0o17`) and
//! refuses the rest with the text shown (`0755`, `1e3`, `2.0`, `1_000`). A boolean field takes
//! `true`/`false` and YAML 1.1's `yes`/`no`/`on`/`off`. `!!str` makes any scalar a string.
//! Null (`~`, `null`, nothing) leaves an optional field unset and is an error where a value
//! is required. Variables keep their text too: a default `1.20` is `1.20` inside a string.

use serde_json::Value as Json;

use super::super::diag::did_you_mean;
use super::super::expr::{self, Ref, Template};
use super::super::files::{Limit, file_value};
use super::super::yaml::{self, Core, Kind, Node, Span, Tag};
use super::{Allow, Loader};

/// A scalar's meaning: its core-schema type and its text exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lit {
    pub core: Core,
    pub text: String,
}

impl Lit {
    pub fn str(text: impl Into<String>) -> Lit {
        Lit { core: Core::Str, text: text.into() }
    }

    pub(super) fn type_name(&self) -> &'static str {
        match self.core {
            Core::Null => "null",
            Core::Bool(_) => "a boolean",
            Core::Int | Core::Float => "a number",
            Core::Str => "a string",
        }
    }

    /// The value as JSON (for `Config::variables`): numbers that JSON cannot hold exactly
    /// (`.inf`, out of range) stay text.
    pub fn json(&self) -> Json {
        match self.core {
            Core::Null => Json::Null,
            Core::Bool(b) => Json::Bool(b),
            Core::Int => parse_int(&self.text).map_or_else(|| Json::String(self.text.clone()), Json::from),
            Core::Float => self
                .text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Json::String(self.text.clone()), Json::Number),
            Core::Str => Json::String(self.text.clone()),
        }
    }
}

/// A scalar after variables, environment and files have been substituted.
pub(super) enum Scalar {
    /// Fully known.
    Lit(Lit),
    /// A string with references only the planner can answer (CVMs, data sources, secrets).
    Tpl(Template),
}

/// `true`/`false` (three spellings each) and YAML 1.1's `yes`/`no`/`on`/`off`.
pub(super) fn parse_bool(text: &str) -> Option<bool> {
    yaml::scalar_bool(text).or(match text {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    })
}

/// A core-schema integer's value (`+2`, `0x10`, `0o17`); `None` when out of `i64`.
pub(super) fn parse_int(t: &str) -> Option<i64> {
    if let Some(h) = t.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok();
    }
    if let Some(o) = t.strip_prefix("0o") {
        return i64::from_str_radix(o, 8).ok();
    }
    t.strip_prefix('+').unwrap_or(t).parse().ok()
}

/// A whole number as a number field reads it, or why not (shown after "found").
pub(super) fn whole_number(lit: &Lit) -> Result<i128, (String, Option<String>)> {
    let t = lit.text.as_str();
    let shown = || format!("`{t}`");
    match lit.core {
        Core::Int | Core::Str if yaml::is_core_int(t) => {
            let digits = t.trim_start_matches(['-', '+']);
            if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
                let plain = digits.trim_start_matches('0');
                return Err((
                    shown(),
                    Some(format!(
                        "a leading zero makes `{t}` octal in YAML 1.1 and decimal in YAML 1.2; write `{}` (or `0o{}` for octal)",
                        if plain.is_empty() { "0" } else { plain },
                        if plain.is_empty() { "0" } else { plain }
                    )),
                ));
            }
            let neg = t.starts_with('-');
            let v = if let Some(h) = t.strip_prefix("0x") {
                i128::from_str_radix(h, 16).ok()
            } else if let Some(o) = t.strip_prefix("0o") {
                i128::from_str_radix(o, 8).ok()
            } else {
                digits.parse::<i128>().ok().map(|v| if neg { -v } else { v })
            };
            // Too many digits for any field: out of every range, shown as written.
            Ok(v.unwrap_or(if neg { i128::MIN } else { i128::MAX }))
        }
        Core::Float | Core::Str if yaml::is_core_float(t) => {
            let hint = t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| format!("write it as a whole number: `{}`", f as i64));
            Err((shown(), hint))
        }
        Core::Str if t.contains('_') && t.replace('_', "").bytes().all(|b| b.is_ascii_digit()) => {
            Err((shown(), Some(format!("YAML 1.2 numbers have no `_`: write `{}`", t.replace('_', "")))))
        }
        Core::Str => Err((shown(), None)),
        _ => Err((lit.type_name().to_string(), None)),
    }
}

impl Loader<'_> {
    // ----- scalars ----------------------------------------------------------------------

    /// Evaluates a scalar: its core meaning, or a string with `${...}` substituted.
    pub(super) fn scalar(&mut self, node: &Node, what: &str, allow: Allow) -> Option<Scalar> {
        let (text, plain, tag) = match &node.kind {
            Kind::Scalar { text, plain, tag } => (text, *plain, tag.as_deref()),
            _ => {
                let t = node.type_name();
                self.err(node.span, format!("{what} must be a single value, found {t}")).set_label("expected a value");
                return None;
            }
        };
        if let Some(Tag::Other(t)) = tag {
            self.err(node.span, format!("{what}: the YAML tag `{t}` is not supported"))
                .set_label("unsupported tag")
                .add_hint("teeform reads strings, numbers and booleans; `!!str` makes any text a string");
            return None;
        }
        let core = yaml::core(text, plain, tag);
        if core != Core::Str || !text.contains("${") {
            return Some(Scalar::Lit(Lit { core, text: text.clone() }));
        }
        let tpl = self.template(node, text, plain)?;
        // A string that is exactly one variable is the variable's value, type and text.
        if let Some(Ref::Var { name }) = tpl.sole_ref() {
            return self.var(name, node.span).map(Scalar::Lit);
        }
        if !self.refs_allowed(&tpl, node.span, what, allow) {
            return None;
        }
        let tpl = self.substitute(tpl, node.span, what)?;
        Some(match tpl.as_literal() {
            Some(s) => Scalar::Lit(Lit::str(s)),
            None => Scalar::Tpl(tpl),
        })
    }

    /// A scalar's `${...}` template, its syntax errors reported where they are in the file.
    fn template(&mut self, node: &Node, text: &str, plain: bool) -> Option<Template> {
        let quote = usize::from(!plain && matches!(self.src.text.as_bytes().get(node.span.start), Some(b'"' | b'\'')));
        match expr::parse(text) {
            Ok(t) => Some(t),
            Err(e) => {
                let start = node.span.start + quote + e.at.start;
                let span = Span::new(start, (node.span.start + quote + e.at.end).min(self.src.text.len()));
                let d = self.err(span, e.message).set_label("here");
                d.hints.extend(e.hint);
                None
            }
        }
    }

    /// Substitutes variables, environment variables and files into a template (what is left
    /// is for the planner); `None` when one of them is unknown, unset or unreadable (reported).
    fn substitute(&mut self, tpl: Template, span: Span, what: &str) -> Option<Template> {
        let mut failed = false;
        let tpl = tpl.substitute(|r| match r {
            Ref::Var { name } => match self.vars.get(name) {
                Some(v) => Some(v.text.clone()),
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
            Ref::Workspace => Some(self.opts.workspace.clone()),
            Ref::File { .. } => {
                failed = true;
                None
            }
            _ => None,
        });
        if !failed {
            return Some(tpl);
        }
        // Files are read here (not in the closure above, which cannot report).
        let mut ok = true;
        let mut values = Vec::new();
        for r in tpl.refs() {
            match r {
                Ref::Var { name } => {
                    self.var(name, span);
                    ok = false;
                }
                Ref::Env { name } => {
                    self.err(span, format!("environment variable `{name}` is not set"))
                        .set_label("used here")
                        .add_hint(format!("export {name}=... before running teeform"));
                    ok = false;
                }
                Ref::File { path } => match self.read_file(path, Limit::Value, span, "file", what) {
                    Some(text) => values.push((r.clone(), file_value(text.to_string()))),
                    None => ok = false,
                },
                _ => {}
            }
        }
        ok.then(|| tpl.substitute(|r| values.iter().find(|(v, _)| v == r).map(|(_, t)| t.clone())))
    }

    /// Checks where each reference may appear, that referenced CVMs and data sources exist,
    /// that `${env:}` does not read teeform's own credentials, and that `${secret:file:}`
    /// names a file that may be read.
    pub(super) fn refs_allowed(&mut self, tpl: &Template, span: Span, what: &str, allow: Allow) -> bool {
        let mut ok = true;
        for r in tpl.refs() {
            let (allowed, place) = match r {
                Ref::Cvm { .. } => (allow.cvm, "CVM references are allowed in `env` values and outputs only"),
                Ref::Data { .. } => (allow.data, "data source references are not allowed here"),
                r if r.is_secret() => (allow.secret, "secrets are allowed in `env` values and outputs only"),
                Ref::File { .. } => (!allow.path, "write the path itself: a path is not read from a file"),
                _ => (true, ""),
            };
            if !allowed {
                self.err(span, format!("{what} cannot use `{r}`")).set_label("not allowed here").add_hint(place);
                ok = false;
            }
        }
        for r in tpl.refs() {
            match r {
                Ref::Cvm { name, .. } if allow.cvm && !self.cvm_keys.contains(name) => {
                    self.unknown_cvm(span, name, &format!("{what} references `cvm.{name}`, which is not declared"));
                    ok = false;
                }
                Ref::Env { name } if self.credentials.contains(name) => {
                    let hint = if allow.secret {
                        format!(
                            "if the CVM needs this value, write `${{secret:env:{name}}}`: a secret is encrypted for the CVM and never shown or stored"
                        )
                    } else {
                        "teeform reads its credentials from the environment itself (an RPC URL from `rpc_url_env`); leave this field out".to_string()
                    };
                    self.err(
                        span,
                        format!("`{r}` would copy teeform's own credential {name} into the plan, state and outputs"),
                    )
                    .set_label("credential")
                    .add_hint(hint);
                    ok = false;
                }
                Ref::SecretFile { path } => {
                    if let Err(e) = self.policy.check(path) {
                        self.file_error(path, &e, span, "secret file");
                        ok = false;
                    }
                }
                _ => {}
            }
            if allow.data && !self.check_data_ref(r, span) {
                ok = false;
            }
        }
        ok
    }

    pub(super) fn unknown_cvm(&mut self, span: Span, name: &str, msg: &str) {
        let hint = match did_you_mean(name, self.cvm_keys.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if self.cvm_keys.is_empty() => "declare the CVM under `cvms:`".to_string(),
            None => {
                format!("declared CVMs: {}", self.cvm_keys.iter().map(String::as_str).collect::<Vec<_>>().join(", "))
            }
        };
        self.err(span, msg).set_label("not declared").add_hint(hint);
    }

    /// A string value where one is required.
    pub(super) fn string(&mut self, node: &Node, what: &str, allow: Allow) -> Option<Template> {
        match self.scalar(node, what, allow)? {
            Scalar::Lit(Lit { core: Core::Null, .. }) => {
                self.err(node.span, format!("{what} must be a string, found null"))
                    .set_label("expected a string")
                    .add_hint("write `\"\"` for an empty string, or quote the word (`\"null\"`, `\"~\"`) to mean it");
                None
            }
            Scalar::Lit(l) => Some(Template::literal(l.text)),
            Scalar::Tpl(t) => Some(t),
        }
    }

    /// A string value in an optional field: null leaves it unset.
    pub(super) fn opt_string(&mut self, node: &Node, what: &str, allow: Allow) -> Option<Template> {
        if node.is_null() {
            return None;
        }
        self.string(node, what, allow)
    }

    /// A string with no references left, where one is required.
    pub(super) fn literal_string(&mut self, node: &Node, what: &str) -> Option<String> {
        self.string(node, what, super::STRINGS_ONLY).and_then(|t| t.as_literal())
    }

    /// A file's path, with no references left and no `${file:}`; an empty one is an error
    /// (not "a directory": the manifest's own).
    pub(super) fn path_string(&mut self, node: &Node, what: &str) -> Option<String> {
        let allow = Allow { path: true, ..super::STRINGS_ONLY };
        let path = self.string(node, what, allow).and_then(|t| t.as_literal())?;
        if path.is_empty() {
            self.err(node.span, format!("{what} is empty"))
                .set_label("empty path")
                .add_hint("write a path relative to the manifest's directory");
            return None;
        }
        Some(path)
    }

    /// [`Loader::literal_string`] in an optional field.
    pub(super) fn opt_literal(&mut self, node: &Node, what: &str) -> Option<String> {
        self.opt_string(node, what, super::STRINGS_ONLY).and_then(|t| t.as_literal())
    }

    /// A whole number from `min` to `max`; `None` when null (unset) or reported.
    pub(super) fn number(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u32> {
        let lit = match self.scalar(node, what, super::STRINGS_ONLY)? {
            Scalar::Lit(Lit { core: Core::Null, .. }) => return None,
            Scalar::Lit(l) => l,
            Scalar::Tpl(t) => Lit::str(t.to_string()),
        };
        // A whole number written as a float (`1e3`) is checked against the range first: a
        // hint to write it as `1000` would only lead to the next error.
        let whole_float = Some(lit.text.as_str())
            .filter(|t| !yaml::is_core_int(t) && yaml::is_core_float(t))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite() && f.fract() == 0.0);
        let out_of_range = |n: f64| n < min as f64 || n > max as f64;
        match whole_number(&lit) {
            Ok(n) if (i128::from(min)..=i128::from(max)).contains(&n) => Some(n as u32),
            Err(_) if whole_float.is_some_and(out_of_range) => {
                self.err(node.span, format!("{what} must be between {min} and {max}, found {}", lit.text))
                    .set_label("out of range");
                None
            }
            Ok(_) => {
                self.err(node.span, format!("{what} must be between {min} and {max}, found {}", lit.text))
                    .set_label("out of range");
                None
            }
            Err((found, hint)) => {
                let d = self
                    .err(node.span, format!("{what} must be a whole number from {min} to {max}, found {found}"))
                    .set_label("expected a whole number");
                d.hints.extend(hint);
                None
            }
        }
    }

    /// A boolean; `None` when null (unset) or reported.
    pub(super) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let lit = match self.scalar(node, what, super::STRINGS_ONLY)? {
            Scalar::Lit(Lit { core: Core::Null, .. }) => return None,
            Scalar::Lit(l) => l,
            Scalar::Tpl(t) => Lit::str(t.to_string()),
        };
        match lit.core {
            Core::Bool(b) => Some(b),
            _ => match parse_bool(&lit.text) {
                Some(b) => Some(b),
                None => {
                    let t = lit.type_name();
                    self.err(node.span, format!("{what} must be true or false, found {t}"))
                        .set_label("expected a boolean");
                    None
                }
            },
        }
    }
}
