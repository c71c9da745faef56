//! Transposed 1-D convolution with EnCodec's causal right trim (`shaders/conv_transpose1d.wgsl`).
//!
//! Layout (as PyTorch): x `[B, C_in, T]`, weight `[C_in, C_out, K]` (ConvTranspose1d's layout),
//! bias `[C_out]`, output `[B, C_out, T_out]`, all f32. Weight norm must already be folded.

use super::conv1d::{f32_shape, tile_for, u32_of, u32_prod, TILES, TILE_BINDS};
use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Contract, DType, Family, Kernel};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

const OP: &str = "conv_transpose1d";

/// How a [`conv_transpose1d`] strides and trims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose1dOpts {
    pub stride: usize,
    /// EnCodec's causal trim (transformers' `EncodecConvTranspose1d` with `causal=True`,
    /// `trim_right_ratio=1.0`): drop the last `K - stride` samples, leaving `T * stride`.
    /// When false the output is PyTorch's full `(T - 1) * stride + K` samples.
    pub causal_trim: bool,
}

impl Default for ConvTranspose1dOpts {
    fn default() -> Self {
        ConvTranspose1dOpts { stride: 1, causal_trim: true }
    }
}

uniform_struct! {
    struct Params {
        c_in: u32,
        c_out: u32,
        t_in: u32,
        t_out: u32,
        kernel: u32,
        stride: u32,
        taps: u32,
        m_tiles: u32,
    }
}

const CONTRACT: Contract =
    Contract { family: Family::ConvTranspose1d, params: Some(Params::LAYOUT), binds: TILE_BINDS };

/// Records `y = conv_transpose1d(x, weight) + bias`, trimmed as [`ConvTranspose1dOpts`] says.
/// Returns the new `[B, C_out, T_out]` value.
pub fn conv_transpose1d(g: &mut Graph, x: Val, weight: Val, bias: Val, opts: ConvTranspose1dOpts) -> Result<Val> {
    let [b, c_in, t_in] = f32_shape(g, OP, "input", x, 3)?[..] else { unreachable!() };
    let [w_in, c_out, kernel] = f32_shape(g, OP, "weight", weight, 3)?[..] else { unreachable!() };
    let bias_shape = f32_shape(g, OP, "bias", bias, 1)?;
    if w_in != c_in {
        return Err(shape_err(OP, format!("weight takes {w_in} input channels, the input has {c_in}")));
    }
    if bias_shape[0] != c_out {
        return Err(shape_err(OP, format!("bias has {} entries for {c_out} output channels", bias_shape[0])));
    }
    let stride = opts.stride;
    if stride == 0 {
        return Err(Error::Invalid("conv_transpose1d: stride must be >= 1".into()));
    }
    let full = u32_prod(OP, "(T - 1) * stride", &[t_in - 1, stride])? as usize + kernel;
    let t_out = if opts.causal_trim {
        // padding_total = K - stride, all of it trimmed from the right.
        if kernel < stride {
            return Err(shape_err(OP, format!("a causal trim needs kernel {kernel} >= stride {stride}")));
        }
        t_in * stride
    } else {
        full
    };
    let tile = tile_for(c_out);
    u32_prod(OP, "input elements", &[b, c_in, t_in])?;
    u32_prod(OP, "output elements", &[b, c_out, t_out])?;
    u32_prod(OP, "weight elements", &[c_in, c_out, kernel])?;
    // The shader forms (q + BN) * stride + r for the last tile: keep that in range too.
    u32_of(OP, "output length", t_out + (tile.bn() as usize + 1) * stride)?;

    let taps = kernel.div_ceil(stride);
    let q_len = t_out.div_ceil(stride);
    let m_tiles = c_out.div_ceil(tile.bm() as usize);
    let p = Params {
        c_in: c_in as u32,
        c_out: c_out as u32,
        t_in: t_in as u32,
        t_out: t_out as u32,
        kernel: kernel as u32,
        stride: stride as u32,
        taps: u32_prod(OP, "C_in * taps", &[c_in, taps])? / c_in as u32,
        m_tiles: m_tiles as u32,
    };
    let [gx, gy, _] = groups_1d(u32_of(OP, "time tiles", q_len.div_ceil(tile.bn() as usize))?);
    let gz = u32_prod(OP, "batch * stride * channel tiles", &[b, stride, m_tiles])?;
    let y = g.tensor(&[b, c_out, t_out], DType::F32);
    g.dispatch(
        tile.kernel(OP, &CONTRACT),
        &params(&p),
        &[("x", x), ("w", weight), ("bias", bias), ("y", y)],
        [gx, gy, gz],
    );
    Ok(y)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    TILES.iter().map(|(_, t)| t.kernel(OP, &CONTRACT)).collect()
}
