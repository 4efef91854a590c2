//! Images from the Phala, nscale and OCI catalogs: resolving data sources before a plan
//! (pins from `teeform.lock`), `images list` and `images upgrade`. Credentials and endpoints
//! come from here (environment, OCI config file); the rules live in `crate::datasources`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::context::{Api, Ctx};
use super::error::{CliError, CliResult, exit};
use super::{PlanArgs, VarArgs};
use crate::datasources::{self, CatalogError, Catalogs, DataError, Event, Options, Upgrade, select};
use crate::lockfile::{self, Lockfile, Pin};
use crate::manifest::data::{
    DataKind, DataSource, DataSpec, GpuFilter, NscaleImageSpec, NscaleOsFilter, OciImageSpec, PhalaImageSpec,
    Providers, Select, Variant, VersionConstraint,
};
use crate::manifest::{Config, Span};
use crate::providers::PhalaApi;
use crate::providers::nscale::{self, NscaleClient, NscaleImage, NscaleQuery};
use crate::providers::oci::{self, OciClient, OciImage, OciQuery, signer::Signer};
use crate::providers::phala_images::OsImage;
use crate::state::Store;

// ----- arguments ---------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Browse a catalog: the images a data source with these filters would choose from.
    List {
        #[command(subcommand)]
        catalog: Box<ListCatalog>,
    },
    /// Resolve data sources again, ignoring their pins; show what moves and write the lock.
    Upgrade {
        /// One data source: NAME, KIND.NAME or data.KIND.NAME (default: all).
        name: Option<String>,
        /// Show what would change without writing the lock file.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        vars: VarArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ListCatalog {
    /// Phala Cloud OS images (the whole catalog, or those a CVM can move to).
    Phala(PhalaList),
    /// nscale images of a region (ready ones only).
    Nscale(NscaleList),
    /// OCI platform and custom images of a compartment (AVAILABLE ones only).
    Oci(OciList),
}

#[derive(Debug, Clone, Args)]
pub struct ListCommon {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the image `select: exactly_one` would accept (fails unless one matches).
    #[arg(long)]
    pub exactly_one: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PhalaList {
    /// Images this CVM (an id or name in the cloud) can move to.
    #[arg(long, value_name = "ID")]
    pub cvm: Option<String>,
    /// A version constraint, e.g. `~0.5` or `>=0.5.3, <0.6`.
    #[arg(long, value_name = "REQ")]
    pub image_version: Option<String>,
    /// `prod` or `dev`.
    #[arg(long, default_value = "prod", value_parser = ["prod", "dev"])]
    pub variant: String,
    #[command(flatten)]
    pub common: ListCommon,
}

#[derive(Debug, Clone, Args)]
pub struct NscaleList {
    /// The region id.
    #[arg(long)]
    pub region: String,
    /// Organization ids (repeatable); without one, only global images are listed.
    #[arg(long = "organization", value_name = "ID")]
    pub organizations: Vec<String>,
    #[arg(long, value_parser = ["owned", "available"])]
    pub scope: Option<String>,
    #[arg(long, value_parser = ["x86_64", "aarch64"])]
    pub architecture: Option<String>,
    #[arg(long)]
    pub family: Option<String>,
    #[arg(long)]
    pub distro: Option<String>,
    #[arg(long)]
    pub os_variant: Option<String>,
    #[arg(long)]
    pub os_version: Option<String>,
    /// Only images with a GPU driver.
    #[arg(long, conflicts_with = "no_gpu")]
    pub gpu: bool,
    /// Only images without a GPU driver.
    #[arg(long)]
    pub no_gpu: bool,
    #[arg(long)]
    pub gpu_vendor: Option<String>,
    /// A GPU model the image must be certified for (repeatable).
    #[arg(long = "gpu-model", value_name = "MODEL")]
    pub gpu_models: Vec<String>,
    /// The GPU driver version or a prefix of it (`550`).
    #[arg(long)]
    pub driver: Option<String>,
    /// NAME=VALUE (repeatable).
    #[arg(long = "tag", value_name = "NAME=VALUE", value_parser = super::parse_var)]
    pub tags: Vec<(String, String)>,
    /// The Region service URL (default: the manifest's `provider.nscale.endpoint`).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub common: ListCommon,
}

#[derive(Debug, Clone, Args)]
pub struct OciList {
    /// The compartment OCID (default: the tenancy).
    #[arg(long, value_name = "OCID")]
    pub compartment: Option<String>,
    #[arg(long)]
    pub operating_system: Option<String>,
    #[arg(long)]
    pub operating_system_version: Option<String>,
    #[arg(long)]
    pub shape: Option<String>,
    /// A regular expression the whole display name must match.
    #[arg(long, value_name = "REGEX")]
    pub display_name: Option<String>,
    /// The Core Services URL (default: the manifest's `provider.oci.endpoint`, else the region's).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The OCI config file (default: the manifest's, else $OCI_CONFIG_FILE, else ~/.oci/config).
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    #[arg(long)]
    pub profile: Option<String>,
    #[command(flatten)]
    pub common: ListCommon,
}

// ----- catalogs as the CLI reaches them ----------------------------------------------------

fn http_timeout() -> Duration {
    // Checked when the command started (`Ctx::new`), so the fallback is never taken.
    super::context::Settings::from_env().map(|s| s.http_timeout).unwrap_or(Duration::from_secs(30))
}

fn setup(message: impl Into<String>, hints: &[&str]) -> CatalogError {
    CatalogError::Setup { message: message.into(), hints: hints.iter().map(|h| h.to_string()).collect() }
}

/// The nscale token: `NSCALE_TOKEN`, else the Terraform provider's `NSCALE_SERVICE_TOKEN`.
fn nscale_client(endpoint: Option<&str>) -> Result<NscaleClient, CatalogError> {
    let (var, token) = ["NSCALE_TOKEN", "NSCALE_SERVICE_TOKEN"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|t| !t.trim().is_empty()).map(|t| (*k, t)))
        .ok_or_else(|| {
            setup(
                "no nscale token: NSCALE_TOKEN is not set",
                &["export NSCALE_TOKEN=<a service account token> (create one in the nscale console)"],
            )
        })?;
    NscaleClient::new(endpoint.unwrap_or(nscale::DEFAULT_ENDPOINT), token.trim().to_string(), http_timeout())
        .map(|c| c.with_token_source(var))
        .map_err(CatalogError::Api)
}

/// Where settings for OCI come from, most specific first.
struct OciSettings<'a> {
    endpoint: Option<&'a str>,
    config_file: Option<PathBuf>,
    profile: Option<&'a str>,
    region: Option<&'a str>,
}

/// An OCI client and the tenancy (the default compartment).
fn oci_client(s: &OciSettings) -> Result<(OciClient, String), CatalogError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = s
        .config_file
        .clone()
        .or_else(|| std::env::var_os("OCI_CONFIG_FILE").map(PathBuf::from))
        .or_else(|| home.as_ref().map(|h| h.join(".oci/config")))
        .ok_or_else(|| setup("cannot find an OCI config file (HOME is not set)", &["set provider.oci.config_file"]))?;
    let profile = s.profile.unwrap_or("DEFAULT");
    let cfg = oci::config::load(&path, profile, home.as_deref()).map_err(|m| {
        setup(
            format!("OCI config: {m}"),
            &["set provider.oci.config_file and provider.oci.profile, or create ~/.oci/config (`oci setup config`)"],
        )
    })?;
    let pem = std::fs::read_to_string(&cfg.key_file)
        .map_err(|e| setup(format!("cannot read the OCI API key {}: {e}", cfg.key_file.display()), &[]))?;
    let signer = Signer::from_pem(&cfg.tenancy, &cfg.user, &cfg.fingerprint, &pem)
        .map_err(|m| setup(format!("the OCI API key {}: {m}", cfg.key_file.display()), &[]))?;
    let region = s.region.map(str::to_string).or(cfg.region.clone());
    let endpoint = match (s.endpoint, region) {
        (Some(e), _) => e.to_string(),
        (None, Some(r)) => oci::default_endpoint(&r),
        (None, None) => {
            return Err(setup(
                format!("profile [{profile}] of {} sets no region", path.display()),
                &["add `region=...` to the profile, or set provider.oci.region or provider.oci.endpoint"],
            ));
        }
    };
    let client = OciClient::new(&endpoint, signer, http_timeout()).map_err(CatalogError::Api)?;
    Ok((client, cfg.tenancy))
}

/// The catalogs a command uses; each client is set up only if a data source needs it, and a
/// setup failure is reported at the data sources that need it.
struct CliCatalogs {
    phala: Option<Arc<dyn PhalaApi>>,
    nscale: Result<NscaleClient, CatalogError>,
    oci: Result<(OciClient, String), CatalogError>,
}

impl CliCatalogs {
    fn new(
        kinds: &BTreeSet<DataKind>,
        phala: Option<Arc<dyn PhalaApi>>,
        providers: &Providers,
        base: &Path,
        nscale_endpoint: Option<&str>,
        oci_settings: Option<OciSettings>,
    ) -> CliCatalogs {
        let unused = || setup("not configured", &[]);
        let nscale = if kinds.contains(&DataKind::NscaleImage) {
            nscale_client(nscale_endpoint.or(providers.nscale.endpoint.as_deref()))
        } else {
            Err(unused())
        };
        let oci = if kinds.contains(&DataKind::OciImage) {
            let p = &providers.oci;
            let s = oci_settings.unwrap_or(OciSettings {
                endpoint: p.endpoint.as_deref(),
                config_file: p.config_file.as_ref().map(|f| base.join(f)),
                profile: p.profile.as_deref(),
                region: p.region.as_deref(),
            });
            oci_client(&s)
        } else {
            Err(unused())
        };
        CliCatalogs { phala, nscale, oci }
    }
}

#[async_trait::async_trait]
impl Catalogs for CliCatalogs {
    async fn phala(&self, cvm: Option<&str>) -> Result<Vec<OsImage>, CatalogError> {
        let api = self.phala.as_ref().ok_or_else(|| setup("the Phala Cloud API is not configured", &[]))?;
        Ok(api.os_images(cvm).await?)
    }

    async fn nscale(&self, q: &NscaleQuery) -> Result<Vec<NscaleImage>, CatalogError> {
        let c = self.nscale.as_ref().map_err(Clone::clone)?;
        Ok(c.list_images(q).await?)
    }

    async fn oci(&self, q: &OciQuery) -> Result<Vec<OciImage>, CatalogError> {
        let (c, tenancy) = self.oci.as_ref().map_err(Clone::clone)?;
        let mut q = q.clone();
        if q.compartment.is_empty() {
            q.compartment = tenancy.clone();
        }
        Ok(c.list_images(&q).await?)
    }
}

/// A note on stderr, as plans show them.
fn note(ctx: &Ctx, msg: &str) {
    eprintln!("{} {msg}", ctx.ui.err_palette().cyan("note:"));
}

fn data_errors(cfg: &Config, errs: Vec<DataError>) -> CliError {
    let n = errs.len();
    let mut e = CliError::new(format!(
        "{n} data source{} cannot be resolved; nothing was changed",
        if n == 1 { "" } else { "s" }
    ));
    e.diagnostics = errs.iter().map(|d| d.diagnostic(&cfg.source)).collect();
    e
}

fn kinds(cfg: &Config) -> BTreeSet<DataKind> {
    cfg.data.values().map(|d| d.kind).collect()
}

fn pin_label(p: &Pin) -> String {
    let mut s = if p.name == p.id { p.id.clone() } else { format!("{} ({})", p.name, p.id) };
    if let Some(v) = p.version.as_deref().filter(|v| !p.name.contains(*v)) {
        s.push_str(&format!(", version {v}"));
    }
    s
}

fn candidate_label(c: &select::Candidate) -> String {
    let mut s = if c.name == c.id { c.id.clone() } else { format!("{} ({})", c.name, c.id) };
    if let Some(t) = c.created {
        s.push_str(&format!(", created {t}"));
    }
    s
}

fn lock_path(ctx: &Ctx) -> PathBuf {
    lockfile::path_for(ctx.manifest_path())
}

fn read_lock(path: &Path) -> CliResult<Lockfile> {
    lockfile::read(path).map_err(|e| {
        CliError::new(e.to_string()).hint("fix or delete the lock file; `teeform images upgrade` writes a new one")
    })
}

fn write_lock(path: &Path, lock: &Lockfile) -> CliResult<()> {
    lockfile::write(path, lock).map_err(|e| CliError::new(e.to_string()))
}

async fn cvm_ids(cfg: &Config, store: &dyn Store) -> CliResult<BTreeMap<String, String>> {
    let snap = store.snapshot().await?;
    Ok(cfg
        .cvms
        .keys()
        .filter_map(|k| snap.resources.get(&crate::model::Address::cvm(k)).map(|r| (k.clone(), r.ids.id.clone())))
        .collect())
}

/// Resolves the manifest's data sources for plan or apply (pins first) and substitutes their
/// values into `cfg`. New pins are written to the lock file; newer images are only noted.
pub async fn resolve_for_run(
    ctx: &Ctx,
    cfg: &mut Config,
    store: &dyn Store,
    api: &Api,
    args: &PlanArgs,
) -> CliResult<()> {
    if cfg.data.is_empty() || args.destroy {
        return Ok(());
    }
    let path = lock_path(ctx);
    let lock = read_lock(&path)?;
    let ids = cvm_ids(cfg, store).await?;
    let catalogs = CliCatalogs::new(&kinds(cfg), Some(api.client.clone()), &cfg.providers, &cfg.dir, None, None);
    let opts = Options {
        upgrade: Upgrade::None,
        check_newer: args.refresh,
        locked: args.locked,
        now: crate::model::now_rfc3339(),
    };
    let out = datasources::resolve(cfg, &lock, &catalogs, &ids, &opts).await.map_err(|e| data_errors(cfg, e))?;
    let lock_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    for ev in &out.events {
        match ev {
            Event::Pinned { address, pin, previous: None } => {
                ctx.ui.status("Pinned", &format!("{address} to {} in {lock_name}", pin_label(pin)))
            }
            Event::Pinned { address, pin, previous: Some(old) } => ctx.ui.status(
                "Pinned",
                &format!("{address} to {} (its selector changed; was {})", pin_label(pin), pin_label(old)),
            ),
            Event::Newer { address, pinned, available, newer } => {
                let what = if *newer { "newer image available" } else { "the selector now picks another image" };
                let name = address.rsplit('.').next().unwrap_or(address);
                note(
                    ctx,
                    &format!(
                        "{address}: {what}: {}; pinned: {}. `teeform images upgrade {name}` moves the pin",
                        candidate_label(available),
                        pin_label(pinned)
                    ),
                );
            }
            Event::CheckFailed { address, message } => {
                ctx.ui.warn(&format!("{address}: cannot check for a newer image ({message}); the pin is used"))
            }
            Event::CatalogFallback { address, cvm } => note(
                ctx,
                &format!(
                    "{address}: cvm.{cvm} does not exist yet, so the image was chosen from the whole OS image catalog"
                ),
            ),
            Event::Unchanged { .. } => {}
        }
    }
    if out.lock != lock {
        write_lock(&path, &out.lock)?;
    }
    datasources::substitute(cfg, &out.values).map_err(|e| data_errors(cfg, e))
}

// ----- images upgrade ----------------------------------------------------------------------

fn pick_addresses(cfg: &Config, name: &str) -> CliResult<BTreeSet<String>> {
    let want = name.strip_prefix("data.").unwrap_or(name);
    let hits: BTreeSet<String> = cfg
        .data
        .values()
        .filter(|d| d.name == want || format!("{}.{}", d.kind.as_str(), d.name) == want)
        .map(DataSource::address)
        .collect();
    match hits.len() {
        1 => Ok(hits),
        0 => {
            let all: Vec<String> = cfg.data.keys().cloned().collect();
            let mut e = CliError::new(format!("the manifest declares no data source `{name}`"));
            if let Some(s) = crate::manifest::diag::did_you_mean(want, cfg.data.values().map(|d| d.name.as_str())) {
                e = e.hint(format!("did you mean `{s}`?"));
            }
            Err(e.hint(format!("data sources: {}", if all.is_empty() { "none".into() } else { all.join(", ") })))
        }
        _ => Err(CliError::new(format!("`{name}` names several data sources"))
            .hint(format!("write KIND.NAME: {}", hits.into_iter().collect::<Vec<_>>().join(", ")))),
    }
}

pub async fn upgrade(ctx: &Ctx, name: Option<&str>, dry_run: bool, vars: &VarArgs) -> CliResult {
    let cfg = ctx.load(&vars.vars)?;
    if cfg.data.is_empty() {
        println!("The manifest declares no data sources; there is nothing to upgrade.");
        return Ok(exit::OK);
    }
    let upgrade = match name {
        Some(n) => Upgrade::Only(pick_addresses(&cfg, n)?),
        None => Upgrade::All,
    };
    let kinds = kinds(&cfg);
    // State is read only when a Phala data source names a manifest CVM, and only if it exists.
    let needs_state = cfg
        .data
        .values()
        .any(|d| matches!(&d.spec, DataSpec::Phala(s) if s.cvm.as_ref().is_some_and(|c| cfg.cvms.contains_key(c))));
    let mut ids = BTreeMap::new();
    if needs_state && ctx.state_dir().exists() {
        let store = ctx.open_state("images upgrade", Duration::from_secs(5)).await?;
        ids = cvm_ids(&cfg, store.as_ref()).await?;
        store.close().await?;
    }
    let api = if kinds.contains(&DataKind::PhalaOsImage) { Some(ctx.api(&cfg.endpoint).await?) } else { None };
    let catalogs =
        CliCatalogs::new(&kinds, api.as_ref().map(|a| a.client.clone()), &cfg.providers, &cfg.dir, None, None);
    let path = lock_path(ctx);
    let lock = read_lock(&path)?;
    let opts =
        Options { upgrade: upgrade.clone(), check_newer: false, locked: false, now: crate::model::now_rfc3339() };
    let out = datasources::resolve(&cfg, &lock, &catalogs, &ids, &opts).await.map_err(|e| data_errors(&cfg, e))?;
    let mut moved = 0;
    for ev in &out.events {
        match ev {
            Event::Pinned { address, pin, previous } => {
                let from = previous.as_ref().map_or("(no pin)".to_string(), pin_label);
                if upgrade != Upgrade::All && !matches!(&upgrade, Upgrade::Only(s) if s.contains(address)) {
                    // A data source outside the upgrade that had no usable pin.
                    println!("{address}: pinned {} (it had no usable pin)", pin_label(pin));
                } else {
                    println!("{address}: {from} -> {}", pin_label(pin));
                }
                moved += 1;
            }
            Event::Unchanged { address, pin } => println!("{address}: unchanged, {}", pin_label(pin)),
            Event::CatalogFallback { address, cvm } => note(
                ctx,
                &format!(
                    "{address}: cvm.{cvm} does not exist yet, so the image was chosen from the whole OS image catalog"
                ),
            ),
            _ => {}
        }
    }
    let file = path.display();
    if out.lock == lock {
        eprintln!("{file} is up to date.");
    } else if dry_run {
        eprintln!("--dry-run: {file} was not changed ({moved} pin{} would move).", if moved == 1 { "" } else { "s" });
    } else {
        write_lock(&path, &out.lock)?;
        ctx.ui.status("Wrote", &format!("{file} ({moved} pin{} moved)", if moved == 1 { "" } else { "s" }));
    }
    Ok(exit::OK)
}

// ----- images list -------------------------------------------------------------------------

/// Provider settings from the manifest when there is one; defaults otherwise.
fn manifest_for_list(ctx: &Ctx) -> CliResult<Option<Config>> {
    if !ctx.manifest_path().exists() {
        return Ok(None);
    }
    ctx.load(&[]).map(Some)
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

pub async fn list(ctx: &Ctx, catalog: ListCatalog) -> CliResult {
    let cfg = manifest_for_list(ctx)?;
    let providers = cfg.as_ref().map(|c| c.providers.clone()).unwrap_or_default();
    let base = cfg.as_ref().map(|c| c.dir.clone()).unwrap_or_else(|| ctx.base_dir());
    let span = Span::default();
    let ds = |kind, spec, select| DataSource { kind, name: "list".into(), span, select, spec };
    let (source, common, catalogs, api) = match catalog {
        ListCatalog::Phala(a) => {
            let version = a
                .image_version
                .as_deref()
                .map(VersionConstraint::parse)
                .transpose()
                .map_err(|m| CliError::new(format!("--image-version: {m}")))?;
            let variant = if a.variant == "dev" { Variant::Dev } else { Variant::Prod };
            let spec = PhalaImageSpec { cvm: a.cvm.clone(), version, variant, current: false };
            let endpoint = match &cfg {
                Some(c) => c.endpoint.clone(),
                None => crate::manifest::Endpoint::Url(
                    std::env::var("PHALA_CLOUD_API_PREFIX")
                        .unwrap_or_else(|_| crate::manifest::DEFAULT_API_PREFIX.to_string()),
                ),
            };
            let api = ctx.api(&endpoint).await?;
            let kinds = BTreeSet::from([DataKind::PhalaOsImage]);
            let c = CliCatalogs::new(&kinds, Some(api.client.clone()), &providers, &base, None, None);
            (ds(DataKind::PhalaOsImage, DataSpec::Phala(spec), Select::MostRecent), a.common, c, Some(api))
        }
        ListCatalog::Nscale(a) => {
            let gpu = if a.no_gpu {
                GpuFilter::None
            } else if a.gpu || a.gpu_vendor.is_some() || !a.gpu_models.is_empty() || a.driver.is_some() {
                GpuFilter::Some { vendor: a.gpu_vendor.clone(), models: a.gpu_models.clone(), driver: a.driver.clone() }
            } else {
                GpuFilter::Any
            };
            let spec = NscaleImageSpec {
                region: a.region.clone(),
                organizations: a.organizations.clone(),
                scope: a.scope.clone(),
                architecture: a.architecture.clone(),
                os: NscaleOsFilter {
                    family: a.family.clone(),
                    distro: a.distro.clone(),
                    variant: a.os_variant.clone(),
                    codename: None,
                    version: a.os_version.clone(),
                },
                gpu,
                tags: a.tags.iter().cloned().collect(),
            };
            let kinds = BTreeSet::from([DataKind::NscaleImage]);
            let c = CliCatalogs::new(&kinds, None, &providers, &base, a.endpoint.as_deref(), None);
            (ds(DataKind::NscaleImage, DataSpec::Nscale(spec), Select::MostRecent), a.common, c, None)
        }
        ListCatalog::Oci(a) => {
            if let Some(re) = &a.display_name {
                select::display_name_regex(re).map_err(|e| CliError::new(format!("--display-name: {e}")))?;
            }
            let spec = OciImageSpec {
                compartment: a.compartment.clone(),
                operating_system: a.operating_system.clone(),
                operating_system_version: a.operating_system_version.clone(),
                shape: a.shape.clone(),
                display_name: a.display_name.clone(),
            };
            let p = &providers.oci;
            let settings = OciSettings {
                endpoint: a.endpoint.as_deref().or(p.endpoint.as_deref()),
                config_file: a.config_file.clone().or_else(|| p.config_file.as_ref().map(|f| base.join(f))),
                profile: a.profile.as_deref().or(p.profile.as_deref()),
                region: p.region.as_deref(),
            };
            let kinds = BTreeSet::from([DataKind::OciImage]);
            let c = CliCatalogs::new(&kinds, None, &providers, &base, None, Some(settings));
            (ds(DataKind::OciImage, DataSpec::Oci(spec), Select::MostRecent), a.common, c, None)
        }
    };
    let cvm = match &source.spec {
        DataSpec::Phala(s) => s.cvm.as_deref(),
        _ => None,
    };
    let listed = datasources::candidates(&source, &catalogs, cvm).await;
    drop(api);
    let (mut found, total) = listed.map_err(|e| {
        let mut c = CliError::new(format!("cannot list {} images: {e}", source.kind.service()));
        match &e {
            CatalogError::Setup { hints, .. } => c.hints.extend(hints.iter().cloned()),
            CatalogError::Api(a) => c.hints.extend(datasources::api_hints(source.kind, a)),
        }
        c
    })?;
    found.sort_by(|a, b| b.rank.cmp(&a.rank).then_with(|| a.id.cmp(&b.id)));
    if common.exactly_one {
        let one = select::select(found.clone(), Select::ExactlyOne).map_err(|e| match e {
            select::SelectError::NoMatch => CliError::new("no image matches"),
            select::SelectError::Ambiguous(c) | select::SelectError::Tie(c) => {
                let mut err = CliError::new(format!("{} images match, --exactly-one needs one", c.len()));
                err.hints.extend(c.iter().map(|c| format!("candidate: {}", c.describe())));
                err
            }
        })?;
        found = vec![one];
    }
    if common.json {
        let v: Vec<&BTreeMap<String, String>> = found.iter().map(|c| &c.attributes).collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(exit::OK);
    }
    let get = |c: &select::Candidate, k: &str| c.attributes.get(k).cloned().unwrap_or_default();
    let (headers, rows): (Vec<&str>, Vec<Vec<String>>) = match source.kind {
        DataKind::PhalaOsImage => (
            vec!["VERSION", "VARIANT", "NAME", "SLUG", "OS IMAGE HASH"],
            found
                .iter()
                .map(|c| {
                    vec![
                        get(c, "version"),
                        get(c, "variant"),
                        get(c, "name"),
                        get(c, "slug"),
                        short(&get(c, "os_image_hash"), 16),
                    ]
                })
                .collect(),
        ),
        DataKind::NscaleImage => (
            vec!["ID", "NAME", "CREATED", "OS", "GPU", "ARCH"],
            found
                .iter()
                .map(|c| {
                    let os = format!("{} {}", get(c, "os_distro"), get(c, "os_version"));
                    let gpu = match c.attributes.get("gpu_vendor") {
                        Some(v) => format!("{v} {} [{}]", get(c, "gpu_driver"), get(c, "gpu_models")),
                        None => "-".into(),
                    };
                    vec![get(c, "id"), get(c, "name"), get(c, "created"), os, gpu, get(c, "architecture")]
                })
                .collect(),
        ),
        DataKind::OciImage => (
            vec!["ID", "DISPLAY NAME", "OS", "VERSION", "CREATED"],
            found
                .iter()
                .map(|c| {
                    vec![
                        get(c, "id"),
                        get(c, "display_name"),
                        get(c, "operating_system"),
                        get(c, "operating_system_version"),
                        get(c, "created"),
                    ]
                })
                .collect(),
        ),
    };
    if rows.is_empty() {
        eprintln!("No image matches ({total} listed by the catalog).");
        return Ok(exit::OK);
    }
    print_table(&headers, &rows);
    eprintln!("{} of {total} image{} match, newest first.", rows.len(), if total == 1 { "" } else { "s" });
    Ok(exit::OK)
}

pub async fn run(ctx: &Ctx, cmd: ImagesCommand) -> CliResult {
    match cmd {
        ImagesCommand::List { catalog } => list(ctx, *catalog).await,
        ImagesCommand::Upgrade { name, dry_run, vars } => upgrade(ctx, name.as_deref(), dry_run, &vars).await,
    }
}
