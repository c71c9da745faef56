// GroupNorm of an f32 [B, C, T] tensor, as torch.nn.GroupNorm computes it: the C channels fall
// into G groups of C/G consecutive channels; each (batch item, group) is normalised over its
// C/G * T values (biased variance, eps inside the sqrt), then scaled and shifted per channel:
// y = (x - mean) / sqrt(var + eps) * w[c] + b[c], optionally followed by GELU (erf form).
// HuBERT's first feature-extractor conv uses G = C (each channel over time), then GELU.
//
// One workgroup per (batch item, group); a group's values are contiguous. They are read three
// times (mean; centred sums; output) rather than held in registers, since a group can be long
// (T is 50 frames per second for HuBERT's later convs but 3,200 after the first). The variance
// is the corrected two-pass one of layernorm.wgsl: the second pass also sums the centred values,
// whose mean c is the rounding error of the first mean, and var = E[d^2] - c^2.
//
// Bindings: x, w, b, y. The grid may be 2-D when B * G > 65535.

struct Params {
    // B * G.
    rows: u32,
    // C / G * T: the values of one group.
    n: u32,
    // T: consecutive values per channel.
    t: u32,
    // G, and C / G.
    groups: u32,
    per_group: u32,
    eps: f32,
    gelu: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

var<workgroup> partial: array<vec2f, WG>;

// erf_approx and gelu_erf.
// #include erf

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

@compute @workgroup_size(WG)
fn groupnorm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    // Every invocation of a workgroup takes the same branch, so the barriers stay uniform.
    if row >= p.rows {
        return;
    }
    let base = row * p.n;
    let count = f32(p.n);
    var sum = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        sum += x[base + i];
    }
    let mean = workgroup_sum(lid, vec2f(sum, 0.0)).x / count;
    var acc = vec2f(0.0);
    for (var i = lid; i < p.n; i += WG) {
        let d = x[base + i] - mean;
        acc += vec2f(d, d * d);
    }
    let m = workgroup_sum(lid, acc) / count;
    let rstd = 1.0 / sqrt(max(m.y - m.x * m.x, 0.0) + p.eps);
    // row = b * G + g: group g holds channels g * C/G .. (g + 1) * C/G - 1.
    let channel0 = (row % p.groups) * p.per_group;
    for (var i = lid; i < p.n; i += WG) {
        let c = channel0 + i / p.t;
        var out = ((x[base + i] - mean) - m.x) * rstd * w[c] + b[c];
        if p.gelu != 0u {
            out = gelu_erf(out);
        }
        y[base + i] = out;
    }
}
