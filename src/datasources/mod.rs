//! Data sources: resolving `data:` entries to images from the Phala, nscale and OCI catalogs,
//! pinning them in `teeform.lock`, and substituting `${data.KIND.NAME.ATTR}` into the
//! [`Config`] before planning, so `plan` stays a pure function of its input.
//!
//! Invariants: a pinned data source whose selector is unchanged resolves to its pin; a pin
//! moves only when a selector changes or on an explicit upgrade. Looking for newer images
//! never changes anything; it only reports. Catalog access goes through [`Catalogs`], so the
//! rules here are tested without HTTP.

pub mod select;

use std::collections::{BTreeMap, BTreeSet};

use crate::lockfile::{Lockfile, Pin};
use crate::manifest::data::{DataKind, DataSource, DataSpec};
use crate::manifest::{Config, Diagnostic, Ref, Source, Span};
use crate::providers::ApiError;
use crate::providers::nscale::{NscaleImage, NscaleQuery};
use crate::providers::oci::{OciImage, OciQuery};
use crate::providers::phala_images::OsImage;
use select::{Candidate, SelectError};

/// A catalog could not be asked: the API said no, or teeform could not set up the client.
#[derive(Debug, Clone)]
pub enum CatalogError {
    Api(ApiError),
    Setup { message: String, hints: Vec<String> },
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogError::Api(e) => write!(f, "{e}"),
            CatalogError::Setup { message, .. } => write!(f, "{message}"),
        }
    }
}

impl From<ApiError> for CatalogError {
    fn from(e: ApiError) -> Self {
        CatalogError::Api(e)
    }
}

/// The three catalogs, as the CLI reaches them (or a test fakes them).
#[async_trait::async_trait]
pub trait Catalogs: Send + Sync {
    /// Phala OS images a CVM can move to (`cvm`: its cloud id), else the whole catalog.
    async fn phala(&self, cvm: Option<&str>) -> Result<Vec<OsImage>, CatalogError>;
    async fn nscale(&self, q: &NscaleQuery) -> Result<Vec<NscaleImage>, CatalogError>;
    /// `q.compartment` empty means "the default compartment" (the tenancy).
    async fn oci(&self, q: &OciQuery) -> Result<Vec<OciImage>, CatalogError>;
}

/// Lists the candidates a data source's filters accept.
pub async fn candidates(
    ds: &DataSource,
    catalogs: &dyn Catalogs,
    cvm_id: Option<&str>,
) -> Result<(Vec<Candidate>, usize), CatalogError> {
    match &ds.spec {
        DataSpec::Phala(s) => {
            let all = catalogs.phala(cvm_id).await?;
            Ok((select::phala(s, &all), all.len()))
        }
        DataSpec::Nscale(s) => {
            let q = NscaleQuery {
                region: s.region.clone(),
                organizations: s.organizations.clone(),
                scope: s.scope.clone(),
                statuses: vec!["ready".into()],
            };
            let all = catalogs.nscale(&q).await?;
            Ok((select::nscale(s, &all), all.len()))
        }
        DataSpec::Oci(s) => {
            let q = OciQuery {
                compartment: s.compartment.clone().unwrap_or_default(),
                operating_system: s.operating_system.clone(),
                operating_system_version: s.operating_system_version.clone(),
                shape: s.shape.clone(),
                display_name: None,
                lifecycle_state: Some("AVAILABLE".into()),
            };
            let all = catalogs.oci(&q).await?;
            let c = select::oci(s, &all).map_err(|e| CatalogError::Setup {
                message: format!("display_name is not a valid regular expression: {e}"),
                hints: vec![],
            })?;
            Ok((c, all.len()))
        }
    }
}

/// Why a data source could not be resolved; shown at the data source in the manifest.
#[derive(Debug, Clone)]
pub enum DataError {
    Catalog {
        address: String,
        span: Span,
        kind: DataKind,
        error: Box<CatalogError>,
    },
    NoMatch {
        address: String,
        span: Span,
        listed: usize,
    },
    Ambiguous {
        address: String,
        span: Span,
        candidates: Vec<Candidate>,
    },
    Tie {
        address: String,
        span: Span,
        candidates: Vec<Candidate>,
    },
    /// `--locked`, and the lock has no usable pin.
    NotPinned {
        address: String,
        span: Span,
        stale: bool,
    },
    /// `${data...}` names an attribute the chosen image lacks.
    MissingAttribute {
        reference: String,
        image: String,
    },
}

fn list(c: &[Candidate]) -> Vec<String> {
    const SHOWN: usize = 10;
    let mut out: Vec<String> = c.iter().take(SHOWN).map(|c| format!("candidate: {}", c.describe())).collect();
    if c.len() > SHOWN {
        out.push(format!("... and {} more", c.len() - SHOWN));
    }
    out
}

impl DataError {
    /// The error as a manifest diagnostic at the data source.
    pub fn diagnostic(&self, src: &std::sync::Arc<Source>) -> Diagnostic {
        match self {
            DataError::Catalog { address, span, kind, error } => {
                let mut d =
                    Diagnostic::error(src, *span, format!("{address}: cannot list {} images: {error}", kind.service()))
                        .label("while resolving this data source");
                match &**error {
                    CatalogError::Setup { hints, .. } => d.hints.extend(hints.iter().cloned()),
                    CatalogError::Api(e) => {
                        d.hints.extend(e.suggestions.iter().cloned());
                        d.hints.extend(api_hints(*kind, e));
                    }
                }
                d
            }
            DataError::NoMatch { address, span, listed } => {
                Diagnostic::error(src, *span, format!("{address}: no image matches"))
                    .label("no match")
                    .hint(format!(
                        "the catalog listed {listed} image{} and none passed every filter",
                        if *listed == 1 { "" } else { "s" }
                    ))
                    .hint(format!("`teeform images list {}` shows what is there", service_arg(self.kind_of())))
            }
            DataError::Ambiguous { address, span, candidates } => {
                let mut d = Diagnostic::error(
                    src,
                    *span,
                    format!("{address}: {} images match, `exactly_one` needs one", candidates.len()),
                )
                .label("ambiguous");
                d.hints.extend(list(candidates));
                d.hints.push("narrow the filters, or use `select: most_recent`".into());
                d
            }
            DataError::Tie { address, span, candidates } => {
                let mut d =
                    Diagnostic::error(src, *span, format!("{address}: {} images are equally new", candidates.len()))
                        .label("tie for newest");
                d.hints.extend(list(candidates));
                d.hints.push("narrow the filters so that one image is the newest".into());
                d
            }
            DataError::NotPinned { address, span, stale } => {
                let why = if *stale { "its selector changed since it was pinned" } else { "it has no pin" };
                Diagnostic::error(src, *span, format!("{address}: {why}, and --locked forbids resolving it now"))
                    .label("not pinned")
                    .hint("run `teeform images upgrade` (or a plan without --locked) and commit the lock file")
            }
            DataError::MissingAttribute { reference, image } => {
                Diagnostic::bare(format!("{reference}: the image {image} has no such value"))
                    .hint("reference another attribute, or narrow the filters to images that have it")
            }
        }
    }

    fn kind_of(&self) -> Option<DataKind> {
        let addr = match self {
            DataError::NoMatch { address, .. } => address,
            _ => return None,
        };
        addr.split('.').nth(1).and_then(DataKind::parse)
    }
}

fn service_arg(kind: Option<DataKind>) -> &'static str {
    match kind {
        Some(DataKind::PhalaOsImage) => "phala",
        Some(DataKind::NscaleImage) => "nscale ...",
        Some(DataKind::OciImage) => "oci ...",
        None => "...",
    }
}

/// What to do next about an API error, per catalog.
pub fn api_hints(kind: DataKind, e: &ApiError) -> Vec<String> {
    use crate::providers::ErrorKind as K;
    let h: &[&str] = match (kind, e.kind) {
        // The client names where its key came from.
        (DataKind::PhalaOsImage, K::Unauthenticated | K::Forbidden) => {
            return vec![e.advice().unwrap_or("check PHALA_CLOUD_API_KEY").to_string()];
        }
        (DataKind::PhalaOsImage, K::NotFound) => {
            &["`cvm:` names a CVM in the manifest (once it exists) or a CVM id or name in the cloud"]
        }
        (DataKind::NscaleImage, K::Unauthenticated) => match e.advice() {
            Some(h) => return vec![h.to_string()],
            None => &["check NSCALE_TOKEN (a service account token; they expire after 90 days by default)"],
        },
        (DataKind::NscaleImage, K::Forbidden) => {
            &["the token's service account lacks access to this region or organization"]
        }
        (DataKind::NscaleImage, K::NotFound) => &["check `region:` (a region id)"],
        (DataKind::OciImage, K::Unauthenticated | K::Forbidden) => &[
            "check the OCI config file's user, tenancy, fingerprint and key_file: the key must be the one uploaded for that fingerprint",
            "OCI also refuses requests whose Date is more than 5 minutes off: check this machine's clock",
        ],
        (DataKind::OciImage, K::NotFound) => &["check `compartment:` (an OCID this user may read)"],
        (_, K::RateLimited) => &["the catalog is throttling requests; try again shortly"],
        (_, K::Network | K::Timeout) => &["check the provider's `endpoint:` and your network"],
        _ => &[],
    };
    h.iter().map(|s| s.to_string()).collect()
}

/// Which data sources to resolve afresh, ignoring their pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    None,
    All,
    Only(BTreeSet<String>),
}

impl Upgrade {
    fn covers(&self, address: &str) -> bool {
        match self {
            Upgrade::None => false,
            Upgrade::All => true,
            Upgrade::Only(s) => s.contains(address),
        }
    }
}

pub struct Options {
    pub upgrade: Upgrade,
    /// Ask the catalogs whether a pinned data source would now resolve to another image.
    pub check_newer: bool,
    /// Fail instead of pinning a data source that has no usable pin.
    pub locked: bool,
    /// RFC 3339, recorded in new pins.
    pub now: String,
}

/// What happened to one data source, for the CLI to report.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new pin: the data source had none, its selector changed, or an upgrade moved it.
    Pinned { address: String, pin: Pin, previous: Option<Pin> },
    /// Upgrade asked for, and the selector still picks the pinned image.
    Unchanged { address: String, pin: Pin },
    /// The pin is kept, but the selector would now pick another image.
    Newer { address: String, pinned: Pin, available: Candidate, newer: bool },
    /// The pin is kept; looking for a newer image failed.
    CheckFailed { address: String, message: String },
    /// `cvm:` names a manifest CVM that does not exist yet: the whole catalog was searched.
    CatalogFallback { address: String, cvm: String },
}

pub struct Outcome {
    /// Attribute values by data source address.
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// The lock after resolution (pins of data sources no longer declared are dropped).
    pub lock: Lockfile,
    pub events: Vec<Event>,
}

fn pin_of(c: &Candidate, query: serde_json::Value, now: &str) -> Pin {
    Pin {
        query,
        id: c.id.clone(),
        name: c.name.clone(),
        version: c.version.clone(),
        hash: c.hash.clone(),
        created: c.created.map(|t| t.to_string()),
        pinned_at: now.to_string(),
        attributes: c.attributes.clone(),
    }
}

/// The cloud id a Phala data source asks about: a manifest CVM's id from state, or `cvm:` as
/// written when it is not a manifest key. `Err` when it names a manifest CVM not yet created.
fn phala_cvm<'a>(
    ds: &'a DataSource,
    cfg: &Config,
    cvm_ids: &'a BTreeMap<String, String>,
) -> Result<Option<&'a str>, String> {
    let DataSpec::Phala(s) = &ds.spec else {
        return Ok(None);
    };
    match &s.cvm {
        None => Ok(None),
        Some(key) if cfg.cvms.contains_key(key) => cvm_ids.get(key).map(|id| Some(id.as_str())).ok_or(key.clone()),
        Some(id) => Ok(Some(id.as_str())),
    }
}

async fn resolve_one(
    ds: &DataSource,
    cfg: &Config,
    lock: &Lockfile,
    catalogs: &dyn Catalogs,
    cvm_ids: &BTreeMap<String, String>,
    opts: &Options,
) -> Result<(Pin, Vec<Event>), DataError> {
    let address = ds.address();
    let query = ds.query();
    let mut events = Vec::new();
    let (cvm, fallback) = match phala_cvm(ds, cfg, cvm_ids) {
        Ok(c) => (c, None),
        Err(key) => (None, Some(Event::CatalogFallback { address: address.clone(), cvm: key })),
    };
    let existing = lock.pins.get(&address);
    let usable = existing.filter(|p| p.query == query);
    let upgrading = opts.upgrade.covers(&address);
    if let (Some(pin), false) = (usable, upgrading) {
        if opts.check_newer {
            events.extend(fallback);
            match candidates(ds, catalogs, cvm).await {
                Ok((c, _)) => match select::select(c, ds.select) {
                    Ok(best) if best.id != pin.id => {
                        let newer = is_newer(&best, pin);
                        events.push(Event::Newer { address, pinned: pin.clone(), available: best, newer });
                    }
                    Ok(_) => {}
                    Err(e) => events.push(Event::CheckFailed { address, message: select_message(&e) }),
                },
                Err(e) => events.push(Event::CheckFailed { address, message: e.to_string() }),
            }
        }
        return Ok((pin.clone(), events));
    }
    if opts.locked && !upgrading {
        return Err(DataError::NotPinned { address, span: ds.span, stale: existing.is_some() });
    }
    events.extend(fallback);
    let catalog_err =
        |error| DataError::Catalog { address: address.clone(), span: ds.span, kind: ds.kind, error: Box::new(error) };
    let (found, listed) = candidates(ds, catalogs, cvm).await.map_err(catalog_err)?;
    let best = select::select(found, ds.select).map_err(|e| match e {
        SelectError::NoMatch => DataError::NoMatch { address: address.clone(), span: ds.span, listed },
        SelectError::Ambiguous(candidates) => {
            DataError::Ambiguous { address: address.clone(), span: ds.span, candidates }
        }
        SelectError::Tie(candidates) => DataError::Tie { address: address.clone(), span: ds.span, candidates },
    })?;
    match usable {
        // An upgrade that finds the pinned image keeps the pin as it is (no churn in the file).
        Some(pin) if pin.id == best.id => {
            events.push(Event::Unchanged { address, pin: pin.clone() });
            Ok((pin.clone(), events))
        }
        _ => {
            let pin = pin_of(&best, query, &opts.now);
            events.push(Event::Pinned { address, pin: pin.clone(), previous: existing.cloned() });
            Ok((pin, events))
        }
    }
}

/// Whether a candidate is newer than a pin (by creation time, else by version).
fn is_newer(c: &Candidate, pin: &Pin) -> bool {
    if let (Some(a), Some(b)) = (c.created, pin.created.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok())) {
        return a > b;
    }
    let parse = |v: &str| v.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    match (&c.version, &pin.version) {
        (Some(a), Some(b)) => parse(a) > parse(b),
        _ => true,
    }
}

fn select_message(e: &SelectError) -> String {
    match e {
        SelectError::NoMatch => "no image matches the selector any more".into(),
        SelectError::Ambiguous(c) => format!("{} images match, `exactly_one` needs one", c.len()),
        SelectError::Tie(c) => format!("{} images are equally new", c.len()),
    }
}

/// Resolves every data source (concurrently); reports every failure at once.
pub async fn resolve(
    cfg: &Config,
    lock: &Lockfile,
    catalogs: &dyn Catalogs,
    cvm_ids: &BTreeMap<String, String>,
    opts: &Options,
) -> Result<Outcome, Vec<DataError>> {
    let results =
        futures::future::join_all(cfg.data.values().map(|ds| resolve_one(ds, cfg, lock, catalogs, cvm_ids, opts)))
            .await;
    let mut out = Outcome {
        values: BTreeMap::new(),
        lock: Lockfile { version: lock.version, pins: BTreeMap::new() },
        events: vec![],
    };
    let mut errors = Vec::new();
    for (ds, r) in cfg.data.values().zip(results) {
        match r {
            Ok((pin, events)) => {
                out.values.insert(ds.address(), pin.attributes.clone());
                out.lock.pins.insert(ds.address(), pin);
                out.events.extend(events);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Replaces `${data...}` references in env values, outputs and data-fed fields (`image`) with
/// the resolved values. Afterwards the config holds no data references.
pub fn substitute(cfg: &mut Config, values: &BTreeMap<String, BTreeMap<String, String>>) -> Result<(), Vec<DataError>> {
    let mut errors = Vec::new();
    let mut sub = |t: &crate::manifest::Template| {
        t.substitute(|r| match r {
            Ref::Data { source, name, attr } => {
                let image = values.get(&format!("data.{source}.{name}"))?;
                match image.get(attr) {
                    Some(v) => Some(v.clone()),
                    None => {
                        errors.push(DataError::MissingAttribute {
                            reference: r.to_string(),
                            image: image.get("id").cloned().unwrap_or_default(),
                        });
                        None
                    }
                }
            }
            _ => None,
        })
    };
    for c in cfg.cvms.values_mut() {
        for t in c.env.values_mut() {
            *t = sub(t);
        }
        for (field, t) in std::mem::take(&mut c.data_fields) {
            let t = sub(&t);
            match (field.as_str(), t.as_literal()) {
                ("image", Some(v)) => c.attrs.image = Some(v),
                _ => {
                    c.data_fields.insert(field, t);
                }
            }
        }
    }
    for o in cfg.outputs.values_mut() {
        o.value = sub(&o.value);
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests;
