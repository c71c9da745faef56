//! bark-wgpu: Suno's Bark text-to-speech on hand-written WGSL compute shaders through wgpu.
//!
//! The crate is layered in one direction: [`gpu`] (adapter, device, tensors, pipelines) under
//! [`graph`] (a step's ops recorded and run as one compute pass) under [`ops`] (one module per
//! kernel family, the Rust half of each shader in `shaders/`).

mod atomic_file;
pub mod audio;
pub mod error;
pub mod generate;
pub mod gpu;
pub mod graph;
#[cfg(not(target_arch = "wasm32"))]
pub mod hub;
pub mod kv;
pub mod model;
pub mod ops;
pub mod progress;
#[cfg(feature = "serve")]
pub mod serve;
pub mod text;
pub mod vocab;
pub mod voice;
pub mod weights;

pub use error::{Error, Result};
pub use gpu::{AdapterSummary, Context, ContextOptions, DType, KernelTime, Tensor};
pub use graph::{Graph, Plan, Val};
