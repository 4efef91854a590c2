//! Reading `data:` and the catalog providers (`provider.nscale`, `provider.oci`), and
//! checking `${data.KIND.NAME.ATTR}` references where they are written.

use std::collections::{BTreeMap, BTreeSet};

use super::super::data::{
    DataKind, DataSource, DataSpec, GpuFilter, NscaleImageSpec, NscaleOsFilter, NscaleProvider, OciImageSpec,
    OciProvider, PhalaImageSpec, Providers, Select, Variant, VersionConstraint,
};
use super::super::diag::did_you_mean;
use super::super::expr::Ref;
use super::super::yaml::{Kind, Node, Span};
use super::{Allow, Loader};
use crate::manifest::CvmConfig;

/// What the loader learns from `data:` and `provider:` beyond the core manifest.
#[derive(Default)]
pub(super) struct DataState {
    pub providers: Providers,
    /// Every data source declared (even one with errors), so references are checked once.
    pub declared: BTreeSet<(DataKind, String)>,
}

const PHALA_KEYS: &[&str] = &["cvm", "version", "variant", "current", "select"];
const NSCALE_KEYS: &[&str] = &["region", "organization", "scope", "architecture", "os", "gpu", "tags", "select"];
const OCI_KEYS: &[&str] =
    &["compartment", "operating_system", "operating_system_version", "shape", "display_name", "select"];

impl Loader<'_> {
    pub(super) fn data_sources(&mut self, node: &Node) -> BTreeMap<String, DataSource> {
        let mut out = BTreeMap::new();
        let kinds: Vec<&str> = DataKind::ALL.iter().map(|k| k.as_str()).collect();
        for (kind_name, knode, sources) in self.entries(node, "data", None) {
            let Some(kind) = DataKind::parse(kind_name) else {
                let hint = match did_you_mean(kind_name, kinds.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("data sources are {}", kinds.join(", ")),
                };
                self.err(knode.span, format!("unknown data source kind `{kind_name}`"))
                    .set_label("unknown kind")
                    .add_hint(hint);
                continue;
            };
            for (name, nnode, spec) in self.entries(sources, &format!("data.{kind_name}"), None) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    self.err(nnode.span, format!("`{name}` is not a valid data source name"))
                        .add_hint("use letters, digits, `-` and `_`");
                    continue;
                }
                self.data.declared.insert((kind, name.to_string()));
                if let Some(ds) = self.data_source(kind, name, nnode.span, spec) {
                    out.insert(ds.address(), ds);
                }
            }
        }
        out
    }

    fn data_source(&mut self, kind: DataKind, name: &str, span: Span, spec: &Node) -> Option<DataSource> {
        let what = format!("data.{}.{name}", kind.as_str());
        let allowed = match kind {
            DataKind::PhalaOsImage => PHALA_KEYS,
            DataKind::NscaleImage => NSCALE_KEYS,
            DataKind::OciImage => OCI_KEYS,
        };
        let fields = self.entries(spec, &what, Some(allowed));
        // Nothing under the name is `{}` (no filters), not a data source that vanishes.
        if !matches!(spec.kind, Kind::Map(_)) && !spec.is_null() {
            return None;
        }
        let mut select = Select::MostRecent;
        let mut ok = true;
        let before = self.diags.len();
        for (k, _, v) in &fields {
            if *k == "select" {
                match self.text(v, "select").as_deref() {
                    Some("most_recent") => select = Select::MostRecent,
                    Some("exactly_one") => select = Select::ExactlyOne,
                    Some(other) => {
                        self.err(v.span, format!("unknown select `{other}`"))
                            .set_label("unknown policy")
                            .add_hint("select is `most_recent` (the newest match) or `exactly_one` (fail unless exactly one matches)");
                    }
                    None => {}
                }
            }
        }
        let spec = match kind {
            DataKind::PhalaOsImage => DataSpec::Phala(self.phala_spec(&fields)),
            DataKind::NscaleImage => match self.nscale_spec(&fields) {
                Some(s) => DataSpec::Nscale(s),
                None => {
                    self.err(span, format!("{what} needs `region:` (the nscale region id)")).set_label("no region");
                    ok = false;
                    DataSpec::Nscale(NscaleImageSpec::default())
                }
            },
            DataKind::OciImage => DataSpec::Oci(self.oci_spec(&fields)),
        };
        ok &= !self.diags[before..].iter().any(|d| d.is_error());
        ok.then(|| DataSource { kind, name: name.to_string(), span, select, spec })
    }

    fn phala_spec(&mut self, fields: &[(&str, &Node, &Node)]) -> PhalaImageSpec {
        let mut s = PhalaImageSpec { cvm: None, version: None, variant: Variant::Prod, current: false };
        for (k, _, v) in fields {
            match *k {
                "cvm" => s.cvm = self.text(v, "cvm"),
                "version" => {
                    if let Some(t) = self.text(v, "version") {
                        match VersionConstraint::parse(&t) {
                            Ok(c) => s.version = Some(c),
                            Err(msg) => {
                                self.err(v.span, msg)
                                    .set_label("bad constraint")
                                    .add_hint("e.g. `~0.5`, `>=0.5.3, <0.6`, or an exact `0.5.5`");
                            }
                        }
                    }
                }
                "variant" => match self.text(v, "variant").as_deref() {
                    Some("prod") => s.variant = Variant::Prod,
                    Some("dev") => s.variant = Variant::Dev,
                    Some(other) => {
                        self.err(v.span, format!("unknown variant `{other}`")).add_hint("variant is `prod` or `dev`");
                    }
                    None => {}
                },
                "current" => s.current = self.boolean(v, "current").unwrap_or(false),
                _ => {}
            }
        }
        s
    }

    fn nscale_spec(&mut self, fields: &[(&str, &Node, &Node)]) -> Option<NscaleImageSpec> {
        let mut s = NscaleImageSpec::default();
        let mut region = None;
        for (k, _, v) in fields {
            match *k {
                "region" => region = self.text(v, "region"),
                "organization" => s.organizations = self.texts(v, "organization"),
                "scope" => {
                    s.scope = self.one_of(v, "scope", &["owned", "available"]);
                }
                "architecture" => s.architecture = self.one_of(v, "architecture", &["x86_64", "aarch64"]),
                "os" => {
                    let mut os = NscaleOsFilter::default();
                    let keys = ["family", "distro", "variant", "codename", "version"];
                    for (ok, _, ov) in self.entries(v, "os", Some(&keys)) {
                        let t = self.text(ov, ok);
                        match ok {
                            "family" => os.family = t,
                            "distro" => os.distro = t,
                            "variant" => os.variant = t,
                            "codename" => os.codename = t,
                            _ => os.version = t,
                        }
                    }
                    s.os = os;
                }
                "gpu" => s.gpu = self.gpu_filter(v),
                "tags" => {
                    for (tk, _, tv) in self.entries(v, "tags", None) {
                        if let Some(t) = self.text(tv, "tag value") {
                            s.tags.insert(tk.to_string(), t);
                        }
                    }
                }
                _ => {}
            }
        }
        s.region = region?;
        Some(s)
    }

    fn gpu_filter(&mut self, v: &Node) -> GpuFilter {
        if let Kind::Scalar { .. } = v.kind {
            return match self.boolean(v, "gpu") {
                Some(true) => GpuFilter::Some { vendor: None, models: vec![], driver: None },
                Some(false) => GpuFilter::None,
                None => GpuFilter::Any,
            };
        }
        let (mut vendor, mut models, mut driver) = (None, vec![], None);
        for (k, _, gv) in self.entries(v, "gpu", Some(&["vendor", "models", "driver"])) {
            match k {
                "vendor" => vendor = self.text(gv, "gpu.vendor"),
                "models" => models = self.texts(gv, "gpu.models"),
                _ => driver = self.text(gv, "gpu.driver"),
            }
        }
        GpuFilter::Some { vendor, models, driver }
    }

    fn oci_spec(&mut self, fields: &[(&str, &Node, &Node)]) -> OciImageSpec {
        let mut s = OciImageSpec::default();
        for (k, _, v) in fields {
            let t = self.text(v, k);
            match *k {
                "compartment" => s.compartment = t,
                "operating_system" => s.operating_system = t,
                "operating_system_version" => s.operating_system_version = t,
                "shape" => s.shape = t,
                "display_name" => {
                    if let Some(re) = &t
                        && let Err(e) = regex::Regex::new(re)
                    {
                        self.err(v.span, format!("`display_name` is not a valid regular expression: {e}"))
                            .set_label("bad regex")
                            .add_hint("the whole display name must match; e.g. `Oracle-Linux-8\\.10-.*`");
                    }
                    s.display_name = t;
                }
                _ => {}
            }
        }
        s
    }

    /// A scalar as text, as written (`22.10` stays `22.10`); null means unset.
    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        self.opt_literal(node, what)
    }

    /// One string or a list of strings.
    fn texts(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.kind {
            Kind::Seq(items) => items.iter().filter_map(|i| self.text(i, what)).collect(),
            _ => self.text(node, what).into_iter().collect(),
        }
    }

    fn one_of(&mut self, node: &Node, what: &str, allowed: &[&str]) -> Option<String> {
        let t = self.text(node, what)?;
        if allowed.contains(&t.as_str()) {
            return Some(t);
        }
        self.err(node.span, format!("unknown {what} `{t}`"))
            .set_label("not allowed")
            .add_hint(format!("{what} is one of: {}", allowed.join(", ")));
        None
    }

    // ----- providers --------------------------------------------------------------------

    pub(super) fn catalog_provider(&mut self, name: &str, node: &Node) {
        match name {
            "nscale" => {
                let mut p = NscaleProvider::default();
                for (k, _, v) in self.entries(node, "provider.nscale", Some(&["endpoint"])) {
                    if k == "endpoint" {
                        p.endpoint = self.url(v, "provider.nscale.endpoint");
                    }
                }
                self.data.providers.nscale = p;
            }
            _ => {
                let mut p = OciProvider::default();
                let keys = ["endpoint", "config_file", "profile", "region"];
                for (k, _, v) in self.entries(node, "provider.oci", Some(&keys)) {
                    match k {
                        "endpoint" => p.endpoint = self.url(v, "provider.oci.endpoint"),
                        "config_file" => p.config_file = self.text(v, k),
                        "profile" => p.profile = self.text(v, k),
                        _ => p.region = self.text(v, k),
                    }
                }
                self.data.providers.oci = p;
            }
        }
    }

    fn url(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.text(node, what)?;
        match url::Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(s.trim_end_matches('/').to_string()),
            _ => {
                self.err(node.span, format!("`{s}` is not an http(s) URL")).set_label("bad endpoint");
                None
            }
        }
    }

    // ----- references -------------------------------------------------------------------

    /// Checks a `${data.KIND.NAME.ATTR}` reference; reports and returns false when it names
    /// an unknown kind, an undeclared data source or an attribute the kind does not have.
    pub(super) fn check_data_ref(&mut self, r: &Ref, span: Span) -> bool {
        let Ref::Data { source, name, attr } = r else {
            return true;
        };
        let Some(kind) = DataKind::parse(source) else {
            let kinds: Vec<&str> = DataKind::ALL.iter().map(|k| k.as_str()).collect();
            let hint = did_you_mean(source, kinds.iter().copied())
                .map_or(format!("data sources are {}", kinds.join(", ")), |s| format!("did you mean `{s}`?"));
            self.err(span, format!("`{r}`: unknown data source kind `{source}`"))
                .set_label("unknown kind")
                .add_hint(hint);
            return false;
        };
        if !self.data.declared.contains(&(kind, name.clone())) {
            let names: Vec<String> =
                self.data.declared.iter().filter(|(k, _)| *k == kind).map(|(_, n)| n.clone()).collect();
            let hint = match did_you_mean(name, names.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("declare it under `data: {{ {source}: {{ {name}: ... }} }}`"),
            };
            self.err(span, format!("`{r}` references a data source that is not declared"))
                .set_label("not declared")
                .add_hint(hint);
            return false;
        }
        let attrs = kind.attributes();
        if !attrs.contains(&attr.as_str()) {
            let hint = match did_you_mean(attr, attrs.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? {source} has {}", attrs.join(", ")),
                None => format!("{source} has {}", attrs.join(", ")),
            };
            self.err(span, format!("{source} has no attribute `{attr}`")).set_label("unknown attribute").add_hint(hint);
            return false;
        }
        true
    }

    /// A CVM's `image`: a literal, or a template naming a data source (filled in by
    /// `crate::datasources` before planning).
    pub(super) fn image_field(&mut self, c: &mut CvmConfig, v: &Node, what: &str) {
        let allow = Allow { data: true, ..Allow::default() };
        let Some(t) = self.string(v, what, allow) else {
            return;
        };
        if let Some(s) = t.as_literal() {
            c.attrs.image = Some(s);
            return;
        }
        if t.refs().any(|r| matches!(r, Ref::Data { source, attr, .. } if source == "phala_os_image" && attr != "name"))
        {
            self.diags.push(
                crate::manifest::Diagnostic::warning(&self.src, v.span, "the API reports a CVM's image by name")
                    .label("not the image name")
                    .hint("use `${data.phala_os_image.NAME.name}`, or every refresh shows the image as changed"),
            );
        }
        c.data_fields.insert("image".into(), t);
    }
}
