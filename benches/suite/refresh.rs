//! Refreshing N CVMs with injected API latency: from list pages (one per 100 CVMs, read
//! `--parallelism` at a time) against the old path of one detail GET per CVM
//! (`TEEFORM_PER_CVM_READS=1`), side by side.

use std::time::Duration;

use serde_json::json;
use teeform::sim::SimConfig;

use crate::harness::{Bench, Fleet, SimServer, Stats, Table, median, secs, teeform_with};

const PAGES: &str = "GET /api/v1/cvms/paginated";
const DETAILS: &str = "GET /api/v1/cvms/{id}";
/// The listing of an app's instances: without the list, how refresh finds instances of
/// managed apps made outside teeform (one per app; here each CVM is its own app).
const APP_CVMS: &str = "GET /api/v1/apps/{app_id}/cvms";

/// A way to refresh: its name, the variables that select it, its target at each size.
struct Path {
    name: &'static str,
    vars: &'static [(&'static str, &'static str)],
    /// `(max wall, max requests)` at this many CVMs, if the issue sets one.
    target: fn(usize) -> Option<(Duration, Option<u64>)>,
}

const PATHS: &[Path] = &[
    Path {
        name: "list pages",
        vars: &[],
        target: |n| match n {
            1_000 => Some((Duration::from_millis(750), Some(20))),
            10_000 => Some((Duration::from_secs(3), None)),
            _ => None,
        },
    },
    Path { name: "one GET per CVM (before)", vars: &[("TEEFORM_PER_CVM_READS", "1")], target: |_| None },
];

pub fn run(b: &Bench) -> Vec<Table> {
    let sizes = if b.quick { vec![150] } else { vec![1_000, 10_000] };
    let latency_ms = b.size(50, 5) as u64;
    let par = 10;
    let mut t = Table::new(
        "refresh: plan with refresh, no changes, injected API latency",
        &[
            "CVMs",
            "latency",
            "parallelism",
            "path",
            "list pages",
            "detail GETs",
            "requests",
            "wall (median)",
            "target",
            "met",
        ],
    );
    for n in sizes {
        let sim = SimServer::start(b, SimConfig { boot_ms: 0, restart_ms: 0, ..Default::default() });
        let fleet = Fleet::new(&sim.prefix, n, 0, false);
        fleet.apply_all(100);
        sim.configure(b, json!({ "latency_ms": latency_ms }));
        for path in PATHS {
            let per_cvm = !path.vars.is_empty();
            // The old path at 10,000 CVMs takes about a minute a run: once is enough.
            let runs = if per_cvm && n >= 10_000 { 1 } else { b.runs };
            let mut walls = Vec::new();
            let (mut pages, mut details, mut total) = (0, 0, 0);
            for _ in 0..runs {
                let before = sim.stats(b);
                let r = teeform_with(
                    fleet.path(),
                    &["plan", "--parallelism", &par.to_string(), "--detailed-exitcode"],
                    path.vars,
                )
                .expect(0, "refreshing plan");
                let after = sim.stats(b);
                let since = |s: &Stats, k: &str| s.endpoint(k) - before.endpoint(k);
                (pages, details, total) =
                    (since(&after, PAGES), since(&after, DETAILS), after.total() - before.total());
                if per_cvm {
                    let apps = since(&after, APP_CVMS);
                    b.check(
                        details == n as u64 && apps == n as u64 && total == 2 * n as u64,
                        &format!("one GET per CVM and one listing of its app's instances: {total} for {n}"),
                    );
                } else {
                    let want = (n as u64).div_ceil(100);
                    b.check(pages == want, &format!("one list page per 100 CVMs: {pages} for {n}"));
                    b.check(details == 0, &format!("no detail when nothing drifted: {details}"));
                    b.check(total == pages, &format!("nothing but the pages: {total} requests"));
                }
                walls.push(r.wall);
            }
            let med = median(walls);
            let target = (path.target)(n);
            let met = target.is_none_or(|(wall, reqs)| med < wall && reqs.is_none_or(|r| total <= r));
            t.row(vec![
                n.to_string(),
                format!("{latency_ms} ms"),
                par.to_string(),
                path.name.into(),
                pages.to_string(),
                details.to_string(),
                total.to_string(),
                secs(med),
                match target {
                    Some((wall, Some(r))) => format!("< {} s, ≤ {r} requests", wall.as_secs_f64()),
                    Some((wall, None)) => format!("< {} s", wall.as_secs_f64()),
                    None => "-".into(),
                },
                if b.quick || target.is_none() { "-".into() } else { met.to_string() },
            ]);
        }
        sim.stop(b);
    }
    t.note(
        "Wall time is the whole `teeform plan --parallelism 10` process (no changes found): start-up, \
         manifest, state, refresh and planning. The list path reads page 1, then the other pages 10 at a \
         time, and asks for no detail when every CVM's compose hash is the one state recorded; the old \
         path (`TEEFORM_PER_CVM_READS=1`) reads each CVM's detail, 10 at a time: ceil(N / 10) × latency. \
         The old path at 10,000 CVMs ran once.",
    );
    vec![t]
}
