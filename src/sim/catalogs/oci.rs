//! OCI Core Services ListImages: `GET /20160918/images` (seed 003), paged through
//! `opc-next-page`, filtered and sorted as OCI does, every request's signature checked
//! ([`super::signature`]), and OCI's error bodies with `opc-request-id`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::signature::check_signature;
use super::{injected, query_pairs, request_id};
use crate::sim::Sim;

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

pub(super) async fn images(State(sim): State<Sim>, uri: Uri, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    sim.count("GET /20160918/images", "GET /20160918/images");
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
    let Some(compartment) = param(&q, "compartmentId") else {
        return oci_error(StatusCode::BAD_REQUEST, "MissingParameter", "Missing compartmentId");
    };
    let data = sim.inner.catalogs.lock().expect("catalogs lock");
    if !data.oci_compartments.iter().any(|c| c == compartment) {
        return oci_status_error(404);
    }
    let p = match paging(&q, cfg.oci_page_size) {
        Ok(p) => p,
        Err(why) => return oci_error(StatusCode::BAD_REQUEST, "InvalidParameter", why),
    };
    let out = matching(&data.oci, compartment, &q, &p);
    let page: Vec<&Value> = out.iter().skip(p.offset).take(p.limit).copied().collect();
    let mut r = axum::Json(page).into_response();
    let h = r.headers_mut();
    h.insert("opc-request-id", request_id().to_uppercase().parse().expect("header"));
    if p.offset + p.limit < out.len() {
        h.insert("opc-next-page", format!("sim-page-{}", p.offset + p.limit).parse().expect("header"));
    }
    r
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// How a request sorts and pages its images.
struct Paging {
    by_name: bool,
    desc: bool,
    limit: usize,
    offset: usize,
}

/// `sortBy`, `sortOrder`, `limit` (at most `page_size`) and the `page` token, or why not.
fn paging(q: &[(String, String)], page_size: usize) -> Result<Paging, &'static str> {
    let sort_by = param(q, "sortBy").unwrap_or("TIMECREATED");
    let desc = match (param(q, "sortOrder"), sort_by) {
        (Some("DESC"), _) => true,
        (Some("ASC"), _) => false,
        (None, "TIMECREATED") => true,
        (None, "DISPLAYNAME") => false,
        _ => return Err("sortBy must be TIMECREATED or DISPLAYNAME, sortOrder ASC or DESC"),
    };
    let limit = match param(q, "limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return Err("limit must be from 1 to 1000"),
    }
    .min(page_size.max(1));
    let offset = match param(q, "page").map(|p| p.strip_prefix("sim-page-").and_then(|n| n.parse::<usize>().ok())) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return Err("the page token is not valid"),
    };
    Ok(Paging { by_name: sort_by == "DISPLAYNAME", desc, limit, offset })
}

/// The images of a compartment (its own and the platform's) that pass the request's filters,
/// sorted as it asks.
fn matching<'a>(
    images: &'a [super::OciEntry],
    compartment: &str,
    q: &[(String, String)],
    p: &Paging,
) -> Vec<&'a Value> {
    let eq = |k: &str, img: &Value| param(q, k).is_none_or(|want| img[k] == want);
    let mut out: Vec<&Value> = images
        .iter()
        .filter(|e| e.compartment.as_deref().is_none_or(|c| c == compartment))
        .filter(|e| param(q, "shape").is_none_or(|s| e.shapes.iter().any(|x| x == s)))
        .map(|e| &e.image)
        .filter(|i| eq("displayName", i) && eq("operatingSystem", i) && eq("operatingSystemVersion", i))
        .filter(|i| {
            param(q, "lifecycleState")
                .is_none_or(|s| i["lifecycleState"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(s)))
        })
        .collect();
    let key = |i: &Value| {
        if p.by_name {
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
    out.sort_by(|a, b| if p.desc { key(b).cmp(&key(a)) } else { key(a).cmp(&key(b)) });
    out
}
