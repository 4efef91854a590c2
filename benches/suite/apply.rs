//! Applying many independent updates (and a dependency chain among them) with a simulated
//! restart time: the ratio of wall time to the critical-path bound.
//!
//! With parallelism P, N updates and a chain of C dependent updates, no executor can finish
//! before ceil(N / P) refresh GETs and max(ceil(N / P), C) update "waves", each a PATCH, the
//! restart and the GET that sees the CVM running: bound = ceil(N/P) × latency +
//! max(ceil(N/P), C) × (restart + 2 × latency).

use std::time::Duration;

use serde_json::json;
use teeform::sim::SimConfig;

use crate::harness::{Bench, Fleet, SimServer, Table, median, secs, teeform};

struct Case {
    what: &'static str,
    n: usize,
    chain: usize,
    par: usize,
}

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
            "bound",
            "level-by-level waves would take",
            "wall (median)",
            "ratio",
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
        let mut walls = Vec::new();
        let (mut patches, mut restarts) = (0, 0);
        for run in 0..b.runs {
            for i in 0..c.n {
                fleet.set_release(i, run + 1);
            }
            let before = sim.stats(b);
            let r = teeform(fleet.path(), &["apply", "--auto-approve", "--parallelism", &c.par.to_string()])
                .expect(0, "apply");
            let after = sim.stats(b);
            b.check(r.stdout.contains(&format!("0 to add, {} to change", c.n)), "every CVM is updated");
            patches = after.count("PATCH ") - before.count("PATCH ");
            restarts = after.restarts("") - before.restarts("");
            b.check(patches == c.n as u64, &format!("one PATCH per CVM: {patches} for {}", c.n));
            b.check(restarts == c.n as u64, &format!("one restart per CVM: {restarts} for {}", c.n));
            walls.push(r.wall);
            sim.settle(b);
        }
        let med = median(walls);
        let ratio = med.as_secs_f64() / bound.as_secs_f64();
        t.row(vec![
            format!("{} {}", c.n, c.what),
            c.par.to_string(),
            secs(bound),
            secs(by_levels),
            secs(med),
            format!("{ratio:.3}"),
            patches.to_string(),
            restarts.to_string(),
            "≤ 1.2".into(),
            if b.quick { "(quick)".into() } else { (ratio <= 1.2).to_string() },
        ]);
        sim.stop(b);
    }
    t.note(
        "Each update changes one CVM's compose file. Wall time is the whole `teeform apply --auto-approve` \
         process: refresh, plan, the updates and waiting until every CVM runs again. \
         Parallelism 10 is teeform's default (and Terraform's); 100 puts every update in one wave, where \
         fixed costs weigh most. The chain's CVMs sort last in plan order, the worst case for an executor \
         that starts ready steps in plan order.",
    );
    vec![t]
}
