//! HuBERT and the semantic quantizer against transformers and torch (tests/fixtures/hubert-tiny,
//! made by scripts/make_hubert_fixtures.py): hidden states 0 and 9 of two waveforms, and the
//! quantizers' tokens (both versions) from the reference features and from ours.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bark_wgpu::gpu::Family;
use bark_wgpu::model::hubert::{Hubert, HubertConfig, QUANTIZER_LAYER};
use bark_wgpu::model::quantizer::{audio_to_tokens, Quantizer};
use bark_wgpu::weights::{WeightSource, Weights};
use bark_wgpu::{Context, ContextOptions, DType, Graph, Tensor};
use common::{assert_close, ctx, max_abs_diff};
use safetensors::tensor::TensorView;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hubert-tiny")
}

fn reference() -> &'static WeightSource {
    static R: OnceLock<WeightSource> = OnceLock::new();
    R.get_or_init(|| WeightSource::open(dir().join("reference.safetensors")).unwrap())
}

fn f32s(name: &str) -> Vec<f32> {
    reference().to_f32(name).unwrap()
}

fn tokens(name: &str) -> Vec<u32> {
    reference().to_i64(name).unwrap().into_iter().map(|v| u32::try_from(v).unwrap()).collect()
}

fn hubert(layer: usize) -> Hubert {
    Hubert::load(ctx(), dir(), layer).unwrap()
}

// Everything is f32 on both sides; the results differ by summation order (conv reductions of
// 32 * 3 terms, the 128-term grouped positional conv at base size, attention over every frame)
// and GELU's erf approximation (1.5e-7), each ~1e-6 relative, renormalised by every LayerNorm
// to O(1) values. 1e-4 leaves a wide margin over that and is far below what a wrong padding,
// group, norm or layer index changes (O(0.1) or more).
const TOL: f32 = 1e-4;

#[test]
fn hidden_states_match_transformers() {
    let model = hubert(QUANTIZER_LAYER);
    for (wave, want, frames) in [("wave", "hidden9", 49), ("wave_short", "hidden9_short", 15)] {
        let samples = f32s(wave);
        assert_eq!(model.config().frames(samples.len()), frames, "{wave}");
        let (got, t) = model.forward(ctx(), &samples).unwrap();
        assert_eq!(t, frames, "{wave}: frames");
        let want = f32s(want);
        eprintln!("{wave}: hidden_states[9] max |diff| {}", max_abs_diff(&got, &want));
        assert_close(&format!("{wave} hidden_states[9]"), &got, &want, TOL, 0.0);
    }
}

#[test]
fn legacy_weight_norm_names_load_the_same_model() {
    // pytorch_model.bin names the positional conv's weight norm weight_g / weight_v (g of shape
    // (1, 1, K): dim=2), as hubert-base-ls960's file does; model.safetensors uses
    // parametrizations.weight.original0/1. Both must give the same features.
    let cfg = HubertConfig::load(dir()).unwrap();
    let w = Weights::open(dir().join("pytorch_model.bin")).unwrap();
    assert!(w.contains("encoder.pos_conv_embed.conv.weight"));
    let model = Hubert::from_weights(ctx(), cfg, &w, QUANTIZER_LAYER).unwrap();
    let (got, _) = model.forward(ctx(), &f32s("wave")).unwrap();
    assert_close("hidden_states[9] from pytorch_model.bin", &got, &f32s("hidden9"), TOL, 0.0);
}

/// A context whose storage bindings hold at most 64 KiB.
fn small_bindings() -> Context {
    Context::new(&ContextOptions { max_binding_bytes: Some(64 << 10), ..Default::default() }).unwrap()
}

#[test]
fn conv_outputs_larger_than_a_binding_are_split_by_channels() {
    // At 64 KiB per binding conv 0's output (32 channels x 3199 frames x 4 bytes = 400 KiB) goes
    // in 8 blocks of 4 channels, conv 1's in 4, conv 2's in 2: the features must not change.
    let ctx = small_bindings();
    let model = Hubert::load(&ctx, dir(), QUANTIZER_LAYER).unwrap();
    // Conv dispatches: 8 blocks x 1 input, 4 x 8, 2 x 4, 1 x 2, then convs 4 to 6 and the
    // positional conv whole: 8 + 32 + 8 + 2 + 4 = 54 (8 without splitting).
    let wave = Tensor::from_f32(&ctx, &f32s("wave"), &[16_000], DType::F32).unwrap();
    let mut g = Graph::new(&ctx);
    let x = g.input(&wave);
    model.record(&mut g, x).unwrap();
    let families = g.compile().unwrap().families();
    assert_eq!(families.iter().filter(|f| **f == Some(Family::Conv1d)).count(), 54);
    let (got, _) = model.forward(&ctx, &f32s("wave")).unwrap();
    eprintln!("split convs: hidden_states[9] max |diff| {}", max_abs_diff(&got, &f32s("hidden9")));
    assert_close("hidden_states[9] with split convs", &got, &f32s("hidden9"), TOL, 0.0);
}

#[test]
fn audio_longer_than_a_binding_is_refused_before_running() {
    // At 64 KiB per binding the widest time-major rows, Q, K and V (96 values, 384 bytes), allow
    // 170 frames; the longest input of 170 frames runs, one sample more is refused, saying so.
    let ctx = small_bindings();
    let model = Hubert::load(&ctx, dir(), 1).unwrap();
    let most = model.max_samples(&ctx);
    assert_eq!((model.config().frames(most), model.config().frames(most + 1)), (170, 171));
    assert!(model.forward(&ctx, &vec![0.1; most]).is_ok());
    let err = model.forward(&ctx, &vec![0.1; most + 1]).unwrap_err().to_string();
    let secs = format!("at most {:.1} s", most as f64 / 16_000.0);
    assert!(err.contains("more than HuBERT can take") && err.contains(&secs), "{err}");
}

#[test]
fn positional_conv_and_input_norm_match_hidden_state_0() {
    // hidden_states[0] isolates the feature extractor, the projection and the positional conv.
    let (got, _) = hubert(0).forward(ctx(), &f32s("wave")).unwrap();
    assert_close("hidden_states[0]", &got, &f32s("hidden0"), TOL, 0.0);
}

#[test]
fn quantizer_tokens_are_exact() {
    let ctx = ctx();
    let features = f32s("hidden9");
    for (file, want) in [("quantizer_v0.pth", "tokens_v0"), ("quantizer_v1.pth", "tokens_v1")] {
        let q = Quantizer::load(ctx, dir().join(file)).unwrap();
        assert_eq!(q.input_size(), 32, "{file}");
        let got = q.tokens(ctx, &features, 49).unwrap();
        assert_eq!(got, tokens(want), "{file} on the reference features");
    }
    let q = Quantizer::load(ctx, dir().join("quantizer_v0.pth")).unwrap();
    assert_eq!(q.classes(), 10_000);
    assert_eq!(q.tokens(ctx, &f32s("hidden9_short"), 15).unwrap(), tokens("tokens_v0_short"));
}

#[test]
fn recording_to_tokens_end_to_end() {
    // Our features into the quantizer must give the reference's tokens too: read back, and
    // kept on the GPU in one graph.
    let ctx = ctx();
    let model = hubert(QUANTIZER_LAYER);
    let (features, frames) = model.forward(ctx, &f32s("wave")).unwrap();
    for (file, want) in [("quantizer_v0.pth", "tokens_v0"), ("quantizer_v1.pth", "tokens_v1")] {
        let q = Quantizer::load(ctx, dir().join(file)).unwrap();
        assert_eq!(q.tokens(ctx, &features, frames).unwrap(), tokens(want), "{file}");
        assert_eq!(audio_to_tokens(ctx, &model, &q, &f32s("wave")).unwrap(), tokens(want), "{file}, one graph");
    }
    let q = Quantizer::load(ctx, dir().join("quantizer_v0.pth")).unwrap();
    let short = audio_to_tokens(ctx, &model, &q, &f32s("wave_short")).unwrap();
    assert_eq!(short, tokens("tokens_v0_short"));
}

/// A quantizer checkpoint (safetensors, the .pth's names) for features of `input` values.
fn write_quantizer(path: &Path, input: usize, hidden: usize, classes: usize) {
    let tensors = crate::bench_common::shapes(&crate::bench_common::quantizer_tensors(input, hidden, classes));
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s)| {
            let bytes = vec![0u8; s.iter().product::<usize>() * 4];
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn bad_input_is_a_clear_error() {
    let ctx = ctx();
    let model = hubert(2);
    assert_eq!(model.min_samples(), 400, "HuBERT's conv stack needs 400 samples (25 ms) for a frame");
    let err = model.forward(ctx, &vec![0.1; 399]).unwrap_err().to_string();
    assert!(err.contains("399 samples") && err.contains("400"), "{err}");
    assert!(model.forward(ctx, &vec![0.1; 400]).is_ok());
    let err = model.forward(ctx, &[]).unwrap_err().to_string();
    assert!(err.contains("0 samples"), "{err}");
    let mut g = Graph::new(ctx);
    let stereo = g.tensor(&[2, 16_000], DType::F32);
    assert!(model.record(&mut g, stereo).is_err(), "two channels");

    let err = Hubert::load(ctx, dir(), 11).err().expect("layer 11 of 10").to_string();
    assert!(err.contains("10 layers"), "{err}");

    // A quantizer for other features, and a file that is not a quantizer.
    let q = Quantizer::load(ctx, dir().join("quantizer_v0.pth")).unwrap();
    let err = q.tokens(ctx, &vec![0.0; 49 * 16], 49).unwrap_err().to_string();
    assert!(err.contains("49 frames of 32"), "{err}");
    let mut g = Graph::new(ctx);
    let narrow = g.tensor(&[49, 16], DType::F32);
    let err = q.record_logits(&mut g, narrow).unwrap_err().to_string();
    assert!(err.contains("32 values") && err.contains("16"), "{err}");
    let err = Quantizer::load(ctx, dir().join("model.safetensors")).err().expect("not a quantizer").to_string();
    assert!(err.contains("lstm.weight_ih_l0"), "{err}");

    // hubert-base's quantizer (768 features) with the tiny HuBERT (32): refused before running.
    let path = std::env::temp_dir().join(format!("bark-quantizer-768-{}.safetensors", std::process::id()));
    write_quantizer(&path, 768, 8, 10);
    let q768 = Quantizer::load(ctx, &path).unwrap();
    std::fs::remove_file(&path).ok();
    let err = audio_to_tokens(ctx, &model, &q768, &f32s("wave")).unwrap_err().to_string();
    assert!(err.contains("768") && err.contains("32") && err.contains("do not belong together"), "{err}");
    let err = audio_to_tokens(ctx, &model, &q, &[0.0; 100]).unwrap_err().to_string();
    assert!(err.contains("100 samples"), "{err}");
}

/// scripts/make_hubert_fixtures.py's long_wave(): a minute of two tones and a chirp, computed in
/// f64 and rounded to f32 (the f64 sines of the two libraries may differ in the last bit, which
/// the rounding to f32 nearly always hides and which moves nothing at the tolerance).
fn long_wave() -> Vec<f32> {
    use std::f64::consts::PI;
    (0..60 * 16_000)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            let x = 0.3 * (2.0 * PI * 220.0 * t).sin()
                + 0.2 * (2.0 * PI * 1375.0 * t + 0.5).sin()
                + 0.1 * (2.0 * PI * (100.0 + 50.0 * t) * t).sin();
            x as f32
        })
        .collect()
}

#[test]
fn a_minute_of_audio_matches_transformers() {
    // The longest recording cloning takes: 2999 frames, attention over all of them.
    let ctx = ctx();
    let model = hubert(QUANTIZER_LAYER);
    let start = std::time::Instant::now();
    let (got, frames) = model.forward(ctx, &long_wave()).unwrap();
    eprintln!("a minute of audio: {frames} frames in {:?}", start.elapsed());
    assert_eq!(frames, 2999);
    let rows: Vec<usize> = (0..2999).step_by(97).chain([2998]).collect();
    let picked: Vec<f32> = rows.iter().flat_map(|&r| got[r * 32..(r + 1) * 32].iter().copied()).collect();
    assert_close("hidden_states[9] of a minute", &picked, &f32s("hidden9_long_rows"), TOL, 0.0);
    let q = Quantizer::load(ctx, dir().join("quantizer_v1.pth")).unwrap();
    assert_eq!(q.tokens(ctx, &got, frames).unwrap(), tokens("tokens_v1_long"));
}
