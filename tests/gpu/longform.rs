//! Long-form generation: the splitter with fake token counters (no GPU), then
//! `Bark::generate_long` on the tiny fixture model (two pieces at most per test: the fine stage
//! costs seconds per piece on a software GPU).

use crate::common;

use std::path::Path;
use std::sync::OnceLock;

use bark_wgpu::generate::longform::{piece_seed, sentences, split_text};
use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::text::normalize_whitespace;
use bark_wgpu::{Error, Result};
use common::ctx;

fn words(t: &str) -> Result<usize> {
    Ok(t.split_whitespace().count())
}

fn chars(t: &str) -> Result<usize> {
    Ok(t.chars().filter(|c| !c.is_whitespace()).count())
}

#[test]
fn sentences_end_at_punctuation_before_whitespace_and_at_cjk_marks() {
    let got = sentences("  Hello there.  How are you?\nFine!Pi is 3.14 today. 你好。我很好！Done");
    let want = ["Hello there.", "How are you?", "Fine!Pi is 3.14 today.", "你好。", "我很好！", "Done"];
    assert_eq!(got, want);
}

#[test]
fn sentences_are_packed_greedily_under_the_budget() {
    let text = "One two three. Four five. Six seven eight nine. Ten.";
    assert_eq!(split_text(text, 5, words).unwrap(), ["One two three. Four five.", "Six seven eight nine. Ten."]);
    assert_eq!(split_text(text, 4, words).unwrap(), ["One two three.", "Four five.", "Six seven eight nine.", "Ten."]);
    // A budget that holds everything gives one piece: the normalised text.
    assert_eq!(split_text(" One  two.\n", 256, words).unwrap(), ["One two."]);
}

#[test]
fn an_over_long_sentence_is_cut_at_clauses_then_words_without_losing_text() {
    let text = "a b c, d e f g h; i j k l m n o p q r";
    let pieces = split_text(text, 4, words).unwrap();
    assert_eq!(pieces, ["a b c,", "d e f g", "h;", "i j k l", "m n o p", "q r"]);
    assert_eq!(pieces.join(" "), normalize_whitespace(text));
    // Full-width clause marks cut without a following space.
    let pieces = split_text("一二三，四五六；七八", 4, chars).unwrap();
    assert_eq!(pieces, ["一二三，", "四五六；", "七八"]);
}

#[test]
fn a_word_over_the_budget_is_cut_at_character_boundaries() {
    let pieces = split_text("abcdefghij klm.", 4, chars).unwrap();
    assert_eq!(pieces, ["abcd", "efgh", "ij", "klm."]);
    let text = "日本語のテキストです";
    let pieces = split_text(text, 3, chars).unwrap();
    assert!(pieces.iter().all(|p| chars(p).unwrap() <= 3), "{pieces:?}");
    assert_eq!(pieces.concat(), text);
}

#[test]
fn splitter_errors_are_typed() {
    assert!(matches!(split_text(" \n ", 8, words), Err(Error::Invalid(_))));
    assert!(matches!(split_text("a b", 0, words), Err(Error::Invalid(_))));
    // A character the counter puts over the budget alone cannot be split: an error, not a loss.
    assert!(matches!(split_text("ab", 1, |t| Ok(2 * t.len())), Err(Error::Invalid(_))));
    let failing = |_: &str| -> Result<usize> { Err(Error::Invalid("counter failed".into())) };
    assert!(matches!(split_text("a b", 2, failing), Err(Error::Invalid(m)) if m == "counter failed"));
}

#[test]
fn piece_seeds_keep_the_first_and_differ_after() {
    let seeds: Vec<u64> = (0..6).map(|i| piece_seed(42, i)).collect();
    assert_eq!(seeds[0], 42);
    for (i, a) in seeds.iter().enumerate() {
        assert!(seeds[i + 1..].iter().all(|b| b != a), "{seeds:?}");
    }
}

fn bark() -> &'static Bark {
    static BARK: OnceLock<Bark> = OnceLock::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    BARK.get_or_init(|| Bark::load_on(ctx(), dir, &LoadOptions::default()).unwrap())
}

/// A sentence of at least `tokens` tokens (and well under 256).
fn long_sentence(b: &Bark, tokens: usize) -> String {
    let mut s = String::from("The quick brown fox jumps over the lazy dog");
    while b.count_tokens(&s).unwrap() < tokens {
        s.push_str(", and the quick brown fox jumps again");
    }
    s + "."
}

#[test]
fn long_text_is_generated_piece_by_piece_with_silence_between() {
    let b = bark();
    let text = format!("{} {}", long_sentence(b, 150), long_sentence(b, 140));
    assert!(b.count_tokens(&text).unwrap() > 256);
    // `generate` itself keeps refusing text over the window.
    match b.generate(&text, &GenerateOptions::greedy(), None) {
        Err(Error::Invalid(m)) => assert!(m.contains("at most 256"), "{m}"),
        other => panic!("expected the window error, got {other:?}"),
    }
    // Sampled, so the per-piece seeds matter; no early EOS so each piece is long enough to
    // be the next one's prompt.
    let opts = GenerateOptions { max_semantic_tokens: 4, min_eos_p: None, seed: 5, ..GenerateOptions::default() };
    // Streamed (generate_long is generate_stream without a listener): a chunk per piece, in
    // order, the silence leading every chunk but the first; joined, they are the audio.
    let mut chunks: Vec<Vec<f32>> = Vec::new();
    let long = b
        .generate_stream(&text, &opts, None, |c| {
            chunks.push(c.to_vec());
            Ok(())
        })
        .unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks.concat(), long.audio.samples);
    assert_eq!(long.pieces.len(), 2);
    assert_eq!(long.pieces.join(" "), text);
    let [g0, g1] = [&long.generations[0], &long.generations[1]];
    let (n0, n1) = (g0.audio.samples.len(), g1.audio.samples.len());
    assert!(n0 > 0 && n1 > 0);
    assert_eq!(long.audio.sample_rate, 24_000);
    assert_eq!(long.audio.samples.len(), n0 + 6000 + n1);
    assert_eq!(&long.audio.samples[..n0], &g0.audio.samples[..]);
    assert!(long.audio.samples[n0..n0 + 6000].iter().all(|&s| s == 0.0));
    assert_eq!(&long.audio.samples[n0 + 6000..], &g1.audio.samples[..]);
    // Repeatable: each piece regenerates exactly from its documented seed and prompt (the first
    // with no prompt, the second continuing from the first's output).
    assert_eq!(&b.generate(&long.pieces[0], &opts, None).unwrap(), g0);
    let prompt = g0.voice_prompt().unwrap();
    assert!(prompt.semantic.len() >= 2, "the first piece is too short to test the carried prompt");
    let opts1 = GenerateOptions { seed: piece_seed(5, 1), ..opts };
    assert_eq!(&b.generate(&long.pieces[1], &opts1, Some(&prompt)).unwrap(), g1);
    assert_eq!(long.voice_prompt().unwrap(), g1.voice_prompt().unwrap());
}

#[test]
fn a_listener_that_fails_stops_the_stream_after_its_piece() {
    let b = bark();
    let text = format!("{} {}", long_sentence(b, 150), long_sentence(b, 140));
    let opts = GenerateOptions { max_semantic_tokens: 2, ..GenerateOptions::greedy() };
    let mut heard = 0;
    let out = b.generate_stream(&text, &opts, None, |_| {
        heard += 1;
        Err(Error::Invalid("the listener left".into()))
    });
    assert!(matches!(out, Err(Error::Invalid(m)) if m == "the listener left"));
    assert_eq!(heard, 1, "the second piece was generated for nobody");
}

#[test]
fn short_text_generates_exactly_as_generate() {
    let b = bark();
    let opts = GenerateOptions { max_semantic_tokens: 4, ..GenerateOptions::greedy() };
    let text = "Hello, my name is Suno. And, uh, I like pizza!";
    let long = b.generate_long(text, &opts, None).unwrap();
    let one = b.generate(text, &opts, None).unwrap();
    assert_eq!(long.pieces, [text]);
    assert_eq!(long.generations.len(), 1);
    assert_eq!(long.generations[0], one);
    assert_eq!(long.audio, one.audio);
}
