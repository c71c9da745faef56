//! The GPU kernel set (tiled GEMM, subgroup or workgroup GEMV with the LayerNorm inside, tiled
//! and split attention, workgroup layer norms) against the CPU kernel set (direct GEMM, rows
//! attention, `layernorm_rows`) at bark-small's real sizes: hidden 768, 12 heads of 64, MLPs of
//! 3072, Bark's vocabularies (the semantic model's 129,600 embedding rows, split at the binding
//! limit where an adapter needs it) and its 1024-position KV cache, so every kernel runs on the
//! widths, tables and cache of real generation; only layers and tokens are fewer. The per-kernel
//! tests check each kernel against a CPU reference on small and awkward sizes; this one checks
//! that the two sets a `Context` chooses between agree on whole models, layer after layer.
//!
//! Random weights (`benches/common`'s checkpoint writer) with few layers: a layer adds time, not
//! kernels, and a CPU adapter runs the GPU set slowly. Semantic and coarse: a prefill through the
//! paged KV cache, then teacher-forced decode steps as generation runs them; fine: one window.
//! f32 weights, then f16 weights (and caches). In f32 the GPU set is also checked against
//! transformers' logits for the same checkpoint (a few rows per stage, committed in
//! tests/fixtures/bark-sizes by scripts/make_bark_sizes_reference.py).

use crate::bench_common;
use crate::common;

use std::path::Path;
use std::time::Instant;

use bark_wgpu::kv::{KvCacheConfig, PagedKvCache, SeqId};
use bark_wgpu::model::gpt::{CausalGpt, FineGpt};
use bark_wgpu::model::{BarkConfig, SubModelConfig};
use bark_wgpu::weights::{WeightSource, Weights};
use bark_wgpu::{Context, ContextOptions, DType, Tensor};
use bench_common::{random_model_dir, ModelSpec};

/// Blocks per sub-model: two, so a block reads another block's output (and the cache holds
/// more than one layer), not twelve.
const LAYERS: usize = 2;

/// Positions per cache page, as generation uses.
const PAGE_SIZE: usize = 16;

/// Largest |GPU - CPU| allowed, as a fraction of the logits' largest magnitude (these random
/// weights give logits of ~0.02, not O(1)). Both sets compute in f32 and differ only in the
/// order of their sums (K up to 3072, softmax over up to 60 keys): measured at most 2.4e-6 of
/// the scale, f32 and f16 weights alike (f16 reads the same halves in both sets; a cached key
/// that rounds to the neighbouring half moves logits far less). One wrong token among the ~40
/// cached moves a decode step's logits by ~2.5e-3 of the scale: 1e-4 has margin both ways.
const TOL: f32 = 1e-4;

/// The GPU kernel set and the CPU kernel set, on the same adapter.
fn kernel_sets() -> [Context; 2] {
    let set = |cpu: bool| {
        let opts = ContextOptions { cpu_kernels: Some(cpu), norm_in_gemv: Some(!cpu), ..Default::default() };
        let ctx = Context::new(&opts).unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"));
        // Guards against a test that compares one set with itself.
        assert_eq!((ctx.policy().cpu_kernels, ctx.policy().norm_in_gemv), (cpu, !cpu));
        ctx
    };
    [set(false), set(true)]
}

/// `n` ids below `vocab`, spread over the whole table, starting with two of its last rows (the
/// semantic table's last rows lie in the last part of a table split at the binding limit).
fn ids(vocab: usize, n: usize) -> Vec<u32> {
    let spread = (0..n - 2).map(|i| ((i * 7919 + 13) % vocab) as u32);
    [vocab as u32 - 1, vocab as u32 - 5].into_iter().chain(spread).collect()
}

/// The logits of a prefill of `ids[..prefill]` (every row), then of one decode step per
/// remaining id fed as if it had been chosen, as generation runs them: `record` for the prefill,
/// `record_decode` (whose cache append may ride in the attention's merge) for the steps.
fn causal_logits(ctx: &Context, model: &CausalGpt, ids: &[u32], prefill: usize) -> Vec<Vec<f32>> {
    let cfg = model.config();
    let kv = KvCacheConfig {
        layers: cfg.num_layers,
        n_heads: cfg.num_heads,
        head_dim: cfg.head_dim(),
        page_size: PAGE_SIZE,
        n_pages: cfg.block_size / PAGE_SIZE,
        max_seqs: 1,
        // The whole context, as generation sizes it: the attention splits its keys by it.
        max_seq_len: cfg.block_size,
        dtype: model.dtype(),
    };
    let mut cache = PagedKvCache::new(ctx, &kv).unwrap();
    let seq = cache.add_sequence().unwrap();
    let mut out = vec![step(ctx, model, &mut cache, seq, &ids[..prefill], 0)];
    for (i, id) in ids[prefill..].iter().enumerate() {
        out.push(step(ctx, model, &mut cache, seq, std::slice::from_ref(id), prefill + i));
    }
    out
}

/// `ids` at positions `start..` of `seq`: a prefill, or (one id) a decode step.
fn step(ctx: &Context, model: &CausalGpt, cache: &mut PagedKvCache, seq: SeqId, ids: &[u32], start: usize) -> Vec<f32> {
    common::causal_step(ctx, model, cache, seq, ids, start, ids.len() == 1)
}

/// Fails unless `gpu` is within [`TOL`] of the logits' scale of `cpu` (the CPU set's, or
/// transformers'), and both are finite and not all zero; prints the difference measured.
fn compare(what: &str, gpu: &[f32], cpu: &[f32]) {
    for (set, v) in [("GPU", gpu), ("CPU", cpu)] {
        assert!(v.iter().all(|x| x.is_finite()), "{what}: the {set} set's logits are not all finite");
    }
    let scale = cpu.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "{what}: every logit is zero");
    let diff = common::max_abs_diff(gpu, cpu);
    eprintln!("{what}: max difference {diff:.2e}, logits up to {scale:.2e} ({:.1e} of it)", diff / scale);
    common::assert_close(what, gpu, cpu, TOL * scale, 0.0);
}

fn causal(sets: &[Context; 2], w: &Weights, (prefix, sub): (&str, &SubModelConfig), dtype: DType) {
    // 37 rows: more than a GEMV takes, not a multiple of any tile; then 4 decode steps.
    let ids = ids(sub.input_vocab_size, 41);
    let [gpu, cpu] = sets.each_ref().map(|ctx| {
        let model = CausalGpt::load(ctx, w, prefix, sub, dtype).unwrap();
        causal_logits(ctx, &model, &ids, 37)
    });
    for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        let what = if i == 0 { "prefill".to_string() } else { format!("decode step {i}") };
        compare(&format!("{prefix} {dtype:?} {what}"), g, c);
    }
    if dtype == DType::F32 {
        // transformers' rows 0 and 36 of the prefill and each step's, for the GPU set.
        let key = if prefix == "semantic" { "semantic" } else { "coarse" };
        let r = reference();
        let want_ids: Vec<u32> = r.to_i64(&format!("{key}.input_ids")).unwrap().iter().map(|&v| v as u32).collect();
        assert_eq!(want_ids, ids, "{key}: the reference was made for other ids; rerun its script");
        let v = sub.output_vocab_size;
        let prefill = &gpu[0];
        let mut got = [&prefill[..v], &prefill[36 * v..37 * v]].concat();
        gpu[1..].iter().for_each(|step| got.extend_from_slice(step));
        compare(&format!("{prefix} F32 against transformers"), &got, &r.to_f32(&format!("{key}.rows")).unwrap());
    }
}

/// transformers' logits for this test's checkpoint (scripts/make_bark_sizes_reference.py).
fn reference() -> WeightSource {
    WeightSource::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bark-sizes/reference.safetensors"))
        .unwrap()
}

fn fine(sets: &[Context; 2], w: &Weights, cfg: &BarkConfig, dtype: DType) {
    let fine = &cfg.fine_acoustics_config;
    // 60 frames: more rows than a GEMV takes, yet one row of GEMM tiles (on a CPU adapter the
    // tiled GEMM costs by tiles), and not a multiple of the attention's 16-row blocks.
    let (frames, books) = (60, fine.n_codes_total);
    let codes = ids(fine.model.input_vocab_size, frames * books);
    // The last codebook: the sum of every codebook's embedding, and the last head.
    let idx = books - 1;
    let [gpu, cpu] = sets.each_ref().map(|ctx| {
        let model = FineGpt::load(ctx, w, "fine_acoustics", fine, dtype).unwrap();
        let codes = Tensor::from_u32(ctx, &codes, &[1, frames, books]).unwrap();
        common::fine_logits(ctx, &model, &codes, idx)
    });
    compare(&format!("fine {dtype:?} codebook {idx}"), &gpu, &cpu);
    if dtype == DType::F32 {
        let r = reference();
        let want: Vec<u32> = r.to_i64("fine.input_ids").unwrap().iter().map(|&v| v as u32).collect();
        assert_eq!(want, codes, "fine: the reference was made for other codes; rerun its script");
        let v = fine.model.output_vocab_size;
        let got = [&gpu[..v], &gpu[(frames - 1) * v..frames * v]].concat();
        compare("fine F32 codebook 7 against transformers", &got, &r.to_f32("fine.rows").unwrap());
    }
}

#[test]
fn gpu_and_cpu_kernel_sets_agree_at_bark_small_sizes() {
    let small = ModelSpec::named("small").unwrap();
    // bark-small's sizes and vocabularies with fewer blocks; the codec is not run here, so the
    // tiny one keeps the checkpoint to the GPTs.
    let spec = ModelSpec { layers: LAYERS, codec: ModelSpec::named("tiny").unwrap().codec, ..small };
    let t = Instant::now();
    let dir = random_model_dir(&spec, "bark-sizes-test", false).unwrap();
    eprintln!("checkpoint: {} MB in {:.1} s", dir.checkpoint_bytes / 1_000_000, t.elapsed().as_secs_f32());
    if let Some(keep) = std::env::var_os("BARK_SIZES_CHECKPOINT") {
        // For scripts/make_bark_sizes_reference.py, which runs transformers on it.
        std::fs::create_dir_all(&keep).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(dir.path.join(f), std::path::Path::new(&keep).join(f)).unwrap();
        }
    }
    let cfg = BarkConfig::load(dir.path.join("config.json")).unwrap();
    assert_eq!((cfg.semantic_config.hidden_size, cfg.semantic_config.input_vocab_size), (768, 129_600));
    let w = Weights::open(dir.path.join("model.safetensors")).unwrap();
    let sets = kernel_sets();
    for dtype in [DType::F32, DType::F16] {
        let t = Instant::now();
        causal(&sets, &w, ("semantic", &cfg.semantic_config), dtype);
        causal(&sets, &w, ("coarse_acoustics", &cfg.coarse_acoustics_config), dtype);
        fine(&sets, &w, &cfg, dtype);
        eprintln!("{dtype:?}: {:.1} s", t.elapsed().as_secs_f32());
    }
}
