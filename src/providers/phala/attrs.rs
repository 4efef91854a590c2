//! CVM attributes on Phala Cloud's wire (API version `2026-01-21`): where a CVM detail or
//! list item reports each one, and where the create request (`POST /cvms/provision`) and the
//! unified `PATCH /cvms/{id}` take it. What each attribute is, and whether it goes into a
//! create or an update at all, is the schema's (`crate::model::schema`); this file only
//! places it. [`wire`] has one arm per attribute: a new attribute does not compile until it
//! has its places here.

use serde_json::{Map, Value};

use super::Fields;
use crate::model::schema::{SCHEMA, Type};
use crate::model::{Attr, CvmAttrs, EnvVal};
use crate::providers::{PatchRequest, ProvisionRequest};

/// A place in a JSON object: `&["resource", "vcpu"]` is `resource.vcpu`.
type Path = &'static [&'static str];

/// How a value is written in its place, when not as teeform holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    /// As teeform holds it.
    Same,
    /// A number of GiB, maybe fractional (teeform holds MiB).
    Gib,
    /// The env's keys, as a list of strings.
    Keys,
    /// In upper case (the SDK's `PHALA`/`ETHEREUM`/`BASE`).
    Upper,
    /// `{"count": n}`.
    Count,
    /// None is written as `""` (which removes it).
    NoneIsEmpty,
    /// The id of the node named ([`ProvisionRequest::node_id`]).
    NodeId,
}

/// Where one attribute is on the wire.
struct Wire {
    /// Where a CVM detail and list item report it; `None`: not reported (the run state is
    /// read from `status`).
    read: Option<(Path, Enc)>,
    /// Where the provision request takes it (some go in two places).
    create: &'static [(Path, Enc)],
    /// The unified PATCH's field for it.
    patch: Option<(&'static str, Enc)>,
}

/// Each attribute's places (the SDK's shapes, `shared/reference/phala-cloud.md`).
// Long: a table with one arm per attribute, read side by side; the match is what makes a new
// attribute fail to compile until it has its places.
fn wire(attr: Attr) -> Wire {
    use Enc::*;
    const NOWHERE: &[(Path, Enc)] = &[];
    match attr {
        Attr::Name => Wire {
            read: Some((&["name"], Same)),
            create: &[(&["name"], Same), (&["compose_file", "name"], Same)],
            patch: None,
        },
        Attr::Kms => Wire { read: Some((&["kms_type"], Same)), create: &[(&["kms"], Upper)], patch: None },
        // The SDK renames node_id to teepod_id on the wire. The detail's `node_info` has the
        // node's id and name (UNVERIFIED: that `name` is the name the node catalog lists).
        Attr::Node => {
            Wire { read: Some((&["node_info", "name"], Same)), create: &[(&["teepod_id"], NodeId)], patch: None }
        }
        Attr::Gateway => Wire {
            read: Some((&["gateway_enabled"], Same)),
            create: &[(&["compose_file", "gateway_enabled"], Same)],
            patch: None,
        },
        Attr::InstanceType => Wire {
            read: Some((&["resource", "instance_type"], Same)),
            create: &[(&["instance_type"], Same)],
            // The PATCH takes sizes: apply sends the type's `vcpu` and `memory`.
            patch: None,
        },
        Attr::Vcpu => Wire {
            read: Some((&["resource", "vcpu"], Same)),
            create: &[(&["vcpu"], Same)],
            patch: Some(("vcpu", Same)),
        },
        Attr::Memory => Wire {
            read: Some((&["resource", "memory_in_gb"], Gib)),
            create: &[(&["memory"], Same)],
            patch: Some(("memory", Same)),
        },
        Attr::DiskSize => Wire {
            read: Some((&["resource", "disk_in_gb"], Same)),
            create: &[(&["disk_size"], Same)],
            patch: Some(("disk_size", Same)),
        },
        Attr::Gpus => Wire {
            read: Some((&["resource", "gpus"], Same)),
            create: &[(&["gpus"], Same)],
            patch: Some(("gpus", Count)),
        },
        Attr::Image => {
            Wire { read: Some((&["os", "name"], Same)), create: &[(&["image"], Same)], patch: Some(("image", Same)) }
        }
        Attr::PublicLogs => Wire {
            read: Some((&["public_logs"], Same)),
            create: &[(&["compose_file", "public_logs"], Same)],
            patch: Some(("public_logs", Same)),
        },
        Attr::PublicSysinfo => Wire {
            read: Some((&["public_sysinfo"], Same)),
            create: &[(&["compose_file", "public_sysinfo"], Same)],
            patch: Some(("public_sysinfo", Same)),
        },
        Attr::PublicTcbinfo => Wire {
            read: Some((&["public_tcbinfo"], Same)),
            create: &[(&["compose_file", "public_tcbinfo"], Same)],
            patch: Some(("public_tcbinfo", Same)),
        },
        Attr::ShutdownTimeout => Wire { read: None, create: NOWHERE, patch: Some(("shutdown_timeout", Same)) },
        Attr::AllowForceStop => Wire { read: None, create: NOWHERE, patch: Some(("allow_force_stop", Same)) },
        Attr::PreLaunchScript => Wire {
            read: Some((&["compose_file", "pre_launch_script"], Same)),
            create: &[(&["compose_file", "pre_launch_script"], Same)],
            patch: Some(("pre_launch_script", NoneIsEmpty)),
        },
        Attr::Compose => Wire {
            read: Some((&["compose_file", "docker_compose_file"], Same)),
            create: &[(&["compose_file", "docker_compose_file"], NoneIsEmpty)],
            patch: Some(("docker_compose_file", Same)),
        },
        Attr::Env => Wire {
            read: Some((&["compose_file", "allowed_envs"], Keys)),
            create: &[(&["compose_file", "allowed_envs"], Keys), (&["env_keys"], Keys)],
            patch: Some(("allowed_envs", Keys)),
        },
        Attr::Power => Wire { read: None, create: NOWHERE, patch: None },
    }
}

/// The attributes a CVM detail or list item reports. `compose` is its app compose (the
/// `compose_file`, which the API may write as a JSON string), when it has one. A field of the
/// wrong type is an error naming it; an absent field (or one whose object is absent) is unset.
pub(super) fn read(f: &Fields, compose: Option<&Fields>) -> Result<CvmAttrs, String> {
    let mut a = CvmAttrs::default();
    for spec in SCHEMA {
        let Some((path, enc)) = wire(spec.attr).read else { continue };
        let Some((at, k)) = locate(f, compose, path)? else { continue };
        match spec.ty {
            Type::Name => a.name = at.req_str(k)?,
            Type::File { field, .. } | Type::Text(field) => *(field.get_mut)(&mut a) = at.str(k)?,
            Type::Count { field, .. } if enc == Enc::Gib => *(field.get_mut)(&mut a) = at.gib_as_mib(k)?,
            Type::Count { field, .. } => *(field.get_mut)(&mut a) = at.u32(k)?,
            Type::Flag(field) => *(field.get_mut)(&mut a) = at.bool(k)?,
            Type::Env => {
                if let Some(keys) = at.strings(k)? {
                    a.env = keys.into_iter().map(|k| (k, EnvVal::default())).collect();
                }
            }
            Type::Power(_) => {}
        }
    }
    Ok(a)
}

/// The object holding `path`'s last key, and that key; `None` when an object on the way is
/// absent.
fn locate<'a>(
    root: &Fields<'a>,
    compose: Option<&Fields<'a>>,
    path: Path,
) -> Result<Option<(Fields<'a>, &'static str)>, String> {
    let (last, parents) = path.split_last().expect("paths are not empty");
    let mut at = match parents.first() {
        Some(&"compose_file") => match compose {
            Some(c) => Fields { v: c.v, at: c.at.clone() },
            None => return Ok(None),
        },
        _ => Fields { v: root.v, at: root.at.clone() },
    };
    let skip = usize::from(parents.first() == Some(&"compose_file"));
    for p in &parents[skip..] {
        match at.object(p)? {
            Some(inner) => at = inner,
            None => return Ok(None),
        }
    }
    Ok(Some((at, last)))
}

/// An attribute's value as its place takes it (`null`: not sent).
fn encode(a: &CvmAttrs, attr: Attr, enc: Enc, node_id: Option<u64>) -> Value {
    let v = a.get(attr);
    match enc {
        Enc::Same | Enc::Gib => v,
        Enc::Keys => a.env_keys().into(),
        Enc::Upper => v.as_str().map_or(Value::Null, |s| s.to_ascii_uppercase().into()),
        Enc::Count => match v {
            Value::Null => Value::Null,
            n => serde_json::json!({ "count": n }),
        },
        Enc::NoneIsEmpty => match v {
            Value::Null => "".into(),
            s => s,
        },
        Enc::NodeId => node_id.map_or(Value::Null, Value::from),
    }
}

/// Puts `v` at `path` in `obj`, making the objects on the way.
fn put(obj: &mut Map<String, Value>, path: Path, v: Value) {
    let (last, parents) = path.split_last().expect("paths are not empty");
    let mut at = obj;
    for p in parents {
        let next = at.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        at = next.as_object_mut().expect("made an object");
    }
    at.insert(last.to_string(), v);
}

/// The provision request's body: every attribute in its places (those unset are not sent),
/// plus what teeform always asks for (a KMS-enabled app compose, not listed publicly).
pub(super) fn create_body(r: &ProvisionRequest) -> Value {
    let mut body = Map::new();
    put(&mut body, &["compose_file", "kms_enabled"], true.into());
    put(&mut body, &["listed"], false.into());
    for &attr in Attr::ALL {
        for &(path, enc) in wire(attr).create {
            let v = encode(&r.attrs, attr, enc, r.node_id);
            if !v.is_null() {
                put(&mut body, path, v);
            }
        }
    }
    Value::Object(body)
}

/// The unified PATCH's body: the attributes `r.send` names, in their fields, and the
/// encrypted env. An attribute the PATCH has no field for is an error (a bug: the schema
/// sends only those it has).
pub(super) fn patch_body(r: &PatchRequest) -> Result<Value, String> {
    let mut body = Map::new();
    for &attr in &r.send {
        let Some((field, enc)) = wire(attr).patch else {
            return Err(format!("the unified PATCH has no field for `{attr}`"));
        };
        let v = encode(&r.attrs, attr, enc, None);
        if !v.is_null() {
            body.insert(field.into(), v);
        }
    }
    if let Some(e) = &r.encrypted_env {
        body.insert("encrypted_env".into(), e.clone().into());
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{Create, Patch, Read};
    use serde_json::json;

    /// The wire agrees with the schema: what the schema says is read, created and patched
    /// has a place, and nothing else does.
    #[test]
    fn every_attribute_has_the_places_the_schema_says() {
        for spec in SCHEMA {
            let w = wire(spec.attr);
            let reported = matches!(spec.read, Read::Reported | Read::WithCompose | Read::Keys | Read::Learned);
            assert_eq!(w.read.is_some(), reported, "{}: read", spec.key);
            let created = !matches!(spec.create, Create::AfterCreate | Create::No);
            assert_eq!(!w.create.is_empty(), created, "{}: create", spec.key);
            assert_eq!(w.patch.is_some(), matches!(spec.patch, Patch::Value | Patch::Env), "{}: patch", spec.key);
        }
    }

    #[test]
    fn a_create_sends_what_the_sdk_sends() {
        let mut attrs = CvmAttrs {
            name: "web-app".into(),
            compose: Some("services: {}\n".into()),
            vcpu: Some(2),
            memory: Some(2048),
            node: Some("node-1".into()),
            kms: Some("base".into()),
            public_logs: Some(false),
            shutdown_timeout: Some(30),
            ..Default::default()
        }
        .with_create_defaults();
        attrs.env.insert("B".into(), EnvVal::default());
        attrs.env.insert("A".into(), EnvVal::default());
        let body = create_body(&ProvisionRequest { attrs, node_id: Some(7) });
        assert_eq!(
            body,
            json!({
                "name": "web-app",
                "compose_file": {
                    "name": "web-app", "docker_compose_file": "services: {}\n", "allowed_envs": ["A", "B"],
                    "kms_enabled": true, "gateway_enabled": true, "public_logs": false,
                    "public_sysinfo": true, "public_tcbinfo": false,
                },
                "kms": "BASE", "env_keys": ["A", "B"], "listed": false, "vcpu": 2, "memory": 2048,
                "teepod_id": 7,
            })
        );
    }

    #[test]
    fn a_patch_sends_the_named_attributes_in_their_fields() {
        let attrs = CvmAttrs { gpus: Some(2), vcpu: Some(4), disk_size: Some(40), ..Default::default() };
        let send = [Attr::Gpus, Attr::PreLaunchScript, Attr::Vcpu, Attr::Env].into_iter().collect();
        let body = patch_body(&PatchRequest { send, attrs, encrypted_env: Some("00ff".into()) }).unwrap();
        assert_eq!(
            body,
            json!({"gpus": {"count": 2}, "pre_launch_script": "", "vcpu": 4, "allowed_envs": [], "encrypted_env": "00ff"})
        );
        let send = [Attr::InstanceType].into_iter().collect();
        let e = patch_body(&PatchRequest { send, ..Default::default() }).unwrap_err();
        assert!(e.contains("no field for `instance_type`"), "{e}");
    }
}
