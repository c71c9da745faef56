//! Loading cost of a bark-small-sized checkpoint with random weights (no download): writes a
//! `model.safetensors` of every tensor inference reads (f32, ~1.6 GB) and a config.json to a
//! temporary directory, then loads the semantic, coarse and fine GPTs and the codec decoder in
//! a child process per GPU dtype (f32, f16) and reports the wall time, the peak host memory
//! (VmHWM: on a CPU adapter such as lavapipe this includes the "GPU" buffers) and the bytes of
//! GPU buffers created.
//!
//! `cargo bench --bench load --profile dev`; `BENCH_MODEL=large` for bark (full) sizes.

mod common;

use std::path::Path;
use std::time::Instant;

use bark_wgpu::model::encodec::{checkpoint_fetch, EncodecDecoder};
use bark_wgpu::model::gpt::{CausalGpt, FineGpt};
use bark_wgpu::model::BarkConfig;
use bark_wgpu::weights::Weights;
use bark_wgpu::{Context, ContextOptions, DType};

/// Peak resident set of this process in bytes (Linux), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The child: load everything in `dtype` and print one result line.
fn load(dir: &Path, dtype: DType) {
    let ctx = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let cfg = BarkConfig::load(dir.join("config.json")).expect("config");
    let t = Instant::now();
    let w = Weights::open_dir(dir).expect("weights");
    let semantic = CausalGpt::load(&ctx, &w, "semantic", &cfg.semantic_config, dtype).expect("semantic");
    let coarse = CausalGpt::load(&ctx, &w, "coarse_acoustics", &cfg.coarse_acoustics_config, dtype).expect("coarse");
    let fine = FineGpt::load(&ctx, &w, "fine_acoustics", &cfg.fine_acoustics_config, dtype).expect("fine");
    let mut fetch = checkpoint_fetch(&ctx, &w);
    let n_q = cfg.fine_acoustics_config.n_codes_total;
    let codec = EncodecDecoder::load(&ctx, &cfg.codec_config, n_q, &mut fetch).expect("codec");
    ctx.wait().expect("wait");
    let secs = t.elapsed().as_secs_f64();
    let gpu = ctx.stats().bytes_live;
    drop((semantic, coarse, fine, codec));
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{:<4} load {:>6.2} s   peak host {:>8.1} MB   GPU buffers {:>8.1} MB",
        format!("{dtype:?}").to_lowercase(),
        secs,
        peak_rss().map_or(f64::NAN, mb),
        mb(gpu)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--load") {
        let dtype = if args[i + 2] == "f16" { DType::F16 } else { DType::F32 };
        load(Path::new(&args[i + 1]), dtype);
        return;
    }
    let large = std::env::var("BENCH_MODEL").is_ok_and(|m| m == "large");
    let spec = common::ModelSpec::named(if large { "large" } else { "small" }).expect("configs.json");
    let t = Instant::now();
    let model = common::random_model_dir(&spec, "load-bench", false).expect("write the random checkpoint");
    let dir = &model.path;
    println!(
        "{} random checkpoint: {} tensors, {:.1} MB f32, written in {:.1} s",
        if large { "bark" } else { "bark-small" },
        model.tensors,
        model.checkpoint_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    for dtype in ["f32", "f16"] {
        let exe = std::env::current_exe().expect("own path");
        let status = std::process::Command::new(exe)
            .args(["--load", dir.to_str().unwrap(), dtype])
            .status()
            .expect("run the loader");
        assert!(status.success(), "loading in {dtype} failed");
    }
}
