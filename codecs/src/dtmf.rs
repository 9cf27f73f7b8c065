//! RFC 4733 telephone-events (DTMF over RTP): the 4-byte event payload, a receiver that turns
//! the repeated and redundant packet stream into one event per key press, and a sender.
//!
//! Only the DTMF codes 0-15 (`0`-`9`, `*`, `#`, `A`-`D`) become digits; other event codes are
//! decoded but ignored by the receiver. Time is injected by the caller; nothing here allocates.

use std::time::Duration;

use thiserror::Error;

/// Size of one telephone-event payload block.
pub const EVENT_PAYLOAD_LEN: usize = 4;

/// Largest event code that is a DTMF digit (`D`).
pub const MAX_DTMF_EVENT: u8 = 15;

/// Largest volume value (the field is 6 bits of −dBm0).
pub const MAX_VOLUME: u8 = 63;

/// Volume the sender uses unless told otherwise: −10 dBm0, a typical DTMF level.
pub const DEFAULT_VOLUME: u8 = 10;

/// Interval between the sender's update packets (RFC 4733 §2.5.1.2 recommends 50 ms).
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_millis(50);

/// How many times the end packet is sent (RFC 4733 §2.5.1.4).
pub const END_PACKET_COPIES: u8 = 3;

/// Silence after which the receiver reports an event whose end packets were all lost; a
/// sender refreshes every 50 ms, so this allows several lost updates in a row.
pub const DEFAULT_END_TIMEOUT: Duration = Duration::from_millis(250);

/// After this long without packets the receiver stops treating timestamps as "old", so
/// 32-bit timestamp comparison cannot go wrong on very long calls.
const ORDER_HORIZON: Duration = Duration::from_secs(10);

/// Why a telephone-event payload or request was rejected.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfError {
    /// A telephone-event payload that is not exactly 4 bytes.
    #[error("telephone-event payload of {0} bytes (expected 4)")]
    PayloadLength(usize),
    /// A character that is not a DTMF digit.
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    UnknownDigit(char),
    /// An RTP clock rate too low for telephone-events.
    #[error("telephone-event clock rate {0} Hz is too low (at least 1000 Hz)")]
    InvalidClockRate(u32),
    /// A zero-length tone.
    #[error("DTMF tone duration must be positive")]
    ZeroDuration,
    /// A tone longer than the 16-bit duration field holds at this clock rate.
    #[error("DTMF tone of {ticks} ticks exceeds the 65535-tick duration field")]
    DurationTooLong {
        /// The requested duration in timestamp units.
        ticks: u64,
    },
    /// An update interval shorter than one timestamp tick.
    #[error("telephone-event update interval must be at least one timestamp tick")]
    InvalidUpdateInterval,
}

/// The RFC 4733 event code for a DTMF digit (`a`-`d` accepted as `A`-`D`).
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF digit for an RFC 4733 event code 0-15.
pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + code - 12)),
        _ => None,
    }
}

/// One telephone-event payload block (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// Event code (0-15 are DTMF digits).
    pub event: u8,
    /// E bit: this packet reports the end of the event.
    pub end: bool,
    /// Power level in −dBm0, 0..=63 (larger is quieter).
    pub volume: u8,
    /// Duration of the event so far, in RTP timestamp units since the packet's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Decodes a payload; it must be exactly one 4-byte block. The reserved bit is ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, DtmfError> {
        let &[event, flags, hi, lo] = payload else {
            return Err(DtmfError::PayloadLength(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([hi, lo]),
        })
    }

    /// Encodes the block; a volume above 63 is clamped to 63.
    pub fn encode(&self) -> [u8; EVENT_PAYLOAD_LEN] {
        let [hi, lo] = self.duration.to_be_bytes();
        let flags = (u8::from(self.end) << 7) | self.volume.min(MAX_VOLUME);
        [self.event, flags, hi, lo]
    }

    /// The DTMF digit this event stands for, if it is one.
    pub fn digit(&self) -> Option<char> {
        event_digit(self.event)
    }
}

/// One key press, reported once however many packets carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DtmfEvent {
    /// `0`-`9`, `*`, `#` or `A`-`D`.
    pub digit: char,
    /// RTP timestamp at which the tone began (the packets' shared timestamp).
    pub started_at: u32,
    /// Tone length in RTP timestamp units (the last duration received).
    pub duration_ticks: u32,
    /// Tone length in milliseconds.
    pub duration_ms: u32,
    /// Power level in −dBm0 from the last packet.
    pub volume: u8,
    /// Whether an end packet arrived; `false` when it was closed by timeout or by the next event,
    /// in which case the duration may be short by up to one update interval.
    pub end_seen: bool,
}

/// Up to two events produced by one call (an unfinished one closed by a new one, then that one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct DtmfEvents {
    slots: [Option<DtmfEvent>; 2],
    next: usize,
}

impl DtmfEvents {
    fn push(&mut self, event: DtmfEvent) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some(event);
        }
    }

    /// Whether no event remains.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().skip(self.next).all(Option::is_none)
    }
}

impl Iterator for DtmfEvents {
    type Item = DtmfEvent;

    fn next(&mut self) -> Option<DtmfEvent> {
        let item = self.slots.get_mut(self.next)?.take();
        self.next += 1;
        item
    }
}

/// The event being received: its first segment's timestamp and its current segment.
#[derive(Clone, Copy, Debug)]
struct Pending {
    code: u8,
    digit: char,
    started_at: u32,
    /// Duration of completed earlier segments (long events, RFC 4733 §2.5.2.3).
    earlier_segments: u32,
    segment_ts: u32,
    segment_duration: u16,
    volume: u8,
    last_packet_at: Duration,
}

/// Turns a stream of RFC 4733 packets into exactly one [`DtmfEvent`] per key press.
///
/// Packets of one event share a timestamp: repeats and the redundant end packets are
/// deduplicated by it. A lost start packet is harmless (any packet opens the event); lost end
/// packets are covered by the next event's different timestamp or by
/// [`poll_timeout`](Self::poll_timeout). Events longer than the 16-bit duration field arrive
/// as segments whose timestamps continue each other; they are joined into one event.
#[derive(Clone, Debug)]
pub struct DtmfReceiver {
    clock_rate: u32,
    end_timeout: Duration,
    pending: Option<Pending>,
    last_reported: Option<(u32, Duration)>,
    duplicates: u64,
    stale: u64,
    ignored: u64,
}

impl DtmfReceiver {
    /// A receiver for events timed on a `clock_rate` Hz RTP clock, with [`DEFAULT_END_TIMEOUT`].
    pub fn new(clock_rate: u32) -> Self {
        DtmfReceiver {
            clock_rate,
            end_timeout: DEFAULT_END_TIMEOUT,
            pending: None,
            last_reported: None,
            duplicates: 0,
            stale: 0,
            ignored: 0,
        }
    }

    /// Sets how long an event may go without packets before it is reported as ended.
    pub fn with_end_timeout(mut self, timeout: Duration) -> Self {
        self.end_timeout = timeout;
        self
    }

    /// Feeds one telephone-event packet: its RTP `timestamp`, `payload` and the current time `now`
    /// (any monotonic timeline). Returns the key presses this packet completed, usually none.
    pub fn on_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Duration,
    ) -> Result<DtmfEvents, DtmfError> {
        let ev = TelephoneEvent::decode(payload)?;
        let mut out = DtmfEvents::default();
        let Some(digit) = ev.digit() else {
            self.ignored += 1;
            return Ok(out);
        };
        if let Some((last, at)) = self.last_reported {
            if now.saturating_sub(at) > ORDER_HORIZON {
                self.last_reported = None;
            } else if last == timestamp {
                self.duplicates += 1;
                return Ok(out);
            } else if precedes(timestamp, last) {
                self.stale += 1;
                return Ok(out);
            }
        }

        if let Some(p) = self.pending.as_mut() {
            let continues_segment = ev.event == p.code
                && p.segment_duration > 0
                && timestamp == p.segment_ts.wrapping_add(u32::from(p.segment_duration));
            if timestamp == p.segment_ts || continues_segment {
                if ev.event != p.code {
                    // Same timestamp, different digit: not a valid stream; keep the first.
                    self.ignored += 1;
                    return Ok(out);
                }
                if continues_segment {
                    p.earlier_segments = p
                        .earlier_segments
                        .saturating_add(u32::from(p.segment_duration));
                    p.segment_ts = timestamp;
                    p.segment_duration = ev.duration;
                } else {
                    p.segment_duration = p.segment_duration.max(ev.duration);
                }
                p.volume = ev.volume;
                p.last_packet_at = now;
                if ev.end {
                    let done = *p;
                    out.push(self.report(done, true, now));
                }
                return Ok(out);
            }
            if precedes(timestamp, p.segment_ts) {
                self.stale += 1;
                return Ok(out);
            }
            // A newer event began: the pending one lost all its end packets.
            let unfinished = *p;
            out.push(self.report(unfinished, false, now));
        }

        let started = Pending {
            code: ev.event,
            digit,
            started_at: timestamp,
            earlier_segments: 0,
            segment_ts: timestamp,
            segment_duration: ev.duration,
            volume: ev.volume,
            last_packet_at: now,
        };
        if ev.end {
            out.push(self.report(started, true, now));
        } else {
            self.pending = Some(started);
        }
        Ok(out)
    }

    /// Reports the pending event if no packet for it arrived within the end timeout.
    pub fn poll_timeout(&mut self, now: Duration) -> Option<DtmfEvent> {
        let p = self.pending?;
        if now.saturating_sub(p.last_packet_at) >= self.end_timeout {
            Some(self.report(p, false, now))
        } else {
            None
        }
    }

    /// When [`poll_timeout`](Self::poll_timeout) would next report something, if an event is pending.
    pub fn next_timeout(&self) -> Option<Duration> {
        self.pending.map(|p| p.last_packet_at + self.end_timeout)
    }

    /// Whether a key press is in progress (started, not yet reported).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Packets dropped as repeats of an already reported event.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets dropped because they belong to an earlier event than the current one.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Packets with non-DTMF event codes or inconsistent content, dropped.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Turns `p` into the reported event, clears the pending slot and remembers `p` for dedup.
    fn report(&mut self, p: Pending, end_seen: bool, now: Duration) -> DtmfEvent {
        self.pending = None;
        self.last_reported = Some((p.segment_ts, now));
        let duration_ticks = p
            .earlier_segments
            .saturating_add(u32::from(p.segment_duration));
        let duration_ms = (u64::from(duration_ticks) * 1000)
            .checked_div(u64::from(self.clock_rate))
            .unwrap_or(0);
        DtmfEvent {
            digit: p.digit,
            started_at: p.started_at,
            duration_ticks,
            duration_ms: u32::try_from(duration_ms).unwrap_or(u32::MAX),
            volume: p.volume,
            end_seen,
        }
    }
}

/// Whether RTP timestamp `a` is earlier than `b` (serial-number arithmetic).
fn precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// One packet of an outgoing tone: the payload, the marker bit, the event's RTP timestamp and
/// when to send it relative to the tone's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DtmfPacket {
    /// The payload block.
    pub event: TelephoneEvent,
    /// Set on the first packet of the event only.
    pub marker: bool,
    /// RTP timestamp: the tone's start, the same on every packet.
    pub timestamp: u32,
    /// When to send it, in RTP timestamp units after the tone's start.
    pub send_offset: u32,
}

impl DtmfPacket {
    /// The 4-byte RTP payload.
    pub fn payload(&self) -> [u8; EVENT_PAYLOAD_LEN] {
        self.event.encode()
    }
}

/// Produces the RFC 4733 packet sequence for a digit: an update every interval (the first with
/// the marker bit), then the end packet three times with the final duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DtmfSender {
    clock_rate: u32,
    volume: u8,
    update_interval: u32,
}

impl DtmfSender {
    /// A sender for a `clock_rate` Hz telephone-event stream with the default volume and interval.
    pub fn new(clock_rate: u32) -> Result<Self, DtmfError> {
        if clock_rate < 1000 {
            return Err(DtmfError::InvalidClockRate(clock_rate));
        }
        Ok(DtmfSender {
            clock_rate,
            volume: DEFAULT_VOLUME,
            update_interval: ticks(DEFAULT_UPDATE_INTERVAL, clock_rate).max(1) as u32,
        })
    }

    /// Sets the volume field (−dBm0; clamped to 63).
    pub fn with_volume(mut self, volume: u8) -> Self {
        self.volume = volume.min(MAX_VOLUME);
        self
    }

    /// Sets the interval between update packets.
    pub fn with_update_interval(mut self, interval: Duration) -> Result<Self, DtmfError> {
        let t = ticks(interval, self.clock_rate);
        if t == 0 || t > u64::from(u16::MAX) {
            return Err(DtmfError::InvalidUpdateInterval);
        }
        self.update_interval = t as u32;
        Ok(self)
    }

    /// The packets for `digit` held for `duration`, starting at RTP timestamp `start_timestamp`
    /// (normally [`crate::RtpSender::next_timestamp`]). The audio stream should stay silent
    /// until the last end packet is sent; the end copies are spaced one 20 ms frame apart.
    pub fn tone(
        &self,
        digit: char,
        duration: Duration,
        start_timestamp: u32,
    ) -> Result<DtmfTone, DtmfError> {
        let code = event_code(digit).ok_or(DtmfError::UnknownDigit(digit))?;
        let total = ticks(duration, self.clock_rate);
        if total == 0 {
            return Err(DtmfError::ZeroDuration);
        }
        let total =
            u16::try_from(total).map_err(|_| DtmfError::DurationTooLong { ticks: total })?;
        Ok(DtmfTone {
            code,
            volume: self.volume,
            timestamp: start_timestamp,
            total: u32::from(total),
            interval: self.update_interval,
            end_spacing: (self.clock_rate / 50).max(1),
            next_update: self.update_interval,
            ends_sent: 0,
            first: true,
        })
    }
}

/// `d` in RTP ticks at `clock_rate`.
fn ticks(d: Duration, clock_rate: u32) -> u64 {
    let t = d.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The packet sequence of one tone, in sending order (see [`DtmfSender::tone`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DtmfTone {
    code: u8,
    volume: u8,
    timestamp: u32,
    total: u32,
    interval: u32,
    end_spacing: u32,
    next_update: u32,
    ends_sent: u8,
    first: bool,
}

impl DtmfTone {
    /// The tone's length in RTP timestamp units (the final duration field).
    pub fn duration_ticks(&self) -> u32 {
        self.total
    }

    /// Offset of the last end packet: how long audio should stay suppressed.
    pub fn last_send_offset(&self) -> u32 {
        self.total + u32::from(END_PACKET_COPIES - 1) * self.end_spacing
    }

    fn packet(&mut self, duration: u32, end: bool, send_offset: u32) -> DtmfPacket {
        let marker = self.first;
        self.first = false;
        DtmfPacket {
            event: TelephoneEvent {
                event: self.code,
                end,
                volume: self.volume,
                duration: u16::try_from(duration).unwrap_or(u16::MAX),
            },
            marker,
            timestamp: self.timestamp,
            send_offset,
        }
    }
}

impl Iterator for DtmfTone {
    type Item = DtmfPacket;

    fn next(&mut self) -> Option<DtmfPacket> {
        if self.next_update < self.total {
            let offset = self.next_update;
            self.next_update = self.next_update.saturating_add(self.interval);
            return Some(self.packet(offset, false, offset));
        }
        if self.ends_sent < END_PACKET_COPIES {
            let offset = self.total + u32::from(self.ends_sent) * self.end_spacing;
            self.ends_sent += 1;
            return Some(self.packet(self.total, true, offset));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn pkt(code: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event: code,
            end,
            volume: 10,
            duration,
        }
        .encode()
    }

    fn collect(rx: &mut DtmfReceiver, ts: u32, payload: [u8; 4], now: Duration) -> Vec<DtmfEvent> {
        rx.on_packet(ts, &payload, now).unwrap().collect()
    }

    #[test]
    fn digit_codes_round_trip() {
        for code in 0..=15u8 {
            let d = event_digit(code).unwrap();
            assert_eq!(event_code(d), Some(code));
        }
        assert_eq!(event_code('a'), Some(12));
        assert_eq!(event_code('#'), Some(11));
        assert_eq!(event_code('*'), Some(10));
        assert_eq!(event_code('x'), None);
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn payload_decode_encode() {
        // Event 5, E bit, reserved bit set (ignored), volume 10, duration 1600.
        let bytes = [5u8, 0x80 | 0x40 | 10, 0x06, 0x40];
        let ev = TelephoneEvent::decode(&bytes).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 1600
            }
        );
        assert_eq!(ev.encode(), [5, 0x8A, 0x06, 0x40]);
        assert_eq!(ev.digit(), Some('5'));
        assert_eq!(
            TelephoneEvent::decode(&bytes[..3]),
            Err(DtmfError::PayloadLength(3))
        );
        assert_eq!(
            TelephoneEvent::decode(&[0; 8]),
            Err(DtmfError::PayloadLength(8))
        );
        let loud = TelephoneEvent { volume: 200, ..ev };
        assert_eq!(loud.encode()[1] & 0x3F, 63);
    }

    #[test]
    fn redundant_stream_gives_one_event() {
        let mut rx = DtmfReceiver::new(8000);
        let ts = 48_000;
        let mut got = Vec::new();
        got.extend(collect(&mut rx, ts, pkt(1, false, 400), ms(0)));
        got.extend(collect(&mut rx, ts, pkt(1, false, 400), ms(1))); // repeat
        got.extend(collect(&mut rx, ts, pkt(1, false, 800), ms(50)));
        got.extend(collect(&mut rx, ts, pkt(1, false, 1200), ms(100)));
        for i in 0..3 {
            got.extend(collect(&mut rx, ts, pkt(1, true, 1360), ms(120 + 20 * i)));
        }
        assert_eq!(got.len(), 1);
        let e = got[0];
        assert_eq!(e.digit, '1');
        assert_eq!(e.started_at, ts);
        assert_eq!(e.duration_ticks, 1360);
        assert_eq!(e.duration_ms, 170);
        assert!(e.end_seen);
        assert_eq!(rx.duplicates(), 2);
        assert!(!rx.is_pending());
        assert_eq!(rx.poll_timeout(ms(10_000)), None);
    }

    #[test]
    fn lost_start_packets_still_report() {
        let mut rx = DtmfReceiver::new(8000);
        // Only end packets arrive.
        let got = collect(&mut rx, 1000, pkt(11, true, 800), ms(0));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].digit, '#');
        assert_eq!(got[0].duration_ticks, 800);
        assert!(collect(&mut rx, 1000, pkt(11, true, 800), ms(20)).is_empty());
    }

    #[test]
    fn lost_end_packets_closed_by_next_event() {
        let mut rx = DtmfReceiver::new(8000);
        assert!(collect(&mut rx, 1000, pkt(3, false, 400), ms(0)).is_empty());
        assert!(collect(&mut rx, 1000, pkt(3, false, 800), ms(50)).is_empty());
        // Next digit (different timestamp) arrives, already ended: both are reported, in order.
        let got = collect(&mut rx, 5000, pkt(4, true, 640), ms(600));
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].digit, got[0].duration_ticks, got[0].end_seen),
            ('3', 800, false)
        );
        assert_eq!(
            (got[1].digit, got[1].duration_ticks, got[1].end_seen),
            ('4', 640, true)
        );
        // A late end packet of the first digit is stale, not a new press.
        assert!(collect(&mut rx, 1000, pkt(3, true, 960), ms(610)).is_empty());
        assert_eq!(rx.stale(), 1);
    }

    #[test]
    fn lost_end_packets_closed_by_timeout() {
        let mut rx = DtmfReceiver::new(8000);
        assert!(collect(&mut rx, 7, pkt(9, false, 400), ms(1000)).is_empty());
        assert!(collect(&mut rx, 7, pkt(9, false, 800), ms(1050)).is_empty());
        assert_eq!(rx.next_timeout(), Some(ms(1050) + DEFAULT_END_TIMEOUT));
        assert_eq!(rx.poll_timeout(ms(1100)), None);
        let e = rx.poll_timeout(ms(1300)).unwrap();
        assert_eq!((e.digit, e.duration_ticks, e.end_seen), ('9', 800, false));
        // The end packets finally arrive: already reported.
        assert!(collect(&mut rx, 7, pkt(9, true, 960), ms(1310)).is_empty());
        assert_eq!(rx.poll_timeout(ms(5000)), None);
    }

    #[test]
    fn same_digit_twice_is_two_events() {
        let mut rx = DtmfReceiver::new(8000);
        let a = collect(&mut rx, 100, pkt(2, true, 800), ms(0));
        let b = collect(&mut rx, 100 + 4000, pkt(2, true, 800), ms(500));
        assert_eq!(a.len() + b.len(), 2);
    }

    #[test]
    fn timestamp_wrap_between_events() {
        let mut rx = DtmfReceiver::new(8000);
        let first = u32::MAX - 100;
        assert_eq!(collect(&mut rx, first, pkt(1, true, 800), ms(0)).len(), 1);
        let got = collect(&mut rx, 3000, pkt(2, true, 800), ms(500));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].digit, '2');
    }

    #[test]
    fn non_dtmf_events_and_bad_payloads() {
        let mut rx = DtmfReceiver::new(8000);
        assert!(collect(&mut rx, 1, pkt(16, true, 800), ms(0)).is_empty());
        assert_eq!(rx.ignored(), 1);
        assert_eq!(
            rx.on_packet(1, &[1, 2], ms(0)).unwrap_err(),
            DtmfError::PayloadLength(2)
        );
    }

    #[test]
    fn long_event_segments_join() {
        let mut rx = DtmfReceiver::new(48_000);
        let ts = 10_000u32;
        assert!(collect(&mut rx, ts, pkt(0, false, 60_000), ms(0)).is_empty());
        assert!(collect(&mut rx, ts, pkt(0, false, 0xFFFF), ms(40)).is_empty());
        // Next segment starts where the first one ended.
        let seg2 = ts + 0xFFFF;
        assert!(collect(&mut rx, seg2, pkt(0, false, 2400), ms(90)).is_empty());
        let got = collect(&mut rx, seg2, pkt(0, true, 4800), ms(140));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].started_at, ts);
        assert_eq!(got[0].duration_ticks, 0xFFFF + 4800);
    }

    #[test]
    fn sender_sequence() {
        let tx = DtmfSender::new(8000).unwrap();
        let packets: Vec<_> = tx.tone('7', ms(160), 1234).unwrap().collect();
        // Updates at 50, 100, 150 ms (400, 800, 1200 ticks), then 3 ends with 1280.
        let durations: Vec<_> = packets
            .iter()
            .map(|p| (p.event.duration, p.event.end))
            .collect();
        assert_eq!(
            durations,
            [
                (400, false),
                (800, false),
                (1200, false),
                (1280, true),
                (1280, true),
                (1280, true)
            ]
        );
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 1234 && p.event.event == 7));
        let offsets: Vec<_> = packets.iter().map(|p| p.send_offset).collect();
        assert_eq!(offsets, [400, 800, 1200, 1280, 1440, 1600]);
        assert_eq!(packets[0].payload(), [7, 10, 0x01, 0x90]);
    }

    #[test]
    fn short_tone_starts_with_marked_end() {
        let tx = DtmfSender::new(8000).unwrap();
        let packets: Vec<_> = tx.tone('D', ms(40), 0).unwrap().collect();
        assert_eq!(packets.len(), 3);
        assert!(packets[0].marker && packets[0].event.end);
        assert_eq!(packets[0].event.duration, 320);
    }

    #[test]
    fn sender_rejects_bad_requests() {
        let tx = DtmfSender::new(48_000).unwrap();
        assert_eq!(
            tx.tone('x', ms(100), 0).unwrap_err(),
            DtmfError::UnknownDigit('x')
        );
        assert_eq!(tx.tone('1', ms(0), 0).unwrap_err(), DtmfError::ZeroDuration);
        assert!(matches!(
            tx.tone('1', ms(2000), 0),
            Err(DtmfError::DurationTooLong { ticks: 96_000 })
        ));
        assert_eq!(
            DtmfSender::new(0).unwrap_err(),
            DtmfError::InvalidClockRate(0)
        );
        assert_eq!(
            tx.with_update_interval(Duration::ZERO).unwrap_err(),
            DtmfError::InvalidUpdateInterval
        );
    }

    #[test]
    fn sender_to_receiver_with_loss() {
        let tx = DtmfSender::new(8000).unwrap();
        let mut rx = DtmfReceiver::new(8000);
        for (i, digit) in ['1', '*', 'B'].into_iter().enumerate() {
            let start = 10_000 + i as u32 * 8000;
            let mut got = Vec::new();
            // Drop the first (marked) packet and the first two end copies.
            for (k, p) in tx.tone(digit, ms(120), start).unwrap().enumerate() {
                if k == 0 || k == 2 || k == 3 {
                    continue;
                }
                let now = ms(u64::from(start + p.send_offset) / 8);
                got.extend(rx.on_packet(p.timestamp, &p.payload(), now).unwrap());
            }
            assert_eq!(got.len(), 1, "digit {digit}");
            assert_eq!(got[0].digit, digit);
            assert_eq!(got[0].duration_ticks, 960);
            assert!(got[0].end_seen);
        }
    }
}
