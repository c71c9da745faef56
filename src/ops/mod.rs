//! The Rust half of every kernel: shape and dtype checks, variant choice, bindings and dispatch
//! size. One module per file in `shaders/`, under the same name, each with a `kernels()` that
//! lists every specialisation it can build (the naga test validates all of them).

pub mod attention;
pub mod conv1d;
pub mod conv_transpose1d;
pub mod elementwise;
pub mod embedding;
pub mod gemm_direct;
pub mod gemv;
pub mod kv_cache;
pub mod layernorm;
pub mod lstm;
pub mod matmul;
pub mod rvq;
pub mod sampling;

use crate::gpu::Kernel;

/// Every kernel variant any op may dispatch.
pub fn all_kernels() -> Vec<Kernel> {
    [
        attention::kernels(),
        conv1d::kernels(),
        conv_transpose1d::kernels(),
        elementwise::kernels(),
        embedding::kernels(),
        gemm_direct::kernels(),
        gemv::kernels(),
        kv_cache::kernels(),
        layernorm::kernels(),
        lstm::kernels(),
        matmul::kernels(),
        rvq::kernels(),
        sampling::kernels(),
    ]
    .concat()
}

/// Packs a `#[repr(C)]` parameter struct for a uniform binding.
pub(crate) fn params<T: bytemuck::Pod>(p: &T) -> Vec<u8> {
    bytemuck::bytes_of(p).to_vec()
}
