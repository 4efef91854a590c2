//! Refreshing N CVMs with injected API latency at parallelism P: the ideal is N × latency / P.

use std::time::Duration;

use serde_json::json;
use teeform::sim::SimConfig;

use crate::harness::{Bench, Fleet, SimServer, Table, median, secs, teeform};

pub fn run(b: &Bench) -> Vec<Table> {
    let n = b.size(1_000, 20);
    let latency_ms = b.size(50, 5) as u64;
    let par = 10;
    let sim = SimServer::start(b, SimConfig { boot_ms: 0, restart_ms: 0, ..Default::default() });
    let fleet = Fleet::new(&sim.prefix, n, 0, false);
    fleet.apply_all(100);
    sim.configure(b, json!({ "latency_ms": latency_ms }));

    let ideal = Duration::from_millis(latency_ms) * (n as u32).div_ceil(par as u32);
    let mut walls = Vec::new();
    for _ in 0..b.runs {
        let before = sim.stats(b);
        let r = teeform(fleet.path(), &["plan", "--parallelism", &par.to_string(), "--detailed-exitcode"])
            .expect(0, "refreshing plan");
        let after = sim.stats(b);
        let gets = after.count("GET /api/v1/cvms/") - before.count("GET /api/v1/cvms/");
        b.check(gets == n as u64, &format!("one GET per CVM: {gets} GETs for {n} CVMs"));
        b.check(after.total() - before.total() == n as u64, "refresh makes no other request");
        walls.push(r.wall);
    }
    let med = median(walls.clone());
    let ratio = med.as_secs_f64() / ideal.as_secs_f64();
    let mut t = Table::new(
        "refresh: plan with refresh, injected API latency",
        &["CVMs", "latency", "parallelism", "ideal", "wall (median)", "ratio", "target", "met"],
    );
    t.row(vec![
        n.to_string(),
        format!("{latency_ms} ms"),
        par.to_string(),
        secs(ideal),
        secs(med),
        format!("{ratio:.3}"),
        "≤ 1.2".into(),
        if b.quick { "(quick)".into() } else { (ratio <= 1.2).to_string() },
    ]);
    t.note(
        "Wall time is the whole `teeform plan --parallelism 10` process (no changes found), so the ratio \
         includes start-up, manifest, state and planning; the ideal counts only the GETs: \
         ceil(N / P) × latency.",
    );
    sim.stop(b);
    vec![t]
}
