//! The session's payload-type table: which [`PayloadFormat`] each RTP payload type number
//! carries, filled by the host from its SDP (`a=rtpmap` lines) on top of the static defaults.
//!
//! Lookups are a plain array index, so the per-packet path pays nothing; parsing happens
//! once per offer/answer.

use std::fmt;
use std::ops::RangeInclusive;

use thiserror::Error;

use crate::{PayloadFormat, SampleRate};

/// Payload types reserved for dynamic assignment through SDP (RFC 3551 §3).
pub const DYNAMIC_PAYLOAD_TYPES: RangeInclusive<u8> = 96..=127;

/// Static payload type of G.711 µ-law (RFC 3551).
pub const PCMU_PAYLOAD_TYPE: u8 = 0;

/// Static payload type of G.711 A-law (RFC 3551).
pub const PCMA_PAYLOAD_TYPE: u8 = 8;

/// Why a payload-type mapping was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A payload type outside 0..=127.
    #[error("RTP payload type {0} is out of range 0..=127")]
    InvalidPayloadType(u32),
    /// The line is not an rtpmap attribute at all.
    #[error("not an rtpmap attribute (expected `a=rtpmap:<pt> <name>/<rate>[/<channels>]`)")]
    NotRtpmap,
    /// An rtpmap attribute whose fields cannot be read.
    #[error("malformed rtpmap attribute: {0}")]
    Malformed(&'static str),
    /// An encoding voxline has no codec for (e.g. G722, G729, CN).
    #[error("unsupported encoding {0:?} (supported: opus, PCMU, PCMA, L16, telephone-event)")]
    UnsupportedEncoding(String),
    /// A supported encoding at a clock rate voxline does not handle.
    #[error("{encoding} at {rate} Hz is not supported")]
    UnsupportedClockRate {
        /// Canonical encoding name.
        encoding: &'static str,
        /// The clock rate given.
        rate: u32,
    },
    /// A supported encoding with a channel count voxline does not handle.
    #[error("{encoding} with {channels} channels is not supported")]
    UnsupportedChannels {
        /// Canonical encoding name.
        encoding: &'static str,
        /// The channel count given.
        channels: u32,
    },
    /// A format placed on a payload type that is statically assigned to another one.
    #[error("payload type {pt} is statically assigned to {expected}, not {encoding}")]
    StaticConflict {
        /// The payload type.
        pt: u8,
        /// The encoding RFC 3551 assigns to it.
        expected: &'static str,
        /// The encoding that was offered.
        encoding: &'static str,
    },
    /// A format placed on a payload type that is neither its static one nor dynamic.
    #[error(
        "{encoding} cannot use payload type {pt}: use its static type or a dynamic one (96..=127)"
    )]
    NotDynamic {
        /// The payload type.
        pt: u8,
        /// Canonical encoding name.
        encoding: &'static str,
    },
}

/// The canonical `a=rtpmap` encoding name of a format.
pub fn encoding_name(format: PayloadFormat) -> &'static str {
    match format {
        PayloadFormat::Opus { .. } => "opus",
        PayloadFormat::Pcmu => "PCMU",
        PayloadFormat::Pcma => "PCMA",
        PayloadFormat::L16 { .. } => "L16",
        PayloadFormat::TelephoneEvent { .. } => "telephone-event",
    }
}

/// Whether `format` may be carried on payload type `pt`, by the RFC 3551 assignments.
fn check_assignment(pt: u8, format: PayloadFormat) -> Result<(), RegistryError> {
    if pt > 0x7F {
        return Err(RegistryError::InvalidPayloadType(pt.into()));
    }
    let encoding = encoding_name(format);
    let static_owner = match pt {
        PCMU_PAYLOAD_TYPE => Some(PayloadFormat::Pcmu),
        PCMA_PAYLOAD_TYPE => Some(PayloadFormat::Pcma),
        _ => None,
    };
    match static_owner {
        Some(owner) if owner == format => Ok(()),
        Some(owner) => Err(RegistryError::StaticConflict {
            pt,
            expected: encoding_name(owner),
            encoding,
        }),
        None if DYNAMIC_PAYLOAD_TYPES.contains(&pt) => Ok(()),
        None => Err(RegistryError::NotDynamic { pt, encoding }),
    }
}

/// One parsed `a=rtpmap` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The payload type number.
    pub payload_type: u8,
    /// The format it maps to.
    pub format: PayloadFormat,
}

impl fmt::Display for RtpMap {
    /// Formats the attribute as it appears in SDP, e.g. `a=rtpmap:111 opus/48000/2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a=rtpmap:{} {}/{}",
            self.payload_type,
            encoding_name(self.format),
            self.format.clock_rate()
        )?;
        if matches!(self.format, PayloadFormat::Opus { .. }) {
            f.write_str("/2")?;
        }
        Ok(())
    }
}

/// Parses `a=rtpmap:<pt> <name>/<rate>[/<channels>]` (the `a=` prefix and surrounding
/// whitespace are optional; names are case-insensitive). Opus maps to
/// `PayloadFormat::Opus { pcm_rate: opus_pcm_rate }`, the local decode/encode rate.
pub fn parse_rtpmap(line: &str, opus_pcm_rate: SampleRate) -> Result<RtpMap, RegistryError> {
    let line = line.trim();
    let body = line.strip_prefix("a=").unwrap_or(line);
    let body = body
        .strip_prefix("rtpmap:")
        .ok_or(RegistryError::NotRtpmap)?;
    let (pt, encoding) =
        body.split_once(|c: char| c.is_ascii_whitespace())
            .ok_or(RegistryError::Malformed(
                "missing encoding after the payload type",
            ))?;
    let pt: u32 = pt
        .parse()
        .map_err(|_| RegistryError::Malformed("payload type is not a number"))?;
    let pt = u8::try_from(pt)
        .ok()
        .filter(|&p| p <= 0x7F)
        .ok_or(RegistryError::InvalidPayloadType(pt))?;

    let mut fields = encoding.trim().split('/');
    let name = fields.next().unwrap_or_default();
    if name.is_empty() {
        return Err(RegistryError::Malformed("empty encoding name"));
    }
    let rate: u32 = fields
        .next()
        .ok_or(RegistryError::Malformed("missing clock rate"))?
        .parse()
        .map_err(|_| RegistryError::Malformed("clock rate is not a number"))?;
    let channels: Option<u32> = fields
        .next()
        .map(|c| c.parse())
        .transpose()
        .map_err(|_| RegistryError::Malformed("channel count is not a number"))?;
    if fields.next().is_some() {
        return Err(RegistryError::Malformed("too many '/'-separated fields"));
    }

    let mono = |encoding: &'static str| match channels {
        None | Some(1) => Ok(()),
        Some(channels) => Err(RegistryError::UnsupportedChannels { encoding, channels }),
    };
    let rate_is = |encoding: &'static str, expected: u32| {
        if rate == expected {
            Ok(())
        } else {
            Err(RegistryError::UnsupportedClockRate { encoding, rate })
        }
    };
    let format = if name.eq_ignore_ascii_case("opus") {
        rate_is("opus", 48_000)?;
        // RFC 7587 always signals 2 channels, whatever is actually sent.
        match channels {
            None | Some(2) => {}
            Some(channels) => {
                return Err(RegistryError::UnsupportedChannels {
                    encoding: "opus",
                    channels,
                })
            }
        }
        PayloadFormat::Opus {
            pcm_rate: opus_pcm_rate,
        }
    } else if name.eq_ignore_ascii_case("PCMU") {
        rate_is("PCMU", 8_000)?;
        mono("PCMU")?;
        PayloadFormat::Pcmu
    } else if name.eq_ignore_ascii_case("PCMA") {
        rate_is("PCMA", 8_000)?;
        mono("PCMA")?;
        PayloadFormat::Pcma
    } else if name.eq_ignore_ascii_case("L16") {
        mono("L16")?;
        let rate = SampleRate::from_hz(rate).map_err(|_| RegistryError::UnsupportedClockRate {
            encoding: "L16",
            rate,
        })?;
        PayloadFormat::L16 { rate }
    } else if name.eq_ignore_ascii_case("telephone-event") {
        mono("telephone-event")?;
        if rate < 1000 {
            return Err(RegistryError::UnsupportedClockRate {
                encoding: "telephone-event",
                rate,
            });
        }
        PayloadFormat::TelephoneEvent { clock_rate: rate }
    } else {
        return Err(RegistryError::UnsupportedEncoding(name.to_owned()));
    };
    check_assignment(pt, format)?;
    Ok(RtpMap {
        payload_type: pt,
        format,
    })
}

/// Payload type → format table for one RTP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadRegistry {
    formats: [Option<PayloadFormat>; 128],
    opus_pcm_rate: SampleRate,
}

impl Default for PayloadRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl PayloadRegistry {
    /// A table holding the static defaults 0 = PCMU and 8 = PCMA; Opus decodes at 48 kHz.
    pub fn new() -> Self {
        let mut reg = Self::empty();
        reg.formats[usize::from(PCMU_PAYLOAD_TYPE)] = Some(PayloadFormat::Pcmu);
        reg.formats[usize::from(PCMA_PAYLOAD_TYPE)] = Some(PayloadFormat::Pcma);
        reg
    }

    /// A table with no mapping at all, for sessions whose SDP lists every format explicitly.
    pub fn empty() -> Self {
        PayloadRegistry {
            formats: [None; 128],
            opus_pcm_rate: SampleRate::Hz48000,
        }
    }

    /// Sets the PCM rate Opus entries added by [`insert_rtpmap`](Self::insert_rtpmap) decode to.
    pub fn with_opus_pcm_rate(mut self, rate: SampleRate) -> Self {
        self.opus_pcm_rate = rate;
        self
    }

    /// Maps `pt` to `format`, returning the previous mapping; rejects assignments that
    /// contradict RFC 3551 (see [`RegistryError`]).
    pub fn insert(
        &mut self,
        pt: u8,
        format: PayloadFormat,
    ) -> Result<Option<PayloadFormat>, RegistryError> {
        check_assignment(pt, format)?;
        let slot = self
            .formats
            .get_mut(usize::from(pt))
            .ok_or(RegistryError::InvalidPayloadType(pt.into()))?;
        Ok(slot.replace(format))
    }

    /// Parses an `a=rtpmap` line and inserts it; returns what was added.
    pub fn insert_rtpmap(&mut self, line: &str) -> Result<RtpMap, RegistryError> {
        let map = parse_rtpmap(line, self.opus_pcm_rate)?;
        self.insert(map.payload_type, map.format)?;
        Ok(map)
    }

    /// The format of payload type `pt`, if mapped (any `pt` is safe to ask about).
    pub fn get(&self, pt: u8) -> Option<PayloadFormat> {
        self.formats.get(usize::from(pt)).copied().flatten()
    }

    /// Removes the mapping of `pt`, returning it.
    pub fn remove(&mut self, pt: u8) -> Option<PayloadFormat> {
        self.formats.get_mut(usize::from(pt)).and_then(Option::take)
    }

    /// The lowest payload type whose format satisfies `pred`, e.g. to find the session's
    /// telephone-event type for sending DTMF.
    pub fn find(&self, pred: impl Fn(PayloadFormat) -> bool) -> Option<u8> {
        self.iter().find(|&(_, f)| pred(f)).map(|(pt, _)| pt)
    }

    /// All mappings, lowest payload type first.
    pub fn iter(&self) -> impl Iterator<Item = (u8, PayloadFormat)> + '_ {
        (0u8..)
            .zip(self.formats.iter())
            .filter_map(|(pt, f)| f.map(|f| (pt, f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<RtpMap, RegistryError> {
        parse_rtpmap(line, SampleRate::Hz16000)
    }

    #[test]
    fn static_defaults() {
        let reg = PayloadRegistry::new();
        assert_eq!(reg.get(0), Some(PayloadFormat::Pcmu));
        assert_eq!(reg.get(8), Some(PayloadFormat::Pcma));
        assert_eq!(reg.get(96), None);
        assert_eq!(reg.get(200), None);
        assert_eq!(PayloadRegistry::empty().get(0), None);
        assert_eq!(reg.iter().count(), 2);
    }

    #[test]
    fn parses_the_usual_rtpmaps() {
        assert_eq!(
            parse("a=rtpmap:111 opus/48000/2").unwrap(),
            RtpMap {
                payload_type: 111,
                format: PayloadFormat::Opus {
                    pcm_rate: SampleRate::Hz16000
                }
            }
        );
        assert_eq!(
            parse("a=rtpmap:0 PCMU/8000").unwrap().format,
            PayloadFormat::Pcmu
        );
        assert_eq!(
            parse("a=rtpmap:8 PCMA/8000\r\n").unwrap().format,
            PayloadFormat::Pcma
        );
        assert_eq!(
            parse("rtpmap:97 L16/16000").unwrap().format,
            PayloadFormat::L16 {
                rate: SampleRate::Hz16000
            }
        );
        assert_eq!(
            parse("a=rtpmap:101 telephone-event/8000").unwrap(),
            RtpMap {
                payload_type: 101,
                format: PayloadFormat::TelephoneEvent { clock_rate: 8000 }
            }
        );
        // Names are case-insensitive; a channel count of 1 is allowed for mono formats.
        assert_eq!(
            parse("a=rtpmap:100 pcmu/8000/1").unwrap().format,
            PayloadFormat::Pcmu
        );
        assert_eq!(
            parse("a=rtpmap:96 OPUS/48000").unwrap().format,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz16000
            }
        );
    }

    #[test]
    fn rtpmap_errors_are_specific() {
        use RegistryError::*;
        assert_eq!(parse("a=fmtp:111 minptime=10"), Err(NotRtpmap));
        assert_eq!(
            parse("a=rtpmap:111"),
            Err(Malformed("missing encoding after the payload type"))
        );
        assert_eq!(
            parse("a=rtpmap:x opus/48000/2"),
            Err(Malformed("payload type is not a number"))
        );
        assert_eq!(
            parse("a=rtpmap:128 opus/48000/2"),
            Err(InvalidPayloadType(128))
        );
        assert_eq!(
            parse("a=rtpmap:999999 opus/48000/2"),
            Err(InvalidPayloadType(999_999))
        );
        assert_eq!(
            parse("a=rtpmap:111 opus"),
            Err(Malformed("missing clock rate"))
        );
        assert_eq!(
            parse("a=rtpmap:111 opus/fast"),
            Err(Malformed("clock rate is not a number"))
        );
        assert_eq!(
            parse("a=rtpmap:111 opus/48000/2/1"),
            Err(Malformed("too many '/'-separated fields"))
        );
        assert_eq!(
            parse("a=rtpmap:9 G722/8000"),
            Err(UnsupportedEncoding("G722".into()))
        );
        assert_eq!(
            parse("a=rtpmap:111 opus/16000/2"),
            Err(UnsupportedClockRate {
                encoding: "opus",
                rate: 16000
            })
        );
        assert_eq!(
            parse("a=rtpmap:111 opus/48000/1"),
            Err(UnsupportedChannels {
                encoding: "opus",
                channels: 1
            })
        );
        assert_eq!(
            parse("a=rtpmap:98 L16/44100"),
            Err(UnsupportedClockRate {
                encoding: "L16",
                rate: 44100
            })
        );
        assert_eq!(
            parse("a=rtpmap:98 L16/16000/2"),
            Err(UnsupportedChannels {
                encoding: "L16",
                channels: 2
            })
        );
        assert_eq!(
            parse("a=rtpmap:0 PCMA/8000"),
            Err(StaticConflict {
                pt: 0,
                expected: "PCMU",
                encoding: "PCMA"
            })
        );
        assert_eq!(
            parse("a=rtpmap:50 opus/48000/2"),
            Err(NotDynamic {
                pt: 50,
                encoding: "opus"
            })
        );
        assert!(parse("a=rtpmap:101 telephone-event/0").is_err());
    }

    #[test]
    fn registry_insert_lookup_and_find() {
        let mut reg = PayloadRegistry::new().with_opus_pcm_rate(SampleRate::Hz24000);
        let opus = reg.insert_rtpmap("a=rtpmap:111 opus/48000/2").unwrap();
        assert_eq!(
            opus.format,
            PayloadFormat::Opus {
                pcm_rate: SampleRate::Hz24000
            }
        );
        reg.insert_rtpmap("a=rtpmap:101 telephone-event/48000")
            .unwrap();
        assert_eq!(reg.get(111), Some(opus.format));
        assert_eq!(
            reg.find(|f| matches!(f, PayloadFormat::TelephoneEvent { .. })),
            Some(101)
        );
        // Replacing returns the previous mapping.
        let prev = reg.insert(111, PayloadFormat::Pcmu).unwrap();
        assert_eq!(prev, Some(opus.format));
        assert_eq!(reg.remove(111), Some(PayloadFormat::Pcmu));
        assert_eq!(reg.remove(111), None);
        assert_eq!(
            reg.insert(200, PayloadFormat::Pcmu),
            Err(RegistryError::InvalidPayloadType(200))
        );
        assert!(reg.insert(8, PayloadFormat::Pcmu).is_err());
        let pts: Vec<u8> = reg.iter().map(|(pt, _)| pt).collect();
        assert_eq!(pts, [0, 8, 101]);
    }

    #[test]
    fn display_round_trips() {
        for line in [
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:97 L16/16000",
            "a=rtpmap:101 telephone-event/8000",
        ] {
            let map = parse(line).unwrap();
            assert_eq!(map.to_string(), line);
        }
    }
}
