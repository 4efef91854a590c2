//! How the manifest and the files it names are read, end to end: values exactly as written,
//! byte-order marks, file safety, credentials, the compose/env lint. Snapshots are the
//! contract for the diagnostics; review changes to them like UI changes.

use std::time::{Duration, Instant};

use crate::harness::{TestEnv, WEB};

/// `validate`'s stderr for a manifest (and files), with its exit code.
fn validate(t: &TestEnv, manifest: &str) -> (i32, String) {
    t.write("teeform.yaml", manifest);
    let r = t.run(&["validate"]);
    (r.code, r.stderr.clone())
}

/// The decrypted env the simulator's CVM `name` received.
fn cvm_env(t: &TestEnv, name: &str) -> serde_json::Value {
    let cvm = t.api("GET", &format!("/cvms/{name}"), None).1;
    let id = cvm["vm_uuid"].as_str().expect("vm_uuid").to_string();
    t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"].clone()
}

#[test]
fn values_reach_the_cvm_exactly_as_written_and_settle() {
    let t = TestEnv::new();
    t.write(
        "app.yml",
        "services:\n  app:\n    image: app:${RUNTIME_VERSION}\n    environment: [\"M=$MODE\", \"O=$OCTAL\", \"F=$FLAG\", \"E=$EXP\", \"N=$NODE_LABEL\"]\n",
    );
    t.manifest(
        "variables:\n  v: { default: 1.20 }\ncvms:\n  app:\n    name: app-main\n    compose: app.yml\n    env:\n      RUNTIME_VERSION: 1.30\n      MODE: on\n      OCTAL: 0755\n      FLAG: yes\n      EXP: 1e3\n      NODE_LABEL: node-${var.v}\n",
    );
    let p = t.run(&["plan"]);
    p.ok();
    assert!(p.stdout.contains("RUNTIME_VERSION = \"1.30\""), "{}", p.stdout);
    assert!(p.stderr.is_empty(), "no lint findings: {}", p.stderr);
    t.run(&["apply", "--auto-approve"]).ok();
    let env = cvm_env(&t, "app-main");
    for (k, v) in [
        ("RUNTIME_VERSION", "1.30"),
        ("MODE", "on"),
        ("OCTAL", "0755"),
        ("FLAG", "yes"),
        ("EXP", "1e3"),
        ("NODE_LABEL", "node-1.20"),
    ] {
        assert_eq!(env[k], v, "{k}: {env}");
    }
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // A --var keeps its text as well.
    let p = t.run(&["plan", "--var", "v=1.30"]);
    assert!(p.ok().stdout.contains("\"node-1.20\" -> \"node-1.30\""), "{}", p.stdout);
}

#[test]
fn byte_order_marks_are_not_content() {
    let t = TestEnv::new();
    t.write("web.yml", &format!("\u{feff}{WEB}"));
    t.write("greeting.txt", "\u{feff}hello\n");
    t.write(
        "teeform.yaml",
        &format!(
            "\u{feff}provider:\n  phala:\n    endpoint: {}\ncvms:\n  web:\n    name: web-main\n    compose: web.yml\n    lint: {{ignore: [GREETING]}}\n    env:\n      GREETING: ${{file:greeting.txt}}\n",
            t.prefix()
        ),
    );
    t.run(&["apply", "--auto-approve"]).ok();
    // The CVM gets the compose text without the mark (as docker compose would read it), and
    // the plan that follows has nothing to do.
    let (_, compose) = t.api("GET", "/cvms/web-main/docker-compose.yml", None);
    assert_eq!(compose.as_str().unwrap(), WEB);
    assert_eq!(cvm_env(&t, "web-main")["GREETING"], "hello");
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_kept_newline_shows_in_the_plan() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.write("two.txt", "line\n\n");
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    lint: {ignore: [TWO]}\n    env:\n      TWO: ${file:two.txt}\n");
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("TWO = \"line\\n\""), "{}", p.stdout);
}

#[test]
fn files_that_are_not_regular_or_outside_never_hang_or_leak() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    let fifo = std::ffi::CString::new(t.path("pipe.yml").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let cases: &[(&str, &str)] = &[
        ("compose: pipe.yml", "cannot read compose file `pipe.yml`: it is a FIFO, not a regular file"),
        ("compose: /dev/zero", "files under /proc, /sys and /dev are never read"),
        ("compose: /etc/passwd", "cannot read compose file `/etc/passwd`: it is outside the manifest's directory"),
        ("compose: web.yml\n    env:\n      K: ${file:/proc/self/environ}", "cannot read file `/proc/self/environ`"),
    ];
    for (field, want) in cases {
        t.manifest(&format!("cvms:\n  web:\n    name: web-main\n    {field}\n"));
        let started = Instant::now();
        let mut child = t
            .command(&["validate"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("validate hung on {field}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{field}: {stderr}");
        assert!(stderr.contains(want), "{field}: {stderr}");
        assert!(!stderr.contains("root:"), "{field}: {stderr}");
    }
}

#[test]
fn credentials_cannot_be_copied_into_values() {
    let mut t = TestEnv::new();
    t.write("web.yml", WEB);
    t.env.insert("PRIVATE_KEY".into(), "0x1111111111111111111111111111111111111111111111111111111111111111".into());
    let (code, stderr) = validate(
        &t,
        "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    env:\n      K: ${env:PHALA_CLOUD_API_KEY}\noutputs:\n  key: ${env:PRIVATE_KEY}\n",
    );
    assert_eq!(code, 1);
    assert!(!stderr.contains(crate::harness::KEY) && !stderr.contains("0x1111"), "{stderr}");
    insta::assert_snapshot!("credentials", stderr);
}

#[test]
fn validate_shows_the_compose_lint() {
    let t = TestEnv::new();
    t.write(
        "app.yml",
        "services:\n  app:\n    image: app:${TAG:-latest}\n    environment:\n      BUCKET: \"${BUCKET_PREFIX:?set BUCKET_PREFIX}\"\n      REGION: $REGION\n",
    );
    t.write("pre.sh", "#!/bin/sh\necho \"$FROM_SCRIPT\"\n");
    let (code, stderr) = validate(
        &t,
        "cvms:\n  app:\n    name: app-main\n    compose: app.yml\n    pre_launch_script: pre.sh\n    env:\n      BUCKET_PREFX: b\n      FROM_SCRIPT: s\n      DSTACK_DOCKER_REGISTRY: ghcr.io\n",
    );
    assert_eq!(code, 1, "{stderr}");
    insta::assert_snapshot!("compose_lint", stderr);
    // With the key fixed only warnings remain, and `lint.ignore` silences them on purpose.
    let (code, stderr) = validate(
        &t,
        "cvms:\n  app:\n    name: app-main\n    compose: app.yml\n    env:\n      BUCKET_PREFIX: b\n      UNUSED: u\n",
    );
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("compose_lint_warnings", stderr);
    let (code, stderr) = validate(
        &t,
        "cvms:\n  app:\n    name: app-main\n    compose: app.yml\n    lint: { ignore: [REGION, UNUSED] }\n    env:\n      BUCKET_PREFIX: b\n      UNUSED: u\n",
    );
    assert_eq!((code, stderr.as_str()), (0, ""));
    let json = t.run(&["validate", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["warning_count"], 0);
}

/// A secret that the compose file requires non-empty (`${VAR:?…}`) is checked once it is
/// read: empty, the plan stops before any call that changes something; set, it goes on. The
/// same `${secret:file:}` rule holds: a file of one line break is empty.
#[test]
fn an_empty_secret_a_compose_file_requires_is_refused_at_plan() {
    let mut t = TestEnv::new();
    t.write("app.yml", "services:\n  app:\n    image: app:1\n    environment:\n      PW: \"${DB_PASSWORD:?set it}\"\n      K: \"${KEY:?set it}\"\n");
    t.write("key.txt", "\n");
    t.manifest(
        "cvms:\n  app:\n    name: app-main\n    compose: app.yml\n    env:\n      DB_PASSWORD: ${secret:env:PW}\n      KEY: ${secret:file:key.txt}\n",
    );
    t.env.insert("PW".into(), String::new());
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(
        r.stderr.contains("env `DB_PASSWORD` of cvm.app is empty, but its compose file requires a value"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("env `KEY` of cvm.app is empty"), "{}", r.stderr);
    assert!(r.stderr.contains("teeform.yaml:9:20"), "points at the value: {}", r.stderr);
    assert_eq!(t.stats()["total_requests"], 0, "nothing was asked of the API");
    t.env.insert("PW".into(), "hunter2".into());
    t.write("key.txt", "k\n");
    t.run(&["plan"]).ok();
}

#[test]
fn one_broken_compose_shared_by_many_is_one_error() {
    let t = TestEnv::new();
    t.write("broken.yml", "services:\n  web:\n    image: nginx\n   ports: [80]\n");
    let mut m = String::from("cvms:\n");
    for i in 0..200 {
        m.push_str(&format!("  c{i:03}:\n    name: cvm-{i:03}\n    compose: broken.yml\n"));
    }
    let (code, stderr) = validate(&t, &m);
    assert_eq!(code, 1);
    insta::assert_snapshot!("shared_broken_compose", stderr);
    let json = t.run(&["validate", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["error_count"], 1, "{v}");
    assert_eq!(v["diagnostics"][0]["line"], 4);
    assert_eq!(v["diagnostics"][0]["related"].as_array().unwrap().len(), 3);
}

#[test]
fn duplicate_names_point_at_both() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    let (code, stderr) = validate(
        &t,
        "cvms:\n  web:\n    name: Shop-Web\n    compose: web.yml\n  web2:\n    name: shop-web\n    compose: web.yml\n",
    );
    assert_eq!(code, 1);
    insta::assert_snapshot!("duplicate_names", stderr);
}

#[test]
fn messages_name_the_real_cause() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    // A bad --var is one error, not three.
    t.manifest("variables:\n  x: { default: 2 }\ncvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: ${var.x}\n");
    let r = t.run(&["validate", "--var", "x=four"]);
    r.code(1);
    assert!(r.stderr.contains("--var x=four: variable `x` is a number"), "{}", r.stderr);
    assert!(!r.stderr.contains("has no value") && !r.stderr.contains("unknown variable"), "{}", r.stderr);
    // A tab is reported on its own line.
    t.manifest("cvms:\n  web:\n    name: web-main\n\tcompose: web.yml\n");
    let r = t.run(&["validate"]);
    assert!(r.stderr.contains("teeform.yaml:7:1"), "{}", r.stderr);
    // An invalid key gets a valid name to copy.
    t.manifest("cvms:\n  my_db:\n    compose: web.yml\n");
    let r = t.run(&["validate"]);
    assert!(r.stderr.contains("e.g. `name: my-db`"), "{}", r.stderr);
    // A missing secret file says so.
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    lint: {ignore: [PW]}\n    env:\n      PW: ${secret:file:db.pass}\n");
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("db.pass: no such file"), "{}", r.stderr);
    assert!(!r.stderr.contains("entity not found"), "{}", r.stderr);
}

#[test]
fn the_import_hint_list_is_capped() {
    let a = TestEnv::new();
    a.write("web.yml", WEB);
    let mut m = String::from("cvms:\n");
    for i in 0..8 {
        m.push_str(&format!("  c{i}:\n    name: taken-{i}\n    compose: web.yml\n"));
    }
    a.manifest(&m);
    a.run(&["apply", "--auto-approve"]).ok();
    let b = TestEnv::new();
    b.write("web.yml", WEB);
    b.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{m}", a.prefix()));
    let r = b.run(&["plan"]);
    r.code(1);
    let imports = r.stderr.lines().filter(|l| l.contains("`teeform import ")).count();
    assert_eq!(imports, 5, "{}", r.stderr);
    assert!(r.stderr.contains("and 3 more CVMs the same way"), "{}", r.stderr);
}
