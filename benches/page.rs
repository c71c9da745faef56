//! The browser page's workload run natively, for its per-stage times to stand beside the page's
//! (`scripts/browser_check.sh` prints those): the tiny fixture model, greedy, "Hello, my name is
//! Suno.", at most 24 semantic tokens, generated `runs` times on one loaded model (the first run
//! also compiles the kernels). `cargo bench --bench page [-- RUNS]` (default 3); the adapter is
//! the default one (`VK_ICD_FILENAMES` picks the driver).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::progress::StageLog;

/// Seconds since the first call: the clock of the stage log.
fn now() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn main() -> bark_wgpu::Result<()> {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
    let mut bark = Bark::load(dir, &LoadOptions::default())?;
    println!("adapter: {}", bark.context().summary().name);
    let log = Arc::new(StageLog::new(now));
    bark.set_progress(Some(log.clone()));
    let opts = GenerateOptions { max_semantic_tokens: 24, ..GenerateOptions::greedy() };
    for run in 1..=runs {
        log.clear();
        let start = Instant::now();
        let out = bark.generate("Hello, my name is Suno.", &opts, None)?;
        let stages: Vec<String> = log
            .records()
            .iter()
            .map(|r| format!("{} {:.3} s", r.stage.name(), r.seconds.unwrap_or(f64::NAN)))
            .collect();
        println!(
            "run {run}: {} ({} semantic tokens; whole {:.3} s)",
            stages.join(", "),
            out.semantic.len(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
