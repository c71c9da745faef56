//! Checkpoints as other tools write them (tests/fixtures/checkpoints, made by
//! scripts/make_checkpoint_fixtures.py from the tiny model): sharded safetensors and .bin, f16 and
//! bf16 files, the fine heads stored under the other name of their tied pair. Each gives
//! transformers' greedy tokens; the shard index's mistakes are one error each.
//!
//! The weight files are committed as recipes (literal bytes, plus tensors of
//! tests/fixtures/tiny/model.safetensors rounded as torch rounds): `rebuild` puts back the exact
//! bytes the tool wrote, checked by length and checksum before anything loads them.

use std::io::Read;
use std::path::{Path, PathBuf};

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::weights::{WeightSource, Weights};
use half::{bf16, f16};
use serde_json::Value;

use super::{assert_file_err, fixture, safetensors_bytes, Scratch};
use crate::common::ctx;

/// The variant's directory as the tool wrote it, rebuilt in a scratch directory.
fn rebuild(variant: &str) -> Scratch {
    let src = fixture("checkpoints").join(variant);
    let out = Scratch::new(variant);
    let base = WeightSource::open(fixture("tiny").join("model.safetensors")).unwrap();
    let recipe: Value = serde_json::from_str(&std::fs::read_to_string(src.join("recipe.json")).unwrap()).unwrap();
    let mut literals = Vec::new();
    let zlib = std::fs::read(src.join("literals.zlib")).unwrap();
    flate2::read::ZlibDecoder::new(&zlib[..]).read_to_end(&mut literals).unwrap();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !["recipe.json", "reference.json"].contains(&name.as_str()) {
            std::fs::copy(entry.path(), out.0.join(&name)).unwrap();
        }
    }
    for (file, r) in recipe["files"].as_object().unwrap() {
        let mut bytes = Vec::new();
        for seg in r["segments"].as_array().unwrap() {
            let seg = seg.as_array().unwrap();
            if seg[0] == "lit" {
                let (at, len) = (seg[1].as_u64().unwrap() as usize, seg[2].as_u64().unwrap() as usize);
                bytes.extend_from_slice(&literals[at..at + len]);
                continue;
            }
            let name = seg[1].as_str().unwrap();
            match seg[2].as_str().unwrap() {
                "raw" | "f32" => bytes.extend_from_slice(base.bytes(name).unwrap()),
                "f16" => base.to_f32(name).unwrap().iter().for_each(|&x| bytes.extend(f16::from_f32(x).to_le_bytes())),
                "bf16" => {
                    base.to_f32(name).unwrap().iter().for_each(|&x| bytes.extend(bf16::from_f32(x).to_le_bytes()))
                }
                other => panic!("unknown segment kind {other}"),
            }
        }
        assert_eq!(bytes.len() as u64, r["len"].as_u64().unwrap(), "{variant}/{file}: length");
        assert_eq!(checksum(&bytes).to_string(), r["checksum"].as_str().unwrap(), "{variant}/{file}: checksum");
        std::fs::write(out.0.join(file), bytes).unwrap();
    }
    out
}

/// The script's checksum: sum of (byte + 1) * (offset + 1), wrapping at 2^64.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0u64, |h, (i, &b)| h.wrapping_add((b as u64 + 1).wrapping_mul(i as u64 + 1)))
}

fn reference(variant: &str) -> Value {
    let path = fixture("checkpoints").join(variant).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Loads the rebuilt variant (by directory, or one named weight file) and checks that greedy
/// generation gives transformers' tokens exactly, for every way the script loaded it.
fn check_variant(variant: &str) {
    let dir = rebuild(variant);
    let refs = reference(variant);
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json");
    let greedy = GenerateOptions {
        max_semantic_tokens: refs["semantic_max_new_tokens"].as_u64().unwrap() as usize,
        ..GenerateOptions::greedy()
    };
    let tokens = refs["tokens"].as_object().unwrap();
    assert!(!tokens.is_empty());
    for (how, want) in tokens {
        let weights: Option<PathBuf> = (how != "dir").then(|| dir.0.join(how));
        let opts = LoadOptions { f16: false, tokenizer: Some(tokenizer.clone()), weights };
        let bark = Bark::load_on(ctx(), &dir.0, &opts).unwrap_or_else(|e| panic!("{variant} {how}: {e}"));
        let g = bark.generate(refs["text"].as_str().unwrap(), &greedy, None).unwrap();
        assert_eq!(g.semantic, u32s(&want["semantic"]), "{variant} {how}: semantic tokens");
        assert_eq!(g.coarse, u32s(&want["coarse"]), "{variant} {how}: coarse tokens");
        let fine: Vec<Vec<u32>> = want["fine"].as_array().unwrap().iter().map(u32s).collect();
        assert_eq!(g.fine, fine, "{variant} {how}: fine codes");
    }
}

#[test]
fn sharded_safetensors_give_transformers_tokens() {
    check_variant("sharded-safetensors");
}

#[test]
fn sharded_pytorch_bin_gives_transformers_tokens() {
    check_variant("sharded-bin");
}

#[test]
fn f16_files_give_transformers_tokens() {
    check_variant("f16");
}

#[test]
fn bf16_files_give_transformers_tokens() {
    check_variant("bf16");
}

#[test]
fn fine_heads_stored_under_the_head_name_give_transformers_tokens() {
    check_variant("tied-heads");
}

/// Every Bark tensor of `w` equals the tiny model's, bit for bit.
fn assert_same_tensors(what: &str, w: &Weights) {
    let tiny = Weights::open(fixture("tiny").join("model.safetensors")).unwrap();
    assert_eq!(w.names().collect::<Vec<_>>(), tiny.names().collect::<Vec<_>>(), "{what}: names");
    for name in tiny.names() {
        let want: Vec<u32> = tiny.to_f32(name).unwrap().into_iter().map(f32::to_bits).collect();
        let got: Vec<u32> = w.to_f32(name).unwrap().into_iter().map(f32::to_bits).collect();
        assert!(got == want, "{what}: {name} differs");
    }
}

#[test]
fn sharded_and_renamed_checkpoints_hold_the_tiny_tensors() {
    for variant in ["sharded-safetensors", "sharded-bin", "tied-heads"] {
        let dir = rebuild(variant);
        let w = Weights::open_dir(&dir.0).unwrap();
        if variant.starts_with("sharded") {
            assert!(w.sources().len() > 1, "{variant}: {} files", w.sources().len());
            assert!(w.path().to_string_lossy().ends_with(".index.json"), "{variant}: {}", w.path().display());
        }
        assert_same_tensors(variant, &w);
    }
    // Upcast exactly: each value is the tiny value rounded once to the stored type.
    let dir = rebuild("bf16");
    for file in ["model.safetensors", "pytorch_model.bin"] {
        let w = Weights::open(dir.0.join(file)).unwrap();
        // Weight norm folds in f32 from the stored g and v, so folded weights are compared by
        // generation (above), the stored ones here.
        let tiny = Weights::open(fixture("tiny").join("model.safetensors")).unwrap();
        for name in tiny.names().filter(|n| !n.ends_with(".conv.weight")) {
            let want: Vec<f32> = tiny.to_f32(name).unwrap().into_iter().map(|x| bf16::from_f32(x).to_f32()).collect();
            assert_eq!(w.to_f32(name).unwrap(), want, "bf16 {file}: {name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shard index's mistakes, on hand-built shards

/// Two one-tensor shards `a.safetensors` (x) and `b.safetensors` (y), and an index with `map`.
fn sharded(tag: &str, map: &str) -> (Scratch, PathBuf) {
    let s = Scratch::new(tag);
    let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    for (file, name) in [("a.safetensors", "x"), ("b.safetensors", "y")] {
        let header = format!(r#"{{"{name}":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}}}"#);
        s.file(file, &safetensors_bytes(&header, &data));
    }
    let index = s.file("model.safetensors.index.json", format!(r#"{{"metadata":{{}},"weight_map":{map}}}"#).as_bytes());
    (s, index)
}

#[test]
fn a_sound_index_opens_every_shard() {
    let (_s, index) = sharded("idx-ok", r#"{"x":"a.safetensors","y":"b.safetensors"}"#);
    let w = Weights::open(&index).unwrap();
    assert_eq!(w.names().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!((w.to_f32("y").unwrap(), w.sources().len()), (vec![1.0, 2.0], 2));
    assert_eq!(Weights::open_dir(index.parent().unwrap()).unwrap().path(), index);
}

#[test]
fn index_mistakes_are_one_error_naming_the_index() {
    let cases = [
        (r#"{"x":"a.safetensors","y":"c.safetensors"}"#, vec!["shard `c.safetensors`", "missing"]),
        (r#"{"x":"a.safetensors","y":"../b.safetensors"}"#, vec!["`../b.safetensors`", "outside"]),
        (r#"{"x":"a.safetensors","y":"/tmp/b.safetensors"}"#, vec!["`/tmp/b.safetensors`", "outside"]),
        (r#"{"x":"a.safetensors","y":"b.safetensors","x":"a.safetensors"}"#, vec!["`x`", "listed twice"]),
        (r#"{"x":"b.safetensors","y":"a.safetensors"}"#, vec!["`x`", "the index says `b.safetensors`"]),
        (r#"{"x":"a.safetensors","w":"b.safetensors"}"#, vec!["`y`", "not in the index"]),
        (r#"{"x":"a.safetensors","y":"b.safetensors","z":"b.safetensors"}"#, vec!["`z`", "not in `b.safetensors`"]),
        (r#"{}"#, vec!["no tensors"]),
        (r#"[1]"#, vec!["not a checkpoint index"]),
    ];
    for (i, (map, needles)) in cases.iter().enumerate() {
        let (_s, index) = sharded(&format!("idx-bad-{i}"), map);
        let msg = assert_file_err(Weights::open(&index), &index, needles);
        assert!(!msg.contains('\n'), "{msg}");
    }
}
