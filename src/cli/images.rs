//! `teeform images list phala|nscale|oci` (browse a catalog) and `teeform images upgrade`
//! (resolve data sources again and move their pins in the lock file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::VarArgs;
use super::context::{Api, Ctx};
use super::error::{CliError, CliResult, exit};
use super::shared::catalogs::{CliCatalogs, OciSettings};
use super::shared::datasources::{cvm_ids, data_errors, kinds, lock_path, pin_label};
use crate::datasources::{self, Event, Options, Upgrade, select};
use crate::lockfile;
use crate::manifest::data::{
    DataKind, DataSource, DataSpec, GpuFilter, NscaleImageSpec, NscaleOsFilter, OciImageSpec, PhalaImageSpec, Select,
    Variant, VersionConstraint,
};
use crate::manifest::{Config, Span};

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

impl ListCatalog {
    /// The options every catalog takes.
    pub fn common(&self) -> &ListCommon {
        match self {
            ListCatalog::Phala(l) => &l.common,
            ListCatalog::Nscale(l) => &l.common,
            ListCatalog::Oci(l) => &l.common,
        }
    }
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

async fn upgrade(ctx: &Ctx, name: Option<&str>, dry_run: bool, vars: &VarArgs) -> CliResult {
    let cfg = ctx.load_with(vars)?;
    if cfg.data.is_empty() {
        ctx.shell.println("The manifest declares no data sources; there is nothing to upgrade.")?;
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
    let lock = lockfile::read(&path)?;
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
                    ctx.shell.println(&format!("{address}: pinned {} (it had no usable pin)", pin_label(pin)))?;
                } else {
                    ctx.shell.println(&format!("{address}: {from} -> {}", pin_label(pin)))?;
                }
                moved += 1;
            }
            Event::Unchanged { address, pin } => {
                ctx.shell.println(&format!("{address}: unchanged, {}", pin_label(pin)))?
            }
            Event::CatalogFallback { address, cvm } => ctx.shell.note(&format!(
                "{address}: cvm.{cvm} does not exist yet, so the image was chosen from the whole OS image catalog"
            )),
            _ => {}
        }
    }
    let file = path.display();
    if out.lock == lock {
        ctx.shell.err_line(&format!("{file} is up to date."));
    } else if dry_run {
        ctx.shell.err_line(&format!(
            "--dry-run: {file} was not changed ({moved} pin{} would move).",
            if moved == 1 { "" } else { "s" }
        ));
    } else {
        lockfile::write(&path, &out.lock)?;
        ctx.shell.status("Wrote", &format!("{file} ({moved} pin{} moved)", if moved == 1 { "" } else { "s" }));
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

/// Columns padded to their widest cell, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let s: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        format!("{}\n", s.join("  ").trim_end())
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

/// What `images list` asks: a data source made of the filters, the catalogs to ask, and
/// (for Phala) the API connection, kept alive while it is asked.
struct ListQuery {
    source: DataSource,
    common: ListCommon,
    catalogs: CliCatalogs,
    _api: Option<Api>,
}

async fn list(ctx: &Ctx, catalog: ListCatalog) -> CliResult {
    let q = list_query(ctx, catalog).await?;
    let cvm = match &q.source.spec {
        DataSpec::Phala(s) => s.cvm.as_deref(),
        _ => None,
    };
    let kind = q.source.kind;
    let (mut found, total) =
        datasources::candidates(&q.source, &q.catalogs, cvm).await.map_err(|e| super::error::catalog(kind, e))?;
    found.sort_by(|a, b| b.rank.cmp(&a.rank).then_with(|| a.id.cmp(&b.id)));
    if q.common.exactly_one {
        found = vec![select::select(found, Select::ExactlyOne)?];
    }
    if q.common.json {
        let v: Vec<&BTreeMap<String, String>> = found.iter().map(|c| &c.attributes).collect();
        ctx.shell.print_json(&v)?;
        return Ok(exit::OK);
    }
    let (headers, rows) = rows(kind, &found);
    if rows.is_empty() {
        ctx.shell.err_line(&format!("No image matches ({total} listed by the catalog)."));
        return Ok(exit::OK);
    }
    ctx.shell.print(&table(&headers, &rows))?;
    ctx.shell.err_line(&format!(
        "{} of {total} image{} match, newest first.",
        rows.len(),
        if total == 1 { "" } else { "s" }
    ));
    Ok(exit::OK)
}

/// The data source the flags describe, and the catalogs to ask (settings from the manifest
/// when there is one, the flags first).
async fn list_query(ctx: &Ctx, catalog: ListCatalog) -> CliResult<ListQuery> {
    let cfg = manifest_for_list(ctx)?;
    let providers = cfg.as_ref().map(|c| c.providers.clone()).unwrap_or_default();
    let base = cfg.as_ref().map(|c| c.dir.clone()).unwrap_or_else(|| ctx.base_dir());
    let ds =
        |kind, spec| DataSource { kind, name: "list".into(), span: Span::default(), select: Select::MostRecent, spec };
    Ok(match catalog {
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
            let catalogs = CliCatalogs::new(&kinds, Some(api.client.clone()), &providers, &base, None, None);
            let source = ds(DataKind::PhalaOsImage, DataSpec::Phala(spec));
            ListQuery { source, common: a.common, catalogs, _api: Some(api) }
        }
        ListCatalog::Nscale(a) => {
            let kinds = BTreeSet::from([DataKind::NscaleImage]);
            let catalogs = CliCatalogs::new(&kinds, None, &providers, &base, a.endpoint.as_deref(), None);
            let source = ds(DataKind::NscaleImage, DataSpec::Nscale(nscale_spec(&a)));
            ListQuery { source, common: a.common, catalogs, _api: None }
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
            let catalogs = CliCatalogs::new(&kinds, None, &providers, &base, None, Some(settings));
            ListQuery { source: ds(DataKind::OciImage, DataSpec::Oci(spec)), common: a.common, catalogs, _api: None }
        }
    })
}

fn nscale_spec(a: &NscaleList) -> NscaleImageSpec {
    let gpu = if a.no_gpu {
        GpuFilter::None
    } else if a.gpu || a.gpu_vendor.is_some() || !a.gpu_models.is_empty() || a.driver.is_some() {
        GpuFilter::Some { vendor: a.gpu_vendor.clone(), models: a.gpu_models.clone(), driver: a.driver.clone() }
    } else {
        GpuFilter::Any
    };
    NscaleImageSpec {
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
    }
}

/// The table's headers and rows for a catalog's images.
fn rows(kind: DataKind, found: &[select::Candidate]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let get = |c: &select::Candidate, k: &str| c.attributes.get(k).cloned().unwrap_or_default();
    match kind {
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
    }
}

pub async fn run(ctx: &Ctx, cmd: ImagesCommand) -> CliResult {
    match cmd {
        ImagesCommand::List { catalog } => list(ctx, *catalog).await,
        ImagesCommand::Upgrade { name, dry_run, vars } => upgrade(ctx, name.as_deref(), dry_run, &vars).await,
    }
}
