//! The library's error type: every failure a caller can cause or meet is one of these.

use std::path::PathBuf;

/// Everything that can go wrong in bark-wgpu, each with a message that stands on its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    Device(String),
    #[error("shader `{name}` failed to compile: {message}")]
    Shader { name: String, message: String },
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A buffer the GPU (or the limit set with `Context::set_memory_limit`) has no room for.
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    #[error("shape mismatch in {op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("unsupported dtype in {op}: {message}")]
    Dtype { op: &'static str, message: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A model or voice from the Hugging Face hub that is neither cached nor downloadable.
    #[error("{what}: {message}")]
    Hub { what: String, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for the shape errors the ops raise.
pub(crate) fn shape_err(op: &'static str, message: impl Into<String>) -> Error {
    Error::Shape { op, message: message.into() }
}
