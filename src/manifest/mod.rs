//! The manifest: `teeform.yaml` → a typed, validated [`Config`].
//!
//! Invariants: every problem found while loading becomes a [`Diagnostic`] with a file and
//! span, and loading reports all of them at once. Variables, `${env:X}` and `${file:P}` are
//! substituted here; references to CVMs, data sources and secrets stay in [`Template`]s for
//! the planner. A string value is the scalar's text exactly as written (`load/values.rs`).
//! Every file is read through `files` (regular files in the allowed directories, bounded, no
//! byte-order mark); compose files are linted against each CVM's env in `compose_lint`.

pub mod compose_lint;
pub mod data;
pub mod diag;
pub mod dotenv;
pub mod expr;
pub mod files;
mod load;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use data::{DataKind, DataSource, DataSpec, Providers, Select};
pub use diag::{Diagnostic, Related, Severity, Source};
pub use expr::{Part, Ref, Template};
pub use load::{
    EnvLookup, LoadOptions, TOP_KEYS, VarFile, auto_var_files, cvm_keys, declared_cvms, load, load_backend, load_str,
    valid_cvm_name,
};
pub use yaml::Span;

/// Where the Phala Cloud API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The embedded simulator, its data kept under the state directory.
    Local,
    /// An API prefix such as `https://cloud-api.phala.com/api/v1`.
    Url(String),
}

pub const DEFAULT_API_PREFIX: &str = "https://cloud-api.phala.com/api/v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Postgres,
}

/// `verify: {pccs_url, allow_tcb_status}`: the manifest's defaults for `verify` and the apply
/// gate's quote check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifySettings {
    /// `phala`, `intel` or a PCCS base URL, as `--pccs-url` takes it (checked at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pccs_url: Option<String>,
    /// TCB statuses accepted besides the default ones, each one Intel defines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tcb_status: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub source: Arc<Source>,
    pub endpoint: Endpoint,
    pub backend: Option<BackendKind>,
    /// `allowed_dirs:`: directories outside [`Config::dir`] that files may be read from, as
    /// written (relative to `dir` or absolute). See [`files::FilePolicy`].
    pub allowed_dirs: Vec<PathBuf>,
    /// Variable values as JSON. A number keeps its type here; where it is used inside a
    /// string, its text as written is used (`1.20` stays `1.20`).
    pub variables: BTreeMap<String, serde_json::Value>,
    pub cvms: BTreeMap<String, CvmConfig>,
    /// `moved:` (Terraform's `moved` blocks), in the order written: checked to form no chain
    /// or cycle, each `to` declared under `cvms:` and each `from` not.
    pub moved: Vec<Moved>,
    pub outputs: BTreeMap<String, OutputConfig>,
    /// Data sources by address (`data.KIND.NAME`); `crate::datasources` resolves them.
    pub data: BTreeMap<String, DataSource>,
    /// Settings of the image catalogs (nscale, OCI).
    pub providers: Providers,
    /// `secrets.passphrase_env`: the variable holding the passphrase of keyed secret digests,
    /// when not `TEEFORM_SECRETS_PASSPHRASE` (see `crate::secrets::from_env`).
    pub secrets_passphrase_env: Option<String>,
    /// `verify:`: how TDX quotes are checked, unless `--pccs-url` / `--allow-tcb-status` say.
    pub verify: VerifySettings,
    /// Non-fatal findings (e.g. a compose `${VAR}` with no env key).
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// Where this manifest may read files from (for `${secret:file:}` at plan and apply).
    pub fn file_policy(&self) -> files::FilePolicy {
        files::FilePolicy::new(&self.dir, &self.allowed_dirs)
    }
}

/// A file the manifest points at, read at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// As written in the manifest, relative to it.
    pub path: String,
    /// The file's text, byte for byte, except a leading UTF-8 byte-order mark (not content:
    /// docker compose drops it too, so the CVM sees the same YAML and the compose hash is
    /// taken over exactly what is sent).
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kms {
    Phala,
    OnChain(OnChainKms),
}

impl Kms {
    /// The API's name for the KMS kind (`phala`, `ethereum`, `base`).
    pub fn kind(&self) -> &'static str {
        match self {
            Kms::Phala => "phala",
            Kms::OnChain(c) => match c.chain_id {
                1 => "ethereum",
                _ => "base",
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChainKms {
    pub chain_id: u64,
    pub rpc_url: Option<String>,
    /// The app contract, when the API does not report it.
    pub contract: Option<String>,
    /// Names of the environment variables holding the signer key and RPC URL.
    pub private_key_env: String,
    pub rpc_url_env: String,
    pub confirmations: u64,
}

#[derive(Debug, Clone)]
pub struct CvmConfig {
    /// The key under `cvms:`, used in addresses (`cvm.KEY`).
    pub key: String,
    /// The CVM name in the cloud (defaults to the key).
    pub name: String,
    pub span: Span,
    pub compose: FileRef,
    pub pre_launch_script: Option<FileRef>,
    /// The attributes written as plain values (numbers, flags, names: the schema's `Count`,
    /// `Flag` and `Text` types), read as the schema types them; `None` when left out. The
    /// name, files, KMS, env and run state are the fields here, not these.
    pub attrs: crate::model::CvmAttrs,
    pub kms: Kms,
    /// `kms.signer`: the KMS signing key (secp256k1 public key or address, `0x` hex, as
    /// written) env-encryption keys must be signed by.
    pub kms_signer: Option<String>,
    pub env: BTreeMap<String, Template>,
    /// Env keys whose value is read only at plan time (a secret) and which the compose file
    /// requires non-empty (`${VAR:?…}`), with the value's place in the manifest: the plan
    /// refuses an empty one, as docker compose would refuse to start inside the CVM.
    pub required_env: BTreeMap<String, Span>,
    /// `power: stopped`: the CVM is kept stopped; otherwise it is kept running.
    pub stopped: bool,
    /// Where each field's value is in the manifest, by key (`instance_type`, `disk_size`, …),
    /// for checks after loading (catalogs, disk shrink) to point at.
    pub spans: BTreeMap<String, Span>,
    /// Explicit and implied (by `${cvm.X...}`) dependencies, by key.
    pub depends_on: Vec<String>,
    /// Fields whose value comes from a data source (today `image`), as templates; filled in
    /// before planning by `crate::datasources::substitute`.
    pub data_fields: BTreeMap<String, Template>,
    /// `lifecycle: {prevent_destroy: true}`: a plan that would destroy or replace the CVM is
    /// an error (Terraform's `prevent_destroy`); state remembers it once applied.
    pub prevent_destroy: bool,
    /// `replicas:`: how many instances of the app run (default 1). Above 1, instance `i` is
    /// addressed `cvm.KEY[i]`; at 1 the CVM is `cvm.KEY`, as before replicas existed.
    pub replicas: u32,
    /// `nodes:`: the nodes instances are spread over, by name, instance `i` on
    /// `nodes[i % len]`. Empty: each instance where `node` says (or where the API puts it).
    pub nodes: Vec<String>,
    /// `update_policy:`: how an update rolls over the instances.
    pub update_policy: UpdatePolicy,
    /// `health:`: checked from where teeform runs after each instance is created or updated.
    pub health: Option<HealthCheck>,
}

/// `update_policy:` of a replicated CVM (the names Kubernetes and GCP managed instance groups
/// use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdatePolicy {
    /// How many instances may be updating (so not serving) at once. Default 1; 0 only with a
    /// surge. A batch is `max_unavailable + max_surge` instances.
    pub max_unavailable: u32,
    /// Temporary extra instances (`cvm.KEY[N]` …) made on the new revision before the first
    /// batch and deleted after the last one, so the roll keeps `N - max_unavailable` serving
    /// and never has more than `N + max_surge`. Default 0. Needs `replicas` of 2 or more.
    pub max_surge: u32,
    /// A batch that fails (boot, attestation or health) stops the roll, the later instances
    /// untouched; `false` goes on with the later batches. Default true.
    pub pause_on_failure: bool,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy { max_unavailable: 1, max_surge: 0, pause_on_failure: true }
    }
}

/// `health: {url, expect_status, timeout}`: a GET teeform sends once an instance runs, which
/// must answer `expect_status` within `timeout` seconds (retried until then).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    /// `http://` or `https://`; `{instance_id}`, `{app_id}`, `{vm_uuid}` and `{index}` are
    /// replaced with the instance's.
    pub url: String,
    /// Default 200.
    pub expect_status: u16,
    /// Seconds, default 60.
    pub timeout: u32,
}

/// A `moved:` entry: the CVM state keeps at `from` is the one the manifest now declares at
/// `to` (a renamed key). Planning moves it in state and makes no cloud call for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub from: crate::model::Address,
    pub to: crate::model::Address,
    /// The entry in the manifest.
    pub span: Span,
}

impl CvmConfig {
    /// The manifest entry's address, `cvm.KEY` (also the address of its one instance when
    /// `replicas` is 1).
    pub fn address(&self) -> crate::model::Address {
        crate::model::Address::cvm(&self.key)
    }

    /// The addresses of its instances: `cvm.KEY` for one replica, else `cvm.KEY[0]` …
    /// `cvm.KEY[replicas-1]`.
    pub fn instances(&self) -> Vec<crate::model::Address> {
        match self.replicas {
            0 | 1 => vec![self.address()],
            n => (0..n).map(|i| crate::model::Address::instance(&self.key, i)).collect(),
        }
    }

    /// The node instance `index` goes on (`nodes:` round-robin), by name, when `nodes` is set.
    pub fn node_of(&self, index: u32) -> Option<&str> {
        (!self.nodes.is_empty()).then(|| self.nodes[index as usize % self.nodes.len()].as_str())
    }
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub value: Template,
    pub sensitive: bool,
    pub description: Option<String>,
}

/// The manifest failed to load; every problem found is listed.
#[derive(Debug)]
pub struct ManifestError {
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.diagnostics.iter().filter(|d| d.is_error()).count();
        write!(f, "the manifest has {n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ManifestError {}
