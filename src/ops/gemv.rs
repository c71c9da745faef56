//! The decode-step half of [`super::matmul::linear`]: M <= 16 rows against a weight matrix,
//! memory-bound. `shaders/gemv.wgsl` reduces in workgroup memory (any device) or, with
//! SUBGROUPS, with subgroupAdd (devices with SUBGROUP). Call it through `linear`
//! (`matmul::choose` picks the key); this module builds the kernel.

use super::matmul::{LinearKernel, Problem, GEMV, GEMV_MAX_M};
use super::params;
use crate::gpu::Kernel;
use crate::graph::{groups_1d, Graph};
use crate::Result;

/// Outputs per workgroup of `gemv.wgsl` (its WG / TPR).
const WG_ROWS: usize = 8;
/// Workgroup size of `gemv.wgsl` with SUBGROUPS.
pub const SUBGROUP_WG: u32 = 128;
/// The accumulator tiles the shaders are built for (MT); M rounds up to the next one.
pub(crate) const M_TILES: [u32; 5] = [1, 2, 4, 8, 16];

/// The accumulator tile for `m` rows (at most [`GEMV_MAX_M`]).
pub(crate) fn m_tile(m: usize) -> u32 {
    M_TILES.into_iter().find(|&t| t as usize >= m).unwrap_or(GEMV_MAX_M as u32)
}

/// The specialisation of [`LinearKernel::Gemv`].
pub(crate) fn kernel(subgroup: bool, vec4: bool, w_f16: bool, m_tile: u32, norm: bool) -> Kernel {
    Kernel::new("gemv", "gemv")
        .with_bool("SUBGROUPS", subgroup)
        .with_bool("VEC4", vec4)
        .contract(&GEMV)
        .with_bool("W_F16", w_f16)
        .with_u32("MT", m_tile)
        .with_bool("LN", norm)
}

/// Records the GEMV `key` (a [`LinearKernel::Gemv`]) for a checked problem.
pub(crate) fn dispatch(g: &mut Graph, prob: &mut Problem, key: LinearKernel, subgroup: bool) -> Result<()> {
    debug_assert!(prob.m <= GEMV_MAX_M);
    let rows_per_wg =
        if subgroup { subgroup_rows_per_workgroup(g.ctx().policy().min_subgroup()) as usize } else { WG_ROWS };
    prob.params.rows_per_wg = rows_per_wg as u32;
    let groups = groups_1d(prob.n.div_ceil(rows_per_wg) as u32);
    g.dispatch(key.kernel(), &params(&prob.params), &prob.ops.gemv(), groups);
    Ok(())
}

/// Rows of W a workgroup of `gemv.wgsl` with SUBGROUPS covers on a device whose smallest subgroup
/// has `min_width` lanes: one row per subgroup when all subgroups have the smallest size;
/// larger subgroups take several rows each (its subgroups take rows sg, sg + num_subgroups, ...).
pub fn subgroup_rows_per_workgroup(min_width: u32) -> u32 {
    (SUBGROUP_WG / min_width.max(1)).clamp(1, SUBGROUP_WG / 4)
}
