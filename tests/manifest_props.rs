//! Property tests for the manifest parser (the CI-sized companion of `fuzz/`): whatever the
//! input, loading returns a config or diagnostics, and rendering those never panics; and any
//! text a user writes in a string field is loaded exactly as YAML defines the string (plain:
//! as written; quoted: unescaped), checked against libyaml (serde_yaml) as an oracle.

use std::collections::BTreeMap;
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
        ..Default::default()
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
        "lint",
        "lifecycle",
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
        "!!str 0755",
        "!local x",
        "0755",
        ".inf",
        "yes",
        "1_000",
        "{ignore: [A]}",
        "${file:/dev/zero}",
        "${file:../x}",
        "${env:PRIVATE_KEY}",
        "\"\\x01\"",
        "*nope",
        "{prevent_destroy: true}",
        "{prevent_destroy: maybe, x: 1}",
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
        "allowed_dirs: [..]\n",
        "allowed_dirs: x\n",
        "a: &a [x, x]\nb: &b [*a, *a]\n",
        "moved:\n  - {from: cvm.old, to: cvm.web}\n",
        "moved:\n  - {from: cvm.a, to: cvm.b}\n  - {from: cvm.b, to: cvm.a}\n",
        "moved:\n  - {from: cvm.x, to: cvm.db}\n  - {from: cvm.web, to: web}\n  - to: cvm.api-main\n",
        "moved: [1, [], {from: {}}]\n",
    ]);
    (top, prop::collection::vec(cvm, 0..4)).prop_map(|(t, cvms)| format!("{t}cvms:\n{}", cvms.concat()))
}

/// Pieces users write: number-like text, YAML 1.1 words, whitespace and invisible
/// characters, quotes, backslashes, `$`, `=`, line breaks, non-ASCII, a byte-order mark.
fn piece() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "1.30",
        "1.3",
        "0755",
        "1e3",
        "1E-7",
        ".inf",
        "-.inf",
        ".nan",
        "0x1F",
        "0o17",
        "1_000",
        "+1",
        "-0",
        "2.50",
        "007",
        "123456789012345678901234567890",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "True",
        "false",
        "null",
        "~",
        "Null",
        "x",
        "node",
        "a=b",
        "$",
        "$$",
        "$x",
        "${",
        "}",
        "{",
        "[",
        "]",
        ",",
        "#",
        ":",
        "'",
        "\"",
        "\\",
        "\\n",
        "\t",
        "\n",
        "\r\n",
        " ",
        "  ",
        "\u{a0}",
        "\u{200b}",
        "\u{feff}",
        "\u{85}",
        "\u{2028}",
        "é",
        "日本",
        "🙂",
        "\u{1}",
        "\u{7f}",
        "%",
        "@",
        "`",
        "!",
        "&",
        "*",
        "-",
        "?",
        "|",
        ">",
    ]);
    prop_oneof![words.prop_map(str::to_string), "[a-zA-Z0-9 ._/-]{1,6}", any::<char>().prop_map(|c| c.to_string())]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..6).prop_map(|p| p.concat())
}

/// How `s` is written so that `${` is literal (teeform's escape is `$${`).
fn literal_dollars(s: &str) -> String {
    s.replace("${", "$${")
}

/// YAML double-quoted form of `s`: every character that is not plain printable ASCII or
/// ordinary non-ASCII is escaped.
fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if c >= '\u{a0}' && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}') => {
                out.push(c)
            }
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// YAML single-quoted form, for text without line breaks or characters YAML forbids.
fn single_quoted(s: &str) -> Option<String> {
    let printable = |c: char| {
        matches!(c, '\t' | ' '..='~')
            || (c >= '\u{a0}' && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'))
    };
    s.chars().all(printable).then(|| format!("'{}'", s.replace('\'', "''")))
}

/// The text as a block-context plain scalar, when YAML allows writing it so and it is not
/// null (null is not a string: an error in a string field, tested elsewhere).
fn plain(s: &str) -> Option<String> {
    let ok_char = |c: char| {
        matches!(c, ' '..='~')
            || (c >= '\u{a0}'
                && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' | '\u{85}'))
    };
    let first_ok = s.chars().next().is_some_and(|c| !"-?:,[]{}#&*!|>'\"%@` ".contains(c));
    let safe = first_ok
        && s.chars().all(ok_char)
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !matches!(s, "null" | "Null" | "NULL" | "~");
    safe.then(|| s.to_string())
}

/// Loads a manifest whose CVM has env `K` written as `written` (and a variable `v` with
/// default `default`, used as `x${var.v}` in env `V`); returns K and V.
fn env_values(written: &str, default: &str, var: Option<&str>) -> Result<(String, String), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.yml"), "services:\n  web:\n    image: nginx\n").unwrap();
    let m = format!(
        "variables:\n  v:\n    type: string\n    default: {default}\ncvms:\n  web:\n    name: web-app\n    compose: web.yml\n    lint: {{ignore: [K, V]}}\n    env:\n      K: {written}\n      V: x${{var.v}}\n"
    );
    let opts = LoadOptions {
        vars: var.map(|v| vec![("v".to_string(), v.to_string())]).unwrap_or_default(),
        env: Arc::new(|_| None),
        display_base: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    match load_str(&dir.path().join("teeform.yaml"), m, &opts) {
        Ok(c) => {
            let env = &c.cvms["web"].env;
            Ok((env["K"].as_literal().unwrap(), env["V"].as_literal().unwrap()))
        }
        Err(e) => Err(e.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")),
    }
}

/// What libyaml says the scalar is, as a string.
fn oracle(written: &str) -> String {
    let m: BTreeMap<String, String> = serde_yaml::from_str(&format!("k: {written}\n")).expect("libyaml reads it");
    m["k"].clone()
}

fn check_written(written: &str, s: &str) -> Result<(), TestCaseError> {
    let escaped = literal_dollars(s);
    prop_assert_eq!(oracle(written), escaped.clone(), "the oracle agrees on how {:?} is written", written);
    let got = env_values(written, written, None).map_err(TestCaseError::fail)?;
    prop_assert_eq!(&got.0, s, "env K written {:?}", written);
    // A variable default is a literal: the YAML string itself, `$${` and all.
    prop_assert_eq!(got.1, format!("x{escaped}"), "a variable default written {:?}", written);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn double_quoted_strings_are_unescaped_exactly(s in text()) {
        check_written(&double_quoted(&literal_dollars(&s)), &s)?;
    }

    #[test]
    fn single_quoted_strings_are_read_exactly(s in text()) {
        if let Some(w) = single_quoted(&literal_dollars(&s)) {
            check_written(&w, &s)?;
        }
    }

    #[test]
    fn plain_strings_are_read_as_written(s in text()) {
        if let Some(w) = plain(&literal_dollars(&s)) {
            check_written(&w, &s)?;
        }
    }

    #[test]
    fn var_overrides_are_taken_as_given(s in text()) {
        // --var values are not YAML: the text is the value, `${` and all.
        let got = env_values("k", "d", Some(&s)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(got.1, format!("x{s}"));
    }
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
