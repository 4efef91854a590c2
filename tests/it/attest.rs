//! Verifying what the cloud says: the KMS's signature on the env-encryption key is checked
//! before any secret is encrypted to it.

use crate::harness::{TestEnv, WEB};

fn with_env(kms: &str) -> String {
    format!("cvms:\n  api:\n    name: api-main\n    compose: web.yml\n{kms}    env:\n      API_KEY: sk-live-123\n")
}

fn env_of(t: &TestEnv, name: &str) -> serde_json::Value {
    let cvm = t.api("GET", &format!("/cvms/{name}"), None).1;
    let id = cvm["vm_uuid"].as_str().unwrap().to_string();
    t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"].clone()
}

#[test]
fn a_key_the_kms_did_not_sign_gets_no_env_at_create_or_update() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(&with_env(""));
    t.configure(serde_json::json!({"kms_bad_signature": true}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("not encrypting env to the key from KMS"), "{}", r.stderr);
    assert!(r.stderr.contains("not by the KMS's signing key"), "{}", r.stderr);
    assert_eq!(t.stats()["cvm_count"], 0, "no CVM was committed, so no env was sent");
    assert_eq!(t.count("GET /api/v1/kms/"), 2, "the KMS info and the signed key, once each");

    // Signed right: the create goes through and the CVM reads its env.
    t.configure(serde_json::json!({"kms_bad_signature": false}));
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(env_of(&t, "api-main")["API_KEY"], "sk-live-123");

    // An env change against a wrongly signed key: no PATCH at all.
    t.manifest(&with_env("").replace("sk-live-123", "sk-live-456"));
    t.configure(serde_json::json!({"kms_bad_signature": true}));
    let patches = t.count("PATCH ");
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("not encrypting env to the key from KMS `phala`"), "{}", r.stderr);
    assert!(r.stderr.contains("not by the KMS's signing key"), "{}", r.stderr);
    assert_eq!(t.count("PATCH "), patches, "nothing sent");
    assert_eq!(env_of(&t, "api-main")["API_KEY"], "sk-live-123");
}

#[test]
fn a_pinned_kms_signer_is_the_one_trusted() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    // Another key than the simulator's KMS: refused even though the API's KMS info agrees
    // with its own signature.
    let other = teeform::verify::kms_key::signer_of(&[7; 32]);
    t.manifest(&with_env(&format!("    kms:\n      signer: \"{other}\"\n")));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("kms.signer in the manifest"), "{}", r.stderr);
    assert_eq!(t.stats()["cvm_count"], 0);
    // The simulator's KMS key, pinned: the API's KMS info is not even asked.
    let kms_info = t.count("GET /api/v1/kms/kms_phala_sim\"");
    t.manifest(&with_env(&format!("    kms:\n      signer: \"{}\"\n", teeform::sim::kms_signer())));
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(env_of(&t, "api-main")["API_KEY"], "sk-live-123");
    assert_eq!(t.count("GET /api/v1/kms/kms_phala_sim\""), kms_info);
    // A malformed pin is a manifest error with its place.
    t.manifest(&with_env("    kms:\n      signer: \"0x1234\"\n"));
    let r = t.run(&["validate"]);
    r.code(1);
    assert!(r.stderr.contains("kms.signer") && r.stderr.contains("teeform.yaml:9:15"), "{}", r.stderr);
}

const TWO: &str = "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n  api:\n    name: api-main\n    compose: web.yml\n    vcpu: 2\n";

#[test]
fn the_gate_passes_a_fleet_that_booted_what_was_sent_and_verify_says_so() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(TWO);
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("Attestations verified"), "{}", r.stderr);
    let attestations = |t: &TestEnv| {
        t.stats()["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.ends_with("/attestation"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(attestations(&t), 2, "one attestation per CVM created");
    // An unchanged fleet: verify prints a table and exits 0.
    let v = t.run(&["verify"]);
    v.ok();
    assert!(v.stdout.starts_with("ADDRESS"), "{}", v.stdout);
    assert!(v.stdout.contains("cvm.api") && v.stdout.contains("cvm.web"), "{}", v.stdout);
    assert_eq!(v.stdout.matches(" verified ").count(), 2, "{}", v.stdout);
    assert!(v.stderr.contains("the TDX quote was not verified"), "{}", v.stderr);
    let j = t.run(&["verify", "--json", "cvm.web"]);
    j.ok();
    let doc: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["quote_verified"], false);
    assert_eq!(doc["cvms"].as_array().unwrap().len(), 1);
    assert_eq!(doc["cvms"][0]["address"], "cvm.web");
    assert_eq!(attestations(&t), 5);
    let e = t.run(&["verify", "cvm.wbe"]);
    e.code(1);
    assert!(e.stderr.contains("did you mean `cvm.web`?"), "{}", e.stderr);
    // `--no-verify` skips the gate and says so.
    t.manifest(&TWO.replace("vcpu: 2", "vcpu: 1"));
    let r = t.run(&["apply", "--auto-approve", "--no-verify"]);
    r.ok();
    assert!(r.stderr.contains("Attestations not verified (--no-verify)."), "{}", r.stderr);
    assert_eq!(attestations(&t), 5);
}

#[test]
fn a_cvm_that_booted_another_compose_fails_the_gate_and_stays_unverified() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(TWO);
    t.configure(serde_json::json!({"boot_other_compose": ["api-main"]}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(
        r.stderr.contains("the attestation does not match what was applied: compose-hash: expected"),
        "{}",
        r.stderr
    );
    let show = t.run(&["state", "show", "cvm.api"]);
    assert!(show.ok().stdout.contains("unverified   = \"compose-hash: expected"), "{}", show.stdout);
    assert!(!t.run(&["state", "show", "cvm.web"]).ok().stdout.contains("unverified"));
    let v = t.run(&["verify", "--json"]);
    v.code(1);
    let doc: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(doc["verified"], false);
    let api = doc["cvms"].as_array().unwrap().iter().find(|c| c["address"] == "cvm.api").unwrap().clone();
    assert_eq!(api["mismatches"][0]["field"], "compose-hash");
    let p = t.run(&["plan"]);
    assert!(p.stderr.contains("cvm.api is unverified"), "{}", p.stderr);

    // A corrupted event log: the replay does not reach the reported RTMR3.
    t.configure(serde_json::json!({"boot_other_compose": [], "corrupt_event_log": ["web-main"]}));
    let v = t.run(&["verify", "cvm.web"]);
    v.code(1);
    assert!(v.stdout.contains("UNVERIFIED") && v.stdout.contains("rtmr3: expected"), "{}", v.stdout);
    // Booting what was sent again (an apply that changes it): the mark goes.
    t.configure(serde_json::json!({"corrupt_event_log": []}));
    t.manifest(&TWO.replace("vcpu: 2", "vcpu: 1"));
    t.run(&["apply", "--auto-approve"]).ok();
    assert!(!t.run(&["state", "show", "cvm.api"]).ok().stdout.contains("unverified"));
}

#[test]
fn verify_clears_the_mark_of_a_cvm_it_proves_and_sets_it_on_one_that_differs() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.write("other.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    t.manifest(TWO);
    t.run(&["apply", "--auto-approve"]).ok();
    let marked = |t: &TestEnv, a: &str| t.run(&["state", "show", a]).ok().stdout.contains("unverified   =");

    // The gate marks api (another compose booted); `verify` finds it fixed and clears the mark,
    // so the plan's hint holds and the warning goes.
    t.configure(serde_json::json!({"boot_other_compose": ["api-main"]}));
    t.manifest(&TWO.replace("web.yml\n    vcpu", "other.yml\n    vcpu"));
    t.run(&["apply", "--auto-approve"]).code(1);
    assert!(marked(&t, "cvm.api"));
    let p = t.run(&["plan"]);
    assert!(
        p.stderr.contains("cvm.api is unverified") && p.stderr.contains("`teeform verify cvm.api`"),
        "{}",
        p.stderr
    );
    t.configure(serde_json::json!({"boot_other_compose": []}));
    let v = t.run(&["verify", "cvm.api"]);
    v.ok();
    assert!(v.stderr.contains("cvm.api: verified; its `unverified` mark in state was cleared"), "{}", v.stderr);
    assert!(!marked(&t, "cvm.api"));
    assert!(!t.run(&["plan"]).ok().stderr.contains("unverified"));
    // A second verify has nothing to change, and says nothing about marks.
    assert!(!t.run(&["verify"]).ok().stderr.contains("mark"));

    // `verify` of a CVM that now attests another compose marks it, as the gate does.
    t.configure(serde_json::json!({"boot_other_compose": ["web-main"]}));
    let v = t.run(&["verify", "--json"]);
    v.code(1);
    assert!(v.stderr.contains("cvm.web: marked `unverified` in state"), "{}", v.stderr);
    assert!(marked(&t, "cvm.web") && !marked(&t, "cvm.api"));
    assert!(t.run(&["plan"]).stderr.contains("cvm.web is unverified"));

    // Booting what was applied again: the next `verify` clears it.
    t.configure(serde_json::json!({"boot_other_compose": []}));
    t.run(&["verify"]).ok();
    assert!(!marked(&t, "cvm.web"));
}

/// The simulator's KMS (its own code) and teeform's check agree on the message, in both
/// forms, and the simulator's RTMR3 is what teeform's replay gives.
#[test]
fn the_simulators_kms_and_event_log_agree_with_the_client() {
    use teeform::verify::{attest, kms_key};
    let (pk, app) = ([5u8; 32], [0x12; 20]);
    for ts in [None, Some(1_700_000_000)] {
        assert_eq!(
            teeform::sim::attest::kms_sign(&teeform::sim::KMS_SECRET, &pk, &app, ts),
            kms_key::sign(&teeform::sim::KMS_SECRET, &pk, &app, ts)
        );
    }
    let sim = [teeform::sim::attest::Event::new("app-id", &app), teeform::sim::attest::Event::new("compose-hash", &pk)];
    let json = serde_json::json!({"tcb_info": {
        "rtmr3": hex::encode(teeform::sim::attest::rtmr3(&sim)),
        "event_log": sim.iter().map(teeform::sim::attest::Event::to_json).collect::<Vec<_>>(),
    }});
    let want =
        attest::Expected { app_id: Some(hex::encode(app)), compose_hash: Some(hex::encode(pk)), ..Default::default() };
    assert_eq!(attest::check(&json, &want).unwrap(), vec![]);
}

/// The simulator's PCCS (beside its API) and a clock inside the sample collateral's validity.
fn with_pccs(t: &mut TestEnv) -> String {
    t.env.insert("TEEFORM_VERIFY_TIME".into(), teeform::sim::pccs::SAMPLE_TIME.to_string());
    t.env.insert("XDG_CACHE_HOME".into(), t.path("cache").display().to_string());
    t.prefix().replace("/api/v1", "/pccs")
}

fn verdict_of(doc: &serde_json::Value, address: &str) -> serde_json::Value {
    doc["cvms"].as_array().unwrap().iter().find(|c| c["address"] == address).unwrap().clone()
}

#[test]
fn the_quote_is_verified_with_a_pccs_and_must_bind_the_event_log() {
    let mut t = TestEnv::new();
    let pccs = with_pccs(&mut t);
    t.write("web.yml", WEB);
    t.manifest(TWO);
    // web serves dcap-qvl's real sample quote: it verifies, but its RTMR3 is not this CVM's
    // event log. api serves the same quote with a byte of RTMR3 flipped.
    t.configure(serde_json::json!({"sample_quote": ["web-main"], "tampered_quote": ["api-main"]}));

    // No PCCS: the gate passes on the event log and says plainly the quote was not verified.
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("the TDX quote was not verified: no PCCS"), "{}", r.stderr);
    let v = t.run(&["verify"]);
    v.ok();
    assert!(v.stdout.starts_with("ADDRESS  RESULT      QUOTE"), "{}", v.stdout);
    assert_eq!(v.stdout.matches("not verified").count(), 2, "{}", v.stdout);
    assert!(v.stderr.contains("the TDX quote was not verified: no PCCS"), "{}", v.stderr);
    let j = t.run(&["verify", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&j.ok().stdout).unwrap();
    assert_eq!((doc["verified"].as_bool(), doc["quote_verified"].as_bool()), (Some(true), Some(false)));
    let web = verdict_of(&doc, "cvm.web");
    assert_eq!(web["quote"]["status"], "not_verified");
    assert!(web["quote"]["detail"].as_str().unwrap().contains("no PCCS"), "{web}");
    assert_eq!(t.count("GET /pccs/"), 0);

    // With the PCCS: web's quote verifies (UpToDate) but does not bind its event log.
    let j = t.run(&["verify", "--json", "--pccs-url", &pccs]);
    j.code(1);
    let doc: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(doc["quote_verified"], false);
    let web = verdict_of(&doc, "cvm.web");
    assert_eq!(web["verified"], false);
    assert_eq!(web["quote"]["status"], "failed");
    assert_eq!(web["quote"]["tcb_status"], "UpToDate");
    assert_eq!(web["mismatches"][0]["field"], "quote.rtmr3", "{web}");
    // The tampered quote does not verify at all.
    let api = verdict_of(&doc, "cvm.api");
    assert_eq!((api["verified"].as_bool(), api["quote"]["status"].as_str()), (Some(false), Some("failed")));
    assert_eq!(api["mismatches"][0]["field"], "quote", "{api}");
    assert!(api["mismatches"][0]["attested"].as_str().unwrap().contains("does not verify"), "{api}");
    // One platform: its collateral was fetched once (four requests), then cached on disk.
    assert_eq!(t.count("GET /pccs/tdx/certification/v4/tcb"), 1);
    assert_eq!(t.count("GET /pccs/"), 4);
    let v = t.run(&["verify", "cvm.web"]);
    assert!(v.stderr.contains("no PCCS"), "the flag is per run: {}", v.stderr);
    t.env.insert("TEEFORM_PCCS_URL".into(), pccs.clone());
    let v = t.run(&["verify", "cvm.web"]);
    v.code(1);
    assert!(v.stdout.contains("UNVERIFIED  FAILED") && v.stdout.contains("quote.rtmr3: expected"), "{}", v.stdout);
    assert_eq!(t.count("GET /pccs/"), 4, "the cached collateral was used");

    // The gate: an update of web fails on the quote's RTMR3 and marks it unverified.
    t.manifest(&TWO.replace("web.yml\n  api", "web.yml\n    vcpu: 2\n  api"));
    let r = t.run(&["apply", "--auto-approve", "--target", "cvm.web"]);
    r.code(1);
    assert!(r.stderr.contains("quote.rtmr3: expected"), "{}", r.stderr);
    assert!(t.run(&["state", "show", "cvm.web"]).ok().stdout.contains("unverified   = \"quote.rtmr3"));

    // A clock past the collateral's nextUpdate: the cache is not used, and the stale
    // collateral the PCCS serves does not verify the quote.
    t.env.insert("TEEFORM_VERIFY_TIME".into(), (teeform::sim::pccs::SAMPLE_TIME + 60 * 86_400).to_string());
    let j = t.run(&["verify", "--json", "cvm.web"]);
    let doc: serde_json::Value = serde_json::from_str(&j.code(1).stdout).unwrap();
    assert_eq!(verdict_of(&doc, "cvm.web")["mismatches"][0]["field"], "quote");
    assert_eq!(t.count("GET /pccs/tdx/certification/v4/tcb"), 2);
}

/// `verify.pccs_url` in the manifest: `verify` and the gate use it with no flag, a saved plan
/// keeps it, and `--pccs-url` wins over it.
#[test]
fn the_manifest_names_the_pccs_and_the_flag_wins() {
    let mut t = TestEnv::new();
    let pccs = with_pccs(&mut t);
    t.write("web.yml", WEB);
    let one = "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n";
    t.manifest(one);
    t.configure(serde_json::json!({"sample_quote": ["web-main"]}));
    t.run(&["apply", "--auto-approve"]).ok();
    // The sample quote verifies but does not bind this CVM's event log: a PCCS shows it.
    t.manifest(&format!("verify:\n  pccs_url: {pccs}\n  allow_tcb_status: [OutOfDate]\n{one}"));
    let v = t.run(&["verify"]);
    v.code(1);
    assert!(v.stdout.contains("quote.rtmr3: expected"), "{}", v.stdout);
    assert_eq!(t.count("GET /pccs/tdx/certification/v4/tcb"), 1);
    let v = t.run(&["verify", "--pccs-url", "http://127.0.0.1:1/"]);
    assert!(v.code(1).stdout.contains("no collateral from"), "the flag wins: {}", v.stdout);
    // The saved plan's gate checks the quote with the manifest's PCCS, read when it was made.
    t.manifest(&format!("verify:\n  pccs_url: {pccs}\n{}", one.replace("web.yml\n", "web.yml\n    vcpu: 2\n")));
    t.run(&["plan", "--out", "vcpu.plan"]).ok();
    t.manifest(one);
    let r = t.run(&["apply", "vcpu.plan"]);
    r.code(1);
    assert!(r.stderr.contains("quote.rtmr3: expected"), "{}", r.stderr);
}

#[test]
fn a_pccs_that_gives_no_collateral_fails_the_verdict_and_says_why() {
    let mut t = TestEnv::new();
    let pccs = with_pccs(&mut t);
    t.env.insert("TEEFORM_RETRY_BASE_MS".into(), "1".into());
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    t.configure(serde_json::json!({"sample_quote": ["web-main"]}));
    t.run(&["apply", "--auto-approve"]).ok();
    // Asked for, and not possible: a PCCS that answers 404 for everything (the API's own
    // prefix), one that cannot be reached, from the flag or the environment.
    let unreachable = "http://127.0.0.1:1/";
    for (flag, env) in [(Some(t.prefix()), None), (Some(unreachable.to_string()), None), (None, Some(unreachable))] {
        let mut args = vec!["verify".to_string()];
        args.extend(flag.iter().flat_map(|u| ["--pccs-url".to_string(), u.clone()]));
        match env {
            Some(u) => t.env.insert("TEEFORM_PCCS_URL".into(), u.into()),
            None => t.env.remove("TEEFORM_PCCS_URL"),
        };
        let v = t.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        v.code(1);
        assert!(v.stdout.contains("UNVERIFIED  FAILED"), "{}", v.stdout);
        assert!(v.stdout.contains("the TDX quote could not be verified: no collateral from"), "{}", v.stdout);
        // Words, each URL whole: `http://127.0.0.1:1/sgx/…`, not `…:1sgx/…`.
        assert!(!v.stdout.contains(":1sgx"), "{}", v.stdout);
        // It proves no difference, so the state's mark is left as it was (none).
        assert!(!t.run(&["state", "show", "cvm.web"]).ok().stdout.contains("unverified"));
    }
    // A CVM whose attestation carries no quote fails too once a PCCS is named.
    t.env.remove("TEEFORM_PCCS_URL");
    t.configure(serde_json::json!({"sample_quote": []}));
    let v = t.run(&["verify", "--json", "--pccs-url", &pccs]);
    let doc: serde_json::Value = serde_json::from_str(&v.code(1).stdout).unwrap();
    let web = verdict_of(&doc, "cvm.web");
    assert_eq!((web["verified"].as_bool(), web["quote"]["status"].as_str()), (Some(false), Some("failed")), "{web}");
    assert!(web["error"].as_str().unwrap().contains("the API's attestation carries none"), "{web}");
    // Without a PCCS it is said, and does not fail.
    assert!(t.run(&["verify"]).ok().stderr.contains("the TDX quote was not verified"));

    // The apply gate: the step fails and the CVM is marked unverified.
    t.env.insert("TEEFORM_PCCS_URL".into(), unreachable.into());
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n");
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("the TDX quote could not be verified"), "{}", r.stderr);
    let show = t.run(&["state", "show", "cvm.web"]).ok().stdout.clone();
    assert!(show.contains("unverified   = \"the TDX quote could not be verified"), "{show}");

    let bad = t.run(&["verify", "--pccs-url", "pccs.example"]);
    bad.code(1);
    assert!(bad.stderr.contains("--pccs-url: `pccs.example` is not a URL"), "{}", bad.stderr);
}

#[test]
fn an_os_image_other_than_the_planned_one_fails_the_gate_though_the_cvm_reports_it() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    image: dstack-0.5.5\n");
    // The CVM's detail and its attestation agree on another image: only the catalog's hash
    // for the planned image shows it.
    t.configure(serde_json::json!({"boot_other_image": ["web-main"]}));
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("os-image-hash: expected"), "{}", r.stderr);
    assert_eq!(t.count_exact("GET /api/v1/os-images"), 2, "the plan's image check and the gate's, once each");
    let v = t.run(&["verify"]);
    assert!(v.code(1).stdout.contains("os-image-hash: expected"), "{}", v.stdout);
    t.configure(serde_json::json!({"boot_other_image": []}));
    t.run(&["verify"]).ok();
}

/// Attestation requests the simulator has served so far.
fn attestations(t: &TestEnv) -> u64 {
    let requests = t.stats()["requests"].clone();
    requests
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with("/attestation"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum()
}

/// A change that boots nothing (a rename of replicas) checks no attestation and does not claim
/// to have verified one; a restart does.
#[test]
fn only_cvms_that_booted_are_attested_and_said_to_be() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    let two = |name: &str, vcpu: u32| {
        format!("cvms:\n  web:\n    name: {name}\n    compose: web.yml\n    vcpu: {vcpu}\n    replicas: 2\n")
    };
    t.manifest(&two("webxx", 1));
    t.run(&["apply", "--auto-approve"]).ok();
    let before = attestations(&t);
    t.manifest(&two("webyy", 1));
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("Resources: 0 added, 2 changed, 0 destroyed."), "{}", r.stderr);
    assert!(!r.stderr.contains("Attestations"), "{}", r.stderr);
    assert_eq!(attestations(&t), before, "nothing booted, nothing attested");
    t.manifest(&two("webyy", 2));
    let r = t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(r.stderr.contains("Attestations verified"), "{}", r.stderr);
    assert_eq!(attestations(&t), before + 2);
}

/// A CVM stopped on purpose has no attestation to give: `verify` lists it as stopped, asks
/// nothing of it, and does not fail for it.
#[test]
fn verify_reports_a_cvm_stopped_on_purpose_as_not_checked() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(&format!("{TWO}    power: stopped\n"));
    t.run(&["apply", "--auto-approve"]).ok();
    let before = attestations(&t);
    let v = t.run(&["verify"]);
    v.ok();
    assert!(v.stdout.contains("cvm.api  stopped"), "{}", v.stdout);
    assert!(v.stdout.contains("not checked: `power: stopped` keeps it stopped"), "{}", v.stdout);
    assert!(!v.stdout.contains("UNVERIFIED"), "{}", v.stdout);
    assert_eq!(v.stdout.matches(" verified ").count(), 1, "{}", v.stdout);
    let j = t.run(&["verify", "--json", "cvm.api"]);
    j.ok();
    let doc: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(doc["stopped"], serde_json::json!(["cvm.api"]));
    assert_eq!(doc["cvms"], serde_json::json!([]));
    assert!(!t.run(&["state", "show", "cvm.api"]).ok().stdout.contains("unverified"));
    assert_eq!(attestations(&t), before + 1, "cvm.web checked once, cvm.api never");
}
