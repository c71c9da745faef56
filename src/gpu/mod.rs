//! The GPU runtime: adapter and device ([`Context`]), typed buffers ([`Tensor`]), the buffer pool,
//! and the pipeline cache that turns `shaders/*.wgsl` into compute pipelines.

mod context;
mod contract;
mod pipeline;
mod policy;
mod pool;
mod profile;
pub mod shaders;
mod tensor;
pub mod wgsl_include;

pub use context::{AdapterSummary, Context, ContextOptions, Stats};
pub use contract::{Access, Contract, Family, ParamsLayout};
pub(crate) use pipeline::validated;
pub use pipeline::Kernel;
pub(crate) use pipeline::PipelineCache;
pub use policy::KernelPolicy;
pub(crate) use pool::BufferPool;
pub use profile::KernelTime;
pub(crate) use profile::PassTimer;
pub(crate) use tensor::{block_on, map_read_async, Storage};
pub use tensor::{DType, RowSplit, Tensor};
