//! Swapping the last two dimensions (`shaders/transpose.wgsl`): channels-first `[B, C, T]`
//! (convolutions, the LSTM) to time-major `[B, T, C]` (linear layers, norms, attention) and back.

use super::conv1d::{f32_shape, u32_prod};
use super::params;
use crate::gpu::{Access::*, Contract, DType, Family, Kernel};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

const WG: u32 = 256;

uniform_struct! {
    struct Params {
        n: u32,
        r: u32,
        c: u32,
        _pad: u32,
    }
}

const CONTRACT: Contract =
    Contract { family: Family::Transpose, params: Some(Params::LAYOUT), binds: &[("x", Read), ("y", ReadWrite)] };

fn kernel() -> Kernel {
    Kernel::new("transpose", "transpose").contract(&CONTRACT)
}

/// `x` f32 `[B, R, C]` -> `[B, C, R]` (`x.transpose(1, 2)`, made contiguous).
pub fn transpose(g: &mut Graph, x: Val) -> Result<Val> {
    let [b, r, c] = f32_shape(g, "transpose", "input", x, 3)?[..] else { unreachable!() };
    let n = u32_prod("transpose", "elements", &[b, r, c])?;
    let y = g.tensor(&[b, c, r], DType::F32);
    let p = Params { n, r: r as u32, c: c as u32, _pad: 0 };
    g.dispatch(kernel(), &params(&p), &[("x", x), ("y", y)], groups_1d(n.div_ceil(WG)));
    Ok(y)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    vec![kernel()]
}
