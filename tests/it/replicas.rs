//! Replicas and rolling updates (issue 20): one manifest entry run as N instances of one app,
//! scaled out and in, and updated a batch at a time, each batch gated on running and on the
//! `health:` check, a failed batch pausing the roll.

use std::collections::BTreeSet;

use serde_json::Value;
use teeform::sim::SimConfig;

use crate::harness::{TestEnv, WEB};

fn manifest(replicas: u32, extra: &str) -> String {
    format!("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    replicas: {replicas}\n{extra}")
}

fn env(cfg: SimConfig) -> TestEnv {
    let t = TestEnv::with_config(cfg);
    t.write("web.yml", WEB);
    t
}

/// The simulator's instances of the one app: (app id, instances as JSON, most unavailable).
fn app(t: &TestEnv) -> (String, Vec<Value>, u64) {
    let apps = t.stats()["apps"].as_object().unwrap().clone();
    assert_eq!(apps.len(), 1, "one app: {apps:?}");
    let (id, a) = apps.into_iter().next().unwrap();
    (id, a["instances"].as_array().unwrap().clone(), a["max_unavailable"].as_u64().unwrap())
}

fn state_list(t: &TestEnv) -> Vec<String> {
    let out = t.run(&["state", "list"]);
    out.ok();
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
fn scale_one_to_three_to_two_keeps_one_app_and_its_first_cvm() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(1, ""));
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(state_list(&t), ["cvm.web"]);
    let (app_id, first, _) = app(&t);
    let first_uuid = first[0]["vm_uuid"].clone();

    t.manifest(&manifest(3, ""));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web[1] will be created"), "{}", p.stdout);
    assert!(p.stdout.contains("# cvm.web[2] will be created"), "{}", p.stdout);
    assert!(p.stdout.contains("# cvm.web has moved to cvm.web[0]"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 2 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    let (same_app, instances, _) = app(&t);
    assert_eq!(same_app, app_id, "the instances are one app");
    assert_eq!(instances.len(), 3);
    assert!(instances.iter().any(|i| i["vm_uuid"] == first_uuid), "instance 0 is the CVM from before");
    let uuids: BTreeSet<&str> = instances.iter().map(|i| i["vm_uuid"].as_str().unwrap()).collect();
    let ids: BTreeSet<&str> = instances.iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert_eq!((uuids.len(), ids.len()), (3, 3), "each instance has its own vm_uuid and instance id");
    assert_eq!(t.count_exact("POST /api/v1/cvms"), 2, "one create (provision and commit), then replicas");
    assert_eq!(t.count("POST /api/v1/cvms/") - t.count("POST /api/v1/cvms/provision"), 2, "two replicas");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // The SDKs' listing of an app's instances has them all.
    let (status, listed) = t.api("GET", &format!("/apps/{app_id}/cvms"), None);
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(3)));

    t.manifest(&manifest(2, ""));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web[2] will be destroyed"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 0 to add, 0 to change, 1 to destroy."), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]"]);
    assert_eq!(app(&t).1.len(), 2);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // No instance restarted along the way.
    assert!(app(&t).1.iter().all(|i| i["restarts"] == 0 && i["updates"] == 0));
}

/// Five instances, then a compose change with `max_unavailable: 2`.
fn five(t: &TestEnv, extra: &str) {
    t.manifest(&manifest(5, extra));
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(app(t).1.len(), 5);
    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
}

const TWO_AT_A_TIME: &str = "    update_policy: {max_unavailable: 2}\n";

#[test]
fn a_roll_of_five_has_at_most_two_down_and_restarts_each_once() {
    let t = env(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    five(&t, TWO_AT_A_TIME);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(
        p.stdout.contains("# cvm.web will be updated in-place: rolls 5 instances, at most 2 unavailable"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("5 restarts (cvm.web[0], cvm.web[1], cvm.web[2], cvm.web[3], cvm.web[4]), 2 at a time"),
        "{}",
        p.stdout
    );
    assert_eq!(p.stdout.matches("will be updated in-place").count(), 1, "one change in the text: {}", p.stdout);
    assert!(p.stdout.contains("Plan: 0 to add, 5 to change, 0 to destroy. 5 CVM restarts."), "{}", p.stdout);
    // Parallelism would allow all five at once: the policy is what bounds it.
    t.run(&["apply", "--auto-approve", "--parallelism", "10"]).ok();
    let (_, instances, most) = app(&t);
    assert_eq!(most, 2, "the most instances down at once");
    for i in &instances {
        assert_eq!(
            (i["updates"].as_u64(), i["restarts"].as_u64()),
            (Some(1), Some(1)),
            "updated and restarted once: {i}"
        );
    }
    let hashes: BTreeSet<&str> = instances.iter().map(|i| i["compose_hash"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 1, "every instance runs the new compose");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_failing_health_check_pauses_the_roll_and_the_next_apply_resumes_it() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    let health = format!(
        "    update_policy: {{max_unavailable: 2}}\n    health: {{url: \"{}\", expect_status: 200, timeout: 2}}\n",
        t.prefix().replace("/api/v1", "/_sim/health")
    );
    five(&t, &health);
    let before: Vec<String> = app(&t).1.iter().map(|i| i["compose_hash"].as_str().unwrap().to_string()).collect();
    t.configure(serde_json::json!({"health_status": 503}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("did not answer 200"), "{}", r.stderr);
    let (_, instances, most) = app(&t);
    let updated = instances.iter().filter(|i| i["updates"] == 1).count();
    assert_eq!(updated, 2, "the first batch only: {instances:?}");
    assert!(most <= 2);
    let old_left =
        instances.iter().filter(|i| before.contains(&i["compose_hash"].as_str().unwrap().to_string())).count();
    assert_eq!(old_left, 3, "the rest still run the old compose");
    // State says which instances run which revision: the plan rolls the three left.
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("rolls 3 instances, at most 2 unavailable"), "{}", p.stdout);

    t.configure(serde_json::json!({"health_status": 200}));
    t.run(&["apply", "--auto-approve"]).ok();
    let (_, instances, _) = app(&t);
    assert!(instances.iter().all(|i| i["updates"] == 1), "each instance updated exactly once: {instances:?}");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn the_manifest_refuses_what_replicas_cannot_do() {
    let t = env(SimConfig::default());
    t.manifest(&manifest(0, "    update_policy: {max_surge: 1}\n    health: {expect_status: 200}\n"));
    let r = t.run(&["validate"]);
    r.code(1);
    for want in ["`replicas` must be between 1 and 100, found 0", "`health` has no `url`"] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    // The invalid `replicas` is reported once, not again against `max_surge`.
    assert!(!r.stderr.contains("needs `replicas` of 2 or more"), "{}", r.stderr);
    t.manifest(&manifest(1, "    update_policy: {max_surge: 1}\n"));
    let r = t.run(&["validate"]);
    r.code(1);
    assert!(r.stderr.contains("`update_policy.max_surge` needs `replicas` of 2 or more"), "{}", r.stderr);
}

#[test]
fn a_roll_killed_midway_finishes_without_restarting_an_instance_twice() {
    let t = env(SimConfig { restart_ms: 400, boot_ms: 50, ..Default::default() });
    five(&t, "");
    let updated = |t: &TestEnv| app(t).1.iter().filter(|i| i["updates"] == 1).count();
    let mut child = t.spawn_quiet(&["apply", "--auto-approve"]);
    // Killed (SIGKILL) once the second instance's update was accepted, mid-roll.
    let start = std::time::Instant::now();
    while updated(&t) < 2 {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the roll did not get going");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = updated(&t);
    assert!((2..5).contains(&at_kill), "killed mid-roll: {at_kill} of 5 updated");
    t.run(&["apply", "--auto-approve"]).ok();
    let (_, instances, most) = app(&t);
    for i in &instances {
        assert_eq!((i["updates"].as_u64(), i["restarts"].as_u64()), (Some(1), Some(1)), "once each: {i}");
    }
    assert_eq!(most, 1, "one at a time, across both runs");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_replica_made_but_not_recorded_is_adopted_not_made_again() {
    use crate::proxy::{Fault, Proxy};
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{}", p.prefix(), manifest(2, "")));
    // The API makes the replica, but its answer cannot be read: the run cannot know its ids.
    p.on("POST", "/replicas", Fault::rewrite(|_| serde_json::json!({"unexpected": true})));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert_eq!(app(&t).1.len(), 2, "the replica exists");
    assert_eq!(state_list(&t), ["cvm.web[0]"]);
    p.clear();
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert_eq!(app(&t).1.len(), 2, "adopted, not made again: {}{}", r.stdout, r.stderr);
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]"]);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn nodes_spread_instances_and_without_pause_a_failing_check_does_not_stop_the_roll() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    let extra = format!(
        "    nodes: [prod5, prod6]\n    update_policy: {{pause_on_failure: false}}\n    health: {{url: \"{}\", timeout: 1}}\n",
        t.prefix().replace("/api/v1", "/_sim/health")
    );
    t.manifest(&manifest(3, &extra));
    t.run(&["apply", "--auto-approve"]).ok();
    let mut nodes: Vec<u64> = app(&t).1.iter().map(|i| i["node_id"].as_u64().unwrap()).collect();
    nodes.sort();
    assert_eq!(nodes, [1, 1, 2], "prod5, prod6, prod5");
    t.run(&["plan", "--detailed-exitcode"]).code(0);

    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    t.configure(serde_json::json!({"health_status": 500}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    let (_, instances, most) = app(&t);
    assert!(instances.iter().all(|i| i["updates"] == 1), "every batch went: {instances:?}");
    assert_eq!(most, 1, "still one at a time");
    for i in 0..3 {
        assert!(r.stderr.contains(&format!("cvm.web[{i}]: health check")), "{i}: {}", r.stderr);
    }
}

#[test]
fn instance_0_deleted_outside_teeform_comes_back_in_the_same_app() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(3, ""));
    t.run(&["apply", "--auto-approve"]).ok();
    let (app_id, instances, _) = app(&t);
    // The oldest instance is instance 0.
    let first = instances[0]["vm_uuid"].as_str().unwrap().to_string();
    assert_eq!(t.api("DELETE", &format!("/cvms/{first}"), None).0, 204);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("cvm.web[0]"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    let (same, instances, _) = app(&t);
    assert_eq!((same, instances.len()), (app_id, 3), "made from another instance, in the app");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn import_refuses_another_apps_cvm_as_an_instance_and_a_roll_shows_each_instances_own_diff() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(3, "    env: {LOG_LEVEL: info}\n"));
    t.run(&["apply", "--auto-approve"]).ok();
    // A CVM of another app, made by another tool.
    t.create_outside(serde_json::json!({"name": "node-test", "compose_file": {"docker_compose_file": "services: {}\n"}, "vcpu": 1, "memory": 2048}));
    t.manifest(&manifest(4, "    env: {LOG_LEVEL: info}\n"));
    let r = t.run(&["import", "cvm.web[3]", "node-test"]);
    r.code(1);
    assert!(r.stderr.contains("cvm.web[0] is in app"), "{}", r.stderr);
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"], "nothing imported");

    // An instance of the app imported again: its env values are unknown, the others' are not.
    t.manifest(&manifest(3, "    env: {LOG_LEVEL: info}\n"));
    let apps = t.stats()["apps"].as_object().unwrap().clone();
    let ours = apps.values().find(|a| a["instances"].as_array().unwrap().len() == 3).expect("the app of three");
    let uuid = ours["instances"][2]["vm_uuid"].as_str().unwrap().to_string();
    t.run(&["state", "rm", "cvm.web[2]"]).ok();
    t.run(&["import", "cvm.web[2]", &uuid]).ok();
    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("rolls 3 instances"), "{}", p.stdout);
    assert!(
        p.stdout.contains("# cvm.web[2] will be updated in-place in the roll of cvm.web, with its own differences"),
        "{}",
        p.stdout
    );
    assert_eq!(p.stdout.matches("~ LOG_LEVEL").count(), 1, "[2]'s env change only: {}", p.stdout);
}

#[test]
fn nodes_and_health_urls_are_checked_before_apply() {
    let t = env(SimConfig::default());
    for (extra, want, at) in [
        ("    nodes: [\"\"]\n", "a node name is empty", "teeform.yaml:9:13"),
        ("    nodes: []\n", "is an empty list", "teeform.yaml:9:12"),
        ("    node: prod5\n    nodes: [prod5, prod6]\n", "sets both `node` and `nodes`", "teeform.yaml:10:12"),
        ("    health: {url: \"http://x/{nope}\"}\n", "no placeholder `{nope}`", "teeform.yaml:9:19"),
        ("    health: {url: \"http://x/{instance_id\"}\n", "is not closed", "teeform.yaml:9:19"),
    ] {
        t.manifest(&manifest(3, extra));
        let r = t.run(&["validate"]);
        r.code(1);
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
        assert!(r.stderr.contains(at), "{at}: {}", r.stderr);
    }
    // A URL with the placeholders it may have passes.
    t.manifest(&manifest(3, "    health: {url: \"http://x/{index}/{app_id}/{vm_uuid}/{instance_id}\"}\n"));
    t.run(&["validate"]).ok();

    // Names the catalog does not offer are refused at plan, as `node:` is; nothing is made.
    t.manifest(&manifest(3, "    nodes: [prod55, prod5]\n"));
    t.run(&["validate"]).ok();
    let p = t.run(&["plan"]);
    p.code(1);
    for want in ["the API offers no node `prod55`", "did you mean `prod5`?", "offered:", "teeform.yaml:9:12"] {
        assert!(p.stderr.contains(want), "{want}: {}", p.stderr);
    }
    assert_eq!(p.stderr.matches("offers no node").count(), 1, "once, not per instance: {}", p.stderr);
    let a = t.run(&["apply", "--auto-approve"]);
    a.code(1);
    assert_eq!(t.count("POST /api/v1/cvms"), 0, "nothing made");
}

#[test]
fn a_targeted_instance_rolls_alone_and_an_excluded_one_stays_out() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    five(&t, "");
    let p = t.run(&["plan", "--target", "cvm.web[1]"]);
    p.ok();
    assert!(p.stdout.contains("rolls 1 instance,"), "{}", p.stdout);
    assert!(p.stdout.contains("1 restart (cvm.web[1])"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve", "--target", "cvm.web[1]"]).ok();
    let (_, instances, _) = app(&t);
    let updated: Vec<u64> = instances.iter().map(|i| i["updates"].as_u64().unwrap()).collect();
    assert_eq!(updated.iter().sum::<u64>(), 1, "one instance updated: {instances:?}");
    // Excluding instance 0 leaves the others' roll in.
    let p = t.run(&["plan", "--exclude", "cvm.web[0]"]);
    p.ok();
    assert!(p.stdout.contains("rolls 3 instances"), "{}", p.stdout);
    assert!(p.stdout.contains("(cvm.web[2], cvm.web[3], cvm.web[4])"), "{}", p.stdout);
}

#[test]
fn naming_the_node_a_cvm_already_runs_on_changes_nothing() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(1, ""));
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(app(&t).1[0]["node_id"], 1, "the API put it on prod5");
    t.manifest(&manifest(1, "    node: prod5\n"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    // On another node, it is replaced, as before.
    t.manifest(&manifest(1, "    node: prod6\n"));
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("node = \"prod5\" -> \"prod6\" # forces replacement"), "{}", p.stdout);
    // Scaling out with `nodes:` leaves instance 0 where it runs.
    t.manifest(&manifest(3, "    nodes: [prod5, prod6]\n"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("Plan: 2 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn status_scale_in_and_renumbering_say_what_replicas_did() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(1, ""));
    t.run(&["apply", "--auto-approve"]).ok();
    // 1 → 3 with a compose change: instance 0 is the CVM that was `cvm.web`, not moved from itself.
    t.manifest(&manifest(3, ""));
    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    let p = t.run(&["plan"]);
    p.ok();
    assert!(p.stdout.contains("# (was cvm.web)"), "{}", p.stdout);
    assert!(!p.stdout.contains("moved from cvm.web"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    // No row for the entry itself, only its instances.
    for args in [&["status"][..], &["state", "list", "-l"]] {
        let s = t.run(args);
        s.ok();
        assert!(!s.stdout.contains("not created"), "{args:?}: {}", s.stdout);
        assert_eq!(s.stdout.matches("cvm.web[").count(), 3, "{args:?}: {}", s.stdout);
    }
    let j = t.run(&["status", "--json"]);
    assert!(!j.ok().stdout.contains("\"cvm.web\""), "{}", j.stdout);
    // Scale-in names the count, not a CVM gone from the manifest.
    t.manifest(&manifest(2, ""));
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("# cvm.web[2] will be destroyed (replicas 3 → 2)"), "{}", p.stdout);
    // A count written as a float is checked against the range before any hint to rewrite it.
    t.manifest(&manifest(1, "").replace("replicas: 1", "replicas: 1e3"));
    let v = t.run(&["validate"]);
    v.code(1);
    assert!(v.stderr.contains("out of range"), "{}", v.stderr);
    assert!(!v.stderr.contains("write it as"), "{}", v.stderr);
    t.manifest(&manifest(1, "").replace("replicas: 1", "replicas: 2e0"));
    let v = t.run(&["validate"]);
    assert!(v.stderr.contains("write it as a whole number: `2`"), "{}", v.stderr);
}

#[test]
fn a_paused_roll_reports_its_failed_precondition_once() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    let health = format!(
        "    update_policy: {{max_unavailable: 2}}\n    health: {{url: \"{}\", timeout: 1}}\n",
        t.prefix().replace("/api/v1", "/_sim/health")
    );
    five(&t, &health);
    t.configure(serde_json::json!({"health_status": 503}));
    t.run(&["apply", "--auto-approve"]).code(1);
    // The next apply finds instance 0's check failing before it touches [2] and [3].
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("precondition: cvm.web[0] runs and passes its health check"), "{all}");
    assert!(all.contains("skipped: the precondition on cvm.web[0] failed"), "{all}");
    assert!(all.contains("1 failed"), "one failure, not one per waiting instance: {all}");
    assert!(!all.contains("2 failed"), "{all}");
    let (_, instances, _) = app(&t);
    assert_eq!(instances.iter().filter(|i| i["updates"] == 1).count(), 2, "[2] and [3] untouched: {instances:?}");
}

#[test]
fn a_target_says_which_instance_it_pulls_in_and_why() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(2, ""));
    let p = t.run(&["plan", "--target", "cvm.web[1]"]);
    p.ok();
    assert!(p.stdout.contains("warning: cvm.web[0]: pulled in: cvm.web[1] is made from it"), "{}", p.stdout);
    let j = t.run(&["plan", "--json", "--target", "cvm.web[1]"]);
    assert!(j.ok().stdout.contains("cvm.web[0]: pulled in: cvm.web[1] is made from it"), "{}", j.stdout);
    t.run(&["apply", "--auto-approve", "--target", "cvm.web[1]"]).ok();
    // Both are in state now: the next targeted plan pulls nothing in.
    let p = t.run(&["plan", "--target", "cvm.web[1]"]);
    assert!(!p.ok().stdout.contains("pulled in"), "{}", p.stdout);
}

/// `state mv` of an instance to a gap: the plan destroys it for its index, not as a scale-in
/// from the highest index plus one; and `state mv` of a whole CVM notes the manifest rename
/// only when the manifest has not been renamed yet.
#[test]
fn state_mv_to_a_gap_and_its_manifest_note_say_what_is_true() {
    let t = env(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.manifest(&manifest(3, ""));
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["state", "mv", "cvm.web[2]", "cvm.web[7]"]).ok();
    let p = t.run(&["plan"]);
    let out = &p.ok().stdout;
    assert!(out.contains("# cvm.web[7] will be destroyed (its index is beyond `replicas: 3`)"), "{out}");
    assert!(!out.contains("replicas 8"), "{out}");
    // The plan names the move that keeps the instance; following it leaves nothing to do.
    let hint = "run `teeform state mv 'cvm.web[7]' 'cvm.web[2]'` before applying";
    assert!(p.stderr.contains(hint) || out.contains(hint), "{out}\n{}", p.stderr);
    t.run(&["state", "mv", "cvm.web[7]", "cvm.web[2]"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);

    // The manifest renamed first: nothing to say.
    t.manifest(&manifest(3, "").replace("  web:", "  site:"));
    let mv = t.run(&["state", "mv", "cvm.web", "cvm.site"]);
    assert!(!mv.ok().stderr.contains("rename `web:`"), "{}", mv.stderr);
    assert!(!mv.stderr.contains("the next plan"), "{}", mv.stderr);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // The manifest not renamed: say so.
    let mv = t.run(&["state", "mv", "cvm.site", "cvm.web"]);
    assert!(mv.ok().stderr.contains("rename `site:` to `web:` under `cvms:` in the manifest too"), "{}", mv.stderr);
}
