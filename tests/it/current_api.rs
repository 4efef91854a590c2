//! teeform against what the API and the official SDKs do since the versions teeform first
//! pinned (issue 17): the same-path create with its one-time token (and the fallback to the
//! legacy provision where the API has no such flow), `no_change` answers, keyless CI auth with
//! an OIDC token, and the API version teeform keeps speaking.

use serde_json::{Value, json};
use teeform::sim::SimConfig;

use crate::harness::{TestEnv, WEB};
use crate::proxy::Proxy;

const ONE: &str = "cvms:\n  web:\n    name: web-current\n    compose: web.yml\n";

/// A simulator with a recording proxy in front of it, and a manifest whose endpoint is the
/// proxy.
fn through_proxy(cfg: SimConfig) -> (TestEnv, Proxy) {
    let t = TestEnv::with_config(cfg);
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    t.write("web.yml", WEB);
    t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{ONE}", p.prefix()));
    (t, p)
}

fn quick() -> SimConfig {
    SimConfig { restart_ms: 150, boot_ms: 150, ..Default::default() }
}

fn body(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

#[test]
fn a_create_provisions_and_commits_on_post_cvms_with_the_one_time_token() {
    let (t, p) = through_proxy(quick());
    t.run(&["apply", "--auto-approve"]).ok();
    let posts: Vec<Value> =
        p.seen().iter().filter(|s| s.method == "POST" && s.target == "/api/v1/cvms").map(|s| body(&s.body)).collect();
    assert_eq!(posts.len(), 2, "a provision and a commit, both on POST /cvms: {posts:?}");
    assert_eq!(t.count_exact("POST /api/v1/cvms/provision"), 0, "the deprecated endpoint is not used");
    let (provision, commit) = (&posts[0], &posts[1]);
    assert_eq!(provision["name"], "web-current");
    assert!(provision.get("compose_hash").is_none(), "{provision}");
    let token = commit["token"].as_str().expect("the commit carries the provision's token");
    assert!(!token.is_empty());
    assert!(commit["compose_hash"].is_string() && commit["app_id"].is_string(), "{commit}");
    assert_eq!(t.cvm_stat("web-current", "status"), "running");
    // The token is a one-time capability: nothing written keeps it.
    let state = std::fs::read_dir(t.path("state")).unwrap().flatten().map(|e| e.path());
    for f in state.filter(|f| f.is_file()) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        assert!(!text.contains(token), "{} holds the commit token", f.display());
    }
}

#[test]
fn an_api_without_the_same_path_create_gets_the_legacy_provision_once_asked() {
    let (t, p) = through_proxy(SimConfig { legacy_create: true, ..quick() });
    t.write(
        "teeform.yaml",
        &format!(
            "provider:\n  phala:\n    endpoint: {}\n{ONE}  db:\n    name: db-current\n    compose: web.yml\n    depends_on: [web]\n",
            p.prefix()
        ),
    );
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.cvm_stat("web-current", "status"), "running");
    assert_eq!(t.cvm_stat("db-current", "status"), "running");
    // The first provision on POST /cvms was refused as a commit (422 for `app_id`); from then on
    // the run provisions on the legacy endpoint: one refused try, two provisions, two commits
    // (`db` waits for `web`, so the second create starts after the first learned it).
    assert_eq!(t.count_exact("POST /api/v1/cvms/provision"), 2);
    assert_eq!(t.count_exact("POST /api/v1/cvms"), 3);
    let commits = p.seen().into_iter().filter(|s| s.method == "POST" && s.target == "/api/v1/cvms");
    let commits: Vec<Value> = commits.map(|s| body(&s.body)).filter(|b| b.get("compose_hash").is_some()).collect();
    assert_eq!(commits.len(), 2);
    assert!(commits.iter().all(|c| c.get("token").is_none()), "no token without the same-path create: {commits:?}");
}

#[test]
fn an_update_the_api_already_has_restarts_nothing_and_is_recorded() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(ONE);
    t.run(&["apply", "--auto-approve"]).ok();
    // The API reports no stop settings, so teeform knows them from state only; another tool
    // sets them first.
    let (code, out) = t.api("PATCH", "/cvms/web-current", Some(json!({"shutdown_timeout": 30})));
    assert_eq!(code, 202, "{out}");
    t.settle();
    let restarts = t.cvm_stat("web-current", "restarts");
    t.manifest(&format!("{ONE}    shutdown_timeout: 30\n"));
    let apply = t.run(&["apply", "--auto-approve"]);
    apply.ok();
    assert!(apply.stderr.contains("already so: the API changed nothing"), "{}", apply.stderr);
    assert!(
        apply.stderr.contains("Resources: 0 added, 0 changed, 0 destroyed."),
        "nothing changed in the cloud:\n{}",
        apply.stderr
    );
    assert_eq!(t.cvm_stat("web-current", "restarts"), restarts, "no restart");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn an_oidc_token_authenticates_when_no_api_key_is_set_and_is_never_shown() {
    let token = "eyJhbGciOiJSUzI1NiJ9.oidc-token-0123456789.sig";
    let mut t = TestEnv::with_config(SimConfig { bearer_token: Some(token.into()), ..quick() });
    t.write("web.yml", WEB);
    t.manifest(ONE);
    t.env.remove("PHALA_CLOUD_API_KEY");
    t.env.insert("PHALA_OIDC_TOKEN".into(), token.into());
    t.env.insert("PHALA_CLOUD_WORKSPACE".into(), "sim".into());
    t.env.insert("TEEFORM_LOG".into(), "trace".into());
    let apply = t.run(&["apply", "--auto-approve"]);
    apply.ok();
    assert_eq!(t.cvm_stat("web-current", "status"), "running");
    assert!(!apply.stderr.contains(token) && !apply.stdout.contains(token), "the token was shown");

    // A workspace that does not trust the token is refused, with what to check.
    t.env.insert("PHALA_CLOUD_WORKSPACE".into(), "someone-else".into());
    let plan = t.run(&["plan"]);
    plan.code(1);
    assert!(plan.stderr.contains("HTTP 403"), "{}", plan.stderr);
    assert!(plan.stderr.contains("workspace `someone-else`, PHALA_CLOUD_WORKSPACE"), "{}", plan.stderr);
    assert!(!plan.stderr.contains(token), "{}", plan.stderr);

    // A wrong token is a 401 that says where the token came from.
    t.env.insert("PHALA_CLOUD_WORKSPACE".into(), "sim".into());
    t.env.insert("PHALA_OIDC_TOKEN".into(), "not-the-token".into());
    let plan = t.run(&["plan"]);
    plan.code(1);
    assert!(plan.stderr.contains("HTTP 401") && plan.stderr.contains("PHALA_OIDC_TOKEN"), "{}", plan.stderr);

    // An API key wins over the token, as the `phala` CLI prefers it.
    t.env.insert("PHALA_CLOUD_API_KEY".into(), crate::harness::KEY.into());
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn an_api_that_does_not_serve_teeforms_version_is_named_in_the_error() {
    let (t, p) = through_proxy(quick());
    // The simulator refuses a version it does not serve, with the API's structured error...
    let url = format!("{}/auth/me", t.prefix());
    let (status, err): (u16, Value) = crate::harness::runtime().block_on(async {
        let r = reqwest::Client::new()
            .get(&url)
            .header("X-API-Key", crate::harness::KEY)
            .header("X-Phala-Version", "2099-01-01")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    });
    assert_eq!((status, err["error_code"].as_str()), (400, Some("ERR-02-008")), "{err}");
    // ...and an API that refuses teeform's version so gets an error naming the one it speaks.
    let refusal = err.to_string().replace("2099-01-01", teeform::providers::phala::API_VERSION);
    p.on("GET", "/cvms/paginated", crate::proxy::Fault::answer(400, &[], &refusal));
    let plan = t.run(&["plan"]);
    plan.code(1);
    assert!(plan.stderr.contains("teeform speaks Phala Cloud API version 2026-01-21"), "{}", plan.stderr);
}
