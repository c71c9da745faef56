//! The browser page's workload run natively, for its per-stage times to stand beside the page's
//! (`scripts/browser_check.sh` prints those): the tiny fixture model, greedy, "Hello, my name is
//! Suno.", at most 24 semantic tokens, generated `runs` times on one loaded model (the first run
//! also compiles the kernels). `cargo bench --bench page [-- RUNS]` (default 3); the adapter is
//! the default one (`VK_ICD_FILENAMES` picks the driver).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
use bark_wgpu::progress::{Progress, Stage};

/// Each stage's wall time, in the order they finished.
#[derive(Default)]
struct Clock(Mutex<Vec<(Stage, Instant, Option<f64>)>>);

impl Progress for Clock {
    fn start(&self, stage: Stage, _: usize) {
        self.0.lock().unwrap().push((stage, Instant::now(), None));
    }
    fn advance(&self, _: Stage, _: usize) {}
    fn finish(&self, stage: Stage) {
        if let Some(e) = self.0.lock().unwrap().iter_mut().rev().find(|e| e.0 == stage) {
            e.2 = Some(e.1.elapsed().as_secs_f64());
        }
    }
}

fn main() -> bark_wgpu::Result<()> {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
    let mut bark = Bark::load(dir, &LoadOptions::default())?;
    println!("adapter: {}", bark.context().summary().name);
    let clock = Arc::new(Clock::default());
    bark.set_progress(Some(clock.clone()));
    let opts = GenerateOptions { max_semantic_tokens: 24, ..GenerateOptions::greedy() };
    for run in 1..=runs {
        clock.0.lock().unwrap().clear();
        let start = Instant::now();
        let out = bark.generate("Hello, my name is Suno.", &opts, None)?;
        let stages: Vec<String> = clock
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(s, _, secs)| format!("{} {:.3} s", s.name(), secs.unwrap_or(f64::NAN)))
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
