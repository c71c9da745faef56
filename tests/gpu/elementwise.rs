//! GELU, erf, ELU, add and fill against plain CPU references.

use crate::common;

use bark_wgpu::ops::elementwise;
use bark_wgpu::{DType, Graph, Tensor};
use common::{assert_close, ctx, Rng};

/// Runs a one-op graph on `x` and returns the output as f32.
fn run_unary(x: &[f32], op: impl FnOnce(&mut Graph, bark_wgpu::Val) -> bark_wgpu::Result<bark_wgpu::Val>) -> Vec<f32> {
    let ctx = ctx();
    let t = Tensor::from_f32(ctx, x, &[x.len()], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let xv = g.input(&t);
    let y = op(&mut g, xv).unwrap();
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(y).to_f32(ctx).unwrap()
}

/// erf in f64 (libm), the reference the approximation is held to.
fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

#[test]
fn erf_within_1e6_of_f64_erf() {
    // Dense sweep over where erf changes, plus the tails.
    let x: Vec<f32> = (0..20_001).map(|i| -10.0 + i as f32 * 0.001).collect();
    let got = run_unary(&x, elementwise::erf);
    let want: Vec<f32> = x.iter().map(|&v| libm::erf(v as f64) as f32).collect();
    // 1e-6 is the bound on the approximation; the f32 result itself rounds to 6e-8.
    assert_close("erf", &got, &want, 1e-6, 0.0);
}

#[test]
fn gelu_matches_exact_erf_form() {
    let mut rng = Rng::new(1);
    for n in [1usize, 7, 257, 65_537] {
        let x = rng.normal(n, 3.0);
        let got = run_unary(&x, elementwise::gelu);
        let want: Vec<f32> = x.iter().map(|&v| gelu_f64(v as f64) as f32).collect();
        // erf error 1e-6 scaled by |x|/2, plus f32 rounding of the product (a few ulps).
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let tol = 1e-6 * (0.5 * x[i].abs()).max(1.0) + 4.0 * f32::EPSILON * w.abs();
            assert!((g - w).abs() <= tol, "n={n} i={i} x={} got {g} want {w}", x[i]);
        }
    }
}

#[test]
fn gelu_is_not_the_tanh_approximation() {
    // At x = -3 the tanh form differs from the erf form by ~3e-4: far above our error.
    let got = run_unary(&[-3.0], elementwise::gelu)[0];
    assert!((got as f64 - gelu_f64(-3.0)).abs() < 1e-6, "{got}");
}

#[test]
fn elu_alpha_one() {
    let x = Rng::new(2).normal(1000, 2.0);
    let got = run_unary(&x, |g, v| elementwise::elu(g, v, 1.0));
    let want: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { v.exp_m1() }).collect();
    assert_close("elu", &got, &want, 1e-6, 1e-6);
}

#[test]
fn add_and_fill() {
    let ctx = ctx();
    let mut rng = Rng::new(3);
    let (a, b) = (rng.normal(1031, 1.0), rng.normal(1031, 1.0));
    let ta = Tensor::from_f32(ctx, &a, &[1031], DType::F32).unwrap();
    let tb = Tensor::from_f32(ctx, &b, &[1031], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let (va, vb) = (g.input(&ta), g.input(&tb));
    let s = elementwise::add(&mut g, va, vb).unwrap();
    let f = g.tensor(&[13], DType::F32);
    elementwise::fill(&mut g, f, 2.5).unwrap();
    g.keep(s);
    g.keep(f);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_close("add", &plan.tensor(s).to_f32(ctx).unwrap(), &want, 0.0, 0.0);
    assert_eq!(plan.tensor(f).to_f32(ctx).unwrap(), vec![2.5; 13]);
}

#[test]
fn shape_and_dtype_errors() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let a = g.tensor(&[4], DType::F32);
    let b = g.tensor(&[5], DType::F32);
    assert!(elementwise::add(&mut g, a, b).is_err());
    let c = g.tensor(&[4], DType::U32);
    assert!(elementwise::gelu(&mut g, c).is_err());
}
