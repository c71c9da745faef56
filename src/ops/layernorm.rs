//! LayerNorm over the last dimension (`shaders/layernorm.wgsl`): the norms of prefill and of
//! the fine model; a workgroup per row, or in the CPU kernel set ([`choose`]) a thread per row
//! ([`super::cpu::layernorm_rows`]: no barriers, for CPU adapters). (A block's residual add
//! rides in the linear layer before the norm, and a decode step's norms in the GEMV after it:
//! [`super::matmul::norm_linear`].)

use super::cpu::layernorm_rows;
use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel, KernelPolicy};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

/// The largest workgroup (one workgroup per row), used for rows longer than 512.
const MAX_WG: usize = 256;

/// Row elements per invocation the kernel is built for: every count up to 8 exactly (Bark's
/// 768 and 1024 need 3 and 4), then coarser steps so few variants cover rows up to 8192.
const PER_CHOICES: [usize; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32];

/// The longest row the kernel normalises (each invocation keeps its share in registers).
pub const MAX_COLS: usize = MAX_WG * 32;

/// (workgroup size, elements per invocation) for rows of `h`: about four elements per
/// invocation, so short rows do not keep 256 invocations waiting at every barrier. Below 256
/// the size is a power of two from 32 and the share at most 4.
fn variant_for(h: usize) -> (usize, usize) {
    let wg = h.div_ceil(4).next_power_of_two().clamp(32, MAX_WG);
    let per = PER_CHOICES.iter().copied().find(|&p| p * wg >= h).expect("h <= MAX_COLS");
    (wg, per)
}

/// PyTorch's default epsilon, the one Bark uses.
pub const EPS: f32 = 1e-5;

uniform_struct! {
    struct Params {
        rows: u32,
        h: u32,
        eps: f32,
        has_bias: u32,
    }
}

/// Both kernels' bindings (shaders/common/layernorm_params.wgsl).
pub(crate) const CONTRACT: Contract = Contract {
    family: Family::LayerNorm,
    params: Some(Params::LAYOUT),
    binds: &[("x", Read), ("w", Read), ("b", Read), ("y", ReadWrite)],
};

/// Every LayerNorm kernel, one key per specialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerNormKernel {
    /// A workgroup of `wg` per row, `per` elements per invocation.
    Workgroup { wg: u32, per: u32 },
    /// The CPU set's `layernorm_rows` ([`super::cpu::layernorm_rows`]): a thread per row, no
    /// barriers.
    Rows,
}

/// Which kernel normalises rows of `h` under `policy`: the one selection table of the
/// LayerNorm.
pub fn choose(h: usize, policy: &KernelPolicy) -> LayerNormKernel {
    if policy.cpu_kernels {
        LayerNormKernel::Rows
    } else {
        let (wg, per) = variant_for(h);
        LayerNormKernel::Workgroup { wg: wg as u32, per: per as u32 }
    }
}

impl LayerNormKernel {
    /// Every key [`choose`] can return, found by asking it for every row length.
    pub fn all() -> Vec<LayerNormKernel> {
        let gpu = KernelPolicy { cpu_kernels: false, norm_in_gemv: false, subgroups: None };
        let mut out: Vec<LayerNormKernel> = (1..=MAX_COLS).map(|h| choose(h, &gpu)).collect();
        out.dedup();
        out.push(LayerNormKernel::Rows);
        out
    }

    /// The specialisation this key names.
    pub fn kernel(self) -> Kernel {
        debug_assert!(LayerNormKernel::all().contains(&self), "{self:?} is not enumerated");
        match self {
            LayerNormKernel::Rows => layernorm_rows::kernel(),
            LayerNormKernel::Workgroup { wg, per } => {
                Kernel::new("layernorm", "layernorm").contract(&CONTRACT).with_u32("WG", wg).with_u32("PER", per)
            }
        }
    }
}

/// Checks `x` (f32, last dimension H), `weight` and `bias` (f32 [H]); returns (rows, H).
fn check(g: &Graph, op: &'static str, x: Val, weight: Val, bias: Option<Val>) -> Result<(u32, u32)> {
    for v in [Some(x), Some(weight), bias].into_iter().flatten() {
        if g.dtype(v) != DType::F32 {
            return Err(Error::Dtype { op, message: format!("expected f32, got {:?}", g.dtype(v)) });
        }
    }
    let shape = g.shape(x);
    let h = match shape.last() {
        Some(&h) if h > 0 => h,
        _ => return Err(shape_err(op, format!("input {shape:?} has no last dimension to normalise"))),
    };
    if h > MAX_COLS {
        return Err(shape_err(op, format!("rows of {h} elements; at most {MAX_COLS} are supported")));
    }
    for (what, v) in [("weight", Some(weight)), ("bias", bias)] {
        if let Some(v) = v {
            if g.shape(v) != [h] {
                return Err(shape_err(op, format!("{what} {:?} for rows of {h}", g.shape(v))));
            }
        }
    }
    let n: usize = shape.iter().product();
    let rows = n / h;
    if u32::try_from(n).is_err() {
        return Err(shape_err(op, format!("{n} elements is more than a dispatch can index")));
    }
    Ok((rows as u32, h as u32))
}

/// `LayerNorm(x)` over the last dimension: `(x - mean) / sqrt(var + eps) * weight (+ bias)`,
/// with the biased variance, as `torch.nn.LayerNorm`. `x` is f32 `[..., H]`, H <= [`MAX_COLS`];
/// `weight` and `bias` are f32 `[H]` (Bark's causal models have no bias, the fine model does).
pub fn layer_norm(g: &mut Graph, x: Val, weight: Val, bias: Option<Val>, eps: f32) -> Result<Val> {
    let (rows, h) = check(g, "layer_norm", x, weight, bias)?;
    let shape = g.shape(x).to_vec();
    let y = g.tensor(&shape, DType::F32);
    let p = params(&Params { rows, h, eps, has_bias: bias.is_some().into() });
    // Without a bias the weight fills its binding, unread.
    let binds = [("x", x), ("w", weight), ("b", bias.unwrap_or(weight)), ("y", y)];
    let key = choose(h as usize, g.ctx().policy());
    let groups = match key {
        LayerNormKernel::Rows => layernorm_rows::grid(rows),
        LayerNormKernel::Workgroup { .. } => groups_1d(rows),
    };
    g.dispatch(key.kernel(), &p, &binds, groups);
    Ok(y)
}

/// Every specialisation this module dispatches, from [`LayerNormKernel::all`].
pub fn kernels() -> Vec<Kernel> {
    LayerNormKernel::all().into_iter().map(LayerNormKernel::kernel).collect()
}
