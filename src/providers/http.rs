//! Sending requests: retries with exponential backoff and jitter, `Retry-After`, deadlines,
//! and turning error responses into [`ApiError`]s.
//!
//! Only requests safe to repeat are retried after the server may have acted on them; a 429
//! is always safe (the server refused it before doing anything).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::{ApiError, ErrorKind};

/// The most a successful answer may hold. The largest real answers (a page of 100 CVMs, a
/// region's image list) are a few MiB; a body past this is refused, not buffered.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// The most of an error answer that is read: messages show its first 300 characters.
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// The longest `Retry-After` honoured; a longer one waits this long (then the deadline decides).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The one HTTP client every provider uses: same timeouts, user agent and redirect rules
/// everywhere.
///
/// Redirects are followed only within the origin (scheme, host and port) of the request,
/// at most 10 times; a redirect to another origin is refused with an error naming it. The
/// official SDK uses `fetch`, which follows every redirect and drops only `Authorization` on
/// a cross-origin hop, so it would send `X-API-Key` to whatever host a 307 names; teeform
/// follows it only where that is safe. UNVERIFIED: read from the Fetch standard, not checked
/// against the SDK's ofetch options; whether Phala Cloud ever redirects is not known. No `Referer` is sent (it would carry a path, which may hold a key). No
/// compression is negotiated, so a body's size on the wire is its size in memory.
pub fn client(timeout: Duration, endpoint: &str) -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("teeform/", env!("CARGO_PKG_VERSION")))
        .redirect(same_origin_redirects())
        .referer(false)
        .build()
        .map_err(|e| ApiError::local(ErrorKind::Other, "-", endpoint, format!("cannot build the HTTP client: {e}")))
}

/// The redirect policy of [`client`]: same origin only, at most 10 hops.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(url::Url::origin);
        if first.as_ref().is_some_and(|o| *o != attempt.url().origin()) {
            let to = origin_of(attempt.url());
            return attempt.error(RedirectRefused::CrossOrigin(to));
        }
        if attempt.previous().len() > 10 {
            return attempt.error(RedirectRefused::TooMany);
        }
        attempt.follow()
    })
}

/// A redirect [`client`] refused.
#[derive(Debug, thiserror::Error)]
enum RedirectRefused {
    #[error(
        "the server redirected to another origin ({0}); teeform does not follow redirects away from the endpoint, \
         since the request carries credentials"
    )]
    CrossOrigin(String),
    #[error("the server redirected more than 10 times; teeform stopped following")]
    TooMany,
}

/// `scheme://host:port` of a URL, with the port always written.
pub fn origin_of(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or("?");
    match u.port_or_known_default() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

/// `scheme://host:port/path` of a URL: no user, password, query or fragment, which is where
/// credentials go when a URL carries them.
pub fn shown_url(u: &url::Url) -> String {
    format!("{}{}", origin_of(u), u.path())
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Overall deadline for one logical request, retries included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(400),
            max_delay: Duration::from_secs(10),
            deadline: Duration::from_secs(180),
        }
    }
}

/// Told about each retry, so progress output can show it.
pub type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct RetryEvent {
    pub method: String,
    pub path: String,
    pub attempt: u32,
    pub delay: Duration,
    pub reason: String,
}

/// Whether a request may be sent again after the server may have processed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Safe,
    Unsafe,
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.base_delay.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(policy.max_delay);
    // Full jitter in [50%, 100%]: spreads out clients that failed together.
    let factor = 0.5 + rand::random::<f64>() * 0.5;
    capped.mul_f64(factor)
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, std::time::SystemTime::now())
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110 §10.2.3). Whatever the server
/// sends, the answer is a delay in `[0, 300s]` or `None` (not a usable value: the client's
/// own backoff applies). A date in the past means "now".
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        // `parse` accepts NaN, inf and negatives, which `Duration` would panic on.
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let when = httpdate::parse_http_date(v).ok().or_else(|| humantime::parse_rfc3339_weak(v).ok())?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

fn retryable_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 500 | 502 | 503 | 504)
}

/// Sends `build()` until it succeeds, fails for good, or the policy runs out.
pub async fn send(
    policy: &RetryPolicy,
    observer: Option<&RetryObserver>,
    idempotency: Idempotency,
    method: &Method,
    path: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let mut attempt = 0u32;
    loop {
        let sent = Instant::now();
        let (client, request) = build().build_split();
        let request = request.map_err(|e| {
            ApiError::local(ErrorKind::Other, method.as_str(), path, format!("cannot build the request: {e}"))
        })?;
        log_request(&request);
        let result = client.execute(request).await;
        tracing::debug!(%method, path, attempt, elapsed_ms = sent.elapsed().as_millis() as u64, status = ?result.as_ref().map(|r| r.status().as_u16()).ok(), "http request");
        let (delay, reason, final_err) = match result {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) => {
                let status = resp.status();
                let ra = retry_after(&resp);
                let may_retry = status == StatusCode::TOO_MANY_REQUESTS
                    || (retryable_status(status) && idempotency == Idempotency::Safe);
                if !may_retry {
                    return Err(error_from_response(method, path, resp).await);
                }
                let err = error_from_response(method, path, resp).await;
                let delay = ra.unwrap_or_else(|| backoff(policy, attempt)).max(Duration::from_millis(50));
                (delay, format!("HTTP {}", status.as_u16()), err)
            }
            Err(e) if e.is_redirect() => {
                // A refused redirect is an answer, and the same answer next time: no retry.
                return Err(ApiError::local(ErrorKind::InvalidResponse, method.as_str(), path, describe_reqwest(&e)));
            }
            Err(e) => {
                let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Network };
                let err = ApiError::local(kind, method.as_str(), path, describe_reqwest(&e));
                // A connection that never opened cannot have reached the server.
                let before_send = e.is_connect();
                if idempotency == Idempotency::Unsafe && !before_send {
                    return Err(err);
                }
                (backoff(policy, attempt), err.message.clone(), err)
            }
        };
        attempt += 1;
        if attempt >= policy.max_attempts || start.elapsed() + delay > policy.deadline {
            return Err(final_err);
        }
        let ev = RetryEvent { method: method.to_string(), path: path.to_string(), attempt, delay, reason };
        tracing::info!(method = %ev.method, path = %ev.path, attempt = ev.attempt, delay_ms = ev.delay.as_millis() as u64, reason = %ev.reason, "retrying");
        if let Some(o) = observer {
            o(&ev);
        }
        tokio::time::sleep(delay).await;
    }
}

/// Header names whose values are never logged.
const SECRET_HEADERS: &[&str] = &["x-api-key", "authorization", "cookie", "x-auth-token"];
/// JSON fields whose values are never logged (encrypted blobs included: they are not secret,
/// but nothing is gained by spreading them).
const SECRET_FIELDS: &[&str] = &["encrypted_env", "token", "commit_token", "password", "private_key", "secret"];

/// Logs a request at trace level with credentials and encrypted blobs redacted.
fn log_request(req: &reqwest::Request) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let shown =
                if SECRET_HEADERS.contains(&k.as_str()) { "<redacted>" } else { v.to_str().unwrap_or("<binary>") };
            format!("{k}: {shown}")
        })
        .collect();
    let body = match req.body().and_then(|b| b.as_bytes()) {
        Some(bytes) => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(mut v) => {
                redact(&mut v);
                v.to_string()
            }
            Err(_) => format!("<{} bytes>", bytes.len()),
        },
        None => String::new(),
    };
    tracing::trace!(method = %req.method(), url = %req.url(), headers = ?headers, body = %body, "http request");
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_FIELDS.iter().any(|s| k.to_ascii_lowercase().contains(s)) {
                    *val = "<redacted>".into();
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// What went wrong with a request that got no usable answer, naming the URL as
/// [`shown_url`] does (never its query or credentials).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let url = e.url().map(shown_url).unwrap_or_else(|| "the endpoint".into());
    // The innermost cause says what happened ("Connection refused"); the outer layers repeat
    // the URL with its query.
    let mut cause = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = Some(s.to_string());
        src = s.source();
    }
    let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
    if e.is_redirect() {
        // The policy's own error (the innermost cause) says where it went.
        return format!("refused a redirect from {url}{cause}");
    }
    if e.is_timeout() {
        return format!("no answer from {url} within the HTTP timeout (TEEFORM_HTTP_TIMEOUT){cause}");
    }
    if e.is_connect() {
        return format!("cannot connect to {url} (is the endpoint right and reachable?){cause}");
    }
    if e.is_body() || e.is_decode() {
        return format!("reading the answer from {url} failed{cause}");
    }
    format!("the request to {url} failed{cause}")
}

/// Reads a successful answer's body, at most `limit` bytes: a longer one is an error and is
/// not read further (a declared `Content-Length` over the limit is refused before reading).
pub async fn read_body(method: &Method, path: &str, mut resp: Response, limit: usize) -> Result<Vec<u8>, ApiError> {
    let status = resp.status().as_u16();
    let too_large = || {
        let mut e = ApiError::local(
            ErrorKind::InvalidResponse,
            method.as_str(),
            path,
            format!("the answer is larger than {} MiB; teeform stopped reading it", limit >> 20),
        );
        e.status = Some(status);
        e
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                let mut err = ApiError::local(ErrorKind::Network, method.as_str(), path, describe_reqwest(&e));
                err.status = Some(status);
                return Err(err);
            }
        }
    }
}

/// The first `limit` bytes of a body (the rest is dropped unread); errors end the read.
async fn read_prefix(mut resp: Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]),
            _ => break,
        }
    }
    out
}

/// Parses an error body: FastAPI's `detail` as a string or a validation list, or a structured
/// error (`error_code`, `message`, `details`, `suggestions`, `request_id`) under `detail` (as
/// Phala's API wrote it first) or at the top level (as the newer SDKs read it); nscale's
/// OAuth2-style `{error, error_description}`.
pub async fn error_from_response(method: &Method, path: &str, resp: Response) -> ApiError {
    let status = resp.status().as_u16();
    let request_id = ["x-request-id", "opc-request-id", "x-correlation-id", "trace-id"]
        .iter()
        .find_map(|h| resp.headers().get(*h).and_then(|v| v.to_str().ok()).map(str::to_string));
    let body = read_prefix(resp, MAX_ERROR_BODY_BYTES).await;
    let mut e = parse_error_body(status, &String::from_utf8_lossy(&body));
    e.request_id = e.request_id.or(request_id);
    e.method = method.to_string();
    e.path = path.to_string();
    e
}

pub fn parse_error_body(status: u16, body: &str) -> ApiError {
    let mut e = ApiError {
        kind: kind_of_status(status),
        status: Some(status),
        code: None,
        message: String::new(),
        suggestions: vec![],
        request_id: None,
        method: String::new(),
        path: String::new(),
        details: vec![],
        invalid_fields: vec![],
        hint: None,
    };
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    // A structured error at the top level (no `detail` object beside it) reads like one under
    // `detail`.
    let detail = match json.get("detail") {
        Some(d @ serde_json::Value::Object(_)) => Some(d),
        None | Some(serde_json::Value::Null) if json.get("error_code").is_some() => Some(&json),
        d => d,
    };
    match detail {
        Some(serde_json::Value::String(s)) => e.message = s.clone(),
        Some(serde_json::Value::Array(items)) => read_validation_items(&mut e, items),
        Some(obj @ serde_json::Value::Object(_)) => read_structured(&mut e, obj),
        _ => {}
    }
    read_top_level(&mut e, &json, status, body);
    if e.code.as_deref() == Some("ERR-03-001") {
        e.kind = ErrorKind::NotFound;
    }
    e
}

/// The kind an HTTP status means on the Phala API (46x: the on-chain KMS statuses).
fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        422 | 400 => ErrorKind::Validation,
        429 => ErrorKind::RateLimited,
        465 => ErrorKind::HashRequired,
        466 => ErrorKind::HashExpired,
        467 => ErrorKind::TxVerificationFailed,
        468 => ErrorKind::HashNotOnChain,
        s if s >= 500 => ErrorKind::Server,
        _ => ErrorKind::Other,
    }
}

/// Pydantic validation errors: `[{loc: ["body","name"], msg}]`; the fields named (without the
/// leading `body`) and one message per item.
fn read_validation_items(e: &mut ApiError, items: &[serde_json::Value]) {
    let loc_parts = |i: &serde_json::Value| -> Vec<String> {
        i.get("loc")
            .and_then(|l| l.as_array())
            .map(|l| l.iter().map(|p| p.as_str().map(str::to_string).unwrap_or_else(|| p.to_string())).collect())
            .unwrap_or_default()
    };
    e.invalid_fields = items
        .iter()
        .filter(|i| i.get("loc").is_some_and(|l| l.is_array()))
        .map(|i| {
            let parts = loc_parts(i);
            parts.strip_prefix(&["body".to_string()]).unwrap_or(&parts).join(".")
        })
        .collect();
    e.message = items
        .iter()
        .map(|i| {
            let loc = loc_parts(i).join(".");
            let msg = i.get("msg").and_then(|m| m.as_str()).unwrap_or("invalid");
            if loc.is_empty() { msg.to_string() } else { format!("{loc}: {msg}") }
        })
        .collect::<Vec<_>>()
        .join("; ");
}

/// A structured error: `{error_code, message, suggestions, details: [{field, value}]}`.
fn read_structured(e: &mut ApiError, obj: &serde_json::Value) {
    e.code = obj.get("error_code").and_then(|c| c.as_str()).map(str::to_string);
    e.message = obj.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_string();
    e.suggestions = obj
        .get("suggestions")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(details) = obj.get("details").and_then(|d| d.as_array()) {
        for d in details {
            if let Some(f) = d.get("field").and_then(|f| f.as_str()) {
                e.details.push((f.to_string(), d.get("value").cloned().unwrap_or_default()));
            }
        }
    }
}

/// What the top level adds: nscale's OAuth2-style `{error, error_description, trace_id}`, a
/// `code`, a `request_id`, and a message when nothing else gave one (the body's start, or the
/// status's reason phrase).
fn read_top_level(e: &mut ApiError, json: &serde_json::Value, status: u16, body: &str) {
    if let Some(d) = json.get("error_description").and_then(|m| m.as_str()) {
        e.message = d.to_string();
        e.code = json.get("error").and_then(|c| c.as_str()).map(str::to_string);
        e.request_id = json.get("trace_id").and_then(|t| t.as_str()).map(str::to_string);
    }
    if e.code.is_none() {
        e.code = json.get("code").and_then(|c| c.as_str()).map(str::to_string);
    }
    if e.request_id.is_none() {
        e.request_id = json.get("request_id").and_then(|r| r.as_str()).map(str::to_string);
    }
    if e.message.is_empty() {
        e.message = json.get("message").and_then(|m| m.as_str()).map(str::to_string).unwrap_or_else(|| {
            let t = body.trim();
            if t.is_empty() {
                StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_string()
            } else {
                t.chars().take(300).collect()
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_error_shape() {
        let cases: &[(u16, &str, ErrorKind, Option<&str>, &str)] = &[
            (401, r#"{"detail":"Invalid API key"}"#, ErrorKind::Unauthenticated, None, "Invalid API key"),
            (403, r#"{"detail":"Forbidden"}"#, ErrorKind::Forbidden, None, "Forbidden"),
            (466, r#"{"detail":"Compose hash expired"}"#, ErrorKind::HashExpired, None, "Compose hash expired"),
            (467, "", ErrorKind::TxVerificationFailed, None, "error"),
            (468, "", ErrorKind::HashNotOnChain, None, "error"),
            (
                404,
                r#"{"detail":{"error_code":"ERR-03-001","message":"CVM not found","details":[],"suggestions":["check the id"],"links":[]}}"#,
                ErrorKind::NotFound,
                Some("ERR-03-001"),
                "CVM not found",
            ),
            (
                422,
                r#"{"detail":[{"loc":["body","name"],"msg":"field required","type":"missing"}]}"#,
                ErrorKind::Validation,
                None,
                "body.name: field required",
            ),
            (503, "", ErrorKind::Server, None, "Service Unavailable"),
            (
                465,
                r#"{"detail":{"error_code":"ERR-01-005","message":"hash","details":[{"field":"compose_hash","value":"ab"}]}}"#,
                ErrorKind::HashRequired,
                Some("ERR-01-005"),
                "hash",
            ),
        ];
        for (status, body, kind, code, msg) in cases {
            let e = parse_error_body(*status, body);
            assert_eq!(e.kind, *kind, "{body}");
            assert_eq!(e.code.as_deref(), *code);
            assert_eq!(e.message, *msg);
        }
        let hash_required = cases.iter().find(|c| c.0 == 465).unwrap().1;
        assert_eq!(parse_error_body(465, hash_required).detail("compose_hash").unwrap(), "ab");
        let e =
            parse_error_body(422, r#"{"detail":[{"loc":["body","app_id"],"msg":"x"},{"loc":["query"],"msg":"y"}]}"#);
        assert_eq!(e.invalid_fields, ["app_id", "query"]);
    }

    /// The newer API writes a structured error's fields at the top level (with a request id),
    /// keeping a copy under `detail` for older clients; either alone reads the same.
    #[test]
    fn a_structured_error_reads_the_same_at_the_top_level_and_under_detail() {
        let fields = r#""error_code":"ERR-01-005","message":"register it","details":[{"field":"compose_hash","value":"ab"}],"suggestions":["sign"]"#;
        for body in [
            format!(r#"{{{fields},"request_id":"req_7"}}"#),
            format!(r#"{{{fields},"request_id":"req_7","detail":{{{fields}}}}}"#),
            format!(r#"{{"request_id":"req_7","detail":{{{fields}}}}}"#),
        ] {
            let e = parse_error_body(465, &body);
            assert_eq!(
                (e.kind, e.code.as_deref(), e.message.as_str()),
                (ErrorKind::HashRequired, Some("ERR-01-005"), "register it"),
                "{body}"
            );
            assert_eq!(
                (e.detail("compose_hash").unwrap(), e.suggestions.as_slice()),
                (&serde_json::json!("ab"), &["sign".to_string()][..])
            );
            assert_eq!(e.request_id.as_deref(), Some("req_7"));
        }
        let e = parse_error_body(404, r#"{"error_code":"ERR-03-001","message":"CVM not found","detail":null}"#);
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::NotFound, "CVM not found"));
    }

    #[test]
    fn redacts_secrets_in_logged_bodies() {
        let mut v =
            serde_json::json!({"encrypted_env": "abcd", "vcpu": 2, "nested": [{"commit_token": "t", "name": "x"}]});
        redact(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"encrypted_env": "<redacted>", "vcpu": 2, "nested": [{"commit_token": "<redacted>", "name": "x"}]})
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        for attempt in 0..20 {
            let d = backoff(&p, attempt);
            assert!(d <= Duration::from_secs(1));
            assert!(d >= Duration::from_millis(50));
        }
        assert!(backoff(&p, 5) >= Duration::from_millis(500));
    }

    #[test]
    fn retry_after_is_a_bounded_delay_whatever_the_server_sends() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cases: &[(&str, Option<Duration>)] = &[
            ("5", Some(Duration::from_secs(5))),
            (" 1.5 ", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("NaN", None),
            ("-1", None),
            ("inf", None),
            ("-inf", None),
            ("1e20", Some(MAX_RETRY_AFTER)),
            ("18446744073709551616", Some(MAX_RETRY_AFTER)),
            ("", None),
            ("soon", None),
            // An HTTP date in the past is "now"; one far ahead is capped.
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(Duration::ZERO)),
            ("Tue, 14 Nov 2023 22:16:40 GMT", Some(Duration::from_secs(200))),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(MAX_RETRY_AFTER)),
        ];
        for (v, want) in cases {
            assert_eq!(parse_retry_after(v, now), *want, "{v:?}");
        }
    }

    #[test]
    fn urls_are_shown_without_credentials_or_queries() {
        let u = url::Url::parse("https://user:pw@api.example.com/api/v1/cvms?page=2&key=SECRET#frag").unwrap();
        assert_eq!(shown_url(&u), "https://api.example.com:443/api/v1/cvms");
        let u = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(shown_url(&u), "http://127.0.0.1:8080/");
    }
}
