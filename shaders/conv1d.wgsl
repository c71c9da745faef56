// 1-D convolution as an implicit GEMM, with EnCodec's causal reflect padding fused into the
// index math (no padded copy of the input is ever made).
//
// Layout: x [B, C_in, T_in], weight [C_out, C_in, K], bias [C_out], y [B, C_out, T_out], all f32,
// channels first like PyTorch. Per batch item this is Y = A * X' with
//   A  [C_out, C_in*K]  = the weight seen as a matrix (row-major, contiguous),
//   X' [C_in*K, T_out]  = the im2col of the padded input, gathered on the fly:
//        X'[ci*K + k, t] = xpad[ci, t*stride + k*dilation].
// With groups, output channel co reads input channels grp * C_in/G .. of its group
// grp = co / (C_out/G) only (the weight is [C_out, C_in/G, K]): each workgroup's tile lies
// inside one group, whose GEMM has C_in/G * K reduction rows.
// Each workgroup computes a BM x BN tile of Y (BM output channels by BN time steps) for one batch
// item, staging BK-deep slices of A and X' in workgroup memory; each invocation accumulates a
// TM x TN block in registers, reading the slices as vec4s (4 rows or 4 columns per load): the
// tiling and reduction loop of common/conv_tiles.wgsl, shared with conv_transpose1d.wgsl. This
// file supplies its hooks (Item, fill_row, a_at, b_at): the index math of A and X'.
//
// Padding (when p.reflect == 1): xpad[j] = xext[reflect(j - pad_left)] where xext is x
// zero-extended on the right to ext_len samples and reflect(i) mirrors i < 0 to -i and
// i >= ext_len to 2*(ext_len-1) - i. This is transformers' _pad1d: reflect on an input no
// longer than the pad first appends zeros, pads, then trims them off the end, and the right pad
// ("extra padding" that completes the last stride) reflects about the same extended signal.
// Without reflection (p.reflect == 0) the input is zero-padded: pad_left zeros on the left, and
// on the right as far as t_out reaches (zero when the conv is "valid").

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
    // Number of BM-row tiles over a group's C_out / groups channels (the z grid is
    // (batch * groups + group) * m_tiles + m_tile).
    m_tiles: u32,
    groups: u32,
}

// #include conv_tiles

// The batch item a workgroup computes (conv_tiles.wgsl's Item).
struct Item {
    b: u32,
    grp: u32,
}

// For each reduction row kk of the current and the next stage (two slots): where its input row
// starts, (b * C_in + ci) * T_in, or NONE past the end; and its tap offset k * dilation.
// Splitting kk into (ci, k) once per row rather than once per element keeps integer division
// out of the tile loads.
var<workgroup> row_base: array<u32, 2u * BK>;
var<workgroup> row_off: array<u32, 2u * BK>;

fn fill_row(item: Item, i: u32, kk: u32) {
    var base = NONE;
    var off = 0u;
    let cin_g = p.c_in / p.groups;
    if kk < cin_g * p.kernel {
        base = (item.b * p.c_in + item.grp * cin_g + kk / p.kernel) * p.t_in;
        off = (kk % p.kernel) * p.dilation;
    }
    row_base[i] = base;
    row_off[i] = off;
}

// A[m, kk]: the weight matrix, contiguous along kk (m is the output channel, inside the group).
fn a_at(i: u32, kk: u32, m: u32) -> f32 {
    let kdim = (p.c_in / p.groups) * p.kernel;
    if m < m_end && kk < kdim {
        return w[m * kdim + kk];
    }
    return 0.0;
}

// X'[kk, t] for the row kk whose data entry i holds: the im2col of the padded input (contiguous
// along t when stride is 1).
fn b_at(i: u32, t: u32) -> f32 {
    let base = row_base[i];
    if base != NONE && t < p.t_out {
        return x_padded(base, t * p.stride + row_off[i]);
    }
    return 0.0;
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
    let item = Item(wid.z / (p.m_tiles * p.groups), (wid.z / p.m_tiles) % p.groups);
    let cout_g = p.c_out / p.groups;
    let m0 = item.grp * cout_g + (wid.z % p.m_tiles) * BM;
    m_end = (item.grp + 1u) * cout_g;
    let n0 = (wid.x + wid.y * nwg.x) * BN;
    var acc = array<vec4f, TM * TN4>();
    accumulate(item, (p.c_in / p.groups) * p.kernel, m0, n0, lid, &acc);
    store_block(&acc, item.b, m0, n0, 1u, 0u, lid);
}
