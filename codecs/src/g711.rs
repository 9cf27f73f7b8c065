//! G.711 µ-law (PCMU) and A-law (PCMA), bit-exact with ITU-T G.711.
//!
//! Decoding is a 256-entry table built at compile time; µ-law encoding is a
//! 16 KiB table indexed by the sample's top 14 bits (also built at compile
//! time from the arithmetic encoder), A-law encoding a few integer operations
//! per sample. Samples are 16-bit linear PCM: µ-law works on
//! the top 14 bits and A-law on the top 13, as in the ITU-T G.191 reference
//! software, so every code decodes to the same value the reference produces.

/// The µ-law code for silence (positive zero); `0x7F` (negative zero) also decodes to 0.
pub const ULAW_SILENCE: u8 = 0xFF;

/// The A-law code closest to silence (decodes to +8).
pub const ALAW_SILENCE: u8 = 0xD5;

/// Linear value of every µ-law code, indexed by the code.
pub static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();

/// Linear value of every A-law code, indexed by the code.
pub static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

const fn ulaw_expand(code: u8) -> i16 {
    // Codes are transmitted inverted; after inversion bit 7 set means negative.
    let u = !code;
    let segment = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    // Reconstruction level in the 14-bit domain is ((2m + 33) << e) - 33; scale by 4 to 16 bits.
    let biased = ((mantissa << 3) + 0x84) << segment;
    let magnitude = biased - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_expand(code: u8) -> i16 {
    // Even bits are inverted on the wire; after that bit 7 set means positive.
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mut level = (a & 0x0F) as i32;
    if segment > 0 {
        level += 16;
    }
    // Mid-point of the quantisation interval, in the 16-bit domain (13 bits << 3).
    level = (level << 4) + 8;
    if segment > 1 {
        level <<= segment - 1;
    }
    if a & 0x80 != 0 {
        level as i16
    } else {
        -level as i16
    }
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_expand(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_expand(i as u8);
        i += 1;
    }
    table
}

/// Decodes one µ-law code to 16-bit linear PCM.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Decodes one A-law code to 16-bit linear PCM.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// µ-law code of every 14-bit sample (a 16-bit sample shifted right by 2), indexed by its
/// two's complement bits: one load per sample instead of a branch and a leading-zero count.
static LINEAR14_TO_ULAW: [u8; 1 << 14] = build_ulaw_encode_table();

const fn build_ulaw_encode_table() -> [u8; 1 << 14] {
    let mut table = [0u8; 1 << 14];
    let mut i = 0;
    while i < (1 << 14) {
        // Back to the 16-bit sample whose top 14 bits are `i` (two's complement).
        let sample = ((i << 2) as u16) as i16;
        table[i] = ulaw_compress(sample);
        i += 1;
    }
    table
}

/// Encodes one 16-bit linear sample to µ-law (truncating to 14 bits first, as G.191 does).
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    LINEAR14_TO_ULAW[((sample as u16) >> 2) as usize]
}

/// The arithmetic µ-law encoder the table is built from.
const fn ulaw_compress(sample: i16) -> u8 {
    // Magnitude in the 14-bit domain; negative values use the one's complement
    // so that -1 maps to the same magnitude as 0 (the two zero codes).
    let (magnitude, sign) = if sample < 0 {
        (((!sample) >> 2) as u32, 0x00u8)
    } else {
        ((sample >> 2) as u32, 0x80u8)
    };
    // Bias by 33 so that every segment starts at a power of two; clip at the top.
    let biased = if magnitude + 33 < 0x1FFF {
        magnitude + 33
    } else {
        0x1FFF
    };
    // biased is in 33..=8191, i.e. 6 to 13 significant bits: segment 0 to 7.
    let bits = 32 - biased.leading_zeros();
    let segment = bits - 6;
    let mantissa = (biased >> (segment + 1)) & 0x0F;
    let code = ((segment << 4) | mantissa) as u8;
    (!code & 0x7F) | sign
}

/// Encodes one 16-bit linear sample to A-law (truncating to 13 bits first, as G.191 does).
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (magnitude, sign) = if sample < 0 {
        (((!sample) >> 4) as u32, 0x00u8)
    } else {
        ((sample >> 4) as u32, 0x80u8)
    };
    // magnitude is 0..=2047 (12 bits): segment 0 is linear below 16, then one
    // segment per additional significant bit.
    let code = if magnitude < 16 {
        magnitude as u8
    } else {
        let bits = 32 - magnitude.leading_zeros();
        let segment = bits - 4;
        let mantissa = (magnitude >> (segment - 1)) & 0x0F;
        ((segment << 4) | mantissa) as u8
    };
    (code | sign) ^ 0x55
}

/// Decodes µ-law `codes` into `out`, which must be at least as long; returns the samples written.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = ULAW_TO_LINEAR[c as usize];
    }
    n
}

/// Decodes A-law `codes` into `out`, which must be at least as long; returns the samples written.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = ALAW_TO_LINEAR[c as usize];
    }
    n
}

/// Encodes `samples` to µ-law into `out`, which must be at least as long; returns the bytes written.
pub fn encode_ulaw(samples: &[i16], out: &mut [u8]) -> usize {
    let n = samples.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(&samples[..n]) {
        *o = linear_to_ulaw(s);
    }
    n
}

/// Encodes `samples` to A-law into `out`, which must be at least as long; returns the bytes written.
pub fn encode_alaw(samples: &[i16], out: &mut [u8]) -> usize {
    let n = samples.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(&samples[..n]) {
        *o = linear_to_alaw(s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// µ-law reconstruction level straight from the G.711 segment formula:
    /// sign bit, 3-bit segment e, 4-bit mantissa m, all inverted on the wire;
    /// magnitude (14-bit) = ((2m + 33) << e) - 33, scaled by 4 to 16 bits.
    fn ulaw_reference(code: u8) -> i32 {
        let c = !code;
        let negative = c & 0x80 != 0;
        let e = ((c >> 4) & 7) as i32;
        let m = (c & 0x0F) as i32;
        let mag = (((2 * m + 33) << e) - 33) * 4;
        if negative {
            -mag
        } else {
            mag
        }
    }

    /// A-law reconstruction level from the G.711 segment formula: even bits
    /// inverted; magnitude (13-bit) = 2m + 1 in segment 0 and
    /// (2m + 33) << (e - 1) above, scaled by 8 to 16 bits.
    fn alaw_reference(code: u8) -> i32 {
        let c = code ^ 0x55;
        let positive = c & 0x80 != 0;
        let e = ((c >> 4) & 7) as i32;
        let m = (c & 0x0F) as i32;
        let mag13 = if e == 0 {
            2 * m + 1
        } else {
            (2 * m + 33) << (e - 1)
        };
        let mag = mag13 * 8;
        if positive {
            mag
        } else {
            -mag
        }
    }

    #[test]
    fn ulaw_table_matches_the_arithmetic_encoder_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(s), ulaw_compress(s), "sample {s}");
        }
    }

    #[test]
    fn ulaw_anchor_values() {
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
    }

    #[test]
    fn alaw_anchor_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xAA), 32256);
    }

    #[test]
    fn every_code_decodes_to_the_segment_formula() {
        for code in 0..=255u8 {
            assert_eq!(
                ulaw_to_linear(code) as i32,
                ulaw_reference(code),
                "µ-law {code:#04x}"
            );
            assert_eq!(
                alaw_to_linear(code) as i32,
                alaw_reference(code),
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(code)),
                expected,
                "µ-law {code:#04x}"
            );
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn encoding_is_monotonic_and_nearest_level() {
        let mut prev_u = i32::MIN;
        let mut prev_a = i32::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(x)) as i32;
            let a = alaw_to_linear(linear_to_alaw(x)) as i32;
            assert!(u >= prev_u, "µ-law not monotonic at {x}");
            assert!(a >= prev_a, "A-law not monotonic at {x}");
            prev_u = u;
            prev_a = a;
            // The error never exceeds half the widest step (plus the 14/13-bit truncation),
            // except where the top segment clips.
            if (x as i32).abs() < 32000 {
                assert!((u - x as i32).abs() <= 512 + 4, "µ-law error at {x}: {u}");
                assert!((a - x as i32).abs() <= 512 + 16, "A-law error at {x}: {a}");
            }
        }
    }

    #[test]
    fn ulaw_segment_boundaries_give_standard_codes() {
        // G.711 µ-law decision values (14-bit magnitude) where segment e begins: (32 << e) - 33,
        // i.e. 31, 95, 223, 479, 991, 2015, 4063.
        for e in 1..8u8 {
            let boundary = ((32i32 << e) - 33) * 4;
            let first_of_segment = 0x80 | (0x7F - (e << 4));
            let last_of_previous = 0x80 | (0x7F - (((e - 1) << 4) | 0x0F));
            assert_eq!(
                linear_to_ulaw(boundary as i16),
                first_of_segment,
                "+{boundary}"
            );
            assert_eq!(linear_to_ulaw((boundary - 1) as i16), last_of_previous);
            // Negative side is mirrored around -0.5 (one's complement).
            assert_eq!(
                linear_to_ulaw((-boundary - 1) as i16),
                first_of_segment & 0x7F
            );
            assert_eq!(linear_to_ulaw(-boundary as i16), last_of_previous & 0x7F);
        }
        // The top decision value 8159 and anything above clips to the last code.
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_segment_boundaries_give_standard_codes() {
        // G.711 A-law segment e >= 1 begins at 13-bit magnitude 32 << (e - 1):
        // 32, 64, 128, ..., 2048, i.e. 256 << (e - 1) in 16-bit samples.
        for e in 1..8u8 {
            let boundary = 256i32 << (e - 1);
            let first_of_segment = (0x80 | (e << 4)) ^ 0x55;
            let last_of_previous = (0x80 | ((e - 1) << 4) | 0x0F) ^ 0x55;
            assert_eq!(
                linear_to_alaw(boundary as i16),
                first_of_segment,
                "+{boundary}"
            );
            assert_eq!(linear_to_alaw((boundary - 1) as i16), last_of_previous);
            assert_eq!(
                linear_to_alaw((-boundary - 1) as i16),
                (e << 4) ^ 0x55,
                "-{boundary}"
            );
            assert_eq!(
                linear_to_alaw(-boundary as i16),
                (((e - 1) << 4) | 0x0F) ^ 0x55
            );
        }
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn slice_apis_write_into_caller_buffers() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 409) % 65536 - 32768) as i16)
            .collect();
        let mut codes = [0u8; 160];
        let mut back = [0i16; 160];
        assert_eq!(encode_ulaw(&pcm, &mut codes), 160);
        assert_eq!(decode_ulaw(&codes, &mut back), 160);
        for (i, (&c, &b)) in codes.iter().zip(&back).enumerate() {
            assert_eq!(c, linear_to_ulaw(pcm[i]));
            assert_eq!(b, ulaw_to_linear(c));
        }
        assert_eq!(encode_alaw(&pcm, &mut codes), 160);
        assert_eq!(decode_alaw(&codes, &mut back), 160);
        assert_eq!(back[0], alaw_to_linear(codes[0]));
        // A short output buffer bounds the work instead of panicking.
        assert_eq!(decode_alaw(&codes, &mut back[..10]), 10);
        assert_eq!(ulaw_to_linear(ULAW_SILENCE), 0);
        assert_eq!(alaw_to_linear(ALAW_SILENCE), 8);
    }
}
