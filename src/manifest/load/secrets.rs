//! Reading `secrets:`: how the run digests secret values (`secrets.passphrase_env`, the
//! variable holding the passphrase of keyed digests; see `crate::secrets`).

use super::super::yaml::Node;
use super::Loader;

impl Loader<'_> {
    /// `secrets: {passphrase_env: NAME}`: the variable named becomes one of teeform's
    /// credentials (`${env:NAME}` is refused), read when the run starts.
    pub(super) fn secrets_settings(&mut self, node: &Node) -> Option<String> {
        let mut var = None;
        for (key, _, v) in self.entries(node, "secrets", Some(&["passphrase_env"])) {
            if key == "passphrase_env"
                && let Some(name) = self.literal_string(v, "secrets.passphrase_env")
            {
                if !super::cvm::is_env_name(&name) {
                    self.err(v.span, format!("`{name}` is not an environment variable name"))
                        .set_label("not a name")
                        .add_hint("use letters, digits and `_`, not starting with a digit");
                    continue;
                }
                self.credentials.insert(name.clone());
                var = Some(name);
            }
        }
        var
    }
}
