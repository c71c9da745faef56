// Element-wise kernels over flat f32 arrays: GELU (exact, erf form), erf itself, ELU,
// addition and fill. One invocation per element; the grid may be 2-D when n > 65535 * WG.

struct Params {
    n: u32,
    // ELU's alpha, or the fill value.
    value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// `add` reads a second operand; `fill` writes binding 1 only.
@group(0) @binding(2) var<storage, read> b2: array<f32>;
@group(0) @binding(3) var<storage, read_write> y3: array<f32>;
@group(0) @binding(1) var<storage, read_write> out1: array<f32>;

const WG: u32 = 256u;

fn index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

// #include erf

@compute @workgroup_size(WG)
fn gelu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i < p.n {
        y[i] = gelu_erf(x[i]);
    }
}

@compute @workgroup_size(WG)
fn erf(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i < p.n {
        y[i] = erf_approx(x[i]);
    }
}

// ELU with alpha = p.value: x for x > 0, alpha * (exp(x) - 1) otherwise.
@compute @workgroup_size(WG)
fn elu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i < p.n {
        let v = x[i];
        y[i] = select(p.value * (exp(v) - 1.0), v, v > 0.0);
    }
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i < p.n {
        y3[i] = x[i] + b2[i];
    }
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if i < p.n {
        out1[i] = p.value;
    }
}
