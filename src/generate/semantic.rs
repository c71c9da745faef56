//! Stage 1, text to semantic tokens (transformers' `BarkSemanticModel.generate`).
//!
//! The prompt is 257 positions: at each of positions 0..256 the sum of two lookups of the same
//! token table, the text window (BERT ids + 10048, padded with 129595) and the history window
//! (the voice's semantic prompt, last 256 tokens, right-padded with 10000, or all 10000), and at
//! position 256 the SEMANTIC_INFER token alone. Then one token per KV-cached step, candidates
//! `[0, 10000]` (10001..10047 suppressed), stopping after the EOS 10000 (kept in the output, as
//! transformers keeps it) or after `max_tokens` tokens. Several prompts may share every decode
//! step (on the causal stages' one scheduler); one prompt alone is a batch of one.

use super::rng::Rng;
use super::scheduler::{Scheduler, Sequence, Window};
use super::step;
use crate::gpu::Context;
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
use crate::progress::{Reporter, Stage};
use crate::text::MAX_TEXT_TOKENS;
use crate::vocab::{SEMANTIC_EOS, SEMANTIC_INFER};
use crate::{Error, Result};

/// Bark's default cap on semantic tokens (with a 257-token prompt it fills the 1024 context).
pub const MAX_SEMANTIC_TOKENS: usize = 768;

/// The history window: the last 256 tokens of the prompt, right-padded with the EOS/pad token.
pub fn history_window(prompt: Option<&[u32]>) -> Vec<u32> {
    let p = prompt.unwrap_or(&[]);
    let mut h = p[p.len().saturating_sub(MAX_TEXT_TOKENS)..].to_vec();
    h.resize(MAX_TEXT_TOKENS, SEMANTIC_EOS);
    h
}

/// The most tokens a `block_size` context leaves after the 257-token prompt (the last token
/// is never fed back, so it needs no position).
pub fn max_tokens_for(block_size: usize) -> usize {
    block_size.saturating_sub(MAX_TEXT_TOKENS)
}

/// Checks a cap on semantic tokens against `model`'s context.
pub(crate) fn check_max_tokens(model: &CausalGpt, max_tokens: usize) -> Result<()> {
    let cap = max_tokens_for(model.config().block_size);
    if max_tokens == 0 || max_tokens > cap {
        return Err(Error::Invalid(format!(
            "max_semantic_tokens {max_tokens} is not in 1..={cap} (this model's context)"
        )));
    }
    Ok(())
}

/// One sequence's prompt: the text window and the history window (256 ids each).
#[derive(Clone, Debug)]
pub(crate) struct Prompt {
    pub text: Vec<u32>,
    pub history: Vec<u32>,
}

/// Generates every sequence's semantic tokens, at most `max_batch` sharing each decode step
/// (continuous batching: a finished sequence frees its row and its pages, and the next waiting
/// one is prefilled and takes the row from the next step on). A sequence's random stream gives
/// it one uniform per step when sampling (`None` for greedy settings), so each sequence draws
/// exactly what it would draw alone. Output `i` belongs to sequence `i`.
pub(crate) async fn generate(
    ctx: &Context,
    model: &CausalGpt,
    seqs: Vec<(SemanticSeq, Option<Rng>)>,
    max_batch: usize,
    progress: &Reporter,
) -> Result<Vec<Vec<u32>>> {
    let Some(longest) = seqs.iter().map(|(s, _)| s.max_tokens).max() else { return Ok(Vec::new()) };
    // The prompt's 256 positions, then one per token fed back (the last one never is).
    let scheduler = Scheduler::new(ctx, model, max_batch.min(seqs.len()), MAX_TEXT_TOKENS + longest)?;
    let done = scheduler.run(seqs, |n| progress.advance(Stage::Semantic, n)).await?;
    Ok(done.into_iter().map(SemanticSeq::into_tokens).collect())
}

/// The GPU bytes [`generate`] holds beyond the weights for `batch` sequences of up to
/// `max_tokens` each: its cache, decode step and prompt prefill, built and freed unrun.
pub(crate) fn footprint(ctx: &Context, model: &CausalGpt, batch: usize, max_tokens: usize) -> Result<u64> {
    step::footprint(ctx, model, batch, MAX_TEXT_TOKENS + max_tokens, (MAX_TEXT_TOKENS, 0, true))
}

/// One text's semantic sequence: a single window (the text and history windows prefilled,
/// then SEMANTIC_INFER) that ends at the EOS or after `max_tokens` tokens.
pub(crate) struct SemanticSeq {
    prompt: Option<Prompt>,
    settings: SampleSettings,
    max_tokens: usize,
    out: Vec<u32>,
}

impl SemanticSeq {
    /// Checks the prompt's windows and `max_tokens` against `model`'s context.
    pub fn new(model: &CausalGpt, prompt: Prompt, settings: SampleSettings, max_tokens: usize) -> Result<Self> {
        if prompt.text.len() != MAX_TEXT_TOKENS || prompt.history.len() != MAX_TEXT_TOKENS {
            return Err(Error::Invalid(format!(
                "semantic prompt windows of {} and {} tokens, want {MAX_TEXT_TOKENS} each",
                prompt.text.len(),
                prompt.history.len()
            )));
        }
        check_max_tokens(model, max_tokens)?;
        Ok(SemanticSeq { prompt: Some(prompt), settings, max_tokens, out: Vec::with_capacity(max_tokens) })
    }

    /// The tokens made (ending with the EOS when the model stopped by itself).
    pub fn into_tokens(self) -> Vec<u32> {
        self.out
    }
}

impl Sequence for SemanticSeq {
    fn next_window(&mut self) -> Result<Option<Window>> {
        Ok(self.prompt.take().map(|p| Window {
            prefill: p.text,
            extra: Some(p.history),
            first: SEMANTIC_INFER,
            tokens: self.max_tokens,
        }))
    }

    fn settings(&self, _k: usize) -> SampleSettings {
        self.settings
    }

    fn push(&mut self, id: u32) -> bool {
        self.out.push(id);
        id == SEMANTIC_EOS
    }
}
