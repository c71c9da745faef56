// GEMMs: prefill and other M > 16 products on a GPU, every product on a CPU adapter:
//   y[m, n] = act(sum_k x[m, k] * W[n, k] + bias[n]) + residual[m, n]
// W is PyTorch's nn.Linear layout [N, K], bound as u32 words: f32 bits, or two f16 halves per
// word (W_F16; rows padded to an even length). Accumulation is f32.
//
// `gemm` (GPUs): a workgroup computes a BM x BN = 64 x 64 tile of y; each of its 256 threads
// a TM x TN = 4 x 4 micro-tile (rows TM*ty.., columns TN*tx..). K advances BK = 16 at a time
// through workgroup memory, where both tiles are stored k-major so a thread reads its rows and
// its columns as vec4s. Every global read and write is bounds-guarded: M, N, K need not be multiples of
// anything. (8 x 8 micro-tiles on 64 threads ran no faster on lavapipe, and would leave a
// Bark prefill with too few threads per GPU core; the host's tile count assumes BM = BN = 64.)
//
// `gemm_direct_vec4` / `gemm_direct_scalar` (CPU adapters such as lavapipe): no workgroup
// memory and no barriers; each thread reads its operands straight from the buffers and keeps
// a block of DM x 4 DC outputs of y (see the section below). On a CPU the buffers already sit
// in caches, and a workgroup barrier costs a switch between every group of SIMD lanes, so the
// tiles above cost more than they save there (see BENCHMARKS.md). On a GPU the threads'
// strided reads of W do not coalesce: that is what the tiles are for.

// #include linear_epilogue

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
// The same buffers in 16-byte words, for gemm_direct_vec4 (rows of x and W start on 16 bytes).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<u32>>;

const W_F16: bool = false;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
// Each thread's micro-tile: TM rows by TN columns (both multiples of 4).
const TM: u32 = 4u;
const TN: u32 = 4u;
const WG: u32 = (BM / TM) * (BN / TN);
// vec4s per k-row of a tile, plus one of padding so the k-strided stores of a load spread
// over more memory banks.
const XS_STRIDE: u32 = BM / 4u + 1u;
const WS_STRIDE: u32 = BN / 4u + 1u;

var<workgroup> xs: array<vec4<f32>, BK * XS_STRIDE>;
var<workgroup> ws: array<vec4<f32>, BK * WS_STRIDE>;

// Loads x[m0 .. m0 + BM, k0 .. k0 + BK] into xs; consecutive threads read consecutive k.
fn load_x_tile(t: u32, m0: u32, k0: u32) {
    for (var i = 0u; i < BM * BK / WG; i++) {
        let e = t + i * WG;
        let r = e / BK;
        let kk = e % BK;
        let m = m0 + r;
        let k = k0 + kk;
        var v = 0.0;
        if m < p.m && k < p.k {
            v = x[m * p.k + k];
        }
        xs[kk * XS_STRIDE + r / 4u][r % 4u] = v;
    }
}

// Loads W[n0 .. n0 + BN, k0 .. k0 + BK] into ws (as ws[k][n]); consecutive threads read
// consecutive words of a row.
fn load_w_tile(t: u32, n0: u32, k0: u32) {
    if W_F16 {
        // BK / 2 words per row; k0 is a multiple of BK, so even, and k0 / 2 is a word index.
        for (var i = 0u; i < BN * BK / 2u / WG; i++) {
            let e = t + i * WG;
            let r = e / (BK / 2u);
            let kw = e % (BK / 2u);
            let n = n0 + r;
            let k = k0 + 2u * kw;
            var pair = vec2(0.0);
            if n < p.n && k < p.k {
                pair = unpack2x16float(w[n * p.row_words + k / 2u]);
                // With K odd the last word's high half is row padding.
                pair.y = select(0.0, pair.y, k + 1u < p.k);
            }
            ws[(2u * kw) * WS_STRIDE + r / 4u][r % 4u] = pair.x;
            ws[(2u * kw + 1u) * WS_STRIDE + r / 4u][r % 4u] = pair.y;
        }
    } else {
        for (var i = 0u; i < BN * BK / WG; i++) {
            let e = t + i * WG;
            let r = e / BK;
            let kk = e % BK;
            let n = n0 + r;
            let k = k0 + kk;
            var v = 0.0;
            if n < p.n && k < p.k {
                v = bitcast<f32>(w[n * p.row_words + k]);
            }
            ws[kk * WS_STRIDE + r / 4u][r % 4u] = v;
        }
    }
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = t % (BN / TN);
    let ty = t / (BN / TN);
    // acc[i][j]: row m0 + TM * ty + i, columns n0 + TN * tx + 4j .. + 4.
    var acc: array<array<vec4<f32>, TN / 4u>, TM>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        load_x_tile(t, m0, k0);
        load_w_tile(t, n0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<vec4<f32>, TM / 4u>;
            for (var i = 0u; i < TM / 4u; i++) {
                a[i] = xs[kk * XS_STRIDE + ty * (TM / 4u) + i];
            }
            var b: array<vec4<f32>, TN / 4u>;
            for (var j = 0u; j < TN / 4u; j++) {
                b[j] = ws[kk * WS_STRIDE + tx * (TN / 4u) + j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN / 4u; j++) {
                    acc[i][j] += a[i / 4u][i % 4u] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let m = m0 + TM * ty + i;
        for (var j = 0u; j < TN; j++) {
            let n = n0 + TN * tx + j;
            if m < p.m && n < p.n {
                y[m * p.n + n] = finish(acc[i][j / 4u][j % 4u], m, n);
            }
        }
    }
}

// ---- The direct GEMM (CPU adapters). A thread computes a block of DM rows x 4 DC columns of
// y: rows m0 .. m0 + DM, columns n0 .. n0 + 4 DC; DWG threads side by side take consecutive
// column blocks. The host sets DM to the smallest of 1, 2, 4, 8, 16 that covers M, and DC to 4
// (1 where DM = 1: a decode row reads each weight once whatever the block, and narrower
// blocks give its few rows more threads).
//
// Why blocks this large: lavapipe runs 8 threads as the SIMD lanes of one CPU core, and runs
// every load from a storage buffer one lane at a time (a loop over the lanes with a bounds
// check per element; a 16-byte load costs about what a 4-byte one does), so a thread's cost is
// its count of loads, and the larger its block, the more multiply-adds each load serves: 16 x 16 ran 2-2.6x the 8 x 4 block of before on lavapipe.
// The loops over the block are written out (`// #unroll`, see src/gpu/shaders.rs): rolled,
// lavapipe kept the accumulators in memory and ran at half the speed.
//
// Each output is the same sequential sum over K whatever DM and DC, so a row comes out
// bit-identical at any M.
const DM: u32 = 16u;
const DC: u32 = 4u;
const DWG: u32 = 8u;

// The first row and column of the thread's block.
fn origin(wid: vec3u, t: u32) -> vec2u {
    return vec2(wid.y * DM, (wid.x * DWG + t) * 4u * DC);
}

// Writes the block: acc[i * DC + c] holds row m0 + i, columns n0 + 4c .. n0 + 4c + 3.
fn store(o: vec2u, acc: ptr<function, array<vec4<f32>, DM * DC>>) {
    for (var i = 0u; i < DM; i++) { // #unroll
        for (var c = 0u; c < DC; c++) { // #unroll
            for (var k = 0u; k < 4u; k++) { // #unroll
                let m = o.x + i;
                let n = o.y + 4u * c + k;
                if m < p.m && n < p.n {
                    y[m * p.n + n] = finish((*acc)[i * DC + c][k], m, n);
                }
            }
        }
    }
}

// K % 4 == 0 (f32) or K % 8 == 0 (f16): one 16-byte word of W is 4 (f32) or 8 (f16) weights.
// Rows past M or columns past N re-read the last one and are not written.
@compute @workgroup_size(DWG)
fn gemm_direct_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    let o = origin(wid, t);
    if o.y >= p.n {
        return;
    }
    let words = p.row_words / 4u;
    let x_row = p.k / 4u;
    var acc: array<vec4<f32>, DM * DC>;
    for (var q = 0u; q < words; q++) {
        if W_F16 {
            // Weights k .. k + 4 of column n0 + j in lo[j], k + 4 .. k + 8 in hi[j].
            var lo: array<vec4<f32>, 4u * DC>;
            var hi: array<vec4<f32>, 4u * DC>;
            for (var c = 0u; c < DC; c++) { // #unroll
                for (var k = 0u; k < 4u; k++) { // #unroll
                    let u = w4[min(o.y + 4u * c + k, p.n - 1u) * words + q];
                    lo[4u * c + k] = vec4(unpack2x16float(u.x), unpack2x16float(u.y));
                    hi[4u * c + k] = vec4(unpack2x16float(u.z), unpack2x16float(u.w));
                }
            }
            for (var i = 0u; i < DM; i++) { // #unroll
                let r = min(o.x + i, p.m - 1u) * x_row + 2u * q;
                let a = x4[r];
                let e = x4[r + 1u];
                for (var c = 0u; c < DC; c++) { // #unroll
                    let j = 4u * c;
                    acc[i * DC + c] += vec4(
                        dot(a, lo[j]) + dot(e, hi[j]),
                        dot(a, lo[j + 1u]) + dot(e, hi[j + 1u]),
                        dot(a, lo[j + 2u]) + dot(e, hi[j + 2u]),
                        dot(a, lo[j + 3u]) + dot(e, hi[j + 3u]),
                    );
                }
            }
        } else {
            var wv: array<vec4<f32>, 4u * DC>;
            for (var c = 0u; c < DC; c++) { // #unroll
                for (var k = 0u; k < 4u; k++) { // #unroll
                    wv[4u * c + k] = bitcast<vec4<f32>>(w4[min(o.y + 4u * c + k, p.n - 1u) * words + q]);
                }
            }
            for (var i = 0u; i < DM; i++) { // #unroll
                let a = x4[min(o.x + i, p.m - 1u) * x_row + q];
                for (var c = 0u; c < DC; c++) { // #unroll
                    let j = 4u * c;
                    acc[i * DC + c] += vec4(dot(a, wv[j]), dot(a, wv[j + 1u]), dot(a, wv[j + 2u]), dot(a, wv[j + 3u]));
                }
            }
        }
    }
    store(o, &acc);
}

// Any K, one weight at a time.
@compute @workgroup_size(DWG)
fn gemm_direct_scalar(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    let o = origin(wid, t);
    if o.y >= p.n {
        return;
    }
    var acc: array<vec4<f32>, DM * DC>;
    for (var k = 0u; k < p.k; k++) {
        var wv: array<vec4<f32>, DC>;
        for (var c = 0u; c < DC; c++) { // #unroll
            for (var j = 0u; j < 4u; j++) { // #unroll
                let at = min(o.y + 4u * c + j, p.n - 1u) * p.row_words;
                if W_F16 {
                    wv[c][j] = unpack2x16float(w[at + k / 2u])[k % 2u];
                } else {
                    wv[c][j] = bitcast<f32>(w[at + k]);
                }
            }
        }
        for (var i = 0u; i < DM; i++) { // #unroll
            let xv = x[min(o.x + i, p.m - 1u) * p.k + k];
            for (var c = 0u; c < DC; c++) { // #unroll
                acc[i * DC + c] += xv * wv[c];
            }
        }
    }
    store(o, &acc);
}
