//! Resolution rules against fake catalogs: pins are used, moved only when asked, and
//! reported when a newer image exists.

use std::sync::{Arc, Mutex};

use super::*;
use crate::manifest::{LoadOptions, load_str};
use crate::providers::nscale::NscaleOs;

const WEB: &str = "services:\n  web:\n    image: nginx:1.27\n";

#[derive(Default)]
struct Fake {
    phala: Mutex<Vec<OsImage>>,
    nscale: Mutex<Vec<NscaleImage>>,
    oci: Mutex<Vec<OciImage>>,
    /// Every call, e.g. `phala Some("id-1")`, `oci ocid1.compartment...`.
    calls: Mutex<Vec<String>>,
    fail: Mutex<Option<CatalogError>>,
}

#[async_trait::async_trait]
impl Catalogs for Fake {
    async fn phala(&self, cvm: Option<&str>) -> Result<Vec<OsImage>, CatalogError> {
        self.calls.lock().unwrap().push(format!("phala {cvm:?}"));
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(self.phala.lock().unwrap().clone())
    }
    async fn nscale(&self, q: &NscaleQuery) -> Result<Vec<NscaleImage>, CatalogError> {
        self.calls.lock().unwrap().push(format!("nscale {} {:?}", q.region, q.statuses));
        Ok(self.nscale.lock().unwrap().clone())
    }
    async fn oci(&self, q: &OciQuery) -> Result<Vec<OciImage>, CatalogError> {
        self.calls.lock().unwrap().push(format!("oci {}", q.compartment));
        Ok(self.oci.lock().unwrap().clone())
    }
}

fn os(name: &str, v: &[u64]) -> OsImage {
    OsImage {
        name: name.into(),
        slug: format!("{name}-slug"),
        os_image_hash: Some(format!("hash-{name}")),
        version: v.to_vec(),
        dev: false,
        current: false,
    }
}

fn nscale_img(id: &str, created: &str) -> NscaleImage {
    NscaleImage {
        id: id.into(),
        name: id.into(),
        created: created.parse().unwrap(),
        architecture: "x86_64".into(),
        virtualization: "virtualized".into(),
        size_gib: 20,
        os: NscaleOs {
            kernel: "linux".into(),
            family: "debian".into(),
            distro: "ubuntu".into(),
            variant: None,
            codename: None,
            version: "24.04".into(),
        },
        gpu: None,
        tags: Default::default(),
        software_versions: Default::default(),
        state: "ready".into(),
    }
}

fn fake() -> Fake {
    let f = Fake::default();
    *f.phala.lock().unwrap() = vec![os("dstack-0.5.4", &[0, 5, 4]), os("dstack-0.5.5", &[0, 5, 5])];
    *f.nscale.lock().unwrap() =
        vec![nscale_img("n-old", "2024-01-01T00:00:00Z"), nscale_img("n-new", "2024-02-01T00:00:00Z")];
    f
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yml"), WEB).unwrap();
        Fx { dir }
    }

    fn config(&self, data: &str) -> Config {
        let yaml = format!(
            "data:\n{data}\ncvms:\n  web:\n    name: web-app\n    compose: web.yml\n    image: ${{data.phala_os_image.os.name}}\n    env:\n      BASE: ${{data.nscale_image.gpu.id}}\noutputs:\n  slug: ${{data.phala_os_image.os.slug}}\n"
        );
        let opts = LoadOptions { vars: vec![], env: Arc::new(|_| None), display_base: None, ..Default::default() };
        match load_str(&self.dir.path().join("teeform.yaml"), yaml, &opts) {
            Ok(c) => c,
            Err(e) => panic!("{}", e.diagnostics.iter().map(|d| d.render(false)).collect::<Vec<_>>().join("\n")),
        }
    }
}

const DATA: &str = "  phala_os_image:\n    os: { cvm: web, version: \"~0.5\" }\n  nscale_image:\n    gpu: { region: r1, os: { distro: ubuntu } }\n";

fn opts(upgrade: Upgrade, check_newer: bool, locked: bool) -> Options {
    Options { upgrade, check_newer, locked, now: "2026-01-01T00:00:00Z".into() }
}

async fn run(
    cfg: &Config,
    lock: &Lockfile,
    f: &Fake,
    ids: &[(&str, &str)],
    o: Options,
) -> Result<Outcome, Vec<DataError>> {
    let ids: BTreeMap<String, String> = ids.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    resolve(cfg, lock, f, &ids, &o).await
}

fn pinned_ids(o: &Outcome) -> Vec<(String, String)> {
    o.lock.pins.iter().map(|(k, p)| (k.clone(), p.id.clone())).collect()
}

#[tokio::test]
async fn pins_then_uses_pins_then_upgrades_only_when_asked() {
    let fx = Fx::new();
    let cfg = fx.config(DATA);
    let f = fake();

    // First run: no lock. The CVM is not in state yet, so the whole catalog is searched.
    let first = run(&cfg, &Lockfile::default(), &f, &[], opts(Upgrade::None, true, false)).await.unwrap();
    assert_eq!(
        pinned_ids(&first),
        [
            ("data.nscale_image.gpu".into(), "n-new".into()),
            ("data.phala_os_image.os".into(), "dstack-0.5.5-slug".into())
        ]
    );
    assert!(first.events.iter().any(|e| matches!(e, Event::CatalogFallback { cvm, .. } if cvm == "web")));
    assert_eq!(first.events.iter().filter(|e| matches!(e, Event::Pinned { previous: None, .. })).count(), 2);
    let mut calls = f.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls, ["nscale r1 [\"ready\"]", "phala None"]);
    let pin = &first.lock.pins["data.phala_os_image.os"];
    assert_eq!((pin.version.as_deref(), pin.hash.as_deref()), (Some("0.5.5"), Some("hash-dstack-0.5.5")));
    assert_eq!(pin.pinned_at, "2026-01-01T00:00:00Z");

    // Newer images appear; a plan without a newer-check touches no catalog and keeps the pins.
    f.phala.lock().unwrap().push(os("dstack-0.5.6", &[0, 5, 6]));
    f.nscale.lock().unwrap().push(nscale_img("n-newest", "2024-03-01T00:00:00Z"));
    f.calls.lock().unwrap().clear();
    let quiet = run(&cfg, &first.lock, &f, &[("web", "id-1")], opts(Upgrade::None, false, true)).await.unwrap();
    assert_eq!(quiet.lock, first.lock);
    assert!(quiet.events.is_empty());
    assert!(f.calls.lock().unwrap().is_empty());

    // With the check, the pins stay and the newer images are reported; the CVM now exists.
    let checked = run(&cfg, &first.lock, &f, &[("web", "id-1")], opts(Upgrade::None, true, true)).await.unwrap();
    assert_eq!(checked.lock, first.lock);
    assert_eq!(checked.values["data.phala_os_image.os"]["name"], "dstack-0.5.5");
    let newer: Vec<(&str, &str, bool)> = checked
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Newer { address, available, newer, .. } => Some((address.as_str(), available.id.as_str(), *newer)),
            _ => None,
        })
        .collect();
    assert_eq!(
        newer,
        [("data.nscale_image.gpu", "n-newest", true), ("data.phala_os_image.os", "dstack-0.5.6-slug", true)]
    );
    assert!(f.calls.lock().unwrap().contains(&"phala Some(\"id-1\")".to_string()));

    // Upgrading one moves that pin only.
    let only = Upgrade::Only(["data.phala_os_image.os".to_string()].into());
    let up = run(&cfg, &first.lock, &f, &[("web", "id-1")], opts(only, false, true)).await.unwrap();
    assert_eq!(
        pinned_ids(&up),
        [
            ("data.nscale_image.gpu".into(), "n-new".into()),
            ("data.phala_os_image.os".into(), "dstack-0.5.6-slug".into())
        ]
    );
    assert!(matches!(&up.events[..], [Event::Pinned { previous: Some(p), .. }] if p.id == "dstack-0.5.5-slug"));

    // Upgrading everything again: the phala pin is already newest and stays byte-for-byte.
    let all = run(&cfg, &up.lock, &f, &[("web", "id-1")], opts(Upgrade::All, false, false)).await.unwrap();
    assert_eq!(all.lock.pins["data.phala_os_image.os"], up.lock.pins["data.phala_os_image.os"]);
    assert_eq!(all.lock.pins["data.nscale_image.gpu"].id, "n-newest");
    assert!(
        all.events.iter().any(|e| matches!(e, Event::Unchanged { address, .. } if address == "data.phala_os_image.os"))
    );
}

#[tokio::test]
async fn a_changed_selector_is_resolved_again_unless_locked() {
    let fx = Fx::new();
    let f = fake();
    let first = run(&fx.config(DATA), &Lockfile::default(), &f, &[], opts(Upgrade::None, false, false)).await.unwrap();
    let changed = fx.config(&DATA.replace("~0.5", "0.5.4"));
    let errs = run(&changed, &first.lock, &f, &[], opts(Upgrade::None, false, true)).await.err().unwrap();
    assert!(
        matches!(&errs[..], [DataError::NotPinned { stale: true, address, .. }] if address == "data.phala_os_image.os")
    );
    let again = run(&changed, &first.lock, &f, &[], opts(Upgrade::None, false, false)).await.unwrap();
    assert_eq!(again.lock.pins["data.phala_os_image.os"].id, "dstack-0.5.4-slug");
    assert_eq!(again.lock.pins["data.nscale_image.gpu"], first.lock.pins["data.nscale_image.gpu"]);
    // A data source removed from the manifest loses its pin.
    let fewer =
        fx.config("  phala_os_image:\n    os: { version: \"~0.5\" }\n  nscale_image:\n    gpu: { region: r1 }\n");
    let mut lock = again.lock.clone();
    lock.pins.insert("data.oci_image.gone".into(), lock.pins["data.nscale_image.gpu"].clone());
    let pruned = run(&fewer, &lock, &f, &[], opts(Upgrade::None, false, false)).await.unwrap();
    assert!(!pruned.lock.pins.contains_key("data.oci_image.gone"));
}

#[tokio::test]
async fn failures_are_reported_per_data_source() {
    let fx = Fx::new();
    let f = fake();
    *f.fail.lock().unwrap() = Some(CatalogError::Setup { message: "no key".into(), hints: vec![] });
    f.nscale.lock().unwrap().push(nscale_img("n-tie", "2024-02-01T00:00:00Z"));
    let errs =
        run(&fx.config(DATA), &Lockfile::default(), &f, &[], opts(Upgrade::None, false, false)).await.err().unwrap();
    assert_eq!(errs.len(), 2);
    let src = fx.config(DATA).source.clone();
    let rendered: Vec<String> = errs.iter().map(|e| e.diagnostic(&src).render(false)).collect();
    let all = rendered.join("\n");
    assert!(all.contains("data.nscale_image.gpu: 2 images are equally new"), "{all}");
    assert!(all.contains("candidate: n-new (version 24.04, created 2024-02-01T00:00:00Z)"), "{all}");
    assert!(all.contains("data.phala_os_image.os: cannot list Phala Cloud images: no key"), "{all}");
    assert!(all.contains("teeform.yaml:3:5") && all.contains("teeform.yaml:5:5"), "points at each data source: {all}");
}

#[test]
fn substitutes_every_place_and_reports_missing_attributes() {
    let fx = Fx::new();
    let mut cfg = fx.config(DATA);
    assert!(cfg.cvms["web"].attrs.image.is_none());
    let values: BTreeMap<String, BTreeMap<String, String>> = [
        (
            "data.phala_os_image.os".to_string(),
            [("name", "dstack-0.5.5"), ("slug", "s")].map(|(k, v)| (k.to_string(), v.to_string())).into(),
        ),
        ("data.nscale_image.gpu".to_string(), [("id".to_string(), "n-1".to_string())].into()),
    ]
    .into();
    substitute(&mut cfg, &values).unwrap();
    let web = &cfg.cvms["web"];
    assert_eq!(web.attrs.image.as_deref(), Some("dstack-0.5.5"));
    assert!(web.data_fields.is_empty());
    assert_eq!(web.env["BASE"].as_literal().as_deref(), Some("n-1"));
    assert_eq!(cfg.outputs["slug"].value.as_literal().as_deref(), Some("s"));

    let mut cfg = fx.config(DATA);
    let mut partial = values.clone();
    partial.get_mut("data.phala_os_image.os").unwrap().remove("slug");
    let errs = substitute(&mut cfg, &partial).unwrap_err();
    assert!(
        matches!(&errs[..], [DataError::MissingAttribute { reference, .. }] if reference == "${data.phala_os_image.os.slug}")
    );
}
