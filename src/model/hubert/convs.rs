//! HuBERT's convolutional feature extractor: 7 convs without padding, GroupNorm over time per
//! channel + GELU after the first, GELU after the others.
//!
//! The first convs' outputs are the model's largest tensors (base: 512 channels at 3,200 frames
//! per second, 393 MB for a minute), more than a storage binding holds on WebGPU or lavapipe
//! (128 MiB). Such an output is kept as channel blocks that each fit: the GroupNorm is per
//! channel, so each block normalises alone, and the next conv sums its blocks' contributions
//! (`conv(x) = sum_j conv_j(x_j)` over input-channel blocks j; f32 sums in another order).

use super::Affine;
use crate::error::shape_err;
use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Val};
use crate::ops::conv1d::{conv1d, Conv1dOpts};
use crate::ops::elementwise::{add, gelu};
use crate::ops::groupnorm::group_norm;
use crate::weights::Weights;
use crate::{Error, Result};

/// One conv: its weights on the GPU, and on the host to cut blocks from.
struct Conv {
    gpu: Affine,
    w: Vec<f32>,
    b: Vec<f32>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
}

pub(super) struct ConvStack {
    convs: Vec<Conv>,
    norm: Affine,
    norm_host: (Vec<f32>, Vec<f32>),
}

impl ConvStack {
    /// `{p}feature_extractor.conv_layers.{i}.conv.weight` (and `.bias` when `bias`), and the
    /// first layer's GroupNorm (`layer_norm.weight` / `.bias`).
    pub(super) fn load(ctx: &Context, w: &Weights, p: &str, cfg: &super::HubertConfig) -> Result<ConvStack> {
        let mut convs = Vec::with_capacity(cfg.conv_dim.len());
        let mut c_in = 1;
        let layers = cfg.conv_dim.iter().zip(&cfg.conv_kernel).zip(&cfg.conv_stride);
        for (i, ((&c_out, &kernel), &stride)) in layers.enumerate() {
            let name = format!("{p}feature_extractor.conv_layers.{i}.conv");
            w.expect(&format!("{name}.weight"), &[c_out, c_in, kernel])?;
            let wt = w.to_f32(&format!("{name}.weight"))?;
            let b = if cfg.conv_bias {
                w.expect(&format!("{name}.bias"), &[c_out])?;
                w.to_f32(&format!("{name}.bias"))?
            } else {
                vec![0.0; c_out]
            };
            let gpu = Affine {
                w: Tensor::from_f32(ctx, &wt, &[c_out, c_in, kernel], DType::F32)?,
                b: Tensor::from_f32(ctx, &b, &[c_out], DType::F32)?,
            };
            convs.push(Conv { gpu, w: wt, b, c_in, c_out, kernel, stride });
            c_in = c_out;
        }
        let c0 = cfg.conv_dim[0];
        let name = format!("{p}feature_extractor.conv_layers.0.layer_norm");
        let (nw, nb) = (format!("{name}.weight"), format!("{name}.bias"));
        w.expect(&nw, &[c0])?;
        w.expect(&nb, &[c0])?;
        let norm_host = (w.to_f32(&nw)?, w.to_f32(&nb)?);
        let norm = Affine {
            w: Tensor::from_f32(ctx, &norm_host.0, &[c0], DType::F32)?,
            b: Tensor::from_f32(ctx, &norm_host.1, &[c0], DType::F32)?,
        };
        Ok(ConvStack { convs, norm, norm_host })
    }

    /// Whether `samples` fit the binding limit `max` bytes: a one-channel block of every conv
    /// output but the last, which must fit whole (it is transposed next).
    pub(super) fn fits(&self, samples: usize, max: u64) -> bool {
        let mut t = samples as u64;
        for (i, c) in self.convs.iter().enumerate() {
            t = t.saturating_sub(c.kernel as u64) / c.stride as u64 + 1;
            let channels = if i + 1 == self.convs.len() { c.c_out as u64 } else { 1 };
            if t * channels * 4 > max {
                return false;
            }
        }
        true
    }

    /// Records the stack on `x [1, 1, N]`; returns `[1, C, T]`.
    pub(super) fn record(&self, g: &mut Graph, x: Val) -> Result<Val> {
        let max = g.ctx().max_binding_bytes();
        let mut blocks = vec![x];
        let mut t = g.shape(x)[2];
        for (i, c) in self.convs.iter().enumerate() {
            t = (t - c.kernel) / c.stride + 1;
            let last = i + 1 == self.convs.len();
            let parts = (1..=c.c_out)
                .filter(|p| c.c_out.is_multiple_of(*p) && (!last || *p == 1))
                .find(|p| (c.c_out / p * t * 4) as u64 <= max)
                .ok_or_else(|| shape_err("hubert", format!("conv {i}'s output of {t} frames fits no binding")))?;
            let (cb_in, cb_out) = (c.c_in / blocks.len(), c.c_out / parts);
            let mut next = Vec::with_capacity(parts);
            for o in 0..parts {
                let mut acc: Option<Val> = None;
                for (j, &xb) in blocks.iter().enumerate() {
                    let (w, b) = if parts == 1 && blocks.len() == 1 {
                        c.gpu.vals(g)
                    } else {
                        self.block(g, c, (o * cb_out, cb_out), (j * cb_in, cb_in))?
                    };
                    let opts = Conv1dOpts { stride: c.stride, causal_reflect: false, ..Default::default() };
                    let y = conv1d(g, xb, w, b, opts)?;
                    acc = Some(match acc {
                        None => y,
                        Some(a) => add(g, a, y)?,
                    });
                }
                let y = acc.ok_or_else(|| Error::Invalid("hubert: a conv with no input".into()))?;
                next.push(if i == 0 { self.norm_block(g, y, o * cb_out, cb_out)? } else { gelu(g, y)? });
            }
            blocks = next;
        }
        Ok(blocks[0])
    }

    /// The weights of output channels `outs` (start, count) over input channels `ins`, and the
    /// bias once (with the first input block; zeros with the others).
    fn block(&self, g: &mut Graph, c: &Conv, outs: (usize, usize), ins: (usize, usize)) -> Result<(Val, Val)> {
        let k = c.kernel;
        let mut w = Vec::with_capacity(outs.1 * ins.1 * k);
        for co in outs.0..outs.0 + outs.1 {
            let row = &c.w[co * c.c_in * k..(co + 1) * c.c_in * k];
            w.extend_from_slice(&row[ins.0 * k..(ins.0 + ins.1) * k]);
        }
        let b = if ins.0 == 0 { c.b[outs.0..outs.0 + outs.1].to_vec() } else { vec![0.0; outs.1] };
        let w = Tensor::from_f32(g.ctx(), &w, &[outs.1, ins.1, k], DType::F32)?;
        let b = Tensor::from_f32(g.ctx(), &b, &[outs.1], DType::F32)?;
        Ok((g.input(&w), g.input(&b)))
    }

    /// nn.GroupNorm(C, C) (each channel over time, its default eps) and the GELU, on the block of
    /// channels `start..start + n`.
    fn norm_block(&self, g: &mut Graph, y: Val, start: usize, n: usize) -> Result<Val> {
        let (w, b) = if n == self.norm_host.0.len() {
            self.norm.vals(g)
        } else {
            let w = Tensor::from_f32(g.ctx(), &self.norm_host.0[start..start + n], &[n], DType::F32)?;
            let b = Tensor::from_f32(g.ctx(), &self.norm_host.1[start..start + n], &[n], DType::F32)?;
            (g.input(&w), g.input(&b))
        };
        group_norm(g, y, w, b, n, 1e-5, true)
    }
}
