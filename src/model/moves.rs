//! Which records a move takes where (`moved:` entries, `teeform state mv`).
//!
//! An address without an index names every instance of its CVM, as `--target` does: moving
//! `cvm.a` to `cvm.b` moves `cvm.a` to `cvm.b` and each `cvm.a[i]` to `cvm.b[i]`. An indexed
//! address names one instance: `cvm.a[1]` to `cvm.b[1]`, or to `cvm.b` (the one CVM `b` is).
//! `cvm.a[0]` also names a CVM state holds as `cvm.a`, since going from one replica to more
//! keeps that CVM as instance 0.
//!
//! When the destination's replica count is known (a plan), each destination takes the form
//! that count gives it: `cvm.b` becomes `cvm.b[0]` under more than one replica, and `cvm.b[0]`
//! becomes `cvm.b` under one. Anything that could mean two things — several instances moved
//! to one, a destination state already holds, an instance the destination does not have — is
//! a [`MoveError`], never a guess.

use std::collections::BTreeMap;

use super::{Address, ResourceRecord};

/// A move that cannot be carried out as written. Each says which entry and why; nothing was
/// moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// The destination (or, moving a whole CVM, another instance of the destination's CVM) is
    /// already held in state by a CVM this move does not move.
    #[error("cannot move {from} to {to}: state already holds a CVM at {held}")]
    Taken { from: Address, to: Address, held: Address },
    /// A whole CVM of several instances moved to one instance.
    #[error(
        "cannot move {from} to {to}: state holds {} instances of {from} ({}), and {to} is one instance",
        .instances.len(),
        list(.instances)
    )]
    Ambiguous { from: Address, to: Address, instances: Vec<Address> },
    /// An instance index the destination's `replicas:` does not have.
    #[error("cannot move {from} to {to}: cvm.{} has {replicas} replica{}, so {to} is not one of its instances", .to.key(), if *.replicas == 1 { "" } else { "s" })]
    NotAnInstance { from: Address, to: Address, replicas: u32 },
    /// Two records would land at one address.
    #[error("cannot move both {} and {} to {to}", .sources[0], .sources[1])]
    Collision { to: Address, sources: [Address; 2] },
}

fn list(a: &[Address]) -> String {
    a.iter().map(Address::as_str).collect::<Vec<_>>().join(", ")
}

/// The `(from, to)` pairs the move `from → to` makes of `records` (state): empty when state
/// holds nothing `from` names. `replicas` is the destination's replica count when the manifest
/// says (a plan), `None` to keep each index as written (`state mv`).
///
/// Errors: [`MoveError::Ambiguous`] (a whole CVM of several instances moved to one
/// instance), [`MoveError::NotAnInstance`] (`to`'s index is not below `replicas`),
/// [`MoveError::Collision`] (state holds both `cvm.a` and `cvm.a[0]`, and both would land at
/// one address), [`MoveError::Taken`] (state holds a CVM at a destination, or at any instance
/// of the destination's CVM when a whole CVM moves there).
pub fn resolve(
    records: &BTreeMap<Address, ResourceRecord>,
    from: &Address,
    to: &Address,
    replicas: Option<u32>,
) -> Result<Vec<(Address, Address)>, MoveError> {
    let sources = sources(records, from);
    if sources.is_empty() {
        return Ok(vec![]);
    }
    if to.index().is_some() && sources.len() > 1 {
        return Err(MoveError::Ambiguous { from: from.clone(), to: to.clone(), instances: sources });
    }
    if let (Some(i), Some(r)) = (to.index(), replicas)
        && i >= r.max(1)
    {
        return Err(MoveError::NotAnInstance { from: from.clone(), to: to.clone(), replicas: r });
    }
    let whole = from.index().is_none() && to.index().is_none();
    let mut pairs: Vec<(Address, Address)> = Vec::new();
    for s in sources {
        let d = match (whole, s.index()) {
            (true, Some(i)) => Address::instance(to.key(), i),
            _ => to.clone(),
        };
        let d = match replicas {
            Some(r) => fitted(d, r),
            None => d,
        };
        if let Some((other, _)) = pairs.iter().find(|(_, t)| *t == d) {
            return Err(MoveError::Collision { to: d, sources: [other.clone(), s] });
        }
        pairs.push((s, d));
    }
    let moving = |a: &Address| pairs.iter().any(|(f, _)| f == a);
    for (s, d) in &pairs {
        let clash = |held: &&Address| {
            !moving(held) && held.key() == d.key() && (whole || held.index().unwrap_or(0) == d.index().unwrap_or(0))
        };
        if let Some(held) = records.keys().find(clash) {
            return Err(MoveError::Taken { from: s.clone(), to: d.clone(), held: held.clone() });
        }
    }
    Ok(pairs)
}

/// The records `from` names: every record of its CVM for an address without an index; for
/// `cvm.a[i]`, that instance (or, for `cvm.a[0]`, the one-replica `cvm.a`).
fn sources(records: &BTreeMap<Address, ResourceRecord>, from: &Address) -> Vec<Address> {
    match from.index() {
        None => records.keys().filter(|a| a.key() == from.key()).cloned().collect(),
        Some(_) if records.contains_key(from) => vec![from.clone()],
        Some(0) if records.contains_key(&from.entry()) => vec![from.entry()],
        Some(_) => vec![],
    }
}

/// `to` in the form `replicas` gives it: `cvm.b` ↔ `cvm.b[0]`.
fn fitted(to: Address, replicas: u32) -> Address {
    match to.index() {
        None if replicas > 1 => Address::instance(to.key(), 0),
        Some(0) if replicas <= 1 => to.entry(),
        _ => to,
    }
}
