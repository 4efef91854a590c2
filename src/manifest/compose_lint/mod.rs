//! The compose/env lint: a compose file's `${VAR}`s against the env keys of each CVM that
//! uses it, with docker compose's interpolation rules, and the compose file's own problems
//! (YAML, `services:`, size). Findings point at the compose file's line and column, or at the
//! env key in the manifest.
//!
//! Rules (docker compose's, from the Compose specification's "Interpolation"): `$VAR` and
//! `${VAR}` expand to the value or to nothing; `${VAR:-d}`/`${VAR-d}` fall back to `d` when
//! unset-or-empty/unset; `${VAR:+r}`/`${VAR+r}` give `r` when set; `${VAR:?e}`/`${VAR?e}` stop
//! docker compose when unset-or-empty/unset; `$$` is a literal `$`; a `$` before anything else
//! stays as written; only values are interpolated, never keys.
//!
//! Findings: a required variable without an env key is an error (the CVM would not start); an
//! empty env value for `${VAR:?e}` is an error; any other variable without a default and
//! without a key is a warning; an env key used by neither the compose file nor the pre-launch
//! script is a warning. Keys starting with `DSTACK_` belong to the platform ([`platform_key`]).
//! A CVM's `lint: {ignore:
//! [NAME]}` silences the warnings about NAME; errors cannot be silenced.
//!
//! Invariant: one problem of one file is one diagnostic, however many CVMs share the file;
//! it lists a few of them and how many more.

mod check;
mod report;

use std::collections::BTreeSet;
use std::ops::Range;

use super::yaml::{self, Kind, Node, Span};
pub(super) use check::{EnvKey, Use, check};

/// How a compose file uses a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// `$VAR`, `${VAR}`: empty when unset.
    Plain,
    /// `${VAR:-d}`, `${VAR-d}`: a default when unset.
    Default,
    /// `${VAR:+r}`, `${VAR+r}`: something only when set.
    Alternative,
    /// `${VAR?e}`: docker compose stops when unset.
    Required,
    /// `${VAR:?e}`: docker compose stops when unset or empty.
    RequiredNonEmpty,
}

impl Need {
    pub fn is_required(self) -> bool {
        matches!(self, Need::Required | Need::RequiredNonEmpty)
    }
}

/// One interpolation in a string: the variable, how it is used, and where (byte range of the
/// whole `${...}` or `$VAR` in the string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interp {
    pub name: String,
    pub need: Need,
    pub range: Range<usize>,
}

/// An interpolation docker compose refuses ("Invalid template").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpError {
    pub range: Range<usize>,
    pub message: String,
}

fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first().is_none_or(|c| !(c.is_ascii_alphabetic() || *c == b'_')) {
        return 0;
    }
    b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count()
}

/// The interpolations of one string value, by docker compose's rules (including nested ones
/// in defaults and messages, which docker compose also expands).
pub fn interpolations(s: &str) -> (Vec<Interp>, Vec<InterpError>) {
    let mut out = (Vec::new(), Vec::new());
    scan(s, 0, &mut out);
    out
}

fn scan(s: &str, base: usize, out: &mut (Vec<Interp>, Vec<InterpError>)) {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(j) = s[i..].find('$') {
        let at = i + j;
        match b.get(at + 1) {
            Some(b'$') => i = at + 2,
            Some(b'{') => {
                let Some(close) = closing_brace(s, at) else {
                    out.1.push(InterpError { range: base + at..base + s.len(), message: "`${` is not closed".into() });
                    return;
                };
                let inner = &s[at + 2..close];
                let n = name_len(inner);
                let (name, after) = inner.split_at(n);
                let modifier = [
                    (":?", Need::RequiredNonEmpty),
                    ("?", Need::Required),
                    (":-", Need::Default),
                    ("-", Need::Default),
                    (":+", Need::Alternative),
                    ("+", Need::Alternative),
                ]
                .into_iter()
                .find(|(m, _)| after.starts_with(m));
                let found = match (n, after, modifier) {
                    (0, ..) => None,
                    (_, "", _) => Some((Need::Plain, "")),
                    (_, _, Some((m, need))) => Some((need, &after[m.len()..])),
                    _ => None,
                };
                match found {
                    Some((need, tail)) => {
                        out.0.push(Interp { name: name.to_string(), need, range: base + at..base + close + 1 });
                        let tail_at = close - tail.len();
                        scan(tail, base + tail_at, out);
                    }
                    None => out.1.push(InterpError {
                        range: base + at..base + close + 1,
                        message: format!("docker compose cannot interpolate `${{{inner}}}`"),
                    }),
                }
                i = close + 1;
            }
            _ => {
                let n = name_len(&s[at + 1..]);
                if n > 0 {
                    out.0.push(Interp {
                        name: s[at + 1..at + 1 + n].to_string(),
                        need: Need::Plain,
                        range: base + at..base + at + 1 + n,
                    });
                }
                i = at + 1 + n;
            }
        }
    }
}

/// The `}` closing the `${` at `at`, counting nested `${`.
fn closing_brace(s: &str, at: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut k = at;
    while k < b.len() {
        if b[k] == b'$' && b.get(k + 1) == Some(&b'{') {
            depth += 1;
            k += 2;
            continue;
        }
        if b[k] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
        k += 1;
    }
    None
}

/// The variables a shell script reads: `$NAME` and `${NAME...}` (a `\$` is literal).
pub fn script_vars(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(j) = text[i..].find('$') {
        let at = i + j;
        i = at + 1;
        if at > 0 && b[at - 1] == b'\\' {
            continue;
        }
        let rest = &text[at + 1..];
        let rest = rest.strip_prefix('{').unwrap_or(rest);
        let n = name_len(rest);
        if n > 0 {
            out.insert(rest[..n].to_string());
        }
    }
    out
}

/// What a compose file says, found once per file.
#[derive(Debug, Default)]
pub struct Facts {
    /// Problems of the file itself: (span, message, label).
    pub problems: Vec<(Span, String, &'static str)>,
    /// Every interpolation in a value, with its span in the file.
    pub refs: Vec<(Interp, Span)>,
}

/// Parses a compose file and collects its interpolations and problems.
pub fn facts(text: &str) -> Facts {
    let mut f = Facts::default();
    let root = match yaml::parse(text) {
        Ok(n) => n,
        Err(e) => {
            let span = Span::new(e.offset, (e.offset + 1).min(text.len()).max(e.offset));
            f.problems.push((span, format!("invalid compose YAML: {}", e.message), "here"));
            return f;
        }
    };
    let services = match &root.kind {
        Kind::Map(pairs) => {
            pairs.iter().find(|(k, _)| matches!(&k.kind, Kind::Scalar { text, .. } if text == "services"))
        }
        _ => None,
    };
    if !services.is_some_and(|(_, v)| matches!(v.kind, Kind::Map(_))) {
        let span = services.map_or(Span::new(0, 0), |(k, _)| k.span);
        f.problems.push((span, "a docker-compose file needs a `services:` mapping".into(), "no services"));
    }
    let mut cursor = 0;
    walk(text, &root, &mut f, &mut cursor);
    f
}

fn walk(src: &str, node: &Node, f: &mut Facts, cursor: &mut usize) {
    match &node.kind {
        Kind::Scalar { text, .. } => {
            if !text.contains('$') {
                return;
            }
            let (refs, errors) = interpolations(text);
            let at = |r: &Range<usize>, cursor: &mut usize| locate(src, node.span, text, r, cursor);
            for e in errors {
                let span = at(&e.range, cursor);
                f.problems.push((span, e.message, "invalid interpolation"));
            }
            for r in refs {
                let span = at(&r.range, cursor);
                f.refs.push((r, span));
            }
        }
        Kind::Seq(items) => items.iter().for_each(|n| walk(src, n, f, cursor)),
        Kind::Map(pairs) => {
            let mut seen = BTreeSet::new();
            for (k, v) in pairs {
                // Keys are not interpolated; a key written twice is an error for docker
                // compose (Go's yaml: "mapping key already defined").
                if let Kind::Scalar { text, .. } = &k.kind
                    && text != "<<"
                    && !seen.insert(text.as_str())
                {
                    f.problems.push((k.span, format!("duplicate key `{text}`"), "defined again here"));
                }
                walk(src, v, f, cursor);
            }
        }
    }
}

/// Where an interpolation is in the file: its text found from the scalar's start (quoted and
/// block scalars are not the text as written), else the scalar's start.
fn locate(src: &str, span: Span, text: &str, r: &Range<usize>, cursor: &mut usize) -> Span {
    let needle = &text[r.clone()];
    let from = span.start.max((*cursor).min(src.len()));
    let from = if from > span.start + text.len() * 2 + 4096 { span.start } else { from };
    let window_end = (span.start + text.len() * 2 + 4096).min(src.len());
    match src.get(from..window_end).and_then(|w| w.find(needle)) {
        Some(i) => {
            *cursor = from + i + needle.len();
            Span::new(from + i, from + i + needle.len())
        }
        None => Span::new(span.start, span.end.max(span.start)),
    }
}

/// Keys of the platform, never reported as unused or missing: the platform reads
/// `DSTACK_DOCKER_*`, `DSTACK_AWS_*`, `DSTACK_AUTHORIZED_KEYS` from the env (reference §7) and
/// provides `DSTACK_APP_ID` and `DSTACK_GATEWAY_DOMAIN` to compose files (Phala's networking
/// docs). UNVERIFIED beyond those names: the whole `DSTACK_` prefix is taken as the platform's.
pub fn platform_key(name: &str) -> bool {
    name.starts_with("DSTACK_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<(String, Need, String)> {
        let (refs, errs) = interpolations(s);
        assert!(errs.is_empty(), "{s}: {errs:?}");
        refs.into_iter().map(|r| (r.name, r.need, s[r.range].to_string())).collect()
    }

    #[test]
    fn docker_compose_interpolation_forms() {
        use Need::*;
        type Found<'a> = &'a [(&'a str, Need, &'a str)];
        let cases: &[(&str, Found)] = &[
            ("$VAR", &[("VAR", Plain, "$VAR")]),
            ("${VAR}", &[("VAR", Plain, "${VAR}")]),
            ("a-${VAR:-d}-b", &[("VAR", Default, "${VAR:-d}")]),
            ("${VAR-d}", &[("VAR", Default, "${VAR-d}")]),
            ("${VAR:?need it}", &[("VAR", RequiredNonEmpty, "${VAR:?need it}")]),
            ("${VAR?e}", &[("VAR", Required, "${VAR?e}")]),
            ("${VAR:+x}", &[("VAR", Alternative, "${VAR:+x}")]),
            ("${VAR+x}", &[("VAR", Alternative, "${VAR+x}")]),
            ("$$VAR and $${VAR}", &[]),
            ("$$$VAR", &[("VAR", Plain, "$VAR")]),
            ("$1 $ $( $-", &[]),
            ("cost: 5$", &[]),
            ("$a_b9.c", &[("a_b9", Plain, "$a_b9")]),
            ("${A:-${B:?no b}}", &[("A", Default, "${A:-${B:?no b}}"), ("B", RequiredNonEmpty, "${B:?no b}")]),
            ("${A:-x}${B}", &[("A", Default, "${A:-x}"), ("B", Plain, "${B}")]),
            ("${A:-{}}", &[("A", Default, "${A:-{}")]),
            ("ünïcode $X", &[("X", Plain, "$X")]),
        ];
        for (s, want) in cases {
            let want: Vec<(String, Need, String)> =
                want.iter().map(|(n, k, t)| (n.to_string(), *k, t.to_string())).collect();
            assert_eq!(names(s), want, "{s}");
        }
    }

    #[test]
    fn refused_interpolations() {
        for (s, at) in
            [("${}", 0..3), ("x ${1A}", 2..7), ("${VAR/a/b}", 0..10), ("${VAR:0:2}", 0..10), ("a ${VAR", 2..7)]
        {
            let (_, errs) = interpolations(s);
            assert_eq!(errs.len(), 1, "{s}");
            assert_eq!(errs[0].range, at, "{s}");
        }
    }

    #[test]
    fn script_variables() {
        let vars = script_vars("#!/bin/sh\necho $A ${B:-x} \\$C $$ ${D}\nx=$1\n");
        assert_eq!(vars.into_iter().collect::<Vec<_>>(), ["A", "B", "D"]);
    }

    #[test]
    fn facts_locate_each_use_and_skip_keys() {
        let text = "services:\n  web:\n    image: \"x:${TAG}\"\n    environment:\n      $KEY: ${A:?need}\n      B: |\n        run ${B} and $A\n";
        let f = facts(text);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let got: Vec<(&str, &str)> = f.refs.iter().map(|(r, s)| (r.name.as_str(), &text[s.start..s.end])).collect();
        assert_eq!(got, [("TAG", "${TAG}"), ("A", "${A:?need}"), ("B", "${B}"), ("A", "$A")]);
    }

    #[test]
    fn facts_report_file_problems() {
        for (text, want) in [
            ("volumes: {}\n", "a docker-compose file needs a `services:` mapping"),
            ("services: [a]\n", "a docker-compose file needs a `services:` mapping"),
            ("services:\n  web: {}\n  web: {}\n", "duplicate key `web`"),
            ("services:\n  web:\n    image: ${X/y}\n", "docker compose cannot interpolate `${X/y}`"),
            ("services:\n  web: [unclosed\n", "invalid compose YAML"),
        ] {
            let f = facts(text);
            assert!(f.problems.iter().any(|(_, m, _)| m.starts_with(want)), "{text}: {:?}", f.problems);
        }
    }
}
