//! What the semantic and coarse stages share: a KV cache for the sequences live at once, the
//! prefill of all but the last prompt token of one sequence, and one compiled decode step (one
//! row per live sequence) reused for every new token.
//!
//! The prompt's last token goes through the decode step rather than the prefill, so the prefill
//! needs no LM head at all (its logits would be thrown away) and the step's sampler picks the
//! first token exactly as it picks the others.

use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Plan, Run, Val};
use crate::kv::{KvCacheConfig, PagedKvCache, SeqId, StepRows};
use crate::model::gpt::CausalGpt;
use crate::ops::embedding::{embed, embed_range};
use crate::ops::matmul::GEMV_MAX_M;
use crate::ops::sampling::{sample, SampleSettings, SamplerInputs};
use crate::{Error, Result};

/// Positions per cache page.
const PAGE_SIZE: usize = 16;

/// A cache for up to `seqs` sequences live at once, each of up to `positions` (at most the
/// model's block size), with pages for all of them at full length (a sequence never waits for
/// pages). Fewer sequences when one layer's pool for `seqs` would pass the adapter's binding
/// limit: the caller sizes its decode step by the cache's `max_seqs`. The cache stores K and V in
/// the model's weight dtype: an f16 model (already not bit-exact) halves its cache too.
pub(crate) fn cache_for(ctx: &Context, model: &CausalGpt, seqs: usize, positions: usize) -> Result<PagedKvCache> {
    let cfg = model.config();
    let max_seq_len = positions.clamp(1, cfg.block_size);
    let pages_per_seq = max_seq_len.div_ceil(PAGE_SIZE);
    let dtype = model.dtype();
    let seq_bytes = dtype.bytes(&[pages_per_seq * PAGE_SIZE, cfg.hidden_size]);
    let fit = (ctx.max_binding_bytes() / seq_bytes.max(1)).max(1) as usize;
    let seqs = seqs.min(fit).max(1);
    let kv = KvCacheConfig {
        layers: cfg.num_layers,
        n_heads: cfg.num_heads,
        head_dim: cfg.head_dim(),
        page_size: PAGE_SIZE,
        n_pages: seqs * pages_per_seq,
        max_seqs: seqs,
        max_seq_len,
        dtype,
    };
    PagedKvCache::new(ctx, &kv)
}

/// A causal stage's cache for `batch` sequences of up to `positions` and its decode step, one
/// row per sequence the cache holds.
pub(crate) fn cache_and_step(
    ctx: &Context,
    model: &CausalGpt,
    batch: usize,
    positions: usize,
) -> Result<(PagedKvCache, DecodeStep)> {
    let cache = cache_for(ctx, model, batch, positions)?;
    let step = DecodeStep::new(ctx, model, &cache, cache.geometry().max_seqs as usize)?;
    Ok((cache, step))
}

/// The GPU bytes a causal stage holds beyond the weights: [`cache_and_step`] and the prefill
/// plan for prompts of `prefill` (length, start, with extra ids), built and freed unrun.
pub(crate) fn footprint(
    ctx: &Context,
    model: &CausalGpt,
    batch: usize,
    positions: usize,
    prefill: (usize, usize, bool),
) -> Result<u64> {
    ctx.bytes_held(|| {
        let (cache, step) = cache_and_step(ctx, model, batch, positions)?;
        let mut plan = Prefill::default();
        plan.prepare(ctx, model, &cache, prefill)?;
        Ok((cache, step, plan))
    })
}

/// Prefills one sequence at a time: runs `ids` (summed with `extra`'s rows when given, ids
/// `NO_ROW` adding nothing) at the sequence's next positions through the blocks of the model,
/// filling its cache. No logits. The compiled plan is kept and reused while prompts keep its
/// length and start: every semantic prompt prefills 256 positions, and every coarse window
/// 886 once the coarse history is full, so most prefills cost a few buffer writes rather than a
/// compile (graph planning and a bind group per dispatch).
#[derive(Default)]
pub(crate) struct Prefill {
    last: Option<PrefillPlan>,
}

/// A prefill compiled for one (length, start, with extra ids) over one cache; the ids and the
/// step rows are its inputs, rewritten before each run.
struct PrefillPlan {
    key: (usize, usize, bool),
    ids: Tensor,
    extra: Option<Tensor>,
    rows: StepRows,
    plan: Plan,
}

impl Prefill {
    /// Prefills `seq` (of `cache`, the same cache on every call) with `ids`.
    pub fn run(
        &mut self,
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
        self.prepare(ctx, model, cache, (n, start, extra.is_some()))?;
        let p = self.last.as_ref().expect("compiled by prepare");
        p.ids.write_words(ctx, ids)?;
        if let (Some(t), Some(e)) = (&p.extra, extra) {
            t.write_words(ctx, e)?;
        }
        p.rows.set_span(cache, seq, start)?;
        p.plan.run()
    }

    /// Compiles the plan for prompts of `n` ids at position `start` (with extra ids or not),
    /// unless the last one was for the same.
    pub fn prepare(
        &mut self,
        ctx: &Context,
        model: &CausalGpt,
        cache: &PagedKvCache,
        key: (usize, usize, bool),
    ) -> Result<()> {
        if self.last.as_ref().is_none_or(|p| p.key != key) {
            self.last = None; // its buffers go back to the pool for the new plan
            self.last = Some(PrefillPlan::compile(ctx, model, cache, key)?);
        }
        Ok(())
    }
}

impl PrefillPlan {
    fn compile(
        ctx: &Context,
        model: &CausalGpt,
        cache: &PagedKvCache,
        key: (usize, usize, bool),
    ) -> Result<PrefillPlan> {
        let (n, start, with_extra) = key;
        let rows = cache.step_rows(n)?;
        let mut g = Graph::new(ctx);
        let ids = Tensor::empty(ctx, &[n], DType::U32)?;
        let v = g.input(&ids);
        let mut x = embed(&mut g, v, model.token_table(), None)?;
        let extra = if with_extra { Some(Tensor::empty(ctx, &[n], DType::U32)?) } else { None };
        if let Some(e) = &extra {
            let e = g.input(e);
            x = embed(&mut g, e, model.token_table(), Some(x))?;
        }
        let x = embed_range(&mut g, n, start as u32, model.position_table(), Some(x))?;
        let kv = cache.bind(&mut g, &rows);
        model.record(&mut g, x, &kv)?;
        Ok(PrefillPlan { key, ids, extra, rows, plan: g.compile()? })
    }
}

/// What a busy row feeds at its next position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    /// This token: the first step of a sequence or of a window.
    Token(u32),
    /// The token this row chose in the previous run, which the GPU already copied into the
    /// step's ids: so the next step can be queued before the host has read that token.
    Chosen,
}

/// One token per row through `model`, each appended to its sequence's cache, and each row's
/// sampled next token: one compiled plan for a fixed number of rows whose small inputs (ids,
/// positions, step rows, sampler settings and uniforms) are rewritten before each run; only the
/// chosen ids are read back. A row may be idle (no sequence): the kernels skip it and its
/// output is ignored.
///
/// The plan copies the chosen ids into its own id inputs after each run, so a loop can submit
/// step `k + 1` ([`Feed::Chosen`]) and only then read step `k` ([`DecodeStep::submit`],
/// [`DecodeStep::read`]): the GPU never waits for the host's round trip. At most two runs may
/// be unread at once.
///
/// A row's result must not depend on how many rows share the step (a batched sequence must
/// decode exactly as it does alone). `linear` runs up to [`GEMV_MAX_M`] rows as a GEMV whose
/// per-row sums do not depend on the row count, and more rows as a tiled GEMM whose sums are
/// ordered differently (a few ulp apart; tests/gpu/batch.rs shows both). So the plan runs its rows
/// in groups of at most `GEMV_MAX_M`, each group its own chain of kernels, all in one submit.
pub(crate) struct DecodeStep {
    ctx: Context,
    groups: Vec<RowGroup>,
    plan: Plan,
    /// Each row's settings as the GPU holds them.
    settings: Vec<SampleSettings>,
}

/// One busy row of a step: its sequence, what it feeds, how it picks its token, and its
/// uniform number when it samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowInput {
    pub seq: SeqId,
    pub feed: Feed,
    pub settings: SampleSettings,
    pub uniform: Option<f32>,
}

/// The inputs and output of one group of at most `GEMV_MAX_M` rows.
struct RowGroup {
    ids: Tensor,
    positions: Tensor,
    rows: StepRows,
    sampler: SamplerInputs,
    chosen: Val,
}

impl DecodeStep {
    pub fn new(ctx: &Context, model: &CausalGpt, cache: &PagedKvCache, n_rows: usize) -> Result<DecodeStep> {
        if n_rows == 0 {
            return Err(Error::Invalid("a decode step needs at least one row".into()));
        }
        let vocab = model.config().output_vocab_size;
        let mut g = Graph::new(ctx);
        let mut groups = Vec::with_capacity(n_rows.div_ceil(GEMV_MAX_M));
        for first in (0..n_rows).step_by(GEMV_MAX_M) {
            let n = GEMV_MAX_M.min(n_rows - first);
            let ids = Tensor::from_u32(ctx, &vec![0; n], &[n])?;
            let positions = Tensor::from_u32(ctx, &vec![0; n], &[n])?;
            let rows = cache.step_rows(n)?;
            let sampler = SamplerInputs::new(ctx, n, vocab)?;
            let (i, p) = (g.input(&ids), g.input(&positions));
            let x = model.embed(&mut g, i, p)?;
            let kv = cache.bind(&mut g, &rows);
            let h = model.record_decode(&mut g, x, &kv)?;
            let logits = model.logits(&mut g, h)?;
            let (settings, uniforms) = (g.input(sampler.settings()), g.input(sampler.uniforms()));
            let s = sample(&mut g, logits, settings, uniforms)?;
            g.readback(s.ids);
            g.copy(s.ids, i)?;
            groups.push(RowGroup { ids, positions, rows, sampler, chosen: s.ids });
        }
        let plan = g.compile()?;
        // What SamplerInputs::new wrote to every row.
        let settings = vec![SampleSettings::greedy((0, vocab as u32)); n_rows];
        Ok(DecodeStep { ctx: ctx.clone(), groups, plan, settings })
    }

    pub fn n_rows(&self) -> usize {
        self.groups.iter().map(|gr| gr.rows.n_rows()).sum()
    }

    /// Queues one step without waiting: each busy row's input at the next position of its
    /// sequence (reserving it). Read its tokens with [`DecodeStep::read`]. A row's settings are
    /// written only when they change; an idle row keeps what it had.
    pub fn submit(&mut self, cache: &mut PagedKvCache, inputs: &[Option<RowInput>]) -> Result<Run> {
        let n_rows = self.n_rows();
        if inputs.len() != n_rows {
            return Err(Error::Invalid(format!("{} inputs for a step of {n_rows} rows", inputs.len())));
        }
        // A row sees its own new key, not another row's: each sequence gets one row a step.
        let mut slots: Vec<u32> = inputs.iter().flatten().map(|input| input.seq.slot()).collect();
        slots.sort_unstable();
        if slots.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Invalid("a decode step was given one sequence in two rows".into()));
        }
        for (k, gr) in self.groups.iter().enumerate() {
            let span = k * GEMV_MAX_M..k * GEMV_MAX_M + gr.rows.n_rows();
            let inputs = &inputs[span.clone()];
            let mut rows = Vec::with_capacity(span.len());
            let mut positions = vec![0; span.len()];
            for (r, input) in inputs.iter().enumerate() {
                rows.push(match input {
                    Some(input) => {
                        let pos = cache.reserve(input.seq, 1)?.start;
                        positions[r] = pos as u32;
                        // Only given tokens are written, word by word: the other rows' ids are
                        // the GPU's copy of their last choice and must stay.
                        if let Feed::Token(id) = input.feed {
                            gr.ids.write_words_at(&self.ctx, r, &[id])?;
                        }
                        Some((input.seq, pos))
                    }
                    None => None,
                });
            }
            gr.rows.set(cache, &rows)?;
            gr.positions.write_words(&self.ctx, &positions)?;
            let held = &mut self.settings[span];
            let wanted: Vec<SampleSettings> =
                inputs.iter().zip(held.iter()).map(|(input, &had)| input.map_or(had, |i| i.settings)).collect();
            if wanted != held {
                gr.sampler.set_settings(&self.ctx, &wanted)?;
                held.copy_from_slice(&wanted);
            }
            // Rows that do not sample never read their uniform.
            if inputs.iter().flatten().any(|i| i.uniform.is_some()) {
                let u: Vec<f32> = inputs.iter().map(|i| i.and_then(|i| i.uniform).unwrap_or(0.0)).collect();
                gr.sampler.set_uniforms(&self.ctx, &u)?;
            }
        }
        self.plan.submit()
    }

    /// Every row's chosen token of a submitted step (waits for that step only).
    pub async fn read(&self, run: &Run) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.n_rows());
        for gr in &self.groups {
            let words = self.plan.read_run_async(gr.chosen, run).await?;
            if words.len() != gr.rows.n_rows() {
                return Err(Error::Gpu(format!(
                    "the sampler returned {} ids for {} rows",
                    words.len(),
                    gr.rows.n_rows()
                )));
            }
            out.extend(words);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Bark, LoadOptions};
    use crate::gpu::Family;
    use std::path::Path;

    #[test]
    fn a_decode_step_has_six_dispatches_per_layer() {
        // A layer of a decode step: the QKV, out and two MLP GEMVs, and the attention with its
        // cache append: the append first when the keys fit one chunk (a short cache), else
        // the attention's merge appends (a long one). With norm_in_gemv each LayerNorm rides
        // in the GEMV after it; without, each block has its two layer_norm passes and the head
        // one more.
        // Both kernel sets: a GPU's and a CPU adapter's (cpu_kernels).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (fused, cpu) in [(true, false), (false, false), (true, true), (false, true)] {
            let opts =
                crate::ContextOptions { norm_in_gemv: Some(fused), cpu_kernels: Some(cpu), ..Default::default() };
            let ctx = Context::new(&opts).unwrap();
            let b = Bark::load_on(&ctx, root.join("tests/fixtures/tiny"), &LoadOptions::default()).unwrap();
            for model in [&b.semantic, &b.coarse] {
                for positions in [64, 512] {
                    let layers = model.config().num_layers;
                    let (_cache, step) = cache_and_step(&ctx, model, 2, positions).unwrap();
                    let families = step.plan.families();
                    let count = |f: Family| families.iter().filter(|&&x| x == Some(f)).count();
                    // The GEMVs, or in the CPU set the direct GEMM where no norm rides.
                    assert_eq!(count(Family::Linear), 4 * layers + 1, "four per layer and the head: {families:?}");
                    let norms = if fused { 0 } else { 2 * layers + 1 };
                    assert_eq!(count(Family::LayerNorm), norms, "{families:?}");
                    // The tiled attention's merge appends when it splits the keys (long
                    // caches); the rows kernel (CPU set) has no merge.
                    let appends = if positions > 64 && !ctx.policy().cpu_kernels { 0 } else { layers };
                    assert_eq!(count(Family::KvAppend), appends, "{positions} positions: {families:?}");
                    // The attention, and its merge where it splits the keys.
                    assert_eq!(count(Family::Attention), 2 * layers - appends, "{families:?}");
                    // Two embedding lookups and the sampler around the layers.
                    assert_eq!((count(Family::Embedding), count(Family::Sampling)), (2, 1), "{families:?}");
                    assert_eq!(families.len(), 6 * layers + 4 + norms, "{families:?}");
                }
            }
        }
    }

    #[test]
    fn a_decode_step_refuses_one_sequence_in_two_rows() {
        // Each row reads its own new key, not another row's: a sequence must have one row.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let b = Bark::load(root.join("tests/fixtures/tiny"), &LoadOptions::default()).unwrap();
        let (mut cache, mut step) = cache_and_step(b.context(), &b.semantic, 2, 64).unwrap();
        let (s0, s1) = (cache.add_sequence().unwrap(), cache.add_sequence().unwrap());
        let settings = SampleSettings::greedy((0, 10));
        let row = |seq, id| Some(RowInput { seq, feed: Feed::Token(id), settings, uniform: None });
        let err = step.submit(&mut cache, &[row(s0, 1), row(s0, 2)]);
        assert!(err.is_err_and(|e| e.to_string().contains("two rows")));
        assert!(step.submit(&mut cache, &[row(s0, 1), row(s1, 2)]).is_ok());
    }

    #[test]
    fn a_prefill_of_the_same_length_reuses_its_plan_and_fills_the_same_cache() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // A context of its own, so no other test's objects show in its counters.
        let ctx = Context::new(&Default::default()).unwrap();
        let b = Bark::load_on(&ctx, root.join("tests/fixtures/tiny"), &LoadOptions::default()).unwrap();
        let model = &b.semantic;
        let mut cache = cache_for(&ctx, model, 3, 64).unwrap();
        let ids: Vec<u32> = (0..20).map(|i| 100 + 7 * i).collect();
        let extra: Vec<u32> = (0..20).map(|i| 5000 + i).collect();
        let mut prefill = Prefill::default();
        let seqs: Vec<SeqId> = (0..3).map(|_| cache.add_sequence().unwrap()).collect();
        prefill.run(&ctx, model, &mut cache, seqs[0], &ids, Some(&extra)).unwrap();
        let before = ctx.stats();
        prefill.run(&ctx, model, &mut cache, seqs[1], &ids, Some(&extra)).unwrap();
        let after = ctx.stats();
        assert_eq!(after.bind_groups_created, before.bind_groups_created, "the second prefill compiled again");
        assert_eq!(after.buffers_created, before.buffers_created);
        // A fresh compile (another Prefill) fills its sequence exactly as the reused plan did.
        Prefill::default().run(&ctx, model, &mut cache, seqs[2], &ids, Some(&extra)).unwrap();
        let rows = |pool: &Tensor, seq: SeqId| {
            let all = pool.to_f32(&ctx).unwrap();
            let h = model.config().hidden_size;
            let pages = cache.pages(seq).unwrap();
            (0..ids.len())
                .flat_map(|p| {
                    let at = (pages[p / PAGE_SIZE] as usize * PAGE_SIZE + p % PAGE_SIZE) * h;
                    all[at..at + h].to_vec()
                })
                .collect::<Vec<f32>>()
        };
        for layer in 0..cache.layers() {
            for pool in [cache.k_pool(layer).unwrap(), cache.v_pool(layer).unwrap()] {
                let first = rows(pool, seqs[0]);
                assert!(first.iter().any(|&v| v != 0.0));
                assert_eq!(rows(pool, seqs[1]), first, "layer {layer}: reused plan");
                assert_eq!(rows(pool, seqs[2]), first, "layer {layer}: fresh plan");
            }
        }
    }
}
