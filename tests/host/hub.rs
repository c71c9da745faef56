//! Resolving `--model`: directories, the Hugging Face cache, downloads from a hub (a fake one on
//! 127.0.0.1: tests have no internet), and the errors when none of them has the model.

use crate::fake_hub;

use std::path::{Path, PathBuf};
use std::process::Command;

use bark_wgpu::hub::{fetch_voice_preset, missing_files, resolve_model_with, resolve_voices_dir, ResolveOptions};
use fake_hub::{FakeHub, FakeRepo};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
const PRESETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/voices/presets");
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const PRESET: &str = "v2/en_speaker_6";
const PRESET_FILES: [&str; 3] = [
    "speaker_embeddings/v2/en_speaker_6_semantic_prompt.npy",
    "speaker_embeddings/v2/en_speaker_6_coarse_prompt.npy",
    "speaker_embeddings/v2/en_speaker_6_fine_prompt.npy",
];

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bark-wgpu-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fill(dir: &Path) {
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
}

/// Options that name everything explicitly: tests run in parallel threads and must not share
/// (or read) process-wide environment variables.
fn options(cache: &Path, endpoint: &str) -> ResolveOptions {
    ResolveOptions {
        cache: Some(cache.into()),
        endpoint: endpoint.into(),
        token: None,
        offline: false,
        progress: false,
        revision: "main".into(),
    }
}

/// The tiny fixture model as a hub repo, with `weights` as its weight file and the fixture presets.
fn tiny_repo(weights: &str) -> FakeRepo {
    let mut repo = FakeRepo::from_dir(COMMIT, Path::new(TINY), &["config.json", "tokenizer.json", weights]);
    let presets = FakeRepo::from_dir(COMMIT, Path::new(PRESETS), &["speaker_embeddings_path.json"]);
    repo.files.extend(presets.files);
    for dir in ["speaker_embeddings", "speaker_embeddings/v2"] {
        for entry in std::fs::read_dir(Path::new(PRESETS).join(dir)).unwrap().flatten() {
            if entry.path().is_file() {
                let name = format!("{dir}/{}", entry.file_name().to_string_lossy());
                repo.files.insert(name, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    repo
}

fn snapshot_of(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--"))).join("snapshots").join(COMMIT)
}

/// Files under `dir` whose name ends with `suffix`, at any depth.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            found.extend(files_ending(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            found.push(p);
        }
    }
    found
}

#[test]
fn directory_needs_config_tokenizer_and_weights() {
    let d = scratch("dir");
    let opts = options(&d, "http://127.0.0.1:1");
    let err = resolve_model_with(d.to_str().unwrap(), &opts).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("tokenizer.json") && err.contains("model.safetensors"),
        "{err}"
    );
    fill(&d);
    assert_eq!(resolve_model_with(d.to_str().unwrap(), &opts).unwrap(), d);
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("pytorch_model.bin"), "x").unwrap();
    assert!(missing_files(&d).is_empty());
    // A slow tokenizer's vocab.txt stands for tokenizer.json.
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    assert_eq!(missing_files(&d), ["tokenizer.json (or vocab.txt)"]);
    std::fs::write(d.join("vocab.txt"), "x").unwrap();
    assert!(missing_files(&d).is_empty());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_complete_cached_snapshot_is_used_without_the_network() {
    let cache = scratch("cached");
    // A port nothing listens on: any request would fail the resolve.
    let opts = options(&cache, "http://127.0.0.1:1");
    let base = cache.join("models--suno--bark-small");
    let snap = base.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(base.join("refs")).unwrap();
    std::fs::write(base.join("refs/main"), "abc123\n").unwrap();
    fill(&snap);
    assert_eq!(resolve_model_with("suno/bark-small", &opts).unwrap(), snap);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_missing_path_is_not_mistaken_for_a_repo() {
    let opts = options(Path::new("/nonexistent"), "http://127.0.0.1:1");
    for spec in ["./no/such/dir", "/no/such", "no-slash", "a/b/c", "../x"] {
        let err = resolve_model_with(spec, &opts).unwrap_err().to_string();
        assert!(err.contains("no such model directory"), "{spec}: {err}");
    }
}

#[test]
fn first_use_downloads_into_the_hub_layout_and_later_uses_need_no_request() {
    let hub = FakeHub::start(vec![("test/tiny", tiny_repo("model.safetensors"))]);
    let cache = scratch("download");
    let opts = options(&cache, &hub.endpoint);
    let dir = resolve_model_with("test/tiny", &opts).unwrap();
    let snap = snapshot_of(&cache, "test/tiny");
    assert_eq!(dir, snap);
    for f in ["config.json", "tokenizer.json", "model.safetensors", "speaker_embeddings_path.json"] {
        let want = if f.starts_with("speaker") { Path::new(PRESETS) } else { Path::new(TINY) }.join(f);
        assert_eq!(std::fs::read(snap.join(f)).unwrap(), std::fs::read(want).unwrap(), "{f}");
        // The snapshot links into blobs/, as huggingface_hub lays the cache out.
        assert!(std::fs::symlink_metadata(snap.join(f)).unwrap().file_type().is_symlink(), "{f}");
    }
    assert!(!snap.join("pytorch_model.bin").exists(), "one weight file is enough");
    assert!(!snap.join("speaker_embeddings").exists(), "presets come on demand");
    let base = cache.join("models--test--tiny");
    assert_eq!(std::fs::read_to_string(base.join("refs/main")).unwrap().trim(), COMMIT);
    assert_eq!(std::fs::read_dir(base.join("refs")).unwrap().count(), 1, "only refs/main");
    assert!(files_ending(&base, ".part").is_empty(), "a partial download was left");

    let before = hub.requests().len();
    assert!(before > 0);
    assert_eq!(resolve_model_with("test/tiny", &opts).unwrap(), snap);
    let offline = ResolveOptions { offline: true, ..opts.clone() };
    assert_eq!(resolve_model_with("test/tiny", &offline).unwrap(), snap);
    assert_eq!(hub.requests().len(), before, "a cached model made requests");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn without_safetensors_the_pickle_is_downloaded() {
    let hub = FakeHub::start(vec![("test/tiny-bin", tiny_repo("pytorch_model.bin"))]);
    let cache = scratch("pickle");
    let dir = resolve_model_with("test/tiny-bin", &options(&cache, &hub.endpoint)).unwrap();
    assert!(!dir.join("model.safetensors").exists());
    let got = std::fs::read(dir.join("pytorch_model.bin")).unwrap();
    assert_eq!(got, std::fs::read(Path::new(TINY).join("pytorch_model.bin")).unwrap());
    let asked: Vec<String> = hub.requests().into_iter().filter(|p| p.ends_with("/model.safetensors")).collect();
    assert_eq!(asked.len(), 1, "safetensors are asked for once, first: {asked:?}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_repo_the_hub_lacks_is_one_clear_error_and_leaves_no_snapshot() {
    let hub = FakeHub::start(vec![]);
    let cache = scratch("norepo");
    let err = resolve_model_with("nobody/nothing", &options(&cache, &hub.endpoint)).unwrap_err().to_string();
    for needle in ["nobody/nothing", "config.json", "tokenizer.json", "model.safetensors", "--model DIR"] {
        assert!(err.contains(needle), "error lacks {needle:?}: {err}");
    }
    assert!(err.contains(&cache.display().to_string()), "error does not say where files go: {err}");
    assert!(!cache.join("models--nobody--nothing/snapshots").exists());
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_repo_without_weights_is_never_taken_for_a_model() {
    let mut repo = tiny_repo("model.safetensors");
    repo.files.remove("model.safetensors");
    let hub = FakeHub::start(vec![("test/noweights", repo)]);
    let cache = scratch("noweights");
    let opts = options(&cache, &hub.endpoint);
    let err = resolve_model_with("test/noweights", &opts).unwrap_err().to_string();
    assert!(err.contains("neither model.safetensors nor pytorch_model.bin"), "{err}");
    // The error lists only what is still missing.
    assert!(err.contains("fetch model.safetensors (or pytorch_model.bin, or a sharded"), "{err}");
    let offline = ResolveOptions { offline: true, ..opts };
    assert!(resolve_model_with("test/noweights", &offline).is_err(), "an incomplete snapshot was used");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn offline_makes_no_request_and_says_what_to_fetch() {
    let hub = FakeHub::start(vec![("test/tiny", tiny_repo("model.safetensors"))]);
    let cache = scratch("offline");
    let opts = ResolveOptions { offline: true, ..options(&cache, &hub.endpoint) };
    let err = resolve_model_with("test/tiny", &opts).unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("test/tiny") && err.contains("config.json"), "{err}");
    assert!(hub.requests().is_empty(), "offline made requests: {:?}", hub.requests());
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn an_unreachable_hub_says_what_to_fetch() {
    let cache = scratch("unreachable");
    let err = resolve_model_with("test/tiny", &options(&cache, "http://127.0.0.1:1")).unwrap_err().to_string();
    assert!(err.contains("cannot download from http://127.0.0.1:1"), "{err}");
    assert!(err.contains("test/tiny") && err.contains("tokenizer.json"), "{err}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_cut_download_leaves_nothing_the_loader_sees_and_resumes_later() {
    let hub = FakeHub::start(vec![("test/tiny", tiny_repo("model.safetensors"))]);
    let cache = scratch("cut");
    let opts = options(&cache, &hub.endpoint);
    hub.cut_bodies(true);
    assert!(resolve_model_with("test/tiny", &opts).is_err());
    let snap = snapshot_of(&cache, "test/tiny");
    assert!(!snap.join("config.json").exists(), "a half file reached the snapshot");
    hub.cut_bodies(false);
    let dir = resolve_model_with("test/tiny", &opts).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(Path::new(TINY).join(f)).unwrap(), "{f}");
    }
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn voice_presets_are_downloaded_one_at_a_time_on_demand() {
    let hub = FakeHub::start(vec![("test/tiny", tiny_repo("model.safetensors"))]);
    let cache = scratch("presets");
    let opts = options(&cache, &hub.endpoint);
    let dir = resolve_model_with("test/tiny", &opts).unwrap();
    assert!(bark_wgpu::voice::list_voices(&dir).unwrap().contains(&PRESET.to_string()));

    let offline = ResolveOptions { offline: true, ..opts.clone() };
    let err = fetch_voice_preset("test/tiny", &dir, PRESET, &offline).unwrap_err().to_string();
    assert!(err.contains(PRESET_FILES[0]) && err.contains(&dir.display().to_string()), "{err}");

    fetch_voice_preset("test/tiny", &dir, PRESET, &opts).unwrap();
    for f in PRESET_FILES {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(Path::new(PRESETS).join(f)).unwrap(), "{f}");
    }
    assert!(!dir.join("speaker_embeddings/announcer_fine_prompt.npy").exists(), "other presets were fetched");
    let want = bark_wgpu::voice::resolve_voice(PRESETS, PRESET).unwrap();
    assert_eq!(bark_wgpu::voice::resolve_voice(&dir, PRESET).unwrap().semantic, want.semantic);
    assert_eq!(std::fs::read_dir(cache.join("models--test--tiny/refs")).unwrap().count(), 1, "only refs/main");

    let before = hub.requests().len();
    fetch_voice_preset("test/tiny", &dir, PRESET, &opts).unwrap();
    // Not a preset: left for resolve_voice to explain, no request.
    fetch_voice_preset("test/tiny", &dir, "v2/en_speakr_6", &opts).unwrap();
    assert_eq!(hub.requests().len(), before);
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn listing_voices_fetches_the_preset_index_but_not_the_weights() {
    let mut bare = tiny_repo("model.safetensors");
    bare.files.retain(|f, _| !f.starts_with("speaker_embeddings"));
    let hub = FakeHub::start(vec![("test/tiny", tiny_repo("model.safetensors")), ("test/bare", bare)]);
    let cache = scratch("voices");
    let opts = options(&cache, &hub.endpoint);
    let dir = resolve_voices_dir("test/tiny", &opts).unwrap();
    assert_eq!(dir, snapshot_of(&cache, "test/tiny"));
    assert!(bark_wgpu::voice::list_voices(&dir).unwrap().contains(&PRESET.to_string()));
    assert!(!hub.requests().iter().any(|p| p.contains("model.safetensors")), "{:?}", hub.requests());
    // The model itself comes later into the same snapshot.
    assert_eq!(resolve_model_with("test/tiny", &opts).unwrap(), dir);
    let bare_dir = resolve_voices_dir("test/bare", &opts).unwrap();
    assert!(bark_wgpu::voice::list_voices(&bare_dir).unwrap().is_empty());
    std::fs::remove_dir_all(&cache).ok();
}

fn fixture_text() -> String {
    let json = std::fs::read_to_string(Path::new(TINY).join("generation.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["text"].as_str().unwrap().to_string()
}

/// The binary with the hub variables set as a user would, and no others leaking in.
fn bin(cache: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bark-wgpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir()).env("HF_HUB_CACHE", cache).env("HF_ENDPOINT", endpoint);
    for var in ["HF_HUB_OFFLINE", "HF_TOKEN", "HF_HOME", "HUGGINGFACE_HUB_CACHE"] {
        c.env_remove(var);
    }
    c
}

#[test]
fn cli_say_downloads_the_model_and_voice_then_runs_offline() {
    let hub = FakeHub::start(vec![("test/tiny", tiny_repo("model.safetensors"))]);
    let cache = scratch("cli");
    let out = cache.join("out.wav");
    let o = bin(&cache, &hub.endpoint)
        .args(["say", "--model", "test/tiny", "--text", &fixture_text(), "--voice", PRESET, "--greedy"])
        .args(["--max-semantic-tokens", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());
    assert!(snapshot_of(&cache, "test/tiny").join(PRESET_FILES[2]).is_file());

    // Offline, the cached copy serves (one more `say` would cost a GPU run and check nothing new:
    // both commands resolve through the same options).
    let before = hub.requests().len();
    let o = bin(&cache, &hub.endpoint)
        .env("HF_HUB_OFFLINE", "1")
        .args(["voices", "--model", "test/tiny"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).lines().any(|l| l == PRESET));
    assert_eq!(hub.requests().len(), before, "a cached model made requests");

    // Offline with an empty cache: one error naming the repo, the files and the cache.
    let empty = cache.join("empty");
    let o = bin(&empty, &hub.endpoint)
        .env("HF_HUB_OFFLINE", "1")
        .args(["say", "--model", "test/other", "--text", "hi", "--out"])
        .arg(cache.join("x.wav"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("test/other") && err.contains("config.json") && err.contains(&empty.display().to_string()),
        "{err}"
    );
    assert_eq!(hub.requests().len(), before, "offline made requests");
    std::fs::remove_dir_all(&cache).ok();
}

/// A repo of the tiny config and tokenizer with a sharded checkpoint `{stem}.index.json` over two
/// shards (their bytes do not matter to resolving), and the index text.
fn sharded_repo(stem: &str, ext: &str) -> (FakeRepo, String) {
    let mut repo = FakeRepo::from_dir(COMMIT, Path::new(TINY), &["config.json", "tokenizer.json"]);
    let shards = [format!("{stem}-00001-of-00002.{ext}"), format!("{stem}-00002-of-00002.{ext}")];
    let index = format!(
        r#"{{"metadata":{{"total_size":8}},"weight_map":{{"a.weight":"{}","b.weight":"{}","c.weight":"{}"}}}}"#,
        shards[0], shards[1], shards[1]
    );
    repo.files.insert(format!("{stem}.{ext}.index.json"), index.clone().into_bytes());
    for (i, s) in shards.iter().enumerate() {
        repo.files.insert(s.clone(), format!("shard {i}").into_bytes());
    }
    (repo, index)
}

#[test]
fn a_sharded_checkpoint_is_downloaded_index_then_shards_and_later_served_offline() {
    for (stem, ext) in [("model", "safetensors"), ("pytorch_model", "bin")] {
        let (repo, index) = sharded_repo(stem, ext);
        let hub = FakeHub::start(vec![("test/sharded", repo)]);
        let cache = scratch(&format!("sharded-{ext}"));
        let opts = options(&cache, &hub.endpoint);
        let dir = resolve_model_with("test/sharded", &opts).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(format!("{stem}.{ext}.index.json"))).unwrap(), index);
        for (i, n) in ["00001", "00002"].iter().enumerate() {
            let shard = dir.join(format!("{stem}-{n}-of-00002.{ext}"));
            assert_eq!(std::fs::read_to_string(&shard).unwrap(), format!("shard {i}"), "{}", shard.display());
        }
        let asked = hub.requests();
        let pos = |needle: &str| asked.iter().position(|p| p.contains(needle)).unwrap_or(usize::MAX);
        assert!(pos(".index.json") < pos("-00001-of-00002.") && pos("-00002-of-00002.") < usize::MAX, "{asked:?}");
        // The second shard is fetched like the first (hf-hub asks twice per file), though the
        // index names it twice.
        let count = |n: &str| asked.iter().filter(|p| p.ends_with(&format!("-{n}-of-00002.{ext}"))).count();
        assert_eq!(count("00002"), count("00001"), "{asked:?}");

        let before = hub.requests().len();
        assert_eq!(resolve_model_with("test/sharded", &opts).unwrap(), dir);
        let offline = ResolveOptions { offline: true, ..opts.clone() };
        assert_eq!(resolve_model_with("test/sharded", &offline).unwrap(), dir);
        assert_eq!(hub.requests().len(), before, "a cached sharded model made requests");
        std::fs::remove_dir_all(&cache).ok();
    }
}

#[test]
fn an_index_without_all_its_shards_is_not_a_model() {
    let d = scratch("shards-missing");
    std::fs::write(d.join("config.json"), "x").unwrap();
    std::fs::write(d.join("tokenizer.json"), "x").unwrap();
    let (repo, _) = sharded_repo("model", "safetensors");
    std::fs::write(d.join("model.safetensors.index.json"), &repo.files["model.safetensors.index.json"]).unwrap();
    std::fs::write(d.join("model-00001-of-00002.safetensors"), "x").unwrap();
    assert_eq!(missing_files(&d).len(), 1, "{:?}", missing_files(&d));
    let err = resolve_model_with(d.to_str().unwrap(), &options(&d, "http://127.0.0.1:1")).unwrap_err().to_string();
    assert!(err.contains("not a Bark model directory") && err.contains("sharded"), "{err}");
    std::fs::write(d.join("model-00002-of-00002.safetensors"), "x").unwrap();
    assert!(missing_files(&d).is_empty(), "{:?}", missing_files(&d));

    // Offline, a cached snapshot that lacks a shard is not used.
    let cache = scratch("shards-missing-cache");
    let snap = cache.join("models--test--sharded/snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(cache.join("models--test--sharded/refs")).unwrap();
    std::fs::write(cache.join("models--test--sharded/refs/main"), COMMIT).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"] {
        std::fs::copy(d.join(f), snap.join(f)).unwrap();
    }
    let offline = ResolveOptions { offline: true, ..options(&cache, "http://127.0.0.1:1") };
    let err = resolve_model_with("test/sharded", &offline).unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    std::fs::remove_dir_all(&d).ok();
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_repo_with_a_slow_tokenizer_downloads_vocab_and_its_settings() {
    const TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer");
    let mut repo = FakeRepo::from_dir(COMMIT, Path::new(TINY), &["config.json", "model.safetensors"]);
    let slow = FakeRepo::from_dir(COMMIT, Path::new(TOKENIZER), &["vocab.txt", "tokenizer_config.json"]);
    repo.files.extend(slow.files);
    let hub = FakeHub::start(vec![("test/slow", repo)]);
    let cache = scratch("slow-tokenizer");
    let dir = resolve_model_with("test/slow", &options(&cache, &hub.endpoint)).unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(Path::new(TOKENIZER).join(f)).unwrap(), "{f}");
    }
    // special_tokens_map.json is optional: asked for, absent, no error.
    assert!(hub.requests().iter().any(|p| p.ends_with("special_tokens_map.json")), "{:?}", hub.requests());
    assert!(!dir.join("tokenizer.json").exists() && !dir.join("special_tokens_map.json").exists());
    assert!(missing_files(&dir).is_empty());
    std::fs::remove_dir_all(&cache).ok();
}

/// Every file under `dir` (at any depth) whose bytes are `bytes`.
fn files_holding(dir: &Path, bytes: &[u8]) -> Vec<PathBuf> {
    files_ending(dir, "").into_iter().filter(|p| std::fs::read(p).is_ok_and(|b| b == bytes)).collect()
}

#[test]
fn a_file_longer_or_shorter_than_the_hub_said_is_refused_and_nothing_of_it_stays_cached() {
    let tokenizer = std::fs::read(Path::new(TINY).join("tokenizer.json")).unwrap();
    let config = std::fs::read(Path::new(TINY).join("config.json")).unwrap();
    let cases = [
        ("tokenizer.json", tokenizer.len() as u64 + 100, &tokenizer),
        ("tokenizer.json", tokenizer.len() as u64 - 10, &tokenizer),
        ("config.json", config.len() as u64 * 2, &config),
    ];
    for (i, (file, claimed, bytes)) in cases.into_iter().enumerate() {
        let mut repo = tiny_repo("model.safetensors");
        repo.claimed_sizes.insert(file.into(), claimed);
        let hub = FakeHub::start(vec![("test/liar", repo)]);
        let cache = scratch(&format!("liar-{i}"));
        let opts = options(&cache, &hub.endpoint);
        let err = resolve_model_with("test/liar", &opts).unwrap_err().to_string();
        let sizes = [format!("said {file} has {claimed} bytes"), format!("sent {} bytes", bytes.len())];
        assert!(sizes.iter().all(|s| err.contains(s)), "{file}, {claimed}: {err}");
        assert!(!snapshot_of(&cache, "test/liar").join(file).exists(), "{file} stayed in the snapshot");
        assert!(files_holding(&cache, bytes).is_empty(), "{file} stayed in the cache");

        // The same cache then takes the honest repo whole.
        let honest = FakeHub::start(vec![("test/liar", tiny_repo("model.safetensors"))]);
        let dir = resolve_model_with("test/liar", &options(&cache, &honest.endpoint)).unwrap();
        assert_eq!(&std::fs::read(dir.join(file)).unwrap(), bytes, "{file}");
        std::fs::remove_dir_all(&cache).ok();
    }
}

#[test]
fn a_file_listed_larger_than_any_real_bark_file_is_refused_before_its_download() {
    let cases = [
        ("config.json", 100 << 20, "1 MiB"),
        ("tokenizer.json", 2 << 30, "64 MiB"),
        ("model.safetensors", 1 << 40, "16 GiB"),
        ("speaker_embeddings_path.json", 1 << 30, "16 MiB"),
    ];
    for (i, (file, claimed, limit)) in cases.into_iter().enumerate() {
        let mut repo = tiny_repo("model.safetensors");
        repo.claimed_sizes.insert(file.into(), claimed);
        let hub = FakeHub::start(vec![("test/huge", repo)]);
        let cache = scratch(&format!("huge-{i}"));
        let err = resolve_model_with("test/huge", &options(&cache, &hub.endpoint)).unwrap_err().to_string();
        let said = format!("lists {file} at {claimed} bytes, over the {limit} limit");
        assert!(err.contains(&said) && err.contains("not downloaded"), "{file}: {err}");
        let fetched: Vec<String> = hub.downloads().into_iter().filter(|p| p.ends_with(&format!("/{file}"))).collect();
        assert!(fetched.is_empty(), "{file} was downloaded: {fetched:?}");
        std::fs::remove_dir_all(&cache).ok();
    }
}

/// An index whose one preset `bad` names `semantic` for its semantic prompt and real files else.
fn index_naming(semantic: &str) -> String {
    format!(
        r#"{{"repo_or_path":"x","bad":{{"semantic_prompt":{semantic:?},"coarse_prompt":"{}","fine_prompt":"{}"}}}}"#,
        PRESET_FILES[1], PRESET_FILES[2]
    )
}

const ESCAPES: [&str; 4] =
    ["../../etc/passwd", "/etc/passwd", "speaker_embeddings/../../../x.npy", "speaker_embeddings/v2/../../../x.npy"];

#[test]
fn preset_paths_out_of_the_model_directory_are_refused_locally_and_from_the_hub() {
    for (i, escape) in ESCAPES.into_iter().enumerate() {
        let d = scratch(&format!("escape-local-{i}"));
        std::fs::write(d.join("speaker_embeddings_path.json"), index_naming(escape)).unwrap();
        let err = bark_wgpu::voice::resolve_voice(&d, "bad").unwrap_err().to_string();
        assert!(err.contains("leaves the model directory") && err.contains(escape), "{escape}: {err}");
        std::fs::remove_dir_all(&d).ok();

        let mut repo = tiny_repo("model.safetensors");
        repo.files.insert("speaker_embeddings_path.json".into(), index_naming(escape).into_bytes());
        let hub = FakeHub::start(vec![("test/escape", repo)]);
        let cache = scratch(&format!("escape-hub-{i}"));
        let opts = options(&cache, &hub.endpoint);
        let dir = resolve_model_with("test/escape", &opts).unwrap();
        let before = hub.requests().len();
        let err = fetch_voice_preset("test/escape", &dir, "bad", &opts).unwrap_err().to_string();
        assert!(err.contains("leaves the model directory") && err.contains(escape), "{escape}: {err}");
        assert_eq!(hub.requests().len(), before, "{escape}: a request was made");
        std::fs::remove_dir_all(&cache).ok();
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_in_a_model_directory_cannot_lead_a_preset_out_of_it() {
    let outside = scratch("symlink-outside");
    for f in PRESET_FILES {
        let to = outside.join(Path::new(f).strip_prefix("speaker_embeddings").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(Path::new(PRESETS).join(f), to).unwrap();
    }
    let d = scratch("symlink-model");
    std::fs::copy(Path::new(PRESETS).join("speaker_embeddings_path.json"), d.join("speaker_embeddings_path.json"))
        .unwrap();
    std::os::unix::fs::symlink(&outside, d.join("speaker_embeddings")).unwrap();
    let err = bark_wgpu::voice::resolve_voice(&d, PRESET).unwrap_err().to_string();
    assert!(err.contains("leads out of the model directory through a symlink"), "{err}");
    // The same files in the directory itself load.
    std::fs::remove_file(d.join("speaker_embeddings")).unwrap();
    std::fs::rename(&outside, d.join("speaker_embeddings")).unwrap();
    assert!(bark_wgpu::voice::resolve_voice(&d, PRESET).is_ok());
    std::fs::remove_dir_all(&d).ok();
}
