//! The simulator's wire, route by route: one transcript of requests (both API versions where
//! the shape differs) and their answers, snapshotted. Volatile values (ids, hashes, keys,
//! times) are replaced by numbered placeholders, so equal values stay visibly equal.
//!
//! A change to this snapshot is a change to the simulator's wire: the conformance suite
//! (`tests/conformance/run.sh`) must agree with it before it lands.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};
use teeform::sim::SimConfig;

use crate::harness::{KEY, TestEnv, WEB, runtime};

const V2025: &str = "2025-10-28";
const V2605: &str = "2026-05-22";
const V2606: &str = "2026-06-23";

/// Collects requests and answers as text, with volatile values numbered.
struct Transcript<'a> {
    t: &'a TestEnv,
    out: String,
    seen: BTreeMap<String, String>,
    patterns: Vec<(&'static str, regex::Regex)>,
}

impl<'a> Transcript<'a> {
    fn new(t: &'a TestEnv) -> Self {
        let patterns = [
            ("uuid", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
            ("hex", r"[0-9a-fA-F]{20,}"),
            ("time", r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"),
            ("uptime", r"^\d+s$"),
            // Inside an event stream's text.
            ("uptime", r#""uptime":"\d+s""#),
            ("port", r"127\.0\.0\.1:\d+"),
        ];
        let patterns = patterns.into_iter().map(|(n, p)| (n, regex::Regex::new(p).unwrap())).collect();
        Transcript { t, out: String::new(), seen: BTreeMap::new(), patterns }
    }

    /// One request: `path` below `/api/v1` unless it starts with `/_sim`.
    fn call(&mut self, method: &str, path: &str, version: Option<&str>, body: Option<Body>) -> Value {
        let base = self.t.prefix();
        let url = if path.starts_with("/_sim") { base.replace("/api/v1", path) } else { format!("{base}{path}") };
        let (status, text) = runtime().block_on(async {
            let mut r = reqwest::Client::new().request(method.parse().unwrap(), &url).header("X-API-Key", KEY);
            if let Some(v) = version {
                r = r.header("X-Phala-Version", v);
            }
            r = match &body {
                Some(Body::Json(b)) => r.json(b),
                Some(Body::Text(s)) => r.body(s.clone()),
                Some(Body::Headers(h)) => h.iter().fold(r.json(&json!({})), |r, (k, v)| r.header(*k, v.clone())),
                None => r,
            };
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        });
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let shown_path = self.redact_str(path);
        let shown = self.redact(&v);
        let ver = version.map_or(String::new(), |v| format!(" [{v}]"));
        writeln!(self.out, "### {method} {shown_path}{ver}\n{status}\n{}\n", pretty(&shown)).unwrap();
        v
    }

    fn redact(&mut self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact_str(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| match x {
                        // A signed KMS key's Unix time.
                        Value::Number(_) if k == "timestamp" => (k.clone(), Value::String("<timestamp>".into())),
                        x => (self.redact_str(k), self.redact(x)),
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn redact_str(&mut self, s: &str) -> String {
        let mut s = s.to_string();
        for (name, re) in &self.patterns {
            let found: Vec<String> = re.find_iter(&s).map(|m| m.as_str().to_string()).collect();
            for f in found {
                let n = self.seen.len() + 1;
                let tag = match *name {
                    "time" | "uptime" | "port" => format!("<{name}>"),
                    _ => self.seen.entry(f.to_ascii_lowercase()).or_insert_with(|| format!("<{name}{n}>")).clone(),
                };
                s = s.replace(&f, &tag);
            }
        }
        s
    }
}

enum Body {
    Json(Value),
    Text(String),
    /// An empty JSON object with these headers.
    Headers(Vec<(&'static str, String)>),
}

/// JSON with keys sorted at every level, so the transcript does not depend on key order.
fn pretty(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let s: BTreeMap<&String, Value> = m.iter().map(|(k, x)| (k, sorted(x))).collect();
                serde_json::to_value(s).unwrap()
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            o => o.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(v)).unwrap()
}

fn j(v: Value) -> Option<Body> {
    Some(Body::Json(v))
}

#[test]
fn every_route_answers_as_recorded() {
    // No transition takes time, so every answer is the same on every run.
    let t = TestEnv::with_config(SimConfig { restart_ms: 0, boot_ms: 0, ..Default::default() });
    let mut x = Transcript::new(&t);

    // Reads that need no CVM.
    x.call("GET", "/auth/me", None, None);
    x.call("GET", "/auth/me", Some(V2025), None);
    x.call("GET", "/auth/me", Some(V2606), None);
    x.call("GET", "/auth/me", Some("2099-01-01"), None);
    x.call("GET", "/workspaces", None, None);
    x.call("GET", "/workspaces/sim", None, None);
    x.call("GET", "/workspaces/nope", None, None);
    x.call("GET", "/teepods/cvm-create-resources", None, None);
    x.call("GET", "/teepods/available", None, None);
    x.call("GET", "/instance-types", None, None);
    x.call("GET", "/instance-types/tdx", None, None);
    x.call("GET", "/instance-types/gpu", None, None);
    x.call("GET", "/kms", None, None);
    x.call("GET", "/kms?is_onchain=true&page_size=1", None, None);
    x.call("GET", "/kms/kms_phala_sim", None, None);
    x.call("GET", "/kms/nope", None, None);
    // From 2026-06-23 the KMS API answers contracts, found by slug or `kc_` id.
    let contracts = x.call("GET", "/kms", Some(V2606), None);
    let kc = contracts["items"][0]["id"].as_str().unwrap().to_string();
    x.call("GET", &format!("/kms/{kc}"), Some(V2606), None);
    x.call("GET", "/kms/phala-sim", Some(V2606), None);
    x.call("GET", "/kms/phala-sim/nodes", Some(V2606), None);
    x.call("GET", "/kms/phala-sim/pubkey/not-hex", None, None);
    x.call("GET", "/os-images", None, None);
    x.call("GET", "/os-images?is_dev=true&page=2&page_size=1", None, None);
    x.call("GET", "/cvms/paginated", None, None);
    x.call("GET", "/no/such/route", None, None);
    x.call("PUT", "/auth/me", None, None);

    // Creates that are refused.
    let compose = json!({"docker_compose_file": WEB, "allowed_envs": ["FOO"], "public_logs": false});
    for body in [
        json!({"compose_file": compose}),
        json!({"name": "ab", "compose_file": compose}),
        json!({"name": "web-one", "compose_file": {"docker_compose_file": " "}}),
        json!({"name": "web-one", "compose_file": {"docker_compose_file": "a: [b"}}),
        json!({"name": "web-one", "compose_file": compose, "kms": "SOLANA"}),
        json!({"name": "web-one", "compose_file": compose, "kms": "BASE"}),
        json!({"name": "web-one", "compose_file": compose, "teepod_id": 99}),
        json!({"name": "web-one", "compose_file": compose, "instance_type": "tdx.huge"}),
        json!({"name": "web-one", "compose_file": compose, "image": "dstack-9.9.9"}),
        json!({"name": "web-one", "compose_file": {"docker_compose_file": WEB, "allowed_envs": ["A-B"]}}),
    ] {
        x.call("POST", "/cvms/provision", None, j(body));
    }
    x.call("POST", "/cvms/provision", None, Some(Body::Text("[1]".into())));

    // A create, with env encrypted to the app's key.
    let prov = x.call(
        "POST",
        "/cvms/provision",
        None,
        j(json!({"name": "web-one", "compose_file": compose, "env_keys": ["FOO"], "instance_type": "tdx.medium", "teepod_id": 2, "image": "dstack-0.5.4"})),
    );
    let app_id = prov["app_id"].as_str().unwrap().to_string();
    let hash = prov["compose_hash"].as_str().unwrap().to_string();
    let pubkey = prov["app_env_encrypt_pubkey"].as_str().unwrap().to_string();
    let enc = teeform::envcrypt::encrypt(&[("FOO".into(), "bar".into())], &pubkey).unwrap();
    x.call("POST", "/cvms", None, j(json!({"app_id": app_id, "compose_hash": "00"})));
    x.call("POST", "/cvms", None, j(json!({"app_id": "ab".repeat(20), "compose_hash": hash})));
    x.call("POST", "/cvms", None, j(json!({"app_id": app_id, "compose_hash": hash, "encrypted_env": "00ff"})));
    let vm = x.call(
        "POST",
        "/cvms",
        None,
        j(json!({"app_id": app_id, "compose_hash": hash, "encrypted_env": enc, "env_keys": ["FOO"]})),
    );
    let uuid = vm["vm_uuid"].as_str().unwrap().to_string();
    let instance = vm["instance_id"].as_str().unwrap().to_string();
    x.call("POST", "/cvms/provision", None, j(json!({"name": "web-one", "compose_file": compose})));
    // A second CVM, sized by vcpu and memory, to page through.
    let prov2 = x.call(
        "POST",
        "/cvms/provision",
        None,
        j(json!({"name": "web-two", "compose_file": {"docker_compose_file": WEB, "pre_launch_script": "echo hi"}, "vcpu": 3, "memory": 3072, "disk_size": 40, "listed": true})),
    );
    x.call("POST", "/cvms", None, j(json!({"app_id": prov2["app_id"], "compose_hash": prov2["compose_hash"]})));
    // The same-path create: the provision on POST /cvms answers a one-time token for the
    // commit; a commit is idempotent for its app id and hash, another hash is 409.
    let prov3 = x.call("POST", "/cvms", None, j(json!({"name": "web-three", "compose_file": compose})));
    let commit3 =
        |token: &Value| json!({"app_id": prov3["app_id"], "compose_hash": prov3["compose_hash"], "token": token});
    x.call("POST", "/cvms", None, j(commit3(&json!("not-the-token"))));
    x.call("POST", "/cvms", Some(V2605), j(commit3(&prov3["token"])));
    x.call("POST", "/cvms", None, j(commit3(&prov3["token"])));
    x.call("POST", "/cvms", None, j(json!({"app_id": prov3["app_id"], "compose_hash": "ab".repeat(32)})));
    x.call("POST", "/cvms", None, j(json!({"name": "web-four", "compose_file": {"docker_compose_file": 7}})));
    x.call("DELETE", "/cvms/web-three", None, None);

    // Reads of CVMs, in every version, by each kind of id.
    for v in [None, Some(V2025), Some(V2605)] {
        x.call("GET", "/cvms/paginated?page=1&page_size=1", v, None);
        x.call("GET", &format!("/cvms/{uuid}"), v, None);
        x.call("GET", "/apps", v, None);
        x.call("GET", "/apps?search=TWO", v, None);
        x.call("GET", &format!("/apps/{app_id}"), v, None);
        x.call("GET", &format!("/apps/0x{app_id}/cvms"), v, None);
    }
    x.call("GET", "/apps/nope", None, None);
    for id in [
        "web-one",
        &format!("app_{app_id}"),
        &format!("instance_{instance}"),
        &uuid.replace('-', ""),
        &app_id,
        &instance,
    ] {
        x.call("GET", &format!("/cvms/{id}/state"), None, None);
    }
    let hashid = x.call("GET", "/cvms/web-one/state", Some(V2605), None)["id"].as_str().unwrap().to_string();
    x.call("GET", &format!("/cvms/{hashid}"), Some(V2605), None);
    // The state as an event stream: it is running, so the stream completes at once.
    let events = || Some(Body::Headers(vec![("Accept", "text/event-stream".into())]));
    x.call("GET", "/cvms/web-one/state?target=running&interval=5&timeout=10", None, events());
    x.call("GET", "/cvms/web-one/state", None, events());
    x.call("GET", "/cvms/nope", None, None);
    x.call("GET", "/cvms/web-two/compose_file", None, None);
    x.call("GET", "/cvms/web-two/docker-compose.yml", None, None);
    x.call("GET", "/cvms/web-two/pre-launch-script", None, None);
    x.call("GET", "/cvms/web-one/available-os-images", None, None);
    x.call("POST", "/status/batch", None, j(json!({"vm_uuids": [uuid, "nope"]})));
    x.call("GET", &format!("/kms/kms_phala_sim/pubkey/{app_id}"), None, None);
    x.call("GET", "/_sim/cvms/web-one/env", None, None);
    x.call("GET", "/cvms/web-one/attestation", None, None);

    // Updates that are refused.
    for body in [
        json!({}),
        json!({"colour": "blue"}),
        json!({"vcpu": -1}),
        json!({"docker_compose_file": "a: [b"}),
        json!({"image": "dstack-9.9.9"}),
        json!({"instance_type": "tdx.huge"}),
        json!({"disk_size": 10}),
        json!({"encrypted_env": "00ff"}),
    ] {
        x.call("PATCH", "/cvms/web-one", None, j(body));
    }
    x.call("PATCH", "/cvms/nope", None, j(json!({"vcpu": 2})));

    // Updates by each endpoint.
    let enc2 =
        teeform::envcrypt::encrypt(&[("FOO".into(), "baz".into()), ("BAR".into(), "1".into())], &pubkey).unwrap();
    x.call(
        "PATCH",
        "/cvms/web-one",
        None,
        j(json!({"docker_compose_file": format!("{WEB}# v2\n"), "vcpu": 4, "memory": 8192, "gpus": {"count": 0}, "shutdown_timeout": 30, "allow_force_stop": true, "public_tcbinfo": true})),
    );
    // The same again changes nothing: no restart (`allow_restart` is accepted).
    x.call("PATCH", "/cvms/web-one", None, j(json!({"vcpu": 4, "memory": 8192, "allow_restart": true})));
    x.call("PATCH", "/cvms/web-one", None, j(json!({"allow_restart": true})));
    x.call("PATCH", "/cvms/web-one", Some("ignored"), Some(Body::Headers(vec![("X-Prepare-Only", "true".into())])));
    x.call("PATCH", "/cvms/web-one/envs", None, j(json!({"encrypted_env": enc2, "env_keys": ["FOO", "BAR"]})));
    x.call("PATCH", "/cvms/web-one/envs", None, j(json!({"env_keys": ["FOO"]})));
    x.call("PATCH", "/cvms/web-one/docker-compose", None, Some(Body::Text(format!("{WEB}# v3\n"))));
    x.call("PATCH", "/cvms/web-one/docker-compose", None, Some(Body::Text(format!("{WEB}# v3\n"))));
    x.call("PATCH", "/cvms/web-one/pre-launch-script", None, Some(Body::Text("echo v3".into())));
    x.call("PATCH", "/cvms/web-one/resources", None, j(json!({"instance_type": "tdx.large", "allow_restart": true})));
    x.call("PATCH", "/cvms/web-one/resources", None, j(json!({"vcpu": null})));
    x.call(
        "PATCH",
        "/cvms/web-one/visibility",
        None,
        j(json!({"public_logs": true, "public_sysinfo": false, "listed": true})),
    );
    x.call("PATCH", "/cvms/web-one/visibility", None, j(json!({})));
    x.call("PATCH", "/cvms/web-one/os-image", None, j(json!({"os_image_name": "dstack-0.5.5"})));
    x.call("PATCH", "/cvms/web-one/os-image", None, j(json!({})));
    let p = x.call(
        "POST",
        "/cvms/web-one/compose_file/provision",
        None,
        j(json!({"docker_compose_file": format!("{WEB}# v4\n"), "allowed_envs": ["FOO"], "name": "ignored"})),
    );
    x.call("PATCH", "/cvms/web-one/compose_file", None, j(json!({"compose_hash": "00"})));
    x.call("POST", "/cvms/web-one/compose_file/provision", None, j(json!({"pre_launch_script": "echo v3"})));
    x.call(
        "PATCH",
        "/cvms/web-one/compose_file",
        None,
        j(json!({"compose_hash": p["compose_hash"], "encrypted_env": enc, "env_keys": ["FOO"]})),
    );
    x.call("POST", "/cvms/web-one/commit-update", None, j(json!({"token": "t", "compose_hash": "h"})));
    x.call("POST", "/cvms/web-one/commit-update", None, j(json!({"compose_hash": "h"})));
    x.call(
        "PATCH",
        "/cvms/web-one",
        None,
        Some(Body::Headers(vec![("X-Compose-Hash", "ab".repeat(32)), ("X-Transaction-Hash", "0x01".into())])),
    );
    x.call("GET", &format!("/cvms/{uuid}"), None, None);
    x.call("GET", &format!("/cvms/{uuid}"), Some(V2025), None);

    // Renaming in place (UNVERIFIED: the provider's design note): to its own name, to one in
    // use, an invalid one, none, and of a CVM that is not there.
    x.call("PATCH", "/cvms/web-one/name", None, j(json!({"name": "web-one"})));
    x.call("PATCH", "/cvms/web-one/name", None, j(json!({"name": "web-two"})));
    x.call("PATCH", "/cvms/web-one/name", None, j(json!({"name": "no"})));
    x.call("PATCH", "/cvms/web-one/name", None, j(json!({})));
    x.call("PATCH", "/cvms/nope/name", None, j(json!({"name": "web-three"})));

    // Power (the VM with its integer id, and from 2026-05-22 its hashid), then delete.
    for (action, v) in [("stop", None), ("start", Some(V2605)), ("shutdown", None), ("restart", None)] {
        x.call("POST", &format!("/cvms/web-one/{action}"), v, None);
    }
    x.call("DELETE", "/cvms/web-two", None, None);
    x.call("DELETE", "/cvms/web-two", None, None);

    // The simulator's own routes.
    x.call("POST", "/_sim/config", None, j(json!({"latency_ms": 0, "fail_boot": ["web-one"]})));
    x.call("POST", "/_sim/config", None, j(json!({"latency_ms": "slow"})));
    x.call("POST", "/cvms/web-one/restart", None, None);
    x.call("GET", "/cvms/web-one/state", None, None);
    // Another instance of its app (a VM), on a node that exists and one that does not.
    x.call("POST", "/cvms/web-one/replicas", None, j(json!({"node_id": 2})));
    x.call("POST", "/cvms/web-one/replicas", None, j(json!({"node_id": 99})));
    x.call("GET", "/_sim/health", None, None);
    x.call("GET", "/_sim/config", None, None);
    x.call("GET", "/_sim/stats", None, None);

    let out = x.out;
    insta::assert_snapshot!(out);
}

#[test]
fn a_request_without_a_key_or_with_a_wrong_one_is_refused() {
    let t = TestEnv::new();
    let url = format!("{}/auth/me", t.prefix());
    let (none, wrong) = runtime().block_on(async {
        let c = reqwest::Client::new();
        let none = c.get(&url).send().await.unwrap();
        let none = (none.status().as_u16(), none.json::<Value>().await.unwrap());
        let wrong = c.get(&url).header("X-API-Key", "nope").send().await.unwrap();
        (none, (wrong.status().as_u16(), wrong.json::<Value>().await.unwrap()))
    });
    assert_eq!(none, (401, json!({"detail": "Not authenticated: send the X-API-Key header"})));
    assert_eq!(wrong, (401, json!({"detail": "Invalid API key"})));
}

#[test]
fn an_oidc_bearer_token_is_accepted_when_it_is_the_configured_one_in_the_workspace_it_names() {
    let t = TestEnv::with_config(SimConfig { bearer_token: Some("oidc-ok".into()), ..Default::default() });
    let url = format!("{}/auth/me", t.prefix());
    let get = |headers: &[(&str, &str)]| {
        runtime().block_on(async {
            let mut r = reqwest::Client::new().get(&url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            let resp = r.send().await.unwrap();
            let id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
            (resp.status().as_u16(), id.is_some_and(|i| i.starts_with("req_")))
        })
    };
    assert_eq!(get(&[("Authorization", "Bearer oidc-ok")]), (200, true));
    assert_eq!(get(&[("Authorization", "Bearer oidc-ok"), ("X-Phala-Workspace", "sim")]), (200, true));
    assert_eq!(get(&[("Authorization", "Bearer oidc-ok"), ("X-Phala-Workspace", "other")]), (403, true));
    assert_eq!(get(&[("Authorization", "Bearer oidc-wrong")]), (401, true));
    assert_eq!(get(&[("Authorization", "Basic b2lkYy1vaw==")]), (401, true));
    // A key wins when both are sent.
    assert_eq!(get(&[("Authorization", "Bearer oidc-wrong"), ("X-API-Key", KEY)]), (200, true));
    assert_eq!(get(&[("Authorization", "Bearer oidc-ok"), ("X-API-Key", "wrong")]), (401, true));
}

/// A stand-in chain for the simulator's JSON-RPC calls: `eth_call` (is a hash allowed?) answers
/// `allowed`; a receipt exists for `receipt`'s transaction, logging `ComposeHashAdded` of its
/// (app, hash).
#[derive(Clone, Default)]
struct StandIn {
    allowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    receipt: std::sync::Arc<std::sync::Mutex<Option<(String, String, String)>>>,
}

impl StandIn {
    fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |axum::Json(req): axum::Json<Value>| {
                let me = me.clone();
                async move {
                    let result = match req["method"].as_str() {
                        Some("eth_call") => {
                            let on = me.allowed.load(std::sync::atomic::Ordering::SeqCst);
                            json!(format!("0x{}{}", "0".repeat(63), u8::from(on)))
                        }
                        Some("eth_getTransactionReceipt") => match &*me.receipt.lock().unwrap() {
                            Some((tx, app, hash)) if req["params"][0] == *tx => json!({
                                "status": "0x1",
                                "logs": [{
                                    "address": format!("0x{app}"),
                                    "topics": ["0xfecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af"],
                                    "data": format!("0x{hash}"),
                                }],
                            }),
                            _ => Value::Null,
                        },
                        _ => Value::Null,
                    };
                    axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
                }
            }),
        );
        let listener = runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime().spawn(async move { axum::serve(listener, app).await });
        url
    }
}

#[test]
fn the_on_chain_branch_answers_as_recorded() {
    let chain = StandIn::default();
    let rpc = chain.serve();
    let t = TestEnv::with_config(SimConfig {
        restart_ms: 0,
        boot_ms: 0,
        chain_rpc: Some(rpc),
        kms_contract: Some(format!("0x{}", "11".repeat(20))),
        chain_id: Some(8453),
        ..Default::default()
    });
    let mut x = Transcript::new(&t);
    let allow = |on: bool| chain.allowed.store(on, std::sync::atomic::Ordering::SeqCst);

    x.call("GET", "/kms?is_onchain=true", None, None);
    let compose = json!({"docker_compose_file": WEB, "allowed_envs": ["A"]});
    let prov = x.call(
        "POST",
        "/cvms/provision",
        None,
        j(json!({"name": "chain-one", "compose_file": compose, "kms": "BASE"})),
    );
    let hash = prov["compose_hash"].as_str().unwrap().to_string();
    let app = "22".repeat(20);
    x.call("POST", "/cvms", None, j(json!({"app_id": "not-an-address", "compose_hash": hash})));
    allow(false);
    x.call("POST", "/cvms", None, j(json!({"app_id": app, "compose_hash": hash})));
    allow(true);
    x.call(
        "POST",
        "/cvms",
        None,
        j(json!({"app_id": format!("0x{app}"), "compose_hash": hash, "deployer_address": format!("0x{}", "33".repeat(20))})),
    );
    x.call("GET", "/cvms/chain-one", None, None);
    x.call("GET", "/cvms/chain-one", Some(V2025), None);

    // An update whose hash changes is held (465), whether the chain allows the hash yet or not.
    allow(false);
    let held = x.call("PATCH", "/cvms/chain-one", None, j(json!({"docker_compose_file": format!("{WEB}# v2\n")})));
    let details: BTreeMap<String, Value> = held["detail"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["field"].as_str().unwrap().to_string(), d["value"].clone()))
        .collect();
    let token = details["commit_token"].as_str().unwrap().to_string();
    let new_hash = details["compose_hash"].as_str().unwrap().to_string();
    x.call("POST", "/cvms/chain-one/commit-update", None, j(json!({"token": token, "compose_hash": new_hash})));
    x.call("POST", "/cvms/chain-one/commit-update", None, j(json!({"token": "other", "compose_hash": new_hash})));
    allow(true);
    x.call(
        "POST",
        "/cvms/chain-one/commit-update",
        None,
        j(json!({"token": token, "compose_hash": new_hash, "transaction_hash": "0xbad"})),
    );
    *chain.receipt.lock().unwrap() = Some(("0xgood".into(), app.clone(), new_hash.clone()));
    x.call(
        "POST",
        "/cvms/chain-one/commit-update",
        None,
        j(json!({"token": token, "compose_hash": new_hash, "transaction_hash": "0xgood"})),
    );
    x.call("POST", "/cvms/chain-one/commit-update", None, j(json!({"token": token, "compose_hash": new_hash})));

    // Prepare-only holds even an update whose hash does not change; confirming by headers.
    x.call("PATCH", "/cvms/chain-one", None, Some(Body::Headers(vec![("X-Prepare-Only", "true".into())])));
    x.call("PATCH", "/cvms/chain-one", None, j(json!({"docker_compose_file": format!("{WEB}# v2\n"), "vcpu": 2})));
    // (A body and a header together, which `Body` does not make.)
    let (status, prep) = runtime().block_on(async {
        let r = reqwest::Client::new()
            .patch(format!("{}/cvms/chain-one", t.prefix()))
            .header("X-API-Key", KEY)
            .header("X-Prepare-Only", "true")
            .json(&json!({"vcpu": 2}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    });
    let shown = x.redact(&prep);
    writeln!(x.out, "### PATCH /cvms/chain-one (X-Prepare-Only)\n{status}\n{}\n", pretty(&shown)).unwrap();
    x.call(
        "PATCH",
        "/cvms/chain-one",
        None,
        Some(Body::Headers(vec![
            ("X-Compose-Hash", new_hash.clone()),
            ("X-Transaction-Hash", "already-registered".into()),
        ])),
    );

    // Env and compose endpoints of an on-chain CVM.
    x.call("PATCH", "/cvms/chain-one/envs", None, j(json!({"encrypted_env": "", "env_keys": ["A", "B"]})));
    x.call(
        "PATCH",
        "/cvms/chain-one/envs",
        None,
        j(json!({"encrypted_env": "", "env_keys": ["A", "B"], "compose_hash": "ff", "transaction_hash": "0x01"})),
    );
    let p = x.call(
        "POST",
        "/cvms/chain-one/compose_file/provision",
        None,
        j(json!({"docker_compose_file": format!("{WEB}# v5\n")})),
    );
    allow(false);
    x.call("PATCH", "/cvms/chain-one/compose_file", None, j(json!({"compose_hash": p["compose_hash"]})));
    allow(true);
    x.call("PATCH", "/cvms/chain-one/compose_file", None, j(json!({"compose_hash": p["compose_hash"]})));
    x.call("GET", "/_sim/stats", None, None);

    let out = x.out;
    insta::assert_snapshot!(out);
}

/// The SSE form of `GET /cvms/{id}/state`: a `state` event at once, one for each change of
/// status, then `complete` once the status is the target; the stream then ends.
#[test]
fn the_state_stream_follows_a_restart_to_its_end() {
    let t = TestEnv::with_config(SimConfig { restart_ms: 600, boot_ms: 0, ..Default::default() });
    let (code, prov) =
        t.api("POST", "/cvms", Some(json!({"name": "web-watch", "compose_file": {"docker_compose_file": WEB}})));
    assert_eq!(code, 200, "{prov}");
    let (code, vm) = t.api(
        "POST",
        "/cvms",
        Some(json!({"app_id": prov["app_id"], "compose_hash": prov["compose_hash"], "token": prov["token"]})),
    );
    assert_eq!(code, 200, "{vm}");
    assert_eq!(t.api("POST", "/cvms/web-watch/restart", None).0, 200);
    let url = format!("{}/cvms/web-watch/state?target=running", t.prefix());
    let text = runtime().block_on(async {
        let r = reqwest::Client::new()
            .get(&url)
            .header("X-API-Key", KEY)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        r.text().await.unwrap()
    });
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let field = |k: &str| e.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_default().trim().to_string();
            (field("event:"), serde_json::from_str(&field("data:")).unwrap())
        })
        .collect();
    let kinds: Vec<(&str, &str)> = events.iter().map(|(k, d)| (k.as_str(), d["status"].as_str().unwrap())).collect();
    assert_eq!(kinds, [("state", "restarting"), ("complete", "running")], "{text}");
    assert_eq!(events[1].1["name"], "web-watch");
}
