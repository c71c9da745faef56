//! Embedding gathers from row-split tables against a CPU reference. A gather is a copy and the
//! sums are taken in the same order as the reference (assign, then add part by part and table
//! by table), so every comparison is exact; F16 tables are compared with their f16-rounded
//! values.

use crate::common;

use std::time::Instant;

use bark_wgpu::gpu::RowSplit;
use bark_wgpu::ops::embedding::{self, NO_ROW};
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor, Val};
use common::{assert_close, ctx, Rng};
use half::f16;

/// A device whose storage bindings are at most `bytes`, so tables split into many parts.
fn small_binding_ctx(bytes: u64) -> Context {
    Context::new(&ContextOptions { max_binding_bytes: Some(bytes), ..Default::default() }).unwrap()
}

/// The values the GPU holds for `data` stored as `dtype`.
fn stored(data: &[f32], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F16 => data.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        _ => data.to_vec(),
    }
}

/// A host table and the same table on the GPU.
struct Table {
    values: Vec<f32>,
    rows: usize,
    cols: usize,
    split: RowSplit,
}

impl Table {
    fn random(ctx: &Context, rng: &mut Rng, rows: usize, cols: usize, dtype: DType) -> Table {
        let data = rng.normal(rows * cols, 1.0);
        let split = RowSplit::from_f32(ctx, &data, rows, cols, dtype).unwrap();
        Table { values: stored(&data, dtype), rows, cols, split }
    }
    /// `out[t] += row(id)`; an id past the table adds nothing.
    fn add_row(&self, out: &mut [f32], id: u32) {
        if (id as usize) < self.rows {
            let row = &self.values[id as usize * self.cols..][..self.cols];
            out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
        }
    }
    /// The reference for `embed`: a fresh output, or `acc` added to.
    fn gather(&self, ids: &[u32], acc: Option<Vec<f32>>) -> Vec<f32> {
        let mut out = acc.unwrap_or_else(|| vec![0.0; ids.len() * self.cols]);
        for (t, &id) in ids.iter().enumerate() {
            self.add_row(&mut out[t * self.cols..][..self.cols], id);
        }
        out
    }
}

/// Builds a graph with `build`, runs it and reads the value it returns. It runs twice: a
/// second run must give the same result, so the first part really assigns every row rather
/// than adding to whatever the (possibly reused) buffer held.
fn run(ctx: &Context, build: impl FnOnce(&mut Graph) -> Val) -> Vec<f32> {
    let mut g = Graph::new(ctx);
    let out = build(&mut g);
    g.keep(out);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.run().unwrap();
    plan.tensor(out).to_f32(ctx).unwrap()
}

fn ids_tensor(ctx: &Context, ids: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_u32(ctx, ids, shape).unwrap()
}

#[test]
fn small_tables_of_odd_and_even_widths() {
    let ctx = ctx();
    let mut rng = Rng::new(21);
    for dtype in [DType::F32, DType::F16] {
        for (rows, cols) in [(1, 1), (5, 2), (37, 7), (9, 64), (13, 129), (4, 300)] {
            let table = Table::random(ctx, &mut rng, rows, cols, dtype);
            assert_eq!(table.split.parts.len(), 1);
            // Every row, repeats, and ids with no row (which add zero).
            let mut ids: Vec<u32> = (0..rows as u32).collect();
            ids.extend((0..11).map(|_| rng.below(rows as u32)));
            ids.extend([rows as u32, NO_ROW, rows as u32 + 1000]);
            let t = ids_tensor(ctx, &ids, &[ids.len()]);
            let got = run(ctx, |g| {
                let i = g.input(&t);
                embedding::embed(g, i, &table.split, None).unwrap()
            });
            let want = table.gather(&ids, None);
            assert_close(&format!("{dtype:?} [{rows}, {cols}]"), &got, &want, 0.0, 0.0);
        }
    }
}

#[test]
fn a_table_split_into_many_parts_is_gathered_from_every_part() {
    let mut rng = Rng::new(22);
    for (dtype, cols) in [(DType::F32, 64), (DType::F16, 64), (DType::F16, 63), (DType::F32, 5)] {
        // About 1000 / 7.5 rows per part.
        let row_bytes = (dtype.row_words(cols) * 4) as u64;
        let ctx = small_binding_ctx(row_bytes * 133);
        let rows = 1000;
        let table = Table::random(&ctx, &mut rng, rows, cols, dtype);
        let parts = &table.split.parts;
        assert!(parts.len() >= 7, "{} parts", parts.len());
        // The first and last row of every part, then random rows and ids past the table.
        let mut ids: Vec<u32> = Vec::new();
        for (first, p) in parts {
            ids.extend([*first as u32, (*first + p.rows() - 1) as u32]);
        }
        ids.extend((0..200).map(|_| rng.below(rows as u32)));
        ids.extend([rows as u32, NO_ROW]);
        let t = ids_tensor(&ctx, &ids, &[ids.len()]);
        let got = run(&ctx, |g| {
            let i = g.input(&t);
            embedding::embed(g, i, &table.split, None).unwrap()
        });
        let want = table.gather(&ids, None);
        assert_close(&format!("{dtype:?} split x{} cols {cols}", parts.len()), &got, &want, 0.0, 0.0);
    }
}

#[test]
fn semantic_prompt_text_plus_history_plus_positions() {
    // Bark's semantic input: E(text) + E(history) at 256 positions, then E(SEMANTIC_INFER) alone,
    // plus position embeddings from past_len. Scaled down: a 3000-row vocabulary split in parts.
    let mut rng = Rng::new(23);
    for dtype in [DType::F32, DType::F16] {
        let (vocab, h, tokens) = (3000, 48, 257);
        let ctx = small_binding_ctx((dtype.row_words(h) * 4 * 400) as u64);
        let wte = Table::random(&ctx, &mut rng, vocab, h, dtype);
        let wpe = Table::random(&ctx, &mut rng, 1024, h, dtype);
        assert!(wte.split.parts.len() >= 7);
        let mut text: Vec<u32> = (0..tokens - 1).map(|_| 1000 + rng.below(2000)).collect();
        text.push(2999);
        let mut hist: Vec<u32> = (0..tokens - 1).map(|_| rng.below(1001)).collect();
        hist.push(NO_ROW);
        for past_len in [0u32, 5] {
            let (tt, th) = (ids_tensor(&ctx, &text, &[tokens]), ids_tensor(&ctx, &hist, &[tokens]));
            let got = run(&ctx, |g| {
                let (a, b) = (g.input(&tt), g.input(&th));
                let x = embedding::embed(g, a, &wte.split, None).unwrap();
                embedding::embed(g, b, &wte.split, Some(x)).unwrap();
                embedding::embed_range(g, tokens, past_len, &wpe.split, Some(x)).unwrap()
            });
            let positions: Vec<u32> = (past_len..past_len + tokens as u32).collect();
            let want = wpe.gather(&positions, Some(wte.gather(&hist, Some(wte.gather(&text, None)))));
            assert_close(&format!("semantic {dtype:?} past_len={past_len}"), &got, &want, 0.0, 0.0);
        }
    }
}

#[test]
fn fine_model_sum_of_codebook_embeddings_plus_positions() {
    let ctx = ctx();
    let mut rng = Rng::new(24);
    let (codes, n_tables, h, tokens) = (1056, 8, 40, 1024);
    for dtype in [DType::F32, DType::F16] {
        let tables: Vec<Table> = (0..n_tables).map(|_| Table::random(ctx, &mut rng, codes, h, dtype)).collect();
        let wpe = Table::random(ctx, &mut rng, 1024, h, dtype);
        // ids [tokens, 8], token-major; 1024 is the fine model's pad code.
        let ids: Vec<u32> = (0..tokens * n_tables).map(|i| if i % 97 == 0 { 1024 } else { rng.below(1024) }).collect();
        let t = ids_tensor(ctx, &ids, &[tokens, n_tables]);
        for idx in [1, 2, 7] {
            let got = run(ctx, |g| {
                let i = g.input(&t);
                let mut x = None;
                for (c, table) in tables.iter().enumerate().take(idx + 1) {
                    x = Some(embedding::embed_column(g, i, c, &table.split, x).unwrap());
                }
                embedding::embed_range(g, tokens, 0, &wpe.split, x).unwrap()
            });
            let mut want = None;
            for (c, table) in tables.iter().enumerate().take(idx + 1) {
                let column: Vec<u32> = ids.iter().skip(c).step_by(n_tables).copied().collect();
                want = Some(table.gather(&column, want));
            }
            let want = wpe.gather(&(0..tokens as u32).collect::<Vec<_>>(), want);
            assert_close(&format!("fine {dtype:?} idx={idx}"), &got, &want, 0.0, 0.0);
        }
    }
}

#[test]
fn decode_step_with_per_row_positions_reruns_without_rerecording() {
    // A batch of sequences at different positions: one token each, positions from a buffer the
    // caller rewrites between steps of the same compiled plan.
    let mut rng = Rng::new(25);
    let (vocab, h, batch) = (500, 33, 5);
    let ctx = small_binding_ctx((DType::F16.row_words(h) * 4 * 64) as u64);
    let wte = Table::random(&ctx, &mut rng, vocab, h, DType::F16);
    let wpe = Table::random(&ctx, &mut rng, 1024, h, DType::F32);
    let tokens_t = Tensor::empty(&ctx, &[batch], DType::U32).unwrap();
    let pos_t = Tensor::empty(&ctx, &[batch], DType::U32).unwrap();
    let mut g = Graph::new(&ctx);
    let (tok, pos) = (g.input(&tokens_t), g.input(&pos_t));
    let x = embedding::embed(&mut g, tok, &wte.split, None).unwrap();
    let x = embedding::embed(&mut g, pos, &wpe.split, Some(x)).unwrap();
    g.readback(x);
    let plan = g.compile().unwrap();
    for step in 0..3u32 {
        let tokens: Vec<u32> = (0..batch).map(|_| rng.below(vocab as u32)).collect();
        let positions: Vec<u32> = (0..batch as u32).map(|b| b * 200 + step * 7 + 1).collect();
        tokens_t.write_words(&ctx, &tokens).unwrap();
        pos_t.write_words(&ctx, &positions).unwrap();
        plan.run().unwrap();
        let got: Vec<f32> = bytemuck::cast_slice(&plan.read_words(x).unwrap()).to_vec();
        let want = wpe.gather(&positions, Some(wte.gather(&tokens, None)));
        assert_close(&format!("decode step {step}"), &got[..batch * h], &want, 0.0, 0.0);
    }
}

#[test]
fn check_ids_names_the_first_bad_id() {
    assert!(embedding::check_ids(&[0, 5, 9], 10).is_ok());
    assert!(embedding::check_ids(&[], 0).is_ok());
    let e = embedding::check_ids(&[0, 10, 11], 10).unwrap_err().to_string();
    assert!(e.contains("id 10 at position 1"), "{e}");
    assert!(embedding::check_ids(&[NO_ROW], 10).is_err());
}

#[test]
fn bad_tables_ids_and_outputs_are_errors() {
    let ctx = ctx();
    let mut rng = Rng::new(26);
    let table = Table::random(ctx, &mut rng, 10, 4, DType::F32);
    let mut g = Graph::new(ctx);
    let ids = g.tensor(&[3], DType::U32);
    let ids2 = g.tensor(&[3, 2], DType::U32);
    let ids_f = g.tensor(&[3], DType::F32);
    let out_bad = g.tensor(&[3, 5], DType::F32);
    let out_f16 = g.tensor(&[3, 4], DType::F16);
    assert!(embedding::embed(&mut g, ids, &table.split, None).is_ok());
    assert!(embedding::embed(&mut g, ids_f, &table.split, None).is_err());
    assert!(embedding::embed(&mut g, ids, &table.split, Some(out_bad)).is_err());
    assert!(embedding::embed(&mut g, ids, &table.split, Some(out_f16)).is_err());
    assert!(embedding::embed_column(&mut g, ids2, 1, &table.split, None).is_ok());
    assert!(embedding::embed_column(&mut g, ids2, 2, &table.split, None).is_err());
    assert!(embedding::embed_range(&mut g, 3, u32::MAX - 1, &table.split, None).is_err());

    // Parts that do not tile the rows, a wrong dtype, an empty table.
    let part = |rows: usize| Tensor::from_f32(ctx, &vec![0.5; rows * 4], &[rows, 4], DType::F32).unwrap();
    let gap = RowSplit { parts: vec![(0, part(4)), (5, part(5))], rows: 10, cols: 4, dtype: DType::F32 };
    let short = RowSplit { parts: vec![(0, part(4))], rows: 10, cols: 4, dtype: DType::F32 };
    let mislabelled = RowSplit { parts: vec![(0, part(10))], rows: 10, cols: 4, dtype: DType::F16 };
    let ints = RowSplit {
        parts: vec![(0, Tensor::from_u32(ctx, &[1; 8], &[2, 4]).unwrap())],
        rows: 2,
        cols: 4,
        dtype: DType::U32,
    };
    let empty = RowSplit { parts: vec![], rows: 0, cols: 4, dtype: DType::F32 };
    for bad in [gap, short, mislabelled, ints, empty] {
        assert!(embedding::embed(&mut g, ids, &bad, None).is_err(), "{bad:?}");
    }
    // A part over the device's binding limit.
    let small = small_binding_ctx(64);
    let mut g = Graph::new(&small);
    let ids = g.tensor(&[3], DType::U32);
    let big = embedding::as_row_split(&part(10)).unwrap();
    assert!(embedding::embed(&mut g, ids, &big, None).is_err());
    assert!(embedding::as_row_split(&Tensor::from_f32(ctx, &[1.0; 4], &[4], DType::F32).unwrap()).is_err());
}

/// A reproducible value for (row, col) that differs between neighbouring rows and columns.
fn text_value(row: usize, col: usize) -> f32 {
    ((row * 7919 + col * 104_729) % 65_521) as f32 / 65_521.0 - 0.5
}

#[test]
fn bark_sized_text_embedding_reaches_its_last_rows() {
    bark_sized_text_embedding(ctx());
}

#[test]
fn bark_sized_text_embedding_under_webgpus_default_limits() {
    // What a browser grants without asking: 128 MiB bindings, 256 MiB buffers.
    let ctx = Context::new(&ContextOptions { webgpu_limits: Some(true), ..Default::default() }).unwrap();
    let limits = ctx.device().limits();
    assert_eq!((limits.max_storage_buffer_binding_size, limits.max_buffer_size), (128 << 20, 256 << 20));
    assert_eq!(ctx.max_binding_bytes(), 128 << 20);
    bark_sized_text_embedding(&ctx);
}

fn bark_sized_text_embedding(ctx: &Context) {
    // 129,600 x 768 is 199 MB in f16 and 398 MB in f32, over the 128 MiB binding limit of
    // lavapipe and many GPUs (and WebGPU's), so the split is real there. The ids touch both
    // ends of every part and Bark's special tokens (TEXT_PAD 129595, SEMANTIC_INFER 129599).
    let (rows, cols) = (129_600, 768);
    for dtype in [DType::F16, DType::F32] {
        let t0 = Instant::now();
        let data: Vec<f32> = (0..rows * cols).map(|i| text_value(i / cols, i % cols)).collect();
        let split = RowSplit::from_f32(ctx, &data, rows, cols, dtype).unwrap();
        drop(data);
        let upload = t0.elapsed();
        let per_part = ctx.max_binding_bytes() / (dtype.row_words(cols) as u64 * 4);
        assert_eq!(split.parts.len(), rows.div_ceil(per_part as usize));
        let mut ids: Vec<u32> = vec![0, 10_048, 129_595, 129_599, NO_ROW];
        for (first, p) in &split.parts {
            ids.extend([*first as u32, (*first + p.rows() - 1) as u32]);
        }
        let t = ids_tensor(ctx, &ids, &[ids.len()]);
        let t1 = Instant::now();
        let got = run(ctx, |g| {
            let i = g.input(&t);
            embedding::embed(g, i, &split, None).unwrap()
        });
        let gather = t1.elapsed();
        let mut want = Vec::with_capacity(ids.len() * cols);
        for &id in &ids {
            let id = id as usize;
            let row = (0..cols).map(|c| if id < rows { text_value(id, c) } else { 0.0 });
            want.extend(stored(&row.collect::<Vec<_>>(), dtype));
        }
        assert_close(&format!("129600 x 768 {dtype:?}"), &got, &want, 0.0, 0.0);
        eprintln!("{dtype:?}: {} parts; build+upload {upload:?}, gather {gather:?}", split.parts.len());
    }
}
