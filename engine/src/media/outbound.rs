//! Outbound media: the agent's 20 ms frames resampled to the codec's rate, encoded,
//! and written as RTP with continuous numbering; silence advances the timestamp and
//! the next talk-spurt carries the marker bit.

use voxline_codecs::rtp::SenderConfig;
use voxline_codecs::{
    AudioFrame, FrameEncoder, FrameOrigin, PayloadFormat, Resampler, RtpSender, SampleRate,
};

use super::{MediaConfig, MediaError};

/// Counters of the outbound side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboundCounters {
    /// RTP packets written.
    pub packets: u64,
    /// Payload bytes written.
    pub payload_bytes: u64,
    /// Agent frames encoded.
    pub frames_encoded: u64,
    /// Ticks of agent silence (no packet, timestamp advanced).
    pub silent_ticks: u64,
    /// Frames the encoder rejected.
    pub encode_errors: u64,
}

/// The agent side of a call's media.
pub struct OutboundMedia {
    sender: RtpSender,
    encoder: FrameEncoder,
    resampler: Option<(SampleRate, Resampler)>,
    /// Opus complexity normally and while shedding load.
    complexity: (u8, u8),
    shedding: bool,
    send_silence: bool,
    talking: bool,
    /// Frames pushed into the encoder that have not yet produced a packet (40/60 ms packets).
    pending_frames: u32,
    /// RTP ticks of one 20 ms frame.
    frame_ticks: u32,
    resampled: AudioFrame,
    silence: AudioFrame,
    payload: Box<[u8; 1500]>,
    packet: Box<[u8; 1600]>,
    packet_len: usize,
    counters: OutboundCounters,
}

impl OutboundMedia {
    /// Outbound media sending `config.send_payload_type`.
    pub fn new(config: &MediaConfig) -> Result<Self, MediaError> {
        let pt = config.send_payload_type;
        let format = match config.registry.get(pt) {
            Some(PayloadFormat::Opus { pcm_rate }) => PayloadFormat::Opus { pcm_rate },
            Some(f @ (PayloadFormat::Pcmu | PayloadFormat::Pcma | PayloadFormat::L16 { .. })) => f,
            _ => return Err(MediaError::UnknownPayloadType(pt)),
        };
        let encoder = match format {
            PayloadFormat::Opus { pcm_rate } => {
                // The complexity to shed load at must be one libopus has, like the normal one.
                voxline_codecs::OpusConfig {
                    complexity: config.opus_shed_complexity,
                    ..config.opus
                }
                .validate()?;
                FrameEncoder::from(voxline_codecs::OpusEncoder::new(pcm_rate, config.opus)?)
            }
            other => FrameEncoder::new(other, config.packet)?,
        };
        // The sender advances by one packet per write; silence is skipped 20 ms at a time.
        let sender = RtpSender::new(SenderConfig {
            ssrc: config.ssrc,
            payload_type: pt,
            initial_sequence: config.initial_sequence,
            initial_timestamp: config.initial_timestamp,
            ticks_per_frame: encoder.packet_ticks(),
        })
        .map_err(|e| MediaError::Codec(e.into()))?;
        let rate = encoder.rate();
        Ok(OutboundMedia {
            sender,
            encoder,
            resampler: None,
            complexity: (config.opus.complexity, config.opus_shed_complexity),
            shedding: false,
            send_silence: config.send_silence,
            talking: false,
            pending_frames: 0,
            frame_ticks: format.ticks_per_frame(),
            resampled: AudioFrame::silent(rate),
            silence: AudioFrame::silent(rate),
            payload: Box::new([0; 1500]),
            packet: Box::new([0; 1600]),
            packet_len: 0,
            counters: OutboundCounters::default(),
        })
    }

    /// The rate the encoder takes (agent frames at another rate are resampled).
    pub fn codec_rate(&self) -> SampleRate {
        self.encoder.rate()
    }

    /// Encodes more cheaply while `shed` holds (Opus: the shed complexity of
    /// [`MediaConfig::opus_shed_complexity`]), as configured otherwise; other codecs cost
    /// next to nothing and stay as they are. Allocates nothing.
    pub fn set_load_shedding(&mut self, shed: bool) {
        if shed == self.shedding {
            return;
        }
        self.shedding = shed;
        if let FrameEncoder::Opus(encoder) = &mut self.encoder {
            let complexity = if shed {
                self.complexity.1
            } else {
                self.complexity.0
            };
            // Both values were validated when the media was built.
            if encoder.set_complexity(complexity).is_err() {
                self.counters.encode_errors += 1;
            }
        }
    }

    /// Whether the encoder is shedding load now.
    pub fn is_shedding_load(&self) -> bool {
        self.shedding
    }

    /// The Opus encoder's complexity now (`None` for other codecs).
    pub fn opus_complexity(&self) -> Option<u8> {
        match &self.encoder {
            FrameEncoder::Opus(encoder) => Some(encoder.config().complexity),
            FrameEncoder::Pcm(_) => None,
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> OutboundCounters {
        self.counters
    }

    /// The RTP timestamp the next audio frame will carry (a DTMF tone started now uses it).
    pub fn next_timestamp(&self) -> u32 {
        self.sender.next_timestamp()
    }

    /// Writes one RFC 4733 telephone-event packet on this stream (same SSRC and sequence
    /// numbers as the audio) and returns it; the caller paces the tone's packets.
    pub fn event_packet(
        &mut self,
        payload_type: u8,
        packet: &voxline_codecs::dtmf::DtmfPacket,
    ) -> Option<&[u8]> {
        let payload = packet.event.encode();
        match self.sender.write_event(
            payload_type,
            packet.marker,
            packet.timestamp,
            &payload,
            &mut self.packet[..],
        ) {
            Ok(n) => {
                self.packet_len = n;
                self.counters.packets += 1;
                Some(&self.packet[..n])
            }
            Err(_) => {
                self.counters.encode_errors += 1;
                None
            }
        }
    }

    /// Encodes the agent's frame for one 20 ms tick (`None` = silent) and returns the
    /// RTP packet to send, if any. Allocates only when the agent's rate first changes.
    pub fn next_packet(&mut self, frame: Option<&AudioFrame>) -> Option<&[u8]> {
        let frame = match frame {
            Some(f) => f,
            // Finish a half-built 40/60 ms packet with silence rather than dropping it.
            None if self.send_silence || self.pending_frames > 0 => {
                self.silence.set_origin(FrameOrigin::Generated);
                &self.silence
            }
            None => {
                if self.talking {
                    self.talking = false;
                }
                self.sender.skip_ticks(self.frame_ticks);
                self.counters.silent_ticks += 1;
                return None;
            }
        };
        let input = if frame.rate() == self.encoder.rate() {
            frame
        } else {
            let need_new = self
                .resampler
                .as_ref()
                .is_none_or(|(from, _)| *from != frame.rate());
            if need_new {
                match Resampler::new(frame.rate(), self.encoder.rate()) {
                    Ok(r) => self.resampler = Some((frame.rate(), r)),
                    Err(_) => {
                        self.counters.encode_errors += 1;
                        return None;
                    }
                }
            }
            let (_, r) = self.resampler.as_mut()?;
            if r.process_into(frame, &mut self.resampled).is_err() {
                self.counters.encode_errors += 1;
                return None;
            }
            &self.resampled
        };
        if self.encoder.push_frame(input).is_err() {
            self.counters.encode_errors += 1;
            return None;
        }
        self.counters.frames_encoded += 1;
        self.pending_frames += 1;
        let encoded = match self.encoder.next_packet(&mut self.payload[..]) {
            Ok(Some(p)) => p,
            Ok(None) => return None, // accumulating a 40/60 ms packet
            Err(_) => {
                self.counters.encode_errors += 1;
                return None;
            }
        };
        self.pending_frames = 0;
        if !self.talking && !self.send_silence {
            self.sender.start_talk_spurt();
        }
        self.talking = true;
        match self
            .sender
            .write_frame(&self.payload[..encoded.len], &mut self.packet[..])
        {
            Ok(n) => {
                self.packet_len = n;
                self.counters.packets += 1;
                self.counters.payload_bytes += encoded.len as u64;
                Some(&self.packet[..self.packet_len])
            }
            Err(_) => {
                self.counters.encode_errors += 1;
                None
            }
        }
    }
}
