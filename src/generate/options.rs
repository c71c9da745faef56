//! How to generate and how to load: [`GenerateOptions`] (with the greedy and the original
//! Bark's sampling presets) and [`LoadOptions`], and what each stage's sampler and random
//! stream are made from them.

use std::path::PathBuf;

use super::coarse::CoarseMask;
use super::rng::Rng;
use super::semantic::MAX_SEMANTIC_TOKENS;
use crate::ops::sampling::{check_temperature, check_top_k, check_unit, EosRule, SampleSettings, SamplingOrder};
use crate::vocab::SEMANTIC_EOS;
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
            max_semantic_tokens: MAX_SEMANTIC_TOKENS,
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

    /// Checks every setting, naming the field at fault, so that a bad one is refused before
    /// the request shares a decode step with others (where it would fail them all).
    pub fn check(&self) -> Result<()> {
        let temps = [("text_temp", Some(self.text_temp)), ("waveform_temp", Some(self.waveform_temp))];
        for (name, t) in temps.into_iter().chain([("fine_temp", self.fine_temp)]) {
            t.map_or(Ok(()), |t| check_temperature(name, t)).map_err(Error::Invalid)?;
        }
        check_top_k(self.top_k).map_err(Error::Invalid)?;
        check_unit("top_p", self.top_p).map_err(Error::Invalid)?;
        check_unit("min_eos_p", self.min_eos_p).map_err(Error::Invalid)?;
        if !(1..=MAX_SEMANTIC_TOKENS).contains(&self.max_semantic_tokens) {
            return Err(Error::Invalid(format!(
                "max_semantic_tokens {} is not in 1..={MAX_SEMANTIC_TOKENS}",
                self.max_semantic_tokens
            )));
        }
        Ok(())
    }

    /// Temperature, filters and rules of a stage at `temperature` (greedy: 0). Allowed ids are
    /// the stage's to set.
    pub(super) fn settings(&self, temperature: f32) -> SampleSettings {
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

    pub(super) fn semantic_settings(&self) -> SampleSettings {
        SampleSettings {
            allowed: (0, SEMANTIC_EOS + 1),
            eos: Some(SEMANTIC_EOS),
            // transformers treats 0.0 as "off" (`if self.min_eos_p:`).
            min_eos_p: self.min_eos_p.filter(|&m| m > 0.0),
            ..self.settings(self.text_temp)
        }
    }

    pub(super) fn fine_temperature(&self) -> Option<f32> {
        if self.greedy {
            None
        } else {
            self.fine_temp
        }
    }

    /// A stage's random stream, `None` when it never samples.
    pub(super) fn rng(&self, stage: u64, samples: bool) -> Option<Rng> {
        samples.then(|| Rng::new(self.seed, stage))
    }
}

/// How to load a checkpoint directory.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Keep the GPTs' large matrices and the semantic and coarse KV caches in f16 (halves memory
    /// and bandwidth; not bit-exact).
    pub f16: bool,
    /// `tokenizer.json`, a slow tokenizer's `vocab.txt`, or a directory with either; `None`: the
    /// model directory (its `tokenizer.json`, else its `vocab.txt` and `tokenizer_config.json`).
    pub tokenizer: Option<PathBuf>,
    /// The checkpoint file, or a sharded checkpoint's `*.index.json`; `None`: the first of
    /// `<dir>/model.safetensors`, `model.safetensors.index.json`, `pytorch_model.bin` and
    /// `pytorch_model.bin.index.json` (transformers' order).
    pub weights: Option<PathBuf>,
}

/// A model's files in memory, as a browser has them after fetching (see [`Bark::load_files`]):
/// the text of `config.json`, the bytes of `tokenizer.json`, and the checkpoint
/// (`model.safetensors` or `pytorch_model.bin`, told apart by content) with the name messages
/// give it.
///
/// [`Bark::load_files`]: super::Bark::load_files
#[derive(Clone, Debug, Default)]
pub struct ModelFiles {
    pub config: String,
    pub tokenizer: Vec<u8>,
    pub weights: Vec<u8>,
    pub weights_name: String,
}

/// Stream constants of the stages' random numbers.
pub(super) const SEMANTIC_STREAM: u64 = 1;
pub(super) const COARSE_STREAM: u64 = 2;
pub(super) const FINE_STREAM: u64 = 3;
