//! Secret digests while planning: made ahead on all cores, and state's digests made in another
//! mode (or under another passphrase) than this run's: made again when the values compare
//! equal in the mode that made them, sent again (and said so) when they cannot be compared.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::desired::{Known, cvm_attr};
use super::{Plan, Reason, State};
use crate::manifest::{Config, Ref};
use crate::model::{Address, ResourceRecord};
use crate::secrets::{Digester, Job, SecretValues};

/// Secret digests state keeps in another mode or under another key than this run's, for
/// values that compare equal in the mode that made them: applying writes them again in this
/// run's mode (a state write, with [`Plan::refreshed`]); nothing is sent to the CVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redigested {
    pub address: Address,
    pub keys: Vec<String>,
    /// How state's digests were made, and how this run makes them
    /// ([`crate::secrets::Made::describe`]).
    pub from: String,
    pub to: String,
}

/// What making a CVM's desired env found about state's secret digests.
#[derive(Default)]
pub(super) struct SecretsSeen {
    /// Keys whose value is unchanged but whose digest state keeps in another mode: the key,
    /// its digest in this run's mode, how state's was made.
    pub redigested: Vec<(String, String, String)>,
    /// Keys whose digest was made with a key this run does not have, and how it was made.
    pub resent: Vec<(String, String)>,
}

/// The distinct descriptions, in order, joined with "and".
fn joined<'a>(made: impl Iterator<Item = &'a String>) -> String {
    made.collect::<BTreeSet<_>>().into_iter().cloned().collect::<Vec<_>>().join(" and ")
}

/// `rec` with the digests `seen` found made in another mode made again in this run's (`None`
/// when there are none): the record to compare the desired attributes with. It is written to
/// state with the plan's refreshed records, and the plan says so in `redigested`.
pub(super) fn redigest(
    addr: &Address,
    rec: Option<&ResourceRecord>,
    seen: &SecretsSeen,
    digests: &Digester,
    state: &mut State,
    redigested: &mut Vec<Redigested>,
) -> Option<ResourceRecord> {
    let mut rec = rec.filter(|_| !seen.redigested.is_empty())?.clone();
    for (k, d, _) in &seen.redigested {
        if let Some(v) = rec.attrs.env.get_mut(k) {
            v.digest = Some(d.clone());
        }
    }
    match state.refreshed.iter_mut().find(|r| r.address == *addr) {
        Some(r) => *r = rec.clone(),
        None => state.refreshed.push(rec.clone()),
    }
    redigested.push(Redigested {
        address: addr.clone(),
        keys: seen.redigested.iter().map(|(k, _, _)| k.clone()).collect(),
        from: joined(seen.redigested.iter().map(|(_, _, made)| made)),
        to: digests.describe(),
    });
    Some(rec)
}

/// The note of an update that sends secret values again because it cannot compare them.
pub(super) fn resent_reason(seen: &SecretsSeen, digests: &Digester) -> Option<Reason> {
    (!seen.resent.is_empty()).then(|| Reason::SecretsResent {
        keys: seen.resent.iter().map(|(k, _)| k.clone()).collect(),
        made_with: joined(seen.resent.iter().map(|(_, made)| made)),
        now: digests.describe(),
    })
}

/// The warning of a plan that sends secrets again because it cannot compare them.
pub(super) fn resent_warning(plan: &Plan) -> Option<String> {
    let resent: Vec<(&Vec<String>, &String, &String)> = plan
        .changes
        .iter()
        .flat_map(|c| {
            c.reasons.iter().filter_map(move |r| match r {
                Reason::SecretsResent { keys, made_with, now } => Some((keys, made_with, now)),
                _ => None,
            })
        })
        .collect();
    let (_, made_with, now) = resent.first()?;
    let values: usize = resent.iter().map(|(k, _, _)| k.len()).sum();
    let cvms = resent.len();
    let s = |n: usize| if n == 1 { "" } else { "s" };
    Some(format!(
        "{values} secret value{} in {cvms} CVM{} cannot be compared with state: its digests were made with {made_with}, \
         and this run has {now}. They are sent again, which restarts {} (see each change's note). If the \
         passphrase was not meant to change, set the one used before; to change it without restarts, set {} \
         to the old one as well",
        s(values),
        s(cvms),
        if cvms == 1 { "that CVM" } else { "those CVMs" },
        crate::secrets::PREVIOUS_PASSPHRASE_VAR,
    ))
}

/// Makes ahead, on all cores, the Argon2id digests this plan's CVMs will ask for: env values
/// with secrets resolved as far as current state allows (a value referencing a CVM this plan
/// replaces is digested when the plan reaches it), each under its CVM's digest scope.
pub(super) fn prepare(config: &Config, known: &Known, secrets: &SecretValues, digests: &Digester) {
    let mut owned: Vec<(String, &str, zeroize::Zeroizing<String>, Option<&str>)> = Vec::new();
    for (c, addr) in config.cvms.values().flat_map(|c| c.instances().into_iter().map(move |a| (c, a))) {
        let rec = known.current.get(&addr);
        let scope = rec.map_or(&addr, |r| r.digest_scope()).to_string();
        let recorded = rec.map(|r| &r.attrs.env);
        for (k, t) in c.env.iter().filter(|(_, t)| t.refs().any(Ref::is_secret)) {
            let resolved = t.substitute(|r| match r {
                Ref::Cvm { name, attr } => cvm_attr(name, attr, known),
                r if r.is_secret() => secrets.get(r).map(|s| s.expose().to_string()),
                _ => None,
            });
            if let Some(value) = resolved.as_literal() {
                let old = recorded.and_then(|e| e.get(k)).and_then(|v| v.digest.as_deref());
                owned.push((scope.clone(), k, zeroize::Zeroizing::new(value), old));
            }
        }
    }
    let jobs: Vec<Job> =
        owned.iter().map(|(scope, key, value, recorded)| Job { scope, key, value, recorded: *recorded }).collect();
    digests.prepare(&jobs);
}
