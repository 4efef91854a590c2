//! One redaction for everything teeform prints or logs. Credentials are registered here when
//! they are read (API keys, tokens, signing keys, RPC URLs, the PostgreSQL connection string)
//! and [`text`] replaces them wherever they appear — in error messages and in every log line,
//! whichever crate (reqwest, hyper, alloy, tokio-postgres) wrote it.
//!
//! RPC URLs are secrets as a whole: hosted providers put the key in the path (`/v2/KEY`) or
//! the query (`?apikey=KEY`). A registered URL shows as `scheme://host:port/…`, its path and
//! query alone as `/…`, and its longer path segments and query values as `<redacted>`, so a
//! line quoting any part of it shows none of the key. Passwords in `scheme://user:PASSWORD@`
//! are removed from every URL, registered or not.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

/// Shorter values are not registered: replacing them would garble ordinary text, and a
/// credential that short protects nothing.
const MIN_SECRET_LEN: usize = 6;

/// Parts of a URL (its path, query, segments and values) are registered only from this length:
/// hosted RPC keys are 20 to 64 characters.
const MIN_KEY_PART_LEN: usize = 16;

/// `(needle, replacement)`, longest needle first so a whole URL wins over its parts.
static NEEDLES: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

static USERINFO: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]*):[^/@\s]+@").expect("valid regex"));

const REDACTED: &str = "<redacted>";

fn add(pairs: impl IntoIterator<Item = (String, String)>) {
    let mut needles = NEEDLES.write().unwrap_or_else(|p| p.into_inner());
    for (needle, mut with) in pairs {
        // A URL registered with its trailing slash is a prefix of the URLs built on it
        // (`http://host:8081/` of `http://host:8081/sgx/…`): its replacement keeps the slash,
        // or the text shown would run host and path together.
        if needle.ends_with('/') && !with.ends_with('/') {
            with.push('/');
        }
        if needle.len() >= MIN_SECRET_LEN && !needles.iter().any(|(n, _)| *n == needle) {
            needles.push((needle, with));
        }
    }
    needles.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
}

/// Registers a credential (a key, a token, a password): it is shown as `<redacted>`.
pub fn secret(value: &str) {
    let v = value.trim();
    let mut pairs = vec![(v.to_string(), REDACTED.to_string())];
    // Hex keys are written with and without `0x`.
    if let Some(bare) = v.strip_prefix("0x") {
        pairs.push((bare.to_string(), REDACTED.to_string()));
    }
    add(pairs);
}

/// `scheme://host[:port]/…` (the `/…` only when the URL has a path or query): what may be
/// shown of a URL that can carry a key.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let rest = if u.path().len() > 1 || u.query().is_some() { "/…" } else { "" };
            match u.port() {
                Some(p) => format!("{}://{host}:{p}{rest}", u.scheme()),
                None => format!("{}://{host}{rest}", u.scheme()),
            }
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

/// Registers a URL that may carry a key in its path, query or password (an RPC URL).
pub fn url(value: &str) {
    let raw = value.trim();
    let shown = shown_url(raw);
    let mut pairs = vec![(raw.to_string(), shown.clone())];
    if let Ok(u) = url::Url::parse(raw) {
        pairs.push((u.as_str().to_string(), shown.clone()));
        pairs.push((u.as_str().trim_end_matches('/').to_string(), shown));
        let path_and_query = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        // Keys are long: a short path (`/rpc`, `/ethereum`) or segment (`v2`) holds none,
        // and replacing it everywhere would garble ordinary text.
        let long = |p: &String| p.len() >= MIN_KEY_PART_LEN;
        let parts = u.path_segments().into_iter().flatten().map(str::to_string);
        let values = u.query_pairs().map(|(_, v)| v.into_owned());
        let pieces = [path_and_query, u.query().unwrap_or_default().to_string()].into_iter().chain(parts).chain(values);
        for (i, p) in pieces.enumerate().filter(|(_, p)| long(p)) {
            pairs.push((p, if i == 0 { "/…".into() } else { REDACTED.into() }));
        }
        if let Some(pw) = u.password() {
            pairs.push((pw.to_string(), REDACTED.into()));
        }
    }
    add(pairs);
}

/// A short, stable fingerprint of a secret (16 hex digits of SHA-256), to tell whether it
/// changed without storing it.
pub fn fingerprint(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("teeform-fingerprint\0{}", secret.trim()).as_bytes());
    hex::encode(&digest[..8])
}

/// `text` with every registered credential, and every URL's password, replaced.
pub fn text(text: &str) -> Cow<'_, str> {
    let needles = NEEDLES.read().unwrap_or_else(|p| p.into_inner());
    let mut out = Cow::Borrowed(text);
    for (needle, with) in needles.iter() {
        if out.contains(needle.as_str()) {
            out = Cow::Owned(out.replace(needle.as_str(), with));
        }
    }
    match USERINFO.replace_all(&out, "$1:<redacted>@") {
        Cow::Borrowed(_) => out,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// A `tracing` writer that redacts each formatted line before handing it to `M`'s writer:
/// `Redacting(std::io::stderr)` is what teeform logs through.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redacting<M>(pub M);

/// One log line being formatted; written, redacted, when dropped.
pub struct Line<W: std::io::Write> {
    buf: Vec<u8>,
    out: W,
}

impl<W: std::io::Write> std::io::Write for Line<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: std::io::Write> Drop for Line<W> {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buf);
        let _ = self.out.write_all(text(&line).as_bytes());
    }
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for Redacting<M> {
    type Writer = Line<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Line { buf: Vec::new(), out: self.0.make_writer() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_urls_show_no_part_of_their_key() {
        url("https://base-mainnet.g.alchemy.com/v2/AlchemyKey0123456789");
        url("http://127.0.0.1:8545/rpc?apikey=QueryKey0123456789&x=1");
        secret("0xabcdef0123456789abcdef");
        let cases = [
            (
                "error sending request for url (https://base-mainnet.g.alchemy.com/v2/AlchemyKey0123456789)",
                "error sending request for url (https://base-mainnet.g.alchemy.com/…)",
            ),
            ("POST /v2/AlchemyKey0123456789 HTTP/1.1", "POST /… HTTP/1.1"),
            ("uri=http://127.0.0.1:8545/rpc?apikey=QueryKey0123456789&x=1 ok", "uri=http://127.0.0.1:8545/… ok"),
            ("key QueryKey0123456789 alone", "key <redacted> alone"),
            ("signer abcdef0123456789abcdef", "signer <redacted>"),
            ("postgres://app:hunter2hunter@db:5432/x", "postgres://app:<redacted>@db:5432/x"),
            ("nothing secret here", "nothing secret here"),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), want, "{input}");
        }
    }

    #[test]
    fn log_lines_are_redacted_whoever_writes_them() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        url("https://eth.example/v2/LogLineKey0123456789abcd");
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt().with_writer(Redacting(move || out.clone())).with_ansi(false).finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(url = "https://eth.example/v2/LogLineKey0123456789abcd", "connecting");
            tracing::info!("POST /v2/LogLineKey0123456789abcd");
            tracing::info!("db postgres://u:pw12345678@db/x");
        });
        let logged = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("url=\"https://eth.example/…\""), "{logged}");
        assert!(logged.contains("POST /…"), "{logged}");
        assert!(logged.contains("postgres://u:<redacted>@db/x"), "{logged}");
        assert!(!logged.contains("LogLineKey") && !logged.contains("pw12345678"), "{logged}");
    }

    #[test]
    fn a_url_at_the_root_keeps_the_slash_before_the_paths_built_on_it() {
        // Registered as given, without and with its slash, as `127.0.0.1` and `localhost`.
        url("http://127.0.0.1:19347");
        url("http://localhost:19348/");
        let cases = [
            (
                "GET http://127.0.0.1:19347/sgx/certification/v4/pckcrl",
                "GET http://127.0.0.1:19347/sgx/certification/v4/pckcrl",
            ),
            (
                "GET http://localhost:19348/tdx/certification/v4/tcb",
                "GET http://localhost:19348/tdx/certification/v4/tcb",
            ),
            (
                "at http://127.0.0.1:19347/ and http://localhost:19348.",
                "at http://127.0.0.1:19347/ and http://localhost:19348.",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), want, "{input}");
        }
    }

    #[test]
    fn short_values_are_not_registered() {
        secret("abc");
        url("https://rpc.example.org/ethereum");
        assert_eq!(text("abc abcd /ethereum"), "abc abcd /ethereum");
    }

    #[test]
    fn urls_are_shown_without_paths_or_keys() {
        let cases = [
            ("https://base-mainnet.g.alchemy.com/v2/SECRETKEY", "https://base-mainnet.g.alchemy.com/…"),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/?key=abc", "http://127.0.0.1:8545/…"),
            ("not a url", "(unparseable URL)"),
        ];
        for (u, want) in cases {
            assert_eq!(shown_url(u), want, "{u}");
        }
    }
}
