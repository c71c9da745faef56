//! Band-limited resampling by a Kaiser-windowed sinc: each output sample is the input convolved
//! with a low-pass filter centred on its position in input time. The cut-off sits just below the
//! lower of the two Nyquist frequencies, so downsampling does not alias and upsampling does not
//! image. Rates are reduced by their gcd so the filter phases repeat and can be tabulated.

use crate::{Error, Result};

/// Zero crossings of the sinc on each side of its centre (filter half-length, in cut-off periods).
const ZERO_CROSSINGS: f64 = 32.0;
/// Cut-off as a fraction of the lower Nyquist frequency: leaves room for the transition band.
const ROLLOFF: f64 = 0.94;
/// Kaiser window shape: about 86 dB of stop-band attenuation (beta = 0.1102 (A - 8.7)).
const KAISER_BETA: f64 = 8.6;
/// More filter phases than this are computed per output sample instead of tabulated.
const MAX_TABLE_PHASES: u64 = 4096;

/// Resamples `samples` from `from_hz` to `to_hz`. The output has round(n * to / from) samples;
/// beyond the ends the input is taken as silence. Equal rates return the input unchanged.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::Invalid(format!("cannot resample from {from_hz} Hz to {to_hz} Hz")));
    }
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    let g = gcd(from_hz as u64, to_hz as u64);
    let (up, down) = (to_hz as u64 / g, from_hz as u64 / g);
    let out_len = ((samples.len() as u128 * to_hz as u128 + from_hz as u128 / 2) / from_hz as u128) as usize;
    let filter = Filter::new(from_hz, to_hz);
    let table: Option<Vec<(i64, Vec<f64>)>> =
        (up <= MAX_TABLE_PHASES).then(|| (0..up).map(|p| filter.taps(p as f64 / up as f64)).collect());
    let n = samples.len() as i64;
    let mut out = Vec::with_capacity(out_len);
    for j in 0..out_len as u64 {
        // Output j sits at input time j * down / up = base + phase / up.
        let base = (j as u128 * down as u128 / up as u128) as i64;
        let phase = (j as u128 * down as u128 % up as u128) as u64;
        let computed;
        let (first, taps) = match &table {
            Some(t) => (t[phase as usize].0, &t[phase as usize].1),
            None => {
                computed = filter.taps(phase as f64 / up as f64);
                (computed.0, &computed.1)
            }
        };
        let start = base + first;
        let lo = (-start).clamp(0, taps.len() as i64) as usize;
        let hi = (n - start).clamp(0, taps.len() as i64) as usize;
        let mut acc = 0.0f64;
        for (k, &w) in taps.iter().enumerate().take(hi).skip(lo) {
            acc += w * samples[(start + k as i64) as usize] as f64;
        }
        out.push(acc as f32);
    }
    Ok(out)
}

/// The low-pass filter in units of input samples.
struct Filter {
    /// Cut-off frequency in cycles per input sample.
    cutoff: f64,
    /// Half the filter length in input samples.
    half_width: f64,
}

impl Filter {
    fn new(from_hz: u32, to_hz: u32) -> Filter {
        let cutoff = ROLLOFF * from_hz.min(to_hz) as f64 / (2.0 * from_hz as f64);
        Filter { cutoff, half_width: ZERO_CROSSINGS / (2.0 * cutoff) }
    }

    /// The taps for an output at input time `frac` in [0, 1) past an input sample: the offset of
    /// the first input sample they weigh and the weights, normalised to unit DC gain.
    fn taps(&self, frac: f64) -> (i64, Vec<f64>) {
        let first = (frac - self.half_width).ceil() as i64;
        let last = (frac + self.half_width).floor() as i64;
        let i0_beta = bessel_i0(KAISER_BETA);
        let mut taps: Vec<f64> = (first..=last)
            .map(|i| {
                let t = frac - i as f64;
                let x = t / self.half_width;
                let window = bessel_i0(KAISER_BETA * (1.0 - x * x).max(0.0).sqrt()) / i0_beta;
                2.0 * self.cutoff * sinc(2.0 * self.cutoff * t) * window
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        taps.iter_mut().for_each(|w| *w /= sum);
        (first, taps)
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
    }
}

/// The modified Bessel function of the first kind, order 0, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, q) = (1.0, 1.0, x * x / 4.0);
    for k in 1..200 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
