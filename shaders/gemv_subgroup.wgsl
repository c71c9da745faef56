// GEMV for decode steps, reducing with subgroupAdd: the twin of gemv.wgsl (read that file's
// header; keep the two in step). Used only where the device offers SUBGROUP: a module that
// names subgroup builtins fails validation on devices without it, hence a file of its own.
// (No `enable subgroups;`: naga 30 rejects that directive and gates subgroups by feature.)
//
// Layout: each subgroup computes whole outputs on its own: its lanes stride over one row of W
// and subgroupAdd sums them, so there is no workgroup memory and no barrier. Work is handed
// out by subgroup_id, so the result does not depend on how the hardware groups invocations.
// A workgroup covers p.rows_per_wg rows (the host sets WG / the smallest subgroup size); its
// subgroups take rows sg, sg + num_subgroups, ...

// #include linear_epilogue

@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w1: array<u32>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<u32>>;

const W_F16: bool = false;
// Rows of x one pass handles (>= M, from 1, 2, 4, 8, 16); see gemv.wgsl.
const MT: u32 = 1u;
const MV: u32 = (MT + 3u) / 4u;
const WG: u32 = 128u;

// Sums each accumulator over the subgroup; lanes 0..3 write the four x rows of each vec4.
fn reduce_and_write(acc_in: array<vec4<f32>, MV>, lane: u32, row: u32) {
    var acc = acc_in;
    for (var c = 0u; c < MV; c++) {
        let s = subgroupAdd(acc[c]);
        let m = c * 4u + lane;
        if lane < 4u && m < p.m {
            y[m * p.n + row] = finish(s[lane], m, row);
        }
    }
}

@compute @workgroup_size(WG)
fn gemv_vec4(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    let first = (wid.x + wid.y * nwg.x) * p.rows_per_wg;
    let xq = p.k / 4u;
    // `row` is the same for the whole subgroup, so the loop and the break are subgroup-uniform.
    for (var r = sg; r < p.rows_per_wg; r += n_sg) {
        let row = first + r;
        if row >= p.n {
            break;
        }
        var acc: array<vec4<f32>, MV>;
        if W_F16 {
            // One vec4<u32> is 8 weights: k = 8j .. 8j + 7, matching x vec4s 2j and 2j + 1.
            let wq = p.row_words / 4u;
            for (var j = lane; j < wq; j += width) {
                let w = w4[row * wq + j];
                let lo = vec4(unpack2x16float(w.x), unpack2x16float(w.y));
                let hi = vec4(unpack2x16float(w.z), unpack2x16float(w.w));
                for (var m = 0u; m < MT; m++) {
                    let xi = min(m, p.m - 1u) * xq + 2u * j;
                    acc[m / 4u][m % 4u] += dot(lo, x4[xi]) + dot(hi, x4[xi + 1u]);
                }
            }
        } else {
            for (var j = lane; j < xq; j += width) {
                let w = bitcast<vec4<f32>>(w4[row * xq + j]);
                for (var m = 0u; m < MT; m++) {
                    acc[m / 4u][m % 4u] += dot(w, x4[min(m, p.m - 1u) * xq + j]);
                }
            }
        }
        reduce_and_write(acc, lane, row);
    }
}

@compute @workgroup_size(WG)
fn gemv_scalar(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(num_workgroups) nwg: vec3u,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    let first = (wid.x + wid.y * nwg.x) * p.rows_per_wg;
    for (var r = sg; r < p.rows_per_wg; r += n_sg) {
        let row = first + r;
        if row >= p.n {
            break;
        }
        var acc: array<vec4<f32>, MV>;
        if W_F16 {
            for (var j = lane; j < p.row_words; j += width) {
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
            for (var j = lane; j < p.k; j += width) {
                let w = bitcast<f32>(w1[row * p.k + j]);
                for (var m = 0u; m < MT; m++) {
                    acc[m / 4u][m % 4u] += w * x1[min(m, p.m - 1u) * p.k + j];
                }
            }
        }
        reduce_and_write(acc, lane, row);
    }
}
