//! Bark's generation: text -> semantic tokens -> coarse tokens (2 codebooks) -> fine codes
//! (8 codebooks) -> 24 kHz audio, on the GPU models, one stage per module.
//!
//! # Greedy and sampled
//!
//! [`GenerateOptions::greedy`] reproduces transformers' `BarkModel.generate(do_sample=False)`
//! token for token: argmax in every stage, no `min_eos_p`, transformers' coarse mask
//! ([`CoarseMask::Transformers`]). [`GenerateOptions::default`] has the original Bark's
//! sampling defaults (text and waveform temperature 0.7, fine temperature 0.5, `min_eos_p`
//! 0.2, no top-k/top-p) and, as the documented choice for sampling, the original's order of
//! filters and temperature ([`SamplingOrder::Original`]) and its EOS rule ([`EosRule::Original`],
//! post-temperature probability, `>=`). In every mode the semantic EOS token is kept at the end
//! of the semantic output, as transformers keeps it (the original drops it; the coarse stage
//! treats it as padding either way, so the audio does not change). `top_k`/`top_p` apply to the
//! semantic and coarse stages, `min_eos_p` to the semantic stage only, as in both references.
//!
//! Sampling draws its uniforms from a seeded xorshift per stage ([`GenerateOptions::seed`]):
//! the same seed on the same device gives the same output.
//!
//! # Several texts at once
//!
//! [`Bark::generate_batch`] (and `semantic_batch`, `coarse_batch`, `fine_batch`) run several
//! texts through every decode step together, at most `max_batch` live at once; output `i`
//! equals the one-text run of input `i`, greedy or seeded (see `batch.rs` for how each stage
//! batches). The one-text methods are batches of one.
//!
//! The text is whitespace-normalised first, as the original does (transformers does not; for
//! text with single spaces and no leading/trailing blanks both agree).
//!
//! # Example
//!
//! On the tiny random model the tests use (a real checkpoint directory works the same way):
//!
//! ```
//! use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
//! let bark = Bark::load(dir, &LoadOptions::default())?;
//! let opts = GenerateOptions { max_semantic_tokens: 8, ..GenerateOptions::greedy() };
//! let out = bark.generate("Hello, my name is Suno.", &opts, None)?;
//! assert_eq!(out.audio.sample_rate, 24_000);
//! assert!(!out.audio.samples.is_empty());
//! # Ok::<(), bark_wgpu::Error>(())
//! ```

mod batch;
mod clone;
pub mod coarse;
pub mod fine;
pub mod longform;
mod memory;
pub mod rng;
pub mod semantic;
mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use coarse::{coarse_codes, CoarseMask};
pub use longform::{LongGeneration, PIECE_GAP_SECONDS};
pub use memory::StageMemory;
use rng::Rng;

use crate::gpu::{Context, ContextOptions, DType};
use crate::model::encodec::{checkpoint_fetch, EncodecDecoder};
use crate::model::gpt::{CausalGpt, FineGpt};
use crate::model::BarkConfig;
use crate::ops::embedding::check_ids;
use crate::ops::sampling::{EosRule, SampleSettings, SamplingOrder};
use crate::progress::{Progress, Reporter, Stage};
use crate::text::{normalize_whitespace, semantic_text_window, TextTokenizer};
use crate::weights::Weights;
use crate::{Error, Result};

/// How to generate. See the module docs for the two presets.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Semantic stage temperature (ignored when `greedy`).
    pub text_temp: f32,
    /// Coarse stage temperature (ignored when `greedy`).
    pub waveform_temp: f32,
    /// Fine stage temperature: `None` or `Some(1.0)` is argmax (ignored when `greedy`).
    pub fine_temp: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    /// End the semantic sequence once the EOS probability passes this (`None`: off).
    pub min_eos_p: Option<f32>,
    /// Cap on semantic tokens (1..=768 for Bark's 1024-token context).
    pub max_semantic_tokens: usize,
    /// Argmax everywhere (temperatures and filters unused; `min_eos_p` still applies).
    pub greedy: bool,
    pub seed: u64,
    pub coarse_mask: CoarseMask,
    pub order: SamplingOrder,
    pub eos_rule: EosRule,
}

impl Default for GenerateOptions {
    /// The original Bark's sampling defaults.
    fn default() -> Self {
        GenerateOptions {
            text_temp: 0.7,
            waveform_temp: 0.7,
            fine_temp: Some(0.5),
            top_k: None,
            top_p: None,
            min_eos_p: Some(0.2),
            max_semantic_tokens: semantic::MAX_SEMANTIC_TOKENS,
            greedy: false,
            seed: 0,
            coarse_mask: CoarseMask::Transformers,
            order: SamplingOrder::Original,
            eos_rule: EosRule::Original,
        }
    }
}

impl GenerateOptions {
    /// transformers' `do_sample=False` with Bark's published generation config.
    pub fn greedy() -> Self {
        GenerateOptions {
            fine_temp: None,
            min_eos_p: None,
            greedy: true,
            order: SamplingOrder::Transformers,
            eos_rule: EosRule::Transformers,
            ..GenerateOptions::default()
        }
    }

    /// Temperature, filters and rules of a stage at `temperature` (greedy: 0). Allowed ids are
    /// the stage's to set.
    fn settings(&self, temperature: f32) -> SampleSettings {
        let mut s = SampleSettings::greedy((0, 1));
        s.order = self.order;
        s.eos_rule = self.eos_rule;
        if !self.greedy {
            s.temperature = temperature;
            s.top_k = self.top_k;
            s.top_p = self.top_p;
        }
        s
    }

    fn semantic_settings(&self) -> SampleSettings {
        SampleSettings {
            allowed: (0, semantic::SEMANTIC_EOS + 1),
            eos: Some(semantic::SEMANTIC_EOS),
            // transformers treats 0.0 as "off" (`if self.min_eos_p:`).
            min_eos_p: self.min_eos_p.filter(|&m| m > 0.0),
            ..self.settings(self.text_temp)
        }
    }

    fn fine_temperature(&self) -> Option<f32> {
        if self.greedy {
            None
        } else {
            self.fine_temp
        }
    }

    /// A stage's random stream, `None` when it never samples.
    fn rng(&self, stage: u64, samples: bool) -> Option<Rng> {
        samples.then(|| Rng::new(self.seed, stage))
    }
}

pub use crate::voice::VoicePrompt;

/// Checks a voice for generation: shapes and ranges (so no stage can index out of bounds), and
/// long enough to give the coarse stage a history: at least 2 semantic tokens and 2 frames
/// (transformers would otherwise slice with `[-0:]` and take everything).
fn check_voice(v: &VoicePrompt) -> Result<()> {
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
        let semantic: Vec<u32> = self.semantic.iter().copied().filter(|&t| t < semantic::SEMANTIC_VOCAB).collect();
        let [c0, c1] = coarse_codes(&self.coarse)?;
        let prompt = VoicePrompt { semantic, coarse: vec![c0, c1], fine: self.fine.clone() };
        prompt.validate().map_err(|m| Error::Invalid(format!("this generation cannot be a voice prompt: {m}")))?;
        Ok(prompt)
    }
}

/// How to load a checkpoint directory.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Keep the GPTs' large matrices and the semantic and coarse KV caches in f16 (halves memory
    /// and bandwidth; not bit-exact).
    pub f16: bool,
    /// `tokenizer.json`; `None`: `<dir>/tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// The checkpoint file; `None`: `<dir>/model.safetensors`, else `<dir>/pytorch_model.bin`.
    pub weights: Option<PathBuf>,
}

/// Stream constants of the stages' random numbers.
const SEMANTIC_STREAM: u64 = 1;
const COARSE_STREAM: u64 = 2;
const FINE_STREAM: u64 = 3;

/// A loaded Bark: tokenizer, the three GPTs and the codec decoder on one device.
pub struct Bark {
    ctx: Context,
    config: BarkConfig,
    tokenizer: TextTokenizer,
    semantic: CausalGpt,
    coarse: CausalGpt,
    fine: FineGpt,
    codec: EncodecDecoder,
    progress: Reporter,
}

impl Bark {
    /// Loads `dir` (config.json, weights, tokenizer) on the default adapter.
    pub fn load(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Bark> {
        Bark::load_on(&Context::new(&ContextOptions::default())?, dir, opts)
    }

    /// Loads `dir` on a given device.
    pub fn load_on(ctx: &Context, dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Bark> {
        let dir = dir.as_ref();
        let config = BarkConfig::load(dir.join("config.json"))?;
        let fine_cfg = &config.fine_acoustics_config;
        if fine_cfg.n_codes_total != 8 {
            return Err(Error::Invalid(format!("a fine model of {} codebooks; Bark has 8", fine_cfg.n_codes_total)));
        }
        let tokenizer = TextTokenizer::load(opts.tokenizer.clone().unwrap_or_else(|| dir.join("tokenizer.json")))?;
        let weights = match &opts.weights {
            Some(p) => Weights::open(p)?,
            None => Weights::open_dir(dir)?,
        };
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

    /// Text to semantic tokens.
    pub fn semantic(&self, text: &str, opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Vec<u32>> {
        batch::only(self.semantic_batch(&[text], opts, voice, 1)?)
    }

    /// Semantic tokens to interleaved coarse tokens.
    pub fn coarse(&self, semantic: &[u32], opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Vec<u32>> {
        batch::only(self.coarse_batch(&[semantic.to_vec()], opts, voice, 1)?)
    }

    /// Interleaved coarse tokens to `[codebook][frame]` codes of all 8 codebooks.
    pub fn fine(&self, coarse: &[u32], opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Vec<Vec<u32>>> {
        batch::only(self.fine_batch(&[coarse.to_vec()], opts, voice, 1)?)
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
        self.in_stage(Stage::Decode, 1, |progress| {
            let audio = self.decode_quietly(fine)?;
            progress.advance(Stage::Decode, 1);
            Ok(audio)
        })
    }

    /// [`Bark::decode`] without progress reports (for callers that report a batch of them).
    pub(crate) fn decode_quietly(&self, fine: &[Vec<u32>]) -> Result<Audio> {
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
        let samples = self.codec.decode(&self.ctx, &codes, n_q, 1, frames)?;
        Ok(Audio { samples, sample_rate })
    }

    /// All four stages, for text of at most 256 tokens (longer text is an error: see
    /// [`Bark::generate_long`]).
    pub fn generate(&self, text: &str, opts: &GenerateOptions, voice: Option<&VoicePrompt>) -> Result<Generation> {
        let semantic = self.semantic(text, opts, voice)?;
        let coarse = self.coarse(&semantic, opts, voice)?;
        let fine = self.fine(&coarse, opts, voice)?;
        let audio = self.decode(&fine)?;
        Ok(Generation { semantic, coarse, fine, audio })
    }
}
