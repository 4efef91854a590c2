//! The numeric settings teeform reads from the environment, checked when a command starts.

use std::time::Duration;

use super::error::{CliError, CliResult};

/// The numeric settings teeform reads from the environment. Each is checked when a command
/// starts: a value that is not a number, or is out of range (`-1`, `NaN`, `inf`, `1e20`), is
/// an error naming the variable and the range. An empty variable counts as unset.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `TEEFORM_HTTP_TIMEOUT`: seconds, default 30, at most an hour.
    pub http_timeout: Duration,
    /// `TEEFORM_WAIT_TIMEOUT`: seconds to wait for a CVM to run, at most a week.
    pub wait_timeout: Option<Duration>,
    /// `TEEFORM_RETRY_MAX_ATTEMPTS` (1–100), `TEEFORM_RETRY_BASE_MS` (0–600000),
    /// `TEEFORM_RETRY_DEADLINE_SECS` (0–86400).
    pub retry: crate::providers::http::RetryPolicy,
    /// `TEEFORM_LOCAL_RESTART_MS` and `TEEFORM_LOCAL_BOOT_MS` (0–3600000, default 1500).
    pub local_restart_ms: u64,
    pub local_boot_ms: u64,
    /// `TEEFORM_PER_CVM_READS` (0 or 1, default 0): 1 refreshes with one `GET /cvms/{id}` per
    /// CVM and waits with one per CVM per poll, as teeform did before it read list pages and
    /// batch statuses (for comparison, or should the API's list or batch endpoint misbehave).
    pub per_cvm_reads: bool,
    /// `TEEFORM_VERIFY_TIME`: Unix seconds to verify TDX quotes at instead of now (to
    /// reproduce a past verdict, or test with collateral that has since expired).
    pub verify_time: Option<u64>,
}

impl Settings {
    pub fn from_env() -> CliResult<Settings> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> CliResult<Settings> {
        let mut retry = crate::providers::http::RetryPolicy::default();
        if let Some(n) = env_whole(get, "TEEFORM_RETRY_MAX_ATTEMPTS", 1, 100)? {
            retry.max_attempts = n as u32;
        }
        if let Some(ms) = env_whole(get, "TEEFORM_RETRY_BASE_MS", 0, 600_000)? {
            retry.base_delay = Duration::from_millis(ms);
        }
        if let Some(s) = env_whole(get, "TEEFORM_RETRY_DEADLINE_SECS", 0, 86_400)? {
            retry.deadline = Duration::from_secs(s);
        }
        Ok(Settings {
            http_timeout: env_seconds(get, "TEEFORM_HTTP_TIMEOUT", 3600.0)?.unwrap_or(Duration::from_secs(30)),
            wait_timeout: env_seconds(get, "TEEFORM_WAIT_TIMEOUT", 7.0 * 86_400.0)?,
            retry,
            local_restart_ms: env_whole(get, "TEEFORM_LOCAL_RESTART_MS", 0, 3_600_000)?.unwrap_or(1500),
            local_boot_ms: env_whole(get, "TEEFORM_LOCAL_BOOT_MS", 0, 3_600_000)?.unwrap_or(1500),
            per_cvm_reads: env_whole(get, "TEEFORM_PER_CVM_READS", 0, 1)? == Some(1),
            verify_time: env_whole(get, "TEEFORM_VERIFY_TIME", 0, 253_402_300_799)?,
        })
    }
}

fn env_value(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// A whole number in `min..=max`, or `None` when unset or empty.
fn env_whole(get: &dyn Fn(&str) -> Option<String>, name: &str, min: u64, max: u64) -> CliResult<Option<u64>> {
    let Some(v) = env_value(get, name) else { return Ok(None) };
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(CliError::new(format!("{name} must be a whole number from {min} to {max}, not `{v}`"))
            .hint(format!("fix or unset {name}"))),
    }
}

/// A number of seconds above 0 and at most `max`, or `None` when unset or empty.
fn env_seconds(get: &dyn Fn(&str) -> Option<String>, name: &str, max: f64) -> CliResult<Option<Duration>> {
    let Some(v) = env_value(get, name) else { return Ok(None) };
    match v.parse::<f64>() {
        // `parse` accepts NaN, inf and negatives; `Duration` would panic on them.
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= max => Ok(Some(Duration::from_secs_f64(secs))),
        _ => Err(CliError::new(format!("{name} must be a number of seconds above 0 and at most {max}, not `{v}`"))
            .hint(format!("fix or unset {name}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_settings_are_checked_and_never_panic() {
        let names = [
            "TEEFORM_HTTP_TIMEOUT",
            "TEEFORM_WAIT_TIMEOUT",
            "TEEFORM_RETRY_MAX_ATTEMPTS",
            "TEEFORM_RETRY_BASE_MS",
            "TEEFORM_RETRY_DEADLINE_SECS",
            "TEEFORM_LOCAL_RESTART_MS",
            "TEEFORM_LOCAL_BOOT_MS",
            "TEEFORM_PER_CVM_READS",
        ];
        for name in names {
            for bad in ["-1", "inf", "NaN", "1e20", "abc", "18446744073709551616", "1e308"] {
                let r = Settings::from_lookup(&|k| (k == name).then(|| bad.to_string()));
                let e = r.expect_err(&format!("{name}={bad} is refused"));
                assert!(e.message.contains(name) && e.message.contains(bad), "{}", e.message);
            }
            // Empty is unset.
            assert!(Settings::from_lookup(&|k| (k == name).then(String::new)).is_ok(), "{name} empty");
        }
        let s = Settings::from_lookup(&|k| match k {
            "TEEFORM_HTTP_TIMEOUT" => Some("2.5".into()),
            "TEEFORM_WAIT_TIMEOUT" => Some(" 60 ".into()),
            "TEEFORM_RETRY_MAX_ATTEMPTS" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.http_timeout, Duration::from_millis(2500));
        assert_eq!(s.wait_timeout, Some(Duration::from_secs(60)));
        assert_eq!(s.retry.max_attempts, 3);
        assert_eq!(Settings::from_lookup(&|_| None).unwrap().http_timeout, Duration::from_secs(30));
    }
}
