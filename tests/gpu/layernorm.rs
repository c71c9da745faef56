//! LayerNorm against an f64 CPU reference, both kernels: a workgroup per row (GPUs) and a
//! thread per row (`cpu_kernels`, CPU adapters), each on any adapter.

use crate::common;

use std::sync::OnceLock;

use bark_wgpu::ops::layernorm::{self, EPS, MAX_COLS};
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor};
use common::{assert_close, ctx, Rng};

/// A context for each kernel: `cpu_kernels` off (the workgroup kernel) and on (the rows one).
fn contexts() -> &'static [Context; 2] {
    static CTX: OnceLock<[Context; 2]> = OnceLock::new();
    CTX.get_or_init(|| {
        [false, true].map(|on| {
            Context::new(&ContextOptions { cpu_kernels: Some(on), ..Default::default() })
                .unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"))
        })
    })
}

/// torch.nn.LayerNorm in f64 on the same f32 inputs: biased variance, eps inside the sqrt.
fn reference(x: &[f32], h: usize, w: &[f32], b: Option<&[f32]>, eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(h) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (i, &v) in row.iter().enumerate() {
            let bias = b.map_or(0.0, |b| b[i] as f64);
            out.push(((v as f64 - mean) * rstd * w[i] as f64 + bias) as f32);
        }
    }
    out
}

// Tolerance for f32 kernels against the f64 reference: the row sums are trees over at most
// ~1000 terms (relative error ~log2(H) * 2^-24 < 1e-6; the rows kernel's sums of 32-element
// blocks, 32 + H / 32 terms, up to ~300 * 2^-24 < 2e-5 in the worst case, ~1e-6 in practice), the centred values are exact to an ulp,
// and 1/sqrt adds a few ulps; outputs are O(1) (weights ~1, bias ~0.5). 1e-5 absolute plus
// 1e-5 relative leaves a 10x margin and is still 50x tighter than the unbiased-variance
// mistake at H = 1024 (a relative 5e-4).
const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-5;

struct Case {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

fn case(rng: &mut Rng, rows: usize, h: usize, mean: f32) -> Case {
    let x = rng.normal(rows * h, 2.0).into_iter().map(|v| v + mean).collect();
    let w = rng.uniform(h, 0.5, 1.5);
    let b = rng.normal(h, 0.5);
    Case { x, w, b }
}

/// Runs `layer_norm` (with or without bias) with each kernel; returns y from both.
fn run_ln(c: &Case, rows: usize, h: usize, bias: bool, eps: f32) -> Vec<Vec<f32>> {
    contexts()
        .iter()
        .map(|ctx| {
            let tx = Tensor::from_f32(ctx, &c.x, &[rows, h], DType::F32).unwrap();
            let tw = Tensor::from_f32(ctx, &c.w, &[h], DType::F32).unwrap();
            let tb = Tensor::from_f32(ctx, &c.b, &[h], DType::F32).unwrap();
            let mut g = Graph::new(ctx);
            let (x, w) = (g.input(&tx), g.input(&tw));
            let b = bias.then(|| g.input(&tb));
            let y = layernorm::layer_norm(&mut g, x, w, b, eps).unwrap();
            g.keep(y);
            let plan = g.compile().unwrap();
            plan.run().unwrap();
            plan.tensor(y).to_f32(ctx).unwrap()
        })
        .collect()
}

/// Both kernels' outputs against `want`.
fn check_both(what: &str, got: &[Vec<f32>], want: &[f32], atol: f32, rtol: f32) {
    for (y, kernel) in got.iter().zip(["workgroup", "rows"]) {
        assert_close(&format!("{what} ({kernel} kernel)"), y, want, atol, rtol);
    }
}

#[test]
fn layer_norm_matches_torch_on_awkward_widths() {
    let mut rng = Rng::new(11);
    // Widths at the edges of each (workgroup size, share) variant, and Bark's 768 and 1024.
    for (rows, h) in [
        (3, 1),
        (5, 7),
        (3, 100),
        (2, 129),
        (4, 255),
        (2, 256),
        (3, 257),
        (2, 513),
        (257, 768),
        (6, 1024),
        (3, 1031),
        (2, 3000),
    ] {
        let c = case(&mut rng, rows, h, 0.3);
        for bias in [false, true] {
            let got = run_ln(&c, rows, h, bias, EPS);
            let want = reference(&c.x, h, &c.w, bias.then_some(&c.b[..]), EPS);
            check_both(&format!("ln rows={rows} h={h} bias={bias}"), &got, &want, ATOL, RTOL);
        }
    }
}

#[test]
fn layer_norm_is_exact_enough_for_rows_with_a_large_mean() {
    // x = 1e4 + N(0, 2): a one-pass E[x^2] - E[x]^2 in f32 loses everything here, and a plain
    // two-pass one carries the f32 mean's error (~1e-3) into every output.
    let mut rng = Rng::new(12);
    for h in [768, 1031] {
        let c = case(&mut rng, 4, h, 1.0e4);
        let got = run_ln(&c, 4, h, true, EPS);
        let want = reference(&c.x, h, &c.w, Some(&c.b), EPS);
        // The inputs themselves are exact; the f32 ulp of 1e4 (~1e-3) must not show.
        check_both(&format!("ln large mean h={h}"), &got, &want, ATOL, RTOL);
    }
}

#[test]
fn layer_norm_of_a_constant_row_is_the_bias_and_eps_is_used() {
    let (rows, h) = (2, 9);
    let mut c = case(&mut Rng::new(13), rows, h, 0.0);
    c.x = vec![3.25; rows * h];
    let got = run_ln(&c, rows, h, true, EPS);
    let want: Vec<f32> = (0..rows * h).map(|i| c.b[i % h]).collect();
    check_both("constant row", &got, &want, 0.0, 0.0);

    // A large eps changes the result visibly: the kernel must use the one it is given.
    let c = case(&mut Rng::new(14), rows, h, 0.0);
    let got = run_ln(&c, rows, h, false, 0.5);
    let want = reference(&c.x, h, &c.w, None, 0.5);
    check_both("eps 0.5", &got, &want, ATOL, RTOL);
}

#[test]
fn layer_norm_many_rows_use_a_two_dimensional_grid() {
    // 70,000 rows exceed 65,535 workgroups in x: the grid folds into y.
    let (rows, h) = (70_000, 3);
    let c = case(&mut Rng::new(15), rows, h, -1.0);
    let got = run_ln(&c, rows, h, true, EPS);
    let want = reference(&c.x, h, &c.w, Some(&c.b), EPS);
    check_both("70k rows", &got, &want, ATOL, RTOL);
}

#[test]
fn layer_norm_at_the_widest_row() {
    let (rows, h) = (2, MAX_COLS);
    let c = case(&mut Rng::new(16), rows, h, 5.0);
    let got = run_ln(&c, rows, h, false, EPS);
    let want = reference(&c.x, h, &c.w, None, EPS);
    check_both("widest row", &got, &want, ATOL, RTOL);
}

#[test]
fn bad_shapes_and_dtypes_are_errors() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let x = g.tensor(&[4, 8], DType::F32);
    let w8 = g.tensor(&[8], DType::F32);
    let w7 = g.tensor(&[7], DType::F32);
    let w16 = g.tensor(&[8], DType::F16);
    let xu = g.tensor(&[4, 8], DType::U32);
    let wide = g.tensor(&[1, MAX_COLS + 1], DType::F32);
    let w_wide = g.tensor(&[MAX_COLS + 1], DType::F32);
    let empty = g.tensor(&[4, 0], DType::F32);
    let w0 = g.tensor(&[0], DType::F32);
    assert!(layernorm::layer_norm(&mut g, x, w7, None, EPS).is_err());
    assert!(layernorm::layer_norm(&mut g, x, w8, Some(w7), EPS).is_err());
    assert!(layernorm::layer_norm(&mut g, x, w16, None, EPS).is_err());
    assert!(layernorm::layer_norm(&mut g, xu, w8, None, EPS).is_err());
    assert!(layernorm::layer_norm(&mut g, wide, w_wide, None, EPS).is_err());
    assert!(layernorm::layer_norm(&mut g, empty, w0, None, EPS).is_err());
    assert!(layernorm::layer_norm(&mut g, x, w8, None, EPS).is_ok());
}
