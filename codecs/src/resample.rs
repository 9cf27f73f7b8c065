//! Streaming frame resampler between 8, 16, 24 and 48 kHz: one 20 ms frame in, one out.
//!
//! Built on rubato's synchronous FFT resampler with the 20 ms frame split into
//! sub-chunks that divide it exactly (4, or 2 on 8 kHz paths to keep the
//! anti-alias cutoff above the 3.4 kHz telephone band). That gives exactly one
//! output frame per input frame at 2.5 ms (5 ms on 8 kHz paths) of delay, and
//! with the buffers allocated at construction nothing allocates per frame.

use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

use crate::{AudioFrame, CodecError, SampleRate};

/// The FFT resampler and its preallocated float buffers.
struct FftStage {
    fft: Fft<f32>,
    input: Box<[f32]>,
    output: Box<[f32]>,
}

/// Converts 20 ms frames from one rate to another with a fixed, reported delay.
///
/// The output frame keeps the input frame's [`crate::FrameOrigin`]. When both
/// rates are equal the frame passes through untouched with no delay.
pub struct Resampler {
    from: SampleRate,
    to: SampleRate,
    stage: Option<FftStage>,
    delay: usize,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("delay_samples", &self.delay)
            .finish()
    }
}

/// Sub-chunks per 20 ms frame: 4 (5 ms blocks), but 2 when either side is
/// 8 kHz, where 5 ms blocks would put the cutoff at 2.6 kHz.
const fn sub_chunks(from: SampleRate, to: SampleRate) -> usize {
    if matches!(from, SampleRate::Hz8000) || matches!(to, SampleRate::Hz8000) {
        2
    } else {
        4
    }
}

impl Resampler {
    /// A resampler from `from` to `to`; identity (no work, no delay) when they are equal.
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Self, CodecError> {
        if from == to {
            return Ok(Resampler {
                from,
                to,
                stage: None,
                delay: 0,
            });
        }
        let fail = |detail: String| CodecError::Resampler {
            from: from.hz(),
            to: to.hz(),
            detail,
        };
        let fft = Fft::<f32>::new_custom(
            from.hz() as usize,
            to.hz() as usize,
            from.frame_samples(),
            sub_chunks(from, to),
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| fail(e.to_string()))?;
        // The sub-chunk must divide the frame exactly, or the output size would vary.
        if fft.input_frames_next() != from.frame_samples()
            || fft.output_frames_next() != to.frame_samples()
            || fft.output_frames_max() != to.frame_samples()
        {
            return Err(fail(format!(
                "FFT blocks do not divide a 20 ms frame ({} in, {} out per call)",
                fft.input_frames_next(),
                fft.output_frames_next()
            )));
        }
        let delay = fft.output_delay();
        Ok(Resampler {
            from,
            to,
            stage: Some(FftStage {
                fft,
                input: vec![0.0; from.frame_samples()].into_boxed_slice(),
                output: vec![0.0; to.frame_samples()].into_boxed_slice(),
            }),
            delay,
        })
    }

    /// The input rate.
    pub fn from_rate(&self) -> SampleRate {
        self.from
    }

    /// The output rate.
    pub fn to_rate(&self) -> SampleRate {
        self.to
    }

    /// True when input and output rates are equal and frames pass through.
    pub fn is_identity(&self) -> bool {
        self.stage.is_none()
    }

    /// Algorithmic delay in samples at the output rate.
    pub fn delay_samples(&self) -> usize {
        self.delay
    }

    /// Algorithmic delay as a duration.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay as u64 * 1_000_000 / self.to.hz() as u64)
    }

    /// Resamples one frame at the input rate into `out` (set to the output rate).
    pub fn process_into(
        &mut self,
        frame: &AudioFrame,
        out: &mut AudioFrame,
    ) -> Result<(), CodecError> {
        if frame.rate() != self.from {
            return Err(CodecError::RateMismatch {
                expected: self.from.hz(),
                got: frame.rate().hz(),
            });
        }
        let Some(stage) = self.stage.as_mut() else {
            *out = *frame;
            return Ok(());
        };
        for (f, &s) in stage.input.iter_mut().zip(frame.samples()) {
            *f = s as f32 * (1.0 / 32768.0);
        }
        let fail = |detail: String| CodecError::Resampler {
            from: self.from.hz(),
            to: self.to.hz(),
            detail,
        };
        let n_in = stage.input.len();
        let n_out = stage.output.len();
        let input =
            InterleavedSlice::new(&stage.input[..], 1, n_in).map_err(|e| fail(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut stage.output[..], 1, n_out)
            .map_err(|e| fail(e.to_string()))?;
        stage
            .fft
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| fail(e.to_string()))?;
        out.reset(self.to, frame.origin());
        for (o, &f) in out.samples_mut().iter_mut().zip(stage.output.iter()) {
            *o = (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        Ok(())
    }

    /// Resamples one frame at the input rate and returns it at the output rate.
    pub fn process(&mut self, frame: &AudioFrame) -> Result<AudioFrame, CodecError> {
        let mut out = AudioFrame::silent(self.to);
        self.process_into(frame, &mut out)?;
        Ok(out)
    }

    /// Clears the filter history (for a new stream); the delay stays the same.
    pub fn reset(&mut self) {
        if let Some(stage) = self.stage.as_mut() {
            stage.fft.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameOrigin;
    use std::f64::consts::PI;

    const AMPLITUDE: f64 = 16_000.0;

    /// Runs `frames` 20 ms frames of `input(t_seconds)` through a resampler and
    /// returns the concatenated output samples.
    fn run(r: &mut Resampler, frames: usize, input: impl Fn(usize, f64) -> f64) -> Vec<f64> {
        let n_in = r.from_rate().frame_samples();
        let rate_in = r.from_rate().hz() as f64;
        let mut out = Vec::new();
        let mut frame = AudioFrame::silent(r.from_rate());
        let mut result = AudioFrame::silent(r.to_rate());
        for k in 0..frames {
            for (i, s) in frame.samples_mut().iter_mut().enumerate() {
                let idx = k * n_in + i;
                *s = input(idx, idx as f64 / rate_in).round() as i16;
            }
            r.process_into(&frame, &mut result).unwrap();
            assert_eq!(result.rate(), r.to_rate());
            out.extend(result.samples().iter().map(|&s| s as f64));
        }
        out
    }

    /// SNR in dB of `y` against an ideal 1 kHz sine delayed by the reported delay,
    /// and the level ratio in dB, skipping the first 100 ms.
    fn sine_fidelity(from: SampleRate, to: SampleRate) -> (f64, f64) {
        let mut r = Resampler::new(from, to).unwrap();
        let y = run(&mut r, 50, |_, t| AMPLITUDE * (2.0 * PI * 1000.0 * t).sin());
        let fs = to.hz() as f64;
        let d = r.delay_samples() as f64;
        let (mut sig, mut err, mut out_pow) = (0.0, 0.0, 0.0);
        for (n, &v) in y.iter().enumerate().skip(to.samples_per_ms() * 100) {
            let ideal = AMPLITUDE * (2.0 * PI * 1000.0 * (n as f64 - d) / fs).sin();
            sig += ideal * ideal;
            err += (v - ideal) * (v - ideal);
            out_pow += v * v;
        }
        (10.0 * (sig / err).log10(), 10.0 * (out_pow / sig).log10())
    }

    #[test]
    fn sine_keeps_frequency_and_level_on_every_path() {
        for from in SampleRate::ALL {
            for to in SampleRate::ALL {
                if from == to {
                    continue;
                }
                let (snr, level) = sine_fidelity(from, to);
                eprintln!(
                    "{} -> {} Hz: SNR {snr:.1} dB, level {level:+.3} dB",
                    from.hz(),
                    to.hz()
                );
                assert!(snr > 30.0, "{from:?} -> {to:?}: SNR {snr:.1} dB");
                assert!(level.abs() < 0.5, "{from:?} -> {to:?}: level {level:.2} dB");
            }
        }
    }

    #[test]
    fn reported_delay_matches_an_impulse() {
        for from in SampleRate::ALL {
            for to in SampleRate::ALL {
                let mut r = Resampler::new(from, to).unwrap();
                // An impulse 45 ms in: a whole number of samples at every rate.
                let at = 45 * from.samples_per_ms();
                let y = run(&mut r, 6, |i, _| if i == at { 30_000.0 } else { 0.0 });
                let peak = y
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .map(|(i, _)| i)
                    .unwrap();
                let expected = 45 * to.samples_per_ms() + r.delay_samples();
                assert!(
                    peak.abs_diff(expected) <= 1,
                    "{from:?} -> {to:?}: peak at {peak}, expected {expected}"
                );
            }
        }
    }

    fn tone_level_db(from: SampleRate, to: SampleRate, hz: f64) -> f64 {
        let mut r = Resampler::new(from, to).unwrap();
        let y = run(&mut r, 25, |_, t| AMPLITUDE * (2.0 * PI * hz * t).sin());
        let tail = &y[to.samples_per_ms() * 100..];
        let pow = tail.iter().map(|v| v * v).sum::<f64>() / tail.len() as f64;
        10.0 * (pow / (AMPLITUDE * AMPLITUDE / 2.0)).log10()
    }

    #[test]
    fn telephone_band_passes_and_aliases_are_removed() {
        // 3 kHz (top of the telephone band) survives the 8 kHz paths, whose cutoff is ~3.3 kHz.
        for (from, to) in [
            (SampleRate::Hz24000, SampleRate::Hz8000),
            (SampleRate::Hz48000, SampleRate::Hz8000),
        ] {
            let level = tone_level_db(from, to, 3000.0);
            assert!(
                level.abs() < 1.0,
                "{from:?} -> {to:?}: 3 kHz at {level:.2} dB"
            );
        }
        // A 12 kHz tone cannot be represented at 16 kHz and must not fold back to 4 kHz.
        let alias = tone_level_db(SampleRate::Hz48000, SampleRate::Hz16000, 12_000.0);
        assert!(
            alias < -40.0,
            "12 kHz leaked through 48k -> 16k at {alias:.1} dB"
        );
    }

    #[test]
    fn delay_is_2_5_ms_or_5_ms_on_8k_paths() {
        let r = Resampler::new(SampleRate::Hz48000, SampleRate::Hz16000).unwrap();
        assert_eq!(r.delay_samples(), 40);
        assert_eq!(r.delay(), Duration::from_micros(2500));
        let r = Resampler::new(SampleRate::Hz24000, SampleRate::Hz48000).unwrap();
        assert_eq!(r.delay(), Duration::from_micros(2500));
        let r = Resampler::new(SampleRate::Hz8000, SampleRate::Hz16000).unwrap();
        assert_eq!(r.delay_samples(), 80);
        assert_eq!(r.delay(), Duration::from_millis(5));
        let r = Resampler::new(SampleRate::Hz24000, SampleRate::Hz8000).unwrap();
        assert_eq!(r.delay(), Duration::from_millis(5));
    }

    #[test]
    fn identity_passes_frames_through() {
        let mut r = Resampler::new(SampleRate::Hz16000, SampleRate::Hz16000).unwrap();
        assert!(r.is_identity());
        assert_eq!(r.delay(), Duration::ZERO);
        let mut f = AudioFrame::from_samples(SampleRate::Hz16000, &[123; 320]).unwrap();
        f.set_origin(FrameOrigin::Recovered);
        assert_eq!(r.process(&f).unwrap(), f);
    }

    #[test]
    fn origin_is_kept_and_wrong_rate_is_refused() {
        let mut r = Resampler::new(SampleRate::Hz48000, SampleRate::Hz16000).unwrap();
        let mut f = AudioFrame::silent(SampleRate::Hz48000);
        f.set_origin(FrameOrigin::Concealed);
        let out = r.process(&f).unwrap();
        assert_eq!(out.rate(), SampleRate::Hz16000);
        assert_eq!(out.origin(), FrameOrigin::Concealed);
        let err = r
            .process(&AudioFrame::silent(SampleRate::Hz8000))
            .unwrap_err();
        assert_eq!(
            err,
            CodecError::RateMismatch {
                expected: 48_000,
                got: 8_000
            }
        );
    }

    #[test]
    fn full_scale_input_saturates_instead_of_wrapping() {
        let mut r = Resampler::new(SampleRate::Hz8000, SampleRate::Hz48000).unwrap();
        // A full-scale square wave overshoots (Gibbs) after band-limiting.
        let y = run(&mut r, 10, |i, _| {
            if (i / 8) % 2 == 0 {
                32767.0
            } else {
                -32768.0
            }
        });
        assert!(y.iter().all(|&v| (-32768.0..=32767.0).contains(&v)));
        assert!(y.iter().any(|&v| v >= 32767.0 || v <= -32768.0));
    }
}
