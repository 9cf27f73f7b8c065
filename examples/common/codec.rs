//! The audio codec an RTP example puts on the wire, as named on its command line.

use voxline::codecs::{PayloadFormat, SampleRate};

/// The audio codec on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Opus, 48 kHz RTP clock.
    Opus,
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
}

impl Codec {
    /// `opus`, `pcmu` or `pcma` (any case); the error is the message for `--codec`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "opus" => Ok(Codec::Opus),
            "pcmu" => Ok(Codec::Pcmu),
            "pcma" => Ok(Codec::Pcma),
            other => Err(format!(
                "--codec: unknown codec {other:?} (use opus, pcmu or pcma)"
            )),
        }
    }

    /// The static payload type (RFC 3551) or the usual dynamic one for Opus.
    pub fn default_payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The payload format to register for it.
    pub fn format(self) -> PayloadFormat {
        match self {
            Codec::Opus => PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz48000,
            },
            Codec::Pcmu => PayloadFormat::Pcmu,
            Codec::Pcma => PayloadFormat::Pcma,
        }
    }

    /// The name to print.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "Opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}
