//! The shared plumbing against real sockets on 127.0.0.1: the HTTP client's status,
//! timeout and drop mapping, and the WebSocket helper's upgrade, auth and rejections.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::header::HeaderMap;
use serde_json::json;
use voxline_engine::provider::ProviderError;
use voxline_providers::fake::http::{FakeHttpServer, Reply};
use voxline_providers::fake::ws::{FakeWsServer, WsReply};
use voxline_providers::net::http::{Auth, HttpClient, HttpTimeouts};
use voxline_providers::net::ws::{self, Message, WsRequest};
use voxline_providers::net::ApiKey;

const KEY: &str = "sk-plumbing-test-key-42";

fn timeouts(first_byte_ms: u64, idle_ms: u64) -> HttpTimeouts {
    HttpTimeouts {
        connect: Duration::from_secs(2),
        first_byte: Duration::from_millis(first_byte_ms),
        idle: Some(Duration::from_millis(idle_ms)),
    }
}

async fn post(server: &FakeHttpServer, t: HttpTimeouts) -> Result<Vec<u8>, ProviderError> {
    let client = HttpClient::new("test", t).unwrap();
    let key = ApiKey::new(KEY);
    let mut resp = client
        .post_json(
            &format!("{}/x", server.url()),
            Auth::Bearer(&key),
            &HeaderMap::new(),
            &json!({"a": 1}),
        )
        .await?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.next_chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[tokio::test]
async fn http_streams_chunks_and_sends_auth_and_json() {
    let server = FakeHttpServer::start(|_| Reply::new(200).chunks(b"hello world", &[3]))
        .await
        .unwrap();
    let body = post(&server, timeouts(2000, 2000)).await.unwrap();
    assert_eq!(body, b"hello world");
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/x");
    assert_eq!(req.header("authorization"), Some(&*format!("Bearer {KEY}")));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("user-agent").unwrap().starts_with("voxline/"));
    assert_eq!(req.json(), Some(json!({"a": 1})));
}

#[tokio::test]
async fn http_statuses_map_to_typed_errors() {
    let cases = [
        (Reply::new(401), "auth"),
        (Reply::new(403), "auth"),
        (Reply::new(429).header("retry-after", "2"), "rate-limited"),
        (Reply::new(503).bytes("overloaded"), "http"),
        (Reply::new(404), "http"),
    ];
    for (reply, kind) in cases {
        let reply2 = reply.clone();
        let server = FakeHttpServer::start(move |_| reply2.clone())
            .await
            .unwrap();
        let err = post(&server, timeouts(2000, 2000)).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        if let ProviderError::RateLimited { retry_after, .. } = &err {
            assert_eq!(*retry_after, Some(Duration::from_secs(2)));
        }
        if let ProviderError::Http {
            status: 503, body, ..
        } = &err
        {
            assert_eq!(body, "overloaded");
        }
    }
}

#[tokio::test]
async fn echoed_keys_are_scrubbed_from_error_bodies() {
    let server = FakeHttpServer::start(|req| {
        let auth = req.header("authorization").unwrap_or_default().to_string();
        Reply::new(500).bytes(format!("bad request with {auth}"))
    })
    .await
    .unwrap();
    let err = post(&server, timeouts(2000, 2000)).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("Bearer ***"), "{text}");
}

#[tokio::test]
async fn slow_headers_and_slow_first_byte_hit_the_first_byte_timeout() {
    let server = FakeHttpServer::start(|_| {
        Reply::new(200)
            .headers_delay(Duration::from_millis(300))
            .bytes("late")
    })
    .await
    .unwrap();
    let err = post(&server, timeouts(80, 2000)).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::FirstByteTimeout { .. }),
        "{err}"
    );

    let server = FakeHttpServer::start(|_| {
        Reply::new(200)
            .delay(Duration::from_millis(300))
            .bytes("late")
    })
    .await
    .unwrap();
    let err = post(&server, timeouts(80, 2000)).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::FirstByteTimeout { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn stalls_and_drops_mid_body_are_closed_errors() {
    let server = FakeHttpServer::start(|_| {
        Reply::new(200)
            .bytes("a")
            .delay(Duration::from_millis(300))
            .bytes("b")
    })
    .await
    .unwrap();
    let err = post(&server, timeouts(2000, 60)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Closed { .. }), "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");

    let server = FakeHttpServer::start(|_| Reply::new(200).bytes("partial").abort())
        .await
        .unwrap();
    let err = post(&server, timeouts(2000, 2000)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Closed { .. }), "{err}");
}

#[tokio::test]
async fn refused_connections_are_network_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = HttpClient::new("test", timeouts(2000, 2000)).unwrap();
    let err = client
        .post_json(
            &format!("http://{addr}/x"),
            Auth::None,
            &HeaderMap::new(),
            &json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "network", "{err}");
}

#[tokio::test]
async fn ws_connects_with_auth_headers_and_exchanges_messages() {
    let server = FakeWsServer::start(|_| {
        WsReply::accept(|mut socket| async move {
            while let Some(Ok(msg)) = socket.next().await {
                if msg.is_text() && socket.send(msg).await.is_err() {
                    break;
                }
            }
        })
    })
    .await
    .unwrap();
    let key = ApiKey::new(KEY);
    let request = WsRequest::new(format!("{}/v1/listen?model=nova-3", server.url()))
        .auth(Auth::Header {
            name: "authorization",
            prefix: "Token ",
            key: &key,
        })
        .header("x-extra", "1")
        .connect_timeout(Duration::from_secs(2));
    let mut conn = ws::connect("deepgram", request).await.unwrap();
    conn.sink.send(Message::text("ping")).await.unwrap();
    let echoed = conn.stream.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("ping"));
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/listen");
    assert_eq!(req.query.as_deref(), Some("model=nova-3"));
    assert_eq!(req.header("authorization"), Some(&*format!("Token {KEY}")));
    assert_eq!(req.header("x-extra"), Some("1"));
}

#[tokio::test]
async fn ws_subprotocols_are_offered() {
    let server = FakeWsServer::start(|_| WsReply::accept(|_socket| async {}))
        .await
        .unwrap();
    let request = WsRequest::new(server.url())
        .subprotocol("realtime")
        .subprotocol("openai-insecure-api-key.x");
    ws::connect("openai", request).await.unwrap();
    assert_eq!(
        server.requests()[0].header("sec-websocket-protocol"),
        Some("realtime, openai-insecure-api-key.x")
    );
}

#[tokio::test]
async fn ws_rejected_upgrades_map_like_http_errors() {
    let cases = [
        (
            WsReply::reject(401, "{\"err_code\":\"INVALID_AUTH\"}"),
            "auth",
        ),
        (
            WsReply::Reject {
                status: 429,
                headers: vec![("retry-after".into(), "1".into())],
                body: String::new(),
            },
            "rate-limited",
        ),
        (WsReply::reject(500, "oops"), "http"),
    ];
    for (reply, kind) in cases {
        let slot = std::sync::Mutex::new(Some(reply));
        let server = FakeWsServer::start(move |_| {
            slot.lock()
                .unwrap()
                .take()
                .unwrap_or_else(|| WsReply::reject(500, "used"))
        })
        .await
        .unwrap();
        let key = ApiKey::new(KEY);
        let err = ws::connect("p", WsRequest::new(server.url()).auth(Auth::Bearer(&key)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        if let ProviderError::RateLimited { retry_after, .. } = &err {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
        }
    }
}

#[tokio::test]
async fn ws_handshake_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let request =
        WsRequest::new(format!("ws://{addr}/")).connect_timeout(Duration::from_millis(100));
    let err = ws::connect("p", request).await.unwrap_err();
    assert!(matches!(err, ProviderError::ConnectTimeout { .. }), "{err}");
    hold.abort();
}
