//! The test harness: a temp project directory, a simulator on 127.0.0.1, and the real
//! `teeform` binary run against it with a cleared environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use teeform::sim::{Sim, SimConfig, SimHandle};

pub const KEY: &str = "test-api-key";

/// One runtime for every simulator the tests start (each test gets its own simulator).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    })
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    handle: Option<SimHandle>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn code(&self, want: i32) -> &Run {
        assert_eq!(self.code, want, "expected exit {want}\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        Self::with_config(SimConfig { restart_ms: 150, boot_ms: 150, ..Default::default() })
    }

    pub fn with_config(mut cfg: SimConfig) -> TestEnv {
        cfg.api_key = Some(KEY.into());
        let sim = Sim::new(cfg, None).expect("simulator");
        let handle = runtime().block_on(sim.clone().spawn("127.0.0.1:0".parse().unwrap())).expect("simulator listens");
        let mut env = BTreeMap::new();
        env.insert("PHALA_CLOUD_API_KEY".into(), KEY.into());
        env.insert("NO_COLOR".into(), "1".into());
        env.insert("TEEFORM_NO_PROGRESS".into(), "1".into());
        env.insert("HOME".into(), "/nonexistent".into());
        TestEnv { dir: tempfile::tempdir().expect("tempdir"), sim, handle: Some(handle), env }
    }

    pub fn prefix(&self) -> String {
        self.handle.as_ref().expect("running").api_prefix()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
        self
    }

    /// Writes `teeform.yaml` with the simulator's endpoint prepended.
    pub fn manifest(&self, body: &str) -> &Self {
        self.write("teeform.yaml", &format!("provider:\n  phala:\n    endpoint: {}\n{body}", self.prefix()))
    }

    /// The teeform binary with this environment only (cleared, plus PATH), run in the test dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_teeform"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(&self.env)
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd
    }

    /// The teeform process started in the background, its output discarded: for tests that
    /// kill or signal it midway.
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        use std::process::Stdio;
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("teeform runs")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("teeform runs");
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out: Output = child.wait_with_output().expect("teeform finishes");
        let clean = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace(&self.dir.path().display().to_string(), "$DIR")
                .replace(&self.prefix(), "$API")
        };
        Run { code: out.status.code().unwrap_or(-1), stdout: clean(&out.stdout), stderr: clean(&out.stderr) }
    }

    /// `GET /_sim/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        self.sim_get("/_sim/stats")
    }

    /// A GET on the simulator's root (e.g. `/_sim/cvms/ID/env`).
    pub fn sim_get(&self, path: &str) -> serde_json::Value {
        let url = self.prefix().replace("/api/v1", path);
        runtime().block_on(async { reqwest::get(&url).await.unwrap().json().await.unwrap() })
    }

    /// Changes simulator knobs at runtime (`POST /_sim/config`).
    pub fn configure(&self, knobs: serde_json::Value) {
        let url = self.prefix().replace("/api/v1", "/_sim/config");
        runtime().block_on(async {
            let r = reqwest::Client::new().post(&url).json(&knobs).send().await.unwrap();
            assert!(r.status().is_success(), "configure: {}", r.text().await.unwrap());
        });
    }

    /// Requests counted for `METHOD path-prefix` (e.g. `PATCH /api/v1/cvms/`).
    pub fn count(&self, method_path: &str) -> u64 {
        self.stats()["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(method_path))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    }

    /// Requests counted for exactly `METHOD path` (e.g. `POST /api/v1/cvms`).
    pub fn count_exact(&self, method_path: &str) -> u64 {
        self.stats()["requests"][method_path].as_u64().unwrap_or(0)
    }

    pub fn cvm_stat(&self, name: &str, field: &str) -> serde_json::Value {
        self.stats()["cvms"][name][field].clone()
    }

    /// A raw API call to the simulator, as another tool would make it.
    /// Another tool creates a CVM (`POST /cvms/provision` with `provision`, then the commit)
    /// and waits for it to settle; returns the provision's answer (`app_id`, `compose_hash`).
    pub fn create_outside(&self, provision: serde_json::Value) -> serde_json::Value {
        let (code, prov) = self.api("POST", "/cvms/provision", Some(provision));
        assert_eq!(code, 200, "{prov}");
        let commit = serde_json::json!({"app_id": prov["app_id"], "compose_hash": prov["compose_hash"]});
        let (code, vm) = self.api("POST", "/cvms", Some(commit));
        assert_eq!(code, 200, "{vm}");
        self.settle();
        prov
    }

    pub fn api(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.prefix());
        runtime().block_on(async {
            let c = reqwest::Client::new();
            let mut r = c.request(method.parse().unwrap(), &url).header("X-API-Key", KEY);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
        })
    }

    /// Waits until every CVM in the simulator is running (after out-of-band changes).
    pub fn settle(&self) {
        for _ in 0..200 {
            let s = self.stats();
            if s["cvms"].as_object().unwrap().values().all(|c| c["status"] == "running") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("simulator did not settle");
    }

    pub fn file_exists(&self, rel: &str) -> bool {
        Path::new(&self.path(rel)).exists()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            runtime().block_on(h.stop());
        }
    }
}

pub const WEB: &str = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"80:80\"\n";
