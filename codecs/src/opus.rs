//! Opus (RFC 6716, RTP mapping RFC 7587) through libopus, framed as 20 ms `AudioFrame`s.
//!
//! [`OpusDecoder`] turns packets of 2.5–120 ms into whole 20 ms frames at the
//! rate the engine wants (libopus decodes any packet at 8/16/24/48 kHz, so no
//! resampler is needed), conceals lost packets (PLC) and recovers them from the
//! next packet's in-band FEC. [`OpusEncoder`] takes 20 ms frames and produces
//! 10/20/40/60 ms packets. Both keep their audio in buffers sized at
//! construction, so the steady state does not allocate.

use std::time::Duration;

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals};

use crate::codec::{EncodedPacket, PacketDuration};
use crate::fifo::SampleFifo;
use crate::{AudioFrame, CodecError, FrameOrigin, SampleRate};

/// The Opus RTP clock rate: timestamps always count 48 kHz ticks (RFC 7587).
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// The longest Opus packet in milliseconds (RFC 6716 §3.2.5).
pub const MAX_OPUS_PACKET_MS: u32 = 120;

/// The smallest encoder output buffer accepted: the largest single Opus frame.
///
/// libopus does not fail on a short buffer, it silently emits a truncated
/// packet, so the encoder refuses anything smaller.
pub const MIN_OPUS_OUTPUT_BYTES: usize = 1275;

/// The output buffer size libopus recommends for any configuration.
pub const RECOMMENDED_OPUS_OUTPUT_BYTES: usize = 4000;

/// The granularity of PLC and FEC durations: 2.5 ms in 48 kHz ticks.
const TICKS_PER_2_5_MS: u32 = 120;

/// Largest concealment or FEC request per call, in 48 kHz ticks (120 ms).
const MAX_GAP_TICKS: u32 = MAX_OPUS_PACKET_MS * 48;

/// Decoder queue: one maximal packet plus room for leftovers not yet pulled.
const DECODER_QUEUE_MS: usize = MAX_OPUS_PACKET_MS as usize + 40;

/// Encoder queue: one 60 ms packet plus the frame that completes the next one.
const ENCODER_QUEUE_MS: usize = 80;

fn opus_rate(rate: SampleRate) -> audiopus::SampleRate {
    match rate {
        SampleRate::Hz8000 => audiopus::SampleRate::Hz8000,
        SampleRate::Hz16000 => audiopus::SampleRate::Hz16000,
        SampleRate::Hz24000 => audiopus::SampleRate::Hz24000,
        SampleRate::Hz48000 => audiopus::SampleRate::Hz48000,
    }
}

fn opus_err(op: &'static str) -> impl FnOnce(audiopus::Error) -> CodecError {
    move |source| CodecError::Opus { op, source }
}

fn packet(payload: &[u8]) -> Result<Packet<'_>, CodecError> {
    if payload.is_empty() {
        return Err(CodecError::EmptyPayload { format: "Opus" });
    }
    Packet::try_from(payload).map_err(opus_err("packet check"))
}

/// Converts 48 kHz ticks to samples at `rate` (exact for multiples of 2.5 ms).
const fn ticks_to_samples(ticks: u32, rate: SampleRate) -> usize {
    (ticks as u64 * rate.hz() as u64 / OPUS_CLOCK_RATE as u64) as usize
}

/// The coding mode of an Opus packet, from its TOC byte (RFC 6716 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpusMode {
    /// SILK only (speech, up to wideband); can carry in-band FEC.
    Silk,
    /// SILK for the low band plus CELT above 8 kHz; can carry in-band FEC.
    Hybrid,
    /// CELT only (music, low delay); never carries in-band FEC.
    Celt,
}

/// The coding mode of `payload`, read from its TOC byte.
pub fn opus_packet_mode(payload: &[u8]) -> Result<OpusMode, CodecError> {
    let toc = *payload
        .first()
        .ok_or(CodecError::EmptyPayload { format: "Opus" })?;
    Ok(match toc >> 3 {
        0..=11 => OpusMode::Silk,
        12..=15 => OpusMode::Hybrid,
        _ => OpusMode::Celt,
    })
}

/// How many 48 kHz RTP ticks `payload` spans (all its frames), so a caller
/// knows how far the timestamp advances and how many 20 ms frames it yields.
pub fn opus_packet_ticks(payload: &[u8]) -> Result<u32, CodecError> {
    let p = packet(payload)?;
    let n = audiopus::packet::nb_samples(p, audiopus::SampleRate::Hz48000)
        .map_err(opus_err("packet parse"))?;
    Ok(n as u32)
}

/// Ticks of one Opus frame inside `payload` (a packet may hold several frames).
fn opus_frame_ticks(payload: &[u8]) -> Result<u32, CodecError> {
    let p = packet(payload)?;
    let n = audiopus::packet::samples_per_frame(p, audiopus::SampleRate::Hz48000)
        .map_err(opus_err("packet parse"))?;
    Ok(n as u32)
}

fn check_gap(ticks: u32) -> Result<(), CodecError> {
    if !ticks.is_multiple_of(TICKS_PER_2_5_MS) {
        return Err(CodecError::InvalidDuration {
            ticks,
            reason: "Opus conceals in steps of 2.5 ms (120 ticks at 48 kHz)",
        });
    }
    if ticks > MAX_GAP_TICKS {
        return Err(CodecError::InvalidDuration {
            ticks,
            reason: "at most 120 ms per call; pull frames and conceal the rest in another call",
        });
    }
    Ok(())
}

/// Decodes Opus packets into 20 ms frames at a chosen PCM rate, with PLC and FEC.
///
/// Packets shorter than 20 ms leave a partial frame queued until the next
/// packet completes it; pull whole frames with [`OpusDecoder::next_frame`]
/// after each call.
pub struct OpusDecoder {
    decoder: Decoder,
    rate: SampleRate,
    queue: SampleFifo,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("rate", &self.rate)
            .field("buffered_samples", &self.queue.len())
            .finish()
    }
}

impl OpusDecoder {
    /// A mono decoder producing PCM at `rate` (any Opus packet decodes at any rate).
    pub fn new(rate: SampleRate) -> Result<Self, CodecError> {
        let decoder =
            Decoder::new(opus_rate(rate), Channels::Mono).map_err(opus_err("decoder create"))?;
        Ok(OpusDecoder {
            decoder,
            rate,
            queue: SampleFifo::new(rate, DECODER_QUEUE_MS),
        })
    }

    /// The rate of the frames this decoder produces.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Decodes one packet into the queue; returns the whole frames now ready.
    ///
    /// An empty or corrupt payload is an error and leaves the queue untouched:
    /// conceal the gap instead.
    pub fn decode(&mut self, payload: &[u8]) -> Result<usize, CodecError> {
        let p = packet(payload)?;
        let samples = audiopus::packet::nb_samples(p, opus_rate(self.rate))
            .map_err(opus_err("packet parse"))?;
        if samples > ticks_to_samples(MAX_GAP_TICKS, self.rate) {
            return Err(CodecError::PayloadLength {
                format: "Opus",
                len: payload.len(),
                reason: "declaring more than 120 ms of audio",
            });
        }
        let out = self.queue.reserve(samples)?;
        let signals = MutSignals::try_from(out).map_err(opus_err("decode"))?;
        let p = packet(payload)?;
        let written = self
            .decoder
            .decode(Some(p), signals, false)
            .map_err(opus_err("decode"))?;
        self.queue.commit(written, FrameOrigin::Received);
        Ok(self.queue.frames_ready())
    }

    /// Synthesises `ticks` (48 kHz, a multiple of 120, at most 5760) of audio
    /// for lost packets with libopus PLC; frames are marked `Concealed`.
    pub fn conceal(&mut self, ticks: u32) -> Result<usize, CodecError> {
        check_gap(ticks)?;
        self.plc(ticks_to_samples(ticks, self.rate))?;
        Ok(self.queue.frames_ready())
    }

    fn plc(&mut self, samples: usize) -> Result<(), CodecError> {
        if samples == 0 {
            return Ok(());
        }
        // For PLC the buffer length is the amount of audio libopus synthesises.
        let out = self.queue.reserve(samples)?;
        let signals = MutSignals::try_from(out).map_err(opus_err("conceal"))?;
        let written = self
            .decoder
            .decode(None, signals, false)
            .map_err(opus_err("conceal"))?;
        self.queue.commit(written, FrameOrigin::Concealed);
        Ok(())
    }

    /// Fills a gap of `ticks` (48 kHz, multiple of 120, at most 5760) that ends
    /// right before `next_payload`, using that packet's in-band FEC data.
    ///
    /// libopus can only rebuild the last frame-length of the gap from FEC; the
    /// part before it, or the whole gap when `next_payload` is CELT-only or has
    /// longer frames than the gap, is concealed with PLC. Recovered audio is
    /// marked `Recovered`, the rest `Concealed`. Returns true if FEC data was
    /// used. Decode `next_payload` normally afterwards. An empty or unparsable
    /// `next_payload` is an error and queues nothing. If the packet carries
    /// no FEC data libopus conceals that part internally, which still sounds
    /// like PLC although marked `Recovered`.
    pub fn recover_fec(&mut self, next_payload: &[u8], ticks: u32) -> Result<bool, CodecError> {
        check_gap(ticks)?;
        let mode = opus_packet_mode(next_payload)?;
        let frame_ticks = opus_frame_ticks(next_payload)?;
        if ticks == 0 {
            return Ok(false);
        }
        if mode == OpusMode::Celt || frame_ticks > ticks {
            self.plc(ticks_to_samples(ticks, self.rate))?;
            return Ok(false);
        }
        let samples = ticks_to_samples(frame_ticks, self.rate);
        // Check the space for the whole gap first so a full queue fails cleanly.
        self.queue.reserve(ticks_to_samples(ticks, self.rate))?;
        self.plc(ticks_to_samples(ticks - frame_ticks, self.rate))?;
        let p = packet(next_payload)?;
        let out = self.queue.reserve(samples)?;
        let signals = MutSignals::try_from(out).map_err(opus_err("fec decode"))?;
        match self.decoder.decode(Some(p), signals, true) {
            Ok(written) => {
                self.queue.commit(written, FrameOrigin::Recovered);
                Ok(true)
            }
            // A corrupt next packet: conceal its share of the gap instead; the
            // caller learns of the corruption when it decodes that packet.
            Err(_) => {
                self.plc(samples)?;
                Ok(false)
            }
        }
    }

    /// The oldest whole 20 ms frame, if one is ready.
    pub fn next_frame(&mut self) -> Option<AudioFrame> {
        self.queue.pop_frame()
    }

    /// Like [`OpusDecoder::next_frame`], but writes into `out` (no 2 KB frame built and moved);
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

    /// Drops queued audio and resets the decoder state (for a new stream or SSRC).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        use audiopus::coder::GenericCtl;
        self.queue.clear();
        self.decoder.reset_state().map_err(opus_err("reset"))
    }
}

/// Encoder settings; the defaults suit a phone agent's speech on a lossy network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusConfig {
    /// Target bitrate in bits per second (6000–510000). Default 24 000.
    pub bitrate_bps: u32,
    /// CPU/quality trade-off, 0–10. Default 5: roughly half the CPU of
    /// libopus's default 9 at a small quality cost.
    pub complexity: u8,
    /// Embed low-bitrate copies of the previous frame (LBRR) so a receiver can
    /// recover one lost packet. Default on.
    pub inband_fec: bool,
    /// Expected packet loss in percent (0–100); raises FEC redundancy. Default 10.
    pub expected_loss_pct: u8,
    /// Discontinuous transmission: near-empty packets during silence. Default off.
    pub dtx: bool,
    /// Audio per packet. Default 20 ms.
    pub packet_duration: PacketDuration,
}

impl Default for OpusConfig {
    fn default() -> Self {
        OpusConfig {
            bitrate_bps: 24_000,
            complexity: 5,
            inband_fec: true,
            expected_loss_pct: 10,
            dtx: false,
            packet_duration: PacketDuration::Ms20,
        }
    }
}

impl OpusConfig {
    /// Checks every field's range, naming the first bad one.
    pub fn validate(&self) -> Result<(), CodecError> {
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return Err(CodecError::InvalidConfig {
                what: "Opus bitrate (bit/s)",
                value: self.bitrate_bps as i64,
                expected: "6000 to 510000",
            });
        }
        if self.complexity > 10 {
            return Err(CodecError::InvalidConfig {
                what: "Opus complexity",
                value: self.complexity as i64,
                expected: "0 to 10",
            });
        }
        if self.expected_loss_pct > 100 {
            return Err(CodecError::InvalidConfig {
                what: "Opus expected packet loss (%)",
                value: self.expected_loss_pct as i64,
                expected: "0 to 100",
            });
        }
        Ok(())
    }
}

/// Encodes 20 ms frames into Opus packets of the configured duration.
///
/// Push each frame with [`OpusEncoder::push_frame`], then drain packets with
/// [`OpusEncoder::next_packet`] (none yet for the first frame of a 40/60 ms
/// packet, two for 10 ms packets).
pub struct OpusEncoder {
    encoder: Encoder,
    rate: SampleRate,
    config: OpusConfig,
    queue: SampleFifo,
    lookahead: usize,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("rate", &self.rate)
            .field("config", &self.config)
            .field("lookahead", &self.lookahead)
            .finish()
    }
}

impl OpusEncoder {
    /// A mono VOIP-mode encoder taking PCM at `rate`, configured from `config`.
    pub fn new(rate: SampleRate, config: OpusConfig) -> Result<Self, CodecError> {
        config.validate()?;
        let mut encoder = Encoder::new(opus_rate(rate), Channels::Mono, Application::Voip)
            .map_err(opus_err("encoder create"))?;
        encoder
            .set_bitrate(Bitrate::BitsPerSecond(config.bitrate_bps as i32))
            .map_err(opus_err("set bitrate"))?;
        encoder
            .set_complexity(config.complexity)
            .map_err(opus_err("set complexity"))?;
        encoder
            .set_inband_fec(config.inband_fec)
            .map_err(opus_err("set inband fec"))?;
        encoder
            .set_packet_loss_perc(config.expected_loss_pct)
            .map_err(opus_err("set packet loss"))?;
        encoder.set_dtx(config.dtx).map_err(opus_err("set dtx"))?;
        let lookahead = encoder.lookahead().map_err(opus_err("get lookahead"))? as usize;
        Ok(OpusEncoder {
            encoder,
            rate,
            config,
            queue: SampleFifo::new(rate, ENCODER_QUEUE_MS),
            lookahead,
        })
    }

    /// The rate of the frames this encoder takes.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The settings in force.
    pub fn config(&self) -> &OpusConfig {
        &self.config
    }

    /// Samples (at the encoder's rate) by which decoded audio lags the input:
    /// libopus's total codec delay (encoder lookahead plus decoder delay).
    pub fn lookahead_samples(&self) -> usize {
        self.lookahead
    }

    /// [`OpusEncoder::lookahead_samples`] as a duration.
    pub fn lookahead(&self) -> Duration {
        Duration::from_micros(self.lookahead as u64 * 1_000_000 / self.rate.hz() as u64)
    }

    /// RTP timestamp ticks (48 kHz) each packet advances.
    pub fn packet_ticks(&self) -> u32 {
        self.config.packet_duration.ms() * 48
    }

    /// Changes the target bitrate mid-stream (e.g. on congestion feedback).
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        let changed = OpusConfig {
            bitrate_bps,
            ..self.config
        };
        self.change(changed, "set bitrate", |e| {
            e.set_bitrate(Bitrate::BitsPerSecond(bitrate_bps as i32))
        })
    }

    /// Changes the CPU/quality trade-off mid-stream (0–10), e.g. to shed load while the
    /// machine cannot keep up; takes effect from the next packet, allocates nothing.
    pub fn set_complexity(&mut self, complexity: u8) -> Result<(), CodecError> {
        let changed = OpusConfig {
            complexity,
            ..self.config
        };
        self.change(changed, "set complexity", |e| e.set_complexity(complexity))
    }

    /// Changes the expected loss mid-stream (e.g. from RTCP receiver reports).
    pub fn set_expected_loss(&mut self, pct: u8) -> Result<(), CodecError> {
        let changed = OpusConfig {
            expected_loss_pct: pct,
            ..self.config
        };
        self.change(changed, "set packet loss", |e| e.set_packet_loss_perc(pct))
    }

    /// Takes `changed` as the settings once they validate and `apply` has set them in libopus;
    /// on an error the settings stay as they were.
    fn change(
        &mut self,
        changed: OpusConfig,
        op: &'static str,
        apply: impl FnOnce(&mut Encoder) -> Result<(), audiopus::Error>,
    ) -> Result<(), CodecError> {
        changed.validate()?;
        apply(&mut self.encoder).map_err(opus_err(op))?;
        self.config = changed;
        Ok(())
    }

    /// Queues one 20 ms frame for encoding; it must be at the encoder's rate.
    pub fn push_frame(&mut self, frame: &AudioFrame) -> Result<(), CodecError> {
        if frame.rate() != self.rate {
            return Err(CodecError::RateMismatch {
                expected: self.rate.hz(),
                got: frame.rate().hz(),
            });
        }
        self.queue.push(frame.samples(), frame.origin())
    }

    /// Encodes the next packet into `out` (at least 1275 bytes) once enough
    /// audio is queued; `None` until then.
    ///
    /// A packet flagged `dtx` (2 bytes or less) need not be sent, but its
    /// ticks still advance the RTP timestamp.
    pub fn next_packet(&mut self, out: &mut [u8]) -> Result<Option<EncodedPacket>, CodecError> {
        if out.len() < MIN_OPUS_OUTPUT_BYTES {
            return Err(CodecError::OutputBufferTooSmall {
                needed: MIN_OPUS_OUTPUT_BYTES,
                got: out.len(),
            });
        }
        let n = self.config.packet_duration.samples(self.rate);
        let Some(input) = self.queue.front(n) else {
            return Ok(None);
        };
        let len = self
            .encoder
            .encode(input, out)
            .map_err(opus_err("encode"))?;
        self.queue.consume(n);
        Ok(Some(EncodedPacket {
            len,
            ticks: self.packet_ticks(),
            dtx: len <= 2,
        }))
    }

    /// Drops queued audio and resets the encoder state.
    pub fn reset(&mut self) -> Result<(), CodecError> {
        use audiopus::coder::GenericCtl;
        self.queue.clear();
        self.encoder.reset_state().map_err(opus_err("reset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::{best_lag, correlation_at, frames, snr_db, synthetic_speech, Lcg};

    const SECONDS: f64 = 2.0;

    fn encode_all(rate: SampleRate, config: OpusConfig, pcm: &[i16]) -> (Vec<Vec<u8>>, usize) {
        let mut enc = OpusEncoder::new(rate, config).unwrap();
        let mut buf = [0u8; RECOMMENDED_OPUS_OUTPUT_BYTES];
        let mut packets = Vec::new();
        for frame in frames(rate, pcm) {
            enc.push_frame(&frame).unwrap();
            while let Some(p) = enc.next_packet(&mut buf).unwrap() {
                assert_eq!(p.ticks, config.packet_duration.ms() * 48);
                packets.push(buf[..p.len].to_vec());
            }
        }
        (packets, enc.lookahead_samples())
    }

    fn decode_all(rate: SampleRate, packets: &[Vec<u8>]) -> Vec<i16> {
        let mut dec = OpusDecoder::new(rate).unwrap();
        let mut out = Vec::new();
        for p in packets {
            dec.decode(p).unwrap();
            while let Some(f) = dec.next_frame() {
                assert_eq!(f.rate(), rate);
                assert_eq!(f.origin(), FrameOrigin::Received);
                out.extend_from_slice(f.samples());
            }
        }
        out
    }

    /// Best correlation of `output` with `reference` (both at `rate`) within
    /// ±10 ms of the codec delay, skipping the first 200 ms of start-up.
    fn aligned(
        rate: SampleRate,
        delay_ms: f64,
        reference: &[i16],
        output: &[i16],
    ) -> (usize, f64, f64) {
        let ms = rate.samples_per_ms();
        let center = (delay_ms * ms as f64).round() as usize;
        let lags = center.saturating_sub(10 * ms)..=center + 10 * ms;
        let range = 200 * ms..reference.len() - 50 * ms;
        let (lag, corr) = best_lag(reference, output, lags, range.clone());
        (lag, corr, snr_db(reference, output, lag, range))
    }

    // Threshold for the speech round trip. SILK is a predictive (LPC + pitch)
    // coder with noise shaping: it keeps the waveform's shape but lets the
    // error follow the spectrum, so waveform SNR stays modest (10.7–12.5 dB
    // measured here at ~23 kbit/s with libopus 1.3.1) and is a poor pass mark.
    // Normalized cross-correlation after delay compensation measured
    // 0.958–0.972 at every rate, and 0.937 (SNR 9.1 dB) on espeak-ng speech
    // at 16 kHz (the tests print the values). 0.9 leaves margin for other
    // libopus versions while still failing on misalignment, a wrong rate or
    // broken framing: 5 ms off the best lag the same signal scores about 0.1.
    const MIN_CORRELATION: f64 = 0.9;

    #[test]
    fn speech_survives_a_round_trip_at_every_rate() {
        for rate in SampleRate::ALL {
            let pcm = synthetic_speech(rate, SECONDS);
            let (packets, lookahead) = encode_all(rate, OpusConfig::default(), &pcm);
            assert_eq!(packets.len(), (SECONDS * 50.0) as usize);
            let out = decode_all(rate, &packets);
            assert_eq!(out.len(), pcm.len());
            let delay_ms = lookahead as f64 / rate.samples_per_ms() as f64;
            let (lag, corr, snr) = aligned(rate, delay_ms, &pcm, &out);
            let kbps = packets.iter().map(Vec::len).sum::<usize>() as f64 * 8.0 / SECONDS / 1000.0;
            eprintln!(
                "{} Hz: lookahead {lookahead}, best lag {lag}, correlation {corr:.4}, SNR {snr:.1} dB, {kbps:.1} kbit/s",
                rate.hz()
            );
            assert!(corr >= MIN_CORRELATION, "{rate:?}: correlation {corr:.3}");
            // Negative control: 5 ms off the best alignment the metric collapses.
            let ms = rate.samples_per_ms();
            let off = correlation_at(&pcm, &out, lag + 5 * ms, 200 * ms..pcm.len() - 50 * ms);
            eprintln!("{} Hz: correlation 5 ms off alignment {off:.4}", rate.hz());
            assert!(off < 0.5, "{rate:?}: misaligned correlation {off:.3}");
        }
    }

    #[test]
    fn complexity_changes_mid_stream_and_the_speech_survives() {
        let rate = SampleRate::Hz24000;
        let pcm = synthetic_speech(rate, SECONDS);
        let mut enc = OpusEncoder::new(rate, OpusConfig::default()).unwrap();
        assert_eq!(enc.encoder.complexity().unwrap(), 5);
        assert!(matches!(
            enc.set_complexity(11),
            Err(CodecError::InvalidConfig { .. })
        ));
        assert_eq!(
            enc.config().complexity,
            5,
            "a refused change keeps the setting"
        );
        let mut buf = [0u8; RECOMMENDED_OPUS_OUTPUT_BYTES];
        let mut packets = Vec::new();
        for (i, frame) in frames(rate, &pcm).into_iter().enumerate() {
            // Half the stream at complexity 1 in the middle, as while shedding load.
            match i {
                25 => enc.set_complexity(1).unwrap(),
                75 => enc.set_complexity(5).unwrap(),
                _ => {}
            }
            if i == 25 {
                assert_eq!(enc.encoder.complexity().unwrap(), 1);
                assert_eq!(enc.config().complexity, 1);
            }
            enc.push_frame(&frame).unwrap();
            while let Some(p) = enc.next_packet(&mut buf).unwrap() {
                packets.push(buf[..p.len].to_vec());
            }
        }
        assert_eq!(enc.encoder.complexity().unwrap(), 5);
        assert_eq!(packets.len(), (SECONDS * 50.0) as usize);
        let out = decode_all(rate, &packets);
        let delay_ms = enc.lookahead_samples() as f64 / rate.samples_per_ms() as f64;
        let (_, corr, _) = aligned(rate, delay_ms, &pcm, &out);
        assert!(corr >= MIN_CORRELATION, "correlation {corr:.3}");
    }

    /// Real synthetic speech from espeak-ng (22.05 kHz), resampled to 16 kHz,
    /// when the tool is installed; the test passes silently without it.
    fn espeak_speech_16k() -> Option<Vec<i16>> {
        use rubato::audioadapter_buffers::direct::InterleavedSlice;
        use rubato::{Fft, FixedSync, Resampler as _};
        let path = std::env::temp_dir().join(format!("voxline-opus-{}.wav", std::process::id()));
        let status = std::process::Command::new("espeak-ng")
            .arg("-w")
            .arg(&path)
            .arg("Thank you for calling. How can I help you with your order today?")
            .output()
            .ok()?
            .status;
        if !status.success() {
            return None;
        }
        let read = hound::WavReader::open(&path).map(|reader| {
            let rate = reader.spec().sample_rate as usize;
            let pcm: Vec<f32> = reader
                .into_samples::<i16>()
                .filter_map(Result::ok)
                .map(|s| s as f32 / 32768.0)
                .collect();
            (rate, pcm)
        });
        let _ = std::fs::remove_file(&path);
        let (rate_in, pcm) = read.ok()?;
        let mut fft = Fft::<f32>::new(rate_in, 16_000, 1024, 1, FixedSync::Input).ok()?;
        let input = InterleavedSlice::new(&pcm[..], 1, pcm.len()).ok()?;
        let out = fft.process_all(&input, pcm.len(), None).ok()?.take_data();
        let len = out.len() / 320 * 320;
        Some(
            out[..len]
                .iter()
                .map(|&v| (v * 32768.0).clamp(-32768.0, 32767.0) as i16)
                .collect(),
        )
    }

    #[test]
    fn espeak_speech_round_trip_when_available() {
        let Some(pcm) = espeak_speech_16k() else {
            eprintln!("espeak-ng not available: skipped");
            return;
        };
        let rate = SampleRate::Hz16000;
        let (packets, lookahead) = encode_all(rate, OpusConfig::default(), &pcm);
        let out = decode_all(rate, &packets);
        let (lag, corr, snr) = aligned(rate, lookahead as f64 / 16.0, &pcm, &out);
        eprintln!(
            "espeak-ng speech, {:.2} s at 16 kHz: lag {lag}, correlation {corr:.4}, SNR {snr:.1} dB",
            pcm.len() as f64 / 16_000.0
        );
        assert!(corr >= MIN_CORRELATION, "correlation {corr:.3}");
    }

    #[test]
    fn any_rate_decodes_48k_packets() {
        let pcm48 = synthetic_speech(SampleRate::Hz48000, SECONDS);
        let (packets, lookahead) = encode_all(SampleRate::Hz48000, OpusConfig::default(), &pcm48);
        let delay_ms = lookahead as f64 / 48.0;
        for rate in SampleRate::ALL {
            let out = decode_all(rate, &packets);
            assert_eq!(
                out.len(),
                rate.samples_per_ms() * (SECONDS * 1000.0) as usize
            );
            let reference = synthetic_speech(rate, SECONDS);
            let (lag, corr, _) = aligned(rate, delay_ms, &reference, &out);
            eprintln!(
                "48k packets decoded at {} Hz: lag {lag}, correlation {corr:.4}",
                rate.hz()
            );
            // At 8 kHz the 48 kHz codec delay (309 samples = 51.5 samples at
            // 8 kHz) falls halfway between two samples, and that half-sample
            // misalignment alone costs the upper harmonics: measured 0.917
            // against 0.960-0.967 at the other rates. Allow for it.
            let min = if rate == SampleRate::Hz8000 {
                0.85
            } else {
                MIN_CORRELATION
            };
            assert!(corr >= min, "{rate:?}: correlation {corr:.3}");
        }
    }

    #[test]
    fn long_packets_yield_two_or_three_frames() {
        let rate = SampleRate::Hz16000;
        let pcm = synthetic_speech(rate, SECONDS);
        for (duration, frames_per_packet) in [(PacketDuration::Ms40, 2), (PacketDuration::Ms60, 3)]
        {
            let config = OpusConfig {
                packet_duration: duration,
                ..OpusConfig::default()
            };
            let (packets, lookahead) = encode_all(rate, config, &pcm);
            assert_eq!(packets.len(), 100 / frames_per_packet);
            let mut dec = OpusDecoder::new(rate).unwrap();
            let mut out = Vec::new();
            for p in &packets {
                assert_eq!(opus_packet_ticks(p), Ok(duration.ms() * 48));
                assert_eq!(dec.decode(p), Ok(frames_per_packet));
                while let Some(f) = dec.next_frame() {
                    out.extend_from_slice(f.samples());
                }
            }
            let (_, corr, _) = aligned(rate, lookahead as f64 / 16.0, &pcm, &out);
            eprintln!("{} ms packets: correlation {corr:.4}", duration.ms());
            assert!(corr >= MIN_CORRELATION);
        }
    }

    #[test]
    fn ten_ms_packets_fill_frames_in_halves() {
        let rate = SampleRate::Hz24000;
        let config = OpusConfig {
            packet_duration: PacketDuration::Ms10,
            ..OpusConfig::default()
        };
        let mut enc = OpusEncoder::new(rate, config).unwrap();
        let mut dec = OpusDecoder::new(rate).unwrap();
        let pcm = synthetic_speech(rate, 0.2);
        let mut buf = [0u8; MIN_OPUS_OUTPUT_BYTES];
        for frame in frames(rate, &pcm) {
            enc.push_frame(&frame).unwrap();
            let first = enc.next_packet(&mut buf).unwrap().unwrap();
            assert_eq!(first.ticks, 480);
            assert_eq!(opus_packet_ticks(&buf[..first.len]), Ok(480));
            assert_eq!(dec.decode(&buf[..first.len]), Ok(0));
            assert_eq!(dec.buffered_samples(), 240);
            let second = enc.next_packet(&mut buf).unwrap().unwrap();
            assert_eq!(dec.decode(&buf[..second.len]), Ok(1));
            assert!(enc.next_packet(&mut buf).unwrap().is_none());
            assert_eq!(dec.next_frame().unwrap().samples().len(), 480);
        }
    }

    #[test]
    fn plc_makes_whole_concealed_frames() {
        let rate = SampleRate::Hz16000;
        let pcm = synthetic_speech(rate, 0.4);
        let (packets, _) = encode_all(rate, OpusConfig::default(), &pcm);
        let mut dec = OpusDecoder::new(rate).unwrap();
        for p in &packets[..10] {
            assert_eq!(dec.decode(p), Ok(1));
            assert_eq!(dec.next_frame().unwrap().origin(), FrameOrigin::Received);
        }
        assert_eq!(dec.conceal(960), Ok(1));
        let f = dec.next_frame().unwrap();
        assert_eq!(f.origin(), FrameOrigin::Concealed);
        assert_eq!(f.samples().len(), 320);
        assert!(!f.is_digital_silence());
        // 10 ms lost plus a 20 ms packet: the frame spanning both is marked concealed.
        assert_eq!(dec.conceal(480), Ok(0));
        assert_eq!(dec.decode(&packets[11]), Ok(1));
        assert_eq!(dec.next_frame().unwrap().origin(), FrameOrigin::Concealed);
        assert_eq!(dec.buffered_samples(), 160);
        // Three lost frames at once.
        assert_eq!(dec.conceal(3 * 960), Ok(3));
    }

    #[test]
    fn fec_recovers_a_lost_packet_better_than_plc() {
        let rate = SampleRate::Hz16000;
        let pcm = synthetic_speech(rate, SECONDS);
        let config = OpusConfig {
            expected_loss_pct: 20,
            ..OpusConfig::default()
        };
        let (packets, lookahead) = encode_all(rate, config, &pcm);
        let fs = rate.frame_samples();
        let mut fec_wins = 0;
        let mut trials = 0;
        // Lose one packet at a time in the middle of voiced syllables.
        for lost in (12..packets.len() - 2).step_by(7) {
            let t = (lost * fs) as f64 / 16_000.0;
            if crate::test_signal::envelope(t) < 0.5 {
                continue;
            }
            let mut plc = OpusDecoder::new(rate).unwrap();
            let mut fec = OpusDecoder::new(rate).unwrap();
            let (mut out_plc, mut out_fec) = (Vec::new(), Vec::new());
            for (k, p) in packets.iter().enumerate().take(lost + 3) {
                if k == lost {
                    plc.conceal(960).unwrap();
                    assert_eq!(fec.recover_fec(&packets[k + 1], 960), Ok(true));
                } else {
                    plc.decode(p).unwrap();
                    fec.decode(p).unwrap();
                }
                while let Some(f) = plc.next_frame() {
                    out_plc.extend_from_slice(f.samples());
                }
                while let Some(f) = fec.next_frame() {
                    let want = if k == lost {
                        FrameOrigin::Recovered
                    } else {
                        FrameOrigin::Received
                    };
                    assert_eq!(f.origin(), want);
                    out_fec.extend_from_slice(f.samples());
                }
            }
            // Compare the lost 20 ms of input with what each decoder produced for it.
            let range = lost * fs - lookahead..(lost + 1) * fs - lookahead;
            let c_plc = correlation_at(&pcm, &out_plc, lookahead, range.clone());
            let c_fec = correlation_at(&pcm, &out_fec, lookahead, range.clone());
            let s_plc = snr_db(&pcm, &out_plc, lookahead, range.clone());
            let s_fec = snr_db(&pcm, &out_fec, lookahead, range);
            eprintln!(
                "lost packet {lost}: FEC correlation {c_fec:.3} SNR {s_fec:.1} dB, PLC correlation {c_plc:.3} SNR {s_plc:.1} dB"
            );
            assert!(c_fec > 0.5, "FEC output uncorrelated with the lost audio");
            trials += 1;
            if s_fec > s_plc {
                fec_wins += 1;
            }
        }
        assert!(trials >= 5);
        assert!(
            fec_wins * 4 >= trials * 3,
            "FEC beat PLC in only {fec_wins} of {trials}"
        );
    }

    #[test]
    fn fec_on_celt_or_short_gap_falls_back_to_plc() {
        let rate = SampleRate::Hz48000;
        let pcm = synthetic_speech(rate, 0.2);
        let (packets, _) = encode_all(rate, OpusConfig::default(), &pcm);
        let mut dec = OpusDecoder::new(rate).unwrap();
        assert_eq!(dec.decode(&packets[0]), Ok(1));
        dec.next_frame();
        // A 40 ms gap before a 20 ms packet: 20 ms PLC, then 20 ms FEC.
        assert_eq!(dec.recover_fec(&packets[3], 1920), Ok(true));
        assert_eq!(dec.next_frame().unwrap().origin(), FrameOrigin::Concealed);
        assert_eq!(dec.next_frame().unwrap().origin(), FrameOrigin::Recovered);
        assert_eq!(dec.decode(&packets[3]), Ok(1));
        dec.next_frame();
        // A CELT-only TOC (config 31, 20 ms) never carries FEC.
        assert_eq!(opus_packet_mode(&[0xF8, 0xFF, 0xFE]), Ok(OpusMode::Celt));
        assert_eq!(dec.recover_fec(&[0xF8, 0xFF, 0xFE], 960), Ok(false));
        assert_eq!(dec.next_frame().unwrap().origin(), FrameOrigin::Concealed);
        // A 10 ms gap before a 20 ms packet cannot be rebuilt from its FEC.
        assert_eq!(dec.recover_fec(&packets[5], 480), Ok(false));
        assert_eq!(dec.buffered_samples(), 480);
        assert_eq!(dec.frames_ready(), 0);
    }

    #[test]
    fn dtx_sends_tiny_packets_on_silence() {
        let rate = SampleRate::Hz16000;
        let config = OpusConfig {
            dtx: true,
            ..OpusConfig::default()
        };
        let mut noise = Lcg::new(7);
        let quiet: Vec<i16> = (0..16_000 * 2)
            .map(|_| (noise.next() * 3.0) as i16)
            .collect();
        let mut enc = OpusEncoder::new(rate, config).unwrap();
        let mut buf = [0u8; MIN_OPUS_OUTPUT_BYTES];
        let (mut dtx, mut total, mut bytes) = (0, 0, 0);
        for frame in frames(rate, &quiet) {
            enc.push_frame(&frame).unwrap();
            let p = enc.next_packet(&mut buf).unwrap().unwrap();
            total += 1;
            bytes += p.len;
            if p.dtx {
                assert!(p.len <= 2);
                dtx += 1;
            }
        }
        eprintln!("DTX: {dtx} of {total} packets discontinuous, {bytes} bytes in total");
        assert!(
            dtx * 10 >= total * 8,
            "only {dtx} of {total} packets were DTX"
        );
        // Without DTX the same silence costs a real packet every 20 ms.
        let (packets, _) = encode_all(rate, OpusConfig::default(), &quiet);
        assert!(packets.iter().all(|p| p.len() > 2));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let mut dec = OpusDecoder::new(SampleRate::Hz16000).unwrap();
        assert_eq!(
            dec.decode(&[]),
            Err(CodecError::EmptyPayload { format: "Opus" })
        );
        assert!(matches!(
            opus_packet_ticks(&[]),
            Err(CodecError::EmptyPayload { .. })
        ));
        // Code 3 (arbitrary frame count) with a missing count byte is malformed.
        assert!(matches!(dec.decode(&[0x03]), Err(CodecError::Opus { .. })));
        assert_eq!(dec.buffered_samples(), 0);
        assert!(matches!(
            dec.conceal(100),
            Err(CodecError::InvalidDuration { .. })
        ));
        assert!(matches!(
            dec.conceal(6000),
            Err(CodecError::InvalidDuration { .. })
        ));
        assert!(matches!(
            dec.recover_fec(&[], 960),
            Err(CodecError::EmptyPayload { .. })
        ));
        for junk in [[0xFFu8; 3], [0x0B, 0xFF, 0x00]] {
            // Any outcome but a panic is acceptable for garbage.
            let _ = dec.decode(&junk);
        }

        let mut enc = OpusEncoder::new(SampleRate::Hz16000, OpusConfig::default()).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(
            enc.next_packet(&mut small),
            Err(CodecError::OutputBufferTooSmall {
                needed: 1275,
                got: 100
            })
        );
        assert!(matches!(
            enc.push_frame(&AudioFrame::silent(SampleRate::Hz8000)),
            Err(CodecError::RateMismatch { .. })
        ));
        let bad = OpusConfig {
            complexity: 11,
            ..OpusConfig::default()
        };
        assert!(matches!(
            OpusEncoder::new(SampleRate::Hz16000, bad),
            Err(CodecError::InvalidConfig { .. })
        ));
        assert!(enc.set_bitrate(1_000).is_err());
        assert!(enc.set_bitrate(32_000).is_ok());
        assert_eq!(enc.config().bitrate_bps, 32_000);
        assert!(enc.set_expected_loss(101).is_err());
    }

    #[test]
    fn defaults_and_lookahead() {
        let c = OpusConfig::default();
        assert_eq!(
            (
                c.complexity,
                c.bitrate_bps,
                c.inband_fec,
                c.expected_loss_pct,
                c.dtx
            ),
            (5, 24_000, true, 10, false)
        );
        assert_eq!(c.packet_duration, PacketDuration::Ms20);
        for rate in SampleRate::ALL {
            let enc = OpusEncoder::new(rate, c).unwrap();
            let ms = enc.lookahead().as_secs_f64() * 1000.0;
            eprintln!(
                "{} Hz lookahead: {} samples, {ms:.2} ms",
                rate.hz(),
                enc.lookahead_samples()
            );
            assert!((2.5..=10.0).contains(&ms), "{rate:?}: lookahead {ms} ms");
            assert_eq!(enc.packet_ticks(), 960);
        }
    }
}
