//! The CPU adapters' half of [`crate::ops::matmul::linear`] (`shaders/cpu/gemm_direct.wgsl`):
//! any M, each thread reading x and W straight from memory into a block of up to 16 rows x 16
//! columns of y, with no workgroup memory and no barriers. Its `SUBGROUPS` twin shares the loads
//! of x between a workgroup's lanes (devices whose subgroups are exactly a workgroup); the plain
//! text has every thread load them (any device). Both sum each output in the same order, so they
//! agree bit for bit. Call it through `linear` (`matmul::choose` picks the key); this module
//! builds the kernel.

use crate::gpu::{Kernel, KernelPolicy};
use crate::graph::Graph;
use crate::ops::matmul::{grid, LinearKernel, Problem, GEMM};
use crate::ops::params;
use crate::Result;

/// Rows of y per thread (DM): the smallest that covers M, else the last.
pub(crate) const BLOCK_ROWS: [u32; 5] = [1, 2, 4, 8, 16];
/// Threads per workgroup (DWG), which also share the x loads in the subgroup twin.
const WG: usize = 8;

/// Groups of 4 columns per thread for blocks of `rows` rows (DC): a decode row (1) reads each
/// weight once whatever the block, and narrower blocks give its few rows more threads.
fn col_groups(rows: u32) -> u32 {
    if rows == 1 {
        1
    } else {
        4
    }
}

/// The kernel for blocks of `rows` rows; `shared_x` picks the subgroup twin (16-byte loads
/// only), whose lanes split the x loads by rows (XR) as far as `rows` allows and by steps of K
/// (XS) for the rest of the [`WG`] lanes.
pub(crate) fn kernel(vec4: bool, w_f16: bool, rows: u32, shared_x: bool) -> Kernel {
    debug_assert!(!shared_x || vec4);
    let entry = if vec4 { "gemm_direct_vec4" } else { "gemm_direct_scalar" };
    let k = Kernel::new("cpu/gemm_direct", entry)
        .contract(&GEMM)
        .with_bool("W_F16", w_f16)
        .with_u32("DM", rows)
        .with_u32("DC", col_groups(rows));
    if shared_x {
        let by_rows = rows.min(WG as u32);
        k.with_bool("SUBGROUPS", true).with_u32("XR", by_rows).with_u32("XS", WG as u32 / by_rows)
    } else {
        k
    }
}

/// Blocks of y's rows for `m` rows: the smallest block that covers them (a decode step's
/// M = 1 computes no padding rows), else the largest.
pub(crate) fn block_rows(m: usize) -> u32 {
    BLOCK_ROWS.into_iter().find(|&r| r as usize >= m).unwrap_or(BLOCK_ROWS[BLOCK_ROWS.len() - 1])
}

/// Whether the direct GEMM shares the loads of x's rows between lanes under `policy` (where K
/// is a multiple of 4 for f32 or 8 for f16): where its subgroups are exactly a workgroup, so
/// every lane of one is in one subgroup.
pub fn shares_x_loads(policy: &KernelPolicy) -> bool {
    policy.subgroups_are(WG as u32)
}

/// Records the direct GEMM `key` (a [`LinearKernel::GemmDirect`] of `rows`-row blocks) for a
/// checked problem.
pub(crate) fn dispatch(g: &mut Graph, prob: &Problem, key: LinearKernel, rows: u32) -> Result<()> {
    let groups = grid(prob, rows as usize, (4 * col_groups(rows)) as usize * WG)?;
    g.dispatch(key.kernel(), &params(&prob.params), &prob.ops.gemm(), groups);
    Ok(())
}
