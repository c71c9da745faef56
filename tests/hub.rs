//! Resolving `--model`: directories, the Hugging Face cache, and the errors when neither has it.

use std::path::PathBuf;

use bark_wgpu::hub::{missing_files, resolve_model};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bark-wgpu-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fill(dir: &std::path::Path) {
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
}

#[test]
fn directory_needs_config_tokenizer_and_weights() {
    let d = scratch("dir");
    let err = resolve_model(d.to_str().unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("tokenizer.json") && err.contains("model.safetensors"),
        "{err}"
    );
    fill(&d);
    assert_eq!(resolve_model(d.to_str().unwrap()).unwrap(), d);
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("pytorch_model.bin"), "x").unwrap();
    assert!(missing_files(&d).is_empty());
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn repo_ids_come_from_the_hub_cache_or_say_what_to_fetch() {
    // Both cases in one test: they set HF_HUB_CACHE, which is process-wide.
    let cache = scratch("cache");
    std::env::set_var("HF_HUB_CACHE", &cache);
    let err = resolve_model("suno/bark-small").unwrap_err().to_string();
    assert!(err.contains("suno/bark-small") && err.contains("config.json") && err.contains("--model"), "{err}");

    let base = cache.join("models--suno--bark-small");
    let snap = base.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(base.join("refs")).unwrap();
    std::fs::write(base.join("refs/main"), "abc123\n").unwrap();
    fill(&snap);
    assert_eq!(resolve_model("suno/bark-small").unwrap(), snap);
    std::env::remove_var("HF_HUB_CACHE");
    std::fs::remove_dir_all(&cache).ok();
}

#[test]
fn a_missing_path_is_not_mistaken_for_a_repo() {
    let err = resolve_model("./no/such/dir").unwrap_err().to_string();
    assert!(err.contains("no such model directory"), "{err}");
}
