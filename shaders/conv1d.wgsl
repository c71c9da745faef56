// 1-D convolution as an implicit GEMM, with EnCodec's causal reflect padding fused into the
// index math (no padded copy of the input is ever made).
//
// Layout: x [B, C_in, T_in], weight [C_out, C_in, K], bias [C_out], y [B, C_out, T_out], all f32,
// channels first like PyTorch. Per batch item this is Y = A * X' with
//   A  [C_out, C_in*K]  = the weight seen as a matrix (row-major, contiguous),
//   X' [C_in*K, T_out]  = the im2col of the padded input, gathered on the fly:
//        X'[ci*K + k, t] = xpad[ci, t*stride + k*dilation].
// Each workgroup computes a BM x BN tile of Y (BM output channels by BN time steps) for one batch
// item, staging BK-deep slices of A and X' in workgroup memory; each invocation accumulates a
// TM x TN block in registers, reading the slices as vec4s (4 rows or 4 columns per load): the
// tiling of common/conv_tiles.wgsl, shared with conv_transpose1d.wgsl.
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

// #include conv_tiles

// For each reduction row kk of the current and the next stage (two slots): where its input row
// starts, (b * C_in + ci) * T_in, or NONE past the end; and its tap offset k * dilation.
// Splitting kk into (ci, k) once per row rather than once per element keeps integer division
// out of the tile loads.
var<workgroup> row_base: array<u32, 2u * BK>;
var<workgroup> row_off: array<u32, 2u * BK>;

fn fill_rows(slot: u32, k0: u32, b: u32, lid: u32) {
    if lid < BK {
        let kk = k0 + lid;
        var base = NONE;
        var off = 0u;
        if kk < p.c_in * p.kernel {
            base = (b * p.c_in + kk / p.kernel) * p.t_in;
            off = (kk % p.kernel) * p.dilation;
        }
        row_base[slot * BK + lid] = base;
        row_off[slot * BK + lid] = off;
    }
}

// The padded input at padded position j of the input row starting at `xrow`.
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

    // acc[r * TN4 + j] holds row tm*TM + r, columns tn*TN + 4j .. 4j+3 of the tile.
    var acc: array<vec4f, TM * TN4>;
    fill_rows(0u, 0u, b, lid);
    workgroupBarrier();
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        let slot = (k0 / BK) % 2u;
        // A tile: weight rows m0.., columns k0.. (contiguous along k).
        for (var e = lid; e < BM * BK; e += WG) {
            let mm = e / BK;
            let m = m0 + mm;
            let kk = k0 + e % BK;
            var v = 0.0;
            if m < p.c_out && kk < kdim {
                v = w[m * kdim + kk];
            }
            a_tile[(e % BK) * BM4 + mm / 4u][mm % 4u] = v;
        }
        // B tile: im2col of the padded input (contiguous along t when stride is 1).
        for (var e = lid; e < BK * BN; e += WG) {
            let r = e / BN;
            let nn = e % BN;
            let t = n0 + nn;
            let base = row_base[slot * BK + r];
            var v = 0.0;
            if base != NONE && t < p.t_out {
                v = x_padded(base, t * p.stride + row_off[slot * BK + r]);
            }
            b_tile[r * BN4 + nn / 4u][nn % 4u] = v;
        }
        workgroupBarrier();
        // The next stage's rows go to the other slot; they are read only after the barrier below.
        fill_rows(1u - slot, k0 + BK, b, lid);
        multiply_tiles(tm, tn, &acc);
        workgroupBarrier();
    }

    store_block(&acc, b, m0, tm, tn, n0, 1u, 0u);
}
