//! Shared by the kernel tests: one device per test binary, seeded random data, comparisons.
#![allow(dead_code)]

pub mod generation;

use std::sync::OnceLock;

use bark_wgpu::{Context, ContextOptions};

/// The test device. There is no skip: without an adapter every GPU test fails loudly, in CI and
/// locally alike (install mesa-vulkan-drivers for the software one).
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| match Context::new(&ContextOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!("GPU tests need a wgpu adapter: {e}"),
    })
}

/// Records that part of `test` did not run on this device and why. It goes to standard error and,
/// when `BARK_TEST_SKIPS` names a file, onto a line of it: `.ci/run` prints that file after each
/// leg (cargo hides a passing test's output), so a leg that silently tests less shows.
pub fn skipped(test: &str, reason: &str) {
    eprintln!("skipped: {test}: {reason}");
    if let Some(path) = std::env::var_os("BARK_TEST_SKIPS") {
        use std::io::Write;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        let written = file.and_then(|mut f| writeln!(f, "{test}: {reason}"));
        written.unwrap_or_else(|e| panic!("cannot record a skip in {path:?}: {e}"));
    }
}

/// A context of its own, for a test that reads the counters (`Context::stats`): the tests share
/// one binary and run at once, and no other test's buffers may show in them.
pub fn private_ctx() -> Context {
    Context::new(&ContextOptions::default()).unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"))
}

/// A test device whose decode GEMVs normalise their input themselves (`on`) or after a
/// layer_norm pass, whatever the adapter's default: model tests run both paths on any adapter.
pub fn ctx_norm_in_gemv(on: bool) -> &'static Context {
    static CTX: [OnceLock<Context>; 2] = [OnceLock::new(), OnceLock::new()];
    CTX[usize::from(on)].get_or_init(|| {
        match Context::new(&ContextOptions { norm_in_gemv: Some(on), ..Default::default() }) {
            Ok(c) => c,
            Err(e) => panic!("GPU tests need a wgpu adapter: {e}"),
        }
    })
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.f32()).collect()
    }
    /// Standard normal (Box-Muller), scaled.
    pub fn normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1 = self.f32().max(1e-7);
                let u2 = self.f32();
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
            })
            .collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Fails with the worst element if any `|got - want| > atol + rtol * |want|`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, f32::NEG_INFINITY);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let mut excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess.is_nan() {
            // NaN where a number was expected (or the reverse) is the worst possible miss.
            excess = if g.is_nan() && w.is_nan() { f32::NEG_INFINITY } else { f32::INFINITY };
        }
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let (i, e) = worst;
    assert!(
        e <= 0.0,
        "{what}: element {i} got {} want {} (|diff| {} > atol {atol} + rtol {rtol} * |want|)",
        got[i],
        want[i],
        (got[i] - want[i]).abs()
    );
}

/// The largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Uploads f32 `inputs` (data, shape), records `op` on their values, runs the one-step graph and
/// returns the output and its shape: the upload-record-run-read every op test repeats.
pub fn run_f32_op(
    inputs: &[(&[f32], &[usize])],
    op: impl FnOnce(&mut bark_wgpu::Graph, &[bark_wgpu::Val]) -> bark_wgpu::Result<bark_wgpu::Val>,
) -> (Vec<f32>, Vec<usize>) {
    let ctx = ctx();
    let tensors: Vec<_> = inputs
        .iter()
        .map(|(data, shape)| bark_wgpu::Tensor::from_f32(ctx, data, shape, bark_wgpu::DType::F32).unwrap())
        .collect();
    let mut g = bark_wgpu::Graph::new(ctx);
    let vals: Vec<_> = tensors.iter().map(|t| g.input(t)).collect();
    let y = op(&mut g, &vals).unwrap();
    let shape = g.shape(y).to_vec();
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    (plan.tensor(y).to_f32(ctx).unwrap(), shape)
}

/// Runs `ids` through `model` at positions `start..` of `seq`, appending to its cache, and
/// returns the logits of every row: through `record`, or with `decode` (one id per sequence)
/// through `record_decode`, as generation's decode steps run.
pub fn causal_step(
    ctx: &Context,
    model: &bark_wgpu::model::gpt::CausalGpt,
    cache: &mut bark_wgpu::kv::PagedKvCache,
    seq: bark_wgpu::kv::SeqId,
    ids: &[u32],
    start: usize,
    decode: bool,
) -> Vec<f32> {
    use bark_wgpu::Tensor;
    let n = ids.len();
    cache.reserve(seq, n).unwrap();
    let rows = cache.step_rows(n).unwrap();
    rows.set_span(cache, seq, start).unwrap();
    let pos: Vec<u32> = (start..start + n).map(|p| p as u32).collect();
    let (ids, pos) = (Tensor::from_u32(ctx, ids, &[n]).unwrap(), Tensor::from_u32(ctx, &pos, &[n]).unwrap());
    let mut g = bark_wgpu::Graph::new(ctx);
    let (vi, vp) = (g.input(&ids), g.input(&pos));
    let x = model.embed(&mut g, vi, vp).unwrap();
    let kv = cache.bind(&mut g, &rows);
    let h = if decode { model.record_decode(&mut g, x, &kv) } else { model.record(&mut g, x, &kv) }.unwrap();
    let logits = model.logits(&mut g, h).unwrap();
    g.keep(logits);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(logits).to_f32(ctx).unwrap()
}

/// The fine model's logits for codebook `idx` of `codes` (`[batch, frames, codebooks]` u32).
pub fn fine_logits(
    ctx: &Context,
    model: &bark_wgpu::model::gpt::FineGpt,
    codes: &bark_wgpu::Tensor,
    idx: usize,
) -> Vec<f32> {
    let mut g = bark_wgpu::Graph::new(ctx);
    let c = g.input(codes);
    let logits = model.record(&mut g, c, idx).unwrap();
    g.keep(logits);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(logits).to_f32(ctx).unwrap()
}
