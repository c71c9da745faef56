//! Downloads into the Hugging Face cache with hf-hub's blocking client. hf-hub writes each file to
//! `blobs/<etag>.part`, renames it to `blobs/<etag>` once complete, and only then links
//! `snapshots/<commit>/<file>` to it, so a snapshot never shows a half-downloaded file. A hub repo
//! is untrusted: each file's size is asked for first and refused over what any real Bark file
//! could be ([`size_limit`]), and a file whose bytes differ in length from that size is removed
//! again (hf-hub checks neither).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use super::{
    check_dir, checkpoint_complete, fetch_error, missing_files, repo_dir, ResolveOptions, SLOW_TOKENIZER_EXTRAS,
    TOKENIZER_FILES, WEIGHT_FILES,
};
use crate::voice::PRESET_INDEX;
use crate::{Error, Result};

/// Why one file did not come.
enum Failure {
    /// The hub answered that the repo has no such file at that revision.
    NotFound,
    /// Anything else, in words: the network, access, the repo itself.
    Other(String),
}

/// Retries of an interrupted file: hf-hub resumes from the `.part` file with a range request.
const RETRIES: usize = 3;

const MIB: u64 = 1 << 20;

/// The most bytes `file` may have: far above any real one, so that a repo listing an absurd size
/// is refused before the download starts rather than filling the disk. Real sizes: Bark's
/// config.json about 9 KB, tokenizer.json 2.9 MB and vocab.txt 1 MB (bert-base-multilingual-cased),
/// speaker_embeddings_path.json under 100 KB, a preset .npy under 60 KB, bark large's
/// pytorch_model.bin 4.5 GB (f32), HuBERT base 380 MB.
fn size_limit(file: &str) -> u64 {
    let name = file.rsplit('/').next().unwrap_or(file);
    match name {
        "config.json" | "tokenizer_config.json" | "special_tokens_map.json" | "generation_config.json" => MIB,
        "tokenizer.json" | "vocab.txt" => 64 * MIB,
        // Checkpoint indexes, the preset index, voice presets.
        _ if name.ends_with(".json") || name.ends_with(".npy") => 16 * MIB,
        // Checkpoints and shards: 3.5 times bark large in f32.
        _ => 16 << 30,
    }
}

/// `bytes` as the limits are written: whole MiB or GiB.
fn in_units(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// The size the hub gives for `url`: the total of the `Content-Range` answering a one-byte range
/// request (what hf-hub's own metadata request reads), else the `Content-Length` of a whole answer.
/// Redirects (to a CDN for large files) are followed, as hf-hub follows them.
fn listed_size(url: &str, token: Option<&str>) -> Result<Option<u64>, ApiError> {
    let agent = ureq::builder().try_proxy_from_env(true).build();
    let mut request = agent.get(url).set("Range", "bytes=0-0");
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = request.call().map_err(Box::new)?;
    let total = response.header("content-range").and_then(|r| r.rsplit('/').next()).and_then(|t| t.parse().ok());
    let whole = (response.status() == 200).then(|| response.header("content-length")).flatten();
    Ok(total.or_else(|| whole.and_then(|l| l.parse().ok())))
}

/// Downloads `file` of `repo` at `revision` with `api` into the cache and returns its snapshot
/// path, refusing a file listed over [`size_limit`] before its download and removing one whose
/// bytes differ in length from the listed size (snapshot link and blob both).
fn download(api: &Api, opts: &ResolveOptions, repo: &str, revision: &str, file: &str) -> Result<PathBuf, Failure> {
    let url = format!("{}/{repo}/resolve/{}/{file}", opts.endpoint, revision.replace('/', "%2F"));
    let listed = listed_size(&url, opts.token.as_deref()).map_err(|e| describe(e, &opts.endpoint, file))?;
    let limit = size_limit(file);
    if let Some(size) = listed.filter(|&s| s > limit) {
        return Err(Failure::Other(format!(
            "the hub lists {file} at {size} bytes, over the {} limit for it (no real Bark {file} comes near), \
             so it was not downloaded",
            in_units(limit)
        )));
    }
    let repo_at = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
    let path = api.repo(repo_at).download(file).map_err(|e| describe(e, &opts.endpoint, file))?;
    let got = std::fs::metadata(&path).map(|m| m.len()).ok();
    match listed {
        Some(size) if got != Some(size) => {
            let blob = std::fs::canonicalize(&path).ok();
            std::fs::remove_file(&path).ok();
            if let Some(blob) = blob.filter(|b| *b != path) {
                std::fs::remove_file(blob).ok();
            }
            let got = got.map_or_else(|| "an unreadable file".into(), |g| format!("{g} bytes"));
            Err(Failure::Other(format!(
                "the hub said {file} has {size} bytes but sent {got}, so it was removed from the cache again"
            )))
        }
        _ => Ok(path),
    }
}

fn api_for(cache: &Path, opts: &ResolveOptions) -> Result<Api, String> {
    ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
        .with_endpoint(opts.endpoint.clone())
        .with_token(opts.token.clone())
        .with_progress(opts.progress)
        .with_retries(RETRIES)
        .build()
        .map_err(|e| format!("cannot set up the download client: {e}"))
}

fn describe(e: ApiError, endpoint: &str, file: &str) -> Failure {
    let ApiError::RequestError(e) = e else { return Failure::Other(format!("downloading {file} failed: {e}")) };
    match *e {
        ureq::Error::Status(404, r) => match r.header("x-error-code") {
            Some("RepoNotFound") => Failure::Other("the hub has no such repo".into()),
            Some("RevisionNotFound") => Failure::Other("the repo has no such revision".into()),
            _ => Failure::NotFound,
        },
        // The hub answers 401 for a repo that does not exist as well as for a private one.
        ureq::Error::Status(401 | 403, _) => Failure::Other(
            "the hub refused access: the repo does not exist, or it is private or gated and needs a token \
             (set HF_TOKEN or run `huggingface-cli login`)"
                .into(),
        ),
        ureq::Error::Status(code, _) => Failure::Other(format!("the hub answered HTTP {code} for {file}")),
        ureq::Error::Transport(t) => Failure::Other(format!("cannot download from {endpoint} ({t})")),
    }
}

/// One repo pinned to one commit, so that every file lands in the same snapshot even if the
/// branch moves during the download.
struct Pinned<'a> {
    api: Api,
    repo: &'a str,
    snapshot: PathBuf,
    opts: &'a ResolveOptions,
}

impl Pinned<'_> {
    /// Downloads `file` into the snapshot unless it is there already.
    fn fetch(&self, file: &str) -> Result<(), Failure> {
        if self.snapshot.join(file).is_file() {
            return Ok(());
        }
        let commit = self.snapshot.file_name().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        // hf-hub records every revision it is asked for under refs/; a commit needs no ref, and
        // Python's huggingface_hub writes none for it, so one that was not there is removed again.
        let ref_file = self.snapshot.parent().and_then(Path::parent).map(|base| base.join("refs").join(&commit));
        let had_ref = ref_file.as_ref().is_some_and(|r| r.exists());
        let result = download(&self.api, self.opts, self.repo, &commit, file);
        if let Some(r) = ref_file.filter(|_| !had_ref) {
            std::fs::remove_file(r).ok();
        }
        match result {
            Ok(path) if path == self.snapshot.join(file) => Ok(()),
            Ok(path) => {
                Err(Failure::Other(format!("the hub put {file} at {} instead of the snapshot", path.display())))
            }
            Err(failure) => Err(failure),
        }
    }
}

/// A download of `repo` into `cache` under way: what its errors need to say.
struct Job<'a> {
    repo: &'a str,
    cache: &'a Path,
    opts: &'a ResolveOptions,
}

impl Job<'_> {
    /// The error for `reason`, listing what `snapshot` (or, without one, a model) still lacks.
    fn fail(&self, reason: &str, snapshot: Option<&Path>) -> Error {
        let missing = snapshot.map_or_else(super::all_model_files, missing_files);
        fetch_error(self.repo, reason, &missing, Some(self.cache), self.opts)
    }

    /// Downloads config.json at `revision`: the answer names the commit (and so the snapshot)
    /// every other file is pinned to.
    fn open(&self, revision: &str) -> Result<Pinned<'_>> {
        let (repo, opts) = (self.repo, self.opts);
        let api = api_for(self.cache, opts).map_err(|reason| self.fail(&reason, None))?;
        let config = download(&api, opts, repo, revision, "config.json").map_err(|f| match f {
            Failure::NotFound => {
                self.fail(&format!("the hub has no config.json in {repo} at revision {revision}"), None)
            }
            Failure::Other(reason) => self.fail(&reason, None),
        })?;
        let snapshot =
            config.parent().map(Path::to_path_buf).ok_or_else(|| self.fail("unexpected cache layout", None))?;
        Ok(Pinned { api, repo, snapshot, opts })
    }

    /// Fetches the preset index if the repo has one (a repo without presets is still a model).
    fn fetch_index(&self, pinned: &Pinned) -> Result<()> {
        match pinned.fetch(PRESET_INDEX) {
            Ok(()) | Err(Failure::NotFound) => Ok(()),
            Err(Failure::Other(reason)) => Err(self.fail(&reason, Some(&pinned.snapshot))),
        }
    }
}

/// Downloads what `repo` at `revision` lacks in `cache` and returns its snapshot directory.
pub(super) fn fetch_model(repo: &str, revision: &str, cache: &Path, opts: &ResolveOptions) -> Result<PathBuf> {
    let job = Job { repo, cache, opts };
    if opts.progress {
        eprintln!("downloading {repo} into {}", repo_dir(cache, repo).display());
    }
    let pinned = job.open(revision)?;
    let snapshot = pinned.snapshot.as_path();
    let need = |absent: &str, result: Result<(), Failure>| {
        result.map_err(|f| match f {
            Failure::NotFound => job.fail(absent, Some(snapshot)),
            Failure::Other(reason) => job.fail(&reason, Some(snapshot)),
        })
    };
    if !TOKENIZER_FILES.iter().any(|f| snapshot.join(f).is_file()) {
        // A fast tokenizer when the repo has one; else a slow BERT one and its optional settings.
        let tokenizer = match pinned.fetch(TOKENIZER_FILES[0]) {
            Err(Failure::NotFound) => pinned.fetch(TOKENIZER_FILES[1]).and_then(|()| {
                SLOW_TOKENIZER_EXTRAS.iter().try_for_each(|f| match pinned.fetch(f) {
                    Err(Failure::NotFound) => Ok(()),
                    other => other,
                })
            }),
            other => other,
        };
        need("the repo has neither tokenizer.json nor vocab.txt", tokenizer)?;
    }
    if !WEIGHT_FILES.iter().any(|f| checkpoint_complete(snapshot, f)) {
        need(
            "the repo has neither model.safetensors nor pytorch_model.bin (nor a sharded checkpoint's index)",
            fetch_checkpoint(&pinned),
        )?;
    }
    job.fetch_index(&pinned)?;
    check_dir(snapshot)
}

/// Fetches the first checkpoint of [`WEIGHT_FILES`] the repo has (a 404 means: try the next),
/// and for an index every shard it names.
fn fetch_checkpoint(pinned: &Pinned) -> Result<(), Failure> {
    for file in WEIGHT_FILES {
        match pinned.fetch(file) {
            Err(Failure::NotFound) => continue,
            Err(other) => return Err(other),
            Ok(()) if !file.ends_with(".index.json") => return Ok(()),
            Ok(()) => {
                let index = pinned.snapshot.join(file);
                let shards = crate::weights::shard_files(&index).map_err(|e| Failure::Other(e.to_string()))?;
                for shard in shards {
                    pinned.fetch(&shard).map_err(|f| match f {
                        Failure::NotFound => Failure::Other(format!("the repo lacks shard {shard} named by {file}")),
                        other => other,
                    })?;
                }
                return Ok(());
            }
        }
    }
    Err(Failure::NotFound)
}

/// Downloads only config.json and the preset index of `repo` at `revision` (enough to list its
/// voices) and returns the snapshot directory.
pub(super) fn fetch_index(repo: &str, revision: &str, cache: &Path, opts: &ResolveOptions) -> Result<PathBuf> {
    let job = Job { repo, cache, opts };
    let pinned = job.open(revision)?;
    job.fetch_index(&pinned)?;
    Ok(pinned.snapshot)
}

/// Downloads `files` of `repo` into its snapshot `snapshot`, pinned to that snapshot's commit.
/// The error is the reason in words.
pub(super) fn fetch_files(repo: &str, snapshot: &Path, files: &[String], opts: &ResolveOptions) -> Result<(), String> {
    let cache = snapshot.ancestors().nth(3).ok_or("the model directory is not in a hub cache")?;
    let pinned = Pinned { api: api_for(cache, opts)?, repo, snapshot: snapshot.to_path_buf(), opts };
    for file in files {
        pinned.fetch(file).map_err(|f| match f {
            Failure::NotFound => format!("the repo has no {file}"),
            Failure::Other(reason) => reason,
        })?;
    }
    Ok(())
}

/// Downloads, for each entry of `need`, the first of its alternatives the repo has, all pinned to
/// the commit the first download names; returns the snapshot directory. The error is a reason.
pub(super) fn fetch_needed(
    repo: &str,
    revision: &str,
    cache: &Path,
    need: &[&[&str]],
    opts: &ResolveOptions,
) -> Result<PathBuf, String> {
    if opts.progress {
        eprintln!("downloading {repo} into {}", repo_dir(cache, repo).display());
    }
    let api = api_for(cache, opts)?;
    let mut pinned: Option<Pinned> = None;
    for alternatives in need {
        let mut found = false;
        for file in alternatives.iter() {
            let result = match &pinned {
                Some(p) => p.fetch(file),
                None => match download(&api, opts, repo, revision, file) {
                    Ok(path) => {
                        // `file` may lie in folders: the snapshot is that many levels up.
                        let depth = Path::new(file).components().count();
                        let snapshot = path.ancestors().nth(depth).ok_or("unexpected cache layout")?.to_path_buf();
                        pinned = Some(Pinned { api: api.clone(), repo, snapshot, opts });
                        Ok(())
                    }
                    Err(failure) => Err(failure),
                },
            };
            match result {
                Ok(()) => {
                    found = true;
                    break;
                }
                Err(Failure::NotFound) => continue,
                Err(Failure::Other(reason)) => return Err(reason),
            }
        }
        if !found {
            return Err(format!("the repo has no {} at revision {revision}", alternatives.join(" or ")));
        }
    }
    pinned.map(|p| p.snapshot).ok_or_else(|| "nothing to download".into())
}
