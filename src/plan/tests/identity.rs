//! The planner's identity rules (issue 18): renames in place, `moved:`, `prevent_destroy`,
//! and targeting.

use super::*;

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
    // Names are compared without letter case: a swap in other case is a swap too, and the
    // error shows the names as the manifest writes them.
    let cfg = f.config(
        "cvms:\n  a:\n    name: NAME-B\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n  b:\n    name: Name-A\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n",
    );
    let e = try_plan(&cfg, &s, None, Mode::Normal, &Requests::default()).unwrap_err();
    assert_eq!(e.to_string(), "renames form a cycle: cvm.a → `NAME-B`, cvm.b → `Name-A`");
    // A case-only rename frees nothing another waits for.
    let cfg = f.config(
        "cvms:\n  a:\n    name: Name-A\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n  b:\n    name: name-b\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n",
    );
    assert_eq!(run(&cfg, &s, None, Mode::Normal).summary(), (0, 1, 0));
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
    // What the run did not name is explained: pulled in (when it changes), or left out.
    let why = |mode: Mode, target: &[&str], exclude: &[&str], s: &Snapshot| {
        let to = |l: &[&str]| l.iter().map(|a| Address::from(*a)).collect();
        let r = Requests { target: to(target), exclude: to(exclude), ..Default::default() };
        let p = try_plan(&cfg, s, None, mode, &r).unwrap();
        p.warnings.into_iter().filter(|w| w.contains(": pulled in: ") || w.contains(": left out: ")).collect::<Vec<_>>()
    };
    assert_eq!(why(Mode::Normal, &["cvm.api"], &[], &empty), ["cvm.db: pulled in: cvm.api depends on it"]);
    assert!(why(Mode::Normal, &["cvm.api"], &[], &all).is_empty(), "cvm.db is in, but has no change");
    assert_eq!(
        why(Mode::Normal, &[], &["cvm.db"], &empty),
        [
            "cvm.api: left out: it depends on cvm.db, which --exclude names",
            "cvm.worker: left out: it depends on cvm.db, which --exclude names"
        ]
    );
    assert_eq!(
        why(Mode::Destroy, &["cvm.db"], &[], &all),
        [
            "cvm.api: pulled in: it depends on cvm.db, so it goes first",
            "cvm.worker: pulled in: it depends on cvm.db, so it goes first"
        ]
    );
    assert_eq!(why(Mode::Destroy, &[], &["cvm.api"], &all), ["cvm.db: left out: cvm.api depends on it and stays"]);
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

/// What a `moved:` entry does: (case, addresses state holds, the destination's `replicas:`,
/// the entry, the moves or the error).
type MoveCase = (
    &'static str,
    &'static [&'static str],
    u32,
    &'static str,
    Result<&'static [(&'static str, &'static str)], &'static str>,
);

const MOVE_CASES: &[MoveCase] = &[
    ("plain to plain", &["cvm.a"], 1, "{from: 'cvm.a', to: 'cvm.b'}", Ok(&[("cvm.a", "cvm.b")])),
    ("1 → N keeps the CVM as [0]", &["cvm.a"], 2, "{from: 'cvm.a', to: 'cvm.b'}", Ok(&[("cvm.a", "cvm.b[0]")])),
    (
        "N → N index to same index",
        &["cvm.a[0]", "cvm.a[1]"],
        2,
        "{from: 'cvm.a', to: 'cvm.b'}",
        Ok(&[("cvm.a[0]", "cvm.b[0]"), ("cvm.a[1]", "cvm.b[1]")]),
    ),
    (
        "N → 1 keeps [0] as the CVM, scales in the rest",
        &["cvm.a[0]", "cvm.a[1]"],
        1,
        "{from: 'cvm.a', to: 'cvm.b'}",
        Ok(&[("cvm.a[0]", "cvm.b"), ("cvm.a[1]", "cvm.b[1]")]),
    ),
    (
        "one instance",
        &["cvm.a[0]", "cvm.a[1]"],
        2,
        "{from: 'cvm.a[1]', to: 'cvm.b[1]'}",
        Ok(&[("cvm.a[1]", "cvm.b[1]")]),
    ),
    (
        "an instance to the whole CVM",
        &["cvm.a[0]", "cvm.a[1]"],
        1,
        "{from: 'cvm.a[1]', to: 'cvm.b'}",
        Ok(&[("cvm.a[1]", "cvm.b")]),
    ),
    ("plain to an instance", &["cvm.a"], 2, "{from: 'cvm.a', to: 'cvm.b[1]'}", Ok(&[("cvm.a", "cvm.b[1]")])),
    ("[0] names a one-replica CVM", &["cvm.a"], 1, "{from: 'cvm.a[0]', to: 'cvm.b'}", Ok(&[("cvm.a", "cvm.b")])),
    ("[0] of one replica is the CVM", &["cvm.a"], 1, "{from: 'cvm.a', to: 'cvm.b[0]'}", Ok(&[("cvm.a", "cvm.b")])),
    ("nothing to move", &["cvm.x"], 2, "{from: 'cvm.a', to: 'cvm.b'}", Ok(&[])),
    (
        "several instances to one",
        &["cvm.a[0]", "cvm.a[1]"],
        2,
        "{from: 'cvm.a', to: 'cvm.b[0]'}",
        Err(
            "cannot move cvm.a to cvm.b[0]: state holds 2 instances of cvm.a (cvm.a[0], cvm.a[1]), and cvm.b[0] is one instance",
        ),
    ),
    (
        "an instance the destination lacks",
        &["cvm.a"],
        2,
        "{from: 'cvm.a', to: 'cvm.b[2]'}",
        Err("cannot move cvm.a to cvm.b[2]: cvm.b has 2 replicas, so cvm.b[2] is not one of its instances"),
    ),
    (
        "destination held",
        &["cvm.a", "cvm.b"],
        1,
        "{from: 'cvm.a', to: 'cvm.b'}",
        Err("cannot move cvm.a to cvm.b: state already holds a CVM at cvm.b"),
    ),
    (
        "a whole CVM onto a CVM with instances in state",
        &["cvm.a", "cvm.b[1]"],
        2,
        "{from: 'cvm.a', to: 'cvm.b'}",
        Err("cannot move cvm.a to cvm.b[0]: state already holds a CVM at cvm.b[1]"),
    ),
    (
        "instance 0 held as the one-replica CVM",
        &["cvm.a[1]", "cvm.b"],
        2,
        "{from: 'cvm.a[1]', to: 'cvm.b[0]'}",
        Err("cannot move cvm.a[1] to cvm.b[0]: state already holds a CVM at cvm.b"),
    ),
    (
        "both cvm.a and cvm.a[0] in state",
        &["cvm.a", "cvm.a[0]"],
        2,
        "{from: 'cvm.a', to: 'cvm.b'}",
        Err("cannot move both cvm.a and cvm.a[0] to cvm.b[0]"),
    ),
];

/// `moved:` from and to each form: an address without an index names every instance (each
/// keeps its index), the destination takes the form its `replicas:` gives (1 → N keeps the
/// CVM as `[0]`), and what could mean two things is an error, never a destroy.
#[test]
fn moved_entries_of_every_form_move_whole_cvms_and_instances() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    for (what, held, replicas, entry, want) in MOVE_CASES {
        let cfg = f.config(&format!(
            "cvms:\n  b:\n    name: bbbbb\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n    replicas: {replicas}\nmoved:\n  - {entry}\n"
        ));
        let records = held
            .iter()
            .map(|a| {
                let mut r = record(a, "bbbbb", WEB, 2);
                r.ids.id = format!("id-{a}");
                r
            })
            .collect();
        let s = snap(records);
        match (try_plan(&cfg, &s, None, Mode::Normal, &Requests::default()), want) {
            (Ok(p), Ok(want)) => {
                let explicit: Vec<(&str, &str)> =
                    p.moved.iter().filter(|m| m.from.key() == "a").map(|m| (m.from.as_str(), m.to.as_str())).collect();
                assert_eq!(&explicit, want, "{what}");
                // Each moved CVM keeps its ids, and is neither replaced nor destroyed but by
                // scaling in.
                for (from, to) in *want {
                    let r = p.refreshed.iter().find(|r| r.address == **to).expect(what);
                    assert_eq!(r.ids.id, format!("id-{from}"), "{what}");
                    let c = p.changes.iter().find(|c| c.address == **to);
                    assert!(
                        c.is_none_or(|c| c.action == Action::Delete
                            && c.reasons.iter().any(|r| matches!(r, Reason::ScaledIn { .. }))),
                        "{what}: {c:#?}"
                    );
                }
            }
            (Err(e), Err(want)) => assert_eq!(e.to_string(), *want, "{what}"),
            (got, want) => panic!("{what}: got {:?}, want {want:?}", got.map(|p| p.moved)),
        }
    }
}

/// The warning for a key renamed without `moved:` suggests moving the whole CVM, which pairs
/// each instance with the same index (never `cvm.old[0]` with `cvm.new[1]`).
#[test]
fn a_replicated_key_renamed_without_moved_suggests_the_whole_move() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let held = snap(vec![record("cvm.betaa[0]", "betaa", WEB, 2), record("cvm.betaa[1]", "betaa", WEB, 2)]);
    let cfg = f.config("cvms:\n  delta:\n    name: betaa\n    compose: web.yml\n    replicas: 2\n");
    let p = run(&cfg, &held, None, Mode::Normal);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with("cvm.betaa[0], cvm.betaa[1] (CVM `betaa`) are destroyed and cvm.delta[0], cvm.delta[1] created with the same name: if cvm.delta is cvm.betaa under a new key, add `moved: [{from: cvm.betaa, to: cvm.delta}]`"),
        "{:?}",
        p.warnings
    );
    // One replica to two under a new key: the whole move again (it keeps the CVM as [0]).
    let one = snap(vec![record("cvm.oldkey", "keepme", WEB, 2)]);
    let cfg = f.config("cvms:\n  newkey:\n    name: keepme\n    compose: web.yml\n    replicas: 2\n");
    let p = run(&cfg, &one, None, Mode::Normal);
    assert!(
        p.warnings.iter().any(|w| w.contains("add `moved: [{from: cvm.oldkey, to: cvm.newkey}]`")),
        "{:?}",
        p.warnings
    );
    // Scaling in is not a rename.
    let cfg = f.config("cvms:\n  betaa:\n    name: betaa\n    compose: web.yml\n    replicas: 1\n");
    assert!(run(&cfg, &held, None, Mode::Normal).warnings.is_empty());
}
