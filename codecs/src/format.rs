//! Payload formats an RTP session can carry, as negotiated in the host's SDP.
//!
//! The payload-type registry maps RTP payload type numbers to these; the
//! decoders and encoders are chosen from them.

use crate::SampleRate;

/// A media payload format (the `a=rtpmap` encoding name and clock rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// Opus (RFC 7587). The RTP clock is always 48 kHz; `pcm_rate` is the
    /// rate the decoder produces (libopus decodes any Opus packet at any rate).
    Opus {
        /// Rate of the PCM the decoder outputs and the encoder takes.
        pcm_rate: SampleRate,
    },
    /// G.711 µ-law (PCMU, static payload type 0), 8 kHz.
    Pcmu,
    /// G.711 A-law (PCMA, static payload type 8), 8 kHz.
    Pcma,
    /// Linear 16-bit big-endian PCM (L16) at the given rate.
    L16 {
        /// The RTP clock and sample rate.
        rate: SampleRate,
    },
    /// RFC 4733 telephone-event (DTMF) at the given RTP clock rate.
    TelephoneEvent {
        /// The RTP clock rate (matches the audio stream's clock).
        clock_rate: u32,
    },
}

impl PayloadFormat {
    /// The RTP clock rate in Hz (timestamp units per second).
    pub const fn clock_rate(self) -> u32 {
        match self {
            PayloadFormat::Opus { .. } => 48_000,
            PayloadFormat::Pcmu | PayloadFormat::Pcma => 8_000,
            PayloadFormat::L16 { rate } => rate.hz(),
            PayloadFormat::TelephoneEvent { clock_rate } => clock_rate,
        }
    }

    /// The rate of the PCM this format decodes to / encodes from; `None` for telephone-event.
    pub const fn pcm_rate(self) -> Option<SampleRate> {
        match self {
            PayloadFormat::Opus { pcm_rate } => Some(pcm_rate),
            PayloadFormat::Pcmu | PayloadFormat::Pcma => Some(SampleRate::Hz8000),
            PayloadFormat::L16 { rate } => Some(rate),
            PayloadFormat::TelephoneEvent { .. } => None,
        }
    }

    /// RTP timestamp units in one 20 ms frame.
    pub const fn ticks_per_frame(self) -> u32 {
        self.clock_rate() / 50
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_clock_is_48k_whatever_the_pcm_rate() {
        let f = PayloadFormat::Opus {
            pcm_rate: SampleRate::Hz16000,
        };
        assert_eq!(f.clock_rate(), 48_000);
        assert_eq!(f.ticks_per_frame(), 960);
        assert_eq!(f.pcm_rate(), Some(SampleRate::Hz16000));
        assert_eq!(PayloadFormat::Pcmu.ticks_per_frame(), 160);
    }
}
