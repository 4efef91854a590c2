//! Secrets never reach disk or output. A canary secret goes through validate, a saved plan,
//! apply, show, output and a failing apply, all with trace logging; then every byte written
//! (state directory, plan file, stdout, stderr) is scanned for it in plain, hex and base64.

use base64::Engine;

use crate::harness::{Run, TestEnv, WEB};

const MANIFEST: &str = "cvms:
  web:
    name: web-secret
    compose: web.yml
    env:
      DB_PASSWORD: ${secret:env:DB_PASSWORD}
      API_TOKEN: ${secret:file:api.token}
      DSN: postgres://app:${secret:env:DB_PASSWORD}@db:5432/app
      MODE: plain-value
outputs:
  dsn:
    value: postgres://app:${secret:env:DB_PASSWORD}@db:5432/app
    sensitive: true
  web_id: ${cvm.web.id}
";

/// Every encoding of `canary` to look for, including base64 at each byte alignment.
fn forms(canary: &str) -> Vec<String> {
    let mut out = vec![canary.to_string(), hex::encode(canary), hex::encode(canary).to_uppercase()];
    for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE_NO_PAD] {
        for shift in 0..3 {
            let prefixed = format!("{}{canary}", "x".repeat(shift));
            let enc = engine.encode(prefixed.as_bytes());
            // Characters fully determined by the canary's bytes.
            let start = (shift * 4).div_ceil(3) + 1;
            let end = ((shift + canary.len()) * 4 / 3).saturating_sub(1);
            out.push(enc[start..end].to_string());
        }
    }
    out
}

fn scan(label: &str, bytes: &[u8], needles: &[String], hits: &mut Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    for n in needles {
        if text.contains(n.as_str()) {
            hits.push(format!("{label}: contains {n:?}"));
        }
    }
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { walk(&p, out) } else { out.push(p) }
    }
}

#[test]
fn canary_secret_never_written_or_printed() {
    let canary = format!("CANARY{}", uuid::Uuid::new_v4().simple());
    let canary2 = format!("TOKEN{}", uuid::Uuid::new_v4().simple());
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), canary.clone());
    t.env.insert("TEEFORM_LOG".into(), "trace".into());
    t.write("web.yml", WEB);
    t.write("api.token", &format!("{canary2}\n"));
    t.manifest(MANIFEST);

    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut go = |name: &str, args: &[&str]| {
        let r = t.run(args);
        let code = r.code;
        if code != 0 {
            eprintln!(
                "{name} failed:\n{}",
                r.stderr
                    .lines()
                    .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        runs.push((name.to_string(), r));
        code
    };
    assert_eq!(go("validate", &["validate"]), 0);
    assert_eq!(go("plan", &["plan", "--out", "saved.plan"]), 0);
    assert_eq!(go("show-plan", &["show", "saved.plan", "--json"]), 0);
    assert_eq!(go("apply", &["apply", "saved.plan"]), 0);
    assert_eq!(go("show-state", &["show", "--json"]), 0);
    assert_eq!(go("state-show", &["state", "show", "cvm.web", "--json"]), 0);
    assert_eq!(go("output", &["output"]), 0);
    assert_eq!(go("output-json", &["output", "--json"]), 0);
    assert_eq!(go("plan-json", &["plan", "--json"]), 0);
    // A failing apply: the secret changes (so env is sent again) and the image does not exist.
    t.env.insert("DB_PASSWORD".into(), format!("{canary}-changed"));
    t.manifest(&MANIFEST.replace("    compose: web.yml\n", "    compose: web.yml\n    image: no-such-image\n"));
    // Without refresh the plan does not check the image against the API's catalog, so the
    // update is sent (with the env) and refused.
    let failed = t.run(&["apply", "--auto-approve", "--refresh=false"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    runs.push(("failing-apply".into(), failed));

    // The simulator got the exact env (decrypted with its test KMS key).
    let id = t.api("GET", "/cvms/web-secret", None).1["vm_uuid"].as_str().unwrap().to_string();
    let env = t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"].clone();
    assert_eq!(env["DB_PASSWORD"], canary.as_str());
    assert_eq!(env["API_TOKEN"], canary2.as_str());
    assert_eq!(env["DSN"], format!("postgres://app:{canary}@db:5432/app"));
    assert_eq!(env["MODE"], "plain-value");

    let mut needles = forms(&canary);
    needles.extend(forms(&canary2));
    let mut hits = Vec::new();
    for (name, r) in &runs {
        scan(&format!("{name} stdout"), r.stdout.as_bytes(), &needles, &mut hits);
        scan(&format!("{name} stderr"), r.stderr.as_bytes(), &needles, &mut hits);
    }
    let mut files = Vec::new();
    walk(t.dir.path(), &mut files);
    let mut scanned = 0;
    for f in &files {
        // The secret's own source file holds it by design.
        if f.ends_with("api.token") {
            continue;
        }
        scanned += 1;
        scan(&f.display().to_string(), &std::fs::read(f).unwrap(), &needles, &mut hits);
    }
    assert!(scanned >= 5, "the state directory and plan file were scanned ({scanned} files)");
    assert!(runs.iter().any(|(_, r)| r.stderr.contains("http request")), "trace logging was on");
    assert!(hits.is_empty(), "the secret leaked:\n{}", hits.join("\n"));

    // The plan still told the user what changed, without the value.
    let plan_text = &runs.iter().find(|(n, _)| n == "plan").unwrap().1.stdout;
    assert!(plan_text.contains("DB_PASSWORD = (sensitive value)"), "{plan_text}");

    use std::os::unix::fs::PermissionsExt;
    for f in files.iter().filter(|f| f.starts_with(t.path("state")) || f.ends_with("saved.plan")) {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is readable by others ({mode:o})", f.display());
    }
}

#[test]
fn the_canary_check_finds_leaks() {
    // The scanner itself must be able to fail: each encoded form is found when present.
    let canary = "CANARYabcdef0123456789abcdef0123";
    let needles = forms(canary);
    for blob in [
        canary.to_string(),
        hex::encode(format!("..{canary}..")),
        base64::engine::general_purpose::STANDARD.encode(format!("a{canary}b")),
    ] {
        let mut hits = Vec::new();
        scan("blob", blob.as_bytes(), &needles, &mut hits);
        assert!(!hits.is_empty(), "{blob} not detected");
    }
}

#[test]
fn changing_a_secret_is_one_update_and_one_restart() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "first-password".into());
    t.write("web.yml", WEB);
    t.write("api.token", "token\n");
    t.manifest(MANIFEST);
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    t.env.insert("DB_PASSWORD".into(), "second-password".into());
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("~ DB_PASSWORD = (sensitive value) (changed)"), "{}", p.stdout);
    assert!(p.stdout.contains("~ DSN = (sensitive value) (changed)"), "{}", p.stdout);
    assert!(p.stdout.contains("1 to change"), "{}", p.stdout);
    let before = t.cvm_stat("web-secret", "restarts").as_u64().unwrap();
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.cvm_stat("web-secret", "restarts").as_u64().unwrap(), before + 1);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    let id = t.api("GET", "/cvms/web-secret", None).1["vm_uuid"].as_str().unwrap().to_string();
    assert_eq!(t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"]["DB_PASSWORD"], "second-password");
}

#[test]
fn output_raw_prints_one_value_and_a_sensitive_one_only_as_applied() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "applied-password".into());
    t.write("web.yml", WEB);
    t.write("api.token", "token\n");
    t.manifest(MANIFEST);
    t.run(&["apply", "--auto-approve"]).ok();
    // Listing still hides it; state keeps only a digest.
    assert!(t.run(&["output"]).ok().stdout.contains("dsn = (sensitive value)"));
    let state = t.run(&["show", "--json"]).ok().stdout.clone();
    assert!(!state.contains("applied-password"), "{state}");
    // By name, raw: the value alone, no newline, computed again and checked against the digest.
    let raw = t.run(&["output", "--raw", "dsn"]);
    assert_eq!(raw.ok().stdout, "postgres://app:applied-password@db:5432/app");
    let id = t.run(&["output", "--raw", "web_id"]);
    assert_eq!(id.ok().stdout, t.api("GET", "/cvms/web-secret", None).1["vm_uuid"].as_str().unwrap());
    // Raw needs exactly one name.
    let all = t.run(&["output", "--raw"]);
    all.code(1);
    assert!(all.stdout.is_empty(), "{}", all.stdout);
    assert!(all.stderr.contains("--raw prints the value of one output: name it"), "{}", all.stderr);
    assert!(all.stderr.contains("teeform output --raw dsn"), "{}", all.stderr);
    // A secret changed since the apply: nothing printed, and the error says why.
    t.env.insert("DB_PASSWORD".into(), "rotated-password".into());
    let stale = t.run(&["output", "--raw", "dsn"]);
    stale.code(1);
    assert!(stale.stdout.is_empty(), "{}", stale.stdout);
    assert!(stale.stderr.contains("other than the one last applied"), "{}", stale.stderr);
    assert!(!stale.stderr.contains("password"), "{}", stale.stderr);
    // The secret's source gone: a clear error, nothing printed.
    t.env.remove("DB_PASSWORD");
    let gone = t.run(&["output", "--raw", "dsn"]);
    gone.code(1);
    assert!(gone.stderr.contains("DB_PASSWORD is not set"), "{}", gone.stderr);
}

#[test]
fn a_saved_plan_refuses_a_secret_changed_since() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "planned".into());
    t.write("web.yml", WEB);
    t.write("api.token", "token\n");
    t.manifest(MANIFEST);
    t.run(&["plan", "--out", "p.plan"]).ok();
    t.env.insert("DB_PASSWORD".into(), "swapped".into());
    let r = t.run(&["apply", "p.plan"]);
    r.code(1);
    assert!(r.stderr.contains("the secret changed since the plan was made"), "{}", r.stderr);
    assert!(!r.stderr.contains("swapped") && !r.stderr.contains("planned"));
}

#[test]
fn missing_secret_is_a_clear_error_before_any_change() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(MANIFEST);
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("environment variable DB_PASSWORD is not set"), "{}", r.stderr);
    assert!(r.stderr.contains("api.token"), "{}", r.stderr);
    assert_eq!(t.count("POST"), 0);
}

#[test]
fn api_key_from_the_phala_credentials_file_only_when_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut t = TestEnv::new();
    t.env.remove("PHALA_CLOUD_API_KEY");
    t.env.insert("PHALA_CLOUD_DIR".into(), t.path("phala").display().to_string());
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-creds\n    compose: web.yml\n");
    let creds = format!(
        r#"{{"schema_version":1,"current_profile":"work","profiles":{{"work":{{"token":"{}","api_prefix":"x"}}}}}}"#,
        crate::harness::KEY
    );
    t.write("phala/credentials.json", &creds);
    std::fs::set_permissions(t.path("phala/credentials.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("readable by other users"), "{}", r.stderr);
    assert!(!r.stderr.contains(crate::harness::KEY));
    std::fs::set_permissions(t.path("phala/credentials.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = t.run(&["plan", "--detailed-exitcode"]);
    r.code(2);
    // Without any key the API's 401 is explained.
    std::fs::remove_file(t.path("phala/credentials.json")).unwrap();
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("PHALA_CLOUD_API_KEY"), "{}", r.stderr);
}

/// A JSON-RPC chain that answers what teeform and the simulator ask of an app contract:
/// `eth_chainId` (31337) and `eth_call` of `allowedComposeHashes` (the `allowed` flag).
/// Counts the requests that came to each path, so a test can tell which URL was used. With
/// `echo` on it answers calls with an error quoting the URL it was called at, as servers do.
struct FakeChain {
    addr: std::net::SocketAddr,
    allowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    echo: std::sync::Arc<std::sync::atomic::AtomicBool>,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeChain {
    fn start() -> FakeChain {
        use std::sync::atomic::Ordering;
        let allowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let echo = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, e, p) = (allowed.clone(), echo.clone(), paths.clone());
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let (a, e, p) = (a.clone(), e.clone(), p.clone());
            async move {
                p.lock().unwrap().push(uri.to_string());
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if e.load(Ordering::SeqCst) && req["method"] == "eth_call" {
                    let message = format!("rate limit exceeded for http://{{host}}{uri}");
                    return axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32005, "message": message}}));
                }
                let result = match req["method"].as_str() {
                    Some("eth_chainId") => serde_json::json!("0x7a69"),
                    Some("eth_call") => {
                        let data = req["params"][0]["input"].as_str().or(req["params"][0]["data"].as_str());
                        assert!(data.unwrap_or_default().starts_with("0x2f6622e5"), "unexpected call {req}");
                        let bit = if a.load(Ordering::SeqCst) { "1" } else { "0" };
                        serde_json::json!(format!("0x{}{bit}", "0".repeat(63)))
                    }
                    _ => {
                        return axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32601, "message": "not here"}}));
                    }
                };
                axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
            }
        });
        let addr = crate::harness::runtime().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(l, app).await });
            addr
        });
        FakeChain { addr, allowed, echo, paths }
    }

    fn allow(&self, on: bool) {
        self.allowed.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn hits(&self, path_part: &str) -> usize {
        self.paths.lock().unwrap().iter().filter(|p| p.contains(path_part)).count()
    }
}

#[test]
fn rpc_and_database_urls_never_written_or_printed() {
    let path_key = format!("PATHKEY{}", uuid::Uuid::new_v4().simple());
    let query_key = format!("QUERYKEY{}", uuid::Uuid::new_v4().simple());
    let env_key = format!("ENVKEY{}", uuid::Uuid::new_v4().simple());
    let pg_password = format!("PGPASS{}", uuid::Uuid::new_v4().simple());
    let chain = FakeChain::start();
    let mut t = TestEnv::with_config(teeform::sim::SimConfig {
        restart_ms: 150,
        boot_ms: 150,
        chain_rpc: Some(format!("http://{}/sim", chain.addr)),
        kms_contract: Some(format!("0x{}", "42".repeat(20))),
        chain_id: Some(31337),
        ..Default::default()
    });
    t.env.insert("TEEFORM_LOG".into(), "trace".into());
    t.write("web.yml", WEB);
    // An on-chain-KMS CVM, created as another tool would (its app contract is the fake's).
    let (code, prov) = t.api(
        "POST",
        "/cvms/provision",
        Some(serde_json::json!({"name": "chain-canary", "kms": "BASE", "compose_file": {"docker_compose_file": WEB, "allowed_envs": []}})),
    );
    assert_eq!(code, 200, "{prov}");
    let app = "ab".repeat(20);
    let (code, vm) =
        t.api("POST", "/cvms", Some(serde_json::json!({"app_id": app, "compose_hash": prov["compose_hash"]})));
    assert_eq!(code, 200, "{vm}");
    t.settle();

    let rpc_url = format!("http://{}/v3/{path_key}?apikey={query_key}", chain.addr);
    t.manifest(&format!(
        "cvms:\n  web:\n    name: chain-canary\n    compose: web.yml\n    kms:\n      chain: 31337\n      rpc_url: {rpc_url}\n"
    ));
    let mut runs: Vec<(String, Run)> = Vec::new();
    fn go(runs: &mut Vec<(String, Run)>, t: &TestEnv, name: &str, args: &[&str], want: i32) {
        let r = t.run(args);
        assert_eq!(r.code, want, "{name}\nstdout:\n{}\nstderr (last lines):\n{}", r.stdout, tail(&r.stderr));
        runs.push((name.to_string(), r));
    }
    go(&mut runs, &t, "import", &["import", "cvm.web", "chain-canary"], 0);
    // A compose change makes the API require the new hash on chain.
    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    let before = chain.hits(&path_key);
    go(&mut runs, &t, "plan", &["plan", "--out", "saved.plan"], 0);
    assert!(chain.hits(&path_key) > before, "the plan asked the chain at the manifest's URL");
    go(&mut runs, &t, "show-plan", &["show", "saved.plan", "--json"], 0);
    chain.allow(false);
    go(&mut runs, &t, "apply-saved", &["apply", "saved.plan"], 3);
    go(&mut runs, &t, "state-show", &["state", "show", "cvm.web", "--json"], 0);
    // Resuming reads the URL from the manifest again (state has none to read).
    chain.allow(true);
    let before = chain.hits(&path_key);
    go(&mut runs, &t, "resume", &["apply", "--resume", "--timeout", "20s"], 0);
    assert!(chain.hits(&path_key) > before, "the resume asked the chain at the manifest's URL");
    go(&mut runs, &t, "plan-after", &["plan", "--detailed-exitcode"], 0);

    // A server that quotes the URL it was called at (key and all) in its error.
    chain.echo.store(true, std::sync::atomic::Ordering::SeqCst);
    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.29"));
    go(&mut runs, &t, "plan-echo", &["plan", "--out", "echo.plan"], 0);
    assert!(runs.last().unwrap().1.stdout.contains("rate limit exceeded"), "the server's error is shown");
    chain.echo.store(false, std::sync::atomic::Ordering::SeqCst);
    // A saved plan whose `kms.rpc_url` changed since is refused (it keeps only a fingerprint).
    t.manifest(&format!(
        "cvms:\n  web:\n    name: chain-canary\n    compose: web.yml\n    kms:\n      chain: 31337\n      rpc_url: {rpc_url}&rotated=1\n"
    ));
    go(&mut runs, &t, "apply-stale-url", &["apply", "echo.plan"], 1);
    assert!(runs.last().unwrap().1.stderr.contains("`kms.rpc_url` in the manifest changed since the plan was made"));

    // An RPC URL from the environment, unreachable: the error names host and port only.
    t.manifest("cvms:\n  web:\n    name: chain-canary\n    compose: web.yml\n    kms:\n      chain: 31337\n");
    t.env.insert("ETH_RPC_URL".into(), format!("http://127.0.0.1:1/v2/{env_key}"));
    t.write("web.yml", WEB);
    go(&mut runs, &t, "plan-unreachable", &["plan"], 0);
    let warned = &runs.last().unwrap().1;
    assert!(warned.stdout.contains("cannot check the chain") || warned.stderr.contains("cannot check the chain"));

    // A PostgreSQL URL with a password, unreachable, at trace level.
    t.env.insert("TEEFORM_PG_CONN".into(), format!("postgres://teeform:{pg_password}@127.0.0.1:1/teeform"));
    go(&mut runs, &t, "pg-list", &["--backend", "postgres", "state", "list"], 1);
    go(&mut runs, &t, "pg-migrate", &["state", "migrate", "--to", "postgres"], 1);

    let mut needles = Vec::new();
    for k in [&path_key, &query_key, &env_key, &pg_password] {
        needles.extend(forms(k));
    }
    let mut hits = Vec::new();
    for (name, r) in &runs {
        scan(&format!("{name} stdout"), r.stdout.as_bytes(), &needles, &mut hits);
        scan(&format!("{name} stderr"), r.stderr.as_bytes(), &needles, &mut hits);
    }
    let mut files = Vec::new();
    walk(t.dir.path(), &mut files);
    for f in files.iter().filter(|f| !f.ends_with("teeform.yaml")) {
        scan(&f.display().to_string(), &std::fs::read(f).unwrap(), &needles, &mut hits);
    }
    assert!(files.iter().any(|f| f.starts_with(t.path("state"))), "the state directory was scanned");
    assert!(runs.iter().any(|(_, r)| r.stderr.contains("TRACE")), "trace logging was on");
    assert!(hits.is_empty(), "an RPC or database URL leaked:\n{}", hits.join("\n"));
    // What may be shown is shown: which endpoint, without its key.
    let all: String = runs.iter().map(|(_, r)| format!("{}{}", r.stdout, r.stderr)).collect();
    assert!(all.contains("http://127.0.0.1:1/…"), "the unreachable RPC is named by host and port");
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.contains("TRACE") && !l.contains("DEBUG")).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
