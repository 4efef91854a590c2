//! The `health:` check of a CVM's app: a GET from where teeform runs, retried until it answers
//! the expected status or the time is up.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why the check did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// The last answer within the timeout: another status, or no answer (`got` says which).
    #[error("health check {url} did not answer {expected} within {secs} s (last: {got})")]
    Failed { url: String, expected: u16, secs: u64, got: String },
    #[error("health check {url}: {why}")]
    Bad { url: String, why: String },
    #[error("health check {url} was interrupted")]
    Interrupted { url: String },
}

/// How long between tries.
const INTERVAL: Duration = Duration::from_secs(1);

/// GETs `url` until it answers `expected` (then `Ok`) or `timeout` has passed; each try waits
/// at most what is left. Redirects are not followed (a health endpoint answers itself).
pub async fn check(url: &str, expected: u16, timeout: Duration, cancel: &CancellationToken) -> Result<(), HealthError> {
    let bad = |why: String| HealthError::Bad { url: url.to_string(), why };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("teeform/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let answer = tokio::select! {
            r = client.get(url).timeout(left.max(Duration::from_millis(100))).send() => r,
            _ = cancel.cancelled() => return Err(HealthError::Interrupted { url: url.to_string() }),
        };
        let got = match answer {
            Ok(r) if r.status().as_u16() == expected => return Ok(()),
            Ok(r) => format!("status {}", r.status().as_u16()),
            Err(e) if e.is_builder() => return Err(bad(e.to_string())),
            Err(e) if e.is_timeout() => "timed out".to_string(),
            Err(_) => "no connection".to_string(),
        };
        if Instant::now() + INTERVAL >= end {
            return Err(HealthError::Failed { url: url.to_string(), expected, secs: timeout.as_secs(), got });
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = cancel.cancelled() => return Err(HealthError::Interrupted { url: url.to_string() }),
        }
    }
}
