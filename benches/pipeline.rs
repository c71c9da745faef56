//! Pipeline benches: per-stage throughput and the end-to-end real-time factor of the whole Bark
//! pipeline on random weights of the sizes in `benches/configs.json` (no download), the same
//! configurations `scripts/bench_transformers.py` runs in transformers' BarkModel.
//!
//! `cargo bench --bench pipeline` (add `--profile dev` to reuse the test build's dependencies).
//! Environment:
//! - `BENCH_MODEL`: `tiny`, `small` (bark-small), `large` (bark), comma-separated; default `tiny`
//!   on a CPU adapter (lavapipe), `small,large` otherwise.
//! - `BENCH_DTYPE`: `f32,f16` (default both): the GPTs' weight storage.
//! - `BENCH_BATCH`: batch sizes, default `1` on a CPU adapter, `1,16` otherwise.
//! - `BENCH_SEMANTIC_TOKENS`: the semantic budget (default per model in configs.json: 499 = 10 s).
//! - `BENCH_RUNS`: timed runs after one warm-up (default 3 on a CPU adapter, 5 otherwise).
//! - `BENCH_JSON`: where the JSON goes (default `$CARGO_TARGET_DIR/bench-pipeline.json`).
//! - `BARK_PROFILE=1`: also the GPU time of every kernel per stage of the last run (standard
//!   error and the JSON's `profile`). Profiled runs wait for every step, so their rows are not
//!   speed figures.
//!
//! Sampling (temperatures 0.7 / 0.7 / 0.5, the original's defaults) with `min_eos_p` off and a
//! fixed seed, so every run produces the same tokens; random weights make the semantic EOS
//! arbitrary, so rates use the counts actually produced (printed). Per run: semantic with a
//! budget of 1 token (prefill + first token: the "prefill" column), semantic with the full
//! budget, coarse, fine, codec decode. The semantic decode rate is
//! `(tokens - 1) / (t_full - t_prefill)`; coarse includes the prefill of each 60-token window;
//! end-to-end is the sum of the four stage calls (exactly what `Bark::generate` does). Every time
//! is the median of the timed runs.

mod common;

use std::time::Instant;

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::{Context, ContextOptions, KernelTime};
use common::ModelSpec;
use serde_json::{json, Value};

/// Every stage of a benched text (whitespace-normalised; the fixture's tokenizer).
const TEXT: &str =
    "Hello, my name is Suno. And, uh, and I like pizza. But I also have other interests such as playing tic tac toe.";
const SAMPLE_RATE: f64 = 24_000.0;

/// One run of the four stages over a batch; counts are summed over the batch.
#[derive(Clone, Copy, Debug, Default)]
struct StageTimes {
    prefill_s: f64,
    semantic_s: f64,
    semantic_tokens: usize,
    coarse_s: f64,
    coarse_tokens: usize,
    fine_s: f64,
    fine_frames: usize,
    codec_s: f64,
    samples: usize,
}

impl StageTimes {
    fn end_to_end_s(&self) -> f64 {
        self.semantic_s + self.coarse_s + self.fine_s + self.codec_s
    }
}

/// GPU time per kernel of one stage call (with `BARK_PROFILE=1`).
type StageProfile = (&'static str, Vec<KernelTime>);

/// Runs every stage once for `texts`, all in one batch; with profiling on, also each stage's
/// kernel times.
fn run_stages(bark: &Bark, texts: &[&str], opts: &GenerateOptions) -> Result<(StageTimes, Vec<StageProfile>), String> {
    let ctx = bark.context();
    let profiles = std::cell::RefCell::new(Vec::new());
    let timed = |stage: &'static str, f: &mut dyn FnMut() -> bark_wgpu::Result<()>| -> Result<f64, String> {
        ctx.wait().map_err(|e| e.to_string())?;
        ctx.take_profile();
        let t = Instant::now();
        f().map_err(|e| e.to_string())?;
        ctx.wait().map_err(|e| e.to_string())?;
        let elapsed = t.elapsed().as_secs_f64();
        if ctx.profiling() {
            profiles.borrow_mut().push((stage, ctx.take_profile()));
        }
        Ok(elapsed)
    };
    let first_token = GenerateOptions { max_semantic_tokens: 1, ..opts.clone() };
    let mut s = StageTimes::default();
    // One batch of every text (max_batch = the count); batch 1 is exactly `Bark::semantic` etc.
    let n = texts.len();
    let (mut semantic, mut coarse, mut fine) = (Vec::new(), Vec::new(), Vec::new());
    let mut audio = Vec::new();
    s.prefill_s = timed("semantic, first token", &mut || bark.semantic_batch(texts, &first_token, None, n).map(drop))?;
    s.semantic_s = timed("semantic", &mut || bark.semantic_batch(texts, opts, None, n).map(|t| semantic = t))?;
    s.coarse_s = timed("coarse", &mut || bark.coarse_batch(&semantic, opts, None, n).map(|t| coarse = t))?;
    s.fine_s = timed("fine", &mut || bark.fine_batch(&coarse, opts, None, n).map(|t| fine = t))?;
    s.codec_s = timed("codec", &mut || {
        audio = fine.iter().map(|f| bark.decode(f)).collect::<bark_wgpu::Result<Vec<_>>>()?;
        Ok(())
    })?;
    s.semantic_tokens = semantic.iter().map(Vec::len).sum();
    s.coarse_tokens = coarse.iter().map(Vec::len).sum();
    s.fine_frames = fine.iter().map(|f| f.first().map_or(0, Vec::len)).sum();
    s.samples = audio.iter().map(|a| a.samples.len()).sum();
    Ok((s, profiles.into_inner()))
}

/// Kernels shown per stage in a profile; the rest are summed in one line.
const PROFILE_TOP: usize = 8;

/// A stage's kernels, longest first, as table rows and JSON.
fn profile_table(profiles: &[StageProfile]) -> (String, Value) {
    let mut rows = String::from(
        "| stage | kernel | dispatches | GPU ms | % of the stage's GPU time |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    let mut json = Vec::new();
    for (stage, kernels) in profiles {
        let total: f64 = kernels.iter().map(|k| k.seconds).sum();
        let pct = |s: f64| if total > 0.0 { 100.0 * s / total } else { 0.0 };
        for k in kernels.iter().take(PROFILE_TOP) {
            rows += &format!(
                "| {stage} | {} | {} | {:.2} | {:.1} |\n",
                k.kernel,
                k.dispatches,
                k.seconds * 1e3,
                pct(k.seconds)
            );
        }
        let rest = &kernels[kernels.len().min(PROFILE_TOP)..];
        if !rest.is_empty() {
            let (n, t): (u64, f64) = rest.iter().fold((0, 0.0), |(n, t), k| (n + k.dispatches, t + k.seconds));
            rows += &format!("| {stage} | {} other kernels | {n} | {:.2} | {:.1} |\n", rest.len(), t * 1e3, pct(t));
        }
        rows += &format!(
            "| {stage} | all | {} | {:.2} | 100 |\n",
            kernels.iter().map(|k| k.dispatches).sum::<u64>(),
            total * 1e3
        );
        let ks: Vec<Value> = kernels
            .iter()
            .map(|k| json!({"kernel": k.kernel, "dispatches": k.dispatches, "gpu_s": k.seconds}))
            .collect();
        json.push(json!({"stage": stage, "kernels": ks}));
    }
    (rows, Value::Array(json))
}

/// Weight bytes one causal decode step reads: every layer's four matrices (`12 h^2`), the LM
/// head and the f32 layer norms; the two embedding rows (token, position) are left out.
fn causal_step_bytes(spec: &ModelSpec, vocab_out: usize, weight_bytes: usize) -> f64 {
    let h = spec.hidden;
    let per_layer = 12 * h * h * weight_bytes + 2 * h * 4;
    (spec.layers * per_layer + h * 4 + vocab_out * h * weight_bytes) as f64
}

/// FLOPs of one fine-model pass over a 1024-frame window (one codebook): the linears
/// (`2 T 12 h^2` per layer), full attention (`4 T^2 h` per layer) and one head.
fn fine_pass_flops(spec: &ModelSpec) -> f64 {
    let (t, h, l) = (1024.0, spec.hidden as f64, spec.layers as f64);
    l * (2.0 * t * 12.0 * h * h + 4.0 * t * t * h) + 2.0 * t * h * spec.vocab("fine") as f64
}

/// Fine passes for `frames` frames without history: windows of 1024 advancing by 512, and one
/// pass per codebook after the coarse two in each.
fn fine_passes(spec: &ModelSpec, frames: usize) -> usize {
    let loops = frames.saturating_sub(1024).div_ceil(512) + 1;
    loops * (spec.vocab("n_codes_total") - 2)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of every time over the runs (counts are the same in every run: fixed seed).
fn median_times(runs: &[StageTimes]) -> StageTimes {
    let m = |f: fn(&StageTimes) -> f64| median(runs.iter().map(f).collect());
    StageTimes {
        prefill_s: m(|s| s.prefill_s),
        semantic_s: m(|s| s.semantic_s),
        coarse_s: m(|s| s.coarse_s),
        fine_s: m(|s| s.fine_s),
        codec_s: m(|s| s.codec_s),
        ..runs[0]
    }
}

/// Today as YYYY-MM-DD (UTC), from the system clock.
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Howard Hinnant's civil_from_days.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn env_list(key: &str, default: &str) -> Vec<String> {
    let v = std::env::var(key).unwrap_or_else(|_| default.to_string());
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn env_usize(key: &str) -> Option<usize> {
    std::env::var(key).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{key}={v} is not a count")))
}

const HEADER: &str = "| model | dtype | batch | semantic tokens | prefill ms | semantic tok/s | semantic GB/s | coarse tokens | coarse tok/s | coarse GB/s | fine frames | fine frames/s | fine GFLOP/s | samples | codec samples/s | end-to-end s | RTF | GPU MB weights / peak |";

/// One table row and its JSON.
fn report(spec: &ModelSpec, dtype: &str, batch: usize, m: &StageTimes, mem: (u64, u64)) -> (String, Value) {
    let wb = if dtype == "f16" { 2 } else { 4 };
    let sem_bytes = causal_step_bytes(spec, spec.vocab("semantic_output"), wb);
    let coarse_bytes = causal_step_bytes(spec, spec.vocab("coarse"), wb);
    let per_seq_tokens = m.semantic_tokens / batch;
    // Decode steps after the first token; a batch shares each step's weight reads.
    let sem_rate = m.semantic_tokens.saturating_sub(batch) as f64 / (m.semantic_s - m.prefill_s);
    let sem_gbs = sem_rate / batch as f64 * sem_bytes / 1e9;
    let coarse_rate = m.coarse_tokens as f64 / m.coarse_s;
    let coarse_gbs = coarse_rate / batch as f64 * coarse_bytes / 1e9;
    let fine_rate = m.fine_frames as f64 / m.fine_s;
    let fine_flops = fine_passes(spec, m.fine_frames / batch) as f64 * batch as f64 * fine_pass_flops(spec);
    let codec_rate = m.samples as f64 / m.codec_s;
    let e2e = m.end_to_end_s();
    let rtf = e2e / (m.samples as f64 / SAMPLE_RATE);
    let mb = |b: u64| b as f64 / 1e6;
    let row = format!(
        "| {} | {dtype} | {batch} | {} | {:.1} | {sem_rate:.1} | {sem_gbs:.2} | {} | {coarse_rate:.1} | {coarse_gbs:.2} | {} | {fine_rate:.1} | {:.1} | {} | {codec_rate:.0} | {e2e:.2} | {rtf:.3} | {:.0} / {:.0} |",
        spec.name,
        m.semantic_tokens,
        m.prefill_s * 1e3,
        m.coarse_tokens,
        m.fine_frames,
        fine_flops / m.fine_s / 1e9,
        m.samples,
        mb(mem.0),
        mb(mem.1)
    );
    let json = json!({
        "model": spec.name, "hidden_size": spec.hidden, "num_layers": spec.layers, "num_heads": spec.heads,
        "dtype": dtype, "batch": batch, "semantic_tokens_per_sequence": per_seq_tokens,
        "semantic_tokens": m.semantic_tokens, "semantic_prefill_s": m.prefill_s, "semantic_s": m.semantic_s,
        "semantic_decode_tokens_per_s": sem_rate, "semantic_weight_bytes_per_step": sem_bytes,
        "semantic_weight_gb_per_s": sem_gbs,
        "coarse_tokens": m.coarse_tokens, "coarse_s": m.coarse_s, "coarse_tokens_per_s": coarse_rate,
        "coarse_weight_bytes_per_step": coarse_bytes, "coarse_weight_gb_per_s": coarse_gbs,
        "fine_frames": m.fine_frames, "fine_s": m.fine_s, "fine_frames_per_s": fine_rate,
        "fine_flops": fine_flops, "codec_samples": m.samples, "codec_s": m.codec_s,
        "codec_samples_per_s": codec_rate, "end_to_end_s": e2e, "audio_s": m.samples as f64 / SAMPLE_RATE,
        "rtf": rtf, "gpu_weight_bytes": mem.0, "gpu_peak_bytes": mem.1,
    });
    (row, json)
}

/// Loads `spec` in `dtype` on a fresh context and benches every batch size; returns rows.
fn bench_model(
    spec: &ModelSpec,
    dir: &std::path::Path,
    dtype: &str,
    batches: &[usize],
    sem_tokens: usize,
    runs: usize,
) -> Vec<(String, Value)> {
    let ctx = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let t = Instant::now();
    let load = LoadOptions { f16: dtype == "f16", ..LoadOptions::default() };
    let bark = Bark::load_on(&ctx, dir, &load).expect("load the random model");
    ctx.wait().expect("wait");
    let weights = ctx.stats().bytes_live;
    eprintln!("  {} {dtype}: loaded in {:.1} s", spec.name, t.elapsed().as_secs_f64());
    let opts =
        GenerateOptions { max_semantic_tokens: sem_tokens, min_eos_p: None, seed: 7, ..GenerateOptions::default() };
    let mut out = Vec::new();
    for &batch in batches {
        let texts = vec![TEXT; batch];
        ctx.reset_peak();
        let t = Instant::now();
        if let Err(e) = run_stages(&bark, &texts, &opts) {
            println!("| {} | {dtype} | {batch} | {e} |", spec.name);
            continue;
        }
        eprintln!("  batch {batch}: warm-up {:.1} s, {runs} timed runs", t.elapsed().as_secs_f64());
        let (times, profiles): (Vec<StageTimes>, Vec<Vec<StageProfile>>) =
            (0..runs).map(|_| run_stages(&bark, &texts, &opts).expect("a run after a good warm-up")).unzip();
        let (row, mut json) = report(spec, dtype, batch, &median_times(&times), (weights, ctx.stats().bytes_peak));
        println!("{row}");
        if ctx.profiling() {
            let (table, profile) = profile_table(profiles.last().expect("at least one run"));
            eprintln!("\n{} {dtype} batch {batch}: GPU time per kernel, last run (BARK_PROFILE=1)\n{table}", spec.name);
            json["profile"] = profile;
        }
        out.push((row, json));
    }
    out
}

fn main() {
    let probe = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let a = probe.summary().clone();
    let norm_in_gemv = probe.policy().norm_in_gemv;
    let cpu_kernels = probe.policy().cpu_kernels;
    let profiling = probe.profiling();
    drop(probe);
    let cpu = a.device_type == "Cpu";
    let models = env_list("BENCH_MODEL", if cpu { "tiny" } else { "small,large" });
    let dtypes = env_list("BENCH_DTYPE", "f32,f16");
    let batches: Vec<usize> = env_list("BENCH_BATCH", if cpu { "1" } else { "1,16" })
        .iter()
        .map(|b| b.parse().ok().filter(|&b| b > 0).unwrap_or_else(|| panic!("BENCH_BATCH: {b:?} is not a batch size")))
        .collect();
    let runs = env_usize("BENCH_RUNS").unwrap_or(if cpu { 3 } else { 5 }).max(1);
    let (date, commit) = (today(), git_commit());

    println!("adapter: {} ({}, {}), driver: {}", a.name, a.backend, a.device_type, a.driver);
    println!("features: shader_f16={} subgroup={}; {date}, commit {commit}", a.shader_f16, a.subgroup);
    println!("decode GEMVs apply the LayerNorms before them: {norm_in_gemv} (BARK_NORM_IN_GEMV)");
    println!("linear layers, attention and layer norms in their CPU variants: {cpu_kernels} (BARK_CPU_KERNELS)");
    println!("median of {runs} runs after a warm-up; sampled (0.7/0.7/0.5), min_eos_p off, seed 7");
    if profiling {
        println!("BARK_PROFILE=1: every dispatch is timed and every step waited for; these rows are not speed figures");
    }
    println!("GPU MB: bytes of the GPU buffers the crate holds: the weights after loading / the most at any moment of");
    println!(
        "this batch size's runs (weights, KV caches, intermediates, staging; what the driver adds is not counted).\n"
    );

    let mut results = Vec::new();
    let mut rows = Vec::new();
    for name in &models {
        let spec = ModelSpec::named(name).unwrap_or_else(|| panic!("BENCH_MODEL: no model {name:?} in configs.json"));
        let sem_tokens = env_usize("BENCH_SEMANTIC_TOKENS").unwrap_or(spec.semantic_tokens);
        let t = Instant::now();
        let dir = common::random_model_dir(&spec, "pipeline-bench", true).expect("write the random checkpoint");
        eprintln!(
            "{name}: random checkpoint {:.1} MB f32 written in {:.1} s; semantic budget {sem_tokens}",
            dir.checkpoint_bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        for wb in [4, 2] {
            let d = if wb == 4 { "f32" } else { "f16" };
            println!(
                "{name} {d}: weights per decode step: semantic {:.1} MB, coarse {:.1} MB; fine {:.1} GFLOP per 1024-frame pass",
                causal_step_bytes(&spec, spec.vocab("semantic_output"), wb) / 1e6,
                causal_step_bytes(&spec, spec.vocab("coarse"), wb) / 1e6,
                fine_pass_flops(&spec) / 1e9
            );
        }
        println!("\n{HEADER}\n{}", "| --- ".repeat(HEADER.matches(" | ").count() + 1) + "|");
        for dtype in &dtypes {
            assert!(dtype == "f32" || dtype == "f16", "BENCH_DTYPE: {dtype:?} (f32 or f16)");
            for (row, json) in bench_model(&spec, &dir.path, dtype, &batches, sem_tokens, runs) {
                rows.push(row);
                results.push(json);
            }
        }
        println!();
    }
    let doc = json!({
        "adapter": {"name": a.name, "backend": a.backend, "device_type": a.device_type, "driver": a.driver,
                    "shader_f16": a.shader_f16, "subgroup": a.subgroup},
        "norm_in_gemv": norm_in_gemv,
        "cpu_kernels": cpu_kernels,
        "profiling": profiling,
        "date": date, "commit": commit, "runs": runs, "text": TEXT,
        "results": results,
    });
    let path = common::json_path("bench-pipeline.json");
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("JSON") + "\n"));
    match written {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
