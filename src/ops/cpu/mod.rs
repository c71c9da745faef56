//! The CPU kernel set ([`crate::gpu::KernelPolicy::cpu_kernels`]): the Rust halves of
//! `shaders/cpu/`, kernels without workgroup memory or barriers for CPU adapters such as
//! lavapipe. Each family's `choose` (`matmul`, `attention`, `layernorm`) picks them; these
//! modules hold their constants, sizing and key-to-[`crate::gpu::Kernel`] building.

pub mod attention_rows;
pub mod gemm_direct;
pub mod layernorm_rows;
