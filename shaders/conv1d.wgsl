// 1-D convolution as an implicit GEMM, with EnCodec's causal reflect padding fused into the
// index math (no padded copy of the input is ever made).
//
// Layout: x [B, C_in, T_in], weight [C_out, C_in, K], bias [C_out], y [B, C_out, T_out], all f32,
// channels first like PyTorch. Per batch item this is Y = A * X' with
//   A  [C_out, C_in*K]  = the weight seen as a matrix (row-major, contiguous),
//   X' [C_in*K, T_out]  = the im2col of the padded input, gathered on the fly:
//        X'[ci*K + k, t] = xpad[ci, t*stride + k*dilation].
// Each workgroup computes a BM x BN tile of Y (BM output channels by BN time steps); each
// invocation a TM x TN block of it, rows strided by WG_M and columns by WG_N so that neighbouring
// invocations store neighbouring time steps.
//
// Padding (when p.reflect == 1): xpad[j] = xext[reflect(j - pad_left)] where xext is x
// zero-extended on the right to ext_len samples and reflect(i) mirrors i < 0 to -i and
// i >= ext_len to 2*(ext_len-1) - i. This is transformers' _pad1d: reflect on an input no
// longer than the pad first appends zeros, pads, then trims them off the end, and the right pad
// ("extra padding" that completes the last stride) reflects about the same extended signal.
// Without padding (p.reflect == 0) pad_left = 0 and every index is already inside x.

struct Params {
    c_in: u32,
    c_out: u32,
    t_in: u32,
    t_out: u32,
    kernel: u32,
    stride: u32,
    dilation: u32,
    pad_left: u32,
    // Length of the zero-extended signal the reflection mirrors about (>= t_in).
    ext_len: u32,
    reflect: u32,
    // Number of BM-row tiles over C_out (the z grid is batch * m_tiles + m_tile).
    m_tiles: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Invocations along output channels and along time; TM x TN outputs each; BK reduction depth
// per shared-memory stage. Specialised per C_out (see src/ops/conv1d.rs).
const WG_M: u32 = 16u;
const WG_N: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const BK: u32 = 16u;

const WG: u32 = WG_M * WG_N;
const BM: u32 = WG_M * TM;
const BN: u32 = WG_N * TN;

var<workgroup> a_tile: array<f32, BK * BM>;
var<workgroup> b_tile: array<f32, BK * BN>;

// The padded input at (batch row base `xrow` = (b*C_in + ci) * t_in, padded position j).
fn x_padded(xrow: u32, j: u32) -> f32 {
    var i = i32(j) - i32(p.pad_left);
    if p.reflect == 1u {
        let n = i32(p.ext_len);
        if i < 0 {
            i = -i;
        }
        if i >= n {
            i = 2 * (n - 1) - i;
        }
    }
    if i < 0 || i >= i32(p.t_in) {
        return 0.0;
    }
    return x[xrow + u32(i)];
}

@compute @workgroup_size(WG)
fn conv1d(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let n_tile = wid.x + wid.y * nwg.x;
    let b = wid.z / p.m_tiles;
    let m0 = (wid.z % p.m_tiles) * BM;
    let n0 = n_tile * BN;
    let tm = lid / WG_N;
    let tn = lid % WG_N;
    let kdim = p.c_in * p.kernel;

    var acc: array<f32, TM * TN>;
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        // A tile: weight rows m0.., columns k0.. (contiguous along k).
        for (var e = lid; e < BM * BK; e += WG) {
            let m = m0 + e / BK;
            let kk = k0 + e % BK;
            var v = 0.0;
            if m < p.c_out && kk < kdim {
                v = w[m * kdim + kk];
            }
            a_tile[(e % BK) * BM + e / BK] = v;
        }
        // B tile: im2col of the padded input (contiguous along t when stride is 1).
        for (var e = lid; e < BK * BN; e += WG) {
            let kk = k0 + e / BN;
            let t = n0 + e % BN;
            var v = 0.0;
            if kk < kdim && t < p.t_out {
                let ci = kk / p.kernel;
                let k = kk % p.kernel;
                v = x_padded((b * p.c_in + ci) * p.t_in, t * p.stride + k * p.dilation);
            }
            b_tile[e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, TM>;
            for (var i = 0u; i < TM; i++) {
                a[i] = a_tile[kk * BM + tm + i * WG_M];
            }
            for (var j = 0u; j < TN; j++) {
                let bv = b_tile[kk * BN + tn + j * WG_N];
                for (var i = 0u; i < TM; i++) {
                    acc[i * TN + j] += a[i] * bv;
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let m = m0 + tm + i * WG_M;
        if m >= p.c_out {
            continue;
        }
        let row = (b * p.c_out + m) * p.t_out;
        for (var j = 0u; j < TN; j++) {
            let t = n0 + tn + j * WG_N;
            if t < p.t_out {
                y[row + t] = acc[i * TN + j] + bias[m];
            }
        }
    }
}
