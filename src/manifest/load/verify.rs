//! Reading `verify:`: how `verify` and the apply gate check TDX quotes, kept with the
//! manifest so a CI job needs no flag (`--pccs-url` and `TEEFORM_PCCS_URL` still win).

use super::super::VerifySettings;
use super::super::yaml::{Kind, Node};
use super::Loader;
use crate::manifest::diag::did_you_mean;
use crate::verify::quote::TCB_STATUSES;

impl Loader<'_> {
    /// `verify: {pccs_url: phala|intel|URL, allow_tcb_status: [STATUS, …]}`. A URL that is not
    /// an http(s) base URL, or a status Intel does not define, is an error at its place.
    pub(super) fn verify_settings(&mut self, node: &Node) -> VerifySettings {
        let mut out = VerifySettings::default();
        for (key, _, v) in self.entries(node, "verify", Some(&["pccs_url", "allow_tcb_status"])) {
            match key {
                "pccs_url" => {
                    let Some(url) = self.literal_string(v, "verify.pccs_url") else { continue };
                    match crate::providers::pccs::pccs_base(&url) {
                        Ok(_) => out.pccs_url = Some(url),
                        Err(e) => {
                            self.err(v.span, format!("verify.pccs_url: {e}")).set_label("not a PCCS");
                        }
                    }
                }
                _ => out.allow_tcb_status = self.tcb_statuses(v),
            }
        }
        out
    }

    fn tcb_statuses(&mut self, node: &Node) -> Vec<String> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => {
                self.err(node.span, "verify.allow_tcb_status must be a list of TCB statuses")
                    .set_label("expected a list");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for it in items {
            let Some(s) = self.literal_string(it, "a TCB status") else { continue };
            if TCB_STATUSES.contains(&s.as_str()) {
                out.push(s);
                continue;
            }
            let hint = did_you_mean(&s, TCB_STATUSES.iter().copied()).map_or_else(
                || format!("Intel's TCB statuses are {}", TCB_STATUSES.join(", ")),
                |m| format!("did you mean `{m}`?"),
            );
            self.err(it.span, format!("`{s}` is not a TCB status")).set_label("unknown status").add_hint(hint);
        }
        out
    }
}
