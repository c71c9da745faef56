//! Which voice a request's `voice` names: a prompt served from `--voices DIR` (by file stem), a
//! preset the model ships, or a name of the voice map (OpenAI's voice names by default, which
//! the operator may change with `--voice-map FILE`), which speaks as the stem or preset it maps
//! to (or, for a model without that preset, with no history prompt, as Bark does by default).
//! Anything else is an error: a client never names a path.

use std::path::{Path, PathBuf};

use crate::voice::{list_voices, resolve_voice, VoicePrompt};
use crate::{Error, Result};

/// OpenAI's voice names and the presets they speak as, unless the operator's map says otherwise.
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

/// The default voice map: [`OPENAI_VOICES`].
pub fn openai_voice_map() -> Vec<(String, String)> {
    OPENAI_VOICES.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect()
}

/// Reads a voice map: a JSON object of names to the stems or presets they speak as, e.g.
/// `{"alloy": "v2/en_speaker_3", "narrator": "my_clone"}`. Its names are added to the default
/// map, replacing those it repeats; a name mapped to `null` is taken out.
pub fn read_voice_map(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::File { path: path.into(), message: format!("cannot read the voice map: {e}") })?;
    parse_voice_map(&text).map_err(|message| Error::File { path: path.into(), message })
}

/// [`read_voice_map`] of a map's JSON text; the error is a sentence without the file's name.
pub fn parse_voice_map(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the voice map is not valid JSON: {e}"))?;
    let entries = value.as_object().ok_or("the voice map must be a JSON object of names")?;
    let mut map = openai_voice_map();
    for (name, target) in entries {
        map.retain(|(n, _)| n != name);
        match target {
            serde_json::Value::Null => {}
            serde_json::Value::String(t) if !t.is_empty() => map.push((name.clone(), t.clone())),
            other => return Err(format!("{name:?} maps to {other}; a voice name (a string) or null was expected")),
        }
    }
    Ok(map)
}

/// The voices a server offers.
pub struct VoiceTable {
    model_dir: PathBuf,
    voices_dir: Option<PathBuf>,
    map: Vec<(String, String)>,
}

/// A name that can only be a file stem: letters, digits, `-` and `_`.
fn is_stem(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl VoiceTable {
    /// Checks that every name of `map` speaks as a served stem or a preset of the model (any
    /// target will do for a model with no presets: it speaks with no history prompt).
    pub fn new(model_dir: impl Into<PathBuf>, voices_dir: Option<PathBuf>, map: Vec<(String, String)>) -> Result<Self> {
        let table = VoiceTable { model_dir: model_dir.into(), voices_dir, map };
        let presets = list_voices(&table.model_dir)?;
        for (name, target) in &table.map {
            if table.stem(target).is_none() && !presets.is_empty() && !presets.contains(target) {
                return Err(Error::Invalid(format!(
                    "the voice map sends {name:?} to {target:?}, which is neither a preset of the model nor a \
                     prompt in --voices"
                )));
            }
        }
        Ok(table)
    }

    /// The prompt file `--voices` serves for `name`, if any.
    fn stem(&self, name: &str) -> Option<PathBuf> {
        let dir = self.voices_dir.as_ref().filter(|_| is_stem(name))?;
        Some(dir.join(format!("{name}.npz"))).filter(|p| p.is_file())
    }

    /// A stem or a preset: its prompt; `None` when `name` is neither.
    fn direct(&self, name: &str, presets: &[String]) -> Result<Option<VoicePrompt>> {
        if let Some(path) = self.stem(name) {
            return VoicePrompt::load_npz(&path).map(Some);
        }
        if presets.iter().any(|p| p == name) {
            return resolve_voice(&self.model_dir, name).map(Some);
        }
        Ok(None)
    }

    /// The prompt `name` speaks with (`None`: no history prompt).
    pub fn resolve(&self, name: &str) -> Result<Option<VoicePrompt>> {
        let presets = list_voices(&self.model_dir)?;
        if let Some(prompt) = self.direct(name, &presets)? {
            return Ok(Some(prompt));
        }
        if let Some((_, target)) = self.map.iter().find(|(n, _)| n == name) {
            return self.direct(target, &presets);
        }
        Err(Error::Invalid(format!(
            "unknown voice {name:?}: name a preset of the model, one of the server's voice names, or a prompt the \
             server serves with --voices (GET /v1/audio/voices lists them)"
        )))
    }

    /// Every name a request may give: mapped names, served stems, the model's presets.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.map.iter().map(|(n, _)| n.clone()).collect();
        if let Some(dir) = &self.voices_dir {
            let entries =
                std::fs::read_dir(dir).map_err(|e| Error::File { path: dir.clone(), message: e.to_string() })?;
            let mut stems: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".npz").map(str::to_string))
                .filter(|s| is_stem(s))
                .collect();
            stems.sort();
            names.extend(stems);
        }
        names.extend(list_voices(&self.model_dir)?);
        names.dedup();
        Ok(names)
    }
}
