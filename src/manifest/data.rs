//! Data sources and catalog providers as the manifest declares them: plain data, checked at
//! load time. Resolving them is I/O and lives in `crate::datasources`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::yaml::Span;

/// The kinds of data source, as written under `data:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    PhalaOsImage,
    NscaleImage,
    OciImage,
}

impl DataKind {
    pub const ALL: [DataKind; 3] = [DataKind::PhalaOsImage, DataKind::NscaleImage, DataKind::OciImage];

    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::PhalaOsImage => "phala_os_image",
            DataKind::NscaleImage => "nscale_image",
            DataKind::OciImage => "oci_image",
        }
    }

    pub fn parse(s: &str) -> Option<DataKind> {
        DataKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Attributes `${data.KIND.NAME.ATTR}` may name.
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            DataKind::PhalaOsImage => &["id", "name", "slug", "os_image_hash", "version", "variant"],
            DataKind::NscaleImage => &[
                "id",
                "name",
                "created",
                "architecture",
                "virtualization",
                "size_gib",
                "os_kernel",
                "os_family",
                "os_distro",
                "os_variant",
                "os_codename",
                "os_version",
                "gpu_vendor",
                "gpu_driver",
                "gpu_models",
            ],
            DataKind::OciImage => &[
                "id",
                "name",
                "display_name",
                "created",
                "operating_system",
                "operating_system_version",
                "launch_mode",
                "size_in_mbs",
                "compartment_id",
            ],
        }
    }

    /// The service behind the kind, for messages.
    pub fn service(self) -> &'static str {
        match self {
            DataKind::PhalaOsImage => "Phala Cloud",
            DataKind::NscaleImage => "nscale",
            DataKind::OciImage => "OCI",
        }
    }
}

/// How one image is chosen from the matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The newest: highest version (Phala), latest creation time (nscale, OCI).
    #[default]
    MostRecent,
    /// Exactly one image must match; none or several is an error listing them.
    ExactlyOne,
}

/// One entry under `data:`.
#[derive(Debug, Clone)]
pub struct DataSource {
    pub kind: DataKind,
    pub name: String,
    /// The `NAME:` key, where resolution errors point.
    pub span: Span,
    pub select: Select,
    pub spec: DataSpec,
}

impl DataSource {
    /// `data.KIND.NAME`, the key in `teeform.lock`.
    pub fn address(&self) -> String {
        format!("data.{}.{}", self.kind.as_str(), self.name)
    }

    /// The selector as written (normalised): a pin is used only while this is unchanged.
    pub fn query(&self) -> serde_json::Value {
        let mut v = match &self.spec {
            DataSpec::Phala(s) => serde_json::to_value(s),
            DataSpec::Nscale(s) => serde_json::to_value(s),
            DataSpec::Oci(s) => serde_json::to_value(s),
        }
        .unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, x| !x.is_null());
            o.insert("select".into(), serde_json::to_value(self.select).unwrap_or_default());
        }
        v
    }
}

#[derive(Debug, Clone)]
pub enum DataSpec {
    Phala(PhalaImageSpec),
    Nscale(NscaleImageSpec),
    Oci(OciImageSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    #[default]
    Prod,
    Dev,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Prod => "prod",
            Variant::Dev => "dev",
        }
    }
}

/// A version constraint (`~0.5`, `>=0.5.3, <0.6`, or an exact `0.5.5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConstraint {
    /// As written, for messages and the lock.
    pub raw: String,
    pub req: semver::VersionReq,
}

impl VersionConstraint {
    /// A bare version means exactly that version (semver alone would read `0.5.5` as `^0.5.5`).
    pub fn parse(s: &str) -> Result<VersionConstraint, String> {
        let t = s.trim();
        let bare = !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.');
        let text = if bare { format!("={t}") } else { t.to_string() };
        semver::VersionReq::parse(&text)
            .map(|req| VersionConstraint { raw: t.to_string(), req })
            .map_err(|e| format!("`{t}` is not a version constraint: {e}"))
    }

    /// Whether a version tuple (major, minor, patch[, build]) satisfies the constraint.
    pub fn matches(&self, v: &[u64]) -> bool {
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        self.req.matches(&semver::Version::new(at(0), at(1), at(2)))
    }
}

impl Serialize for VersionConstraint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhalaImageSpec {
    /// A manifest CVM key (its id comes from state), or a CVM id or name in the cloud.
    /// Without it, or before the CVM exists, the whole OS image catalog is searched.
    pub cvm: Option<String>,
    pub version: Option<VersionConstraint>,
    pub variant: Variant,
    /// Only the image the CVM runs now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub current: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NscaleImageSpec {
    /// The region id.
    pub region: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    /// `owned` or `available`.
    pub scope: Option<String>,
    pub architecture: Option<String>,
    pub os: NscaleOsFilter,
    pub gpu: GpuFilter,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NscaleOsFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What a GPU image must offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GpuFilter {
    /// No constraint.
    #[default]
    Any,
    /// `gpu: false`: images without a GPU driver.
    None,
    /// `gpu: true` or a mapping: images with a GPU driver matching every field given.
    Some {
        vendor: Option<String>,
        /// Every model listed must be among the image's certified models.
        models: Vec<String>,
        /// The driver version, or a prefix of it on a `.` boundary (`550` matches `550.54.15`).
        driver: Option<String>,
    },
}

/// As the manifest writes it: absent, `false`, `true`, or the mapping of what was given.
impl Serialize for GpuFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuFilter::Any => s.serialize_none(),
            GpuFilter::None => s.serialize_bool(false),
            GpuFilter::Some { vendor: None, models, driver: None } if models.is_empty() => s.serialize_bool(true),
            GpuFilter::Some { vendor, models, driver } => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                if let Some(v) = vendor {
                    m.serialize_entry("vendor", v)?;
                }
                if !models.is_empty() {
                    m.serialize_entry("models", models)?;
                }
                if let Some(d) = driver {
                    m.serialize_entry("driver", d)?;
                }
                m.end()
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OciImageSpec {
    /// The compartment OCID (default: the tenancy from the OCI config file).
    pub compartment: Option<String>,
    pub operating_system: Option<String>,
    pub operating_system_version: Option<String>,
    pub shape: Option<String>,
    /// A regular expression the whole display name must match (checked by teeform).
    pub display_name: Option<String>,
}

/// `provider:` settings of the image catalogs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Providers {
    pub nscale: NscaleProvider,
    pub oci: OciProvider,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NscaleProvider {
    /// The Region service's base URL.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciProvider {
    /// The Core Services base URL (`/20160918` is added when missing).
    pub endpoint: Option<String>,
    /// Relative to the manifest; default `$OCI_CONFIG_FILE`, else `~/.oci/config`.
    pub config_file: Option<String>,
    /// Default `DEFAULT`.
    pub profile: Option<String>,
    /// Overrides the config file's region.
    pub region: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constraints() {
        let cases: &[(&str, &[u64], bool)] = &[
            ("~0.5", &[0, 5, 5], true),
            ("~0.5", &[0, 5, 0, 2], true),
            ("~0.5", &[0, 6, 0], false),
            (">=0.5.3, <0.6", &[0, 5, 3], true),
            (">=0.5.3, <0.6", &[0, 5, 2], false),
            (">=0.5.3, <0.6", &[0, 6, 0], false),
            ("0.5.5", &[0, 5, 5], true),
            ("0.5.5", &[0, 5, 6], false),
            ("0.5", &[0, 5, 9], true),
            ("=0.4.1", &[0, 4, 1], true),
        ];
        for (req, v, want) in cases {
            let c = VersionConstraint::parse(req).unwrap();
            assert_eq!(c.matches(v), *want, "{req} vs {v:?}");
        }
        assert!(VersionConstraint::parse("newest").is_err());
    }

    #[test]
    fn query_leaves_out_unset_fields() {
        let ds = DataSource {
            kind: DataKind::OciImage,
            name: "base".into(),
            span: Span::default(),
            select: Select::MostRecent,
            spec: DataSpec::Oci(OciImageSpec { operating_system: Some("Oracle Linux".into()), ..Default::default() }),
        };
        assert_eq!(ds.query(), serde_json::json!({"operating_system": "Oracle Linux", "select": "most_recent"}));
        assert_eq!(ds.address(), "data.oci_image.base");
        let gpu = |g: GpuFilter| {
            let spec = NscaleImageSpec { region: "r".into(), gpu: g, ..Default::default() };
            DataSource { kind: DataKind::NscaleImage, spec: DataSpec::Nscale(spec), ..ds.clone() }.query()["gpu"]
                .clone()
        };
        assert_eq!(gpu(GpuFilter::Any), serde_json::Value::Null);
        assert_eq!(gpu(GpuFilter::None), serde_json::json!(false));
        assert_eq!(gpu(GpuFilter::Some { vendor: None, models: vec![], driver: None }), serde_json::json!(true));
        let h100 = GpuFilter::Some { vendor: None, models: vec!["H100".into()], driver: Some("550".into()) };
        assert_eq!(gpu(h100), serde_json::json!({"models": ["H100"], "driver": "550"}));
    }
}
