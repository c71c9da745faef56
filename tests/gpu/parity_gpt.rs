//! Bark's GPTs against transformers (tests/fixtures, made by scripts/make_fixtures.py): forward
//! logits of the semantic and coarse models (prefill through the paged KV cache), KV-cached
//! decode step by step, and the fine model's logits for every codebook index, for both fixture
//! variants (bias False / True) and both checkpoint files. The causal models run twice: with
//! the LayerNorms inside the decode GEMVs and as passes of their own (`norm_in_gemv`).

use crate::common;

use std::path::{Path, PathBuf};

use bark_wgpu::kv::{KvCacheConfig, PagedKvCache};
use bark_wgpu::model::gpt::{CausalGpt, FineGpt};
use bark_wgpu::model::{BarkConfig, SubModelConfig};
use bark_wgpu::weights::{WeightSource, Weights};
use bark_wgpu::{Context, DType, Graph, Tensor};
use common::{assert_close, ctx, ctx_norm_in_gemv, max_abs_diff};

/// transformers computes in f32 as we do; what differs is only the order of f32 sums (GEMMs of
/// K <= 4*hidden, softmax): a few ulps of O(1) logits per layer. 1e-4 is the bound and
/// far below the change of a wrong mask, position or bias (>1e-2 on these random weights).
const ATOL: f32 = 1e-4;

fn dir(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(variant)
}

fn reference(variant: &str) -> WeightSource {
    WeightSource::open(dir(variant).join("reference.safetensors")).unwrap()
}

fn ids_of(r: &WeightSource, name: &str) -> Vec<u32> {
    r.to_i64(name).unwrap().into_iter().map(|v| v as u32).collect()
}

/// A cache storing K and V in `dtype` (Bark's caches follow the weights' dtype).
fn cache_for(ctx: &Context, cfg: &SubModelConfig, dtype: DType) -> PagedKvCache {
    let kv = KvCacheConfig {
        layers: cfg.num_layers,
        n_heads: cfg.num_heads,
        head_dim: cfg.head_dim(),
        page_size: 4,
        n_pages: 16,
        max_seqs: 2,
        max_seq_len: 32,
        dtype,
    };
    PagedKvCache::new(ctx, &kv).unwrap()
}

/// Runs `ids` through `model` as one prefill step at positions `start..`, appending to `seq`'s
/// cache, and returns the logits of every row.
fn step(
    ctx: &Context,
    model: &CausalGpt,
    cache: &mut PagedKvCache,
    seq: bark_wgpu::kv::SeqId,
    ids: &[u32],
    start: usize,
) -> Vec<f32> {
    common::causal_step(ctx, model, cache, seq, ids, start, false)
}

/// On the device `ctx`: the logits of the whole sequence, of a 5-token prefill, and of the
/// cached single-token steps after it.
fn causal(
    ctx: &Context,
    variant: &str,
    file: &str,
    (prefix, key): (&str, &str),
    dtype: DType,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cfg = BarkConfig::load(dir(variant).join("config.json")).unwrap();
    let sub = if prefix == "semantic" { &cfg.semantic_config } else { &cfg.coarse_acoustics_config };
    let w = Weights::open(dir(variant).join(file)).unwrap();
    let model = CausalGpt::load(ctx, &w, prefix, sub, dtype).unwrap();
    let ids = ids_of(&reference(variant), &format!("{key}.input_ids"));
    let mut cache = cache_for(ctx, sub, dtype);

    let a = cache.add_sequence().unwrap();
    let full = step(ctx, &model, &mut cache, a, &ids, 0);
    // Teacher forcing with the cache: 5 tokens of prefill, then one token per step.
    let b = cache.add_sequence().unwrap();
    let prefill = step(ctx, &model, &mut cache, b, &ids[..5], 0);
    let mut steps = Vec::new();
    for (i, &id) in ids[5..].iter().enumerate() {
        steps.extend(step(ctx, &model, &mut cache, b, &[id], 5 + i));
    }
    (full, prefill, steps)
}

fn check_causal(variant: &str, prefix: &str, key: &str) {
    let r = reference(variant);
    let want = |n: &str| r.to_f32(&format!("{key}.{n}")).unwrap();
    for fused in [false, true] {
        let ctx = ctx_norm_in_gemv(fused);
        let what = format!("{variant} {key} (norm in GEMV: {fused})");
        let (full, prefill, steps) = causal(ctx, variant, "model.safetensors", (prefix, key), DType::F32);
        assert_close(&format!("{what} logits"), &full, &want("logits"), ATOL, 0.0);
        assert_close(&format!("{what} cached prefill"), &prefill, &want("cached.prefill_logits"), ATOL, 0.0);
        assert_close(&format!("{what} cached steps"), &steps, &want("cached.step_logits"), ATOL, 0.0);
        // Decoding with the cache equals recomputing the whole sequence.
        let v = full.len() / 8;
        assert_close(&format!("{what} cache vs recompute"), &steps, &full[5 * v..], 1e-5, 0.0);

        let (bin, _, _) = causal(ctx, variant, "pytorch_model.bin", (prefix, key), DType::F32);
        assert_eq!(max_abs_diff(&full, &bin), 0.0, "{what}: .bin and safetensors differ");
    }
}

#[test]
fn parity_semantic() {
    check_causal("tiny", "semantic", "semantic");
    check_causal("tiny-bias", "semantic", "semantic");
}

#[test]
fn parity_coarse() {
    check_causal("tiny", "coarse_acoustics", "coarse");
    check_causal("tiny-bias", "coarse_acoustics", "coarse");
}

#[test]
fn parity_f16_weights() {
    // f16 weights (and the f16 KV cache that goes with them) round each weight, key and value
    // by up to 2^-11 relative; over K <= 64 products of O(1) activations and two layers the
    // logits move by ~1e-3. 1e-2 bounds that with margin yet catches a mis-packed half (which
    // scrambles weights or keys: errors of O(1)).
    let r = reference("tiny");
    for fused in [false, true] {
        let ctx = ctx_norm_in_gemv(fused);
        let (full, _, steps) = causal(ctx, "tiny", "model.safetensors", ("semantic", "semantic"), DType::F16);
        assert_close("tiny semantic f16", &full, &r.to_f32("semantic.logits").unwrap(), 1e-2, 0.0);
        let want = r.to_f32("semantic.cached.step_logits").unwrap();
        assert_close(&format!("tiny semantic f16 cached steps ({fused})"), &steps, &want, 1e-2, 0.0);
    }
}

fn fine_logits(variant: &str, file: &str) -> Vec<Vec<f32>> {
    let ctx = ctx();
    let cfg = BarkConfig::load(dir(variant).join("config.json")).unwrap();
    let w = Weights::open(dir(variant).join(file)).unwrap();
    let model = FineGpt::load(ctx, &w, "fine_acoustics", &cfg.fine_acoustics_config, DType::F32).unwrap();
    let r = reference(variant);
    let shape = r.info("fine.input_ids").unwrap().shape.clone();
    let codes = Tensor::from_u32(ctx, &ids_of(&r, "fine.input_ids"), &shape).unwrap();
    (1..cfg.fine_acoustics_config.n_codes_total).map(|idx| common::fine_logits(ctx, &model, &codes, idx)).collect()
}

#[test]
fn parity_fine_every_codebook() {
    for variant in ["tiny", "tiny-bias"] {
        let r = reference(variant);
        let got = fine_logits(variant, "model.safetensors");
        for (k, logits) in got.iter().enumerate() {
            let want = r.to_f32(&format!("fine.logits.{}", k + 1)).unwrap();
            assert_close(&format!("{variant} fine codebook {}", k + 1), logits, &want, ATOL, 0.0);
        }
        let bin = fine_logits(variant, "pytorch_model.bin");
        assert_eq!(got, bin, "{variant} fine: .bin and safetensors differ");
    }
}

#[test]
fn fine_rejects_bad_codebook_index() {
    let ctx = ctx();
    let cfg = BarkConfig::load(dir("tiny").join("config.json")).unwrap();
    let w = Weights::open(dir("tiny").join("model.safetensors")).unwrap();
    let model = FineGpt::load(ctx, &w, "fine_acoustics", &cfg.fine_acoustics_config, DType::F32).unwrap();
    let codes = Tensor::from_u32(ctx, &[0; 16], &[1, 2, 8]).unwrap();
    for idx in [0, 8] {
        let mut g = Graph::new(ctx);
        let c = g.input(&codes);
        assert!(model.record(&mut g, c, idx).is_err(), "idx {idx}");
    }
}
