//! The decode-step half of [`super::matmul::linear`]: M <= 16 rows against a weight matrix,
//! memory-bound. Two shaders with the same bindings and variants: `shaders/gemv.wgsl` reduces
//! in workgroup memory (any device), `shaders/gemv_subgroup.wgsl` with subgroupAdd (devices
//! with SUBGROUP). Call it through `linear`; this module only picks the specialisation.

use super::matmul::{Problem, GEMV, GEMV_MAX_M};
use super::params;
use crate::gpu::Kernel;
use crate::graph::{groups_1d, Graph};
use crate::Result;

/// Outputs per workgroup of `gemv.wgsl` (its WG / TPR).
const WG_ROWS: usize = 8;
/// Workgroup size of `gemv_subgroup.wgsl`.
pub const SUBGROUP_WG: u32 = 128;
/// The accumulator tiles the shaders are built for (MT); M rounds up to the next one.
const M_TILES: [usize; 5] = [1, 2, 4, 8, 16];

fn kernel(subgroup: bool, vec4: bool, w_f16: bool, m_tile: usize, norm: bool) -> Kernel {
    let shader = if subgroup { "gemv_subgroup" } else { "gemv" };
    let entry = if vec4 { "gemv_vec4" } else { "gemv_scalar" };
    Kernel::new(shader, entry).contract(&GEMV).with("W_F16", w_f16).with("MT", format!("{m_tile}u")).with("LN", norm)
}

/// Records the GEMV for a checked problem with `prob.m <= GEMV_MAX_M`.
pub(crate) fn dispatch(g: &mut Graph, prob: &mut Problem, subgroup: bool) -> Result<()> {
    debug_assert!(prob.m <= GEMV_MAX_M);
    let m_tile = M_TILES.into_iter().find(|&t| t >= prob.m).unwrap_or(GEMV_MAX_M);
    // vec4<u32> loads need every row of W and x to start on 16 bytes.
    let vec4 = if prob.w_f16 { prob.k.is_multiple_of(8) } else { prob.k.is_multiple_of(4) };
    let rows_per_wg =
        if subgroup { subgroup_rows_per_workgroup(g.ctx().summary().subgroup_sizes.0) as usize } else { WG_ROWS };
    prob.params.rows_per_wg = rows_per_wg as u32;
    let groups = groups_1d(prob.n.div_ceil(rows_per_wg) as u32);
    let k = kernel(subgroup, vec4, prob.w_f16, m_tile, prob.norm);
    g.dispatch(k, &params(&prob.params), &prob.binds, groups);
    Ok(())
}

/// Rows of W a workgroup of `gemv_subgroup.wgsl` covers on a device whose smallest subgroup
/// has `min_width` lanes: one row per subgroup when all subgroups have the smallest size;
/// larger subgroups take several rows each (its subgroups take rows sg, sg + num_subgroups, ...).
pub fn subgroup_rows_per_workgroup(min_width: u32) -> u32 {
    (SUBGROUP_WG / min_width.max(1)).clamp(1, SUBGROUP_WG / 4)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for subgroup in [false, true] {
        for vec4 in [false, true] {
            for w_f16 in [false, true] {
                for m_tile in M_TILES {
                    for norm in [false, true] {
                        out.push(kernel(subgroup, vec4, w_f16, m_tile, norm));
                    }
                }
            }
        }
    }
    out
}
