//! The tokenizer against the ids transformers' BertTokenizerFast gave for the same sentences
//! (tests/fixtures/tokenizer/tokenizer_reference.json, made by scripts/make_fixtures.py), the
//! one built from `vocab.txt` against transformers' slow BertTokenizer
//! (tests/fixtures/tokenizer-slow, scripts/make_slow_tokenizer_fixtures.py), and Bark's text
//! window.

use std::path::{Path, PathBuf};

use bark_wgpu::text::{normalize_whitespace, semantic_text_window, TextTokenizer, MAX_TEXT_TOKENS};
use bark_wgpu::vocab::TEXT_PAD;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer");
const SLOW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer-slow");

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// A fresh directory for one test, holding `files` (name, contents).
fn scratch(test: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bark-wgpu-{test}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

fn slow_file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(SLOW).join(name)).unwrap()
}

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

#[test]
fn vocab_txt_under_each_config_equals_transformers_slow_bert_tokenizer() {
    // Cased (Bark's), uncased, lowercase keeping accents, accents stripped without lowercase or
    // CJK splitting, an empty config (BERT's defaults), and an unknown token that
    // special_tokens_map.json overrides, each on accents, CJK, Hangul, punctuation, mixed case,
    // unknown and over-long words, control characters, special tokens.
    let text = std::fs::read_to_string(Path::new(SLOW).join("reference.json")).unwrap();
    let configs: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(configs.as_array().unwrap().len(), 6);
    for (n, config) in configs.as_array().unwrap().iter().enumerate() {
        let dir = scratch(
            &format!("slow-tokenizer-{n}"),
            &[
                ("vocab.txt", slow_file("vocab.txt")),
                ("special_tokens_map.json", config["special_tokens_map"].to_string().into_bytes()),
                ("tokenizer_config.json", config["config"].to_string().into_bytes()),
            ],
        );
        let tok = TextTokenizer::load_dir(&dir).unwrap();
        for case in config["cases"].as_array().unwrap() {
            let sentence = case["text"].as_str().unwrap();
            let label = format!("{}: {sentence:?}", config["config"]);
            assert_eq!(tok.encode(sentence).unwrap(), ids(&case["ids"]), "{label}");
            assert_eq!(tok.encode_with_special_tokens(sentence).unwrap(), ids(&case["ids_with_special"]), "{label}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn a_model_directory_loads_its_tokenizer_json_else_its_vocab_txt() {
    let text = std::fs::read_to_string(Path::new(SLOW).join("reference.json")).unwrap();
    let cased: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = &cased[0]["cases"][1]; // "HELLO hello HeLLo, SUNO!": case tells the configs apart
    assert_eq!(cased[0]["config"]["do_lower_case"], false);
    // The committed directory (vocab.txt, cased config) as a directory and as its vocab.txt.
    for path in [PathBuf::from(SLOW), Path::new(SLOW).join("vocab.txt")] {
        let tok = TextTokenizer::load(&path).unwrap();
        assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), ids(&case["ids"]), "{path:?}");
    }
    // The same files as bytes (a browser's fetch).
    let config = slow_file("tokenizer_config.json");
    let tok = TextTokenizer::from_vocab_bytes("vocab.txt", &slow_file("vocab.txt"), Some(&config), None).unwrap();
    assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), ids(&case["ids"]));
    // Without a config, BERT's defaults lowercase.
    let tok = TextTokenizer::from_vocab_bytes("vocab.txt", &slow_file("vocab.txt"), None, None).unwrap();
    assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), ids(&cased[1]["cases"][1]["ids"]));
    // Beside a tokenizer.json, an uncased tokenizer_config.json is not used: the cased
    // tokenizer.json is.
    let json = std::fs::read(Path::new(DIR).join("tokenizer.json")).unwrap();
    let uncased = br#"{"do_lower_case": true}"#.to_vec();
    let dir = scratch(
        "tokenizer-both",
        &[("tokenizer.json", json), ("vocab.txt", slow_file("vocab.txt")), ("tokenizer_config.json", uncased.clone())],
    );
    let tok = TextTokenizer::load_dir(&dir).unwrap();
    assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), ids(&case["ids"]));
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let lower = TextTokenizer::load_dir(&dir).unwrap().encode(case["text"].as_str().unwrap()).unwrap();
    assert_eq!(lower, ids(&cased[1]["cases"][1]["ids"]));
    assert_ne!(lower, ids(&case["ids"]));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_directory_without_a_usable_tokenizer_is_one_sentence_naming_the_file() {
    let empty = scratch("tokenizer-none", &[("config.json", b"{}".to_vec())]);
    let err = TextTokenizer::load_dir(&empty).err().unwrap().to_string();
    assert!(err.contains("tokenizer-none") && err.contains("tokenizer.json") && err.contains("vocab.txt"), "{err}");
    let vocab = slow_file("vocab.txt");
    for (name, config, needle) in [
        ("tokenizer-bad-flag", r#"{"do_lower_case": "yes"}"#, "do_lower_case"),
        ("tokenizer-bad-json", "{ not json", "tokenizer_config.json"),
        ("tokenizer-no-unk", r#"{"unk_token": "<unk>"}"#, "<unk>"),
    ] {
        let dir = scratch(name, &[("vocab.txt", vocab.clone()), ("tokenizer_config.json", config.as_bytes().to_vec())]);
        let err = TextTokenizer::load_dir(&dir).err().unwrap().to_string();
        assert!(err.contains(name) && err.contains(needle), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
    let dir = scratch("tokenizer-not-utf8", &[("vocab.txt", vec![b'[', 0xff, 0xfe, b'\n'])]);
    let err = TextTokenizer::load_dir(&dir).err().unwrap().to_string();
    assert!(err.contains("vocab.txt") && err.contains("UTF-8"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&empty).ok();
}
