//! `outputs:`: values shown after apply and by `teeform output`; one that shows a secret must
//! be marked sensitive.

use std::collections::BTreeMap;

use super::super::OutputConfig;
use super::super::expr::Ref;
use super::super::yaml::{Kind, Node};
use super::{Allow, Loader};

impl Loader<'_> {
    pub(super) fn outputs(&mut self, node: &Node) -> BTreeMap<String, OutputConfig> {
        let mut out = BTreeMap::new();
        for (name, knode, spec) in self.entries(node, "outputs", None) {
            let allow = Allow { cvm: true, data: true, secret: true, path: false };
            let (value, sensitive, description) = match &spec.kind {
                Kind::Map(_) => {
                    let mut value = None;
                    let mut sensitive = false;
                    let mut description = None;
                    let mut value_seen = false;
                    for (k, _, v) in
                        self.entries(spec, &format!("output `{name}`"), Some(&["value", "sensitive", "description"]))
                    {
                        match k {
                            "value" => {
                                value_seen = true;
                                value = self.string(v, &format!("output `{name}`"), allow);
                            }
                            "sensitive" => sensitive = self.boolean(v, "sensitive").unwrap_or(false),
                            "description" => description = self.opt_literal(v, "description"),
                            _ => {}
                        }
                    }
                    if !value_seen {
                        self.err(knode.span, format!("output `{name}` has no `value`")).set_label("missing value");
                    }
                    (value, sensitive, description)
                }
                _ => (self.string(spec, &format!("output `{name}`"), allow), false, None),
            };
            let Some(value) = value else { continue };
            if value.refs().any(Ref::is_secret) && !sensitive {
                self.err(knode.span, format!("output `{name}` shows a secret but is not marked sensitive"))
                    .set_label("secret output")
                    .hints
                    .push("add `sensitive: true` to the output (its value is then never printed or stored)".into());
            }
            out.insert(name.to_string(), OutputConfig { value, sensitive, description });
        }
        out
    }
}
