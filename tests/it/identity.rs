//! Identity-safe changes (issue 18), end to end on the simulator: a rename keeps the CVM, a
//! moved key keeps it with no cloud call, a replacement happens only when asked for, a
//! protected CVM is never destroyed, and targeting picks exactly the CVMs it should.

use crate::harness::{TestEnv, WEB};

const ONE: &str = "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n";

fn one(extra: &str) -> TestEnv {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(&format!("{ONE}{extra}"));
    t
}

/// Requests that can change something in the cloud (`POST /status/batch` is a read).
fn mutating(t: &TestEnv) -> u64 {
    let stats = t.stats();
    let counted = stats["requests"].as_object().unwrap().iter().filter(|(k, _)| {
        let (method, path) = k.split_once(' ').unwrap();
        matches!(method, "POST" | "PATCH" | "PUT" | "DELETE")
            && path.starts_with("/api/v1/")
            && path != "/api/v1/status/batch"
    });
    counted.map(|(_, v)| v.as_u64().unwrap()).sum()
}

/// Requests whose `METHOD path` ends with `suffix`.
fn count_ending(t: &TestEnv, method: &str, suffix: &str) -> u64 {
    let stats = t.stats();
    let hits =
        stats["requests"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with(method) && k.ends_with(suffix));
    hits.map(|(_, v)| v.as_u64().unwrap()).sum()
}

#[test]
fn a_name_change_keeps_the_app_id_and_sends_one_rename() {
    let t = one("");
    t.run(&["apply", "--auto-approve"]).ok();
    let app_id = t.cvm_stat("web-main", "app_id");
    t.manifest(&ONE.replace("web-main", "web-next"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web will be renamed in place"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy.\n"), "no restart is announced: {}", p.stdout);
    let before = mutating(&t);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(count_ending(&t, "PATCH", "/name"), 1, "one rename");
    assert_eq!(mutating(&t) - before, 1, "and nothing else");
    assert_eq!(t.stats()["cvm_count"], 1);
    assert_eq!(t.cvm_stat("web-next", "app_id"), app_id, "the same CVM");
    assert_eq!(t.cvm_stat("web-next", "restarts"), 0);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // A rename with a resize: the rename call, then the one PATCH, and both land.
    t.manifest(&format!("{}    vcpu: 4\n", ONE.replace("web-main", "web-last")));
    let before = mutating(&t);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(count_ending(&t, "PATCH", "/name"), 2, "one more rename");
    assert_eq!(mutating(&t) - before, 2, "a rename and the resize");
    assert_eq!(t.cvm_stat("web-last", "app_id"), app_id, "still the same CVM");
    assert_eq!(t.cvm_stat("web-last", "vcpu"), 4);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_rename_to_a_name_in_use_is_refused_before_anything_is_sent() {
    let t = one("");
    t.run(&["apply", "--auto-approve"]).ok();
    // Another project's CVM holds the name.
    t.write(
        "other.yaml",
        &format!(
            "provider:\n  phala:\n    endpoint: {}\ncvms:\n  x:\n    name: taken-name\n    compose: web.yml\n",
            t.prefix()
        ),
    );
    t.run(&["-f", "other.yaml", "apply", "--auto-approve"]).ok();
    t.manifest(&ONE.replace("web-main", "taken-name"));
    let before = mutating(&t);
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("cvm.web: a CVM with that name already exists"), "{}", r.stderr);
    assert!(r.stderr.contains("cvm.web is renamed: give it a `name:` no other CVM has"), "{}", r.stderr);
    assert_eq!(mutating(&t), before, "nothing was sent");
    // The API itself refuses too, as the real one does (UNVERIFIED wording).
    let id = t.cvm_stat("web-main", "id");
    let (status, body) = t.api(
        "PATCH",
        &format!("/cvms/{}/name", id.as_str().unwrap()),
        Some(serde_json::json!({"name": "taken-name"})),
    );
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "CVM name \"taken-name\" is already in use in this workspace");
    let (status, _) =
        t.api("PATCH", &format!("/cvms/{}/name", id.as_str().unwrap()), Some(serde_json::json!({"name": "no"})));
    assert_eq!(status, 422, "the name rule");
}

#[test]
fn a_moved_key_keeps_the_cvm_with_no_mutating_call() {
    let mut t = one("    lint: {ignore: [DB_PASSWORD]}\n    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\n");
    t.env.insert("DB_PASSWORD".into(), "hunter2".into());
    t.run(&["apply", "--auto-approve"]).ok();
    let app_id = t.cvm_stat("web-main", "app_id");
    let id = t.cvm_stat("web-main", "id");
    let moved = "cvms:\n  front:\n    name: web-main\n    compose: web.yml\n    lint: {ignore: [DB_PASSWORD]}\n    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\nmoved:\n  - from: cvm.web\n    to: cvm.front\n";
    t.manifest(moved);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.web has moved to cvm.front"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 0 to add, 0 to change, 0 to destroy. 1 CVM moved in state."), "{}", p.stdout);
    let before = mutating(&t);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(mutating(&t), before, "a move is state only");
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.front\n");
    assert_eq!((t.cvm_stat("web-main", "app_id"), t.cvm_stat("web-main", "id")), (app_id, id));
    // The secret's digest moved with it: nothing to update. The entry may stay.
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains("note: moved: state holds nothing at cvm.web"), "{}", p.stdout);
    let before = mutating(&t);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(mutating(&t), before);
}

#[test]
fn state_mv_moves_a_cvm_without_touching_it() {
    let t = one("");
    t.run(&["apply", "--auto-approve"]).ok();
    let before = mutating(&t);
    let r = t.run(&["state", "mv", "cvm.web", "cvm.front"]);
    r.ok();
    assert!(r.stdout.contains("Moved cvm.web to cvm.front (the CVM itself was not touched)."), "{}", r.stdout);
    assert!(r.stderr.contains("rename `web:` to `front:` under `cvms:`"), "{}", r.stderr);
    t.manifest(&ONE.replace("  web:\n", "  front:\n"));
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(mutating(&t), before);
    let r = t.run(&["state", "mv", "cvm.web", "cvm.other"]);
    r.code(1);
    assert!(r.stderr.contains("`cvm.web` is not in state"), "{}", r.stderr);
    let r = t.run(&["state", "mv", "cvm.fornt", "cvm.other"]);
    assert!(r.stderr.contains("did you mean `cvm.front`?"), "{}", r.stderr);
    let r = t.run(&["state", "mv", "cvm.front", "front"]);
    r.code(1);
    assert!(r.stderr.contains("`front` is not a CVM address"), "{}", r.stderr);
}

#[test]
fn an_unrequested_replacement_is_refused_with_its_cost_and_nothing_sent() {
    let t = one("");
    t.run(&["apply", "--auto-approve"]).ok();
    let first = t.cvm_stat("web-main", "app_id");
    // The gateway cannot change in place.
    t.manifest(&format!("{ONE}    gateway: false\n"));
    let p = t.run(&["plan"]);
    p.ok();
    assert!(p.stdout.contains("note: gateway cannot change in place"), "{}", p.stdout);
    assert!(p.stdout.contains("apply refuses this plan as it is: it replaces cvm.web"), "{}", p.stdout);
    let before = mutating(&t);
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("error: this plan replaces cvm.web, which nobody asked to replace: its `gateway` cannot change in place, and the new CVM gets a new app_id → new KMS-derived keys and a new disk (the old one's data is lost); nothing was changed"), "{}", r.stderr);
    assert!(r.stderr.contains("`teeform apply --replace cvm.web`"), "{}", r.stderr);
    assert_eq!(mutating(&t), before, "nothing was sent");
    // A saved plan carries the consent it was made with, and only that.
    t.run(&["plan", "--out", "no.json"]).ok();
    t.run(&["apply", "no.json"]).code(1);
    assert_eq!(mutating(&t), before);
    t.run(&["plan", "--allow-replace", "--out", "yes.json"]).ok();
    t.run(&["apply", "yes.json"]).ok();
    let second = t.cvm_stat("web-main", "app_id");
    assert_ne!(second, first, "replaced: a new app id");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // --replace asks for one by name, with nothing forcing it.
    let r = t.run(&["apply", "--auto-approve", "--replace", "cvm.web"]);
    r.ok();
    assert!(r.stdout.contains("note: --replace asks for this replacement"), "{}", r.stdout);
    assert_ne!(t.cvm_stat("web-main", "app_id"), second);
    assert_eq!(t.stats()["cvm_count"], 1);
    let r = t.run(&["plan", "--replace", "cvm.wbe"]);
    r.code(1);
    assert!(
        r.stderr.contains("--replace cvm.wbe: there is no such CVM") && r.stderr.contains("did you mean `cvm.web`?"),
        "{}",
        r.stderr
    );
}

#[test]
fn prevent_destroy_blocks_destroy_replace_and_removal_from_the_manifest() {
    let protected = "    lifecycle:\n      prevent_destroy: true\n";
    let t = one(protected);
    t.run(&["apply", "--auto-approve"]).ok();
    let before = mutating(&t);
    let r = t.run(&["destroy", "--auto-approve"]);
    r.code(1);
    assert!(
        r.stderr.contains("cvm.web has `lifecycle.prevent_destroy` set, but this plan would destroy it"),
        "{}",
        r.stderr
    );
    let r = t.run(&["apply", "--auto-approve", "--replace", "cvm.web"]);
    r.code(1);
    assert!(r.stderr.contains("but this plan would replace it"), "{}", r.stderr);
    t.manifest("cvms: {}\n");
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("but this plan would destroy it"), "state remembers the protection: {}", r.stderr);
    assert_eq!((mutating(&t), t.stats()["cvm_count"].as_u64()), (before, Some(1)));
    // Taking the protection off is applied first; then the CVM may go.
    t.manifest(&format!("{ONE}    lifecycle: {{prevent_destroy: false}}\n"));
    let p = t.run(&["apply", "--auto-approve"]);
    p.ok();
    assert!(p.stdout.contains("# cvm.web: state records lifecycle.prevent_destroy = false"), "{}", p.stdout);
    assert_eq!(mutating(&t), before, "recording it is state only");
    t.run(&["destroy", "--auto-approve"]).ok();
    assert_eq!(t.stats()["cvm_count"], 0);
}

#[test]
fn target_and_exclude_pick_exactly_the_expected_cvms() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(
        "cvms:
  db:
    name: db-main
    compose: web.yml
  api:
    name: api-main
    compose: web.yml
    depends_on: [db]
  worker:
    name: worker-main
    compose: web.yml
    depends_on: [db]
outputs:
  api: ${cvm.api.app_id}
",
    );
    let names = |t: &TestEnv| {
        let mut v: Vec<String> = t.stats()["cvms"].as_object().unwrap().keys().cloned().collect();
        v.sort();
        v
    };
    let r = t.run(&["apply", "--auto-approve", "--target", "cvm.api"]);
    r.ok();
    assert!(r.stdout.contains("warning: targeting is in effect (--target cvm.api)"), "{}", r.stdout);
    assert_eq!(names(&t), ["api-main", "db-main"], "the target and what it depends on");
    assert!(t.run(&["output", "--json"]).ok().stdout.trim() == "{}", "outputs wait for a full apply");
    t.run(&["apply", "--auto-approve", "--exclude", "cvm.db"]).ok();
    assert_eq!(names(&t), ["api-main", "db-main"], "everything else depends on db");
    t.run(&["apply", "--auto-approve", "--exclude", "cvm.api"]).ok();
    assert_eq!(names(&t), ["api-main", "db-main", "worker-main"]);
    let r = t.run(&["destroy", "--auto-approve", "--exclude", "cvm.worker"]);
    r.ok();
    assert_eq!(names(&t), ["db-main", "worker-main"], "worker and what it depends on stay");
    t.run(&["destroy", "--auto-approve", "--target", "cvm.db"]).ok();
    assert!(names(&t).is_empty(), "db and what depends on it");
}

/// The simulator's apps: app id → its instances' vm_uuids, sorted.
fn apps(t: &TestEnv) -> std::collections::BTreeMap<String, Vec<String>> {
    let apps = t.stats()["apps"].as_object().unwrap().clone();
    apps.into_iter()
        .map(|(id, a)| {
            let mut uuids: Vec<String> =
                a["instances"].as_array().unwrap().iter().map(|i| i["vm_uuid"].as_str().unwrap().to_string()).collect();
            uuids.sort();
            (id, uuids)
        })
        .collect()
}

/// A `moved:` entry without an index moves every instance of a replicated CVM, and a
/// one-replica CVM moved to a key of more replicas stays the CVM, as instance 0: no CVM is
/// destroyed, each keeps its vm_uuid and app id, and the next plan has nothing to do.
#[test]
fn moving_a_whole_replicated_cvm_keeps_every_instance() {
    let t = TestEnv::new();
    t.write("dc.yml", "services: {a: {image: x}}\n");
    t.manifest("cvms:\n  betaa:\n    compose: dc.yml\n    replicas: 2\n");
    t.run(&["apply", "--auto-approve"]).ok();
    let before = apps(&t);
    assert_eq!(before.values().map(Vec::len).collect::<Vec<_>>(), [2]);
    t.manifest(
        "cvms:\n  delta:\n    name: betaa\n    compose: dc.yml\n    replicas: 2\nmoved: [{from: cvm.betaa, to: cvm.delta}]\n",
    );
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.betaa[0] has moved to cvm.delta[0]"), "{}", p.stdout);
    assert!(p.stdout.contains("# cvm.betaa[1] has moved to cvm.delta[1]"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 0 to add, 0 to change, 0 to destroy. 2 CVMs moved in state."), "{}", p.stdout);
    assert!(!p.stdout.contains("warning"), "{}", p.stdout);
    let sent = mutating(&t);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(mutating(&t), sent, "a move is state only");
    assert_eq!(apps(&t), before, "the same app and instances");
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.delta[0]\ncvm.delta[1]\n");
    assert!(t.run(&["plan"]).ok().stdout.contains("No changes."));
    // `state mv` of the whole CVM moves every instance, each keeping its index.
    let r = t.run(&["state", "mv", "cvm.delta", "cvm.epsil"]);
    r.ok();
    assert!(r.stdout.contains("Moved cvm.delta[0] to cvm.epsil[0]"), "{}", r.stdout);
    assert!(r.stdout.contains("Moved cvm.delta[1] to cvm.epsil[1]"), "{}", r.stdout);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.epsil[0]\ncvm.epsil[1]\n");
    t.manifest("cvms:\n  epsil:\n    name: betaa\n    compose: dc.yml\n    replicas: 2\n");
    assert!(t.run(&["plan"]).ok().stdout.contains("No changes."));
    // Several instances to one, or onto instances state holds: refused, nothing moved.
    for (from, to, says) in [
        (
            "cvm.epsil",
            "cvm.zeta[0]",
            "state holds 2 instances of cvm.epsil (cvm.epsil[0], cvm.epsil[1]), and cvm.zeta[0] is one instance",
        ),
        ("cvm.epsil[0]", "cvm.epsil[1]", "state already holds a CVM at cvm.epsil[1]"),
    ] {
        let r = t.run(&["state", "mv", from, to]);
        r.code(1);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.epsil[0]\ncvm.epsil[1]\n");
    // `state show` shows one record: it names the instances; `state rm` forgets them all.
    let r = t.run(&["state", "show", "cvm.epsil"]);
    r.code(1);
    assert!(r.stderr.contains("its instances are in state: cvm.epsil[0], cvm.epsil[1]"), "{}", r.stderr);
    let r = t.run(&["state", "rm", "cvm.epsil"]);
    r.ok();
    assert!(
        r.stdout.contains("Removed cvm.epsil[0] from state") && r.stdout.contains("Removed cvm.epsil[1]"),
        "{}",
        r.stdout
    );
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "");
    assert_eq!(mutating(&t), sent, "no cloud call along the way");
}

#[test]
fn moving_a_one_replica_cvm_to_a_replicated_key_keeps_it_as_instance_0() {
    let t = TestEnv::new();
    t.write("dc.yml", "services: {a: {image: x}}\n");
    t.manifest("cvms:\n  oldkey:\n    name: keepme\n    compose: dc.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    let before = apps(&t);
    t.manifest(
        "cvms:\n  newkey:\n    name: keepme\n    compose: dc.yml\n    replicas: 2\nmoved: [{from: cvm.oldkey, to: cvm.newkey}]\n",
    );
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("# cvm.oldkey has moved to cvm.newkey[0]"), "{}", p.stdout);
    assert!(p.stdout.contains("# cvm.newkey[1] will be created"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy. 1 CVM moved in state."), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    let after = apps(&t);
    let (app, uuids) = before.iter().next().unwrap();
    assert_eq!(after.keys().collect::<Vec<_>>(), [app], "the same app");
    assert!(after[app].contains(&uuids[0]) && after[app].len() == 2, "the CVM from before is an instance: {after:?}");
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.newkey[0]\ncvm.newkey[1]\n");
    assert!(t.run(&["plan"]).ok().stdout.contains("No changes."));
}

/// Names are compared without letter case: a CVM whose name differs from one the endpoint
/// already has only in case (`shop-PROD`, `shop-prod`) is refused before anything is sent,
/// with the import hint, as an exact clash is.
#[test]
fn a_name_taken_in_other_letter_case_is_refused_before_anything_is_sent() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  shop:\n    name: shop-${workspace}\n    compose: web.yml\n");
    t.run(&["--workspace", "PROD", "apply", "--auto-approve"]).ok();
    assert_eq!(t.stats()["cvm_count"], 1);
    let before = mutating(&t);
    for workspace in ["prod", "Prod", "PROD2"] {
        let r = t.run(&["--workspace", workspace, "apply", "--auto-approve"]);
        if workspace == "PROD2" {
            r.ok();
            continue;
        }
        r.code(1);
        assert!(r.stderr.contains("cvm.shop: a CVM with that name already exists"), "{workspace}: {}", r.stderr);
        assert!(r.stderr.contains("manages the existing CVM"), "{workspace}: {}", r.stderr);
        assert_eq!(mutating(&t), before, "{workspace}: nothing was sent");
    }
    // Renaming into another CVM's name in other case is refused the same way.
    t.manifest("cvms:\n  shop:\n    name: SHOP-prod\n    compose: web.yml\n");
    let sent = mutating(&t);
    let r = t.run(&["--workspace", "PROD2", "apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("cvm.shop is renamed: give it a `name:` no other CVM has"), "{}", r.stderr);
    assert_eq!(mutating(&t), sent);
    assert_eq!(t.stats()["cvm_count"], 2);
}
