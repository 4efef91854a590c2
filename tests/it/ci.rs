//! CI: the markdown plan for pull requests.

use crate::harness::{TestEnv, WEB};

#[test]
fn markdown_plan_has_the_summary_a_section_per_cvm_and_no_secret() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "hunter2-secret".into());
    t.write("web.yml", WEB);
    t.manifest("cvms:\n  web:\n    name: web-one\n    compose: web.yml\n");
    t.run(&["apply", "--auto-approve"]).ok();
    t.write("web.yml", &format!("{WEB}    environment:\n      - PASSWORD=${{PASSWORD}}\n      - \"X=```\"\n"));
    t.manifest(
        "cvms:\n  web:\n    name: web-one\n    compose: web.yml\n    vcpu: 2\n    env:\n      PASSWORD: ${secret:env:DB_PASSWORD}\n  db:\n    name: db-one\n    compose: web.yml\n",
    );
    t.run(&["plan", "--out", "p.bin"]).ok();
    for r in [t.run(&["show", "p.bin", "--markdown"]), t.run(&["plan", "--markdown"])] {
        r.ok();
        let md = &r.stdout;
        assert!(
            md.starts_with("### teeform plan\n\n**Plan:** 1 to add, 1 to change, 0 to destroy. 1 CVM restart.\n"),
            "{md}"
        );
        assert!(md.contains("<details><summary>cvm.db will be created</summary>"), "{md}");
        assert!(md.contains("<details><summary>cvm.web will be updated in-place (restarts the CVM)</summary>"), "{md}");
        assert_eq!(md.matches("<details>").count(), 2, "{md}");
        assert_eq!(md.matches("</details>").count(), 2, "{md}");
        // The compose file holds three backticks: its fence is longer, so the block holds.
        assert!(md.contains("````diff\n"), "{md}");
        assert!(md.contains("\n+           PASSWORD = (sensitive value)\n"), "{md}");
        assert!(md.contains("\n!       vcpu = 1 -> 2\n"), "{md}");
        assert!(!md.contains("hunter2"), "{md}");
        assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
        assert!(!md.contains("Saved the plan"), "{md}");
    }
    // After apply: no changes, said in one line.
    t.run(&["apply", "--auto-approve"]).ok();
    let r = t.run(&["plan", "--markdown"]);
    r.ok();
    assert!(
        r.stdout.starts_with("### teeform plan\n\n**No changes.** Your infrastructure matches the configuration.\n\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("<details>"), "{}", r.stdout);
    // The state has no markdown form.
    assert!(t.run(&["show", "--markdown"]).code(1).stderr.contains("<PLAN_FILE>"));
}

#[test]
fn a_markdown_plan_too_long_for_a_comment_is_cut_under_githubs_limit() {
    let t = TestEnv::new();
    // 30 CVMs, each with a 4 KB compose file: about 120 KB of plan.
    let mut m = String::from("cvms:\n");
    for i in 0..30 {
        let big: String = (0..100).map(|j| format!("      L{j:03}: \"{}\"\n", "x".repeat(24))).collect();
        t.write(&format!("c{i}.yml"), &format!("services:\n  s:\n    image: nginx\n    labels:\n{big}"));
        m.push_str(&format!("  cvm{i:02}:\n    name: cvm-{i:02}\n    compose: c{i}.yml\n"));
    }
    t.manifest(&m);
    let full = t.run(&["plan"]);
    full.ok();
    assert!(full.stdout.len() > 100_000, "the plan is long: {}", full.stdout.len());
    let r = t.run(&["plan", "--markdown"]);
    r.ok();
    let md = &r.stdout;
    let n = md.chars().count();
    assert!(n <= 65_536, "{n} characters");
    assert!(n > 50_000, "as much as fits is shown: {n}");
    assert!(md.contains("**The plan is too long for a comment.**"), "{}", &md[md.len() - 800..]);
    // Every CVM is either shown or counted as left out.
    let left_out: usize = md
        .split("comment.** ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of what is left out: {}", &md[md.len() - 800..]));
    assert_eq!(md.matches("<details>").count() + left_out, 30);
    assert!(md.contains(&format!("(cvm.cvm{:02} will be created, ", 30 - left_out)), "{}", &md[md.len() - 800..]);
    assert!(md.trim_end().ends_with("The full plan is in the saved plan file: `teeform show PLAN_FILE`."));
    // Every section that is shown is whole markdown: as many closings as openings.
    assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
}

/// The example workflow (`examples/ci/github-actions.yml`), its jobs run as GitHub would run
/// them: every `run:` step for real with bash (`-eo pipefail`, the step's working directory,
/// the workflow's, job's and step's `env:`), against the simulator; the actions it uses are
/// played by the test as GitHub's documentation says they behave (`checkout`: a fresh copy of
/// the repository; `cache`: a hit holding teeform at `~/.cargo/bin/teeform`; `upload-artifact`:
/// paths from the workspace root, every file required; the sticky comment: a file from the
/// workspace root), and `gh` by a script that answers the calls the workflow makes, and only
/// them. A shared state directory stands in for the PostgreSQL backend.
mod workflow {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::harness::{KEY, TestEnv};

    const SECRET: &str = "pw-secret-8d1f";
    const REPO: &str = "acme/shop";

    pub struct Github {
        root: PathBuf,
        doc: serde_yaml::Value,
        next_run: u32,
        /// The sticky comment, by header.
        pub comments: BTreeMap<String, String>,
        prefix: String,
        /// The `ETH_RPC_URL` secret (none unless a test has a chain).
        pub eth_rpc_url: String,
    }

    /// What triggered a run.
    pub struct Event {
        pub name: &'static str,
        pub pr: Option<u32>,
        pub sha: String,
        pub head_sha: String,
        pub inputs: BTreeMap<&'static str, &'static str>,
    }

    pub struct JobRun {
        pub ok: bool,
        pub log: String,
        pub summary: String,
    }

    fn s(v: &serde_yaml::Value) -> &str {
        v.as_str().unwrap_or_else(|| panic!("expected a string: {v:?}"))
    }

    impl Github {
        pub fn new(t: &TestEnv) -> Github {
            let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ci/github-actions.yml"))
                .expect("the example workflow");
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("the workflow is YAML");
            let root = t.path("gh");
            for d in ["repo/deploy", "state", "artifacts", "home/.cargo/bin", "fakebin"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_teeform"), root.join("home/.cargo/bin/teeform")).unwrap();
            let gh = root.join("fakebin/gh");
            std::fs::write(&gh, FAKE_GH).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(root.join("prs.tsv"), "").unwrap();
            std::fs::write(root.join("runs.tsv"), "").unwrap();
            Github {
                root,
                doc,
                next_run: 100,
                comments: BTreeMap::new(),
                prefix: t.prefix(),
                eth_rpc_url: String::new(),
            }
        }

        /// Writes the repository's `deploy/teeform.yaml` (the simulator's endpoint prepended).
        pub fn commit(&self, manifest: &str, compose: &str) {
            let deploy = self.root.join("repo/deploy");
            std::fs::write(
                deploy.join("teeform.yaml"),
                format!("provider:\n  phala:\n    endpoint: {}\n{manifest}", self.prefix),
            )
            .unwrap();
            std::fs::write(deploy.join("web.yml"), compose).unwrap();
        }

        /// Records that pull request `pr` (head `head`) was merged as commit `merge`.
        pub fn merged(&self, pr: u32, head: &str, merge: &str) {
            let mut f = std::fs::read_to_string(self.root.join("prs.tsv")).unwrap();
            f.push_str(&format!("{merge}\t{pr}\t{head}\n"));
            std::fs::write(self.root.join("prs.tsv"), f).unwrap();
        }

        fn expr(&self, e: &str, ev: &Event, env: &BTreeMap<String, String>) -> String {
            match e {
                "secrets.PHALA_CLOUD_API_KEY" => KEY.into(),
                // The stand-in for PostgreSQL is a shared local state: no connection string.
                "secrets.TEEFORM_PG_CONN" => String::new(),
                "secrets.DB_PASSWORD" => SECRET.into(),
                "secrets.ETH_RPC_URL" => self.eth_rpc_url.clone(),
                "github.token" => "ghs_test_token".into(),
                "github.repository" => REPO.into(),
                "github.sha" => ev.sha.clone(),
                "github.event.pull_request.number" => ev.pr.expect("a pull request").to_string(),
                "runner.os" => "Linux".into(),
                _ if e.starts_with("env.") => env.get(&e[4..]).cloned().unwrap_or_default(),
                _ if e.starts_with("inputs.") => ev.inputs.get(&e[7..]).copied().unwrap_or_default().to_string(),
                _ => panic!("the test does not know the expression `{e}`: teach it"),
            }
        }

        fn subst(&self, text: &str, ev: &Event, env: &BTreeMap<String, String>) -> String {
            let mut out = String::new();
            let mut rest = text;
            while let Some(i) = rest.find("${{") {
                out.push_str(&rest[..i]);
                let end = rest[i..].find("}}").expect("a closed expression") + i;
                out.push_str(&self.expr(rest[i + 3..end].trim(), ev, env));
                rest = &rest[end + 2..];
            }
            out.push_str(rest);
            out
        }

        /// The job `name`'s `if:` for this event.
        fn job_runs(&self, name: &str, ev: &Event) -> bool {
            let cond = s(&self.doc["jobs"][name]["if"]);
            let want = cond
                .strip_prefix("github.event_name == '")
                .and_then(|c| c.strip_suffix('\''))
                .unwrap_or_else(|| panic!("the test does not know the condition `{cond}`"));
            want == ev.name
        }

        /// Runs every job of the workflow this event starts (there is one per event).
        pub fn trigger(&mut self, ev: &Event) -> JobRun {
            let jobs: Vec<String> = self.doc["jobs"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| s(k).to_string())
                .filter(|j| self.job_runs(j, ev))
                .collect();
            assert_eq!(jobs.len(), 1, "one job per event: {jobs:?}");
            let run_id = self.next_run;
            self.next_run += 1;
            let r = self.job(&jobs[0], ev, run_id);
            let mut f = std::fs::read_to_string(self.root.join("runs.tsv")).unwrap();
            f.push_str(&format!(
                "{run_id}\t{}\t{}\t{}\n",
                ev.name,
                ev.head_sha,
                if r.ok { "success" } else { "failure" }
            ));
            std::fs::write(self.root.join("runs.tsv"), f).unwrap();
            r
        }

        fn job(&mut self, name: &str, ev: &Event, run_id: u32) -> JobRun {
            let ws = self.root.join("ws");
            let summary = self.root.join("summary.md");
            std::fs::write(&summary, "").unwrap();
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in self.doc["env"].as_mapping().into_iter().flatten() {
                env.insert(s(k).into(), s(v).into());
            }
            let default_dir = self.doc["defaults"]["run"]["working-directory"].as_str().unwrap_or(".").to_string();
            let mut outputs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            let mut log = String::new();
            let steps = self.doc["jobs"][name]["steps"].as_sequence().expect("steps").clone();
            for step in &steps {
                if let Some(cond) = step["if"].as_str() {
                    assert_eq!(cond, "steps.cache.outputs.cache-hit != 'true'", "the test does not know this `if:`");
                    let hit = outputs.get("cache").and_then(|o| o.get("cache-hit")).is_some_and(|v| v == "true");
                    if hit {
                        continue;
                    }
                    panic!("the install step would run: the cache step must come first");
                }
                let with = |k: &str| step["with"][k].as_str().map(|v| self.subst(v, ev, &env));
                if let Some(uses) = step["uses"].as_str() {
                    match uses {
                        "actions/checkout@v4" => {
                            let _ = std::fs::remove_dir_all(&ws);
                            copy_dir(&self.root.join("repo"), &ws);
                            // The shared state, as PostgreSQL would be.
                            std::os::unix::fs::symlink(self.root.join("state"), ws.join("deploy/state")).unwrap();
                        }
                        "actions/cache@v4" => {
                            assert_eq!(with("path").as_deref(), Some("~/.cargo/bin/teeform"));
                            let key = with("key").unwrap();
                            assert!(key.contains("v0.1.0") && key.contains("Linux"), "{key}");
                            let id = step["id"].as_str().expect("the cache step has an id");
                            outputs.entry(id.into()).or_default().insert("cache-hit".into(), "true".into());
                        }
                        "marocchino/sticky-pull-request-comment@v2" => {
                            let path = ws.join(with("path").expect("path"));
                            let body = std::fs::read_to_string(&path)
                                .unwrap_or_else(|e| panic!("the comment's file {}: {e}", path.display()));
                            self.comments.insert(with("header").unwrap_or_default(), body);
                        }
                        "actions/upload-artifact@v4" => {
                            assert_eq!(with("if-no-files-found").as_deref(), Some("error"));
                            let name = with("name").expect("name");
                            let dest = self.root.join(format!("artifacts/{run_id}/{name}"));
                            std::fs::create_dir_all(&dest).unwrap();
                            let paths: Vec<PathBuf> = with("path")
                                .expect("path")
                                .lines()
                                .filter(|l| !l.trim().is_empty())
                                .map(|l| ws.join(l.trim()))
                                .collect();
                            // The artifact's root is the paths' deepest common folder.
                            let common = paths.iter().skip(1).fold(paths[0].parent().unwrap().to_path_buf(), |c, p| {
                                c.ancestors().find(|a| p.starts_with(a)).unwrap().to_path_buf()
                            });
                            for p in &paths {
                                assert!(p.is_file(), "upload-artifact finds no file at {}", p.display());
                                std::fs::copy(p, dest.join(p.strip_prefix(&common).unwrap())).unwrap();
                            }
                        }
                        other => panic!("the test does not know the action `{other}`"),
                    }
                    continue;
                }
                let script = self.subst(s(&step["run"]), ev, &env);
                let dir = step["working-directory"].as_str().unwrap_or(&default_dir);
                let mut step_env = env.clone();
                for (k, v) in step["env"].as_mapping().into_iter().flatten() {
                    step_env.insert(s(k).into(), self.subst(s(v), ev, &env));
                }
                let home = self.root.join("home");
                let out = Command::new("bash")
                    .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
                    .current_dir(ws.join(dir))
                    .env_clear()
                    .envs(&step_env)
                    .env("HOME", &home)
                    .env("GITHUB_STEP_SUMMARY", &summary)
                    .env("TEEFORM_NO_PROGRESS", "1")
                    .env("FAKE_GH_ROOT", &self.root)
                    .env(
                        "PATH",
                        format!(
                            "{}:{}:{}",
                            home.join(".cargo/bin").display(),
                            self.root.join("fakebin").display(),
                            std::env::var("PATH").unwrap_or_default()
                        ),
                    )
                    .output()
                    .expect("bash runs");
                let name = step["name"].as_str().unwrap_or("run");
                log.push_str(&format!(
                    "## {name} (exit {:?})\n{}{}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
                if !out.status.success() {
                    return JobRun { ok: false, log, summary: std::fs::read_to_string(&summary).unwrap() };
                }
            }
            JobRun { ok: true, log, summary: std::fs::read_to_string(&summary).unwrap() }
        }

        /// Runs teeform in a fresh checkout's `deploy/` (the shared state, the workflow's
        /// workspace), as someone at a terminal would: to set up what the test needs.
        pub fn teeform(&self, t: &TestEnv, args: &[&str]) -> crate::harness::Run {
            let ws = self.root.join("ws");
            let _ = std::fs::remove_dir_all(&ws);
            copy_dir(&self.root.join("repo"), &ws);
            std::os::unix::fs::symlink(self.root.join("state"), ws.join("deploy/state")).unwrap();
            let out = t
                .command(args)
                .current_dir(ws.join("deploy"))
                .env("TEEFORM_WORKSPACE", s(&self.doc["env"]["TEEFORM_WORKSPACE"]))
                .stdin(std::process::Stdio::null())
                .output()
                .expect("teeform runs");
            crate::harness::Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }

        /// Every file of every artifact, as bytes.
        pub fn artifact_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
            let mut out = Vec::new();
            let mut stack = vec![self.root.join("artifacts")];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap().flatten() {
                    if e.path().is_dir() {
                        stack.push(e.path());
                    } else {
                        out.push((e.path(), std::fs::read(e.path()).unwrap()));
                    }
                }
            }
            out
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let dest = to.join(e.file_name());
            if e.path().is_dir() {
                copy_dir(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }

    /// `gh` as the workflow calls it: answers from `prs.tsv` (merge sha, number, head sha),
    /// `runs.tsv` (run id, event, head sha, conclusion) and `artifacts/RUN/NAME/`; any other
    /// call fails, so a change to the workflow's calls fails the test until it is taught.
    const FAKE_GH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
[ -n "${GH_TOKEN:-}" ] || { echo "gh: GH_TOKEN is not set" >&2; exit 4; }
root="$FAKE_GH_ROOT"
case "$*" in
  "api repos/acme/shop/commits/"*"/pulls --jq .[0].number // empty")
    sha="${2#repos/acme/shop/commits/}"; sha="${sha%/pulls}"
    awk -F'\t' -v s="$sha" '$1 == s { print $2 }' "$root/prs.tsv" ;;
  "api repos/acme/shop/pulls/"*" --jq .head.sha")
    n="${2#repos/acme/shop/pulls/}"
    awk -F'\t' -v n="$n" '$2 == n { print $3 }' "$root/prs.tsv" ;;
  "run list --repo acme/shop --workflow teeform.yml --event pull_request --commit "*" --status success --limit 1 --json databaseId --jq .[0].databaseId // empty")
    awk -F'\t' -v h="${10}" '$2 == "pull_request" && $3 == h && $4 == "success" { id = $1 } END { if (id) print id }' "$root/runs.tsv" ;;
  "run download "*" --repo acme/shop --name "*" --dir "*)
    src="$root/artifacts/$3/$7"
    [ -d "$src" ] || { echo "gh: no artifact $7 in run $3" >&2; exit 1; }
    cp -R "$src/." "$9" ;;
  *) echo "fake gh: unexpected call: gh $*" >&2; exit 99 ;;
esac
"#;

    pub fn pr(n: u32, head: &str) -> Event {
        Event {
            name: "pull_request",
            pr: Some(n),
            sha: format!("merge-ref-{n}"),
            head_sha: head.into(),
            inputs: BTreeMap::new(),
        }
    }

    pub fn push(sha: &str) -> Event {
        Event { name: "push", pr: None, sha: sha.into(), head_sha: sha.into(), inputs: BTreeMap::new() }
    }

    pub fn dispatch(action: &'static str) -> Event {
        Event {
            name: "workflow_dispatch",
            pr: None,
            sha: "main".into(),
            head_sha: "main".into(),
            inputs: BTreeMap::from([("action", action), ("tx_hash", "")]),
        }
    }

    pub const SECRET_VALUE: &str = SECRET;
}

#[test]
fn the_example_workflow_plans_pull_requests_and_applies_the_reviewed_plan_on_merge() {
    use workflow::*;
    let t = TestEnv::new();
    let mut gh = Github::new(&t);
    let manifest = |vcpu: u32| {
        format!(
            "cvms:\n  web:\n    name: web-one\n    compose: web.yml\n    vcpu: {vcpu}\n    env:\n      DB_PASSWORD: ${{secret:env:DB_PASSWORD}}\n"
        )
    };
    let compose = format!("{WEB}    environment:\n      - DB_PASSWORD=${{DB_PASSWORD}}\n");
    // A create posts `/cvms` twice: the provision, then its commit.
    let creates = || t.count_exact("POST /api/v1/cvms") / 2;

    // Pull request #1 adds the CVM: planned, commented, summarised; nothing is created.
    gh.commit(&manifest(1), &compose);
    let r = gh.trigger(&pr(1, "h1"));
    assert!(r.ok, "{}", r.log);
    let comment = gh.comments.get("teeform").expect("a sticky comment");
    assert!(comment.contains("**Plan:** 1 to add, 0 to change, 0 to destroy."), "{comment}");
    assert!(comment.contains("<summary>cvm.web will be created</summary>"), "{comment}");
    assert_eq!(&r.summary, comment, "the job summary is the comment");
    assert_eq!(creates(), 0, "a plan creates nothing");
    for (path, bytes) in gh.artifact_files() {
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET_VALUE), "{} holds the secret", path.display());
    }

    // Merged: the reviewed plan is applied.
    gh.merged(1, "h1", "m1");
    let r = gh.trigger(&push("m1"));
    assert!(r.ok, "{}", r.log);
    assert!(r.log.contains("Applying the plan reviewed on pull request #1"), "{}", r.log);
    assert!(r.summary.contains("cvm.web will be created"), "{}", r.summary);
    assert_eq!(creates(), 1, "{}", r.log);

    // Two pull requests planned against the same state: the first merged applies, the second's
    // plan is stale and changes nothing.
    gh.commit(&manifest(2), &compose);
    assert!(gh.trigger(&pr(2, "h2")).ok);
    gh.commit(&manifest(3), &compose);
    let r = gh.trigger(&pr(3, "h3"));
    assert!(r.ok, "{}", r.log);
    assert!(gh.comments["teeform"].contains("vcpu = 1 -> 3"), "the comment is replaced: {}", gh.comments["teeform"]);
    gh.commit(&manifest(2), &compose);
    gh.merged(2, "h2", "m2");
    let r = gh.trigger(&push("m2"));
    assert!(r.ok, "{}", r.log);
    let patches = t.count("PATCH /api/v1/cvms/");
    gh.commit(&manifest(3), &compose);
    gh.merged(3, "h3", "m3");
    let r = gh.trigger(&push("m3"));
    assert!(!r.ok, "a stale plan must fail the job:\n{}", r.log);
    assert!(r.log.contains("is stale") && r.log.contains("::error::apply failed (exit 1)"), "{}", r.log);
    assert_eq!(t.count("PATCH /api/v1/cvms/"), patches, "a stale plan changes nothing");

    // A push that no pull request merged has no reviewed plan.
    let r = gh.trigger(&push("direct-push"));
    assert!(!r.ok);
    assert!(r.log.contains("was not merged from a pull request"), "{}", r.log);

    // By hand: plan and apply main as it is, then resume (nothing is paused).
    let r = gh.trigger(&dispatch("apply"));
    assert!(r.ok, "{}", r.log);
    assert!(r.summary.contains("vcpu = 2 -> 3"), "{}", r.summary);
    assert_eq!(t.count("PATCH /api/v1/cvms/"), patches + 1, "{}", r.log);
    let r = gh.trigger(&dispatch("resume"));
    assert!(r.ok, "{}", r.log);
    assert!(r.log.contains("Nothing to resume"), "{}", r.log);
    assert_eq!(creates(), 1);
}

/// Every stdout line of a streaming command, parsed; stdout holds nothing else.
fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .inspect(|v| {
            for k in ["@level", "@message", "@module", "@timestamp", "type"] {
                assert!(v.get(k).is_some(), "every event has {k}: {v}");
            }
        })
        .collect()
}

fn types(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter().map(|v| v["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn apply_json_streams_one_event_per_line_from_plan_to_summary() {
    let mut t = TestEnv::new();
    t.env.insert("DB_PASSWORD".into(), "hunter2-secret".into());
    t.write("web.yml", &format!("{WEB}    environment:\n      - PASSWORD=${{PASSWORD}}\n"));
    t.manifest(
        "cvms:\n  web:\n    name: web-one\n    compose: web.yml\n    env:\n      PASSWORD: ${secret:env:DB_PASSWORD}\n  db:\n    name: db-one\n    compose: web.yml\n    lint: {ignore: [PASSWORD]}\noutputs:\n  web_id: ${cvm.web.app_id}\n",
    );
    // The plan, streamed.
    let r = t.run(&["plan", "--json", "--stream"]);
    r.ok();
    let ev = events(&r.stdout);
    assert_eq!(types(&ev), ["version", "planned_change", "planned_change", "change_summary"]);
    assert_eq!(ev[0]["ui"], "1.0");
    assert_eq!(ev[1]["change"]["resource"]["addr"], "cvm.db");
    assert_eq!(ev[1]["change"]["action"], "create");
    assert_eq!(ev[3]["changes"]["add"], 2);
    assert_eq!(ev[3]["changes"]["operation"], "plan");

    // --json never asks: without --auto-approve it refuses, as an event too.
    let r = t.run(&["apply", "--json"]);
    r.code(1);
    let ev = events(&r.stdout);
    assert_eq!(types(&ev).last().unwrap(), "diagnostic");
    assert!(ev.last().unwrap()["diagnostic"]["detail"].as_str().unwrap().contains("--auto-approve"));
    assert_eq!(t.count_exact("POST /api/v1/cvms"), 0, "nothing was provisioned");

    let r = t.run(&["apply", "--json", "--auto-approve"]);
    r.ok();
    assert!(!r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"));
    let ev = events(&r.stdout);
    let ty = types(&ev);
    assert_eq!(ty[..4], ["version", "planned_change", "planned_change", "change_summary"]);
    assert_eq!(ty[ty.len() - 2..], ["change_summary", "outputs"]);
    let summary = &ev[ev.len() - 2];
    assert_eq!(summary["changes"]["operation"], "apply");
    assert_eq!(summary["changes"]["outcome"], "complete");
    assert_eq!(summary["changes"]["add"], 2);
    assert_eq!(ev.last().unwrap()["outputs"]["web_id"]["sensitive"], false);
    for addr in ["cvm.web", "cvm.db"] {
        let of = |kind: &str| {
            ev.iter()
                .filter(|e| e["type"] == kind && e["hook"]["resource"]["addr"] == addr)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(of("apply_start").len(), 1, "{addr}");
        let done = of("apply_complete");
        assert_eq!(done.len(), 1, "{addr}");
        assert!(done[0]["hook"]["id"].is_string(), "{}", done[0]);
        // Progress is written when a status changes, not on every poll.
        let statuses: Vec<_> = of("apply_progress").iter().map(|e| e["hook"]["status"].clone()).collect();
        assert!(!statuses.is_empty(), "{addr}");
        assert!(statuses.windows(2).all(|w| w[0] != w[1]), "{addr}: {statuses:?}");
        let start = ty.iter().zip(&ev).position(|(k, e)| k == "apply_start" && e["hook"]["resource"]["addr"] == addr);
        let end = ty.iter().zip(&ev).position(|(k, e)| k == "apply_complete" && e["hook"]["resource"]["addr"] == addr);
        assert!(start < end, "{addr}");
    }
    // People's lines go to stderr; stdout is the stream alone.
    assert!(r.stderr.contains("Apply complete!"), "{}", r.stderr);

    let r = t.run(&["destroy", "--json", "--auto-approve"]);
    r.ok();
    let ev = events(&r.stdout);
    assert_eq!(ev.iter().filter(|e| e["type"] == "apply_complete" && e["hook"]["action"] == "delete").count(), 2);
    let last = ev.last().unwrap();
    assert_eq!((last["changes"]["operation"].as_str(), last["changes"]["remove"].as_u64()), (Some("destroy"), Some(2)));
}

/// The committed `teeform.schema.json` is what `teeform schema` prints.
#[test]
fn the_committed_json_schema_is_what_teeform_schema_prints() {
    let t = TestEnv::new();
    let r = t.run(&["schema"]);
    r.ok();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/teeform.schema.json"))
        .expect("teeform.schema.json is committed");
    assert!(
        committed == r.stdout,
        "teeform.schema.json is out of date: regenerate it with `cargo run -q -- schema > teeform.schema.json`"
    );
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/teeform.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("a valid JSON Schema")
}

fn manifest_json(yaml: &str) -> serde_json::Value {
    serde_yaml::from_str(yaml).expect("YAML")
}

#[test]
fn every_example_manifest_validates_against_the_json_schema() {
    let v = validator();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for dir in std::fs::read_dir(&root).unwrap().flatten() {
        let m = dir.path().join("teeform.yaml");
        if !m.is_file() {
            continue;
        }
        let doc = manifest_json(&std::fs::read_to_string(&m).unwrap());
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", m.display());
        seen += 1;
    }
    assert!(seen >= 3, "the examples were found: {seen}");
}

#[test]
fn the_json_schema_refuses_what_the_loader_refuses_and_takes_references() {
    let v = validator();
    let ok = "variables:\n  n: { default: 2 }\ncvms:\n  web:\n    compose: web.yml\n    vcpu: ${var.n}\n    public_logs: true\n    power: stopped\n    kms: { chain: base, rpc_url: x, contract: '0x00' }\n    env:\n      A: 1\n      B: ${secret:env:B}\n    depends_on: [db]\n    lint: { ignore: [A] }\n    env_file: [.env, { path: s.env, secret: true }]\n  db:\n    compose: db.yml\n    env_file: .env\noutputs:\n  a: ${cvm.web.app_id}\n  b: { value: x, sensitive: true }\n";
    let errors: Vec<String> = v.iter_errors(&manifest_json(ok)).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    for bad in [
        "cvms:\n  web:\n    compose: web.yml\n    vpcu: 2\n",
        "cvms:\n  web:\n    compose: web.yml\n    vcpu: 0\n",
        "cvms:\n  web:\n    name: web-one\n",
        "cvm:\n  web:\n    compose: web.yml\n",
        "backend: sled\n",
        "cvms:\n  web:\n    compose: web.yml\n    power: paused\n",
        "cvms:\n  web:\n    compose: web.yml\n    env_file: [{ secret: true }]\n",
        "cvms:\n  web:\n    compose: web.yml\n    env_file: { path: a.env, secrets: true }\n",
    ] {
        assert!(!v.is_valid(&manifest_json(bad)), "the schema takes:\n{bad}");
    }
}

/// The example workflow installs teeform from one repository, named once at the top
/// (`TEEFORM_REPO`, which a team sets to where it hosts teeform): every install step runs
/// `cargo install --locked` of that repository at the pinned tag, behind a cache whose key
/// names both. The install's shell is run with a stand-in `cargo` that records its arguments.
#[test]
fn the_example_workflow_installs_from_the_repository_its_variable_names() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ci/github-actions.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let repo = doc["env"]["TEEFORM_REPO"].as_str().expect("TEEFORM_REPO under the workflow's env:");
    assert!(repo.starts_with("https://"), "{repo}");
    assert_eq!(text.matches(repo).count(), 1, "the repository is written once");
    let dir = tempfile::tempdir().unwrap();
    let cargo = dir.path().join("cargo");
    std::fs::write(&cargo, "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut installs = 0;
    for (job, spec) in doc["jobs"].as_mapping().unwrap() {
        let steps = spec["steps"].as_sequence().unwrap();
        let Some(i) = steps.iter().position(|s| s["name"] == "Install teeform") else { continue };
        installs += 1;
        let key = steps[..i]
            .iter()
            .find(|s| s["uses"] == "actions/cache@v4")
            .and_then(|s| s["with"]["key"].as_str())
            .unwrap_or_else(|| panic!("{job:?}: a cache before the install"));
        assert!(key.contains("env.TEEFORM_REPO") && key.contains("env.TEEFORM_VERSION"), "{job:?}: {key}");
        let out = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", steps[i]["run"].as_str().unwrap()])
            .env("PATH", format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default()))
            .env("TEEFORM_REPO", repo)
            .env("TEEFORM_VERSION", doc["env"]["TEEFORM_VERSION"].as_str().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{job:?}: {}", String::from_utf8_lossy(&out.stderr));
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(args, format!("install\n--locked\n--git\n{repo}\n--tag\nv0.1.0\nteeform\n"), "{job:?}");
    }
    assert_eq!(installs, 3, "each job installs teeform");
}

/// A stand-in chain for JSON-RPC calls (the simulator's and teeform's): an app contract allows
/// a compose hash when `allowed` is set (`eth_call` answers it); there are no receipts.
fn stand_in_chain(allowed: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use serde_json::{Value, json};
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |axum::Json(req): axum::Json<Value>| async move {
            let on = allowed.load(std::sync::atomic::Ordering::SeqCst);
            let result = match req["method"].as_str() {
                Some("eth_call") => json!(format!("0x{}{}", "0".repeat(63), u8::from(on))),
                Some("eth_chainId") => json!("0x2105"),
                _ => Value::Null,
            };
            axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
        }),
    );
    let listener = crate::harness::runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    crate::harness::runtime().spawn(async move { axum::serve(listener, app).await });
    url
}

/// The example workflow's exit-3 handling, run: an on-chain-KMS CVM's compose update is held by
/// the API until its hash is registered, and with no signer in the workflow the apply pauses
/// (exit 3). The apply job and the manual `action: apply` say so and succeed, changing nothing;
/// once the hash is registered, `action: resume` finishes the update. (A resume before the
/// registration waits for it, up to `--timeout`, so it is not run here.)
#[test]
fn the_example_workflow_reports_an_apply_paused_for_on_chain_registration() {
    use serde_json::json;
    use teeform::sim::SimConfig;
    use workflow::*;
    let allowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let chain = stand_in_chain(allowed.clone());
    let t = TestEnv::with_config(SimConfig {
        restart_ms: 150,
        boot_ms: 150,
        chain_rpc: Some(chain.clone()),
        kms_contract: Some(format!("0x{}", "11".repeat(20))),
        chain_id: Some(8453),
        ..Default::default()
    });
    let mut gh = Github::new(&t);
    gh.eth_rpc_url = chain;
    let manifest = "cvms:\n  web:\n    name: chain-web\n    compose: web.yml\n    kms: base\n";
    // The CVM and its app contract were made outside teeform, then imported.
    let prov = t.api(
        "POST",
        "/cvms/provision",
        Some(json!({"name": "chain-web", "compose_file": {"docker_compose_file": WEB}, "kms": "BASE"})),
    );
    assert_eq!(prov.0, 200, "{}", prov.1);
    let made = t.api("POST", "/cvms", Some(json!({"app_id": "22".repeat(20), "compose_hash": prov.1["compose_hash"]})));
    assert!(made.0 < 300, "{}", made.1);
    t.settle();
    gh.commit(manifest, WEB);
    let r = gh.teeform(&t, &["import", "cvm.web", "chain-web"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let hash = || t.cvm_stat("chain-web", "compose_hash");
    let before = hash();
    // From now on the chain allows no new hash until one is registered.
    allowed.store(false, std::sync::atomic::Ordering::SeqCst);

    // A pull request changes the compose file; merged, its apply is held for the chain.
    let changed = WEB.replace("nginx:1.27", "nginx:1.28");
    gh.commit(manifest, &changed);
    let r = gh.trigger(&pr(7, "h7"));
    assert!(r.ok, "{}", r.log);
    gh.merged(7, "h7", "m7");
    let r = gh.trigger(&push("m7"));
    assert!(r.ok, "a paused apply is not a failed job:\n{}", r.log);
    assert!(r.log.contains("## Apply the reviewed plan (exit Some(0))"), "{}", r.log);
    assert!(r.log.contains("::warning::paused awaiting on-chain registration"), "{}", r.log);
    assert!(r.log.contains("compose hash:"), "the pause names the hash to register:\n{}", r.log);
    assert_eq!(hash(), before, "nothing applied while paused");

    // Registered (the app contract now allows the hash): resuming by hand finishes the update.
    allowed.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = gh.trigger(&dispatch("resume"));
    assert!(r.ok, "{}", r.log);
    assert!(!r.log.contains("::warning::"), "{}", r.log);
    let applied = hash();
    assert_ne!(applied, before, "the held update was applied:\n{}", r.log);

    // By hand, `action: apply` of a change held for the chain: the manual job's exit 3.
    allowed.store(false, std::sync::atomic::Ordering::SeqCst);
    gh.commit(manifest, &WEB.replace("nginx:1.27", "nginx:1.29"));
    let r = gh.trigger(&dispatch("apply"));
    assert!(r.ok, "{}", r.log);
    assert!(r.log.contains("## Apply or resume (exit Some(0))"), "{}", r.log);
    assert!(r.log.contains("::warning::paused awaiting on-chain registration"), "{}", r.log);
    assert_eq!(hash(), applied, "nothing applied while paused");
    allowed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(gh.trigger(&dispatch("resume")).ok);
    assert_ne!(hash(), applied);
    let r = gh.teeform(&t, &["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
