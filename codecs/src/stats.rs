//! RFC 3550 receiver statistics for one RTP source: loss, reordering, duplicates and
//! interarrival jitter, reduced to the fields of an RTCP receiver-report block.
//!
//! The caller supplies extended sequence numbers (see [`crate::SeqUnwrapper`]) and arrival
//! times; nothing here reads a clock or allocates, so it runs on the per-packet path.

use std::time::Duration;

/// How far behind the highest sequence number duplicates are still told apart from late packets.
pub const DUPLICATE_WINDOW: u64 = 128;

/// Largest positive cumulative loss an RTCP report block can carry (24-bit signed field).
pub const MAX_REPORTED_LOSS: i32 = 0x7F_FFFF;

/// Most negative cumulative loss an RTCP report block can carry (duplicates exceed losses).
pub const MIN_REPORTED_LOSS: i32 = -0x80_0000;

/// Where a packet's sequence number falls relative to those already recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketOrder {
    /// The next expected packet (or the first one of the stream).
    InOrder,
    /// Newer than expected: `missing` packets between it and the previous highest never arrived (yet).
    Gap {
        /// Sequence numbers skipped over.
        missing: u64,
    },
    /// Older than the highest seen and not seen before: reordered or delayed.
    Late,
    /// Already recorded within the last [`DUPLICATE_WINDOW`] sequence numbers.
    Duplicate,
}

/// The fields of one RTCP receiver-report block (RFC 3550 §6.4.1), except the reportee SSRC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReportBlock {
    /// Fraction of packets lost since the previous report, in 1/256 units (A.3).
    pub fraction_lost: u8,
    /// Expected minus received since the start, clamped to the 24-bit signed field.
    pub cumulative_lost: i32,
    /// Sequence cycles counted since the first packet in the high 16 bits, highest sequence in the low 16.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units (A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last sender report received, or 0 if none.
    pub last_sr: u32,
    /// Time since that sender report arrived, in 1/65536 s, or 0 if none.
    pub delay_since_last_sr: u32,
}

/// Running RFC 3550 reception statistics for one synchronisation source.
///
/// Follows appendix A.1 (counters), A.3 (loss) and A.8 (jitter). Like the RFC, duplicates count
/// as received, so cumulative loss can go negative; they are also counted on their own.
#[derive(Clone, Debug)]
pub struct ReceiverStats {
    clock_rate: u32,
    seq: Option<SeqState>,
    /// Jitter estimate scaled by 16, as in the integer form of A.8.
    jitter_q4: u64,
    last_transit: Option<u32>,
    duplicates: u64,
    late: u64,
    last_sr: Option<(u32, Duration)>,
}

/// Sequence-number state, present once the first packet (after a restart) is recorded.
#[derive(Clone, Copy, Debug)]
struct SeqState {
    base: u64,
    max: u64,
    /// `first >> 16`: the cycle the report's extended sequence number counts from.
    first_cycle: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Bit `i` set when `max - i` has been received.
    window: u128,
}

impl ReceiverStats {
    /// Empty statistics for a stream whose RTP clock runs at `clock_rate` Hz.
    pub const fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate,
            seq: None,
            jitter_q4: 0,
            last_transit: None,
            duplicates: 0,
            late: 0,
            last_sr: None,
        }
    }

    /// The RTP clock rate used to convert arrival durations and jitter.
    pub const fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Records a media packet: `rtp_ts` is its timestamp, `arrival` its arrival time in RTP
    /// timestamp units on any local timeline (only differences matter; it may wrap).
    /// Duplicates are counted but do not update the jitter estimate.
    pub fn record(&mut self, ext_seq: u64, rtp_ts: u32, arrival: u32) -> PacketOrder {
        let order = self.record_untimed(ext_seq);
        if order != PacketOrder::Duplicate {
            self.update_jitter(rtp_ts, arrival);
        }
        order
    }

    /// [`record`](Self::record) with the arrival given as time since a host-chosen epoch.
    pub fn record_at(&mut self, ext_seq: u64, rtp_ts: u32, arrival: Duration) -> PacketOrder {
        let ticks = self.ticks_at(arrival);
        self.record(ext_seq, rtp_ts, ticks)
    }

    /// Records a packet for loss accounting only, leaving jitter untouched: for payloads whose
    /// timestamp is not a sampling instant (RFC 4733 events repeat one timestamp).
    pub fn record_untimed(&mut self, ext_seq: u64) -> PacketOrder {
        let Some(s) = self.seq.as_mut() else {
            self.seq = Some(SeqState {
                base: ext_seq,
                max: ext_seq,
                first_cycle: ext_seq >> 16,
                received: 1,
                expected_prior: 0,
                received_prior: 0,
                window: 1,
            });
            return PacketOrder::InOrder;
        };
        s.received += 1;
        if ext_seq > s.max {
            let step = ext_seq - s.max;
            s.window = if step >= DUPLICATE_WINDOW {
                1
            } else {
                (s.window << step) | 1
            };
            s.max = ext_seq;
            return if step == 1 {
                PacketOrder::InOrder
            } else {
                PacketOrder::Gap { missing: step - 1 }
            };
        }
        let behind = s.max - ext_seq;
        if behind >= DUPLICATE_WINDOW {
            self.late += 1;
            return PacketOrder::Late;
        }
        let bit = 1u128 << behind;
        if s.window & bit != 0 {
            self.duplicates += 1;
            return PacketOrder::Duplicate;
        }
        s.window |= bit;
        // A packet reordered ahead of the first one received extends the expected range.
        if ext_seq < s.base {
            s.base = ext_seq;
        }
        self.late += 1;
        PacketOrder::Late
    }

    /// Forgets the sequence state (A.1 `init_seq`) after the sender restarted its numbering;
    /// the next packet becomes the new base. Jitter and the duplicate/late counts are kept.
    pub fn restart(&mut self) {
        self.seq = None;
        self.last_transit = None;
    }

    /// `t` (time since the host's epoch) in RTP timestamp units, wrapping like RTP timestamps do.
    pub fn ticks_at(&self, t: Duration) -> u32 {
        let ticks = t.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
        ticks as u32
    }

    /// Packets recorded since the start (or restart), duplicates included as in RFC 3550.
    pub fn received(&self) -> u64 {
        self.seq.map_or(0, |s| s.received)
    }

    /// Packets expected: highest minus lowest extended sequence number, plus one.
    pub fn expected(&self) -> u64 {
        self.seq.map_or(0, |s| s.max - s.base + 1)
    }

    /// Expected minus received, unclamped; negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received() as i64
    }

    /// The highest extended sequence number recorded, if any.
    pub fn highest_seq(&self) -> Option<u64> {
        self.seq.map(|s| s.max)
    }

    /// Packets seen twice within the duplicate window.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number had (reordered or delayed).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Current interarrival jitter in RTP timestamp units.
    pub fn jitter_ticks(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// Current interarrival jitter as a duration.
    pub fn jitter(&self) -> Duration {
        if self.clock_rate == 0 {
            return Duration::ZERO;
        }
        let nanos = u64::from(self.jitter_ticks()) * 1_000_000_000 / u64::from(self.clock_rate);
        Duration::from_nanos(nanos)
    }

    /// Notes an RTCP sender report from this source: its 64-bit NTP timestamp and arrival time,
    /// so the next report block can carry LSR and DLSR for round-trip estimation.
    pub fn on_sender_report(&mut self, ntp_timestamp: u64, arrival: Duration) {
        self.last_sr = Some(((ntp_timestamp >> 16) as u32, arrival));
    }

    /// The report-block fields as of `now` (same timeline as [`on_sender_report`](Self::on_sender_report)),
    /// and starts a new interval for the next fraction-lost computation (A.3).
    pub fn report_block(&mut self, now: Duration) -> ReportBlock {
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => {
                let elapsed = now.saturating_sub(at);
                let units = elapsed.as_nanos() * 65_536 / 1_000_000_000;
                (lsr, u32::try_from(units).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        let jitter = self.jitter_ticks();
        let Some(s) = self.seq.as_mut() else {
            return ReportBlock {
                jitter,
                last_sr,
                delay_since_last_sr,
                ..ReportBlock::default()
            };
        };
        let expected = s.max - s.base + 1;
        let lost = expected as i64 - s.received as i64;
        let cumulative_lost = lost.clamp(MIN_REPORTED_LOSS.into(), MAX_REPORTED_LOSS.into()) as i32;

        let expected_interval = expected.saturating_sub(s.expected_prior);
        let received_interval = s.received.saturating_sub(s.received_prior);
        s.expected_prior = expected;
        s.received_prior = s.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so the quotient fits in 8 bits.
            ((lost_interval as u64).saturating_mul(256) / expected_interval).min(255) as u8
        };

        let cycles = (s.max >> 16).wrapping_sub(s.first_cycle);
        let extended_highest_seq = ((cycles << 16) | (s.max & 0xFFFF)) as u32;
        ReportBlock {
            fraction_lost,
            cumulative_lost,
            extended_highest_seq,
            jitter,
            last_sr,
            delay_since_last_sr,
        }
    }

    /// A.8: J += (|D(i-1,i)| - J) / 16, kept in integer form scaled by 16.
    fn update_jitter(&mut self, rtp_ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(prev) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_no_loss() {
        let mut s = ReceiverStats::new(8000);
        for i in 0..50u64 {
            let order = s.record(1000 + i, (i * 160) as u32, (i * 160) as u32);
            assert_eq!(order, PacketOrder::InOrder);
        }
        let rb = s.report_block(Duration::ZERO);
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 0);
        assert_eq!(rb.jitter, 0);
        assert_eq!(s.expected(), 50);
        assert_eq!(s.received(), 50);
    }

    #[test]
    fn fraction_lost_for_a_known_pattern() {
        let mut s = ReceiverStats::new(8000);
        // Interval 1: 100..=119 with every multiple of 5 missing. 100 itself never arrives, so
        // the range starts at 101: 19 expected, 16 received, 3 lost (105, 110, 115).
        for seq in 100..120u64 {
            if seq % 5 != 0 {
                s.record_untimed(seq);
            }
        }
        assert_eq!(s.expected(), 19);
        let rb = s.report_block(Duration::ZERO);
        assert_eq!(s.received(), 16);
        assert_eq!(rb.cumulative_lost, 3);
        assert_eq!(rb.fraction_lost, (3 * 256 / 19) as u8);

        // Interval 2: 120..=139, 2 lost (125, 126).
        for seq in 120..140u64 {
            if seq != 125 && seq != 126 {
                s.record_untimed(seq);
            }
        }
        let rb = s.report_block(Duration::ZERO);
        assert_eq!(rb.fraction_lost, (2 * 256 / 20) as u8); // 25
        assert_eq!(rb.cumulative_lost, 5);

        // Interval 3: the two late ones arrive plus 140..=149: negative interval loss reports 0.
        s.record_untimed(125);
        s.record_untimed(126);
        for seq in 140..150u64 {
            s.record_untimed(seq);
        }
        let rb = s.report_block(Duration::ZERO);
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 3);
        assert_eq!(s.late(), 2);
    }

    #[test]
    fn duplicates_make_loss_negative() {
        let mut s = ReceiverStats::new(8000);
        s.record_untimed(10);
        s.record_untimed(11);
        assert_eq!(s.record_untimed(11), PacketOrder::Duplicate);
        assert_eq!(s.record_untimed(10), PacketOrder::Duplicate);
        assert_eq!(s.cumulative_lost(), -2);
        assert_eq!(s.duplicates(), 2);
        assert_eq!(s.report_block(Duration::ZERO).cumulative_lost, -2);
    }

    #[test]
    fn cumulative_loss_clamps_to_24_bits() {
        let mut s = ReceiverStats::new(8000);
        s.record_untimed(0);
        s.record_untimed(20_000_000);
        assert_eq!(
            s.report_block(Duration::ZERO).cumulative_lost,
            MAX_REPORTED_LOSS
        );
    }

    #[test]
    fn order_classification() {
        let mut s = ReceiverStats::new(8000);
        assert_eq!(s.record_untimed(500), PacketOrder::InOrder);
        assert_eq!(s.record_untimed(501), PacketOrder::InOrder);
        assert_eq!(s.record_untimed(505), PacketOrder::Gap { missing: 3 });
        assert_eq!(s.record_untimed(503), PacketOrder::Late);
        assert_eq!(s.record_untimed(503), PacketOrder::Duplicate);
        assert_eq!(s.record_untimed(499), PacketOrder::Late);
        // 499 precedes the first packet: it widens the expected range instead of going negative.
        assert_eq!(s.expected(), 7);
        assert_eq!(s.received(), 6);
        assert_eq!(s.record_untimed(505 - 200), PacketOrder::Late);
    }

    #[test]
    fn extended_highest_counts_cycles_from_first_packet() {
        let mut s = ReceiverStats::new(8000);
        // As produced by SeqUnwrapper: first packet one cycle up.
        let first = (1u64 << 16) + 65_530;
        for i in 0..10 {
            s.record_untimed(first + i);
        }
        let rb = s.report_block(Duration::ZERO);
        assert_eq!(rb.extended_highest_seq, (1 << 16) | 3);
    }

    #[test]
    fn jitter_matches_hand_computed_a8() {
        // 8 kHz, 20 ms packets (160 ticks). Arrival offsets (ticks) relative to the nominal time:
        // 0, +8, 0, +40, -16 (i.e. transit 0, 8, 0, 40, -16).
        // |D|: 8, 8, 40, 56. Integer A.8 on J*16:
        //   J16 = 0 + 8 - ((0 + 8) >> 4)        = 8
        //   J16 = 8 + 8 - ((8 + 8) >> 4)        = 15
        //   J16 = 15 + 40 - ((15 + 8) >> 4)     = 54
        //   J16 = 54 + 56 - ((54 + 8) >> 4)     = 107
        // Reported jitter = 107 >> 4 = 6 ticks.
        let offsets: [i64; 5] = [0, 8, 0, 40, -16];
        let mut s = ReceiverStats::new(8000);
        let base_arrival = 1_000_000i64;
        for (i, off) in offsets.iter().enumerate() {
            let ts = 3_000u32.wrapping_add(i as u32 * 160);
            let arrival = (base_arrival + i as i64 * 160 + off) as u32;
            s.record(7 + i as u64, ts, arrival);
        }
        assert_eq!(s.jitter_q4, 107);
        assert_eq!(s.jitter_ticks(), 6);
        assert_eq!(s.report_block(Duration::ZERO).jitter, 6);
        assert_eq!(s.jitter(), Duration::from_micros(750));
    }

    #[test]
    fn jitter_survives_timestamp_and_clock_wrap() {
        let mut s = ReceiverStats::new(8000);
        let mut ts = u32::MAX - 320;
        let mut arrival = u32::MAX - 100;
        for seq in 0..10u64 {
            s.record(seq, ts, arrival);
            ts = ts.wrapping_add(160);
            arrival = arrival.wrapping_add(160);
        }
        assert_eq!(s.jitter_ticks(), 0);
    }

    #[test]
    fn arrival_as_duration() {
        let mut s = ReceiverStats::new(48_000);
        assert_eq!(s.ticks_at(Duration::from_millis(20)), 960);
        s.record_at(1, 0, Duration::from_millis(0));
        s.record_at(2, 960, Duration::from_millis(30));
        // |D| = 480 ticks -> J16 = 480 - 0 = 480 -> 30 ticks.
        assert_eq!(s.jitter_ticks(), 30);
    }

    #[test]
    fn lsr_and_dlsr() {
        let mut s = ReceiverStats::new(8000);
        s.record_untimed(1);
        let ntp = 0x1234_5678_9ABC_DEF0u64;
        s.on_sender_report(ntp, Duration::from_secs(10));
        let rb = s.report_block(Duration::from_millis(10_500));
        assert_eq!(rb.last_sr, 0x5678_9ABC);
        assert_eq!(rb.delay_since_last_sr, 32_768);
    }

    #[test]
    fn restart_rebases_sequence() {
        let mut s = ReceiverStats::new(8000);
        s.record_untimed(100);
        s.record_untimed(101);
        s.restart();
        assert_eq!(s.received(), 0);
        assert_eq!(s.record_untimed(5), PacketOrder::InOrder);
        assert_eq!(s.expected(), 1);
    }
}
