// The uniform and bindings of both LayerNorm kernels (layernorm.wgsl, cpu/layernorm_rows.wgsl;
// `Params` in src/ops/layernorm.rs).

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
