//! L16: linear 16-bit PCM in network byte order (RFC 3551 §4.5.11).
//!
//! The RTP payload is a sequence of big-endian two's-complement samples; these
//! helpers convert between that byte layout and native `i16` in caller buffers.

use crate::CodecError;

/// Bytes per L16 sample.
pub const L16_BYTES_PER_SAMPLE: usize = 2;

/// Number of samples in an L16 payload, or an error if the length is odd.
pub fn l16_sample_count(payload: &[u8]) -> Result<usize, CodecError> {
    if !payload.len().is_multiple_of(L16_BYTES_PER_SAMPLE) {
        return Err(CodecError::PayloadLength {
            format: "L16",
            len: payload.len(),
            reason: "not a whole number of 16-bit samples",
        });
    }
    Ok(payload.len() / L16_BYTES_PER_SAMPLE)
}

/// Decodes big-endian `payload` into `out`; returns the samples written.
///
/// Fails if the payload has an odd length; writes at most `out.len()` samples.
pub fn decode_l16(payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
    let n = l16_sample_count(payload)?.min(out.len());
    for (o, pair) in out[..n].iter_mut().zip(payload.chunks_exact(2)) {
        *o = i16::from_be_bytes([pair[0], pair[1]]);
    }
    Ok(n)
}

/// Encodes `samples` as big-endian into `out`; returns the bytes written.
///
/// Writes as many whole samples as fit in `out`.
pub fn encode_l16(samples: &[i16], out: &mut [u8]) -> usize {
    let n = samples.len().min(out.len() / L16_BYTES_PER_SAMPLE);
    for (pair, &s) in out.chunks_exact_mut(2).zip(&samples[..n]) {
        pair.copy_from_slice(&s.to_be_bytes());
    }
    n * L16_BYTES_PER_SAMPLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_on_the_wire() {
        let mut bytes = [0u8; 6];
        assert_eq!(encode_l16(&[0x0102, -2, i16::MIN], &mut bytes), 6);
        assert_eq!(bytes, [0x01, 0x02, 0xFF, 0xFE, 0x80, 0x00]);
        let mut back = [0i16; 3];
        assert_eq!(decode_l16(&bytes, &mut back), Ok(3));
        assert_eq!(back, [0x0102, -2, i16::MIN]);
    }

    #[test]
    fn odd_length_is_a_typed_error() {
        let mut out = [0i16; 4];
        let err = decode_l16(&[1, 2, 3], &mut out).unwrap_err();
        assert!(err.to_string().contains("L16"), "{err}");
    }

    #[test]
    fn short_buffers_bound_the_work() {
        let mut out = [0i16; 1];
        assert_eq!(decode_l16(&[0, 1, 0, 2], &mut out), Ok(1));
        assert_eq!(out, [1]);
        let mut bytes = [0u8; 3];
        assert_eq!(encode_l16(&[5, 6], &mut bytes), 2);
        assert_eq!(&bytes[..2], &[0, 5]);
    }
}
