//! The Deepgram live STT adapter against the strict fake server on 127.0.0.1: the exact
//! upgrade request, audio framing, KeepAlive cadence, Finalize and CloseStream, reconnect
//! with replay, and every fault ending in its documented typed error with nothing lost.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use voxline_engine::codecs::{g711, AudioFrame, SampleRate};
use voxline_engine::provider::{
    ProviderError, SttControl, SttEvent, SttIo, SttProvider, SttSessionParams, Transcript,
};
use voxline_engine::ring::{speech_ring, SpeechRingProducer};
use voxline_providers::deepgram::{DeepgramConfig, DeepgramEncoding, DeepgramStt, Endpointing};
use voxline_providers::fake::deepgram::{
    DeepgramConnection, DeepgramFault, FakeDeepgram, FakeDeepgramConfig, NET_0001_REASON,
};
use voxline_providers::net::backoff::Backoff;
use voxline_providers::net::endpoint::NoEnv;
use voxline_providers::net::ApiKey;

const KEY: &str = "dg-test-key-5f1c2a";
const SCRIPT: [&str; 3] = [
    "I need to reschedule.",
    "Friday at three works.",
    "Thanks, goodbye.",
];

fn fast_backoff(max_attempts: u32) -> Backoff {
    Backoff {
        max_attempts,
        initial_delay: Duration::from_millis(10),
        multiplier: 2.0,
        max_delay: Duration::from_millis(50),
        jitter: 0.0,
        max_retry_after: Duration::from_secs(2),
        seed: Some(1),
    }
}

fn config(fake: &FakeDeepgram) -> DeepgramConfig {
    DeepgramConfig {
        api_key: Some(ApiKey::new(KEY)),
        base_url: Some(fake.url()),
        reconnect: fast_backoff(4),
        close_timeout: Duration::from_secs(3),
        ..DeepgramConfig::default()
    }
}

fn provider(config: DeepgramConfig) -> DeepgramStt {
    DeepgramStt::with_env(config, &NoEnv).expect("valid config")
}

struct Session {
    audio: Option<SpeechRingProducer>,
    control: mpsc::UnboundedSender<SttControl>,
    events: mpsc::UnboundedReceiver<SttEvent>,
    seen: Vec<SttEvent>,
    task: JoinHandle<Result<(), ProviderError>>,
    rate: SampleRate,
    /// Frames pushed so far (the test signal's phase follows it).
    pushed: std::cell::Cell<usize>,
}

impl Session {
    fn start(stt: &DeepgramStt, rate: SampleRate) -> Session {
        let (tx, rx) = speech_ring(2000);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let io = SttIo {
            audio: rx,
            control: control_rx,
            events: events_tx,
        };
        let task = tokio::spawn(stt.run(SttSessionParams { sample_rate: rate }, io));
        Session {
            audio: Some(tx),
            control,
            events,
            seen: Vec::new(),
            task,
            rate,
            pushed: std::cell::Cell::new(0),
        }
    }

    /// Pushes the audio of `plan` ((speech?, milliseconds) pieces); returns the frames.
    fn push(&self, plan: &[(bool, u32)]) -> Vec<AudioFrame> {
        let frames = audio(self.rate, plan, self.pushed.get());
        self.pushed.set(self.pushed.get() + frames.len());
        let tx = self.audio.as_ref().expect("audio open");
        for f in &frames {
            assert!(tx.push(*f), "ring full");
        }
        frames
    }

    async fn wait_for(&mut self, what: &str, pred: impl Fn(&[SttEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pred(&self.seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                Ok(None) => panic!("events ended while waiting for {what}: {:?}", self.seen),
                Err(_) => panic!("timed out waiting for {what}: {:?}", self.seen),
            }
        }
    }

    /// Sends Close, ends the audio, and collects everything until the session ends.
    async fn close(mut self) -> (Vec<SttEvent>, Result<(), ProviderError>) {
        let _ = self.control.send(SttControl::Close);
        self.audio = None;
        self.finish().await
    }

    async fn finish(mut self) -> (Vec<SttEvent>, Result<(), ProviderError>) {
        let result = tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("session ends")
            .expect("session task");
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        (self.seen, result)
    }
}

fn frame(rate: SampleRate, speech: bool, index: usize) -> AudioFrame {
    let n = rate.frame_samples();
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            if speech {
                let t = (index * n + i) as f64 / rate.hz() as f64;
                (8000.0 * (2.0 * std::f64::consts::PI * 313.7 * t).sin()) as i16
            } else {
                0
            }
        })
        .collect();
    AudioFrame::from_samples(rate, &samples).expect("frame")
}

/// Frames for `plan`, the first being frame number `first` of the session's audio.
fn audio(rate: SampleRate, plan: &[(bool, u32)], first: usize) -> Vec<AudioFrame> {
    let mut out = Vec::new();
    for &(speech, ms) in plan {
        for _ in 0..ms / 20 {
            out.push(frame(rate, speech, first + out.len()));
        }
    }
    out
}

fn linear16(frames: &[AudioFrame]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| f.samples().iter().flat_map(|s| s.to_le_bytes()))
        .collect()
}

fn finals(events: &[SttEvent]) -> Vec<Transcript> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) if t.is_final && !t.text.is_empty() => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn final_texts(events: &[SttEvent]) -> Vec<String> {
    finals(events).into_iter().map(|t| t.text).collect()
}

/// The fake's connections once every accepted one has ended (its close handshake done).
async fn ended(fake: &FakeDeepgram) -> Vec<DeepgramConnection> {
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test]
async fn sends_the_exact_query_string_and_token_header() {
    let expected = "model=nova-3&language=en-US&encoding=linear16&sample_rate=16000&channels=1\
                    &interim_results=true&endpointing=300&utterance_end_ms=1000&vad_events=true\
                    &smart_format=true&punctuate=true&numerals=true&filler_words=false\
                    &keyterm=Voxline&keyterm=Dr.%20M%C3%BCller&keyterm=a%26b&tag=test%20run";
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        expected_query: Some(expected.to_string()),
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.language = Some("en-US".into());
    c.punctuate = Some(true);
    c.numerals = Some(true);
    c.filler_words = Some(false);
    c.keyterms = vec!["Voxline".into(), "Dr. Müller".into(), "a&b".into()];
    c.extra_params = vec![("tag".into(), "test run".into())];
    let stt = provider(c);
    assert_eq!(
        stt.listen_url(SampleRate::Hz16000),
        format!("{}/v1/listen?{expected}", fake.url())
    );
    let mut s = Session::start(&stt, SampleRate::Hz16000);
    s.wait_for("ready", |e| e.contains(&SttEvent::Ready)).await;
    let frames = s.push(&[(false, 200)]);
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(events.first(), Some(&SttEvent::Ready));
    assert_eq!(fake.violations(), Vec::<String>::new());
    let conns = ended(&fake).await;
    assert_eq!(conns.len(), 1);
    let request = conns[0].request.clone().unwrap();
    assert_eq!(request.path, "/v1/listen");
    assert_eq!(request.query.as_deref(), Some(expected));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Token {KEY}").as_str())
    );
    assert_eq!(conns[0].audio, linear16(&frames));
    assert!(
        conns[0].frame_sizes.iter().all(|&n| n == 640),
        "20 ms frames at 16 kHz"
    );
    assert_eq!(conns[0].control_times("CloseStream").len(), 1);
    assert_eq!(conns[0].client_close, Some(1000));
}

#[tokio::test]
async fn transcribes_with_events_and_word_times_on_the_stream_timeline() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new(KEY, SCRIPT))
        .await
        .unwrap();
    let stt = provider(config(&fake));
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    // Audio pushed before the socket is open is buffered, then sent in order.
    let frames = s.push(&[(false, 500), (true, 1000), (false, 600)]);
    s.wait_for("the final", |e| !finals(e).is_empty()).await;
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(final_texts(&events), vec![SCRIPT[0].to_string()]);
    let speech_started = events.iter().position(|e| *e == SttEvent::SpeechStarted);
    let first_interim = events
        .iter()
        .position(|e| matches!(e, SttEvent::Transcript(t) if !t.is_final && !t.text.is_empty()));
    let final_at = events
        .iter()
        .position(|e| matches!(e, SttEvent::Transcript(t) if t.is_final && !t.text.is_empty()));
    let utterance_end = events.iter().position(|e| *e == SttEvent::UtteranceEnd);
    assert!(speech_started < first_interim && first_interim < final_at && final_at < utterance_end);
    assert!(speech_started.is_some() && utterance_end.is_some());
    let fin = &finals(&events)[0];
    assert!(fin.speech_final && !fin.from_finalize);
    assert!(fin.confidence > 0.9);
    let words: Vec<&str> = fin.words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(words, vec!["I", "need", "to", "reschedule."]);
    for w in &fin.words {
        assert!(secs(w.start) >= 0.499 && secs(w.end) <= 1.501, "{w:?}");
        assert!(w.start < w.end);
    }
    assert_eq!(fake.connections()[0].audio, linear16(&frames));
}

#[tokio::test]
async fn keepalive_goes_out_at_the_interval_only_while_no_audio_flows() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        idle_timeout: Some(Duration::from_millis(400)),
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.keepalive_interval = Duration::from_millis(100);
    let stt = provider(c);
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.wait_for("ready", |e| e.contains(&SttEvent::Ready)).await;
    // Audio paced in real time: no KeepAlive is due while it flows.
    let tx = s.audio.take().unwrap();
    let frames = audio(SampleRate::Hz8000, &[(false, 300)], 0);
    for f in &frames {
        tx.push(*f);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during_audio = fake.connections()[0].keepalives().len();
    assert!(
        during_audio <= 1,
        "no KeepAlive while audio flowed: {during_audio}"
    );
    // The engine stops forwarding audio: KeepAlive keeps the socket past the idle timeout.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.audio = Some(tx);
    s.push(&[(false, 100)]);
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()), "{events:?}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    let conns = fake.connections();
    assert_eq!(conns.len(), 1, "the idle timeout never fired");
    let keepalives = conns[0].keepalives();
    assert!(
        (7..=13).contains(&keepalives.len()),
        "about one KeepAlive per 100 ms of the 1.2 s gap: {keepalives:?}"
    );
    for pair in keepalives.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(90) && gap <= Duration::from_millis(300),
            "KeepAlive gap {gap:?}"
        );
    }
    assert!(!events
        .iter()
        .any(|e| matches!(e, SttEvent::Reconnecting { .. })));
}

#[tokio::test]
async fn finalize_at_end_of_turn_yields_a_from_finalize_final() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new(KEY, SCRIPT))
        .await
        .unwrap();
    let mut c = config(&fake);
    c.endpointing = Some(Endpointing::Disabled);
    c.utterance_end_ms = None;
    let stt = provider(c);
    let mut s = Session::start(&stt, SampleRate::Hz16000);
    s.push(&[(false, 200), (true, 800), (false, 100)]);
    s.control.send(SttControl::Finalize).unwrap();
    s.wait_for("the finalized final", |e| !finals(e).is_empty())
        .await;
    let fin = finals(&s.seen)[0].clone();
    assert_eq!(fin.text, SCRIPT[0]);
    assert!(fin.from_finalize && fin.is_final);
    // Finalize went out after all the audio pushed before it.
    let conn = fake.connections()[0].clone();
    assert_eq!(conn.audio.len(), 1100 / 20 * 640);
    assert_eq!(conn.control_times("Finalize").len(), 1);
    let (_, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn close_stream_flushes_the_last_finals_then_ends_cleanly() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new(KEY, SCRIPT))
        .await
        .unwrap();
    let mut c = config(&fake);
    c.endpointing = Some(Endpointing::Disabled);
    c.utterance_end_ms = None;
    let stt = provider(c);
    let s = Session::start(&stt, SampleRate::Hz8000);
    let frames = s.push(&[(true, 600)]);
    // Hang-up right after the caller spoke: the final comes from the CloseStream flush.
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(final_texts(&events), vec![SCRIPT[0].to_string()]);
    let conn = ended(&fake).await[0].clone();
    assert_eq!(
        conn.audio,
        linear16(&frames),
        "every frame went out before CloseStream"
    );
    assert_eq!(conn.control_times("CloseStream").len(), 1);
    assert!(conn.sent.last().unwrap().contains("\"Metadata\""));
    assert_eq!(conn.client_close, Some(1000));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_mid_stream_drop_reconnects_replays_unfinalized_audio_and_loses_no_final() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        faults: vec![DeepgramFault::DropAfter {
            after_audio: Duration::from_millis(2500),
        }],
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let stt = provider(config(&fake));
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.wait_for("ready", |e| e.contains(&SttEvent::Ready)).await;
    // 1 s silence, utterance 1 (1.0–2.0 s, final at 2.3 s), utterance 2 from 2.4 s;
    // the first connection drops at 2.5 s, in the middle of utterance 2.
    let frames = s.push(&[
        (false, 1000),
        (true, 1000),
        (false, 400),
        (true, 1000),
        (false, 1000),
    ]);
    s.wait_for("both finals", |e| finals(e).len() >= 2).await;
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()), "{events:?}");
    assert_eq!(fake.violations(), Vec::<String>::new());

    assert_eq!(
        final_texts(&events),
        vec![SCRIPT[0].to_string(), SCRIPT[1].to_string()]
    );
    assert_eq!(fake.transcripts_used(), 2, "no audio was transcribed twice");
    let reconnects: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Reconnecting { attempt, error } => Some((*attempt, error.kind())),
            _ => None,
        })
        .collect();
    assert_eq!(reconnects, vec![(1, "closed")]);
    assert_eq!(events.iter().filter(|e| **e == SttEvent::Ready).count(), 2);

    // Word times of the second connection sit on the call's timeline (utterance 2).
    let second = &finals(&events)[1];
    for w in &second.words {
        assert!(secs(w.start) >= 2.399 && secs(w.end) <= 3.401, "{w:?}");
    }
    let first = &finals(&events)[0];
    for w in &first.words {
        assert!(secs(w.start) >= 0.999 && secs(w.end) <= 2.001, "{w:?}");
    }

    // The fake heard the replay: everything from the end of the last final (2.3 s) on.
    let all = linear16(&frames);
    let conns = fake.connections();
    assert_eq!(conns.len(), 2);
    let replay_from = 2300 * 8 * 2; // 2.3 s of 8 kHz linear16
    assert!(all.starts_with(&conns[0].audio[..2500 * 16]));
    assert_eq!(conns[1].audio, all[replay_from..].to_vec());
}

#[tokio::test]
async fn malformed_json_reconnects_and_the_final_still_arrives_once() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        faults: vec![DeepgramFault::MalformedAfter {
            after_audio: Duration::from_millis(700),
        }],
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let stt = provider(config(&fake));
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.push(&[(false, 200), (true, 800), (false, 500)]);
    s.wait_for("the final", |e| !finals(e).is_empty()).await;
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(final_texts(&events), vec![SCRIPT[0].to_string()]);
    assert!(events.iter().any(
        |e| matches!(e, SttEvent::Reconnecting { attempt: 1, error } if error.kind() == "protocol")
    ));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn mulaw_encoding_sends_g711_bytes() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new(KEY, SCRIPT))
        .await
        .unwrap();
    let mut c = config(&fake);
    c.encoding = DeepgramEncoding::Mulaw;
    let stt = provider(c);
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    let frames = s.push(&[(false, 300), (true, 800), (false, 500)]);
    s.wait_for("the final", |e| !finals(e).is_empty()).await;
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(final_texts(&events), vec![SCRIPT[0].to_string()]);
    let conn = fake.connections()[0].clone();
    let query = conn.request.unwrap().query.unwrap();
    assert!(query.contains("encoding=mulaw&sample_rate=8000"), "{query}");
    let mut expected = Vec::new();
    for f in &frames {
        let mut out = vec![0u8; f.samples().len()];
        g711::encode_ulaw(f.samples(), &mut out);
        expected.extend(out);
    }
    assert_eq!(conn.audio, expected);
    assert!(conn.frame_sizes.iter().all(|&n| n == 160));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn bad_key_is_an_auth_failure_without_retry() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new("the-right-key", SCRIPT))
        .await
        .unwrap();
    let stt = provider(config(&fake));
    let s = Session::start(&stt, SampleRate::Hz8000);
    let (events, result) = s.finish().await;
    let err = result.unwrap_err();
    assert_eq!(
        err,
        ProviderError::Auth {
            provider: "deepgram".into(),
            status: 401
        }
    );
    assert!(!err.to_string().contains(KEY));
    assert!(events.is_empty(), "no Ready, no Reconnecting: {events:?}");
    assert_eq!(fake.connections().len(), 1);
}

#[tokio::test]
async fn rate_limited_handshake_is_retried_then_typed_when_retries_run_out() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        faults: vec![DeepgramFault::Reject {
            status: 429,
            retry_after: Some(0),
        }],
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let stt = provider(config(&fake));
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.wait_for("ready after the retry", |e| e.contains(&SttEvent::Ready))
        .await;
    assert!(matches!(
        &s.seen[0],
        SttEvent::Reconnecting { attempt: 1, error: ProviderError::RateLimited { retry_after: Some(d), .. } } if d.is_zero()
    ));
    let (_, result) = s.close().await;
    assert_eq!(result, Ok(()));

    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        faults: vec![DeepgramFault::Reject {
            status: 429,
            retry_after: None,
        }],
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.reconnect = Backoff::none();
    let (_, result) = Session::start(&provider(c), SampleRate::Hz8000)
        .finish()
        .await;
    assert_eq!(result.unwrap_err().kind(), "rate-limited");
}

#[tokio::test]
async fn an_error_message_then_close_is_a_server_error_after_earlier_finals() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        faults: vec![DeepgramFault::ErrorThenClose {
            after_audio: Duration::from_millis(1500),
            variant: "SchemaError".into(),
            description: "the stream could not be processed".into(),
            close_code: 1011,
        }],
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let stt = provider(config(&fake));
    let s = Session::start(&stt, SampleRate::Hz8000);
    s.push(&[(true, 800), (false, 1200)]);
    let (events, result) = s.finish().await;
    assert_eq!(final_texts(&events), vec![SCRIPT[0].to_string()]);
    assert_eq!(
        result,
        Err(ProviderError::Server {
            provider: "deepgram".into(),
            code: Some("FAKE-ERROR".into()),
            message: "the stream could not be processed".into(),
        })
    );
    assert_eq!(fake.connections().len(), 1, "a server error is not retried");
}

#[tokio::test]
async fn idle_timeout_close_is_typed_with_its_reason_after_earlier_finals() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.keepalive_interval = Duration::from_secs(30);
    c.reconnect = Backoff::none();
    let stt = provider(c);
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.push(&[(true, 600), (false, 400)]);
    s.wait_for("the final", |e| !finals(e).is_empty()).await;
    // The engine stops forwarding; with KeepAlive far off, the server times out.
    let (events, result) = s.finish().await;
    assert_eq!(final_texts(&events), vec![SCRIPT[0].to_string()]);
    assert_eq!(
        result,
        Err(ProviderError::Closed {
            provider: "deepgram".into(),
            code: Some(1011),
            reason: NET_0001_REASON.into(),
        })
    );
}

#[tokio::test]
async fn an_idle_close_mid_call_is_cured_by_reconnecting() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let mut c = config(&fake);
    c.keepalive_interval = Duration::from_secs(30);
    let stt = provider(c);
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.push(&[(true, 600), (false, 400)]);
    s.wait_for("a reconnect", |e| {
        e.iter().any(|e| matches!(e, SttEvent::Reconnecting { .. }))
    })
    .await;
    s.wait_for("ready again", |e| {
        e.iter().filter(|e| **e == SttEvent::Ready).count() == 2
    })
    .await;
    s.push(&[(true, 600), (false, 400)]);
    s.wait_for("the second final", |e| finals(e).len() == 2)
        .await;
    let (events, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        final_texts(&events),
        vec![SCRIPT[0].to_string(), SCRIPT[1].to_string()]
    );
    let second = &finals(&events)[1];
    assert!(secs(second.words[0].start) >= 0.999, "{second:?}");
}

#[tokio::test]
async fn an_undecodable_audio_close_is_fatal_even_with_retries_left() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig {
        faults: vec![DeepgramFault::CloseAfter {
            after_audio: Duration::from_millis(200),
            code: 1008,
            reason: "DATA-0000".into(),
        }],
        ..FakeDeepgramConfig::new(KEY, SCRIPT)
    })
    .await
    .unwrap();
    let stt = provider(config(&fake));
    let s = Session::start(&stt, SampleRate::Hz8000);
    s.push(&[(false, 400)]);
    let (_, result) = s.finish().await;
    assert_eq!(
        result,
        Err(ProviderError::Closed {
            provider: "deepgram".into(),
            code: Some(1008),
            reason: "DATA-0000".into(),
        })
    );
    assert_eq!(fake.connections().len(), 1);
}

#[tokio::test]
async fn env_supplies_key_and_base_url_and_debug_hides_the_key() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new(KEY, SCRIPT))
        .await
        .unwrap();
    let env: HashMap<String, String> = [
        ("DEEPGRAM_API_KEY".to_string(), KEY.to_string()),
        ("DEEPGRAM_BASE_URL".to_string(), fake.url()),
    ]
    .into_iter()
    .collect();
    let stt = DeepgramStt::with_env(DeepgramConfig::default(), &env).unwrap();
    assert!(!format!("{stt:?}").contains(KEY));
    let explicit = config(&fake);
    assert!(!format!("{explicit:?}").contains(KEY));
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.wait_for("ready", |e| e.contains(&SttEvent::Ready)).await;
    let (_, result) = s.close().await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        fake.connections()[0]
            .request
            .as_ref()
            .unwrap()
            .header("authorization"),
        Some(format!("Token {KEY}").as_str())
    );
}

#[tokio::test]
async fn connects_while_the_call_rings_before_any_audio() {
    let fake = FakeDeepgram::start(FakeDeepgramConfig::new(KEY, SCRIPT))
        .await
        .unwrap();
    let stt = provider(config(&fake));
    let mut s = Session::start(&stt, SampleRate::Hz8000);
    s.wait_for("ready", |e| e.contains(&SttEvent::Ready)).await;
    let conns = fake.connections();
    assert_eq!(conns.len(), 1);
    assert!(conns[0].accepted && conns[0].audio.is_empty());
    let (_, result) = s.close().await;
    assert_eq!(result, Ok(()));
}
