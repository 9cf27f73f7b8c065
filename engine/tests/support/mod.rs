//! Shared harness for calls through the real media path on virtual time: a simulated
//! caller on the far end of an in-memory RTP pipe that speaks (voiced signal), presses
//! keys (RFC 4733) and decodes what the agent sends back.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_codecs::{PayloadFormat, PayloadRegistry, SampleRate};
use voxline_engine::call::{CallEvent, CallSettings};
use voxline_engine::driver::{new_call, CallControl, CallOutcome, DriverOptions, ProviderSet};
use voxline_engine::media::{MediaConfig, MemoryTransport, RtpPort};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub use voxline_engine::testkit::caller::{spawn_caller, CallerLog, CallerScript};

/// A call over the in-memory RTP pipe: the engine's side, the caller's side, and the results.
pub struct RtpCall {
    pub events: Vec<CallEvent>,
    pub log: Arc<Mutex<CallerLog>>,
    pub outcome: CallOutcome,
}

pub fn opus_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(
            111,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz24000,
            },
        )
        .unwrap();
    registry
        .insert(101, PayloadFormat::TelephoneEvent { clock_rate: 48_000 })
        .unwrap();
    MediaConfig::new(registry, 111)
}

pub fn pcmu_config() -> MediaConfig {
    let mut registry = PayloadRegistry::new();
    registry
        .insert(101, PayloadFormat::TelephoneEvent { clock_rate: 8000 })
        .unwrap();
    MediaConfig::new(registry, 0)
}

/// Runs a whole call; `host` gets the control handle while the call runs (e.g. to answer tools).
pub async fn run_rtp_call<F, Fut>(
    config: MediaConfig,
    settings: CallSettings,
    providers: ProviderSet,
    script: CallerScript,
    host: F,
) -> RtpCall
where
    F: FnOnce(CallControl, voxline_engine::driver::EventStream) -> Fut,
    Fut: std::future::Future<Output = Vec<CallEvent>> + Send + 'static,
{
    run_rtp_call_with(
        config,
        settings,
        providers,
        script,
        DriverOptions::default(),
        host,
    )
    .await
}

/// Like [`run_rtp_call`], with driver options.
pub async fn run_rtp_call_with<F, Fut>(
    config: MediaConfig,
    settings: CallSettings,
    providers: ProviderSet,
    script: CallerScript,
    options: DriverOptions,
    host: F,
) -> RtpCall
where
    F: FnOnce(CallControl, voxline_engine::driver::EventStream) -> Fut,
    Fut: std::future::Future<Output = Vec<CallEvent>> + Send + 'static,
{
    run_rtp_call_offset(
        config,
        settings,
        providers,
        script,
        options,
        Duration::ZERO,
        host,
    )
    .await
}

/// Like [`run_rtp_call_with`], with the caller's 20 ms clock started `caller_offset` after
/// the call's, so its packets arrive at that phase of the engine's ticks.
pub async fn run_rtp_call_offset<F, Fut>(
    config: MediaConfig,
    settings: CallSettings,
    providers: ProviderSet,
    script: CallerScript,
    options: DriverOptions,
    caller_offset: Duration,
    host: F,
) -> RtpCall
where
    F: FnOnce(CallControl, voxline_engine::driver::EventStream) -> Fut,
    Fut: std::future::Future<Output = Vec<CallEvent>> + Send + 'static,
{
    let (engine_end, caller_end) =
        MemoryTransport::pair(addr("10.0.0.2:5000"), addr("10.0.0.1:4000"));
    let port = RtpPort::new(engine_end, &config).unwrap();
    let (task, control, events) = new_call(settings, providers, port, options);
    let log = Arc::new(Mutex::new(CallerLog::default()));
    let until = script.until;
    // With no offset the caller is spawned first, as the scenario timelines expect.
    let (early_call, task) = if caller_offset.is_zero() {
        (None, Some(task))
    } else {
        let call = tokio::spawn(task.run());
        tokio::time::sleep(caller_offset).await;
        (Some(call), None)
    };
    let caller = spawn_caller(
        caller_end,
        addr("10.0.0.2:5000"),
        config,
        script,
        log.clone(),
    )
    .unwrap();
    let call = early_call.unwrap_or_else(|| tokio::spawn(task.expect("the call task").run()));
    let host_task = tokio::spawn(host(control.clone(), events));
    tokio::select! {
        _ = tokio::time::sleep(until) => {}
    }
    let _pipe = caller.await.unwrap();
    let _ = control.hang_up();
    let outcome = call.await.unwrap();
    let events = host_task.await.unwrap();
    RtpCall {
        events,
        log,
        outcome,
    }
}

/// A host that only collects events until the stream ends.
pub async fn collect(
    _control: CallControl,
    mut events: voxline_engine::driver::EventStream,
) -> Vec<CallEvent> {
    let mut all = Vec::new();
    while let Some(e) = events.next().await {
        all.push(e.event);
    }
    all
}
