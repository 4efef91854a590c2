//! Waiting for CVMs to get where a step takes them: running again after a create, an update
//! or a start; stopped after a stop.
//!
//! One [`Waiter`] watches every CVM an apply waits on. Its poller sends one
//! `POST /status/batch` per poll for all of them (chunked by the provider), so waiting costs
//! one request per poll however many CVMs restart at once. Each CVM is polled on its own
//! schedule — the interval is a tenth of the time it has been waited on, 100 ms to 2 s — and a
//! poll also carries every other CVM that fits in its request. A CVM whose status says it got
//! there (or failed) is read once with its detail (`GET /cvms/{id}`), which is what the step
//! records. A CVM the batch cannot watch (no `vm_uuid`, or one the answer leaves out) is polled
//! alone with its detail, as every CVM is with [`WaitOptions::batch`] off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use crate::model::{CloudIds, CvmStatus, Power, RemoteCvm};
use crate::providers::{ApiError, PhalaApi, STATUS_BATCH_LIMIT, StatusReport};

#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Polling starts this often and backs off towards `max_interval`.
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Watch CVMs with batch status polls (else one detail GET per CVM per poll).
    pub batch: bool,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(900),
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            batch: true,
        }
    }
}

impl WaitOptions {
    /// How long to wait before the next poll of a CVM waited on for `elapsed`.
    fn interval(&self, elapsed: Duration) -> Duration {
        (elapsed / 10).clamp(self.min_interval, self.max_interval)
    }
}

/// Why waiting ended without the CVM getting where it was going.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Reading the CVM failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("CVM {id} disappeared while waiting for it to be {target}")]
    Gone { id: String, target: Power },
    /// Its status says it failed; `cvm` is the CVM as last read (with the API's boot error,
    /// when the status poll gave one).
    #[error("CVM {id} is {} instead of {target}", .cvm.status)]
    Failed { id: String, target: Power, cvm: Box<RemoteCvm> },
    /// Still not there after the wait's timeout; it may yet get there.
    #[error("CVM {id} was still {status} after {secs}s; it may yet finish: run plan to see its state")]
    TimedOut { id: String, status: CvmStatus, secs: u64 },
}

/// Statuses after which waiting for `target` is pointless.
fn failed(status: &CvmStatus, target: Power) -> bool {
    status.is_failed() || (target == Power::Running && matches!(status, CvmStatus::Stopped | CvmStatus::Exited))
}

/// What a status says about a wait for `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Arrived,
    Failed,
    NotYet,
}

fn verdict(status: &CvmStatus, in_progress: bool, target: Power) -> Verdict {
    if in_progress {
        Verdict::NotYet
    } else if *status == target.status() {
        Verdict::Arrived
    } else if failed(status, target) {
        Verdict::Failed
    } else {
        Verdict::NotYet
    }
}

/// Watches the CVMs an apply waits on; see the module docs. Cheap to share (`Arc`).
pub struct Waiter {
    inner: Arc<Inner>,
}

struct Inner {
    api: Arc<dyn PhalaApi>,
    opts: WaitOptions,
    book: Mutex<Book>,
    /// Wakes the poller when a CVM is added (its first poll may be sooner than any other).
    wake: Notify,
}

#[derive(Default)]
struct Book {
    next_key: u64,
    watched: BTreeMap<u64, Watch>,
    /// The poller task is running.
    polling: bool,
}

struct Watch {
    uuid: String,
    started: Instant,
    /// When this CVM is next polled.
    due: Instant,
    seen: mpsc::UnboundedSender<Seen>,
}

/// What one poll said about one CVM.
#[derive(Debug, Clone)]
enum Seen {
    Report(StatusReport),
    /// The answer left it out: the API does not know it by this uuid.
    Unknown,
    /// The poll failed (after the client's retries).
    Error(ApiError),
}

impl Waiter {
    pub fn new(api: Arc<dyn PhalaApi>, opts: WaitOptions) -> Waiter {
        Waiter { inner: Arc::new(Inner { api, opts, book: Mutex::default(), wake: Notify::new() }) }
    }

    /// Waits until the CVM is `running` with no operation in progress.
    pub async fn until_ready(&self, ids: &CloudIds, status: impl FnMut(&str)) -> Result<RemoteCvm, WaitError> {
        self.until(ids, Power::Running, status).await
    }

    /// Waits until the CVM's status is `target` (`running` or `stopped`) with no operation in
    /// progress, calling `status` with each status seen. Returns the CVM's detail as read
    /// once it got there.
    pub async fn until(
        &self,
        ids: &CloudIds,
        target: Power,
        mut status: impl FnMut(&str),
    ) -> Result<RemoteCvm, WaitError> {
        let start = Instant::now();
        let inner = &self.inner;
        let Some(uuid) = ids.vm_uuid.as_deref().filter(|_| inner.opts.batch) else {
            return alone(inner.api.as_ref(), &ids.id, target, &inner.opts, start, status).await;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watch = Watched::add(inner, uuid, start, tx);
        loop {
            // The newest of what the poller said: an older report is stale.
            let Some(mut seen) = rx.recv().await else { break };
            while let Ok(newer) = rx.try_recv() {
                seen = newer;
            }
            let report = match seen {
                Seen::Report(r) => r,
                Seen::Error(e) => return Err(e.into()),
                Seen::Unknown => break,
            };
            if verdict(&report.status, report.in_progress, target) != Verdict::NotYet {
                // The final read: what the step records. Should the detail lag behind the
                // status, watching goes on.
                let mut cvm = read(inner.api.as_ref(), &ids.id, target).await?;
                match verdict(&cvm.status, cvm.in_progress, target) {
                    Verdict::Arrived => return Ok(cvm),
                    Verdict::Failed => {
                        cvm.boot.error = cvm.boot.error.or(report.boot_error);
                        return Err(WaitError::Failed { id: ids.id.clone(), target, cvm: Box::new(cvm) });
                    }
                    Verdict::NotYet => {}
                }
            }
            // The status alone: how long the step has run is the progress display's to show.
            status(report.status.as_str());
            if start.elapsed() >= inner.opts.timeout {
                let secs = start.elapsed().as_secs();
                return Err(WaitError::TimedOut { id: ids.id.clone(), status: report.status, secs });
            }
        }
        // The batch cannot watch this CVM (or the poller is gone): poll its detail.
        drop(watch);
        alone(inner.api.as_ref(), &ids.id, target, &inner.opts, start, status).await
    }
}

/// A CVM's detail; gone is an error here.
async fn read(api: &dyn PhalaApi, id: &str, target: Power) -> Result<RemoteCvm, WaitError> {
    api.get_cvm(id).await?.ok_or_else(|| WaitError::Gone { id: id.to_string(), target })
}

/// Polls one CVM's detail until it is `target` with no operation in progress (the wait
/// began at `start`).
async fn alone(
    api: &dyn PhalaApi,
    id: &str,
    target: Power,
    opts: &WaitOptions,
    start: Instant,
    mut status: impl FnMut(&str),
) -> Result<RemoteCvm, WaitError> {
    loop {
        let cvm = read(api, id, target).await?;
        match verdict(&cvm.status, cvm.in_progress, target) {
            Verdict::Arrived => return Ok(cvm),
            Verdict::Failed => return Err(WaitError::Failed { id: id.to_string(), target, cvm: Box::new(cvm) }),
            Verdict::NotYet => {}
        }
        // The status alone: how long the step has run is the progress display's to show.
        status(cvm.status.as_str());
        let elapsed = start.elapsed();
        if elapsed >= opts.timeout {
            return Err(WaitError::TimedOut { id: id.to_string(), status: cvm.status, secs: elapsed.as_secs() });
        }
        tokio::time::sleep(opts.interval(elapsed)).await;
    }
}

/// A CVM on the poller's list; leaves it when dropped (the wait ended, however).
struct Watched {
    inner: Arc<Inner>,
    key: u64,
}

impl Watched {
    fn add(inner: &Arc<Inner>, uuid: &str, start: Instant, seen: mpsc::UnboundedSender<Seen>) -> Watched {
        let mut book = inner.book.lock().expect("waiter lock");
        let key = book.next_key;
        book.next_key += 1;
        let due = start + inner.opts.min_interval;
        book.watched.insert(key, Watch { uuid: uuid.to_string(), started: start, due, seen });
        if !book.polling {
            book.polling = true;
            tokio::spawn(poll(inner.clone()));
        }
        drop(book);
        inner.wake.notify_one();
        Watched { inner: inner.clone(), key }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.inner.book.lock().expect("waiter lock").watched.remove(&self.key);
    }
}

/// The CVMs one poll asks about (`(key, uuid)`): every one that is due at `now`, then those
/// due soonest, as many as fill the last request of [`STATUS_BATCH_LIMIT`]. Empty when none
/// is due.
fn choose(watched: &BTreeMap<u64, Watch>, now: Instant) -> Vec<(u64, String)> {
    let due = watched.values().filter(|w| w.due <= now).count();
    if due == 0 {
        return vec![];
    }
    let mut order: Vec<(Instant, u64)> = watched.iter().map(|(k, w)| (w.due, *k)).collect();
    order.sort();
    let room = due.div_ceil(STATUS_BATCH_LIMIT) * STATUS_BATCH_LIMIT;
    order.into_iter().take(room).map(|(_, k)| (k, watched[&k].uuid.clone())).collect()
}

/// The poller: polls while any CVM is watched, then ends (the next watch starts another).
async fn poll(inner: Arc<Inner>) {
    loop {
        let next = {
            let mut book = inner.book.lock().expect("waiter lock");
            if book.watched.is_empty() {
                book.polling = false;
                return;
            }
            let now = Instant::now();
            match choose(&book.watched, now) {
                chosen if chosen.is_empty() => Err(book.watched.values().map(|w| w.due).min().unwrap_or(now)),
                chosen => Ok(chosen),
            }
        };
        let chosen = match next {
            Ok(chosen) => chosen,
            Err(until) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = inner.wake.notified() => {}
                }
                continue;
            }
        };
        let mut uuids: Vec<String> = chosen.iter().map(|(_, u)| u.clone()).collect();
        uuids.sort();
        uuids.dedup();
        let answer = inner.api.statuses(&uuids).await;
        let now = Instant::now();
        let mut book = inner.book.lock().expect("waiter lock");
        for (key, uuid) in chosen {
            // A wait that ended meanwhile is no longer listed.
            let Some(w) = book.watched.get_mut(&key) else { continue };
            w.due = now + inner.opts.interval(now - w.started);
            let seen = match &answer {
                Ok(m) => m.get(&uuid).cloned().map_or(Seen::Unknown, Seen::Report),
                Err(e) => Seen::Error(e.clone()),
            };
            // A closed channel is a wait that is ending; its entry goes with it.
            let _ = w.seen.send(seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(uuid: &str, due: Instant) -> Watch {
        Watch { uuid: uuid.into(), started: due, due, seen: mpsc::unbounded_channel().0 }
    }

    #[test]
    fn a_poll_asks_about_every_cvm_due_and_fills_its_last_request() {
        let now = Instant::now();
        let later = |ms| now + Duration::from_millis(ms);
        // Nothing due: no poll.
        let w: BTreeMap<u64, Watch> = [(0, watch("a", later(50))), (1, watch("b", later(10)))].into();
        assert!(choose(&w, now).is_empty());
        // One due: one request, which carries the others too (soonest first).
        let w: BTreeMap<u64, Watch> =
            [(0, watch("a", later(50))), (1, watch("b", now)), (2, watch("c", later(10)))].into();
        let uuids: Vec<String> = choose(&w, now).into_iter().map(|(_, u)| u).collect();
        assert_eq!(uuids, ["b", "c", "a"]);
        // 250 watched, 101 due: two requests' worth, every due one among them.
        let w: BTreeMap<u64, Watch> =
            (0..250u64).map(|k| (k, watch(&format!("u{k}"), if k <= 100 { now } else { later(k) }))).collect();
        let chosen = choose(&w, now);
        assert_eq!(chosen.len(), 2 * STATUS_BATCH_LIMIT);
        assert!((0..=100).all(|k| chosen.iter().any(|(c, _)| *c == k)));
        // 150 watched, all due: every one, in two requests.
        let w: BTreeMap<u64, Watch> = (0..150u64).map(|k| (k, watch(&format!("u{k}"), now))).collect();
        assert_eq!(choose(&w, now).len(), 150);
    }

    #[test]
    fn a_status_ends_a_wait_only_with_no_operation_in_progress() {
        use Verdict::*;
        let cases = [
            (CvmStatus::Running, false, Power::Running, Arrived),
            (CvmStatus::Running, true, Power::Running, NotYet),
            (CvmStatus::Starting, false, Power::Running, NotYet),
            (CvmStatus::Stopped, false, Power::Running, Failed),
            (CvmStatus::Error, false, Power::Running, Failed),
            (CvmStatus::Error, true, Power::Running, NotYet),
            (CvmStatus::Stopped, false, Power::Stopped, Arrived),
            (CvmStatus::Running, false, Power::Stopped, NotYet),
            (CvmStatus::Unknown("paused".into()), false, Power::Running, NotYet),
        ];
        for (status, busy, target, want) in cases {
            assert_eq!(verdict(&status, busy, target), want, "{status} busy={busy} → {target}");
        }
    }

    #[test]
    fn polls_back_off_from_100_ms_to_2_s() {
        let o = WaitOptions::default();
        assert_eq!(o.interval(Duration::ZERO), Duration::from_millis(100));
        assert_eq!(o.interval(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(o.interval(Duration::from_secs(600)), Duration::from_secs(2));
    }
}
