//! The chain: what teeform reads from and sends to an on-chain KMS's contracts, over JSON-RPC
//! with alloy. The DstackApp contract (one per app, its address is the app id) holds the
//! compose hashes allowed to boot; the DstackKms contract deploys new app contracts.
//!
//! Invariants: the only client module that knows EVM types and JSON-RPC; everything it hands
//! out is plain data (hex strings and numbers in [`Receipt`] and [`SignedTx`]). The signer's
//! key never leaves [`Signer`]: it is not printed, logged, or part of any error. RPC URLs are
//! shown only as scheme, host and port ([`redact_url`]), since providers put keys in paths.
//! Transactions are signed here and broadcast separately, so callers can journal a
//! transaction's hash (and its raw bytes, which are public anyway) before it can land.

mod transport;

use std::time::{Duration, Instant};

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder, SendableTx};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent};

sol! {
    /// The parts of dstack's DstackApp teeform uses (selectors and events as in dstack).
    #[sol(rpc)]
    interface IDstackApp {
        function owner() external view returns (address);
        function allowedComposeHashes(bytes32 composeHash) external view returns (bool);
        function addComposeHash(bytes32 composeHash) external;
        event ComposeHashAdded(bytes32 composeHash);
    }

    /// The KMS contract's app factory (the 5-argument form the official SDK calls).
    #[sol(rpc)]
    interface IDstackKms {
        function deployAndRegisterApp(address deployer, bool disableUpgrades, bool allowAnyDevice, bytes32 deviceId, bytes32 composeHash) external returns (address);
        event AppDeployedViaFactory(address indexed appId, address indexed deployer);
    }
}

/// How long one JSON-RPC request may take before the chain counts as unreachable.
const RPC_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot reach the chain at {rpc}: {message}")]
    Unreachable { rpc: String, message: String },
    #[error("the chain at {rpc} answered with an error: {message}")]
    Rpc { rpc: String, message: String },
    #[error("the RPC endpoint {rpc} serves chain {got}, but the KMS is on chain {want}")]
    WrongChain { rpc: String, want: u64, got: u64 },
    #[error("`{0}` is not a valid RPC URL")]
    BadUrl(String),
    #[error("${0} does not hold a valid private key (64 hex characters, with or without 0x)")]
    BadKey(String),
    #[error("`{0}` is not a {1}")]
    BadHex(String, &'static str),
    #[error("transaction {tx} failed on chain (reverted in block {block})")]
    Reverted { tx: String, block: u64 },
    #[error("transaction {tx} was not mined within {secs}s")]
    NotMined { tx: String, secs: u64 },
    #[error("transaction {0} is not known to the chain")]
    UnknownTx(String),
}

pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// A transaction signing key, read from the environment. Shows only its address.
#[derive(Clone)]
pub struct Signer {
    key: PrivateKeySigner,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.address())
    }
}

impl Signer {
    /// Parses a hex private key; `var` names where it came from, for the error.
    pub fn from_hex(value: &str, var: &str) -> Result<Signer> {
        let hex = value.trim().trim_start_matches("0x");
        let bytes: [u8; 32] = alloy::hex::decode(hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ChainError::BadKey(var.to_string()))?;
        let key = PrivateKeySigner::from_bytes(&B256::from(bytes)).map_err(|_| ChainError::BadKey(var.to_string()))?;
        crate::redact::secret(hex);
        Ok(Signer { key })
    }

    /// The signer's address, `0x` and 40 lowercase hex digits.
    pub fn address(&self) -> String {
        format!("{:#x}", self.key.address())
    }
}

/// A signed transaction: its hash, and its raw bytes to broadcast (again) — both public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub hash: String,
    pub raw: String,
}

/// What a mined transaction did, as far as teeform cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub tx: String,
    pub success: bool,
    pub block: u64,
    /// `(contract, compose hash)` for every `ComposeHashAdded` event.
    pub registered: Vec<(String, String)>,
    /// App contracts from `AppDeployedViaFactory` events.
    pub deployed_apps: Vec<String>,
}

impl Receipt {
    pub fn registers(&self, contract: &str, hash: &str) -> bool {
        let (c, h) = (normalize_hex(contract), normalize_hex(hash));
        self.registered.iter().any(|(rc, rh)| normalize_hex(rc) == c && normalize_hex(rh) == h)
    }
}

fn normalize_hex(s: &str) -> String {
    s.trim().trim_start_matches("0x").to_ascii_lowercase()
}

/// `scheme://host[:port]/…` of a URL: enough to say which endpoint, never a key in its path.
pub fn redact_url(url: &str) -> String {
    crate::redact::shown_url(url)
}

/// A 32-byte hash from hex (with or without 0x).
pub fn parse_b256(s: &str) -> Result<B256> {
    let hex = s.trim().trim_start_matches("0x");
    let bytes: [u8; 32] = alloy::hex::decode(hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ChainError::BadHex(s.to_string(), "32-byte hex value"))?;
    Ok(B256::from(bytes))
}

/// A 20-byte address from hex (with or without 0x).
pub fn parse_address(s: &str) -> Result<Address> {
    let hex = s.trim().trim_start_matches("0x");
    let bytes: [u8; 20] = alloy::hex::decode(hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ChainError::BadHex(s.to_string(), "20-byte address"))?;
    Ok(Address::from(bytes))
}

/// `0x` + 40 lowercase hex digits.
pub fn format_address(s: &str) -> Result<String> {
    Ok(format!("{:#x}", parse_address(s)?))
}

/// Calldata of `addComposeHash(hash)`, for a multisig or an offline signer.
pub fn add_compose_hash_calldata(hash: &str) -> Result<String> {
    let call = IDstackApp::addComposeHashCall { composeHash: parse_b256(hash)? };
    Ok(format!("0x{}", alloy::hex::encode(call.abi_encode())))
}

/// A connection to one chain's JSON-RPC endpoint.
#[derive(Clone)]
pub struct Rpc {
    url: url::Url,
    shown: String,
    transport: transport::Transport,
    provider: DynProvider,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rpc({})", self.shown)
    }
}

impl Rpc {
    /// Connects (lazily) to `url`, which is registered as a secret: from here on no message
    /// or log line shows more of it than [`redact_url`] does.
    pub fn new(url: &str) -> Result<Rpc> {
        crate::redact::url(url);
        let shown = redact_url(url);
        let parsed = url::Url::parse(url.trim()).map_err(|_| ChainError::BadUrl(shown.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ChainError::BadUrl(shown));
        }
        let transport = transport::Transport::new(parsed.clone(), &shown, RPC_TIMEOUT)
            .map_err(|message| ChainError::Unreachable { rpc: shown.clone(), message })?;
        let provider = ProviderBuilder::new().connect_client(Self::client(&transport, &parsed)).erased();
        Ok(Rpc { url: parsed, shown, transport, provider })
    }

    fn client(transport: &transport::Transport, url: &url::Url) -> RpcClient {
        RpcClient::new(transport.clone(), alloy::transports::utils::guess_local_url(url.as_str()))
    }

    /// The endpoint as it may be shown.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// An error message with the URL (or any part of it) redacted, whatever quoted it.
    fn clean(&self, e: impl std::fmt::Display) -> String {
        crate::redact::text(&e.to_string()).into_owned()
    }

    /// Runs one request with a timeout, sorting failures into unreachable and refused.
    async fn call<T, E: std::fmt::Display>(&self, f: impl std::future::Future<Output = Result<T, E>>) -> Result<T> {
        match tokio::time::timeout(RPC_TIMEOUT, f).await {
            Err(_) => Err(ChainError::Unreachable {
                rpc: self.shown.clone(),
                message: format!("no answer within {}s", RPC_TIMEOUT.as_secs()),
            }),
            Ok(Err(e)) => {
                let message = self.clean(&e);
                // The transport's own words for "no usable answer" (see `transport`), and the
                // HTTP status errors alloy makes of non-JSON-RPC answers.
                let transport = ["cannot reach", "HTTP error", "no answer"];
                if transport.iter().any(|t| message.contains(t)) {
                    Err(ChainError::Unreachable { rpc: self.shown.clone(), message })
                } else {
                    Err(ChainError::Rpc { rpc: self.shown.clone(), message })
                }
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    pub async fn chain_id(&self) -> Result<u64> {
        self.call(async { self.provider.get_chain_id().await }).await
    }

    /// Fails unless the endpoint serves chain `want`.
    pub async fn check_chain(&self, want: u64) -> Result<()> {
        let got = self.chain_id().await?;
        if got != want {
            return Err(ChainError::WrongChain { rpc: self.shown.clone(), want, got });
        }
        Ok(())
    }

    /// `allowedComposeHashes(hash)` on the app contract (read-only).
    pub async fn is_allowed(&self, contract: &str, hash: &str) -> Result<bool> {
        let app = IDstackApp::new(parse_address(contract)?, &self.provider);
        let hash = parse_b256(hash)?;
        self.call(async { app.allowedComposeHashes(hash).call().await }).await
    }

    /// `owner()` of the app contract.
    pub async fn owner(&self, contract: &str) -> Result<String> {
        let app = IDstackApp::new(parse_address(contract)?, &self.provider);
        let owner = self.call(async { app.owner().call().await }).await?;
        Ok(format!("{owner:#x}"))
    }

    /// Whether an address has code (a contract lives there).
    pub async fn has_code(&self, address: &str) -> Result<bool> {
        let a = parse_address(address)?;
        let code = self.call(async { self.provider.get_code_at(a).await }).await?;
        Ok(!code.is_empty())
    }

    /// Fills (nonce, gas, fees, chain id) and signs a transaction without sending it.
    async fn sign(&self, signer: &Signer, to: Address, input: Vec<u8>) -> Result<SignedTx> {
        let wallet = EthereumWallet::from(signer.key.clone());
        let provider = ProviderBuilder::new().wallet(wallet).connect_client(Self::client(&self.transport, &self.url));
        let tx =
            TransactionRequest::default().with_from(signer.key.address()).with_to(to).with_input(Bytes::from(input));
        let filled = self.call(async { provider.fill(tx).await }).await?;
        let SendableTx::Envelope(env) = filled else {
            return Err(ChainError::Rpc {
                rpc: self.shown.clone(),
                message: "the transaction could not be signed".into(),
            });
        };
        Ok(SignedTx {
            hash: format!("{:#x}", env.tx_hash()),
            raw: format!("0x{}", alloy::hex::encode(env.encoded_2718())),
        })
    }

    /// Signs `addComposeHash(hash)` to the app contract.
    pub async fn sign_add_compose_hash(&self, signer: &Signer, contract: &str, hash: &str) -> Result<SignedTx> {
        let call = IDstackApp::addComposeHashCall { composeHash: parse_b256(hash)? };
        self.sign(signer, parse_address(contract)?, call.abi_encode()).await
    }

    /// Signs `deployAndRegisterApp(signer, false, false, device, hash)` to the KMS contract, the
    /// call `phala deploy` makes for a new app (the signer owns the new app contract).
    pub async fn sign_deploy_app(
        &self,
        signer: &Signer,
        kms_contract: &str,
        device_id: Option<&str>,
        compose_hash: &str,
    ) -> Result<SignedTx> {
        let device = match device_id.filter(|d| !d.is_empty()) {
            Some(d) => parse_b256(d)?,
            None => B256::ZERO,
        };
        let call = IDstackKms::deployAndRegisterAppCall {
            deployer: signer.key.address(),
            disableUpgrades: false,
            allowAnyDevice: device == B256::ZERO,
            deviceId: device,
            composeHash: parse_b256(compose_hash)?,
        };
        self.sign(signer, parse_address(kms_contract)?, call.abi_encode()).await
    }

    /// Sends a signed transaction. Sending one the chain already has is not an error, so a
    /// journaled transaction can be re-sent safely after a crash: it can land only once.
    pub async fn broadcast(&self, tx: &SignedTx) -> Result<()> {
        let raw = alloy::hex::decode(tx.raw.trim_start_matches("0x"))
            .map_err(|_| ChainError::BadHex(tx.hash.clone(), "raw transaction"))?;
        match self.call(async { self.provider.send_raw_transaction(&raw).await.map(|_| ()) }).await {
            Ok(()) => Ok(()),
            Err(ChainError::Rpc { message, .. })
                if ["already known", "nonce too low", "already imported", "known transaction"]
                    .iter()
                    .any(|m| message.to_ascii_lowercase().contains(m)) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The receipt of a mined transaction, `None` while it is pending or unknown.
    pub async fn receipt(&self, tx: &str) -> Result<Option<Receipt>> {
        let hash = parse_b256(tx)?;
        let Some(r) = self.call(async { self.provider.get_transaction_receipt(hash).await }).await? else {
            return Ok(None);
        };
        let mut registered = Vec::new();
        let mut deployed_apps = Vec::new();
        for log in r.logs() {
            if let Ok(ev) = log.log_decode::<IDstackApp::ComposeHashAdded>() {
                registered.push((format!("{:#x}", log.address()), format!("{:x}", ev.inner.data.composeHash)));
            } else if log.topics().first() == Some(&IDstackKms::AppDeployedViaFactory::SIGNATURE_HASH)
                && let Ok(ev) = log.log_decode::<IDstackKms::AppDeployedViaFactory>()
            {
                deployed_apps.push(format!("{:#x}", ev.inner.data.appId));
            }
        }
        Ok(Some(Receipt {
            tx: format!("{hash:#x}"),
            success: r.status(),
            block: r.block_number.unwrap_or_default(),
            registered,
            deployed_apps,
        }))
    }

    /// Whether the chain knows the transaction at all (mined or pending).
    pub async fn knows(&self, tx: &str) -> Result<bool> {
        let hash = parse_b256(tx)?;
        Ok(self.call(async { self.provider.get_transaction_by_hash(hash).await }).await?.is_some())
    }

    /// Waits until the transaction is mined with `confirmations` blocks on top of it
    /// (1 = mined), then returns its receipt; a reverted transaction is an error.
    pub async fn wait_mined(&self, tx: &str, confirmations: u64, timeout: Duration) -> Result<Receipt> {
        let start = Instant::now();
        let poll = Duration::from_millis(if self.url.host_str() == Some("127.0.0.1") { 100 } else { 2000 });
        loop {
            if let Some(r) = self.receipt(tx).await? {
                if !r.success {
                    return Err(ChainError::Reverted { tx: r.tx, block: r.block });
                }
                let head = self.call(async { self.provider.get_block_number().await }).await?;
                if head + 1 >= r.block + confirmations.max(1) {
                    return Ok(r);
                }
            }
            if start.elapsed() >= timeout {
                return Err(ChainError::NotMined { tx: tx.to_string(), secs: timeout.as_secs() });
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calldata_has_the_dstack_selector() {
        let h = "0cb68f46b3fd5076ab84718300feb9de689ed942327269f6b3f5fd091d480572";
        let data = add_compose_hash_calldata(h).unwrap();
        assert_eq!(&data[..10], "0xdfc77223");
        assert_eq!(&data[10..], h);
        assert_eq!(IDstackApp::allowedComposeHashesCall::SELECTOR, [0x2f, 0x66, 0x22, 0xe5]);
        assert_eq!(IDstackKms::deployAndRegisterAppCall::SELECTOR, [0x86, 0x18, 0x16, 0x9d]);
        assert_eq!(
            format!("{:x}", IDstackApp::ComposeHashAdded::SIGNATURE_HASH),
            "fecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af"
        );
    }

    #[test]
    fn urls_are_shown_without_paths_or_keys() {
        let cases = [
            ("https://base-mainnet.g.alchemy.com/v2/SECRETKEY", "https://base-mainnet.g.alchemy.com/…"),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/?key=abc", "http://127.0.0.1:8545/…"),
            ("not a url", "(unparseable URL)"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        // anvil's first well-known development key.
        let k = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let s = Signer::from_hex(k, "PRIVATE_KEY").unwrap();
        assert_eq!(s.address(), "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
        assert!(!format!("{s:?}").contains("ac0974"));
        let e = Signer::from_hex("0x1234", "PRIVATE_KEY").unwrap_err().to_string();
        assert!(e.contains("PRIVATE_KEY") && !e.contains("1234"), "{e}");
    }

    #[test]
    fn hashes_and_addresses_parse_with_or_without_0x() {
        assert!(parse_b256(&"ab".repeat(32)).is_ok());
        assert!(parse_b256(&format!("0x{}", "ab".repeat(32))).is_ok());
        assert!(parse_b256("0x12").is_err());
        assert_eq!(format_address(&"AB".repeat(20)).unwrap(), format!("0x{}", "ab".repeat(20)));
        assert!(parse_address("0xzz").is_err());
    }

    /// Serves `app` on a loopback port; returns its address.
    async fn serve(app: axum::Router) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    }

    #[tokio::test]
    async fn a_hostile_endpoint_gets_no_key_and_costs_no_memory() {
        use axum::http::StatusCode;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let elsewhere = serve(axum::Router::new().fallback(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        }))
        .await;
        let sent = Arc::new(AtomicU64::new(0));
        let counted = sent.clone();
        let to = format!("http://{elsewhere}/v2/SecretRpcKey0123456789abcdef");
        let hostile = serve(
            axum::Router::new()
                .route(
                    "/redirect/{*rest}",
                    axum::routing::post(move || async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }),
                )
                .route(
                    "/endless/{*rest}",
                    axum::routing::post(move || async move {
                        let chunk = axum::body::Bytes::from(vec![b' '; 64 << 10]);
                        let stream = futures::stream::repeat_with(move || {
                            counted.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                            Ok::<_, std::io::Error>(chunk.clone())
                        });
                        axum::body::Body::from_stream(stream)
                    }),
                )
                .route(
                    "/echo/{*rest}",
                    axum::routing::post(|uri: axum::http::Uri| async move {
                        (StatusCode::BAD_GATEWAY, format!("upstream failed for {uri}"))
                    }),
                ),
        )
        .await;
        let key = "SecretRpcKey0123456789abcdef";
        for (path, want) in
            [("redirect", "redirect teeform refuses"), ("endless", "larger than 16 MiB"), ("echo", "HTTP error 502")]
        {
            let rpc = Rpc::new(&format!("http://{hostile}/{path}/v2/{key}?apikey={key}")).unwrap();
            let e = rpc.chain_id().await.unwrap_err().to_string();
            assert!(e.contains(want), "{path}: {e}");
            assert!(!e.contains(key), "{path}: the key is shown: {e}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed to another origin");
        assert!(sent.load(Ordering::SeqCst) < 64 << 20, "the endless answer was read on");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_reported_without_its_path() {
        // Port 1 on loopback: nothing listens there.
        let rpc = Rpc::new("http://127.0.0.1:1/secret-path").unwrap();
        let e = rpc.chain_id().await.unwrap_err();
        assert!(matches!(e, ChainError::Unreachable { .. }), "{e}");
        assert!(!e.to_string().contains("secret-path"), "{e}");
    }
}
