//! The compose/env lint's place in loading: each CVM's use of its compose file is collected
//! while it is read, and every use is checked once all CVMs are read (`compose_lint`), each
//! finding put where an inline check would have.

use super::super::compose_lint;
use super::Loader;

impl Loader<'_> {
    /// Lints every compose file against the env of each CVM that uses it (`compose_lint`),
    /// putting each finding where an inline check would have.
    pub(super) fn check_composes(&mut self) {
        let uses = std::mem::take(&mut self.compose_uses);
        let found = compose_lint::check(&self.src, self.opts.display_base.as_deref(), &uses);
        // From the back, so the positions of earlier findings stay valid.
        for (at, d) in found.into_iter().rev() {
            self.diags.insert(at, d);
        }
    }
}
