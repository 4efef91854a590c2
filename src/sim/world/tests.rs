//! The world's rules without HTTP: a CVM made by provision and commit, then changed.

use super::*;
use crate::sim::SimConfig;
use crate::sim::requests::{CommitRequest, ComposeFile, Num, ProvisionRequest, Update};

const WEB: &str = "services:\n  web:\n    image: nginx\n";

fn cfg() -> SimConfig {
    SimConfig { restart_ms: 1000, boot_ms: 1000, ..SimConfig::default() }
}

/// A world with one running Phala-KMS CVM `web-one` (booted at 0, running from 1000).
fn world() -> (World, u64) {
    let mut w = World::new(1);
    let req = ProvisionRequest {
        name: Some("web-one".into()),
        compose_file: ComposeFile { docker_compose_file: Some(WEB.into()), ..ComposeFile::default() },
        ..ProvisionRequest::default()
    };
    let p = w.provision(req, &cfg(), 0).unwrap();
    let commit = CommitRequest { compose_hash: Some(p.compose_hash), app_id: p.app_id, ..CommitRequest::default() };
    assert_eq!(w.check_commit(&commit).unwrap(), None, "a Phala-KMS app asks no chain");
    let seq = w.commit(commit, &cfg(), 0).unwrap();
    (w, seq)
}

#[test]
fn a_cvm_is_in_its_transition_until_the_deadline_then_in_its_target() {
    let (mut w, seq) = world();
    let c = &w.cvms[&seq];
    assert_eq!((c.status(0), c.status(999), c.status(1000)), ("starting", "starting", "running"));
    assert_eq!(w.power(seq, Power::Stop, &cfg(), 999), Err(ApiError::busy()), "busy while starting");
    w.power(seq, Power::Stop, &cfg(), 1000).unwrap();
    let c = &w.cvms[&seq];
    assert_eq!((c.status(1499), c.status(1500)), ("stopping", "stopped"), "a stop takes half a restart");
    w.power(seq, Power::Restart, &cfg(), 2000).unwrap();
    assert_eq!(w.cvms[&seq].restarts, 0, "restarting a stopped CVM is a start, not a restart");
    w.power(seq, Power::Restart, &cfg(), 3000).unwrap();
    assert_eq!(w.cvms[&seq].restarts, 1);
}

#[test]
fn an_update_is_refused_at_its_first_problem_in_the_apis_order() {
    let (w, seq) = world();
    let bad = Update {
        unknown: [("colour".to_string(), serde_json::json!("blue"))].into(),
        vcpu: Some(Num(-1.0)),
        docker_compose_file: Some("a: [b".into()),
        image: Some("nope".into()),
        ..Update::default()
    };
    let first = |u: &Update| match w.check_update(seq, u, false, &cfg()) {
        Err(ApiError::Invalid { loc, .. }) => loc[0].as_str().unwrap().to_string(),
        Err(ApiError::Coded { code, .. }) => code.to_string(),
        other => panic!("{other:?}"),
    };
    let mut u = bad.clone();
    assert_eq!(first(&u), "colour");
    u.unknown.clear();
    assert_eq!(first(&u), "vcpu");
    u.vcpu = None;
    assert_eq!(first(&u), "ERR-01-003", "the compose file");
    u.docker_compose_file = None;
    assert_eq!(first(&u), "ERR-02-010", "the OS image");
    let shrink = Update { disk_size: Some(Num(10.0)), ..Update::default() };
    assert_eq!(first(&shrink), "ERR-02-009", "disks only grow");
}

#[test]
fn an_update_applies_every_field_with_one_restart() {
    let (mut w, seq) = world();
    let typed = Update { instance_type: Some("tdx.large".into()), ..Update::default() };
    assert_eq!(w.check_update(seq, &typed, false, &cfg()), Ok(None), "a Phala-KMS app is never held");
    assert_eq!(w.apply_update(seq, &typed, &cfg(), 500), Err(ApiError::busy()), "not while booting");
    w.apply_update(seq, &typed, &cfg(), 1000).unwrap();
    let c = &w.cvms[&seq];
    assert_eq!((c.vcpu, c.memory, c.instance_type.as_deref()), (4, 8192, Some("tdx.large")));
    assert_eq!((c.updates, c.restarts, c.status(1999)), (1, 1, "restarting"));
    let custom = Update { vcpu: Some(Num(3.0)), ..Update::default() };
    w.apply_update(seq, &custom, &cfg(), 2000).unwrap();
    let c = &w.cvms[&seq];
    assert_eq!((c.vcpu, c.memory, c.instance_type.as_deref()), (3, 8192, None), "a custom size has no type");
    let same = Update { vcpu: Some(Num(2.0)), memory: Some(Num(4096.0)), ..Update::default() };
    w.apply_update(seq, &same, &cfg(), 3000).unwrap();
    assert_eq!(w.cvms[&seq].instance_type.as_deref(), Some("tdx.medium"), "a size that is a type's is that type");
    w.power(seq, Power::Stop, &cfg(), 4000).unwrap();
    let script = Update { pre_launch_script: Some("echo hi".into()), ..Update::default() };
    w.apply_update(seq, &script, &cfg(), 5000).unwrap();
    let c = &w.cvms[&seq];
    assert_eq!((c.status(6000), c.restarts), ("stopped", 3), "a stopped CVM takes an update and stays stopped");
    assert_eq!(c.compose_text("pre_launch_script"), Some("echo hi"));
    let removed = Update { pre_launch_script: Some(String::new()), ..Update::default() };
    w.apply_update(seq, &removed, &cfg(), 7000).unwrap();
    assert_eq!(w.cvms[&seq].compose_text("pre_launch_script"), None, "an empty script removes it");
}

#[test]
fn an_on_chain_apps_changed_hash_is_held_and_confirmed_by_its_token() {
    let (mut w, seq) = world();
    // Made on chain by hand: the simulator makes one only with a chain configured.
    w.cvms.get_mut(&seq).unwrap().kms_type = "base".into();
    let same = Update { vcpu: Some(Num(2.0)), ..Update::default() };
    assert_eq!(w.check_update(seq, &same, false, &cfg()), Ok(None), "the hash does not change");
    assert!(w.check_update(seq, &same, true, &cfg()).unwrap().is_some(), "prepare-only is always held");
    let change = Update { docker_compose_file: Some(format!("{WEB}# v2\n")), ..Update::default() };
    let hash = w.check_update(seq, &change, false, &cfg()).unwrap().expect("held");
    let held = w.hold_update(seq, change, &hash, Some(false), 1000).unwrap();
    assert_eq!((held.compose_hash.as_str(), held.allowed), (hash.as_str(), false));
    assert_eq!(w.cvms[&seq].updates, 0, "nothing applied while held");
    let by_hash = w.pending("", Some(&hash), Some(seq)).unwrap().token.clone();
    assert_eq!(by_hash, held.commit_token);
    assert!(w.pending("", Some(&hash), Some(seq + 1)).is_none(), "another CVM's hash");
    w.confirm(&held.commit_token, &cfg(), 1000).unwrap();
    assert_eq!((w.cvms[&seq].compose_hash.as_str(), w.cvms[&seq].updates), (hash.as_str(), 1));
    assert!(w.pending_updates.is_empty(), "a confirmed update is forgotten");
    assert!(matches!(w.confirm(&held.commit_token, &cfg(), 3000), Err(ApiError::Coded { status: 466, .. })));
}
