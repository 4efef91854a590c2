//! OCI Core Services `ListImages` (seed 003): `GET /20160918/images`, signed with the API key
//! from an OCI config file, following `opc-next-page` through every page.

pub mod config;
pub mod signer;

use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde::Deserialize;

use super::http::{self, Idempotency, RetryPolicy};
use super::{ApiError, ErrorKind};
use signer::{DateHeader, Signer};

/// The Core Services API version path.
pub const API_PATH: &str = "/20160918";

/// Page size asked for; the server may return fewer.
const PAGE_LIMIT: u32 = 100;

/// The most pages one listing may take (100,000 images at full pages).
const MAX_PAGES: usize = 1000;

/// The commercial realm's endpoint for a region. Other realms (government, EU sovereign)
/// use other domains: set `provider.oci.endpoint` there.
pub fn default_endpoint(region: &str) -> String {
    format!("https://iaas.{region}.oraclecloud.com")
}

pub struct OciClient {
    http: reqwest::Client,
    /// Ends with the API version path, e.g. `https://iaas.us-ashburn-1.oraclecloud.com/20160918`.
    base: url::Url,
    signer: Signer,
    policy: RetryPolicy,
}

impl std::fmt::Debug for OciClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciClient").field("base", &self.base.as_str()).field("signer", &self.signer).finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciQuery {
    pub compartment: String,
    pub operating_system: Option<String>,
    pub operating_system_version: Option<String>,
    pub shape: Option<String>,
    /// Server-side exact match.
    pub display_name: Option<String>,
    /// e.g. `AVAILABLE`.
    pub lifecycle_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciImage {
    pub id: String,
    /// Platform images have none, though the spec marks it required.
    #[serde(default)]
    pub compartment_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    pub operating_system: String,
    pub operating_system_version: String,
    pub lifecycle_state: String,
    #[serde(deserialize_with = "timestamp")]
    pub time_created: jiff::Timestamp,
    #[serde(default)]
    pub launch_mode: Option<String>,
    #[serde(default)]
    pub size_in_m_bs: Option<u64>,
    #[serde(default)]
    pub base_image_id: Option<String>,
}

fn timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<jiff::Timestamp, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|e| serde::de::Error::custom(format!("timeCreated `{s}` is not RFC 3339: {e}")))
}

/// The `Host` header value for a URL: the host and any non-default port.
pub fn host_header(u: &url::Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// The request target as it goes on the wire: path and query, already encoded.
pub fn request_target(u: &url::Url) -> String {
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

impl OciClient {
    /// `endpoint` is a base URL; `/20160918` is added when it does not end with it (as the
    /// Python SDK does).
    pub fn new(endpoint: &str, signer: Signer, timeout: Duration) -> Result<OciClient, ApiError> {
        let local = |m: String| ApiError::local(ErrorKind::Other, "-", endpoint, m);
        let trimmed = endpoint.trim_end_matches('/');
        let full = if trimmed.ends_with(API_PATH) { trimmed.to_string() } else { format!("{trimmed}{API_PATH}") };
        let base = url::Url::parse(&full).map_err(|e| local(format!("`{endpoint}` is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(local(format!("`{endpoint}` is not an http(s) URL")));
        }
        let http = http::client(timeout, endpoint)?;
        Ok(OciClient { http, base, signer, policy: RetryPolicy::default() })
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The URL of one page of the listing, newest first.
    pub fn list_url(&self, q: &OciQuery, page: Option<&str>) -> url::Url {
        let mut u = self.base.clone();
        u.set_path(&format!("{}/images", u.path().trim_end_matches('/')));
        {
            let mut qp = u.query_pairs_mut();
            qp.append_pair("compartmentId", &q.compartment);
            let optional = [
                ("displayName", &q.display_name),
                ("operatingSystem", &q.operating_system),
                ("operatingSystemVersion", &q.operating_system_version),
                ("shape", &q.shape),
                ("lifecycleState", &q.lifecycle_state),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    qp.append_pair(k, v);
                }
            }
            qp.append_pair("sortBy", "TIMECREATED").append_pair("sortOrder", "DESC");
            qp.append_pair("limit", &PAGE_LIMIT.to_string());
            if let Some(p) = page {
                qp.append_pair("page", p);
            }
        }
        u
    }

    /// Every image matching `q`, following `opc-next-page` to the last page.
    pub async fn list_images(&self, q: &OciQuery) -> Result<Vec<OciImage>, ApiError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let url = self.list_url(q, page.as_deref());
            let (target, host) = (request_target(&url), host_header(&url));
            let method = Method::GET;
            let resp = http::send(&self.policy, None, Idempotency::Safe, &method, &target, || {
                // Each attempt is signed afresh: the date is part of the signature.
                let date = httpdate::fmt_http_date(SystemTime::now());
                let b = self
                    .http
                    .get(url.clone())
                    .header("host", &host)
                    .header("date", &date)
                    .header("accept", "application/json")
                    .header("opc-request-id", uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase());
                match self.signer.authorization(DateHeader::Date, &date, "GET", &target, &host) {
                    Ok(auth) => b.header("authorization", auth),
                    // Not reachable with a key that loaded; sent unsigned, the server says 401.
                    Err(_) => b,
                }
            })
            .await?;
            let next = resp.headers().get("opc-next-page").and_then(|v| v.to_str().ok()).map(str::to_string);
            let status = resp.status().as_u16();
            let body = http::read_body(&method, &target, resp, http::MAX_BODY_BYTES).await?;
            let invalid = |m: String| ApiError::invalid("GET", &target, status, m);
            let items: Vec<OciImage> = serde_json::from_slice(&body)
                .map_err(|e| invalid(format!("OCI answered with JSON teeform cannot read: {e}")))?;
            out.extend(items);
            match next {
                Some(n) if !n.is_empty() => {
                    // A token seen before would loop forever; so would endless fresh tokens.
                    if !seen.insert(n.clone()) {
                        return Err(invalid(format!(
                            "OCI returned the page token `{n}` twice; stopping instead of looping"
                        )));
                    }
                    if seen.len() >= MAX_PAGES {
                        return Err(invalid(format!(
                            "the listing goes on past {MAX_PAGES} pages ({} images so far); teeform stops here \
                             (narrow the filters)",
                            out.len()
                        )));
                    }
                    page = Some(n);
                }
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::http::parse_error_body;

    const KEY: &str = include_str!("../../../tests/fixtures/oci/key.pem");

    fn client(endpoint: &str) -> OciClient {
        let signer = Signer::from_pem("t", "u", "f", KEY).unwrap();
        OciClient::new(endpoint, signer, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn builds_urls_like_the_sdk() {
        let c = client("https://iaas.us-ashburn-1.oraclecloud.com");
        let q = OciQuery {
            compartment: "ocid1.compartment.oc1..x".into(),
            operating_system: Some("Oracle Linux".into()),
            lifecycle_state: Some("AVAILABLE".into()),
            ..Default::default()
        };
        let u = c.list_url(&q, Some("p 2"));
        assert_eq!(
            request_target(&u),
            "/20160918/images?compartmentId=ocid1.compartment.oc1..x&operatingSystem=Oracle+Linux&lifecycleState=AVAILABLE&sortBy=TIMECREATED&sortOrder=DESC&limit=100&page=p+2"
        );
        assert_eq!(host_header(&u), "iaas.us-ashburn-1.oraclecloud.com");
        let c = client("http://127.0.0.1:8443/20160918/");
        let u = c.list_url(&q, None);
        assert_eq!(host_header(&u), "127.0.0.1:8443");
        assert!(request_target(&u).starts_with("/20160918/images?"));
    }

    #[test]
    fn reads_images_with_and_without_a_compartment() {
        let body = r#"[{"id":"ocid1.image.oc1..a","displayName":"Oracle-Linux-8.10-2024.09.30-0","operatingSystem":"Oracle Linux","operatingSystemVersion":"8","lifecycleState":"AVAILABLE","timeCreated":"2024-09-30T21:10:29.600Z","createImageAllowed":true,"sizeInMBs":47694},
            {"id":"ocid1.image.oc1..b","compartmentId":"ocid1.compartment.oc1..c","displayName":"custom","operatingSystem":"Custom","operatingSystemVersion":"1","lifecycleState":"AVAILABLE","timeCreated":"2024-10-01T00:00:00+02:00","createImageAllowed":true}]"#;
        let imgs: Vec<OciImage> = serde_json::from_str(body).unwrap();
        assert_eq!(imgs[0].compartment_id, None);
        assert_eq!(imgs[0].size_in_m_bs, Some(47694));
        assert_eq!(imgs[1].time_created.to_string(), "2024-09-30T22:00:00Z");
    }

    #[test]
    fn renders_each_error_body_with_its_request_id() {
        let cases = [
            (400, "InvalidParameter", "compartmentId is invalid", ErrorKind::Validation),
            (
                401,
                "NotAuthenticated",
                "The required information to complete authentication was not provided.",
                ErrorKind::Unauthenticated,
            ),
            (
                404,
                "NotAuthorizedOrNotFound",
                "Authorization failed or requested resource not found.",
                ErrorKind::NotFound,
            ),
            (429, "TooManyRequests", "Too many requests for the user", ErrorKind::RateLimited),
            (500, "InternalServerError", "Internal error", ErrorKind::Server),
        ];
        for (status, code, msg, kind) in cases {
            let mut e = parse_error_body(status, &format!(r#"{{"code":"{code}","message":"{msg}"}}"#));
            // The request id comes from the `opc-request-id` header (see http::error_from_response).
            e.request_id = Some("A1B2/C3".into());
            e.method = "GET".into();
            e.path = "/20160918/images".into();
            assert_eq!(e.kind, kind);
            assert_eq!(
                e.to_string(),
                format!("GET /20160918/images: HTTP {status} {code}: {msg} (request id A1B2/C3)")
            );
        }
        let raw = parse_error_body(502, "<html>bad gateway</html>");
        assert_eq!(raw.message, "<html>bad gateway</html>");
    }
}
