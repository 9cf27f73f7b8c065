//! `pocketsphinx`: offline streaming speech recognition with PocketSphinx 0.8 and its US
//! English model, the STT a newcomer gets with no keys.
//!
//! Each session runs its decoder on a dedicated thread (a PocketSphinx decoder must only be
//! used from one thread at a time). The async side forwards caller frames and commands over a
//! channel; the thread resamples them to 16 kHz (the model's rate) and feeds the decoder frame
//! by frame. PocketSphinx's own voice activity detection drives the results:
//!
//! - speech starts (`ps_get_in_speech` false → true): `SttEvent::SpeechStarted`;
//! - while in speech, a partial hypothesis (`is_final: false`) every
//!   [`PocketSphinxConfig::partial_interval`] when it changed;
//! - speech ends (true → false): the utterance is closed and its final hypothesis sent
//!   (`is_final` and `speech_final`), followed by `SttEvent::UtteranceEnd`;
//! - `SttControl::Finalize`: the utterance is closed at once and its final sent with
//!   `from_finalize: true`.
//!
//! Word timings come from the decoder's segmentation, in 10 ms frames of a stream clock that
//! starts with the session (`ps_start_stream`), so they are accurate to a frame or two;
//! confidence is the posterior of the hypothesis.
//!
//! **Cold start.** PocketSphinx normalises features with a running cepstral mean that starts
//! from the model's training value and only adapts at the end of each utterance, so a fresh
//! decoder's first utterance of a new voice or channel is often garbled. With
//! [`PocketSphinxConfig::redecode_until_adapted`] (the default) the first utterance a decoder
//! hears is decoded twice: once while streaming (partials), and again from the buffered audio
//! after the mean adapted, which gives the final. That costs one extra decode (about a third of
//! the utterance's duration on a slow machine) on the first utterance only; decoders are pooled
//! across sessions and keep what they learned.
//!
//! **Noise floor.** PocketSphinx's voice activity detection and noise estimate misjudge input
//! that is digitally silent, or nearly so, between words (synthetic speech, some codec paths).
//! A deterministic −60 dBFS white-noise floor ([`PocketSphinxConfig::noise_floor_dbfs`]) is
//! mixed into the decoder's input; real calls are louder than that and barely change.
//!
//! Measured on a fresh decoder's first utterance, "I would like to book an appointment" spoken
//! by [`crate::offline::espeak`] at 16 kHz (ten renderings, which differ slightly): key words
//! found 5/10 times with neither measure, 6/10 with the second decode only, 2/10 with the noise
//! floor only, 10/10 with both (the defaults; also 20/20 word for word in a longer run).
//!
//! **Accuracy.** The acoustic model is small and old, and its general language model spreads
//! over 130 000 words: over fourteen short call sentences spoken by espeak
//! (`pocketsphinx_accuracy_report` in the tests) the word error rate was 40% at 16 kHz and 87%
//! on 8 kHz telephone audio (upsampled here, but the band above 4 kHz is gone; no 8 kHz model
//! is packaged). [`PocketSphinxConfig::for_assistant`] (what [`crate::offline::stt_for`] uses)
//! swaps in a language model of the assistant's domain ([`crate::offline::domain_lm`], with the
//! general model's 20 000 likeliest words mixed into its unigrams at 10 %): 16% at 16 kHz and
//! 53% at 8 kHz on the same sentences — 10% at 16 kHz on the ten the built-in corpus holds,
//! 33% on the four it does not (without the general words: 2% and 50%).
//! A JSGF grammar ([`SearchModel::Jsgf`]) is stricter still, for closed menus.
//!
//! FFI: the configuration is built with `cmd_ln_parse_r` (an argv array) rather than the
//! variadic `cmd_ln_init`, because the argument list is assembled at run time.
//!
//! Needs the Debian packages `libpocketsphinx-dev` and `libsphinxbase-dev` at build time and the
//! model package `pocketsphinx-en-us`; `scripts/setup.sh` installs them. Without the libraries
//! the crate still builds and sessions fail with `ProviderError::Config` naming the packages.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::offline::domain_lm::{self, Background, DomainCorpus, Vocabulary};
use tokio::sync::{mpsc, oneshot};
use voxline_codecs::{AudioFrame, Resampler, SampleRate};
use voxline_engine::config::Assistant;
use voxline_engine::provider::{
    BoxFuture, ProviderError, SttControl, SttEvent, SttIo, SttProvider, SttSessionParams,
    Transcript, Word,
};

/// The provider's config name.
pub const PROVIDER: &str = "pocketsphinx";

/// Where Debian's `pocketsphinx-en-us` installs the US English model.
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";

/// The sample rate the US English acoustic model was trained at.
pub const MODEL_RATE: SampleRate = SampleRate::Hz16000;

/// Duration of one decoder frame (`-frate 100`).
const DECODER_FRAME: Duration = Duration::from_millis(10);

/// Audio kept before detected speech when buffering an utterance for a second decode.
const PRE_SPEECH: Duration = Duration::from_millis(600);

/// What the decoder searches with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SearchModel {
    /// A statistical n-gram language model (ARPA text or sphinx binary `.lm.bin`).
    /// The default is the general US English model.
    NGram(PathBuf),
    /// A JSGF grammar file: only sentences it accepts can be recognised. Much more accurate
    /// for a closed set of phrases (menu choices, yes/no, a booking script); every word must be
    /// in the pronunciation dictionary.
    Jsgf(PathBuf),
}

/// How a [`PocketSphinxStt`] decodes.
#[derive(Clone, Debug, PartialEq)]
pub struct PocketSphinxConfig {
    /// Acoustic model folder (`-hmm`).
    pub acoustic_model: PathBuf,
    /// Language model or grammar.
    pub search: SearchModel,
    /// Pronunciation dictionary (`-dict`).
    pub dictionary: PathBuf,
    /// How often to send a changed partial hypothesis while the caller speaks.
    pub partial_interval: Duration,
    /// Decode each utterance again after the cepstral mean adapted, until a decoder has heard
    /// one utterance (see the module docs). Default on.
    pub redecode_until_adapted: bool,
    /// Level of the white-noise floor mixed into the decoder's input (see the module docs);
    /// `None` feeds the audio untouched. Default −60 dBFS.
    pub noise_floor_dbfs: Option<f32>,
    /// Idle decoders kept for later sessions (each holds the model in memory).
    pub max_idle_decoders: usize,
    /// Extra decoder options as (`-name`, value) pairs, e.g. (`-lw`, `6.5`) or
    /// (`-vad_threshold`, `3.0`). Applied last.
    pub extra_args: Vec<(String, String)>,
}

impl Default for PocketSphinxConfig {
    fn default() -> Self {
        PocketSphinxConfig::with_model_dir(DEFAULT_MODEL_DIR)
    }
}

impl PocketSphinxConfig {
    /// The standard layout of a PocketSphinx model folder: `en-us/` (acoustic model),
    /// `en-us.lm.bin` and `cmudict-en-us.dict`.
    pub fn with_model_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        PocketSphinxConfig {
            acoustic_model: dir.join("en-us"),
            search: SearchModel::NGram(dir.join("en-us.lm.bin")),
            dictionary: dir.join("cmudict-en-us.dict"),
            partial_interval: Duration::from_millis(400),
            redecode_until_adapted: true,
            noise_floor_dbfs: Some(-60.0),
            max_idle_decoders: 2,
            extra_args: Vec::new(),
        }
    }

    /// The default acoustic model and dictionary with a language model of `assistant`'s domain
    /// (see [`crate::offline::domain_lm`]), written to a cache folder under the system's
    /// temporary directory. Fails when the dictionary cannot be read (model not installed) or
    /// the model cannot be written.
    pub fn for_assistant(assistant: &Assistant) -> Result<Self, ProviderError> {
        let mut config = PocketSphinxConfig::default();
        let error = |what: &str, e: std::io::Error| ProviderError::Config {
            provider: PROVIDER.to_owned(),
            detail: format!("{what}: {e}"),
        };
        let vocabulary = vocabulary(&config.dictionary).map_err(|e| {
            error(
                &format!(
                    "pronunciation dictionary {} (Debian package pocketsphinx-en-us)",
                    config.dictionary.display()
                ),
                e,
            )
        })?;
        let mut corpus = DomainCorpus::for_assistant(assistant);
        corpus.restrict_to(&vocabulary);
        let general = match &config.search {
            SearchModel::NGram(general) => general_unigrams(general),
            SearchModel::Jsgf(_) => Arc::default(),
        };
        let background =
            Background::new(&general, &vocabulary, BACKGROUND_WORDS, BACKGROUND_WEIGHT);
        let dir = std::env::temp_dir().join("voxline-pocketsphinx");
        let path = domain_lm::write_cached(&dir, &corpus.to_arpa_with_background(&background))
            .map_err(|e| error(&format!("domain language model in {}", dir.display()), e))?;
        config.search = SearchModel::NGram(path);
        Ok(config)
    }

    /// Checks that the model files exist; the error names the package to install.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let missing = |what: &str, path: &Path| ProviderError::Config {
            provider: PROVIDER.to_owned(),
            detail: format!(
                "{what} not found at {}: install the Debian package pocketsphinx-en-us \
                 (scripts/setup.sh does) or point the config at your model",
                path.display()
            ),
        };
        if !self.acoustic_model.join("mdef").is_file() {
            return Err(missing("acoustic model", &self.acoustic_model));
        }
        let search = match &self.search {
            SearchModel::NGram(p) | SearchModel::Jsgf(p) => p,
        };
        if !search.is_file() {
            return Err(missing("language model or grammar", search));
        }
        if !self.dictionary.is_file() {
            return Err(missing("pronunciation dictionary", &self.dictionary));
        }
        for (name, _) in &self.extra_args {
            if !name.starts_with('-') {
                return Err(ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: format!("decoder option `{name}` must start with '-'"),
                });
            }
        }
        Ok(())
    }

    /// The decoder's command-line arguments (without a program name).
    #[cfg_attr(not(voxline_has_pocketsphinx), allow(dead_code))]
    fn arguments(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            ("-hmm".to_owned(), path(&self.acoustic_model)),
            ("-dict".to_owned(), path(&self.dictionary)),
            ("-samprate".to_owned(), MODEL_RATE.hz().to_string()),
        ];
        match &self.search {
            SearchModel::NGram(p) => args.push(("-lm".to_owned(), path(p))),
            SearchModel::Jsgf(p) => args.push(("-jsgf".to_owned(), path(p))),
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Everyday words from the general model that the domain model keeps (see
/// [`PocketSphinxConfig::for_assistant`]).
pub const BACKGROUND_WORDS: usize = 20_000;

/// The share of the domain model's unigram mass that goes to those words.
pub const BACKGROUND_WEIGHT: f64 = 0.1;

/// Files read once per process, by path.
type ReadOnce<T> = std::sync::OnceLock<Mutex<std::collections::HashMap<PathBuf, Arc<T>>>>;

/// The value `cache` holds for `path`, reading it with `read` the first time.
fn read_once<T>(
    cache: &'static ReadOnce<T>,
    path: &Path,
    read: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<Arc<T>> {
    let cache = cache.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok().and_then(|m| m.get(path).cloned()) {
        return Ok(v);
    }
    let v = Arc::new(read(path)?);
    if let Ok(mut m) = cache.lock() {
        m.insert(path.to_owned(), v.clone());
    }
    Ok(v)
}

/// The unigrams of the general model at `path`, read once per process; empty when it cannot
/// be read (the domain model then has no background).
fn general_unigrams(path: &Path) -> Arc<Vec<(String, f64)>> {
    static READ: ReadOnce<Vec<(String, f64)>> = ReadOnce::new();
    read_once(
        &READ,
        path,
        |p| Ok(decoder::unigrams(p).unwrap_or_default()),
    )
    .unwrap_or_default()
}

/// The words of the dictionary at `path`, read once per process.
fn vocabulary(path: &Path) -> std::io::Result<Arc<Vocabulary>> {
    static READ: ReadOnce<Vocabulary> = ReadOnce::new();
    read_once(&READ, path, Vocabulary::from_dictionary_file)
}

/// Offline streaming STT with PocketSphinx; cheap to clone (clones share the decoder pool).
#[derive(Clone)]
pub struct PocketSphinxStt {
    config: Arc<PocketSphinxConfig>,
    pool: Arc<Mutex<Vec<decoder::Decoder>>>,
}

impl std::fmt::Debug for PocketSphinxStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocketSphinxStt")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for PocketSphinxStt {
    fn default() -> Self {
        PocketSphinxStt::new(PocketSphinxConfig::default())
    }
}

impl PocketSphinxStt {
    /// A provider decoding with `config`; nothing is loaded until the first session (or
    /// [`PocketSphinxStt::preload`]).
    pub fn new(config: PocketSphinxConfig) -> Self {
        PocketSphinxStt {
            config: Arc::new(config),
            pool: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &PocketSphinxConfig {
        &self.config
    }

    /// Loads one decoder into the pool now (about a second: the model is large), so the first
    /// call does not wait for it. Blocking: run it on a blocking thread.
    pub fn preload(&self) -> Result<(), ProviderError> {
        let decoder = decoder::Decoder::new(&self.config)?;
        put_back(&self.pool, decoder, self.config.max_idle_decoders);
        Ok(())
    }

    fn take_decoder(&self) -> Result<decoder::Decoder, ProviderError> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        match pooled {
            Some(d) => Ok(d),
            None => decoder::Decoder::new(&self.config),
        }
    }
}

fn put_back(pool: &Mutex<Vec<decoder::Decoder>>, decoder: decoder::Decoder, max: usize) {
    if let Ok(mut p) = pool.lock() {
        if p.len() < max {
            p.push(decoder);
        }
    }
}

/// What the async side sends the decoder thread.
// Frames are fixed-size values moved through the channel without boxing, as on the media path.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Audio(AudioFrame),
    Finalize,
    Close,
}

impl SttProvider for PocketSphinxStt {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn run(
        &self,
        params: SttSessionParams,
        io: SttIo,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let this = self.clone();
        Box::pin(async move {
            let SttIo {
                audio,
                mut control,
                events,
            } = io;
            this.config.validate()?;
            let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<Cmd>();
            let (done_tx, done_rx) = oneshot::channel::<Result<(), ProviderError>>();
            let worker = this.clone();
            let rate = params.sample_rate;
            std::thread::Builder::new()
                .name("voxline-pocketsphinx".to_owned())
                .spawn(move || {
                    let result = worker.session(rate, cmd_rx, events);
                    let _ = done_tx.send(result);
                })
                .map_err(|e| ProviderError::Server {
                    provider: PROVIDER.to_owned(),
                    code: None,
                    message: format!("cannot start the decoder thread: {e}"),
                })?;
            // Forward until the engine closes the session or the audio ends. Dropping this
            // future drops `cmd_tx`, which stops the thread too.
            loop {
                tokio::select! {
                    frame = audio.recv() => match frame {
                        Some(f) => {
                            if cmd_tx.send(Cmd::Audio(f)).is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    ctl = control.recv() => match ctl {
                        Some(SttControl::Finalize) => {
                            if cmd_tx.send(Cmd::Finalize).is_err() {
                                break;
                            }
                        }
                        Some(SttControl::Close) | None => break,
                    },
                }
            }
            let _ = cmd_tx.send(Cmd::Close);
            drop(cmd_tx);
            match done_rx.await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::Closed {
                    provider: PROVIDER.to_owned(),
                    code: None,
                    reason: "the decoder thread stopped".to_owned(),
                }),
            }
        })
    }
}

impl PocketSphinxStt {
    /// The decoder thread of one session.
    fn session(
        &self,
        rate: SampleRate,
        commands: std::sync::mpsc::Receiver<Cmd>,
        events: mpsc::UnboundedSender<SttEvent>,
    ) -> Result<(), ProviderError> {
        let resampler = Resampler::new(rate, MODEL_RATE).map_err(|e| ProviderError::Config {
            provider: PROVIDER.to_owned(),
            detail: format!("cannot resample {} Hz to 16 kHz: {e}", rate.hz()),
        })?;
        let decoder = self.take_decoder()?;
        let mut session = Session::new(decoder, resampler, &self.config, events);
        let result = session.run(commands);
        if result.is_ok() {
            put_back(&self.pool, session.decoder, self.config.max_idle_decoders);
        }
        result
    }
}

/// The state of one recognition session on its thread.
struct Session {
    decoder: decoder::Decoder,
    resampler: Resampler,
    events: mpsc::UnboundedSender<SttEvent>,
    partial_interval: Duration,
    redecode: bool,
    noise: Option<NoiseFloor>,
    /// Audio fed so far (16 kHz samples).
    position: u64,
    /// Where the decoder's stream clock (segment frame 0) lies in the session's audio.
    stream_origin: u64,
    /// The decoder's VAD has heard speech in the current utterance.
    speech: bool,
    /// Last partial sent, and when.
    last_partial: String,
    last_partial_at: u64,
    /// The current utterance's audio (trimmed to `PRE_SPEECH` before speech), for a second
    /// decode while the decoder is cold.
    buffer: Vec<i16>,
    buffer_start: u64,
}

impl Session {
    fn new(
        decoder: decoder::Decoder,
        resampler: Resampler,
        config: &PocketSphinxConfig,
        events: mpsc::UnboundedSender<SttEvent>,
    ) -> Self {
        Session {
            decoder,
            resampler,
            events,
            partial_interval: config.partial_interval,
            redecode: config.redecode_until_adapted,
            noise: config.noise_floor_dbfs.and_then(NoiseFloor::new),
            position: 0,
            stream_origin: 0,
            speech: false,
            last_partial: String::new(),
            last_partial_at: 0,
            buffer: Vec::new(),
            buffer_start: 0,
        }
    }

    fn run(&mut self, commands: std::sync::mpsc::Receiver<Cmd>) -> Result<(), ProviderError> {
        self.decoder.start_stream()?;
        self.decoder.start_utt()?;
        let _ = self.events.send(SttEvent::Ready);
        let mut frame16 = AudioFrame::silent(MODEL_RATE);
        let result = loop {
            match commands.recv() {
                Ok(Cmd::Audio(frame)) => {
                    if let Err(e) = self.resampler.process_into(&frame, &mut frame16) {
                        break Err(ProviderError::Protocol {
                            provider: PROVIDER.to_owned(),
                            detail: format!("caller frame: {e}"),
                        });
                    }
                    if let Some(noise) = self.noise.as_mut() {
                        noise.mix(frame16.samples_mut());
                    }
                    if let Err(e) = self.feed(frame16.samples()) {
                        break Err(e);
                    }
                }
                Ok(Cmd::Finalize) => {
                    if let Err(e) = self.close_utterance(true) {
                        break Err(e);
                    }
                }
                Ok(Cmd::Close) => {
                    // Deliver what the caller said last before ending.
                    if self.speech {
                        if let Err(e) = self.close_utterance(false) {
                            break Err(e);
                        }
                    }
                    break Ok(());
                }
                // The session future was dropped: stop quietly.
                Err(_) => break Ok(()),
            }
        };
        // Leave the decoder idle (no open utterance) for the pool.
        let end = self.decoder.end_utt();
        result.and(end)
    }

    /// Feeds 16 kHz audio and reports what the decoder's VAD and search make of it.
    fn feed(&mut self, samples: &[i16]) -> Result<(), ProviderError> {
        self.decoder.process(samples)?;
        if self.buffer.is_empty() {
            self.buffer_start = self.position;
        }
        self.buffer.extend_from_slice(samples);
        self.position += samples.len() as u64;
        let in_speech = self.decoder.in_speech();
        if in_speech && !self.speech {
            self.speech = true;
            self.last_partial_at = self.position;
            let _ = self.events.send(SttEvent::SpeechStarted);
        }
        if !self.speech {
            // Keep only the recent past: speech may have begun just before detection.
            let keep = samples_in(PRE_SPEECH) as usize;
            if self.buffer.len() > 2 * keep {
                let cut = self.buffer.len() - keep;
                self.buffer.drain(..cut);
                self.buffer_start += cut as u64;
            }
            return Ok(());
        }
        if !in_speech {
            return self.close_utterance(false);
        }
        if self.position - self.last_partial_at >= samples_in(self.partial_interval) {
            self.last_partial_at = self.position;
            if let Some(text) = self.decoder.hypothesis() {
                if text != self.last_partial {
                    self.last_partial.clone_from(&text);
                    let words = words_of(&self.decoder, self.stream_origin);
                    let _ = self.events.send(SttEvent::Transcript(Transcript {
                        text,
                        is_final: false,
                        speech_final: false,
                        from_finalize: false,
                        confidence: 0.0,
                        words,
                    }));
                }
            }
        }
        Ok(())
    }

    /// Ends the decoder's utterance, sends its final, and opens the next one.
    fn close_utterance(&mut self, from_finalize: bool) -> Result<(), ProviderError> {
        self.decoder.end_utt()?;
        if self.speech && self.redecode && !self.decoder.adapted() {
            // The cepstral mean just adapted to this voice: decode the utterance again, on a
            // stream clock that starts with the buffer.
            self.decoder.start_stream()?;
            self.stream_origin = self.buffer_start;
            self.decoder.start_utt()?;
            self.decoder.process(&self.buffer)?;
            self.decoder.end_utt()?;
        }
        if self.speech {
            self.decoder.mark_adapted();
        }
        let text = self.decoder.hypothesis().unwrap_or_default();
        let transcript = Transcript {
            confidence: if text.is_empty() {
                0.0
            } else {
                self.decoder.confidence()
            },
            words: words_of(&self.decoder, self.stream_origin),
            text,
            is_final: true,
            speech_final: true,
            from_finalize,
        };
        if self.speech || from_finalize {
            let _ = self.events.send(SttEvent::Transcript(transcript));
        }
        if self.speech && !from_finalize {
            let _ = self.events.send(SttEvent::UtteranceEnd);
        }
        self.speech = false;
        self.last_partial.clear();
        self.buffer.clear();
        self.decoder.start_utt()
    }
}

/// A deterministic uniform white-noise floor (xorshift32), mixed in with saturation.
struct NoiseFloor {
    state: u32,
    amplitude: i32,
}

impl NoiseFloor {
    /// `None` when the level is not finite or rounds to no noise at all.
    fn new(dbfs: f32) -> Option<Self> {
        if !dbfs.is_finite() {
            return None;
        }
        // RMS of uniform noise in [-a, a] is a/√3.
        let amplitude = (32768.0 * 10f32.powf(dbfs / 20.0) * 3f32.sqrt()).round();
        (amplitude >= 1.0).then(|| NoiseFloor {
            state: 0x9E37_79B9,
            amplitude: amplitude.min(32767.0) as i32,
        })
    }

    fn mix(&mut self, samples: &mut [i16]) {
        let span = (2 * self.amplitude + 1) as u32;
        for s in samples {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            let n = (self.state % span) as i32 - self.amplitude;
            *s = (*s as i32 + n).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
        }
    }
}

fn samples_in(d: Duration) -> u64 {
    d.as_millis() as u64 * MODEL_RATE.samples_per_ms() as u64
}

/// Timed words of the decoder's current hypothesis; `base` is where its stream clock began.
fn words_of(decoder: &decoder::Decoder, base: u64) -> Vec<Word> {
    let base = Duration::from_micros(base * 1_000_000 / MODEL_RATE.hz() as u64);
    decoder
        .segments()
        .into_iter()
        .filter_map(|(word, start, end)| {
            let text = clean_word(&word)?;
            Some(Word {
                text,
                start: base + DECODER_FRAME * start,
                end: base + DECODER_FRAME * (end + 1),
                confidence: 0.0,
            })
        })
        .collect()
}

/// A dictionary word as text: fillers and silences dropped, alternate pronunciation marks
/// (`word(2)`) removed.
fn clean_word(word: &str) -> Option<String> {
    if word.starts_with('<') || word.starts_with('[') || word.starts_with("++") || word.is_empty() {
        return None;
    }
    let base = match word.find('(') {
        Some(i) if word.ends_with(')') => &word[..i],
        _ => word,
    };
    (!base.is_empty()).then(|| base.to_owned())
}

/// Cleans a raw hypothesis string the same way as the words.
#[cfg_attr(not(voxline_has_pocketsphinx), allow(dead_code))]
fn clean_hypothesis(raw: &str) -> String {
    raw.split_whitespace()
        .filter_map(clean_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The decoder handle: the only `unsafe` code of the provider.
mod decoder {
    use super::{PocketSphinxConfig, PROVIDER};
    use voxline_engine::provider::ProviderError;

    #[cfg(not(voxline_has_pocketsphinx))]
    mod imp {
        use super::*;

        fn not_installed() -> ProviderError {
            ProviderError::Config {
                provider: PROVIDER.to_owned(),
                detail: "built without libpocketsphinx: install the Debian packages \
                         libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us \
                         (scripts/setup.sh does) and rebuild"
                    .to_owned(),
            }
        }

        /// Without the library no model can be read.
        pub(in crate::offline::pocketsphinx) fn unigrams(
            _path: &std::path::Path,
        ) -> Result<Vec<(String, f64)>, ProviderError> {
            Err(not_installed())
        }

        /// Stand-in when the library was missing at build time: `new` always fails, so the
        /// other methods are never reached.
        pub(in crate::offline::pocketsphinx) struct Decoder {
            _private: (),
        }

        impl Decoder {
            pub(in crate::offline::pocketsphinx) fn new(
                _config: &PocketSphinxConfig,
            ) -> Result<Self, ProviderError> {
                Err(not_installed())
            }
            pub(in crate::offline::pocketsphinx) fn start_stream(
                &mut self,
            ) -> Result<(), ProviderError> {
                Err(not_installed())
            }
            pub(in crate::offline::pocketsphinx) fn start_utt(
                &mut self,
            ) -> Result<(), ProviderError> {
                Err(not_installed())
            }
            pub(in crate::offline::pocketsphinx) fn end_utt(
                &mut self,
            ) -> Result<(), ProviderError> {
                Err(not_installed())
            }
            pub(in crate::offline::pocketsphinx) fn process(
                &mut self,
                _samples: &[i16],
            ) -> Result<(), ProviderError> {
                Err(not_installed())
            }
            pub(in crate::offline::pocketsphinx) fn in_speech(&self) -> bool {
                false
            }
            pub(in crate::offline::pocketsphinx) fn hypothesis(&self) -> Option<String> {
                None
            }
            pub(in crate::offline::pocketsphinx) fn confidence(&self) -> f32 {
                0.0
            }
            pub(in crate::offline::pocketsphinx) fn segments(&self) -> Vec<(String, u32, u32)> {
                Vec::new()
            }
            pub(in crate::offline::pocketsphinx) fn adapted(&self) -> bool {
                false
            }
            pub(in crate::offline::pocketsphinx) fn mark_adapted(&mut self) {}
        }
    }

    #[cfg(voxline_has_pocketsphinx)]
    mod imp {
        use std::ffi::{c_char, c_int, c_void, CStr, CString};
        use std::ptr::NonNull;
        use std::sync::Once;

        use super::*;
        use crate::offline::pocketsphinx::clean_hypothesis;

        #[repr(C)]
        struct PsDecoder {
            _private: [u8; 0],
        }
        #[repr(C)]
        struct CmdLn {
            _private: [u8; 0],
        }
        #[repr(C)]
        struct ArgDef {
            _private: [u8; 0],
        }
        #[repr(C)]
        struct PsSeg {
            _private: [u8; 0],
        }
        #[repr(C)]
        struct LogMath {
            _private: [u8; 0],
        }
        #[repr(C)]
        struct NGramModelC {
            _private: [u8; 0],
        }

        /// `NGRAM_AUTO` of sphinxbase's `ngram_file_type_t`: detect ARPA or binary.
        const NGRAM_AUTO: c_int = 0;

        /// The unigrams of the n-gram model at `path` (ARPA or sphinx binary) with their log10
        /// probabilities, `<s>` and `</s>` excluded.
        pub(in crate::offline::pocketsphinx) fn unigrams(
            path: &std::path::Path,
        ) -> Result<Vec<(String, f64)>, ProviderError> {
            QUIET.call_once(|| unsafe { err_set_logfp(std::ptr::null_mut()) });
            let c_path = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| {
                ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: "a language model path contains a NUL byte".to_owned(),
                }
            })?;
            // SAFETY: plain constructor; freed below.
            let lmath = unsafe { logmath_init(1.0001, 0, 0) };
            if lmath.is_null() {
                return Err(failed("logmath_init", -1));
            }
            // SAFETY: a null config is allowed (defaults); `c_path` outlives the call; the
            // model holds its own reference to `lmath`.
            let model = unsafe {
                ngram_model_read(std::ptr::null_mut(), c_path.as_ptr(), NGRAM_AUTO, lmath)
            };
            if model.is_null() {
                // SAFETY: releases our reference; not used after.
                unsafe { logmath_free(lmath) };
                return Err(ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: format!("cannot read the language model {}", path.display()),
                });
            }
            let mut out = Vec::new();
            // SAFETY: `model` is live until freed below; word ids run over the unigram count
            // the model reports; word strings are owned by the model and copied before it is
            // freed; a zero-length history asks for the unigram probability.
            unsafe {
                let counts = ngram_model_get_counts(model);
                let words = if counts.is_null() { 0 } else { *counts };
                for wid in 0..i32::try_from(words).unwrap_or(0) {
                    let word = ngram_word(model, wid);
                    if word.is_null() {
                        continue;
                    }
                    let word = CStr::from_ptr(word).to_string_lossy().into_owned();
                    if word == "<s>" || word == "</s>" {
                        continue;
                    }
                    let mut used = 0;
                    let score = ngram_ng_prob(model, wid, std::ptr::null_mut(), 0, &mut used);
                    out.push((word, logmath_log_to_log10(lmath, score)));
                }
                ngram_model_free(model);
                logmath_free(lmath);
            }
            Ok(out)
        }

        // pocketsphinx.h / sphinxbase cmd_ln.h, err.h, logmath.h (0.8+5prealpha); int32 is
        // `int`, int16 `short`, uint8 `unsigned char`. Linked by build.rs (pkg-config).
        extern "C" {
            fn ps_args() -> *const ArgDef;
            fn cmd_ln_parse_r(
                inout_cmdln: *mut CmdLn,
                defn: *const ArgDef,
                argc: i32,
                argv: *mut *mut c_char,
                strict: i32,
            ) -> *mut CmdLn;
            fn cmd_ln_free_r(cmdln: *mut CmdLn) -> c_int;
            fn ps_init(config: *mut CmdLn) -> *mut PsDecoder;
            fn ps_free(ps: *mut PsDecoder) -> c_int;
            fn ps_start_stream(ps: *mut PsDecoder) -> c_int;
            fn ps_start_utt(ps: *mut PsDecoder) -> c_int;
            fn ps_process_raw(
                ps: *mut PsDecoder,
                data: *const i16,
                n_samples: usize,
                no_search: c_int,
                full_utt: c_int,
            ) -> c_int;
            fn ps_end_utt(ps: *mut PsDecoder) -> c_int;
            fn ps_get_hyp(ps: *mut PsDecoder, out_best_score: *mut i32) -> *const c_char;
            fn ps_get_prob(ps: *mut PsDecoder) -> i32;
            fn ps_get_in_speech(ps: *mut PsDecoder) -> u8;
            fn ps_get_logmath(ps: *mut PsDecoder) -> *mut LogMath;
            fn logmath_exp(lmath: *mut LogMath, logb_p: c_int) -> f64;
            fn ps_seg_iter(ps: *mut PsDecoder) -> *mut PsSeg;
            fn ps_seg_next(seg: *mut PsSeg) -> *mut PsSeg;
            fn ps_seg_word(seg: *mut PsSeg) -> *const c_char;
            fn ps_seg_frames(seg: *mut PsSeg, out_sf: *mut c_int, out_ef: *mut c_int);
            fn err_set_logfp(stream: *mut c_void);
            fn logmath_init(base: f64, shift: c_int, use_table: c_int) -> *mut LogMath;
            fn logmath_free(lmath: *mut LogMath) -> c_int;
            fn logmath_log_to_log10(lmath: *mut LogMath, logb_p: c_int) -> f64;
            fn ngram_model_read(
                config: *mut CmdLn,
                file_name: *const c_char,
                file_type: c_int,
                lmath: *mut LogMath,
            ) -> *mut NGramModelC;
            fn ngram_model_free(model: *mut NGramModelC) -> c_int;
            fn ngram_model_get_counts(model: *mut NGramModelC) -> *const u32;
            fn ngram_ng_prob(
                model: *mut NGramModelC,
                wid: i32,
                history: *mut i32,
                n_hist: i32,
                n_used: *mut i32,
            ) -> i32;
            fn ngram_word(model: *mut NGramModelC, wid: i32) -> *const c_char;
        }

        static QUIET: Once = Once::new();

        fn failed(what: &str, status: c_int) -> ProviderError {
            ProviderError::Server {
                provider: PROVIDER.to_owned(),
                code: Some(status.to_string()),
                message: format!("{what} failed"),
            }
        }

        /// One PocketSphinx decoder with its configuration.
        pub(in crate::offline::pocketsphinx) struct Decoder {
            ps: NonNull<PsDecoder>,
            config: NonNull<CmdLn>,
            /// The argument strings; sphinxbase keeps pointers into them.
            _argv: Vec<CString>,
            in_utterance: bool,
            adapted: bool,
        }

        // SAFETY: a decoder has no thread affinity (no thread-local state, no callbacks); it is
        // owned by exactly one `Decoder` value, which is used by one thread at a time (moved
        // into a session thread, or parked in the pool behind a mutex).
        unsafe impl Send for Decoder {}

        impl Decoder {
            /// Loads the model and creates a decoder (about a second).
            pub(in crate::offline::pocketsphinx) fn new(
                config: &PocketSphinxConfig,
            ) -> Result<Self, ProviderError> {
                config.validate()?;
                // SAFETY: a null stream disables sphinxbase's log output (it would otherwise
                // print hundreds of lines to stderr); process-wide, done once.
                QUIET.call_once(|| unsafe { err_set_logfp(std::ptr::null_mut()) });
                let mut argv: Vec<CString> = vec![c"voxline".to_owned()];
                for (name, value) in config.arguments() {
                    for part in [name, value] {
                        argv.push(CString::new(part).map_err(|_| ProviderError::Config {
                            provider: PROVIDER.to_owned(),
                            detail: "a decoder option contains a NUL byte".to_owned(),
                        })?);
                    }
                }
                let mut pointers: Vec<*mut c_char> =
                    argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
                let argc = i32::try_from(pointers.len()).map_err(|_| ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: "too many decoder options".to_owned(),
                })?;
                // SAFETY: `pointers` holds `argc` valid NUL-terminated strings that `argv`
                // keeps alive as long as the returned config (it is stored with it); sphinxbase
                // does not write through them; `ps_args()` is the static definition table.
                let cmdln = unsafe {
                    cmd_ln_parse_r(
                        std::ptr::null_mut(),
                        ps_args(),
                        argc,
                        pointers.as_mut_ptr(),
                        1,
                    )
                };
                let config_ptr = NonNull::new(cmdln).ok_or_else(|| ProviderError::Config {
                    provider: PROVIDER.to_owned(),
                    detail: "PocketSphinx rejected the decoder options (unknown option or bad \
                             value in extra_args)"
                        .to_owned(),
                })?;
                // SAFETY: `cmdln` is a valid config; ps_init retains its own reference.
                let ps = unsafe { ps_init(config_ptr.as_ptr()) };
                let Some(ps) = NonNull::new(ps) else {
                    // SAFETY: releases the reference cmd_ln_parse_r gave us; not used after.
                    unsafe { cmd_ln_free_r(config_ptr.as_ptr()) };
                    return Err(ProviderError::Config {
                        provider: PROVIDER.to_owned(),
                        detail: "PocketSphinx could not load its model: reinstall the Debian \
                                 package pocketsphinx-en-us (scripts/setup.sh) or check the \
                                 model paths"
                            .to_owned(),
                    });
                };
                Ok(Decoder {
                    ps,
                    config: config_ptr,
                    _argv: argv,
                    in_utterance: false,
                    adapted: false,
                })
            }

            /// Starts a new stream: segment times count from here again and the noise level
            /// is re-estimated (the cepstral mean is kept). Outside an utterance only.
            pub(in crate::offline::pocketsphinx) fn start_stream(
                &mut self,
            ) -> Result<(), ProviderError> {
                self.end_utt()?;
                // SAFETY: `ps` is a live decoder used only by this thread, with no open
                // utterance.
                let status = unsafe { ps_start_stream(self.ps.as_ptr()) };
                if status < 0 {
                    return Err(failed("ps_start_stream", status));
                }
                Ok(())
            }

            pub(in crate::offline::pocketsphinx) fn start_utt(
                &mut self,
            ) -> Result<(), ProviderError> {
                if self.in_utterance {
                    return Ok(());
                }
                // SAFETY: `ps` is a live decoder used only by this thread.
                let status = unsafe { ps_start_utt(self.ps.as_ptr()) };
                if status < 0 {
                    return Err(failed("ps_start_utt", status));
                }
                self.in_utterance = true;
                Ok(())
            }

            pub(in crate::offline::pocketsphinx) fn end_utt(
                &mut self,
            ) -> Result<(), ProviderError> {
                if !self.in_utterance {
                    return Ok(());
                }
                self.in_utterance = false;
                // SAFETY: `ps` is a live decoder with an open utterance.
                let status = unsafe { ps_end_utt(self.ps.as_ptr()) };
                if status < 0 {
                    return Err(failed("ps_end_utt", status));
                }
                Ok(())
            }

            pub(in crate::offline::pocketsphinx) fn process(
                &mut self,
                samples: &[i16],
            ) -> Result<(), ProviderError> {
                if samples.is_empty() {
                    return Ok(());
                }
                self.start_utt()?;
                // SAFETY: `samples` is a valid slice of `len` samples for the call; the decoder
                // copies what it needs.
                let status = unsafe {
                    ps_process_raw(self.ps.as_ptr(), samples.as_ptr(), samples.len(), 0, 0)
                };
                if status < 0 {
                    return Err(failed("ps_process_raw", status));
                }
                Ok(())
            }

            pub(in crate::offline::pocketsphinx) fn in_speech(&self) -> bool {
                // SAFETY: `ps` is a live decoder.
                unsafe { ps_get_in_speech(self.ps.as_ptr()) != 0 }
            }

            /// The current best hypothesis (partial inside an utterance), cleaned; `None` when
            /// empty.
            pub(in crate::offline::pocketsphinx) fn hypothesis(&self) -> Option<String> {
                let mut score: i32 = 0;
                // SAFETY: `ps` is a live decoder; the returned string is owned by the decoder
                // and valid until the next decoder call, so it is copied at once.
                let raw = unsafe { ps_get_hyp(self.ps.as_ptr(), &mut score) };
                if raw.is_null() {
                    return None;
                }
                // SAFETY: non-null, NUL-terminated string owned by the decoder (see above).
                let text = unsafe { CStr::from_ptr(raw) }.to_string_lossy();
                let text = clean_hypothesis(&text);
                (!text.is_empty()).then_some(text)
            }

            /// Posterior probability of the last final hypothesis, 0..=1.
            pub(in crate::offline::pocketsphinx) fn confidence(&self) -> f32 {
                // SAFETY: `ps` is a live decoder; the log-math object belongs to it.
                let p = unsafe {
                    let prob = ps_get_prob(self.ps.as_ptr());
                    let lmath = ps_get_logmath(self.ps.as_ptr());
                    if lmath.is_null() {
                        return 0.0;
                    }
                    logmath_exp(lmath, prob)
                };
                if p.is_finite() {
                    p.clamp(0.0, 1.0) as f32
                } else {
                    0.0
                }
            }

            /// (word, first frame, last frame) of the current hypothesis.
            pub(in crate::offline::pocketsphinx) fn segments(&self) -> Vec<(String, u32, u32)> {
                let mut out = Vec::new();
                // SAFETY: `ps` is a live decoder. The iterator is walked to its end, where
                // `ps_seg_next` frees it and returns null; each word string is copied before
                // advancing.
                unsafe {
                    let mut seg = ps_seg_iter(self.ps.as_ptr());
                    while !seg.is_null() {
                        let word = ps_seg_word(seg);
                        let (mut sf, mut ef): (c_int, c_int) = (0, 0);
                        ps_seg_frames(seg, &mut sf, &mut ef);
                        if !word.is_null() {
                            let word = CStr::from_ptr(word).to_string_lossy().into_owned();
                            out.push((word, sf.max(0) as u32, ef.max(sf).max(0) as u32));
                        }
                        seg = ps_seg_next(seg);
                    }
                }
                out
            }

            /// The cepstral mean has adapted to a real utterance.
            pub(in crate::offline::pocketsphinx) fn adapted(&self) -> bool {
                self.adapted
            }

            pub(in crate::offline::pocketsphinx) fn mark_adapted(&mut self) {
                self.adapted = true;
            }
        }

        impl Drop for Decoder {
            fn drop(&mut self) {
                // SAFETY: both pointers are live and owned by this value; neither is used after.
                unsafe {
                    ps_free(self.ps.as_ptr());
                    cmd_ln_free_r(self.config.as_ptr());
                }
            }
        }
    }

    pub(in crate::offline::pocketsphinx) use imp::{unigrams, Decoder};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_and_alternates_are_cleaned() {
        assert_eq!(clean_word("<s>"), None);
        assert_eq!(clean_word("<sil>"), None);
        assert_eq!(clean_word("[NOISE]"), None);
        assert_eq!(clean_word("++BREATH++"), None);
        assert_eq!(clean_word("book(2)").as_deref(), Some("book"));
        assert_eq!(clean_hypothesis("<s> i would(2) like </s>"), "i would like");
    }

    #[test]
    fn noise_floor_has_the_asked_level() {
        let mut noise = NoiseFloor::new(-60.0).expect("audible");
        let mut buf = vec![0i16; 16_000];
        noise.mix(&mut buf);
        let rms = (buf.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / buf.len() as f64).sqrt();
        let dbfs = 20.0 * (rms / 32768.0).log10();
        assert!((dbfs + 60.0).abs() < 0.5, "{dbfs:.2} dBFS");
        assert!(NoiseFloor::new(-200.0).is_none());
        assert!(NoiseFloor::new(f32::NAN).is_none());
    }

    #[test]
    fn missing_model_names_the_package() {
        let config = PocketSphinxConfig::with_model_dir("/nonexistent/model");
        match config.validate() {
            Err(ProviderError::Config { detail, .. }) => {
                assert!(detail.contains("pocketsphinx-en-us"), "{detail}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn arguments_pick_the_search() {
        let mut config = PocketSphinxConfig::with_model_dir("/m");
        config.search = SearchModel::Jsgf("/m/g.gram".into());
        config.extra_args.push(("-lw".into(), "6".into()));
        let args = config.arguments();
        assert!(args.contains(&("-jsgf".to_owned(), "/m/g.gram".to_owned())));
        assert!(!args.iter().any(|(n, _)| n == "-lm"));
        assert_eq!(args.last(), Some(&("-lw".to_owned(), "6".to_owned())));
    }
}
