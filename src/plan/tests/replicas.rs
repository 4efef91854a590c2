//! Replicas in the planner (issue 20): instances as records, the moves `replicas:` implies,
//! roll batches, one change in the text per roll, `--target` of every instance.

use super::*;

fn web(replicas: u32, extra: &str) -> String {
    format!(
        "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n    replicas: {replicas}\n{extra}"
    )
}

/// Instances of one app, as state keeps them after an apply.
fn instances(n: u32, compose: &str) -> Vec<ResourceRecord> {
    (0..n)
        .map(|i| {
            let mut r = record(&format!("cvm.web[{i}]"), "web-main", compose, 2);
            r.ids = CloudIds { id: format!("uuid-{i}"), app_id: Some("a".repeat(40)), ..Default::default() };
            r
        })
        .collect()
}

fn addresses(p: &Plan) -> Vec<(String, Action)> {
    p.changes.iter().map(|c| (c.address.to_string(), c.action)).collect()
}

#[test]
fn one_replica_is_the_cvm_as_before_and_more_move_it_to_instance_0() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let one = snap(vec![record("cvm.web", "web-main", WEB, 2)]);
    let p = run(&f.config(&web(1, "")), &one, None, Mode::Normal);
    assert!(p.converged(), "replicas: 1 plans as a CVM always did: {}", render::render(&p, &Palette::plain()));

    let p = run(&f.config(&web(3, "")), &one, None, Mode::Normal);
    assert_eq!(p.moved, [Moved { from: "cvm.web".into(), to: "cvm.web[0]".into() }]);
    assert_eq!(addresses(&p), [("cvm.web[1]".into(), Action::Create), ("cvm.web[2]".into(), Action::Create)]);
    for c in &p.changes {
        let i = c.instance.as_ref().expect("an instance");
        assert_eq!(i.source, Some("cvm.web[0]".into()), "made from instance 0");
        assert!(c.dependencies.contains(&"cvm.web[0]".into()));
    }

    // And back: instance 0 is the CVM again, the others go.
    let p = run(&f.config(&web(1, "")), &snap(instances(3, WEB)), None, Mode::Normal);
    assert_eq!(p.moved, [Moved { from: "cvm.web[0]".into(), to: "cvm.web".into() }]);
    let mut gone = addresses(&p);
    gone.sort();
    assert_eq!(gone, [("cvm.web[1]".into(), Action::Delete), ("cvm.web[2]".into(), Action::Delete)]);
}

#[test]
fn an_update_rolls_in_batches_and_shows_as_one_change() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let cfg = f.config(&web(5, "    update_policy: {max_unavailable: 2}\n"));
    let p = run(&cfg, &snap(instances(5, WEB)), None, Mode::Normal);
    assert_eq!(p.count(Action::Update), 5);
    let deps = |i: u32| {
        let c = p.changes.iter().find(|c| c.address == Address::instance("web", i)).unwrap();
        let mut d: Vec<String> = c.dependencies.iter().map(ToString::to_string).collect();
        d.sort();
        d
    };
    // Batches {0, 1}, {2, 3}, {4}: each waits for the one before, and an update never waits
    // for instance 0 only because creates are made from it.
    assert!(deps(0).is_empty() && deps(1).is_empty(), "{:?} {:?}", deps(0), deps(1));
    assert_eq!(deps(2), ["cvm.web[0]", "cvm.web[1]"]);
    assert_eq!(deps(3), ["cvm.web[0]", "cvm.web[1]"]);
    assert_eq!(deps(4), ["cvm.web[2]", "cvm.web[3]"]);
    assert_eq!(p.rolls.len(), 1);
    assert_eq!((p.rolls[0].instances.len(), p.rolls[0].max_unavailable, p.rolls[0].restarts), (5, 2, 5));
    let text = render::render(&p, &Palette::plain());
    assert_eq!(text.matches("will be updated in-place").count(), 1, "{text}");
    assert!(text.contains("# cvm.web will be updated in-place: rolls 5 instances, at most 2 unavailable"), "{text}");
    assert!(text.contains("Plan: 0 to add, 5 to change, 0 to destroy. 5 CVM restarts."), "{text}");
    let md = markdown::markdown(&p, 65_536);
    assert_eq!(md.matches("<summary>").count(), 1, "one section for the roll: {md}");
    assert!(md.contains("rolls 5 instances, at most 2 unavailable"), "{md}");
    let json = json::to_json(&p);
    assert_eq!(json["rolls"][0]["max_unavailable"], 2);
    assert_eq!(json["resource_changes"][4]["index"], 4);

    // Instances already on the new compose (a roll paused or killed) are not rolled again.
    let mut state = instances(5, WEB);
    for r in state.iter_mut().take(2) {
        *r = ResourceRecord { attrs: CvmAttrs { compose: Some(WEB2.into()), ..r.attrs.clone() }, ..r.clone() };
    }
    let p = run(&cfg, &snap(state), None, Mode::Normal);
    assert_eq!(p.rolls[0].instances, ["cvm.web[2]", "cvm.web[3]", "cvm.web[4]"].map(Address::from));
}

#[test]
fn nodes_spread_instances_and_target_names_every_instance() {
    let f = Fixture::new(&[("web.yml", WEB), ("db.yml", WEB)]);
    let cfg = f.config(&format!(
        "{}  db:\n    name: db-main\n    compose: db.yml\n",
        web(3, "    nodes: [prod5, prod6]\n    update_policy: {pause_on_failure: false}\n")
    ));
    let p = run(&cfg, &snap(vec![]), None, Mode::Normal);
    let node = |a: &str| p.changes.iter().find(|c| c.address == a).unwrap().after.as_ref().unwrap().node.clone();
    assert_eq!(
        [node("cvm.web[0]"), node("cvm.web[1]"), node("cvm.web[2]")],
        [Some("prod5".into()), Some("prod6".into()), Some("prod5".into())]
    );
    assert!(p.changes.iter().filter_map(|c| c.instance.as_ref()).all(|i| !i.pause_on_failure));
    let target = Requests { target: vec!["cvm.web".into()], ..Default::default() };
    let p = try_plan(&cfg, &snap(vec![]), None, Mode::Normal, &target).unwrap();
    assert_eq!(p.changes.len(), 3, "cvm.web is its three instances, not cvm.db");
    let one = Requests { target: vec![Address::from("cvm.web[2]")], ..Default::default() };
    let p = try_plan(&cfg, &snap(vec![]), None, Mode::Normal, &one).unwrap();
    let mut got: Vec<String> = p.changes.iter().map(|c| c.address.to_string()).collect();
    got.sort();
    // An instance, with what it waits for: instance 0 it is made from, the batch before;
    // the warnings say why each of those is in.
    assert_eq!(got, ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    let why: Vec<&String> = p.warnings.iter().filter(|w| w.contains("pulled in")).collect();
    assert_eq!(
        why,
        ["cvm.web[0]: pulled in: cvm.web[2] is made from it", "cvm.web[1]: pulled in: cvm.web[2] is created after it"]
    );
    let out = Requests { exclude: vec!["cvm.web[0]".into()], ..Default::default() };
    let p = try_plan(&cfg, &snap(vec![]), None, Mode::Normal, &out).unwrap();
    assert!(
        p.warnings.contains(
            &"cvm.web[1]: left out: it is made from cvm.web[0] (not created yet), which --exclude names".into()
        ),
        "{:?}",
        p.warnings
    );
    let unknown = Requests { target: vec!["cvm.web[3]".into()], ..Default::default() };
    assert!(matches!(
        try_plan(&cfg, &snap(vec![]), None, Mode::Normal, &unknown),
        Err(PlanError::UnknownAddress { .. })
    ));
}

#[test]
fn instances_made_outside_are_offered_the_plans_creates_first_then_free_indices() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let remote = |uuid: &str, app: &str| RemoteCvm {
        ids: CloudIds { id: uuid.into(), vm_uuid: Some(uuid.into()), app_id: Some(app.into()), ..Default::default() },
        status: "running".into(),
        in_progress: false,
        compose_hash: None,
        attrs: CvmAttrs { name: "web-main".into(), node: Some("prod5".into()), ..Default::default() },
        app_compose: None,
        os_image_hash: None,
        env_pubkey: None,
        kms_info: None,
        boot: Default::default(),
    };
    // State has [0] and [1]; the manifest wants three, so the plan creates [2].
    let p = run(&f.config(&web(3, "")), &snap(instances(2, WEB)), None, Mode::Normal);
    assert_eq!(addresses(&p), [("cvm.web[2]".into(), Action::Create)]);
    let app = format!("app_{}", "A".repeat(40));
    let found = [remote("u-9", &app), remote("u-8", &app), remote("u-7", &"b".repeat(40))];
    let records = snap(instances(2, WEB)).resources;
    let p = unmanaged::attach(p, &f.config(&web(3, "")), &records, &found);
    let shown: Vec<_> = p
        .unmanaged
        .iter()
        .map(|u| (u.id.as_str(), u.import_as.clone(), u.instead_of_create, u.replicas_after))
        .collect();
    // Another app's instance is not shown; the first (by vm_uuid) takes the create's index.
    assert_eq!(
        shown,
        [("u-8", Some("cvm.web[2]".into()), true, None), ("u-9", Some("cvm.web[3]".into()), false, Some(4))]
    );
    assert_eq!(p.summary(), (1, 0, 0), "they are no change of the plan");
    let text = render::render(&p, &Palette::plain());
    assert!(text.contains("teeform import cvm.web[3] u-9, then set `replicas: 4` on cvm.web"), "{text}");
    // Destroying, they are shown with nothing to import.
    let d = run(&f.config(&web(3, "")), &snap(instances(2, WEB)), None, Mode::Destroy);
    let d = unmanaged::attach(d, &f.config(&web(3, "")), &records, &found[..1]);
    assert_eq!((d.unmanaged.len(), d.unmanaged[0].import_as.clone()), (1, None));
    assert!(render::render(&d, &Palette::plain()).contains("it is not teeform's to destroy"));
}

/// An instance replaced from another instance of its app keeps the app id: its plan says so,
/// and shows no compose hash change where the hash stays (issue: a node change claimed a new
/// app id and printed `~ compose_hash = X -> X`).
#[test]
fn a_replaced_instance_joins_its_app_and_shows_no_unchanged_hash() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(&web(4, "    nodes: [prod5, prod6]\n"));
    let first = run(&cfg, &snap(instances(4, WEB)), None, Mode::Normal);
    // State's hash is the one the replacement gives: the app compose does not change.
    let hash = first.changes[0].compose_hash.clone().unwrap().after;
    let mut state = instances(4, WEB);
    for r in &mut state {
        r.compose_hash = Some(hash.clone());
    }
    let p = run(&cfg, &snap(state), None, Mode::Normal);
    assert_eq!(p.count(Action::Replace), 4, "{:?}", addresses(&p));
    for c in &p.changes {
        let source = c.instance.as_ref().and_then(|i| i.source.clone()).expect("made from another instance");
        assert!(c.reasons.contains(&Reason::JoinsApp { source }), "{}: {:?}", c.address, c.reasons);
        assert!(!c.reasons.iter().any(|r| matches!(r, Reason::RotatesAppId { .. })), "{:?}", c.reasons);
    }
    let text = render::render(&p, &Palette::plain());
    assert!(!text.contains("compose_hash ="), "{text}");
    assert!(!text.contains("new app_id"), "{text}");
    assert!(text.contains("note: the replacement is made from cvm.web[0]: it keeps the app_id"), "{text}");
    let why = render::replacement_consequence(&p.changes[1]);
    assert!(why.starts_with("the new instance joins the app of cvm.web[0]"), "{why}");

    // A single CVM's replacement still gets a new app id; a hash that changes is still shown.
    let one = f.config(
        "cvms:\n  web:\n    name: web-main\n    compose: web.yml\n    vcpu: 2\n    memory: 2048\n    node: prod5\n",
    );
    let p = run(&one, &snap(vec![record("cvm.web", "web-main", WEB, 2)]), None, Mode::Normal);
    let text = render::render(&p, &Palette::plain());
    assert!(text.contains("replacement gives a new app_id"), "{text}");
    assert!(text.contains("compose_hash = aaaaaaaa"), "{text}");
}

/// An update of instances that restarts none of them (a rename, `power: stopped`) is not a
/// roll: no "rolls N instances" heading and no "0 restarts" batches note.
#[test]
fn renames_and_stops_of_instances_are_not_rolls() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    for (extra, name) in [("", "web-renamed"), ("    power: stopped\n", "web-main")] {
        let manifest = web(2, extra).replace("name: web-main", &format!("name: {name}"));
        let mut running = instances(2, WEB);
        for r in &mut running {
            r.attrs.power = Some(crate::model::Power::Running);
        }
        let p = run(&f.config(&manifest), &snap(running), None, Mode::Normal);
        assert_eq!(p.count(Action::Update), 2, "{manifest}");
        assert!(p.changes.iter().all(|c| !c.boots()), "{manifest}");
        assert!(p.rolls.is_empty(), "{manifest}: {:?}", p.rolls);
        let text = render::render(&p, &Palette::plain());
        assert!(!text.contains("rolls") && !text.contains("0 restarts"), "{text}");
        assert!(text.contains("# cvm.web[1] will be "), "{text}");
    }
    // A restart still rolls.
    let p = run(
        &f.config(&web(2, "    vcpu: 4\n").replacen("    vcpu: 2\n", "", 1)),
        &snap(instances(2, WEB)),
        None,
        Mode::Normal,
    );
    assert_eq!(p.rolls.len(), 1);
    assert!(p.changes.iter().all(Change::boots));
}

#[test]
fn a_surge_is_made_first_waited_for_by_the_first_batch_and_counted() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let cfg = f.config(&web(3, "    nodes: [prod5, prod6]\n    update_policy: {max_unavailable: 0, max_surge: 1}\n"));
    // Instances as state keeps them, on their nodes of `nodes:`.
    let placed = |n: u32, compose: &str| {
        let mut v = instances(n, compose);
        for (i, r) in v.iter_mut().enumerate() {
            r.attrs.node = Some(["prod5", "prod6"][i % 2].into());
        }
        v
    };
    let p = run(&cfg, &snap(placed(3, WEB)), None, Mode::Normal);
    let surge = &p.changes[0];
    assert_eq!((surge.address.as_str(), surge.action), ("cvm.web[3]", Action::Create));
    let i = surge.instance.as_ref().unwrap();
    assert!(i.surge && i.source == Some("cvm.web[0]".into()) && i.node.as_deref() == Some("prod6"), "{i:?}");
    assert_eq!(surge.after.as_ref().unwrap().node.as_deref(), Some("prod6"));
    assert_eq!(surge.secrets_scope, Some("cvm.web[0]".into()), "digests compare with instance 0's");
    assert_eq!(surge.reasons[0], Reason::Surge { of: "cvm.web".into() });
    let change = |a: &str| p.changes.iter().find(|c| c.address == a).unwrap();
    // Batches of max_unavailable + max_surge = 1; the first waits for the surge instance.
    assert_eq!(change("cvm.web[0]").dependencies, [Address::from("cvm.web[3]")]);
    assert_eq!(change("cvm.web[0]").instance.as_ref().unwrap().after, [Address::from("cvm.web[3]")]);
    assert_eq!(change("cvm.web[1]").dependencies, [Address::from("cvm.web[0]")]);
    assert_eq!(change("cvm.web[2]").dependencies, [Address::from("cvm.web[1]")]);
    assert_eq!(p.rolls[0].surge, [Address::from("cvm.web[3]")]);
    assert_eq!((p.summary(), p.restarts()), ((1, 3, 1), 3), "the surge's create and destroy, not a restart");

    // A surge instance a paused roll left, on the new revision: kept, no second one made.
    let mut state = placed(3, WEB);
    let mut left = record("cvm.web[3]", "web-main", WEB2, 2);
    left.surge = true;
    left.attrs.node = Some("prod6".into());
    left.secrets_scope = Some("cvm.web[0]".into());
    state.push(left.clone());
    let p = run(&cfg, &snap(state.clone()), None, Mode::Normal);
    assert!(p.changes.iter().all(|c| c.address != "cvm.web[3]"), "{:?}", addresses(&p));
    assert_eq!((p.rolls[0].surge.len(), p.summary()), (1, (0, 3, 1)));

    // `replicas:` raised onto it: it is an instance now, rolled as one, and state is told.
    let four = f.config(&web(4, "    nodes: [prod5, prod6]\n    update_policy: {max_unavailable: 0, max_surge: 1}\n"));
    let p = run(&four, &snap(state.clone()), None, Mode::Normal);
    assert_eq!(p.rolls[0].surge, [Address::from("cvm.web[4]")], "a new surge beyond the four");
    assert!(!p.changes.iter().any(|c| c.address == "cvm.web[3]" && c.action == Action::Delete), "{:?}", addresses(&p));
    assert!(p.refreshed.iter().any(|r| r.address == "cvm.web[3]" && !r.surge), "{:?}", p.refreshed);

    // With nothing left to roll it goes, said so, once every instance runs and passes.
    let mut done = placed(3, WEB2);
    done.push(left);
    let p = run(&cfg, &snap(done), None, Mode::Normal);
    assert_eq!(addresses(&p), [("cvm.web[3]".into(), Action::Delete)]);
    assert!(p.changes[0].reasons.contains(&Reason::SurgeLeftover), "{:?}", p.changes[0].reasons);
    assert_eq!(p.changes[0].instance.as_ref().unwrap().after.len(), 3);
    let text = render::render(&p, &Palette::plain());
    assert!(
        text.contains("# cvm.web[3] will be destroyed (a surge instance left by a roll that is now done)"),
        "{text}"
    );

    // Scaled in from 4 while rolling: the fourth instance serves as the surge, then goes.
    let p = run(&cfg, &snap(placed(4, WEB)), None, Mode::Normal);
    assert!(!p.changes.iter().any(|c| c.action == Action::Delete), "{:?}", addresses(&p));
    assert_eq!(p.rolls[0].surge, [Address::from("cvm.web[3]")]);
}

/// Surge addresses are never offered to an import, never counted as replicas, and a surge
/// create is never "avoided" by one (issue: `teeform import cvm.web[4] …, then set replicas: 5`
/// named the planned surge, or counted a paused roll's surge instance as a replica).
#[test]
fn instances_made_outside_wait_for_a_roll_whose_surge_holds_the_next_index() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let policy = "    update_policy: {max_unavailable: 0, max_surge: 1}\n";
    let outside = RemoteCvm {
        ids: CloudIds {
            id: "u-9".into(),
            vm_uuid: Some("u-9".into()),
            app_id: Some("a".repeat(40)),
            ..Default::default()
        },
        status: "running".into(),
        in_progress: false,
        compose_hash: None,
        attrs: CvmAttrs { name: "web-main".into(), ..Default::default() },
        app_compose: None,
        os_image_hash: None,
        env_pubkey: None,
        kms_info: None,
        boot: Default::default(),
    };
    let hint = |cfg: &Config, state: Vec<ResourceRecord>| {
        let records: BTreeMap<_, _> = state.iter().map(|r| (r.address.clone(), r.clone())).collect();
        let p = unmanaged::attach(
            run(cfg, &snap(state), None, Mode::Normal),
            cfg,
            &records,
            std::slice::from_ref(&outside),
        );
        let u = p.unmanaged[0].clone();
        (p, u)
    };
    // (a) A roll of 4 is planned with its surge at [4].
    let cfg = f.config(&web(4, policy));
    let (p, u) = hint(&cfg, instances(4, WEB));
    assert_eq!(p.rolls[0].surge, [Address::from("cvm.web[4]")]);
    assert_eq!((u.import_as, u.instead_of_create, u.replicas_after), (None, false, None));
    assert_eq!(u.after_roll, [Address::from("cvm.web[4]")]);
    let text = render::render(&p, &Palette::plain());
    assert!(
        text.contains("apply the roll of cvm.web to its end first (its surge instances hold cvm.web[4])"),
        "{text}"
    );
    assert!(!text.contains("teeform import cvm.web[4]") && !text.contains("avoids a new CVM"), "{text}");
    // (b) A paused roll of 3 left its surge at [3]: not a replica, not to be imported past.
    let cfg = f.config(&web(3, policy));
    let mut state = instances(3, WEB);
    let mut left = record("cvm.web[3]", "web-main", WEB2, 2);
    left.surge = true;
    left.ids.app_id = Some("a".repeat(40));
    state.push(left);
    let (_, u) = hint(&cfg, state.clone());
    assert_eq!((u.import_as, u.replicas_after, u.after_roll), (None, None, vec![Address::from("cvm.web[3]")]));
    // A free index below `replicas:` is still offered while the roll waits; no surge is avoided.
    state.remove(1);
    let (p, u) = hint(&cfg, state);
    assert_eq!((u.import_as, u.replicas_after), (Some("cvm.web[1]".into()), None), "{:?}", addresses(&p));
    assert!(u.after_roll.is_empty());
    // With no roll, the next index past `replicas:` is offered as before.
    let (_, u) = hint(&f.config(&web(3, policy)), instances(3, WEB2));
    assert_eq!((u.import_as, u.replicas_after), (Some("cvm.web[3]".into()), Some(4)));
}

#[test]
fn an_update_that_restarts_nothing_makes_no_surge() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg =
        f.config(&web(3, "    update_policy: {max_unavailable: 0, max_surge: 1}\n").replace("web-main", "web-renamed"));
    let p = run(&cfg, &snap(instances(3, WEB)), None, Mode::Normal);
    assert_eq!(p.count(Action::Update), 3, "{:?}", addresses(&p));
    // A rename is no roll, so no surge either.
    assert!(p.rolls.is_empty() && p.count(Action::Create) == 0, "{:?}", addresses(&p));
}

/// A scale-in says how many instances state holds, not the highest index plus one; an
/// instance past `replicas:` while an index in range is free is no scale-in (issue: after
/// `state mv 'cvm.web[2]' 'cvm.web[7]'` the plan said `replicas 8 → 3`).
#[test]
fn an_instance_past_replicas_is_destroyed_with_the_count_state_holds() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg = f.config(&web(3, ""));
    let mut state = instances(3, WEB);
    state[2].address = "cvm.web[7]".into();
    let p = run(&cfg, &snap(state.clone()), None, Mode::Normal);
    let gone = p.changes.iter().find(|c| c.address == "cvm.web[7]").unwrap();
    assert!(gone.reasons.contains(&Reason::BeyondReplicas { replicas: 3 }), "{:?}", gone.reasons);
    let text = render::render(&p, &Palette::plain());
    assert!(text.contains("# cvm.web[7] will be destroyed (its index is beyond `replicas: 3`)"), "{text}");
    assert!(!text.contains("replicas 8"), "{text}");
    // Four instances, one at [7]: a scale-in from four, whatever the indices.
    state.push(instances(3, WEB).remove(2));
    let p = run(&f.config(&web(3, "")), &snap(state), None, Mode::Normal);
    let gone = p.changes.iter().find(|c| c.address == "cvm.web[7]").unwrap();
    assert!(gone.reasons.contains(&Reason::ScaledIn { from: 4, to: 3 }), "{:?}", gone.reasons);
}

/// Instances moved past `replicas:` while lower indexes are missing: the plan names the
/// `state mv` commands that keep them, index order to index order (a tester's `state mv` to a
/// gap otherwise destroyed the app and made a new one).
#[test]
fn instances_past_replicas_beside_missing_ones_are_offered_the_moves_back() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let mut state = instances(2, WEB);
    state[0].address = "cvm.web[5]".into();
    state[1].address = "cvm.web[3]".into();
    let p = run(&f.config(&web(2, "")), &snap(state), None, Mode::Normal);
    let want = "run `teeform state mv 'cvm.web[3]' 'cvm.web[0]'`, then `teeform state mv 'cvm.web[5]' 'cvm.web[1]'` before applying";
    assert!(p.warnings.iter().any(|w| w.contains(want)), "{:#?}", p.warnings);
    // One replica: the move back is to the address without an index.
    let mut one = instances(1, WEB);
    one[0].address = "cvm.web[2]".into();
    let p = run(&f.config(&web(1, "")), &snap(one), None, Mode::Normal);
    assert!(p.warnings.iter().any(|w| w.contains("`teeform state mv 'cvm.web[2]' 'cvm.web'`")), "{:#?}", p.warnings);
    // Nothing missing, nothing to say.
    let mut four = instances(3, WEB);
    four[2].address = "cvm.web[7]".into();
    four.push(instances(3, WEB).remove(2));
    let p = run(&f.config(&web(3, "")), &snap(four), None, Mode::Normal);
    assert!(!p.warnings.iter().any(|w| w.contains("state mv")), "{:#?}", p.warnings);
}

/// A roll whose instances show the same changes is one entry: a secret's digests differ per
/// instance (salted per scope) but each shows `(sensitive value) (changed)` (issue: every
/// instance after the first was repeated "with its own differences"). A real difference still
/// shows on its own.
#[test]
fn a_roll_of_identical_shown_changes_is_one_entry_whatever_the_digests() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let env = "    env:\n      DB_PASSWORD: ${secret:env:DB_PASSWORD}\n      LOG: debug\n";
    let cfg = f.config(&web(3, env));
    let d = Digester::argon2id("00");
    let mut state = instances(3, WEB);
    for r in &mut state {
        let scope = r.address.clone();
        r.attrs.env.insert(
            "DB_PASSWORD".into(),
            EnvVal { digest: Some(d.digest(scope.as_str(), "DB_PASSWORD", "the old one")), ..Default::default() },
        );
        r.attrs.env.insert("LOG".into(), EnvVal { value: Some("info".into()), ..Default::default() });
    }
    let p = run_with(&cfg, &snap(state.clone()), None, Mode::Normal, &d);
    assert_eq!(p.count(Action::Update), 3, "{:?}", addresses(&p));
    let text = render::render(&p, &Palette::plain());
    assert!(!text.contains("its own differences"), "{text}");
    assert_eq!(text.matches("DB_PASSWORD = (sensitive value) (changed)").count(), 1, "{text}");
    assert_eq!(text.matches("image: nginx:1.28").count(), 1, "{text}");
    // Instance 2 also has a vCPU count to change: it alone is shown again.
    state[2].attrs.vcpu = Some(4);
    let p = run_with(&cfg, &snap(state), None, Mode::Normal, &d);
    let text = render::render(&p, &Palette::plain());
    assert!(
        text.contains("# cvm.web[2] will be updated in-place in the roll of cvm.web, with its own differences"),
        "{text}"
    );
    assert!(!text.contains("# cvm.web[1] will be updated in-place in the roll"), "{text}");
}

#[test]
fn batches_are_of_the_instances_a_plan_rolls_whichever_they_are() {
    let f = Fixture::new(&[("web.yml", WEB2)]);
    let deps = |p: &Plan, a: &str| {
        let c = p.changes.iter().find(|c| c.address == a).unwrap();
        (c.dependencies.clone(), c.instance.as_ref().unwrap().after.clone())
    };
    let a = |s: &[&str]| s.iter().map(|x| Address::from(*x)).collect::<Vec<_>>();
    // [1] rolled by an earlier run: batches {0}, {2}, {3}; the first waits for [1] to serve.
    let mut state = instances(4, WEB);
    state[1] = instances(2, WEB2).pop().unwrap();
    let p = run(&f.config(&web(4, "")), &snap(state.clone()), None, Mode::Normal);
    assert_eq!(deps(&p, "cvm.web[0]"), (vec![], a(&["cvm.web[1]"])));
    assert_eq!(deps(&p, "cvm.web[2]"), (a(&["cvm.web[0]"]), a(&["cvm.web[0]"])));
    assert_eq!(deps(&p, "cvm.web[3]"), (a(&["cvm.web[2]"]), a(&["cvm.web[2]"])));
    // With a surge, the first batch of that subset waits for it, whatever its index.
    let cfg = f.config(&web(4, "    update_policy: {max_unavailable: 0, max_surge: 1}\n"));
    let p = run(&cfg, &snap(state), None, Mode::Normal);
    assert_eq!(deps(&p, "cvm.web[0]"), (a(&["cvm.web[4]"]), a(&["cvm.web[4]", "cvm.web[1]"])));
    assert_eq!(deps(&p, "cvm.web[2]").0, a(&["cvm.web[0]"]));
    // Targeted at [2] alone: it waits for the surge.
    let only = Requests { target: vec!["cvm.web[2]".into()], ..Default::default() };
    let p = try_plan(&cfg, &snap(instances(4, WEB)), None, Mode::Normal, &only).unwrap();
    assert_eq!(deps(&p, "cvm.web[2]").0, a(&["cvm.web[4]"]));
}
