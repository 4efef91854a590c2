//! Walking the YAML tree: the entries of a mapping (non-mappings, duplicate and unknown keys
//! reported, with did-you-mean), keys as text, and where each key of a mapping is.

use std::collections::{BTreeMap, BTreeSet};

use super::super::diag::did_you_mean;
use super::super::yaml::{Kind, Node, Span};
use super::Loader;

impl Loader<'_> {
    pub(super) fn key_text<'n>(&mut self, key: &'n Node) -> Option<&'n str> {
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
    pub(super) fn entries<'n>(
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

    pub(super) fn plain_str<'n>(&mut self, node: &'n Node) -> Option<&'n str> {
        match &node.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => {
                let t = node.type_name();
                self.err(node.span, format!("expected a string, found {t}")).set_label("expected a string");
                None
            }
        }
    }
}

pub(super) fn key_spans(node: Option<&Node>) -> BTreeMap<&str, Span> {
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
