//! A hostile or broken API never costs data, secrets or the process. A fault-injecting proxy
//! (`proxy.rs`) sits between the real binary and the simulator and answers as a broken or
//! malicious server would: redirects elsewhere, `Retry-After` garbage, bodies that never end,
//! listings that never end, answers of the wrong shape or for another CVM. Each test fails
//! without the guard it checks.

use serde_json::{Value, json};
use teeform::sim::SimConfig;
use teeform::sim::catalogs::{NSCALE_REGION, OCI_COMPARTMENT};

use crate::harness::{KEY, Run, TestEnv, WEB};
use crate::proxy::{Fault, Proxy};

const ONE: &str = "cvms:\n  web:\n    name: web-hostile\n    compose: web.yml\n";
const TWO: &str =
    "cvms:\n  web:\n    name: web-hostile\n    compose: web.yml\n  db:\n    name: db-hostile\n    compose: web.yml\n";

/// A simulator, a proxy in front of it, and a manifest whose endpoint is the proxy.
fn setup(manifest: &str) -> (TestEnv, Proxy) {
    let mut t = TestEnv::new();
    // Retries quick, so tests that exercise them stay short.
    t.env.insert("TEEFORM_RETRY_BASE_MS".into(), "1".into());
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    t.write("web.yml", WEB);
    write_manifest(&t, &p, manifest);
    (t, p)
}

fn write_manifest(t: &TestEnv, p: &Proxy, body: &str) {
    t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{body}", p.prefix()));
}

/// The same, with CVMs created (through the proxy, with no faults yet).
fn applied(manifest: &str) -> (TestEnv, Proxy) {
    let (t, p) = setup(manifest);
    t.run(&["apply", "--auto-approve"]).ok();
    (t, p)
}

/// The `vm_uuid` of a CVM, asked from the simulator directly.
fn uuid_of(t: &TestEnv, name: &str) -> String {
    t.api("GET", &format!("/cvms/{name}"), None).1["vm_uuid"].as_str().unwrap().replace('-', "")
}

/// A change made to an answer, and the words the error must say.
type Rewrite = fn(Value) -> Value;

#[track_caller]
fn fails_with(r: &Run, wanted: &[&str]) {
    r.code(1);
    for w in wanted {
        assert!(r.stderr.contains(w), "missing `{w}` in\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

// ----- redirects -----------------------------------------------------------------------------

#[test]
fn a_redirect_to_another_origin_is_refused_and_the_key_never_leaves() {
    let (t, p) = setup(ONE);
    let elsewhere = Proxy::recorder();
    let to = format!("{}/api/v1/cvms/paginated?page=1&page_size=100", elsewhere.origin());
    for status in [301, 302, 303, 307, 308] {
        p.clear();
        p.on("GET", "/cvms/paginated", Fault::redirect(status, &to));
        let before = p.count("GET", "/cvms/paginated");
        let r = t.run(&["plan"]);
        fails_with(&r, &["redirected to another origin", &elsewhere.origin()]);
        // The refusal is final: not retried.
        assert_eq!(p.count("GET", "/cvms/paginated") - before, 1, "HTTP {status}");
        assert!(elsewhere.seen().is_empty(), "HTTP {status}: a request reached the other origin");
    }
    // A create's POST is refused the same way, and nothing is recorded.
    p.clear();
    p.on_path("POST", "/api/v1/cvms", Fault::redirect(307, &format!("{}/api/v1/cvms", elsewhere.origin())));
    let r = t.run(&["apply", "--auto-approve", "--refresh=false"]);
    fails_with(&r, &["redirected to another origin"]);
    assert!(elsewhere.seen().is_empty(), "the create reached the other origin");
    t.run(&["state", "list"]).ok();
    assert_eq!(t.stats()["cvms"].as_object().unwrap().len(), 0);

    // Within the origin a redirect is followed, as the official SDK's fetch does.
    p.clear();
    let moved = format!("{}/api/v1/cvms/paginated?page=1&page_size=100&moved=1", p.origin());
    p.times(1, "GET", "/cvms/paginated", Fault::redirect(307, &moved));
    t.run(&["plan"]).ok();
    assert_eq!(p.count("GET", "moved=1"), 1);
}

#[test]
fn catalogs_refuse_redirects_to_another_origin_too() {
    let mut t = TestEnv::with_config(SimConfig { restart_ms: 150, boot_ms: 150, ..Default::default() });
    t.env.insert("NSCALE_TOKEN".into(), "nscale-token-0123456789".into());
    t.write("web.yml", WEB);
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    let elsewhere = Proxy::recorder();
    p.on("GET", "/api/v2/regions/", Fault::redirect(307, &format!("{}/api/v2/regions/x/images", elsewhere.origin())));
    write_manifest(&t, &p, "");
    let r = t.run(&["images", "list", "nscale", "--region", NSCALE_REGION, "--endpoint", &p.origin()]);
    fails_with(&r, &["redirected to another origin"]);
    assert!(elsewhere.seen().is_empty(), "nscale's bearer token request reached the other origin");
}

// ----- numbers from the server and the environment ------------------------------------------

#[test]
fn retry_after_garbage_never_panics_and_is_bounded() {
    let (t, p) = setup(ONE);
    // Each answer once, then the real one: the plan succeeds after exactly one retry.
    for value in ["NaN", "-1", "inf", "-inf", "Sun, 06 Nov 1994 08:49:37 GMT", "soon", "0"] {
        let before = p.count("GET", "/cvms/paginated");
        p.times(
            1,
            "GET",
            "/cvms/paginated",
            Fault::answer(429, &[("retry-after", value)], "{\"detail\":\"slow down\"}"),
        );
        let r = t.run(&["plan"]);
        r.ok();
        assert_eq!(p.count("GET", "/cvms/paginated") - before, 2, "Retry-After: {value}");
    }
    // A wait far beyond the retry deadline ends the run at once with the server's answer.
    p.on("GET", "/cvms/paginated", Fault::answer(429, &[("retry-after", "1e20")], "{\"detail\":\"slow down\"}"));
    let before = p.count("GET", "/cvms/paginated");
    let mut slow = t.run(&["plan"]);
    slow.stderr = slow.stderr.replace('\n', " ");
    fails_with(&slow, &["HTTP 429", "slow down"]);
    assert_eq!(p.count("GET", "/cvms/paginated") - before, 1);
}

#[test]
fn numbers_from_the_environment_are_checked() {
    let (mut t, _p) = setup(ONE);
    let vars = [
        "TEEFORM_HTTP_TIMEOUT",
        "TEEFORM_WAIT_TIMEOUT",
        "TEEFORM_RETRY_MAX_ATTEMPTS",
        "TEEFORM_RETRY_BASE_MS",
        "TEEFORM_RETRY_DEADLINE_SECS",
        "TEEFORM_LOCAL_RESTART_MS",
        "TEEFORM_LOCAL_BOOT_MS",
    ];
    for var in vars {
        for bad in ["-1", "inf", "NaN", "1e20", "twelve"] {
            t.env.insert(var.into(), bad.into());
            let r = t.run(&["plan"]);
            fails_with(&r, &[var, bad]);
        }
        // Empty is unset.
        t.env.insert(var.into(), String::new());
        t.run(&["plan"]).ok();
        t.env.remove(var);
    }
}

// ----- bounded reads ---------------------------------------------------------------------------

#[test]
fn a_body_that_never_ends_is_cut_off_at_the_limit() {
    let (t, p) = setup(ONE);
    p.on("GET", "/cvms/paginated", Fault::Endless { declared_length: None });
    let r = t.run(&["plan"]);
    fails_with(&r, &["larger than 64 MiB", "HTTP 200"]);
    assert!(!r.stderr.contains("no response"), "{}", r.stderr);
    let sent = p.endless_bytes_sent();
    assert!(sent < 128 << 20, "teeform read on past the limit: {sent} bytes sent");
    // A declared length over the limit is refused before the body is read.
    p.clear();
    p.on("GET", "/cvms/paginated", Fault::Endless { declared_length: Some(4 << 30) });
    let before = p.endless_bytes_sent();
    fails_with(&t.run(&["plan"]), &["larger than 64 MiB"]);
    assert!(p.endless_bytes_sent() - before < 16 << 20, "a declared 4 GiB body was read");
}

#[test]
fn catalog_bodies_are_bounded_and_listings_end() {
    let mut t =
        TestEnv::with_config(SimConfig { restart_ms: 150, boot_ms: 150, oci_page_size: 2, ..Default::default() });
    t.env.insert("NSCALE_TOKEN".into(), "nscale-token-0123456789".into());
    t.write("web.yml", WEB);
    t.write("oci/key.pem", include_str!("../fixtures/oci/key.pem"));
    t.write("oci/config", "[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34\nkey_file=key.pem\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\n");
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    write_manifest(&t, &p, "");
    let nscale = ["images", "list", "nscale", "--region", NSCALE_REGION, "--endpoint", &p.origin()];
    p.on("GET", "/api/v2/regions/", Fault::Endless { declared_length: None });
    fails_with(&t.run(&nscale), &["larger than 64 MiB"]);
    assert!(p.endless_bytes_sent() < 128 << 20);

    let origin = p.origin();
    let oci = [
        "images",
        "list",
        "oci",
        "--compartment",
        OCI_COMPARTMENT,
        "--endpoint",
        &origin,
        "--config-file",
        "oci/config",
    ];
    t.run(&oci).ok();
    // The same page token again and again: an error at the second page, not a loop.
    p.clear();
    p.on("GET", "/20160918/images", Fault::answer(200, &[("opc-next-page", "same")], "[]"));
    let before = p.count("GET", "/20160918/images");
    fails_with(&t.run(&oci), &["page token `same` twice"]);
    assert_eq!(p.count("GET", "/20160918/images") - before, 2);
    // A fresh token every time: stopped at the page cap.
    p.clear();
    p.on(
        "GET",
        "/20160918/images",
        Fault::generate(|target| {
            let n = target.len();
            (200, vec![("opc-next-page".into(), format!("token-{n}-{}", uuid::Uuid::new_v4()))], json!([]))
        }),
    );
    let before = p.count("GET", "/20160918/images");
    fails_with(&t.run(&oci), &["past 1000 pages"]);
    assert_eq!(p.count("GET", "/20160918/images") - before, 1000);
}

// ----- listings that never end -----------------------------------------------------------------

#[test]
fn a_listing_that_claims_endless_pages_ends() {
    let (t, p) = setup(ONE);
    // 10^9 pages claimed, but the total says 0: one request.
    p.on(
        "GET",
        "/cvms/paginated",
        Fault::rewrite(|mut v| {
            v["pages"] = json!(1_000_000_000u64);
            v
        }),
    );
    t.run(&["plan"]).ok();
    assert_eq!(p.count("GET", "/cvms/paginated"), 1);
    // The same page again and again (the API ignores `page`): an error at a page of nothing
    // new (pages 2 and 3 are read together).
    p.clear();
    let item = json!({"id": "x1", "name": "someone-else", "status": "running", "resource": {}});
    let same = item.clone();
    p.on(
        "GET",
        "/cvms/paginated",
        Fault::generate(move |_| (200, vec![], json!({"items": [same.clone()], "pages": 3}))),
    );
    let before = p.count("GET", "/cvms/paginated");
    fails_with(&t.run(&["plan"]), &["was already listed", "paging does not advance"]);
    assert_eq!(p.count("GET", "/cvms/paginated") - before, 3);
    // Fresh items on every page.
    let fresh = |pages: Option<u64>| {
        Fault::generate(move |target| {
            let page = target.split("page=").nth(1).and_then(|x| x.split('&').next()).unwrap_or("0").to_string();
            let items: Vec<Value> = (0..100)
                .map(|i| json!({"id": format!("p{page}-{i}"), "name": format!("cvm-{page}-{i}"), "resource": {}}))
                .collect();
            let mut v = json!({ "items": items });
            if let Some(n) = pages {
                v["pages"] = json!(n);
            }
            (200, vec![], v)
        })
    };
    // A list that grows while it is read (each page claims one more, up to 3), and moves (each
    // page starts with the last CVM of the page before): read to its end, the repeated CVMs
    // not taken for paging that does not advance.
    p.clear();
    p.on(
        "GET",
        "/cvms/paginated",
        Fault::generate(|target| {
            let page: u64 = target.split("page=").nth(1).and_then(|x| x.split('&').next()?.parse().ok()).unwrap_or(1);
            let first = (page - 1) * 100;
            let items: Vec<Value> = (first.saturating_sub(1)..first + 100)
                .map(|i| json!({"id": format!("c{i}"), "name": format!("cvm-moving-{i}"), "resource": {}}))
                .collect();
            (200, vec![], json!({"items": items, "pages": (page + 1).min(3)}))
        }),
    );
    let before = p.count("GET", "/cvms/paginated");
    t.run(&["plan"]).ok();
    assert_eq!(p.count("GET", "/cvms/paginated") - before, 3);
    // Claiming more pages than teeform reads, with no total to bound the claim: refused at the
    // first page, before reading the others.
    p.clear();
    p.on("GET", "/cvms/paginated", fresh(Some(1_000_000_000)));
    let before = p.count("GET", "/cvms/paginated");
    fails_with(&t.run(&["plan"]), &["more than 1000 pages"]);
    assert_eq!(p.count("GET", "/cvms/paginated") - before, 1);
    // No counts at all: read one page after another until an empty one, stopped at 1,000.
    p.clear();
    p.on("GET", "/cvms/paginated", fresh(None));
    let before = p.count("GET", "/cvms/paginated");
    fails_with(&t.run(&["plan"]), &["more than 1000 pages"]);
    assert_eq!(p.count("GET", "/cvms/paginated") - before, 1000);
}

// ----- answers of the wrong shape ----------------------------------------------------------------

#[test]
fn a_refresh_answer_of_the_wrong_shape_plans_nothing() {
    let (t, p) = applied(ONE);
    let id = uuid_of(&t, "web-hostile");
    let cases: Vec<(Rewrite, &str)> = vec![
        (
            |mut v| {
                v["resource"] = json!("2 vCPU, 2 GB");
                v
            },
            "`resource`: expected an object, got a string",
        ),
        (
            |mut v| {
                v["resource"]["vcpu"] = json!(1e300);
                v
            },
            "`resource.vcpu` should be a whole number",
        ),
        (
            |mut v| {
                v["public_logs"] = json!("yes");
                v
            },
            "`public_logs` should be true or false",
        ),
        (|_| json!(["not", "a", "cvm"]), "expected an object, got a list"),
    ];
    for (rewrite, want) in cases {
        // In the CVM's list item; and in its detail, which a refresh reads when the list shows
        // another compose hash than state recorded.
        for in_detail in [false, true] {
            p.clear();
            p.clear_seen();
            if in_detail {
                p.on("GET", "/cvms/paginated", Fault::rewrite(|v| each_item(v, other_hash)));
                p.on("GET", &format!("/cvms/{id}"), Fault::rewrite(rewrite));
            } else {
                p.on("GET", "/cvms/paginated", Fault::rewrite(move |v| each_item(v, rewrite)));
            }
            let r = t.run(&["plan", "--detailed-exitcode"]);
            fails_with(&r, &[want, "HTTP 200"]);
            assert!(!r.stdout.contains("to change"), "a plan was made from a broken answer:\n{}", r.stdout);
            assert!(!r.stderr.contains("--refresh=false"), "no cached plan fixes a broken answer:\n{}", r.stderr);
            assert_eq!(p.count("GET", &format!("/cvms/{id}")), usize::from(in_detail), "details read");
        }
    }
    p.clear();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A CVM list page with `f` applied to each item.
fn each_item(mut page: Value, f: Rewrite) -> Value {
    if let Some(items) = page["items"].as_array_mut() {
        for item in items {
            *item = f(item.take());
        }
    }
    page
}

/// A CVM whose compose hash is not the one state recorded: a refresh reads its detail.
fn other_hash(mut cvm: Value) -> Value {
    cvm["compose_hash"] = json!("00".repeat(32));
    cvm
}

#[test]
fn a_refresh_answered_with_another_cvm_is_refused() {
    let (t, p) = applied(TWO);
    let web = uuid_of(&t, "web-hostile");
    let db = t.api("GET", "/cvms/db-hostile", None).1;
    p.on("GET", "/cvms/paginated", Fault::rewrite(|v| each_item(v, other_hash)));
    p.on("GET", &format!("/cvms/{web}"), Fault::rewrite(move |_| db.clone()));
    let r = t.run(&["plan"]);
    fails_with(&r, &["the API answered with another CVM (db-hostile"]);
    assert!(!r.stdout.contains("to change"), "{}", r.stdout);
}

#[test]
fn listing_items_that_cannot_be_read_are_errors_not_an_empty_list() {
    let (t, p) = setup(ONE);
    // A stranger already has the name: a faithful listing makes the plan refuse the create.
    let (code, _) = t.api(
        "POST",
        "/cvms/provision",
        Some(json!({"name": "web-hostile", "compose_file": {"docker_compose_file": WEB}})),
    );
    assert_eq!(code, 200);
    let cases: Vec<(Rewrite, &str)> = vec![
        (
            |mut v| {
                v["items"] = json!({"web-hostile": {}});
                v
            },
            "`items` should be a list, got an object",
        ),
        (
            |mut v| {
                v["items"] = json!([{"id": "x1", "status": "running"}]);
                v
            },
            "`items[0]`: `name` is missing",
        ),
        (
            |mut v| {
                v.as_object_mut().unwrap().remove("items");
                v
            },
            "`items` is missing",
        ),
    ];
    for (rewrite, want) in cases {
        p.clear();
        p.on("GET", "/cvms/paginated", Fault::rewrite(rewrite));
        let r = t.run(&["plan"]);
        fails_with(&r, &[want]);
        assert!(!r.stdout.contains("to add"), "{}", r.stdout);
    }
}

#[test]
fn a_create_answer_without_ids_records_nothing() {
    let (t, p) = setup(ONE);
    for (drop_field, want) in [("id", "`id` is missing"), ("app_id", "`app_id` is missing")] {
        // Only the commit's answer (the new VM, with its `vm_uuid`) is rewritten, not the
        // provision's, though both are POST /cvms.
        p.clear();
        p.on_path(
            "POST",
            "/api/v1/cvms",
            Fault::rewrite(move |mut v| {
                if let Some(o) = v.as_object_mut().filter(|o| o.contains_key("vm_uuid")) {
                    o.remove(drop_field);
                }
                v
            }),
        );
        let r = t.run(&["apply", "--auto-approve"]);
        fails_with(&r, &[want, "the CVM may exist"]);
        let show = t.run(&["state", "list"]);
        assert!(!show.stdout.contains("cvm.web"), "a record was made from an answer without ids:\n{}", show.stdout);
        // Clean up the CVM the simulator did create, for the next case.
        p.clear();
        let (code, _) = t.api("DELETE", "/cvms/web-hostile", None);
        assert!(code < 300, "cleanup");
        t.run(&["state", "list"]).ok();
    }
}

// ----- error texts -------------------------------------------------------------------------------

#[test]
fn errors_say_what_happened_and_where() {
    let (mut t, p) = applied(ONE);
    let id = uuid_of(&t, "web-hostile");
    // An answer that is not JSON had a response: no "no response". (The list page, then the
    // detail a changed compose hash asks for.)
    p.on("GET", "/cvms/paginated", Fault::answer(200, &[], "<html>maintenance</html>"));
    let r = t.run(&["plan"]);
    fails_with(&r, &["HTTP 200", "not JSON", "cannot list the CVMs"]);
    assert!(!r.stderr.contains("no response"), "{}", r.stderr);
    p.clear();
    p.on("GET", "/cvms/paginated", Fault::rewrite(|v| each_item(v, other_hash)));
    p.on("GET", &format!("/cvms/{id}"), Fault::answer(200, &[], "<html>maintenance</html>"));
    let r = t.run(&["plan"]);
    fails_with(&r, &["HTTP 200", "not JSON"]);
    assert!(!r.stderr.contains("no response"), "{}", r.stderr);

    // A server error is transient: planning from cache is offered, with the run's flags.
    p.clear();
    p.on("GET", "/cvms/paginated", Fault::answer(503, &[], "{\"detail\":\"down\"}"));
    let r = t.run(&["--workspace", "default", "plan"]);
    fails_with(&r, &["HTTP 503", "`teeform --workspace default plan --refresh=false` plans from cached state"]);
    // `plan --json`: the same error as one document on stdout, and for people on stderr.
    let r = t.run(&["plan", "--json"]);
    r.code(1);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["errored"], true, "{doc:#}");
    let d = &doc["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    let words = format!("{} {}", d["message"], d["causes"]);
    assert!(words.contains("HTTP 503"), "{doc:#}");
    assert!(d["hints"].to_string().contains("plan --refresh=false"), "{doc:#}");
    assert!(r.stderr.contains("HTTP 503"), "{}", r.stderr);

    // A bad key is not: the hint names where the key came from.
    p.clear();
    t.env.insert("PHALA_CLOUD_API_KEY".into(), "wrong-key-0123456789".into());
    let r = t.run(&["plan"]);
    fails_with(&r, &["HTTP 401", "the API key came from PHALA_CLOUD_API_KEY"]);
    assert!(!r.stderr.contains("--refresh=false"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-key-0123456789"), "{}", r.stderr);
    let r = t.run(&["plan", "--json"]);
    r.code(1);
    assert!(r.stdout.contains("HTTP 401") && !r.stdout.contains("wrong-key-0123456789"), "{}", r.stdout);

    // From the phala CLI's credentials file: the file is named, not the variable.
    use std::os::unix::fs::PermissionsExt;
    t.env.remove("PHALA_CLOUD_API_KEY");
    t.env.insert("PHALA_CLOUD_DIR".into(), t.path("phala").display().to_string());
    t.write(
        "phala/credentials.json",
        r#"{"current_profile":"work","profiles":{"work":{"token":"stale-token-0123456789"}}}"#,
    );
    std::fs::set_permissions(t.path("phala/credentials.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = t.run(&["plan"]);
    fails_with(&r, &["HTTP 401", "credentials.json (profile `work`)"]);
    assert!(!r.stderr.contains("check PHALA_CLOUD_API_KEY"), "{}", r.stderr);
    assert!(!r.stderr.contains("stale-token-0123456789"), "{}", r.stderr);
    t.write(
        "phala/credentials.json",
        &format!(r#"{{"current_profile":"work","profiles":{{"work":{{"token":"{KEY}"}}}}}}"#),
    );
    t.run(&["plan"]).ok();

    // Nothing listening: the URL is named (without its query).
    write_manifest(&t, &p, ONE);
    t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: http://127.0.0.1:1/api/v1\n{ONE}"));
    let r = t.run(&["--state", "other", "plan"]);
    fails_with(&r, &["no response: cannot connect to http://127.0.0.1:1/api/v1/cvms/paginated (is the endpoint"]);
}

#[test]
fn a_refused_catalog_token_is_named_by_where_it_came_from() {
    let mut t = TestEnv::with_config(SimConfig {
        restart_ms: 150,
        boot_ms: 150,
        nscale_token: Some("the-right-token-0123456789".into()),
        ..Default::default()
    });
    t.env.insert("NSCALE_SERVICE_TOKEN".into(), "an-expired-token-0123456789".into());
    t.write("web.yml", WEB);
    t.manifest("");
    let root = t.prefix().trim_end_matches("/api/v1").to_string();
    let r = t.run(&["images", "list", "nscale", "--region", NSCALE_REGION, "--endpoint", &root]);
    fails_with(&r, &["HTTP 401", "the token came from NSCALE_SERVICE_TOKEN"]);
    assert!(!r.stderr.contains("an-expired-token-0123456789"), "{}", r.stderr);
}
