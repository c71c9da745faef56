//! conv_transpose1d against a plain CPU reference in the scatter form PyTorch documents
//! (y[co, j*s + k] += x[ci, j] * w[ci, co, k]), accumulated in f64, then trimmed as EnCodec does.

use crate::common;

use bark_wgpu::ops::conv_transpose1d::{conv_transpose1d, ConvTranspose1dOpts};
use bark_wgpu::{DType, Graph};
use common::{ctx, run_f32_op, Rng};

/// Reference output and per-output sum of |terms|, with the output length.
fn reference(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    (b, c_in, t): (usize, usize, usize),
    (c_out, k, s): (usize, usize, usize),
    trim: bool,
) -> (Vec<f64>, Vec<f64>, usize) {
    let full = (t - 1) * s + k;
    let mut y = vec![0.0; b * c_out * full];
    let mut mag = vec![0.0; b * c_out * full];
    for bi in 0..b {
        for co in 0..c_out {
            let row = (bi * c_out + co) * full;
            for v in &mut y[row..row + full] {
                *v = bias[co] as f64;
            }
            for v in &mut mag[row..row + full] {
                *v = (bias[co] as f64).abs();
            }
            for ci in 0..c_in {
                for j in 0..t {
                    for kk in 0..k {
                        let term = x[(bi * c_in + ci) * t + j] as f64 * w[(ci * c_out + co) * k + kk] as f64;
                        y[row + j * s + kk] += term;
                        mag[row + j * s + kk] += term.abs();
                    }
                }
            }
        }
    }
    // EncodecConvTranspose1d, causal, trim_right_ratio 1: padding_right = ceil(K - s), left 0.
    let t_out = if trim { full - (k - s) } else { full };
    let cut = |v: Vec<f64>| -> Vec<f64> { v.chunks(full).flat_map(|r| r[..t_out].to_vec()).collect() };
    (cut(y), cut(mag), t_out)
}

fn run_gpu(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    (b, c_in, t): (usize, usize, usize),
    (c_out, k): (usize, usize),
    opts: ConvTranspose1dOpts,
) -> (Vec<f32>, Vec<usize>) {
    run_f32_op(&[(x, &[b, c_in, t]), (w, &[c_in, c_out, k]), (bias, &[c_out])], |g, v| {
        conv_transpose1d(g, v[0], v[1], v[2], opts)
    })
}

/// Tolerance: each output sums n <= C_in * ceil(K/s) + 1 terms in f32 on the GPU; as for
/// conv1d we allow 4 * sqrt(n) * eps * sum|terms| (the probabilistic rounding bound with
/// margin). A tap landing on the wrong output moves it by about sum|terms| / n, far more.
fn check(seed: u64, (b, c_in, t): (usize, usize, usize), (c_out, k, s): (usize, usize, usize), trim: bool) {
    let mut rng = Rng::new(seed);
    let x = rng.normal(b * c_in * t, 1.0);
    let w = rng.normal(c_in * c_out * k, 1.0 / (c_in as f32).sqrt());
    let bias = rng.normal(c_out, 0.1);
    let opts = ConvTranspose1dOpts { stride: s, causal_trim: trim };
    let (got, shape) = run_gpu(&x, &w, &bias, (b, c_in, t), (c_out, k), opts);
    let (want, mag, t_out) = reference(&x, &w, &bias, (b, c_in, t), (c_out, k, s), trim);
    let case = format!("b{b} cin{c_in} cout{c_out} t{t} k{k} s{s} trim {trim}");
    assert_eq!(shape, vec![b, c_out, t_out], "{case}: shape");
    if trim {
        assert_eq!(t_out, t * s, "{case}: causal output length");
    }
    let n = (c_in * k.div_ceil(s) + 1) as f64;
    for (i, ((&g, &w), &m)) in got.iter().zip(&want).zip(&mag).enumerate() {
        let tol = 4.0 * n.sqrt() * f32::EPSILON as f64 * m + f32::MIN_POSITIVE as f64;
        assert!((g as f64 - w).abs() <= tol, "{case}: element {i} got {g} want {w} (tol {tol})");
    }
}

#[test]
fn hand_worked_trim() {
    // x = [1, 2], w = [1, 10, 100], stride 2: full output [1, 10, 100 + 2, 20, 200] (length 5);
    // the causal trim drops K - s = 1 sample on the right.
    let run = |trim| {
        run_gpu(
            &[1.0, 2.0],
            &[1.0, 10.0, 100.0],
            &[0.0],
            (1, 1, 2),
            (1, 3),
            ConvTranspose1dOpts { stride: 2, causal_trim: trim },
        )
    };
    assert_eq!(run(true).0, vec![1.0, 10.0, 102.0, 20.0]);
    assert_eq!(run(false).0, vec![1.0, 10.0, 102.0, 20.0, 200.0]);
}

#[test]
fn awkward_sizes() {
    let mut seed = 0;
    for &(c_in, c_out) in &[(1, 1), (3, 5), (32, 3), (3, 65), (17, 16)] {
        for &(k, s) in &[(1, 1), (3, 1), (3, 2), (5, 5), (7, 3), (4, 2), (16, 8)] {
            for &t in &[1, 2, 7, 31] {
                seed += 1;
                check(seed, (2, c_in, t), (c_out, k, s), true);
            }
        }
    }
}

#[test]
fn untrimmed_and_kernel_shorter_than_stride() {
    // Without the trim, PyTorch's full length; K < s leaves gaps that hold only the bias.
    for (i, &(k, s, t)) in [(3, 2, 5), (16, 8, 3), (2, 3, 4), (1, 4, 3), (5, 1, 1)].iter().enumerate() {
        check(100 + i as u64, (2, 3, t), (4, k, s), false);
    }
}

#[test]
fn bark_decoder_sizes() {
    let start = std::time::Instant::now();
    // Bark's four upsampling layers (channels, kernel, stride) at short lengths.
    check(200, (1, 512, 75), (256, 16, 8), true);
    check(201, (1, 256, 150), (128, 10, 5), true);
    check(202, (1, 128, 751), (64, 8, 4), true);
    check(203, (1, 64, 3001), (32, 4, 2), true);
    eprintln!("bark_decoder_sizes: {:?}", start.elapsed());
}

#[test]
fn bad_input_is_an_error() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let x = g.tensor(&[1, 3, 10], DType::F32);
    let w = g.tensor(&[3, 4, 8], DType::F32);
    let bias = g.tensor(&[4], DType::F32);
    let ok = ConvTranspose1dOpts { stride: 4, causal_trim: true };
    assert!(conv_transpose1d(&mut g, x, w, bias, ok).is_ok());
    let w_bad = g.tensor(&[4, 4, 8], DType::F32);
    assert!(conv_transpose1d(&mut g, x, w_bad, bias, ok).is_err(), "channel mismatch");
    let b_bad = g.tensor(&[3], DType::F32);
    assert!(conv_transpose1d(&mut g, x, w, b_bad, ok).is_err(), "bias length");
    let x_i32 = g.tensor(&[1, 3, 10], DType::I32);
    assert!(conv_transpose1d(&mut g, x_i32, w, bias, ok).is_err(), "dtype");
    assert!(conv_transpose1d(&mut g, x, w, bias, ConvTranspose1dOpts { stride: 0, ..ok }).is_err(), "stride 0");
    assert!(conv_transpose1d(&mut g, x, w, bias, ConvTranspose1dOpts { stride: 9, ..ok }).is_err(), "K < s trim");
    let x_empty = g.tensor(&[1, 3, 0], DType::F32);
    assert!(conv_transpose1d(&mut g, x_empty, w, bias, ok).is_err(), "empty input");
    let huge = ConvTranspose1dOpts { stride: usize::MAX / 4, causal_trim: false };
    assert!(conv_transpose1d(&mut g, x, w, bias, huge).is_err(), "length overflow");
}
