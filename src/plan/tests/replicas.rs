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
    // An instance, with what it waits for: instance 0 it is made from, the batch before.
    assert_eq!(got, ["cvm.web[0]", "cvm.web[1]", "cvm.web[2]"]);
    let unknown = Requests { target: vec![Address::from("cvm.web[3]")], ..Default::default() };
    assert!(matches!(
        try_plan(&cfg, &snap(vec![]), None, Mode::Normal, &unknown),
        Err(PlanError::UnknownAddress { .. })
    ));
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

#[test]
fn an_update_that_restarts_nothing_makes_no_surge() {
    let f = Fixture::new(&[("web.yml", WEB)]);
    let cfg =
        f.config(&web(3, "    update_policy: {max_unavailable: 0, max_surge: 1}\n").replace("web-main", "web-renamed"));
    let p = run(&cfg, &snap(instances(3, WEB)), None, Mode::Normal);
    assert_eq!(p.count(Action::Update), 3, "{:?}", addresses(&p));
    assert!(p.rolls[0].surge.is_empty() && p.count(Action::Create) == 0, "{:?}", addresses(&p));
}
