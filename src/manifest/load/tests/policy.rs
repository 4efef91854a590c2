//! `replicas` and `update_policy`, whose values are checked together: an invalid one is
//! reported once, never again against its pair.

use super::*;

#[test]
fn an_invalid_roll_value_is_one_error_not_a_second_about_its_pair() {
    let one = |fields: &str| {
        let e = Project::new().errors(&web(fields));
        assert_eq!(e.len(), 1, "{fields}: {e:?}");
        e[0].clone()
    };
    for (fields, want) in [
        ("    replicas: 3\n    update_policy: {max_unavailable: 0, max_surge: 1.5}\n", "update_policy.max_surge"),
        ("    replicas: 3\n    update_policy: {max_unavailable: -1, max_surge: 0}\n", "update_policy.max_unavailable"),
        ("    replicas: 3\n    update_policy: {max_unavailable: 0, max_surge: two}\n", "update_policy.max_surge"),
        ("    replicas: 2.5\n    update_policy: {max_surge: 1}\n", "replicas"),
    ] {
        let e = one(fields);
        assert!(e.contains(want) && !e.contains("both 0") && !e.contains("2 or more"), "{fields}: {e}");
    }
    // Valid values still meet the checks of the pair.
    assert!(one("    replicas: 3\n    update_policy: {max_unavailable: 0}\n").contains("both 0"));
    assert!(one("    replicas: 1\n    update_policy: {max_surge: 1}\n").contains("2 or more"));
}
