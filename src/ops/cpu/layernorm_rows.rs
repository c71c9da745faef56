//! The CPU set's LayerNorm (`shaders/cpu/layernorm_rows.wgsl`): a thread per row, no barriers.
//! [`crate::ops::layernorm::choose`] picks it (`LayerNormKernel::Rows`); this module sizes it
//! and builds the kernel.

use crate::gpu::Kernel;
use crate::graph::groups_1d;
use crate::ops::layernorm::CONTRACT;

/// Rows per workgroup (the shader's ROWS_WG).
const ROWS_WG: u32 = 8;

/// The one specialisation.
pub(crate) fn kernel() -> Kernel {
    Kernel::new("cpu/layernorm_rows", "layernorm_rows").contract(&CONTRACT)
}

/// The workgroup grid for `rows` rows.
pub(crate) fn grid(rows: u32) -> [u32; 3] {
    groups_1d(rows.div_ceil(ROWS_WG))
}
