//! Property tests for the manifest parser (the CI-sized companion of `fuzz/`): whatever the
//! input, loading returns a config or diagnostics, and rendering those never panics.

use std::sync::Arc;

use proptest::prelude::*;
use teeform::manifest::{LoadOptions, load_str};

fn load(text: &str) {
    let dir = std::env::temp_dir().join("teeform-props");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("web.yml"), "services:\n  web:\n    image: nginx\n");
    let opts = LoadOptions {
        vars: vec![("x".into(), "1".into())],
        env: Arc::new(|k| (k == "HOME").then(|| "/h".into())),
        display_base: Some(dir.clone()),
    };
    match load_str(&dir.join("teeform.yaml"), text.to_string(), &opts) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                let _ = w.render(true);
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty(), "an error always comes with a diagnostic");
            for d in &e.diagnostics {
                let _ = d.render(true);
                let _ = d.render(false);
                let _ = d.location();
            }
        }
    }
}

/// Manifest-shaped YAML: real keys, near-miss keys, odd values, references good and bad.
fn manifestish() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "compose",
        "vcpu",
        "vcpus",
        "memory",
        "disk_size",
        "instance_type",
        "node",
        "image",
        "kms",
        "env",
        "gpus",
        "depends_on",
        "public_logs",
        "gateway",
        "pre_launch_script",
        "shutdown_timeout",
        "allow_force_stop",
        "ü",
        "",
    ]);
    let value = prop::sample::select(vec![
        "web.yml",
        "missing.yml",
        "2",
        "-1",
        "1e99",
        "true",
        "null",
        "~",
        "\"${var.x}\"",
        "${var.y}",
        "${cvm.web.app_id}",
        "${cvm.zz.nope}",
        "${secret:env:HOME}",
        "${env:NOPE}",
        "${",
        "}",
        "[a, b]",
        "{a: 1}",
        "[",
        "\"unterminated",
        "base",
        "{chain: base}",
        "{chain: 0}",
        "'${file:web.yml}'",
        "&a x",
        "*a",
        "!!binary aGk=",
        "0x10",
    ]);
    let field = (key, value).prop_map(|(k, v)| format!("    {k}: {v}\n"));
    let cvm = (prop::sample::select(vec!["web", "api-main", "db", "x"]), prop::collection::vec(field, 0..8))
        .prop_map(|(name, fields)| format!("  {name}:\n{}", fields.concat()));
    let top = prop::sample::select(vec![
        "",
        "variables:\n  x: 1\n",
        "provider:\n  phala:\n    endpoint: local\n",
        "outputs:\n  o: ${cvm.web.id}\n",
        "data: {}\n",
        "cvms: 3\n",
    ]);
    (top, prop::collection::vec(cvm, 0..4)).prop_map(|(t, cvms)| format!("{t}cvms:\n{}", cvms.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        load(&text);
    }

    #[test]
    fn manifest_shaped_input_never_panics(text in manifestish()) {
        load(&text);
    }
}
