//! The desired attributes of a CVM: the manifest's, in the API's normal form, with references
//! resolved as far as they can be while planning (a CVM the plan creates has no app id yet)
//! and secret values as digests.

use std::collections::BTreeMap;

use super::Action;
use super::digests::SecretsSeen;
use crate::manifest::{CvmConfig, Ref, Template};
use crate::model::{Address, CvmAttrs, EnvVal, Power, ResourceRecord};
use crate::secrets::{Check, Digester, Made, SecretValues};

/// What references can be resolved against while planning: the current records, what the
/// plan does to each CVM so far, and the names the CVMs it changes will have.
pub(super) struct Known<'a> {
    pub current: &'a BTreeMap<Address, ResourceRecord>,
    pub actions: BTreeMap<Address, Action>,
    pub names: BTreeMap<Address, String>,
}

impl Known<'_> {
    /// Records what the plan does to `c`'s CVM, and the name it will have.
    pub(super) fn record(&mut self, c: &super::Change) {
        self.actions.insert(c.address.clone(), c.action);
        if let Some(a) = &c.after {
            self.names.insert(c.address.clone(), a.name.clone());
        }
    }
}

/// The value of a CVM attribute other resources may reference, if known before apply. A
/// CVM's name is known whatever the plan does to it: the manifest's.
pub(super) fn cvm_attr(target: &str, attr: &str, known: &Known) -> Option<String> {
    // A replicated CVM's references are its instance 0's (the app id and compose hash are the
    // app's; ids of one instance are instance 0's).
    let one = Address::cvm(target);
    let first = Address::instance(target, 0);
    let addr = if known.current.contains_key(&one) || known.actions.contains_key(&one) { one } else { first };
    if attr == "name"
        && let Some(n) = known.names.get(&addr)
    {
        return Some(n.clone());
    }
    match known.actions.get(&addr) {
        Some(Action::Create | Action::Replace | Action::Delete) => return None,
        Some(Action::Update) if attr == "compose_hash" => return None,
        _ => {}
    }
    known.current.get(&addr)?.reference(attr)
}

/// Resolves a template whose references are all known and none secret.
pub(super) fn resolve_plain(t: &Template, known: &Known) -> Option<String> {
    if t.refs().any(Ref::is_secret) {
        return None;
    }
    let r = t.substitute(|r| match r {
        Ref::Cvm { name, attr } => cvm_attr(name, attr, known),
        _ => None,
    });
    r.as_literal()
}

/// Desired attributes of one CVM, with references resolved as far as they can be now;
/// secret values as digests made under `scope` (its record's [`ResourceRecord::digest_scope`]),
/// and what comparing them with `cur`'s digests found.
pub(super) fn desired_attrs(
    c: &CvmConfig,
    scope: &Address,
    known: &Known,
    secrets: &SecretValues,
    digests: &Digester,
    cur: Option<&ResourceRecord>,
) -> (CvmAttrs, SecretsSeen) {
    let mut seen = SecretsSeen::default();
    let env = c
        .env
        .iter()
        .map(|(k, t)| {
            let sensitive = t.refs().any(Ref::is_secret);
            let resolved = t.substitute(|r| match r {
                Ref::Cvm { name, attr } => cvm_attr(name, attr, known),
                r if r.is_secret() => secrets.get(r).map(|s| s.expose().to_string()),
                _ => None,
            });
            let v = match (resolved.as_literal(), sensitive) {
                (Some(value), false) => EnvVal::plain(value),
                (Some(value), true) => {
                    let value = zeroize::Zeroizing::new(value);
                    let digest = digests.digest(scope.as_str(), k, &value);
                    let recorded = cur.and_then(|r| r.attrs.env.get(k)).and_then(|v| v.digest.as_deref());
                    if let Some(old) = recorded.filter(|old| *old != digest && !digests.is_current(old)) {
                        let made = Made::of(old).describe();
                        match digests.check(old, scope.as_str(), k, &value) {
                            Check::Same => seen.redigested.push((k.clone(), digest.clone(), made)),
                            Check::Different => {}
                            Check::Unknown => seen.resent.push((k.clone(), made)),
                        }
                    }
                    EnvVal { value: None, digest: Some(digest), template: Some(t.clone()) }
                }
                (None, _) => EnvVal { value: None, digest: None, template: Some(t.clone()) },
            };
            (k.clone(), v)
        })
        .collect();
    (CvmAttrs { env, ..configured_attrs(c) }, seen)
}

/// The attributes the manifest gives a CVM, in the API's normal form, env aside (its values
/// need references and secrets resolved: the plan does that).
pub fn configured_attrs(c: &CvmConfig) -> CvmAttrs {
    CvmAttrs {
        name: c.name.clone(),
        compose: Some(c.compose.content.clone()),
        pre_launch_script: c.pre_launch_script.as_ref().map(|f| f.content.clone()),
        kms: Some(c.kms.kind().to_string()),
        env: BTreeMap::new(),
        power: Some(if c.stopped { Power::Stopped } else { Power::Running }),
        // The plain-valued attributes, as the manifest's reader typed them.
        ..c.attrs.clone()
    }
    .normalized()
}
