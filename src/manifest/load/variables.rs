//! Variables (`variables:`): declared with a default and a type (else the default's), set by
//! `--var NAME=VALUE` or `TEEFORM_VAR_NAME`, and used as `${var.NAME}`. A value keeps its text
//! as written: a default `1.20` is `1.20` inside a string.

use std::collections::BTreeSet;

use super::super::diag::{Diagnostic, Severity, did_you_mean};
use super::super::yaml::{self, Core, Kind, Node, Span, Tag};
use super::Loader;
use super::values::{Lit, parse_bool};

/// A variable's type (`type:`, else its default's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VarType {
    String,
    Number,
    Bool,
}

impl VarType {
    pub(super) fn of(core: Core) -> Option<VarType> {
        match core {
            Core::Null => None,
            Core::Bool(_) => Some(VarType::Bool),
            Core::Int | Core::Float => Some(VarType::Number),
            Core::Str => Some(VarType::String),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Bool => "bool",
        }
    }

    /// `text` (from `--var`, `TEEFORM_VAR_*` or a default) as a value of this type, keeping
    /// the text as written.
    pub fn coerce(self, text: &str) -> Option<Lit> {
        let core = match self {
            VarType::String => Core::Str,
            VarType::Number if yaml::is_core_int(text) => Core::Int,
            VarType::Number if yaml::is_core_float(text) => Core::Float,
            VarType::Number => return None,
            VarType::Bool => Core::Bool(parse_bool(text)?),
        };
        Some(Lit { core, text: text.to_string() })
    }
}

impl Loader<'_> {
    /// A variable's value; reports an unknown one (not one whose override was already
    /// reported as invalid).
    pub(super) fn var(&mut self, name: &str, span: Span) -> Option<Lit> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        if self.failed_vars.contains(name) {
            return None;
        }
        let hint = match did_you_mean(name, self.vars.keys().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "declare it under `variables:`".to_string(),
        };
        self.err(span, format!("unknown variable `{name}`")).set_label("used here").add_hint(hint);
        None
    }

    /// `variables:`: each variable's value, or a diagnostic; a variable that failed is
    /// remembered so its uses report nothing more.
    pub(super) fn variables(&mut self, node: &Node) {
        for (name, knode, spec) in self.entries(node, "variables", None) {
            let value = match self.declaration(name, knode, spec) {
                Ok((default, ty)) => self.variable_value(name, default, ty),
                Err(()) => Err(()),
            };
            match value {
                Ok(Some(v)) => {
                    self.vars.insert(name.to_string(), v);
                }
                Ok(None) => {
                    self.failed_vars.insert(name.to_string());
                    self.err(knode.span, format!("variable `{name}` has no value"))
                        .set_label("no default")
                        .add_hint(format!("give it a `default:`, or pass --var {name}=VALUE"));
                }
                Err(()) => {
                    self.failed_vars.insert(name.to_string());
                }
            }
        }
    }

    /// A variable's default (null is none) and type (`type:`, else its default's); `Err` when
    /// the default is not of the type `type:` says (reported where it is written).
    fn declaration(&mut self, name: &str, knode: &Node, spec: &Node) -> Result<(Option<Lit>, Option<VarType>), ()> {
        let (default, ty, default_span) = match &spec.kind {
            Kind::Map(_) => {
                let e = self.entries(
                    spec,
                    &format!("variable `{name}`"),
                    Some(&["default", "description", "type", "sensitive"]),
                );
                let mut default = None;
                let mut ty = None;
                let mut default_span = knode.span;
                for (k, _, v) in e {
                    match k {
                        "default" => {
                            default = self.literal(v);
                            default_span = v.span;
                        }
                        "type" => match self.plain_str(v) {
                            Some("string") => ty = Some(VarType::String),
                            Some("number") => ty = Some(VarType::Number),
                            Some("bool") => ty = Some(VarType::Bool),
                            Some(t) => {
                                self.err(v.span, format!("unknown variable type `{t}`"))
                                    .add_hint("types are string, number and bool");
                            }
                            None => {}
                        },
                        _ => {}
                    }
                }
                (default, ty, default_span)
            }
            _ => (self.literal(spec), None, spec.span),
        };
        let default = default.filter(|d| d.core != Core::Null);
        // A default of another type than `type:` says is an error where it is written.
        let default = match (ty, default) {
            (Some(t), Some(d)) if VarType::of(d.core) != Some(t) => match t.coerce(&d.text) {
                Some(l) => Some(l),
                None => {
                    self.err(default_span, format!("the default of `{name}` is {}, not a {}", d.type_name(), t.name()))
                        .set_label("wrong type");
                    return Err(());
                }
            },
            (_, d) => d,
        };
        let ty = ty.or_else(|| default.as_ref().and_then(|d| VarType::of(d.core)));
        Ok((default, ty))
    }

    /// A variable's value: `--var NAME=VALUE` (the last one), else the last variable file
    /// that sets it, else `TEEFORM_VAR_NAME`, else its default; `Err` when a value is not of
    /// the variable's type (reported where it is written). Terraform's `TF_VAR_NAME` is not
    /// read, but a default used while it is set gets a warning saying so.
    fn variable_value(&mut self, name: &str, default: Option<Lit>, ty: Option<VarType>) -> Result<Option<Lit>, ()> {
        let from_cli =
            self.opts.vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| (format!("--var {name}"), v.clone()));
        let from_file = self.file_vars.iter().rev().find(|f| f.name == name).cloned();
        let env_name = format!("TEEFORM_VAR_{name}");
        let from_env = || (self.opts.env)(&env_name).map(|v| (env_name.clone(), v));
        let t = ty.unwrap_or(VarType::String);
        let (origin, raw) = match (from_cli, from_file) {
            (Some(cli), _) => cli,
            (None, Some(f)) => {
                return match t.coerce(&f.text) {
                    Some(v) => Ok(Some(v)),
                    None => {
                        self.diags.push(
                            Diagnostic::error(&f.source, f.span, format!("variable `{name}` is a {}", t.name()))
                                .label(format!("not a {}", t.name()))
                                .hint(type_hint(t)),
                        );
                        Err(())
                    }
                };
            }
            (None, None) => match from_env() {
                Some(e) => e,
                None => {
                    self.tf_var_hint(name, default.is_some());
                    return Ok(default);
                }
            },
        };
        match t.coerce(&raw) {
            Some(v) => Ok(Some(v)),
            None => {
                self.diags.push(
                    Diagnostic::bare(format!("{origin}={raw}: variable `{name}` is a {}", t.name())).hint(type_hint(t)),
                );
                Err(())
            }
        }
    }

    /// `TF_VAR_NAME` is set where teeform reads `TEEFORM_VAR_NAME`: a Terraform habit that would
    /// otherwise plan the default back without a word.
    fn tf_var_hint(&mut self, name: &str, has_default: bool) {
        let tf = format!("TF_VAR_{name}");
        if (self.opts.env)(&tf).is_none() {
            return;
        }
        let what = if has_default { "uses its default" } else { "has no value" };
        let d =
            Diagnostic::bare(format!("{tf} is set, but teeform reads TEEFORM_VAR_{name}: variable `{name}` {what}"));
        self.diags.push(
            Diagnostic { severity: Severity::Warning, ..d }
                .hint(format!("export TEEFORM_VAR_{name}=\"${tf}\" (or pass --var {name}=VALUE)")),
        );
    }

    /// A literal scalar (no interpolation), for variable defaults.
    pub(super) fn literal(&mut self, node: &Node) -> Option<Lit> {
        if let Kind::Scalar { tag: Some(t), .. } = &node.kind
            && let Tag::Other(t) = &**t
        {
            self.err(node.span, format!("the YAML tag `{t}` is not supported")).set_label("unsupported tag");
            return None;
        }
        match &node.kind {
            Kind::Scalar { text, plain, tag } => {
                Some(Lit { core: yaml::core(text, *plain, tag.as_deref()), text: text.clone() })
            }
            _ => {
                self.err(node.span, "a variable default must be a string, number or boolean").set_label("not a scalar");
                None
            }
        }
    }

    /// `--var` for a variable the manifest does not declare is an error; a value in a
    /// `--var-file` is a warning (Terraform's rule), and in an automatic `*.auto.vars.yaml`
    /// nothing (such a file may serve several manifests).
    pub(super) fn check_var_overrides(&mut self, vars_node: Option<&Node>) {
        let declared: BTreeSet<String> = match vars_node.map(|n| &n.kind) {
            Some(Kind::Map(p)) => p
                .iter()
                .filter_map(|(k, _)| if let Kind::Scalar { text, .. } = &k.kind { Some(text.clone()) } else { None })
                .collect(),
            _ => BTreeSet::new(),
        };
        for (k, _) in &self.opts.vars {
            if !declared.contains(k) {
                let mut d = Diagnostic::bare(format!("--var {k}: the manifest declares no variable `{k}`"));
                if let Some(s) = did_you_mean(k, declared.iter().map(String::as_str)) {
                    d = d.hint(format!("did you mean `{s}`?"));
                } else {
                    d = d.hint("declare it under `variables:`");
                }
                self.diags.push(d);
            }
        }
        let undeclared: Vec<_> =
            self.file_vars.iter().filter(|f| !f.auto && !declared.contains(&f.name)).cloned().collect();
        for f in undeclared {
            let d = Diagnostic::warning(&f.source, f.span, format!("the manifest declares no variable `{}`", f.name))
                .label("not used");
            self.diags.push(match did_you_mean(&f.name, declared.iter().map(String::as_str)) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint(format!("declare it under `variables:` ({})", f.origin())),
            });
        }
    }
}

fn type_hint(t: VarType) -> &'static str {
    match t {
        VarType::Number => "a number is written like 2, 1.5 or 0x10",
        VarType::Bool => "a bool is true or false",
        VarType::String => "",
    }
}
