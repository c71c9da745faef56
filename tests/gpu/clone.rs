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

mod from_recording {
    //! Cloning from a recording alone (HuBERT + quantizer + codec encoder) against the reference
    //! pipeline: tests/fixtures/clone, made by scripts/make_clone_fixtures.py.

    use std::path::Path;

    use bark_wgpu::audio::read_audio;
    use bark_wgpu::generate::{Bark, LoadOptions, VoiceCloner};
    use bark_wgpu::voice::VoicePrompt;

    use super::MODEL;

    pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clone");
    pub const HUBERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hubert-tiny");

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(FIXTURES).join(name)
    }

    fn cloner(bark: &Bark, quantizer: &str) -> bark_wgpu::Result<VoiceCloner> {
        VoiceCloner::load(bark.context(), Path::new(MODEL), Path::new(HUBERT), &fixture(quantizer))
    }

    #[test]
    fn stereo_recording_gives_the_reference_pipelines_prompt() {
        let bark = Bark::load(MODEL, &LoadOptions::default()).unwrap();
        let cloner = cloner(&bark, "quantizer.pth").unwrap();
        let want = VoicePrompt::load_npz(fixture("reference.npz")).unwrap();
        let audio = read_audio(fixture("recording.wav")).unwrap();
        assert_eq!((audio.channels.len(), audio.sample_rate, audio.frames()), (2, 22_050, 44_100));
        // Tokens and codes exact: the fixture script checks every decision leads its runner-up
        // (>= 1e-3 in logits, >= 1e-4 in codebook distance) and survives either torchaudio resampler.
        let got = bark.clone_voice_from(&cloner, &audio.mono(), audio.sample_rate).unwrap();
        assert_eq!(got.semantic, want.semantic, "semantic prompt");
        assert_eq!(got.fine, want.fine, "fine prompt");
        assert_eq!(got.coarse, want.coarse, "coarse prompt");
        // The FLAC of the same samples decodes to the same channels, so to the same prompt.
        assert_eq!(read_audio(fixture("recording.flac")).unwrap(), audio);
    }

    #[test]
    fn bad_recordings_and_a_quantizer_for_another_hubert_are_refused() {
        let bark = Bark::load(MODEL, &LoadOptions::default()).unwrap();
        let err =
            cloner(&bark, "quantizer_wide.pth").err().expect("a 24-wide quantizer on a 32-wide HuBERT").to_string();
        assert!(err.contains("24") && err.contains("32"), "{err}");
        let cloner = cloner(&bark, "quantizer.pth").unwrap();
        let tone = |secs: f64, amp: f32| -> Vec<f32> {
            (0..(secs * 16_000.0) as usize).map(|i| amp * (i as f32 * 0.05).sin()).collect()
        };
        let check = |audio: &[f32], needle: &str| {
            let err = cloner.clone_voice(audio, 16_000).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        };
        check(&tone(0.99, 0.5), "1 to 60 s");
        check(&tone(60.01, 0.5), "1 to 60 s");
        check(&[], "1 to 60 s");
        // Below -60 dBFS is silence; just above it is not.
        check(&tone(1.5, 0.9e-3), "silent");
        assert!(cloner.clone_voice(&tone(1.5, 1.1e-3), 16_000).is_ok());
        let mut nan = tone(1.5, 0.5);
        nan[7] = f32::NAN;
        check(&nan, "NaN");
        assert!(cloner.clone_voice(&tone(1.5, 0.5), 0).is_err());
    }
}
