//! The HTTP client every REST adapter uses: rustls TLS, a connect timeout, a first-byte
//! timeout, an idle timeout while streaming, and HTTP errors mapped to [`ProviderError`].
//!
//! 401/403 become `Auth`, 429 becomes `RateLimited` with the server's `Retry-After`, any
//! other failure status becomes `Http` with a short body that never contains the API key.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use serde::Serialize;
use tokio::time::Instant;
use voxline_engine::provider::ProviderError;

use super::backoff::{retry, Backoff, Sleeper};
use super::secret::ApiKey;

/// Error bodies are cut to this many bytes before they go into an error.
pub const MAX_ERROR_BODY: usize = 512;

/// How long to wait for each phase of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From sending the request (connect included) to the first byte of the response body.
    pub first_byte: Duration,
    /// Longest silence between two body chunks once streaming; `None` waits forever.
    pub idle: Option<Duration>,
}

impl Default for HttpTimeouts {
    /// 3 s to connect, 10 s to the first byte, 15 s of silence mid-stream.
    fn default() -> Self {
        HttpTimeouts {
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(10),
            idle: Some(Duration::from_secs(15)),
        }
    }
}

/// How the API key goes on a request (and on a WebSocket upgrade).
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// No credentials (self-hosted servers).
    None,
    /// `Authorization: Bearer <key>` (OpenAI and the compatible servers, xAI).
    Bearer(&'a ApiKey),
    /// `<name>: <prefix><key>`, e.g. `Authorization: Token <key>` or `xi-api-key: <key>`.
    Header {
        /// Header name.
        name: &'static str,
        /// Text before the key, including any space.
        prefix: &'static str,
        /// The key.
        key: &'a ApiKey,
    },
}

impl Auth<'_> {
    /// Bearer auth when a key is present, none otherwise.
    pub fn bearer_if(key: Option<&ApiKey>) -> Auth<'_> {
        key.map_or(Auth::None, Auth::Bearer)
    }

    /// The key this auth carries, for redaction.
    pub fn key(&self) -> Option<&ApiKey> {
        match self {
            Auth::None => None,
            Auth::Bearer(key) | Auth::Header { key, .. } => Some(key),
        }
    }

    /// The header to send, marked sensitive so HTTP-library debug output hides it.
    pub fn header(
        &self,
        provider: &str,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
        let (name, value) = match self {
            Auth::None => return Ok(None),
            Auth::Bearer(key) => ("authorization", format!("Bearer {}", key.expose())),
            Auth::Header { name, prefix, key } => (*name, format!("{prefix}{}", key.expose())),
        };
        let name = HeaderName::from_static(name);
        let mut value = HeaderValue::from_str(&value).map_err(|_| ProviderError::Config {
            provider: provider.to_string(),
            detail: "the API key contains characters that are not allowed in a header".into(),
        })?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }
}

impl fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
            Auth::Header { name, .. } => write!(f, "Header({name}: ***)"),
        }
    }
}

/// Extra request headers from config, validated once.
pub fn header_map(
    provider: &str,
    headers: &[(String, String)],
) -> Result<HeaderMap, ProviderError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let bad = |what: &str| ProviderError::Config {
            provider: provider.to_string(),
            detail: format!("extra header {name:?}: invalid {what}"),
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad("name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad("value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A pooled HTTP client for one provider; cheap to clone, keeps connections warm.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    provider: Arc<str>,
    timeouts: HttpTimeouts,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.provider)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl HttpClient {
    /// A client for `provider` (the name used in errors) with these timeouts.
    pub fn new(provider: &str, timeouts: HttpTimeouts) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ProviderError::Config {
                provider: provider.to_string(),
                detail: format!("cannot build the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(HttpClient {
            client,
            provider: provider.into(),
            timeouts,
        })
    }

    /// The provider name used in errors.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The timeouts this client applies.
    pub fn timeouts(&self) -> HttpTimeouts {
        self.timeouts
    }

    /// POSTs `body` as JSON and waits for a success status. Any other status is read
    /// (briefly) and mapped to a typed error. The returned body has the rest of the
    /// first-byte deadline for its first chunk.
    pub async fn post_json<B: Serialize + ?Sized>(
        &self,
        url: &str,
        auth: Auth<'_>,
        extra_headers: &HeaderMap,
        body: &B,
    ) -> Result<StreamingResponse, ProviderError> {
        let payload = serde_json::to_vec(body).map_err(|e| ProviderError::Config {
            provider: self.provider.to_string(),
            detail: format!("cannot encode the request: {e}"),
        })?;
        let mut headers = extra_headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!(
                "voxline/",
                env!("CARGO_PKG_VERSION")
            )));
        if let Some((name, value)) = auth.header(&self.provider)? {
            headers.insert(name, value);
        }
        let request = self.client.post(url).headers(headers).body(payload);
        let deadline = Instant::now() + self.timeouts.first_byte;
        let response = match tokio::time::timeout_at(deadline, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(self.map_send_error(&e, auth.key())),
            Err(_) => return Err(self.first_byte_timeout()),
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers(), SystemTime::now());
            let body = read_error_body(response, deadline).await;
            return Err(error_for_status(
                &self.provider,
                status.as_u16(),
                retry_after,
                &body,
                auth.key(),
            ));
        }
        Ok(StreamingResponse {
            provider: self.provider.clone(),
            response,
            first_deadline: Some(deadline),
            timeouts: self.timeouts,
            key: auth.key().cloned(),
        })
    }

    /// POSTs `body` and waits for the first body chunk, retrying per `backoff` on
    /// retryable failures (429 honouring `Retry-After`, 5xx, timeouts, drops). Nothing has
    /// reached the caller before the first chunk, so a retry is never seen downstream.
    /// Returns the response and its first chunk (`None` for an empty body).
    pub async fn open_stream<B: Serialize + ?Sized>(
        &self,
        url: &str,
        auth: Auth<'_>,
        extra_headers: &HeaderMap,
        body: &B,
        backoff: &Backoff,
        sleeper: &dyn Sleeper,
    ) -> Result<(StreamingResponse, Option<Bytes>), ProviderError> {
        retry(backoff, sleeper, |_attempt| async {
            let mut response = self.post_json(url, auth, extra_headers, body).await?;
            let first = response.next_chunk().await?;
            Ok((response, first))
        })
        .await
    }

    fn first_byte_timeout(&self) -> ProviderError {
        ProviderError::FirstByteTimeout {
            provider: self.provider.to_string(),
            after: self.timeouts.first_byte,
        }
    }

    fn map_send_error(&self, e: &reqwest::Error, key: Option<&ApiKey>) -> ProviderError {
        let detail = redact(key, &error_chain(e));
        if e.is_connect() && e.is_timeout() {
            ProviderError::ConnectTimeout {
                provider: self.provider.to_string(),
                after: self.timeouts.connect,
            }
        } else if e.is_timeout() {
            self.first_byte_timeout()
        } else if e.is_builder() {
            ProviderError::Config {
                provider: self.provider.to_string(),
                detail,
            }
        } else {
            ProviderError::Network {
                provider: self.provider.to_string(),
                detail,
            }
        }
    }
}

/// A successful response whose body is read chunk by chunk as it arrives.
pub struct StreamingResponse {
    provider: Arc<str>,
    response: reqwest::Response,
    first_deadline: Option<Instant>,
    timeouts: HttpTimeouts,
    key: Option<ApiKey>,
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("provider", &self.provider)
            .field("status", &self.response.status().as_u16())
            .finish()
    }
}

impl StreamingResponse {
    /// The HTTP status (always 2xx).
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The next piece of the body as the network delivered it; `None` at the clean end.
    /// The first call is bounded by the first-byte deadline, later ones by the idle timeout.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ProviderError> {
        let (deadline, on_timeout) = match self.first_deadline.take() {
            Some(deadline) => (
                Some(deadline),
                ProviderError::FirstByteTimeout {
                    provider: self.provider.to_string(),
                    after: self.timeouts.first_byte,
                },
            ),
            None => (
                self.timeouts.idle.map(|idle| Instant::now() + idle),
                ProviderError::Closed {
                    provider: self.provider.to_string(),
                    code: None,
                    reason: format!(
                        "the response stalled: no data for {:?}",
                        self.timeouts.idle.unwrap_or_default()
                    ),
                },
            ),
        };
        let chunk = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                    Ok(chunk) => chunk,
                    Err(_) => return Err(on_timeout),
                }
            }
            None => self.response.chunk().await,
        };
        chunk.map_err(|e| ProviderError::Closed {
            provider: self.provider.to_string(),
            code: None,
            reason: format!(
                "the connection broke mid-response: {}",
                redact(self.key.as_ref(), &error_chain(&e))
            ),
        })
    }
}

impl StreamingResponse {
    /// Reads whatever is left of the body (within `limit`) and drops it, so the pooled
    /// connection can carry the next request instead of being closed mid-body.
    pub async fn drain(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Ok(Ok(Some(_))) = tokio::time::timeout_at(deadline, self.response.chunk()).await {
        }
    }
}

/// Maps a failure status to the typed error: 401/403 `Auth`, 429 `RateLimited` (but a 429
/// for an exhausted quota is a plain `Http`, since waiting will not help), others `Http`.
/// The body is cut to [`MAX_ERROR_BODY`] bytes and the key is scrubbed from it.
pub fn error_for_status(
    provider: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    key: Option<&ApiKey>,
) -> ProviderError {
    let provider = provider.to_string();
    let text = || redact(key, &truncate_body(body));
    match status {
        401 | 403 => ProviderError::Auth { provider, status },
        429 if !is_quota_exhausted(body) => ProviderError::RateLimited {
            provider,
            retry_after,
        },
        _ => ProviderError::Http {
            provider,
            status,
            body: text(),
        },
    }
}

fn is_quota_exhausted(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"insufficient_quota";
    body.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// How long the server asked us to wait: `retry-after-ms` (OpenAI), else `Retry-After` as
/// seconds or as an HTTP date relative to `now`. A date in the past means "now".
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    parse_retry_after(text("retry-after")?, now)
}

/// Parses one `Retry-After` value: delta-seconds (integer or decimal) or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The body cut to [`MAX_ERROR_BODY`] bytes on a character boundary, lossily decoded.
pub fn truncate_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= MAX_ERROR_BODY {
        return text.to_string();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn redact(key: Option<&ApiKey>, text: &str) -> String {
    match key {
        Some(key) => key.redact(text),
        None => text.to_string(),
    }
}

/// A reqwest error with its causes, without the URL (which the caller already knows).
fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = e.to_string();
    if let Some(url) = e.url() {
        out = out.replace(url.as_str(), "<url>");
    }
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Reads at most a few KiB of an error body, giving up at `deadline` (or after 2 s).
async fn read_error_body(mut response: reqwest::Response, deadline: Instant) -> Vec<u8> {
    let limit = Instant::now() + Duration::from_secs(2);
    let deadline = deadline
        .min(limit)
        .max(Instant::now() + Duration::from_millis(200));
    let mut body = Vec::new();
    while body.len() < 4 * MAX_ERROR_BODY {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        let key = ApiKey::new("sk-secret-key");
        let e = error_for_status("p", 401, None, b"{}", Some(&key));
        assert_eq!(
            e,
            ProviderError::Auth {
                provider: "p".into(),
                status: 401
            }
        );
        let e = error_for_status("p", 403, None, b"", None);
        assert_eq!(e.kind(), "auth");
        let e = error_for_status("p", 429, Some(Duration::from_secs(2)), b"{}", None);
        assert_eq!(
            e,
            ProviderError::RateLimited {
                provider: "p".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let quota = br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let e = error_for_status("p", 429, None, quota, None);
        assert!(matches!(e, ProviderError::Http { status: 429, .. }));
        assert!(!e.is_retryable());
        let e = error_for_status("p", 500, None, b"boom sk-secret-key", Some(&key));
        assert_eq!(
            e,
            ProviderError::Http {
                provider: "p".into(),
                status: 500,
                body: "boom ***".into()
            }
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn bodies_are_truncated_on_char_boundaries() {
        let long = "é".repeat(600);
        let t = truncate_body(long.as_bytes());
        assert!(t.len() <= MAX_ERROR_BODY + '…'.len_utf8());
        assert!(t.ends_with('…'));
        assert_eq!(truncate_body(b"  short \n"), "short");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("0.25", now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));

        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("9"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(9)));
        h.insert("retry-after-ms", HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(120)));
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn auth_headers_are_sensitive_and_debug_hides_keys() {
        let key = ApiKey::new("sk-abc-123");
        let (name, value) = Auth::Bearer(&key).header("p").unwrap().unwrap();
        assert_eq!(name, "authorization");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bearer sk-abc-123");
        assert!(!format!("{value:?}").contains("sk-abc"));
        let token = Auth::Header {
            name: "authorization",
            prefix: "Token ",
            key: &key,
        };
        assert_eq!(
            token.header("p").unwrap().unwrap().1.to_str().unwrap(),
            "Token sk-abc-123"
        );
        assert_eq!(format!("{token:?}"), "Header(authorization: ***)");
        assert!(Auth::None.header("p").unwrap().is_none());
        let bad = ApiKey::new("a\u{0}b-key");
        assert_eq!(Auth::Bearer(&bad).header("p").unwrap_err().kind(), "config");
    }

    #[test]
    fn extra_headers_are_validated() {
        let ok = header_map("p", &[("OpenAI-Project".into(), "proj_1".into())]).unwrap();
        assert_eq!(ok.get("openai-project").unwrap(), "proj_1");
        let err = header_map("p", &[("bad header".into(), "x".into())]).unwrap_err();
        assert_eq!(err.kind(), "config");
    }
}
