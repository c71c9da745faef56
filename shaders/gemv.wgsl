// GEMV for decode steps (M <= 16 rows of x, one per sequence in the batch):
//   y[m, n] = act(sum_k x[m, k] * W[n, k] + bias[n]) + residual[m, n]
// W is PyTorch's nn.Linear layout [N, K], bound as u32 words: f32 bits, or two f16 halves per
// word (W_F16; rows padded to an even length). The kernel is memory-bound, so every weight word
// is loaded once, coalesced, and used for all M rows of x.
//
// Two reductions, one file: by default (no optional feature) a workgroup of WG threads computes
// ROWS outputs n (rows of W), each row's TPR consecutive threads striding over K and a
// workgroup-memory tree summing their partials. With SUBGROUPS (devices with SUBGROUP; the host
// sets it) each subgroup computes whole outputs on its own: its lanes stride over one row of W
// and subgroupAdd sums them, so there is no workgroup memory and no barrier (but for the LN
// prologue, which all threads run before any row). Work is handed out by subgroup_id, so the
// result does not depend on how the hardware groups invocations; a workgroup covers
// p.rows_per_wg rows (the host sets WG / the smallest subgroup size), its subgroups taking rows
// sg, sg + num_subgroups, ... A module that names subgroup builtins fails validation on devices
// without them, so that code is in `// #if SUBGROUPS` sections, absent from the default text.
// (No `enable subgroups;`: naga 30 rejects that directive and gates subgroups by feature.)
// Both take the per-thread dot products (and the x and W bindings) from common/gemv_dots.wgsl.
//
// With LN (norm_linear) each workgroup first computes the LayerNorm statistics of x's rows, and
// the epilogue applies them (see common/gemv_dots.wgsl).
//
// One entry point, `gemv`: with VEC4 (set by the host) it loads vec4<u32> words (K % 4 == 0 for
// f32, K % 8 == 0 for f16, so every row starts on 16 bytes); without, it handles any K.

// #include linear_epilogue
// #include gemv_dots

// Reduce with subgroupAdd (the host sets it where the device has subgroups).
const SUBGROUPS: bool = false;
// Load 16-byte words of x and W (the host sets it where K allows).
const VEC4: bool = true;

// #if VEC4
fn ln_prepare(t: u32) {
    ln_prepare4(t);
}
fn dots(row: u32, lane: u32, width: u32) -> Dots {
    return dots4(row, lane, width);
}
// #else
fn ln_prepare(t: u32) {
    ln_prepare1(t);
}
fn dots(row: u32, lane: u32, width: u32) -> Dots {
    return dots1(row, lane, width);
}
// #endif

// #if SUBGROUPS
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
fn gemv(
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
        ln_prepare(t);
    }
    let first = (wid.x + wid.y * nwg.x) * p.rows_per_wg;
    // `row` is the same for the whole subgroup, so the loop and the break are subgroup-uniform.
    for (var r = sg; r < p.rows_per_wg; r += n_sg) {
        let row = first + r;
        if row >= p.n {
            break;
        }
        reduce_and_write(dots(row, lane, width), lane, row);
    }
}
// #else
const WG: u32 = 256u;
// Threads per output: 32 keeps a warp on one weight row (128 contiguous bytes per load).
const TPR: u32 = 32u;
const ROWS: u32 = WG / TPR;

// Sums the threads' partials of each output of `row` and writes them: lanes 0..3 each write one
// of the four x rows of an accumulator.
fn reduce_and_write(d: Dots, t: u32, row: u32) {
    let lane = t % TPR;
    var sb = vec2<f32>(0.0);
    if LN {
        sb = group_sum(t, vec4<f32>(d.sb, 0.0, 0.0), TPR).xy;
    }
    for (var c = 0u; c < MV; c++) {
        let total = group_sum(t, d.acc[c], TPR);
        let m = c * 4u + lane;
        if lane < 4u && m < p.m && row < p.n {
            y[m * p.n + row] = finish(ln_finish(total[lane], m, sb), m, row);
        }
    }
}

@compute @workgroup_size(WG)
fn gemv(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
) {
    if LN {
        ln_prepare(t);
    }
    let lane = t % TPR;
    let row = (wid.x + wid.y * nwg.x) * ROWS + t / TPR;
    // The last workgroup's spare rows read a valid row and write nothing.
    let wrow = min(row, p.n - 1u);
    reduce_and_write(dots(wrow, lane, TPR), t, row);
}
// #endif
