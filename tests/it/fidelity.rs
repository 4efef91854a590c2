//! Plan fidelity end to end: what the manifest says is what the simulator's CVM gets, and a
//! plan after apply is empty (issue 14: empty vs absent, env values with escapes).

use crate::harness::{TestEnv, WEB};

fn vm_uuid(t: &TestEnv, name: &str) -> String {
    t.api("GET", &format!("/cvms/{name}"), None).1["vm_uuid"].as_str().unwrap().to_string()
}

#[test]
fn an_empty_pre_launch_script_settles_and_removing_it_restarts_nothing() {
    let t = TestEnv::new();
    t.write("web.yml", WEB).write("empty.sh", "");
    let manifest = "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    pre_launch_script: empty.sh\n";
    t.manifest(manifest);
    let a = t.run(&["apply", "--auto-approve"]);
    a.ok();
    assert!(!a.stderr.contains("differs from the preview"), "the preview hashes what the API stores: {}", a.stderr);
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains("No changes.") && !p.stdout.contains("outside of teeform"), "{}", p.stdout);
    let patches = t.count("PATCH /api/v1/cvms/");
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.count("PATCH /api/v1/cvms/"), patches, "a second apply sends nothing");
    assert_eq!(t.cvm_stat("web-main", "restarts"), 0);
    // Removing the empty script changes nothing the CVM has.
    t.manifest(&manifest.replace("    pre_launch_script: empty.sh\n", ""));
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// Values a JSON encoder escapes, written as YAML double-quoted scalars (which this test
/// escapes itself), reach the CVM byte for byte on create and on update.
#[test]
fn env_values_with_escapes_reach_the_cvm_byte_for_byte() {
    let values = [
        "say \"hi\"",
        "C:\\path\\to",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\n",
        "a\tb",
        "crlf\r\n",
        "ünïcödé 日本語 😀",
        "\u{a0}nbsp\u{200b}zwsp\u{feff}",
        "",
        " ",
    ];
    let yaml = |vals: &[&str]| {
        let mut m = "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    env:\n".to_string();
        for (i, v) in vals.iter().enumerate() {
            m.push_str(&format!("      K{i}: {}\n", yaml_quoted(v)));
        }
        m
    };
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(&yaml(&values));
    t.run(&["apply", "--auto-approve"]).ok();
    let got = t.sim_get(&format!("/_sim/cvms/{}/env", vm_uuid(&t, "web-main")));
    for (i, v) in values.iter().enumerate() {
        assert_eq!(got["env"][format!("K{i}")], *v, "K{i}");
    }
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    // An update re-encrypts the whole set.
    let mut next = values;
    next[0] = "\\\"";
    t.manifest(&yaml(&next));
    t.run(&["apply", "--auto-approve"]).ok();
    let got = t.sim_get(&format!("/_sim/cvms/{}/env", vm_uuid(&t, "web-main")));
    for (i, v) in next.iter().enumerate() {
        assert_eq!(got["env"][format!("K{i}")], *v, "K{i} after update");
    }
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A YAML double-quoted scalar for any string: `"`, `\` and every character outside
/// printable ASCII escaped, and `${` written as teeform's literal `$${`.
pub fn yaml_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.replace("${", "$${").chars() {
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
}
