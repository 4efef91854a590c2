//! The manifest's settings: `provider:` (the Phala endpoint; the catalog providers are read
//! in `data.rs`) and `backend:`.

use super::super::diag::did_you_mean;
use super::super::yaml::Node;
use super::super::{BackendKind, DEFAULT_API_PREFIX, Endpoint};
use super::{Loader, STRINGS_ONLY};

impl Loader<'_> {
    pub(super) fn provider(&mut self, node: Option<&Node>) -> Endpoint {
        let env_default =
            || (self.opts.env)("PHALA_CLOUD_API_PREFIX").unwrap_or_else(|| DEFAULT_API_PREFIX.to_string());
        let Some(node) = node else {
            return Endpoint::Url(env_default());
        };
        let mut endpoint = None;
        for (name, _, v) in self.entries(node, "provider", Some(&["phala", "nscale", "oci"])) {
            match name {
                "phala" => {
                    for (k, _, v) in self.entries(v, "provider.phala", Some(&["endpoint"])) {
                        if k == "endpoint" {
                            endpoint = self
                                .opt_string(v, "provider.phala.endpoint", STRINGS_ONLY)
                                .and_then(|t| t.as_literal())
                                .map(|s| (s, v.span));
                        }
                    }
                }
                _ => self.catalog_provider(name, v),
            }
        }
        match endpoint {
            None => Endpoint::Url(env_default()),
            Some((s, _)) if s == "local" => Endpoint::Local,
            Some((s, span)) => match url::Url::parse(&s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Endpoint::Url(s.trim_end_matches('/').to_string()),
                _ => {
                    self.err(span, format!("`{s}` is not an http(s) URL"))
                        .set_label("bad endpoint")
                        .hints
                        .push("use an API prefix such as https://cloud-api.phala.com/api/v1, or `local` for the embedded simulator".into());
                    Endpoint::Local
                }
            },
        }
    }

    pub(super) fn backend(&mut self, node: &Node) -> Option<BackendKind> {
        match self.plain_str(node)? {
            "local" => Some(BackendKind::Local),
            "postgres" => Some(BackendKind::Postgres),
            other => {
                let hint = did_you_mean(other, ["local", "postgres"])
                    .map_or("backends are `local` (sled) and `postgres`".into(), |s| format!("did you mean `{s}`?"));
                self.err(node.span, format!("unknown backend `{other}`")).hints.push(hint);
                None
            }
        }
    }
}
