//! A voice prompt from a recording, without HuBERT: the coarse and fine prompts are the
//! recording's own EnCodec codes (encoder + RVQ encode, equal to transformers'), and the semantic
//! prompt is generated from the text spoken in the recording, sized to the recording's length
//! (Bark's 49.9 semantic tokens per second of 75 codec frames). This is how the voice-cloning
//! community builds prompts when no HuBERT quantizer is at hand; the semantic half only
//! approximates what the speaker said, so the clone follows the timbre of the recording more
//! closely than its prosody.

use std::path::Path;

use super::bark::Bark;
use super::options::GenerateOptions;
use crate::audio::{resample, SAMPLE_RATE};
use crate::model::encodec::{checkpoint_fetch, EncodecEncoder};
use crate::vocab::SEMANTIC_VOCAB;
use crate::voice::VoicePrompt;
use crate::weights::Weights;
use crate::{Error, Result};

/// Semantic tokens per codec frame (49.9 Hz against 75 Hz).
const SEMANTIC_PER_FRAME: f64 = 49.9 / 75.0;

impl Bark {
    /// Makes a voice prompt from `audio` (mono, any sample rate) and the text spoken in it.
    /// `model_dir` is the checkpoint directory (its codec encoder is loaded for this call).
    pub fn clone_voice(
        &self,
        model_dir: impl AsRef<Path>,
        audio: &[f32],
        sample_rate: u32,
        text: &str,
        opts: &GenerateOptions,
    ) -> Result<VoicePrompt> {
        if audio.is_empty() {
            return Err(Error::Invalid("the recording holds no samples".into()));
        }
        let audio =
            if sample_rate == SAMPLE_RATE { audio.to_vec() } else { resample(audio, sample_rate, SAMPLE_RATE)? };
        let codes = self.encode_audio(model_dir.as_ref(), &audio)?;
        let frames = codes[0].len();
        if frames < 2 {
            return Err(Error::Invalid(format!(
                "the recording is {frames} codec frame(s) long; at least 2 are needed"
            )));
        }
        let max_tokens =
            ((frames as f64 * SEMANTIC_PER_FRAME).round() as usize).clamp(2, opts.max_semantic_tokens.max(2));
        let sem_opts = GenerateOptions { max_semantic_tokens: max_tokens, ..opts.clone() };
        let mut semantic = self.semantic(text, &sem_opts, None)?;
        semantic.retain(|&t| t < SEMANTIC_VOCAB);
        if semantic.len() < 2 {
            return Err(Error::Invalid(format!(
                "the text gave {} semantic token(s) before its end; a voice prompt needs at least 2 (give the words spoken in the recording)",
                semantic.len()
            )));
        }
        let prompt = VoicePrompt { semantic, coarse: codes[..2].to_vec(), fine: codes };
        prompt.validate().map_err(|m| Error::Invalid(format!("cloned voice: {m}")))?;
        Ok(prompt)
    }

    /// 24 kHz mono samples to the codec's `[codebook][frame]` codes (8 codebooks).
    pub fn encode_audio(&self, model_dir: &Path, audio: &[f32]) -> Result<Vec<Vec<u32>>> {
        let weights = Weights::open_dir(model_dir)?;
        let ctx = &self.ctx;
        let mut fetch = checkpoint_fetch(ctx, &weights);
        let n_q = self.config.fine_acoustics_config.n_codes_total;
        let encoder = EncodecEncoder::load(ctx, &self.config.codec_config, n_q, &mut fetch)?;
        let (flat, frames) = encoder.encode(ctx, audio, 1, n_q)?;
        Ok(flat.chunks(frames).map(<[u32]>::to_vec).collect())
    }
}
