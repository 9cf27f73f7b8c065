//! The ElevenLabs stream-input TTS adapter against the strict fake server on 127.0.0.1:
//! the exact upgrade and messages, exact audio reassembly from odd-sized pieces, alignment
//! offsets, G.711 decoding, prompt close on cancellation, and every fault ending in its
//! typed error after the audio that arrived was delivered.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use voxline_engine::codecs::{g711, SampleRate};
use voxline_engine::provider::{
    ProviderError, SpokenSpan, TtsEvent, TtsInput, TtsParams, TtsProvider,
};
use voxline_providers::elevenlabs::{
    ChunkTrigger, ElevenLabsConfig, ElevenLabsTts, OutputFormat, VoiceSettings,
};
use voxline_providers::fake::elevenlabs::{
    fake_sample, ClientEnd, ElevenLabsConnection, ElevenLabsFault, FakeElevenLabs,
    FakeElevenLabsConfig,
};
use voxline_providers::net::backoff::Backoff;
use voxline_providers::net::endpoint::NoEnv;
use voxline_providers::net::ApiKey;

const KEY: &str = "el-test-key-93be1d";
const VOICE: &str = "voice Rachel/1";
const MODEL: &str = "eleven_flash_v2_5";
const TEXTS: [&str; 2] = ["Hello there.", "How are you today?"];

fn fake_config() -> FakeElevenLabsConfig {
    FakeElevenLabsConfig::new(KEY, VOICE, MODEL)
}

fn config(fake: &FakeElevenLabs) -> ElevenLabsConfig {
    ElevenLabsConfig {
        api_key: Some(ApiKey::new(KEY)),
        base_url: Some(fake.url()),
        backoff: Backoff::none(),
        response_timeout: Duration::from_secs(5),
        ..ElevenLabsConfig::new(VOICE)
    }
}

fn provider(config: ElevenLabsConfig) -> ElevenLabsTts {
    ElevenLabsTts::with_env(config, &NoEnv).expect("valid config")
}

/// Speaks `texts` then `End`; returns every event and the result.
async fn speak(
    tts: &ElevenLabsTts,
    rate: SampleRate,
    texts: &[&str],
) -> (Vec<TtsEvent>, Result<(), ProviderError>) {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for t in texts {
        in_tx.send(TtsInput::Text(t.to_string())).unwrap();
    }
    in_tx.send(TtsInput::End).unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        tts.synthesize(
            TtsParams {
                preferred_rate: rate,
            },
            in_rx,
            tx,
        ),
    )
    .await
    .expect("utterance ends");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (events, result)
}

fn samples(events: &[TtsEvent], expected_rate: SampleRate) -> Vec<i16> {
    let mut out = Vec::new();
    for e in events {
        if let TtsEvent::Audio { rate, samples } = e {
            assert_eq!(*rate, expected_rate);
            out.extend_from_slice(samples);
        }
    }
    out
}

fn spans(events: &[TtsEvent]) -> Vec<SpokenSpan> {
    events
        .iter()
        .flat_map(|e| match e {
            TtsEvent::Alignment(s) => s.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn expected_pcm(n: usize) -> Vec<i16> {
    (0..n as u64).map(fake_sample).collect()
}

async fn ended(fake: &FakeElevenLabs) -> Vec<ElevenLabsConnection> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let conns = fake.connections();
        if conns.iter().all(|c| !c.accepted || c.ended) {
            return conns;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections did not end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sends_the_exact_upgrade_and_messages() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        expected_voice_settings: Some(json!({
            "stability": 0.4, "similarity_boost": 0.8, "style": 0.1, "use_speaker_boost": false, "speed": 1.1
        })),
        ..fake_config()
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.voice_settings = VoiceSettings {
        stability: Some(0.4),
        similarity_boost: Some(0.8),
        style: Some(0.1),
        use_speaker_boost: Some(false),
        speed: Some(1.1),
    };
    c.language_code = Some("nl".into());
    let tts = provider(c);
    let (events, result) = speak(&tts, SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(result, Ok(()));
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    assert_eq!(fake.violations(), Vec::<String>::new());
    let conns = ended(&fake).await;
    assert_eq!(conns.len(), 1);
    let request = conns[0].request.clone().unwrap();
    assert_eq!(
        request.path,
        "/v1/text-to-speech/voice%20Rachel%2F1/stream-input"
    );
    assert_eq!(
        request.query.as_deref(),
        Some("model_id=eleven_flash_v2_5&output_format=pcm_16000&language_code=nl")
    );
    assert_eq!(request.header("xi-api-key"), Some(KEY));
    let expected: Vec<Value> = vec![
        json!({"text":" ","voice_settings":{"stability":0.4,"similarity_boost":0.8,"style":0.1,
            "use_speaker_boost":false,"speed":1.1},
            "generation_config":{"chunk_length_schedule":[120,160,250,290]}}),
        json!({"text":"Hello there. ","flush":true}),
        json!({"text":"How are you today? ","flush":true}),
        json!({"text":""}),
    ];
    assert_eq!(conns[0].messages, expected);
    assert_eq!(conns[0].client_end, None, "the server closed after isFinal");
}

#[tokio::test]
async fn output_format_follows_the_call_rate_unless_configured() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let tts = provider(config(&fake));
    for (rate, format) in [
        (SampleRate::Hz8000, "pcm_8000"),
        (SampleRate::Hz16000, "pcm_16000"),
        (SampleRate::Hz24000, "pcm_24000"),
        (SampleRate::Hz48000, "pcm_24000"),
    ] {
        assert!(tts
            .stream_url(rate)
            .ends_with(&format!("output_format={format}")));
    }
    let mut c = config(&fake);
    c.output_format = Some(OutputFormat::Ulaw8000);
    assert!(provider(c)
        .stream_url(SampleRate::Hz24000)
        .ends_with("output_format=ulaw_8000"));
}

#[tokio::test]
async fn audio_from_odd_sized_pieces_reassembles_exactly() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz24000, &TEXTS).await;
    assert_eq!(result, Ok(()));
    let conn = fake.connections()[0].clone();
    assert!(conn.pieces > 4, "several pieces: {}", conn.pieces);
    let got = samples(&events, SampleRate::Hz24000);
    // 30 ms per character (spaces closing each chunk included) at 24 kHz.
    let chars = TEXTS.iter().map(|t| t.chars().count() + 1).sum::<usize>();
    assert_eq!(got.len(), chars * 720);
    assert_eq!(got, expected_pcm(got.len()));
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn alignment_spans_cover_the_text_with_times_offset_across_pieces() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(result, Ok(()));
    let spans = spans(&events);
    // The raw alignment (original case) is used, and the spaces the adapter appended to
    // close each chunk are left out: the spans spell exactly the engine's text.
    let text: String = spans.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(text, TEXTS.concat());
    // The appended spaces sit after each chunk in what the fake synthesised.
    let first = TEXTS[0].chars().count();
    let padding = [first, first + 1 + TEXTS[1].chars().count()];
    let fake_chars: Vec<_> = fake.connections()[0]
        .chars
        .iter()
        .enumerate()
        .filter(|(i, _)| !padding.contains(i))
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(fake_chars.len(), spans.len());
    for (span, ch) in spans.iter().zip(&fake_chars) {
        assert_eq!(span.text, ch.ch.to_string());
        let start_ms = span.start.as_secs_f64() * 1000.0;
        assert!(
            (start_ms - ch.start_ms as f64).abs() <= 1.0,
            "{span:?} vs {ch:?}"
        );
        assert_eq!(span.end - span.start, Duration::from_millis(ch.duration_ms));
    }
    for pair in spans.windows(2) {
        assert!(pair[0].start < pair[1].start, "{pair:?}");
    }
    let total = samples(&events, SampleRate::Hz16000).len() as f64 / 16_000.0;
    assert!(spans.last().unwrap().end.as_secs_f64() <= total + 0.001);
}

#[tokio::test]
async fn normalized_alignment_with_the_schema_spelling_is_the_fallback() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        raw_alignment: false,
        spec_spelling: true,
        ..fake_config()
    })
    .await
    .unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &["Hi Bob."]).await;
    assert_eq!(result, Ok(()));
    let spans = spans(&events);
    let text: String = spans.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(text, "hi bob.");
    assert!(spans
        .iter()
        .all(|s| s.end - s.start == Duration::from_millis(30)));
}

#[tokio::test]
async fn ulaw_8000_is_decoded_with_g711() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let mut c = config(&fake);
    c.output_format = Some(OutputFormat::Ulaw8000);
    let tts = provider(c);
    let (events, result) = speak(&tts, SampleRate::Hz24000, &["Good morning."]).await;
    assert_eq!(result, Ok(()));
    let got = samples(&events, SampleRate::Hz8000);
    assert_eq!(got.len(), 14 * 240);
    let expected: Vec<i16> = (0..got.len() as u64)
        .map(|i| g711::ulaw_to_linear(g711::linear_to_ulaw(fake_sample(i))))
        .collect();
    assert_eq!(got, expected);
    let query = fake.connections()[0]
        .request
        .clone()
        .unwrap()
        .query
        .unwrap();
    assert!(query.ends_with("output_format=ulaw_8000"), "{query}");
}

#[tokio::test]
async fn try_trigger_mode_marks_chunks_and_still_completes() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let mut c = config(&fake);
    c.chunk_trigger = ChunkTrigger::TryTrigger;
    let tts = provider(c);
    let (events, result) = speak(&tts, SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(result, Ok(()));
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    let messages = fake.connections()[0].messages.clone();
    assert_eq!(
        messages[1],
        json!({"text":"Hello there. ","try_trigger_generation":true})
    );
    assert!(!samples(&events, SampleRate::Hz16000).is_empty());
}

#[tokio::test]
async fn dropping_the_future_closes_the_socket_promptly() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        piece_delay: Duration::from_millis(40),
        ..fake_config()
    })
    .await
    .unwrap();
    let tts = provider(config(&fake));
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::unbounded_channel();
    in_tx
        .send(TtsInput::Text(
            "A long answer that takes a while to say.".into(),
        ))
        .unwrap();
    let task = tokio::spawn(tts.synthesize(
        TtsParams {
            preferred_rate: SampleRate::Hz16000,
        },
        in_rx,
        tx,
    ));
    // Barge-in as the engine does it: abort once audio is flowing.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(TtsEvent::Audio { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("no audio: {other:?}"),
        }
    }
    let cancelled_at = tokio::time::Instant::now();
    task.abort();
    let conns = ended(&fake).await;
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(conns[0].client_end, Some(ClientEnd::CloseFrame(Some(1000))));
    assert!(
        conns[0].pieces < 20,
        "the server stopped early: {}",
        conns[0].pieces
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn handshake_rejections_are_typed() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig::new("other-key", VOICE, MODEL))
        .await
        .unwrap();
    let (events, result) = speak(&provider(config(&fake)), SampleRate::Hz16000, &TEXTS).await;
    let err = result.unwrap_err();
    assert_eq!(
        err,
        ProviderError::Auth {
            provider: "elevenlabs".into(),
            status: 401
        }
    );
    assert!(!err.to_string().contains(KEY));
    assert!(events.is_empty());

    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        fault: ElevenLabsFault::Reject {
            status: 429,
            retry_after: Some(7),
        },
        ..fake_config()
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.backoff = Backoff {
        max_attempts: 3,
        initial_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(1),
        seed: Some(3),
        ..Backoff::default()
    };
    let (_, result) = speak(&provider(c), SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(
        result,
        Err(ProviderError::RateLimited {
            provider: "elevenlabs".into(),
            retry_after: Some(Duration::from_secs(7)),
        })
    );
    assert_eq!(
        fake.connections().len(),
        1,
        "a 7 s wait is not worth it mid-call"
    );
}

#[tokio::test]
async fn a_rate_limit_with_a_short_wait_is_retried_before_anything_is_sent() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        fault: ElevenLabsFault::Reject {
            status: 429,
            retry_after: Some(0),
        },
        ..fake_config()
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.backoff = Backoff {
        max_attempts: 3,
        seed: Some(3),
        ..Backoff::default()
    };
    let (events, result) = speak(&provider(c), SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(result.unwrap_err().kind(), "rate-limited");
    assert!(events.is_empty());
    assert_eq!(fake.connections().len(), 3);
}

#[tokio::test]
async fn an_error_message_then_close_is_a_server_error_after_earlier_audio() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        fault: ElevenLabsFault::ErrorAfter {
            pieces: 2,
            error: "input_timeout_exceeded".into(),
            message: "Have not received a new text input within the timeout of 20 seconds.".into(),
        },
        ..fake_config()
    })
    .await
    .unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(
        result,
        Err(ProviderError::Server {
            provider: "elevenlabs".into(),
            code: Some("input_timeout_exceeded".into()),
            message: "Have not received a new text input within the timeout of 20 seconds.".into(),
        })
    );
    // Both pieces before the error (1001 + 777 bytes) arrived intact.
    assert_eq!(samples(&events, SampleRate::Hz16000), expected_pcm(889));
    assert!(!events.contains(&TtsEvent::Done));
}

#[tokio::test]
async fn a_stream_closed_without_is_final_is_closed_after_the_audio_that_arrived() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        fault: ElevenLabsFault::TruncateAfter { pieces: 3 },
        ..fake_config()
    })
    .await
    .unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &TEXTS).await;
    match result {
        Err(ProviderError::Closed { code, reason, .. }) => {
            assert_eq!(code, Some(1000));
            assert!(reason.contains("isFinal"), "{reason}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    // 1001 + 777 + 1283 bytes: 1530 whole samples, the dangling half sample dropped.
    assert_eq!(samples(&events, SampleRate::Hz16000), expected_pcm(1530));
    assert!(!events.contains(&TtsEvent::Done));
    assert!(!spans(&events).is_empty());
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_after_the_audio_that_arrived() {
    let fake = FakeElevenLabs::start(FakeElevenLabsConfig {
        fault: ElevenLabsFault::MalformedAfter { pieces: 1 },
        ..fake_config()
    })
    .await
    .unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &TEXTS).await;
    assert_eq!(result.unwrap_err().kind(), "protocol");
    assert_eq!(samples(&events, SampleRate::Hz16000), expected_pcm(500));
    let conns = ended(&fake).await;
    assert_eq!(conns[0].client_end, Some(ClientEnd::CloseFrame(Some(1000))));
}

#[tokio::test]
async fn blank_chunks_are_never_sent_and_no_text_needs_no_audio() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let tts = provider(config(&fake));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &["   ", "Fine. "]).await;
    assert_eq!(result, Ok(()));
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &[""]).await;
    assert_eq!(result, Ok(()));
    assert_eq!(events, vec![TtsEvent::Done]);
    assert_eq!(fake.violations(), Vec::<String>::new());
    let conns = ended(&fake).await;
    assert_eq!(
        conns[0].messages[1..].to_vec(),
        vec![json!({"text":"Fine. ","flush":true}), json!({"text":""})]
    );
    assert_eq!(conns[1].messages.len(), 1, "only the initial message");
    assert_eq!(conns[1].client_end, Some(ClientEnd::CloseFrame(Some(1000))));
}

#[tokio::test]
async fn env_supplies_key_and_base_url_and_debug_hides_the_key() {
    let fake = FakeElevenLabs::start(fake_config()).await.unwrap();
    let http_url = fake.url().replacen("ws://", "http://", 1);
    let env: HashMap<String, String> = [
        ("ELEVENLABS_API_KEY".to_string(), KEY.to_string()),
        ("ELEVENLABS_BASE_URL".to_string(), http_url),
    ]
    .into_iter()
    .collect();
    let tts = ElevenLabsTts::with_env(
        ElevenLabsConfig {
            backoff: Backoff::none(),
            ..ElevenLabsConfig::new(VOICE)
        },
        &env,
    )
    .unwrap();
    assert!(!format!("{tts:?}").contains(KEY));
    assert!(!format!("{:?}", config(&fake)).contains(KEY));
    let (events, result) = speak(&tts, SampleRate::Hz16000, &["Hi."]).await;
    assert_eq!(result, Ok(()));
    assert_eq!(events.last(), Some(&TtsEvent::Done));
    assert_eq!(
        fake.connections()[0]
            .request
            .clone()
            .unwrap()
            .header("xi-api-key"),
        Some(KEY)
    );
}
