//! RFC 3550 extended sequence numbers and timestamps across wrap-around.
//!
//! A 16-bit sequence number wraps every ~21 minutes at 50 packets/s and a
//! 32-bit RTP timestamp every ~25 hours at 48 kHz; ordering logic works on
//! the 64-bit unwrapped values these helpers produce.

/// Unwraps 16-bit RTP sequence numbers into a monotonic 64-bit space.
///
/// Values are placed relative to the highest seen so far, choosing the
/// interpretation closest to it, so late (reordered) packets across a wrap
/// land before the wrap and new ones after.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    /// A fresh unwrapper that has seen no packet.
    pub const fn new() -> Self {
        SeqUnwrapper { highest: None }
    }

    /// The extended value for `seq`, updating the highest seen.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The extended value `seq` would get, without recording it.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            // Start one cycle up so packets reordered before the first one stay representable.
            None => (1u64 << 16) + seq as u64,
            Some(h) => closest(h, seq as u64, 16),
        }
    }

    /// The highest extended value seen so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// Unwraps 32-bit RTP timestamps into a monotonic 64-bit space.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimestampUnwrapper {
    highest: Option<u64>,
}

impl TimestampUnwrapper {
    /// A fresh unwrapper that has seen no timestamp.
    pub const fn new() -> Self {
        TimestampUnwrapper { highest: None }
    }

    /// The extended value for `ts`, updating the highest seen.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = self.peek(ts);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The extended value `ts` would get, without recording it.
    pub fn peek(&self, ts: u32) -> u64 {
        match self.highest {
            None => (1u64 << 32) + ts as u64,
            Some(h) => closest(h, ts as u64, 32),
        }
    }
}

/// The value congruent to `low` modulo 2^bits that is closest to `reference`.
fn closest(reference: u64, low: u64, bits: u32) -> u64 {
    let cycle = 1u64 << bits;
    let half = cycle / 2;
    let base = reference & !(cycle - 1);
    let candidate = base + low;
    if candidate > reference && candidate - reference > half && candidate >= cycle {
        candidate - cycle
    } else if candidate < reference && reference - candidate > half {
        candidate + cycle
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_wraps_forward() {
        let mut u = SeqUnwrapper::new();
        let a = u.unwrap(65534);
        let b = u.unwrap(65535);
        let c = u.unwrap(0);
        let d = u.unwrap(1);
        assert_eq!([b - a, c - b, d - c], [1, 1, 1]);
    }

    #[test]
    fn late_packet_across_wrap_lands_before() {
        let mut u = SeqUnwrapper::new();
        let first = u.unwrap(65535);
        let after = u.unwrap(2);
        let late = u.unwrap(65534);
        assert_eq!(after - first, 3);
        assert_eq!(first - late, 1);
        assert_eq!(u.highest(), Some(after));
    }

    #[test]
    fn packet_before_first_is_representable() {
        let mut u = SeqUnwrapper::new();
        let first = u.unwrap(0);
        let earlier = u.unwrap(65535);
        assert_eq!(first - earlier, 1);
    }

    #[test]
    fn many_wraps_stay_monotonic() {
        let mut u = SeqUnwrapper::new();
        let mut prev = u.unwrap(100);
        for i in 1..300_000u32 {
            let ext = u.unwrap((100 + i) as u16);
            assert_eq!(ext, prev + 1);
            prev = ext;
        }
    }

    #[test]
    fn timestamps_wrap() {
        let mut u = TimestampUnwrapper::new();
        let a = u.unwrap(u32::MAX - 479);
        let b = u.unwrap(480);
        assert_eq!(b - a, 960);
        let late = u.unwrap(u32::MAX - 959);
        assert_eq!(a - late, 480);
    }
}
