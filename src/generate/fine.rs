//! Stage 3, the coarse codebooks to all eight (transformers' `BarkFineModel.generate`, the
//! original's `generate_fine`).
//!
//! Frames are rows of 8 codes: the two coarse codes, then 1024 (the pad) for codebooks 2..7.
//! The voice's fine prompt (last 512 frames) goes first; the whole is padded with pad frames to
//! at least 1024. The non-causal model sees 1024-frame windows, advancing 512 at a time:
//! window `n` starts at `s = min(512 n, L - 1024)` and fills from `fs = min(nh + 512 n, L - 512)`
//! (`nh` = history frames). For each codebook 2..7 in turn, the model predicts the whole window
//! and frames `fs ..` of the window take the prediction. The window is a view of the frames
//! (in transformers `input_buffer` is a slice of `fine_input`), so each codebook sees the ones
//! filled before it and later windows see earlier windows' codes; here the frames are one host
//! array written in place, and each model run uploads its window of it.
//!
//! Temperature `None` or `1.0` takes the argmax over codes `0..1024`; any other samples from
//! `softmax(logits[..1024] / t)`, one uniform per frame of the window.

use super::rng::Rng;
use crate::gpu::{Context, Tensor};
use crate::graph::{Graph, Plan, Scratch, Val};
use crate::model::gpt::FineGpt;
use crate::ops::sampling::{sample, SampleSettings, SamplerInputs};
use crate::progress::{Reporter, Stage};
use crate::vocab::{coarse_codes, FINE_PAD, N_COARSE_CODEBOOKS};
use crate::{Error, Result};

/// Frames the fine model sees at once.
pub const MAX_FINE_INPUT: usize = 1024;
/// Frames of the voice's fine prompt kept, and the stride of the windows.
pub const MAX_FINE_HISTORY: usize = 512;

/// One sequence of the fine stage: its frames as rows of `n_cb` codes (history, the coarse
/// frames, pad frames) written in place window by window, and the window arithmetic. The
/// one-sequence and the batched runs both go through it.
pub(crate) struct Job {
    n_cb: usize,
    f: Vec<u32>,
    /// History frames kept (at most 512).
    nh: usize,
    /// Pad frames appended to reach 1024.
    n_remove: usize,
    /// Windows to run, and the next one.
    n_loops: usize,
    next: usize,
}

impl Job {
    /// Checks and lays out interleaved coarse tokens for a model of `n_cb` codebooks.
    /// `history`: the voice's fine prompt, one row of codes per codebook (validated).
    pub fn new(coarse: &[u32], history: Option<&[Vec<u32>]>, n_cb: usize) -> Result<Job> {
        if n_cb <= N_COARSE_CODEBOOKS {
            return Err(Error::Invalid(format!(
                "a fine model of {n_cb} codebooks predicts none beyond the coarse two"
            )));
        }
        let [c0, c1] = coarse_codes(coarse)?;
        let t_frames = c0.len();
        if t_frames == 0 {
            return Ok(Job { n_cb, f: Vec::new(), nh: 0, n_remove: 0, n_loops: 0, next: 0 });
        }
        let hist = history.unwrap_or(&[]);
        if !hist.is_empty() && hist.len() != n_cb {
            return Err(Error::Invalid(format!("a fine history of {} codebooks, want {n_cb}", hist.len())));
        }
        let hist_frames = hist.first().map_or(0, Vec::len);
        let nh = hist_frames.min(MAX_FINE_HISTORY);
        let mut f = Vec::with_capacity(n_cb * (nh + t_frames).max(MAX_FINE_INPUT));
        for t in hist_frames - nh..hist_frames {
            f.extend(hist.iter().map(|row| row[t]));
        }
        for t in 0..t_frames {
            f.extend([c0[t], c1[t]]);
            f.extend(std::iter::repeat_n(FINE_PAD, n_cb - N_COARSE_CODEBOOKS));
        }
        let n_remove = MAX_FINE_INPUT.saturating_sub(f.len() / n_cb);
        f.resize(f.len() + n_remove * n_cb, FINE_PAD);
        let over = t_frames as f64 - (MAX_FINE_INPUT - nh) as f64;
        let n_loops = ((over / MAX_FINE_HISTORY as f64).ceil() as i64).max(0) as usize + 1;
        Ok(Job { n_cb, f, nh, n_remove, n_loops, next: 0 })
    }

    fn len(&self) -> usize {
        self.f.len() / self.n_cb
    }

    /// Model runs this job takes: one per window and predicted codebook.
    pub fn total_runs(&self) -> usize {
        self.n_loops * (self.n_cb - N_COARSE_CODEBOOKS)
    }

    pub fn is_done(&self) -> bool {
        self.next >= self.n_loops
    }

    /// Where the current window starts, and where in it the prediction is taken from.
    fn window(&self) -> (usize, usize) {
        let start = (self.next * MAX_FINE_HISTORY).min(self.len() - MAX_FINE_INPUT);
        let fill = (self.nh + self.next * MAX_FINE_HISTORY).min(self.len() - MAX_FINE_HISTORY);
        (start, fill - start)
    }

    /// The current window's codes, `[frame][codebook]`.
    fn window_codes(&self) -> &[u32] {
        let (start, _) = self.window();
        &self.f[start * self.n_cb..(start + MAX_FINE_INPUT) * self.n_cb]
    }

    /// Takes the model's choice for codebook `cb` at every frame of the current window.
    fn apply(&mut self, cb: usize, preds: &[u32]) {
        let (start, rel) = self.window();
        for (i, &p) in preds.iter().enumerate().skip(rel) {
            self.f[(start + i) * self.n_cb + cb] = p;
        }
    }

    /// `[codebook][frame]` of the coarse frames (history and pad dropped).
    pub fn finish(self) -> Vec<Vec<u32>> {
        let n_cb = self.n_cb;
        let frames = self.nh..self.len() - self.n_remove;
        (0..n_cb).map(|cb| frames.clone().map(|t| self.f[t * n_cb + cb]).collect()).collect()
    }
}

/// The most sequences one fine run may hold so that its largest intermediate (the MLP's
/// `[B * 1024, 4H]`, the QKV, or the logits) stays within the adapter's binding limit.
fn max_rows_in_binding(ctx: &Context, model: &FineGpt) -> usize {
    let m = &model.config().model;
    let widest = (4 * m.hidden_size).max(m.output_vocab_size);
    let per_item = (MAX_FINE_INPUT * widest * 4) as u64;
    ((ctx.max_binding_bytes() / per_item.max(1)) as usize).max(1)
}

/// Generates codebooks `2..n_codes_total` of every job, the windows of up to `max_batch`
/// sequences run as one batch `[B, 1024, n_codes_total]`. Each job's windows run in order (a
/// window sees the codes of the ones before); a job that has run all its windows leaves and a
/// waiting one joins. `rngs[i]`: job `i`'s stream (1024 uniforms per window and codebook when
/// sampling). Output `i` (`[codebook][frame]`) belongs to job `i`.
///
/// Temperature `None` or `1.0` is argmax; rows of a batch never depend on each other (every
/// matrix product has more than 16 rows, so it is always the same tiled GEMM).
pub(crate) async fn generate(
    ctx: &Context,
    model: &FineGpt,
    mut jobs: Vec<Job>,
    temperature: Option<f32>,
    rngs: &mut [Option<Rng>],
    max_batch: usize,
    progress: &Reporter,
) -> Result<Vec<Vec<Vec<u32>>>> {
    if rngs.len() != jobs.len() {
        return Err(Error::Invalid(format!("{} random streams for {} fine jobs", rngs.len(), jobs.len())));
    }
    let n_cb = model.config().n_codes_total;
    if let Some(j) = jobs.iter().find(|j| j.n_cb != n_cb) {
        return Err(Error::Invalid(format!("a fine job of {} codebooks for a model of {n_cb}", j.n_cb)));
    }
    let busy = jobs.iter().filter(|j| !j.is_done()).count();
    if busy > 0 && model.config().model.block_size < MAX_FINE_INPUT {
        return Err(Error::Invalid(format!("the fine model's context is below {MAX_FINE_INPUT} frames")));
    }
    let settings = SampleSettings::fine(temperature);
    let greedy = settings.temperature <= 0.0;
    let slots = sequences_per_run(ctx, model, max_batch.min(busy));
    // One runner per batch size met (the last rounds may hold fewer sequences), all drawing
    // their intermediates from one scratch: only one plan runs at a time.
    let scratch = Scratch::default();
    let mut runners: Vec<Option<FineRunner>> = (0..=slots).map(|_| None).collect();
    let mut waiting = (0..jobs.len()).filter(|&i| !jobs[i].is_done()).collect::<Vec<_>>().into_iter();
    let mut live: Vec<usize> = Vec::with_capacity(slots);
    loop {
        live.retain(|&i| !jobs[i].is_done());
        while live.len() < slots {
            let Some(i) = waiting.next() else { break };
            live.push(i);
        }
        if live.is_empty() {
            break;
        }
        let b = live.len();
        if runners[b].is_none() {
            let r = FineRunner::new(ctx, model, n_cb, b, &scratch)?;
            r.sampler.set_settings(ctx, &[settings])?;
            runners[b] = Some(r);
        }
        let runner = runners[b].as_ref().expect("made above");
        for cb in N_COARSE_CODEBOOKS..n_cb {
            let window: Vec<u32> = live.iter().flat_map(|&i| jobs[i].window_codes().iter().copied()).collect();
            let mut uniforms = Vec::new();
            for &i in &live {
                match (rngs[i].as_mut(), greedy) {
                    (Some(r), false) => uniforms.extend((0..MAX_FINE_INPUT).map(|_| r.uniform())),
                    _ => uniforms.resize(uniforms.len() + MAX_FINE_INPUT, 0.0),
                }
            }
            let sampling = !greedy && live.iter().any(|&i| rngs[i].is_some());
            let preds = runner.run(ctx, cb, &window, sampling.then_some(uniforms.as_slice())).await?;
            progress.advance(Stage::Fine, live.len());
            for (&i, p) in live.iter().zip(preds.chunks(MAX_FINE_INPUT)) {
                jobs[i].apply(cb, p);
            }
        }
        for &i in &live {
            jobs[i].next += 1;
        }
    }
    Ok(jobs.into_iter().map(Job::finish).collect())
}

/// How many of `batch` sequences one fine run takes: all, or as many as the binding limit allows.
pub(crate) fn sequences_per_run(ctx: &Context, model: &FineGpt, batch: usize) -> usize {
    batch.max(1).min(max_rows_in_binding(ctx, model))
}

/// The GPU bytes [`generate`] holds beyond the weights for `batch` sequences: one runner's
/// inputs and plans and their scratch, built and freed unrun. (A last round of fewer sequences
/// adds a smaller runner's inputs, a few KB.)
pub(crate) fn footprint(ctx: &Context, model: &FineGpt, batch: usize) -> Result<u64> {
    let b = sequences_per_run(ctx, model, batch);
    ctx.bytes_held(|| {
        let scratch = Scratch::default();
        let runner = FineRunner::new(ctx, model, model.config().n_codes_total, b, &scratch)?;
        Ok((scratch, runner))
    })
}

/// One compiled plan per predicted codebook over a shared window of codes and shared sampler
/// inputs, their intermediates in one [`Scratch`] (the plans run one at a time).
struct FineRunner {
    /// `[B, 1024, n_cb]`.
    codes: Tensor,
    sampler: SamplerInputs,
    plans: Vec<(Plan, Val)>,
}

impl FineRunner {
    fn new(ctx: &Context, model: &FineGpt, n_cb: usize, batch: usize, scratch: &Scratch) -> Result<FineRunner> {
        let codes = Tensor::from_u32(ctx, &vec![0; batch * MAX_FINE_INPUT * n_cb], &[batch, MAX_FINE_INPUT, n_cb])?;
        let vocab = model.config().model.output_vocab_size;
        let sampler = SamplerInputs::new(ctx, batch * MAX_FINE_INPUT, vocab)?;
        let mut plans = Vec::new();
        for cb in N_COARSE_CODEBOOKS..n_cb {
            let mut g = Graph::new(ctx);
            let c = g.input(&codes);
            let logits = model.record(&mut g, c, cb)?;
            let (s, u) = (g.input(sampler.settings()), g.input(sampler.uniforms()));
            let chosen = sample(&mut g, logits, s, u)?;
            g.readback(chosen.ids);
            plans.push((g.compile_in(scratch)?, chosen.ids));
        }
        Ok(FineRunner { codes, sampler, plans })
    }

    /// The model's choice for codebook `cb` at every frame of `windows` (`[B][frame][codebook]`).
    async fn run(&self, ctx: &Context, cb: usize, windows: &[u32], uniforms: Option<&[f32]>) -> Result<Vec<u32>> {
        self.codes.write_words(ctx, windows)?;
        if let Some(u) = uniforms {
            self.sampler.set_uniforms(ctx, u)?;
        }
        let (plan, ids) = &self.plans[cb - N_COARSE_CODEBOOKS];
        plan.run()?;
        plan.read_words_async(*ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Bark, LoadOptions};
    use std::path::Path;

    #[test]
    fn the_codebook_plans_share_one_set_of_intermediates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let b = Bark::load(root.join("tests/fixtures/tiny"), &LoadOptions::default()).unwrap();
        let n_cb = b.fine.config().n_codes_total;
        let scratch = Scratch::default();
        let runner = FineRunner::new(&b.ctx, &b.fine, n_cb, 2, &scratch).unwrap();
        let added: Vec<u64> = runner.plans.iter().map(|(p, _)| p.transient_bytes).collect();
        assert_eq!(added.len(), n_cb - N_COARSE_CODEBOOKS);
        // The first plan makes the buffers; the others (same shapes) find them all.
        assert!(added[0] > 0 && added[1..].iter().all(|&a| a == 0), "bytes each plan added: {added:?}");
        assert_eq!(scratch.bytes(), added[0]);
    }
}
