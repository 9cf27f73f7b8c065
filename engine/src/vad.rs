//! Voice activity detection with hysteresis: webrtc-vad decisions per 20 ms frame
//! turned into debounced speech-started / speech-stopped transitions.
//!
//! A frame is voiced when webrtc-vad says so *and* the frame, and its second half
//! alone, are above an energy floor: the configured floor, raised to a margin above
//! the room noise the detector has heard between words. webrtc-vad keeps calling
//! frames voiced for a few frames after speech (its own hang-over), and a codec's
//! tail leaves a frame that is loud only at its start; neither counts, so the
//! configured stop hang-over runs from where the voice really ended.
//!
//! Frames that stand in for lost packets (PLC/FEC) are neither speech nor
//! silence: they leave the detector's state untouched.

use std::time::Duration;

use voxline_codecs::{AudioFrame, SampleRate};
use webrtc_vad::{SampleRate as VadRate, Vad, VadMode};

/// How eagerly webrtc-vad calls a frame voiced (0 = least aggressive filtering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VadAggressiveness {
    /// Mode 0: most frames count as speech.
    Quality,
    /// Mode 1.
    LowBitrate,
    /// Mode 2: the default for telephony.
    #[default]
    Aggressive,
    /// Mode 3: filters the most non-speech.
    VeryAggressive,
}

/// Hysteresis settings of the detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VadConfig {
    /// webrtc-vad mode.
    pub aggressiveness: VadAggressiveness,
    /// Voiced time needed before speech counts as started.
    pub start_after: Duration,
    /// Unvoiced time needed before speech counts as stopped.
    pub stop_after: Duration,
    /// Frames quieter than this (dBFS) are unvoiced whatever webrtc-vad says. The detector
    /// raises the floor to [`NOISE_MARGIN_DB`] above the room noise it measures.
    pub energy_floor_dbfs: f32,
}

/// How far above the measured room noise a frame must be to count as voice (dB).
pub const NOISE_MARGIN_DB: f32 = 12.0;
/// How fast the room-noise estimate may rise, per frame webrtc-vad calls noise (dB); it
/// falls at once.
const NOISE_RISE_DB: f32 = 0.25;

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            aggressiveness: VadAggressiveness::Aggressive,
            start_after: Duration::from_millis(60),
            stop_after: Duration::from_millis(300),
            energy_floor_dbfs: -55.0,
        }
    }
}

/// A debounced change of the caller's speech state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VadTransition {
    /// Speech began; `at` is when the first voiced frame of the run started.
    SpeechStarted {
        /// Start of the first voiced frame of the run.
        at: Duration,
    },
    /// Speech ended; `at` is the end of the last voiced frame.
    SpeechStopped {
        /// End of the last voiced frame.
        at: Duration,
    },
}

/// What the detector made of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VadOutcome {
    /// The frame's raw classification (`None` for concealed frames).
    pub voiced: Option<bool>,
    /// A debounced state change, if this frame caused one.
    pub transition: Option<VadTransition>,
}

/// webrtc-vad's handle, owned by exactly one detector.
struct OwnedVad(Vad);

// SAFETY: libfvad keeps no thread-local or global state; the handle is owned by
// one `VoiceDetector` and never shared, so moving it to another thread is sound.
// `OwnedVad` is deliberately not `Sync`.
unsafe impl Send for OwnedVad {}

/// A per-call voice activity detector for 8 or 16 kHz frames.
pub struct VoiceDetector {
    vad: OwnedVad,
    config: VadConfig,
    rate: SampleRate,
    speaking: bool,
    voiced_run: Duration,
    unvoiced_run: Duration,
    run_started: Duration,
    last_voiced_end: Duration,
    /// Room noise: the level of frames webrtc-vad calls noise (or under the configured
    /// floor), following drops at once and rises slowly; `None` until the first one.
    noise_dbfs: Option<f32>,
}

/// Errors building a detector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VadError {
    /// webrtc-vad only takes 8 or 16 kHz here (other rates are resampled internally at a cost).
    #[error("VAD runs at 8 or 16 kHz, not {0} Hz")]
    UnsupportedRate(u32),
}

fn mode(a: VadAggressiveness) -> VadMode {
    match a {
        VadAggressiveness::Quality => VadMode::Quality,
        VadAggressiveness::LowBitrate => VadMode::LowBitrate,
        VadAggressiveness::Aggressive => VadMode::Aggressive,
        VadAggressiveness::VeryAggressive => VadMode::VeryAggressive,
    }
}

impl VoiceDetector {
    /// A detector for frames at `rate` (8 or 16 kHz).
    pub fn new(rate: SampleRate, config: VadConfig) -> Result<Self, VadError> {
        let vad_rate = match rate {
            SampleRate::Hz8000 => VadRate::Rate8kHz,
            SampleRate::Hz16000 => VadRate::Rate16kHz,
            other => return Err(VadError::UnsupportedRate(other.hz())),
        };
        let vad = Vad::new_with_rate_and_mode(vad_rate, mode(config.aggressiveness));
        Ok(VoiceDetector {
            vad: OwnedVad(vad),
            config,
            rate,
            speaking: false,
            voiced_run: Duration::ZERO,
            unvoiced_run: Duration::ZERO,
            run_started: Duration::ZERO,
            last_voiced_end: Duration::ZERO,
            noise_dbfs: None,
        })
    }

    /// The energy floor in force: the configured one, or a margin above the room noise.
    pub fn energy_floor_dbfs(&self) -> f32 {
        let configured = self.config.energy_floor_dbfs;
        self.noise_dbfs
            .map_or(configured, |noise| configured.max(noise + NOISE_MARGIN_DB))
    }

    /// True while the caller is (debounced) speaking.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// How long the current voiced run has lasted (zero when not in one).
    pub fn voiced_run(&self) -> Duration {
        self.voiced_run
    }

    /// Classifies one 20 ms frame that starts at `at` (call time) and updates the state.
    /// Frames at another rate than the detector's are ignored (classified `None`).
    pub fn process(&mut self, at: Duration, frame: &AudioFrame) -> VadOutcome {
        if frame.origin().is_loss() || frame.rate() != self.rate {
            return VadOutcome {
                voiced: None,
                transition: None,
            };
        }
        let frame_len = Duration::from_millis(voxline_codecs::FRAME_MS as u64);
        let (level, tail_level) = levels_dbfs(frame.samples());
        let floor = self.energy_floor_dbfs();
        let webrtc_voiced = level >= self.config.energy_floor_dbfs
            && self
                .vad
                .0
                .is_voice_segment(frame.samples())
                .unwrap_or(false);
        // The room noise is learned only from what webrtc-vad itself calls noise, so speech
        // that the raised floor rejects can never raise the floor further.
        if !webrtc_voiced {
            self.noise_dbfs = Some(match self.noise_dbfs {
                Some(noise) if level >= noise => (noise + NOISE_RISE_DB).min(level),
                _ => level,
            });
        }
        // A frame whose second half is under the floor holds only the end of a sound (a
        // codec's tail, the last of a word): the voice stopped inside it.
        let voiced = webrtc_voiced && level >= floor && tail_level >= floor;
        let mut transition = None;
        if voiced {
            if self.voiced_run.is_zero() {
                self.run_started = at;
            }
            self.voiced_run += frame_len;
            self.unvoiced_run = Duration::ZERO;
            self.last_voiced_end = at + frame_len;
            if !self.speaking && self.voiced_run >= self.config.start_after {
                self.speaking = true;
                transition = Some(VadTransition::SpeechStarted {
                    at: self.run_started,
                });
            }
        } else {
            self.unvoiced_run += frame_len;
            if !self.speaking || self.unvoiced_run >= frame_len * 2 {
                // A single unvoiced frame inside speech does not break the run.
                self.voiced_run = Duration::ZERO;
            }
            if self.speaking && self.unvoiced_run >= self.config.stop_after {
                self.speaking = false;
                self.voiced_run = Duration::ZERO;
                transition = Some(VadTransition::SpeechStopped {
                    at: self.last_voiced_end,
                });
            }
        }
        VadOutcome {
            voiced: Some(voiced),
            transition,
        }
    }
}

/// Mean power of the whole frame and of its second half, in dBFS (-120 for digital silence).
fn levels_dbfs(samples: &[i16]) -> (f32, f32) {
    let half = samples.len() / 2;
    let power = |s: &[i16]| s.iter().map(|&x| i64::from(x) * i64::from(x)).sum::<i64>() as f64;
    let (head, tail) = (power(&samples[..half]), power(&samples[half..]));
    let db = |sum: f64, n: usize| {
        let mean = sum / n.max(1) as f64;
        if mean <= 0.0 {
            -120.0
        } else {
            (10.0 * (mean / (32768.0f64 * 32768.0)).log10()) as f32
        }
    };
    (
        db(head + tail, samples.len()),
        db(tail, samples.len() - half),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_codecs::FrameOrigin;

    fn tone(rate: SampleRate, amp: f32, t0: usize) -> AudioFrame {
        let mut f = AudioFrame::silent(rate);
        f.set_origin(FrameOrigin::Received);
        let hz = rate.hz() as f32;
        for (i, s) in f.samples_mut().iter_mut().enumerate() {
            let t = (t0 + i) as f32 / hz;
            // A voiced, speech-like signal: 150 Hz fundamental with harmonics.
            let v = (1..8)
                .map(|k| (2.0 * std::f32::consts::PI * 150.0 * k as f32 * t).sin() / k as f32)
                .sum::<f32>();
            *s = (v * amp * 8000.0) as i16;
        }
        f
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn hysteresis_starts_and_stops() {
        let mut d = VoiceDetector::new(SampleRate::Hz16000, VadConfig::default()).unwrap();
        let mut events = Vec::new();
        let mut t = 0u64;
        for i in 0..30 {
            let f = tone(SampleRate::Hz16000, 1.0, i * 320);
            if let Some(tr) = d.process(ms(t), &f).transition {
                events.push(tr);
            }
            t += 20;
        }
        for _ in 0..30 {
            if let Some(tr) = d
                .process(ms(t), &AudioFrame::silent(SampleRate::Hz16000))
                .transition
            {
                events.push(tr);
            }
            t += 20;
        }
        assert_eq!(
            events,
            vec![
                VadTransition::SpeechStarted { at: ms(0) },
                VadTransition::SpeechStopped { at: ms(600) }
            ]
        );
    }

    #[test]
    fn short_blip_is_not_speech() {
        let mut d = VoiceDetector::new(SampleRate::Hz8000, VadConfig::default()).unwrap();
        let f = tone(SampleRate::Hz8000, 1.0, 0);
        assert_eq!(d.process(ms(0), &f).transition, None);
        assert_eq!(d.process(ms(20), &f).transition, None);
        let s = AudioFrame::silent(SampleRate::Hz8000);
        for i in 0..20 {
            assert_eq!(d.process(ms(40 + i * 20), &s).transition, None);
        }
        assert!(!d.is_speaking());
    }

    #[test]
    fn concealed_frames_do_not_count() {
        let mut d = VoiceDetector::new(SampleRate::Hz16000, VadConfig::default()).unwrap();
        let mut t = 0;
        for i in 0..5 {
            d.process(ms(t), &tone(SampleRate::Hz16000, 1.0, i * 320));
            t += 20;
        }
        assert!(d.is_speaking());
        // Half a second of loss concealment: must not end the caller's speech.
        let mut lost = AudioFrame::silent(SampleRate::Hz16000);
        lost.set_origin(FrameOrigin::Concealed);
        for _ in 0..25 {
            let out = d.process(ms(t), &lost);
            assert_eq!(out.voiced, None);
            assert_eq!(out.transition, None);
            t += 20;
        }
        assert!(d.is_speaking());
    }

    #[test]
    fn quiet_frames_fall_under_energy_floor() {
        let mut d = VoiceDetector::new(SampleRate::Hz16000, VadConfig::default()).unwrap();
        let f = tone(SampleRate::Hz16000, 0.0005, 0);
        assert_eq!(d.process(ms(0), &f).voiced, Some(false));
    }

    /// Runs frames through a detector from `t0_ms`, 20 ms apart; returns the transitions.
    fn feed(d: &mut VoiceDetector, t0_ms: u64, frames: &[AudioFrame]) -> Vec<VadTransition> {
        frames
            .iter()
            .enumerate()
            .filter_map(|(i, f)| d.process(ms(t0_ms + 20 * i as u64), f).transition)
            .collect()
    }

    fn tones(rate: SampleRate, n: usize) -> Vec<AudioFrame> {
        let len = rate.frame_samples();
        (0..n).map(|i| tone(rate, 1.0, i * len)).collect()
    }

    /// White noise at about `dbfs` (uniform samples), deterministic.
    fn noise(rate: SampleRate, dbfs: f32, n: usize, seed: u64) -> Vec<AudioFrame> {
        let amp = 32768.0 * 10f32.powf(dbfs / 20.0) * 3f32.sqrt();
        let mut x = seed;
        (0..n)
            .map(|_| {
                let mut f = AudioFrame::silent(rate);
                f.set_origin(FrameOrigin::Received);
                for s in f.samples_mut() {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let u = (x >> 11) as f32 / (1u64 << 53) as f32;
                    *s = ((2.0 * u - 1.0) * amp) as i16;
                }
                f
            })
            .collect()
    }

    #[test]
    fn a_frame_loud_only_at_its_start_ends_the_speech_before_it() {
        for rate in [SampleRate::Hz8000, SampleRate::Hz16000] {
            let mut d = VoiceDetector::new(rate, VadConfig::default()).unwrap();
            let mut frames = tones(rate, 30);
            // The next frame holds 5 ms of the voice, then nothing (a codec's tail).
            let mut tail = tone(rate, 1.0, 30 * rate.frame_samples());
            let quarter = rate.frame_samples() / 4;
            tail.samples_mut()[quarter..].fill(0);
            frames.push(tail);
            frames.extend((0..30).map(|_| AudioFrame::silent(rate)));
            let mut d_tail = VoiceDetector::new(rate, VadConfig::default()).unwrap();
            feed(&mut d_tail, 0, &frames[..30]);
            assert_eq!(d_tail.process(ms(600), &frames[30]).voiced, Some(false));
            // The stop hang-over runs from the end of the last frame voiced to its end.
            assert_eq!(
                feed(&mut d, 0, &frames),
                vec![
                    VadTransition::SpeechStarted { at: ms(0) },
                    VadTransition::SpeechStopped { at: ms(600) }
                ],
                "{rate:?}"
            );
        }
    }

    #[test]
    fn room_noise_above_the_configured_floor_raises_the_floor() {
        let rate = SampleRate::Hz16000;
        let mut d = VoiceDetector::new(rate, VadConfig::default()).unwrap();
        assert_eq!(d.energy_floor_dbfs(), -55.0);
        // Two seconds of a noisy room at -45 dBFS: above the configured -55 dBFS floor
        // (webrtc-vad needs a few frames to learn it too, so it may start a false run first).
        let room = noise(rate, -45.0, 100, 7);
        feed(&mut d, 0, &room);
        assert!(!d.is_speaking());
        let floor = d.energy_floor_dbfs();
        assert!((-36.0..=-31.0).contains(&floor), "floor {floor}");
        // Speech, then the room again: webrtc-vad's own hang-over frames are room noise,
        // under the raised floor, so the speech ends with its last voiced frame.
        let mut frames = tones(rate, 30);
        frames.extend(noise(rate, -45.0, 30, 11));
        assert_eq!(
            feed(&mut d, 2000, &frames),
            vec![
                VadTransition::SpeechStarted { at: ms(2000) },
                VadTransition::SpeechStopped { at: ms(2600) }
            ]
        );
        // Speech kept the noise estimate where the room put it.
        assert!((d.energy_floor_dbfs() - floor).abs() < 1.0);
        // A quiet room brings the configured floor back.
        feed(&mut d, 3200, &noise(rate, -80.0, 5, 13));
        assert_eq!(d.energy_floor_dbfs(), -55.0);
    }

    #[test]
    fn rejects_wideband_rates() {
        assert!(VoiceDetector::new(SampleRate::Hz48000, VadConfig::default()).is_err());
    }

    #[test]
    fn detector_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<VoiceDetector>();
    }
}
