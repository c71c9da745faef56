//! Every test that needs a GPU adapter, in one binary (one link of wgpu, one shared device):
//! a module per kernel family, per model and per pipeline stage. A test states what it needs
//! from the device (`common::needs`), never which driver it is on. Without an adapter every
//! test here fails: there is no skip.

mod attn_ref;
#[path = "../../benches/common/mod.rs"]
mod bench_common;
mod common;

mod attention;
mod bark_sizes;
mod batch;
mod cli;
mod clone;
mod conv1d;
mod conv_transpose1d;
mod elementwise;
mod embedding;
mod engine;
mod graph;
mod groupnorm;
mod hubert_sizes;
mod kv_cache;
mod layernorm;
mod longform;
mod lstm;
mod matmul;
mod memory;
mod parity_codec;
mod parity_generate;
mod parity_gpt;
mod parity_hubert;
mod profile;
mod progress;
mod rvq;
mod sampling;
#[cfg(feature = "serve")]
mod serve;
mod weights;
