//! 1-D convolution with EnCodec's causal reflect padding or zero padding, optionally grouped
//! (`shaders/conv1d.wgsl`).
//!
//! Layout (as PyTorch): x `[B, C_in, T]`, weight `[C_out, C_in / groups, K]`, bias `[C_out]`,
//! output `[B, C_out, T_out]`, all f32. Weight norm must already be folded into `weight`.

use super::params;
use crate::error::{shape_err, Error};
use crate::gpu::{Access::*, Contract, DType, Family, Kernel};
use crate::graph::{groups_1d, Graph, Val};
use crate::Result;

/// How a [`conv1d`] pads and strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dOpts {
    pub stride: usize,
    pub dilation: usize,
    /// EnCodec's causal padding (transformers' `EncodecConv1d` with `causal=True`,
    /// `pad_mode="reflect"`): reflect-pad `(K-1)*dilation + 1 - stride` samples on the left and
    /// the "extra" samples that complete the last stride on the right; the output has
    /// `ceil(T / stride)` steps. When false there is no padding at all (a "valid" convolution,
    /// `(T - (K-1)*dilation - 1) / stride + 1` steps), or only the zeros of `zero_pad`.
    pub causal_reflect: bool,
    /// Zeros before and after the input when `causal_reflect` is false: PyTorch's `padding=p`
    /// is `[p, p]`; HuBERT's positional conv (padding K/2, last frame dropped) is `[K/2, K/2 - 1]`.
    pub zero_pad: [usize; 2],
    /// PyTorch's `groups`: output channel co sees only the `C_in / groups` inputs of its group.
    pub groups: usize,
}

impl Default for Conv1dOpts {
    fn default() -> Self {
        Conv1dOpts { stride: 1, dilation: 1, causal_reflect: true, zero_pad: [0, 0], groups: 1 }
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
        dilation: u32,
        pad_left: u32,
        ext_len: u32,
        reflect: u32,
        m_tiles: u32,
        groups: u32,
    }
}

/// The bindings of `shaders/common/conv_tiles.wgsl`, shared with `conv_transpose1d`.
pub(crate) const TILE_BINDS: &[(&str, crate::gpu::Access)] =
    &[("x", Read), ("w", Read), ("bias", Read), ("y", ReadWrite)];
const CONTRACT: Contract = Contract { family: Family::Conv1d, params: Some(Params::LAYOUT), binds: TILE_BINDS };

/// A GEMM tile shape: invocations along channels and time, outputs per invocation, depth.
/// Shared with `conv_transpose1d`, whose shader has the same tile constants.
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    wg_m: u32,
    wg_n: u32,
    tm: u32,
    tn: u32,
    bk: u32,
}

impl Tile {
    pub(crate) fn bm(self) -> u32 {
        self.wg_m * self.tm
    }
    pub(crate) fn bn(self) -> u32 {
        self.wg_n * self.tn
    }
    /// The specialisation of `shaders/{shader}.wgsl` (entry point of the same name).
    pub(crate) fn kernel(self, shader: &'static str, contract: &'static Contract) -> Kernel {
        Kernel::new(shader, shader)
            .contract(contract)
            .with_u32("WG_M", self.wg_m)
            .with_u32("WG_N", self.wg_n)
            .with_u32("TM", self.tm)
            .with_u32("TN", self.tn)
            .with_u32("BK", self.bk)
    }
}

// Three tiles so that few output channels (EnCodec's last conv has one) do not waste most of a
// 64-row tile. Each stays within 256 invocations and 16 KiB of workgroup memory (the portable
// WebGPU limits): (BM + BN) * BK * 4 bytes plus a few row tables. TM and TN are multiples of 4
// (the shaders load vec4s).
pub(crate) const TILES: [(usize, Tile); 3] = [
    (64, Tile { wg_m: 16, wg_n: 16, tm: 4, tn: 4, bk: 16 }), // 64 x 64, 256 invocations
    (16, Tile { wg_m: 4, wg_n: 64, tm: 4, tn: 4, bk: 8 }),   // 16 x 256, 256 invocations
    (0, Tile { wg_m: 1, wg_n: 128, tm: 4, tn: 4, bk: 4 }),   // 4 x 512, 128 invocations
];

/// The tile for `c_out` output channels.
pub(crate) fn tile_for(c_out: usize) -> Tile {
    TILES.iter().find(|(min, _)| c_out >= *min).map(|(_, t)| *t).unwrap_or(TILES[2].1)
}

/// Checks that `v` is an f32 tensor of the given rank and returns its shape.
pub(crate) fn f32_shape(g: &Graph, op: &'static str, what: &str, v: Val, rank: usize) -> Result<Vec<usize>> {
    if g.dtype(v) != DType::F32 {
        return Err(Error::Dtype { op, message: format!("{what} must be f32, got {:?}", g.dtype(v)) });
    }
    let shape = g.shape(v).to_vec();
    if shape.len() != rank {
        return Err(shape_err(op, format!("{what} must have {rank} dimensions, got {shape:?}")));
    }
    if shape.contains(&0) {
        return Err(shape_err(op, format!("{what} has an empty dimension: {shape:?}")));
    }
    Ok(shape)
}

/// `n` as a u32 kernel parameter, or a shape error if a kernel could not index it.
pub(crate) fn u32_of(op: &'static str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| shape_err(op, format!("{what} = {n} is more than a kernel can index")))
}

/// The product of `dims` as a u32, or a shape error on overflow.
pub(crate) fn u32_prod(op: &'static str, what: &str, dims: &[usize]) -> Result<u32> {
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let n = n.ok_or_else(|| shape_err(op, format!("{what} {dims:?} overflow")))?;
    u32_of(op, what, n)
}

/// Output length and padding of a causal reflect-padded conv (transformers' `EncodecConv1d`):
/// returns `(t_out, pad_left, ext_len)` where `ext_len` is the length the input is zero-extended
/// to before reflecting (`_pad1d`), or an error when the stride exceeds the effective kernel.
fn causal_geometry(t: usize, effective: usize, stride: usize) -> Result<(usize, usize, usize)> {
    let pad_left = effective.checked_sub(stride).ok_or_else(|| {
        shape_err("conv1d", format!("stride {stride} is larger than the effective kernel size {effective}"))
    })?;
    // _get_extra_padding_for_conv1d: pad the right so the last window is full; with
    // padding_total = effective - stride this is ceil(T / stride) * stride - T.
    let t_out = t.div_ceil(stride);
    let extra = t_out * stride - t;
    let max_pad = pad_left.max(extra);
    let ext_len = if t <= max_pad { max_pad + 1 } else { t };
    Ok((t_out, pad_left, ext_len))
}

/// Records `y = conv1d(x, weight) + bias`; see [`Conv1dOpts`] for the padding. Returns the new
/// `[B, C_out, T_out]` value.
pub fn conv1d(g: &mut Graph, x: Val, weight: Val, bias: Val, opts: Conv1dOpts) -> Result<Val> {
    const OP: &str = "conv1d";
    let [b, c_in, t_in] = f32_shape(g, OP, "input", x, 3)?[..] else { unreachable!() };
    let [c_out, w_in, kernel] = f32_shape(g, OP, "weight", weight, 3)?[..] else { unreachable!() };
    let bias_shape = f32_shape(g, OP, "bias", bias, 1)?;
    let groups = opts.groups;
    if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
        return Err(shape_err(OP, format!("{groups} groups must divide {c_in} input and {c_out} output channels")));
    }
    if w_in * groups != c_in {
        return Err(shape_err(
            OP,
            format!("weight takes {w_in} input channels per group, the input has {c_in} in {groups} groups"),
        ));
    }
    if bias_shape[0] != c_out {
        return Err(shape_err(OP, format!("bias has {} entries for {c_out} output channels", bias_shape[0])));
    }
    if opts.stride == 0 || opts.dilation == 0 {
        return Err(Error::Invalid(format!(
            "conv1d: stride {} and dilation {} must be >= 1",
            opts.stride, opts.dilation
        )));
    }
    // The kernel's span with dilation; kept in u32 so every index the shader forms fits.
    let effective = u32_prod(OP, "(kernel - 1) * dilation", &[kernel - 1, opts.dilation])? as usize + 1;
    let (t_out, pad_left, ext_len) = if opts.causal_reflect {
        if opts.zero_pad != [0, 0] {
            return Err(Error::Invalid("conv1d: zero padding and causal reflect padding exclude each other".into()));
        }
        causal_geometry(t_in, effective, opts.stride)?
    } else {
        let [left, right] = opts.zero_pad;
        let padded = t_in.saturating_add(left).saturating_add(right);
        if padded < effective {
            return Err(shape_err(
                OP,
                format!("input length {t_in} (padded {padded}) is shorter than the effective kernel {effective}"),
            ));
        }
        ((padded - effective) / opts.stride + 1, left, t_in)
    };
    u32_of(OP, "left padding", pad_left)?;
    u32_prod(OP, "input elements", &[b, c_in, t_in])?;
    u32_prod(OP, "output elements", &[b, c_out, t_out])?;
    u32_prod(OP, "weight elements", &[c_out, w_in, kernel])?;
    // The largest padded index the kernel forms must fit too (the shader works in i32).
    let last = u32_prod(OP, "padded length", &[t_out - 1, opts.stride])? as usize + effective;
    u32_of(OP, "padded length", last.saturating_mul(2))?;

    let tile = tile_for(c_out / groups);
    let m_tiles = (c_out / groups).div_ceil(tile.bm() as usize);
    let n_tiles = u32_of(OP, "time tiles", t_out.div_ceil(tile.bn() as usize))?;
    let p = Params {
        c_in: c_in as u32,
        c_out: c_out as u32,
        t_in: t_in as u32,
        t_out: t_out as u32,
        kernel: kernel as u32,
        stride: u32_of(OP, "stride", opts.stride)?,
        dilation: u32_of(OP, "dilation", opts.dilation)?,
        pad_left: pad_left as u32,
        ext_len: u32_of(OP, "extended length", ext_len)?,
        reflect: opts.causal_reflect as u32,
        m_tiles: m_tiles as u32,
        groups: groups as u32,
    };
    let [gx, gy, _] = groups_1d(n_tiles);
    let gz = u32_prod(OP, "batch * channel tiles", &[b, m_tiles, groups])?;
    let y = g.tensor(&[b, c_out, t_out], DType::F32);
    g.dispatch(
        tile.kernel("conv1d", &CONTRACT),
        &params(&p),
        &[("x", x), ("w", weight), ("bias", bias), ("y", y)],
        [gx, gy, gz],
    );
    Ok(y)
}

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    TILES.iter().map(|(_, t)| t.kernel("conv1d", &CONTRACT)).collect()
}
