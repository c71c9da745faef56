//! [`Bark`]: a loaded checkpoint (tokenizer, the three GPTs and the codec decoder on one
//! device) and what one generation gives back. The stages' entry points are in `batch.rs`.

use std::path::Path;
use std::sync::Arc;

use super::options::{LoadOptions, ModelFiles};
use crate::gpu::{Context, DType};
use crate::model::encodec::{checkpoint_fetch, EncodecDecoder};
use crate::model::gpt::{CausalGpt, FineGpt};
use crate::model::BarkConfig;
use crate::ops::embedding::check_ids;
use crate::progress::{Progress, Reporter, Stage};
use crate::text::{normalize_whitespace, semantic_text_window, TextTokenizer};
use crate::vocab::{coarse_codes, SEMANTIC_VOCAB};
use crate::voice::VoicePrompt;
use crate::weights::{WeightSource, Weights};
use crate::{Error, Result};

/// Checks a voice for generation: shapes and ranges (so no stage can index out of bounds), and
/// long enough to give the coarse stage a history: at least 2 semantic tokens and 2 frames
/// (transformers would otherwise slice with `[-0:]` and take everything).
pub(super) fn check_voice(v: &VoicePrompt) -> Result<()> {
    let bad = |m: String| Err(Error::Invalid(format!("voice prompt: {m}")));
    v.validate().or_else(bad)?;
    if v.semantic.len() < 2 {
        return bad(format!("{} semantic tokens; at least 2 are needed", v.semantic.len()));
    }
    if v.frames() < 2 {
        return bad(format!("{} coarse frames; at least 2 are needed", v.frames()));
    }
    Ok(())
}

/// Mono audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Every stage's output of one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Semantic tokens (ending with the EOS 10000 when the model stopped by itself).
    pub semantic: Vec<u32>,
    /// Interleaved coarse tokens as transformers returns them (`10000 + c0, 11024 + c1, ...`).
    pub coarse: Vec<u32>,
    /// `[codebook][frame]` codes, 8 rows.
    pub fine: Vec<Vec<u32>>,
    pub audio: Audio,
}

impl Generation {
    /// This generation as a voice prompt in Suno's format (the original's `save_as_prompt`):
    /// the semantic tokens without the end token, the coarse codes and the fine codes.
    pub fn voice_prompt(&self) -> Result<VoicePrompt> {
        let semantic: Vec<u32> = self.semantic.iter().copied().filter(|&t| t < SEMANTIC_VOCAB).collect();
        let [c0, c1] = coarse_codes(&self.coarse)?;
        let prompt = VoicePrompt { semantic, coarse: vec![c0, c1], fine: self.fine.clone() };
        prompt.validate().map_err(|m| Error::Invalid(format!("this generation cannot be a voice prompt: {m}")))?;
        Ok(prompt)
    }
}

/// A loaded Bark: tokenizer, the three GPTs and the codec decoder on one device.
pub struct Bark {
    pub(super) ctx: Context,
    pub(super) config: BarkConfig,
    pub(super) tokenizer: TextTokenizer,
    pub(super) semantic: CausalGpt,
    pub(super) coarse: CausalGpt,
    pub(super) fine: FineGpt,
    pub(super) codec: EncodecDecoder,
    pub(super) progress: Reporter,
}

impl Bark {
    /// Loads `dir` (config.json, weights, tokenizer) on the default adapter.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Bark> {
        Bark::load_on(&Context::new(&crate::gpu::ContextOptions::default())?, dir, opts)
    }

    /// Loads `dir` on a given device.
    pub fn load_on(ctx: &Context, dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Bark> {
        let dir = dir.as_ref();
        let config = BarkConfig::load(dir.join("config.json"))?;
        let tokenizer = TextTokenizer::load(opts.tokenizer.as_deref().unwrap_or(dir))?;
        let weights = match &opts.weights {
            Some(p) => Weights::open(p)?,
            None => Weights::open_dir(dir)?,
        };
        Bark::from_parts(ctx, config, tokenizer, weights, opts)
    }

    /// Loads a model whose files are already in memory (a browser fetches them; nothing is
    /// read from disk). `opts.tokenizer` and `opts.weights` are not used.
    pub fn load_files(ctx: &Context, files: ModelFiles, opts: &LoadOptions) -> Result<Bark> {
        let config = BarkConfig::from_json(&files.config, Path::new("config.json"))?;
        let tokenizer = TextTokenizer::from_bytes("tokenizer.json", &files.tokenizer)?;
        let weights = Weights::from_source(WeightSource::from_bytes(&files.weights_name, files.weights)?)?;
        Bark::from_parts(ctx, config, tokenizer, weights, opts)
    }

    fn from_parts(
        ctx: &Context,
        config: BarkConfig,
        tokenizer: TextTokenizer,
        weights: Weights,
        opts: &LoadOptions,
    ) -> Result<Bark> {
        let fine_cfg = &config.fine_acoustics_config;
        if fine_cfg.n_codes_total != 8 {
            return Err(Error::Invalid(format!("a fine model of {} codebooks; Bark has 8", fine_cfg.n_codes_total)));
        }
        let dtype = if opts.f16 { DType::F16 } else { DType::F32 };
        let semantic = CausalGpt::load(ctx, &weights, "semantic", &config.semantic_config, dtype)?;
        let coarse = CausalGpt::load(ctx, &weights, "coarse_acoustics", &config.coarse_acoustics_config, dtype)?;
        let fine = FineGpt::load(ctx, &weights, "fine_acoustics", fine_cfg, dtype)?;
        // The codec is small (7 M parameters) and stays f32.
        let mut fetch = checkpoint_fetch(ctx, &weights);
        let codec = EncodecDecoder::load(ctx, &config.codec_config, fine_cfg.n_codes_total, &mut fetch)?;
        Ok(Bark { ctx: ctx.clone(), config, tokenizer, semantic, coarse, fine, codec, progress: Reporter::default() })
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }
    pub fn config(&self) -> &BarkConfig {
        &self.config
    }

    /// The semantic model's 256-id text window for `text` (whitespace-normalised, BERT ids +
    /// 10048, padded with 129595). Empty text and text over 256 tokens are errors.
    pub fn text_window(&self, text: &str) -> Result<Vec<u32>> {
        let text = normalize_whitespace(text);
        if text.is_empty() {
            return Err(Error::Invalid("the text is empty".into()));
        }
        let window = semantic_text_window(&self.tokenizer.encode(&text)?)?;
        check_ids(&window, self.config.semantic_config.input_vocab_size)?;
        Ok(window)
    }

    /// Where the stages report their progress from now on (`None`: nowhere, the default).
    /// [`crate::progress::TerminalBars`] draws bars on a terminal.
    pub fn set_progress(&mut self, progress: Option<Arc<dyn Progress>>) {
        self.progress = Reporter::new(progress);
    }

    pub(crate) fn reporter(&self) -> &Reporter {
        &self.progress
    }

    /// `[codebook][frame]` codes (8 rows of equal length, each below 1024) to audio.
    pub fn decode(&self, fine: &[Vec<u32>]) -> Result<Audio> {
        crate::gpu::block_on(self.decode_async(fine))
    }

    /// [`Bark::decode`] without blocking.
    pub async fn decode_async(&self, fine: &[Vec<u32>]) -> Result<Audio> {
        self.in_stage(Stage::Decode, 1, async {
            let audio = self.decode_quietly(fine).await?;
            self.reporter().advance(Stage::Decode, 1);
            Ok(audio)
        })
        .await
    }

    /// [`Bark::decode_async`] without progress reports (for callers that report a batch of them).
    pub(crate) async fn decode_quietly(&self, fine: &[Vec<u32>]) -> Result<Audio> {
        let n_q = self.config.fine_acoustics_config.n_codes_total;
        let sample_rate = self.config.codec_config.sampling_rate as u32;
        if fine.len() != n_q {
            return Err(Error::Invalid(format!("{} codebooks to decode, want {n_q}", fine.len())));
        }
        let frames = fine[0].len();
        if fine.iter().any(|r| r.len() != frames) {
            return Err(Error::Invalid("the codebooks to decode differ in length".into()));
        }
        if frames == 0 {
            return Ok(Audio { samples: Vec::new(), sample_rate });
        }
        let codes: Vec<u32> = fine.concat();
        let samples = self.codec.decode_async(&self.ctx, &codes, n_q, 1, frames).await?;
        Ok(Audio { samples, sample_rate })
    }

    /// Runs one stage between its progress start (with `total` units) and finish, then frees
    /// the intermediates its plans left in the pool: the next stage's sizes differ, so keeping
    /// them would only raise the peak GPU memory to the sum of the stages instead of the largest.
    pub(super) async fn in_stage<T>(
        &self,
        stage: Stage,
        total: usize,
        run: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let progress = self.reporter();
        progress.start(stage, total);
        let out = run.await;
        self.ctx.trim_pool();
        let out = out?;
        progress.finish(stage);
        Ok(out)
    }
}
