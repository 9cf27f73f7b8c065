//! Inbound media: validates and orders caller RTP, decodes it one 20 ms frame per
//! tick, conceals losses (Opus PLC, or in-band FEC when the next packet is there),
//! and resamples to the rate VAD and STT use.

use std::net::SocketAddr;
use std::time::Duration;

use voxline_codecs::jitter::{InsertOutcome, JitterBuffer, JitterConfig, Playout, PlayoutAdjust};
use voxline_codecs::rtp::{looks_like_rtcp, RtpSource, SourceConfig, SourceOutcome};
use voxline_codecs::{
    AudioFrame, DtmfReceiver, FrameDecoder, FrameOrigin, PayloadFormat, PayloadRegistry, Resampler,
    RtpPacket, SampleRate,
};

use super::{MediaConfig, MediaError};

/// Ticks with nothing buffered that are waited out (packets may be late) before the stream
/// counts as paused and silent frames are produced.
pub const UNDERRUN_GRACE_TICKS: u32 = 5;

/// A 20 ms frame the jitter buffer asks to shorten away is dropped only when it is this quiet
/// (dBFS): the buffer sheds surplus delay in the caller's pauses, never in the middle of a word.
pub const SHORTEN_QUIET_DBFS: f32 = -50.0;

/// What happened to one received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketVerdict {
    /// Audio, buffered for playout.
    Audio,
    /// A telephone-event packet that completed a key press.
    Dtmf(char),
    /// A telephone-event packet with nothing new (repeats, updates).
    DtmfUpdate,
    /// Dropped: came from an address other than the call's remote (no media hijack).
    WrongSource,
    /// Dropped: from an SSRC other than the locked one.
    ForeignSsrc,
    /// Dropped: not RTP, malformed, or an unknown payload type.
    Invalid,
    /// RTCP multiplexed on the RTP port (ignored here).
    Rtcp,
    /// Dropped by the jitter buffer (duplicate, too late, overflow or held as a jump).
    Discarded,
}

/// Counters of the inbound side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InboundCounters {
    /// Datagrams received.
    pub datagrams: u64,
    /// Audio packets buffered.
    pub audio_packets: u64,
    /// Packets from the wrong address.
    pub wrong_source: u64,
    /// Packets from a foreign SSRC.
    pub foreign_ssrc: u64,
    /// Malformed or unknown packets.
    pub invalid: u64,
    /// RTCP datagrams.
    pub rtcp: u64,
    /// Packets the jitter buffer dropped (duplicate, too late, overflow).
    pub discarded: u64,
    /// Frames decoded from packets that arrived.
    pub frames_decoded: u64,
    /// Frames synthesised by loss concealment.
    pub frames_concealed: u64,
    /// Frames handed out ahead of the media clock while catching up (also counted as decoded,
    /// concealed or recovered).
    pub frames_ahead: u64,
    /// Frames rebuilt from in-band FEC.
    pub frames_recovered: u64,
    /// Quiet frames dropped to bring the jitter buffer's delay down to its target.
    pub frames_shortened: u64,
    /// Payloads the decoder rejected (concealed instead).
    pub decode_errors: u64,
    /// DTMF key presses.
    pub dtmf_events: u64,
}

/// The caller side of a call's media.
pub struct InboundMedia {
    registry: PayloadRegistry,
    remote: Option<SocketAddr>,
    learn_remote: bool,
    source: Option<RtpSource>,
    jitter: Option<JitterBuffer>,
    decoder: Option<(u8, FrameDecoder)>,
    resampler: Option<Resampler>,
    /// The decoder's frame before resampling to the caller rate (used only with a resampler).
    decoded: AudioFrame,
    jitter_delay: (Duration, Duration, Duration),
    /// Slack of the packet the last `next_frame` played (see [`InboundMedia::playout_slack`]).
    playout_slack: Option<Duration>,
    caller_rate: SampleRate,
    dtmf: Option<(u8, DtmfReceiver)>,
    counters: InboundCounters,
    /// Consecutive ticks with nothing buffered while the stream is playing.
    underrun_ticks: u32,
}

impl InboundMedia {
    /// Inbound media for a negotiated session.
    pub fn new(config: &MediaConfig) -> Result<Self, MediaError> {
        let dtmf = config
            .registry
            .find(|f| matches!(f, PayloadFormat::TelephoneEvent { .. }))
            .and_then(|pt| match config.registry.get(pt) {
                Some(PayloadFormat::TelephoneEvent { clock_rate }) => {
                    Some((pt, DtmfReceiver::new(clock_rate)))
                }
                _ => None,
            });
        let mut me = InboundMedia {
            registry: config.registry.clone(),
            remote: config.remote,
            learn_remote: config.remote.is_none(),
            source: None,
            jitter: None,
            decoder: None,
            resampler: None,
            decoded: AudioFrame::silent(config.caller_rate),
            jitter_delay: config.jitter_delay,
            playout_slack: None,
            caller_rate: config.caller_rate,
            dtmf,
            counters: InboundCounters::default(),
            underrun_ticks: 0,
        };
        // Prepare for the format we expect so the first packet allocates nothing.
        if let Some(
            PayloadFormat::Opus { .. }
            | PayloadFormat::Pcmu
            | PayloadFormat::Pcma
            | PayloadFormat::L16 { .. },
        ) = config.registry.get(config.send_payload_type)
        {
            me.prepare(config.send_payload_type)?;
        }
        Ok(me)
    }

    /// The remote address media comes from (given, or learned from the first valid packet).
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Rate of the frames `next_frame` produces.
    pub fn caller_rate(&self) -> SampleRate {
        self.caller_rate
    }

    /// Counters so far.
    pub fn counters(&self) -> InboundCounters {
        self.counters
    }

    /// The jitter buffer's current target delay.
    pub fn jitter_delay(&self) -> Option<Duration> {
        self.jitter.as_ref().map(|j| j.target_delay())
    }

    /// The jitter buffer's counters and gauges (delay, target, adjustments), once a stream
    /// format is known.
    pub fn jitter_stats(&self) -> Option<voxline_codecs::JitterStats> {
        self.jitter.as_ref().map(|j| j.stats())
    }

    /// RFC 3550 receiver statistics of the locked source.
    pub fn receiver_stats(&self) -> Option<&voxline_codecs::ReceiverStats> {
        self.source.as_ref().map(|s| s.stats())
    }

    /// The SSRC the inbound stream is locked to, once a packet was accepted.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.source.as_ref().and_then(|s| s.ssrc())
    }

    /// The locked SSRC and its RFC 3550 report block as of `now` (same timeline as
    /// `on_datagram`); starts a new interval for the fraction lost. `None` before any packet.
    pub fn report_block(&mut self, now: Duration) -> Option<(u32, voxline_codecs::ReportBlock)> {
        self.source.as_mut().and_then(|s| s.report_block(now))
    }

    /// Sets up decoder, jitter buffer and source tracker for audio payload type `pt`.
    fn prepare(&mut self, pt: u8) -> Result<(), MediaError> {
        let Some(format) = self.registry.get(pt) else {
            return Err(MediaError::UnknownPayloadType(pt));
        };
        let format = match format {
            PayloadFormat::Opus { .. } => PayloadFormat::Opus {
                // Decode straight to the caller rate: libopus decodes any Opus packet at any rate.
                pcm_rate: self.caller_rate,
            },
            other => other,
        };
        let decoder = FrameDecoder::new(format)?;
        let rate = decoder.rate();
        self.resampler = if rate != self.caller_rate {
            Some(Resampler::new(rate, self.caller_rate)?)
        } else {
            None
        };
        let mut jc = JitterConfig::for_format(format);
        jc.min_delay = self.jitter_delay.0;
        jc.initial_delay = self.jitter_delay.1;
        jc.max_delay = self.jitter_delay.2;
        self.jitter = Some(JitterBuffer::new(jc)?);
        let mut sc = SourceConfig::new(format.clock_rate());
        sc.untimed_payload_type = self.dtmf.as_ref().map(|(pt, _)| *pt);
        self.source = Some(RtpSource::new(sc));
        self.decoder = Some((pt, decoder));
        Ok(())
    }

    /// Takes in one datagram that arrived at `now` from `from`.
    pub fn on_datagram(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &[u8],
    ) -> PacketVerdict {
        self.counters.datagrams += 1;
        if let Some(remote) = self.remote {
            if remote != from {
                self.counters.wrong_source += 1;
                return PacketVerdict::WrongSource;
            }
        }
        if looks_like_rtcp(datagram) {
            self.counters.rtcp += 1;
            return PacketVerdict::Rtcp;
        }
        let Ok(packet) = RtpPacket::parse(datagram) else {
            self.counters.invalid += 1;
            return PacketVerdict::Invalid;
        };
        let pt = packet.payload_type();
        let format = match self.registry.get(pt) {
            Some(f) => f,
            None => {
                self.counters.invalid += 1;
                return PacketVerdict::Invalid;
            }
        };
        let is_event = matches!(format, PayloadFormat::TelephoneEvent { .. });
        if !is_event
            && self.decoder.as_ref().is_none_or(|(p, _)| *p != pt)
            && self.prepare(pt).is_err()
        {
            self.counters.invalid += 1;
            return PacketVerdict::Invalid;
        }
        let Some(source) = self.source.as_mut() else {
            // Telephone-event before any audio format is known: nothing to order it against.
            self.counters.invalid += 1;
            return PacketVerdict::Invalid;
        };
        match source.receive_at(&packet.header(), now) {
            SourceOutcome::Accepted(_) => {}
            SourceOutcome::ForeignSsrc { .. } => {
                self.counters.foreign_ssrc += 1;
                return PacketVerdict::ForeignSsrc;
            }
            SourceOutcome::SequenceJump { .. } => {
                self.counters.discarded += 1;
                return PacketVerdict::Discarded;
            }
        }
        if self.learn_remote && self.remote.is_none() {
            self.remote = Some(from);
        }
        if is_event {
            let Some((_, rx)) = self.dtmf.as_mut() else {
                self.counters.invalid += 1;
                return PacketVerdict::Invalid;
            };
            return match rx.on_packet(packet.timestamp(), packet.payload(), now) {
                Ok(mut events) => match events.next() {
                    Some(ev) => {
                        self.counters.dtmf_events += 1;
                        PacketVerdict::Dtmf(ev.digit)
                    }
                    None => PacketVerdict::DtmfUpdate,
                },
                Err(_) => {
                    self.counters.invalid += 1;
                    PacketVerdict::Invalid
                }
            };
        }
        let Some(jitter) = self.jitter.as_mut() else {
            self.counters.invalid += 1;
            return PacketVerdict::Invalid;
        };
        match jitter.insert(
            now,
            packet.sequence(),
            packet.timestamp(),
            packet.marker(),
            packet.payload(),
        ) {
            Ok(InsertOutcome::Stored | InsertOutcome::Resynced) => {
                self.counters.audio_packets += 1;
                PacketVerdict::Audio
            }
            Ok(_) => {
                self.counters.discarded += 1;
                PacketVerdict::Discarded
            }
            Err(_) => {
                self.counters.invalid += 1;
                PacketVerdict::Invalid
            }
        }
    }

    /// When the last [`InboundMedia::next_frame`] played a packet: how much earlier the tick
    /// could have come (`JitterBuffer::playout_slack`: within the transit spread and the
    /// buffer's target). `None` otherwise.
    pub fn playout_slack(&self) -> Option<Duration> {
        self.playout_slack
    }

    /// How long the audio of the frame handed out last has been here: the jitter buffer's
    /// delay of its packet above the stream's quickest transit
    /// (`JitterBuffer::playout_delay`), so `now` less this is when the frame arrived (on the
    /// quickest path). Zero before any packet.
    pub fn frame_wait(&self) -> Duration {
        self.jitter
            .as_ref()
            .map_or(Duration::ZERO, |j| j.playout_delay())
    }

    /// A key press whose end packet never came, closed by timeout.
    pub fn poll_dtmf_timeout(&mut self, now: Duration) -> Option<char> {
        let (_, rx) = self.dtmf.as_mut()?;
        let ev = rx.poll_timeout(now)?;
        self.counters.dtmf_events += 1;
        Some(ev.digit)
    }

    /// The caller's frame for the tick at `now`, at the caller rate. Returns `false` before
    /// the stream starts and for the first [`UNDERRUN_GRACE_TICKS`] ticks with nothing
    /// buffered (packets may just be late). A talk-spurt gap the sender signalled (timestamps
    /// jump: DTX, silence suppression) and a longer pause give a silent frame marked
    /// `Generated`, so VAD hears the caller stop; lost packets give concealed frames.
    /// Never allocates.
    pub fn next_frame(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        self.playout_slack = None;
        let (Some(jitter), Some((_, decoder))) = (self.jitter.as_mut(), self.decoder.as_mut())
        else {
            return false;
        };
        let mut played_packet = false;
        // Follow the jitter buffer's contract: pop until the decoder has a frame (bounded).
        let mut guard = 0;
        let mut kept = None;
        while kept.is_none() && decoder.frames_ready() == 0 && guard < 8 {
            guard += 1;
            match jitter.pop(now) {
                Playout::Packet {
                    payload,
                    ticks,
                    adjust,
                    ..
                } => {
                    played_packet = true;
                    match decoder.decode(payload) {
                        Ok(_) => {}
                        Err(_) => {
                            self.counters.decode_errors += 1;
                            let _ = decoder.conceal(ticks.max(1));
                        }
                    }
                    match adjust {
                        PlayoutAdjust::None => {}
                        PlayoutAdjust::Shorten => {
                            if decoder.frames_ready() > 1 {
                                let _ = decoder.next_frame();
                            } else if let Some(frame) = decoder.next_frame() {
                                // A single-frame packet: dropping it is the only way to
                                // shorten, so do it in a pause (then pop again).
                                if frame.level_dbfs() < SHORTEN_QUIET_DBFS {
                                    self.counters.frames_shortened += 1;
                                } else {
                                    kept = Some(frame);
                                }
                            }
                        }
                        PlayoutAdjust::Lengthen => {
                            let frame_ticks = jitter_frame_ticks(decoder.format());
                            let _ = decoder.conceal(frame_ticks);
                        }
                    }
                }
                Playout::Lost { ticks, next, .. } => {
                    if ticks == 0 {
                        continue;
                    }
                    match next {
                        Some(next) => {
                            if decoder.recover_fec(next, ticks).is_err() {
                                let _ = decoder.conceal(ticks);
                            }
                        }
                        None => {
                            let _ = decoder.conceal(ticks);
                        }
                    }
                }
                Playout::Buffering => return false,
                Playout::Silence => {
                    self.underrun_ticks = 0;
                    out.reset(self.caller_rate, FrameOrigin::Generated);
                    return true;
                }
                Playout::Underrun => {
                    self.underrun_ticks = self.underrun_ticks.saturating_add(1);
                    if self.underrun_ticks <= UNDERRUN_GRACE_TICKS {
                        return false;
                    }
                    out.reset(self.caller_rate, FrameOrigin::Generated);
                    return true;
                }
            }
        }
        if played_packet {
            self.playout_slack = Some(jitter.playout_slack());
        }
        self.emit_frame(kept, out)
    }

    /// Starts or stops catching up: while on, [`InboundMedia::next_frame_ahead`] hands out
    /// frames whose packets are already here, ahead of the media clock, and the jitter buffer
    /// makes no adjustment and waits for missing packets until their normal time (see
    /// [`voxline_codecs::jitter::JitterBuffer::set_catch_up`]). For a listener that only
    /// analyses the caller (VAD, STT): it hears the end of a turn as soon as it has arrived,
    /// not a jitter buffer's delay later.
    pub fn set_catch_up(&mut self, on: bool) {
        if let Some(jitter) = self.jitter.as_mut() {
            jitter.set_catch_up(on);
        }
    }

    /// While catching up, one more caller frame when its packet is already here (or a packet
    /// of several frames has one left): decoded now, ahead of the clock. False otherwise. Does
    /// not touch the playout slack the clock aligns to (that is the regular frame's).
    pub fn next_frame_ahead(&mut self, now: Duration, out: &mut AudioFrame) -> bool {
        let (Some(jitter), Some((_, decoder))) = (self.jitter.as_mut(), self.decoder.as_mut())
        else {
            return false;
        };
        if !jitter.is_catching_up() {
            return false;
        }
        if decoder.frames_ready() == 0 {
            match jitter.pop_ahead(now) {
                Some(Playout::Packet { payload, ticks, .. }) => {
                    if decoder.decode(payload).is_err() {
                        self.counters.decode_errors += 1;
                        let _ = decoder.conceal(ticks.max(1));
                    }
                }
                _ => return false,
            }
        }
        let emitted = self.emit_frame(None, out);
        self.counters.frames_ahead += u64::from(emitted);
        emitted
    }

    /// The decoder's next frame (or `kept`, a frame a shortening left in hand) into `out` at
    /// the caller rate; false when there is none.
    fn emit_frame(&mut self, kept: Option<AudioFrame>, out: &mut AudioFrame) -> bool {
        let Some((_, decoder)) = self.decoder.as_mut() else {
            return false;
        };
        // Straight from the decoder into `out` when no resampling is needed; else through the
        // decoder-rate scratch frame. Only the frame's samples are copied, never the full 2 KB.
        let decoded = match self.resampler {
            Some(_) => &mut self.decoded,
            None => &mut *out,
        };
        match kept {
            // A loud frame a shortening left in hand (rare: single-frame packets in speech).
            Some(frame) => {
                if decoded
                    .fill_from(frame.rate(), frame.origin(), frame.samples())
                    .is_err()
                {
                    return false;
                }
            }
            None => {
                if !decoder.next_frame_into(decoded) {
                    return false;
                }
            }
        }
        self.underrun_ticks = 0;
        match decoded.origin() {
            FrameOrigin::Concealed => self.counters.frames_concealed += 1,
            FrameOrigin::Recovered => self.counters.frames_recovered += 1,
            _ => self.counters.frames_decoded += 1,
        }
        match self.resampler.as_mut() {
            Some(r) => r.process_into(&self.decoded, out).is_ok(),
            None => true,
        }
    }
}

fn jitter_frame_ticks(format: PayloadFormat) -> u32 {
    format.ticks_per_frame()
}
