//! Stage 2, semantic tokens to the first two EnCodec codebooks (transformers'
//! `BarkCoarseModel.generate`, the original's `generate_coarse`).
//!
//! Coarse tokens interleave the two codebooks frame by frame: codebook 0 as `10000 + c`,
//! codebook 1 as `11024 + c`, 75 frames (150 tokens) per second against 49.9 semantic tokens,
//! hence the ratio 150 / 49.9. Generation runs in windows of 60 tokens; every window starts from a
//! fresh KV cache with the prompt
//! `semantic[idx - 209 ..][..256]` (right-padded with 12048) `++ [12050] ++ coarse[-630..]`,
//! where `idx` is the semantic position aligned with the coarse tokens made so far and `coarse`
//! includes the voice's coarse history. Steps alternate between the two codebooks (even steps
//! of a window codebook 0, odd steps codebook 1).
//!
//! # Where transformers and the original differ: the codebook-1 mask ([`CoarseMask`])
//!
//! On an odd step the original Bark samples only from `[11024, 12048)`. transformers'
//! `AlternatingCodebooksLogitsProcessor` only sets the ids *below* 11024 to -inf, so the 48 ids
//! `12048..12096` (pad, infer and unused ids) stay candidates; with random weights greedy
//! decoding does pick them (the tiny fixture holds 12054). The fine stage then maps such an id
//! to `(id - 10000) % 1024`. [`CoarseMask::Transformers`] reproduces that (it is the default,
//! and what greedy parity with transformers needs); [`CoarseMask::Original`] is the original's.

use super::rng::Rng;
use super::semantic::draw_uniforms;
use super::semantic::SEMANTIC_EOS;
use super::step::{self, cache_and_step, check_all_free, DecodeStep, Feed, Prefill};
use crate::gpu::Context;
use crate::graph::Run;
use crate::kv::{PagedKvCache, SeqId};
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
use crate::progress::{Reporter, Stage};
use crate::{Error, Result};

/// Codebook 0 of the coarse tokens starts here (the semantic vocabulary's size).
pub const COARSE_OFFSET: u32 = 10_000;
pub const CODEBOOK_SIZE: u32 = 1024;
/// Pads the semantic part of the coarse prompt (and replaces the semantic EOS).
pub const COARSE_SEMANTIC_PAD: u32 = 12_048;
/// Separates the semantic part of the prompt from the coarse history.
pub const COARSE_INFER: u32 = 12_050;
pub const N_COARSE_CODEBOOKS: usize = 2;
pub const MAX_COARSE_INPUT: usize = 256;
pub const MAX_COARSE_HISTORY: usize = 630;
pub const SLIDING_WINDOW: usize = 60;

/// Which ids an odd (codebook 1) step may choose; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoarseMask {
    /// transformers: every id from 11024 up to the vocabulary's end.
    #[default]
    Transformers,
    /// The original Bark: `[11024, 12048)` only.
    Original,
}

/// Coarse tokens per semantic token: 75 Hz / 49.9 Hz * 2 codebooks (computed as Python does).
pub fn semantic_to_coarse_ratio() -> f64 {
    75.0 / 49.9 * N_COARSE_CODEBOOKS as f64
}

/// Semantic tokens kept as history in a window: floor(630 / ratio) = 209.
fn max_semantic_history() -> usize {
    (MAX_COARSE_HISTORY as f64 / semantic_to_coarse_ratio()).floor() as usize
}

/// Coarse tokens to generate for `n` semantic tokens (EOS/pad excluded): an even count,
/// computed in f32 as transformers' `torch.floor(lengths * ratio / 2)` does on an int tensor.
pub fn coarse_len(n: usize) -> usize {
    let ratio = semantic_to_coarse_ratio() as f32;
    let frames = (n as f32 * ratio / N_COARSE_CODEBOOKS as f32).floor();
    (frames * N_COARSE_CODEBOOKS as f32).round() as usize
}

/// The voice's histories trimmed as transformers' `preprocess_histories`: the semantic history
/// and the interleaved, offset coarse history (its last two tokens dropped, as the original
/// does "for time alignment").
fn histories(semantic: &[u32], coarse: &[Vec<u32>]) -> (Vec<u32>, Vec<u32>) {
    let ratio = semantic_to_coarse_ratio();
    let frames = coarse.first().map_or(0, Vec::len);
    let co: Vec<u32> = (0..frames)
        .flat_map(|t| (0..coarse.len()).map(move |cb| coarse[cb][t] + CODEBOOK_SIZE * cb as u32 + COARSE_OFFSET))
        .collect();
    let n_sh =
        max_semantic_history().min(semantic.len() - semantic.len() % 2).min((co.len() as f64 / ratio).floor() as usize);
    let n_ch = ((n_sh as f64 * ratio).round_ties_even() as usize).min(co.len());
    let sem_h = semantic[semantic.len() - n_sh..].to_vec();
    let mut co_h = co[co.len() - n_ch..].to_vec();
    co_h.truncate(co_h.len().saturating_sub(2));
    (sem_h, co_h)
}

/// One sequence of the coarse stage: its semantic input (with the voice's semantic history in
/// front) and its coarse tokens so far (the voice's coarse history, then the generated ones).
/// Every window's prompt is made here, for the one-sequence and the batched runs alike.
pub(crate) struct Job {
    /// Semantic history then the semantic tokens, EOS replaced by the pad.
    semantic: Vec<u32>,
    /// Where the semantic tokens start in `semantic` (the history's length).
    base_idx: usize,
    /// Coarse history then generated tokens.
    coarse: Vec<u32>,
    hist_len: usize,
    /// Coarse tokens to generate.
    max_len: usize,
}

impl Job {
    /// Checks `semantic` (the semantic stage's output, EOS and all). `history`: the voice's
    /// semantic prompt and its coarse prompt (2 rows of codes, already validated).
    pub fn new(semantic: &[u32], history: Option<(&[u32], &[Vec<u32>])>) -> Result<Job> {
        if let Some((i, &bad)) = semantic.iter().enumerate().find(|(_, &id)| id > SEMANTIC_EOS) {
            return Err(Error::Invalid(format!("semantic token {bad} at {i} is above {SEMANTIC_EOS}")));
        }
        let sem: Vec<u32> =
            semantic.iter().map(|&id| if id == SEMANTIC_EOS { COARSE_SEMANTIC_PAD } else { id }).collect();
        let max_len = coarse_len(sem.iter().filter(|&&id| id != COARSE_SEMANTIC_PAD).count());
        let (sem_h, coarse) = match history {
            Some((s, c)) => histories(s, c),
            None => (Vec::new(), Vec::new()),
        };
        let base_idx = sem_h.len();
        let hist_len = coarse.len();
        Ok(Job { semantic: sem_h.into_iter().chain(sem).collect(), base_idx, coarse, hist_len, max_len })
    }

    fn generated(&self) -> usize {
        self.coarse.len() - self.hist_len
    }

    pub fn is_done(&self) -> bool {
        self.generated() >= self.max_len
    }

    /// Coarse tokens this job makes in all.
    pub fn total(&self) -> usize {
        self.max_len
    }

    /// The next window's prompt, `semantic[idx - 209 ..][..256]` (right-padded with 12048)
    /// `++ [12050] ++ coarse[-630..]`, and how many tokens the window makes; checked against a
    /// context of `block_size` positions.
    pub fn window(&self, block_size: usize) -> Result<(Vec<u32>, usize)> {
        let generated = self.generated();
        let idx = self.base_idx + (generated as f64 / semantic_to_coarse_ratio()).round_ties_even() as usize;
        let from = idx.saturating_sub(max_semantic_history()).min(self.semantic.len());
        let mut prompt: Vec<u32> = self.semantic[from..].iter().copied().take(MAX_COARSE_INPUT).collect();
        prompt.resize(MAX_COARSE_INPUT, COARSE_SEMANTIC_PAD);
        prompt.push(COARSE_INFER);
        prompt.extend_from_slice(&self.coarse[self.coarse.len().saturating_sub(MAX_COARSE_HISTORY)..]);
        let n_new = SLIDING_WINDOW.min(self.max_len - generated);
        let needed = prompt.len() + n_new - 1;
        if needed > block_size {
            return Err(Error::Invalid(format!(
                "a coarse window needs {needed} positions; the model has {block_size}"
            )));
        }
        Ok((prompt, n_new))
    }

    pub fn push(&mut self, id: u32) {
        self.coarse.push(id);
    }

    /// The generated tokens.
    pub fn finish(mut self) -> Vec<u32> {
        self.coarse.split_off(self.hist_len)
    }
}

/// The sampling settings of even (codebook 0) and odd (codebook 1) steps: `base`'s
/// temperature and filters over each codebook's ids.
pub(crate) fn codebook_settings(model: &CausalGpt, base: &SampleSettings, mask: CoarseMask) -> [SampleSettings; 2] {
    let vocab = model.config().output_vocab_size as u32;
    let end_1 = match mask {
        CoarseMask::Transformers => vocab,
        CoarseMask::Original => COARSE_OFFSET + 2 * CODEBOOK_SIZE,
    };
    [
        SampleSettings { allowed: (COARSE_OFFSET, COARSE_OFFSET + CODEBOOK_SIZE), ..*base },
        SampleSettings { allowed: (COARSE_OFFSET + CODEBOOK_SIZE, end_1), ..*base },
    ]
}

/// Generates the interleaved coarse tokens of every job, at most `max_batch` sequences sharing
/// each decode step. Sequences advance in lockstep windows: each window starts with every live
/// sequence's cache reset and its window prompt prefilled, then up to 60 steps over all live
/// rows (a row whose last window is shorter idles for the rest). A finished sequence leaves at
/// a window's end and a waiting job takes its row. `rngs[i]`: job `i`'s stream (one uniform
/// per token when sampling). `base` gives temperature and filters; the allowed ranges are set
/// here. Output `i` belongs to job `i`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate(
    ctx: &Context,
    model: &CausalGpt,
    jobs: Vec<Job>,
    base: &SampleSettings,
    mask: CoarseMask,
    rngs: &mut [Option<Rng>],
    max_batch: usize,
    progress: &Reporter,
) -> Result<Vec<Vec<u32>>> {
    if rngs.len() != jobs.len() {
        return Err(Error::Invalid(format!("{} random streams for {} coarse jobs", rngs.len(), jobs.len())));
    }
    let busy = jobs.iter().filter(|j| !j.is_done()).count();
    if busy == 0 {
        return Ok(jobs.into_iter().map(Job::finish).collect());
    }
    let (mut cache, step) = cache_and_step(ctx, model, max_batch.min(busy), model.config().block_size)?;
    let n_pages = cache.free_pages();
    let codebooks = codebook_settings(model, base, mask);
    let out = generate_in(ctx, model, &mut cache, &step, jobs, &codebooks, rngs, progress)?;
    check_all_free(&cache, n_pages)?;
    Ok(out)
}

/// The GPU bytes [`generate`] holds beyond the weights for `batch` sequences: its cache of
/// full-context sequences, decode step and the prefill of the longest window prompt (less its
/// last token, which the decode step feeds), built and freed unrun.
pub(crate) fn footprint(ctx: &Context, model: &CausalGpt, batch: usize) -> Result<u64> {
    let longest = (MAX_COARSE_INPUT + MAX_COARSE_HISTORY, 0, false);
    step::footprint(ctx, model, batch, model.config().block_size, longest)
}

/// A job holding a decode row.
struct Live {
    index: usize,
    seq: SeqId,
    job: Job,
    /// The current window's first token (its prompt's last) and how many tokens it makes.
    next: u32,
    left: usize,
}

/// [`generate`] in a given cache (empty, room for `step.n_rows()` full sequences), which it
/// leaves empty again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate_in(
    ctx: &Context,
    model: &CausalGpt,
    cache: &mut PagedKvCache,
    step: &DecodeStep,
    jobs: Vec<Job>,
    codebooks: &[SampleSettings; 2],
    rngs: &mut [Option<Rng>],
    progress: &Reporter,
) -> Result<Vec<Vec<u32>>> {
    let block_size = model.config().block_size;
    let mut done: Vec<Option<Vec<u32>>> = (0..jobs.len()).map(|_| None).collect();
    let mut waiting = jobs.into_iter().enumerate();
    let mut rows: Vec<Option<Live>> = (0..step.n_rows()).map(|_| None).collect();
    let mut prefill = Prefill::default();
    loop {
        // Window boundary: finished jobs leave, waiting ones join, every live job's cache
        // restarts from its window prompt.
        for row in rows.iter_mut() {
            if row.as_ref().is_some_and(|l| l.job.is_done()) {
                let live = row.take().expect("the row is busy");
                cache.free(live.seq)?;
                done[live.index] = Some(live.job.finish());
            }
            while row.is_none() {
                let Some((index, job)) = waiting.next() else { break };
                if job.is_done() {
                    done[index] = Some(job.finish());
                } else {
                    *row = Some(Live { index, seq: cache.add_sequence()?, job, next: 0, left: 0 });
                }
            }
            if let Some(live) = row {
                let (prompt, n_new) = live.job.window(block_size)?;
                let (last, head) = prompt.split_last().ok_or_else(|| Error::Invalid("empty coarse prompt".into()))?;
                cache.reset(live.seq)?;
                prefill.run(ctx, model, cache, live.seq, head, None)?;
                (live.next, live.left) = (*last, n_new);
            }
        }
        if rows.iter().all(Option::is_none) {
            break;
        }
        // Step k + 1 is queued (feeding the GPU's own choice of step k) before step k is read.
        let window = rows.iter().flatten().map(|l| l.left).max().unwrap_or(0);
        let mut in_flight: Option<(Run, Vec<bool>)> = None;
        for k in 0..=window {
            let next = if k < window {
                step.set_settings(&codebooks[k % 2])?;
                let busy: Vec<Option<&Live>> = rows.iter().map(|r| r.as_ref().filter(|l| k < l.left)).collect();
                let inputs: Vec<_> = busy
                    .iter()
                    .map(|l| l.map(|l| (l.seq, if k == 0 { Feed::Token(l.next) } else { Feed::Chosen })))
                    .collect();
                let uniforms = draw_uniforms(&busy, rngs, |l| l.index);
                let mask = busy.iter().map(Option::is_some).collect();
                Some((step.submit(cache, &inputs, uniforms.as_deref())?, mask))
            } else {
                None
            };
            if let Some((run, mask)) = in_flight.take() {
                let chosen = step.read(&run)?;
                progress.advance(Stage::Coarse, mask.iter().filter(|&&b| b).count());
                for ((row, &id), busy) in rows.iter_mut().zip(&chosen).zip(mask) {
                    if let Some(live) = row.as_mut().filter(|_| busy) {
                        live.job.push(id);
                    }
                }
            }
            in_flight = next;
        }
    }
    Ok(done.into_iter().map(Option::unwrap_or_default).collect())
}

/// Interleaved coarse tokens to their codes, `[codebook][frame]` in `0..1024` (the fine
/// stage's `(id - 10000) % 1024`, which also folds transformers' ids above 12047).
pub fn coarse_codes(coarse: &[u32]) -> Result<[Vec<u32>; 2]> {
    if !coarse.len().is_multiple_of(N_COARSE_CODEBOOKS) {
        return Err(Error::Invalid(format!("{} coarse tokens do not make whole frames of 2", coarse.len())));
    }
    let mut out = [Vec::new(), Vec::new()];
    for (i, &id) in coarse.iter().enumerate() {
        if id < COARSE_OFFSET {
            return Err(Error::Invalid(format!("coarse token {id} at {i} is below {COARSE_OFFSET}")));
        }
        out[i % 2].push((id - COARSE_OFFSET) % CODEBOOK_SIZE);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_bark() {
        assert_eq!(max_semantic_history(), 209);
        // 24 semantic tokens -> floor(36.07) frames -> 72 tokens (the fixture's length).
        assert_eq!(coarse_len(24), 72);
        assert_eq!(coarse_len(0), 0);
    }

    #[test]
    fn histories_trim_as_transformers() {
        // The fixture's voice shape: 40 semantic tokens, 60 coarse frames (120 tokens):
        // n_sh = min(209, 40, floor(120 / 3.006) = 39) = 39, n_ch = round(39 * 3.006) = 117,
        // then the last two tokens go.
        let sem: Vec<u32> = (0..40).collect();
        let coarse = vec![(0..60).collect::<Vec<u32>>(), (100..160).collect()];
        let (s, c) = histories(&sem, &coarse);
        assert_eq!(s, (1..40).collect::<Vec<u32>>());
        assert_eq!(c.len(), 115);
        // Interleaved t-major: the last full frame before the dropped two is frame 58.
        assert_eq!(c[c.len() - 2..], [10_000 + 58, 11_024 + 158]);
    }
}
