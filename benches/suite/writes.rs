//! Bytes written to state per changed resource, at growing state sizes: must stay flat.
//!
//! Measured in this process through the library's `state` API, with `/proc/self/io` read
//! around the commits (nothing else in the process writes meanwhile).

use std::collections::BTreeMap;
use std::time::Duration;

use teeform::model::{Address, CloudIds, CvmAttrs, EnvVal, ResourceRecord};
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
        surge: false,
        address: Address::cvm(&key),
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
        boot: Default::default(),
        dependencies: vec![],
        updated_at: "2026-01-01T00:00:00Z".into(),
        unverified: None,
        endpoint: Some("local".into()),
        prevent_destroy: false,
        secrets_scope: None,
    }
}

fn journal(i: usize, k: usize) -> JournalEntry {
    JournalEntry {
        id: format!("2026-01-01T00:00:00Z-{k:032}"),
        address: Address::cvm(&format!("svc-{i:05}")),
        op: "update".into(),
        name: format!("svc-{i:05}"),
        cloud_id: Some(format!("{i:032}")),
        started_at: "2026-01-01T00:00:00Z".into(),
        detail: serde_json::json!({ "attrs": record(i, k).attrs }),
        endpoint: Some("local".into()),
    }
}

/// Single-record commits made before the steady-state figures are measured.
const WARM_UP: usize = 1000;

struct Measured {
    n: usize,
    cold: Io,
    one_record: Io,
    one_update: Io,
    state_bytes: u64,
    record_bytes: usize,
}

fn measure(b: &Bench, n: usize, reps: usize) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = OpenOptions::local(dir.path().to_path_buf(), LockInfo::for_command("bench"), Duration::ZERO);
    b.rt.block_on(async {
        let store = teeform::state::open(&opts).await.expect("state opens");
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let put = chunk.iter().map(|i| record(*i, 0)).collect();
            store.commit(Batch { put, ..Default::default() }).await.expect("commit");
        }
        // Let sled's background flusher settle before measuring.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let one_record_commits = |salt: usize| {
            let store = store.clone();
            async move {
                let start = Io::now();
                for k in 0..reps {
                    let i = (k * 7919 + salt) % n;
                    store.commit(Batch { put: vec![record(i, k + salt)], ..Default::default() }).await.expect("commit");
                }
                Io::now().since(start)
            }
        };
        // One record changed and committed (flushed), as each step of an apply does: first
        // right after the bulk load, then once the store has seen as many single-record
        // commits as applies that built such a state would have made.
        let cold = one_record_commits(1).await;
        for k in 0..WARM_UP {
            let i = (k * 31) % n;
            store.commit(Batch { put: vec![record(i, k + 7)], ..Default::default() }).await.expect("commit");
        }
        let one_record = one_record_commits(3).await;
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
            cold: per(cold),
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
            "one record, right after a bulk load",
            "one record",
            "one update (3 commits)",
            "one record: write_bytes (see note)",
            "state on disk",
        ],
    );
    for m in &ms {
        t.row(vec![
            m.n.to_string(),
            format!("{} B", m.cold.wchar),
            format!("{} B", m.one_record.wchar),
            format!("{} B", m.one_update.wchar),
            format!("{} B", m.one_record.write_bytes),
            format!("{:.1} MB", m.state_bytes as f64 / 1e6),
        ]);
    }
    let spread = |f: &dyn Fn(&Measured) -> u64| {
        let v: Vec<u64> = ms.iter().map(f).collect();
        let (lo, hi) = (*v.iter().min().unwrap_or(&0), *v.iter().max().unwrap_or(&0));
        hi as f64 / lo.max(1) as f64
    };
    let record = spread(&|m| m.one_record.wchar);
    let update = spread(&|m| m.one_update.wchar);
    // Generous: the point is "does not grow with the state", not an exact byte count.
    b.check(record <= 3.0, &format!("bytes per record write stay flat (largest/smallest {record:.2})"));
    b.check(update <= 3.0, &format!("bytes per update stay flat (largest/smallest {update:.2})"));
    t.note(format!(
        "Bytes handed to the kernel (`wchar` in `/proc/self/io`) per commit, averaged over {reps} commits, \
         each flushed before it returns. A record serialises to {} bytes; sled adds a header and, now and \
         then, rewrites a B-tree node. \"One record\" is measured after {WARM_UP} single-record commits \
         (a state built by applies has seen them); right after a bulk load the first updates also \
         consolidate the nodes the load wrote. Largest/smallest across sizes: {record:.2} (one record), \
         {update:.2} (one update). `write_bytes` (bytes this process caused to be sent to storage) is \
         shown for completeness but measures the page cache, not teeform: on this kernel a small write \
         into a large page-cache folio is accounted as the whole folio (a 1,200-byte `pwrite` at offset \
         15 MB of a file read with readahead counts 256 KiB), so it grows with the file, not with the \
         bytes written. A tool that rewrites its whole state file per resource writes the \"state on \
         disk\" column for every change.",
        ms[0].record_bytes
    ));
    vec![t]
}
