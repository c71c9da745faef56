//! The fuzz targets' bodies, in `run.rs` so that `tests/host/fuzz_regressions.rs` replays the
//! kept inputs through exactly the same code on stable.

#[path = "run.rs"]
mod run_impl;

pub use run_impl::{run, TARGETS};
