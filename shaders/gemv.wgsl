// GEMV for decode steps (M <= 16 rows of x, one per sequence in the batch):
//   y[m, n] = act(sum_k x[m, k] * W[n, k] + bias[n]) + residual[m, n]
// W is PyTorch's nn.Linear layout [N, K], bound as u32 words: f32 bits, or two f16 halves per
// word (W_F16; rows padded to an even length). The kernel is memory-bound, so every weight word
// is loaded once, coalesced, and used for all M rows of x.
//
// Layout: a workgroup of WG threads computes ROWS outputs n (rows of W). Each row gets TPR
// consecutive threads that stride over K; a workgroup-memory tree then sums their partials.
// This file needs no optional feature; gemv_subgroup.wgsl is its twin that reduces with
// subgroupAdd (keep the two in step).
//
// Entry points: `gemv_vec4` loads vec4<u32> words (K % 4 == 0 for f32, K % 8 == 0 for f16, so
// every row starts on 16 bytes); `gemv_scalar` handles any K.

// #include linear_epilogue

@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w1: array<u32>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<u32>>;

// Weights are f16 pairs (true) or f32 (false).
const W_F16: bool = false;
// Rows of x one pass handles: the host picks the smallest of 1, 2, 4, 8, 16 that is >= M.
// Rows past M re-read row M - 1 (no bounds branch in the loop) and are not written.
const MT: u32 = 1u;
// Accumulators are vec4s of four x rows each, so the reduction moves four sums per step.
const MV: u32 = (MT + 3u) / 4u;
const WG: u32 = 256u;
// Threads per output: 32 keeps a warp on one weight row (128 contiguous bytes per load).
const TPR: u32 = 32u;
const ROWS: u32 = WG / TPR;

var<workgroup> red: array<vec4<f32>, WG>;

// Sums each accumulator over the TPR threads of a row and writes the outputs.
fn reduce_and_write(acc_in: array<vec4<f32>, MV>, t: u32, row: u32) {
    var acc = acc_in;
    let lane = t % TPR;
    for (var c = 0u; c < MV; c++) {
        red[t] = acc[c];
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s >>= 1u) {
            if lane < s {
                red[t] += red[t + s];
            }
            workgroupBarrier();
        }
        // Lanes 0..3 each write one of the four x rows of this chunk.
        let m = c * 4u + lane;
        if lane < 4u && m < p.m && row < p.n {
            y[m * p.n + row] = finish(red[t - lane][lane], m, row);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn gemv_vec4(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
) {
    let lane = t % TPR;
    let row = (wid.x + wid.y * nwg.x) * ROWS + t / TPR;
    // The last workgroup's spare rows read a valid row and write nothing.
    let wrow = min(row, p.n - 1u);
    let xq = p.k / 4u;
    var acc: array<vec4<f32>, MV>;
    if W_F16 {
        // One vec4<u32> is 8 weights: k = 8j .. 8j + 7, matching x vec4s 2j and 2j + 1.
        let wq = p.row_words / 4u;
        for (var j = lane; j < wq; j += TPR) {
            let w = w4[wrow * wq + j];
            let lo = vec4(unpack2x16float(w.x), unpack2x16float(w.y));
            let hi = vec4(unpack2x16float(w.z), unpack2x16float(w.w));
            for (var m = 0u; m < MT; m++) {
                let xi = min(m, p.m - 1u) * xq + 2u * j;
                acc[m / 4u][m % 4u] += dot(lo, x4[xi]) + dot(hi, x4[xi + 1u]);
            }
        }
    } else {
        for (var j = lane; j < xq; j += TPR) {
            let w = bitcast<vec4<f32>>(w4[wrow * xq + j]);
            for (var m = 0u; m < MT; m++) {
                acc[m / 4u][m % 4u] += dot(w, x4[min(m, p.m - 1u) * xq + j]);
            }
        }
    }
    reduce_and_write(acc, t, row);
}

@compute @workgroup_size(WG)
fn gemv_scalar(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(local_invocation_index) t: u32,
) {
    let lane = t % TPR;
    let row = (wid.x + wid.y * nwg.x) * ROWS + t / TPR;
    let wrow = min(row, p.n - 1u);
    var acc: array<vec4<f32>, MV>;
    if W_F16 {
        for (var j = lane; j < p.row_words; j += TPR) {
            let w = unpack2x16float(w1[wrow * p.row_words + j]);
            let k0 = 2u * j;
            // With K odd the last word's high half is row padding: weight 0, and x is read
            // at a clamped, valid index.
            let w_hi = select(0.0, w.y, k0 + 1u < p.k);
            let k1 = min(k0 + 1u, p.k - 1u);
            for (var m = 0u; m < MT; m++) {
                let xr = min(m, p.m - 1u) * p.k;
                acc[m / 4u][m % 4u] += w.x * x1[xr + k0] + w_hi * x1[xr + k1];
            }
        }
    } else {
        for (var j = lane; j < p.k; j += TPR) {
            let w = bitcast<f32>(w1[wrow * p.k + j]);
            for (var m = 0u; m < MT; m++) {
                acc[m / 4u][m % 4u] += w * x1[min(m, p.m - 1u) * p.k + j];
            }
        }
    }
    reduce_and_write(acc, t, row);
}
