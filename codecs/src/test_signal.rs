//! Deterministic speech-like test signals and alignment metrics for codec tests.
//!
//! The signal is a voiced source (harmonics of a gliding pitch), shaped by two
//! moving formant resonances, cut into syllables with short pauses, plus a low
//! noise floor: enough structure to exercise SILK's pitch and LPC analysis the
//! way speech does, but reproducible bit for bit on every machine.

use std::f64::consts::PI;

use crate::{AudioFrame, SampleRate};

/// Highest harmonic frequency generated, below the 8 kHz Nyquist limit so the
/// same continuous signal can be rendered at every supported rate.
const MAX_HARMONIC_HZ: f64 = 3_600.0;

/// A small deterministic noise source (LCG), uniform in [-1, 1).
pub(crate) struct Lcg(u64);

impl Lcg {
    pub(crate) fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Resonance weight of a harmonic at `hz` for a formant at `center` with bandwidth `bw`.
fn resonance(hz: f64, center: f64, bw: f64) -> f64 {
    let x = (hz - center) / bw;
    1.0 / (1.0 + x * x)
}

/// Syllable envelope in [0, 1] at time `t`: ~220 ms syllables, every fourth one a pause.
pub(crate) fn envelope(t: f64) -> f64 {
    let syllable = 0.22;
    let index = (t / syllable) as usize;
    if index % 4 == 3 {
        return 0.0;
    }
    let phase = (t % syllable) / syllable;
    (PI * phase).sin().powf(0.6)
}

/// `seconds` of the speech-like signal at `rate`, peaking near -6 dBFS.
pub(crate) fn synthetic_speech(rate: SampleRate, seconds: f64) -> Vec<i16> {
    let fs = rate.hz() as f64;
    let n = (seconds * fs) as usize;
    let mut noise = Lcg::new(0x5eed);
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / fs;
        // Pitch glides between 100 and 220 Hz over ~1.3 s, like intonation.
        let f0 = 160.0 + 60.0 * (2.0 * PI * t / 1.3).sin();
        phase = (phase + 2.0 * PI * f0 / fs) % (2.0 * PI);
        // Formants move slowly, as vowels change.
        let f1 = 600.0 + 200.0 * (2.0 * PI * t / 0.9).sin();
        let f2 = 1_600.0 + 500.0 * (2.0 * PI * t / 0.7).cos();
        let mut v = 0.0;
        let mut k = 1.0;
        while k * f0 < MAX_HARMONIC_HZ {
            let h = k * f0;
            let w = (resonance(h, f1, 120.0) + 0.6 * resonance(h, f2, 180.0) + 0.05) / k.sqrt();
            v += w * (k * phase).sin();
            k += 1.0;
        }
        let s = 9_000.0 * envelope(t) * v + 30.0 * noise.next();
        out.push(s.clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// Splits `samples` into 20 ms frames at `rate` (drops a trailing partial frame).
pub(crate) fn frames(rate: SampleRate, samples: &[i16]) -> Vec<AudioFrame> {
    samples
        .chunks_exact(rate.frame_samples())
        .map(|c| AudioFrame::from_samples(rate, c).expect("exact chunk"))
        .collect()
}

/// Normalized cross-correlation of `reference[i]` with `output[i + lag]` over
/// `range` (indices into `reference`).
pub(crate) fn correlation_at(
    reference: &[i16],
    output: &[i16],
    lag: usize,
    range: std::ops::Range<usize>,
) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for i in range {
        let (Some(&x), Some(&y)) = (reference.get(i), output.get(i + lag)) else {
            break;
        };
        let (x, y) = (x as f64, y as f64);
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

/// The lag in `lags` with the highest correlation, and that correlation.
pub(crate) fn best_lag(
    reference: &[i16],
    output: &[i16],
    lags: std::ops::RangeInclusive<usize>,
    range: std::ops::Range<usize>,
) -> (usize, f64) {
    lags.map(|lag| (lag, correlation_at(reference, output, lag, range.clone())))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// SNR in dB of `output[i + lag]` against `reference[i]` over `range`.
pub(crate) fn snr_db(
    reference: &[i16],
    output: &[i16],
    lag: usize,
    range: std::ops::Range<usize>,
) -> f64 {
    let (mut sig, mut err) = (0.0, 0.0);
    for i in range {
        let (Some(&x), Some(&y)) = (reference.get(i), output.get(i + lag)) else {
            break;
        };
        let (x, y) = (x as f64, y as f64);
        sig += x * x;
        err += (x - y) * (x - y);
    }
    10.0 * (sig / err.max(1e-9)).log10()
}
