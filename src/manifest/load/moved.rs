//! `moved:` (Terraform's `moved` blocks): a list of `{from: cvm.OLD, to: cvm.NEW}`, each
//! saying that the CVM state keeps at `from` is the one the manifest now declares at `to`.
//!
//! Checked here, where they are written: both are CVM addresses, `to` is declared under
//! `cvms:` and `from` is not (the old key is gone), no two entries name a CVM in common in
//! their `from` or their `to` (`cvm.a` names every instance, so it overlaps `cvm.a[1]`), and
//! no entry's `to` is another's `from` (a chain or a cycle: move straight to the last key
//! instead). What an entry moves is the planner's business (`model::moves`): an entry whose
//! `from` state does not hold is ignored with a note, so it can stay in the manifest.

use std::collections::BTreeMap;

use super::super::Moved;
use super::super::diag::Related;
use super::super::yaml::{Kind, Node, Span};
use super::{Loader, STRINGS_ONLY};
use crate::model::Address;

impl Loader<'_> {
    pub(super) fn moved(&mut self, node: &Node) -> Vec<Moved> {
        if node.is_null() {
            return Vec::new();
        }
        let Kind::Seq(items) = &node.kind else {
            self.err(node.span, "`moved` must be a list of `{from: cvm.OLD, to: cvm.NEW}` entries")
                .set_label("expected a list");
            return Vec::new();
        };
        let mut read = Vec::new();
        for it in items {
            if let Some(m) = self.moved_entry(it) {
                read.push(m);
            }
        }
        self.check_moves(read)
    }

    /// One entry, its two addresses read; `None` when one is missing or unreadable.
    fn moved_entry(&mut self, it: &Node) -> Option<Moved> {
        if it.is_null() {
            self.err(it.span, "a `moved` entry needs `from` and `to`")
                .set_label("empty entry")
                .add_hint("write `- {from: cvm.OLD_KEY, to: cvm.NEW_KEY}`, or drop the `-`");
            return None;
        }
        let fields = self.entries(it, "a `moved` entry", Some(&["from", "to"]));
        if !matches!(it.kind, Kind::Map(_)) {
            return None;
        }
        // Where the entry is shown: from its first key to its last value (a block mapping's own
        // mark is its first `:`).
        let span = match (fields.first(), fields.last()) {
            (Some((_, k, _)), Some((_, _, v))) => Span::new(k.span.start, v.span.end.max(k.span.end)),
            _ => it.span,
        };
        let mut from = None;
        let mut to = None;
        for (k, _, v) in fields {
            let a = self.address(v, &format!("moved `{k}`"));
            match k {
                "from" => from = a,
                _ => to = a,
            }
        }
        for (k, got) in [("from", from.is_some()), ("to", to.is_some())] {
            if !got && !has_key(it, k) {
                self.err(span, format!("a `moved` entry needs `{k}`"))
                    .set_label(format!("missing `{k}`"))
                    .add_hint("write `- {from: cvm.OLD_KEY, to: cvm.NEW_KEY}`");
            }
        }
        Some(Moved { from: from?, to: to?, span })
    }

    /// A CVM address (`cvm.KEY`), reported where it is written when it is not one.
    fn address(&mut self, v: &Node, what: &str) -> Option<Address> {
        let s = self.string(v, what, STRINGS_ONLY)?.as_literal()?;
        match Address::parse(&s) {
            Ok(a) => Some(a),
            Err(e) => {
                let hint = if Address::parse(&format!("cvm.{s}")).is_ok() {
                    format!("did you mean `cvm.{s}`?")
                } else {
                    "addresses are `cvm.` and a key under `cvms:`".to_string()
                };
                self.err(v.span, e.to_string()).set_label("not an address").add_hint(hint);
                None
            }
        }
    }

    /// The checks across entries; returns the entries that pass.
    fn check_moves(&mut self, moves: Vec<Moved>) -> Vec<Moved> {
        let mut bad = vec![false; moves.len()];
        let mut first_from: BTreeMap<&Address, usize> = BTreeMap::new();
        for (i, m) in moves.iter().enumerate() {
            if m.from == m.to {
                self.err(m.span, format!("{} is moved to itself", m.from)).set_label("same address");
                bad[i] = true;
                continue;
            }
            // `cvm.a` names every instance of `a`, so it overlaps `cvm.a[1]`.
            for (word, of) in [("from", (|m: &Moved| &m.from) as fn(&Moved) -> &Address), ("to", |m: &Moved| &m.to)] {
                let Some(j) = (0..i).find(|&j| !bad[j] && of(&moves[j]).overlaps(of(m))) else { continue };
                let (first, second) = (of(&moves[j]), of(m));
                let what = if first == second {
                    format!("two `moved` entries have `{word}: {second}`")
                } else {
                    format!("two `moved` entries name one CVM in `{word}`: {first} and {second}")
                };
                let src = self.src.clone();
                let d = self.err(m.span, what).set_label("second entry");
                d.also.push(Related { source: src, span: moves[j].span, label: "first entry".into() });
                d.add_hint(if word == "from" {
                    "a CVM moves to one address: keep one of the entries (an address without an index moves every instance)"
                } else {
                    "two CVMs in state cannot both become one: keep one entry, and `teeform state rm` or destroy the other"
                });
                bad[i] = true;
            }
            if !bad[i] {
                first_from.entry(&m.from).or_insert(i);
            }
        }
        // Chains and cycles: an entry whose `to` is another's `from`.
        for (i, m) in moves.iter().enumerate() {
            let Some(&j) = first_from.get(&m.to) else { continue };
            if bad[i] || bad[j] {
                continue;
            }
            let next = &moves[j];
            let (what, hint) = if next.to == m.from {
                (
                    format!("`moved` entries form a cycle: {} → {} → {}", m.from, m.to, next.to),
                    "a CVM moves from its old address to its new one once: drop one of the entries".to_string(),
                )
            } else {
                (
                    format!("`moved` entries form a chain: {} → {} → {}", m.from, m.to, next.to),
                    format!("move straight to the last address: `{{from: {}, to: {}}}`", m.from, next.to),
                )
            };
            let src = self.src.clone();
            let d = self.err(m.span, what).set_label("this entry");
            d.also.push(Related { source: src, span: next.span, label: "continues here".into() });
            d.add_hint(hint);
            bad[i] = true;
            bad[j] = true;
        }
        for (i, m) in moves.iter().enumerate() {
            if bad[i] {
                continue;
            }
            if self.cvm_keys.contains(m.from.key()) {
                self.err(m.span, format!("{} is still declared under `cvms:`, so it cannot have moved", m.from))
                    .set_label("still declared")
                    .add_hint(format!(
                        "rename the key `{}:` to `{}:` under `cvms:`, or drop this entry",
                        m.from.key(),
                        m.to.key()
                    ));
                bad[i] = true;
            }
            if !self.cvm_keys.contains(m.to.key()) {
                let to = m.to.key().to_string();
                self.unknown_cvm(m.span, &to, &format!("{} is moved to {}, which is not declared", m.from, m.to));
                bad[i] = true;
            }
        }
        moves.into_iter().zip(bad).filter(|(_, b)| !b).map(|(m, _)| m).collect()
    }
}

/// Whether the mapping `node` has `key` (whatever its value).
fn has_key(node: &Node, key: &str) -> bool {
    let named = |k: &Node| matches!(&k.kind, Kind::Scalar { text, .. } if text == key);
    matches!(&node.kind, Kind::Map(pairs) if pairs.iter().any(|(k, _)| named(k)))
}
