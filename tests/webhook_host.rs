//! The `webhook_host` example against a small local HTTP server: the assistant-request reply
//! shapes the call, every webhook arrives signed (checked with `verify`), a failed webhook is
//! retried, the tool endpoint's reply reaches the model, and control commands from "stdin" get
//! the platform's replies.
//!
//! Providers: the real offline ones (PocketSphinx with the assistant's domain model hears the
//! repository's caller WAVs, the scripted agent, espeak-ng), as a host without keys gets them.

#[allow(dead_code)]
#[path = "../examples/webhook_host.rs"]
mod webhook_host;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use voxline::engine::call::{CallEvent, EndReason};
use voxline::engine::platform::signing::{header, DEFAULT_MAX_AGE_SECS};
use voxline::engine::platform::{verify, WebhookBody};
use voxline::providers::fake::http::{FakeHttpServer, RecordedRequest, Reply};

const SECRET: &str = "whsec-example-test";
const GREETING: &str = "Hello from the host's own greeting, Bright Smile Dental here.";

fn answer(request: &RecordedRequest, status_failures: &AtomicUsize) -> Reply {
    let body = request.json().unwrap_or(Value::Null);
    let kind = body["message"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (request.path.as_str(), kind.as_str()) {
        // A partial transient assistant: the number's assistant with another greeting and metadata.
        ("/assistant", "assistant-request") => Reply::json(
            200,
            &json!({"assistant": {"first_message": GREETING, "metadata": {"crm_id": "c-42"}}}),
        ),
        // The first status-update fails once: the host must retry it.
        ("/webhooks", "status-update") if status_failures.fetch_add(1, Ordering::SeqCst) == 0 => {
            Reply::json(503, &json!({"error": "busy"}))
        }
        ("/webhooks", _) => Reply::json(200, &json!({})),
        ("/tools", "tool-calls") => {
            let id = body["message"]["tool_call_list"][0]["id"].clone();
            Reply::json(
                200,
                &json!({"results": [{"tool_call_id": id, "result": {"confirmed": true, "reference": "BSD-TEST"}}]}),
            )
        }
        _ => Reply::json(404, &json!({"error": "unexpected"})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_signs_retries_and_answers_tools_over_http() {
    let failures = Arc::new(AtomicUsize::new(0));
    let server = {
        let failures = failures.clone();
        FakeHttpServer::start(move |r| answer(r, &failures))
            .await
            .expect("start the HTTP server")
    };
    let dir = std::env::temp_dir().join(format!("voxline-webhook-host-{}", std::process::id()));
    let args = webhook_host::Args {
        assistant_url: Some(format!("{}/assistant", server.url())),
        webhook_url: Some(format!("{}/webhooks", server.url())),
        webhook_secret: Some(SECRET.to_string()),
        tool_url: Some(format!("{}/tools", server.url())),
        out: dir.clone(),
        ..webhook_host::Args::default()
    };
    // Call control from "standard input": one good command, one the platform would refuse.
    let (lines, commands) = mpsc::unbounded_channel();
    let inject = r#"{"type": "inject-context", "content": "The caller is a returning patient.", "trigger_response": false}"#;
    lines.send(inject.to_string()).expect("queue a command");
    lines
        .send(r#"{"type": "dance"}"#.to_string())
        .expect("queue a command");
    let run = webhook_host::run(&args, voxline::offline_standins(), commands)
        .await
        .expect("the host runs the call");
    drop(lines);

    let call = run.call.expect("the host accepted the call");
    assert_eq!(call.outcome.end_reason, EndReason::AssistantEnded);
    // The assistant-request reply changed the greeting.
    let report = &call.followed.report.report;
    assert_eq!(report.messages[0].content, GREETING);

    // Every request: a POST of a platform body, its event in the header, signed with the secret.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let requests = server.requests();
    let mut seen = Vec::new();
    for r in &requests {
        assert_eq!(r.method, "POST");
        let body = WebhookBody::from_slice(&r.body).expect("a platform webhook body");
        assert_eq!(r.header(header::EVENT), Some(body.event_name()));
        assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
        let signature = r.header(header::SIGNATURE).expect("signed");
        let timestamp = r.header(header::TIMESTAMP).expect("timestamped");
        verify(
            SECRET.as_bytes(),
            signature,
            timestamp,
            &r.body,
            now,
            DEFAULT_MAX_AGE_SECS,
        )
        .unwrap_or_else(|e| panic!("{} {}: {e}", r.path, body.event_name()));
        assert!(
            verify(b"another secret", signature, timestamp, &r.body, now, 300).is_err(),
            "the signature depends on the secret"
        );
        seen.push((r.path.as_str(), body.event_name()));
    }
    assert_eq!(
        seen,
        [
            ("/assistant", "assistant-request"),
            ("/webhooks", "status-update"),
            ("/webhooks", "status-update"),
            ("/tools", "tool-calls"),
            ("/webhooks", "status-update"),
            ("/webhooks", "end-of-call-report"),
        ],
        "the first status-update is retried after the 503"
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        3,
        "three status-update posts"
    );
    let deliveries: Vec<(&str, bool)> = run
        .deliveries
        .iter()
        .map(|d| (d.event, d.result.is_ok()))
        .collect();
    assert_eq!(
        deliveries,
        [
            ("status-update", true),
            ("status-update", true),
            ("end-of-call-report", true)
        ]
    );
    // Later webhooks echo the metadata the assistant-request reply set.
    let eocr = requests
        .last()
        .and_then(RecordedRequest::json)
        .expect("JSON");
    assert_eq!(eocr["message"]["assistant"]["metadata"]["crm_id"], "c-42");

    // The tool endpoint's result reached the call.
    let events = std::fs::read_to_string(dir.join("events.jsonl")).expect("events.jsonl");
    let result = events
        .lines()
        .filter_map(|l| serde_json::from_str::<voxline::engine::call::EventRecord>(l).ok())
        .find_map(|r| match r.event {
            CallEvent::ToolResult { result, .. } => Some(result),
            _ => None,
        })
        .expect("a tool result");
    assert_eq!(result, json!({"confirmed": true, "reference": "BSD-TEST"}));

    // The control commands got the platform's replies.
    let replies: Vec<(String, bool)> = run
        .control
        .iter()
        .map(|(line, reply)| (line.clone(), reply.success))
        .collect();
    assert_eq!(
        replies,
        [
            (inject.to_string(), true),
            (r#"{"type": "dance"}"#.to_string(), false)
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
