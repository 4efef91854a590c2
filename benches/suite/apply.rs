//! Applying many independent updates (and a dependency chain among them) with a simulated
//! restart time: the ratio of wall time to the critical-path bound.
//!
//! With parallelism P, N updates and a chain of C dependent updates, no executor can finish
//! before ceil(N / P) refresh GETs and max(ceil(N / P), C) update "waves", each a PATCH, the
//! restart and the GET that sees the CVM running: bound = ceil(N/P) × latency +
//! max(ceil(N/P), C) × (restart + 2 × latency).
//!
//! Each case runs on the batch-status path and, once, on the old one-GET-per-CVM path
//! (`TEEFORM_PER_CVM_READS=1`), with the requests each sent.

use std::time::Duration;

use serde_json::json;
use teeform::sim::SimConfig;

use crate::harness::{Bench, Fleet, SimServer, Table, median, secs, teeform_with};

struct Case {
    what: &'static str,
    n: usize,
    chain: usize,
    par: usize,
}

/// How apply reads: the batch status polls (now), or one detail GET per CVM per poll (before).
const PATHS: &[(&str, &[(&str, &str)])] =
    &[("batch status", &[]), ("one GET per CVM (before)", &[("TEEFORM_PER_CVM_READS", "1")])];

const POLLS: &str = "POST /api/v1/status/batch";
const DETAILS: &str = "GET /api/v1/cvms/{id}";

pub fn run(b: &Bench) -> Vec<Table> {
    let n = b.size(100, 12);
    let restart_ms = b.size(2000, 100) as u64;
    let latency_ms = b.size(50, 5) as u64;
    let cases = if b.quick {
        vec![
            Case { what: "independent", n, chain: 0, par: 4 },
            Case { what: "chain of 4 + independent", n, chain: 4, par: 4 },
        ]
    } else {
        vec![
            Case { what: "independent", n, chain: 0, par: 10 },
            Case { what: "independent", n, chain: 0, par: 100 },
            Case { what: "chain of 5 + 95 independent", n, chain: 5, par: 10 },
        ]
    };
    let mut t = Table::new(
        &format!("apply: {n} updates, {restart_ms} ms restart, {latency_ms} ms API latency"),
        &[
            "updates",
            "parallelism",
            "path",
            "bound",
            "level-by-level waves would take",
            "wall (median)",
            "ratio",
            "requests",
            "status polls",
            "detail GETs",
            "PATCHes",
            "restarts",
            "target",
            "met",
        ],
    );
    for c in cases {
        let sim = SimServer::start(b, SimConfig { boot_ms: 0, restart_ms: 0, ..Default::default() });
        let fleet = Fleet::new(&sim.prefix, c.n, c.chain, false);
        fleet.apply_all(100);
        sim.configure(b, json!({ "latency_ms": latency_ms, "restart_ms": restart_ms }));
        let waves = c.n.div_ceil(c.par) as u32;
        let wave = Duration::from_millis(restart_ms + 2 * latency_ms);
        let bound = Duration::from_millis(latency_ms) * waves + wave * waves.max(c.chain as u32);
        // Level by level: the first level holds everything but the chain's tail.
        let levels = (c.n - c.chain.saturating_sub(1)).div_ceil(c.par) as u32 + c.chain.saturating_sub(1) as u32;
        let by_levels = Duration::from_millis(latency_ms) * waves + wave * levels;
        let mut release = 0;
        for (path, vars) in PATHS {
            let per_cvm = !vars.is_empty();
            // The old path is there for comparison: one run of it.
            let runs = if per_cvm { 1 } else { b.runs };
            let mut walls = Vec::new();
            let (mut patches, mut restarts, mut requests, mut polls, mut details) = (0, 0, 0, 0, 0);
            for _ in 0..runs {
                release += 1;
                for i in 0..c.n {
                    fleet.set_release(i, release);
                }
                let before = sim.stats(b);
                let r = teeform_with(
                    fleet.path(),
                    &["apply", "--auto-approve", "--no-verify", "--parallelism", &c.par.to_string()],
                    vars,
                )
                .expect(0, "apply");
                let after = sim.stats(b);
                b.check(r.stdout.contains(&format!("0 to add, {} to change", c.n)), "every CVM is updated");
                patches = after.count("PATCH ") - before.count("PATCH ");
                restarts = after.restarts("") - before.restarts("");
                requests = after.total() - before.total();
                polls = after.endpoint(POLLS) - before.endpoint(POLLS);
                details = after.endpoint(DETAILS) - before.endpoint(DETAILS);
                b.check(patches == c.n as u64, &format!("one PATCH per CVM: {patches} for {}", c.n));
                b.check(restarts == c.n as u64, &format!("one restart per CVM: {restarts} for {}", c.n));
                if per_cvm {
                    b.check(polls == 0, "no batch poll on the old path");
                } else {
                    // Each CVM's detail: once for the hash preview, once when it runs again.
                    b.check(details == 2 * c.n as u64, &format!("two details per CVM: {details} for {}", c.n));
                    b.check(polls >= 1, "the waits poll with batch status");
                }
                walls.push(r.wall);
                sim.settle(b);
            }
            let med = median(walls);
            let ratio = med.as_secs_f64() / bound.as_secs_f64();
            // The request target is for its case: 100 updates at parallelism 100.
            let request_target = (!per_cvm && c.par >= c.n && c.chain == 0).then_some(400);
            let met = ratio <= 1.2 && request_target.is_none_or(|r| requests <= r);
            t.row(vec![
                format!("{} {}", c.n, c.what),
                c.par.to_string(),
                path.to_string(),
                secs(bound),
                secs(by_levels),
                secs(med),
                format!("{ratio:.3}"),
                requests.to_string(),
                polls.to_string(),
                details.to_string(),
                patches.to_string(),
                restarts.to_string(),
                match request_target {
                    Some(r) => format!("≤ 1.2, ≤ {r} requests"),
                    None if per_cvm => "-".into(),
                    None => "≤ 1.2".into(),
                },
                if b.quick || per_cvm { "-".into() } else { met.to_string() },
            ]);
        }
        sim.stop(b);
    }
    t.note(
        "Each update changes one CVM's compose file. Wall time is the whole `teeform apply --auto-approve` \
         process: refresh, plan, the updates and waiting until every CVM runs again. \
         Parallelism 10 is teeform's default (and Terraform's); 100 puts every update in one wave, where \
         fixed costs weigh most. The chain's CVMs sort last in plan order, the worst case for an executor \
         that starts ready steps in plan order. Requests are every request the apply sent: the refresh (one \
         list page, then each updated CVM's detail for its compose-hash preview), the PATCHes, the polls \
         while CVMs restart (batch status polls, or one detail GET per CVM per poll on the old path, \
         `TEEFORM_PER_CVM_READS=1`, which ran once per case) and one final detail per CVM. The \
         attestation gate is off (`--no-verify`) for these rows, as it was before it existed: on, it \
         adds one `GET /cvms/{id}/attestation` per updated CVM and the time to check it.",
    );
    vec![t]
}
