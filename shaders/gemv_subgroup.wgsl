// GEMV for decode steps, reducing with subgroupAdd: the twin of gemv.wgsl (read that file's
// header); the dot products and the input LayerNorm come from common/gemv_dots.wgsl, shared
// with it. Used only where the device offers SUBGROUP: a module that names subgroup builtins
// fails validation on devices without it, hence a file of its own.
// (No `enable subgroups;`: naga 30 rejects that directive and gates subgroups by feature.)
//
// Layout: each subgroup computes whole outputs on its own: its lanes stride over one row of W
// and subgroupAdd sums them, so there is no workgroup memory and no barrier (but for the LN
// prologue, which all threads run before any row). Work is handed out by subgroup_id, so the
// result does not depend on how the hardware groups invocations.
// A workgroup covers p.rows_per_wg rows (the host sets WG / the smallest subgroup size); its
// subgroups take rows sg, sg + num_subgroups, ...

// #include linear_epilogue
// #include gemv_dots

const WG: u32 = 128u;

// Sums each accumulator over the subgroup; lanes 0..3 write the four x rows of each vec4.
fn reduce_and_write(d: Dots, lane: u32, row: u32) {
    var sb = vec2<f32>(0.0);
    if LN {
        sb = subgroupAdd(d.sb);
    }
    for (var c = 0u; c < MV; c++) {
        let s = subgroupAdd(d.acc[c]);
        let m = c * 4u + lane;
        if lane < 4u && m < p.m {
            y[m * p.n + row] = finish(ln_finish(s[lane], m, sb), m, row);
        }
    }
}

@compute @workgroup_size(WG)
fn gemv_vec4(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    // Before the row loop, whose trip count differs between subgroups: the statistics need
    // every thread at their barriers.
    if LN {
        ln_prepare4(t);
    }
    let first = (wid.x + wid.y * nwg.x) * p.rows_per_wg;
    // `row` is the same for the whole subgroup, so the loop and the break are subgroup-uniform.
    for (var r = sg; r < p.rows_per_wg; r += n_sg) {
        let row = first + r;
        if row >= p.n {
            break;
        }
        reduce_and_write(dots4(row, lane, width), lane, row);
    }
}

@compute @workgroup_size(WG)
fn gemv_scalar(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    // Before the row loop, whose trip count differs between subgroups: the statistics need
    // every thread at their barriers.
    if LN {
        ln_prepare1(t);
    }
    let first = (wid.x + wid.y * nwg.x) * p.rows_per_wg;
    for (var r = sg; r < p.rows_per_wg; r += n_sg) {
        let row = first + r;
        if row >= p.n {
            break;
        }
        reduce_and_write(dots1(row, lane, width), lane, row);
    }
}
