//! `nn.Linear` on the GPU: `y = act(x · Wᵀ + bias) + residual` (`shaders/matmul.wgsl` for the
//! tiled GEMM, [`super::gemv`] for decode-sized M).
//!
//! x is f32 `[.., K]` (leading dimensions are the M rows), W is `[N, K]` in PyTorch's layout,
//! f32 or f16 (packed two per word), bias f32 `[N]`, residual f32 shaped like y. Accumulation is
//! always f32. [`linear`] picks the kernel: GEMV for M <= [`GEMV_MAX_M`] (a decode step of up to
//! 16 sequences), with subgroup reductions where the device has them, the tiled GEMM otherwise.

use bytemuck::{Pod, Zeroable};

use super::{gemv, params};
use crate::error::{shape_err, Error};
use crate::gpu::{DType, Kernel};
use crate::graph::{Graph, Val};
use crate::{Context, Result};

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
    /// GEMV (subgroup reduction if available) for M <= 16, tiled GEMM above.
    Auto,
    /// The tiled GEMM, any M.
    Gemm,
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

/// The kernel [`Variant::Auto`] uses for `m` rows on this device.
pub fn choose(ctx: &Context, m: usize) -> Variant {
    match (m <= GEMV_MAX_M, ctx.has_subgroups()) {
        (true, true) => Variant::GemvSubgroup,
        (true, false) => Variant::Gemv,
        (false, _) => Variant::Gemm,
    }
}

/// A checked problem, ready for a kernel.
pub(crate) struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub w_f16: bool,
    /// `[x, w, bias (or x), residual (or x), y]`: the kernels' bindings 1..=5.
    pub binds: [Val; 5],
    pub params: Params,
}

/// The uniform every matmul kernel reads (same layout in all three shaders).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub row_words: u32,
    pub has_bias: u32,
    pub has_residual: u32,
    pub gelu: u32,
    pub rows_per_wg: u32,
}

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
    let (prob, out_shape) = check(g, x, weight, bias, act, residual)?;
    let variant = if variant == Variant::Auto { choose(g.ctx(), prob.m) } else { variant };
    if variant != Variant::Gemm && prob.m > GEMV_MAX_M {
        return Err(shape_err("linear", format!("GEMV takes at most {GEMV_MAX_M} rows, got {}", prob.m)));
    }
    if variant == Variant::GemvSubgroup && !g.ctx().has_subgroups() {
        return Err(Error::Invalid("linear: the subgroup GEMV needs a device with SUBGROUP".into()));
    }
    let y = g.tensor(&out_shape, DType::F32);
    let mut prob = prob;
    prob.binds[4] = y;
    match variant {
        Variant::Gemm => gemm(g, &prob)?,
        Variant::Gemv => gemv::dispatch(g, &mut prob, false)?,
        _ => gemv::dispatch(g, &mut prob, true)?,
    }
    Ok(y)
}

fn f32_operand(g: &Graph, what: &str, v: Val) -> Result<()> {
    if g.dtype(v) != DType::F32 {
        return Err(Error::Dtype { op: "linear", message: format!("{what} must be f32, got {:?}", g.dtype(v)) });
    }
    Ok(())
}

/// Shapes, dtypes and index ranges, all checked on the host so no kernel reads out of bounds.
fn check(
    g: &Graph,
    x: Val,
    weight: Val,
    bias: Option<Val>,
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
    };
    // Absent operands are bound to x: the kernel's flags keep them unread. The last slot
    // becomes y once the caller has settled the variant.
    let binds = [x, weight, bias.unwrap_or(x), residual.unwrap_or(x), x];
    Ok((Problem { m, n, k, w_f16, binds, params }, out_shape))
}

fn gemm_kernel(w_f16: bool) -> Kernel {
    Kernel::new("matmul", "gemm").with("W_F16", w_f16)
}

fn gemm(g: &mut Graph, prob: &Problem) -> Result<()> {
    let (gx, gy) = (prob.n.div_ceil(GEMM_TILE), prob.m.div_ceil(GEMM_TILE));
    if gx > MAX_GROUPS || gy > MAX_GROUPS {
        return Err(shape_err("linear", format!("{}x{} output needs more than 65535 tiles a side", prob.m, prob.n)));
    }
    g.dispatch(gemm_kernel(prob.w_f16), &params(&prob.params), &prob.binds, [gx as u32, gy as u32, 1]);
    Ok(())
}

/// Every specialisation this module dispatches (the GEMV ones are in [`gemv::kernels`]).
pub fn kernels() -> Vec<Kernel> {
    vec![gemm_kernel(false), gemm_kernel(true)]
}
