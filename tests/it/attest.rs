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
