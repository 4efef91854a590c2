//! Bytes written to state per changed resource, at growing state sizes: must stay flat.
//!
//! Measured in this process through the library's `state` API, with `/proc/self/io` read
//! around the commits (nothing else in the process writes meanwhile).

use std::collections::BTreeMap;
use std::time::Duration;

use teeform::model::{CloudIds, CvmAttrs, EnvVal, ResourceRecord};
use teeform::state::{Batch, JournalEntry, LockInfo, OpenOptions};

use crate::harness::{Bench, Io, Table, dir_size};

/// A record the size of what apply writes for a CVM with a small compose file and a few env vars.
fn record(i: usize, release: usize) -> ResourceRecord {
    let key = format!("svc-{i:05}");
    let compose = format!(
        "services:\n  app:\n    image: ghcr.io/acme/{key}:1.{release}.0\n    restart: always\n    ports:\n      - \"8080:8080\"\n    environment:\n      LOG_LEVEL: ${{LOG_LEVEL}}\n      SHARD: ${{SHARD}}\n    volumes:\n      - /var/run/dstack.sock:/var/run/dstack.sock\n      - data:/data\nvolumes:\n  data:\n"
    );
    let env: BTreeMap<String, EnvVal> = [("LOG_LEVEL", "info".to_string()), ("SHARD", i.to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), EnvVal::plain(v)))
        .collect();
    let hex = |seed: usize, len: usize| format!("{:0>len$x}", seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ release);
    ResourceRecord {
        address: format!("cvm.{key}"),
        ids: CloudIds {
            id: format!("{}-0000-4000-8000-{}", hex(i, 8), hex(i + 1, 12)),
            app_id: Some(hex(i + 2, 40)),
            vm_uuid: Some(format!("{}-0000-4000-8000-{}", hex(i, 8), hex(i + 1, 12))),
            instance_id: Some(hex(i + 3, 40)),
        },
        attrs: CvmAttrs {
            name: key,
            compose: Some(compose),
            vcpu: Some(2),
            memory: Some(4096),
            disk_size: Some(40),
            image: Some("dstack-0.5.3".into()),
            kms: Some("phala".into()),
            public_logs: Some(true),
            public_sysinfo: Some(true),
            public_tcbinfo: Some(false),
            gateway: Some(true),
            env,
            ..Default::default()
        },
        compose_hash: Some(hex(i + 4, 64)),
        env_pubkey: Some(hex(i + 5, 64)),
        kms_info: None,
        status: Some("running".into()),
        tainted: false,
        dependencies: vec![],
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn journal(i: usize, k: usize) -> JournalEntry {
    JournalEntry {
        id: format!("2026-01-01T00:00:00Z-{k:032}"),
        address: format!("cvm.svc-{i:05}"),
        op: "update".into(),
        name: format!("svc-{i:05}"),
        cloud_id: Some(format!("{i:032}")),
        started_at: "2026-01-01T00:00:00Z".into(),
        detail: serde_json::json!({ "attrs": record(i, k).attrs }),
    }
}

struct Measured {
    n: usize,
    one_record: Io,
    one_update: Io,
    state_bytes: u64,
    record_bytes: usize,
}

fn measure(b: &Bench, n: usize, reps: usize) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = OpenOptions {
        dir: dir.path().to_path_buf(),
        lock: LockInfo::for_command("bench"),
        lock_timeout: Duration::ZERO,
    };
    b.rt.block_on(async {
        let store = teeform::state::open(&opts).await.expect("state opens");
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let put = chunk.iter().map(|i| record(*i, 0)).collect();
            store.commit(Batch { put, ..Default::default() }).await.expect("commit");
        }
        // Let sled's background flusher settle before measuring.
        tokio::time::sleep(Duration::from_millis(600)).await;
        // One record changed and committed (flushed), as each step of an apply does.
        let start = Io::now();
        for k in 0..reps {
            let i = (k * 7919) % n;
            store.commit(Batch { put: vec![record(i, k + 1)], ..Default::default() }).await.expect("commit");
        }
        let one_record = Io::now().since(start);
        // One update as the executor records it: journal, result + journal cleared, final record.
        let start = Io::now();
        for k in 0..reps {
            let i = (k * 104_729) % n;
            let j = journal(i, k);
            store.commit(Batch { journal_put: vec![j.clone()], ..Default::default() }).await.expect("commit");
            store
                .commit(Batch { put: vec![record(i, k + 100)], journal_done: vec![j.id], ..Default::default() })
                .await
                .expect("commit");
            store.commit(Batch { put: vec![record(i, k + 200)], ..Default::default() }).await.expect("commit");
        }
        let one_update = Io::now().since(start);
        store.close().await.expect("close");
        let per = |io: Io| Io { wchar: io.wchar / reps as u64, write_bytes: io.write_bytes / reps as u64 };
        Measured {
            n,
            one_record: per(one_record),
            one_update: per(one_update),
            state_bytes: dir_size(dir.path()),
            record_bytes: serde_json::to_vec(&record(0, 0)).map(|v| v.len()).unwrap_or(0),
        }
    })
}

pub fn run(b: &Bench) -> Vec<Table> {
    let sizes = if b.quick { vec![10, 100, 1_000] } else { vec![100, 1_000, 10_000] };
    let reps = b.size(200, 50);
    let ms: Vec<Measured> = sizes.iter().map(|n| measure(b, *n, reps)).collect();
    let mut t = Table::new(
        "bytes written to state per changed resource",
        &[
            "resources in state",
            "one record: written (wchar)",
            "one record: to storage (write_bytes)",
            "one update (3 commits): wchar",
            "one update: write_bytes",
            "state on disk",
        ],
    );
    for m in &ms {
        t.row(vec![
            m.n.to_string(),
            format!("{} B", m.one_record.wchar),
            format!("{} B", m.one_record.write_bytes),
            format!("{} B", m.one_update.wchar),
            format!("{} B", m.one_update.write_bytes),
            format!("{:.2} MB", m.state_bytes as f64 / 1e6),
        ]);
    }
    let flat = |f: &dyn Fn(&Measured) -> u64| {
        let v: Vec<u64> = ms.iter().map(f).collect();
        let (lo, hi) = (*v.iter().min().unwrap_or(&0), *v.iter().max().unwrap_or(&0));
        hi as f64 / lo.max(1) as f64
    };
    let spread_w = flat(&|m| m.one_record.wchar);
    let spread_s = flat(&|m| m.one_update.write_bytes.max(m.one_update.wchar));
    // Generous: the point is "does not grow with state", not an exact byte count.
    b.check(spread_w <= 3.0, &format!("bytes per record write stay flat (max/min {spread_w:.2})"));
    b.check(spread_s <= 3.0, &format!("bytes per update stay flat (max/min {spread_s:.2})"));
    t.note(format!(
        "Averaged over {reps} commits each. A record serialises to {} bytes. Largest/smallest across sizes: \
         {spread_w:.2} (one record, wchar). Target: flat. A tool that rewrites its whole state file per \
         resource would write the \"state on disk\" column (order of) for every change.",
        ms[0].record_bytes
    ));
    vec![t]
}
