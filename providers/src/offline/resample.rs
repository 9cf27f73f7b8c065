//! A streaming PCM16 resampler for rates the media path does not carry (espeak-ng's 22 050 Hz).
//!
//! `voxline_codecs::Resampler` converts whole 20 ms frames between 8/16/24/48 kHz. Speech
//! synthesisers produce other rates in arbitrary-sized chunks, so this wraps rubato's
//! synchronous FFT resampler with an input queue: any number of samples go in, every complete
//! block comes out, the filter delay is trimmed from the start and flushed at the end, and the
//! output length is exactly `input × to / from` (rounded) over the whole stream.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler as _, WindowFunction};

/// Converts an unbounded mono PCM16 stream from one rate to another.
pub(crate) struct StreamResampler {
    from: usize,
    to: usize,
    fft: Fft<f32>,
    /// Input samples waiting for a complete block.
    pending: Vec<f32>,
    /// One block of output.
    block_out: Vec<f32>,
    /// Output samples still to drop at the start (the filter delay).
    skip: usize,
    /// Input samples taken since the last reset.
    taken: u64,
    /// Output samples emitted since the last reset.
    emitted: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz working in blocks of about `block_ms` of input.
    pub(crate) fn new(from: u32, to: u32, block_ms: u32) -> Result<Self, String> {
        let (from, to) = (from as usize, to as usize);
        let block = (from * block_ms as usize / 1000).max(1);
        let fft = Fft::<f32>::new_custom(
            from,
            to,
            block,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| format!("resampler {from} Hz -> {to} Hz: {e}"))?;
        let skip = fft.output_delay();
        let block_out = vec![0.0; fft.output_frames_max()];
        Ok(StreamResampler {
            from,
            to,
            fft,
            pending: Vec::with_capacity(block * 2),
            block_out,
            skip,
            taken: 0,
            emitted: 0,
        })
    }

    /// Takes `input` and appends every output sample that is now complete to `out`.
    pub(crate) fn push(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), String> {
        self.taken += input.len() as u64;
        self.pending
            .extend(input.iter().map(|&s| s as f32 * (1.0 / 32768.0)));
        let block = self.fft.input_frames_next();
        let mut start = 0;
        while self.pending.len() - start >= block {
            self.run_block(start, None, out)?;
            start += block;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Flushes the queued input and the filter tail into `out`, then resets for a new stream.
    pub(crate) fn finish(&mut self, out: &mut Vec<i16>) -> Result<(), String> {
        let target = (self.taken * self.to as u64 + self.from as u64 / 2) / self.from as u64;
        let block = self.fft.input_frames_next();
        // Zero-padded blocks push the queued samples and the delay line through.
        let mut guard = 0;
        while self.emitted < target && guard < 64 {
            let valid = self.pending.len().min(block);
            self.pending.resize(block, 0.0);
            self.run_block(0, Some(valid), out)?;
            self.pending.clear();
            guard += 1;
        }
        let excess = self.emitted.saturating_sub(target) as usize;
        out.truncate(out.len().saturating_sub(excess));
        self.reset();
        Ok(())
    }

    /// Forgets all state: the next sample starts a new stream.
    pub(crate) fn reset(&mut self) {
        self.fft.reset();
        self.pending.clear();
        self.skip = self.fft.output_delay();
        self.taken = 0;
        self.emitted = 0;
    }

    fn run_block(
        &mut self,
        start: usize,
        partial: Option<usize>,
        out: &mut Vec<i16>,
    ) -> Result<(), String> {
        let block = self.fft.input_frames_next();
        let n_out = self.block_out.len();
        let input = InterleavedSlice::new(&self.pending[start..start + block], 1, block)
            .map_err(|e| e.to_string())?;
        let mut output = InterleavedSlice::new_mut(&mut self.block_out[..], 1, n_out)
            .map_err(|e| e.to_string())?;
        let indexing = partial.map(|n| Indexing {
            partial_len: Some(n),
            ..Indexing::default()
        });
        let (_, produced) = self
            .fft
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| e.to_string())?;
        let produced = produced.min(n_out);
        let drop = self.skip.min(produced);
        self.skip -= drop;
        for &f in &self.block_out[drop..produced] {
            out.push((f * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
        }
        self.emitted += (produced - drop) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f64, hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin() * 10000.0) as i16)
            .collect()
    }

    #[test]
    fn length_is_exact_over_odd_chunks() {
        let mut r = StreamResampler::new(22_050, 24_000, 20).expect("resampler");
        let input = sine(22_050.0, 440.0, 22_050);
        let mut out = Vec::new();
        for chunk in input.chunks(997) {
            r.push(chunk, &mut out).expect("push");
        }
        r.finish(&mut out).expect("finish");
        assert_eq!(out.len(), 24_000);
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_timing() {
        let mut r = StreamResampler::new(22_050, 24_000, 20).expect("resampler");
        let input = sine(22_050.0, 440.0, 11_025);
        let mut out = Vec::new();
        r.push(&input, &mut out).expect("push");
        r.finish(&mut out).expect("finish");
        // The best-matching ideal tone, allowing a sub-sample residual delay; compared away
        // from the edges, where the filter sees the zero padding.
        let (offset, err) = (-20..=20)
            .map(|k| {
                let shift = k as f64 / 20.0;
                let err = (1000..11000)
                    .map(|i| {
                        let t = (i as f64 - shift) / 24_000.0;
                        let want = (2.0 * std::f64::consts::PI * 440.0 * t).sin() * 10000.0;
                        (out[i] as f64 - want).abs()
                    })
                    .fold(0.0, f64::max);
                (shift, err)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("candidates");
        assert!(err < 150.0, "max error {err} at offset {offset}");
        assert!(offset.abs() <= 1.0, "residual delay {offset} samples");
    }

    #[test]
    fn reuse_after_finish_starts_clean() {
        let mut r = StreamResampler::new(22_050, 24_000, 20).expect("resampler");
        let mut out = Vec::new();
        r.push(&sine(22_050.0, 300.0, 5000), &mut out)
            .expect("push");
        r.finish(&mut out).expect("finish");
        let first = out.len();
        out.clear();
        r.push(&sine(22_050.0, 300.0, 5000), &mut out)
            .expect("push");
        r.finish(&mut out).expect("finish");
        assert_eq!(first, out.len());
    }
}
