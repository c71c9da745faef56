//! Loading cost of a bark-small-sized checkpoint with random weights (no download): writes a
//! `model.safetensors` of every tensor inference reads (f32, ~1.6 GB) and a config.json to a
//! temporary directory, then loads the semantic, coarse and fine GPTs and the codec decoder in
//! a child process per GPU dtype (f32, f16) and reports the wall time, the peak host memory
//! (VmHWM: on a CPU adapter such as lavapipe this includes the "GPU" buffers) and the bytes of
//! GPU buffers created.
//!
//! `cargo bench --bench load --profile dev`; `BENCH_MODEL=large` for bark (full) sizes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bark_wgpu::model::encodec::{checkpoint_fetch, EncodecDecoder};
use bark_wgpu::model::gpt::{CausalGpt, FineGpt};
use bark_wgpu::model::{inference_tensors, BarkConfig};
use bark_wgpu::weights::Weights;
use bark_wgpu::{Context, ContextOptions, DType};

fn config_json(large: bool) -> String {
    let (h, l, heads) = if large { (1024, 24, 16) } else { (768, 12, 12) };
    let sub = |vin: usize, vout: usize| {
        format!(
            "{{\"hidden_size\": {h}, \"num_layers\": {l}, \"num_heads\": {heads}, \"block_size\": 1024, \
             \"input_vocab_size\": {vin}, \"output_vocab_size\": {vout}, \"bias\": false}}"
        )
    };
    let fine = format!(
        "{{\"hidden_size\": {h}, \"num_layers\": {l}, \"num_heads\": {heads}, \"block_size\": 1024, \
         \"input_vocab_size\": 1056, \"output_vocab_size\": 1056, \"bias\": false, \"n_codes_total\": 8, \"n_codes_given\": 1}}"
    );
    format!(
        "{{\"semantic_config\": {}, \"coarse_acoustics_config\": {}, \"fine_acoustics_config\": {fine}, \"codec_config\": {{}}}}",
        sub(129_600, 10_048),
        sub(12_096, 12_096)
    )
}

/// Streams a safetensors file of f32 tensors with small pseudo-random values.
fn write_checkpoint(path: &Path, tensors: &[(String, Vec<usize>)]) -> std::io::Result<u64> {
    let mut header = String::from("{");
    let mut offset = 0u64;
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let bytes = shape.iter().product::<usize>() as u64 * 4;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            "{}\"{name}\": {{\"dtype\": \"F32\", \"shape\": [{}], \"data_offsets\": [{offset}, {}]}}",
            if i > 0 { ", " } else { "" },
            dims.join(", "),
            offset + bytes
        );
        offset += bytes;
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut f = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    f.write_all(&(header.len() as u64).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for (_, shape) in tensors {
        let mut chunk = Vec::with_capacity(1 << 20);
        for _ in 0..shape.iter().product::<usize>() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04;
            chunk.extend_from_slice(&v.to_le_bytes());
            if chunk.len() >= 1 << 20 {
                f.write_all(&chunk)?;
                chunk.clear();
            }
        }
        f.write_all(&chunk)?;
    }
    f.flush()?;
    Ok(8 + header.len() as u64 + offset)
}

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
    let gpu = ctx.stats().bytes_created;
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
    let dir: PathBuf = std::env::temp_dir().join(format!("bark-wgpu-load-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("config.json"), config_json(large)).expect("config.json");
    let cfg = BarkConfig::load(dir.join("config.json")).expect("config");
    let tensors = inference_tensors(&cfg);
    let t = Instant::now();
    let bytes = write_checkpoint(&dir.join("model.safetensors"), &tensors).expect("write checkpoint");
    println!(
        "{} random checkpoint: {} tensors, {:.1} MB f32, written in {:.1} s",
        if large { "bark" } else { "bark-small" },
        tensors.len(),
        bytes as f64 / 1e6,
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
    std::fs::remove_dir_all(&dir).ok();
}
