use super::*;
use crate::providers::MAX_PAGES;

#[test]
fn rewrites_ids_like_the_sdk() {
    let cases = [
        ("550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "app_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("my-app", "my-app"),
        ("instance_0123", "instance_0123"),
    ];
    for (input, want) in cases {
        assert_eq!(path_id(input), want);
    }
}

#[test]
fn parses_a_minimal_and_a_full_detail() {
    let min = json!({"id":"abc","name":"my-app","status":"running","resource":{},"gateway":{}});
    let cvm = parse_cvm(&min).unwrap();
    assert_eq!(cvm.ids.id, "abc");
    assert!(cvm.is_ready());
    let full = json!({
        "id":"c1","name":"web-app","status":"running","app_id":"ab","vm_uuid":"u",
        "resource":{"vcpu":2,"memory_in_gb":2.0,"disk_in_gb":20,"instance_type":"tdx.small"},
        "os":{"name":"dstack-0.5.5"},"kms_type":"phala","public_logs":true,"gateway":{},
        "progress":{"target":"running"},
        "compose_file":{"docker_compose_file":"services: {}\n","allowed_envs":["A","B"],"pre_launch_script":""},
        "kms_info":{"encrypted_env_pubkey":"00ff"}
    });
    let cvm = parse_cvm(&full).unwrap();
    assert_eq!(cvm.attrs.memory, Some(2048));
    assert_eq!(cvm.attrs.env.keys().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(cvm.attrs.pre_launch_script, None);
    assert_eq!(cvm.env_pubkey.as_deref(), Some("00ff"));
    assert!(!cvm.is_ready(), "an operation is in progress");
}

#[test]
fn an_answer_of_the_wrong_shape_is_an_error_naming_the_field() {
    let base = json!({"id":"c1","name":"web-app","status":"running","resource":{"vcpu":2},"gateway":{}});
    let with = |k: &str, v: Value| {
        let mut x = base.clone();
        let mut at = &mut x;
        let parts: Vec<&str> = k.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            at = &mut at[*p];
        }
        at[parts[parts.len() - 1]] = v;
        x
    };
    let cases: &[(Value, &str)] = &[
        (with("resource", json!("2 vCPU")), "`resource`: expected an object, got a string"),
        (with("resource.vcpu", json!(1e300)), "`resource.vcpu` should be a whole number"),
        (with("resource.vcpu", json!(-1)), "`resource.vcpu` should be a whole number"),
        (with("resource.vcpu", json!(2.5)), "`resource.vcpu` should be a whole number"),
        (with("resource.vcpu", json!("2")), "`resource.vcpu` should be a whole number"),
        (with("resource.memory_in_gb", json!(1e300)), "`resource.memory_in_gb` should be a number of GiB"),
        (with("name", json!(null)), "`name` is missing"),
        (with("name", json!(7)), "`name` should be a string"),
        (with("id", json!(1.5)), "`id` should be a string or a whole number"),
        (with("public_logs", json!("yes")), "`public_logs` should be true or false"),
        (with("compose_file", json!("services: {}")), "`compose_file` is a string, but not an app-compose"),
        (with("compose_file", json!({"allowed_envs": "A,B"})), "`compose_file.allowed_envs` should be a list"),
        (with("kms_info", json!([])), "`kms_info`: expected an object, got a list"),
        (json!("a string"), "expected an object, got a string"),
        (json!(null), "expected an object, got nothing"),
    ];
    for (v, want) in cases {
        let e = parse_cvm(v).expect_err(&v.to_string());
        assert!(e.contains(want), "{v}: got `{e}`, want `{want}`");
    }
    // Whole numbers written as floats, integer ids and nulls are fine.
    let ok = json!({"id": 42, "name": "web-app", "resource": {"vcpu": 2.0, "memory_in_gb": 1.5, "disk_in_gb": null}});
    let cvm = parse_cvm(&ok).unwrap();
    assert_eq!(
        (cvm.ids.id.as_str(), cvm.attrs.vcpu, cvm.attrs.memory, cvm.attrs.disk_size),
        ("42", Some(2), Some(1536), None)
    );
}

#[test]
fn another_cvms_answer_is_not_this_cvm() {
    let cvm = parse_cvm(&json!({
        "id": "7", "name": "web-app", "app_id": "ab12", "vm_uuid": "550e8400-e29b-41d4-a716-446655440000",
        "instance_id": "inst1", "resource": {}
    }))
    .unwrap();
    for asked in [
        "7",
        "web-app",
        "ab12",
        "0xAB12",
        "app_ab12",
        "550e8400e29b41d4a716446655440000",
        "550E8400-E29B-41D4-A716-446655440000",
        "inst1",
    ] {
        assert!(is_same_cvm(&cvm, asked), "{asked}");
    }
    for asked in ["8", "web-app2", "ab1", "550e8400e29b41d4a716446655440001", ""] {
        assert!(!is_same_cvm(&cvm, asked), "{asked}");
    }
}

#[test]
fn paging_ends_by_the_totals_seen_and_is_bounded() {
    // 10^9 pages claimed, 250 items in total: three pages.
    let mut p = Pager::new();
    let mut calls = 1;
    while p.next(if calls < 3 { 100 } else { 50 }, Some(250), Some(1_000_000_000)).unwrap() {
        calls += 1;
    }
    assert_eq!(calls, 3);
    // No totals: an empty page ends; the claimed page count ends.
    let mut p = Pager::new();
    assert!(p.next(100, None, Some(2)).unwrap());
    assert!(!p.next(100, None, Some(2)).unwrap());
    let mut p = Pager::new();
    assert!(!p.next(0, None, Some(5)).unwrap());
    // Endless full pages with no total: an error at MAX_PAGES.
    let mut p = Pager::new();
    let mut n = 0;
    let e = loop {
        match p.next(100, None, Some(u64::MAX)) {
            Ok(true) => n += 1,
            Ok(false) => panic!("ended"),
            Err(e) => break e,
        }
    };
    assert_eq!(n + 1, MAX_PAGES);
    assert!(e.contains("more than 1000 pages"), "{e}");
}
