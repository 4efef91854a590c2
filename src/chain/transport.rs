//! The JSON-RPC transport under alloy: one POST per request over teeform's HTTP client
//! ([`crate::providers::http::client`]: same-origin redirects only, no `Referer`), answers
//! read up to [`MAX_ANSWER_BYTES`], and errors and log lines that name the endpoint only as
//! `scheme://host:port/…` — the URL's path and query may hold a key.
//!
//! alloy's own HTTP transport reads any body whole and puts the full URL in its tracing span,
//! so teeform brings this one instead.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};

/// The most a JSON-RPC answer may hold. A receipt with many logs is tens of KiB.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// An HTTP JSON-RPC transport that never shows its URL.
#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    url: url::Url,
    shown: Arc<str>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({})", self.shown)
    }
}

impl Transport {
    /// `shown` is what messages may say of `url`; `timeout` bounds each request.
    pub fn new(url: url::Url, shown: &str, timeout: Duration) -> Result<Transport, String> {
        let client = crate::providers::http::client(timeout, shown).map_err(|e| e.message)?;
        Ok(Transport { client, url, shown: shown.into() })
    }

    async fn send(self, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let methods: Vec<&str> = req.method_names().take(3).collect();
        tracing::debug!(rpc = %self.shown, methods = ?methods, "json-rpc request");
        let resp = self
            .client
            .post(self.url.clone())
            .json(&req)
            .headers(req.headers())
            .send()
            .await
            .map_err(|e| TransportErrorKind::custom_str(&self.describe(&e)))?;
        let status = resp.status().as_u16();
        let body = self.read(resp).await?;
        tracing::debug!(rpc = %self.shown, status, bytes = body.len(), "json-rpc answer");
        if !(200..300).contains(&status) {
            // A JSON-RPC error object under an error status is still the server's answer.
            if let Ok(r) = serde_json::from_slice::<ResponsePacket>(&body)
                && r.is_error()
            {
                return Ok(r);
            }
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(TransportErrorKind::http_error(status, text));
        }
        serde_json::from_slice(&body).map_err(|e| {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            TransportError::deser_err(e, text)
        })
    }

    /// The body, at most [`MAX_ANSWER_BYTES`].
    async fn read(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, TransportError> {
        let too_large = || {
            TransportErrorKind::custom_str(&format!(
                "the answer from {} is larger than {} MiB; teeform stopped reading it",
                self.shown,
                MAX_ANSWER_BYTES >> 20
            ))
        };
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| TransportErrorKind::custom_str(&self.describe(&e)))? {
            if out.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// A transport failure in words that name the endpoint only as it may be shown.
    fn describe(&self, e: &reqwest::Error) -> String {
        // The innermost cause says what happened; outer layers quote the full URL.
        let mut cause = String::new();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        let cause = crate::redact::text(&cause).into_owned();
        if e.is_redirect() {
            format!("the RPC endpoint {} answered with a redirect teeform refuses: {cause}", self.shown)
        } else if e.is_timeout() {
            format!("cannot reach {}: no answer in time", self.shown)
        } else if e.is_connect() {
            format!("cannot reach {}: connection failed: {cause}", self.shown)
        } else {
            format!("cannot reach {}: {cause}", self.shown)
        }
    }
}

impl tower::Service<RequestPacket> for Transport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(req))
    }
}
