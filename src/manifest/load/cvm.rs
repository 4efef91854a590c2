//! `cvms:`: each CVM's key, name, files, attributes, env (`env:` over `env_file:`), dependencies and `lifecycle`; the checks across
//! CVMs (names differ); the dependencies `${cvm.X...}` references imply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use super::super::compose_lint::EnvKey;
use super::super::diag::did_you_mean;
use super::super::expr::Ref;
use super::super::yaml::{Kind, Node, Span};
use super::super::{CvmConfig, FileRef, HealthCheck, Kms, UpdatePolicy};
use super::compose::LintInput;
use super::{Allow, Loader};
use crate::model::schema::Type;
use crate::model::{Attr, CvmAttrs, SCHEMA};

/// A CVM's keys: its attributes (the schema's, `crate::model::SCHEMA`), then the rest.
/// The keys a CVM may have: the attribute schema's, then the manifest's own.
pub fn cvm_keys() -> &'static [&'static str] {
    &CVM_KEYS
}

static CVM_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    SCHEMA
        .iter()
        .map(|s| s.key)
        .chain(["env_file", "depends_on", "lint", "lifecycle", "replicas", "nodes", "update_policy", "health"])
        .collect()
});

/// The most instances one CVM entry may have.
const MAX_REPLICAS: u32 = 100;

/// A CVM with nothing read yet but its key.
fn new_cvm(key: &str, span: Span) -> CvmConfig {
    CvmConfig {
        key: key.to_string(),
        name: key.to_string(),
        span,
        compose: FileRef { path: String::new(), content: String::new() },
        pre_launch_script: None,
        attrs: CvmAttrs::default(),
        kms: Kms::Phala,
        kms_signer: None,
        env: BTreeMap::new(),
        required_env: BTreeMap::new(),
        stopped: false,
        spans: BTreeMap::new(),
        depends_on: Vec::new(),
        data_fields: BTreeMap::new(),
        prevent_destroy: false,
        replicas: 1,
        nodes: Vec::new(),
        update_policy: Default::default(),
        health: None,
    }
}

impl Loader<'_> {
    /// Two CVMs may not share a name, compared as `model::name_key` says (without letter case).
    pub(super) fn check_names(&mut self, names: &[(String, Span, String)]) {
        let mut by_name: BTreeMap<String, Vec<&(String, Span, String)>> = BTreeMap::new();
        for n in names {
            by_name.entry(crate::model::name_key(&n.0)).or_default().push(n);
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
            d.also.push(super::super::diag::Related {
                source: src.clone(),
                span: first.1,
                label: format!("cvm.{}'s name", first.2),
            });
            for other in group.iter().skip(2).take(2) {
                d.also.push(super::super::diag::Related {
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

    /// One CVM, and where its name is written (the key, when `name:` is not). Returned even
    /// after errors, so later checks still run and report all at once.
    pub(super) fn cvm(&mut self, key: &str, knode: &Node, spec: &Node) -> Option<(CvmConfig, Span)> {
        let what = format!("cvm `{key}`");
        let who = format!("cvm.{key}");
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || key.is_empty() {
            self.err(knode.span, format!("`{key}` is not a valid CVM key"))
                .add_hint("use letters, digits, `-` and `_`");
        }
        let fields = self.entries(spec, &what, Some(&CVM_KEYS));
        // A key with nothing under it (`web:` and a comment) is a CVM with no keys, reported as
        // such, never a CVM that vanishes (and whose CVM the plan would destroy).
        if !matches!(spec.kind, Kind::Map(_)) && !spec.is_null() {
            return None;
        }
        let mut c = new_cvm(key, knode.span);
        let mut name_span = knode.span;
        let mut compose_seen = false;
        let mut lint = LintInput::default();
        let (mut from_files, mut files_read) = (BTreeMap::new(), true);
        // An invalid `replicas` is reported once: no check of what goes with it cascades.
        let mut replicas_invalid = false;
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
                        lint.compose_at = Some((v.span, at));
                        c.compose = f;
                    }
                }
                "pre_launch_script" if !v.is_null() => {
                    c.pre_launch_script = self.file(v, "pre-launch script", &who);
                }
                "env" => {
                    lint.env_span = Some(knode2.span);
                    lint.env = self.env(&mut c, v, &what);
                }
                "env_file" => (from_files, files_read) = self.env_files(v, &w, &who),
                "depends_on" if !v.is_null() => self.depends_on(&mut c, v, &what),
                "lint" => lint.ignore = self.lint(v, &what),
                "lifecycle" => c.prevent_destroy = self.lifecycle(v, &what),
                "replicas" => {
                    let at = self.diags.len();
                    c.replicas = self.number(v, &w, 1, MAX_REPLICAS.into()).unwrap_or(1);
                    replicas_invalid = self.diags.len() > at;
                }
                "nodes" if !v.is_null() => c.nodes = self.nodes(v, &w),
                "update_policy" => c.update_policy = self.update_policy(v, &what),
                "health" if !v.is_null() => c.health = self.health(v, &what),
                _ => self.cvm_attribute(&mut c, k, v, &w),
            }
        }
        self.merge_env_files(&mut c, from_files, files_read, &mut lint, &who);
        if !compose_seen {
            self.err(knode.span, format!("{what} has no `compose` file"))
                .set_label("missing `compose`")
                .add_hint("add `compose: docker-compose.yml` (a path relative to the manifest)");
        }
        if c.attrs.node.is_some() && !c.nodes.is_empty() {
            let at = c.spans.get("nodes").copied().unwrap_or(knode.span);
            self.err(at, format!("{what} sets both `node` and `nodes`"))
                .set_label("`node` is set too")
                .add_hint("keep `node` to put every instance on one node, or `nodes` to spread them");
        }
        self.use_compose(&c, lint);
        self.check_cvm(&c, knode.span, name_span, &what, replicas_invalid);
        Some((c, name_span))
    }

    /// One attribute of a CVM: the one place where a CVM attribute's manifest key is read
    /// into [`CvmConfig`] (`name`, the files, `env` and `depends_on` are read in
    /// [`Loader::cvm`], as they are more than a value). `what` names the field in messages.
    /// Keys that are not attributes, and null where null leaves an attribute unset, are left
    /// alone.
    pub(super) fn cvm_attribute(&mut self, c: &mut CvmConfig, key: &str, v: &Node, what: &str) {
        let Some(attr) = Attr::from_key(key) else { return };
        match attr {
            // Read by readers of their own: an image may name a data source, a KMS may be
            // on chain, the run state is a word.
            Attr::Image if !v.is_null() => self.image_field(c, v, what),
            Attr::Kms if !v.is_null() => {
                (c.kms, c.kms_signer) = self.kms(v).unwrap_or((Kms::Phala, None));
            }
            Attr::Power => {
                if let Some(stopped) = self.power(v, what) {
                    c.stopped = stopped;
                }
            }
            // Every other attribute is a plain value, read as the schema types it.
            _ => self.attr_value(&mut c.attrs, attr, v, what),
        }
    }

    /// An attribute written as a plain value (a number, a flag, a name), read as the schema
    /// types it: numbers within the schema's range. Attributes of other types are read in
    /// [`Loader::cvm`] or by their own readers ([`Loader::cvm_attribute`]).
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

    /// `power: running|stopped`: whether the CVM is kept stopped.
    fn power(&mut self, v: &Node, what: &str) -> Option<bool> {
        match self.literal_string(v, what)?.as_str() {
            "running" => Some(false),
            "stopped" => Some(true),
            other => {
                let hint = did_you_mean(other, ["running", "stopped"])
                    .map_or("`power` is `running` (the default) or `stopped`".into(), |s| {
                        format!("did you mean `{s}`?")
                    });
                self.err(v.span, format!("{what} must be `running` or `stopped`, found `{other}`"))
                    .set_label("unknown run state")
                    .hints
                    .push(hint);
                None
            }
        }
    }

    /// `env:`, into the CVM; returns the keys as the compose lint needs them.
    fn env(&mut self, c: &mut CvmConfig, v: &Node, what: &str) -> Vec<EnvKey> {
        let mut keys = Vec::new();
        for (ek, eknode, ev) in self.entries(v, &format!("{what}: `env`"), None) {
            if !is_env_name(ek) {
                self.err(eknode.span, format!("`{ek}` is not a valid environment variable name"))
                    .add_hint("use letters, digits and `_`, not starting with a digit");
                continue;
            }
            let allow = Allow { cvm: true, data: true, secret: true, path: false };
            if let Some(t) = self.string(ev, &format!("env `{ek}`"), allow) {
                keys.push(EnvKey {
                    name: ek.to_string(),
                    key_span: eknode.span,
                    value_span: ev.span,
                    literal: t.as_literal(),
                });
                c.env.insert(ek.to_string(), t);
            }
        }
        keys
    }

    /// `depends_on:`: CVM keys, each declared.
    fn depends_on(&mut self, c: &mut CvmConfig, v: &Node, what: &str) {
        let Kind::Seq(items) = &v.kind else {
            self.err(v.span, "depends_on must be a list of CVM names").set_label("expected a list");
            return;
        };
        for it in items {
            if let Some(s) = self.literal_string(it, "depends_on entry") {
                if self.cvm_keys.contains(&s) {
                    c.depends_on.push(s);
                } else {
                    self.unknown_cvm(it.span, &s, &format!("{what} depends on `{s}`, which is not declared"));
                }
            }
        }
    }

    /// The checks of a CVM read whole: a valid name (with a suggestion), one way of sizing.
    /// `replicas_invalid`: `replicas` was reported already, so nothing is checked against it.
    fn check_cvm(&mut self, c: &CvmConfig, key_span: Span, name_span: Span, what: &str, replicas_invalid: bool) {
        if !valid_cvm_name(&c.name) {
            let d = self.err(name_span, format!("`{}` is not a valid CVM name", c.name)).set_label("invalid name");
            d.add_hint(
                "Phala Cloud names are 5-63 characters: a letter first, then letters, digits and single hyphens, not ending in a hyphen",
            );
            if let Some(s) = suggest_name(&c.name) {
                d.add_hint(format!(
                    "e.g. `name: {s}`{}",
                    if c.name == c.key { " (the key may stay as it is)" } else { "" }
                ));
            }
        }
        if c.update_policy.max_surge > 0 && c.replicas < 2 && !replicas_invalid {
            let at = c.spans.get("update_policy").copied().unwrap_or(key_span);
            self.err(at, format!("{what}: `update_policy.max_surge` needs `replicas` of 2 or more"))
                .set_label("a CVM of one replica has no roll")
                .add_hint("set `replicas: 2` or more, or leave `max_surge` out");
        }
        if c.attrs.instance_type.is_some() && (c.attrs.vcpu.is_some() || c.attrs.memory.is_some()) {
            self.err(key_span, format!("{what} sets both `instance_type` and `vcpu`/`memory`"))
                .set_label("conflicting sizes")
                .add_hint("choose an instance type, or size the CVM with vcpu and memory");
        }
    }

    /// `lifecycle: {prevent_destroy: BOOL}`: whether a plan may destroy or replace the CVM.
    fn lifecycle(&mut self, node: &Node, what: &str) -> bool {
        let mut prevent = false;
        for (k, _, v) in self.entries(node, &format!("{what}: `lifecycle`"), Some(&["prevent_destroy"])) {
            if k == "prevent_destroy" {
                prevent = self.boolean(v, "lifecycle.prevent_destroy").unwrap_or(false);
            }
        }
        prevent
    }

    /// `nodes: [NAME, ...]`: node names, instances spread over them in turn.
    fn nodes(&mut self, v: &Node, what: &str) -> Vec<String> {
        let Kind::Seq(items) = &v.kind else {
            self.err(v.span, format!("{what} must be a list of node names")).set_label("expected a list");
            return vec![];
        };
        if items.is_empty() {
            self.err(v.span, format!("{what} is an empty list"))
                .set_label("no node named")
                .add_hint("name at least one node, or leave `nodes` out to let the API place the instances");
        }
        let mut names = Vec::new();
        for it in items {
            let Some(name) = self.literal_string(it, "nodes entry") else { continue };
            if name.trim().is_empty() {
                self.err(it.span, format!("{what}: a node name is empty")).set_label("empty node name");
                continue;
            }
            names.push(name);
        }
        names
    }

    /// `update_policy: {max_unavailable, max_surge, pause_on_failure}`. As Kubernetes refuses
    /// it, both 0 is an error: a roll could never start. A value reported as invalid is not
    /// checked against the other again (no second error from its default).
    fn update_policy(&mut self, node: &Node, what: &str) -> UpdatePolicy {
        let mut p = UpdatePolicy::default();
        let keys = ["max_unavailable", "max_surge", "pause_on_failure"];
        let mut unavailable_at = None;
        let reported = self.diags.len();
        for (k, _, v) in self.entries(node, &format!("{what}: `update_policy`"), Some(&keys)) {
            let w = format!("update_policy.{k}");
            let max = MAX_REPLICAS.into();
            match k {
                "max_unavailable" => {
                    unavailable_at = Some(v.span);
                    p.max_unavailable = self.number(v, &w, 0, max).unwrap_or(1);
                }
                "max_surge" => p.max_surge = self.number(v, &w, 0, max).unwrap_or(0),
                "pause_on_failure" => p.pause_on_failure = self.boolean(v, &w).unwrap_or(true),
                _ => {}
            }
        }
        if p.max_unavailable == 0 && p.max_surge == 0 && self.diags.len() == reported {
            self.err(unavailable_at.unwrap_or(node.span), "update_policy.max_unavailable and max_surge are both 0")
                .set_label("no instance could ever be updated")
                .add_hint("set `max_surge: 1` to update with no instance down, or `max_unavailable: 1`");
        }
        p
    }

    /// `health: {url, expect_status, timeout}`.
    fn health(&mut self, node: &Node, what: &str) -> Option<HealthCheck> {
        let mut h = HealthCheck { url: String::new(), expect_status: 200, timeout: 60 };
        let mut url_seen = false;
        for (k, _, v) in self.entries(node, &format!("{what}: `health`"), Some(&["url", "expect_status", "timeout"])) {
            let w = format!("health.{k}");
            match k {
                "url" => {
                    url_seen = true;
                    let Some(u) = self.literal_string(v, &w) else { continue };
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        self.err(v.span, format!("{w} must be an http:// or https:// URL")).set_label("not a URL");
                    }
                    if let Err(bad) = health_placeholders(&u) {
                        self.err(v.span, format!("{w}: {bad}")).set_label("bad placeholder").add_hint(format!(
                            "placeholders are {}",
                            HEALTH_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                        ));
                    }
                    h.url = u;
                }
                "expect_status" => h.expect_status = self.number(v, &w, 100, 599).map_or(200, |n| n as u16),
                "timeout" => h.timeout = self.number(v, &w, 1, 3600).unwrap_or(60),
                _ => {}
            }
        }
        if !url_seen {
            self.err(node.span, format!("{what}: `health` has no `url`")).set_label("missing `url`");
            return None;
        }
        Some(h)
    }

    /// `lint: {ignore: [NAME, ...]}`: env keys and compose variables whose warnings are
    /// silenced on purpose.
    pub(super) fn lint(&mut self, node: &Node, what: &str) -> BTreeSet<String> {
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
}

/// Adds the dependencies `${cvm.X...}` references imply to the explicit `depends_on`.
pub(super) fn imply_dependencies(cvms: &mut BTreeMap<String, CvmConfig>) {
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

/// A valid CVM name close to `name` (for a hint), if one can be made.
pub(super) fn suggest_name(name: &str) -> Option<String> {
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

pub(super) fn is_env_name(s: &str) -> bool {
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

/// The placeholders a `health.url` may hold, each the checked instance's.
const HEALTH_PLACEHOLDERS: [&str; 4] = ["instance_id", "app_id", "vm_uuid", "index"];

/// Every `{` of a `health.url` opens one of [`HEALTH_PLACEHOLDERS`], closed by `}`; a `}`
/// closes one. The error says what is wrong.
fn health_placeholders(url: &str) -> Result<(), String> {
    let mut rest = url;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Err("a `}` closes no placeholder".into());
        }
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("the placeholder `{}` is not closed with `}}`", &rest[i..]));
        };
        let name = &after[..end];
        if !HEALTH_PLACEHOLDERS.contains(&name) {
            return Err(format!("no placeholder `{{{name}}}`"));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}
