//! The JSON the simulated API answers with: one function per resource, following the official
//! SDKs' schemas (reference §2; `@phala/cloud` 0.2.9 and `phala-cloud` 0.2.0). A resource whose
//! shape differs by API version takes the [`ApiVersion`] and chooses here ([`user`], [`cvm`],
//! [`cvm_list_item`], [`app`], [`vm`], [`cvm_state`], [`kms_resource`],
//! [`cvm_create_resources`]); serving a new version is a new arm in these functions and
//! nowhere else. What changes between versions:
//!
//! - 2025-10-28: the legacy CVM shapes (`CvmDetailV20251028`, the VM under `hosted`);
//! - 2026-01-21: `CvmInfoV20260121`; a CVM's `id` there is its VM UUID (a string, as both
//!   SDKs' `CvmInfoV20260121` model it), while the VM object of a commit or a power action
//!   carries the integer id and `user_id`;
//! - 2026-05-22: every CVM id is a string hashid (`cvm_…`, [`Cvm::hashid`]), `user_id` too;
//! - 2026-06-23: `GET /kms` and `GET /kms/{slug}` answer KMS contracts (`KmsContract`).
//!
//! Error bodies are shaped in [`super::error`].

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value, json};

use super::edge::ApiVersion;
use super::gate::{WORKSPACE_ID, WORKSPACE_SLUG};
use super::world::{ComposePrepared, Cvm, InstanceType, Kms, OsImage, Provisioned, World};

const DOMAIN: &str = "dstack-sim.phala.invalid";

/// A time in milliseconds since the epoch as RFC 3339, to the second.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

// ----- versioned resources -------------------------------------------------------------------

/// `GET /auth/me`: the user, workspace and credits.
pub fn user(v: ApiVersion) -> Value {
    match v {
        ApiVersion::V20251028 => json!({
            "username": "sim", "email": "sim@example.invalid", "credits": 100.0, "granted_credits": 0.0,
            "avatar": "", "team_name": "Simulator", "team_tier": "free",
        }),
        ApiVersion::V20260121 | ApiVersion::V20260522 | ApiVersion::V20260623 => json!({
            "user": {"username": "sim", "email": "sim@example.invalid", "role": "admin", "avatar": "", "email_verified": true, "totp_enabled": false, "has_backup_codes": false, "flag_has_password": true},
            "workspace": {"id": WORKSPACE_ID, "name": "Simulator", "slug": WORKSPACE_SLUG, "tier": "free", "role": "owner"},
            "credits": {"balance": "100.00", "granted_balance": "0.00", "is_post_paid": false, "outstanding_amount": null}
        }),
    }
}

/// A CVM's id as this version writes it in a CVM object: its VM UUID (2026-01-21), or its
/// hashid (2026-05-22 on).
fn cvm_id(v: ApiVersion, c: &Cvm) -> Value {
    if v.string_ids() { c.hashid().into() } else { c.vm_uuid.clone().into() }
}

/// A CVM's detail (`GET /cvms/{id}`): `CvmDetailV20251028`, or `CvmInfoDetailV20260121` /
/// `CvmInfoDetailV20260522` (the list item with its app compose).
pub fn cvm(v: ApiVersion, w: &World, c: &Cvm, now: u64) -> Value {
    match v {
        ApiVersion::V20251028 => cvm_v2025(w, c, now),
        ApiVersion::V20260121 | ApiVersion::V20260522 | ApiVersion::V20260623 => {
            let mut out = cvm_v2026(v, w, c, now);
            out["compose_file"] = c.app_compose.clone();
            out
        }
    }
}

/// A CVM in a list (`GET /cvms/paginated`, `GET /apps/{id}/cvms`): `CvmInfoV20251028` (the VM
/// nested under `hosted`), or `CvmInfoV20260121` / `CvmInfoV20260522`.
pub fn cvm_list_item(v: ApiVersion, w: &World, c: &Cvm, now: u64) -> Value {
    match v {
        ApiVersion::V20251028 => cvm_v2025_item(w, c, now),
        ApiVersion::V20260121 | ApiVersion::V20260522 | ApiVersion::V20260623 => cvm_v2026(v, w, c, now),
    }
}

/// An app (`DstackAppFullResponse`). The simulator has one CVM per app, so `current_cvm` and
/// `cvms` hold the same CVM (`CvmBasicInfoV20251028`, or a 2026 list item). The app's own
/// `id` is UNVERIFIED; the app id stands in for it.
pub fn app(v: ApiVersion, w: &World, c: &Cvm, now: u64) -> Value {
    let cvm = match v {
        ApiVersion::V20251028 => cvm_v2025_basic(w, c, now),
        ApiVersion::V20260121 | ApiVersion::V20260522 | ApiVersion::V20260623 => cvm_v2026(v, w, c, now),
    };
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

/// The VM object a commit (`POST /cvms`) and the power actions answer with
/// (`CommitCvmProvisionV20260121` / `V20260522`, `CvmActionResponse…`): the integer id and
/// `user_id` up to 2026-01-21, the hashid and a string `user_id` from 2026-05-22 on.
pub fn vm(v: ApiVersion, w: &World, c: &Cvm, now: u64) -> Value {
    let (id, user_id) = if v.string_ids() { (c.hashid().into(), "u_sim".into()) } else { (json!(c.seq), json!(1)) };
    let node = w.node(c.node_id);
    json!({
        "id": id,
        "name": c.name,
        "status": c.status(now),
        "teepod_id": c.node_id,
        "teepod": {"id": c.node_id, "name": node.map(|n| n.name.clone())},
        "user_id": user_id,
        "app_id": c.app_id,
        "vm_uuid": c.vm_uuid,
        "instance_id": c.instance_id,
        "app_url": app_url(c),
        "base_image": c.image,
        "vcpu": c.vcpu,
        "memory": c.memory,
        "disk_size": c.disk_size,
        "manifest_version": 2,
        "version": "1.0.0",
        "runner": "docker-compose",
        "docker_compose_file": c.compose_text("docker_compose_file"),
        "features": ["kms", "tproxy-net"],
        "created_at": rfc3339(c.created_ms),
        "encrypted_env_pubkey": w.app_env_pubkey(&c.app_id),
    })
}

/// `GET /cvms/{id}/state` (and each `state` event of its SSE form), with the CVM's id as this
/// version writes it.
pub fn cvm_state(v: ApiVersion, c: &Cvm, now: u64) -> Value {
    json!({
        "id": cvm_id(v, c), "instance_id": c.instance_id, "name": c.name, "status": c.status(now),
        "uptime": uptime(c, now), "boot_progress": if c.busy(now) { "booting" } else { "done" },
        "boot_error": c.boot_error(now).unwrap_or_default(),
    })
}

/// A KMS as `GET /kms` lists it and `GET /kms/{id}` answers: a KMS node (`KmsInfo`) up to
/// 2026-05-22, a KMS contract (`KmsContract`) from 2026-06-23 on.
pub fn kms_resource(v: ApiVersion, k: &Kms) -> Value {
    match v {
        ApiVersion::V20251028 | ApiVersion::V20260121 | ApiVersion::V20260522 => {
            let mut info = kms(k);
            // UNVERIFIED: that the KmsInfo of `GET /kms` and `GET /kms/{id}` (a passthrough
            // schema) carries the KMS's signing key under dstack's name for it (`GetMeta`'s
            // `k256_pubkey`); the 2026-06-23 KMS contract names it so. Only here: the KmsInfo
            // embedded elsewhere (provision, nodes) stays as the SDK models it.
            info["k256_pubkey"] = crate::sim::kms_signer().into();
            info
        }
        ApiVersion::V20260623 => kms_contract(k),
    }
}

// ----- one shape each -------------------------------------------------------------------------

/// `GET /teepods/cvm-create-resources`: everything a create can choose from, as a graph
/// (`CvmCreateResourceGraphV20260121` / `V20260522`). One shape serves every version: its ids
/// are strings, which the 2026-01-21 model takes as well as integers and the 2026-05-22 one
/// requires.
pub fn cvm_create_resources(w: &World) -> Value {
    let avail = nodes(w);
    let kms_nodes: Vec<Value> = w
        .kms
        .iter()
        .map(|k| {
            json!({
                "id": k.id, "slug": k.slug, "url": kms_url(k), "version": "v0.5.5", "kms_type": kms_type(k),
                "chain_id": k.chain_id, "kms_contract_id": kms_contract_id(k), "kms_contract_address": k.kms_contract_address,
                "gateway_app_id": null, "supported_os_images": w.os_images.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let relations: Vec<Value> = w
        .nodes
        .iter()
        .flat_map(|n| {
            w.kms.iter().map(move |k| {
                json!({
                    "teepod_id": n.id, "kms_id": k.id, "kms_type": kms_type(k), "kms_contract_id": kms_contract_id(k),
                    "kms_contract_address": k.kms_contract_address,
                    "supported_os_images": w.os_images.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    let gateways: Vec<Value> = w
        .nodes
        .iter()
        .flat_map(|n| {
            w.kms.iter().map(move |k| {
                json!({
                    "id": format!("gw_{}_{}", n.id, k.slug), "teepod_id": n.id, "kms_contract_id": kms_contract_id(k),
                    "rpc_url": format!("https://gateway-{}.{DOMAIN}", n.name), "domain_suffix": DOMAIN, "enabled": true,
                })
            })
        })
        .collect();
    let instance_types: Vec<Value> = w
        .instance_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "id": t.id, "name": t.id, "vcpu": t.vcpu, "memory_mb": t.memory_mb, "default_disk_size_gb": 20,
                "requires_gpu": t.requires_gpu, "requires_gpu_count": 0, "family": t.family, "display_order": i,
            })
        })
        .collect();
    json!({
        "tier": avail["tier"],
        "capacity": avail["capacity"],
        "nodes": avail["nodes"],
        "kms_nodes": kms_nodes,
        "node_kms_relations": relations,
        "gateway_nodes": gateways,
        "instance_types": instance_types,
        "gpu_availability": {"has_reserved_gpus": false, "reserved_gpu_count": 0, "has_public_gpus": false, "public_gpu_count": 0},
    })
}

fn app_url(c: &Cvm) -> String {
    format!("https://{}-80.{DOMAIN}", c.app_id)
}

fn public_urls(c: &Cvm) -> Value {
    json!([{"app": app_url(c), "instance": format!("https://{}-80.{DOMAIN}", c.instance_id)}])
}

fn uptime(c: &Cvm, now: u64) -> String {
    if c.busy(now) { "0s".to_string() } else { format!("{}s", now.saturating_sub(c.busy_until) / 1000) }
}

fn machine_info(c: &Cvm) -> Value {
    json!({"vcpu": c.vcpu, "memory": c.memory, "disk_size": c.disk_size, "gpu_count": c.gpus})
}

/// A compose flag as the API shows it: as set, else its default.
fn compose_flag(c: &Cvm, field: &str, default: bool) -> Value {
    c.app_compose.get(field).cloned().unwrap_or(Value::Bool(default))
}

fn kms_or_null(w: &World, c: &Cvm) -> Value {
    w.kms_of(c).map_or(Value::Null, kms)
}

/// The 2026 CVM (without its app compose); only its `id` differs between versions.
fn cvm_v2026(v: ApiVersion, w: &World, c: &Cvm, now: u64) -> Value {
    let progress = if c.busy(now) {
        let since = if c.busy_since > 0 { c.busy_since } else { c.busy_until.saturating_sub(1) };
        json!({"target": c.target, "started_at": rfc3339(since), "correlation_id": c.correlation_id})
    } else {
        Value::Null
    };
    let node = w.node(c.node_id);
    let img = w.os_images.iter().find(|i| i.name == c.image);
    json!({
        "id": cvm_id(v, c),
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
        "node_info": {"object_type": "node", "id": c.node_id, "name": node.map(|n| n.name.clone()), "region": node.map(|n| n.region.clone()), "device_id": node.map(|n| n.device_id.clone()), "status": "online", "version": "0.5.5"},
        "os": {"name": c.image, "version": img.map(OsImage::version_text), "is_dev": img.is_some_and(|i| i.is_dev), "os_image_hash": img.map(|i| i.os_image_hash.clone())},
        "kms_type": c.kms_type,
        "kms_info": cvm_kms_info(w, c),
        "status": c.status(now),
        "progress": progress,
        "compose_hash": c.compose_hash,
        "gateway": {"base_domain": DOMAIN, "cname": format!("{}.{DOMAIN}", c.app_id)},
        "services": [],
        "endpoints": public_urls(c),
        "public_logs": compose_flag(c, "public_logs", true),
        "public_sysinfo": compose_flag(c, "public_sysinfo", true),
        "public_tcbinfo": compose_flag(c, "public_tcbinfo", false),
        "gateway_enabled": compose_flag(c, "gateway_enabled", true),
        "secure_time": compose_flag(c, "secure_time", false),
        "listed": c.listed,
        "storage_fs": "zfs",
        "workspace": {"object_type": "workspace", "id": WORKSPACE_ID, "name": "Simulator", "slug": WORKSPACE_SLUG},
        "creator": {"object_type": "user", "id": "u_sim", "username": "sim"},
    })
}

/// `kms_info` of a 2026-01-21 CVM: optional keys are left out rather than null (the SDK's
/// schema makes them optional, not nullable).
fn cvm_kms_info(w: &World, c: &Cvm) -> Value {
    let mut m = Map::new();
    m.insert("encrypted_env_pubkey".into(), w.app_env_pubkey(&c.app_id).into());
    if let Some(k) = w.kms_of(c) {
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

/// The 2025-10-28 detail (`CvmDetailV20251028`).
fn cvm_v2025(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.node(c.node_id);
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
        "public_sysinfo": compose_flag(c, "public_sysinfo", true),
        "public_logs": compose_flag(c, "public_logs", true),
        "dapp_dashboard_url": Value::Null,
        "syslog_endpoint": Value::Null,
        "kms_info": kms_or_null(w, c),
        "contract_address": c.contract_address,
        "deployer_address": c.deployer_address,
        "scheduled_delete_at": Value::Null,
        "public_urls": public_urls(c),
        "gateway_domain": DOMAIN,
        "machine_info": machine_info(c),
        "updated_at": rfc3339(now),
    })
}

/// A 2025-10-28 list item (`CvmInfoV20251028`): the VM itself nested under `hosted`.
fn cvm_v2025_item(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.node(c.node_id);
    let image_version = w.os_images.iter().find(|i| i.name == c.image).map(OsImage::version_text);
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
            "image_version": image_version,
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
        "kms_info": kms_or_null(w, c),
        "vcpu": c.vcpu,
        "memory": c.memory,
        "disk_size": c.disk_size,
        "gateway_domain": DOMAIN,
        "public_urls": public_urls(c),
        "machine_info": machine_info(c),
        "updated_at": rfc3339(now),
    })
}

/// A 2025-10-28 CVM inside an app (`CvmBasicInfoV20251028`).
fn cvm_v2025_basic(w: &World, c: &Cvm, now: u64) -> Value {
    let node = w.node(c.node_id);
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
        "kms_slug": w.kms_of(c).map(|k| k.slug.clone()),
        "kms_id": c.kms_id,
        "instance_id": c.instance_id,
        "machine_info": machine_info(c),
        "updated_at": rfc3339(now),
    })
}

/// One CVM's entry in `POST /status/batch`.
pub fn cvm_status(c: &Cvm, now: u64) -> Value {
    json!({
        "vm_uuid": c.vm_uuid, "status": c.status(now), "uptime": uptime(c, now), "in_progress": c.busy(now),
        "boot_progress": null, "boot_error": c.boot_error(now),
        "operation_type": if c.busy(now) { Some(c.transition.clone()) } else { None },
        "operation_started_at": null, "correlation_id": c.correlation_id,
    })
}

/// The versions of OS image a CVM could move to (`GET /cvms/{id}/available-os-images`),
/// newest first, each with its prod and dev variant.
pub fn available_os_images(w: &World, c: &Cvm) -> Value {
    let mut versions: Vec<Vec<u32>> = w.os_images.iter().map(|i| i.version.clone()).collect();
    versions.sort();
    versions.dedup();
    versions.reverse();
    let variant = |v: &Vec<u32>, dev: bool| {
        w.os_images
            .iter()
            .find(|i| &i.version == v && i.is_dev == dev)
            // `slug` is required by the API's OpenAPI (seed 000) though SDK 0.2.9 does not model it.
            .map(|i| json!({"name": i.name, "slug": i.slug, "os_image_hash": i.os_image_hash, "is_current": i.name == c.image}))
    };
    Value::Array(
        versions.iter().map(|v| json!({"version": v, "prod": variant(v, false), "dev": variant(v, true)})).collect(),
    )
}

/// What a provision answers (`POST /cvms/provision`, and `POST /cvms` with a provision body):
/// `ProvisionCvm`, with the one-time commit `token` on the same-path flow.
pub fn provisioned(p: &Provisioned, token: Option<&str>) -> Value {
    let mut out = json!({
        "app_id": p.app_id,
        "app_env_encrypt_pubkey": p.env_pubkey,
        "compose_hash": p.compose_hash,
        "kms_info": kms(&p.kms),
        "fmspc": "00906ED50000",
        "device_id": p.device_id,
        "os_image_hash": p.os_image_hash,
        "teepod_id": p.node_id,
        "node_id": p.node_id,
        "kms_id": p.kms.id,
        "kms_contract_id": kms_contract_id(&p.kms),
        "instance_type": p.instance_type,
    });
    if let Some(t) = token {
        out["token"] = t.into();
    }
    out
}

/// What `POST /cvms/{id}/compose_file/provision` answers; `compose_unchanged` when the CVM
/// already runs this compose (phala-cloud PR #468).
pub fn compose_prepared(p: &ComposePrepared, registered: bool) -> Value {
    json!({
        "app_id": p.app_id,
        "device_id": p.device_id,
        "compose_hash": p.compose_hash,
        "kms_info": p.onchain_kms.as_ref().map_or(Value::Null, kms),
        "compose_hash_registered": registered,
        "compose_unchanged": p.unchanged,
    })
}

/// The answer of an accepted update (`PATCH /cvms/{id}`: `{status, message, correlation_id}`).
pub fn accepted(correlation_id: &str) -> Value {
    json!({"status": "in_progress", "message": "Update started", "correlation_id": correlation_id})
}

/// The answer of an update started by a per-field endpoint (`/envs`, `/docker-compose`, …).
pub fn update_started(correlation_id: &str) -> Value {
    json!({"status": "in_progress", "message": "Update started", "correlation_id": correlation_id})
}

/// The answer of an update that changes nothing (`status: no_change`, phala-cloud PR #468):
/// nothing restarts. The per-field endpoints answer `{status, message}`; the unified PATCH
/// adds the `correlation_id` of the (finished) operation, as `@phala/cloud` 0.2.9's `patchCvm`
/// requires one. UNVERIFIED: that the unified PATCH answers `no_change` (the PR names the
/// compose and pre-launch-script endpoints).
pub fn unchanged(correlation_id: Option<&str>) -> Value {
    let mut v = json!({"status": "no_change", "message": "Nothing to update: the CVM already has this configuration"});
    if let Some(c) = correlation_id {
        v["correlation_id"] = c.into();
    }
    v
}

/// The answer of `PATCH /cvms/{id}/envs`: an update started, and whether the env keys changed.
pub fn envs_updated(correlation_id: &str, keys_changed: bool) -> Value {
    let mut v = update_started(correlation_id);
    v["allowed_envs_changed"] = keys_changed.into();
    v
}

/// One page of a list, in the SDK's `{items, total, page, page_size, pages}` shape.
pub fn page(items: Vec<Value>, total: u64, page: u64, size: u64) -> Value {
    json!({"items": items, "total": total, "page": page, "page_size": size, "pages": total.div_ceil(size).max(1)})
}

// ----- what the platform offers --------------------------------------------------------------

/// A KMS node (`KmsInfo`).
pub fn kms(k: &Kms) -> Value {
    json!({
        "id": k.id,
        "slug": k.slug,
        "url": kms_url(k),
        "version": "v0.5.5",
        "chain_id": k.chain_id,
        "kms_contract_address": k.kms_contract_address,
        "gateway_app_id": Value::Null,
    })
}

fn kms_url(k: &Kms) -> String {
    format!("https://{}.kms.sim.invalid", k.slug)
}

pub fn kms_type(k: &Kms) -> &'static str {
    match k.chain_id {
        None => "phala",
        Some(8453) => "base",
        Some(_) => "ethereum",
    }
}

/// The hashed id of the KMS contract a KMS node belongs to (`kc_…`; one node per contract
/// here).
pub fn kms_contract_id(k: &Kms) -> String {
    super::world::hashid("kc", k.slug.as_bytes())
}

/// A KMS contract (`KmsContract`, API version 2026-06-23 on): the Phala KMS is the contract
/// `phala` on chain 0.
pub fn kms_contract(k: &Kms) -> Value {
    json!({
        "id": kms_contract_id(k),
        "slug": k.slug,
        "label": if k.chain_id.is_some() { format!("{} KMS (simulated)", kms_type(k)) } else { "Phala KMS (simulated)".into() },
        "contract_address": k.kms_contract_address.clone().unwrap_or_else(|| "phala".into()),
        "chain_id": k.chain_id.unwrap_or(0),
        "k256_pubkey": crate::sim::kms_signer(),
        "ca_pubkey": null,
        "node_count": 1,
    })
}

/// `GET /kms/{slug}/nodes`: the nodes of a KMS contract (`ListKmsContractNodesResponse`).
pub fn kms_contract_nodes(k: &Kms) -> Value {
    json!({"items": [{"id": k.id, "slug": k.slug, "url": kms_url(k), "version": "v0.5.5", "kms_type": kms_type(k)}], "total": 1})
}

/// The simulator's one workspace (`WorkspaceResponse`).
pub fn workspace() -> Value {
    json!({
        "id": WORKSPACE_ID, "name": "Simulator", "slug": WORKSPACE_SLUG, "tier": "free", "role": "owner",
        "is_default": true, "created_at": rfc3339(0),
    })
}

/// `GET /workspaces` (`ListWorkspaces`: cursor-paged `data`).
pub fn workspaces() -> Value {
    json!({"data": [workspace()], "pagination": {"has_more": false, "next_cursor": null, "total": 1}})
}

/// `GET /teepods/available`: the nodes, each offering every OS image and KMS.
pub fn nodes(w: &World) -> Value {
    let images: Vec<Value> = w
        .os_images
        .iter()
        .map(|i| json!({"name": i.name, "is_dev": i.is_dev, "version": i.version, "os_image_hash": i.os_image_hash}))
        .collect();
    let kms_ids: Vec<String> = w.kms.iter().map(|k| k.id.clone()).collect();
    let nodes: Vec<Value> = w
        .nodes
        .iter()
        .map(|n| {
            json!({
                "teepod_id": n.id, "name": n.name, "listed": true, "resource_score": 1.0, "remaining_vcpu": 64,
                "remaining_memory": 262144, "remaining_cvm_slots": 100, "images": images, "support_onchain_kms": true,
                "fmspc": "00906ED50000", "device_id": n.device_id, "region_identifier": n.region,
                "default_kms": w.kms[0].id, "kms_list": kms_ids,
            })
        })
        .collect();
    json!({
        "tier": "free",
        "capacity": {"max_instances": 100, "max_vcpu": 64, "max_memory": 262144, "max_disk": 10000},
        "nodes": nodes,
        "kms_list": w.kms.iter().map(kms).collect::<Vec<_>>(),
    })
}

pub fn instance_type(t: &InstanceType) -> Value {
    json!({
        "id": t.id, "name": t.id, "description": format!("{} vCPU, {} GB", t.vcpu, t.memory_mb / 1024),
        "vcpu": t.vcpu, "memory_mb": t.memory_mb, "hourly_rate": "0.058", "requires_gpu": t.requires_gpu,
        "default_disk_size_gb": 20, "family": t.family,
    })
}

/// An OS image in `GET /os-images`.
pub fn os_image(i: &OsImage) -> Value {
    json!({"name": i.name, "slug": i.slug, "version": i.version_text(), "os_image_hash": i.os_image_hash, "is_dev": i.is_dev, "requires_gpu": false})
}
