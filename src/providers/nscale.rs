//! The nscale Region service's image catalog (seed 002): `GET /api/v2/regions/{regionID}/images`
//! with a bearer token. The answer is a bare JSON array, not paginated and sorted by name, so
//! callers must order by `creationTime` themselves.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use super::http::{self, Idempotency, RetryPolicy};
use super::{ApiError, ErrorKind};

/// The Terraform provider's default. UNVERIFIED: the Region service's public host is not in
/// nscale's published server list (reference image-catalogs.md §4.3).
pub const DEFAULT_ENDPOINT: &str = "https://region.unikorn.nscale.com";

#[derive(Clone)]
pub struct NscaleClient {
    http: reqwest::Client,
    base: url::Url,
    token: String,
    /// Where the token came from (e.g. `NSCALE_TOKEN`), for the message of a 401.
    token_source: Option<String>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for NscaleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is deliberately left out.
        f.debug_struct("NscaleClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// What to ask the server for; everything else is filtered by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NscaleQuery {
    pub region: String,
    pub organizations: Vec<String>,
    /// `owned` or `available`.
    pub scope: Option<String>,
    /// e.g. `["ready"]`; empty asks for every state.
    pub statuses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NscaleImage {
    pub id: String,
    pub name: String,
    pub created: jiff::Timestamp,
    pub architecture: String,
    pub virtualization: String,
    pub size_gib: u64,
    pub os: NscaleOs,
    pub gpu: Option<NscaleGpu>,
    pub tags: BTreeMap<String, String>,
    pub software_versions: BTreeMap<String, String>,
    /// `pending`, `creating`, `ready` or `failed`.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NscaleOs {
    pub kernel: String,
    pub family: String,
    pub distro: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub codename: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NscaleGpu {
    pub vendor: String,
    pub driver: String,
    #[serde(default)]
    pub models: Vec<String>,
}

// ----- wire shapes (seed 002 `image`) ------------------------------------------------------

#[derive(Deserialize)]
struct WireImage {
    metadata: WireMeta,
    spec: WireSpec,
    status: WireStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    id: String,
    name: String,
    creation_time: String,
    #[serde(default)]
    tags: Vec<WireTag>,
}

#[derive(Deserialize)]
struct WireTag {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpec {
    architecture: String,
    #[serde(rename = "sizeGiB")]
    size_gib: u64,
    virtualization: String,
    os: NscaleOs,
    #[serde(default)]
    software_versions: BTreeMap<String, String>,
    #[serde(default)]
    gpu: Option<NscaleGpu>,
}

#[derive(Deserialize)]
struct WireStatus {
    state: String,
}

/// Reads the response body of the image list.
pub fn parse_images(body: &str) -> Result<Vec<NscaleImage>, String> {
    let wire: Vec<WireImage> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    wire.into_iter()
        .map(|w| {
            let created = w.metadata.creation_time.parse::<jiff::Timestamp>().map_err(|e| {
                format!("image {}: creationTime `{}` is not RFC 3339: {e}", w.metadata.id, w.metadata.creation_time)
            })?;
            Ok(NscaleImage {
                id: w.metadata.id,
                name: w.metadata.name,
                created,
                architecture: w.spec.architecture,
                virtualization: w.spec.virtualization,
                size_gib: w.spec.size_gib,
                os: w.spec.os,
                gpu: w.spec.gpu,
                tags: w.metadata.tags.into_iter().map(|t| (t.name, t.value)).collect(),
                software_versions: w.spec.software_versions,
                state: w.status.state,
            })
        })
        .collect()
}

impl NscaleClient {
    pub fn new(endpoint: &str, token: String, timeout: Duration) -> Result<NscaleClient, ApiError> {
        let local = |m: String| ApiError::local(ErrorKind::Other, "-", endpoint, m);
        let mut base = url::Url::parse(endpoint).map_err(|e| local(format!("`{endpoint}` is not a URL: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(local(format!("`{endpoint}` cannot be a base URL")));
        }
        // So that joining `api/v2/...` keeps any path prefix the endpoint has.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = http::client(timeout, endpoint)?;
        crate::redact::secret(&token);
        Ok(NscaleClient { http, base, token, token_source: None, policy: RetryPolicy::default() })
    }

    /// Names where the token came from, for the message of an authentication failure.
    pub fn with_token_source(mut self, source: impl Into<String>) -> Self {
        self.token_source = Some(source.into());
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The URL of one list request (path segments and query encoded by `url`).
    pub fn list_url(&self, q: &NscaleQuery) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut seg) = u.path_segments_mut() {
            seg.pop_if_empty().extend(["api", "v2", "regions", q.region.as_str(), "images"]);
        }
        {
            let mut qp = u.query_pairs_mut();
            for o in &q.organizations {
                qp.append_pair("organizationID", o);
            }
            if let Some(s) = &q.scope {
                qp.append_pair("scope", s);
            }
            for s in &q.statuses {
                qp.append_pair("status", s);
            }
        }
        if u.query() == Some("") {
            u.set_query(None);
        }
        u
    }

    pub async fn list_images(&self, q: &NscaleQuery) -> Result<Vec<NscaleImage>, ApiError> {
        let url = self.list_url(q);
        let path = match url.query() {
            Some(qs) => format!("{}?{qs}", url.path()),
            None => url.path().to_string(),
        };
        let method = Method::GET;
        let resp = http::send(&self.policy, None, Idempotency::Safe, &method, &path, || {
            self.http.get(url.clone()).bearer_auth(&self.token).header("accept", "application/json")
        })
        .await
        .map_err(|mut e| {
            if e.kind == ErrorKind::Unauthenticated
                && let Some(src) = &self.token_source
            {
                e.hint = Some(format!(
                    "the token came from {src}; check it (service account tokens expire after 90 days by default)"
                ));
            }
            e
        })?;
        let status = resp.status().as_u16();
        let body = http::read_body(&method, &path, resp, http::MAX_BODY_BYTES).await?;
        parse_images(&String::from_utf8_lossy(&body)).map_err(|m| {
            ApiError::invalid("GET", &path, status, format!("nscale answered with JSON teeform cannot read: {m}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::http::parse_error_body;

    const SEED_EXAMPLE: &str = r#"[{"metadata":{"id":"a64f9269-36e0-4312-b8d1-52d93d569b7b","name":"ubu2204-v1.25.6-gpu-525.85.05-7ced4154","creationTime":"2023-02-22T12:04:13Z"},"spec":{"architecture":"x86_64","sizeGiB":10,"virtualization":"virtualized","os":{"kernel":"linux","family":"debian","distro":"ubuntu","variant":"server","codename":"noble","version":"24.04"},"softwareVersions":{"kubernetes":"v1.25.6"},"gpu":{"vendor":"NVIDIA","driver":"525.85.05","models":["A100","H100","H200"]}},"status":{"state":"ready"}}]"#;

    #[test]
    fn reads_the_seed_example() {
        let imgs = parse_images(SEED_EXAMPLE).unwrap();
        let i = &imgs[0];
        assert_eq!(i.os.version, "24.04");
        assert_eq!(i.gpu.as_ref().unwrap().models, ["A100", "H100", "H200"]);
        assert_eq!(i.created.to_string(), "2023-02-22T12:04:13Z");
        assert_eq!(i.software_versions["kubernetes"], "v1.25.6");
        let bad = SEED_EXAMPLE.replace("2023-02-22T12:04:13Z", "yesterday");
        assert!(parse_images(&bad).unwrap_err().contains("not RFC 3339"));
    }

    #[test]
    fn builds_the_list_url() {
        let c = NscaleClient::new("http://127.0.0.1:9/prefix", "t".into(), Duration::from_secs(1)).unwrap();
        let q = NscaleQuery {
            region: "r 1".into(),
            organizations: vec!["o1".into(), "o2".into()],
            scope: Some("available".into()),
            statuses: vec!["ready".into()],
        };
        assert_eq!(
            c.list_url(&q).as_str(),
            "http://127.0.0.1:9/prefix/api/v2/regions/r%201/images?organizationID=o1&organizationID=o2&scope=available&status=ready"
        );
        let q = NscaleQuery { region: "r".into(), ..Default::default() };
        assert_eq!(c.list_url(&q).as_str(), "http://127.0.0.1:9/prefix/api/v2/regions/r/images");
    }

    #[test]
    fn renders_each_error_body_with_its_trace_id() {
        let cases = [
            (401, "access_denied", "authentication failed", ErrorKind::Unauthenticated),
            (403, "forbidden", "user credentials do not have the required privileges", ErrorKind::Forbidden),
            (404, "not_found", "the requested resource does not exist", ErrorKind::NotFound),
            (500, "server_error", "failed to token claim", ErrorKind::Server),
        ];
        for (status, code, desc, kind) in cases {
            let body = format!(
                r#"{{"error":"{code}","error_description":"{desc}","trace_id":"57bc14d9bd461f0b5a72db830149b67a"}}"#
            );
            let mut e = parse_error_body(status, &body);
            e.method = "GET".into();
            e.path = "/api/v2/regions/r/images".into();
            assert_eq!(e.kind, kind);
            assert_eq!(
                e.to_string(),
                format!(
                    "GET /api/v2/regions/r/images: HTTP {status} {code}: {desc} (request id 57bc14d9bd461f0b5a72db830149b67a)"
                )
            );
        }
    }
}
