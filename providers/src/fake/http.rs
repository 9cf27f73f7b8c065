//! A scripted HTTP/1.1 server on 127.0.0.1 for fake providers: records every request and
//! answers with a [`Reply`] whose body is sent in the exact pieces (and with the pauses)
//! the script gives, so clients meet real chunking, slow servers and dropped connections.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The full request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One step of a scripted response body.
#[derive(Clone, Debug, PartialEq)]
pub enum BodyPart {
    /// Send these bytes as one HTTP chunk.
    Bytes(Bytes),
    /// Pause before the next step.
    Delay(Duration),
    /// Drop the connection mid-body, without the terminating chunk.
    Abort,
}

/// A scripted response: status, headers, body pieces, and an optional pause before the
/// status line (a server slow to answer at all).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body, step by step.
    pub body: Vec<BodyPart>,
    /// Pause before sending the status line and headers.
    pub headers_delay: Option<Duration>,
}

impl Reply {
    /// A reply with this status, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            headers_delay: None,
        }
    }

    /// A JSON reply.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply::new(status)
            .header("content-type", "application/json")
            .bytes(value.to_string())
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends one body chunk.
    pub fn bytes(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body.push(BodyPart::Bytes(bytes.into()));
        self
    }

    /// Appends `data` cut into chunks of the given sizes, cycling through `sizes`
    /// (a size of 0 counts as 1).
    pub fn chunks(mut self, data: &[u8], sizes: &[usize]) -> Self {
        self.body
            .extend(split_sizes(data, sizes).into_iter().map(BodyPart::Bytes));
        self
    }

    /// Appends a pause.
    pub fn delay(mut self, pause: Duration) -> Self {
        self.body.push(BodyPart::Delay(pause));
        self
    }

    /// Ends the body by dropping the connection.
    pub fn abort(mut self) -> Self {
        self.body.push(BodyPart::Abort);
        self
    }

    /// Waits this long before answering at all.
    pub fn headers_delay(mut self, pause: Duration) -> Self {
        self.headers_delay = Some(pause);
        self
    }
}

/// Cuts `data` into pieces whose sizes cycle through `sizes` (empty `sizes`: one piece).
pub fn split_sizes(data: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    if sizes.is_empty() {
        return vec![Bytes::copy_from_slice(data)];
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].max(1).min(rest.len());
        out.push(Bytes::copy_from_slice(&rest[..n]));
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// Decides the reply for each request.
pub type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// A running fake HTTP server; stops (with all its connections) when dropped.
pub struct FakeHttpServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeHttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeHttpServer {
    /// Binds 127.0.0.1 on a free port and serves `handler` until dropped.
    pub async fn start(
        handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let task = tokio::spawn(accept_loop(listener, handler, requests.clone()));
        Ok(FakeHttpServer {
            addr,
            requests,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Handler,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) {
    // Owning the connections here means aborting this task closes them all.
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
            let service = service_fn(move |req| serve(req, handler.clone(), requests.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>;

async fn serve(
    req: Request<Incoming>,
    handler: Handler,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
) -> Result<Response<StreamBody<ReplyStream>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    if let Ok(mut r) = requests.lock() {
        r.push(recorded.clone());
    }
    let reply = handler(&recorded);
    if let Some(pause) = reply.headers_delay {
        tokio::time::sleep(pause).await;
    }
    Ok(into_response(reply))
}

fn into_response(reply: Reply) -> Response<StreamBody<ReplyStream>> {
    let stream: ReplyStream = Box::pin(futures_util::stream::unfold(
        reply.body.into_iter(),
        |mut parts| async move {
            loop {
                match parts.next()? {
                    BodyPart::Bytes(b) => return Some((Ok(Frame::data(b)), parts)),
                    BodyPart::Delay(d) => tokio::time::sleep(d).await,
                    BodyPart::Abort => {
                        // Let the connection flush what was sent before breaking it.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let err =
                            io::Error::new(io::ErrorKind::ConnectionAborted, "scripted abort");
                        return Some((Err(err), parts));
                    }
                }
            }
        },
    ));
    let mut response = Response::new(StreamBody::new(stream));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes_cycles_and_covers_everything() {
        let parts = split_sizes(b"abcdefghij", &[1, 3]);
        let sizes: Vec<_> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(sizes, vec![1, 3, 1, 3, 1, 1]);
        assert_eq!(parts.concat(), b"abcdefghij");
        assert_eq!(split_sizes(b"ab", &[]).len(), 1);
    }
}
