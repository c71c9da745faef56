//! Stage 1, text to semantic tokens (transformers' `BarkSemanticModel.generate`).
//!
//! The prompt is 257 positions: at each of positions 0..256 the sum of two lookups of the same
//! token table, the text window (BERT ids + 10048, padded with 129595) and the history window
//! (the voice's semantic prompt, last 256 tokens, right-padded with 10000, or all 10000), and at
//! position 256 the SEMANTIC_INFER token alone. Then one token per KV-cached step, candidates
//! `[0, 10000]` (10001..10047 suppressed), stopping after the EOS 10000 (kept in the output, as
//! transformers keeps it) or after `max_tokens` tokens. Several prompts may share every decode
//! step (`generate`); one prompt alone is a batch of one.

use super::rng::Rng;
use super::step::{self, cache_and_step, check_all_free, DecodeStep, Feed, Prefill};
use crate::gpu::Context;
use crate::graph::Run;
use crate::kv::{PagedKvCache, SeqId};
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
use crate::progress::{Reporter, Stage};
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

/// One sequence's prompt: the text window and the history window (256 ids each).
#[derive(Clone, Debug)]
pub(crate) struct Prompt {
    pub text: Vec<u32>,
    pub history: Vec<u32>,
}

/// Generates semantic tokens for every prompt, at most `max_batch` sequences sharing each
/// decode step (continuous batching: a finished sequence frees its row and its pages, and the
/// next waiting prompt is prefilled and takes the row from the next step on). `rngs[i]` gives
/// prompt `i` one uniform per step when sampling (`None` for greedy settings), so each
/// sequence draws exactly what it would draw alone. Output `i` belongs to prompt `i`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate(
    ctx: &Context,
    model: &CausalGpt,
    prompts: &[Prompt],
    settings: &SampleSettings,
    max_tokens: usize,
    rngs: &mut [Option<Rng>],
    max_batch: usize,
    progress: &Reporter,
) -> Result<Vec<Vec<u32>>> {
    check(model, prompts, max_tokens, rngs.len())?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    // The prompt's 256 positions, then one per token fed back (the last one never is).
    let positions = MAX_TEXT_TOKENS + max_tokens;
    let (mut cache, step) = cache_and_step(ctx, model, max_batch.min(prompts.len()), positions)?;
    let n_pages = cache.free_pages();
    let out = generate_in(ctx, model, &mut cache, &step, prompts, settings, max_tokens, rngs, progress)?;
    check_all_free(&cache, n_pages)?;
    Ok(out)
}

/// The GPU bytes [`generate`] holds beyond the weights for `batch` sequences of up to
/// `max_tokens` each: its cache, decode step and prompt prefill, built and freed unrun.
pub(crate) fn footprint(ctx: &Context, model: &CausalGpt, batch: usize, max_tokens: usize) -> Result<u64> {
    step::footprint(ctx, model, batch, MAX_TEXT_TOKENS + max_tokens, (MAX_TEXT_TOKENS, 0, true))
}

fn check(model: &CausalGpt, prompts: &[Prompt], max_tokens: usize, n_rngs: usize) -> Result<()> {
    if n_rngs != prompts.len() {
        return Err(Error::Invalid(format!("{n_rngs} random streams for {} prompts", prompts.len())));
    }
    for p in prompts {
        if p.text.len() != MAX_TEXT_TOKENS || p.history.len() != MAX_TEXT_TOKENS {
            return Err(Error::Invalid(format!(
                "semantic prompt windows of {} and {} tokens, want {MAX_TEXT_TOKENS} each",
                p.text.len(),
                p.history.len()
            )));
        }
    }
    let cap = max_tokens_for(model.config().block_size);
    if max_tokens == 0 || max_tokens > cap {
        return Err(Error::Invalid(format!("max semantic tokens is {max_tokens}; want 1..={cap}")));
    }
    Ok(())
}

/// A sequence being decoded: its prompt's index, its cache sequence, its tokens so far, the
/// steps submitted for it, and whether its next step is its first.
struct Live {
    index: usize,
    seq: SeqId,
    out: Vec<u32>,
    submitted: usize,
    first: bool,
}

/// [`generate`] in a given cache (empty, room for `step.n_rows()` full sequences), which it
/// leaves empty again. Arguments already checked.
///
/// One step is always in flight ahead of the host: step `k + 1` is queued (each row feeding the
/// token the GPU chose for it in step `k`) before step `k` is read, so the GPU does not idle
/// while the host reads. A row whose step `k` ends it (EOS) has one more step computed and
/// dropped; its cache is freed and the row's next occupant never sees that result (results
/// are matched to rows by prompt index).
#[allow(clippy::too_many_arguments)]
pub(crate) fn generate_in(
    ctx: &Context,
    model: &CausalGpt,
    cache: &mut PagedKvCache,
    step: &DecodeStep,
    prompts: &[Prompt],
    settings: &SampleSettings,
    max_tokens: usize,
    rngs: &mut [Option<Rng>],
    progress: &Reporter,
) -> Result<Vec<Vec<u32>>> {
    step.set_settings(settings)?;
    let mut done: Vec<Option<Vec<u32>>> = vec![None; prompts.len()];
    let mut rows: Vec<Option<Live>> = (0..step.n_rows()).map(|_| None).collect();
    let mut waiting = 0..prompts.len();
    let mut prefill = Prefill::default();
    // The step in flight and, per row, the prompt it was computing for.
    let mut in_flight: Option<(Run, Vec<Option<usize>>)> = None;
    loop {
        for row in rows.iter_mut().filter(|r| r.is_none()) {
            let Some(index) = waiting.next() else { break };
            let seq = cache.add_sequence()?;
            let p = &prompts[index];
            prefill.run(ctx, model, cache, seq, &p.text, Some(&p.history))?;
            *row = Some(Live { index, seq, out: Vec::with_capacity(max_tokens), submitted: 0, first: true });
        }
        // Queue the next step for every row that may still need a token.
        let mut inputs = vec![None; rows.len()];
        let mut tags = vec![None; rows.len()];
        for (r, row) in rows.iter_mut().enumerate() {
            let Some(live) = row.as_mut().filter(|l| l.submitted < max_tokens) else { continue };
            let feed = if live.first { Feed::Token(SEMANTIC_INFER) } else { Feed::Chosen };
            inputs[r] = Some((live.seq, feed));
            tags[r] = Some(live.index);
            (live.first, live.submitted) = (false, live.submitted + 1);
        }
        let next = if tags.iter().any(Option::is_some) {
            let uniforms = draw_uniforms(&tags, rngs, |&i| i);
            Some((step.submit(cache, &inputs, uniforms.as_deref())?, tags))
        } else {
            None
        };
        // Read the step before it and apply it to the rows still holding its sequences.
        if let Some((run, tags)) = in_flight.take() {
            let chosen = step.read(&run)?;
            let mut applied = 0;
            for ((row, &id), tag) in rows.iter_mut().zip(&chosen).zip(tags) {
                let Some(live) = row.as_mut().filter(|l| Some(l.index) == tag) else { continue };
                live.out.push(id);
                applied += 1;
                if id == SEMANTIC_EOS || live.out.len() >= max_tokens {
                    cache.free(live.seq)?;
                    let live = row.take().expect("the row is busy");
                    done[live.index] = Some(live.out);
                }
            }
            progress.advance(Stage::Semantic, applied);
        }
        in_flight = next;
        if in_flight.is_none() {
            if rows.iter().any(Option::is_some) {
                return Err(Error::Gpu("internal: a semantic sequence neither ended nor asked for a token".into()));
            }
            if waiting.is_empty() {
                break;
            }
        }
    }
    Ok(done.into_iter().map(Option::unwrap_or_default).collect())
}

/// One uniform per row for a step: from the row's sequence's stream when it has one, 0 for
/// idle rows and rows without a stream. `None` when no row samples.
pub(crate) fn draw_uniforms<T>(
    rows: &[Option<T>],
    rngs: &mut [Option<Rng>],
    index: impl Fn(&T) -> usize,
) -> Option<Vec<f32>> {
    let mut any = false;
    let u = rows
        .iter()
        .map(|r| match r.as_ref().and_then(|l| rngs[index(l)].as_mut()) {
            Some(rng) => {
                any = true;
                rng.uniform()
            }
            None => 0.0,
        })
        .collect();
    any.then_some(u)
}
