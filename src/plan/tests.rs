//! Planner tests: each case is a manifest, a prior state and (optionally) what refresh saw,
//! checked through the rendered plan (snapshots) so the planner's API can change freely.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::manifest::{LoadOptions, Ref, load_str};
use crate::model::{CloudIds, EnvVal, OutputValue};
use crate::state::Meta;
use crate::style::Palette;

const WEB: &str = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"80:80\"\n";
const WEB2: &str = "services:\n  web:\n    image: nginx:1.28\n    ports:\n      - \"80:80\"\n";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Fixture { dir }
    }

    fn config(&self, yaml: &str) -> Config {
        let opts = LoadOptions {
            vars: vec![],
            env: Arc::new(|k| (k == "DB_PASSWORD").then(|| "hunter2".to_string())),
            display_base: Some(self.dir.path().to_path_buf()),
        };
        match load_str(&self.dir.path().join("teeform.yaml"), yaml.to_string(), &opts) {
            Ok(c) => c,
            Err(e) => panic!("{}", e.diagnostics.iter().map(|d| d.render(false)).collect::<Vec<_>>().join("\n")),
        }
    }
}

fn meta() -> Meta {
    Meta { lineage: "L".into(), serial: 7, salt: "00".into(), manifest: None }
}

fn record(addr: &str, name: &str, compose: &str, vcpu: u32) -> ResourceRecord {
    ResourceRecord {
        address: addr.into(),
        ids: CloudIds {
            id: format!("id-{name}"),
            app_id: Some(format!("app{name}")),
            vm_uuid: None,
            instance_id: None,
        },
        attrs: CvmAttrs {
            name: name.into(),
            compose: Some(compose.into()),
            vcpu: Some(vcpu),
            memory: Some(2048),
            kms: Some("phala".into()),
            ..Default::default()
        },
        compose_hash: Some("aa".repeat(32)),
        env_pubkey: None,
        kms_info: None,
        status: Some("running".into()),
        tainted: false,
        boot: Default::default(),
        dependencies: vec![],
        updated_at: "t".into(),
        endpoint: None,
        prevent_destroy: false,
        secrets_scope: None,
    }
}

fn snap(records: Vec<ResourceRecord>) -> Snapshot {
    Snapshot {
        meta: meta(),
        resources: records.into_iter().map(|r| (r.address.clone(), r)).collect(),
        outputs: BTreeMap::new(),
    }
}

fn secrets() -> SecretValues {
    let mut s = SecretValues::new();
    s.insert(Ref::SecretEnv { name: "DB_PASSWORD".into() }, crate::secrets::Secret::new("hunter2".into()));
    s
}

fn run(cfg: &Config, snapshot: &Snapshot, refreshed: Option<&BTreeMap<String, Refresh>>, mode: Mode) -> Plan {
    try_plan(cfg, snapshot, refreshed, mode, &Requests::default()).unwrap()
}

fn try_plan(
    cfg: &Config,
    snapshot: &Snapshot,
    refreshed: Option<&BTreeMap<String, Refresh>>,
    mode: Mode,
    requests: &Requests,
) -> Result<Plan, PlanError> {
    let s = secrets();
    let refreshed: Option<BTreeMap<Address, Refresh>> =
        refreshed.map(|r| r.iter().map(|(k, v)| (k.as_str().into(), v.clone())).collect());
    plan(&Input { config: cfg, snapshot, refreshed: refreshed.as_ref(), secrets: &s, mode, requests })
}

const THREE: &str = "
cvms:
  db:
    name: db-main
    compose: web.yml
    vcpu: 2
    memory: 2048
  api:
    name: api-main
    compose: web.yml
    vcpu: 2
    memory: 2048
    lint: {ignore: [DB_APP, DB_PASSWORD]}
    env:
      DB_APP: ${cvm.db.app_id}
      DB_PASSWORD: ${secret:env:DB_PASSWORD}
  worker:
    name: worker-main
    compose: web.yml
    depends_on: [db]
outputs:
  db_app_id: ${cvm.db.app_id}
";

#[test]
fn fresh_state_creates_everything_in_dependency_order() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(THREE);
    let p = run(&cfg, &snap(vec![]), None, Mode::Normal);
    let order: Vec<&str> = p.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(order, ["cvm.db", "cvm.api", "cvm.worker"]);
    assert_eq!(p.summary(), (3, 0, 0));
    let api = &p.changes[1];
    assert!(api.after.as_ref().unwrap().env["DB_APP"].is_unknown(), "db is not created yet");
    assert!(api.after.as_ref().unwrap().env["DB_PASSWORD"].is_sensitive());
    let rendered = render::render(&p, &Palette::plain());
    assert!(!rendered.contains("hunter2"));
    insta::assert_snapshot!("fresh_create", rendered);
}

#[test]
fn unchanged_state_has_no_changes() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    assert!(!p.has_changes(), "{:#?}", p.changes);
    assert_eq!(render::render(&p, &Palette::plain()), "No changes. Your infrastructure matches the configuration.\n");
}

#[test]
fn compose_and_vcpu_change_is_one_update_with_restart_note_and_diff() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 4\n    memory: 2048\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Update);
    assert!(c.reasons.contains(&Reason::RestartsCvm));
    assert_eq!(c.attributes.iter().map(|a| a.name.key()).collect::<Vec<_>>(), ["vcpu", "compose"]);
    insta::assert_snapshot!("compose_and_vcpu_update", render::render(&p, &Palette::plain()));
}

#[test]
fn a_name_change_is_a_rename_in_place_without_a_restart() {
    let f = Fixture::new(&[("web.yml", WEB), ("web2.yml", WEB2)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-next\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    let c = &p.changes[0];
    assert_eq!((c.action, p.summary(), p.restarts()), (Action::Update, (0, 1, 0), 0));
    assert_eq!(c.reasons, vec![Reason::Renames]);
    assert_eq!(c.compose_hash, None, "a rename leaves the app compose as it is");
    assert_eq!(p.needs_consent().count(), 0);
    insta::assert_snapshot!("rename", render::render(&p, &Palette::plain()));
    // With a configuration change: one update, one restart, and the rename.
    let cfg = f.config("cvms:\n  web:\n    name: web-next\n    compose: web2.yml\n    vcpu: 2\n    memory: 2048\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    assert_eq!(p.changes[0].reasons, vec![Reason::RestartsCvm, Reason::Renames]);
    assert_eq!(p.restarts(), 1);
    assert!(render::render(&p, &Palette::plain()).contains("# cvm.web will be updated in-place (restarts the CVM)"));
}

/// A reference to a CVM's name sees the name the plan gives it, so a rename and its
/// dependents settle in one apply.
#[test]
fn references_to_a_renamed_cvm_see_its_new_name() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(
        "cvms:\n  db:\n    name: db-next\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n  api:\n    name: api-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n    lint: {ignore: [DB]}\n    env:\n      DB: ${cvm.db.name}\n",
    );
    let mut api = record("cvm.api", "api-main", WEB, 2);
    api.attrs.env.insert("DB".into(), EnvVal::plain("db-main"));
    api.dependencies = vec!["cvm.db".into()];
    let p = run(&cfg, &snap(vec![record("cvm.db", "db-main", WEB, 2), api]), None, Mode::Normal);
    let api = p.changes.iter().find(|c| c.address == "cvm.api").expect("api changes");
    assert_eq!(api.after.as_ref().unwrap().env["DB"], EnvVal::plain("db-next"));
}

#[test]
fn renames_that_swap_names_are_refused() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(
        "cvms:\n  a:\n    name: name-b\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n  b:\n    name: name-a\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n",
    );
    let s = snap(vec![record("cvm.a", "name-a", WEB, 2), record("cvm.b", "name-b", WEB, 2)]);
    let e = try_plan(&cfg, &s, None, Mode::Normal, &Requests::default()).unwrap_err();
    assert_eq!(e.to_string(), "renames form a cycle: cvm.a → `name-b`, cvm.b → `name-a`");
    // A rename into a name another rename frees is fine (apply orders them).
    let cfg = f.config(
        "cvms:\n  a:\n    name: name-b\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n  b:\n    name: name-c\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n",
    );
    assert_eq!(run(&cfg, &s, None, Mode::Normal).summary(), (0, 2, 0));
}

/// Every replacement names its cause and its cost, and needs consent unless it was asked for.
#[test]
fn a_replacement_names_its_cause_and_cost_and_needs_consent() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    kms: base\n");
    let s = snap(vec![record("cvm.web", "web-main", WEB, 2)]);
    let p = run(&cfg, &s, None, Mode::Normal);
    let c = &p.changes[0];
    assert_eq!((c.action, p.summary()), (Action::Replace, (1, 0, 1)));
    assert_eq!(
        c.reasons,
        vec![Reason::ForcesReplacement { attributes: vec![Attr::Kms] }, Reason::RotatesAppId { onchain: true }]
    );
    assert_eq!(p.needs_consent().map(|c| c.address.as_str()).collect::<Vec<_>>(), ["cvm.web"]);
    assert_eq!(render::replacement_cause(c), "its `kms` cannot change in place",);
    insta::assert_snapshot!("replace", render::render(&p, &Palette::plain()));
    let j = json::to_json(&p);
    assert_eq!(j["replacements_needing_consent"], serde_json::json!(["cvm.web"]));
    // Consent: for all replacements, or by name.
    let allow = Requests { allow_replace: true, ..Default::default() };
    assert_eq!(try_plan(&cfg, &s, None, Mode::Normal, &allow).unwrap().needs_consent().count(), 0);
    let named = Requests { replace: vec!["cvm.web".into()], ..Default::default() };
    let p = try_plan(&cfg, &s, None, Mode::Normal, &named).unwrap();
    assert_eq!(p.needs_consent().count(), 0);
    assert!(p.changes[0].reasons.contains(&Reason::ReplaceRequested));
}

#[test]
fn replace_requests_replace_an_unchanged_cvm_and_name_only_cvms_that_can_be() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n");
    let s = snap(vec![record("cvm.web", "web-main", WEB, 2), record("cvm.old", "old-main", WEB, 2)]);
    let ask = |a: &str| Requests { replace: vec![a.into()], ..Default::default() };
    let p = try_plan(&cfg, &s, None, Mode::Normal, &ask("cvm.web")).unwrap();
    let c = p.changes.iter().find(|c| c.address == "cvm.web").unwrap();
    assert_eq!(c.action, Action::Replace);
    assert_eq!(c.reasons, vec![Reason::ReplaceRequested, Reason::RotatesAppId { onchain: false }]);
    assert!(c.replacement_requested());
    let err = |a: &str| try_plan(&cfg, &s, None, Mode::Normal, &ask(a)).unwrap_err().to_string();
    assert_eq!(err("cvm.wbe"), "--replace cvm.wbe: there is no such CVM in the manifest or in state");
    assert!(err("cvm.old").contains("no longer in the manifest"), "{}", err("cvm.old"));
    let fresh = try_plan(&cfg, &snap(vec![]), None, Mode::Normal, &ask("cvm.web")).unwrap_err();
    assert!(fresh.to_string().contains("it is not in state"), "{fresh}");
}

#[test]
fn prevent_destroy_refuses_destroy_replace_and_removal_from_the_manifest() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let protected = "    lifecycle: {prevent_destroy: true}\n";
    let cfg = |extra: &str| {
        f.config(&format!(
            "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n{extra}"
        ))
    };
    let rec = record("cvm.web", "web-main", WEB, 2);
    // Setting it changes no CVM: state records it.
    let p = run(&cfg(protected), &snap(vec![rec.clone()]), None, Mode::Normal);
    assert!(p.changes.is_empty() && p.has_changes());
    assert_eq!(p.protection, vec![Protection { address: "cvm.web".into(), prevent_destroy: true }]);
    assert!(p.refreshed.iter().any(|r| r.address == "cvm.web" && r.prevent_destroy));
    assert!(
        render::render(&p, &Palette::plain()).contains("# cvm.web: state records lifecycle.prevent_destroy = true")
    );
    let mut rec = rec;
    rec.prevent_destroy = true;
    assert!(!run(&cfg(protected), &snap(vec![rec.clone()]), None, Mode::Normal).has_changes());
    let refused = |cfg: &Config, mode: Mode, r: &Requests| {
        try_plan(cfg, &snap(vec![rec.clone()]), None, mode, r).unwrap_err().to_string()
    };
    let none = Requests::default();
    assert_eq!(
        refused(&cfg(protected), Mode::Destroy, &none),
        "cvm.web has `lifecycle.prevent_destroy` set, but this plan would destroy it"
    );
    let ask = Requests { replace: vec!["cvm.web".into()], ..Default::default() };
    assert!(refused(&cfg(protected), Mode::Normal, &ask).ends_with("would replace it"));
    let kms = cfg(&format!("{protected}    kms: base\n"));
    assert!(refused(&kms, Mode::Normal, &none).ends_with("would replace it"));
    // Gone from the manifest, state's record still protects it.
    let empty = f.config("cvms: {}\n");
    assert!(refused(&empty, Mode::Normal, &none).ends_with("would destroy it"));
    // The manifest taking the protection off is what allows it.
    let p = run(&cfg("    lifecycle: {prevent_destroy: false}\n"), &snap(vec![rec.clone()]), None, Mode::Destroy);
    assert_eq!(p.summary(), (0, 0, 1));
}
#[test]
fn removed_from_manifest_is_destroyed_dependents_first() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms: {}\n");
    let mut api = record("cvm.api", "api-main", WEB, 2);
    api.dependencies = vec!["cvm.db".into()];
    let p = run(&cfg, &snap(vec![record("cvm.db", "db-main", WEB, 2), api]), None, Mode::Normal);
    let order: Vec<&str> = p.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(order, ["cvm.api", "cvm.db"]);
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
}

#[test]
fn destroy_mode_deletes_all_and_ignores_manifest() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Destroy);
    assert_eq!(p.summary(), (0, 0, 1));
    assert_eq!(p.changes[0].reasons, vec![Reason::DestroyRequested]);
}

#[test]
fn drift_is_reported_and_planned_back() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n");
    let rec = record("cvm.web", "web-main", WEB, 2);
    let mut remote_attrs = rec.attrs.clone();
    remote_attrs.vcpu = Some(8);
    let remote = RemoteCvm {
        ids: rec.ids.clone(),
        status: "running".into(),
        in_progress: false,
        compose_hash: rec.compose_hash.clone(),
        attrs: remote_attrs,
        app_compose: None,
        env_pubkey: None,
        kms_info: None,
        boot: Default::default(),
    };
    let refreshed = BTreeMap::from([("cvm.web".to_string(), Refresh::Found(Box::new(remote)))]);
    let p = run(&cfg, &snap(vec![rec.clone()]), Some(&refreshed), Mode::Normal);
    assert_eq!(p.drift.len(), 1);
    assert_eq!(p.changes[0].action, Action::Update);
    insta::assert_snapshot!("drift", render::render(&p, &Palette::plain()));
    let only = run(&cfg, &snap(vec![rec]), Some(&refreshed), Mode::RefreshOnly);
    assert!(only.changes.is_empty());
    assert!(only.has_changes());
}

#[test]
fn env_values_unknown_to_state_are_not_drift() {
    // After `import`, state knows the env keys but not their values; a refresh showing the
    // same keys is no drift, a refresh with another key set is.
    let mut rec = record("cvm.web", "web-main", WEB, 2);
    rec.attrs.env = BTreeMap::from([("FOO".to_string(), EnvVal::default()), ("BAR".to_string(), EnvVal::default())]);
    let remote = |keys: &[&str]| RemoteCvm {
        ids: rec.ids.clone(),
        status: "running".into(),
        in_progress: false,
        compose_hash: rec.compose_hash.clone(),
        attrs: CvmAttrs { env: keys.iter().map(|k| (k.to_string(), EnvVal::default())).collect(), ..rec.attrs.clone() },
        app_compose: None,
        env_pubkey: None,
        kms_info: None,
        boot: Default::default(),
    };
    assert_eq!(merge_refresh(&rec, &remote(&["BAR", "FOO"])).1, vec![]);
    let drift = merge_refresh(&rec, &remote(&["FOO"])).1;
    assert_eq!(drift.iter().map(|a| a.name.key()).collect::<Vec<_>>(), ["env"]);
}

#[test]
fn deleted_outside_is_created_again() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let refreshed = BTreeMap::from([("cvm.web".to_string(), Refresh::Gone)]);
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), Some(&refreshed), Mode::Normal);
    assert_eq!(p.changes[0].action, Action::Create);
    assert_eq!(p.changes[0].reasons, vec![Reason::DeletedOutsideTeeform]);
}

#[test]
fn secret_change_is_detected_without_the_value() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\n");
    let mut rec = record("cvm.web", "web-main", WEB, 2);
    rec.attrs.env.insert(
        "DB_PASSWORD".into(),
        EnvVal {
            digest: Some(crate::secrets::digest("00", "cvm.web", "DB_PASSWORD", "hunter2")),
            ..Default::default()
        },
    );
    let same = run(&cfg, &snap(vec![rec.clone()]), None, Mode::Normal);
    assert!(same.changes.is_empty(), "same secret, no change");
    rec.attrs.env.insert(
        "DB_PASSWORD".into(),
        EnvVal { digest: Some(crate::secrets::digest("00", "cvm.web", "DB_PASSWORD", "old")), ..Default::default() },
    );
    let changed = run(&cfg, &snap(vec![rec]), None, Mode::Normal);
    assert_eq!(changed.changes[0].action, Action::Update);
    let text = render::render(&changed, &Palette::plain());
    assert!(text.contains("DB_PASSWORD = (sensitive value) (changed)"), "{text}");
    let json = json::to_json(&changed).to_string();
    assert!(!json.contains("hunter2") && !json.contains("argon2id"), "{json}");
}

#[test]
fn outputs_follow_state_and_settle() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\noutputs:\n  app: ${cvm.web.app_id}\n");
    let mut s = snap(vec![record("cvm.web", "web-main", WEB, 2)]);
    let p = run(&cfg, &s, None, Mode::Normal);
    assert!(p.outputs_changed && p.changes.is_empty());
    assert_eq!(p.outputs["app"].known.as_deref(), Some("appweb-main"));
    s.outputs.insert("app".into(), OutputValue { value: Some("appweb-main".into()), sensitive: false, digest: None });
    assert!(!run(&cfg, &s, None, Mode::Normal).has_changes());
}

#[test]
fn removed_outputs_are_shown_and_sensitive_ones_stay_hidden() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let mut s = snap(vec![record("cvm.web", "web-main", WEB, 2)]);
    s.outputs.insert("app".into(), OutputValue { value: Some("appweb-main".into()), sensitive: false, digest: None });
    s.outputs.insert("token".into(), OutputValue { value: None, sensitive: true, digest: None });
    for mode in [Mode::Normal, Mode::Destroy] {
        let p = run(&cfg, &s, None, mode);
        assert!(p.outputs_changed, "{mode:?}");
        let text = render::render(&p, &Palette::plain());
        assert!(text.contains("  - app = \"appweb-main\"\n"), "{text}");
        assert!(text.contains("  - token = (sensitive value)\n"), "{text}");
        let json = json::to_json(&p);
        assert_eq!(json["output_changes"]["app"]["actions"][0], "delete");
        assert_eq!(json["output_changes"]["app"]["before"], "appweb-main");
        assert_eq!(json["output_changes"]["token"]["sensitive"], true);
    }
}

#[test]
fn a_sensitive_output_already_in_state_is_not_shown_as_new() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(
        "cvms:\n  web:\n    name: web-main\n    compose: web.yml\noutputs:\n  tok:\n    value: ${cvm.web.app_id}\n    sensitive: true\n",
    );
    let mut s = snap(vec![record("cvm.web", "web-main", WEB, 2)]);
    s.outputs.insert("tok".into(), OutputValue { value: None, sensitive: true, digest: None });
    assert!(!run(&cfg, &s, None, Mode::Normal).has_changes());
    // Another output going away puts the section on screen; `tok` stays out of it.
    s.outputs.insert("old".into(), OutputValue { value: Some("x".into()), sensitive: false, digest: None });
    let p = run(&cfg, &s, None, Mode::Normal);
    let text = render::render(&p, &Palette::plain());
    assert!(text.contains("  - old = \"x\"\n") && !text.contains("tok"), "{text}");
    assert_eq!(json::to_json(&p)["output_changes"]["tok"]["actions"][0], "no-op");
}

#[test]
fn tainted_is_replaced() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n");
    let mut rec = record("cvm.web", "web-main", WEB, 2);
    rec.tainted = true;
    let p = run(&cfg, &snap(vec![rec]), None, Mode::Normal);
    assert_eq!(p.changes[0].action, Action::Replace);
    assert!(p.changes[0].reasons.contains(&Reason::Tainted));
}

#[test]
fn json_plan_has_terraform_shape() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 4\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    let j = json::to_json(&p);
    let rc = &j["resource_changes"][0];
    assert_eq!(rc["address"], "cvm.web");
    assert_eq!(rc["actions"], serde_json::json!(["update"]));
    assert_eq!(rc["before"]["vcpu"], 2);
    assert_eq!(rc["after"]["vcpu"], 4);
    assert_eq!(j["summary"]["change"], 1);
}

#[test]
fn planner_module_does_no_io() {
    // Tidy check: the planner stays a pure function.
    for (name, src) in [
        ("mod.rs", include_str!("mod.rs")),
        ("render.rs", include_str!("render.rs")),
        ("json.rs", include_str!("json.rs")),
    ] {
        for banned in ["tokio", "reqwest", "sled", "std::fs", "std::net", "SystemTime", "alloy"] {
            assert!(!src.contains(banned), "plan/{name} mentions {banned}");
        }
    }
}

#[test]
fn an_on_chain_kms_update_notes_the_hash_chain_and_contract() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let app = "ab".repeat(20);
    // (kms as written, chain id, contract the note names)
    let cases = [
        ("base", 8453, format!("0x{app}")),
        ("ethereum", 1, format!("0x{app}")),
        ("\n      chain: 31337", 31337, format!("0x{app}")),
        (
            "\n      chain: \"8453\"\n      contract: 0xCDCDCDCDCDCDCDCDCDCDCDCDCDCDCDCDCDCDCDCD",
            8453,
            format!("0x{}", "cd".repeat(20)),
        ),
    ];
    for (kms, chain, contract) in cases {
        let cfg = f.config(&format!("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    kms: {kms}\n"));
        let mut rec = record("cvm.web", "web-main", WEB, 2);
        rec.ids.app_id = Some(app.clone());
        rec.attrs.kms = Some(cfg.cvms["web"].kms.kind().into());
        let p = run(&cfg, &snap(vec![rec]), None, Mode::Normal);
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Update, "{kms}");
        let hash = c.compose_hash.as_ref().unwrap().after.clone();
        let note = c.reasons.iter().find_map(|r| match r {
            Reason::OnChainRegistration(n) => Some(n.clone()),
            _ => None,
        });
        assert_eq!(
            note,
            Some(OnChainNote {
                compose_hash: hash.clone(),
                chain_id: chain,
                contract: Some(contract.clone()),
                allowed: None
            }),
            "{kms}"
        );
        let out = render::render(&p, &Palette::plain());
        assert!(out.contains(&format!("compose hash 0x{hash} on chain {chain} contract {contract}")), "{out}");
        assert!(out.contains("1 on-chain registration."), "{out}");
    }
}

#[test]
fn a_phala_kms_update_needs_no_registration() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    assert!(!p.changes[0].reasons.iter().any(|r| matches!(r, Reason::OnChainRegistration(_))));
}

fn remote_of(rec: &ResourceRecord, attrs: CvmAttrs) -> RemoteCvm {
    RemoteCvm {
        ids: rec.ids.clone(),
        status: "running".into(),
        in_progress: false,
        compose_hash: rec.compose_hash.clone(),
        attrs,
        app_compose: None,
        env_pubkey: None,
        kms_info: None,
        boot: Default::default(),
    }
}

/// Every attribute the API normalises, each spelling the manifest, state and the API's report
/// can have: compared in the API's normal form, none is a change or drift.
#[test]
fn attributes_the_api_normalises_are_compared_in_its_normal_form() {
    type Set = fn(&mut CvmAttrs, Option<&str>);
    let cases: &[(&str, Set, &[Option<&str>])] = &[
        ("pre_launch_script", |a, v| a.pre_launch_script = v.map(str::to_string), &[None, Some("")]),
        ("instance_type", |a, v| a.instance_type = v.map(str::to_string), &[None, Some("")]),
        ("node", |a, v| a.node = v.map(str::to_string), &[None, Some("")]),
        ("image", |a, v| a.image = v.map(str::to_string), &[None, Some("")]),
        ("kms", |a, v| a.kms = v.map(str::to_string), &[Some("phala"), Some("PHALA"), Some("Phala")]),
    ];
    for (name, set, spellings) in cases {
        for desired in *spellings {
            for stored in *spellings {
                for reported in *spellings {
                    let mut rec = record("cvm.web", "web-main", WEB, 2);
                    set(&mut rec.attrs, *stored);
                    let mut remote = rec.attrs.clone();
                    set(&mut remote, *reported);
                    // As desired attributes are: with a run state.
                    let mut want = CvmAttrs { power: Some(Power::Running), ..rec.attrs.clone() };
                    set(&mut want, *desired);
                    let (merged, drift) = merge_refresh(&rec, &remote_of(&rec, remote));
                    let case = format!("{name}: manifest {desired:?}, state {stored:?}, API {reported:?}");
                    assert_eq!(drift, vec![], "{case}");
                    assert_eq!(diff_attrs(&merged.attrs, &want.normalized(), true), vec![], "{case}");
                }
            }
        }
    }
}

/// The 0-byte pre-launch script (issue 14.2), end to end through the manifest: after apply the
/// plan is empty whatever the API reports, removing the script plans nothing, and a script of
/// whitespace is content, kept and compared as written.
#[test]
fn an_empty_pre_launch_script_settles_and_removing_it_restarts_nothing() {
    let f = Fixture::new(&[("web.yml", WEB), ("empty.sh", ""), ("blank.sh", " \n\t\n")]);
    let with = |script: &str| {
        f.config(&format!("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    pre_launch_script: {script}\n"))
    };
    let without = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let empty = with("empty.sh");
    // What a create records (its desired attributes) is the state the next plan starts from.
    let created = run(&empty, &snap(vec![]), None, Mode::Normal);
    let after = created.changes[0].after.clone().unwrap();
    assert_eq!(after.pre_launch_script, None, "an empty script is no script");
    let create_hash = &created.changes[0].compose_hash.as_ref().unwrap().after;
    assert_eq!(
        *create_hash,
        crate::compose::hash(&app_compose_for_create(&CvmAttrs { pre_launch_script: None, ..after.clone() })),
        "the preview hashes what the API stores"
    );
    for stored in [None, Some("")] {
        for reported in [None, Some("")] {
            let mut rec = record("cvm.web", "web-main", WEB, 2);
            rec.attrs.pre_launch_script = stored.map(str::to_string);
            let mut remote = rec.attrs.clone();
            remote.pre_launch_script = reported.map(str::to_string);
            let refreshed =
                BTreeMap::from([("cvm.web".to_string(), Refresh::Found(Box::new(remote_of(&rec, remote))))]);
            for (cfg, what) in [(&empty, "empty script"), (&without, "script removed")] {
                for r in [None, Some(&refreshed)] {
                    let p = run(cfg, &snap(vec![rec.clone()]), r, Mode::Normal);
                    let case = format!("{what}: state {stored:?}, API {reported:?}, refresh {}", r.is_some());
                    assert!(
                        p.changes.is_empty() && p.drift.is_empty(),
                        "{case}: {}",
                        render::render(&p, &Palette::plain())
                    );
                    assert_eq!(p.restarts(), 0, "{case}");
                }
            }
        }
    }
    // Whitespace is content: kept, compared byte for byte.
    let blank = with("blank.sh");
    let mut rec = record("cvm.web", "web-main", WEB, 2);
    rec.attrs.pre_launch_script = Some(" \n\t\n".into());
    assert!(run(&blank, &snap(vec![rec.clone()]), None, Mode::Normal).changes.is_empty());
    let p = run(&empty, &snap(vec![rec]), None, Mode::Normal);
    assert_eq!(p.changes[0].attributes.iter().map(|a| a.name.key()).collect::<Vec<_>>(), ["pre_launch_script"]);
}

#[test]
fn a_script_added_outside_teeform_is_drift() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n");
    let rec = record("cvm.web", "web-main", WEB, 2);
    let mut remote = rec.attrs.clone();
    remote.pre_launch_script = Some("echo hi\n".into());
    let refreshed = BTreeMap::from([("cvm.web".to_string(), Refresh::Found(Box::new(remote_of(&rec, remote))))]);
    let p = run(&cfg, &snap(vec![rec]), Some(&refreshed), Mode::Normal);
    assert_eq!(p.drift[0].attributes[0].name, Attr::PreLaunchScript);
    assert_eq!(p.changes[0].action, Action::Update);
}

/// The same rules as the API's JSON reaches them: every spelling of "nothing" the API may
/// report reads as the same attributes.
#[test]
fn api_reports_read_in_normal_form() {
    use crate::providers::phala::parse_cvm;
    let base = serde_json::json!({"id": "c1", "name": "web-main", "status": "running", "kms_type": "phala",
        "resource": {}, "gateway": {}, "compose_file": {"docker_compose_file": WEB}});
    let want = parse_cvm(&base).unwrap().attrs;
    assert_eq!(want.pre_launch_script, None);
    let spellings: &[(&str, serde_json::Value)] = &[
        ("/compose_file/pre_launch_script", "".into()),
        ("/compose_file/pre_launch_script", serde_json::Value::Null),
        ("/compose_file/allowed_envs", serde_json::json!([])),
        ("/compose_file/allowed_envs", serde_json::Value::Null),
        ("/kms_type", "PHALA".into()),
        ("/resource/instance_type", "".into()),
        ("/resource/instance_type", serde_json::Value::Null),
        ("/os", serde_json::json!({"name": ""})),
        ("/os", serde_json::Value::Null),
    ];
    for (pointer, value) in spellings {
        let mut v = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(if parent.is_empty() { "" } else { parent }).unwrap()[key] = value.clone();
        assert_eq!(parse_cvm(&v).unwrap().attrs, want, "{pointer} = {value}");
    }
}

/// The rendered plan for a compose file (and optionally a pre-launch script) changed from
/// `before` to `after`.
/// A compose file and an optional pre-launch script.
type Files<'a> = (&'a str, Option<&'a str>);

fn text_change(before: Files, after: Files, color: bool) -> String {
    let mut files = vec![("web.yml", after.0)];
    let mut manifest = "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n".to_string();
    if let Some(s) = after.1 {
        files.push(("pre.sh", s));
        manifest.push_str("    pre_launch_script: pre.sh\n");
    }
    let f = Fixture::new(&files);
    let cfg = f.config(&manifest);
    let mut rec = record("cvm.web", "web-main", before.0, 2);
    rec.attrs.pre_launch_script = before.1.map(str::to_string);
    let p = run(&cfg, &snap(vec![rec]), None, Mode::Normal);
    render::render(&p, &Palette::new(color))
}

const CRLF: &str = "services:\r\n  web:\r\n    image: nginx:1.27\r\n    ports:\r\n      - \"80:80\"\r\n";

/// Changes a terminal would not show (issue 14.4) are visible in plain text: line-ending
/// notes, markers for carriage returns, trailing whitespace, invisible characters and tabs
/// where they matter, with a legend.
#[test]
fn invisible_changes_are_visible_in_the_diff() {
    let cases: &[(&str, Files, Files)] = &[
        ("lf_to_crlf_only", (WEB, None), (CRLF, None)),
        ("crlf_to_lf_with_a_real_change", (CRLF, None), (WEB2, None)),
        ("one_line_gains_a_cr", (WEB, None), (&WEB.replace("1.27\n", "1.27\r\n"), None)),
        ("trailing_whitespace", (WEB, None), (&WEB.replace("1.27\n", "1.27 \t\n"), None)),
        (
            "invisible_characters",
            (WEB, None),
            (
                &WEB.replace("nginx:1.27", "nginx:1.27\u{a0}")
                    .replace("web:", "w\u{200b}eb:")
                    .replace("80:80", "80\u{202e}:80"),
                None,
            ),
        ),
        ("control_character_in_a_script", (WEB, Some("echo hi\n")), (WEB, Some("echo hi\u{1b}[0m\u{7}\n"))),
        // The manifest reader drops a BOM, so only a CVM made before it did still has one.
        ("bom_removed", (&format!("\u{feff}{WEB}"), None), (WEB, None)),
        ("tabs_in_compose", (WEB, None), (&WEB.replace("image: ", "image:\t"), None)),
        (
            "tabs_vs_spaces_in_a_script",
            (WEB, Some("if true; then\n    echo a\nfi\necho b\n")),
            (WEB, Some("if true; then\n\techo a\nfi\necho  c\t\n")),
        ),
        ("no_newline_at_end", (WEB, None), (WEB.trim_end(), None)),
    ];
    for (name, before, after) in cases {
        let text = text_change(*before, *after, false);
        insta::assert_snapshot!(format!("invisible_{name}"), text);
    }
}

#[test]
fn markers_are_coloured_apart_from_the_text() {
    let text = text_change((WEB, None), (&WEB.replace("1.27\n", "1.27\u{a0} \n"), None), true);
    let line = text.lines().find(|l| l.contains("1.27") && l.contains("<NBSP>")).unwrap();
    // The marker is painted on its own (inverted), the text around it green.
    assert!(line.contains("\u{1b}[7m") || line.contains("\u{1b}[33;7m") || line.contains("\u{1b}[7;33m"), "{line:?}");
    let plain = text_change((WEB, None), (&WEB.replace("1.27\n", "1.27\u{a0} \n"), None), false);
    let strip = |s: &str| regex::Regex::new("\u{1b}\\[[0-9;]*m").unwrap().replace_all(s, "").to_string();
    assert_eq!(strip(&text), plain, "colour adds styling only");
}

#[test]
fn a_created_crlf_file_with_invisible_characters_is_marked() {
    let f = Fixture::new(&[("web.yml", &CRLF.replace("nginx", "ng\u{200b}inx")), ("pre.sh", "echo hi \n")]);
    let cfg = f.config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    pre_launch_script: pre.sh\n");
    let p = run(&cfg, &snap(vec![]), None, Mode::Normal);
    insta::assert_snapshot!("invisible_create", render::render(&p, &Palette::plain()));
}

#[test]
fn single_line_values_mark_invisible_characters() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f
        .config("cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    image: \"dstack-0.5.5\\u00a0\\u200b\"\n");
    let mut rec = record("cvm.web", "web-main", WEB, 2);
    rec.attrs.image = Some("dstack-0.5.5".into());
    let text = render::render(&run(&cfg, &snap(vec![rec]), None, Mode::Normal), &Palette::plain());
    assert!(text.contains(r#"~ image = "dstack-0.5.5" -> "dstack-0.5.5<NBSP><ZWSP>""#), "{text}");
}

/// A `moved:` entry moves the record in state: the same CVM (ids, digests), no change, no
/// cloud call; dependencies that named the old address name the new one.
#[test]
fn a_moved_key_keeps_its_cvm_and_changes_nothing() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let manifest = "cvms:\n  front:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\n  worker:\n    name: worker-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n    depends_on: [front]\nmoved:\n  - {from: cvm.web, to: cvm.front}\n";
    let cfg = f.config(&manifest.replace("    env:\n", "    lint: {ignore: [DB_PASSWORD]}\n    env:\n"));
    let mut web = record("cvm.web", "web-main", WEB, 2);
    let digest = crate::secrets::digest("00", "cvm.web", "DB_PASSWORD", "hunter2");
    web.attrs.env.insert("DB_PASSWORD".into(), EnvVal { digest: Some(digest.clone()), ..Default::default() });
    let mut worker = record("cvm.worker", "worker-main", WEB, 2);
    worker.dependencies = vec!["cvm.web".into()];
    let s = snap(vec![web.clone(), worker]);
    let p = run(&cfg, &s, None, Mode::Normal);
    assert!(p.changes.is_empty(), "{:#?}", p.changes);
    assert!(p.has_changes(), "the move is applied to state");
    assert_eq!(p.moved, vec![Moved { from: "cvm.web".into(), to: "cvm.front".into() }]);
    let moved = p.refreshed.iter().find(|r| r.address == "cvm.front").expect("the record at its new address");
    assert_eq!((&moved.ids, moved.secrets_scope.as_ref()), (&web.ids, Some(&"cvm.web".into())));
    assert_eq!(moved.attrs.env["DB_PASSWORD"].digest.as_deref(), Some(digest.as_str()));
    let w = p.refreshed.iter().find(|r| r.address == "cvm.worker").expect("the dependent rewritten");
    assert_eq!(w.dependencies, vec![Address::from("cvm.front")]);
    let text = render::render(&p, &Palette::plain());
    assert!(text.contains("# cvm.web has moved to cvm.front"), "{text}");
    assert!(text.contains("Plan: 0 to add, 0 to change, 0 to destroy. 1 CVM moved in state."), "{text}");
    // A later change to the moved CVM says where it came from, and keeps the digests' scope.
    let cfg2 = f.config(&manifest.replace(
        "vcpu: 2\n    memory: 2048\n    env",
        "vcpu: 4\n    memory: 2048\n    lint: {ignore: [DB_PASSWORD]}\n    env",
    ));
    let p = run(&cfg2, &s, None, Mode::Normal);
    let c = &p.changes[0];
    assert_eq!((c.address.as_str(), c.action), ("cvm.front", Action::Update));
    assert_eq!(c.attributes.iter().map(|a| a.name).collect::<Vec<_>>(), [Attr::Vcpu], "the secret is unchanged");
    assert_eq!((c.moved_from.as_ref(), c.secrets_scope.as_ref()), (Some(&"cvm.web".into()), Some(&"cvm.web".into())));
    assert!(render::render(&p, &Palette::plain()).contains("  # (moved from cvm.web)\n"));
    assert_eq!(json::to_json(&p)["resource_changes"][0]["previous_address"], "cvm.web");
    // Once applied, the entry finds nothing to move: a note, nothing else.
    let applied = snap(vec![web.moved_to(&"cvm.front".into()), record("cvm.worker", "worker-main", WEB, 2)]);
    let mut applied = applied;
    applied.resources.get_mut("cvm.worker").unwrap().dependencies = vec!["cvm.front".into()];
    let p = run(&cfg, &applied, None, Mode::Normal);
    assert!(!p.has_changes(), "{:#?}", p);
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].contains("state holds nothing at cvm.web"), "{:?}", p.notes);
    // Both addresses held: which CVM is meant cannot be told.
    let both = snap(vec![web, record("cvm.front", "web-main", WEB, 2)]);
    let e = try_plan(&cfg, &both, None, Mode::Normal, &Requests::default()).unwrap_err();
    assert_eq!(e.to_string(), "cannot move cvm.web to cvm.front: state already holds a CVM at cvm.front");
}

#[test]
fn a_moved_cvm_is_updated_from_what_refresh_saw_at_its_old_address() {
    // Refresh goes by state's addresses; the compose hash an update predicts starts from the
    // app compose the API reported for the CVM before its key moved.
    let f = Fixture::new(&[("web.yml", WEB), ("web2.yml", WEB2)]);
    let manifest =
        "cvms:\n  front:\n    name: web-main\n    compose: web2.yml\nmoved:\n  - {from: cvm.web, to: cvm.front}\n";
    let cfg = f.config(manifest);
    let rec = record("cvm.web", "web-main", WEB, 2);
    let mut reported = app_compose_for_create(&rec.attrs);
    reported["features"] = serde_json::json!(["kms", "tproxy-net"]);
    let remote = RemoteCvm { app_compose: Some(reported), ..remote_of(&rec, rec.attrs.clone()) };
    let refreshed = BTreeMap::from([("cvm.web".to_string(), Refresh::Found(Box::new(remote)))]);
    let p = run(&cfg, &snap(vec![rec.clone()]), Some(&refreshed), Mode::Normal);
    let c = &p.changes[0];
    assert_eq!((c.address.as_str(), c.action), ("cvm.front", Action::Update));
    let after = c.after.as_ref().expect("an update has its after");
    let expected = preview_update(&rec, after, refreshed.get("cvm.web")).expect("the compose changes");
    assert_ne!(Some(&expected), preview_update(&rec, after, None).as_ref(), "the reported compose matters");
    assert_eq!(c.compose_hash.as_ref(), Some(&expected));
}

/// `--target` and `--exclude` follow dependencies as Terraform does.
#[test]
fn targeting_picks_dependencies_and_leaves_out_dependents() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(THREE);
    let pick = |mode: Mode, target: &[&str], exclude: &[&str], s: &Snapshot| {
        let r = Requests {
            target: target.iter().map(|a| Address::from(*a)).collect(),
            exclude: exclude.iter().map(|a| Address::from(*a)).collect(),
            ..Default::default()
        };
        let p = try_plan(&cfg, s, None, mode, &r).unwrap();
        p.changes.iter().map(|c| c.address.to_string()).collect::<Vec<_>>()
    };
    let empty = snap(vec![]);
    assert_eq!(pick(Mode::Normal, &["cvm.api"], &[], &empty), ["cvm.db", "cvm.api"]);
    assert_eq!(pick(Mode::Normal, &["cvm.db"], &[], &empty), ["cvm.db"]);
    assert_eq!(pick(Mode::Normal, &[], &["cvm.worker"], &empty), ["cvm.db", "cvm.api"]);
    assert!(pick(Mode::Normal, &[], &["cvm.db"], &empty).is_empty(), "everything depends on db");
    assert_eq!(pick(Mode::Normal, &["cvm.api", "cvm.worker"], &["cvm.api"], &empty), ["cvm.db", "cvm.worker"]);
    let mut api = record("cvm.api", "api-main", WEB, 2);
    api.dependencies = vec!["cvm.db".into()];
    let mut worker = record("cvm.worker", "worker-main", WEB, 2);
    worker.dependencies = vec!["cvm.db".into()];
    let all = snap(vec![record("cvm.db", "db-main", WEB, 2), api, worker]);
    // Destroying, a target takes what depends on it; an exclusion keeps what it depends on.
    assert_eq!(pick(Mode::Destroy, &["cvm.db"], &[], &all), ["cvm.worker", "cvm.api", "cvm.db"]);
    assert_eq!(pick(Mode::Destroy, &["cvm.api"], &[], &all), ["cvm.api"]);
    assert_eq!(pick(Mode::Destroy, &[], &["cvm.api"], &all), ["cvm.worker"]);
    // A partial plan warns, leaves outputs alone and names an unknown address.
    let r = Requests { target: vec!["cvm.db".into()], ..Default::default() };
    let p = try_plan(&cfg, &empty, None, Mode::Normal, &r).unwrap();
    assert!(p.warnings.iter().any(|w| w.starts_with("targeting is in effect (--target cvm.db)")), "{:?}", p.warnings);
    assert!(!p.outputs_changed && p.outputs.is_empty());
    let r = Requests { exclude: vec!["cvm.dbb".into()], ..Default::default() };
    let e = try_plan(&cfg, &empty, None, Mode::Normal, &r).unwrap_err();
    assert_eq!(e.to_string(), "--exclude cvm.dbb: there is no such CVM in the manifest or in state");
}

/// A key renamed without `moved:` is a destroy and a create, as the manifest says; the plan
/// warns that the CVM's identity goes with it.
#[test]
fn a_key_renamed_without_moved_warns_that_the_cvm_would_be_replaced() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config("cvms:\n  front:\n    name: web-main\n    compose: web.yml\n");
    let p = run(&cfg, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    assert_eq!(p.summary(), (1, 0, 1));
    assert!(p.warnings.iter().any(|w| w.contains("add `moved: [{from: cvm.web, to: cvm.front}]`")), "{:?}", p.warnings);
    let other = f.config("cvms:\n  front:\n    name: front-main\n    compose: web.yml\n");
    assert!(run(&other, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal).warnings.is_empty());
}
