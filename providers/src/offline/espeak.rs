//! `espeak`: offline text-to-speech through libespeak-ng, the TTS a newcomer hears with no keys.
//!
//! libespeak-ng keeps global state and is not thread-safe, so the process runs exactly one
//! synthesis thread, started on first use and fed through a channel. Each `TtsInput::Text`
//! chunk becomes one job as soon as it arrives: the thread streams the chunk's audio (22 050 Hz,
//! espeak-ng's fixed rate) and its word events back while it synthesises, the utterance task
//! resamples to 24 kHz and forwards `TtsEvent::Audio`, then sends `TtsEvent::Alignment` spans
//! for the chunk (word start times from espeak-ng's word events, offset by the audio already
//! delivered). Jobs from concurrent calls queue behind each other; espeak-ng synthesises many
//! times faster than real time, so a sentence waits milliseconds.
//!
//! Cancellation: the engine drops the utterance future on barge-in. That closes the job's reply
//! channel; the synthesis callback notices on its next audio block (100 ms of audio) and
//! tells espeak-ng to stop, so the thread is free for the next job at once. Jobs whose
//! utterance is gone before they start are skipped.
//!
//! Needs the Debian package `libespeak-ng-dev` at build time (and `libespeak-ng1` plus
//! `espeak-ng-data` at run time); `scripts/setup.sh` installs it. Without it the crate still
//! builds and the provider answers every utterance with `ProviderError::Config` naming the
//! package.

use std::time::Duration;

use tokio::sync::mpsc;
use voxline_codecs::SampleRate;
use voxline_engine::config::TtsConfig;
use voxline_engine::provider::{
    BoxFuture, ProviderError, SpokenSpan, TtsEvent, TtsInput, TtsParams, TtsProvider,
};

use super::resample::StreamResampler;

/// The provider's config name.
pub const PROVIDER: &str = "espeak";

/// espeak-ng's native output rate in Hz.
pub const ESPEAK_NATIVE_RATE: u32 = 22_050;

/// The rate this provider delivers audio at.
pub const OUTPUT_RATE: SampleRate = SampleRate::Hz24000;

/// espeak-ng's normal speaking rate in words per minute (speed 1.0).
pub const NORMAL_WPM: f64 = 175.0;

/// Slowest rate espeak-ng accepts, in words per minute.
pub const MIN_WPM: u32 = 80;

/// Fastest rate espeak-ng accepts, in words per minute.
pub const MAX_WPM: u32 = 450;

/// Samples at or below this magnitude count as silence when finding where speech ends.
const SILENCE_LEVEL: u16 = 200;

/// How an [`EspeakTts`] speaks.
#[derive(Clone, Debug, PartialEq)]
pub struct EspeakConfig {
    /// espeak-ng voice name, e.g. `en-us` (default), `en`, `nl`, `en-us+f3`.
    pub voice: String,
    /// Speaking speed relative to normal (1.0 = 175 words per minute); clamped to espeak-ng's
    /// 80–450 wpm range.
    pub speed: f64,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        EspeakConfig {
            voice: "en-us".to_owned(),
            speed: 1.0,
        }
    }
}

impl EspeakConfig {
    /// The offline stand-in for an assistant's `tts_config`: its `speed` (or Google's
    /// `speaking_rate`) and, when `language` is set, the espeak-ng voice for that language
    /// (`en`/`en-US` → `en-us`, `en-GB` → `en-gb`, `nl-NL` → `nl`). Voice ids of network
    /// providers mean nothing to espeak-ng and are ignored.
    pub fn from_tts_config(tts: Option<&TtsConfig>) -> Self {
        let mut config = EspeakConfig::default();
        let Some(tts) = tts else {
            return config;
        };
        if let Some(speed) = tts.speed.or(tts.speaking_rate) {
            if speed.is_finite() && speed > 0.0 {
                config.speed = speed;
            }
        }
        if let Some(language) = tts.language.as_deref() {
            config.voice = voice_for_language(language);
        }
        config
    }

    /// The speaking rate in words per minute that espeak-ng is given.
    pub fn words_per_minute(&self) -> u32 {
        let speed = if self.speed.is_finite() && self.speed > 0.0 {
            self.speed
        } else {
            1.0
        };
        ((NORMAL_WPM * speed).round() as u32).clamp(MIN_WPM, MAX_WPM)
    }
}

/// The espeak-ng voice for a BCP 47 language tag.
fn voice_for_language(language: &str) -> String {
    let lower = language.trim().replace('_', "-").to_ascii_lowercase();
    match lower.as_str() {
        "" | "en" | "en-us" => "en-us".to_owned(),
        "en-gb" | "en-uk" => "en-gb".to_owned(),
        other => match other.split_once('-') {
            Some(("en", region)) => format!("en-{region}"),
            Some((base, _)) => base.to_owned(),
            None => other.to_owned(),
        },
    }
}

/// Offline streaming TTS through libespeak-ng, delivering 24 kHz PCM with word timings.
#[derive(Clone, Debug, Default)]
pub struct EspeakTts {
    config: EspeakConfig,
}

impl EspeakTts {
    /// A provider speaking with `config`.
    pub fn new(config: EspeakConfig) -> Self {
        EspeakTts { config }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EspeakConfig {
        &self.config
    }

    /// Starts the synthesis thread if needed and checks that the library and the voice work;
    /// a `ProviderError::Config` says what to install.
    pub async fn check(&self) -> Result<(), ProviderError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        synth::submit(synth::Job {
            text: String::new(),
            voice: self.config.voice.clone(),
            words_per_minute: self.config.words_per_minute(),
            reply: tx,
        })?;
        while let Some(msg) = rx.recv().await {
            match msg {
                synth::Msg::Failed(e) => return Err(e),
                synth::Msg::Finished => return Ok(()),
                synth::Msg::Begin { .. } | synth::Msg::Audio(_) | synth::Msg::Word { .. } => {}
            }
        }
        Err(thread_gone())
    }
}

impl TtsProvider for EspeakTts {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn synthesize(
        &self,
        _params: TtsParams,
        mut input: mpsc::UnboundedReceiver<TtsInput>,
        events: mpsc::UnboundedSender<TtsEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let config = self.config.clone();
        Box::pin(async move {
            let mut utterance = Utterance::new(config, events);
            while let Some(item) = input.recv().await {
                match item {
                    TtsInput::Text(text) => utterance.speak(text).await?,
                    TtsInput::End => break,
                }
            }
            // `End`, or the engine dropped the text channel: either way nothing more comes.
            let _ = utterance.events.send(TtsEvent::Done);
            Ok(())
        })
    }
}

/// One utterance in progress: where its audio stands and how to resample it.
struct Utterance {
    config: EspeakConfig,
    events: mpsc::UnboundedSender<TtsEvent>,
    /// Output samples (at 24 kHz) delivered so far.
    delivered: u64,
    /// The resampler for the rate the synthesis thread reported.
    resampler: Option<(u32, StreamResampler)>,
}

impl Utterance {
    fn new(config: EspeakConfig, events: mpsc::UnboundedSender<TtsEvent>) -> Self {
        Utterance {
            config,
            events,
            delivered: 0,
            resampler: None,
        }
    }

    fn elapsed(&self) -> Duration {
        samples_to_duration(self.delivered, OUTPUT_RATE.hz())
    }

    /// Synthesises one text chunk, streaming its audio, then its alignment.
    async fn speak(&mut self, text: String) -> Result<(), ProviderError> {
        let start = self.elapsed();
        if text.trim().is_empty() {
            // Nothing to say, but keep every character accounted for in the alignment.
            if !text.is_empty() {
                let _ = self.events.send(TtsEvent::Alignment(vec![SpokenSpan {
                    text,
                    start,
                    end: start,
                }]));
            }
            return Ok(());
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        synth::submit(synth::Job {
            text: text.replace('\0', " "),
            voice: self.config.voice.clone(),
            words_per_minute: self.config.words_per_minute(),
            reply: tx,
        })?;
        let mut rate = ESPEAK_NATIVE_RATE;
        let mut native_samples: u64 = 0;
        let mut last_loud: u64 = 0;
        let mut words: Vec<(usize, Duration)> = Vec::new();
        let mut out = Vec::new();
        loop {
            let Some(msg) = rx.recv().await else {
                return Err(thread_gone());
            };
            match msg {
                synth::Msg::Begin { rate: r } => {
                    rate = r;
                    if self.resampler.as_ref().is_none_or(|(have, _)| *have != r) {
                        let resampler =
                            StreamResampler::new(r, OUTPUT_RATE.hz(), 20).map_err(|detail| {
                                ProviderError::Config {
                                    provider: PROVIDER.to_owned(),
                                    detail,
                                }
                            })?;
                        self.resampler = Some((r, resampler));
                    }
                }
                synth::Msg::Audio(samples) => {
                    if let Some(i) = samples
                        .iter()
                        .rposition(|s| s.unsigned_abs() > SILENCE_LEVEL)
                    {
                        last_loud = native_samples + i as u64 + 1;
                    }
                    native_samples += samples.len() as u64;
                    self.resample(&samples, false, &mut out)?;
                    self.deliver(&mut out);
                }
                synth::Msg::Word { char_index, at } => words.push((char_index, at)),
                synth::Msg::Finished => break,
                synth::Msg::Failed(e) => return Err(e),
            }
        }
        // Flush the filter: chunks end in espeak-ng's clause pause, so a restart costs nothing.
        self.resample(&[], true, &mut out)?;
        self.deliver(&mut out);
        let speech_end = samples_to_duration(last_loud, rate);
        let spans = align(&text, &words, start, speech_end);
        if !spans.is_empty() {
            let _ = self.events.send(TtsEvent::Alignment(spans));
        }
        Ok(())
    }

    fn resample(
        &mut self,
        input: &[i16],
        flush: bool,
        out: &mut Vec<i16>,
    ) -> Result<(), ProviderError> {
        let Some((_, resampler)) = self.resampler.as_mut() else {
            return Ok(());
        };
        let result = if flush {
            resampler.finish(out)
        } else {
            resampler.push(input, out)
        };
        result.map_err(|detail| ProviderError::Server {
            provider: PROVIDER.to_owned(),
            code: None,
            message: detail,
        })
    }

    fn deliver(&mut self, out: &mut Vec<i16>) {
        if out.is_empty() {
            return;
        }
        let samples = std::mem::take(out);
        self.delivered += samples.len() as u64;
        let _ = self.events.send(TtsEvent::Audio {
            rate: OUTPUT_RATE,
            samples,
        });
    }
}

fn samples_to_duration(samples: u64, rate: u32) -> Duration {
    Duration::from_micros(samples.saturating_mul(1_000_000) / u64::from(rate.max(1)))
}

/// Word spans covering all of `text`: span `i` runs from word `i`'s first character to word
/// `i+1`'s (so punctuation and spaces ride with the word before them, and the first span takes
/// any leading characters); times are the word starts, the last word ending where the speech
/// does. `words` holds (character index, start within the chunk) in speaking order.
fn align(
    text: &str,
    words: &[(usize, Duration)],
    offset: Duration,
    speech_end: Duration,
) -> Vec<SpokenSpan> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    // Word starts strictly increasing in text position and not decreasing in time.
    let mut marks: Vec<(usize, Duration)> = Vec::with_capacity(words.len());
    for &(index, at) in words {
        let index = index.min(n);
        match marks.last() {
            Some(&(prev, _)) if index <= prev => {}
            Some(&(_, prev_at)) => marks.push((index, at.max(prev_at))),
            None => marks.push((index, at)),
        }
    }
    if marks.is_empty() {
        // No word events (only punctuation or symbols): one span for the whole chunk.
        return vec![SpokenSpan {
            text: text.to_owned(),
            start: offset,
            end: offset + speech_end,
        }];
    }
    // The first span also takes whatever precedes the first word.
    marks[0].0 = 0;
    let mut spans = Vec::with_capacity(marks.len());
    for (i, &(from, at)) in marks.iter().enumerate() {
        let (to, end) = match marks.get(i + 1) {
            Some(&(next, next_at)) => (next, next_at),
            None => (n, speech_end.max(at)),
        };
        spans.push(SpokenSpan {
            text: chars[from..to].iter().collect(),
            start: offset + at,
            end: offset + end,
        });
    }
    spans
}

fn thread_gone() -> ProviderError {
    ProviderError::Closed {
        provider: PROVIDER.to_owned(),
        code: None,
        reason: "the espeak-ng synthesis thread stopped".to_owned(),
    }
}

#[cfg(not(voxline_has_espeak))]
fn not_installed() -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER.to_owned(),
        detail: "built without libespeak-ng: install the Debian package libespeak-ng-dev \
                 (scripts/setup.sh does) and rebuild"
            .to_owned(),
    }
}

/// The process-wide synthesis thread and its job protocol.
mod synth {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use voxline_engine::provider::ProviderError;

    /// One chunk of text to speak.
    #[cfg_attr(not(voxline_has_espeak), allow(dead_code))]
    pub(super) struct Job {
        /// UTF-8 text without NUL bytes; empty only to check the voice.
        pub(super) text: String,
        /// espeak-ng voice name.
        pub(super) voice: String,
        /// Speaking rate.
        pub(super) words_per_minute: u32,
        /// Where the results go; closing it cancels the job.
        pub(super) reply: mpsc::UnboundedSender<Msg>,
    }

    /// What the thread reports for a job, in order: `Begin`, then `Audio` and `Word` as they
    /// are produced, then `Finished` (or `Failed` at any point).
    #[cfg_attr(not(voxline_has_espeak), allow(dead_code))]
    pub(super) enum Msg {
        /// Synthesis starts; audio will be at `rate` Hz.
        Begin {
            /// Sample rate of the `Audio` that follows.
            rate: u32,
        },
        /// The next block of mono PCM16 audio.
        Audio(Vec<i16>),
        /// A word starts at character `char_index` of the text, `at` into the job's audio.
        Word {
            /// Zero-based character (not byte) index into the job's text.
            char_index: usize,
            /// Offset from the start of this job's audio.
            at: Duration,
        },
        /// All audio of the job was delivered.
        Finished,
        /// The job could not be synthesised.
        Failed(ProviderError),
    }

    #[cfg(voxline_has_espeak)]
    pub(super) use ffi::submit;

    /// Reports that the library was missing at build time.
    #[cfg(not(voxline_has_espeak))]
    pub(super) fn submit(_job: Job) -> Result<(), ProviderError> {
        Err(super::not_installed())
    }

    /// The FFI layer: the only `unsafe` code of the provider.
    #[cfg(voxline_has_espeak)]
    mod ffi {
        use std::cell::RefCell;
        use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
        use std::sync::mpsc as std_mpsc;
        use std::sync::OnceLock;
        use std::time::Duration;

        use tokio::sync::mpsc;
        use voxline_engine::provider::ProviderError;

        use super::{Job, Msg};
        use crate::offline::espeak::PROVIDER;

        // speak_lib.h, API revision 12 (espeak-ng 1.51).
        const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
        const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
        const POS_CHARACTER: c_int = 1;
        const ESPEAK_CHARS_UTF8: c_uint = 1;
        const ESPEAK_RATE: c_int = 1;
        const EE_OK: c_int = 0;
        const EVENT_LIST_TERMINATED: c_int = 0;
        const EVENT_WORD: c_int = 1;
        /// Milliseconds of audio per callback.
        const BUFFER_MS: c_int = 100;

        /// `espeak_EVENT.id`.
        #[repr(C)]
        #[derive(Clone, Copy)]
        union EventId {
            number: c_int,
            name: *const c_char,
            string: [c_char; 8],
        }

        /// `espeak_EVENT`.
        #[repr(C)]
        struct EspeakEvent {
            kind: c_int,
            unique_identifier: c_uint,
            text_position: c_int,
            length: c_int,
            audio_position: c_int,
            sample: c_int,
            user_data: *mut c_void,
            id: EventId,
        }

        type SynthCallback = unsafe extern "C" fn(
            wav: *mut c_short,
            samples: c_int,
            events: *mut EspeakEvent,
        ) -> c_int;

        // Linked by build.rs (`-l espeak-ng`, found with pkg-config).
        extern "C" {
            fn espeak_Initialize(
                output: c_int,
                buflength: c_int,
                path: *const c_char,
                options: c_int,
            ) -> c_int;
            fn espeak_SetSynthCallback(callback: Option<SynthCallback>);
            fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
            fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
            fn espeak_Synth(
                text: *const c_void,
                size: usize,
                position: c_uint,
                position_type: c_int,
                end_position: c_uint,
                flags: c_uint,
                unique_identifier: *mut c_uint,
                user_data: *mut c_void,
            ) -> c_int;
        }

        /// The job the callback is serving, on the synthesis thread only.
        struct Active {
            reply: mpsc::UnboundedSender<Msg>,
        }

        thread_local! {
            static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
        }

        static QUEUE: OnceLock<std_mpsc::Sender<Job>> = OnceLock::new();

        /// Queues a job for the synthesis thread, starting it on first use.
        pub(in crate::offline::espeak) fn submit(job: Job) -> Result<(), ProviderError> {
            let queue = QUEUE.get_or_init(|| {
                let (tx, rx) = std_mpsc::channel::<Job>();
                // On spawn failure the closure, and `rx` with it, is dropped: every send
                // below then reports the thread as gone. On success the thread is detached.
                let _ = std::thread::Builder::new()
                    .name("voxline-espeak".to_owned())
                    .spawn(move || run(rx));
                tx
            });
            queue
                .send(job)
                .map_err(|_| crate::offline::espeak::thread_gone())
        }

        /// The synthesis thread: initialises espeak-ng once, then serves jobs in order.
        fn run(jobs: std_mpsc::Receiver<Job>) {
            // SAFETY: first and only call, on the thread that makes every other espeak-ng
            // call; a null path selects the installed data; DONT_EXIT makes a missing data
            // folder an error return instead of `exit()`.
            let rate = unsafe {
                espeak_Initialize(
                    AUDIO_OUTPUT_SYNCHRONOUS,
                    BUFFER_MS,
                    std::ptr::null(),
                    ESPEAK_INITIALIZE_DONT_EXIT,
                )
            };
            let init = if rate > 0 {
                // SAFETY: `on_synth` matches `t_espeak_callback` and lives for the program.
                unsafe { espeak_SetSynthCallback(Some(on_synth)) };
                Ok(rate as u32)
            } else {
                Err(ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: "espeak-ng failed to initialise: install the Debian packages \
                             libespeak-ng1 and espeak-ng-data (scripts/setup.sh does)"
                        .to_owned(),
                })
            };
            let mut voice: Option<String> = None;
            let mut wpm: Option<u32> = None;
            while let Ok(job) = jobs.recv() {
                if job.reply.is_closed() {
                    continue;
                }
                let rate = match &init {
                    Ok(rate) => *rate,
                    Err(e) => {
                        let _ = job.reply.send(Msg::Failed(e.clone()));
                        continue;
                    }
                };
                if let Err(e) = configure(&job, &mut voice, &mut wpm) {
                    let _ = job.reply.send(Msg::Failed(e));
                    continue;
                }
                let _ = job.reply.send(Msg::Begin { rate });
                let result = speak(&job);
                let _ = job.reply.send(match result {
                    Ok(()) => Msg::Finished,
                    Err(e) => Msg::Failed(e),
                });
            }
        }

        /// Applies the job's voice and rate when they differ from the current ones.
        fn configure(
            job: &Job,
            voice: &mut Option<String>,
            wpm: &mut Option<u32>,
        ) -> Result<(), ProviderError> {
            if voice.as_deref() != Some(job.voice.as_str()) {
                let name = CString::new(job.voice.as_str()).map_err(|_| ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: "the voice name contains a NUL byte".to_owned(),
                })?;
                // SAFETY: `name` is a valid NUL-terminated string for the call's duration;
                // called on the synthesis thread.
                let status = unsafe { espeak_SetVoiceByName(name.as_ptr()) };
                if status != EE_OK {
                    *voice = None;
                    return Err(ProviderError::Config {
                        provider: PROVIDER.to_owned(),
                        detail: format!(
                            "espeak-ng has no voice `{}` (status {status}): pick one from \
                             `espeak-ng --voices`, or install the Debian package espeak-ng-data",
                            job.voice
                        ),
                    });
                }
                *voice = Some(job.voice.clone());
                *wpm = None;
            }
            if *wpm != Some(job.words_per_minute) {
                // SAFETY: plain integer parameters; called on the synthesis thread.
                let status =
                    unsafe { espeak_SetParameter(ESPEAK_RATE, job.words_per_minute as c_int, 0) };
                if status != EE_OK {
                    return Err(ProviderError::Config {
                        provider: PROVIDER.to_owned(),
                        detail: format!(
                            "espeak-ng rejected the rate {} wpm (status {status})",
                            job.words_per_minute
                        ),
                    });
                }
                *wpm = Some(job.words_per_minute);
            }
            Ok(())
        }

        /// Synthesises the job's text; the callback streams the results.
        fn speak(job: &Job) -> Result<(), ProviderError> {
            if job.text.is_empty() {
                return Ok(());
            }
            let text = CString::new(job.text.as_bytes()).map_err(|_| ProviderError::Protocol {
                provider: PROVIDER.to_owned(),
                detail: "text contains a NUL byte".to_owned(),
            })?;
            let size = text.as_bytes_with_nul().len();
            ACTIVE.with(|a| {
                *a.borrow_mut() = Some(Active {
                    reply: job.reply.clone(),
                })
            });
            // SAFETY: `text` is valid NUL-terminated UTF-8 of `size` bytes and outlives the
            // call (synchronous mode returns after the last callback); the identifier and
            // user data pointers may be null; called on the synthesis thread.
            let status = unsafe {
                espeak_Synth(
                    text.as_ptr().cast(),
                    size,
                    0,
                    POS_CHARACTER,
                    0,
                    ESPEAK_CHARS_UTF8,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            ACTIVE.with(|a| a.borrow_mut().take());
            if status != EE_OK {
                return Err(ProviderError::Server {
                    provider: PROVIDER.to_owned(),
                    code: Some(status.to_string()),
                    message: "espeak_Synth failed".to_owned(),
                });
            }
            Ok(())
        }

        /// espeak-ng's synthesis callback: forwards word events and audio; returns 1 to stop
        /// synthesis when the utterance was dropped.
        unsafe extern "C" fn on_synth(
            wav: *mut c_short,
            samples: c_int,
            events: *mut EspeakEvent,
        ) -> c_int {
            let mut words: Vec<(usize, Duration)> = Vec::new();
            if !events.is_null() {
                let mut event = events;
                loop {
                    // SAFETY: espeak-ng passes an array of events terminated by an event of type
                    // LIST_TERMINATED; `event` points into it, at most at that terminator.
                    let e = unsafe { &*event };
                    if e.kind == EVENT_LIST_TERMINATED {
                        break;
                    }
                    if e.kind == EVENT_WORD && e.text_position > 0 {
                        let at = Duration::from_millis(e.audio_position.max(0) as u64);
                        words.push(((e.text_position - 1) as usize, at));
                    }
                    // SAFETY: the current event was not the terminator, so a next one exists.
                    event = unsafe { event.add(1) };
                }
            }
            let audio: Vec<i16> = if wav.is_null() || samples <= 0 {
                Vec::new()
            } else {
                // SAFETY: espeak-ng guarantees `wav` points to `samples` valid samples for the
                // duration of the callback; we copy them out before returning.
                unsafe { std::slice::from_raw_parts(wav, samples as usize) }.to_vec()
            };
            ACTIVE.with(|a| {
                let active = a.borrow();
                let Some(active) = active.as_ref() else {
                    return 1;
                };
                for (char_index, at) in words {
                    if active.reply.send(Msg::Word { char_index, at }).is_err() {
                        return 1;
                    }
                }
                if !audio.is_empty() && active.reply.send(Msg::Audio(audio)).is_err() {
                    return 1;
                }
                c_int::from(active.reply.is_closed())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_text_in_order() {
        let text = "Hello there, I would.";
        let ms = Duration::from_millis;
        let words = [(0, ms(0)), (6, ms(300)), (13, ms(800)), (15, ms(900))];
        let spans = align(text, &words, ms(1000), ms(1400));
        let joined: String = spans.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, text);
        assert_eq!(spans[0].text, "Hello ");
        assert_eq!(spans[1].text, "there, ");
        assert_eq!(spans[3].text, "would.");
        assert_eq!(spans[0].start, ms(1000));
        assert_eq!(spans[0].end, ms(1300));
        assert_eq!(spans[3].end, ms(2400));
    }

    #[test]
    fn out_of_order_events_are_ignored_and_leading_text_kept() {
        let ms = Duration::from_millis;
        let spans = align(
            "  ok then",
            &[(2, ms(10)), (1, ms(5)), (5, ms(200))],
            ms(0),
            ms(400),
        );
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].text, "  ok ");
        assert_eq!(spans[1].text, "then");
    }

    #[test]
    fn no_word_events_give_one_span() {
        let spans = align("...", &[], Duration::ZERO, Duration::from_millis(100));
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].end, Duration::from_millis(100));
    }

    #[test]
    fn voices_for_languages() {
        assert_eq!(voice_for_language("en-US"), "en-us");
        assert_eq!(voice_for_language("en"), "en-us");
        assert_eq!(voice_for_language("en_GB"), "en-gb");
        assert_eq!(voice_for_language("nl-NL"), "nl");
        assert_eq!(voice_for_language("de"), "de");
    }

    #[test]
    fn speed_maps_to_clamped_wpm() {
        let mut c = EspeakConfig::default();
        assert_eq!(c.words_per_minute(), 175);
        c.speed = 0.1;
        assert_eq!(c.words_per_minute(), MIN_WPM);
        c.speed = 5.0;
        assert_eq!(c.words_per_minute(), MAX_WPM);
        c.speed = f64::NAN;
        assert_eq!(c.words_per_minute(), 175);
    }
}
