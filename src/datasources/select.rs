//! Pure selection: catalog images → the candidates a data source's filters accept → one image
//! by policy. No I/O, so every edge (ties, none, many, non-ready images) is a table test.

use std::collections::BTreeMap;

use crate::manifest::data::{GpuFilter, NscaleImageSpec, OciImageSpec, PhalaImageSpec, Select, Variant};
use crate::providers::nscale::NscaleImage;
use crate::providers::oci::OciImage;
use crate::providers::phala_images::OsImage;

/// What "newest" compares: versions for Phala (no creation time), creation time otherwise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    Version(Vec<u64>),
    Created(jiff::Timestamp),
}

/// An image that passed a data source's filters, in teeform's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Slug (Phala), image id (nscale), OCID (OCI).
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub hash: Option<String>,
    pub created: Option<jiff::Timestamp>,
    pub rank: Rank,
    /// The values `${data.KIND.NAME.ATTR}` resolves to.
    pub attributes: BTreeMap<String, String>,
}

impl Candidate {
    /// One line for lists of candidates in errors and notes.
    pub fn describe(&self) -> String {
        let mut extra = Vec::new();
        if self.name != self.id {
            extra.push(self.name.clone());
        }
        if let Some(v) = &self.version {
            extra.push(format!("version {v}"));
        }
        if let Some(c) = &self.created {
            extra.push(format!("created {c}"));
        }
        if extra.is_empty() { self.id.clone() } else { format!("{} ({})", self.id, extra.join(", ")) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// Nothing matched.
    NoMatch,
    /// `exactly_one`, and several matched (newest first).
    Ambiguous(Vec<Candidate>),
    /// `most_recent`, and several share the newest rank.
    Tie(Vec<Candidate>),
}

/// Chooses one candidate. Ties for newest are errors rather than an arbitrary pick: the same
/// catalog must always give the same answer, and a pick between equals would hide that the
/// filters are too loose.
pub fn select(mut candidates: Vec<Candidate>, policy: Select) -> Result<Candidate, SelectError> {
    candidates.sort_by(|a, b| b.rank.cmp(&a.rank).then_with(|| a.id.cmp(&b.id)));
    match (policy, candidates.len()) {
        (_, 0) => Err(SelectError::NoMatch),
        (_, 1) => Ok(candidates.remove(0)),
        (Select::ExactlyOne, _) => Err(SelectError::Ambiguous(candidates)),
        (Select::MostRecent, _) => {
            let top = candidates[0].rank.clone();
            let tied: Vec<Candidate> = candidates.iter().filter(|c| c.rank == top).cloned().collect();
            if tied.len() > 1 { Err(SelectError::Tie(tied)) } else { Ok(candidates.remove(0)) }
        }
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

// ----- Phala -------------------------------------------------------------------------------

pub fn phala(spec: &PhalaImageSpec, images: &[OsImage]) -> Vec<Candidate> {
    images
        .iter()
        .filter(|i| i.dev == (spec.variant == Variant::Dev))
        .filter(|i| spec.version.as_ref().is_none_or(|c| c.matches(&i.version)))
        .filter(|i| !spec.current || i.current)
        .map(|i| {
            let version = i.version_string();
            let variant = if i.dev { Variant::Dev } else { Variant::Prod };
            let mut attributes = BTreeMap::from([
                ("id".to_string(), i.slug.clone()),
                ("name".to_string(), i.name.clone()),
                ("slug".to_string(), i.slug.clone()),
                ("version".to_string(), version.clone()),
                ("variant".to_string(), variant.as_str().to_string()),
            ]);
            if let Some(h) = &i.os_image_hash {
                attributes.insert("os_image_hash".into(), h.clone());
            }
            Candidate {
                id: i.slug.clone(),
                name: i.name.clone(),
                version: Some(version),
                hash: i.os_image_hash.clone(),
                created: None,
                rank: Rank::Version(i.version.clone()),
                attributes,
            }
        })
        .collect()
}

// ----- nscale ------------------------------------------------------------------------------

/// Whether a driver version matches a wanted version or prefix on a `.` boundary.
fn driver_matches(have: &str, want: &str) -> bool {
    have == want || have.strip_prefix(want).is_some_and(|rest| rest.starts_with('.'))
}

fn gpu_ok(filter: &GpuFilter, img: &NscaleImage) -> bool {
    match (filter, &img.gpu) {
        (GpuFilter::Any, _) => true,
        (GpuFilter::None, gpu) => gpu.is_none(),
        (GpuFilter::Some { .. }, None) => false,
        (GpuFilter::Some { vendor, models, driver }, Some(g)) => {
            vendor.as_deref().is_none_or(|v| eq_ci(v, &g.vendor))
                && models.iter().all(|m| g.models.iter().any(|have| eq_ci(have, m)))
                && driver.as_deref().is_none_or(|d| driver_matches(&g.driver, d))
        }
    }
}

pub fn nscale(spec: &NscaleImageSpec, images: &[NscaleImage]) -> Vec<Candidate> {
    let opt_eq =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have.is_some_and(|h| eq_ci(w, h)));
    images
        .iter()
        // The server is asked for ready images only; check anyway, a server may ignore it.
        .filter(|i| i.state == "ready")
        .filter(|i| opt_eq(&spec.architecture, Some(&i.architecture)))
        .filter(|i| {
            let (f, os) = (&spec.os, &i.os);
            opt_eq(&f.family, Some(&os.family))
                && opt_eq(&f.distro, Some(&os.distro))
                && opt_eq(&f.variant, os.variant.as_deref())
                && opt_eq(&f.codename, os.codename.as_deref())
                // Versions compare exactly: `24.04` is not `24.4`.
                && f.version.as_deref().is_none_or(|v| v == os.version)
        })
        .filter(|i| gpu_ok(&spec.gpu, i))
        .filter(|i| spec.tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)))
        .map(|i| {
            let mut a = BTreeMap::from([
                ("id".to_string(), i.id.clone()),
                ("name".to_string(), i.name.clone()),
                ("created".to_string(), i.created.to_string()),
                ("architecture".to_string(), i.architecture.clone()),
                ("virtualization".to_string(), i.virtualization.clone()),
                ("size_gib".to_string(), i.size_gib.to_string()),
                ("os_kernel".to_string(), i.os.kernel.clone()),
                ("os_family".to_string(), i.os.family.clone()),
                ("os_distro".to_string(), i.os.distro.clone()),
                ("os_version".to_string(), i.os.version.clone()),
            ]);
            let opt = [("os_variant", &i.os.variant), ("os_codename", &i.os.codename)];
            a.extend(opt.into_iter().filter_map(|(k, v)| Some((k.to_string(), v.clone()?))));
            if let Some(g) = &i.gpu {
                a.insert("gpu_vendor".into(), g.vendor.clone());
                a.insert("gpu_driver".into(), g.driver.clone());
                a.insert("gpu_models".into(), g.models.join(","));
            }
            Candidate {
                id: i.id.clone(),
                name: i.name.clone(),
                version: Some(i.os.version.clone()),
                hash: None,
                created: Some(i.created),
                rank: Rank::Created(i.created),
                attributes: a,
            }
        })
        .collect()
}

// ----- OCI ---------------------------------------------------------------------------------

/// The display-name regex, anchored so that it must match the whole name.
pub fn display_name_regex(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{re})$"))
}

pub fn oci(spec: &OciImageSpec, images: &[OciImage]) -> Result<Vec<Candidate>, regex::Error> {
    let re = spec.display_name.as_deref().map(display_name_regex).transpose()?;
    let exact = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    Ok(images
        .iter()
        .filter(|i| i.lifecycle_state.eq_ignore_ascii_case("AVAILABLE"))
        .filter(|i| exact(&spec.operating_system, &i.operating_system))
        .filter(|i| exact(&spec.operating_system_version, &i.operating_system_version))
        .filter(|i| re.as_ref().is_none_or(|r| r.is_match(i.display_name.as_deref().unwrap_or(""))))
        .map(|i| {
            let name = i.display_name.clone().unwrap_or_else(|| i.id.clone());
            let mut a = BTreeMap::from([
                ("id".to_string(), i.id.clone()),
                ("name".to_string(), name.clone()),
                ("display_name".to_string(), name.clone()),
                ("created".to_string(), i.time_created.to_string()),
                ("operating_system".to_string(), i.operating_system.clone()),
                ("operating_system_version".to_string(), i.operating_system_version.clone()),
            ]);
            if let Some(m) = &i.launch_mode {
                a.insert("launch_mode".into(), m.clone());
            }
            if let Some(s) = i.size_in_m_bs {
                a.insert("size_in_mbs".into(), s.to_string());
            }
            if let Some(c) = &i.compartment_id {
                a.insert("compartment_id".into(), c.clone());
            }
            Candidate {
                id: i.id.clone(),
                name,
                version: Some(i.operating_system_version.clone()),
                hash: None,
                created: Some(i.time_created),
                rank: Rank::Created(i.time_created),
                attributes: a,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::data::{NscaleOsFilter, VersionConstraint};
    use crate::providers::nscale::{NscaleGpu, NscaleOs};

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn cand(id: &str, created: &str) -> Candidate {
        Candidate {
            id: id.into(),
            name: id.into(),
            version: None,
            hash: None,
            created: Some(ts(created)),
            rank: Rank::Created(ts(created)),
            attributes: BTreeMap::new(),
        }
    }

    fn ids(r: Result<Candidate, SelectError>) -> Result<String, (String, Vec<String>)> {
        r.map(|c| c.id).map_err(|e| match e {
            SelectError::NoMatch => ("none".into(), vec![]),
            SelectError::Ambiguous(c) => ("ambiguous".into(), c.into_iter().map(|c| c.id).collect()),
            SelectError::Tie(c) => ("tie".into(), c.into_iter().map(|c| c.id).collect()),
        })
    }

    #[test]
    fn selection_edges() {
        let (old, new, new2, mid) = (
            cand("old", "2024-01-01T00:00:00Z"),
            cand("new", "2024-03-01T00:00:00Z"),
            cand("new2", "2024-03-01T00:00:00Z"),
            cand("mid", "2024-02-01T00:00:00+05:00"),
        );
        type Case = (Vec<Candidate>, Select, Result<&'static str, (&'static str, Vec<&'static str>)>);
        let cases: Vec<Case> = vec![
            (vec![], Select::MostRecent, Err(("none", vec![]))),
            (vec![], Select::ExactlyOne, Err(("none", vec![]))),
            (vec![old.clone()], Select::MostRecent, Ok("old")),
            (vec![old.clone()], Select::ExactlyOne, Ok("old")),
            (vec![old.clone(), new.clone(), mid.clone()], Select::MostRecent, Ok("new")),
            (vec![mid.clone(), old.clone()], Select::ExactlyOne, Err(("ambiguous", vec!["mid", "old"]))),
            (vec![new2.clone(), old.clone(), new.clone()], Select::MostRecent, Err(("tie", vec!["new", "new2"]))),
            (vec![new2.clone(), new.clone()], Select::ExactlyOne, Err(("ambiguous", vec!["new", "new2"]))),
        ];
        for (input, policy, want) in cases {
            let want =
                want.map(str::to_string).map_err(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()));
            assert_eq!(ids(select(input.clone(), policy)), want, "{policy:?} over {input:?}");
        }
    }

    fn os_image(name: &str, v: &[u64], dev: bool, current: bool) -> OsImage {
        OsImage {
            name: name.into(),
            slug: format!("{name}-x"),
            os_image_hash: Some("h".into()),
            version: v.to_vec(),
            dev,
            current,
        }
    }

    #[test]
    fn phala_versions_variants_and_current() {
        let images = [
            os_image("dstack-0.4.9", &[0, 4, 9], false, false),
            os_image("dstack-0.5.3", &[0, 5, 3], false, true),
            os_image("dstack-0.5.5", &[0, 5, 5], false, false),
            os_image("dstack-dev-0.5.6", &[0, 5, 6], true, false),
        ];
        let spec = |version: Option<&str>, variant, current| PhalaImageSpec {
            cvm: None,
            version: version.map(|v| VersionConstraint::parse(v).unwrap()),
            variant,
            current,
        };
        let pick = |s: PhalaImageSpec| select(phala(&s, &images), Select::MostRecent).map(|c| c.name);
        assert_eq!(pick(spec(Some("~0.5"), Variant::Prod, false)).unwrap(), "dstack-0.5.5");
        assert_eq!(pick(spec(Some(">=0.4, <0.5.4"), Variant::Prod, false)).unwrap(), "dstack-0.5.3");
        assert_eq!(pick(spec(Some("0.4.9"), Variant::Prod, false)).unwrap(), "dstack-0.4.9");
        assert_eq!(pick(spec(None, Variant::Dev, false)).unwrap(), "dstack-dev-0.5.6");
        assert_eq!(pick(spec(None, Variant::Prod, true)).unwrap(), "dstack-0.5.3");
        assert_eq!(pick(spec(Some("~0.6"), Variant::Prod, false)), Err(SelectError::NoMatch));
        let c = phala(&spec(Some("0.5.5"), Variant::Prod, false), &images).remove(0);
        assert_eq!(c.attributes["slug"], "dstack-0.5.5-x");
        assert_eq!(c.attributes["os_image_hash"], "h");
        assert_eq!(c.attributes["variant"], "prod");
    }

    fn nimg(id: &str, created: &str, state: &str, version: &str, gpu: Option<(&str, &str, &[&str])>) -> NscaleImage {
        NscaleImage {
            id: id.into(),
            name: format!("name-{id}"),
            created: ts(created),
            architecture: "x86_64".into(),
            virtualization: "virtualized".into(),
            size_gib: 20,
            os: NscaleOs {
                kernel: "linux".into(),
                family: "debian".into(),
                distro: "ubuntu".into(),
                variant: Some("server".into()),
                codename: None,
                version: version.into(),
            },
            gpu: gpu.map(|(v, d, m)| NscaleGpu {
                vendor: v.into(),
                driver: d.into(),
                models: m.iter().map(|s| s.to_string()).collect(),
            }),
            tags: [("channel".to_string(), "stable".to_string())].into(),
            software_versions: BTreeMap::new(),
            state: state.into(),
        }
    }

    #[test]
    fn nscale_filters() {
        let images = [
            nimg("plain", "2024-05-01T00:00:00Z", "ready", "24.04", None),
            nimg("gpu-550", "2024-04-01T00:00:00Z", "ready", "24.04", Some(("NVIDIA", "550.54.15", &["H100", "A100"]))),
            nimg("gpu-555", "2024-06-01T00:00:00Z", "ready", "24.04", Some(("NVIDIA", "555.42.02", &["H100"]))),
            nimg("gpu-new-creating", "2024-07-01T00:00:00Z", "creating", "24.04", Some(("NVIDIA", "560.1", &["H100"]))),
            nimg("gpu-2204", "2024-08-01T00:00:00Z", "ready", "22.04", Some(("NVIDIA", "550.1", &["H100"]))),
            nimg("amd", "2024-09-01T00:00:00Z", "ready", "24.04", Some(("AMD", "6.1", &["MI300X"]))),
        ];
        let os = NscaleOsFilter { distro: Some("Ubuntu".into()), version: Some("24.04".into()), ..Default::default() };
        let gpu = |vendor: Option<&str>, models: &[&str], driver: Option<&str>| GpuFilter::Some {
            vendor: vendor.map(String::from),
            models: models.iter().map(|s| s.to_string()).collect(),
            driver: driver.map(String::from),
        };
        type Case<'a> = (GpuFilter, Vec<(&'a str, &'a str)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (GpuFilter::Any, vec![], vec!["amd", "gpu-555", "plain", "gpu-550"]),
            (GpuFilter::None, vec![], vec!["plain"]),
            (gpu(Some("nvidia"), &[], None), vec![], vec!["gpu-555", "gpu-550"]),
            (gpu(None, &["a100"], None), vec![], vec!["gpu-550"]),
            (gpu(None, &["H100", "A100"], None), vec![], vec!["gpu-550"]),
            (gpu(None, &[], Some("550")), vec![], vec!["gpu-550"]),
            (gpu(None, &[], Some("55")), vec![], vec![]),
            (gpu(None, &[], Some("555.42.02")), vec![], vec!["gpu-555"]),
            (GpuFilter::Any, vec![("channel", "stable")], vec!["amd", "gpu-555", "plain", "gpu-550"]),
            (GpuFilter::Any, vec![("channel", "beta")], vec![]),
        ];
        for (gpu, tags, want) in cases {
            let spec = NscaleImageSpec {
                region: "r".into(),
                os: os.clone(),
                gpu: gpu.clone(),
                tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            };
            let mut got = nscale(&spec, &images);
            got.sort_by(|a, b| b.rank.cmp(&a.rank));
            let got: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(got, want, "{gpu:?} {tags:?}");
        }
        // The newest GPU image is still being created: never chosen.
        let spec =
            NscaleImageSpec { region: "r".into(), os, gpu: gpu(Some("NVIDIA"), &["H100"], None), ..Default::default() };
        let c = select(nscale(&spec, &images), Select::MostRecent).unwrap();
        assert_eq!(c.id, "gpu-555");
        assert_eq!(c.attributes["gpu_models"], "H100");
        assert_eq!(c.attributes["os_variant"], "server");
        assert!(!c.attributes.contains_key("os_codename"));
    }

    fn oimg(id: &str, name: &str, created: &str, state: &str) -> OciImage {
        OciImage {
            id: id.into(),
            compartment_id: None,
            display_name: Some(name.into()),
            operating_system: "Oracle Linux".into(),
            operating_system_version: "8".into(),
            lifecycle_state: state.into(),
            time_created: ts(created),
            launch_mode: Some("NATIVE".into()),
            size_in_m_bs: Some(47694),
            base_image_id: None,
        }
    }

    #[test]
    fn oci_regex_is_anchored_and_state_checked() {
        let images = [
            oimg("a", "Oracle-Linux-8.10-2024.09.30-0", "2024-09-30T00:00:00Z", "AVAILABLE"),
            oimg("b", "Oracle-Linux-8.10-Gen2-GPU-2024.10.01-0", "2024-10-01T00:00:00Z", "AVAILABLE"),
            oimg("c", "Oracle-Linux-8.10-2024.11.01-0", "2024-11-01T00:00:00Z", "DISABLED"),
        ];
        let spec = |re: Option<&str>| OciImageSpec { display_name: re.map(String::from), ..Default::default() };
        let got = |re| {
            let mut v: Vec<String> = oci(&spec(re), &images).unwrap().into_iter().map(|c| c.id).collect();
            v.sort();
            v
        };
        assert_eq!(got(None), ["a", "b"]);
        assert_eq!(got(Some(r"Oracle-Linux-8\.10-\d{4}\.\d{2}\.\d{2}-\d+")), ["a"]);
        assert_eq!(got(Some("Oracle-Linux")), Vec::<String>::new(), "the whole name must match");
        assert!(oci(&spec(Some("(")), &images).is_err());
    }
}
