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
use super::scheduler::{Scheduler, Sequence, Window};
use super::step;
use crate::gpu::Context;
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
use crate::progress::{Reporter, Stage};
use crate::vocab::{COARSE_INFER, COARSE_OFFSET, COARSE_SEMANTIC_PAD, CODEBOOK_SIZE, N_COARSE_CODEBOOKS, SEMANTIC_EOS};
use crate::{Error, Result};

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
fn codebook_settings(model: &CausalGpt, base: &SampleSettings, mask: CoarseMask) -> [SampleSettings; 2] {
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

/// One coarse sequence as the scheduler runs it: its job's windows, each token's codebook
/// settings (even tokens of a window codebook 0, odd ones codebook 1), checked against the
/// model's context.
pub(crate) struct CoarseSeq {
    job: Job,
    codebooks: [SampleSettings; 2],
    block_size: usize,
}

impl CoarseSeq {
    /// The generated tokens.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the engine's, native only
    pub fn into_tokens(self) -> Vec<u32> {
        self.job.finish()
    }

    /// Coarse tokens this sequence makes in all.
    pub fn total(&self) -> usize {
        self.job.total()
    }

    /// `base` gives temperature and filters; the codebooks' id ranges are set here.
    pub fn new(model: &CausalGpt, job: Job, base: &SampleSettings, mask: CoarseMask) -> CoarseSeq {
        CoarseSeq { job, codebooks: codebook_settings(model, base, mask), block_size: model.config().block_size }
    }
}

impl Sequence for CoarseSeq {
    fn next_window(&mut self) -> Result<Option<Window>> {
        if self.job.is_done() {
            return Ok(None);
        }
        let (mut prefill, tokens) = self.job.window(self.block_size)?;
        let first = prefill.pop().ok_or_else(|| Error::Invalid("empty coarse prompt".into()))?;
        Ok(Some(Window { prefill, extra: None, first, tokens }))
    }

    fn settings(&self, k: usize) -> SampleSettings {
        self.codebooks[k % 2]
    }

    fn push(&mut self, id: u32) -> bool {
        self.job.push(id);
        false
    }
}

/// Generates the interleaved coarse tokens of every sequence, at most `max_batch` sharing each
/// decode step. Each sequence runs its windows of up to 60 tokens on its own: at a window's
/// end its cache restarts from the next window's prompt while the other rows keep decoding,
/// and a finished sequence's row goes to the next waiting one. A sequence's random stream
/// gives it one uniform per token when sampling. Output `i` belongs to sequence `i`.
pub(crate) async fn generate(
    ctx: &Context,
    model: &CausalGpt,
    seqs: Vec<(CoarseSeq, Option<Rng>)>,
    max_batch: usize,
    progress: &Reporter,
) -> Result<Vec<Vec<u32>>> {
    let busy = seqs.iter().filter(|(s, _)| !s.job.is_done()).count();
    if busy == 0 {
        return Ok(seqs.into_iter().map(|(s, _)| s.job.finish()).collect());
    }
    let scheduler = Scheduler::new(ctx, model, max_batch.min(busy), model.config().block_size)?;
    let done = scheduler.run(seqs, |n| progress.advance(Stage::Coarse, n)).await?;
    Ok(done.into_iter().map(|s| s.job.finish()).collect())
}

/// The GPU bytes [`generate`] holds beyond the weights for `batch` sequences: its cache of
/// full-context sequences, decode step and the prefill of the longest window prompt (less its
/// last token, which the decode step feeds), built and freed unrun.
pub(crate) fn footprint(ctx: &Context, model: &CausalGpt, batch: usize) -> Result<u64> {
    let longest = (MAX_COARSE_INPUT + MAX_COARSE_HISTORY, 0, false);
    step::footprint(ctx, model, batch, model.config().block_size, longest)
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
