//! Voice cloning from a recording at the real sizes, on random weights: hubert-base-ls960 up to
//! its 9th layer (512 conv channels, hidden 768, 12 heads, MLP 3072), GitMylo's quantizer (LSTM
//! 768 -> 1024, 10,000 classes) and EnCodec 24 kHz's encoder with 8 codebooks. Times
//! `VoiceCloner::clone_voice` on a recording at 24 kHz (so only the 16 kHz copy is resampled,
//! on the CPU) and the peak of GPU bytes over it.
//!
//! `cargo bench --bench clone` (add `--profile dev` to reuse the test build). Environment:
//! `BENCH_SECONDS` (default 10), `BENCH_RUNS` (default 3; the median is printed).

mod common;

use std::time::Instant;

use bark_wgpu::generate::VoiceCloner;
use bark_wgpu::{Context, ContextOptions};
use common::{hubert_base_tensors, quantizer_tensors, shapes, write_checkpoint, ModelSpec};

type Tensors = Vec<(String, Vec<usize>)>;

const HUBERT_CONFIG: &str = r#"{"model_type": "hubert", "hidden_size": 768, "num_hidden_layers": 9,
 "num_attention_heads": 12, "intermediate_size": 3072, "conv_bias": false, "feat_extract_norm": "group",
 "feat_proj_layer_norm": true, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
 "do_stable_layer_norm": false, "layer_norm_eps": 1e-05, "hidden_act": "gelu"}"#;

/// EnCodec 24 kHz's encoder (32 filters, ratios 8,5,4,2 taken in reverse, one residual block per
/// stage, 2 LSTM layers, 128 dims) and 8 codebooks, weight norm folded, under `codec_model.`.
fn encoder_tensors() -> Tensors {
    let p = "codec_model.encoder.layers";
    let mut t: Tensors = vec![(format!("{p}.0.conv.weight"), vec![32, 1, 7]), (format!("{p}.0.conv.bias"), vec![32])];
    let (mut dim, mut idx) = (32, 1);
    let conv = |t: &mut Tensors, name: String, out: usize, inp: usize, k: usize| {
        t.push((format!("{name}.conv.weight"), vec![out, inp, k]));
        t.push((format!("{name}.conv.bias"), vec![out]));
    };
    for ratio in [2, 4, 5, 8] {
        conv(&mut t, format!("{p}.{idx}.block.1"), dim / 2, dim, 3);
        conv(&mut t, format!("{p}.{idx}.block.3"), dim, dim / 2, 1);
        conv(&mut t, format!("{p}.{idx}.shortcut"), dim, dim, 1);
        conv(&mut t, format!("{p}.{}", idx + 2), 2 * dim, dim, 2 * ratio);
        (dim, idx) = (2 * dim, idx + 3);
    }
    for l in 0..2 {
        for (what, shape) in [("weight_ih", vec![4 * dim, dim]), ("weight_hh", vec![4 * dim, dim])] {
            t.push((format!("{p}.{idx}.lstm.{what}_l{l}"), shape));
        }
        for what in ["bias_ih", "bias_hh"] {
            t.push((format!("{p}.{idx}.lstm.{what}_l{l}"), vec![4 * dim]));
        }
    }
    conv(&mut t, format!("{p}.{}", idx + 2), 128, dim, 7);
    for q in 0..8 {
        t.push((format!("codec_model.quantizer.layers.{q}.codebook.embed"), vec![1024, 128]));
    }
    t
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{key}: {v:?} is not a count")))
}

fn main() {
    let (seconds, runs) = (env_usize("BENCH_SECONDS", 10), env_usize("BENCH_RUNS", 3).max(1));
    let ctx = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let a = ctx.summary().clone();
    println!("adapter: {} ({}, {}), driver: {}", a.name, a.backend, a.device_type, a.driver);
    let dir = std::env::temp_dir().join(format!("bark-wgpu-clone-bench-{}", std::process::id()));
    let (hubert, model) = (dir.join("hubert"), dir.join("bark"));
    for d in [&hubert, &model] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(hubert.join("config.json"), HUBERT_CONFIG).unwrap();
    write_checkpoint(&hubert.join("model.safetensors"), &shapes(&hubert_base_tensors(9))).unwrap();
    let quantizer = dir.join("quantizer.safetensors");
    write_checkpoint(&quantizer, &shapes(&quantizer_tensors(768, 1024, 10_000))).unwrap();
    let spec = ModelSpec::named("small").expect("configs.json has small");
    std::fs::write(model.join("config.json"), spec.config_json()).unwrap();
    write_checkpoint(&model.join("model.safetensors"), &encoder_tensors()).unwrap();

    let cloner = VoiceCloner::load(&ctx, &model, &hubert, &quantizer).expect("loading the cloner");
    let weights = ctx.stats().bytes_live;
    // A voiced tone, loud enough not to be silence.
    let audio: Vec<f32> = (0..seconds * 24_000).map(|i| 0.3 * (i as f32 * 0.04).sin()).collect();
    let mut times = Vec::new();
    ctx.reset_peak();
    for _ in 0..runs {
        let start = Instant::now();
        let prompt = cloner.clone_voice(&audio, 24_000).expect("cloning");
        times.push(start.elapsed().as_secs_f64());
        assert_eq!(prompt.fine.len(), 8);
    }
    let start = Instant::now();
    bark_wgpu::audio::resample(&audio, 24_000, 16_000).unwrap();
    let resample_s = start.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let mb = |b: u64| b as f64 / 1e6;
    println!("| audio s | clone s (median of {runs}) | of which CPU resampling s | weights MB | peak GPU MB |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {seconds} | {:.3} | {resample_s:.3} | {:.0} | {:.0} |",
        times[times.len() / 2],
        mb(weights),
        mb(ctx.stats().bytes_peak)
    );
    std::fs::remove_dir_all(&dir).ok();
}
