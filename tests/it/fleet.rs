//! Fleet speed (issue 16), counted in requests, never in time: a refresh reads one list page
//! per 100 CVMs and one detail per CVM the list cannot settle, finding every drift the
//! per-CVM reads found; apply's waits cost one batch status poll per interval for every CVM
//! being waited on, and one final detail per CVM.

use serde_json::{Value, json};
use teeform::sim::SimConfig;

use crate::harness::{TestEnv, WEB};
use crate::proxy::{Fault, Proxy};

/// `n` CVMs `svc-000`…, each with `extra` under it.
fn fleet(n: usize, extra: &str) -> String {
    let mut m = "cvms:\n".to_string();
    for i in 0..n {
        m.push_str(&format!("  svc-{i:03}:\n    compose: web.yml\n{extra}"));
    }
    m
}

/// Requests per endpoint (`METHOD /route`, as `/_sim/stats` counts them).
#[derive(Clone)]
struct Endpoints(Value);

impl Endpoints {
    fn now(t: &TestEnv) -> Endpoints {
        Endpoints(t.stats())
    }

    fn get(&self, endpoint: &str) -> u64 {
        self.0["endpoints"][endpoint].as_u64().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.0["total_requests"].as_u64().unwrap()
    }

    /// Requests to `endpoint` since `before`.
    fn since(&self, before: &Endpoints, endpoint: &str) -> u64 {
        self.get(endpoint) - before.get(endpoint)
    }
}

const PAGES: &str = "GET /api/v1/cvms/paginated";
const DETAIL: &str = "GET /api/v1/cvms/{id}";
const BATCH: &str = "POST /api/v1/status/batch";
const PATCH: &str = "PATCH /api/v1/cvms/{id}";

/// Creates `n` CVMs directly through the API, as another tool would.
fn outsiders(t: &TestEnv, n: usize) {
    for i in 0..n {
        let body = json!({"name": format!("outside-{i:03}"), "compose_file": {"docker_compose_file": WEB}});
        let (code, prov) = t.api("POST", "/cvms/provision", Some(body));
        assert_eq!(code, 200, "{prov}");
        let commit = json!({"app_id": prov["app_id"], "compose_hash": prov["compose_hash"]});
        let (code, vm) = t.api("POST", "/cvms", Some(commit));
        assert_eq!(code, 200, "{vm}");
    }
}

fn quick() -> TestEnv {
    TestEnv::with_config(SimConfig { boot_ms: 0, restart_ms: 0, ..Default::default() })
}

#[test]
fn a_refresh_reads_a_list_page_per_100_cvms_and_a_detail_per_cvm_the_list_cannot_settle() {
    let t = quick();
    t.write("web.yml", WEB);
    t.manifest(&fleet(150, ""));
    t.run(&["apply", "--auto-approve", "--parallelism", "50"]).ok();

    // Nothing changed: two list pages, no detail, nothing else.
    let before = Endpoints::now(&t);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    let after = Endpoints::now(&t);
    assert_eq!(after.since(&before, PAGES), 2);
    assert_eq!(after.since(&before, DETAIL), 0);
    assert_eq!(after.total() - before.total(), 2, "nothing else: {}", after.0["endpoints"]);

    // Changed outside teeform: the compose file, the size, the visibility; one deleted.
    let patch = |name: &str, body: Value| {
        let (code, r) = t.api("PATCH", &format!("/cvms/{name}"), Some(body));
        assert!(code < 300, "{name}: {r}");
    };
    patch("svc-003", json!({"docker_compose_file": WEB.replace("1.27", "1.28")}));
    patch("svc-050", json!({"vcpu": 2}));
    patch("svc-120", json!({"public_logs": false}));
    assert_eq!(t.api("DELETE", "/cvms/svc-149", None).0, 204);
    t.settle();
    let before = Endpoints::now(&t);
    let batched = t.run(&["plan", "--detailed-exitcode"]);
    batched.code(2);
    let after = Endpoints::now(&t);
    assert_eq!(after.since(&before, PAGES), 2);
    // svc-003 and svc-120 changed their compose hash; svc-149 is not listed, and one GET
    // confirms it is gone. svc-050's size is in its list item.
    assert_eq!(after.since(&before, DETAIL), 3, "{}", after.0["endpoints"]);
    for (addr, what) in [
        ("cvm.svc-003", "compose"),
        ("cvm.svc-050", "vcpu"),
        ("cvm.svc-120", "public_logs"),
        ("cvm.svc-149", "deleted"),
    ] {
        let drift = batched.stdout.lines().skip_while(|l| !l.contains(addr)).take(12).collect::<Vec<_>>().join("\n");
        assert!(drift.contains(what), "{addr}: no `{what}` in\n{}", batched.stdout);
    }
    // Exactly the plan reading every CVM's detail makes.
    let mut t = t;
    t.env.insert("TEEFORM_PER_CVM_READS".into(), "1".into());
    let before = Endpoints::now(&t);
    let per_cvm = t.run(&["plan", "--detailed-exitcode"]);
    let after = Endpoints::now(&t);
    // (The plan creates svc-149 again, so the name check lists the CVMs: here, not reused.)
    assert_eq!((after.since(&before, PAGES), after.since(&before, DETAIL)), (2, 150));
    assert_eq!(per_cvm.code, 2);
    assert_eq!(batched.stdout, per_cvm.stdout, "the same plan either way");
    t.env.remove("TEEFORM_PER_CVM_READS");

    // A create whose name a CVM outside this state has: refused, from the pages the refresh
    // read (not a second listing).
    outsiders(&t, 1);
    t.manifest(&format!("{}  taken:\n    name: outside-000\n    compose: web.yml\n", fleet(150, "")));
    let before = Endpoints::now(&t);
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("`teeform import cvm.taken "), "{}", r.stderr);
    assert_eq!(Endpoints::now(&t).since(&before, PAGES), 2);
}

#[test]
fn a_short_state_in_a_long_list_reads_its_cvms_alone() {
    let t = quick();
    t.write("web.yml", WEB);
    // 500 CVMs of others first: this state's two are on the list's sixth page.
    outsiders(&t, 500);
    t.manifest(&fleet(2, ""));
    t.run(&["apply", "--auto-approve"]).ok();
    let before = Endpoints::now(&t);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    let after = Endpoints::now(&t);
    // Page 1 does not have them; five more pages would cost more than their two details and
    // the two listings of their apps' instances (for instances made outside teeform).
    assert_eq!((after.since(&before, PAGES), after.since(&before, DETAIL)), (1, 2));
    assert_eq!(after.since(&before, "GET /api/v1/apps/{app_id}/cvms"), 2);
    assert_eq!(after.total() - before.total(), 5, "nothing else: {}", after.0["endpoints"]);
    // Deleted outside: still found.
    assert_eq!(t.api("DELETE", "/cvms/svc-001", None).0, 204);
    let r = t.run(&["plan", "--detailed-exitcode"]);
    r.code(2);
    assert!(r.stdout.contains("cvm.svc-001 has been deleted"), "{}", r.stdout);
}

#[test]
fn apply_waits_with_one_batch_poll_for_every_cvm_restarting() {
    let mut t = TestEnv::with_config(SimConfig { boot_ms: 0, restart_ms: 1000, ..Default::default() });
    t.write("web.yml", WEB);
    t.manifest(&fleet(8, "    vcpu: 1\n"));
    t.run(&["apply", "--auto-approve", "--parallelism", "8"]).ok();

    // A size change (the app compose stays as it is): one list page, eight PATCHes, batch
    // polls while the CVMs restart, and one detail per CVM once it runs again.
    t.manifest(&fleet(8, "    vcpu: 2\n"));
    let before = Endpoints::now(&t);
    t.run(&["apply", "--auto-approve", "--parallelism", "8"]).ok();
    let after = Endpoints::now(&t);
    assert_eq!(after.since(&before, PAGES), 1);
    assert_eq!(after.since(&before, PATCH), 8);
    assert_eq!(after.since(&before, DETAIL), 8, "final reads only: {}", after.0["endpoints"]);
    let polls = after.since(&before, BATCH);
    assert!(polls >= 1, "no batch poll: {}", after.0["endpoints"]);
    let batched = after.total() - before.total();

    // The same with one detail GET per CVM per poll: every poll costs eight requests.
    t.env.insert("TEEFORM_PER_CVM_READS".into(), "1".into());
    t.manifest(&fleet(8, "    vcpu: 3\n"));
    let before = Endpoints::now(&t);
    t.run(&["apply", "--auto-approve", "--parallelism", "8"]).ok();
    let after = Endpoints::now(&t);
    assert_eq!(after.since(&before, BATCH), 0);
    let per_cvm = after.total() - before.total();
    assert!(batched * 2 < per_cvm, "batched {batched} ({polls} polls) vs per CVM {per_cvm} requests");
    t.env.remove("TEEFORM_PER_CVM_READS");

    // A compose change: each CVM's detail is read once for the hash preview, once at the end.
    t.write("web.yml", &WEB.replace("1.27", "1.28"));
    let before = Endpoints::now(&t);
    t.run(&["apply", "--auto-approve", "--parallelism", "8"]).ok();
    let after = Endpoints::now(&t);
    assert_eq!((after.since(&before, PAGES), after.since(&before, PATCH)), (1, 8));
    assert_eq!(after.since(&before, DETAIL), 16, "{}", after.0["endpoints"]);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn waiting_on_more_cvms_than_a_batch_holds_splits_each_poll() {
    // The simulator refuses a batch of more than 100 uuids (422): each poll must split.
    let t = TestEnv::with_config(SimConfig { boot_ms: 3000, restart_ms: 0, ..Default::default() });
    t.write("web.yml", WEB);
    t.manifest(&fleet(105, ""));
    let before = Endpoints::now(&t);
    t.run(&["apply", "--auto-approve", "--parallelism", "105"]).ok();
    let after = Endpoints::now(&t);
    assert_eq!(after.since(&before, DETAIL), 105, "one final read per CVM");
    assert!(after.since(&before, BATCH) >= 2, "{}", after.0["endpoints"]);
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// Two CVMs of this state on the list's second page (behind 100 of others), through a proxy.
fn behind_a_proxy() -> (TestEnv, Proxy) {
    let mut t = TestEnv::with_config(SimConfig { boot_ms: 0, restart_ms: 300, ..Default::default() });
    t.env.insert("TEEFORM_RETRY_BASE_MS".into(), "1".into());
    let p = Proxy::to(t.prefix().trim_end_matches("/api/v1"));
    t.write("web.yml", WEB);
    outsiders(&t, 100);
    t.write(
        "teeform.yaml",
        &format!("provider:\n  phala:\n    endpoint: {}\n{}", p.prefix(), fleet(2, "    vcpu: 1\n")),
    );
    t.run(&["apply", "--auto-approve"]).ok();
    (t, p)
}

#[test]
fn rate_limits_on_a_list_page_or_a_batch_poll_are_waited_out_and_failures_are_clear() {
    let (t, p) = behind_a_proxy();
    let limited = || {
        let body = r#"{"detail":{"error_code":"ERR-05-002","message":"Rate limit exceeded"}}"#;
        Fault::answer(429, &[("retry-after", "0")], body)
    };
    // A 429 on page 2 is retried after its Retry-After; the plan is made from both pages.
    p.times(1, "GET", "page=2&", limited());
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(p.count("GET", "page=2&"), 2);
    assert_eq!(p.count("GET", "/cvms/svc-"), 0, "the list settled both CVMs");

    // A page that keeps failing fails the refresh: no plan from a partial list.
    p.clear();
    p.on("GET", "page=2&", Fault::answer(503, &[], r#"{"detail":"down"}"#));
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("cannot list the CVMs") && r.stderr.contains("HTTP 503"), "{}", r.stderr);
    assert!(!r.stdout.contains("to add") && !r.stdout.contains("No changes"), "{}", r.stdout);

    // A 429 on a batch poll is waited out too.
    p.clear();
    p.clear_seen();
    p.times(1, "POST", "/status/batch", limited());
    t.write(
        "teeform.yaml",
        &format!("provider:\n  phala:\n    endpoint: {}\n{}", p.prefix(), fleet(2, "    vcpu: 2\n")),
    );
    t.run(&["apply", "--auto-approve"]).ok();
    assert!(p.count("POST", "/status/batch") >= 2, "the limited poll and at least one more");
    t.run(&["plan", "--detailed-exitcode"]).code(0);

    // A batch poll that keeps failing fails the waits, saying where.
    p.clear();
    p.on("POST", "/status/batch", Fault::answer(503, &[], r#"{"detail":"down"}"#));
    t.write(
        "teeform.yaml",
        &format!("provider:\n  phala:\n    endpoint: {}\n{}", p.prefix(), fleet(2, "    vcpu: 3\n")),
    );
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("POST /status/batch: HTTP 503"), "{}", r.stderr);
}
