//! GroupNorm (with and without the fused GELU) and the transpose HuBERT needs, against f64 CPU
//! references.

use crate::common;

use bark_wgpu::ops::groupnorm::group_norm;
use bark_wgpu::ops::transpose::transpose;
use bark_wgpu::{DType, Graph};
use common::{assert_close, ctx, run_f32_op, Rng};

/// torch.nn.GroupNorm in f64 on the same f32 inputs (biased variance, eps inside the sqrt), then
/// GELU in its erf form when asked.
fn reference(
    x: &[f32],
    (b, c, t): (usize, usize, usize),
    groups: usize,
    w: &[f32],
    bias: &[f32],
    gelu: bool,
) -> Vec<f32> {
    let per = c / groups;
    let mut out = vec![0.0f32; b * c * t];
    for (gi, chunk) in x.chunks(per * t).enumerate() {
        let n = chunk.len() as f64;
        let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = chunk.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for (i, &v) in chunk.iter().enumerate() {
            let ch = (gi % groups) * per + i / t;
            let mut o = (v as f64 - mean) * rstd * w[ch] as f64 + bias[ch] as f64;
            if gelu {
                o = 0.5 * o * (1.0 + libm::erf(o / std::f64::consts::SQRT_2));
            }
            out[gi * per * t + i] = o as f32;
        }
    }
    out
}

// Tolerance: the group sums are per-invocation serial sums of up to n / 256 terms then a tree
// over 256 (relative error ~(n/256 + 8) * 2^-24: 8e-6 for the longest group here, 3e-5 for a
// minute of HuBERT audio); the corrected variance removes the mean's error, and 1/sqrt and the
// affine add a few ulps, GELU's erf approximation 1.5e-7 * |x|. Outputs are O(1): 2e-5 absolute
// plus 2e-5 relative. Dividing by the unbiased variance instead (n - 1) changes an output of
// the smallest group here (n = 7) by 7%; normalising over the wrong channels, far more.
const TOL: f32 = 2e-5;

fn check(seed: u64, (b, c, t): (usize, usize, usize), groups: usize, gelu: bool, offset: f32) {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = rng.normal(b * c * t, 2.0).into_iter().map(|v| v + offset).collect();
    let w = rng.uniform(c, 0.5, 1.5);
    let bias = rng.normal(c, 0.5);
    let (got, shape) = run_f32_op(&[(&x, &[b, c, t]), (&w, &[c]), (&bias, &[c])], |g, v| {
        group_norm(g, v[0], v[1], v[2], groups, 1e-5, gelu)
    });
    assert_eq!(shape, [b, c, t]);
    let want = reference(&x, (b, c, t), groups, &w, &bias, gelu);
    assert_close(&format!("group_norm b{b} c{c} t{t} groups {groups} gelu {gelu}"), &got, &want, TOL, TOL);
}

#[test]
fn per_channel_as_hubert() {
    // G = C: each channel over time. T = 1 s of 16 kHz audio after HuBERT's first conv (3199),
    // one frame, and lengths around the workgroup size.
    check(1, (1, 8, 3199), 8, true, 0.0);
    check(2, (2, 5, 1), 5, false, 0.0);
    check(3, (1, 3, 255), 3, false, 0.0);
    check(4, (1, 3, 257), 3, true, 0.0);
    // Far from zero (the corrected two-pass variance) and HuBERT base's 512 channels.
    check(5, (1, 512, 49), 512, true, 1000.0);
}

#[test]
fn general_groups() {
    check(10, (2, 6, 7), 3, false, 0.0);
    check(11, (1, 12, 100), 1, true, 0.0);
    check(12, (3, 4, 300), 2, false, -5.0);
    check(13, (1, 7, 1), 7, false, 0.0);
}

#[test]
fn group_norm_bad_input_is_an_error() {
    let mut g = Graph::new(ctx());
    let x = g.tensor(&[1, 6, 10], DType::F32);
    let w = g.tensor(&[6], DType::F32);
    let w5 = g.tensor(&[5], DType::F32);
    assert!(group_norm(&mut g, x, w, w, 3, 1e-5, false).is_ok());
    assert!(group_norm(&mut g, x, w, w, 4, 1e-5, false).is_err(), "4 groups of 6 channels");
    assert!(group_norm(&mut g, x, w, w, 0, 1e-5, false).is_err(), "0 groups");
    assert!(group_norm(&mut g, x, w5, w, 3, 1e-5, false).is_err(), "weight length");
    assert!(group_norm(&mut g, x, w, w5, 3, 1e-5, false).is_err(), "bias length");
    let x2 = g.tensor(&[6, 10], DType::F32);
    assert!(group_norm(&mut g, x2, w, w, 3, 1e-5, false).is_err(), "rank 2");
    let xu = g.tensor(&[1, 6, 10], DType::U32);
    assert!(group_norm(&mut g, xu, w, w, 3, 1e-5, false).is_err(), "dtype");
}

#[test]
fn transpose_swaps_the_last_two_dimensions() {
    for &(b, r, c) in &[(1, 1, 1), (2, 3, 5), (1, 49, 768), (3, 257, 2)] {
        let x: Vec<f32> = (0..b * r * c).map(|i| i as f32).collect();
        let (got, shape) = run_f32_op(&[(&x, &[b, r, c])], |g, v| transpose(g, v[0]));
        assert_eq!(shape, [b, c, r]);
        let mut want = Vec::with_capacity(x.len());
        for bi in 0..b {
            for ci in 0..c {
                for ri in 0..r {
                    want.push(x[(bi * r + ri) * c + ci]);
                }
            }
        }
        assert_eq!(got, want, "transpose [{b}, {r}, {c}]");
    }
    let mut g = Graph::new(ctx());
    let x2 = g.tensor(&[3, 4], DType::F32);
    assert!(transpose(&mut g, x2).is_err(), "rank 2");
}
