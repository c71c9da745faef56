//! The CPU adapters' half of [`super::matmul::linear`] (where [`crate::Context::cpu_kernels`]):
//! any M, each thread reading x and W straight from memory into a block of up to 16 rows x 16
//! columns of y, with no workgroup memory and no barriers. Two shaders around one body
//! (`shaders/common/gemm_direct.wgsl`): `shaders/gemm_direct_subgroup.wgsl` shares the loads
//! of x between a workgroup's lanes (devices whose subgroups are exactly a workgroup),
//! `shaders/gemm_direct.wgsl` has every thread load them (any device). Both sum each output in
//! the same order, so they agree bit for bit. Call it through `linear`; this module only picks
//! the specialisation.

use super::matmul::{grid, Problem, GEMM};
use super::params;
use crate::gpu::Kernel;
use crate::graph::Graph;
use crate::{Context, Result};

/// Rows of y per thread (DM): the smallest that covers M, else the last.
const ROWS: [usize; 5] = [1, 2, 4, 8, 16];
/// Threads per workgroup (DWG), which also share the x loads in the subgroup shader.
const WG: usize = 8;

/// Groups of 4 columns per thread for blocks of `rows` rows (DC): a decode row (1) reads each
/// weight once whatever the block, and narrower blocks give its few rows more threads.
fn col_groups(rows: usize) -> usize {
    if rows == 1 {
        1
    } else {
        4
    }
}

/// The kernel for blocks of `rows` rows; `shared_x` picks the subgroup shader (16-byte loads
/// only), whose lanes split the x loads by rows (XR) as far as `rows` allows and by steps of K
/// (XS) for the rest of the [`WG`] lanes.
fn kernel(vec4: bool, w_f16: bool, rows: usize, shared_x: bool) -> Kernel {
    debug_assert!(!shared_x || vec4);
    let shader = if shared_x { "gemm_direct_subgroup" } else { "gemm_direct" };
    let entry = if vec4 { "gemm_direct_vec4" } else { "gemm_direct_scalar" };
    let k = Kernel::new(shader, entry)
        .contract(&GEMM)
        .with("W_F16", w_f16)
        .with("DM", format!("{rows}u"))
        .with("DC", format!("{}u", col_groups(rows)));
    if shared_x {
        let by_rows = rows.min(WG);
        k.with("XR", format!("{by_rows}u")).with("XS", format!("{}u", WG / by_rows))
    } else {
        k
    }
}

/// Whether the direct GEMM shares the loads of x's rows between lanes on `ctx` (where K is a
/// multiple of 4 for f32 or 8 for f16): where its subgroups are exactly a workgroup, so every
/// lane of one is in one subgroup.
pub fn shares_x_loads(ctx: &Context) -> bool {
    ctx.subgroups_are(WG as u32)
}

/// Records the direct GEMM for a checked problem.
pub(crate) fn dispatch(g: &mut Graph, prob: &Problem) -> Result<()> {
    // A decode step's M = 1 computes no padding rows.
    let rows = ROWS.into_iter().find(|&r| r >= prob.m).unwrap_or(ROWS[ROWS.len() - 1]);
    let groups = grid(prob, rows, 4 * col_groups(rows) * WG)?;
    // 16-byte loads need every row of x and W to start on 16 bytes.
    let vec4 = if prob.w_f16 { prob.k.is_multiple_of(8) } else { prob.k.is_multiple_of(4) };
    let shared_x = shares_x_loads(g.ctx()) && vec4;
    let k = kernel(vec4, prob.w_f16, rows, shared_x);
    g.dispatch(k, &params(&prob.params), &prob.binds[..5], groups);
    Ok(())
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    let mut out = Vec::new();
    for vec4 in [false, true] {
        for w_f16 in [false, true] {
            for rows in ROWS {
                out.push(kernel(vec4, w_f16, rows, false));
                if vec4 {
                    out.push(kernel(vec4, w_f16, rows, true));
                }
            }
        }
    }
    out
}
