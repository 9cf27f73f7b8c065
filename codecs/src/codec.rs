//! One decoder and one encoder type over every audio payload format (Opus, PCMU, PCMA, L16).
//!
//! The jitter buffer drives a [`FrameDecoder`] with "here is a payload",
//! "this much is lost" or "this much is lost, and here is the next payload"
//! (for Opus FEC); the RTP sender drives a [`FrameEncoder`] with 20 ms frames
//! and takes payloads into its own buffer. Both speak 20 ms [`AudioFrame`]s at
//! the format's PCM rate and allocate only at construction.

use crate::fifo::SampleFifo;
use crate::g711::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};
use crate::l16::{decode_l16, encode_l16, l16_sample_count, L16_BYTES_PER_SAMPLE};
use crate::opus::{opus_packet_ticks, OpusConfig, OpusDecoder, OpusEncoder, MAX_OPUS_PACKET_MS};
use crate::{AudioFrame, CodecError, FrameOrigin, PayloadFormat, SampleRate};

/// Longest payload the PCM decoders accept, in milliseconds: twice the Opus limit, since
/// G.711 senders use long packets (ffmpeg's default PCMU packet is 128 ms).
const MAX_PCM_PACKET_MS: usize = 2 * MAX_OPUS_PACKET_MS as usize;

/// Decoder queue: one maximal packet plus room for leftovers not yet pulled.
const PCM_DECODER_QUEUE_MS: usize = MAX_PCM_PACKET_MS + 40;

/// Encoder queue: one 60 ms packet plus the frame that completes the next one.
const PCM_ENCODER_QUEUE_MS: usize = 80;

/// Concealment of PCM formats fades the repeated audio to silence over this many frames.
const PCM_CONCEAL_FADE_FRAMES: usize = 3;

/// Audio per packet an encoder produces (the SDP `ptime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PacketDuration {
    /// 10 ms: two packets per 20 ms frame.
    Ms10,
    /// 20 ms: one packet per frame, the usual telephony `ptime`.
    #[default]
    Ms20,
    /// 40 ms: one packet per two frames.
    Ms40,
    /// 60 ms: one packet per three frames.
    Ms60,
}

impl PacketDuration {
    /// The duration for a `ptime` in milliseconds, if it is 10, 20, 40 or 60.
    pub fn from_ms(ms: u32) -> Result<Self, CodecError> {
        match ms {
            10 => Ok(PacketDuration::Ms10),
            20 => Ok(PacketDuration::Ms20),
            40 => Ok(PacketDuration::Ms40),
            60 => Ok(PacketDuration::Ms60),
            other => Err(CodecError::InvalidConfig {
                what: "packet duration (ms)",
                value: other as i64,
                expected: "10, 20, 40 or 60",
            }),
        }
    }

    /// The duration in milliseconds.
    pub const fn ms(self) -> u32 {
        match self {
            PacketDuration::Ms10 => 10,
            PacketDuration::Ms20 => 20,
            PacketDuration::Ms40 => 40,
            PacketDuration::Ms60 => 60,
        }
    }

    /// Samples of one packet at `rate`.
    pub const fn samples(self, rate: SampleRate) -> usize {
        self.ms() as usize * rate.samples_per_ms()
    }
}

/// Where an encoder put a packet: the first `len` bytes of the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedPacket {
    /// Payload length in bytes.
    pub len: usize,
    /// RTP clock ticks the packet spans (the timestamp step to the next packet).
    pub ticks: u32,
    /// Opus DTX: the packet (2 bytes or less) marks silence and need not be sent.
    pub dtx: bool,
}

/// The sample encoding of the PCM payload formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PcmEncoding {
    /// G.711 µ-law, one byte per sample, 8 kHz.
    Ulaw,
    /// G.711 A-law, one byte per sample, 8 kHz.
    Alaw,
    /// Linear 16-bit big-endian, two bytes per sample.
    L16,
}

impl PcmEncoding {
    /// The encoding and rate of an audio payload format that is not Opus.
    fn of(format: PayloadFormat) -> Result<(PcmEncoding, SampleRate), CodecError> {
        match format {
            PayloadFormat::Pcmu => Ok((PcmEncoding::Ulaw, SampleRate::Hz8000)),
            PayloadFormat::Pcma => Ok((PcmEncoding::Alaw, SampleRate::Hz8000)),
            PayloadFormat::L16 { rate } => Ok((PcmEncoding::L16, rate)),
            PayloadFormat::Opus { .. } => Err(CodecError::NotAudio("Opus (use the Opus codec)")),
            PayloadFormat::TelephoneEvent { .. } => Err(CodecError::NotAudio("telephone-event")),
        }
    }

    /// Bytes per sample on the wire.
    pub const fn bytes_per_sample(self) -> usize {
        match self {
            PcmEncoding::Ulaw | PcmEncoding::Alaw => 1,
            PcmEncoding::L16 => L16_BYTES_PER_SAMPLE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PcmEncoding::Ulaw => "PCMU",
            PcmEncoding::Alaw => "PCMA",
            PcmEncoding::L16 => "L16",
        }
    }

    fn format(self, rate: SampleRate) -> PayloadFormat {
        match self {
            PcmEncoding::Ulaw => PayloadFormat::Pcmu,
            PcmEncoding::Alaw => PayloadFormat::Pcma,
            PcmEncoding::L16 => PayloadFormat::L16 { rate },
        }
    }

    /// Samples in `payload`, checked against the format's framing.
    fn sample_count(self, payload: &[u8]) -> Result<usize, CodecError> {
        match self {
            PcmEncoding::Ulaw | PcmEncoding::Alaw => Ok(payload.len()),
            PcmEncoding::L16 => l16_sample_count(payload),
        }
    }
}

/// Decoder for G.711 and L16 payloads of any length, with a simple concealment.
///
/// Concealment repeats the last 20 ms received, fading linearly to silence
/// over 60 ms, then stays silent. That masks the short losses a jitter buffer
/// sees without the cost of a pitch-synchronous PLC; the repeat is audible on
/// longer gaps but never louder than the speech it replaces.
pub struct PcmDecoder {
    encoding: PcmEncoding,
    rate: SampleRate,
    queue: SampleFifo,
    /// The last 20 ms decoded from real payloads, oldest first.
    history: Box<[i16]>,
    /// Samples concealed since the last received payload.
    concealed_run: usize,
}

impl std::fmt::Debug for PcmDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmDecoder")
            .field("encoding", &self.encoding)
            .field("rate", &self.rate)
            .field("buffered_samples", &self.queue.len())
            .finish()
    }
}

impl PcmDecoder {
    /// A decoder for `encoding` at `rate` (8 kHz for G.711).
    pub fn new(encoding: PcmEncoding, rate: SampleRate) -> Self {
        PcmDecoder {
            encoding,
            rate,
            queue: SampleFifo::new(rate, PCM_DECODER_QUEUE_MS),
            history: vec![0; rate.frame_samples()].into_boxed_slice(),
            concealed_run: 0,
        }
    }

    /// The rate of the frames produced.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The sample encoding decoded.
    pub fn encoding(&self) -> PcmEncoding {
        self.encoding
    }

    fn max_packet_samples(&self) -> usize {
        MAX_PCM_PACKET_MS * self.rate.samples_per_ms()
    }

    /// Decodes one payload into the queue; returns the whole frames now ready.
    pub fn decode(&mut self, payload: &[u8]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            return Err(CodecError::EmptyPayload {
                format: self.encoding.name(),
            });
        }
        let n = self.encoding.sample_count(payload)?;
        if n > self.max_packet_samples() {
            return Err(CodecError::PayloadLength {
                format: self.encoding.name(),
                len: payload.len(),
                reason: "longer than 240 ms",
            });
        }
        let out = self.queue.reserve(n)?;
        match self.encoding {
            PcmEncoding::Ulaw => {
                decode_ulaw(payload, out);
            }
            PcmEncoding::Alaw => {
                decode_alaw(payload, out);
            }
            PcmEncoding::L16 => {
                decode_l16(payload, out)?;
            }
        }
        remember(&mut self.history, out);
        self.queue.commit(n, FrameOrigin::Received);
        self.concealed_run = 0;
        Ok(self.queue.frames_ready())
    }

    /// Fills `ticks` samples (the RTP clock is the sample rate) lost in transit
    /// with the fading repeat described on the type; frames are marked `Concealed`.
    pub fn conceal(&mut self, ticks: u32) -> Result<usize, CodecError> {
        let n = ticks as usize;
        if n > self.max_packet_samples() {
            return Err(CodecError::InvalidDuration {
                ticks,
                reason: "at most 120 ms per call; pull frames and conceal the rest in another call",
            });
        }
        let frame = self.rate.frame_samples();
        let fade = frame * PCM_CONCEAL_FADE_FRAMES;
        let history = &self.history[..];
        let out = self.queue.reserve(n)?;
        for (i, o) in out.iter_mut().enumerate() {
            let pos = self.concealed_run + i;
            *o = if pos >= fade {
                0
            } else {
                let gain = (fade - pos) as i32;
                (history[pos % frame] as i32 * gain / fade as i32) as i16
            };
        }
        self.queue.commit(n, FrameOrigin::Concealed);
        self.concealed_run = self.concealed_run.saturating_add(n);
        Ok(self.queue.frames_ready())
    }

    /// The oldest whole 20 ms frame, if one is ready.
    pub fn next_frame(&mut self) -> Option<AudioFrame> {
        self.queue.pop_frame()
    }

    /// Like [`PcmDecoder::next_frame`], but writes into `out` (no 2 KB frame built and moved);
    /// false when no whole frame is ready.
    pub fn next_frame_into(&mut self, out: &mut AudioFrame) -> bool {
        self.queue.pop_frame_into(out)
    }

    /// Whole 20 ms frames ready to pull.
    pub fn frames_ready(&self) -> usize {
        self.queue.frames_ready()
    }

    /// Samples queued, including a trailing partial frame.
    pub fn buffered_samples(&self) -> usize {
        self.queue.len()
    }

    /// Drops queued audio and the concealment history.
    pub fn reset(&mut self) {
        self.queue.clear();
        self.history.fill(0);
        self.concealed_run = 0;
    }
}

/// Keeps the last `history.len()` samples of everything passed in `new`.
fn remember(h: &mut [i16], new: &[i16]) {
    let frame = h.len();
    if new.len() >= frame {
        h.copy_from_slice(&new[new.len() - frame..]);
    } else {
        h.copy_within(new.len().., 0);
        h[frame - new.len()..].copy_from_slice(new);
    }
}

/// Encoder for G.711 and L16 payloads of a fixed packet duration.
pub struct PcmEncoder {
    encoding: PcmEncoding,
    rate: SampleRate,
    packet: PacketDuration,
    queue: SampleFifo,
}

impl std::fmt::Debug for PcmEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmEncoder")
            .field("encoding", &self.encoding)
            .field("rate", &self.rate)
            .field("packet", &self.packet)
            .finish()
    }
}

impl PcmEncoder {
    /// An encoder for `encoding` at `rate` producing `packet`-long payloads.
    pub fn new(encoding: PcmEncoding, rate: SampleRate, packet: PacketDuration) -> Self {
        PcmEncoder {
            encoding,
            rate,
            packet,
            queue: SampleFifo::new(rate, PCM_ENCODER_QUEUE_MS),
        }
    }

    /// The rate of the frames taken.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Payload bytes of one packet.
    pub fn packet_bytes(&self) -> usize {
        self.packet.samples(self.rate) * self.encoding.bytes_per_sample()
    }

    /// RTP ticks per packet (the RTP clock is the sample rate).
    pub fn packet_ticks(&self) -> u32 {
        self.packet.samples(self.rate) as u32
    }

    /// Queues one 20 ms frame; it must be at the encoder's rate.
    pub fn push_frame(&mut self, frame: &AudioFrame) -> Result<(), CodecError> {
        if frame.rate() != self.rate {
            return Err(CodecError::RateMismatch {
                expected: self.rate.hz(),
                got: frame.rate().hz(),
            });
        }
        self.queue.push(frame.samples(), frame.origin())
    }

    /// Encodes the next packet into `out` once enough audio is queued.
    pub fn next_packet(&mut self, out: &mut [u8]) -> Result<Option<EncodedPacket>, CodecError> {
        let needed = self.packet_bytes();
        if out.len() < needed {
            return Err(CodecError::OutputBufferTooSmall {
                needed,
                got: out.len(),
            });
        }
        let n = self.packet.samples(self.rate);
        let Some(input) = self.queue.front(n) else {
            return Ok(None);
        };
        let len = match self.encoding {
            PcmEncoding::Ulaw => encode_ulaw(input, out),
            PcmEncoding::Alaw => encode_alaw(input, out),
            PcmEncoding::L16 => encode_l16(input, out),
        };
        self.queue.consume(n);
        Ok(Some(EncodedPacket {
            len,
            ticks: n as u32,
            dtx: false,
        }))
    }

    /// Drops queued audio.
    pub fn reset(&mut self) {
        self.queue.clear();
    }
}

/// A decoder for any audio payload format, producing 20 ms frames at its PCM rate.
///
/// Typical use per jitter-buffer output: [`FrameDecoder::decode`] a payload,
/// [`FrameDecoder::conceal`] a loss, or [`FrameDecoder::recover_fec`] a loss
/// followed by the payload after it; then pull frames with
/// [`FrameDecoder::next_frame`] until it returns `None`.
#[derive(Debug)]
pub enum FrameDecoder {
    /// Opus, decoded by libopus at the format's `pcm_rate`.
    Opus(OpusDecoder),
    /// PCMU, PCMA or L16.
    Pcm(PcmDecoder),
}

impl FrameDecoder {
    /// A decoder for `format`; telephone-event is refused (it carries no audio).
    pub fn new(format: PayloadFormat) -> Result<Self, CodecError> {
        match format {
            PayloadFormat::Opus { pcm_rate } => Ok(FrameDecoder::Opus(OpusDecoder::new(pcm_rate)?)),
            other => {
                let (encoding, rate) = PcmEncoding::of(other)?;
                Ok(FrameDecoder::Pcm(PcmDecoder::new(encoding, rate)))
            }
        }
    }

    /// The payload format decoded.
    pub fn format(&self) -> PayloadFormat {
        match self {
            FrameDecoder::Opus(d) => PayloadFormat::Opus { pcm_rate: d.rate() },
            FrameDecoder::Pcm(d) => d.encoding.format(d.rate),
        }
    }

    /// The rate of the frames produced.
    pub fn rate(&self) -> SampleRate {
        match self {
            FrameDecoder::Opus(d) => d.rate(),
            FrameDecoder::Pcm(d) => d.rate(),
        }
    }

    /// RTP clock ticks `payload` spans: how far the timestamp advances past it.
    pub fn packet_ticks(&self, payload: &[u8]) -> Result<u32, CodecError> {
        match self {
            FrameDecoder::Opus(_) => opus_packet_ticks(payload),
            FrameDecoder::Pcm(d) => Ok(d.encoding.sample_count(payload)? as u32),
        }
    }

    /// Decodes one payload; returns the whole frames ready. On error nothing is
    /// queued and the caller should conceal the packet's duration instead.
    pub fn decode(&mut self, payload: &[u8]) -> Result<usize, CodecError> {
        match self {
            FrameDecoder::Opus(d) => d.decode(payload),
            FrameDecoder::Pcm(d) => d.decode(payload),
        }
    }

    /// Conceals `ticks` of RTP clock lost in transit; frames are marked `Concealed`.
    ///
    /// Opus uses libopus PLC (ticks must be a multiple of 120, i.e. 2.5 ms);
    /// the PCM formats use the fading repeat described on [`PcmDecoder`].
    /// At most 120 ms per call.
    pub fn conceal(&mut self, ticks: u32) -> Result<usize, CodecError> {
        match self {
            FrameDecoder::Opus(d) => d.conceal(ticks),
            FrameDecoder::Pcm(d) => d.conceal(ticks),
        }
    }

    /// Fills a gap of `ticks` that ends right before `next_payload`; returns
    /// true if in-band FEC data rebuilt part of it.
    ///
    /// Only Opus carries FEC; for the other formats this is [`FrameDecoder::conceal`].
    /// Either way the gap is filled, and `next_payload` must still be decoded.
    pub fn recover_fec(&mut self, next_payload: &[u8], ticks: u32) -> Result<bool, CodecError> {
        match self {
            FrameDecoder::Opus(d) => d.recover_fec(next_payload, ticks),
            FrameDecoder::Pcm(d) => d.conceal(ticks).map(|_| false),
        }
    }

    /// The oldest whole 20 ms frame, if one is ready.
    pub fn next_frame(&mut self) -> Option<AudioFrame> {
        match self {
            FrameDecoder::Opus(d) => d.next_frame(),
            FrameDecoder::Pcm(d) => d.next_frame(),
        }
    }

    /// Pulls the next 20 ms frame into `out`, reusing its storage; false when none is ready
    /// (`out` is then left as it was).
    pub fn next_frame_into(&mut self, out: &mut AudioFrame) -> bool {
        match self {
            FrameDecoder::Opus(d) => d.next_frame_into(out),
            FrameDecoder::Pcm(d) => d.next_frame_into(out),
        }
    }

    /// Whole 20 ms frames ready to pull.
    pub fn frames_ready(&self) -> usize {
        match self {
            FrameDecoder::Opus(d) => d.frames_ready(),
            FrameDecoder::Pcm(d) => d.frames_ready(),
        }
    }

    /// Drops queued audio and decoder state (for a new stream or SSRC).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        match self {
            FrameDecoder::Opus(d) => d.reset(),
            FrameDecoder::Pcm(d) => {
                d.reset();
                Ok(())
            }
        }
    }
}

/// An encoder for any audio payload format, taking 20 ms frames at its PCM rate.
///
/// Push each frame with [`FrameEncoder::push_frame`], then call
/// [`FrameEncoder::next_packet`] until it returns `None`.
#[derive(Debug)]
pub enum FrameEncoder {
    /// Opus at the format's `pcm_rate`.
    Opus(OpusEncoder),
    /// PCMU, PCMA or L16.
    Pcm(PcmEncoder),
}

impl From<OpusEncoder> for FrameEncoder {
    fn from(encoder: OpusEncoder) -> Self {
        FrameEncoder::Opus(encoder)
    }
}

impl FrameEncoder {
    /// An encoder for `format` with `packet`-long payloads; Opus gets
    /// [`OpusConfig::default`] otherwise (build an [`OpusEncoder`] for more control).
    pub fn new(format: PayloadFormat, packet: PacketDuration) -> Result<Self, CodecError> {
        match format {
            PayloadFormat::Opus { pcm_rate } => {
                let config = OpusConfig {
                    packet_duration: packet,
                    ..OpusConfig::default()
                };
                Ok(FrameEncoder::Opus(OpusEncoder::new(pcm_rate, config)?))
            }
            other => {
                let (encoding, rate) = PcmEncoding::of(other)?;
                Ok(FrameEncoder::Pcm(PcmEncoder::new(encoding, rate, packet)))
            }
        }
    }

    /// The payload format produced.
    pub fn format(&self) -> PayloadFormat {
        match self {
            FrameEncoder::Opus(e) => PayloadFormat::Opus { pcm_rate: e.rate() },
            FrameEncoder::Pcm(e) => e.encoding.format(e.rate),
        }
    }

    /// The rate of the frames taken.
    pub fn rate(&self) -> SampleRate {
        match self {
            FrameEncoder::Opus(e) => e.rate(),
            FrameEncoder::Pcm(e) => e.rate(),
        }
    }

    /// RTP clock ticks per packet.
    pub fn packet_ticks(&self) -> u32 {
        match self {
            FrameEncoder::Opus(e) => e.packet_ticks(),
            FrameEncoder::Pcm(e) => e.packet_ticks(),
        }
    }

    /// Queues one 20 ms frame at the encoder's rate.
    pub fn push_frame(&mut self, frame: &AudioFrame) -> Result<(), CodecError> {
        match self {
            FrameEncoder::Opus(e) => e.push_frame(frame),
            FrameEncoder::Pcm(e) => e.push_frame(frame),
        }
    }

    /// Encodes the next packet into `out` once enough audio is queued.
    ///
    /// Opus needs `out` of at least 1275 bytes; PCM formats need one packet's bytes.
    pub fn next_packet(&mut self, out: &mut [u8]) -> Result<Option<EncodedPacket>, CodecError> {
        match self {
            FrameEncoder::Opus(e) => e.next_packet(out),
            FrameEncoder::Pcm(e) => e.next_packet(out),
        }
    }

    /// Drops queued audio and encoder state.
    pub fn reset(&mut self) -> Result<(), CodecError> {
        match self {
            FrameEncoder::Opus(e) => e.reset(),
            FrameEncoder::Pcm(e) => {
                e.reset();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::{linear_to_ulaw, ulaw_to_linear};
    use crate::test_signal::{best_lag, frames, synthetic_speech};

    fn ramp_frame(rate: SampleRate, start: i16) -> AudioFrame {
        let mut f = AudioFrame::silent(rate);
        for (i, s) in f.samples_mut().iter_mut().enumerate() {
            *s = start.wrapping_add((i as i16).wrapping_mul(37));
        }
        f.set_origin(FrameOrigin::Received);
        f
    }

    #[test]
    fn pcmu_round_trip_through_the_enums() {
        let mut enc = FrameEncoder::new(PayloadFormat::Pcmu, PacketDuration::Ms20).unwrap();
        let mut dec = FrameDecoder::new(PayloadFormat::Pcmu).unwrap();
        assert_eq!(enc.format(), PayloadFormat::Pcmu);
        assert_eq!(dec.rate(), SampleRate::Hz8000);
        assert_eq!(enc.packet_ticks(), 160);
        let frame = ramp_frame(SampleRate::Hz8000, -3000);
        let mut buf = [0u8; 160];
        enc.push_frame(&frame).unwrap();
        let p = enc.next_packet(&mut buf).unwrap().unwrap();
        assert_eq!(
            p,
            EncodedPacket {
                len: 160,
                ticks: 160,
                dtx: false
            }
        );
        assert!(enc.next_packet(&mut buf).unwrap().is_none());
        assert_eq!(dec.packet_ticks(&buf), Ok(160));
        assert_eq!(dec.decode(&buf), Ok(1));
        let out = dec.next_frame().unwrap();
        assert_eq!(out.origin(), FrameOrigin::Received);
        for (&a, &b) in frame.samples().iter().zip(out.samples()) {
            assert_eq!(b, ulaw_to_linear(linear_to_ulaw(a)));
        }
    }

    #[test]
    fn pcma_and_l16_round_trip() {
        let mut enc = FrameEncoder::new(PayloadFormat::Pcma, PacketDuration::Ms20).unwrap();
        let mut dec = FrameDecoder::new(PayloadFormat::Pcma).unwrap();
        let frame = ramp_frame(SampleRate::Hz8000, 100);
        let mut buf = [0u8; 640];
        enc.push_frame(&frame).unwrap();
        let p = enc.next_packet(&mut buf).unwrap().unwrap();
        dec.decode(&buf[..p.len]).unwrap();
        let out = dec.next_frame().unwrap();
        let err: i32 = frame
            .samples()
            .iter()
            .zip(out.samples())
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .max()
            .unwrap();
        assert!(err <= 528, "A-law error {err}");

        let format = PayloadFormat::L16 {
            rate: SampleRate::Hz16000,
        };
        let mut enc = FrameEncoder::new(format, PacketDuration::Ms20).unwrap();
        let mut dec = FrameDecoder::new(format).unwrap();
        assert_eq!(dec.format(), format);
        let frame = ramp_frame(SampleRate::Hz16000, i16::MIN);
        enc.push_frame(&frame).unwrap();
        let p = enc.next_packet(&mut buf).unwrap().unwrap();
        assert_eq!((p.len, p.ticks), (640, 320));
        assert_eq!(dec.decode(&buf[..p.len]), Ok(1));
        assert_eq!(dec.next_frame().unwrap().samples(), frame.samples());
    }

    #[test]
    fn odd_packet_durations_become_whole_frames() {
        let mut dec = FrameDecoder::new(PayloadFormat::Pcmu).unwrap();
        // 30 ms packets (ptime 30): 1, then 2 frames.
        assert_eq!(dec.decode(&[0xFF; 240]), Ok(1));
        assert!(dec.next_frame().is_some());
        assert_eq!(dec.decode(&[0xFF; 240]), Ok(2));
        assert_eq!(dec.frames_ready(), 2);
        while dec.next_frame().is_some() {}
        // 60 ms packet encoder: a packet every third frame.
        let mut enc = FrameEncoder::new(PayloadFormat::Pcmu, PacketDuration::Ms60).unwrap();
        let mut buf = [0u8; 480];
        let mut emitted = Vec::new();
        for k in 0..6 {
            enc.push_frame(&ramp_frame(SampleRate::Hz8000, k)).unwrap();
            emitted.push(enc.next_packet(&mut buf).unwrap().map(|p| p.len));
        }
        assert_eq!(emitted, [None, None, Some(480), None, None, Some(480)]);
        // 10 ms packets: two per frame.
        let mut enc = FrameEncoder::new(PayloadFormat::Pcma, PacketDuration::Ms10).unwrap();
        enc.push_frame(&ramp_frame(SampleRate::Hz8000, 0)).unwrap();
        assert_eq!(
            enc.next_packet(&mut buf).unwrap().map(|p| p.ticks),
            Some(80)
        );
        assert_eq!(
            enc.next_packet(&mut buf).unwrap().map(|p| p.ticks),
            Some(80)
        );
        assert_eq!(enc.next_packet(&mut buf).unwrap(), None);
    }

    #[test]
    fn pcm_concealment_repeats_then_fades_to_silence() {
        let mut dec = FrameDecoder::new(PayloadFormat::L16 {
            rate: SampleRate::Hz8000,
        })
        .unwrap();
        let last = ramp_frame(SampleRate::Hz8000, 1000);
        let mut payload = [0u8; 320];
        encode_l16(last.samples(), &mut payload);
        dec.decode(&payload).unwrap();
        dec.next_frame();
        // Four lost frames, announced as a gap before the next payload.
        assert_eq!(dec.recover_fec(&payload, 4 * 160), Ok(false));
        let concealed: Vec<AudioFrame> = std::iter::from_fn(|| dec.next_frame()).collect();
        assert_eq!(concealed.len(), 4);
        assert!(concealed
            .iter()
            .all(|f| f.origin() == FrameOrigin::Concealed));
        // The first repeats the last frame at (nearly) full level; then it fades.
        assert_eq!(concealed[0].samples()[0], last.samples()[0]);
        let levels: Vec<f32> = concealed.iter().map(|f| f.level_dbfs()).collect();
        assert!(levels[0] > levels[1] && levels[1] > levels[2], "{levels:?}");
        assert!(concealed[3].is_digital_silence());
        // A received payload resets the fade.
        dec.decode(&payload).unwrap();
        assert_eq!(dec.next_frame().unwrap().origin(), FrameOrigin::Received);
        dec.conceal(160).unwrap();
        assert_eq!(dec.next_frame().unwrap().samples()[0], last.samples()[0]);
    }

    #[test]
    fn concealment_before_any_audio_is_silence() {
        let mut dec = FrameDecoder::new(PayloadFormat::Pcma).unwrap();
        assert_eq!(dec.conceal(160), Ok(1));
        let f = dec.next_frame().unwrap();
        assert!(f.is_digital_silence());
        assert_eq!(f.origin(), FrameOrigin::Concealed);
    }

    #[test]
    fn opus_through_the_enums_with_fec() {
        let rate = SampleRate::Hz16000;
        let format = PayloadFormat::Opus { pcm_rate: rate };
        let mut enc = FrameEncoder::new(format, PacketDuration::Ms20).unwrap();
        let mut dec = FrameDecoder::new(format).unwrap();
        assert_eq!(enc.packet_ticks(), 960);
        let pcm = synthetic_speech(rate, 1.0);
        let mut buf = [0u8; 1500];
        let mut packets = Vec::new();
        for f in frames(rate, &pcm) {
            enc.push_frame(&f).unwrap();
            while let Some(p) = enc.next_packet(&mut buf).unwrap() {
                packets.push(buf[..p.len].to_vec());
            }
        }
        let mut out = Vec::new();
        for (k, p) in packets.iter().enumerate() {
            assert_eq!(dec.packet_ticks(p), Ok(960));
            if k == 20 {
                assert_eq!(dec.recover_fec(&packets[k + 1], 960), Ok(true));
            } else {
                dec.decode(p).unwrap();
            }
            while let Some(f) = dec.next_frame() {
                out.extend_from_slice(f.samples());
            }
        }
        assert_eq!(out.len(), pcm.len());
        let (_, corr) = best_lag(&pcm, &out, 0..=320, 3200..15200);
        assert!(corr > 0.9, "correlation {corr}");
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            FrameDecoder::new(PayloadFormat::TelephoneEvent { clock_rate: 8000 }).unwrap_err(),
            CodecError::NotAudio("telephone-event")
        );
        assert!(FrameEncoder::new(
            PayloadFormat::TelephoneEvent { clock_rate: 8000 },
            PacketDuration::Ms20
        )
        .is_err());
        let mut dec = FrameDecoder::new(PayloadFormat::Pcmu).unwrap();
        assert!(matches!(
            dec.decode(&[]),
            Err(CodecError::EmptyPayload { format: "PCMU" })
        ));
        assert!(matches!(
            dec.decode(&[0; 2000]),
            Err(CodecError::PayloadLength { .. })
        ));
        // ffmpeg's default PCMU packet: 128 ms, six whole frames and 8 ms carried over.
        let mut long = FrameDecoder::new(PayloadFormat::Pcmu).unwrap();
        assert_eq!(long.decode(&[0xFF; 1024]).unwrap(), 6);
        assert!(matches!(
            dec.conceal(2000),
            Err(CodecError::InvalidDuration { .. })
        ));
        let mut l16 = FrameDecoder::new(PayloadFormat::L16 {
            rate: SampleRate::Hz48000,
        })
        .unwrap();
        assert!(matches!(
            l16.decode(&[0; 3]),
            Err(CodecError::PayloadLength { .. })
        ));
        assert!(l16.packet_ticks(&[0; 3]).is_err());
        let mut enc = FrameEncoder::new(PayloadFormat::Pcmu, PacketDuration::Ms20).unwrap();
        enc.push_frame(&AudioFrame::silent(SampleRate::Hz8000))
            .unwrap();
        assert_eq!(
            enc.next_packet(&mut [0u8; 100]),
            Err(CodecError::OutputBufferTooSmall {
                needed: 160,
                got: 100
            })
        );
        assert!(matches!(
            enc.push_frame(&AudioFrame::silent(SampleRate::Hz16000)),
            Err(CodecError::RateMismatch { .. })
        ));
        assert!(PacketDuration::from_ms(30).is_err());
        assert_eq!(PacketDuration::from_ms(40), Ok(PacketDuration::Ms40));
    }

    #[test]
    fn reset_drops_queued_audio() {
        let mut dec = FrameDecoder::new(PayloadFormat::Pcmu).unwrap();
        dec.decode(&[0x80; 100]).unwrap();
        dec.reset().unwrap();
        assert_eq!(dec.frames_ready(), 0);
        assert!(dec.conceal(160).is_ok());
        assert!(dec.next_frame().unwrap().is_digital_silence());
    }
}
