//! Fused attention against an f64 CPU reference: paged (causal and full, prefill, decode,
//! batches of sequences of different lengths with interleaved pages, every kernel variant)
//! and dense (the fine model's non-causal path), at Bark's head dimension 64 and at the other
//! sizes the kernels take (4 .. 128, the small transformers fixtures use 4 and 8).
//!
//! Tolerance: 1e-5 absolute on outputs of O(1) (q, k, v ~ N(0, 1), so scores ~ N(0, 1) after
//! the 1/sqrt(d) scale and outputs are convex combinations of values of magnitude < 5). f32
//! rounding enters through d-term dot products, d <= 128 (relative ~ sqrt(d) * 2^-24 of
//! |q||k|/sqrt(d), a few 1e-7 on the score, hence on the weights) and sums of up to 1024
//! weighted values: observed errors are below 1e-6 (printed by the tests). A wrong mask, a
//! missing or a stale key moves an output by about |v| / n_keys >= 1e-3 even at 1024 keys, and
//! a wrong column or head by O(1), far above the tolerance.

use crate::attn_ref;
use crate::common;

use attn_ref::{as_stored, attend, attend_seq, config, row, step, D};
use bark_wgpu::kv::{KvCacheConfig, PagedKvCache};
use bark_wgpu::ops::attention::{self, AttnOptions, Mask};
use bark_wgpu::ops::cpu::attention_rows;
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor};
use common::{assert_close, ctx, max_abs_diff, private_ctx, Rng};

const TOL: f32 = 1e-5;
/// Head dimensions other than Bark's 64 that the tests run: the fixtures' 4 and 8 (most column
/// groups idle at 16 rows per block), powers of two up to the maximum (128: two column vectors
/// per thread), and 100 (not a power of two: a partial second vector, 25 vectors at 16 rows).
const OTHER_DIMS: [usize; 6] = [4, 8, 16, 32, 100, 128];

fn opts(block_rows: u32, split: u32) -> AttnOptions {
    AttnOptions { block_rows: Some(block_rows), split: Some(split), rows_kernel: None }
}

/// shaders/cpu/attention_rows.wgsl (the default for prefill and dense attention on CPU adapters).
const ROWS: AttnOptions = AttnOptions { block_rows: None, split: None, rows_kernel: Some(true) };

/// A cache config with heads of `d`.
fn config_d(d: usize, layers: usize, heads: usize, page_size: usize, n_pages: usize, max_seqs: usize) -> KvCacheConfig {
    KvCacheConfig { head_dim: d, ..config(layers, heads, page_size, n_pages, max_seqs) }
}

/// Every kernel variant: block rows 1 and 16, with and without the key split, and the rows
/// kernel; both masks.
fn all_variants() -> Vec<(Mask, AttnOptions)> {
    let mut variants = Vec::new();
    for mask in [Mask::Causal, Mask::Full] {
        for o in [opts(1, 1), opts(1, 3), opts(16, 1), opts(16, 16), ROWS] {
            variants.push((mask, o));
        }
    }
    variants
}

/// A single sequence prefilled in one step, heads of `d`; every row checked against the
/// reference.
fn prefill_one(ctx: &Context, d: usize, t: usize, heads: usize, page_size: usize, variants: &[(Mask, AttnOptions)]) {
    let h = heads * d;
    let qkv = Rng::new((t * 31 + heads + d) as u64).normal(t * 3 * h, 1.0);
    // Two layers, attention on the second: the layer index must select the right pools.
    let mut cache = PagedKvCache::new(ctx, &config_d(d, 2, heads, page_size, 1024 / page_size + 3, 4)).unwrap();
    let seq = cache.add_sequence().unwrap();
    assert_eq!(cache.reserve(seq, t).unwrap(), 0..t);
    let rows = cache.step_rows(t).unwrap();
    rows.set_span(&cache, seq, 0).unwrap();
    let outs = step(ctx, &cache, &rows, &qkv, 1, variants);
    for (&(mask, o), got) in variants.iter().zip(&outs) {
        let want: Vec<f32> = (0..t).flat_map(|p| attend_seq(&qkv, heads, d, p, mask)).collect();
        eprintln!("prefill d={d} T={t} heads={heads} {mask:?} {o:?}: max err {:e}", max_abs_diff(got, &want));
        assert_close(&format!("d={d} T={t} heads={heads} {mask:?} {o:?}"), got, &want, TOL, 0.0);
    }
}

#[test]
fn prefill_causal_single_sequence() {
    let ctx = ctx();
    let auto = AttnOptions::default();
    for (t, heads) in [(1, 16), (7, 12), (64, 5), (257, 3), (1024, 1)] {
        prefill_one(ctx, D, t, heads, 16, &[(Mask::Causal, auto)]);
    }
}

#[test]
fn every_kernel_variant_agrees_causal_and_full() {
    // Page size 32 and a length that is not a multiple of either the chunk (64) or the block
    // (16).
    prefill_one(ctx(), D, 150, 3, 32, &all_variants());
}

#[test]
fn every_kernel_variant_at_other_head_dims() {
    // 70 rows: two chunks of keys, the second partial, and a partial last block.
    let ctx = ctx();
    for d in OTHER_DIMS {
        prefill_one(ctx, d, 70, 2, 16, &all_variants());
    }
}

#[test]
fn batch_of_three_sequences_with_interleaved_pages() {
    batch_then_decode(ctx(), D, 4, [1, 37, 300], 20, DType::F32);
}

#[test]
fn batch_and_batched_decode_at_other_head_dims() {
    let ctx = ctx();
    for d in OTHER_DIMS {
        batch_then_decode(ctx, d, 2, [1, 20, 70], 3, DType::F32);
    }
}

#[test]
fn batched_decode_at_barks_head_counts() {
    // The rows kernel spreads a decode step's heads over a workgroup's 8 threads: 12 and 16
    // heads fill one workgroup and part or all of a second (threads past the last head idle).
    let ctx = ctx();
    for (heads, dtype) in [(12, DType::F32), (16, DType::F16)] {
        batch_then_decode(ctx, D, heads, [1, 37, 90], 2, dtype);
    }
}

#[test]
fn f16_cache_batch_and_decode() {
    // The kernels read the pools' f16 halves; the reference attends over the same rounded keys
    // and values (as_stored checks the rounding), so the f32 tolerance still holds. Head dims:
    // Bark's 64, 4 (four keys' halves share one word group) and 100 (a partial second vector).
    let ctx = ctx();
    batch_then_decode(ctx, D, 4, [1, 37, 300], 5, DType::F16);
    for d in [4, 100] {
        batch_then_decode(ctx, d, 2, [1, 20, 70], 3, DType::F16);
    }
}

/// Three sequences of `lens` prefilled in one step (rows in order, then shuffled), then
/// `decode_steps` batched decode steps of one row each, heads of `d`.
fn batch_then_decode(ctx: &Context, d: usize, heads: usize, lens: [usize; 3], decode_steps: usize, dtype: DType) {
    let h = heads * d;
    let cfg = KvCacheConfig { dtype, ..config_d(d, 1, heads, 16, 40, 8) };
    let mut cache = PagedKvCache::new(ctx, &cfg).unwrap();
    // Scramble the free list first: a sequence takes 5 pages and frees them.
    let tmp = cache.add_sequence().unwrap();
    cache.reserve(tmp, 70).unwrap();
    cache.free(tmp).unwrap();
    let seqs: Vec<_> = lens.iter().map(|_| cache.add_sequence().unwrap()).collect();
    // Reserve a page's worth at a time, round robin, so the pools interleave.
    let mut done = [0usize; 3];
    while done != lens {
        for i in 0..3 {
            let n = (lens[i] - done[i]).min(16);
            if n > 0 {
                cache.reserve(seqs[i], n).unwrap();
                done[i] += n;
            }
        }
    }
    let pages = cache.pages(seqs[2]).unwrap();
    assert!(pages.windows(2).any(|w| w[1] != w[0] + 1), "pages are not interleaved: {pages:?}");

    let mut rng = Rng::new(11);
    let data: Vec<Vec<f32>> = lens.iter().map(|&n| rng.normal(n * 3 * h, 1.0)).collect();
    // Rows in sequence order, then the same rows in a random order (blocks then mix all three
    // sequences, non-contiguously).
    let mut order: Vec<(usize, usize)> = (0..3).flat_map(|s| (0..lens[s]).map(move |p| (s, p))).collect();
    for shuffle in [false, true] {
        if shuffle {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u32 + 1) as usize);
            }
        }
        let rows = cache.step_rows(order.len()).unwrap();
        let entries: Vec<_> = order.iter().map(|&(s, p)| Some((seqs[s], p))).collect();
        rows.set(&cache, &entries).unwrap();
        let qkv: Vec<f32> = order.iter().flat_map(|&(s, p)| row(&data[s], 3 * h, p).to_vec()).collect();
        // Both prefill kernels (a rows-kernel thread's 4 rows then belong to several sequences).
        let variants = [
            (Mask::Causal, ROWS),
            (Mask::Full, ROWS),
            (Mask::Causal, opts(16, 1)),
            (Mask::Full, opts(16, 1)),
            (Mask::Causal, opts(1, 2)),
        ];
        let outs = step(ctx, &cache, &rows, &qkv, 0, &variants);
        let stored: Vec<_> = (0..3).map(|s| as_stored(ctx, &cache, 0, seqs[s], &data[s])).collect();
        for (&(mask, o), got) in variants.iter().zip(&outs) {
            let want: Vec<f32> = order.iter().flat_map(|&(s, p)| attend_seq(&stored[s], heads, d, p, mask)).collect();
            eprintln!("batch d={d} shuffle={shuffle} {mask:?} {o:?}: max err {:e}", max_abs_diff(got, &want));
            assert_close(&format!("batch d={d} shuffle={shuffle} {mask:?} {o:?}"), got, &want, TOL, 0.0);
        }
    }

    // Then batched decode: one row per sequence, one plan for every step.
    let x = Tensor::empty(ctx, &[3, 3 * h], DType::F32).unwrap();
    let rows = cache.step_rows(3).unwrap();
    let mut g = Graph::new(ctx);
    let kv = cache.bind(&mut g, &rows);
    let xv = g.input(&x);
    bark_wgpu::ops::kv_cache::append(&mut g, &kv, 0, xv).unwrap();
    // Both decode kernels: the tiled one with its keys split, and the rows kernel.
    let outs = [opts(1, 2), ROWS].map(|o| attention::paged_with(&mut g, &kv, 0, xv, Mask::Causal, o).unwrap());
    outs.iter().for_each(|&out| g.keep(out));
    let plan = g.compile().unwrap();
    let mut data = data;
    for _ in 0..decode_steps {
        let new = rng.normal(3 * 3 * h, 1.0);
        let mut entries = Vec::new();
        for s in 0..3 {
            let pos = cache.reserve(seqs[s], 1).unwrap().start;
            data[s].extend_from_slice(row(&new, 3 * h, s));
            entries.push(Some((seqs[s], pos)));
        }
        rows.set(&cache, &entries).unwrap();
        x.write_f32(ctx, &new).unwrap();
        plan.run().unwrap();
        let want: Vec<f32> = (0..3)
            .flat_map(|s| {
                let stored = as_stored(ctx, &cache, 0, seqs[s], &data[s]);
                attend_seq(&stored, heads, d, data[s].len() / (3 * h) - 1, Mask::Causal)
            })
            .collect();
        for (out, kernel) in outs.iter().zip(["split", "rows"]) {
            let got = plan.tensor(*out).to_f32(ctx).unwrap();
            assert_close(&format!("batched decode d={d} {kernel}"), &got, &want, TOL, 0.0);
        }
    }
}

#[test]
fn decode_steps_match_recomputing_the_sequence() {
    let ctx = &private_ctx();
    let heads = 2;
    let h = heads * D;
    let (prompt, steps) = (5, 70);
    let total = prompt + steps;
    let data = Rng::new(5).normal(total * 3 * h, 1.0);
    let mut cache = PagedKvCache::new(ctx, &config(1, heads, 16, 8, 2)).unwrap();
    let seq = cache.add_sequence().unwrap();
    cache.reserve(seq, prompt).unwrap();
    let rows = cache.step_rows(prompt).unwrap();
    rows.set_span(&cache, seq, 0).unwrap();
    step(ctx, &cache, &rows, &data[..prompt * 3 * h], 0, &[(Mask::Causal, AttnOptions::default())]);

    // One decode plan, compiled once, run for every new token with new inputs and rows.
    let x = Tensor::empty(ctx, &[1, 3 * h], DType::F32).unwrap();
    let one = cache.step_rows(1).unwrap();
    let mut g = Graph::new(ctx);
    let kv = cache.bind(&mut g, &one);
    let xv = g.input(&x);
    bark_wgpu::ops::kv_cache::append(&mut g, &kv, 0, xv).unwrap();
    let out = attention::paged(&mut g, &kv, 0, xv, Mask::Causal).unwrap();
    g.readback(out);
    let plan = g.compile().unwrap();
    // Batch 1: the tiled default splits the keys (flash-decoding), so this covers the merge
    // too; the rows kernel (CPU adapters) needs none.
    let merge = usize::from(!ctx.policy().cpu_kernels);
    assert_eq!(plan.dispatch_count(), 2 + merge, "append, attention (, merge)");

    let mut stats = None;
    let mut decoded = Vec::new();
    for pos in prompt..total {
        assert_eq!(cache.reserve(seq, 1).unwrap(), pos..pos + 1);
        one.set(&cache, &[Some((seq, pos))]).unwrap();
        x.write_f32(ctx, row(&data, 3 * h, pos)).unwrap();
        plan.run().unwrap();
        let got: Vec<f32> = plan.read_words(out).unwrap()[..h].iter().map(|&w| f32::from_bits(w)).collect();
        let want = attend_seq(&data[..(pos + 1) * 3 * h], heads, D, pos, Mask::Causal);
        assert_close(&format!("decode pos {pos}"), &got, &want, TOL, 0.0);
        decoded.extend(got);
        // After the first run (a page boundary is crossed later on too), nothing is created.
        match stats {
            None => stats = Some(ctx.stats()),
            Some(s) => assert_eq!(ctx.stats(), s, "decode step {pos} created GPU objects"),
        }
    }

    // The same tokens prefilled at once in a fresh sequence give the same rows.
    cache.free(seq).unwrap();
    let again = cache.add_sequence().unwrap();
    cache.reserve(again, total).unwrap();
    let rows = cache.step_rows(total).unwrap();
    rows.set_span(&cache, again, 0).unwrap();
    let full = step(ctx, &cache, &rows, &data, 0, &[(Mask::Causal, AttnOptions::default())]).remove(0);
    assert_close("decode vs prefill", &decoded, &full[prompt * h..], TOL, 0.0);
}

#[test]
fn inactive_rows_are_zero_and_leave_the_cache_alone() {
    let ctx = ctx();
    let heads = 2;
    let h = heads * D;
    let mut cache = PagedKvCache::new(ctx, &config(1, heads, 16, 4, 2)).unwrap();
    let seq = cache.add_sequence().unwrap();
    cache.reserve(seq, 2).unwrap();
    let data = Rng::new(9).normal(4 * 3 * h, 1.0);
    let rows = cache.step_rows(4).unwrap();
    // Rows 1 and 3 belong to no sequence; positions 0 and 1 of seq are rows 0 and 2.
    rows.set(&cache, &[Some((seq, 0)), None, Some((seq, 1)), None]).unwrap();
    let variants = [(Mask::Full, opts(16, 1)), (Mask::Causal, opts(1, 2)), (Mask::Full, ROWS), (Mask::Causal, ROWS)];
    let got = step(ctx, &cache, &rows, &data, 0, &variants);
    let seq_rows: Vec<f32> = [0, 2].iter().flat_map(|&i| row(&data, 3 * h, i).to_vec()).collect();
    for ((mask, _), out) in variants.into_iter().zip(&got) {
        for (i, pos) in [(0, Some(0)), (1, None), (2, Some(1)), (3, None)] {
            let want = match pos {
                Some(p) => attend_seq(&seq_rows, heads, D, p, mask),
                None => vec![0.0; h],
            };
            assert_close(&format!("{mask:?} row {i}"), row(out, h, i), &want, TOL, 0.0);
        }
    }
}

#[test]
fn dense_fine_model_path() {
    let ctx = ctx();
    // (batch, T, heads, mask, options): Bark's fine window (B=2, T=1024) and awkward sizes;
    // T=37 is not a multiple of the 16-row block or of the rows kernel's 4 rows per thread, so
    // blocks and threads straddle batch items.
    let cases = [
        (2, 1024, 1, Mask::Full, AttnOptions::default()),
        (2, 1024, 1, Mask::Full, opts(16, 1)),
        (2, 1024, 1, Mask::Full, ROWS),
        (3, 37, 5, Mask::Full, AttnOptions::default()),
        (3, 37, 5, Mask::Causal, opts(16, 1)),
        (3, 37, 5, Mask::Causal, ROWS),
        (2, 100, 2, Mask::Full, opts(1, 2)),
    ];
    for (b, t, heads, mask, o) in cases {
        dense_case(ctx, D, (b, t, heads), mask, o);
    }
}

#[test]
fn dense_at_other_head_dims() {
    // The head dimension comes from the width of qkv; 70 rows per item span two key chunks.
    let ctx = ctx();
    for d in OTHER_DIMS {
        dense_case(ctx, d, (2, 37, 2), Mask::Full, AttnOptions::default());
        dense_case(ctx, d, (2, 37, 2), Mask::Causal, opts(16, 1));
        dense_case(ctx, d, (2, 37, 2), Mask::Full, ROWS);
        dense_case(ctx, d, (1, 70, 3), Mask::Full, opts(1, 2));
    }
}

#[test]
fn shared_loads_match_each_thread_loading_its_own() {
    // Where a workgroup is one subgroup (8 lanes) the rows kernel's lanes walk their
    // keys together and split each chunk's key and value loads, shuffling the words to each
    // other: prefill and the fine model's path. It must match the reference and, every output
    // being the same sums in the same order, a device without subgroups bit for bit (dense);
    // the paged prefill and decode of three interleaved sequences, causal, whose workgroups
    // straddle sequences and rows past their keys, must match the reference on both. Head dims
    // 32, 64, 128 (8, 8 and 4 rows per thread where the lanes share, else 4, 4 and 2); f16 pools
    // share at 64 and 128.
    let shared = ctx();
    let opts = ContextOptions { no_optional_features: true, cpu_kernels: Some(true), ..Default::default() };
    let own = &Context::new(&opts).unwrap();
    // What the device offers decides it: subgroups of exactly a workgroup's 8 lanes.
    let one_subgroup = shared.policy().subgroups_are(8);
    let dims = [(32, 64), (64, 128), (128, 37)];
    for (d, _) in dims {
        for f16 in [false, true] {
            let splits = d % 64 == 0 || !f16;
            assert_eq!(
                attention_rows::shares_loads(shared.policy(), d as u32, f16),
                one_subgroup && splits,
                "d={d} f16={f16}"
            );
            assert!(!attention_rows::shares_loads(own.policy(), d as u32, f16));
        }
    }
    // Without them both contexts run the same loads: the rows kernel's own tests cover that.
    if !one_subgroup {
        crate::common::skipped("attention: shared loads", "the device has no subgroups of exactly 8 lanes");
        return;
    }
    for (d, t) in dims {
        for mask in [Mask::Full, Mask::Causal] {
            let (a, want) = dense_run(shared, d, (2, t, 3), mask, ROWS);
            let (b, _) = dense_run(own, d, (2, t, 3), mask, ROWS);
            assert_close(&format!("shared loads d={d} T={t} {mask:?}"), &a, &want, TOL, 0.0);
            let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "d={d} T={t} {mask:?}: shared != own loads");
        }
        for ctx in [shared, own] {
            for dtype in [DType::F32, DType::F16] {
                batch_then_decode(ctx, d, 2, [1, 20, 70], 2, dtype);
            }
        }
    }
}

/// Dense attention over `batch` items of `t` rows, `heads` heads of `d`, against the reference.
fn dense_case(ctx: &Context, d: usize, (b, t, heads): (usize, usize, usize), mask: Mask, o: AttnOptions) {
    let (got, want) = dense_run(ctx, d, (b, t, heads), mask, o);
    let label = format!("dense d={d} B={b} T={t} heads={heads} {mask:?} {o:?}");
    eprintln!("{label}: max err {:e}", max_abs_diff(&got, &want));
    assert_close(&label, &got, &want, TOL, 0.0);
}

/// The kernel's output and the reference's for [`dense_case`]'s problem.
fn dense_run(
    ctx: &Context,
    d: usize,
    (b, t, heads): (usize, usize, usize),
    mask: Mask,
    o: AttnOptions,
) -> (Vec<f32>, Vec<f32>) {
    let h = heads * d;
    let qkv = Rng::new((b * t + heads + d) as u64).normal(b * t * 3 * h, 1.0);
    let x = Tensor::from_f32(ctx, &qkv, &[b * t, 3 * h], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let xv = g.input(&x);
    let out = attention::dense_with(&mut g, xv, heads, b, t, mask, o).unwrap();
    g.keep(out);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    let got = plan.tensor(out).to_f32(ctx).unwrap();
    let want: Vec<f32> = (0..b)
        .flat_map(|i| {
            (0..t)
                .flat_map(|p| attend_seq(&qkv[i * t * 3 * h..(i + 1) * t * 3 * h], heads, d, p, mask))
                .collect::<Vec<_>>()
        })
        .collect();
    (got, want)
}

#[test]
fn the_reference_itself_is_a_softmax_average() {
    // Two keys with equal scores: the output is the mean of their values, whatever the query.
    let h = D;
    let mut q = vec![0f32; 3 * h];
    q[..D].fill(0.3);
    let mut k1 = vec![0f32; 3 * h];
    let mut k2 = vec![0f32; 3 * h];
    k1[2 * h..].fill(1.0);
    k2[2 * h..].fill(3.0);
    assert_eq!(attend(&q, &[&k1, &k2], 1, D), vec![2.0; D]);
}

#[test]
fn bad_shapes_and_options_are_errors() {
    let ctx = ctx();
    let cache = PagedKvCache::new(ctx, &config(1, 2, 16, 4, 2)).unwrap();
    let rows = cache.step_rows(3).unwrap();
    let mut g = Graph::new(ctx);
    let kv = cache.bind(&mut g, &rows);
    let good = g.tensor(&[3, 3 * 128], DType::F32);
    let wide = g.tensor(&[3, 3 * 128 + 1], DType::F32);
    let short = g.tensor(&[2, 3 * 128], DType::F32);
    let ints = g.tensor(&[3, 3 * 128], DType::U32);
    for x in [wide, short, ints] {
        assert!(attention::paged(&mut g, &kv, 0, x, Mask::Causal).is_err());
        assert!(bark_wgpu::ops::kv_cache::append(&mut g, &kv, 0, x).is_err());
    }
    // A decode step has a row per sequence at most: 3 rows for a cache of 2 is a prefill.
    assert!(attention::paged_append(&mut g, &kv, 0, good).is_err(), "3 rows, 2 sequences");
    let two_rows = cache.step_rows(2).unwrap();
    let kv2 = cache.bind(&mut g, &two_rows);
    let good2 = g.tensor(&[2, 3 * 128], DType::F32);
    assert!(attention::paged_append(&mut g, &kv2, 0, good2).is_ok());
    assert!(attention::paged_append(&mut g, &kv2, 1, good2).is_err(), "layer out of range");
    assert!(attention::paged(&mut g, &kv, 1, good, Mask::Causal).is_err(), "layer out of range");
    assert!(bark_wgpu::ops::kv_cache::append(&mut g, &kv, 1, good).is_err(), "layer out of range");
    // The rows kernel has no block rows or split to set.
    let rows_with_split = AttnOptions { split: Some(2), ..ROWS };
    for o in [opts(2, 1), opts(16, 0), opts(1, 17), rows_with_split] {
        assert!(attention::paged_with(&mut g, &kv, 0, good, Mask::Causal, o).is_err(), "{o:?}");
    }
    assert!(attention::dense_with(&mut g, good, 2, 1, 3, Mask::Full, rows_with_split).is_err());
    assert!(attention::dense(&mut g, good, 2, 1, 3, Mask::Full).is_ok());
    assert!(attention::dense(&mut g, good, 2, 2, 3, Mask::Full).is_err(), "6 rows expected");
    assert!(attention::dense(&mut g, good, 3, 1, 3, Mask::Full).is_err(), "384 is not 3 * 3 heads * head_dim");
    assert!(attention::dense(&mut g, good, 2, 0, 3, Mask::Full).is_err());
    let flat = g.tensor(&[3 * 3 * 128], DType::F32);
    assert!(attention::dense(&mut g, flat, 2, 1, 3, Mask::Full).is_err(), "qkv must be a matrix");
}

#[test]
fn head_dims_the_kernels_do_not_take_are_errors() {
    for d in (4..=128).step_by(4) {
        assert!(attention::supports_head_dim(d), "{d}");
    }
    let unsupported = [0, 1, 2, 6, 30, 66, 130, 132, 256];
    for d in unsupported {
        assert!(!attention::supports_head_dim(d), "{d}");
    }
    let ctx = ctx();
    let mut g = Graph::new(ctx);
    for d in unsupported.into_iter().filter(|&d| d > 0) {
        let d = d as usize;
        // Paged: the cache accepts any head size, the attention op does not.
        let cache = PagedKvCache::new(ctx, &config_d(d, 1, 2, 16, 4, 2)).unwrap();
        let rows = cache.step_rows(1).unwrap();
        let kv = cache.bind(&mut g, &rows);
        let x = g.tensor(&[1, 3 * 2 * d], DType::F32);
        assert!(attention::paged(&mut g, &kv, 0, x, Mask::Causal).is_err(), "paged d={d}");
        // Dense: the width says 2 heads of d.
        assert!(attention::dense(&mut g, x, 2, 1, 1, Mask::Full).is_err(), "dense d={d}");
    }
}

#[test]
fn a_decode_step_appending_in_the_merge_equals_append_then_attend() {
    // attention::paged_append against kv_cache::append + attention::paged on twin caches: three
    // rows (one idle) over sequences of different lengths, a few steps, f32 and f16 pools, a
    // cache short enough for one chunk (no split: the append runs first) and a long one (split:
    // the rows read their own keys from qkv and the merge appends). Outputs and pools must be
    // bit-identical: the same keys, rounded the same way, in the same order. With the CPU
    // kernels both run the append first and the rows kernel.
    for cpu_kernels in [false, true] {
        let ctx = &Context::new(&ContextOptions { cpu_kernels: Some(cpu_kernels), ..Default::default() }).unwrap();
        decode_append_twins(ctx);
    }
}

fn decode_append_twins(ctx: &Context) {
    let heads = 2;
    let h = heads * D;
    for dtype in [DType::F32, DType::F16] {
        for max_len in [64, 320] {
            let cfg = KvCacheConfig { max_seq_len: max_len, dtype, ..config(1, heads, 16, 3 * max_len / 16, 3) };
            let mut rng = Rng::new(max_len as u64 + dtype.bytes(&[1]));
            let mut caches = [PagedKvCache::new(ctx, &cfg).unwrap(), PagedKvCache::new(ctx, &cfg).unwrap()];
            let lens = [37.min(max_len - 4), 5, (max_len - 40).max(6)];
            let mut seqs = Vec::new();
            for &len in &lens {
                let data = rng.normal(len * 3 * h, 1.0);
                let ids: Vec<_> = caches.iter_mut().map(|c| c.add_sequence().unwrap()).collect();
                for (c, &seq) in caches.iter_mut().zip(&ids) {
                    c.reserve(seq, len).unwrap();
                    let rows = c.step_rows(len).unwrap();
                    rows.set_span(c, seq, 0).unwrap();
                    step(ctx, c, &rows, &data, 0, &[]);
                }
                seqs.push(ids);
            }
            let x = Tensor::empty(ctx, &[3, 3 * h], DType::F32).unwrap();
            let mut plans = Vec::new();
            for (k, c) in caches.iter().enumerate() {
                let rows = c.step_rows(3).unwrap();
                let mut g = Graph::new(ctx);
                let kv = c.bind(&mut g, &rows);
                let xv = g.input(&x);
                let out = if k == 0 {
                    bark_wgpu::ops::kv_cache::append(&mut g, &kv, 0, xv).unwrap();
                    attention::paged(&mut g, &kv, 0, xv, Mask::Causal).unwrap()
                } else {
                    attention::paged_append(&mut g, &kv, 0, xv).unwrap()
                };
                g.keep(out);
                plans.push((rows, out, g.compile().unwrap()));
            }
            let split = max_len > 64 && !ctx.policy().cpu_kernels;
            assert_eq!(plans[0].2.dispatch_count(), if split { 3 } else { 2 }, "append, attention (, merge)");
            assert_eq!(plans[1].2.dispatch_count(), 2, "attention and merge, or append and attention");
            for s in 0..3 {
                x.write_f32(ctx, &rng.normal(3 * 3 * h, 1.0)).unwrap();
                let mut outs = Vec::new();
                for (k, (c, (rows, out, plan))) in caches.iter_mut().zip(&plans).enumerate() {
                    let live: Vec<_> = [0, 2].iter().map(|&i| seqs[i][k]).collect();
                    let p0 = c.reserve(live[0], 1).unwrap().start;
                    let p2 = c.reserve(live[1], 1).unwrap().start;
                    rows.set(c, &[Some((live[0], p0)), None, Some((live[1], p2))]).unwrap();
                    plan.run().unwrap();
                    outs.push(plan.tensor(*out).read_words(ctx).unwrap());
                }
                let what = format!("{dtype:?} cache of {max_len}, step {s}");
                assert!(outs[0].iter().any(|&w| w != 0), "{what}: no output");
                assert_eq!(outs[0], outs[1], "{what}: outputs differ");
                let pools =
                    |c: &PagedKvCache| [c.k_pool(0).unwrap(), c.v_pool(0).unwrap()].map(|t| t.read_words(ctx).unwrap());
                assert!(pools(&caches[0]) == pools(&caches[1]), "{what}: the caches differ");
            }
        }
    }
}
