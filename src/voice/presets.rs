//! The voice presets of a Hugging Face checkout: `speaker_embeddings_path.json` maps each preset
//! name (`v2/en_speaker_6`, `announcer`, ...) to three `.npy` files relative to the model directory.

use std::path::{Component, Path, PathBuf};

use super::{read_npy_file, VoicePrompt, KEYS};
use crate::{Error, Result};

/// The preset index file of a Hugging Face checkout.
pub const PRESET_INDEX: &str = "speaker_embeddings_path.json";

/// A voice from `name_or_path`: an existing `.npz` file, or else the name of a preset of `model_dir`.
/// An unknown name gives an error that suggests the closest preset names.
pub fn resolve_voice(model_dir: impl AsRef<Path>, name_or_path: &str) -> Result<VoicePrompt> {
    let model_dir = model_dir.as_ref();
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return VoicePrompt::load_npz(as_path);
    }
    let index_path = model_dir.join(PRESET_INDEX);
    let index = read_index(&index_path)?;
    if let Some(files) = index.as_ref().and_then(|i| i.get(name_or_path)) {
        return load_preset(model_dir, &index_path, name_or_path, files);
    }
    if name_or_path.ends_with(".npz") {
        return Err(Error::File { path: as_path.into(), message: "no such voice prompt file".into() });
    }
    let Some(index) = index else {
        return Err(Error::File {
            path: index_path,
            message: format!("`{name_or_path}` is neither a voice prompt file nor a preset: this model has no presets"),
        });
    };
    let names = preset_names(&index);
    let near = closest(name_or_path, &names, 3);
    Err(Error::File {
        path: index_path,
        message: format!("no voice preset `{name_or_path}` (and no such file); closest presets: {}", near.join(", ")),
    })
}

/// The three files (relative to `model_dir`, in [`KEYS`] order) that preset `name` names, or
/// `None` when `model_dir` has no such preset. Lets a caller fetch them before [`resolve_voice`].
pub fn preset_files(model_dir: impl AsRef<Path>, name: &str) -> Result<Option<Vec<String>>> {
    let index_path = model_dir.as_ref().join(PRESET_INDEX);
    let Some(files) = read_index(&index_path)?.and_then(|mut i| i.remove(name)) else {
        return Ok(None);
    };
    if !files.is_object() {
        return Ok(None);
    }
    KEYS.iter()
        .map(|key| preset_path(&index_path, name, &files, key).map(|p| p.to_string()))
        .collect::<Result<_>>()
        .map(Some)
}

/// The relative path preset `name` gives for `key`, refused when it would leave the model directory.
fn preset_path<'a>(index_path: &Path, name: &str, files: &'a serde_json::Value, key: &str) -> Result<&'a str> {
    let bad = |message: String| Error::File { path: index_path.into(), message };
    let rel =
        files.get(key).and_then(|v| v.as_str()).ok_or_else(|| bad(format!("preset `{name}` has no `{key}` file")))?;
    if !Path::new(rel).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(bad(format!("preset `{name}`: `{key}` path {rel:?} leaves the model directory")));
    }
    Ok(rel)
}

/// The preset names of `model_dir`, sorted; empty when it has no `speaker_embeddings_path.json`.
pub fn list_voices(model_dir: impl AsRef<Path>) -> Result<Vec<String>> {
    Ok(read_index(&model_dir.as_ref().join(PRESET_INDEX))?.map(|i| preset_names(&i)).unwrap_or_default())
}

type Index = serde_json::Map<String, serde_json::Value>;

fn read_index(path: &Path) -> Result<Option<Index>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::File { path: path.into(), message: format!("cannot read: {e}") })?;
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(Error::File { path: path.into(), message: "is not a JSON object of presets".into() }),
        Err(e) => Err(Error::File { path: path.into(), message: format!("is not valid JSON: {e}") }),
    }
}

/// Presets are the entries whose value is an object; `repo_or_path` (a string) is not one.
fn preset_names(index: &Index) -> Vec<String> {
    let mut names: Vec<String> = index.iter().filter(|(_, v)| v.is_object()).map(|(k, _)| k.clone()).collect();
    names.sort();
    names
}

fn load_preset(model_dir: &Path, index_path: &Path, name: &str, files: &serde_json::Value) -> Result<VoicePrompt> {
    let load = |key: &str| -> Result<_> {
        let rel = preset_path(index_path, name, files, key)?;
        let path: PathBuf = model_dir.join(rel);
        if !stays_inside(model_dir, &path) {
            let message =
                format!("preset `{name}`: `{key}` path {rel:?} leads out of the model directory through a symlink");
            return Err(Error::File { path: index_path.into(), message });
        }
        Ok((path.clone(), read_npy_file(&path)?))
    };
    let (semantic, coarse, fine) = (load(KEYS[0])?, load(KEYS[1])?, load(KEYS[2])?);
    VoicePrompt::from_arrays(semantic.1, coarse.1, fine.1).map_err(|message| {
        // Name the file of the key the message is about.
        let path = [&semantic.0, &coarse.0, &fine.0]
            .into_iter()
            .zip(KEYS)
            .find(|(_, key)| message.starts_with(&format!("`{key}`")))
            .map_or_else(|| index_path.to_path_buf(), |(p, _)| p.clone());
        Error::File { path, message: format!("preset `{name}`: {message}") }
    })
}

/// Whether `path`, with its symlinks followed, lies inside `model_dir`, or for a hub snapshot
/// (`.../snapshots/<commit>`, whose files link to `../../blobs/`) inside its repo's cache folder.
/// A path that does not resolve (a missing file) passes: reading it says what is wrong.
fn stays_inside(model_dir: &Path, path: &Path) -> bool {
    let Ok(target) = path.canonicalize() else { return true };
    let in_snapshots = model_dir.parent().and_then(Path::file_name).is_some_and(|n| n == "snapshots");
    let root = if in_snapshots { model_dir.ancestors().nth(2).unwrap_or(model_dir) } else { model_dir };
    root.canonicalize().is_ok_and(|root| target.starts_with(root))
}

/// The `count` names nearest to `query` by edit distance, nearest first.
fn closest(query: &str, names: &[String], count: usize) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = names.iter().map(|n| (edit_distance(query, n), n)).collect();
    scored.sort();
    scored.into_iter().take(count).map(|(_, n)| n.clone()).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
