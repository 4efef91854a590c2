//! The embedded simulator (`endpoint: local`): state and simulated cloud persist under
//! `state/`, so apply then plan is stable across runs.

use crate::harness::{TestEnv, WEB};

#[test]
fn local_endpoint_is_stable_across_runs() {
    let mut t = TestEnv::new();
    t.env.remove("PHALA_CLOUD_API_KEY");
    t.env.insert("TEEFORM_LOCAL_RESTART_MS".into(), "100".into());
    t.env.insert("TEEFORM_LOCAL_BOOT_MS".into(), "100".into());
    t.write("web.yml", WEB);
    t.write(
        "teeform.yaml",
        "provider:\n  phala:\n    endpoint: local\ncvms:\n  web:\n    name: web-local\n    compose: web.yml\n",
    );
    t.run(&["apply", "--auto-approve"]).ok();
    assert!(t.file_exists("state/local-sim.json"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains("No changes."));
    t.run(&["destroy", "--auto-approve"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(2);
}

#[test]
fn examples_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let t = TestEnv::new();
    for ex in std::fs::read_dir(&root).unwrap() {
        let dir = ex.unwrap().path();
        if dir.join("teeform.yaml").exists() {
            let r = t.run(&["-C", dir.to_str().unwrap(), "validate"]);
            r.ok();
        }
    }
}
