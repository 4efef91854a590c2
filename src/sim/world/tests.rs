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
    let p = w.provision(req, &cfg(), 0, false).unwrap();
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

#[test]
fn an_update_that_leaves_the_cvm_as_it_is_restarts_nothing() {
    let (mut w, seq) = world();
    let c = w.cvms[&seq].clone();
    let same = [
        Update { docker_compose_file: Some(WEB.into()), ..Update::default() },
        Update { vcpu: Some(Num(f64::from(c.vcpu))), memory: Some(Num(f64::from(c.memory))), ..Update::default() },
        Update {
            instance_type: c.instance_type.clone(),
            disk_size: Some(Num(f64::from(c.disk_size))),
            ..Update::default()
        },
        Update { image: Some(c.image.clone()), allow_restart: Some(true), ..Update::default() },
        Update { pre_launch_script: Some(String::new()), encrypted_env: Some(String::new()), ..Update::default() },
    ];
    for u in &same {
        // Even while the CVM still boots: there is nothing to wait for.
        assert_eq!(w.apply_update(seq, u, &cfg(), 500), Ok(Applied::Unchanged), "{u:?}");
    }
    let c = &w.cvms[&seq];
    assert_eq!((c.updates, c.restarts, c.status(500)), (0, 0, "starting"), "nothing was applied");
    for changed in [
        Update { docker_compose_file: Some(format!("{WEB}# v2\n")), ..Update::default() },
        Update { shutdown_timeout: Some(Num(30.0)), ..Update::default() },
        Update { user_config: Some("{}".into()), ..Update::default() },
    ] {
        assert!(!w.leaves_unchanged(&w.cvms[&seq], &changed, &cfg()), "{changed:?}");
    }
    let t = Update { shutdown_timeout: Some(Num(30.0)), ..Update::default() };
    assert!(matches!(w.apply_update(seq, &t, &cfg(), 1000), Ok(Applied::Started(_))));
    assert_eq!(w.apply_update(seq, &t, &cfg(), 1500), Ok(Applied::Unchanged), "sent again: already so");
    assert_eq!(w.cvms[&seq].restarts, 1);
}

#[test]
fn a_commit_is_idempotent_for_its_app_and_hash_and_its_token_is_checked() {
    let (mut w, seq) = world();
    let (app_id, hash) = (w.cvms[&seq].app_id.clone(), w.cvms[&seq].compose_hash.clone());
    let again = CommitRequest { compose_hash: Some(hash), app_id: Some(app_id.clone()), ..CommitRequest::default() };
    assert_eq!(w.commit(again, &cfg(), 5000), Ok(seq), "the same commit answers the CVM it made");
    assert_eq!((w.cvms.len(), w.cvms[&seq].status(5000)), (1, "running"), "and makes or boots nothing");
    let other = CommitRequest { compose_hash: Some("ab".repeat(32)), app_id: Some(app_id), ..CommitRequest::default() };
    assert!(matches!(w.commit(other, &cfg(), 5000), Err(ApiError::Coded { status: 409, code: "ERR-03-007", .. })));

    // A same-path provision has a one-time token; a commit that sends another is refused.
    let req = ProvisionRequest {
        name: Some("web-two".into()),
        compose_file: ComposeFile { docker_compose_file: Some(WEB.into()), ..ComposeFile::default() },
        ..ProvisionRequest::default()
    };
    let p = w.provision(req, &cfg(), 0, true).unwrap();
    let token = p.token.clone().expect("a same-path provision has a token");
    let commit = |t: &str| CommitRequest {
        compose_hash: Some(p.compose_hash.clone()),
        app_id: p.app_id.clone(),
        token: Some(t.to_string()),
        ..CommitRequest::default()
    };
    assert!(matches!(w.commit(commit("nope"), &cfg(), 0), Err(ApiError::Coded { code: "ERR-01-006", .. })));
    let two = w.commit(commit(&token), &cfg(), 0).unwrap();
    assert_eq!(w.commit(commit(&token), &cfg(), 0), Ok(two), "a repeated commit is the same CVM");
}

#[test]
fn an_apps_history_counts_the_fewest_running_and_the_most_existing_deleted_ones_too() {
    let (mut w, a) = world();
    let app = w.cvms[&a].app_id.clone();
    // A running from 1000; B, a replica at 1000, running from 2000.
    let b = w.replicate(a, None, &cfg(), 1000).unwrap();
    assert_eq!((w.min_running(&app, 2500), w.max_instances(&app, 2500)), (None, 2), "nothing was down yet");
    // A restarts over [3000, 4000): B alone runs.
    w.power(a, Power::Restart, &cfg(), 3000).unwrap();
    // C, a replica at 5000 (running from 6000), then B restarts over [7000, 8000) with A and C up.
    let c = w.replicate(a, None, &cfg(), 5000).unwrap();
    w.power(b, Power::Restart, &cfg(), 7000).unwrap();
    w.delete(c, 9000);
    assert_eq!(w.min_running(&app, 10_000), Some(1), "while A restarted");
    assert_eq!(w.max_instances(&app, 10_000), 3, "C counts after its delete");
    assert_eq!(w.max_unavailable(&app, 10_000), 1);
    assert_eq!(w.instances(&app).len(), 2);
    // Deleted while down: its downtime ends with it.
    w.power(b, Power::Stop, &cfg(), 11_000).unwrap();
    w.delete(b, 12_000);
    assert_eq!((w.min_running(&app, 20_000), w.max_unavailable(&app, 20_000)), (Some(1), 1));
}
