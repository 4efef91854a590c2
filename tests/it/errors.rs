//! What users see when the manifest is wrong: every error at once, file:line:col, a snippet
//! and a hint. Snapshots are the contract; review changes to them like UI changes.

use crate::harness::{TestEnv, WEB};

fn check(name: &str, manifest: &str) -> String {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.write("teeform.yaml", manifest);
    let r = t.run(&["validate"]);
    r.code(1);
    assert!(r.stdout.is_empty(), "errors go to stderr");
    insta::assert_snapshot!(name, r.stderr);
    r.stderr.clone()
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let out = check("unknown_key", "cvms:\n  web-app:\n    compose: web.yml\n    vcpus: 2\n");
    assert!(out.contains("teeform.yaml:4:5"));
    assert!(out.contains("did you mean `vcpu`?"));
}

#[test]
fn wrong_types_and_ranges() {
    check(
        "wrong_types",
        "cvms:\n  web-app:\n    compose: web.yml\n    vcpu: lots\n    memory: 12\n    public_logs: sometimes\n",
    );
}

#[test]
fn missing_files() {
    let out =
        check("missing_files", "cvms:\n  web-app:\n    compose: nope.yml\n    pre_launch_script: scripts/pre.sh\n");
    assert!(out.contains("teeform.yaml:3:14"));
}

#[test]
fn bad_references() {
    check(
        "bad_references",
        "cvms:\n  web-app:\n    compose: web.yml\n    env:\n      A: ${cvm.dbb.app_id}\n      B: ${cvm.web-app.appid}\n      C: ${var.nope}\n      D: ${nonsense}\n    depends_on: [dbb]\n",
    );
}

#[test]
fn a_cycle_is_named_whole() {
    let out = check(
        "cycle",
        "cvms:\n  alpha:\n    compose: web.yml\n    depends_on: [bravo]\n  bravo:\n    compose: web.yml\n    env:\n      X: ${cvm.charlie.app_id}\n  charlie:\n    compose: web.yml\n    depends_on: [alpha]\n",
    );
    assert!(out.contains("cvm.alpha → cvm.bravo → cvm.charlie → cvm.alpha"), "{out}");
}

#[test]
fn broken_yaml_points_at_the_line() {
    let out = check("broken_yaml", "cvms:\n  x:\n    vcpu: [\n");
    assert!(out.contains("teeform.yaml:"));
}

#[test]
fn every_error_at_once() {
    let out = check(
        "many",
        "provder:\n  phala: {}\ncvms:\n  ab:\n    compose: web.yml\n  web-app:\n    compose: missing.yml\n    kms: etherium\n    gpus: -1\noutputs:\n  pw: ${secret:env:PW}\n",
    );
    assert!(out.contains("has 6 errors"), "{out}");
}

#[test]
fn validate_json_is_machine_readable() {
    let t = TestEnv::new();
    t.write("teeform.yaml", "cvms:\n  web-app:\n    compose: web.yml\n    vcpus: 2\n");
    t.write("web.yml", WEB);
    let r = t.run(&["validate", "--json"]);
    r.code(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["line"], 4);
    assert_eq!(v["diagnostics"][0]["column"], 5);
    assert_eq!(v["diagnostics"][0]["hints"][0], "did you mean `vcpu`?");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let t = TestEnv::new();
    for bad in [&["plan", "--no-such-flag"][..], &["apply", "--parallelism", "0"], &["plan", "--var", "novalue"]] {
        let r = t.run(bad);
        r.code(1);
        assert!(r.stderr.starts_with("error: "), "{bad:?}: {}", r.stderr);
    }
    let h = t.run(&["plan", "--help"]);
    h.ok();
    assert!(h.stdout.contains("--detailed-exitcode"));
    for sub in [
        "validate",
        "apply",
        "destroy",
        "show",
        "output",
        "state",
        "import",
        "force-unlock",
        "completions",
        "sim",
        "images",
    ] {
        t.run(&[sub, "--help"]).ok();
    }
    assert!(t.run(&["completions", "bash"]).ok().stdout.contains("teeform"));
}

#[test]
fn missing_manifest_is_explained() {
    let t = TestEnv::new();
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("cannot read manifest teeform.yaml"), "{}", r.stderr);
}

#[test]
fn hints_repeat_the_flags_the_command_ran_with() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.write("staging.yaml", &format!("provider:\n  phala:\n    endpoint: {}\ncvms: {{}}\n", t.prefix()));
    // Another process holds the state of workspace `blue` under `st/`.
    let mut opts = teeform::state::OpenOptions::local(
        t.path("st"),
        teeform::state::LockInfo::for_command("apply"),
        std::time::Duration::ZERO,
    );
    opts.workspace = "blue".into();
    let held = crate::harness::runtime().block_on(teeform::state::open(&opts)).expect("state opens");
    let r = t.run(&["-f", "staging.yaml", "--state", "st", "--workspace", "blue", "plan"]);
    r.code(1);
    assert!(
        r.stderr.contains("run `teeform -f staging.yaml --state st --workspace blue force-unlock "),
        "{}",
        r.stderr
    );
    drop(held);
}

/// Every command that writes one JSON document with `--json` writes one when it fails too:
/// `{"errored": true, "diagnostics": [...]}` on stdout (the error for people on stderr), so a
/// script's parser never meets an empty stdout (issue: `verify --json` and `status --json`
/// printed nothing when the API failed).
#[test]
fn every_json_command_writes_an_error_document_when_it_fails() {
    let mut t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-json\n    compose: web.yml\noutputs:\n  app: ${cvm.web.app_id}\n");
    t.run(&["apply", "--auto-approve"]).ok();
    let errored = |t: &TestEnv, args: &[&str], want: &str| {
        let r = t.run(args);
        assert_ne!(r.code, 0, "{args:?}: {}", r.stdout);
        let doc: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is no JSON ({e}): {:?}", r.stdout));
        assert_eq!(doc["errored"], true, "{args:?}: {doc:#}");
        let d = &doc["diagnostics"][0];
        let words = format!("{} {}", d["message"], d["causes"]);
        assert!(d["severity"] == "error" && words.contains(want), "{args:?}: {doc:#}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    };
    // The API refuses the key.
    t.env.insert("PHALA_CLOUD_API_KEY".into(), "wrong-key-0123456789".into());
    for args in [
        &["plan", "--json"][..],
        &["status", "--json"],
        &["state", "list", "--long", "--json"],
        &["verify", "--json"],
        &["images", "list", "phala", "--json"],
    ] {
        errored(&t, args, "HTTP 401");
    }
    // The state is damaged: commands that read state alone.
    t.env.insert("PHALA_CLOUD_API_KEY".into(), "k".into());
    std::fs::write(t.path("state/seal.json"), "{\"format\": 1, \"lin").unwrap();
    for args in [
        &["show", "--json"][..],
        &["state", "show", "cvm.web", "--json"],
        &["output", "--json"],
        &["output", "app", "--json"],
        &["status", "--json"],
        &["verify", "--json"],
    ] {
        errored(&t, args, "seal");
    }
}
