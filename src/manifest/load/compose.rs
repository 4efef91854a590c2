//! The compose/env lint's place in loading: each CVM's use of its compose file is collected
//! while it is read, and every use is checked once all CVMs are read (`compose_lint`), each
//! finding put where an inline check would have.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::super::CvmConfig;
use super::super::compose_lint::{self, EnvKey, Use};
use super::super::files::Limit;
use super::super::yaml::Span;
use super::Loader;

/// What reading a CVM collects for the lint besides its [`CvmConfig`].
#[derive(Default)]
pub(super) struct LintInput {
    /// Where `compose:` is written, and where in the diagnostics its findings go.
    pub compose_at: Option<(Span, usize)>,
    /// The `env:` key, if written, and the env keys.
    pub env_span: Option<Span>,
    pub env: Vec<EnvKey>,
    /// Names whose warnings the CVM silences (`lint: {ignore: [...]}`).
    pub ignore: BTreeSet<String>,
}

impl Loader<'_> {
    /// Keeps a CVM's use of its compose file for [`Loader::check_composes`] (when the file
    /// was read).
    pub(super) fn use_compose(&mut self, c: &CvmConfig, lint: LintInput) {
        let Some((compose_span, at)) = lint.compose_at else { return };
        let Some(Ok(compose)) = self.files.get(&(c.compose.path.clone(), Limit::Compose)).map(|f| f.result.clone())
        else {
            return;
        };
        self.compose_uses.push(Use {
            cvm: c.key.clone(),
            at,
            compose_full: self.dir.join(&c.compose.path),
            compose_path: c.compose.path.clone(),
            compose,
            compose_span,
            script: c.pre_launch_script.as_ref().map(|s| (s.path.clone(), Arc::new(s.content.clone()))),
            env_span: lint.env_span,
            env: lint.env,
            ignore: lint.ignore,
        });
    }

    /// Lints every compose file against the env of each CVM that uses it (`compose_lint`),
    /// putting each finding where an inline check would have, and tells each CVM which of its
    /// secret env values its compose file requires non-empty ([`CvmConfig::required_env`]).
    pub(super) fn check_composes(&mut self, cvms: &mut BTreeMap<String, CvmConfig>) {
        let uses = std::mem::take(&mut self.compose_uses);
        let found = compose_lint::check(&self.src, self.opts.display_base.as_deref(), &uses);
        // From the back, so the positions of earlier findings stay valid.
        for (at, d) in found.diagnostics.into_iter().rev() {
            self.diags.insert(at, d);
        }
        for (cvm, key, span) in found.required_later {
            if let Some(c) = cvms.get_mut(&cvm) {
                c.required_env.insert(key, span);
            }
        }
    }
}
