//! Which voice a request's `voice` names: a prompt served from `--voices DIR` (by file stem), a
//! preset the model ships, or one of OpenAI's voice names, which speak as the preset the table
//! maps them to (or, for a model without that preset, with no history prompt, as Bark does by
//! default). Anything else is an error: a client never names a path.

use std::path::PathBuf;

use crate::voice::{list_voices, resolve_voice, VoicePrompt};
use crate::{Error, Result};

/// OpenAI's voice names and the presets they speak as.
pub const OPENAI_VOICES: [(&str, &str); 11] = [
    ("alloy", "v2/en_speaker_0"),
    ("echo", "v2/en_speaker_1"),
    ("fable", "v2/en_speaker_2"),
    ("onyx", "v2/en_speaker_3"),
    ("shimmer", "v2/en_speaker_4"),
    ("ash", "v2/en_speaker_5"),
    ("coral", "v2/en_speaker_6"),
    ("sage", "v2/en_speaker_7"),
    ("ballad", "v2/en_speaker_8"),
    ("nova", "v2/en_speaker_9"),
    ("verse", "v2/en_speaker_6"),
];

/// The voices a server offers.
pub struct VoiceTable {
    model_dir: PathBuf,
    voices_dir: Option<PathBuf>,
}

/// A name that can only be a file stem: letters, digits, `-` and `_`.
fn is_stem(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl VoiceTable {
    pub fn new(model_dir: impl Into<PathBuf>, voices_dir: Option<PathBuf>) -> VoiceTable {
        VoiceTable { model_dir: model_dir.into(), voices_dir }
    }

    /// The prompt `name` speaks with (`None`: no history prompt).
    pub fn resolve(&self, name: &str) -> Result<Option<VoicePrompt>> {
        if let Some(dir) = self.voices_dir.as_ref().filter(|_| is_stem(name)) {
            let path = dir.join(format!("{name}.npz"));
            if path.is_file() {
                return VoicePrompt::load_npz(&path).map(Some);
            }
        }
        let presets = list_voices(&self.model_dir)?;
        if presets.iter().any(|p| p == name) {
            return resolve_voice(&self.model_dir, name).map(Some);
        }
        if let Some((_, preset)) = OPENAI_VOICES.iter().find(|(n, _)| *n == name) {
            return match presets.iter().any(|p| p == preset) {
                true => resolve_voice(&self.model_dir, preset).map(Some),
                false => Ok(None),
            };
        }
        Err(Error::Invalid(format!(
            "unknown voice {name:?}: name a preset of the model, one of OpenAI's voices, or a prompt the server \
             serves with --voices"
        )))
    }
}
