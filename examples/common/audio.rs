//! WAV input: any channel count and sample format at 8, 16, 24 or 48 kHz, as 16 kHz mono.

use std::path::Path;

use voxline::codecs::{AudioFrame, FrameOrigin, Resampler, SampleRate};

use super::cli::AppError;

/// The rate voice clips are kept at (what the simulated caller plays).
pub const CLIP_RATE: SampleRate = SampleRate::Hz16000;

/// Reads a WAV file as 16 kHz mono PCM16 (channels averaged, resampled when needed).
pub fn read_voice(path: &Path) -> Result<Vec<i16>, AppError> {
    let bad = |detail: String| AppError::Input {
        path: path.to_path_buf(),
        detail,
    };
    let (rate, mono) = super::wav::read_mono(path).map_err(bad)?;
    resample(&mono, rate, CLIP_RATE).map_err(bad)
}

/// Resamples mono PCM16 frame by frame with the codecs' resampler; the last partial frame is
/// padded with silence.
pub fn resample(samples: &[i16], from: SampleRate, to: SampleRate) -> Result<Vec<i16>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let mut resampler = Resampler::new(from, to).map_err(|e| format!("resampler: {e}"))?;
    let n = from.frame_samples();
    let mut out = Vec::with_capacity(samples.len() * to.hz() as usize / from.hz() as usize + n);
    let mut input = AudioFrame::silent(from);
    let mut output = AudioFrame::silent(to);
    for chunk in samples.chunks(n) {
        input.reset(from, FrameOrigin::Received);
        input.samples_mut()[..chunk.len()].copy_from_slice(chunk);
        resampler
            .process_into(&input, &mut output)
            .map_err(|e| format!("resampler: {e}"))?;
        out.extend_from_slice(output.samples());
    }
    Ok(out)
}

/// Seconds of audio in `samples` at `rate`.
pub fn seconds(samples: usize, rate: SampleRate) -> f64 {
    samples as f64 / f64::from(rate.hz())
}
