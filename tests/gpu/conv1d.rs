//! conv1d against a plain CPU reference that pads the way transformers' `_pad1d` does (zero
//! extension, reflect, trim) and then convolves, accumulating in f64.

use crate::common;

use bark_wgpu::ops::conv1d::{conv1d, Conv1dOpts};
use bark_wgpu::{DType, Graph};
use common::{ctx, run_f32_op, Rng};

/// transformers' `_pad1d(x, (left, right), mode="reflect")`, literally: zero-extend a short input,
/// reflect-pad, trim the zero extension off the end.
fn pad_reflect(x: &[f64], left: usize, right: usize) -> Vec<f64> {
    let max_pad = left.max(right);
    let extra = if x.len() <= max_pad { max_pad - x.len() + 1 } else { 0 };
    let mut xe = x.to_vec();
    xe.resize(x.len() + extra, 0.0);
    let n = xe.len();
    let mut out: Vec<f64> = (0..left).map(|j| xe[left - j]).collect();
    out.extend_from_slice(&xe);
    out.extend((0..right).map(|m| xe[n - 2 - m]));
    out.truncate(out.len() - extra);
    out
}

/// The reference output and, per output, the sum of |terms| (for the rounding tolerance).
#[allow(clippy::too_many_arguments)]
fn conv1d_ref(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    (b, c_in, t): (usize, usize, usize),
    (c_out, k): (usize, usize),
    opts: Conv1dOpts,
) -> (Vec<f64>, Vec<f64>, usize) {
    let Conv1dOpts { stride, dilation, causal_reflect: causal, zero_pad: [left, right], groups } = opts;
    let effective = (k - 1) * dilation + 1;
    let mut rows = Vec::new();
    for row in x.chunks(t) {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        if causal {
            // EncodecConv1d: padding_total = effective - stride, extra from
            // _get_extra_padding_for_conv1d, written out as transformers does it.
            let padding_total = effective - stride;
            let n_frames = (t as f64 - effective as f64 + padding_total as f64) / stride as f64 + 1.0;
            let ideal = (n_frames.ceil() as usize - 1) * stride + (effective - padding_total);
            rows.push(pad_reflect(&row, padding_total, ideal - t));
        } else {
            let mut padded = vec![0.0; left];
            padded.extend_from_slice(&row);
            padded.resize(padded.len() + right, 0.0);
            rows.push(padded);
        }
    }
    let len = rows[0].len();
    let t_out = (len - effective) / stride + 1;
    let mut y = vec![0.0; b * c_out * t_out];
    let mut mag = vec![0.0; b * c_out * t_out];
    for bi in 0..b {
        for co in 0..c_out {
            for to in 0..t_out {
                let (mut s, mut m) = (bias[co] as f64, (bias[co] as f64).abs());
                // A group's outputs read that group's inputs only.
                let (cin_g, grp) = (c_in / groups, co / (c_out / groups));
                for ci in 0..cin_g {
                    let xr = &rows[bi * c_in + grp * cin_g + ci];
                    for kk in 0..k {
                        let term = w[(co * cin_g + ci) * k + kk] as f64 * xr[to * stride + kk * dilation];
                        s += term;
                        m += term.abs();
                    }
                }
                y[(bi * c_out + co) * t_out + to] = s;
                mag[(bi * c_out + co) * t_out + to] = m;
            }
        }
    }
    (y, mag, t_out)
}

fn run_gpu(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    (b, c_in, t): (usize, usize, usize),
    (c_out, k): (usize, usize),
    opts: Conv1dOpts,
) -> (Vec<f32>, Vec<usize>) {
    run_f32_op(&[(x, &[b, c_in, t]), (w, &[c_out, c_in / opts.groups, k]), (bias, &[c_out])], |g, v| {
        conv1d(g, v[0], v[1], v[2], opts)
    })
}

/// Runs one random case on the GPU and the CPU and compares.
///
/// Tolerance: the GPU accumulates the n = C_in*K + 1 terms of each output in f32 (in tile
/// order), the reference in f64 from the same f32 inputs. Rounding errors of a sum of n terms
/// grow like sqrt(n) * eps * sum|terms| (Higham, "Accuracy and Stability", ch. 4, probabilistic
/// bound); we allow 4x that. One missing or misplaced tap changes an output by about
/// sum|terms| / n, far more than the bound for every n used here (the awkward small-channel
/// cases make that gap wide).
fn check(seed: u64, b: usize, c_in: usize, c_out: usize, t: usize, k: usize, opts: Conv1dOpts) {
    let mut rng = Rng::new(seed);
    let x = rng.normal(b * c_in * t, 1.0);
    let cin_g = c_in / opts.groups;
    let w = rng.normal(c_out * cin_g * k, 1.0 / ((cin_g * k) as f32).sqrt());
    let bias = rng.normal(c_out, 0.1);
    let (got, shape) = run_gpu(&x, &w, &bias, (b, c_in, t), (c_out, k), opts);
    let (want, mag, t_out) = conv1d_ref(&x, &w, &bias, (b, c_in, t), (c_out, k), opts);
    let case = format!("b{b} cin{c_in} cout{c_out} t{t} k{k} {opts:?}");
    assert_eq!(shape, vec![b, c_out, t_out], "{case}: shape");
    if opts.causal_reflect {
        assert_eq!(t_out, t.div_ceil(opts.stride), "{case}: causal output length");
    }
    let n = (cin_g * k + 1) as f64;
    for (i, ((&g, &w), &m)) in got.iter().zip(&want).zip(&mag).enumerate() {
        let tol = 4.0 * n.sqrt() * f32::EPSILON as f64 * m + f32::MIN_POSITIVE as f64;
        assert!((g as f64 - w).abs() <= tol, "{case}: element {i} got {g} want {w} (tol {tol})");
    }
}

fn causal(stride: usize, dilation: usize) -> Conv1dOpts {
    Conv1dOpts { stride, dilation, causal_reflect: true, ..Default::default() }
}

#[test]
fn hand_worked_reflect_padding() {
    // x = [1, 2, 3], K = 3: left pad 2 -> [3, 2, 1, 2, 3]; taps weighted 1, 10, 100.
    let (y, _) = run_gpu(&[1.0, 2.0, 3.0], &[1.0, 10.0, 100.0], &[0.5], (1, 1, 3), (1, 3), causal(1, 1));
    assert_eq!(y, vec![3.0 + 20.0 + 100.0 + 0.5, 2.0 + 10.0 + 200.0 + 0.5, 1.0 + 20.0 + 300.0 + 0.5]);
    // x = [1, 2], K = 7: the input is shorter than the pad of 6, so it is zero-extended to 7
    // first: [1, 2, 0, 0, 0, 0, 0] -> reflect 6 -> trim 5 -> [0, 0, 0, 0, 0, 2, 1, 2].
    let w: Vec<f32> = (0..7).map(|i| 10f32.powi(i)).collect();
    let (y, _) = run_gpu(&[1.0, 2.0], &w, &[0.0], (1, 1, 2), (1, 7), causal(1, 1));
    assert_eq!(y, vec![2e5 + 1e6, 2e4 + 1e5 + 2e6]);
    // Stride 2, K = 4, x = [1, 2, 3]: left pad 2, right (extra) pad 1 -> [3, 2, 1, 2, 3, 2];
    // windows start at 0 and 2.
    let w = [1.0, 10.0, 100.0, 1000.0];
    let (y, _) = run_gpu(&[1.0, 2.0, 3.0], &w, &[0.0], (1, 1, 3), (1, 4), causal(2, 1));
    assert_eq!(y, vec![3.0 + 20.0 + 100.0 + 2000.0, 1.0 + 20.0 + 300.0 + 2000.0]);
}

#[test]
fn stride_one_awkward_sizes() {
    let mut seed = 10;
    for &(c_in, c_out) in &[(1, 1), (3, 1), (1, 3), (3, 32), (32, 3), (5, 17), (7, 65)] {
        for &k in &[1, 3, 7] {
            for &t in &[1, 2, 5, 6, 7, 13, 131] {
                seed += 1;
                check(seed, 2, c_in, c_out, t, k, causal(1, 1));
            }
        }
    }
}

#[test]
fn dilation() {
    for (i, &(k, d, t)) in [(3, 2, 1), (3, 2, 4), (3, 3, 19), (2, 5, 3), (5, 2, 40)].iter().enumerate() {
        check(100 + i as u64, 1, 3, 4, t, k, causal(1, d));
    }
}

#[test]
fn encoder_downsampling_strides() {
    // EnCodec's encoder downsamples with K = 2 * stride for strides 2, 4, 5, 8; lengths that are
    // and are not multiples of the stride, and shorter than the pad.
    let mut seed = 200;
    for &s in &[2, 4, 5, 8] {
        for &t in &[1, 2, 7, 37, 40, 323] {
            seed += 1;
            check(seed, 2, 3, 5, t, 2 * s, causal(s, 1));
        }
    }
    // Odd combinations of stride and dilation.
    check(299, 1, 2, 3, 17, 3, causal(3, 2));
    check(298, 1, 2, 3, 5, 3, causal(5, 2));
}

#[test]
fn no_padding_valid_convolution() {
    for (i, &(k, s, d, t)) in
        [(1, 1, 1, 1), (3, 1, 1, 3), (7, 2, 1, 30), (3, 3, 2, 11), (4, 5, 1, 100)].iter().enumerate()
    {
        check(
            300 + i as u64,
            2,
            3,
            6,
            t,
            k,
            Conv1dOpts { stride: s, dilation: d, causal_reflect: false, ..Default::default() },
        );
    }
}

/// Zero padding and groups: HuBERT's positional conv (kernel K even, padding K/2, last frame
/// dropped = pads [K/2, K/2 - 1]) in tiny and real sizes, and groups whose channels do not fill
/// a tile (a tile crossing a group's end would mix groups or overwrite the next one).
#[test]
fn zero_padding_and_groups() {
    let opts =
        |groups, zero_pad, stride| Conv1dOpts { stride, causal_reflect: false, zero_pad, groups, ..Default::default() };
    check(500, 1, 32, 32, 49, 16, opts(4, [8, 7], 1));
    check(501, 2, 6, 9, 13, 3, opts(3, [1, 1], 1));
    check(502, 1, 12, 20, 7, 5, opts(4, [0, 3], 2));
    check(503, 1, 5, 5, 4, 2, opts(5, [3, 0], 1));
    check(504, 1, 40, 80, 20, 1, opts(1, [2, 2], 1));
    // HuBERT base: 768 channels in 16 groups of 48, K 128, 50 frames (1 s).
    check(505, 1, 768, 768, 50, 128, opts(16, [64, 63], 1));
}

#[test]
fn bark_decoder_sizes() {
    let start = std::time::Instant::now();
    // First decoder conv 128 -> 512, K 7 (75 frames = 1 s of audio).
    check(400, 1, 128, 512, 75, 7, causal(1, 1));
    // Residual block convs at 256 channels (K 3 and 1), and the 1x1 shortcut.
    check(401, 1, 256, 128, 301, 3, causal(1, 1));
    check(402, 1, 128, 256, 301, 1, causal(1, 1));
    check(403, 1, 256, 256, 97, 1, causal(1, 1));
    // Late, long, narrow stages and the last conv 32 -> 1.
    check(404, 1, 64, 32, 1201, 3, causal(1, 1));
    check(405, 1, 16, 32, 2401, 1, causal(1, 1));
    check(406, 1, 32, 1, 24_001, 7, causal(1, 1));
    // The widest reduction the model has: 512 in, K 7 is not in Bark, but 512 x 3 stresses
    // long sums.
    check(407, 1, 512, 64, 33, 3, causal(1, 1));
    eprintln!("bark_decoder_sizes: {:?}", start.elapsed());
}

#[test]
fn bad_input_is_an_error() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let x = g.tensor(&[1, 3, 10], DType::F32);
    let w = g.tensor(&[4, 3, 3], DType::F32);
    let bias = g.tensor(&[4], DType::F32);
    let ok = Conv1dOpts::default();
    assert!(conv1d(&mut g, x, w, bias, ok).is_ok());
    let w_bad = g.tensor(&[4, 2, 3], DType::F32);
    assert!(conv1d(&mut g, x, w_bad, bias, ok).is_err(), "channel mismatch");
    let b_bad = g.tensor(&[5], DType::F32);
    assert!(conv1d(&mut g, x, w, b_bad, ok).is_err(), "bias length");
    let x_u32 = g.tensor(&[1, 3, 10], DType::U32);
    assert!(conv1d(&mut g, x_u32, w, bias, ok).is_err(), "dtype");
    let x_2d = g.tensor(&[3, 10], DType::F32);
    assert!(conv1d(&mut g, x_2d, w, bias, ok).is_err(), "rank");
    assert!(conv1d(&mut g, x, w, bias, Conv1dOpts { stride: 0, ..ok }).is_err(), "stride 0");
    assert!(conv1d(&mut g, x, w, bias, Conv1dOpts { dilation: 0, ..ok }).is_err(), "dilation 0");
    assert!(conv1d(&mut g, x, w, bias, Conv1dOpts { stride: 4, ..ok }).is_err(), "stride > kernel");
    let x_short = g.tensor(&[1, 3, 2], DType::F32);
    let valid = Conv1dOpts { causal_reflect: false, ..ok };
    assert!(conv1d(&mut g, x_short, w, bias, valid).is_err(), "shorter than the kernel, no padding");
    let x_empty = g.tensor(&[1, 3, 0], DType::F32);
    assert!(conv1d(&mut g, x_empty, w, bias, ok).is_err(), "empty input");
    let grouped = Conv1dOpts { groups: 3, ..valid };
    let w_g = g.tensor(&[6, 1, 3], DType::F32);
    let b6 = g.tensor(&[6], DType::F32);
    assert!(conv1d(&mut g, x, w_g, b6, grouped).is_ok(), "3 groups of 1 input, 2 outputs");
    assert!(conv1d(&mut g, x, w_g, b6, Conv1dOpts { groups: 2, ..valid }).is_err(), "2 groups do not divide 3");
    assert!(conv1d(&mut g, x, w, bias, grouped).is_err(), "weight of 3 inputs per group for 3 groups");
    assert!(conv1d(&mut g, x, w, bias, Conv1dOpts { groups: 0, ..valid }).is_err(), "0 groups");
    let padded = Conv1dOpts { zero_pad: [1, 1], ..ok };
    assert!(conv1d(&mut g, x, w, bias, padded).is_err(), "zero and reflect padding together");
    assert!(conv1d(&mut g, x_short, w, bias, Conv1dOpts { zero_pad: [1, 0], ..valid }).is_ok(), "padded to 3");
    let huge = Conv1dOpts { dilation: usize::MAX / 2, ..ok };
    assert!(conv1d(&mut g, x, w, bias, huge).is_err(), "dilation overflow");
}
