//! Bark's model description: the checkpoint's configuration and the tensors it implies.

pub mod config;
mod tensors;

pub use config::{BarkConfig, CodecConfig, FineConfig, SubModelConfig};
pub use tensors::inference_tensors;
