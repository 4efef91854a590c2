//! `env_file:` end to end on the simulator: what the CVM gets is what docker compose would read
//! from the files; an apply converges (`No changes.`); a secret file's values are digested and
//! never written or printed; changing one secret value is exactly one change.

use crate::harness::{TestEnv, WEB};

const MANIFEST: &str = "cvms:
  web:
    name: web-envfile
    compose: web.yml
    env_file:
      - .env
      - {path: secrets.env, secret: true}
    env:
      MODE: from-manifest
";

fn files(t: &TestEnv, password: &str) {
    t.write(
        "web.yml",
        &format!(
            "{WEB}    environment:\n      - API_URL=${{API_URL}}\n      - GREETING=${{GREETING}}\n      - MODE=${{MODE}}\n      - DB_PASSWORD=${{DB_PASSWORD}}\n      - TOKEN=${{TOKEN}}\n      - CERT=${{CERT}}\n"
        ),
    );
    t.write(
        ".env",
        "# plain settings\r\nexport API_URL=https://api.example.com/v1 # the API\r\nGREETING=\"hello # world\\tand ${API_URL}\"\r\nMODE=from-env-file\r\n",
    );
    t.write(
        "secrets.env",
        &format!("\u{feff}DB_PASSWORD='{password}'\nTOKEN=\"tok-$$-{password}\"\nCERT=\"-----BEGIN-----\nAAAA\n-----END-----\"\n"),
    );
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { walk(&p, out) } else { out.push(p) }
    }
}

#[test]
fn env_files_reach_the_cvm_converge_and_keep_secrets_out_of_state_and_output() {
    let canary = format!("CANARY{}", uuid::Uuid::new_v4().simple());
    let t = TestEnv::new();
    files(&t, &canary);
    t.manifest(MANIFEST);
    let plan = t.run(&["plan", "--out", "saved.plan"]);
    plan.ok();
    assert!(plan.stdout.contains("API_URL = \"https://api.example.com/v1\""), "{}", plan.stdout);
    assert!(plan.stdout.contains("DB_PASSWORD = (sensitive value)"), "{}", plan.stdout);
    let apply = t.run(&["apply", "saved.plan"]);
    apply.ok();

    // The CVM got exactly what docker compose reads from the files; `env:` won over them.
    let id = t.api("GET", "/cvms/web-envfile", None).1["vm_uuid"].as_str().unwrap().to_string();
    let env = t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"].clone();
    assert_eq!(env["API_URL"], "https://api.example.com/v1");
    assert_eq!(env["GREETING"], "hello # world\tand https://api.example.com/v1");
    assert_eq!(env["MODE"], "from-manifest");
    assert_eq!(env["DB_PASSWORD"], canary.as_str());
    assert_eq!(env["TOKEN"], format!("tok-$-{canary}").as_str());
    assert_eq!(env["CERT"], "-----BEGIN-----\nAAAA\n-----END-----");

    let again = t.run(&["plan", "--detailed-exitcode"]);
    again.code(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    let shown = [t.run(&["show", "--json"]), t.run(&["show", "saved.plan", "--json"]), t.run(&["plan", "--json"])];

    // Not in the state, the saved plan or any output.
    let needles = [canary.clone(), hex::encode(&canary)];
    let mut written = Vec::new();
    walk(&t.path("state"), &mut written);
    written.push(t.path("saved.plan"));
    let mut hits = Vec::new();
    for f in &written {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        hits.extend(needles.iter().filter(|n| text.contains(n.as_str())).map(|_| f.display().to_string()));
    }
    for r in [&plan, &apply, &again].into_iter().chain(shown.iter()) {
        hits.extend(needles.iter().filter(|n| r.stdout.contains(n.as_str()) || r.stderr.contains(n.as_str())).cloned());
    }
    assert!(written.len() >= 3, "{written:?}");
    assert!(hits.is_empty(), "the secret leaked: {hits:?}");
}

#[test]
fn changing_one_secret_value_in_an_env_file_is_exactly_one_change() {
    let t = TestEnv::new();
    files(&t, "first-password");
    t.manifest(MANIFEST);
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["plan", "--detailed-exitcode"]).code(0);
    let before = t.cvm_stat("web-envfile", "restarts").as_u64().unwrap();

    // Only DB_PASSWORD changes: TOKEN is written out as it was.
    let text = std::fs::read_to_string(t.path("secrets.env")).unwrap();
    t.write("secrets.env", &text.replacen("DB_PASSWORD='first-password'", "DB_PASSWORD='second-password'", 1));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("~ DB_PASSWORD = (sensitive value) (changed)"), "{}", p.stdout);
    assert_eq!(p.stdout.matches("(changed)").count(), 1, "{}", p.stdout);
    assert!(p.stdout.contains("0 to add, 1 to change, 0 to destroy"), "{}", p.stdout);
    assert!(!p.stdout.contains("second-password"), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(t.cvm_stat("web-envfile", "restarts").as_u64().unwrap(), before + 1);
    let id = t.api("GET", "/cvms/web-envfile", None).1["vm_uuid"].as_str().unwrap().to_string();
    assert_eq!(t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"]["DB_PASSWORD"], "second-password");
    t.run(&["plan", "--detailed-exitcode"]).code(0);

    // A plain value changed in the .env shows as it is.
    let text = std::fs::read_to_string(t.path(".env")).unwrap();
    t.write(".env", &text.replace("MODE=from-env-file", "MODE=other").replace("/v1 #", "/v2 #"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains("\"https://api.example.com/v1\" -> \"https://api.example.com/v2\""), "{}", p.stdout);
    assert!(!p.stdout.contains("MODE"), "env: wins, so MODE did not change: {}", p.stdout);

    // A broken env file: the error names its line and column, and nothing changes.
    t.write("secrets.env", "DB_PASSWORD='unterminated\n");
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("secrets.env:1:13"), "{}", r.stderr);
    assert!(!r.stderr.contains("unterminated"), "{}", r.stderr);
}

/// Every way a secret env file can be wrong, each line holding a canary where a value's bytes
/// are: `validate`, `plan` and `apply`, in text and JSON, name lines and keys, never the canary;
/// `plan --json` writes the diagnostics as `validate --json` does.
#[test]
fn a_broken_secret_env_file_prints_none_of_its_values() {
    let canary = format!("CANARY{}", uuid::Uuid::new_v4().simple());
    let lines = [
        format!("DBPASS=hunter2${canary}"),
        format!("B=x${{{canary}}}"),
        format!("C=\"abc\"{canary}"),
        format!("D=${{NOPE:?{canary}msg}}"),
        format!("E=${{{canary}?}}"),
        format!("F=${{{canary}:x}}"),
        format!("G=${{A:-${{{canary}}}}}"),
        canary.clone(),
        format!("{canary}*x=1"),
        format!("{canary} x=1"),
        format!("{canary}.x=1"),
        format!("=x{canary}"),
        format!("{}{canary}{}", "H=${A:-".repeat(40), "}".repeat(40)),
        format!("LAST=\"{canary} never closed"),
    ];
    let t = TestEnv::new();
    files(&t, "pw");
    t.write("secrets.env", &(lines.join("\n") + "\n"));
    t.manifest(MANIFEST);
    let runs = [
        t.run(&["validate"]),
        t.run(&["validate", "--json"]),
        t.run(&["plan"]),
        t.run(&["plan", "--json"]),
        t.run(&["plan", "--json", "--stream"]),
        t.run(&["apply", "--json", "--auto-approve"]),
    ];
    for r in &runs {
        r.code(1);
        assert!(!r.stdout.contains(&canary) && !r.stderr.contains(&canary), "leaked:\n{}\n{}", r.stdout, r.stderr);
        assert!(!r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"), "{}\n{}", r.stdout, r.stderr);
        assert!(!r.stderr.contains("has no env key"), "no cascade: {}", r.stderr);
    }
    // One error per line; `plan --json` says so on stdout, in `validate --json`'s shape.
    let doc =
        |r: &crate::harness::Run| serde_json::from_str::<serde_json::Value>(&r.stdout).expect("one JSON document");
    let (validated, planned) = (doc(&runs[1]), doc(&runs[3]));
    assert_eq!(validated, planned);
    assert_eq!(planned["valid"], false);
    assert_eq!(planned["error_count"], lines.len(), "{planned:#}");
    let mut at: Vec<(u64, String)> = planned["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["file"].as_str().unwrap().to_string()))
        .collect();
    at.sort();
    assert_eq!(at, (1..=lines.len() as u64).map(|l| (l, "secrets.env".to_string())).collect::<Vec<_>>());
    assert!(planned["diagnostics"][0]["message"].as_str().unwrap().contains("`DBPASS`'s value"), "{planned:#}");
}
