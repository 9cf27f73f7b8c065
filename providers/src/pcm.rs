//! Raw 16-bit little-endian PCM arriving over the network, turned into sample pieces.
//!
//! Network chunks split samples anywhere (an odd chunk leaves half a sample behind), so
//! the assembler carries the odd byte to the next chunk and hands out evenly sized
//! pieces, flushing the remainder at the end of a stream.

/// Reassembles s16le bytes into pieces of at most `piece_samples` samples.
#[derive(Debug)]
pub struct PcmAssembler {
    carry: Option<u8>,
    pending: Vec<i16>,
    piece_samples: usize,
}

impl PcmAssembler {
    /// An assembler handing out pieces of `piece_samples` (at least 1) samples.
    pub fn new(piece_samples: usize) -> Self {
        let piece_samples = piece_samples.max(1);
        PcmAssembler {
            carry: None,
            pending: Vec::with_capacity(piece_samples),
            piece_samples,
        }
    }

    /// Adds network bytes; calls `out` with every complete piece.
    pub fn push(&mut self, mut bytes: &[u8], mut out: impl FnMut(Vec<i16>)) {
        if let Some(low) = self.carry.take() {
            match bytes.split_first() {
                Some((&high, rest)) => {
                    self.sample(i16::from_le_bytes([low, high]), &mut out);
                    bytes = rest;
                }
                None => {
                    self.carry = Some(low);
                    return;
                }
            }
        }
        let mut pairs = bytes.chunks_exact(2);
        for pair in &mut pairs {
            self.sample(i16::from_le_bytes([pair[0], pair[1]]), &mut out);
        }
        self.carry = pairs.remainder().first().copied();
    }

    fn sample(&mut self, sample: i16, out: &mut impl FnMut(Vec<i16>)) {
        self.pending.push(sample);
        if self.pending.len() >= self.piece_samples {
            let piece =
                std::mem::replace(&mut self.pending, Vec::with_capacity(self.piece_samples));
            out(piece);
        }
    }

    /// Ends the stream: calls `out` with the last partial piece, if any. Returns true
    /// when a dangling half sample had to be dropped (the stream had an odd length).
    pub fn flush(&mut self, mut out: impl FnMut(Vec<i16>)) -> bool {
        if !self.pending.is_empty() {
            out(std::mem::take(&mut self.pending));
        }
        self.carry.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(samples: &[i16], chunk_sizes: &[usize], piece: usize) -> Vec<Vec<i16>> {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut asm = PcmAssembler::new(piece);
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunk_sizes[i % chunk_sizes.len()].min(rest.len());
            asm.push(&rest[..n], |p| out.push(p));
            rest = &rest[n..];
            i += 1;
        }
        assert!(!asm.flush(|p| out.push(p)));
        out
    }

    #[test]
    fn odd_chunks_reassemble_exactly() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 97 % 65536 - 32768) as i16).collect();
        for sizes in [&[1usize][..], &[3], &[7, 1, 2], &[1001], &[2000, 1]] {
            let pieces = run(&samples, sizes, 160);
            assert_eq!(pieces.concat(), samples, "sizes {sizes:?}");
            assert!(pieces.iter().all(|p| p.len() <= 160));
            assert!(pieces[..pieces.len() - 1].iter().all(|p| p.len() == 160));
        }
    }

    #[test]
    fn extremes_and_sign_survive() {
        let samples = [i16::MIN, -1, 0, 1, i16::MAX, 0x0102];
        assert_eq!(run(&samples, &[1], 4).concat(), samples);
    }

    #[test]
    fn dangling_byte_is_reported() {
        let mut asm = PcmAssembler::new(10);
        let mut out = Vec::new();
        asm.push(&[1, 0, 7], |p| out.push(p));
        assert!(asm.flush(|p| out.push(p)));
        assert_eq!(out, vec![vec![1]]);
    }
}
