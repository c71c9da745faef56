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
//! * semantic and coarse: continuous batching on one [`super::scheduler::Scheduler`]. A
//!   sequence ending (semantic: EOS or its cap; coarse: its last window) frees its pages and its
//!   row; the next waiting one is prefilled and takes the row from the next step on. A coarse
//!   sequence restarts its own cache at each of its 60-token windows while the others decode.
//! * fine: the 1024-frame windows of up to `max_batch` sequences run as one `[B, 1024, 8]`
//!   batch (fewer when the adapter's binding limit needs it).
//! * decode: one sequence at a time (the codec is small).

use super::bark::{check_voice, Bark, Generation};
use super::options::{GenerateOptions, COARSE_STREAM, FINE_STREAM, SEMANTIC_STREAM};
use super::rng::Rng;
use super::{coarse, fine, semantic};
use crate::gpu::block_on;
use crate::ops::sampling::SampleSettings;
use crate::progress::Stage;
use crate::voice::VoicePrompt;
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
    /// Text to semantic tokens.
    pub fn semantic(&self, text: &str, opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Vec<u32>> {
        only(self.semantic_batch(&[text], opts, voice, 1)?)
    }

    /// Semantic tokens to interleaved coarse tokens.
    pub fn coarse(&self, semantic: &[u32], opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Vec<u32>> {
        only(self.coarse_batch(&[semantic.to_vec()], opts, voice, 1)?)
    }

    /// Interleaved coarse tokens to `[codebook][frame]` codes of all 8 codebooks.
    pub fn fine(&self, coarse: &[u32], opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Vec<Vec<u32>>> {
        only(self.fine_batch(&[coarse.to_vec()], opts, voice, 1)?)
    }

    /// All four stages, for text of at most 256 tokens (longer text is an error: see
    /// [`Bark::generate_long`]).
    pub fn generate(&self, text: &str, opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Generation> {
        block_on(self.generate_async(text, opts, voice))
    }

    /// [`Bark::generate`] without blocking (a browser's way: it awaits each readback).
    pub async fn generate_async(
        &self,
        text: &str,
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
    ) -> Result<Generation> {
        only(self.generate_batch_async(&[text], opts, voice, 1).await?)
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
        block_on(self.semantic_batch_async(texts, opts, voice, max_batch))
    }

    /// [`Bark::semantic_batch`] without blocking.
    pub async fn semantic_batch_async(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Vec<u32>>> {
        check_inputs(max_batch, voice)?;
        let max_tokens = opts.max_semantic_tokens;
        semantic::check_max_tokens(&self.semantic, max_tokens)?;
        let seqs = texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.semantic_seq(t, opts, voice).map_err(about_item(i, texts.len(), "text")))
            .collect::<Result<Vec<_>>>()?;
        let total = seqs.len() * max_tokens;
        let run = semantic::generate(&self.ctx, &self.semantic, seqs, max_batch, self.reporter());
        self.in_stage(Stage::Semantic, total, run).await
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
        block_on(self.coarse_batch_async(semantic, opts, voice, max_batch))
    }

    /// [`Bark::coarse_batch`] without blocking.
    pub async fn coarse_batch_async(
        &self,
        semantic: &[Vec<u32>],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Vec<u32>>> {
        check_inputs(max_batch, voice)?;
        let seqs = semantic
            .iter()
            .enumerate()
            .map(|(i, s)| self.coarse_seq(s, opts, voice).map_err(about_item(i, semantic.len(), "semantic sequence")))
            .collect::<Result<Vec<_>>>()?;
        let total = seqs.iter().map(|(s, _)| s.total()).sum();
        let run = coarse::generate(&self.ctx, &self.coarse, seqs, max_batch, self.reporter());
        self.in_stage(Stage::Coarse, total, run).await
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
        block_on(self.fine_batch_async(coarse, opts, voice, max_batch))
    }

    /// [`Bark::fine_batch`] without blocking.
    pub async fn fine_batch_async(
        &self,
        coarse: &[Vec<u32>],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        check_inputs(max_batch, voice)?;
        let (jobs, mut rngs): (Vec<_>, Vec<_>) = coarse
            .iter()
            .enumerate()
            .map(|(i, c)| self.fine_job(c, opts, voice).map_err(about_item(i, coarse.len(), "coarse sequence")))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let temperature = opts.fine_temperature();
        let total = jobs.iter().map(fine::Job::total_runs).sum();
        let run = fine::generate(&self.ctx, &self.fine, jobs, temperature, &mut rngs, max_batch, self.reporter());
        self.in_stage(Stage::Fine, total, run).await
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
        block_on(self.generate_batch_async(texts, opts, voice, max_batch))
    }

    /// [`Bark::generate_batch`] without blocking.
    pub async fn generate_batch_async(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
        max_batch: usize,
    ) -> Result<Vec<Generation>> {
        let semantic = self.semantic_batch_async(texts, opts, voice, max_batch).await?;
        let coarse = self.coarse_batch_async(&semantic, opts, voice, max_batch).await?;
        let fine = self.fine_batch_async(&coarse, opts, voice, max_batch).await?;
        let decode = async {
            let mut out = Vec::with_capacity(texts.len());
            for ((semantic, coarse), fine) in semantic.into_iter().zip(coarse).zip(fine) {
                let audio = self.decode_quietly(&fine).await;
                // Each length has its own intermediates: free one text's before the next.
                self.ctx.trim_pool();
                out.push(Generation { semantic, coarse, fine, audio: audio? });
                self.reporter().advance(Stage::Decode, 1);
            }
            Ok(out)
        };
        self.in_stage(Stage::Decode, texts.len(), decode).await
    }
}

impl Bark {
    /// One text's semantic sequence and random stream, as every entry point makes them.
    pub(super) fn semantic_seq(
        &self,
        text: &str,
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
    ) -> Result<(semantic::SemanticSeq, Option<Rng>)> {
        opts.check()?;
        let settings = opts.semantic_settings();
        let history = semantic::history_window(voice.map(|v| v.semantic.as_slice()));
        let prompt = semantic::Prompt { text: self.text_window(text)?, history };
        let seq = semantic::SemanticSeq::new(&self.semantic, prompt, settings, opts.max_semantic_tokens)?;
        Ok((seq, opts.rng(SEMANTIC_STREAM, settings.temperature > 0.0)))
    }

    /// One semantic sequence's coarse sequence and random stream.
    pub(super) fn coarse_seq(
        &self,
        semantic: &[u32],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
    ) -> Result<(coarse::CoarseSeq, Option<Rng>)> {
        opts.check()?;
        let history = voice.map(|v| (v.semantic.as_slice(), v.coarse.as_slice()));
        let base = opts.settings(opts.waveform_temp);
        let job = coarse::Job::new(semantic, history)?;
        let seq = coarse::CoarseSeq::new(&self.coarse, job, &base, opts.coarse_mask);
        Ok((seq, opts.rng(COARSE_STREAM, base.temperature > 0.0)))
    }

    /// One coarse sequence's fine job and random stream (the temperature is
    /// `opts.fine_temperature()`).
    pub(super) fn fine_job(
        &self,
        coarse: &[u32],
        opts: &GenerateOptions,
        voice: Option<&VoicePrompt>,
    ) -> Result<(fine::Job, Option<Rng>)> {
        opts.check()?;
        let n_cb = self.fine.config().n_codes_total;
        let job = fine::Job::new(coarse, voice.map(|v| v.fine.as_slice()), n_cb)?;
        let samples = SampleSettings::fine(opts.fine_temperature()).temperature > 0.0;
        Ok((job, opts.rng(FINE_STREAM, samples)))
    }
}

/// The one output of a batch of one.
pub(super) fn only<T>(mut out: Vec<T>) -> Result<T> {
    match (out.pop(), out.is_empty()) {
        (Some(x), true) => Ok(x),
        _ => Err(Error::Gpu("internal: a batch of one gave other than one output".into())),
    }
}
