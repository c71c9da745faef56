//! Fused attention against an f64 CPU reference: paged (causal and full, prefill, decode,
//! batches of sequences of different lengths with interleaved pages, every kernel variant)
//! and dense (the fine model's non-causal path).
//!
//! Tolerance: 1e-5 absolute on outputs of O(1) (q, k, v ~ N(0, 1), so scores ~ N(0, 1) after
//! the 1/8 scale and outputs are convex combinations of values of magnitude < 5). f32 rounding
//! enters through 64-term dot products (relative ~ 8 * 2^-24 of |q||k|/8, a few 1e-7 on the
//! score, hence on the weights) and sums of up to 1024 weighted values: observed errors are
//! below 1e-6 (printed by the tests). A wrong mask, a missing or a stale key moves an output by
//! about |v| / n_keys >= 1e-3 even at 1024 keys, far above the tolerance.

mod attn_ref;
mod common;

use attn_ref::{attend, attend_seq, config, row, step, D};
use bark_wgpu::kv::PagedKvCache;
use bark_wgpu::ops::attention::{self, AttnOptions, Mask};
use bark_wgpu::{Context, DType, Graph, Tensor};
use common::{assert_close, ctx, max_abs_diff, Rng};

const TOL: f32 = 1e-5;

fn opts(block_rows: u32, split: u32) -> AttnOptions {
    AttnOptions { block_rows: Some(block_rows), split: Some(split) }
}

/// A single sequence prefilled in one step; every row checked against the reference.
fn prefill_one(ctx: &Context, t: usize, heads: usize, page_size: usize, variants: &[(Mask, AttnOptions)]) {
    let h = heads * D;
    let qkv = Rng::new((t * 31 + heads) as u64).normal(t * 3 * h, 1.0);
    // Two layers, attention on the second: the layer index must select the right pools.
    let mut cache = PagedKvCache::new(ctx, &config(2, heads, page_size, 1024 / page_size + 3, 4)).unwrap();
    let seq = cache.add_sequence().unwrap();
    assert_eq!(cache.reserve(seq, t).unwrap(), 0..t);
    let rows = cache.step_rows(t).unwrap();
    rows.set_span(&cache, seq, 0).unwrap();
    let outs = step(ctx, &cache, &rows, &qkv, 1, variants);
    for (&(mask, o), got) in variants.iter().zip(&outs) {
        let want: Vec<f32> = (0..t).flat_map(|p| attend_seq(&qkv, heads, p, mask)).collect();
        eprintln!("prefill T={t} heads={heads} {mask:?} {o:?}: max err {:e}", max_abs_diff(got, &want));
        assert_close(&format!("T={t} heads={heads} {mask:?} {o:?}"), got, &want, TOL, 0.0);
    }
}

#[test]
fn prefill_causal_single_sequence() {
    let ctx = ctx();
    let auto = AttnOptions::default();
    for (t, heads) in [(1, 16), (7, 12), (64, 5), (257, 3), (1024, 1)] {
        prefill_one(ctx, t, heads, 16, &[(Mask::Causal, auto)]);
    }
}

#[test]
fn every_kernel_variant_agrees_causal_and_full() {
    // block rows 1 and 16, with and without the key split, both masks; page size 32 and a
    // length that is not a multiple of either the chunk (64) or the block (16).
    let ctx = ctx();
    let mut variants = Vec::new();
    for mask in [Mask::Causal, Mask::Full] {
        for o in [opts(1, 1), opts(1, 3), opts(16, 1), opts(16, 16)] {
            variants.push((mask, o));
        }
    }
    prefill_one(ctx, 150, 3, 32, &variants);
}

#[test]
fn batch_of_three_sequences_with_interleaved_pages() {
    let ctx = ctx();
    let heads = 4;
    let h = heads * D;
    let lens = [1usize, 37, 300];
    let mut cache = PagedKvCache::new(ctx, &config(1, heads, 16, 40, 8)).unwrap();
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
        let variants =
            [(Mask::Causal, AttnOptions::default()), (Mask::Full, AttnOptions::default()), (Mask::Causal, opts(1, 2))];
        let outs = step(ctx, &cache, &rows, &qkv, 0, &variants);
        for (&(mask, o), got) in variants.iter().zip(&outs) {
            let want: Vec<f32> = order.iter().flat_map(|&(s, p)| attend_seq(&data[s], heads, p, mask)).collect();
            eprintln!("batch shuffle={shuffle} {mask:?} {o:?}: max err {:e}", max_abs_diff(got, &want));
            assert_close(&format!("batch shuffle={shuffle} {mask:?} {o:?}"), got, &want, TOL, 0.0);
        }
    }

    // Then batched decode: one row per sequence, one plan for every step.
    let x = Tensor::empty(ctx, &[3, 3 * h], DType::F32).unwrap();
    let rows = cache.step_rows(3).unwrap();
    let mut g = Graph::new(ctx);
    let kv = cache.bind(&mut g, &rows);
    let xv = g.input(&x);
    bark_wgpu::ops::kv_cache::append(&mut g, &kv, 0, xv).unwrap();
    let out = attention::paged(&mut g, &kv, 0, xv, Mask::Causal).unwrap();
    g.keep(out);
    let plan = g.compile().unwrap();
    let mut data = data;
    for _ in 0..20 {
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
        let got = plan.tensor(out).to_f32(ctx).unwrap();
        let want: Vec<f32> =
            (0..3).flat_map(|s| attend_seq(&data[s], heads, data[s].len() / (3 * h) - 1, Mask::Causal)).collect();
        assert_close("batched decode", &got, &want, TOL, 0.0);
    }
}

/// A context of its own, so other tests' allocations do not show in its counters.
fn private_ctx() -> Context {
    Context::new(&Default::default()).expect("GPU tests need a wgpu adapter")
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
    // Batch 1: the default splits the keys (flash-decoding), so this covers the merge too.
    assert_eq!(plan.dispatch_count(), 3, "append, attention, merge");

    let mut stats = None;
    let mut decoded = Vec::new();
    for pos in prompt..total {
        assert_eq!(cache.reserve(seq, 1).unwrap(), pos..pos + 1);
        one.set(&cache, &[Some((seq, pos))]).unwrap();
        x.write_f32(ctx, row(&data, 3 * h, pos)).unwrap();
        plan.run().unwrap();
        let got: Vec<f32> = plan.read_words(out).unwrap()[..h].iter().map(|&w| f32::from_bits(w)).collect();
        let want = attend_seq(&data[..(pos + 1) * 3 * h], heads, pos, Mask::Causal);
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
    let got = step(ctx, &cache, &rows, &data, 0, &[(Mask::Full, opts(16, 1)), (Mask::Causal, opts(1, 2))]);
    let seq_rows: Vec<f32> = [0, 2].iter().flat_map(|&i| row(&data, 3 * h, i).to_vec()).collect();
    for (mask, out) in [Mask::Full, Mask::Causal].into_iter().zip(&got) {
        for (i, pos) in [(0, Some(0)), (1, None), (2, Some(1)), (3, None)] {
            let want = match pos {
                Some(p) => attend_seq(&seq_rows, heads, p, mask),
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
    // T=37 is not a multiple of the 16-row block, so blocks straddle batch items.
    let cases = [
        (2, 1024, 1, Mask::Full, AttnOptions::default()),
        (3, 37, 5, Mask::Full, AttnOptions::default()),
        (3, 37, 5, Mask::Causal, opts(16, 1)),
        (2, 100, 2, Mask::Full, opts(1, 2)),
    ];
    for (b, t, heads, mask, o) in cases {
        let h = heads * D;
        let qkv = Rng::new((b * t + heads) as u64).normal(b * t * 3 * h, 1.0);
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
                    .flat_map(|p| attend_seq(&qkv[i * t * 3 * h..(i + 1) * t * 3 * h], heads, p, mask))
                    .collect::<Vec<_>>()
            })
            .collect();
        eprintln!("dense B={b} T={t} heads={heads} {mask:?} {o:?}: max err {:e}", max_abs_diff(&got, &want));
        assert_close(&format!("dense B={b} T={t} heads={heads} {mask:?}"), &got, &want, TOL, 0.0);
    }
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
    assert_eq!(attend(&q, &[&k1, &k2], 1), vec![2.0; D]);
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
    assert!(attention::paged(&mut g, &kv, 1, good, Mask::Causal).is_err(), "layer out of range");
    assert!(bark_wgpu::ops::kv_cache::append(&mut g, &kv, 1, good).is_err(), "layer out of range");
    for o in [opts(2, 1), opts(16, 0), opts(1, 17)] {
        assert!(attention::paged_with(&mut g, &kv, 0, good, Mask::Causal, o).is_err(), "{o:?}");
    }
    assert!(attention::dense(&mut g, good, 2, 1, 3, Mask::Full).is_ok());
    assert!(attention::dense(&mut g, good, 2, 2, 3, Mask::Full).is_err(), "6 rows expected");
    assert!(attention::dense(&mut g, good, 3, 1, 3, Mask::Full).is_err(), "H = 192 expected");
    assert!(attention::dense(&mut g, good, 2, 0, 3, Mask::Full).is_err());
    // head_dim other than 64
    let mut cfg = config(1, 2, 16, 4, 2);
    cfg.head_dim = 32;
    let odd = PagedKvCache::new(ctx, &cfg).unwrap();
    let odd_rows = odd.step_rows(1).unwrap();
    let kv = odd.bind(&mut g, &odd_rows);
    let x = g.tensor(&[1, 3 * 64], DType::F32);
    assert!(attention::paged(&mut g, &kv, 0, x, Mask::Causal).is_err());
}
