//! The call's media path: RTP in → source check → jitter buffer → decode (PLC/FEC) →
//! resample, and agent frames → resample → encode → RTP out, plus the `MediaPort`
//! that runs them over a packet transport (UDP, or memory in tests).
//!
//! Everything here is sans-IO except `port.rs` and `endpoint.rs` (the standalone tokio
//! RTP endpoint); buffers are allocated when a call starts (or when a stream changes
//! format), never per packet.

pub mod endpoint;
pub mod inbound;
pub mod outbound;
pub mod port;

use std::net::SocketAddr;
use std::time::Duration;

use voxline_codecs::{OpusConfig, PacketDuration, PayloadRegistry, SampleRate};

pub use endpoint::{
    EndpointAudio, EndpointError, EndpointOptions, EndpointStats, ReceiverReport, RtpEndpoint,
};
pub use inbound::{InboundCounters, InboundMedia, PacketVerdict};
pub use outbound::{OutboundCounters, OutboundMedia};
pub use port::{MemoryTransport, PacketTransport, PolledUdpSocket, RtpPort};

/// Errors setting up a call's media.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MediaError {
    /// The send payload type is not in the registry, or is not audio.
    #[error("payload type {0} is not a negotiated audio format")]
    UnknownPayloadType(u8),
    /// A codec or resampler could not be built.
    #[error(transparent)]
    Codec(#[from] voxline_codecs::CodecError),
    /// The jitter buffer configuration is invalid.
    #[error(transparent)]
    Jitter(#[from] voxline_codecs::JitterError),
}

/// How a call's RTP media is set up (what the host negotiated in SDP).
#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// Payload types the remote may send, and what they mean.
    pub registry: PayloadRegistry,
    /// Payload type of the audio we send.
    pub send_payload_type: u8,
    /// Where to send; `None` learns it from the first valid packet (symmetric RTP).
    pub remote: Option<SocketAddr>,
    /// Opus encoder settings when sending Opus.
    pub opus: OpusConfig,
    /// Opus encoder complexity while the call sheds load (see [`crate::load_shedding`]);
    /// default 1, about half the encoder's CPU of the default 5.
    pub opus_shed_complexity: u8,
    /// Packet duration of what we send.
    pub packet: PacketDuration,
    /// Jitter buffer delay bounds: (min, initial, max). Defaults: 10, 10 and 200 ms.
    ///
    /// The buffer's target is the measured jitter plus half a frame (the phase of the 20 ms
    /// tick), so on a clean stream a packet plays at the first tick after it arrives. The
    /// first loss adds one and a half frames of look-ahead for good (about 40 ms on a clean
    /// stream): that loss waits one tick for the next packet and is rebuilt from its in-band
    /// FEC, and later single losses find the next packet already buffered
    /// (see `voxline_codecs::jitter`).
    pub jitter_delay: (Duration, Duration, Duration),
    /// Rate of caller frames handed to VAD and STT (8 or 16 kHz).
    pub caller_rate: SampleRate,
    /// Keep sending packets of silence while the agent is quiet (G.711 trunks often
    /// expect continuous media); otherwise the timestamp just advances (DTX-like).
    pub send_silence: bool,
    /// Our SSRC and starting sequence/timestamp (draw them at random per RFC 3550).
    pub ssrc: u32,
    /// First sequence number we send.
    pub initial_sequence: u16,
    /// First timestamp we send.
    pub initial_timestamp: u32,
}

impl MediaConfig {
    /// A config for one audio payload type of `registry`, with random SSRC and numbering.
    pub fn new(registry: PayloadRegistry, send_payload_type: u8) -> Self {
        let seed = random_seed();
        let narrowband = matches!(
            registry.get(send_payload_type),
            Some(voxline_codecs::PayloadFormat::Pcmu | voxline_codecs::PayloadFormat::Pcma)
        );
        MediaConfig {
            registry,
            send_payload_type,
            remote: None,
            opus: OpusConfig::default(),
            opus_shed_complexity: 1,
            packet: PacketDuration::Ms20,
            jitter_delay: (
                Duration::from_millis(10),
                Duration::from_millis(10),
                Duration::from_millis(200),
            ),
            caller_rate: if narrowband {
                SampleRate::Hz8000
            } else {
                SampleRate::Hz16000
            },
            send_silence: narrowband,
            ssrc: (seed >> 32) as u32,
            initial_sequence: seed as u16,
            initial_timestamp: (seed >> 16) as u32,
        }
    }
}

/// A per-call random value from the std hasher's random keys (no extra dependency).
fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}
