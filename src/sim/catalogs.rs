//! Simulated image catalogs beside the Phala API: nscale's Region service
//! (`GET /api/v2/regions/{regionID}/images`, seed 002) and OCI Core Services ListImages
//! (`GET /20160918/images`, seed 003), with their auth, error bodies and request ids.
//!
//! nscale answers a bare array sorted by name (as the real handler does), so creation order
//! is the client's job. OCI pages through `opc-next-page` (`oci_page_size` per page) and
//! checks the request signature against `oci_public_key` (any well-formed signature is
//! accepted when no key is configured). `catalog_errors` makes the next requests fail with
//! given statuses, for testing retries and error rendering.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Sim;
use super::world::OsImage;

/// The region id the seeded nscale catalog lives in.
pub const NSCALE_REGION: &str = "2b6c7f0a-5d0e-4c57-9a0e-3f5c1c3b9a10";
/// An organization that owns one custom image.
pub const NSCALE_ORG: &str = "9d2f4a3e-1b7c-4e8f-a6d5-0c1b2a3f4e5d";
/// The tenancy and a compartment of the seeded OCI catalog (the ids in the signing vectors).
pub const OCI_TENANCY: &str = "ocid1.tenancy.oc1..aaaaaaaaexampletenancy";
pub const OCI_COMPARTMENT: &str = "ocid1.compartment.oc1..aaaaaaaaexample";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NscaleEntry {
    pub region: String,
    /// `None` for global images.
    pub organization: Option<String>,
    /// The image as the API shows it.
    pub image: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciEntry {
    /// `None` for platform images (listed in every compartment, shown without compartmentId).
    pub compartment: Option<String>,
    pub shapes: Vec<String>,
    /// The image as the API shows it.
    pub image: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogData {
    pub nscale_regions: Vec<String>,
    pub nscale_orgs: Vec<String>,
    pub nscale: Vec<NscaleEntry>,
    pub oci_compartments: Vec<String>,
    pub oci: Vec<OciEntry>,
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

/// An nscale image in the API's shape. `gpu`: (vendor, driver, models).
pub fn nscale_image(
    name: &str,
    created: &str,
    distro: (&str, &str, &str),
    gpu: Option<(&str, &str, &[&str])>,
    state: &str,
) -> Value {
    let (distro, version, codename) = distro;
    let family = if distro == "ubuntu" { "debian" } else { "redhat" };
    let mut spec = json!({
        "architecture": "x86_64", "sizeGiB": 20, "virtualization": "virtualized",
        "os": {"kernel": "linux", "family": family, "distro": distro, "variant": "server", "codename": codename, "version": version},
    });
    if let Some((vendor, driver, models)) = gpu {
        spec["gpu"] = json!({"vendor": vendor, "driver": driver, "models": models});
    }
    let h = short_hash(name);
    json!({
        "metadata": {"id": format!("{}-{}-4{}-8{}-{}", &h[..8], &h[8..12], &h[1..4], &h[4..7], short_hash(&h)), "name": name, "creationTime": created},
        "spec": spec,
        "status": {"state": state},
    })
}

/// An OCI image in the API's shape.
pub fn oci_image(display_name: &str, os: &str, version: &str, created: &str, state: &str) -> Value {
    json!({
        "id": format!("ocid1.image.oc1.iad.sim{}", short_hash(display_name)),
        "displayName": display_name,
        "operatingSystem": os,
        "operatingSystemVersion": version,
        "lifecycleState": state,
        "timeCreated": created,
        "createImageAllowed": true,
        "launchMode": "NATIVE",
        "sizeInMBs": 47694,
        "billableSizeInGBs": 1,
        "listingType": "NONE",
        "launchOptions": {"bootVolumeType": "PARAVIRTUALIZED", "firmware": "UEFI_64", "networkType": "PARAVIRTUALIZED"},
        "agentFeatures": null,
        "freeformTags": {},
        "definedTags": {},
    })
}

impl CatalogData {
    /// A small catalog whose name order differs from its creation order, with images that
    /// are not ready/available, GPU and non-GPU images, and one custom image per service.
    pub fn seeded() -> CatalogData {
        let r = NSCALE_REGION;
        let g = |img| NscaleEntry { region: r.into(), organization: None, image: img };
        let noble = ("ubuntu", "24.04", "noble");
        let nscale = vec![
            g(nscale_image(
                "ubu2404-gpu-550",
                "2024-06-10T09:00:00Z",
                noble,
                Some(("NVIDIA", "550.54.15", &["H100", "H200"])),
                "ready",
            )),
            g(nscale_image(
                "ubu2404-gpu-535",
                "2024-03-01T09:00:00Z",
                noble,
                Some(("NVIDIA", "535.183.01", &["A100", "H100"])),
                "ready",
            )),
            g(nscale_image("ubu2404-base", "2024-07-01T09:00:00Z", noble, None, "ready")),
            g(nscale_image(
                "ubu2204-gpu-550",
                "2024-08-01T09:00:00Z",
                ("ubuntu", "22.04", "jammy"),
                Some(("NVIDIA", "550.54.15", &["H100"])),
                "ready",
            )),
            g(nscale_image(
                "ubu2404-gpu-560-rc",
                "2024-09-01T09:00:00Z",
                noble,
                Some(("NVIDIA", "560.28.03", &["H100"])),
                "creating",
            )),
            g(nscale_image(
                "ubu2404-gpu-555-failed",
                "2024-08-20T09:00:00Z",
                noble,
                Some(("NVIDIA", "555.42.02", &["H100"])),
                "failed",
            )),
            g(nscale_image(
                "rocky9-amd",
                "2024-05-01T09:00:00Z",
                ("rocky", "9.4", "blue-onyx"),
                Some(("AMD", "6.7.0", &["MI300X"])),
                "ready",
            )),
            NscaleEntry {
                region: r.into(),
                organization: Some(NSCALE_ORG.into()),
                image: nscale_image(
                    "acme-ubu2404-gpu",
                    "2024-10-01T09:00:00Z",
                    noble,
                    Some(("NVIDIA", "550.54.15", &["H100"])),
                    "ready",
                ),
            },
        ];
        let platform = |name: &str, os: &str, ver: &str, created: &str, state: &str, shapes: &[&str]| OciEntry {
            compartment: None,
            shapes: shapes.iter().map(|s| s.to_string()).collect(),
            image: oci_image(name, os, ver, created, state),
        };
        let std = &["VM.Standard.E4.Flex", "VM.Standard.E5.Flex", "VM.Standard3.Flex"];
        let gpu = &["BM.GPU.H100.8", "VM.GPU.A10.1"];
        let ol = "Oracle Linux";
        let oci = vec![
            platform("Oracle-Linux-8.10-2024.09.30-0", ol, "8", "2024-09-30T21:10:29.600Z", "AVAILABLE", std),
            platform("Oracle-Linux-8.10-2024.08.29-0", ol, "8", "2024-08-29T20:01:02.100Z", "AVAILABLE", std),
            platform("Oracle-Linux-8.10-2024.07.31-0", ol, "8", "2024-07-31T19:00:00.000Z", "AVAILABLE", std),
            platform("Oracle-Linux-8.10-Gen2-GPU-2024.10.01-0", ol, "8", "2024-10-01T10:00:00.000Z", "AVAILABLE", gpu),
            platform("Oracle-Linux-8.10-2024.11.05-0", ol, "8", "2024-11-05T08:00:00.000Z", "PROVISIONING", std),
            platform("Oracle-Linux-9.4-2024.09.30-0", ol, "9", "2024-09-30T22:00:00.000Z", "AVAILABLE", std),
            platform(
                "Canonical-Ubuntu-24.04-2024.10.04-0",
                "Canonical Ubuntu",
                "24.04",
                "2024-10-04T05:00:00.000Z",
                "AVAILABLE",
                std,
            ),
            platform(
                "Canonical-Ubuntu-22.04-2024.09.30-0",
                "Canonical Ubuntu",
                "22.04",
                "2024-09-30T05:00:00.000Z",
                "AVAILABLE",
                std,
            ),
            OciEntry {
                compartment: Some(OCI_COMPARTMENT.into()),
                shapes: std.iter().map(|s| s.to_string()).collect(),
                image: {
                    let mut i = oci_image("teeform-base-2024.10.15", ol, "8", "2024-10-15T12:00:00.000Z", "AVAILABLE");
                    i["compartmentId"] = OCI_COMPARTMENT.into();
                    i
                },
            },
        ];
        CatalogData {
            nscale_regions: vec![r.into()],
            nscale_orgs: vec![NSCALE_ORG.into()],
            nscale,
            oci_compartments: vec![OCI_TENANCY.into(), OCI_COMPARTMENT.into()],
            oci,
        }
    }
}

pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/api/v2/regions/{region}/images", get(nscale_images))
        .route("/20160918/images", get(oci_images))
        .route("/_sim/catalogs/{catalog}", post(publish))
        .with_state(sim)
}

fn count(sim: &Sim, key: &str) {
    let mut s = sim.inner.stats.lock().expect("stats lock");
    s.total_requests += 1;
    *s.requests.entry(key.to_string()).or_default() += 1;
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The next injected failure, if any.
fn injected(sim: &Sim) -> Option<u16> {
    let mut c = sim.inner.config.lock().expect("config lock");
    if c.catalog_errors.is_empty() { None } else { Some(c.catalog_errors.remove(0)) }
}

fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
}

// ----- nscale ------------------------------------------------------------------------------

fn nscale_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description, "trace_id": request_id()});
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert("retry-after", "1".parse().expect("header"));
    }
    r
}

fn nscale_status_error(status: u16) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, desc) = match status {
        401 => ("access_denied", "authentication failed"),
        403 => ("forbidden", "user credentials do not have the required privileges"),
        404 => ("not_found", "the requested resource does not exist"),
        // Not in nscale's spec (reference §4.2); shaped like its other errors.
        429 => ("server_error", "too many requests (simulated)"),
        _ => ("server_error", "an unexpected error occurred (simulated)"),
    };
    nscale_error(s, code, desc)
}

async fn nscale_images(
    State(sim): State<Sim>,
    Path(region): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    count(&sim, "GET /api/v2/regions/{regionID}/images");
    let want = sim.inner.config.lock().expect("config lock").nscale_token.clone();
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match (token, want) {
        (None, _) => return nscale_error(StatusCode::UNAUTHORIZED, "access_denied", "authorization header missing"),
        (Some(t), Some(w)) if t != w => {
            return nscale_error(StatusCode::UNAUTHORIZED, "access_denied", "token validation failed");
        }
        _ => {}
    }
    if let Some(status) = injected(&sim) {
        return nscale_status_error(status);
    }
    let data = sim.inner.catalogs.lock().expect("catalogs lock");
    if !data.nscale_regions.contains(&region) {
        return nscale_status_error(404);
    }
    let q = query_pairs(&raw);
    // Organizations the caller may not read are silently dropped, as the real server does.
    let orgs: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "organizationID")
        .map(|(_, v)| v.as_str())
        .filter(|o| data.nscale_orgs.iter().any(|x| x == o))
        .collect();
    let asked_orgs = q.iter().any(|(k, _)| k == "organizationID");
    let scope = q.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.as_str()).unwrap_or("available");
    if !matches!(scope, "owned" | "available") {
        return nscale_error(StatusCode::BAD_REQUEST, "invalid_request", "scope must be owned or available");
    }
    let statuses: Vec<&str> = q.iter().filter(|(k, _)| k == "status").map(|(_, v)| v.as_str()).collect();
    let mut out: Vec<&Value> = data
        .nscale
        .iter()
        .filter(|e| e.region == region)
        .filter(|e| match (&e.organization, asked_orgs) {
            (None, false) => true,
            (None, true) => scope == "available",
            (Some(o), true) => orgs.contains(&o.as_str()),
            (Some(_), false) => false,
        })
        .filter(|e| statuses.is_empty() || statuses.iter().any(|s| e.image["status"]["state"] == *s))
        .map(|e| &e.image)
        .collect();
    out.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
    axum::Json(out).into_response()
}

// ----- OCI ---------------------------------------------------------------------------------

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({"code": code, "message": message}))).into_response();
    r.headers_mut().insert("opc-request-id", request_id().to_uppercase().parse().expect("header"));
    r
}

fn oci_status_error(status: u16) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, msg) = match status {
        400 => ("InvalidParameter", "invalid parameter (simulated)"),
        401 => (
            "NotAuthenticated",
            "The required information to complete authentication was not provided or was incorrect.",
        ),
        403 => ("NotAllowed", "not allowed (simulated)"),
        404 => ("NotAuthorizedOrNotFound", "Authorization failed or requested resource not found."),
        429 => ("TooManyRequests", "Too many requests for the user (simulated)"),
        _ => ("InternalServerError", "internal error (simulated)"),
    };
    oci_error(s, code, msg)
}

/// Checks the HTTP signature; `Err` is the reason for a 401.
fn check_signature(
    headers: &HeaderMap,
    target: &str,
    public_key: Option<&str>,
    now: std::time::SystemTime,
) -> Result<(), String> {
    use crate::providers::oci::signer::parse_authorization;
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization header")?;
    let p = parse_authorization(auth).ok_or("the Authorization header is not `Signature ...`")?;
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

async fn oci_images(State(sim): State<Sim>, uri: Uri, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    count(&sim, "GET /20160918/images");
    let cfg = sim.inner.config.lock().expect("config lock").clone();
    // The signature covers the request target exactly as sent, so it is not re-encoded here.
    let target = uri.path_and_query().map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    if let Err(why) = check_signature(&headers, &target, cfg.oci_public_key.as_deref(), std::time::SystemTime::now()) {
        tracing::debug!("simulated OCI: 401: {why}");
        return oci_error(
            StatusCode::UNAUTHORIZED,
            "NotAuthenticated",
            &format!("The required information to complete authentication was not provided or was incorrect. ({why})"),
        );
    }
    if let Some(status) = injected(&sim) {
        let mut r = oci_status_error(status);
        if status == 429 {
            r.headers_mut().insert("retry-after", "1".parse().expect("header"));
        }
        return r;
    }
    let q = query_pairs(&raw);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let data = sim.inner.catalogs.lock().expect("catalogs lock");
    let Some(compartment) = get("compartmentId") else {
        return oci_error(StatusCode::BAD_REQUEST, "MissingParameter", "Missing compartmentId");
    };
    if !data.oci_compartments.iter().any(|c| c == compartment) {
        return oci_status_error(404);
    }
    let sort_by = get("sortBy").unwrap_or("TIMECREATED");
    let desc = match (get("sortOrder"), sort_by) {
        (Some("DESC"), _) => true,
        (Some("ASC"), _) => false,
        (None, "TIMECREATED") => true,
        (None, "DISPLAYNAME") => false,
        _ => {
            return oci_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "sortBy must be TIMECREATED or DISPLAYNAME, sortOrder ASC or DESC",
            );
        }
    };
    let limit = match get("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return oci_error(StatusCode::BAD_REQUEST, "InvalidParameter", "limit must be from 1 to 1000"),
    }
    .min(cfg.oci_page_size.max(1));
    let offset = match get("page").map(|p| p.strip_prefix("sim-page-").and_then(|n| n.parse::<usize>().ok())) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return oci_error(StatusCode::BAD_REQUEST, "InvalidParameter", "the page token is not valid"),
    };
    let eq = |k: &str, field: &str, img: &Value| get(k).is_none_or(|want| img[field] == want);
    let mut out: Vec<&Value> = data
        .oci
        .iter()
        .filter(|e| e.compartment.as_deref().is_none_or(|c| c == compartment))
        .filter(|e| get("shape").is_none_or(|s| e.shapes.iter().any(|x| x == s)))
        .map(|e| &e.image)
        .filter(|i| eq("displayName", "displayName", i))
        .filter(|i| eq("operatingSystem", "operatingSystem", i))
        .filter(|i| eq("operatingSystemVersion", "operatingSystemVersion", i))
        .filter(|i| {
            get("lifecycleState")
                .is_none_or(|s| i["lifecycleState"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(s)))
        })
        .collect();
    let key = |i: &Value| {
        if sort_by == "DISPLAYNAME" {
            i["displayName"].as_str().unwrap_or_default().to_string()
        } else {
            // Normalised so that the string order is the time order.
            i["timeCreated"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| format!("{:020}", t.as_nanosecond()))
                .unwrap_or_default()
        }
    };
    out.sort_by(|a, b| if desc { key(b).cmp(&key(a)) } else { key(a).cmp(&key(b)) });
    let page: Vec<&Value> = out.iter().skip(offset).take(limit).copied().collect();
    let mut r = axum::Json(page).into_response();
    let h = r.headers_mut();
    h.insert("opc-request-id", request_id().to_uppercase().parse().expect("header"));
    if offset + limit < out.len() {
        h.insert("opc-next-page", format!("sim-page-{}", offset + limit).parse().expect("header"));
    }
    r
}

// ----- publishing ----------------------------------------------------------------------------

impl Sim {
    /// The next nscale/OCI catalog requests answer with these statuses, first one first.
    pub fn fail_next_catalog_requests(&self, statuses: &[u16]) {
        self.inner.config.lock().expect("config lock").catalog_errors = statuses.to_vec();
    }

    /// Adds a Phala OS image (e.g. a new dstack release) to the catalog.
    pub fn publish_os_image(&self, name: &str, version: &[u32], dev: bool) {
        let mut w = self.inner.world.lock().expect("world lock");
        w.os_images.push(OsImage {
            name: name.into(),
            slug: format!("{name}-{}", &short_hash(name)[..8]),
            version: version.to_vec(),
            is_dev: dev,
            os_image_hash: hex::encode(Sha256::digest(format!("os\0{name}\0").as_bytes())),
        });
        self.persist(&w);
    }

    /// Adds an nscale image (API shape) to the seeded region, global unless `organization`.
    pub fn publish_nscale_image(&self, image: Value, organization: Option<&str>) {
        let mut c = self.inner.catalogs.lock().expect("catalogs lock");
        c.nscale.push(NscaleEntry {
            region: NSCALE_REGION.into(),
            organization: organization.map(String::from),
            image,
        });
    }

    /// Adds an OCI platform image (API shape) compatible with `shapes`.
    pub fn publish_oci_image(&self, image: Value, shapes: &[&str]) {
        let mut c = self.inner.catalogs.lock().expect("catalogs lock");
        c.oci.push(OciEntry { compartment: None, shapes: shapes.iter().map(|s| s.to_string()).collect(), image });
    }
}

/// `POST /_sim/catalogs/{phala|nscale|oci}`: publishes an image.
/// Bodies: `{name, version: [0,5,6], is_dev}`; `{image, organization?}`; `{image, shapes}`.
async fn publish(State(sim): State<Sim>, Path(catalog): Path<String>, body: axum::body::Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, format!("not JSON: {e}")).into_response(),
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    match catalog.as_str() {
        "phala" => {
            let (Some(name), Some(version)) = (s("name"), v.get("version").and_then(Value::as_array)) else {
                return (StatusCode::UNPROCESSABLE_ENTITY, "needs name and version").into_response();
            };
            let version: Vec<u32> = version.iter().filter_map(Value::as_u64).map(|n| n as u32).collect();
            sim.publish_os_image(name, &version, v.get("is_dev").and_then(Value::as_bool).unwrap_or(false));
        }
        "nscale" => sim.publish_nscale_image(v["image"].clone(), s("organization")),
        "oci" => {
            let shapes: Vec<&str> = v["shapes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            sim.publish_oci_image(v["image"].clone(), &shapes);
        }
        _ => return (StatusCode::NOT_FOUND, "catalogs are phala, nscale and oci").into_response(),
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC_KEY: &str = include_str!("../../tests/fixtures/oci/key_pub.pem");
    const OTHER_KEY: &str = include_str!("../../tests/fixtures/oci/other_pub.pem");

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
}
