//! The image catalogs as the CLI reaches them: the Phala API, nscale (a bearer token from
//! the environment) and OCI (request signing with a key from the OCI config file). Each
//! client is set up only when a data source needs it; the rules of choosing images live in
//! [`crate::datasources`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::datasources::{CatalogError, Catalogs};
use crate::manifest::data::{DataKind, Providers};
use crate::providers::PhalaApi;
use crate::providers::nscale::{self, NscaleClient, NscaleImage, NscaleQuery};
use crate::providers::oci::{self, OciClient, OciImage, OciQuery, signer::Signer};
use crate::providers::phala_images::OsImage;

fn http_timeout() -> Duration {
    // Checked when the command started (`Ctx::new`), so the fallback is never taken.
    crate::cli::settings::Settings::from_env().map(|s| s.http_timeout).unwrap_or(Duration::from_secs(30))
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
pub struct OciSettings<'a> {
    pub endpoint: Option<&'a str>,
    pub config_file: Option<PathBuf>,
    pub profile: Option<&'a str>,
    pub region: Option<&'a str>,
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
pub struct CliCatalogs {
    phala: Option<Arc<dyn PhalaApi>>,
    nscale: Result<NscaleClient, CatalogError>,
    oci: Result<(OciClient, String), CatalogError>,
}

impl CliCatalogs {
    pub fn new(
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
