//! Kernel benches: the matmul family at Bark's sizes, as compiled plans.
//!
//! `cargo bench --bench kernels` (or `--profile dev` to reuse the test build's dependencies).
//! Prints the adapter, then per kernel the median wall time of `plan.run(); ctx.wait()` after
//! one warm-up run, the weight bytes streamed per second and the arithmetic rate, and writes the
//! same as JSON to `$CARGO_TARGET_DIR/bench-kernels.json` (default `target/`). Runs per kernel:
//! `BENCH_ITERS` if set, else up to 5 and no more once 1.5 s are spent (a lavapipe GEMM takes
//! seconds). On a CPU adapter (lavapipe) the numbers only rank the variants. `BENCH_ONLY`
//! (e.g. `attention,stream`) runs only the kernels it names.

use std::time::Instant;

use bark_wgpu::kv::{KvCacheConfig, PagedKvCache};
use bark_wgpu::ops::attention::{self, AttnOptions, Mask};
use bark_wgpu::ops::conv1d::{conv1d, Conv1dOpts};
use bark_wgpu::ops::conv_transpose1d::{conv_transpose1d, ConvTranspose1dOpts};
use bark_wgpu::ops::layernorm::{layer_norm, EPS};
use bark_wgpu::ops::lstm::{encodec_lstm, LstmLayer};
use bark_wgpu::ops::matmul::{self, Epilogue, InputNorm, Linear, Variant};
use bark_wgpu::{Context, ContextOptions, DType, Graph, Plan, Tensor};

/// One timed kernel: `bytes` is what it must stream (weights, or K and V), `flops` its
/// arithmetic; both per run.
struct Row {
    kernel: &'static str,
    variant: String,
    shape: String,
    dtype: DType,
    bytes: f64,
    flops: f64,
    median_s: f64,
    runs: usize,
}

impl Row {
    fn gb_s(&self) -> f64 {
        self.bytes / self.median_s / 1e9
    }
    fn gflop_s(&self) -> f64 {
        self.flops / self.median_s / 1e9
    }
    fn print(&self) {
        println!(
            "{:<9} {:<13} {:<22} {:>4} {:>4} {:>10.3} {:>9.2} {:>9.2}",
            self.kernel,
            self.variant,
            self.shape,
            format!("{:?}", self.dtype).to_lowercase(),
            self.runs,
            self.median_s * 1e3,
            self.gb_s(),
            self.gflop_s()
        );
    }
}

/// Deterministic values of order 1 (the data do not change the timing).
fn pattern(len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * scale).collect()
}

/// How many timed runs: exactly `BENCH_ITERS`, or up to 5 within a time budget.
#[derive(Clone, Copy)]
struct Runs {
    max: usize,
    budget_s: Option<f64>,
}

/// A LayerNorm of x in front of the product, and how it runs.
#[derive(Clone, Copy, PartialEq)]
enum Norm {
    None,
    /// `norm_linear`: inside the GEMV.
    Fused,
    /// `layer_norm`, then `linear`: two dispatches, as before the fusion.
    Separate,
}

/// Median seconds and the number of timed runs.
fn time_linear(
    ctx: &Context,
    variant: Variant,
    shape: (usize, usize, usize),
    dtype: DType,
    norm: Norm,
    runs: Runs,
) -> (f64, usize) {
    let (m, k, n) = shape;
    let x = Tensor::from_f32(ctx, &pattern(m * k, 1.0), &[m, k], DType::F32).expect("upload x");
    let w = Tensor::from_f32(ctx, &pattern(n * k, 0.03), &[n, k], dtype).expect("upload weight");
    let nw = Tensor::from_f32(ctx, &pattern(k, 1.0), &[k], DType::F32).expect("upload norm weight");
    let mut g = Graph::new(ctx);
    let (mut xv, wv, nwv) = (g.input(&x), g.input(&w), g.input(&nw));
    if norm == Norm::Separate {
        xv = layer_norm(&mut g, xv, nwv, None, EPS).expect("record layer norm");
    }
    let y = if norm == Norm::Fused {
        let input = InputNorm { weight: nwv, bias: None, eps: EPS };
        let layer = Linear { weight: wv, bias: None };
        matmul::norm_linear_with(&mut g, xv, input, layer, Epilogue::None, None, variant).expect("record linear")
    } else {
        matmul::linear_with(&mut g, xv, wv, None, Epilogue::None, None, variant).expect("record linear")
    };
    g.keep(y);
    time_plan(ctx, &g.compile().expect("compile plan"), runs)
}

/// Whether `BENCH_ONLY` (kernel names, comma-separated: gemv, ln+gemv, gemm, attention,
/// layernorm, conv1d, convT1d, lstm, stream, overhead) lets `kernel` run; unset runs all.
fn wanted(kernel: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|k| k.trim() == kernel))
}

/// Median seconds of `plan.run(); ctx.wait()` after one warm-up, and the number of runs.
fn time_plan(ctx: &Context, plan: &Plan, runs: Runs) -> (f64, usize) {
    plan.run().expect("warm-up run");
    ctx.wait().expect("wait");
    let mut times = Vec::new();
    while times.len() < runs.max && runs.budget_s.is_none_or(|b| times.iter().sum::<f64>() < b) {
        let t = Instant::now();
        plan.run().expect("run");
        ctx.wait().expect("wait");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times.len())
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_json(ctx: &Context, rows: &[Row]) -> std::io::Result<std::path::PathBuf> {
    let s = ctx.summary();
    let mut out = format!(
        "{{\n  \"adapter\": {{\"name\": {}, \"backend\": {}, \"device_type\": {}, \"driver\": {}, \"shader_f16\": {}, \"subgroup\": {}}},\n  \"results\": [\n",
        json_str(&s.name),
        json_str(&s.backend),
        json_str(&s.device_type),
        json_str(&s.driver),
        s.shader_f16,
        s.subgroup
    );
    for (i, r) in rows.iter().enumerate() {
        out += &format!(
            "    {{\"kernel\": {}, \"variant\": {}, \"shape\": {}, \"dtype\": {}, \"runs\": {}, \"median_ms\": {:.4}, \"gb_s\": {:.3}, \"gflop_s\": {:.3}}}{}\n",
            json_str(r.kernel),
            json_str(&r.variant),
            json_str(&r.shape),
            json_str(&format!("{:?}", r.dtype).to_lowercase()),
            r.runs,
            r.median_s * 1e3,
            r.gb_s(),
            r.gflop_s(),
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    out += "  ]\n}\n";
    let dir = std::path::PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench-kernels.json");
    std::fs::write(&path, out)?;
    Ok(path)
}

/// Causal prefill of `t` rows (one sequence) or one decode row at context `t`, through the
/// paged cache storing `kv` (f32 or f16), `heads` x 64; or the fine model's dense full attention
/// over `t` frames (f32 QKV).
fn time_attention(ctx: &Context, case: &str, heads: usize, t: usize, kv: DType, runs: Runs) -> Row {
    const D: usize = 64;
    let h = heads * D;
    let decode = case.starts_with("decode");
    let rows = if decode { 1 } else { t };
    let qkv = Tensor::from_f32(ctx, &pattern(rows * 3 * h, 0.5), &[rows, 3 * h], DType::F32).expect("qkv");
    let mut g = Graph::new(ctx);
    let q = g.input(&qkv);
    // Keys and values read, and the two T x D products per (query, key) pair that are computed.
    let pairs = if decode {
        t as f64
    } else if case.starts_with("dense") {
        (t * t) as f64
    } else {
        (t * (t + 1) / 2) as f64
    };
    let bytes = kv.bytes(&[2 * t, h]) as f64;
    // "... (tiles)" / "... (rows)": the tiled kernel or cpu/attention_rows.wgsl, whatever the adapter.
    let rows_kernel = if case.ends_with("(rows)") { Some(true) } else { case.ends_with("(tiles)").then_some(false) };
    let opts = AttnOptions { rows_kernel, ..Default::default() };
    let _cache;
    if case.starts_with("dense") {
        let y = attention::dense_with(&mut g, q, heads, 1, t, Mask::Full, opts).expect("dense attention");
        g.keep(y);
    } else {
        let cfg = KvCacheConfig {
            layers: 1,
            n_heads: heads,
            head_dim: D,
            page_size: 16,
            n_pages: t.div_ceil(16),
            max_seqs: 1,
            max_seq_len: t,
            dtype: kv,
        };
        let mut cache = PagedKvCache::new(ctx, &cfg).expect("cache");
        let seq = cache.add_sequence().expect("sequence");
        cache.reserve(seq, t).expect("reserve");
        let step = cache.step_rows(rows).expect("rows");
        step.set_span(&cache, seq, t - rows).expect("rows");
        let kv = cache.bind(&mut g, &step);
        let y = if case == "decode+append" {
            // The decode step's own op (the context's kernels): on a GPU the tiled kernel
            // whose merge appends, on a CPU adapter the append and the rows kernel.
            attention::paged_append(&mut g, &kv, 0, q).expect("paged attention")
        } else {
            if case.starts_with("decode, append") {
                bark_wgpu::ops::kv_cache::append(&mut g, &kv, 0, q).expect("append");
            }
            attention::paged_with(&mut g, &kv, 0, q, Mask::Causal, opts).expect("paged attention")
        };
        g.keep(y);
        _cache = (cache, step);
    }
    let (median_s, runs) = time_plan(ctx, &g.compile().expect("compile plan"), runs);
    Row {
        kernel: "attention",
        variant: case.to_string(),
        shape: format!("T={t} heads={heads} D={D}"),
        dtype: kv,
        bytes,
        flops: 4.0 * pairs * (heads * D) as f64,
        median_s,
        runs,
    }
}

/// The median time of a plan built by `build` over inputs of the given shapes (values of order
/// 1), and its number of runs.
fn time_graph(
    ctx: &Context,
    shapes: &[&[usize]],
    build: impl FnOnce(&mut Graph, &[bark_wgpu::Val]) -> bark_wgpu::Val,
    runs: Runs,
) -> (f64, usize) {
    let tensors: Vec<Tensor> = shapes
        .iter()
        .map(|s| Tensor::from_f32(ctx, &pattern(s.iter().product(), 0.3), s, DType::F32).expect("upload"))
        .collect();
    let mut g = Graph::new(ctx);
    let vals: Vec<_> = tensors.iter().map(|t| g.input(t)).collect();
    let y = build(&mut g, &vals);
    g.keep(y);
    time_plan(ctx, &g.compile().expect("compile plan"), runs)
}

/// LayerNorm (prefill rows) and the EnCodec decoder's heaviest kernels for `seconds` of 24 kHz
/// audio: a residual block's 3-tap convolution and the last upsampling at 24 kHz, the first
/// upsampling, and the 2-layer LSTM at 75 frames/s (one dispatch per frame and layer). GB/s
/// counts what must move: the activations read and written (layer norm, the 24 kHz
/// convolutions), the weights (the stride-8 upsampling, W_hh once per frame and layer).
fn codec_and_norm(ctx: &Context, seconds: usize, runs: Runs) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut push = |kernel, variant: &str, shape: String, bytes: usize, flops: usize, (median_s, runs)| {
        let r = Row {
            kernel,
            variant: variant.into(),
            shape,
            dtype: DType::F32,
            bytes: bytes as f64,
            flops: flops as f64,
            median_s,
            runs,
        };
        r.print();
        rows.push(r);
    };
    let (rows_ln, h) = (257, 1024);
    let t =
        time_graph(ctx, &[&[rows_ln, h], &[h]], |g, v| layer_norm(g, v[0], v[1], None, EPS).expect("layer norm"), runs);
    push("layernorm", "prefill", format!("rows={rows_ln} H={h}"), 8 * rows_ln * h, 8 * rows_ln * h, t);
    let samples = 24_000 * seconds;
    // Residual block at 32 channels: 32 -> 16, 3 taps; the last upsampling 64 -> 32, stride 2.
    let t = time_graph(
        ctx,
        &[&[1, 32, samples], &[16, 32, 3], &[16]],
        |g, v| conv1d(g, v[0], v[1], v[2], Conv1dOpts::default()).expect("conv1d"),
        runs,
    );
    push("conv1d", "causal reflect", format!("32->16 K=3 T={samples}"), 4 * 48 * samples, 2 * 32 * 16 * 3 * samples, t);
    let opts = |stride| ConvTranspose1dOpts { stride, causal_trim: true };
    let t = time_graph(
        ctx,
        &[&[1, 64, samples / 2], &[64, 32, 4], &[32]],
        |g, v| conv_transpose1d(g, v[0], v[1], v[2], opts(2)).expect("convT"),
        runs,
    );
    push("convT1d", "stride 2", format!("64->32 K=4 T={samples}"), 4 * 64 * samples, 2 * 64 * 32 * 2 * samples, t);
    let frames = 75 * seconds;
    let t = time_graph(
        ctx,
        &[&[1, 512, frames], &[512, 256, 16], &[256]],
        |g, v| conv_transpose1d(g, v[0], v[1], v[2], opts(8)).expect("convT"),
        runs,
    );
    push(
        "convT1d",
        "stride 8",
        format!("512->256 K=16 T={}", 8 * frames),
        4 * 512 * 256 * 16,
        2 * 512 * 256 * 2 * 8 * frames,
        t,
    );
    let (hid, n) = (512, 4 * 512);
    let shapes: [&[usize]; 9] = [&[1, hid, frames], &[n, hid], &[n, hid], &[n], &[n], &[n, hid], &[n, hid], &[n], &[n]];
    let t = time_graph(
        ctx,
        &shapes,
        |g, v| {
            let layer = |i: usize| LstmLayer { w_ih: v[i], w_hh: v[i + 1], b_ih: v[i + 2], b_hh: v[i + 3] };
            encodec_lstm(g, v[0], &[layer(1), layer(5)]).expect("lstm")
        },
        runs,
    );
    // Per frame and layer the recurrence streams W_hh (the input projections are one GEMM).
    push("lstm", "2 layers", format!("H={hid} T={frames}"), 2 * 4 * n * hid * frames, 2 * 2 * 2 * n * hid * frames, t);
    rows
}

/// The bandwidth one kernel reaches here: `a + b` over `n` floats each (reads two, writes one).
/// The GB/s of a memory-bound kernel (a decode GEMV, the attention over a cache) is best read
/// against this row rather than a datasheet, which a CPU adapter does not have.
fn stream(ctx: &Context, n: usize, runs: Runs) -> Row {
    let a = Tensor::from_f32(ctx, &pattern(n, 1.0), &[n], DType::F32).expect("input a");
    let b = Tensor::from_f32(ctx, &pattern(n, 0.5), &[n], DType::F32).expect("input b");
    let mut g = Graph::new(ctx);
    let (av, bv) = (g.input(&a), g.input(&b));
    let y = bark_wgpu::ops::elementwise::add(&mut g, av, bv).expect("add");
    g.keep(y);
    let (median_s, runs) = time_plan(ctx, &g.compile().expect("compile plan"), runs);
    Row {
        kernel: "stream",
        variant: "a + b".into(),
        shape: format!("{n}"),
        dtype: DType::F32,
        bytes: (n * 12) as f64,
        flops: n as f64,
        median_s,
        runs,
    }
}

/// The fixed cost of a decode step's many small dispatches: a chain of `n` dependent GELUs on 256
/// values (no arithmetic to speak of). Prints the host time of encoding and submitting the chain
/// (wgpu's validation, bind groups, barriers: what one-ahead submission hides behind the GPU's
/// work) and the wall time to completion, both per dispatch; returns the wall time as a row.
fn dispatch_overhead(ctx: &Context, n: usize, runs: Runs) -> Row {
    let x = Tensor::from_f32(ctx, &pattern(256, 0.5), &[256], DType::F32).expect("input");
    let mut g = Graph::new(ctx);
    let mut v = g.input(&x);
    for _ in 0..n {
        v = bark_wgpu::ops::elementwise::gelu(&mut g, v).expect("gelu");
    }
    g.keep(v);
    let plan = g.compile().expect("compile plan");
    let (median_s, runs) = time_plan(ctx, &plan, runs);
    let mut host = Vec::new();
    for _ in 0..runs.max(5) {
        let t = Instant::now();
        plan.submit().expect("submit");
        host.push(t.elapsed().as_secs_f64());
        ctx.wait().expect("wait");
    }
    host.sort_by(f64::total_cmp);
    println!(
        "dispatch overhead, chain of {n}: host encode + submit {:.1} us, wall {:.1} us per dispatch",
        host[host.len() / 2] / n as f64 * 1e6,
        median_s / n as f64 * 1e6
    );
    Row {
        kernel: "overhead",
        variant: "gelu chain".into(),
        shape: format!("{n} x 256"),
        dtype: DType::F32,
        bytes: (n * 256 * 8) as f64,
        flops: 0.0,
        median_s,
        runs,
    }
}

fn main() {
    let ctx = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let s = ctx.summary();
    println!("adapter: {} ({}, {}), driver: {}", s.name, s.backend, s.device_type, s.driver);
    println!("features: shader_f16={} subgroup={}", s.shader_f16, s.subgroup);
    let runs = match std::env::var("BENCH_ITERS").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => Runs { max: n.max(1), budget_s: None },
        None => Runs { max: 5, budget_s: Some(1.5) },
    };
    // On a CPU adapter the full Bark sizes take minutes; BENCH_FULL=1 runs them anyway.
    let full = std::env::var("BENCH_FULL").is_ok() || s.device_type != "Cpu";
    println!("median over the timed runs of plan.run() + wait (set BENCH_ITERS for more)\n");
    println!(
        "{:<9} {:<13} {:<22} {:>4} {:>4} {:>10} {:>9} {:>9}",
        "kernel", "variant", "shape", "W", "runs", "median ms", "GB/s", "GFLOP/s"
    );

    let mut gemv_variants = vec![Variant::Gemv];
    if ctx.policy().has_subgroups() {
        gemv_variants.push(Variant::GemvSubgroup);
    }
    // The GEMV the fused LayerNorm rides in (the GPU default for a decode step).
    let fused_gemv = *gemv_variants.last().unwrap();
    // The direct GEMM serves decode rows too on a CPU adapter; listed on every adapter.
    gemv_variants.push(Variant::GemmDirect);
    let mut cases = Vec::new();
    // Decode, batch 1: the small models' MLP-in and the large ones'.
    for (k, n) in [(768, 3072), (1024, 4096)] {
        for dtype in [DType::F32, DType::F16] {
            for &v in &gemv_variants {
                cases.push(("gemv", v, 1, k, n, dtype, Norm::None));
            }
        }
    }
    // A block's LN1 and QKV GEMV at batch 1 and 16 (bark-small, f16): fused into one dispatch
    // against the layer norm pass followed by the plain GEMV.
    for m in [1, 16] {
        for norm in [Norm::Fused, Norm::Separate] {
            cases.push(("ln+gemv", fused_gemv, m, 768, 2304, DType::F16, norm));
        }
    }
    // Prefill of a 257-token prompt: attention in (both dtypes), MLP in and out (f16).
    // Both GEMMs on every adapter: the tiled one is the GPU default, the direct one the CPU's.
    for v in [Variant::Gemm, Variant::GemmDirect] {
        cases.push(("gemm", v, 257, 1024, 3072, DType::F32, Norm::None));
        for (k, n) in [(1024, 3072), (1024, 4096), (4096, 1024)] {
            cases.push(("gemm", v, 257, k, n, DType::F16, Norm::None));
        }
    }

    let mut rows = Vec::new();
    for (kernel, variant, m, k, n, dtype, norm) in cases.into_iter().filter(|c| wanted(c.0)) {
        let (median_s, runs) = time_linear(&ctx, variant, (m, k, n), dtype, norm, runs);
        let variant = match norm {
            Norm::None => format!("{variant:?}"),
            Norm::Fused => "fused".to_string(),
            Norm::Separate => "two passes".to_string(),
        };
        let r = Row {
            kernel,
            variant,
            shape: format!("M={m} K={k} N={n}"),
            dtype,
            bytes: (n * dtype.row_words(k) * 4) as f64,
            flops: 2.0 * (m * k * n) as f64,
            median_s,
            runs,
        };
        r.print();
        rows.push(r);
    }
    // Attention at Bark's sizes (12 heads small, 16 large; D = 64): semantic prefill (257),
    // coarse window prefill (887), decode at a full context, the fine model's 1024 frames.
    let attn: Vec<(&str, usize, usize)> = if full {
        vec![
            ("prefill (tiles)", 12, 257),
            ("prefill (rows)", 12, 257),
            ("prefill (tiles)", 16, 887),
            ("prefill (rows)", 16, 887),
            ("decode (tiles)", 12, 1024),
            ("decode (rows)", 12, 1024),
            ("decode (tiles)", 16, 1024),
            ("decode (rows)", 16, 1024),
            ("decode+append", 12, 1024),
            ("decode, append (tiles)", 12, 1024),
            ("dense (tiles)", 16, 1024),
            ("dense (rows)", 16, 1024),
        ]
    } else {
        vec![
            ("prefill (tiles)", 12, 257),
            ("prefill (rows)", 12, 257),
            ("decode (tiles)", 12, 1024),
            ("decode (rows)", 12, 1024),
            ("decode (tiles)", 16, 1024),
            ("decode (rows)", 16, 1024),
            ("decode+append", 12, 1024),
            ("decode, append (tiles)", 12, 1024),
            ("dense (tiles)", 2, 1024),
            ("dense (rows)", 2, 1024),
        ]
    };
    for (case, heads, t) in attn.into_iter().filter(|_| wanted("attention")) {
        // The paged cases over both cache dtypes (f16 caches go with f16 models).
        let dtypes: &[DType] = if case.starts_with("dense") { &[DType::F32] } else { &[DType::F32, DType::F16] };
        for &kv in dtypes {
            let r = time_attention(&ctx, case, heads, t, kv, runs);
            r.print();
            rows.push(r);
        }
    }
    // 10 s of audio on a GPU (what a bark-small sentence decodes), 1 s on a CPU adapter.
    if ["layernorm", "conv1d", "convT1d", "lstm"].into_iter().any(wanted) {
        rows.extend(codec_and_norm(&ctx, if full { 10 } else { 1 }, runs));
    }
    // 3 x 64 MiB: far beyond any cache, within every adapter's binding limit.
    let tail = [
        wanted("stream").then(|| stream(&ctx, 16 << 20, runs)),
        wanted("overhead").then(|| dispatch_overhead(&ctx, 128, runs)),
    ];
    for r in tail.into_iter().flatten() {
        r.print();
        rows.push(r);
    }
    match write_json(&ctx, &rows) {
        Ok(path) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("could not write the JSON results: {e}"),
    }
}
