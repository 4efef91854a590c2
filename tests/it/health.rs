//! A plan tells the truth about the fleet's run state: CVMs whose boot failed (also after a
//! killed apply), stopped outside teeform, broken after running, or stuck booting; and a
//! failed boot is replaced once, not forever.

use std::process::Stdio;
use std::time::{Duration, Instant};

use teeform::sim::SimConfig;
use teeform::sim::world::SIM_BOOT_ERROR;

use crate::harness::{TestEnv, WEB};

fn manifest(names: &[&str], compose: &str) -> String {
    let mut m = String::from("cvms:\n");
    for n in names {
        m.push_str(&format!("  {n}:\n    name: {n}-svc\n    compose: {compose}\n"));
    }
    m
}

fn env(cfg: SimConfig) -> TestEnv {
    let mut t = TestEnv::with_config(cfg);
    t.env.insert("TEEFORM_RETRY_BASE_MS".into(), "20".into());
    t.write("web.yml", WEB);
    t.write("web2.yml", &WEB.replace("1.27", "1.28"));
    t
}

/// Waits until the simulator's CVM `name` has `status`.
fn until_status(t: &TestEnv, name: &str, status: &str) {
    let start = Instant::now();
    while t.cvm_stat(name, "status") != status {
        assert!(start.elapsed() < Duration::from_secs(20), "{name} never became {status}: {}", t.stats()["cvms"]);
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn app_id(t: &TestEnv, name: &str) -> String {
    t.cvm_stat(name, "app_id").as_str().unwrap().to_string()
}

#[test]
fn a_kill_while_cvms_boot_then_failed_boots_are_planned_and_replaced() {
    let t = env(SimConfig {
        boot_ms: 2500,
        restart_ms: 100,
        fail_boot: vec!["bravo-svc".into(), "charlie-svc".into()],
        ..Default::default()
    });
    t.manifest(&manifest(&["alpha", "bravo", "charlie"], "web.yml"));
    // Kill the apply once all three CVMs exist and are still booting.
    let mut child =
        t.command(&["apply", "--auto-approve"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while t.stats()["cvm_count"] != 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "the creates did not happen");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Long enough for the run to record what it created, well before the boots end.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let show = t.run(&["state", "show", "cvm.bravo"]);
    assert!(show.ok().stdout.contains("status       = \"starting\""), "{}", show.stdout);
    until_status(&t, "bravo-svc", "error");
    until_status(&t, "charlie-svc", "error");
    until_status(&t, "alpha-svc", "running");

    // A refresh-only plan records what happened; it changes no CVM.
    let only = t.run(&["plan", "--refresh-only", "--detailed-exitcode"]);
    only.code(2);
    assert!(
        only.stdout.contains("# cvm.bravo failed to boot after teeform created it (status error)"),
        "{}",
        only.stdout
    );
    assert!(only.stdout.contains(SIM_BOOT_ERROR), "{}", only.stdout);
    assert!(
        only.stdout.contains(&format!("phala cvms serial-logs app_{}", app_id(&t, "bravo-svc"))),
        "{}",
        only.stdout
    );
    assert!(!only.stdout.contains("No changes"), "{}", only.stdout);

    // The plan replaces both failed creates, saying why, with the boot log's command.
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.bravo is tainted, so it must be replaced"), "{}", p.stdout);
    assert!(p.stdout.contains("# cvm.charlie is tainted, so it must be replaced"), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("its boot failed: {SIM_BOOT_ERROR}")), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 2 to add, 0 to change, 2 to destroy."), "{}", p.stdout);
    assert!(!p.stdout.contains("cvm.alpha"), "{}", p.stdout);
    let json: serde_json::Value = serde_json::from_str(&t.run(&["plan", "--json"]).ok().stdout).unwrap();
    assert_eq!(json["summary"]["converged"], false);
    let reasons = json["resource_changes"][0]["reasons"].to_string();
    assert!(reasons.contains("boot_failed") && reasons.contains(SIM_BOOT_ERROR), "{reasons}");

    // The cause is fixed: the replacements boot, and the summary counts what happened.
    t.configure(serde_json::json!({"fail_boot": []}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("Resources: 2 added, 0 changed, 2 destroyed."), "{}", r.stderr);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(t.stats()["cvm_count"], 3);
}

#[test]
fn a_failed_boot_is_replaced_once_then_left_with_its_boot_errors() {
    let t = env(SimConfig { boot_ms: 100, restart_ms: 100, fail_boot: vec!["bravo-svc".into()], ..Default::default() });
    t.manifest(&manifest(&["alpha", "bravo"], "web.yml"));
    let first = t.run(&["apply", "--auto-approve"]);
    first.code(1);
    assert!(first.stderr.contains("tainted and the next apply replaces it once"), "{}", first.stderr);
    assert!(first.stderr.contains(SIM_BOOT_ERROR), "{}", first.stderr);
    assert!(first.stderr.contains("Resources: 2 added, 0 changed, 0 destroyed."), "{}", first.stderr);
    let app1 = app_id(&t, "bravo-svc");

    // The replacement fails the same way: counted exactly, and replacing stops.
    let second = t.run(&["apply", "--auto-approve"]);
    second.code(1);
    assert!(second.stderr.contains("Resources: 1 added, 0 changed, 1 destroyed."), "{}", second.stderr);
    assert!(second.stderr.contains("does not replace it again until the manifest changes it"), "{}", second.stderr);
    assert!(second.stderr.contains("phala cvms serial-logs app_"), "{}", second.stderr);
    let app2 = app_id(&t, "bravo-svc");
    assert_ne!(app1, app2);

    // From now on the plan shows it as needing attention and changes nothing.
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.bravo failed to boot again after it was replaced"), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("boot error 2: {SIM_BOOT_ERROR}")), "{}", p.stdout);
    assert!(p.stdout.contains("No changes to apply, but 1 CVM needs attention"), "{}", p.stdout);
    // A create posts to `/cvms` (provision, then commit).
    let creates = t.count_exact("POST /api/v1/cvms");
    let third = t.run(&["apply", "--auto-approve"]);
    third.code(1);
    assert!(third.stderr.contains("1 CVM needs attention that applying cannot give"), "{}", third.stderr);
    assert_eq!(t.count_exact("POST /api/v1/cvms"), creates, "nothing was created");
    assert_eq!(app_id(&t, "bravo-svc"), app2, "nothing was replaced");
    let show = t.run(&["state", "show", "cvm.bravo"]);
    assert!(show.ok().stdout.contains("tainted      = true"), "{}", show.stdout);
    assert!(show.stdout.contains("status       = \"error\""), "{}", show.stdout);

    // A changed configuration is tried again; fixed, it converges.
    t.configure(serde_json::json!({"fail_boot": []}));
    t.manifest(&manifest(&["alpha", "bravo"], "web2.yml"));
    let fixed = t.run(&["apply", "--auto-approve"]);
    fixed.ok();
    assert!(fixed.stderr.contains("Resources: 1 added, 1 changed, 1 destroyed."), "{}", fixed.stderr);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_cvm_stopped_outside_teeform_is_started_and_power_stopped_is_kept() {
    let t = env(SimConfig { boot_ms: 100, restart_ms: 100, ..Default::default() });
    t.manifest(&manifest(&["web"], "web.yml"));
    t.run(&["apply", "--auto-approve"]).ok();
    let id = t.cvm_stat("web-svc", "id").as_str().unwrap().to_string();
    // As `phala cvms stop` does.
    assert_eq!(t.api("POST", &format!("/cvms/{id}/stop"), None).0, 200);
    until_status(&t, "web-svc", "stopped");
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web has changed"), "{}", p.stdout);
    assert!(p.stdout.contains("# cvm.web will be started"), "{}", p.stdout);
    assert!(p.stdout.contains("~ power = \"stopped\" -> \"running\""), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{}", p.stdout);
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("Resources: 0 added, 1 changed, 0 destroyed."), "{}", r.stderr);
    assert_eq!(t.count(&format!("POST /api/v1/cvms/{}/start", id.replace('-', ""))), 1);
    assert_eq!(t.count("PATCH"), 0, "starting is not an update");
    assert_eq!(t.cvm_stat("web-svc", "status"), "running");
    t.run(&["plan", "--detailed-exitcode"]).code(0);

    // `power: stopped` stops it and keeps it stopped through a configuration change.
    let stopped = manifest(&["web"], "web.yml") + "    power: stopped\n";
    t.manifest(&stopped);
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("# cvm.web will be stopped"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.cvm_stat("web-svc", "status"), "stopped");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    let restarts = t.cvm_stat("web-svc", "restarts").as_u64().unwrap();
    t.manifest(&stopped.replace("web.yml", "web2.yml"));
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("# cvm.web will be updated in-place\n"), "{}", p.stdout);
    assert!(!p.stdout.contains("restarts the CVM"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.cvm_stat("web-svc", "status"), "stopped");
    assert_eq!(t.cvm_stat("web-svc", "restarts").as_u64().unwrap(), restarts);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // A typo in the run state is a manifest error with a did-you-mean.
    t.manifest(&stopped.replace("stopped", "stoped"));
    let bad = t.run(&["validate"]);
    bad.code(1);
    assert!(bad.stderr.contains("did you mean `stopped`?"), "{}", bad.stderr);
}

#[test]
fn a_cvm_that_breaks_after_running_needs_attention_and_apply_is_not_green() {
    let t = env(SimConfig { boot_ms: 100, restart_ms: 100, ..Default::default() });
    t.manifest(&manifest(&["web"], "web.yml"));
    t.run(&["apply", "--auto-approve"]).ok();
    let id = t.cvm_stat("web-svc", "id").as_str().unwrap().to_string();
    // It restarts outside teeform and fails to come back.
    t.configure(serde_json::json!({"fail_boot": ["web-svc"]}));
    assert_eq!(t.api("POST", &format!("/cvms/{id}/restart"), Some(serde_json::json!({"force": false}))).0, 200);
    until_status(&t, "web-svc", "error");
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web has failed (status error)"), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("boot error: {SIM_BOOT_ERROR}")), "{}", p.stdout);
    assert!(p.stdout.contains("applying sends nothing that would fix it"), "{}", p.stdout);
    let json: serde_json::Value = serde_json::from_str(&t.run(&["plan", "--json"]).ok().stdout).unwrap();
    assert_eq!(json["attention"][0]["problem"]["kind"], "failed");
    assert_eq!(json["attention"][0]["boot_errors"][0], SIM_BOOT_ERROR);
    let mutations = || t.count("POST /api/v1/cvms") + t.count("PATCH") + t.count("DELETE");
    let before = mutations();
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("cvm.web (status error): "), "{}", r.stderr);
    assert_eq!(mutations(), before, "nothing was sent but reads");
    let show = t.run(&["state", "show", "cvm.web"]);
    assert!(show.ok().stdout.contains("status       = \"error\""), "{}", show.stdout);
    // The fix goes out as an update, which boots it again.
    t.configure(serde_json::json!({"fail_boot": []}));
    t.manifest(&manifest(&["web"], "web2.yml"));
    let fixed = t.run(&["apply", "--auto-approve"]);
    fixed.ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_cvm_stuck_booting_needs_attention_and_is_not_replaced() {
    let mut t = env(SimConfig { boot_ms: 60_000, restart_ms: 100, ..Default::default() });
    t.env.insert("TEEFORM_WAIT_TIMEOUT".into(), "0.5".into());
    t.manifest(&manifest(&["web"], "web.yml"));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("the next plan shows whether it runs"), "{}", r.stderr);
    std::thread::sleep(Duration::from_millis(1100));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web is stuck starting"), "{}", p.stdout);
    assert!(p.stdout.contains("phala cvms serial-logs app_"), "{}", p.stdout);
    assert!(!p.stdout.contains("replaced"), "a slow boot is not a failed one: {}", p.stdout);
    // With teeform's usual patience it is just booting.
    t.env.remove("TEEFORM_WAIT_TIMEOUT");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_replica_whose_boot_fails_is_replaced_once_like_a_created_cvm() {
    let t = env(SimConfig { boot_ms: 100, restart_ms: 100, ..Default::default() });
    let replicas = |n: u32| format!("cvms:\n  rolla:\n    name: rolla\n    compose: web.yml\n    replicas: {n}\n");
    t.manifest(&replicas(2));
    t.run(&["apply", "--auto-approve"]).ok();
    // From now on every boot of the app fails: the new instance, then its replacement.
    t.configure(serde_json::json!({"fail_boot": ["rolla"]}));
    t.manifest(&replicas(3));
    let first = t.run(&["apply", "--auto-approve"]);
    first.code(1);
    assert!(first.stderr.contains("tainted and the next apply replaces it once"), "{}", first.stderr);
    assert!(first.stderr.contains("Resources: 1 added, 0 changed, 0 destroyed."), "{}", first.stderr);

    let second = t.run(&["apply", "--auto-approve"]);
    second.code(1);
    assert!(second.stderr.contains("Resources: 1 added, 0 changed, 1 destroyed."), "{}", second.stderr);
    assert!(second.stderr.contains("does not replace it again until the manifest changes it"), "{}", second.stderr);

    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.rolla[2] failed to boot again after it was replaced"), "{}", p.stdout);
    assert!(p.stdout.contains("No changes to apply, but 1 CVM needs attention"), "{}", p.stdout);
    let (replicates, deletes) = (t.count("POST /api/v1/cvms/"), t.count("DELETE "));
    let third = t.run(&["apply", "--auto-approve"]);
    third.code(1);
    assert_eq!((t.count("POST /api/v1/cvms/"), t.count("DELETE ")), (replicates, deletes), "nothing replaced");
}
