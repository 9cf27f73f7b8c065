//! The engine's own latency at two hand-offs, on a real tokio runtime and real UDP:
//! - `tts_first_byte_to_rtp`: a TTS provider's first audio → the first RTP packet of it
//!   arriving at the caller's socket (sent in the open silent slot, without waiting for the
//!   next 20 ms tick);
//! - `stt_final_to_llm_request`: an STT final → the model request leaving the call task
//!   (endpointing delay set to zero so only the engine's own work is measured).
//!
//! `cargo bench --bench handoff`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use voxline::codecs::{PayloadRegistry, SampleRate};
use voxline::engine::call::{CallCommand, CallSettings};
use voxline::engine::driver::{new_call, DriverOptions, ProviderSet};
use voxline::engine::media::{MediaConfig, RtpPort};
use voxline::engine::provider::{
    BoxFuture, LlmEvent, LlmProvider, LlmRequest, ProviderError, SttControl, SttEvent, SttIo,
    SttProvider, SttSessionParams, Transcript, TtsEvent, TtsInput, TtsParams, TtsProvider,
};

type Stamp = Arc<Mutex<Option<Instant>>>;

/// TTS that answers at once and notes when its first audio left.
struct StampingTts(Stamp);

impl TtsProvider for StampingTts {
    fn name(&self) -> &str {
        "stamping-tts"
    }
    fn synthesize(
        &self,
        _params: TtsParams,
        mut input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let stamp = self.0.clone();
        Box::pin(async move {
            while let Some(i) = input.recv().await {
                if let TtsInput::Text(_) = i {
                    if let Ok(mut s) = stamp.lock() {
                        s.get_or_insert_with(Instant::now);
                    }
                    let samples = vec![8000i16; 24_000];
                    let _ = events.send(TtsEvent::Audio {
                        rate: SampleRate::Hz24000,
                        samples,
                    });
                } else {
                    break;
                }
            }
            let _ = events.send(TtsEvent::Done);
            Ok(())
        })
    }
}

/// STT that emits one final transcript when told, noting when.
struct TriggeredStt {
    stamp: Stamp,
    go: Arc<tokio::sync::Notify>,
}

impl SttProvider for TriggeredStt {
    fn name(&self) -> &str {
        "triggered-stt"
    }
    fn run(
        &self,
        _p: SttSessionParams,
        io: SttIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let (stamp, go) = (self.stamp.clone(), self.go.clone());
        Box::pin(async move {
            let SttIo {
                mut control,
                events,
                ..
            } = io;
            tokio::select! {
                _ = go.notified() => {
                    if let Ok(mut s) = stamp.lock() {
                        *s = Some(Instant::now());
                    }
                    let _ = events.send(SttEvent::Transcript(Transcript {
                        text: "What time do you open".into(),
                        is_final: true,
                        speech_final: true,
                        from_finalize: false,
                        confidence: 0.9,
                        words: vec![],
                    }));
                }
                _ = async { while let Some(c) = control.recv().await { if c == SttControl::Close { break; } } } => {}
            }
            while let Some(c) = control.recv().await {
                if c == SttControl::Close {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// A model that notes when its request arrives and answers nothing.
struct StampingLlm(Stamp);

impl LlmProvider for StampingLlm {
    fn name(&self) -> &str {
        "stamping-llm"
    }
    fn stream(
        &self,
        _request: LlmRequest,
        events: mpsc::UnboundedSender<LlmEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        if let Ok(mut s) = self.0.lock() {
            s.get_or_insert_with(Instant::now);
        }
        Box::pin(async move {
            let _ = events.send(LlmEvent::Done);
            Ok(())
        })
    }
}

fn pcmu(remote: std::net::SocketAddr) -> MediaConfig {
    let mut m = MediaConfig::new(PayloadRegistry::new(), 0);
    m.remote = Some(remote);
    m.send_silence = false;
    m
}

async fn tts_to_rtp_once() -> Duration {
    let engine = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let caller = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = RtpPort::new(engine, &pcmu(caller.local_addr().expect("addr"))).expect("port");
    let stamp: Stamp = Arc::default();
    let providers = ProviderSet {
        tts: Some(Arc::new(StampingTts(stamp.clone()))),
        ..Default::default()
    };
    let (task, control, _events) = new_call(
        CallSettings::default(),
        providers,
        port,
        DriverOptions::default(),
    );
    let call = tokio::spawn(task.run());
    // Let the media clock start, then ask the agent to speak at a random phase of the tick.
    tokio::time::sleep(Duration::from_millis(45)).await;
    control
        .command(CallCommand::Say {
            content: "One moment please.".into(),
            end_after: false,
        })
        .await
        .expect("say");
    let mut buf = [0u8; 2048];
    let _ = caller.recv_from(&mut buf).await.expect("first packet");
    let arrived = Instant::now();
    let _ = control.hang_up();
    let _ = call.await;
    let sent = stamp.lock().ok().and_then(|s| *s).unwrap_or(arrived);
    arrived.saturating_duration_since(sent)
}

async fn stt_to_llm_once() -> Duration {
    let engine = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let caller = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = RtpPort::new(engine, &pcmu(caller.local_addr().expect("addr"))).expect("port");
    let final_at: Stamp = Arc::default();
    let request_at: Stamp = Arc::default();
    let go = Arc::new(tokio::sync::Notify::new());
    let providers = ProviderSet {
        stt: Some(Arc::new(TriggeredStt {
            stamp: final_at.clone(),
            go: go.clone(),
        })),
        llm: Some(Arc::new(StampingLlm(request_at.clone()))),
        tts: Some(Arc::new(StampingTts(Arc::default()))),
        realtime: None,
    };
    let mut settings = CallSettings::default();
    settings.turn.endpointing_min_delay = Duration::ZERO;
    let (task, control, _events) = new_call(settings, providers, port, DriverOptions::default());
    let call = tokio::spawn(task.run());
    tokio::time::sleep(Duration::from_millis(45)).await;
    go.notify_one();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if request_at.lock().ok().and_then(|s| *s).is_some() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let _ = control.hang_up();
    let _ = call.await;
    let a = final_at.lock().ok().and_then(|s| *s);
    let b = request_at.lock().ok().and_then(|s| *s);
    match (a, b) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::from_secs(1),
    }
}

fn handoff(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("handoff");
    group.sample_size(30);
    group.bench_function("tts_first_byte_to_rtp", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(tts_to_rtp_once());
            }
            total
        })
    });
    group.bench_function("stt_final_to_llm_request", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(stt_to_llm_once());
            }
            total
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    targets = handoff
}
criterion_main!(benches);
