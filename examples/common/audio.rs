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
    let mut reader = hound::WavReader::open(path).map_err(|e| bad(e.to_string()))?;
    let spec = reader.spec();
    let rate = SampleRate::from_hz(spec.sample_rate).map_err(|_| {
        bad(format!(
            "sample rate {} Hz is not supported (use 8000, 16000, 24000 or 48000 Hz, \
             e.g. ffmpeg -i IN -ar 16000 OUT.wav)",
            spec.sample_rate
        ))
    })?;
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        }
        (format, bits) => {
            return Err(bad(format!(
                "unsupported sample format {format:?} with {bits} bits"
            )))
        }
    };
    let mono: Vec<i16> = interleaved
        .chunks(channels)
        .map(|c| {
            let mean = c.iter().sum::<f32>() / c.len() as f32;
            (mean * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    if mono.len() < rate.frame_samples() {
        return Err(bad("shorter than one 20 ms frame".into()));
    }
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
