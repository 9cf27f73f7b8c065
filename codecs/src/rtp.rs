//! RTP packets (RFC 3550 §5): a validated zero-copy view, an allocation-free writer, the
//! outbound sequencer ([`RtpSender`]) and the inbound per-source tracker ([`RtpSource`]).
//!
//! Parsing and full-packet building go through `rtp-rs`; this module adds typed errors for
//! every malformed input, a header-only writer for payloads encoded in place, and the
//! sequence/SSRC bookkeeping a call needs on both directions.

use std::time::Duration;

use rtp_rs::{Pad, RtpPacketBuildError, RtpPacketBuilder, RtpReader, RtpReaderError, Seq};
use thiserror::Error;

use crate::seq::{SeqUnwrapper, TimestampUnwrapper};
use crate::stats::{PacketOrder, ReceiverStats, ReportBlock};

/// The only RTP version in use (RFC 3550).
pub const RTP_VERSION: u8 = 2;

/// Length of the fixed RTP header, before CSRCs and extension.
pub const HEADER_LEN: usize = 12;

/// Most contributing sources one header can list (4-bit count).
pub const MAX_CSRCS: usize = 15;

/// Largest header-extension body the writer accepts, in bytes (a multiple of 4).
pub const MAX_EXTENSION_LEN: usize = 0xFFFC;

/// A jump ahead of the highest sequence number larger than this is treated as a possible
/// sender restart rather than loss (RFC 3550 A.1 `MAX_DROPOUT`).
pub const MAX_DROPOUT: u64 = 3000;

/// Packets up to this far behind the highest sequence number are accepted as reordered;
/// older ones are treated like a jump (RFC 3550 A.1 `MAX_MISORDER`).
pub const MAX_MISORDER: u64 = 100;

/// Default number of consecutive in-sequence packets a new SSRC must send before the tracker
/// switches to it (RFC 3550 A.1 `MIN_SEQUENTIAL`).
pub const DEFAULT_SSRC_PROBATION: u32 = 2;

/// Why an RTP packet could not be parsed or written.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtpError {
    /// Fewer bytes than the fixed header.
    #[error("RTP packet of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The version field is not 2.
    #[error("RTP version {0} is not supported (only version 2 exists)")]
    BadVersion(u8),
    /// The CSRC count claims more identifiers than the packet holds.
    #[error(
        "RTP header lists {count} CSRCs ({needed} header bytes) but the packet has {len} bytes"
    )]
    CsrcTruncated {
        /// The CSRC count from the first byte.
        count: u8,
        /// Bytes the fixed header plus CSRC list need.
        needed: usize,
        /// Bytes received.
        len: usize,
    },
    /// The header extension (its 4-byte preamble or its declared body) runs past the end.
    #[error("RTP header extension needs {needed} bytes but the packet has {len}")]
    ExtensionTruncated {
        /// Bytes the headers need up to the end of the extension.
        needed: usize,
        /// Bytes received.
        len: usize,
    },
    /// The padding flag is set but the count in the last byte is 0 or exceeds the bytes after the headers.
    #[error("RTP padding count {padding} is invalid with {available} bytes after the headers")]
    PaddingInvalid {
        /// The padding count from the last byte (0 if there is no byte after the headers).
        padding: u8,
        /// Bytes after the headers, payload and padding together.
        available: usize,
    },
    /// The output buffer cannot hold the packet.
    #[error("output buffer of {capacity} bytes is too small for a {needed}-byte RTP packet")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer has.
        capacity: usize,
    },
    /// A payload type above 127 (it must fit in 7 bits).
    #[error("RTP payload type {0} is out of range 0..=127")]
    InvalidPayloadType(u8),
    /// More than 15 CSRCs were given to the writer.
    #[error("{0} CSRCs given; an RTP header holds at most 15")]
    TooManyCsrcs(usize),
    /// A header-extension body whose length is not a multiple of 4 bytes.
    #[error("RTP header extension of {0} bytes is not a multiple of 4")]
    ExtensionUnaligned(usize),
    /// A header-extension body longer than [`MAX_EXTENSION_LEN`].
    #[error("RTP header extension of {0} bytes exceeds the {MAX_EXTENSION_LEN}-byte limit")]
    ExtensionTooLong(usize),
    /// Padding alignment below 2 (a padded packet needs at least the count byte).
    #[error("RTP padding alignment {0} is invalid (must be 2..=255)")]
    InvalidPadAlignment(u8),
    /// A sender configured with zero timestamp ticks per frame.
    #[error("RTP sender needs a positive number of timestamp ticks per frame")]
    ZeroTicksPerFrame,
}

/// The fixed-header fields a packet is identified by (everything but CSRCs, extension and padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// Marker bit; for audio, the first packet of a talk-spurt (RFC 3551 §4.1).
    pub marker: bool,
    /// Payload type, 0..=127, mapped to a format by the session's [`crate::PayloadRegistry`].
    pub payload_type: u8,
    /// 16-bit sequence number, +1 per packet sent.
    pub sequence: u16,
    /// 32-bit media timestamp in the payload format's clock.
    pub timestamp: u32,
    /// Synchronisation source identifier.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes the 12-byte fixed header (no CSRCs, extension or padding) into `out[..12]` and
    /// returns 12; for payloads an encoder already wrote in place at `out[12..]`.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        if self.payload_type > 0x7F {
            return Err(RtpError::InvalidPayloadType(self.payload_type));
        }
        let Some(head) = out.get_mut(..HEADER_LEN) else {
            return Err(RtpError::BufferTooSmall {
                needed: HEADER_LEN,
                capacity: out.len(),
            });
        };
        head[0] = RTP_VERSION << 6;
        head[1] = (u8::from(self.marker) << 7) | self.payload_type;
        head[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        head[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        head[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(HEADER_LEN)
    }
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16-bit identifier and the body.
///
/// RFC 8285 one-byte (`0xBEDE`) and two-byte (`0x100x`) element lists are left to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderExtension<'a> {
    /// The "defined by profile" field.
    pub profile: u16,
    /// The extension body (its length is a multiple of 4 bytes).
    pub data: &'a [u8],
}

/// A validated RTP packet borrowed from a receive buffer; every accessor is infallible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    header: RtpHeader,
    csrc_bytes: &'a [u8],
    extension: Option<HeaderExtension<'a>>,
    payload: &'a [u8],
    padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as one RTP packet and returns a view of it, or the first defect found.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let reader = match RtpReader::new(buf) {
            Ok(reader) => reader,
            Err(err) => return Err(diagnose(buf, err)),
        };
        let csrc_end = HEADER_LEN + 4 * usize::from(reader.csrc_count());
        Ok(RtpPacket {
            header: RtpHeader {
                marker: reader.mark(),
                payload_type: reader.payload_type(),
                sequence: u16::from(reader.sequence_number()),
                timestamp: reader.timestamp(),
                ssrc: reader.ssrc(),
            },
            csrc_bytes: buf.get(HEADER_LEN..csrc_end).unwrap_or_default(),
            extension: reader
                .extension()
                .map(|(profile, data)| HeaderExtension { profile, data }),
            payload: reader.payload(),
            padding: reader.padding().unwrap_or(0),
        })
    }

    /// The fixed-header fields.
    pub fn header(&self) -> RtpHeader {
        self.header
    }

    /// Marker bit.
    pub fn marker(&self) -> bool {
        self.header.marker
    }

    /// Payload type (0..=127).
    pub fn payload_type(&self) -> u8 {
        self.header.payload_type
    }

    /// 16-bit sequence number.
    pub fn sequence(&self) -> u16 {
        self.header.sequence
    }

    /// 32-bit media timestamp.
    pub fn timestamp(&self) -> u32 {
        self.header.timestamp
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }

    /// Number of contributing sources listed.
    pub fn csrc_count(&self) -> usize {
        self.csrc_bytes.len() / 4
    }

    /// The contributing sources, in header order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc_bytes
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The header extension, if the X bit is set.
    pub fn extension(&self) -> Option<HeaderExtension<'a>> {
        self.extension
    }

    /// The payload, without headers or padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Padding bytes after the payload, count byte included (0 when the P bit is clear).
    pub fn padding(&self) -> u8 {
        self.padding
    }
}

/// Whether a datagram on an RTP/RTCP-multiplexed port is RTCP (RFC 5761 §4: second byte 192..=223).
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

/// Names the first defect of a buffer `rtp-rs` rejected (cold path only).
#[cold]
fn diagnose(buf: &[u8], err: RtpReaderError) -> RtpError {
    match check_layout(buf) {
        Err(precise) => precise,
        // Unreachable while the two validations agree (a unit test checks they do).
        Ok(()) => match err {
            RtpReaderError::BufferTooShort(len) => RtpError::TooShort { len },
            RtpReaderError::UnsupportedVersion(v) => RtpError::BadVersion(v),
            RtpReaderError::HeadersTruncated {
                header_len,
                buffer_len,
            } => RtpError::ExtensionTruncated {
                needed: header_len,
                len: buffer_len,
            },
            RtpReaderError::PaddingLengthInvalid(padding) => RtpError::PaddingInvalid {
                padding,
                available: buf.len().saturating_sub(HEADER_LEN),
            },
        },
    }
}

/// Walks the header layout and reports the first field that does not fit.
fn check_layout(buf: &[u8]) -> Result<(), RtpError> {
    let len = buf.len();
    let first = match buf {
        [first, ..] if len >= HEADER_LEN => *first,
        _ => return Err(RtpError::TooShort { len }),
    };
    let version = first >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let count = first & 0x0F;
    let mut offset = HEADER_LEN + 4 * usize::from(count);
    if offset > len {
        return Err(RtpError::CsrcTruncated {
            count,
            needed: offset,
            len,
        });
    }
    if first & 0x10 != 0 {
        let words = match buf.get(offset + 2..offset + 4) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => {
                return Err(RtpError::ExtensionTruncated {
                    needed: offset + 4,
                    len,
                })
            }
        };
        offset += 4 + 4 * words;
        if offset > len {
            return Err(RtpError::ExtensionTruncated {
                needed: offset,
                len,
            });
        }
    }
    if first & 0x20 != 0 {
        let available = len - offset;
        let padding = if available == 0 {
            0
        } else {
            buf.last().copied().unwrap_or(0)
        };
        if padding == 0 || usize::from(padding) > available {
            return Err(RtpError::PaddingInvalid { padding, available });
        }
    }
    Ok(())
}

/// Everything one outgoing packet carries; [`write`](Self::write) serialises it without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpWriter<'a> {
    header: RtpHeader,
    csrcs: &'a [u32],
    extension: Option<HeaderExtension<'a>>,
    pad_to: Option<u8>,
    payload: &'a [u8],
}

impl<'a> RtpWriter<'a> {
    /// A packet with `header` and `payload`, no CSRCs, extension or padding.
    pub fn new(header: RtpHeader, payload: &'a [u8]) -> Self {
        RtpWriter {
            header,
            csrcs: &[],
            extension: None,
            pad_to: None,
            payload,
        }
    }

    /// Lists contributing sources (at most [`MAX_CSRCS`]; checked on write).
    pub fn csrcs(mut self, csrcs: &'a [u32]) -> Self {
        self.csrcs = csrcs;
        self
    }

    /// Adds a header extension; `data` must be a multiple of 4 bytes (checked on write).
    pub fn extension(mut self, profile: u16, data: &'a [u8]) -> Self {
        self.extension = Some(HeaderExtension { profile, data });
        self
    }

    /// Pads the packet to a multiple of `multiple` bytes (2..=255), e.g. for block ciphers.
    pub fn pad_to(mut self, multiple: u8) -> Self {
        self.pad_to = Some(multiple);
        self
    }

    /// Checks the fields the wire format constrains.
    pub fn validate(&self) -> Result<(), RtpError> {
        if self.header.payload_type > 0x7F {
            return Err(RtpError::InvalidPayloadType(self.header.payload_type));
        }
        if self.csrcs.len() > MAX_CSRCS {
            return Err(RtpError::TooManyCsrcs(self.csrcs.len()));
        }
        if let Some(ext) = self.extension {
            if ext.data.len() > MAX_EXTENSION_LEN {
                return Err(RtpError::ExtensionTooLong(ext.data.len()));
            }
            if ext.data.len() % 4 != 0 {
                return Err(RtpError::ExtensionUnaligned(ext.data.len()));
            }
        }
        if let Some(multiple) = self.pad_to {
            if multiple < 2 {
                return Err(RtpError::InvalidPadAlignment(multiple));
            }
        }
        Ok(())
    }

    /// Length of the serialised packet, padding included.
    pub fn packet_len(&self) -> usize {
        let unpadded = self.unpadded_len();
        unpadded + self.padding_len(unpadded)
    }

    /// Serialises the packet into `out` and returns the bytes written.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        self.validate()?;
        let needed = self.packet_len();
        if out.len() < needed {
            return Err(RtpError::BufferTooSmall {
                needed,
                capacity: out.len(),
            });
        }
        let mut builder = RtpPacketBuilder::new()
            .payload_type(self.header.payload_type)
            .marked(self.header.marker)
            .sequence(Seq::from(self.header.sequence))
            .timestamp(self.header.timestamp)
            .ssrc(self.header.ssrc)
            .set_csrc(self.csrcs)
            .payload(self.payload);
        if let Some(ext) = self.extension {
            builder = builder.extension(ext.profile, ext.data);
        }
        if let Some(multiple) = self.pad_to {
            // `multiple >= 2` was validated, which `Pad::round_to` requires.
            builder = builder.padded(Pad::round_to(multiple));
        }
        let written = builder.build_into(out).map_err(|e| match e {
            RtpPacketBuildError::BufferTooSmall => RtpError::BufferTooSmall {
                needed,
                capacity: out.len(),
            },
            RtpPacketBuildError::PayloadTypeInvalid => {
                RtpError::InvalidPayloadType(self.header.payload_type)
            }
            RtpPacketBuildError::ExtensionTooLarge => {
                RtpError::ExtensionTooLong(self.extension.map_or(0, |x| x.data.len()))
            }
            RtpPacketBuildError::ExtensionMissingPadding => {
                RtpError::ExtensionUnaligned(self.extension.map_or(0, |x| x.data.len()))
            }
        })?;
        // rtp-rs writes only the count byte; clear the rest so stale buffer bytes never leak.
        let pad = self.padding_len(self.unpadded_len());
        if pad > 1 {
            if let Some(fill) = out.get_mut(written - pad..written - 1) {
                fill.fill(0);
            }
        }
        Ok(written)
    }

    /// Padding bytes added after `unpadded` bytes of headers and payload.
    fn padding_len(&self, unpadded: usize) -> usize {
        match self.pad_to {
            Some(m) if m >= 2 => {
                let rem = unpadded % usize::from(m);
                if rem == 0 {
                    0
                } else {
                    usize::from(m) - rem
                }
            }
            _ => 0,
        }
    }

    /// Headers plus payload, before padding.
    fn unpadded_len(&self) -> usize {
        HEADER_LEN
            + 4 * self.csrcs.len()
            + self.extension.map_or(0, |e| 4 + e.data.len())
            + self.payload.len()
    }
}

/// Starting state of an outbound stream; the host draws the initial values at random (RFC 3550 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SenderConfig {
    /// Our synchronisation source identifier.
    pub ssrc: u32,
    /// Payload type of the audio packets.
    pub payload_type: u8,
    /// Sequence number of the first packet.
    pub initial_sequence: u16,
    /// Timestamp of the first frame.
    pub initial_timestamp: u32,
    /// Timestamp advance per frame ([`crate::PayloadFormat::ticks_per_frame`]).
    pub ticks_per_frame: u32,
}

/// Outbound RTP sequencing for one stream: continuous sequence numbers, a media clock that
/// keeps running through silence, and the marker bit on the first packet of each talk-spurt.
#[derive(Clone, Debug)]
pub struct RtpSender {
    ssrc: u32,
    payload_type: u8,
    ticks_per_frame: u32,
    next_sequence: u16,
    next_timestamp: u32,
    spurt_start: bool,
    packets_sent: u64,
    octets_sent: u64,
}

impl RtpSender {
    /// A sender whose first packet will carry the marker bit and the configured initial values.
    pub fn new(config: SenderConfig) -> Result<Self, RtpError> {
        if config.payload_type > 0x7F {
            return Err(RtpError::InvalidPayloadType(config.payload_type));
        }
        if config.ticks_per_frame == 0 {
            return Err(RtpError::ZeroTicksPerFrame);
        }
        Ok(RtpSender {
            ssrc: config.ssrc,
            payload_type: config.payload_type,
            ticks_per_frame: config.ticks_per_frame,
            next_sequence: config.initial_sequence,
            next_timestamp: config.initial_timestamp,
            spurt_start: true,
            packets_sent: 0,
            octets_sent: 0,
        })
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Timestamp of the next audio frame (also the start timestamp for an RFC 4733 event begun now).
    pub fn next_timestamp(&self) -> u32 {
        self.next_timestamp
    }

    /// Packets sent so far (for the RTCP sender report).
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets sent so far (for the RTCP sender report).
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// The header for the current frame's packet, then advances sequence and timestamp; use
    /// with [`RtpHeader::write`] when the payload was encoded in place after the header.
    pub fn next_frame_header(&mut self, payload_len: usize) -> RtpHeader {
        let header = self.peek_frame_header();
        self.commit(payload_len);
        self.next_timestamp = self.next_timestamp.wrapping_add(self.ticks_per_frame);
        self.spurt_start = false;
        header
    }

    /// Writes the current frame's packet (header + copy of `payload`) into `out`, returns its
    /// length and advances; on error nothing advances.
    pub fn write_frame(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        let written = RtpWriter::new(self.peek_frame_header(), payload).write(out)?;
        self.next_frame_header(payload.len());
        Ok(written)
    }

    /// Lets one frame of time pass without sending (silence suppression, DTX, an RFC 4733 event
    /// in progress): the timestamp advances and the next audio packet starts a talk-spurt.
    pub fn skip_frame(&mut self) {
        self.skip_ticks(self.ticks_per_frame);
    }

    /// Lets `ticks` of media time pass without sending; the next audio packet starts a talk-spurt.
    pub fn skip_ticks(&mut self, ticks: u32) {
        self.next_timestamp = self.next_timestamp.wrapping_add(ticks);
        self.spurt_start = true;
    }

    /// Marks the next audio packet as the start of a talk-spurt even though no frame was skipped.
    pub fn start_talk_spurt(&mut self) {
        self.spurt_start = true;
    }

    /// The header for an out-of-band packet sharing this stream's SSRC and sequence space but
    /// carrying its own payload type, marker and timestamp (RFC 4733 events); advances the
    /// sequence number only.
    pub fn next_event_header(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload_len: usize,
    ) -> Result<RtpHeader, RtpError> {
        if payload_type > 0x7F {
            return Err(RtpError::InvalidPayloadType(payload_type));
        }
        let header = RtpHeader {
            marker,
            payload_type,
            sequence: self.next_sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        self.commit(payload_len);
        Ok(header)
    }

    /// Writes an out-of-band packet (see [`next_event_header`](Self::next_event_header)) into
    /// `out` and returns its length; on error nothing advances.
    pub fn write_event(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RtpError> {
        let header = RtpHeader {
            marker,
            payload_type,
            sequence: self.next_sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        let written = RtpWriter::new(header, payload).write(out)?;
        self.commit(payload.len());
        Ok(written)
    }

    fn peek_frame_header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.spurt_start,
            payload_type: self.payload_type,
            sequence: self.next_sequence,
            timestamp: self.next_timestamp,
            ssrc: self.ssrc,
        }
    }

    fn commit(&mut self, payload_len: usize) {
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload_len as u64;
    }
}

/// How an inbound stream tracker is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceConfig {
    /// RTP clock rate of the stream, for arrival-time conversion and jitter.
    pub clock_rate: u32,
    /// Consecutive in-sequence packets a new SSRC must send, with none from the current one in
    /// between, before the tracker switches to it; 0 disables automatic switching.
    pub ssrc_probation: u32,
    /// Payload type whose packets count for loss but not jitter (telephone-event repeats one timestamp).
    pub untimed_payload_type: Option<u8>,
}

impl SourceConfig {
    /// Defaults for a stream at `clock_rate`: [`DEFAULT_SSRC_PROBATION`], no untimed payload type.
    pub const fn new(clock_rate: u32) -> Self {
        SourceConfig {
            clock_rate,
            ssrc_probation: DEFAULT_SSRC_PROBATION,
            untimed_payload_type: None,
        }
    }
}

/// Whether an accepted packet continues the numbering of the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Continuity {
    /// Same source, same numbering: extended values are comparable with earlier ones.
    Continuous,
    /// First packet of a (new) SSRC: extended numbering starts over; flush per-stream state.
    NewSource,
    /// Same SSRC, but the sender restarted its sequence numbers (RFC 3550 A.1 resync);
    /// extended numbering starts over.
    Restarted,
}

/// An accepted packet, placed on the source's extended (64-bit, wrap-free) timelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceivedPacket {
    /// The SSRC it came from (the locked one).
    pub ssrc: u32,
    /// Extended sequence number ([`SeqUnwrapper`]).
    pub ext_seq: u64,
    /// Extended timestamp ([`TimestampUnwrapper`]).
    pub ext_timestamp: u64,
    /// Where it falls relative to earlier packets.
    pub order: PacketOrder,
    /// Whether the numbering continues from the previous accepted packet.
    pub continuity: Continuity,
}

/// What the tracker made of one inbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum SourceOutcome {
    /// From the locked source (or the one just switched to): hand it on.
    Accepted(ReceivedPacket),
    /// From another SSRC: counted and ignored. `consecutive` counts its in-sequence run so far.
    ForeignSsrc {
        /// The unexpected SSRC.
        ssrc: u32,
        /// In-sequence packets from it with none from the locked source in between.
        consecutive: u32,
    },
    /// From the locked source, but its sequence number jumped too far to be loss or reordering;
    /// ignored unless the next packet follows it, which confirms a restart.
    SequenceJump {
        /// The sequence number that jumped.
        sequence: u16,
    },
}

#[derive(Clone, Copy, Debug)]
struct Lock {
    ssrc: u32,
    seq: SeqUnwrapper,
    ts: TimestampUnwrapper,
    /// A.1 `bad_seq`: the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    ssrc: u32,
    next_seq: u16,
    count: u32,
}

/// Inbound tracker for one RTP stream: locks to an SSRC, unwraps sequence numbers and
/// timestamps, handles sender restarts, and keeps the RFC 3550 receiver statistics.
///
/// It locks to the first SSRC seen. Packets from any other SSRC are counted and ignored
/// until either the host calls [`accept_ssrc`](Self::accept_ssrc) (e.g. after a re-INVITE),
/// or that SSRC sends [`SourceConfig::ssrc_probation`] in-sequence packets in a row with
/// nothing from the locked source in between — the RFC 3550 A.1 probation idea applied to
/// source changes. A stray stream interleaved with the live one therefore never takes over,
/// while a real switch (transfer, media server change) costs `ssrc_probation - 1` packets.
#[derive(Clone, Debug)]
pub struct RtpSource {
    config: SourceConfig,
    lock: Option<Lock>,
    pending_accept: Option<u32>,
    candidate: Option<Candidate>,
    stats: ReceiverStats,
    foreign_packets: u64,
    sequence_jumps: u64,
    ssrc_changes: u64,
}

impl RtpSource {
    /// A tracker that has not seen any packet yet.
    pub fn new(config: SourceConfig) -> Self {
        RtpSource {
            config,
            lock: None,
            pending_accept: None,
            candidate: None,
            stats: ReceiverStats::new(config.clock_rate),
            foreign_packets: 0,
            sequence_jumps: 0,
            ssrc_changes: 0,
        }
    }

    /// Tracks a packet that arrived at `arrival` (RTP timestamp units on a local timeline).
    pub fn receive(&mut self, header: &RtpHeader, arrival: u32) -> SourceOutcome {
        let ssrc = header.ssrc;
        let Some(lock) = self.lock.as_mut() else {
            return self.lock_to(header, arrival);
        };
        if lock.ssrc != ssrc {
            if self.pending_accept == Some(ssrc) {
                self.ssrc_changes += 1;
                return self.lock_to(header, arrival);
            }
            return self.foreign(header, arrival);
        }
        self.candidate = None;

        let seq = header.sequence;
        let peeked = lock.seq.peek(seq);
        let highest = lock.seq.highest().unwrap_or(peeked);
        let continuity = if peeked >= highest {
            let ahead = peeked - highest;
            if ahead < MAX_DROPOUT {
                Continuity::Continuous
            } else {
                match Self::jump(lock, seq) {
                    Some(c) => c,
                    None => return self.jumped(seq),
                }
            }
        } else if highest - peeked <= MAX_MISORDER {
            Continuity::Continuous
        } else {
            match Self::jump(lock, seq) {
                Some(c) => c,
                None => return self.jumped(seq),
            }
        };
        if continuity == Continuity::Restarted {
            self.stats.restart();
        }
        let ext_seq = lock.seq.unwrap(seq);
        let ext_timestamp = lock.ts.unwrap(header.timestamp);
        let order = self.record(header, ext_seq, arrival);
        SourceOutcome::Accepted(ReceivedPacket {
            ssrc,
            ext_seq,
            ext_timestamp,
            order,
            continuity,
        })
    }

    /// [`receive`](Self::receive) with the arrival given as time since a host-chosen epoch.
    pub fn receive_at(&mut self, header: &RtpHeader, arrival: Duration) -> SourceOutcome {
        let ticks = self.stats.ticks_at(arrival);
        self.receive(header, ticks)
    }

    /// Switches to `ssrc` on its next packet, whatever its sequence; for when signalling says
    /// the source changed. No effect if `ssrc` is already the locked source.
    pub fn accept_ssrc(&mut self, ssrc: u32) {
        if self.lock.map(|l| l.ssrc) != Some(ssrc) {
            self.pending_accept = Some(ssrc);
        }
    }

    /// The SSRC currently locked to.
    pub fn ssrc(&self) -> Option<u32> {
        self.lock.map(|l| l.ssrc)
    }

    /// Receiver statistics of the locked source (reset when the source changes).
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Mutable statistics, e.g. to feed [`ReceiverStats::on_sender_report`].
    pub fn stats_mut(&mut self) -> &mut ReceiverStats {
        &mut self.stats
    }

    /// The locked SSRC and its report block as of `now`; `None` before any packet.
    pub fn report_block(&mut self, now: Duration) -> Option<(u32, ReportBlock)> {
        let ssrc = self.ssrc()?;
        Some((ssrc, self.stats.report_block(now)))
    }

    /// Packets ignored because they came from another SSRC.
    pub fn foreign_packets(&self) -> u64 {
        self.foreign_packets
    }

    /// Packets ignored because their sequence number jumped (A.1 `bad_seq`).
    pub fn sequence_jumps(&self) -> u64 {
        self.sequence_jumps
    }

    /// Times the tracker switched to a different SSRC after the first lock.
    pub fn ssrc_changes(&self) -> u64 {
        self.ssrc_changes
    }

    /// A.1 large-jump rule: the second of two consecutive packets after a jump confirms a restart.
    fn jump(lock: &mut Lock, seq: u16) -> Option<Continuity> {
        if lock.bad_seq == Some(seq) {
            lock.bad_seq = None;
            lock.seq = SeqUnwrapper::new();
            lock.ts = TimestampUnwrapper::new();
            Some(Continuity::Restarted)
        } else {
            lock.bad_seq = Some(seq.wrapping_add(1));
            None
        }
    }

    fn jumped(&mut self, sequence: u16) -> SourceOutcome {
        self.sequence_jumps += 1;
        SourceOutcome::SequenceJump { sequence }
    }

    fn foreign(&mut self, header: &RtpHeader, arrival: u32) -> SourceOutcome {
        let ssrc = header.ssrc;
        let consecutive = match self.candidate {
            Some(c) if c.ssrc == ssrc && c.next_seq == header.sequence => c.count.saturating_add(1),
            _ => 1,
        };
        self.candidate = Some(Candidate {
            ssrc,
            next_seq: header.sequence.wrapping_add(1),
            count: consecutive,
        });
        let probation = self.config.ssrc_probation;
        if probation > 0 && consecutive >= probation {
            self.ssrc_changes += 1;
            return self.lock_to(header, arrival);
        }
        self.foreign_packets += 1;
        SourceOutcome::ForeignSsrc { ssrc, consecutive }
    }

    /// Starts tracking `header.ssrc` afresh with this packet.
    fn lock_to(&mut self, header: &RtpHeader, arrival: u32) -> SourceOutcome {
        let mut lock = Lock {
            ssrc: header.ssrc,
            seq: SeqUnwrapper::new(),
            ts: TimestampUnwrapper::new(),
            bad_seq: None,
        };
        let ext_seq = lock.seq.unwrap(header.sequence);
        let ext_timestamp = lock.ts.unwrap(header.timestamp);
        self.lock = Some(lock);
        self.pending_accept = None;
        self.candidate = None;
        self.stats = ReceiverStats::new(self.config.clock_rate);
        let order = self.record(header, ext_seq, arrival);
        SourceOutcome::Accepted(ReceivedPacket {
            ssrc: header.ssrc,
            ext_seq,
            ext_timestamp,
            order,
            continuity: Continuity::NewSource,
        })
    }

    fn record(&mut self, header: &RtpHeader, ext_seq: u64, arrival: u32) -> PacketOrder {
        if self.config.untimed_payload_type == Some(header.payload_type) {
            self.stats.record_untimed(ext_seq)
        } else {
            self.stats.record(ext_seq, header.timestamp, arrival)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(seq: u16, ts: u32, ssrc: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        }
    }

    fn accepted(outcome: SourceOutcome) -> ReceivedPacket {
        match outcome {
            SourceOutcome::Accepted(p) => p,
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_plain_packet() {
        let mut buf = vec![
            0x80,
            0x80 | 111,
            0x12,
            0x34,
            0,
            0,
            0x03,
            0xC0,
            0xDE,
            0xAD,
            0xBE,
            0xEF,
        ];
        buf.extend_from_slice(&[1, 2, 3]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 111);
        assert_eq!(p.sequence(), 0x1234);
        assert_eq!(p.timestamp(), 960);
        assert_eq!(p.ssrc(), 0xDEAD_BEEF);
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.padding(), 0);
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn round_trip_with_csrcs_extension_and_padding() {
        let h = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 65535,
            timestamp: u32::MAX,
            ssrc: 0x0102_0304,
        };
        let csrcs = [7u32, 0xFFFF_FFFF, 42];
        let ext = [9u8, 8, 7, 6, 5, 4, 3, 2];
        let payload = [0x55u8; 13];
        let w = RtpWriter::new(h, &payload)
            .csrcs(&csrcs)
            .extension(0xBEDE, &ext)
            .pad_to(4);
        // 12 + 12 + 4 + 8 + 13 = 49 -> padded to 52.
        assert_eq!(w.packet_len(), 52);
        let mut buf = [0xAAu8; 64];
        let n = w.write(&mut buf).unwrap();
        assert_eq!(n, 52);
        assert_eq!(&buf[49..52], &[0, 0, 3], "padding is zeroed, count last");

        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(p.header(), h);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs);
        assert_eq!(
            p.extension(),
            Some(HeaderExtension {
                profile: 0xBEDE,
                data: &ext
            })
        );
        assert_eq!(p.padding(), 3);
        assert_eq!(p.payload(), &payload);
    }

    #[test]
    fn empty_extension_and_empty_payload() {
        let h = header(1, 2, 3);
        let mut buf = [0u8; 32];
        let n = RtpWriter::new(h, &[])
            .extension(1, &[])
            .write(&mut buf)
            .unwrap();
        assert_eq!(n, 16);
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(
            p.extension(),
            Some(HeaderExtension {
                profile: 1,
                data: &[]
            })
        );
        assert!(p.payload().is_empty());
    }

    #[test]
    fn header_written_in_front_of_an_in_place_payload() {
        let mut buf = [0u8; 12 + 160];
        buf[12..].fill(0xFF);
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 9,
            timestamp: 160,
            ssrc: 77,
        };
        assert_eq!(h.write(&mut buf), Ok(12));
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.header(), h);
        assert_eq!(p.payload().len(), 160);
        assert_eq!(
            h.write(&mut [0u8; 11]),
            Err(RtpError::BufferTooSmall {
                needed: 12,
                capacity: 11
            })
        );
        let bad = RtpHeader {
            payload_type: 200,
            ..h
        };
        assert_eq!(bad.write(&mut buf), Err(RtpError::InvalidPayloadType(200)));
    }

    #[test]
    fn malformed_packets_give_typed_errors() {
        let base = [0x80u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::TooShort { len: 0 }));
        assert_eq!(
            RtpPacket::parse(&base[..11]),
            Err(RtpError::TooShort { len: 11 })
        );

        let mut v1 = base;
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));

        // CSRC count 3 needs 24 bytes; 16 present.
        let mut csrc = base.to_vec();
        csrc[0] = 0x83;
        csrc.extend_from_slice(&[0; 4]);
        assert_eq!(
            RtpPacket::parse(&csrc),
            Err(RtpError::CsrcTruncated {
                count: 3,
                needed: 24,
                len: 16
            })
        );
        // CSRC count beyond the packet while the X bit is also set still names the CSRCs.
        csrc[0] = 0x93;
        assert!(matches!(
            RtpPacket::parse(&csrc),
            Err(RtpError::CsrcTruncated { .. })
        ));

        // X bit with no room for the extension preamble.
        let mut ext = base.to_vec();
        ext[0] = 0x90;
        assert_eq!(
            RtpPacket::parse(&ext),
            Err(RtpError::ExtensionTruncated {
                needed: 16,
                len: 12
            })
        );
        // Extension declaring 10 words with only 4 bytes of body.
        ext.extend_from_slice(&[0xBE, 0xDE, 0, 10, 1, 2, 3, 4]);
        assert_eq!(
            RtpPacket::parse(&ext),
            Err(RtpError::ExtensionTruncated {
                needed: 56,
                len: 20
            })
        );

        // Padding count larger than what follows the header.
        let mut pad = base.to_vec();
        pad[0] = 0xA0;
        pad.extend_from_slice(&[1, 2, 200]);
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::PaddingInvalid {
                padding: 200,
                available: 3
            })
        );
        // Padding count of zero.
        *pad.last_mut().unwrap() = 0;
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::PaddingInvalid {
                padding: 0,
                available: 3
            })
        );
        // Padding flag with nothing after the header.
        let mut bare = base;
        bare[0] = 0xA0;
        assert_eq!(
            RtpPacket::parse(&bare),
            Err(RtpError::PaddingInvalid {
                padding: 0,
                available: 0
            })
        );
        // Padding covering the whole remainder is valid: empty payload.
        *pad.last_mut().unwrap() = 3;
        let p = RtpPacket::parse(&pad).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(p.padding(), 3);
    }

    #[test]
    fn writer_rejects_invalid_fields() {
        let mut buf = [0u8; 256];
        let h = header(0, 0, 0);
        let bad_pt = RtpHeader {
            payload_type: 128,
            ..h
        };
        assert_eq!(
            RtpWriter::new(bad_pt, &[]).write(&mut buf),
            Err(RtpError::InvalidPayloadType(128))
        );
        let many = [0u32; 16];
        assert_eq!(
            RtpWriter::new(h, &[]).csrcs(&many).write(&mut buf),
            Err(RtpError::TooManyCsrcs(16))
        );
        assert_eq!(
            RtpWriter::new(h, &[])
                .extension(0, &[1, 2, 3])
                .write(&mut buf),
            Err(RtpError::ExtensionUnaligned(3))
        );
        let big = vec![0u8; MAX_EXTENSION_LEN + 4];
        assert_eq!(
            RtpWriter::new(h, &[]).extension(0, &big).write(&mut buf),
            Err(RtpError::ExtensionTooLong(MAX_EXTENSION_LEN + 4))
        );
        assert_eq!(
            RtpWriter::new(h, &[]).pad_to(1).write(&mut buf),
            Err(RtpError::InvalidPadAlignment(1))
        );
        assert_eq!(
            RtpWriter::new(h, &[0; 100]).write(&mut buf[..50]),
            Err(RtpError::BufferTooSmall {
                needed: 112,
                capacity: 50
            })
        );
    }

    #[test]
    fn rtcp_demux() {
        assert!(looks_like_rtcp(&[0x80, 200, 0, 6]));
        assert!(looks_like_rtcp(&[0x80, 201]));
        assert!(!looks_like_rtcp(&[0x80, 0x80 | 111]));
        assert!(!looks_like_rtcp(&[0x80, 0]));
        assert!(!looks_like_rtcp(&[0x80]));
    }

    #[test]
    fn sender_sequences_frames_and_talk_spurts() {
        let mut tx = RtpSender::new(SenderConfig {
            ssrc: 0xABCD,
            payload_type: 0,
            initial_sequence: 65534,
            initial_timestamp: u32::MAX - 159,
            ticks_per_frame: 160,
        })
        .unwrap();
        let mut buf = [0u8; 200];
        let payload = [0xFFu8; 160];

        let n = tx.write_frame(&payload, &mut buf).unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert!(p.marker(), "first packet starts a talk-spurt");
        assert_eq!((p.sequence(), p.timestamp()), (65534, u32::MAX - 159));

        let h = tx.next_frame_header(160);
        assert!(!h.marker);
        assert_eq!((h.sequence, h.timestamp), (65535, 0));

        // Two frames of silence: no packets, the clock keeps running.
        tx.skip_frame();
        tx.skip_frame();
        let h = tx.next_frame_header(160);
        assert!(h.marker, "first packet after silence starts a talk-spurt");
        assert_eq!((h.sequence, h.timestamp), (0, 3 * 160));
        assert!(!tx.next_frame_header(160).marker);

        tx.start_talk_spurt();
        assert!(tx.next_frame_header(160).marker);

        // A failed write advances nothing.
        let before = (tx.next_sequence(), tx.next_timestamp(), tx.packets_sent());
        assert!(tx.write_frame(&payload, &mut buf[..100]).is_err());
        assert_eq!(
            before,
            (tx.next_sequence(), tx.next_timestamp(), tx.packets_sent())
        );
        assert_eq!(tx.packets_sent(), 5);
        assert_eq!(tx.octets_sent(), 5 * 160);
    }

    #[test]
    fn sender_event_packets_share_the_sequence_space() {
        let mut tx = RtpSender::new(SenderConfig {
            ssrc: 1,
            payload_type: 0,
            initial_sequence: 10,
            initial_timestamp: 1000,
            ticks_per_frame: 160,
        })
        .unwrap();
        let start = tx.next_timestamp();
        let mut buf = [0u8; 64];
        let n = tx
            .write_event(101, true, start, &[1, 10, 0, 160], &mut buf)
            .unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(
            (p.payload_type(), p.sequence(), p.timestamp(), p.marker()),
            (101, 10, 1000, true)
        );
        tx.skip_frame();
        let h = tx.next_event_header(101, false, start, 4).unwrap();
        assert_eq!((h.sequence, h.timestamp), (11, 1000));
        tx.skip_frame();
        let audio = tx.next_frame_header(160);
        assert_eq!(
            (audio.sequence, audio.timestamp, audio.marker),
            (12, 1320, true)
        );
        assert_eq!(
            tx.next_event_header(128, false, 0, 4),
            Err(RtpError::InvalidPayloadType(128))
        );
    }

    #[test]
    fn sender_config_is_validated() {
        let cfg = SenderConfig {
            ssrc: 1,
            payload_type: 0,
            initial_sequence: 0,
            initial_timestamp: 0,
            ticks_per_frame: 0,
        };
        assert_eq!(
            RtpSender::new(cfg).unwrap_err(),
            RtpError::ZeroTicksPerFrame
        );
        let cfg = SenderConfig {
            payload_type: 130,
            ticks_per_frame: 160,
            ..cfg
        };
        assert_eq!(
            RtpSender::new(cfg).unwrap_err(),
            RtpError::InvalidPayloadType(130)
        );
    }

    #[test]
    fn tracker_unwraps_sequence_and_timestamp_wrap() {
        let mut rx = RtpSource::new(SourceConfig::new(8000));
        let mut seq = 65530u16;
        let mut ts = u32::MAX - 3 * 160;
        let first = accepted(rx.receive(&header(seq, ts, 5), 0));
        assert_eq!(first.continuity, Continuity::NewSource);
        for i in 1..20u64 {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            let p = accepted(rx.receive(&header(seq, ts, 5), (i * 160) as u32));
            assert_eq!(p.ext_seq, first.ext_seq + i);
            assert_eq!(p.ext_timestamp, first.ext_timestamp + i * 160);
            assert_eq!(p.order, PacketOrder::InOrder);
            assert_eq!(p.continuity, Continuity::Continuous);
        }
        let (ssrc, rb) = rx.report_block(Duration::ZERO).unwrap();
        assert_eq!(ssrc, 5);
        assert_eq!(rb.extended_highest_seq, (1 << 16) | u32::from(seq));
        assert_eq!(rb.cumulative_lost, 0);
        assert_eq!(rb.jitter, 0);
    }

    #[test]
    fn tracker_reorder_loss_and_duplicates() {
        let mut rx = RtpSource::new(SourceConfig::new(8000));
        let _ = rx.receive(&header(100, 0, 1), 0);
        let p = accepted(rx.receive(&header(103, 480, 1), 480));
        assert_eq!(p.order, PacketOrder::Gap { missing: 2 });
        let p = accepted(rx.receive(&header(101, 160, 1), 500));
        assert_eq!(p.order, PacketOrder::Late);
        let p = accepted(rx.receive(&header(101, 160, 1), 510));
        assert_eq!(p.order, PacketOrder::Duplicate);
        assert_eq!(rx.stats().cumulative_lost(), 0); // 102 lost, 101 duplicated
        assert_eq!(rx.stats().duplicates(), 1);
    }

    #[test]
    fn tracker_ignores_and_counts_foreign_ssrc() {
        let mut rx = RtpSource::new(SourceConfig::new(8000));
        let _ = rx.receive(&header(1, 0, 0xAAAA), 0);
        // A stray stream interleaved with the live one never takes over.
        for i in 0..10u16 {
            assert_eq!(
                rx.receive(&header(500 + i, 0, 0xBBBB), 0),
                SourceOutcome::ForeignSsrc {
                    ssrc: 0xBBBB,
                    consecutive: 1
                }
            );
            let p = accepted(rx.receive(&header(2 + i, 160, 0xAAAA), 0));
            assert_eq!(p.continuity, Continuity::Continuous);
        }
        assert_eq!(rx.foreign_packets(), 10);
        assert_eq!(rx.ssrc(), Some(0xAAAA));
        assert_eq!(rx.ssrc_changes(), 0);
    }

    #[test]
    fn tracker_switches_after_probation() {
        let mut cfg = SourceConfig::new(8000);
        cfg.ssrc_probation = 3;
        let mut rx = RtpSource::new(cfg);
        let _ = rx.receive(&header(1, 0, 0xAAAA), 0);
        // The old source stops; the new one must send 3 in-sequence packets.
        assert!(matches!(
            rx.receive(&header(40_000, 0, 0xCCCC), 0),
            SourceOutcome::ForeignSsrc { consecutive: 1, .. }
        ));
        // Out of sequence: probation restarts.
        assert!(matches!(
            rx.receive(&header(40_005, 0, 0xCCCC), 0),
            SourceOutcome::ForeignSsrc { consecutive: 1, .. }
        ));
        assert!(matches!(
            rx.receive(&header(40_006, 0, 0xCCCC), 0),
            SourceOutcome::ForeignSsrc { consecutive: 2, .. }
        ));
        let p = accepted(rx.receive(&header(40_007, 0, 0xCCCC), 0));
        assert_eq!(p.continuity, Continuity::NewSource);
        assert_eq!(p.ssrc, 0xCCCC);
        assert_eq!(rx.ssrc(), Some(0xCCCC));
        assert_eq!(rx.ssrc_changes(), 1);
        assert_eq!(
            rx.stats().received(),
            1,
            "statistics restart with the new source"
        );
        // The old source is now the foreign one.
        assert!(matches!(
            rx.receive(&header(2, 0, 0xAAAA), 0),
            SourceOutcome::ForeignSsrc { ssrc: 0xAAAA, .. }
        ));
    }

    #[test]
    fn tracker_explicit_accept_and_disabled_probation() {
        let mut cfg = SourceConfig::new(8000);
        cfg.ssrc_probation = 0;
        let mut rx = RtpSource::new(cfg);
        let _ = rx.receive(&header(1, 0, 1), 0);
        for i in 0..50u16 {
            assert!(matches!(
                rx.receive(&header(i, 0, 2), 0),
                SourceOutcome::ForeignSsrc { .. }
            ));
        }
        rx.accept_ssrc(2);
        let p = accepted(rx.receive(&header(900, 0, 2), 0));
        assert_eq!((p.ssrc, p.continuity), (2, Continuity::NewSource));
        rx.accept_ssrc(2); // already locked: no effect
        assert_eq!(
            accepted(rx.receive(&header(901, 0, 2), 0)).continuity,
            Continuity::Continuous
        );
    }

    #[test]
    fn tracker_resyncs_after_a_confirmed_restart() {
        let mut rx = RtpSource::new(SourceConfig::new(8000));
        for s in 1000..1010u16 {
            let _ = rx.receive(&header(s, u32::from(s) * 160, 9), 0);
        }
        // Sender restarts its numbering at 20 000: the first packet is held back ...
        assert_eq!(
            rx.receive(&header(20_000, 5, 9), 0),
            SourceOutcome::SequenceJump { sequence: 20_000 }
        );
        // ... a stray old one in between is still accepted as reordered ...
        assert_eq!(
            accepted(rx.receive(&header(1008, 1008 * 160, 9), 0)).order,
            PacketOrder::Duplicate
        );
        // ... and the next in sequence confirms the restart.
        let p = accepted(rx.receive(&header(20_001, 165, 9), 0));
        assert_eq!(p.continuity, Continuity::Restarted);
        assert_eq!(rx.stats().received(), 1);
        let q = accepted(rx.receive(&header(20_002, 325, 9), 0));
        assert_eq!(q.ext_seq, p.ext_seq + 1);
        assert_eq!(q.continuity, Continuity::Continuous);
        assert_eq!(rx.sequence_jumps(), 1);

        // A single wild packet is dropped and does not disturb the stream.
        assert!(matches!(
            rx.receive(&header(50_000, 0, 9), 0),
            SourceOutcome::SequenceJump { .. }
        ));
        let r = accepted(rx.receive(&header(20_003, 485, 9), 0));
        assert_eq!(r.ext_seq, q.ext_seq + 1);
        // Very late packets (beyond MAX_MISORDER) are treated as jumps too.
        assert!(matches!(
            rx.receive(&header(20_003 - 200, 0, 9), 0),
            SourceOutcome::SequenceJump { .. }
        ));
    }

    #[test]
    fn tracker_untimed_payload_type_skips_jitter() {
        let mut cfg = SourceConfig::new(8000);
        cfg.untimed_payload_type = Some(101);
        let mut rx = RtpSource::new(cfg);
        let _ = rx.receive(&header(1, 0, 1), 0);
        let mut ev = header(2, 0, 1);
        ev.payload_type = 101;
        for i in 0..5u16 {
            ev.sequence = 2 + i;
            let _ = rx.receive(&ev, 400 * u32::from(i + 1));
        }
        assert_eq!(rx.stats().jitter_ticks(), 0);
        assert_eq!(rx.stats().received(), 6);
    }

    #[test]
    fn tracker_accepts_duration_arrivals() {
        let mut rx = RtpSource::new(SourceConfig::new(48_000));
        let _ = rx.receive_at(&header(1, 0, 1), Duration::from_millis(0));
        let _ = rx.receive_at(&header(2, 960, 1), Duration::from_millis(30));
        assert_eq!(rx.stats().jitter_ticks(), 30);
    }

    proptest! {
        #[test]
        fn layout_check_agrees_with_rtp_rs(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            prop_assert_eq!(check_layout(&bytes).is_ok(), RtpReader::new(&bytes).is_ok());
        }

        #[test]
        fn layout_check_agrees_on_version_2(
            first in 0x80u8..0xC0,
            rest in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let mut bytes = vec![first];
            bytes.extend_from_slice(&rest);
            prop_assert_eq!(check_layout(&bytes).is_ok(), RtpReader::new(&bytes).is_ok());
        }
    }
}
