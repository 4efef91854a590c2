//! The app-compose document a CVM boots with, and its compose hash.
//!
//! The hash is `sha256` over the compact, recursively key-sorted JSON of the app compose, as
//! `getComposeHash` in `@phala/dstack-sdk` / `@phala/cloud` computes it (reference §4). The
//! platform's answer is authoritative at apply time; this is the plan-time preview and the
//! simulator's own hash.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The fields of an app compose teeform controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFields<'a> {
    pub name: &'a str,
    pub docker_compose_file: &'a str,
    pub pre_launch_script: Option<&'a str>,
    pub allowed_envs: &'a [String],
    pub kms_enabled: bool,
    pub gateway_enabled: bool,
    pub public_logs: bool,
    pub public_sysinfo: bool,
    pub public_tcbinfo: bool,
}

/// A new app compose with dstack's canonical field set (reference §4, vmm-cli
/// `create_app_compose`). Which exact set Phala Cloud's backend writes is UNVERIFIED; the
/// simulator and teeform's preview both use this one.
pub fn build(f: &ComposeFields) -> Value {
    let mut m = Map::new();
    m.insert("manifest_version".into(), 2.into());
    m.insert("name".into(), f.name.into());
    m.insert("runner".into(), "docker-compose".into());
    m.insert("docker_compose_file".into(), f.docker_compose_file.into());
    m.insert("kms_enabled".into(), f.kms_enabled.into());
    m.insert("gateway_enabled".into(), f.gateway_enabled.into());
    m.insert("public_logs".into(), f.public_logs.into());
    m.insert("public_sysinfo".into(), f.public_sysinfo.into());
    m.insert("public_tcbinfo".into(), f.public_tcbinfo.into());
    m.insert("local_key_provider_enabled".into(), false.into());
    m.insert("key_provider_id".into(), "".into());
    m.insert("allowed_envs".into(), f.allowed_envs.into());
    m.insert("no_instance_id".into(), false.into());
    m.insert("secure_time".into(), false.into());
    if let Some(s) = f.pre_launch_script {
        m.insert("pre_launch_script".into(), s.into());
    }
    Value::Object(m)
}

/// Changes to an existing app compose, as a `PATCH /cvms/{id}` applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposePatch<'a> {
    pub docker_compose_file: Option<&'a str>,
    pub pre_launch_script: Option<&'a str>,
    pub allowed_envs: Option<&'a [String]>,
    pub public_logs: Option<bool>,
    pub public_sysinfo: Option<bool>,
    pub public_tcbinfo: Option<bool>,
}

impl ComposePatch<'_> {
    pub fn is_empty(&self) -> bool {
        *self == ComposePatch::default()
    }
}

pub fn patch(app_compose: &Value, p: &ComposePatch) -> Value {
    let mut v = app_compose.clone();
    let Some(m) = v.as_object_mut() else { return v };
    if let Some(s) = p.docker_compose_file {
        m.insert("docker_compose_file".into(), s.into());
    }
    // An empty script removes it, as the simulator does (and as the SDK's normalising hash
    // treats an empty one).
    match p.pre_launch_script {
        Some("") => {
            m.remove("pre_launch_script");
        }
        Some(s) => {
            m.insert("pre_launch_script".into(), s.into());
        }
        None => {}
    }
    if let Some(a) = p.allowed_envs {
        m.insert("allowed_envs".into(), a.into());
    }
    for (k, b) in
        [("public_logs", p.public_logs), ("public_sysinfo", p.public_sysinfo), ("public_tcbinfo", p.public_tcbinfo)]
    {
        if let Some(b) = b {
            m.insert(k.into(), b.into());
        }
    }
    v
}

/// The bytes `JSON.stringify` writes for the SDK's key-sorted copy of `v`: compact, keys
/// sorted at every level, independent of serde_json's `preserve_order` feature (which another
/// crate could switch on for the whole build). Two JavaScript details matter:
/// - the SDK sorts keys by UTF-16 code units and rebuilds each object in that order, but a JS
///   object lists integer-like keys ("0", "42") first, in numeric order;
/// - numbers print as ECMAScript's `Number::toString` does (`1`, not `1.0`; `1e+21`).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// An array index as ECMAScript defines it: a canonical decimal below 2^32 - 1.
fn array_index(k: &str) -> Option<u32> {
    let n: u32 = k.parse().ok()?;
    (n != u32::MAX && n.to_string() == k).then_some(n)
}

fn js_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (array_index(a), array_index(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.encode_utf16().cmp(b.encode_utf16()),
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| js_key_order(a, b));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("a string serializes"));
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        // JS numbers are doubles: big integers round the same way here.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => out.push_str(ryu_js::Buffer::new().format_finite(f)),
            _ => out.push_str("null"),
        },
        leaf => out.push_str(&serde_json::to_string(leaf).expect("a JSON leaf serializes")),
    }
}

/// `getComposeHash(app_compose)` of the official SDK: lowercase hex, no `0x`.
pub fn hash(app_compose: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(app_compose).as_bytes()))
}

/// The other hash the official SDK computes: `@phala/cloud`'s `getCvmComposeFile().getHash()`
/// (normalised, keys sorted, 4-space indented, `":` without a space — the SDK applies that
/// replacement to the whole text, string values included). Phala Cloud's backend may write
/// app-compose.json this way (UNVERIFIED); the simulator can, so tests see a preview that
/// differs from the API's hash.
pub fn hash_indent4(app_compose: &Value) -> String {
    hex::encode(Sha256::digest(indent4_json(app_compose).as_bytes()))
}

/// The serialisation [`hash_indent4`] hashes.
pub fn indent4_json(app_compose: &Value) -> String {
    let mut v = app_compose.clone();
    if let Some(m) = v.as_object_mut() {
        match m.get("runner").and_then(|r| r.as_str()) {
            Some("bash") => {
                m.remove("docker_compose_file");
            }
            Some("docker-compose") => {
                m.remove("bash_script");
            }
            _ => {}
        }
        if m.get("pre_launch_script").is_some_and(|p| p.as_str() == Some("") || p.is_null()) {
            m.remove("pre_launch_script");
        }
    }
    let mut out = String::new();
    write_indented(&v, 0, &mut out);
    out.replace("\": ", "\":")
}

fn write_indented(v: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| " ".repeat(4 * d);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                out.push_str(&pad(depth + 1));
                out.push_str(&serde_json::to_string(k).expect("a string serializes"));
                out.push_str(": ");
                write_indented(&m[k.as_str()], depth + 1, out);
            }
            out.push('\n');
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                out.push_str(&pad(depth + 1));
                write_indented(x, depth + 1, out);
            }
            out.push('\n');
            out.push_str(&pad(depth));
            out.push(']');
        }
        leaf => out.push_str(&serde_json::to_string(leaf).expect("a JSON leaf serializes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indented_variant_matches_the_sdk_vectors() {
        let v: Value = serde_json::from_str(include_str!("../tests/fixtures/compose-hash-vectors.json")).unwrap();
        for vec in v["vectors"].as_array().unwrap() {
            let sdk = &vec["phala_cloud_0_2_9"];
            assert_eq!(indent4_json(&vec["input"]), sdk["serialized"].as_str().unwrap(), "{}", vec["name"]);
            assert_eq!(
                hash_indent4(&vec["input"]),
                sdk["hash_indent4_getCvmComposeFile_getHash"].as_str().unwrap(),
                "{}",
                vec["name"]
            );
        }
    }

    #[test]
    fn matches_the_sdk_vectors() {
        let v: Value = serde_json::from_str(include_str!("../tests/fixtures/compose-hash-vectors.json")).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 3);
        for vec in vectors {
            let input = &vec["input"];
            assert_eq!(canonical_json(input), vec["compact_sorted_json"].as_str().unwrap(), "{}", vec["name"]);
            assert_eq!(
                hash(input),
                vec["dstack_sdk_0_5_8"]["hash_normalize_false"].as_str().unwrap(),
                "{}",
                vec["name"]
            );
        }
    }

    #[test]
    fn writes_what_javascript_writes() {
        // Expected strings are node 20's JSON.stringify of the SDK's sorted copy.
        let v = serde_json::json!({"b": 1, "10": 2, "9": 3, "a": {"2": 1, "01": 2, "x": 3},
            "f": 1.0, "g": 1e21, "h": 1.5e-7, "i": 123456789012345680000.0, "k": "\u{1}\u{7f}é"});
        assert_eq!(
            canonical_json(&v),
            "{\"9\":3,\"10\":2,\"a\":{\"2\":1,\"01\":2,\"x\":3},\"b\":1,\"f\":1,\"g\":1e+21,\"h\":1.5e-7,\"i\":123456789012345680000,\"k\":\"\\u0001\u{7f}é\"}"
        );
    }

    #[test]
    fn patch_changes_only_given_fields() {
        let envs = vec!["A".to_string()];
        let base = build(&ComposeFields {
            name: "web-app",
            docker_compose_file: "services: {}\n",
            pre_launch_script: None,
            allowed_envs: &envs,
            kms_enabled: true,
            gateway_enabled: true,
            public_logs: true,
            public_sysinfo: true,
            public_tcbinfo: false,
        });
        assert_eq!(patch(&base, &ComposePatch::default()), base);
        let p = patch(&base, &ComposePatch { docker_compose_file: Some("services: {a: {}}\n"), ..Default::default() });
        assert_ne!(hash(&p), hash(&base));
        assert_eq!(p["allowed_envs"], base["allowed_envs"]);
        let with = patch(&base, &ComposePatch { pre_launch_script: Some("echo hi\n"), ..Default::default() });
        assert_eq!(with["pre_launch_script"], "echo hi\n");
        let without = patch(&with, &ComposePatch { pre_launch_script: Some(""), ..Default::default() });
        assert_eq!(without, base, "an empty script removes the key");
    }
}
