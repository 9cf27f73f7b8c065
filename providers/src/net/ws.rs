//! The one WebSocket connect helper: URL plus auth and extra headers, a timeout over TCP,
//! TLS (rustls with the ring provider and webpki roots) and the upgrade, and a rejected
//! upgrade mapped to `Auth`/`RateLimited`/`Http` like any HTTP error.
//!
//! It hands back the split sink and stream; adapters own their read and write loops.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use voxline_engine::provider::ProviderError;

pub use tokio_tungstenite::tungstenite::Message;

use super::http::{error_for_status, retry_after, Auth};
use super::secret::ApiKey;

/// A connected WebSocket, before splitting.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// The sending half of a connection.
pub type WsSink = SplitSink<WsStream, Message>;
/// The receiving half of a connection.
pub type WsSource = SplitStream<WsStream>;

/// What to connect to and how; built with chained setters.
#[derive(Debug)]
pub struct WsRequest<'a> {
    url: String,
    auth: Auth<'a>,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    connect_timeout: Duration,
}

impl<'a> WsRequest<'a> {
    /// A request for `url` (`ws://` or `wss://`) with no auth and a 5 s connect timeout.
    pub fn new(url: impl Into<String>) -> Self {
        WsRequest {
            url: url.into(),
            auth: Auth::None,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Sends the key on the upgrade request.
    pub fn auth(mut self, auth: Auth<'a>) -> Self {
        self.auth = auth;
        self
    }

    /// Adds a plain header to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); the server must accept one.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Bounds TCP connect, TLS and the upgrade together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// An open connection: the halves and the upgrade response's headers (request ids).
#[derive(Debug)]
pub struct WsConnection {
    /// Send messages here.
    pub sink: WsSink,
    /// Receive messages here.
    pub stream: WsSource,
    /// Headers of the `101 Switching Protocols` response.
    pub response_headers: HeaderMap,
}

/// Connects and upgrades. `provider` names the service in errors.
pub async fn connect(
    provider: &str,
    request: WsRequest<'_>,
) -> Result<WsConnection, ProviderError> {
    let key = request.auth.key().cloned();
    let config_error = |detail: String| ProviderError::Config {
        provider: provider.to_string(),
        detail,
    };
    let mut upgrade = request.url.as_str().into_client_request().map_err(|e| {
        config_error(format!(
            "invalid WebSocket URL: {}",
            redact(key.as_ref(), &e.to_string())
        ))
    })?;
    let headers = upgrade.headers_mut();
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| config_error(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| config_error(format!("invalid value for header {name}")))?;
        headers.append(name, value);
    }
    if let Some((name, value)) = request.auth.header(provider)? {
        headers.insert(name, value);
    }
    if !request.subprotocols.is_empty() {
        let mut value = HeaderValue::from_str(&request.subprotocols.join(", "))
            .map_err(|_| config_error("invalid subprotocol".into()))?;
        // Browser-style auth puts the key in a subprotocol.
        value.set_sensitive(true);
        headers.insert("sec-websocket-protocol", value);
    }

    let connector = if request.url.starts_with("wss:") {
        Some(Connector::Rustls(tls_config().map_err(config_error)?))
    } else {
        Some(Connector::Plain)
    };
    let handshake = tokio_tungstenite::connect_async_tls_with_config(
        upgrade,
        Some(WebSocketConfig::default()),
        true,
        connector,
    );
    let (stream, response) = match tokio::time::timeout(request.connect_timeout, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(map_error(provider, e, key.as_ref())),
        Err(_) => {
            return Err(ProviderError::ConnectTimeout {
                provider: provider.to_string(),
                after: request.connect_timeout,
            })
        }
    };
    let response_headers = response.headers().clone();
    let (sink, stream) = stream.split();
    Ok(WsConnection {
        sink,
        stream,
        response_headers,
    })
}

/// Maps a WebSocket error to the typed provider error; a rejected upgrade is mapped by
/// its HTTP status, like [`error_for_status`]. The key is scrubbed from any text.
pub fn map_error(provider: &str, error: WsError, key: Option<&ApiKey>) -> ProviderError {
    let p = provider.to_string();
    match error {
        WsError::Http(response) => {
            let retry = retry_after(response.headers(), SystemTime::now());
            let body = response.body().as_deref().unwrap_or_default();
            error_for_status(provider, response.status().as_u16(), retry, body, key)
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => ProviderError::Closed {
            provider: p,
            code: None,
            reason: "the connection was closed".into(),
        },
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ProviderError::Closed {
            provider: p,
            code: None,
            reason: "the connection was reset without a close frame".into(),
        },
        WsError::Io(e) if is_drop(e.kind()) => ProviderError::Closed {
            provider: p,
            code: None,
            reason: format!("the connection broke: {e}"),
        },
        WsError::Io(e) => ProviderError::Network {
            provider: p,
            detail: redact(key, &e.to_string()),
        },
        WsError::Tls(e) => ProviderError::Network {
            provider: p,
            detail: format!("TLS: {e}"),
        },
        WsError::Url(e) => ProviderError::Config {
            provider: p,
            detail: format!("invalid WebSocket URL: {}", redact(key, &e.to_string())),
        },
        WsError::HttpFormat(e) => ProviderError::Config {
            provider: p,
            detail: format!("invalid upgrade request: {e}"),
        },
        WsError::Protocol(e) => ProviderError::Protocol {
            provider: p,
            detail: e.to_string(),
        },
        WsError::Capacity(e) => ProviderError::Protocol {
            provider: p,
            detail: e.to_string(),
        },
        WsError::Utf8(e) => ProviderError::Protocol {
            provider: p,
            detail: format!("invalid UTF-8 in a text frame: {e}"),
        },
        other => ProviderError::Network {
            provider: p,
            detail: redact(key, &other.to_string()),
        },
    }
}

/// The error for a close frame (or its absence) that ended a stream early.
pub fn close_error(provider: &str, frame: Option<&CloseFrame>) -> ProviderError {
    match frame {
        Some(frame) => ProviderError::Closed {
            provider: provider.to_string(),
            code: Some(u16::from(frame.code)),
            reason: frame.reason.to_string(),
        },
        None => ProviderError::Closed {
            provider: provider.to_string(),
            code: None,
            reason: "closed without a close frame".into(),
        },
    }
}

/// Ends a connection politely: a normal (1000) close frame, then the sink is flushed and
/// closed, all bounded by `within`. Errors are ignored: the connection is over either way.
pub async fn close_normally(sink: &mut WsSink, within: Duration) {
    let polite = async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(within, polite).await;
}

/// [`close_normally`] from a background task, for sessions that are cancelled by dropping
/// their future (no `await` is possible in `Drop`): the server learns at once that the
/// client is gone instead of waiting for a TCP timeout. Outside a tokio runtime the sink
/// is simply dropped, which closes the TCP connection.
pub fn close_in_background(mut sink: WsSink, within: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move { close_normally(&mut sink, within).await });
}

fn is_drop(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

fn redact(key: Option<&ApiKey>, text: &str) -> String {
    key.map_or_else(|| text.to_string(), |k| k.redact(text))
}

/// The shared TLS client config: ring crypto, webpki roots, built once per process.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|e| format!("cannot set up TLS: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_config_builds_with_ring() {
        let config = tls_config().unwrap();
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn close_frames_become_closed_errors() {
        let frame = CloseFrame {
            code: CloseCode::Policy,
            reason: "input_timeout_exceeded".into(),
        };
        assert_eq!(
            close_error("el", Some(&frame)),
            ProviderError::Closed {
                provider: "el".into(),
                code: Some(1008),
                reason: "input_timeout_exceeded".into()
            }
        );
        assert_eq!(close_error("el", None).kind(), "closed");
    }

    #[test]
    fn a_drop_without_close_frame_is_a_closed_error() {
        let err = map_error(
            "p",
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            None,
        );
        assert_eq!(err.kind(), "closed");
        assert!(err.is_retryable());
    }
}
