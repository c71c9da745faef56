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
// For a fixed phase r this is a GEMM over the reduction index kk = ci * taps + m, with no atomics
// and no zero-stuffed input. Each workgroup computes a BM x BN tile of (output channel, q) for
// one phase and one batch item; the tiling is common/conv_tiles.wgsl's, shared with conv1d.wgsl
// (vec4 slices in workgroup memory, a TM x TN register block per invocation).

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

// #include conv_tiles

// Per reduction row kk = ci * taps + m of the current and next stage (two slots):
// w_base = ci * C_out * K + r + m*s (NONE when that tap is past the kernel or kk past the end),
// x_base = (b * C_in + ci) * T_in (NONE past the end), and the input shift m.
var<workgroup> row_w: array<u32, 2u * BK>;
var<workgroup> row_x: array<u32, 2u * BK>;
var<workgroup> row_m: array<u32, 2u * BK>;

fn fill_rows(slot: u32, k0: u32, b: u32, r: u32, lid: u32) {
    if lid < BK {
        let kk = k0 + lid;
        var wb = NONE;
        var xb = NONE;
        let m = kk % p.taps;
        if kk < p.c_in * p.taps {
            let ci = kk / p.taps;
            xb = (b * p.c_in + ci) * p.t_in;
            let k = r + m * p.stride;
            if k < p.kernel {
                wb = ci * p.c_out * p.kernel + k;
            }
        }
        row_w[slot * BK + lid] = wb;
        row_x[slot * BK + lid] = xb;
        row_m[slot * BK + lid] = m;
    }
}

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

    var acc: array<vec4f, TM * TN4>;
    fill_rows(0u, 0u, b, r, lid);
    workgroupBarrier();
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        let slot = (k0 / BK) % 2u;
        // A tile: A[co, kk] = w[ci, co, r + m*s].
        for (var e = lid; e < BM * BK; e += WG) {
            let mm = e / BK;
            let co = m0 + mm;
            let wb = row_w[slot * BK + e % BK];
            var v = 0.0;
            if co < p.c_out && wb != NONE {
                v = w[wb + co * p.kernel];
            }
            a_tile[(e % BK) * BM4 + mm / 4u][mm % 4u] = v;
        }
        // B tile: B[kk, q] = x[ci, q - m] (zero outside the input).
        for (var e = lid; e < BK * BN; e += WG) {
            let rr = e / BN;
            let nn = e % BN;
            let q = q0 + nn;
            let xb = row_x[slot * BK + rr];
            let m = row_m[slot * BK + rr];
            var v = 0.0;
            if xb != NONE && q >= m && q - m < p.t_in {
                v = x[xb + q - m];
            }
            b_tile[rr * BN4 + nn / 4u][nn % 4u] = v;
        }
        workgroupBarrier();
        // The next stage's rows go to the other slot; they are read only after the barrier below.
        fill_rows(1u - slot, k0 + BK, b, r, lid);
        multiply_tiles(tm, tn, &acc);
        workgroupBarrier();
    }

    // Tile column q is output time q * stride + r.
    store_block(&acc, b, m0, tm, tn, q0, p.stride, r);
}
