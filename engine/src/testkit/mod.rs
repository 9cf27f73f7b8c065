//! In-process scripted providers for tests, examples and load measurement.
//!
//! They implement the real provider traits with deterministic behaviour and
//! configurable latencies: STT hears utterances in the real caller audio and
//! answers with scripted text, the LLM follows rules, TTS renders a voiced
//! signal with word timings. They never touch the network.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use voxline_codecs::SampleRate;

use crate::provider::{
    BoxFuture, LlmEvent, LlmProvider, LlmRequest, ProviderError, Role, SpokenSpan, SttControl,
    SttEvent, SttIo, SttProvider, SttSessionParams, TokenUsage, ToolCallRequest, Transcript,
    TtsEvent, TtsInput, TtsParams, TtsProvider, Word,
};

pub mod caller;

/// How long a stand-in's scripted waits really took. tokio's timers wake on whole
/// milliseconds and after the runtime gets to them, so a configured 10 ms wait takes 10 to 11
/// ms; that excess is the stand-in provider's latency, not the engine's. Load measurements
/// read it here to split what the wire shows between the providers and the engine.
#[derive(Debug, Default)]
pub struct WaitLog {
    count: AtomicU64,
    configured_ns: AtomicU64,
    actual_ns: AtomicU64,
}

impl WaitLog {
    /// Waits `d` on the tokio clock and records how long it took.
    pub async fn sleep(&self, d: Duration) {
        let start = tokio::time::Instant::now();
        tokio::time::sleep(d).await;
        let took = start.elapsed();
        self.count.fetch_add(1, Ordering::Relaxed);
        self.configured_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.actual_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Waits recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Mean time a wait took beyond its configured length; `None` before any wait.
    pub fn mean_excess(&self) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let actual = self.actual_ns.load(Ordering::Relaxed);
        let configured = self.configured_ns.load(Ordering::Relaxed);
        Some(Duration::from_nanos(actual.saturating_sub(configured) / n))
    }
}

/// Speech recognition stand-in: detects utterances in the caller audio by energy
/// and emits the next scripted transcript for each one.
#[derive(Clone)]
pub struct ScriptedStt {
    script: Arc<Mutex<VecDeque<String>>>,
    /// Delay between the end of an utterance (or a finalize) and its final transcript.
    pub final_latency: Duration,
    /// Frames louder than this (dBFS) count as speech.
    pub speech_dbfs: f32,
    /// Silence that ends an utterance.
    pub utterance_gap: Duration,
    /// Where the final-transcript waits are recorded.
    pub final_waits: Arc<WaitLog>,
}

impl ScriptedStt {
    /// Utterances are transcribed as `script` entries, in order.
    pub fn new<S: Into<String>>(script: impl IntoIterator<Item = S>) -> Self {
        ScriptedStt {
            script: Arc::new(Mutex::new(script.into_iter().map(Into::into).collect())),
            final_latency: Duration::from_millis(150),
            speech_dbfs: -45.0,
            utterance_gap: Duration::from_millis(500),
            final_waits: Arc::default(),
        }
    }
}

impl SttProvider for ScriptedStt {
    fn name(&self) -> &str {
        "scripted-stt"
    }

    fn run(
        &self,
        _params: SttSessionParams,
        io: SttIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let this = self.clone();
        Box::pin(async move {
            let SttIo {
                audio,
                mut control,
                events,
            } = io;
            let _ = events.send(SttEvent::Ready);
            let frame = Duration::from_millis(20);
            let mut pos = Duration::ZERO;
            let mut voiced = Duration::ZERO;
            let mut gap = Duration::ZERO;
            let mut start = Duration::ZERO;
            let mut interim_sent = false;
            let mut in_utterance = false;
            let next_text = |this: &ScriptedStt| {
                this.script
                    .lock()
                    .ok()
                    .and_then(|mut s| s.pop_front())
                    .unwrap_or_default()
            };
            let mut current: Option<String> = None;
            loop {
                tokio::select! {
                    frame_in = audio.recv() => {
                        let Some(f) = frame_in else { break };
                        let loud = f.level_dbfs() >= this.speech_dbfs;
                        if loud {
                            if !in_utterance {
                                in_utterance = true;
                                start = pos;
                                voiced = Duration::ZERO;
                                interim_sent = false;
                                let _ = events.send(SttEvent::SpeechStarted);
                            }
                            voiced += frame;
                            gap = Duration::ZERO;
                        } else if in_utterance {
                            gap += frame;
                        }
                        pos += frame;
                        if in_utterance && !interim_sent && voiced >= Duration::from_millis(400) {
                            interim_sent = true;
                            let text = current.get_or_insert_with(|| next_text(&this)).clone();
                            let half: Vec<&str> = text.split_whitespace().collect();
                            let half = half[..half.len().div_ceil(2)].join(" ");
                            let _ = events.send(SttEvent::Transcript(transcript(&half, false, false, start, pos)));
                        }
                        if in_utterance && gap >= this.utterance_gap {
                            in_utterance = false;
                            let text = current.take().unwrap_or_else(|| next_text(&this));
                            this.final_waits.sleep(this.final_latency).await;
                            let _ = events.send(SttEvent::Transcript(transcript(&text, true, false, start, pos - gap)));
                            let _ = events.send(SttEvent::UtteranceEnd);
                        }
                    }
                    ctl = control.recv() => match ctl {
                        Some(SttControl::Finalize) => {
                            if in_utterance || current.is_some() {
                                in_utterance = false;
                                let text = current.take().unwrap_or_else(|| next_text(&this));
                                this.final_waits.sleep(this.final_latency).await;
                                let mut t = transcript(&text, true, true, start, pos);
                                t.from_finalize = true;
                                let _ = events.send(SttEvent::Transcript(t));
                            }
                        }
                        Some(SttControl::Close) | None => break,
                    }
                }
            }
            Ok(())
        })
    }
}

fn transcript(
    text: &str,
    is_final: bool,
    speech_final: bool,
    start: Duration,
    end: Duration,
) -> Transcript {
    let words: Vec<&str> = text.split_whitespace().collect();
    let span = end.saturating_sub(start);
    let per = if words.is_empty() {
        Duration::ZERO
    } else {
        span / words.len() as u32
    };
    Transcript {
        text: text.to_string(),
        is_final,
        speech_final,
        from_finalize: false,
        confidence: 0.95,
        words: words
            .iter()
            .enumerate()
            .map(|(i, w)| Word {
                text: w.to_string(),
                start: start + per * i as u32,
                end: start + per * (i as u32 + 1),
                confidence: 0.95,
            })
            .collect(),
    }
}

/// One step of a scripted model reply.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptedReply {
    /// Reply with this text (streamed word by word).
    Text(String),
    /// Call a tool with these JSON arguments.
    Tool {
        /// Function name.
        name: String,
        /// Arguments JSON text.
        arguments: String,
    },
}

type Rule = Arc<dyn Fn(&LlmRequest) -> Vec<ScriptedReply> + Send + Sync>;

/// Language-model stand-in: a rule maps the request to a reply, streamed with latencies.
#[derive(Clone)]
pub struct ScriptedLlm {
    rule: Rule,
    /// Delay before the first token.
    pub first_token_latency: Duration,
    /// Delay between tokens (words).
    pub token_interval: Duration,
    /// Requests seen, for assertions.
    pub requests: Arc<Mutex<Vec<LlmRequest>>>,
    /// Keep every request in `requests` (default). Long-running load turns it off: each request
    /// holds the whole history, so the log would grow with the square of the turns.
    pub record_requests: bool,
    /// Where the first-token waits are recorded.
    pub first_token_waits: Arc<WaitLog>,
    /// Where the waits between tokens are recorded.
    pub token_waits: Arc<WaitLog>,
}

impl ScriptedLlm {
    /// A model whose reply is computed by `rule`.
    pub fn new(rule: impl Fn(&LlmRequest) -> Vec<ScriptedReply> + Send + Sync + 'static) -> Self {
        ScriptedLlm {
            rule: Arc::new(rule),
            first_token_latency: Duration::from_millis(200),
            token_interval: Duration::from_millis(10),
            requests: Arc::new(Mutex::new(Vec::new())),
            record_requests: true,
            first_token_waits: Arc::default(),
            token_waits: Arc::default(),
        }
    }

    /// A model that always answers with the same text.
    pub fn always(text: impl Into<String>) -> Self {
        let text = text.into();
        Self::new(move |_| vec![ScriptedReply::Text(text.clone())])
    }

    /// The text of the last user message of a request.
    pub fn last_user(request: &LlmRequest) -> &str {
        request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
}

impl LlmProvider for ScriptedLlm {
    fn name(&self) -> &str {
        "scripted-llm"
    }

    fn stream(
        &self,
        request: LlmRequest,
        events: mpsc::UnboundedSender<LlmEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let replies = (self.rule)(&request);
        if self.record_requests {
            if let Ok(mut r) = self.requests.lock() {
                r.push(request);
            }
        }
        let first = self.first_token_latency;
        let interval = self.token_interval;
        let (first_waits, token_waits) = (self.first_token_waits.clone(), self.token_waits.clone());
        Box::pin(async move {
            first_waits.sleep(first).await;
            let _ = events.send(LlmEvent::FirstByte);
            let mut completion = 0u64;
            for (i, reply) in replies.into_iter().enumerate() {
                match reply {
                    ScriptedReply::Text(text) => {
                        for (j, word) in text.split_inclusive(' ').enumerate() {
                            if i + j > 0 {
                                token_waits.sleep(interval).await;
                            }
                            completion += 1;
                            let _ = events.send(LlmEvent::TextDelta(word.to_string()));
                        }
                    }
                    ScriptedReply::Tool { name, arguments } => {
                        completion += 8;
                        let _ = events.send(LlmEvent::ToolCall(ToolCallRequest {
                            id: format!("call_{}_{}", name, i),
                            name,
                            arguments,
                        }));
                    }
                }
            }
            let _ = events.send(LlmEvent::Usage(TokenUsage {
                prompt_tokens: 100,
                completion_tokens: completion,
            }));
            let _ = events.send(LlmEvent::Done);
            Ok(())
        })
    }
}

/// Text-to-speech stand-in: renders a voiced harmonic signal, about 60 ms per
/// character, in 100 ms chunks, with word timings.
#[derive(Clone)]
pub struct ScriptedTts {
    /// Delay before the first audio of each text chunk.
    pub first_byte_latency: Duration,
    /// Audio per character of text.
    pub per_char: Duration,
    /// The rate of `clip`. Without a clip the stand-in synthesises at the rate the call asks
    /// for ([`TtsParams::preferred_rate`]), as a provider with every rate would.
    pub rate: SampleRate,
    /// Render faster than real time (like real TTS), chunk by chunk with no pacing.
    pub chunk: Duration,
    /// Pre-rendered audio at `rate` to speak instead of synthesising [`voiced_signal`], looped
    /// as needed. Rendering then costs a copy, so load measurements do not count the stand-in's
    /// own synthesis as engine work. `None` (default) synthesises.
    pub clip: Option<Arc<[i16]>>,
    /// Where the first-audio waits are recorded.
    pub first_byte_waits: Arc<WaitLog>,
}

impl Default for ScriptedTts {
    fn default() -> Self {
        ScriptedTts {
            first_byte_latency: Duration::from_millis(120),
            per_char: Duration::from_millis(60),
            rate: SampleRate::Hz24000,
            chunk: Duration::from_millis(100),
            clip: None,
            first_byte_waits: Arc::default(),
        }
    }
}

/// Copies `out.len()` samples of `clip` starting at `start_sample`, wrapping at its end.
fn copy_looped(clip: &[i16], start_sample: usize, out: &mut [i16]) {
    if clip.is_empty() {
        out.fill(0);
        return;
    }
    let mut at = start_sample % clip.len();
    let mut done = 0;
    while done < out.len() {
        let n = (clip.len() - at).min(out.len() - done);
        out[done..done + n].copy_from_slice(&clip[at..at + n]);
        done += n;
        at = 0;
    }
}

/// A voiced, speech-like test signal (harmonics of a gliding pitch with a syllable envelope).
pub fn voiced_signal(rate: SampleRate, start_sample: usize, out: &mut [i16]) {
    let hz = rate.hz() as f32;
    for (i, s) in out.iter_mut().enumerate() {
        let t = (start_sample + i) as f32 / hz;
        let f0 = 140.0 + 20.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
        let syllable = 0.55 + 0.45 * (2.0 * std::f32::consts::PI * 4.0 * t).sin().abs();
        let mut v = 0.0;
        for k in 1..6 {
            v += (2.0 * std::f32::consts::PI * f0 * k as f32 * t).sin() / k as f32;
        }
        *s = (v * syllable * 6000.0) as i16;
    }
}

impl TtsProvider for ScriptedTts {
    fn name(&self) -> &str {
        "scripted-tts"
    }

    fn synthesize(
        &self,
        params: TtsParams,
        mut input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let this = self.clone();
        Box::pin(async move {
            let mut produced = 0usize;
            // A clip is spoken at its own rate; synthesis follows what the call asks for.
            let rate = if this.clip.is_some() {
                this.rate
            } else {
                params.preferred_rate
            };
            while let Some(item) = input.recv().await {
                let text = match item {
                    TtsInput::Text(t) => t,
                    TtsInput::End => break,
                };
                this.first_byte_waits.sleep(this.first_byte_latency).await;
                let offset = Duration::from_micros(produced as u64 * 1_000_000 / rate.hz() as u64);
                let mut spans = Vec::new();
                let mut at = offset;
                for word in text.split_inclusive(' ') {
                    let d = this.per_char * word.chars().count() as u32;
                    spans.push(SpokenSpan {
                        text: word.to_string(),
                        start: at,
                        end: at + d,
                    });
                    at += d;
                }
                let _ = events.send(TtsEvent::Alignment(spans));
                let total =
                    ((at - offset).as_micros() as u64 * rate.hz() as u64 / 1_000_000) as usize;
                let chunk = (this.chunk.as_micros() as u64 * rate.hz() as u64 / 1_000_000) as usize;
                let mut done = 0;
                while done < total {
                    let n = chunk.min(total - done);
                    let mut samples = vec![0i16; n];
                    match this.clip.as_deref() {
                        Some(clip) => copy_looped(clip, produced, &mut samples),
                        None => voiced_signal(rate, produced, &mut samples),
                    }
                    produced += n;
                    done += n;
                    let _ = events.send(TtsEvent::Audio { rate, samples });
                    tokio::task::yield_now().await;
                }
            }
            let _ = events.send(TtsEvent::Done);
            Ok(())
        })
    }
}

/// Speech-to-speech stand-in: hears utterances in the caller audio by energy (like a
/// server VAD), transcribes them from a script and answers each with a scripted reply
/// rendered as voiced audio, streamed in real time. Records the controls it receives.
#[derive(Clone)]
pub struct ScriptedRealtime {
    script: Arc<Mutex<VecDeque<(String, String)>>>,
    /// Controls received from the engine, for assertions.
    pub controls: Arc<Mutex<Vec<crate::provider::RealtimeControl>>>,
    /// Delay between the end of the caller's utterance and the first reply audio.
    pub response_latency: Duration,
    /// Audio per character of reply text.
    pub per_char: Duration,
}

impl ScriptedRealtime {
    /// Each caller utterance gets the next `(transcript, reply)` pair.
    pub fn new<S: Into<String>>(turns: impl IntoIterator<Item = (S, S)>) -> Self {
        ScriptedRealtime {
            script: Arc::new(Mutex::new(
                turns
                    .into_iter()
                    .map(|(a, b)| (a.into(), b.into()))
                    .collect(),
            )),
            controls: Arc::new(Mutex::new(Vec::new())),
            response_latency: Duration::from_millis(300),
            per_char: Duration::from_millis(60),
        }
    }
}

impl crate::provider::RealtimeProvider for ScriptedRealtime {
    fn name(&self) -> &str {
        "scripted-realtime"
    }

    fn run(
        &self,
        _params: crate::provider::RealtimeParams,
        io: crate::provider::RealtimeIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        use crate::provider::{RealtimeControl, RealtimeEvent};
        let this = self.clone();
        Box::pin(async move {
            let crate::provider::RealtimeIo {
                audio,
                mut control,
                events,
            } = io;
            let _ = events.send(RealtimeEvent::Ready);
            let frame = Duration::from_millis(20);
            let rate = SampleRate::Hz24000;
            let mut in_speech = false;
            let mut voiced = Duration::ZERO;
            let mut gap = Duration::ZERO;
            let mut item = 0u32;
            // The reply being streamed: (item id, samples left, samples sent).
            let mut reply: Option<(String, usize, usize)> = None;
            let mut pending_reply: Option<(tokio::time::Instant, String)> = None;
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    f = audio.recv() => {
                        let Some(f) = f else { break };
                        if f.level_dbfs() >= -45.0 {
                            voiced += frame;
                            gap = Duration::ZERO;
                            if !in_speech && voiced >= Duration::from_millis(100) {
                                in_speech = true;
                                let _ = events.send(RealtimeEvent::SpeechStarted);
                            }
                        } else {
                            gap += frame;
                            if gap >= Duration::from_millis(200) {
                                voiced = Duration::ZERO;
                            }
                            if in_speech && gap >= Duration::from_millis(500) {
                                in_speech = false;
                                let _ = events.send(RealtimeEvent::SpeechStopped);
                                let turn = this.script.lock().ok().and_then(|mut s| s.pop_front());
                                if let Some((heard, answer)) = turn {
                                    item += 1;
                                    let _ = events.send(RealtimeEvent::UserTranscript {
                                        item_id: format!("user_{item}"),
                                        text: heard,
                                        is_final: true,
                                    });
                                    pending_reply = Some((tokio::time::Instant::now() + this.response_latency, answer));
                                }
                            }
                        }
                    }
                    c = control.recv() => {
                        let Some(c) = c else { break };
                        if let Ok(mut log) = this.controls.lock() {
                            log.push(c.clone());
                        }
                        match c {
                            RealtimeControl::Cancel => {
                                if let Some((id, _, _)) = reply.take() {
                                    let _ = events.send(RealtimeEvent::ResponseDone { status: format!("cancelled {id}"), usage: None });
                                }
                            }
                            RealtimeControl::Close => break,
                            _ => {}
                        }
                    }
                    _ = ticker.tick() => {
                        if let Some((due, text)) = pending_reply.take() {
                            if tokio::time::Instant::now() >= due {
                                let id = format!("agent_{item}");
                                let _ = events.send(RealtimeEvent::AgentTranscriptDelta { item_id: id.clone(), delta: text.clone() });
                                let total = (this.per_char.as_micros() as u64 * text.chars().count() as u64 * rate.hz() as u64 / 1_000_000) as usize;
                                reply = Some((id, total, 0));
                            } else {
                                pending_reply = Some((due, text));
                            }
                        }
                        // Stream 100 ms of audio per tick, like a realtime server.
                        if let Some((id, left, sent)) = reply.as_mut() {
                            let n = (*left).min(rate.hz() as usize / 10);
                            let mut samples = vec![0i16; n];
                            voiced_signal(rate, *sent, &mut samples);
                            *left -= n;
                            *sent += n;
                            let _ = events.send(RealtimeEvent::AgentAudio { item_id: id.clone(), rate, samples });
                            if *left == 0 {
                                reply = None;
                                let _ = events.send(RealtimeEvent::ResponseDone {
                                    status: "completed".into(),
                                    usage: Some(TokenUsage { prompt_tokens: 50, completion_tokens: 20 }),
                                });
                            }
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// Level of each 20 ms frame of `samples` (mono PCM16 at `rate_hz`) in dBFS, floored at
/// [`ENVELOPE_FLOOR_DBFS`]; a trailing partial frame is ignored. The energy envelope of
/// speech survives codecs, resampling and delay, so it is what round-trip checks compare.
///
/// The floor makes digital silence and a codec's noise floor (both far below speech) the
/// same value, so comparisons measure the speech, not how quiet the pauses are.
pub fn level_envelope(samples: &[i16], rate_hz: u32) -> Vec<f32> {
    let floor = f64::from(ENVELOPE_FLOOR_DBFS);
    let frame = (rate_hz / 50).max(1) as usize;
    samples
        .chunks_exact(frame)
        .map(|c| {
            let power =
                c.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / c.len() as f64;
            let db = 10.0 * (power / (32768.0 * 32768.0)).max(1e-12).log10();
            db.max(floor) as f32
        })
        .collect()
}

/// Frames quieter than this count as silence in [`level_envelope`] (speech frames sit around
/// -40 to -15 dBFS; a phone line's noise floor and codec noise well below -60).
pub const ENVELOPE_FLOOR_DBFS: f32 = -60.0;

/// How well a test signal's envelope follows a reference envelope.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvelopeMatch {
    /// Pearson correlation of the two envelopes at the best lag (1 = identical shape).
    pub correlation: f64,
    /// Frames by which the test signal lags the reference at the best alignment.
    pub lag_frames: isize,
    /// Frames the envelopes overlapped at that lag.
    pub overlap_frames: usize,
}

/// Finds the lag within `±max_lag_frames` at which `test` best follows `reference`
/// (`test[i + lag]` against `reference[i]`), over an overlap of at least half the reference.
/// `None` when no lag leaves enough overlap or an envelope is flat.
pub fn match_envelopes(
    reference: &[f32],
    test: &[f32],
    max_lag_frames: usize,
) -> Option<EnvelopeMatch> {
    let min_overlap = (reference.len() / 2).max(2);
    let max_lag = max_lag_frames as isize;
    let mut best: Option<EnvelopeMatch> = None;
    for lag in -max_lag..=max_lag {
        let pairs: Vec<(f64, f64)> = reference
            .iter()
            .enumerate()
            .filter_map(|(i, &r)| {
                let j = i as isize + lag;
                (j >= 0)
                    .then(|| test.get(j as usize))
                    .flatten()
                    .map(|&t| (f64::from(r), f64::from(t)))
            })
            .collect();
        if pairs.len() < min_overlap {
            continue;
        }
        let Some(correlation) = pearson(&pairs) else {
            continue;
        };
        if best.is_none_or(|b| correlation > b.correlation) {
            best = Some(EnvelopeMatch {
                correlation,
                lag_frames: lag,
                overlap_frames: pairs.len(),
            });
        }
    }
    best
}

/// Pearson correlation of paired values; `None` when either side is constant.
fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    let (sa, sb) = pairs
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (ma, mb) = (sa / n, sb / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    // A variance at rounding-error level means a flat envelope.
    (va > 1e-9 && vb > 1e-9).then(|| cov / (va.sqrt() * vb.sqrt()))
}

#[cfg(test)]
mod tests {
    #[tokio::test(start_paused = true)]
    async fn a_wait_log_records_how_long_waits_took_beyond_their_length() {
        let log = WaitLog::default();
        assert_eq!(log.mean_excess(), None);
        log.sleep(Duration::from_millis(10)).await;
        log.sleep(Duration::from_millis(30)).await;
        assert_eq!(log.count(), 2);
        // Paused time: every wait ends exactly on its deadline.
        assert_eq!(log.mean_excess(), Some(Duration::ZERO));
    }

    use super::*;

    #[test]
    fn envelope_match_finds_the_delay_of_a_copy() {
        let mut signal = vec![0i16; 16_000];
        voiced_signal(SampleRate::Hz16000, 0, &mut signal[4000..12_000]);
        let mut delayed = vec![0i16; 960];
        delayed.extend_from_slice(&signal);
        let a = level_envelope(&signal, 16_000);
        let b = level_envelope(&delayed, 16_000);
        assert_eq!(a.len(), 50);
        let m = match_envelopes(&a, &b, 10).expect("overlap");
        assert_eq!(m.lag_frames, 3);
        assert!(m.correlation > 0.999, "{m:?}");
        assert!(
            match_envelopes(&a, &[ENVELOPE_FLOOR_DBFS; 50], 10).is_none(),
            "flat test envelope"
        );
    }

    #[test]
    fn clip_copies_wrap_around() {
        let clip = [1i16, 2, 3];
        let mut out = [0i16; 7];
        copy_looped(&clip, 2, &mut out);
        assert_eq!(out, [3, 1, 2, 3, 1, 2, 3]);
        copy_looped(&[], 0, &mut out);
        assert_eq!(out, [0; 7]);
    }
}
