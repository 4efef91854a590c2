//! What every figure needs: the simulator in this process, the real `teeform` binary run as a
//! child (wall time and peak RSS from `wait4`), generated projects, and markdown tables.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use teeform::sim::{Sim, SimConfig, SimHandle};

pub const KEY: &str = "bench-api-key";

/// How the suite runs: sizes and repetitions.
pub struct Bench {
    pub rt: tokio::runtime::Runtime,
    /// Small sizes, counts asserted, no timing claims (CI).
    pub quick: bool,
    /// Repetitions of each timed measurement (the median is reported).
    pub runs: usize,
    /// The largest fleet a figure that honours it measures (`--max-cvms`).
    pub max_cvms: usize,
}

impl Bench {
    /// Picks the full-size or quick value.
    pub fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }

    /// Fails the suite in quick mode (where counts are the test); reported in full mode.
    #[track_caller]
    pub fn check(&self, ok: bool, what: &str) {
        if ok {
            return;
        }
        if self.quick {
            panic!("check failed: {what}");
        }
        eprintln!("WARNING: check failed: {what}");
    }
}

/// The simulator, served on 127.0.0.1 from this process.
pub struct SimServer {
    handle: Option<SimHandle>,
    pub prefix: String,
    root: String,
    client: reqwest::Client,
}

impl SimServer {
    pub fn start(b: &Bench, mut cfg: SimConfig) -> SimServer {
        cfg.api_key = Some(KEY.into());
        let sim = Sim::new(cfg, None).expect("simulator");
        let handle = b.rt.block_on(sim.spawn("127.0.0.1:0".parse().expect("address"))).expect("simulator listens");
        let prefix = handle.api_prefix();
        let root = prefix.trim_end_matches("/api/v1").to_string();
        SimServer { handle: Some(handle), prefix, root, client: reqwest::Client::new() }
    }

    /// Changes knobs at runtime (`POST /_sim/config`), e.g. `{"latency_ms": 50}`.
    pub fn configure(&self, b: &Bench, patch: Value) {
        let url = format!("{}/_sim/config", self.root);
        b.rt.block_on(async { self.client.post(&url).json(&patch).send().await?.error_for_status() })
            .expect("simulator accepts the configuration");
    }

    pub fn stats(&self, b: &Bench) -> Stats {
        let url = format!("{}/_sim/stats", self.root);
        Stats(b.rt.block_on(async { self.client.get(&url).send().await?.json().await }).expect("simulator stats"))
    }

    /// Waits until no CVM is mid-restart (after changes made outside teeform).
    pub fn settle(&self, b: &Bench) {
        for _ in 0..2000 {
            let s = self.stats(b);
            if s.0["cvms"].as_object().is_some_and(|m| m.values().all(|c| c["status"] == "running")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the simulator did not settle");
    }

    pub fn stop(mut self, b: &Bench) {
        if let Some(h) = self.handle.take() {
            b.rt.block_on(h.stop());
        }
    }
}

/// `GET /_sim/stats`, with the sums the figures need.
#[derive(Clone)]
pub struct Stats(pub Value);

impl Stats {
    /// Requests whose `METHOD /path` starts with `prefix` (e.g. `PATCH /api/v1/cvms/`).
    pub fn count(&self, prefix: &str) -> u64 {
        self.0["requests"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with(prefix)).filter_map(|(_, v)| v.as_u64()).sum())
            .unwrap_or(0)
    }

    /// Requests to one endpoint (`METHOD /route` as matched, e.g. `GET /api/v1/cvms/{id}`).
    pub fn endpoint(&self, key: &str) -> u64 {
        self.0["endpoints"][key].as_u64().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0["total_requests"].as_u64().unwrap_or(0)
    }

    /// Requests that change something (not GET).
    pub fn mutating(&self) -> u64 {
        self.total() - self.count("GET ")
    }

    /// Restarts summed over CVMs whose name starts with `prefix`.
    pub fn restarts(&self, prefix: &str) -> u64 {
        self.0["cvms"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with(prefix)).filter_map(|(_, c)| c["restarts"].as_u64()).sum())
            .unwrap_or(0)
    }
}

/// One run of the teeform binary.
pub struct Run {
    pub code: i32,
    pub wall: Duration,
    /// Peak resident set size of the process, in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// CPU time (user + system): less sensitive than wall time to a busy machine.
    pub cpu: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn expect(self, code: i32, what: &str) -> Run {
        assert_eq!(
            self.code,
            code,
            "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            tail(&self.stdout),
            self.stderr
        );
        self
    }
}

fn tail(s: &str) -> &str {
    let cut = s.len().saturating_sub(4000);
    let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    &s[cut..]
}

/// Runs `teeform ARGS` in `dir` with a cleared environment; stdout and stderr go to files so
/// a large plan can never block the child while this process waits in `wait4`.
pub fn teeform(dir: &Path, args: &[&str]) -> Run {
    teeform_env(dir, args, &[])
}

/// [`teeform`] with variables added to its environment (e.g. `TEEFORM_PER_CVM_READS=1`).
pub fn teeform_with(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let env: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    teeform_env(dir, args, &env)
}

/// [`teeform`] with these environment variables added (secrets, a passphrase).
pub fn teeform_env(dir: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let out = dir.join(".bench-stdout");
    let err = dir.join(".bench-stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_teeform"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .env("TEEFORM_NO_PROGRESS", "1")
        .env("PHALA_CLOUD_API_KEY", KEY)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let (code, wall, usage) = spawn_measured(&mut cmd);
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Run {
        code,
        wall,
        max_rss_kib: usage.ru_maxrss as u64,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Spawns and reaps the child with `wait4`, which reports the child's own resource usage.
pub fn spawn_measured(cmd: &mut Command) -> (i32, Duration, libc::rusage) {
    let start = Instant::now();
    let child = cmd.spawn().expect("the command starts");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain syscall on our own child; `rusage` is a C struct for which zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
    let wall = start.elapsed();
    // The child is reaped; dropping `Child` neither waits nor kills.
    drop(child);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, wall, usage)
}

/// A generated project: `n` CVMs, each with its own compose file.
pub struct Fleet {
    dir: PathBuf,
    /// Removes the directory when dropped, unless `BENCH_KEEP` is set (to profile it later).
    _guard: Option<tempfile::TempDir>,
    pub n: usize,
    /// The last `chain` CVMs form a `depends_on` chain (sorting last: the worst case for
    /// running steps in plan order).
    pub chain: usize,
    /// Every CVM but each tenth references its group's first CVM (`${cvm.X.app_id}`).
    pub groups: bool,
}

impl Fleet {
    pub fn new(prefix: &str, n: usize, chain: usize, groups: bool) -> Fleet {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dir, guard) = if std::env::var_os("BENCH_KEEP").is_some() {
            let dir = tmp.keep();
            eprintln!("  keeping {} CVMs in {}", n, dir.display());
            (dir, None)
        } else {
            (tmp.path().to_path_buf(), Some(tmp))
        };
        let f = Fleet { dir, _guard: guard, n, chain, groups };
        std::fs::create_dir_all(f.path().join("compose")).expect("compose dir");
        f.write_manifest(prefix);
        for i in 0..n {
            f.set_release(i, 0);
        }
        f
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self, i: usize) -> String {
        if i >= self.n - self.chain { format!("zchain-{:05}", i) } else { format!("svc-{i:05}") }
    }

    fn write_manifest(&self, prefix: &str) {
        let mut m = format!("provider:\n  phala:\n    endpoint: {prefix}\ncvms:\n");
        for i in 0..self.n {
            let key = self.key(i);
            let _ = write!(
                m,
                "  {key}:\n    compose: compose/{key}.yml\n    vcpu: 2\n    memory: 4096\n    disk_size: 40\n    env:\n      LOG_LEVEL: info\n      SHARD: \"{i}\"\n"
            );
            if self.groups && !i.is_multiple_of(10) && i < self.n - self.chain {
                let _ = writeln!(m, "      LEADER_APP_ID: ${{cvm.{}.app_id}}", self.key(i - i % 10));
            }
            if i > self.n - self.chain {
                let _ = writeln!(m, "    depends_on: [{}]", self.key(i - 1));
            }
        }
        m.push_str("outputs:\n  first_app_id: ${cvm.svc-00000.app_id}\n");
        std::fs::write(self.path().join("teeform.yaml"), m).expect("manifest");
    }

    /// Writes CVM `i`'s compose file with release `r` of its image: a new release is a change.
    pub fn set_release(&self, i: usize, r: usize) {
        let key = self.key(i);
        let leader = if self.groups && !i.is_multiple_of(10) && i < self.n - self.chain {
            "      LEADER_APP_ID: ${LEADER_APP_ID}\n"
        } else {
            ""
        };
        let compose = format!(
            "services:\n  app:\n    image: ghcr.io/acme/{key}:1.{r}.0\n    restart: always\n    ports:\n      - \"8080:8080\"\n    environment:\n      LOG_LEVEL: ${{LOG_LEVEL}}\n      SHARD: ${{SHARD}}\n{leader}    volumes:\n      - /var/run/dstack.sock:/var/run/dstack.sock\n      - data:/data\n    healthcheck:\n      test: [\"CMD\", \"wget\", \"-qO-\", \"http://127.0.0.1:8080/health\"]\n      interval: 10s\nvolumes:\n  data:\n"
        );
        std::fs::write(self.path().join(format!("compose/{key}.yml")), compose).expect("compose file");
    }

    /// Creates every CVM through `teeform apply` against the simulator, so state is exactly
    /// what a real run leaves (the simulator should have boot and restart times of zero).
    pub fn apply_all(&self, parallelism: usize) -> Run {
        let p = parallelism.to_string();
        teeform(self.path(), &["apply", "--auto-approve", "--parallelism", &p]).expect(0, "creating the fleet")
    }

    /// Bytes of the state directory on disk.
    pub fn state_bytes(&self) -> u64 {
        dir_size(&self.path().join("state"))
    }
}

pub fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `/proc/self/io`: `wchar` counts bytes handed to write-like syscalls, `write_bytes` bytes
/// this process caused to be sent to storage (page granularity).
#[derive(Debug, Clone, Copy, Default)]
pub struct Io {
    pub wchar: u64,
    pub write_bytes: u64,
}

impl Io {
    pub fn now() -> Io {
        let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim_start_matches(':').trim().parse().ok()))
                .unwrap_or(0)
        };
        Io { wchar: field("wchar"), write_bytes: field("write_bytes") }
    }

    pub fn since(self, start: Io) -> Io {
        Io { wchar: self.wchar - start.wchar, write_bytes: self.write_bytes - start.write_bytes }
    }
}

/// Median of measured durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A markdown table.
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: vec![],
            notes: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    pub fn render(&self) -> String {
        let mut s =
            format!("### {}\n\n| {} |\n|{}\n", self.title, self.header.join(" | "), "---|".repeat(self.header.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        for n in &self.notes {
            let _ = write!(s, "\n{n}\n");
        }
        s
    }
}

/// Cores, memory and CPU model, for the report header.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        .unwrap_or(0);
    format!("{cores} cores, {:.1} GiB memory, {model}", mem_kib as f64 / 1024.0 / 1024.0)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Where tools the suite installs are kept between runs (`target/tmp`).
pub fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-tools")
}
