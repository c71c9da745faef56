//! Batched generation (`Bark::*_batch`) against one-text generation on the tiny fixture model:
//! greedy outputs equal token for token in every stage, with sequences ending at different
//! steps and waiting ones joining (max_batch below the number of texts), without and with a
//! voice; seeded sampling rows equal their one-text runs; more than 16 rows per decode step;
//! bad input. Plus the reason a decode step runs its rows in groups of at most 16: `linear`'s
//! GEMV rows do not depend on the row count, its GEMM rows differ from them by a few ulp.
//!
//! Sizes stay small (a few semantic tokens, one fine window per sequence, few fine runs): the
//! fine model's 1024-frame windows are slow on a software rasteriser (BENCHMARKS.md).

use crate::common;

use std::path::Path;
use std::sync::OnceLock;

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions, VoicePrompt};
use bark_wgpu::ops::matmul::{linear, Epilogue};
use bark_wgpu::{DType, Graph, Tensor};
use common::generation::{dir, ids, rows, voice};
use common::{ctx, Rng};

fn bark() -> &'static Bark {
    static BARK: OnceLock<Bark> = OnceLock::new();
    BARK.get_or_init(|| {
        let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json");
        let opts = LoadOptions { tokenizer: Some(tokenizer), ..LoadOptions::default() };
        Bark::load_on(ctx(), dir(), &opts).unwrap()
    })
}

const TEXTS: [&str; 5] = [
    "Hi.",
    "Hello, my name is Suno.",
    "Hello, my name is Suno. [laughs] Bonjour Élodie!",
    "The quick brown fox jumps over the lazy dog, twice.",
    "One.",
];

/// Greedy with a cap of 12 tokens and an EOS threshold at which, on the fixture model, some of
/// [`TEXTS`] stop early (EOS after 10 tokens) and others run to the cap; the test checks that
/// this still holds, so the sequences of a batch do end at different steps.
fn staggered() -> GenerateOptions {
    GenerateOptions { max_semantic_tokens: 12, min_eos_p: Some(6e-5), ..GenerateOptions::greedy() }
}

fn alone_semantic(texts: &[&str], opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Vec<Vec<u32>> {
    texts.iter().map(|t| bark().semantic(t, opts, voice).unwrap()).collect()
}

#[test]
fn greedy_semantic_batch_equals_alone_as_sequences_end_and_join() {
    let b = bark();
    let opts = staggered();
    let alone = alone_semantic(&TEXTS, &opts, None);
    let lens: Vec<usize> = alone.iter().map(Vec::len).collect();
    assert!(lens.iter().any(|&n| n != lens[0]), "every text ends at the same step ({lens:?}): nothing staggers");
    // 3 rows for 5 texts: two join when the first ones end, mid-run of the others.
    for max_batch in [3, 2] {
        assert_eq!(b.semantic_batch(&TEXTS, &opts, None, max_batch).unwrap(), alone, "max_batch {max_batch}");
    }
    // With a voice (its history window in every prompt) and no early stop.
    let v = voice();
    let opts = GenerateOptions { max_semantic_tokens: 6, ..GenerateOptions::greedy() };
    let alone = alone_semantic(&TEXTS[..4], &opts, Some(&v));
    assert_eq!(b.semantic_batch(&TEXTS[..4], &opts, Some(&v), 3).unwrap(), alone, "voiced");
}

#[test]
fn more_than_sixteen_rows_decode_as_alone() {
    // 18 rows: a decode step of two row groups (16 + 2).
    let opts = GenerateOptions { max_semantic_tokens: 3, ..staggered() };
    let texts: Vec<&str> = TEXTS.iter().copied().cycle().take(18).collect();
    let alone = alone_semantic(&TEXTS, &opts, None);
    let want: Vec<Vec<u32>> = alone.iter().cycle().take(18).cloned().collect();
    assert_eq!(bark().semantic_batch(&texts, &opts, None, 18).unwrap(), want);
}

#[test]
fn f16_model_batches_equal_alone_runs() {
    // f16 weights and the f16 KV caches that go with them: rows stay independent of each other.
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json");
    let opts = LoadOptions { tokenizer: Some(tokenizer), f16: true, ..LoadOptions::default() };
    let b = Bark::load_on(ctx(), dir(), &opts).unwrap();
    let gen = GenerateOptions { max_semantic_tokens: 8, ..staggered() };
    let texts = &TEXTS[..3];
    let semantic: Vec<_> = texts.iter().map(|t| b.semantic(t, &gen, None).unwrap()).collect();
    assert_eq!(b.semantic_batch(texts, &gen, None, 2).unwrap(), semantic);
    let coarse: Vec<_> = semantic.iter().map(|s| b.coarse(s, &gen, None).unwrap()).collect();
    assert!(coarse.iter().all(|c| !c.is_empty()));
    assert_eq!(b.coarse_batch(&semantic, &gen, None, 3).unwrap(), coarse);
}

/// Semantic inputs of different lengths, including one with no coarse tokens at all: 3, 25
/// (with EOS), 45 and 0 semantic tokens give 8, 72, 134 (three windows) and 0 coarse tokens.
fn semantic_inputs() -> Vec<Vec<u32>> {
    let s = ids("greedy.semantic");
    let long: Vec<u32> = s.iter().chain(&s).copied().take(45).collect();
    let mut with_eos = s.clone();
    with_eos.push(10_000);
    vec![s[..3].to_vec(), with_eos, long, vec![10_000]]
}

#[test]
fn greedy_coarse_and_fine_batches_equal_alone() {
    let b = bark();
    let opts = GenerateOptions::greedy();
    let v = voice();
    for voice in [None, Some(&v)] {
        let sem = semantic_inputs();
        let alone: Vec<Vec<u32>> = sem.iter().map(|s| b.coarse(s, &opts, voice).unwrap()).collect();
        let lens: Vec<usize> = alone.iter().map(Vec::len).collect();
        assert_eq!(lens, [8, 72, 134, 0], "voice {}", voice.is_some());
        // 2 rows for 4 sequences: windows of different counts, joins at window boundaries.
        let batch = b.coarse_batch(&sem, &opts, voice, 2).unwrap();
        assert_eq!(batch, alone, "coarse, voice {}", voice.is_some());
    }
    // The fine stage (about a second per 1024-frame window and codebook here, so one batch):
    // two voiced sequences of different lengths in one [2, 1024, 8] run. The parity fixture's
    // coarse tokens have transformers' fine codes as the one-sequence answer.
    let short = b.coarse(&semantic_inputs()[0], &opts, Some(&v)).unwrap();
    let coarse = [ids("prompted.coarse"), short];
    let want = [rows("prompted.fine", 8), b.fine(&coarse[1], &opts, Some(&v)).unwrap()];
    assert_eq!(b.fine_batch(&coarse, &opts, Some(&v), 2).unwrap(), want);
}

#[test]
fn seeded_sampled_batch_rows_equal_alone_runs() {
    let b = bark();
    let opts = GenerateOptions { max_semantic_tokens: 8, seed: 7, ..GenerateOptions::default() };
    assert!(!opts.greedy && opts.fine_temp.is_some_and(|t| t != 1.0), "the fine stage must sample too");
    let texts = &TEXTS[..3];
    let sem_alone = alone_semantic(texts, &opts, None);
    assert_eq!(b.semantic_batch(texts, &opts, None, 2).unwrap(), sem_alone);
    let coarse_alone: Vec<_> = sem_alone.iter().map(|s| b.coarse(s, &opts, None).unwrap()).collect();
    assert_eq!(b.coarse_batch(&sem_alone, &opts, None, 2).unwrap(), coarse_alone);
    // The whole pipeline for two texts, one batch of two in every stage.
    let batch = b.generate_batch(&texts[..2], &opts, None, 2).unwrap();
    for (i, g) in batch.iter().enumerate() {
        assert_eq!(g.semantic, sem_alone[i]);
        assert_eq!(g.coarse, coarse_alone[i]);
        let fine = b.fine(&coarse_alone[i], &opts, None).unwrap();
        assert_eq!(g.fine, fine, "text {i}: fine codes");
        assert_eq!(g.audio, b.decode(&fine).unwrap(), "text {i}: audio");
    }
    // Every row draws from its own stream: two texts differ from each other.
    assert_ne!(batch[0].semantic, batch[1].semantic);
}

#[test]
fn bad_batches_are_errors() {
    let b = bark();
    let opts = GenerateOptions { max_semantic_tokens: 2, ..GenerateOptions::greedy() };
    assert!(b.semantic_batch(&["Hi."], &opts, None, 0).is_err());
    assert!(b.coarse_batch(&[vec![1, 2]], &opts, None, 0).is_err());
    assert!(b.fine_batch(&[vec![10_000, 11_024]], &opts, None, 0).is_err());
    assert!(b.generate_batch(&["Hi."], &opts, None, 0).is_err());
    // The error names the bad text.
    let e = b.semantic_batch(&["Hi.", "  "], &opts, None, 2).unwrap_err().to_string();
    assert!(e.contains("text 2") && e.contains("empty"), "{e}");
    let e = b.coarse_batch(&[vec![1], vec![10_001]], &opts, None, 2).unwrap_err().to_string();
    assert!(e.contains("sequence 2"), "{e}");
    assert!(b.fine_batch(&[vec![10_000, 11_024], vec![10_000]], &opts, None, 2).is_err());
    // No texts, no outputs.
    assert!(b.generate_batch(&[], &opts, None, 4).unwrap().is_empty());
}

/// `linear(x[..m])` for the first `m` rows of x `[300, k]` against W `[48, k]`.
fn linear_rows(x: &[f32], w: &Tensor, k: usize, m: usize) -> Vec<f32> {
    let xt = Tensor::from_f32(ctx(), &x[..m * k], &[m, k], DType::F32).unwrap();
    let mut g = Graph::new(ctx());
    let (xv, wv) = (g.input(&xt), g.input(w));
    let y = linear(&mut g, xv, wv, None, Epilogue::None, None).unwrap();
    g.keep(y);
    let plan = g.compile().unwrap();
    plan.run().unwrap();
    plan.tensor(y).to_f32(ctx()).unwrap()
}

#[test]
fn linear_rows_do_not_depend_on_the_row_count_within_gemv_or_within_gemm() {
    // Bitwise: a batched row must compute exactly what it computes alone. GEMV (m <= 16) and
    // the tiled GEMM (m > 16) each keep a row's sum order whatever m is; between the two the
    // order differs (on lavapipe row 0 differs by up to a few ulp), which is why a decode step
    // splits its rows into groups of at most 16.
    let n = 48;
    for (k, dtype) in [(64, DType::F32), (1024, DType::F32), (64, DType::F16), (30, DType::F32)] {
        let mut r = Rng::new(k as u64);
        let x = r.normal(300 * k, 1.0);
        let w = Tensor::from_f32(ctx(), &r.normal(n * k, 0.1), &[n, k], dtype).unwrap();
        let gemv = linear_rows(&x, &w, k, 16);
        for m in [1, 2, 3, 5, 9] {
            let y = linear_rows(&x, &w, k, m);
            assert!(y.iter().zip(&gemv).all(|(a, b)| a.to_bits() == b.to_bits()), "GEMV k {k} {dtype:?} m {m}");
        }
        let gemm = linear_rows(&x, &w, k, 300);
        for m in [17, 40] {
            let y = linear_rows(&x, &w, k, m);
            assert!(y.iter().zip(&gemm).all(|(a, b)| a.to_bits() == b.to_bits()), "GEMM k {k} {dtype:?} m {m}");
        }
    }
}
