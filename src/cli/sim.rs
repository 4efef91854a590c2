//! `teeform sim serve`: the simulator as a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::context::Ctx;
use super::error::{CliError, CliResult, exit};
use crate::sim::{Sim, SimConfig};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback unless you mean otherwise).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub addr: SocketAddr,
    /// Accept only this API key (default: any key).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Accept this OIDC token as `Authorization: Bearer` (keyless CI deploys); without it and
    /// without --api-key, any token is accepted.
    #[arg(long, value_name = "TOKEN")]
    pub bearer_token: Option<String>,
    /// Added latency per API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of API requests answered with 429/500/502/503.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fraction of API requests carried out and then answered with 502.
    #[arg(long, default_value_t = 0.0)]
    pub error_after_rate: f64,
    /// Fraction of API requests that hang.
    #[arg(long, default_value_t = 0.0)]
    pub hang_rate: f64,
    /// How long a hung request hangs, in milliseconds.
    #[arg(long, default_value_t = 3_600_000)]
    pub hang_ms: u64,
    /// How long a restart (each configuration update) takes, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub restart_ms: u64,
    /// How long a new CVM takes to boot, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub boot_ms: u64,
    /// Seed for injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the simulated cloud in this file across restarts.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// JSON-RPC URL of the chain on-chain KMS apps live on.
    #[arg(long, value_name = "URL")]
    pub chain_rpc: Option<String>,
    /// The KMS contract on that chain.
    #[arg(long, value_name = "0x…", requires = "chain_rpc")]
    pub kms_contract: Option<String>,
    /// The chain id (default 31337 with --chain-rpc).
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// Names of CVMs whose boot fails (repeatable).
    #[arg(long, value_name = "NAME")]
    pub fail_boot: Vec<String>,
    /// nscale: accept only this bearer token (default: any token).
    #[arg(long, value_name = "TOKEN")]
    pub nscale_token: Option<String>,
    /// OCI: verify request signatures against this PEM public key (default: accept any
    /// well-formed, current signature).
    #[arg(long, value_name = "FILE")]
    pub oci_public_key: Option<PathBuf>,
    /// OCI: images per ListImages page at most.
    #[arg(long, default_value_t = 4)]
    pub oci_page_size: usize,
    /// How the simulated platform hashes app-compose: compact (the SDK's getComposeHash) or
    /// indent4 (@phala/cloud's getHash).
    #[arg(long, default_value = "compact", value_parser = ["compact", "indent4"])]
    pub compose_hash_style: String,
}

pub async fn serve(ctx: &Ctx, a: ServeArgs) -> CliResult {
    for (name, rate) in
        [("--error-rate", a.error_rate), ("--error-after-rate", a.error_after_rate), ("--hang-rate", a.hang_rate)]
    {
        if !(0.0..=1.0).contains(&rate) {
            return Err(CliError::new(format!("{name} must be between 0 and 1")));
        }
    }
    let oci_public_key = match &a.oci_public_key {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| CliError::new(format!("cannot read {}: {e}", p.display())))?)
        }
        None => None,
    };
    let cfg = SimConfig {
        api_key: a.api_key,
        bearer_token: a.bearer_token,
        latency_ms: a.latency_ms,
        error_rate: a.error_rate,
        error_after_rate: a.error_after_rate,
        hang_rate: a.hang_rate,
        hang_ms: a.hang_ms,
        restart_ms: a.restart_ms,
        boot_ms: a.boot_ms,
        seed: a.seed,
        chain_rpc: a.chain_rpc,
        kms_contract: a.kms_contract,
        chain_id: a.chain_id,
        fail_boot: a.fail_boot,
        nscale_token: a.nscale_token,
        oci_public_key,
        oci_page_size: a.oci_page_size,
        catalog_errors: Vec::new(),
        legacy_create: false,
        compose_hash_style: a.compose_hash_style,
        ..SimConfig::default()
    };
    let sim = Sim::new(cfg, a.data).map_err(|e| CliError::with_source("cannot start the simulator", e))?;
    let listener = tokio::net::TcpListener::bind(a.addr)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", a.addr)))?;
    let addr = listener.local_addr()?;
    ctx.shell.print(&format!(
        "teeform simulator listening on http://{addr}\nAPI prefix: http://{addr}/api/v1\nstats: http://{addr}/_sim/stats\nnscale region {}: http://{addr}\nOCI: http://{addr}/20160918 (compartment {})\n",
        crate::sim::catalogs::NSCALE_REGION,
        crate::sim::catalogs::OCI_COMPARTMENT
    ))?;
    ctx.shell.status("Serving", "until Ctrl-C");
    let shutdown = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            // No SIGTERM handler (it cannot be installed): Ctrl-C still stops it.
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    sim.serve(listener, shutdown).await.map_err(|e| CliError::with_source("the simulator stopped", e))?;
    Ok(exit::OK)
}
