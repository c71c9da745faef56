//! The paged KV cache: the host allocator (reserve, reset, free, exhaustion, capacity), the GPU
//! page table it keeps in step, the append kernel, and reuse of freed pages without stale data.

use crate::attn_ref;
use crate::common;

use attn_ref::{attend_seq, config, row, step, D};
use bark_wgpu::kv::{KvCacheConfig, PagedKvCache, SeqId};
use bark_wgpu::ops::attention::{AttnOptions, Mask};
use bark_wgpu::ops::kv_cache;
use bark_wgpu::{DType, Graph, Tensor};
use common::{assert_close, ctx, Rng};
use half::f16;

/// Attention outputs are checked to 1e-5 absolute, as in tests/gpu/attention.rs (f32 rounding of
/// O(1) values is below 1e-6; a stale or missing key moves an output by >= 1e-3).
const TOL: f32 = 1e-5;

#[test]
fn append_writes_each_row_to_its_page_and_nothing_else() {
    append_case(DType::F32);
}

#[test]
fn append_to_an_f16_cache_rounds_each_value_to_f16() {
    append_case(DType::F16);
}

/// Rows of three sequences (out of order, one inactive) appended to layer 1 of a cache storing
/// `dtype`: f32 copies are exact; f16 ones are the input rounded to an f16 neighbour (WGSL lets
/// the conversion round either way; both lavapipe and NVIDIA round to nearest).
fn append_case(dtype: DType) {
    let ctx = ctx();
    let (heads, ps) = (2, 4);
    let h = heads * D;
    let cfg = KvCacheConfig { dtype, ..config(2, heads, ps, 16, 3) };
    let mut cache = PagedKvCache::new(ctx, &cfg).unwrap();
    let seqs: Vec<SeqId> = (0..3).map(|_| cache.add_sequence().unwrap()).collect();
    for (s, n) in seqs.iter().zip([5, 9, 2]) {
        cache.reserve(*s, n).unwrap();
    }
    // Rows out of order across sequences, one inactive.
    let entries =
        [Some((seqs[1], 8)), Some((seqs[0], 0)), None, Some((seqs[2], 1)), Some((seqs[1], 3)), Some((seqs[0], 4))];
    let rows = cache.step_rows(entries.len()).unwrap();
    rows.set(&cache, &entries).unwrap();
    let qkv = Rng::new(3).normal(entries.len() * 3 * h, 1.0);
    let x = Tensor::from_f32(ctx, &qkv, &[entries.len(), 3 * h], DType::F32).unwrap();
    let mut g = Graph::new(ctx);
    let kv = cache.bind(&mut g, &rows);
    let xv = g.input(&x);
    kv_cache::append(&mut g, &kv, 1, xv).unwrap();
    g.compile().unwrap().run().unwrap();

    let pool_len = 16 * ps * h;
    let (mut want_k, mut want_v) = (vec![0f32; pool_len], vec![0f32; pool_len]);
    for (i, e) in entries.iter().enumerate() {
        if let Some((seq, pos)) = *e {
            let page = cache.pages(seq).unwrap()[pos / ps] as usize;
            let at = (page * ps + pos % ps) * h;
            want_k[at..at + h].copy_from_slice(&row(&qkv, 3 * h, i)[h..2 * h]);
            want_v[at..at + h].copy_from_slice(&row(&qkv, 3 * h, i)[2 * h..]);
        }
    }
    // Layer 1 holds the rows (rounded when f16); layer 0 is untouched.
    let stored = |x: f32| match dtype {
        DType::F16 => f16::from_f32(x).to_f32(),
        _ => x,
    };
    for (name, pool, want) in [("K", cache.k_pool(1), want_k), ("V", cache.v_pool(1), want_v)] {
        let got = pool.unwrap().to_f32(ctx).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (&g, &x)) in got.iter().zip(&want).enumerate() {
            let near = stored(x);
            let ulp = match dtype {
                DType::F16 => (f16::from_bits(f16::from_f32(x).to_bits() + 1).to_f32() - near).abs(),
                _ => 0.0,
            };
            assert!(stored(g) == g && (g - x).abs() <= ulp, "{name} pool word {i}: {g} stored for {x}");
        }
    }
    assert!(cache.k_pool(0).unwrap().to_f32(ctx).unwrap().iter().all(|&v| v == 0.0));
    assert!(cache.v_pool(0).unwrap().to_f32(ctx).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn page_table_and_lengths_follow_reserve_reset_and_free() {
    let ctx = ctx();
    let ps = 16;
    let mut cache = PagedKvCache::new(ctx, &config(1, 1, ps, 10, 3)).unwrap();
    assert_eq!(cache.max_seq_len(), 1024);
    let a = cache.add_sequence().unwrap();
    let b = cache.add_sequence().unwrap();
    assert_eq!(cache.reserve(a, 17).unwrap(), 0..17);
    assert_eq!(cache.reserve(b, 1).unwrap(), 0..1);
    assert_eq!(cache.reserve(a, 15).unwrap(), 17..32, "fills the second page, no new one");
    assert_eq!(cache.reserve(a, 1).unwrap(), 32..33);
    assert_eq!(cache.pages(a).unwrap().len(), 3);
    assert_eq!(cache.pages(b).unwrap().len(), 1);
    assert_eq!(cache.free_pages(), 6);
    let check = |cache: &PagedKvCache, seqs: &[SeqId]| {
        let table = cache.page_table().to_u32(ctx).unwrap();
        let lens = cache.seq_lens().to_u32(ctx).unwrap();
        let width = cache.geometry().max_pages_per_seq as usize;
        for &s in seqs {
            let slot = s.slot() as usize;
            let pages = cache.pages(s).unwrap();
            assert_eq!(&table[slot * width..slot * width + pages.len()], pages, "{s:?}");
            assert_eq!(lens[slot] as usize, cache.len(s).unwrap(), "{s:?}");
        }
    };
    check(&cache, &[a, b]);
    // All pages distinct.
    let mut all: Vec<u32> = [a, b].iter().flat_map(|&s| cache.pages(s).unwrap().to_vec()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4);

    cache.reset(a).unwrap();
    assert_eq!(cache.len(a).unwrap(), 0);
    assert_eq!(cache.free_pages(), 9);
    check(&cache, &[a, b]);
    cache.reserve(a, 40).unwrap();
    check(&cache, &[a, b]);
    let slot_b = b.slot() as usize;
    cache.free(b).unwrap();
    assert_eq!(cache.seq_lens().to_u32(ctx).unwrap()[slot_b], 0, "a freed slot has length 0 on the GPU");
    assert!(cache.len(b).is_err());
    // The slot is reused by a new sequence, under a new handle.
    let c = cache.add_sequence().unwrap();
    assert_ne!(c, b);
    cache.reserve(c, 3).unwrap();
    check(&cache, &[a, c]);
}

#[test]
fn pool_exhaustion_is_an_error_that_changes_nothing() {
    let ctx = ctx();
    let mut cache = PagedKvCache::new(ctx, &config(1, 1, 16, 4, 2)).unwrap();
    let a = cache.add_sequence().unwrap();
    let b = cache.add_sequence().unwrap();
    cache.reserve(a, 40).unwrap(); // 3 pages
    let before = (cache.len(b).unwrap(), cache.free_pages());
    let err = cache.reserve(b, 17).unwrap_err(); // needs 2, 1 free
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert_eq!((cache.len(b).unwrap(), cache.free_pages()), before);
    assert_eq!(cache.seq_lens().to_u32(ctx).unwrap()[b.slot() as usize], 0);
    cache.reserve(b, 16).unwrap(); // exactly the last page
    assert!(cache.reserve(b, 1).is_err());
    assert!(cache.reserve(a, 9).is_err(), "a's third page has 8 free positions only");
    cache.reserve(a, 8).unwrap();
    cache.free(a).unwrap();
    cache.reserve(b, 48).unwrap();
    assert_eq!(cache.free_pages(), 0);
}

#[test]
fn capacity_and_bad_handles_are_errors() {
    let ctx = ctx();
    let mut cfg = config(1, 1, 16, 100, 2);
    cfg.max_seq_len = 40; // rounded up to 48 = 3 pages
    let mut cache = PagedKvCache::new(ctx, &cfg).unwrap();
    assert_eq!(cache.max_seq_len(), 48);
    // Pools store f32 or f16, and f16 pairs need an even row.
    let odd = KvCacheConfig { head_dim: 3, dtype: DType::F16, ..cfg.clone() };
    assert!(PagedKvCache::new(ctx, &odd).err().unwrap().to_string().contains("even"));
    assert!(PagedKvCache::new(ctx, &KvCacheConfig { dtype: DType::U32, ..cfg.clone() }).is_err());
    let a = cache.add_sequence().unwrap();
    let b = cache.add_sequence().unwrap();
    assert!(cache.add_sequence().is_err(), "only 2 sequences");
    assert!(cache.reserve(a, 49).is_err(), "past the capacity of a sequence");
    cache.reserve(a, 48).unwrap();
    assert!(cache.reserve(a, 1).is_err());
    assert!(cache.reserve(a, usize::MAX).is_err());
    cache.reserve(b, 2).unwrap();

    let rows = cache.step_rows(2).unwrap();
    assert!(rows.set(&cache, &[Some((b, 2)), None]).is_err(), "position not reserved");
    assert!(rows.set(&cache, &[Some((b, 1)), Some((b, 1))]).is_err(), "same position twice");
    assert!(rows.set(&cache, &[Some((b, 1))]).is_err(), "wrong row count");
    assert!(rows.set_span(&cache, b, 1).is_err(), "span past the reserved positions");
    rows.set(&cache, &[Some((b, 1)), Some((a, 47))]).unwrap();
    cache.free(b).unwrap();
    assert!(rows.set(&cache, &[Some((b, 0)), None]).is_err(), "freed sequence");
    assert!(cache.reserve(b, 1).is_err());
    assert!(cache.reset(b).is_err());
    assert!(cache.free(b).is_err());
    assert!(cache.step_rows(0).is_err());
    assert!(cache.k_pool(1).is_err() && cache.v_pool(1).is_err());

    let mut zero = config(1, 1, 16, 4, 2);
    zero.page_size = 0;
    assert!(PagedKvCache::new(ctx, &zero).is_err());
    // One layer's pool must fit one storage binding: 64 pages x 16 x 64 floats = 256 KiB.
    let small = bark_wgpu::Context::new(&bark_wgpu::ContextOptions {
        max_binding_bytes: Some(200 << 10),
        ..Default::default()
    })
    .unwrap();
    assert!(PagedKvCache::new(&small, &config(1, 1, 16, 64, 2)).is_err());
    assert!(PagedKvCache::new(&small, &config(1, 1, 16, 48, 2)).is_ok());
    let mut huge = config(1, 16, 16, 1 << 20, 2);
    huge.n_pages = usize::MAX / 2;
    assert!(PagedKvCache::new(ctx, &huge).is_err(), "too large to index");
}

#[test]
fn freed_and_reset_pages_are_reused_without_stale_data() {
    let ctx = ctx();
    let heads = 2;
    let h = heads * D;
    let w = 3 * h;
    let mut cache = PagedKvCache::new(ctx, &config(1, heads, 16, 4, 2)).unwrap();
    let mut rng = Rng::new(21);
    let both = [(Mask::Causal, AttnOptions::default()), (Mask::Full, AttnOptions::default())];
    let prefill = |cache: &mut PagedKvCache, seq: SeqId, data: &[f32]| {
        let n = data.len() / w;
        let start = cache.reserve(seq, n).unwrap().start;
        let rows = cache.step_rows(n).unwrap();
        rows.set_span(cache, seq, start).unwrap();
        step(ctx, cache, &rows, data, 0, &both)
    };
    let check = |outs: &[Vec<f32>], data: &[f32], what: &str| {
        for ((mask, _), got) in both.iter().zip(outs) {
            let want: Vec<f32> = (0..data.len() / w).flat_map(|p| attend_seq(data, heads, D, p, *mask)).collect();
            assert_close(&format!("{what} {mask:?}"), got, &want, TOL, 0.0);
        }
    };

    // A fills the pool with X (60 positions), is freed; B then gets the same pages for Y (20).
    let a = cache.add_sequence().unwrap();
    let x = rng.normal(60 * w, 1.0);
    check(&prefill(&mut cache, a, &x), &x, "A");
    let a_pages = cache.pages(a).unwrap().to_vec();
    cache.free(a).unwrap();
    let b = cache.add_sequence().unwrap();
    let y = rng.normal(20 * w, 1.0);
    let out = prefill(&mut cache, b, &y);
    assert!(cache.pages(b).unwrap().iter().all(|p| a_pages.contains(p)), "B reuses A's pages");
    check(&out, &y, "B over A's pages");

    // B restarts (as the coarse stage does each window) with 10 new positions: the full mask
    // must not see Y's positions 10..19, still in the pages.
    cache.reset(b).unwrap();
    let z = rng.normal(10 * w, 1.0);
    check(&prefill(&mut cache, b, &z), &z, "B after reset");
    // And grows again by decode-sized steps over the reused pages.
    let mut seq = z.clone();
    for _ in 0..3 {
        let t = rng.normal(w, 1.0);
        seq.extend_from_slice(&t);
        let start = cache.reserve(b, 1).unwrap().start;
        let rows = cache.step_rows(1).unwrap();
        rows.set_span(&cache, b, start).unwrap();
        let got = step(ctx, &cache, &rows, &t, 0, &[(Mask::Causal, AttnOptions::default())]);
        assert_close("B decode after reset", &got[0], &attend_seq(&seq, heads, D, start, Mask::Causal), TOL, 0.0);
    }
}
