//! GPU memory per stage and batch size at Bark's real sizes, on any adapter in moments: random
//! weights of `benches/configs.json` are loaded, then `Bark::stage_memory` builds each stage's
//! KV cache and plans as the stage would and counts their bytes, running nothing. The peak of a
//! generation is the weights plus the largest stage (`Bark` frees each stage before the next).
//!
//! `cargo bench --bench memory` (add `--profile dev` to reuse the test build). Environment:
//! `BENCH_MODEL` (default `small,large`), `BENCH_DTYPE` (`f32,f16`), `BENCH_BATCH` (`1,16`),
//! `BENCH_SEMANTIC_TOKENS` (default per model: 499 = 10 s of audio).
//!
//! Sizes do not depend on the adapter except through its storage-binding limit (printed), which
//! may cap the sequences of a fine run (column "fine B") or of a cache below the batch size.

mod common;

use bark_wgpu::generate::{Bark, LoadOptions};
use bark_wgpu::{Context, ContextOptions};
use common::ModelSpec;

fn env_list(key: &str, default: &str) -> Vec<String> {
    std::env::var(key).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_string()).collect()
}

fn main() {
    let ctx = Context::new(&ContextOptions::default()).expect("a wgpu adapter");
    let a = ctx.summary().clone();
    println!("adapter: {} ({}, {}), driver: {}", a.name, a.backend, a.device_type, a.driver);
    println!("storage binding limit: {} MB", ctx.max_binding_bytes() / 1_000_000);
    println!("MB = 10^6 bytes of GPU buffers; stages are beyond the weights; peak = weights + largest stage\n");
    println!("| model | dtype | batch | semantic tokens | weights MB | semantic MB | coarse MB | fine B | fine MB | decode MB | peak MB |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let batches: Vec<usize> = env_list("BENCH_BATCH", "1,16")
        .iter()
        .map(|b| b.parse().ok().filter(|&b| b > 0).unwrap_or_else(|| panic!("BENCH_BATCH: {b:?} is not a batch size")))
        .collect();
    let mb = |b: u64| b as f64 / 1e6;
    for name in env_list("BENCH_MODEL", "small,large") {
        let spec = ModelSpec::named(&name).unwrap_or_else(|| panic!("BENCH_MODEL: no model {name:?} in configs.json"));
        let tokens = std::env::var("BENCH_SEMANTIC_TOKENS")
            .ok()
            .map(|v| v.parse().expect("BENCH_SEMANTIC_TOKENS is a count"))
            .unwrap_or(spec.semantic_tokens);
        let dir = common::random_model_dir(&spec, "memory-bench", true).expect("write the random checkpoint");
        for dtype in env_list("BENCH_DTYPE", "f32,f16") {
            assert!(dtype == "f32" || dtype == "f16", "BENCH_DTYPE: {dtype:?} (f32 or f16)");
            let before = ctx.stats().bytes_live;
            let load = LoadOptions { f16: dtype == "f16", ..LoadOptions::default() };
            let bark = Bark::load_on(&ctx, &dir.path, &load).expect("load the random model");
            ctx.wait().expect("wait");
            let weights = ctx.stats().bytes_live - before;
            for &batch in &batches {
                let s = bark.stage_memory(batch, tokens).expect("stage memory");
                println!(
                    "| {name} | {dtype} | {batch} | {tokens} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} |",
                    mb(weights),
                    mb(s.semantic),
                    mb(s.coarse),
                    s.fine_batch,
                    mb(s.fine),
                    mb(s.decode),
                    mb(weights + s.largest())
                );
            }
        }
    }
}
