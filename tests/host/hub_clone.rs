//! Resolving `--hubert` and `--quantizer` (voice cloning): local paths, downloads from a fake hub
//! on 127.0.0.1 into the cache, the cache offline, and errors naming the files to fetch.

use std::path::{Path, PathBuf};

use crate::fake_hub::{FakeHub, FakeRepo};
use bark_wgpu::hub::{resolve_hubert, resolve_quantizer, ResolveOptions, DEFAULT_QUANTIZER_FILE};

const HUBERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hubert-tiny");
const CLONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clone");
const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bark-wgpu-hub-clone-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options(cache: &Path, endpoint: &str, offline: bool) -> ResolveOptions {
    ResolveOptions {
        cache: Some(cache.into()),
        endpoint: endpoint.into(),
        token: None,
        offline,
        progress: false,
        revision: "main".into(),
    }
}

#[test]
fn local_paths_are_used_as_they_are_and_checked() {
    let opts = options(Path::new("/nonexistent"), "http://127.0.0.1:1", false);
    assert_eq!(resolve_hubert(HUBERT, &opts).unwrap(), PathBuf::from(HUBERT));
    let q = format!("{CLONE}/quantizer.pth");
    assert_eq!(resolve_quantizer(&q, &opts).unwrap(), PathBuf::from(&q));
    let err = resolve_hubert(CLONE, &opts).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("model.safetensors (or pytorch_model.bin)"), "{err}");
    let err = resolve_quantizer("/no/such/quantizer.pth", &opts).unwrap_err().to_string();
    assert!(err.contains("/no/such/quantizer.pth"), "{err}");
}

#[test]
fn repos_download_into_the_cache_once_and_then_resolve_offline() {
    let cache = scratch("download");
    let hubert = FakeRepo::from_dir(COMMIT, Path::new(HUBERT), &["config.json", "pytorch_model.bin"]);
    let mut quantizers = FakeRepo::from_dir(COMMIT, Path::new(CLONE), &["quantizer.pth"]);
    let bytes = quantizers.files.remove("quantizer.pth").unwrap();
    quantizers.files.insert(DEFAULT_QUANTIZER_FILE.into(), bytes.clone());
    quantizers.files.insert("other.pth".into(), bytes.clone());
    let hub = FakeHub::start(vec![("facebook/hubert-base-ls960", hubert), ("GitMylo/bark-voice-cloning", quantizers)]);
    let online = options(&cache, &hub.endpoint, false);
    // No model.safetensors in the repo: the pickle is taken instead.
    let dir = resolve_hubert("facebook/hubert-base-ls960", &online).unwrap();
    assert!(dir.ends_with(COMMIT) && dir.join("pytorch_model.bin").is_file(), "{}", dir.display());
    let q = resolve_quantizer("GitMylo/bark-voice-cloning", &online).unwrap();
    assert_eq!(std::fs::read(&q).unwrap(), bytes);
    assert!(q.ends_with(DEFAULT_QUANTIZER_FILE));
    let other = resolve_quantizer("GitMylo/bark-voice-cloning:other.pth", &online).unwrap();
    assert!(other.ends_with("other.pth") && other.is_file());
    let requests = hub.requests().len();
    // Cached: no request, online or offline.
    assert_eq!(resolve_hubert("facebook/hubert-base-ls960", &online).unwrap(), dir);
    let offline = options(&cache, "http://127.0.0.1:1", true);
    assert_eq!(resolve_quantizer("GitMylo/bark-voice-cloning", &offline).unwrap(), q);
    assert_eq!(hub.requests().len(), requests);
    // Offline without the file: the error names the repo, the file and the cache.
    let err = resolve_quantizer("GitMylo/bark-voice-cloning:absent.pth", &offline).unwrap_err().to_string();
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("absent.pth") && err.contains("GitMylo"), "{err}");
    // Online, a file the repo lacks: said so.
    let err = resolve_quantizer("GitMylo/bark-voice-cloning:absent.pth", &online).unwrap_err().to_string();
    assert!(err.contains("absent.pth"), "{err}");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_quantizer_of_another_size_than_listed_or_of_an_absurd_one_is_refused() {
    let bytes = std::fs::read(Path::new(CLONE).join("quantizer.pth")).unwrap();
    let cases = [
        (
            bytes.len() as u64 + 1,
            format!("said {DEFAULT_QUANTIZER_FILE} has {} bytes but sent {}", bytes.len() + 1, bytes.len()),
        ),
        (1 << 40, format!("lists {DEFAULT_QUANTIZER_FILE} at {} bytes, over the 16 GiB limit", 1u64 << 40)),
    ];
    for (i, (claimed, needle)) in cases.into_iter().enumerate() {
        let mut repo = FakeRepo::from_dir(COMMIT, Path::new(CLONE), &[]);
        repo.files.insert(DEFAULT_QUANTIZER_FILE.into(), bytes.clone());
        repo.claimed_sizes.insert(DEFAULT_QUANTIZER_FILE.into(), claimed);
        let hub = FakeHub::start(vec![("GitMylo/bark-voice-cloning", repo)]);
        let cache = scratch(&format!("quantizer-size-{i}"));
        let err = resolve_quantizer("GitMylo/bark-voice-cloning", &options(&cache, &hub.endpoint, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&needle), "{err}");
        let snapshot = cache.join("models--GitMylo--bark-voice-cloning/snapshots").join(COMMIT);
        assert!(!snapshot.join(DEFAULT_QUANTIZER_FILE).exists(), "the refused file stayed in the snapshot");
        std::fs::remove_dir_all(&cache).ok();
    }
}
