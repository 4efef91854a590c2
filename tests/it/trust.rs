//! State you can trust: only CVMs teeform can prove it created are adopted; damaged or vanished
//! state is an error with a way back; each manifest has its own state.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use teeform::state::{Batch, JournalEntry, LockInfo, OpenOptions};

use crate::harness::{TestEnv, WEB};

const ALPHA: &str = "cvms:\n  alpha:\n    name: alpha-svc\n    compose: web.yml\n";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Another client creates a CVM named `name` (provision + commit); returns its app id.
fn stranger(t: &TestEnv, name: &str) -> String {
    let prov = t.create_outside(serde_json::json!({"name": name, "compose_file": {"docker_compose_file": WEB}}));
    prov["app_id"].as_str().unwrap().to_string()
}

/// Writes journal entries into the local state at `dir`, as a run that was killed leaves them.
fn leave_in_journal(dir: &Path, entries: Vec<JournalEntry>) {
    block_on(async {
        let opts = OpenOptions::local(dir.to_path_buf(), LockInfo::for_command("test"), Duration::ZERO);
        let store = teeform::state::open(&opts).await.unwrap();
        store.commit(Batch { journal_put: entries, ..Default::default() }).await.unwrap();
        store.close().await.unwrap();
    });
}

fn create_entry(address: &str, name: &str, app_id: Option<&str>) -> JournalEntry {
    let mut detail = serde_json::json!({"attrs": {"name": name, "compose": WEB}});
    if let Some(a) = app_id {
        detail["app_id"] = a.into();
    }
    JournalEntry {
        id: format!("t-{}", uuid::Uuid::new_v4().simple()),
        address: teeform::model::Address::parse(address).unwrap(),
        op: "create".into(),
        name: name.into(),
        cloud_id: None,
        started_at: "2026-01-01T00:00:00Z".into(),
        detail,
        endpoint: None,
    }
}

#[test]
fn a_create_refused_at_provision_leaves_nothing_to_adopt() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(ALPHA);
    t.run(&["plan", "--out", "p.plan"]).ok();
    // Between plan and apply, somebody else takes the name.
    stranger(&t, "alpha-svc");
    let r = t.run(&["apply", "p.plan"]);
    r.code(1);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);

    // The next plan does not take the stranger for an interrupted create of ours.
    let p = t.run(&["plan"]);
    p.code(1);
    assert!(!p.stderr.contains("interrupted"), "{}", p.stderr);
    assert!(p.stderr.contains("a CVM with that name already exists") && p.stderr.contains("teeform import cvm.alpha"));
    let cached = t.run(&["plan", "--refresh=false"]);
    assert!(!cached.ok().stderr.contains("interrupted"), "{}", cached.stderr);
    assert!(cached.stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", cached.stdout);
    let again = t.run(&["apply", "--refresh=false", "--auto-approve"]);
    again.code(1);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "", "nothing was adopted");
    t.run(&["destroy", "--auto-approve"]).ok();

    // The stranger's CVM was never touched.
    assert_eq!(t.stats()["cvm_count"], 1);
    assert_eq!(t.cvm_stat("alpha-svc", "updates"), 0);
    assert_eq!(t.cvm_stat("alpha-svc", "restarts"), 0);
    assert_eq!(t.count("DELETE "), 0);
    assert_eq!(t.count("PATCH "), 0);
}

#[test]
fn reconcile_adopts_only_the_cvm_its_own_provision_named() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(&format!("{ALPHA}  bravo:\n    name: bravo-svc\n    compose: web.yml\n"));
    t.run(&["plan", "--refresh=false"]).ok();
    // alpha-svc is somebody else's. bravo-svc is the CVM a commit of ours made just before
    // the run was killed (made here by hand, with the app id the journal recorded).
    stranger(&t, "alpha-svc");
    let ours = stranger(&t, "bravo-svc");
    let (_, other_prov) = t.api(
        "POST",
        "/cvms/provision",
        Some(serde_json::json!({"name": "alpha-svc-2", "compose_file": {"docker_compose_file": WEB}})),
    );
    leave_in_journal(
        &t.path("state"),
        vec![
            // A commit that never landed: its app id names no CVM, whatever has the name.
            create_entry("cvm.alpha", "alpha-svc", other_prov["app_id"].as_str()),
            create_entry("cvm.bravo", "bravo-svc", Some(&ours)),
        ],
    );
    let p = t.run(&["plan", "--refresh=false"]);
    p.ok();
    assert!(p.stderr.contains("cvm.bravo: a create interrupted earlier had succeeded"), "{}", p.stderr);
    assert!(!p.stderr.contains("cvm.alpha:"), "{}", p.stderr);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.bravo\n");

    // An entry from an older teeform (no app id) proves nothing: a warning, no adoption.
    leave_in_journal(&t.path("state"), vec![create_entry("cvm.alpha", "alpha-svc", None)]);
    let p = t.run(&["plan", "--refresh=false"]);
    assert!(p.ok().stderr.contains("cannot be proven to have made a CVM"), "{}", p.stderr);
    assert!(p.stderr.contains("teeform import cvm.alpha alpha-svc"), "{}", p.stderr);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.bravo\n");
    // Settled once: the next run says nothing more.
    assert!(!t.run(&["plan", "--refresh=false"]).ok().stderr.contains("cvm.alpha"));
}

/// What a state claims, as CVM path ids (after reconciling what its last run left).
fn claimed(t: &TestEnv, state: &str) -> Vec<String> {
    let r = t.run(&["--state", state, "plan", "--refresh=false"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let show = t.run(&["--state", state, "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.ok().stdout).unwrap();
    v["resources"].as_array().unwrap().iter().map(|r| r["ids"]["id"].as_str().unwrap().to_string()).collect()
}

/// Two applies of one manifest on two states at once, each killed at a random moment: no CVM
/// ends up in both states, and none is forgotten by both.
#[test]
fn racing_applies_on_two_states_never_share_or_lose_a_cvm() {
    let mut t = TestEnv::with_config(teeform::sim::SimConfig {
        latency_ms: 3,
        restart_ms: 60,
        boot_ms: 60,
        ..Default::default()
    });
    t.env.insert("TEEFORM_WAIT_TIMEOUT".into(), "20".into());
    t.write("web.yml", WEB);
    t.manifest(
        "cvms:\n  alpha:\n    name: alpha-svc\n    compose: web.yml\n  bravo:\n    name: bravo-svc\n    compose: web.yml\n  charlie:\n    name: charlie-svc\n    compose: web.yml\n",
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let trials = 10;
    for trial in 0..trials {
        let spawn = |state: &str| {
            t.command(&["--state", state, "apply", "--auto-approve"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        // B starts a little after A, so it often plans before A's creates land and provisions after.
        let mut a = spawn("sa");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
        let mut b = spawn("sb");
        let (ka, kb) = (rng.random_range(0..500u64), rng.random_range(0..500u64));
        for (child, after) in [(&mut a, ka), (&mut b, kb)] {
            if trial % 2 == 0 {
                std::thread::sleep(Duration::from_millis(after / 2));
                let _ = child.kill();
            }
        }
        let _ = (a.wait(), b.wait());
        t.settle();
        let (sa, sb) = (claimed(&t, "sa"), claimed(&t, "sb"));
        let in_sim: std::collections::BTreeSet<String> = t.stats()["cvms"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c["id"].as_str().unwrap().replace('-', ""))
            .collect();
        let norm = |v: &[String]| v.iter().map(|s| s.replace('-', "")).collect::<std::collections::BTreeSet<_>>();
        let (na, nb) = (norm(&sa), norm(&sb));
        assert!(na.is_disjoint(&nb), "trial {trial}: both states claim {:?}", na.intersection(&nb));
        let union: std::collections::BTreeSet<String> = na.union(&nb).cloned().collect();
        assert_eq!(union, in_sim, "trial {trial}: every CVM is in exactly one state");
        // Each state destroys only its own; afterwards nothing is left and nothing was deleted twice.
        let deletes = t.count("DELETE ");
        t.run(&["--state", "sa", "destroy", "--auto-approve"]).ok();
        t.run(&["--state", "sb", "destroy", "--auto-approve"]).ok();
        assert_eq!(t.stats()["cvm_count"], 0, "trial {trial}");
        assert_eq!(t.count("DELETE ") - deletes, in_sim.len() as u64, "trial {trial}: one delete per CVM");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// One way a state directory gets damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBit,
    ZeroRegion,
    Truncate,
    DeleteDb,
    DeleteBlob,
    /// Without its snapshot sled replays the log and stops at the damage: an older database.
    LoseSnapshotAndZeroTail,
    LoseSnapshotAndTruncate,
    DeleteSeal,
    GarbleSeal,
    /// The database put back from an older copy of the directory.
    OlderDatabase,
}

const DAMAGE: &[Damage] = &[
    Damage::FlipBit,
    Damage::ZeroRegion,
    Damage::Truncate,
    Damage::DeleteDb,
    Damage::DeleteBlob,
    Damage::LoseSnapshotAndZeroTail,
    Damage::LoseSnapshotAndTruncate,
    Damage::DeleteSeal,
    Damage::GarbleSeal,
    Damage::OlderDatabase,
];

fn inflict(state: &Path, older: &Path, d: Damage, rng: &mut rand::rngs::StdRng) {
    let db = state.join("sled/db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Where the log's data ends (the file is preallocated with zeros).
    let used = bytes.iter().rposition(|b| *b != 0).unwrap_or(0) + 1;
    let tail = used.saturating_sub(3000)..used;
    let lose_snapshot = || {
        for f in files_under(&state.join("sled")) {
            if f.file_name().unwrap().to_string_lossy().starts_with("snap.") {
                std::fs::remove_file(f).unwrap();
            }
        }
    };
    match d {
        Damage::FlipBit => {
            let i = rng.random_range(0..used);
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        Damage::ZeroRegion => {
            let i = rng.random_range(0..used);
            let end = (i + 4096).min(bytes.len());
            bytes[i..end].fill(0);
        }
        Damage::Truncate => bytes.truncate(rng.random_range(0..used)),
        Damage::DeleteDb => return std::fs::remove_file(&db).unwrap(),
        Damage::DeleteBlob => {
            let blobs = files_under(&state.join("sled/blobs"));
            return std::fs::remove_file(&blobs[rng.random_range(0..blobs.len())]).unwrap();
        }
        Damage::LoseSnapshotAndZeroTail => {
            lose_snapshot();
            let i = rng.random_range(tail);
            bytes[i..used].fill(0);
        }
        Damage::LoseSnapshotAndTruncate => {
            lose_snapshot();
            bytes.truncate(rng.random_range(tail));
        }
        Damage::DeleteSeal => return std::fs::remove_file(state.join("seal.json")).unwrap(),
        Damage::GarbleSeal => return std::fs::write(state.join("seal.json"), "{\"format\": 1, \"lin").unwrap(),
        Damage::OlderDatabase => {
            std::fs::remove_dir_all(state.join("sled")).unwrap();
            return copy_dir(&older.join("sled"), &state.join("sled"));
        }
    }
    std::fs::write(&db, &bytes).unwrap();
}

/// Damage of every kind, at random places: every command either reads the whole state or
/// says it is damaged and how to recover; `state recover` then brings back the whole state.
#[test]
fn a_damaged_state_is_an_error_with_a_way_back() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    // One large compose: sled keeps large values in blob files.
    let big =
        format!("services:\n  web:\n    image: nginx:1.27\n    labels:\n      pad: \"{}\"\n", "x".repeat(150_000));
    t.write("big.yml", &big);
    let manifest = |n: usize| {
        let mut m = String::from("cvms:\n");
        for i in 0..n {
            let compose = if i == 0 { "big.yml" } else { "web.yml" };
            m.push_str(&format!("  c{i}:\n    name: cvm-{i}-svc\n    compose: {compose}\n"));
        }
        m
    };
    t.manifest(&manifest(3));
    t.run(&["apply", "--auto-approve"]).ok();
    let older = t.path("older");
    copy_dir(&t.path("state"), &older);
    t.manifest(&manifest(6));
    t.run(&["apply", "--auto-approve"]).ok();
    let want = t.run(&["state", "list"]).ok().stdout.clone();
    assert_eq!(want.lines().count(), 6);
    let pristine = t.path("pristine");
    copy_dir(&t.path("state"), &pristine);

    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let mut detected = std::collections::BTreeMap::<String, usize>::new();
    for trial in 0..40 {
        let d = DAMAGE[trial % DAMAGE.len()];
        copy_dir(&pristine, &t.path("state"));
        inflict(&t.path("state"), &older, d, &mut rng);
        for args in [&["state", "list"][..], &["plan", "--refresh=false"], &["output"]] {
            let r = t.run(args);
            assert!(
                !r.stderr.contains("panicked") && !r.stderr.contains("backtrace") && !r.stderr.contains("Os {"),
                "trial {trial} {d:?} {args:?}: {}",
                r.stderr
            );
            if r.code == 0 {
                if args[0] == "state" {
                    assert_eq!(r.stdout, want, "trial {trial} {d:?}: read without error, so it must be whole");
                }
                continue;
            }
            assert_eq!(r.code, 1, "trial {trial} {d:?} {args:?}: {}", r.stderr);
            assert!(r.stderr.contains("is damaged"), "trial {trial} {d:?} {args:?}: {}", r.stderr);
            assert!(r.stderr.contains("teeform state recover"), "trial {trial} {d:?}: {}", r.stderr);
            *detected.entry(format!("{d:?}")).or_default() += 1;
        }
        if t.run(&["state", "list"]).code == 0 {
            continue;
        }
        let rec = t.run(&["state", "recover"]);
        assert!(rec.ok().stdout.contains("Restored the state from"), "trial {trial} {d:?}: {}", rec.stdout);
        assert_eq!(t.run(&["state", "list"]).ok().stdout, want, "trial {trial} {d:?}: the backup is whole");
        let p = t.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(p.code, 0, "trial {trial} {d:?}: {}{}", p.stdout, p.stderr);
    }
    // Every kind of damage that loses or changes data was caught at least once.
    for d in DAMAGE {
        if !matches!(d, Damage::DeleteBlob) {
            assert!(detected.contains_key(&format!("{d:?}")), "{d:?} was never detected: {detected:?}");
        }
    }
}

#[test]
fn a_saved_plan_from_before_a_recovery_is_stale() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(ALPHA);
    t.run(&["apply", "--auto-approve"]).ok();
    t.manifest(&ALPHA.replace("compose: web.yml", "compose: web.yml\n    vcpu: 2"));
    t.run(&["plan", "--out", "p.plan"]).ok();
    std::fs::remove_file(t.path("state/seal.json")).unwrap();
    let r = t.run(&["apply", "p.plan"]);
    r.code(1);
    assert!(r.stderr.contains("seal.json is missing"), "{}", r.stderr);
    t.run(&["state", "recover", "--keep-current"]).ok();
    let r = t.run(&["apply", "p.plan"]);
    r.code(1);
    assert!(r.stderr.contains("is stale"), "{}", r.stderr);
    assert_eq!(t.count("PATCH "), 0);
}

#[test]
fn a_state_directory_removed_during_apply_fails_the_run() {
    let mut t = TestEnv::with_config(teeform::sim::SimConfig { restart_ms: 1500, boot_ms: 1500, ..Default::default() });
    t.env.insert("TEEFORM_WAIT_TIMEOUT".into(), "20".into());
    t.write("web.yml", WEB);
    t.manifest(&format!("{ALPHA}  bravo:\n    name: bravo-svc\n    compose: web.yml\n    depends_on: [alpha]\n"));
    let child = t
        .command(&["apply", "--auto-approve"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While alpha boots, the state directory goes away.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.stats()["cvm_count"] == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Moved away in one step (what `rm -rf` does bit by bit, racing the files sled is still
    // writing, and then failing with "Directory not empty"), then deleted.
    let gone = t.path("state.removed");
    std::fs::rename(t.path("state"), &gone).unwrap();
    let out = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("Apply complete!"), "{err}");
    assert!(err.contains("was removed or replaced while teeform was using it"), "{err}");
    let id = t.cvm_stat("alpha-svc", "id");
    assert!(err.contains(&format!("`teeform import cvm.alpha {}`", id.as_str().unwrap())), "{err}");
    assert!(err.contains("State could not record every step"), "{err}");
    // bravo waited for alpha, whose result could not be recorded: it never started.
    assert_eq!(t.stats()["cvm_count"], 1);
}

/// A full disk (here: a file-size limit, which fails writes the same way for any user) is an
/// error naming the state's path in words, never Rust's debug text or a panic.
#[test]
fn a_full_disk_names_the_path_in_words() {
    use std::os::unix::process::CommandExt;
    let t = TestEnv::new();
    let big = format!("services:\n  web:\n    image: nginx:1.27\n    labels:\n      pad: \"{}\"\n", "x".repeat(20_000));
    t.write("web.yml", &big);
    t.manifest(ALPHA);
    let mut cmd = t.command(&["apply", "--auto-approve"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: 16 * 1024, rlim_max: 16 * 1024 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("./state/sled") || err.contains("./state/"), "names the path: {err}");
    assert!(err.contains("the file would grow past the size this process may write"), "{err}");
    for debug in ["Os {", "kind:", "panicked", "backtrace"] {
        assert!(!err.contains(debug), "no Rust debug text ({debug}): {err}");
    }
}

fn env_manifest(t: &TestEnv, file: &str, name: &str) {
    t.write(
        file,
        &format!(
            "provider:\n  phala:\n    endpoint: {}\ncvms:\n  web:\n    name: {name}\n    compose: web.yml\n",
            t.prefix()
        ),
    );
}

/// `prod.yaml` and `staging.yaml` side by side: each keeps its own state, and neither plan
/// touches the other's CVMs.
#[test]
fn two_manifests_in_one_folder_keep_their_own_state() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    env_manifest(&t, "prod.yaml", "web-prod");
    env_manifest(&t, "staging.yaml", "web-staging");
    t.run(&["-f", "prod.yaml", "apply", "--auto-approve"]).ok();
    assert!(t.file_exists("prod.state/sled") && !t.file_exists("state"), "prod.yaml's state is prod.state/");
    let p = t.run(&["-f", "staging.yaml", "plan"]);
    assert!(p.ok().stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    t.run(&["-f", "staging.yaml", "apply", "--auto-approve"]).ok();
    assert_eq!(t.stats()["cvm_count"], 2);
    assert_eq!(t.cvm_stat("web-prod", "restarts"), 0);
    for f in ["prod.yaml", "staging.yaml"] {
        assert!(t.run(&["-f", f, "plan"]).ok().stdout.contains("No changes."));
        assert_eq!(t.run(&["-f", f, "state", "list"]).ok().stdout, "cvm.web\n");
    }
    // Pointed at the other's state on purpose or by mistake: refused, nothing touched.
    let r = t.run(&["-f", "staging.yaml", "--state", "prod.state", "apply", "--auto-approve"]);
    r.code(1);
    assert!(r.stderr.contains("belongs to the manifest prod.yaml, not staging.yaml"), "{}", r.stderr);
    assert!(r.stderr.contains("`-f prod.yaml`"), "{}", r.stderr);
    // A renamed manifest takes its state along with `state bind`.
    std::fs::rename(t.path("prod.yaml"), t.path("production.yaml")).unwrap();
    std::fs::rename(t.path("prod.state"), t.path("production.state")).unwrap();
    let r = t.run(&["-f", "production.yaml", "plan"]);
    assert!(r.stderr.contains("if you renamed prod.yaml to production.yaml"), "{}", r.stderr);
    t.run(&["-f", "production.yaml", "state", "bind"]).ok();
    assert!(t.run(&["-f", "production.yaml", "plan"]).ok().stdout.contains("No changes."));
    assert_eq!(t.count("DELETE "), 0);
    assert_eq!(t.count("PATCH "), 0);
}

/// Writes `records` into `dir` the way teeform before 0.2 laid a state out: sled with the
/// state's identity and records, no seal, no manifest recorded, no seal.json or backup.json.
pub(crate) fn write_legacy_state(dir: &Path, records: &[serde_json::Value], journal: &[serde_json::Value]) {
    let db = sled::Config::new().path(dir.join("sled")).open().unwrap();
    let meta = serde_json::json!({"lineage": uuid::Uuid::new_v4().to_string(), "serial": 4, "salt": "00112233445566778899aabbccddeeff"});
    db.open_tree("meta").unwrap().insert("meta", serde_json::to_vec(&meta).unwrap()).unwrap();
    let res = db.open_tree("resources").unwrap();
    for r in records {
        res.insert(r["address"].as_str().unwrap(), serde_json::to_vec(r).unwrap()).unwrap();
    }
    let jnl = db.open_tree("journal").unwrap();
    for j in journal {
        jnl.insert(j["id"].as_str().unwrap(), serde_json::to_vec(j).unwrap()).unwrap();
    }
    db.flush().unwrap();
}

/// The records a state holds, as JSON (what `state show --json` prints is a record).
fn records(t: &TestEnv, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = args.to_vec();
    a.extend(["show", "--json"]);
    // The harness shows the API prefix as `$API`; the records hold the real one.
    let out = t.run(&a).ok().stdout.replace("$API", &t.prefix());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["resources"].as_array().unwrap().clone()
}

/// A folder where an earlier teeform kept prod.yaml's state in the shared `state/`: upgrading
/// loses nothing. staging.yaml is refused until prod.yaml has moved it; then each has its own.
#[test]
fn a_shared_state_from_an_earlier_teeform_moves_to_its_manifest() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    env_manifest(&t, "prod.yaml", "web-prod");
    env_manifest(&t, "staging.yaml", "web-staging");
    t.run(&["-f", "prod.yaml", "apply", "--auto-approve"]).ok();
    let recs = records(&t, &["-f", "prod.yaml"]);
    std::fs::remove_dir_all(t.path("prod.state")).unwrap();
    write_legacy_state(&t.path("state"), &recs, &[]);

    // Before prod.yaml claims it, staging.yaml will not guess whose it is.
    let r = t.run(&["-f", "staging.yaml", "plan"]);
    r.code(1);
    assert!(r.stderr.contains("did not record which manifest it belongs to"), "{}", r.stderr);
    assert!(r.stderr.contains("named `web-prod` where this manifest names it `web-staging`"), "{}", r.stderr);
    assert!(!t.file_exists("staging.state"), "nothing was created");

    let p = t.run(&["-f", "prod.yaml", "plan"]);
    assert!(p.ok().stdout.contains("No changes."), "{}{}", p.stdout, p.stderr);
    assert!(p.stderr.contains("Moved ./state to ./prod.state"), "{}", p.stderr);
    assert!(t.file_exists("prod.state/sled") && !t.file_exists("state"));

    let p = t.run(&["-f", "staging.yaml", "plan"]);
    assert!(p.ok().stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    assert_eq!(t.count("DELETE "), 0);
}

/// The common upgrade: one teeform.yaml and its state in `state/`, made by an earlier teeform.
/// It is used as it is (and from then on belongs to teeform.yaml).
#[test]
fn a_state_from_an_earlier_teeform_is_used_as_it_is() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(ALPHA);
    t.run(&["apply", "--auto-approve"]).ok();
    let recs = records(&t, &[]);
    std::fs::remove_dir_all(t.path("state")).unwrap();
    // An interrupted update the earlier version journaled comes along too.
    let entry = serde_json::json!({"id": "old-1", "address": "cvm.alpha", "op": "update", "name": "alpha-svc",
        "cloud_id": recs[0]["ids"]["id"], "started_at": "2026-01-01T00:00:00Z", "detail": null});
    write_legacy_state(&t.path("state"), &recs, &[entry]);
    let p = t.run(&["plan"]);
    assert!(p.ok().stdout.contains("No changes."), "{}{}", p.stdout, p.stderr);
    assert!(t.file_exists("state/seal.json"), "sealed on first use");
    let r = t.run(&["-f", "other.yaml", "--state", "state", "state", "bind"]);
    r.ok();
    assert!(r.stdout.contains("now belongs to other.yaml (it belonged to teeform.yaml)"), "{}", r.stdout);
}

/// `output`, `show` and `state list` outside a project: an error, and nothing created. With a
/// manifest but no state yet: an empty state, still nothing created.
#[test]
fn reading_commands_outside_a_project_create_nothing() {
    let t = TestEnv::new();
    for args in [
        &["output"][..],
        &["show"],
        &["state", "list"],
        &["state", "show", "cvm.x"],
        &["state", "rm", "cvm.x"],
        &["state", "migrate", "--to", "postgres"],
    ] {
        let r = t.run(args);
        r.code(1);
        assert!(
            r.stderr.contains("no teeform manifest (teeform.yaml) and no state (./state) here"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!t.file_exists("state"), "{args:?} created state/");
    }
    t.write("web.yml", WEB);
    t.manifest(ALPHA);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "");
    assert!(t.run(&["show"]).ok().stdout.contains("The state is empty."));
    t.run(&["output"]).ok();
    assert!(t.run(&["state", "show", "cvm.alpha"]).stderr.contains("`cvm.alpha` is not in state"));
    assert!(!t.file_exists("state"), "reading created state/");
}

/// While teeform.yaml's apply holds `state/`, another manifest in the folder still plans.
#[test]
fn another_manifests_running_apply_does_not_block_a_plan() {
    let t = TestEnv::with_config(teeform::sim::SimConfig { restart_ms: 1500, boot_ms: 1500, ..Default::default() });
    t.write("web.yml", WEB);
    t.manifest(ALPHA);
    env_manifest(&t, "prod.yaml", "web-prod");
    let child = t
        .command(&["apply", "--auto-approve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.stats()["cvm_count"] == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(t.file_exists("state/holder.json"), "teeform.yaml's apply holds state/");
    let p = t.run(&["-f", "prod.yaml", "plan"]);
    assert!(p.ok().stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "cvm.alpha\n");
}
