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
use super::semantic::SEMANTIC_EOS;
use super::step::{one_sequence_cache, prefill, DecodeStep};
use crate::gpu::Context;
use crate::model::gpt::CausalGpt;
use crate::ops::sampling::SampleSettings;
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

/// Generates the interleaved coarse tokens for `semantic` (the semantic stage's output, EOS
/// and all). `history`: the voice's semantic prompt and its coarse prompt (2 rows of codes,
/// already validated). `base` gives temperature and filters; the allowed ranges are set here.
pub(crate) fn generate(
    ctx: &Context,
    model: &CausalGpt,
    semantic: &[u32],
    history: Option<(&[u32], &[Vec<u32>])>,
    base: &SampleSettings,
    mask: CoarseMask,
    mut rng: Option<&mut Rng>,
) -> Result<Vec<u32>> {
    if let Some((i, &bad)) = semantic.iter().enumerate().find(|(_, &id)| id > SEMANTIC_EOS) {
        return Err(Error::Invalid(format!("semantic token {bad} at {i} is above {SEMANTIC_EOS}")));
    }
    let vocab = model.config().output_vocab_size as u32;
    let end_1 = match mask {
        CoarseMask::Transformers => vocab,
        CoarseMask::Original => COARSE_OFFSET + 2 * CODEBOOK_SIZE,
    };
    let codebook_0 = SampleSettings { allowed: (COARSE_OFFSET, COARSE_OFFSET + CODEBOOK_SIZE), ..*base };
    let codebook_1 = SampleSettings { allowed: (COARSE_OFFSET + CODEBOOK_SIZE, end_1), ..*base };

    let sem: Vec<u32> = semantic.iter().map(|&id| if id == SEMANTIC_EOS { COARSE_SEMANTIC_PAD } else { id }).collect();
    let max_len = coarse_len(sem.iter().filter(|&&id| id != COARSE_SEMANTIC_PAD).count());
    let (sem_h, mut x) = match history {
        Some((s, c)) => histories(s, c),
        None => (Vec::new(), Vec::new()),
    };
    let base_idx = sem_h.len();
    let seq: Vec<u32> = sem_h.into_iter().chain(sem).collect();
    let hist_len = x.len();
    if max_len == 0 {
        return Ok(Vec::new());
    }

    let ratio = semantic_to_coarse_ratio();
    let max_sem_hist = max_semantic_history();
    let (mut cache, seqid) = one_sequence_cache(ctx, model)?;
    let step = DecodeStep::new(ctx, model, &cache)?;
    let mut generated = 0;
    for _ in 0..max_len.div_ceil(SLIDING_WINDOW) {
        let idx = base_idx + (generated as f64 / ratio).round_ties_even() as usize;
        let from = idx.saturating_sub(max_sem_hist).min(seq.len());
        let mut prompt: Vec<u32> = seq[from..].iter().copied().take(MAX_COARSE_INPUT).collect();
        prompt.resize(MAX_COARSE_INPUT, COARSE_SEMANTIC_PAD);
        prompt.push(COARSE_INFER);
        prompt.extend_from_slice(&x[x.len().saturating_sub(MAX_COARSE_HISTORY)..]);

        let n_new = SLIDING_WINDOW.min(max_len - generated);
        let needed = prompt.len() + n_new - 1;
        if needed > model.config().block_size {
            return Err(Error::Invalid(format!(
                "a coarse window needs {needed} positions; the model has {}",
                model.config().block_size
            )));
        }
        cache.reset(seqid)?;
        let (last, head) = prompt.split_last().ok_or_else(|| Error::Invalid("empty coarse prompt".into()))?;
        prefill(ctx, model, &mut cache, seqid, head, None)?;
        let mut id = *last;
        for k in 0..n_new {
            step.set_settings(if k % 2 == 0 { &codebook_0 } else { &codebook_1 })?;
            let u = rng.as_deref_mut().map(Rng::uniform);
            id = step.run(&mut cache, seqid, id, u)?;
            x.push(id);
        }
        generated = x.len() - hist_len;
    }
    Ok(x.split_off(hist_len))
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
