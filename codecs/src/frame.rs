//! The one audio frame type of voxline: 20 ms of mono PCM16 at a declared rate.
//!
//! A frame is a fixed-size value (no heap), so it can be moved through
//! lock-free rings and reused without allocating on the media path.

use crate::CodecError;

/// Duration of every frame in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Samples in the largest frame (20 ms at 48 kHz); the frame's storage size.
pub const MAX_FRAME_SAMPLES: usize = 960;

/// The sample rates the media path supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SampleRate {
    /// 8 kHz, narrowband telephony (G.711).
    Hz8000,
    /// 16 kHz, wideband (speech recognition, VAD).
    Hz16000,
    /// 24 kHz, the usual TTS output rate.
    Hz24000,
    /// 48 kHz, the Opus RTP clock.
    Hz48000,
}

impl SampleRate {
    /// All supported rates, lowest first.
    pub const ALL: [SampleRate; 4] = [
        SampleRate::Hz8000,
        SampleRate::Hz16000,
        SampleRate::Hz24000,
        SampleRate::Hz48000,
    ];

    /// The rate in Hz.
    pub const fn hz(self) -> u32 {
        match self {
            SampleRate::Hz8000 => 8_000,
            SampleRate::Hz16000 => 16_000,
            SampleRate::Hz24000 => 24_000,
            SampleRate::Hz48000 => 48_000,
        }
    }

    /// Samples in one 20 ms frame at this rate.
    pub const fn frame_samples(self) -> usize {
        (self.hz() / 1000 * FRAME_MS) as usize
    }

    /// Samples per millisecond at this rate.
    pub const fn samples_per_ms(self) -> usize {
        (self.hz() / 1000) as usize
    }

    /// The rate for a value in Hz, or a typed error naming the bad value.
    pub fn from_hz(hz: u32) -> Result<Self, CodecError> {
        match hz {
            8_000 => Ok(SampleRate::Hz8000),
            16_000 => Ok(SampleRate::Hz16000),
            24_000 => Ok(SampleRate::Hz24000),
            48_000 => Ok(SampleRate::Hz48000),
            other => Err(CodecError::UnsupportedRate(other)),
        }
    }
}

/// Where a frame's samples came from; later stages treat concealment differently from speech or silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum FrameOrigin {
    /// Decoded from a packet that arrived.
    #[default]
    Received,
    /// Recovered from the next packet's in-band FEC (LBRR) data.
    Recovered,
    /// Synthesised by packet-loss concealment: the packet never arrived.
    Concealed,
    /// Generated locally (silence fill, comfort noise, DTX gap, agent audio).
    Generated,
}

impl FrameOrigin {
    /// True when the audio stands in for a lost packet (PLC or FEC), i.e. it is
    /// not evidence of what the caller said or did not say.
    pub const fn is_loss(self) -> bool {
        matches!(self, FrameOrigin::Concealed | FrameOrigin::Recovered)
    }
}

/// 20 ms of mono PCM16 audio at a declared sample rate, stored inline.
#[derive(Clone, Copy)]
pub struct AudioFrame {
    rate: SampleRate,
    origin: FrameOrigin,
    samples: [i16; MAX_FRAME_SAMPLES],
}

impl AudioFrame {
    /// A silent frame at `rate`, marked as locally generated.
    pub const fn silent(rate: SampleRate) -> Self {
        AudioFrame {
            rate,
            origin: FrameOrigin::Generated,
            samples: [0; MAX_FRAME_SAMPLES],
        }
    }

    /// A frame holding a copy of `samples`, which must be exactly one 20 ms frame at `rate`.
    pub fn from_samples(rate: SampleRate, samples: &[i16]) -> Result<Self, CodecError> {
        let mut frame = AudioFrame::silent(rate);
        frame.fill_from(rate, FrameOrigin::Received, samples)?;
        Ok(frame)
    }

    /// The frame's sample rate.
    pub const fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Where the samples came from.
    pub const fn origin(&self) -> FrameOrigin {
        self.origin
    }

    /// Records where the samples came from.
    pub fn set_origin(&mut self, origin: FrameOrigin) {
        self.origin = origin;
    }

    /// Changes the rate and zeroes the samples, reusing the storage.
    ///
    /// Only the samples of one frame at `rate` are written (the rest of the storage is never
    /// visible at that rate): a silent 8 kHz frame costs 320 bytes, not the full 2 KB.
    pub fn reset(&mut self, rate: SampleRate, origin: FrameOrigin) {
        self.rate = rate;
        self.origin = origin;
        self.samples[..rate.frame_samples()].fill(0);
    }

    /// Overwrites this frame with `samples` (one 20 ms frame at `rate`), reusing the storage:
    /// the copy writes only those samples, where building a new frame would first zero the
    /// whole 2 KB and then move it.
    pub fn fill_from(
        &mut self,
        rate: SampleRate,
        origin: FrameOrigin,
        samples: &[i16],
    ) -> Result<(), CodecError> {
        let n = rate.frame_samples();
        if samples.len() != n {
            return Err(CodecError::FrameLength {
                rate: rate.hz(),
                expected: n,
                got: samples.len(),
            });
        }
        self.rate = rate;
        self.origin = origin;
        self.samples[..n].copy_from_slice(samples);
        Ok(())
    }

    /// The samples of this frame (exactly `rate.frame_samples()` of them).
    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.rate.frame_samples()]
    }

    /// Mutable access to the samples of this frame.
    pub fn samples_mut(&mut self) -> &mut [i16] {
        let n = self.rate.frame_samples();
        &mut self.samples[..n]
    }

    /// True when every sample is zero.
    pub fn is_digital_silence(&self) -> bool {
        self.samples().iter().all(|&s| s == 0)
    }

    /// Mean power in dBFS (full scale sine = about -3 dBFS); -120 for digital silence.
    pub fn level_dbfs(&self) -> f32 {
        let s = self.samples();
        // Exact integer sum (each square is below 2^31, 960 of them below 2^41): the same value
        // as summing in f64, but it vectorizes, which a float reduction cannot.
        let sum: u64 = s
            .iter()
            .map(|&x| u64::from(i32::from(x).unsigned_abs().pow(2)))
            .sum();
        let mean = sum as f64 / s.len() as f64;
        if mean <= 0.0 {
            return -120.0;
        }
        (10.0 * (mean / (32768.0f64 * 32768.0)).log10()) as f32
    }
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFrame")
            .field("rate", &self.rate)
            .field("origin", &self.origin)
            .field("level_dbfs", &self.level_dbfs())
            .finish()
    }
}

impl PartialEq for AudioFrame {
    fn eq(&self, other: &Self) -> bool {
        self.rate == other.rate && self.origin == other.origin && self.samples() == other.samples()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_match_rates() {
        let sizes: Vec<usize> = SampleRate::ALL.iter().map(|r| r.frame_samples()).collect();
        assert_eq!(sizes, vec![160, 320, 480, 960]);
        assert_eq!(
            SampleRate::from_hz(22_050),
            Err(CodecError::UnsupportedRate(22_050))
        );
    }

    #[test]
    fn from_samples_checks_length() {
        let err = AudioFrame::from_samples(SampleRate::Hz8000, &[0; 161]).unwrap_err();
        assert!(err.to_string().contains("needs 160"), "{err}");
        let f = AudioFrame::from_samples(SampleRate::Hz8000, &[1000; 160]).unwrap();
        assert_eq!(f.samples().len(), 160);
        assert_eq!(f.origin(), FrameOrigin::Received);
        assert!(!f.is_digital_silence());
    }

    #[test]
    fn level_of_silence_and_full_scale() {
        assert_eq!(AudioFrame::silent(SampleRate::Hz16000).level_dbfs(), -120.0);
        let f = AudioFrame::from_samples(SampleRate::Hz8000, &[i16::MAX; 160]).unwrap();
        assert!(f.level_dbfs() > -0.1);
    }

    #[test]
    fn frame_is_plain_fixed_size_value() {
        assert!(std::mem::size_of::<AudioFrame>() <= 2 * MAX_FRAME_SAMPLES + 8);
    }
}
