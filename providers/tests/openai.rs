//! The OpenAI chat and speech adapters against the fake OpenAI server on 127.0.0.1:
//! exact requests, streamed text, tool-call assembly, usage, and every scripted fault
//! ending in its documented typed error with what arrived before it delivered.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use voxline_engine::codecs::SampleRate;
use voxline_engine::provider::{
    ChatMessage, LlmEvent, LlmProvider, LlmRequest, ProviderError, Role, TokenUsage,
    ToolCallRequest, ToolSpec, TtsEvent, TtsInput, TtsParams, TtsProvider,
};
use voxline_providers::fake::http::Reply;
use voxline_providers::fake::openai::{
    speech_samples, ChatReply, ChatStream, FakeOpenAi, PcmStream, SpeechReply, FAKE_OPENAI_KEY,
};
use voxline_providers::net::backoff::{Backoff, RecordingSleeper, SharedSleeper};
use voxline_providers::net::ApiKey;
use voxline_providers::openai_llm::{MaxTokensField, OpenAiLlm, OpenAiLlmConfig};
use voxline_providers::openai_tts::{OpenAiTts, OpenAiTtsConfig};

// ---------------------------------------------------------------------------------------------
// Helpers

fn llm_config(fake: &FakeOpenAi) -> OpenAiLlmConfig {
    let mut config = OpenAiLlmConfig::openai("gpt-4o-mini");
    config.base_url = Some(fake.base_url());
    config.api_key = Some(ApiKey::new(fake.api_key()));
    config.first_byte_timeout = Duration::from_secs(5);
    config.backoff = Backoff {
        seed: Some(1),
        ..Backoff::default()
    };
    config
}

fn llm(fake: &FakeOpenAi) -> (OpenAiLlm, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let llm = OpenAiLlm::with_env(llm_config(fake), &HashMap::<String, String>::new())
        .unwrap()
        .with_sleeper(SharedSleeper::new(sleeper.clone()));
    (llm, sleeper)
}

fn simple_request() -> LlmRequest {
    LlmRequest {
        messages: vec![
            ChatMessage::text(Role::System, "You are a phone receptionist."),
            ChatMessage::text(Role::User, "Hi"),
        ],
        tools: Vec::new(),
        temperature: None,
        max_tokens: None,
    }
}

/// Runs one completion; returns everything emitted and the outcome.
async fn run_llm(
    llm: &OpenAiLlm,
    request: LlmRequest,
) -> (Vec<LlmEvent>, Result<(), ProviderError>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = llm.stream(request, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (events, result)
}

fn text_of(events: &[LlmEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn tool_calls(events: &[LlmEvent]) -> Vec<ToolCallRequest> {
    events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::ToolCall(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn tts_config(fake: &FakeOpenAi) -> OpenAiTtsConfig {
    let mut config = OpenAiTtsConfig::new("gpt-4o-mini-tts", "marin");
    config.base_url = Some(fake.base_url());
    config.api_key = Some(ApiKey::new(fake.api_key()));
    config.backoff = Backoff {
        seed: Some(1),
        ..Backoff::default()
    };
    config
}

fn tts_from(config: OpenAiTtsConfig) -> (OpenAiTts, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let tts = OpenAiTts::with_env(config, &HashMap::<String, String>::new())
        .unwrap()
        .with_sleeper(SharedSleeper::new(sleeper.clone()));
    (tts, sleeper)
}

/// Synthesises `texts` sent up front, then End; returns the events and the outcome.
async fn run_tts(tts: &OpenAiTts, texts: &[&str]) -> (Vec<TtsEvent>, Result<(), ProviderError>) {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for t in texts {
        in_tx.send(TtsInput::Text(t.to_string())).unwrap();
    }
    in_tx.send(TtsInput::End).unwrap();
    let params = TtsParams {
        preferred_rate: SampleRate::Hz8000,
    };
    let result = tts.synthesize(params, in_rx, tx).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (events, result)
}

fn samples_of(events: &[TtsEvent]) -> Vec<i16> {
    let mut out = Vec::new();
    for e in events {
        if let TtsEvent::Audio { rate, samples } = e {
            assert_eq!(*rate, SampleRate::Hz24000);
            out.extend_from_slice(samples);
        }
    }
    out
}

fn assert_no_key(text: &str) {
    assert!(!text.contains(FAKE_OPENAI_KEY), "key leaked: {text}");
}

// ---------------------------------------------------------------------------------------------
// Chat completions: streaming

#[tokio::test]
async fn happy_path_text() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::text_reply(&["Hel", "lo", ", how can I help?"]));
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(
        events,
        vec![
            LlmEvent::FirstByte,
            LlmEvent::TextDelta("Hel".into()),
            LlmEvent::TextDelta("lo".into()),
            LlmEvent::TextDelta(", how can I help?".into()),
            LlmEvent::Usage(TokenUsage {
                prompt_tokens: 12,
                completion_tokens: 3
            }),
            LlmEvent::Done,
        ]
    );
}

#[tokio::test]
async fn any_chunking_crlf_comments_and_null_content_give_the_same_text() {
    let fake = FakeOpenAi::start().await.unwrap();
    let script = || {
        ChatStream::new()
            .comment("keep-alive")
            .role()
            .null_content()
            .text("Grüße, ")
            .comment("OPENROUTER PROCESSING")
            .text("€ accepted.")
            .text("")
            .finish("stop")
            .usage(5, 4)
            .done()
    };
    fake.push_chat(script().bytewise());
    fake.push_chat(script().split_sizes(&[7, 1, 13]).crlf());
    fake.push_chat(script().split_sizes(&[4096]));
    let (llm, _) = llm(&fake);
    for _ in 0..3 {
        let (events, result) = run_llm(&llm, simple_request()).await;
        result.unwrap();
        assert_eq!(text_of(&events), "Grüße, € accepted.");
        assert_eq!(events.first(), Some(&LlmEvent::FirstByte));
        assert_eq!(events.last(), Some(&LlmEvent::Done));
    }
}

#[tokio::test]
async fn the_exact_request_is_sent() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::text_reply(&["ok"]));
    let mut config = llm_config(&fake);
    config.extra_headers = vec![("OpenAI-Project".into(), "proj_42".into())];
    config.temperature = Some(0.2);
    config.max_tokens = Some(300);
    let llm = OpenAiLlm::with_env(config, &HashMap::<String, String>::new()).unwrap();
    let request = LlmRequest {
        messages: vec![
            ChatMessage::text(Role::System, "You are a phone receptionist."),
            ChatMessage::text(Role::User, "Book me for 3pm"),
            ChatMessage {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCallRequest {
                    id: "call_abc".into(),
                    name: "book".into(),
                    arguments: "{\"time\":\"15:00\"}".into(),
                }],
                tool_call_id: None,
            },
            ChatMessage {
                role: Role::Tool,
                content: "{\"ok\":true}".into(),
                tool_calls: Vec::new(),
                tool_call_id: Some("call_abc".into()),
            },
        ],
        tools: vec![ToolSpec {
            name: "book".into(),
            description: "Book a slot".into(),
            parameters: json!({"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}),
        }],
        temperature: Some(0.6),
        max_tokens: None,
    };
    let (_, result) = run_llm(&llm, request).await;
    result.unwrap();

    let sent = fake.chat_requests();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(
        req.header("authorization"),
        Some(&*format!("Bearer {FAKE_OPENAI_KEY}"))
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("openai-project"), Some("proj_42"));
    let body = req.json().unwrap();
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "You are a phone receptionist."},
                {"role": "user", "content": "Book me for 3pm"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_abc", "type": "function",
                     "function": {"name": "book", "arguments": "{\"time\":\"15:00\"}"}}]},
                {"role": "tool", "content": "{\"ok\":true}", "tool_call_id": "call_abc"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "book", "description": "Book a slot",
                "parameters": {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}
            }}],
            "temperature": 0.6,
            "max_completion_tokens": 300
        })
    );
}

#[tokio::test]
async fn usage_can_be_switched_off_and_max_tokens_named_for_compatible_servers() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::new().role().text("hi").finish("stop").done());
    let mut config = OpenAiLlmConfig::compatible("vllm", fake.base_url(), "qwen");
    config.api_key = Some(ApiKey::new(fake.api_key()));
    config.include_usage = false;
    config.max_tokens = Some(50);
    assert_eq!(config.max_tokens_field, MaxTokensField::MaxTokens);
    let llm = OpenAiLlm::new(config).unwrap();
    assert_eq!(llm.name(), "vllm");
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(
        events,
        vec![
            LlmEvent::FirstByte,
            LlmEvent::TextDelta("hi".into()),
            LlmEvent::Done
        ]
    );
    let body = fake.chat_requests()[0].json().unwrap();
    assert!(body.get("stream_options").is_none(), "{body}");
    assert_eq!(body["max_tokens"], 50);
    assert!(body.get("max_completion_tokens").is_none());
    assert!(body.get("tools").is_none());
}

// ---------------------------------------------------------------------------------------------
// Chat completions: tool calls

#[tokio::test]
async fn tool_call_fragments_split_mid_argument_assemble_into_valid_json() {
    let fake = FakeOpenAi::start().await.unwrap();
    // The arguments text carries a \u escape; 3-character pieces cut it (and keys) apart.
    let args = r#"{"city":"M\u00fcnchen","time":"15:00","party":4}"#;
    fake.push_chat(
        ChatStream::new()
            .role()
            .null_content()
            .tool_call_fragmented(0, "call_vg1", "book_table", args, 3)
            .finish("tool_calls")
            .usage(80, 20)
            .done()
            .bytewise(),
    );
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    let calls = tool_calls(&events);
    assert_eq!(
        calls,
        vec![ToolCallRequest {
            id: "call_vg1".into(),
            name: "book_table".into(),
            arguments: args.into(),
        }]
    );
    let parsed: Value = serde_json::from_str(&calls[0].arguments).unwrap();
    assert_eq!(parsed["city"], "München");
    assert_eq!(parsed["party"], 4);
    assert_eq!(text_of(&events), "");
    let n = events.len();
    assert_eq!(
        events[n - 2],
        LlmEvent::Usage(TokenUsage {
            prompt_tokens: 80,
            completion_tokens: 20
        })
    );
    assert_eq!(events[n - 1], LlmEvent::Done);
}

#[tokio::test]
async fn two_parallel_tool_calls_assemble_by_index() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(
        ChatStream::new()
            .role()
            .tool_call_start(0, "call_add", "add")
            .tool_call_args(0, "{\"a\"")
            .tool_call_start(1, "call_mul", "multiply")
            .tool_call_args(1, "{\"a\": 3, ")
            .tool_call_args(0, ": 2, \"b\": 5}")
            .tool_call_args(1, "\"b\": 4}")
            .finish("tool_calls")
            .done(),
    );
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(
        tool_calls(&events),
        vec![
            ToolCallRequest {
                id: "call_add".into(),
                name: "add".into(),
                arguments: "{\"a\": 2, \"b\": 5}".into()
            },
            ToolCallRequest {
                id: "call_mul".into(),
                name: "multiply".into(),
                arguments: "{\"a\": 3, \"b\": 4}".into()
            },
        ]
    );
    assert_eq!(events.last(), Some(&LlmEvent::Done));
}

#[tokio::test]
async fn whole_call_chunks_with_text_count_even_when_finish_says_stop() {
    let fake = FakeOpenAi::start().await.unwrap();
    // Groq style: text, then the complete call in one chunk, and finish_reason "stop".
    fake.push_chat(
        ChatStream::new()
            .role()
            .text("Let me check. ")
            .tool_call_whole(0, "functions.lookup:0", "lookup", "{\"id\":7}")
            .finish("stop")
            .usage(30, 9)
            .done(),
    );
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(text_of(&events), "Let me check. ");
    assert_eq!(
        tool_calls(&events),
        vec![ToolCallRequest {
            id: "functions.lookup:0".into(),
            name: "lookup".into(),
            arguments: "{\"id\":7}".into()
        }]
    );
}

#[tokio::test]
async fn calls_without_index_or_finish_reason_still_assemble() {
    let fake = FakeOpenAi::start().await.unwrap();
    // No `index`, no finish_reason (xAI leaves it out), an empty-arguments call.
    fake.push_chat(
        ChatStream::new()
            .delta_raw(json!({"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "hang_up", "arguments": ""}}]}))
            .delta_raw(json!({"tool_calls": [
                {"id": "call_2", "type": "function", "function": {"name": "note", "arguments": "{\"t\":"}}]}))
            .delta_raw(json!({"tool_calls": [{"function": {"arguments": "\"x\"}"}}]}))
            .done(),
    );
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(
        tool_calls(&events),
        vec![
            ToolCallRequest {
                id: "call_1".into(),
                name: "hang_up".into(),
                arguments: "{}".into()
            },
            ToolCallRequest {
                id: "call_2".into(),
                name: "note".into(),
                arguments: "{\"t\":\"x\"}".into()
            },
        ]
    );
}

#[tokio::test]
async fn usage_on_the_finish_chunk_and_unknown_fields_are_tolerated() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(
        ChatStream::new()
            .chunk_raw(json!({"id": "x", "x_groq": {"id": "req_1"}, "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "Hi", "reasoning_content": "hmm"}}]}))
            .chunk_raw(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "queue_time": 0.01},
                "timings": {"predicted_ms": 4.2}}))
            .chunk_raw(json!({"choices": [], "usage": {}}))
            .done(),
    );
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(
        events,
        vec![
            LlmEvent::FirstByte,
            LlmEvent::TextDelta("Hi".into()),
            LlmEvent::Usage(TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 1
            }),
            LlmEvent::Done
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Chat completions: faults

#[tokio::test]
async fn unauthorized_is_an_auth_error_without_events() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatReply::unauthorized());
    let (llm, sleeper) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(
        result,
        Err(ProviderError::Auth {
            provider: "openai".into(),
            status: 401
        })
    );
    assert!(events.is_empty());
    assert!(sleeper.waits().is_empty(), "auth errors are not retried");
}

#[tokio::test]
async fn a_wrong_key_is_rejected_by_the_fake() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut config = llm_config(&fake);
    config.api_key = Some(ApiKey::new("sk-wrong-key-000000"));
    let llm = OpenAiLlm::with_env(config, &HashMap::<String, String>::new()).unwrap();
    let (_, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(result.unwrap_err().kind(), "auth");
}

#[tokio::test]
async fn rate_limit_then_success_honours_retry_after() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatReply::rate_limited("2"));
    fake.push_chat(ChatReply::rate_limited("0.05"));
    fake.push_chat(ChatStream::text_reply(&["after the wait"]));
    let (llm, sleeper) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(text_of(&events), "after the wait");
    assert_eq!(
        sleeper.waits(),
        vec![Duration::from_secs(2), Duration::from_millis(50)]
    );
    assert_eq!(fake.chat_requests().len(), 3);
    assert_eq!(
        events.iter().filter(|e| **e == LlmEvent::FirstByte).count(),
        1
    );
}

#[tokio::test]
async fn persistent_rate_limits_give_up_after_max_attempts() {
    let fake = FakeOpenAi::start().await.unwrap();
    for _ in 0..3 {
        fake.push_chat(ChatReply::rate_limited("1"));
    }
    let (llm, sleeper) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(
        result,
        Err(ProviderError::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_secs(1))
        })
    );
    assert!(events.is_empty());
    assert_eq!(sleeper.waits().len(), 2);
    assert_eq!(fake.chat_requests().len(), 3);
}

#[tokio::test]
async fn exhausted_quota_is_not_retried() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatReply::error(
        429,
        "insufficient_quota",
        Some("insufficient_quota"),
        "You exceeded your current quota.",
    ));
    let (llm, sleeper) = llm(&fake);
    let (_, result) = run_llm(&llm, simple_request()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Http { status: 429, body, .. } if body.contains("quota")),
        "{err}"
    );
    assert!(sleeper.waits().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatReply::server_error());
    fake.push_chat(ChatStream::text_reply(&["recovered"]));
    let (llm, sleeper) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(text_of(&events), "recovered");
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 1);
    assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200));

    for _ in 0..3 {
        fake.push_chat(ChatReply::server_error());
    }
    let (events, result) = run_llm(&llm, simple_request()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Http { status: 500, body, .. } if body.contains("server had an error")),
        "{err}"
    );
    assert!(events.is_empty());
}

#[tokio::test]
async fn an_error_object_inside_the_stream_is_a_server_error_after_the_text() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(
        ChatStream::new()
            .role()
            .text("Sure, ")
            .error("The model is overloaded.", Some("server_is_overloaded")),
    );
    let (llm, sleeper) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(
        result,
        Err(ProviderError::Server {
            provider: "openai".into(),
            code: Some("server_is_overloaded".into()),
            message: "The model is overloaded.".into()
        })
    );
    assert_eq!(
        events,
        vec![LlmEvent::FirstByte, LlmEvent::TextDelta("Sure, ".into())]
    );
    assert!(
        sleeper.waits().is_empty(),
        "nothing is retried after a token"
    );
}

#[tokio::test]
async fn error_events_and_flat_error_envelopes_are_server_errors() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(
        ChatStream::new()
            .role()
            .sse_raw("event: error\ndata: {\"error\":{\"message\":\"boom\",\"code\":500}}\n\n"),
    );
    fake.push_chat(ChatStream::new().role().chunk_raw(json!({
        "object": "error", "message": "bad tool parser", "type": "BadRequestError", "code": 400
    })));
    let (llm, _) = llm(&fake);
    let (_, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(
        result,
        Err(ProviderError::Server {
            provider: "openai".into(),
            code: Some("500".into()),
            message: "boom".into()
        })
    );
    let (_, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(
        result,
        Err(ProviderError::Server {
            provider: "openai".into(),
            code: Some("400".into()),
            message: "bad tool parser".into()
        })
    );
}

#[tokio::test]
async fn a_truncated_stream_is_closed_after_delivering_its_text() {
    let fake = FakeOpenAi::start().await.unwrap();
    // Neither [DONE] nor finish_reason; a half-built tool call is dropped, not emitted.
    fake.push_chat(
        ChatStream::new()
            .role()
            .text("Your table is ")
            .text("booked for")
            .tool_call_start(0, "call_x", "book")
            .tool_call_args(0, "{\"ti"),
    );
    let (llm, sleeper) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Closed { code: None, reason, .. } if reason.contains("[DONE]")),
        "{err}"
    );
    assert_eq!(text_of(&events), "Your table is booked for");
    assert!(tool_calls(&events).is_empty());
    assert!(!events.contains(&LlmEvent::Done));
    assert!(sleeper.waits().is_empty());
}

#[tokio::test]
async fn a_dropped_connection_mid_stream_is_closed_after_delivering_its_text() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::new().role().text("Half a sen").abort());
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(result.unwrap_err().kind(), "closed");
    assert_eq!(text_of(&events), "Half a sen");
}

#[tokio::test]
async fn a_finish_reason_without_done_completes_the_turn() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::new().role().text("Bye.").finish("stop"));
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(events.last(), Some(&LlmEvent::Done));
    assert_eq!(text_of(&events), "Bye.");
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_after_the_text() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(
        ChatStream::new()
            .role()
            .text("Hello")
            .data_raw("{\"choices\": [{\"delta\": {\"content\": \"x\"")
            .text("never seen")
            .done(),
    );
    let (llm, _) = llm(&fake);
    let (events, result) = run_llm(&llm, simple_request()).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ProviderError::Protocol { .. }), "{err}");
    assert_eq!(text_of(&events), "Hello");
}

#[tokio::test]
async fn a_slow_first_byte_times_out() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::text_reply(&["late"]).first_byte_delay(Duration::from_millis(400)));
    let mut config = llm_config(&fake);
    config.first_byte_timeout = Duration::from_millis(80);
    config.backoff = Backoff::none();
    let llm = OpenAiLlm::with_env(config, &HashMap::<String, String>::new()).unwrap();
    let (events, result) = run_llm(&llm, simple_request()).await;
    assert_eq!(
        result,
        Err(ProviderError::FirstByteTimeout {
            provider: "openai".into(),
            after: Duration::from_millis(80)
        })
    );
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_slow_first_byte_is_retried_when_the_policy_allows() {
    let fake = FakeOpenAi::start().await.unwrap();
    // The timeout leaves a loaded machine ample time for the second, prompt reply.
    fake.push_chat(ChatStream::text_reply(&["late"]).headers_delay(Duration::from_secs(3)));
    fake.push_chat(ChatStream::text_reply(&["on time"]));
    let mut config = llm_config(&fake);
    config.first_byte_timeout = Duration::from_millis(300);
    let sleeper = RecordingSleeper::new();
    let llm = OpenAiLlm::with_env(config, &HashMap::<String, String>::new())
        .unwrap()
        .with_sleeper(SharedSleeper::new(sleeper.clone()));
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(text_of(&events), "on time");
    assert_eq!(sleeper.waits().len(), 1);
}

#[tokio::test]
async fn a_dropped_receiver_ends_the_stream_quietly() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::text_reply(&["a", "b", "c"]));
    let (llm, _) = llm(&fake);
    let (tx, rx) = mpsc::unbounded_channel();
    drop(rx);
    assert_eq!(llm.stream(simple_request(), tx).await, Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Configuration and secrets

#[tokio::test]
async fn env_supplies_base_url_and_key() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(ChatStream::text_reply(&["from env"]));
    let env: HashMap<String, String> = [
        ("OPENAI_API_KEY".to_string(), fake.api_key().to_string()),
        ("OPENAI_BASE_URL".to_string(), fake.base_url()),
    ]
    .into();
    let llm = OpenAiLlm::with_env(OpenAiLlmConfig::openai("gpt-4o-mini"), &env).unwrap();
    assert_eq!(llm.url(), format!("{}/chat/completions", fake.base_url()));
    let (events, result) = run_llm(&llm, simple_request()).await;
    result.unwrap();
    assert_eq!(text_of(&events), "from env");
}

#[test]
fn the_public_service_needs_a_key() {
    let err = OpenAiLlm::with_env(
        OpenAiLlmConfig::openai("gpt-4o-mini"),
        &HashMap::<String, String>::new(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
    let err = OpenAiLlm::with_env(
        OpenAiLlmConfig::xai("grok-4"),
        &HashMap::<String, String>::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("XAI_API_KEY"), "{err}");
    assert!(err.to_string().starts_with("xai:"), "{err}");
}

#[tokio::test]
async fn the_key_never_shows_in_debug_or_errors() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_chat(Reply::new(500).bytes(format!(
        "{{\"error\":{{\"message\":\"upstream rejected Bearer {FAKE_OPENAI_KEY}\"}}}}"
    )));
    let mut config = llm_config(&fake);
    config.backoff = Backoff::none();
    config.extra_headers = vec![("api-key".into(), FAKE_OPENAI_KEY.into())];
    assert_no_key(&format!("{config:?}"));
    let llm = OpenAiLlm::with_env(config, &HashMap::<String, String>::new()).unwrap();
    assert_no_key(&format!("{llm:?}"));
    let (_, result) = run_llm(&llm, simple_request()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, ProviderError::Http { status: 500, .. }),
        "{err}"
    );
    assert_no_key(&format!("{err} {err:?}"));

    let tts_config = tts_config(&fake);
    assert_no_key(&format!("{tts_config:?}"));
    let (tts, _) = tts_from(tts_config);
    assert_no_key(&format!("{tts:?}"));
}

#[tokio::test]
async fn requests_the_fake_rejects_surface_as_http_400() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (llm, _) = llm(&fake);
    let request = LlmRequest {
        messages: vec![ChatMessage {
            role: Role::User,
            content: "hi".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }],
        tools: vec![ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: json!("not a schema"),
        }],
        temperature: None,
        max_tokens: None,
    };
    let (_, result) = run_llm(&llm, request).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Http { status: 400, body, .. } if body.contains("tools[0]")),
        "{err}"
    );
}

#[tokio::test]
async fn a_tool_message_without_its_call_id_is_a_config_error() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (llm, _) = llm(&fake);
    let mut request = simple_request();
    request.messages.push(ChatMessage::text(Role::Tool, "{}"));
    let (_, result) = run_llm(&llm, request).await;
    assert_eq!(result.unwrap_err().kind(), "config");
    assert!(fake.chat_requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Speech

#[tokio::test]
async fn tts_odd_chunks_reassemble_exactly_the_served_samples() {
    let fake = FakeOpenAi::start().await.unwrap();
    let samples: Vec<i16> = (0..4801)
        .map(|i| ((i * 7919) % 65536 - 32768) as i16)
        .collect();
    fake.push_speech(PcmStream::new(samples.clone()).chunk_sizes(&[1, 7, 1001, 3, 2, 333]));
    let mut config = tts_config(&fake);
    config.speed = Some(1.25);
    config.instructions = Some("Warm and calm.".into());
    let (tts, _) = tts_from(config);
    let (events, result) = run_tts(&tts, &["Your table is booked."]).await;
    result.unwrap();
    assert_eq!(samples_of(&events), samples);
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    for e in &events[..events.len() - 1] {
        match e {
            TtsEvent::Audio { samples, .. } => assert!(!samples.is_empty() && samples.len() <= 480),
            other => panic!("unexpected {other:?}"),
        }
    }

    let sent = fake.speech_requests();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.header("authorization"),
        Some(&*format!("Bearer {FAKE_OPENAI_KEY}"))
    );
    assert_eq!(
        req.json().unwrap(),
        json!({
            "model": "gpt-4o-mini-tts",
            "input": "Your table is booked.",
            "voice": "marin",
            "response_format": "pcm",
            "speed": 1.25,
            "instructions": "Warm and calm."
        })
    );
}

#[tokio::test]
async fn tts_speaks_each_batch_of_text_in_order() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (tts, _) = tts_from(tts_config(&fake));
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let params = TtsParams {
        preferred_rate: SampleRate::Hz24000,
    };
    let task = tokio::spawn({
        let tts = tts.clone();
        async move { tts.synthesize(params, in_rx, tx).await }
    });
    in_tx.send(TtsInput::Text("Hello there.".into())).unwrap();
    // Wait for the first audio so the second text becomes its own request.
    let mut events = vec![rx.recv().await.unwrap()];
    in_tx
        .send(TtsInput::Text("How can I help?".into()))
        .unwrap();
    in_tx.send(TtsInput::End).unwrap();
    task.await.unwrap().unwrap();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let mut expected = speech_samples("Hello there.");
    expected.extend(speech_samples("How can I help?"));
    assert_eq!(samples_of(&events), expected);
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    let inputs: Vec<Value> = fake
        .speech_requests()
        .iter()
        .map(|r| r.json().unwrap()["input"].clone())
        .collect();
    assert_eq!(
        inputs,
        vec![json!("Hello there."), json!("How can I help?")]
    );
}

#[tokio::test]
async fn tts_joins_text_that_queued_up_into_one_request() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (tts, _) = tts_from(tts_config(&fake));
    let (events, result) = run_tts(&tts, &["One.", "  ", "Two, three."]).await;
    result.unwrap();
    assert_eq!(samples_of(&events), speech_samples("One. Two, three."));
    assert_eq!(fake.speech_requests().len(), 1);
}

#[tokio::test]
async fn tts_with_no_text_just_finishes() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (tts, _) = tts_from(tts_config(&fake));
    let (events, result) = run_tts(&tts, &[]).await;
    result.unwrap();
    assert_eq!(events, vec![TtsEvent::Done]);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn tts_custom_voice_ids_are_sent_as_objects() {
    let fake = FakeOpenAi::start().await.unwrap();
    let mut config = tts_config(&fake);
    config.voice = "voice_abc123".into();
    let (tts, _) = tts_from(config);
    run_tts(&tts, &["Hi."]).await.1.unwrap();
    assert_eq!(
        fake.speech_requests()[0].json().unwrap()["voice"],
        json!({"id": "voice_abc123"})
    );
}

#[tokio::test]
async fn tts_faults_end_in_typed_errors() {
    let fake = FakeOpenAi::start().await.unwrap();
    let (tts, sleeper) = tts_from(tts_config(&fake));

    fake.push_speech(SpeechReply::error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        "Incorrect API key provided.",
    ));
    let (events, result) = run_tts(&tts, &["Hi."]).await;
    assert_eq!(result.unwrap_err().kind(), "auth");
    assert!(events.is_empty());

    fake.push_speech(Reply::new(429).header("retry-after", "1"));
    let (events, result) = run_tts(&tts, &["Retry me."]).await;
    result.unwrap();
    assert_eq!(samples_of(&events), speech_samples("Retry me."));
    assert_eq!(sleeper.waits(), vec![Duration::from_secs(1)]);

    let mut config = tts_config(&fake);
    config.backoff = Backoff::none();
    let (tts, _) = tts_from(config);
    fake.push_speech(SpeechReply::error(500, "server_error", None, "boom"));
    let (_, result) = run_tts(&tts, &["Hi."]).await;
    assert!(
        matches!(result, Err(ProviderError::Http { status: 500, .. })),
        "{result:?}"
    );

    fake.push_speech(Reply::json(
        200,
        &json!({"error": {"message": "not audio"}}),
    ));
    let (_, result) = run_tts(&tts, &["Hi."]).await;
    assert_eq!(result.unwrap_err().kind(), "protocol");
}

#[tokio::test]
async fn tts_dropped_body_delivers_the_audio_before_it() {
    let fake = FakeOpenAi::start().await.unwrap();
    let samples: Vec<i16> = (0..2000).map(|i| i as i16).collect();
    fake.push_speech(
        PcmStream::new(samples.clone())
            .chunk_sizes(&[301])
            .abort_after_bytes(1001),
    );
    let (tts, _) = tts_from(tts_config(&fake));
    let (events, result) = run_tts(&tts, &["Cut off."]).await;
    assert_eq!(result.unwrap_err().kind(), "closed");
    // 1001 bytes hold 500 whole samples; the dangling half sample is dropped.
    assert_eq!(samples_of(&events), samples[..500]);
    assert!(!events.contains(&TtsEvent::Done));
}

#[tokio::test]
async fn tts_slow_first_byte_times_out() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.push_speech(PcmStream::new(vec![1, 2, 3]).first_byte_delay(Duration::from_millis(400)));
    let mut config = tts_config(&fake);
    config.first_byte_timeout = Duration::from_millis(80);
    config.backoff = Backoff::none();
    let (tts, _) = tts_from(config);
    let (events, result) = run_tts(&tts, &["Hi."]).await;
    assert_eq!(result.unwrap_err().kind(), "first-byte-timeout");
    assert!(events.is_empty());
}
