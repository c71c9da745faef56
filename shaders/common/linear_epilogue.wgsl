// What the linear-layer kernels (matmul, gemv) share: the uniform, the
// bias/residual/output bindings and the epilogue. Each kernel binds x at 1 and W at 2 itself.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // u32 words per row of W: K for f32, ceil(K / 2) for f16.
    row_words: u32,
    has_bias: u32,
    has_residual: u32,
    gelu: u32,
    // Outputs per workgroup; only the subgroup GEMV reads it.
    rows_per_wg: u32,
    // The GEMVs' input LayerNorm (LN in common/gemv_dots.wgsl): whether it has a bias, and
    // its epsilon. The GEMM never reads them (the host runs layer_norm before it).
    ln_bias: u32,
    ln_eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Without a bias or residual the host binds x here and the flags keep them unread.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// #include erf

// The epilogue: bias, then GELU, then the residual add.
fn finish(acc: f32, m: u32, n: u32) -> f32 {
    var v = acc;
    if p.has_bias != 0u {
        v += bias[n];
    }
    if p.gelu != 0u {
        v = gelu_erf(v);
    }
    if p.has_residual != 0u {
        v += residual[m * p.n + n];
    }
    return v;
}
