//! Plan and apply against the simulator: creates, one-update-per-CVM, saved plans, destroy.

use crate::harness::{TestEnv, WEB};

const THREE: &str = "cvms:
  db:
    name: db-main
    compose: db.yml
    vcpu: 1
    memory: 2048
  api:
    name: api-main
    compose: api.yml
    vcpu: 1
    memory: 2048
    env:
      DB_APP_ID: ${cvm.db.app_id}
      MODE: production
  worker:
    name: worker-main
    compose: worker.yml
    depends_on: [db]
outputs:
  api_app_id: ${cvm.api.app_id}
";

fn three() -> TestEnv {
    let t = TestEnv::new();
    t.write("db.yml", "services:\n  db:\n    image: postgres:16\n");
    t.write("api.yml", WEB);
    t.write("worker.yml", "services:\n  worker:\n    image: busybox:1.36\n");
    t.manifest(THREE);
    t
}

#[test]
fn three_cvms_with_a_dependency_then_one_unified_update() {
    let t = three();
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("Plan: 3 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.stats()["cvm_count"], 3);
    // The dependency's app id reached the dependent's env.
    let db_app = t.cvm_stat("db-main", "app_id");
    let env = t.api("GET", "/cvms/api-main", None).1;
    let id = env["vm_uuid"].as_str().unwrap().to_string();
    let got = t.sim_get(&format!("/_sim/cvms/{id}/env"));
    assert_eq!(got["env"]["DB_APP_ID"], db_app);
    assert_eq!(got["env"]["MODE"], "production");

    t.run(&["plan", "--detailed-exitcode"]).code(0);

    // Change api's compose file and vcpu: one update call, one restart.
    t.write("api.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    t.manifest(&THREE.replacen("vcpu: 1\n    memory: 2048\n    env", "vcpu: 2\n    memory: 2048\n    env", 1));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    let out = &p.stdout;
    assert!(out.contains("# cvm.api will be updated in-place (restarts the CVM)"), "{out}");
    assert!(out.contains("~ vcpu = 1 -> 2"), "{out}");
    assert!(out.contains("-    image: nginx:1.27") && out.contains("+    image: nginx:1.28"), "{out}");
    assert!(out.contains("note: restarts the CVM"), "{out}");
    assert!(out.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{out}");

    let patches_before = t.count("PATCH /api/v1/cvms/");
    let restarts_before = t.cvm_stat("api-main", "restarts").as_u64().unwrap();
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.count("PATCH /api/v1/cvms/") - patches_before, 1, "exactly one update call");
    assert_eq!(t.cvm_stat("api-main", "restarts").as_u64().unwrap() - restarts_before, 1, "exactly one restart");
    for other in ["db-main", "worker-main"] {
        assert_eq!(t.cvm_stat(other, "restarts"), 0, "{other} untouched");
    }
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains("No changes."), "{}", p.stdout);

    let d = t.run(&["destroy", "--auto-approve"]);
    d.ok();
    assert!(d.stderr.contains("Destroy complete! Resources: 3 destroyed."), "{}", d.stderr);
    assert!(d.stdout.contains("  - api_app_id = \""), "the output goes too: {}", d.stdout);
    assert_eq!(t.stats()["cvm_count"], 0);
    assert!(t.run(&["state", "list"]).ok().stdout.is_empty());
}

#[test]
fn saved_plan_applies_exactly_and_goes_stale() {
    let t = three();
    t.run(&["plan", "--out", "p1.json"]).ok();
    t.run(&["plan", "--out", "p2.json"]).ok();
    t.run(&["apply", "p1.json"]).ok();
    assert_eq!(t.stats()["cvm_count"], 3);
    let r = t.run(&["apply", "p2.json"]);
    r.code(1);
    assert!(r.stderr.contains("stale"), "{}", r.stderr);
    assert_eq!(t.stats()["cvm_count"], 3, "a stale plan changes nothing");
    // show reads a saved plan without state or network.
    let s = t.run(&["show", "p1.json", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.ok().stdout).unwrap();
    assert_eq!(v["resource_changes"].as_array().unwrap().len(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(t.path("p1.json")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn apply_without_terminal_needs_auto_approve() {
    let t = three();
    let r = t.run(&["apply"]);
    r.code(1);
    assert!(r.stderr.contains("--auto-approve"), "{}", r.stderr);
    assert_eq!(t.stats()["cvm_count"], 0);
}

#[test]
fn a_failing_cvm_does_not_stop_independent_ones() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  good:\n    name: good-one\n    compose: web.yml\n  bad:\n    name: bad-one\n    compose: web.yml\n    image: no-such-image\n  after:\n    name: after-bad\n    compose: web.yml\n    depends_on: [bad]\n");
    // A plan would refuse the unknown image; without refresh it is sent, and the API refuses.
    let r = t.run(&["apply", "--auto-approve", "--refresh=false"]);
    r.code(1);
    assert!(r.stderr.contains("did not check image of cvm.bad against the API's catalogs"), "{}", r.stderr);
    assert!(r.stderr.contains("ERR-02-010"), "{}", r.stderr);
    assert!(r.stderr.contains("cvm.after: skipped"), "{}", r.stderr);
    let list = t.run(&["state", "list"]).ok().stdout.clone();
    assert_eq!(list.trim(), "cvm.good", "state keeps every success");
    assert_eq!(t.stats()["cvm_count"], 1);
}

#[test]
fn drift_outside_teeform_is_shown_and_undone() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 1\n    memory: 2048\n");
    t.run(&["apply", "--auto-approve"]).ok();
    let (code, _) = t.api("PATCH", "/cvms/web-main", Some(serde_json::json!({"vcpu": 4})));
    assert_eq!(code, 202);
    t.settle();
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("Objects have changed outside of teeform"), "{}", p.stdout);
    assert!(p.stdout.contains("~ vcpu = 4 -> 1"), "{}", p.stdout);
    let r = t.run(&["plan", "--refresh-only", "--detailed-exitcode"]);
    r.code(2);
    assert!(!r.stdout.contains("Plan:"), "{}", r.stdout);
    t.run(&["plan", "--refresh=false", "--detailed-exitcode"]).code(0);
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn deleted_outside_teeform_is_created_again() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.api("DELETE", "/cvms/web-main", None).0, 204);
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("# cvm.web has been deleted"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 1 to add"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.stats()["cvm_count"], 1);
}

#[test]
fn import_adopts_an_existing_cvm() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    // Created by another tool.
    t.create_outside(serde_json::json!({"name": "legacy-web", "compose_file": {"docker_compose_file": WEB}, "vcpu": 1, "memory": 2048}));
    t.manifest("cvms:\n  web:\n    name: legacy-web\n    compose: web.yml\n    vcpu: 2\n");
    t.run(&["import", "cvm.web", "legacy-web"]).ok();
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("~ vcpu = 1 -> 2"), "{}", p.stdout);
    assert!(p.stdout.contains("0 to add"), "{}", p.stdout);
    let again = t.run(&["import", "cvm.web", "legacy-web"]);
    again.code(1);
    assert!(again.stderr.contains("already in state"));
}

#[test]
fn removing_a_cvm_from_the_manifest_destroys_it() {
    let t = three();
    t.run(&["apply", "--auto-approve"]).ok();
    t.manifest(&THREE.replace("  worker:\n    name: worker-main\n    compose: worker.yml\n    depends_on: [db]\n", ""));
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("# cvm.worker will be destroyed (it is no longer in the manifest)"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.stats()["cvm_count"], 2);
    assert!(t.stats()["cvms"].get("worker-main").is_none());
}

#[test]
fn state_commands_and_outputs() {
    let t = three();
    t.run(&["apply", "--auto-approve"]).ok();
    let list = t.run(&["state", "list"]);
    assert_eq!(list.ok().stdout, "cvm.api\ncvm.db\ncvm.worker\n");
    let show = t.run(&["state", "show", "cvm.api", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.ok().stdout).unwrap();
    assert_eq!(v["attrs"]["env"]["MODE"], "production");
    let out = t.run(&["output", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(v["api_app_id"]["value"], t.cvm_stat("api-main", "app_id"));
    let raw = t.run(&["output", "api_app_id", "--raw"]);
    assert_eq!(raw.ok().stdout.trim(), t.cvm_stat("api-main", "app_id").as_str().unwrap());
    t.run(&["state", "show", "cvm.nope"]).code(1);
    t.run(&["state", "rm", "cvm.worker"]).ok();
    // Forgotten, but its CVM is still there: a refreshing plan points at import instead of
    // planning a second CVM of the same name; planning from state alone cannot know.
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("`teeform import cvm.worker "), "{}", r.stderr);
    assert!(t.run(&["plan", "--refresh=false"]).ok().stdout.contains("# cvm.worker will be created"));
}

#[test]
fn state_made_at_one_endpoint_is_not_planned_against_another() {
    let t = three();
    t.run(&["apply", "--auto-approve"]).ok();
    let api_requests = |t: &TestEnv| -> u64 {
        let stats = t.stats();
        let counts = stats["requests"].as_object().unwrap();
        counts.iter().filter(|(k, _)| k.contains("/api/v1")).map(|(_, v)| v.as_u64().unwrap()).sum()
    };
    let requests = api_requests(&t);
    let moved = std::fs::read_to_string(t.path("teeform.yaml")).unwrap().replace(&t.prefix(), "local");
    t.write("teeform.yaml", &moved);
    for args in [&["plan"][..], &["apply", "--auto-approve"], &["destroy", "--auto-approve"]] {
        let r = t.run(args);
        r.code(1);
        assert!(r.stderr.contains("lives at $API, but the manifest now points at local"), "{args:?}: {}", r.stderr);
    }
    assert_eq!(t.stats()["cvm_count"], 3);
    assert_eq!(api_requests(&t), requests, "nothing was sent to the recorded endpoint");
    // The same endpoint written with a trailing slash is the same endpoint.
    t.write("teeform.yaml", &moved.replace("endpoint: local", &format!("endpoint: {}/", t.prefix())));
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // Importing at another endpoint into a state whose CVMs live elsewhere is refused too.
    t.run(&["state", "rm", "cvm.api"]).ok();
    t.write("teeform.yaml", &moved);
    let r = t.run(&["import", "cvm.api", "x"]);
    r.code(1);
    assert!(r.stderr.contains("lives at $API"), "{}", r.stderr);
}

#[test]
fn a_name_taken_outside_this_state_is_refused_with_an_import_hint() {
    let a = three();
    a.run(&["apply", "--auto-approve"]).ok();
    // Another directory with its own (empty) state, pointed at the same cloud.
    let b = TestEnv::new();
    for f in ["db.yml", "api.yml", "worker.yml"] {
        b.write(f, &std::fs::read_to_string(a.path(f)).unwrap());
    }
    b.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{THREE}", a.prefix()));
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let r = b.run(args);
        r.code(1);
        assert!(r.stderr.contains("cvm.api (and 2 more): a CVM with that name already exists"), "{}", r.stderr);
    }
    assert_eq!(a.stats()["cvm_count"], 3, "nothing was created");
    // Planning from state alone cannot know; it plans the creates.
    b.run(&["plan", "--refresh=false"]).ok();
    // The hints are commands that work.
    let r = b.run(&["plan"]);
    let imports: Vec<Vec<String>> = r
        .stderr
        .lines()
        .filter_map(|l| l.split('`').nth(1))
        .filter(|c| c.starts_with("teeform import "))
        .map(|c| c.split(' ').skip(1).map(str::to_string).collect())
        .collect();
    assert_eq!(imports.len(), 3, "{}", r.stderr);
    for args in &imports {
        b.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    }
    let r = b.run(&["plan"]);
    r.ok();
    assert!(!r.stdout.contains("will be created"), "{}", r.stdout);
    assert_eq!(a.stats()["cvm_count"], 3);
}
