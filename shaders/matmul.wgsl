// The tiled GEMM for GPUs: prefill and other M > 16 products:
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
// CPU adapters (lavapipe) run the same product as cpu/gemm_direct.wgsl instead: no workgroup
// memory and no barriers, a block of y per thread. On a GPU those threads' strided reads of W do not coalesce: that
// is what the tiles here are for.

// #include linear_epilogue

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;

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
    var acc = array<array<vec4<f32>, TN / 4u>, TM>();
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
