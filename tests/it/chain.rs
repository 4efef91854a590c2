//! On-chain KMS end to end: a real local chain (anvil, started by `scripts/test-chain`), the
//! project's own DstackApp/DstackKms test contracts (`contracts/`), the simulator checking
//! registrations over JSON-RPC, and the real binary. Without `TEEFORM_TEST_ANVIL_URL` these
//! tests skip (loudly); `scripts/test-chain` sets it, and fails in CI when it cannot.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use teeform::sim::SimConfig;

use crate::harness::{Run, TestEnv, WEB};

const KMS_BIN: &str = include_str!("../../contracts/build/TestDstackKms.bin");

const MANIFEST: &str = "cvms:
  web:
    name: chain-web
    compose: web.yml
    kms:
      chain: 31337
    env:
      MODE: production
";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// The chain `scripts/test-chain` started, or `None` (and a loud note) when there is none.
fn anvil() -> Option<(String, String)> {
    match (std::env::var("TEEFORM_TEST_ANVIL_URL"), std::env::var("TEEFORM_TEST_CAST")) {
        (Ok(url), Ok(cast)) => Some((url, cast)),
        _ => {
            eprintln!("SKIPPED: no local chain; run scripts/test-chain (scripts/test-all does) for on-chain tests");
            None
        }
    }
}

/// A fresh key with some ETH on the chain (each test signs with its own, so they run in parallel).
fn funded_key(url: &str) -> String {
    let signer = PrivateKeySigner::from_bytes(&B256::from(rand_bytes())).expect("key");
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let balance = U256::from(10u64).pow(U256::from(20u64));
    block_on(async {
        let _: serde_json::Value =
            provider.raw_request("anvil_setBalance".into(), (signer.address(), balance)).await.expect("fund");
    });
    format!("0x{}", alloy::hex::encode(signer.to_bytes()))
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    let seed = uuid::Uuid::new_v4();
    let more = uuid::Uuid::new_v4();
    b[..16].copy_from_slice(seed.as_bytes());
    b[16..].copy_from_slice(more.as_bytes());
    keccak256(b).0
}

/// Deploys the test KMS contract; returns its address.
fn deploy_kms(url: &str, key: &str) -> String {
    let signer: PrivateKeySigner = key.parse().expect("key");
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url.parse().unwrap());
    let code = alloy::hex::decode(KMS_BIN.trim()).expect("bytecode");
    block_on(async {
        let tx = TransactionRequest::default().with_deploy_code(code);
        let receipt = provider.send_transaction(tx).await.expect("send").get_receipt().await.expect("mined");
        format!("{:#x}", receipt.contract_address.expect("a contract"))
    })
}

/// Every compose hash the app contract registered (`ComposeHashAdded` events), in order.
fn registered(url: &str, app: &str) -> Vec<String> {
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let filter = Filter::new()
        .address(app.parse::<Address>().expect("address"))
        .event("ComposeHashAdded(bytes32)")
        .from_block(0);
    block_on(async { provider.get_logs(&filter).await.expect("logs") })
        .iter()
        .map(|l| alloy::hex::encode(&l.data().data))
        .collect()
}

/// The transactions that emitted those events.
fn registering_txs(url: &str, app: &str) -> Vec<String> {
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let filter = Filter::new()
        .address(app.parse::<Address>().expect("address"))
        .event("ComposeHashAdded(bytes32)")
        .from_block(0);
    block_on(async { provider.get_logs(&filter).await.expect("logs") })
        .iter()
        .map(|l| format!("{:#x}", l.transaction_hash.expect("mined")))
        .collect()
}

/// `cast send APP addComposeHash(HASH)`, as a user registering outside teeform would; returns
/// the transaction hash.
fn cast_register(cast: &str, url: &str, key: &str, app: &str, hash: &str) -> String {
    let out = Command::new(cast)
        .args(["send", app, "addComposeHash(bytes32)", hash, "--rpc-url", url, "--private-key", key, "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("cast runs");
    assert!(out.status.success(), "cast send failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cast --json");
    v["transactionHash"].as_str().expect("a transaction hash").to_string()
}

/// The `compose hash:` line a paused apply prints.
fn paused_hash(r: &Run) -> String {
    let line = r.stdout.lines().find(|l| l.trim_start().starts_with("compose hash:")).unwrap_or_else(|| {
        panic!("no compose hash in the pause instructions\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr)
    });
    line.split_whitespace().last().unwrap().to_string()
}

fn commit_token(r: &Run) -> Option<String> {
    r.stdout
        .lines()
        .find(|l| l.trim_start().starts_with("commit token:"))
        .map(|l| l.split_whitespace().last().unwrap().into())
}

struct Chain {
    t: TestEnv,
    url: String,
    cast: String,
    owner: String,
    app: String,
}

impl Chain {
    /// A simulator wired to the chain, and one on-chain-KMS CVM created by teeform with a
    /// signer (deploying its app contract through the KMS contract).
    fn new() -> Option<Chain> {
        let (url, cast) = anvil()?;
        Some(Chain::on(url, cast))
    }

    fn on(url: String, cast: String) -> Chain {
        Chain::styled(url, cast, "compact")
    }

    /// `style`: how the simulated platform hashes app-compose (see `SimConfig`).
    fn styled(url: String, cast: String, style: &str) -> Chain {
        let owner = funded_key(&url);
        let kms = deploy_kms(&url, &owner);
        let mut t = TestEnv::with_config(SimConfig {
            restart_ms: 150,
            boot_ms: 150,
            chain_rpc: Some(url.clone()),
            kms_contract: Some(kms),
            chain_id: Some(31337),
            compose_hash_style: style.into(),
            ..Default::default()
        });
        t.write("web.yml", WEB);
        t.manifest(MANIFEST);
        t.env.insert("ETH_RPC_URL".into(), url.clone());
        t.env.insert("PRIVATE_KEY".into(), owner.clone());
        let r = t.run(&["apply", "--auto-approve"]);
        r.ok();
        assert!(!r.stdout.contains(&owner[2..]) && !r.stderr.contains(&owner[2..]), "the key was printed");
        t.env.remove("PRIVATE_KEY");
        let app = format!("0x{}", t.cvm_stat("chain-web", "app_id").as_str().expect("an app id"));
        let hash = t.cvm_stat("chain-web", "compose_hash").as_str().unwrap().to_string();
        assert_eq!(registered(&url, &app), [hash], "the app contract was deployed allowing the first hash");
        Chain { t, url, cast, owner, app }
    }

    fn change_compose(&self) {
        self.t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    }

    /// Changes the compose file and applies without a signer: the update pauses (exit 3).
    /// Returns the compose hash awaiting registration.
    fn pause_an_update(&self) -> String {
        self.change_compose();
        let r = self.t.run(&["apply", "--auto-approve"]);
        r.code(3);
        paused_hash(&r)
    }

    fn sim_hash(&self) -> String {
        self.t.cvm_stat("chain-web", "compose_hash").as_str().unwrap().to_string()
    }

    fn pending_in_state(&self) -> bool {
        let r = self.t.run(&["plan"]);
        r.stderr.contains("paused awaiting on-chain registration")
    }

    fn with_key(&mut self, on: bool) {
        if on {
            self.t.env.insert("PRIVATE_KEY".into(), self.owner.clone());
        } else {
            self.t.env.remove("PRIVATE_KEY");
        }
    }
}

#[test]
fn with_a_signer_apply_registers_the_hash_and_commits() {
    let Some(mut c) = Chain::new() else { return };
    c.change_compose();
    let p = c.t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains(&format!("on chain 31337 contract {}", c.app)), "{}", p.stdout);
    assert!(p.stdout.contains("not yet allowed"), "{}", p.stdout);
    assert!(p.stdout.contains("1 on-chain registration."), "{}", p.stdout);

    c.with_key(true);
    let r = c.t.run(&["apply", "--auto-approve"]);
    r.ok();
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(&c.owner[2..]), "the key was printed");
    let hash = c.sim_hash();
    assert_eq!(registered(&c.url, &c.app).len(), 2, "exactly one registration transaction");
    assert_eq!(registered(&c.url, &c.app)[1], hash, "the CVM runs the hash that was registered");
    c.t.run(&["plan", "--detailed-exitcode"]).code(0);
    let key = c.owner[2..].to_string();
    for f in walk(&c.t.path("state")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&key), "the key is in {}", f.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn destroying_a_cvm_drops_its_paused_update() {
    let Some(c) = Chain::new() else { return };
    c.pause_an_update();
    assert!(c.pending_in_state());
    c.t.run(&["destroy", "--auto-approve"]).ok();
    assert_eq!(c.t.stats()["cvm_count"], 0);
    assert!(!c.pending_in_state(), "nothing is left paused for a CVM that is gone");
    let r = c.t.run(&["apply", "--resume"]);
    r.ok();
    assert!(r.stdout.contains("Nothing to resume"), "{}", r.stdout);
}

#[test]
fn without_a_signer_apply_pauses_then_resumes_after_cast_send() {
    let Some(c) = Chain::new() else { return };
    c.change_compose();
    // A CVM with Phala's KMS in the same apply goes ahead while the on-chain one waits.
    c.t.write("other.yml", WEB);
    c.t.manifest(&format!("{MANIFEST}  other:\n    name: chain-other\n    compose: other.yml\n"));
    let before = c.sim_hash();
    let r = c.t.run(&["apply", "--auto-approve"]);
    r.code(3);
    assert_eq!(c.t.cvm_stat("chain-other", "status"), "running", "the independent CVM was created");
    assert!(r.stderr.contains("paused: awaiting on-chain registration"), "{}", r.stderr);
    let hash = paused_hash(&r);
    assert!(r.stdout.contains(&format!("cast send {} 'addComposeHash(bytes32)' {hash}", c.app)), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("0xdfc77223{}", &hash[2..])), "calldata shown: {}", r.stdout);
    assert_eq!(c.sim_hash(), before, "nothing committed while paused");
    assert!(c.pending_in_state());

    // Resuming before the chain allows the hash waits, then pauses again.
    c.t.run(&["apply", "--resume", "--timeout", "1s"]).code(3);

    cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    let r = c.t.run(&["apply", "--resume"]);
    r.ok();
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
    assert_eq!(registered(&c.url, &c.app).len(), 2, "teeform sent no transaction of its own");
    assert!(!c.pending_in_state());
    c.t.run(&["plan", "--detailed-exitcode"]).code(0);
    let r = c.t.run(&["apply", "--resume"]);
    r.ok();
    assert!(r.stdout.contains("Nothing to resume"), "{}", r.stdout);
}

#[test]
fn when_the_api_hashes_differently_its_hash_is_the_one_registered() {
    let Some((url, cast)) = anvil() else { return };
    let mut c = Chain::styled(url, cast, "indent4");
    c.change_compose();
    let p = c.t.run(&["plan"]);
    let preview = p
        .stdout
        .split("compose hash 0x")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the plan names the hash")
        .to_string();
    let r = c.t.run(&["apply", "--auto-approve"]);
    r.code(3);
    let hash = paused_hash(&r);
    assert_ne!(hash, format!("0x{preview}"), "the simulated platform hashes differently");
    assert!(r.stdout.contains(&format!("the plan's preview was 0x{preview}; register the hash above")), "{}", r.stdout);
    assert!(r.stderr.contains(&format!("differs from the preview 0x{preview}")), "{}", r.stderr);
    // Resuming with the owner's key registers the API's hash, not the preview.
    c.with_key(true);
    c.t.run(&["apply", "--resume"]).ok();
    assert_eq!(registered(&c.url, &c.app)[1..], [hash[2..].to_string()]);
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
}

#[test]
fn prepare_only_then_resume_with_the_transaction_commits_with_the_token() {
    let Some(mut c) = Chain::new() else { return };
    c.change_compose();
    // A key in the environment is not used: a prepared update is signed elsewhere (a Safe).
    c.with_key(true);
    let r = c.t.run(&["apply", "--auto-approve", "--prepare-only"]);
    r.code(3);
    c.with_key(false);
    let token = commit_token(&r).expect("the commit token is printed");
    let hash = paused_hash(&r);
    assert!(r.stdout.contains("propose it to a Safe"), "{}", r.stdout);
    assert_eq!(registered(&c.url, &c.app).len(), 1, "prepare-only sends nothing");

    let tx = cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    let r = c.t.run(&["apply", "--resume", "--tx-hash", &tx]);
    r.ok();
    let commits: u64 = c.t.stats()["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("POST ") && k.ends_with("/commit-update"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(commits, 1, "committed once, with the token");
    assert!(!token.is_empty());
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
    assert_eq!(registered(&c.url, &c.app).len(), 2);
}

#[test]
fn a_transaction_for_another_hash_is_refused_clearly_and_stays_resumable() {
    let Some(c) = Chain::new() else { return };
    let hash = c.pause_an_update();
    // Someone registered a hash they computed themselves (a user incident, reference row 1).
    let wrong = format!("0x{}", "5a".repeat(32));
    let tx = cast_register(&c.cast, &c.url, &c.owner, &c.app, &wrong);
    let r = c.t.run(&["apply", "--resume", "--tx-hash", &tx]);
    r.code(1);
    assert!(r.stderr.contains(&format!("does not register compose hash {hash}")), "{}", r.stderr);
    assert!(r.stderr.contains(&wrong[2..]), "names what it did register: {}", r.stderr);
    assert!(c.pending_in_state(), "still resumable");

    cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    c.t.run(&["apply", "--resume"]).ok();
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
}

#[test]
fn an_unreachable_chain_is_a_clear_error_and_the_update_stays_resumable() {
    let Some(mut c) = Chain::new() else { return };
    c.pause_an_update();
    c.t.env.insert("ETH_RPC_URL".into(), "http://127.0.0.1:1/some/key".into());
    let r = c.t.run(&["apply", "--resume"]);
    r.code(1);
    assert!(r.stderr.contains("cannot reach the chain at http://127.0.0.1:1/…"), "{}", r.stderr);
    assert!(!r.stderr.contains("some/key"), "the RPC path is not shown: {}", r.stderr);
    assert!(r.stderr.contains("apply --resume"), "{}", r.stderr);
    // With a signer, an unreachable chain is the same clear error, and nothing is sent.
    c.with_key(true);
    c.t.run(&["apply", "--resume"]).code(1);
    c.t.env.insert("ETH_RPC_URL".into(), c.url.clone());
    c.t.run(&["apply", "--resume"]).ok();
    assert_eq!(registered(&c.url, &c.app).len(), 2, "one registration, sent once the chain was back");
}

/// Runs teeform in the background, to kill it.
fn spawn(t: &TestEnv, args: &[&str]) -> std::process::Child {
    t.command(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("teeform runs")
}

fn kill9(mut child: std::process::Child) {
    // SAFETY: the pid is that of a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

#[test]
fn killed_while_waiting_for_the_chain_resume_completes_with_one_transaction() {
    let Some(c) = Chain::new() else { return };
    let hash = c.pause_an_update();
    // `--resume` polls the chain; kill it mid-wait, as a cancelled CI job would.
    let child = spawn(&c.t, &["apply", "--resume", "--timeout", "60s"]);
    std::thread::sleep(Duration::from_millis(1500));
    kill9(child);
    cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    c.t.run(&["apply", "--resume"]).ok();
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
    assert_eq!(registered(&c.url, &c.app).len(), 2, "exactly one registration transaction");
}

#[test]
fn killed_between_the_transaction_and_the_commit_resume_sends_no_second_transaction() {
    let Some(mut c) = Chain::new() else { return };
    c.change_compose();
    c.with_key(true);
    // Every API answer takes a while, so the kill lands after the transaction, before the
    // update is confirmed.
    let url = c.t.prefix().replace("/api/v1", "/_sim/config");
    let set = |ms: u64| {
        block_on(async { reqwest::Client::new().post(&url).json(&serde_json::json!({"latency_ms": ms})).send().await })
            .expect("sim config");
    };
    set(1500);
    let child = spawn(&c.t, &["apply", "--auto-approve"]);
    let start = Instant::now();
    while registered(&c.url, &c.app).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "teeform never registered the hash");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill9(child);
    set(0);
    let hash = registered(&c.url, &c.app)[1].clone();
    let tx = registering_txs(&c.url, &c.app)[1].clone();
    let r = c.t.run(&["apply", "--resume"]);
    r.ok();
    // The transaction was journaled before it was sent: the resumed run waits for that one.
    assert!(r.stderr.contains(&format!("waiting for transaction {tx}")), "{}", r.stderr);
    assert_eq!(c.sim_hash(), hash);
    assert_eq!(registered(&c.url, &c.app).len(), 2, "no second transaction for the same hash");
}

/// An anvil of this test's own (stopped by PID when dropped), for tests that stop mining.
struct OwnAnvil {
    child: std::process::Child,
    url: String,
}

impl OwnAnvil {
    fn start() -> Option<OwnAnvil> {
        let bin = std::env::var("TEEFORM_TEST_ANVIL_BIN").ok().or_else(|| {
            anvil()?;
            panic!("scripts/test-chain sets TEEFORM_TEST_ANVIL_BIN with TEEFORM_TEST_ANVIL_URL")
        })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil starts");
        let a = OwnAnvil { child, url: format!("http://127.0.0.1:{port}") };
        let provider = ProviderBuilder::new().connect_http(a.url.parse().unwrap());
        let start = Instant::now();
        while block_on(async { provider.get_chain_id().await }).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "anvil did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(a)
    }

    fn rpc(&self, method: &'static str, params: serde_json::Value) -> serde_json::Value {
        let provider = ProviderBuilder::new().connect_http(self.url.parse().unwrap());
        block_on(async { provider.raw_request(method.into(), params).await }).expect(method)
    }
}

impl Drop for OwnAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs teeform in the background with stderr read line by line.
fn spawn_watched(t: &TestEnv, args: &[&str]) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = t
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("teeform runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line with `{needle}`: {e}"),
        }
    }
}

#[test]
fn a_transaction_still_pending_at_a_crash_is_waited_for_not_sent_again() {
    let Some(chain) = OwnAnvil::start() else { return };
    let cast = std::env::var("TEEFORM_TEST_CAST").unwrap();
    let mut c = Chain::on(chain.url.clone(), cast);
    c.change_compose();
    c.with_key(true);
    // Blocks stop: teeform's transaction stays pending while it waits for the receipt.
    chain.rpc("evm_setAutomine", serde_json::json!([false]));
    let (child, rx) = spawn_watched(&c.t, &["apply", "--auto-approve"]);
    let line = wait_for_line(&rx, "registering compose hash on chain (tx ");
    let tx = line.split("(tx ").nth(1).unwrap().trim_end_matches(')').to_string();
    let start = Instant::now();
    while chain.rpc("eth_getTransactionByHash", serde_json::json!([tx])).is_null() {
        assert!(start.elapsed() < Duration::from_secs(30), "the transaction never reached the chain");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill9(child);
    assert_eq!(registered(&c.url, &c.app).len(), 1, "nothing mined yet");

    // The resumed run finds the journaled transaction (still pending) and waits for it
    // instead of signing a second one; then a block is mined.
    let (mut child, rx) = spawn_watched(&c.t, &["apply", "--resume"]);
    wait_for_line(&rx, &format!("waiting for transaction {tx}"));
    chain.rpc("evm_mine", serde_json::json!([]));
    let status = child.wait().unwrap();
    assert!(status.success(), "resume failed: {status}");
    assert_eq!(registering_txs(&c.url, &c.app)[1..], [tx], "exactly the journaled transaction landed");
    assert_eq!(format!("0x{}", c.sim_hash()), format!("0x{}", registered(&c.url, &c.app)[1]));
}

#[test]
fn the_simulator_confirms_only_what_the_chain_allows() {
    let Some(c) = Chain::new() else { return };
    let hash = c.pause_an_update();
    let confirm = |tx: &str| confirm_raw(&c.t, &hash, tx);
    let cases: [(&str, u16, &str); 2] =
        [(&format!("0x{}", "11".repeat(32)), 467, "ERR-01-007"), ("already-registered", 468, "ERR-01-008")];
    for (tx, status, code) in cases {
        let (got, body) = confirm(tx);
        assert_eq!((got, body["detail"]["error_code"].as_str()), (status, Some(code)), "{tx}: {body}");
    }
    let other = cast_register(&c.cast, &c.url, &c.owner, &c.app, &format!("0x{}", "77".repeat(32)));
    assert_eq!(confirm(&other).0, 467, "a transaction registering another hash is not proof");
    let tx = cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    assert_eq!(confirm(&tx).0, 202);
    // Confirmed outside teeform (as if teeform died right after confirming): resuming finds
    // the CVM already as the manifest wants it and settles the paused update.
    let r = c.t.run(&["apply", "--resume"]);
    r.ok();
    assert!(r.stderr.contains("is already in effect"), "{}", r.stderr);
    assert!(!c.pending_in_state());
    c.t.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// confirmCvmPatch as the SDK sends it: an empty body and the two headers.
fn confirm_raw(t: &TestEnv, hash: &str, tx: &str) -> (u16, serde_json::Value) {
    let id = t.cvm_stat("chain-web", "id").as_str().unwrap().to_string();
    let url = format!("{}/cvms/{id}", t.prefix());
    block_on(async {
        let resp = reqwest::Client::new()
            .patch(&url)
            .header("X-API-Key", crate::harness::KEY)
            .header("X-Compose-Hash", hash.trim_start_matches("0x"))
            .header("X-Transaction-Hash", tx)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or_default())
    })
}

#[test]
fn an_update_confirmed_just_before_a_crash_is_recorded_on_resume() {
    let Some(c) = Chain::new() else { return };
    // A new env key changes allowed_envs (so the hash), and its value cannot be read back:
    // only the paused update's record knows it.
    c.t.manifest(&format!("{MANIFEST}      LEVEL: debug\n"));
    let r = c.t.run(&["apply", "--auto-approve"]);
    r.code(3);
    let hash = paused_hash(&r);
    let tx = cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    assert_eq!(confirm_raw(&c.t, &hash, &tx).0, 202, "confirmed, as teeform would have just before dying");
    c.t.settle();
    // The API no longer holds the update (466); the CVM runs the paused hash, so it is recorded.
    let r = c.t.run(&["apply", "--resume"]);
    r.ok();
    assert!(r.stderr.contains("confirming the update"), "went through the confirm (466) path: {}", r.stderr);
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
    assert!(!c.pending_in_state());
    c.t.run(&["plan", "--detailed-exitcode"]).code(0);
    let id = c.t.cvm_stat("chain-web", "id").as_str().unwrap().to_string();
    assert_eq!(c.t.sim_get(&format!("/_sim/cvms/{id}/env"))["env"]["LEVEL"], "debug");
}

#[test]
fn a_signer_that_does_not_own_the_app_pauses_instead_of_sending() {
    let Some(mut c) = Chain::new() else { return };
    c.change_compose();
    // As when a Safe owns the app and CI holds some other key.
    let stranger = funded_key(&c.url);
    c.t.env.insert("PRIVATE_KEY".into(), stranger.clone());
    let r = c.t.run(&["apply", "--auto-approve"]);
    r.code(3);
    assert!(r.stderr.contains("is not the contract's owner"), "{}", r.stderr);
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(&stranger[2..]), "the key was printed");
    assert_eq!(registered(&c.url, &c.app).len(), 1, "nothing sent");
    c.with_key(true);
    c.t.run(&["apply", "--resume"]).ok();
    assert_eq!(registered(&c.url, &c.app).len(), 2);
}

#[test]
fn ctrl_c_while_waiting_for_the_chain_leaves_the_update_paused() {
    let Some(c) = Chain::new() else { return };
    let hash = c.pause_an_update();
    let (mut child, rx) = spawn_watched(&c.t, &["apply", "--resume", "--timeout", "120s"]);
    wait_for_line(&rx, "waiting for the chain to allow");
    // SAFETY: the pid is that of a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "still paused after Ctrl-C");
    assert!(c.pending_in_state());
    cast_register(&c.cast, &c.url, &c.owner, &c.app, &hash);
    c.t.run(&["apply", "--resume"]).ok();
    assert_eq!(format!("0x{}", c.sim_hash()), hash);
}

/// The `kms` attribute's round trip (the one `tests/it/schema.rs` cannot make without a
/// chain): from an on-chain KMS to Phala's and back, each a replacement that the API then
/// reports as applied, with nothing left to do.
#[test]
fn the_kms_round_trips_each_way_by_replacement() {
    let Some(mut c) = Chain::new() else { return };
    let kms_type = |c: &Chain| c.t.api("GET", "/cvms/chain-web", None).1["kms_type"].clone();
    assert_eq!(kms_type(&c), "base");
    c.t.run(&["plan", "--detailed-exitcode"]).code(0);
    for (manifest, want) in
        [(MANIFEST.replace("    kms:\n      chain: 31337\n", ""), "phala"), (MANIFEST.into(), "base")]
    {
        c.t.manifest(&manifest);
        let plan = c.t.run(&["plan", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan --json");
        assert_eq!(v["resource_changes"][0]["changed_attributes"], serde_json::json!(["kms"]), "{}", plan.stdout);
        assert_eq!(v["resource_changes"][0]["actions"], serde_json::json!(["delete", "create"]));
        // A new KMS is a new CVM: new app id, keys and disk, which needs consent.
        c.with_key(true);
        c.t.run(&["apply", "--auto-approve"]).code(1);
        c.t.run(&["apply", "--auto-approve", "--replace", "cvm.web"]).ok();
        c.with_key(false);
        assert_eq!(kms_type(&c), want);
        c.t.run(&["plan", "--detailed-exitcode"]).code(0);
    }
}

/// `verify` requires the attested compose hash to be one the app contract allows: a hash the
/// owner removes from the allow-list after the deploy fails it, naming the field.
#[test]
fn a_compose_hash_removed_from_the_allow_list_fails_verify() {
    let Some(c) = Chain::new() else { return };
    let v = c.t.run(&["verify"]);
    v.ok();
    let hash = c.sim_hash();
    let out = Command::new(&c.cast)
        .args(["send", &c.app, "removeComposeHash(bytes32)", &format!("0x{hash}")])
        .args(["--rpc-url", &c.url, "--private-key", &c.owner])
        .stdin(Stdio::null())
        .output()
        .expect("cast runs");
    assert!(out.status.success(), "cast send failed: {}", String::from_utf8_lossy(&out.stderr));
    let v = c.t.run(&["verify"]);
    v.code(1);
    assert!(v.stdout.contains("compose-hash (on-chain allow-list): expected a hash the app contract"), "{}", v.stdout);
    let j = c.t.run(&["verify", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&j.code(1).stdout).unwrap();
    let m = &doc["cvms"][0]["mismatches"][0];
    assert_eq!(m["field"], "compose-hash (on-chain allow-list)");
    assert!(m["attested"].as_str().unwrap().starts_with(hash.trim_start_matches("0x")), "{m}");
    // Without an RPC URL the allow-list cannot be read: not verified, and it says why.
    let mut t = c.t;
    t.env.remove("ETH_RPC_URL");
    let v = t.run(&["verify"]);
    v.code(1);
    assert!(
        v.stdout.contains("cannot check the app contract's allow-list: no RPC URL (set $ETH_RPC_URL"),
        "{}",
        v.stdout
    );
}

#[test]
fn a_roll_of_an_on_chain_app_registers_its_hash_once() {
    roll_registers_once("{max_unavailable: 2}", "rolls 3 instances, at most 2 unavailable");
}

/// With a surge instance, the hash is registered as it is brought to the new revision, before
/// any instance of the roll: once for the app all the same.
#[test]
fn a_roll_with_a_surge_instance_registers_its_hash_once() {
    roll_registers_once("{max_unavailable: 0, max_surge: 1}", "at most 0 unavailable, 1 surge instance");
}

fn roll_registers_once(policy: &str, rolls: &str) {
    let Some((url, _cast)) = anvil() else { return };
    let owner = funded_key(&url);
    let kms = deploy_kms(&url, &owner);
    let mut t = TestEnv::with_config(SimConfig {
        restart_ms: 150,
        boot_ms: 150,
        chain_rpc: Some(url.clone()),
        kms_contract: Some(kms),
        chain_id: Some(31337),
        ..Default::default()
    });
    t.write("web.yml", WEB);
    t.manifest(&MANIFEST.replace("    kms:", &format!("    replicas: 3\n    update_policy: {policy}\n    kms:")));
    t.env.insert("ETH_RPC_URL".into(), url.clone());
    t.env.insert("PRIVATE_KEY".into(), owner.clone());
    t.run(&["apply", "--auto-approve"]).ok();
    let apps = t.stats()["apps"].as_object().unwrap().clone();
    assert_eq!(apps.len(), 1, "one app: {apps:?}");
    let app = format!("0x{}", apps.keys().next().unwrap());
    assert_eq!(registered(&url, &app).len(), 1, "the first hash, allowed at deployment");

    t.write("web.yml", &WEB.replace("nginx:1.27", "nginx:1.28"));
    let p = t.run(&["plan", "--detailed-exitcode"]);
    p.code(2);
    assert!(p.stdout.contains(rolls), "{}", p.stdout);
    assert!(p.stdout.contains("1 on-chain registration."), "{}", p.stdout);
    t.run(&["apply", "--auto-approve"]).ok();
    let hashes = registered(&url, &app);
    assert_eq!(hashes.len(), 2, "one registration for the app, not one per instance: {hashes:?}");
    let instances = t.stats()["apps"][&app[2..]]["instances"].as_array().unwrap().clone();
    assert_eq!(instances.len(), 3);
    let most = if policy.contains("max_surge") { 4 } else { 3 };
    assert_eq!(t.stats()["apps"][&app[2..]]["max_instances"], most, "the surge instance, then gone");
    for i in &instances {
        assert_eq!(i["compose_hash"], hashes[1], "{i}");
        assert_eq!(i["updates"], 1, "{i}");
    }
    t.run(&["plan", "--detailed-exitcode"]).code(0);
}
