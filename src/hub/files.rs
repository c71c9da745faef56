//! What voice cloning needs besides Bark: a HuBERT checkpoint directory and a quantizer file,
//! each a local path or files of a hub repo, cached and downloaded as Bark's model is.

use std::path::{Path, PathBuf};

use super::{and_list, cached_snapshot, download, parse_repo, repo_dir, ResolveOptions};
use crate::{Error, Result};

/// HuBERT base, the model GitMylo's quantizers were trained on (transformers layout).
pub const DEFAULT_HUBERT: &str = "facebook/hubert-base-ls960";
/// GitMylo's quantizer repo, and the file used when `--quantizer` names the repo alone.
pub const DEFAULT_QUANTIZER: &str = "GitMylo/bark-voice-cloning";
pub const DEFAULT_QUANTIZER_FILE: &str = "quantifier_hubert_base_ls960_14.pth";

/// Each entry is one needed file, given as alternatives (the first the repo has is taken).
type Needs<'a> = &'a [&'a [&'a str]];

const HUBERT_FILES: Needs = &[&["config.json"], &["model.safetensors", "pytorch_model.bin"]];

/// One needed file in words: "a (or b)".
fn describe(alternatives: &[&str]) -> String {
    match alternatives {
        [first, rest @ ..] if !rest.is_empty() => format!("{first} (or {})", rest.join(", ")),
        _ => alternatives.join(""),
    }
}

/// The entries of `need` that `dir` lacks, in words.
fn lacking(dir: &Path, need: Needs) -> Vec<String> {
    need.iter().filter(|alts| !alts.iter().any(|f| dir.join(f).is_file())).map(|alts| describe(alts)).collect()
}

/// Resolves `--hubert`: a directory with config.json and weights, or a repo id `owner/name[@rev]`.
pub fn resolve_hubert(spec: &str, opts: &ResolveOptions) -> Result<PathBuf> {
    if Path::new(spec).is_dir() {
        let missing = lacking(Path::new(spec), HUBERT_FILES);
        if missing.is_empty() {
            return Ok(spec.into());
        }
        let message = format!("is not a HuBERT checkpoint directory: missing {}", and_list(&missing));
        return Err(Error::File { path: spec.into(), message });
    }
    resolve_files(spec, "HuBERT", HUBERT_FILES, opts)
}

/// Resolves `--quantizer`: a file, or `owner/name[@rev][:file]` (file: [`DEFAULT_QUANTIZER_FILE`]).
pub fn resolve_quantizer(spec: &str, opts: &ResolveOptions) -> Result<PathBuf> {
    if Path::new(spec).is_file() {
        return Ok(spec.into());
    }
    let (repo, file) = spec.split_once(':').unwrap_or((spec, DEFAULT_QUANTIZER_FILE));
    let dir = resolve_files(repo, "quantizer", &[&[file]], opts)?;
    Ok(dir.join(file))
}

/// The snapshot of hub repo `spec` holding `need`: from the cache, else downloaded into it.
fn resolve_files(spec: &str, what: &str, need: Needs, opts: &ResolveOptions) -> Result<PathBuf> {
    let Some((repo, revision)) = parse_repo(spec, &opts.revision) else {
        return Err(Error::File { path: spec.into(), message: format!("no such {what} file or directory") });
    };
    let all: Vec<String> = need.iter().map(|alts| describe(alts)).collect();
    let fail = |reason: &str, missing: &[String], cache: Option<&Path>| {
        let cache = cache.map_or_else(|| "~/.cache/huggingface/hub".into(), |c| c.display().to_string());
        Error::Hub {
            what: format!("{what} {repo}"),
            message: format!(
                "{reason}: fetch {} from {}/{repo}, e.g. with `huggingface-cli download {repo}` (which fills {cache}), \
                 or pass a local path",
                and_list(missing),
                opts.endpoint
            ),
        }
    };
    let Some(cache) = opts.cache.as_deref() else {
        return Err(fail("there is no Hugging Face cache directory (set HF_HUB_CACHE or HF_HOME)", &all, None));
    };
    let snapshot = cached_snapshot(cache, repo, revision);
    if let Some(dir) = snapshot.as_deref().filter(|d| lacking(d, need).is_empty()) {
        return Ok(dir.to_path_buf());
    }
    if opts.offline {
        let any = std::fs::read_dir(repo_dir(cache, repo).join("snapshots"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|d| lacking(d, need).is_empty());
        let missing = snapshot.as_deref().map_or(all.clone(), |d| lacking(d, need));
        return any.ok_or_else(|| fail("HF_HUB_OFFLINE is set", &missing, Some(cache)));
    }
    download::fetch_needed(repo, revision, cache, need, opts).map_err(|reason| fail(&reason, &all, Some(cache)))
}
