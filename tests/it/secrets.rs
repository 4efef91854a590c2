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
    canary_run(false);
}

/// The same in keyed mode: the passphrase is a canary too.
#[test]
fn canary_secret_and_passphrase_never_written_or_printed_in_keyed_mode() {
    canary_run(true);
}

fn canary_run(keyed: bool) {
    let canary = format!("CANARY{}", uuid::Uuid::new_v4().simple());
    let canary2 = format!("TOKEN{}", uuid::Uuid::new_v4().simple());
    let passphrase = format!("PASSPHRASE{}", uuid::Uuid::new_v4().simple());
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), canary.clone());
    if keyed {
        t.env.insert("TEEFORM_SECRETS_PASSPHRASE".into(), passphrase.clone());
    }
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
    if keyed {
        needles.extend(forms(&passphrase));
    }
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
    if keyed {
        // (Read last: this process opening sled writes files of its own there.)
        let rec = state_record(&t);
        assert!(rec["attrs"]["env"]["API_TOKEN"]["digest"].as_str().unwrap().starts_with("hmac-sha256:"), "{rec}");
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

const ONE: &str =
    "cvms:\n  web:\n    name: web-one\n    compose: web.yml\n    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\n";

/// `cvm.web`'s record as state keeps it, read from sled (no command shows digests).
fn state_record(t: &TestEnv) -> serde_json::Value {
    let db = sled::Config::new().path(t.path("state/sled")).open().unwrap();
    let rec = db.open_tree("resources").unwrap().get("cvm.web").unwrap().expect("cvm.web in state");
    serde_json::from_slice(&rec).unwrap()
}

/// The digest of `DB_PASSWORD` state keeps for `cvm.web`.
fn recorded_digest(t: &TestEnv) -> String {
    state_record(t)["attrs"]["env"]["DB_PASSWORD"]["digest"].as_str().unwrap().to_string()
}

/// State written before keyed mode existed (its digest made by teeform at commit 350f03d,
/// before issue 15) plans no changes; turning keyed mode on, rotating the passphrase and
/// turning it off again rewrite the digests in state and send nothing; a secret rotated in
/// keyed mode is one change, one restart.
#[test]
fn state_from_before_plans_no_changes_and_modes_switch_without_restarts() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "hunter2".into());
    t.write("web.yml", WEB);
    t.manifest(ONE);
    t.run(&["apply", "--auto-approve"]).ok();
    let mut rec = state_record(&t);
    std::fs::remove_dir_all(t.path("state")).unwrap();
    // That teeform's digest of "hunter2" for this salt, address and key, byte for byte.
    rec["attrs"]["env"]["DB_PASSWORD"]["digest"] =
        "argon2id:d5a0b7fdfb1270baddedfdc6bb603482ec8dc78a55be563b0a7512df745c2950".into();
    crate::trust::write_legacy_state(&t.path("state"), &[rec], &[]);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    assert!(p.code(0).stdout.contains("No changes."), "{}", p.stdout);
    assert!(!p.stdout.contains("secret digest"), "{}", p.stdout);
    let (patches, restarts) = (t.count("PATCH "), t.cvm_stat("web-one", "restarts"));

    // Keyed mode on: the Argon2id digest still compares, and is written again keyed.
    t.env.insert("TEEFORM_SECRETS_PASSPHRASE".into(), "first passphrase, long enough".into());
    let p = t.run(&["plan", "--detailed-exitcode"]);
    assert!(p.code(0).stdout.contains("No changes."), "{}", p.stdout);
    assert!(
        p.stdout.contains("note: 1 secret digest in 1 CVM was made with Argon2id (no passphrase); applying writes it again with the passphrase of key"),
        "{}",
        p.stdout
    );
    t.run(&["apply", "--auto-approve"]).ok();
    let first = recorded_digest(&t);
    assert!(first.starts_with("hmac-sha256:"), "{first}");
    let p = t.run(&["plan", "--detailed-exitcode"]);
    assert!(p.code(0).stdout.contains("No changes.") && !p.stdout.contains("secret digest"), "{}", p.stdout);

    // Rotating the passphrase with the old one at hand: compared under it, written under the new.
    t.env.insert("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE".into(), "first passphrase, long enough".into());
    t.env.insert("TEEFORM_SECRETS_PASSPHRASE".into(), "second passphrase, long enough".into());
    let p = t.run(&["plan", "--detailed-exitcode"]);
    assert!(p.code(0).stdout.contains("1 secret digest in 1 CVM was made with the passphrase of key"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    t.env.remove("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE");
    let second = recorded_digest(&t);
    assert!(second.starts_with("hmac-sha256:") && second != first, "{second}");
    assert!(t.run(&["plan", "--detailed-exitcode"]).code(0).stdout.contains("No changes."));

    // A passphrase other than state's, without the old one: the plan says what it resends.
    t.env.insert("TEEFORM_SECRETS_PASSPHRASE".into(), "a mistyped passphrase here".into());
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("warning: 1 secret value in 1 CVM cannot be compared with state"), "{}", p.stdout);
    assert!(p.stdout.contains("note: DB_PASSWORD: state's digest was made with the passphrase of key"), "{}", p.stdout);
    // No passphrase at all against keyed state: refused (a forgotten variable restarts nothing).
    t.env.remove("TEEFORM_SECRETS_PASSPHRASE");
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("were made with the passphrase of key"), "{}", r.stderr);
    assert!(r.stderr.contains("no passphrase is set; nothing was changed"), "{}", r.stderr);
    assert!(r.stderr.contains("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE"), "{}", r.stderr);
    assert_eq!((t.count("PATCH "), t.cvm_stat("web-one", "restarts")), (patches, restarts.clone()));

    // A secret rotated in keyed mode: one change, one PATCH, one restart.
    t.env.insert("TEEFORM_SECRETS_PASSPHRASE".into(), "second passphrase, long enough".into());
    t.env.insert("DB_PASSWORD".into(), "rotated".into());
    let p = t.run(&["plan", "--detailed-exitcode"]);
    assert!(p.code(2).stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy. 1 CVM restart."), "{}", p.stdout);
    assert!(p.stdout.contains("~ DB_PASSWORD = (sensitive value) (changed)"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.count("PATCH "), patches + 1);
    assert_eq!(t.cvm_stat("web-one", "restarts").as_u64().unwrap(), restarts.as_u64().unwrap() + 1);
    let id = t.api("GET", "/cvms/web-one", None).1["vm_uuid"].as_str().unwrap().to_string();
    assert_eq!(t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"]["DB_PASSWORD"], "rotated");

    // Keyed mode off, with the passphrase as the previous one: Argon2id digests again.
    t.env.remove("TEEFORM_SECRETS_PASSPHRASE");
    t.env.insert("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE".into(), "second passphrase, long enough".into());
    assert!(t.run(&["plan", "--detailed-exitcode"]).code(0).stdout.contains("applying writes it again with Argon2id"));
    t.run(&["apply", "--auto-approve"]).ok();
    t.env.remove("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE");
    assert!(recorded_digest(&t).starts_with("argon2id:"));
    assert!(t.run(&["plan", "--detailed-exitcode"]).code(0).stdout.contains("No changes."));
    assert_eq!(t.count("PATCH "), patches + 1, "switching modes sent nothing");
}

/// The counts of the last `secret digests after …` debug line: (computed, reused, peak in
/// use, pool size, allocated).
fn digest_counts(r: &Run) -> (u64, u64, u64, u64, u64) {
    let line = r.stderr.lines().rfind(|l| l.contains("secret digests after")).expect("the digest counts are logged");
    let counts = line.split_once(": ").expect("counts after the colon").1;
    let n: Vec<u64> = counts.split_whitespace().filter_map(|w| w.trim_end_matches([',', ';']).parse().ok()).collect();
    assert_eq!(n.len(), 5, "{line}");
    (n[0], n[1], n[2], n[3], n[4])
}

/// Issue 15: each digest is made once per run (the apply uses the plan's), in at most one
/// working buffer per pool slot however many secrets there are.
#[test]
fn each_digest_is_made_once_per_run_in_bounded_memory() {
    let mut t = TestEnv::with_config(teeform::sim::SimConfig { restart_ms: 0, boot_ms: 0, ..Default::default() });
    t.env.insert("TEEFORM_LOG".into(), "teeform=debug".into());
    t.write("web.yml", WEB);
    let fleet = |vcpu: u32| {
        let mut m = String::from("cvms:\n");
        for i in 0..6 {
            m.push_str(&format!(
                "  svc{i}:\n    name: svc{i}-app\n    compose: web.yml\n    vcpu: {vcpu}\n    env:\n      PW: ${{secret:env:PW{i}}}\n"
            ));
        }
        m
    };
    for i in 0..6 {
        t.env.insert(format!("PW{i}"), format!("password-{i}"));
    }
    t.manifest(&fleet(1));
    let check = |r: &Run, computed: u64, what: &str| {
        let (c, reused, peak, size, allocated) = digest_counts(r);
        assert_eq!(c, computed, "{what}: Argon2id computations");
        assert!(
            peak <= size && allocated <= size && peak >= 1,
            "{what}: {peak} in use, {allocated} allocated, pool {size}"
        );
        reused
    };
    let r = t.run(&["apply", "--auto-approve"]);
    // Six values: six digests for the plan, none again for the apply (it reuses all six).
    assert!(check(r.ok(), 6, "create") >= 6);
    t.manifest(&fleet(2));
    let r = t.run(&["apply", "--auto-approve"]);
    assert!(check(r.ok(), 6, "update") >= 6);
    assert_eq!(t.count("PATCH "), 6);
    check(t.run(&["plan"]).ok(), 6, "plan");

    // Keyed: one derivation per run; six Argon2id digests only to compare state's once.
    t.env.insert("TEEFORM_SECRETS_PASSPHRASE".into(), "a passphrase long enough".into());
    check(t.run(&["apply", "--auto-approve"]).ok(), 1 + 6, "keyed, first run");
    t.manifest(&fleet(3));
    check(t.run(&["apply", "--auto-approve"]).ok(), 1, "keyed update");
    assert_eq!(t.count("PATCH "), 12);
}

/// `secrets.passphrase_env` names the variable; it is then a credential `${env:}` may not copy.
#[test]
fn the_manifest_can_name_the_passphrase_variable() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "hunter2".into());
    t.write("web.yml", WEB);
    t.manifest(&format!("secrets:\n  passphrase_env: MY_PASS\n{ONE}"));
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("`secrets.passphrase_env` names MY_PASS, which is not set"), "{}", r.stderr);
    t.env.insert("MY_PASS".into(), "the team's long passphrase".into());
    t.run(&["apply", "--auto-approve"]).ok();
    assert!(recorded_digest(&t).starts_with("hmac-sha256:"));
    // A saved plan is applied with the passphrase it was made with; with another one its
    // digests cannot be checked (unless the old one is given as the previous).
    t.manifest(&format!(
        "secrets:\n  passphrase_env: MY_PASS\n{}",
        ONE.replace("    compose:", "    vcpu: 2\n    compose:")
    ));
    t.run(&["plan", "--out", "p.plan"]).ok();
    t.env.insert("MY_PASS".into(), "another long passphrase".into());
    let r = t.run(&["apply", "p.plan"]);
    r.code(1);
    assert!(r.stderr.contains("the plan's digest was made with the passphrase of key"), "{}", r.stderr);
    assert!(!r.stderr.contains("long passphrase"), "{}", r.stderr);
    t.env.insert("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE".into(), "the team's long passphrase".into());
    t.run(&["apply", "p.plan"]).ok();
    t.env.remove("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE");
    assert!(t.run(&["plan", "--detailed-exitcode"]).code(0).stdout.contains("No changes."));

    t.manifest(&format!("secrets:\n  passphrase_env: MY_PASS\n{ONE}      COPY: x${{env:MY_PASS}}\n"));
    t.env.insert("MY_PASS".into(), "the team's long passphrase".into());
    let r = t.run(&["validate"]);
    r.code(1);
    assert!(r.stderr.contains("MY_PASS"), "{}", r.stderr);
    assert!(!r.stderr.contains("the team's long passphrase"), "{}", r.stderr);
    t.manifest(&format!("secrets:\n  passphrase_env: 1BAD\n  passphrase: x\n{ONE}"));
    let r = t.run(&["validate"]);
    r.code(1);
    assert!(r.stderr.contains("`1BAD` is not an environment variable name"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown key `passphrase` in secrets"), "{}", r.stderr);
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
