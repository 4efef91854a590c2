//! The CVM attribute schema (Terraform's `configschema` as the model): one entry per
//! attribute says what it is and how teeform treats it — its manifest key, type and unit,
//! how a change to it is carried out, whether the manifest always manages it, its normal
//! form, how the API reports it, and how it goes into a create and into the unified PATCH.
//!
//! Everything that treats attributes one by one derives from [`SCHEMA`]: the planner's diff,
//! refresh merge and drift (`plan`), what apply records and sends (`apply`), the plan's
//! renderers, `state show`, the manifest's key list. Code names an attribute by [`Attr`],
//! never by a string, so a misspelt attribute does not compile. Where the values sit on the
//! wire is the provider's (`providers::phala_attrs`, an exhaustive `match` on [`Attr`]).
//!
//! Adding an attribute: a field in [`CvmAttrs`](super::CvmAttrs), an entry below, its wire
//! places in `providers::phala_attrs`, and its reading in the manifest (`manifest::load::cvm`);
//! ARCHITECTURE.md lists the steps, and `tests/it/schema.rs` round-trips every entry.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{CvmAttrs, Power};

/// How a change to an attribute is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Part of the one unified `PATCH /cvms/{id}`; restarts the CVM.
    InPlace,
    /// Renamed in place with its own call, `PATCH /cvms/{id}/name`: the CVM keeps its app id,
    /// keys and disk, and does not restart. UNVERIFIED: that the rename restarts nothing (the
    /// provider's design note says only that it answers 204).
    Rename,
    /// The API cannot change it on a running CVM: destroy and create again.
    Replace,
    /// Started or stopped with the API's `POST /cvms/{id}/start` or `/stop`: stopping comes
    /// before an update of the same CVM, starting after it, so it boots once.
    Power,
}

/// Whether a manifest that leaves the attribute out manages it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    /// Always compared: left out, it has its default (no pre-launch script, no env, the
    /// Phala KMS, `running`).
    Always,
    /// Compared only when the manifest sets it; left out, whatever the cloud has is fine
    /// (and state records it).
    WhenSet,
}

/// How the API stores a value differently from how it was written: its normal form, which
/// desired attributes, reports and records are compared in ([`CvmAttrs::normalized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normal {
    /// Kept byte for byte.
    AsIs,
    /// An empty string is no value.
    EmptyIsAbsent,
    /// Sent in upper case (the SDK's enum), reported in lower case.
    LowerCase,
}

/// How the API reports the attribute of an existing CVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Reported when the API knows it; when it does not say, the record keeps its value.
    Reported,
    /// Reported inside the app compose: when the API reports the app compose, an absent
    /// value is a value (none), and learning it is drift like any change.
    WithCompose,
    /// Only the keys (`allowed_envs`); values cannot be read back.
    Keys,
    /// What the API's status means ([`super::CvmStatus::power`]); unknown until a refresh.
    Status,
    /// The API does not report it: state keeps what was applied, `import` takes the
    /// manifest's.
    NotReported,
    /// Reported, but in one of the forms the manifest may use (the node: by name, where the
    /// manifest may name it by id): state keeps what was applied, and learns the reported
    /// value where it recorded none (a CVM the API placed), which is not drift.
    Learned,
}

/// How the attribute goes into the unified `PATCH /cvms/{id}` (an update in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch {
    /// Its desired value, as the PATCH field the provider names.
    Value,
    /// Every value, encrypted to the CVM's env key (`encrypted_env`), and the keys
    /// (`allowed_envs`) when they change.
    Env,
    /// The PATCH takes sizes, not type names: the type's vCPUs and memory are sent.
    AsSizes,
    /// Not part of the PATCH: [`Update`] says how it changes.
    No,
}

/// How the attribute goes into the create request (`POST /cvms/provision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Its value, when set.
    Value,
    /// Always sent; when the manifest leaves it out, this (the `phala` CLI's default).
    Default(Lit),
    /// The keys, in the app compose (`allowed_envs`); the values, encrypted, in the commit.
    Env,
    /// The id of the node named (looked up in `GET /teepods/available`).
    NodeId,
    /// The create request has no field for it: when the manifest sets it, one PATCH right
    /// after the create sets it (and restarts the new CVM once).
    AfterCreate,
    /// Not sent: a new CVM runs; `power: stopped` stops it after the create.
    No,
}

/// A constant value of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lit {
    Bool(bool),
    Str(&'static str),
}

/// How to reach an optional attribute in [`CvmAttrs`].
pub struct Field<T: 'static> {
    pub get: fn(&CvmAttrs) -> &Option<T>,
    pub get_mut: fn(&mut CvmAttrs) -> &mut Option<T>,
}

// By hand: a derive would ask `T: Copy`, and fn pointers are `Copy` whatever `T` is.
impl<T> Clone for Field<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Field<T> {}

/// What an attribute holds, and where it is in [`CvmAttrs`].
#[derive(Clone, Copy)]
pub enum Type {
    /// The CVM's name in the cloud (`CvmAttrs::name`; always set).
    Name,
    /// The text of a file the manifest names; a change shows as a diff of `file`.
    File { file: &'static str, field: Field<String> },
    /// A short string: a name or an id from one of the API's catalogs.
    Text(Field<String>),
    /// A whole number of `unit`, from `min` to `max` in the manifest.
    Count { unit: &'static str, min: u32, max: u32, field: Field<u32> },
    /// `true` or `false`.
    Flag(Field<bool>),
    /// Environment variables (`CvmAttrs::env`): keys are visible to the API, values only
    /// inside the CVM.
    Env,
    /// The run state: `running` or `stopped`.
    Power(Field<Power>),
}

/// Everything teeform knows about one attribute. See the module docs.
pub struct Spec {
    pub attr: Attr,
    /// The manifest key; also the attribute's name in state, saved plans, JSON and plans.
    pub key: &'static str,
    pub ty: Type,
    pub update: Update,
    pub managed: Managed,
    pub normal: Normal,
    pub read: Read,
    pub patch: Patch,
    pub create: Create,
}

/// `Field { get: |a| &a.f, get_mut: |a| &mut a.f }`.
macro_rules! field {
    ($f:ident) => {
        Field { get: |a| &a.$f, get_mut: |a| &mut a.$f }
    };
}

/// Declares [`Attr`] and [`SCHEMA`] from one list, so neither can miss an attribute.
macro_rules! schema {
    ($( $(#[$doc:meta])* $attr:ident { $($f:ident: $v:expr),* $(,)? } )*) => {
        /// A CVM attribute. Its entry in [`SCHEMA`] says everything about it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Attr {
            $( $(#[$doc])* $attr, )*
        }

        /// Every attribute, in display order (plans, JSON, `state show`).
        pub static SCHEMA: &[Spec] = &[ $( Spec { attr: Attr::$attr, $($f: $v),* }, )* ];

        impl Attr {
            /// Every attribute, in display order.
            pub const ALL: &[Attr] = &[ $( Attr::$attr, )* ];
        }
    };
}

schema! {
    /// The CVM's name in the cloud (5-63 characters; defaults to the manifest key).
    Name {
        key: "name", ty: Type::Name, update: Update::Rename, managed: Managed::Always,
        normal: Normal::AsIs, read: Read::Reported, patch: Patch::No, create: Create::Value,
    }
    /// The KMS kind: `phala`, `ethereum` or `base`.
    Kms {
        key: "kms", ty: Type::Text(field!(kms)), update: Update::Replace, managed: Managed::Always,
        normal: Normal::LowerCase, read: Read::Reported, patch: Patch::No,
        create: Create::Default(Lit::Str("phala")),
    }
    /// The node (teepod) to run on, by name or id.
    Node {
        key: "node", ty: Type::Text(field!(node)), update: Update::Replace, managed: Managed::WhenSet,
        normal: Normal::EmptyIsAbsent, read: Read::Learned, patch: Patch::No, create: Create::NodeId,
    }
    /// Whether the dstack gateway serves the CVM's ports.
    Gateway {
        key: "gateway", ty: Type::Flag(field!(gateway)), update: Update::Replace,
        managed: Managed::WhenSet, normal: Normal::AsIs, read: Read::Reported, patch: Patch::No,
        create: Create::Default(Lit::Bool(true)),
    }
    /// An instance type (`tdx.medium`): a size instead of `vcpu` and `memory`.
    InstanceType {
        key: "instance_type", ty: Type::Text(field!(instance_type)), update: Update::InPlace,
        managed: Managed::WhenSet, normal: Normal::EmptyIsAbsent, read: Read::Reported,
        patch: Patch::AsSizes, create: Create::Value,
    }
    /// Virtual CPUs.
    Vcpu {
        key: "vcpu", ty: Type::Count { unit: "vCPUs", min: 1, max: 256, field: field!(vcpu) },
        update: Update::InPlace, managed: Managed::WhenSet, normal: Normal::AsIs,
        read: Read::Reported, patch: Patch::Value, create: Create::Value,
    }
    /// Memory in MB (MiB; the API reports GiB, read back as MiB).
    Memory {
        key: "memory", ty: Type::Count { unit: "MB", min: 256, max: 4 * 1024 * 1024, field: field!(memory) },
        update: Update::InPlace, managed: Managed::WhenSet, normal: Normal::AsIs,
        read: Read::Reported, patch: Patch::Value, create: Create::Value,
    }
    /// Disk size in GB (disks only grow).
    DiskSize {
        key: "disk_size", ty: Type::Count { unit: "GB", min: 1, max: 64 * 1024, field: field!(disk_size) },
        update: Update::InPlace, managed: Managed::WhenSet, normal: Normal::AsIs,
        read: Read::Reported, patch: Patch::Value, create: Create::Value,
    }
    /// GPUs attached.
    Gpus {
        key: "gpus", ty: Type::Count { unit: "GPUs", min: 0, max: 64, field: field!(gpus) },
        update: Update::InPlace, managed: Managed::WhenSet, normal: Normal::AsIs,
        read: Read::Reported, patch: Patch::Value, create: Create::Value,
    }
    /// The OS image (`dstack-0.5.5`).
    Image {
        key: "image", ty: Type::Text(field!(image)), update: Update::InPlace, managed: Managed::WhenSet,
        normal: Normal::EmptyIsAbsent, read: Read::Reported, patch: Patch::Value, create: Create::Value,
    }
    /// Whether anyone may read the CVM's container logs.
    PublicLogs {
        key: "public_logs", ty: Type::Flag(field!(public_logs)), update: Update::InPlace,
        managed: Managed::WhenSet, normal: Normal::AsIs, read: Read::Reported, patch: Patch::Value,
        create: Create::Default(Lit::Bool(true)),
    }
    /// Whether anyone may read the CVM's system information.
    PublicSysinfo {
        key: "public_sysinfo", ty: Type::Flag(field!(public_sysinfo)), update: Update::InPlace,
        managed: Managed::WhenSet, normal: Normal::AsIs, read: Read::Reported, patch: Patch::Value,
        create: Create::Default(Lit::Bool(true)),
    }
    /// Whether anyone may read the CVM's TCB information (its attested measurements).
    PublicTcbinfo {
        key: "public_tcbinfo", ty: Type::Flag(field!(public_tcbinfo)), update: Update::InPlace,
        managed: Managed::WhenSet, normal: Normal::AsIs, read: Read::Reported, patch: Patch::Value,
        create: Create::Default(Lit::Bool(false)),
    }
    /// How long a stop waits for the CVM to shut down, in seconds.
    ShutdownTimeout {
        key: "shutdown_timeout",
        ty: Type::Count { unit: "seconds", min: 0, max: 24 * 3600, field: field!(shutdown_timeout) },
        update: Update::InPlace, managed: Managed::WhenSet, normal: Normal::AsIs,
        read: Read::NotReported, patch: Patch::Value, create: Create::AfterCreate,
    }
    /// Whether a stop may force the CVM off after `shutdown_timeout`.
    AllowForceStop {
        key: "allow_force_stop", ty: Type::Flag(field!(allow_force_stop)), update: Update::InPlace,
        managed: Managed::WhenSet, normal: Normal::AsIs, read: Read::NotReported, patch: Patch::Value,
        create: Create::AfterCreate,
    }
    /// A script run before the containers start (empty is none: the SDK drops a falsy one).
    PreLaunchScript {
        key: "pre_launch_script",
        ty: Type::File { file: "pre-launch-script", field: field!(pre_launch_script) },
        update: Update::InPlace, managed: Managed::Always, normal: Normal::EmptyIsAbsent,
        read: Read::WithCompose, patch: Patch::Value, create: Create::Value,
    }
    /// The docker compose file.
    Compose {
        key: "compose", ty: Type::File { file: "docker-compose.yml", field: field!(compose) },
        update: Update::InPlace, managed: Managed::Always, normal: Normal::AsIs, read: Read::Reported,
        patch: Patch::Value, create: Create::Value,
    }
    /// Environment variables: names to values (sensitive ones as digests).
    Env {
        key: "env", ty: Type::Env, update: Update::InPlace, managed: Managed::Always,
        normal: Normal::AsIs, read: Read::Keys, patch: Patch::Env, create: Create::Env,
    }
    /// The run state (`power: stopped`; `running` unless the manifest says so).
    Power {
        key: "power", ty: Type::Power(field!(power)), update: Update::Power, managed: Managed::Always,
        normal: Normal::AsIs, read: Read::Status, patch: Patch::No, create: Create::No,
    }
}

impl Attr {
    /// This attribute's entry in [`SCHEMA`].
    pub fn spec(self) -> &'static Spec {
        &SCHEMA[self as usize]
    }

    /// The manifest key (and name everywhere else): `vcpu`, `pre_launch_script`, …
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// The attribute with manifest key `key`.
    pub fn from_key(key: &str) -> Option<Attr> {
        SCHEMA.iter().find(|s| s.key == key).map(|s| s.attr)
    }

    /// Whether a change forces the CVM's replacement.
    pub fn forces_replacement(self) -> bool {
        self.spec().update == Update::Replace
    }

    /// Whether a change goes into the unified PATCH (and so restarts the CVM).
    pub fn patched(self) -> bool {
        self.spec().update == Update::InPlace
    }
}

impl std::fmt::Display for Attr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Written as its key, as attribute names were before there was a schema.
impl Serialize for Attr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for Attr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Attr::from_key(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown CVM attribute `{s}`")))
    }
}

fn json<T: Serialize>(v: &Option<T>) -> Value {
    v.as_ref().and_then(|v| serde_json::to_value(v).ok()).unwrap_or(Value::Null)
}

impl CvmAttrs {
    /// The attribute as JSON (`null` when unset), for generic diffs and rendering. Env is
    /// the map of [`super::EnvVal`]s as they serialize.
    pub fn get(&self, attr: Attr) -> Value {
        match attr.spec().ty {
            Type::Name => self.name.clone().into(),
            Type::File { field, .. } | Type::Text(field) => json((field.get)(self)),
            Type::Count { field, .. } => json((field.get)(self)),
            Type::Flag(field) => json((field.get)(self)),
            Type::Power(field) => json((field.get)(self)),
            Type::Env => serde_json::to_value(&self.env).unwrap_or(Value::Null),
        }
    }

    /// Whether the attribute has a value (a name and an env, even an empty one, always do).
    pub fn is_set(&self, attr: Attr) -> bool {
        match attr.spec().ty {
            Type::Name | Type::Env => true,
            Type::File { field, .. } | Type::Text(field) => (field.get)(self).is_some(),
            Type::Count { field, .. } => (field.get)(self).is_some(),
            Type::Flag(field) => (field.get)(self).is_some(),
            Type::Power(field) => (field.get)(self).is_some(),
        }
    }

    /// Sets the attribute to the value `from` has.
    pub fn copy_from(&mut self, attr: Attr, from: &CvmAttrs) {
        fn copy<T: Clone>(f: Field<T>, to: &mut CvmAttrs, from: &CvmAttrs) {
            *(f.get_mut)(to) = (f.get)(from).clone();
        }
        match attr.spec().ty {
            Type::Name => self.name = from.name.clone(),
            Type::Env => self.env = from.env.clone(),
            Type::File { field, .. } | Type::Text(field) => copy(field, self, from),
            Type::Count { field, .. } => copy(field, self, from),
            Type::Flag(field) => copy(field, self, from),
            Type::Power(field) => copy(field, self, from),
        }
    }

    /// The attributes in the API's normal form: what the API reports back after being sent
    /// these. Desired attributes, the API's reports and state records are compared in this
    /// form, so a value the API stores differently from how it was written never shows as a
    /// change (nor restarts a CVM to "fix" it, forever). Each attribute's [`Normal`] says how:
    ///
    /// - `pre_launch_script` (empty is absent): an empty script is no script.
    ///   `@phala/dstack-sdk` and `@phala/cloud` drop a falsy one before hashing
    ///   (`preprocessAppCompose`), the simulator drops it when stored, and `PATCH` with `""`
    ///   removes it. Only the empty string is falsy: a script of whitespace stays
    ///   (UNVERIFIED for the real backend, taken to follow the SDK's rule).
    /// - `instance_type`, `node`, `image` (empty is absent): UNVERIFIED: the API reports
    ///   none rather than an empty string.
    /// - `kms` (lower case): sent as `PHALA`/`ETHEREUM`/`BASE` (the SDK's enum), reported in
    ///   lower case.
    /// - `env`: no keys and an absent or empty `allowed_envs` are the same (both an empty map
    ///   here already, so nothing to rewrite).
    ///
    /// Everything else (name, compose, numbers, booleans, env values) is kept byte for byte:
    /// a whitespace-only script, CRLF line ends or a byte-order mark reach the CVM as they
    /// are, so they are compared as they are.
    pub fn normalized(mut self) -> CvmAttrs {
        for spec in SCHEMA {
            let text = match spec.ty {
                Type::File { field, .. } | Type::Text(field) => (field.get_mut)(&mut self),
                _ => continue,
            };
            match spec.normal {
                Normal::AsIs => {}
                Normal::EmptyIsAbsent => {
                    if text.as_deref() == Some("") {
                        *text = None;
                    }
                }
                Normal::LowerCase => {
                    if let Some(t) = text {
                        t.make_ascii_lowercase();
                    }
                }
            }
        }
        self
    }

    /// The attributes a create sends: those the manifest leaves out that a create always
    /// sends get their defaults ([`Create::Default`]).
    pub fn with_create_defaults(mut self) -> CvmAttrs {
        for spec in SCHEMA {
            let Create::Default(lit) = spec.create else { continue };
            match (spec.ty, lit) {
                (Type::Flag(field), Lit::Bool(b)) => {
                    (field.get_mut)(&mut self).get_or_insert(b);
                }
                (Type::Text(field), Lit::Str(s)) => {
                    (field.get_mut)(&mut self).get_or_insert_with(|| s.to_string());
                }
                _ => unreachable!("the schema's defaults match their types (tested)"),
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_consistent() {
        let mut keys = std::collections::BTreeSet::new();
        for (i, spec) in SCHEMA.iter().enumerate() {
            assert_eq!(spec.attr as usize, i, "{}: SCHEMA is in Attr's order", spec.key);
            assert_eq!(Attr::ALL[i], spec.attr);
            assert!(keys.insert(spec.key), "{}: keys are unique", spec.key);
            assert_eq!(Attr::from_key(spec.key), Some(spec.attr));
            assert_eq!(serde_json::to_value(spec.attr).unwrap(), spec.key);
            // Defaults have their attribute's type.
            if let Create::Default(lit) = spec.create {
                assert!(
                    matches!((spec.ty, lit), (Type::Flag(_), Lit::Bool(_)) | (Type::Text(_), Lit::Str(_))),
                    "{}: default of another type",
                    spec.key
                );
            }
            // Only an in-place attribute goes into the PATCH, and every one does somehow.
            assert_eq!(spec.patch != Patch::No, spec.update == Update::InPlace, "{}", spec.key);
            // The rename call takes a name, and nothing else.
            assert_eq!(spec.update == Update::Rename, matches!(spec.ty, Type::Name), "{}", spec.key);
            // Normal forms rewrite strings only.
            if spec.normal != Normal::AsIs {
                assert!(matches!(spec.ty, Type::Text(_) | Type::File { .. }), "{}", spec.key);
            }
        }
        assert!(serde_json::from_value::<Attr>("vcpus".into()).is_err());
    }

    #[test]
    fn each_attribute_reads_writes_and_copies_its_own_field() {
        // A value for every attribute, set through the schema, lands in its own field only.
        for &attr in Attr::ALL {
            let mut from = CvmAttrs::default();
            let value = match attr.spec().ty {
                Type::Name => {
                    from.name = "n".into();
                    Value::from("n")
                }
                Type::File { field, .. } | Type::Text(field) => {
                    *(field.get_mut)(&mut from) = Some("x".into());
                    Value::from("x")
                }
                Type::Count { field, .. } => {
                    *(field.get_mut)(&mut from) = Some(7);
                    Value::from(7)
                }
                Type::Flag(field) => {
                    *(field.get_mut)(&mut from) = Some(true);
                    Value::from(true)
                }
                Type::Power(field) => {
                    *(field.get_mut)(&mut from) = Some(Power::Stopped);
                    Value::from("stopped")
                }
                Type::Env => {
                    from.env.insert("K".into(), super::super::EnvVal::plain("v"));
                    serde_json::json!({"K": {"value": "v"}})
                }
            };
            assert_eq!(from.get(attr), value, "{attr}");
            let others: Vec<Attr> = Attr::ALL.iter().copied().filter(|a| *a != attr).collect();
            for &o in &others {
                assert_eq!(from.get(o), CvmAttrs::default().get(o), "{attr} set {o} too");
            }
            let mut to = CvmAttrs::default();
            to.copy_from(attr, &from);
            assert_eq!(to, from, "{attr}");
            assert!(to.is_set(attr));
        }
    }

    /// README's manifest example names every attribute, so users find a new one there.
    #[test]
    fn the_readme_names_every_attribute() {
        let readme = include_str!("../../README.md");
        let example = readme.split("## The manifest").nth(1).and_then(|s| s.split("\n```\n").next()).unwrap_or("");
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        for spec in SCHEMA {
            let named = example
                .match_indices(spec.key)
                .any(|(i, k)| !word(example[..i].chars().next_back()) && !word(example[i + k.len()..].chars().next()));
            assert!(named, "README's manifest example does not name `{}`", spec.key);
        }
    }

    #[test]
    fn create_defaults_fill_only_what_is_left_out() {
        let a = CvmAttrs { public_logs: Some(false), ..Default::default() }.with_create_defaults();
        assert_eq!(
            (a.public_logs, a.public_sysinfo, a.public_tcbinfo, a.gateway, a.kms.as_deref()),
            (Some(false), Some(true), Some(false), Some(true), Some("phala"))
        );
    }
}
