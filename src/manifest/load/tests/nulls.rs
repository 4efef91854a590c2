//! A key written with nothing under it (`key:`, `key: ~`, or only a comment below it).
//!
//! What the user named — a CVM, a data source, a `moved:` item, an output, a variable — is
//! never taken as absent: it is what an empty mapping would be (a CVM with no `compose`, a
//! data source with no filters) or an error at its line and column. A setting or attribute
//! left null is unset, as Terraform reads null (`name:` is the key, `lifecycle:` the
//! defaults), and a collection left null (`cvms:`, `outputs:`, `moved:`, `data:`) is empty.

use super::*;

/// A manifest with one good CVM (`ok`), then `rest`.
fn with(rest: &str) -> String {
    format!("cvms:\n  ok:\n    name: ok-app\n    compose: web.yml\n{rest}")
}

#[test]
fn a_named_entry_left_null_is_an_error_where_it_is_written() {
    let p = Project::new();
    let cases: &[(&str, String, &str)] = &[
        (
            "a CVM with only a comment",
            with("  webxx:\n    # later\n"),
            "teeform.yaml:5:3: cvm `webxx` has no `compose` file",
        ),
        ("a CVM of `~`", with("  webxx: ~\n"), "teeform.yaml:5:3: cvm `webxx` has no `compose` file"),
        ("a CVM of `null`", with("  webxx: null\n"), "teeform.yaml:5:3: cvm `webxx` has no `compose` file"),
        (
            "a CVM before another",
            "cvms:\n  webxx:\n  webyy:\n    compose: web.yml\n".into(),
            "teeform.yaml:2:3: cvm `webxx` has no `compose` file",
        ),
        ("an output", with("outputs:\n  o:\n  p: x\n"), "teeform.yaml:6:4: output `o` must be a string, found null"),
        (
            "a `moved:` item",
            with("moved:\n  -\n  - {from: cvm.a, to: cvm.ok}\n"),
            "teeform.yaml:6:3: a `moved` entry needs `from` and `to`",
        ),
        (
            "a `moved:` item's `to`",
            with("moved:\n  - from: cvm.a\n    to:\n"),
            "teeform.yaml:7:7: moved `to` must be a string, found null",
        ),
        (
            "a variable with no default",
            format!("variables:\n  v:\n{}", with("")),
            "teeform.yaml:2:3: variable `v` has no value",
        ),
        (
            "a CVM's compose",
            with("  webxx:\n    compose:\n"),
            "teeform.yaml:6:12: compose file must be a string, found null",
        ),
    ];
    for (what, manifest, want) in cases {
        let errors = p.errors(manifest);
        assert_eq!(errors.len(), 1, "{what}: {errors:#?}");
        assert!(errors[0].ends_with(want) || errors[0].contains(want), "{what}: {:?} is not {want:?}", errors[0]);
    }
}

#[test]
fn a_null_data_source_is_one_with_no_filters() {
    let p = Project::new();
    let empty = p.load(&with("data:\n  phala_os_image:\n    img: {}\n")).unwrap();
    for body in ["    img:\n", "    img: ~\n", "    img:\n    # the newest\n"] {
        let c = p.load(&with(&format!("data:\n  phala_os_image:\n{body}"))).unwrap();
        let got = c.data.get("data.phala_os_image.img").unwrap_or_else(|| panic!("{body:?} vanished"));
        assert_eq!(got.query(), empty.data["data.phala_os_image.img"].query(), "{body:?}");
    }
}

#[test]
fn settings_and_collections_left_null_are_unset_or_empty() {
    let p = Project::new();
    let base = p.load(&with("")).unwrap();
    for (what, manifest) in [
        ("cvms:", "cvms:\n".to_string()),
        ("outputs:", with("outputs:\n")),
        ("moved:", with("moved:\n")),
        ("data:", with("data:\n")),
        ("a data kind", with("data:\n  phala_os_image:\n")),
        ("verify:", format!("verify:\n{}", with(""))),
    ] {
        let c = p.load(&manifest).unwrap_or_else(|e| panic!("{what}: {:#?}", shown(&e)));
        assert!(c.outputs.is_empty() && c.moved.is_empty() && c.data.is_empty(), "{what}");
        assert_eq!(c.verify, base.verify, "{what}");
    }
    for field in ["vcpu:", "lifecycle:", "lint:", "update_policy:", "replicas:", "env:", "health:", "kms:"] {
        let c = p.load(&with(&format!("    {field}\n"))).unwrap_or_else(|e| panic!("{field}: {:#?}", shown(&e)));
        let ok = &c.cvms["ok"];
        assert_eq!((ok.replicas, ok.prevent_destroy, ok.env.len()), (1, false, 0), "{field}");
        assert_eq!(ok.attrs.vcpu, None, "{field}");
    }
    // `name:` left null is the key, as when it is not written.
    let c = p.load("cvms:\n  webxx:\n    name:\n    compose: web.yml\n").unwrap();
    assert_eq!(c.cvms["webxx"].name, "webxx");
}
