//! GroupNorm over `[B, C, T]` (`shaders/groupnorm.wgsl`), as `torch.nn.GroupNorm`: HuBERT's
//! feature extractor normalises each channel of its first conv over time (G = C), with the GELU
//! after it fused in. A workgroup per (batch item, group).

use super::conv1d::{f32_shape, u32_of, u32_prod};
use super::params;
use crate::error::shape_err;
use crate::gpu::{Access::*, Contract, Family, Kernel};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

const OP: &str = "group_norm";

uniform_struct! {
    struct Params {
        rows: u32,
        n: u32,
        t: u32,
        groups: u32,
        per_group: u32,
        eps: f32,
        gelu: u32,
        _pad: u32,
    }
}

const CONTRACT: Contract = Contract {
    family: Family::GroupNorm,
    params: Some(Params::LAYOUT),
    binds: &[("x", Read), ("w", Read), ("b", Read), ("y", ReadWrite)],
};

fn kernel() -> Kernel {
    Kernel::new("groupnorm", "groupnorm").contract(&CONTRACT)
}

/// `GroupNorm(groups)(x) * weight + bias` per channel, then GELU (erf form) when `gelu`; `x` f32
/// `[B, C, T]` with `groups` dividing C, `weight` and `bias` f32 `[C]`. Returns `[B, C, T]`.
pub fn group_norm(g: &mut Graph, x: Val, weight: Val, bias: Val, groups: usize, eps: f32, gelu: bool) -> Result<Val> {
    let [b, c, t] = f32_shape(g, OP, "input", x, 3)?[..] else { unreachable!() };
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(shape_err(OP, format!("{groups} groups do not divide {c} channels")));
    }
    for (what, v) in [("weight", weight), ("bias", bias)] {
        let s = f32_shape(g, OP, what, v, 1)?;
        if s != [c] {
            return Err(shape_err(OP, format!("{what} {s:?} for {c} channels")));
        }
    }
    u32_prod(OP, "input elements", &[b, c, t])?;
    let p = Params {
        rows: u32_prod(OP, "batch * groups", &[b, groups])?,
        n: u32_prod(OP, "group elements", &[c / groups, t])?,
        t: u32_of(OP, "length", t)?,
        groups: groups as u32,
        per_group: (c / groups) as u32,
        eps,
        gelu: gelu.into(),
        _pad: 0,
    };
    let y = g.tensor(&[b, c, t], crate::gpu::DType::F32);
    g.dispatch(kernel(), &params(&p), &[("x", x), ("w", weight), ("b", bias), ("y", y)], groups_1d(p.rows));
    Ok(y)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    vec![kernel()]
}
