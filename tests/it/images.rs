//! Images from the Phala, nscale and OCI catalogs, end to end against the simulator: data
//! sources resolved in one plan, pinned in `teeform.lock`, moved only by `images upgrade`;
//! signed OCI requests; each catalog's errors.

use serde_json::json;
use teeform::sim::SimConfig;
use teeform::sim::catalogs::{NSCALE_ORG, NSCALE_REGION, OCI_COMPARTMENT, nscale_image, oci_image};

use crate::harness::{TestEnv, WEB};

const TOKEN: &str = "nscale-test-token";
const KEY: &str = include_str!("../fixtures/oci/key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/oci/key_pub.pem");
const OTHER_PUBLIC_KEY: &str = include_str!("../fixtures/oci/other_pub.pem");
const OCI_CONFIG: &str = "[DEFAULT]\nuser=ocid1.user.oc1..aaaaaaaaexampleuser\nfingerprint=20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34\nkey_file=key.pem\ntenancy=ocid1.tenancy.oc1..aaaaaaaaexampletenancy\nregion=us-ashburn-1\n";

fn catalog_env(public_key: &str) -> TestEnv {
    let mut env = TestEnv::with_config(SimConfig {
        restart_ms: 150,
        boot_ms: 150,
        nscale_token: Some(TOKEN.into()),
        oci_public_key: Some(public_key.into()),
        oci_page_size: 2,
        ..Default::default()
    });
    env.env.insert("NSCALE_TOKEN".into(), TOKEN.into());
    env.write("oci/key.pem", KEY).write("oci/config", OCI_CONFIG).write("web.yml", WEB);
    env
}

fn root(env: &TestEnv) -> String {
    env.prefix().trim_end_matches("/api/v1").to_string()
}

/// The manifest: the simulator as every provider, then `rest` (data, cvms, outputs).
fn manifest(env: &TestEnv, rest: &str) {
    let r = root(env);
    env.manifest(&format!(
        "  nscale:\n    endpoint: {r}\n  oci:\n    endpoint: {r}\n    config_file: oci/config\n{rest}"
    ));
}

fn data() -> String {
    format!(
        r#"data:
  phala_os_image:
    os: {{ cvm: web, version: "~0.5" }}
  nscale_image:
    gpu:
      region: {NSCALE_REGION}
      os: {{ distro: ubuntu, version: "24.04" }}
      gpu: {{ vendor: NVIDIA, models: [H100] }}
  oci_image:
    base:
      compartment: {OCI_COMPARTMENT}
      operating_system: Oracle Linux
      operating_system_version: "8"
      shape: VM.Standard.E4.Flex
      display_name: 'Oracle-Linux-8\.10-\d{{4}}\.\d{{2}}\.\d{{2}}-\d+'
"#
    )
}

const CVMS: &str = r#"cvms:
  web:
    name: web-app
    compose: web.yml
    image: ${data.phala_os_image.os.name}
    env:
      GPU_IMAGE: ${data.nscale_image.gpu.id}
      OCI_IMAGE: ${data.oci_image.base.id}
outputs:
  oci_image: ${data.oci_image.base.name}
"#;

fn lock(env: &TestEnv) -> teeform::lockfile::Lockfile {
    teeform::lockfile::read(&env.path("teeform.lock")).unwrap()
}

fn pinned(env: &TestEnv, addr: &str) -> String {
    lock(env).pins[addr].name.clone()
}

fn cvm_image(env: &TestEnv) -> String {
    let (status, v) = env.api("GET", "/cvms/web-app", None);
    assert_eq!(status, 200, "{v}");
    v["os"]["name"].as_str().unwrap().to_string()
}

const OCI_LIST: &str = "GET /20160918/images";
const NSCALE_LIST: &str = "GET /api/v2/regions/{regionID}/images";

#[test]
fn resolves_three_catalogs_pins_them_and_moves_a_pin_only_when_asked() {
    let env = catalog_env(PUBLIC_KEY);
    manifest(&env, &format!("{}{CVMS}", data()));

    // One plan resolves all three; nothing existed, so the Phala image comes from the catalog.
    let r = env.run(&["plan", "--detailed-exitcode"]);
    r.code(2);
    assert!(r.stdout.contains(r#"+ image = "dstack-0.5.5""#), "{}", r.stdout);
    assert!(r.stdout.contains(r#"+ oci_image = "Oracle-Linux-8.10-2024.09.30-0""#), "{}", r.stdout);
    assert_eq!(r.stderr.matches("Pinned").count(), 3, "{}", r.stderr);
    assert!(r.stderr.contains("cvm.web does not exist yet"), "{}", r.stderr);
    assert_eq!(pinned(&env, "data.phala_os_image.os"), "dstack-0.5.5");
    // The newest GPU image is still being created and a newer one failed: neither is chosen.
    assert_eq!(pinned(&env, "data.nscale_image.gpu"), "ubu2404-gpu-550");
    assert_eq!(pinned(&env, "data.oci_image.base"), "Oracle-Linux-8.10-2024.09.30-0");
    // Four OCI images pass the server-side filters; at two per page that is two signed requests.
    assert_eq!(env.count(OCI_LIST), 2);
    let first_lock = std::fs::read_to_string(env.path("teeform.lock")).unwrap();

    env.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(cvm_image(&env), "dstack-0.5.5");
    let (_, env_vars) = env.api("GET", "/cvms/web-app", None);
    assert!(env_vars["compose_file"]["allowed_envs"].to_string().contains("GPU_IMAGE"));

    // Newer images are published everywhere. Plans keep the pins and say so.
    env.sim.publish_os_image("dstack-0.5.6", &[0, 5, 6], false);
    let noble = ("ubuntu", "24.04", "noble");
    let gpu = Some(("NVIDIA", "570.86.15", &["H100"][..]));
    env.sim.publish_nscale_image(nscale_image("ubu2404-gpu-570", "2024-12-01T09:00:00Z", noble, gpu, "ready"), None);
    let ol = oci_image("Oracle-Linux-8.10-2024.12.02-0", "Oracle Linux", "8", "2024-12-02T10:00:00.000Z", "AVAILABLE");
    env.sim.publish_oci_image(ol, &["VM.Standard.E4.Flex"]);
    let r = env.run(&["plan", "--detailed-exitcode"]);
    r.code(0);
    assert!(r.stdout.contains("No changes"), "{}", r.stdout);
    assert_eq!(r.stderr.matches("newer image available").count(), 3, "{}", r.stderr);
    assert!(r.stderr.contains("`teeform images upgrade os` moves the pin"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(env.path("teeform.lock")).unwrap(), first_lock, "plans never move a pin");
    // Without refresh nothing is asked of the catalogs at all.
    let before = env.count(OCI_LIST) + env.count(NSCALE_LIST);
    env.run(&["plan", "--refresh=false", "--detailed-exitcode"]).code(0);
    assert_eq!(env.count(OCI_LIST) + env.count(NSCALE_LIST), before);

    // Upgrading one data source moves exactly that pin.
    let r = env.run(&["images", "upgrade", "os"]);
    r.ok();
    assert!(r.stdout.contains("data.phala_os_image.os: dstack-0.5.5 (dstack-0.5.5-"), "{}", r.stdout);
    assert!(r.stdout.contains("-> dstack-0.5.6 (dstack-0.5.6-"), "{}", r.stdout);
    assert_eq!(pinned(&env, "data.phala_os_image.os"), "dstack-0.5.6");
    assert_eq!(pinned(&env, "data.nscale_image.gpu"), "ubu2404-gpu-550");
    assert_eq!(pinned(&env, "data.oci_image.base"), "Oracle-Linux-8.10-2024.09.30-0");
    let r = env.run(&["plan", "--detailed-exitcode"]);
    r.code(2);
    assert!(r.stdout.contains(r#"~ image = "dstack-0.5.5" -> "dstack-0.5.6""#), "{}", r.stdout);
    assert_eq!(r.stderr.matches("newer image available").count(), 2, "{}", r.stderr);
    env.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(cvm_image(&env), "dstack-0.5.6");

    // A dry run shows the remaining moves and writes nothing; then the rest move.
    let locked = std::fs::read_to_string(env.path("teeform.lock")).unwrap();
    let r = env.run(&["images", "upgrade", "--dry-run"]);
    r.ok();
    assert!(r.stdout.contains("data.nscale_image.gpu: ubu2404-gpu-550"), "{}", r.stdout);
    assert!(r.stdout.contains("data.phala_os_image.os: unchanged"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(env.path("teeform.lock")).unwrap(), locked);
    env.run(&["images", "upgrade"]).ok();
    assert_eq!(pinned(&env, "data.nscale_image.gpu"), "ubu2404-gpu-570");
    assert_eq!(pinned(&env, "data.oci_image.base"), "Oracle-Linux-8.10-2024.12.02-0");
    let r = env.run(&["plan", "--detailed-exitcode"]);
    r.code(2);
    assert!(r.stdout.contains("GPU_IMAGE"), "{}", r.stdout);
    assert!(
        r.stdout.contains(r#""Oracle-Linux-8.10-2024.09.30-0" -> "Oracle-Linux-8.10-2024.12.02-0""#),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("newer image available"), "{}", r.stderr);
}

#[test]
fn locked_refuses_to_pin_and_a_changed_selector_is_resolved_again() {
    let env = catalog_env(PUBLIC_KEY);
    manifest(&env, &format!("{}{CVMS}", data()));
    let r = env.run(&["plan", "--locked"]);
    r.code(1);
    assert!(
        r.stderr.contains("data.oci_image.base: it has no pin, and --locked forbids resolving it now"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("teeform.yaml:"), "{}", r.stderr);
    assert!(!env.file_exists("teeform.lock"));
    env.run(&["plan"]).ok();
    env.run(&["plan", "--locked"]).ok();

    manifest(&env, &format!("{}{CVMS}", data().replace("~0.5", "0.5.4")));
    let r = env.run(&["plan", "--locked"]);
    r.code(1);
    assert!(r.stderr.contains("its selector changed since it was pinned"), "{}", r.stderr);
    let r = env.run(&["plan"]);
    r.ok();
    assert!(r.stderr.contains("its selector changed; was dstack-0.5.5"), "{}", r.stderr);
    assert_eq!(pinned(&env, "data.phala_os_image.os"), "dstack-0.5.4");
}

#[test]
fn oci_requests_signed_with_another_key_are_refused() {
    let env = catalog_env(OTHER_PUBLIC_KEY);
    manifest(&env, &format!("{}{CVMS}", data()));
    let r = env.run(&["plan"]);
    r.code(1);
    assert!(
        r.stderr.contains("data.oci_image.base: cannot list OCI images: GET /20160918/images?compartmentId="),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("HTTP 401 NotAuthenticated"), "{}", r.stderr);
    assert!(r.stderr.contains("(request id "), "{}", r.stderr);
    assert!(r.stderr.contains("the key must be the one uploaded for that fingerprint"), "{}", r.stderr);
    assert_eq!(env.count(OCI_LIST), 1, "a 401 is not retried");
}

fn nscale_only(env: &TestEnv, region: &str, select: &str) {
    manifest(
        env,
        &format!(
            "data:\n  nscale_image:\n    gpu:\n      region: {region}\n      select: {select}\n      os: {{ distro: ubuntu, version: \"24.04\" }}\n      gpu: {{ models: [H100] }}\noutputs:\n  image: ${{data.nscale_image.gpu.name}}\n"
        ),
    );
}

#[test]
fn nscale_errors_are_shown_with_their_trace_id_and_transient_ones_retried() {
    // (token, region, injected statuses, expected exit, expected text, requests)
    type Case<'a> = (Option<&'a str>, &'a str, &'a [u16], i32, &'a str, u64);
    let cases: &[Case] = &[
        (Some("wrong"), NSCALE_REGION, &[], 1, "HTTP 401 access_denied: token validation failed (request id ", 1),
        (None, NSCALE_REGION, &[], 1, "no nscale token: NSCALE_TOKEN is not set", 0),
        (Some(TOKEN), "no-such-region", &[], 1, "HTTP 404 not_found: the requested resource does not exist", 1),
        (
            Some(TOKEN),
            NSCALE_REGION,
            &[403],
            1,
            "HTTP 403 forbidden: user credentials do not have the required privileges",
            1,
        ),
        (Some(TOKEN), NSCALE_REGION, &[429, 503], 0, "Pinned data.nscale_image.gpu to ubu2404-gpu-550", 3),
        (Some(TOKEN), NSCALE_REGION, &[500], 0, "Pinned data.nscale_image.gpu", 2),
    ];
    for (token, region, inject, code, text, requests) in cases {
        let mut env = catalog_env(PUBLIC_KEY);
        match token {
            Some(t) => env.env.insert("NSCALE_TOKEN".into(), t.to_string()),
            None => env.env.remove("NSCALE_TOKEN"),
        };
        nscale_only(&env, region, "most_recent");
        env.sim.fail_next_catalog_requests(inject);
        let r = env.run(&["plan"]);
        r.code(*code);
        assert!(r.stderr.contains(text), "{token:?} {region} {inject:?}: {}", r.stderr);
        assert_eq!(env.count(NSCALE_LIST), *requests, "{token:?} {region} {inject:?}");
    }
}

#[test]
fn selection_failures_list_the_candidates() {
    let env = catalog_env(PUBLIC_KEY);
    nscale_only(&env, NSCALE_REGION, "exactly_one");
    let r = env.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("data.nscale_image.gpu: 2 images match, `exactly_one` needs one"), "{}", r.stderr);
    assert!(
        r.stderr.contains("candidate: ")
            && r.stderr.contains("(ubu2404-gpu-550, version 24.04, created 2024-06-10T09:00:00Z)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(ubu2404-gpu-535, version 24.04, created 2024-03-01T09:00:00Z)"), "{}", r.stderr);

    // A tie for newest is an error, not a coin toss.
    let noble = ("ubuntu", "24.04", "noble");
    let gpu = Some(("NVIDIA", "550.54.15", &["H100"][..]));
    env.sim
        .publish_nscale_image(nscale_image("ubu2404-gpu-550-twin", "2024-06-10T09:00:00Z", noble, gpu, "ready"), None);
    nscale_only(&env, NSCALE_REGION, "most_recent");
    let r = env.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("2 images are equally new"), "{}", r.stderr);

    manifest(
        &env,
        "data:\n  phala_os_image:\n    os: { version: \"~0.9\" }\noutputs:\n  os: ${data.phala_os_image.os.name}\n",
    );
    let r = env.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("data.phala_os_image.os: no image matches"), "{}", r.stderr);
    assert!(r.stderr.contains("teeform.yaml:"), "{}", r.stderr);

    manifest(
        &env,
        "data:\n  phala_os_image:\n    os: { cvm: no-such-cvm }\noutputs:\n  os: ${data.phala_os_image.os.name}\n",
    );
    let r = env.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("HTTP 404 ERR-03-001"), "{}", r.stderr);
}

#[test]
fn images_list_browses_each_catalog() {
    let env = catalog_env(PUBLIC_KEY);
    manifest(&env, "");
    let r = env.run(&["images", "list", "nscale", "--region", NSCALE_REGION, "--gpu-model", "H100", "--json"]);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ubu2204-gpu-550", "ubu2404-gpu-550", "ubu2404-gpu-535"], "newest first, ready only");
    let r = env.run(&["images", "list", "nscale", "--region", NSCALE_REGION, "--organization", NSCALE_ORG, "--no-gpu"]);
    r.ok();
    assert!(r.stdout.starts_with("ID "), "{}", r.stdout);
    assert!(r.stdout.contains("ubu2404-base"), "{}", r.stdout);
    assert!(!r.stdout.contains("acme-ubu2404-gpu"), "{}", r.stdout);

    let r = env.run(&[
        "images",
        "list",
        "oci",
        "--compartment",
        OCI_COMPARTMENT,
        "--operating-system",
        "Oracle Linux",
        "--shape",
        "VM.Standard.E4.Flex",
    ]);
    r.ok();
    let rows: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert!(rows[0].contains("teeform-base-2024.10.15"), "{}", r.stdout);
    assert!(!r.stdout.contains("GPU") && !r.stdout.contains("2024.11.05"), "{}", r.stdout);
    assert_eq!(rows.len(), 5, "{}", r.stdout);

    let r = env.run(&["images", "list", "phala", "--image-version", ">=0.5.4", "--json"]);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v.as_array().unwrap().iter().map(|i| i["name"].clone()).collect::<Vec<_>>(),
        [json!("dstack-0.5.5"), json!("dstack-0.5.4")]
    );
    let r = env.run(&["images", "list", "phala", "--exactly-one"]);
    r.code(1);
    assert!(r.stderr.contains("3 images match"), "{}", r.stderr);
}

#[test]
fn data_references_are_checked_when_loading() {
    let env = catalog_env(PUBLIC_KEY);
    manifest(
        &env,
        "data:\n  oci_imag:\n    x: {}\n  oci_image:\n    base: { display_name: '(' }\noutputs:\n  a: ${data.oci_image.nope.id}\n  b: ${data.oci_image.base.idd}\n",
    );
    let r = env.run(&["validate"]);
    r.code(1);
    for want in [
        "unknown data source kind `oci_imag`",
        "`display_name` is not a valid regular expression",
        "`${data.oci_image.nope.id}` references a data source that is not declared",
        "oci_image has no attribute `idd`",
        "did you mean `id`?",
        "teeform.yaml:",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
}
