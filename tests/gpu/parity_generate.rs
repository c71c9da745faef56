//! Bark's generation stages against transformers' greedy `BarkModel.generate` on the tiny
//! fixture (tests/fixtures/tiny/generation.*, made by scripts/make_fixtures.py): semantic,
//! coarse and fine tokens equal, audio close, without and with a voice prompt, from both
//! checkpoint files; plus the seeded sampler, early stopping, the token cap and bad input.

use crate::common;

use std::path::Path;
use std::sync::OnceLock;

use bark_wgpu::generate::{Bark, CoarseMask, GenerateOptions, LoadOptions, ModelFiles, VoicePrompt};
use common::generation::{dir, fixture, ids, voice};
use common::{assert_close, ctx};

fn load(file: &str) -> Bark {
    let opts = LoadOptions {
        f16: false,
        tokenizer: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json")),
        weights: Some(dir().join(file)),
    };
    Bark::load_on(ctx(), dir(), &opts).unwrap()
}

/// The safetensors model, loaded once for the tests that do not compare files.
fn bark() -> &'static Bark {
    static BARK: OnceLock<Bark> = OnceLock::new();
    BARK.get_or_init(|| load("model.safetensors"))
}

fn text() -> String {
    let json = std::fs::read_to_string(dir().join("generation.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["text"].as_str().unwrap().to_string()
}

fn semantic_cap() -> usize {
    let json = std::fs::read_to_string(dir().join("generation.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["semantic_max_new_tokens"].as_u64().unwrap() as usize
}

fn greedy() -> GenerateOptions {
    GenerateOptions { max_semantic_tokens: semantic_cap(), ..GenerateOptions::greedy() }
}

fn check_greedy(b: &Bark, file: &str, with_voice_only: bool) {
    let v = voice();
    let cases = [("greedy", None), ("prompted", Some(&v))];
    for (case, voice) in cases.into_iter().filter(|(_, v)| v.is_some() || !with_voice_only) {
        let g = b.generate(&text(), &greedy(), voice).unwrap();
        assert_eq!(g.semantic, ids(&format!("{case}.semantic")), "{file} {case}: semantic tokens");
        assert_eq!(g.coarse, ids(&format!("{case}.coarse")), "{file} {case}: coarse tokens");
        assert_eq!(g.fine.concat(), ids(&format!("{case}.fine")), "{file} {case}: fine codes");
        let want = fixture().to_f32(&format!("{case}.audio")).unwrap();
        // The codes are equal, so only the codec's f32 arithmetic differs from transformers'
        // (reduction order over ~15 convolutions and an LSTM): a few 1e-7 per layer. 1e-4 is
        // the codec parity bound (tests/parity_codec.rs).
        assert_close(&format!("{file} {case}: audio"), &g.audio.samples, &want, 1e-4, 0.0);
        assert_eq!(g.audio.sample_rate, 24_000);
    }
}

#[test]
fn greedy_equals_transformers_safetensors() {
    check_greedy(bark(), "model.safetensors", false);
}

#[test]
fn greedy_equals_transformers_pytorch_bin() {
    // tests/parity_gpt.rs and parity_codec.rs show both files give bit-identical models, so the
    // .bin runs the voiced case only (it takes every history path); the fine stage's 1024-frame
    // windows cost seconds per run on a software rasteriser.
    check_greedy(&load("pytorch_model.bin"), "pytorch_model.bin", true);
}

#[test]
fn a_model_loaded_from_memory_equals_transformers() {
    // What a browser does: every file fetched, nothing read from disk by the loader; the
    // voice prompt too.
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    let files = ModelFiles {
        config: String::from_utf8(read(dir().join("config.json"))).unwrap(),
        tokenizer: read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json")),
        weights: read(dir().join("pytorch_model.bin")),
        weights_name: "pytorch_model.bin".into(),
    };
    let b = Bark::load_files(ctx(), files.clone(), &LoadOptions::default()).unwrap();
    let npz = std::env::temp_dir().join(format!("bark-wgpu-memory-voice-{}.npz", std::process::id()));
    voice().save_npz(&npz).unwrap();
    let bytes = read(npz.clone());
    std::fs::remove_file(&npz).unwrap();
    assert_eq!(VoicePrompt::from_npz_bytes("voice.npz", &bytes).unwrap(), voice());
    assert!(VoicePrompt::from_npz_bytes("voice.npz", b"PK no zip").is_err());
    check_greedy(&b, "pytorch_model.bin from memory", true);
    let broken = ModelFiles { config: "{".into(), ..files.clone() };
    let err = Bark::load_files(ctx(), broken, &LoadOptions::default()).err().expect("a bad config.json");
    assert!(err.to_string().contains("config.json"), "{err}");
    let broken = ModelFiles { tokenizer: b"[]".to_vec(), ..files };
    let err = Bark::load_files(ctx(), broken, &LoadOptions::default()).err().expect("a bad tokenizer.json");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn text_window_equals_the_processor_ids() {
    let input = ids("input_ids");
    let mask = ids("attention_mask");
    let want: Vec<u32> = input.iter().zip(&mask).map(|(&id, &m)| if m == 1 { id + 10_048 } else { 129_595 }).collect();
    assert_eq!(bark().text_window(&text()).unwrap(), want);
    // Whitespace is normalised as the original does.
    let spaced = format!("  {}\n", text().replace(' ', "  \t"));
    assert_eq!(bark().text_window(&spaced).unwrap(), want);
}

#[test]
fn empty_text_is_an_error() {
    for t in ["", "   \n\t "] {
        assert!(bark().semantic(t, &greedy(), None).is_err(), "{t:?}");
        assert!(bark().generate(t, &greedy(), None).is_err(), "{t:?}");
    }
}

#[test]
fn seeded_sampling_repeats_and_depends_on_the_seed() {
    let b = bark();
    let opts = GenerateOptions { max_semantic_tokens: 16, seed: 11, ..GenerateOptions::default() };
    let a = b.generate(&text(), &opts, None).unwrap();
    // Stage by stage, with the same seed, repeats the whole exactly (each stage draws from its
    // own random stream). This is also the repeat check: the fine stage alone costs seconds on
    // a software rasteriser, so the test does not run the whole twice.
    let sem = b.semantic(&text(), &opts, None).unwrap();
    assert_eq!(sem, a.semantic, "same seed, same device, other semantic tokens");
    let coarse = b.coarse(&sem, &opts, None).unwrap();
    assert_eq!(coarse, a.coarse, "same seed, same device, other coarse tokens");
    let fine = b.fine(&coarse, &opts, None).unwrap();
    assert_eq!(fine, a.fine, "same seed, same device, other fine codes");
    assert_eq!(b.decode(&fine).unwrap(), a.audio);
    // Another seed samples other tokens (random weights spread the probability over ~10^4 ids).
    let other = b.semantic(&text(), &GenerateOptions { seed: 12, ..opts.clone() }, None).unwrap();
    assert_ne!(other, a.semantic);
    // And sampling is not greedy decoding.
    assert_ne!(a.semantic[..], ids("greedy.semantic")[..a.semantic.len()]);
}

#[test]
fn min_eos_p_stops_at_the_first_step() {
    // With a threshold far below the EOS probability (about 1e-4 for random weights) the
    // prioritiser forces EOS at once, under both rules; without it the fixture shows no EOS.
    for greedy_run in [true, false] {
        let base = if greedy_run { GenerateOptions::greedy() } else { GenerateOptions::default() };
        let opts = GenerateOptions { min_eos_p: Some(1e-9), max_semantic_tokens: 8, ..base };
        assert_eq!(bark().semantic(&text(), &opts, None).unwrap(), [10_000], "greedy {greedy_run}");
    }
    // A semantic output of EOS alone gives no coarse tokens and no audio.
    let g = bark().coarse(&[10_000], &greedy(), None).unwrap();
    assert!(g.is_empty());
    let fine = bark().fine(&g, &greedy(), None).unwrap();
    assert_eq!(fine.len(), 8);
    assert!(bark().decode(&fine).unwrap().samples.is_empty());
}

#[test]
fn the_token_cap_is_respected_and_checked() {
    let b = bark();
    let opts = GenerateOptions { max_semantic_tokens: 5, ..GenerateOptions::greedy() };
    assert_eq!(b.semantic(&text(), &opts, None).unwrap(), ids("greedy.semantic")[..5]);
    for cap in [0, 769] {
        let opts = GenerateOptions { max_semantic_tokens: cap, ..GenerateOptions::greedy() };
        assert!(b.semantic(&text(), &opts, None).is_err(), "cap {cap}");
    }
}

#[test]
fn original_coarse_mask_keeps_codebook_one_in_range() {
    let b = bark();
    let sem = ids("greedy.semantic");
    let theirs = ids("greedy.coarse");
    // transformers' mask lets codebook-1 steps pick ids past 12047 (the fixture does).
    assert!(theirs.iter().skip(1).step_by(2).any(|&id| id >= 12_048));
    let opts = GenerateOptions { coarse_mask: CoarseMask::Original, ..greedy() };
    let ours = b.coarse(&sem, &opts, None).unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (i, &id) in ours.iter().enumerate() {
        let range = if i % 2 == 0 { 10_000..11_024 } else { 11_024..12_048 };
        assert!(range.contains(&id), "token {i} = {id}");
    }
}

#[test]
fn bad_voices_and_codes_are_errors() {
    let b = bark();
    let good = voice();
    good.validate().unwrap();
    let mut v = good.clone();
    v.semantic[0] = 10_000;
    assert!(b.semantic(&text(), &greedy(), Some(&v)).is_err());
    let mut v = good.clone();
    v.coarse[1].pop();
    assert!(v.validate().is_err());
    let mut v = good.clone();
    v.fine[3][0] = 1024;
    assert!(b.fine(&ids("greedy.coarse"), &greedy(), Some(&v)).is_err());
    let mut v = good.clone();
    v.fine.pop();
    assert!(v.validate().is_err());
    // One semantic token is a valid prompt file but too short to condition generation on.
    let mut v = good;
    v.semantic.truncate(1);
    assert!(v.validate().is_ok());
    assert!(b.semantic(&text(), &greedy(), Some(&v)).is_err());
    assert!(b.coarse(&ids("greedy.semantic"), &greedy(), Some(&v)).is_err());
    // Codes out of range or of the wrong shape.
    assert!(b.coarse(&[10_001], &greedy(), None).is_err());
    assert!(b.fine(&[10_000, 11_024, 10_000], &greedy(), None).is_err());
    assert!(b.fine(&[5, 11_024], &greedy(), None).is_err());
    assert!(b.decode(&vec![vec![1024; 3]; 8]).is_err());
    assert!(b.decode(&vec![vec![0; 3]; 7]).is_err());
}

#[test]
fn a_long_suno_preset_equals_transformers() {
    // de_speaker_7 of Suno's bark 0.1.5 (tests/fixtures/voices/suno; reference made by
    // scripts/make_preset_fixtures.py with transformers reading the same .npz): coarse in Fortran
    // order, 731 semantic tokens and 1098 frames, longer than every history window (semantic 256,
    // coarse 630, fine 512), so it is read as NumPy reads it and cut where transformers cuts it.
    let suno = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/voices/suno");
    let json = std::fs::read_to_string(suno.join("parity.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let voice = VoicePrompt::load_npz(suno.join(json["preset"].as_str().unwrap())).unwrap();
    assert!(voice.semantic.len() > 256 && voice.frames() > 630, "the preset must outgrow every window");
    let want = bark_wgpu::weights::WeightSource::open(suno.join("parity.safetensors")).unwrap();
    let ids = |name: &str| -> Vec<u32> {
        want.to_i64(name).unwrap().into_iter().map(|v| u32::try_from(v).unwrap()).collect()
    };
    let cap = json["semantic_max_new_tokens"].as_u64().unwrap() as usize;
    let opts = GenerateOptions { max_semantic_tokens: cap, ..GenerateOptions::greedy() };
    let g = bark().generate(json["text"].as_str().unwrap(), &opts, Some(&voice)).unwrap();
    assert_eq!(g.semantic, ids("semantic"), "semantic tokens");
    assert_eq!(g.coarse, ids("coarse"), "coarse tokens");
    assert_eq!(g.fine.concat(), ids("fine"), "fine codes");
    // Equal codes leave only the codec's f32 arithmetic: the codec parity bound, as above.
    assert_close("suno preset: audio", &g.audio.samples, &want.to_f32("audio").unwrap(), 1e-4, 0.0);
}
