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
// one phase and one batch item; the tiling and reduction loop are common/conv_tiles.wgsl's,
// shared with conv1d.wgsl (vec4 slices in workgroup memory, a TM x TN register block per
// invocation). This file supplies its hooks (Item, fill_row, a_at, b_at): the index math above.

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

// The batch item and output phase r a workgroup computes (conv_tiles.wgsl's Item).
struct Item {
    b: u32,
    phase: u32,
}

// Per reduction row kk = ci * taps + m of the current and next stage (two slots):
// w_base = ci * C_out * K + r + m*s (NONE when that tap is past the kernel or kk past the end),
// x_base = (b * C_in + ci) * T_in (NONE past the end), and the input shift m.
var<workgroup> row_w: array<u32, 2u * BK>;
var<workgroup> row_x: array<u32, 2u * BK>;
var<workgroup> row_m: array<u32, 2u * BK>;

fn fill_row(item: Item, i: u32, kk: u32) {
    var wb = NONE;
    var xb = NONE;
    let m = kk % p.taps;
    if kk < p.c_in * p.taps {
        let ci = kk / p.taps;
        xb = (item.b * p.c_in + ci) * p.t_in;
        let k = item.phase + m * p.stride;
        if k < p.kernel {
            wb = ci * p.c_out * p.kernel + k;
        }
    }
    row_w[i] = wb;
    row_x[i] = xb;
    row_m[i] = m;
}

// A[co, kk] = w[ci, co, r + m*s], kk's data in entry i.
fn a_at(i: u32, kk: u32, co: u32) -> f32 {
    let wb = row_w[i];
    if co < p.c_out && wb != NONE {
        return w[wb + co * p.kernel];
    }
    return 0.0;
}

// B[kk, q] = x[ci, q - m] (zero outside the input), kk's data in entry i.
fn b_at(i: u32, q: u32) -> f32 {
    let xb = row_x[i];
    let m = row_m[i];
    if xb != NONE && q >= m && q - m < p.t_in {
        return x[xb + q - m];
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn conv_transpose1d(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let item = Item(wid.z / (p.m_tiles * p.stride), (wid.z / p.m_tiles) % p.stride);
    let m0 = (wid.z % p.m_tiles) * BM;
    let q0 = (wid.x + wid.y * nwg.x) * BN;
    m_end = p.c_out;
    var acc = array<vec4f, TM * TN4>();
    accumulate(item, p.c_in * p.taps, m0, q0, lid, &acc);
    // Tile column q is output time q * stride + r.
    store_block(&acc, item.b, m0, q0, p.stride, item.phase, lid);
}
