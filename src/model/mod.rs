//! Bark's networks: the checkpoint's configuration and the tensors it implies, and the models
//! built from the ops (the causal GPTs, the fine GPT, the EnCodec codec), and for cloning a voice
//! from a recording HuBERT and the semantic quantizer.

pub mod config;
pub mod encodec;
pub mod gpt;
pub mod hubert;
pub mod quantizer;
mod tensors;

pub use config::{BarkConfig, CodecConfig, FineConfig, SubModelConfig};
pub use tensors::inference_tensors;
