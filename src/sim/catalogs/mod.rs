//! Simulated image catalogs beside the Phala API: nscale's Region service
//! (`GET /api/v2/regions/{regionID}/images`, seed 002) and OCI Core Services ListImages
//! (`GET /20160918/images`, seed 003), with their auth, error bodies and request ids.
//!
//! nscale answers a bare array sorted by name (as the real handler does), so creation order
//! is the client's job. OCI pages through `opc-next-page` (`oci_page_size` per page) and
//! checks the request signature against `oci_public_key` (any well-formed signature is
//! accepted when no key is configured). `catalog_errors` makes the next requests fail with
//! given statuses, for testing retries and error rendering.

mod nscale;
mod oci;
mod seed;
mod signature;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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

pub fn router(sim: Sim) -> Router {
    Router::new()
        .route("/api/v2/regions/{region}/images", get(nscale::images))
        .route("/20160918/images", get(oci::images))
        .route("/_sim/catalogs/{catalog}", post(publish))
        .with_state(sim)
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
