//! Voice cloning from a recording: the codec half equals transformers' EnCodec codes, the
//! semantic half comes from the text, and the prompt drives a generation.

use std::path::Path;

use bark_wgpu::audio::resample;
use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::weights::WeightSource;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

#[test]
fn clone_from_audio_gives_transformers_codes_and_a_usable_prompt() {
    let r = WeightSource::open(Path::new(MODEL).join("reference.safetensors")).unwrap();
    let audio = r.to_f32("codec.encode.audio").unwrap();
    let want: Vec<u32> = r.to_i64("codec.encode.codes").unwrap().into_iter().map(|c| c as u32).collect();
    let bark = Bark::load(MODEL, &LoadOptions::default()).unwrap();
    let opts = GenerateOptions::greedy();
    let p = bark.clone_voice(MODEL, &audio, 24_000, "Hello, my name is Suno.", &opts).unwrap();
    // (1, 8, 7) codes: the fine prompt is exactly transformers' encode, the coarse its first 2.
    assert_eq!(p.fine.concat(), want);
    assert_eq!(p.coarse, p.fine[..2].to_vec());
    // 7 frames at 75 Hz -> round(7 * 49.9 / 75) = 5 semantic tokens at most.
    assert!((2..=5).contains(&p.semantic.len()), "{} semantic tokens", p.semantic.len());
    assert!(p.semantic.iter().all(|&t| t < 10_000));
    // The same recording at 16 kHz resamples back to 24 kHz and still makes a valid prompt.
    let at16 = resample(&audio, 24_000, 16_000).unwrap();
    let p16 = bark.clone_voice(MODEL, &at16, 16_000, "Hello, my name is Suno.", &opts).unwrap();
    assert_eq!(p16.fine[0].len(), 7);
}

#[test]
fn clone_rejects_empty_or_too_short_recordings() {
    let bark = Bark::load(MODEL, &LoadOptions::default()).unwrap();
    let opts = GenerateOptions::greedy();
    assert!(bark.clone_voice(MODEL, &[], 24_000, "hi", &opts).is_err());
    let err = bark.clone_voice(MODEL, &[0.1; 100], 24_000, "hi", &opts).unwrap_err().to_string();
    assert!(err.contains("frame"), "{err}");
    assert!(bark.clone_voice(MODEL, &[0.1; 2000], 24_000, "  ", &opts).is_err());
}
