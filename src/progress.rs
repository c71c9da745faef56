//! Progress of a generation, stage by stage, for whoever shows it: the CLI draws terminal bars
//! ([`TerminalBars`]), a library user may implement [`Progress`] for a GUI or a log.
//!
//! Units: tokens for the semantic and coarse stages, model runs (one per 1024-frame window and
//! predicted codebook) for the fine stage, pieces of audio for the decode. A stage's `total` is
//! an upper bound known when it starts: the semantic stage usually stops early, at its end
//! token, and then simply finishes. In a batch, several sequences advance one stage together.

use std::sync::Arc;

/// The four stages of Bark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Semantic,
    Coarse,
    Fine,
    Decode,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Semantic => "semantic",
            Stage::Coarse => "coarse",
            Stage::Fine => "fine",
            Stage::Decode => "decode",
        }
    }
    /// What the stage counts.
    pub fn unit(self) -> &'static str {
        match self {
            Stage::Semantic | Stage::Coarse => "tokens",
            Stage::Fine => "runs",
            Stage::Decode => "pieces",
        }
    }
}

/// Receives a generation's progress. Called from the generating thread, between GPU steps, so
/// an implementation should return quickly.
pub trait Progress: Send + Sync {
    /// `stage` starts with at most `total` units of work.
    fn start(&self, stage: Stage, total: usize);
    /// `n` more units of `stage` are done.
    fn advance(&self, stage: Stage, n: usize);
    /// `stage` is over (possibly before its total).
    fn finish(&self, stage: Stage);
}

/// A shareable, optional progress receiver; the stages call it through these helpers.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<dyn Progress>>);

impl Reporter {
    pub fn new(p: Option<Arc<dyn Progress>>) -> Reporter {
        Reporter(p)
    }
    pub fn start(&self, stage: Stage, total: usize) {
        if let Some(p) = &self.0 {
            p.start(stage, total);
        }
    }
    pub fn advance(&self, stage: Stage, n: usize) {
        if let Some(p) = &self.0 {
            p.advance(stage, n);
        }
    }
    pub fn finish(&self, stage: Stage) {
        if let Some(p) = &self.0 {
            p.finish(stage);
        }
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Reporter(on)" } else { "Reporter(off)" })
    }
}

/// One stage of a run as a [`StageLog`] saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageRecord {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
    /// Wall time from its start to its finish; `None` while it runs.
    pub seconds: Option<f64>,
    started: f64,
}

/// Keeps every stage's progress and wall time, for a caller that polls (a web page) or reports
/// after the run (a bench). `now` is a clock in seconds: a browser has no `Instant`.
pub struct StageLog {
    now: fn() -> f64,
    records: std::sync::Mutex<Vec<StageRecord>>,
}

impl StageLog {
    pub fn new(now: fn() -> f64) -> StageLog {
        StageLog { now, records: std::sync::Mutex::new(Vec::new()) }
    }
    /// The stages so far, in the order they started.
    pub fn records(&self) -> Vec<StageRecord> {
        self.lock().clone()
    }
    pub fn clear(&self) {
        self.lock().clear();
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StageRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn last(records: &mut [StageRecord], stage: Stage) -> Option<&mut StageRecord> {
        records.iter_mut().rev().find(|r| r.stage == stage)
    }
}

impl Progress for StageLog {
    fn start(&self, stage: Stage, total: usize) {
        let started = (self.now)();
        self.lock().push(StageRecord { stage, done: 0, total, seconds: None, started });
    }
    fn advance(&self, stage: Stage, n: usize) {
        if let Some(r) = Self::last(&mut self.lock(), stage) {
            r.done += n;
        }
    }
    fn finish(&self, stage: Stage) {
        let now = (self.now)();
        if let Some(r) = Self::last(&mut self.lock(), stage) {
            r.seconds = Some(now - r.started);
        }
    }
}

/// One terminal progress bar per stage on standard error (indicatif), each replaced by the
/// next; a finished bar stays as one summary line (stage, units done, time).
#[cfg(not(target_arch = "wasm32"))]
pub struct TerminalBars {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl TerminalBars {
    pub fn new() -> TerminalBars {
        TerminalBars { bar: std::sync::Mutex::new(None) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Default for TerminalBars {
    fn default() -> Self {
        TerminalBars::new()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Progress for TerminalBars {
    fn start(&self, stage: Stage, total: usize) {
        let bar = indicatif::ProgressBar::new(total as u64);
        let template = format!("{{msg:>9}} [{{bar:30}}] {{pos}}/{{len}} {} {{per_sec}} eta {{eta}}", stage.unit());
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(stage.name());
        if let Some(old) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).replace(bar) {
            old.finish();
        }
    }
    fn advance(&self, _: Stage, n: usize) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.inc(n as u64);
        }
    }
    fn finish(&self, stage: Stage) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let secs = b.elapsed().as_secs_f64();
            let done = b.position();
            b.finish_and_clear();
            eprintln!("{:>9}: {done} {} in {secs:.2} s", stage.name(), stage.unit());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock that advances one second per reading.
    fn ticks() -> f64 {
        static T: AtomicU64 = AtomicU64::new(0);
        T.fetch_add(1, Ordering::Relaxed) as f64
    }

    #[test]
    fn a_stage_log_keeps_each_stage_its_units_and_its_time() {
        let log = StageLog::new(ticks);
        log.start(Stage::Semantic, 10);
        log.advance(Stage::Semantic, 3);
        log.advance(Stage::Semantic, 4);
        log.finish(Stage::Semantic);
        log.start(Stage::Coarse, 6);
        log.advance(Stage::Coarse, 2);
        let r = log.records();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].stage, r[0].done, r[0].total, r[0].seconds), (Stage::Semantic, 7, 10, Some(1.0)));
        assert_eq!((r[1].stage, r[1].done, r[1].total, r[1].seconds), (Stage::Coarse, 2, 6, None));
        log.clear();
        assert!(log.records().is_empty());
    }
}
