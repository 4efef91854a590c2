//! `teeform schema`: the JSON Schema (draft 2020-12) of `teeform.yaml`, for editors.
//!
//! A CVM's attributes come from the attribute schema ([`SCHEMA`]: key, type, unit and
//! range), so a new attribute is in the JSON Schema without a word here; the other keys are
//! written out below, and a test checks them against the keys the manifest loader accepts.
//! The committed copy, `teeform.schema.json`, is kept equal to this output by a test;
//! regenerate it with `teeform schema > teeform.schema.json`.
//!
//! Every value may also be a `${...}` reference, so typed fields accept strings too: the
//! loader, not the schema, is the judge of a value (`teeform validate`).

use serde_json::{Value, json};

use super::context::Ctx;
use super::error::{CliResult, exit};
use crate::model::schema::{SCHEMA, Type};

/// Where the committed copy is published, for the `$id`.
pub const FILE_NAME: &str = "teeform.schema.json";

pub fn run(ctx: &Ctx) -> CliResult {
    ctx.shell.print_json(&schema())?;
    Ok(exit::OK)
}

/// A string, or (for a reference) any string.
fn text(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// A `${...}` reference (where the field's own values are few and named).
fn reference() -> Value {
    json!({"type": "string", "pattern": "\\$\\{"})
}

/// A whole number in a range, or a string (`${var.x}`, `"2"`).
fn count(description: &str, min: u32, max: u32) -> Value {
    json!({
        "description": description,
        "anyOf": [{"type": "integer", "minimum": min, "maximum": max}, {"type": "string"}],
    })
}

/// A boolean, or a string (`${var.x}`, YAML 1.1's `yes`/`no` in quotes).
fn flag(description: &str) -> Value {
    json!({"description": description, "anyOf": [{"type": "boolean"}, {"type": "string"}]})
}

/// A scalar: what an env value, a variable value or a default may be.
fn scalar(description: &str) -> Value {
    json!({"description": description, "type": ["string", "number", "boolean"]})
}

fn object(description: &str, properties: Value, required: &[&str]) -> Value {
    let mut o = json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn map_of(description: &str, value: Value) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": value})
}

fn list_of_strings(description: &str) -> Value {
    json!({"type": "array", "description": description, "items": {"type": "string"}})
}

/// One CVM attribute from the attribute schema.
fn attribute(key: &str, ty: Type) -> Value {
    match ty {
        Type::Name => json!({
            "type": "string",
            "description": "The CVM's name in the cloud (default: the key): 5-63 characters.",
        }),
        Type::File { .. } => text(&format!("`{key}`: the path of a file, relative to the manifest.")),
        Type::Text(_) if key == "kms" => json!({
            "description": "The KMS: `phala` (default), `base` or `ethereum`, or an on-chain KMS's settings.",
            "anyOf": [
                {"type": "string", "enum": ["phala", "base", "ethereum"]},
                reference(),
                object(
                    "An on-chain KMS.",
                    json!({
                        "chain": text("`base` or `ethereum`."),
                        "rpc_url": text("The chain's RPC URL (may hold a key: never stored)."),
                        "contract": text("The KMS contract's 20-byte hex address."),
                        "private_key_env": text("The environment variable holding the signer's key (default PRIVATE_KEY)."),
                        "rpc_url_env": text("The environment variable holding the RPC URL (default ETH_RPC_URL)."),
                        "confirmations": count("Blocks to wait for after a registration.", 0, 1000),
                        "signer": text("The KMS's signing key (33-byte compressed public key or 20-byte address, hex): the env-encryption key must be signed by it (default: the one the API's KMS info names)."),
                    }),
                    &[],
                ),
            ],
        }),
        Type::Text(_) => text(&format!("`{key}`.")),
        Type::Count { unit, min, max, .. } => count(&format!("`{key}`, in {unit} ({min} to {max})."), min, max),
        Type::Flag(_) => flag(&format!("`{key}`: true or false.")),
        Type::Env => map_of(
            "Environment variables: keys are visible to the API, values only inside the CVM (encrypted). A value may be `${secret:env:NAME}` or `${secret:file:PATH}`.",
            scalar("The value (its text as written)."),
        ),
        Type::Power(_) => json!({
            "description": "The run state (default running).",
            "anyOf": [{"type": "string", "enum": ["running", "stopped"]}, reference()],
        }),
    }
}

/// A CVM: the attribute schema's keys, then the manifest's own.
fn cvm() -> Value {
    let mut props = serde_json::Map::new();
    for spec in SCHEMA {
        props.insert(spec.key.to_string(), attribute(spec.key, spec.ty));
    }
    let env_file = json!({"anyOf": [
        text("The path of an env file, relative to the manifest."),
        object(
            "An env file.",
            json!({
                "path": text("The path of the env file, relative to the manifest."),
                "secret": flag("Its values are secrets: digested, never stored or shown."),
            }),
            &["path"],
        ),
    ]});
    props.insert(
        "env_file".into(),
        json!({
            "description": "Env files in docker compose's syntax, read in order (a later file wins; `env:` wins over them all).",
            "anyOf": [env_file.clone(), {"type": "array", "items": env_file}],
        }),
    );
    props.insert("depends_on".into(), list_of_strings("CVM keys this one is created and updated after."));
    props.insert(
        "lifecycle".into(),
        object(
            "How teeform may change this CVM.",
            json!({"prevent_destroy": flag("Refuse any plan that destroys or replaces this CVM.")}),
            &[],
        ),
    );
    props.insert(
        "replicas".into(),
        count("How many instances of the app run (default 1); above 1 they are cvm.KEY[0], cvm.KEY[1], …", 1, 100),
    );
    props.insert(
        "nodes".into(),
        list_of_strings("Node names the instances are spread over, instance i on nodes[i % len]."),
    );
    props.insert(
        "update_policy".into(),
        object(
            "How an update rolls over the instances.",
            json!({
                "max_unavailable": count("How many instances may be down at once during a roll (default 1; 0 needs max_surge of 1 or more).", 0, 100),
                "max_surge": count("Temporary extra instances made on the new revision before the roll and deleted after it (default 0; needs replicas of 2 or more).", 0, 100),
                "pause_on_failure": flag("A failed batch stops the roll, later instances untouched (default true)."),
            }),
            &[],
        ),
    );
    props.insert(
        "health".into(),
        object(
            "A GET checked from where teeform runs once an instance runs; the roll goes on only when it passes.",
            json!({
                "url": text("http:// or https://; {instance_id}, {app_id}, {vm_uuid} and {index} are the instance's."),
                "expect_status": count("The status it must answer (default 200).", 100, 599),
                "timeout": count("Seconds to keep trying (default 60).", 1, 3600),
            }),
            &["url"],
        ),
    );
    props.insert(
        "lint".into(),
        object(
            "The compose/env lint.",
            json!({"ignore": list_of_strings("Env keys and compose variables the lint does not report.")}),
            &[],
        ),
    );
    object("A CVM: its address is cvm.KEY.", Value::Object(props), &["compose"])
}

fn data_source(description: &str, props: Value) -> Value {
    let mut o = object(description, props, &[]);
    o["properties"]["select"] = json!({"description": "Which match to pin.", "enum": ["most_recent", "exactly_one"]});
    map_of("Data sources of this kind, by name: ${data.KIND.NAME.ATTR}.", o)
}

/// `provider:`: where the APIs are.
fn provider() -> Value {
    object(
        "Where the APIs are.",
        json!({
            "phala": object("The Phala Cloud API.", json!({
                "endpoint": text("An API prefix (https://cloud-api.phala.com/api/v1), or `local` for the embedded simulator."),
            }), &[]),
            "nscale": object("The nscale image catalog.", json!({"endpoint": text("The catalog's URL.")}), &[]),
            "oci": object("The OCI image catalog.", json!({
                "endpoint": text("The catalog's URL."),
                "config_file": text("The OCI config file."),
                "profile": text("The profile in the config file."),
                "region": text("The region."),
            }), &[]),
        }),
        &[],
    )
}

/// `data:`: the data sources, by kind.
fn data_sources() -> Value {
    object(
        "Data sources: OS images from catalogs, pinned in teeform.lock.",
        json!({
            "phala_os_image": data_source("A Phala OS image.", json!({
                "cvm": text("Read the images offered to this CVM."),
                "version": text("A version constraint (e.g. ^0.5)."),
                "variant": text("e.g. dev."),
                "current": flag("The image the CVM runs now."),
            })),
            "nscale_image": data_source("An nscale image.", json!({
                "region": text("The region."),
                "organization": text("The organization."),
                "scope": {"enum": ["owned", "available"]},
                "architecture": {"enum": ["x86_64", "aarch64"]},
                "os": {"type": "object", "description": "The OS to match."},
                "gpu": object("The GPU to match.", json!({
                    "vendor": text("The vendor."),
                    "models": list_of_strings("Models."),
                    "driver": text("The driver version."),
                }), &[]),
                "tags": {"type": "object", "description": "Tags to match.", "additionalProperties": {"type": "string"}},
            })),
            "oci_image": data_source("An OCI image.", json!({
                "compartment": text("The compartment OCID."),
                "operating_system": text("The operating system."),
                "operating_system_version": text("Its version."),
                "shape": text("The shape it must run on."),
                "display_name": text("The display name."),
            })),
        }),
        &[],
    )
}

/// The JSON Schema of `teeform.yaml`.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": FILE_NAME,
        "title": "teeform.yaml",
        "description": "A teeform manifest: Phala Cloud CVMs, declared. Generated by `teeform schema`.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "provider": provider(),
            "backend": {"description": "Where state is kept.", "enum": ["local", "postgres"]},
            "allowed_dirs": list_of_strings("Folders outside the manifest's that it may read files from."),
            "variables": map_of("Variables: ${var.NAME}.", json!({
                "anyOf": [
                    scalar("The default."),
                    {"type": "null"},
                    object("A variable.", json!({
                        "default": {"description": "Its value unless --var, --var-file or TEEFORM_VAR_NAME sets one.", "type": ["string", "number", "boolean", "null"]},
                        "description": text("What it is for."),
                        "type": {"enum": ["string", "number", "bool"]},
                        "sensitive": flag("Whether plans hide it."),
                    }), &[]),
                ],
            })),
            "secrets": object("How secret values are digested in state.", json!({
                "passphrase_env": text("The environment variable holding the passphrase of keyed digests (default TEEFORM_SECRETS_PASSPHRASE)."),
            }), &[]),
            "verify": object("How `verify` and the apply gate check TDX quotes (`--pccs-url` and `TEEFORM_PCCS_URL` win).", json!({
                "pccs_url": text("Fetch Intel's collateral from this PCCS: `phala`, `intel` or an http(s) base URL."),
                "allow_tcb_status": {
                    "type": "array",
                    "description": "TCB statuses accepted besides UpToDate and the hardening/configuration ones (added to `--allow-tcb-status`).",
                    "items": {"anyOf": [{"enum": crate::verify::quote::TCB_STATUSES}, reference()]},
                },
            }), &[]),
            "cvms": map_of("The CVMs, by key.", cvm()),
            "moved": {
                "type": "array",
                "description": "CVM keys renamed in the manifest: the CVM at `from` in state is the one at `to` (no cloud call).",
                "items": object("A move.", json!({
                    "from": text("The old address, cvm.OLD."),
                    "to": text("The new address, cvm.NEW."),
                }), &["from", "to"]),
            },
            "data": data_sources(),
            "outputs": map_of("Outputs: values to show after apply (`teeform output`).", json!({
                "anyOf": [
                    text("The value, e.g. ${cvm.web.app_id}."),
                    object("An output.", json!({
                        "value": text("The value."),
                        "sensitive": flag("Hide it (state keeps a digest)."),
                        "description": text("What it is."),
                    }), &["value"]),
                ],
            })),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn the_schema_has_the_keys_the_loader_accepts() {
        let s = schema();
        let mut top: Vec<String> = crate::manifest::TOP_KEYS.iter().map(|k| k.to_string()).collect();
        top.sort();
        assert_eq!(keys(&s["properties"]), top, "top-level keys: add the new one to src/cli/schema.rs");
        let mut cvm: Vec<String> = crate::manifest::cvm_keys().iter().map(|k| k.to_string()).collect();
        cvm.sort();
        assert_eq!(
            keys(&s["properties"]["cvms"]["additionalProperties"]["properties"]),
            cvm,
            "CVM keys: add the new one to src/cli/schema.rs"
        );
    }
}
