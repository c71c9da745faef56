//! Element-wise ops on f32 tensors (`shaders/elementwise.wgsl`).

use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

const WG: u32 = 256;

uniform_struct! {
    struct Params {
        n: u32,
        value: f32,
    }
}

const UNARY: Contract =
    Contract { family: Family::Elementwise, params: Some(Params::LAYOUT), binds: &[("x", Read), ("y", ReadWrite)] };
const ADD: Contract = Contract {
    family: Family::Elementwise,
    params: Some(Params::LAYOUT),
    binds: &[("x", Read), ("b", Read), ("y", ReadWrite)],
};
const FILL: Contract =
    Contract { family: Family::Elementwise, params: Some(Params::LAYOUT), binds: &[("out", ReadWrite)] };

fn kernel(entry: &'static str) -> Kernel {
    let contract = match entry {
        "add" => &ADD,
        "fill" => &FILL,
        _ => &UNARY,
    };
    Kernel::new("elementwise", entry).contract(contract)
}

fn f32_only(g: &Graph, op: &'static str, v: Val) -> Result<u32> {
    if g.dtype(v) != DType::F32 {
        return Err(Error::Dtype { op, message: format!("expected f32, got {:?}", g.dtype(v)) });
    }
    let n: usize = g.shape(v).iter().product();
    u32::try_from(n).map_err(|_| shape_err(op, format!("{n} elements is more than a dispatch can index")))
}

fn unary(g: &mut Graph, entry: &'static str, x: Val, value: f32) -> Result<Val> {
    let n = f32_only(g, entry, x)?;
    let shape = g.shape(x).to_vec();
    let y = g.tensor(&shape, DType::F32);
    g.dispatch(kernel(entry), &params(&Params { n, value }), &[("x", x), ("y", y)], groups_1d(n.div_ceil(WG)));
    Ok(y)
}

/// GELU in the exact erf form, as Bark's MLP uses it.
pub fn gelu(g: &mut Graph, x: Val) -> Result<Val> {
    unary(g, "gelu", x, 0.0)
}

/// erf itself (the approximation GELU uses), exposed so its accuracy can be tested.
pub fn erf(g: &mut Graph, x: Val) -> Result<Val> {
    unary(g, "erf", x, 0.0)
}

/// ELU with the given alpha (EnCodec uses 1.0).
pub fn elu(g: &mut Graph, x: Val, alpha: f32) -> Result<Val> {
    unary(g, "elu", x, alpha)
}

/// `a + b`, same shapes.
pub fn add(g: &mut Graph, a: Val, b: Val) -> Result<Val> {
    let n = f32_only(g, "add", a)?;
    f32_only(g, "add", b)?;
    if g.shape(a) != g.shape(b) {
        return Err(shape_err("add", format!("{:?} vs {:?}", g.shape(a), g.shape(b))));
    }
    let shape = g.shape(a).to_vec();
    let y = g.tensor(&shape, DType::F32);
    g.dispatch(
        kernel("add"),
        &params(&Params { n, value: 0.0 }),
        &[("x", a), ("b", b), ("y", y)],
        groups_1d(n.div_ceil(WG)),
    );
    Ok(y)
}

/// Sets every element of `x` to `value` (in place).
pub fn fill(g: &mut Graph, x: Val, value: f32) -> Result<()> {
    let n = f32_only(g, "fill", x)?;
    g.dispatch(kernel("fill"), &params(&Params { n, value }), &[("out", x)], groups_1d(n.div_ceil(WG)));
    Ok(())
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    ["gelu", "erf", "elu", "add", "fill"].into_iter().map(kernel).collect()
}
