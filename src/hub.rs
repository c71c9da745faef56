//! Where a model lives: a local directory in the Hugging Face layout, or a hub repo id looked up
//! in the Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`),
//! where `huggingface-cli download` and every Hugging Face library put their files.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The model a plain `bark-wgpu say` uses.
pub const DEFAULT_MODEL: &str = "suno/bark-small";

/// Files a Bark model directory must hold (one of the two weight files is enough).
pub const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// The Hugging Face hub cache directory.
pub fn hub_cache() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// What is missing from `dir` for it to be a Bark model directory (empty: nothing).
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = REQUIRED_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !WEIGHT_FILES.iter().any(|f| dir.join(f).is_file()) {
        missing.push("model.safetensors (or pytorch_model.bin)");
    }
    missing
}

/// The snapshot of `repo` (`owner/name`) in `cache`: the revision `refs/main` names, else any.
fn cached_snapshot(cache: &Path, repo: &str) -> Option<PathBuf> {
    let base = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = base.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(base.join("refs/main")) {
        let p = snapshots.join(rev.trim());
        if p.is_dir() {
            return Some(p);
        }
    }
    std::fs::read_dir(&snapshots).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.is_dir())
}

/// Resolves `--model`: an existing directory, or a repo id found in the hub cache. The error
/// for a repo id that is not there says which files to fetch and where to put them.
pub fn resolve_model(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return check_dir(path);
    }
    let looks_like_repo = model.split('/').count() == 2 && !model.starts_with('.') && !model.starts_with('/');
    if !looks_like_repo {
        return Err(Error::File { path: path.into(), message: "no such model directory".into() });
    }
    let cache = hub_cache();
    if let Some(dir) = cache.as_deref().and_then(|c| cached_snapshot(c, model)) {
        return check_dir(&dir);
    }
    let want =
        format!("{}, {} and {}", REQUIRED_FILES[0], REQUIRED_FILES[1], "model.safetensors (or pytorch_model.bin)");
    let cache = cache.map(|c| c.display().to_string()).unwrap_or_else(|| "~/.cache/huggingface/hub".into());
    Err(Error::Invalid(format!(
        "model {model} is not downloaded and bark-wgpu does not download it itself: fetch {want} (plus \
         speaker_embeddings_path.json and speaker_embeddings/ for voice presets) from the Hugging Face repo \
         {model}, e.g. with `huggingface-cli download {model}` (which fills {cache}), or put them in a \
         directory and pass --model DIR"
    )))
}

fn check_dir(dir: &Path) -> Result<PathBuf> {
    let missing = missing_files(dir);
    if missing.is_empty() {
        Ok(dir.to_path_buf())
    } else {
        Err(Error::File {
            path: dir.into(),
            message: format!("is not a Bark model directory: missing {}", missing.join(", ")),
        })
    }
}
