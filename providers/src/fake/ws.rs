//! A scripted WebSocket server on 127.0.0.1 for fake providers: records each upgrade
//! request, then either rejects it with an HTTP status or hands the socket to a script.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, StatusCode};
use tokio_tungstenite::WebSocketStream;
use voxline_engine::provider::BoxFuture;

use super::http::RecordedRequest;

/// The server side of one accepted connection.
pub type ServerSocket = WebSocketStream<TcpStream>;

/// Runs one accepted connection to its end.
pub type WsSession = Box<dyn FnOnce(ServerSocket) -> BoxFuture<'static, ()> + Send>;

/// What the fake does with an upgrade request.
pub enum WsReply {
    /// Refuse the upgrade with this status, headers and body (e.g. 401, 429 + Retry-After).
    Reject {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
        /// Response body.
        body: String,
    },
    /// Accept and run the session; the first offered subprotocol, if any, is echoed.
    Accept(WsSession),
}

impl WsReply {
    /// Accepts and runs `session` on the socket.
    pub fn accept<F, Fut>(session: F) -> Self
    where
        F: FnOnce(ServerSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        WsReply::Accept(Box::new(move |socket| Box::pin(session(socket))))
    }

    /// Rejects with a status and a body.
    pub fn reject(status: u16, body: impl Into<String>) -> Self {
        WsReply::Reject {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// A running fake WebSocket server; stops (with its connections) when dropped.
pub struct FakeWsServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeWsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

type WsHandler = Arc<dyn Fn(&RecordedRequest) -> WsReply + Send + Sync>;

impl FakeWsServer {
    /// Binds 127.0.0.1 on a free port and serves `handler` until dropped.
    pub async fn start(
        handler: impl Fn(&RecordedRequest) -> WsReply + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, Arc::new(handler), requests.clone()));
        Ok(FakeWsServer {
            addr,
            requests,
            task,
        })
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Every upgrade request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeWsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// The handshake callback's error type is tungstenite's full HTTP response.
#[allow(clippy::result_large_err)]
async fn accept_loop(
    listener: TcpListener,
    handler: WsHandler,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => continue,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let handler = handler.clone();
        let requests = requests.clone();
        connections.spawn(async move {
            let mut session = None;
            let callback = |req: &Request, mut resp: Response| {
                let recorded = record(req);
                if let Ok(mut r) = requests.lock() {
                    r.push(recorded.clone());
                }
                match handler(&recorded) {
                    WsReply::Reject {
                        status,
                        headers,
                        body,
                    } => Err(reject(status, headers, body)),
                    WsReply::Accept(run) => {
                        session = Some(run);
                        if let Some(first) = recorded
                            .header("sec-websocket-protocol")
                            .and_then(|p| p.split(',').next())
                            .and_then(|p| HeaderValue::from_str(p.trim()).ok())
                        {
                            resp.headers_mut().insert("sec-websocket-protocol", first);
                        }
                        Ok(resp)
                    }
                }
            };
            let accepted = tokio_tungstenite::accept_hdr_async(stream, callback).await;
            if let (Ok(socket), Some(run)) = (accepted, session) {
                run(socket).await;
            }
        });
    }
}

fn record(req: &Request) -> RecordedRequest {
    RecordedRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Bytes::new(),
    }
}

fn reject(status: u16, headers: Vec<(String, String)>, body: String) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}
