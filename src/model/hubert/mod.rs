//! HuBERT (transformers' `HubertModel`, e.g. `facebook/hubert-base-ls960`) up to one layer's
//! output: the features Bark's semantic quantizer reads (voice cloning from a recording).
//!
//! Order, as the reference: 7 convs without padding (GroupNorm over time per channel + GELU after
//! the first, GELU after the others; convs.rs), features to time-major, LayerNorm + Linear (projection),
//! the grouped, zero-padded, weight-normed positional conv (last frame dropped) + GELU added to
//! it, LayerNorm, then post-LN layers (`x = LN(x + attn(x))`, `x = LN(x + ff(x))`). Output
//! `hidden_states[n]` is the n-th layer's output (0: before the layers); only n layers run.
//! The input is the raw 16 kHz waveform: hubert-base-ls960 does not normalise it (fairseq's
//! `normalize: false`, as the quantizer's training pipeline fed it).

mod convs;

use std::path::Path;

use serde::Deserialize;

use crate::error::shape_err;
use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Val};
use crate::ops::attention::{self, Mask};
use crate::ops::conv1d::{conv1d, Conv1dOpts};
use crate::ops::elementwise::{add, gelu};
use crate::ops::layernorm::layer_norm;
use crate::ops::matmul::{linear, norm_linear, Epilogue, InputNorm, Linear};
use crate::ops::transpose::transpose;
use crate::weights::Weights;
use crate::{Error, Result};

/// The fields of transformers' `HubertConfig` that decide the computation (its defaults are
/// hubert-base-ls960's).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct HubertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f32,
    pub feat_extract_norm: String,
    pub feat_extract_activation: String,
    pub feat_proj_layer_norm: bool,
    pub conv_dim: Vec<usize>,
    pub conv_stride: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_bias: bool,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    pub do_stable_layer_norm: bool,
    pub conv_pos_batch_norm: bool,
}

impl Default for HubertConfig {
    fn default() -> Self {
        HubertConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-5,
            feat_extract_norm: "group".into(),
            feat_extract_activation: "gelu".into(),
            feat_proj_layer_norm: true,
            conv_dim: vec![512; 7],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_bias: false,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            do_stable_layer_norm: false,
            conv_pos_batch_norm: false,
        }
    }
}

/// The layer whose output the semantic quantizer was trained on (fairseq `output_layer=9`).
pub const QUANTIZER_LAYER: usize = 9;
/// The sample rate HuBERT takes.
pub const SAMPLE_RATE: usize = 16_000;

impl HubertConfig {
    /// Reads `config.json` (a file, or a directory holding one) and checks it is a model this
    /// implementation computes exactly.
    pub fn load(path: impl AsRef<Path>) -> Result<HubertConfig> {
        let path = path.as_ref();
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::File { path: file.clone(), message: format!("cannot read: {e}") })?;
        HubertConfig::from_json(&text, &file)
    }

    /// Parses the JSON text of a config file; `path` only names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<HubertConfig> {
        let err = |m: String| Error::File { path: path.to_path_buf(), message: m };
        let cfg: HubertConfig = serde_json::from_str(text).map_err(|e| err(format!("invalid HuBERT config: {e}")))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let n = self.conv_dim.len();
        if n == 0 || self.conv_stride.len() != n || self.conv_kernel.len() != n {
            return Err("conv_dim, conv_stride and conv_kernel must be non-empty and of one length".into());
        }
        let sizes = [self.hidden_size, self.num_attention_heads, self.intermediate_size, self.num_conv_pos_embeddings];
        if sizes.contains(&0) || self.conv_dim.iter().chain(&self.conv_stride).chain(&self.conv_kernel).any(|&v| v == 0)
        {
            return Err("a size, kernel or stride is 0".into());
        }
        let unsupported = [
            (self.feat_extract_norm != "group", "feat_extract_norm other than \"group\""),
            (self.do_stable_layer_norm, "do_stable_layer_norm (pre-LN layers)"),
            (self.conv_pos_batch_norm, "conv_pos_batch_norm"),
            (self.hidden_act != "gelu" || self.feat_extract_activation != "gelu", "an activation other than gelu"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(bad, _)| *bad) {
            return Err(format!("{what} is not supported (hubert-base-ls960's config is)"));
        }
        let g = self.num_conv_pos_embedding_groups;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) || g == 0 || !self.hidden_size.is_multiple_of(g) {
            return Err(format!(
                "hidden_size {} must divide into {} heads and {g} positional-conv groups",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let head_dim = self.hidden_size / self.num_attention_heads;
        if !u32::try_from(head_dim).is_ok_and(attention::supports_head_dim) {
            return Err(format!("head size {head_dim} is not supported by the attention kernels"));
        }
        Ok(())
    }

    /// Feature frames for `samples` input samples (0 when shorter than the conv stack's window).
    pub fn frames(&self, samples: usize) -> usize {
        let mut t = samples;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if t < k {
                return 0;
            }
            t = (t - k) / s + 1;
        }
        t
    }
}

/// A LayerNorm's or a linear layer's weight and bias.
struct Affine {
    w: Tensor,
    b: Tensor,
}

impl Affine {
    fn vals(&self, g: &mut Graph) -> (Val, Val) {
        (g.input(&self.w), g.input(&self.b))
    }
    fn linear(&self, g: &mut Graph, x: Val, act: Epilogue, residual: Option<Val>) -> Result<Val> {
        let (w, b) = self.vals(g);
        linear(g, x, w, Some(b), act, residual)
    }
    fn norm(&self, g: &mut Graph, x: Val, eps: f32) -> Result<Val> {
        let (w, b) = self.vals(g);
        layer_norm(g, x, w, Some(b), eps)
    }
}

/// One post-LN encoder layer; Q, K and V stacked into one `[3H, H]` projection.
struct Layer {
    qkv: Affine,
    out: Affine,
    norm1: Affine,
    ff_in: Affine,
    ff_out: Affine,
    norm2: Affine,
}

/// HuBERT's weights on the GPU, up to the layer it was loaded for.
pub struct Hubert {
    cfg: HubertConfig,
    output_layer: usize,
    convs: convs::ConvStack,
    proj_norm: Option<Affine>,
    projection: Affine,
    pos_conv: Affine,
    enc_norm: Affine,
    layers: Vec<Layer>,
}

impl Hubert {
    /// Loads `config.json` and the weights (model.safetensors, else pytorch_model.bin) of `dir`,
    /// for `hidden_states[output_layer]` ([`QUANTIZER_LAYER`] for the semantic quantizer).
    pub fn load(ctx: &Context, dir: impl AsRef<Path>, output_layer: usize) -> Result<Hubert> {
        let dir = dir.as_ref();
        let cfg = HubertConfig::load(dir)?;
        let weights = Weights::open_dir(dir)?;
        Hubert::from_weights(ctx, cfg, &weights, output_layer)
    }

    /// Builds the model from a checkpoint's tensors (names as `HubertModel` saves them, or under
    /// `hubert.` as in `HubertForCTC`).
    pub fn from_weights(ctx: &Context, cfg: HubertConfig, w: &Weights, output_layer: usize) -> Result<Hubert> {
        if output_layer > cfg.num_hidden_layers {
            return Err(Error::Invalid(format!(
                "HuBERT has {} layers; hidden_states[{output_layer}] does not exist",
                cfg.num_hidden_layers
            )));
        }
        let p = if w.contains("hubert.feature_extractor.conv_layers.0.conv.weight") { "hubert." } else { "" };
        let f32 = DType::F32;
        let up = |name: &str, shape: &[usize]| w.upload(ctx, &format!("{p}{name}"), shape, f32);
        let affine = |name: &str, shape: &[usize]| -> Result<Affine> {
            Ok(Affine { w: up(&format!("{name}.weight"), shape)?, b: up(&format!("{name}.bias"), &shape[..1])? })
        };
        let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let convs = convs::ConvStack::load(ctx, w, p, &cfg)?;
        let c_in = cfg.conv_dim[cfg.conv_dim.len() - 1];
        let proj_norm =
            if cfg.feat_proj_layer_norm { Some(affine("feature_projection.layer_norm", &[c_in])?) } else { None };
        let projection = affine("feature_projection.projection", &[h, c_in])?;
        let k = cfg.num_conv_pos_embeddings;
        let pos_conv = affine("encoder.pos_conv_embed.conv", &[h, h / cfg.num_conv_pos_embedding_groups, k])?;
        let enc_norm = affine("encoder.layer_norm", &[h])?;
        let mut layers = Vec::with_capacity(output_layer);
        for i in 0..output_layer {
            let l = format!("{p}encoder.layers.{i}");
            // Q, K, V rows one after another: the layout attention::dense reads.
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for m in ["q_proj", "k_proj", "v_proj"] {
                w.expect(&format!("{l}.attention.{m}.weight"), &[h, h])?;
                w.expect(&format!("{l}.attention.{m}.bias"), &[h])?;
                qkv_w.extend(w.to_f32(&format!("{l}.attention.{m}.weight"))?);
                qkv_b.extend(w.to_f32(&format!("{l}.attention.{m}.bias"))?);
            }
            let l = &l[p.len()..];
            layers.push(Layer {
                qkv: Affine {
                    w: Tensor::from_f32(ctx, &qkv_w, &[3 * h, h], f32)?,
                    b: Tensor::from_f32(ctx, &qkv_b, &[3 * h], f32)?,
                },
                out: affine(&format!("{l}.attention.out_proj"), &[h, h])?,
                norm1: affine(&format!("{l}.layer_norm"), &[h])?,
                ff_in: affine(&format!("{l}.feed_forward.intermediate_dense"), &[ff, h])?,
                ff_out: affine(&format!("{l}.feed_forward.output_dense"), &[h, ff])?,
                norm2: affine(&format!("{l}.final_layer_norm"), &[h])?,
            });
        }
        Ok(Hubert { cfg, output_layer, convs, proj_norm, projection, pos_conv, enc_norm, layers })
    }

    pub fn config(&self) -> &HubertConfig {
        &self.cfg
    }
    /// The `hidden_states` index [`Hubert::record`] returns.
    pub fn output_layer(&self) -> usize {
        self.output_layer
    }

    /// Records the model on `wave` (f32 `[N]`, 16 kHz); returns `[T, H]`, T = [`HubertConfig::frames`].
    pub fn record(&self, g: &mut Graph, wave: Val) -> Result<Val> {
        let shape = g.shape(wave).to_vec();
        let [n] = shape[..] else {
            return Err(shape_err("hubert", format!("the waveform must be one channel [samples], got {shape:?}")));
        };
        self.check_samples(g.ctx(), n)?;
        let eps = self.cfg.layer_norm_eps;
        let x = g.view(wave, &[1, 1, n])?;
        let x = self.convs.record(g, x)?;
        let feats = transpose(g, x)?;
        let [_, t, c] = g.shape(feats).to_vec()[..] else { unreachable!() };
        let feats = g.view(feats, &[t, c])?;
        let (pw, pb) = self.projection.vals(g);
        let mut h = match &self.proj_norm {
            Some(norm) => {
                let (weight, bias) = norm.vals(g);
                let norm = InputNorm { weight, bias: Some(bias), eps };
                norm_linear(g, feats, norm, Linear { weight: pw, bias: Some(pb) }, Epilogue::None, None)?
            }
            None => linear(g, feats, pw, Some(pb), Epilogue::None, None)?,
        };
        h = self.positions(g, h, t)?;
        let heads = self.cfg.num_attention_heads;
        for l in &self.layers {
            let qkv = l.qkv.linear(g, h, Epilogue::None, None)?;
            let a = attention::dense(g, qkv, heads, 1, t, Mask::Full)?;
            let x = l.out.linear(g, a, Epilogue::None, Some(h))?;
            let x = l.norm1.norm(g, x, eps)?;
            let f = l.ff_in.linear(g, x, Epilogue::Gelu, None)?;
            let x = l.ff_out.linear(g, f, Epilogue::None, Some(x))?;
            h = l.norm2.norm(g, x, eps)?;
        }
        Ok(h)
    }

    /// `LayerNorm(h + GELU(pos_conv(h)))` for `h [T, H]`: the conv runs channels-first, padded
    /// K/2 zeros each side with the frame past T dropped (for even K), i.e. `[K/2, K/2 - 1]`.
    fn positions(&self, g: &mut Graph, h: Val, t: usize) -> Result<Val> {
        let hid = self.cfg.hidden_size;
        let k = self.cfg.num_conv_pos_embeddings;
        let ht = g.view(h, &[1, t, hid])?;
        let x = transpose(g, ht)?;
        let (w, b) = self.pos_conv.vals(g);
        let opts = Conv1dOpts {
            causal_reflect: false,
            zero_pad: [k / 2, k / 2 - usize::from(k.is_multiple_of(2))],
            groups: self.cfg.num_conv_pos_embedding_groups,
            ..Default::default()
        };
        let pc = conv1d(g, x, w, b, opts)?;
        let pc = gelu(g, pc)?;
        let pc = transpose(g, pc)?;
        let pc = g.view(pc, &[t, hid])?;
        let sum = add(g, h, pc)?;
        self.enc_norm.norm(g, sum, self.cfg.layer_norm_eps)
    }

    /// The most samples whose tensors each fit one storage binding of `ctx` (the first convs'
    /// outputs are split into channel blocks where they do not: convs.rs).
    pub fn max_samples(&self, ctx: &Context) -> usize {
        let max = ctx.max_binding_bytes();
        let (mut lo, mut hi) = (0usize, 1usize << 30);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.fits(mid, max) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Whether every tensor for `samples` fits `max` bytes: the conv blocks, then the widest
    /// time-major rows (Q, K, V together, or the MLP's).
    fn fits(&self, samples: usize, max: u64) -> bool {
        let h = self.cfg.hidden_size;
        let widest = (3 * h).max(self.cfg.intermediate_size).max(self.cfg.conv_dim[self.cfg.conv_dim.len() - 1]);
        self.convs.fits(samples, max) && self.cfg.frames(samples) as u64 * widest as u64 * 4 <= max
    }

    /// A clear error unless `samples` make at least one frame and fit the device.
    pub fn check_samples(&self, ctx: &Context, samples: usize) -> Result<()> {
        if self.cfg.frames(samples) == 0 {
            return Err(Error::Invalid(format!(
                "{samples} samples are too few for HuBERT: it needs at least {} (one frame)",
                self.min_samples()
            )));
        }
        if !self.fits(samples, ctx.max_binding_bytes()) {
            let secs = |n: usize| n as f64 / SAMPLE_RATE as f64;
            return Err(Error::Invalid(format!(
                "{:.1} s of audio is more than HuBERT can take in one pass on this device (at most {:.1} s)",
                secs(samples),
                secs(self.max_samples(ctx))
            )));
        }
        Ok(())
    }

    /// The fewest samples that give one frame.
    pub fn min_samples(&self) -> usize {
        self.cfg.conv_kernel.iter().zip(&self.cfg.conv_stride).rev().fold(1, |n, (&k, &s)| (n - 1) * s + k)
    }

    /// `hidden_states[output_layer]` of `wave` (16 kHz samples) as `[T, H]` row-major values.
    pub fn forward(&self, ctx: &Context, wave: &[f32]) -> Result<(Vec<f32>, usize)> {
        self.check_samples(ctx, wave.len())?;
        let input = Tensor::from_f32(ctx, wave, &[wave.len()], DType::F32)?;
        let mut g = Graph::new(ctx);
        let x = g.input(&input);
        let h = self.record(&mut g, x)?;
        let frames = g.shape(h)[0];
        g.keep(h);
        let plan = g.compile()?;
        plan.run()?;
        Ok((plan.tensor(h).to_f32(ctx)?, frames))
    }
}
