//! The tokenizer against the ids transformers' BertTokenizerFast gave for the same sentences
//! (tests/fixtures/tokenizer/tokenizer_reference.json, made by scripts/make_fixtures.py), and
//! Bark's text window.

use std::path::Path;

use bark_wgpu::text::{normalize_whitespace, semantic_text_window, TextTokenizer, MAX_TEXT_TOKENS};
use bark_wgpu::vocab::TEXT_PAD;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer");

#[test]
fn ids_equal_transformers() {
    let tok = TextTokenizer::load(Path::new(DIR).join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(Path::new(DIR).join("tokenizer_reference.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let sentence = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(sentence).unwrap(), want, "{sentence:?}");
    }
}

#[test]
fn window_offsets_pads_and_refuses_to_cut() {
    let w = semantic_text_window(&[0, 5, 7]).unwrap();
    assert_eq!(w.len(), MAX_TEXT_TOKENS);
    assert_eq!(&w[..3], &[10_048, 10_053, 10_055]);
    assert!(w[3..].iter().all(|&id| id == TEXT_PAD));
    assert!(semantic_text_window(&vec![1; MAX_TEXT_TOKENS]).is_ok());
    let err = semantic_text_window(&vec![1; MAX_TEXT_TOKENS + 1]).unwrap_err().to_string();
    assert!(err.contains("257 tokens"), "{err}");
    assert!(semantic_text_window(&[]).is_err());
}

#[test]
fn whitespace_is_collapsed_like_the_original() {
    assert_eq!(normalize_whitespace("  Hello,\n\tworld   again "), "Hello, world again");
}

#[test]
fn missing_or_broken_tokenizer_is_an_error_naming_the_file() {
    let err = TextTokenizer::load("/nonexistent/tokenizer.json").err().unwrap().to_string();
    assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
    let bad = std::env::temp_dir().join(format!("bark-wgpu-bad-tokenizer-{}.json", std::process::id()));
    std::fs::write(&bad, "{ not json").unwrap();
    let err = TextTokenizer::load(&bad).err().unwrap().to_string();
    std::fs::remove_file(&bad).ok();
    assert!(err.contains("bark-wgpu-bad-tokenizer"), "{err}");
}
