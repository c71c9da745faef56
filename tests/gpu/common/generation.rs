//! The generation parity fixture (tests/fixtures/tiny, made by scripts/make_fixtures.py):
//! transformers' tokens and codes in generation.safetensors, and its voice prompt.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bark_wgpu::generate::VoicePrompt;
use bark_wgpu::weights::WeightSource;

/// The tiny fixture model's directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// generation.safetensors.
pub fn fixture() -> &'static WeightSource {
    static F: OnceLock<WeightSource> = OnceLock::new();
    F.get_or_init(|| WeightSource::open(dir().join("generation.safetensors")).unwrap())
}

/// A stored integer array as u32 ids.
pub fn ids(name: &str) -> Vec<u32> {
    fixture().to_i64(name).unwrap().into_iter().map(|v| u32::try_from(v).unwrap()).collect()
}

/// A stored `[n, len]` array as `n` rows.
pub fn rows(name: &str, n: usize) -> Vec<Vec<u32>> {
    let all = ids(name);
    all.chunks(all.len() / n).map(<[u32]>::to_vec).collect()
}

/// The fixture's voice prompt (40 semantic tokens, 60 frames).
pub fn voice() -> VoicePrompt {
    VoicePrompt {
        semantic: ids("prompt.semantic_prompt"),
        coarse: rows("prompt.coarse_prompt", 2),
        fine: rows("prompt.fine_prompt", 8),
    }
}
