//! Checks of a plan's values before anything is sent: against the catalogs the API serves
//! (instance types, nodes, OS images, KMS instances) and against rules the API enforces
//! (disks only grow). Each finding is a manifest diagnostic at the value, with a did-you-mean.
//!
//! Only values the plan would send are checked (what a create or replacement asks for, what
//! an update changes), so a catalog that drops an image a running CVM still uses does not
//! fail a plan that leaves it alone. Pure: the CLI fetches the catalogs, once each.

use std::collections::BTreeSet;

use super::{Action, Plan};
use crate::manifest::diag::did_you_mean;
use crate::manifest::{Config, CvmConfig, Diagnostic, Kms};
use crate::model::Attr;

/// The attributes checked against a catalog.
pub const CATALOG_ATTRS: &[Attr] = &[Attr::InstanceType, Attr::Node, Attr::Image, Attr::Kms];

/// The catalogs a check needs, as plain names; `None` for those not fetched.
#[derive(Debug, Default)]
pub struct Catalogs {
    /// Instance type ids (`tdx.medium`).
    pub instance_types: Option<Vec<String>>,
    /// Nodes: (id, name).
    pub nodes: Option<Vec<(u64, String)>>,
    /// KMS instances: (name to show, chain id; `None` for the Phala KMS). An empty list
    /// checks nothing (the API listed none).
    pub kms: Option<Vec<(String, Option<u64>)>>,
    /// OS images: (name, slug).
    pub images: Option<Vec<(String, String)>>,
}

/// A value the plan would send: (CVM, attribute).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sent<'a> {
    pub key: &'a str,
    pub attr: Attr,
}

/// The catalog-checked values the plan would send, in plan order.
pub fn sent<'a>(config: &'a Config, plan: &Plan) -> Vec<Sent<'a>> {
    let mut out = Vec::new();
    for c in &plan.changes {
        let Some(cfg) = config.cvms.get(c.address.key()) else { continue };
        for &attr in CATALOG_ATTRS {
            let set = match attr {
                Attr::InstanceType | Attr::Image => cfg.attrs.is_set(attr),
                Attr::Node => cfg.attrs.is_set(attr) || !cfg.nodes.is_empty(),
                // The Phala KMS is always there; an on-chain one may not be offered.
                Attr::Kms => matches!(cfg.kms, Kms::OnChain(_)),
                _ => false,
            };
            let sends = match c.action {
                Action::Create | Action::Replace => set,
                Action::Update => set && c.changes(attr),
                Action::Delete => false,
            };
            let sent = Sent { key: cfg.key.as_str(), attr };
            // A replicated CVM's instances send the same values: checked once.
            if sends && !out.contains(&sent) {
                out.push(sent);
            }
        }
    }
    out
}

/// The attributes whose catalogs the values need.
pub fn needed(sent: &[Sent]) -> BTreeSet<Attr> {
    sent.iter().map(|s| s.attr).collect()
}

/// Every value the catalogs do not offer, as a diagnostic at the value.
pub fn check(config: &Config, sent: &[Sent], catalogs: &Catalogs) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for s in sent {
        let cfg = &config.cvms[s.key];
        let at = |msg: String| {
            Diagnostic::error(&config.source, cfg.spans.get(s.attr.key()).copied().unwrap_or(cfg.span), msg)
        };
        let unknown = |what: &str, value: &str, known: Vec<&str>| -> Diagnostic {
            let mut d =
                at(format!("cvm `{}`: the API offers no {what} `{value}`", cfg.key)).label(format!("unknown {what}"));
            d = match did_you_mean(value, known.iter().copied()) {
                Some(m) => d.hint(format!("did you mean `{m}`?")),
                None => d,
            };
            d.hint(format!("offered: {}", list(&known)))
        };
        match s.attr {
            Attr::InstanceType => {
                if let (Some(t), Some(types)) = (&cfg.attrs.instance_type, &catalogs.instance_types)
                    && !types.contains(t)
                {
                    out.push(unknown("instance type", t, types.iter().map(String::as_str).collect()));
                }
            }
            Attr::Node => {
                let Some(nodes) = &catalogs.nodes else { continue };
                for n in cfg.attrs.node.iter().chain(&cfg.nodes) {
                    let found = match n.parse::<u64>() {
                        Ok(id) => nodes.iter().any(|(i, _)| *i == id),
                        Err(_) => nodes.iter().any(|(_, name)| name == n),
                    };
                    if !found {
                        let mut d = unknown("node", n, nodes.iter().map(|(_, name)| name.as_str()).collect());
                        if cfg.attrs.node.is_none() {
                            d.span = cfg.spans.get("nodes").copied().unwrap_or(d.span);
                        }
                        out.push(d);
                    }
                }
            }
            Attr::Image => {
                if let (Some(i), Some(images)) = (&cfg.attrs.image, &catalogs.images)
                    && !images.iter().any(|(name, slug)| name == i || slug == i)
                {
                    out.push(unknown("OS image", i, images.iter().map(|(name, _)| name.as_str()).collect()));
                }
            }
            Attr::Kms => {
                if let Some(offered) = catalogs.kms.as_ref().filter(|k| !k.is_empty())
                    && let Some(d) = kms(cfg, offered, &at)
                {
                    out.push(d);
                }
            }
            _ => {}
        }
    }
    out
}

fn kms(cfg: &CvmConfig, offered: &[(String, Option<u64>)], at: &dyn Fn(String) -> Diagnostic) -> Option<Diagnostic> {
    let (found, what) = match &cfg.kms {
        Kms::Phala => (offered.iter().any(|(_, c)| c.is_none()), "Phala KMS".to_string()),
        Kms::OnChain(o) => {
            (offered.iter().any(|(_, c)| *c == Some(o.chain_id)), format!("KMS on chain {}", o.chain_id))
        }
    };
    let shown: Vec<String> = offered
        .iter()
        .map(|(name, chain)| match chain {
            None => format!("{name} (phala)"),
            Some(c) => format!("{name} (chain {c})"),
        })
        .collect();
    (!found).then(|| {
        at(format!("cvm `{}`: the API offers no {what}", cfg.key))
            .label("no such KMS")
            .hint(format!("offered: {}", shown.join(", ")))
    })
}

fn list(known: &[&str]) -> String {
    if known.is_empty() { "(none)".into() } else { known.join(", ") }
}

/// Updates that would shrink a disk. UNVERIFIED: the API's rule; Phala's Terraform provider
/// refuses a smaller `disk_size` (disks only grow), and so does teeform, before sending it.
pub fn disk_shrinks(config: &Config, plan: &Plan) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for c in plan.changes.iter().filter(|c| c.action == Action::Update) {
        let Some(a) = c.attributes.iter().find(|a| a.name == Attr::DiskSize) else { continue };
        let (Some(before), Some(after)) = (a.before.as_u64(), a.after.as_u64()) else { continue };
        if after >= before {
            continue;
        }
        let Some(cfg) = config.cvms.get(c.address.key()) else { continue };
        let span = cfg.spans.get(Attr::DiskSize.key()).copied().unwrap_or(cfg.span);
        out.push(
            Diagnostic::error(
                &config.source,
                span,
                format!("cvm `{}`: disk_size cannot shrink from {before} GB to {after} GB", cfg.key),
            )
            .label("smaller than the disk it has")
            .hint("a CVM's disk only grows: the API refuses a smaller one")
            .hint(format!("keep `disk_size: {before}` or more, or remove `disk_size` to leave the disk as it is")),
        );
    }
    out
}
