//! Planner tests: each case is a manifest, a prior state and (optionally) what refresh saw,
//! checked through the rendered plan (snapshots) so the planner's API can change freely.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::diff::diff_attrs;
use super::preview::preview_update;
use super::*;
use crate::manifest::{LoadOptions, Ref, load_str};
use crate::model::{CloudIds, EnvVal, OutputValue, Power};
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
            ..Default::default()
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
        surge: false,
        address: addr.into(),
        ids: CloudIds { id: format!("id-{name}"), app_id: Some(format!("app{name}")), ..Default::default() },
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
        unverified: None,
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
    run_with(cfg, snapshot, refreshed, mode, &Digester::argon2id(&snapshot.meta.salt))
}

fn run_with(
    cfg: &Config,
    snapshot: &Snapshot,
    refreshed: Option<&BTreeMap<String, Refresh>>,
    mode: Mode,
    digests: &Digester,
) -> Plan {
    plan_with(cfg, snapshot, refreshed, mode, &Requests::default(), digests).unwrap()
}

fn try_plan(
    cfg: &Config,
    snapshot: &Snapshot,
    refreshed: Option<&BTreeMap<String, Refresh>>,
    mode: Mode,
    requests: &Requests,
) -> Result<Plan, PlanError> {
    plan_with(cfg, snapshot, refreshed, mode, requests, &Digester::argon2id(&snapshot.meta.salt))
}

fn plan_with(
    cfg: &Config,
    snapshot: &Snapshot,
    refreshed: Option<&BTreeMap<String, Refresh>>,
    mode: Mode,
    requests: &Requests,
    digests: &Digester,
) -> Result<Plan, PlanError> {
    let s = secrets();
    let r: Option<BTreeMap<Address, Refresh>> =
        refreshed.map(|r| r.iter().map(|(k, v)| (k.as_str().into(), v.clone())).collect());
    plan(&Input { config: cfg, snapshot, refreshed: r.as_ref(), secrets: &s, digests, mode, requests, unmanaged: &[] })
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
        os_image_hash: None,
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
        os_image_hash: None,
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

/// A record of `cvm.web` whose `DB_PASSWORD` digest `d` made of `value`.
fn secret_record(d: &Digester, value: &str) -> ResourceRecord {
    let mut rec = record("cvm.web", "web-main", WEB, 2);
    rec.attrs.env.insert(
        "DB_PASSWORD".into(),
        EnvVal { digest: Some(d.digest("cvm.web", "DB_PASSWORD", value)), ..Default::default() },
    );
    rec
}

const SECRET_WEB: &str =
    "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\n";

fn pass(s: &str) -> crate::secrets::Secret {
    crate::secrets::Secret::new(s.into())
}

#[test]
fn a_rotated_secret_is_one_change_in_both_modes() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(SECRET_WEB);
    for d in [Digester::argon2id("00"), Digester::new("00", Some(&pass("a passphrase for tests")), None)] {
        let same = run_with(&cfg, &snap(vec![secret_record(&d, "hunter2")]), None, Mode::Normal, &d);
        assert!(!same.has_changes() && same.redigested.is_empty(), "{d:?}: {:?}", same.changes);
        let p = run_with(&cfg, &snap(vec![secret_record(&d, "the old one")]), None, Mode::Normal, &d);
        assert_eq!(p.changes.len(), 1, "{d:?}");
        assert_eq!(p.changes[0].action, Action::Update);
        assert_eq!(p.changes[0].attributes.iter().map(|a| a.name).collect::<Vec<_>>(), vec![Attr::Env]);
        assert_eq!(p.changes[0].reasons, vec![Reason::RestartsCvm]);
        assert!(p.redigested.is_empty() && p.refreshed.is_empty(), "{:?}", p.redigested);
        assert!(!p.warnings.iter().any(|w| w.contains("cannot be compared")), "{:?}", p.warnings);
    }
}

#[test]
fn switching_modes_with_the_old_key_rewrites_digests_in_state_and_restarts_nothing() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(SECRET_WEB);
    let (old, new) = (pass("the passphrase before"), pass("the passphrase after!"));
    let argon = Digester::argon2id("00");
    let by_old = Digester::new("00", Some(&old), None);
    let cases = [
        ("Argon2id to keyed", &argon, Digester::new("00", Some(&new), None)),
        ("rotation", &by_old, Digester::new("00", Some(&new), Some(&old))),
        ("keyed to Argon2id", &by_old, Digester::new("00", None, Some(&old))),
    ];
    for (what, made, now) in cases {
        let p = run_with(&cfg, &snap(vec![secret_record(made, "hunter2")]), None, Mode::Normal, &now);
        assert!(!p.has_changes(), "{what}: {:?}", p.changes);
        assert_eq!(p.redigested.len(), 1, "{what}");
        assert_eq!(p.redigested[0].keys, vec!["DB_PASSWORD".to_string()]);
        assert_eq!(p.redigested[0].to, now.describe());
        // State gets the digest in the new mode; the next plan compares it directly.
        let rec = &p.refreshed[0];
        assert_eq!(rec.attrs.env["DB_PASSWORD"].digest, Some(now.digest("cvm.web", "DB_PASSWORD", "hunter2")));
        let again = run_with(&cfg, &snap(vec![rec.clone()]), None, Mode::Normal, &now);
        assert!(!again.has_changes() && again.redigested.is_empty() && again.refreshed.is_empty(), "{what}");
        let text = render::render(&p, &Palette::plain());
        assert!(text.contains("No changes."), "{what}: {text}");
        assert!(text.contains("1 secret digest in 1 CVM"), "{what}: {text}");

        // A value that changed at the same time is one change, as any rotation.
        let p = run_with(&cfg, &snap(vec![secret_record(made, "rotated")]), None, Mode::Normal, &now);
        assert_eq!(p.changes.len(), 1, "{what}");
        assert_eq!(p.changes[0].reasons, vec![Reason::RestartsCvm], "{what}");
        assert!(p.redigested.is_empty());
    }
}

#[test]
fn digests_made_with_a_key_the_run_lacks_are_resent_and_the_plan_says_why() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(SECRET_WEB);
    let lost = Digester::new("00", Some(&pass("a passphrase now lost")), None);
    let now = Digester::new("00", Some(&pass("a brand new passphrase")), None);
    let p = run_with(&cfg, &snap(vec![secret_record(&lost, "hunter2")]), None, Mode::Normal, &now);
    assert_eq!(p.changes.len(), 1);
    let want = Reason::SecretsResent {
        keys: vec!["DB_PASSWORD".into()],
        made_with: crate::secrets::Made::of(
            p.changes[0].before.as_ref().unwrap().env["DB_PASSWORD"].digest.as_deref().unwrap(),
        )
        .describe(),
        now: now.describe(),
    };
    assert_eq!(p.changes[0].reasons, vec![Reason::RestartsCvm, want]);
    let text = render::render(&p, &Palette::plain());
    assert!(text.contains("warning: 1 secret value in 1 CVM cannot be compared"), "{text}");
    assert!(text.contains("TEEFORM_PREVIOUS_SECRETS_PASSPHRASE"), "{text}");
    assert!(text.contains("note: DB_PASSWORD: state's digest was made with the passphrase of key"), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("passphrase now lost"));
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
        os_image_hash: None,
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

mod identity;
mod replicas;
