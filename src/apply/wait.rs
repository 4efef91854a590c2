//! Waiting for a CVM to run again after a create or an update.

use std::time::{Duration, Instant};

use crate::model::{CvmStatus, Power, RemoteCvm};
use crate::providers::{ApiError, PhalaApi};

#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// Polling starts this often and backs off towards `max_interval`.
    pub min_interval: Duration,
    pub max_interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(900),
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
        }
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
    /// Its status says it failed; `cvm` is the CVM as last read.
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

/// Polls until the CVM is `running` with no operation in progress.
pub async fn until_ready(
    api: &dyn PhalaApi,
    id: &str,
    opts: &WaitOptions,
    status: impl FnMut(&str),
) -> Result<RemoteCvm, WaitError> {
    until(api, id, Power::Running, opts, status).await
}

/// Polls until the CVM's status is `target` (`running` or `stopped`) with no operation in
/// progress. The interval grows with the time already waited (a tenth of it), so short
/// restarts are noticed promptly and long ones do not flood the API.
pub async fn until(
    api: &dyn PhalaApi,
    id: &str,
    target: Power,
    opts: &WaitOptions,
    mut status: impl FnMut(&str),
) -> Result<RemoteCvm, WaitError> {
    let start = Instant::now();
    let mut last = CvmStatus::Unknown(String::new());
    loop {
        let cvm = api.get_cvm(id).await?.ok_or_else(|| WaitError::Gone { id: id.to_string(), target })?;
        if cvm.status == target.status() && !cvm.in_progress {
            return Ok(cvm);
        }
        if failed(&cvm.status, target) && !cvm.in_progress {
            return Err(WaitError::Failed { id: id.to_string(), target, cvm: Box::new(cvm) });
        }
        let elapsed = start.elapsed();
        if cvm.status != last {
            last = cvm.status.clone();
        }
        // The status alone: how long the step has run is the progress display's to show.
        status(last.as_str());
        if elapsed >= opts.timeout {
            return Err(WaitError::TimedOut { id: id.to_string(), status: last, secs: elapsed.as_secs() });
        }
        let next = (elapsed / 10).clamp(opts.min_interval, opts.max_interval);
        tokio::time::sleep(next).await;
    }
}
