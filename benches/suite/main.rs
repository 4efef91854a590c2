//! teeform's benchmark suite: every figure in BENCHMARKS.md.
//!
//! `scripts/bench` (that is, `cargo bench --bench suite`) runs it at full size and prints one
//! markdown table per figure on stdout (progress on stderr). Run without `--bench` (as
//! `cargo test --all-targets` runs it) or with `--quick`, it runs every figure at small sizes
//! and asserts what does not depend on the machine's speed: API calls, restarts, that plans
//! find the one change, and that bytes written per state change stay flat. It never asserts
//! a time.
//!
//! Options: `--quick`, `--only plan,refresh,apply,writes,cli,secrets`, `--runs N` (repetitions of each
//! timed measurement; the median is reported), `--max-cvms N` (leave out the sizes above N, for a
//! figure whose largest size takes long: `secrets` at 10,000 Argon2id digests).

mod apply;
mod cli;
mod harness;
mod plan;
mod refresh;
mod secrets;
mod writes;

use harness::Bench;

const FIGURES: &[&str] = &["plan", "refresh", "apply", "writes", "cli", "secrets"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let only: Vec<String> = match value("--only") {
        Some(list) => list.split(',').map(str::to_string).collect(),
        None => FIGURES.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(bad) = only.iter().find(|f| !FIGURES.contains(&f.as_str())) {
        eprintln!("unknown figure `{bad}` (known: {})", FIGURES.join(", "));
        std::process::exit(1);
    }
    let runs = value("--runs").and_then(|r| r.parse().ok()).unwrap_or(if quick { 1 } else { 3 });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let max_cvms = value("--max-cvms").and_then(|r| r.parse().ok()).unwrap_or(usize::MAX);
    let b = Bench { rt, quick, runs, max_cvms };

    println!("## teeform benchmarks{}\n", if quick { " (quick mode: small sizes, no timing claims)" } else { "" });
    println!("- machine: {}", harness::machine());
    println!("- date: {}", humantime::format_rfc3339_seconds(std::time::SystemTime::now()));
    println!("- commit: {}", git_head());
    println!("- load average at start: {}", harness::loadavg());
    println!("- command: `scripts/bench{}`\n", if quick { " --quick" } else { "" });
    for f in &only {
        eprintln!("== {f} (load average {})", harness::loadavg());
        let tables = match f.as_str() {
            "plan" => plan::run(&b),
            "refresh" => refresh::run(&b),
            "apply" => apply::run(&b),
            "writes" => writes::run(&b),
            "cli" => cli::run(&b),
            "secrets" => secrets::run(&b),
            _ => unreachable!("checked above"),
        };
        for t in tables {
            println!("{}", t.render());
        }
    }
    println!("- load average at end: {}", harness::loadavg());
}

fn git_head() -> String {
    let out = std::process::Command::new("git").args(["describe", "--always", "--dirty"]).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}
