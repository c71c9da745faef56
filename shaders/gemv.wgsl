// GEMV for decode steps (M <= 16 rows of x, one per sequence in the batch):
//   y[m, n] = act(sum_k x[m, k] * W[n, k] + bias[n]) + residual[m, n]
// W is PyTorch's nn.Linear layout [N, K], bound as u32 words: f32 bits, or two f16 halves per
// word (W_F16; rows padded to an even length). The kernel is memory-bound, so every weight word
// is loaded once, coalesced, and used for all M rows of x.
//
// Layout: a workgroup of WG threads computes ROWS outputs n (rows of W). Each row gets TPR
// consecutive threads that stride over K; a workgroup-memory tree then sums their partials.
// This file needs no optional feature; gemv_subgroup.wgsl is its twin that reduces with
// subgroupAdd. Both take the per-thread dot products (and the x and W bindings) from
// common/gemv_dots.wgsl, this one also its tree sum.
//
// With LN (norm_linear) each workgroup first computes the LayerNorm statistics of x's rows, and
// the epilogue applies them (see common/gemv_dots.wgsl).
//
// Entry points: `gemv_vec4` loads vec4<u32> words (K % 4 == 0 for f32, K % 8 == 0 for f16, so
// every row starts on 16 bytes); `gemv_scalar` handles any K.

// #include linear_epilogue
// #include gemv_dots

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
fn gemv_vec4(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
) {
    if LN {
        ln_prepare4(t);
    }
    let lane = t % TPR;
    let row = (wid.x + wid.y * nwg.x) * ROWS + t / TPR;
    // The last workgroup's spare rows read a valid row and write nothing.
    let wrow = min(row, p.n - 1u);
    reduce_and_write(dots4(wrow, lane, TPR), t, row);
}

@compute @workgroup_size(WG)
fn gemv_scalar(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
) {
    if LN {
        ln_prepare1(t);
    }
    let lane = t % TPR;
    let row = (wid.x + wid.y * nwg.x) * ROWS + t / TPR;
    let wrow = min(row, p.n - 1u);
    reduce_and_write(dots1(wrow, lane, TPR), t, row);
}
