//! Run state: what a CVM's status means for a plan.
//!
//! A CVM's run state is part of what the manifest asks for (`running` unless it says
//! `power: stopped`), so a stopped CVM is a change like any other (start it). What applying
//! cannot fix is reported as needing attention: a CVM in `error` that was running before, one
//! stuck booting, and one whose boot failed again after a replacement. A CVM teeform created
//! that fails before it was ever seen running is a failed create: tainted, and replaced once.
//!
//! What each API status means is [`CvmStatus`]'s to say.

use serde::{Deserialize, Serialize};

use crate::model::{Address, CvmStatus, RemoteCvm, ResourceRecord, boot_log_command};

/// A CVM whose run state needs a person; applying does not fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    pub address: Address,
    /// The API's status when refreshed (`error`, `starting`, …).
    pub status: CvmStatus,
    pub problem: Problem,
    /// Why its boots failed, latest last: the API's `boot_error` where it gave one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_errors: Vec<String>,
    /// A command that shows its boot log.
    pub logs: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// It ran before and is now in `error`: applying sends nothing that would fix it.
    Failed,
    /// teeform created it and it failed before it ever ran: a failed create. It is tainted,
    /// and a normal plan replaces it (once), so only a refresh-only plan lists it here.
    FailedCreate,
    /// Busy (booting, restarting) for longer than teeform waits for a CVM.
    Stuck { since: Option<String> },
    /// Its replacement failed to boot the same way; teeform does not replace it again until
    /// the manifest changes it.
    BootFailedAgain,
}

/// How many failed boots of one configuration teeform tries: the create and one replacement.
pub const MAX_BOOT_TRIES: usize = 2;

fn boot_error(remote: &RemoteCvm) -> String {
    remote.boot.error.clone().unwrap_or_else(|| format!("status `{}` (the API gave no boot error)", remote.status))
}

/// Brings a refreshed record's boot history up to date with what the API says, and returns
/// what needs a person, if anything. A failed boot of a CVM never seen running is a failed
/// create: the record is tainted (and so replaced).
pub fn judge(merged: &mut ResourceRecord, remote: &RemoteCvm) -> Option<Attention> {
    let attention = |problem, boot_errors| Attention {
        address: merged.address.clone(),
        status: remote.status.clone(),
        problem,
        boot_errors,
        logs: boot_log_command(&merged.ids),
    };
    if remote.is_ready() {
        merged.boot.pending = false;
        return None;
    }
    if remote.status.is_failed() && !remote.in_progress {
        if merged.tainted {
            return None;
        }
        if merged.boot.pending {
            merged.tainted = true;
            merged.boot.pending = false;
            merged.boot.failures.push(boot_error(remote));
            return Some(attention(Problem::FailedCreate, merged.boot.failures.clone()));
        }
        return Some(attention(Problem::Failed, vec![boot_error(remote)]));
    }
    if remote.boot.stuck {
        let errors = remote.boot.error.iter().cloned().collect();
        return Some(attention(Problem::Stuck { since: remote.boot.busy_since.clone() }, errors));
    }
    None
}

/// A tainted CVM whose boot failed [`MAX_BOOT_TRIES`] times with the configuration the
/// manifest still asks for: not replaced again.
pub fn gave_up(rec: &ResourceRecord, unchanged: bool) -> Option<Attention> {
    (rec.tainted && unchanged && rec.boot.failures.len() >= MAX_BOOT_TRIES).then(|| Attention {
        address: rec.address.clone(),
        status: rec.status.clone().unwrap_or(CvmStatus::Error),
        problem: Problem::BootFailedAgain,
        boot_errors: rec.boot.failures.clone(),
        logs: boot_log_command(&rec.ids),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BootFacts, CloudIds, CvmAttrs};

    fn rec(pending: bool, tainted: bool) -> ResourceRecord {
        ResourceRecord {
            surge: false,
            address: Address::cvm("web"),
            ids: CloudIds { id: "u".into(), app_id: Some("ab".into()), ..Default::default() },
            attrs: CvmAttrs::default(),
            compose_hash: None,
            env_pubkey: None,
            kms_info: None,
            status: Some(CvmStatus::Starting),
            tainted,
            boot: crate::model::BootHistory { pending, failures: vec![] },
            dependencies: vec![],
            updated_at: String::new(),
            unverified: None,
            endpoint: None,
            prevent_destroy: false,
            secrets_scope: None,
        }
    }

    fn remote(status: &str, in_progress: bool, boot: BootFacts) -> RemoteCvm {
        RemoteCvm {
            ids: CloudIds::default(),
            status: CvmStatus::parse(status),
            in_progress,
            compose_hash: None,
            attrs: CvmAttrs::default(),
            app_compose: None,
            os_image_hash: None,
            env_pubkey: None,
            kms_info: None,
            boot,
        }
    }

    #[test]
    fn what_each_status_means() {
        let err = || BootFacts { error: Some("compose up failed".into()), ..Default::default() };
        let stuck = || BootFacts { stuck: true, busy_since: Some("t0".into()), ..Default::default() };
        // (pending, tainted, status, in progress, facts) → (attention, tainted after, failures after)
        type Case = (bool, bool, &'static str, bool, fn() -> BootFacts, Option<Problem>, bool, usize);
        let cases: &[Case] = &[
            (true, false, "running", false, BootFacts::default, None, false, 0),
            (true, false, "error", false, err, Some(Problem::FailedCreate), true, 1),
            (false, false, "error", false, err, Some(Problem::Failed), false, 0),
            (false, true, "error", false, err, None, true, 0),
            (false, false, "starting", true, BootFacts::default, None, false, 0),
            (true, false, "starting", true, stuck, Some(Problem::Stuck { since: Some("t0".into()) }), false, 0),
            (false, false, "stopped", false, BootFacts::default, None, false, 0),
        ];
        for (pending, tainted, status, busy, facts, want, tainted_after, failures) in cases {
            let mut r = rec(*pending, *tainted);
            let got = judge(&mut r, &remote(status, *busy, facts()));
            assert_eq!(got.map(|a| a.problem), *want, "{status} pending={pending}");
            assert_eq!(r.tainted, *tainted_after, "{status} pending={pending}");
            assert_eq!(r.boot.failures.len(), *failures, "{status} pending={pending}");
        }
        let mut r = rec(true, false);
        judge(&mut r, &remote("error", false, err()));
        assert_eq!(r.boot.failures, ["compose up failed"]);
        assert!(!r.boot.pending);
        let mut r = rec(false, false);
        let a = judge(&mut r, &remote("error", false, BootFacts::default())).unwrap();
        assert_eq!(a.boot_errors, ["status `error` (the API gave no boot error)"]);
        assert_eq!(a.logs, "phala cvms serial-logs app_ab");
    }

    #[test]
    fn replacing_stops_after_the_replacement_fails_too() {
        let mut r = rec(false, true);
        r.boot.failures = vec!["e1".into()];
        assert!(gave_up(&r, true).is_none(), "one failure: replaced once");
        r.boot.failures.push("e2".into());
        assert_eq!(gave_up(&r, true).unwrap().boot_errors, ["e1", "e2"]);
        assert!(gave_up(&r, false).is_none(), "a changed configuration is tried again");
        r.tainted = false;
        assert!(gave_up(&r, true).is_none());
    }
}
