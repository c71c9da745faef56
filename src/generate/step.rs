//! What the semantic and coarse stages share: a one-sequence KV cache, the prefill of all but
//! the last prompt token, and one compiled decode step reused for every new token.
//!
//! The prompt's last token goes through the decode step rather than the prefill, so the prefill
//! needs no LM head at all (its logits would be thrown away) and the step's sampler picks the
//! first token exactly as it picks the others.

use crate::gpu::{Context, Tensor};
use crate::graph::{Graph, Plan, Val};
use crate::kv::{KvCacheConfig, PagedKvCache, SeqId, StepRows};
use crate::model::gpt::CausalGpt;
use crate::ops::embedding::{embed, embed_range};
use crate::ops::sampling::{sample, SampleSettings, SamplerInputs};
use crate::{Error, Result};

/// Positions per cache page.
const PAGE_SIZE: usize = 16;

/// A cache for one sequence of up to the model's block size, and that sequence.
pub(crate) fn one_sequence_cache(ctx: &Context, model: &CausalGpt) -> Result<(PagedKvCache, SeqId)> {
    let cfg = model.config();
    let max_seq_len = cfg.block_size;
    let kv = KvCacheConfig {
        layers: cfg.num_layers,
        n_heads: cfg.num_heads,
        head_dim: cfg.head_dim(),
        page_size: PAGE_SIZE,
        n_pages: max_seq_len.div_ceil(PAGE_SIZE),
        max_seqs: 1,
        max_seq_len,
    };
    let mut cache = PagedKvCache::new(ctx, &kv)?;
    let seq = cache.add_sequence()?;
    Ok((cache, seq))
}

/// Runs `ids` (summed with `extra`'s rows when given, ids `NO_ROW` adding nothing) at positions
/// `0..n` through the blocks of `model`, filling `seq`'s (empty) cache. No logits.
pub(crate) fn prefill(
    ctx: &Context,
    model: &CausalGpt,
    cache: &mut PagedKvCache,
    seq: SeqId,
    ids: &[u32],
    extra: Option<&[u32]>,
) -> Result<()> {
    let n = ids.len();
    if n == 0 {
        return Ok(());
    }
    if extra.is_some_and(|e| e.len() != n) {
        return Err(Error::Invalid("prefill: the two id lists differ in length".into()));
    }
    let start = cache.len(seq)?;
    cache.reserve(seq, n)?;
    let rows = cache.step_rows(n)?;
    rows.set_span(cache, seq, start)?;
    let mut g = Graph::new(ctx);
    let t = Tensor::from_u32(ctx, ids, &[n])?;
    let t = g.input(&t);
    let mut x = embed(&mut g, t, model.token_table(), None)?;
    if let Some(extra) = extra {
        let e = Tensor::from_u32(ctx, extra, &[n])?;
        let e = g.input(&e);
        x = embed(&mut g, e, model.token_table(), Some(x))?;
    }
    let x = embed_range(&mut g, n, start as u32, model.position_table(), Some(x))?;
    let kv = cache.bind(&mut g, &rows);
    model.record(&mut g, x, &kv)?;
    let plan = g.compile()?;
    plan.run()
}

/// One token through `model` at a given position, appended to the cache, and the sampled next
/// token: one compiled plan whose small inputs (id, position, step rows, sampler settings and
/// uniform) are rewritten before each run; only the chosen id is read back.
pub(crate) struct DecodeStep {
    ctx: Context,
    id: Tensor,
    position: Tensor,
    rows: StepRows,
    sampler: SamplerInputs,
    plan: Plan,
    chosen: Val,
}

impl DecodeStep {
    pub fn new(ctx: &Context, model: &CausalGpt, cache: &PagedKvCache) -> Result<DecodeStep> {
        let vocab = model.config().output_vocab_size;
        let id = Tensor::from_u32(ctx, &[0], &[1])?;
        let position = Tensor::from_u32(ctx, &[0], &[1])?;
        let rows = cache.step_rows(1)?;
        let sampler = SamplerInputs::new(ctx, 1, vocab)?;
        let mut g = Graph::new(ctx);
        let (i, p) = (g.input(&id), g.input(&position));
        let x = model.embed(&mut g, i, p)?;
        let kv = cache.bind(&mut g, &rows);
        let h = model.record(&mut g, x, &kv)?;
        let logits = model.logits(&mut g, h)?;
        let (settings, uniforms) = (g.input(sampler.settings()), g.input(sampler.uniforms()));
        let s = sample(&mut g, logits, settings, uniforms)?;
        g.readback(s.ids);
        let plan = g.compile()?;
        Ok(DecodeStep { ctx: ctx.clone(), id, position, rows, sampler, plan, chosen: s.ids })
    }

    /// How the next runs choose their token (written to the GPU now).
    pub fn set_settings(&self, settings: &SampleSettings) -> Result<()> {
        self.sampler.set_settings(&self.ctx, std::slice::from_ref(settings))
    }

    /// Feeds `id` at the next position of `seq` (reserving it) and returns the chosen token.
    /// `uniform` (in `[0, 1)`) is written only when given: greedy settings do not read it.
    pub fn run(&self, cache: &mut PagedKvCache, seq: SeqId, id: u32, uniform: Option<f32>) -> Result<u32> {
        let pos = cache.reserve(seq, 1)?.start;
        self.rows.set_span(cache, seq, pos)?;
        self.id.write_words(&self.ctx, &[id])?;
        self.position.write_words(&self.ctx, &[pos as u32])?;
        if let Some(u) = uniform {
            self.sampler.set_uniforms(&self.ctx, &[u])?;
        }
        self.plan.run()?;
        let words = self.plan.read_words(self.chosen)?;
        words.first().copied().ok_or_else(|| Error::Gpu("the sampler returned no id".into()))
    }
}
