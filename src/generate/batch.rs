//! Batched generation: several texts share every decode step of the semantic and coarse
//! stages and every run of the fine model ([`Bark::generate_batch`] and the per-stage
//! `*_batch` methods). The one-text methods ([`Bark::semantic`] and the others) are batches of
//! one, so both go through the same code.
//!
//! Each sequence keeps what it would have alone: its own prompt, its own random stream (the
//! same `seed` and stage stream as a one-text run) and its own KV cache pages. A row of a batch
//! does not depend on the others (decode steps of at most 16 rows run every matrix product as
//! a GEMV whose per-row sums do not depend on the row count; the fine model always runs the
//! tiled GEMM), so greedy batch outputs equal one-text outputs token for token, and seeded
//! sampling rows equal the one-text runs too.
//!
//! How the stages batch:
//! * semantic: continuous batching. A sequence ending (EOS or its cap) frees its pages and its
//!   row; the next waiting text is prefilled and takes the row from the next step on.
//! * coarse: lockstep windows of 60 tokens; sequences leave and join at window boundaries.
//! * fine: the 1024-frame windows of up to `max_batch` sequences run as one `[B, 1024, 8]`
//!   batch (fewer when the adapter's binding limit needs it).
//! * decode: one sequence at a time (the codec is small).

use super::{check_voice, coarse, fine, semantic, Bark, GenerateOptions, Generation, VoicePrompt};
use super::{COARSE_STREAM, FINE_STREAM, SEMANTIC_STREAM};
use crate::ops::sampling::SampleSettings;
use crate::progress::{Reporter, Stage};
use crate::{Error, Result};

/// What every batch entry point checks first: a batch size of at least 1 and a usable voice.
fn check_inputs(max_batch: usize, voice: Option<&VoicePrompt>) -> Result<()> {
    if max_batch == 0 {
        return Err(Error::Invalid("max_batch is 0; at least 1 sequence must be live at once".into()));
    }
    voice.map_or(Ok(()), check_voice)
}

/// Names the input an error is about when there are several.
fn about_item(i: usize, n: usize, what: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |e| match e {
        Error::Invalid(m) if n > 1 => Error::Invalid(format!("{what} {}: {m}", i + 1)),
        e => e,
    }
}

impl Bark {
    /// Runs one stage between its progress start (with `total` units) and finish, then frees
    /// the intermediates its plans left in the pool: the next stage's sizes differ, so keeping
    /// them would only raise the peak GPU memory to the sum of the stages instead of the largest.
    pub(super) fn in_stage<T>(
        &self,
        stage: Stage,
        total: usize,
        run: impl FnOnce(&Reporter) -> Result<T>,
    ) -> Result<T> {
        let progress = self.reporter();
        progress.start(stage, total);
        let out = run(progress);
        self.ctx.trim_pool();
        let out = out?;
        progress.finish(stage);
        Ok(out)
    }

    /// Texts to semantic tokens, at most `max_batch` (>= 1) sequences live at once. Output `i`
    /// belongs to `texts[i]` and equals [`Bark::semantic`] of it.
    pub fn semantic_batch(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Vec<u32>>> {
        check_inputs(max_batch, voice)?;
        let history = semantic::history_window(voice.map(|v| v.semantic.as_slice()));
        let prompts = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let text = self.text_window(t).map_err(about_item(i, texts.len(), "text"))?;
                Ok(semantic::Prompt { text, history: history.clone() })
            })
            .collect::<Result<Vec<_>>>()?;
        let settings = opts.semantic_settings();
        let mut rngs: Vec<_> = texts.iter().map(|_| opts.rng(SEMANTIC_STREAM, settings.temperature > 0.0)).collect();
        let max_tokens = opts.max_semantic_tokens;
        self.in_stage(Stage::Semantic, prompts.len() * max_tokens, |progress| {
            let model = &self.semantic;
            semantic::generate(&self.ctx, model, &prompts, &settings, max_tokens, &mut rngs, max_batch, progress)
        })
    }

    /// Semantic token sequences to interleaved coarse tokens, at most `max_batch` (>= 1) live at
    /// once. Output `i` equals [`Bark::coarse`] of `semantic[i]`.
    pub fn coarse_batch(
        &self,
        semantic: &[Vec<u32>],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Vec<u32>>> {
        check_inputs(max_batch, voice)?;
        let history = voice.map(|v| (v.semantic.as_slice(), v.coarse.as_slice()));
        let jobs = semantic
            .iter()
            .enumerate()
            .map(|(i, s)| coarse::Job::new(s, history).map_err(about_item(i, semantic.len(), "semantic sequence")))
            .collect::<Result<Vec<_>>>()?;
        let base = opts.settings(opts.waveform_temp);
        let mut rngs: Vec<_> = jobs.iter().map(|_| opts.rng(COARSE_STREAM, base.temperature > 0.0)).collect();
        self.in_stage(Stage::Coarse, jobs.iter().map(coarse::Job::total).sum(), |progress| {
            coarse::generate(&self.ctx, &self.coarse, jobs, &base, opts.coarse_mask, &mut rngs, max_batch, progress)
        })
    }

    /// Interleaved coarse token sequences to `[codebook][frame]` codes of all 8 codebooks, the
    /// windows of at most `max_batch` (>= 1) sequences per model run. Output `i` equals
    /// [`Bark::fine`] of `coarse[i]`.
    pub fn fine_batch(
        &self,
        coarse: &[Vec<u32>],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        check_inputs(max_batch, voice)?;
        let n_cb = self.fine.config().n_codes_total;
        let history = voice.map(|v| v.fine.as_slice());
        let jobs = coarse
            .iter()
            .enumerate()
            .map(|(i, c)| fine::Job::new(c, history, n_cb).map_err(about_item(i, coarse.len(), "coarse sequence")))
            .collect::<Result<Vec<_>>>()?;
        let temperature = opts.fine_temperature();
        let samples = SampleSettings::fine(temperature).temperature > 0.0;
        let mut rngs: Vec<_> = jobs.iter().map(|_| opts.rng(FINE_STREAM, samples)).collect();
        self.in_stage(Stage::Fine, jobs.iter().map(fine::Job::total_runs).sum(), |progress| {
            fine::generate(&self.ctx, &self.fine, jobs, temperature, &mut rngs, max_batch, progress)
        })
    }

    /// All four stages for several texts (each of at most 256 tokens), at most `max_batch`
    /// (>= 1) sequences live at once in each stage; audio is decoded one text at a time.
    /// Output `i` equals [`Bark::generate`] of `texts[i]`.
    pub fn generate_batch(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Generation>> {
        let semantic = self.semantic_batch(texts, opts, voice, max_batch)?;
        let coarse = self.coarse_batch(&semantic, opts, voice, max_batch)?;
        let fine = self.fine_batch(&coarse, opts, voice, max_batch)?;
        self.in_stage(Stage::Decode, texts.len(), |progress| {
            semantic
                .into_iter()
                .zip(coarse)
                .zip(fine)
                .map(|((semantic, coarse), fine)| {
                    let audio = self.decode_quietly(&fine);
                    // Each length has its own intermediates: free one text's before the next.
                    self.ctx.trim_pool();
                    let audio = audio?;
                    progress.advance(Stage::Decode, 1);
                    Ok(Generation { semantic, coarse, fine, audio })
                })
                .collect()
        })
    }
}

/// The one output of a batch of one.
pub(super) fn only<T>(mut out: Vec<T>) -> Result<T> {
    match (out.pop(), out.is_empty()) {
        (Some(x), true) => Ok(x),
        _ => Err(Error::Gpu("internal: a batch of one gave other than one output".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::step::{cache_for, DecodeStep};
    use crate::generate::LoadOptions;
    use std::path::Path;

    fn bark() -> Bark {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let opts = LoadOptions {
            tokenizer: Some(root.join("tests/fixtures/tokenizer/tokenizer.json")),
            ..LoadOptions::default()
        };
        Bark::load(root.join("tests/fixtures/tiny"), &opts).unwrap()
    }

    #[test]
    fn finished_sequences_give_back_every_page() {
        let b = bark();
        let opts = GenerateOptions { max_semantic_tokens: 3, ..GenerateOptions::greedy() };
        let settings = opts.semantic_settings();
        let history = semantic::history_window(None);
        let prompts: Vec<_> = ["Hi.", "One two.", "Three."]
            .iter()
            .map(|t| semantic::Prompt { text: b.text_window(t).unwrap(), history: history.clone() })
            .collect();
        // Two rows for three prompts: the third joins in pages the first gave back.
        let mut cache = cache_for(&b.ctx, &b.semantic, 2, 259).unwrap();
        let all = cache.free_pages();
        let step = DecodeStep::new(&b.ctx, &b.semantic, &cache, 2).unwrap();
        let mut rngs = vec![None, None, None];
        let sem = semantic::generate_in(
            &b.ctx,
            &b.semantic,
            &mut cache,
            &step,
            &prompts,
            &settings,
            3,
            &mut rngs,
            b.reporter(),
        )
        .unwrap();
        assert_eq!(sem.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3]);
        assert_eq!(cache.free_pages(), all, "semantic stage");

        let mut cache = cache_for(&b.ctx, &b.coarse, 2, 1024).unwrap();
        let all = cache.free_pages();
        let step = DecodeStep::new(&b.ctx, &b.coarse, &cache, 2).unwrap();
        let jobs = sem.iter().map(|s| coarse::Job::new(s, None).unwrap()).collect();
        let settings = coarse::codebook_settings(&b.coarse, &opts.settings(1.0), opts.coarse_mask);
        let out = coarse::generate_in(&b.ctx, &b.coarse, &mut cache, &step, jobs, &settings, &mut rngs, b.reporter())
            .unwrap();
        assert!(out.iter().all(|c| !c.is_empty()));
        assert_eq!(cache.free_pages(), all, "coarse stage");
    }
}
