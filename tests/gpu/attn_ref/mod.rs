//! CPU reference for the attention tests, in f64: softmax(q.k / sqrt(d)) v per head of `d`
//! values, with the queries, keys and values taken from fused QKV rows `[Q | K | V]` of width
//! 3H, H = n_heads * d.
#![allow(dead_code)]

use bark_wgpu::kv::{KvCacheConfig, PagedKvCache, SeqId, StepRows};
use bark_wgpu::ops::attention::{self, AttnOptions, Mask};
use bark_wgpu::ops::kv_cache;
use bark_wgpu::{Context, DType, Graph, Tensor};
use half::f16;

/// Bark's head dimension, the one most tests use.
pub const D: usize = 64;

/// Output `[H]` of the query in qkv row `q_row` attending to the qkv rows `keys` (in order),
/// heads of `d` values.
pub fn attend(q_row: &[f32], keys: &[&[f32]], n_heads: usize, d: usize) -> Vec<f32> {
    let h = n_heads * d;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; h];
    for head in 0..n_heads {
        let q = &q_row[head * d..(head + 1) * d];
        let scores: Vec<f64> = keys
            .iter()
            .map(|row| {
                let k = &row[h + head * d..h + (head + 1) * d];
                q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for c in 0..d {
            let acc: f64 = keys.iter().zip(&weights).map(|(row, w)| w * row[2 * h + head * d + c] as f64).sum();
            out[head * d + c] = (acc / total) as f32;
        }
    }
    out
}

/// Row `i` of a row-major matrix of `width` columns.
pub fn row(m: &[f32], width: usize, i: usize) -> &[f32] {
    &m[i * width..(i + 1) * width]
}

/// The reference for a sequence whose qkv rows (position order) are `seq`, heads of `d`: the
/// output of position `pos` under `mask`.
pub fn attend_seq(seq: &[f32], n_heads: usize, d: usize, pos: usize, mask: Mask) -> Vec<f32> {
    let w = 3 * n_heads * d;
    let n = seq.len() / w;
    let end = if mask == Mask::Causal { pos + 1 } else { n };
    let keys: Vec<&[f32]> = (0..end).map(|j| row(seq, w, j)).collect();
    attend(row(seq, w, pos), &keys, n_heads, d)
}

/// A cache config with heads of [`D`] (set `head_dim` for others).
pub fn config(layers: usize, n_heads: usize, page_size: usize, n_pages: usize, max_seqs: usize) -> KvCacheConfig {
    KvCacheConfig { layers, n_heads, head_dim: D, page_size, n_pages, max_seqs, max_seq_len: 1024, dtype: DType::F32 }
}

/// One step: appends `qkv` (`[rows, 3H]`) to `layer` and returns the paged attention output for
/// each mask in `masks`, all in one plan.
pub fn step(
    ctx: &Context,
    cache: &PagedKvCache,
    rows: &StepRows,
    qkv: &[f32],
    layer: usize,
    masks: &[(Mask, AttnOptions)],
) -> Vec<Vec<f32>> {
    let h = cache.geometry().hidden() as usize;
    let t = Tensor::from_f32(ctx, qkv, &[rows.n_rows(), 3 * h], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let kv = cache.bind(&mut g, rows);
    let x = g.input(&t);
    kv_cache::append(&mut g, &kv, layer, x).unwrap();
    let outs: Vec<_> = masks
        .iter()
        .map(|&(mask, opts)| {
            let o = attention::paged_with(&mut g, &kv, layer, x, mask, opts).unwrap();
            g.keep(o);
            o
        })
        .collect();
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    outs.iter().map(|&o| plan.tensor(o).to_f32(ctx).unwrap()).collect()
}

/// `seq`'s qkv rows `data` (position order, `[n, 3H]`) with their K and V replaced by what
/// layer `layer` of the cache holds, after checking that every stored value is its input, or
/// for an f16 cache the input rounded to one of its two f16 neighbours (WGSL lets a conversion
/// round either way). The reference then attends over exactly the keys the kernel reads.
pub fn as_stored(ctx: &Context, cache: &PagedKvCache, layer: usize, seq: SeqId, data: &[f32]) -> Vec<f32> {
    let geo = cache.geometry();
    let (h, ps) = (geo.hidden() as usize, geo.page_size as usize);
    let pools = [cache.k_pool(layer).unwrap().to_f32(ctx).unwrap(), cache.v_pool(layer).unwrap().to_f32(ctx).unwrap()];
    let pages = cache.pages(seq).unwrap();
    let mut out = data.to_vec();
    for (pos, r) in out.chunks_mut(3 * h).enumerate() {
        let at = (pages[pos / ps] as usize * ps + pos % ps) * h;
        for (part, pool) in pools.iter().enumerate() {
            let stored = &pool[at..at + h];
            let input = &mut r[(part + 1) * h..(part + 2) * h];
            for (c, (x, &s)) in input.iter_mut().zip(stored).enumerate() {
                let ok = match geo.kv_dtype {
                    DType::F16 => {
                        let near = f16::from_f32(*x);
                        let ulp = (f16::from_bits(near.to_bits() + 1).to_f32() - near.to_f32()).abs();
                        f16::from_f32(s).to_f32() == s && (s - *x).abs() <= ulp
                    }
                    _ => s == *x,
                };
                assert!(ok, "position {pos}, {} column {c}: stored {s} for {x}", ["K", "V"][part]);
                *x = s;
            }
        }
    }
    out
}
