//! A multi-layer LSTM over a channels-first sequence, and EnCodec's `EncodecLSTM` (the LSTM plus
//! a skip connection) (`shaders/lstm.wgsl`, input projections through `conv1d`).
//!
//! Layout: x `[B, C, T]` f32 (channels first, as the EnCodec convolutions produce it); the
//! output of every layer is `[B, H, T]`. Weights as PyTorch's nn.LSTM stores them, gate order
//! i, f, g, o: `weight_ih_l{k}` `[4H, In]`, `weight_hh_l{k}` `[4H, H]`, `bias_ih_l{k}` and
//! `bias_hh_l{k}` `[4H]`. The initial h and c are zero.
//!
//! Per layer: one 1x1 convolution computes `W_ih x_t + b_ih` for every t at once (a GEMM), then
//! one dispatch per time step runs the recurrence (WGSL has no grid-wide barrier), all inside
//! the graph's single compute pass.

use super::conv1d::{conv1d, f32_shape, u32_of, u32_prod, Conv1dOpts};
use super::{elementwise, params};
use crate::error::shape_err;
use crate::gpu::{Access::*, Contract, DType, Family, Kernel};
use crate::graph::{Graph, Val};
use crate::Result;

const OP: &str = "lstm";
/// Hidden units per workgroup (the shader's UNITS).
const UNITS: usize = 4;

/// One layer's weights (`weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`).
#[derive(Clone, Copy, Debug)]
pub struct LstmLayer {
    pub w_ih: Val,
    pub w_hh: Val,
    pub b_ih: Val,
    pub b_hh: Val,
}

uniform_struct! {
    struct Params {
        hidden: u32,
        t_len: u32,
        t: u32,
        first: u32,
    }
}

/// Both entry points' bindings.
const STEP: Contract = Contract {
    family: Family::Lstm,
    params: Some(Params::LAYOUT),
    binds: &[
        ("gx", Read),
        ("w_hh", Read),
        ("b_hh", Read),
        ("h_prev", Read),
        ("h_next", ReadWrite),
        ("c", ReadWrite),
        ("y", ReadWrite),
    ],
};

/// The step kernel, with vec4 loads (`vec4`) or scalar ones.
fn kernel(vec4: bool) -> Kernel {
    Kernel::new("lstm", if vec4 { "lstm_step4" } else { "lstm_step" }).contract(&STEP)
}

/// Checks one layer's shapes against its input width and returns its hidden size.
fn layer_hidden(g: &Graph, layer: &LstmLayer, input: usize) -> Result<usize> {
    let [four_h, h] = f32_shape(g, OP, "weight_hh", layer.w_hh, 2)?[..] else { unreachable!() };
    if h.checked_mul(4) != Some(four_h) {
        return Err(shape_err(OP, format!("weight_hh must be [4H, H], got [{four_h}, {h}]")));
    }
    let w_ih = f32_shape(g, OP, "weight_ih", layer.w_ih, 2)?;
    if w_ih != [4 * h, input] {
        return Err(shape_err(OP, format!("weight_ih must be [{}, {input}], got {w_ih:?}", 4 * h)));
    }
    for (what, v) in [("bias_ih", layer.b_ih), ("bias_hh", layer.b_hh)] {
        let s = f32_shape(g, OP, what, v, 1)?;
        if s != [4 * h] {
            return Err(shape_err(OP, format!("{what} must be [{}], got {s:?}", 4 * h)));
        }
    }
    Ok(h)
}

/// Records one layer over the whole sequence; returns its outputs h_0..h_{T-1} as `[B, H, T]`.
fn lstm_layer(g: &mut Graph, x: Val, layer: &LstmLayer, hidden: usize) -> Result<Val> {
    let [b, input, t_len] = g.shape(x).to_vec()[..] else { unreachable!() };
    let unit_groups = u32_of(OP, "hidden unit groups", hidden.div_ceil(UNITS))?;
    let batch = u32_of(OP, "batch", b)?;
    // W_ih x_t + b_ih for all t: a 1x1 convolution of x with weight_ih seen as [4H, In, 1].
    let w_ih = g.view(layer.w_ih, &[4 * hidden, input, 1])?;
    let gx = conv1d(g, x, w_ih, layer.b_ih, Conv1dOpts { causal_reflect: false, ..Default::default() })?;
    // vec4 loads of W_hh rows and h need H to be a multiple of 4.
    let kernel = kernel(hidden.is_multiple_of(4));
    let h = [g.tensor(&[b, hidden], DType::F32), g.tensor(&[b, hidden], DType::F32)];
    let c = g.tensor(&[b, hidden], DType::F32);
    let y = g.tensor(&[b, hidden, t_len], DType::F32);
    for t in 0..t_len {
        let p = Params { hidden: hidden as u32, t_len: t_len as u32, t: t as u32, first: (t == 0) as u32 };
        let (h_prev, h_next) = (h[t % 2], h[(t + 1) % 2]);
        g.dispatch(
            kernel.clone(),
            &params(&p),
            &[
                ("gx", gx),
                ("w_hh", layer.w_hh),
                ("b_hh", layer.b_hh),
                ("h_prev", h_prev),
                ("h_next", h_next),
                ("c", c),
                ("y", y),
            ],
            [unit_groups, batch, 1],
        );
    }
    Ok(y)
}

/// Checks the input and every layer; returns each layer's hidden size.
fn check(g: &Graph, x: Val, layers: &[LstmLayer]) -> Result<Vec<usize>> {
    let [b, channels, t_len] = f32_shape(g, OP, "input", x, 3)?[..] else { unreachable!() };
    if layers.is_empty() {
        return Err(shape_err(OP, "at least one layer is needed"));
    }
    let mut hidden = Vec::with_capacity(layers.len());
    let mut input = channels;
    for layer in layers {
        input = layer_hidden(g, layer, input)?;
        u32_prod(OP, "gate elements", &[b, 4 * input, t_len])?;
        hidden.push(input);
    }
    Ok(hidden)
}

/// Records a stacked LSTM (layer k+1 reads layer k's outputs) over `x` `[B, C, T]`; returns the
/// last layer's hidden states as `[B, H, T]`.
pub fn lstm(g: &mut Graph, x: Val, layers: &[LstmLayer]) -> Result<Val> {
    let hidden = check(g, x, layers)?;
    let mut y = x;
    for (layer, &h) in layers.iter().zip(&hidden) {
        y = lstm_layer(g, y, layer, h)?;
    }
    Ok(y)
}

/// transformers' `EncodecLSTM`: the stacked LSTM over the time axis plus the input (skip), so
/// the hidden size must equal the channel count. `[B, C, T]` in and out.
pub fn encodec_lstm(g: &mut Graph, x: Val, layers: &[LstmLayer]) -> Result<Val> {
    let hidden = check(g, x, layers)?;
    let (channels, last) = (g.shape(x)[1], hidden[hidden.len() - 1]);
    if last != channels {
        return Err(shape_err(OP, format!("the skip needs hidden size {last} = channels {channels}")));
    }
    let y = lstm(g, x, layers)?;
    elementwise::add(g, y, x)
}

/// Every specialisation this module dispatches (the input projection is `conv1d`'s).
pub fn kernels() -> Vec<Kernel> {
    vec![kernel(false), kernel(true)]
}
