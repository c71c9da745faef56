//! Stage 1, text to semantic tokens (transformers' `BarkSemanticModel.generate`).
//!
//! The prompt is 257 positions: at each of positions 0..256 the sum of two lookups of the same
//! token table, the text window (BERT ids + 10048, padded with 129595) and the history window
//! (the voice's semantic prompt, last 256 tokens, right-padded with 10000, or all 10000), and at
//! position 256 the SEMANTIC_INFER token alone. Then one token per KV-cached step, candidates
//! `[0, 10000]` (10001..10047 suppressed), stopping after the EOS 10000 (kept in the output, as
//! transformers keeps it) or after `max_tokens` tokens.

use super::rng::Rng;
use super::step::{one_sequence_cache, prefill, DecodeStep};
use crate::gpu::Context;
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
use crate::text::MAX_TEXT_TOKENS;
use crate::{Error, Result};

/// Semantic tokens are `0..SEMANTIC_VOCAB`.
pub const SEMANTIC_VOCAB: u32 = 10_000;
/// End of the semantic sequence; also the pad of the history window.
pub const SEMANTIC_EOS: u32 = 10_000;
/// The token after the merged text/history window.
pub const SEMANTIC_INFER: u32 = 129_599;
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

/// Generates semantic tokens from a text window (256 ids) and a history window (256 ids).
/// `rng` gives one uniform per step when sampling (`None` for greedy settings).
pub(crate) fn generate(
    ctx: &Context,
    model: &CausalGpt,
    text_window: &[u32],
    history: &[u32],
    settings: &SampleSettings,
    max_tokens: usize,
    mut rng: Option<&mut Rng>,
) -> Result<Vec<u32>> {
    if text_window.len() != MAX_TEXT_TOKENS || history.len() != MAX_TEXT_TOKENS {
        return Err(Error::Invalid(format!(
            "semantic prompt windows of {} and {} tokens, want {MAX_TEXT_TOKENS} each",
            text_window.len(),
            history.len()
        )));
    }
    let cap = max_tokens_for(model.config().block_size);
    if max_tokens == 0 || max_tokens > cap {
        return Err(Error::Invalid(format!("max semantic tokens is {max_tokens}; want 1..={cap}")));
    }
    let (mut cache, seq) = one_sequence_cache(ctx, model)?;
    prefill(ctx, model, &mut cache, seq, text_window, Some(history))?;
    let step = DecodeStep::new(ctx, model, &cache)?;
    step.set_settings(settings)?;
    let mut out = Vec::with_capacity(max_tokens);
    let mut id = SEMANTIC_INFER;
    while out.len() < max_tokens {
        let u = rng.as_deref_mut().map(Rng::uniform);
        id = step.run(&mut cache, seq, id, u)?;
        out.push(id);
        if id == SEMANTIC_EOS {
            break;
        }
    }
    Ok(out)
}
