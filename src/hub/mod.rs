//! Where a model lives: a local directory in the Hugging Face layout, or a hub repo id. A repo id
//! is looked up in the Hugging Face cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or
//! `~/.cache/huggingface/hub`, where `huggingface-cli download` and every Hugging Face library put
//! their files) and, when the cache lacks it, downloaded into that cache with the same layout, so
//! Python tools and bark-wgpu share one copy.

mod download;
mod files;

use std::path::{Path, PathBuf};

pub use files::{resolve_hubert, resolve_quantizer, DEFAULT_HUBERT, DEFAULT_QUANTIZER, DEFAULT_QUANTIZER_FILE};

use crate::voice::{preset_files, PRESET_INDEX};
use crate::{Error, Result};

/// The model a plain `bark-wgpu say` uses.
pub const DEFAULT_MODEL: &str = "suno/bark-small";

/// Files a Bark model directory must hold: these, a tokenizer and a checkpoint.
pub const REQUIRED_FILES: [&str; 1] = ["config.json"];
/// A tokenizer is `tokenizer.json` (fast), else `vocab.txt` (a slow BERT tokenizer), which may
/// come with these two.
pub const TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "vocab.txt"];
pub const SLOW_TOKENIZER_EXTRAS: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];
/// A checkpoint: one file or a sharded one's index (with every shard it names), in the order
/// transformers' `from_pretrained` looks for them.
pub const WEIGHT_FILES: [&str; 4] = crate::weights::CHECKPOINT_FILES;

const TOKENIZER_NEEDED: &str = "tokenizer.json (or vocab.txt)";
const WEIGHTS_NEEDED: &str = "model.safetensors (or pytorch_model.bin, or a sharded checkpoint's index and shards)";

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How a repo id is resolved. [`ResolveOptions::from_env`] reads what the Hugging Face tools read.
#[derive(Clone, Debug)]
pub struct ResolveOptions {
    /// The hub cache directory; `None` when neither the environment nor a home directory names one.
    pub cache: Option<PathBuf>,
    /// The hub's address (`$HF_ENDPOINT`, else <https://huggingface.co>).
    pub endpoint: String,
    /// Bearer token for private or gated repos (`$HF_TOKEN`, else the file `huggingface-cli login` writes).
    pub token: Option<String>,
    /// Never touch the network (`$HF_HUB_OFFLINE`): only the cache is looked at.
    pub offline: bool,
    /// Draw a progress bar on stderr for each downloaded file.
    pub progress: bool,
    /// Branch, tag or commit of the repo; a model spec `owner/name@rev` overrides it.
    pub revision: String,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions::from_env()
    }
}

impl ResolveOptions {
    /// Options from `HF_HUB_CACHE`/`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN` (or the token file) and
    /// `HF_HUB_OFFLINE`; no progress bar, revision `main`.
    pub fn from_env() -> ResolveOptions {
        let endpoint = env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        ResolveOptions {
            cache: hub_cache(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: env("HF_TOKEN").or_else(token_from_file),
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v)),
            progress: false,
            revision: "main".into(),
        }
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// huggingface_hub's reading of a boolean variable.
fn is_true(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
fn hf_home() -> Option<PathBuf> {
    if let Some(p) = env("HF_HOME") {
        return Some(p.into());
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return Some(PathBuf::from(p).join("huggingface"));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface"))
}

/// The token `huggingface-cli login` saved (`$HF_TOKEN_PATH`, else `$HF_HOME/token`).
fn token_from_file() -> Option<String> {
    let path = env("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| hf_home().map(|h| h.join("token")))?;
    let token = std::fs::read_to_string(path).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
}

/// The Hugging Face hub cache directory.
pub fn hub_cache() -> Option<PathBuf> {
    env("HF_HUB_CACHE")
        .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
        .map(PathBuf::from)
        .or_else(|| hf_home().map(|h| h.join("hub")))
}

/// What is missing from `dir` for it to be a Bark model directory (empty: nothing). A sharded
/// checkpoint counts once every shard its index names is there.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = REQUIRED_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !TOKENIZER_FILES.iter().any(|f| dir.join(f).is_file()) {
        missing.push(TOKENIZER_NEEDED);
    }
    if !WEIGHT_FILES.iter().any(|f| checkpoint_complete(dir, f)) {
        missing.push(WEIGHTS_NEEDED);
    }
    missing
}

/// `file` is in `dir`, and when it is an index, so is every shard it names.
fn checkpoint_complete(dir: &Path, file: &str) -> bool {
    let path = dir.join(file);
    if !path.is_file() {
        return false;
    }
    if !file.ends_with(".index.json") {
        return true;
    }
    crate::weights::shard_files(&path).is_ok_and(|shards| shards.iter().all(|s| dir.join(s).is_file()))
}

/// Everything [`missing_files`] can name: what an absent model lacks.
fn all_model_files() -> Vec<&'static str> {
    vec![REQUIRED_FILES[0], TOKENIZER_NEEDED, WEIGHTS_NEEDED]
}

/// A spec's repo id and revision: `owner/name` or `owner/name@rev`; `None` when it is not one.
fn parse_repo<'a>(spec: &'a str, default_revision: &'a str) -> Option<(&'a str, &'a str)> {
    let (id, rev) = spec.split_once('@').unwrap_or((spec, default_revision));
    let part_ok = |p: &str| {
        !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let (owner, name) = id.split_once('/')?;
    let rev_ok = !rev.is_empty() && !rev.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    (part_ok(owner) && part_ok(name) && rev_ok).then_some((id, rev))
}

/// `models--owner--name` under the cache: where the hub layout keeps a repo.
fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

fn is_commit_hash(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

/// The snapshot of `repo` at `revision` in `cache`: a commit hash names it, a branch or tag
/// names it through `refs/`.
fn cached_snapshot(cache: &Path, repo: &str, revision: &str) -> Option<PathBuf> {
    let base = repo_dir(cache, repo);
    let commit = if is_commit_hash(revision) {
        revision.to_string()
    } else {
        std::fs::read_to_string(base.join("refs").join(revision)).ok()?.trim().to_string()
    };
    Some(base.join("snapshots").join(commit)).filter(|p| p.is_dir())
}

/// Any complete snapshot of `repo`: what an offline run falls back to when `refs/` does not help.
fn any_complete_snapshot(cache: &Path, repo: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_dir(cache, repo).join("snapshots"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && missing_files(p).is_empty())
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

/// Resolves `--model`: an existing directory; else a repo id (`owner/name`, optionally
/// `@revision`) whose complete snapshot in the hub cache is used without any request; else the
/// repo's config.json, tokenizer (tokenizer.json, else vocab.txt with tokenizer_config.json and
/// special_tokens_map.json where the repo has them), checkpoint (model.safetensors, else a sharded
/// safetensors index and its shards, else the same for pytorch_model.bin) and
/// speaker_embeddings_path.json are downloaded into the cache. The error when that cannot be done
/// names the repo, the files to fetch and where to put them.
pub fn resolve_model_with(model: &str, opts: &ResolveOptions) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return check_dir(path);
    }
    let Some((repo, revision)) = parse_repo(model, &opts.revision) else {
        return Err(Error::File { path: path.into(), message: "no such model directory".into() });
    };
    let Some(cache) = opts.cache.as_deref() else {
        let reason = "there is no Hugging Face cache directory (set HF_HUB_CACHE or HF_HOME)";
        return Err(fetch_error(repo, reason, &all_model_files(), None, opts));
    };
    let snapshot = cached_snapshot(cache, repo, revision);
    if let Some(dir) = snapshot.as_deref().filter(|d| missing_files(d).is_empty()) {
        return Ok(dir.to_path_buf());
    }
    if opts.offline {
        if let Some(dir) = any_complete_snapshot(cache, repo).filter(|_| !is_commit_hash(revision)) {
            return Ok(dir);
        }
        let missing = snapshot.as_deref().map_or_else(all_model_files, missing_files);
        return Err(fetch_error(repo, "HF_HUB_OFFLINE is set", &missing, Some(cache), opts));
    }
    download::fetch_model(repo, revision, cache, opts)
}

/// The directory whose `speaker_embeddings_path.json` lists the voice presets of `model`. For a
/// hub repo that is not cached, only config.json and that index are downloaded, not the weights.
/// A model without presets gives a directory without the index (no presets to list).
pub fn resolve_voices_dir(model: &str, opts: &ResolveOptions) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.into());
    }
    let Some((repo, revision)) = parse_repo(model, &opts.revision) else {
        return Err(Error::File { path: path.into(), message: "no such model directory".into() });
    };
    let Some(cache) = opts.cache.as_deref() else {
        let reason = "there is no Hugging Face cache directory (set HF_HUB_CACHE or HF_HOME)";
        return Err(fetch_error(repo, reason, &[PRESET_INDEX], None, opts));
    };
    let snapshot = cached_snapshot(cache, repo, revision);
    if let Some(dir) = snapshot.filter(|d| d.join(PRESET_INDEX).is_file() || missing_files(d).is_empty()) {
        return Ok(dir);
    }
    if opts.offline {
        return any_complete_snapshot(cache, repo)
            .filter(|_| !is_commit_hash(revision))
            .ok_or_else(|| fetch_error(repo, "HF_HUB_OFFLINE is set", &[PRESET_INDEX], Some(cache), opts));
    }
    download::fetch_index(repo, revision, cache, opts)
}

/// Makes sure the files of voice preset `voice` are in `model_dir` when `model` is a hub repo
/// (`model_dir` then being its snapshot): they are downloaded on first use only, one preset at a
/// time. Does nothing for a local model directory, a voice that is a file, or a name that is no
/// preset ([`crate::voice::resolve_voice`] then says what is wrong).
pub fn fetch_voice_preset(model: &str, model_dir: &Path, voice: &str, opts: &ResolveOptions) -> Result<()> {
    let Some((repo, _)) = parse_repo(model, &opts.revision) else { return Ok(()) };
    let in_snapshots = model_dir.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "snapshots");
    if Path::new(model).is_dir() || Path::new(voice).is_file() || !in_snapshots {
        return Ok(());
    }
    let Some(files) = preset_files(model_dir, voice)? else { return Ok(()) };
    let missing: Vec<String> = files.into_iter().filter(|f| !model_dir.join(f).is_file()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what = format!("voice preset {voice} of {repo}");
    if opts.offline {
        return Err(files_error(&what, repo, "HF_HUB_OFFLINE is set", &missing, model_dir, opts));
    }
    download::fetch_files(repo, model_dir, &missing, opts)
        .map_err(|reason| files_error(&what, repo, &reason, &missing, model_dir, opts))
}

/// `a`, `a and b`, `a, b and c`.
fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => {
            format!("{} and {}", rest.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", "), last.as_ref())
        }
    }
}

/// The error for a model that is neither cached nor downloadable: what to fetch, from where, to where.
fn fetch_error(repo: &str, reason: &str, missing: &[&str], cache: Option<&Path>, opts: &ResolveOptions) -> Error {
    let missing = if missing.is_empty() { all_model_files() } else { missing.to_vec() };
    let cache = cache.map_or_else(|| "~/.cache/huggingface/hub".into(), |c| c.display().to_string());
    Error::Hub {
        what: format!("model {repo}"),
        message: format!(
            "{reason}: fetch {} (plus {PRESET_INDEX} and speaker_embeddings/ for voice presets) from {}/{repo}, \
             e.g. with `huggingface-cli download {repo}` (which fills {cache}), or put them in a directory and \
             pass --model DIR",
            and_list(&missing),
            opts.endpoint
        ),
    }
}

/// The error for preset files that could not be fetched into the snapshot `dir`.
fn files_error(what: &str, repo: &str, reason: &str, missing: &[String], dir: &Path, opts: &ResolveOptions) -> Error {
    Error::Hub {
        what: what.into(),
        message: format!("{reason}: fetch {} from {}/{repo} into {}", and_list(missing), opts.endpoint, dir.display()),
    }
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
