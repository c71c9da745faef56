//! Bark's token ids, in one place: the semantic model's input vocabulary (text, semantic tokens
//! and its special ids), the coarse model's interleaved codebook ids, and the codec's codes.
//! Every stage, the text window and the voice prompts read them from here.

use crate::{Error, Result};

/// Added to every BERT id to place it in the semantic model's input vocabulary.
pub const TEXT_ENCODING_OFFSET: u32 = 10_048;
/// Fills the text window after the text.
pub const TEXT_PAD: u32 = 129_595;

/// Semantic tokens are `0..SEMANTIC_VOCAB`.
pub const SEMANTIC_VOCAB: u32 = 10_000;
/// End of the semantic sequence; also the pad of the semantic history window.
pub const SEMANTIC_EOS: u32 = 10_000;
/// The token after the merged text/history window.
pub const SEMANTIC_INFER: u32 = 129_599;

/// Codec codes are `0..CODEBOOK_SIZE`, in every codebook.
pub const CODEBOOK_SIZE: u32 = 1024;
/// Codebooks the coarse stage makes.
pub const N_COARSE_CODEBOOKS: usize = 2;
/// Codebooks of the fine stage and of a voice's fine prompt.
pub const N_FINE_CODEBOOKS: usize = 8;
/// Codebook 0 of the coarse tokens starts here (the semantic vocabulary's size); codebook `k`
/// at `COARSE_OFFSET + k * CODEBOOK_SIZE`.
pub const COARSE_OFFSET: u32 = 10_000;
/// Pads the semantic part of the coarse prompt (and replaces the semantic EOS).
pub const COARSE_SEMANTIC_PAD: u32 = 12_048;
/// Separates the semantic part of the coarse prompt from the coarse history.
pub const COARSE_INFER: u32 = 12_050;
/// The fine stage's pad code of the codebooks still to predict.
pub const FINE_PAD: u32 = 1024;

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
