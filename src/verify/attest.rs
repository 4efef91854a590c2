//! A CVM's attestation (`GET /cvms/{id}/attestation`) checked against what teeform applied:
//! the RTMR3 event log replayed, and its `app-id`, `instance-id`, `compose-hash` and
//! `os-image-hash` events compared with state.
//!
//! RTMR3 is dstack's runtime register (its `cc-eventlog` crate): every runtime event is
//! `{imr: 3, event_type: 0x08000001, event, event_payload (hex), digest (hex)}`, its digest
//! `SHA-384(event_type as 4 little-endian bytes ‖ ":" ‖ event ‖ ":" ‖ payload)`, and the
//! register starts at 48 zero bytes and is extended as `RTMR3 = SHA-384(RTMR3 ‖ digest)`.
//!
//! What this does not prove by itself: that the RTMRs are the hardware's. That needs the TDX
//! quote checked against Intel's collateral and bound to the replayed RTMR3 ([`super::quote`]).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha384};

/// dstack's event type for runtime events (not a TCG type).
pub const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;

/// What the CVM must have booted, from state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub app_id: Option<String>,
    pub instance_id: Option<String>,
    /// The app compose hash (SHA-256, hex) teeform sent.
    pub compose_hash: Option<String>,
    /// The OS image's hash, where the API gives one.
    pub os_image_hash: Option<String>,
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub field: String,
    pub expected: String,
    pub attested: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: expected {}, attested {}", self.field, self.expected, self.attested)
    }
}

/// One runtime event as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub imr: u32,
    pub event_type: u32,
    pub event: String,
    pub payload: Vec<u8>,
    pub digest: Vec<u8>,
}

impl Event {
    /// A runtime event with its digest computed.
    pub fn runtime(event: &str, payload: &[u8]) -> Event {
        Event {
            imr: 3,
            event_type: RUNTIME_EVENT_TYPE,
            event: event.into(),
            payload: payload.to_vec(),
            digest: runtime_digest(RUNTIME_EVENT_TYPE, event, payload).to_vec(),
        }
    }

    /// As the API writes it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "imr": self.imr, "event_type": self.event_type, "digest": hex::encode(&self.digest),
            "event": self.event, "event_payload": hex::encode(&self.payload),
        })
    }
}

/// The digest dstack extends RTMR3 with for a runtime event.
pub fn runtime_digest(event_type: u32, event: &str, payload: &[u8]) -> [u8; 48] {
    Sha384::new()
        .chain_update(event_type.to_le_bytes())
        .chain_update(b":")
        .chain_update(event.as_bytes())
        .chain_update(b":")
        .chain_update(payload)
        .finalize()
        .into()
}

/// RTMR3 after the IMR-3 events' digests, in order.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> [u8; 48] {
    events
        .into_iter()
        .filter(|e| e.imr == 3)
        .fold([0u8; 48], |mr, e| Sha384::new().chain_update(mr).chain_update(&e.digest).finalize().into())
}

/// The attestation's RTMR3 and event log; `Err` says what is malformed.
pub fn parse(attestation: &Value) -> Result<(String, Vec<Event>, Option<String>), String> {
    let tcb = attestation
        .get("tcb_info")
        .filter(|t| t.is_object())
        .ok_or("the attestation has no `tcb_info` (is `public_tcbinfo` off, or the CVM not running?)")?;
    let rtmr3 = tcb.get("rtmr3").and_then(Value::as_str).ok_or("`tcb_info.rtmr3` is missing")?.to_string();
    let log = tcb.get("event_log").and_then(Value::as_array).ok_or("`tcb_info.event_log` is missing")?;
    let hexs = |v: &Value, k: &str, i: usize| -> Result<Vec<u8>, String> {
        let s = v.get(k).and_then(Value::as_str).unwrap_or("");
        hex::decode(s.trim_start_matches("0x")).map_err(|_| format!("`event_log[{i}].{k}` is not hex"))
    };
    let num = |v: &Value, k: &str, i: usize| -> Result<u32, String> {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(format!("`event_log[{i}].{k}` is not a number"))
    };
    let events = log
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Event {
                imr: num(e, "imr", i)?,
                event_type: num(e, "event_type", i)?,
                event: e.get("event").and_then(Value::as_str).unwrap_or("").to_string(),
                payload: hexs(e, "event_payload", i)?,
                digest: hexs(e, "digest", i)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let app_compose = tcb.get("app_compose").and_then(Value::as_str).map(str::to_string);
    Ok((rtmr3, events, app_compose))
}

/// Checks an attestation against `want`. `Ok` lists what differs (empty: it matches); `Err`
/// says why it cannot be read.
pub fn check(attestation: &Value, want: &Expected) -> Result<Vec<Mismatch>, String> {
    let (rtmr3, events, app_compose) = parse(attestation)?;
    let mut out = Vec::new();
    let mut differs = |field: &str, expected: String, attested: String| {
        out.push(Mismatch { field: field.into(), expected, attested });
    };
    for (i, e) in events.iter().enumerate().filter(|(_, e)| e.imr == 3) {
        let d = runtime_digest(e.event_type, &e.event, &e.payload);
        if e.event_type == RUNTIME_EVENT_TYPE && d[..] != e.digest[..] {
            differs(&format!("event_log[{i}] ({}) digest", e.event), hex::encode(d), hex::encode(&e.digest));
        }
    }
    let replayed = hex::encode(replay(&events));
    if !replayed.eq_ignore_ascii_case(rtmr3.trim_start_matches("0x")) {
        differs("rtmr3", format!("{replayed} (the event log replayed)"), rtmr3);
    }
    let event = |name: &str| -> Option<String> {
        events.iter().rev().find(|e| e.imr == 3 && e.event == name).map(|e| hex::encode(&e.payload))
    };
    let norm = |s: &str| s.trim_start_matches("0x").to_ascii_lowercase();
    let mut compare = |field: &str, want: &Option<String>, required: bool| match (want, event(field)) {
        (Some(w), Some(got)) if norm(w) != got => differs(field, norm(w), got),
        (Some(w), None) if required => differs(field, norm(w), "no such event".into()),
        _ => {}
    };
    compare("app-id", &want.app_id, true);
    compare("compose-hash", &want.compose_hash, true);
    compare("instance-id", &want.instance_id, false);
    // UNVERIFIED: that dstack logs the OS image hash as an RTMR3 event under this name.
    compare("os-image-hash", &want.os_image_hash, false);
    if let (Some(text), Some(got)) = (app_compose, event("compose-hash")) {
        let h = hex::encode(Sha256::digest(text.as_bytes()));
        if h != got {
            out.push(Mismatch { field: "app_compose".into(), expected: got, attested: format!("{h} (its SHA-256)") });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attestation(events: &[Event], rtmr3: [u8; 48], app_compose: &str) -> Value {
        serde_json::json!({"tcb_info": {
            "rtmr3": hex::encode(rtmr3),
            "event_log": events.iter().map(Event::to_json).collect::<Vec<_>>(),
            "app_compose": app_compose,
        }})
    }

    fn booted(app: &str, compose: &str) -> Vec<Event> {
        let hash = Sha256::digest(compose.as_bytes());
        vec![
            Event::runtime("system-preparing", b""),
            Event::runtime("app-id", &hex::decode(app).unwrap()),
            Event::runtime("compose-hash", &hash),
            Event::runtime("instance-id", &[0x11; 20]),
            Event::runtime("boot-mr-done", b""),
        ]
    }

    #[test]
    fn a_consistent_log_matches_and_every_kind_of_difference_is_named() {
        let app = "ab".repeat(20);
        let compose = r#"{"docker_compose_file":"services: {}"}"#;
        let ev = booted(&app, compose);
        let want = Expected {
            app_id: Some(app.clone()),
            instance_id: Some("11".repeat(20)),
            compose_hash: Some(hex::encode(Sha256::digest(compose.as_bytes()))),
            os_image_hash: None,
        };
        assert_eq!(check(&attestation(&ev, replay(&ev), compose), &want).unwrap(), vec![]);

        // Another compose booted (its own log consistent): the compose hash differs.
        let other = r#"{"docker_compose_file":"services: {evil: {}}"}"#;
        let ev2 = booted(&app, other);
        let m = check(&attestation(&ev2, replay(&ev2), other), &want).unwrap();
        assert_eq!(m.iter().map(|m| m.field.as_str()).collect::<Vec<_>>(), ["compose-hash"]);

        // A log rewritten after the fact: the digest and RTMR3 no longer agree.
        let mut forged = ev.clone();
        forged[2].payload = Sha256::digest(other.as_bytes()).to_vec();
        let m = check(&attestation(&forged, replay(&ev), compose), &want).unwrap();
        let fields: Vec<_> = m.iter().map(|m| m.field.as_str()).collect();
        assert!(fields.contains(&"event_log[2] (compose-hash) digest") && fields.contains(&"compose-hash"), "{m:?}");
        // Digests recomputed too: RTMR3 gives it away.
        let reforged: Vec<Event> = forged.iter().map(|e| Event::runtime(&e.event, &e.payload)).collect();
        let m = check(&attestation(&reforged, replay(&ev), compose), &want).unwrap();
        assert!(m.iter().any(|m| m.field == "rtmr3"), "{m:?}");

        // Another app, a missing event, an app compose that is not the hashed one.
        let m =
            check(&attestation(&ev, replay(&ev), compose), &Expected { app_id: Some("cd".repeat(20)), ..want.clone() });
        assert_eq!(m.unwrap()[0].field, "app-id");
        let short: Vec<Event> = ev.iter().filter(|e| e.event != "compose-hash").cloned().collect();
        let m = check(&attestation(&short, replay(&short), compose), &want).unwrap();
        assert_eq!(
            m[0].to_string(),
            format!("compose-hash: expected {}, attested no such event", want.compose_hash.clone().unwrap())
        );
        let m = check(&attestation(&ev, replay(&ev), other), &want).unwrap();
        assert_eq!(m[0].field, "app_compose");

        // The OS image: compared where both the API and the log give it.
        let mut with_os = ev.clone();
        with_os.push(Event::runtime("os-image-hash", &[0x0a; 32]));
        let os = |h: &str| Expected { os_image_hash: Some(h.into()), ..want.clone() };
        assert_eq!(check(&attestation(&with_os, replay(&with_os), compose), &os(&"0a".repeat(32))).unwrap(), vec![]);
        let m = check(&attestation(&with_os, replay(&with_os), compose), &os(&"0b".repeat(32))).unwrap();
        assert_eq!(m[0].field, "os-image-hash");
        assert_eq!(check(&attestation(&ev, replay(&ev), compose), &os(&"0b".repeat(32))).unwrap(), vec![]);
    }

    #[test]
    fn malformed_attestations_are_errors() {
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"tcb_info": null}),
            serde_json::json!({"tcb_info": {"rtmr3": "00"}}),
            serde_json::json!({"tcb_info": {"rtmr3": "00", "event_log": [{"imr": "x"}]}}),
            serde_json::json!({"tcb_info": {"rtmr3": "00", "event_log": [{"imr": 3, "event_type": 1, "digest": "zz"}]}}),
        ] {
            assert!(check(&bad, &Expected::default()).is_err(), "{bad}");
        }
    }
}
