//! WAV decoding shared by the examples: any channel count and sample format at 8, 16, 24 or
//! 48 kHz, read as mono PCM16 at the file's own rate. Errors are plain text; each example
//! wraps them in its own error type with the file's path.

use std::path::Path;

use voxline::codecs::SampleRate;

/// Reads `path` as mono PCM16 (channels averaged) at its own rate; at least one 20 ms frame.
pub fn read_mono(path: &Path) -> Result<(SampleRate, Vec<i16>), String> {
    let mut reader = hound::WavReader::open(path).map_err(|e| e.to_string())?;
    let spec = reader.spec();
    let rate = SampleRate::from_hz(spec.sample_rate).map_err(|_| {
        format!(
            "sample rate {} Hz is not supported (use 8000, 16000, 24000 or 48000 Hz, \
             e.g. ffmpeg -i IN -ar 16000 OUT.wav)",
            spec.sample_rate
        )
    })?;
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        }
        (format, bits) => {
            return Err(format!(
                "unsupported sample format {format:?} with {bits} bits"
            ))
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
        return Err("shorter than one 20 ms frame".into());
    }
    Ok((rate, mono))
}
