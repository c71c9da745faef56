// Transposed 1-D convolution (PyTorch ConvTranspose1d, no padding, no output padding, groups 1)
// as one implicit GEMM per output phase, optionally trimmed on the right as EnCodec's causal
// EncodecConvTranspose1d does.
//
// Layout: x [B, C_in, T_in], weight [C_in, C_out, K] (PyTorch's layout), bias [C_out],
// y [B, C_out, T_out], all f32, channels first.
//
// The scatter form is y[co, j*s + k] += x[ci, j] * w[ci, co, k]. Gathered per output instead,
// output t = q*s + r (phase r = t mod s) receives exactly the taps k = r + m*s, from input
// j = q - m, for m = 0, 1, ... while k < K and 0 <= j < T_in:
//   y[co, q*s + r] = bias[co] + sum_{ci, m} w[ci, co, r + m*s] * x[ci, q - m].
// For a fixed phase r this is a GEMM over (ci, m) with no atomics and no zero-stuffed input;
// each workgroup computes a BM x BN tile of (output channel, q) for one phase and one batch item.

struct Params {
    c_in: u32,
    c_out: u32,
    t_in: u32,
    t_out: u32,
    kernel: u32,
    stride: u32,
    // ceil(K / stride): the most taps any phase has.
    taps: u32,
    m_tiles: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Tile shape, specialised per C_out (see src/ops/conv_transpose1d.rs).
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

@compute @workgroup_size(WG)
fn conv_transpose1d(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let n_tile = wid.x + wid.y * nwg.x;
    let m_tile = wid.z % p.m_tiles;
    let r = (wid.z / p.m_tiles) % p.stride;
    let b = wid.z / (p.m_tiles * p.stride);
    let m0 = m_tile * BM;
    let q0 = n_tile * BN;
    let tm = lid / WG_N;
    let tn = lid % WG_N;
    let kdim = p.c_in * p.taps;

    var acc: array<f32, TM * TN>;
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        // A tile: A[co, ci*taps + m] = w[ci, co, r + m*s] (zero past the kernel's end).
        for (var e = lid; e < BM * BK; e += WG) {
            let co = m0 + e / BK;
            let kk = k0 + e % BK;
            var v = 0.0;
            if co < p.c_out && kk < kdim {
                let k = r + (kk % p.taps) * p.stride;
                if k < p.kernel {
                    v = w[((kk / p.taps) * p.c_out + co) * p.kernel + k];
                }
            }
            a_tile[(e % BK) * BM + e / BK] = v;
        }
        // B tile: B[ci*taps + m, q] = x[ci, q - m] (zero outside the input).
        for (var e = lid; e < BK * BN; e += WG) {
            let kk = k0 + e / BN;
            let q = q0 + e % BN;
            var v = 0.0;
            if kk < kdim {
                let m = kk % p.taps;
                if q >= m && q - m < p.t_in {
                    v = x[(b * p.c_in + kk / p.taps) * p.t_in + q - m];
                }
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
        let co = m0 + tm + i * WG_M;
        if co >= p.c_out {
            continue;
        }
        let row = (b * p.c_out + co) * p.t_out;
        for (var j = 0u; j < TN; j++) {
            let t = (q0 + tn + j * WG_N) * p.stride + r;
            if t < p.t_out {
                y[row + t] = acc[i * TN + j] + bias[co];
            }
        }
    }
}
