//! HuBERT and the semantic quantizer at hubert-base-ls960's and the community quantizer's real
//! sizes (512 conv channels, hidden 768, 12 heads of 64, MLP 3072, positional conv kernel 128 in
//! 16 groups; LSTM 768 -> 1024, 10,000 classes) against transformers and torch, on random
//! weights this test writes from a seeded generator: 2 encoder layers (a layer adds time, not
//! kernels), 1 s of audio. scripts/make_hubert_sizes_reference.py computed the reference from
//! the same checkpoint (tests/fixtures/hubert-sizes: hidden_states[2] and the tokens).
//!
//! Regenerate the reference: `HUBERT_SIZES_CHECKPOINT=/tmp/hubert-sizes cargo test --test gpu --
//! hubert_sizes::` keeps the checkpoint there, then run the script on that directory.

use crate::bench_common;
use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bark_wgpu::model::hubert::Hubert;
use bark_wgpu::model::quantizer::Quantizer;
use bark_wgpu::weights::WeightSource;
use bench_common::{hubert_base_tensors, quantizer_tensors, safetensors_header, shapes, Init};
use common::{assert_close, ctx, max_abs_diff, Rng};

const LAYERS: usize = 2;
const SAMPLES: usize = 16_000;

/// Writes an f32 safetensors file of `tensors` (name, shape), the values of tensor i from
/// `values(i, element count)`.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>)], mut values: impl FnMut(usize, usize) -> Vec<f32>) {
    let (header, _) = safetensors_header(tensors);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    for (i, (_, shape)) in tensors.iter().enumerate() {
        let v = values(i, shape.iter().product());
        f.write_all(bytemuck::cast_slice(&v)).unwrap();
    }
    f.flush().unwrap();
}

/// A random checkpoint of `tensors`, each drawn from its own seeded generator.
fn write_random(path: &Path, tensors: &[(String, Vec<usize>, Init)], seed: u64) {
    write_safetensors(path, &shapes(tensors), |i, n| {
        let (_, shape, init) = &tensors[i];
        let fan = (n / shape[0]) as f32;
        let mut rng = Rng::new(seed * 1000 + i as u64);
        match init {
            Init::Fan => rng.normal(n, 1.0 / fan.sqrt()),
            Init::Head => rng.normal(n, 4.0 / fan.sqrt()),
            Init::One => rng.normal(n, 0.2).into_iter().map(|v| 1.0 + v).collect(),
            Init::Bias => rng.normal(n, 0.1),
            Init::Gain => rng.uniform(n, 0.5, 1.5),
        }
    });
}

const CONFIG: &str = r#"{"model_type": "hubert", "architectures": ["HubertModel"], "hidden_size": 768,
 "num_hidden_layers": 2, "num_attention_heads": 12, "intermediate_size": 3072,
 "conv_dim": [512, 512, 512, 512, 512, 512, 512], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
 "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_bias": false, "feat_extract_norm": "group",
 "feat_proj_layer_norm": true, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
 "do_stable_layer_norm": false, "layer_norm_eps": 1e-05, "hidden_act": "gelu",
 "feat_extract_activation": "gelu", "apply_spec_augment": false}"#;

/// 1 s of a tone, a chirp and noise at 16 kHz, peak ~0.8.
fn wave() -> Vec<f32> {
    let mut rng = Rng::new(99);
    let noise = rng.normal(SAMPLES, 0.1);
    (0..SAMPLES)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            0.3 * (2.0 * std::f32::consts::PI * 180.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 2400.0 * t * t).sin()
                + noise[i]
        })
        .collect()
}

/// The checkpoint directory: `$HUBERT_SIZES_CHECKPOINT` (kept), else a temporary one.
fn checkpoint() -> (PathBuf, bool) {
    match std::env::var_os("HUBERT_SIZES_CHECKPOINT") {
        Some(d) => (PathBuf::from(d), true),
        None => (std::env::temp_dir().join(format!("bark-hubert-sizes-{}", std::process::id())), false),
    }
}

#[test]
fn base_sizes_match_transformers() {
    let start = Instant::now();
    let (dir, keep) = checkpoint();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    write_random(&dir.join("model.safetensors"), &hubert_base_tensors(LAYERS), 1);
    write_random(&dir.join("quantizer.safetensors"), &quantizer_tensors(768, 1024, 10_000), 2);
    let samples = wave();
    // The script reads the input from here, so nothing depends on matching generators.
    write_safetensors(&dir.join("wave.safetensors"), &[("wave".into(), vec![SAMPLES])], |_, _| samples.clone());
    eprintln!("hubert_sizes: checkpoint written in {:?}", start.elapsed());

    let ctx = ctx();
    let model = Hubert::load(ctx, &dir, LAYERS).unwrap();
    let (features, frames) = model.forward(ctx, &samples).unwrap();
    assert_eq!(frames, 49);
    let quantizer = Quantizer::load(ctx, dir.join("quantizer.safetensors")).unwrap();
    let tokens = quantizer.tokens(ctx, &features, frames).unwrap();
    eprintln!("hubert_sizes: HuBERT and quantizer ran in {:?}", start.elapsed());

    let refs = WeightSource::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hubert-sizes/reference.safetensors"),
    )
    .unwrap();
    let want = refs.to_f32("hidden2").unwrap();
    eprintln!("hubert_sizes: hidden_states[2] max |diff| {:.2e}", max_abs_diff(&features, &want));
    // As parity_hubert: f32 on both sides, sums in another order (up to 512 * 3 and 48 * 128
    // terms here), renormalised by the LayerNorms: 1e-4.
    assert_close("hidden_states[2] at base sizes", &features, &want, 1e-4, 0.0);
    let want_tokens: Vec<u32> = refs.to_i64("tokens").unwrap().into_iter().map(|v| v as u32).collect();
    assert_eq!(tokens, want_tokens, "tokens of our features");
    // The reference features in, the reference tokens out (torch's margins were checked).
    assert_eq!(quantizer.tokens(ctx, &want, frames).unwrap(), want_tokens, "tokens of the reference features");
    if !keep {
        std::fs::remove_dir_all(&dir).ok();
    }
}
