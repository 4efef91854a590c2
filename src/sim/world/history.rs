//! An app's history of instances, for `/_sim/stats`: when each existed, ran and was down,
//! deleted ones included, so the simulator (not teeform) proves a roll's bounds.

use serde::{Deserialize, Serialize};

use super::{Cvm, World};

/// A deleted CVM's lifetime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gone {
    pub app_id: String,
    pub created_ms: u64,
    pub first_up: u64,
    pub deleted_ms: u64,
    pub down: Vec<[u64; 2]>,
}

impl Gone {
    pub fn of(c: &Cvm, now: u64) -> Gone {
        Gone {
            app_id: c.app_id.clone(),
            created_ms: c.created_ms,
            first_up: c.first_up,
            deleted_ms: now,
            down: c.down.clone(),
        }
    }
}

/// One instance's life, every time clipped to `now`: `[created, end)`, running from `first_up`
/// (its first boot's end) but for the `down` intervals.
struct Life {
    created: u64,
    first_up: u64,
    end: u64,
    down: Vec<[u64; 2]>,
}

/// A sweep's events: (time, change); at equal times they apply together.
fn levels(mut events: Vec<(u64, i32, i32)>) -> Vec<(u64, i32, i32)> {
    events.sort();
    let (mut a, mut b) = (0, 0);
    let mut out: Vec<(u64, i32, i32)> = Vec::new();
    for (t, da, db) in events {
        a += da;
        b += db;
        match out.last_mut() {
            Some(last) if last.0 == t => (last.1, last.2) = (a, b),
            _ => out.push((t, a, b)),
        }
    }
    out
}

fn same_app(a: &str, want: &str) -> bool {
    a.eq_ignore_ascii_case(want.trim_start_matches("app_").trim_start_matches("0x"))
}

impl World {
    /// The lives of the app's instances, deleted ones too.
    fn lives(&self, app_id: &str, now: u64) -> Vec<Life> {
        let clip = |t: u64| t.min(now);
        let live = self.instances(app_id).into_iter().map(|c| Life {
            created: clip(c.created_ms),
            first_up: clip(c.first_up),
            end: now,
            down: c.down.clone(),
        });
        let gone = self.gone.iter().filter(|g| same_app(&g.app_id, app_id)).map(|g| Life {
            created: clip(g.created_ms),
            first_up: clip(g.first_up.min(g.deleted_ms)),
            end: clip(g.deleted_ms),
            down: g.down.clone(),
        });
        live.chain(gone).collect()
    }

    /// The down intervals of a life, within it.
    fn downs(l: &Life) -> impl Iterator<Item = (u64, u64)> + '_ {
        l.down.iter().map(|[f, u]| ((*f).min(l.end), (*u).min(l.end))).filter(|(f, u)| f < u)
    }

    /// The most instances of the app that were not running at the same moment after their
    /// first boot (updates, restarts, stops), up to `now`.
    pub fn max_unavailable(&self, app_id: &str, now: u64) -> usize {
        let lives = self.lives(app_id, now);
        let events = lives.iter().flat_map(Self::downs).flat_map(|(f, u)| [(f, 1, 0), (u, -1, 0)]).collect();
        levels(events).iter().map(|(_, down, _)| *down).max().unwrap_or(0).max(0) as usize
    }

    /// The fewest instances of the app running at one moment while any of them was down
    /// after its first boot (during updates); `None` when none ever was.
    pub fn min_running(&self, app_id: &str, now: u64) -> Option<usize> {
        let mut events = Vec::new();
        for l in self.lives(app_id, now) {
            if l.first_up < l.end {
                events.extend([(l.first_up, 1, 0), (l.end, -1, 0)]);
            }
            for (f, u) in Self::downs(&l) {
                events.extend([(f, -1, 1), (u, 1, -1)]);
            }
        }
        // Each level holds from its time to the next; the one at `now` is no moment yet.
        let lv = levels(events);
        lv.iter().filter(|(t, _, down)| *t < now && *down > 0).map(|(_, running, _)| (*running).max(0) as usize).min()
    }

    /// The most instances of the app that existed at one moment.
    pub fn max_instances(&self, app_id: &str, now: u64) -> usize {
        let events = self.lives(app_id, now).iter().flat_map(|l| [(l.created, 1, 0), (l.end, -1, 0)]).collect();
        levels(events).iter().filter(|(t, ..)| *t < now).map(|(_, n, _)| *n).max().unwrap_or(0).max(0) as usize
    }
}
