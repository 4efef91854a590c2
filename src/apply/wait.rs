//! Waiting for a CVM to run again after a create or an update.

use std::time::{Duration, Instant};

use crate::model::RemoteCvm;
use crate::providers::PhalaApi;

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

/// Statuses after which waiting is pointless.
fn failed(status: &str) -> bool {
    matches!(status, "error" | "failed" | "stopped" | "exited")
}

/// Polls until the CVM is `running` with no operation in progress. The interval grows with
/// the time already waited (a tenth of it), so short restarts are noticed promptly and long
/// ones do not flood the API.
pub async fn until_ready(
    api: &dyn PhalaApi,
    id: &str,
    opts: &WaitOptions,
    mut status: impl FnMut(&str),
) -> Result<RemoteCvm, String> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let cvm = api
            .get_cvm(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("CVM {id} disappeared while waiting for it to run"))?;
        if cvm.is_ready() {
            return Ok(cvm);
        }
        if failed(&cvm.status) && !cvm.in_progress {
            return Err(format!("CVM {id} is {} instead of running", cvm.status));
        }
        let elapsed = start.elapsed();
        if cvm.status != last {
            last = cvm.status.clone();
        }
        // The status alone: how long the step has run is the progress display's to show.
        status(&last);
        if elapsed >= opts.timeout {
            return Err(format!(
                "CVM {id} was still {last} after {}s; it may yet finish: run plan to see its state",
                elapsed.as_secs()
            ));
        }
        let next = (elapsed / 10).clamp(opts.min_interval, opts.max_interval);
        tokio::time::sleep(next).await;
    }
}
