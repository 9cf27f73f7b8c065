//! Whole calls through the public API against fake provider servers that speak the real
//! wire protocols: Deepgram + OpenAI + ElevenLabs, and the xAI realtime model. Real UDP on
//! 127.0.0.1, a simulated caller, and the platform's end-of-call report at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use voxline::codecs::PayloadRegistry;
use voxline::engine::config::Assistant;
use voxline::engine::media::MediaConfig;
use voxline::engine::platform::time::Timestamp;
use voxline::engine::platform::webhook::{CallType, WebhookBody};
use voxline::engine::report::PostCallAnalyzer;
use voxline::engine::report::{CallMetadata, CallReporter};
use voxline::engine::testkit::caller::{spawn_caller, CallerLog, CallerScript};
use voxline::providers::fake::deepgram::{FakeDeepgram, FakeDeepgramConfig};
use voxline::providers::fake::elevenlabs::{FakeElevenLabs, FakeElevenLabsConfig};
use voxline::providers::fake::openai::{ChatStream, FakeOpenAi};
use voxline::{CallDirection, Voxline};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

async fn udp_pair() -> (UdpSocket, UdpSocket, SocketAddr, SocketAddr) {
    let engine = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (e, c) = (engine.local_addr().unwrap(), caller.local_addr().unwrap());
    (engine, caller, e, c)
}

const ANALYSIS_REPLY: &str = r#"{"intent": "booking", "day": "Monday"}"#;

/// What a pipeline call through the fakes left behind.
struct PipelineRun {
    eocr: serde_json::Value,
    events: Vec<voxline::engine::call::CallEvent>,
    openai: FakeOpenAi,
    deepgram: FakeDeepgram,
    eleven: FakeElevenLabs,
    heard: usize,
    deliveries: Vec<String>,
}

/// A whole call: Deepgram + OpenAI chat + the given TTS (`tts_config` JSON), caller speech
/// windows, hang-up at `until`, and the reporter following the event stream.
async fn pipeline_call(
    tts_config: &str,
    first_message: &str,
    speech: Vec<(Duration, Duration)>,
    until: Duration,
) -> PipelineRun {
    let deepgram = FakeDeepgram::start(FakeDeepgramConfig::new(
        "dg-key",
        ["I would like to book a cleaning"],
    ))
    .await
    .unwrap();
    let openai = FakeOpenAi::start_with_key("oa-key").await.unwrap();
    openai.push_chat(ChatStream::text_reply(&[
        "Sure, ",
        "we have Monday ",
        "at ten.",
    ]));
    // Post-call summary and structured data (asked side by side; both get a JSON object).
    openai.push_chat(ChatStream::text_reply(&[ANALYSIS_REPLY]));
    openai.push_chat(ChatStream::text_reply(&[ANALYSIS_REPLY]));
    let eleven = FakeElevenLabs::start(FakeElevenLabsConfig::new(
        "el-key",
        "voice123",
        "eleven_flash_v2_5",
    ))
    .await
    .unwrap();
    let env: HashMap<String, String> = [
        ("DEEPGRAM_API_KEY", "dg-key".to_string()),
        ("DEEPGRAM_BASE_URL", deepgram.url()),
        ("OPENAI_API_KEY", "oa-key".to_string()),
        ("OPENAI_BASE_URL", openai.base_url()),
        ("ELEVENLABS_API_KEY", "el-key".to_string()),
        ("ELEVENLABS_BASE_URL", eleven.url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let assistant = Assistant::from_json(&format!(
        r#"{{
        "first_message": "{first_message}",
        "stt_config": {{"provider": "deepgram", "model": "nova-3", "language": "en"}},
        "llm_config": {{"provider": "openai", "model": "gpt-4.1",
            "messages": [{{"role": "system", "content": "You book dental appointments."}}]}},
        "tts_config": {tts_config},
        "analysis_plan": {{"structured_data_plan": {{"enabled": true,
            "schema": {{"type": "object", "properties": {{"intent": {{"type": "string"}}, "day": {{"type": "string"}}}}}},
            "messages": [{{"role": "system", "content": "Extract {{{{schema}}}} from {{{{transcript}}}}; ended: {{{{ended_reason}}}}"}}]}},
            "min_messages_threshold": 1}}
    }}"#
    ))
    .unwrap();
    let voxline = Voxline::with_env(Arc::new(env));
    let (engine_sock, caller_sock, engine_addr, caller_addr) = udp_pair().await;
    let mut media = MediaConfig::new(PayloadRegistry::new(), 0);
    media.remote = Some(caller_addr);
    let call = voxline
        .prepare_call(
            &assistant,
            CallDirection::Inbound,
            engine_sock,
            media.clone(),
        )
        .unwrap();
    assert!(call.notices.is_empty(), "{:?}", call.notices);
    let llm = call.providers.llm.clone().unwrap();
    let control = call.control.clone();
    let mut stream = call.events;
    let plan = assistant.analysis_plan.clone().unwrap();
    let reporter = CallReporter::new(
        CallMetadata::new("call-fakes-1", CallType::InboundPhoneCall),
        Timestamp::from_system_time(SystemTime::now()).unwrap(),
    )
    .with_analysis_plan(plan);
    let delivered = Arc::new(Mutex::new(Vec::<WebhookBody>::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (sink, seen_events) = (delivered.clone(), seen.clone());
    let reporting = tokio::spawn(async move {
        let analyzer = PostCallAnalyzer::new(llm);
        // Tee the stream: the test keeps the raw events, the reporter builds the webhooks.
        let (tx, mut rx) = voxline::engine::driver::EventStream::channel();
        let tee = tokio::spawn(async move {
            while let Some(e) = stream.next().await {
                seen_events.lock().unwrap().push(e.event.clone());
                let _ = tx.send(e);
            }
        });
        let report = reporter
            .run(&mut rx, &analyzer, |body| {
                sink.lock().unwrap().push(body);
                async {}
            })
            .await;
        let _ = tee.await;
        report
    });
    let task = tokio::spawn(call.task.run());
    let log = Arc::new(Mutex::new(CallerLog::default()));
    let caller = spawn_caller(
        caller_sock,
        engine_addr,
        media,
        CallerScript {
            speech,
            until,
            ..Default::default()
        },
        log.clone(),
    )
    .unwrap();
    let _socket = caller.await.unwrap();
    control.hang_up().unwrap();
    let outcome = task.await.unwrap();
    assert_eq!(
        outcome.end_reason,
        voxline::engine::call::EndReason::UserHangup
    );
    let report = tokio::time::timeout(secs(20.0), reporting)
        .await
        .unwrap()
        .unwrap();
    let heard = log
        .lock()
        .unwrap()
        .agent_packets
        .iter()
        .filter(|(_, a)| *a)
        .count();
    let deliveries = delivered
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            serde_json::to_value(b).unwrap()["message"]["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let events = seen.lock().unwrap().clone();
    PipelineRun {
        eocr: serde_json::to_value(report.to_body()).unwrap(),
        events,
        openai,
        deepgram,
        eleven,
        heard,
        deliveries,
    }
}

fn messages(eocr: &serde_json::Value) -> Vec<(String, String)> {
    eocr["message"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["role"].as_str().unwrap().to_string(),
                x["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `min_heard`: audible agent frames the caller must decode (the fakes render different lengths).
fn check_pipeline_report(run: &PipelineRun, min_heard: usize) {
    let m = &run.eocr["message"];
    assert_eq!(m["type"], "end-of-call-report");
    assert_eq!(m["end_reason"], "user_hangup");
    let duration = m["duration_seconds"].as_f64().unwrap();
    assert!((8.0..=12.0).contains(&duration), "duration {duration}");
    let said = messages(&run.eocr);
    assert_eq!(
        said[0],
        ("assistant".into(), "Hello, dental clinic.".into()),
        "{said:?}"
    );
    assert!(
        said.contains(&("user".into(), "I would like to book a cleaning".into())),
        "{said:?}"
    );
    assert!(
        said.contains(&("assistant".into(), "Sure, we have Monday at ten.".into())),
        "{said:?}"
    );
    assert_eq!(m["analysis"]["intent"], "booking");
    assert!(!m["summary"].as_str().unwrap().is_empty());
    // The model saw the transcript in the analysis prompt, placeholders filled.
    let bodies: Vec<String> = run
        .openai
        .chat_requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    assert!(bodies
        .iter()
        .any(|b| b.contains("I would like to book a cleaning") && b.contains("user_hangup")));
    assert!(
        run.deepgram.violations().is_empty(),
        "{:?}",
        run.deepgram.violations()
    );
    assert!(
        run.eleven.violations().is_empty(),
        "{:?}",
        run.eleven.violations()
    );
    assert!(
        run.heard >= min_heard,
        "caller heard {} audible agent frames",
        run.heard
    );
    assert_eq!(
        run.deliveries
            .iter()
            .filter(|k| *k == "end-of-call-report")
            .count(),
        1,
        "{:?}",
        run.deliveries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepgram_openai_elevenlabs_call_produces_a_correct_report() {
    let run = pipeline_call(
        r#"{"provider": "elevenlabs", "voice_id": "voice123", "model": "eleven_flash_v2_5"}"#,
        "Hello, dental clinic.",
        vec![(secs(2.5), secs(4.5))],
        secs(10.0),
    )
    .await;
    check_pipeline_report(&run, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepgram_openai_with_openai_tts_call_produces_a_correct_report() {
    let run = pipeline_call(
        r#"{"provider": "openai", "voice_id": "alloy", "model": "gpt-4o-mini-tts"}"#,
        "Hello, dental clinic.",
        vec![(secs(2.5), secs(4.5))],
        secs(10.0),
    )
    .await;
    // The fake renders 5 ms of audio per character: greeting and answer are about 250 ms.
    check_pipeline_report(&run, 8);
    let speech = run.openai.speech_requests();
    assert!(
        !speech.is_empty(),
        "speech requests went to /v1/audio/speech"
    );
    let body = String::from_utf8_lossy(&speech[0].body).to_string();
    assert!(body.contains("\"response_format\":\"pcm\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elevenlabs_alignment_cuts_the_history_on_barge_in() {
    // 30 ms per character: the greeting lasts about 4 s; the caller talks over it at 1.5 s.
    let greeting = "Hello and welcome to the dental clinic, we offer cleanings, whitening, fillings, crowns and implants every weekday.";
    let run = pipeline_call(
        r#"{"provider": "elevenlabs", "voice_id": "voice123", "model": "eleven_flash_v2_5"}"#,
        greeting,
        vec![(secs(1.5), secs(3.5))],
        secs(10.0),
    )
    .await;
    let (spoken, full) = run
        .events
        .iter()
        .find_map(|e| match e {
            voxline::engine::call::CallEvent::AgentInterrupted { spoken, full, .. } => {
                Some((spoken.clone(), full.clone()))
            }
            _ => None,
        })
        .expect("the caller barged in");
    assert_eq!(full, greeting);
    assert!(
        !spoken.is_empty() && spoken.len() < full.len(),
        "{spoken:?}"
    );
    assert!(full.starts_with(&spoken), "a prefix of what was sent");
    // Played ≈ 1.5 s + VAD (60 ms) + interruption min (300 ms) → ~1.9 s ≈ 60 characters at 30 ms.
    let chars = spoken.chars().count();
    assert!(
        (35..=80).contains(&chars),
        "{chars} characters heard: {spoken:?}"
    );
    let said = messages(&run.eocr);
    assert_eq!(
        said[0],
        ("assistant".into(), spoken.clone()),
        "the report holds only what was heard"
    );
}

/// A whole realtime call against the vendor's fake, with post-call analysis by a chat fake.
async fn realtime_call(vendor: voxline::providers::realtime::Vendor) {
    use voxline::providers::fake::realtime::{
        FakeRealtimeScript, FakeRealtimeServer, FakeReply, FakeTurn,
    };
    use voxline::providers::openai_llm::{OpenAiLlm, OpenAiLlmConfig};
    use voxline::providers::realtime::Vendor;

    let (model, provider, voice, key_var, url_var) = match vendor {
        Vendor::Xai => (
            "grok-voice-think-fast-2.0",
            "xai_realtime",
            "ara",
            "XAI_API_KEY",
            "XAI_BASE_URL",
        ),
        Vendor::OpenAi => (
            "gpt-realtime",
            "openai_realtime",
            "marin",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
        ),
    };
    let script = FakeRealtimeScript::new(vendor, "rt-key", model).turn(FakeTurn::new(
        600,
        "What are your opening hours",
        FakeReply::say("We are open from nine to five on weekdays.", 2500),
    ));
    let server = FakeRealtimeServer::start(script).await.unwrap();
    let openai = FakeOpenAi::start_with_key("oa-key").await.unwrap();
    openai.push_chat(ChatStream::text_reply(&[ANALYSIS_REPLY]));
    openai.push_chat(ChatStream::text_reply(&[ANALYSIS_REPLY]));
    let env: HashMap<String, String> = [
        (key_var, "rt-key".to_string()),
        (url_var, server.base_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let assistant = Assistant::from_json(&format!(
        r#"{{
        "llm_config": {{"provider": "{provider}", "model": "{model}", "voice": "{voice}",
            "messages": [{{"role": "system", "content": "You answer questions for a dental clinic."}}],
            "turn_detection": {{"type": "server_vad"}}}},
        "tts_config": null,
        "analysis_plan": {{"structured_data_plan": {{"enabled": true,
            "schema": {{"type": "object", "properties": {{"intent": {{"type": "string"}}}}}},
            "messages": [{{"role": "system", "content": "Extract {{{{schema}}}} from {{{{transcript}}}}"}}]}},
            "min_messages_threshold": 1}}
    }}"#
    ))
    .unwrap();
    let voxline = Voxline::with_env(Arc::new(env));
    let (engine_sock, caller_sock, engine_addr, caller_addr) = udp_pair().await;
    let mut media = MediaConfig::new(PayloadRegistry::new(), 0);
    media.remote = Some(caller_addr);
    let call = voxline
        .prepare_call(
            &assistant,
            CallDirection::Inbound,
            engine_sock,
            media.clone(),
        )
        .unwrap();
    assert!(call.settings.realtime);
    let mut post_call = OpenAiLlmConfig::compatible("post-call", openai.base_url(), "gpt-4.1-mini");
    post_call.api_key = Some("oa-key".into());
    let llm = Arc::new(OpenAiLlm::new(post_call).unwrap());
    let control = call.control.clone();
    let mut events = call.events;
    let reporter = CallReporter::new(
        CallMetadata::new("call-rt-1", CallType::InboundPhoneCall),
        Timestamp::from_system_time(SystemTime::now()).unwrap(),
    )
    .with_analysis_plan(assistant.analysis_plan.clone().unwrap());
    let reporting = tokio::spawn(async move {
        let analyzer = PostCallAnalyzer::new(llm);
        reporter.run(&mut events, &analyzer, |_| async {}).await
    });
    let task = tokio::spawn(call.task.run());
    let log = Arc::new(Mutex::new(CallerLog::default()));
    let caller = spawn_caller(
        caller_sock,
        engine_addr,
        media,
        CallerScript {
            speech: vec![(secs(1.0), secs(2.5))],
            until: secs(8.0),
            ..Default::default()
        },
        log.clone(),
    )
    .unwrap();
    let _socket = caller.await.unwrap();
    control.hang_up().unwrap();
    let outcome = task.await.unwrap();
    let report = tokio::time::timeout(secs(20.0), reporting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome.end_reason,
        voxline::engine::call::EndReason::UserHangup
    );
    let eocr = serde_json::to_value(report.to_body()).unwrap();
    let m = &eocr["message"];
    assert_eq!(m["end_reason"], "user_hangup");
    let said: Vec<(String, String)> = m["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["role"].as_str().unwrap().to_string(),
                x["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        said.contains(&("user".into(), "What are your opening hours".into())),
        "{said:?}"
    );
    assert!(
        said.contains(&(
            "assistant".into(),
            "We are open from nine to five on weekdays.".into()
        )),
        "{said:?}"
    );
    assert_eq!(m["analysis"]["intent"], "booking");
    let duration = m["duration_seconds"].as_f64().unwrap();
    assert!((6.0..=10.0).contains(&duration), "duration {duration}");
    let log_rt = server.log();
    assert!(log_rt.violations.is_empty(), "{:?}", log_rt.violations);
    assert!(log_rt.appends > 10, "caller audio reached the model");
    let heard = log
        .lock()
        .unwrap()
        .agent_packets
        .iter()
        .filter(|(_, a)| *a)
        .count();
    assert!(heard > 50, "caller heard {heard} audible agent frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xai_realtime_call_produces_a_correct_report() {
    realtime_call(voxline::providers::realtime::Vendor::Xai).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_realtime_call_produces_a_correct_report() {
    realtime_call(voxline::providers::realtime::Vendor::OpenAi).await;
}
