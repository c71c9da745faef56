//! A voice prompt from a recording alone, as the voice-cloning community's pipeline (GitMylo's
//! bark-voice-cloning) makes it: the recording's channels averaged to mono; resampled to 16 kHz
//! for HuBERT, whose 9th layer's features go through the semantic quantizer (the semantic
//! prompt); resampled to 24 kHz for the EnCodec encoder, whose 8 codebooks are the fine prompt
//! and whose first 2 the coarse prompt. Both resamplings start from the recording's own rate, as
//! the reference resamples each copy separately.

use std::path::Path;

use super::bark::Bark;
use crate::audio::{resample, SAMPLE_RATE};
use crate::gpu::Context;
use crate::model::encodec::{checkpoint_fetch, EncodecEncoder};
use crate::model::hubert::{self, Hubert, QUANTIZER_LAYER};
use crate::model::quantizer::{audio_to_tokens, Quantizer};
use crate::model::BarkConfig;
use crate::vocab::SEMANTIC_VOCAB;
use crate::voice::VoicePrompt;
use crate::weights::Weights;
use crate::{Error, Result};

/// The shortest recording taken, in seconds (GitMylo's advice: under a second clones badly).
pub const MIN_SECONDS: f64 = 1.0;
/// The longest recording taken, in seconds (the prompt of a minute already fills Bark's windows).
pub const MAX_SECONDS: f64 = 60.0;
/// A recording whose loudest sample (after the channels are averaged) is below this, -60 dBFS,
/// is taken for silence.
pub const SILENCE_PEAK: f32 = 1e-3;

/// HuBERT, the semantic quantizer and Bark's codec encoder on one device: all that cloning
/// needs (Bark's GPTs are not loaded for it).
pub struct VoiceCloner {
    ctx: Context,
    hubert: Hubert,
    quantizer: Quantizer,
    encoder: EncodecEncoder,
    codebooks: usize,
}

impl VoiceCloner {
    /// Loads HuBERT from `hubert_dir` (transformers layout), the quantizer file and the EnCodec
    /// encoder of Bark's checkpoint `model_dir` (its config.json and weights) on `ctx`.
    pub fn load(ctx: &Context, model_dir: &Path, hubert_dir: &Path, quantizer_path: &Path) -> Result<VoiceCloner> {
        let hubert = Hubert::load(ctx, hubert_dir, QUANTIZER_LAYER)?;
        let quantizer = Quantizer::load(ctx, quantizer_path)?;
        check_fit(&hubert, &quantizer).map_err(|message| Error::File { path: quantizer_path.into(), message })?;
        let config = BarkConfig::load(model_dir.join("config.json"))?;
        let codebooks = config.fine_acoustics_config.n_codes_total;
        let weights = Weights::open_dir(model_dir)?;
        let encoder = EncodecEncoder::load(ctx, &config.codec_config, codebooks, &mut checkpoint_fetch(ctx, &weights))?;
        Ok(VoiceCloner { ctx: ctx.clone(), hubert, quantizer, encoder, codebooks })
    }

    pub fn hubert(&self) -> &Hubert {
        &self.hubert
    }

    /// Makes a voice prompt from `audio` alone (mono, any sample rate; [`crate::audio::Audio::mono`]
    /// averages a recording's channels as the reference does).
    pub fn clone_voice(&self, audio: &[f32], sample_rate: u32) -> Result<VoicePrompt> {
        check_recording(audio, sample_rate)?;
        let to = |rate: u32| if sample_rate == rate { Ok(audio.to_vec()) } else { resample(audio, sample_rate, rate) };
        let semantic = audio_to_tokens(&self.ctx, &self.hubert, &self.quantizer, &to(hubert::SAMPLE_RATE as u32)?)?;
        let (flat, frames) = self.encoder.encode(&self.ctx, &to(SAMPLE_RATE)?, 1, self.codebooks)?;
        let fine: Vec<Vec<u32>> = flat.chunks(frames).map(<[u32]>::to_vec).collect();
        let prompt = VoicePrompt { semantic, coarse: fine[..2].to_vec(), fine };
        prompt.validate().map_err(|m| Error::Invalid(format!("cloned voice: {m}")))?;
        Ok(prompt)
    }
}

/// The quantizer must read this HuBERT's features and give Bark's semantic tokens.
fn check_fit(hubert: &Hubert, quantizer: &Quantizer) -> Result<(), String> {
    let width = hubert.config().hidden_size;
    if quantizer.input_size() != width {
        return Err(format!(
            "the quantizer reads features of {} values but this HuBERT gives {width}: pick the quantizer trained on this HuBERT",
            quantizer.input_size()
        ));
    }
    if quantizer.classes() > SEMANTIC_VOCAB as usize {
        return Err(format!(
            "the quantizer has {} classes but Bark has {SEMANTIC_VOCAB} semantic tokens: it is not a Bark quantizer",
            quantizer.classes()
        ));
    }
    Ok(())
}

/// Checks a mono recording before any GPU work: a rate, 1 to 60 s, finite samples, not silent.
pub fn check_recording(audio: &[f32], sample_rate: u32) -> Result<()> {
    if sample_rate == 0 {
        return Err(Error::Invalid("the recording has a sample rate of 0".into()));
    }
    let secs = audio.len() as f64 / sample_rate as f64;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
        return Err(Error::Invalid(format!(
            "the recording is {secs:.2} s long; give {MIN_SECONDS:.0} to {MAX_SECONDS:.0} s of speech"
        )));
    }
    if let Some(i) = audio.iter().position(|s| !s.is_finite()) {
        return Err(Error::Invalid(format!("sample {i} of the recording is {}", audio[i])));
    }
    let peak = audio.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak < SILENCE_PEAK {
        return Err(Error::Invalid(format!(
            "the recording is silent: its loudest sample is {peak:.6} of full scale, under {SILENCE_PEAK} (-60 dBFS)"
        )));
    }
    Ok(())
}

impl Bark {
    /// [`VoiceCloner::clone_voice`]: a voice prompt from `audio` alone, for this Bark.
    pub fn clone_voice_from(&self, cloner: &VoiceCloner, audio: &[f32], sample_rate: u32) -> Result<VoicePrompt> {
        if cloner.codebooks != self.config().fine_acoustics_config.n_codes_total {
            return Err(Error::Invalid("the cloner was loaded for another Bark checkpoint".into()));
        }
        cloner.clone_voice(audio, sample_rate)
    }
}
