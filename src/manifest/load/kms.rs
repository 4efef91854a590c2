//! `kms:` of a CVM: `phala`, `base`, `ethereum`, or a mapping for an on-chain KMS (`chain`,
//! `rpc_url`, `contract`, the names of the signer-key and RPC-URL variables, `confirmations`).

use super::super::diag::did_you_mean;
use super::super::yaml::{self, Kind, Node};
use super::super::{Kms, OnChainKms};
use super::values::{Lit, Scalar};
use super::{Loader, STRINGS_ONLY};

/// An on-chain KMS on `chain_id` with the default settings.
fn onchain(chain_id: u64) -> OnChainKms {
    OnChainKms {
        chain_id,
        rpc_url: None,
        contract: None,
        private_key_env: "PRIVATE_KEY".into(),
        rpc_url_env: "ETH_RPC_URL".into(),
        confirmations: 1,
    }
}

impl Loader<'_> {
    /// `kms:` as a name or a mapping, with the mapping's `signer` (the KMS signing key, as
    /// written); `None` when reported. A mapping without `chain` is the Phala KMS when it sets
    /// nothing but `signer`.
    pub(super) fn kms(&mut self, node: &Node) -> Option<(Kms, Option<String>)> {
        if let Kind::Scalar { .. } = node.kind {
            return self.kms_named(node).map(|k| (k, None));
        }
        let fields = self.entries(
            node,
            "kms",
            Some(&["chain", "rpc_url", "contract", "private_key_env", "rpc_url_env", "confirmations", "signer"]),
        );
        let mut k = onchain(0);
        let mut chain_seen = false;
        let mut signer = None;
        let mut onchain_keys = false;
        let mut signer_seen = false;
        for (name, _, v) in fields {
            onchain_keys |= name != "signer" && name != "chain";
            match name {
                "signer" => {
                    signer_seen = true;
                    let s = self.literal_string(v, "kms.signer")?;
                    match crate::verify::kms_key::Signer::parse(&s) {
                        Ok(_) => signer = Some(s),
                        Err(m) => {
                            self.err(v.span, format!("kms.signer: {m}")).set_label("not a KMS signing key");
                        }
                    }
                }
                "chain" => {
                    chain_seen = true;
                    k.chain_id = self.chain_id(v)?;
                }
                "rpc_url" => k.rpc_url = self.opt_literal(v, "kms.rpc_url"),
                "contract" => {
                    let s = self.literal_string(v, "kms.contract")?;
                    let hex = s.trim_start_matches("0x");
                    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        self.err(v.span, "kms.contract must be a 20-byte hex address").set_label("not an address");
                    }
                    k.contract = Some(format!("0x{}", hex.to_ascii_lowercase()));
                }
                "private_key_env" => k.private_key_env = self.literal_string(v, "kms.private_key_env")?,
                "rpc_url_env" => k.rpc_url_env = self.literal_string(v, "kms.rpc_url_env")?,
                "confirmations" => k.confirmations = u64::from(self.number(v, "kms.confirmations", 0, 1000)?),
                _ => {}
            }
        }
        if !chain_seen {
            if signer_seen && !onchain_keys {
                return signer.map(|s| (Kms::Phala, Some(s)));
            }
            self.err(node.span, "an on-chain kms needs `chain:`").hints.push("e.g. `chain: base`".into());
            return None;
        }
        Some((Kms::OnChain(k), signer))
    }

    /// `kms: phala|base|ethereum`.
    fn kms_named(&mut self, node: &Node) -> Option<Kms> {
        let s = self.literal_string(node, "kms")?;
        match s.as_str() {
            "phala" => Some(Kms::Phala),
            "base" => Some(Kms::OnChain(onchain(8453))),
            "ethereum" => Some(Kms::OnChain(onchain(1))),
            other => {
                let hint = did_you_mean(other, ["phala", "base", "ethereum"])
                    .map_or("kms is `phala`, `base`, `ethereum`, or a mapping with `chain`".into(), |s| {
                        format!("did you mean `{s}`?")
                    });
                self.err(node.span, format!("unknown kms `{other}`")).hints.push(hint);
                None
            }
        }
    }

    /// `kms.chain`: `base`, `ethereum`, or a chain id written as a number (`chain: 8453`) or
    /// text (`0x2105`).
    fn chain_id(&mut self, v: &Node) -> Option<u64> {
        let s = match self.scalar(v, "kms.chain", STRINGS_ONLY)? {
            Scalar::Lit(Lit { core: yaml::Core::Int | yaml::Core::Str, text }) => text,
            _ => {
                let found = v.type_name();
                self.err(v.span, format!("kms.chain must be a chain name or id, found {found}"))
                    .set_label("expected `base`, `ethereum` or a number");
                return None;
            }
        };
        match s.as_str() {
            "base" => Some(8453),
            "ethereum" => Some(1),
            n => match parse_u64(n) {
                Some(id) if id > 0 => Some(id),
                _ => {
                    self.err(v.span, format!("unknown chain `{n}`"))
                        .hints
                        .push("use `base`, `ethereum` or a numeric chain id".into());
                    None
                }
            },
        }
    }
}

/// A chain id as written (`8453`, `0x2105`).
pub(super) fn parse_u64(n: &str) -> Option<u64> {
    if let Some(h) = n.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok();
    }
    n.parse::<u64>().ok()
}

/// The environment variables on-chain KMS settings name for the signer key and RPC URL
/// (`private_key_env`, `rpc_url_env`): teeform's credentials too.
pub(super) fn kms_env_names(cvms: Option<&Node>) -> Vec<String> {
    let Some(Kind::Map(cvms)) = cvms.map(|n| &n.kind) else { return Vec::new() };
    let field = |n: &Node, k: &str| match &n.kind {
        Kind::Map(p) => p
            .iter()
            .find(|(key, _)| matches!(&key.kind, Kind::Scalar { text, .. } if text == k))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    cvms.iter()
        .filter_map(|(_, spec)| field(spec, "kms"))
        .flat_map(|kms| [field(&kms, "private_key_env"), field(&kms, "rpc_url_env")])
        .flatten()
        .filter_map(|v| if let Kind::Scalar { text, .. } = v.kind { Some(text) } else { None })
        .collect()
}
