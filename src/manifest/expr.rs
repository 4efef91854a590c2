//! `${...}` interpolation: parsing strings into literal text and references.
//!
//! Forms: `${var.NAME}`, `${env:NAME}`, `${file:PATH}`, `${cvm.NAME.ATTR}`,
//! `${data.KIND.NAME.ATTR}`, `${secret:env:NAME}`, `${secret:file:PATH}`, `${workspace}`. `$${`
//! is a literal `${`.

use serde::{Deserialize, Serialize};

/// Attributes of a CVM other resources may reference; all are known once the CVM exists.
pub const CVM_ATTRS: &[&str] = &["id", "name", "app_id", "vm_uuid", "instance_id", "compose_hash"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ref {
    Var {
        name: String,
    },
    Env {
        name: String,
    },
    File {
        path: String,
    },
    Cvm {
        name: String,
        attr: String,
    },
    Data {
        source: String,
        name: String,
        attr: String,
    },
    SecretEnv {
        name: String,
    },
    SecretFile {
        path: String,
    },
    /// The value of `key` in a secret env file (`env_file: {path: PATH, secret: true}`), read
    /// when a plan or an apply reads secrets, as `${secret:file:}` is. Made by the loader, never
    /// written in a manifest.
    SecretEnvFile {
        path: String,
        key: String,
    },
    /// The state workspace of the run (`--workspace`, `TEEFORM_WORKSPACE`, else `default`).
    Workspace,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Var { name } => write!(f, "${{var.{name}}}"),
            Ref::Env { name } => write!(f, "${{env:{name}}}"),
            Ref::File { path } => write!(f, "${{file:{path}}}"),
            Ref::Cvm { name, attr } => write!(f, "${{cvm.{name}.{attr}}}"),
            Ref::Data { source, name, attr } => write!(f, "${{data.{source}.{name}.{attr}}}"),
            Ref::SecretEnv { name } => write!(f, "${{secret:env:{name}}}"),
            Ref::SecretFile { path } => write!(f, "${{secret:file:{path}}}"),
            Ref::SecretEnvFile { path, key } => write!(f, "{key} of env_file {path}"),
            Ref::Workspace => write!(f, "${{workspace}}"),
        }
    }
}

impl Ref {
    pub fn is_secret(&self) -> bool {
        matches!(self, Ref::SecretEnv { .. } | Ref::SecretFile { .. } | Ref::SecretEnvFile { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Part {
    Lit(String),
    Ref {
        #[serde(rename = "ref")]
        r: Ref,
    },
}

/// A string with interpolations. Offsets of parse errors are byte offsets into the string.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    pub hint: Option<String>,
    /// Byte range within the string.
    pub at: std::ops::Range<usize>,
}

impl Template {
    pub fn literal(s: impl Into<String>) -> Self {
        Template { parts: vec![Part::Lit(s.into())] }
    }

    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref { r } => Some(r),
            Part::Lit(_) => None,
        })
    }

    /// The single reference if the whole string is exactly one `${...}`.
    pub fn sole_ref(&self) -> Option<&Ref> {
        match self.parts.as_slice() {
            [Part::Ref { r }] => Some(r),
            _ => None,
        }
    }

    pub fn as_literal(&self) -> Option<String> {
        if self.refs().next().is_some() {
            return None;
        }
        Some(self.parts.iter().map(|p| if let Part::Lit(s) = p { s.as_str() } else { "" }).collect())
    }

    /// Substitutes the references `f` can answer; the rest stay.
    pub fn substitute(&self, mut f: impl FnMut(&Ref) -> Option<String>) -> Template {
        let mut parts: Vec<Part> = Vec::new();
        for p in &self.parts {
            let lit = match p {
                Part::Lit(s) => Some(s.clone()),
                Part::Ref { r } => f(r),
            };
            match (lit, parts.last_mut()) {
                (Some(s), Some(Part::Lit(prev))) => prev.push_str(&s),
                (Some(s), _) => parts.push(Part::Lit(s)),
                (None, _) => parts.push(p.clone()),
            }
        }
        Template { parts }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Lit(s) => write!(f, "{}", s.replace("${", "$${"))?,
                Part::Ref { r } => write!(f, "{r}")?,
            }
        }
        Ok(())
    }
}

const FORMS: &str = "references look like ${var.NAME}, ${env:NAME}, ${file:PATH}, ${cvm.NAME.ATTR}, ${data.KIND.NAME.ATTR}, ${secret:env:NAME}, ${secret:file:PATH} or ${workspace}";

pub fn parse(s: &str) -> Result<Template, ExprError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < s.len() {
        if s[i..].starts_with("$${") {
            lit.push_str("${");
            i += 3;
        } else if s[i..].starts_with("${") {
            let Some(close) = s[i + 2..].find('}') else {
                return Err(ExprError {
                    message: "unterminated `${`".into(),
                    hint: Some("close the reference with `}`, or write `$${` for a literal `${`".into()),
                    at: i..s.len(),
                });
            };
            let inner = &s[i + 2..i + 2 + close];
            let at = i..i + 3 + close;
            let r = parse_ref(inner.trim()).map_err(|(message, hint)| ExprError { message, hint, at })?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Ref { r });
            i += 3 + close;
        } else {
            let ch = s[i..].chars().next().unwrap_or_default();
            lit.push(ch);
            i += ch.len_utf8().max(1);
            debug_assert!(i <= bytes.len());
        }
    }
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(Template { parts })
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_ref(inner: &str) -> Result<Ref, (String, Option<String>)> {
    let bad = |msg: String| Err((msg, Some(FORMS.to_string())));
    if let Some(rest) = inner.strip_prefix("secret:") {
        return match rest.split_once(':') {
            Some(("env", name)) if ident_ok(name) => Ok(Ref::SecretEnv { name: name.into() }),
            Some(("file", path)) if !path.is_empty() => Ok(Ref::SecretFile { path: path.into() }),
            _ => bad(format!("`${{{inner}}}` is not a valid secret reference")),
        };
    }
    if let Some(name) = inner.strip_prefix("env:") {
        return if ident_ok(name) {
            Ok(Ref::Env { name: name.into() })
        } else {
            bad(format!("`{name}` is not an environment variable name"))
        };
    }
    if let Some(path) = inner.strip_prefix("file:") {
        return if path.is_empty() {
            bad("`${file:}` needs a path".into())
        } else {
            Ok(Ref::File { path: path.into() })
        };
    }
    let segs: Vec<&str> = inner.split('.').collect();
    if segs.iter().any(|s| !ident_ok(s)) {
        return bad(format!("`${{{inner}}}` is not a valid reference"));
    }
    match segs.as_slice() {
        ["var", name] => Ok(Ref::Var { name: (*name).into() }),
        ["workspace"] => Ok(Ref::Workspace),
        ["cvm", name, attr] => {
            if CVM_ATTRS.contains(attr) {
                Ok(Ref::Cvm { name: (*name).into(), attr: (*attr).into() })
            } else {
                let hint = match super::diag::did_you_mean(attr, CVM_ATTRS.iter().copied()) {
                    Some(s) => {
                        format!("did you mean `{s}`? a CVM exposes {}", CVM_ATTRS.join(", "))
                    }
                    None => format!("a CVM exposes {}", CVM_ATTRS.join(", ")),
                };
                Err((format!("CVMs have no attribute `{attr}`"), Some(hint)))
            }
        }
        ["data", source, name, attr] => {
            Ok(Ref::Data { source: (*source).into(), name: (*name).into(), attr: (*attr).into() })
        }
        ["cvm", ..] => bad(format!("`${{{inner}}}`: a CVM reference is `cvm.NAME.ATTR`")),
        ["var", ..] => bad(format!("`${{{inner}}}`: a variable reference is `var.NAME`")),
        _ => bad(format!("unknown reference `${{{inner}}}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let cases: &[(&str, Ref)] = &[
            ("${var.x}", Ref::Var { name: "x".into() }),
            ("${env:HOME}", Ref::Env { name: "HOME".into() }),
            ("${file:./a.txt}", Ref::File { path: "./a.txt".into() }),
            ("${cvm.db.app_id}", Ref::Cvm { name: "db".into(), attr: "app_id".into() }),
            (
                "${data.oci_image.base.id}",
                Ref::Data { source: "oci_image".into(), name: "base".into(), attr: "id".into() },
            ),
            ("${secret:env:DB_PASSWORD}", Ref::SecretEnv { name: "DB_PASSWORD".into() }),
            ("${secret:file:./db.pass}", Ref::SecretFile { path: "./db.pass".into() }),
        ];
        for (src, want) in cases {
            let t = parse(src).unwrap();
            assert_eq!(t.sole_ref(), Some(want), "{src}");
            assert_eq!(t.to_string(), *src);
        }
    }

    #[test]
    fn mixes_literals_and_escapes() {
        let t = parse("postgres://${cvm.db.name}:5432/$${X}").unwrap();
        assert_eq!(t.parts.len(), 3);
        assert_eq!(t.refs().count(), 1);
        let s = t.substitute(|_| Some("db-main".into()));
        assert_eq!(s.as_literal().unwrap(), "postgres://db-main:5432/${X}");
    }

    #[test]
    fn rejects_bad_references_with_position() {
        for (src, at) in [("a ${nope}", 2..9), ("${cvm.db.ip}", 0..12), ("x ${var.y", 2..9)] {
            let e = parse(src).unwrap_err();
            assert_eq!(e.at, at, "{src}: {e:?}");
        }
        assert!(parse("${cvm.db.appid}").unwrap_err().hint.unwrap().contains("app_id"));
    }

    #[test]
    fn plain_strings_are_literals() {
        assert_eq!(parse("").unwrap().as_literal().unwrap(), "");
        assert_eq!(parse("$5 and {x}").unwrap().as_literal().unwrap(), "$5 and {x}");
    }
}
