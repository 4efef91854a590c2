//! The limits the simulated API enforces on what it is sent, as the real API does.
//!
//! Invariant: the simulator is an independent referee. These rules are written here from the
//! reference (`shared/reference/phala-cloud.md`) and the official clients' sources, never
//! imported from teeform's manifest checks: a client check that drifts from the API's must
//! show up as a refused request in the tests, not agree with itself.

/// `docker_compose_file` plus `pre_launch_script`, in UTF-8 bytes, at most (`@phala/cloud`
/// `MAX_COMPOSE_PAYLOAD_BYTES`: 200 KiB; a payload of exactly 200 KiB passes).
pub const MAX_COMPOSE_PAYLOAD_BYTES: usize = 200 * 1024;

/// The SDK's wording of the name rule (`NAME_VALIDATION_MESSAGE`).
pub const NAME_MESSAGE: &str =
    "Name must be 5-63 characters, start with letter, and contain only letters/numbers/hyphens";

/// One refused field: where (a pydantic-style `loc` below `body`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub loc: Vec<serde_json::Value>,
    pub msg: String,
}

impl Violation {
    fn at(loc: &[serde_json::Value], msg: impl Into<String>) -> Violation {
        Violation { loc: loc.to_vec(), msg: msg.into() }
    }
}

/// A CVM name: the SDK's `isValidHostname`, `^[a-zA-Z](?!.*--)([a-zA-Z0-9-]*[a-zA-Z0-9])?$`
/// with 5 to 63 characters.
pub fn name(n: &str) -> Result<(), Violation> {
    let b = n.as_bytes();
    let ok = (5..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !n.contains("--");
    if ok { Ok(()) } else { Err(Violation::at(&["name".into()], NAME_MESSAGE)) }
}

/// The size rule of the compose payload (the SDK's `validateComposePayloadSize`, message
/// included). `field` is where the payload sits in the request (`compose_file` for a
/// provision, `docker_compose_file` for an update).
pub fn compose_payload(
    field: &str,
    docker_compose_file: &str,
    pre_launch_script: Option<&str>,
) -> Result<(), Violation> {
    let total = docker_compose_file.len() + pre_launch_script.map_or(0, str::len);
    if total > MAX_COMPOSE_PAYLOAD_BYTES {
        return Err(Violation::at(
            &[field.into()],
            format!(
                "Combined size of docker_compose_file and pre_launch_script must not exceed {}KB (current: {}KB)",
                MAX_COMPOSE_PAYLOAD_BYTES / 1024,
                total.div_ceil(1024)
            ),
        ));
    }
    Ok(())
}

/// Env variable names (`allowed_envs`, `env_keys`; `at` is where the list sits in the
/// request): `[A-Za-z_][A-Za-z0-9_]*`, each once. (A list of anything but strings is refused
/// where the request is read.) UNVERIFIED for the server: the rule is the official `phala`
/// CLI's (1.1.18), which takes an argument as `KEY=VALUE` only when the key matches it; dstack
/// hands the names to the shell and docker compose, which need that shape.
pub fn env_keys(at: &[&str], keys: &[String]) -> Result<(), Violation> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, k) in keys.iter().enumerate() {
        let mut loc: Vec<serde_json::Value> = at.iter().map(|f| (*f).into()).collect();
        loc.push(i.into());
        let mut chars = k.chars();
        let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(Violation::at(
                &loc,
                format!(
                    "invalid env variable name {k:?}: use letters, digits and underscores, not starting with a digit"
                ),
            ));
        }
        if !seen.insert(k) {
            return Err(Violation::at(&loc, format!("duplicate env variable name {k:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_sdk_hostname_rule() {
        for good in ["web-1", "abcde", "A1b2C", &format!("a{}", "b".repeat(62)), "my-app-2"] {
            assert_eq!(name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "abcd",
            "1abcd",
            "-abcd",
            "abcd-",
            "ab--cd",
            "ab_cd",
            "ab.cd",
            "ab cd",
            "abcdé",
            "abcd\n",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert_eq!(name(bad).unwrap_err().msg, NAME_MESSAGE, "{bad:?}");
        }
    }

    #[test]
    fn the_compose_payload_is_at_most_200_kib_in_utf8_bytes() {
        let max = "a".repeat(MAX_COMPOSE_PAYLOAD_BYTES);
        assert_eq!(compose_payload("compose_file", &max, None), Ok(()));
        assert_eq!(compose_payload("compose_file", &max, Some("")), Ok(()));
        let e = compose_payload("compose_file", &max, Some("x")).unwrap_err();
        assert_eq!(
            e.msg,
            "Combined size of docker_compose_file and pre_launch_script must not exceed 200KB (current: 201KB)"
        );
        assert_eq!(e.loc, vec![json!("compose_file")]);
        // Bytes, not characters: 2-byte characters count twice.
        let half = "é".repeat(MAX_COMPOSE_PAYLOAD_BYTES / 2);
        assert_eq!(compose_payload("x", &half, None), Ok(()));
        assert!(compose_payload("x", &half, Some("é")).is_err());
        assert!(compose_payload("x", "", Some(&format!("{max}!"))).is_err(), "the script counts too");
    }

    #[test]
    fn env_keys_are_identifiers_each_once() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(env_keys(&["allowed_envs"], &keys(&["A", "_b", "C_1", "lower"])), Ok(()));
        assert_eq!(env_keys(&["allowed_envs"], &[]), Ok(()));
        for (bad, at) in [
            (keys(&["1A"]), 0),
            (keys(&["A", "B-C"]), 1),
            (keys(&["A B"]), 0),
            (keys(&[""]), 0),
            (keys(&["A=B"]), 0),
            (keys(&["É"]), 0),
            (keys(&["A", "A"]), 1),
        ] {
            let e = env_keys(&["compose_file", "allowed_envs"], &bad).unwrap_err();
            assert_eq!(e.loc, vec![json!("compose_file"), json!("allowed_envs"), json!(at)], "{bad:?}");
        }
    }
}
