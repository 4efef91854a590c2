//! The convergence property (issue 14): for any manifest a user may write, whatever their
//! editor or YAML habits, one apply makes the simulator's CVMs exactly what the manifest says
//! (compose, pre-launch script and decrypted env, byte for byte), after which `plan` says
//! `No changes.` and a second apply sends no mutating request and restarts nothing.
//!
//! Manifests are generated from adversarial sets (number-like text, YAML 1.1 words,
//! empty and whitespace-only values, CRLF, BOM, NBSP and zero-width characters, quotes,
//! backslashes, `$`, `=`, newlines, non-ASCII, long values), written in each YAML style that
//! can carry them, in string fields, variable defaults, `${file:}` values, outputs and the
//! compose and pre-launch files. Each case runs the real binary against a fresh simulator over
//! HTTP. `cargo test` runs a handful of cases; `TEEFORM_CONVERGE_CASES=200` runs more.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use teeform::sim::SimConfig;

use crate::harness::TestEnv;

const BOM: &str = "\u{feff}";

/// Text users put in string values.
const ADVERSARIAL: &[&str] = &[
    // number-like
    "1.30",
    "1.20",
    "0755",
    "1e3",
    "0x1F",
    "+1",
    "-0",
    "1_000",
    ".inf",
    "12345678901234567890123",
    // YAML 1.1 words and other resolvable words
    "yes",
    "no",
    "on",
    "off",
    "y",
    "N",
    "true",
    "False",
    "NULL",
    "~",
    // empty and whitespace
    "",
    " ",
    " \t ",
    "\n",
    // line ends and invisible characters
    "a\r\nb",
    "line\r\n",
    "\u{feff}bom",
    "a\u{a0}b",
    "zero\u{200b}width",
    "e\u{301}",
    // quotes and escapes
    "say \"hi\"",
    "it's",
    "C:\\path\\to",
    "\\\"",
    "\\n",
    // shells and templates
    "$HOME",
    "$$",
    "${not_a_ref}",
    "cost: $5",
    "a=b",
    "KEY=VALUE==",
    // YAML indicators
    "#hash",
    "- item",
    "key: value",
    "[a, b]",
    "{a: 1}",
    "&anchor *alias !tag",
    "|pipe >fold %pct @at `tick`",
    // multi-line
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n",
    "two\n\nparagraphs",
    // non-ASCII
    "ünïcödé",
    "日本語",
    "😀 emoji",
];

/// A value: one or two adversarial pieces, or a long one.
fn value() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(ADVERSARIAL);
    prop_oneof![
        4 => piece.clone().prop_map(str::to_string),
        2 => (piece.clone(), piece).prop_map(|(a, b)| format!("{a}{b}")),
        1 => (prop::sample::select(ADVERSARIAL), 1000usize..6000).prop_map(|(a, n)| format!("{}{a}", "x".repeat(n))),
    ]
}

/// How a scalar is written in the manifest.
#[derive(Debug, Clone, Copy)]
enum Style {
    Double,
    Single,
    Plain,
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![Just(Style::Double), Just(Style::Single), Just(Style::Plain)]
}

/// A template's literal text: `${` is written `$${`.
fn template_text(v: &str) -> String {
    v.replace("${", "$${")
}

/// What YAML makes of `k: TEXT`, if it is one string.
fn yaml_string(text: &str) -> Option<String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(&format!("k: {text}\n")).ok()?;
    let doc = docs.first()?.as_hash()?;
    if doc.len() != 1 {
        return None;
    }
    doc.get(&yaml_rust2::Yaml::String("k".into()))?.as_str().map(str::to_string)
}

/// What a plain scalar `text` reads as under the YAML 1.2 core schema: a string, or a number,
/// or boolean that a string field must nevertheless take as written (`None`: null, or not
/// one plain scalar, so the writer quotes it).
fn plain_needs_fix(text: &str) -> Option<bool> {
    let docs = yaml_rust2::YamlLoader::load_from_str(&format!("k: {text}\n")).ok()?;
    let doc = docs.first()?.as_hash()?;
    let v = doc.get(&yaml_rust2::Yaml::String("k".into()))?;
    // The YAML 1.2 core schema's nulls (yaml-rust2 knows only `null` and `~`).
    if doc.len() != 1 || text.trim() != text || text.is_empty() || matches!(text, "Null" | "NULL") {
        return None;
    }
    match v {
        yaml_rust2::Yaml::String(s) if s == text => Some(false),
        yaml_rust2::Yaml::String(_) => None,
        yaml_rust2::Yaml::Integer(_) | yaml_rust2::Yaml::Real(_) | yaml_rust2::Yaml::Boolean(_) => Some(true),
        // Null, a list, a mapping: not a string in any reading, so the writer quotes it.
        _ => None,
    }
}

/// `text` as a YAML scalar in `style`, or in double quotes when that style cannot carry it
/// exactly.
fn scalar(text: &str, style: Style) -> String {
    let double = || {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        out.push('"');
        out
    };
    match style {
        Style::Double => double(),
        Style::Single => {
            let quoted = format!("'{}'", text.replace('\'', "''"));
            let printable =
                text.chars().all(|c| c == ' ' || (!c.is_control() && !c.is_whitespace() && c != '\u{feff}'));
            if printable && yaml_string(&quoted).as_deref() == Some(text) { quoted } else { double() }
        }
        Style::Plain => match plain_needs_fix(text) {
            Some(_) => text.to_string(),
            None => double(),
        },
    }
}

/// A file's text as the manifest reader hands it on.
fn as_read(text: &str) -> String {
    text.strip_prefix(BOM).unwrap_or(text).to_string()
}

/// A `${file:}` value as the manifest reader hands it on: one final line break is not part
/// of the value.
fn file_value(text: &str) -> String {
    let t = as_read(text);
    match t.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest).to_string(),
        None => t,
    }
}

/// Where an env value comes from.
#[derive(Debug, Clone)]
enum Source {
    Literal(String, Style),
    /// `pre${var.vN}post`, the variable's default in a style.
    Var(String, Style, String, String),
    /// `${file:envN.txt}` with this content.
    File(String),
}

#[derive(Debug, Clone)]
struct CvmCase {
    name: (String, Style),
    compose: String,
    script: Option<String>,
    env: Vec<Source>,
}

#[derive(Debug, Clone)]
struct Case {
    cvms: Vec<CvmCase>,
    outputs: Vec<(String, Style)>,
    crlf_manifest: bool,
    bom_manifest: bool,
}

/// A compose file: valid YAML with `services:`, carrying adversarial text in comments, a
/// quoted label and its whitespace, line ends and byte-order mark.
fn compose() -> impl Strategy<Value = String> {
    let comment = prop::sample::select(ADVERSARIAL)
        .prop_map(|s| template_free(&s.replace(['\n', '\r'], " ")))
        .prop_filter("printable", |s| !s.chars().any(|c| c.is_control() && c != '\t'));
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        comment,
        value(),
        prop::sample::select(vec!["", " ", "\t", "  \t"]),
        0usize..20_000,
    )
        .prop_map(|(bom, crlf, final_eol, comment, label, trailing, long)| {
            let label = scalar(&template_free(&label), Style::Double);
            let lines = [
                format!("# {comment}{trailing}"),
                "services:".to_string(),
                "  web:".to_string(),
                format!("    image: nginx:1.27{trailing}"),
                "    labels:".to_string(),
                format!("      note: {label}"),
                format!("# {}", "y".repeat(long)),
            ];
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = lines.join(eol);
            if final_eol {
                text.push_str(eol);
            }
            if bom { format!("{BOM}{text}") } else { text }
        })
}

/// Text for a compose file with every `$` doubled (docker compose's literal `$`), so no
/// interpolation needs a variable the env does not have (which the compose lint may refuse).
fn template_free(s: &str) -> String {
    s.replace('$', "$$")
}

fn script() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(String::new())),
        1 => prop::sample::select(vec![" ", "\n", " \t\n\n", "\r\n"]).prop_map(|s| Some(s.to_string())),
        3 => (any::<bool>(), any::<bool>(), prop::collection::vec(value(), 1..4)).prop_map(|(bom, crlf, lines)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let body: Vec<String> = lines.iter().map(|l| format!("echo '{}'", l.replace('\'', "'\\''"))).collect();
            Some(format!("{}#!/bin/sh{eol}{}{eol}", if bom { BOM } else { "" }, body.join(eol)))
        }),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        3 => (value(), style()).prop_map(|(v, s)| Source::Literal(v, s)),
        1 => (value(), style(), prop::sample::select(vec!["", "node-", "v"]), prop::sample::select(vec!["", "-x", "\n"]))
            .prop_map(|(v, s, pre, post)| Source::Var(v, s, pre.into(), post.into())),
        1 => (value(), prop::sample::select(vec!["", "\n", "\r\n", "\n\n"])).prop_map(|(v, eol)| Source::File(format!("{v}{eol}"))),
    ]
}

const NAMES: &[&str] = &["web-main", "false", "False", "FALSE", "e1000", "Infinity", "yes-no", "null-app", "True-1"];

fn case() -> impl Strategy<Value = Case> {
    let cvm = ((prop::sample::select(NAMES), style()), compose(), script(), prop::collection::vec(source(), 0..5))
        .prop_map(|((n, s), compose, script, env)| CvmCase { name: (n.to_string(), s), compose, script, env });
    (prop::collection::vec(cvm, 1..=2), prop::collection::vec((value(), style()), 0..3), any::<bool>(), any::<bool>())
        .prop_map(|(mut cvms, outputs, crlf_manifest, bom)| {
            // Names are unique in an account.
            let mut seen = std::collections::BTreeSet::new();
            cvms.retain(|c| seen.insert(c.name.0.to_ascii_lowercase()));
            Case { cvms, outputs, crlf_manifest, bom_manifest: bom }
        })
}

/// What one CVM must end up with.
struct Expected {
    compose: String,
    script: Option<String>,
    env: BTreeMap<String, String>,
}

/// Writes the case's files and manifest; returns what each CVM (by name) must get and the
/// outputs' values.
fn write_case(t: &TestEnv, case: &Case) -> (BTreeMap<String, Expected>, BTreeMap<String, String>) {
    let mut m = String::new();
    let mut vars = String::new();
    let mut want = BTreeMap::new();
    for (i, c) in case.cvms.iter().enumerate() {
        let compose_file = format!("c{i}.yml");
        t.write(&compose_file, &c.compose);
        m.push_str(&format!("  c{i}:\n    name: {}\n    compose: {compose_file}\n", scalar(&c.name.0, c.name.1)));
        if let Some(s) = &c.script {
            let f = format!("pre{i}.sh");
            t.write(&f, s);
            m.push_str(&format!("    pre_launch_script: {f}\n"));
        }
        let mut env = BTreeMap::new();
        if !c.env.is_empty() {
            m.push_str("    env:\n");
        }
        for (k, src) in c.env.iter().enumerate() {
            let key = format!("K{k}");
            let (text, expected) = match src {
                Source::Literal(v, s) => (scalar(&template_text(v), *s), v.clone()),
                Source::Var(v, s, pre, post) => {
                    let var = format!("v{i}_{k}");
                    vars.push_str(&format!("  {var}:\n    default: {}\n", scalar(v, *s)));
                    let t = format!("{}${{var.{var}}}{}", template_text(pre), template_text(post));
                    (scalar(&t, Style::Double), format!("{pre}{v}{post}"))
                }
                Source::File(content) => {
                    let f = format!("env{i}_{k}.txt");
                    t.write(&f, content);
                    (format!("\"${{file:{f}}}\""), file_value(content))
                }
            };
            m.push_str(&format!("      {key}: {text}\n"));
            env.insert(key, expected);
        }
        let script = c.script.as_deref().map(as_read).filter(|s| !s.is_empty());
        want.insert(c.name.0.clone(), Expected { compose: as_read(&c.compose), script, env });
    }
    let mut outputs = BTreeMap::new();
    let mut out = String::new();
    for (i, (v, s)) in case.outputs.iter().enumerate() {
        out.push_str(&format!("  o{i}: {}\n", scalar(&template_text(v), *s)));
        outputs.insert(format!("o{i}"), v.clone());
    }
    let mut text = format!("provider:\n  phala:\n    endpoint: {}\n", t.prefix());
    if !vars.is_empty() {
        text.push_str(&format!("variables:\n{vars}"));
    }
    text.push_str(&format!("cvms:\n{m}"));
    if !out.is_empty() {
        text.push_str(&format!("outputs:\n{out}"));
    }
    if case.crlf_manifest {
        text = text.replace('\n', "\r\n");
    }
    if case.bom_manifest {
        text.insert_str(0, BOM);
    }
    t.write("teeform.yaml", &text);
    (want, outputs)
}

/// Requests that may change something (everything but GET) the simulator has answered.
fn mutating(t: &TestEnv) -> BTreeMap<String, u64> {
    let stats = t.stats();
    stats["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with("GET "))
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn restarts(t: &TestEnv) -> BTreeMap<String, (u64, u64)> {
    let stats = t.stats();
    stats["cvms"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (v["restarts"].as_u64().unwrap(), v["updates"].as_u64().unwrap())))
        .collect()
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($msg)+)));
        }
    };
}

fn converges(case: &Case) -> Result<(), TestCaseError> {
    let t = TestEnv::with_config(SimConfig { restart_ms: 50, boot_ms: 50, ..Default::default() });
    let (want, outputs) = write_case(&t, case);
    let manifest = std::fs::read_to_string(t.path("teeform.yaml")).unwrap();
    let a = t.run(&["apply", "--auto-approve"]);
    check!(a.code == 0, "apply failed\nmanifest:\n{manifest}\nstderr:\n{}", a.stderr);

    // What each CVM got is what the manifest says.
    for (name, w) in &want {
        let (s, app) = t.api("GET", &format!("/cvms/{name}/compose_file"), None);
        check!(s == 200, "{name}: {app}");
        check!(
            app["docker_compose_file"] == w.compose.as_str(),
            "{name}: compose differs\n got: {:?}\nwant: {:?}",
            app["docker_compose_file"],
            w.compose
        );
        check!(
            app.get("pre_launch_script").and_then(|v| v.as_str()) == w.script.as_deref(),
            "{name}: pre-launch script differs\n got: {:?}\nwant: {:?}",
            app.get("pre_launch_script"),
            w.script
        );
        let uuid = t.api("GET", &format!("/cvms/{name}"), None).1["vm_uuid"].as_str().unwrap().to_string();
        let env = t.sim_get(&format!("/_sim/cvms/{uuid}/env"));
        let got: BTreeMap<String, String> =
            env["env"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        check!(got == w.env, "{name}: env differs\n got: {got:?}\nwant: {:?}\nmanifest:\n{manifest}", w.env);
        let keys: Vec<&String> = w.env.keys().collect();
        check!(env["allowed_envs"] == serde_json::json!(keys), "{name}: allowed_envs {}", env["allowed_envs"]);
    }
    if !outputs.is_empty() {
        let o = t.run(&["output", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
        for (k, want) in &outputs {
            check!(v[k]["value"] == want.as_str(), "output {k}: got {}, want {want:?}", v[k]["value"]);
        }
    }

    // The plan settles.
    let p = t.run(&["plan", "--detailed-exitcode"]);
    check!(
        p.code == 0 && p.stdout.contains("No changes."),
        "plan after apply is not empty\nmanifest:\n{manifest}\nstdout:\n{}\nstderr:\n{}",
        p.stdout,
        p.stderr
    );

    // A second apply changes nothing: no mutating request, no update, no restart.
    let (m0, r0) = (mutating(&t), restarts(&t));
    let a = t.run(&["apply", "--auto-approve"]);
    check!(a.code == 0, "second apply failed: {}", a.stderr);
    let (m1, r1) = (mutating(&t), restarts(&t));
    check!(m0 == m1, "the second apply sent mutating requests: before {m0:?}, after {m1:?}");
    check!(r0 == r1, "the second apply restarted or updated a CVM: before {r0:?}, after {r1:?}");
    check!(r1.values().all(|(restarts, _)| *restarts == 0), "a CVM restarted: {r1:?}");
    Ok(())
}

fn cases() -> u32 {
    std::env::var("TEEFORM_CONVERGE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(6)
}

#[test]
fn every_manifest_converges_after_one_apply() {
    let config = Config {
        cases: cases(),
        // Each case runs the binary four to six times; keep shrinking bounded.
        max_shrink_iters: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&case(), |c| converges(&c)) {
        panic!("{e}");
    }
}

#[test]
fn the_scalar_writer_round_trips_through_yaml() {
    // The test's own YAML writer must be right for the property to mean anything: every
    // value in every style reads back as itself (a plain scalar YAML would resolve to a
    // number or boolean is the manifest reader's business).
    for v in ADVERSARIAL.iter().map(|v| v.to_string()).chain([format!("{}\u{feff}", "x".repeat(3000))]) {
        for s in [Style::Double, Style::Single, Style::Plain] {
            let text = scalar(&v, s);
            if plain_needs_fix(&text) == Some(true) {
                assert!(text == v, "{v:?} as {s:?}: {text}");
                continue;
            }
            assert_eq!(yaml_string(&text).as_deref(), Some(v.as_str()), "{v:?} as {s:?}: {text}");
        }
    }
}
