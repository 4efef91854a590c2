//! The current records: state as the plan sees it (after moves), each brought up to date by
//! its refresh; and what refresh found beside: drift, CVMs gone, CVMs needing a person.

use std::collections::{BTreeMap, BTreeSet};

use super::diff::merge_refresh;
use super::{Attention, Drift, Refresh, health};
use crate::model::{Address, ResourceRecord};
use crate::state::Snapshot;

pub(super) struct Current {
    pub current: BTreeMap<Address, ResourceRecord>,
    pub drift: Vec<Drift>,
    /// Records to write to state when the plan is applied: refreshed, or rewritten by the
    /// plan (moved, protected anew).
    pub refreshed: Vec<ResourceRecord>,
    /// CVMs refresh found deleted outside teeform.
    pub gone: BTreeSet<Address>,
    pub attention: Vec<Attention>,
}

impl Current {
    /// From `records` (state after the plan's moves) and what refresh saw of each
    /// (`refresh_of`; `None` for all when refresh was skipped).
    pub(super) fn of<'a>(
        records: &BTreeMap<Address, ResourceRecord>,
        snapshot: &Snapshot,
        refresh_of: impl Fn(&Address) -> Option<&'a Refresh>,
    ) -> Current {
        let mut out = Current {
            current: BTreeMap::new(),
            drift: Vec::new(),
            refreshed: Vec::new(),
            gone: BTreeSet::new(),
            attention: Vec::new(),
        };
        for (addr, rec) in records {
            let rewritten = snapshot.resources.get(addr) != Some(rec);
            match refresh_of(addr) {
                Some(Refresh::Found(remote)) => {
                    let (mut merged, changes) = merge_refresh(rec, remote);
                    out.attention.extend(health::judge(&mut merged, remote));
                    if !changes.is_empty() {
                        out.drift.push(Drift { address: addr.clone(), deleted: false, attributes: changes });
                    }
                    if merged != *rec || rewritten {
                        out.refreshed.push(merged.clone());
                    }
                    out.current.insert(addr.clone(), merged);
                }
                Some(Refresh::Gone) => {
                    out.drift.push(Drift { address: addr.clone(), deleted: true, attributes: vec![] });
                    out.gone.insert(addr.clone());
                }
                None => {
                    if rewritten {
                        out.refreshed.push(rec.clone());
                    }
                    let attrs = rec.attrs.clone().normalized();
                    out.current.insert(addr.clone(), ResourceRecord { attrs, ..rec.clone() });
                }
            }
        }
        out
    }
}
