//! `linear` (both GEMMs and both GEMVs) against a CPU reference with f64 accumulation, on
//! awkward sizes (1, primes, not multiples of any tile, odd K with f16 rows), every decode M
//! from 1 to 16, the 16/17 switch to a GEMM, Bark's largest layers, and bad input.
//!
//! Tolerance (per element, for f32 and f16 weights alike): the kernels accumulate K products in
//! f32, so each step rounds by at most u = 2^-24 of a partial sum, and a partial sum is at most
//! S = sum_k |x_k w_k|. Rounding errors of random data add up like a random walk, about
//! u * sqrt(K) * S; we allow 8x that, plus u per term of the epilogue. GELU multiplies an input
//! error by at most 1.13 (its largest slope) and adds the erf approximation's 1.5e-7 * |v| / 2,
//! which we bound by 1e-6 * max(1, |v|). For f16 weights the reference uses the same
//! f16-rounded weights, so the storage rounding is not part of the error and the bound stays
//! f32-tight. A wrong index or a lost term is off by about |x_k w_k|, far above the bound.
//!
//! `norm_linear` (a LayerNorm of x's rows first) is checked against the f64 LayerNorm. Its f32
//! statistics are sums of K terms, so 1/sqrt(var + eps) carries a relative error of about
//! u * sqrt(K) common to the whole row, and each normalised element rounds a few more times
//! (two subtractions, two products, the bias add): we allow 8 u (sqrt(K) + 4) times
//! S_n = sum_k |w_k g_k (x_k - mean) / sd|, on top of the product's bound computed on the
//! normalised row. The GEMVs take the mean out after the product (see
//! shaders/common/gemv_dots.wgsl), which loses up to u sqrt(K) |mean| / sd sum_k |w_k g_k|
//! more: allowed 8x as well. A wrong statistic, weight or bias index is off by order |x_k w_k|.

use crate::common;

use bark_wgpu::ops::cpu::gemm_direct;
use bark_wgpu::ops::gemv;
use bark_wgpu::ops::layernorm::EPS;
use bark_wgpu::ops::matmul::{self, Epilogue, InputNorm, Linear, LinearProblem, Variant};
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor};
use common::{ctx, Rng};
use half::f16;

const U: f64 = 1.0 / (1u64 << 24) as f64;

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    f16: bool,
    bias: bool,
    gelu: bool,
    residual: bool,
    /// A LayerNorm of x first (`norm_linear`): None, or Some(with a norm bias).
    norm: Option<bool>,
}

impl Case {
    fn new(m: usize, k: usize, n: usize, f16: bool) -> Case {
        Case { m, k, n, f16, bias: false, gelu: false, residual: false, norm: None }
    }
    fn normed(self, norm_bias: bool) -> Case {
        Case { norm: Some(norm_bias), ..self }
    }
    /// All three epilogue stages on.
    fn full(mut self) -> Case {
        (self.bias, self.gelu, self.residual) = (true, true, true);
        self
    }
}

fn gelu(v: f64) -> f64 {
    0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2))
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    /// The weights as the kernel sees them: `w`, rounded to f16 for f16 cases.
    w_ref: Vec<f64>,
    bias: Vec<f32>,
    residual: Vec<f32>,
    /// The input norm's weight ~ N(1, 0.3) and bias ~ N(0, 0.5).
    norm_w: Vec<f32>,
    norm_b: Vec<f32>,
}

/// x ~ N(0, 1), W ~ N(0, 1/sqrt(K)) like a trained layer (outputs of order 1), bias and
/// residual ~ N(0, 0.5). Normed cases shift each x row by a mean of up to +-4, as a residual
/// stream drifts, so a norm that skipped centring would be far off.
fn data(c: &Case, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let mut x = rng.normal(c.m * c.k, 1.0);
    let w = rng.normal(c.n * c.k, 1.0 / (c.k as f32).sqrt());
    let w_ref = w.iter().map(|&v| if c.f16 { f16::from_f32(v).to_f64() } else { v as f64 }).collect();
    let (bias, residual) = (rng.normal(c.n, 0.5), rng.normal(c.m * c.n, 0.5));
    let norm_w = rng.normal(c.k, 0.3).iter().map(|v| v + 1.0).collect();
    let norm_b = rng.normal(c.k, 0.5);
    if c.norm.is_some() {
        let shifts = rng.normal(c.m, 2.0);
        for (row, shift) in x.chunks_mut(c.k).zip(shifts) {
            row.iter_mut().for_each(|v| *v += shift);
        }
    }
    Data { x, w, w_ref, bias, residual, norm_w, norm_b }
}

/// Row `m` of x as the product sees it (f64 LayerNorm for normed cases); for the tolerance, per
/// element the part of it that the norm's statistics scale, `g_k (x_k - mean) / sd`, and
/// `g_k |mean| / sd` (zeros without a norm).
fn input_row(c: &Case, d: &Data, m: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = d.x[m * c.k..(m + 1) * c.k].iter().map(|&v| v as f64).collect();
    let Some(norm_bias) = c.norm else {
        return (x, vec![0.0; c.k], vec![0.0; c.k]);
    };
    let mean = x.iter().sum::<f64>() / c.k as f64;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c.k as f64;
    let sd = (var + EPS as f64).sqrt();
    let scaled: Vec<f64> = (0..c.k).map(|k| d.norm_w[k] as f64 * (x[k] - mean) / sd).collect();
    let normed = (0..c.k).map(|k| scaled[k] + if norm_bias { d.norm_b[k] as f64 } else { 0.0 }).collect();
    let shifted = (0..c.k).map(|k| d.norm_w[k] as f64 * mean.abs() / sd).collect();
    (normed, scaled, shifted)
}

/// Reference value and tolerance for output row `m` (see the module comment).
fn reference_row(c: &Case, d: &Data, m: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut want, mut tol) = (Vec::with_capacity(c.n), Vec::with_capacity(c.n));
    let (x, scaled, shifted) = input_row(c, d, m);
    let sqrt_k = (c.k as f64).sqrt();
    for n in 0..c.n {
        let w = &d.w_ref[n * c.k..(n + 1) * c.k];
        let (mut dot, mut mag, mut mag_norm) = (0.0f64, 0.0f64, 0.0f64);
        for (((&xv, &sv), &hv), &wv) in x.iter().zip(&scaled).zip(&shifted).zip(w) {
            let p = xv * wv;
            dot += p;
            mag += p.abs();
            mag_norm += (sv * wv).abs() + (hv * wv).abs();
        }
        let mut e = 8.0 * U * (sqrt_k + 1.0) * mag + 8.0 * U * (sqrt_k + 4.0) * mag_norm;
        let mut v = dot;
        if c.bias {
            v += d.bias[n] as f64;
            e += U * v.abs();
        }
        if c.gelu {
            e = 1.13 * e + 1e-6 * v.abs().max(1.0);
            v = gelu(v);
        }
        if c.residual {
            v += d.residual[m * c.n + n] as f64;
            e += U * v.abs();
        }
        want.push(v as f32);
        tol.push((e + U * v.abs()) as f32);
    }
    (want, tol)
}

/// Runs `linear_with` for the case and returns y as f32 `[M, N]`.
fn run_gpu(ctx: &Context, c: &Case, d: &Data, variant: Variant) -> Vec<f32> {
    let dtype = if c.f16 { DType::F16 } else { DType::F32 };
    let xt = Tensor::from_f32(ctx, &d.x, &[c.m, c.k], DType::F32).unwrap();
    let wt = Tensor::from_f32(ctx, &d.w, &[c.n, c.k], dtype).unwrap();
    let bt = Tensor::from_f32(ctx, &d.bias, &[c.n], DType::F32).unwrap();
    let rt = Tensor::from_f32(ctx, &d.residual, &[c.m, c.n], DType::F32).unwrap();
    let nw = Tensor::from_f32(ctx, &d.norm_w, &[c.k], DType::F32).unwrap();
    let nb = Tensor::from_f32(ctx, &d.norm_b, &[c.k], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let (x, w) = (g.input(&xt), g.input(&wt));
    let bias = c.bias.then(|| g.input(&bt));
    let residual = c.residual.then(|| g.input(&rt));
    let act = if c.gelu { Epilogue::Gelu } else { Epilogue::None };
    let y = match c.norm {
        None => matmul::linear_with(&mut g, x, w, bias, act, residual, variant).unwrap(),
        Some(norm_bias) => {
            let norm = InputNorm { weight: g.input(&nw), bias: norm_bias.then(|| g.input(&nb)), eps: EPS };
            let layer = Linear { weight: w, bias };
            matmul::norm_linear_with(&mut g, x, norm, layer, act, residual, variant).unwrap()
        }
    };
    assert_eq!(g.shape(y), [c.m, c.n]);
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(y).to_f32(ctx).unwrap()
}

/// Checks the rows in `rows` (all rows when `None`) of one run.
fn check_rows(ctx: &Context, c: &Case, variant: Variant, seed: u64, rows: Option<Vec<usize>>) {
    let d = data(c, seed);
    let got = run_gpu(ctx, c, &d, variant);
    for m in rows.unwrap_or_else(|| (0..c.m).collect()) {
        let (want, tol) = reference_row(c, &d, m);
        for n in 0..c.n {
            let g = got[m * c.n + n];
            assert!(
                (g - want[n]).abs() <= tol[n],
                "{variant:?} {c:?}: y[{m}, {n}] = {g}, want {} (|diff| {} > tol {})",
                want[n],
                (g - want[n]).abs(),
                tol[n]
            );
        }
    }
}

/// The variant `Variant::Auto` picks on `ctx` for `m` rows without an input norm.
fn auto_variant(ctx: &Context, m: usize) -> Variant {
    let p = LinearProblem { m, n: 64, k: 64, w_f16: false, norm: false };
    matmul::choose(&p, Variant::Auto, ctx.policy()).unwrap().kernel.variant()
}

fn check(ctx: &Context, c: &Case, variant: Variant, seed: u64) {
    check_rows(ctx, c, variant, seed, None);
}

/// The GEMV kernels this device can run: the workgroup one always, the subgroup one where
/// SUBGROUP is offered (lavapipe offers it; `fallback_without_optional_features` covers the
/// device without).
fn gemv_variants(ctx: &Context) -> Vec<Variant> {
    if ctx.policy().has_subgroups() {
        vec![Variant::Gemv, Variant::GemvSubgroup]
    } else {
        crate::common::skipped("matmul: subgroup GEMV", "the device has no SUBGROUP");
        vec![Variant::Gemv]
    }
}

#[test]
fn gemv_awkward_sizes_both_dtypes() {
    let ctx = ctx();
    // K = 8, 16, 1024: vec4 path for both dtypes; K = 12: vec4 for f32, scalar for f16;
    // K = 1, 7, 13, 97, 257: scalar path, odd K pads f16 rows.
    let shapes = [(1, 1, 1), (1, 7, 13), (3, 97, 257), (16, 13, 7), (5, 257, 97), (2, 8, 5), (4, 12, 9), (7, 16, 33)];
    for variant in gemv_variants(ctx) {
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for f16 in [false, true] {
                let mut c = Case::new(m, k, n, f16);
                // Vary the epilogue so each stage is seen alone and together.
                (c.bias, c.gelu, c.residual) = [(false, false, false), (true, false, false), (true, true, true)][i % 3];
                check(ctx, &c, variant, i as u64);
            }
        }
    }
}

#[test]
fn gemv_every_m_from_1_to_16() {
    let ctx = ctx();
    // The direct GEMM too: it takes 1, 2, 4 or 8 rows per thread by M.
    let mut variants = gemv_variants(ctx);
    variants.push(Variant::GemmDirect);
    for variant in variants {
        for m in 1..=16 {
            // K = 64 takes the vec4 path, K = 33 the scalar one with an odd f16 row.
            check(ctx, &Case::new(m, 64, 37, m % 2 == 0).full(), variant, 100 + m as u64);
            check(ctx, &Case::new(m, 33, 19, m % 2 == 1).full(), variant, 200 + m as u64);
        }
    }
}

#[test]
fn gemv_bark_sizes_batch_one() {
    let ctx = ctx();
    // Bark's decode-step layers: attention in (K=1024, N=3072), MLP in/out (1024 -> 4096 ->
    // 1024), the semantic lm_head (N=10048), and the small models' MLP (768 -> 3072).
    let shapes = [(1024, 4096), (4096, 1024), (1024, 10048), (768, 3072)];
    let auto = auto_variant(ctx, 1);
    for (i, &(k, n)) in shapes.iter().enumerate() {
        let f16 = i % 2 == 0;
        let mut c = Case::new(1, k, n, f16);
        c.bias = i == 3;
        c.gelu = i == 0;
        c.residual = i == 1;
        check(ctx, &c, auto, 300 + i as u64);
        check(ctx, &Case { f16: !f16, ..c }, Variant::Gemv, 310 + i as u64);
    }
}

/// Both GEMMs: the tiled one (GPUs) and the direct one (CPU adapters).
const GEMMS: [Variant; 2] = [Variant::Gemm, Variant::GemmDirect];

#[test]
fn gemm_awkward_sizes_both_dtypes() {
    let ctx = ctx();
    // Edges of the tiled GEMM's 64 x 64 tile and of BK = 16 in every direction, K = 1 and odd
    // K for f16. The direct GEMM's blocks (8 rows, 4 columns per thread, 256 columns per
    // workgroup): M = 9, 23 and N = 5, 259 cross them; K = 16, 24 take its 16-byte loads for
    // both dtypes, K = 12 for f32 only, the rest its one-weight-at-a-time loop.
    let shapes = [
        (17, 1, 1),
        (1, 7, 13),
        (17, 13, 7),
        (65, 97, 257),
        (64, 16, 64),
        (130, 33, 65),
        (97, 257, 3),
        (9, 24, 259),
        (23, 12, 5),
    ];
    for variant in GEMMS {
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for f16 in [false, true] {
                let mut c = Case::new(m, k, n, f16);
                (c.bias, c.gelu, c.residual) = [(false, false, false), (true, false, false), (true, true, true)][i % 3];
                check(ctx, &c, variant, 400 + i as u64);
            }
        }
    }
}

#[test]
fn gemm_bark_prefill_size() {
    let ctx = ctx();
    // A 257-token prefill through the MLP's first layer (f16), and the MLP's K = 4096 in f32
    // on fewer columns (these GEMMs are slow on lavapipe). The CPU reference checks
    // the rows at every tile edge of both GEMMs and a stride of the others.
    let rows: Vec<usize> = (0..257).filter(|m| m % 64 < 2 || m % 64 > 61 || m % 29 == 0 || m % 8 == 7).collect();
    for variant in GEMMS {
        check_rows(ctx, &Case::new(257, 1024, 4096, true).full(), variant, 500, Some(rows.clone()));
        check_rows(ctx, &Case::new(257, 4096, 300, false), variant, 501, Some(rows.clone()));
    }
}

#[test]
fn direct_gemm_shares_x_loads_and_agrees_bit_for_bit_without() {
    // Where a workgroup is one subgroup (of 8 lanes) the direct GEMM's lanes split
    // the loads of x (by rows in blocks of 8 and 16 rows, by steps of K in blocks of 1, 2 and
    // 4) and shuffle the words to each other; a device without subgroups has each thread load
    // them all. Every output is the same sum in the same order either way, so the two must
    // agree bit for bit, and match the reference. Shapes: every block size, M past a block, N
    // past a workgroup's columns, both dtypes, steps of K that do not fill the lanes (K = 24 f16
    // and K = 40 f32 at M = 1 and 2), and K = 12 in f16 (no 16-byte loads: not shared).
    let shared = ctx();
    // What the device offers decides it: subgroups of exactly a workgroup's 8 lanes.
    assert_eq!(gemm_direct::shares_x_loads(shared.policy()), shared.policy().subgroups_are(8));
    let opts = ContextOptions { no_optional_features: true, cpu_kernels: Some(true), ..Default::default() };
    let own = &Context::new(&opts).unwrap();
    assert!(!gemm_direct::shares_x_loads(own.policy()));
    // Without them both contexts run the same loads: the direct GEMM's own tests cover that.
    if !gemm_direct::shares_x_loads(shared.policy()) {
        crate::common::skipped("matmul: shared x loads", "the device has no subgroups of exactly 8 lanes");
        return;
    }
    let shapes = [
        (1, 24, 259, true),
        (1, 768, 40, true),
        (2, 40, 33, false),
        (3, 64, 70, true),
        (8, 24, 259, true),
        (23, 16, 300, false),
        (16, 64, 29, true),
        (40, 1024, 130, true),
        (9, 12, 33, true),
    ];
    for (i, &(m, k, n, f16)) in shapes.iter().enumerate() {
        let c = Case::new(m, k, n, f16).full();
        let d = data(&c, 1000 + i as u64);
        let a = run_gpu(shared, &c, &d, Variant::GemmDirect);
        let b = run_gpu(own, &c, &d, Variant::GemmDirect);
        let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{m}x{k}x{n} f16={f16}: shared and own x loads differ");
        check(shared, &c, Variant::GemmDirect, 1000 + i as u64);
    }
}

#[test]
fn auto_picks_by_rows_and_context() {
    // GPU kernels: the GEMV up to 16 rows, the tiled GEMM above. CPU kernels (by default
    // exactly on a CPU adapter): the direct GEMM for every M, except that a normed product of
    // up to 16 rows keeps the GEMV when the context fuses norms into GEMVs.
    let default = ctx();
    if std::env::var("BARK_CPU_KERNELS").is_err() {
        assert_eq!(default.policy().cpu_kernels, default.summary().device_type == "Cpu");
    }
    for cpu_kernels in [false, true] {
        for norm_in_gemv in [false, true] {
            let opts = ContextOptions {
                cpu_kernels: Some(cpu_kernels),
                norm_in_gemv: Some(norm_in_gemv),
                ..Default::default()
            };
            let ctx = &Context::new(&opts).unwrap();
            assert_eq!(ctx.policy().cpu_kernels, cpu_kernels);
            let gemv = auto_variant(ctx, 16);
            if cpu_kernels {
                assert_eq!((gemv, auto_variant(ctx, 17)), (Variant::GemmDirect, Variant::GemmDirect));
            } else {
                assert!(!GEMMS.contains(&gemv));
                assert_eq!(auto_variant(ctx, 17), Variant::Gemm);
            }
            for m in [1, 16, 17] {
                for f16 in [false, true] {
                    check(ctx, &Case::new(m, 96, 70, f16).full(), Variant::Auto, 600 + m as u64);
                    check(ctx, &Case::new(m, 96, 70, f16).normed(true).full(), Variant::Auto, 610 + m as u64);
                }
            }
            // Which kernel ran: the GEMV's dispatch reads the norm itself (one dispatch), the
            // GEMMs after a layer-norm pass (two).
            let mut g = Graph::new(ctx);
            let x = g.tensor(&[16, 96], DType::F32);
            let w = g.tensor(&[70, 96], DType::F32);
            let nw = g.tensor(&[96], DType::F32);
            let norm = InputNorm { weight: nw, bias: None, eps: EPS };
            let layer = Linear { weight: w, bias: None };
            let y = matmul::norm_linear(&mut g, x, norm, layer, Epilogue::None, None).unwrap();
            g.keep(y);
            // 16 rows: fused wherever the context fuses norms, with CPU kernels or not.
            assert_eq!(g.compile().unwrap().dispatch_count(), if norm_in_gemv { 1 } else { 2 });
        }
    }
}

#[test]
fn leading_dims_are_rows_and_linear_struct_forwards() {
    let ctx = ctx();
    // x [2, 3, K] is M = 6 rows; the output keeps the leading dims: [2, 3, N].
    let c = Case::new(6, 24, 10, true).full();
    let d = data(&c, 700);
    let xt = Tensor::from_f32(ctx, &d.x, &[2, 3, c.k], DType::F32).unwrap();
    let wt = Tensor::from_f32(ctx, &d.w, &[c.n, c.k], DType::F16).unwrap();
    let bt = Tensor::from_f32(ctx, &d.bias, &[c.n], DType::F32).unwrap();
    let rt = Tensor::from_f32(ctx, &d.residual, &[2, 3, c.n], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let layer = Linear { weight: g.input(&wt), bias: Some(g.input(&bt)) };
    let (x, r) = (g.input(&xt), g.input(&rt));
    let y = layer.forward(&mut g, x, Epilogue::Gelu, Some(r)).unwrap();
    assert_eq!(g.shape(y), [2, 3, c.n]);
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let got = plan.tensor(y).to_f32(ctx).unwrap();
    for m in 0..c.m {
        let (want, tol) = reference_row(&c, &d, m);
        for n in 0..c.n {
            assert!((got[m * c.n + n] - want[n]).abs() <= tol[n], "y[{m}, {n}]");
        }
    }
}

#[test]
fn norm_linear_every_kernel_and_path() {
    let ctx = ctx();
    let mut variants = gemv_variants(ctx);
    variants.extend(GEMMS);
    // K = 64, 1024: vec4 path for both dtypes; K = 12: vec4 for f32, scalar for f16; K = 1,
    // 33, 97: scalar path (K = 1: every row normalises to its bias). M covers one pass of the
    // statistics, two passes in the subgroup GEMV (M > 8), and padded M tiles.
    let shapes = [(1, 64, 37), (3, 33, 19), (16, 64, 21), (9, 12, 40), (5, 97, 8), (2, 1, 3), (1, 1024, 300)];
    for variant in variants {
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for f16 in [false, true] {
                let mut c = Case::new(m, k, n, f16).normed(i % 2 == 0);
                (c.bias, c.gelu, c.residual) = [(false, false, false), (true, true, true)][i % 2];
                check(ctx, &c, variant, 900 + i as u64);
            }
        }
    }
}

#[test]
fn norm_linear_every_m_and_bark_sizes() {
    let ctx = ctx();
    for variant in gemv_variants(ctx) {
        for m in 1..=16 {
            check(ctx, &Case::new(m, 40, 11, m % 2 == 0).normed(m % 3 == 0).full(), variant, 950 + m as u64);
        }
    }
    // Bark's normed layers at batch one: QKV of bark-small (768 -> 2304), MLP in of bark
    // (1024 -> 4096, GELU), the semantic head (1024 -> 10048), all with f16 weights as --f16.
    let auto = auto_variant(ctx, 1);
    check(ctx, &Case::new(1, 768, 2304, true).normed(false), auto, 970);
    let mut mlp = Case::new(1, 1024, 4096, true).normed(true);
    mlp.gelu = true;
    check(ctx, &mlp, auto, 971);
    check(ctx, &Case::new(1, 1024, 10048, true).normed(false), auto, 972);
}

#[test]
fn norm_linear_rows_do_not_depend_on_the_batch() {
    // A decode step's row must come out bit-identical whether it runs alone or with 15 other
    // rows: the statistics are summed the same way for every M, and the direct GEMM (after a
    // layer-norm pass) sums each output in the same order at 1 row per thread as at 8.
    let ctx = ctx();
    let mut variants = gemv_variants(ctx);
    variants.push(Variant::GemmDirect);
    for variant in variants {
        for (k, f16) in [(64, true), (33, false)] {
            let c16 = Case::new(16, k, 29, f16).normed(true).full();
            let d16 = data(&c16, 990);
            let all = run_gpu(ctx, &c16, &d16, variant);
            for m in [0, 7, 15] {
                let c1 = Case { m: 1, ..c16 };
                let d1 = Data {
                    x: d16.x[m * k..(m + 1) * k].to_vec(),
                    residual: d16.residual[m * c16.n..(m + 1) * c16.n].to_vec(),
                    ..data(&c16, 990)
                };
                let alone = run_gpu(ctx, &c1, &d1, variant);
                let row = &all[m * c16.n..(m + 1) * c16.n];
                assert!(
                    alone.iter().zip(row).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{variant:?} K = {k}: row {m} alone {alone:?} != in the batch {row:?}"
                );
            }
        }
    }
}

#[test]
fn fallback_without_optional_features() {
    // A device opened without subgroups: f16 weights work as always (they are unpacked from
    // u32 words), the auto choice is the workgroup GEMV, and asking for the subgroup one is an
    // error, not a failed pipeline.
    let opts = ContextOptions { no_optional_features: true, cpu_kernels: Some(false), ..Default::default() };
    let ctx = &Context::new(&opts).unwrap();
    assert!(!ctx.policy().has_subgroups());
    assert_eq!(auto_variant(ctx, 1), Variant::Gemv);
    check(ctx, &Case::new(3, 40, 21, true).full(), Variant::Auto, 800);
    check(ctx, &Case::new(20, 40, 21, true).full(), Variant::Auto, 801);
    check(ctx, &Case::new(3, 40, 21, true).normed(true).full(), Variant::Auto, 802);
    let mut g = Graph::new(ctx);
    let x = g.tensor(&[1, 8], DType::F32);
    let w = g.tensor(&[4, 8], DType::F16);
    assert!(matmul::linear_with(&mut g, x, w, None, Epilogue::None, None, Variant::GemvSubgroup).is_err());
}

#[test]
fn bad_shapes_and_dtypes_are_errors() {
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    let x = g.tensor(&[3, 8], DType::F32);
    let w = g.tensor(&[5, 8], DType::F16);
    let b = g.tensor(&[5], DType::F32);
    let r = g.tensor(&[3, 5], DType::F32);
    let none = Epilogue::None;
    // The good call works, so each failure below is the one thing changed.
    assert!(matmul::linear(&mut g, x, w, Some(b), none, Some(r)).is_ok());

    let x_u32 = g.tensor(&[3, 8], DType::U32);
    let x_f16 = g.tensor(&[3, 8], DType::F16);
    let w_i32 = g.tensor(&[5, 8], DType::I32);
    let w_k9 = g.tensor(&[5, 9], DType::F32);
    let w_rank3 = g.tensor(&[1, 5, 8], DType::F32);
    let b_len4 = g.tensor(&[4], DType::F32);
    let b_f16 = g.tensor(&[5], DType::F16);
    let r_wrong = g.tensor(&[3, 4], DType::F32);
    let r_u32 = g.tensor(&[3, 5], DType::U32);
    let scalar = g.tensor(&[], DType::F32);
    let x_empty = g.tensor(&[0, 8], DType::F32);
    let x_17 = g.tensor(&[17, 8], DType::F32);
    let cases = [
        matmul::linear(&mut g, x_u32, w, None, none, None),
        matmul::linear(&mut g, x_f16, w, None, none, None),
        matmul::linear(&mut g, x, w_i32, None, none, None),
        matmul::linear(&mut g, x, w_k9, None, none, None),
        matmul::linear(&mut g, x, w_rank3, None, none, None),
        matmul::linear(&mut g, x, w, Some(b_len4), none, None),
        matmul::linear(&mut g, x, w, Some(b_f16), none, None),
        matmul::linear(&mut g, x, w, None, none, Some(r_wrong)),
        matmul::linear(&mut g, x, w, None, none, Some(r_u32)),
        matmul::linear(&mut g, scalar, w, None, none, None),
        matmul::linear(&mut g, x_empty, w, None, none, None),
        matmul::linear_with(&mut g, x_17, w, None, none, None, Variant::Gemv),
    ];
    let layer = Linear { weight: w, bias: None };
    let (nw, nw_9, nw_f16) = (g.tensor(&[8], DType::F32), g.tensor(&[9], DType::F32), g.tensor(&[8], DType::F16));
    let norm = |weight, bias| InputNorm { weight, bias, eps: EPS };
    assert!(matmul::norm_linear(&mut g, x, norm(nw, Some(nw)), layer, none, None).is_ok());
    let norm_cases = [
        matmul::norm_linear(&mut g, x, norm(nw_9, None), layer, none, None),
        matmul::norm_linear(&mut g, x, norm(nw_f16, None), layer, none, None),
        matmul::norm_linear(&mut g, x, norm(nw, Some(nw_9)), layer, none, None),
        matmul::norm_linear_with(&mut g, x, norm(nw_9, None), layer, none, None, Variant::Gemm),
    ];
    let cases = cases.into_iter().chain(norm_cases);
    for (i, r) in cases.enumerate() {
        assert!(r.is_err(), "case {i} should be an error");
    }
}

#[test]
fn subgroup_gemv_index_math_holds_at_every_subgroup_size() {
    // the subgroup GEMV at subgroup sizes this machine cannot offer (its drivers give 4 and 8;
    // GPUs 16, 32, 64, up to 128), on the shader's own index math: the host sizes a workgroup's
    // rows by the smallest subgroup, the hardware may pick any size from there up, and then the
    // workgroup's subgroups (sg < WG / size) take rows sg, sg + n_sg, ... of its rows, each
    // subgroup's lanes stride over a row's words, and lanes 0..3 write the four x rows of each
    // accumulator. Every row must be taken exactly once, every word of it summed exactly once,
    // and every x row written, whatever size the hardware picks.
    let wg = gemv::SUBGROUP_WG;
    for min_width in [4, 8, 16, 32, 64, 128] {
        let rows = gemv::subgroup_rows_per_workgroup(min_width);
        for width in [4, 8, 16, 32, 64, 128].into_iter().filter(|&w| w >= min_width && w <= wg) {
            let n_sg = wg / width;
            let mut taken = vec![0; rows as usize];
            for sg in 0..n_sg {
                for r in (sg..rows).step_by(n_sg as usize) {
                    taken[r as usize] += 1;
                }
            }
            assert!(taken.iter().all(|&t| t == 1), "min {min_width}, size {width}: rows taken {taken:?}");
            // A row of 1024 f16 weights is 128 16-byte words; 100 words is not a multiple of any size.
            for words in [1, 100, 128, 1024] {
                let mut summed = vec![0; words];
                for lane in 0..width as usize {
                    for j in (lane..words).step_by(width as usize) {
                        summed[j] += 1;
                    }
                }
                assert!(summed.iter().all(|&s| s == 1), "size {width}: {words} words summed unevenly");
            }
            for m_tile in [1u32, 2, 4, 8, 16] {
                let written: Vec<u32> =
                    (0..m_tile.div_ceil(4)).flat_map(|c| (0..4.min(width)).map(move |lane| c * 4 + lane)).collect();
                assert!((0..m_tile).all(|m| written.contains(&m)), "size {width}: MT {m_tile} rows unwritten");
            }
        }
    }
    // The device in hand: its sizes, and the GEMV on them (gemv_awkward_sizes_both_dtypes).
    let info = ctx().adapter().get_info();
    eprintln!("this device's subgroups: {}..{}", info.subgroup_min_size, info.subgroup_max_size);
}
