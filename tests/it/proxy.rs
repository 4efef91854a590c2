//! A fault-injecting HTTP proxy for the hostile-API tests: it sits between teeform and the
//! simulator (or any upstream) on 127.0.0.1 and forwards every request, unless a rule for the
//! request's method and path answers instead — with a status and body of its choosing, a
//! redirect, the upstream's JSON rewritten, or a body that never ends. It records every
//! request it saw (with the credential headers that came with it) and counts the body bytes
//! it sent, so tests assert what reached whom and how much was read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::harness::runtime;

type Rewrite = Arc<dyn Fn(Value) -> Value + Send + Sync>;
type Generate = Arc<dyn Fn(&str) -> (u16, Vec<(String, String)>, Value) + Send + Sync>;

/// What a rule does instead of (or to) the upstream's answer.
#[derive(Clone)]
pub enum Fault {
    /// Answers with this status, headers and body; the upstream never sees the request.
    Answer { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// Forwards, then rewrites the upstream's JSON answer.
    Rewrite(Rewrite),
    /// Answers with a status, headers and JSON made from the request's path and query.
    Generate(Generate),
    /// A 200 whose body never ends (a declared `Content-Length`, if given, is a lie).
    Endless { declared_length: Option<u64> },
    /// Forwards (the upstream acts), then holds the answer this long: a client killed
    /// meanwhile never learns what happened.
    Hold(std::time::Duration),
}

impl Fault {
    pub fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Fault {
        Fault::Answer {
            status,
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            body: body.to_string(),
        }
    }

    pub fn redirect(status: u16, location: &str) -> Fault {
        Fault::answer(status, &[("location", location)], "")
    }

    pub fn rewrite(f: impl Fn(Value) -> Value + Send + Sync + 'static) -> Fault {
        Fault::Rewrite(Arc::new(f))
    }

    pub fn generate(f: impl Fn(&str) -> (u16, Vec<(String, String)>, Value) + Send + Sync + 'static) -> Fault {
        Fault::Generate(Arc::new(f))
    }
}

struct Rule {
    method: String,
    path_contains: String,
    /// Match the path (without the query) exactly instead.
    exact: bool,
    /// How many more requests it applies to (`None`: all).
    times: Option<usize>,
    fault: Fault,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub api_key: Option<String>,
    pub authorization: Option<String>,
    /// The request's body, as sent.
    pub body: Vec<u8>,
}

struct Inner {
    upstream: Option<String>,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    sent: AtomicU64,
    http: reqwest::Client,
}

pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn to(upstream: &str) -> Proxy {
        Self::start(Some(upstream.trim_end_matches('/').to_string()))
    }

    /// A server that only records what reaches it and answers `{}`: where a redirect points.
    pub fn recorder() -> Proxy {
        Self::start(None)
    }

    fn start(upstream: Option<String>) -> Proxy {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let inner = Arc::new(Inner {
            upstream,
            rules: Mutex::default(),
            seen: Mutex::default(),
            sent: AtomicU64::new(0),
            http,
        });
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let addr = runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
            addr
        });
        Proxy { addr, inner, stop: Some(tx) }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Phala API prefix through the proxy.
    pub fn prefix(&self) -> String {
        format!("{}/api/v1", self.origin())
    }

    /// Applies `fault` to every `METHOD` request whose path and query contain `path`.
    pub fn on(&self, method: &str, path: &str, fault: Fault) -> &Self {
        self.add(method, path, false, None, fault)
    }

    /// Applies `fault` to every `METHOD` request to exactly `path` (any query).
    pub fn on_path(&self, method: &str, path: &str, fault: Fault) -> &Self {
        self.add(method, path, true, None, fault)
    }

    /// Applies `fault` to the next `times` matching requests only.
    pub fn times(&self, times: usize, method: &str, path: &str, fault: Fault) -> &Self {
        self.add(method, path, false, Some(times), fault)
    }

    fn add(&self, method: &str, path: &str, exact: bool, times: Option<usize>, fault: Fault) -> &Self {
        self.inner.rules.lock().unwrap().push(Rule {
            method: method.to_string(),
            path_contains: path.to_string(),
            exact,
            times,
            fault,
        });
        self
    }

    pub fn clear(&self) {
        self.inner.rules.lock().unwrap().clear();
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.inner.seen.lock().unwrap().clear();
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// How many `METHOD` requests whose target contains `path` were seen.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen().iter().filter(|s| s.method == method && s.target.contains(path)).count()
    }

    /// Body bytes the proxy has sent of endless answers.
    pub fn endless_bytes_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn header(h: &HeaderMap, k: &str) -> Option<String> {
    h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .expect("response")
}

async fn handle(State(p): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|x| x.as_str().to_string()).unwrap_or_default();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    p.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        api_key: header(&headers, "x-api-key"),
        authorization: header(&headers, "authorization"),
        body: body.to_vec(),
    });
    let fault = {
        let mut rules = p.rules.lock().unwrap();
        let path = target.split('?').next().unwrap_or_default();
        let matches = |r: &Rule| if r.exact { path == r.path_contains } else { target.contains(&r.path_contains) };
        let live = |r: &&mut Rule| r.method == method && matches(r) && r.times != Some(0);
        rules.iter_mut().find(live).map(|r| {
            if let Some(n) = &mut r.times {
                *n -= 1;
            }
            r.fault.clone()
        })
    };
    match fault {
        Some(Fault::Answer { status, headers, body }) => {
            let mut r = Response::builder().status(status);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.body(Body::from(body)).expect("response")
        }
        Some(Fault::Generate(f)) => {
            let (status, headers, v) = f(&target);
            let mut r = json_response(status, &v);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
        Some(Fault::Endless { declared_length }) => {
            let sent = p.clone();
            let chunk = bytes_chunk();
            let stream = futures::stream::repeat_with(move || {
                sent.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            let mut r = Response::builder().status(200).header("content-type", "application/json");
            if let Some(n) = declared_length {
                r = r.header("content-length", n.to_string());
            }
            r.body(Body::from_stream(stream)).expect("response")
        }
        Some(Fault::Hold(d)) => {
            let r = forward(&p, &method, &target, &headers, body).await;
            tokio::time::sleep(d).await;
            match r {
                Ok((status, _, bytes)) => json_response(status, &serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
                Err(r) => r,
            }
        }
        Some(Fault::Rewrite(f)) => match forward(&p, &method, &target, &headers, body).await {
            Ok((status, _, bytes)) => {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                json_response(status, &f(v))
            }
            Err(r) => r,
        },
        None => match forward(&p, &method, &target, &headers, body).await {
            Ok((status, h, bytes)) => {
                let mut r = Response::builder().status(status);
                for (k, v) in h.iter() {
                    if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
                        r = r.header(k, v);
                    }
                }
                r.body(Body::from(bytes)).expect("response")
            }
            Err(r) => r,
        },
    }
}

fn bytes_chunk() -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b' '; 64 << 10])
}

async fn forward(
    p: &Inner,
    method: &str,
    target: &str,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<(u16, HeaderMap, axum::body::Bytes), Response> {
    let Some(up) = &p.upstream else {
        return Err(json_response(200, &serde_json::json!({})));
    };
    let mut req = p.http.request(method.parse().expect("method"), format!("{up}{target}"));
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = req.body(body).send().await.map_err(|e| {
        Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::from(e.to_string())).expect("response")
    })?;
    let status = resp.status().as_u16();
    let mut h = HeaderMap::new();
    for (k, v) in resp.headers() {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_str().as_bytes()), HeaderValue::from_bytes(v.as_bytes())) {
            h.insert(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    Ok((status, h, bytes))
}
