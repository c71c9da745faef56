// Swaps the last two dimensions of an f32 [B, R, C] tensor: y[b, c, r] = x[b, r, c]. Between the
// channels-first convolutions and LSTM and the time-major linear layers (HuBERT, the semantic
// quantizer). One invocation per output, so writes are contiguous and reads strided: the
// tensors moved are a few MB per recording, next to GEMMs of GFLOPs.
// The grid may be 2-D when there are more than 65535 * WG outputs.

struct Params {
    // B * R * C.
    n: u32,
    r: u32,
    c: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn transpose(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if i >= p.n {
        return;
    }
    // i indexes y = [B, C, R].
    let plane = p.r * p.c;
    let bi = i / plane;
    let rest = i % plane;
    let ci = rest / p.r;
    let ri = rest % p.r;
    y[i] = x[bi * plane + ri * p.c + ci];
}
