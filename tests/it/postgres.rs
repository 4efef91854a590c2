//! State on PostgreSQL, as a team uses it: several project directories (runners) share one
//! state and one simulated cloud. The tests marked `ignore` need a server: `scripts/test-postgres`
//! starts one, exports TEEFORM_PG_CONN (and TEEFORM_TEST_PG_RESTART) and runs them.

use std::process::{Child, Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use teeform::sim::SimConfig;

use crate::harness::{Run, TestEnv, WEB, runtime};

/// Tests share one server; the one that restarts it runs alone.
static SERVER: RwLock<()> = RwLock::new(());

const ONE: &str = "backend: postgres\ncvms:\n  web:\n    name: team-web\n    compose: web.yml\n";
const TWO: &str = "backend: postgres
cvms:
  web:
    name: team-web
    compose: web.yml
  db:
    name: team-db
    compose: web.yml
outputs:
  web_app_id: ${cvm.web.app_id}
";

fn conn() -> String {
    std::env::var("TEEFORM_PG_CONN").expect("TEEFORM_PG_CONN (run scripts/test-postgres)")
}

/// The runner that owns the simulator: a project directory using PostgreSQL in a workspace of
/// its own (so tests run in parallel on one database).
fn first(boot_ms: u64, body: &str) -> TestEnv {
    first_with(SimConfig { restart_ms: 150, boot_ms, ..Default::default() }, body)
}

fn first_with(cfg: SimConfig, body: &str) -> TestEnv {
    let mut t = TestEnv::with_config(cfg);
    t.env.insert("TEEFORM_PG_CONN".into(), conn());
    // The test server's CA (the server speaks TLS, as a team's would).
    if let Ok(ca) = std::env::var("SSL_CERT_FILE") {
        t.env.insert("SSL_CERT_FILE".into(), ca);
    }
    t.env.insert("TEEFORM_WORKSPACE".into(), format!("it-{}", uuid::Uuid::new_v4().simple()));
    t.write("web.yml", WEB);
    t.manifest(body);
    t
}

/// Another runner: its own directory, the same state and the same cloud as `a`.
fn second(a: &TestEnv, body: &str) -> TestEnv {
    let mut b = TestEnv::new();
    b.env = a.env.clone();
    b.write("web.yml", WEB);
    b.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{body}", a.prefix()));
    b
}

/// Starts teeform in `t`'s directory without waiting for it.
fn spawn(t: &TestEnv, args: &[&str]) -> Child {
    t.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("teeform runs")
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("teeform finishes");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Waits until the simulated cloud has at least `n` CVMs (an apply is under way).
fn until_cvms(t: &TestEnv, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.stats()["cvm_count"].as_u64().unwrap() < n {
        assert!(Instant::now() < deadline, "no CVM was created");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The CVM names the cloud has, each as often as it exists.
fn names(t: &TestEnv) -> Vec<String> {
    let (status, page) = t.api("GET", "/cvms/paginated?page_size=100", None);
    assert_eq!(status, 200, "{page}");
    let mut names: Vec<String> =
        page["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

fn password() -> String {
    let cfg: tokio_postgres::Config = conn().parse().unwrap();
    String::from_utf8(cfg.get_password().expect("the test server has a password").to_vec()).unwrap()
}

#[track_caller]
fn no_secret(r: &Run) {
    let pw = password();
    assert!(!r.stdout.contains(&pw) && !r.stderr.contains(&pw), "the connection password was printed:\n{r:?}");
}

#[track_caller]
fn no_changes(t: &TestEnv) {
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(0);
    assert!(p.stdout.contains("No changes."), "{}", p.stdout);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn postgres_state_is_shared_between_directories() {
    let _server = SERVER.read().unwrap();
    let a = first(150, TWO);
    let b = second(&a, TWO);
    let r = a.run(&["apply", "--auto-approve"]);
    r.ok();
    no_secret(&r);
    assert!(!a.file_exists("state"), "no local state was written");
    no_changes(&b);
    // Commands that read state without planning find it through the manifest.
    let list = b.run(&["state", "list"]);
    assert_eq!(list.ok().stdout, "cvm.db\ncvm.web\n");
    let app_id = a.cvm_stat("team-web", "app_id");
    let out = b.run(&["output", "web_app_id", "--raw"]);
    assert_eq!(out.ok().stdout.trim(), app_id.as_str().unwrap());
    // `run` masks each env's own simulator prefix as $API; `b` talks to `a`'s, so mask that too.
    let show = |t: &TestEnv| {
        let out = t.run(&["show", "--json"]).ok().stdout.replace(&a.prefix(), "$API");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    assert_eq!(show(&a), show(&b));
    // A plan saved on one runner is stale once another applied.
    for t in [&a, &b] {
        t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    }
    a.run(&["plan", "--out", "change.plan"]).ok();
    b.run(&["apply", "--auto-approve"]).ok();
    let stale = a.run(&["apply", "change.plan"]);
    stale.code(1);
    assert!(stale.stderr.contains("is stale"), "{}", stale.stderr);
    no_changes(&a);
    // Another workspace in the same database is another state.
    let staging = b.run(&["--workspace", "staging-of-this-test", "state", "list"]);
    assert_eq!(staging.ok().stdout, "");

    b.run(&["destroy", "--auto-approve"]).ok();
    assert!(names(&a).is_empty());
    a.run(&["plan", "--detailed-exitcode"]).code(2);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn concurrent_applies_from_two_directories_create_each_cvm_once() {
    let _server = SERVER.read().unwrap();
    let a = first(1500, ONE);
    let b = second(&a, ONE);
    let args = ["apply", "--auto-approve", "--lock-timeout", "120s"];
    let (ra, rb) = (spawn(&a, &args), spawn(&b, &args));
    let (ra, rb) = (finish(ra), finish(rb));
    ra.ok();
    rb.ok();
    assert_eq!(names(&a), ["team-web"], "one CVM, created once");
    let waited = [&ra, &rb].iter().filter(|r| r.stdout.contains("No changes.")).count();
    assert_eq!(waited, 1, "one applied, the other waited and found nothing to do:\n{ra:?}\n{rb:?}");
    no_changes(&a);
    no_changes(&b);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn a_busy_state_names_its_holder_and_is_not_force_unlocked_from_under_it() {
    let _server = SERVER.read().unwrap();
    let a = first(3000, ONE);
    let b = second(&a, ONE);
    let running = spawn(&a, &["apply", "--auto-approve"]);
    until_cvms(&a, 1);
    let p = b.run(&["plan"]);
    p.code(1);
    assert!(p.stderr.contains("is locked: held by `apply`"), "{}", p.stderr);
    assert!(p.stderr.contains("(workspace it-"), "{}", p.stderr);
    no_secret(&p);
    let id = p.stderr.split("lock id ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    // The hint repeats the workspace, even one set by TEEFORM_WORKSPACE: copied to a shell
    // without that variable, it still unlocks this state and no other.
    let ws = &b.env["TEEFORM_WORKSPACE"];
    assert!(p.stderr.contains(&format!("`teeform --workspace {ws} force-unlock {id}`")), "{}", p.stderr);
    // Its holder runs on this machine, so force-unlock refuses to cut it off.
    let f = b.run(&["force-unlock", &id]);
    f.code(1);
    assert!(f.stderr.contains("is locked"), "{}", f.stderr);
    finish(running).ok();
    no_changes(&b);
    b.run(&["force-unlock", &id]).code(1);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn killed_mid_apply_then_resumed_from_another_directory_converges() {
    let _server = SERVER.read().unwrap();
    let a = first(3000, TWO);
    let b = second(&a, TWO);
    let mut running = spawn(&a, &["apply", "--auto-approve", "--parallelism", "1"]);
    until_cvms(&a, 1);
    running.kill().unwrap(); // SIGKILL
    running.wait().unwrap();
    // No --lock-timeout: the dead holder's lock must not be in the way.
    let r = b.run(&["apply", "--auto-approve"]);
    r.ok();
    assert_eq!(names(&a), ["team-db", "team-web"], "each CVM exactly once:\n{r:?}");
    no_changes(&b);
    no_changes(&a);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn a_database_restart_mid_apply_is_a_clear_error_and_loses_nothing() {
    let _alone = SERVER.write().unwrap();
    let restart = std::env::var("TEEFORM_TEST_PG_RESTART").expect("scripts/test-postgres sets it");
    let a = first(3000, ONE);
    let b = second(&a, ONE);
    let running = spawn(&a, &["apply", "--auto-approve"]);
    until_cvms(&a, 1);
    let st = Command::new(&restart).status().unwrap();
    assert!(st.success(), "restarting PostgreSQL failed");
    let r = finish(running);
    r.code(1);
    assert!(r.stderr.contains("lost the connection to PostgreSQL"), "{r:?}");
    no_secret(&r);
    let again = b.run(&["apply", "--auto-approve"]);
    again.ok();
    assert_eq!(names(&a), ["team-web"], "the CVM created before the restart is not created again:\n{again:?}");
    no_changes(&a);
}

#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn migrate_to_postgres_and_back_is_lossless() {
    let _server = SERVER.read().unwrap();
    let local = TWO.replace("backend: postgres\n", "");
    let a = first(150, &local);
    a.run(&["apply", "--auto-approve"]).ok();
    // Locally, a workspace is a directory of its own.
    assert!(a.file_exists(&format!("state/workspaces/{}/sled", a.env["TEEFORM_WORKSPACE"])));
    let show = |args: &[&str]| {
        let r = a.run(&[args, &["show", "--json"][..]].concat());
        serde_json::from_str::<serde_json::Value>(&r.ok().stdout).unwrap()
    };
    let before = show(&[]);
    let m = a.run(&["state", "migrate", "--to", "postgres"]);
    m.ok();
    assert!(m.stdout.contains("Read back and verified identical."), "{}", m.stdout);
    no_secret(&m);
    assert_eq!(show(&["--backend", "postgres"]), before);
    let p = a.run(&["--backend", "postgres", "plan", "--detailed-exitcode"]);
    p.code(0);

    // Work continues in PostgreSQL; the local copy is now behind and may not overwrite it.
    a.run(&["--backend", "postgres", "state", "rm", "cvm.db"]).ok();
    let stale = a.run(&["state", "migrate", "--to", "postgres"]);
    stale.code(1);
    assert!(stale.stderr.contains("newer version of this state"), "{}", stale.stderr);

    // Back to a fresh local directory: the same state, serial and all.
    let in_pg = show(&["--backend", "postgres"]);
    a.run(&["--backend", "postgres", "--state", "state2", "state", "migrate", "--to", "local"]).ok();
    assert_eq!(show(&["--state", "state2"]), in_pg);
    // ...and onto the old local copy, which it replaces.
    let back = a.run(&["--backend", "postgres", "state", "migrate", "--to", "local"]);
    assert!(back.ok().stdout.contains("replaced an older copy"), "{}", back.stdout);
    assert_eq!(show(&[]), in_pg);
}

/// No server needed: a missing connection is a clear error before anything happens.
#[test]
fn the_postgres_backend_without_a_connection_says_what_to_set() {
    let t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest(ONE);
    let r = t.run(&["plan"]);
    r.code(1);
    assert!(r.stderr.contains("the postgres backend needs TEEFORM_PG_CONN"), "{}", r.stderr);
    // Commands that read state without the rest of the manifest find the backend in it, even
    // when other parts of the manifest could not be loaded now.
    t.manifest(&format!("{ONE}    env:\n      TOKEN: ${{env:NOT_SET_HERE}}\n"));
    t.run(&["validate"]).code(1);
    for args in [&["state", "list"][..], &["output"], &["show"], &["force-unlock", "x"]] {
        let r = t.run(args);
        r.code(1);
        assert!(r.stderr.contains("needs TEEFORM_PG_CONN"), "{args:?}: {}", r.stderr);
    }
    assert!(!t.file_exists("state"));
    // A manifest that is not YAML is reported rather than guessed around.
    t.write("teeform.yaml", "backend: [postgres\n");
    let r = t.run(&["state", "list"]);
    r.code(1);
    assert!(r.stderr.contains("teeform.yaml:"), "{}", r.stderr);
    // --backend decides over the manifest.
    t.manifest(ONE);
    t.run(&["--backend", "local", "state", "list"]).ok();
}

/// No server needed: workspaces keep environments apart with the local backend too.
#[test]
fn local_workspaces_keep_environments_apart() {
    let mut t = TestEnv::new();
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: ws-web\n    compose: web.yml\n");
    t.run(&["--workspace", "staging", "apply", "--auto-approve"]).ok();
    assert!(t.file_exists("state/workspaces/staging/sled"));
    t.env.insert("TEEFORM_WORKSPACE".into(), "staging".into());
    no_changes(&t);
    t.env.remove("TEEFORM_WORKSPACE");
    // The default workspace's state is empty; the cloud already has staging's `ws-web`, so
    // only a plan from state alone proposes creating it.
    t.run(&["plan", "--detailed-exitcode"]).code(1);
    t.run(&["plan", "--detailed-exitcode", "--refresh=false"]).code(2);
    assert_eq!(t.run(&["state", "list"]).ok().stdout, "");
    let bad = t.run(&["--workspace", "../prod", "state", "list"]);
    bad.code(1);
    assert!(bad.stderr.contains("is not a workspace name"), "{}", bad.stderr);
}

/// Two manifests side by side with one PostgreSQL workspace: the state records which manifest
/// it belongs to, and the other is refused instead of planning to replace its CVMs.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn a_workspace_belongs_to_one_manifest() {
    let _server = SERVER.read().unwrap();
    let t = first(50, ONE);
    let manifest = |name: &str| {
        format!(
            "provider:\n  phala:\n    endpoint: {}\nbackend: postgres\ncvms:\n  web:\n    name: {name}\n    compose: web.yml\n",
            t.prefix()
        )
    };
    t.write("prod.yaml", &manifest("web-prod"));
    t.write("staging.yaml", &manifest("web-staging"));
    t.run(&["-f", "prod.yaml", "apply", "--auto-approve"]).ok();
    let r = t.run(&["-f", "staging.yaml", "plan"]);
    r.code(1);
    assert!(r.stderr.contains("belongs to the manifest prod.yaml, not staging.yaml"), "{}", r.stderr);
    assert!(r.stderr.contains("--workspace"), "{}", r.stderr);
    // Its own workspace is its own.
    let ws = format!("it-{}", uuid::Uuid::new_v4().simple());
    let p = t.run(&["-f", "staging.yaml", "--workspace", &ws, "plan"]);
    assert!(p.ok().stdout.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", p.stdout);
    assert_eq!(t.count("DELETE "), 0);
}

/// A session for editing a workspace's rows by hand, as someone with psql would (without TLS:
/// the test server takes both from 127.0.0.1).
struct Db(tokio_postgres::Client);

/// The tables that hold a workspace's state (lock and set-aside rows aside).
const STATE_TABLES: [&str; 6] =
    ["teeform_meta", "teeform_seals", "teeform_resources", "teeform_outputs", "teeform_journal", "teeform_backups"];

impl Db {
    fn connect() -> Db {
        let plain = conn().replace("sslmode=require", "sslmode=disable");
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&plain, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            Db(client)
        })
    }

    /// Runs `sql` with `$1` = the workspace; returns how many rows it changed.
    fn exec(&self, sql: &str, ws: &str) -> u64 {
        runtime().block_on(self.0.execute(sql, &[&ws])).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row the workspace has in `tables`, as (table, row as JSON), in a fixed order.
    fn rows(&self, ws: &str, tables: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for t in tables {
            let sql = format!("SELECT to_jsonb(x)::text FROM {t} x WHERE workspace = $1 ORDER BY 1");
            for r in runtime().block_on(self.0.query(&sql, &[&ws])).unwrap() {
                out.push((t.to_string(), r.get(0)));
            }
        }
        out
    }

    /// Puts the workspace's rows in `tables` back as `saved` has them (what restoring those
    /// tables from a dump does).
    fn put_back(&self, ws: &str, tables: &[&str], saved: &[(String, String)]) {
        for t in tables {
            self.exec(&format!("DELETE FROM {t} WHERE workspace = $1"), ws);
        }
        for (t, row) in saved.iter().filter(|(t, _)| tables.contains(&t.as_str())) {
            let sql = format!("INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, $1::text::jsonb)");
            runtime().block_on(self.0.execute(&sql, &[row])).unwrap();
        }
    }
}

/// Requests that change the cloud, so far.
fn changes(t: &TestEnv) -> u64 {
    ["POST ", "PATCH ", "PUT ", "DELETE "].iter().map(|m| t.count(m)).sum()
}

#[track_caller]
fn damaged(r: &Run, problem: &str) {
    r.code(1);
    assert!(r.stderr.contains("is damaged") && r.stderr.contains(problem), "{problem}: {}", r.stderr);
    assert!(r.stderr.contains("(workspace it-"), "{}", r.stderr);
    // The way back names the state this run used (TEEFORM_WORKSPACE here).
    let recover = "`teeform --workspace it-";
    assert!(
        r.stderr.contains(recover)
            && r.stderr.contains(" state recover` puts back the last whole copy, table teeform_backups"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(" state recover --keep-current`"), "{}", r.stderr);
    no_secret(r);
}

/// Rows deleted, edited or put back to an earlier copy behind teeform's back: every command
/// refuses the state, naming the damage and the way back, and changes nothing (neither rows
/// nor CVMs); `state recover` puts back the last whole copy and the next plan has nothing to do.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn a_damaged_postgres_state_is_refused_changes_nothing_and_is_recovered() {
    let _server = SERVER.read().unwrap();
    let db = Db::connect();
    let a = first(150, ONE);
    let ws = a.env["TEEFORM_WORKSPACE"].clone();
    a.run(&["apply", "--auto-approve"]).ok();
    let earlier = db.rows(&ws, &STATE_TABLES[..5]);
    a.manifest(TWO);
    a.run(&["apply", "--auto-approve"]).ok();
    let pristine = db.rows(&ws, &STATE_TABLES);
    let want = a.run(&["state", "list"]).ok().stdout.clone();
    assert_eq!(want, "cvm.db\ncvm.web\n");
    let web = "DELETE FROM teeform_resources WHERE workspace = $1 AND address = 'cvm.web'";
    let edit = "UPDATE teeform_resources SET record = jsonb_set(record, '{attrs,vcpu}', '16')
                WHERE workspace = $1 AND address = 'cvm.db'";
    let damages: [(&str, &dyn Fn(), &str); 6] = [
        ("row deleted", &|| assert_eq!(db.exec(web, &ws), 1), "it holds 1 resource record(s) where 2 were written"),
        ("row edited", &|| assert_eq!(db.exec(edit, &ws), 1), "one of its resource records differs"),
        (
            "outputs deleted",
            &|| assert_eq!(db.exec("DELETE FROM teeform_outputs WHERE workspace = $1", &ws), 1),
            "it holds 0 output record(s) where 1 were written",
        ),
        (
            "seal deleted",
            &|| assert_eq!(db.exec("DELETE FROM teeform_seals WHERE workspace = $1", &ws), 1),
            "its seal row (in teeform_seals) is missing",
        ),
        (
            "records put back to an earlier copy",
            &|| db.put_back(&ws, &["teeform_resources", "teeform_outputs", "teeform_journal"], &earlier),
            "it holds 1 resource record(s) where 2 were written",
        ),
        (
            "tables put back to an earlier copy",
            &|| db.put_back(&ws, &STATE_TABLES[..5], &earlier),
            "its rows are older than its backup",
        ),
    ];
    for (what, inflict, problem) in damages {
        db.put_back(&ws, &STATE_TABLES, &pristine);
        inflict();
        let before = db.rows(&ws, &STATE_TABLES);
        let cloud = changes(&a);
        for args in [
            &["state", "list"][..],
            &["plan"],
            &["apply", "--auto-approve"],
            &["output"],
            &["destroy", "--auto-approve"],
        ] {
            let r = a.run(args);
            damaged(&r, problem);
            assert_eq!(db.rows(&ws, &STATE_TABLES), before, "{what}, {args:?}: nothing was changed");
        }
        assert_eq!(changes(&a), cloud, "{what}: the cloud was not touched");
        let r = a.run(&["state", "recover"]);
        r.ok();
        assert!(r.stdout.contains("Restored the state from table teeform_backups"), "{what}: {}", r.stdout);
        assert!(r.stdout.contains("set aside in table teeform_set_aside"), "{what}: {}", r.stdout);
        assert_eq!(a.run(&["state", "list"]).ok().stdout, want, "{what}");
        no_changes(&a);
    }
    assert_eq!(names(&a), ["team-db", "team-web"]);
}

/// An apply killed mid-create leaves its journal entry: the one record that says a CVM may
/// exist. Lost by hand, it is damage, not an empty journal; recovered, the next apply settles
/// the create it records, and the CVM exists once.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn a_lost_journal_row_is_refused_and_the_recovered_journal_settles_the_create() {
    let _server = SERVER.read().unwrap();
    let db = Db::connect();
    // Every API call takes a second: the create is journaled for that long before its answer.
    let a = first_with(SimConfig { latency_ms: 1000, restart_ms: 150, boot_ms: 150, ..Default::default() }, ONE);
    let ws = a.env["TEEFORM_WORKSPACE"].clone();
    let journal = || db.rows(&ws, &["teeform_journal"]).len();
    let mut running = spawn(&a, &["apply", "--auto-approve"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal() == 0 {
        assert!(Instant::now() < deadline && running.try_wait().unwrap().is_none(), "the create was never journaled");
        std::thread::sleep(Duration::from_millis(20));
    }
    running.kill().unwrap(); // SIGKILL: no close, so the backup is not yet of this state
    running.wait().unwrap();
    // A command that finds the state whole keeps its backup current.
    a.run(&["state", "list"]).ok();
    assert_eq!(db.exec("DELETE FROM teeform_journal WHERE workspace = $1", &ws), 1);
    let before = db.rows(&ws, &STATE_TABLES);
    damaged(&a.run(&["apply", "--auto-approve"]), "it holds 0 journal entry record(s) where 1 were written");
    assert_eq!(db.rows(&ws, &STATE_TABLES), before, "nothing was changed");
    let r = a.run(&["state", "recover"]);
    assert!(r.ok().stdout.contains("1 interrupted operation."), "{}", r.stdout);
    assert_eq!(journal(), 1);
    a.run(&["apply", "--auto-approve"]).ok();
    assert_eq!(names(&a), ["team-web"], "one CVM, created once");
    assert_eq!(journal(), 0);
    no_changes(&a);
}

/// After a deliberate restore of the tables (backup table aside) to an earlier point,
/// `state recover --keep-current` accepts them; saved plans from before are stale, and a CVM
/// created since is refused by name rather than adopted or created twice.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn keep_current_accepts_a_deliberate_restore() {
    let _server = SERVER.read().unwrap();
    let db = Db::connect();
    let a = first(150, ONE);
    let ws = a.env["TEEFORM_WORKSPACE"].clone();
    a.run(&["apply", "--auto-approve"]).ok();
    let earlier = db.rows(&ws, &STATE_TABLES[..5]);
    a.manifest(TWO);
    a.run(&["apply", "--auto-approve"]).ok();
    a.run(&["plan", "--out", "before.plan"]).ok();
    db.put_back(&ws, &STATE_TABLES[..5], &earlier);
    damaged(&a.run(&["plan"]), "its rows are older than its backup");
    let r = a.run(&["state", "recover", "--keep-current"]);
    assert!(r.ok().stdout.contains("Kept the state as it is (1 resource, 0 interrupted operations)"), "{}", r.stdout);
    assert_eq!(a.run(&["state", "list"]).ok().stdout, "cvm.web\n");
    let stale = a.run(&["apply", "before.plan"]);
    stale.code(1);
    assert!(stale.stderr.contains("is stale"), "{}", stale.stderr);
    let p = a.run(&["plan"]);
    p.code(1);
    assert!(p.stderr.contains("already exists") && p.stderr.contains(" import cvm.db "), "{}", p.stderr);
    assert_eq!(names(&a), ["team-db", "team-web"], "nothing created twice");
}

/// The README's recipe for moving a team to PostgreSQL, run line by line as written (the
/// placeholder connection string replaced by the test server's).
#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn postgres_readme_recipe_works_in_the_order_written() {
    let _shared = SERVER.read().unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("state migrate --to postgres"))
        .expect("the README's PostgreSQL recipe");
    let mut t = TestEnv::new();
    if let Ok(ca) = std::env::var("SSL_CERT_FILE") {
        t.env.insert("SSL_CERT_FILE".into(), ca);
    }
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: recipe-web\n    compose: web.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_teeform")).parent().unwrap().display().to_string();
    let script = block.replace("postgres://teeform:PASSWORD@db.internal:5432/teeform", &conn());
    assert_ne!(script, block, "the recipe sets TEEFORM_PG_CONN");
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(t.dir.path())
        .env_clear()
        .envs(&t.env)
        .env("PATH", format!("{bin}:{}", std::env::var("PATH").unwrap_or_default()));
    let out = cmd.output().expect("bash runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the recipe failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("Copied the state from the"), "{stdout}");
    assert!(stdout.contains("No changes."), "the plan reads the migrated state:\n{stdout}\n{stderr}");
    // One create: its provision and its commit, both `POST /cvms`.
    assert_eq!(t.count_exact("POST /api/v1/cvms"), 2, "nothing was created again");
}

/// `workspace list` on PostgreSQL: every workspace with a state, the one in use marked.
#[test]
#[ignore = "needs PostgreSQL: scripts/test-postgres runs these"]
fn postgres_workspace_list_shows_the_workspaces_with_a_state() {
    let _shared = SERVER.read().unwrap();
    let a = first(150, ONE);
    a.run(&["apply", "--auto-approve"]).ok();
    let mine = a.env["TEEFORM_WORKSPACE"].clone();
    let r = a.run(&["workspace", "list"]);
    r.ok();
    assert!(r.stdout.lines().any(|l| l == format!("* {mine}")), "{}", r.stdout);
    let r = a.run(&["--workspace", "never-used", "workspace", "list"]);
    r.ok();
    assert!(r.stdout.lines().any(|l| l == format!("  {mine}")), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l == "* never-used"), "{}", r.stdout);
    assert_eq!(a.run(&["workspace", "show"]).ok().stdout, format!("{mine}\n"));
}
