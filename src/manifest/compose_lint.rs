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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::diag::{Diagnostic, Source, did_you_mean};
use super::files::{COMPOSE_BYTES, human_bytes};
use super::yaml::{self, Kind, Node, Span};

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

/// One CVM's use of a compose file, as the loader read it.
pub(super) struct Use {
    /// The CVM's key.
    pub cvm: String,
    /// Where in the loader's diagnostics this CVM's findings go.
    pub at: usize,
    /// The compose file as written and joined to the manifest's directory; its text; the
    /// `compose:` value.
    pub compose_path: String,
    pub compose_full: PathBuf,
    pub compose: Arc<String>,
    pub compose_span: Span,
    /// The pre-launch script (as written) and its text.
    pub script: Option<(String, Arc<String>)>,
    /// The `env:` key, if written.
    pub env_span: Option<Span>,
    pub env: Vec<EnvKey>,
    /// Names whose warnings the CVM silences (`lint: {ignore: [...]}`).
    pub ignore: BTreeSet<String>,
}

pub(super) struct EnvKey {
    pub name: String,
    pub key_span: Span,
    pub value_span: Span,
    /// The value when it is known at load time (no CVM, data or secret reference).
    pub literal: Option<String>,
}

/// Keys of the platform, never reported as unused or missing: the platform reads
/// `DSTACK_DOCKER_*`, `DSTACK_AWS_*`, `DSTACK_AUTHORIZED_KEYS` from the env (reference §7) and
/// provides `DSTACK_APP_ID` and `DSTACK_GATEWAY_DOMAIN` to compose files (Phala's networking
/// docs). UNVERIFIED beyond those names: the whole `DSTACK_` prefix is taken as the platform's.
pub fn platform_key(name: &str) -> bool {
    name.starts_with("DSTACK_")
}

/// The compose file is shown in diagnostics only when it is named as YAML: a `compose:` that
/// points at some other file must not print a line of it.
fn quotable(path: &str) -> bool {
    path.ends_with(".yml") || path.ends_with(".yaml")
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum FindingKind {
    File,
    Size,
    MissingRequired,
    EmptyRequired,
    Missing,
    Unused,
}

/// Findings of one kind about one thing, gathered over the CVMs that share it.
struct Group {
    at: usize,
    order: usize,
    kind: FindingKind,
    /// The file the finding is about, its source and the finding's span there.
    compose: Arc<Source>,
    span: Span,
    message: String,
    label: &'static str,
    name: String,
    /// (CVM, span in the manifest) for each CVM it applies to.
    members: Vec<(String, Span)>,
    /// The env keys of the first CVM, for did-you-mean hints.
    keys: Vec<String>,
    /// Names the compose file and script use without a key, for did-you-mean on unused keys.
    wanted: Vec<String>,
}

/// How many CVMs a shared finding names before "and N more".
const SHOWN: usize = 3;

/// Runs the lint over every use, returning each diagnostic with the index it belongs at.
/// `base` is where paths are shown relative to.
pub(super) fn check(manifest: &Arc<Source>, base: Option<&std::path::Path>, uses: &[Use]) -> Vec<(usize, Diagnostic)> {
    // Each distinct compose file is parsed once, spread over the cores when there are many.
    let mut distinct: Vec<&Use> = Vec::new();
    let mut index: HashMap<&PathBuf, usize> = HashMap::new();
    for u in uses {
        index.entry(&u.compose_full).or_insert_with(|| {
            distinct.push(u);
            distinct.len() - 1
        });
    }
    let all_facts = parallel_facts(&distinct);
    // A file's source (a copy of its text) is made only if a finding needs it.
    let sources: Vec<std::cell::OnceCell<Arc<Source>>> = distinct.iter().map(|_| Default::default()).collect();
    let source = |fi: usize| {
        sources[fi]
            .get_or_init(|| {
                let u = distinct[fi];
                let display = super::load::display_path(&u.compose_full, base);
                Source::with_quote(&u.compose_full, display, u.compose.to_string(), quotable(&u.compose_path))
            })
            .clone()
    };
    let mut script_cache: HashMap<&str, BTreeSet<String>> = HashMap::new();

    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: BTreeMap<(FindingKind, usize, String, usize), usize> = BTreeMap::new();
    let mut add =
        |groups: &mut Vec<Group>, key: (FindingKind, usize, String, usize), member, make: &dyn Fn() -> Group| {
            match by_key.get(&key) {
                Some(&g) => groups[g].members.push(member),
                None => {
                    let mut g = make();
                    g.order = groups.len();
                    g.members.push(member);
                    by_key.insert(key, groups.len());
                    groups.push(g);
                }
            }
        };

    for u in uses {
        let fi = index[&u.compose_full];
        let f = &all_facts[fi];
        let member = (u.cvm.clone(), u.compose_span);
        let base = |kind, span, message: String, label, name: &str| Group {
            at: u.at,
            order: 0,
            kind,
            compose: source(fi),
            span,
            message,
            label,
            name: name.to_string(),
            members: Vec::new(),
            keys: u.env.iter().map(|k| k.name.clone()).collect(),
            wanted: Vec::new(),
        };
        for (i, (span, message, label)) in f.problems.iter().enumerate() {
            let key = (FindingKind::File, fi, String::new(), i);
            add(&mut groups, key, member.clone(), &|| base(FindingKind::File, *span, message.clone(), label, ""));
        }
        let script_len = u.script.as_ref().map_or(0, |(_, t)| t.len());
        let total = (u.compose.len() + script_len) as u64;
        if total > COMPOSE_BYTES {
            let script = u.script.as_ref().map_or(String::new(), |(p, _)| p.clone());
            let message = format!(
                "the compose file{} {} together; the API accepts at most {}",
                if script.is_empty() { " is" } else { " and pre-launch script are" },
                human_bytes(total.div_ceil(1024) * 1024),
                human_bytes(COMPOSE_BYTES)
            );
            add(&mut groups, (FindingKind::Size, fi, script, 0), member.clone(), &|| {
                base(FindingKind::Size, Span::new(0, 0), message.clone(), "", "")
            });
        }
        if f.problems.iter().any(|(_, m, _)| m.starts_with("invalid compose YAML")) {
            continue;
        }
        let keys: BTreeMap<&str, &EnvKey> = u.env.iter().map(|k| (k.name.as_str(), k)).collect();
        let script_vars = match &u.script {
            Some((p, text)) => script_cache.entry(p.as_str()).or_insert_with(|| script_vars(text)).clone(),
            None => BTreeSet::new(),
        };
        let uses = name_uses(&f.refs);
        let mut wanted = Vec::new();
        for (name, n) in &uses {
            if platform_key(name) {
                continue;
            }
            let key = keys.get(name.as_str());
            let finding = match (key, n.required, n.plain) {
                (None, Some((span, _)), _) => {
                    wanted.push(name.clone());
                    Some((FindingKind::MissingRequired, span, "required here"))
                }
                (None, None, Some(span)) => {
                    wanted.push(name.clone());
                    (!u.ignore.contains(name)).then_some((FindingKind::Missing, span, "expands to nothing"))
                }
                (Some(k), _, _) if k.literal.as_deref() == Some("") => {
                    n.non_empty.map(|span| (FindingKind::EmptyRequired, span, "requires a value"))
                }
                _ => None,
            };
            let Some((kind, span, label)) = finding else { continue };
            let at_manifest = match (kind, key) {
                (FindingKind::EmptyRequired, Some(k)) => k.value_span,
                _ => u.env_span.unwrap_or(u.compose_span),
            };
            let gkey = (kind, fi, name.clone(), span.start);
            add(&mut groups, gkey, (u.cvm.clone(), at_manifest), &|| base(kind, span, String::new(), label, name));
        }
        for k in &u.env {
            let used = uses.iter().any(|(n, _)| *n == k.name) || script_vars.contains(&k.name);
            if used || platform_key(&k.name) || u.ignore.contains(&k.name) {
                continue;
            }
            let gkey = (FindingKind::Unused, fi, k.name.clone(), 0);
            add(&mut groups, gkey, (u.cvm.clone(), k.key_span), &|| {
                let mut g = base(FindingKind::Unused, k.key_span, String::new(), "not used", &k.name);
                g.wanted = wanted.clone();
                g
            });
        }
    }
    let mut out: Vec<(usize, usize, Diagnostic)> =
        groups.into_iter().map(|g| (g.at, g.order, diagnostic(manifest, g))).collect();
    out.sort_by_key(|(at, order, _)| (*at, *order));
    out.into_iter().map(|(at, _, d)| (at, d)).collect()
}

/// How a file uses one variable: its first required use, first `:?` use, first plain use.
#[derive(Default)]
struct NameUse {
    required: Option<(Span, Need)>,
    non_empty: Option<Span>,
    plain: Option<Span>,
}

/// Each variable's uses, in the order the file first uses them.
fn name_uses(refs: &[(Interp, Span)]) -> Vec<(String, NameUse)> {
    let mut out: Vec<(String, NameUse)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (r, span) in refs {
        let i = *index.entry(r.name.as_str()).or_insert_with(|| {
            out.push((r.name.clone(), NameUse::default()));
            out.len() - 1
        });
        let n = &mut out[i].1;
        match r.need {
            Need::Required | Need::RequiredNonEmpty => {
                n.required.get_or_insert((*span, r.need));
                if r.need == Need::RequiredNonEmpty {
                    n.non_empty.get_or_insert(*span);
                }
            }
            Need::Plain => {
                n.plain.get_or_insert(*span);
            }
            Need::Default | Need::Alternative => {}
        }
    }
    out
}

fn parallel_facts(distinct: &[&Use]) -> Vec<Facts> {
    let one = |u: &&Use| facts(&u.compose);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads < 2 || distinct.len() < 64 {
        return distinct.iter().map(one).collect();
    }
    std::thread::scope(|s| {
        let parts: Vec<_> = distinct
            .chunks(distinct.len().div_ceil(threads))
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("reading compose files does not panic")).collect()
    })
}

/// `cvm.a`, `cvm.a and cvm.b`, `cvm.a, cvm.b, cvm.c and 7 more`.
fn cvm_list(members: &[(String, Span)]) -> String {
    let names: Vec<String> = members.iter().take(SHOWN).map(|(c, _)| format!("cvm.{c}")).collect();
    let more = members.len().saturating_sub(SHOWN);
    match (names.len(), more) {
        (_, m) if m > 0 => format!("{} and {m} more", names.join(", ")),
        (1, _) => names[0].clone(),
        _ => {
            let (last, rest) = names.split_last().expect("at least one member");
            format!("{} and {last}", rest.join(", "))
        }
    }
}

fn diagnostic(manifest: &Arc<Source>, g: Group) -> Diagnostic {
    let who = cvm_list(&g.members);
    let many = g.members.len() > 1;
    let does = if many { "do" } else { "does" };
    let compose_text = &g.compose.text;
    // The interpolation as written, from a file that may be quoted; else just its name.
    let written = compose_text.get(g.span.start..g.span.end).filter(|w| g.compose.quote && w.contains('$'));
    let written = written.map_or_else(|| format!("${{{}}}", g.name), str::to_string);
    let also_members = |d: Diagnostic, label: &str| {
        g.members.iter().take(SHOWN).fold(d, |d, (c, span)| d.also(manifest, *span, format!("{label} cvm.{c}")))
    };
    let close_key = |keys: &[String]| did_you_mean(&g.name, keys.iter().map(String::as_str)).map(str::to_string);
    match g.kind {
        FindingKind::File => {
            let d = Diagnostic::error(&g.compose, g.span, g.message).label(g.label);
            let d = also_members(d, "the compose file of");
            if g.members.len() > SHOWN { d.hint(format!("the file is used by {who}")) } else { d }
        }
        FindingKind::Size => {
            let (c, span) = &g.members[0];
            let d = Diagnostic::error(manifest, *span, format!("cvm.{c}: {}", g.message)).label("too large");
            let d = g
                .members
                .iter()
                .skip(1)
                .take(SHOWN - 1)
                .fold(d, |d, (c, s)| d.also(manifest, *s, format!("also cvm.{c}")));
            let d = if many { d.hint(format!("the same files are used by {who}")) } else { d };
            d.hint("move data out of the compose file (images, volumes, configs fetched at start)")
        }
        FindingKind::MissingRequired => {
            let d = Diagnostic::error(
                &g.compose,
                g.span,
                format!("`{written}` requires env key `{}`, which {who} {does} not set", g.name),
            )
            .label(g.label);
            let d = also_members(d, &format!("no `{}` in the env of", g.name));
            let d = match close_key(&g.keys) {
                Some(k) => d.hint(format!("did you mean env key `{k}`? the names must match exactly")),
                None => d,
            };
            d.hint(format!(
                "add `{}: ...` under `env:`; without it docker compose stops inside the CVM (\"required variable {} is missing a value\")",
                g.name, g.name
            ))
        }
        FindingKind::EmptyRequired => {
            let (c, span) = &g.members[0];
            let d = Diagnostic::error(
                manifest,
                *span,
                format!("env `{}` of cvm.{c} is empty, but the compose file requires a value", g.name),
            )
            .label("empty value")
            .also(&g.compose, g.span, format!("`{written}` stops docker compose when empty"));
            let d = g
                .members
                .iter()
                .skip(1)
                .take(SHOWN - 1)
                .fold(d, |d, (c, s)| d.also(manifest, *s, format!("also empty in cvm.{c}")));
            let d = if many { d.hint(format!("empty in {who}")) } else { d };
            d.hint(format!(
                "give `{}` a value, or write `${{{}?...}}` in the compose file if empty is allowed",
                g.name, g.name
            ))
        }
        FindingKind::Missing => {
            let d = Diagnostic::warning(
                &g.compose,
                g.span,
                format!("`{written}` has no env key in {who}, so it expands to an empty string"),
            )
            .label(g.label);
            let d = also_members(d, &format!("no `{}` in the env of", g.name));
            let d = match close_key(&g.keys) {
                Some(k) => d.hint(format!("did you mean env key `{k}`? the names must match exactly")),
                None => d,
            };
            d.hint(format!(
                "add `{0}` under `env:`; or, if empty is intended, write `${{{0}:-}}` in the compose file, or add `{0}` to the CVM's `lint: {{ignore: [...]}}`",
                g.name
            ))
        }
        FindingKind::Unused => {
            let (c, span) = &g.members[0];
            let d = Diagnostic::warning(
                manifest,
                *span,
                format!(
                    "env key `{}` of cvm.{c} is used by neither its compose file nor its pre-launch script",
                    g.name
                ),
            )
            .label(g.label);
            let d = g
                .members
                .iter()
                .skip(1)
                .take(SHOWN - 1)
                .fold(d, |d, (c, s)| d.also(manifest, *s, format!("also unused in cvm.{c}")));
            let d = if many { d.hint(format!("unused in {who}")) } else { d };
            let d = match close_key(&g.wanted) {
                Some(w) => d.hint(format!("did you mean `{w}`? the compose file uses `${{{w}}}`")),
                None => d,
            };
            d.hint(format!(
                "a value reaches a container only through `${{{0}}}` in the compose file (or the pre-launch script); to keep it anyway, add `{0}` to the CVM's `lint: {{ignore: [...]}}`",
                g.name
            ))
        }
    }
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
