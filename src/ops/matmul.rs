//! `nn.Linear` on the GPU: `y = act(x · Wᵀ + bias) + residual` (`shaders/matmul.wgsl` for the
//! tiled GEMM, [`super::gemv`] for decode-sized M).
//!
//! x is f32 `[.., K]` (leading dimensions are the M rows), W is `[N, K]` in PyTorch's layout,
//! f32 or f16 (packed two per word), bias f32 `[N]`, residual f32 shaped like y. Accumulation is
//! always f32. [`linear`] picks the kernel: GEMV for M <= [`GEMV_MAX_M`] (a decode step of up to
//! 16 sequences), with subgroup reductions where the device has them, and the tiled GEMM above;
//! in the CPU kernel set ([`crate::gpu::KernelPolicy::cpu_kernels`]) the direct GEMM
//! ([`super::cpu::gemm_direct`]) for every M.
//! [`norm_linear`] puts a LayerNorm of x's rows in front (`linear(LN(x))`, how every Bark block
//! and head starts): the GEMV does it on the fly in the same dispatch, the GEMM after a
//! [`layer_norm`] pass.

use super::cpu::gemm_direct;
use super::layernorm::{self, layer_norm};
use super::{gemv, params};
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel, KernelPolicy};
use crate::graph::{Graph, Val};
use crate::Result;

/// What happens to `x · Wᵀ + bias` before the residual is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// GELU in the exact erf form (Bark's MLP).
    Gelu,
}

/// Which kernel computes the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// GEMV (subgroup reduction if available) for M <= 16, the tiled GEMM above; the direct
    /// GEMM for every M in the CPU kernel set, except that a [`norm_linear`] of M <= 16 rows
    /// keeps the GEMV where the norm rides in it ([`choose`]).
    Auto,
    /// The tiled GEMM (workgroup-memory tiles), any M.
    Gemm,
    /// The direct GEMM: each thread reads x and W straight from memory and keeps a block of
    /// up to 16 rows x 16 columns of y; no workgroup memory, no barriers. Any M; meant for CPU
    /// adapters, where a barrier switches between groups of SIMD lanes and the operands already
    /// sit in caches, so it beats both the tiled GEMM and the GEMVs (BENCHMARKS.md).
    GemmDirect,
    /// GEMV with a workgroup-memory reduction; needs M <= 16, no optional feature.
    Gemv,
    /// GEMV with subgroupAdd; needs M <= 16 and a device with SUBGROUP.
    GemvSubgroup,
}

/// The largest M the GEMV kernels take (their accumulators are sized at compile time).
pub const GEMV_MAX_M: usize = 16;

/// GEMM output tile edge (BM = BN in `shaders/matmul.wgsl`).
const GEMM_TILE: usize = 64;
const MAX_GROUPS: usize = 65_535;

/// A linear layer's weights, as models hold them.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    /// `[N, K]`, F32 or F16.
    pub weight: Val,
    /// `[N]`, F32.
    pub bias: Option<Val>,
}

impl Linear {
    /// `act(x · Wᵀ + bias) + residual`; see [`linear`].
    pub fn forward(&self, g: &mut Graph, x: Val, act: Epilogue, residual: Option<Val>) -> Result<Val> {
        linear(g, x, self.weight, self.bias, act, residual)
    }
}

/// A LayerNorm of x's rows (over K) before the product: `weight` and `bias` f32 `[K]`.
#[derive(Clone, Copy, Debug)]
pub struct InputNorm {
    pub weight: Val,
    pub bias: Option<Val>,
    pub eps: f32,
}

/// `y[.., N] = act(x[.., K] · Wᵀ + bias) + residual`, with the kernel chosen by [`choose`].
pub fn linear(
    g: &mut Graph,
    x: Val,
    weight: Val,
    bias: Option<Val>,
    act: Epilogue,
    residual: Option<Val>,
) -> Result<Val> {
    linear_with(g, x, weight, bias, act, residual, Variant::Auto)
}

/// `linear(LayerNorm(x))`: for M <= [`GEMV_MAX_M`] rows on a context that says so
/// ([`crate::gpu::KernelPolicy::norm_in_gemv`]) the GEMV computes the norm itself (one dispatch, no normed copy
/// of x), otherwise [`layer_norm`] runs first. Within f32 rounding of the two separate ops.
pub fn norm_linear(
    g: &mut Graph,
    x: Val,
    norm: InputNorm,
    layer: Linear,
    act: Epilogue,
    residual: Option<Val>,
) -> Result<Val> {
    norm_linear_with(g, x, norm, layer, act, residual, Variant::Auto)
}

/// [`norm_linear`] with the kernel chosen by the caller: the GEMVs always normalise inside,
/// the GEMM after a [`layer_norm`] pass; `Auto` as [`norm_linear`].
pub fn norm_linear_with(
    g: &mut Graph,
    x: Val,
    norm: InputNorm,
    layer: Linear,
    act: Epilogue,
    residual: Option<Val>,
    variant: Variant,
) -> Result<Val> {
    record(g, x, Some(norm), layer, act, residual, variant)
}

/// Every linear kernel, one key per specialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearKernel {
    /// The tiled GEMM (`shaders/matmul.wgsl`).
    Gemm { w_f16: bool },
    /// The direct GEMM of the CPU set ([`super::cpu::gemm_direct`]): blocks of `rows` rows of y,
    /// 16-byte loads (`vec4`), the x loads shared between lanes (`shared_x`).
    GemmDirect { vec4: bool, w_f16: bool, rows: u32, shared_x: bool },
    /// A GEMV ([`super::gemv`]): subgroup or workgroup reduction, `m_tile` accumulator rows,
    /// the input's LayerNorm inside (`norm`).
    Gemv { subgroup: bool, vec4: bool, w_f16: bool, m_tile: u32, norm: bool },
}

/// What [`choose`] decides for one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearChoice {
    pub kernel: LinearKernel,
    /// A [`layer_norm`] pass makes a normed copy of x first (a norm the kernel does not do).
    pub norm_pass: bool,
}

/// The shape of one product: `m` rows of x, `n` outputs, `k` inputs, the weight's dtype, and
/// whether a LayerNorm of x comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearProblem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub w_f16: bool,
    pub norm: bool,
}

/// Which kernel computes a product under `policy`: the one selection table of the linear
/// layers. `Variant::Auto`: GEMV for m <= [`GEMV_MAX_M`] (subgroup reduction where the device
/// has subgroups) and the tiled GEMM above; in the CPU set the direct GEMM for every m, except
/// that a normed GEMV-sized product keeps the GEMV where the norm rides in it. Another variant
/// is the caller's pick. A norm goes inside a GEMV the caller asked for, or one Auto picks
/// where the policy says so; otherwise a layer_norm pass runs first.
pub fn choose(p: &LinearProblem, variant: Variant, policy: &KernelPolicy) -> Result<LinearChoice> {
    let gemv_sized = p.m <= GEMV_MAX_M;
    let norm_inside = variant != Variant::Auto || policy.norm_in_gemv;
    let variant = match variant {
        Variant::Auto if policy.cpu_kernels && !(gemv_sized && p.norm && policy.norm_in_gemv) => Variant::GemmDirect,
        Variant::Auto if !gemv_sized => Variant::Gemm,
        Variant::Auto if policy.has_subgroups() => Variant::GemvSubgroup,
        Variant::Auto => Variant::Gemv,
        v => v,
    };
    // 16-byte loads need every row of x and W to start on 16 bytes.
    let vec4 = if p.w_f16 { p.k.is_multiple_of(8) } else { p.k.is_multiple_of(4) };
    let w_f16 = p.w_f16;
    let kernel = match variant {
        Variant::Gemm => LinearKernel::Gemm { w_f16 },
        Variant::GemmDirect => {
            let rows = gemm_direct::block_rows(p.m);
            LinearKernel::GemmDirect { vec4, w_f16, rows, shared_x: vec4 && gemm_direct::shares_x_loads(policy) }
        }
        Variant::Gemv | Variant::GemvSubgroup => {
            if !gemv_sized {
                return Err(shape_err("linear", format!("GEMV takes at most {GEMV_MAX_M} rows, got {}", p.m)));
            }
            let subgroup = variant == Variant::GemvSubgroup;
            if subgroup && !policy.has_subgroups() {
                return Err(Error::Invalid("linear: the subgroup GEMV needs a device with SUBGROUP".into()));
            }
            let norm = p.norm && norm_inside;
            LinearKernel::Gemv { subgroup, vec4, w_f16, m_tile: gemv::m_tile(p.m), norm }
        }
        Variant::Auto => unreachable!("resolved above"),
    };
    let norm_pass = p.norm && !matches!(kernel, LinearKernel::Gemv { norm: true, .. });
    Ok(LinearChoice { kernel, norm_pass })
}

impl LinearKernel {
    /// Every key [`choose`] can return.
    pub fn all() -> Vec<LinearKernel> {
        let mut out = Vec::new();
        for w_f16 in [false, true] {
            out.push(LinearKernel::Gemm { w_f16 });
            for vec4 in [false, true] {
                for rows in gemm_direct::BLOCK_ROWS {
                    // Only 16-byte loads are shared.
                    let shared: &[bool] = if vec4 { &[false, true] } else { &[false] };
                    for &shared_x in shared {
                        out.push(LinearKernel::GemmDirect { vec4, w_f16, rows, shared_x });
                    }
                }
                for subgroup in [false, true] {
                    for m_tile in gemv::M_TILES {
                        for norm in [false, true] {
                            out.push(LinearKernel::Gemv { subgroup, vec4, w_f16, m_tile, norm });
                        }
                    }
                }
            }
        }
        out
    }

    /// The specialisation this key names.
    pub fn kernel(self) -> Kernel {
        debug_assert!(LinearKernel::all().contains(&self), "{self:?} is not enumerated by LinearKernel::all");
        match self {
            LinearKernel::Gemm { w_f16 } => Kernel::new("matmul", "gemm").contract(&GEMM).with_bool("W_F16", w_f16),
            LinearKernel::GemmDirect { vec4, w_f16, rows, shared_x } => {
                gemm_direct::kernel(vec4, w_f16, rows, shared_x)
            }
            LinearKernel::Gemv { subgroup, vec4, w_f16, m_tile, norm } => {
                gemv::kernel(subgroup, vec4, w_f16, m_tile, norm)
            }
        }
    }

    /// The [`Variant`] this kernel implements.
    pub fn variant(self) -> Variant {
        match self {
            LinearKernel::Gemm { .. } => Variant::Gemm,
            LinearKernel::GemmDirect { .. } => Variant::GemmDirect,
            LinearKernel::Gemv { subgroup: false, .. } => Variant::Gemv,
            LinearKernel::Gemv { subgroup: true, .. } => Variant::GemvSubgroup,
        }
    }
}

/// A product's operands. Absent ones are x: the kernel's flags (`has_bias`, `has_residual`,
/// `LN`) keep them unread.
#[derive(Clone, Copy)]
pub(crate) struct Operands {
    pub x: Val,
    pub w: Val,
    pub bias: Val,
    pub residual: Val,
    pub y: Val,
    pub ln_w: Val,
    pub ln_b: Val,
}

impl Operands {
    /// The GEMMs' bindings, by name.
    pub fn gemm(&self) -> [(&'static str, Val); 5] {
        [("x", self.x), ("w", self.w), ("bias", self.bias), ("residual", self.residual), ("y", self.y)]
    }
    /// The GEMVs' bindings: the GEMMs' and the input norm's weight and bias.
    pub fn gemv(&self) -> [(&'static str, Val); 7] {
        let [x, w, bias, residual, y] = self.gemm();
        [x, w, bias, residual, y, ("ln_w", self.ln_w), ("ln_b", self.ln_b)]
    }
}

/// A checked problem, ready for a kernel.
pub(crate) struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub w_f16: bool,
    pub ops: Operands,
    pub params: Params,
}

uniform_struct! {
    /// The uniform every matmul kernel reads (same layout in all three shaders).
    pub(crate) struct Params {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub row_words: u32,
        pub has_bias: u32,
        pub has_residual: u32,
        pub gelu: u32,
        pub rows_per_wg: u32,
        pub ln_bias: u32,
        pub ln_eps: f32,
        pub _pad0: u32,
        pub _pad1: u32,
    }
}

/// The GEMMs' bindings ([`Operands::gemm`]: shaders/common/linear_epilogue.wgsl and x, W).
pub(crate) const GEMM: Contract = Contract {
    family: Family::Linear,
    params: Some(Params::LAYOUT),
    binds: &[("x", Read), ("w", Read), ("bias", Read), ("residual", Read), ("y", ReadWrite)],
};
/// The GEMVs' bindings: the GEMMs' and the input norm's weight and bias.
pub(crate) const GEMV: Contract = Contract {
    family: Family::Linear,
    params: Some(Params::LAYOUT),
    binds: &[
        ("x", Read),
        ("w", Read),
        ("bias", Read),
        ("residual", Read),
        ("y", ReadWrite),
        ("ln_w", Read),
        ("ln_b", Read),
    ],
};

/// [`linear`] with the kernel chosen by the caller (tests and benches compare them).
pub fn linear_with(
    g: &mut Graph,
    x: Val,
    weight: Val,
    bias: Option<Val>,
    act: Epilogue,
    residual: Option<Val>,
    variant: Variant,
) -> Result<Val> {
    record(g, x, None, Linear { weight, bias }, act, residual, variant)
}

fn record(
    g: &mut Graph,
    x: Val,
    norm: Option<InputNorm>,
    layer: Linear,
    act: Epilogue,
    residual: Option<Val>,
    variant: Variant,
) -> Result<Val> {
    let (mut prob, out_shape) = check(g, x, layer, act, residual)?;
    let problem = LinearProblem { m: prob.m, n: prob.n, k: prob.k, w_f16: prob.w_f16, norm: norm.is_some() };
    let choice = choose(&problem, variant, g.ctx().policy())?;
    if let Some(norm) = norm {
        if choice.norm_pass {
            // A GEMM reads each row of x for many rows of W, so a normed copy costs one
            // cheap pass; so does a GEMV on a context that prefers the pass (CPU adapters).
            prob.ops.x = layer_norm(g, x, norm.weight, norm.bias, norm.eps)?;
        } else {
            check_norm(g, &norm, prob.k)?;
            prob.ops.ln_w = norm.weight;
            prob.ops.ln_b = norm.bias.unwrap_or(x);
            prob.params.ln_bias = norm.bias.is_some().into();
            prob.params.ln_eps = norm.eps;
        }
    }
    let y = g.tensor(&out_shape, DType::F32);
    prob.ops.y = y;
    match choice.kernel {
        LinearKernel::Gemm { .. } => gemm(g, &prob, choice.kernel)?,
        LinearKernel::GemmDirect { rows, .. } => gemm_direct::dispatch(g, &prob, choice.kernel, rows)?,
        LinearKernel::Gemv { subgroup, .. } => gemv::dispatch(g, &mut prob, choice.kernel, subgroup)?,
    }
    Ok(y)
}

fn f32_operand(g: &Graph, what: &str, v: Val) -> Result<()> {
    if g.dtype(v) != DType::F32 {
        return Err(Error::Dtype { op: "linear", message: format!("{what} must be f32, got {:?}", g.dtype(v)) });
    }
    Ok(())
}

/// The GEMV's input norm: f32 `[K]` weight and bias, K no longer than `layer_norm` takes (so
/// both paths accept the same rows).
fn check_norm(g: &Graph, norm: &InputNorm, k: usize) -> Result<()> {
    for (what, v) in [("norm weight", Some(norm.weight)), ("norm bias", norm.bias)] {
        if let Some(v) = v {
            f32_operand(g, what, v)?;
            if g.shape(v) != [k] {
                return Err(shape_err("norm_linear", format!("{what} {:?} for rows of {k}", g.shape(v))));
            }
        }
    }
    if k > layernorm::MAX_COLS {
        return Err(shape_err("norm_linear", format!("rows of {k}; at most {} are normalised", layernorm::MAX_COLS)));
    }
    Ok(())
}

/// Shapes, dtypes and index ranges, all checked on the host so no kernel reads out of bounds.
fn check(
    g: &Graph,
    x: Val,
    Linear { weight, bias }: Linear,
    act: Epilogue,
    residual: Option<Val>,
) -> Result<(Problem, Vec<usize>)> {
    f32_operand(g, "x", x)?;
    let w_f16 = match g.dtype(weight) {
        DType::F32 => false,
        DType::F16 => true,
        d => return Err(Error::Dtype { op: "linear", message: format!("weight must be f32 or f16, got {d:?}") }),
    };
    let xs = g.shape(x).to_vec();
    let ws = g.shape(weight).to_vec();
    let (Some(&k), [n, kw]) = (xs.last(), ws.as_slice()) else {
        return Err(shape_err("linear", format!("need x [.., K] and weight [N, K], got {xs:?} and {ws:?}")));
    };
    let (n, m) = (*n, xs[..xs.len() - 1].iter().product::<usize>());
    if *kw != k {
        return Err(shape_err("linear", format!("x {xs:?} and weight {ws:?} disagree on K")));
    }
    if m == 0 || n == 0 || k == 0 {
        return Err(shape_err("linear", format!("empty product: x {xs:?}, weight {ws:?}")));
    }
    let mut out_shape = xs.clone();
    *out_shape.last_mut().unwrap() = n;
    if let Some(b) = bias {
        f32_operand(g, "bias", b)?;
        if g.shape(b) != [n] {
            return Err(shape_err("linear", format!("bias {:?} should be [{n}]", g.shape(b))));
        }
    }
    if let Some(r) = residual {
        f32_operand(g, "residual", r)?;
        let rs = g.shape(r);
        if rs.last() != Some(&n) || rs.iter().product::<usize>() != m * n {
            return Err(shape_err("linear", format!("residual {rs:?} should be shaped like the output {out_shape:?}")));
        }
    }
    let row_words = g.dtype(weight).row_words(k);
    // The shaders index with u32, and each binding must fit the device's limit.
    let max_binding = g.ctx().max_binding_bytes();
    for (what, elems) in [("x", m * k), ("weight", n * row_words), ("output", m * n)] {
        if u32::try_from(elems).is_err() || elems as u64 * 4 > max_binding {
            return Err(shape_err(
                "linear",
                format!("{what} of {elems} words is over the device's binding limit of {max_binding} bytes"),
            ));
        }
    }
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        row_words: row_words as u32,
        has_bias: bias.is_some().into(),
        has_residual: residual.is_some().into(),
        gelu: (act == Epilogue::Gelu).into(),
        rows_per_wg: 0,
        ln_bias: 0,
        ln_eps: 0.0,
        _pad0: 0,
        _pad1: 0,
    };
    // Absent operands are x (see Operands); y is set once the caller has settled the variant,
    // the norm's once there is one.
    let (bias, residual) = (bias.unwrap_or(x), residual.unwrap_or(x));
    let ops = Operands { x, w: weight, bias, residual, y: x, ln_w: x, ln_b: x };
    Ok((Problem { m, n, k, w_f16, ops, params }, out_shape))
}

/// The workgroup grid for `rows` x `cols` blocks of y, within the per-dimension limit.
pub(crate) fn grid(prob: &Problem, rows: usize, cols: usize) -> Result<[u32; 3]> {
    let (gx, gy) = (prob.n.div_ceil(cols), prob.m.div_ceil(rows));
    if gx > MAX_GROUPS || gy > MAX_GROUPS {
        return Err(shape_err(
            "linear",
            format!("{}x{} output needs more than 65535 workgroups a side", prob.m, prob.n),
        ));
    }
    Ok([gx as u32, gy as u32, 1])
}

fn gemm(g: &mut Graph, prob: &Problem, kernel: LinearKernel) -> Result<()> {
    let groups = grid(prob, GEMM_TILE, GEMM_TILE)?;
    g.dispatch(kernel.kernel(), &params(&prob.params), &prob.ops.gemm(), groups);
    Ok(())
}

/// Every specialisation the linear layers dispatch (the tiled GEMM's, the GEMVs' and the
/// direct GEMM's), from [`LinearKernel::all`].
pub fn kernels() -> Vec<Kernel> {
    LinearKernel::all().into_iter().map(LinearKernel::kernel).collect()
}
