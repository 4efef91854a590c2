//! Reading CVMs (`GET /cvms/paginated`, `/cvms/{id}` and its parts, `POST /status/batch`, the
//! state and its event stream), power actions and delete.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Res, ok};
use crate::sim::Sim;
use crate::sim::attest::{self, Event as AttestEvent};
use crate::sim::edge::{ApiVersion, Body, header};
use crate::sim::error::ApiError;
use crate::sim::requests::{PageQuery, StatusBatch, WatchQuery};
use crate::sim::shapes;
use crate::sim::world::{Power, now_ms};
use sha2::Digest;

pub async fn list(State(sim): State<Sim>, v: ApiVersion, Query(q): Query<PageQuery>) -> Res {
    let (page, size) = q.page(50, 1000);
    let now = now_ms();
    let cfg = sim.config();
    ok(sim.read(|w| {
        let items = w
            .cvms
            .values()
            .skip(((page - 1) * size) as usize)
            .take(size as usize)
            .map(|c| as_booted(&cfg, c, shapes::cvm_list_item(v, w, c, now)))
            .collect();
        shapes::page(items, w.cvms.len() as u64, page, size)
    }))
}

pub async fn get(State(sim): State<Sim>, v: ApiVersion, Path(id): Path<String>) -> Res {
    let cfg = sim.config();
    ok(sim.read(|w| w.cvm(&id).map(|c| as_booted(&cfg, c, shapes::cvm(v, w, c, now_ms()))))?)
}

/// The OS image hash a CVM named in `boot_other_image` booted instead of its own.
fn other_image_hash(c: &crate::sim::world::Cvm) -> String {
    hex::encode(sha2::Sha256::digest(format!("another image than {}", c.image).as_bytes()))
}

/// A CVM as the API shows it, with the OS image it booted under `boot_other_image`.
fn as_booted(cfg: &crate::sim::SimConfig, c: &crate::sim::world::Cvm, mut v: Value) -> Value {
    if cfg.boot_other_image.contains(&c.name)
        && let Some(os) = v.get_mut("os").and_then(Value::as_object_mut)
    {
        os.insert("os_image_hash".into(), other_image_hash(c).into());
    }
    v
}

/// An app certificate as the SDKs type it (`app_certificates[]`), carrying `quote` (hex).
fn certificate(c: &crate::sim::world::Cvm, quote: &[u8]) -> Value {
    json!({
        "version": "3", "serial_number": "01", "not_before": "2025-06-19T00:00:00Z", "not_after": "2026-06-19T00:00:00Z",
        "subject": {"common_name": c.app_id, "organization": null, "country": null, "state": null, "locality": null},
        "issuer": {"common_name": "Dstack App CA", "organization": "Dstack", "country": null},
        "fingerprint": hex::encode(sha2::Sha256::digest(quote)), "signature_algorithm": "ecdsa-with-SHA256",
        "sans": null, "is_ca": false, "position_in_chain": 0, "quote": hex::encode(quote),
        "app_id": c.app_id, "cert_usage": "app",
    })
}

/// `GET /cvms/{id}/attestation` (`getCvmAttestation`): the TCB info of a running CVM, its
/// RTMR3 event log consistent with the app compose it booted. Knobs: `boot_other_compose`
/// (the named CVMs booted another compose than they were sent: the log is consistent, the
/// compose hash is not the sent one) and `corrupt_event_log` (the named CVMs' logged
/// compose-hash event was rewritten after the fact: the log no longer replays to RTMR3).
/// No quote (the simulator has no TDX hardware: `app_certificates` is null), except that
/// `sample_quote` and `tampered_quote` serve `dcap-qvl`'s real sample quote, as is or with a
/// byte of RTMR3 flipped, and `boot_other_image` logs another OS image's hash.
pub async fn attestation(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let cfg = sim.config();
    let now = now_ms();
    ok(sim.read(|w| {
        let c = w.cvm(&id)?;
        let running = c.status(now) == "running";
        let tcb = running.then(|| {
            let other = cfg.boot_other_compose.contains(&c.name);
            let mut booted = c.app_compose.clone();
            if other && let Some(m) = booted.as_object_mut() {
                m.insert("docker_compose_file".into(), "services:\n  shell:\n    image: attacker/shell\n".into());
            }
            let text = match cfg.compose_hash_style.as_str() {
                "indent4" => crate::compose::indent4_json(&booted),
                _ => crate::compose::canonical_json(&booted),
            };
            let hash = sha2::Sha256::digest(text.as_bytes());
            let os_hash = match cfg.boot_other_image.contains(&c.name) {
                true => other_image_hash(c),
                false => w.os_image(&c.image).map(|i| i.os_image_hash.clone()).unwrap_or_default(),
            };
            let hexb = |h: &str| hex::decode(h.trim_start_matches("0x")).unwrap_or_default();
            let mut events = vec![
                AttestEvent::new("system-preparing", b""),
                AttestEvent::new("app-id", &hexb(&c.app_id)),
                AttestEvent::new("compose-hash", &hash),
                AttestEvent::new("instance-id", &hexb(&c.instance_id)),
                AttestEvent::new("os-image-hash", &hexb(&os_hash)),
                AttestEvent::new("boot-mr-done", b""),
                AttestEvent::new("system-ready", b""),
            ];
            let rtmr3 = attest::rtmr3(&events);
            if cfg.corrupt_event_log.contains(&c.name) {
                // Rewritten with its digest recomputed: only the replay gives it away.
                events[2] = AttestEvent::new("compose-hash", &sha2::Sha256::digest(b"another compose"));
            }
            let fixed = |tag: &str| hex::encode(sha2::Sha384::digest(format!("{tag}:{}", c.image).as_bytes()));
            json!({
                "mrtd": fixed("mrtd"), "rootfs_hash": os_hash,
                "rtmr0": fixed("rtmr0"), "rtmr1": fixed("rtmr1"), "rtmr2": fixed("rtmr2"),
                "rtmr3": hex::encode(rtmr3),
                "event_log": events.iter().map(AttestEvent::to_json).collect::<Vec<_>>(),
                "app_compose": text,
            })
        });
        let certificates = if !running {
            Value::Null
        } else if cfg.sample_quote.contains(&c.name) {
            json!([certificate(c, crate::sim::pccs::SAMPLE_QUOTE)])
        } else if cfg.tampered_quote.contains(&c.name) {
            json!([certificate(c, &crate::sim::pccs::tampered_quote())])
        } else {
            Value::Null
        };
        Ok::<_, ApiError>(json!({
            "name": c.name, "is_online": running, "is_public": true,
            "error": if running { Value::Null } else { "CVM is not running".into() },
            // A string in both SDKs' types (the app compose as JSON text: UNVERIFIED).
            "app_certificates": certificates, "tcb_info": tcb,
            "compose_file": crate::compose::canonical_json(&c.app_compose),
        }))
    })?)
}

/// The app compose, as stored.
pub async fn app_compose(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| w.cvm(&id).map(|c| c.app_compose.clone()))?)
}

/// The compose file as YAML text.
pub async fn docker_compose(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let text =
        sim.read(|w| w.cvm(&id).map(|c| c.compose_text("docker_compose_file").unwrap_or_default().to_string()))?;
    Ok(([("content-type", "text/yaml")], text).into_response())
}

/// The pre-launch script as a JSON string (empty when there is none).
pub async fn pre_launch_script(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    let text = sim.read(|w| w.cvm(&id).map(|c| c.compose_text("pre_launch_script").unwrap_or_default().to_string()))?;
    ok(Value::String(text))
}

pub async fn available_os_images(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    ok(sim.read(|w| w.cvm(&id).map(|c| shapes::available_os_images(w, c)))?)
}

/// `GET /cvms/{id}/state`: the CVM's state, or with `Accept: text/event-stream` a stream of
/// it until it reaches `target` (see [`watch`]).
pub async fn state(
    State(sim): State<Sim>,
    v: ApiVersion,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<WatchQuery>,
) -> Res {
    let first = sim.read(|w| w.cvm(&id).map(|c| shapes::cvm_state(v, c, now_ms())))?;
    let wants_events = header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream"));
    if !wants_events {
        return ok(first);
    }
    let target = q.target.ok_or(ApiError::QueryRequired("target"))?;
    Ok(watch(sim, v, id, target, q.interval, q.timeout).into_response())
}

/// How often the SSE watch looks at the CVM (the simulator's own resolution; `interval` is
/// how often an unchanged state is sent again).
const WATCH_TICK: Duration = Duration::from_millis(100);

/// The SSE form of `GET /cvms/{id}/state`, as the SDKs' `watchCvmState` reads it: a `state`
/// event at once and whenever the status changes (or `interval` seconds pass, 5 to 30), then
/// `complete` with the state once the status is `target`, or `timeout` after `timeout`
/// seconds (10 to 600), or `error` when the CVM goes away. Each event's data is the JSON of
/// [`shapes::cvm_state`]. UNVERIFIED: the real stream's pacing and its `timeout`/`error` data.
fn watch(sim: Sim, v: ApiVersion, id: String, target: String, interval: Option<u64>, timeout: Option<u64>) -> Response {
    let interval = Duration::from_secs(interval.unwrap_or(5).clamp(5, 30));
    let timeout = Duration::from_secs(timeout.unwrap_or(300).clamp(10, 600));
    let start = tokio::time::Instant::now();
    // (last status sent, when, done)
    let init: (Option<String>, tokio::time::Instant, bool) = (None, start, false);
    let events = futures::stream::unfold(init, move |(last, sent_at, done)| {
        let (sim, id, target) = (sim.clone(), id.clone(), target.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let state = sim.read(|w| w.cvm(&id).map(|c| shapes::cvm_state(v, c, now_ms())).ok());
                let now = tokio::time::Instant::now();
                let Some(state) = state else {
                    let e = Event::default().event("error").data(json!({"error": "CVM not found"}).to_string());
                    return Some((Ok::<_, std::convert::Infallible>(e), (last, now, true)));
                };
                let status = state["status"].as_str().unwrap_or_default().to_string();
                if status == target {
                    let e = Event::default().event("complete").data(state.to_string());
                    return Some((Ok(e), (Some(status), now, true)));
                }
                if now.duration_since(start) >= timeout {
                    let e =
                        Event::default().event("timeout").data(json!({"status": status, "target": target}).to_string());
                    return Some((Ok(e), (Some(status), now, true)));
                }
                if last.as_deref() != Some(&status) || now.duration_since(sent_at) >= interval {
                    let e = Event::default().event("state").data(state.to_string());
                    return Some((Ok(e), (Some(status), now, false)));
                }
                tokio::time::sleep(WATCH_TICK).await;
            }
        }
    });
    Sse::new(events).into_response()
}

/// The most CVMs one `POST /status/batch` may ask about. UNVERIFIED: the API documents no
/// limit; the `phala` CLI sends at most 100 a request, and so must a client of this simulator
/// (more is a 422), so a client that sends more is caught here.
const STATUS_BATCH_MAX: usize = 100;

/// The status of each CVM asked for, by the id as asked; unknown ones are left out.
pub async fn status_batch(State(sim): State<Sim>, Body(req): Body<StatusBatch>) -> Res {
    if req.vm_uuids.len() > STATUS_BATCH_MAX {
        return Err(ApiError::invalid(
            "vm_uuids",
            format!("at most {STATUS_BATCH_MAX} CVMs a request, not {}", req.vm_uuids.len()),
        ));
    }
    let now = now_ms();
    let out: Map<String, Value> = sim.read(|w| {
        req.vm_uuids.iter().filter_map(|u| Some((u.clone(), shapes::cvm_status(w.cvm(u).ok()?, now)))).collect()
    });
    ok(Value::Object(out))
}

fn power(sim: &Sim, v: ApiVersion, id: &str, action: Power) -> Res {
    let cfg = sim.config();
    let now = now_ms();
    ok(sim.change(|w| {
        let seq = w.cvm(id)?.seq;
        w.power(seq, action, &cfg, now)?;
        Ok(shapes::vm(v, w, &w.cvms[&seq], now))
    })?)
}

pub async fn start(State(sim): State<Sim>, v: ApiVersion, Path(id): Path<String>) -> Res {
    power(&sim, v, &id, Power::Start)
}

pub async fn stop(State(sim): State<Sim>, v: ApiVersion, Path(id): Path<String>) -> Res {
    power(&sim, v, &id, Power::Stop)
}

pub async fn shutdown(State(sim): State<Sim>, v: ApiVersion, Path(id): Path<String>) -> Res {
    power(&sim, v, &id, Power::Shutdown)
}

pub async fn restart(State(sim): State<Sim>, v: ApiVersion, Path(id): Path<String>) -> Res {
    power(&sim, v, &id, Power::Restart)
}

/// `POST /cvms/{id}/replicas` `{node_id?}`: another instance of the app, answered as a VM
/// (`@phala/cloud`'s `replicateCvm` reads a VM; the Python SDK reads it loosely).
pub async fn replicas(
    State(sim): State<Sim>,
    v: ApiVersion,
    Path(id): Path<String>,
    Body(req): Body<crate::sim::requests::ReplicaRequest>,
) -> Res {
    let cfg = sim.config();
    let now = now_ms();
    ok(sim.change(|w| {
        let seq = w.cvm(&id)?.seq;
        let new = w.replicate(seq, req.node_id, &cfg, now)?;
        Ok(shapes::vm(v, w, &w.cvms[&new], now))
    })?)
}

pub async fn delete(State(sim): State<Sim>, Path(id): Path<String>) -> Res {
    sim.change(|w| {
        let seq = w.cvm(&id)?.seq;
        w.delete(seq, now_ms());
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}
