//! Crash safety: apply killed with SIGKILL at random moments, with and without injected
//! faults, then run again; concurrent applies on one state; Ctrl-C. After every trial the
//! simulator must hold exactly the desired CVMs, state must agree, and plan must say
//! `No changes.`
//!
//! Trials are seeded and reproducible: `TEEFORM_CRASH_SEED` (default 42) and
//! `TEEFORM_CRASH_TRIALS` (default 50 per mode). A summary is written to
//! `target/test-reports/crash-*.txt`.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use teeform::sim::SimConfig;

use crate::harness::TestEnv;

const POOL: &[&str] = &["alpha", "bravo", "charlie", "delta", "echo"];

struct Desired {
    cvms: Vec<(String, u32, bool, String)>,
}

impl Desired {
    fn random(rng: &mut rand::rngs::StdRng) -> Desired {
        let mut cvms = Vec::new();
        for name in POOL {
            if rng.random_bool(0.7) {
                cvms.push((
                    name.to_string(),
                    rng.random_range(1..=3),
                    rng.random_bool(0.5),
                    ["blue", "green"][rng.random_range(0..2)].to_string(),
                ));
            }
        }
        if cvms.is_empty() {
            cvms.push(("alpha".into(), 1, false, "blue".into()));
        }
        Desired { cvms }
    }

    fn names(&self) -> BTreeSet<String> {
        self.cvms.iter().map(|(n, ..)| format!("{n}-svc")).collect()
    }

    fn manifest(&self) -> String {
        let keys: BTreeSet<&str> = self.cvms.iter().map(|(n, ..)| n.as_str()).collect();
        let mut m = String::from("cvms:\n");
        for (name, vcpu, newer, mode) in &self.cvms {
            m.push_str(&format!("  {name}:\n    name: {name}-svc\n    compose: {}\n    vcpu: {vcpu}\n    memory: 2048\n    env:\n      MODE: {mode}\n", if *newer { "new.yml" } else { "old.yml" }));
            // bravo and delta reference alpha when it exists: exercises dependency order.
            if matches!(name.as_str(), "bravo" | "delta") && keys.contains("alpha") {
                m.push_str("      ALPHA: ${cvm.alpha.app_id}\n");
            }
        }
        m
    }
}

fn fault_config(faults: bool) -> SimConfig {
    SimConfig {
        latency_ms: 5,
        restart_ms: 120,
        boot_ms: 120,
        error_rate: if faults { 0.10 } else { 0.0 },
        error_after_rate: if faults { 0.05 } else { 0.0 },
        hang_rate: if faults { 0.05 } else { 0.0 },
        hang_ms: 5_000,
        seed: 7,
        ..Default::default()
    }
}

fn env_for(t: &mut TestEnv) {
    t.env.insert("TEEFORM_HTTP_TIMEOUT".into(), "0.5".into());
    t.env.insert("TEEFORM_RETRY_BASE_MS".into(), "30".into());
    t.env.insert("TEEFORM_RETRY_MAX_ATTEMPTS".into(), "8".into());
    t.env.insert("TEEFORM_WAIT_TIMEOUT".into(), "20".into());
    t.write("old.yml", "services:\n  app:\n    image: nginx:1.27\n");
    t.write("new.yml", "services:\n  app:\n    image: nginx:1.28\n");
}

/// Runs apply until it succeeds (faults can fail a run; that is fine as long as it converges).
fn converge(t: &TestEnv, trial: usize) {
    for attempt in 0..12 {
        let r = t.run(&["apply", "--auto-approve"]);
        if r.code == 0 {
            return;
        }
        assert_eq!(r.code, 1, "trial {trial}: unexpected exit\n{}", r.stderr);
        if attempt == 11 {
            panic!("trial {trial}: apply did not converge:\n{}", r.stderr);
        }
    }
}

fn check_converged(t: &TestEnv, d: &Desired, trial: usize) {
    let stats = t.stats();
    let in_sim: BTreeSet<String> = stats["cvms"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(in_sim, d.names(), "trial {trial}: the simulator must hold exactly the desired CVMs");
    assert_eq!(stats["cvm_count"].as_u64().unwrap() as usize, d.cvms.len(), "trial {trial}: no duplicates");
    let listed = t.run(&["state", "list"]);
    let in_state: BTreeSet<String> = listed.stdout.lines().map(str::to_string).collect();
    let want: BTreeSet<String> = d.cvms.iter().map(|(n, ..)| format!("cvm.{n}")).collect();
    assert_eq!(in_state, want, "trial {trial}: state must list exactly the desired CVMs");
    for (name, vcpu, ..) in &d.cvms {
        assert_eq!(stats["cvms"][format!("{name}-svc")]["vcpu"], *vcpu, "trial {trial}: {name} has the desired vcpu");
    }
    // Plan can meet injected faults too: retry it a few times, it must say No changes.
    for attempt in 0..8 {
        let p = t.run(&["plan", "--detailed-exitcode"]);
        match p.code {
            0 => {
                assert!(p.stdout.contains("No changes."), "trial {trial}: {}", p.stdout);
                return;
            }
            1 if attempt < 7 => continue,
            code => panic!("trial {trial}: plan after convergence exited {code}\n{}{}", p.stdout, p.stderr),
        }
    }
}

/// Starts `args` in the background and returns once the simulator holds its first CVM.
fn spawn_apply_until_first_cvm(t: &TestEnv, args: &[&str]) -> std::process::Child {
    let child = t.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.stats()["cvm_count"] == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn report(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-reports");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), text);
    eprintln!("{text}");
}

fn kill_trials(faults: bool) {
    let seed: u64 =
        std::env::var("TEEFORM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42) + u64::from(faults);
    let trials: usize = std::env::var("TEEFORM_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = TestEnv::with_config(fault_config(faults));
    env_for(&mut t);
    let mut killed_mid_run = 0;
    let start = Instant::now();
    for trial in 0..trials {
        let d = Desired::random(&mut rng);
        t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{}", t.prefix(), d.manifest()));
        let mut child = t
            .command(&["apply", "--auto-approve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apply starts");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..900)));
        if child.try_wait().expect("wait").is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        converge(&t, trial);
        check_converged(&t, &d, trial);
    }
    let s = t.stats();
    report(
        if faults { "crash-faults" } else { "crash-kill9" },
        &format!(
            "crash harness ({}): seed={seed} trials={trials} killed_mid_apply={killed_mid_run} injected_errors={} injected_hangs={} api_requests={} elapsed={:.0}s: all converged",
            if faults { "kill -9 + 20% faults" } else { "kill -9" },
            s["injected_errors"],
            s["injected_hangs"],
            s["total_requests"],
            start.elapsed().as_secs_f64()
        ),
    );
    assert!(
        trials < 5 || killed_mid_run > trials / 3,
        "too few kills landed mid-apply ({killed_mid_run}/{trials}): the harness is not testing anything"
    );
}

/// SIGTERM (what CI sends on cancel) or SIGINT at random moments, sometimes twice: the run
/// stops with a clear message (never "0 failed, 0 skipped" after everything finished), and the
/// next runs converge exactly as after kill -9.
fn signal_trials(sig: i32) {
    let name = if sig == libc::SIGTERM { "sigterm" } else { "sigint" };
    let seed: u64 = std::env::var("TEEFORM_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42) + 7;
    let trials: usize =
        std::env::var("TEEFORM_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).map_or(20, |n: usize| n.div_ceil(2));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + sig as u64);
    let mut t = TestEnv::with_config(fault_config(false));
    env_for(&mut t);
    let (mut stopped, mut aborted, mut finished) = (0, 0, 0);
    for trial in 0..trials {
        let d = Desired::random(&mut rng);
        t.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{}", t.prefix(), d.manifest()));
        let child = t
            .command(&["apply", "--auto-approve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("apply starts");
        // Signal at a random moment once the apply has begun changing things (a wall-clock
        // delay alone lands before or after the operations on a loaded machine).
        let before = mutating_requests(&t);
        let deadline = Instant::now() + Duration::from_secs(20);
        while mutating_requests(&t) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        let twice = rng.random_bool(0.25);
        // SAFETY: signals to our own child process.
        unsafe { libc::kill(child.id() as i32, sig) };
        if twice {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..50)));
            unsafe { libc::kill(child.id() as i32, sig) };
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            // It finished before the signal, or every step had finished when it came.
            Some(0) => finished += 1,
            Some(1) => {
                stopped += 1;
                let why = if sig == libc::SIGTERM { "termination requested (SIGTERM)" } else { "interrupt received" };
                assert!(err.contains(why), "trial {trial}: exit 1 without saying why\n{err}");
                assert!(err.contains("the run was interrupted; run apply again"), "trial {trial}\n{err}");
                assert!(!err.contains("0 failed, 0 skipped"), "trial {trial}: nothing was stopped\n{err}");
            }
            // A second signal, or one before any operation started: stopped at once, saying so.
            Some(code @ (130 | 143)) => {
                aborted += 1;
                assert_eq!(code, if sig == libc::SIGTERM { 143 } else { 130 }, "trial {trial}\n{err}");
                assert!(
                    err.contains("aborting; the next run will reconcile")
                        || err.contains("stopping (no operation was in flight)"),
                    "trial {trial}\n{err}"
                );
            }
            other => panic!("trial {trial}: unexpected exit {other:?}\n{err}"),
        }
        converge(&t, trial);
        check_converged(&t, &d, trial);
    }
    report(
        &format!("crash-{name}"),
        &format!(
            "signal harness ({name}): trials={trials} finished={finished} stopped={stopped} stopped_at_once={aborted}: all converged"
        ),
    );
    assert!(trials < 5 || stopped > 0, "no signal landed mid-apply: the harness is not testing anything");
}

/// Requests the simulator has answered that can change something (not GET).
fn mutating_requests(t: &TestEnv) -> u64 {
    let stats = t.stats();
    let requests = stats["requests"].as_object().expect("requests by method and path");
    requests.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, n)| n.as_u64().unwrap_or(0)).sum()
}

#[test]
fn sigterm_at_random_moments_converges() {
    signal_trials(libc::SIGTERM);
}

#[test]
fn sigint_at_random_moments_converges() {
    signal_trials(libc::SIGINT);
}

#[test]
fn kill9_at_random_moments_converges() {
    kill_trials(false);
}

#[test]
fn kill9_with_injected_faults_converges() {
    kill_trials(true);
}

#[test]
fn concurrent_applies_on_one_state() {
    let mut t = TestEnv::with_config(SimConfig { restart_ms: 300, boot_ms: 300, ..Default::default() });
    env_for(&mut t);
    let d =
        Desired { cvms: vec![("alpha".into(), 1, false, "blue".into()), ("bravo".into(), 2, true, "green".into())] };
    t.manifest(&d.manifest());
    let spawn = |extra: &[&str]| {
        let mut args = vec!["apply", "--auto-approve"];
        args.extend_from_slice(extra);
        t.command(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let holding = |t: &TestEnv| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !t.file_exists("state/holder.json") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Without waiting: exactly one wins, the other fails at once naming the holder.
    let a = spawn(&[]);
    holding(&t);
    let b = spawn(&[]);
    let (ra, rb) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [ra.status.code().unwrap(), rb.status.code().unwrap()];
    assert!(codes.contains(&0) && codes.contains(&1), "codes {codes:?}");
    let loser = if codes[0] == 1 { &ra } else { &rb };
    let msg = String::from_utf8_lossy(&loser.stderr);
    assert!(msg.contains("is locked") && msg.contains("`apply` by"), "{msg}");
    assert!(msg.contains("force-unlock"), "{msg}");
    check_converged(&t, &d, 0);

    // With --lock-timeout the second waits, then finds nothing to do.
    let d2 =
        Desired { cvms: vec![("alpha".into(), 3, false, "blue".into()), ("bravo".into(), 2, true, "green".into())] };
    t.manifest(&d2.manifest());
    let a = spawn(&[]);
    holding(&t);
    let b = spawn(&["--lock-timeout", "60s"]);
    let (ra, rb) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!((ra.status.code(), rb.status.code()), (Some(0), Some(0)), "{}", String::from_utf8_lossy(&rb.stderr));
    assert!(String::from_utf8_lossy(&rb.stdout).contains("No changes."));
    check_converged(&t, &d2, 1);
    assert_eq!(t.cvm_stat("alpha-svc", "updates"), 1, "the update happened once");
}

#[test]
fn ctrl_c_finishes_in_flight_work_and_stops() {
    let mut t = TestEnv::with_config(SimConfig { restart_ms: 800, boot_ms: 800, ..Default::default() });
    env_for(&mut t);
    let d = Desired {
        cvms: vec![
            ("alpha".into(), 1, false, "a".into()),
            ("charlie".into(), 1, false, "c".into()),
            ("echo".into(), 1, false, "e".into()),
        ],
    };
    t.manifest(&d.manifest());
    // Interrupt while the first CVM boots.
    let child = spawn_apply_until_first_cvm(&t, &["apply", "--auto-approve", "--parallelism", "1"]);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupt received"), "{err}");
    assert!(err.contains("skipped: the run was interrupted"), "{err}");
    // The in-flight create finished and was recorded; nothing else started.
    assert_eq!(t.stats()["cvm_count"], 1);
    assert_eq!(t.run(&["state", "list"]).stdout.lines().count(), 1);
    t.run(&["apply", "--auto-approve"]).ok();
    check_converged(&t, &d, 0);
}

#[test]
fn sigterm_finishes_in_flight_work_and_stops() {
    let mut t = TestEnv::with_config(SimConfig { restart_ms: 800, boot_ms: 800, ..Default::default() });
    env_for(&mut t);
    let d = Desired { cvms: vec![("alpha".into(), 1, false, "a".into()), ("charlie".into(), 1, false, "c".into())] };
    t.manifest(&d.manifest());
    let child = spawn_apply_until_first_cvm(&t, &["apply", "--auto-approve", "--parallelism", "1"]);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("termination requested (SIGTERM): no new operations will start"), "{err}");
    assert!(err.contains("skipped: the run was interrupted"), "{err}");
    assert!(err.contains("1 added"), "the in-flight create finished and is reported: {err}");
    assert_eq!(t.stats()["cvm_count"], 1);
    assert_eq!(t.run(&["state", "list"]).stdout.lines().count(), 1);
    t.run(&["apply", "--auto-approve"]).ok();
    check_converged(&t, &d, 0);
}

#[test]
fn a_signal_before_any_operation_stops_at_once_and_says_so() {
    let mut t = TestEnv::with_config(SimConfig { latency_ms: 1500, ..Default::default() });
    env_for(&mut t);
    t.env.insert("TEEFORM_HTTP_TIMEOUT".into(), "30".into());
    let d = Desired { cvms: vec![("alpha".into(), 1, false, "a".into())] };
    t.manifest(&d.manifest());
    for (sig, code, name) in
        [(libc::SIGTERM, 143, "termination requested (SIGTERM)"), (libc::SIGINT, 130, "interrupt received (Ctrl-C)")]
    {
        let child = t
            .command(&["apply", "--auto-approve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // While plan waits for the (slow) API.
        std::thread::sleep(Duration::from_millis(600));
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(&format!("{name}: stopping (no operation was in flight)")), "{err}");
        assert_eq!(t.stats()["cvm_count"], 0);
    }
}

#[test]
fn a_create_that_fails_to_boot_is_tainted_and_replaced() {
    let mut t = TestEnv::with_config(SimConfig {
        restart_ms: 50,
        boot_ms: 50,
        fail_boot: vec!["bravo-svc".into()],
        ..Default::default()
    });
    env_for(&mut t);
    let d = Desired { cvms: vec![("alpha".into(), 1, false, "a".into()), ("bravo".into(), 1, false, "b".into())] };
    t.manifest(&d.manifest());
    let r = t.run(&["apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("the CVM is tainted and the next apply replaces it once"), "{}", r.stderr);
    let show = t.run(&["state", "show", "cvm.bravo"]);
    assert!(show.ok().stdout.contains("tainted      = true"), "{}", show.stdout);
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("# cvm.bravo is tainted, so it must be replaced"), "{}", p.stdout);
    assert!(p.stdout.contains("Plan: 1 to add, 0 to change, 1 to destroy."), "{}", p.stdout);
}

#[test]
fn retries_are_visible_and_succeed() {
    let mut t =
        TestEnv::with_config(SimConfig { restart_ms: 50, boot_ms: 50, error_rate: 0.3, seed: 3, ..Default::default() });
    env_for(&mut t);
    let d = Desired { cvms: vec![("alpha".into(), 1, false, "a".into())] };
    t.manifest(&d.manifest());
    let mut last = None;
    for _ in 0..10 {
        let r = t.run(&["apply", "--auto-approve"]);
        let done = r.code == 0;
        last = Some(r);
        if done {
            break;
        }
    }
    let all: String = last.iter().map(|r| r.stderr.clone()).collect();
    assert!(t.stats()["injected_errors"].as_u64().unwrap() > 0);
    assert!(all.contains("Retrying") || t.run(&["plan"]).stderr.contains("Retrying"), "retries are shown");
    check_converged(&t, &d, 0);
}

#[test]
fn a_second_ctrl_c_aborts_at_once_and_the_next_run_converges() {
    let mut t = TestEnv::with_config(SimConfig { restart_ms: 3000, boot_ms: 3000, ..Default::default() });
    env_for(&mut t);
    let d = Desired { cvms: vec![("alpha".into(), 1, false, "a".into()), ("charlie".into(), 2, false, "c".into())] };
    t.manifest(&d.manifest());
    let child = spawn_apply_until_first_cvm(&t, &["apply", "--auto-approve"]);
    // SAFETY: signals to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(2), "the second Ctrl-C does not wait for the boot");
    // Fast boots again for the follow-up run.
    t.configure(serde_json::json!({"restart_ms": 50, "boot_ms": 50}));
    t.run(&["apply", "--auto-approve"]).ok();
    check_converged(&t, &d, 0);
}

#[test]
fn a_killed_apply_is_not_resumed_against_another_endpoint() {
    let mut t = TestEnv::with_config(SimConfig { restart_ms: 3000, boot_ms: 3000, ..Default::default() });
    env_for(&mut t);
    let d = Desired { cvms: vec![("alpha".into(), 1, false, "a".into())] };
    t.manifest(&d.manifest());
    let mut child = spawn_apply_until_first_cvm(&t, &["apply", "--auto-approve"]);
    child.kill().unwrap();
    child.wait().unwrap();
    // Against another endpoint the CVM being created would look gone: created again, the
    // first one forgotten.
    let manifest = std::fs::read_to_string(t.path("teeform.yaml")).unwrap();
    t.write("teeform.yaml", &manifest.replace(&t.prefix(), "local"));
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("cvm.alpha lives at $API, but the manifest now points at local"), "{}", r.stderr);
    t.write("teeform.yaml", &manifest);
    t.run(&["apply", "--auto-approve"]).ok();
    check_converged(&t, &d, 0);
}

#[test]
fn force_unlock_removes_only_a_dead_holders_record() {
    let mut t = TestEnv::new();
    env_for(&mut t);
    t.manifest("cvms: {}\n");
    t.run(&["plan"]).ok();
    // A record left by a process that died: the OS lock is gone, only the name remains.
    t.write(
        "state/holder.json",
        r#"{"id":"dead-1","user":"ci","host":"runner","pid":999999,"command":"apply","since":"2026-01-01T00:00:00Z"}"#,
    );
    t.run(&["plan"]).ok();
    t.write(
        "state/holder.json",
        r#"{"id":"dead-1","user":"ci","host":"runner","pid":999999,"command":"apply","since":"2026-01-01T00:00:00Z"}"#,
    );
    t.run(&["force-unlock", "nope"]).code(1);
    t.run(&["force-unlock", "dead-1"]).ok();
    assert!(!t.file_exists("state/holder.json"));
}

#[test]
fn force_unlock_of_a_running_holder_says_to_wait_not_to_force_unlock() {
    let mut t = TestEnv::with_config(SimConfig { boot_ms: 1500, ..Default::default() });
    env_for(&mut t);
    t.manifest("cvms:\n  alpha:\n    name: alpha-svc\n    compose: old.yml\n");
    let apply = t.command(&["apply", "--auto-approve"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !t.file_exists("state/holder.json") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let holder: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("state/holder.json")).unwrap()).unwrap();
    let id = holder["id"].as_str().unwrap();
    let r = t.run(&["force-unlock", id]);
    r.code(1);
    assert!(r.stderr.contains("is locked by a process that is still running"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("stop that process (pid {}", holder["pid"])), "{}", r.stderr);
    assert!(!r.stderr.contains("run `teeform force-unlock"), "no hint to run what just ran: {}", r.stderr);
    let out = apply.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!t.file_exists("state/holder.json"), "the holder removed its own lock");
}
