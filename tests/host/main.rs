//! The tests that need no GPU adapter, in one binary: configuration, tokenizer, voice files,
//! audio files, the model hub, and every shader checked with naga alone.

mod fake_hub;

mod audio;
mod config;
mod contract;
mod decode;
#[cfg(feature = "serve")]
mod fuzz_regressions;
mod hub;
mod hub_clone;
mod naga_shaders;
mod policy;
mod text;
mod voice;
