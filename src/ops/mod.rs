//! The Rust half of every kernel: shape and dtype checks, variant choice, bindings and dispatch
//! size. One module per file in `shaders/`, under the same name, each with a `kernels()` that
//! lists every specialisation it can build (the naga test validates all of them); [`cpu`]
//! mirrors `shaders/cpu/`, the CPU adapters' kernel set, whose kernels the families list.

/// Declares a uniform struct from one field list: the `#[repr(C)]` Pod struct and `LAYOUT`, its
/// [`crate::gpu::ParamsLayout`] (size and field offsets), which a kernel's
/// [`crate::gpu::Contract`] carries and `tests/host/contract.rs` compares with the WGSL struct.
macro_rules! uniform_struct {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$fmeta:meta])* $fvis:vis $field:ident: $ty:ty),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        impl $name {
            pub(crate) const LAYOUT: $crate::gpu::ParamsLayout = $crate::gpu::ParamsLayout {
                size: ::std::mem::size_of::<$name>(),
                fields: &[$((stringify!($field), ::std::mem::offset_of!($name, $field))),*],
            };
        }
    };
}

pub mod attention;
pub mod conv1d;
pub mod conv_transpose1d;
pub mod cpu;
pub mod elementwise;
pub mod embedding;
pub mod gemv;
pub mod groupnorm;
pub mod kv_cache;
pub mod layernorm;
pub mod lstm;
pub mod matmul;
pub mod rvq;
pub mod sampling;
pub mod transpose;

use crate::gpu::Kernel;

/// Every kernel variant any op may dispatch.
pub fn all_kernels() -> Vec<Kernel> {
    [
        attention::kernels(),
        conv1d::kernels(),
        conv_transpose1d::kernels(),
        elementwise::kernels(),
        embedding::kernels(),
        groupnorm::kernels(),
        kv_cache::kernels(),
        layernorm::kernels(),
        lstm::kernels(),
        matmul::kernels(),
        rvq::kernels(),
        sampling::kernels(),
        transpose::kernels(),
    ]
    .concat()
}

/// Packs a `#[repr(C)]` parameter struct for a uniform binding.
pub(crate) fn params<T: bytemuck::Pod>(p: &T) -> Vec<u8> {
    bytemuck::bytes_of(p).to_vec()
}
