//! UTC timestamps as the platform writes them: ISO-8601 with milliseconds, e.g. `2025-12-13T12:00:00.000Z`.
//!
//! A small civil-calendar conversion (days since the Unix epoch ⇄ year/month/day) does the work, so the
//! webhook types need no date-time dependency; the engine never reads a clock, callers pass the time in.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MILLIS_PER_SECOND: u64 = 1_000;
const SECONDS_PER_DAY: u64 = 86_400;
const MILLIS_PER_DAY: u64 = SECONDS_PER_DAY * MILLIS_PER_SECOND;
/// `9999-12-31T23:59:59.999Z`: the last instant a four-digit year can name.
const MAX_UNIX_MILLIS: u64 = 253_402_300_799_999;

/// Why a timestamp could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text is not an ISO-8601 UTC timestamp the platform would send.
    #[error("timestamp `{input}` is not ISO-8601 like 2025-12-13T12:00:00.000Z: {reason}")]
    Malformed {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The instant lies before 1970-01-01 or after 9999-12-31 (no four-digit-year form).
    #[error("instant is outside 1970-01-01T00:00:00.000Z..=9999-12-31T23:59:59.999Z")]
    OutOfRange,
}

/// A UTC instant with millisecond precision, (de)serialized as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// Stored as milliseconds since the Unix epoch, so ordering and arithmetic are plain integer operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_millis: u64,
}

impl Timestamp {
    /// The Unix epoch, `1970-01-01T00:00:00.000Z`.
    pub const UNIX_EPOCH: Timestamp = Timestamp { unix_millis: 0 };

    /// Builds a timestamp from milliseconds since the Unix epoch; fails past year 9999.
    pub fn from_unix_millis(unix_millis: u64) -> Result<Self, TimeError> {
        if unix_millis > MAX_UNIX_MILLIS {
            return Err(TimeError::OutOfRange);
        }
        Ok(Self { unix_millis })
    }

    /// Converts a wall-clock reading (e.g. `SystemTime::now()` taken by the host), truncating to milliseconds.
    pub fn from_system_time(time: SystemTime) -> Result<Self, TimeError> {
        let since_epoch = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TimeError::OutOfRange)?;
        let millis = u64::try_from(since_epoch.as_millis()).map_err(|_| TimeError::OutOfRange)?;
        Self::from_unix_millis(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> u64 {
        self.unix_millis
    }

    /// Whole seconds since the Unix epoch, as the `X-Webhook-Timestamp` header carries them.
    pub fn unix_secs(self) -> u64 {
        self.unix_millis / MILLIS_PER_SECOND
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.unix_millis)
    }

    /// Time elapsed from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        self.unix_millis
            .checked_sub(earlier.unix_millis)
            .map(Duration::from_millis)
    }

    /// This instant moved forward by `delta` (truncated to milliseconds); fails past year 9999.
    pub fn checked_add(self, delta: Duration) -> Result<Self, TimeError> {
        let delta = u64::try_from(delta.as_millis()).map_err(|_| TimeError::OutOfRange)?;
        let millis = self
            .unix_millis
            .checked_add(delta)
            .ok_or(TimeError::OutOfRange)?;
        Self::from_unix_millis(millis)
    }

    /// Parses ISO-8601 / RFC 3339 text: `YYYY-MM-DDTHH:MM:SS`, optional fraction (1–9 digits, truncated to
    /// milliseconds) and `Z` or a `±HH:MM` offset, which is applied to give UTC.
    pub fn parse(input: &str) -> Result<Self, TimeError> {
        parse_iso8601(input).map_err(|reason| TimeError::Malformed {
            input: input.to_owned(),
            reason,
        })
    }
}

impl fmt::Display for Timestamp {
    /// Writes the platform's form, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix_millis / MILLIS_PER_DAY;
        let millis_of_day = self.unix_millis % MILLIS_PER_DAY;
        // `days` is at most ~2.9 million, far inside i64.
        let (year, month, day) = civil_from_days(days as i64);
        let secs_of_day = millis_of_day / MILLIS_PER_SECOND;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            secs_of_day / 3_600,
            secs_of_day / 60 % 60,
            secs_of_day % 60,
            millis_of_day % MILLIS_PER_SECOND
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = TimeError;

    fn try_from(time: SystemTime) -> Result<Self, Self::Error> {
        Self::from_system_time(time)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO-8601 UTC timestamp such as 2025-12-13T12:00:00.000Z")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
///
/// Counts in 400-year eras (146 097 days each) with years starting on 1 March, so the leap day is the
/// last day of a year and month lengths follow the fixed 153-days-per-5-months pattern.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719 468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both values are small and positive by construction.
    (year, month as u32, day as u32)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A byte cursor over the timestamp text; every read reports a specific reason on failure.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, count: usize, what: &'static str) -> Result<u32, &'static str> {
        let end = self.pos + count;
        let slice = self.bytes.get(self.pos..end).ok_or(what)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return Err(what);
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos = end;
        Ok(value)
    }

    fn expect(&mut self, accepted: &[u8], what: &'static str) -> Result<u8, &'static str> {
        match self.bytes.get(self.pos) {
            Some(b) if accepted.contains(b) => {
                self.pos += 1;
                Ok(*b)
            }
            _ => Err(what),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
}

fn parse_iso8601(input: &str) -> Result<Timestamp, &'static str> {
    let mut c = Cursor {
        bytes: input.as_bytes(),
        pos: 0,
    };
    let year = i64::from(c.digits(4, "expected a four-digit year")?);
    c.expect(b"-", "expected `-` after the year")?;
    let month = c.digits(2, "expected a two-digit month")?;
    c.expect(b"-", "expected `-` after the month")?;
    let day = c.digits(2, "expected a two-digit day")?;
    c.expect(b"Tt", "expected `T` between date and time")?;
    let hour = c.digits(2, "expected a two-digit hour")?;
    c.expect(b":", "expected `:` after the hour")?;
    let minute = c.digits(2, "expected two-digit minutes")?;
    c.expect(b":", "expected `:` after the minutes")?;
    let second = c.digits(2, "expected two-digit seconds")?;

    let mut millis = 0u32;
    if c.peek() == Some(b'.') {
        c.pos += 1;
        let start = c.pos;
        while c.peek().is_some_and(|b| b.is_ascii_digit()) {
            if c.pos - start < 3 {
                millis = millis * 10 + u32::from(c.bytes[c.pos] - b'0');
            }
            c.pos += 1;
        }
        let digits = c.pos - start;
        if digits == 0 || digits > 9 {
            return Err("the fraction of a second must have 1 to 9 digits");
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }

    let offset_minutes: i64 = match c.expect(b"Zz+-", "expected `Z` or a `±HH:MM` offset")? {
        b'Z' | b'z' => 0,
        sign => {
            let hours = c.digits(2, "expected a two-digit offset hour")?;
            c.expect(b":", "expected `:` inside the offset")?;
            let minutes = c.digits(2, "expected two-digit offset minutes")?;
            if hours > 23 || minutes > 59 {
                return Err("offset out of range");
            }
            let total = i64::from(hours * 60 + minutes);
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
    };
    if c.pos != c.bytes.len() {
        return Err("unexpected text after the time zone");
    }

    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("day out of range for the month");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range");
    }

    let local_secs = days_from_civil(year, month, day) * SECONDS_PER_DAY as i64
        + i64::from(hour * 3_600 + minute * 60 + second);
    let utc_secs = local_secs - offset_minutes * 60;
    let utc_millis = utc_secs
        .checked_mul(MILLIS_PER_SECOND as i64)
        .and_then(|ms| ms.checked_add(i64::from(millis)))
        .ok_or("instant out of range")?;
    let utc_millis = u64::try_from(utc_millis).map_err(|_| "instant is before 1970")?;
    Timestamp::from_unix_millis(utc_millis).map_err(|_| "instant is after year 9999")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).expect("valid timestamp")
    }

    #[test]
    fn formats_the_platform_example() {
        let t = Timestamp::from_unix_millis(1_765_627_200_000).expect("in range");
        assert_eq!(t.to_string(), "2025-12-13T12:00:00.000Z");
        assert_eq!(t.unix_secs(), 1_765_627_200);
    }

    #[test]
    fn epoch_and_extremes() {
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        let max = Timestamp::from_unix_millis(MAX_UNIX_MILLIS).expect("in range");
        assert_eq!(max.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(ts("9999-12-31T23:59:59.999Z"), max);
        assert_eq!(
            Timestamp::from_unix_millis(MAX_UNIX_MILLIS + 1),
            Err(TimeError::OutOfRange)
        );
    }

    #[test]
    fn parse_round_trips_the_example() {
        let text = "2025-12-13T12:05:30.000Z";
        assert_eq!(ts(text).to_string(), text);
        assert_eq!(ts(text).unix_millis(), 1_765_627_530_000);
    }

    #[test]
    fn leap_days_and_month_ends() {
        assert_eq!(
            ts("2024-02-29T00:00:00.000Z").to_string(),
            "2024-02-29T00:00:00.000Z"
        );
        assert_eq!(
            ts("2000-02-29T23:59:59.999Z").to_string(),
            "2000-02-29T23:59:59.999Z"
        );
        assert!(Timestamp::parse("2023-02-29T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("1900-02-29T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("2025-04-31T00:00:00.000Z").is_err());
        assert!(Timestamp::parse("2025-13-01T00:00:00.000Z").is_err());
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        // 1970 .. 2100 covers the leap-year rules including 2000 (leap) and 2100 (not leap).
        for days in 0..(131 * 366) {
            let (y, m, d) = civil_from_days(days);
            assert!(d >= 1 && d <= days_in_month(y, m), "{y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn fractions_and_offsets() {
        assert_eq!(
            ts("2025-12-13T12:00:00Z").to_string(),
            "2025-12-13T12:00:00.000Z"
        );
        assert_eq!(
            ts("2025-12-13T12:00:00.5Z").to_string(),
            "2025-12-13T12:00:00.500Z"
        );
        assert_eq!(
            ts("2025-12-13T12:00:00.123456789Z").to_string(),
            "2025-12-13T12:00:00.123Z"
        );
        assert_eq!(
            ts("2025-12-13T13:30:00.000+01:30").to_string(),
            "2025-12-13T12:00:00.000Z"
        );
        assert_eq!(
            ts("2025-12-13T07:00:00.000-05:00").to_string(),
            "2025-12-13T12:00:00.000Z"
        );
        assert_eq!(
            ts("2025-12-31T23:30:00.000-01:00").to_string(),
            "2026-01-01T00:30:00.000Z"
        );
    }

    #[test]
    fn rejects_malformed_text_with_a_reason() {
        for bad in [
            "",
            "2025-12-13",
            "2025-12-13 12:00:00Z",
            "2025-12-13T12:00:00",
            "2025-12-13T12:00:00.Z",
            "2025-12-13T12:00:00.0000000000Z",
            "2025-12-13T24:00:00Z",
            "2025-12-13T12:60:00Z",
            "2025-12-13T12:00:60Z",
            "2025-12-13T12:00:00ZZ",
            "2025-12-13T12:00:00+0100",
            "1969-12-31T23:59:59.999Z",
            "+2025-12-13T12:00:00Z",
        ] {
            let err = Timestamp::parse(bad).expect_err(bad);
            assert!(matches!(err, TimeError::Malformed { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("2025-12-13T12:00:00.000Z"));
        }
    }

    #[test]
    fn system_time_conversion() {
        let t = UNIX_EPOCH + Duration::from_micros(1_765_627_200_123_999);
        let stamp = Timestamp::from_system_time(t).expect("after epoch");
        assert_eq!(stamp.to_string(), "2025-12-13T12:00:00.123Z");
        assert_eq!(
            stamp.to_system_time(),
            UNIX_EPOCH + Duration::from_millis(1_765_627_200_123)
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            Timestamp::from_system_time(before),
            Err(TimeError::OutOfRange)
        );
    }

    #[test]
    fn arithmetic() {
        let start = ts("2025-12-13T12:04:06.000Z");
        let end = start
            .checked_add(Duration::from_secs(84))
            .expect("in range");
        assert_eq!(end.to_string(), "2025-12-13T12:05:30.000Z");
        assert_eq!(end.duration_since(start), Some(Duration::from_secs(84)));
        assert_eq!(start.duration_since(end), None);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let t = ts("2025-12-13T12:00:00.000Z");
        let json = serde_json::to_string(&t).expect("serializes");
        assert_eq!(json, "\"2025-12-13T12:00:00.000Z\"");
        let back: Timestamp = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, t);
        let err = serde_json::from_str::<Timestamp>("\"yesterday\"").expect_err("not a timestamp");
        assert!(err.to_string().contains("yesterday"));
        assert!(serde_json::from_str::<Timestamp>("1765627200").is_err());
    }
}
