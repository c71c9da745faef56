//! How much GPU memory a batch size needs, known before generating: [`Bark::stage_memory`]
//! builds each stage's KV cache and compiled plans exactly as the stage does, counts their
//! bytes and frees them, without running anything (so it answers in moments even for Bark's
//! full sizes on a software adapter). With the weights, the largest stage is the peak of a
//! generation, because `Bark` frees each stage's buffers before the next one starts.

use super::bark::Bark;
use super::{coarse, fine, semantic};
use crate::gpu::{DType, Tensor};
use crate::vocab::N_COARSE_CODEBOOKS;
use crate::Result;

/// GPU bytes each stage holds beyond the weights at its peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageMemory {
    /// KV cache, decode step, prompt prefill.
    pub semantic: u64,
    /// KV cache of full-context sequences, decode step, the longest window prefill.
    pub coarse: u64,
    /// The `[B, 1024, 8]` window inputs and the intermediates its codebook plans share.
    pub fine: u64,
    /// The sequences per fine run, B: the batch, or fewer where one run's largest
    /// intermediate would pass the adapter's storage-binding limit.
    pub fine_batch: usize,
    /// The codec's decode of one sequence of the budget's length (texts are decoded one at a
    /// time): its upsampling stages hold `[32 channels, 320 x frames]` f32 and neighbours, about
    /// 100 MB for 10 s of audio, more than a batch-1 cache.
    pub decode: u64,
}

impl StageMemory {
    /// The most any stage holds: add the weights for a generation's peak.
    pub fn largest(&self) -> u64 {
        self.semantic.max(self.coarse).max(self.fine).max(self.decode)
    }
}

impl Bark {
    /// The GPU bytes each stage would hold beyond the weights for up to `max_batch` sequences
    /// at once and a semantic budget of `max_semantic_tokens` per text (see [`StageMemory`]).
    /// Counted with [`crate::Context::stats`], so nothing else should allocate on the context
    /// meanwhile.
    pub fn stage_memory(&self, max_batch: usize, max_semantic_tokens: usize) -> Result<StageMemory> {
        let batch = max_batch.max(1);
        Ok(StageMemory {
            semantic: semantic::footprint(&self.ctx, &self.semantic, batch, max_semantic_tokens)?,
            coarse: coarse::footprint(&self.ctx, &self.coarse, batch)?,
            fine: fine::footprint(&self.ctx, &self.fine, batch)?,
            fine_batch: fine::sequences_per_run(&self.ctx, &self.fine, batch),
            decode: self.decode_footprint(coarse::coarse_len(max_semantic_tokens) / N_COARSE_CODEBOOKS)?,
        })
    }

    /// What decoding one sequence of `frames` holds: its codes and the compiled codec plan.
    fn decode_footprint(&self, frames: usize) -> Result<u64> {
        let n_q = self.config.fine_acoustics_config.n_codes_total;
        self.ctx.bytes_held(|| {
            // Zeros are valid codes; the plan is what Bark::decode compiles, and reading its
            // samples back takes a staging buffer of their size.
            let codes = Tensor::empty(&self.ctx, &[n_q, 1, frames.max(1)], DType::U32)?;
            let (plan, y) = self.codec.compile(&self.ctx, &codes)?;
            let staging = Tensor::empty(&self.ctx, &[plan.tensor(y).numel()], DType::F32)?;
            Ok((codes, plan, staging))
        })
    }
}
