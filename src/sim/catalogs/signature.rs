//! OCI request signatures as the simulator checks them (draft-cavage HTTP Signatures,
//! `rsa-sha256`), written here and not taken from the client's signer: the simulator referees
//! what teeform's OCI client sends.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use sha2::Sha256;

/// Checks the HTTP signature; `Err` is the reason for a 401.
pub(super) fn check_signature(
    headers: &HeaderMap,
    target: &str,
    public_key: Option<&str>,
    now: std::time::SystemTime,
) -> Result<(), String> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization header")?;
    let p = signature_params(auth).ok_or("the Authorization header is not `Signature ...`")?;
    let field = |k: &str| p.get(k).map(String::as_str).ok_or(format!("the signature has no `{k}`"));
    if field("algorithm")? != "rsa-sha256" {
        return Err("algorithm must be rsa-sha256".into());
    }
    if p.get("version").is_some_and(|v| v != "1") {
        return Err("signature version must be 1".into());
    }
    if field("keyId")?.split('/').count() != 3 {
        return Err("keyId must be TENANCY/USER/FINGERPRINT".into());
    }
    let names: Vec<&str> = field("headers")?.split_whitespace().collect();
    let date_name = names.iter().find(|n| matches!(**n, "date" | "x-date")).ok_or("date is not signed")?;
    if !names.contains(&"(request-target)") || !names.contains(&"host") {
        return Err("(request-target) and host must be signed".into());
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).ok_or(format!("no `{n}` header"));
    // Lenient about the weekday: the signing spec's own example date (in the vectors) has a
    // wrong one. UNVERIFIED: how strictly OCI itself parses the date.
    let date = jiff::fmt::rfc2822::DateTimeParser::new()
        .relaxed_weekday(true)
        .parse_timestamp(header(date_name)?)
        .map_err(|_| format!("`{date_name}` is not an HTTP date"))?;
    let now = jiff::Timestamp::try_from(now).map_err(|e| e.to_string())?;
    if now.duration_since(date).abs() > jiff::SignedDuration::from_secs(300) {
        return Err("the date is more than 5 minutes off".into());
    }
    let mut lines = Vec::new();
    for n in &names {
        let v = if *n == "(request-target)" { format!("get {target}") } else { header(n)?.to_string() };
        lines.push(format!("{n}: {v}"));
    }
    let Some(pem) = public_key else { return Ok(()) };
    use base64::Engine;
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let key = rsa::PublicKey::from_public_key_pem(pem)
        .or_else(|_| rsa::PublicKey::from_pkcs1_pem(pem))
        .map_err(|e| format!("the simulator's OCI public key is unreadable: {e}"))?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(field("signature")?)
        .map_err(|_| "the signature is not base64")?;
    key.pkcs1v15_verify::<Sha256>(lines.join("\n").as_bytes(), &sig).map_err(|_| "the signature does not verify".into())
}

/// The parameters of an `Authorization: Signature ...` header: `name="value"` pairs separated
/// by commas, whitespace around them allowed, the scheme in any case. `None` for another
/// scheme, a value that is not a quoted string, or a parameter given twice.
fn signature_params(header: &str) -> Option<BTreeMap<String, String>> {
    let (scheme, mut rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Signature") {
        return None;
    }
    let mut out = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        let (name, after) = rest.split_once('=')?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let quoted = after.trim_start().strip_prefix('"')?;
        let (value, after) = quoted.split_once('"')?;
        if out.insert(name.to_string(), value.to_string()).is_some() {
            return None;
        }
        rest = after.trim_start();
        if rest.is_empty() {
            return Some(out);
        }
        rest = rest.strip_prefix(',')?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const PUBLIC_KEY: &str = include_str!("../../../tests/fixtures/oci/key_pub.pem");
    const OTHER_KEY: &str = include_str!("../../../tests/fixtures/oci/other_pub.pem");

    /// The headers and target of a signing vector made by Oracle's own signer.
    fn vector(name: &str) -> (HeaderMap, String, std::time::SystemTime) {
        let path = format!("{}/tests/fixtures/oci/{name}", env!("CARGO_MANIFEST_DIR"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut h = HeaderMap::new();
        for (k, val) in v["headers"].as_object().unwrap() {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), val.as_str().unwrap().parse().unwrap());
        }
        if let Some(host) = v["host"].as_str() {
            h.insert("host", host.parse().unwrap());
        }
        let target = v["path_url"].as_str().or(v["path"].as_str()).unwrap().to_string();
        let date = h.get("date").or(h.get("x-date")).unwrap().to_str().unwrap().to_string();
        let when = jiff::fmt::rfc2822::DateTimeParser::new().relaxed_weekday(true).parse_timestamp(&date).unwrap();
        (h, target, std::time::UNIX_EPOCH + std::time::Duration::from_secs(when.as_second() as u64))
    }

    #[test]
    fn accepts_what_oracles_signer_made_and_nothing_else() {
        for name in ["vector.json", "vector_xdate.json"] {
            let (h, target, when) = vector(name);
            assert_eq!(check_signature(&h, &target, Some(PUBLIC_KEY), when), Ok(()), "{name}");
            assert_eq!(check_signature(&h, &target, None, when), Ok(()), "{name}: no key configured");
            let wrong_key = check_signature(&h, &target, Some(OTHER_KEY), when);
            assert_eq!(wrong_key.unwrap_err(), "the signature does not verify");
            let tampered = check_signature(&h, &target.replace("limit=50", "limit=51"), Some(PUBLIC_KEY), when);
            assert_eq!(tampered.unwrap_err(), "the signature does not verify");
            let late = when + std::time::Duration::from_secs(301);
            assert!(check_signature(&h, &target, Some(PUBLIC_KEY), late).unwrap_err().contains("5 minutes"));
        }
        let (mut h, target, when) = vector("vector.json");
        h.remove("authorization");
        assert!(check_signature(&h, &target, None, when).is_err());
    }

    #[test]
    fn the_authorization_header_is_read_as_quoted_parameters() {
        let p = signature_params(r#"Signature version="1",keyId="t/u/f", algorithm="rsa-sha256" ,headers="date (request-target) host",signature="YQ==""#)
            .unwrap();
        assert_eq!(p["version"], "1");
        assert_eq!(p["keyId"], "t/u/f");
        assert_eq!(p["algorithm"], "rsa-sha256");
        assert_eq!(p["headers"], "date (request-target) host");
        assert_eq!(p["signature"], "YQ==");
        assert!(signature_params(r#"signature keyId="a""#).is_some(), "the scheme in any case");
        for bad in [
            r#"Bearer keyId="a""#,
            r#"Signature keyId=a"#,
            r#"Signature keyId="a"#,
            r#"Signature keyId="a" algorithm="b""#,
            r#"Signature keyId="a",keyId="b""#,
            r#"Signature ="a""#,
            r#"Signature key Id="a""#,
            "Signature",
            "Signature ",
        ] {
            assert_eq!(signature_params(bad), None, "{bad}");
        }
    }
}
