// The GEMVs' shared half (gemv.wgsl, gemv_subgroup.wgsl): x and W bindings and the per-thread
// dot products of one weight row with every row of x. The two files differ only in how they
// hand out rows and sum the threads' partials.

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

// This thread's partial sums of weight row `row` times every x row, over the vec4 words
// lane, lane + stride, ... of the row (K % 4 == 0 for f32, K % 8 == 0 for f16).
fn dots4(row: u32, lane: u32, stride: u32) -> array<vec4<f32>, MV> {
    let xq = p.k / 4u;
    var acc: array<vec4<f32>, MV>;
    if W_F16 {
        // One vec4<u32> is 8 weights: k = 8j .. 8j + 7, matching x vec4s 2j and 2j + 1.
        let wq = p.row_words / 4u;
        for (var j = lane; j < wq; j += stride) {
            let w = w4[row * wq + j];
            let lo = vec4(unpack2x16float(w.x), unpack2x16float(w.y));
            let hi = vec4(unpack2x16float(w.z), unpack2x16float(w.w));
            for (var m = 0u; m < MT; m++) {
                let xi = min(m, p.m - 1u) * xq + 2u * j;
                acc[m / 4u][m % 4u] += dot(lo, x4[xi]) + dot(hi, x4[xi + 1u]);
            }
        }
    } else {
        for (var j = lane; j < xq; j += stride) {
            let w = bitcast<vec4<f32>>(w4[row * xq + j]);
            for (var m = 0u; m < MT; m++) {
                acc[m / 4u][m % 4u] += dot(w, x4[min(m, p.m - 1u) * xq + j]);
            }
        }
    }
    return acc;
}

// The same over single words lane, lane + stride, ... (any K).
fn dots1(row: u32, lane: u32, stride: u32) -> array<vec4<f32>, MV> {
    var acc: array<vec4<f32>, MV>;
    if W_F16 {
        for (var j = lane; j < p.row_words; j += stride) {
            let w = unpack2x16float(w1[row * p.row_words + j]);
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
        for (var j = lane; j < p.k; j += stride) {
            let w = bitcast<f32>(w1[row * p.k + j]);
            for (var m = 0u; m < MT; m++) {
                acc[m / 4u][m % 4u] += w * x1[min(m, p.m - 1u) * p.k + j];
            }
        }
    }
    return acc;
}
