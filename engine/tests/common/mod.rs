//! Shared pieces of the call tests on virtual time: a PCM media port with a scripted caller
//! timeline that logs every agent frame, and provider sets from the testkit.

#![allow(dead_code)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use voxline_codecs::{AudioFrame, FrameOrigin, SampleRate};
use voxline_engine::call::EventRecord;
use voxline_engine::driver::{EventStream, MediaInput, MediaPort, ProviderSet};
use voxline_engine::provider::{
    BoxFuture, ProviderError, SttEvent, SttIo, SttProvider, SttSessionParams,
};
use voxline_engine::testkit::{voiced_signal, ScriptedLlm, ScriptedStt, ScriptedTts};

/// Milliseconds as a duration.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Agent frames as the caller's side of the line saw them: (call time, audible).
pub type AgentLog = Arc<Mutex<Vec<(Duration, bool)>>>;

/// A media port that plays caller speech in the given windows (low line noise otherwise) and
/// logs every agent frame.
pub struct PcmPort {
    /// (start, end) of caller speech, in call time.
    pub speech: Vec<(Duration, Duration)>,
    sample: usize,
    /// Every agent frame sent.
    pub agent: AgentLog,
    /// Whether agent frames go into `agent` (a port for a long call keeps nothing).
    log: bool,
    /// When the driver asked the port to shed load or stop (call time of the tick), and which.
    pub shedding: Arc<Mutex<Vec<(Duration, bool)>>>,
    /// Call time of the current tick.
    now: Duration,
}

impl PcmPort {
    /// A port with caller speech in `speech`; returns it and its agent log.
    pub fn new(speech: Vec<(Duration, Duration)>) -> (Self, AgentLog) {
        let agent: AgentLog = Arc::new(Mutex::new(Vec::new()));
        (
            PcmPort {
                speech,
                sample: 0,
                agent: agent.clone(),
                log: true,
                shedding: Arc::default(),
                now: Duration::ZERO,
            },
            agent,
        )
    }

    /// A port like [`PcmPort::new`] that keeps no log of the agent's frames, for calls whose
    /// memory is measured.
    pub fn without_log(speech: Vec<(Duration, Duration)>) -> Self {
        PcmPort {
            log: false,
            ..PcmPort::new(speech).0
        }
    }
}

impl MediaPort for PcmPort {
    fn recv(
        &mut self,
        _epoch: tokio::time::Instant,
    ) -> impl std::future::Future<Output = io::Result<MediaInput>> + Send + '_ {
        std::future::pending()
    }

    fn caller_frame(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        self.now = now;
        out.reset(SampleRate::Hz16000, FrameOrigin::Received);
        let speaking = self.speech.iter().any(|&(a, b)| now >= a && now < b);
        if speaking {
            voiced_signal(SampleRate::Hz16000, self.sample, out.samples_mut());
        } else {
            for (i, s) in out.samples_mut().iter_mut().enumerate() {
                *s = (((self.sample + i) * 7919 % 61) as i16) - 30;
            }
        }
        self.sample += 320;
        true
    }

    fn send_agent_frame(&mut self, now: Duration, frame: Option<&AudioFrame>) -> io::Result<()> {
        if !self.log {
            return Ok(());
        }
        if let Ok(mut log) = self.agent.lock() {
            log.push((now, frame.is_some_and(|f| !f.is_digital_silence())));
        }
        Ok(())
    }

    fn caller_rate(&self) -> SampleRate {
        SampleRate::Hz16000
    }

    fn set_load_shedding(&mut self, shed: bool) {
        if let Ok(mut asked) = self.shedding.lock() {
            asked.push((self.now, shed));
        }
    }
}

/// Audible agent frames sent in `[from, to)`.
pub fn agent_frames(log: &AgentLog, from: Duration, to: Duration) -> usize {
    log.lock()
        .map(|l| {
            l.iter()
                .filter(|(t, voiced)| *voiced && *t >= from && *t < to)
                .count()
        })
        .unwrap_or(0)
}

/// STT, LLM and the default scripted TTS.
pub fn providers(stt: impl SttProvider + 'static, llm: ScriptedLlm) -> ProviderSet {
    ProviderSet {
        stt: Some(Arc::new(stt)),
        llm: Some(Arc::new(llm)),
        tts: Some(Arc::new(ScriptedTts::default())),
        realtime: None,
    }
}

/// Scripted STT with these utterances.
pub fn stt<S: Into<String>>(script: impl IntoIterator<Item = S>) -> ScriptedStt {
    ScriptedStt::new(script)
}

/// Every event waiting on the stream.
pub fn drain(events: &mut EventStream) -> Vec<EventRecord> {
    let mut out = Vec::new();
    while let Some(e) = events.try_next() {
        out.push(e);
    }
    out
}

/// Speech recognition whose connection fails for good after `after`.
#[derive(Clone)]
pub struct FailingStt {
    /// When the session fails.
    pub after: Duration,
}

impl SttProvider for FailingStt {
    fn name(&self) -> &str {
        "failing-stt"
    }

    fn run(
        &self,
        _params: SttSessionParams,
        io: SttIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let after = self.after;
        Box::pin(async move {
            let _ = io.events.send(SttEvent::Ready);
            tokio::time::sleep(after).await;
            Err(ProviderError::Network {
                provider: "failing-stt".into(),
                detail: "connection reset by peer".into(),
            })
        })
    }
}

/// A silent line that records when each of its call's ticks ran.
pub struct TickClock {
    /// The instant of every tick, in order.
    pub ticks: Arc<Mutex<Vec<tokio::time::Instant>>>,
    /// A tick (counted from 1) whose caller side keeps the CPU busy this long on the wall
    /// clock: a slow decoder, or a thread taken off its CPU in the middle of a tick.
    pub slow_tick: Option<(usize, Duration)>,
}

impl TickClock {
    /// A clock logging into `ticks`, with no slow tick.
    pub fn new(ticks: Arc<Mutex<Vec<tokio::time::Instant>>>) -> Self {
        TickClock {
            ticks,
            slow_tick: None,
        }
    }
}

impl MediaPort for TickClock {
    fn recv(
        &mut self,
        _epoch: tokio::time::Instant,
    ) -> impl std::future::Future<Output = io::Result<MediaInput>> + Send + '_ {
        std::future::pending()
    }

    fn caller_frame(&mut self, _now: Duration, out: &mut AudioFrame) -> bool {
        let n = {
            let mut ticks = self.ticks.lock().unwrap();
            ticks.push(tokio::time::Instant::now());
            ticks.len()
        };
        if let Some((tick, busy)) = self.slow_tick {
            if n == tick {
                let start = std::time::Instant::now();
                while start.elapsed() < busy {
                    std::hint::spin_loop();
                }
            }
        }
        out.reset(SampleRate::Hz16000, FrameOrigin::Received);
        true
    }

    fn send_agent_frame(&mut self, _now: Duration, _frame: Option<&AudioFrame>) -> io::Result<()> {
        Ok(())
    }

    fn caller_rate(&self) -> SampleRate {
        SampleRate::Hz16000
    }
}
