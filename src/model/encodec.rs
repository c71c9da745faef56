//! EnCodec (24 kHz) as Bark uses it: residual-vector-quantiser decode and the convolutional
//! decoder (codes -> audio), and the encoder with RVQ encode (audio -> codes) for voice prompts.
//! Layer order and tensor names follow transformers' `EncodecModel`; weight norm must already
//! be folded into each `*.conv.weight` by the loader.

use super::CodecConfig;
use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Plan, Val};
use crate::ops::conv1d::{conv1d, Conv1dOpts};
use crate::ops::conv_transpose1d::{conv_transpose1d, ConvTranspose1dOpts};
use crate::ops::elementwise::{add, elu};
use crate::ops::lstm::{encodec_lstm, LstmLayer};
use crate::ops::rvq::{rvq_decode, rvq_encode, upload_codes};
use crate::weights::Weights;
use crate::{Error, Result};

/// A source of named, already-folded weights (the loader, or a test's map).
pub type Fetch<'a> = dyn FnMut(&str) -> Result<Tensor> + 'a;

/// Fetches the codec's tensors from a Bark checkpoint (names under `codec_model.`), in f32:
/// the codec is small (7 M parameters in the decoder) and stays exact.
pub fn checkpoint_fetch<'a>(ctx: &'a Context, weights: &'a Weights) -> impl FnMut(&str) -> Result<Tensor> + 'a {
    move |name: &str| {
        let full = format!("codec_model.{name}");
        let shape = weights.info(&full)?.shape;
        weights.upload(ctx, &full, &shape, DType::F32)
    }
}

/// A convolution's weight and bias (`{prefix}.conv.weight`, `{prefix}.conv.bias`).
struct Conv {
    weight: Tensor,
    bias: Tensor,
}

impl Conv {
    fn load(fetch: &mut Fetch, prefix: &str) -> Result<Conv> {
        Ok(Conv { weight: fetch(&format!("{prefix}.conv.weight"))?, bias: fetch(&format!("{prefix}.conv.bias"))? })
    }
    fn vals(&self, g: &mut Graph) -> (Val, Val) {
        (g.input(&self.weight), g.input(&self.bias))
    }
    fn conv(&self, g: &mut Graph, x: Val, stride: usize, dilation: usize) -> Result<Val> {
        let (w, b) = self.vals(g);
        conv1d(g, x, w, b, Conv1dOpts { stride, dilation, causal_reflect: true, ..Default::default() })
    }
    fn conv_t(&self, g: &mut Graph, x: Val, stride: usize) -> Result<Val> {
        let (w, b) = self.vals(g);
        conv_transpose1d(g, x, w, b, ConvTranspose1dOpts { stride, causal_trim: true })
    }
}

/// `EncodecResnetBlock`: ELU, conv k=residual_kernel_size (dilated), ELU, conv k=1, plus a 1x1
/// conv shortcut (or identity).
struct ResBlock {
    conv1: Conv,
    conv2: Conv,
    dilation: usize,
    shortcut: Option<Conv>,
}

impl ResBlock {
    fn load(fetch: &mut Fetch, prefix: &str, dilation: usize, conv_shortcut: bool) -> Result<ResBlock> {
        Ok(ResBlock {
            conv1: Conv::load(fetch, &format!("{prefix}.block.1"))?,
            conv2: Conv::load(fetch, &format!("{prefix}.block.3"))?,
            dilation,
            shortcut: if conv_shortcut { Some(Conv::load(fetch, &format!("{prefix}.shortcut"))?) } else { None },
        })
    }
    fn forward(&self, g: &mut Graph, x: Val) -> Result<Val> {
        let h = elu(g, x, 1.0)?;
        let h = self.conv1.conv(g, h, 1, self.dilation)?;
        let h = elu(g, h, 1.0)?;
        let h = self.conv2.conv(g, h, 1, 1)?;
        let skip = match &self.shortcut {
            Some(c) => c.conv(g, x, 1, 1)?,
            None => x,
        };
        add(g, skip, h)
    }
}

struct Lstm {
    layers: Vec<[Tensor; 4]>,
}

impl Lstm {
    fn load(fetch: &mut Fetch, prefix: &str, n: usize) -> Result<Lstm> {
        let mut layers = Vec::with_capacity(n);
        for l in 0..n {
            let get = |f: &mut Fetch, what: &str| f(&format!("{prefix}.lstm.{what}_l{l}"));
            layers.push([
                get(fetch, "weight_ih")?,
                get(fetch, "weight_hh")?,
                get(fetch, "bias_ih")?,
                get(fetch, "bias_hh")?,
            ]);
        }
        Ok(Lstm { layers })
    }
    fn forward(&self, g: &mut Graph, x: Val) -> Result<Val> {
        let layers: Vec<LstmLayer> = self
            .layers
            .iter()
            .map(|[a, b, c, d]| LstmLayer { w_ih: g.input(a), w_hh: g.input(b), b_ih: g.input(c), b_hh: g.input(d) })
            .collect();
        encodec_lstm(g, x, &layers)
    }
}

/// One up- or down-sampling stage: the strided conv and the residual blocks beside it.
struct Stage {
    ratio: usize,
    conv: Conv,
    blocks: Vec<ResBlock>,
}

fn dilations(dims: &CodecConfig) -> impl Iterator<Item = usize> + '_ {
    (0..dims.num_residual_layers).map(|j| dims.dilation_growth_rate.pow(j as u32))
}

/// The decoder half: codes `[n_q, B, T]` -> audio `[B, channels, T * hop]`.
pub struct EncodecDecoder {
    dims: CodecConfig,
    codebooks: Tensor,
    first: Conv,
    lstm: Lstm,
    stages: Vec<Stage>,
    last: Conv,
}

/// Stacks `quantizer.layers.{q}.codebook.embed` for q in 0..n into one `[n, N, D]` tensor,
/// copying on the GPU (a browser cannot wait for a read while loading).
fn load_codebooks(ctx: &Context, fetch: &mut Fetch, dims: &CodecConfig, n: usize) -> Result<Tensor> {
    let (size, dim) = (dims.codebook_size, dims.codebook_dim());
    let all = Tensor::empty(ctx, &[n, size, dim], DType::F32)?;
    let bytes = (size * dim * 4) as u64;
    let mut enc = ctx.device().create_command_encoder(&Default::default());
    let mut parts = Vec::with_capacity(n);
    for q in 0..n {
        let name = format!("quantizer.layers.{q}.codebook.embed");
        let t = fetch(&name)?;
        if t.shape() != [dims.codebook_size, dims.codebook_dim()] {
            return Err(Error::Invalid(format!(
                "{name} has shape {:?}, expected [{}, {}]",
                t.shape(),
                dims.codebook_size,
                dims.codebook_dim()
            )));
        }
        if t.dtype() != DType::F32 {
            return Err(Error::Invalid(format!("{name} is {:?}; the codec's codebooks are f32", t.dtype())));
        }
        enc.copy_buffer_to_buffer(t.buffer(), 0, all.buffer(), q as u64 * bytes, bytes);
        parts.push(t);
    }
    ctx.queue().submit([enc.finish()]);
    drop(parts);
    Ok(all)
}

impl EncodecDecoder {
    /// Loads the decoder and the first `n_q` codebooks. `fetch` gets names relative to the
    /// codec (`decoder.layers.0.conv.weight`, `quantizer.layers.0.codebook.embed`, ...).
    pub fn load(ctx: &Context, dims: &CodecConfig, n_q: usize, fetch: &mut Fetch) -> Result<EncodecDecoder> {
        let codebooks = load_codebooks(ctx, fetch, dims, n_q)?;
        let mut idx = 0;
        let mut next = |step: usize| {
            idx += step;
            format!("decoder.layers.{}", idx - step)
        };
        let first = Conv::load(fetch, &next(1))?;
        let lstm = Lstm::load(fetch, &next(1), dims.num_lstm_layers)?;
        let mut stages = Vec::new();
        for &ratio in &dims.upsampling_ratios {
            next(1); // ELU
            let conv = Conv::load(fetch, &next(1))?;
            let blocks = dilations(dims)
                .map(|d| ResBlock::load(fetch, &next(1), d, dims.use_conv_shortcut))
                .collect::<Result<Vec<_>>>()?;
            stages.push(Stage { ratio, conv, blocks });
        }
        next(1); // ELU
        let last = Conv::load(fetch, &next(1))?;
        Ok(EncodecDecoder { dims: dims.clone(), codebooks, first, lstm, stages, last })
    }

    pub fn dims(&self) -> &CodecConfig {
        &self.dims
    }

    /// Records the decoder on codes `[n_q, B, T]` (u32); returns audio `[B, channels, T*hop]`.
    pub fn record(&self, g: &mut Graph, codes: Val) -> Result<Val> {
        let books = g.input(&self.codebooks);
        let x = rvq_decode(g, codes, books)?;
        let x = self.first.conv(g, x, 1, 1)?;
        let mut x = self.lstm.forward(g, x)?;
        for s in &self.stages {
            x = elu(g, x, 1.0)?;
            x = s.conv.conv_t(g, x, s.ratio)?;
            for b in &s.blocks {
                x = b.forward(g, x)?;
            }
        }
        let x = elu(g, x, 1.0)?;
        self.last.conv(g, x, 1, 1)
    }

    /// Codes `[n_q][B][T]` flattened (each below the codebook size) to audio samples
    /// `[B][channels][T*hop]` flattened.
    pub fn decode(&self, ctx: &Context, codes: &[u32], n_q: usize, batch: usize, frames: usize) -> Result<Vec<f32>> {
        crate::gpu::block_on(self.decode_async(ctx, codes, n_q, batch, frames))
    }

    /// [`EncodecDecoder::decode`] without blocking.
    pub async fn decode_async(
        &self,
        ctx: &Context,
        codes: &[u32],
        n_q: usize,
        batch: usize,
        frames: usize,
    ) -> Result<Vec<f32>> {
        if n_q > self.codebooks.shape()[0] {
            return Err(Error::Invalid(format!("{n_q} codebooks asked for, {} loaded", self.codebooks.shape()[0])));
        }
        let codes = upload_codes(ctx, codes, [n_q, batch, frames], self.dims.codebook_size)?;
        let (plan, y) = self.compile(ctx, &codes)?;
        plan.run()?;
        plan.tensor(y).to_f32_async(ctx).await
    }

    /// The decode of `codes` (`[n_q, B, T]`, already checked) compiled, and its output value.
    pub fn compile(&self, ctx: &Context, codes: &Tensor) -> Result<(Plan, Val)> {
        let mut g = Graph::new(ctx);
        let c = g.input(codes);
        let y = self.record(&mut g, c)?;
        g.keep(y);
        Ok((g.compile()?, y))
    }
}

/// The encoder half: audio `[B, channels, samples]` -> codes `[n_q, B, frames]`.
pub struct EncodecEncoder {
    dims: CodecConfig,
    codebooks: Tensor,
    first: Conv,
    stages: Vec<Stage>,
    lstm: Lstm,
    last: Conv,
}

impl EncodecEncoder {
    /// Loads the encoder and the first `n_q` codebooks (names relative to the codec).
    pub fn load(ctx: &Context, dims: &CodecConfig, n_q: usize, fetch: &mut Fetch) -> Result<EncodecEncoder> {
        let codebooks = load_codebooks(ctx, fetch, dims, n_q)?;
        let mut idx = 0;
        let mut next = |step: usize| {
            idx += step;
            format!("encoder.layers.{}", idx - step)
        };
        let first = Conv::load(fetch, &next(1))?;
        let mut stages = Vec::new();
        for &ratio in dims.upsampling_ratios.iter().rev() {
            let blocks = dilations(dims)
                .map(|d| ResBlock::load(fetch, &next(1), d, dims.use_conv_shortcut))
                .collect::<Result<Vec<_>>>()?;
            next(1); // ELU
            let conv = Conv::load(fetch, &next(1))?;
            stages.push(Stage { ratio, conv, blocks });
        }
        let lstm = Lstm::load(fetch, &next(1), dims.num_lstm_layers)?;
        next(1); // ELU
        let last = Conv::load(fetch, &next(1))?;
        Ok(EncodecEncoder { dims: dims.clone(), codebooks, first, stages, lstm, last })
    }

    /// Records the encoder on audio `[B, channels, samples]`; returns the continuous
    /// embeddings `[B, D, frames]` (before quantisation).
    pub fn record_embeddings(&self, g: &mut Graph, audio: Val) -> Result<Val> {
        let mut x = self.first.conv(g, audio, 1, 1)?;
        for s in &self.stages {
            for b in &s.blocks {
                x = b.forward(g, x)?;
            }
            x = elu(g, x, 1.0)?;
            x = s.conv.conv(g, x, s.ratio, 1)?;
        }
        let x = self.lstm.forward(g, x)?;
        let x = elu(g, x, 1.0)?;
        self.last.conv(g, x, 1, 1)
    }

    /// Audio `[B][channels][samples]` flattened to codes `[n_q][B][frames]` flattened, with
    /// `frames = ceil(samples / hop)`.
    pub fn encode(&self, ctx: &Context, audio: &[f32], batch: usize, n_q: usize) -> Result<(Vec<u32>, usize)> {
        let ch = self.dims.audio_channels;
        if batch == 0 || audio.is_empty() || !audio.len().is_multiple_of(batch * ch) {
            return Err(Error::Invalid(format!("{} samples do not split into {batch} x {ch} channels", audio.len())));
        }
        if n_q > self.codebooks.shape()[0] {
            return Err(Error::Invalid(format!("{n_q} codebooks asked for, {} loaded", self.codebooks.shape()[0])));
        }
        let samples = audio.len() / (batch * ch);
        let input = Tensor::from_f32(ctx, audio, &[batch, ch, samples], DType::F32)?;
        let mut g = Graph::new(ctx);
        let a = g.input(&input);
        let emb = self.record_embeddings(&mut g, a)?;
        let frames = g.shape(emb)[2];
        let books = g.input(&self.codebooks);
        let codes = rvq_encode(&mut g, emb, books, n_q)?;
        g.keep(codes);
        let plan = g.compile()?;
        plan.run()?;
        Ok((plan.tensor(codes).to_u32(ctx)?, frames))
    }
}
