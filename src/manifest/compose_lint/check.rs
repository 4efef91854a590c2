//! Running the lint over every CVM's use of a compose file: each distinct file is parsed once
//! (spread over threads when there are many), and findings are gathered by kind and subject
//! across the CVMs that share them, so one problem of one file is one diagnostic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::super::diag::{Diagnostic, Source};
use super::super::files::{COMPOSE_BYTES, human_bytes};
use super::super::yaml::Span;
use super::report::diagnostic;
use super::{Facts, Interp, Need, facts, platform_key, script_vars};

/// One CVM's use of a compose file, as the loader read it.
pub(in crate::manifest) struct Use {
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

pub(in crate::manifest) struct EnvKey {
    pub name: String,
    pub key_span: Span,
    pub value_span: Span,
    /// The value when it is known at load time (no CVM, data or secret reference).
    pub literal: Option<String>,
}

/// The compose file is shown in diagnostics only when it is named as YAML: a `compose:` that
/// points at some other file must not print a line of it.
fn quotable(path: &str) -> bool {
    path.ends_with(".yml") || path.ends_with(".yaml")
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub(super) enum FindingKind {
    File,
    Size,
    MissingRequired,
    EmptyRequired,
    Missing,
    Unused,
}

/// Findings of one kind about one thing, gathered over the CVMs that share it.
pub(super) struct Group {
    pub at: usize,
    pub order: usize,
    pub kind: FindingKind,
    /// The file the finding is about, its source and the finding's span there.
    pub compose: Arc<Source>,
    pub span: Span,
    pub message: String,
    pub label: &'static str,
    pub name: String,
    /// (CVM, span in the manifest) for each CVM it applies to.
    pub members: Vec<(String, Span)>,
    /// The env keys of the first CVM, for did-you-mean hints.
    pub keys: Vec<String>,
    /// Names the compose file and script use without a key, for did-you-mean on unused keys.
    pub wanted: Vec<String>,
}

/// How many CVMs a shared finding names before "and N more".
pub(super) const SHOWN: usize = 3;

/// Findings gathered by kind and subject (file, name, place), each with the CVMs it applies to.
#[derive(Default)]
struct Groups {
    list: Vec<Group>,
    by_key: BTreeMap<(FindingKind, usize, String, usize), usize>,
}

impl Groups {
    /// Adds `member` to the group of `key`, made by `make` if it is the first.
    fn add(&mut self, key: (FindingKind, usize, String, usize), member: (String, Span), make: impl FnOnce() -> Group) {
        match self.by_key.get(&key) {
            Some(&g) => self.list[g].members.push(member),
            None => {
                let mut g = make();
                g.order = self.list.len();
                g.members.push(member);
                self.by_key.insert(key, self.list.len());
                self.list.push(g);
            }
        }
    }
}

/// Makes a group's finding for one use: (kind, span in the file, message, label, name).
type MakeGroup<'a> = dyn Fn(FindingKind, Span, String, &'static str, &str) -> Group + 'a;

/// What the lint found: each diagnostic with the index it belongs at, and the env values a
/// compose file requires non-empty (`${VAR:?…}`) that are known only at plan time (secrets),
/// as (CVM key, env key, the value's span), for the plan to check once they are read.
pub(in crate::manifest) struct Findings {
    pub diagnostics: Vec<(usize, Diagnostic)>,
    pub required_later: Vec<(String, String, Span)>,
}

/// Runs the lint over every use. `base` is where paths are shown relative to.
pub(in crate::manifest) fn check(manifest: &Arc<Source>, base: Option<&std::path::Path>, uses: &[Use]) -> Findings {
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
                let display = super::super::load::display_path(&u.compose_full, base);
                Source::with_quote(&u.compose_full, display, u.compose.to_string(), quotable(&u.compose_path))
            })
            .clone()
    };
    let mut script_cache: HashMap<&str, BTreeSet<String>> = HashMap::new();
    let mut groups = Groups::default();
    let mut required_later = Vec::new();
    for u in uses {
        let fi = index[&u.compose_full];
        let f = &all_facts[fi];
        let make = |kind, span, message: String, label, name: &str| Group {
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
        file_findings(&mut groups, u, fi, f, &make);
        if f.problems.iter().any(|(_, m, _)| m.starts_with("invalid compose YAML")) {
            continue;
        }
        let script_vars = match &u.script {
            Some((p, text)) => script_cache.entry(p.as_str()).or_insert_with(|| script_vars(text)).clone(),
            None => BTreeSet::new(),
        };
        env_findings(&mut groups, u, fi, f, &script_vars, &make);
        for (name, n) in name_uses(&f.refs) {
            if let (Some(_), Some(k)) = (n.non_empty, u.env.iter().find(|k| k.name == name && k.literal.is_none())) {
                required_later.push((u.cvm.clone(), name, k.value_span));
            }
        }
    }
    let mut out: Vec<(usize, usize, Diagnostic)> =
        groups.list.into_iter().map(|g| (g.at, g.order, diagnostic(manifest, g))).collect();
    out.sort_by_key(|(at, order, _)| (*at, *order));
    Findings { diagnostics: out.into_iter().map(|(at, _, d)| (at, d)).collect(), required_later }
}

/// The file's own problems, and its size with the pre-launch script.
fn file_findings(groups: &mut Groups, u: &Use, fi: usize, f: &Facts, make: &MakeGroup) {
    let member = (u.cvm.clone(), u.compose_span);
    for (i, (span, message, label)) in f.problems.iter().enumerate() {
        let key = (FindingKind::File, fi, String::new(), i);
        groups.add(key, member.clone(), || make(FindingKind::File, *span, message.clone(), label, ""));
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
        groups.add((FindingKind::Size, fi, script, 0), member, || {
            make(FindingKind::Size, Span::new(0, 0), message, "", "")
        });
    }
}

/// The file's variables against the CVM's env keys (missing, required, empty), and env keys
/// neither the file nor the script uses.
fn env_findings(groups: &mut Groups, u: &Use, fi: usize, f: &Facts, script_vars: &BTreeSet<String>, make: &MakeGroup) {
    let keys: BTreeMap<&str, &EnvKey> = u.env.iter().map(|k| (k.name.as_str(), k)).collect();
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
        groups.add(gkey, (u.cvm.clone(), at_manifest), || make(kind, span, String::new(), label, name));
    }
    for k in &u.env {
        let used = uses.iter().any(|(n, _)| *n == k.name) || script_vars.contains(&k.name);
        if used || platform_key(&k.name) || u.ignore.contains(&k.name) {
            continue;
        }
        let gkey = (FindingKind::Unused, fi, k.name.clone(), 0);
        groups.add(gkey, (u.cvm.clone(), k.key_span), || {
            let mut g = make(FindingKind::Unused, k.key_span, String::new(), "not used", &k.name);
            g.wanted = wanted.clone();
            g
        });
    }
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
