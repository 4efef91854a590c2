//! What the plan does to one CVM the manifest has: create it, replace it, update it in place,
//! or nothing; each change with the reasons it carries.

use super::diff::{diff_attrs, key_changes};
use super::preview::{onchain_note, preview_create, preview_update};
use super::{Action, Attention, AttrChange, Change, HashChange, Reason, Refresh, after_create_reason, health};
use crate::model::{self, Attr, CvmAttrs, Power, ResourceRecord};

/// What the plan knows of one CVM beside its record.
pub(super) struct Facts<'a> {
    /// Refresh found it deleted outside teeform.
    pub gone: bool,
    /// `--replace` names it.
    pub requested: bool,
    /// What refresh saw of it.
    pub refresh: Option<&'a Refresh>,
}

/// The change that takes `cur` (state's record; `None`: there is none) to `after`. `None` when
/// nothing changes, or when teeform gave up replacing a CVM whose boot keeps failing: then
/// `attention` says so.
pub(super) fn of_desired(
    base: Change,
    cur: Option<&ResourceRecord>,
    after: CvmAttrs,
    facts: &Facts,
    attention: &mut Vec<Attention>,
) -> Option<Change> {
    let Some(rec) = cur else {
        let mut reasons = if facts.gone { vec![Reason::DeletedOutsideTeeform] } else { vec![] };
        reasons.extend(after_create_reason(&after));
        let hash = preview_create(&after);
        return Some(Change { after: Some(after), reasons, compose_hash: Some(hash), ..base });
    };
    let attrs = diff_attrs(&rec.attrs, &after, true);
    let gave_up = if facts.requested { None } else { health::gave_up(rec, attrs.is_empty()) };
    let forcing: Vec<Attr> = attrs.iter().filter(|a| a.forces_replacement).map(|a| a.name).collect();
    let base = Change { ids: Some(rec.ids.clone()), before: Some(rec.attrs.clone()), ..base };
    if let Some(a) = gave_up {
        attention.push(a);
        None
    } else if rec.tainted || facts.requested || !forcing.is_empty() {
        Some(replacement(base, rec, after, attrs, forcing, facts.requested))
    } else if attrs.is_empty() {
        None
    } else {
        Some(update(base, rec, after, attrs, facts.refresh))
    }
}

/// A replacement, with its cause (tainted, forced by `forcing`, or `requested`) and its cost.
fn replacement(
    base: Change,
    rec: &ResourceRecord,
    after: CvmAttrs,
    attrs: Vec<AttrChange>,
    forcing: Vec<Attr>,
    requested: bool,
) -> Change {
    let mut reasons = Vec::new();
    if rec.tainted {
        reasons.push(Reason::Tainted);
        if !rec.boot.failures.is_empty() {
            reasons.push(Reason::BootFailed {
                errors: rec.boot.failures.clone(),
                logs: model::boot_log_command(&rec.ids),
            });
        }
    }
    if !forcing.is_empty() {
        reasons.push(Reason::ForcesReplacement { attributes: forcing });
    }
    if requested {
        reasons.push(Reason::ReplaceRequested);
    }
    let onchain = base.kms.is_some() || rec.attrs.kms.as_deref().is_some_and(|k| k != "phala");
    reasons.push(Reason::RotatesAppId { onchain });
    reasons.extend(after_create_reason(&after));
    let hash = HashChange { before: rec.compose_hash.clone(), ..preview_create(&after) };
    Change { action: Action::Replace, after: Some(after), attributes: attrs, reasons, compose_hash: Some(hash), ..base }
}

/// An update in place, with what it entails: a restart, a start or stop, a rename, env keys
/// that change the compose hash, an on-chain registration.
fn update(
    base: Change,
    rec: &ResourceRecord,
    after: CvmAttrs,
    attrs: Vec<AttrChange>,
    refresh: Option<&Refresh>,
) -> Change {
    let hash = preview_update(rec, &after, refresh);
    let mut reasons = update_reasons(rec, &attrs, &after);
    let (added, removed) = key_changes(&rec.attrs.env, &after.env);
    if !added.is_empty() || !removed.is_empty() {
        reasons.push(Reason::EnvKeysChanged { added, removed });
    }
    if let (Some(spec), Some(h)) = (&base.kms, &hash) {
        reasons.push(Reason::OnChainRegistration(onchain_note(spec, h, rec)));
    }
    Change { action: Action::Update, after: Some(after), attributes: attrs, reasons, compose_hash: hash, ..base }
}

/// What an in-place update entails: a start or stop when the run state changes, a restart
/// when the configuration changes on a CVM that runs and keeps running, a rename (which
/// restarts nothing) when the name changes.
fn update_reasons(rec: &ResourceRecord, attrs: &[AttrChange], after: &CvmAttrs) -> Vec<Reason> {
    let power = attrs.iter().any(|a| a.name == Attr::Power).then_some(after.power).flatten();
    let config = attrs.iter().any(|a| a.name.patched());
    let mut reasons = match power {
        Some(Power::Stopped) => vec![Reason::Stops],
        Some(Power::Running) => vec![Reason::Starts],
        None if config && rec.attrs.power != Some(Power::Stopped) => vec![Reason::RestartsCvm],
        None => vec![],
    };
    if attrs.iter().any(|a| a.name == Attr::Name) {
        reasons.push(Reason::Renames);
    }
    reasons
}
