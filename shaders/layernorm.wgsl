// LayerNorm over the last dimension of an f32 [rows, h] tensor, exactly as PyTorch computes it:
// y = (x - mean) / sqrt(var + eps) * w (+ b), with the biased variance.
//
// One workgroup per row. Each invocation holds PER elements of the row in registers
// (element lid + k * WG), so the row is read from memory once: the mean is one reduction, the
// variance a second one over the centred values (two passes, robust to rows with a large mean;
// see row_stats), and the output is written from the registers. The host picks
// WG and PER with WG * PER >= h.
//
// Four entry points, because the pipeline layout comes from what an entry point uses:
//   layernorm           x, w, y
//   layernorm_bias      x, w, b, y
//   add_layernorm       x, r, w, s, y        s = x + r is written, y = LN(s)
//   add_layernorm_bias  x, r, w, b, s, y
// The grid may be 2-D when rows > 65535 (row = wg.x + wg.y * num_workgroups.x).

struct Params {
    rows: u32,
    h: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// layernorm
@group(0) @binding(2) var<storage, read> w_2: array<f32>;
@group(0) @binding(3) var<storage, read_write> y_3: array<f32>;
// layernorm_bias
@group(0) @binding(3) var<storage, read> b_3: array<f32>;
@group(0) @binding(4) var<storage, read_write> y_4: array<f32>;
// add_layernorm
@group(0) @binding(2) var<storage, read> r_2: array<f32>;
@group(0) @binding(3) var<storage, read> w_3: array<f32>;
@group(0) @binding(4) var<storage, read_write> s_4: array<f32>;
@group(0) @binding(5) var<storage, read_write> y_5: array<f32>;
// add_layernorm_bias (r_2, w_3 as above)
@group(0) @binding(4) var<storage, read> b_4: array<f32>;
@group(0) @binding(5) var<storage, read_write> s_5: array<f32>;
@group(0) @binding(6) var<storage, read_write> y_6: array<f32>;

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

fn row_of(wid: vec3u, nwg: vec3u) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(WG)
fn layernorm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
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
            y_3[base + i] = ((v[k] - st.x) - st.z) * st.y * w_2[i];
        }
    }
}

@compute @workgroup_size(WG)
fn layernorm_bias(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
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
            y_4[base + i] = ((v[k] - st.x) - st.z) * st.y * w_2[i] + b_3[i];
        }
    }
}

@compute @workgroup_size(WG)
fn add_layernorm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.h;
    var v: array<f32, PER>;
    for (var k = 0u; k < PER; k++) {
        let i = lid + k * WG;
        if i < p.h {
            v[k] = x[base + i] + r_2[base + i];
            s_4[base + i] = v[k];
        }
    }
    let st = row_stats(lid, &v);
    for (var k = 0u; k < PER; k++) {
        let i = lid + k * WG;
        if i < p.h {
            y_5[base + i] = ((v[k] - st.x) - st.z) * st.y * w_3[i];
        }
    }
}

@compute @workgroup_size(WG)
fn add_layernorm_bias(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.h;
    var v: array<f32, PER>;
    for (var k = 0u; k < PER; k++) {
        let i = lid + k * WG;
        if i < p.h {
            v[k] = x[base + i] + r_2[base + i];
            s_5[base + i] = v[k];
        }
    }
    let st = row_stats(lid, &v);
    for (var k = 0u; k < PER; k++) {
        let i = lid + k * WG;
        if i < p.h {
            y_6[base + i] = ((v[k] - st.x) - st.z) * st.y * w_3[i] + b_4[i];
        }
    }
}
