//! Bark's networks: the checkpoint's configuration and the tensors it implies, and the models
//! built from the ops (the causal GPTs, the fine GPT, the EnCodec codec).

pub mod config;
pub mod encodec;
pub mod gpt;
mod tensors;

pub use config::{BarkConfig, CodecConfig, FineConfig, SubModelConfig};
pub use tensors::inference_tensors;
