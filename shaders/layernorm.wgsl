// LayerNorm over the last dimension of an f32 [rows, h] tensor, exactly as PyTorch computes it:
// y = (x - mean) / sqrt(var + eps) * w (+ b), with the biased variance.
//
// One workgroup per row. Each invocation holds PER elements of the row in registers
// (element lid + k * WG), so the row is read from memory once: the mean is one reduction, the
// variance a second one over the centred values (two passes, robust to rows with a large mean;
// see row_stats), and the output is written from the registers. The host picks
// WG and PER with WG * PER >= h.
//
// CPU adapters run cpu/layernorm_rows.wgsl instead (no barriers).
//
// Bindings: x, w, b (read when p.has_bias; else the host binds w there), y.
// The grid may be 2-D when rows > 65535 (row = wg.x + wg.y * num_workgroups.x).
// (A decode step's norms run inside the GEMV after them instead: common/gemv_dots.wgsl.)

// #include layernorm_params

// Invocations per workgroup, a power of two (the tree reduction halves it), and row elements
// per invocation: the host specialises both so that WG * PER >= h.
const WG: u32 = 256u;
const PER: u32 = 4u;

var<workgroup> partial: array<vec2f, WG>;

// Sum of `v` over the workgroup (a tree, so rounding grows with log2(WG), not WG).
fn workgroup_sum(lid: u32, v: vec2f) -> vec2f {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Nobody may overwrite partial[0] for the next sum before everyone has read it.
    workgroupBarrier();
    return total;
}

// Returns (mean, 1 / sqrt(var + eps), c) of the row held in `v` (slots past h hold zero);
// the centred value of an element is (v - mean) - c.
//
// Corrected two-pass: the f32 mean of a row far from zero (say 1e4 + N(0, 1)) is off by many
// of its own ulps, an error every centred value would carry. The second pass sums the centred
// values too: their mean c is that error, measured where it is small enough to be exact, and
// var = E[d^2] - c^2. v - mean is exact when v is near mean, so nothing is lost.
fn row_stats(lid: u32, v: ptr<function, array<f32, PER>>) -> vec3f {
    var sum = 0.0;
    for (var k = 0u; k < PER; k++) {
        sum += (*v)[k];
    }
    let n = f32(p.h);
    let mean = workgroup_sum(lid, vec2f(sum, 0.0)).x / n;
    var acc = vec2f(0.0);
    for (var k = 0u; k < PER; k++) {
        if lid + k * WG < p.h {
            let d = (*v)[k] - mean;
            acc += vec2f(d, d * d);
        }
    }
    let m = workgroup_sum(lid, acc) / n;
    let variance = max(m.y - m.x * m.x, 0.0);
    return vec3f(mean, 1.0 / sqrt(variance + p.eps), m.x);
}

@compute @workgroup_size(WG)
fn layernorm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if row >= p.rows {
        return;
    }
    let base = row * p.h;
    var v: array<f32, PER>;
    for (var k = 0u; k < PER; k++) {
        let i = lid + k * WG;
        if i < p.h {
            v[k] = x[base + i];
        }
    }
    let st = row_stats(lid, &v);
    for (var k = 0u; k < PER; k++) {
        let i = lid + k * WG;
        if i < p.h {
            var out = ((v[k] - st.x) - st.z) * st.y * w[i];
            if p.has_bias != 0u {
                out += b[i];
            }
            y[base + i] = out;
        }
    }
}
