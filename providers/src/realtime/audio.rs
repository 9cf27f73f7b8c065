//! Audio on the realtime wire: the session's audio format, caller frames turned into base64
//! `input_audio_buffer.append` batches, and base64 audio deltas turned back into PCM.
//!
//! Both vendors carry audio as standard base64 inside JSON, in the format the session
//! declared: PCM16 little-endian at 24 kHz, or G.711 µ-law/A-law at 8 kHz (one byte per
//! sample). Caller frames arrive at the call's rate and are resampled (or G.711-encoded)
//! here; agent audio is decoded to PCM16 at the wire rate and handed to the engine as is.

use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{json, Value};
use voxline_codecs::g711;
use voxline_codecs::{AudioFrame, Resampler, SampleRate};

/// Encodes with padding (what both vendors send) and decodes with or without it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64 with padding, as the realtime protocols carry audio.
pub fn base64_encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes standard base64; padding is optional.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(text)
}

/// How the adapter picks the session's audio format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AudioMode {
    /// G.711 µ-law when the call runs at 8 kHz (no resampling either way), otherwise PCM16 at
    /// 24 kHz.
    #[default]
    Auto,
    /// Always PCM16 at 24 kHz (`audio/pcm`, rate 24000), resampling the caller's audio.
    Pcm,
    /// Always G.711 µ-law at 8 kHz (`audio/pcmu`).
    Pcmu,
    /// Always G.711 A-law at 8 kHz (`audio/pcma`).
    Pcma,
}

impl AudioMode {
    /// The wire format for a call whose caller frames arrive at `input_rate`.
    pub fn resolve(self, input_rate: SampleRate) -> WireFormat {
        match self {
            AudioMode::Auto if input_rate == SampleRate::Hz8000 => WireFormat::Pcmu,
            AudioMode::Auto | AudioMode::Pcm => WireFormat::Pcm24k,
            AudioMode::Pcmu => WireFormat::Pcmu,
            AudioMode::Pcma => WireFormat::Pcma,
        }
    }
}

/// An audio format both realtime vendors accept, used for input and output alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// PCM16 little-endian mono at 24 kHz (`{"type":"audio/pcm","rate":24000}`).
    Pcm24k,
    /// G.711 µ-law at 8 kHz (`{"type":"audio/pcmu"}`).
    Pcmu,
    /// G.711 A-law at 8 kHz (`{"type":"audio/pcma"}`).
    Pcma,
}

impl WireFormat {
    /// The sample rate of the format.
    pub fn rate(self) -> SampleRate {
        match self {
            WireFormat::Pcm24k => SampleRate::Hz24000,
            WireFormat::Pcmu | WireFormat::Pcma => SampleRate::Hz8000,
        }
    }

    /// Bytes per sample on the wire: 2 for PCM16, 1 for G.711.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            WireFormat::Pcm24k => 2,
            WireFormat::Pcmu | WireFormat::Pcma => 1,
        }
    }

    /// Bytes that carry `duration` of audio, rounded down to whole samples.
    pub fn bytes_for(self, duration: Duration) -> usize {
        let samples = duration.as_micros() as u64 * u64::from(self.rate().hz()) / 1_000_000;
        samples as usize * self.bytes_per_sample()
    }

    /// The format object of `session.audio.{input,output}.format`.
    pub fn to_json(self) -> Value {
        match self {
            WireFormat::Pcm24k => json!({"type": "audio/pcm", "rate": 24000}),
            WireFormat::Pcmu => json!({"type": "audio/pcmu"}),
            WireFormat::Pcma => json!({"type": "audio/pcma"}),
        }
    }

    /// Appends the wire bytes of `samples` to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        match self {
            WireFormat::Pcm24k => {
                out.reserve(samples.len() * 2);
                for s in samples {
                    out.extend_from_slice(&s.to_le_bytes());
                }
            }
            WireFormat::Pcmu => out.extend(samples.iter().map(|&s| g711::linear_to_ulaw(s))),
            WireFormat::Pcma => out.extend(samples.iter().map(|&s| g711::linear_to_alaw(s))),
        }
    }

    /// Appends the samples of whole wire `bytes` to `out`; a trailing odd PCM byte is ignored
    /// (callers that stream carry it themselves).
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        match self {
            WireFormat::Pcm24k => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
            ),
            WireFormat::Pcmu => out.extend(bytes.iter().map(|&b| g711::ulaw_to_linear(b))),
            WireFormat::Pcma => out.extend(bytes.iter().map(|&b| g711::alaw_to_linear(b))),
        }
    }
}

/// Caller frames in, base64 batches out: resamples or G.711-encodes each frame into a byte
/// buffer and releases it in batches of at least `batch` audio.
pub(crate) struct InputEncoder {
    format: WireFormat,
    resampler: Option<Resampler>,
    scratch: AudioFrame,
    pending: Vec<u8>,
    batch_bytes: usize,
    max_buffered_bytes: usize,
    dropped_frames: u64,
}

impl InputEncoder {
    /// An encoder to `format` sending batches of `batch` and holding at most `max_buffered`
    /// while the session cannot take audio yet.
    pub(crate) fn new(format: WireFormat, batch: Duration, max_buffered: Duration) -> Self {
        let sample = format.bytes_per_sample();
        InputEncoder {
            format,
            resampler: None,
            scratch: AudioFrame::silent(format.rate()),
            pending: Vec::with_capacity(format.bytes_for(batch) * 2),
            batch_bytes: format.bytes_for(batch).max(sample),
            max_buffered_bytes: format.bytes_for(max_buffered).max(sample),
            dropped_frames: 0,
        }
    }

    /// Encodes one caller frame. A frame at a rate that cannot be converted is dropped and
    /// counted (the media path only produces supported rates, so this does not happen).
    pub(crate) fn push(&mut self, frame: &AudioFrame) {
        let target = self.format.rate();
        if frame.rate() == target {
            self.format.encode(frame.samples(), &mut self.pending);
            return;
        }
        let stale = self
            .resampler
            .as_ref()
            .is_none_or(|r| r.from_rate() != frame.rate());
        if stale {
            match Resampler::new(frame.rate(), target) {
                Ok(r) => self.resampler = Some(r),
                Err(_) => {
                    self.dropped_frames += 1;
                    return;
                }
            }
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return;
        };
        if resampler.process_into(frame, &mut self.scratch).is_err() {
            self.dropped_frames += 1;
            return;
        }
        self.format
            .encode(self.scratch.samples(), &mut self.pending);
    }

    /// The next batch as base64: one batch when at least that much is buffered, or the rest
    /// when `flush` is set. A backlog goes out as several batches; call again until `None`.
    pub(crate) fn take(&mut self, flush: bool) -> Option<String> {
        if self.pending.is_empty() || (!flush && self.pending.len() < self.batch_bytes) {
            return None;
        }
        let n = self.pending.len().min(self.batch_bytes);
        let text = base64_encode(&self.pending[..n]);
        self.pending.drain(..n);
        Some(text)
    }

    /// Drops the oldest audio beyond the buffering cap (used before the session is ready).
    pub(crate) fn trim(&mut self) {
        if self.pending.len() > self.max_buffered_bytes {
            let sample = self.format.bytes_per_sample();
            let excess = self.pending.len() - self.max_buffered_bytes;
            let excess = excess.div_ceil(sample) * sample;
            self.pending.drain(..excess.min(self.pending.len()));
        }
    }

    /// Frames dropped because their rate could not be converted.
    #[cfg(test)]
    pub(crate) fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }
}

/// Base64 audio deltas in, PCM16 out. A PCM sample split across two deltas of the same item
/// is carried over; a dangling byte at the end of an item is dropped.
pub(crate) struct OutputDecoder {
    format: WireFormat,
    carry: Option<(String, u8)>,
}

impl OutputDecoder {
    /// A decoder for audio in `format`.
    pub(crate) fn new(format: WireFormat) -> Self {
        OutputDecoder {
            format,
            carry: None,
        }
    }

    /// The samples of one delta of item `key`.
    pub(crate) fn decode(&mut self, key: &str, b64: &str) -> Result<Vec<i16>, base64::DecodeError> {
        let bytes = base64_decode(b64)?;
        let mut samples = Vec::with_capacity(bytes.len() / self.format.bytes_per_sample() + 1);
        if self.format != WireFormat::Pcm24k {
            self.format.decode(&bytes, &mut samples);
            return Ok(samples);
        }
        let mut rest = &bytes[..];
        if let Some((item, low)) = self.carry.take() {
            if item == key {
                match rest.split_first() {
                    Some((&high, tail)) => {
                        samples.push(i16::from_le_bytes([low, high]));
                        rest = tail;
                    }
                    None => {
                        self.carry = Some((item, low));
                        return Ok(samples);
                    }
                }
            }
        }
        self.format.decode(rest, &mut samples);
        if rest.len() % 2 == 1 {
            if let Some(&last) = rest.last() {
                self.carry = Some((key.to_string(), last));
            }
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_passes_g711_through_at_8k() {
        assert_eq!(
            AudioMode::Auto.resolve(SampleRate::Hz8000),
            WireFormat::Pcmu
        );
        assert_eq!(
            AudioMode::Auto.resolve(SampleRate::Hz16000),
            WireFormat::Pcm24k
        );
        assert_eq!(
            AudioMode::Pcma.resolve(SampleRate::Hz48000),
            WireFormat::Pcma
        );
        assert_eq!(WireFormat::Pcm24k.bytes_for(Duration::from_millis(20)), 960);
        assert_eq!(WireFormat::Pcmu.bytes_for(Duration::from_millis(20)), 160);
    }

    #[test]
    fn batches_hold_whole_frames_and_flush_the_rest() {
        let mut enc = InputEncoder::new(
            WireFormat::Pcm24k,
            Duration::from_millis(40),
            Duration::from_secs(1),
        );
        let frame = AudioFrame::silent(SampleRate::Hz24000);
        enc.push(&frame);
        assert!(enc.take(false).is_none());
        enc.push(&frame);
        let batch = base64_decode(&enc.take(false).unwrap()).unwrap();
        assert_eq!(batch.len(), 1920);
        enc.push(&frame);
        assert!(enc.take(false).is_none());
        assert_eq!(base64_decode(&enc.take(true).unwrap()).unwrap().len(), 960);
        assert!(enc.take(true).is_none());
    }

    #[test]
    fn resamples_and_encodes_g711() {
        let mut enc = InputEncoder::new(
            WireFormat::Pcmu,
            Duration::from_millis(20),
            Duration::from_secs(1),
        );
        enc.push(&AudioFrame::silent(SampleRate::Hz16000));
        let bytes = base64_decode(&enc.take(false).unwrap()).unwrap();
        assert_eq!(bytes.len(), 160);
        assert!(bytes.iter().all(|&b| b == g711::ULAW_SILENCE));
        assert_eq!(enc.dropped_frames(), 0);
    }

    #[test]
    fn trim_keeps_the_newest_audio() {
        let mut enc = InputEncoder::new(
            WireFormat::Pcmu,
            Duration::from_millis(100),
            Duration::from_millis(40),
        );
        for _ in 0..5 {
            enc.push(&AudioFrame::silent(SampleRate::Hz8000));
        }
        enc.trim();
        assert_eq!(base64_decode(&enc.take(true).unwrap()).unwrap().len(), 320);
        assert!(enc.take(true).is_none());
    }

    #[test]
    fn a_backlog_goes_out_in_batches() {
        let mut enc = InputEncoder::new(
            WireFormat::Pcmu,
            Duration::from_millis(40),
            Duration::from_secs(1),
        );
        for _ in 0..5 {
            enc.push(&AudioFrame::silent(SampleRate::Hz8000));
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| enc.take(false))
            .map(|b| base64_decode(&b).unwrap().len())
            .collect();
        assert_eq!(sizes, [320, 320]);
        assert_eq!(base64_decode(&enc.take(true).unwrap()).unwrap().len(), 160);
    }

    #[test]
    fn odd_pcm_bytes_carry_across_deltas_of_one_item() {
        let samples: Vec<i16> = vec![1, -2, 300, -400, 32767];
        let mut bytes = Vec::new();
        WireFormat::Pcm24k.encode(&samples, &mut bytes);
        let mut dec = OutputDecoder::new(WireFormat::Pcm24k);
        let mut out = Vec::new();
        for piece in [&bytes[..3], &bytes[3..4], &bytes[4..7], &bytes[7..]] {
            out.extend(dec.decode("item", &base64_encode(piece)).unwrap());
        }
        assert_eq!(out, samples);
        // A new item does not inherit the previous item's dangling byte.
        assert!(dec.decode("a", &base64_encode(&[1])).unwrap().is_empty());
        assert_eq!(dec.decode("b", &base64_encode(&[2, 0])).unwrap(), vec![2]);
        assert!(dec.decode("b", "!!").is_err());
    }
}
