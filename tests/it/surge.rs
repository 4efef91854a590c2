//! Rolls with surge instances (`update_policy.max_surge`, issue 20): temporary extra
//! instances on the new revision keep the app at full strength while its instances are
//! updated in place, each once, and go when the roll ends. The simulator counts the bounds.

use std::collections::BTreeSet;

use serde_json::Value;
use teeform::sim::SimConfig;

use crate::harness::{TestEnv, WEB};

fn manifest(replicas: u32, extra: &str) -> String {
    format!("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    replicas: {replicas}\n{extra}")
}

/// The one app's stats in the simulator.
fn app(t: &TestEnv) -> Value {
    let apps = t.stats()["apps"].as_object().unwrap().clone();
    assert_eq!(apps.len(), 1, "one app: {apps:?}");
    apps.into_iter().next().unwrap().1
}

fn uuids(a: &Value) -> BTreeSet<String> {
    a["instances"].as_array().unwrap().iter().map(|i| i["vm_uuid"].as_str().unwrap().to_string()).collect()
}

fn state_list(t: &TestEnv) -> Vec<String> {
    t.run(&["state", "list"]).ok().stdout.lines().map(str::to_string).collect()
}

/// `replicas` instances applied, then a compose change to roll; returns their vm_uuids.
fn rolled(t: &TestEnv, replicas: u32, extra: &str) -> BTreeSet<String> {
    t.write("web.yml", WEB);
    t.manifest(&manifest(replicas, extra));
    t.run(&["apply", "--auto-approve"]).ok();
    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    uuids(&app(t))
}

/// Each instance (the surge ones gone) updated and restarted once, on one compose, with the
/// vm_uuids it had before the roll.
fn each_once(t: &TestEnv, before: &BTreeSet<String>) {
    let a = app(t);
    assert_eq!(&uuids(&a), before, "the same instances: {a}");
    for i in a["instances"].as_array().unwrap() {
        assert_eq!((i["updates"].as_u64(), i["restarts"].as_u64()), (Some(1), Some(1)), "once: {i}");
    }
    let hashes: BTreeSet<&str> =
        a["instances"].as_array().unwrap().iter().map(|i| i["compose_hash"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 1, "one revision: {a}");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_surge_of_one_keeps_three_running_and_goes_when_the_roll_ends() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    let before = rolled(&t, 3, "    update_policy: {max_unavailable: 0, max_surge: 1}\n");
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    for want in [
        "# cvm.web[3] will be created: a surge instance for the roll of cvm.web",
        "# cvm.web will be updated in-place: rolls 3 instances, at most 0 unavailable, 1 surge instance (made, then deleted)",
        "3 restarts (cvm.web[0], cvm.web[1], cvm.web[2]), 1 at a time",
        "# cvm.web[3] will be destroyed when the roll ends",
        "Plan: 1 to add, 3 to change, 1 to destroy. 3 CVM restarts.",
        "restarts the instance: one update with one restart; with 1 surge instance standing in, no instance of the app is unavailable",
    ] {
        assert!(p.stdout.contains(want), "{want}: {}", p.stdout);
    }
    assert!(!p.stdout.contains("expect downtime"), "{}", p.stdout);
    let j: Value = serde_json::from_str(&t.run(&["plan", "--json"]).ok().stdout).unwrap();
    assert_eq!(j["rolls"][0]["surge"], serde_json::json!(["cvm.web[3]"]), "{}", j["rolls"]);
    assert_eq!(
        (j["summary"]["add"].as_u64(), j["summary"]["destroy"].as_u64(), j["summary"]["restarts"].as_u64()),
        (Some(1), Some(1), Some(3))
    );
    let surge = j["resource_changes"].as_array().unwrap().iter().find(|c| c["address"] == "cvm.web[3]").unwrap();
    assert_eq!(surge["actions"], serde_json::json!(["create"]));
    assert_eq!(surge["reasons"][0]["reason"], "surge");

    let r = t.run(&["apply", "--auto-approve", "--parallelism", "10"]);
    r.ok();
    assert!(r.stderr.contains("1 added, 3 changed, 1 destroyed"), "{}", r.stderr);
    assert_eq!(counters(&r.stderr), (5, 5), "the surge's create and delete are steps: {}", r.stderr);
    let a = app(&t);
    assert_eq!(a["min_running"], 3, "never fewer than 3 running during the roll: {a}");
    assert_eq!(a["max_instances"], 4, "never more than 4 instances: {a}");
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    each_once(&t, &before);
}

#[test]
fn one_unavailable_and_one_surge_on_five_keeps_four_running() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    let before = rolled(&t, 5, "    update_policy: {max_unavailable: 1, max_surge: 1}\n");
    let p = t.run(&["plan"]);
    for want in [
        "5 restarts (cvm.web[0], cvm.web[1], cvm.web[2], cvm.web[3], cvm.web[4]), 2 at a time",
        "restarts the instance: one update with one restart; at most 1 instance of the app unavailable at once",
    ] {
        assert!(p.ok().stdout.contains(want), "{want}: {}", p.stdout);
    }
    let r = t.run(&["apply", "--auto-approve", "--parallelism", "10", "--json"]);
    r.ok();
    // The stream announces every step it then reports, the surge's delete too.
    let events: Vec<Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let n = |ty: &str| events.iter().filter(|e| e["type"] == ty).count();
    assert_eq!((n("planned_change"), n("apply_start"), n("apply_complete")), (7, 7, 7), "{}", r.stdout);
    let a = app(&t);
    assert_eq!(a["min_running"], 4, "N - max_unavailable: {a}");
    assert_eq!(a["max_instances"], 6, "N + max_surge: {a}");
    assert_eq!(a["max_unavailable"], 2, "a batch of two, the surge standing in for one: {a}");
    each_once(&t, &before);
}

/// Every `[n/total]` of an apply's progress lines: n never past the total; the last (n, total).
fn counters(stderr: &str) -> (usize, usize) {
    let mut last = (0, 0);
    for l in stderr.lines().filter_map(|l| l.trim_start().strip_prefix('[')) {
        let Some((n, rest)) = l.split_once('/') else { continue };
        let Some((total, _)) = rest.split_once(']') else { continue };
        let (Ok(n), Ok(total)) = (n.parse::<usize>(), total.parse::<usize>()) else { continue };
        assert!(n <= total, "[{n}/{total}]: {stderr}");
        last = (n, total);
    }
    last
}

/// `max_unavailable: 0, max_surge: 1` on 3 with a `health:` check the simulator fails.
fn paused(t: &TestEnv) -> BTreeSet<String> {
    let health = format!(
        "    update_policy: {{max_unavailable: 0, max_surge: 1}}\n    health: {{url: \"{}\", timeout: 1}}\n",
        t.prefix().replace("/api/v1", "/_sim/health")
    );
    let before = rolled(t, 3, &health);
    t.configure(serde_json::json!({"health_status": 503}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("cvm.web[3]"), "{}", r.stderr);
    // Every step counted is reported: the surge's delete too, kept for the run that ends the roll.
    assert_eq!(counters(&r.stderr), (5, 5), "{}", r.stderr);
    assert!(r.stderr.contains("kept: the roll did not finish"), "{}", r.stderr);
    assert!(r.stderr.contains("1 failed"), "the surge's failed gate stays a failure: {}", r.stderr);
    // The surge instance failed its gate: no instance was touched, the surge is kept.
    let a = app(t);
    assert_eq!(
        a["instances"].as_array().unwrap().iter().filter(|i| i["updates"] == 1).count(),
        1,
        "the surge only: {a}"
    );
    assert_eq!(state_list(t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]", "cvm.web[3]"]);
    let shown = t.run(&["state", "show", "cvm.web[3]", "--json"]);
    assert!(shown.ok().stdout.contains("\"surge\": true"), "{}", shown.stdout);
    t.configure(serde_json::json!({"health_status": 200}));
    before
}

#[test]
fn a_failing_gate_keeps_the_surge_instance_and_the_next_apply_resumes_and_removes_it() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    let before = paused(&t);
    let p = t.run(&["plan"]);
    for want in [
        "rolls 3 instances, at most 0 unavailable, 1 surge instance (left by a paused roll: kept until the roll ends, then deleted)",
        "Plan: 0 to add, 3 to change, 1 to destroy.",
    ] {
        assert!(p.ok().stdout.contains(want), "{want}: {}", p.stdout);
    }
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert_eq!(counters(&r.stderr), (4, 4), "3 updates and the kept surge's delete: {}", r.stderr);
    assert_eq!(app(&t)["min_running"], 3);
    assert_eq!(app(&t)["max_instances"], 4, "the surge instance was made once");
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    each_once(&t, &before);
}

#[test]
fn a_surge_instance_left_when_no_roll_remains_is_destroyed_as_such() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    paused(&t);
    // The change is taken back: nothing left to roll.
    t.write("web.yml", WEB);
    let p = t.run(&["plan"]);
    for want in [
        "# cvm.web[3] will be destroyed (a surge instance left by a roll that is now done)",
        "Plan: 0 to add, 0 to change, 1 to destroy.",
    ] {
        assert!(p.ok().stdout.contains(want), "{want}: {}", p.stdout);
    }
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// `max_surge` lowered to 0 while a paused roll kept a surge instance: the roll goes on, and
/// the surge instance stays as extra capacity until it ends (never deleted before the roll).
#[test]
fn a_surge_kept_beyond_a_lowered_max_surge_goes_when_the_roll_ends() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    let before = paused(&t);
    t.manifest(&manifest(3, "    update_policy: {max_unavailable: 1, max_surge: 0}\n"));
    let p = t.run(&["plan"]);
    p.ok();
    for want in [
        "rolls 3 instances, at most 1 unavailable, 1 surge instance (left by a paused roll: kept until the roll ends, then deleted; max_surge is now 0)",
        "# cvm.web[3] will be destroyed when the roll ends",
        "Plan: 0 to add, 3 to change, 1 to destroy.",
    ] {
        assert!(p.stdout.contains(want), "{want}: {}", p.stdout);
    }
    assert!(!p.stdout.contains("now done"), "the roll is not done: {}", p.stdout);
    let r = t.run(&["apply", "--auto-approve", "--parallelism", "10"]);
    r.ok();
    assert_eq!(counters(&r.stderr), (4, 4), "{}", r.stderr);
    let a = app(&t);
    assert_eq!(a["min_running"], 3, "one of 3 down at a time, the surge still serving: {a}");
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    each_once(&t, &before);
}

/// Updates of the original instances (`before`) the simulator counted.
fn updated(t: &TestEnv, before: &BTreeSet<String>) -> usize {
    let a = app(t);
    let mine = |i: &&Value| before.contains(i["vm_uuid"].as_str().unwrap());
    a["instances"].as_array().unwrap().iter().filter(mine).filter(|i| i["updates"] == 1).count()
}

#[test]
fn killed_at_any_point_of_a_surge_roll_the_next_apply_finishes_it() {
    // (where the kill lands, when it is reached)
    type Point = (&'static str, fn(&TestEnv, &BTreeSet<String>) -> bool);
    let points: [Point; 3] = [
        ("after the surge replicate", |t, _| app(t)["instances"].as_array().unwrap().len() >= 4),
        ("mid-roll", |t, before| updated(t, before) >= 1),
        ("before the surge delete", |t, before| updated(t, before) >= 3),
    ];
    for (at, reached) in points {
        let t = TestEnv::with_config(SimConfig { restart_ms: 400, boot_ms: 400, ..Default::default() });
        let before = rolled(&t, 3, "    update_policy: {max_unavailable: 0, max_surge: 1}\n");
        let mut child = t.spawn_quiet(&["apply", "--auto-approve"]);
        let start = std::time::Instant::now();
        while !reached(&t, &before) {
            assert!(start.elapsed() < std::time::Duration::from_secs(60), "{at}: not reached");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // SIGKILL.
        child.kill().unwrap();
        child.wait().unwrap();
        let r = t.run(&["apply", "--auto-approve"]);
        r.ok();
        let a = app(&t);
        assert_eq!(a["max_instances"], 4, "{at}: no second surge instance: {a}");
        assert_eq!(a["min_running"], 3, "{at}: {a}");
        assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"], "{at}");
        each_once(&t, &before);
    }
}

#[test]
fn both_bounds_zero_is_refused_where_it_is_written() {
    let t = TestEnv::with_config(SimConfig::default());
    t.write("web.yml", WEB);
    t.manifest(&manifest(3, "    update_policy: {max_unavailable: 0}\n"));
    let r = t.run(&["validate"]);
    r.code(1);
    for want in ["update_policy.max_unavailable and max_surge are both 0", "teeform.yaml:9:38", "max_surge: 1"] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    t.manifest(&manifest(1, "    update_policy: {max_surge: 1}\n"));
    let r = t.run(&["validate"]);
    r.code(1);
    assert!(r.stderr.contains("needs `replicas` of 2 or more"), "{}", r.stderr);
    t.manifest(&manifest(3, "    update_policy: {max_unavailable: 0, max_surge: 2}\n"));
    t.run(&["validate"]).ok();
}

/// A roll need not start at instance 0: a `--target`, a resumed roll and a roll beside a
/// scale-out each roll some subset, and no instance of it restarts before the surge runs.
#[test]
fn a_roll_of_any_subset_waits_for_its_surge_first() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    let policy = "    update_policy: {max_unavailable: 0, max_surge: 1}\n";
    let before = rolled(&t, 4, policy);
    // Targeted: [1] rolls alone, with its surge.
    let r = t.run(&["apply", "--auto-approve", "--target", "cvm.web[1]", "--parallelism", "10"]);
    r.ok();
    let a = app(&t);
    assert_eq!(a["min_running"], 4, "targeted: [1] waited for the surge: {a}\n{}", r.stderr);
    assert_eq!(updated(&t, &before), 1, "{a}");
    // Resumed: [0], [2], [3], the first of them after the surge.
    t.run(&["apply", "--auto-approve", "--parallelism", "10"]).ok();
    let a = app(&t);
    assert_eq!(a["min_running"], 4, "resumed: {a}");
    assert_eq!(a["max_instances"], 5, "{a}");
    assert_eq!(state_list(&t), ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]", "cvm.web[3]"]);
    each_once(&t, &before);

    // Beside a scale-out: [1] rolled first, then 5 replicas and the rest of the roll.
    let t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    rolled(&t, 4, policy);
    t.run(&["apply", "--auto-approve", "--target", "cvm.web[1]"]).ok();
    t.manifest(&manifest(5, policy));
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("rolls 3 instances, at most 0 unavailable, 1 surge instance"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve", "--parallelism", "10"]).ok();
    let a = app(&t);
    assert_eq!(a["min_running"], 4, "never fewer than the 4 serving before: {a}");
    assert_eq!(state_list(&t).len(), 5);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// Ctrl-C during a roll: the batch in flight finishes its wait and its `health:` check (not
/// failed for the interrupt), the next batches do not start, and the next apply finishes.
#[test]
fn ctrl_c_lets_the_batch_in_flight_pass_its_check_and_stops_the_roll() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 100, ..Default::default() });
    let health = format!(
        "    update_policy: {{max_unavailable: 0, max_surge: 1}}\n    health: {{url: \"{}\", timeout: 30}}\n",
        t.prefix().replace("/api/v1", "/_sim/health")
    );
    let before = rolled(&t, 3, &health);
    t.configure(serde_json::json!({"health_status": 503}));
    let child = t
        .command(&["apply", "--auto-approve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("teeform runs");
    // The surge instance made, brought to the new revision and running: its check is failing.
    let start = std::time::Instant::now();
    let surge_up = |t: &TestEnv| {
        app(t)["instances"].as_array().unwrap().iter().any(|i| i["updates"] == 1 && i["status"] == "running")
    };
    while !surge_up(&t) {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the surge never ran");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    t.configure(serde_json::json!({"health_status": 200}));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupt received"), "{err}");
    assert!(err.contains("0 failed") && !err.contains("✗"), "the step in flight did not fail: {err}");
    assert!(err.contains("skipped: the run was interrupted"), "{err}");
    assert!(err.contains("1 added"), "the surge finished and passed its check: {err}");
    assert_eq!(updated(&t, &before), 0, "no instance restarted after the interrupt");
    let a = app(&t);
    assert_eq!(a["instances"].as_array().unwrap().len(), 4, "the surge kept for the next apply: {a}");
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(app(&t)["min_running"], 3);
    each_once(&t, &before);
}
