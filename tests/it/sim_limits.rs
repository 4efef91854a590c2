//! The simulator refuses what the real API refuses (issue 14.8), on every path a request can
//! take: create, the unified update, and the per-field updates.

use serde_json::json;

use crate::harness::{TestEnv, WEB};

const MAX: usize = 200 * 1024;

/// A compose file of exactly `n` bytes that is still YAML.
fn compose_of(n: usize) -> String {
    let head = "services:\n  web:\n    image: nginx\n# ";
    format!("{head}{}", "x".repeat(n - head.len()))
}

fn refused(got: (u16, serde_json::Value), loc: serde_json::Value, msg: &str) {
    assert_eq!(got.0, 422, "{}", got.1);
    assert_eq!(got.1["detail"][0]["loc"], loc, "{}", got.1);
    let m = got.1["detail"][0]["msg"].as_str().unwrap();
    assert!(m.contains(msg), "{m}");
}

fn create(t: &TestEnv, name: &str) -> String {
    let (s, prov) =
        t.api("POST", "/cvms/provision", Some(json!({"name": name, "compose_file": {"docker_compose_file": WEB}})));
    assert_eq!(s, 200, "{prov}");
    let (s, vm) = t.api("POST", "/cvms", Some(json!({"app_id": prov["app_id"], "compose_hash": prov["compose_hash"]})));
    assert_eq!(s, 200, "{vm}");
    t.settle();
    vm["vm_uuid"].as_str().unwrap().replace('-', "")
}

#[test]
fn creates_are_held_to_the_name_size_and_env_key_rules() {
    let t = TestEnv::new();
    let provision = |body: serde_json::Value| t.api("POST", "/cvms/provision", Some(body));
    for bad in ["abcd", "1abcd", "ab--cd", "abcd-", "ab_cd", "ünïcode"] {
        refused(
            provision(json!({"name": bad, "compose_file": {"docker_compose_file": WEB}})),
            json!(["body", "name"]),
            "5-63 characters",
        );
    }
    let size = "must not exceed 200KB";
    refused(
        provision(json!({"name": "big-one", "compose_file": {"docker_compose_file": compose_of(MAX + 1)}})),
        json!(["body", "compose_file"]),
        size,
    );
    refused(
        provision(
            json!({"name": "big-one", "compose_file": {"docker_compose_file": compose_of(MAX - 10), "pre_launch_script": "x".repeat(11)}}),
        ),
        json!(["body", "compose_file"]),
        "(current: 201KB)",
    );
    assert_eq!(
        provision(json!({"name": "big-one", "compose_file": {"docker_compose_file": compose_of(MAX)}})).0,
        200,
        "exactly 200 KiB passes"
    );
    refused(
        provision(
            json!({"name": "keys-one", "compose_file": {"docker_compose_file": WEB, "allowed_envs": ["OK", "NOT-OK"]}}),
        ),
        json!(["body", "compose_file", "allowed_envs", 1]),
        "invalid env variable name \"NOT-OK\"",
    );
    refused(
        provision(json!({"name": "keys-one", "compose_file": {"docker_compose_file": WEB}, "env_keys": ["1ST"]})),
        json!(["body", "env_keys", 0]),
        "invalid env variable name",
    );
    assert_eq!(t.stats()["cvm_count"], 0);
}

#[test]
fn updates_are_held_to_the_limits_whichever_endpoint_carries_them() {
    let t = TestEnv::new();
    let id = create(&t, "web-main");
    let hash = t.cvm_stat("web-main", "compose_hash");
    // The unified PATCH: compose alone over the limit, and a script that tips it over.
    refused(
        t.api("PATCH", &format!("/cvms/{id}"), Some(json!({"docker_compose_file": compose_of(MAX + 1)}))),
        json!(["body", "docker_compose_file"]),
        "must not exceed 200KB",
    );
    t.api("PATCH", &format!("/cvms/{id}"), Some(json!({"docker_compose_file": compose_of(MAX - 4)})));
    t.settle();
    refused(
        t.api("PATCH", &format!("/cvms/{id}"), Some(json!({"pre_launch_script": "echo hi\n"}))),
        json!(["body", "pre_launch_script"]),
        "must not exceed 200KB",
    );
    refused(
        t.api("PATCH", &format!("/cvms/{id}"), Some(json!({"allowed_envs": ["A", "A"]}))),
        json!(["body", "allowed_envs", 1]),
        "duplicate",
    );
    refused(
        t.api("PATCH", &format!("/cvms/{id}/envs"), Some(json!({"encrypted_env": "00", "env_keys": ["$X"]}))),
        json!(["body", "allowed_envs", 0]),
        "invalid env variable name",
    );
    // The legacy compose provision is checked too.
    refused(
        t.api(
            "POST",
            &format!("/cvms/{id}/compose_file/provision"),
            Some(json!({"docker_compose_file": compose_of(MAX + 1)})),
        ),
        json!(["body", "docker_compose_file"]),
        "must not exceed 200KB",
    );
    assert_eq!(t.cvm_stat("web-main", "updates"), 1, "only the one good update went through");
    assert_ne!(t.cvm_stat("web-main", "compose_hash"), hash);
}

#[test]
fn raw_text_updates_are_held_to_the_size_limit() {
    let t = TestEnv::new();
    let id = create(&t, "web-main");
    let url = format!("{}/cvms/{id}/docker-compose", t.prefix());
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .patch(&url)
            .header("X-API-Key", crate::harness::KEY)
            .header("Content-Type", "text/yaml")
            .body(compose_of(MAX + 1))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 422);
    assert_eq!(t.cvm_stat("web-main", "updates"), 0);
}

/// teeform over the limit: the manifest reader refuses it with the reason, before any call
/// (the simulator's own refusal is tested above with requests teeform would not send).
#[test]
fn an_apply_over_the_limit_is_refused_before_any_call() {
    let t = TestEnv::new();
    t.write("web.yml", &compose_of(MAX + 1));
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("larger than 200 KiB"), "{}", r.stderr);
    assert_eq!(t.stats()["total_requests"], 0);
}
