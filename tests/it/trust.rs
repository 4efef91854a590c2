//! State you can trust: only CVMs teeform can prove it created are adopted; damaged or vanished
//! state is an error with a way back; each manifest has its own state.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use teeform::state::{Batch, JournalEntry, LockInfo, OpenOptions};

use crate::harness::{TestEnv, WEB};

const ALPHA: &str = "cvms:\n  alpha:\n    name: alpha-svc\n    compose: web.yml\n";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Another client creates a CVM named `name` (provision + commit); returns its app id.
fn stranger(t: &TestEnv, name: &str) -> String {
    let (code, prov) = t.api(
        "POST",
        "/cvms/provision",
        Some(serde_json::json!({"name": name, "compose_file": {"docker_compose_file": WEB}})),
    );
    assert_eq!(code, 200, "{prov}");
    let (code, vm) =
        t.api("POST", "/cvms", Some(serde_json::json!({"app_id": prov["app_id"], "compose_hash": prov["compose_hash"]})));
    assert_eq!(code, 200, "{vm}");
    t.settle();
    prov["app_id"].as_str().unwrap().to_string()
}

/// Writes journal entries into the local state at `dir`, as a run that was killed leaves them.
fn leave_in_journal(dir: &Path, entries: Vec<JournalEntry>) {
    block_on(async {
        let opts = OpenOptions::local(dir.to_path_buf(), LockInfo::for_command("test"), Duration::ZERO);
        let store = teeform::state::open(&opts).await.unwrap();
        store.commit(Batch { journal_put: entries, ..Default::default() }).await.unwrap();
        store.close().await.unwrap();
    });
}

fn create_entry(address: &str, name: &str, app_id: Option<&str>) -> JournalEntry {
    let mut detail = serde_json::json!({"attrs": {"name": name, "compose": WEB}});
    if let Some(a) = app_id {
        detail["app_id"] = a.into();
    }
    JournalEntry {
        id: format!("t-{}", uuid::Uuid::new_v4().simple()),
        address: address.into(),
        op: "create".into(),
        name: name.into(),
        cloud_id: None,
        started_at: "2026-01-01T00:00:00Z".into(),
        detail,
        endpoint: None,
    }
}

#[test]
fn a_create_refused_at_provision_leaves_nothing_to_adopt() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(ALPHA);
    t.run(&["plan", "--out", "p.plan"]).ok();
    // Between plan and apply, somebody else takes the name.
    stranger(&t, "alpha-svc");
    let r = t.run(&["apply", "p.plan"]);
    r.code(1);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);

    // The next plan does not take the stranger for an interrupted create of ours.
    let p = t.run(&["plan"]);
    p.code(1);
    assert!(!p.stderr.contains("interrupted"), "{}", p.stderr);
    assert!(p.stderr.contains("a CVM with that name already exists") && p.stderr.contains("teeform import cvm.alpha"));
    let cached = t.run(&["plan", "--refresh=false"]);
    assert!(!cached.ok().stderr.contains("interrupted"), "{}", cached.stderr);
    assert!(cached.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", cached.stdout);
    let again = t.run(&["apply", "--refresh=false", "--auto-approve"]);
    again.code(1);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "", "nothing was adopted");
    t.run(&["destroy", "--auto-approve"]).ok();

    // The stranger's CVM was never touched.
    assert_eq!(t.stats()["cvm_count"], 1);
    assert_eq!(t.cvm_stat("alpha-svc", "updates"), 0);
    assert_eq!(t.cvm_stat("alpha-svc", "restarts"), 0);
    assert_eq!(t.count("DELETE "), 0);
    assert_eq!(t.count("PATCH "), 0);
}

#[test]
fn reconcile_adopts_only_the_cvm_its_own_provision_named() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(&format!("{ALPHA}  bravo:\n    name: bravo-svc\n    compose: web.yml\n"));
    t.run(&["plan", "--refresh=false"]).ok();
    // alpha-svc is somebody else's. bravo-svc is the CVM a commit of ours made just before
    // the run was killed (made here by hand, with the app id the journal recorded).
    stranger(&t, "alpha-svc");
    let ours = stranger(&t, "bravo-svc");
    let (_, other_prov) = t.api(
        "POST",
        "/cvms/provision",
        Some(serde_json::json!({"name": "alpha-svc-2", "compose_file": {"docker_compose_file": WEB}})),
    );
    leave_in_journal(
        &t.path("state"),
        vec![
            // A commit that never landed: its app id names no CVM, whatever has the name.
            create_entry("cvm.alpha", "alpha-svc", other_prov["app_id"].as_str()),
            create_entry("cvm.bravo", "bravo-svc", Some(&ours)),
        ],
    );
    let p = t.run(&["plan", "--refresh=false"]);
    p.ok();
    assert!(p.stderr.contains("cvm.bravo: a create interrupted earlier had succeeded"), "{}", p.stderr);
    assert!(!p.stderr.contains("cvm.alpha:"), "{}", p.stderr);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.bravo\n");

    // An entry from an older teeform (no app id) proves nothing: a warning, no adoption.
    leave_in_journal(&t.path("state"), vec![create_entry("cvm.alpha", "alpha-svc", None)]);
    let p = t.run(&["plan", "--refresh=false"]);
    assert!(p.ok().stderr.contains("cannot be proven to have made a CVM"), "{}", p.stderr);
    assert!(p.stderr.contains("teeform import cvm.alpha alpha-svc"), "{}", p.stderr);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.bravo\n");
    // Settled once: the next run says nothing more.
    assert!(!t.run(&["plan", "--refresh=false"]).ok().stderr.contains("cvm.alpha"));
}

/// What a state claims, as CVM path ids (after reconciling what its last run left).
fn claimed(t: &TestEnv, state: &str) -> Vec<String> {
    let r = t.run(&["--state", state, "plan", "--refresh=false"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let show = t.run(&["--state", state, "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.ok().stdout).unwrap();
    v["resources"].as_array().unwrap().iter().map(|r| r["ids"]["id"].as_str().unwrap().to_string()).collect()
}

/// Two applies of one manifest on two states at once, each killed at a random moment: no CVM
/// ends up in both states, and none is forgotten by both.
#[test]
fn racing_applies_on_two_states_never_share_or_lose_a_cvm() {
    let mut t = TestEnv::with_config(teeform::sim::SimConfig {
        latency_ms: 3,
        restart_ms: 60,
        boot_ms: 60,
        ..Default::default()
    });
    t.env.insert("TEEFORM_WAIT_TIMEOUT".into(), "20".into());
    t.write("web.yml", WEB);
    t.manifest(
        "cvms:\n  alpha:\n    name: alpha-svc\n    compose: web.yml\n  bravo:\n    name: bravo-svc\n    compose: web.yml\n  charlie:\n    name: charlie-svc\n    compose: web.yml\n",
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let trials = 10;
    for trial in 0..trials {
        let spawn = |state: &str| {
            t.command(&["--state", state, "apply", "--auto-approve"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        // B starts a little after A, so it often plans before A's creates land and provisions after.
        let mut a = spawn("sa");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
        let mut b = spawn("sb");
        let (ka, kb) = (rng.random_range(0..500u64), rng.random_range(0..500u64));
        for (child, after) in [(&mut a, ka), (&mut b, kb)] {
            if trial % 2 == 0 {
                std::thread::sleep(Duration::from_millis(after / 2));
                let _ = child.kill();
            }
        }
        let _ = (a.wait(), b.wait());
        t.settle();
        let (sa, sb) = (claimed(&t, "sa"), claimed(&t, "sb"));
        let in_sim: std::collections::BTreeSet<String> = t
            .stats()["cvms"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["id"].as_str().unwrap().replace('-', ""))
            .collect();
        let norm = |v: &[String]| v.iter().map(|s| s.replace('-', "")).collect::<std::collections::BTreeSet<_>>();
        let (na, nb) = (norm(&sa), norm(&sb));
        assert!(na.is_disjoint(&nb), "trial {trial}: both states claim {:?}", na.intersection(&nb));
        let union: std::collections::BTreeSet<String> = na.union(&nb).cloned().collect();
        assert_eq!(union, in_sim, "trial {trial}: every CVM is in exactly one state");
        // Each state destroys only its own; afterwards nothing is left and nothing was deleted twice.
        let deletes = t.count("DELETE ");
        t.run(&["--state", "sa", "destroy", "--auto-approve"]).ok();
        t.run(&["--state", "sb", "destroy", "--auto-approve"]).ok();
        assert_eq!(t.stats()["cvm_count"], 0, "trial {trial}");
        assert_eq!(t.count("DELETE ") - deletes, in_sim.len() as u64, "trial {trial}: one delete per CVM");
    }
}
