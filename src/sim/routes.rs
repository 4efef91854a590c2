//! HTTP routes of the simulator. Shapes follow the official SDK's schemas (reference §2).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::limits::{self, Violation};
use super::world::{Cvm, PendingUpdate, Provision, World, now_ms, rfc3339};
use super::{Sim, SimConfig, gate};
use crate::compose::{self, ComposeFields};

type Res = Result<Response, Response>;

pub fn router(sim: Sim) -> Router {
    let api = Router::new()
        .route("/auth/me", get(me))
        .route("/cvms/paginated", get(list))
        .route("/cvms/provision", post(provision))
        .route("/cvms", post(commit_provision))
        .route("/cvms/{id}", get(get_cvm).patch(patch_cvm).delete(delete_cvm))
        .route("/cvms/{id}/commit-update", post(commit_update))
        .route("/cvms/{id}/compose_file", get(get_compose).patch(commit_compose))
        .route("/cvms/{id}/compose_file/provision", post(provision_compose))
        .route("/cvms/{id}/envs", patch(patch_envs))
        .route("/cvms/{id}/docker-compose", patch(patch_docker_compose))
        .route("/cvms/{id}/docker-compose.yml", get(get_docker_compose))
        .route("/cvms/{id}/pre-launch-script", get(get_pre_launch).patch(patch_pre_launch))
        .route("/cvms/{id}/resources", patch(patch_resources))
        .route("/cvms/{id}/visibility", patch(patch_visibility))
        .route("/cvms/{id}/os-image", patch(patch_os_image))
        .route("/cvms/{id}/available-os-images", get(available_os_images))
        .route("/cvms/{id}/start", post(power_start))
        .route("/cvms/{id}/stop", post(power_stop))
        .route("/cvms/{id}/shutdown", post(power_shutdown))
        .route("/cvms/{id}/restart", post(power_restart))
        .route("/cvms/{id}/state", get(cvm_state))
        .route("/status/batch", post(status_batch))
        .route("/teepods/available", get(nodes))
        .route("/instance-types", get(instance_types))
        .route("/instance-types/{family}", get(instance_family))
        .route("/kms", get(kms_list))
        .route("/kms/{kms}", get(kms_get))
        .route("/kms/{kms}/pubkey/{app_id}", get(kms_pubkey))
        .route("/os-images", get(os_images))
        .route("/apps", get(apps_list))
        .route("/apps/{app_id}", get(app_get))
        .route("/apps/{app_id}/cvms", get(app_cvms))
        .fallback(|| async { status_of(404, "Not Found") })
        .method_not_allowed_fallback(|| async { status_of(405, "Method Not Allowed") })
        .layer(from_fn_with_state(sim.clone(), gate));
    Router::new()
        .nest("/api/v1", api)
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/config", get(sim_config_get).post(sim_config_set))
        .route("/_sim/cvms/{id}/env", get(sim_env))
        .with_state(sim)
}

// ----- errors ------------------------------------------------------------------------------

fn structured(status: StatusCode, code: &str, message: &str) -> Response {
    structured_with(status, code, message, vec![])
}

fn structured_with(status: StatusCode, code: &str, message: &str, details: Vec<(&str, Value)>) -> Response {
    let details: Vec<Value> = details.into_iter().map(|(f, v)| json!({"field": f, "value": v})).collect();
    (status, axum::Json(json!({"detail": {"error_code": code, "message": message, "details": details, "suggestions": [], "links": []}}))).into_response()
}

fn not_found() -> Response {
    structured(StatusCode::NOT_FOUND, "ERR-03-001", "CVM not found")
}

fn invalid(field: &str, msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": [{"loc": ["body", field], "msg": msg, "type": "value_error"}]})),
    )
        .into_response()
}

/// A request the API's limits refuse ([`limits`]): FastAPI's 422 with the field's `loc`.
/// UNVERIFIED: the real API's status and wording for these; the SDK checks the same rules
/// before sending, so its users never see the server's answer.
fn refused(v: Violation) -> Response {
    let mut loc = vec![Value::from("body")];
    loc.extend(v.loc);
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": [{"loc": loc, "msg": v.msg, "type": "value_error"}]})),
    )
        .into_response()
}

fn status_of(code: u16, msg: &str) -> Response {
    (StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(json!({"detail": msg}))).into_response()
}

fn body_json(bytes: &Bytes) -> Result<Value, Response> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"detail": [{"loc": ["body"], "msg": "JSON object expected", "type": "json_invalid"}]})),
        )
            .into_response()),
    }
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn v2025(h: &HeaderMap) -> bool {
    h.get("x-phala-version").and_then(|v| v.to_str().ok()) == Some("2025-10-28")
}

fn cfg(sim: &Sim) -> SimConfig {
    sim.inner.config.lock().expect("config lock").clone()
}

/// The compose hash the simulated platform boots with (see [`SimConfig::compose_hash_style`]).
fn app_hash(config: &SimConfig, app_compose: &Value) -> String {
    match config.compose_hash_style.as_str() {
        "indent4" => compose::hash_indent4(app_compose),
        _ => compose::hash(app_compose),
    }
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

fn num(v: &Value, k: &str) -> Option<u32> {
    v.get(k).and_then(|x| x.as_f64()).map(|f| f.round() as u32)
}

// ----- shapes ------------------------------------------------------------------------------

fn node_json(w: &World, c: &Cvm) -> Value {
    let n = w.nodes.iter().find(|n| n.id == c.node_id);
    json!({"object_type": "node", "id": c.node_id, "name": n.map(|n| n.name.clone()), "region": n.map(|n| n.region.clone()), "device_id": n.map(|n| n.device_id.clone()), "status": "online", "version": "0.5.5"})
}

fn os_json(w: &World, c: &Cvm) -> Value {
    let img = w.os_images.iter().find(|i| i.name == c.image);
    json!({"name": c.image, "version": img.map(|i| i.version.iter().map(u32::to_string).collect::<Vec<_>>().join(".")), "is_dev": img.is_some_and(|i| i.is_dev), "os_image_hash": img.map(|i| i.os_image_hash.clone())})
}

/// `kms_info` of a v2026 CVM: optional keys are left out rather than null (the SDK's schema
/// makes them optional, not nullable).
fn cvm_kms_info(w: &World, c: &Cvm) -> Value {
    let mut m = Map::new();
    m.insert("encrypted_env_pubkey".into(), w.app_env_pubkey(&c.app_id).into());
    if let Some(k) = w.kms.iter().find(|k| k.id == c.kms_id) {
        if let Some(id) = k.chain_id {
            m.insert("chain_id".into(), id.into());
        }
        if let Some(a) = &k.kms_contract_address {
            m.insert("dstack_kms_address".into(), a.clone().into());
        }
    }
    if c.is_onchain() {
        m.insert("dstack_app_address".into(), format!("0x{}", c.app_id).into());
        if let Some(d) = &c.deployer_address {
            m.insert("deployer_address".into(), d.clone().into());
        }
    }
    Value::Object(m)
}

fn cvm_v2026(w: &World, c: &Cvm, now: u64, detail: bool) -> Value {
    let progress = if c.busy(now) {
        json!({"target": c.target, "started_at": rfc3339(if c.busy_since > 0 { c.busy_since } else { c.busy_until.saturating_sub(1) }), "correlation_id": c.correlation_id})
    } else {
        Value::Null
    };
    let a = &c.app_compose;
    let mut v = json!({
        "id": c.vm_uuid,
        "name": c.name,
        "app_id": c.app_id,
        "vm_uuid": c.vm_uuid,
        "instance_id": c.instance_id,
        "resource": {
            "instance_type": c.instance_type,
            "vcpu": c.vcpu,
            "memory_in_gb": f64::from(c.memory) / 1024.0,
            "disk_in_gb": c.disk_size,
            "gpus": c.gpus,
            "compute_billing_price": "0.058",
            "billing_period": "hourly",
        },
        "node_info": node_json(w, c),
        "os": os_json(w, c),
        "kms_type": c.kms_type,
        "kms_info": cvm_kms_info(w, c),
        "status": c.status(now),
        "progress": progress,
        "compose_hash": c.compose_hash,
        "gateway": {"base_domain": "dstack-sim.phala.invalid", "cname": format!("{}.dstack-sim.phala.invalid", c.app_id)},
        "services": [],
        "endpoints": [{"app": format!("https://{}-80.dstack-sim.phala.invalid", c.app_id), "instance": format!("https://{}-80.dstack-sim.phala.invalid", c.instance_id)}],
        "public_logs": a.get("public_logs").cloned().unwrap_or(Value::Bool(true)),
        "public_sysinfo": a.get("public_sysinfo").cloned().unwrap_or(Value::Bool(true)),
        "public_tcbinfo": a.get("public_tcbinfo").cloned().unwrap_or(Value::Bool(false)),
        "gateway_enabled": a.get("gateway_enabled").cloned().unwrap_or(Value::Bool(true)),
        "secure_time": a.get("secure_time").cloned().unwrap_or(Value::Bool(false)),
        "listed": c.listed,
        "storage_fs": "zfs",
        "workspace": {"object_type": "workspace", "id": "ws_sim", "name": "Simulator", "slug": "sim"},
        "creator": {"object_type": "user", "id": "u_sim", "username": "sim"},
    });
    if detail {
        v["compose_file"] = c.app_compose.clone();
    }
    v
}

fn kms_info_for(w: &World, c: &Cvm) -> Value {
    w.kms.iter().find(|k| k.id == c.kms_id).map(|k| w.kms_info_json(k)).unwrap_or(Value::Null)
}

fn cvm_v2025(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.nodes.iter().find(|n| n.id == c.node_id);
    json!({
        "id": c.seq,
        "name": c.name,
        "status": c.status(now),
        "in_progress": c.busy(now),
        "teepod_id": c.node_id,
        "teepod": {"id": c.node_id, "name": node.map(|n| n.name.clone())},
        "app_id": c.app_id,
        "vm_uuid": c.vm_uuid,
        "instance_id": c.instance_id,
        "vcpu": c.vcpu,
        "memory": c.memory,
        "disk_size": c.disk_size,
        "base_image": c.image,
        "encrypted_env_pubkey": w.app_env_pubkey(&c.app_id),
        "listed": c.listed,
        "project_id": c.app_id,
        "project_type": "webdapp",
        "instance_type": c.instance_type,
        "public_sysinfo": c.app_compose.get("public_sysinfo").cloned().unwrap_or(Value::Bool(true)),
        "public_logs": c.app_compose.get("public_logs").cloned().unwrap_or(Value::Bool(true)),
        "dapp_dashboard_url": Value::Null,
        "syslog_endpoint": Value::Null,
        "kms_info": kms_info_for(w, c),
        "contract_address": c.contract_address,
        "deployer_address": c.deployer_address,
        "scheduled_delete_at": Value::Null,
        "public_urls": [{"app": format!("https://{}-80.dstack-sim.phala.invalid", c.app_id), "instance": format!("https://{}-80.dstack-sim.phala.invalid", c.instance_id)}],
        "gateway_domain": "dstack-sim.phala.invalid",
        "machine_info": {"vcpu": c.vcpu, "memory": c.memory, "disk_size": c.disk_size, "gpu_count": c.gpus},
        "updated_at": rfc3339(now),
    })
}

fn app_url(c: &Cvm) -> String {
    format!("https://{}-80.dstack-sim.phala.invalid", c.app_id)
}

fn uptime(c: &Cvm, now: u64) -> String {
    if c.busy(now) { "0s".to_string() } else { format!("{}s", now.saturating_sub(c.busy_until) / 1000) }
}

fn image_version(w: &World, c: &Cvm) -> Option<String> {
    let img = w.os_images.iter().find(|i| i.name == c.image)?;
    Some(img.version.iter().map(u32::to_string).collect::<Vec<_>>().join("."))
}

/// A 2025-10-28 list item (`CvmInfoV20251028`): the VM itself nested under `hosted`.
fn cvm_v2025_item(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.nodes.iter().find(|n| n.id == c.node_id);
    json!({
        "hosted": {
            "id": c.vm_uuid,
            "name": c.name,
            "status": c.status(now),
            "uptime": uptime(c, now),
            "app_url": app_url(c),
            "app_id": c.app_id,
            "instance_id": c.instance_id,
            "exited_at": null,
            "boot_progress": if c.busy(now) { "booting" } else { "done" },
            "boot_error": c.boot_error(now),
            "shutdown_progress": null,
            "image_version": image_version(w, c),
        },
        "name": c.name,
        "managed_user": {"id": 1, "username": "sim"},
        "node": node.map(|n| json!({"id": n.id, "name": n.name, "region_identifier": n.region})),
        "listed": c.listed,
        "status": c.status(now),
        "in_progress": c.busy(now),
        "dapp_dashboard_url": null,
        "syslog_endpoint": null,
        "allow_upgrade": true,
        "project_id": c.app_id,
        "project_type": "webdapp",
        "billing_period": "hourly",
        "kms_info": kms_info_for(w, c),
        "vcpu": c.vcpu,
        "memory": c.memory,
        "disk_size": c.disk_size,
        "gateway_domain": "dstack-sim.phala.invalid",
        "public_urls": [{"app": app_url(c), "instance": format!("https://{}-80.dstack-sim.phala.invalid", c.instance_id)}],
        "machine_info": {"vcpu": c.vcpu, "memory": c.memory, "disk_size": c.disk_size, "gpu_count": c.gpus},
        "updated_at": rfc3339(now),
    })
}

/// A 2025-10-28 CVM inside an app (`CvmBasicInfoV20251028`).
fn cvm_v2025_basic(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.nodes.iter().find(|n| n.id == c.node_id);
    let kms = w.kms.iter().find(|k| k.id == c.kms_id);
    json!({
        "vm_uuid": c.vm_uuid,
        "app_id": c.app_id,
        "name": c.name,
        "status": c.status(now),
        "vcpu": c.vcpu,
        "memory": c.memory,
        "disk_size": c.disk_size,
        "teepod_id": c.node_id,
        "teepod_name": node.map(|n| n.name.clone()).unwrap_or_default(),
        "region_identifier": node.map(|n| n.region.clone()),
        "kms_type": c.kms_type,
        "instance_type": c.instance_type,
        "listed": c.listed,
        "base_image": c.image,
        "kms_slug": kms.map(|k| k.slug.clone()),
        "kms_id": c.kms_id,
        "instance_id": c.instance_id,
        "machine_info": {"vcpu": c.vcpu, "memory": c.memory, "disk_size": c.disk_size, "gpu_count": c.gpus},
        "updated_at": rfc3339(now),
    })
}

/// The VM object power actions and `POST /cvms` return.
fn vm_json(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.nodes.iter().find(|n| n.id == c.node_id);
    json!({
        "id": c.seq,
        "name": c.name,
        "status": c.status(now),
        "teepod_id": c.node_id,
        "teepod": {"id": c.node_id, "name": node.map(|n| n.name.clone())},
        "user_id": 1,
        "app_id": c.app_id,
        "vm_uuid": c.vm_uuid,
        "instance_id": c.instance_id,
        "app_url": format!("https://{}-80.dstack-sim.phala.invalid", c.app_id),
        "base_image": c.image,
        "vcpu": c.vcpu,
        "memory": c.memory,
        "disk_size": c.disk_size,
        "manifest_version": 2,
        "version": "1.0.0",
        "runner": "docker-compose",
        "docker_compose_file": s(&c.app_compose, "docker_compose_file"),
        "features": ["kms", "tproxy-net"],
        "created_at": rfc3339(c.created_ms),
        "encrypted_env_pubkey": w.app_env_pubkey(&c.app_id),
    })
}

// ----- reads -------------------------------------------------------------------------------

async fn me(headers: HeaderMap) -> Response {
    if v2025(&headers) {
        return ok(
            json!({"username": "sim", "email": "sim@example.invalid", "credits": 100.0, "granted_credits": 0.0, "avatar": "", "team_name": "Simulator", "team_tier": "free"}),
        );
    }
    ok(json!({
        "user": {"username": "sim", "email": "sim@example.invalid", "role": "admin", "avatar": "", "email_verified": true, "totp_enabled": false, "has_backup_codes": false, "flag_has_password": true},
        "workspace": {"id": "ws_sim", "name": "Simulator", "slug": "sim", "tier": "free", "role": "owner"},
        "credits": {"balance": "100.00", "granted_balance": "0.00", "is_post_paid": false, "outstanding_amount": null}
    }))
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<u64>,
    page_size: Option<u64>,
}

async fn list(State(sim): State<Sim>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let now = now_ms();
    let page = q.page.unwrap_or(1).max(1);
    let size = q.page_size.unwrap_or(50).clamp(1, 1000);
    let total = w.cvms.len() as u64;
    let legacy = v2025(&headers);
    let items: Vec<Value> = w
        .cvms
        .values()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|c| if legacy { cvm_v2025_item(&w, c, now) } else { cvm_v2026(&w, c, now, false) })
        .collect();
    ok(json!({"items": items, "total": total, "page": page, "page_size": size, "pages": total.div_ceil(size).max(1)}))
}

async fn get_cvm(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let Some(seq) = w.find(&id) else {
        return not_found();
    };
    let c = &w.cvms[&seq];
    if v2025(&headers) { ok(cvm_v2025(&w, c, now_ms())) } else { ok(cvm_v2026(&w, c, now_ms(), true)) }
}

async fn get_compose(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    match w.find(&id) {
        Some(seq) => ok(w.cvms[&seq].app_compose.clone()),
        None => not_found(),
    }
}

async fn get_docker_compose(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    match w.find(&id) {
        Some(seq) => (
            [("content-type", "text/yaml")],
            s(&w.cvms[&seq].app_compose, "docker_compose_file").unwrap_or_default().to_string(),
        )
            .into_response(),
        None => not_found(),
    }
}

async fn get_pre_launch(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    match w.find(&id) {
        Some(seq) => {
            ok(Value::String(s(&w.cvms[&seq].app_compose, "pre_launch_script").unwrap_or_default().to_string()))
        }
        None => not_found(),
    }
}

async fn cvm_state(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let Some(seq) = w.find(&id) else {
        return not_found();
    };
    let c = &w.cvms[&seq];
    let now = now_ms();
    ok(
        json!({"id": c.vm_uuid, "instance_id": c.instance_id, "name": c.name, "status": c.status(now), "uptime": uptime(c, now), "boot_progress": if c.busy(now) { "booting" } else { "done" }, "boot_error": c.boot_error(now).unwrap_or_default()}),
    )
}

async fn status_batch(State(sim): State<Sim>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let w = sim.inner.world.lock().expect("world lock");
    let now = now_ms();
    let mut out = Map::new();
    for u in v.get("vm_uuids").and_then(|a| a.as_array()).into_iter().flatten().filter_map(|u| u.as_str()) {
        if let Some(seq) = w.find(u) {
            let c = &w.cvms[&seq];
            out.insert(u.to_string(), json!({"vm_uuid": c.vm_uuid, "status": c.status(now), "uptime": uptime(c, now), "in_progress": c.busy(now), "boot_progress": null, "boot_error": c.boot_error(now), "operation_type": if c.busy(now) { Some(c.transition.clone()) } else { None }, "operation_started_at": null, "correlation_id": c.correlation_id}));
        }
    }
    Ok(ok(Value::Object(out)))
}

async fn nodes(State(sim): State<Sim>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let images: Vec<Value> = w
        .os_images
        .iter()
        .map(|i| json!({"name": i.name, "is_dev": i.is_dev, "version": i.version, "os_image_hash": i.os_image_hash}))
        .collect();
    let nodes: Vec<Value> = w
        .nodes
        .iter()
        .map(|n| json!({"teepod_id": n.id, "name": n.name, "listed": true, "resource_score": 1.0, "remaining_vcpu": 64, "remaining_memory": 262144, "remaining_cvm_slots": 100, "images": images, "support_onchain_kms": true, "fmspc": "00906ED50000", "device_id": n.device_id, "region_identifier": n.region, "default_kms": w.kms[0].id, "kms_list": w.kms.iter().map(|k| k.id.clone()).collect::<Vec<_>>()}))
        .collect();
    let kms: Vec<Value> = w.kms.iter().map(|k| w.kms_info_json(k)).collect();
    ok(
        json!({"tier": "free", "capacity": {"max_instances": 100, "max_vcpu": 64, "max_memory": 262144, "max_disk": 10000}, "nodes": nodes, "kms_list": kms}),
    )
}

fn instance_type_json(t: &super::world::InstanceType) -> Value {
    json!({"id": t.id, "name": t.id, "description": format!("{} vCPU, {} GB", t.vcpu, t.memory_mb / 1024), "vcpu": t.vcpu, "memory_mb": t.memory_mb, "hourly_rate": "0.058", "requires_gpu": t.requires_gpu, "default_disk_size_gb": 20, "family": t.family})
}

async fn instance_types(State(sim): State<Sim>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let items: Vec<Value> = w.instance_types.iter().map(instance_type_json).collect();
    ok(json!({"result": [{"name": "tdx", "items": items, "total": items.len()}]}))
}

async fn instance_family(State(sim): State<Sim>, Path(family): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let items: Vec<Value> = w.instance_types.iter().filter(|t| t.family == family).map(instance_type_json).collect();
    if items.is_empty() {
        return structured(StatusCode::NOT_FOUND, "ERR-02-001", &format!("Instance type family {family} not found"));
    }
    ok(json!({"items": items, "total": items.len(), "family": family}))
}

#[derive(serde::Deserialize)]
struct CatalogQuery {
    page: Option<u64>,
    page_size: Option<u64>,
    is_dev: Option<bool>,
    is_onchain: Option<bool>,
}

/// One page of a catalogue, in the SDK's `{items, total, page, page_size, pages}` shape.
fn page_of(items: Vec<Value>, q: &CatalogQuery) -> Response {
    let page = q.page.unwrap_or(1).max(1);
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let total = items.len() as u64;
    let items: Vec<Value> = items.into_iter().skip(((page - 1) * size) as usize).take(size as usize).collect();
    ok(json!({"items": items, "total": total, "page": page, "page_size": size, "pages": total.div_ceil(size).max(1)}))
}

async fn kms_list(State(sim): State<Sim>, Query(q): Query<CatalogQuery>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let items: Vec<Value> = w
        .kms
        .iter()
        .filter(|k| q.is_onchain.is_none_or(|on| on == k.chain_id.is_some()))
        .map(|k| w.kms_info_json(k))
        .collect();
    page_of(items, &q)
}

async fn kms_get(State(sim): State<Sim>, Path(kms): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    match w.kms.iter().find(|k| k.id == kms || k.slug == kms) {
        Some(k) => ok(w.kms_info_json(k)),
        None => structured(StatusCode::NOT_FOUND, "ERR-02-011", "KMS not found"),
    }
}

async fn kms_pubkey(State(sim): State<Sim>, Path((kms, app_id)): Path<(String, String)>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    if !w.kms.iter().any(|k| k.id == kms || k.slug == kms) {
        return structured(StatusCode::NOT_FOUND, "ERR-02-011", "KMS not found");
    }
    let app = app_id.trim_start_matches("0x");
    if app.len() != 40 || !app.chars().all(|c| c.is_ascii_hexdigit()) {
        return invalid("app_id", "app_id must be 40 hex characters");
    }
    // The signature is a placeholder: the simulator's KMS has no secp256k1 identity.
    ok(json!({"public_key": w.app_env_pubkey(app), "signature": format!("0x{}", "00".repeat(65))}))
}

async fn os_images(State(sim): State<Sim>, Query(q): Query<CatalogQuery>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let items: Vec<Value> = w
        .os_images
        .iter()
        .filter(|i| q.is_dev.is_none_or(|d| d == i.is_dev))
        .map(|i| json!({"name": i.name, "slug": i.slug, "version": i.version.iter().map(u32::to_string).collect::<Vec<_>>().join("."), "os_image_hash": i.os_image_hash, "is_dev": i.is_dev, "requires_gpu": false}))
        .collect();
    page_of(items, &q)
}

async fn available_os_images(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let Some(seq) = w.find(&id) else {
        return not_found();
    };
    let current = &w.cvms[&seq].image;
    let mut versions: Vec<Vec<u32>> = w.os_images.iter().map(|i| i.version.clone()).collect();
    versions.sort();
    versions.dedup();
    versions.reverse();
    let variant = |v: &Vec<u32>, dev: bool| {
        w.os_images
            .iter()
            .find(|i| &i.version == v && i.is_dev == dev)
            // `slug` is required by the API's OpenAPI (seed 000) though SDK 0.2.9 does not model it.
            .map(|i| json!({"name": i.name, "slug": i.slug, "os_image_hash": i.os_image_hash, "is_current": &i.name == current}))
    };
    ok(Value::Array(
        versions.iter().map(|v| json!({"version": v, "prod": variant(v, false), "dev": variant(v, true)})).collect(),
    ))
}

// ----- apps (what `phala cvms list` reads) -------------------------------------------------

#[derive(serde::Deserialize)]
struct AppsQuery {
    page: Option<u64>,
    page_size: Option<u64>,
    search: Option<String>,
}

/// An app (`DstackAppFullResponse`). The simulator has one CVM per app, so `current_cvm` and
/// `cvms` hold the same CVM. The app's own `id` is UNVERIFIED; the app id stands in for it.
fn app_json(w: &World, c: &Cvm, now: u64, legacy: bool) -> Value {
    let cvm = if legacy { cvm_v2025_basic(w, c, now) } else { cvm_v2026(w, c, now, false) };
    json!({
        "id": c.app_id,
        "name": c.name,
        "app_id": c.app_id,
        "created_at": rfc3339(c.created_ms),
        "kms_type": c.kms_type,
        "current_cvm": cvm,
        "cvms": [cvm],
        "cvm_count": 1,
    })
}

fn find_app<'a>(w: &'a World, app_id: &str) -> Option<&'a Cvm> {
    let want = app_id.trim_start_matches("app_").trim_start_matches("0x");
    w.cvms.values().find(|c| c.app_id.eq_ignore_ascii_case(want))
}

fn app_not_found() -> Response {
    // UNVERIFIED: the SDK's catalogue has no "app not found" code.
    status_of(404, "App not found")
}

async fn apps_list(State(sim): State<Sim>, headers: HeaderMap, Query(q): Query<AppsQuery>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let now = now_ms();
    let page = q.page.unwrap_or(1).max(1);
    let size = q.page_size.unwrap_or(50).clamp(1, 100);
    let needle = q.search.as_deref().unwrap_or("").to_ascii_lowercase();
    let hits: Vec<&Cvm> = w
        .cvms
        .values()
        .filter(|c| {
            [&c.name, &c.app_id, &c.vm_uuid, &c.instance_id].iter().any(|f| f.to_ascii_lowercase().contains(&needle))
        })
        .collect();
    let total = hits.len() as u64;
    let apps: Vec<Value> = hits
        .iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|c| app_json(&w, c, now, v2025(&headers)))
        .collect();
    ok(
        json!({"dstack_apps": apps, "page": page, "page_size": size, "total": total, "total_pages": total.div_ceil(size).max(1)}),
    )
}

async fn app_get(State(sim): State<Sim>, headers: HeaderMap, Path(app_id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    match find_app(&w, &app_id) {
        Some(c) => ok(app_json(&w, c, now_ms(), v2025(&headers))),
        None => app_not_found(),
    }
}

async fn app_cvms(State(sim): State<Sim>, headers: HeaderMap, Path(app_id): Path<String>) -> Response {
    let w = sim.inner.world.lock().expect("world lock");
    let now = now_ms();
    match find_app(&w, &app_id) {
        Some(c) if v2025(&headers) => ok(json!([cvm_v2025_item(&w, c, now)])),
        Some(c) => ok(json!([cvm_v2026(&w, c, now, false)])),
        None => app_not_found(),
    }
}

// ----- create ------------------------------------------------------------------------------

async fn provision(State(sim): State<Sim>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let name = s(&v, "name").ok_or_else(|| invalid("name", "field required"))?.to_string();
    limits::name(&name).map_err(refused)?;
    let cf = v.get("compose_file").cloned().unwrap_or(json!({}));
    let dc = s(&cf, "docker_compose_file")
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| structured(StatusCode::BAD_REQUEST, "ERR-01-002", "Compose file is required"))?;
    if serde_yaml::from_str::<serde_yaml::Value>(dc).is_err() {
        return Err(structured(StatusCode::BAD_REQUEST, "ERR-01-003", "Invalid compose file: not valid YAML"));
    }
    let pls = s(&cf, "pre_launch_script").filter(|p| !p.is_empty());
    limits::compose_payload("compose_file", dc, pls).map_err(refused)?;
    for (at, keys) in
        [(&["compose_file", "allowed_envs"][..], cf.get("allowed_envs")), (&["env_keys"], v.get("env_keys"))]
    {
        if let Some(keys) = keys {
            limits::env_keys(at, keys).map_err(refused)?;
        }
    }
    let kms_type = match s(&v, "kms").unwrap_or("PHALA").to_ascii_uppercase().as_str() {
        "PHALA" => "phala",
        "ETHEREUM" | "ETH" => "ethereum",
        "BASE" => "base",
        _ => return Err(invalid("kms", "kms must be PHALA, ETHEREUM or BASE")),
    }
    .to_string();
    let allowed_envs: Vec<String> = cf
        .get("allowed_envs")
        .or_else(|| v.get("env_keys"))
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut w = sim.inner.world.lock().expect("world lock");
    if w.cvms.values().any(|c| c.name == name) {
        return Err(structured(StatusCode::CONFLICT, "ERR-01-004", &format!("CVM with name '{name}' already exists")));
    }
    let node_id = match v.get("teepod_id").or_else(|| v.get("node_id")).and_then(|n| n.as_u64()) {
        Some(n) if w.nodes.iter().any(|x| x.id == n) => n,
        Some(n) => {
            return Err(structured(StatusCode::BAD_REQUEST, "ERR-01-001", &format!("Node {n} not found")));
        }
        None => w.nodes[0].id,
    };
    let (itype, vcpu, memory) = match (s(&v, "instance_type"), num(&v, "vcpu"), num(&v, "memory")) {
        (Some(t), _, _) => match w.instance_types.iter().find(|x| x.id == t) {
            Some(x) => (Some(t.to_string()), x.vcpu, x.memory_mb),
            None => {
                return Err(structured(StatusCode::BAD_REQUEST, "ERR-02-001", &format!("Instance type {t} not found")));
            }
        },
        (None, None, None) => (Some("tdx.small".to_string()), 1, 2048),
        (None, c, m) => (None, c.unwrap_or(1), m.unwrap_or(2048)),
    };
    let image = match s(&v, "image") {
        Some(i) if w.os_images.iter().any(|x| x.name == i || x.slug == i) => {
            w.os_images.iter().find(|x| x.name == i || x.slug == i).map(|x| x.name.clone()).unwrap_or_default()
        }
        Some(i) => {
            return Err(structured(StatusCode::BAD_REQUEST, "ERR-02-010", &format!("OS image {i} not found")));
        }
        None => w
            .os_images
            .iter()
            .filter(|x| !x.is_dev)
            .max_by(|a, b| a.version.cmp(&b.version))
            .map(|x| x.name.clone())
            .unwrap_or_default(),
    };
    let Some(kms) = w.kms_for(&kms_type).cloned() else {
        return Err(structured(
            StatusCode::BAD_REQUEST,
            "ERR-02-011",
            &format!("No {kms_type} KMS is available in this simulator (start it with a chain)"),
        ));
    };
    let app_compose = compose::build(&ComposeFields {
        name: s(&cf, "name").unwrap_or(""),
        docker_compose_file: dc,
        pre_launch_script: pls,
        allowed_envs: &allowed_envs,
        kms_enabled: cf.get("kms_enabled").and_then(|b| b.as_bool()).unwrap_or(true),
        gateway_enabled: cf
            .get("gateway_enabled")
            .or_else(|| cf.get("tproxy_enabled"))
            .and_then(|b| b.as_bool())
            .unwrap_or(true),
        public_logs: cf.get("public_logs").and_then(|b| b.as_bool()).unwrap_or(true),
        public_sysinfo: cf.get("public_sysinfo").and_then(|b| b.as_bool()).unwrap_or(true),
        public_tcbinfo: cf.get("public_tcbinfo").and_then(|b| b.as_bool()).unwrap_or(false),
    });
    let compose_hash = app_hash(&cfg(&sim), &app_compose);
    // Each provision is a new app with its own id, even for a compose another provision
    // (perhaps another client's) has pending; a commit must name the latest one. UNVERIFIED:
    // how Phala Cloud allocates PHALA-KMS app ids (per provision is what clients rely on to
    // tell their CVM from another's).
    let app_id = if kms_type == "phala" { Some(w.new_app_id(&name)) } else { None };
    let device_id = w.nodes.iter().find(|n| n.id == node_id).map(|n| n.device_id.clone()).unwrap_or_default();
    let os_hash = w.os_images.iter().find(|x| x.name == image).map(|x| x.os_image_hash.clone());
    let p = Provision {
        name,
        app_id: app_id.clone(),
        app_compose,
        compose_hash: compose_hash.clone(),
        node_id,
        vcpu,
        memory,
        disk_size: num(&v, "disk_size").unwrap_or(20),
        instance_type: itype.clone(),
        gpus: num(&v, "gpus").unwrap_or(0),
        image,
        kms_type,
        kms_id: kms.id.clone(),
        listed: v.get("listed").and_then(|b| b.as_bool()).unwrap_or(false),
        created_ms: now_ms(),
    };
    w.provisions.insert(compose_hash.clone(), p);
    let pubkey = app_id.as_ref().map(|a| w.app_env_pubkey(a));
    let kms_json = w.kms_info_json(&kms);
    sim.persist(&w);
    Ok(ok(json!({
        "app_id": app_id,
        "app_env_encrypt_pubkey": pubkey,
        "compose_hash": compose_hash,
        "kms_info": kms_json,
        "fmspc": "00906ED50000",
        "device_id": device_id,
        "os_image_hash": os_hash,
        "teepod_id": node_id,
        "node_id": node_id,
        "kms_id": kms.id,
        "instance_type": itype,
    })))
}

async fn commit_provision(State(sim): State<Sim>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let hash = s(&v, "compose_hash").ok_or_else(|| invalid("compose_hash", "field required"))?.to_string();
    let app_id_in = s(&v, "app_id")
        .ok_or_else(|| invalid("app_id", "field required"))?
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if let Some(keys) = v.get("env_keys") {
        limits::env_keys(&["env_keys"], keys).map_err(refused)?;
    }
    let config = cfg(&sim);
    let onchain =
        sim.inner.world.lock().expect("world lock").provisions.get(&hash).is_some_and(|p| p.kms_type != "phala");
    if onchain {
        // An on-chain app's contract (its address is the app id) must exist and allow the hash
        // the CVM boots with. UNVERIFIED: the exact check and error Phala Cloud makes here.
        if app_id_in.len() != 40 || !app_id_in.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid("app_id", "app_id must be the app contract address (40 hex characters)"));
        }
        if !chain_allows(&config, &app_id_in, &hash).await? {
            return Err(onchain_error(468, "Compose hash not found on-chain: the app contract does not allow it"));
        }
    }
    let mut w = sim.inner.world.lock().expect("world lock");
    let Some(p) = w.provisions.get(&hash).cloned() else {
        return Err(structured(
            StatusCode::BAD_REQUEST,
            "ERR-01-006",
            "Compose hash is invalid or expired: provision again",
        ));
    };
    if let Some(a) = &p.app_id
        && *a != app_id_in
    {
        return Err(structured(StatusCode::BAD_REQUEST, "ERR-01-006", "app_id does not match the provisioned app"));
    }
    if w.cvms.values().any(|c| c.name == p.name) {
        return Err(structured(
            StatusCode::CONFLICT,
            "ERR-01-004",
            &format!("CVM with name '{}' already exists", p.name),
        ));
    }
    if w.cvms.values().any(|c| c.app_id == app_id_in) {
        return Err(structured(StatusCode::CONFLICT, "ERR-03-007", "A CVM with this app_id already exists"));
    }
    let encrypted_env = s(&v, "encrypted_env").filter(|e| !e.is_empty()).map(str::to_string);
    if let Some(enc) = &encrypted_env
        && crate::envcrypt::decrypt(enc, &w.app_env_key(&app_id_in)).is_err()
    {
        return Err(structured(
            StatusCode::BAD_REQUEST,
            "ERR-02-008",
            "encrypted_env does not decrypt with this app's key (simulator check)",
        ));
    }
    let now = now_ms();
    let seq = w.next_seq;
    w.next_seq += 1;
    let instance_id = hex::encode(&Sha256::digest(format!("{}{seq}{}", w.master_key, rand::random::<u64>()))[..20]);
    let cvm = Cvm {
        seq,
        name: p.name.clone(),
        app_id: app_id_in,
        vm_uuid: uuid::Uuid::new_v4().to_string(),
        instance_id,
        node_id: p.node_id,
        vcpu: p.vcpu,
        memory: p.memory,
        disk_size: p.disk_size,
        instance_type: p.instance_type.clone(),
        gpus: p.gpus,
        image: p.image.clone(),
        kms_type: p.kms_type.clone(),
        kms_id: p.kms_id.clone(),
        app_compose: p.app_compose.clone(),
        compose_hash: hash.clone(),
        encrypted_env,
        shutdown_timeout: None,
        allow_force_stop: None,
        listed: p.listed,
        created_ms: now,
        contract_address: s(&v, "contract_address").map(str::to_string),
        deployer_address: s(&v, "deployer_address").map(str::to_string),
        target: String::new(),
        transition: String::new(),
        busy_until: 0,
        busy_since: 0,
        boot_error: None,
        correlation_id: Some(uuid::Uuid::new_v4().to_string()),
        restarts: 0,
        updates: 0,
    };
    let mut cvm = cvm;
    cvm.transition(now, "starting", "running", config.boot_ms, &config.fail_boot);
    w.provisions.remove(&hash);
    let out = vm_json(&w, &cvm, now);
    w.cvms.insert(seq, cvm);
    sim.persist(&w);
    Ok(ok(out))
}

// ----- updates -----------------------------------------------------------------------------

/// Fields of a unified update that change the app compose (and so the compose hash).
const COMPOSE_FIELDS: &[&str] =
    &["docker_compose_file", "pre_launch_script", "allowed_envs", "public_logs", "public_sysinfo", "public_tcbinfo"];
const PATCH_FIELDS: &[&str] = &[
    "docker_compose_file",
    "pre_launch_script",
    "allowed_envs",
    "public_logs",
    "public_sysinfo",
    "public_tcbinfo",
    "encrypted_env",
    "user_config",
    "gpus",
    "vcpu",
    "memory",
    "disk_size",
    "image",
    "shutdown_timeout",
    "allow_force_stop",
    "instance_type",
];

fn new_compose(c: &Cvm, body: &Value) -> Value {
    let mut a = c.app_compose.clone();
    if let Some(m) = a.as_object_mut() {
        for f in COMPOSE_FIELDS {
            if let Some(v) = body.get(*f) {
                if *f == "pre_launch_script" && v.as_str() == Some("") {
                    m.remove(*f);
                } else {
                    m.insert(f.to_string(), v.clone());
                }
            }
        }
    }
    a
}

/// Checks a unified update's body against the CVM it changes; returns the error response for
/// the first bad field.
fn validate_update(w: &World, c: &Cvm, body: &Value) -> Result<(), Response> {
    let m = body.as_object().expect("body is an object");
    if let Some(k) = m.keys().find(|k| !PATCH_FIELDS.contains(&k.as_str())) {
        return Err(invalid(k, "unknown field"));
    }
    for f in ["vcpu", "memory", "disk_size", "shutdown_timeout"] {
        if let Some(v) = body.get(f)
            && !v.as_f64().is_some_and(|n| n >= 0.0)
        {
            return Err(invalid(f, "must be a non-negative number"));
        }
    }
    if let Some(d) = body.get("docker_compose_file") {
        match d.as_str() {
            Some(y) if serde_yaml::from_str::<serde_yaml::Value>(y).is_ok() && !y.trim().is_empty() => {}
            _ => {
                return Err(structured(StatusCode::BAD_REQUEST, "ERR-01-003", "Invalid compose file: not valid YAML"));
            }
        }
    }
    if let Some(i) = body.get("image").and_then(|i| i.as_str())
        && !w.os_images.iter().any(|x| x.name == i || x.slug == i)
    {
        return Err(structured(StatusCode::BAD_REQUEST, "ERR-02-010", &format!("OS image {i} not found")));
    }
    if let Some(t) = body.get("instance_type").and_then(|i| i.as_str())
        && !w.instance_types.iter().any(|x| x.id == t)
    {
        return Err(structured(StatusCode::BAD_REQUEST, "ERR-02-001", &format!("Instance type {t} not found")));
    }
    if let Some(keys) = body.get("allowed_envs") {
        limits::env_keys(&["allowed_envs"], keys).map_err(refused)?;
    }
    // The limit holds for the app compose the update leaves, whichever part it changes.
    let after = new_compose(c, body);
    let field = if body.get("docker_compose_file").is_some() { "docker_compose_file" } else { "pre_launch_script" };
    limits::compose_payload(
        field,
        s(&after, "docker_compose_file").unwrap_or_default(),
        s(&after, "pre_launch_script"),
    )
    .map_err(refused)?;
    Ok(())
}

/// Applies an update: every field at once, then one restart.
fn apply_update(w: &mut World, seq: u64, body: &Value, config: &SimConfig) -> Result<String, Response> {
    let key = {
        let c = &w.cvms[&seq];
        c.app_id.clone()
    };
    if let Some(enc) = body.get("encrypted_env").and_then(|e| e.as_str()).filter(|e| !e.is_empty())
        && crate::envcrypt::decrypt(enc, &w.app_env_key(&key)).is_err()
    {
        return Err(structured(
            StatusCode::BAD_REQUEST,
            "ERR-02-008",
            "encrypted_env does not decrypt with this app's key (simulator check)",
        ));
    }
    let images = w.os_images.clone();
    let types = w.instance_types.clone();
    let now = now_ms();
    let c = w.cvms.get_mut(&seq).expect("found above");
    let app_compose = new_compose(c, body);
    c.compose_hash = app_hash(config, &app_compose);
    c.app_compose = app_compose;
    if let Some(e) = body.get("encrypted_env").and_then(|e| e.as_str()) {
        c.encrypted_env = Some(e.to_string()).filter(|e| !e.is_empty());
    }
    if let Some(t) = body.get("instance_type").and_then(|t| t.as_str())
        && let Some(x) = types.iter().find(|x| x.id == t)
    {
        c.instance_type = Some(t.to_string());
        c.vcpu = x.vcpu;
        c.memory = x.memory_mb;
    }
    let vcpu = num(body, "vcpu");
    let memory = num(body, "memory");
    if vcpu.is_some() || memory.is_some() {
        c.vcpu = vcpu.unwrap_or(c.vcpu);
        c.memory = memory.unwrap_or(c.memory);
        // A custom size no longer matches a named type unless it equals one.
        c.instance_type = types.iter().find(|x| x.vcpu == c.vcpu && x.memory_mb == c.memory).map(|x| x.id.clone());
    }
    if let Some(d) = num(body, "disk_size") {
        c.disk_size = d;
    }
    if let Some(i) = body.get("image").and_then(|i| i.as_str()) {
        c.image =
            images.iter().find(|x| x.name == i || x.slug == i).map(|x| x.name.clone()).unwrap_or_else(|| i.to_string());
    }
    if let Some(g) = body.get("gpus") {
        c.gpus = g.get("count").and_then(|n| n.as_u64()).or_else(|| g.as_u64()).unwrap_or(0) as u32;
    }
    if let Some(t) = num(body, "shutdown_timeout") {
        c.shutdown_timeout = Some(t);
    }
    if let Some(b) = body.get("allow_force_stop").and_then(|b| b.as_bool()) {
        c.allow_force_stop = Some(b);
    }
    let correlation = uuid::Uuid::new_v4().to_string();
    c.correlation_id = Some(correlation.clone());
    c.updates += 1;
    if c.target == "stopped" {
        // A stopped CVM takes the update and stays stopped.
        c.transition(now, "updating", "stopped", config.restart_ms, &[]);
    } else {
        // A running one restarts; a failed one boots again (UNVERIFIED for the real API).
        c.restarts += 1;
        c.transition(now, "restarting", "running", config.restart_ms, &config.fail_boot);
    }
    Ok(correlation)
}

/// UNVERIFIED: the real answer to an update of a CVM that is still restarting. The SDK's
/// error-code catalogue has no code for it, so this is a plain 409 (`isConflictError`).
fn busy_error() -> Response {
    status_of(409, "Another operation is in progress for this CVM; retry when it is running")
}

/// The 465 answer: the new compose hash must be registered on chain first.
fn hash_required(w: &mut World, seq: u64, body: Value, hash: &str, onchain_allowed: Option<bool>) -> Response {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let c = &w.cvms[&seq];
    let kms_info = kms_info_for(w, c);
    let device = w.nodes.iter().find(|n| n.id == c.node_id).map(|n| n.device_id.clone()).unwrap_or_default();
    let app_id = c.app_id.clone();
    let vm = c.vm_uuid.replace('-', "");
    w.pending_updates.insert(
        token.clone(),
        PendingUpdate {
            cvm_seq: seq,
            compose_hash: hash.to_string(),
            body,
            token: token.clone(),
            created_ms: now_ms(),
        },
    );
    let allowed = onchain_allowed.unwrap_or(false);
    structured_with(
        StatusCode::from_u16(465).expect("465 is a valid status"),
        "ERR-01-005",
        "On-chain compose hash registration required",
        vec![
            ("compose_hash", hash.into()),
            ("app_id", app_id.into()),
            ("device_id", device.into()),
            ("kms_info", kms_info),
            ("commit_token", token.clone().into()),
            ("commit_url", format!("https://cloud.phala.invalid/cvms/{vm}/commit?token={token}").into()),
            ("api_commit_url", format!("/api/v1/cvms/{vm}/commit-update").into()),
            (
                "onchain_status",
                json!({"compose_hash_allowed": allowed, "device_id_allowed": true, "is_allowed": allowed}),
            ),
        ],
    )
}

/// One JSON-RPC request to the chain; transport and decoding failures become 502s.
async fn rpc_call(rpc: &str, method: &str, params: Value) -> Result<Value, Response> {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = reqwest::Client::new()
        .post(rpc)
        .json(&req)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| status_of(502, &format!("cannot reach the chain: {e}")))?;
    resp.json().await.map_err(|e| status_of(502, &format!("bad chain answer: {e}")))
}

/// Asks the chain whether the app contract allows the hash (`allowedComposeHashes(bytes32)`).
async fn chain_allows(config: &SimConfig, app_id: &str, hash: &str) -> Result<bool, Response> {
    let Some(rpc) = &config.chain_rpc else {
        return Err(status_of(500, "simulator has no chain configured for on-chain KMS"));
    };
    let data = format!("0x2f6622e5{}", hash.trim_start_matches("0x"));
    let to = format!("0x{}", app_id.trim_start_matches("0x"));
    let v = rpc_call(rpc, "eth_call", json!([{"to": to, "data": data}, "latest"])).await?;
    let out = v
        .get("result")
        .and_then(|r| r.as_str())
        .ok_or_else(|| status_of(502, &format!("chain error: {}", v.get("error").cloned().unwrap_or_default())))?;
    Ok(out.trim_start_matches("0x").chars().any(|c| c != '0'))
}

/// `topic0` of dstack's `ComposeHashAdded(bytes32)`.
const COMPOSE_HASH_ADDED: &str = "0xfecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af";

/// Whether a transaction succeeded and registered `hash` on the app contract: its receipt has
/// a `ComposeHashAdded(hash)` log from that contract (so a Safe's execution counts too).
/// UNVERIFIED: what exactly Phala Cloud checks for 467 is not documented.
async fn tx_registers(config: &SimConfig, tx: &str, app_id: &str, hash: &str) -> Result<bool, Response> {
    let Some(rpc) = &config.chain_rpc else {
        return Ok(false);
    };
    let v = rpc_call(rpc, "eth_getTransactionReceipt", json!([tx])).await?;
    let Some(r) = v.get("result").filter(|r| r.is_object()) else {
        return Ok(false);
    };
    if r.get("status").and_then(|s| s.as_str()) != Some("0x1") {
        return Ok(false);
    }
    let app = format!("0x{}", app_id.trim_start_matches("0x")).to_ascii_lowercase();
    let data = format!("0x{}", hash.trim_start_matches("0x")).to_ascii_lowercase();
    Ok(r.get("logs").and_then(|l| l.as_array()).into_iter().flatten().any(|l| {
        s(l, "address").is_some_and(|a| a.eq_ignore_ascii_case(&app))
            && l.get("topics").and_then(|t| t.get(0)).and_then(|t| t.as_str()) == Some(COMPOSE_HASH_ADDED)
            && s(l, "data").is_some_and(|d| d.eq_ignore_ascii_case(&data))
    }))
}

/// The confirm/commit errors of the on-chain flow (466 expired, 467 transaction not verified,
/// 468 hash not allowed), with the SDK's error codes. UNVERIFIED: the real bodies.
fn onchain_error(status: u16, message: &str) -> Response {
    let code = match status {
        466 => "ERR-01-006",
        467 => "ERR-01-007",
        _ => "ERR-01-008",
    };
    structured(StatusCode::from_u16(status).expect("a valid status"), code, message)
}

/// Commits a pending on-chain update once the chain allows its hash.
async fn confirm_pending(
    sim: &Sim,
    token_or_hash: (&str, Option<&str>),
    seq_hint: Option<u64>,
    tx: &str,
) -> Result<String, Response> {
    let config = cfg(sim);
    let pending = {
        let w = sim.inner.world.lock().expect("world lock");
        let (token, hash) = token_or_hash;
        // The newest update held for this hash wins (an update sent again replaces older ones).
        w.pending_updates
            .values()
            .filter(|p| {
                (p.token == token
                    || Some(p.compose_hash.as_str()) == hash && (seq_hint.is_none() || Some(p.cvm_seq) == seq_hint))
                    && (hash.is_none() || Some(p.compose_hash.as_str()) == hash)
            })
            .max_by_key(|p| p.created_ms)
            .cloned()
    };
    let Some(p) = pending else {
        return Err(onchain_error(466, "Compose hash expired or unknown: send the update again"));
    };
    let app_id = {
        let w = sim.inner.world.lock().expect("world lock");
        match w.cvms.get(&p.cvm_seq) {
            Some(c) => c.app_id.clone(),
            None => return Err(not_found()),
        }
    };
    if tx != "already-registered" && !tx_registers(&config, tx, &app_id, &p.compose_hash).await? {
        return Err(onchain_error(
            467,
            "Transaction verification failed: no successful transaction registering this compose hash",
        ));
    }
    if !chain_allows(&config, &app_id, &p.compose_hash).await? {
        return Err(onchain_error(468, "Compose hash not found on-chain: the app contract does not allow it"));
    }
    let mut w = sim.inner.world.lock().expect("world lock");
    if w.cvms.get(&p.cvm_seq).is_some_and(|c| c.busy(now_ms())) {
        return Err(busy_error());
    }
    let id = apply_update(&mut w, p.cvm_seq, &p.body, &config)?;
    w.pending_updates.remove(&p.token);
    sim.persist(&w);
    Ok(id)
}

/// The shared path of every update endpoint: 465 for on-chain apps whose hash changes,
/// else one update and one restart.
async fn update(sim: &Sim, id: &str, body: Value, prepare_only: bool) -> Result<String, Response> {
    let config = cfg(sim);
    let (seq, hash_change, app_id) = {
        let w = sim.inner.world.lock().expect("world lock");
        let seq = w.find(id).ok_or_else(not_found)?;
        let c = &w.cvms[&seq];
        validate_update(&w, c, &body)?;
        // UNVERIFIED: the real API's answer to a smaller disk. Phala's Terraform provider
        // refuses it (grow-only disks); this answers as the API does for an incompatible
        // configuration.
        if let Some(d) = num(&body, "disk_size")
            && d < c.disk_size
        {
            return Err(structured(
                StatusCode::BAD_REQUEST,
                "ERR-02-009",
                &format!("disk_size cannot shrink ({} GB to {d} GB): disks only grow", c.disk_size),
            ));
        }
        let new_hash = app_hash(&config, &new_compose(c, &body));
        let onchain_change = c.is_onchain() && (new_hash != c.compose_hash || prepare_only);
        (seq, onchain_change.then_some(new_hash), c.app_id.clone())
    };
    if let Some(hash) = hash_change {
        let allowed = if config.chain_rpc.is_some() { chain_allows(&config, &app_id, &hash).await.ok() } else { None };
        let mut w = sim.inner.world.lock().expect("world lock");
        let resp = hash_required(&mut w, seq, body, &hash, allowed);
        sim.persist(&w);
        return Err(resp);
    }
    let mut w = sim.inner.world.lock().expect("world lock");
    if w.cvms[&seq].busy(now_ms()) {
        return Err(busy_error());
    }
    let corr = apply_update(&mut w, seq, &body, &config)?;
    sim.persist(&w);
    Ok(corr)
}

fn header<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
    h.get(k).and_then(|v| v.to_str().ok())
}

async fn patch_cvm(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    if let (Some(hash), Some(tx)) = (header(&headers, "x-compose-hash"), header(&headers, "x-transaction-hash")) {
        let seq = sim.inner.world.lock().expect("world lock").find(&id).ok_or_else(not_found)?;
        let corr = confirm_pending(&sim, ("", Some(hash)), Some(seq), tx).await?;
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({"correlation_id": corr}))).into_response());
    }
    if v.as_object().is_some_and(|m| m.is_empty()) {
        return Err(invalid("body", "nothing to update"));
    }
    let prepare = header(&headers, "x-prepare-only") == Some("true");
    let corr = update(&sim, &id, v, prepare).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"correlation_id": corr}))).into_response())
}

async fn commit_update(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let token = s(&v, "token").ok_or_else(|| invalid("token", "field required"))?;
    let hash = s(&v, "compose_hash").ok_or_else(|| invalid("compose_hash", "field required"))?;
    let tx = s(&v, "transaction_hash").unwrap_or("already-registered");
    let seq = sim.inner.world.lock().expect("world lock").find(&id).ok_or_else(not_found)?;
    let valid = sim
        .inner
        .world
        .lock()
        .expect("world lock")
        .pending_updates
        .get(token)
        .is_some_and(|p| p.cvm_seq == seq && p.compose_hash == hash);
    if !valid {
        return Err(onchain_error(466, "Commit token is invalid, expired or for another hash"));
    }
    let corr = confirm_pending(&sim, (token, Some(hash)), Some(seq), tx).await?;
    Ok(ok(json!({"correlation_id": corr, "status": "in_progress"})))
}

fn in_progress(corr: String, extra: Option<(&str, Value)>) -> Response {
    let mut v = json!({"status": "in_progress", "message": "Update started", "correlation_id": corr});
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    (StatusCode::ACCEPTED, axum::Json(v)).into_response()
}

async fn patch_envs(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let enc = s(&v, "encrypted_env").ok_or_else(|| invalid("encrypted_env", "field required"))?.to_string();
    let mut patch = json!({"encrypted_env": enc});
    let before = {
        let w = sim.inner.world.lock().expect("world lock");
        let seq = w.find(&id).ok_or_else(not_found)?;
        w.cvms[&seq].env_keys()
    };
    let mut changed = false;
    if let Some(keys) = v.get("env_keys").filter(|k| k.is_array()) {
        changed = keys.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).map(str::to_string).collect::<Vec<_>>())
            != Some(before);
        patch["allowed_envs"] = keys.clone();
    }
    if let (Some(hash), Some(tx)) = (s(&v, "compose_hash"), s(&v, "transaction_hash")) {
        let seq = sim.inner.world.lock().expect("world lock").find(&id).ok_or_else(not_found)?;
        let corr = confirm_pending(&sim, ("", Some(hash)), Some(seq), tx).await?;
        return Ok(in_progress(corr, Some(("allowed_envs_changed", changed.into()))));
    }
    let corr = update(&sim, &id, patch, false).await?;
    Ok(in_progress(corr, Some(("allowed_envs_changed", changed.into()))))
}

async fn raw_field_update(sim: Sim, headers: HeaderMap, id: String, field: &str, body: Bytes) -> Res {
    let text = String::from_utf8(body.to_vec()).map_err(|_| invalid(field, "body must be UTF-8 text"))?;
    if let (Some(hash), Some(tx)) = (header(&headers, "x-compose-hash"), header(&headers, "x-transaction-hash")) {
        let seq = sim.inner.world.lock().expect("world lock").find(&id).ok_or_else(not_found)?;
        return Ok(in_progress(confirm_pending(&sim, ("", Some(hash)), Some(seq), tx).await?, None));
    }
    let corr = update(&sim, &id, json!({ field: text }), false).await?;
    Ok(in_progress(corr, None))
}

async fn patch_docker_compose(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    raw_field_update(sim, headers, id, "docker_compose_file", body).await
}

async fn patch_pre_launch(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Res {
    raw_field_update(sim, headers, id, "pre_launch_script", body).await
}

async fn patch_resources(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let mut patch = Map::new();
    for f in ["vcpu", "memory", "disk_size", "instance_type"] {
        if let Some(x) = v.get(f).filter(|x| !x.is_null()) {
            patch.insert(f.into(), x.clone());
        }
    }
    if patch.is_empty() {
        return Err(invalid("body", "nothing to update"));
    }
    update(&sim, &id, Value::Object(patch), false).await?;
    Ok(ok(Value::Null))
}

async fn patch_visibility(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let mut patch = Map::new();
    for f in ["public_sysinfo", "public_logs", "public_tcbinfo"] {
        if let Some(x) = v.get(f).filter(|x| x.is_boolean()) {
            patch.insert(f.into(), x.clone());
        }
    }
    let listed = v.get("listed").and_then(|b| b.as_bool());
    if patch.is_empty() && listed.is_none() {
        return Err(invalid("body", "nothing to update"));
    }
    if !patch.is_empty() {
        update(&sim, &id, Value::Object(patch), false).await?;
    }
    let mut w = sim.inner.world.lock().expect("world lock");
    let seq = w.find(&id).ok_or_else(not_found)?;
    if let Some(l) = listed {
        w.cvms.get_mut(&seq).expect("found").listed = l;
    }
    let out = cvm_v2025(&w, &w.cvms[&seq], now_ms());
    sim.persist(&w);
    Ok(ok(out))
}

async fn patch_os_image(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let name =
        s(&v, "os_image_name").or_else(|| s(&v, "image")).ok_or_else(|| invalid("os_image_name", "field required"))?;
    update(&sim, &id, json!({"image": name}), false).await?;
    Ok(ok(Value::Null))
}

async fn provision_compose(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let (seq, allowed, out) = {
        let mut w = sim.inner.world.lock().expect("world lock");
        let seq = w.find(&id).ok_or_else(not_found)?;
        let c = &w.cvms[&seq];
        let mut patch = Map::new();
        for f in COMPOSE_FIELDS {
            if let Some(x) = v.get(*f) {
                patch.insert(f.to_string(), x.clone());
            }
        }
        let patch = Value::Object(patch);
        validate_update(&w, c, &patch)?;
        let hash = app_hash(&cfg(&sim), &new_compose(c, &patch));
        let info = if c.is_onchain() { kms_info_for(&w, c) } else { Value::Null };
        let device = w.nodes.iter().find(|n| n.id == c.node_id).map(|n| n.device_id.clone());
        let out = json!({"app_id": c.app_id, "device_id": device, "compose_hash": hash, "kms_info": info});
        let token = format!("compose-{hash}");
        let onchain = c.is_onchain();
        let app = c.app_id.clone();
        w.pending_updates.insert(
            token.clone(),
            PendingUpdate { cvm_seq: seq, compose_hash: hash.clone(), body: patch, token, created_ms: now_ms() },
        );
        sim.persist(&w);
        (seq, onchain.then_some((app, hash)), out)
    };
    let _ = seq;
    let mut out = out;
    out["compose_hash_registered"] = match allowed {
        Some((app, hash)) => chain_allows(&cfg(&sim), &app, &hash).await.unwrap_or(false).into(),
        None => false.into(),
    };
    Ok(ok(out))
}

async fn commit_compose(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Res {
    let v = body_json(&body)?;
    let hash = s(&v, "compose_hash").ok_or_else(|| invalid("compose_hash", "field required"))?.to_string();
    let token = format!("compose-{hash}");
    let (seq, onchain, mut pending) = {
        let w = sim.inner.world.lock().expect("world lock");
        let seq = w.find(&id).ok_or_else(not_found)?;
        let p = w
            .pending_updates
            .get(&token)
            .filter(|p| p.cvm_seq == seq)
            .cloned()
            .ok_or_else(|| onchain_error(466, "Compose hash expired or unknown: provision again"))?;
        (seq, w.cvms[&seq].is_onchain(), p)
    };
    if let Some(enc) = s(&v, "encrypted_env") {
        pending.body["encrypted_env"] = enc.into();
    }
    if let Some(keys) = v.get("env_keys").filter(|k| k.is_array()) {
        limits::env_keys(&["env_keys"], keys).map_err(refused)?;
        pending.body["allowed_envs"] = keys.clone();
    }
    let config = cfg(&sim);
    if onchain {
        let app = sim.inner.world.lock().expect("world lock").cvms[&seq].app_id.clone();
        if !chain_allows(&config, &app, &hash).await? {
            return Err(onchain_error(468, "Compose hash not found on-chain: the app contract does not allow it"));
        }
    }
    let mut w = sim.inner.world.lock().expect("world lock");
    if w.cvms[&seq].busy(now_ms()) {
        return Err(busy_error());
    }
    apply_update(&mut w, seq, &pending.body, &config)?;
    w.pending_updates.remove(&token);
    sim.persist(&w);
    Ok(ok(Value::Null))
}

// ----- power and delete --------------------------------------------------------------------

fn power(sim: &Sim, id: &str, target: &str, transition: &str, restart: bool) -> Res {
    let config = cfg(sim);
    let mut w = sim.inner.world.lock().expect("world lock");
    let seq = w.find(id).ok_or_else(not_found)?;
    let now = now_ms();
    let c = w.cvms.get_mut(&seq).expect("found");
    if c.busy(now) {
        return Err(busy_error());
    }
    if restart && c.target == "running" {
        c.restarts += 1;
    }
    let ms = if target == "stopped" { config.restart_ms / 2 } else { config.restart_ms };
    c.transition(now, transition, target, ms, &config.fail_boot);
    c.correlation_id = Some(uuid::Uuid::new_v4().to_string());
    let out = vm_json(&w, &w.cvms[&seq], now);
    sim.persist(&w);
    Ok(ok(out))
}

async fn power_start(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, "running", "starting", false)
}
async fn power_stop(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, "stopped", "stopping", false)
}
async fn power_shutdown(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, "stopped", "shutting_down", false)
}
async fn power_restart(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    power(&sim, &id, "running", "restarting", true)
}

async fn delete_cvm(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let mut w = sim.inner.world.lock().expect("world lock");
    let seq = w.find(&id).ok_or_else(not_found)?;
    w.cvms.remove(&seq);
    w.pending_updates.retain(|_, p| p.cvm_seq != seq);
    sim.persist(&w);
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- simulator controls ------------------------------------------------------------------

async fn sim_stats(State(sim): State<Sim>) -> Response {
    let stats = sim.stats();
    let w = sim.inner.world.lock().expect("world lock");
    let now = now_ms();
    let cvms: Map<String, Value> = w.cvms.values().map(|c| (c.name.clone(), json!({"restarts": c.restarts, "updates": c.updates, "status": c.status(now), "vcpu": c.vcpu, "memory": c.memory, "id": c.vm_uuid, "app_id": c.app_id, "compose_hash": c.compose_hash}))).collect();
    ok(
        json!({"total_requests": stats.total_requests, "requests": stats.requests, "injected_errors": stats.injected_errors, "injected_hangs": stats.injected_hangs, "cvm_count": w.cvms.len(), "cvms": cvms}),
    )
}

async fn sim_config_get(State(sim): State<Sim>) -> Response {
    ok(serde_json::to_value(cfg(&sim)).unwrap_or_default())
}

/// Changes knobs at runtime: any subset of the [`SimConfig`] fields (the API key excepted).
async fn sim_config_set(State(sim): State<Sim>, body: Bytes) -> Res {
    let patch = body_json(&body)?;
    let mut current = serde_json::to_value(cfg(&sim)).unwrap_or_default();
    for (k, v) in patch.as_object().expect("object") {
        current[k] = v.clone();
    }
    let new: SimConfig = serde_json::from_value(current).map_err(|e| invalid("config", &e.to_string()))?;
    {
        let mut c = sim.inner.config.lock().expect("config lock");
        let key = c.api_key.clone();
        *c = SimConfig { api_key: key, ..new };
    }
    sim.configure_chain();
    Ok(sim_config_get(State(sim)).await)
}

/// The env a CVM would see, decrypted with the test KMS key: lets tests check what teeform
/// sent without the simulator ever storing plaintext.
async fn sim_env(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let w = sim.inner.world.lock().expect("world lock");
    let seq = w.find(&id).ok_or_else(not_found)?;
    let c = &w.cvms[&seq];
    let env = match &c.encrypted_env {
        Some(e) => {
            crate::envcrypt::decrypt(e, &w.app_env_key(&c.app_id)).map_err(|e| status_of(500, &e.to_string()))?
        }
        None => vec![],
    };
    let m: Map<String, Value> = env.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    Ok(ok(json!({"env": m, "allowed_envs": c.env_keys()})))
}
