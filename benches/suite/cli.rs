//! One CVM changing compose file, resources and env at once: API calls and restarts by
//! teeform against the same change made with the `phala` CLI (npm `phala@1.1.18`) through its
//! normal commands: `deploy --cvm-id X -c … -e …`, then `cvms resize X …`
//! (see shared/reference/phala-cli-behaviour.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use teeform::sim::SimConfig;

use crate::harness::{Bench, KEY, SimServer, Stats, Table, secs, spawn_measured, teeform, tools_dir};

const CLI_VERSION: &str = "1.1.18";

const MANIFEST: &str = "cvms:
  teeform-app:
    compose: teeform-app.yml
    vcpu: VCPU
    memory: MEMORY
    disk_size: DISK
    env:
      FOO: FOOVAL
NEWKEY
  phala-cli-app:
    compose: phala-cli-app.yml
    vcpu: 2
    memory: 4096
    disk_size: 40
    env:
      FOO: bar
";

fn manifest(prefix: &str, changed: bool) -> String {
    let (vcpu, mem, disk, foo_value, new) =
        if changed { ("4", "8192", "80", "baz", "      NEW_FLAG: \"on\"") } else { ("2", "4096", "40", "bar", "") };
    let body = MANIFEST
        .replace("VCPU", vcpu)
        .replace("MEMORY", mem)
        .replace("DISK", disk)
        .replace("FOOVAL", foo_value)
        .replace("NEWKEY\n", &if new.is_empty() { String::new() } else { format!("{new}\n") });
    format!("provider:\n  phala:\n    endpoint: {prefix}\n{body}")
}

fn compose(tag: &str) -> String {
    format!(
        "services:\n  web:\n    image: nginx:{tag}\n    environment:\n      FOO: ${{FOO}}\n    ports:\n      - \"80:80\"\n"
    )
}

/// The `phala` CLI: `$PHALA_CLI`, else installed with npm under `target/tmp`. `None` (after a
/// loud message) when it cannot be had outside CI; in CI that is a failure.
fn phala_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PHALA_CLI") {
        return Some(PathBuf::from(p));
    }
    let dir = tools_dir().join(format!("phala-{CLI_VERSION}"));
    let bin = dir.join("node_modules/.bin/phala");
    if bin.exists() {
        return Some(bin);
    }
    eprintln!("  installing phala@{CLI_VERSION} with npm into {}", dir.display());
    let _ = std::fs::create_dir_all(&dir);
    let ok = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(&dir)
        .args(["--no-audit", "--no-fund", "--loglevel=error", &format!("phala@{CLI_VERSION}")])
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .is_ok_and(|s| s.success());
    if ok && bin.exists() {
        return Some(bin);
    }
    let msg = format!("the phala CLI (npm phala@{CLI_VERSION}) could not be installed: is npm on PATH?");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!!\n!!! SKIPPING the phala CLI comparison: {msg}\n!!!!!!!!\n");
    None
}

fn phala(bin: &Path, home: &Path, prefix: &str, dir: &Path, args: &[&str]) -> (i32, Duration) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("PHALA_CLOUD_API_KEY", KEY)
        .env("PHALA_CLOUD_API_PREFIX", prefix)
        .env("PHALA_DISABLE_UPDATE_CHECK", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(".phala-stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join(".phala-stderr")).expect("stderr file"));
    let (code, wall, _) = spawn_measured(&mut cmd);
    if code != 0 {
        let out = std::fs::read_to_string(dir.join(".phala-stdout")).unwrap_or_default();
        let err = std::fs::read_to_string(dir.join(".phala-stderr")).unwrap_or_default();
        panic!("phala {} exited {code}\nstdout:\n{out}\nstderr:\n{err}", args.join(" "));
    }
    (code, wall)
}

/// What one way of making the change cost.
struct Cost {
    commands: usize,
    requests: u64,
    mutating: u64,
    restarts: u64,
    wall: Duration,
}

fn cost(before: &Stats, after: &Stats, cvm: &str, commands: usize, wall: Duration) -> Cost {
    Cost {
        commands,
        requests: after.total() - before.total(),
        mutating: after.mutating() - before.mutating(),
        restarts: after.restarts(cvm) - before.restarts(cvm),
        wall,
    }
}

pub fn run(b: &Bench) -> Vec<Table> {
    let restart_ms = b.size(2000, 100) as u64;
    let sim = SimServer::start(b, SimConfig { boot_ms: 0, restart_ms, ..Default::default() });
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("teeform-app.yml"), compose("1.27")).expect("compose");
    std::fs::write(dir.join("phala-cli-app.yml"), compose("1.27")).expect("compose");
    std::fs::write(dir.join("teeform.yaml"), manifest(&sim.prefix, false)).expect("manifest");
    teeform(dir, &["apply", "--auto-approve"]).expect(0, "creating both CVMs");
    sim.settle(b);

    // teeform: compose, resources and env in one desired state.
    std::fs::write(dir.join("teeform-app.yml"), compose("1.28")).expect("compose");
    std::fs::write(dir.join("teeform.yaml"), manifest(&sim.prefix, true)).expect("manifest");
    let before = sim.stats(b);
    let r = teeform(dir, &["apply", "--auto-approve"]).expect(0, "teeform apply");
    let after = sim.stats(b);
    let tf = cost(&before, &after, "teeform-app", 1, r.wall);
    let cvm = &after.0["cvms"]["teeform-app"];
    b.check(cvm["vcpu"] == 4 && cvm["memory"] == 8192, "teeform applied the resources");
    b.check(tf.restarts == 1, &format!("teeform restarts the CVM once (saw {})", tf.restarts));
    b.check(after.count("PATCH ") - before.count("PATCH ") == 1, "teeform sends one PATCH");

    let mut t = Table::new(
        "one CVM: compose file + resources + env changed at once",
        &["tool", "commands", "API requests", "mutating requests", "restarts", "wall"],
    );
    let row = |t: &mut Table, name: &str, c: &Cost| {
        t.row(vec![
            name.into(),
            c.commands.to_string(),
            c.requests.to_string(),
            c.mutating.to_string(),
            c.restarts.to_string(),
            secs(c.wall),
        ])
    };
    row(&mut t, "teeform apply", &tf);

    match phala_cli() {
        Some(bin) => {
            let home = tempfile::tempdir().expect("home");
            std::fs::write(dir.join("phala-cli-app.yml"), compose("1.28")).expect("compose");
            let before = sim.stats(b);
            let (_, w1) = phala(
                &bin,
                home.path(),
                &sim.prefix,
                dir,
                &[
                    "deploy",
                    "--cvm-id",
                    "phala-cli-app",
                    "-c",
                    "phala-cli-app.yml",
                    "-e",
                    "FOO=baz",
                    "-e",
                    "NEW_FLAG=on",
                    "--json",
                ],
            );
            // As a user would: let the restart finish before the next command (the wait uses the
            // simulator's own stats, which are not API requests).
            sim.settle(b);
            let (_, w2) = phala(
                &bin,
                home.path(),
                &sim.prefix,
                dir,
                &[
                    "cvms",
                    "resize",
                    "phala-cli-app",
                    "--vcpu",
                    "4",
                    "--memory",
                    "8192",
                    "--disk-size",
                    "80",
                    "--yes",
                    "--json",
                ],
            );
            sim.settle(b);
            let after = sim.stats(b);
            let cli = cost(&before, &after, "phala-cli-app", 2, w1 + w2);
            let cvm = &after.0["cvms"]["phala-cli-app"];
            b.check(cvm["vcpu"] == 4 && cvm["memory"] == 8192, "the CLI applied the resources");
            b.check(cli.restarts == 2, &format!("the CLI's two commands restart the CVM twice (saw {})", cli.restarts));
            row(&mut t, &format!("phala {CLI_VERSION}: deploy --cvm-id -c -e, then cvms resize"), &cli);
        }
        None => t.note("The phala CLI comparison was SKIPPED (the CLI could not be installed)."),
    }
    t.note(format!(
        "Against the simulator with a {restart_ms} ms restart. teeform's requests are: one list page to \
         refresh, the CVM's detail (for the compose-hash preview), one PATCH, status batch polls until the \
         CVM runs again (their number grows with the restart time) and a final read of its detail. \
         The CLI's wall time excludes the wait between its two commands; about 1 s of each command is \
         node loading the CLI's bundle. Target: teeform 1 restart."
    ));
    sim.stop(b);
    vec![t]
}
