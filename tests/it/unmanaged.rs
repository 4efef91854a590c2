//! Instances of a managed app made outside teeform (`phala cvms replicate`, `POST
//! /cvms/{id}/replicas`): refresh finds them from what it already reads, the plan shows each
//! with the `teeform import` that would manage it and changes nothing else, and an interrupted
//! replicate adopts its own instance, never another one.

use serde_json::{Value, json};
use teeform::sim::SimConfig;

use crate::harness::{TestEnv, WEB};
use crate::proxy::{Fault, Proxy};

fn manifest(replicas: u32) -> String {
    format!("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    replicas: {replicas}\n")
}

fn env() -> TestEnv {
    let t = TestEnv::with_config(SimConfig { restart_ms: 100, boot_ms: 100, ..Default::default() });
    t.write("web.yml", WEB);
    t
}

/// The one app's id and its instances' vm_uuids, oldest first.
fn app(t: &TestEnv) -> (String, Vec<String>) {
    let apps = t.stats()["apps"].as_object().unwrap().clone();
    assert_eq!(apps.len(), 1, "one app: {apps:?}");
    let (id, a) = apps.into_iter().next().unwrap();
    (id, a["instances"].as_array().unwrap().iter().map(|i| i["vm_uuid"].as_str().unwrap().to_string()).collect())
}

/// Another instance of the CVM `source`, made as another tool would; its vm_uuid.
fn replicate_outside(t: &TestEnv, source: &str) -> String {
    let (code, vm) = t.api("POST", &format!("/cvms/{source}/replicas"), Some(json!({})));
    assert_eq!(code, 200, "{vm}");
    t.settle();
    vm["vm_uuid"].as_str().unwrap().to_string()
}

fn endpoint(t: &TestEnv, e: &str) -> u64 {
    t.stats()["endpoints"][e].as_u64().unwrap_or(0)
}

const APP_CVMS: &str = "GET /api/v1/apps/{app_id}/cvms";

#[test]
fn an_instance_replicated_outside_is_shown_with_its_import_and_changes_nothing() {
    let t = env();
    t.manifest(&manifest(2));
    t.run(&["apply", "--auto-approve"]).ok();
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(!p.stdout.contains("does not manage"), "nothing made outside: {}", p.stdout);
    let (app_id, uuids) = app(&t);
    let outside = replicate_outside(&t, &uuids[0]);

    // The list's one page tells: no request beyond it.
    let total = |t: &TestEnv| t.stats()["total_requests"].as_u64().unwrap();
    let before = total(&t);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert_eq!(total(&t) - before, 1, "one list page: {}", t.stats()["endpoints"]);
    let out = &p.stdout;
    assert!(out.contains("Instances of managed apps that teeform does not manage:"), "{out}");
    assert!(out.contains("# an instance of cvm.web's app is not in state"), "{out}");
    for want in [
        format!("vm_uuid      = \"{outside}\""),
        format!("app_id       = \"{app_id}\""),
        "node         = \"prod5\"".into(),
        "status       = \"running\"".into(),
        format!("to manage it: teeform import cvm.web[2] {outside}, then set `replicas: 3` on cvm.web"),
        "teeform neither adopts nor deletes them".into(),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    // The CVMs teeform manages are as the manifest says, and the plan says so last.
    assert!(out.trim_end().ends_with("No changes. Your infrastructure matches the configuration."), "{out}");

    let j = t.run(&["plan", "--json", "--detailed-exitcode"]);
    j.code(0);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    let u = &v["unmanaged_instances"][0];
    assert_eq!((u["vm_uuid"].as_str(), u["import_as"].as_str()), (Some(outside.as_str()), Some("cvm.web[2]")), "{u}");
    assert_eq!((u["entry"].as_str(), u["replicas_after"].as_u64()), (Some("cvm.web"), Some(3)), "{u}");
    assert_eq!(v["summary"]["converged"], true);
    let md = t.run(&["plan", "--markdown"]);
    assert!(md.ok().stdout.contains("1 instance(s) of managed apps that teeform does not manage"), "{}", md.stdout);
    assert!(md.stdout.contains(&format!("teeform import cvm.web[2] {outside}")), "{}", md.stdout);
    // `status` lists every instance of the app (phala-cloud #242), this one as not managed.
    let st = t.run(&["status"]);
    assert_eq!(st.ok().stdout.matches("web-main").count(), 3, "{}", st.stdout);
    assert!(st.stdout.contains(&format!("not managed: teeform import cvm.web[2] {outside}")), "{}", st.stdout);

    // Nothing was adopted or deleted: apply has nothing to do.
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(app(&t).1.len(), 3);

    // Imported, and `replicas:` raised to match: managed, nothing left to show.
    t.run(&["import", "cvm.web[2]", &outside]).ok();
    t.manifest(&manifest(3));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(!p.stdout.contains("does not manage"), "{}", p.stdout);
}

#[test]
fn a_create_the_import_would_avoid_is_named_and_without_the_list_each_app_is_asked_once() {
    let mut t = env();
    t.manifest(&manifest(1));
    t.run(&["apply", "--auto-approve"]).ok();
    let (_, uuids) = app(&t);
    let outside = replicate_outside(&t, &uuids[0]);
    // One replica: the instance is cvm.web; the one made outside would be cvm.web[1].
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains(&format!("teeform import cvm.web[1] {outside}, then set `replicas: 2`")), "{}", p.stdout);
    // Scaling out to two: the plan's create of cvm.web[1] could be this instance instead.
    t.manifest(&manifest(2));
    let p = t.run(&["plan"]);
    p.ok();
    assert!(p.stdout.contains("# cvm.web[1] will be created"), "{}", p.stdout);
    assert!(p.stdout.contains(&format!("to manage it: teeform import cvm.web[1] {outside}\n")), "{}", p.stdout);
    assert!(
        p.stdout
            .contains("this plan creates cvm.web[1]: importing this instance as cvm.web[1] instead avoids a new CVM"),
        "{}",
        p.stdout
    );
    // Without the list (every CVM read by its detail), one listing of the app's instances.
    t.env.insert("TEEFORM_PER_CVM_READS".into(), "1".into());
    let before = endpoint(&t, APP_CVMS);
    let p = t.run(&["plan"]);
    p.ok();
    assert_eq!(endpoint(&t, APP_CVMS) - before, 1);
    assert!(p.stdout.contains(&format!("teeform import cvm.web[1] {outside}\n")), "{}", p.stdout);
}

/// `t`'s manifest of `replicas`, its endpoint a proxy in front of the simulator.
fn through(t: &TestEnv, p: &Proxy, replicas: u32) {
    t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{}", p.prefix(), manifest(replicas)));
}

/// `apply` of `replicas` through `p`, which forwards the replicate call and holds its answer;
/// killed (SIGKILL) once the simulator has the new instance, after `during` ran.
fn killed_after_the_replicate(t: &TestEnv, p: &Proxy, replicas: u32, during: impl FnOnce()) {
    through(t, p, replicas);
    let count = |t: &TestEnv| app(t).1.len();
    let had = count(t);
    p.on("POST", "/replicas", Fault::Hold(std::time::Duration::from_secs(120)));
    let mut child = t.spawn_quiet(&["apply", "--auto-approve"]);
    let start = std::time::Instant::now();
    while count(t) == had {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the replicate was not made");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    during();
    child.kill().unwrap();
    child.wait().unwrap();
    p.clear();
}

#[test]
fn a_replicate_killed_before_its_answer_adopts_its_own_instance_not_one_made_outside() {
    let t = env();
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    through(&t, &p, 1);
    t.run(&["apply", "--auto-approve"]).ok();
    let (_, uuids) = app(&t);
    let outside = replicate_outside(&t, &uuids[0]);
    killed_after_the_replicate(&t, &p, 2, || {});
    t.settle();
    let (_, after_kill) = app(&t);
    assert_eq!(after_kill.len(), 3, "instance 0, the one made outside, the replicate's");
    let made = after_kill.iter().find(|u| **u != uuids[0] && **u != outside).unwrap().clone();

    // Two instances no record holds; the journal's list of the app's instances before the
    // call tells which is the replicate's.
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("cvm.web[1]: a create interrupted earlier had succeeded"), "{}", r.stderr);
    assert_eq!(app(&t).1.len(), 3, "nothing made again: {}{}", r.stdout, r.stderr);
    let shown = t.run(&["state", "show", "cvm.web[1]"]);
    assert!(shown.ok().stdout.contains(&made), "{}", shown.stdout);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains(&format!("teeform import cvm.web[2] {outside}")), "{}", p.stdout);
}

#[test]
fn an_instance_made_outside_while_a_replicate_was_in_flight_is_not_guessed_at() {
    let t = env();
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    through(&t, &p, 1);
    t.run(&["apply", "--auto-approve"]).ok();
    let (_, uuids) = app(&t);
    let mut outside = String::new();
    killed_after_the_replicate(&t, &p, 2, || outside = replicate_outside(&t, &uuids[0]));
    t.settle();
    let p = t.run(&["plan"]);
    p.ok();
    let (_, all) = app(&t);
    assert_eq!(all.len(), 3);
    for u in all.iter().filter(|u| **u != uuids[0]) {
        assert!(p.stderr.contains(&format!("`teeform import cvm.web[1] {u}`")), "{u}: {}", p.stderr);
    }
    assert!(p.stderr.contains("none was adopted"), "{}", p.stderr);
    // The plan makes cvm.web[1] again, and says importing either instead avoids it.
    assert!(p.stdout.contains("# cvm.web[1] will be created"), "{}", p.stdout);
    assert!(p.stdout.contains("importing this instance as cvm.web[1] instead avoids a new CVM"), "{}", p.stdout);
    assert!(p.stdout.contains(&outside), "{}", p.stdout);
}

/// Several CVMs of the name a create takes (the instances of a replicated app whose records
/// `state rm` dropped) are offered distinct addresses, so following every hint imports them
/// all (issue: each hint said `teeform import cvm.web[0] …`, and the second import failed).
#[test]
fn the_instances_of_a_name_a_create_takes_are_offered_one_address_each() {
    let t = env();
    t.manifest(&manifest(3));
    t.run(&["apply", "--auto-approve"]).ok();
    let (_, uuids) = app(&t);
    t.run(&["state", "rm", "cvm.web"]).ok();
    let p = t.run(&["plan"]);
    assert_ne!(p.code, 0, "{}", p.stdout);
    let imports: Vec<(String, String)> = p
        .stderr
        .split('`')
        .filter_map(|s| s.strip_prefix("teeform import "))
        .map(|s| {
            let (addr, id) = s.split_once(' ').unwrap();
            (addr.to_string(), id.to_string())
        })
        .collect();
    let mut sorted = uuids.clone();
    sorted.sort();
    let want: Vec<(String, String)> =
        sorted.iter().enumerate().map(|(i, u)| (format!("cvm.web[{i}]"), u.clone())).collect();
    assert_eq!(imports, want, "{}", p.stderr);
    for (addr, id) in &imports {
        t.run(&["import", addr, id]).ok();
    }
    t.run(&["plan", "--detailed-exitcode"]).code(0);

    // One more than `replicas:` says: the hint says to raise it.
    t.run(&["state", "rm", "cvm.web"]).ok();
    t.manifest(&manifest(2));
    let p = t.run(&["plan"]);
    assert!(p.stderr.contains("then set `replicas: 3` on cvm.web"), "{}", p.stderr);
}
