//! A local Phala Cloud simulator speaking the real HTTP API (paths, auth header, JSON shapes,
//! error bodies), for the quickstart, tests and benchmarks.
//!
//! A request passes the [`gate`] (auth, stats, fault injection), is read into typed values at
//! the [`edge`] ([`requests`]), and goes to its area's route ([`routes`]), which asks the
//! [`world`] (the rules: lifecycle, limits, ids, what the chain's answers mean), the [`chain`]
//! (its own small JSON-RPC client) when an on-chain app is involved, and answers with a
//! [`shapes`] function (or an [`error::ApiError`]). `catalogs` serves the nscale and OCI image
//! catalogs beside it, and [`pccs`] Intel's collateral for the one real quote it can serve.
//!
//! Invariant: it owns its wire types and its rules, and shares nothing with the client but the
//! compose-hash and env-encryption primitives (`compose`, `envcrypt`), which the conformance
//! suite checks against the official SDK: a referee does not use the player's code.
//! Knobs: latency, error rate (429 with Retry-After, 500/502/503), hung requests, restart and
//! boot durations; `GET /_sim/stats` counts requests and restarts.

pub mod attest;
pub mod catalogs;
mod chain;
mod edge;
mod error;
mod gate;
pub mod limits;
pub mod pccs;
mod requests;
mod routes;
mod shapes;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

pub use world::World;

/// The simulator's test KMS signing key (secp256k1): public test data, never a real key.
pub const KMS_SECRET: [u8; 32] = *b"teeform-simulator-test-kms-key!!";
/// The key the `kms_bad_signature` knob signs with instead.
pub const WRONG_KMS_SECRET: [u8; 32] = *b"teeform-simulator-wrong-kms-key!";

/// The test KMS's signing key as its KMS info gives it (`k256_pubkey`: compressed, `0x` hex).
pub fn kms_signer() -> String {
    attest::kms_public_key(&KMS_SECRET)
}

/// Behaviour knobs; all can be changed at runtime with `POST /_sim/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// When set, every other key gets 401.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// The OIDC token (`Authorization: Bearer`) the API accepts, as CI's keyless deploys send
    /// it; when neither this nor an API key is set, any token is accepted.
    #[serde(skip_serializing)]
    pub bearer_token: Option<String>,
    pub latency_ms: u64,
    /// Fraction of API requests answered with 429/500/502/503 before doing anything.
    pub error_rate: f64,
    /// Fraction of API requests that are carried out and then answered with 502, as when a
    /// proxy fails after the backend acted: the client cannot know whether it happened.
    pub error_after_rate: f64,
    /// Fraction of API requests that never answer (until `hang_ms`).
    pub hang_rate: f64,
    pub hang_ms: u64,
    /// How long a CVM restart (each configuration update) takes.
    pub restart_ms: u64,
    /// How long a new CVM takes to boot.
    pub boot_ms: u64,
    pub seed: u64,
    /// JSON-RPC URL of the chain that on-chain KMS apps live on.
    pub chain_rpc: Option<String>,
    /// The KMS contract on that chain.
    pub kms_contract: Option<String>,
    pub chain_id: Option<u64>,
    /// Names of CVMs whose boot fails (they end in status `error`).
    pub fail_boot: Vec<String>,
    /// nscale: the bearer token the Region API accepts (any token when unset).
    pub nscale_token: Option<String>,
    /// OCI: the PEM public key request signatures must verify against (when unset, any
    /// well-formed, current signature passes).
    pub oci_public_key: Option<String>,
    /// OCI: at most this many images per ListImages page.
    pub oci_page_size: usize,
    /// Statuses the next nscale/OCI catalog requests answer with, first one first.
    pub catalog_errors: Vec<u16>,
    /// Answer as the API did before the same-path create: `POST /cvms` reads every body as a
    /// commit (a provision body is a 422 for its missing `app_id` and `compose_hash`), and
    /// provisions go to `POST /cvms/provision` only.
    pub legacy_create: bool,
    /// How the platform hashes app-compose: `compact` (the SDK's `getComposeHash`, what
    /// teeform previews) or `indent4` (`@phala/cloud`'s `getHash`), to show a preview that
    /// differs from the API's hash.
    pub compose_hash_style: String,
    /// The test KMS signs env-encryption keys with another key than the one its KMS info
    /// names (`kms_signer`): teeform must refuse to encrypt to them.
    pub kms_bad_signature: bool,
    /// Names of CVMs that boot another compose than they were sent: their attestation is
    /// consistent, but attests another compose hash.
    pub boot_other_compose: Vec<String>,
    /// Names of CVMs whose attested event log was rewritten: it no longer replays to RTMR3.
    pub corrupt_event_log: Vec<String>,
    /// Names of CVMs whose attestation carries `dcap-qvl`'s real sample TDX quote in
    /// `app_certificates[0].quote` (it verifies against the collateral `/pccs` serves, at
    /// [`pccs::SAMPLE_TIME`], but its RTMR3 is not the simulated event log's).
    pub sample_quote: Vec<String>,
    /// Names of CVMs whose attestation carries that quote with a byte of RTMR3 flipped.
    pub tampered_quote: Vec<String>,
    /// Names of CVMs that booted another OS image than the one planned: their attestation's
    /// `os-image-hash` event and their detail's `os.os_image_hash` both report that image.
    pub boot_other_image: Vec<String>,
    /// The status `GET /_sim/health` answers (for tests of `health:` checks).
    pub health_status: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: None,
            bearer_token: None,
            latency_ms: 0,
            error_rate: 0.0,
            error_after_rate: 0.0,
            hang_rate: 0.0,
            hang_ms: 3_600_000,
            restart_ms: 2000,
            boot_ms: 2000,
            seed: 1,
            chain_rpc: None,
            kms_contract: None,
            chain_id: None,
            fail_boot: Vec::new(),
            nscale_token: None,
            oci_public_key: None,
            oci_page_size: 4,
            catalog_errors: Vec::new(),
            legacy_create: false,
            compose_hash_style: "compact".into(),
            kms_bad_signature: false,
            boot_other_compose: Vec::new(),
            corrupt_event_log: Vec::new(),
            sample_quote: Vec::new(),
            tampered_quote: Vec::new(),
            boot_other_image: Vec::new(),
            health_status: 200,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub total_requests: u64,
    /// `METHOD /path` as requested.
    pub requests: BTreeMap<String, u64>,
    /// `METHOD /route` by the route matched (`GET /api/v1/cvms/{id}`): requests per endpoint.
    pub endpoints: BTreeMap<String, u64>,
    pub injected_errors: u64,
    pub injected_hangs: u64,
}

pub(crate) struct Inner {
    pub world: Mutex<World>,
    pub config: Mutex<SimConfig>,
    pub stats: Mutex<Stats>,
    pub catalogs: Mutex<catalogs::CatalogData>,
    rng: Mutex<rand::rngs::StdRng>,
    data: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<Inner>,
}

impl Sim {
    /// A simulator; with `data`, its world is loaded from and saved to that file.
    pub fn new(config: SimConfig, data: Option<PathBuf>) -> std::io::Result<Sim> {
        let world = match &data {
            Some(p) if p.exists() => serde_json::from_slice(&std::fs::read(p)?)
                .map_err(|e| std::io::Error::other(format!("simulator data {}: {e}", p.display())))?,
            _ => World::new(config.seed),
        };
        let rng = rand::rngs::StdRng::seed_from_u64(config.seed);
        let sim = Sim {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                config: Mutex::new(config),
                stats: Mutex::default(),
                catalogs: Mutex::new(catalogs::CatalogData::seeded()),
                rng: Mutex::new(rng),
                data,
            }),
        };
        sim.configure_chain();
        Ok(sim)
    }

    fn configure_chain(&self) {
        let cfg = self.inner.config.lock().expect("config lock").clone();
        if let (Some(_), Some(contract)) = (&cfg.chain_rpc, &cfg.kms_contract) {
            let chain_id = cfg.chain_id.unwrap_or(31337);
            let mut w = self.inner.world.lock().expect("world lock");
            w.kms.retain(|k| k.chain_id.is_none());
            w.kms.push(world::Kms {
                id: "kms_base_sim".into(),
                slug: "base-sim".into(),
                chain_id: Some(chain_id),
                kms_contract_address: Some(contract.to_ascii_lowercase()),
            });
        }
    }

    /// The simulated Phala API (under `/api/v1`), its `/_sim` controls and the image catalogs.
    pub fn router(&self) -> Router {
        routes::router(self.clone()).merge(catalogs::router(self.clone())).merge(pccs::router(self.clone()))
    }

    /// Serves on `addr` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// Starts serving on 127.0.0.1 (port 0 = any) in the background.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<SimHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async {
            let _ = rx.await;
        }));
        Ok(SimHandle { addr, stop: Some(tx), task: Some(task) })
    }

    /// Writes the world to its data file, if it has one (atomically).
    fn persist(&self, w: &World) {
        let Some(path) = &self.inner.data else { return };
        let tmp = path.with_extension("tmp");
        let ok = serde_json::to_vec(w).map_err(std::io::Error::other).and_then(|bytes| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        });
        if let Err(e) = ok {
            tracing::error!("simulator: cannot save {}: {e}", path.display());
        }
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats.lock().expect("stats lock").clone()
    }

    /// Counts a request: `METHOD /path` as requested, and `METHOD /route` as matched;
    /// returns its number (from 1).
    pub(crate) fn count(&self, key: &str, endpoint: &str) -> u64 {
        let mut s = self.inner.stats.lock().expect("stats lock");
        s.total_requests += 1;
        *s.requests.entry(key.to_string()).or_default() += 1;
        *s.endpoints.entry(endpoint.to_string()).or_default() += 1;
        s.total_requests
    }

    /// The knobs as they are now.
    pub(crate) fn config(&self) -> SimConfig {
        self.inner.config.lock().expect("config lock").clone()
    }

    /// Reads the world.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.inner.world.lock().expect("world lock"))
    }

    /// Changes the world, and saves it when the change succeeds. The lock is held only
    /// while `f` runs (never across a chain call).
    pub(crate) fn change<T, E>(&self, f: impl FnOnce(&mut World) -> Result<T, E>) -> Result<T, E> {
        let mut w = self.inner.world.lock().expect("world lock");
        let out = f(&mut w)?;
        self.persist(&w);
        Ok(out)
    }
}

/// The compose hash the simulated platform boots with (see [`SimConfig::compose_hash_style`]).
pub(crate) fn app_hash(config: &SimConfig, app_compose: &serde_json::Value) -> String {
    match config.compose_hash_style.as_str() {
        "indent4" => crate::compose::hash_indent4(app_compose),
        _ => crate::compose::hash(app_compose),
    }
}

pub struct SimHandle {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    pub fn api_prefix(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
