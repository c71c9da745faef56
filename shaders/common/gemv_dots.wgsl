// The GEMVs' shared half (both reductions of gemv.wgsl): x and W bindings, the optional
// LayerNorm of x's rows on the way in, and the per-thread dot products of one weight row with
// every row of x. The two files differ only in how they hand out rows and sum the threads'
// partials. Each defines WG, its workgroup size (a multiple of LN_TPR).

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

// ---- Input LayerNorm (LN: `norm_linear`, a block's LN1 or LN2 or the final norm before the
// head). Every workgroup computes the statistics of the M rows itself (x is a few KiB and
// cached; the weights it streams are far larger), and the epilogue applies them (ln_finish):
// one dispatch instead of a layer_norm pass and a GEMV, and no normed copy of x in memory.
const LN: bool = false;
// The norm's weight at 6 and its bias at 7 (read when p.ln_bias); without LN the host binds x
// to both and nothing reads them.
@group(0) @binding(6) var<storage, read> ln_w1: array<f32>;
@group(0) @binding(6) var<storage, read> ln_w4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> ln_b1: array<f32>;
@group(0) @binding(7) var<storage, read> ln_b4: array<vec4<f32>>;
// Threads summing one row's statistics: fixed, so that a row's statistics, and so its outputs,
// do not depend on M or on which of the two shaders runs (the batch rows of a decode step must
// equal their runs alone).
const LN_TPR: u32 = 16u;
// Rows whose statistics one round computes, and the rounds for MT rows.
const LN_ROWS: u32 = WG / LN_TPR;
const LN_ROUNDS: u32 = (MT + LN_ROWS - 1u) / LN_ROWS;
// Per x row: (mean, 1 / sqrt(var + eps), c), as row_stats in layernorm.wgsl: the normalised
// value is ((x - mean) - c) * rstd * weight + bias, c being the mean of the centred values (the
// f32 mean's own rounding error, measured where it is exact).
var<workgroup> ln_stats: array<vec3<f32>, MT>;

// Workgroup memory for the tree sums: the LN statistics, and gemv.wgsl's sums of each row's
// partials.
var<workgroup> tree: array<vec4<f32>, WG>;

// The sum of `v` over each group of `width` consecutive threads (a power of two dividing WG),
// as a tree, so rounding grows with log2(width); every thread gets its group's total. All
// threads of the workgroup must call it.
fn group_sum(t: u32, v: vec4<f32>, width: u32) -> vec4<f32> {
    let lane = t % width;
    tree[t] = v;
    workgroupBarrier();
    for (var s = width / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            tree[t] += tree[t + s];
        }
        workgroupBarrier();
    }
    let total = tree[t - lane];
    // Nobody may overwrite the totals for the next sum before everyone has read them.
    workgroupBarrier();
    return total;
}

fn ln_group_sum(t: u32, v: vec2<f32>) -> vec2<f32> {
    return group_sum(t, vec4<f32>(v, 0.0, 0.0), LN_TPR).xy;
}

// Stores row m's statistics from its mean and its (sum, sum of squares) of x - mean.
fn ln_store(t: u32, m: u32, mean: f32, centred: vec2<f32>) {
    if t % LN_TPR == 0u && m < MT {
        let c = centred / f32(p.k);
        let variance = max(c.y - c.x * c.x, 0.0);
        ln_stats[m] = vec3<f32>(mean, 1.0 / sqrt(variance + p.ln_eps), c.x);
    }
}

// This thread's (sum, sum of squares) of x - shift over row m's elements lane, lane + LN_TPR,
// ..., read as single words (ln_part1) or vec4 words (ln_part4, K % 4 == 0); nothing for the
// groups of a round past MT. Two versions because an entry point may bind x as only one of x1
// and x4. Rows m >= M read row M - 1, as the dot products do.
fn ln_part1(m: u32, lane: u32, shift: f32) -> vec2<f32> {
    var acc = vec2<f32>(0.0);
    if m < MT {
        let r = min(m, p.m - 1u);
        for (var i = lane; i < p.k; i += LN_TPR) {
            let d = x1[r * p.k + i] - shift;
            acc += vec2<f32>(d, d * d);
        }
    }
    return acc;
}
fn ln_part4(m: u32, lane: u32, shift: f32) -> vec2<f32> {
    let xq = p.k / 4u;
    var acc = vec2<f32>(0.0);
    if m < MT {
        let r = min(m, p.m - 1u);
        for (var j = lane; j < xq; j += LN_TPR) {
            let d = x4[r * xq + j] - shift;
            acc += vec2<f32>(d.x + d.y + d.z + d.w, dot(d, d));
        }
    }
    return acc;
}

// Fills ln_stats for the MT rows: thread t's group reduces row round * LN_ROWS + t / LN_TPR,
// in two passes (its mean, then its centred sums). Called by every thread at the start of a
// workgroup when LN.
fn ln_prepare1(t: u32) {
    for (var round = 0u; round < LN_ROUNDS; round++) {
        let m = round * LN_ROWS + t / LN_TPR;
        let mean = ln_group_sum(t, ln_part1(m, t % LN_TPR, 0.0)).x / f32(p.k);
        ln_store(t, m, mean, ln_group_sum(t, ln_part1(m, t % LN_TPR, mean)));
    }
    workgroupBarrier();
}
fn ln_prepare4(t: u32) {
    for (var round = 0u; round < LN_ROUNDS; round++) {
        let m = round * LN_ROWS + t / LN_TPR;
        let mean = ln_group_sum(t, ln_part4(m, t % LN_TPR, 0.0)).x / f32(p.k);
        ln_store(t, m, mean, ln_group_sum(t, ln_part4(m, t % LN_TPR, mean)));
    }
    workgroupBarrier();
}

// The norm's (weight, bias) at vec4 word j or element k; bias 0 when it has none.
fn ln_affine4(j: u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(ln_w4[j], select(vec4<f32>(0.0), ln_b4[j], p.ln_bias != 0u));
}
fn ln_affine1(k: u32) -> vec2<f32> {
    return vec2<f32>(ln_w1[k], select(0.0, ln_b1[k], p.ln_bias != 0u));
}

// Output (m, n) of the normed product. With the norm's weight g and bias b, and
// xhat = ((x - mean) - c) * rstd:
//   sum_k W[n, k] (xhat_k g_k + b_k) = rstd * (A - (mean + c) * S) + B,
//   A = sum_k (W[n, k] g_k) x_k,  S = sum_k W[n, k] g_k,  B = sum_k W[n, k] b_k.
// So the dot products read x as stored, only scaling each weight by g once for all M rows, and
// S, B ride along as two more sums per thread (`sb`): the norm costs no work per x row in the
// loop, which keeps a 16-row GEMV as cheap as without it. A carries the rows' mean; taking it
// out afterwards loses about u * |mean| / sd * sum_k |W g| more than normalising first would,
// nothing next to f16 weights and small for the rows a LayerNorm sees (|mean| of the order sd).
fn ln_finish(a: f32, m: u32, sb: vec2<f32>) -> f32 {
    if !LN {
        return a;
    }
    let s = ln_stats[m];
    return (a - (s.x + s.z) * sb.x) * s.y + sb.y;
}

// ---- Dot products.

// One thread's partial sums: per x row (acc[m / 4][m % 4]) and, with LN, (S, B) above.
struct Dots {
    acc: array<vec4<f32>, MV>,
    sb: vec2<f32>,
}

// This thread's partial sums of weight row `row` times every x row, over the vec4 words
// lane, lane + stride, ... of the row (K % 4 == 0 for f32, K % 8 == 0 for f16).
fn dots4(row: u32, lane: u32, stride: u32) -> Dots {
    let xq = p.k / 4u;
    var d = Dots();
    if W_F16 {
        // One vec4<u32> is 8 weights: k = 8j .. 8j + 7, matching x vec4s 2j and 2j + 1.
        let wq = p.row_words / 4u;
        for (var j = lane; j < wq; j += stride) {
            let w = w4[row * wq + j];
            var lo = vec4(unpack2x16float(w.x), unpack2x16float(w.y));
            var hi = vec4(unpack2x16float(w.z), unpack2x16float(w.w));
            if LN {
                let a_lo = ln_affine4(2u * j);
                let a_hi = ln_affine4(2u * j + 1u);
                d.sb += vec2<f32>(dot(lo, a_lo[0]) + dot(hi, a_hi[0]), dot(lo, a_lo[1]) + dot(hi, a_hi[1]));
                lo *= a_lo[0];
                hi *= a_hi[0];
            }
            for (var m = 0u; m < MT; m++) {
                let xi = min(m, p.m - 1u) * xq + 2u * j;
                d.acc[m / 4u][m % 4u] += dot(lo, x4[xi]) + dot(hi, x4[xi + 1u]);
            }
        }
    } else {
        for (var j = lane; j < xq; j += stride) {
            var w = bitcast<vec4<f32>>(w4[row * xq + j]);
            if LN {
                let a = ln_affine4(j);
                d.sb += vec2<f32>(dot(w, a[0]), dot(w, a[1]));
                w *= a[0];
            }
            for (var m = 0u; m < MT; m++) {
                d.acc[m / 4u][m % 4u] += dot(w, x4[min(m, p.m - 1u) * xq + j]);
            }
        }
    }
    return d;
}

// The same over single words lane, lane + stride, ... (any K).
fn dots1(row: u32, lane: u32, stride: u32) -> Dots {
    var d = Dots();
    if W_F16 {
        for (var j = lane; j < p.row_words; j += stride) {
            let w = unpack2x16float(w1[row * p.row_words + j]);
            let k0 = 2u * j;
            // With K odd the last word's high half is row padding: weight 0, and x is read
            // at a clamped, valid index.
            var w_lo = w.x;
            var w_hi = select(0.0, w.y, k0 + 1u < p.k);
            let k1 = min(k0 + 1u, p.k - 1u);
            if LN {
                let a0 = ln_affine1(k0);
                let a1 = ln_affine1(k1);
                d.sb += vec2<f32>(w_lo * a0.x + w_hi * a1.x, w_lo * a0.y + w_hi * a1.y);
                w_lo *= a0.x;
                w_hi *= a1.x;
            }
            for (var m = 0u; m < MT; m++) {
                let xr = min(m, p.m - 1u) * p.k;
                d.acc[m / 4u][m % 4u] += w_lo * x1[xr + k0] + w_hi * x1[xr + k1];
            }
        }
    } else {
        for (var j = lane; j < p.k; j += stride) {
            var w = bitcast<f32>(w1[row * p.k + j]);
            if LN {
                let a = ln_affine1(j);
                d.sb += vec2<f32>(w * a.x, w * a.y);
                w *= a.x;
            }
            for (var m = 0u; m < MT; m++) {
                d.acc[m / 4u][m % 4u] += w * x1[min(m, p.m - 1u) * p.k + j];
            }
        }
    }
    return d;
}
