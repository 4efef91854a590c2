//! The habits users bring from Terraform: `--var-file`, one-dash flags, `TF_VAR_*`.

use crate::harness::{TestEnv, WEB};

fn project() -> TestEnv {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(
        "variables:\n  web_vcpu:\n    type: number\n    default: 1\n  region:\n    default: eu\ncvms:\n  web:\n    name: web-${var.region}\n    compose: web.yml\n    vcpu: ${var.web_vcpu}\n",
    );
    t
}

/// The planned `vcpu` and `name` of `cvm.web`.
fn planned(t: &TestEnv, args: &[&str]) -> (serde_json::Value, String) {
    let mut a = vec!["plan", "--json"];
    a.extend_from_slice(args);
    let r = t.run(&a);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("plan JSON");
    let after = &v["resource_changes"][0]["after"];
    (after["vcpu"].clone(), after["name"].as_str().unwrap_or_default().to_string())
}

#[test]
fn var_files_are_read_in_order_and_var_wins() {
    let t = project();
    t.write("prod.tfvars", "# production\nweb_vcpu = 4\nregion = \"us\" // where\n");
    t.write("big.yaml", "web_vcpu: 8\n");
    assert_eq!(planned(&t, &[]), (serde_json::json!(1), "web-eu".into()));
    assert_eq!(planned(&t, &["--var-file", "prod.tfvars"]), (serde_json::json!(4), "web-us".into()));
    // A later file wins; `--var` wins over every file, wherever it is written.
    assert_eq!(
        planned(&t, &["--var-file", "prod.tfvars", "--var-file", "big.yaml"]),
        (serde_json::json!(8), "web-us".into())
    );
    assert_eq!(
        planned(&t, &["--var", "web_vcpu=2", "--var-file", "big.yaml"]),
        (serde_json::json!(2), "web-eu".into())
    );
    // A file wins over the environment, as in Terraform.
    let mut t = t;
    t.env.insert("TEEFORM_VAR_web_vcpu".into(), "6".into());
    assert_eq!(planned(&t, &[]).0, serde_json::json!(6));
    assert_eq!(planned(&t, &["--var-file", "big.yaml"]).0, serde_json::json!(8));
}

#[test]
fn auto_var_files_beside_the_manifest_are_read_first() {
    let t = project();
    t.write("b.auto.vars.yaml", "web_vcpu: 3\n");
    t.write("a.auto.vars.yaml", "web_vcpu: 2\nunrelated: x\n");
    assert_eq!(planned(&t, &[]).0, serde_json::json!(3), "name order: b wins over a");
    t.write("x.tfvars", "web_vcpu = 5\n");
    assert_eq!(planned(&t, &["--var-file", "x.tfvars"]).0, serde_json::json!(5));
    // A value for an undeclared variable in an automatic file says nothing (it may serve
    // several manifests).
    let r = t.run(&["validate"]);
    r.ok();
    assert!(!r.stderr.contains("unrelated"), "{}", r.stderr);
}

#[test]
fn a_bad_var_file_is_an_error_at_its_line_and_column() {
    let t = project();
    t.write("bad.tfvars", "region = \"us\"\nweb_vcpu = four\ntags = [\"a\"]\n");
    let r = t.run(&["plan", "--var-file", "bad.tfvars"]);
    r.code(1);
    assert!(r.stderr.contains("bad.tfvars:2:12"), "{}", r.stderr);
    assert!(r.stderr.contains("variable `web_vcpu` is a number"), "{}", r.stderr);
    assert!(r.stderr.contains("bad.tfvars:3:8"), "{}", r.stderr);
    assert!(r.stderr.contains("lists, maps and heredocs"), "{}", r.stderr);
    let r = t.run(&["plan", "--var-file", "missing.tfvars"]);
    r.code(1);
    assert!(r.stderr.contains("cannot read the variable file missing.tfvars"), "{}", r.stderr);
    // A misspelt name in a named file is a warning with a suggestion, and the plan goes on.
    t.write("typo.yaml", "web_vcpus: 2\n");
    let r = t.run(&["validate", "--var-file", "typo.yaml"]);
    r.ok();
    assert!(r.stderr.contains("typo.yaml:1:12") && r.stderr.contains("did you mean `web_vcpu`?"), "{}", r.stderr);
}

#[test]
fn terraform_one_dash_spellings_work() {
    let t = project();
    t.write("prod.tfvars", "web_vcpu = 4\n");
    let r = t.run(&[
        "plan",
        "-var-file=prod.tfvars",
        "-var",
        "region=us",
        "-out=p.bin",
        "-detailed-exitcode",
        "-input=false",
    ]);
    r.code(2);
    assert!(t.file_exists("p.bin"), "{}", r.stderr);
    let r = t.run(&["show", "-json", "p.bin"]);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["resource_changes"][0]["after"]["vcpu"], 4);
    assert_eq!(v["resource_changes"][0]["after"]["name"], "web-us");
    t.run(&["apply", "-auto-approve", "-lock-timeout=5s", "p.bin"]).ok();
    t.run(&["-chdir=.", "plan", "-detailed-exitcode", "-var=web_vcpu=4", "-var", "region=us"]).code(0);
}

#[test]
fn terraform_flags_teeform_lacks_are_answered_with_what_to_type() {
    let t = project();
    for (args, want) in [
        (&["apply", "-lock=false"][..], "--lock-timeout"),
        (&["plan", "-var-fil", "x"], "did you mean `--var-file`?"),
        (&["plan", "--detailed-exitcod"], "did you mean `--detailed-exitcode`?"),
    ] {
        let r = t.run(args);
        r.code(1);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        // clap's own tip guesses at unrelated flags (`--target` → `--state`).
        assert!(!r.stderr.contains("--state"), "{args:?}: {}", r.stderr);
    }
    // Terraform's `-target` and `-replace` are teeform's `--target` and `--replace`.
    let r = t.run(&["plan", "-target=cvm.web"]);
    r.ok();
    assert!(r.stdout.contains("targeting is in effect"), "{}", r.stdout);
}

#[test]
fn tf_var_is_answered_with_a_hint_when_teeform_var_is_unset() {
    let mut t = project();
    t.env.insert("TF_VAR_web_vcpu".into(), "4".into());
    let r = t.run(&["plan"]);
    r.ok();
    assert!(r.stderr.contains("TF_VAR_web_vcpu is set, but teeform reads TEEFORM_VAR_web_vcpu"), "{}", r.stderr);
    assert!(r.stderr.contains("export TEEFORM_VAR_web_vcpu=\"$TF_VAR_web_vcpu\""), "{}", r.stderr);
    // With the value given teeform's way, nothing to say.
    t.env.insert("TEEFORM_VAR_web_vcpu".into(), "4".into());
    let r = t.run(&["plan"]);
    r.ok();
    assert!(!r.stderr.contains("TF_VAR"), "{}", r.stderr);
}

/// The phala CLI's credentials file: its current profile, or the one `--profile` names,
/// gives the key and (when nothing else names the endpoint) the API prefix.
#[test]
fn credentials_profiles_and_their_api_prefix_are_honoured() {
    use std::os::unix::fs::PermissionsExt;
    let mut t = TestEnv::new();
    t.env.remove("PHALA_CLOUD_API_KEY");
    t.env.insert("PHALA_CLOUD_DIR".into(), t.path("phala").display().to_string());
    t.write("web.yml", WEB);
    // No `provider:`: the endpoint comes from the profile.
    t.write("teeform.yaml", "cvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    let creds = serde_json::json!({
        "schema_version": 1,
        "current_profile": "staging",
        "profiles": {
            "staging": {"token": "wrong-key", "api_prefix": t.prefix()},
            "sim": {"token": crate::harness::KEY, "api_prefix": t.prefix()},
        },
    });
    t.write("phala/credentials.json", &creds.to_string());
    std::fs::set_permissions(t.path("phala/credentials.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // The current profile's prefix is used (the simulator answers), and its key is refused.
    let before = t.count("");
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(t.count("") > before, "the request went to the profile's api_prefix");
    assert!(r.stderr.contains("profile `staging`"), "{}", r.stderr);
    assert!(!r.stderr.contains("wrong-key"), "the key is never shown: {}", r.stderr);
    // --profile picks another.
    let r = t.run(&["--profile", "sim", "plan"]);
    r.ok();
    assert!(r.stdout.contains("Plan: 1 to add"), "{}", r.stdout);
    // It wins over PHALA_CLOUD_API_KEY, which wins over the current profile.
    t.env.insert("PHALA_CLOUD_API_KEY".into(), "env-key".into());
    t.run(&["--profile", "sim", "plan"]).ok();
    t.env.insert("PHALA_CLOUD_API_KEY".into(), crate::harness::KEY.into());
    t.run(&["plan"]).ok();
    // A profile the file lacks is named, with those it has.
    let r = t.run(&["--profile", "prod", "plan"]);
    r.code(1);
    assert!(r.stderr.contains("has no profile `prod`") && r.stderr.contains("sim, staging"), "{}", r.stderr);
}

/// `teeform status`: the table `phala cvms list` users expect, with what apply would do.
#[test]
fn status_shows_each_cvm_with_its_status_app_id_hash_and_pending_change() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    t.manifest("cvms:\n  web:\n    name: web-one\n    compose: web.yml\n    vcpu: 2\n  db:\n    name: db-one\n    compose: web.yml\n");
    let patches = t.count("PATCH");
    let posts = t.count("POST /api/v1/cvms");
    let r = t.run(&["status"]);
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("ADDRESS") && lines[0].ends_with("PENDING"), "{}", r.stdout);
    let db: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(db, ["cvm.db", "db-one", "not", "created", "-", "-", "create"], "{}", r.stdout);
    let web: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(web[..3], ["cvm.web", "web-one", "running"], "{}", r.stdout);
    assert_eq!(web[web.len() - 2..], ["update", "(restarts)"], "{}", r.stdout);
    let r = t.run(&["status", "--json"]);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let web = &v[1];
    assert_eq!(web["address"], "cvm.web");
    assert_eq!(web["status"], "running");
    assert_eq!(web["app_id"].as_str().map(str::len), Some(40), "{web}");
    assert_eq!(web["compose_hash"].as_str().map(str::len), Some(64), "{web}");
    assert_eq!(v[0]["app_id"], serde_json::Value::Null);
    // `state list --long` (or `-l`) is the same table; `state list` stays the addresses.
    let table = t.run(&["status"]);
    let long = t.run(&["state", "list", "--long"]);
    long.ok();
    assert_eq!(long.stdout, table.stdout);
    assert_eq!(t.run(&["state", "list", "-l", "--json"]).stdout, t.run(&["status", "--json"]).stdout);
    assert_eq!(t.run(&["state", "list"]).stdout, "cvm.web\n");
    t.run(&["state", "list", "--json"]).code(1);
    assert_eq!(t.count("PATCH"), patches, "status changes nothing");
    assert_eq!(t.count("POST /api/v1/cvms"), posts, "status changes nothing");
}

/// `backend: postgres` set before the state was copied: the error names the command that
/// copies the local state.
#[test]
fn migrating_after_setting_the_backend_names_the_command_that_copies_the_local_state() {
    let mut t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    t.manifest("backend: postgres\ncvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    t.env.insert("TEEFORM_PG_CONN".into(), "postgres://u:p@127.0.0.1:1/none".into());
    let r = t.run(&["state", "migrate", "--to", "postgres"]);
    r.code(1);
    assert!(r.stderr.contains("`teeform --backend local state migrate --to postgres`"), "{}", r.stderr);
    assert!(!r.stderr.contains("u:p@"), "{}", r.stderr);
}

/// `teeform graph`: explicit and implied dependencies, each edge once, as DOT and Mermaid.
#[test]
fn graph_shows_explicit_and_implied_dependencies_as_dot_and_mermaid() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(
        "cvms:\n  web:\n    name: shop-web\n    compose: web.yml\n    depends_on: [db]\n    lint: {ignore: [DB]}\n    env:\n      DB: ${cvm.db.app_id}\n  db:\n    name: shop-db\n    compose: web.yml\n  api:\n    name: shop-api\n    compose: web.yml\n    depends_on: [db, web]\n",
    );
    let r = t.run(&["graph"]);
    r.ok();
    assert_eq!(
        r.stdout,
        "digraph teeform {\n  rankdir = \"RL\";\n  node [shape = box];\n  \"cvm.api\" [label = \"cvm.api\\nshop-api\"];\n  \"cvm.db\" [label = \"cvm.db\\nshop-db\"];\n  \"cvm.web\" [label = \"cvm.web\\nshop-web\"];\n  \"cvm.api\" -> \"cvm.db\";\n  \"cvm.api\" -> \"cvm.web\";\n  \"cvm.web\" -> \"cvm.db\";\n}\n"
    );
    let r = t.run(&["graph", "--format", "mermaid"]);
    r.ok();
    assert_eq!(
        r.stdout,
        "flowchart RL\n  n0[\"cvm.api<br/>shop-api\"]\n  n1[\"cvm.db<br/>shop-db\"]\n  n2[\"cvm.web<br/>shop-web\"]\n  n0 --> n1\n  n0 --> n2\n  n2 --> n1\n"
    );
    assert_eq!(t.count(""), 0, "graph reads the manifest only");
    // A cycle is the error validate gives.
    t.manifest("cvms:\n  web:\n    name: shop-web\n    compose: web.yml\n    depends_on: [db]\n  db:\n    name: shop-db\n    compose: web.yml\n    depends_on: [web]\n");
    let r = t.run(&["graph"]);
    r.code(1);
    assert!(r.stderr.contains("cycle"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

/// `workspace list|show` on a local state: `default` and each workspace used, `*` on the one
/// in use.
#[test]
fn workspace_list_and_show_name_the_workspaces_and_the_one_in_use() {
    let mut t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-${var.env}\n    compose: web.yml\nvariables:\n  env: { default: one }\n");
    assert_eq!(t.run(&["workspace", "list"]).ok().stdout, "* default\n", "nothing used yet");
    t.run(&["apply", "--auto-approve"]).ok();
    t.run(&["--workspace", "staging", "apply", "--auto-approve", "--var", "env=two"]).ok();
    assert_eq!(t.run(&["workspace", "list"]).ok().stdout, "* default\n  staging\n");
    assert_eq!(t.run(&["--workspace", "staging", "workspace", "list"]).ok().stdout, "  default\n* staging\n");
    t.env.insert("TEEFORM_WORKSPACE".into(), "production".into());
    assert_eq!(t.run(&["workspace", "show"]).ok().stdout, "production\n");
    assert_eq!(t.run(&["workspace", "list"]).ok().stdout, "  default\n* production\n  staging\n");
    assert!(!t.path("state/workspaces/production").exists(), "listing makes no workspace");
}

/// `${workspace}` names CVMs per environment.
#[test]
fn workspace_reference_is_the_workspace_in_use() {
    let mut t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: shop-${workspace}\n    compose: web.yml\n    env:\n      ENV: ${workspace}\n    lint: {ignore: [ENV]}\noutputs:\n  where: x-${workspace}\n");
    assert_eq!(planned(&t, &[]).1, "shop-default");
    t.run(&["--workspace", "staging", "apply", "--auto-approve"]).ok();
    assert_eq!(t.cvm_stat("shop-staging", "status"), "running", "{}", t.stats());
    t.env.insert("TEEFORM_WORKSPACE".into(), "production".into());
    assert_eq!(planned(&t, &[]).1, "shop-production");
    assert_eq!(t.run(&["--workspace", "staging", "output", "where", "--raw"]).ok().stdout, "x-staging");
}
