//! Every attribute of the schema round-trips, one case per attribute: manifest → plan →
//! request (the create, the PATCH, a start or stop) → simulator → refresh → `No changes`,
//! for the value a CVM is created with and for a changed one.
//!
//! The cases are a `match` on [`Attr`]: an attribute added to the schema does not compile
//! here until it has its case. Each case says, independently of teeform's wire table, what
//! the request must carry and what the simulator then holds.

use serde_json::{Value, json};
use teeform::model::{Attr, SCHEMA, Update};

use crate::harness::{TestEnv, WEB};
use crate::proxy::Proxy;

/// A request body must hold this (a JSON object is matched key by key; [`ANY`] matches any
/// value that is there).
const ANY: &str = "<any>";

/// One value's round trip.
struct Step {
    /// Lines under `cvms.web:` (indented by 4), on top of `name:` and `compose:` unless they
    /// set those.
    yaml: &'static str,
    /// A request that must carry the value: method, a part of its path, and what its JSON
    /// body holds (`None`: no body is checked).
    sent: (&'static str, &'static str, Option<Value>),
    /// What the simulator holds then, read through `observe` (`None`: the API does not show it).
    held: Option<Value>,
}

struct Case {
    /// The value the CVM is created with, then the changed one (`None`: not changeable here).
    create: Step,
    change: Option<Step>,
    /// Reads what the simulator holds: from the CVM's detail (`GET /cvms/{id}`) and its env.
    observe: fn(&TestEnv, &Value) -> Value,
}

fn at(pointer: &'static str) -> impl Fn(&TestEnv, &Value) -> Value {
    move |_, d| d.pointer(pointer).cloned().unwrap_or(Value::Null)
}

/// Where a create's provision goes: `POST /cvms` (the same-path create; `/cvms/provision` on an
/// API without it).
const PROVISION: &str = "/api/v1/cvms";

fn case(attr: Attr) -> Case {
    let s = |yaml, sent: (&'static str, &'static str, Option<Value>), held: Option<Value>| Step { yaml, sent, held };
    let create = |body: Value| ("POST", PROVISION, Some(body));
    let patch = |body: Value| ("PATCH", "/cvms/", Some(body));
    match attr {
        Attr::Name => Case {
            create: s("name: rt-web-one", create(json!({"name": "rt-web-one"})), Some(json!("rt-web-one"))),
            // Renamed in place: its own call, not a replacement.
            change: Some(s(
                "name: rt-web-two",
                ("PATCH", "/name", Some(json!({"name": "rt-web-two"}))),
                Some(json!("rt-web-two")),
            )),
            observe: |_, d| d["name"].clone(),
        },
        // Another KMS needs a chain: tests/it/chain.rs (scripts/test-chain) changes it both ways.
        Attr::Kms => Case {
            create: s("kms: phala", create(json!({"kms": "PHALA"})), Some(json!("phala"))),
            change: None,
            observe: |_, d| d["kms_type"].clone(),
        },
        Attr::Node => Case {
            create: s("node: prod5", create(json!({"teepod_id": 1})), Some(json!("prod5"))),
            change: Some(s("node: prod6", create(json!({"teepod_id": 2})), Some(json!("prod6")))),
            observe: |_, d| d["node_info"]["name"].clone(),
        },
        Attr::Gateway => Case {
            create: s("gateway: true", create(json!({"compose_file": {"gateway_enabled": true}})), Some(json!(true))),
            change: Some(s(
                "gateway: false",
                create(json!({"compose_file": {"gateway_enabled": false}})),
                Some(json!(false)),
            )),
            observe: |t, d| at("/gateway_enabled")(t, d),
        },
        Attr::InstanceType => Case {
            create: s(
                "instance_type: tdx.small",
                create(json!({"instance_type": "tdx.small"})),
                Some(json!("tdx.small")),
            ),
            // The PATCH takes sizes: tdx.medium's.
            change: Some(s(
                "instance_type: tdx.medium",
                patch(json!({"vcpu": 2, "memory": 4096})),
                Some(json!("tdx.medium")),
            )),
            observe: |t, d| at("/resource/instance_type")(t, d),
        },
        Attr::Vcpu => Case {
            create: s("vcpu: 2", create(json!({"vcpu": 2})), Some(json!(2))),
            change: Some(s("vcpu: 4", patch(json!({"vcpu": 4})), Some(json!(4)))),
            observe: |t, d| at("/resource/vcpu")(t, d),
        },
        Attr::Memory => Case {
            create: s("memory: 2048", create(json!({"memory": 2048})), Some(json!(2.0))),
            change: Some(s("memory: 3072", patch(json!({"memory": 3072})), Some(json!(3.0)))),
            observe: |t, d| at("/resource/memory_in_gb")(t, d),
        },
        Attr::DiskSize => Case {
            create: s("disk_size: 20", create(json!({"disk_size": 20})), Some(json!(20))),
            change: Some(s("disk_size: 40", patch(json!({"disk_size": 40})), Some(json!(40)))),
            observe: |t, d| at("/resource/disk_in_gb")(t, d),
        },
        Attr::Gpus => Case {
            create: s("gpus: 0", create(json!({"gpus": 0})), Some(json!(0))),
            change: Some(s("gpus: 1", patch(json!({"gpus": {"count": 1}})), Some(json!(1)))),
            observe: |t, d| at("/resource/gpus")(t, d),
        },
        Attr::Image => Case {
            create: s("image: dstack-0.5.4", create(json!({"image": "dstack-0.5.4"})), Some(json!("dstack-0.5.4"))),
            change: Some(s(
                "image: dstack-0.5.5",
                patch(json!({"image": "dstack-0.5.5"})),
                Some(json!("dstack-0.5.5")),
            )),
            observe: |t, d| at("/os/name")(t, d),
        },
        Attr::PublicLogs => Case {
            create: s("public_logs: true", create(json!({"compose_file": {"public_logs": true}})), Some(json!(true))),
            change: Some(s("public_logs: false", patch(json!({"public_logs": false})), Some(json!(false)))),
            observe: |t, d| at("/public_logs")(t, d),
        },
        Attr::PublicSysinfo => Case {
            create: s(
                "public_sysinfo: false",
                create(json!({"compose_file": {"public_sysinfo": false}})),
                Some(json!(false)),
            ),
            change: Some(s("public_sysinfo: true", patch(json!({"public_sysinfo": true})), Some(json!(true)))),
            observe: |t, d| at("/public_sysinfo")(t, d),
        },
        Attr::PublicTcbinfo => Case {
            create: s(
                "public_tcbinfo: false",
                create(json!({"compose_file": {"public_tcbinfo": false}})),
                Some(json!(false)),
            ),
            change: Some(s("public_tcbinfo: true", patch(json!({"public_tcbinfo": true})), Some(json!(true)))),
            observe: |t, d| at("/public_tcbinfo")(t, d),
        },
        // The API reports neither: what was sent is what is checked. A create cannot carry
        // them, so the PATCH right after it does.
        Attr::ShutdownTimeout => Case {
            create: s("shutdown_timeout: 30", patch(json!({"shutdown_timeout": 30})), None),
            change: Some(s("shutdown_timeout: 60", patch(json!({"shutdown_timeout": 60})), None)),
            observe: |_, _| Value::Null,
        },
        Attr::AllowForceStop => Case {
            create: s("allow_force_stop: true", patch(json!({"allow_force_stop": true})), None),
            change: Some(s("allow_force_stop: false", patch(json!({"allow_force_stop": false})), None)),
            observe: |_, _| Value::Null,
        },
        Attr::PreLaunchScript => Case {
            create: s(
                "pre_launch_script: one.sh",
                create(json!({"compose_file": {"pre_launch_script": "echo one\n"}})),
                Some(json!("echo one\n")),
            ),
            change: Some(s(
                "pre_launch_script: two.sh",
                patch(json!({"pre_launch_script": "echo two\n"})),
                Some(json!("echo two\n")),
            )),
            observe: |t, d| at("/compose_file/pre_launch_script")(t, d),
        },
        Attr::Compose => Case {
            create: s(
                "compose: web.yml",
                create(json!({"compose_file": {"docker_compose_file": WEB}})),
                Some(json!(WEB)),
            ),
            change: Some(s("compose: web2.yml", patch(json!({"docker_compose_file": WEB2})), Some(json!(WEB2)))),
            observe: |t, d| at("/compose_file/docker_compose_file")(t, d),
        },
        Attr::Env => Case {
            create: s(
                "env:\n      GREETING: one",
                create(json!({"env_keys": ["GREETING"], "compose_file": {"allowed_envs": ["GREETING"]}})),
                Some(json!({"GREETING": "one"})),
            ),
            change: Some(s(
                "env:\n      GREETING: two",
                patch(json!({"encrypted_env": ANY})),
                Some(json!({"GREETING": "two"})),
            )),
            observe: |t, d| {
                t.sim_get(&format!("/_sim/cvms/{}/env", d["vm_uuid"].as_str().unwrap_or_default()))["env"].clone()
            },
        },
        Attr::Power => Case {
            create: s("power: running", create(json!({})), Some(json!("running"))),
            change: Some(s("power: stopped", ("POST", "/stop", None), Some(json!("stopped")))),
            observe: |t, d| at("/status")(t, d),
        },
    }
}

const WEB2: &str = "services:\n  web:\n    image: nginx:1.28\n    ports:\n      - \"80:80\"\n";

fn manifest(t: &TestEnv, p: &Proxy, yaml: &str) {
    let mut m = String::from("cvms:\n  web:\n");
    if !yaml.starts_with("name:") {
        m.push_str("    name: rt-web-main\n");
    }
    if !yaml.starts_with("compose:") {
        m.push_str("    compose: web.yml\n");
    }
    m.push_str(&format!("    {yaml}\n"));
    t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{m}", p.prefix()));
}

/// Whether `body` holds everything `want` has.
fn holds(body: &Value, want: &Value) -> bool {
    match (body, want) {
        (_, Value::String(s)) if s == ANY => !body.is_null(),
        (Value::Object(b), Value::Object(w)) => w.iter().all(|(k, v)| b.get(k).is_some_and(|x| holds(x, v))),
        _ => body == want,
    }
}

/// The one CVM the simulator has, in full.
fn detail(t: &TestEnv) -> Value {
    let (_, list) = t.api("GET", "/cvms/paginated?page=1&page_size=100", None);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "one CVM: {list}");
    let id = items[0]["vm_uuid"].as_str().unwrap().to_string();
    t.api("GET", &format!("/cvms/{id}"), None).1
}

/// Applies the manifest as it is, then checks the request, what the simulator holds, and that
/// the next plan has nothing to do.
fn round_trip(t: &TestEnv, p: &Proxy, attr: Attr, step: &Step, observe: fn(&TestEnv, &Value) -> Value) {
    p.clear_seen();
    // A change the API cannot make in place replaces the CVM, which needs consent.
    let mut apply = vec!["apply", "--auto-approve"];
    if attr.forces_replacement() {
        apply.push("--allow-replace");
    }
    t.run(&apply).ok();
    let (method, path, body) = &step.sent;
    let seen = p.seen();
    let carried = seen.iter().filter(|s| s.method == *method && s.target.contains(path)).any(|s| match body {
        None => true,
        Some(want) => serde_json::from_slice::<Value>(&s.body).is_ok_and(|b| holds(&b, want)),
    });
    let requests: Vec<String> =
        seen.iter().map(|s| format!("{} {} {}", s.method, s.target, String::from_utf8_lossy(&s.body))).collect();
    assert!(carried, "{attr} `{}`: no {method} {path} carrying {body:?}; sent:\n{}", step.yaml, requests.join("\n"));
    if let Some(want) = &step.held {
        assert_eq!(observe(t, &detail(t)), *want, "{attr} `{}`: what the simulator holds", step.yaml);
    }
    let plan = t.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{attr} `{}`: the plan after apply\n{}{}", step.yaml, plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes."), "{attr}: {}", plan.stdout);
    // What the API reports reads back as what was applied: imported afresh (state then holds
    // only what the API says), the CVM is as the manifest wants, env values aside (the API
    // shows keys only, so they are sent once more).
    let id = detail(t)["vm_uuid"].as_str().unwrap().to_string();
    t.run(&["state", "rm", "cvm.web"]).ok();
    t.run(&["import", "cvm.web", &id]).ok();
    let plan = t.run(&["plan", "--json"]);
    let v: Value = serde_json::from_str(&plan.stdout).unwrap_or_else(|e| panic!("{attr}: {e}\n{}", plan.stdout));
    let changed = &v["resource_changes"];
    let want = if v["resource_changes"][0]["after"]["env"].as_object().is_some_and(|e| !e.is_empty()) {
        json!(["env"])
    } else {
        json!(null)
    };
    assert_eq!(changed[0]["changed_attributes"], want, "{attr} `{}`: after import: {changed}", step.yaml);
    if want.is_null() {
        return;
    }
    // Env values sent again, the CVM is as before.
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn every_attribute_round_trips_through_the_api() {
    for spec in SCHEMA {
        let attr = spec.attr;
        let c = case(attr);
        let t = TestEnv::new();
        let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
        t.write("web.yml", WEB).write("web2.yml", WEB2).write("one.sh", "echo one\n").write("two.sh", "echo two\n");
        manifest(&t, &p, c.create.yaml);
        round_trip(&t, &p, attr, &c.create, c.observe);
        let Some(change) = &c.change else { continue };
        manifest(&t, &p, change.yaml);
        // The plan changes this attribute alone, in the way the schema says.
        let plan = t.run(&["plan", "--json"]);
        let v: Value = serde_json::from_str(&plan.stdout).unwrap_or_else(|e| panic!("{attr}: {e}\n{}", plan.stdout));
        let rc = &v["resource_changes"][0];
        assert_eq!(rc["changed_attributes"], json!([spec.key]), "{attr}: {rc}");
        let want = if spec.update == Update::Replace { json!(["delete", "create"]) } else { json!(["update"]) };
        assert_eq!(rc["actions"], want, "{attr}");
        // Only a replacement needs consent: apply refuses it without (and sends nothing).
        let needs = if spec.update == Update::Replace { json!(["cvm.web"]) } else { json!([]) };
        assert_eq!(v["replacements_needing_consent"], needs, "{attr}");
        round_trip(&t, &p, attr, change, c.observe);
    }
}

/// What a create cannot carry (`shutdown_timeout`, `allow_force_stop`) is set by one update
/// right after it: one PATCH, one restart, counted as one CVM added, and nothing left to do.
#[test]
fn a_create_sets_what_it_cannot_carry_with_one_update() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: rt-web-main\n    compose: web.yml\n    shutdown_timeout: 30\n    allow_force_stop: true\n");
    let plan = t.run(&["plan"]);
    assert!(
        plan.stdout
            .contains("note: a create cannot set shutdown_timeout, allow_force_stop: one update right after it does")
            && plan.stdout.contains("1 to add, 0 to change, 0 to destroy. 1 CVM restart."),
        "{}",
        plan.stdout
    );
    let apply = t.run(&["apply", "--auto-approve"]);
    apply.ok();
    assert!(apply.stderr.contains("Resources: 1 added, 0 changed, 0 destroyed."), "{}", apply.stderr);
    assert_eq!(t.count("PATCH /api/v1/cvms/"), 1);
    assert_eq!(t.cvm_stat("rt-web-main", "restarts"), 1);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.count("PATCH /api/v1/cvms/"), 1, "a second apply sends nothing");
}

/// The summary counts what the plan counts: a create followed by the update of what it cannot
/// carry, or by a stop for `power: stopped`, is one CVM added, not also one changed.
#[test]
fn creates_with_follow_up_updates_or_stops_are_counted_as_added_only() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(
        "cvms:\n  web:\n    name: rt-web\n    compose: web.yml\n    shutdown_timeout: 30\n  \
         db:\n    name: rt-db\n    compose: web.yml\n    allow_force_stop: true\n    power: stopped\n  \
         cold:\n    name: rt-cold\n    compose: web.yml\n    power: stopped\n  \
         plain:\n    name: rt-plain\n    compose: web.yml\n",
    );
    let plan = t.run(&["plan"]);
    assert!(plan.stdout.contains("4 to add, 0 to change, 0 to destroy."), "{}", plan.stdout);
    let apply = t.run(&["apply", "--auto-approve"]);
    apply.ok();
    assert!(apply.stderr.contains("Resources: 4 added, 0 changed, 0 destroyed."), "{}", apply.stderr);
    assert_eq!(t.count("PATCH /api/v1/cvms/"), 2, "one follow-up update each for web and db");
    assert_eq!(t.cvm_stat("rt-db", "status"), "stopped");
    assert_eq!(t.cvm_stat("rt-cold", "status"), "stopped");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}
