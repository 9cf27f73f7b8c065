//! Adaptive jitter buffer for RTP audio: reorders packets, paces them out one
//! playout unit at a time, and tells the decoder when to conceal a loss.
//!
//! The buffer is sans-IO. It sees packet metadata (sequence number, RTP
//! timestamp, marker bit) and payload bytes, never decodes anything, and takes
//! the current time as an argument (a [`Duration`] since any fixed origin, for
//! example the start of the call), so it runs identically on virtual time.
//! All storage (payload slots, delay statistics) is allocated once in
//! [`JitterBuffer::new`]; inserting and popping never allocate.
//!
//! # The pop contract
//!
//! The endpoint keeps a FIFO of decoded 20 ms frames and plays one every
//! 20 ms. Whenever that FIFO is empty it calls [`JitterBuffer::pop`] with the
//! current time, acts on the result, and calls `pop` again (with the same
//! time) until the FIFO holds at least one frame. Each call hands out one
//! playout unit, and the buffer assumes the audio of that unit starts playing
//! at the `now` it was given:
//!
//! - [`Playout::Packet`]: decode the payload and queue every decoded frame
//!   (two or three for 40/60 ms Opus packets; the packet is handed out once).
//!   `ticks` is the duration the timestamps imply; the decoder's output
//!   length is authoritative. `adjust` asks to play one frame less or one
//!   frame more ([`PlayoutAdjust`]) so the buffer can steer its delay without
//!   gaps; a shortened 20 ms packet yields no audio, so pop again.
//! - [`Playout::Lost`]: the packet did not arrive in time. Conceal `ticks`
//!   clock units, which is 0 when that interval already went out as
//!   `Underrun` (then just pop again); when `next` is present, the following
//!   packet is already here and Opus can recover the lost audio from its
//!   in-band FEC. The next call hands out that following packet itself.
//! - [`Playout::Silence`], [`Playout::Underrun`], [`Playout::Buffering`]: one
//!   frame (`frame_ticks`) of silence or comfort noise. None of these is a
//!   loss: the sender paused (DTX, hold), packets are delayed, or playout has
//!   not started.
//!
//! Every sequence number handed out after playout starts appears exactly once,
//! as either `Packet` or `Lost`, with strictly increasing `ext_seq`. The only
//! exceptions are deliberate jumps: an outage longer than the buffer's span
//! ([`JitterStats::skipped`]) and a resynchronization after a sender restart
//! or a timestamp jump ([`InsertOutcome::Resynced`]), which flushes what was
//! buffered and starts playout afresh.
//!
//! # What is late, lost or a new stream
//!
//! A missing packet is reported `Lost` only once a later packet proves it was
//! sent; if nothing at all is buffered the buffer reports `Underrun`, because
//! the sender may simply have paused. A packet arriving after its slot was
//! handed out is `TooLate`, as is one so late that playing it would push the
//! delay past `max_delay`. A packet far from the stream (sequence number more
//! than 3000 ahead or 100 behind, or a timestamp more than a second ahead of
//! what its arrival time allows) is held as a possible restart and confirmed
//! by the next packet continuing from it (RFC 3550 A.1 probation). Timestamps
//! that jumped backwards show up as half a second of packets all too late to
//! play, which also resynchronizes.
//!
//! # Delay adaptation
//!
//! Each arriving packet yields a relative delay `d = arrival - timestamp`
//! (in microseconds). Over a sliding window of recent packets the buffer keeps
//! the minimum `d` (the fastest path through the network) and the 95th
//! percentile of `d - min` (kept sorted as packets come and go, so each packet
//! costs two binary searches and one short move, not a selection over the
//! window). The target delay is that spread plus half a frame, clamped to
//! `[min_delay, max_delay]`: a packet is handed out at the first pop at least
//! `spread` after its fastest-path arrival, so with no jitter it plays at the
//! first pop after it arrives.
//!
//! # Look-ahead after the first loss
//!
//! Without jitter that leaves no packet of look-ahead: when a packet is lost,
//! the one after it is not there yet when the lost one comes due, so Opus
//! could not rebuild it from in-band FEC. The buffer therefore starts without
//! look-ahead and adds it when the stream shows its first loss: the first
//! underrun while no look-ahead is kept holds the playout point (the pop
//! reports `Underrun` but the missing packet's slot stays due), so the frame of
//! waiting becomes delay instead of a skipped packet; if a later packet then
//! proves the loss, it is reported `Lost` with that packet for FEC, and from
//! then on the target keeps one and a half frames more (40 ms in all on a
//! clean stream), so later single losses find their next packet buffered.
//! A codec without FEC has no use for that look-ahead: with
//! [`JitterConfig::fec_lookahead`] off (G.711, L16) the target never takes it.
//!
//! A packet later than the current target raises the target at once (a peak
//! that decays by 20 ms per second), so the delay grows quickly and shrinks
//! slowly. The buffer moves its actual delay towards the target at talk-spurt
//! starts (shortening or lengthening the silence before them) and otherwise
//! one frame at a time through [`PlayoutAdjust`].
//!
//! # Catching up
//!
//! A listener that is not a loudspeaker (a voice detector deciding that the
//! caller has stopped talking) gains nothing from the delay: what it wants is
//! each frame as soon as it is here. [`JitterBuffer::set_catch_up`] lets it drain
//! the buffer while that matters (the caller's pause at the end of a turn):
//! [`JitterBuffer::pop_ahead`] hands out the next packet early when it has
//! arrived in order, no adjustment is made, and a missing packet is waited for
//! (not skipped, not declared lost) until its normal playout time. Off again, the
//! next packet is placed where a talk-spurt start would be, at the delay the buffer
//! had when catching up began (kept within the dead band around the target): the
//! frames up to it are silence (the caller's pause), so the delay is back in one
//! step, not regrown through concealed frames and left wherever they end.

use std::time::Duration;

use thiserror::Error;

use crate::{PayloadFormat, SeqUnwrapper, TimestampUnwrapper};

/// A sequence number this far ahead of the highest seen is a discontinuity (RFC 3550 A.1).
const MAX_DROPOUT: u64 = 3000;
/// A sequence number this far behind the highest seen is a discontinuity (RFC 3550 A.1).
const MAX_MISORDER: u64 = 100;
/// Packets in the relative-delay window (about 10 s of 20 ms packets).
const DELAY_WINDOW: usize = 512;
/// Samples needed before the measured jitter may pull the target below the initial delay.
const MIN_DELAY_SAMPLES: usize = 50;
/// Percentile of the delay spread the target covers.
const SPREAD_PERCENTILE: usize = 95;
/// How fast the late-packet peak decays, in microseconds per second.
const PEAK_DECAY_US_PER_S: i64 = 20_000;
/// A packet arriving this much earlier than the fastest packet so far means its timestamp jumped.
const EARLY_LIMIT_US: i64 = 1_000_000;
/// Late packets arriving for this long without one usable packet mean the timestamps jumped back.
const LATE_RUN_RESYNC_US: i64 = 500_000;
/// ... and at least this many of them (a burst after a network stall is not a jump).
const LATE_RUN_MIN_PACKETS: u32 = 10;
/// Longest packet the buffer believes in when deriving durations from timestamps (Opus maximum).
const MAX_PACKET_MS: u64 = 240;
/// Pops between two shortened frames while the delay is above target.
const SHORTEN_SPACING: u32 = 10;
/// Pops between two shortened frames while the delay is above `max_delay`.
const FAST_SHORTEN_SPACING: u32 = 2;
/// Pops between two lengthened frames while the delay is below target.
const LENGTHEN_SPACING: u32 = 2;

/// Errors raised by the jitter buffer: bad configuration or an unusable packet.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JitterError {
    /// The configuration is inconsistent; the message names the field.
    #[error("invalid jitter buffer configuration: {0}")]
    InvalidConfig(&'static str),
    /// The payload does not fit a slot; raise `max_payload` if the stream is legitimate.
    #[error("payload of {len} bytes exceeds the {max}-byte slot")]
    PayloadTooLarge {
        /// Bytes offered.
        len: usize,
        /// The configured slot size.
        max: usize,
    },
    /// An empty payload carries no audio (keepalives must not occupy a slot).
    #[error("empty payload")]
    EmptyPayload,
}

/// Parameters of a [`JitterBuffer`], fixed for its lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate in ticks per second (48 000 for Opus, 8 000 for G.711).
    pub clock_rate: u32,
    /// RTP ticks in one playout frame (20 ms); the unit of silence and adjustments.
    pub frame_ticks: u32,
    /// The target delay never goes below this.
    pub min_delay: Duration,
    /// The target delay never goes above this; later packets are dropped as too late.
    pub max_delay: Duration,
    /// Target delay until enough packets have been measured.
    pub initial_delay: Duration,
    /// Packet slots, i.e. the span of sequence numbers the buffer can hold.
    pub capacity: usize,
    /// Largest payload accepted, in bytes. Each slot holds up to 320 bytes itself; a larger
    /// payload takes a spill entry of this size, reserved for every slot but written only when
    /// used.
    pub max_payload: usize,
    /// After the stream's first loss, keep a packet of look-ahead so that a lost packet's
    /// successor is buffered when it comes due (Opus rebuilds the lost audio from its in-band
    /// FEC). Only worth its 30 ms for a codec with FEC: [`JitterConfig::for_format`] sets it for
    /// Opus alone, so a G.711 line never holds look-ahead it cannot use.
    pub fec_lookahead: bool,
}

impl JitterConfig {
    /// Defaults for a stream with the given RTP clock: 20 ms frames, delay
    /// 10..200 ms starting at 10 ms (a packet plays at the first pop after it
    /// arrives until jitter or a loss asks for more), 64 slots, payloads up to 1500 bytes.
    pub const fn new(clock_rate: u32) -> Self {
        JitterConfig {
            clock_rate,
            frame_ticks: clock_rate / 50,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            initial_delay: Duration::from_millis(10),
            capacity: 64,
            max_payload: 1500,
            fec_lookahead: true,
        }
    }

    /// Defaults for a negotiated payload format: its RTP clock rate, and look-ahead after a
    /// loss only for a format with in-band FEC (Opus).
    pub const fn for_format(format: PayloadFormat) -> Self {
        let mut cfg = JitterConfig::new(format.clock_rate());
        cfg.fec_lookahead = matches!(format, PayloadFormat::Opus { .. });
        cfg
    }

    /// Checks that the fields are consistent, naming the first bad one.
    pub fn validate(&self) -> Result<(), JitterError> {
        if self.clock_rate == 0 || self.clock_rate > 1_000_000 {
            return Err(JitterError::InvalidConfig(
                "clock_rate must be 1..=1_000_000",
            ));
        }
        if self.frame_ticks == 0 || self.frame_ticks > self.clock_rate {
            return Err(JitterError::InvalidConfig(
                "frame_ticks must be 1..=clock_rate (at most one second)",
            ));
        }
        if self.min_delay > self.initial_delay || self.initial_delay > self.max_delay {
            return Err(JitterError::InvalidConfig(
                "delays must satisfy min_delay <= initial_delay <= max_delay",
            ));
        }
        if self.max_delay > Duration::from_secs(10) {
            return Err(JitterError::InvalidConfig("max_delay must be at most 10 s"));
        }
        if self.capacity < 2 || self.capacity as u64 > MAX_DROPOUT {
            return Err(JitterError::InvalidConfig("capacity must be 2..=3000"));
        }
        if self.max_payload == 0 || self.max_payload > 65_536 {
            return Err(JitterError::InvalidConfig("max_payload must be 1..=65536"));
        }
        Ok(())
    }
}

impl Default for JitterConfig {
    /// Opus defaults (48 kHz RTP clock).
    fn default() -> Self {
        JitterConfig::new(48_000)
    }
}

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsertOutcome {
    /// Buffered for playout.
    Stored,
    /// Already buffered or already played; dropped.
    Duplicate,
    /// Its playout time has passed (already concealed, or too late to absorb); dropped.
    TooLate,
    /// Beyond the buffer's span while older packets still wait; dropped (the newest
    /// packet is the one dropped, so buffered audio stays contiguous).
    Overflow,
    /// Far from the stream (sequence jump or timestamp jump); held, not played. If
    /// the next packet continues from it, the buffer resynchronizes to the new stream.
    Discontinuity,
    /// Confirmed a sender restart: the buffer was flushed and restarted on this
    /// packet and the one held before it.
    Resynced,
}

/// How the caller should bend the duration of a [`Playout::Packet`] so the
/// buffer reaches its target delay without inserting gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PlayoutAdjust {
    /// Play the packet's audio as decoded.
    #[default]
    None,
    /// Play one frame less: drop (or time-compress away) one 20 ms frame of the
    /// decoded audio. Always decode the packet, to keep decoder state continuous.
    Shorten,
    /// Play one frame more: time-stretch, or append one concealment frame.
    Lengthen,
}

/// What to play next; see the module docs for the calling contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// Playout has not started: no packet yet, or the initial fill to the target delay.
    Buffering,
    /// The next packet is due: decode it and queue `ticks` worth of audio.
    Packet {
        /// The payload bytes, exactly as inserted.
        payload: &'a [u8],
        /// The RTP sequence number.
        seq: u16,
        /// The extended sequence number; strictly increasing over all `Packet`/`Lost`.
        ext_seq: u64,
        /// The RTP timestamp.
        ts: u32,
        /// RTP ticks this packet covers: the distance to the next packet's timestamp,
        /// or the stream's usual packet duration when that is not known.
        ticks: u32,
        /// The RTP marker bit (start of a talk spurt).
        marker: bool,
        /// Whether to play this packet one frame shorter or longer.
        adjust: PlayoutAdjust,
    },
    /// The packet with this sequence number is missing and its playout time has come.
    Lost {
        /// The RTP sequence number of the lost packet.
        seq: u16,
        /// Its extended sequence number; strictly increasing over all `Packet`/`Lost`.
        ext_seq: u64,
        /// Its estimated RTP timestamp.
        ts: u32,
        /// RTP ticks to conceal (0 when that interval already passed as `Underrun`).
        ticks: u32,
        /// The payload of the packet right after it, when already buffered (for FEC).
        next: Option<&'a [u8]>,
    },
    /// One frame of silence: the next packet starts later (a talk-spurt gap) or
    /// the buffer is waiting there to gain delay. Not a loss.
    Silence,
    /// One frame with nothing buffered: the sender paused (DTX, hold) or packets
    /// are delayed. Not a loss. Until the stream has lost a packet, the first
    /// underrun of a run keeps the missing slot due, so the next pop may still
    /// hand it out (late) or report it `Lost` with FEC (see "Look-ahead after
    /// the first loss" in the module docs).
    Underrun,
}

/// Counters and gauges of a [`JitterBuffer`], for RTCP reports and call metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets offered to `insert` that had a usable payload.
    pub received: u64,
    /// Packets handed out as [`Playout::Packet`].
    pub played: u64,
    /// Packets dropped because they were already buffered or played.
    pub duplicates: u64,
    /// Packets dropped because their playout time had passed.
    pub too_late: u64,
    /// Packets reported as [`Playout::Lost`] (to be concealed).
    pub lost: u64,
    /// `Lost` reports that carried the next packet for FEC recovery.
    pub fec_available: u64,
    /// Packets dropped because the buffer's span was full.
    pub overflow: u64,
    /// Packets held as a possible stream restart ([`InsertOutcome::Discontinuity`]).
    pub discontinuities: u64,
    /// Times the buffer restarted on a new stream (sender restart or timestamp jump).
    pub resyncs: u64,
    /// Buffered packets discarded by a resynchronization.
    pub flushed: u64,
    /// Sequence numbers jumped over after an outage longer than the buffer's span.
    pub skipped: u64,
    /// Frames of [`Playout::Underrun`].
    pub underrun_frames: u64,
    /// Frames of [`Playout::Silence`].
    pub silence_frames: u64,
    /// Packets played one frame shorter to reduce the delay.
    pub shortened: u64,
    /// Packets played one frame longer to increase the delay.
    pub lengthened: u64,
    /// Packets handed out ahead of their turn while catching up ([`JitterBuffer::pop_ahead`]).
    pub ahead: u64,
    /// The current target delay.
    pub target_delay: Duration,
    /// The delay measured at the last packet handed out (above the fastest network path).
    pub playout_delay: Duration,
    /// Packets currently buffered.
    pub buffered_packets: usize,
    /// Audio currently buffered ahead of the playout point.
    pub buffered_duration: Duration,
}

/// Metadata of one buffered packet; its payload lives in the shared slab.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    occupied: bool,
    ext_seq: u64,
    ext_ts: u64,
    marker: bool,
    len: usize,
}

/// A packet held while the buffer waits to see whether the stream restarted.
#[derive(Clone, Copy, Debug)]
struct Probe {
    seq: u16,
    ts: u32,
    marker: bool,
    len: usize,
    arrival_us: i64,
}

/// Sliding window of relative delays with its minimum and high-percentile spread.
///
/// The window is kept twice: in arrival order (a ring, to know which sample leaves) and
/// sorted (to read the minimum and the percentile by index). A push removes the oldest
/// sample from the sorted copy and inserts the new one with a single move of the samples
/// between the two positions, so it costs two binary searches and a short copy instead of a
/// selection over the whole window, and allocates nothing.
///
/// Samples are kept as 32-bit offsets from the first delay after a clear: half the memory
/// and half the cache lines a push touches of 64-bit delays (the window is the largest part
/// of a buffer and is cold at every packet once a process runs hundreds of calls). An offset
/// spans ±35 minutes, far more than any transit spread or hours of clock drift; a delay
/// beyond it counts as that far.
#[derive(Debug)]
struct DelayWindow {
    samples: Vec<i32>,
    sorted: Vec<i32>,
    base: i64,
    len: usize,
    next: usize,
    min: i64,
    spread: i64,
}

impl DelayWindow {
    fn new() -> Self {
        DelayWindow {
            samples: vec![0; DELAY_WINDOW],
            sorted: vec![0; DELAY_WINDOW],
            base: 0,
            len: 0,
            next: 0,
            min: 0,
            spread: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
        self.min = 0;
        self.spread = 0;
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, d: i64) {
        if self.len == 0 {
            self.base = d;
        }
        let d = d
            .saturating_sub(self.base)
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        if self.len == DELAY_WINDOW {
            // Full: the oldest sample leaves. Move the samples between its place and the new
            // sample's place by one, then write the new sample into the gap.
            let old = self.samples[self.next];
            let sorted = &mut self.sorted[..];
            let from = sorted.partition_point(|&x| x < old);
            let to = sorted.partition_point(|&x| x <= d);
            if to > from {
                sorted.copy_within(from + 1..to, from);
                sorted[to - 1] = d;
            } else {
                sorted.copy_within(to..from, to + 1);
                sorted[to] = d;
            }
        } else {
            let sorted = &mut self.sorted[..=self.len];
            let to = sorted[..self.len].partition_point(|&x| x <= d);
            sorted.copy_within(to..self.len, to + 1);
            sorted[to] = d;
            self.len += 1;
        }
        self.samples[self.next] = d;
        self.next = (self.next + 1) % DELAY_WINDOW;
        let low = self.sorted[0];
        self.min = self.base.saturating_add(i64::from(low));
        let rank = (self.len - 1) * SPREAD_PERCENTILE / 100;
        self.spread = (i64::from(self.sorted[rank]) - i64::from(low)).max(0);
    }
}

/// Room each slot has inline: 40 ms of G.711 or 20 ms of Opus at up to 128 kbit/s.
const INLINE_PAYLOAD: usize = 320;
/// No spill entry.
const NO_SPILL: u16 = u16::MAX;

/// Where the buffered payloads live. Each slot has [`INLINE_PAYLOAD`] bytes of its own; a
/// larger payload goes whole to a spill entry of `max_payload` bytes, taken when the slot is
/// written and given back when the slot is next written. The spill pool's memory is reserved up
/// front but written (and so made resident) only as far as entries are used — most recently
/// returned first, so as many as there are large packets among the last `capacity` — and a
/// buffer of ordinary packets keeps to its inline part: 20 KiB instead of 94 KiB for 64 slots
/// of 1 500 bytes, in every call. Nothing is allocated after `new`.
#[derive(Debug)]
struct PayloadStore {
    inline: usize,
    max: usize,
    dense: Vec<u8>,
    spill: Vec<u8>,
    free: Vec<u16>,
    entry: Vec<u16>,
}

impl PayloadStore {
    fn new(capacity: usize, max: usize) -> Self {
        let inline = max.min(INLINE_PAYLOAD);
        PayloadStore {
            inline,
            max,
            dense: vec![0; capacity * inline],
            spill: Vec::with_capacity(if max > inline { capacity * max } else { 0 }),
            // Entry 0 on top: a stream's first large packets use the lowest entries.
            free: (0..capacity as u16).rev().collect(),
            entry: vec![NO_SPILL; capacity],
        }
    }

    /// Stores `payload` (at most `max` bytes) as slot `slot`'s, replacing what it held.
    fn put(&mut self, slot: usize, payload: &[u8]) {
        let held = std::mem::replace(&mut self.entry[slot], NO_SPILL);
        if held != NO_SPILL {
            self.free.push(held);
        }
        if payload.len() <= self.inline {
            let start = slot * self.inline;
            self.dense[start..start + payload.len()].copy_from_slice(payload);
            return;
        }
        // A slot holds at most one entry and gave its own back above, so one is free.
        let Some(e) = self.free.pop() else {
            unreachable!("a spill entry per slot");
        };
        let start = usize::from(e) * self.max;
        if self.spill.len() < start + self.max {
            // Within the reserved capacity: no allocation, and only this entry's pages are
            // written for the first time.
            self.spill.resize(start + self.max, 0);
        }
        self.spill[start..start + payload.len()].copy_from_slice(payload);
        self.entry[slot] = e;
    }

    /// The `len` bytes last stored as slot `slot`'s.
    fn get(&self, slot: usize, len: usize) -> &[u8] {
        match self.entry[slot] {
            NO_SPILL => &self.dense[slot * self.inline..slot * self.inline + len],
            e => {
                let start = usize::from(e) * self.max;
                &self.spill[start..start + len]
            }
        }
    }
}

/// State of playout: before the first packet is due, or running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Buffering,
    Playing,
}

/// The adaptive jitter buffer for one RTP audio stream (one SSRC).
#[derive(Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frame_us: i64,
    half_frame_ticks: u64,
    max_packet_ticks: u64,
    min_us: i64,
    max_us: i64,
    initial_us: i64,

    slots: Vec<Slot>,
    payloads: PayloadStore,
    probe: Option<Probe>,
    probe_payload: Vec<u8>,

    seq_unwrap: SeqUnwrapper,
    ts_unwrap: TimestampUnwrapper,
    seq_offset: u64,
    epoch_ts: u64,

    state: State,
    next_seq: u64,
    cursor: u64,
    buffered: usize,
    played_mask: u64,
    last_played: Option<(u64, u64)>,
    nominal_ticks: u64,
    ticks_candidate: u64,
    ticks_learned: bool,

    last_now_us: i64,
    last_pop_us: i64,
    delays: DelayWindow,
    peak_us: i64,
    peak_at_us: i64,
    target_us: i64,
    playout_delay_us: i64,
    pops_since_adjust: u32,
    late_run: Option<(i64, u32)>,
    /// The stream has lost a packet: the target keeps one and a half frames of look-ahead.
    lookahead: bool,
    /// The last pop was an underrun (a run of them holds the playout point only once).
    underrun_run: bool,
    /// The consumer is draining the buffer ([`JitterBuffer::set_catch_up`]).
    catch_up: bool,
    /// Catching up has just ended: the next packet is placed at the delay held before it.
    resuming: bool,
    /// The playout delay when catching up began, to resume at.
    held_delay_us: i64,

    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer with all its storage allocated up front, or an error naming a bad field.
    pub fn new(cfg: JitterConfig) -> Result<Self, JitterError> {
        cfg.validate()?;
        let to_us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let frame_ticks = u64::from(cfg.frame_ticks);
        let mut buffer = JitterBuffer {
            cfg,
            frame_us: (frame_ticks * 1_000_000 / u64::from(cfg.clock_rate)) as i64,
            half_frame_ticks: frame_ticks / 2,
            max_packet_ticks: (u64::from(cfg.clock_rate) * MAX_PACKET_MS / 1000).max(frame_ticks),
            min_us: to_us(cfg.min_delay),
            max_us: to_us(cfg.max_delay),
            initial_us: to_us(cfg.initial_delay),
            slots: vec![Slot::default(); cfg.capacity],
            payloads: PayloadStore::new(cfg.capacity, cfg.max_payload),
            probe: None,
            probe_payload: vec![0; cfg.max_payload],
            seq_unwrap: SeqUnwrapper::new(),
            ts_unwrap: TimestampUnwrapper::new(),
            seq_offset: 0,
            epoch_ts: 0,
            state: State::Buffering,
            next_seq: 0,
            cursor: 0,
            buffered: 0,
            played_mask: 0,
            last_played: None,
            nominal_ticks: frame_ticks,
            ticks_candidate: frame_ticks,
            ticks_learned: false,
            last_now_us: 0,
            last_pop_us: 0,
            delays: DelayWindow::new(),
            peak_us: 0,
            peak_at_us: 0,
            target_us: 0,
            playout_delay_us: 0,
            pops_since_adjust: 0,
            late_run: None,
            lookahead: false,
            underrun_run: false,
            catch_up: false,
            resuming: false,
            held_delay_us: 0,
            stats: JitterStats::default(),
        };
        buffer.target_us = buffer.initial_us;
        Ok(buffer)
    }

    /// The configuration this buffer was built with.
    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// How long the packet played last waited beyond the stream's quickest transit (its arrival
    /// relative to the earliest a packet of its timestamp has arrived, up to its playout): the
    /// slack a media clock could take off by ticking earlier.
    pub fn playout_delay(&self) -> Duration {
        us_to_duration(self.playout_delay_us)
    }

    /// The spread of the packets' transit times above the quickest (the high percentile the
    /// target covers): how much later than the quickest a packet may still come.
    pub fn transit_spread(&self) -> Duration {
        us_to_duration(self.delays.spread)
    }

    /// How much earlier the ticks could come without a packet at the edge of the transit
    /// spread missing its tick and without the delay falling below the target's dead band
    /// (where the buffer would lengthen it again): the playout delay of the last packet less
    /// the larger of the spread and the target less half a frame. Zero while the buffer keeps
    /// look-ahead on purpose.
    pub fn playout_slack(&self) -> Duration {
        let floor = self
            .delays
            .spread
            .max(self.target_us.saturating_sub(self.frame_us / 2));
        us_to_duration(self.playout_delay_us.saturating_sub(floor).max(0))
    }

    /// The delay the buffer currently aims for.
    pub fn target_delay(&self) -> Duration {
        us_to_duration(self.target_us)
    }

    /// True once the stream has lost a packet, so the target keeps a packet of look-ahead for
    /// FEC (see the module docs; never without [`JitterConfig::fec_lookahead`]).
    pub fn keeps_lookahead(&self) -> bool {
        self.lookahead
    }

    /// True once playout has started (after the initial fill).
    pub fn is_playing(&self) -> bool {
        self.state == State::Playing
    }

    /// Packets currently buffered.
    pub fn buffered_packets(&self) -> usize {
        self.buffered
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        stats.target_delay = us_to_duration(self.target_us);
        stats.playout_delay = us_to_duration(self.playout_delay_us);
        stats.buffered_packets = self.buffered;
        stats.buffered_duration = Duration::ZERO;
        if self.state == State::Playing {
            let end = self
                .slots
                .iter()
                .filter(|s| s.occupied)
                .map(|s| s.ext_ts.saturating_add(self.nominal_ticks))
                .max();
            if let Some(end) = end {
                let ahead = end.saturating_sub(self.cursor);
                stats.buffered_duration = us_to_duration(self.ticks_to_us(i128::from(ahead)));
            }
        }
        stats
    }

    /// Forgets the stream (buffered packets, timing, statistics) but keeps the storage.
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            *slot = Slot::default();
        }
        self.probe = None;
        self.seq_unwrap = SeqUnwrapper::new();
        self.ts_unwrap = TimestampUnwrapper::new();
        self.seq_offset = 0;
        self.epoch_ts = 0;
        self.state = State::Buffering;
        self.next_seq = 0;
        self.cursor = 0;
        self.buffered = 0;
        self.played_mask = 0;
        self.last_played = None;
        self.nominal_ticks = u64::from(self.cfg.frame_ticks);
        self.ticks_candidate = self.nominal_ticks;
        self.ticks_learned = false;
        self.last_now_us = 0;
        self.last_pop_us = 0;
        self.delays.clear();
        self.peak_us = 0;
        self.peak_at_us = 0;
        self.target_us = self.initial_us;
        self.playout_delay_us = 0;
        self.pops_since_adjust = 0;
        self.late_run = None;
        self.lookahead = false;
        self.underrun_run = false;
        self.resuming = false;
        self.held_delay_us = 0;
        self.stats = JitterStats::default();
    }

    /// Offers one received packet. `now` is the arrival time on the same clock as
    /// [`pop`](Self::pop). The payload is copied; nothing is allocated.
    pub fn insert(
        &mut self,
        now: Duration,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<InsertOutcome, JitterError> {
        if payload.is_empty() {
            return Err(JitterError::EmptyPayload);
        }
        if payload.len() > self.cfg.max_payload {
            return Err(JitterError::PayloadTooLarge {
                len: payload.len(),
                max: self.cfg.max_payload,
            });
        }
        let now_us = self.advance_clock(now);
        self.stats.received += 1;
        self.refresh_target(now_us);
        Ok(self.accept(now_us, seq, ts, marker, payload))
    }

    /// Returns what to play next; call it whenever the decoded-frame FIFO is empty
    /// (see the module docs). `now` is the current time on the `insert` clock.
    pub fn pop(&mut self, now: Duration) -> Playout<'_> {
        let now_us = self.advance_clock(now);
        self.last_pop_us = now_us;
        self.pops_since_adjust = self.pops_since_adjust.saturating_add(1);
        self.refresh_target(now_us);
        match self.state {
            State::Buffering => self.pop_buffering(now_us),
            State::Playing => self.pop_playing(now_us),
        }
    }

    /// Starts or stops catching up (see "Catching up" in the module docs). While on, `pop`
    /// makes no [`PlayoutAdjust`] and waits for a missing packet until its normal playout
    /// time instead of moving past it, and [`JitterBuffer::pop_ahead`] may hand out packets
    /// early. Turning it off places the next packet at the delay the buffer had when catching
    /// up began (within the dead band around the current target), as a talk-spurt start is
    /// placed: the delay is back in one step of silence, not regrown through concealed frames.
    pub fn set_catch_up(&mut self, on: bool) {
        if on && !self.catch_up {
            self.held_delay_us = self.playout_delay_us;
        }
        self.resuming = self.catch_up && !on && self.state == State::Playing;
        self.catch_up = on;
    }

    /// True while catching up.
    pub fn is_catching_up(&self) -> bool {
        self.catch_up
    }

    /// While catching up, the next packet when it is already here and continues the talk-spurt,
    /// handed out now, ahead of its turn ([`Playout::Packet`] without adjustment); `None`
    /// otherwise, and always when not catching up. Decode it as any packet; the next `pop`
    /// or `pop_ahead` continues after it.
    pub fn pop_ahead(&mut self, now: Duration) -> Option<Playout<'_>> {
        if !self.catch_up || self.state != State::Playing {
            return None;
        }
        let head = self.stored(self.next_seq)?;
        if self.is_spurt_start(&head) {
            return None;
        }
        let now_us = self.advance_clock(now);
        self.last_pop_us = now_us;
        self.underrun_run = false;
        self.cursor = head.ext_ts;
        self.measure_delay(now_us, head.ext_ts);
        self.stats.ahead += 1;
        Some(self.play_head(PlayoutAdjust::None))
    }

    // ----- insertion -----

    fn accept(
        &mut self,
        now_us: i64,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> InsertOutcome {
        let highest = self
            .seq_unwrap
            .highest()
            .map(|h| h.saturating_add(self.seq_offset));
        if highest.is_none() {
            self.epoch_ts = self.ts_unwrap.peek(ts);
        }
        let ext = self.seq_unwrap.peek(seq).saturating_add(self.seq_offset);
        let ext_ts = self.ts_unwrap.peek(ts);
        let d = now_us.saturating_sub(self.ts_us(ext_ts));

        let far_seq = highest.is_some_and(|h| {
            ext > h.saturating_add(MAX_DROPOUT) || ext.saturating_add(MAX_MISORDER) < h
        });
        let early = !self.delays.is_empty() && d < self.delays.min.saturating_sub(EARLY_LIMIT_US);
        if far_seq || early {
            return self.probation(now_us, seq, ts, marker, payload);
        }

        if self.is_duplicate(ext) {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }

        self.seq_unwrap.unwrap(seq);
        self.ts_unwrap.unwrap(ts);
        self.record_delay(now_us, d);

        let cap = self.cfg.capacity as u64;
        match self.state {
            State::Buffering => {
                if self.buffered == 0 {
                    self.next_seq = ext;
                } else if ext < self.next_seq {
                    let top = highest.unwrap_or(ext);
                    if top.saturating_sub(ext) >= cap {
                        self.stats.too_late += 1;
                        return InsertOutcome::TooLate;
                    }
                    self.next_seq = ext;
                } else if ext >= self.next_seq.saturating_add(cap) {
                    self.stats.overflow += 1;
                    return InsertOutcome::Overflow;
                }
            }
            State::Playing => {
                if ext < self.next_seq {
                    self.stats.too_late += 1;
                    return InsertOutcome::TooLate;
                }
                if ext >= self.next_seq.saturating_add(cap) {
                    if self.buffered > 0 {
                        self.stats.overflow += 1;
                        return InsertOutcome::Overflow;
                    }
                    // An outage longer than the buffer's span: jump to the new packet.
                    self.stats.skipped += ext - self.next_seq;
                    self.played_mask = 0;
                    self.next_seq = ext;
                }
                if self.too_late_to_absorb(now_us, ext_ts) {
                    return self.late_run(now_us, seq, ts, marker, payload);
                }
            }
        }
        self.late_run = None;
        self.probe = None;
        self.store(ext, ext_ts, marker, payload);
        InsertOutcome::Stored
    }

    /// True when `ext` is buffered or was recently handed out as a packet.
    fn is_duplicate(&self, ext: u64) -> bool {
        if ext >= self.next_seq || self.state == State::Buffering {
            let slot = &self.slots[self.slot_index(ext)];
            return slot.occupied && slot.ext_seq == ext;
        }
        let back = self.next_seq - 1 - ext;
        back < 64 && self.played_mask & (1u64 << back) != 0
    }

    /// A packet whose timestamp is behind the playout point by more than the
    /// delay headroom left below `max_delay` cannot be played without exceeding it.
    fn too_late_to_absorb(&self, now_us: i64, ext_ts: u64) -> bool {
        let playing_at = self
            .ts_us(self.cursor)
            .saturating_add(now_us.saturating_sub(self.last_pop_us));
        let lateness = playing_at.saturating_sub(self.ts_us(ext_ts));
        lateness > 0 && self.playout_delay_us.saturating_add(lateness) > self.max_us
    }

    /// Tracks a run of packets too late to play; a long one means the timestamps jumped back.
    fn late_run(
        &mut self,
        now_us: i64,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> InsertOutcome {
        let (start, count) = self.late_run.unwrap_or((now_us, 0));
        let count = count.saturating_add(1);
        if count >= LATE_RUN_MIN_PACKETS && now_us.saturating_sub(start) >= LATE_RUN_RESYNC_US {
            self.resync();
            self.accept(now_us, seq, ts, marker, payload);
            return InsertOutcome::Resynced;
        }
        self.late_run = Some((start, count));
        self.stats.too_late += 1;
        InsertOutcome::TooLate
    }

    /// Holds a packet that does not fit the stream; a second one continuing from it
    /// confirms a restart (RFC 3550 A.1 probation) and resynchronizes the buffer.
    fn probation(
        &mut self,
        now_us: i64,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> InsertOutcome {
        if let Some(probe) = self.probe {
            let ts_step = u64::from(ts.wrapping_sub(probe.ts));
            let max_step = u64::from(self.cfg.clock_rate);
            if seq == probe.seq.wrapping_add(1) && ts_step <= max_step {
                self.resync();
                let held = std::mem::take(&mut self.probe_payload);
                let len = probe.len.min(held.len());
                self.accept(
                    probe.arrival_us,
                    probe.seq,
                    probe.ts,
                    probe.marker,
                    &held[..len],
                );
                self.probe_payload = held;
                self.accept(now_us, seq, ts, marker, payload);
                return InsertOutcome::Resynced;
            }
        }
        self.stats.discontinuities += 1;
        let Some(held) = self.probe_payload.get_mut(..payload.len()) else {
            self.probe = None;
            return InsertOutcome::Discontinuity;
        };
        held.copy_from_slice(payload);
        self.probe = Some(Probe {
            seq,
            ts,
            marker,
            len: payload.len(),
            arrival_us: now_us,
        });
        InsertOutcome::Discontinuity
    }

    /// Drops everything buffered and starts a new epoch whose extended sequence
    /// numbers all lie above every one handed out before.
    fn resync(&mut self) {
        for slot in &mut self.slots {
            slot.occupied = false;
        }
        self.stats.flushed += self.buffered as u64;
        self.stats.resyncs += 1;
        self.buffered = 0;
        let top = self
            .seq_unwrap
            .highest()
            .map_or(0, |h| h.saturating_add(self.seq_offset));
        self.seq_offset = top.max(self.next_seq).saturating_add(1);
        self.seq_unwrap = SeqUnwrapper::new();
        self.ts_unwrap = TimestampUnwrapper::new();
        self.state = State::Buffering;
        self.played_mask = 0;
        self.last_played = None;
        self.delays.clear();
        self.probe = None;
        self.late_run = None;
        self.playout_delay_us = 0;
        self.peak_us = 0;
        self.underrun_run = false;
        // The new stream is placed by buffering; a delay held from the old one means nothing.
        self.resuming = false;
        self.held_delay_us = 0;
    }

    fn store(&mut self, ext: u64, ext_ts: u64, marker: bool, payload: &[u8]) {
        let i = self.slot_index(ext);
        self.payloads.put(i, payload);
        self.slots[i] = Slot {
            occupied: true,
            ext_seq: ext,
            ext_ts,
            marker,
            len: payload.len(),
        };
        self.buffered += 1;
        self.learn_packet_ticks(ext, ext_ts, marker);
    }

    /// Learns the stream's usual packet duration from consecutive timestamps
    /// (a value must repeat before it is believed, so a short pause does not count).
    fn learn_packet_ticks(&mut self, ext: u64, ext_ts: u64, marker: bool) {
        let prev = self
            .stored(ext.wrapping_sub(1))
            .map(|s| s.ext_ts)
            .or_else(|| {
                self.last_played
                    .filter(|&(seq, _)| seq.wrapping_add(1) == ext)
                    .map(|(_, ts)| ts)
            });
        if let Some(prev_ts) = prev.filter(|_| !marker) {
            self.observe_step(ext_ts.wrapping_sub(prev_ts));
        }
        if let Some(next) = self.stored(ext.wrapping_add(1)).filter(|s| !s.marker) {
            self.observe_step(next.ext_ts.wrapping_sub(ext_ts));
        }
    }

    fn observe_step(&mut self, step: u64) {
        if step == 0 || step > self.max_packet_ticks {
            return;
        }
        // The first step is believed at once; later ones must repeat.
        if step == self.ticks_candidate || !self.ticks_learned {
            self.nominal_ticks = step;
            self.ticks_learned = true;
        }
        self.ticks_candidate = step;
    }

    fn record_delay(&mut self, now_us: i64, d: i64) {
        self.delays.push(d);
        let spread = d.saturating_sub(self.delays.min);
        if spread > self.target_us {
            // Late for the current target: cover it now, decay slowly.
            let peak = spread.saturating_add(self.frame_us).min(self.max_us);
            self.peak_us = self.peak_us.max(peak);
            self.peak_at_us = now_us;
        }
        self.refresh_target(now_us);
    }

    fn refresh_target(&mut self, now_us: i64) {
        let elapsed = now_us.saturating_sub(self.peak_at_us);
        if elapsed > 0 && self.peak_us > 0 {
            let decay = elapsed.saturating_mul(PEAK_DECAY_US_PER_S) / 1_000_000;
            if decay > 0 {
                self.peak_us = self.peak_us.saturating_sub(decay).max(0);
                self.peak_at_us = now_us;
            }
        } else if elapsed > 0 {
            self.peak_at_us = now_us;
        }
        let lookahead = if self.lookahead {
            self.frame_us.saturating_add(self.half_frame_us())
        } else {
            0
        };
        let measured = self
            .delays
            .spread
            .saturating_add(self.half_frame_us())
            .saturating_add(lookahead);
        let base = if self.delays.len < MIN_DELAY_SAMPLES {
            measured.max(self.initial_us)
        } else {
            measured
        };
        self.target_us = base.max(self.peak_us).clamp(self.min_us, self.max_us);
    }

    // ----- playout -----

    fn pop_buffering(&mut self, now_us: i64) -> Playout<'_> {
        let Some(head) = self.stored(self.next_seq) else {
            return Playout::Buffering;
        };
        if now_us.saturating_add(self.half_frame_us()) < self.due_us(head.ext_ts) {
            return Playout::Buffering;
        }
        self.state = State::Playing;
        self.cursor = head.ext_ts;
        self.played_mask = 0;
        self.measure_delay(now_us, head.ext_ts);
        self.play_head(PlayoutAdjust::None)
    }

    fn pop_playing(&mut self, now_us: i64) -> Playout<'_> {
        let half = self.half_frame_ticks;
        if let Some(head) = self.stored(self.next_seq) {
            self.underrun_run = false;
            let t = head.ext_ts;
            if self.resuming || self.is_spurt_start(&head) {
                // A talk-spurt boundary: place the spurt at the target delay. The end of
                // catching up: at the delay held before it.
                let due = match self.resuming {
                    true => self.resume_due_us(t),
                    false => self.due_us(t),
                };
                if now_us.saturating_add(self.half_frame_us()) < due {
                    self.stats.silence_frames += 1;
                    return Playout::Silence;
                }
                self.resuming = false;
                self.cursor = t;
                self.measure_delay(now_us, t);
                return self.play_head(PlayoutAdjust::None);
            }
            self.cursor = t;
            let delay = self.measure_delay(now_us, t);
            let adjust = self.choose_adjust(delay);
            return self.play_head(adjust);
        }

        let Some(later) = self.first_stored_after(self.next_seq) else {
            // Without look-ahead, the first underrun of a run waits: the slot stays due, so a
            // packet that is late or lost (FEC from the next one) costs a frame of delay, not
            // a frame of audio. Later underruns of the run move on (a pause, an outage).
            // Catching up (or just done), the consumer is ahead of the network: the slot stays due.
            if (self.lookahead || self.underrun_run) && !self.catch_up && !self.resuming {
                self.cursor = self.cursor.saturating_add(u64::from(self.cfg.frame_ticks));
            }
            self.underrun_run = true;
            self.stats.underrun_frames += 1;
            return Playout::Underrun;
        };
        self.underrun_run = false;

        // The head is missing but a later packet proves it was sent.
        let gap = later.ext_seq - self.next_seq;
        let est = later
            .ext_ts
            .saturating_sub(gap.saturating_mul(self.nominal_ticks));
        if (self.catch_up || self.resuming)
            && now_us.saturating_add(self.half_frame_us()) < self.due_us(est)
        {
            // Catching up (or just done), a later packet does not prove a loss yet: the
            // missing one may be reordered. It gets until its normal playout time.
            self.underrun_run = true;
            self.stats.underrun_frames += 1;
            return Playout::Underrun;
        }
        let start = if est > self.cursor.saturating_add(half) {
            if now_us.saturating_add(self.half_frame_us()) < self.due_us(est) {
                self.stats.silence_frames += 1;
                return Playout::Silence;
            }
            est
        } else {
            self.cursor
        };
        self.resuming = false;
        let end = if gap == 1 {
            later.ext_ts
        } else {
            est.saturating_add(self.nominal_ticks).min(later.ext_ts)
        };
        let ticks = end.saturating_sub(start).min(u64::from(u32::MAX)) as u32;
        self.cursor = self.cursor.max(end);
        let ext_seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.played_mask <<= 1;
        self.stats.lost += 1;
        if !self.lookahead && self.cfg.fec_lookahead {
            self.lookahead = true;
            self.refresh_target(now_us);
        }
        let next = if gap == 1 {
            self.stats.fec_available += 1;
            Some(self.payload(later))
        } else {
            None
        };
        Playout::Lost {
            seq: ext_seq.wrapping_sub(self.seq_offset) as u16,
            ext_seq,
            ts: est as u32,
            ticks,
            next,
        }
    }

    /// Hands out the head packet and advances past it.
    fn play_head(&mut self, adjust: PlayoutAdjust) -> Playout<'_> {
        let i = self.slot_index(self.next_seq);
        let head = self.slots[i];
        let ticks = self
            .stored(head.ext_seq.wrapping_add(1))
            .map(|next| next.ext_ts.wrapping_sub(head.ext_ts))
            .filter(|&step| step > 0 && step <= self.max_packet_ticks)
            .unwrap_or(self.nominal_ticks);
        self.slots[i].occupied = false;
        self.buffered -= 1;
        self.played_mask = (self.played_mask << 1) | 1;
        self.last_played = Some((head.ext_seq, head.ext_ts));
        self.next_seq = self.next_seq.saturating_add(1);
        self.cursor = head.ext_ts.saturating_add(ticks);
        self.stats.played += 1;
        match adjust {
            PlayoutAdjust::None => {}
            PlayoutAdjust::Shorten => self.stats.shortened += 1,
            PlayoutAdjust::Lengthen => self.stats.lengthened += 1,
        }
        Playout::Packet {
            payload: self.payload(head),
            seq: head.ext_seq.wrapping_sub(self.seq_offset) as u16,
            ext_seq: head.ext_seq,
            ts: head.ext_ts as u32,
            ticks: ticks.min(u64::from(u32::MAX)) as u32,
            marker: head.marker,
            adjust,
        }
    }

    /// Records and returns the delay of playing timestamp `t` now, above the fastest path.
    fn measure_delay(&mut self, now_us: i64, t: u64) -> i64 {
        let delay = now_us
            .saturating_sub(self.ts_us(t))
            .saturating_sub(self.delays.min);
        self.playout_delay_us = delay;
        delay
    }

    /// Picks a one-frame adjustment towards the target, within a dead band of
    /// [target - frame/2, target + frame] so it does not oscillate.
    fn choose_adjust(&mut self, delay_us: i64) -> PlayoutAdjust {
        if self.catch_up {
            return PlayoutAdjust::None;
        }
        let above = delay_us > self.target_us.saturating_add(self.frame_us);
        let below = delay_us.saturating_add(self.frame_us / 2) < self.target_us;
        if above && self.stored(self.next_seq.wrapping_add(1)).is_some() {
            let spacing = if delay_us > self.max_us {
                FAST_SHORTEN_SPACING
            } else {
                SHORTEN_SPACING
            };
            if self.pops_since_adjust >= spacing {
                self.pops_since_adjust = 0;
                return PlayoutAdjust::Shorten;
            }
        } else if below && self.pops_since_adjust >= LENGTHEN_SPACING {
            self.pops_since_adjust = 0;
            return PlayoutAdjust::Lengthen;
        }
        PlayoutAdjust::None
    }

    // ----- helpers -----

    fn advance_clock(&mut self, now: Duration) -> i64 {
        let us = i64::try_from(now.as_micros()).unwrap_or(i64::MAX);
        self.last_now_us = self.last_now_us.max(us);
        self.last_now_us
    }

    fn slot_index(&self, ext: u64) -> usize {
        (ext % self.cfg.capacity as u64) as usize
    }

    /// The buffered slot holding exactly `ext`, if any.
    fn stored(&self, ext: u64) -> Option<Slot> {
        let slot = self.slots[self.slot_index(ext)];
        (slot.occupied && slot.ext_seq == ext).then_some(slot)
    }

    /// The lowest buffered packet above `ext`.
    fn first_stored_after(&self, ext: u64) -> Option<Slot> {
        if self.buffered == 0 {
            return None;
        }
        (1..self.cfg.capacity as u64).find_map(|k| self.stored(ext.wrapping_add(k)))
    }

    fn payload(&self, slot: Slot) -> &[u8] {
        self.payloads.get(self.slot_index(slot.ext_seq), slot.len)
    }

    /// When timestamp `t` should play to sit at the target delay above the fastest path.
    fn due_us(&self, t: u64) -> i64 {
        self.ts_us(t)
            .saturating_add(self.delays.min)
            .saturating_add(self.target_us)
    }

    /// When timestamp `t` should play to resume after catching up: at the delay held before it,
    /// kept within the dead band around the current target so no adjustment follows at once.
    fn resume_due_us(&self, t: u64) -> i64 {
        let low = self.target_us.saturating_sub(self.half_frame_us());
        let high = self.target_us.saturating_add(self.frame_us);
        self.ts_us(t)
            .saturating_add(self.delays.min)
            .saturating_add(self.held_delay_us.clamp(low.min(high), high))
    }

    /// The head starts a new talk-spurt (a timestamp gap, or the marker), so it is placed at the
    /// target delay rather than played on.
    fn is_spurt_start(&self, head: &Slot) -> bool {
        let half = self.half_frame_ticks;
        head.ext_ts > self.cursor.saturating_add(half)
            || (head.marker && head.ext_ts.saturating_add(half) >= self.cursor)
    }

    fn half_frame_us(&self) -> i64 {
        self.frame_us / 2
    }

    /// Microseconds from the epoch's first timestamp to `ext_ts`.
    fn ts_us(&self, ext_ts: u64) -> i64 {
        self.ticks_to_us(i128::from(ext_ts) - i128::from(self.epoch_ts))
    }

    fn ticks_to_us(&self, ticks: i128) -> i64 {
        let us = ticks * 1_000_000 / i128::from(self.cfg.clock_rate);
        us.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

fn us_to_duration(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// One playout decision, reduced to what the tests compare.
    #[derive(Clone, Debug, PartialEq)]
    enum Out {
        Packet {
            ext: u64,
            seq: u16,
            ts: u32,
            ticks: u32,
            first: u8,
            adjust: PlayoutAdjust,
        },
        Lost {
            ext: u64,
            seq: u16,
            ticks: u32,
            next: Option<u8>,
        },
        Silence,
        Underrun,
        Buffering,
    }

    /// An endpoint that plays one frame per tick and pops whenever its FIFO is empty.
    struct Listener {
        jb: JitterBuffer,
        fifo: i64,
        frame: i64,
        outs: Vec<Out>,
    }

    impl Listener {
        fn new(cfg: JitterConfig) -> Self {
            Listener {
                frame: i64::from(cfg.frame_ticks),
                jb: JitterBuffer::new(cfg).unwrap(),
                fifo: 0,
                outs: Vec::new(),
            }
        }

        fn insert(&mut self, now_ms: u64, seq: u16, ts: u32, marker: bool) -> InsertOutcome {
            self.insert_frames(now_ms, seq, ts, marker, 1)
        }

        /// Inserts a packet whose payload decodes to `frames` frames.
        fn insert_frames(
            &mut self,
            now_ms: u64,
            seq: u16,
            ts: u32,
            marker: bool,
            frames: u8,
        ) -> InsertOutcome {
            self.jb
                .insert(at_ms(now_ms), seq, ts, marker, &[seq as u8, frames])
                .unwrap()
        }

        fn tick(&mut self, now_ms: u64) {
            let mut guard = 0;
            while self.fifo < self.frame {
                guard += 1;
                assert!(guard < 10_000, "pop never filled a frame");
                let out = match self.jb.pop(at_ms(now_ms)) {
                    Playout::Packet {
                        payload,
                        seq,
                        ext_seq,
                        ts,
                        ticks,
                        adjust,
                        ..
                    } => {
                        // Like a decoder: the payload, not `ticks`, says how long it is.
                        let mut add = i64::from(payload[1]) * self.frame;
                        match adjust {
                            PlayoutAdjust::None => {}
                            PlayoutAdjust::Shorten => add -= self.frame,
                            PlayoutAdjust::Lengthen => add += self.frame,
                        }
                        self.fifo += add.max(0);
                        Out::Packet {
                            ext: ext_seq,
                            seq,
                            ts,
                            ticks,
                            first: payload[0],
                            adjust,
                        }
                    }
                    Playout::Lost {
                        seq,
                        ext_seq,
                        ticks,
                        next,
                        ..
                    } => {
                        self.fifo += i64::from(ticks);
                        Out::Lost {
                            ext: ext_seq,
                            seq,
                            ticks,
                            next: next.map(|p| p[0]),
                        }
                    }
                    Playout::Silence => {
                        self.fifo += self.frame;
                        Out::Silence
                    }
                    Playout::Underrun => {
                        self.fifo += self.frame;
                        Out::Underrun
                    }
                    Playout::Buffering => {
                        self.fifo += self.frame;
                        Out::Buffering
                    }
                };
                self.outs.push(out);
            }
            self.fifo -= self.frame;
        }

        /// Wire sequence numbers of the Packet/Lost outputs (and whether played),
        /// checking that ext_seq steps by one.
        fn slots(&self) -> Vec<(u16, bool)> {
            let exts = self.exts();
            assert!(
                exts.windows(2).all(|w| w[1] == w[0] + 1),
                "ext_seq must step by one: {:?}",
                self.outs
            );
            self.outs
                .iter()
                .filter_map(|o| match *o {
                    Out::Packet { seq, .. } => Some((seq, true)),
                    Out::Lost { seq, .. } => Some((seq, false)),
                    _ => None,
                })
                .collect()
        }

        /// Extended sequence numbers of the Packet/Lost outputs, checked strictly increasing.
        fn exts(&self) -> Vec<u64> {
            let exts: Vec<u64> = self
                .outs
                .iter()
                .filter_map(|o| match *o {
                    Out::Packet { ext, .. } | Out::Lost { ext, .. } => Some(ext),
                    _ => None,
                })
                .collect();
            assert!(exts.windows(2).all(|w| w[0] < w[1]), "{:?}", self.outs);
            exts
        }
    }

    /// Sends `count` 20 ms Opus packets from `start_ms`, each arriving `lag_ms` after
    /// its send time, ticking the listener every 20 ms until all are sent; returns
    /// the time of the next tick.
    fn run_stream(
        l: &mut Listener,
        start_ms: u64,
        seq0: u16,
        ts0: u32,
        count: u16,
        lag_ms: u64,
    ) -> u64 {
        let mut sent = 0u16;
        let mut now = start_ms;
        while sent < count {
            while sent < count && start_ms + u64::from(sent) * 20 + lag_ms <= now {
                let seq = seq0.wrapping_add(sent);
                let ts = ts0.wrapping_add(u32::from(sent) * 960);
                assert_eq!(l.insert(now, seq, ts, sent == 0), InsertOutcome::Stored);
                sent += 1;
            }
            l.tick(now);
            now += 20;
        }
        now
    }

    /// Ticks the listener every 20 ms over `[from_ms, to_ms)`; returns `to_ms`.
    fn idle(l: &mut Listener, from_ms: u64, to_ms: u64) -> u64 {
        for now in (from_ms..to_ms).step_by(20) {
            l.tick(now);
        }
        to_ms
    }

    #[test]
    fn pop_before_any_packet_is_buffering() {
        let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
        assert_eq!(jb.pop(at_ms(0)), Playout::Buffering);
        assert_eq!(jb.pop(at_ms(20)), Playout::Buffering);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn in_order_stream_plays_every_packet_after_the_initial_delay() {
        // (initial delay, ticks before the first packet plays, its delay above arrival)
        // A 40 ms start shrinks by a frame once enough packets show there is no jitter.
        for (initial_ms, first_at, delay_ms) in [(10, 1, 0), (40, 3, 20)] {
            let cfg = JitterConfig {
                initial_delay: Duration::from_millis(initial_ms),
                ..JitterConfig::default()
            };
            let mut l = Listener::new(cfg);
            let end = run_stream(&mut l, 0, 1000, 5000, 100, 5);
            idle(&mut l, end, end + 200);
            let first_packet = l
                .outs
                .iter()
                .position(|o| matches!(o, Out::Packet { .. }))
                .unwrap();
            // Inserted at the 20 ms tick, it plays at that tick with the default (no jitter
            // measured yet, no loss: no look-ahead), or 40 ms later with a 40 ms start.
            // Then the delay stays (or shrinks to) the buffer's target plus its dead band.
            assert_eq!(first_packet, first_at, "{:?}", &l.outs[..4]);
            let slots = l.slots();
            assert_eq!(slots.len(), 100);
            assert!(slots.iter().all(|&(_, played)| played));
            assert_eq!(slots[0].0, 1000);
            let s = l.jb.stats();
            assert_eq!((s.received, s.played, s.lost, s.too_late), (100, 100, 0, 0));
            assert_eq!(s.playout_delay, Duration::from_millis(delay_ms), "{s:?}");
            assert!(s.target_delay >= Duration::from_millis(10), "{s:?}");
            assert!(!l.jb.keeps_lookahead());
        }
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let mut l = Listener::new(JitterConfig::default());
        // Pairs swapped: 1,0,3,2,...; both of a pair arrive in the same tick.
        for i in 0..50u64 {
            let now = i * 20;
            if i % 2 == 1 {
                for k in [i, i - 1] {
                    let seq = k as u16;
                    let ts = (k as u32) * 960;
                    assert_eq!(l.insert(now, seq, ts, false), InsertOutcome::Stored);
                }
            }
            l.tick(now);
        }
        for now in (1000..1400).step_by(20) {
            l.tick(now);
        }
        let slots = l.slots();
        assert_eq!(slots.len(), 50);
        assert!(slots.iter().all(|&(_, p)| p));
        assert_eq!(l.jb.stats().lost, 0);
    }

    #[test]
    fn duplicates_are_dropped_whether_buffered_or_played() {
        let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
        assert_eq!(
            jb.insert(at_ms(0), 7, 0, true, &[1]),
            Ok(InsertOutcome::Stored)
        );
        assert_eq!(
            jb.insert(at_ms(1), 7, 0, true, &[1]),
            Ok(InsertOutcome::Duplicate)
        );
        assert_eq!(
            jb.insert(at_ms(20), 8, 960, false, &[2]),
            Ok(InsertOutcome::Stored)
        );
        assert!(matches!(jb.pop(at_ms(40)), Playout::Packet { seq: 7, .. }));
        assert_eq!(
            jb.insert(at_ms(41), 7, 0, true, &[1]),
            Ok(InsertOutcome::Duplicate)
        );
        let s = jb.stats();
        assert_eq!((s.received, s.duplicates, s.buffered_packets), (4, 2, 1));
    }

    #[test]
    fn single_loss_with_next_buffered_offers_fec_and_late_copy_is_too_late() {
        let mut l = Listener::new(JitterConfig::default());
        for i in 0..20u64 {
            let now = i * 20;
            if i != 5 {
                assert_eq!(
                    l.insert(now, i as u16, i as u32 * 960, i == 0),
                    InsertOutcome::Stored
                );
            }
            l.tick(now);
        }
        for now in (400..600).step_by(20) {
            l.tick(now);
        }
        let lost: Vec<_> = l
            .outs
            .iter()
            .filter(|o| matches!(o, Out::Lost { .. }))
            .collect();
        assert_eq!(
            lost,
            vec![&Out::Lost {
                ext: lost_ext(&l, 5),
                seq: 5,
                ticks: 960,
                next: Some(6)
            }]
        );
        assert_eq!(l.insert(600, 5, 5 * 960, false), InsertOutcome::TooLate);
        let s = l.jb.stats();
        assert_eq!((s.lost, s.fec_available, s.too_late), (1, 1, 1));
        assert_eq!(l.slots().len(), 20);
    }

    fn lost_ext(l: &Listener, seq: u16) -> u64 {
        l.outs
            .iter()
            .find_map(|o| match *o {
                Out::Lost { ext, seq: s, .. } if s == seq => Some(ext),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn burst_loss_offers_fec_only_for_the_last_of_the_burst() {
        let mut l = Listener::new(JitterConfig::default());
        for i in 0..30u64 {
            let now = i * 20;
            if !(10..13).contains(&i) {
                l.insert(now, i as u16, i as u32 * 960, false);
            }
            l.tick(now);
        }
        let nexts: Vec<_> = l
            .outs
            .iter()
            .filter_map(|o| match o {
                Out::Lost { seq, next, .. } => Some((*seq, *next)),
                _ => None,
            })
            .collect();
        assert_eq!(nexts, vec![(10, None), (11, None), (12, Some(13))]);
    }

    #[test]
    fn bad_payloads_and_configs_are_typed_errors() {
        let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
        assert_eq!(
            jb.insert(at_ms(0), 1, 0, false, &[]),
            Err(JitterError::EmptyPayload)
        );
        let big = [0u8; 1501];
        assert_eq!(
            jb.insert(at_ms(0), 1, 0, false, &big),
            Err(JitterError::PayloadTooLarge {
                len: 1501,
                max: 1500
            })
        );
        assert_eq!(jb.stats().received, 0);

        let mut cfg = JitterConfig::new(8000);
        cfg.min_delay = Duration::from_millis(100);
        let err = JitterBuffer::new(cfg).unwrap_err();
        assert!(err.to_string().contains("min_delay"), "{err}");
        assert!(JitterBuffer::new(JitterConfig::new(0)).is_err());
        let mut cfg = JitterConfig::new(8000);
        cfg.capacity = 1;
        assert!(JitterBuffer::new(cfg).is_err());
        assert_eq!(
            JitterConfig::for_format(PayloadFormat::Pcmu).frame_ticks,
            160
        );
    }

    #[test]
    fn sequence_and_timestamp_wrap_mid_stream() {
        let mut l = Listener::new(JitterConfig::default());
        let ts0 = u32::MAX - 5 * 960 + 1;
        let end = run_stream(&mut l, 0, 65530, ts0, 20, 3);
        idle(&mut l, end, end + 100);
        let slots = l.slots();
        let seqs: Vec<u16> = slots.iter().map(|s| s.0).collect();
        let expected: Vec<u16> = (0..20u16).map(|i| 65530u16.wrapping_add(i)).collect();
        assert_eq!(seqs, expected);
        assert!(slots.iter().all(|s| s.1));
        let ts: Vec<u32> = l
            .outs
            .iter()
            .filter_map(|o| match o {
                Out::Packet { ts, ticks, .. } => {
                    assert_eq!(*ticks, 960);
                    Some(*ts)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ts[5], 0, "timestamp wraps to 0 at the sixth packet");
        assert_eq!(l.jb.stats().lost, 0);
    }

    #[test]
    fn multi_frame_packets_are_handed_out_once_with_their_duration() {
        for frames in [2u32, 3] {
            let mut l = Listener::new(JitterConfig::default());
            let step = 20 * u64::from(frames);
            let mut sent = 0u32;
            for now in (0..3000u64).step_by(20) {
                while sent < 40 && u64::from(sent) * step + 2 <= now {
                    let ts = sent * 960 * frames;
                    let out = l.insert_frames(now, sent as u16, ts, false, frames as u8);
                    assert_eq!(out, InsertOutcome::Stored);
                    sent += 1;
                }
                l.tick(now);
            }
            let slots = l.slots();
            assert_eq!(slots.len(), 40, "{frames}-frame packets");
            assert!(slots.iter().all(|s| s.1));
            let ticks: Vec<u32> = l
                .outs
                .iter()
                .filter_map(|o| match o {
                    Out::Packet { ticks, .. } => Some(*ticks),
                    _ => None,
                })
                .collect();
            // The first packet's duration is a guess (nothing follows it yet).
            assert!(ticks[1..].iter().all(|&t| t == 960 * frames), "{ticks:?}");
            // One pop per packet while the stream runs: no filler between packets.
            let first = l.outs.iter().position(|o| matches!(o, Out::Packet { .. }));
            let last = l.outs.iter().rposition(|o| matches!(o, Out::Packet { .. }));
            let during = &l.outs[first.unwrap()..=last.unwrap()];
            assert_eq!(during.len(), 40, "{during:?}");
            assert_eq!(l.jb.stats().lost, 0);
        }
    }

    #[test]
    fn dtx_pause_is_silence_not_loss() {
        let mut l = Listener::new(JitterConfig::default());
        // 1 s of speech, 2 s with no packet at all, then a talk spurt with the marker bit.
        let mut seq = 0u16;
        for now in (0..5000u64).step_by(20) {
            let talking = !(1000..3000).contains(&now);
            if talking && now < 4000 {
                let ts = (now as u32) * 48;
                let out = l.insert(now + 1, seq, ts, now == 0 || now == 3000);
                assert_eq!(out, InsertOutcome::Stored);
                seq += 1;
            }
            l.tick(now + 1);
        }
        let s = l.jb.stats();
        assert_eq!(s.lost, 0, "{s:?}");
        assert_eq!(s.played, u64::from(seq));
        assert!(s.underrun_frames >= 95, "{s:?}");
        assert_eq!(l.slots().len(), usize::from(seq));
    }

    #[test]
    fn sender_restart_resynchronizes_after_two_packets() {
        let mut l = Listener::new(JitterConfig::default());
        let end = run_stream(&mut l, 0, 100, 0, 20, 1);
        let now = idle(&mut l, end, end + 200);
        // The sender restarts with unrelated numbers.
        let (seq0, ts0) = (40_000u16, 7_777_777u32);
        assert_eq!(l.insert(now, seq0, ts0, true), InsertOutcome::Discontinuity);
        l.tick(now);
        assert_eq!(
            l.insert(now + 20, seq0 + 1, ts0 + 960, false),
            InsertOutcome::Resynced
        );
        l.tick(now + 20);
        let mut t = now + 40;
        for i in 2..20u16 {
            let out = l.insert(t, seq0 + i, ts0 + u32::from(i) * 960, false);
            assert_eq!(out, InsertOutcome::Stored);
            l.tick(t);
            t += 20;
        }
        idle(&mut l, t, t + 200);
        let mut seqs = Vec::new();
        let mut exts = Vec::new();
        for out in &l.outs {
            match out {
                Out::Packet { seq, ext, .. } => {
                    seqs.push(*seq);
                    exts.push(*ext);
                }
                Out::Lost { .. } => panic!("no loss expected: {:?}", l.outs),
                _ => {}
            }
        }
        let mut expected: Vec<u16> = (100..120).collect();
        expected.extend(seq0..seq0 + 20);
        assert_eq!(seqs, expected);
        assert!(exts.windows(2).all(|w| w[0] < w[1]));
        let s = l.jb.stats();
        assert_eq!((s.resyncs, s.flushed, s.discontinuities), (1, 0, 1));
    }

    #[test]
    fn a_single_stray_packet_does_not_resynchronize() {
        let mut l = Listener::new(JitterConfig::default());
        let now = run_stream(&mut l, 0, 0, 0, 10, 1);
        assert_eq!(
            l.insert(now, 30_000, 0, false),
            InsertOutcome::Discontinuity
        );
        let end = run_stream(&mut l, now, 10, 9600, 20, 1);
        idle(&mut l, end, end + 200);
        let s = l.jb.stats();
        assert_eq!((s.resyncs, s.lost, s.played), (0, 0, 30), "{s:?}");
    }

    #[test]
    fn timestamp_jump_ahead_with_continuous_seq_resynchronizes() {
        let mut l = Listener::new(JitterConfig::default());
        let end = run_stream(&mut l, 0, 0, 0, 20, 1);
        let now = idle(&mut l, end, end + 200);
        let jump = 1u32 << 30;
        assert_eq!(l.insert(now, 20, jump, false), InsertOutcome::Discontinuity);
        l.tick(now);
        assert_eq!(
            l.insert(now + 20, 21, jump + 960, false),
            InsertOutcome::Resynced
        );
        idle(&mut l, now + 20, now + 400);
        let s = l.jb.stats();
        assert_eq!((s.played, s.lost, s.resyncs), (22, 0, 1), "{s:?}");
        assert_eq!(l.exts().len(), 22);
    }

    #[test]
    fn timestamp_reset_backwards_resynchronizes_within_half_a_second() {
        let mut l = Listener::new(JitterConfig::default());
        let mut now = run_stream(&mut l, 0, 0, 48_000 * 60, 50, 1);
        let mut resynced_at = None;
        for i in 0..200u16 {
            let out = l.insert(now, 50 + i, u32::from(i) * 960, false);
            if out == InsertOutcome::Resynced {
                resynced_at = Some(i);
            }
            l.tick(now);
            now += 20;
        }
        let i = resynced_at.expect("timestamp reset never detected");
        // Half a second of packets too late to play, then a fresh start.
        assert!((25..=30).contains(&i), "resynced after {i} packets");
        let s = l.jb.stats();
        assert_eq!(
            (s.too_late, s.lost, s.resyncs),
            (u64::from(i), 0, 1),
            "{s:?}"
        );
        assert_eq!(s.played + s.buffered_packets as u64, 250 - u64::from(i));
        assert!(s.target_delay <= Duration::from_millis(40), "{s:?}");
        l.exts();
    }

    #[test]
    fn outage_longer_than_the_buffer_skips_ahead_without_concealing() {
        let mut l = Listener::new(JitterConfig::default());
        let end = run_stream(&mut l, 0, 0, 0, 20, 1);
        // 3 s outage: 150 packets never arrive, then the stream continues.
        let resume = end + 3000;
        idle(&mut l, end, resume);
        let end = run_stream(&mut l, resume, 170, 170 * 960, 30, 1);
        idle(&mut l, end, end + 200);
        let s = l.jb.stats();
        assert_eq!((s.skipped, s.lost, s.played), (150, 0, 50), "{s:?}");
    }

    #[test]
    fn packets_beyond_the_span_overflow_while_older_ones_wait() {
        let cfg = JitterConfig {
            capacity: 8,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg).unwrap();
        for i in 0..8u16 {
            let out = jb.insert(at_ms(0), i, u32::from(i) * 960, false, &[1]);
            assert_eq!(out, Ok(InsertOutcome::Stored));
        }
        let out = jb.insert(at_ms(0), 8, 8 * 960, false, &[1]);
        assert_eq!(out, Ok(InsertOutcome::Overflow));
        assert_eq!(jb.stats().overflow, 1);
        assert_eq!(jb.buffered_packets(), 8);
    }

    #[test]
    fn target_delay_follows_jitter_within_bounds() {
        let mut l = Listener::new(JitterConfig::default());
        // Arrival lag alternates 0 and 60 ms: a 60 ms spread.
        let mut sent = 0u32;
        let lag = |k: u32| if k % 4 == 3 { 60 } else { 0 };
        for now in (0..20_000u64).step_by(5) {
            while u64::from(sent) * 20 + lag(sent) <= now && sent < 990 {
                l.insert(now, sent as u16, sent * 960, false);
                sent += 1;
            }
            if now % 20 == 0 {
                l.tick(now);
            }
        }
        let s = l.jb.stats();
        assert!(s.target_delay >= Duration::from_millis(60), "{s:?}");
        assert!(s.target_delay <= Duration::from_millis(200), "{s:?}");
        assert!(s.lengthened > 0, "{s:?}");
        // Once adapted, nothing more is lost.
        let late_losses = l
            .outs
            .iter()
            .skip(l.outs.len() / 2)
            .filter(|o| matches!(o, Out::Lost { .. }))
            .count();
        assert_eq!(late_losses, 0);
    }

    #[test]
    fn a_faster_sender_clock_is_absorbed_by_shortening() {
        let mut l = Listener::new(JitterConfig::default());
        // The sender's clock runs 0.2% fast: 200 ms of excess audio over 100 s.
        let mut tick = 0u64;
        for i in 0..5000u32 {
            let arrival_ms = u64::from(i) * 19_960 / 1000;
            while tick < arrival_ms {
                l.tick(tick);
                tick += 20;
            }
            l.insert(arrival_ms, i as u16, i * 960, false);
        }
        let s = l.jb.stats();
        assert!(s.shortened >= 5, "{s:?}");
        assert!(
            s.playout_delay <= s.target_delay + Duration::from_millis(20),
            "{s:?}"
        );
        assert!(s.buffered_packets <= 6, "{s:?}");
        assert_eq!((s.overflow, s.lost), (0, 0));
    }

    #[test]
    fn a_network_stall_drops_stale_audio_and_recovers_the_delay() {
        let mut l = Listener::new(JitterConfig::default());
        // Packets 50..75 are held by the network for up to 500 ms and delivered
        // together with packet 75; everything else arrives 5 ms after sending.
        let mut sent = 0u32;
        for now in (0..12_000u64).step_by(20) {
            while sent < 590 {
                let due = if (50..75).contains(&sent) {
                    75 * 20
                } else {
                    sent * 20
                };
                if u64::from(due) + 5 > now {
                    break;
                }
                l.insert(now, sent as u16, sent * 960, false);
                sent += 1;
            }
            l.tick(now);
        }
        let s = l.jb.stats();
        assert_eq!(s.resyncs, 0, "{s:?}");
        assert!(s.too_late > 0 && s.lost == s.too_late, "{s:?}");
        assert_eq!(s.played + s.lost + s.buffered_packets as u64, 590, "{s:?}");
        // The target jumped to cover the stall, then decayed; the extra delay
        // is shed one frame at a time.
        assert!(s.shortened > 0, "{s:?}");
        assert!(s.target_delay <= Duration::from_millis(60), "{s:?}");
        assert!(
            s.playout_delay <= s.target_delay + Duration::from_millis(20),
            "{s:?}"
        );
        assert_eq!(l.slots().len() + s.buffered_packets, 590);
    }

    #[test]
    fn reset_forgets_the_stream() {
        let mut l = Listener::new(JitterConfig::default());
        let end = run_stream(&mut l, 0, 500, 0, 30, 1);
        idle(&mut l, end, end + 100);
        assert!(l.jb.is_playing());
        l.jb.reset();
        assert!(!l.jb.is_playing());
        assert_eq!(
            l.jb.stats(),
            JitterStats {
                target_delay: Duration::from_millis(10),
                ..JitterStats::default()
            }
        );
        assert_eq!(l.jb.pop(at_ms(end + 120)), Playout::Buffering);
        let out = l.jb.insert(at_ms(end + 140), 3, 99, true, &[1]);
        assert_eq!(out, Ok(InsertOutcome::Stored));
    }

    /// A buffer that holds three packets (60 ms) on a clean stream: ticks 0..=`until_ms`,
    /// each packet arriving at its send time.
    fn held_three(until_ms: u64) -> Listener {
        let cfg = JitterConfig {
            min_delay: Duration::from_millis(60),
            initial_delay: Duration::from_millis(60),
            ..JitterConfig::default()
        };
        let mut l = Listener::new(cfg);
        for i in 0..=until_ms / 20 {
            l.insert(i * 20, i as u16, i as u32 * 960, i == 0);
            l.tick(i * 20);
        }
        l
    }

    #[test]
    fn catching_up_hands_out_what_has_arrived_and_waits_for_the_rest() {
        let mut l = held_three(980);
        let held = l.jb.buffered_packets();
        assert!(held >= 2, "60 ms of delay holds packets: {held}");
        assert!(
            l.jb.pop_ahead(at_ms(985)).is_none(),
            "only while catching up"
        );
        l.jb.set_catch_up(true);
        assert!(l.jb.is_catching_up());
        // Everything already here comes out now, in order, unadjusted.
        let mut ahead = Vec::new();
        while let Some(p) = l.jb.pop_ahead(at_ms(985)) {
            match p {
                Playout::Packet { seq, adjust, .. } => {
                    assert_eq!(adjust, PlayoutAdjust::None);
                    ahead.push(seq);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ahead.len(), held);
        assert!(ahead.windows(2).all(|w| w[1] == w[0] + 1), "{ahead:?}");
        assert_eq!(*ahead.last().unwrap(), 49);
        assert_eq!(l.jb.buffered_packets(), 0);
        assert_eq!(l.jb.stats().ahead, held as u64);
        // Nothing is here: a pop waits for the next packet without moving past its slot.
        assert_eq!(l.jb.pop(at_ms(990)), Playout::Underrun);
        l.insert(1000, 50, 50 * 960, false);
        assert!(matches!(
            l.jb.pop(at_ms(1000)),
            Playout::Packet {
                seq: 50,
                adjust: PlayoutAdjust::None,
                ..
            }
        ));
        // 52 overtakes 51: catching up, 51 is not lost before its normal playout time.
        l.insert(1040, 52, 52 * 960, false);
        assert_eq!(l.jb.pop(at_ms(1040)), Playout::Underrun);
        assert!(l.jb.pop_ahead(at_ms(1040)).is_none());
        l.insert(1045, 51, 51 * 960, false);
        assert!(matches!(
            l.jb.pop(at_ms(1060)),
            Playout::Packet { seq: 51, .. }
        ));
        assert!(matches!(
            l.jb.pop_ahead(at_ms(1060)),
            Some(Playout::Packet { seq: 52, .. })
        ));
        let stats = l.jb.stats();
        assert_eq!((stats.lost, stats.too_late), (0, 0));
    }

    #[test]
    fn a_packet_missing_past_its_normal_time_is_lost_even_while_catching_up() {
        let mut l = held_three(980);
        l.jb.set_catch_up(true);
        while l.jb.pop_ahead(at_ms(985)).is_some() {}
        // 50 never comes; 51 does. At 50's normal playout time (its timestamp + 60 ms) it is lost.
        l.insert(1020, 51, 51 * 960, false);
        assert_eq!(l.jb.pop(at_ms(1020)), Playout::Underrun);
        assert!(matches!(
            l.jb.pop(at_ms(1060)),
            Playout::Lost {
                seq: 50,
                next: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn after_catching_up_the_next_packet_is_placed_at_the_target_delay() {
        let mut l = held_three(980);
        let target = l.jb.target_delay();
        l.jb.set_catch_up(true);
        while l.jb.pop_ahead(at_ms(985)).is_some() {}
        l.jb.set_catch_up(false);
        l.outs.clear();
        let silence_before = l.jb.stats().silence_frames;
        for i in 50..150u64 {
            l.insert(i * 20, i as u16, i as u32 * 960, false);
            l.tick(i * 20);
            if i == 53 {
                // 50 arrived at 1000 and is due 60 ms later: three frames of silence, then it.
                assert_eq!(&l.outs[..3], &[Out::Silence, Out::Silence, Out::Silence]);
                assert!(
                    matches!(l.outs[3], Out::Packet { seq: 50, .. }),
                    "{:?}",
                    l.outs
                );
                assert_eq!(l.jb.stats().playout_delay, target);
            }
        }
        let stats = l.jb.stats();
        assert_eq!(stats.silence_frames - silence_before, 3, "{stats:?}");
        assert_eq!((stats.lengthened, stats.shortened), (0, 0), "{stats:?}");
        assert_eq!((stats.lost, stats.underrun_frames), (0, 0), "{stats:?}");
        assert_eq!(
            stats.playout_delay, target,
            "the delay stays where it was put"
        );
        // 50..=146 played in order, the last three held: 60 ms of delay.
        assert_eq!(l.slots().len(), 97);
        assert_eq!(l.jb.buffered_packets(), 3);
    }

    #[test]
    fn after_catching_up_the_delay_held_before_it_is_resumed_not_the_target() {
        // The delay starts at 60 ms and the target falls to 20 ms: shortening stops at the top
        // of the dead band (target + a frame), so the stream plays at 40 ms.
        let cfg = JitterConfig {
            min_delay: Duration::from_millis(20),
            initial_delay: Duration::from_millis(60),
            ..JitterConfig::default()
        };
        let mut l = Listener::new(cfg);
        for i in 0..150u64 {
            l.insert(i * 20, i as u16, i as u32 * 960, i == 0);
            l.tick(i * 20);
        }
        let held = Duration::from_millis(40);
        assert_eq!(l.jb.target_delay(), Duration::from_millis(20));
        assert_eq!(l.jb.stats().playout_delay, held);
        l.jb.set_catch_up(true);
        while l.jb.pop_ahead(at_ms(2985)).is_some() {}
        l.jb.set_catch_up(false);
        l.outs.clear();
        for i in 150..250u64 {
            l.insert(i * 20, i as u16, i as u32 * 960, false);
            l.tick(i * 20);
        }
        // 150 arrived at 3000 and waited 40 ms, as the stream did before catching up.
        assert_eq!(
            &l.outs[..2],
            &[Out::Silence, Out::Silence],
            "{:?}",
            &l.outs[..4]
        );
        assert!(matches!(l.outs[2], Out::Packet { seq: 150, .. }));
        let stats = l.jb.stats();
        assert_eq!(stats.playout_delay, held, "{stats:?}");
        assert_eq!((stats.lengthened, stats.lost), (0, 0), "{stats:?}");
    }

    #[test]
    fn a_packet_reordered_just_after_catching_up_is_still_waited_for() {
        let mut l = held_three(980);
        l.jb.set_catch_up(true);
        while l.jb.pop_ahead(at_ms(985)).is_some() {}
        l.jb.set_catch_up(false);
        // 51 overtakes 50; 50 comes 30 ms late, still before its playout time (ts + 60 ms).
        l.insert(1020, 51, 51 * 960, false);
        assert_eq!(l.jb.pop(at_ms(1020)), Playout::Underrun);
        l.insert(1030, 50, 50 * 960, false);
        assert_eq!(l.jb.pop(at_ms(1040)), Playout::Silence);
        assert!(matches!(
            l.jb.pop(at_ms(1060)),
            Playout::Packet {
                seq: 50,
                adjust: PlayoutAdjust::None,
                ..
            }
        ));
        assert!(matches!(
            l.jb.pop(at_ms(1080)),
            Playout::Packet { seq: 51, .. }
        ));
        assert_eq!(l.jb.stats().lost, 0);
    }

    #[test]
    fn the_first_loss_waits_a_frame_and_later_losses_find_their_next_packet() {
        let mut l = Listener::new(JitterConfig::default());
        // Every packet arrives exactly at its tick (no jitter); 10 and 30 are lost.
        for i in 0..50u64 {
            let now = i * 20;
            if i != 10 && i != 30 {
                l.insert(now, i as u16, i as u32 * 960, i == 0);
            }
            l.tick(now);
            if i == 5 {
                // No jitter, no loss yet: a packet plays at the tick it arrives.
                assert_eq!(l.jb.stats().playout_delay, Duration::ZERO);
                assert!(!l.jb.keeps_lookahead());
            }
        }
        idle(&mut l, 1000, 1200);
        let around = |seq: u16| {
            let at = l
                .outs
                .iter()
                .position(|o| matches!(o, Out::Lost { seq: s, .. } if *s == seq))
                .unwrap();
            l.outs[at - 1..=at].to_vec()
        };
        // The first loss: its tick finds nothing buffered and waits (an underrun that keeps
        // the slot due); the next tick has packet 11, so 10 is rebuilt from its FEC.
        assert_eq!(
            around(10),
            vec![
                Out::Underrun,
                Out::Lost {
                    ext: lost_ext(&l, 10),
                    seq: 10,
                    ticks: 960,
                    next: Some(11)
                }
            ]
        );
        // From then on the buffer keeps a packet of look-ahead: no wait before the next loss.
        let second = around(30);
        assert!(
            matches!(second[0], Out::Packet { seq: 29, .. }),
            "{second:?}"
        );
        assert!(matches!(
            second[1],
            Out::Lost {
                seq: 30,
                ticks: 960,
                next: Some(31),
                ..
            }
        ));
        assert!(l.jb.keeps_lookahead());
        let s = l.jb.stats();
        assert_eq!((s.lost, s.fec_available, s.played), (2, 2, 48), "{s:?}");
        // The wait made 20 ms; one lengthened frame brought it to the 40 ms target (the
        // next packet plus half a frame of margin).
        assert_eq!(s.target_delay, Duration::from_millis(40), "{s:?}");
        assert_eq!(s.playout_delay, Duration::from_millis(40), "{s:?}");
        assert_eq!(s.lengthened, 1, "{s:?}");
        assert_eq!(l.slots().len(), 50);
    }

    #[test]
    fn without_fec_losses_never_add_look_ahead() {
        let cfg = JitterConfig {
            fec_lookahead: false,
            ..JitterConfig::default()
        };
        let mut l = Listener::new(cfg);
        // The stream of the test above, losses at 10, 30 and 40: each is concealed, and the
        // target stays where the jitter puts it, without the 30 ms of look-ahead.
        for i in 0..60u64 {
            let now = i * 20;
            if ![10, 30, 40].contains(&i) {
                l.insert(now, i as u16, i as u32 * 960, i == 0);
            }
            l.tick(now);
        }
        idle(&mut l, 1200, 1400);
        assert!(!l.jb.keeps_lookahead());
        let s = l.jb.stats();
        assert_eq!(s.lost, 3, "{s:?}");
        assert_eq!(s.target_delay, Duration::from_millis(10), "{s:?}");
        assert!(s.playout_delay <= Duration::from_millis(20), "{s:?}");
        assert!(l
            .outs
            .iter()
            .any(|o| matches!(o, Out::Lost { seq: 40, .. })));
    }

    #[test]
    fn only_a_format_with_fec_keeps_look_ahead() {
        let opus = PayloadFormat::Opus {
            pcm_rate: crate::SampleRate::Hz16000,
        };
        assert!(JitterConfig::for_format(opus).fec_lookahead);
        for format in [
            PayloadFormat::Pcmu,
            PayloadFormat::Pcma,
            PayloadFormat::L16 {
                rate: crate::SampleRate::Hz16000,
            },
        ] {
            let cfg = JitterConfig::for_format(format);
            assert!(!cfg.fec_lookahead, "{format:?}");
            assert_eq!(cfg.clock_rate, format.clock_rate());
        }
    }

    #[test]
    fn a_late_packet_costs_a_frame_of_delay_not_its_audio() {
        let mut l = Listener::new(JitterConfig::default());
        for i in 0..40u64 {
            let now = i * 20;
            match i {
                // Packet 10 arrives 5 ms after its tick.
                10 => {}
                11 => {
                    l.insert(now - 15, 10, 10 * 960, false);
                    l.insert(now, 11, 11 * 960, false);
                }
                _ => {
                    l.insert(now, i as u16, i as u32 * 960, i == 0);
                }
            }
            l.tick(now);
        }
        let s = l.jb.stats();
        // Every packet plays (the last one is still buffered: the wait became delay).
        assert_eq!((s.lost, s.too_late), (0, 0), "{s:?}");
        assert_eq!((s.played, s.buffered_packets), (39, 1), "{s:?}");
        assert_eq!(s.playout_delay, Duration::from_millis(20), "{s:?}");
        assert_eq!(s.underrun_frames, 1, "{s:?}");
        assert!(!l.jb.keeps_lookahead());
        assert!(l.slots().iter().all(|&(_, played)| played));
    }

    /// Payloads of every size up to `max_payload` come out exactly as they went in, whether a
    /// slot's own room held them or a spill entry did, as slots are reused round the ring.
    #[test]
    fn payloads_of_every_size_come_out_as_they_went_in() {
        let mut jb = JitterBuffer::new(JitterConfig::default()).unwrap();
        let size = |k: u32| match k % 5 {
            0 => 1500,
            1 => INLINE_PAYLOAD,
            2 => INLINE_PAYLOAD + 1,
            3 => 1,
            _ => 700,
        };
        let bytes = |k: u32, n: usize| -> Vec<u8> {
            (0..n).map(|j| (k as usize * 31 + j * 7) as u8).collect()
        };
        let mut played = 0;
        for k in 0..300u32 {
            let now = Duration::from_millis(20 * u64::from(k));
            let out = jb.insert(now, k as u16, k * 960, false, &bytes(k, size(k)));
            assert_eq!(out, Ok(InsertOutcome::Stored));
            while let Playout::Packet { payload, seq, .. } = jb.pop(now) {
                let seq = u32::from(seq);
                assert_eq!(payload, &bytes(seq, size(seq))[..], "packet {seq}");
                played += 1;
            }
        }
        assert!(played > 280, "{played}");
    }

    /// Ordinary packets never write the spill pool, and a large packet now and then writes
    /// only as many entries as there are large packets among the last `capacity` (a slot gives
    /// its entry back when it is next written), not one per slot.
    #[test]
    fn the_spill_pool_is_written_only_as_far_as_it_is_used() {
        let cfg = JitterConfig::default();
        let mut jb = JitterBuffer::new(cfg).unwrap();
        for k in 0..200u32 {
            let now = Duration::from_millis(20 * u64::from(k));
            jb.insert(now, k as u16, k * 960, false, &[7; 160]).unwrap();
            while let Playout::Packet { .. } = jb.pop(now) {}
        }
        assert_eq!(jb.payloads.spill.len(), 0);
        assert_eq!(jb.payloads.dense.len(), cfg.capacity * INLINE_PAYLOAD);
        for k in 200..400u32 {
            let now = Duration::from_millis(20 * u64::from(k));
            let n = if k % 10 == 0 { 1200 } else { 160 };
            jb.insert(now, k as u16, k * 960, false, &vec![9; n])
                .unwrap();
            while let Playout::Packet { .. } = jb.pop(now) {}
        }
        // One packet in ten is large: 7 of the 64 slots hold one at any time.
        let held = cfg.capacity.div_ceil(10);
        assert_eq!(jb.payloads.spill.len(), held * cfg.max_payload);
        assert_eq!(jb.payloads.spill.capacity(), cfg.capacity * cfg.max_payload);
    }

    /// A delay more than the 32-bit offset's ±35 minutes from the window's first counts as
    /// that far: no wrap-around, no panic, and the minimum stays where it was.
    #[test]
    fn delay_window_holds_a_delay_beyond_its_offset_range() {
        let mut window = DelayWindow::new();
        window.push(1_000);
        for _ in 0..30 {
            window.push(1_000 + 10_000_000_000);
        }
        assert_eq!(window.min, 1_000);
        assert_eq!(window.spread, i64::from(i32::MAX));
        window.push(1_000 - 10_000_000_000);
        assert_eq!(window.min, 1_000 + i64::from(i32::MIN));
        // After a clear the first delay is the new base, wherever it lies.
        window.clear();
        window.push(-7_000_000_000_000);
        window.push(-7_000_000_000_000 + 40_000);
        assert_eq!((window.min, window.spread), (-7_000_000_000_000, 0));
    }

    /// The window's minimum and spread, computed the plain way (a full selection per push).
    struct NaiveWindow {
        samples: Vec<i64>,
        next: usize,
    }

    impl NaiveWindow {
        fn push(&mut self, d: i64) -> (i64, i64) {
            if self.samples.len() < DELAY_WINDOW {
                self.samples.push(d);
            } else {
                self.samples[self.next] = d;
            }
            self.next = (self.next + 1) % DELAY_WINDOW;
            let min = *self.samples.iter().min().unwrap();
            let mut scratch = self.samples.clone();
            let rank = (scratch.len() - 1) * SPREAD_PERCENTILE / 100;
            let (_, high, _) = scratch.select_nth_unstable(rank);
            (min, high.saturating_sub(min).max(0))
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 64,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// The incremental window gives exactly what a full selection over the same samples
        /// gives, through filling, sliding, repeated values, drifts and a clear.
        #[test]
        fn delay_window_matches_a_full_selection(
            base in -5_000_000i64..5_000_000,
            steps in proptest::collection::vec((0i64..80_000, 0u8..4), 1..1600),
            clear_at in 0usize..2000,
        ) {
            let mut window = DelayWindow::new();
            let mut naive = NaiveWindow { samples: Vec::new(), next: 0 };
            let mut drift = 0i64;
            for (i, &(jitter, kind)) in steps.iter().enumerate() {
                if i == clear_at {
                    window.clear();
                    naive = NaiveWindow { samples: Vec::new(), next: 0 };
                }
                let d = match kind {
                    // A clock that drifts, ties, coarse values, and plain jitter.
                    0 => {
                        drift += 20;
                        base + drift + jitter
                    }
                    1 => base,
                    2 => base + jitter / 10_000 * 10_000,
                    _ => base + jitter,
                };
                window.push(d);
                let (min, spread) = naive.push(d);
                proptest::prop_assert_eq!((window.min, window.spread), (min, spread), "push {}", i);
            }
        }
    }
}
