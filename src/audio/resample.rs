//! Band-limited resampling as torchaudio's `functional.resample` does it with its defaults
//! (`sinc_interp_hann`, a filter 6 zero crossings wide, roll-off 0.99), the resampler every
//! voice-cloning reference runs (HuBERT's 16 kHz input; EnCodec's `convert_audio` to 24 kHz), so
//! a prompt made here starts from the same samples. The rates are reduced by their gcd to
//! `orig` input and `new` output samples per period; output sample `j * new + p` (phase `p`)
//! weighs the input around `j * orig` with the windowed sinc of phase `p`. Output length:
//! ceil(n * new / orig), as torchaudio's. Weights are computed in f64, sums accumulated in f64.

use std::f64::consts::PI;

use crate::{Error, Result};

/// Zero crossings of the sinc on each side (torchaudio's `lowpass_filter_width`).
const ZERO_CROSSINGS: f64 = 6.0;
/// Cut-off as a fraction of the lower Nyquist frequency (torchaudio's `rolloff`).
const ROLLOFF: f64 = 0.99;
/// Phases tabulated at most (weights held: phases x taps); past it each output computes its own.
const MAX_TABLE_WEIGHTS: usize = 1 << 22;

/// Resamples `samples` from `from_hz` to `to_hz` (see the module docs). Equal rates return the
/// input unchanged.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::Invalid(format!("cannot resample from {from_hz} Hz to {to_hz} Hz")));
    }
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    let g = gcd(from_hz as u64, to_hz as u64);
    let filter = Filter::new(from_hz as u64 / g, to_hz as u64 / g);
    let (orig, new) = (filter.orig as u128, filter.new as u128);
    let out_len = (samples.len() as u128 * new).div_ceil(orig) as usize;
    let taps = filter.taps();
    let table: Option<Vec<Vec<f64>>> = (filter.new as usize)
        .checked_mul(taps)
        .filter(|&w| w <= MAX_TABLE_WEIGHTS)
        .map(|_| (0..filter.new).map(|p| filter.phase(p)).collect());
    let n = samples.len() as i64;
    let mut out = Vec::with_capacity(out_len);
    for k in 0..out_len as u64 {
        let (frame, p) = (k / filter.new, k % filter.new);
        let computed;
        let weights = match &table {
            Some(t) => &t[p as usize],
            None => {
                computed = filter.phase(p);
                &computed
            }
        };
        // Weight i applies to input frame * orig + i - width (beyond the ends: silence).
        let start = (frame * filter.orig) as i64 - filter.width as i64;
        let lo = (-start).clamp(0, taps as i64) as usize;
        let hi = (n - start).clamp(0, taps as i64) as usize;
        let mut acc = 0.0f64;
        for (i, &w) in weights.iter().enumerate().take(hi).skip(lo) {
            acc += w * samples[(start + i as i64) as usize] as f64;
        }
        out.push(acc as f32);
    }
    Ok(out)
}

/// The windowed-sinc filter bank of one rate pair (reduced by its gcd).
struct Filter {
    orig: u64,
    new: u64,
    /// The cut-off, in cycles per period of `orig` input samples.
    base: f64,
    /// Input samples weighed before the output's own position.
    width: u64,
}

impl Filter {
    fn new(orig: u64, new: u64) -> Filter {
        let base = orig.min(new) as f64 * ROLLOFF;
        let width = (ZERO_CROSSINGS * orig as f64 / base).ceil() as u64;
        Filter { orig, new, base, width }
    }

    /// Weights per phase: the inputs from `width` before the frame to `width + orig` after it.
    fn taps(&self) -> usize {
        (2 * self.width + self.orig) as usize
    }

    /// The weights of phase `p`.
    fn phase(&self, p: u64) -> Vec<f64> {
        let shift = -(p as f64) / self.new as f64;
        (0..self.taps())
            .map(|i| {
                let idx = (i as f64 - self.width as f64) / self.orig as f64;
                let t = ((shift + idx) * self.base).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS);
                let window = (t * PI / ZERO_CROSSINGS / 2.0).cos().powi(2);
                let t = t * PI;
                let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
                sinc * window * self.base / self.orig as f64
            })
            .collect()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
