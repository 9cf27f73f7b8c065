//! Voice activity detection with hysteresis: webrtc-vad decisions per 20 ms frame
//! turned into debounced speech-started / speech-stopped transitions.
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
    /// Frames quieter than this (dBFS) are unvoiced whatever webrtc-vad says.
    pub energy_floor_dbfs: f32,
}

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
        })
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
        let loud_enough = frame.level_dbfs() >= self.config.energy_floor_dbfs;
        let voiced = loud_enough
            && self
                .vad
                .0
                .is_voice_segment(frame.samples())
                .unwrap_or(false);
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
