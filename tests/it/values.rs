//! Values the API would refuse are caught at plan, pointed at in the manifest: unknown
//! instance types, nodes, OS images and KMS instances (checked against the API's catalogs, one
//! request per catalog), and a disk that would shrink.

use crate::harness::{TestEnv, WEB};

fn env() -> TestEnv {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t
}

fn mutations(t: &TestEnv) -> u64 {
    t.count("POST /api/v1/cvms") + t.count("PATCH") + t.count("DELETE")
}

#[test]
fn unknown_catalog_values_fail_the_plan_with_did_you_mean_and_one_request_per_catalog() {
    let t = env();
    // Three CVMs with instance types: the catalog is read once, not per CVM.
    t.manifest(
        "cvms:
  web:
    name: web-values
    compose: web.yml
    instance_type: tdx.mediun
  api:
    name: api-values
    compose: web.yml
    instance_type: tdx.small
    node: prod7
  db:
    name: db-values
    compose: web.yml
    instance_type: tdx.large
    image: dstack-0.5.9
    kms:
      chain: 8453
",
    );
    let r = t.run(&["plan"]);
    r.code(1);
    let e = &r.stderr;
    assert!(e.contains("the plan would send 4 values the API refuses; nothing was changed"), "{e}");
    assert!(e.contains("teeform.yaml:8:20"), "the instance type's position: {e}");
    assert!(e.contains("cvm `web`: the API offers no instance type `tdx.mediun`"), "{e}");
    assert!(e.contains("did you mean `tdx.medium`?"), "{e}");
    assert!(e.contains("offered: tdx.small, tdx.medium, tdx.large, tdx.xlarge"), "{e}");
    assert!(e.contains("cvm `api`: the API offers no node `prod7`"), "{e}");
    assert!(e.contains("did you mean `prod5`?") || e.contains("did you mean `prod6`?"), "{e}");
    assert!(e.contains("cvm `db`: the API offers no OS image `dstack-0.5.9`"), "{e}");
    assert!(e.contains("did you mean `dstack-0.5.5`?"), "{e}");
    assert!(e.contains("cvm `db`: the API offers no KMS on chain 8453"), "{e}");
    assert_eq!(t.count("GET /api/v1/instance-types"), 1);
    // Nodes and KMS instances come from one request (the Phala KMS needs no check).
    assert_eq!(t.count("GET /api/v1/teepods/available"), 1);
    assert_eq!(t.count("GET /api/v1/os-images"), 1);
    assert_eq!(mutations(&t), 0);
    // validate needs no network and checks the manifest alone.
    t.run(&["validate"]).ok();

    // Without refresh no request is made, and the plan says what it did not check.
    let before = t.stats()["total_requests"].as_u64().unwrap();
    let r = t.run(&["plan", "--refresh=false"]);
    r.ok();
    assert!(r.stderr.contains("--refresh=false: no API call was made, so teeform did not check"), "{}", r.stderr);
    assert!(r.stderr.contains("node of cvm.api") && r.stderr.contains("instance_type of cvm.web"), "{}", r.stderr);
    assert!(!r.stderr.contains("whether the CVMs run"), "nothing exists yet: {}", r.stderr);
    assert_eq!(t.stats()["total_requests"].as_u64().unwrap(), before);

    // Fixed, it applies; a plan with nothing to send reads no catalog.
    t.manifest("cvms:\n  web:\n    name: web-values\n    compose: web.yml\n    instance_type: tdx.medium\n");
    t.run(&["apply", "--auto-approve"]).ok();
    let reads = t.count("GET /api/v1/instance-types");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(t.count("GET /api/v1/instance-types"), reads);
    // An update that changes the type checks it; one that does not, does not.
    t.manifest("cvms:\n  web:\n    name: web-values\n    compose: web.yml\n    instance_type: tdx.larg\n");
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("did you mean `tdx.large`?"), "{}", r.stderr);
}

#[test]
fn a_shrinking_disk_is_refused_at_plan_even_without_refresh() {
    let t = env();
    let m = |disk: u32| format!("cvms:\n  web:\n    name: web-disk\n    compose: web.yml\n    disk_size: {disk}\n");
    t.manifest(&m(40));
    t.run(&["apply", "--auto-approve"]).ok();
    t.manifest(&m(20));
    for args in [&["plan"][..], &["plan", "--refresh=false"], &["apply", "--auto-approve"]] {
        let r = t.run(args);
        r.code(1);
        assert!(r.stderr.contains("cvm `web`: disk_size cannot shrink from 40 GB to 20 GB"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("teeform.yaml:8:16"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("keep `disk_size: 40` or more"), "{args:?}: {}", r.stderr);
    }
    assert_eq!(t.count("PATCH"), 0);
    // Growing is an ordinary update.
    t.manifest(&m(60));
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.count("PATCH"), 1);
    // The simulator refuses a shrink sent anyway, as the API is expected to (UNVERIFIED).
    let id = t.cvm_stat("web-disk", "id").as_str().unwrap().to_string();
    let (status, body) = t.api("PATCH", &format!("/cvms/{id}"), Some(serde_json::json!({"disk_size": 20})));
    assert_eq!(status, 400, "{body}");
}
