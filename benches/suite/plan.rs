//! `plan --refresh=false` with N CVMs in state and one change: wall time and peak RSS.

use teeform::sim::SimConfig;

use crate::harness::{Bench, Fleet, SimServer, Table, median, secs, teeform};

pub fn run(b: &Bench) -> Vec<Table> {
    let sizes = if b.quick { vec![30] } else { vec![1_000, 10_000] };
    let mut t = Table::new(
        "plan --refresh=false, N CVMs in state, one change",
        &["CVMs in state", "wall (median)", "wall (min)", "CPU (median)", "peak RSS", "state on disk", "target", "met"],
    );
    for n in sizes {
        // Zero boot and restart times: creating the fleet is then only teeform's own work.
        let sim = SimServer::start(b, SimConfig { boot_ms: 0, restart_ms: 0, ..Default::default() });
        let fleet = Fleet::new(&sim.prefix, n, 0, true);
        let created = fleet.apply_all(100);
        eprintln!("  created {n} CVMs through apply in {}", secs(created.wall));
        // State is exactly what apply left: a plan finds nothing to do.
        let p =
            teeform(fleet.path(), &["plan", "--refresh=false", "--detailed-exitcode"]).expect(0, "plan after apply");
        b.check(p.stdout.contains("No changes."), "a plan right after apply has no changes");

        fleet.set_release(n / 2, 1);
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let mut rss = 0;
        for _ in 0..b.runs {
            let r = teeform(fleet.path(), &["plan", "--refresh=false", "--detailed-exitcode"]).expect(2, "plan");
            b.check(r.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "the plan finds the one change");
            walls.push(r.wall);
            cpus.push(r.cpu);
            rss = rss.max(r.max_rss_kib);
        }
        let (med, min) = (median(walls.clone()), walls.iter().min().copied().unwrap_or_default());
        let mb = rss as f64 * 1024.0 / 1e6;
        let met = n < 10_000 || (med.as_secs_f64() < 1.0 && mb < 200.0);
        t.row(vec![
            n.to_string(),
            secs(med),
            secs(min),
            secs(median(cpus)),
            format!("{mb:.0} MB"),
            format!("{:.1} MB", fleet.state_bytes() as f64 / 1e6),
            if n == 10_000 { "< 1 s, < 200 MB".into() } else { "-".into() },
            if b.quick { "(quick)".into() } else { met.to_string() },
        ]);
        sim.stop(b);
    }
    t.note(
        "Each CVM has its own compose file, three env vars and (9 in 10) a `${cvm.X.app_id}` reference to its \
         group's first CVM; state was written by `teeform apply` against the simulator. One compose file \
         changes. Wall time is the whole `teeform` process (start, manifest, state open, plan, render); \
         CPU is user + system time and peak RSS the child's `ru_maxrss`, both from `wait4`; \
         CPU time exceeding wall time means compose files were checked on both cores.",
    );
    vec![t]
}
