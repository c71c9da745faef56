// LayerNorm over the last dimension of an f32 [rows, h] tensor, exactly as PyTorch computes it:
// y = (x - mean) / sqrt(var + eps) * w (+ b), with the biased variance.
//
// One workgroup per row. Each invocation holds PER elements of the row in registers
// (element lid + k * WG), so the row is read from memory once: the mean is one reduction, the
// variance a second one over the centred values (two passes, robust to rows with a large mean;
// see row_stats), and the output is written from the registers. The host picks
// WG and PER with WG * PER >= h.
//
// `layernorm_rows` (CPU adapters such as lavapipe): one invocation per row, no workgroup
// memory and no barriers. lavapipe runs a workgroup's invocations as SIMD lanes, 8 at a time,
// and a barrier switches between all those groups of lanes (20 barriers a row above); there a
// thread that reads its row three times from the caches is the cheaper way. Same two passes.
//
// Bindings: x, w, b (read when p.has_bias; else the host binds w there), y.
// The grid may be 2-D when rows > 65535 (row = wg.x + wg.y * num_workgroups.x; for
// layernorm_rows, workgroups of ROWS_WG rows).
// (A decode step's norms run inside the GEMV after them instead: common/gemv_dots.wgsl.)

struct Params {
    rows: u32,
    h: u32,
    eps: f32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

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

const ROWS_WG: u32 = 8u;
// Elements summed before their partial sum joins the row's: rounding then grows with
// SUM_BLOCK + h / SUM_BLOCK terms rather than h, close to the tree of `layernorm`.
const SUM_BLOCK: u32 = 32u;

// Sum over the row at `base` of (x, 0) (centred = false) or of (d, d * d) with
// d = x - mean (centred = true).
fn row_sums(base: u32, mean: f32, centred: bool) -> vec2f {
    var total = vec2f(0.0);
    for (var i0 = 0u; i0 < p.h; i0 += SUM_BLOCK) {
        var part = vec2f(0.0);
        for (var i = i0; i < min(i0 + SUM_BLOCK, p.h); i++) {
            let v = x[base + i];
            if centred {
                let d = v - mean;
                part += vec2f(d, d * d);
            } else {
                part.x += v;
            }
        }
        total += part;
    }
    return total;
}

@compute @workgroup_size(ROWS_WG)
fn layernorm_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let row = gid.x + gid.y * nwg.x * ROWS_WG;
    if row >= p.rows {
        return;
    }
    let base = row * p.h;
    let n = f32(p.h);
    // The corrected two-pass statistics of row_stats.
    let mean = row_sums(base, 0.0, false).x / n;
    let m = row_sums(base, mean, true) / n;
    let variance = max(m.y - m.x * m.x, 0.0);
    let inv = 1.0 / sqrt(variance + p.eps);
    for (var i = 0u; i < p.h; i++) {
        var out = ((x[base + i] - mean) - m.x) * inv * w[i];
        if p.has_bias != 0u {
            out += b[i];
        }
        y[base + i] = out;
    }
}
