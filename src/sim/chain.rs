//! The simulator's own small JSON-RPC client for the chain on-chain-KMS apps live on: whether
//! an app contract allows a compose hash, and whether a transaction registered one. Written
//! here, not taken from teeform's `chain` module: the simulator referees what that module does.

use serde_json::{Value, json};

use super::error::ApiError;

/// `allowedComposeHashes(bytes32)`.
const ALLOWED_COMPOSE_HASHES: &str = "0x2f6622e5";

/// `topic0` of dstack's `ComposeHashAdded(bytes32)`.
const COMPOSE_HASH_ADDED: &str = "0xfecb34306dd9d8b785b54d65489d06afc8822a0893ddacedff40c50a4942d0af";

/// The chain at a JSON-RPC URL (`SimConfig::chain_rpc`).
pub struct Chain<'a> {
    rpc: Option<&'a str>,
}

impl<'a> Chain<'a> {
    /// The chain at `rpc`; with none, questions about it fail (allowance) or answer no
    /// (receipts).
    pub fn at(rpc: Option<&'a str>) -> Chain<'a> {
        Chain { rpc }
    }

    /// Whether the app contract (its address is the app id) allows `hash`. Errors: 500 without
    /// a chain, 502 when the chain cannot be asked.
    pub async fn allows(&self, app_id: &str, hash: &str) -> Result<bool, ApiError> {
        let Some(rpc) = self.rpc else {
            return Err(ApiError::plain(500, "simulator has no chain configured for on-chain KMS"));
        };
        let data = format!("{ALLOWED_COMPOSE_HASHES}{}", hash.trim_start_matches("0x"));
        let to = format!("0x{}", app_id.trim_start_matches("0x"));
        let v = call(rpc, "eth_call", json!([{"to": to, "data": data}, "latest"])).await?;
        let out = v.get("result").and_then(Value::as_str).ok_or_else(|| {
            ApiError::plain(502, format!("chain error: {}", v.get("error").cloned().unwrap_or_default()))
        })?;
        Ok(out.trim_start_matches("0x").chars().any(|c| c != '0'))
    }

    /// Whether transaction `tx` succeeded and registered `hash` on the app contract: its
    /// receipt has a `ComposeHashAdded(hash)` log from that contract (so a Safe's execution
    /// counts too). UNVERIFIED: what exactly Phala Cloud checks for 467 is not documented.
    pub async fn registers(&self, tx: &str, app_id: &str, hash: &str) -> Result<bool, ApiError> {
        let Some(rpc) = self.rpc else {
            return Ok(false);
        };
        let v = call(rpc, "eth_getTransactionReceipt", json!([tx])).await?;
        let Some(r) = v.get("result").filter(|r| r.is_object()) else {
            return Ok(false);
        };
        if r.get("status").and_then(Value::as_str) != Some("0x1") {
            return Ok(false);
        }
        let app = format!("0x{}", app_id.trim_start_matches("0x"));
        let data = format!("0x{}", hash.trim_start_matches("0x"));
        let text = |l: &Value, k: &str| l.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(r.get("logs").and_then(Value::as_array).into_iter().flatten().any(|l| {
            text(l, "address").is_some_and(|a| a.eq_ignore_ascii_case(&app))
                && l.get("topics").and_then(|t| t.get(0)).and_then(Value::as_str) == Some(COMPOSE_HASH_ADDED)
                && text(l, "data").is_some_and(|d| d.eq_ignore_ascii_case(&data))
        }))
    }
}

/// One JSON-RPC request; transport and decoding failures become 502s.
async fn call(rpc: &str, method: &str, params: Value) -> Result<Value, ApiError> {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let resp = reqwest::Client::new()
        .post(rpc)
        .json(&req)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| ApiError::plain(502, format!("cannot reach the chain: {e}")))?;
    resp.json().await.map_err(|e| ApiError::plain(502, format!("bad chain answer: {e}")))
}
